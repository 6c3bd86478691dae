//! Wires the stages together: camera threads (ingest) → FrameQueue → inference workers
//! (detect + rules) → store writer thread; the API runs on a small tokio runtime.
//! See docs/architecture.md for the thread/task map.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{anyhow, Context};

use crate::analytics::{load_manifests, watch_health, CameraAnalytics, Detect, Detectors};
use crate::config::{CameraConfig, Config};
use crate::health::{Registry, StreamRole};
use crate::infer::detector::DetectorOptions;
use crate::infer::manifest::ModelManifest;
use crate::infer::queue::FrameQueue;
use crate::ingest::gst::GstOpener;
use crate::ingest::profile::{HardwareProfile, PipelineMode, RecordMode, RecordPlan};
use crate::ingest::{supervise_stream, SuperviseOptions};
use crate::record::{RecEvent, Recorder};
use crate::redact::redact_url;
use crate::store::outbox::{CameraMeta, UplinkContext};
use crate::store::Store;
use crate::types::{CountDelta, EventChange, OccupancyDelta};

/// Latency and throughput samples shared by workers and the writer (bench and metrics).
#[derive(Default)]
pub struct Stats {
    pub analysed: std::sync::atomic::AtomicU64,
    /// Analysed frames the camera's models ran on (the others coasted: the motion gate).
    pub detected: std::sync::atomic::AtomicU64,
    /// Capture → rules evaluated, per analysed frame (ms).
    pub frame_latency_ms: Mutex<Vec<f32>>,
    /// Capture of the causing frame → event change committed to the DB (ms).
    pub event_latency_ms: Mutex<Vec<f32>>,
    pub events_stored: std::sync::atomic::AtomicU64,
}

const MAX_SAMPLES: usize = 100_000;
/// How often the health watch reads camera health for `camera_offline`.
const HEALTH_PERIOD: Duration = Duration::from_millis(500);

fn sample(v: &Mutex<Vec<f32>>, x: f32) {
    let mut v = v.lock().unwrap_or_else(|e| e.into_inner());
    if v.len() < MAX_SAMPLES {
        v.push(x);
    }
}

/// Inference workers, rule engines and the store writer.
pub struct Analytics {
    pub queue: Arc<FrameQueue>,
    pub stats: Arc<Stats>,
    workers: Vec<JoinHandle<()>>,
    writer: Option<JoinHandle<()>>,
    engines: Arc<Vec<CameraAnalytics>>,
    tx: Option<mpsc::Sender<StoreMsg>>,
    /// The `camera_offline` health watch (only when a camera has that rule): stop flag, thread.
    health_watch: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
    /// Ends open incidents at shutdown (the registry's clock).
    clock: Arc<dyn crate::clock::Clock>,
}

/// What the inference workers hand to the store writer.
pub enum StoreMsg {
    Event(Box<EventChange>),
    /// Line-crossing counts of one frame (upserted into 1-minute buckets).
    Counts(Vec<CountDelta>),
    /// Zone occupancy of completed 1-minute buckets (upserted).
    Occupancy(Vec<OccupancyDelta>),
}

impl Analytics {
    /// Starts `workers` inference threads (each with its own session per model) and the
    /// store writer, which tells `clips` (the recorder) about every ended event. Fails
    /// before starting anything if a model cannot be loaded. The frame queue has one slot per
    /// camera, lossless for the cameras whose [`CameraConfig::lossless`] says so.
    pub fn start(
        cameras: &[CameraConfig],
        manifests: &HashMap<String, ModelManifest>,
        opts: &DetectorOptions,
        workers: usize,
        store: Store,
        registry: Registry,
        clips: Option<mpsc::Sender<RecEvent>>,
    ) -> anyhow::Result<Analytics> {
        let detector_sets = (0..workers)
            .map(|_| Detectors::load(manifests, cameras, opts))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let lossless: Vec<bool> = cameras.iter().map(CameraConfig::lossless).collect();
        let queue = Arc::new(FrameQueue::new(&lossless));
        let stats = Arc::new(Stats::default());
        let engines: Arc<Vec<CameraAnalytics>> =
            Arc::new(cameras.iter().map(CameraAnalytics::new).collect());
        let (tx, rx) = mpsc::channel::<StoreMsg>();

        let writer = {
            let stats = stats.clone();
            std::thread::Builder::new()
                .name("store-writer".into())
                .spawn(move || write_events(rx, store, stats, clips))?
        };
        let health_watch = if engines.iter().any(CameraAnalytics::watches_health) {
            let stop = Arc::new(AtomicBool::new(false));
            let (stop2, registry, tx, engines) =
                (stop.clone(), registry.clone(), tx.clone(), engines.clone());
            let h = std::thread::Builder::new().name("health-watch".into()).spawn(move || {
                watch_health(
                    &engines,
                    &registry,
                    &*registry.clock(),
                    &stop2,
                    HEALTH_PERIOD,
                    &mut |c| {
                        let _ = tx.send(StoreMsg::Event(Box::new(c)));
                    },
                )
            })?;
            Some((stop, h))
        } else {
            None
        };
        let mut handles = Vec::new();
        for (w, detectors) in detector_sets.into_iter().enumerate() {
            let worker = Worker {
                queue: queue.clone(),
                stats: stats.clone(),
                engines: engines.clone(),
                registry: registry.clone(),
                tx: tx.clone(),
                detectors,
            };
            handles.push(
                std::thread::Builder::new()
                    .name(format!("infer-{w}"))
                    .spawn(move || worker.run())?,
            );
        }
        Ok(Analytics {
            queue,
            stats,
            workers: handles,
            writer: Some(writer),
            engines,
            tx: Some(tx),
            health_watch,
            clock: registry.clock(),
        })
    }

