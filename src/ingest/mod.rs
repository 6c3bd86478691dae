//! Ingest: one supervised source per camera producing `Frame`s.
//!
//! The camera boundary is the `Opener`/`FrameStream` pair (after Moonfire NVR): the GStreamer
//! implementation lives in `gst`, tests can supply their own. `supervise` runs one camera:
//! opens it, forwards frames, keeps health, and reconnects with backoff on errors, stalls and
//! end of stream (files with `loop = true` restart at once).

pub mod gst;
pub mod profile;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::health::{CameraState, Registry};
use crate::types::Frame;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{0}")]
    Gstreamer(String),
    #[error("{0}")]
    Pipeline(String),
    #[error("{0}")]
    Source(String),
}

/// What a stream yields on each poll.
#[derive(Debug)]
pub enum StreamEvent {
    Frame(Frame),
    /// Nothing arrived within the timeout.
    Idle,
    /// End of stream (files).
    Eos,
    /// The source failed; the message says why.
    Error(String),
}

/// An open camera.
pub trait FrameStream: Send {
    fn next(&mut self, timeout: Duration) -> StreamEvent;
    /// Ends the stream cleanly before it is dropped at shutdown (e.g. finalise recordings).
    fn finish(&mut self) {}
}

/// Opens a camera; called again on every reconnect.
pub trait Opener: Send + Sync {
    fn open(&self) -> Result<Box<dyn FrameStream>, IngestError>;
}

/// Supervision parameters of one camera.
#[derive(Debug, Clone)]
pub struct SuperviseOptions {
    pub camera_id: String,
    pub loop_file: bool,
    /// Live source (RTSP, USB): end of stream means the camera went away → reconnect.
    pub live: bool,
    pub stall_timeout: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

/// Runs one camera until `shutdown` is set: frames go to `sink`, health to `registry`.
/// Never panics on source failures; they become `offline` with the reason and a retry.
pub fn supervise(
    opener: &dyn Opener,
    opts: &SuperviseOptions,
    registry: &Registry,
    shutdown: &AtomicBool,
    sink: &mut dyn FnMut(Frame),
) {
    let id = opts.camera_id.as_str();
    let mut backoff = opts.backoff_min;
    let mut first = true;
    while !shutdown.load(Ordering::Relaxed) {
        if !first {
            registry.update(id, |h| h.reconnects += 1);
        }
        first = false;
        registry.set_state(id, CameraState::Connecting, None);
        let mut stream = match opener.open() {
            Ok(s) => s,
            Err(e) => {
                fail(registry, id, &e.to_string(), backoff);
                sleep_unless(shutdown, backoff);
                backoff = (backoff * 2).min(opts.backoff_max);
                continue;
            }
        };
        let mut last_frame = Instant::now();
        let mut frames = 0u64;
        let mut rate = RateMeter::new();
        let outcome = loop {
            if shutdown.load(Ordering::Relaxed) {
                stream.finish();
                break Outcome::Shutdown;
            }
            match stream.next(Duration::from_millis(200)) {
                StreamEvent::Frame(f) => {
                    if frames == 0 {
                        registry.set_state(id, CameraState::Online, None);
                        tracing::info!(camera = id, "online: first frame {}x{}", f.width, f.height);
                        backoff = opts.backoff_min;
                    }
                    frames += 1;
                    last_frame = Instant::now();
                    let fps = rate.tick(last_frame);
                    registry.update(id, |h| {
                        h.frames_received += 1;
                        h.fps = fps;
                    });
                    registry.set_latest(f.clone());
                    sink(f);
                }
                StreamEvent::Idle => {
                    if last_frame.elapsed() > opts.stall_timeout {
                        break Outcome::Failed(format!(
                            "no frame for {:.0} s (stalled source)",
                            opts.stall_timeout.as_secs_f64()
                        ));
                    }
                }
                StreamEvent::Eos if opts.loop_file && frames > 0 => break Outcome::Loop,
                StreamEvent::Eos if frames == 0 => {
                    break Outcome::Failed("end of stream before any frame".into())
                }
                StreamEvent::Eos if opts.live => {
                    break Outcome::Failed("stream ended (the camera closed the connection)".into())
                }
                StreamEvent::Eos => break Outcome::Ended,
                StreamEvent::Error(e) => break Outcome::Failed(e),
            }
        };
        drop(stream); // pipeline to NULL before any wait
        match outcome {
            Outcome::Shutdown => break,
            Outcome::Loop => {
                tracing::debug!(camera = id, "end of file: looping");
            }
            Outcome::Ended => {
                registry.set_state(
                    id,
                    CameraState::Offline,
                    Some("end of stream (file finished; set loop = true to repeat)".into()),
                );
                tracing::info!(camera = id, "end of stream");
                return;
            }
            Outcome::Failed(e) => {
                fail(registry, id, &e, backoff);
                sleep_unless(shutdown, backoff);
                backoff = (backoff * 2).min(opts.backoff_max);
            }
        }
    }
}

enum Outcome {
    Shutdown,
    Loop,
    Ended,
    Failed(String),
}

fn fail(registry: &Registry, id: &str, err: &str, retry_in: Duration) {
    let err = crate::redact::redact_url(err);
    tracing::warn!(camera = id, "offline: {err}; retrying in {:.1} s", retry_in.as_secs_f64());
    registry.set_state(id, CameraState::Offline, Some(err));
}

fn sleep_unless(shutdown: &AtomicBool, d: Duration) {
    let end = Instant::now() + d;
    while !shutdown.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= end {
            break;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(100)));
    }
}

