use std::sync::Arc;
use std::time::Instant;

use time::macros::datetime;

use super::*;
use crate::types::{BBox, Frame};

pub(crate) fn test_frame(camera: &str, w: u32, h: u32) -> Frame {
    let mut rgb = vec![0u8; (w * h * 3) as usize];
    for (i, px) in rgb.chunks_exact_mut(3).enumerate() {
        let (x, y) = (i as u32 % w, i as u32 / w);
        px.copy_from_slice(&[(x * 255 / w) as u8, (y * 255 / h) as u8, 128]);
    }
    Frame {
        camera_id: Arc::from(camera),
        index: 0,
        width: w,
        height: h,
        rgb: Arc::from(rgb),
        pts_ns: None,
        captured_at: OffsetDateTime::now_utc(),
        captured_instant: Instant::now(),
    }
}

pub(crate) fn person(score: f32) -> Detection {
    Detection {
        class_id: 0,
        class: "person".into(),
        score,
        bbox: BBox { x1: 0.1, y1: 0.2, x2: 0.5, y2: 0.9 },
        track_id: None,
        keypoints: None,
    }
}

pub(crate) fn change(
    id: Uuid,
    c: Change,
    camera: &str,
    kind: &str,
    at: OffsetDateTime,
) -> EventChange {
    EventChange {
        event_id: id,
        change: c,
        camera_id: camera.into(),
        grid_cell: Some("B7".into()),
        kind: kind.into(),
        severity: Severity::Low,
        at,
        objects: vec![person(0.8)],
        snapshot: None,
        rule: None,
        zone: None,
        line: None,
        detail: None,
        caused_by: Instant::now(),
    }
}

fn is_jpeg(b: &[u8]) -> bool {
    b.len() > 4 && b[..3] == [0xFF, 0xD8, 0xFF] && b[b.len() - 2..] == [0xFF, 0xD9]
}

#[test]
fn lifecycle_insert_update_end() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let id = Uuid::now_v7();
    let t0 = datetime!(2026-01-02 03:04:05.678 UTC);
    let e = s.apply(&change(id, Change::Started, "cam1", "presence", t0)).unwrap();
    assert_eq!(e.id, id);
    assert_eq!(e.state, EventState::Active);
    assert_eq!(e.started_at, t0);
    assert_eq!(e.ended_at, None);
    assert_eq!(e.grid_cell.as_deref(), Some("B7"));
    assert_eq!(e.objects, vec![person(0.8)]);

    let mut up = change(id, Change::Updated, "cam1", "presence", t0 + time::Duration::seconds(1));
    up.objects = vec![person(0.9), person(0.7)];
    up.severity = Severity::High;
    let e = s.apply(&up).unwrap();
    assert_eq!(e.objects.len(), 2);
    assert_eq!(e.severity, Severity::High);
    assert_eq!(e.state, EventState::Active);
    assert_eq!(e.started_at, t0, "update must not move started_at");

    let t1 = t0 + time::Duration::seconds(10);
    let mut end = change(id, Change::Ended, "cam1", "presence", t1);
    end.objects.clear();
    let e = s.apply(&end).unwrap();
    assert_eq!(e.state, EventState::Ended);
    assert_eq!(e.ended_at, Some(t1));
    assert_eq!(e.objects.len(), 2, "ending with no objects keeps the last ones");
    assert_eq!(s.get_event(id).unwrap(), Some(e.clone()));

    // Updating an ended event is refused; ending again keeps the first end time.
    assert!(matches!(s.apply(&up), Err(StoreError::EventEnded(x)) if x == id));
    let again = s
        .apply(&change(id, Change::Ended, "cam1", "presence", t1 + time::Duration::seconds(5)))
        .unwrap();
    assert_eq!(again.ended_at, Some(t1));
    // Starting the same id twice is refused.
    assert!(matches!(
        s.apply(&change(id, Change::Started, "cam1", "presence", t0)),
        Err(StoreError::EventExists(_))
    ));
}

#[test]
fn unknown_event_update_or_end_is_error() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let id = Uuid::now_v7();
    let now = OffsetDateTime::now_utc();
    for c in [Change::Updated, Change::Ended] {
        let mut ch = change(id, c, "cam1", "presence", now);
        ch.snapshot = Some(test_frame("cam1", 64, 48));
        match s.apply(&ch) {
            Err(StoreError::EventNotFound(x)) => assert_eq!(x, id),
            other => panic!("expected EventNotFound, got {other:?}"),
        }
    }
    // No snapshot file was written for the unknown event.
    assert_eq!(fs::read_dir(dir.path().join(SNAPSHOT_DIR)).unwrap().count(), 0);
    assert_eq!(s.get_event(id).unwrap(), None);
}

