//! Evidence: continuous recording, start-up reconciliation, event clips and retention.
//!
//! Segments are written by the camera's own GStreamer pipeline (a `tee` before the decoder
//! feeds a `splitmuxsink` writing fragmented MP4, see [`branch`]). When a segment file is
//! closed, the pipeline sends a [`RecEvent::Closed`] to the recorder thread, which fsyncs the
//! file and its directory and only then indexes it (Moonfire NVR's rule: the index never
//! points at data that might not be on disk). The same thread runs retention and builds the
//! clips of ended events. See docs/storage.md for the crash-safety argument.

pub mod branch;
pub mod clip;
pub mod fsync;
pub mod gate;
pub mod mp4;
pub mod probe;
pub mod reconcile;
pub mod retention;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use time::OffsetDateTime;
use uuid::Uuid;

use crate::clock::Clock;
use crate::config::{CameraConfig, Config};
use crate::store::recordings::NewSegment;
use crate::store::Store;
pub use fsync::sync_file_and_dir;
pub use gate::RecordGate;

/// A segment file the pipeline has finished writing (not yet fsynced or indexed).
#[derive(Debug, Clone)]
pub struct ClosedSegment {
    pub camera_id: String,
    pub path: PathBuf,
    pub start: OffsetDateTime,
    pub end: OffsetDateTime,
    /// Pipeline running time at the segment's start and end (ns).
    pub start_pts_ns: u64,
    pub end_pts_ns: u64,
    pub codec: String,
}

/// What the pipelines and the store writer tell the recorder thread.
#[derive(Debug)]
pub enum RecEvent {
    Closed(ClosedSegment),
    /// The record branch of a camera failed (e.g. ENOSPC); retention runs at once.
    Failed {
        camera_id: String,
        message: String,
    },
    /// A segment file the pipeline stopped writing without finalising it (source error,
    /// stall): repaired and indexed like an orphan at start-up.
    Abandoned {
        camera_id: String,
        path: PathBuf,
    },
    /// An event ended: build its clip once the footage after it is indexed.
    EventEnded {
        event_id: Uuid,
        camera_id: String,
    },
}

/// How one camera is recorded (given to its pipeline).
#[derive(Debug, Clone)]
pub struct RecordSpec {
    pub camera_id: String,
    /// `<data dir>/recordings/<camera>`; the pipeline adds `<YYYYMMDD>/<ms>-<n>.mp4`.
    pub dir: PathBuf,
    pub segment_ns: u64,
    pub gate: RecordGate,
    pub tx: mpsc::Sender<RecEvent>,
}

/// The recorder thread: indexes closed segments, runs retention, builds event clips.
pub struct Recorder {
    tx: Option<mpsc::Sender<RecEvent>>,
    gates: HashMap<String, RecordGate>,
    thread: Option<JoinHandle<()>>,
}

impl Recorder {
    /// Starts the recorder thread for the cameras that record. `clock` drives its waits,
    /// retention and the scheduling of event clips.
    pub fn start(cfg: &Config, store: Store, clock: Arc<dyn Clock>) -> anyhow::Result<Recorder> {
        let gates: HashMap<String, RecordGate> = cfg
            .cameras
            .iter()
            .filter(|c| c.records(&cfg.base_dir))
            .map(|c| (c.id.clone(), RecordGate::default()))
            .collect();
        let (tx, rx) = mpsc::channel();
        let cameras: HashMap<String, CameraConfig> =
            cfg.cameras.iter().map(|c| (c.id.clone(), c.clone())).collect();
        let retention = retention::Retention::new(cfg, store.clone(), clock.clone(), gates.clone());
        let interval = Duration::from_secs_f64(cfg.storage.check_interval_secs);
        let thread = std::thread::Builder::new()
            .name("recorder".into())
            .spawn(move || recorder_loop(rx, store, cameras, retention, interval, clock))?;
        Ok(Recorder { tx: Some(tx), gates, thread: Some(thread) })
    }

