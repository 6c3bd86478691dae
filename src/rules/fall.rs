//! `fall`: a tracked person who turns from upright to lying with a drop, all within
//! `transition_secs`, and who then stays down (not upright again) for ≥ `down_secs` → one
//! event per track, starting at the first lying frame. It ends when the person is upright
//! again or the track has not been reported for `clear_secs`; the end time is the last frame
//! down (while the event is open, that is the last frame the track was seen).
//!
//! Each frame gives the rule one [`Posture`] per person track:
//! - **From the pose** (`[cameras.pose]`, a keypoints model on crops of the track; used when
//!   the track's pose is at most `pose_max_age_secs` old and shows a shoulder and a hip with
//!   score ≥ `keypoint_min_score`): the torso's angle from vertical (hips → shoulders, in
//!   pixels). Upright: ≤ `upright_torso_deg`; lying: ≥ `lying_torso_deg`. The drop is the
//!   hips': they must sink by `min_height_drop` of the standing person's box height below
//!   where they were when upright. Bending over tilts the torso but keeps the hips up;
//!   sitting or crouching lowers the hips but keeps the torso up; neither is a fall.
//! - **From the box** otherwise: upright when height/width ≥ `upright_ratio` (pixels), lying
//!   when width/height ≥ `lying_ratio` and the box is not cut by the frame's bottom edge
//!   (the upper half of a person walking out of view is wide and low too); the drop is the
//!   top of the box's (the head's; [`dropped`]).
//!
//! A person first seen lying (no upright observation in the window) is never a fall; a
//! person bending briefly gets up before `down_secs`; a person walking away shrinks but
//! keeps an upright box.
//!
//! Falls from height, where the detector loses the person on the way down, come from the
//! fall scan (`[cameras.fall_scan]`, `analytics::fall_scan`): each person it saw fall
//! (`Tracks::fallen`) is one event, starting at the landing, open while the scan still sees
//! the person, ended `clear_secs` after it last did. A person both the tracker and the scan
//! see fall is one event, the first raised: a track that comes down on a scanned fallen
//! person, or a scanned one under a track already down, is that fall (docs/design/0054).
//!
//! The rule needs the person's track through the fall. On a camera with this rule (or
//! `person_down`) the tracker starts weak person tracks anywhere and keeps a person track
//! whose box turns from tall to wide (`rules::posture_classes`, the tracker's stage 2b;
//! docs/design/0044).

use std::collections::VecDeque;

use serde::Deserialize;
use time::OffsetDateTime;

use super::common::{classes_non_empty, d1, d2, d30, d5, defaults, non_negative, observed};
use super::common::{people, same_place, score04, secs, sev_high};
use super::per_track::{Forget, PerTrack, Step};
use super::{Rule, RuleSpec, Scene};
use crate::geometry::BBox;
use crate::types::{kp, Keypoint, RuleOutput, Severity, Track, TrackState, Tracks};

const KIND: &str = "fall";

defaults! {
    d_upright: f64 = 1.3;
    d_drop: f64 = 0.3;
    d_upright_deg: f64 = 30.0;
    d_lying_deg: f64 = 60.0;
    d_kp_score: f32 = 0.3;
}

/// `fall`: a tracked person whose box turns from upright to lying with a height drop, and
/// who stays down.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FallRule {
    #[serde(default = "people")]
    pub classes: Vec<String>,
    /// Upright observations need at least this score (down ones count at any score the
    /// tracker kept: detectors score people on the ground lower). Default 0.4.
    #[serde(default = "score04")]
    pub min_score: f32,
    /// Upright: box height / width (in pixels) ≥ this. Default 1.3.
    #[serde(default = "d_upright")]
    pub upright_ratio: f64,
    /// Lying: box width / height (in pixels) ≥ this. Default 1.0.
    #[serde(default = "d1")]
    pub lying_ratio: f64,
    /// Down must be at least this fraction of the upright height lower: the hips with a pose,
    /// else the top of the box ([`dropped`]). Default 0.3.
    #[serde(default = "d_drop")]
    pub min_height_drop: f64,
    /// Upright → lying within this many seconds. Default 2.
    #[serde(default = "d2")]
    pub transition_secs: f64,
    /// With a pose: upright when the torso is at most this many degrees from vertical.
    /// Default 30.
    #[serde(default = "d_upright_deg")]
    pub upright_torso_deg: f64,
    /// With a pose: lying when the torso is at least this many degrees from vertical.
    /// Default 60.
    #[serde(default = "d_lying_deg")]
    pub lying_torso_deg: f64,
    /// Keypoints scoring under this are not used. Default 0.3.
    #[serde(default = "d_kp_score")]
    pub keypoint_min_score: f32,
    /// A track's pose older than this is not used (the box is). Default 1.
    #[serde(default = "d1")]
    pub pose_max_age_secs: f64,
    /// The person must stay down (not upright again) this long. Default 2.
    #[serde(default = "d2")]
    pub down_secs: f64,
    /// A track not reported this long ends its event. Default 5.
    #[serde(default = "d5")]
    pub clear_secs: f64,
    #[serde(default = "sev_high")]
    pub severity: Severity,
    #[serde(default = "d30")]
    pub cooldown_secs: f64,
}

