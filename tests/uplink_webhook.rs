//! Webhook delivery against a real HTTP receiver on loopback (real SQLite outbox, real
//! sockets, the project's signature verifier on the receiving side): complete, per-camera
//! ordered, signed delivery; dead letters; and a simulated 24-hour outage (connection
//! refused, then 503s with Retry-After, then responses slower than the timeout) followed by
//! recovery, with the attempts counted.

mod uplink_support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gridwatch::clock::{Clock, SimClock, SystemClock};
use gridwatch::config::{Config, WebhookConfig};
use gridwatch::store::Store;
use gridwatch::types::{Change, EventChange, Severity};
use gridwatch::uplink::config::SinkConfig;
use gridwatch::uplink::signing;
use gridwatch::uplink::sink::Sink;
use gridwatch::uplink::webhook::WebhookSink;
use gridwatch::uplink::worker::Policy;
use gridwatch::uplink::Uplink;
use time::OffsetDateTime;
use uplink_support::{Mode, Receiver};
use uuid::Uuid;

const SECRET: &str = "whsec_dGVzdC1zZWNyZXQtZm9yLWdyaWR3YXRjaC11cGxpbms=";
const CAMERAS: [&str; 3] = ["gate", "plaza", "yard"];

fn store() -> (tempfile::TempDir, Store) {
    uplink_support::uplink_store("box-t", &CAMERAS)
}

/// The `[[uplink.webhooks]]` block of a config, parsed and validated like the real one.
fn webhook_config(url: &str, extra: &str) -> WebhookConfig {
    let text = format!(
        "box_id = \"t\"\ndata_dir = \"/tmp/x\"\n[models]\n[[uplink.webhooks]]\nname = \"city\"\nurl = \"{url}\"\nsecret = \"{SECRET}\"\n{extra}\n"
    );
    Config::parse(&text, std::path::Path::new("/")).unwrap().uplink.webhooks.remove(0)
}

fn start(
    store: &Store,
    cfg: &WebhookConfig,
    clock: Arc<dyn Clock>,
    tune: impl FnOnce(&mut Policy),
) -> Uplink {
    let sink: Arc<dyn Sink> = Arc::new(WebhookSink::new(cfg).unwrap());
    let mut policy = cfg.policy();
    policy.ack_flush = Duration::from_millis(50);
    tune(&mut policy);
    Uplink::start_sinks(store, vec![(sink, policy)], clock, None).unwrap()
}

/// Writes one incident of `cam` (started, updated, ended) through `Store::apply`.
fn incident(store: &Store, cam: &str, kind: &str, at: OffsetDateTime) {
    let id = Uuid::now_v7();
    for (i, c) in [Change::Started, Change::Updated, Change::Ended].into_iter().enumerate() {
        store
            .apply(&EventChange {
                event_id: id,
                change: c,
                camera_id: cam.into(),
                grid_cell: None,
                kind: kind.into(),
                severity: Severity::Medium,
                at: at + time::Duration::seconds(i as i64),
                objects: vec![],
                snapshot: None,
                rule: None,
                zone: None,
                line: None,
                detail: None,
                caused_by: Instant::now(),
            })
            .unwrap();
    }
}

