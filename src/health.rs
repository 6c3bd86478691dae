//! Camera health and latest frames, shared between ingest (writer) and the API (reader).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde::Serialize;
use time::OffsetDateTime;

use crate::clock::{Clock, SystemClock};
use crate::types::Frame;

pub use crate::types::CameraState;

#[derive(Debug, Clone, Serialize)]
pub struct CameraHealth {
    pub id: String,
    pub name: String,
    pub grid_cell: Option<String>,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub state: CameraState,
    /// When `state` last changed (UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
    pub last_error: Option<String>,
    /// Frames handed to detection per second, over the last few seconds.
    pub fps: f64,
    pub frames_received: u64,
    pub frames_analysed: u64,
    /// Frames dropped because inference was behind.
    pub frames_dropped: u64,
    /// Mean inference time of recent frames (ms).
    pub infer_ms: f64,
    pub reconnects: u64,
    /// Whether the camera records continuously (its events have clips).
    pub records: bool,
    /// The camera's zones and lines from the config (normalised 0–1 image coordinates), for
    /// drawing over its view.
    pub zones: Vec<Shape>,
    pub lines: Vec<Shape>,
    /// The camera's rules from the config: id (`<kind>#<index>`), kind, zone and line.
    pub rules: Vec<crate::rules::RuleMeta>,
    /// The camera's ground-plane calibration (`[cameras.calibration]`), for drawing its
    /// quadrilateral and distances over the view; `None` without one.
    pub calibration: Option<crate::rules::CalibrationConfig>,
    /// The state of each of the camera's streams: `main` (recorded) and `detect` (decoded
    /// for analysis). The camera-level `state`, `fps`, `frames_received`, `reconnects` and
    /// `last_error` above are the detect stream's (docs/design/0036).
    pub streams: Streams,
}

/// The camera's two streams. Without a `detect_url` both are the one connection
/// (`shared`) and report the same; with one, `main` is opened only to record it.
#[derive(Debug, Clone, Serialize)]
pub struct Streams {
    /// True when detection and recording share one connection (no `detect_url`).
    pub shared: bool,
    pub main: StreamHealth,
    pub detect: StreamHealth,
}

/// One stream (one connection) of a camera.
#[derive(Debug, Clone, Serialize)]
pub struct StreamHealth {
    /// `connecting`, `online` (its data is arriving), `offline` (failed; see `last_error`)
    /// or `disabled` (not opened: the camera is disabled, or nothing uses the stream, e.g.
    /// a main stream that is not recorded).
    pub state: CameraState,
    /// When `state` last changed (UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
    pub last_error: Option<String>,
    /// Frames per second arriving over the last few seconds: decoded frames handed to
    /// detection (detect), compressed frames handed to the recorder (main).
    pub fps: f64,
    pub frames_received: u64,
    pub reconnects: u64,
    /// Picture size of the frames the stream delivers, once known: the main stream's
    /// recorded (coded) size, the detect stream's analysed frame size (after scaling).
    pub width: Option<u32>,
    pub height: Option<u32>,
}

/// Which stream of a camera a supervisor runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamRole {
    /// One connection both recorded and detected on (no `detect_url`).
    Shared,
    /// The main stream, opened only to record it.
    Main,
    /// The detect stream (`detect_url`), decoded for analysis only.
    Detect,
}

impl StreamRole {
    /// Whether this stream feeds detection (its state is the camera's state).
    pub fn detects(self) -> bool {
        matches!(self, StreamRole::Shared | StreamRole::Detect)
    }

    /// Whether this stream is recorded / the main stream.
    pub fn is_main(self) -> bool {
        matches!(self, StreamRole::Shared | StreamRole::Main)
    }
}

impl StreamHealth {
    pub fn new(state: CameraState, since: OffsetDateTime) -> Self {
        StreamHealth {
            state,
            since,
            last_error: None,
            fps: 0.0,
            frames_received: 0,
            reconnects: 0,
            width: None,
            height: None,
        }
    }

    fn set_state(&mut self, state: CameraState, error: Option<String>, now: OffsetDateTime) {
        if self.state != state {
            self.state = state;
            self.since = now;
        }
        if error.is_some() || state == CameraState::Online {
            self.last_error =
                error.or(self.last_error.take().filter(|_| state != CameraState::Online));
        }
    }
}

/// A named zone polygon or line polyline.
#[derive(Debug, Clone, Serialize)]
pub struct Shape {
    pub name: String,
    pub points: Vec<[f64; 2]>,
    /// Lines only: the names of the crossing directions, when the config gives them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub directions: Option<crate::rules::scene::LineDirections>,
}

#[derive(Default)]
struct Entry {
    health: Option<CameraHealth>,
    latest: Option<Frame>,
}

/// Called after a camera's state changed: camera id, new state, last error, when. Runs on
/// the camera's thread: it must not block (the uplink hands it to a channel).
pub type StateHook = Arc<dyn Fn(&str, CameraState, Option<&str>, OffsetDateTime) + Send + Sync>;

