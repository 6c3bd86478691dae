//! `intrusion`: a confirmed track of `classes` whose anchor is inside `zone` for ≥
//! `min_secs` → one event per track (key = track id), starting when the anchor entered.
//! It ends on the first frame the track is seen outside the zone, or once the track has not
//! been reported for `clear_secs`; the end time is the last frame it was seen inside.
//! A brief loss (< `clear_secs`) keeps the entry time.

use serde::Deserialize;
use time::OffsetDateTime;

use super::common::{classes_non_empty, d1, d10, d2, non_negative, observed, sev_high};
use super::per_track::{Forget, PerTrack, Step};
use super::{Rule, RuleSpec, Scene};
use crate::geometry::{point_in_polygon, Pt};
use crate::types::{RuleOutput, Severity, Tracks};

const KIND: &str = "intrusion";

/// `intrusion`: a track of `classes` with its anchor inside `zone` for ≥ `min_secs`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntrusionRule {
    pub zone: String,
    /// Required, non-empty.
    pub classes: Vec<String>,
    #[serde(default = "d1")]
    pub min_secs: f64,
    /// A track lost (not reported) this long ends its event. Default 2.
    #[serde(default = "d2")]
    pub clear_secs: f64,
    #[serde(default = "sev_high")]
    pub severity: Severity,
    #[serde(default = "d10")]
    pub cooldown_secs: f64,
}

impl RuleSpec for IntrusionRule {
    const KIND: &'static str = KIND;

    fn validate(&self) -> Result<(), (String, String)> {
        classes_non_empty(&self.classes)?;
        non_negative(&[
            ("min_secs", self.min_secs),
            ("clear_secs", self.clear_secs),
            ("cooldown_secs", self.cooldown_secs),
        ])
    }

    fn zone(&self) -> Option<&str> {
        Some(&self.zone)
    }

    fn build(&self, scene: &Scene) -> Box<dyn Rule> {
        Box::new(Intrusion::new(self.clone(), scene))
    }
}

/// Per track: when its anchor entered the zone (None while outside).
#[derive(Default)]
struct St {
    since: Option<OffsetDateTime>,
}

pub struct Intrusion {
    cfg: IntrusionRule,
    zone: Vec<Pt>,
    scene: Scene,
    tracks: PerTrack<St>,
}

impl Intrusion {
    pub fn new(cfg: IntrusionRule, scene: &Scene) -> Self {
        let forget = Forget::After(cfg.clear_secs);
        Intrusion {
            zone: scene.zone(&cfg.zone),
            scene: scene.clone(),
            tracks: PerTrack::new(KIND, cfg.severity, cfg.min_secs, forget, cfg.cooldown_secs),
            cfg,
        }
    }
}

impl Rule for Intrusion {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn on_frame(&mut self, t: &Tracks, out: &mut Vec<RuleOutput>) {
        let now = t.detections.frame.captured_at;
        let (zone, scene) = (&self.zone, &self.scene);
        let candidates = observed(t, &self.cfg.classes);
        self.tracks.on_frame(&t.detections.frame, candidates, out, |tr, st, _| {
            if point_in_polygon(scene.anchor(tr), zone) {
                Step::holds(*st.since.get_or_insert(now))
            } else {
                st.since = None;
                Step::Broken
            }
        });
    }

    fn finish(&mut self, _at: OffsetDateTime, out: &mut Vec<RuleOutput>) {
        self.tracks.finish(out);
    }
}
