//! `wrong_way`: a confirmed track of `classes` in `zone` moving against the allowed
//! heading. Headings are image angles: 0° = image right, 90° = image down, 180° = left,
//! 270° (= −90°) = up. The track's motion is its anchor's displacement from an origin:
//! the anchor position where the current run started. The motion is *against* the allowed
//! heading when its heading is within `tolerance_deg` of the opposite heading, i.e. differs
//! from `allowed_heading_deg` by at least 180° − `tolerance_deg`. Whenever the displacement
//! is not against, the origin moves to the current position (so a track that turns around
//! starts a run where it turned). An event (key = track id) starts — at the origin's time —
//! once the run has lasted ≥ `min_secs` and the displacement is ≥ `min_displacement`
//! (normalised). It ends when the track moves a non-against way, leaves the zone, or is not
//! reported for `clear_secs`; the end time is the last frame it was moving against.

use std::collections::BTreeMap;

use time::OffsetDateTime;

use super::common::{object, observed, output, secs, Cooldown, Scene};
use super::Rule;
use crate::geometry::{angle_diff_deg, dist, heading_deg, point_in_polygon, Pt};
use crate::rules::config::WrongWayRule;
use crate::types::{Change, Detection, RuleOutput, Tracks};

const KIND: &str = "wrong_way";

struct St {
    origin: (OffsetDateTime, Pt),
    last_against: OffsetDateTime,
    last_seen: OffsetDateTime,
    active: bool,
    obj: Detection,
}

pub struct WrongWay {
    cfg: WrongWayRule,
    zone: Vec<Pt>,
    scene: Scene,
    tracks: BTreeMap<u64, St>,
    cooldown: Cooldown,
}

impl WrongWay {
    pub fn new(cfg: WrongWayRule, scene: &Scene) -> Self {
        WrongWay {
            zone: scene.zone(&cfg.zone),
            scene: scene.clone(),
            tracks: BTreeMap::new(),
            cooldown: Cooldown::new(cfg.cooldown_secs),
            cfg,
        }
    }

    /// Whether a displacement is against the allowed heading.
    pub fn against(&self, d: Pt) -> bool {
        angle_diff_deg(heading_deg(d), self.cfg.allowed_heading_deg)
            >= 180.0 - self.cfg.tolerance_deg
    }
}

impl Rule for WrongWay {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn on_frame(&mut self, t: &Tracks, out: &mut Vec<RuleOutput>) {
        let now = t.detections.frame.captured_at;
        for tr in observed(t, &self.cfg.classes) {
            let p = self.scene.anchor(tr);
            if !point_in_polygon(p, &self.zone) {
                if let Some(st) = self.tracks.remove(&tr.id) {
                    if st.active {
                        self.cooldown.end(
                            (KIND, self.cfg.severity),
                            tr.id,
                            st.last_against,
                            object(tr),
                            out,
                        );
                    }
                }
                continue;
            }
            let Some(st) = self.tracks.get_mut(&tr.id) else {
                self.tracks.insert(
                    tr.id,
                    St {
                        origin: (now, p),
                        last_against: now,
                        last_seen: now,
                        active: false,
                        obj: object(tr),
                    },
                );
                continue;
            };
            st.last_seen = now;
            st.obj = object(tr);
            let (t0, p0) = st.origin;
            let d = [p[0] - p0[0], p[1] - p0[1]];
            let moved = dist(p, p0);
            if moved < 1e-9 {
                continue;
            }
            let against = angle_diff_deg(heading_deg(d), self.cfg.allowed_heading_deg)
                >= 180.0 - self.cfg.tolerance_deg;
            if against {
                st.last_against = now;
                if !st.active
                    && now - t0 >= secs(self.cfg.min_secs)
                    && moved >= self.cfg.min_displacement
                    && self.cooldown.allows(tr.id, now)
                {
                    st.active = true;
                    let obj = vec![st.obj.clone()];
                    out.push(output(
                        KIND,
                        self.cfg.severity,
                        tr.id,
                        Change::Started,
                        t0,
                        obj,
                        Some(&t.detections.frame),
                    ));
                }
            } else {
                st.origin = (now, p);
                if st.active {
                    st.active = false;
                    let (at, obj) = (st.last_against, st.obj.clone());
                    self.cooldown.end((KIND, self.cfg.severity), tr.id, at, obj, out);
                }
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
                    self.cooldown.end((KIND, self.cfg.severity), id, st.last_against, st.obj, out);
                }
            }
        }
        self.cooldown.prune(now);
    }

    fn finish(&mut self, _at: OffsetDateTime, out: &mut Vec<RuleOutput>) {
        for (id, st) in std::mem::take(&mut self.tracks) {
            if st.active {
                self.cooldown.end((KIND, self.cfg.severity), id, st.last_against, st.obj, out);
            }
        }
    }
}
