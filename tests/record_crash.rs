//! Crash safety of recording: kill -9 the real appliance at random points while it records a
//! looping H.264 file, restart it, and check after every restart that
//! * the database passes `PRAGMA integrity_check`,
//! * every indexed segment exists and decodes to its end (GStreamer),
//! * no complete file from before the kill is left unindexed (start-up reconciliation),
//! * the footage lost to the kill is ≤ 2 s (kill time − end of the last segment before it).
//!
//! 20 kills here; `tools/soak-crash.sh 200` soaks longer (`GRIDWATCH_CRASH_SEED` repeats a run).

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use common::*;
use rusqlite::{Connection, OpenFlags};
use time::OffsetDateTime;

fn kills() -> usize {
    std::env::var("GRIDWATCH_CRASH_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(20)
}

/// xorshift64*: reproducible random kill points from a printed seed.
struct Rng(u64);
impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// `<start ms>-<fragment>.mp4` → start ms.
fn name_ms(p: &Path) -> Option<i64> {
    p.file_stem()?.to_str()?.split('-').next()?.parse().ok()
}

fn mp4_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            mp4_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "mp4") {
            out.push(p);
        }
    }
}

#[test]
fn kill9_while_recording_keeps_index_and_files_consistent() {
    if !pets_mp4().exists() {
        eprintln!("SKIP: {} missing (run `make setup`)", pets_mp4().display());
        return;
    }
    let cams = format!(
        r#"[[cameras]]
id = "cam"
url = "{}"
loop = true
detect_fps = 2
models = ["coco"]
[cameras.record]
segment_secs = 3
"#,
        pets_mp4().display()
    );
    let seed = std::env::var("GRIDWATCH_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
                as u64
                | 1
        });
    println!("seed {seed} (GRIDWATCH_CRASH_SEED={seed} repeats these kill points)");
    let mut rng = Rng(seed);
    let mut app = Appliance::start(&cams);
    let data = app.data();
    let db = data.join("gridwatch.db");
    let mut decoded: HashSet<String> = HashSet::new();
    let mut losses = Vec::new();
    for k in 1..=kills() {
        let run_secs = 1.5 + 5.0 * rng.next_f64();
        std::thread::sleep(Duration::from_secs_f64(run_secs));
        let kill_ms = now_ms();
        app.kill9();
        app.restart(); // the API answers only after reconciliation
        let report = app
            .log("stdout")
            .lines()
            .find(|l| l.contains("recordings reconciled"))
            .map(|l| l.trim().to_string())
            .unwrap_or_default();

        let conn = Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!(check, "ok", "kill {k}: integrity_check");
        let rows: Vec<(String, i64, i64)> = conn
            .prepare("SELECT path, start_ms, end_ms FROM segments WHERE camera_id = 'cam' ORDER BY start_ms")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let indexed: HashSet<&str> = rows.iter().map(|r| r.0.as_str()).collect();

        // Every indexed segment exists and plays to its end.
        for (path, _, _) in &rows {
            let abs = data.join(path);
            assert!(abs.is_file(), "kill {k}: indexed segment {path} is missing");
            if decoded.insert(path.clone()) {
                let rep = gridwatch::record::probe::decode_check(&abs).unwrap_or_else(|e| {
                    panic!("kill {k}: indexed segment {path} does not decode: {e}")
                });
                assert!(rep.frames_decoded > 0, "kill {k}: {path} decoded no frame");
            }
        }
        // Files from before the kill are all indexed (or were dropped as unrecoverable).
        let mut files = Vec::new();
        mp4_files(&data.join("recordings"), &mut files);
        for f in &files {
            let rel = f.strip_prefix(&data).unwrap().to_str().unwrap();
            let started = name_ms(f).unwrap_or_else(|| panic!("unexpected file name {rel}"));
            assert!(
                indexed.contains(rel) || started > kill_ms,
                "kill {k}: {rel} (started {started}, killed at {kill_ms}) was left unindexed after reconciliation"
            );
        }
        // Footage lost: from the end of the last segment that started before the kill.
        let last_end = rows.iter().filter(|r| r.1 < kill_ms).map(|r| r.2).max();
        let last_end = last_end.unwrap_or_else(|| {
            panic!("kill {k}: no footage recorded before the kill\n{}", app.logs())
        });
        let lost = (kill_ms - last_end).max(0) as f64 / 1000.0;
        println!("kill {k:2}: after {run_secs:.1} s of recording, lost {lost:.2} s; {} segments indexed; {report}", rows.len());
        assert!(lost <= 2.0, "kill {k}: {lost:.2} s of footage lost (limit 2 s)");
        losses.push(lost);
    }
    app.stop();
    let n = losses.len() as f64;
    let mean = losses.iter().sum::<f64>() / n;
    let max = losses.iter().cloned().fold(0.0, f64::max);
    println!(
        "{} kills: footage lost per kill mean {mean:.2} s, max {max:.2} s; {} segments decoded",
        losses.len(),
        decoded.len()
    );
}
