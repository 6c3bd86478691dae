//! `fall`: a tracked person whose box turns from upright (height/width ≥ `upright_ratio`, in
//! pixels) to lying (width/height ≥ `lying_ratio`) with the box height dropping by at least
//! `min_height_drop` of the upright height, all within `transition_secs`, and who then stays
//! down (not upright again) for ≥ `down_secs` → one event per track, starting at the first
//! lying frame. It ends when the person is upright again (end: the last frame down) or the
//! track has not been reported for `clear_secs` (end: the last frame seen).
//!
//! A person bending briefly gets up before `down_secs`; a person walking away shrinks but
//! keeps an upright box; neither raises an event.
//!
//! The rule only sees a per-track [`Posture`] observation, which today is derived from the
//! box shape (`Posture::from_box`). A pose model (keypoints: torso angle, hip/shoulder
//! height) can later supply the same observation per track without changing the state
//! machine below or the rule interface.

use std::collections::{BTreeMap, VecDeque};

use time::OffsetDateTime;

use super::common::{object, observed, output, secs, Cooldown};
use super::Rule;
use crate::rules::config::FallRule;
use crate::types::{Change, Detection, RuleOutput, Track, Tracks};

const KIND: &str = "fall";

/// What the rule needs to know about one person on one frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Posture {
    /// Height / width of the person, in pixels.
    pub aspect: f64,
    /// Height of the person, normalised to the frame height.
    pub height: f64,
}

impl Posture {
    /// Posture from a track's box on a `w`×`h` frame; None for a degenerate box.
    pub fn from_box(t: &Track, w: u32, h: u32) -> Option<Posture> {
        let b = &t.bbox;
        let bw = f64::from(b.x2 - b.x1) * f64::from(w.max(1));
        let bh = f64::from(b.y2 - b.y1) * f64::from(h.max(1));
        (bw > 0.0 && bh > 0.0 && bw.is_finite() && bh.is_finite())
            .then(|| Posture { aspect: bh / bw, height: f64::from(b.y2 - b.y1) })
    }
}

struct St {
    /// Recent upright observations (time, height), at most `transition_secs` old.
    upright: VecDeque<(OffsetDateTime, f64)>,
    /// First lying frame after a qualifying transition; None while not down.
    down_since: Option<OffsetDateTime>,
    last_down: OffsetDateTime,
    last_seen: OffsetDateTime,
    active: bool,
    obj: Detection,
}

pub struct Fall {
    cfg: FallRule,
    tracks: BTreeMap<u64, St>,
    cooldown: Cooldown,
}

impl Fall {
    pub fn new(cfg: FallRule) -> Self {
        Fall { tracks: BTreeMap::new(), cooldown: Cooldown::new(cfg.cooldown_secs), cfg }
    }
}

impl Rule for Fall {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn on_frame(&mut self, t: &Tracks, out: &mut Vec<RuleOutput>) {
        let frame = &t.detections.frame;
        let now = frame.captured_at;
        let transition = secs(self.cfg.transition_secs);
        for tr in observed(t, &self.cfg.classes) {
            if tr.score < self.cfg.min_score {
                continue;
            }
            let Some(p) = Posture::from_box(tr, frame.width, frame.height) else { continue };
            let st = self.tracks.entry(tr.id).or_insert(St {
                upright: VecDeque::new(),
                down_since: None,
                last_down: now,
                last_seen: now,
                active: false,
                obj: object(tr),
            });
            st.last_seen = now;
            st.obj = object(tr);
            while st.upright.front().is_some_and(|(at, _)| now - *at > transition) {
                st.upright.pop_front();
            }
            if p.aspect >= self.cfg.upright_ratio {
                // Upright (again): any fall of this track is over.
                st.upright.push_back((now, p.height));
                st.down_since = None;
                if st.active {
                    st.active = false;
                    let (at, obj) = (st.last_down, st.obj.clone());
                    self.cooldown.end((KIND, self.cfg.severity), tr.id, at, obj, out);
                }
                continue;
            }
            let lying = 1.0 / p.aspect >= self.cfg.lying_ratio;
            if st.down_since.is_none() && lying {
                let fell = st
                    .upright
                    .iter()
                    .any(|(_, h)| *h > 0.0 && (h - p.height) / h >= self.cfg.min_height_drop);
                if fell {
                    st.down_since = Some(now);
                }
            }
            let Some(since) = st.down_since else { continue };
            // Down: lying, or in between (e.g. curled up) after a fall; only upright ends it.
            st.last_down = now;
            if !st.active
                && now - since >= secs(self.cfg.down_secs)
                && self.cooldown.allows(tr.id, now)
            {
                st.active = true;
                out.push(output(
                    KIND,
                    self.cfg.severity,
                    tr.id,
                    Change::Started,
                    since,
                    vec![st.obj.clone()],
                    Some(frame),
                ));
            }
        }
        let clear = secs(self.cfg.clear_secs);
        let gone: Vec<u64> = self
            .tracks
            .iter()
            .filter(|(_, s)| now - s.last_seen >= clear)
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            if let Some(st) = self.tracks.remove(&id) {
                if st.active {
                    self.cooldown.end((KIND, self.cfg.severity), id, st.last_seen, st.obj, out);
                }
            }
        }
        self.cooldown.prune(now);
    }

    fn finish(&mut self, _at: OffsetDateTime, out: &mut Vec<RuleOutput>) {
        for (id, st) in std::mem::take(&mut self.tracks) {
            if st.active {
                self.cooldown.end((KIND, self.cfg.severity), id, st.last_down, st.obj, out);
            }
        }
    }
}
