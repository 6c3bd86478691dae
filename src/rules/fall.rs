//! `fall`: a tracked person whose box turns from upright (height/width ≥ `upright_ratio`, in
//! pixels) to lying (width/height ≥ `lying_ratio`) with the box height dropping by at least
//! `min_height_drop` of the upright height, all within `transition_secs`, and who then stays
//! down (not upright again) for ≥ `down_secs` → one event per track, starting at the first
//! lying frame. It ends when the person is upright again or the track has not been reported
//! for `clear_secs`; the end time is the last frame down (while the event is open, that is
//! the last frame the track was seen).
//!
//! A person bending briefly gets up before `down_secs`; a person walking away shrinks but
//! keeps an upright box; neither raises an event.
//!
//! The rule only sees a per-track [`Posture`] observation, which today is derived from the
//! box shape (`Posture::from_box`). A pose model (keypoints: torso angle, hip/shoulder
//! height) can later supply the same observation per track without changing the state
//! machine below or the rule interface.

use std::collections::VecDeque;

use serde::Deserialize;
use time::OffsetDateTime;

use super::common::{classes_non_empty, d1, d2, d3, d30, d5, defaults, non_negative, observed};
use super::common::{people, score04, secs, sev_high};
use super::per_track::{Forget, PerTrack, Step};
use super::{Rule, RuleSpec, Scene};
use crate::types::{RuleOutput, Severity, Track, Tracks};

const KIND: &str = "fall";

defaults! {
    d_upright: f64 = 1.3;
    d_drop: f64 = 0.3;
}

/// `fall`: a tracked person whose box turns from upright to lying with a height drop, and
/// who stays down.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FallRule {
    #[serde(default = "people")]
    pub classes: Vec<String>,
    #[serde(default = "score04")]
    pub min_score: f32,
    /// Upright: box height / width (in pixels) ≥ this. Default 1.3.
    #[serde(default = "d_upright")]
    pub upright_ratio: f64,
    /// Lying: box width / height (in pixels) ≥ this. Default 1.0.
    #[serde(default = "d1")]
    pub lying_ratio: f64,
    /// The box height must drop by at least this fraction of the upright height. Default 0.3.
    #[serde(default = "d_drop")]
    pub min_height_drop: f64,
    /// Upright → lying within this many seconds. Default 2.
    #[serde(default = "d2")]
    pub transition_secs: f64,
    /// The person must stay down (not upright again) this long. Default 3.
    #[serde(default = "d3")]
    pub down_secs: f64,
    /// A track not reported this long ends its event. Default 5.
    #[serde(default = "d5")]
    pub clear_secs: f64,
    #[serde(default = "sev_high")]
    pub severity: Severity,
    #[serde(default = "d30")]
    pub cooldown_secs: f64,
}

impl RuleSpec for FallRule {
    const KIND: &'static str = KIND;

    fn validate(&self) -> Result<(), (String, String)> {
        classes_non_empty(&self.classes)?;
        if !(0.0..=1.0).contains(&self.min_score) {
            return Err(("min_score".into(), "must be between 0 and 1".into()));
        }
        for (name, v) in [("upright_ratio", self.upright_ratio), ("lying_ratio", self.lying_ratio)]
        {
            if !(v.is_finite() && v > 0.0) {
                return Err((name.into(), format!("must be a number > 0, got {v}")));
            }
        }
        if !(self.min_height_drop.is_finite() && (0.0..1.0).contains(&self.min_height_drop)) {
            return Err(("min_height_drop".into(), "must be ≥ 0 and < 1".into()));
        }
        non_negative(&[
            ("transition_secs", self.transition_secs),
            ("down_secs", self.down_secs),
            ("clear_secs", self.clear_secs),
            ("cooldown_secs", self.cooldown_secs),
        ])
    }

    fn build(&self, _scene: &Scene) -> Box<dyn Rule> {
        Box::new(Fall::new(self.clone()))
    }
}

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

/// Per track.
#[derive(Default)]
struct St {
    /// Recent upright observations (time, height), at most `transition_secs` old.
    upright: VecDeque<(OffsetDateTime, f64)>,
    /// First lying frame after a qualifying transition; None while not down.
    down_since: Option<OffsetDateTime>,
}

pub struct Fall {
    cfg: FallRule,
    tracks: PerTrack<St>,
}

impl Fall {
    pub fn new(cfg: FallRule) -> Self {
        let (min, forget) = (cfg.down_secs, Forget::After(cfg.clear_secs));
        Fall { tracks: PerTrack::new(KIND, cfg.severity, min, forget, cfg.cooldown_secs), cfg }
    }
}

impl Rule for Fall {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn on_frame(&mut self, t: &Tracks, out: &mut Vec<RuleOutput>) {
        let frame = &t.detections.frame;
        let now = frame.captured_at;
        let cfg = &self.cfg;
        let transition = secs(cfg.transition_secs);
        let candidates = observed(t, &cfg.classes);
        self.tracks.on_frame(frame, candidates, out, |tr, st, _| {
            if tr.score < cfg.min_score {
                return Step::Skip;
            }
            let Some(p) = Posture::from_box(tr, frame.width, frame.height) else {
                return Step::Skip;
            };
            while st.upright.front().is_some_and(|(at, _)| now - *at > transition) {
                st.upright.pop_front();
            }
            if p.aspect >= cfg.upright_ratio {
                // Upright (again): any fall of this track is over.
                st.upright.push_back((now, p.height));
                st.down_since = None;
                return Step::Broken;
            }
            let lying = 1.0 / p.aspect >= cfg.lying_ratio;
            if st.down_since.is_none() && lying {
                let fell = st
                    .upright
                    .iter()
                    .any(|(_, h)| *h > 0.0 && (h - p.height) / h >= cfg.min_height_drop);
                if fell {
                    st.down_since = Some(now);
                }
            }
            // Down: lying, or in between (e.g. curled up) after a fall; only upright ends it.
            match st.down_since {
                Some(since) => Step::holds(since),
                None => Step::Idle,
            }
        });
    }

    fn finish(&mut self, _at: OffsetDateTime, out: &mut Vec<RuleOutput>) {
        self.tracks.finish(out);
    }
}
