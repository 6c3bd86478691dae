//! Disk full: the real appliance records onto a small tmpfs (set up by the test; skipped with
//! a message where mounting is not permitted). Recording must go on for at least 3× the
//! filesystem's capacity, evicting the oldest segments, while events are still stored and
//! no `storage_full` alarm is raised (there is always something to evict). Then a ballast
//! file takes the space that eviction could free: the alarm appears, recording pauses
//! without a crash, and everything resumes when the ballast is removed.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use rusqlite::{Connection, OpenFlags};
use time::format_description::well_known::Rfc3339;

const FS_BYTES: u64 = 24 << 20;
const FLOOR_BYTES: u64 = 6 << 20;

/// A tmpfs mounted for the test, unmounted on drop.
struct Tmpfs(PathBuf);
impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn mount_tmpfs(at: &Path) -> Result<Tmpfs, String> {
    std::fs::create_dir_all(at).map_err(|e| e.to_string())?;
    let out = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={FS_BYTES}"), "tmpfs"])
        .arg(at)
        .output()
        .map_err(|e| format!("cannot run mount: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    Ok(Tmpfs(at.to_path_buf()))
}

fn avail_bytes(p: &Path) -> u64 {
    let out = Command::new("df").args(["-B1", "--output=avail"]).arg(p).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().nth(1).and_then(|l| l.trim().parse().ok()).unwrap()
}

/// High-bitrate H.264 (sensor-noise pattern, ~8 Mbit/s) so the filesystem fills in seconds.
fn make_noise_video(out: &Path) {
    let st = Command::new("gst-launch-1.0")
        .args(["-q", "videotestsrc", "num-buffers=150", "pattern=snow", "!"])
        .args(["video/x-raw,width=640,height=360,framerate=10/1", "!"])
        .args([
            "x264enc",
            "bitrate=8000",
            "speed-preset=ultrafast",
            "key-int-max=10",
            "!",
            "h264parse",
            "!",
        ])
        .args(["mp4mux", "!", "filesink"])
        .arg(format!("location={}", out.display()))
        .status()
        .unwrap();
    assert!(st.success(), "cannot make the noise video");
}

fn segments(db: &Path) -> Vec<(String, String, i64)> {
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut stmt =
        conn.prepare("SELECT camera_id, path, bytes FROM segments ORDER BY start_ms").unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn events(app: &Appliance, query: &str) -> Vec<serde_json::Value> {
    let v = app.get_json(&format!("/api/v1/events?limit=500{query}"));
    v["events"].as_array().cloned().unwrap_or_default()
}

#[test]
fn recording_survives_a_full_disk() {
    if !pets_mp4().exists() {
        eprintln!("SKIP: {} missing (run `make setup`)", pets_mp4().display());
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let mnt = work.path().join("fs");
    let _fs = match mount_tmpfs(&mnt) {
        Ok(m) => m,
        Err(e) => {
            eprintln!(
                "SKIP: cannot mount a {} MiB tmpfs here ({e}); run as root to test a full disk",
                FS_BYTES >> 20
            );
            return;
        }
    };
    let noise = work.path().join("noise.mp4");
    make_noise_video(&noise);
    let mut cams = format!(
        r#"[storage]
min_free_percent = 0
min_free_bytes = {FLOOR_BYTES}
check_interval_secs = 1

[[cameras]]
id = "pets"
url = "{}"
loop = true
detect_fps = 2
models = ["coco"]
[cameras.record]
segment_secs = 2
[[cameras.zones]]
name = "left"
points = [[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]]
[[cameras.rules]]
kind = "intrusion"
zone = "left"
classes = ["person"]
min_secs = 0.5
severity = "low"
"#,
        pets_mp4().display()
    );
    for i in 1..=3 {
        cams += &format!(
            "[[cameras]]\nid = \"noise{i}\"\nurl = \"{}\"\nloop = true\ndetect_fps = 1\nmodels = [\"coco\"]\n[cameras.record]\nsegment_secs = 2\n",
            noise.display()
        );
    }
    let data = mnt.join("data");
    let mut app = Appliance::start_at(Some(data.clone()), &cams);
    let db = data.join("gridwatch.db");

    // Phase 1: record 3× the filesystem's capacity; eviction keeps the floor free.
    let mut seen: HashMap<String, i64> = HashMap::new();
    let mut first_paths = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut min_avail = u64::MAX;
    let mut full_at = None;
    loop {
        for (_, path, bytes) in segments(&db) {
            if first_paths.len() < 5 {
                first_paths.push(path.clone());
            }
            seen.insert(path, bytes);
        }
        let written: i64 = seen.values().sum();
        min_avail = min_avail.min(avail_bytes(&mnt));
        if written as u64 >= FS_BYTES && full_at.is_none() {
            full_at = Some(time::OffsetDateTime::now_utc());
        }
        if written as u64 >= 3 * FS_BYTES {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "recorded only {written} bytes in 240 s\n{}",
            app.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let now_indexed = segments(&db);
    let written: i64 = seen.values().sum();
    println!(
        "phase 1: {:.1} MiB recorded on a {} MiB filesystem ({:.1}×), {} segments indexed now, lowest free space {:.1} MiB",
        written as f64 / 1048576.0,
        FS_BYTES >> 20,
        written as f64 / FS_BYTES as f64,
        now_indexed.len(),
        min_avail as f64 / 1048576.0
    );
    for p in &first_paths {
        assert!(!now_indexed.iter().any(|s| &s.1 == p), "oldest segment {p} was not evicted");
        assert!(!data.join(p).exists(), "evicted segment {p} still on disk");
    }
    // Events keep being stored (started or ended) after the filesystem has been filled once.
    let full_at = full_at.unwrap();
    let after_full = |e: &serde_json::Value| {
        ["started_at", "ended_at"].iter().any(|k| {
            e[*k]
                .as_str()
                .and_then(|t| time::OffsetDateTime::parse(t, &Rfc3339).ok())
                .is_some_and(|t| t > full_at)
        })
    };
    wait_for(120, "an event stored after the disk filled", || {
        events(&app, "&camera=pets").iter().any(after_full).then_some(())
    });
    assert!(
        events(&app, "&kind=storage_full").is_empty(),
        "storage_full raised although footage could be evicted"
    );
    wait_for(30, "new segments after phase 1", || {
        segments(&db).iter().any(|s| !seen.contains_key(&s.1)).then_some(())
    });

    // Phase 2: a ballast file takes everything eviction could free → storage_full.
    let media: i64 = segments(&db).iter().map(|s| s.2).sum();
    let ballast_len = (avail_bytes(&mnt) + media as u64).saturating_sub(FLOOR_BYTES / 2);
    let ballast = mnt.join("ballast.bin");
    {
        // Written as fast as eviction frees space (ENOSPC → wait and retry), for at most 30 s.
        use std::io::Write;
        let mut f = std::fs::File::create(&ballast).unwrap();
        let chunk = vec![0u8; 256 << 10];
        let (mut written, end) = (0u64, Instant::now() + Duration::from_secs(30));
        while written < ballast_len && Instant::now() < end {
            let n = (ballast_len - written).min(chunk.len() as u64) as usize;
            match f.write(&chunk[..n]) {
                Ok(k) => written += k as u64,
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        println!("phase 2: ballast of {:.1} MiB written", written as f64 / 1048576.0);
    }
    let alarms = wait_or_logs(&app, 60, "a storage_full alarm", || {
        let a = events(&app, "&kind=storage_full");
        (!a.is_empty()).then_some(a)
    });
    println!(
        "phase 2: storage_full raised for {} camera(s) with the ballast in place",
        alarms.len()
    );
    assert!(app.get("/api/v1/health", None).is_ok(), "appliance stopped answering");

    // Phase 3: space returns → alarms end and recording resumes.
    std::fs::remove_file(&ballast).unwrap();
    let before: std::collections::HashSet<String> =
        segments(&db).into_iter().map(|s| s.1).collect();
    wait_for(60, "storage_full to end", || {
        events(&app, "&kind=storage_full").iter().all(|e| e["state"] == "ended").then_some(())
    });
    wait_for(60, "recording to resume", || {
        segments(&db).iter().any(|s| !before.contains(&s.1)).then_some(())
    });
    println!("phase 3: alarm ended and recording resumed after the ballast was removed");
    assert_eq!(app.stop(), Some(0), "unclean exit\n{}", app.logs());
}

/// `wait_for` that prints the tail of the appliance's log when it times out.
fn wait_or_logs<T>(app: &Appliance, secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > end {
            let log = app.log("stderr");
            let tail: Vec<&str> = log.lines().rev().take(80).collect();
            panic!(
                "timed out after {secs} s waiting for {what}; log tail:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// A box that starts on a full disk (here: a free-space floor above what the disk has)
/// closes the record gates before the first segment; detection must still run from the
/// first frame (the record branch must not hold up the pipeline's start), events are
/// stored, and `storage_full` is raised. Restarted with room, it records again.
#[test]
fn starting_on_a_full_disk_still_detects_and_records_once_there_is_room() {
    let cams = |floor: &str| {
        format!(
            r#"[storage]
min_free_bytes = {floor}
[[cameras]]
id = "cam"
url = "{}"
loop = true
detect_fps = 3
models = ["coco"]
[cameras.record]
segment_secs = 2
[[cameras.zones]]
name = "all"
points = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]
[[cameras.rules]]
kind = "intrusion"
zone = "all"
classes = ["person"]
min_secs = 0.3
"#,
            pets_mp4().display()
        )
    };
    // 1 EB: more than any disk has free.
    let mut app = Appliance::start(&cams("1000000000000000000"));
    let db = app.data().join("gridwatch.db");
    wait_or_logs(&app, 60, "storage_full", || {
        (!events(&app, "&kind=storage_full").is_empty()).then_some(())
    });
    wait_or_logs(&app, 60, "an intrusion event while the disk is full", || {
        (!events(&app, "&kind=intrusion").is_empty()).then_some(())
    });
    let cam = app.camera("cam");
    assert_eq!(cam["state"], "online", "{cam}");
    assert!(cam["frames_analysed"].as_u64().unwrap() > 0, "{cam}");
    assert!(segments(&db).is_empty(), "nothing may be recorded while the disk is full");
    assert_eq!(app.stop(), Some(0), "unclean exit\n{}", app.logs());

    let cfg = app.dir.path().join("gridwatch.toml");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("min_free_bytes = 1000000000000000000", "min_free_bytes = 1048576");
    std::fs::write(&cfg, text).unwrap();
    app.restart();
    wait_or_logs(&app, 60, "recording after a restart with room", || {
        (!segments(&db).is_empty()).then_some(())
    });
    assert_eq!(app.stop(), Some(0), "unclean exit\n{}", app.logs());
}
