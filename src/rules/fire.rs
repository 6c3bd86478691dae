//! `fire` and `smoke`: one rule type, two kinds. Works on detections, not tracks (flames and
//! smoke change shape too fast to be tracked reliably). A frame *qualifies* when it has at
//! least one detection of `classes` with score ≥ `min_score` and box area ≥ `min_area` (a
//! fraction of the frame). When ≥ `k` of the last `n` analysed frames qualify, one event
//! starts for the camera (an episode), at the first qualifying frame of that window. It ends
//! once no frame has qualified for `clear_secs`; the end time is the last qualifying frame.
//! Any model whose labels contain the classes can feed it (e.g. the D-Fire YOLO11n model's
//! `fire`/`smoke`). The snapshot is updated when a clearly better frame comes (more boxes or
//! a higher score).

use std::collections::VecDeque;

use serde::Deserialize;
use time::OffsetDateTime;

use super::common::{classes_non_empty, d10, defaults, non_negative, output, secs};
use super::common::{sev_critical, sev_high};
use super::{Rule, RuleSpec, Scene};
use crate::types::{Change, Detection, RuleOutput, Severity, Tracks};

defaults! {
    fire_classes: Vec<String> = vec!["fire".into()];
    smoke_classes: Vec<String> = vec!["smoke".into()];
    score035: f32 = 0.35;
    d_area: f64 = 0.0005;
    k3: u32 = 3;
    n5: u32 = 5;
}

/// The parameters shared by `fire` and `smoke` (which differ only in their defaults).
#[derive(Debug, Clone)]
pub struct FireParams {
    pub kind: &'static str,
    pub classes: Vec<String>,
    pub min_score: f32,
    pub min_area: f64,
    pub k: u32,
    pub n: u32,
    pub clear_secs: f64,
    pub severity: Severity,
}

impl FireParams {
    fn validate(&self) -> Result<(), (String, String)> {
        classes_non_empty(&self.classes)?;
        if !(0.0..=1.0).contains(&self.min_score) {
            return Err(("min_score".into(), "must be between 0 and 1".into()));
        }
        if !(self.min_area.is_finite() && (0.0..=1.0).contains(&self.min_area)) {
            return Err((
                "min_area".into(),
                "must be between 0 and 1 (a fraction of the frame)".into(),
            ));
        }
        if self.n == 0 || self.n > 1000 {
            return Err(("n".into(), "must be between 1 and 1000".into()));
        }
        if self.k == 0 || self.k > self.n {
            return Err(("k".into(), format!("must be between 1 and n ({})", self.n)));
        }
        non_negative(&[("clear_secs", self.clear_secs)])
    }
}