/// Registry of all cameras' health, cloned cheaply (Arc inside).
#[derive(Clone)]
pub struct Registry {
    inner: Arc<RwLock<BTreeMap<String, Entry>>>,
    hook: Arc<RwLock<Option<StateHook>>>,
    clock: Arc<dyn Clock>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry::with_clock(Arc::new(SystemClock))
    }
}

impl Registry {
    /// A registry on the system clock.
    pub fn new() -> Self {
        Self::default()
    }

    /// A registry that stamps state changes with `clock`'s time.
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        Registry { inner: Default::default(), hook: Default::default(), clock }
    }

    /// The clock of the state stamps; the cameras' supervisors and the offline watch run on
    /// it too.
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    /// Adds (or resets) a camera.
    pub fn register(&self, h: CameraHealth) {
        let mut m = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let id = h.id.clone();
        m.entry(id).or_default().health = Some(h);
    }

    /// Applies `f` to a camera's health; no-op for unknown ids.
    pub fn update(&self, id: &str, f: impl FnOnce(&mut CameraHealth)) {
        let mut m = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = m.get_mut(id).and_then(|e| e.health.as_mut()) {
            f(h);
        }
    }

    /// Sets the state, stamping `since` only on a change, and the last error, of the camera
    /// and its detect stream (and of its main stream too when they are one connection). A
    /// change is reported to the hook set with [`Registry::on_state_change`].
    pub fn set_state(&self, id: &str, state: CameraState, error: Option<String>) {
        let mut changed = None;
        let now = self.clock.now();
        self.update(id, |h| {
            let role = if h.streams.shared { StreamRole::Shared } else { StreamRole::Detect };
            for s in h.streams.for_role(role) {
                s.set_state(state, error.clone(), now);
            }
            if h.state != state {
                h.state = state;
                h.since = now;
                changed = Some(h.since);
            }
            if error.is_some() || state == CameraState::Online {
                h.last_error =
                    error.or(h.last_error.take().filter(|_| state != CameraState::Online));
            }
        });
        if let Some(at) = changed {
            let hook = self.hook.read().unwrap_or_else(|e| e.into_inner()).clone();
            if let Some(hook) = hook {
                let err = self.get(id).and_then(|h| h.last_error);
                hook(id, state, err.as_deref(), at);
            }
        }
    }

    /// Sets the state of a camera's stream `role`: the stream that feeds detection sets the
    /// camera's state ([`Registry::set_state`]); a separate main stream only its own.
    pub fn set_stream_state(
        &self,
        id: &str,
        role: StreamRole,
        state: CameraState,
        error: Option<String>,
    ) {
        if role.detects() {
            return self.set_state(id, state, error);
        }
        let now = self.clock.now();
        self.update(id, |h| {
            for s in h.streams.for_role(role) {
                s.set_state(state, error.clone(), now);
            }
        });
    }

    /// Counts `frames` more frames of stream `role`, at `fps`, of `size` when known; the
    /// detect stream's also count for the camera.
    pub fn stream_frames(
        &self,
        id: &str,
        role: StreamRole,
        frames: u64,
        fps: f64,
        size: Option<(u32, u32)>,
    ) {
        self.update(id, |h| {
            for s in h.streams.for_role(role) {
                s.frames_received += frames;
                s.fps = fps;
                if let Some((w, ht)) = size {
                    (s.width, s.height) = (Some(w), Some(ht));
                }
            }
            if role.detects() {
                h.frames_received += frames;
                h.fps = fps;
            }
        });
    }

    /// Counts a reconnect of stream `role` (and of the camera, for the detect stream).
    pub fn stream_reconnect(&self, id: &str, role: StreamRole) {
        self.update(id, |h| {
            for s in h.streams.for_role(role) {
                s.reconnects += 1;
            }
            if role.detects() {
                h.reconnects += 1;
            }
        });
    }

    /// Sets the hook told about every state change (the uplink's camera status).
    pub fn on_state_change(&self, hook: StateHook) {
        *self.hook.write().unwrap_or_else(|e| e.into_inner()) = Some(hook);
    }

    pub fn set_latest(&self, frame: Frame) {
        let mut m = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = m.get_mut(&*frame.camera_id) {
            e.latest = Some(frame);
        }
    }

    pub fn get(&self, id: &str) -> Option<CameraHealth> {
        let m = self.inner.read().unwrap_or_else(|e| e.into_inner());
        m.get(id).and_then(|e| e.health.clone())
    }

    pub fn latest(&self, id: &str) -> Option<Frame> {
        let m = self.inner.read().unwrap_or_else(|e| e.into_inner());
        m.get(id).and_then(|e| e.latest.clone())
    }

    pub fn all(&self) -> Vec<CameraHealth> {
        let m = self.inner.read().unwrap_or_else(|e| e.into_inner());
        m.values().filter_map(|e| e.health.clone()).collect()
    }
}

