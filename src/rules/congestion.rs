//! `congestion`: at least `min_count` confirmed vehicles (`classes`) with their anchor in
//! `zone` whose median speed is below the limit for ≥ `min_secs` → one event per episode for
//! the zone. The speed is either the ground speed in km/h (`max_speed_kmh`, on a camera
//! with a ground-plane calibration: the median of the vehicles that have a speed yet) or
//! the image speed (`max_speed`, normalised image units per second, from the tracker's
//! velocity of each track; the default, 0.02); not both. Hysteresis: it ends once the
//! condition has been false for `clear_secs`; the end time is the last frame the condition
//! held. Detail at the start: `{"count": n, "median_speed": v, "median_speed_kmh": v|null}`
//! (vehicles in the zone, their median image speed and, on a calibrated camera, their
//! median ground speed).

use serde::Deserialize;
use time::OffsetDateTime;

use super::common::{classes_non_empty, count5, d10, d30, d60, defaults, non_negative};
use super::common::{object, observed, output, sev_medium, vehicles, Cooldown, Episode};
use super::{Rule, RuleSpec, Scene};
use crate::geometry::{point_in_polygon, Pt};
use crate::types::{Change, RuleOutput, Severity, Tracks};

const KIND: &str = "congestion";

defaults! {
    d_speed: f64 = 0.02;
}

/// `congestion`: ≥ `min_count` vehicles in `zone` with median speed < `max_speed`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CongestionRule {
    pub zone: String,
    #[serde(default = "vehicles")]
    pub classes: Vec<String>,
    #[serde(default = "count5")]
    pub min_count: u32,
    /// Normalised image units per second (box centre). Default 0.02 when `max_speed_kmh` is
    /// not given.
    #[serde(default)]
    pub max_speed: Option<f64>,
    /// Ground speed in km/h (needs `[cameras.calibration]`); instead of `max_speed`.
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
        if self.max_speed.is_some() && self.max_speed_kmh.is_some() {
            return Err((
                "max_speed_kmh".into(),
                "give either max_speed (image units/s) or max_speed_kmh (km/h), not both".into(),
            ));
        }
        non_negative(&[
            ("max_speed", self.max_speed.unwrap_or(0.0)),
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
        let mut speeds: Vec<f64> =
            inside.iter().map(|tr| (tr.velocity.0 as f64).hypot(tr.velocity.1 as f64)).collect();
        let med = median(&mut speeds);
        let mut kmh: Vec<f64> =
            inside.iter().filter_map(|tr| tr.speed_kmh).map(f64::from).collect();
        let med_kmh = median(&mut kmh).filter(|m| m.is_finite());
        let slow = match (self.cfg.max_speed_kmh, self.cfg.max_speed) {
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
                    "median_speed": med.filter(|m| m.is_finite()),
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