/// Frames per second over a sliding window of the last 2 seconds.
struct RateMeter {
    times: std::collections::VecDeque<Instant>,
}

impl RateMeter {
    fn new() -> Self {
        RateMeter { times: Default::default() }
    }
    fn tick(&mut self, now: Instant) -> f64 {
        self.times.push_back(now);
        while self.times.front().is_some_and(|t| now.duration_since(*t) > Duration::from_secs(2)) {
            self.times.pop_front();
        }
        let span = self.times.front().map(|t| now.duration_since(*t).as_secs_f64()).unwrap_or(0.0);
        if span > 0.0 {
            (self.times.len() - 1) as f64 / span
        } else {
            0.0
        }
    }
}

/// Shares `Arc<AtomicBool>` conveniently.
pub type Shutdown = Arc<AtomicBool>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::CameraHealth;
    use std::sync::Mutex;

    /// A scripted source: each open() pops the next script; each script is a list of events.
    struct Scripted {
        opens: Mutex<Vec<Result<Vec<&'static str>, &'static str>>>,
    }
    struct ScriptStream(Vec<&'static str>, u64);
    impl FrameStream for ScriptStream {
        fn next(&mut self, _t: Duration) -> StreamEvent {
            if self.0.is_empty() {
                std::thread::sleep(Duration::from_millis(5));
                return StreamEvent::Idle;
            }
            match self.0.remove(0) {
                "frame" => {
                    self.1 += 1;
                    StreamEvent::Frame(Frame {
                        camera_id: Arc::from("c"),
                        index: self.1,
                        width: 2,
                        height: 1,
                        rgb: Arc::from(vec![0u8; 6]),
                        pts_ns: None,
                        captured_at: time::OffsetDateTime::now_utc(),
                        captured_instant: Instant::now(),
                    })
                }
                "eos" => StreamEvent::Eos,
                e => StreamEvent::Error(e.to_string()),
            }
        }
    }
    impl Opener for Scripted {
        fn open(&self) -> Result<Box<dyn FrameStream>, IngestError> {
            let mut o = self.opens.lock().unwrap();
            if o.is_empty() {
                return Err(IngestError::Source("gone".into()));
            }
            match o.remove(0) {
                Ok(s) => Ok(Box::new(ScriptStream(s, 0))),
                Err(e) => Err(IngestError::Source(e.into())),
            }
        }
    }

    fn setup() -> (Registry, SuperviseOptions) {
        let reg = Registry::new();
        let cfg = crate::config::Config::parse(
            "box_id='b'\ndata_dir='/tmp'\n[models]\n[[cameras]]\nid='c'\nurl='x.mp4'\nmodels=[]\nenabled=false\n",
            std::path::Path::new("/"),
        )
        .unwrap();
        reg.register(CameraHealth::new(&cfg.cameras[0]));
        let opts = SuperviseOptions {
            camera_id: "c".into(),
            loop_file: false,
            live: false,
            stall_timeout: Duration::from_millis(300),
            backoff_min: Duration::from_millis(10),
            backoff_max: Duration::from_millis(20),
        };
        (reg, opts)
    }

    #[test]
    fn reconnects_after_open_failure_and_error_then_ends_at_eos() {
        let (reg, opts) = setup();
        let op = Scripted {
            opens: Mutex::new(vec![
                Err("refused"),
                Ok(vec!["frame", "boom"]),
                Ok(vec!["frame", "frame", "eos"]),
            ]),
        };
        let mut n = 0;
        supervise(&op, &opts, &reg, &AtomicBool::new(false), &mut |_| n += 1);
        assert_eq!(n, 3);
        let h = reg.get("c").unwrap();
        assert_eq!(h.state, CameraState::Offline);
        assert!(h.last_error.unwrap().contains("end of stream"));
        assert_eq!(h.reconnects, 2);
    }

    #[test]
    fn stall_marks_offline_with_reason() {
        let (reg, opts) = setup();
        let op = Scripted { opens: Mutex::new(vec![Ok(vec!["frame"])]) };
        let stop = Arc::new(AtomicBool::new(false));
        let (r2, s2) = (reg.clone(), stop.clone());
        let t = std::thread::spawn(move || supervise(&op, &opts, &r2, &s2, &mut |_| {}));
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let h = reg.get("c").unwrap();
            if h.state == CameraState::Offline
                && h.last_error.as_deref().is_some_and(|e| e.contains("stalled"))
            {
                break;
            }
            assert!(Instant::now() < deadline, "never went offline: {h:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
        stop.store(true, Ordering::Relaxed);
        t.join().unwrap();
    }

    #[test]
    fn loop_restarts_file() {
        let (reg, mut opts) = setup();
        opts.loop_file = true;
        let op = Scripted {
            opens: Mutex::new(vec![Ok(vec!["frame", "eos"]), Ok(vec!["frame", "eos"])]),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let n = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (r2, s2, n2) = (reg.clone(), stop.clone(), n.clone());
        let t = std::thread::spawn(move || {
            supervise(&op, &opts, &r2, &s2, &mut |_| {
                n2.fetch_add(1, Ordering::Relaxed);
            })
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        while n.load(Ordering::Relaxed) < 2 {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(5));
        }
        stop.store(true, Ordering::Relaxed);
        t.join().unwrap();
        assert!(reg.get("c").unwrap().reconnects >= 1);
    }
}
