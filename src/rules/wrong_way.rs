//! `wrong_way`: a confirmed track of `classes` in `zone` moving against the allowed
//! heading. Headings are image angles: 0° = image right, 90° = image down, 180° = left,
//! 270° (= −90°) = up. The track's motion is its anchor's displacement from an origin:
//! the anchor position where the current run started. The motion is *against* the allowed
//! heading when its heading is within `tolerance_deg` of the opposite heading, i.e. differs
//! from `allowed_heading_deg` by at least 180° − `tolerance_deg`. Whenever the displacement
//! is not against, the origin moves to the current position (so a track that turns around
//! starts a run where it turned). An event (key = track id) starts — at the origin's time —
//! once the run has lasted ≥ `min_secs` and the displacement is ≥ `min_displacement`
//! (normalised). It ends when the track moves a non-against way, leaves the zone, or is not
//! reported for `clear_secs`; the end time is the last frame it was moving against.

use serde::Deserialize;
use time::OffsetDateTime;

use super::common::{classes_non_empty, d1, d2, d30, defaults, non_negative, observed};
use super::common::{sev_high, vehicles};
use super::per_track::{Forget, PerTrack, Step};
use super::{Rule, RuleSpec, Scene};
use crate::geometry::{angle_diff_deg, dist, heading_deg, point_in_polygon, Pt};
use crate::types::{RuleOutput, Severity, Tracks};

const KIND: &str = "wrong_way";

defaults! {
    d_tol_deg: f64 = 45.0;
    d_disp: f64 = 0.05;
}

/// `wrong_way`: a track in `zone` moving against `allowed_heading_deg`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WrongWayRule {
    pub zone: String,
    #[serde(default = "vehicles")]
    pub classes: Vec<String>,
    /// 0 = image right, 90 = image down, 180 = left, 270 (or −90) = up. Required.
    pub allowed_heading_deg: f64,
    /// Moving within this many degrees of the opposite heading is wrong way. Default 45.
    #[serde(default = "d_tol_deg")]
    pub tolerance_deg: f64,
    #[serde(default = "d1")]
    pub min_secs: f64,
    #[serde(default = "d_disp")]
    pub min_displacement: f64,
    #[serde(default = "d2")]
    pub clear_secs: f64,
    #[serde(default = "sev_high")]
    pub severity: Severity,
    #[serde(default = "d30")]
    pub cooldown_secs: f64,
}

impl RuleSpec for WrongWayRule {
    const KIND: &'static str = KIND;

    fn validate(&self) -> Result<(), (String, String)> {
        classes_non_empty(&self.classes)?;
        if !self.allowed_heading_deg.is_finite() {
            return Err(("allowed_heading_deg".into(), "must be a number of degrees".into()));
        }
        if !(self.tolerance_deg.is_finite() && (0.0..90.0).contains(&self.tolerance_deg)) {
            return Err(("tolerance_deg".into(), "must be ≥ 0 and < 90".into()));
        }
        non_negative(&[
            ("min_secs", self.min_secs),
            ("min_displacement", self.min_displacement),
            ("clear_secs", self.clear_secs),
            ("cooldown_secs", self.cooldown_secs),
        ])
    }

    fn zone(&self) -> Option<&str> {
        Some(&self.zone)
    }

    fn build(&self, scene: &Scene) -> Box<dyn Rule> {
        Box::new(WrongWay::new(self.clone(), scene))
    }
}

/// Per track: where and when its current run began (None before its first sighting).
#[derive(Default)]
struct St {
    origin: Option<(OffsetDateTime, Pt)>,
}

pub struct WrongWay {
    cfg: WrongWayRule,
    zone: Vec<Pt>,
    scene: Scene,
    tracks: PerTrack<St>,
}

impl WrongWay {
    pub fn new(cfg: WrongWayRule, scene: &Scene) -> Self {
        let forget = Forget::After(cfg.clear_secs);
        WrongWay {
            zone: scene.zone(&cfg.zone),
            scene: scene.clone(),
            tracks: PerTrack::new(KIND, cfg.severity, cfg.min_secs, forget, cfg.cooldown_secs),
            cfg,
        }
    }

    /// Whether a displacement is against the allowed heading.
    pub fn against(&self, d: Pt) -> bool {
        against(&self.cfg, d)
    }
}

fn against(cfg: &WrongWayRule, d: Pt) -> bool {
    angle_diff_deg(heading_deg(d), cfg.allowed_heading_deg) >= 180.0 - cfg.tolerance_deg
}

impl Rule for WrongWay {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn on_frame(&mut self, t: &Tracks, out: &mut Vec<RuleOutput>) {
        let now = t.detections.frame.captured_at;
        let (cfg, zone, scene) = (&self.cfg, &self.zone, &self.scene);
        let candidates = observed(t, &cfg.classes);
        self.tracks.on_frame(&t.detections.frame, candidates, out, |tr, st, _| {
            let p = scene.anchor(tr);
            if !point_in_polygon(p, zone) {
                return Step::Left;
            }
            let Some((t0, p0)) = st.origin else {
                st.origin = Some((now, p));
                return Step::Idle;
            };
            let moved = dist(p, p0);
            if moved < 1e-9 {
                return Step::Idle;
            }
            if against(cfg, [p[0] - p0[0], p[1] - p0[1]]) {
                Step::Holds { since: t0, ready: moved >= cfg.min_displacement }
            } else {
                // Not against: a new run starts here.
                st.origin = Some((now, p));
                Step::Broken
            }
        });
    }

    fn finish(&mut self, _at: OffsetDateTime, out: &mut Vec<RuleOutput>) {
        self.tracks.finish(out);
    }
}