impl FallRule {
    pub fn levels(&self) -> Levels {
        Levels {
            upright_ratio: self.upright_ratio,
            lying_ratio: self.lying_ratio,
            upright_torso_deg: self.upright_torso_deg,
            lying_torso_deg: self.lying_torso_deg,
            keypoint_min_score: self.keypoint_min_score,
            pose_max_age_secs: self.pose_max_age_secs,
            min_height_drop: self.min_height_drop,
        }
    }
}

impl RuleSpec for FallRule {
    const KIND: &'static str = KIND;

    fn validate(&self) -> Result<(), (String, String)> {
        classes_non_empty(&self.classes)?;
        if !(0.0..=1.0).contains(&self.min_score) {
            return Err(("min_score".into(), "must be between 0 and 1".into()));
        }
        self.levels().validate()?;
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

/// A box whose bottom is within this fraction of the frame's height of its bottom edge is
/// cut by it (a detector's box edge is good to a few pixels: 1 % is 3.6 px at 360 lines);
/// such a box is never lying ([`Posture::from_box`]).
pub const BOTTOM_EDGE: f64 = 0.01;

/// What the rule needs to know about one person on one frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Posture {
    pub upright: bool,
    pub lying: bool,
    /// Height of the person's box, normalised to the frame height.
    pub height: f64,
    /// Top of the person's box (normalised y, down): where the head is.
    pub top: f64,
    /// From a pose: the hips' height in the image (normalised y, down), for the drop.
    pub hips_y: Option<f64>,
}

impl Posture {
    /// Posture from a track's box on a `w`×`h` frame; None for a degenerate box.
    pub fn from_box(t: &Track, w: u32, h: u32, cfg: &Levels) -> Option<Posture> {
        let b = &t.bbox;
        let bw = f64::from(b.x2 - b.x1) * f64::from(w.max(1));
        let bh = f64::from(b.y2 - b.y1) * f64::from(h.max(1));
        // A box cut by the frame's bottom edge shows only the upper part of the body: wide
        // and low however the person stands (someone walking out of view toward the camera).
        let cut = f64::from(b.y2) >= 1.0 - BOTTOM_EDGE;
        (bw > 0.0 && bh > 0.0 && bw.is_finite() && bh.is_finite()).then(|| Posture {
            upright: bh / bw >= cfg.upright_ratio,
            lying: bw / bh >= cfg.lying_ratio && !cut,
            height: f64::from(b.y2 - b.y1),
            top: f64::from(b.y1),
            hips_y: None,
        })
    }

    /// Posture from the track's pose taken at most `pose_max_age_secs` before `now`, when it
    /// shows a shoulder and a hip; None otherwise.
    pub fn from_pose(
        t: &Track,
        now: OffsetDateTime,
        w: u32,
        h: u32,
        cfg: &Levels,
    ) -> Option<Posture> {
        let pose = t.pose.as_ref()?;
        if (now - pose.at).as_seconds_f64() > cfg.pose_max_age_secs {
            return None;
        }
        let deg = torso_deg(&pose.keypoints, cfg.keypoint_min_score, w, h)?;
        let hips = mid(&pose.keypoints, kp::LEFT_HIP, kp::RIGHT_HIP, cfg.keypoint_min_score)?;
        Some(Posture {
            upright: deg <= cfg.upright_torso_deg,
            lying: deg >= cfg.lying_torso_deg,
            height: f64::from(t.bbox.y2 - t.bbox.y1),
            top: f64::from(t.bbox.y1),
            hips_y: Some(f64::from(hips.1)),
        })
    }

