//! Upstream delivery to the city platform (issue 5; docs/api.md "Uplink").
//!
//! * The **outbox** (`store::outbox`) gets one row per event change and camera status
//!   change, in the same transaction as the change. It is the single source of every path.
//! * **Sinks** push the outbox: one [`worker`] per sink (per-camera order, retries with
//!   backoff + jitter, dead letters, durable cursors) drives a [`sink::Sink`] that makes
//!   single delivery attempts. [`webhook::WebhookSink`] POSTs signed envelopes
//!   ([`signing`]); [`mqtt::MqttSink`] publishes them at QoS 1 to a broker (delivered on
//!   PUBACK); [`gat1400::Gat1400Sink`] registers with a GA/T 1400 (VIID) platform and pushes
//!   structured objects. All are `Sink` implementations with a config block; the worker and
//!   the bookkeeping are shared.
//! * The **pull feed** (`GET /api/v1/feed`, `api::uplink`) serves the outbox by `seq`.
//!
//! [`Uplink`] runs the sinks on their own small tokio runtime and records camera status
//! changes reported by the health registry (off the camera threads).

pub mod config;
pub mod gat1400;
pub mod mqtt;
pub mod signing;
pub mod sink;
pub mod viid_subscribe;
pub mod webhook;
pub mod worker;

use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use time::OffsetDateTime;

use self::config::{SinkConfig, UplinkConfig};
use crate::clock::Clock;
use crate::health::{CameraState, Registry};
use crate::store::Store;
use sink::Sink;
use worker::{Policy, WorkerHandle};

/// How often old, fully delivered outbox rows are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Builds the enabled sinks of one kind, each with its config's retry policy.
fn add_sinks<C: SinkConfig, S: Sink>(
    sinks: &mut Vec<(Arc<dyn Sink>, Policy)>,
    configs: &[C],
    new: impl Fn(&C) -> Result<S, String>,
) -> anyhow::Result<()> {
    for c in configs.iter().filter(|c| c.enabled()) {
        sinks.push((Arc::new(new(c).map_err(anyhow::Error::msg)?), c.policy()));
    }
    Ok(())
}

/// A camera status change for the recorder thread; `None` stops it.
type StatusMsg = Option<(String, CameraState, Option<String>, OffsetDateTime)>;

/// Masks a snapshot JPEG as the API serves it and finds its faces (`masking::Masker`; a
/// trait here so that the uplink does not depend on the masking stage).
pub trait SnapshotMasker: Send + Sync {
    /// The JPEG masked and encoded again at `quality` when `mask` (else as it is), and with
    /// `faces` the faces in it (normalised boxes) for GA/T 1400 `Faces` (ADR 0051), from
    /// one run of the detectors.
    fn snapshot(
        &self,
        camera: &str,
        jpeg: &[u8],
        quality: u8,
        mask: bool,
        faces: bool,
    ) -> Result<(Vec<u8>, Vec<crate::types::BBox>), String>;
}

/// The masker of the VIID sinks' snapshots, or why there is none (then they push nothing
/// with a snapshot, unless `send_unmasked_images`).
pub type SnapshotMasking = Result<Arc<dyn SnapshotMasker>, String>;

/// Why there is no masker when none was loaded (the API's media and the VIID sinks).
pub const NO_MASKER: &str = "masking is not set up (no face model loaded)";

/// The running uplink: sink workers and the camera-status recorder.
pub struct Uplink {
    rt: Option<tokio::runtime::Runtime>,
    workers: Vec<WorkerHandle>,
    pruner: Option<tokio::task::JoinHandle<()>>,
    status_tx: Option<mpsc::Sender<StatusMsg>>,
    status_thread: Option<JoinHandle<()>>,
}

impl Uplink {
    /// Starts the configured (enabled) webhook, MQTT and GA/T 1400 sinks (VIID snapshots
    /// masked with `masker`) with the system clock, records
    /// camera status changes of `registry`, and prunes the outbox per
    /// `uplink.outbox_retention_days`.
    pub fn start(
        u: &UplinkConfig,
        box_id: &str,
        listen: std::net::SocketAddr,
        store: &Store,
        registry: &Registry,
        clock: Arc<dyn Clock>,
        masker: &SnapshotMasking,
    ) -> anyhow::Result<Uplink> {
        if u.public_url.is_none() && listen.ip().is_unspecified() && u.any_sink() {
            tracing::warn!(
                "uplink.public_url is not set and api.listen is {listen}: media URLs in envelopes will not be reachable"
            );
        }
        // The sink kinds, one line each.
        let mut sinks = Vec::new();
        add_sinks(&mut sinks, &u.webhooks, webhook::WebhookSink::new)?;
        add_sinks(&mut sinks, &u.mqtt, |m| mqtt::MqttSink::new(m, box_id))?;
        add_sinks(&mut sinks, &u.gat1400, |g| {
            gat1400::Gat1400Sink::with_masker(g, Some(store.clone()), masker.clone())
        })?;
        for g in u.gat1400.iter().filter(|g| g.enabled && g.subscriptions) {
            let s = viid_subscribe::ViidSubscribeSink::new(g, store.clone(), masker.clone())
                .map_err(anyhow::Error::msg)?;
            sinks.push((Arc::new(s) as Arc<dyn Sink>, g.policy()));
        }
        let retention = Duration::from_secs_f64(u.outbox_retention_days * 86400.0);
        let mut up = Self::start_sinks(store, sinks, clock, Some(retention))?;
        up.record_camera_status(store, registry);
        Ok(up)
    }

