//! `presence`: a configured class is present for ≥ `min_secs`; the event ends once the class
//! has been absent for `clear_secs`. Short gaps (< `clear_secs`) in detection neither reset
//! the pending timer nor end the event. The snapshot is the frame with the most matching
//! objects (ties: highest score).

use serde::Deserialize;
use time::OffsetDateTime;

use super::common::{d2, d5, score04, secs, sev_low};
use super::{Rule, RuleSpec, Scene};
use crate::types::{Change, Detection, Detections, RuleOutput, Severity, Tracks};

const KIND: &str = "presence";

/// `presence`: a listed class detected for ≥ `min_secs`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresenceRule {
    /// Class labels that count (e.g. ["person"]).
    pub classes: Vec<String>,
    /// Minimum detection score.
    #[serde(default = "score04")]
    pub min_score: f32,
    /// Presence must last this long before the event starts.
    #[serde(default = "d2")]
    pub min_secs: f64,
    /// The event ends after the classes have been absent this long.
    #[serde(default = "d5")]
    pub clear_secs: f64,
    #[serde(default = "sev_low")]
    pub severity: Severity,
}

impl RuleSpec for PresenceRule {
    const KIND: &'static str = KIND;

    fn validate(&self) -> Result<(), (String, String)> {
        if self.classes.is_empty() {
            return Err(("classes".into(), "list at least one class".into()));
        }
        if !(0.0..=1.0).contains(&self.min_score) {
            return Err(("min_score".into(), "must be between 0 and 1".into()));
        }
        if self.min_secs.is_nan()
            || self.min_secs < 0.0
            || self.clear_secs.is_nan()
            || self.clear_secs < 0.0
        {
            return Err(("min_secs".into(), "must be ≥ 0".into()));
        }
        Ok(())
    }

    fn build(&self, _scene: &Scene) -> Box<dyn Rule> {
        Box::new(Presence::new(self.clone()))
    }
}

pub struct Presence {
    cfg: PresenceRule,
    /// Start of the current (possibly pending) presence.
    since: Option<OffsetDateTime>,
    last_seen: Option<OffsetDateTime>,
    active: bool,
    /// Incident key; one incident at a time for this rule.
    key: u64,
    best: (usize, f32),
}

impl Presence {
    pub fn new(cfg: PresenceRule) -> Self {
        Presence { cfg, since: None, last_seen: None, active: false, key: 0, best: (0, 0.0) }
    }

    fn output(
        &self,
        change: Change,
        at: OffsetDateTime,
        objects: Vec<Detection>,
        d: Option<&Detections>,
    ) -> RuleOutput {
        let out = super::common::output(
            KIND,
            self.cfg.severity,
            self.key,
            change,
            at,
            vec![],
            d.map(|d| &d.frame),
        );
        if objects.is_empty() {
            return RuleOutput { objects, ..out };
        }
        // `count`: matching detections on the frame (started/updated).
        let detail = serde_json::json!({ "count": objects.len() });
        RuleOutput { objects, ..out }.with_detail(detail)
    }
}

impl Rule for Presence {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn on_frame(&mut self, t: &Tracks, out: &mut Vec<RuleOutput>) {
        let d = &t.detections;
        let now = d.frame.captured_at;
        let matching: Vec<Detection> = d
            .objects
            .iter()
            .filter(|o| {
                o.score >= self.cfg.min_score && self.cfg.classes.iter().any(|c| c == &o.class)
            })
            .cloned()
            .collect();
        if !matching.is_empty() {
            let since = *self.since.get_or_insert(now);
            self.last_seen = Some(now);
            let quality = (matching.len(), matching.iter().map(|o| o.score).fold(0.0, f32::max));
            if !self.active {
                if now - since >= secs(self.cfg.min_secs) {
                    self.active = true;
                    self.key += 1;
                    self.best = quality;
                    out.push(self.output(Change::Started, since, matching, Some(d)));
                }
            } else if quality.0 > self.best.0
                || (quality.0 == self.best.0 && quality.1 > self.best.1 + 0.05)
            {
                self.best = quality;
                out.push(self.output(Change::Updated, now, matching, Some(d)));
            }
        } else if let Some(last) = self.last_seen {
            if now - last >= secs(self.cfg.clear_secs) {
                if self.active {
                    out.push(self.output(Change::Ended, last, vec![], None));
                }
                self.active = false;
                self.since = None;
                self.last_seen = None;
            }
        }
    }

    fn finish(&mut self, at: OffsetDateTime, out: &mut Vec<RuleOutput>) {
        if self.active {
            out.push(self.output(Change::Ended, self.last_seen.unwrap_or(at), vec![], None));
        }
        self.active = false;
        self.since = None;
        self.last_seen = None;
    }
}
