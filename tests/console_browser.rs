//! The operator console end to end in a real browser: the real appliance records and
//! analyses a looping test video, an operator created with `gridwatch user add` logs in to
//! the console in headless Debian chromium (driven by playwright-core,
//! `tests/browser/console.mjs`), sees a new incident arrive over the live stream, plays and
//! seeks its clip, acknowledges it, marks another a false alarm with the keyboard, reloads,
//! looks at the cameras, the statistics and the playback pages, switches to Chinese (and
//! opens the console in a zh-CN browser) and logs out. No request of
//! the page may leave 127.0.0.1. Screenshots of every page land in
//! `target/test-output/console/`.
//!
//! Needs `/usr/bin/chromium`, `node` and `tests/browser/node_modules` (`make setup` installs
//! them): without them the test fails and says so. `GRIDWATCH_SKIP_BROWSER=1` skips it.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const USER: &str = "olga";
const PASSWORD: &str = "correct horse battery staple";
/// The whole browser scenario; it normally takes well under a minute.
const BROWSER_SECS: u64 = 240;

fn chromium() -> PathBuf {
    PathBuf::from(std::env::var("GW_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()))
}

/// What is missing for the browser test, if anything.
fn missing_prerequisites() -> Vec<String> {
    let mut missing = Vec::new();
    if !chromium().is_file() {
        missing.push(format!("{} (Debian package chromium)", chromium().display()));
    }
    match Command::new("node").arg("--version").output() {
        Ok(o) if o.status.success() => {}
        _ => missing.push("node (Node.js ≥ 18)".into()),
    }
    let pw = repo().join("tests/browser/node_modules/playwright-core/package.json");
    if !pw.is_file() {
        missing.push(format!("{} (npm ci in tests/browser)", pw.display()));
    }
    if !pets_mp4().is_file() {
        missing.push(format!("{} (tools/make-test-videos.sh)", pets_mp4().display()));
    }
    missing
}

/// `<target dir>/test-output/console`, emptied: the test binary is `<target>/<profile>/deps/…`.
fn output_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test binary");
    let target =
        exe.ancestors().nth(3).map(Path::to_path_buf).unwrap_or_else(|| repo().join("target"));
    let dir = target.join("test-output/console");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    dir
}

/// `gridwatch user add --role operator --password-stdin <USER>` against the running box.
fn add_operator(cfg: &Path) {
    use std::io::Write;
    let mut child = Command::new(bin())
        .args(["user", "add", "--role", "operator", "--password-stdin", USER, "--config"])
        .arg(cfg)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning gridwatch user add");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .expect("writing the password");
    let out = child.wait_with_output().expect("gridwatch user add");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "gridwatch user add failed: {err}");
    assert!(err.contains(&format!("user `{USER}` added: role operator")), "{err}");
}