    /// The posture of `t` on `frame`: from its pose when fresh and usable, else its box.
    pub fn of(t: &Track, frame: &crate::types::Frame, cfg: &Levels) -> Option<Posture> {
        let (now, w, h) = (frame.captured_at, frame.width, frame.height);
        Posture::from_pose(t, now, w, h, cfg).or_else(|| Posture::from_box(t, w, h, cfg))
    }
}

/// What tells upright from lying (the `fall` and `person_down` rules' keys of the same names).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Levels {
    pub upright_ratio: f64,
    pub lying_ratio: f64,
    pub upright_torso_deg: f64,
    pub lying_torso_deg: f64,
    pub keypoint_min_score: f32,
    pub pose_max_age_secs: f64,
    /// How much lower than when upright "down" is (see [`dropped`]).
    pub min_height_drop: f64,
}

impl Levels {
    /// Checks the levels; `(field, message)` on error.
    pub fn validate(&self) -> Result<(), (String, String)> {
        for (name, v) in [("upright_ratio", self.upright_ratio), ("lying_ratio", self.lying_ratio)]
        {
            if !(v.is_finite() && v > 0.0) {
                return Err((name.into(), format!("must be a number > 0, got {v}")));
            }
        }
        let (up, lying) = (self.upright_torso_deg, self.lying_torso_deg);
        if !(0.0..=180.0).contains(&up) || !(0.0..=180.0).contains(&lying) || up >= lying {
            return Err((
                "lying_torso_deg".into(),
                format!("need 0 ≤ upright_torso_deg ({up}) < lying_torso_deg ({lying}) ≤ 180"),
            ));
        }
        if !(0.0..=1.0).contains(&self.keypoint_min_score) {
            return Err(("keypoint_min_score".into(), "must be between 0 and 1".into()));
        }
        if !(self.min_height_drop.is_finite() && (0.0..1.0).contains(&self.min_height_drop)) {
            return Err(("min_height_drop".into(), "must be ≥ 0 and < 1".into()));
        }
        non_negative(&[("pose_max_age_secs", self.pose_max_age_secs)])
    }
}

/// The mean position of keypoints `a` and `b` that score ≥ `min` (one is enough).
fn mid(k: &[Keypoint], a: usize, b: usize, min: f32) -> Option<(f32, f32)> {
    let seen: Vec<&Keypoint> =
        [a, b].iter().filter_map(|&i| k.get(i)).filter(|p| p.score >= min).collect();
    (!seen.is_empty()).then(|| {
        let n = seen.len() as f32;
        (seen.iter().map(|p| p.x).sum::<f32>() / n, seen.iter().map(|p| p.y).sum::<f32>() / n)
    })
}

/// The torso's angle from vertical in degrees (0 upright, 90 horizontal, 180 head down):
/// hips → shoulders, in pixels of a `w`×`h` frame.
pub fn torso_deg(k: &[Keypoint], min: f32, w: u32, h: u32) -> Option<f64> {
    let s = mid(k, kp::LEFT_SHOULDER, kp::RIGHT_SHOULDER, min)?;
    let hp = mid(k, kp::LEFT_HIP, kp::RIGHT_HIP, min)?;
    let dx = f64::from(s.0 - hp.0) * f64::from(w);
    let dy = f64::from(s.1 - hp.1) * f64::from(h);
    (dx != 0.0 || dy != 0.0).then(|| dx.abs().atan2(-dy).to_degrees())
}

/// Per track.
#[derive(Default)]
struct St {
    /// Recent upright observations (time, posture), at most `transition_secs` old.
    upright: VecDeque<(OffsetDateTime, Posture)>,
    /// First lying frame after a qualifying transition; None while not down.
    down_since: Option<OffsetDateTime>,
}

pub struct Fall {
    cfg: FallRule,
    tracks: PerTrack<St>,
    /// The fall scan's fallen people (`Tracks::fallen`): they fell already, at `first_seen`.
    fallen: PerTrack<()>,
}