impl CameraHealth {
    /// A camera's health before it starts, at `since`: `connecting`, or `disabled`. The
    /// caller fills in what the config says about the camera (name, place, zones and lines,
    /// `records`; see `ingest::camera_health`).
    pub fn new(id: impl Into<String>, enabled: bool, since: OffsetDateTime) -> Self {
        let id = id.into();
        CameraHealth {
            name: id.clone(),
            id,
            grid_cell: None,
            lat: None,
            lon: None,
            state: if enabled { CameraState::Connecting } else { CameraState::Disabled },
            since,
            last_error: None,
            fps: 0.0,
            frames_received: 0,
            frames_analysed: 0,
            frames_dropped: 0,
            infer_ms: 0.0,
            reconnects: 0,
            records: false,
            zones: Vec::new(),
            lines: Vec::new(),
            rules: Vec::new(),
            calibration: None,
            streams: Streams::new(enabled, since),
        }
    }
}

impl Streams {
    /// One shared connection, `connecting` (or `disabled`) at `since`.
    pub fn new(enabled: bool, since: OffsetDateTime) -> Self {
        let state = if enabled { CameraState::Connecting } else { CameraState::Disabled };
        Streams {
            shared: true,
            main: StreamHealth::new(state, since),
            detect: StreamHealth::new(state, since),
        }
    }

    /// Separate main and detect streams; `main_used` is false when the main stream is not
    /// opened (not recorded).
    pub fn separate(enabled: bool, main_used: bool, since: OffsetDateTime) -> Self {
        let mut s = Streams::new(enabled, since);
        s.shared = false;
        if !main_used {
            s.main.state = CameraState::Disabled;
        }
        s
    }

    fn for_role(&mut self, role: StreamRole) -> Vec<&mut StreamHealth> {
        match role {
            StreamRole::Shared => vec![&mut self.main, &mut self.detect],
            StreamRole::Main => vec![&mut self.main],
            StreamRole::Detect => vec![&mut self.detect],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separate_streams_keep_their_own_state_and_the_detect_stream_is_the_cameras() {
        let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let reg = Registry::new();
        let shared = CameraHealth::new("one", true, t0);
        let separate = CameraHealth {
            streams: Streams::separate(true, true, t0),
            ..CameraHealth::new("two", true, t0)
        };
        reg.register(shared);
        reg.register(separate);
        // One connection: both streams follow it.
        reg.set_stream_state(
            "one",
            StreamRole::Shared,
            CameraState::Offline,
            Some("refused".into()),
        );
        let h = reg.get("one").unwrap();
        assert!(h.streams.shared);
        for s in [&h.streams.main, &h.streams.detect] {
            assert_eq!((s.state, s.last_error.as_deref()), (CameraState::Offline, Some("refused")));
        }
        assert_eq!(h.state, CameraState::Offline);
        // Main offline, detect online: the camera is online (it is analysed), main is not.
        reg.set_stream_state(
            "two",
            StreamRole::Main,
            CameraState::Offline,
            Some("main down".into()),
        );
        reg.set_stream_state("two", StreamRole::Detect, CameraState::Online, None);
        reg.stream_frames("two", StreamRole::Detect, 3, 5.0, Some((640, 360)));
        reg.stream_reconnect("two", StreamRole::Main);
        let h = reg.get("two").unwrap();
        assert_eq!((h.state, h.last_error.as_deref()), (CameraState::Online, None));
        assert_eq!((h.frames_received, h.reconnects), (3, 0));
        let (m, d) = (&h.streams.main, &h.streams.detect);
        assert_eq!(
            (m.state, m.last_error.as_deref(), m.reconnects),
            (CameraState::Offline, Some("main down"), 1)
        );
        assert_eq!(
            (d.state, d.frames_received, d.width, d.height),
            (CameraState::Online, 3, Some(640), Some(360))
        );
        assert_eq!(m.frames_received, 0);
        // The reverse: detect offline (the camera too), main recording.
        reg.set_stream_state("two", StreamRole::Main, CameraState::Online, None);
        reg.stream_frames("two", StreamRole::Main, 25, 25.0, Some((1920, 1080)));
        reg.set_state("two", CameraState::Offline, Some("sub down".into()));
        let h = reg.get("two").unwrap();
        assert_eq!((h.state, h.last_error.as_deref()), (CameraState::Offline, Some("sub down")));
        assert_eq!(
            (h.streams.main.state, h.streams.main.last_error.as_deref()),
            (CameraState::Online, None)
        );
        assert_eq!((h.streams.main.width, h.streams.main.frames_received), (Some(1920), 25));
        assert_eq!(h.streams.detect.state, CameraState::Offline);
        assert_eq!(h.frames_received, 3, "main-stream frames are not the camera's");
    }
}
