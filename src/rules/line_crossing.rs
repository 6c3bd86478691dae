//! `line_crossing`: counts every crossing of `line` by a confirmed track's anchor, per class
//! and direction (`a_to_b` = from the left side to the right side of the line walked from
//! its first to its last point, on screen; see `geometry`), and optionally raises an
//! instant event (started and ended at the crossing, key = track id) for crossings in
//! `direction`; its detail is `{"direction": "a_to_b"|"b_to_a", "class": …}`.
//!
//! Hysteresis against jitter: a crossing is only counted once the anchor has got at least
//! `min_offset` away from the line on the new side; if it crosses back first, the pending
//! crossing is dropped. The crossing time is the capture time of the first frame on the new
//! side. Positions exactly on the line are skipped (the last position off the line is kept).

use std::collections::BTreeMap;

use serde::Deserialize;
use time::OffsetDateTime;

use super::common::{
    d0, defaults, non_negative, object, observed, output, secs, sev_info, Cooldown,
};
use super::{Rule, RuleSpec, Scene};
use crate::geometry::{distance_to_polyline, polyline_crossings, CrossDir, Pt};
use crate::types::{Change, CountDelta, RuleOutput, Severity, Tracks};

const KIND: &str = "line_crossing";

/// Which crossings of a line raise events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    AToB,
    BToA,
    Both,
}

defaults! {
    both: Direction = Direction::Both;
    d_offset: f64 = 0.02;
}

/// `line_crossing`: a track's anchor crosses `line`; every crossing is counted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineCrossingRule {
    pub line: String,
    /// Classes counted; empty (default) = every class.
    #[serde(default)]
    pub classes: Vec<String>,
    /// Crossings that raise events (when `raise_event`). Counts always cover both.
    #[serde(default = "both")]
    pub direction: Direction,
    #[serde(default)]
    pub raise_event: bool,
    /// Hysteresis: a crossing counts once the anchor is this far (normalised) past the line
    /// without having come back. Default 0.02.
    #[serde(default = "d_offset")]
    pub min_offset: f64,
    #[serde(default = "sev_info")]
    pub severity: Severity,
    /// Per track. Default 0.
    #[serde(default = "d0")]
    pub cooldown_secs: f64,
}

impl RuleSpec for LineCrossingRule {
    const KIND: &'static str = KIND;

    fn validate(&self) -> Result<(), (String, String)> {
        if self.classes.iter().any(|s| s.trim().is_empty()) {
            return Err(("classes".into(), "class names must not be empty".into()));
        }
        non_negative(&[("min_offset", self.min_offset), ("cooldown_secs", self.cooldown_secs)])?;
        if self.min_offset > 0.5 {
            return Err(("min_offset".into(), "must be at most 0.5".into()));
        }
        Ok(())
    }

    fn line(&self) -> Option<&str> {
        Some(&self.line)
    }

    fn build(&self, scene: &Scene) -> Box<dyn Rule> {
        Box::new(LineCrossing::new(self.clone(), scene))
    }
}
/// Per-track state is forgotten after a track has not been reported this long.
const FORGET_SECS: f64 = 60.0;

struct St {
    prev: Pt,
    pending: Option<(CrossDir, OffsetDateTime)>,
    last_seen: OffsetDateTime,
}

pub struct LineCrossing {
    cfg: LineCrossingRule,
    line: Vec<Pt>,
    scene: Scene,
    tracks: BTreeMap<u64, St>,
    cooldown: Cooldown,
    counts: Vec<CountDelta>,
}

impl LineCrossing {
    pub fn new(cfg: LineCrossingRule, scene: &Scene) -> Self {
        LineCrossing {
            line: scene.line(&cfg.line),
            scene: scene.clone(),
            tracks: BTreeMap::new(),
            cooldown: Cooldown::new(cfg.cooldown_secs),
            counts: Vec::new(),
            cfg,
        }
    }

    fn raises(&self, dir: CrossDir) -> bool {
        self.cfg.raise_event
            && match self.cfg.direction {
                Direction::Both => true,
                Direction::AToB => dir == CrossDir::AToB,
                Direction::BToA => dir == CrossDir::BToA,
            }
    }
}

impl Rule for LineCrossing {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn on_frame(&mut self, t: &Tracks, out: &mut Vec<RuleOutput>) {
        let now = t.detections.frame.captured_at;
        if self.line.len() < 2 {
            return;
        }
        for tr in observed(t, &self.cfg.classes) {
            let p = self.scene.anchor(tr);
            let d = distance_to_polyline(p, &self.line);
            let Some(st) = self.tracks.get_mut(&tr.id) else {
                if d > 1e-12 {
                    self.tracks.insert(tr.id, St { prev: p, pending: None, last_seen: now });
                }
                continue;
            };
            st.last_seen = now;
            if d <= 1e-12 {
                continue;
            }
            for (_, dir) in polyline_crossings(st.prev, p, &self.line) {
                st.pending = match st.pending {
                    Some((pd, _)) if pd != dir => None,
                    Some(x) => Some(x),
                    None => Some((dir, now)),
                };
            }
            st.prev = p;
            let Some((dir, at)) = st.pending else { continue };
            if d < self.cfg.min_offset {
                continue;
            }
            st.pending = None;
            self.counts.push(CountDelta {
                camera_id: self.scene.camera_id.clone(),
                line: self.cfg.line.clone(),
                class: tr.class.clone(),
                direction: dir,
                at,
                count: 1,
            });
            if self.raises(dir) && self.cooldown.allows(tr.id, now) {
                let obj = vec![object(tr)];
                let sev = self.cfg.severity;
                let detail = serde_json::json!({ "direction": dir.as_str(), "class": tr.class });
                out.push(
                    output(
                        KIND,
                        sev,
                        tr.id,
                        Change::Started,
                        at,
                        obj.clone(),
                        Some(&t.detections.frame),
                    )
                    .with_detail(detail),
                );
                out.push(output(KIND, sev, tr.id, Change::Ended, at, obj, None));
                self.cooldown.ended(tr.id, at);
            }
        }
        let forget = secs(FORGET_SECS);
        self.tracks.retain(|_, s| now - s.last_seen < forget);
        self.cooldown.prune(now);
    }

    fn finish(&mut self, _at: OffsetDateTime, _out: &mut Vec<RuleOutput>) {
        // Crossing events are instant: nothing is ever open. Pending crossings are dropped.
        self.tracks.clear();
    }

    fn take_counts(&mut self, out: &mut Vec<CountDelta>) {
        out.append(&mut self.counts);
    }
}
