//! End-to-end: the real binary on real video, real model, real SQLite and HTTP.

mod common;
use common::*;

fn events_of(a: &Appliance, camera: &str) -> Vec<serde_json::Value> {
    let v = a.get_json(&format!("/api/v1/events?camera={camera}&kind=presence"));
    v["events"].as_array().cloned().unwrap_or_default()
}

#[test]
fn files_good_bad_and_missing_cameras() {
    let garbage = tempfile::NamedTempFile::new().unwrap();
    let bytes: Vec<u8> =
        (0..200_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(garbage.path(), bytes).unwrap();
    let cams = format!(
        r#"
[[cameras]]
id = "mp4"
url = "{mp4}"
loop = true
grid_cell = "G-1"
detect_fps = 5
models = ["coco"]
[[cameras.rules]]
kind = "presence"
classes = ["person"]
min_secs = 1.0
clear_secs = 3.0
[[cameras.zones]]
name = "view"
points = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]

[[cameras]]
id = "avi"
url = "{avi}"
detect_fps = 5
models = ["coco"]
[[cameras.rules]]
kind = "presence"
classes = ["person"]
min_secs = 1.0

[[cameras]]
id = "missing"
url = "/nonexistent/dir/camera.mp4"
models = ["coco"]
reconnect_min_secs = 0.5
reconnect_max_secs = 2.0
[[cameras.rules]]
kind = "camera_offline"
offline_secs = 1.0

[[cameras]]
id = "garbage"
url = "{garbage}"
models = ["coco"]
reconnect_min_secs = 0.5
reconnect_max_secs = 2.0
"#,
        mp4 = pets_mp4().display(),
        avi = PETS_AVI,
        garbage = garbage.path().display(),
    );
    let mut a = Appliance::start(&cams);

    // The H.264 MP4 and the MS-MPEG4v3 AVI both raise person presence events.
    for cam in ["mp4", "avi"] {
        let evs = wait_for(60, &format!("a presence event on {cam}\n{}", a.logs()), || {
            let e = events_of(&a, cam);
            (!e.is_empty()).then_some(e)
        });
        let ev = &evs[0];
        assert_eq!(ev["kind"], "presence");
        assert_eq!(ev["camera_id"], cam);
        assert_eq!(ev["rule"], "presence#0", "{ev}");
        assert!(ev["objects"].as_array().unwrap().iter().any(|o| o["class"] == "person"), "{ev}");
        let id = ev["id"].as_str().unwrap();
        // Snapshot: valid JPEG with a token, 401 without.
        let (st, ct, body) =
            a.get(&format!("/api/v1/events/{id}/snapshot.jpg"), Some(TOKEN)).unwrap();
        assert_eq!(st, 200);
        assert_eq!(ct, "image/jpeg");
        let img = image::load_from_memory_with_format(&body, image::ImageFormat::Jpeg)
            .expect("snapshot is a JPEG");
        assert!(img.width() >= 320, "snapshot width {}", img.width());
        let (st, _, body) = a.get(&format!("/api/v1/events/{id}/snapshot.jpg"), None).unwrap();
        assert_eq!(st, 401, "{}", String::from_utf8_lossy(&body));
        let (st, _, _) = a.get(&format!("/api/v1/events/{id}"), Some("wrong-token")).unwrap();
        assert_eq!(st, 401);
    }
    let ev = &events_of(&a, "mp4")[0];
    assert_eq!(ev["grid_cell"], "G-1");

    // Health: good cameras online, bad ones offline with a reason.
    assert_eq!(a.camera("mp4")["state"], "online", "{}", a.logs());
    for cam in ["missing", "garbage"] {
        let c = wait_for(30, &format!("{cam} offline"), || {
            let c = a.camera(cam);
            (c["state"] == "offline" && c["last_error"].is_string()).then_some(c)
        });
        eprintln!("{cam}: {}", c["last_error"]);
    }
    // The missing camera (with a camera_offline rule) raises camera_offline with its error.
    let off = wait_for(30, &format!("a camera_offline event\n{}", a.logs()), || {
        let v = a.get_json("/api/v1/events?camera=missing&kind=camera_offline");
        v["events"].as_array().and_then(|e| e.first().cloned())
    });
    assert_eq!(
        (off["state"].as_str(), off["severity"].as_str()),
        (Some("active"), Some("high")),
        "{off}"
    );
    let err = off["objects"][0]["class"].as_str().unwrap_or_default();
    assert!(err.contains("camera.mp4") || err.contains("not") || err.contains("exist"), "{off}");
    let none = a.get_json("/api/v1/events?camera=garbage&kind=camera_offline");
    assert_eq!(none["events"].as_array().map(Vec::len), Some(0), "no rule, no event: {none}");
    // The good camera keeps analysing while the bad ones fail.
    let before = a.camera("mp4")["frames_analysed"].as_u64().unwrap();
    wait_for(20, "more analysed frames on mp4", || {
        (a.camera("mp4")["frames_analysed"].as_u64().unwrap() > before + 5).then_some(())
    });
    let (st, ct, body) = a.get("/api/v1/cameras/mp4/latest.jpg", Some(TOKEN)).unwrap();
    assert_eq!((st, ct.as_str()), (200, "image/jpeg"));
    image::load_from_memory(&body).unwrap();

    // Graceful shutdown: exit 0, active events ended, no temporary files left.
    let code = a.stop();
    assert_eq!(code, Some(0), "{}", a.logs());
    assert!(a.logs().contains("stopped cleanly"), "{}", a.logs());
    let db = rusqlite::Connection::open(a.data().join("gridwatch.db")).unwrap();
    let active: i64 = db
        .query_row("SELECT count(*) FROM events WHERE state = 'active'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(active, 0, "active events left after graceful shutdown");
    // Zone occupancy reached the store through the writer (at the latest, the partial minute
    // flushed at shutdown): the clip has people in view.
    let (frames, people): (i64, i64) = db
        .query_row(
            "SELECT COALESCE(SUM(CASE WHEN class = '*' THEN samples END), 0),
                    COALESCE(SUM(CASE WHEN class = 'person' THEN sum END), 0)
             FROM zone_occupancy WHERE camera_id = 'mp4' AND zone = 'view'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(frames > 5 && people > 0, "zone_occupancy: {frames} frames, {people} person samples");
    let ok: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(ok, "ok");
    // Both working cameras were recorded (the last segment finalised by the graceful stop):
    // the H.264 MP4 as it is, the MS-MPEG4 AVI encoded once to H.264.
    for cam in ["mp4", "avi"] {
        let (n, h264): (i64, i64) = db
            .query_row(
                "SELECT COUNT(*), COALESCE(SUM(codec = 'h264'), 0) FROM segments WHERE camera_id = ?1",
                [cam],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert!(n >= 1 && h264 == n, "{cam}: {n} segments, {h264} H.264");
    }
    for e in std::fs::read_dir(a.data().join("snapshots")).unwrap() {
        let p = e.unwrap().path();
        assert_eq!(p.extension().and_then(|x| x.to_str()), Some("jpg"), "leftover {}", p.display());
    }
}

#[test]
fn rtsp_camera_goes_offline_and_reconnects() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let mp4 = pets_mp4().display().to_string();
    let port_s = port.to_string();
    let serve = || {
        spawn_quiet(
            &["rtsp-serve", "--video", &mp4, "--port", &port_s, "--path", "/cam"],
            &dir.path().join("rtsp.log"),
        )
    };
    let server = serve();
    let cams = format!(
        r#"
[[cameras]]
id = "rtsp"
url = "rtsp://viewer:s3cr3t-pw@127.0.0.1:{port}/cam"
detect_fps = 5
models = ["coco"]
stall_timeout_secs = 3.0
reconnect_min_secs = 0.5
reconnect_max_secs = 2.0
[[cameras.rules]]
kind = "presence"
classes = ["person"]
min_secs = 1.0
"#
    );
    let a = Appliance::start(&cams);
    wait_for(60, &format!("rtsp camera online\n{}", a.logs()), || {
        (a.camera("rtsp")["state"] == "online").then_some(())
    });
    wait_for(60, "a presence event from the RTSP camera", || {
        let v = a.get_json("/api/v1/events?camera=rtsp");
        (!v["events"].as_array().unwrap().is_empty()).then_some(())
    });
    drop(server);
    let c = wait_for(30, &format!("rtsp camera offline after server stop\n{}", a.logs()), || {
        let c = a.camera("rtsp");
        (c["state"] == "offline").then_some(c)
    });
    eprintln!("offline reason: {}", c["last_error"]);
    let _server = serve();
    wait_for(60, &format!("rtsp camera back online\n{}", a.logs()), || {
        (a.camera("rtsp")["state"] == "online").then_some(())
    });
    assert!(a.camera("rtsp")["reconnects"].as_u64().unwrap() >= 1);
    // Recorded as it arrived (H.264 passthrough) before and after the outage.
    let segs = wait_for(60, "RTSP recordings from before and after the outage", || {
        let v = a.get_json("/api/v1/recordings?camera=rtsp");
        let s = v["recordings"].as_array()?.clone();
        (s.len() >= 2).then_some(s)
    });
    assert!(segs.iter().all(|s| s["codec"] == "h264"), "{segs:?}");
    // Camera credentials never reach the logs or the API.
    assert!(a.logs().contains("rtsp://***@127.0.0.1"), "{}", a.logs());
    assert!(!a.logs().contains("s3cr3t-pw"), "password in logs:\n{}", a.logs());
    assert!(!a.get_json("/api/v1/cameras").to_string().contains("s3cr3t-pw"));
}
