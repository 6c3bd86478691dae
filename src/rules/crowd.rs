//! `crowd`: at least `min_count` confirmed tracks of `classes` (default people) with their
//! anchor in `zone` for ≥ `min_secs` → one event per episode for the zone. It ends once the
//! count has been below `min_count` for `clear_secs`; the end time is the last frame the
//! count was reached. Objects: the tracks in the zone when it started.

use time::OffsetDateTime;

use super::common::{object, observed, output, Cooldown, Episode, Scene};
use super::Rule;
use crate::geometry::{point_in_polygon, Pt};
use crate::rules::config::CrowdRule;
use crate::types::{Change, RuleOutput, Tracks};

const KIND: &str = "crowd";

pub struct Crowd {
    cfg: CrowdRule,
    zone: Vec<Pt>,
    scene: Scene,
    episode: Episode,
    cooldown: Cooldown,
}

impl Crowd {
    pub fn new(cfg: CrowdRule, scene: &Scene) -> Self {
        Crowd {
            zone: scene.zone(&cfg.zone),
            scene: scene.clone(),
            episode: Episode::default(),
            cooldown: Cooldown::new(cfg.cooldown_secs),
            cfg,
        }
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
        let cond = inside.len() >= self.cfg.min_count as usize;
        if let Some((change, at)) =
            self.episode.step(cond, now, self.cfg.min_secs, self.cfg.clear_secs, &mut self.cooldown)
        {
            let (objects, snap) =
                if change == Change::Started { (inside, Some(&t.detections.frame)) } else { (vec![], None) };
            out.push(output(KIND, self.cfg.severity, self.episode.key, change, at, objects, snap));
        }
        self.cooldown.prune(now);
    }

    fn finish(&mut self, at: OffsetDateTime, out: &mut Vec<RuleOutput>) {
        if let Some(end) = self.episode.finish(at) {
            out.push(output(KIND, self.cfg.severity, self.episode.key, Change::Ended, end, vec![], None));
        }
    }
}
