//! `camera_offline`: events from ingest health, not from frames. A camera rule block
//! `kind = "camera_offline"` opts the camera in; `OfflineWatch` (driven by the app's
//! "health-watch" thread, which polls `health::Registry` twice a second) starts an event
//! once the camera has been offline for ≥ `offline_secs` — counted from the first time it
//! went offline; reconnect attempts (`connecting`) in between do not restart the count — and
//! ends it when the camera is `online` again (end: the time it came back). The snapshot is
//! the camera's last frame before the outage, if it sent any. The event's one
//! object carries the camera's last error as its `class` (box: the whole frame, score 1).
//! A camera that never came online (e.g. a missing file) counts as offline from its first
//! failure. On shutdown an open event is ended at the shutdown time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use uuid::Uuid;

use super::camera_offline::{CameraOfflineRule, KIND};
use super::RuleConfig;
use crate::clock::Clock;
use crate::config::CameraConfig;
use crate::health::{CameraHealth, CameraState, Registry};
use crate::types::{BBox, Change, Detection, EventChange};

/// Offline tracking of one camera.
pub struct OfflineWatch {
    camera_id: String,
    grid_cell: Option<String>,
    cfg: CameraOfflineRule,
    /// Rule id of the events: `camera_offline#<index in the camera's rules>`.
    rule_id: String,
    down_since: Option<OffsetDateTime>,
    open: Option<Uuid>,
}

impl OfflineWatch {
    /// A watch for `cam` if it has a `camera_offline` rule (the first one counts).
    pub fn for_camera(cam: &CameraConfig) -> Option<OfflineWatch> {
        cam.rules.iter().enumerate().find_map(|(i, r)| match r {
            RuleConfig::CameraOffline(c) => Some(OfflineWatch {
                camera_id: cam.id.clone(),
                grid_cell: cam.grid_cell.clone(),
                cfg: c.clone(),
                rule_id: format!("{KIND}#{i}"),
                down_since: None,
                open: None,
            }),
            _ => None,
        })
    }

    fn change(&self, id: Uuid, change: Change, at: OffsetDateTime, error: &str) -> EventChange {
        EventChange {
            event_id: id,
            change,
            camera_id: self.camera_id.clone(),
            grid_cell: self.grid_cell.clone(),
            kind: KIND.into(),
            severity: self.cfg.severity,
            at,
            objects: vec![Detection {
                class_id: 0,
                class: error.into(),
                score: 1.0,
                bbox: BBox { x1: 0.0, y1: 0.0, x2: 1.0, y2: 1.0 },
                track_id: None,
            }],
            snapshot: None,
            rule: Some(self.rule_id.clone()),
            zone: None,
            line: None,
            detail: None,
            caused_by: Instant::now(),
        }
    }

    /// Looks at the camera's health at `now`; returns a change when the event starts or ends.
    pub fn step(&mut self, h: &CameraHealth, now: OffsetDateTime) -> Option<EventChange> {
        let error = h.last_error.as_deref().unwrap_or("offline");
        match h.state {
            CameraState::Online => {
                self.down_since = None;
                let id = self.open.take()?;
                Some(self.change(id, Change::Ended, h.since, "online again"))
            }
            CameraState::Offline => {
                let since = *self.down_since.get_or_insert(h.since);
                if self.open.is_none() && now - since >= super::common::secs(self.cfg.offline_secs)
                {
                    let id = Uuid::now_v7();
                    self.open = Some(id);
                    return Some(self.change(id, Change::Started, since, error));
                }
                None
            }
            _ => None,
        }
    }

    /// Ends an open event (shutdown).
    pub fn finish(&mut self, at: OffsetDateTime) -> Option<EventChange> {
        let id = self.open.take()?;
        Some(self.change(id, Change::Ended, at, "appliance stopped"))
    }
}

