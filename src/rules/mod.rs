//! Rules turn per-frame detections into incidents. Each rule keeps its own state and reports
//! `RuleOutput`s (started / updated / ended, keyed per incident); the per-camera `RuleEngine`
//! assigns event ids and produces `EventChange`s for the store.
//!
//! Rules take "now" from the frame's capture time, never from a wall clock, so fixture tests
//! replay detections in simulated time.

pub mod presence;

use std::collections::HashMap;

use time::OffsetDateTime;
use uuid::Uuid;

use crate::config::{CameraConfig, RuleConfig};
use crate::types::{Change, EventChange, RuleOutput, Tracks};

/// A rule evaluated on every analysed frame of one camera.
pub trait Rule: Send {
    /// Event kind this rule raises (e.g. "presence").
    fn kind(&self) -> &'static str;
    /// Looks at one frame's detections and the camera's tracks; appends any incident
    /// changes to `out`.
    fn on_frame(&mut self, t: &Tracks, out: &mut Vec<RuleOutput>);
    /// Ends every open incident (appliance stopping); `at` is the end time.
    fn finish(&mut self, at: OffsetDateTime, out: &mut Vec<RuleOutput>);
}

pub fn build(cfg: &RuleConfig) -> Box<dyn Rule> {
    match cfg {
        RuleConfig::Presence(p) => Box::new(presence::Presence::new(p.clone())),
    }
}

/// All rules of one camera plus the mapping from rule incidents to event ids.
pub struct RuleEngine {
    camera_id: String,
    grid_cell: Option<String>,
    rules: Vec<Box<dyn Rule>>,
    open: HashMap<(usize, u64), Uuid>,
    buf: Vec<RuleOutput>,
}

impl RuleEngine {
    pub fn new(cam: &CameraConfig) -> Self {
        RuleEngine {
            camera_id: cam.id.clone(),
            grid_cell: cam.grid_cell.clone(),
            rules: cam.rules.iter().map(build).collect(),
            open: HashMap::new(),
            buf: Vec::new(),
        }
    }

    /// Runs every rule on one frame's detections and tracks.
    pub fn process(&mut self, t: &Tracks) -> Vec<EventChange> {
        let mut changes = Vec::new();
        for i in 0..self.rules.len() {
            self.rules[i].on_frame(t, &mut self.buf);
            self.drain(i, t.detections.frame.captured_instant, &mut changes);
        }
        changes
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