fn wait(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < end, "timed out after {secs} s waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// All outbox envelopes, by seq.
fn outbox(store: &Store) -> Vec<serde_json::Value> {
    let page = store.feed_page(0, 1000).unwrap();
    assert!(!page.more);
    page.changes.iter().map(|(_, e)| serde_json::from_str(e).unwrap()).collect()
}

/// Every outbox change was accepted, each camera's changes first arrived in seq order, and
/// nothing arrived that is not in the outbox. Returns the accepted deliveries per id.
fn assert_complete_and_ordered(store: &Store, rx: &Receiver) -> HashMap<String, usize> {
    let want = outbox(store);
    let accepted = rx.accepted();
    let mut per_id: HashMap<String, usize> = HashMap::new();
    let mut first_order: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for g in &accepted {
        let n = per_id.entry(g.id.clone()).or_default();
        if *n == 0 {
            first_order.entry(g.camera.clone()).or_default().push(g.seq);
        }
        *n += 1;
    }
    let want_ids: HashSet<String> =
        want.iter().map(|e| e["id"].as_str().unwrap().to_string()).collect();
    let got_ids: HashSet<String> = per_id.keys().cloned().collect();
    assert_eq!(got_ids.len(), want_ids.len(), "distinct ids received vs changes recorded");
    assert_eq!(got_ids, want_ids, "after dedupe by id, exactly the recorded changes arrived");
    for (cam, seqs) in &first_order {
        let mut sorted = seqs.clone();
        sorted.sort();
        assert_eq!(seqs, &sorted, "camera {cam}: changes first arrived out of order");
        let expected: Vec<i64> = want
            .iter()
            .filter(|e| e["camera_id"] == cam.as_str())
            .map(|e| e["seq"].as_i64().unwrap())
            .collect();
        assert_eq!(seqs, &expected, "camera {cam}: every change, in seq order");
    }
    per_id
}

#[test]
fn delivers_every_change_signed_and_in_per_camera_order() {
    let (_d, store) = store();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let rx = Receiver::start(SECRET, clock.clone());
    let cfg = webhook_config(&rx.url(), "");
    let up = start(&store, &cfg, clock, |_| {});
    let now = OffsetDateTime::now_utc();
    for round in 0..4 {
        for cam in CAMERAS {
            incident(&store, cam, "presence", now + time::Duration::seconds(round * 10));
        }
    }
    store.append_camera_status("gate", false, Some("no frame for 10 s"), now).unwrap();
    let total = outbox(&store).len();
    assert_eq!(total, 37);
    wait(30, "all changes delivered", || {
        rx.accepted().iter().map(|g| &g.id).collect::<HashSet<_>>().len() == total
    });
    let per_id = assert_complete_and_ordered(&store, &rx);
    assert!(per_id.values().all(|n| *n == 1), "a healthy receiver gets each change once");
    assert_eq!(rx.bad_signatures(), 0);
    // The body is the stored envelope byte for byte, with the Standard Webhooks headers.
    let g = &rx.accepted()[0];
    let stored = store.feed_page(g.seq - 1, 1).unwrap().changes[0].1.clone();
    assert_eq!(g.body, stored);
    let h: HashMap<_, _> = g.headers.iter().cloned().collect();
    assert_eq!(h["content-type"], "application/json");
    assert!(h["webhook-signature"].starts_with("v1,"));
    assert_eq!(h["webhook-id"], g.id);
    // Delivery status: nothing pending, everything counted.
    wait(10, "acks flushed", || {
        store.uplink_status(OffsetDateTime::now_utc()).unwrap()[0].backlog == 0
    });
    let st = &store.uplink_status(OffsetDateTime::now_utc()).unwrap()[0];
    assert_eq!(
        (st.delivered_total, st.failed_attempts_total, st.dead_letter_count),
        (total as u64, 0, 0)
    );
    assert_eq!(st.target, rx.url());

    // The receiver's verifier refuses a tampered body and a replay with a stale timestamp.
    let client = reqwest::blocking::Client::new();
    let post = |body: &str, ts: i64, sig: &str| {
        client
            .post(rx.url())
            .header("webhook-id", &g.id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", sig)
            .body(body.to_string())
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    let ts: i64 = h["webhook-timestamp"].parse().unwrap();
    let tampered = g.body.replacen("\"presence\"", "\"intrusion\"", 1);
    assert_ne!(tampered, g.body);
    assert_eq!(post(&tampered, ts, &h["webhook-signature"]), 401, "tampered body");
    let old = OffsetDateTime::now_utc().unix_timestamp() - 3600;
    let key = signing::key_bytes(SECRET).unwrap();
    assert_eq!(
        post(&g.body, old, &signing::sign(&key, &g.id, old, g.body.as_bytes())),
        401,
        "stale timestamp"
    );
    assert_eq!(rx.bad_signatures(), 2);
    // The untouched original is still accepted (proves the two refusals were for cause).
    assert_eq!(
        post(
            &g.body,
            OffsetDateTime::now_utc().unix_timestamp(),
            &signing::sign(
                &key,
                &g.id,
                OffsetDateTime::now_utc().unix_timestamp(),
                g.body.as_bytes()
            )
        ),
        204
    );
    up.shutdown();
}

#[test]
fn a_rejected_change_is_dead_lettered_and_the_camera_goes_on() {
    let (_d, store) = store();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let rx = Receiver::start(SECRET, clock.clone());
    rx.reject_kind("bogus");
    let cfg = webhook_config(&rx.url(), "backoff_min_secs = 0.05\nbackoff_max_secs = 0.2");
    let up = start(&store, &cfg, clock, |_| {});
    let now = OffsetDateTime::now_utc();
    incident(&store, "gate", "presence", now);
    incident(&store, "gate", "bogus", now); // 3 changes the receiver answers 400
    incident(&store, "gate", "presence", now);
    wait(30, "dead letters and later changes", || {
        let st = &store.uplink_status(OffsetDateTime::now_utc()).unwrap()[0];
        st.dead_letter_count == 3 && st.backlog == 0
    });
    let st = &store.uplink_status(OffsetDateTime::now_utc()).unwrap()[0];
    assert_eq!(st.delivered_total, 6);
    assert!(st
        .dead_letters
        .iter()
        .all(|d| d.reason == "rejected" && d.attempts == 3 && d.last_status == Some(400)));
    assert_eq!(st.last_error_status, Some(400));
    // Each rejected change was tried exactly `dead_letter_after` times; the later incident arrived.
    let log = rx.log();
    assert_eq!(log.iter().filter(|g| g.status == 400).count(), 9);
    let accepted: Vec<i64> = rx.accepted().iter().map(|g| g.seq).collect();
    assert_eq!(accepted, [1, 2, 3, 7, 8, 9]);
    up.shutdown();
}

/// Advances the simulated clock by `total` in steps of `step`, sleeping `real` per step so
/// the worker (polling the clock every few ms) gets to run; `each` runs after every step.
fn run_sim(
    clock: &SimClock,
    total: time::Duration,
    step: time::Duration,
    real: Duration,
    mut each: impl FnMut(OffsetDateTime),
) {
    let end = clock.now() + total;
    while clock.now() < end {
        clock.advance(step);
        std::thread::sleep(real);
        each(clock.now());
    }
}

#[test]
fn survives_a_simulated_24_hour_outage_without_loss_reordering_or_hot_looping() {
    let (_d, store) = store();
    let sim = Arc::new(SimClock::new(OffsetDateTime::now_utc()));
    let clock: Arc<dyn Clock> = sim.clone();
    let rx = Receiver::start(SECRET, clock.clone());
    // Real-time request timeout 0.3 s; backoff from 1 s to 1 h (simulated), 72 h retry window.
    let cfg = webhook_config(&rx.url(), "connect_timeout_secs = 0.3\ntimeout_secs = 0.3");
    let up = start(&store, &cfg, clock.clone(), |p| p.poll = Duration::from_millis(2));
    let t_start = Instant::now();
    // Healthy first: one incident per camera arrives.
    for cam in CAMERAS {
        incident(&store, cam, "presence", sim.now());
    }
    wait(20, "first incidents", || rx.accepted().len() == 9);

    let step = time::Duration::seconds(20);
    let real = Duration::from_millis(2);
    let hour = time::Duration::hours(1);
    // Every simulated hour of the outage each camera has an incident (3 changes).
    let mut next_incident = sim.now() + hour;
    let mut emit = |now: OffsetDateTime| {
        if now >= next_incident {
            for cam in CAMERAS {
                incident(&store, cam, "presence", now);
            }
            next_incident += hour;
        }
    };
    let failed_before = store.uplink_status(sim.now()).unwrap()[0].failed_attempts_total;
    // 0–8 h: connection refused.
    rx.set_mode(Mode::Refuse);
    run_sim(&sim, time::Duration::hours(8), step, real, &mut emit);
    let refused = store.uplink_status(sim.now()).unwrap()[0].failed_attempts_total - failed_before;
    // 8–16 h: 503 with Retry-After: 7200.
    rx.set_mode(Mode::Status(503, Some(7200)));
    let b_start = sim.now();
    run_sim(&sim, time::Duration::hours(8), step, real, &mut emit);
    let b_end = sim.now();
    // 16–24 h: answers take 1 s, past the 0.3 s timeout.
    rx.set_mode(Mode::Slow(Duration::from_millis(1000)));
    run_sim(&sim, time::Duration::hours(8), step, real, &mut emit);
    let st = &store.uplink_status(sim.now()).unwrap()[0];
    let failed = st.failed_attempts_total - failed_before;
    assert!(st.backlog > 0 && st.oldest_undelivered_age_secs.unwrap() > 0.0);
    assert_eq!(st.retrying.len(), 3, "every camera is retrying its oldest change");
    assert!(st.last_error.is_some());

    // Recovery: everything arrives within at most one capped backoff (1 h) of simulated time.
    rx.set_mode(Mode::Accept);
    let total = outbox(&store).len();
    let mut done = false;
    run_sim(&sim, time::Duration::hours(3), step, Duration::from_millis(5), |_| {
        done = done || rx.accepted().iter().map(|g| &g.id).collect::<HashSet<_>>().len() == total;
    });
    wait(30, "the backlog to drain", || {
        rx.accepted().iter().map(|g| &g.id).collect::<HashSet<_>>().len() == total
    });
    let per_id = assert_complete_and_ordered(&store, &rx);
    assert_eq!(total, 9 + 24 * 9, "24 hourly incidents per camera during the outage");
    wait(10, "acks flushed", || store.uplink_status(sim.now()).unwrap()[0].backlog == 0);
    let st = &store.uplink_status(sim.now()).unwrap()[0];
    assert_eq!(
        st.dead_letter_count, 0,
        "nothing given up: the outage is shorter than max_retry_hours"
    );
    assert!(st.retrying.is_empty());

    // The attempt schedule stayed within its bounds. Per camera, only the oldest pending
    // change is tried, with delays min(1 h, 2^n s)·[0.5, 1): at most ~12 attempts to reach
    // the cap, then one per 30–60 min (≤ 48 in 24 h), fewer while Retry-After: 7200 holds.
    let per_camera = failed as f64 / CAMERAS.len() as f64;
    assert!(
        per_camera <= 12.0 + 48.0 + 2.0,
        "hot loop? {failed} failed attempts for 3 cameras in 24 h"
    );
    assert!(per_camera >= 24.0, "gave up trying? only {failed} failed attempts in 24 h");
    assert!(refused as f64 / 3.0 >= 8.0, "kept trying while refused: {refused}");
    // While 503 + Retry-After: 7200 was answered, each camera's attempts were ≥ 2 h apart.
    let mut by_cam: HashMap<String, Vec<OffsetDateTime>> = HashMap::new();
    for g in rx.log().iter().filter(|g| g.status == 503 && g.at >= b_start && g.at <= b_end) {
        by_cam.entry(g.camera.clone()).or_default().push(g.at);
    }
    assert_eq!(by_cam.len(), 3, "every camera was tried during the 503 phase");
    for (cam, times) in &by_cam {
        assert!(
            times.len() <= 5,
            "camera {cam}: {} attempts in 8 h despite Retry-After: 2 h",
            times.len()
        );
        for w in times.windows(2) {
            assert!(
                w[1] - w[0] >= time::Duration::seconds(7200) - step,
                "camera {cam}: Retry-After ignored: {:?}",
                w[1] - w[0]
            );
        }
    }
    // Duplicates only come from slow answers the receiver processed after the box gave up.
    let dups: usize = per_id.values().map(|n| n - 1).sum();
    assert!(dups <= 3 * 20, "{dups} duplicate deliveries");
    println!(
        "24 h outage: {failed} failed attempts ({refused} while refused), {dups} duplicates, {total} changes, {:.1} s real",
        t_start.elapsed().as_secs_f64()
    );
    up.shutdown();
}
