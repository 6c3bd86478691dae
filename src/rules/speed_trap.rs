//! `speed_trap`: speed from a known distance along the lane, without a ground-plane
//! calibration. Two lines are drawn across the lane `distance_m` metres apart on the ground
//! (e.g. at the ends of lane markings of a known length); a confirmed track whose anchor
//! crosses one and then the other within `max_secs` has passed at `distance_m / time`. The
//! crossing times are interpolated between the two frames around each crossing (to the
//! millisecond; a position exactly on a line is skipped, as by `line_crossing`). A passage
//! faster than `limit_kmh` raises an instant event (started and ended at the second
//! crossing, key = track id) with detail `{"speed_kmh", "limit_kmh", "distance_m", "secs",
//! "direction": "entry_to_exit" | "exit_to_entry"}`. The speed is the mean over the trap,
//! not per frame: tracks get no `speed_kmh` from it (that needs `[cameras.calibration]`).

use std::collections::BTreeMap;

use serde::Deserialize;
use time::OffsetDateTime;

use super::common::{classes_non_empty, d0, defaults, non_negative, object, observed, output};
use super::common::{secs, sev_medium, vehicles, Cooldown};
use super::per_track::round1;
use super::{Rule, RuleSpec, Scene};
use crate::geometry::{distance_to_polyline, polyline_crossings, Pt};
use crate::types::{Change, RuleOutput, Severity, Tracks};

const KIND: &str = "speed_trap";

defaults! {
    d_max_secs: f64 = 60.0;
}

/// `speed_trap`: a track crossing `entry_line` and `exit_line` (either order), `distance_m`
/// apart, faster than `limit_kmh`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpeedTrapRule {
    pub entry_line: String,
    pub exit_line: String,
    /// Ground distance between the two lines along the lane, metres. Required.
    pub distance_m: f64,
    /// Passages faster than this raise an event (km/h). Required.
    pub limit_kmh: f64,
    #[serde(default = "vehicles")]
    pub classes: Vec<String>,
    /// A track that crossed one line and not the other within this long starts over.
    #[serde(default = "d_max_secs")]
    pub max_secs: f64,
    #[serde(default = "sev_medium")]
    pub severity: Severity,
    /// Per track. Default 0.
    #[serde(default = "d0")]
    pub cooldown_secs: f64,
}

impl RuleSpec for SpeedTrapRule {
    const KIND: &'static str = KIND;

    fn validate(&self) -> Result<(), (String, String)> {
        classes_non_empty(&self.classes)?;
        if self.entry_line == self.exit_line {
            return Err(("exit_line".into(), "must be another line than entry_line".into()));
        }
        if !(self.distance_m.is_finite() && self.distance_m > 0.0 && self.distance_m <= 10_000.0) {
            return Err(("distance_m".into(), "must be > 0 and ≤ 10000 (metres)".into()));
        }
        if !(self.limit_kmh.is_finite() && self.limit_kmh >= 0.0 && self.limit_kmh <= 1000.0) {
            return Err(("limit_kmh".into(), "must be between 0 and 1000 (km/h)".into()));
        }
        if !(self.max_secs.is_finite() && self.max_secs > 0.0) {
            return Err(("max_secs".into(), "must be > 0".into()));
        }
        non_negative(&[("cooldown_secs", self.cooldown_secs)])
    }

    fn line(&self) -> Option<&str> {
        Some(&self.entry_line)
    }

    fn lines(&self) -> Vec<(&'static str, &str)> {
        vec![("entry_line", &self.entry_line), ("exit_line", &self.exit_line)]
    }

    fn build(&self, scene: &Scene) -> Box<dyn Rule> {
        Box::new(SpeedTrap::new(self.clone(), scene))
    }
}

/// Per track: its last anchor and time, and the line it crossed first (0 = entry, 1 =
/// exit) with the crossing time.
struct St {
    prev: (OffsetDateTime, Pt),
    first: Option<(usize, OffsetDateTime)>,
}

pub struct SpeedTrap {
    cfg: SpeedTrapRule,
    lines: [Vec<Pt>; 2],
    scene: Scene,
    tracks: BTreeMap<u64, St>,
    cooldown: Cooldown,
}

impl SpeedTrap {
    pub fn new(cfg: SpeedTrapRule, scene: &Scene) -> Self {
        SpeedTrap {
            lines: [scene.line(&cfg.entry_line), scene.line(&cfg.exit_line)],
            scene: scene.clone(),
            tracks: BTreeMap::new(),
            cooldown: Cooldown::new(cfg.cooldown_secs),
            cfg,
        }
    }
}

