//! `person_down`: a person seen upright who is then down (lying, as `fall` tells it: from the
//! track's pose, else its box; [`Posture`], and at least `min_height_drop` lower than when last
//! upright, so bending over is not down) for ≥ `down_secs` → one event per track, starting
//! at the first lying frame. Unlike `fall` it needs no quick transition (a slow collapse
//! counts), and it keeps counting while the detector has lost the person: a track
//! whose last observation was down stays down for up to `lost_secs` after it was last seen
//! (detectors often lose people lying on the ground; a person who gets up is seen upright
//! again). The event's `detail` says whether the person was still seen when it was raised
//! (`{"seen": false}`: raised on the track's history and its last pose).
//!
//! A person the fall scan saw fall (`Tracks::fallen`, `analytics::fall_scan`) is down from
//! the landing on, as long as the scan sees them. One person down is one event: none is
//! raised where another of this rule is open (boxes sharing half of the smaller: the scan and
//! the tracker seeing the same person, or a track that broke while they lay).
//!
//! The event ends when the person is seen upright again (end: the last frame down), or
//! `lost_secs` after a lost track was last seen (end: then). A person first seen lying (on a
//! bench) was never upright: no event.

use std::collections::BTreeMap;

use serde::Deserialize;
use time::OffsetDateTime;

use super::common::{classes_non_empty, d1, d10, d30, non_negative, object, observed};
use super::common::{output, people, same_place, score04, secs, sev_high, Cooldown};
use super::fall::{d_drop, d_kp_score, d_lying_deg, d_upright, d_upright_deg};
use super::fall::{dropped, Levels, Posture};
use super::{Rule, RuleSpec, Scene};
use crate::types::{Change, Detection, RuleOutput, Severity, TrackState, Tracks};

const KIND: &str = "person_down";

/// `person_down`: a person seen upright, then down for `down_secs`, seen or lost.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonDownRule {
    #[serde(default = "people")]
    pub classes: Vec<String>,
    /// As `fall`: upright observations need at least this score. Default 0.4.
    #[serde(default = "score04")]
    pub min_score: f32,
    /// Down this long (seen or lost) raises the event. Default 10.
    #[serde(default = "d10")]
    pub down_secs: f64,
    /// A lost track whose last observation was down counts as down this long after it was
    /// last seen; then its state is dropped (and an open event ends). Default 30.
    #[serde(default = "d30")]
    pub lost_secs: f64,
    /// As `fall`: down must be at least this fraction of the upright height lower (the hips
    /// with a pose, else the top of the box) than when last seen upright. Default 0.3.
    #[serde(default = "d_drop")]
    pub min_height_drop: f64,
    /// As `fall`: upright when box height/width ≥ this (pixels), without a pose. Default 1.3.
    #[serde(default = "d_upright")]
    pub upright_ratio: f64,
    /// As `fall`: lying when box width/height ≥ this (pixels), without a pose. Default 1.0.
    #[serde(default = "d1")]
    pub lying_ratio: f64,
    /// As `fall`: with a pose, upright within this many degrees of vertical. Default 30.
    #[serde(default = "d_upright_deg")]
    pub upright_torso_deg: f64,
    /// As `fall`: with a pose, lying from this many degrees. Default 60.
    #[serde(default = "d_lying_deg")]
    pub lying_torso_deg: f64,
    /// As `fall`. Default 0.3.
    #[serde(default = "d_kp_score")]
    pub keypoint_min_score: f32,
    /// As `fall`. Default 1.
    #[serde(default = "d1")]
    pub pose_max_age_secs: f64,
    #[serde(default = "sev_high")]
    pub severity: Severity,
    /// Per track. Default 30.
    #[serde(default = "d30")]
    pub cooldown_secs: f64,
}

