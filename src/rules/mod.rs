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
pub mod intrusion;
pub mod line_crossing;
pub mod loitering;
pub mod presence;
pub mod stalled_vehicle;
pub mod wrong_way;

pub use common::Scene;

use std::collections::HashMap;

use time::OffsetDateTime;
use uuid::Uuid;

use crate::config::{CameraConfig, RuleConfig};
use crate::types::{Change, CountDelta, EventChange, RuleOutput, Tracks};

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
        RuleConfig::StalledVehicle(r) => Box::new(stalled_vehicle::StalledVehicle::new(r.clone(), scene)),
        RuleConfig::Congestion(r) => Box::new(congestion::Congestion::new(r.clone(), scene)),
    }
}

/// All rules of one camera plus the mapping from rule incidents to event ids.
pub struct RuleEngine {
    camera_id: String,
    grid_cell: Option<String>,
    rules: Vec<Box<dyn Rule>>,
    open: HashMap<(usize, u64), Uuid>,
    buf: Vec<RuleOutput>,
    counts: Vec<CountDelta>,
}

impl RuleEngine {
    pub fn new(cam: &CameraConfig) -> Self {
        RuleEngine {
            camera_id: cam.id.clone(),
            grid_cell: cam.grid_cell.clone(),
            rules: {
                let scene = Scene::from_camera(cam);
                cam.rules.iter().map(|r| build(r, &scene)).collect()
            },
            open: HashMap::new(),
            buf: Vec::new(),
            counts: Vec::new(),
        }
    }

    /// Runs every rule on one frame's detections and tracks.
    pub fn process(&mut self, t: &Tracks) -> Vec<EventChange> {
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

    /// Ends all open incidents (graceful shutdown).
    pub fn finish(&mut self, at: OffsetDateTime) -> Vec<EventChange> {
        let mut changes = Vec::new();
        for i in 0..self.rules.len() {
            self.rules[i].finish(at, &mut self.buf);
            self.drain(i, std::time::Instant::now(), &mut changes);
        }
        changes
    }

    fn drain(&mut self, rule: usize, caused_by: std::time::Instant, changes: &mut Vec<EventChange>) {
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
                caused_by,
            });
        }
    }
}

#[cfg(test)]
mod fixtures;
