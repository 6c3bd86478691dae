//! Rules turn per-frame detections into incidents. Each rule keeps its own state and reports
//! `RuleOutput`s (started / updated / ended, keyed per incident); the per-camera `RuleEngine`
//! assigns event ids and produces `EventChange`s for the store.
//!
//! Rules take "now" from the frame's capture time, never from a wall clock, so fixture tests
//! replay detections in simulated time.

pub mod common;
pub mod config;
pub mod congestion;
pub mod crowd;
pub mod fall;
pub mod fire;
pub mod intrusion;
pub mod line_crossing;
pub mod loitering;
pub mod occupancy;
pub mod offline;
pub mod presence;
pub mod stalled_vehicle;
pub mod tamper;
pub mod wrong_way;

pub use common::Scene;

use std::collections::HashMap;

use time::OffsetDateTime;
use uuid::Uuid;

use crate::config::{CameraConfig, RuleConfig};
use crate::types::{Change, CountDelta, EventChange, OccupancyDelta, RuleOutput, Tracks};

/// A rule evaluated on every analysed frame of one camera.
pub trait Rule: Send {
    /// Event kind this rule raises (e.g. "presence").
    fn kind(&self) -> &'static str;
    /// Looks at one frame's detections and the camera's tracks; appends any incident
    /// changes to `out`.
    fn on_frame(&mut self, t: &Tracks, out: &mut Vec<RuleOutput>);
    /// Ends every open incident (appliance stopping); `at` is the end time.
    fn finish(&mut self, at: OffsetDateTime, out: &mut Vec<RuleOutput>);
    /// Moves line-crossing counts produced since the last call into `out` (most rules
    /// count nothing).
    fn take_counts(&mut self, _out: &mut Vec<CountDelta>) {}
}

/// Builds a rule; `scene` holds the camera's zones, lines and anchors (names are checked by
/// `Config::validate`; an unknown name here gives an empty zone/line that never matches).
pub fn build(cfg: &RuleConfig, scene: &Scene) -> Box<dyn Rule> {
    match cfg {
        RuleConfig::Presence(p) => Box::new(presence::Presence::new(p.clone())),
        RuleConfig::Intrusion(r) => Box::new(intrusion::Intrusion::new(r.clone(), scene)),
        RuleConfig::LineCrossing(r) => Box::new(line_crossing::LineCrossing::new(r.clone(), scene)),
        RuleConfig::Loitering(r) => Box::new(loitering::Loitering::new(r.clone(), scene)),
        RuleConfig::Crowd(r) => Box::new(crowd::Crowd::new(r.clone(), scene)),
        RuleConfig::WrongWay(r) => Box::new(wrong_way::WrongWay::new(r.clone(), scene)),
        RuleConfig::StalledVehicle(r) => {
            Box::new(stalled_vehicle::StalledVehicle::new(r.clone(), scene))
        }
        RuleConfig::Congestion(r) => Box::new(congestion::Congestion::new(r.clone(), scene)),
        RuleConfig::Fall(r) => Box::new(fall::Fall::new(r.clone())),
        RuleConfig::Fire(r) => Box::new(fire::Fire::new(r.params())),
        RuleConfig::Smoke(r) => Box::new(fire::Fire::new(r.params())),
        RuleConfig::CameraTamper(r) => Box::new(tamper::Tamper::new(r.clone())),
        RuleConfig::CameraOffline(_) => Box::new(offline::CameraOffline),
    }
}

/// What every event of a rule carries: its id (`<kind>#<index in the camera's rules>`),
/// and the zone and line it watches.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleMeta {
    pub id: String,
    pub zone: Option<String>,
    pub line: Option<String>,
}

/// All rules of one camera plus the mapping from rule incidents to event ids, and the
/// camera's zone occupancy sampler.
pub struct RuleEngine {
    camera_id: String,
    grid_cell: Option<String>,
    rules: Vec<Box<dyn Rule>>,
    meta: Vec<RuleMeta>,
    open: HashMap<(usize, u64), Uuid>,
    buf: Vec<RuleOutput>,
    counts: Vec<CountDelta>,
    occupancy: occupancy::Occupancy,
}

