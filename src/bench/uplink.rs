//! `gridwatch bench-uplink`: how fast a backlog of changes drains to a local webhook
//! receiver, and (given a video and a model) the frame-to-upstream latency of new events
//! through the whole appliance. Prints a report; asserts nothing. See docs/performance.md.
//!
//! The receiver runs in the same process on loopback and verifies every signature with
//! [`crate::uplink::signing::verify`] (as a real receiver must), so its CPU cost is included.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::clock::SystemClock;
use crate::config::Config;
use crate::store::outbox::UplinkContext;
use crate::store::Store;
use crate::types::{BBox, Change, Detection, EventChange, Severity};
use crate::uplink::config::SinkConfig;
use crate::uplink::signing;
use crate::uplink::sink::Sink;
use crate::uplink::webhook::WebhookSink;
use crate::uplink::Uplink;

const SECRET: &str = "whsec_YmVuY2gtdXBsaW5rLXNlY3JldC1mb3ItZ3JpZHdhdGNo";

/// What the receiver saw: ids, and per delivery (receipt time, envelope JSON).
#[derive(Default)]
struct Seen {
    ids: HashSet<String>,
    deliveries: u64,
    bad: u64,
    /// (received at, change, `at`, `recorded_at`) of event deliveries (latency part).
    events: Vec<(OffsetDateTime, String, OffsetDateTime, OffsetDateTime)>,
}

struct Recv {
    seen: Mutex<Seen>,
    keep_events: bool,
}

async fn hook(State(r): State<Arc<Recv>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let now = OffsetDateTime::now_utc();
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let id = h("webhook-id");
    if signing::verify(
        SECRET,
        &id,
        &h("webhook-timestamp"),
        &h("webhook-signature"),
        &body,
        now.unix_timestamp(),
        300,
    )
    .is_err()
    {
        r.seen.lock().unwrap_or_else(|e| e.into_inner()).bad += 1;
        return StatusCode::UNAUTHORIZED;
    }
    let mut event = None;
    if r.keep_events {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
            let t = |k: &str| {
                v[k].as_str().and_then(|s| {
                    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
                })
            };
            if let (Some(change), Some(at), Some(rec)) =
                (v["change"].as_str(), t("at"), t("recorded_at"))
            {
                if v["kind"] != "camera_status" {
                    event = Some((now, change.to_string(), at, rec));
                }
            }
        }
    }
    let mut s = r.seen.lock().unwrap_or_else(|e| e.into_inner());
    s.deliveries += 1;
    s.ids.insert(id);
    if let Some(e) = event {
        s.events.push(e);
    }
    StatusCode::NO_CONTENT
}

/// A signature-verifying receiver on a loopback port (its own 1-thread runtime).
struct Receiver {
    url: String,
    recv: Arc<Recv>,
    rt: tokio::runtime::Runtime,
}

impl Receiver {
    fn start(keep_events: bool) -> anyhow::Result<Receiver> {
        let rt =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
        let recv = Arc::new(Recv { seen: Mutex::new(Seen::default()), keep_events });
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        let app =
            axum::Router::new().route("/hook", axum::routing::post(hook)).with_state(recv.clone());
        rt.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Receiver { url, recv, rt })
    }
    fn seen<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&self.recv.seen.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

