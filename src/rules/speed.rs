//! `speed`: a confirmed track of `classes` (default vehicles) with its anchor in `zone`
//! whose ground speed (`Track::speed_kmh`, from the camera's `[cameras.calibration]`) is
//! above `limit_kmh` for ≥ `min_secs` → one event per track episode (key = track id),
//! starting when it first went over. It ends on the first frame the speed is at or under
//! the limit, when the track leaves the zone, or once the track has not been reported for
//! `clear_secs`; the end time is the last frame it was over. Frames without a speed yet
//! (too little history) decide nothing. Detail: `{"limit_kmh", "speed_kmh" (mean over the
//! episode), "max_speed_kmh"}`, at the start (so far) and at the end (the whole episode).
//! A camera without a calibration is refused at load.

use serde::Deserialize;
use time::OffsetDateTime;

use super::common::vehicles;
use super::common::{classes_non_empty, d1, d2, d30, non_negative, observed, sev_medium};
use super::per_track::{Forget, PerTrack, Step};
use super::{Rule, RuleSpec, Scene};
use crate::geometry::{point_in_polygon, Pt};
use crate::types::{RuleOutput, Severity, Tracks};

const KIND: &str = "speed";

/// `speed`: a track in `zone` faster than `limit_kmh` for ≥ `min_secs`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpeedRule {
    pub zone: String,
    #[serde(default = "vehicles")]
    pub classes: Vec<String>,
    /// Ground speed limit in km/h. Required.
    pub limit_kmh: f64,
    /// Over the limit for at least this long. Default 1.
    #[serde(default = "d1")]
    pub min_secs: f64,
    /// A track lost (not reported) this long ends its event. Default 2.
    #[serde(default = "d2")]
    pub clear_secs: f64,
    #[serde(default = "sev_medium")]
    pub severity: Severity,
    #[serde(default = "d30")]
    pub cooldown_secs: f64,
}

impl RuleSpec for SpeedRule {
    const KIND: &'static str = KIND;

    fn validate(&self) -> Result<(), (String, String)> {
        classes_non_empty(&self.classes)?;
        if !(self.limit_kmh.is_finite() && self.limit_kmh > 0.0 && self.limit_kmh <= 1000.0) {
            return Err(("limit_kmh".into(), "must be > 0 and ≤ 1000 (km/h)".into()));
        }
        non_negative(&[
            ("min_secs", self.min_secs),
            ("clear_secs", self.clear_secs),
            ("cooldown_secs", self.cooldown_secs),
        ])
    }

    fn zone(&self) -> Option<&str> {
        Some(&self.zone)
    }

    fn needs_calibration(&self) -> Option<&'static str> {
        Some("limit_kmh")
    }

    fn build(&self, scene: &Scene) -> Box<dyn Rule> {
        Box::new(Speed::new(self.clone(), scene))
    }
}

/// Per track: since when it has been over the limit (None while not).
#[derive(Default)]
struct St {
    over_since: Option<OffsetDateTime>,
}

pub struct Speed {
    cfg: SpeedRule,
    zone: Vec<Pt>,
    scene: Scene,
    tracks: PerTrack<St>,
}

impl Speed {
    pub fn new(cfg: SpeedRule, scene: &Scene) -> Self {
        let forget = Forget::After(cfg.clear_secs);
        let tracks = PerTrack::new(KIND, cfg.severity, cfg.min_secs, forget, cfg.cooldown_secs)
            .with_detail(serde_json::json!({ "limit_kmh": cfg.limit_kmh }));
        Speed { zone: scene.zone(&cfg.zone), scene: scene.clone(), tracks, cfg }
    }
}

impl Rule for Speed {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn on_frame(&mut self, t: &Tracks, out: &mut Vec<RuleOutput>) {
        let now = t.detections.frame.captured_at;
        let (zone, scene, limit) = (&self.zone, &self.scene, self.cfg.limit_kmh);
        let candidates = observed(t, &self.cfg.classes);
        self.tracks.on_frame(&t.detections.frame, candidates, out, |tr, st, _| {
            if !point_in_polygon(scene.anchor(tr), zone) {
                return Step::Left;
            }
            match tr.speed_kmh {
                None => Step::Idle,
                Some(v) if v as f64 > limit => Step::holds(*st.over_since.get_or_insert(now)),
                Some(_) => {
                    st.over_since = None;
                    Step::Broken
                }
            }
        });
    }

    fn finish(&mut self, _at: OffsetDateTime, out: &mut Vec<RuleOutput>) {
        self.tracks.finish(out);
    }
}
