//! `congestion`: at least `min_count` confirmed vehicles (`classes`) with their anchor in
//! `zone` whose median speed is below the limit for ≥ `min_secs` → one event per episode for
//! the zone. Hysteresis: it ends once the condition has been false for `clear_secs`; the end
//! time is the last frame the condition held. Detail at the start: `{"count": n,
//! "median_speed_heights": v, "median_speed_kmh": v|null}` (vehicles in the zone, their median
//! speed in box heights per second and, on a calibrated camera, their median ground speed).
//!
//! The limit is either the ground speed in km/h (`max_speed_kmh`, on a camera with a
//! ground-plane calibration: the median of the vehicles that have a speed yet) or, by
//! default, the speed in **box heights per second** (`max_speed_heights`, default 0.5): the
//! tracker's centre velocity divided by the track's box height; not both. In image units per
//! second a vehicle's speed depends on its distance from the camera (perspective): on the
//! shared congestion clip, crawling vehicles near the camera move 0.02–0.08 image units/s,
//! as much as free-flowing far ones, so no image-unit threshold separates the two. Relative
//! to its own size it does: crawling traffic measured 0.05–0.2 heights/s and free-flowing
//! traffic on four other clips 1.3–3.6 heights/s (docs/design/0022-counting.md).

use serde::Deserialize;
use time::OffsetDateTime;

use super::common::{classes_non_empty, count5, d10, d30, d60, defaults, non_negative};
use super::common::{object, observed, output, sev_medium, vehicles, Cooldown, Episode};
use super::{Rule, RuleSpec, Scene};
use crate::geometry::{point_in_polygon, Pt};
use crate::types::{Change, RuleOutput, Severity, Tracks};

const KIND: &str = "congestion";

defaults! {
    d_speed: f64 = 0.5;
}

/// `congestion`: ≥ `min_count` vehicles in `zone` with median speed below the limit.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CongestionRule {
    pub zone: String,
    #[serde(default = "vehicles")]
    pub classes: Vec<String>,
    #[serde(default = "count5")]
    pub min_count: u32,
    /// Box heights per second (the tracker's centre speed over the box height). Default 0.5
    /// when `max_speed_kmh` is not given.
    #[serde(default)]
    pub max_speed_heights: Option<f64>,
    /// Ground speed in km/h (needs `[cameras.calibration]`); instead of `max_speed_heights`.
    #[serde(default)]
    pub max_speed_kmh: Option<f64>,
    #[serde(default = "d30")]
    pub min_secs: f64,
    #[serde(default = "d10")]
    pub clear_secs: f64,
    #[serde(default = "sev_medium")]
    pub severity: Severity,
    #[serde(default = "d60")]
    pub cooldown_secs: f64,
}

impl RuleSpec for CongestionRule {
    const KIND: &'static str = KIND;

    fn validate(&self) -> Result<(), (String, String)> {
        classes_non_empty(&self.classes)?;
        if self.min_count == 0 {
            return Err(("min_count".into(), "must be ≥ 1".into()));
        }
        if self.max_speed_heights.is_some() && self.max_speed_kmh.is_some() {
            return Err((
                "max_speed_kmh".into(),
                "give either max_speed_heights (box heights/s) or max_speed_kmh (km/h), not both"
                    .into(),
            ));
        }
        non_negative(&[
            ("max_speed_heights", self.max_speed_heights.unwrap_or(0.0)),
            ("max_speed_kmh", self.max_speed_kmh.unwrap_or(0.0)),
            ("min_secs", self.min_secs),
            ("clear_secs", self.clear_secs),
            ("cooldown_secs", self.cooldown_secs),
        ])
    }

    fn zone(&self) -> Option<&str> {
        Some(&self.zone)
    }

    fn needs_calibration(&self) -> Option<&'static str> {
        self.max_speed_kmh.is_some().then_some("max_speed_kmh")
    }

    fn build(&self, scene: &Scene) -> Box<dyn Rule> {
        Box::new(Congestion::new(self.clone(), scene))
    }
}

pub struct Congestion {
    cfg: CongestionRule,
    zone: Vec<Pt>,
    scene: Scene,
    episode: Episode,
    cooldown: Cooldown,
}

impl Congestion {
    pub fn new(cfg: CongestionRule, scene: &Scene) -> Self {
        Congestion {
            zone: scene.zone(&cfg.zone),
            scene: scene.clone(),
            episode: Episode::default(),
            cooldown: Cooldown::new(cfg.cooldown_secs),
            cfg,
        }
    }
}

/// A track's speed in box heights per second (its centre velocity over its box height; a
/// box with no height counts as still).
pub fn speed_heights(tr: &crate::types::Track) -> f64 {
    let h = (tr.bbox.y2 - tr.bbox.y1) as f64;
    let v = (tr.velocity.0 as f64).hypot(tr.velocity.1 as f64);
    if h > 0.0 {
        v / h
    } else {
        0.0
    }
}

/// Median of a non-empty slice (mean of the two middle values for an even length).
pub fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}

impl Rule for Congestion {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn on_frame(&mut self, t: &Tracks, out: &mut Vec<RuleOutput>) {
        let now = t.detections.frame.captured_at;
        let inside: Vec<_> = observed(t, &self.cfg.classes)
            .into_iter()
            .filter(|tr| point_in_polygon(self.scene.anchor(tr), &self.zone))
            .collect();
        let mut speeds: Vec<f64> = inside.iter().map(|tr| speed_heights(tr)).collect();
        let med = median(&mut speeds);
        let mut kmh: Vec<f64> =
            inside.iter().filter_map(|tr| tr.speed_kmh).map(f64::from).collect();
        let med_kmh = median(&mut kmh).filter(|m| m.is_finite());
        let slow = match (self.cfg.max_speed_kmh, self.cfg.max_speed_heights) {
            (Some(limit), _) => med_kmh.is_some_and(|m| m < limit),
            (None, limit) => {
                med.is_some_and(|m| m.is_finite() && m < limit.unwrap_or_else(d_speed))
            }
        };
        let cond = inside.len() >= self.cfg.min_count as usize && slow;
        if let Some((change, at)) =
            self.episode.step(cond, now, self.cfg.min_secs, self.cfg.clear_secs, &mut self.cooldown)
        {
            let o = if change == Change::Started {
                let detail = serde_json::json!({
                    "count": inside.len(),
                    "median_speed_heights": med.filter(|m| m.is_finite()),
                    "median_speed_kmh": med_kmh.map(|m| super::per_track::round1(m as f32)),
                });
                let objects = inside.iter().map(|tr| object(tr)).collect();
                output(
                    KIND,
                    self.cfg.severity,
                    self.episode.key,
                    change,
                    at,
                    objects,
                    Some(&t.detections.frame),
                )
                .with_detail(detail)
            } else {
                output(KIND, self.cfg.severity, self.episode.key, change, at, vec![], None)
            };
            out.push(o);
        }
        self.cooldown.prune(now);
    }

    fn finish(&mut self, at: OffsetDateTime, out: &mut Vec<RuleOutput>) {
        if let Some(end) = self.episode.finish(at) {
            out.push(output(
                KIND,
                self.cfg.severity,
                self.episode.key,
                Change::Ended,
                end,
                vec![],
                None,
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn median() {
        assert_eq!(super::median(&mut []), None);
        assert_eq!(super::median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(super::median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }
}