impl RuleEngine {
    pub fn new(cam: &CameraConfig) -> Self {
        let scene = Scene::from_camera(cam);
        let rules: Vec<Box<dyn Rule>> = cam.rules.iter().map(|r| build(r, &scene)).collect();
        let meta = cam
            .rules
            .iter()
            .zip(&rules)
            .enumerate()
            .map(|(i, (cfg, rule))| RuleMeta {
                id: format!("{}#{i}", rule.kind()),
                zone: cfg.zone().map(str::to_string),
                line: cfg.line().map(str::to_string),
            })
            .collect();
        RuleEngine {
            camera_id: cam.id.clone(),
            grid_cell: cam.grid_cell.clone(),
            rules,
            meta,
            open: HashMap::new(),
            buf: Vec::new(),
            counts: Vec::new(),
            occupancy: occupancy::Occupancy::new(&scene),
        }
    }

    /// Id, zone and line of each rule, in config order.
    pub fn rules(&self) -> &[RuleMeta] {
        &self.meta
    }

    /// Runs every rule on one frame's detections and tracks, and samples zone occupancy.
    pub fn process(&mut self, t: &Tracks) -> Vec<EventChange> {
        self.occupancy.sample(t);
        let mut changes = Vec::new();
        for i in 0..self.rules.len() {
            self.rules[i].on_frame(t, &mut self.buf);
            self.rules[i].take_counts(&mut self.counts);
            self.drain(i, t.detections.frame.captured_instant, &mut changes);
        }
        changes
    }

    /// Line-crossing counts produced by `process` since the last call (for the store).
    pub fn take_counts(&mut self) -> Vec<CountDelta> {
        std::mem::take(&mut self.counts)
    }

    /// Zone occupancy of the 1-minute buckets completed since the last call (for the store).
    pub fn take_occupancy(&mut self) -> Vec<OccupancyDelta> {
        self.occupancy.take_completed()
    }

    /// Zone occupancy of every bucket, including the current partial one (shutdown; the
    /// store merges a partial bucket with the rest of that minute after a restart).
    pub fn flush_occupancy(&mut self) -> Vec<OccupancyDelta> {
        self.occupancy.flush()
    }

    /// Ends all open incidents (graceful shutdown).
    pub fn finish(&mut self, at: OffsetDateTime) -> Vec<EventChange> {
        let mut changes = Vec::new();
        for i in 0..self.rules.len() {
            self.rules[i].finish(at, &mut self.buf);
            self.drain(i, std::time::Instant::now(), &mut changes);
        }
        changes
    }

    fn drain(
        &mut self,
        rule: usize,
        caused_by: std::time::Instant,
        changes: &mut Vec<EventChange>,
    ) {
        for o in self.buf.drain(..) {
            let id = match o.change {
                Change::Started => {
                    let id = Uuid::now_v7();
                    self.open.insert((rule, o.key), id);
                    id
                }
                Change::Updated => match self.open.get(&(rule, o.key)) {
                    Some(id) => *id,
                    None => continue,
                },
                Change::Ended => match self.open.remove(&(rule, o.key)) {
                    Some(id) => id,
                    None => continue,
                },
            };
            let meta = self.meta.get(rule);
            changes.push(EventChange {
                event_id: id,
                change: o.change,
                camera_id: self.camera_id.clone(),
                grid_cell: self.grid_cell.clone(),
                kind: o.kind,
                severity: o.severity,
                at: o.at,
                objects: o.objects,
                snapshot: o.snapshot,
                rule: meta.map(|m| m.id.clone()),
                zone: meta.and_then(|m| m.zone.clone()),
                line: meta.and_then(|m| m.line.clone()),
                detail: o.detail,
                caused_by,
            });
        }
    }
}