#[test]
fn seq_strictly_increasing_and_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    let now = OffsetDateTime::now_utc();
    let mut last = 0;
    {
        let s = Store::open(dir.path()).unwrap();
        for _ in 0..20 {
            let e =
                s.apply(&change(Uuid::now_v7(), Change::Started, "cam1", "presence", now)).unwrap();
            assert!(e.seq > last, "{} after {last}", e.seq);
            last = e.seq;
        }
        // Delete the newest row behind the store's back: AUTOINCREMENT must not reuse its seq.
        let c = Connection::open(s.db_path()).unwrap();
        c.execute("DELETE FROM events WHERE seq = ?1", params![last]).unwrap();
        s.close().unwrap();
    }
    let s = Store::open(dir.path()).unwrap();
    let e = s.apply(&change(Uuid::now_v7(), Change::Started, "cam1", "presence", now)).unwrap();
    assert!(e.seq > last);
}

#[test]
fn pagination_and_filters() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let base = datetime!(2026-03-01 12:00 UTC);
    let mut ids = Vec::new();
    for i in 0..25i64 {
        let cam = if i % 2 == 0 { "cam1" } else { "cam2" };
        let kind = if i % 5 == 0 { "loitering" } else { "presence" };
        let mut c =
            change(Uuid::now_v7(), Change::Started, cam, kind, base + time::Duration::minutes(i));
        if i % 3 == 0 {
            (c.severity, c.grid_cell) = (Severity::High, Some("C2".into()));
        }
        let e = s.apply(&c).unwrap();
        ids.push(e.seq);
    }
    // Walk all pages of 10: newest first, no duplicates, cursor ends.
    let mut seen = Vec::new();
    let mut q = EventQuery { limit: 10, ..Default::default() };
    let mut pages = 0;
    loop {
        let p = s.list_events(&q).unwrap();
        pages += 1;
        assert!(p.events.len() <= 10);
        seen.extend(p.events.iter().map(|e| e.seq));
        match p.next_before {
            Some(b) => q.before_seq = Some(b),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let mut expected = ids.clone();
    expected.reverse();
    assert_eq!(seen, expected);

    // Exactly `limit` left: no cursor.
    let p = s.list_events(&EventQuery { limit: 25, ..Default::default() }).unwrap();
    assert_eq!((p.events.len(), p.next_before), (25, None));

    let p = s
        .list_events(&EventQuery { camera: Some("cam1".into()), limit: 100, ..Default::default() })
        .unwrap();
    assert_eq!(p.events.len(), 13);
    assert!(p.events.iter().all(|e| e.camera_id == "cam1"));

    let p = s
        .list_events(&EventQuery {
            kind: Some("loitering".into()),
            limit: 100,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(p.events.len(), 5);

    let p = s
        .list_events(&EventQuery {
            since: Some(base + time::Duration::minutes(10)),
            until: Some(base + time::Duration::minutes(15)),
            limit: 100,
            ..Default::default()
        })
        .unwrap();
    let mins: Vec<i64> = p.events.iter().map(|e| (e.started_at - base).whole_minutes()).collect();
    assert_eq!(mins, vec![14, 13, 12, 11, 10], "since inclusive, until exclusive");

    let p = s
        .list_events(&EventQuery {
            camera: Some("cam2".into()),
            kind: Some("loitering".into()),
            limit: 100,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(p.events.len(), 2); // i = 5, 15

    let p = s
        .list_events(&EventQuery {
            severity: Some(Severity::High),
            limit: 100,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(p.events.len(), 9); // i = 0, 3, …, 24
    assert!(p.events.iter().all(|e| e.severity == Severity::High));
    let p = s
        .list_events(&EventQuery { grid_cell: Some("B7".into()), limit: 100, ..Default::default() })
        .unwrap();
    assert_eq!(p.events.len(), 16);
    assert!(p.events.iter().all(|e| e.grid_cell.as_deref() == Some("B7")));
}

#[test]
fn snapshot_is_valid_jpeg_written_before_row() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let id = Uuid::now_v7();
    let mut ch = change(id, Change::Started, "cam1", "presence", OffsetDateTime::now_utc());
    ch.snapshot = Some(test_frame("cam1", 160, 120));
    let e = s.apply(&ch).unwrap();
    assert_eq!(e.snapshot.as_deref(), Some(format!("snapshots/{id}.jpg").as_str()));
    let path = s.snapshot_file(&e).unwrap();
    assert!(path.is_absolute());
    assert_eq!(path, s.data_dir().join(e.snapshot.as_deref().unwrap()));
    let bytes = fs::read(&path).unwrap();
    assert!(is_jpeg(&bytes));
    let img = image::load_from_memory_with_format(&bytes, image::ImageFormat::Jpeg).unwrap();
    assert_eq!((img.width(), img.height()), (160, 120));
    // No temp file remains.
    let names: Vec<_> = fs::read_dir(dir.path().join(SNAPSHOT_DIR))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");

    // Boxes are drawn: the snapshot differs from the plain frame encoding.
    let frame = test_frame("cam1", 160, 120);
    let plain = encode_jpeg(&frame, &[], 85).unwrap();
    assert!(is_jpeg(&plain));
    assert_ne!(plain, bytes);

    // An event without a snapshot has no file.
    let e2 = s
        .apply(&change(
            Uuid::now_v7(),
            Change::Started,
            "cam1",
            "presence",
            OffsetDateTime::now_utc(),
        ))
        .unwrap();
    assert_eq!(s.snapshot_file(&e2), None);
}

#[test]
fn encode_jpeg_rejects_bad_frame_and_odd_boxes() {
    let mut f = test_frame("cam1", 32, 32);
    f.width = 33;
    assert!(matches!(encode_jpeg(&f, &[], 80), Err(StoreError::Image(_))));
    let f = test_frame("cam1", 32, 32);
    let weird = vec![
        Detection {
            class_id: 99,
            class: "x".into(),
            score: 1.0,
            bbox: BBox { x1: -1.0, y1: -1.0, x2: 2.0, y2: 2.0 },
            track_id: None,
            keypoints: None,
        },
        Detection {
            class_id: 1,
            class: "y".into(),
            score: 0.5,
            bbox: BBox { x1: f32::NAN, y1: 0.0, x2: 1.0, y2: 1.0 },
            track_id: None,
            keypoints: None,
        },
        Detection {
            class_id: 2,
            class: "z".into(),
            score: 0.5,
            bbox: BBox { x1: 0.9, y1: 0.9, x2: 0.1, y2: 0.1 },
            track_id: None,
            keypoints: None,
        },
    ];
    assert!(is_jpeg(&encode_jpeg(&f, &weird, 80).unwrap()));
}

#[test]
fn encode_jpeg_keeps_colours_and_draws_boxes_in_the_palette_colour() {
    // The gradient frame: red grows to the right, green downwards, blue 128.
    let f = test_frame("cam1", 320, 240);
    let plain = image::load_from_memory(&encode_jpeg(&f, &[], 95).unwrap()).unwrap().to_rgb8();
    assert_eq!(plain.dimensions(), (320, 240));
    for (x, y) in [(10u32, 10u32), (300, 20), (40, 220), (160, 120)] {
        let want = &f.rgb[((y * 320 + x) * 3) as usize..][..3];
        let got = plain.get_pixel(x, y).0;
        for c in 0..3 {
            assert!(
                (got[c] as i32 - want[c] as i32).abs() <= 12,
                "pixel ({x},{y}): {got:?} vs {want:?}"
            );
        }
    }
    // A person box (class 0: red) from x = 0.1 to 0.5: its left edge (4 px wide at this
    // size) is red.
    let f = test_frame("cam1", 1280, 720);
    let boxed =
        image::load_from_memory(&encode_jpeg(&f, &[person(0.9)], 95).unwrap()).unwrap().to_rgb8();
    let edge = boxed.get_pixel(128, 400).0;
    assert!(
        edge[0] > 200 && edge[1] < 110 && edge[2] < 110,
        "box edge {edge:?} is not the palette's red"
    );
}

/// A detection with keypoints gets its skeleton drawn: limbs in the box colour, joints as
/// white dots; keypoints below the drawing score, out of range or NaN are left out (no panic).
#[test]
fn encode_jpeg_draws_the_skeleton() {
    use crate::types::{kp, Keypoint};
    let f = test_frame("cam1", 1280, 720);
    let mut k = vec![Keypoint { x: 0.3, y: 0.5, score: 0.9 }; 17];
    k[kp::LEFT_SHOULDER] = Keypoint { x: 0.25, y: 0.3, score: 0.9 };
    k[kp::LEFT_HIP] = Keypoint { x: 0.25, y: 0.6, score: 0.9 };
    k[kp::RIGHT_SHOULDER] = Keypoint { x: 0.4, y: 0.3, score: 0.1 }; // not seen
    k[kp::RIGHT_HIP] = Keypoint { x: 0.4, y: 0.6, score: 0.9 };
    k[kp::NOSE] = Keypoint { x: f32::NAN, y: 2.0, score: 0.9 };
    let d = Detection { keypoints: Some(k), ..person(0.9) };
    let img = image::load_from_memory(&encode_jpeg(&f, &[d], 95).unwrap()).unwrap().to_rgb8();
    let red = |p: [u8; 3]| p[0] > 200 && p[1] < 110 && p[2] < 110;
    // The left shoulder–hip limb (x = 320 px, y 216–432) is drawn red halfway.
    let limb = img.get_pixel(320, 324).0;
    assert!(red(limb), "limb {limb:?}");
    // The left shoulder joint is a white dot.
    let joint = img.get_pixel(320, 216).0;
    assert!(joint.iter().all(|c| *c > 200), "joint {joint:?}");
    // No limb to the unseen right shoulder: the right shoulder–hip line (x = 512) is absent.
    let plain = image::load_from_memory(&encode_jpeg(&f, &[], 95).unwrap()).unwrap().to_rgb8();
    let (a, b) = (img.get_pixel(512, 324).0, plain.get_pixel(512, 324).0);
    assert!(a.iter().zip(b).all(|(x, y)| (*x as i32 - y as i32).abs() <= 12), "{a:?} vs {b:?}");
}

/// Objects without keypoints serialise as before (no `keypoints` key); with them, as a
/// list of {x, y, score}, and back.
#[test]
fn keypoints_json_only_when_present() {
    use crate::types::Keypoint;
    let plain = serde_json::to_value(person(0.9)).unwrap();
    assert!(plain.get("keypoints").is_none(), "{plain}");
    let d = Detection {
        keypoints: Some(vec![Keypoint { x: 0.5, y: 0.25, score: 0.75 }]),
        ..person(0.9)
    };
    let v = serde_json::to_value(&d).unwrap();
    assert_eq!(v["keypoints"], serde_json::json!([{"x": 0.5, "y": 0.25, "score": 0.75}]));
    assert_eq!(serde_json::from_value::<Detection>(v).unwrap(), d);
}

#[test]
fn orphan_snapshots_removed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let kept;
    {
        let s = Store::open(dir.path()).unwrap();
        let mut ch =
            change(Uuid::now_v7(), Change::Started, "cam1", "presence", OffsetDateTime::now_utc());
        ch.snapshot = Some(test_frame("cam1", 32, 32));
        kept = s.snapshot_file(&s.apply(&ch).unwrap()).unwrap();
    }
    let snaps = dir.path().join(SNAPSHOT_DIR);
    let orphan = snaps.join(format!("{}.jpg", Uuid::now_v7()));
    let tmp = snaps.join(format!("{}.jpg.tmp", Uuid::now_v7()));
    let other = snaps.join("README.txt");
    for p in [&orphan, &tmp, &other] {
        fs::write(p, b"x").unwrap();
    }
    let _s = Store::open(dir.path()).unwrap();
    assert!(kept.exists());
    assert!(!orphan.exists());
    assert!(!tmp.exists());
    assert!(other.exists(), "unrelated files are left alone");
}

fn schema_of(c: &Connection) -> Vec<(String, String, String)> {
    let mut stmt = c
        .prepare("SELECT type, name, COALESCE(sql, '') FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

#[test]
fn stepwise_migration_equals_fresh_schema() {
    let fresh_dir = tempfile::tempdir().unwrap();
    let fresh = Store::open(fresh_dir.path()).unwrap();
    assert_eq!(fresh.schema_version().unwrap(), migrations::latest_version());
    fresh.close().unwrap();
    let fresh_schema = schema_of(&Connection::open(fresh.db_path()).unwrap());
    assert!(fresh_schema.iter().any(|(t, n, _)| t == "table" && n == "events"));

    // Step by step, reopening the database between versions like successive releases would.
    let step_dir = tempfile::tempdir().unwrap();
    let path = step_dir.path().join(DB_FILE);
    for v in 1..=migrations::latest_version() {
        let mut c = Connection::open(&path).unwrap();
        assert_eq!(migrations::current_version(&c).unwrap(), v - 1);
        assert_eq!(migrations::migrate_to(&mut c, v).unwrap(), v);
    }
    let c = Connection::open(&path).unwrap();
    assert_eq!(schema_of(&c), fresh_schema);
    drop(c);
    // Opening the stepwise database as a store is a no-op migration.
    let s = Store::open(step_dir.path()).unwrap();
    assert_eq!(s.schema_version().unwrap(), migrations::latest_version());
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let c = Connection::open(dir.path().join(DB_FILE)).unwrap();
        c.pragma_update(None, "user_version", migrations::latest_version() + 1).unwrap();
    }
    assert!(matches!(Store::open(dir.path()), Err(StoreError::Schema(_))));
}

#[test]
fn reopen_keeps_data_and_wal_settings() {
    let dir = tempfile::tempdir().unwrap();
    let id = Uuid::now_v7();
    let e1;
    {
        let s = Store::open(dir.path()).unwrap();
        e1 = s
            .apply(&change(id, Change::Started, "cam1", "presence", OffsetDateTime::now_utc()))
            .unwrap();
        s.add_token("ops", &hash_token("secret")).unwrap();
        s.close().unwrap();
        let wal = dir.path().join(format!("{DB_FILE}-wal"));
        assert!(!wal.exists() || fs::metadata(&wal).unwrap().len() == 0, "WAL truncated by close");
    }
    let s = Store::open(dir.path()).unwrap();
    assert_eq!(s.get_event(id).unwrap(), Some(e1));
    assert_eq!(s.token_hashes().unwrap(), vec![hash_token("secret")]);
    let c = s.inner.writer.lock().unwrap();
    let mode: String = c.pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
    let sync: i64 = c.pragma_query_value(None, "synchronous", |r| r.get(0)).unwrap();
    let fk: i64 = c.pragma_query_value(None, "foreign_keys", |r| r.get(0)).unwrap();
    assert_eq!((mode.as_str(), sync, fk), ("wal", 2, 1));
}

#[test]
fn tokens() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    assert_eq!(s.count_tokens().unwrap(), 0);
    let t = generate_token();
    assert!(t.starts_with("gw_") && t.len() == 67, "{t}");
    assert_ne!(t, generate_token());
    let h = hash_token(&t);
    assert_eq!(h.len(), 64);
    assert_eq!(
        hash_token("abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    let id = s.add_token("laptop", &h).unwrap();
    assert!(matches!(s.add_token("dup", &h), Err(StoreError::Token(_))));
    assert!(matches!(s.add_token("bad", "xyz"), Err(StoreError::Token(_))));
    let id2 = s.add_token("other", &hash_token("other")).unwrap();
    assert_eq!(s.count_tokens().unwrap(), 2);
    assert!(s.revoke_token(id).unwrap());
    assert!(!s.revoke_token(id).unwrap());
    assert_eq!(s.token_hashes().unwrap(), vec![hash_token("other")]);
    assert!(!s.token_valid(&h).unwrap());
    assert!(s.token_valid(&hash_token("other")).unwrap());
    assert!(s.token_valid(&hash_token("other").to_uppercase()).unwrap());
    assert_eq!(s.count_tokens().unwrap(), 1);
    let list = s.list_tokens().unwrap();
    assert_eq!(list.len(), 2);
    assert!(list.iter().any(|t| t.id == id && t.revoked_at.is_some()));
    assert!(list.iter().any(|t| t.id == id2 && t.revoked_at.is_none()));
}

#[test]
fn bootstrap_token_only_when_none() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    assert_eq!(s.bootstrap_token(&[hash_token("cfg")], "generated").unwrap(), None);
    assert_eq!(s.count_tokens().unwrap(), 0);
    let t = s.bootstrap_token(&[], "generated").unwrap().unwrap();
    assert!(s.token_valid(&hash_token(&t)).unwrap());
    assert_eq!(s.bootstrap_token(&[], "generated").unwrap(), None);
    assert_eq!(s.count_tokens().unwrap(), 1);
}

#[test]
fn list_queries_use_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let c = s.inner.writer.lock().unwrap();
    let plan = |sql: &str| -> String {
        let mut st = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        st.query_map([], |r| r.get::<_, String>(3))
            .unwrap()
            .map(|r| r.unwrap())
            .collect::<Vec<_>>()
            .join("; ")
    };
    let p =
        plan("SELECT seq FROM events WHERE camera_id = 'a' AND seq < 10 ORDER BY seq DESC LIMIT 5");
    assert!(p.contains("events_camera_seq") && !p.contains("TEMP B-TREE"), "{p}");
    let p = plan("SELECT seq FROM events WHERE kind = 'a' ORDER BY seq DESC LIMIT 5");
    assert!(p.contains("events_kind_seq") && !p.contains("TEMP B-TREE"), "{p}");
    let p = plan("SELECT seq FROM events WHERE 1 AND seq < 10 ORDER BY seq DESC LIMIT 5");
    assert!(!p.contains("TEMP B-TREE") && !p.contains("SCAN events USING"), "{p}");
}

#[test]
fn concurrent_readers_and_writer() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let writer = {
        let s = s.clone();
        std::thread::spawn(move || {
            for _ in 0..50 {
                s.apply(&change(
                    Uuid::now_v7(),
                    Change::Started,
                    "cam1",
                    "presence",
                    OffsetDateTime::now_utc(),
                ))
                .unwrap();
            }
        })
    };
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let s = s.clone();
            std::thread::spawn(move || {
                for _ in 0..50 {
                    let p = s.list_events(&EventQuery { limit: 5, ..Default::default() }).unwrap();
                    let seqs: Vec<_> = p.events.iter().map(|e| e.seq).collect();
                    assert!(seqs.windows(2).all(|w| w[0] > w[1]));
                }
            })
        })
        .collect();
    writer.join().unwrap();
    for r in readers {
        r.join().unwrap();
    }
    assert_eq!(
        s.list_events(&EventQuery { limit: 500, ..Default::default() }).unwrap().events.len(),
        50
    );
}

#[test]
fn non_finite_values_do_not_poison_rows() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let mut ch =
        change(Uuid::now_v7(), Change::Started, "cam1", "presence", OffsetDateTime::now_utc());
    ch.objects[0].score = f32::NAN;
    ch.objects[0].bbox.x2 = f32::INFINITY;
    let e = s.apply(&ch).unwrap();
    assert_eq!(e.objects[0].score, 0.0);
    assert_eq!(
        s.list_events(&EventQuery { limit: 10, ..Default::default() }).unwrap().events.len(),
        1
    );
}

#[test]
fn failed_snapshot_write_commits_no_row() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    // Make the snapshot directory unusable (a file in its place; permissions don't stop root).
    let snaps = dir.path().join(SNAPSHOT_DIR);
    fs::remove_dir(&snaps).unwrap();
    fs::write(&snaps, b"not a dir").unwrap();
    let id = Uuid::now_v7();
    let mut ch = change(id, Change::Started, "cam1", "presence", OffsetDateTime::now_utc());
    ch.snapshot = Some(test_frame("cam1", 32, 32));
    match s.apply(&ch) {
        Err(StoreError::Io { path, .. }) => assert!(path.starts_with(&snaps), "{}", path.display()),
        other => panic!("expected an Io error, got {other:?}"),
    }
    assert_eq!(s.get_event(id).unwrap(), None, "row must not commit without its snapshot");
    // Without a snapshot the same event can still be stored.
    ch.snapshot = None;
    assert_eq!(s.apply(&ch).unwrap().snapshot, None);
}