    /// Drains the queue, ends open incidents, and waits until every change is stored.
    pub fn shutdown(mut self) {
        self.queue.close();
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
        if let Some((stop, h)) = self.health_watch.take() {
            stop.store(true, Ordering::Relaxed);
            let _ = h.join();
        }
        let now = self.clock.now();
        if let Some(tx) = self.tx.take() {
            for cam in self.engines.iter() {
                let done = cam.finish(now);
                for c in done.changes {
                    let _ = tx.send(StoreMsg::Event(Box::new(c)));
                }
                if !done.counts.is_empty() {
                    let _ = tx.send(StoreMsg::Counts(done.counts));
                }
                if !done.occupancy.is_empty() {
                    let _ = tx.send(StoreMsg::Occupancy(done.occupancy));
                }
            }
        }
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

/// One inference worker: takes frames from the queue, runs the camera's models, then its
/// tracker and rules, and hands events, counts and occupancy to the store writer.
struct Worker {
    queue: Arc<FrameQueue>,
    stats: Arc<Stats>,
    engines: Arc<Vec<CameraAnalytics>>,
    registry: Registry,
    tx: mpsc::Sender<StoreMsg>,
    detectors: Detectors,
}

impl Worker {
    fn run(mut self) {
        while let Some(job) = self.queue.pop() {
            self.analyse(job.camera, job.frame);
            self.queue.done(job.camera);
        }
    }

    fn analyse(&mut self, camera: usize, frame: crate::types::Frame) {
        let cam = &self.engines[camera];
        let captured = frame.captured_instant;
        let out = cam.analyse(Detect::Run(&mut self.detectors), frame);
        let infer_ms = out.tracks.detections.infer_ms as f64;
        let dropped = self.queue.dropped(camera);
        self.registry.update(cam.camera_id(), |h| {
            h.frames_analysed += 1;
            h.frames_dropped = dropped;
            h.infer_ms =
                if h.infer_ms == 0.0 { infer_ms } else { 0.9 * h.infer_ms + 0.1 * infer_ms };
        });
        sample(&self.stats.frame_latency_ms, captured.elapsed().as_secs_f32() * 1000.0);
        self.stats.analysed.fetch_add(1, Ordering::Relaxed);
        self.stats.detected.fetch_add(u64::from(out.detected), Ordering::Relaxed);
        for c in out.changes {
            let _ = self.tx.send(StoreMsg::Event(Box::new(c)));
        }
        if !out.counts.is_empty() {
            let _ = self.tx.send(StoreMsg::Counts(out.counts));
        }
        if !out.occupancy.is_empty() {
            let _ = self.tx.send(StoreMsg::Occupancy(out.occupancy));
        }
    }
}

/// The store writer: applies messages in order, retrying transient failures so that
/// nothing the rules produced is lost while the process runs.
fn write_events(
    rx: mpsc::Receiver<StoreMsg>,
    store: Store,
    stats: Arc<Stats>,
    clips: Option<mpsc::Sender<RecEvent>>,
) {
    for msg in rx {
        match msg {
            StoreMsg::Event(c) => {
                let what = format!("event change {:?} of {}", c.change, c.event_id);
                if let Some(ev) = write_with_retry(&store, &what, || store.apply(&c)) {
                    sample(&stats.event_latency_ms, c.caused_by.elapsed().as_secs_f32() * 1000.0);
                    stats.events_stored.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(
                        camera = %ev.camera_id, kind = %ev.kind, seq = ev.seq, id = %ev.id,
                        "event {:?}", c.change
                    );
                    if let (Some(tx), crate::types::Change::Ended) = (&clips, c.change) {
                        let _ = tx.send(RecEvent::EventEnded {
                            event_id: ev.id,
                            camera_id: ev.camera_id.clone(),
                        });
                    }
                }
            }
            StoreMsg::Counts(rows) => {
                write_with_retry(&store, &format!("{} line count(s)", rows.len()), || {
                    store.add_counts(&rows)
                });
            }
            StoreMsg::Occupancy(rows) => {
                write_with_retry(&store, &format!("{} zone occupancy row(s)", rows.len()), || {
                    store.add_occupancy(&rows)
                });
            }
        }
    }
}

/// Runs a store write, retrying transient failures (5 attempts, 0.1 s doubling backoff). A
/// full filesystem first releases the database's reserve space (retention then evicts).
fn write_with_retry<T>(
    store: &Store,
    what: &str,
    mut f: impl FnMut() -> Result<T, crate::store::StoreError>,
) -> Option<T> {
    let mut delay = Duration::from_millis(100);
    for attempt in 1.. {
        match store.with_reserve(&mut f) {
            Ok(v) => return Some(v),
            Err(e) if attempt < 5 => {
                tracing::warn!("storing {what} failed (attempt {attempt}): {e}");
                std::thread::sleep(delay);
                delay *= 2;
            }
            Err(e) => {
                tracing::error!("giving up storing {what}: {e}");
                return None;
            }
        }
    }
    None
}

/// Starts one supervised ingest thread per enabled camera; cameras that record get the
/// record branch in their pipeline when `recorder` is given. A camera with a `detect_url`
/// gets two threads, one per connection: its detect stream decoded for analysis (`cam-<id>`)
/// and, when it records, its main stream recorded as is (`rec-<id>`); their health is kept
/// per stream (docs/design/0036). A lossless camera (an unpaced
/// file, [`CameraConfig::lossless`]) gets a pipeline that waits instead of dropping, its
/// frames stamped with their video time; `queue.push` then blocks this camera's thread only.
pub fn start_cameras(
    cfg: &Config,
    profile: &HardwareProfile,
    registry: &Registry,
    queue: &Arc<FrameQueue>,
    shutdown: &Arc<AtomicBool>,
    recorder: Option<(&Recorder, &Store)>,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let mut handles = Vec::new();
    for (idx, cam) in cfg.cameras.iter().enumerate() {
        if !cam.enabled {
            continue;
        }
        let source =
            cam.source(&cfg.base_dir).map_err(|e| anyhow!("camera `{}`: url: {e}", cam.id))?;
        let detect_source = cam
            .detect_source(&cfg.base_dir)
            .map_err(|e| anyhow!("camera `{}`: detect_url: {e}", cam.id))?;
        let separate = cam.detect_url.is_some();
        let is_file = matches!(source, crate::config::Source::File(_));
        let lossless = cam.lossless();
        let mode = PipelineMode {
            realtime: cam.realtime && is_file,
            drop: !lossless,
            max_fps: cam.detect_fps,
        };
        let record = recorder.and_then(|(r, store)| r.spec(store, cam));
        let plan = record.as_ref().map(|spec| RecordPlan {
            mode: record_mode(cam, &source),
            segment_ns: spec.segment_ns,
        });
        let opts = SuperviseOptions {
            camera_id: cam.id.clone(),
            loop_file: cam.loop_file && is_file,
            live: !is_file,
            stall_timeout: Duration::from_secs_f64(cam.stall_timeout_secs),
            backoff_min: Duration::from_secs_f64(cam.reconnect_min_secs),
            backoff_max: Duration::from_secs_f64(cam.reconnect_max_secs),
        };
        let camera_id: Arc<str> = Arc::from(cam.id.as_str());
        let (detect_record, role) = match (separate, record, plan) {
            (true, Some(spec), Some(plan)) => {
                let description =
                    profile.record_pipeline(&source, &cam.codec, plan).ok_or_else(|| {
                        anyhow!(
                            "camera `{}`: url: recorded beside a detect_url, the main stream \
                             must be RTSP or an H.264/H.265 file (it is never decoded)",
                            cam.id
                        )
                    })?;
                tracing::info!(camera = %cam.id, "main stream pipeline: {}", redact_url(&description));
                let opener = GstOpener {
                    camera_id: camera_id.clone(),
                    description,
                    record: Some(spec),
                    skip_nonref_fps: None,
                    decoder_threads: 0, // the main stream is never decoded
                };
                let (opts, registry, shutdown) = (opts.clone(), registry.clone(), shutdown.clone());
                handles.push(std::thread::Builder::new().name(format!("rec-{}", cam.id)).spawn(
                    move || {
                        let clock = registry.clock();
                        let main = StreamRole::Main;
                        supervise_stream(
                            &opener,
                            &opts,
                            main,
                            &registry,
                            &*clock,
                            &shutdown,
                            &mut |_| {},
                        )
                    },
                )?);
                (None, StreamRole::Detect)
            }
            (true, _, _) => (None, StreamRole::Detect),
            (false, record, plan) => (record.zip(plan), StreamRole::Shared),
        };
        let (record, plan) = detect_record.unzip();
        let description = profile.pipeline_for(cam, &detect_source, mode, plan);
        tracing::info!(camera = %cam.id, "pipeline: {}", redact_url(&description));
        // Pictures nothing references are not decoded when detection samples the stream
        // (live and paced cameras at a detect_fps); unpaced files analyse every tick exactly.
        let skip_nonref_fps = (!lossless && cam.detect_fps > 0.0).then_some(cam.detect_fps);
        let decoder_threads = profile.elements.decoder_threads;
        let opener = GstOpener { camera_id, description, record, skip_nonref_fps, decoder_threads };
        let (registry, queue, shutdown) = (registry.clone(), queue.clone(), shutdown.clone());
        let mut video_time = lossless.then(VideoTime::default);
        handles.push(std::thread::Builder::new().name(format!("cam-{}", cam.id)).spawn(
            move || {
                let clock = registry.clock();
                supervise_stream(
                    &opener,
                    &opts,
                    role,
                    &registry,
                    &*clock,
                    &shutdown,
                    &mut |mut f| {
                        if let Some(v) = &mut video_time {
                            v.stamp(&mut f);
                        }
                        queue.push(idx, f);
                    },
                )
            },
        )?);
    }
    Ok(handles)
}

/// Stamps the frames of an unpaced file with video time: the first frame's capture time plus
/// the frame's PTS, so rule durations (dwell, stalls, buckets) are in video time however fast
/// the file is analysed. When the PTS goes back (the file restarts with `loop = true`), the
/// video time carries on from the last frame (or from now, if that is later).
#[derive(Default)]
struct VideoTime {
    /// Capture time of PTS 0 (None until the first frame with a PTS).
    origin: Option<time::OffsetDateTime>,
    last: Option<(u64, time::OffsetDateTime)>,
}

impl VideoTime {
    fn stamp(&mut self, f: &mut crate::types::Frame) {
        let Some(pts) = f.pts_ns else { return };
        let pts_d = time::Duration::nanoseconds(pts.min(i64::MAX as u64) as i64);
        let origin = match (self.origin, self.last) {
            (Some(o), Some((last_pts, _))) if pts >= last_pts => o,
            (_, Some((_, last_at))) => {
                f.captured_at.max(last_at + time::Duration::milliseconds(1)) - pts_d
            }
            (_, None) => f.captured_at - pts_d,
        };
        self.origin = Some(origin);
        f.captured_at = origin + pts_d;
        self.last = Some((pts, f.captured_at));
    }
}

/// How a camera's stream is recorded: H.264/H.265 as is, anything else encoded once.
fn record_mode(cam: &CameraConfig, source: &crate::config::Source) -> RecordMode {
    use crate::config::Source;
    let encode = RecordMode::Encode { bitrate_kbps: cam.record.encode_bitrate_kbps };
    match source {
        Source::Rtsp(_) => match cam.codec.as_str() {
            "h264" => RecordMode::Passthrough(Some("h264")),
            "h265" => RecordMode::Passthrough(Some("h265")),
            _ => RecordMode::Passthrough(None),
        },
        Source::V4l2(_) => encode,
        Source::File(p) => match crate::ingest::gst::discover_codec(p) {
            Ok(Some(codec)) => RecordMode::Passthrough(Some(codec)),
            Ok(None) => {
                tracing::info!(camera = %cam.id, "source is not H.264/H.265: recording encodes it once to H.264");
                encode
            }
            Err(e) => {
                tracing::warn!(camera = %cam.id, "cannot inspect {}: {e}; recording encodes it once", p.display());
                encode
            }
        },
    }
}

/// The envelope context of a config: box id, `uplink.public_url`, camera positions.
pub fn uplink_context(cfg: &Config) -> UplinkContext {
    UplinkContext {
        box_id: cfg.box_id.clone(),
        public_url: match cfg.uplink.public_url {
            Some(_) => cfg.uplink.public_url(cfg.api.listen),
            // Unset: the API's own address, over https when it serves TLS.
            None => format!("{}://{}", cfg.api.scheme(), cfg.api.listen),
        },
        cameras: cfg
            .cameras
            .iter()
            .map(|c| {
                let meta = CameraMeta {
                    grid_cell: c.grid_cell.clone(),
                    lat: c.lat,
                    lon: c.lon,
                    records: c.records(&cfg.base_dir),
                };
                (c.id.clone(), meta)
            })
            .collect(),
    }
}

/// `gridwatch run`: everything until Ctrl-C / SIGTERM, then a graceful shutdown.
pub fn run(cfg: Config) -> anyhow::Result<()> {
    // Before anything opens files: cameras, recorder and store get the whole hard limit.
    let fd_limit = crate::api::raise_fd_limit().context("reading the open-file limit")?;
    let profile = HardwareProfile::for_config(&cfg).map_err(|e| anyhow!(e))?;
    if !profile.tested {
        tracing::warn!("hardware profile `{}` is marked untested", profile.name);
    }
    let ort = crate::infer::runtime::init(cfg.inference.ort_library.as_deref())?;
    tracing::info!("ONNX Runtime: {}", ort.display());
    crate::gst::init()?;
    let manifests = load_manifests(&cfg)?;
    let clock: Arc<dyn crate::clock::Clock> = Arc::new(crate::clock::SystemClock);
    let store = Store::open(&cfg.data_dir)
        .with_context(|| format!("opening data dir {}", cfg.data_dir.display()))?;
    store.set_clock(clock.clone());
    store.set_uplink_context(uplink_context(&cfg));
    // The evidence signing key (docs/security.md): made by the first run, 0600.
    match crate::evidence::BoxKey::load_or_create(store.data_dir()) {
        Ok(k) => tracing::info!("evidence signing key: SHA-256 {}", k.public().fingerprint()),
        Err(e) => tracing::error!("evidence signing key: {e}; evidence exports will fail"),
    }
    store.end_interrupted()?;
    let report = crate::record::reconcile::reconcile(&store)?;
    if !report.is_noop() {
        println!("  recordings reconciled after an unclean stop: {report}");
    }
    let token_note = ensure_token(&cfg, &store)?;
    let tls = api_tls(&cfg)?;

    let registry = camera_registry(&cfg, clock.clone());
    // One masker for the API's media and the uplink's VIID snapshots (fail closed in both).
    let masker = crate::masking::Masker::from_config(&cfg, &detector_options(&cfg, &profile))
        .map(Arc::new)
        .inspect_err(|e| {
            tracing::error!("masking cannot run, masked pictures and video are refused: {e}")
        });
    let uplink = crate::uplink::Uplink::start(
        &cfg.uplink,
        &cfg.box_id,
        cfg.api.listen,
        &store,
        &registry,
        clock.clone(),
        &masker.clone().map(|m| m as Arc<dyn crate::uplink::SnapshotMasker>),
    )?;
    let (recorder, analytics) =
        start_analysis(&cfg, &profile, &manifests, &store, &registry, clock.clone())?;
    let shutdown = Arc::new(AtomicBool::new(false));
    let open_data = cfg
        .open_data
        .publish
        .then(|| open_data_publisher(&store, &cfg.open_data, clock.clone(), shutdown.clone()))
        .transpose()?;
    let cameras = start_cameras(
        &cfg,
        &profile,
        &registry,
        &analytics.queue,
        &shutdown,
        Some((&recorder, &store)),
    )?;

    let state = crate::api::ApiState {
        store: store.clone(),
        registry: registry.clone(),
        box_id: cfg.box_id.clone(),
        config_token_hashes: cfg.api.tokens_sha256.clone(),
        started_at: time::OffsetDateTime::now_utc(),
        media: crate::api::MediaSettings { masker, ..crate::api::MediaSettings::from_config(&cfg) },
        auth: crate::api::AuthSettings::from_config(&cfg),
        open_data: cfg.open_data.clone(),
    };
    // The API's own runtime: its workers and blocking threads are bounded, and its
    // connections are capped so that the descriptors reserved for cameras, recorder and
    // store stay free (docs/security.md "Connection limits").
    let mut limits = crate::api::HttpLimits::from_config(&cfg.api.limits);
    let cams = cfg.cameras.iter().filter(|c| c.enabled).count();
    if let Some(w) = crate::api::fit_to_fds(&mut limits, fd_limit, crate::api::open_fds(), cams) {
        tracing::warn!("{w}");
    }
    // The redirect listener's connections come out of the same budget.
    let redirect_limits = cfg.api.tls.redirect_http_listen.map(|_| {
        let n = REDIRECT_MAX_CONNECTIONS.min(limits.max_connections / 2).max(1);
        limits.max_connections = (limits.max_connections - n).max(1);
        limits.max_connections_per_address =
            limits.max_connections_per_address.min(limits.max_connections);
        crate::api::HttpLimits {
            max_connections: n,
            max_connections_per_address: limits.max_connections_per_address.min(n),
            ..limits.clone()
        }
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(crate::api::API_BLOCKING_THREADS)
        .thread_name("api")
        .enable_all()
        .build()?;
    let watched = store.clone();
    let watchdog = crate::service::Watchdog::start(move || watched.schema_version().is_ok());
    let served = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(cfg.api.listen)
            .await
            .with_context(|| format!("cannot listen on {} (field `api.listen`)", cfg.api.listen))?;
        let addr = listener.local_addr()?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let redirect = match (cfg.api.tls.redirect_http_listen, redirect_limits) {
            (Some(at), Some(rl)) => {
                let l = tokio::net::TcpListener::bind(at).await.with_context(|| {
                    format!("cannot listen on {at} (field `api.tls.redirect_http_listen`)")
                })?;
                let host = match addr.ip() {
                    ip if ip.is_unspecified() => "localhost".to_string(),
                    std::net::IpAddr::V6(ip) => format!("[{ip}]"),
                    ip => ip.to_string(),
                };
                let mut stop = stop_rx.clone();
                let router = crate::api::redirect_router(addr.port(), host);
                Some((
                    l.local_addr()?,
                    tokio::spawn(crate::api::serve_with(l, router, rl, async move {
                        let _ = stop.changed().await;
                    })),
                ))
            }
            _ => None,
        };
        let scheme = cfg.api.scheme();
        println!(
            "gridwatch {} is running: box `{}`, {} camera(s)",
            env!("CARGO_PKG_VERSION"),
            cfg.box_id,
            cfg.cameras.len()
        );
        println!("  API:        {scheme}://{addr}/api/v1/health");
        let mut curl = String::from("curl");
        if let Some((_, fingerprint, self_signed)) = &tls {
            println!("  TLS:        certificate SHA-256 {fingerprint}");
            if let Some(cert) = self_signed {
                println!("              (self-signed: {}; pin this fingerprint)", cert.display());
                curl = format!("curl --cacert {}", cert.display());
            }
        }
        if let Some((at, _)) = &redirect {
            println!("  redirect:   http://{at}/ answers 308 to https");
        }
        println!(
            "  events:     {curl} -H 'Authorization: Bearer <token>' {scheme}://{addr}/api/v1/events"
        );
        println!("  {token_note}");
        println!("  stop with Ctrl-C");
        crate::service::notify("READY=1");
        let closing = store.clone();
        let signal = async move {
            shutdown_signal().await;
            closing.close_feed(); // feed long-polls answer now instead of holding the shutdown
            let _ = stop_tx.send(true);
        };
        let router = crate::api::router_with(state, &limits);
        let server_config = tls.map(|(c, _, _)| c);
        crate::api::serve_tls(listener, router, limits, server_config, signal).await?;
        if let Some((_, task)) = redirect {
            let _ = task.await;
        }
        anyhow::Ok(())
    });
    println!("gridwatch: shutting down");
    crate::service::notify("STOPPING=1");
    shutdown.store(true, Ordering::Relaxed);
    for h in cameras {
        let _ = h.join();
    }
    analytics.shutdown();
    if let Some(t) = open_data {
        let _ = t.join();
    }
    uplink.shutdown();
    recorder.shutdown();
    drop(watchdog);
    store.close()?;
    println!("gridwatch: stopped cleanly");
    served
}

/// The health registry of `cfg`'s cameras (`run`, `bench capacity`).
pub fn camera_registry(cfg: &Config, clock: Arc<dyn crate::clock::Clock>) -> Registry {
    let registry = Registry::with_clock(clock.clone());
    for cam in &cfg.cameras {
        registry.register(crate::ingest::camera_health_of(cam, &cfg.base_dir, clock.now()));
    }
    registry
}

/// ONNX Runtime options of `cfg`'s models on `profile` (detectors and the masker).
pub fn detector_options(cfg: &Config, profile: &HardwareProfile) -> DetectorOptions {
    DetectorOptions {
        intra_op_threads: cfg.inference_layout().intra_op_threads,
        execution_providers: profile.inference.execution_providers.clone(),
        intra_op_spinning: cfg.inference.intra_op_spinning,
    }
}

/// The recorder and the inference workers (with the store writer) of `cfg`'s cameras, as
/// `run` starts them (`bench capacity` starts the same).
pub fn start_analysis(
    cfg: &Config,
    profile: &HardwareProfile,
    manifests: &HashMap<String, ModelManifest>,
    store: &Store,
    registry: &Registry,
    clock: Arc<dyn crate::clock::Clock>,
) -> anyhow::Result<(Recorder, Analytics)> {
    let opts = detector_options(cfg, profile);
    let layout = cfg.inference_layout();
    tracing::info!("inference: {layout}");
    let recorder = Recorder::start(cfg, store.clone(), clock)?;
    let analytics = Analytics::start(
        &cfg.cameras,
        manifests,
        &opts,
        layout.workers,
        store.clone(),
        registry.clone(),
        recorder.sender(),
    )?;
    Ok((recorder, analytics))
}

/// How often the open-data publisher looks for finished hours.
const OPEN_DATA_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// The thread that appends each finished hour's open data to the outbox
/// (`open_data::publish_due`) until `stop`.
fn open_data_publisher(
    store: &Store,
    cfg: &crate::config::OpenDataConfig,
    clock: Arc<dyn crate::clock::Clock>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let (store, cfg) = (store.clone(), cfg.clone());
    Ok(std::thread::Builder::new().name("open-data".into()).spawn(move || loop {
        match crate::open_data::publish_due(&store, &cfg, clock.now()) {
            Ok(0) => {}
            Ok(n) => tracing::info!(hours = n, "open data published to the outbox"),
            Err(e) => tracing::warn!("publishing open data failed (tried again later): {e}"),
        }
        if clock.sleep_unless(OPEN_DATA_EVERY, &stop) {
            return;
        }
    })?)
}

/// Connections of the `api.tls.redirect_http_listen` listener at most (taken from
/// `api.limits.max_connections`): it only ever answers with a redirect.
const REDIRECT_MAX_CONNECTIONS: usize = 16;

/// `[api.tls]` (docs/security.md "TLS"): the rustls server configuration, the certificate's
/// SHA-256 fingerprint and, for a self-signed one, its file; `None` when TLS is off. A
/// self-signed certificate is made in the data dir on the first run and read on later ones.
#[allow(clippy::type_complexity)]
pub fn api_tls(
    cfg: &Config,
) -> anyhow::Result<Option<(Arc<rustls::ServerConfig>, String, Option<std::path::PathBuf>)>> {
    use crate::config::TlsMode;
    let t = &cfg.api.tls;
    let (id, self_signed) = match (t.mode, &t.cert_path, &t.key_path) {
        (TlsMode::Off, _, _) => return Ok(None),
        (TlsMode::Files, Some(cert), Some(key)) => {
            let id = crate::tls::load_files(cert, key).map_err(|(which, m)| {
                let field = match which {
                    crate::tls::Which::Cert => "cert_path",
                    crate::tls::Which::Key => "key_path",
                };
                anyhow!("field `api.tls.{field}`: {m}")
            })?;
            (id, None)
        }
        (TlsMode::Files, _, _) => {
            return Err(anyhow!("field `api.tls`: mode \"files\" needs cert_path and key_path"))
        }
        (TlsMode::SelfSigned, _, _) => {
            let names = t.alt_names(&cfg.box_id, cfg.api.listen);
            let (id, made) = crate::tls::ensure_self_signed(&cfg.data_dir, &names)
                .map_err(|m| anyhow!("field `api.tls.mode` (\"self_signed\"): {m}"))?;
            let (cert, _) = crate::tls::self_signed_paths(&cfg.data_dir);
            if made {
                println!(
                    "  TLS: made a self-signed certificate for {} in {}",
                    names.join(", "),
                    cert.display()
                );
            }
            (id, Some(cert))
        }
    };
    let server = id.server_config().map_err(|m| anyhow!("field `api.tls`: {m}"))?;
    Ok(Some((server, id.fingerprint(), self_signed)))
}

/// The file in the data dir that receives the first-run credentials (mode 0600).
pub const FIRST_RUN_FILE: &str = "first-run-credentials.txt";

/// The username of the first-run admin: `auth.first_admin_username`, or `admin-` and 6
/// random hex digits (a name nobody can guess, so nobody can aim at it).
fn first_admin_name(auth: &crate::config::AuthConfig) -> anyhow::Result<String> {
    Ok(match &auth.first_admin_username {
        Some(name) => name.clone(),
        None => format!("admin-{}", &crate::store::try_generate_token()?[3..9]),
    })
}

/// Writes `text` to a new file readable and writable by this user only (0600 from its
/// creation, whatever the umask), replacing a stale one, and syncs it.
fn write_private(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("removing the stale {}", path.display()));
        }
        _ => {}
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

/// Makes sure at least one API token exists; returns a line telling the operator how to
/// authenticate. On the first run (no token and no user anywhere, and
/// `api.generate_token_if_none`) it makes an API token and an admin user and writes both
/// secrets to [`FIRST_RUN_FILE`] in the data dir (0600), before storing their hashes;
/// standard output (the journal, under a service manager) says only where they are.
fn ensure_token(cfg: &Config, store: &Store) -> anyhow::Result<String> {
    let file = cfg.data_dir.join(FIRST_RUN_FILE);
    let first_run = cfg.api.generate_token_if_none
        && cfg.api.tokens_sha256.is_empty()
        && store.count_tokens()? == 0
        && store.count_users()? == 0;
    if first_run {
        let token = crate::store::try_generate_token()?;
        let password = crate::store::try_generate_token()?[3..23].to_string();
        let username = first_admin_name(&cfg.auth)?;
        let text = format!(
            "# gridwatch first-run credentials. The box keeps only their hashes: this file is\n\
             # the only copy. Store them somewhere safe, then delete this file.\n\
             api_token = \"{token}\"\n\
             console_username = \"{username}\"\n\
             console_password = \"{password}\"\n\
             # API:     curl -H 'Authorization: Bearer <api_token>' http://{listen}/api/v1/cameras\n\
             # console: http://{listen}/ (change the password there, or with\n\
             #          gridwatch user passwd --config <file> {username})\n",
            listen = cfg.api.listen
        );
        write_private(&file, &text)?;
        store.add_token("generated-on-first-run", &crate::store::hash_token(&token))?;
        let hash = crate::auth::hash_password(&password)?;
        let audit = crate::store::auth::NewAudit::new("system:first-run", None, "user_create")
            .target(format!("user:{username}"))
            .detail(serde_json::json!({"username": username, "role": "admin"}));
        store.create_user(
            &username,
            &hash,
            crate::auth::Role::Admin,
            None,
            &audit,
            time::OffsetDateTime::now_utc(),
        )?;
        return Ok(format!(
            "auth: first run: an API token and an admin login for the console were made; \
             they are in {} (mode 0600: only this user can read it); delete it once read",
            file.display()
        ));
    }
    let note: String = if cfg.api.tokens_sha256.is_empty()
        && store.count_tokens()? == 0
        && store.count_users()? == 0
    {
        "auth: no API token or user exists; create one with `gridwatch token create --config <file>` \
         or `gridwatch user add --config <file> --role admin <name>`"
            .into()
    } else if cfg.api.tokens_sha256.is_empty() && store.count_tokens()? == 0 {
        "auth: log in as a user (POST /api/v1/auth/login) or create a token: gridwatch token create --config <file>".into()
    } else {
        "auth: send `Authorization: Bearer <token>` (create one: gridwatch token create --config <file>)".into()
    };
    Ok(if file.exists() {
        format!(
            "{note}\n  auth: {} still holds the first-run credentials; delete it once read",
            file.display()
        )
    } else {
        note
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_admin_is_named_by_the_config_or_at_random() {
        let mut auth = crate::config::AuthConfig::default();
        let a = first_admin_name(&auth).unwrap();
        let b = first_admin_name(&auth).unwrap();
        assert!(a.starts_with("admin-") && a.len() == 12 && a != b, "{a} {b}");
        crate::auth::validate_username(&a).unwrap();
        auth.first_admin_username = Some("ops-lead".into());
        assert_eq!(first_admin_name(&auth).unwrap(), "ops-lead");
    }

    #[test]
    fn private_files_are_0600_from_the_start_and_replace_stale_ones() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(FIRST_RUN_FILE);
        std::fs::write(&p, "stale").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&p, "secret").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "secret");
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn video_time_follows_pts_and_carries_on_after_a_loop() {
        let t0 = time::OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let frame = |pts_ms: Option<u64>, wall_ms: i64| crate::types::Frame {
            camera_id: Arc::from("c"),
            index: 0,
            width: 1,
            height: 1,
            rgb: Arc::from(vec![0u8; 3]),
            pts_ns: pts_ms.map(|p| p * 1_000_000),
            captured_at: t0 + time::Duration::milliseconds(wall_ms),
            captured_instant: std::time::Instant::now(),
        };
        let mut v = VideoTime::default();
        let mut at = |pts, wall| {
            let mut f = frame(pts, wall);
            v.stamp(&mut f);
            (f.captured_at - t0).whole_milliseconds()
        };
        // Decoded faster than real time: video time, not the wall clock.
        assert_eq!(at(Some(0), 5), 5);
        assert_eq!(at(Some(200), 10), 205);
        assert_eq!(at(Some(4800), 30), 4805);
        // The file restarts (loop): time carries on after the last frame …
        assert_eq!(at(Some(0), 40), 4806);
        assert_eq!(at(Some(200), 45), 5006);
        // … or from the wall clock when that is later.
        assert_eq!(at(Some(0), 9000), 9000);
        // Without a PTS the capture time stays.
        assert_eq!(at(None, 9100), 9100);
    }
}
