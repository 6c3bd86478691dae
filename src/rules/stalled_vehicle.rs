//! `stalled_vehicle` (illegal parking, breakdown): a confirmed vehicle (`classes`) whose
//! anchor stays in `zone` within `tolerance` (normalised distance) of where it stopped for
//! ≥ `stationary_secs` → event per track (key = track id) starting when it stopped. The
//! reference point is the anchor's position when the stationary run began; moving farther
//! than `tolerance` from it restarts the run there. The event ends when the vehicle moves
//! beyond the tolerance, leaves the zone, or is not reported for `clear_secs`; the end time
//! is the last frame it was still stationary.

use serde::Deserialize;
use time::OffsetDateTime;

use super::common::vehicles;
use super::common::{classes_non_empty, d5, d60, defaults, non_negative, observed, sev_medium};
use super::per_track::{Forget, PerTrack, Step};
use super::{Rule, RuleSpec, Scene};
use crate::geometry::{dist, point_in_polygon, Pt};
use crate::types::{RuleOutput, Severity, Tracks};

const KIND: &str = "stalled_vehicle";

defaults! {
    d_still: f64 = 0.02;
}

/// `stalled_vehicle`: a vehicle whose anchor stays within `tolerance` for ≥ `stationary_secs`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StalledVehicleRule {
    pub zone: String,
    #[serde(default = "vehicles")]
    pub classes: Vec<String>,
    #[serde(default = "d60")]
    pub stationary_secs: f64,
    #[serde(default = "d_still")]
    pub tolerance: f64,
    #[serde(default = "d5")]
    pub clear_secs: f64,
    #[serde(default = "sev_medium")]
    pub severity: Severity,
    #[serde(default = "d60")]
    pub cooldown_secs: f64,
}

impl RuleSpec for StalledVehicleRule {
    const KIND: &'static str = KIND;

    fn validate(&self) -> Result<(), (String, String)> {
        classes_non_empty(&self.classes)?;
        non_negative(&[
            ("stationary_secs", self.stationary_secs),
            ("tolerance", self.tolerance),
            ("clear_secs", self.clear_secs),
            ("cooldown_secs", self.cooldown_secs),
        ])
    }

    fn zone(&self) -> Option<&str> {
        Some(&self.zone)
    }

    fn build(&self, scene: &Scene) -> Box<dyn Rule> {
        Box::new(StalledVehicle::new(self.clone(), scene))
    }
}

/// Per track: where and when its current stationary run began.
#[derive(Default)]
struct St {
    origin: Option<(OffsetDateTime, Pt)>,
}

pub struct StalledVehicle {
    cfg: StalledVehicleRule,
    zone: Vec<Pt>,
    scene: Scene,
    tracks: PerTrack<St>,
}

impl StalledVehicle {
    pub fn new(cfg: StalledVehicleRule, scene: &Scene) -> Self {
        let (min, forget) = (cfg.stationary_secs, Forget::After(cfg.clear_secs));
        StalledVehicle {
            zone: scene.zone(&cfg.zone),
            scene: scene.clone(),
            tracks: PerTrack::new(KIND, cfg.severity, min, forget, cfg.cooldown_secs),
            cfg,
        }
    }
}

impl Rule for StalledVehicle {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn on_frame(&mut self, t: &Tracks, out: &mut Vec<RuleOutput>) {
        let now = t.detections.frame.captured_at;
        let (zone, scene, tolerance) = (&self.zone, &self.scene, self.cfg.tolerance);
        let candidates = observed(t, &self.cfg.classes);
        self.tracks.on_frame(&t.detections.frame, candidates, out, |tr, st, active| {
            let p = scene.anchor(tr);
            if !point_in_polygon(p, zone) {
                return Step::Left;
            }
            let origin = st.origin.get_or_insert((now, p));
            if dist(p, origin.1) > tolerance {
                // Moved: a new stationary run starts here.
                *origin = (now, p);
                if active {
                    return Step::Broken;
                }
            }
            Step::holds(origin.0)
        });
    }

    fn finish(&mut self, _at: OffsetDateTime, out: &mut Vec<RuleOutput>) {
        self.tracks.finish(out);
    }
}