/// One config struct per kind, so each has its own defaults; both build a `Fire`.
macro_rules! fire_rule {
    ($(#[$m:meta])* $name:ident, $kind:literal, $classes:literal, $sev:literal) => {
        $(#[$m])*
        #[derive(Debug, Clone, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            #[serde(default = $classes)]
            pub classes: Vec<String>,
            #[serde(default = "score035")]
            pub min_score: f32,
            /// Minimum box area as a fraction of the frame (0–1). Default 0.0005.
            #[serde(default = "d_area")]
            pub min_area: f64,
            /// Qualifying frames needed among the last `n` analysed frames. Default 3 of 5.
            #[serde(default = "k3")]
            pub k: u32,
            #[serde(default = "n5")]
            pub n: u32,
            /// The event ends after this long without a qualifying frame. Default 10.
            #[serde(default = "d10")]
            pub clear_secs: f64,
            #[serde(default = $sev)]
            pub severity: Severity,
        }
        impl $name {
            pub fn params(&self) -> FireParams {
                FireParams {
                    kind: $kind,
                    classes: self.classes.clone(),
                    min_score: self.min_score,
                    min_area: self.min_area,
                    k: self.k,
                    n: self.n,
                    clear_secs: self.clear_secs,
                    severity: self.severity,
                }
            }
        }
        impl RuleSpec for $name {
            const KIND: &'static str = $kind;
            fn validate(&self) -> Result<(), (String, String)> {
                self.params().validate()
            }
            fn build(&self, _scene: &Scene) -> Box<dyn Rule> {
                Box::new(Fire::new(self.params()))
            }
        }
    };
}

fire_rule!(
    /// `fire`: detections of `classes` (default ["fire"]) in ≥ k of the last n analysed frames.
    FireRule, "fire", "fire_classes", "sev_critical"
);
fire_rule!(
    /// `smoke`: like `fire`, with `classes` default ["smoke"] and severity "high".
    SmokeRule, "smoke", "smoke_classes", "sev_high"
);

pub struct Fire {
    cfg: FireParams,
    /// The last `n` analysed frames: capture time and whether the frame qualified.
    window: VecDeque<(OffsetDateTime, bool)>,
    active: bool,
    last_hit: Option<OffsetDateTime>,
    key: u64,
    best: (usize, f32),
}

impl Fire {
    pub fn new(cfg: FireParams) -> Self {
        Fire { cfg, window: VecDeque::new(), active: false, last_hit: None, key: 0, best: (0, 0.0) }
    }

    /// Detections of this frame that count.
    fn qualifying(&self, objects: &[Detection]) -> Vec<Detection> {
        objects
            .iter()
            .filter(|o| {
                let b = &o.bbox;
                let finite = [b.x1, b.y1, b.x2, b.y2].iter().all(|v| v.is_finite());
                finite
                    && o.score.is_finite()
                    && o.score >= self.cfg.min_score
                    && f64::from(b.area()) >= self.cfg.min_area
                    && self.cfg.classes.iter().any(|c| c == &o.class)
            })
            .cloned()
            .collect()
    }
}

impl Rule for Fire {
    fn kind(&self) -> &'static str {
        self.cfg.kind
    }

    fn on_frame(&mut self, t: &Tracks, out: &mut Vec<RuleOutput>) {
        let now = t.detections.frame.captured_at;
        let hits = self.qualifying(&t.detections.objects);
        let hit = !hits.is_empty();
        self.window.push_back((now, hit));
        while self.window.len() > self.cfg.n as usize {
            self.window.pop_front();
        }
        let (kind, sev) = (self.cfg.kind, self.cfg.severity);
        if hit {
            self.last_hit = Some(now);
            let quality = (hits.len(), hits.iter().map(|o| o.score).fold(0.0, f32::max));
            let count = self.window.iter().filter(|(_, h)| *h).count();
            if !self.active && count >= self.cfg.k as usize {
                let since = self.window.iter().find(|(_, h)| *h).map(|(at, _)| *at).unwrap_or(now);
                self.active = true;
                self.key += 1;
                self.best = quality;
                out.push(output(
                    kind,
                    sev,
                    self.key,
                    Change::Started,
                    since,
                    hits,
                    Some(&t.detections.frame),
                ));
            } else if self.active
                && (quality.0 > self.best.0
                    || (quality.0 == self.best.0 && quality.1 > self.best.1 + 0.1))
            {
                self.best = quality;
                out.push(output(
                    kind,
                    sev,
                    self.key,
                    Change::Updated,
                    now,
                    hits,
                    Some(&t.detections.frame),
                ));
            }
        } else if let Some(last) = self.last_hit {
            if self.active && now - last >= secs(self.cfg.clear_secs) {
                self.active = false;
                self.last_hit = None;
                out.push(output(kind, sev, self.key, Change::Ended, last, vec![], None));
            }
        }
    }

    fn finish(&mut self, at: OffsetDateTime, out: &mut Vec<RuleOutput>) {
        if self.active {
            let end = self.last_hit.unwrap_or(at);
            out.push(output(
                self.cfg.kind,
                self.cfg.severity,
                self.key,
                Change::Ended,
                end,
                vec![],
                None,
            ));
        }
        self.active = false;
        self.last_hit = None;
        self.window.clear();
    }
}