impl Rule for SpeedTrap {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn on_frame(&mut self, t: &Tracks, out: &mut Vec<RuleOutput>) {
        let now = t.detections.frame.captured_at;
        if self.lines.iter().any(|l| l.len() < 2) {
            return;
        }
        let max = secs(self.cfg.max_secs);
        for tr in observed(t, &self.cfg.classes) {
            let p = self.scene.anchor(tr);
            if self.lines.iter().any(|l| distance_to_polyline(p, l) <= 1e-12) {
                continue; // on a line: wait for the first position past it
            }
            let Some(st) = self.tracks.get_mut(&tr.id) else {
                self.tracks.insert(tr.id, St { prev: (now, p), first: None });
                continue;
            };
            let (t0, p0) = st.prev;
            st.prev = (now, p);
            if st.first.is_some_and(|(_, at)| now - at > max) {
                st.first = None;
            }
            // Crossings of either line on this motion, in time order.
            let mut hits: Vec<(f64, usize)> = (0..2)
                .flat_map(|k| {
                    polyline_crossings(p0, p, &self.lines[k]).into_iter().map(move |c| (c.0, k))
                })
                .collect();
            hits.sort_by(|a, b| a.0.total_cmp(&b.0));
            for (frac, k) in hits {
                let ms = ((now - t0).as_seconds_f64() * frac * 1000.0).round();
                let at = t0 + time::Duration::milliseconds(ms as i64);
                match st.first {
                    Some((j, t1)) if j != k => {
                        st.first = None;
                        let secs_ = (at - t1).as_seconds_f64();
                        if secs_ <= 0.0 {
                            continue;
                        }
                        let kmh = self.cfg.distance_m / secs_ * 3.6;
                        if kmh > self.cfg.limit_kmh && self.cooldown.allows(tr.id, now) {
                            let detail = serde_json::json!({
                                "speed_kmh": round1(kmh as f32),
                                "limit_kmh": self.cfg.limit_kmh,
                                "distance_m": self.cfg.distance_m,
                                "secs": (secs_ * 1000.0).round() / 1000.0,
                                "direction": if j == 0 { "entry_to_exit" } else { "exit_to_entry" },
                            });
                            let (sev, obj) = (self.cfg.severity, vec![object(tr)]);
                            let frame = Some(&t.detections.frame);
                            out.push(
                                output(KIND, sev, tr.id, Change::Started, at, obj.clone(), frame)
                                    .with_detail(detail.clone()),
                            );
                            out.push(
                                output(KIND, sev, tr.id, Change::Ended, at, obj, None)
                                    .with_detail(detail),
                            );
                            self.cooldown.ended(tr.id, at);
                        }
                    }
                    // The first line (again): the passage starts (over) here.
                    _ => st.first = Some((k, at)),
                }
            }
        }
        self.tracks.retain(|_, s| now - s.prev.0 <= max);
        self.cooldown.prune(now);
    }

    fn finish(&mut self, _at: OffsetDateTime, _out: &mut Vec<RuleOutput>) {
        // Passage events are instant: nothing is ever open.
        self.tracks.clear();
    }
}

#[cfg(test)]
mod tests {
    fn parse(rule: &str) -> Result<crate::config::Config, String> {
        crate::config::Config::parse(
            &format!(
                "box_id='b'\ndata_dir='/tmp'\n[models]\n[[cameras]]\nid='road'\nurl='x.mp4'\n\
                 models=[]\nenabled=false\n[[cameras.lines]]\nname='a'\npoints=[[0,0.4],[1,0.4]]\n\
                 [[cameras.lines]]\nname='b'\npoints=[[0,0.7],[1,0.7]]\n[[cameras.rules]]\n\
                 kind='speed_trap'\n{rule}"
            ),
            std::path::Path::new("/"),
        )
    }

    #[test]
    fn needs_two_known_lines_a_distance_and_a_limit_but_no_calibration() {
        let ok = "entry_line='a'\nexit_line='b'\ndistance_m=30\nlimit_kmh=50\n";
        let cfg = parse(ok).unwrap();
        assert_eq!(crate::rules::describe(&cfg.cameras[0].rules)[0].line.as_deref(), Some("a"));
        for (bad, field) in [
            (ok.replace("exit_line='b'", "exit_line='c'"), "rules[0].exit_line`"),
            (ok.replace("entry_line='a'", "entry_line='c'"), "rules[0].entry_line`"),
            (ok.replace("exit_line='b'", "exit_line='a'"), "rules[0].exit_line`"),
            (ok.replace("distance_m=30", "distance_m=0"), "rules[0].distance_m`"),
            (ok.replace("limit_kmh=50", "limit_kmh=-1"), "rules[0].limit_kmh`"),
        ] {
            let e = parse(&bad).unwrap_err();
            assert!(e.contains(field) && e.contains("`road`"), "{bad}: {e}");
        }
        assert!(parse("entry_line='a'\nexit_line='b'\nlimit_kmh=50\n").is_err());
    }
}