#[test]
#[ignore]
fn dump_snapshot_for_eyeballing() {
    let f = test_frame("cam1", 640, 360);
    let objs = vec![
        person(0.87),
        Detection {
            class_id: 2,
            class: "car".into(),
            score: 0.55,
            bbox: BBox { x1: 0.6, y1: 0.0, x2: 0.95, y2: 0.4 },
            track_id: None,
            keypoints: None,
        },
    ];
    let jpeg = encode_jpeg(&f, &objs, 85).unwrap();
    let dir = std::env::temp_dir();
    fs::write(dir.join("gw-snap.jpg"), &jpeg).unwrap();
    image::load_from_memory(&jpeg).unwrap().save(dir.join("gw-snap.png")).unwrap();
}

#[test]
fn interrupted_events_are_ended_on_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let c = change(Uuid::now_v7(), Change::Started, "cam", "presence", OffsetDateTime::now_utc());
    store.apply(&c).unwrap();
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.end_interrupted().unwrap(), 1);
    let ev = store.get_event(c.event_id).unwrap().unwrap();
    assert_eq!(ev.state, EventState::Ended);
    assert!(ev.ended_at.unwrap() >= ev.started_at);
    assert_eq!(store.end_interrupted().unwrap(), 0);
}

/// The store's own stamps (here `updated_at`, which ends an interrupted event) come from
/// its clock.
#[test]
fn row_stamps_come_from_the_store_clock() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let t = datetime!(2026-05-01 08:00 UTC);
    store.set_clock(Arc::new(crate::clock::SimClock::new(t)));
    let c =
        change(Uuid::now_v7(), Change::Started, "cam", "presence", t - time::Duration::hours(1));
    store.apply(&c).unwrap();
    assert_eq!(store.end_interrupted().unwrap(), 1);
    let ev = store.get_event(c.event_id).unwrap().unwrap();
    assert_eq!((ev.started_at, ev.ended_at), (t - time::Duration::hours(1), Some(t)));
}