/// Runs the node scenario with a deadline → (exit code, stdout, stderr).
fn run_scenario(app: &Appliance, out_dir: &Path) -> (Option<i32>, String, String) {
    let mut child = Command::new("node")
        .arg(repo().join("tests/browser/console.mjs"))
        .current_dir(repo().join("tests/browser"))
        .env("GW_BASE_URL", app.url(""))
        .env("GW_USER", USER)
        .env("GW_PASSWORD", PASSWORD)
        .env("GW_OUT_DIR", out_dir)
        .env("GW_CHROMIUM", chromium())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning node");
    // Drain both pipes on threads so a chatty browser cannot block on a full pipe.
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout")));
    let err = drain(Box::new(child.stderr.take().expect("stderr")));
    let end = Instant::now() + Duration::from_secs(BROWSER_SECS);
    let code = loop {
        if let Ok(Some(st)) = child.try_wait() {
            break st.code();
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    (code, out.join().unwrap_or_default(), err.join().unwrap_or_default())
}

#[test]
fn operator_console_in_a_real_browser() {
    let missing = missing_prerequisites();
    if std::env::var("GRIDWATCH_SKIP_BROWSER").as_deref() == Ok("1") {
        eprintln!(
            "SKIP console_browser: GRIDWATCH_SKIP_BROWSER=1{}",
            if missing.is_empty() {
                String::new()
            } else {
                format!(" (missing: {})", missing.join(", "))
            }
        );
        return;
    }
    if !missing.is_empty() {
        panic!(
            "the console browser test cannot run, missing: {}. Run `make setup` (or set GRIDWATCH_SKIP_BROWSER=1 to skip it)",
            missing.join(", ")
        );
    }

    // People walk through the middle of the PETS scene all the time: the intrusion zone
    // raises an incident every few seconds, the line counts them, clips are ready 2 s after
    // an incident ends (short segments, small pre/post roll). The calibration is a rough
    // guess at the plaza (not measured): it is there to be drawn and to give the counts a
    // speed.
    let app = Appliance::start(&format!(
        r#"[[cameras]]
id = "gate"
name = "Gate"
grid_cell = "C3"
url = "{video}"
loop = true
detect_fps = 3
models = ["coco"]
[cameras.record]
segment_secs = 2
pre_roll_secs = 1
post_roll_secs = 1
[[cameras.zones]]
name = "walkway"
points = [[0.25, 0.35], [0.75, 0.35], [0.75, 0.95], [0.25, 0.95]]
[[cameras.lines]]
name = "middle"
points = [[0.5, 0.0], [0.5, 1.0]]
directions = {{ a_to_b = "westbound", b_to_a = "eastbound" }}
[cameras.calibration]
image_points = [[0.20, 0.33], [0.75, 0.33], [0.95, 0.75], [0.05, 0.75]]
ground_points_m = [[0, 20], [16, 20], [16, 0], [0, 0]]
[[cameras.rules]]
kind = "intrusion"
zone = "walkway"
classes = ["person"]
min_secs = 0.3
clear_secs = 1
cooldown_secs = 0
severity = "medium"
[[cameras.rules]]
kind = "line_crossing"
line = "middle"
classes = ["person"]
"#,
        video = pets_mp4().display()
    ));
    let cfg = app.dir.path().join("gridwatch.toml");
    add_operator(&cfg);
    // At least one incident before the browser opens, so that besides the one that arrives
    // live there is another to mark a false alarm.
    wait_for(90, "a first incident", || {
        let ev = app.get_json("/api/v1/events?camera=gate&limit=1");
        (!ev["events"].as_array()?.is_empty()).then_some(())
    });

    let out_dir = output_dir();
    let t0 = Instant::now();
    let (code, stdout, stderr) = run_scenario(&app, &out_dir);
    let secs = t0.elapsed().as_secs_f64();
    println!("browser scenario: {secs:.1} s, screenshots in {}", out_dir.display());
    let summary: Option<serde_json::Value> = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .and_then(|l| serde_json::from_str(l).ok());
    let Some(summary) = summary.filter(|_| code == Some(0)) else {
        let tail = |s: &str, n: usize| {
            s.lines()
                .rev()
                .take(n)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n")
        };
        panic!(
            "the browser scenario failed (exit {code:?}{}):\n--- node stdout ---\n{stdout}\n--- node stderr ---\n{}\n--- appliance (tail) ---\n{}\nscreenshots in {}",
            if code.is_none() { format!(", killed after {BROWSER_SECS} s") } else { String::new() },
            tail(&stderr, 60),
            tail(&app.logs(), 40),
            out_dir.display()
        );
    };
    println!("{summary:#}");

    // What the browser did is in the database, seen from the API with another principal.
    let reviewed = &summary["reviewed"];
    for (key, want) in [("acknowledged", "acknowledged"), ("false_alarm", "false_alarm")] {
        let id = reviewed[key]
            .as_str()
            .unwrap_or_else(|| panic!("summary lacks reviewed.{key}: {summary}"));
        let ev = app.get_json(&format!("/api/v1/events/{id}"));
        assert_eq!(ev["review"], want, "{ev}");
        assert_eq!(ev["reviewed_by"].as_str(), Some(USER), "{ev}");
        if key == "acknowledged" {
            assert_eq!(ev["review_note"], reviewed["note"], "the note typed in the console: {ev}");
        }
    }
    assert_ne!(reviewed["acknowledged"], reviewed["false_alarm"]);
    let hosts: Vec<&str> = summary["hosts"]
        .as_array()
        .map(|h| h.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    assert!(!hosts.is_empty(), "{summary}");
    for h in &hosts {
        assert!(h.starts_with("127.0.0.1:") || *h == "data", "request host {h}: {summary}");
    }
    let shots: Vec<&str> = summary["screenshots"]
        .as_array()
        .map(|s| s.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    for page in [
        "login",
        "incidents",
        "incidents-1920x1080",
        "incident-clip",
        "cameras",
        "stats",
        "playback",
        "playback-zh",
        "login-zh",
        "logged-out",
    ] {
        let f = shots
            .iter()
            .find(|s| s.ends_with(&format!("-{page}.png")))
            .unwrap_or_else(|| panic!("no screenshot of {page}: {shots:?}"));
        let len = std::fs::metadata(f).map(|m| m.len()).unwrap_or(0);
        assert!(len > 5_000, "{f}: {len} bytes");
    }
}
