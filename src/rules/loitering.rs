//! `loitering`: one confirmed track of `classes` dwelling with its anchor in `zone` for ≥
//! `dwell_secs` → event per track (key = track id) starting at its first frame inside.
//! Gaps (track lost and re-found with the same id, or briefly outside the zone) of up to
//! `max_gap_secs` do not restart the dwell; a longer gap ends the event (end time = last
//! frame inside), reported on the first frame past the gap.

use serde::Deserialize;
use time::OffsetDateTime;

use super::common::{classes_non_empty, d3, d30, non_negative, observed, people, sev_medium};
use super::per_track::{Forget, PerTrack, Step};
use super::{Rule, RuleSpec, Scene};
use crate::geometry::{point_in_polygon, Pt};
use crate::types::{RuleOutput, Severity, Tracks};

const KIND: &str = "loitering";

/// `loitering`: one track dwelling in `zone` ≥ `dwell_secs`, gaps ≤ `max_gap_secs` tolerated.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoiteringRule {
    pub zone: String,
    #[serde(default = "people")]
    pub classes: Vec<String>,
    #[serde(default = "d30")]
    pub dwell_secs: f64,
    #[serde(default = "d3")]
    pub max_gap_secs: f64,
    #[serde(default = "sev_medium")]
    pub severity: Severity,
    #[serde(default = "d30")]
    pub cooldown_secs: f64,
}

impl RuleSpec for LoiteringRule {
    const KIND: &'static str = KIND;

    fn validate(&self) -> Result<(), (String, String)> {
        classes_non_empty(&self.classes)?;
        non_negative(&[
            ("dwell_secs", self.dwell_secs),
            ("max_gap_secs", self.max_gap_secs),
            ("cooldown_secs", self.cooldown_secs),
        ])
    }

    fn zone(&self) -> Option<&str> {
        Some(&self.zone)
    }

    fn build(&self, scene: &Scene) -> Box<dyn Rule> {
        Box::new(Loitering::new(self.clone(), scene))
    }
}

/// Per track: its first frame inside (of the current dwell).
#[derive(Default)]
struct St {
    first: Option<OffsetDateTime>,
}

pub struct Loitering {
    cfg: LoiteringRule,
    zone: Vec<Pt>,
    scene: Scene,
    tracks: PerTrack<St>,
}

impl Loitering {
    pub fn new(cfg: LoiteringRule, scene: &Scene) -> Self {
        // Only frames inside count as sightings, so leaving the zone is a gap like a loss.
        let forget = Forget::GapOver(cfg.max_gap_secs);
        Loitering {
            zone: scene.zone(&cfg.zone),
            scene: scene.clone(),
            tracks: PerTrack::new(KIND, cfg.severity, cfg.dwell_secs, forget, cfg.cooldown_secs),
            cfg,
        }
    }
}

impl Rule for Loitering {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn on_frame(&mut self, t: &Tracks, out: &mut Vec<RuleOutput>) {
        let now = t.detections.frame.captured_at;
        let (zone, scene) = (&self.zone, &self.scene);
        let candidates = observed(t, &self.cfg.classes);
        self.tracks.on_frame(&t.detections.frame, candidates, out, |tr, st, _| {
            if point_in_polygon(scene.anchor(tr), zone) {
                Step::holds(*st.first.get_or_insert(now))
            } else {
                Step::Skip
            }
        });
    }

    fn finish(&mut self, _at: OffsetDateTime, out: &mut Vec<RuleOutput>) {
        self.tracks.finish(out);
    }
}