/// Polls `registry` every `period` of `clock`'s time for the cameras with a `camera_offline`
/// rule and sends event changes until `stop` is set; then ends open events.
pub fn watch(
    cameras: &[CameraConfig],
    registry: &Registry,
    clock: &dyn Clock,
    stop: &AtomicBool,
    period: Duration,
    send: &mut dyn FnMut(EventChange),
) {
    let mut watches: Vec<OfflineWatch> =
        cameras.iter().filter(|c| c.enabled).filter_map(OfflineWatch::for_camera).collect();
    if watches.is_empty() {
        return;
    }
    while !stop.load(Ordering::Relaxed) {
        let now = clock.now();
        for w in &mut watches {
            if let Some(h) = registry.get(&w.camera_id) {
                if let Some(mut c) = w.step(&h, now) {
                    if c.change == Change::Started {
                        c.snapshot = registry.latest(&w.camera_id); // the last frame before the outage
                    }
                    let why = c.objects.first().map(|o| o.class.as_str()).unwrap_or_default();
                    tracing::warn!(camera = %w.camera_id, "camera_offline {:?}: {why}", c.change);
                    send(c);
                }
            }
        }
        clock.sleep(period);
    }
    let now = clock.now();
    for w in &mut watches {
        if let Some(c) = w.finish(now) {
            send(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use super::*;
    use crate::clock::SimClock;
    use crate::ingest::{
        camera_health, supervise, FrameStream, IngestError, Opener, SuperviseOptions,
    };

    const CFG: &str =
        "box_id='b'\ndata_dir='/tmp'\n[models]\n[[cameras]]\nid='c'\nurl='x.mp4'\nmodels=[]\n\
                       enabled=false\n[[cameras.rules]]\nkind='camera_offline'\noffline_secs=0.3\n";

    fn cam() -> CameraConfig {
        let cfg = crate::config::Config::parse(CFG, std::path::Path::new("/")).unwrap();
        CameraConfig { enabled: true, ..cfg.cameras[0].clone() }
    }

    fn health(state: CameraState, since: OffsetDateTime, err: Option<&str>) -> CameraHealth {
        let mut h = CameraHealth::new("c", true, since);
        h.state = state;
        h.last_error = err.map(Into::into);
        h
    }

    #[test]
    fn offline_long_enough_starts_and_online_ends() {
        let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let s = |x: f64| t0 + time::Duration::seconds_f64(x);
        let mut w = OfflineWatch::for_camera(&cam()).unwrap();
        assert!(w.step(&health(CameraState::Online, s(0.0), None), s(0.0)).is_none());
        // A short outage (reconnect in between) raises nothing.
        assert!(w.step(&health(CameraState::Offline, s(1.0), Some("boom")), s(1.1)).is_none());
        assert!(w.step(&health(CameraState::Online, s(1.2), None), s(1.2)).is_none());
        // Offline at 2.0, connecting again at 2.2 (since restamped), offline again: counts from 2.0.
        assert!(w.step(&health(CameraState::Offline, s(2.0), Some("refused")), s(2.1)).is_none());
        assert!(w
            .step(&health(CameraState::Connecting, s(2.2), Some("refused")), s(2.2))
            .is_none());
        let c =
            w.step(&health(CameraState::Offline, s(2.25), Some("refused again")), s(2.35)).unwrap();
        assert_eq!((c.change, c.kind.as_str(), c.at), (Change::Started, KIND, s(2.0)));
        assert_eq!(c.objects[0].class, "refused again");
        assert!(
            w.step(&health(CameraState::Offline, s(2.25), Some("x")), s(5.0)).is_none(),
            "one event"
        );
        let e = w.step(&health(CameraState::Online, s(6.0), None), s(6.1)).unwrap();
        assert_eq!((e.event_id, e.change, e.at), (c.event_id, Change::Ended, s(6.0)));
        assert!(w.finish(s(7.0)).is_none());
    }

    /// Refuses to open; stops its supervisor after `tries` attempts.
    struct Refusing {
        tries: std::sync::atomic::AtomicU32,
        stop: Arc<AtomicBool>,
    }
    impl Opener for Refusing {
        fn open(&self) -> Result<Box<dyn FrameStream>, IngestError> {
            if self.tries.fetch_sub(1, Ordering::Relaxed) <= 1 {
                self.stop.store(true, Ordering::Relaxed);
            }
            Err(IngestError::Source("file not found".into()))
        }
    }

    /// A simulated clock that sets `stop` once its time passes `until` (ends a watch that
    /// would otherwise wait for ever).
    struct Until<'a>(&'a SimClock, OffsetDateTime, &'a AtomicBool);
    impl Clock for Until<'_> {
        fn now(&self) -> OffsetDateTime {
            self.0.now()
        }
        fn instant(&self) -> Instant {
            self.0.instant()
        }
        fn wait_for(&self, timeout: Duration, wait: &mut dyn FnMut(Duration) -> bool) -> bool {
            if self.0.now() >= self.1 {
                self.2.store(true, Ordering::Relaxed);
            }
            self.0.wait_for(timeout, wait)
        }
    }

    /// Through the real supervisor, registry and watch loop, in simulated time: a camera
    /// that cannot be opened raises `camera_offline` with its error; shutdown ends it.
    #[test]
    fn supervisor_failure_raises_camera_offline() {
        let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let sim = Arc::new(SimClock::new(t0));
        let reg = Registry::with_clock(sim.clone());
        let cam = cam();
        reg.register(camera_health(&cam, sim.now()));
        // The supervisor fails three times (at 0, 20 and 60 ms: backoff 20, then 40 ms), then
        // is stopped: the camera stays offline since the last failure (each reconnect attempt
        // goes through `connecting`).
        let stop = Arc::new(AtomicBool::new(false));
        let opts = SuperviseOptions {
            camera_id: "c".into(),
            loop_file: false,
            live: false,
            stall_timeout: Duration::from_millis(300),
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_millis(50),
        };
        let refusing = Refusing { tries: 3.into(), stop: stop.clone() };
        supervise(&refusing, &opts, &reg, &*sim, &stop, &mut |_| {});
        let h = reg.get("c").unwrap();
        let down = t0 + time::Duration::milliseconds(60);
        assert_eq!((h.state, h.since, h.reconnects), (CameraState::Offline, down, 2));
        assert_eq!(sim.now(), down);

        // The watch (polling every 20 ms) raises the event once the camera has been offline
        // for 0.3 s; the appliance is stopped on the first event.
        let mut got = Vec::new();
        let watch_stop = AtomicBool::new(false);
        let clock = Until(&sim, t0 + time::Duration::seconds(60), &watch_stop);
        watch(&[cam], &reg, &clock, &watch_stop, Duration::from_millis(20), &mut |c| {
            watch_stop.store(true, Ordering::Relaxed);
            got.push((c, sim.now()));
        });
        assert!(!got.is_empty(), "no camera_offline event");
        let (started, raised) = &got[0];
        assert_eq!(got.len(), 2, "started, then ended at shutdown");
        assert_eq!((started.change, started.kind.as_str()), (Change::Started, KIND));
        assert!(started.objects[0].class.contains("file not found"), "{:?}", started.objects);
        assert_eq!((got[1].0.change, got[1].0.event_id), (Change::Ended, started.event_id));
        // Started when the camera went offline, raised at the first poll 0.3 s after that,
        // ended one poll later.
        assert_eq!(started.at, down);
        assert_eq!(*raised, down + time::Duration::milliseconds(300));
        assert_eq!(got[1].0.at, down + time::Duration::milliseconds(320));
    }
}