impl PersonDownRule {
    fn levels(&self) -> Levels {
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

impl RuleSpec for PersonDownRule {
    const KIND: &'static str = KIND;

    fn validate(&self) -> Result<(), (String, String)> {
        classes_non_empty(&self.classes)?;
        if !(0.0..=1.0).contains(&self.min_score) {
            return Err(("min_score".into(), "must be between 0 and 1".into()));
        }
        self.levels().validate()?;
        non_negative(&[
            ("down_secs", self.down_secs),
            ("lost_secs", self.lost_secs),
            ("cooldown_secs", self.cooldown_secs),
        ])
    }

    fn build(&self, _scene: &Scene) -> Box<dyn Rule> {
        Box::new(PersonDown {
            levels: self.levels(),
            cooldown: Cooldown::new(self.cooldown_secs),
            cfg: self.clone(),
            tracks: BTreeMap::new(),
        })
    }
}

/// Per track.
struct St {
    /// The last upright observation.
    upright: Option<Posture>,
    /// The first lying frame after an upright one; None while not down.
    down_since: Option<OffsetDateTime>,
    /// The last frame it was observed, and the last observed down.
    last_seen: OffsetDateTime,
    last_down: OffsetDateTime,
    open: bool,
    obj: Detection,
}

pub struct PersonDown {
    cfg: PersonDownRule,
    levels: Levels,
    cooldown: Cooldown,
    tracks: BTreeMap<u64, St>,
}

impl PersonDown {
    fn end(&mut self, id: u64, at: OffsetDateTime, out: &mut Vec<RuleOutput>) {
        if let Some(st) = self.tracks.get_mut(&id).filter(|st| st.open) {
            st.open = false;
            let obj = st.obj.clone();
            self.cooldown.end((KIND, self.cfg.severity), id, at, obj, out);
        }
    }
}

impl Rule for PersonDown {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn on_frame(&mut self, t: &Tracks, out: &mut Vec<RuleOutput>) {
        let frame = &t.detections.frame;
        let now = frame.captured_at;
        self.cooldown.prune(now);
        let (lost, down) = (secs(self.cfg.lost_secs), secs(self.cfg.down_secs));
        let mut seen = Vec::new();
        for tr in observed(t, &self.cfg.classes) {
            let Some(p) = Posture::of(tr, frame, &self.levels) else { continue };
            // As `fall`: the score gate is for upright observations only.
            if p.upright && tr.score < self.cfg.min_score {
                continue;
            }
            seen.push(tr.id);
            let st = self.tracks.entry(tr.id).or_insert_with(|| St {
                upright: None,
                down_since: None,
                last_seen: now,
                last_down: now,
                open: false,
                obj: object(tr),
            });
            st.last_seen = now;
            st.obj = object(tr);
            if p.upright {
                st.upright = Some(p);
                st.down_since = None;
                let last_down = st.last_down;
                self.end(tr.id, last_down, out);
                continue;
            }
            let drop = self.cfg.min_height_drop;
            if p.lying && st.upright.is_some_and(|u| dropped(&u, &p, drop)) {
                st.down_since.get_or_insert(now);
            }
            // Down: lying, or in between (curled up) after lying; only upright ends it.
            if st.down_since.is_some() {
                st.last_down = now;
            }
        }
        // The fall scan's fallen people (`Tracks::fallen`) are down since they landed.
        for tr in t.fallen.iter().filter(|tr| tr.state == TrackState::Tracked) {
            seen.push(tr.id);
            let st = self.tracks.entry(tr.id).or_insert_with(|| St {
                upright: None,
                down_since: Some(tr.first_seen),
                last_seen: now,
                last_down: now,
                open: false,
                obj: object(tr),
            });
            (st.last_seen, st.last_down, st.obj) = (now, now, object(tr));
        }
        let ids: Vec<u64> = self.tracks.keys().copied().collect();
        for id in ids {
            let visible = seen.contains(&id);
            let Some(st) = self.tracks.get(&id) else { continue };
            if !visible && now - st.last_seen > lost {
                let at = st.last_seen + lost;
                self.end(id, at, out);
                self.tracks.remove(&id);
                continue;
            }
            // A lost track counts as down only if it was down when last seen.
            let Some(since) = st.down_since.filter(|_| visible || st.last_down == st.last_seen)
            else {
                continue;
            };
            // One event per person down: none where another one is open (the fall scan and
            // the tracker seeing the same person, or a track that broke while they lay).
            let here = &st.obj.bbox;
            let taken = |(o, s): (&u64, &St)| *o != id && s.open && same_place(&s.obj.bbox, here);
            if !st.open
                && now - since >= down
                && !self.tracks.iter().any(taken)
                && self.cooldown.allows(id, now)
            {
                let detail = serde_json::json!({ "seen": visible });
                let o = output(
                    KIND,
                    self.cfg.severity,
                    id,
                    Change::Started,
                    since,
                    vec![st.obj.clone()],
                    Some(frame),
                );
                out.push(o.with_detail(detail));
                if let Some(st) = self.tracks.get_mut(&id) {
                    st.open = true;
                }
            }
        }
    }

    fn finish(&mut self, _at: OffsetDateTime, out: &mut Vec<RuleOutput>) {
        let open: Vec<(u64, OffsetDateTime)> = self
            .tracks
            .iter()
            .filter(|(_, st)| st.open)
            .map(|(id, st)| (*id, st.last_down))
            .collect();
        for (id, at) in open {
            self.end(id, at, out);
        }
    }
}
