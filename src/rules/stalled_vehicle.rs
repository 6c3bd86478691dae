//! `stalled_vehicle` (illegal parking, breakdown): a confirmed vehicle (`classes`) whose
//! anchor stays in `zone` within `tolerance` (normalised distance) of where it stopped for
//! ≥ `stationary_secs` → event per track (key = track id) starting when it stopped. The
//! reference point is the anchor's position when the stationary run began; moving farther
//! than `tolerance` from it restarts the run there. The event ends when the vehicle moves
//! beyond the tolerance, leaves the zone, or is not reported for `clear_secs`; the end time
//! is the last frame it was still stationary.

use std::collections::BTreeMap;

use time::OffsetDateTime;

use super::common::{object, observed, output, secs, Cooldown, Scene};
use super::Rule;
use crate::geometry::{dist, point_in_polygon, Pt};
use crate::rules::config::StalledVehicleRule;
use crate::types::{Change, Detection, RuleOutput, Tracks};

const KIND: &str = "stalled_vehicle";

struct St {
    origin: (OffsetDateTime, Pt),
    last_still: OffsetDateTime,
    last_seen: OffsetDateTime,
    active: bool,
    obj: Detection,
}

pub struct StalledVehicle {
    cfg: StalledVehicleRule,
    zone: Vec<Pt>,
    scene: Scene,
    tracks: BTreeMap<u64, St>,
    cooldown: Cooldown,
}

impl StalledVehicle {
    pub fn new(cfg: StalledVehicleRule, scene: &Scene) -> Self {
        StalledVehicle {
            zone: scene.zone(&cfg.zone),
            scene: scene.clone(),
            tracks: BTreeMap::new(),
            cooldown: Cooldown::new(cfg.cooldown_secs),
            cfg,
        }
    }
}

impl Rule for StalledVehicle {
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
                            st.last_still,
                            object(tr),
                            out,
                        );
                    }
                }
                continue;
            }
            let st = self.tracks.entry(tr.id).or_insert(St {
                origin: (now, p),
                last_still: now,
                last_seen: now,
                active: false,
                obj: object(tr),
            });
            st.last_seen = now;
            st.obj = object(tr);
            if dist(p, st.origin.1) > self.cfg.tolerance {
                st.origin = (now, p);
                if st.active {
                    st.active = false;
                    let (at, obj) = (st.last_still, st.obj.clone());
                    self.cooldown.end((KIND, self.cfg.severity), tr.id, at, obj, out);
                    continue;
                }
            }
            let Some(st) = self.tracks.get_mut(&tr.id) else { continue };
            st.last_still = now;
            let t0 = st.origin.0;
            if !st.active
                && now - t0 >= secs(self.cfg.stationary_secs)
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
                    self.cooldown.end((KIND, self.cfg.severity), id, st.last_still, st.obj, out);
                }
            }
        }
        self.cooldown.prune(now);
    }

    fn finish(&mut self, _at: OffsetDateTime, out: &mut Vec<RuleOutput>) {
        for (id, st) in std::mem::take(&mut self.tracks) {
            if st.active {
                self.cooldown.end((KIND, self.cfg.severity), id, st.last_still, st.obj, out);
            }
        }
    }
}
