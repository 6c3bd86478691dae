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

use time::OffsetDateTime;

use super::common::{output, secs};
use super::Rule;
use crate::rules::config::FireParams;
use crate::types::{Change, Detection, RuleOutput, Tracks};

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