    /// Starts workers for `sinks` (registering them in the database) with `clock`; prunes
    /// the outbox every hour when `retention` is given. Used by `start`, tests and the bench.
    pub fn start_sinks(
        store: &Store,
        sinks: Vec<(Arc<dyn Sink>, Policy)>,
        clock: Arc<dyn Clock>,
        retention: Option<Duration>,
    ) -> anyhow::Result<Uplink> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(4)
            .thread_name("uplink")
            .enable_all()
            .build()
            .context("starting the uplink runtime")?;
        let defs: Vec<(String, String, String)> = sinks
            .iter()
            .map(|(s, _)| (s.name().to_string(), s.kind().to_string(), s.target()))
            .collect();
        let starts = store.register_sinks(&defs).context("registering uplink sinks")?;
        let workers = {
            let _guard = rt.enter();
            sinks
                .into_iter()
                .zip(starts)
                .map(|((s, p), start)| worker::spawn(s, store.clone(), clock.clone(), p, start))
                .collect()
        };
        let pruner = retention.map(|keep| {
            let store = store.clone();
            rt.spawn(async move {
                loop {
                    let cutoff = clock.now() - keep;
                    let s = store.clone();
                    match tokio::task::spawn_blocking(move || s.prune_outbox(cutoff)).await {
                        Ok(Ok(n)) if n > 0 => {
                            tracing::info!(rows = n, "pruned delivered outbox rows")
                        }
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => tracing::warn!("pruning the outbox failed: {e}"),
                        Err(e) => tracing::warn!("pruning the outbox failed: {e}"),
                    }
                    tokio::time::sleep(PRUNE_EVERY).await;
                }
            })
        });
        Ok(Uplink { rt: Some(rt), workers, pruner, status_tx: None, status_thread: None })
    }

    /// Records every camera going online or offline (as `camera_status` changes) from now
    /// on. The registry's hook only queues the change; a thread writes it.
    pub fn record_camera_status(&mut self, store: &Store, registry: &Registry) {
        let (tx, rx) = mpsc::channel::<StatusMsg>();
        let store = store.clone();
        let thread = std::thread::Builder::new()
            .name("uplink-status".into())
            .spawn(move || status_writer(store, rx));
        match thread {
            Ok(t) => {
                let hook_tx = std::sync::Mutex::new(tx.clone());
                registry.on_state_change(Arc::new(move |id, state, err, at| {
                    if matches!(state, CameraState::Online | CameraState::Offline) {
                        let tx = hook_tx.lock().unwrap_or_else(|e| e.into_inner());
                        let _ = tx.send(Some((id.to_string(), state, err.map(str::to_string), at)));
                    }
                }));
                self.status_tx = Some(tx);
                self.status_thread = Some(t);
            }
            Err(e) => tracing::error!("cannot start the camera status recorder: {e}"),
        }
    }

    /// Stops the workers (buffered acknowledgements are written) and the status recorder
    /// (queued status changes are written first).
    pub fn shutdown(mut self) {
        if let Some(tx) = self.status_tx.take() {
            let _ = tx.send(None);
        }
        if let Some(t) = self.status_thread.take() {
            let _ = t.join();
        }
        if let Some(rt) = self.rt.take() {
            if let Some(p) = self.pruner.take() {
                p.abort();
            }
            let workers = std::mem::take(&mut self.workers);
            rt.block_on(async {
                for w in workers {
                    w.stop().await;
                }
            });
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

/// Writes camera status changes, skipping repeats (a looping file goes online → connecting
/// → online; only real online/offline transitions are reported).
fn status_writer(store: Store, rx: mpsc::Receiver<StatusMsg>) {
    let mut last: HashMap<String, bool> = HashMap::new();
    // The registry's hook keeps a sender for ever: `None` (sent by `shutdown` after the
    // cameras stopped) ends the loop once everything before it is written.
    while let Ok(Some((cam, state, err, at))) = rx.recv() {
        let online = state == CameraState::Online;
        if last.get(&cam) == Some(&online) {
            continue;
        }
        let mut delay = Duration::from_millis(100);
        for attempt in 1..=5 {
            match store
                .with_reserve(|| store.append_camera_status(&cam, online, err.as_deref(), at))
            {
                Ok(_) => {
                    last.insert(cam.clone(), online);
                    break;
                }
                Err(e) if attempt < 5 => {
                    tracing::warn!(camera = %cam, "storing camera status failed (attempt {attempt}): {e}");
                    std::thread::sleep(delay);
                    delay *= 2;
                }
                Err(e) => tracing::error!(camera = %cam, "giving up storing camera status: {e}"),
            }
        }
    }
}
