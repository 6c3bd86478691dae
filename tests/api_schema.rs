//! Schema-driven API fuzzing: schemathesis (pinned in tests/schemathesis/requirements.txt,
//! installed by scripts/setup.sh into third_party/pyvenv-schemathesis) against the real
//! `gridwatch run` on loopback, reading the spec the API serves (`/api/v1/openapi.json`,
//! which is docs/openapi.json). It generates valid and invalid requests for every operation
//! (settings: tests/schemathesis/schemathesis.toml) and checks each response against the spec:
//! status code, content type, headers and body schema, invalid input rejected, auth not
//! ignored. On top of that this test reads every exchange from schemathesis' HAR record and
//! asserts that no response was a 5xx, except documented 503 "busy, retry" answers, each with
//! `Retry-After`. Bounds: `GRIDWATCH_SCHEMA_EXAMPLES` examples per operation (default 25)
//! and `GRIDWATCH_SCHEMA_SECS` seconds (default 100); `GRIDWATCH_SCHEMA_SEED` (default fixed).
//! Skips, saying so, when schemathesis is not installed (`make setup` installs it).

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const PINNED: &str = include_str!("schemathesis/requirements.txt");

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(default)
}

/// The pinned schemathesis, or None (with the reason) when it is not installed.
fn schemathesis() -> Result<PathBuf, String> {
    let exe = match std::env::var_os("GRIDWATCH_SCHEMATHESIS") {
        Some(p) => PathBuf::from(p),
        None => repo().join("third_party/pyvenv-schemathesis/bin/schemathesis"),
    };
    let want = PINNED
        .lines()
        .find_map(|l| l.strip_prefix("schemathesis=="))
        .expect("requirements.txt pins schemathesis");
    let out = Command::new(&exe)
        .arg("--version")
        .output()
        .map_err(|e| format!("{} does not run ({e}); `make setup` installs it", exe.display()))?;
    let have = String::from_utf8_lossy(&out.stdout);
    if !have.trim().ends_with(want) {
        return Err(format!(
            "{} is `{}`, not the pinned {want}; `make setup` installs it",
            exe.display(),
            have.trim()
        ));
    }
    Ok(exe)
}