fn delta(
    cam: &str,
    line: &str,
    class: &str,
    dir: CrossDir,
    at: OffsetDateTime,
    count: u32,
) -> CountDelta {
    CountDelta {
        camera_id: cam.into(),
        line: line.into(),
        class: class.into(),
        direction: dir,
        at,
        count,
        speed_kmh: None,
    }
}

#[test]
fn counts_upsert_and_aggregate() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    use CrossDir::*;
    s.add_counts(&[
        delta("c1", "gate", "person", AToB, datetime!(2026-03-01 10:00:05 UTC), 1),
        delta("c1", "gate", "person", AToB, datetime!(2026-03-01 10:00:59.999 UTC), 1),
        delta("c1", "gate", "person", BToA, datetime!(2026-03-01 10:00:30 UTC), 1),
        delta("c1", "gate", "person", AToB, datetime!(2026-03-01 10:01:00 UTC), 2),
        delta("c1", "gate", "car", AToB, datetime!(2026-03-01 10:59:00 UTC), 1),
        delta("c1", "gate", "person", AToB, datetime!(2026-03-01 11:10:00 UTC), 1),
        delta("c1", "road", "person", AToB, datetime!(2026-03-01 10:00:00 UTC), 7),
        delta("c2", "gate", "person", AToB, datetime!(2026-03-02 00:00:00 UTC), 1),
    ])
    .unwrap();
    s.add_counts(&[delta("c1", "gate", "person", AToB, datetime!(2026-03-01 10:00:10 UTC), 3)])
        .unwrap();
    s.add_counts(&[]).unwrap();
    let q = |bucket, camera: Option<&str>, line: Option<&str>| CountQuery {
        camera: camera.map(str::to_string),
        line: line.map(str::to_string),
        class: None,
        since: None,
        until: None,
        bucket,
    };
    let rows = s.counts(&q(Bucket::Minute, Some("c1"), Some("gate"))).unwrap();
    let flat: Vec<(String, CrossDir, OffsetDateTime, i64)> =
        rows.iter().map(|r| (r.class.clone(), r.direction, r.bucket_start, r.count)).collect();
    assert_eq!(
        flat,
        vec![
            ("person".into(), AToB, datetime!(2026-03-01 10:00 UTC), 5),
            ("person".into(), BToA, datetime!(2026-03-01 10:00 UTC), 1),
            ("person".into(), AToB, datetime!(2026-03-01 10:01 UTC), 2),
            ("car".into(), AToB, datetime!(2026-03-01 10:59 UTC), 1),
            ("person".into(), AToB, datetime!(2026-03-01 11:10 UTC), 1),
        ]
    );
    let hour = s.counts(&q(Bucket::Hour, Some("c1"), Some("gate"))).unwrap();
    let flat: Vec<(String, CrossDir, OffsetDateTime, i64)> =
        hour.iter().map(|r| (r.class.clone(), r.direction, r.bucket_start, r.count)).collect();
    assert_eq!(
        flat,
        vec![
            ("car".into(), AToB, datetime!(2026-03-01 10:00 UTC), 1),
            ("person".into(), AToB, datetime!(2026-03-01 10:00 UTC), 7),
            ("person".into(), BToA, datetime!(2026-03-01 10:00 UTC), 1),
            ("person".into(), AToB, datetime!(2026-03-01 11:00 UTC), 1),
        ]
    );
    let day = s.counts(&q(Bucket::Day, None, None)).unwrap();
    assert_eq!(day.len(), 5, "{day:?}");
    assert_eq!(day.iter().map(|r| r.count).sum::<i64>(), 18);
    assert!(day.iter().all(|r| r.bucket_start.hour() == 0 && r.bucket_start.minute() == 0));
    // Time window over minute buckets, and a class filter.
    let mut w = q(Bucket::Minute, Some("c1"), Some("gate"));
    w.since = Some(datetime!(2026-03-01 10:01 UTC));
    w.until = Some(datetime!(2026-03-01 11:00 UTC));
    w.class = Some("person".into());
    let rows = s.counts(&w).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].bucket_start, rows[0].count), (datetime!(2026-03-01 10:01 UTC), 2));
    // Counts survive a reopen.
    drop(s);
    let s = Store::open(dir.path()).unwrap();
    assert_eq!(s.counts(&q(Bucket::Day, Some("c2"), None)).unwrap()[0].count, 1);
    assert_eq!(bucket_start(-1, 60_000), -60_000);
}

