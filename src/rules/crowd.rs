//! `crowd`: at least `min_count` confirmed tracks of `classes` (default people) with their
//! anchor in `zone` for ≥ `min_secs` → one event per episode for the zone. It ends once the
//! count has been below `min_count` for `clear_secs`; the end time is the last frame the
//! count was reached. Objects: the tracks in the zone when it started (with track ids).
//! Detail: `{"count": n, "min_count": m}` at the start; `{"count": n, "max_count": k,
//! "min_count": m}` at the end, `count` being the number at the start and `max_count` the
//! largest number in the zone during the episode.

use serde::Deserialize;
use time::OffsetDateTime;

use super::common::{classes_non_empty, count5, d30, d5, non_negative, people, sev_medium};
use super::common::{object, observed, output, Cooldown, Episode};
use super::{Rule, RuleSpec, Scene};
use crate::geometry::{point_in_polygon, Pt};
use crate::types::{Change, RuleOutput, Severity, Tracks};

const KIND: &str = "crowd";

/// `crowd`: ≥ `min_count` tracks of `classes` in `zone` for ≥ `min_secs`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrowdRule {
    pub zone: String,
    #[serde(default = "people")]
    pub classes: Vec<String>,
    #[serde(default = "count5")]
    pub min_count: u32,
    #[serde(default = "d5")]
    pub min_secs: f64,
    #[serde(default = "d5")]
    pub clear_secs: f64,
    #[serde(default = "sev_medium")]
    pub severity: Severity,
    #[serde(default = "d30")]
    pub cooldown_secs: f64,
}

impl RuleSpec for CrowdRule {
    const KIND: &'static str = KIND;

    fn validate(&self) -> Result<(), (String, String)> {
        classes_non_empty(&self.classes)?;
        if self.min_count == 0 {
            return Err(("min_count".into(), "must be ≥ 1".into()));
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

    fn build(&self, scene: &Scene) -> Box<dyn Rule> {
        Box::new(Crowd::new(self.clone(), scene))
    }
}

pub struct Crowd {
    cfg: CrowdRule,
    zone: Vec<Pt>,
    scene: Scene,
    episode: Episode,
    cooldown: Cooldown,
    /// Count when the episode started (or is pending) and the largest count since.
    start_count: usize,
    max_count: usize,
}

impl Crowd {
    pub fn new(cfg: CrowdRule, scene: &Scene) -> Self {
        Crowd {
            zone: scene.zone(&cfg.zone),
            scene: scene.clone(),
            episode: Episode::default(),
            cooldown: Cooldown::new(cfg.cooldown_secs),
            start_count: 0,
            max_count: 0,
            cfg,
        }
    }

    fn end_detail(&self) -> serde_json::Value {
        let (count, max_count, min_count) = (self.start_count, self.max_count, self.cfg.min_count);
        serde_json::json!({ "count": count, "max_count": max_count, "min_count": min_count })
    }
}

impl Rule for Crowd {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn on_frame(&mut self, t: &Tracks, out: &mut Vec<RuleOutput>) {
        let now = t.detections.frame.captured_at;
        let inside: Vec<_> = observed(t, &self.cfg.classes)
            .into_iter()
            .filter(|tr| point_in_polygon(self.scene.anchor(tr), &self.zone))
            .map(object)
            .collect();
        let n = inside.len();
        let cond = n >= self.cfg.min_count as usize;
        if !self.episode.active {
            // Counting starts with the episode (reset while it is pending).
            self.max_count = 0;
        }
        self.max_count = self.max_count.max(n);
        if let Some((change, at)) =
            self.episode.step(cond, now, self.cfg.min_secs, self.cfg.clear_secs, &mut self.cooldown)
        {
            let o = if change == Change::Started {
                self.start_count = n;
                let detail = serde_json::json!({ "count": n, "min_count": self.cfg.min_count });
                output(
                    KIND,
                    self.cfg.severity,
                    self.episode.key,
                    change,
                    at,
                    inside,
                    Some(&t.detections.frame),
                )
                .with_detail(detail)
            } else {
                output(KIND, self.cfg.severity, self.episode.key, change, at, vec![], None)
                    .with_detail(self.end_detail())
            };
            out.push(o);
        }
        self.cooldown.prune(now);
    }

    fn finish(&mut self, at: OffsetDateTime, out: &mut Vec<RuleOutput>) {
        let detail = self.end_detail();
        if let Some(end) = self.episode.finish(at) {
            out.push(
                output(KIND, self.cfg.severity, self.episode.key, Change::Ended, end, vec![], None)
                    .with_detail(detail),
            );
        }
    }
}
