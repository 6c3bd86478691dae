//! Crash safety of the uplink with the real appliance (`gridwatch run`: GStreamer, ONNX
//! Runtime, rules, SQLite, HTTP): a backlog of undelivered changes builds while the
//! receiver answers 503, the appliance is killed with SIGKILL and restarted twice, then the
//! receiver recovers. Nothing recorded is lost, nothing is reordered, and the pull feed
//! (paged, and long-polled) serves the same changes.

mod common;
mod uplink_support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{wait_for, Appliance};
use gridwatch::clock::SystemClock;
use time::OffsetDateTime;
use uplink_support::{Mode, Receiver};

const SECRET: &str = "whsec_Y3Jhc2gtdGVzdC1zZWNyZXQtZm9yLXRoZS11cGxpbms=";

fn config(url: &str) -> String {
    let video = common::pets_mp4();
    // `walk` plays the clip at its real speed (~80 s, events all along); `road` as fast as
    // it can be analysed (done in seconds). Neither loops, so the runs end with no change.
    let cam = |id: &str, class: &str, realtime: bool| {
        format!(
            r#"[[cameras]]
id = "{id}"
url = "{video}"
realtime = {realtime}
detect_fps = 5
detect_width = 320
models = ["coco"]
lat = 31.2
lon = 121.4
[[cameras.rules]]
kind = "presence"
classes = ["{class}"]
min_secs = 0.0
clear_secs = 0.5
[cameras.record]
enabled = false
"#,
            video = video.display()
        )
    };
    format!(
        r#"[uplink]
public_url = "https://box.example"
[[uplink.webhooks]]
name = "city"
url = "{url}"
secret = "{SECRET}"
backoff_min_secs = 0.2
backoff_max_secs = 1.0
timeout_secs = 2.0
{}{}"#,
        cam("walk", "person", true),
        cam("road", "car", false)
    )
}

fn uplink(a: &Appliance) -> serde_json::Value {
    a.get_json("/api/v1/uplink")["sinks"][0].clone()
}

/// Every change of the feed, paging with `limit` (checks the cursor contract on the way).
fn feed(a: &Appliance, limit: u32) -> Vec<serde_json::Value> {
    let (mut after, mut out) = (0i64, Vec::new());
    loop {
        let page = a.get_json(&format!("/api/v1/feed?after={after}&limit={limit}"));
        let changes = page["changes"].as_array().unwrap().clone();
        assert!(changes.len() <= limit as usize);
        for c in &changes {
            assert!(c["seq"].as_i64().unwrap() > after, "feed went backwards");
            after = c["seq"].as_i64().unwrap();
        }
        assert_eq!(page["next"].as_i64().unwrap(), after);
        out.extend(changes);
        if !page["more"].as_bool().unwrap() {
            return out;
        }
    }
}