#[test]
fn api_conforms_to_openapi_under_schemathesis() {
    let exe = match schemathesis() {
        Ok(e) => e,
        Err(why) => {
            eprintln!("SKIP api_conforms_to_openapi_under_schemathesis: {why}");
            return;
        }
    };
    // A live camera (looping, recording, raising events), so clips, segments, snapshots and
    // the feed have something to serve while the fuzzer calls them. The fuzzer is one client
    // opening connections far faster than a person: the per-address rate limit (a defence
    // against floods, docs/security.md "Connection limits") is raised for it.
    let cams = format!(
        r#"
[api.limits]
max_new_connections_per_address_per_sec = 10000.0

[[cameras]]
id = "cam1"
url = "{mp4}"
loop = true
detect_fps = 2
models = ["coco"]
[[cameras.rules]]
kind = "presence"
classes = ["person"]
min_secs = 1.0
"#,
        mp4 = pets_mp4().display()
    );
    let a = Appliance::start(&cams);
    wait_for(60, &format!("an event\n{}", a.logs()), || {
        let (st, _, body) = a.get("/api/v1/events", Some(TOKEN)).ok()?;
        (st == 200 && String::from_utf8_lossy(&body).contains("\"id\"")).then_some(())
    });

    let examples = env_u64("GRIDWATCH_SCHEMA_EXAMPLES", 25);
    let secs = env_u64("GRIDWATCH_SCHEMA_SECS", 100);
    let seed = env_u64("GRIDWATCH_SCHEMA_SEED", 20261206);
    let har = a.dir.path().join("schemathesis.har");
    let started = Instant::now();
    let mut child = Command::new(&exe)
        .arg("--config-file")
        .arg(repo().join("tests/schemathesis/schemathesis.toml"))
        .args(["run", &a.url("/api/v1/openapi.json")])
        .args(["-H", &format!("Authorization: Bearer {TOKEN}")])
        .args(["--max-examples", &examples.to_string()])
        .args(["--max-time", &secs.to_string()])
        .args(["--seed", &seed.to_string()])
        // One worker: Python 3.11's AST constructor keeps its recursion depth per interpreter,
        // so hypothesis describing strategies on two threads at once can fail with "AST
        // constructor recursion depth mismatch" (CPython gh-106905), a runtime error of the
        // tool, not of the API. The fuzzing phase is bounded by `--max-time` either way.
        .args(["--workers", "1", "--request-timeout", "15", "--no-color"])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--generation-database", "none"])
        .args(["--report", "har", "--report-har-path"])
        .arg(&har)
        .current_dir(a.dir.path())
        .stdout(std::fs::File::create(a.dir.path().join("schemathesis.log")).unwrap())
        .stderr(std::fs::File::create(a.dir.path().join("schemathesis.err")).unwrap())
        .spawn()
        .unwrap();
    // A hard stop well past schemathesis' own budget.
    let deadline = started + Duration::from_secs(secs + 90);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("schemathesis ran past {} s", secs + 90);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let log = std::fs::read_to_string(a.dir.path().join("schemathesis.log")).unwrap_or_default();
    let err = std::fs::read_to_string(a.dir.path().join("schemathesis.err")).unwrap_or_default();
    eprintln!("schemathesis: {status} in {:.0} s", started.elapsed().as_secs_f64());
    let tail: String = log
        .lines()
        .rev()
        .take(25)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    eprintln!("{tail}");
    assert!(
        status.success(),
        "schemathesis found failures:\n{log}\n{err}\nserver log:\n{}",
        a.logs()
    );

    // Every exchange, from the HAR record: statuses, and no 5xx but a 503 with Retry-After.
    let har: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&har).expect("schemathesis wrote its HAR record"))
            .expect("HAR is JSON");
    let entries = har["log"]["entries"].as_array().expect("HAR entries");
    let mut by_status: BTreeMap<u64, u64> = BTreeMap::new();
    let mut operations = std::collections::BTreeSet::new();
    let mut bad = Vec::new();
    for e in entries {
        let status = e["response"]["status"].as_u64().unwrap_or(0);
        *by_status.entry(status).or_default() += 1;
        let method = e["request"]["method"].as_str().unwrap_or("");
        let url = e["request"]["url"].as_str().unwrap_or("");
        let path = url.split('?').next().unwrap_or("");
        operations
            .insert(format!("{method} {}", path.split('/').take(6).collect::<Vec<_>>().join("/")));
        let retry_after = e["response"]["headers"].as_array().is_some_and(|hs| {
            hs.iter().any(|h| {
                h["name"].as_str().is_some_and(|n| n.eq_ignore_ascii_case("retry-after"))
                    && h["value"]
                        .as_str()
                        .and_then(|v| v.parse::<u64>().ok())
                        .is_some_and(|s| s >= 1)
            })
        });
        if status >= 500 && !(status == 503 && retry_after) {
            let body = e["response"]["content"]["text"].as_str().unwrap_or("");
            bad.push(format!("{status} {method} {url}: {}", &body[..body.len().min(300)]));
        }
    }
    eprintln!("{} requests, statuses {by_status:?}", entries.len());
    assert!(
        bad.is_empty(),
        "{} server errors:\n{}\nserver log:\n{}",
        bad.len(),
        bad.join("\n"),
        a.logs()
    );
    // It did reach the API: many requests, answered with successes and with rejections.
    assert!(entries.len() >= 500, "only {} requests", entries.len());
    assert!(by_status.keys().any(|s| (200..300).contains(s)), "{by_status:?}");
    assert!(by_status.keys().any(|s| (400..500).contains(s)), "{by_status:?}");
    assert!(operations.len() >= 12, "{operations:?}");

    // And the box is still fine: healthy, the camera still online.
    let (st, _, _) = a.get("/api/v1/health", None).unwrap();
    assert_eq!(st, 200);
    assert_eq!(a.camera("cam1")["state"], "online", "{}", a.logs());
}
