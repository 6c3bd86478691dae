//! `loitering`: one confirmed track of `classes` dwelling with its anchor in `zone` for ≥
//! `dwell_secs` → event per track (key = track id) starting at its first frame inside.
//! Gaps (track lost and re-found with the same id, or briefly outside the zone) of up to
//! `max_gap_secs` do not restart the dwell; a longer gap ends the event (end time = last
//! frame inside), reported on the first frame past the gap.

use std::collections::BTreeMap;

use time::OffsetDateTime;

use super::common::{object, observed, output, secs, Cooldown, Scene};
use super::Rule;
use crate::geometry::{point_in_polygon, Pt};
use crate::rules::config::LoiteringRule;
use crate::types::{Change, Detection, RuleOutput, Tracks};

const KIND: &str = "loitering";

struct St {
    first: OffsetDateTime,
    last_inside: OffsetDateTime,
    active: bool,
    obj: Detection,
}

pub struct Loitering {
    cfg: LoiteringRule,
    zone: Vec<Pt>,
    scene: Scene,
    tracks: BTreeMap<u64, St>,
    cooldown: Cooldown,
}

impl Loitering {
    pub fn new(cfg: LoiteringRule, scene: &Scene) -> Self {
        Loitering {
            zone: scene.zone(&cfg.zone),
            scene: scene.clone(),
            tracks: BTreeMap::new(),
            cooldown: Cooldown::new(cfg.cooldown_secs),
            cfg,
        }
    }
}

impl Rule for Loitering {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn on_frame(&mut self, t: &Tracks, out: &mut Vec<RuleOutput>) {
        let now = t.detections.frame.captured_at;
        let gap = secs(self.cfg.max_gap_secs);
        // End (and forget) dwells whose gap has grown too long.
        let gone: Vec<u64> = self
            .tracks
            .iter()
            .filter(|(_, s)| now - s.last_inside > gap)
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            if let Some(st) = self.tracks.remove(&id) {
                if st.active {
                    out.push(output(
                        KIND,
                        self.cfg.severity,
                        id,
                        Change::Ended,
                        st.last_inside,
                        vec![st.obj],
                        None,
                    ));
                    self.cooldown.ended(id, st.last_inside);
                }
            }
        }
        for tr in observed(t, &self.cfg.classes) {
            if !point_in_polygon(self.scene.anchor(tr), &self.zone) {
                continue;
            }
            let st = self.tracks.entry(tr.id).or_insert(St {
                first: now,
                last_inside: now,
                active: false,
                obj: object(tr),
            });
            st.last_inside = now;
            st.obj = object(tr);
            if !st.active
                && now - st.first >= secs(self.cfg.dwell_secs)
                && self.cooldown.allows(tr.id, now)
            {
                st.active = true;
                out.push(output(
                    KIND,
                    self.cfg.severity,
                    tr.id,
                    Change::Started,
                    st.first,
                    vec![st.obj.clone()],
                    Some(&t.detections.frame),
                ));
            }
        }
        self.cooldown.prune(now);
    }

    fn finish(&mut self, _at: OffsetDateTime, out: &mut Vec<RuleOutput>) {
        for (id, st) in std::mem::take(&mut self.tracks) {
            if st.active {
                out.push(output(
                    KIND,
                    self.cfg.severity,
                    id,
                    Change::Ended,
                    st.last_inside,
                    vec![st.obj],
                    None,
                ));
            }
        }
    }
}