    /// The pipeline spec of camera `cam`, or `None` when it does not record.
    pub fn spec(&self, store: &Store, cam: &CameraConfig) -> Option<RecordSpec> {
        let gate = self.gates.get(&cam.id)?.clone();
        Some(RecordSpec {
            camera_id: cam.id.clone(),
            dir: store.recordings_dir().join(&cam.id),
            segment_ns: (cam.record.segment_secs * 1e9) as u64,
            gate,
            tx: self.tx.clone()?,
        })
    }

    /// A sender for the store writer (`EventEnded`).
    pub fn sender(&self) -> Option<mpsc::Sender<RecEvent>> {
        self.tx.clone()
    }

    /// Stops the thread after it has indexed everything already sent. Call after the
    /// camera pipelines have stopped (they finalise their last segment on the way out).
    pub fn shutdown(mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn recorder_loop(
    rx: mpsc::Receiver<RecEvent>,
    store: Store,
    cameras: HashMap<String, CameraConfig>,
    mut retention: retention::Retention,
    interval: Duration,
    clock: Arc<dyn Clock>,
) {
    let mut clips = clip::Pending::new(clock.clone());
    let mut next_check = clock.instant();
    loop {
        let wait =
            next_check.saturating_duration_since(clock.instant()).min(Duration::from_secs(1));
        let msg = match clock.recv_timeout(&rx, wait) {
            Ok(m) => Some(m),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        match msg {
            Some(RecEvent::Closed(seg)) => {
                index_segment(&store, &seg);
                next_check = clock.instant(); // a new segment may push usage over budget
            }
            Some(RecEvent::Failed { camera_id, message }) => {
                tracing::warn!(camera = %camera_id, "recording failed: {message}; running retention now");
                next_check = clock.instant();
            }
            Some(RecEvent::Abandoned { camera_id, path }) => {
                match reconcile::recover_file(&store, &camera_id, &path) {
                    Ok(r) => {
                        tracing::warn!(camera = %camera_id, path = %path.display(), "segment abandoned unfinalised: {r}")
                    }
                    Err(e) => {
                        tracing::error!(camera = %camera_id, path = %path.display(), "cannot index abandoned segment: {e}")
                    }
                }
                next_check = clock.instant();
            }
            Some(RecEvent::EventEnded { event_id, camera_id }) => {
                if let Some(cam) = cameras.get(&camera_id) {
                    clips.add(event_id, cam);
                }
            }
            None => {}
        }
        if clock.instant() >= next_check {
            retention.run();
            next_check = clock.instant() + interval;
        }
        clips.build_ready(&store, &cameras);
    }
    // Last chance for clips whose footage is complete.
    clips.build_ready(&store, &cameras);
}

/// fsyncs a closed segment and its directory, then indexes it. A segment that cannot be
/// made durable is left unindexed for the next start-up's reconciliation.
fn index_segment(store: &Store, seg: &ClosedSegment) {
    let bytes = match sync_file_and_dir(&seg.path) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(camera = %seg.camera_id, path = %seg.path.display(), "cannot sync segment: {e}");
            return;
        }
    };
    let Some(rel) = store.relative_media_path(&seg.path) else {
        tracing::error!(path = %seg.path.display(), "segment outside the data dir; not indexed");
        return;
    };
    let row = NewSegment {
        camera_id: seg.camera_id.clone(),
        path: rel,
        start: seg.start,
        end: seg.end,
        start_pts_ns: i64::try_from(seg.start_pts_ns).ok(),
        end_pts_ns: i64::try_from(seg.end_pts_ns).ok(),
        bytes,
        codec: seg.codec.clone(),
        frames: None,
        recovered: false,
    };
    match store.insert_segment(&row) {
        Ok(id) => {
            tracing::debug!(camera = %seg.camera_id, id, path = %row.path, bytes, "segment indexed")
        }
        Err(e) => {
            tracing::error!(camera = %seg.camera_id, path = %row.path, "cannot index segment: {e}")
        }
    }
}