#[cfg(test)]
mod fixtures;

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::types::{BBox, Detections, Frame, Track, TrackState};

    fn frame_at(secs: f64) -> Frame {
        Frame {
            camera_id: Arc::from("cam"),
            index: 0,
            width: 4,
            height: 4,
            rgb: Arc::from(vec![0u8; 48]),
            pts_ns: None,
            captured_at: OffsetDateTime::UNIX_EPOCH + time::Duration::seconds_f64(1.8e9 + secs),
            captured_instant: std::time::Instant::now(),
        }
    }

    fn tracks_at(secs: f64, y2: f32) -> Tracks {
        let frame = frame_at(secs);
        let now = frame.captured_at;
        Tracks {
            detections: Detections { frame, objects: vec![], infer_ms: 0.0 },
            tracks: vec![Track {
                id: 7,
                class_id: 0,
                class: "person".into(),
                score: 0.9,
                bbox: BBox { x1: 0.4, y1: 0.3, x2: 0.5, y2 },
                state: TrackState::Tracked,
                hits: 3,
                first_seen: now,
                last_seen: now,
                velocity: (0.0, 0.0),
            }],
        }
    }

    const CAM: &str = r#"
box_id = "b"
data_dir = "/tmp"
[models]
[[cameras]]
id = "cam"
url = "x.mp4"
models = []
enabled = false
[[cameras.zones]]
name = "area"
points = [[0.2, 0.2], [0.8, 0.2], [0.8, 0.8], [0.2, 0.8]]
[[cameras.lines]]
name = "gate"
points = [[0.1, 0.5], [0.9, 0.5]]
[[cameras.rules]]
kind = "intrusion"
zone = "area"
classes = ["person"]
min_secs = 0.0
[[cameras.rules]]
kind = "line_crossing"
line = "gate"
min_offset = 0.0
"#;

    #[test]
    fn engine_ends_open_incidents_and_hands_out_counts() {
        let cfg = crate::config::Config::parse(CAM, std::path::Path::new("/")).unwrap();
        let mut engine = RuleEngine::new(&cfg.cameras[0]);
        let started = engine.process(&tracks_at(0.0, 0.45));
        assert_eq!(started.len(), 1);
        assert_eq!((started[0].kind.as_str(), started[0].change), ("intrusion", Change::Started));
        assert!(started[0].snapshot.is_some());
        assert_eq!(
            (started[0].rule.as_deref(), started[0].zone.as_deref(), started[0].line.as_deref()),
            (Some("intrusion#0"), Some("area"), None)
        );
        assert_eq!(started[0].objects[0].track_id, Some(7));
        assert_eq!(
            engine.rules()[1],
            RuleMeta { id: "line_crossing#1".into(), zone: None, line: Some("gate".into()) }
        );
        assert!(engine.take_counts().is_empty());
        assert!(engine.process(&tracks_at(0.5, 0.55)).is_empty());
        let counts = engine.take_counts();
        assert_eq!(counts.len(), 1);
        assert_eq!(
            (counts[0].camera_id.as_str(), counts[0].line.as_str(), counts[0].direction),
            ("cam", "gate", crate::geometry::CrossDir::AToB)
        );
        assert!(engine.take_counts().is_empty(), "counts are handed out once");
        let end = frame_at(9.0).captured_at;
        let ended = engine.finish(end);
        assert_eq!(ended.len(), 1);
        assert_eq!((ended[0].event_id, ended[0].change), (started[0].event_id, Change::Ended));
        assert_eq!(ended[0].at, frame_at(0.5).captured_at, "ends at the last frame inside");
        assert!(engine.finish(end).is_empty());
        // Occupancy of zone `area`: the track was inside on both frames of one bucket.
        assert!(engine.take_occupancy().is_empty(), "bucket still open");
        let occ = engine.flush_occupancy();
        let got: Vec<(&str, &str, u64, u64, u32)> = occ
            .iter()
            .map(|o| (o.zone.as_str(), o.class.as_str(), o.samples, o.sum, o.max))
            .collect();
        assert_eq!(got, vec![("area", "*", 2, 2, 1), ("area", "person", 2, 2, 1)]);
    }

    #[test]
    fn unknown_zone_never_matches() {
        // Config::validate rejects this; an engine built anyway must not panic.
        let cfg = crate::config::Config::parse(CAM, std::path::Path::new("/")).unwrap();
        let mut cam = cfg.cameras[0].clone();
        cam.zones.clear();
        cam.lines.clear();
        let mut engine = RuleEngine::new(&cam);
        assert!(engine.process(&tracks_at(0.0, 0.45)).is_empty());
        assert!(engine.process(&tracks_at(0.5, 0.55)).is_empty());
        assert!(engine.take_counts().is_empty());
    }
}
