//! `intrusion`: a confirmed track of `classes` whose anchor is inside `zone` for ≥
//! `min_secs` → one event per track (key = track id), starting when the anchor entered.
//! It ends on the first frame the track is seen outside the zone, or once the track has not
//! been reported for `clear_secs`; the end time is the last frame it was seen inside.
//! A brief loss (< `clear_secs`) keeps the entry time.

use std::collections::BTreeMap;

use time::OffsetDateTime;

use super::common::{object, observed, output, secs, Cooldown, Scene};
use super::Rule;
use crate::geometry::{point_in_polygon, Pt};
use crate::rules::config::IntrusionRule;
use crate::types::{Change, Detection, RuleOutput, Tracks};

const KIND: &str = "intrusion";

struct St {
    since: Option<OffsetDateTime>,
    last_inside: OffsetDateTime,
    last_seen: OffsetDateTime,
    active: bool,
    obj: Detection,
}

pub struct Intrusion {
    cfg: IntrusionRule,
    zone: Vec<Pt>,
    scene: Scene,
    tracks: BTreeMap<u64, St>,
    cooldown: Cooldown,
}

impl Intrusion {
    pub fn new(cfg: IntrusionRule, scene: &Scene) -> Self {
        Intrusion {
            zone: scene.zone(&cfg.zone),
            scene: scene.clone(),
            tracks: BTreeMap::new(),
            cooldown: Cooldown::new(cfg.cooldown_secs),
            cfg,
        }
    }
}

impl Rule for Intrusion {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn on_frame(&mut self, t: &Tracks, out: &mut Vec<RuleOutput>) {
        let now = t.detections.frame.captured_at;
        for tr in observed(t, &self.cfg.classes) {
            let inside = point_in_polygon(self.scene.anchor(tr), &self.zone);
            let st = self.tracks.entry(tr.id).or_insert(St {
                since: None,
                last_inside: now,
                last_seen: now,
                active: false,
                obj: object(tr),
            });
            st.last_seen = now;
            st.obj = object(tr);
            if inside {
                st.last_inside = now;
                let since = *st.since.get_or_insert(now);
                if !st.active
                    && now - since >= secs(self.cfg.min_secs)
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
                        Some(&t.detections.frame),
                    ));
                }
            } else {
                st.since = None;
                if st.active {
                    st.active = false;
                    let (at, obj) = (st.last_inside, st.obj.clone());
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
                    self.cooldown.end((KIND, self.cfg.severity), id, st.last_inside, st.obj, out);
                }
            }
        }
        self.cooldown.prune(now);
    }

    fn finish(&mut self, _at: OffsetDateTime, out: &mut Vec<RuleOutput>) {
        for (id, st) in std::mem::take(&mut self.tracks) {
            if st.active {
                self.cooldown.end((KIND, self.cfg.severity), id, st.last_inside, st.obj, out);
            }
        }
    }
}