impl Fall {
    pub fn new(cfg: FallRule) -> Self {
        let (min, forget) = (cfg.down_secs, Forget::After(cfg.clear_secs));
        let (sev, cool) = (cfg.severity, cfg.cooldown_secs);
        Fall {
            tracks: PerTrack::new(KIND, sev, min, forget, cool),
            fallen: PerTrack::new(KIND, sev, min, forget, cool),
            cfg,
        }
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
        let levels = cfg.levels();
        let candidates = observed(t, &cfg.classes);
        // One event per fallen person: a track that comes down on a person the fall scan saw
        // fall, or a fallen person under a track that is down, is the fall already reported
        // (or about to be) by the other; only the first raises.
        let scanned: Vec<BBox> = t.fallen.iter().map(|f| f.bbox).collect();
        let mut down: Vec<BBox> = Vec::new();
        self.tracks.on_frame(frame, candidates, out, |tr, st, _| {
            let Some(p) = Posture::of(tr, frame, &levels) else {
                return Step::Skip;
            };
            // `min_score` is for the upright person the fall starts from (and who ends it by
            // standing up); a person on the ground scores lower, and those frames count.
            if p.upright && tr.score < cfg.min_score {
                return Step::Skip;
            }
            while st.upright.front().is_some_and(|(at, _)| now - *at > transition) {
                st.upright.pop_front();
            }
            if p.upright {
                // Upright (again): any fall of this track is over.
                st.upright.push_back((now, p));
                st.down_since = None;
                return Step::Broken;
            }
            if st.down_since.is_none() && p.lying {
                let fell = st.upright.iter().any(|(_, u)| dropped(u, &p, cfg.min_height_drop));
                if fell && !scanned.iter().any(|b| same_place(b, &tr.bbox)) {
                    st.down_since = Some(now);
                }
            }
            // Down: lying, or in between (e.g. curled up) after a fall; only upright ends it.
            match st.down_since {
                Some(since) => {
                    down.push(tr.bbox);
                    Step::holds(since)
                }
                None => Step::Idle,
            }
        });
        // A fallen person the scan has not seen on this frame is not an observation.
        self.fallen.on_frame(frame, &t.fallen, out, |tr, _, active| match tr.state {
            TrackState::Tracked if active || !down.iter().any(|b| same_place(b, &tr.bbox)) => {
                Step::holds(tr.first_seen)
            }
            _ => Step::Skip,
        });
    }

    fn finish(&mut self, _at: OffsetDateTime, out: &mut Vec<RuleOutput>) {
        self.tracks.finish(out);
        self.fallen.finish(out);
    }
}

/// Whether `now` lies at least `drop` of the upright person's height lower than `up`: by
/// the hips when both come from a pose, else by the top of the box (the head). The head
/// comes down to the floor in every fall: toward the camera the box grows downward but its
/// top still sinks (its height need not shrink), away from an elevated camera the head
/// lands on the floor further away, which is still lower in the image than it stood
/// (docs/design/0044). Where the feet stay put this is the box height's drop.
pub fn dropped(up: &Posture, now: &Posture, drop: f64) -> bool {
    if up.height <= 0.0 {
        return false;
    }
    match (up.hips_y, now.hips_y) {
        (Some(a), Some(b)) => (b - a) / up.height >= drop,
        _ => (now.top - up.top) / up.height >= drop,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pose(shoulders: (f32, f32), hips: (f32, f32), score: f32) -> Vec<Keypoint> {
        let mut k = vec![Keypoint { x: 0.0, y: 0.0, score: 0.0 }; 17];
        k[kp::LEFT_SHOULDER] = Keypoint { x: shoulders.0, y: shoulders.1, score };
        k[kp::RIGHT_HIP] = Keypoint { x: hips.0, y: hips.1, score };
        k
    }

    #[test]
    fn torso_angle_from_keypoints_in_pixels() {
        let deg = |s, h| torso_deg(&pose(s, h, 0.9), 0.3, 200, 100).unwrap();
        assert!(deg((0.5, 0.2), (0.5, 0.6)).abs() < 1e-9, "upright");
        assert!((deg((0.3, 0.5), (0.5, 0.5)) - 90.0).abs() < 1e-9, "lying, head left");
        assert!((deg((0.7, 0.5), (0.5, 0.5)) - 90.0).abs() < 1e-9, "lying, head right");
        assert!((deg((0.5, 0.8), (0.5, 0.4)) - 180.0).abs() < 1e-9, "head down");
        // 0.1 across of a 200 px frame = 20 px, 0.2 up of 100 px = 20 px: 45°.
        assert!((deg((0.6, 0.3), (0.5, 0.5)) - 45.0).abs() < 1e-4);
        // Unseen shoulders or hips: no angle.
        assert_eq!(torso_deg(&pose((0.5, 0.2), (0.5, 0.6), 0.2), 0.3, 200, 100), None);
        assert_eq!(torso_deg(&[], 0.3, 200, 100), None);
    }
}
