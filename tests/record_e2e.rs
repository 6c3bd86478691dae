//! Evidence through the real appliance: a looping test video recorded by `gridwatch run`,
//! an intrusion event whose clip the box builds by itself once the event has ended, served
//! over HTTP with byte ranges; the recordings listing, one segment and an export.

mod common;

use std::time::Duration;

use common::*;
use rusqlite::{Connection, OpenFlags};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

const PRE: f64 = 2.0;
const POST: f64 = 3.0;
const GOP_SECS: f64 = 2.0; // tools/make-test-videos.sh: key-int-max=20 at 10 fps

fn get_range(
    app: &Appliance,
    path: &str,
    range: &str,
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let client =
        reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let resp = client.get(app.url(path)).bearer_auth(TOKEN).header("Range", range).send().unwrap();
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    (status, headers, resp.bytes().unwrap().to_vec())
}

fn header(h: &reqwest::header::HeaderMap, name: &str) -> String {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
}

#[test]
fn recorded_event_clip_is_built_served_with_ranges_and_plays() {
    if !pets_mp4().exists() {
        eprintln!("SKIP: {} missing (run `make setup`)", pets_mp4().display());
        return;
    }
    let app = Appliance::start(&format!(
        r#"[[cameras]]
id = "cam"
url = "{}"
loop = true
detect_fps = 3
models = ["coco"]
[cameras.record]
segment_secs = 2
pre_roll_secs = {PRE}
post_roll_secs = {POST}
[[cameras.zones]]
name = "left"
points = [[0.0, 0.0], [0.4, 0.0], [0.4, 1.0], [0.0, 1.0]]
[[cameras.rules]]
kind = "intrusion"
zone = "left"
classes = ["person"]
min_secs = 0.5
clear_secs = 1
severity = "low"
"#,
        pets_mp4().display()
    ));
    // An event that has ended, and whose clip the recorder built without being asked.
    let db = app.data().join("gridwatch.db");
    let (event, clip_rows) = wait_for(120, "an ended event with a clip built by the box", || {
        let events = app.get_json("/api/v1/events?camera=cam&limit=100");
        let conn = Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_ONLY).ok()?;
        for e in events["events"].as_array()?.iter().filter(|e| e["state"] == "ended") {
            let id = e["id"].as_str()?;
            let n: i64 = conn
                .query_row("SELECT COUNT(*) FROM clips WHERE event_id = ?1", [id], |r| r.get(0))
                .ok()?;
            if n == 1 {
                return Some((e.clone(), n));
            }
        }
        None
    });
    assert_eq!(clip_rows, 1);
    let id = event["id"].as_str().unwrap();
    let started = OffsetDateTime::parse(event["started_at"].as_str().unwrap(), &Rfc3339).unwrap();
    let ended = OffsetDateTime::parse(event["ended_at"].as_str().unwrap(), &Rfc3339).unwrap();
    // The original (the config token has `view_unmasked`): this test is about recording.
    let path = format!("/api/v1/events/{id}/clip.mp4?unmasked=1");

    // Whole file, then ranges against it.
    let (status, ct, full) = app.get(&path, Some(TOKEN)).unwrap();
    assert_eq!((status, ct.as_str()), (200, "video/mp4"));
    let total = full.len();
    assert!(total > 10_000, "clip of {total} bytes");
    let (s, h, body) = get_range(&app, &path, "bytes=0-99");
    assert_eq!(
        (s, header(&h, "content-range"), body.as_slice()),
        (206, format!("bytes 0-99/{total}"), &full[..100])
    );
    let mid = total / 2;
    let (s, h, body) = get_range(&app, &path, &format!("bytes={mid}-{}", mid + 999));
    assert_eq!(
        (s, header(&h, "content-range")),
        (206, format!("bytes {mid}-{}/{total}", mid + 999))
    );
    assert_eq!(body.as_slice(), &full[mid..mid + 1000]);
    let (s, h, body) = get_range(&app, &path, "bytes=-500");
    assert_eq!(
        (s, header(&h, "content-range"), body.as_slice()),
        (206, format!("bytes {}-{}/{total}", total - 500, total - 1), &full[total - 500..])
    );
    let (s, h, _) = get_range(&app, &path, &format!("bytes={total}-"));
    assert_eq!((s, header(&h, "content-range")), (416, format!("bytes */{total}")));

    // The clip plays: it starts at a keyframe and spans pre-roll + event + post-roll (± a GOP).
    let file = app.dir.path().join("clip.mp4");
    std::fs::write(&file, &full).unwrap();
    let info = gridwatch::record::probe::probe(&file).unwrap();
    let decoded = gridwatch::record::probe::decode_check(&file).unwrap();
    let want = (ended - started).as_seconds_f64() + PRE + POST;
    let got = info.duration_ns as f64 / 1e9;
    println!(
        "clip of event {id}: {got:.2} s (event {:.2} s + pre {PRE} + post {POST} = {want:.2} s), {} frames, {} decoded, {total} bytes",
        (ended - started).as_seconds_f64(),
        info.frames,
        decoded.frames_decoded
    );
    assert!(info.first_is_keyframe, "clip does not start at a keyframe");
    assert!(
        (got - want).abs() <= GOP_SECS + 0.2,
        "clip lasts {got:.2} s, expected {want:.2} ± {GOP_SECS} s"
    );
    assert_eq!(decoded.frames_decoded, info.frames, "every frame of the clip decodes");

    // Recordings: listed in order, one served by id, an export across segment boundaries.
    let list = app.get_json("/api/v1/recordings?camera=cam&limit=1000");
    let segs = list["recordings"].as_array().unwrap();
    assert!(segs.len() >= 3, "{list}");
    let starts: Vec<&str> = segs.iter().map(|s| s["start"].as_str().unwrap()).collect();
    assert!(starts.windows(2).all(|w| w[0] <= w[1]), "not in time order: {starts:?}");
    let seg_id = segs[0]["id"].as_i64().unwrap();
    let (s, ct, seg) = app
        .get(&format!("/api/v1/recordings/{seg_id}/segment.mp4?unmasked=1"), Some(TOKEN))
        .unwrap();
    assert_eq!((s, ct.as_str()), (200, "video/mp4"));
    assert_eq!(seg.len() as i64, segs[0]["bytes"].as_i64().unwrap());
    let a = OffsetDateTime::parse(segs[0]["start"].as_str().unwrap(), &Rfc3339).unwrap();
    let (from, to) = (a + time::Duration::seconds(1), a + time::Duration::seconds(5));
    let q = |t: OffsetDateTime| t.format(&Rfc3339).unwrap();
    let (s, _, export) = app
        .get(
            &format!(
                "/api/v1/recordings/export.mp4?camera=cam&start={}&end={}&unmasked=1",
                q(from),
                q(to)
            ),
            Some(TOKEN),
        )
        .unwrap();
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&export));
    let efile = app.dir.path().join("export.mp4");
    std::fs::write(&efile, &export).unwrap();
    let einfo = gridwatch::record::probe::probe(&efile).unwrap();
    assert!(
        (einfo.duration_ns as f64 / 1e9 - 4.0).abs() <= GOP_SECS + 0.2,
        "export lasts {} ns",
        einfo.duration_ns
    );
    gridwatch::record::probe::decode_check(&efile).unwrap();
    let (s, _, _) = app
        .get(
            &format!(
                "/api/v1/recordings/export.mp4?camera=cam&start={}&end={}",
                q(from),
                q(from + time::Duration::hours(2))
            ),
            Some(TOKEN),
        )
        .unwrap();
    assert_eq!(s, 400, "an export longer than storage.max_export_secs is refused");
    for bad in [
        "/api/v1/recordings/..%2F..%2Fgridwatch.db/segment.mp4",
        "/api/v1/recordings/-1/segment.mp4",
    ] {
        let (s, _, body) = app.get(bad, Some(TOKEN)).unwrap();
        assert!(s == 400 || s == 404, "{bad}: {s}");
        assert!(!body.starts_with(b"SQLite"), "{bad} served a file");
    }
    // L4: what the appliance wrote (database, recordings written by GStreamer, the clip)
    // is 0600 in 0700 directories, whatever the umask of the shell that started it.
    use std::os::unix::fs::PermissionsExt;
    let mut checked = 0;
    let mut stack = vec![app.dir.path().join("data")];
    while let Some(p) = stack.pop() {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        if meta.is_dir() {
            assert_eq!(mode, 0o700, "{}", p.display());
            stack.extend(std::fs::read_dir(&p).unwrap().flatten().map(|e| e.path()));
        } else {
            assert_eq!(mode, 0o600, "{}", p.display());
        }
        checked += 1;
    }
    assert!(checked >= 6, "only {checked} entries in the data dir");
}
