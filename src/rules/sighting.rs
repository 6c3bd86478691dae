//! `sighting` (scratch): any confirmed track of `classes` seen for ≥ `min_secs` → one event
//! per track from its first frame; it ends once the track has not been seen for `clear_secs`.

use serde::Deserialize;
use time::OffsetDateTime;

use super::common::{classes_non_empty, d1, d2, non_negative, observed, people, sev_info};
use super::per_track::{Forget, PerTrack, Step};
use super::{Rule, RuleSpec, Scene};
use crate::types::{RuleOutput, Severity, Tracks};

const KIND: &str = "sighting";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SightingRule {
    #[serde(default = "people")]
    pub classes: Vec<String>,
    #[serde(default = "d1")]
    pub min_secs: f64,
    #[serde(default = "d2")]
    pub clear_secs: f64,
    #[serde(default = "sev_info")]
    pub severity: Severity,
}

impl RuleSpec for SightingRule {
    const KIND: &'static str = KIND;
    fn validate(&self) -> Result<(), (String, String)> {
        classes_non_empty(&self.classes)?;
        non_negative(&[("min_secs", self.min_secs), ("clear_secs", self.clear_secs)])
    }
    fn build(&self, _scene: &Scene) -> Box<dyn Rule> {
        let forget = Forget::After(self.clear_secs);
        let tracks = PerTrack::new(KIND, self.severity, self.min_secs, forget, 0.0);
        Box::new(Sighting { cfg: self.clone(), tracks })
    }
}

#[derive(Default)]
struct St {
    first: Option<OffsetDateTime>,
}

pub struct Sighting {
    cfg: SightingRule,
    tracks: PerTrack<St>,
}

impl Rule for Sighting {
    fn kind(&self) -> &'static str {
        KIND
    }
    fn on_frame(&mut self, t: &Tracks, out: &mut Vec<RuleOutput>) {
        let now = t.detections.frame.captured_at;
        let candidates = observed(t, &self.cfg.classes);
        self.tracks.on_frame(&t.detections.frame, candidates, out, |_, st, _| {
            Step::holds(*st.first.get_or_insert(now))
        });
    }
    fn finish(&mut self, _at: OffsetDateTime, out: &mut Vec<RuleOutput>) {
        self.tracks.finish(out);
    }
}