fn occ(
    cam: &str,
    zone: &str,
    class: &str,
    at: OffsetDateTime,
    samples: u64,
    sum: u64,
    max: u32,
) -> OccupancyDelta {
    OccupancyDelta {
        camera_id: cam.into(),
        zone: zone.into(),
        class: class.into(),
        bucket_start: at,
        samples,
        sum,
        max,
    }
}

/// Ground speeds add up per bucket: the mean is over the crossings that had one.
#[test]
fn count_speeds_average_over_crossings_with_a_speed() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let at = datetime!(2026-03-01 10:00:05 UTC);
    let d = |v: Option<f32>, count| CountDelta {
        speed_kmh: v,
        ..delta("c1", "gate", "car", CrossDir::AToB, at, count)
    };
    s.add_counts(&[d(Some(60.0), 1), d(None, 1), d(Some(90.0), 2), d(Some(f32::NAN), 1)]).unwrap();
    s.add_counts(&[d(Some(70.5), 1), delta("c1", "gate", "bus", CrossDir::AToB, at, 1)]).unwrap();
    let rows = s
        .counts(&CountQuery {
            camera: None,
            line: None,
            class: None,
            since: None,
            until: None,
            bucket: Bucket::Hour,
        })
        .unwrap();
    let got: Vec<_> =
        rows.iter().map(|r| (r.class.as_str(), r.count, r.speed_count, r.mean_speed_kmh)).collect();
    // car: 6 crossings, 4 with a speed: (60 + 2 × 90 + 70.5) / 4 = 77.6 (77.625 → 0.1).
    assert_eq!(got, vec![("bus", 1, 0, None), ("car", 6, 4, Some(77.6))]);
}

