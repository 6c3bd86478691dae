//! Ingest: one supervised source per camera producing `Frame`s.
//!
//! The camera boundary is the `Opener`/`FrameStream` pair (after Moonfire NVR): the GStreamer
//! implementation lives in `gst`, tests can supply their own. `supervise` runs one camera:
//! opens it, forwards frames, keeps health, and reconnects with backoff on errors, stalls and
//! end of stream (files with `loop = true` restart at once). Its waits (backoff) and its
//! stall timeout run on a [`Clock`], so tests drive it in simulated time.

pub mod gst;
pub mod nonref;
pub mod profile;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use crate::clock::Clock;
use crate::config::CameraConfig;
use crate::health::{CameraHealth, CameraState, Registry, Shape, StreamRole, Streams};
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

impl From<crate::gst::InitError> for IngestError {
    fn from(e: crate::gst::InitError) -> Self {
        IngestError::Gstreamer(e.to_string())
    }
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
    /// A stream that hands no frames to Rust (a main stream that is only recorded; its
    /// `next` never yields a frame): how many compressed frames passed since the last call,
    /// and their picture size if known. `None` for streams of frames.
    fn progress(&mut self) -> Option<(u64, Option<(u32, u32)>)> {
        None
    }
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

/// The health of `cam` at `now`, before it starts; `records` is set by the caller, which
/// knows the config's base dir (`CameraConfig::records`).
pub fn camera_health(cam: &CameraConfig, now: OffsetDateTime) -> CameraHealth {
    CameraHealth {
        name: cam.display_name().to_string(),
        grid_cell: cam.grid_cell.clone(),
        lat: cam.lat,
        lon: cam.lon,
        zones: cam
            .zones
            .iter()
            .map(|z| Shape { name: z.name.clone(), points: z.points.clone(), directions: None })
            .collect(),
        lines: cam
            .lines
            .iter()
            .map(|l| Shape {
                name: l.name.clone(),
                points: l.points.clone(),
                directions: l.directions.clone(),
            })
            .collect(),
        rules: crate::rules::describe(&cam.rules),
        calibration: cam.calibration.clone(),
        streams: if cam.detect_url.is_some() {
            Streams::separate(cam.enabled, cam.enabled && cam.record.enabled, now)
        } else {
            Streams::new(cam.enabled, now)
        },
        ..CameraHealth::new(cam.id.as_str(), cam.enabled, now)
    }
}

/// The health of `cam` at `now` as `gridwatch run` registers it: with `records`, and its
/// main stream `disabled` when it has a separate one that is not recorded (never opened).
pub fn camera_health_of(
    cam: &CameraConfig,
    base: &std::path::Path,
    now: OffsetDateTime,
) -> CameraHealth {
    let records = cam.records(base);
    let mut h = CameraHealth { records, ..camera_health(cam, now) };
    if !h.streams.shared && !records {
        h.streams.main.state = CameraState::Disabled;
    }
    h
}

/// Runs one camera until `shutdown` is set: frames go to `sink`, health to `registry`;
/// backoff waits and the stall timeout run on `clock`. Never panics on source failures;
/// they become `offline` with the reason and a retry.
pub fn supervise(
    opener: &dyn Opener,
    opts: &SuperviseOptions,
    registry: &Registry,
    clock: &dyn Clock,
    shutdown: &AtomicBool,
    sink: &mut dyn FnMut(Frame),
) {
    supervise_stream(opener, opts, StreamRole::Shared, registry, clock, shutdown, sink)
}

/// [`supervise`] for one stream `role` of a camera with separate main and detect streams:
/// health goes to that stream (and, for the detect stream, to the camera).
pub fn supervise_stream(
    opener: &dyn Opener,
    opts: &SuperviseOptions,
    role: StreamRole,
    registry: &Registry,
    clock: &dyn Clock,
    shutdown: &AtomicBool,
    sink: &mut dyn FnMut(Frame),
) {
    let id = opts.camera_id.as_str();
    let mut backoff = opts.backoff_min;
    let mut first = true;
    while !shutdown.load(Ordering::Relaxed) {
        if !first {
            registry.stream_reconnect(id, role);
        }
        first = false;
        registry.set_stream_state(id, role, CameraState::Connecting, None);
        let mut stream = match opener.open() {
            Ok(s) => s,
            Err(e) => {
                fail(registry, id, role, &e.to_string(), backoff);
                clock.sleep_unless(backoff, shutdown);
                backoff = (backoff * 2).min(opts.backoff_max);
                continue;
            }
        };
        let mut last_frame = clock.instant();
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
                        registry.set_stream_state(id, role, CameraState::Online, None);
                        tracing::info!(
                            camera = id,
                            stream = stream_name(role),
                            "online: first frame {}x{}",
                            f.width,
                            f.height
                        );
                        backoff = opts.backoff_min;
                    }
                    frames += 1;
                    last_frame = clock.instant();
                    let fps = rate.tick(last_frame, 1);
                    registry.stream_frames(id, role, 1, fps, Some((f.width, f.height)));
                    registry.set_latest(f.clone());
                    sink(f);
                }
                StreamEvent::Idle => match stream.progress() {
                    Some((n, size)) if n > 0 => {
                        if frames == 0 {
                            registry.set_stream_state(id, role, CameraState::Online, None);
                            tracing::info!(camera = id, stream = stream_name(role), "online");
                            backoff = opts.backoff_min;
                        }
                        frames += n;
                        last_frame = clock.instant();
                        let fps = rate.tick(last_frame, n);
                        registry.stream_frames(id, role, n, fps, size);
                    }
                    _ if clock.instant().duration_since(last_frame) > opts.stall_timeout => {
                        break Outcome::Failed(format!(
                            "no frame for {:.0} s (stalled source)",
                            opts.stall_timeout.as_secs_f64()
                        ));
                    }
                    _ => {}
                },
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
                registry.set_stream_state(
                    id,
                    role,
                    CameraState::Offline,
                    Some("end of stream (file finished; set loop = true to repeat)".into()),
                );
                tracing::info!(camera = id, "end of stream");
                return;
            }
            Outcome::Failed(e) => {
                fail(registry, id, role, &e, backoff);
                clock.sleep_unless(backoff, shutdown);
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

fn fail(registry: &Registry, id: &str, role: StreamRole, err: &str, retry_in: Duration) {
    let err = crate::redact::redact_url(err);
    tracing::warn!(
        camera = id,
        stream = stream_name(role),
        "offline: {err}; retrying in {:.1} s",
        retry_in.as_secs_f64()
    );
    registry.set_stream_state(id, role, CameraState::Offline, Some(err));
}

/// The stream's name in logs.
fn stream_name(role: StreamRole) -> &'static str {
    match role {
        StreamRole::Shared => "main+detect",
        StreamRole::Main => "main",
        StreamRole::Detect => "detect",
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
    /// `n` frames arrived at `now`.
    fn tick(&mut self, now: Instant, n: u64) -> f64 {
        for _ in 0..n.min(1000) {
            self.times.push_back(now);
        }
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
    //! In simulated time: the scripted source waits on the supervisor's `SimClock` (an idle
    //! poll moves it by the poll's timeout), backoff waits move it too, and the opener stops
    //! the supervisor when its scripts run out. No test sleeps.
    use super::*;
    use crate::clock::SimClock;
    use std::sync::Mutex;

    /// A scripted source: each open() pops the next script; each script is a list of events.
    /// Once the scripts have run out, opening fails and the supervisor is told to stop.
    struct Scripted {
        opens: Mutex<Vec<Result<Vec<&'static str>, &'static str>>>,
        clock: Arc<SimClock>,
        stop: Arc<AtomicBool>,
    }
    /// Events, frames so far, the clock, and compressed frames recorded since the last
    /// `progress` call (a record-only stream: `"rec"` is 25 of them within a poll).
    struct ScriptStream(Vec<&'static str>, u64, Arc<SimClock>, u64);
    impl FrameStream for ScriptStream {
        fn progress(&mut self) -> Option<(u64, Option<(u32, u32)>)> {
            Some((std::mem::take(&mut self.3), Some((1920, 1080))))
        }
        fn next(&mut self, t: Duration) -> StreamEvent {
            if self.0.first() == Some(&"rec") {
                self.0.remove(0);
                self.3 += 25;
                self.2.advance_std(t);
                return StreamEvent::Idle;
            }
            if self.0.is_empty() {
                // Nothing arrives within the timeout.
                self.2.advance_std(t);
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
                        captured_at: self.2.now(),
                        captured_instant: self.2.instant(),
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
                self.stop.store(true, Ordering::Relaxed);
                return Err(IngestError::Source("gone".into()));
            }
            match o.remove(0) {
                Ok(s) => Ok(Box::new(ScriptStream(s, 0, self.clock.clone(), 0))),
                Err(e) => Err(IngestError::Source(e.into())),
            }
        }
    }

    struct Setup {
        reg: Registry,
        opts: SuperviseOptions,
        clock: Arc<SimClock>,
        stop: Arc<AtomicBool>,
    }

    impl Setup {
        fn opener(&self, opens: Vec<Result<Vec<&'static str>, &'static str>>) -> Scripted {
            Scripted {
                opens: Mutex::new(opens),
                clock: self.clock.clone(),
                stop: self.stop.clone(),
            }
        }
        /// Runs the supervisor on this thread until it returns.
        fn supervise(&self, op: &Scripted, sink: &mut dyn FnMut(Frame)) {
            supervise(op, &self.opts, &self.reg, &*self.clock, &self.stop, sink);
        }
    }

    fn setup() -> Setup {
        let clock =
            Arc::new(SimClock::new(OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()));
        let reg = Registry::with_clock(clock.clone());
        let cfg = crate::config::Config::parse(
            "box_id='b'\ndata_dir='/tmp'\n[models]\n[[cameras]]\nid='c'\nurl='x.mp4'\nmodels=[]\nenabled=false\n",
            std::path::Path::new("/"),
        )
        .unwrap();
        reg.register(camera_health(&cfg.cameras[0], clock.now()));
        let opts = SuperviseOptions {
            camera_id: "c".into(),
            loop_file: false,
            live: false,
            stall_timeout: Duration::from_millis(300),
            backoff_min: Duration::from_millis(10),
            backoff_max: Duration::from_millis(20),
        };
        Setup { reg, opts, clock, stop: Arc::new(AtomicBool::new(false)) }
    }

    #[test]
    fn reconnects_after_open_failure_and_error_then_ends_at_eos() {
        let s = setup();
        let t0 = s.clock.instant();
        let op = s.opener(vec![
            Err("refused"),
            Ok(vec!["frame", "boom"]),
            Ok(vec!["frame", "frame", "eos"]),
        ]);
        let mut n = 0;
        s.supervise(&op, &mut |_| n += 1);
        assert_eq!(n, 3);
        let h = s.reg.get("c").unwrap();
        assert_eq!(h.state, CameraState::Offline);
        assert!(h.last_error.unwrap().contains("end of stream"));
        assert_eq!(h.reconnects, 2);
        // Backoff: 10 ms after the refusal, 10 ms again after the error (the frame before it
        // reset the backoff).
        assert_eq!(s.clock.instant() - t0, Duration::from_millis(20));
    }

    #[test]
    fn stall_marks_offline_with_reason() {
        let s = setup();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        s.reg.on_state_change(Arc::new(move |_, state, err, at| {
            seen2.lock().unwrap().push((state, err.map(String::from), at));
        }));
        let op = s.opener(vec![Ok(vec!["frame"])]);
        s.supervise(&op, &mut |_| {});
        let seen = seen.lock().unwrap();
        let online = seen.iter().find(|(st, _, _)| *st == CameraState::Online);
        let offline = seen.iter().find(|(st, err, _)| {
            *st == CameraState::Offline && err.as_deref().is_some_and(|e| e.contains("stalled"))
        });
        let (Some(online), Some(offline)) = (online, offline) else {
            panic!("never went offline: {seen:?}")
        };
        // Stalled after the timeout (300 ms), noticed at the next idle poll (200 ms each).
        assert_eq!(offline.2 - online.2, time::Duration::milliseconds(400), "{seen:?}");
    }

    #[test]
    fn a_record_only_main_stream_is_online_while_it_records_and_stalls_on_its_own() {
        let s = setup();
        let t0 = s.clock.now();
        s.reg.register(CameraHealth {
            streams: Streams::separate(true, true, s.clock.now()),
            ..CameraHealth::new("c", true, s.clock.now())
        });
        let op = s.opener(vec![Ok(vec!["rec", "rec", "rec"])]);
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (seen2, reg) = (seen.clone(), s.reg.clone());
        s.reg.on_state_change(Arc::new(move |_, state, _, _| seen2.lock().unwrap().push(state)));
        let mut frames = 0;
        supervise_stream(&op, &s.opts, StreamRole::Main, &reg, &*s.clock, &s.stop, &mut |_| {
            frames += 1
        });
        assert_eq!(frames, 0, "a record-only stream hands no frames on");
        let h = s.reg.get("c").unwrap();
        let m = &h.streams.main;
        assert_eq!((m.frames_received, m.width, m.height), (75, Some(1920), Some(1080)));
        // Online while it recorded (3 polls of 200 ms), then stalled: no progress for more
        // than 300 ms, noticed at the poll at 1 s; reopened after 10 ms of backoff, which the
        // scripted camera refuses ("gone", after which the test stops).
        assert_eq!(
            (m.state, m.last_error.as_deref(), m.reconnects),
            (CameraState::Offline, Some("gone"), 1)
        );
        assert_eq!(m.since - t0, time::Duration::milliseconds(1010), "{m:?}");
        // The camera (its detect stream) is untouched, and no camera state change was told.
        assert_eq!(
            (h.state, h.frames_received, h.streams.detect.state),
            (CameraState::Connecting, 0, CameraState::Connecting)
        );
        assert!(seen.lock().unwrap().is_empty(), "{:?}", seen.lock().unwrap());
    }

    #[test]
    fn loop_restarts_file() {
        let mut s = setup();
        s.opts.loop_file = true;
        let op = s.opener(vec![Ok(vec!["frame", "eos"]), Ok(vec!["frame", "eos"])]);
        let mut n = 0;
        s.supervise(&op, &mut |_| n += 1);
        assert!(n >= 2);
        assert!(s.reg.get("c").unwrap().reconnects >= 1);
    }
}