#[test]
fn kill9_twice_with_a_backlog_loses_and_reorders_nothing() {
    let clock = Arc::new(SystemClock);
    let rx = Receiver::start(SECRET, clock);
    let mut a = Appliance::start(&config(&rx.url()));

    // Run 1: the receiver takes a few changes, then answers 503 and a backlog builds.
    wait_for(120, "first deliveries", || (rx.accepted().len() >= 2).then_some(()));
    rx.set_mode(Mode::Status(503, None));
    wait_for(120, "a backlog", || (uplink(&a)["backlog"].as_u64().unwrap_or(0) >= 3).then_some(()));
    a.kill9();

    // Run 2: still 503; the restart adds changes (interrupted events ended, cameras online).
    let before = rx.log().len();
    a.restart();
    let backlog1 = uplink(&a)["backlog"].as_u64().unwrap();
    assert!(backlog1 >= 3, "backlog lost across kill -9: {backlog1}");
    wait_for(120, "more changes and retries", || {
        let u = uplink(&a);
        (u["backlog"].as_u64().unwrap() > backlog1 && rx.log().len() > before).then_some(())
    });
    a.kill9();

    // Run 3: a long-poll sees the first new change within a second; then the receiver recovers.
    a.restart();
    let last = a.get_json("/api/v1/uplink")["last_seq"].as_i64().unwrap();
    let t0 = Instant::now();
    let page = a.get_json(&format!("/api/v1/feed?after={last}&wait_secs=60"));
    let answered = OffsetDateTime::now_utc();
    let first = &page["changes"][0];
    assert!(first["seq"].as_i64().unwrap() > last, "{page}");
    let recorded = OffsetDateTime::parse(
        first["recorded_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let lag = answered - recorded;
    assert!(
        lag < time::Duration::seconds(1),
        "long-poll answered {lag} after the change was recorded"
    );
    assert!(t0.elapsed() < Duration::from_secs(60));
    rx.set_mode(Mode::Accept);
    // The files end (cameras go offline); then everything recorded must be delivered.
    wait_for(240, "both cameras to finish and the backlog to drain", || {
        let cams_done = ["walk", "road"].iter().all(|c| a.camera(c)["state"] == "offline");
        (cams_done && uplink(&a)["backlog"].as_u64() == Some(0)).then_some(())
    });

    let all = feed(&a, 7);
    assert_eq!(all, feed(&a, 1000), "paging does not change what the feed serves");
    let seqs: Vec<i64> = all.iter().map(|c| c["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    let ids: HashSet<&str> = all.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), all.len(), "one id per change");

    // Every recorded change arrived (after dedupe by id), and each camera's changes first
    // arrived in seq order.
    let accepted = rx.accepted();
    let mut first_seen: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for g in &accepted {
        let n = seen.entry(g.id.clone()).or_default();
        if *n == 0 {
            first_seen.entry(g.camera.clone()).or_default().push(g.seq);
        }
        *n += 1;
    }
    let got: HashSet<&str> = seen.keys().map(String::as_str).collect();
    let missing: Vec<&&str> = ids.difference(&got).collect();
    assert!(missing.is_empty(), "{} change(s) never delivered: {missing:?}", missing.len());
    assert_eq!(got.len(), ids.len(), "received ids that were never recorded");
    for cam in ["walk", "road"] {
        let want: Vec<i64> = all
            .iter()
            .filter(|c| c["camera_id"] == cam)
            .map(|c| c["seq"].as_i64().unwrap())
            .collect();
        assert_eq!(first_seen.get(cam), Some(&want), "camera {cam}: lost or reordered");
    }
    let statuses =
        all.iter().filter(|c| c["kind"] == "camera_status" && c["change"] == "online").count();
    assert!(statuses >= 6, "each of 3 runs reports 2 cameras online: {statuses}");
    let e = all.iter().find(|c| c["kind"] == "presence").unwrap();
    assert_eq!((e["box_id"].as_str(), e["lat"].as_f64()), (Some("e2e"), Some(31.2)));
    assert!(
        e["snapshot_url"]
            .as_str()
            .is_none_or(|u| u.starts_with("https://box.example/api/v1/events/")),
        "{e}"
    );
    let dups: usize = seen.values().map(|n| n - 1).sum();
    println!(
        "{} changes over 3 runs (2 × kill -9), {dups} redelivered, {} failed attempts",
        all.len(),
        uplink(&a)["failed_attempts_total"]
    );
    assert_eq!(rx.bad_signatures(), 0);
    assert_eq!(a.stop(), Some(0), "{}", a.logs());

    // After the clean stop (which ends the events still open), each event's changes are
    // well formed across the crashes: started first, ended exactly once, last.
    let store = gridwatch::store::Store::open(&a.data()).unwrap();
    let page = store.feed_page(0, 10_000).unwrap();
    let stored: Vec<serde_json::Value> =
        page.changes.iter().map(|(_, e)| serde_json::from_str(e).unwrap()).collect();
    assert_eq!(&stored[..all.len()], &all[..], "the outbox kept exactly what the feed served");
    let mut per_event: BTreeMap<String, Vec<String>> = BTreeMap::new();
    // Event changes only (not camera status, nor an hour of open data).
    for c in stored.iter().filter(|c| c["event_id"].is_string()) {
        per_event
            .entry(c["event_id"].as_str().unwrap().into())
            .or_default()
            .push(c["change"].as_str().unwrap().into());
    }
    assert!(!per_event.is_empty());
    for (ev, changes) in &per_event {
        assert_eq!(changes.first().map(String::as_str), Some("started"), "event {ev}: {changes:?}");
        assert_eq!(changes.iter().filter(|c| *c == "ended").count(), 1, "event {ev}: {changes:?}");
        assert_eq!(changes.last().map(String::as_str), Some("ended"), "event {ev}: {changes:?}");
    }
}