#[test]
fn occupancy_upsert_aggregate_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let m0 = datetime!(2026-03-01 10:00 UTC);
    let m1 = datetime!(2026-03-01 10:01 UTC);
    let h1 = datetime!(2026-03-01 11:00 UTC);
    s.add_occupancy(&[
        occ("c1", "plaza", "*", m0, 100, 300, 5),
        occ("c1", "plaza", "person", m0, 100, 250, 4),
        occ("c1", "plaza", "car", m0, 100, 50, 1),
        // Minute 1: no car at all (no car row), people only.
        occ("c1", "plaza", "*", m1, 100, 100, 2),
        occ("c1", "plaza", "person", m1, 100, 100, 2),
        occ("c1", "kerb", "*", m0, 100, 0, 0),
        occ("c2", "plaza", "*", h1, 10, 10, 1),
        occ("c2", "plaza", "person", h1, 10, 10, 1),
    ])
    .unwrap();
    // A partial bucket flushed at shutdown merges with the rest of the minute after a restart.
    s.add_occupancy(&[
        occ("c1", "plaza", "*", m1, 20, 100, 7),
        occ("c1", "plaza", "person", m1, 20, 100, 7),
    ])
    .unwrap();
    s.add_occupancy(&[]).unwrap();
    let q = |bucket, zone: Option<&str>, class: Option<&str>| OccupancyQuery {
        camera: Some("c1".into()),
        zone: zone.map(str::to_string),
        class: class.map(str::to_string),
        since: None,
        until: None,
        bucket,
    };
    let flat = |rows: Vec<OccupancyRow>| -> Vec<(String, String, OffsetDateTime, i64, f64, i64)> {
        rows.into_iter()
            .map(|r| (r.zone, r.class, r.bucket_start, r.samples, r.mean, r.max))
            .collect()
    };
    assert_eq!(
        flat(s.occupancy(&q(Bucket::Minute, Some("plaza"), None)).unwrap()),
        vec![
            ("plaza".into(), "*".into(), m0, 100, 3.0, 5),
            ("plaza".into(), "car".into(), m0, 100, 0.5, 1),
            ("plaza".into(), "person".into(), m0, 100, 2.5, 4),
            ("plaza".into(), "*".into(), m1, 120, 200.0 / 120.0, 7),
            ("plaza".into(), "person".into(), m1, 120, 200.0 / 120.0, 7),
        ]
    );
    // Per hour, a car mean counts the minute without cars as zero: 50 / 220 frames.
    assert_eq!(
        flat(s.occupancy(&q(Bucket::Hour, Some("plaza"), Some("car"))).unwrap()),
        vec![("plaza".into(), "car".into(), datetime!(2026-03-01 10:00 UTC), 220, 50.0 / 220.0, 1)]
    );
    let all = s.occupancy(&q(Bucket::Day, None, Some("*"))).unwrap();
    assert_eq!(all.iter().map(|r| r.zone.as_str()).collect::<Vec<_>>(), vec!["kerb", "plaza"]);
    assert_eq!((all[0].samples, all[0].mean, all[0].max), (100, 0.0, 0));
    let mut w = q(Bucket::Minute, None, Some("person"));
    w.since = Some(m1);
    w.until = Some(h1);
    assert_eq!(flat(s.occupancy(&w).unwrap()).len(), 1);
    drop(s);
    let s = Store::open(dir.path()).unwrap();
    let other = OccupancyQuery { camera: Some("c2".into()), ..q(Bucket::Hour, None, None) };
    let rows = s.occupancy(&other).unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!((rows[0].class.as_str(), rows[0].bucket_start, rows[0].mean), ("*", h1, 1.0));
    assert_eq!(s.occupancy(&q(Bucket::Day, None, None)).unwrap().len(), 4);
}