fn webhook_config(url: &str) -> anyhow::Result<crate::config::WebhookConfig> {
    let text = format!("box_id = \"b\"\ndata_dir = \"/tmp/x\"\n[models]\n[[uplink.webhooks]]\nname = \"bench\"\nurl = \"{url}\"\nsecret = \"{SECRET}\"\n");
    let mut cfg = Config::parse(&text, Path::new("/")).map_err(|e| anyhow!(e))?;
    Ok(cfg.uplink.webhooks.remove(0))
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Writes `n` event changes over `cameras` cameras (incidents of started, updated, ended)
/// through `Store::apply`, as the store writer does. Returns the elapsed seconds.
fn fill(store: &Store, n: usize, cameras: usize) -> anyhow::Result<f64> {
    let t = Instant::now();
    let objects: Vec<Detection> = (0..3)
        .map(|i| {
            Detection::new(
                0,
                "person",
                0.8,
                BBox { x1: 0.1 * i as f32, y1: 0.2, x2: 0.1 * i as f32 + 0.08, y2: 0.5 },
            )
        })
        .collect();
    let mut open: Vec<Option<(Uuid, u8)>> = vec![None; cameras];
    let now = OffsetDateTime::now_utc();
    for i in 0..n {
        let cam = i % cameras;
        let (id, step) = open[cam].unwrap_or((Uuid::now_v7(), 0));
        let change = [Change::Started, Change::Updated, Change::Ended][step as usize];
        store.apply(&EventChange {
            event_id: id,
            change,
            camera_id: format!("cam{cam}"),
            grid_cell: Some("D7-0042".into()),
            kind: "crowd".into(),
            severity: Severity::Medium,
            at: now,
            objects: objects.clone(),
            snapshot: None,
            rule: Some("crowd#0".into()),
            zone: Some("plaza".into()),
            line: None,
            detail: Some(serde_json::json!({"count": 3})),
            caused_by: Instant::now(),
        })?;
        open[cam] = if step == 2 { None } else { Some((id, step + 1)) };
    }
    Ok(t.elapsed().as_secs_f64())
}

/// The drain measurement: `changes` changes recorded while the receiver is away, then
/// delivered. Prints the rate.
pub fn drain(changes: usize, cameras: usize) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("gridwatch-bench-uplink-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Store::open(&dir)?;
    store.set_uplink_context(UplinkContext {
        box_id: "bench".into(),
        public_url: "http://127.0.0.1:8080".into(),
        cameras: Default::default(),
    });
    let rx = Receiver::start(false)?;
    let cfg = webhook_config(&rx.url)?;
    let sink: Arc<dyn Sink> = Arc::new(WebhookSink::new(&cfg).map_err(|e| anyhow!(e))?);
    // Registered before the backlog is written, so all of it is the sink's to deliver.
    store.register_sinks(&[(sink.name().to_string(), sink.kind().to_string(), sink.target())])?;
    let fill_secs = fill(&store, changes, cameras)?;
    let bytes: usize =
        store.feed_page(0, 1).map(|p| p.changes.first().map(|c| c.1.len()).unwrap_or(0))?;
    println!(
        "uplink backlog: {changes} changes over {cameras} camera(s) written through Store::apply in {fill_secs:.1} s ({:.0}/s, one fsynced transaction each); envelope ≈ {bytes} bytes",
        changes as f64 / fill_secs
    );
    let t = Instant::now();
    let up = Uplink::start_sinks(&store, vec![(sink, cfg.policy())], Arc::new(SystemClock), None)?;
    let deadline = Instant::now() + Duration::from_secs(1800);
    while rx.seen(|s| s.ids.len()) < changes {
        if Instant::now() > deadline {
            return Err(anyhow!(
                "backlog not drained after 30 min: {} of {changes}",
                rx.seen(|s| s.ids.len())
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let received = t.elapsed().as_secs_f64();
    while store.uplink_status(OffsetDateTime::now_utc())?.first().map(|s| s.backlog).unwrap_or(0)
        > 0
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    let acked = t.elapsed().as_secs_f64();
    up.shutdown();
    let (deliveries, bad) = rx.seen(|s| (s.deliveries, s.bad));
    let rate = changes as f64 / received;
    println!(
        "uplink drain: {changes} changes received in {received:.2} s = {rate:.0} changes/s (all acks durable after {acked:.2} s); {deliveries} POSTs, {bad} bad signatures"
    );
    println!("drain rate / target = {rate:.0} / 1000 = {:.2}", rate / 1000.0);
    drop(rx.rt);
    store.close()?;
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Frame-to-upstream latency: the real appliance pipeline (camera thread on `video` at
/// real speed, detection with `model`, a presence rule with no minimum duration, store
/// writer, outbox, webhook worker) delivering to the local receiver for `secs` seconds.
/// For `started` and `updated` changes the envelope's `at` is the capture time of the frame
/// that caused the change, so `received − at` is the frame-to-upstream latency.
pub fn latency(video: &Path, model: &Path, secs: u64) -> anyhow::Result<()> {
    use crate::analytics::load_manifests;
    use crate::app::{start_cameras, Analytics};
    use crate::health::Registry;
    use crate::ingest::profile::HardwareProfile;
    crate::infer::runtime::init(None)?;
    crate::gst::init()?;
    let rx = Receiver::start(true)?;
    let dir =
        std::env::temp_dir().join(format!("gridwatch-bench-uplink-lat-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let model = crate::cli::manifest_path(model);
    // Presence rules at several score floors, no minimum duration and no clear delay: many
    // incidents start (and end) as people's scores cross the floors, for enough samples.
    let rules: String = [0.4, 0.5, 0.6, 0.7, 0.8]
        .iter()
        .map(|s| format!("[[cameras.rules]]\nkind = \"presence\"\nclasses = [\"person\"]\nmin_score = {s}\nmin_secs = 0.0\nclear_secs = 0.0\n"))
        .collect();
    let text = format!(
        r#"box_id = "bench"
data_dir = "{data}"
[models]
m = "{model}"
[[uplink.webhooks]]
name = "bench"
url = "{url}"
secret = "{SECRET}"
[[cameras]]
id = "cam"
url = "{video}"
loop = true
detect_fps = 5
models = ["m"]
[cameras.record]
enabled = false
{rules}"#,
        data = dir.display(),
        model = model.display(),
        url = rx.url,
        video = video.display(),
        rules = rules,
    );
    // Relative paths (video, model) are relative to the current directory.
    let cfg = Config::parse(&text, &std::env::current_dir()?).map_err(|e| anyhow!(e))?;
    let profile = HardwareProfile::load("cpu", Path::new(".")).map_err(|e| anyhow!(e))?;
    let store = Store::open(&cfg.data_dir)?;
    store.set_uplink_context(crate::app::uplink_context(&cfg));
    let registry = Registry::new();
    registry.register(crate::ingest::camera_health(&cfg.cameras[0], registry.clock().now()));
    let uplink = Uplink::start(
        &cfg.uplink,
        &cfg.box_id,
        cfg.api.listen,
        &store,
        &registry,
        Arc::new(SystemClock),
        &Err(crate::uplink::NO_MASKER.into()), // a webhook only: no VIID snapshots
    )?;
    let manifests = load_manifests(&cfg)?;
    let opts = crate::infer::detector::DetectorOptions::default();
    let analytics = Analytics::start(
        &cfg.cameras,
        &manifests,
        &opts,
        1,
        store.clone(),
        registry.clone(),
        None,
    )?;
    let stop = Arc::new(AtomicBool::new(false));
    let cams = start_cameras(&cfg, &profile, &registry, &analytics.queue, &stop, None)
        .context("starting the camera")?;
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    for c in cams {
        let _ = c.join();
    }
    analytics.shutdown();
    std::thread::sleep(Duration::from_millis(500));
    uplink.shutdown();
    let events = rx.seen(|s| s.events.clone());
    let mut total: Vec<f64> = Vec::new();
    let mut upstream: Vec<f64> = Vec::new();
    for (received, change, at, recorded) in &events {
        if change == "started" || change == "updated" {
            total.push((*received - *at).as_seconds_f64() * 1000.0);
            upstream.push((*received - *recorded).as_seconds_f64() * 1000.0);
        }
    }
    let n = total.len();
    let (p50, p95, max) =
        (percentile(&mut total, 0.5), percentile(&mut total, 0.95), percentile(&mut total, 1.0));
    let (u50, u95) = (percentile(&mut upstream, 0.5), percentile(&mut upstream, 0.95));
    println!(
        "frame-to-upstream latency ({secs} s of {}, detect_fps 5, {n} started/updated changes): p50 {p50:.0} ms, p95 {p95:.0} ms, max {max:.0} ms; of which stored→received p50 {u50:.1} ms, p95 {u95:.1} ms",
        video.file_name().and_then(|f| f.to_str()).unwrap_or("video")
    );
    println!("latency p95 / target = {p95:.0} / 2000 ms = {:.2}", p95 / 2000.0);
    store.close()?;
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