#[test]
fn event_details_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let id = Uuid::now_v7();
    let t = datetime!(2026-03-01 10:00 UTC);
    let mut c = change(id, Change::Started, "c1", "crowd", t);
    c.rule = Some("crowd#1".into());
    c.zone = Some("plaza".into());
    c.objects[0].track_id = Some(42);
    c.detail = Some(serde_json::json!({"count": 6, "min_count": 5}));
    let e = s.apply(&c).unwrap();
    assert_eq!(
        (e.rule.as_deref(), e.zone.as_deref(), e.line.as_deref()),
        (Some("crowd#1"), Some("plaza"), None)
    );
    assert_eq!(e.objects[0].track_id, Some(42));
    assert_eq!(e.detail, Some(serde_json::json!({"count": 6, "min_count": 5})));
    // An update without detail keeps it; the end replaces it.
    let mut u = change(id, Change::Updated, "c1", "crowd", t);
    u.detail = None;
    u.objects = c.objects.clone();
    assert_eq!(s.apply(&u).unwrap().detail, Some(serde_json::json!({"count": 6, "min_count": 5})));
    let mut end = change(id, Change::Ended, "c1", "crowd", t + time::Duration::seconds(9));
    end.objects.clear();
    end.detail = Some(serde_json::json!({"count": 6, "max_count": 9, "min_count": 5}));
    let e = s.apply(&end).unwrap();
    assert_eq!(e.detail.as_ref().and_then(|d| d["max_count"].as_i64()), Some(9));
    assert_eq!(e.rule.as_deref(), Some("crowd#1"), "rule and zone stay");
    assert_eq!(s.get_event(id).unwrap().unwrap(), e);
    // JSON: track_id only when set; rule/zone/line/detail always present.
    let v = serde_json::to_value(&e).unwrap();
    assert_eq!(v["objects"][0]["track_id"], 42);
    assert!(v["line"].is_null() && v.as_object().unwrap().contains_key("line"));
    let raw = serde_json::to_value(person(0.5)).unwrap();
    assert!(!raw.as_object().unwrap().contains_key("track_id"));
}

/// L4: the data dir and its subdirectories are 0700, the database (and its -wal/-shm), the
/// snapshots and the reserve file 0600, whatever the umask; a data dir and database left
/// readable by an older version are tightened when the store opens.
#[test]
fn data_dir_and_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = Store::open(&data).unwrap();
    let id = Uuid::now_v7();
    let mut ch = change(id, Change::Started, "cam1", "presence", OffsetDateTime::now_utc());
    ch.snapshot = Some(test_frame("cam1", 64, 48));
    let e = s.apply(&ch).unwrap();
    s.ensure_reserve(4096).unwrap();
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join(SNAPSHOT_DIR)), 0o700);
    let mut files = vec![s.snapshot_file(&e).unwrap(), data.join(RESERVE_FILE)];
    for suffix in ["", "-wal", "-shm"] {
        files.push(data.join(format!("{DB_FILE}{suffix}")));
    }
    for f in &files {
        assert!(f.exists(), "{} missing", f.display());
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
    drop(s);
    // An older, world-readable layout is tightened on open.
    fs::set_permissions(&data, fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(data.join(DB_FILE), fs::Permissions::from_mode(0o644)).unwrap();
    let _s = Store::open(&data).unwrap();
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join(DB_FILE)), 0o600);
}
