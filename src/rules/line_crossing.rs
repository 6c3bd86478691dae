//! `line_crossing`: counts every crossing of `line` by a confirmed track, per class and
//! direction (`a_to_b` = from side A, on the left of the line walked from its first to its
//! last point, to side B on its right, on screen; see `geometry` and
//! docs/line-directions.svg), and optionally raises an instant event (started and ended at
//! the crossing, key = track id) for crossings in `direction`; its detail is
//! `{"direction": "a_to_b"|"b_to_a", "direction_name": <the line's name for it>|null,
//! "class": …, "speed_kmh": <ground speed>|null}` (a speed on calibrated cameras; counts
//! carry it too).
//!
//! `mode` decides what has to cross:
//! - `anchor` (default): the class's anchor point (default bottom centre). Hysteresis
//!   against jitter: a crossing is only counted once the point has got at least
//!   `min_offset` away from the line on the new side; if it crosses back first, the pending
//!   crossing is dropped. The crossing time is the capture time of the first frame on the
//!   new side. Positions exactly on the line are skipped (the last position off the line is
//!   kept).
//! - `centre`: the same with the box centre, whatever the class's anchor.
//! - `strict`: the whole box. The box centre must cross the line (so a box passing beside a
//!   short segment is not counted), and the crossing counts once the box no longer touches
//!   the line, provided it had been clear of the line on the old side before: a box that
//!   straddles the line and goes back, or that appeared straddling it, is not counted. The
//!   crossing time is the first frame on which the box is entirely past; `min_offset` is
//!   not used (the box is its own hysteresis).
//!
//! At the end of the stream (`finish`: a file's end, shutdown), no later frame can complete
//! a crossing that is still pending (its point past the line by less than `min_offset`). It
//! counts if the track was observed on the last frame and its box centre is past the line
//! too (the bulk of the object is across: a receding vehicle as a clip ends, whose bottom
//! edge lags its centre); not if the centre is still before the line (an approaching
//! vehicle whose bottom edge has just reached it), nor for a group box (below).
//!
//! Every mode counts per segment, not per infinite line: a motion only crosses where it
//! meets the polyline, so short segments count lanes.
//!
//! Late and broken tracks (docs/design/0022-counting.md):
//! - a new track starts from its object's first detection (`Track::origin`, while the
//!   track was tentative), so a crossing before the tracker confirmed it counts;
//! - a track lost for at most `predict_secs` still crosses (modes `anchor` and `centre`):
//!   its point on the last frame it was seen, moved on at its velocity;
//! - a new track first detected within `predict_secs` of a lost one, within the lost
//!   track's box height of its predicted point, is the same object: it carries on from the
//!   lost track's state, so a crossing in the gap counts once (not by the prediction and
//!   again by the new track, nor never when the new track is born past the line).
//!
//! Group boxes (docs/design/0022-counting.md): a detector sometimes boxes two vehicles that
//! follow each other closely as one object, besides boxing each of them, and the tracker
//! follows that box as a third track. A crossing completed on a frame where the track's box
//! is such a group box (`group_box`: two other observed tracks of the rule's classes, of two
//! different objects, each at least half inside it, whose enclosing box is it) is not
//! counted: its two vehicles are counted by their own tracks. (Lost, such a track is not
//! predicted across the line either: its predicted box overlaps its parts, so it counts as
//! seen, see `ABSORBED_IOU`.)

use std::collections::BTreeMap;

use serde::Deserialize;
use time::OffsetDateTime;

use super::common::{
    d0, defaults, non_negative, object, observed, output, secs, sev_info, Cooldown,
};
use super::{Rule, RuleSpec, Scene};
use crate::geometry::{
    distance_to_polyline, polyline_crossings, polyline_touches_box, Anchor, BBox, CrossDir, Pt,
};
use crate::types::{Change, CountDelta, RuleOutput, Severity, Track, Tracks};

const KIND: &str = "line_crossing";

/// Which crossings of a line raise events: `"a_to_b"`, `"b_to_a"`, `"both"`, or one of the
/// line's direction names (`directions = { a_to_b = "northbound", … }`), checked at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Direction {
    AToB,
    BToA,
    Both,
    /// A name from the line's `directions`.
    Named(String),
}

impl<'de> Deserialize<'de> for Direction {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match String::deserialize(d)?.as_str() {
            "a_to_b" => Direction::AToB,
            "b_to_a" => Direction::BToA,
            "both" => Direction::Both,
            s => Direction::Named(s.to_string()),
        })
    }
}

/// What has to cross the line (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// The class's anchor point (default bottom centre), with `min_offset` hysteresis.
    #[default]
    Anchor,
    /// The box centre (`"centre"`, or `"center"` as in anchors), with `min_offset`
    /// hysteresis.
    Centre,
    /// The whole box: entirely on one side, then entirely on the other.
    Strict,
}

/// By hand so that a bad value names the key: inside the internally tagged `RuleConfig`
/// serde's own message loses the field path.
impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "anchor" => Ok(Mode::Anchor),
            "centre" | "center" => Ok(Mode::Centre),
            "strict" => Ok(Mode::Strict),
            _ => Err(serde::de::Error::custom(format!(
                "`mode`: unknown crossing mode `{s}` (expected \"anchor\", \"centre\" or \"strict\")"
            ))),
        }
    }
}

defaults! {
    both: Direction = Direction::Both;
    d_offset: f64 = 0.02;
    d_predict: f64 = 1.0;
}

/// `line_crossing`: a track (its anchor, its centre or its whole box: `mode`) crosses
/// `line`; every crossing is counted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineCrossingRule {
    pub line: String,
    /// Classes counted; empty (default) = every class.
    #[serde(default)]
    pub classes: Vec<String>,
    /// Crossings that raise events (when `raise_event`). Counts always cover both.
    #[serde(default = "both")]
    pub direction: Direction,
    #[serde(default)]
    pub raise_event: bool,
    /// What has to cross: "anchor" (default), "centre" or "strict".
    #[serde(default)]
    pub mode: Mode,
    /// Hysteresis (modes `anchor` and `centre`; unused by `strict`): a crossing counts once
    /// the point is this far (normalised) past the line without having come back. Default
    /// 0.02.
    #[serde(default = "d_offset")]
    pub min_offset: f64,
    /// A track lost (not matched) for at most this long still crosses: its point on the last
    /// frame it was seen, moved on at its velocity (modes `anchor` and `centre`). 0 turns it
    /// off. Default 1.0.
    #[serde(default = "d_predict")]
    pub predict_secs: f64,
    #[serde(default = "sev_info")]
    pub severity: Severity,
    /// Per track. Default 0.
    #[serde(default = "d0")]
    pub cooldown_secs: f64,
}

impl RuleSpec for LineCrossingRule {
    const KIND: &'static str = KIND;

    fn validate(&self) -> Result<(), (String, String)> {
        if self.classes.iter().any(|s| s.trim().is_empty()) {
            return Err(("classes".into(), "class names must not be empty".into()));
        }
        non_negative(&[
            ("min_offset", self.min_offset),
            ("cooldown_secs", self.cooldown_secs),
            ("predict_secs", self.predict_secs),
        ])?;
        if self.predict_secs > 10.0 {
            return Err(("predict_secs".into(), "must be at most 10".into()));
        }
        if self.min_offset > 0.5 {
            return Err(("min_offset".into(), "must be at most 0.5".into()));
        }
        Ok(())
    }

    fn line(&self) -> Option<&str> {
        Some(&self.line)
    }

    fn direction_name(&self) -> Option<(&'static str, &str)> {
        match &self.direction {
            Direction::Named(n) => Some(("direction", n)),
            _ => None,
        }
    }

    fn build(&self, scene: &Scene) -> Box<dyn Rule> {
        Box::new(LineCrossing::new(self.clone(), scene))
    }
}

/// A lost track's predicted box overlapping an observed track's box by at least this IoU is
/// that track's object (see `LineCrossing::predict`).
const ABSORBED_IOU: f32 = 0.3;

/// `group_box`: each of the two parts lies at least this fraction of its area inside the box,
const GROUP_PART_INSIDE: f32 = 0.5;
/// their enclosing box overlaps the box by at least this IoU,
const GROUP_IOU: f32 = 0.7;
/// and they are two objects, not two boxes of one: their IoU is below this. With
/// `GROUP_IOU`, three cars of one size tailgating in a row never make the middle one a group
/// box (its front and rear neighbours would have to overlap each other by IoU ≥ 0.4).
const GROUP_PARTS_MAX_IOU: f32 = 0.3;

/// Whether `b` boxes two of the `others` together (a group box, see the module docs): two
/// boxes overlapping each other by IoU < `GROUP_PARTS_MAX_IOU`, each at least
/// `GROUP_PART_INSIDE` of its area inside `b`, whose enclosing box overlaps `b` by IoU ≥
/// `GROUP_IOU`.
pub fn group_box<'a>(b: &BBox, others: impl IntoIterator<Item = &'a BBox>) -> bool {
    let parts: Vec<&BBox> = others
        .into_iter()
        .filter(|o| o.area() > 0.0 && b.intersection(o) >= GROUP_PART_INSIDE * o.area())
        .collect();
    parts.iter().enumerate().any(|(i, p)| {
        parts[i + 1..]
            .iter()
            .any(|q| p.iou(q) < GROUP_PARTS_MAX_IOU && p.enclosing(q).iou(b) >= GROUP_IOU)
    })
}

/// Per-track state is forgotten after a track has not been reported this long.
const FORGET_SECS: f64 = 60.0;

struct St {
    prev: Pt,
    pending: Option<(CrossDir, OffsetDateTime)>,
    last_seen: OffsetDateTime,
    /// `strict`: the box has been entirely off the line since the last count (or since the
    /// track appeared); a crossing only counts if it started from such a position.
    clear: bool,
    /// The point on the last frame the track was observed, and the track then.
    seen: Pt,
    track: Track,
    /// A crossing was counted from the predicted point while the track was lost.
    predicted: bool,
    /// The track's box was a group box (`group_box`) on the last frame it was observed.
    group: bool,
    /// While lost, its predicted box fell on an observed track: the object is seen, as that
    /// track (a duplicate track of one object, or an id switch); no more prediction.
    absorbed: bool,
}

impl St {
    /// Moves to `p` (`clear`: the box is off the line) and
    /// returns a crossing that completes there: its direction and time.
    fn step(
        &mut self,
        p: Pt,
        clear: bool,
        now: OffsetDateTime,
        strict: bool,
        min_offset: f64,
        line: &[Pt],
    ) -> Option<(CrossDir, OffsetDateTime)> {
        let d = distance_to_polyline(p, line);
        if d <= 1e-12 {
            return None;
        }
        for (_, dir) in polyline_crossings(self.prev, p, line) {
            self.pending = match self.pending {
                Some((pd, _)) if pd != dir => None,
                Some(x) => Some(x),
                None => Some((dir, now)),
            };
        }
        self.prev = p;
        let Some((dir, at)) = self.pending else {
            self.clear |= clear;
            return None;
        };
        if strict {
            if !clear {
                return None;
            }
            // Entirely past: counts if it was entirely on the other side before.
            let was_clear = std::mem::replace(&mut self.clear, true);
            self.pending = None;
            return was_clear.then_some((dir, now));
        }
        if d < min_offset {
            return None;
        }
        self.pending = None;
        Some((dir, at))
    }
}

pub struct LineCrossing {
    cfg: LineCrossingRule,
    line: Vec<Pt>,
    scene: Scene,
    tracks: BTreeMap<u64, St>,
    cooldown: Cooldown,
    counts: Vec<CountDelta>,
    /// The capture time of the last frame.
    last_frame: Option<OffsetDateTime>,
}

impl LineCrossing {
    pub fn new(cfg: LineCrossingRule, scene: &Scene) -> Self {
        LineCrossing {
            line: scene.line(&cfg.line),
            scene: scene.clone(),
            tracks: BTreeMap::new(),
            cooldown: Cooldown::new(cfg.cooldown_secs),
            counts: Vec::new(),
            last_frame: None,
            cfg,
        }
    }

    /// The point that has to cross (strict mode: the box centre, for the lane test).
    fn point(&self, tr: &crate::types::Track) -> Pt {
        match self.cfg.mode {
            Mode::Anchor => self.scene.anchor(tr),
            Mode::Centre | Mode::Strict => Anchor::Center.point(&tr.bbox),
        }
    }

    /// Crossings of tracks lost for at most `predict_secs`, from their point on the last
    /// frame they were observed moved on at the track's velocity (modes `anchor` and
    /// `centre`). A counted one is not counted again when the track is found again. A lost
    /// track whose predicted box overlaps a track observed on the frame (`seen`, IoU ≥
    /// `ABSORBED_IOU`) is no longer predicted: its object is seen, as that track.
    fn predict(
        &mut self,
        now: OffsetDateTime,
        seen: &[BBox],
    ) -> Vec<(CrossDir, OffsetDateTime, Track)> {
        let mut out = Vec::new();
        for st in self.tracks.values_mut() {
            let lost = (now - st.last_seen).as_seconds_f64();
            if st.predicted || st.absorbed || lost <= 0.0 || lost > self.cfg.predict_secs {
                continue;
            }
            let (vx, vy) = (st.track.velocity.0 as f64, st.track.velocity.1 as f64);
            if !(vx.is_finite() && vy.is_finite()) {
                continue;
            }
            let (dx, dy) = ((vx * lost) as f32, (vy * lost) as f32);
            let b = st.track.bbox;
            let moved = BBox { x1: b.x1 + dx, y1: b.y1 + dy, x2: b.x2 + dx, y2: b.y2 + dy };
            if seen.iter().any(|o| o.iou(&moved) >= ABSORBED_IOU) {
                st.absorbed = true;
                continue;
            }
            let q = [st.seen[0] + vx * lost, st.seen[1] + vy * lost];
            // Tried on a copy: a lost track only moves on once its prediction has crossed.
            let mut trial = St { track: st.track.clone(), ..*st };
            if let Some((dir, at)) =
                trial.step(q, false, now, false, self.cfg.min_offset, &self.line)
            {
                *st = St { predicted: true, ..trial };
                out.push((dir, at, st.track.clone()));
            }
        }
        out
    }

    /// A track lost for at most `predict_secs` before the new track `tr` was first detected
    /// whose predicted point then lies within its own box height of where `tr` was first
    /// detected: the same object, its track broken (the tracker re-associates a lost track
    /// only by the overlap of its predicted box, which a changing size or speed defeats).
    /// Without this, a crossing during the gap is counted twice (prediction, then the new
    /// track) or never (lost before the line, new track born past it).
    fn predecessor(&self, tr: &Track) -> Option<u64> {
        let b = tr.origin.unwrap_or(tr.bbox);
        let o = self.point(&Track { bbox: b, ..tr.clone() });
        let mut best: Option<(f64, u64)> = None;
        for (&id, st) in &self.tracks {
            let gap = (tr.first_seen - st.last_seen).as_seconds_f64();
            if id == tr.id || st.absorbed || gap <= 0.0 || gap > self.cfg.predict_secs {
                continue;
            }
            let (vx, vy) = (st.track.velocity.0 as f64, st.track.velocity.1 as f64);
            let q = [st.seen[0] + vx * gap, st.seen[1] + vy * gap];
            let dist = (q[0] - o[0]).hypot(q[1] - o[1]);
            let gate = (st.track.bbox.y2 - st.track.bbox.y1) as f64;
            if dist.is_finite() && dist <= gate && best.is_none_or(|(bd, _)| dist < bd) {
                best = Some((dist, id));
            }
        }
        best.map(|(_, id)| id)
    }

    /// Counts a crossing of `tr` and raises its event if asked to (its snapshot from
    /// `frame`, when there is one).
    fn count(
        &mut self,
        dir: CrossDir,
        at: OffsetDateTime,
        now: OffsetDateTime,
        tr: &Track,
        frame: Option<&crate::types::Frame>,
        out: &mut Vec<RuleOutput>,
    ) {
        self.counts.push(CountDelta {
            camera_id: self.scene.camera_id.clone(),
            line: self.cfg.line.clone(),
            class: tr.class.clone(),
            direction: dir,
            at,
            count: 1,
            speed_kmh: tr.speed_kmh,
        });
        if self.raises(dir) && self.cooldown.allows(tr.id, now) {
            let obj = vec![object(tr)];
            let sev = self.cfg.severity;
            let detail = serde_json::json!({
                "direction": dir.as_str(),
                "direction_name": self.scene.direction_name(&self.cfg.line, dir),
                "class": tr.class,
                "speed_kmh": tr.speed_kmh.map(super::per_track::round1),
            });
            out.push(
                output(KIND, sev, tr.id, Change::Started, at, obj.clone(), frame)
                    .with_detail(detail),
            );
            out.push(output(KIND, sev, tr.id, Change::Ended, at, obj, None));
            self.cooldown.ended(tr.id, at);
        }
    }

    fn raises(&self, dir: CrossDir) -> bool {
        self.cfg.raise_event
            && match &self.cfg.direction {
                Direction::Both => true,
                Direction::AToB => dir == CrossDir::AToB,
                Direction::BToA => dir == CrossDir::BToA,
                Direction::Named(n) => {
                    self.scene.direction_name(&self.cfg.line, dir).as_deref() == Some(n.as_str())
                }
            }
    }
}

impl Rule for LineCrossing {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn on_frame(&mut self, t: &Tracks, out: &mut Vec<RuleOutput>) {
        let now = t.detections.frame.captured_at;
        if self.line.len() < 2 {
            return;
        }
        let strict = self.cfg.mode == Mode::Strict;
        let mut crossed: Vec<(CrossDir, OffsetDateTime, Track)> = Vec::new();
        let observed = observed(t, &self.cfg.classes);
        for &tr in &observed {
            let p = self.point(tr);
            let d = distance_to_polyline(p, &self.line);
            let clear = strict && !polyline_touches_box(&self.line, &tr.bbox);
            if !self.tracks.contains_key(&tr.id) {
                if let Some(st) = self.predecessor(tr).and_then(|old| self.tracks.remove(&old)) {
                    // The same object as a track lost just before: carry on from its state.
                    self.tracks.insert(tr.id, st);
                } else {
                    // A new track starts from where its object was first detected, while the
                    // track was still tentative: a crossing before confirmation counts.
                    let origin = tr.origin.map(|b| {
                        let o = Track { bbox: b, ..tr.clone() };
                        (self.point(&o), strict && !polyline_touches_box(&self.line, &b))
                    });
                    let (prev, was_clear) = match origin {
                        Some((o, c)) if distance_to_polyline(o, &self.line) > 1e-12 => (o, c),
                        _ if d > 1e-12 => (p, clear),
                        _ => continue,
                    };
                    let st = St {
                        prev,
                        pending: None,
                        last_seen: now,
                        clear: was_clear,
                        seen: p,
                        track: tr.clone(),
                        predicted: false,
                        absorbed: false,
                        group: false,
                    };
                    self.tracks.insert(tr.id, st);
                    if prev == p {
                        continue;
                    }
                }
            }
            let Some(st) = self.tracks.get_mut(&tr.id) else { continue };
            st.last_seen = now;
            st.seen = p;
            st.track = tr.clone();
            st.absorbed = false;
            if std::mem::take(&mut st.predicted) {
                // Back after a crossing counted from its predicted position: go on from here.
                if d > 1e-12 {
                    st.prev = p;
                    st.pending = None;
                }
                continue;
            }
            let step = st.step(p, clear, now, strict, self.cfg.min_offset, &self.line);
            st.group = (step.is_some() || st.pending.is_some()) && {
                let others = observed.iter().filter(|o| o.id != tr.id).map(|o| &o.bbox);
                group_box(&tr.bbox, others)
            };
            // A group box's crossing is its two vehicles': their own tracks count them.
            if let Some((dir, at)) = step.filter(|_| !st.group) {
                crossed.push((dir, at, tr.clone()));
            }
        }
        if !strict && self.cfg.predict_secs > 0.0 {
            let seen: Vec<BBox> = observed.iter().map(|t| t.bbox).collect();
            crossed.extend(self.predict(now, &seen));
        }
        for (dir, at, tr) in crossed {
            self.count(dir, at, now, &tr, Some(&t.detections.frame), out);
        }
        self.last_frame = Some(now);
        let forget = secs(FORGET_SECS);
        self.tracks.retain(|_, s| now - s.last_seen < forget);
        self.cooldown.prune(now);
    }

    fn finish(&mut self, _at: OffsetDateTime, out: &mut Vec<RuleOutput>) {
        // Crossing events are instant: nothing is ever open. A pending crossing of a track
        // observed on the last frame counts (see the module doc); the rest are dropped.
        let Some(last) = self.last_frame else { return };
        let tracks = std::mem::take(&mut self.tracks);
        for st in tracks.values() {
            let centre = Anchor::Center.point(&st.track.bbox);
            let across = st.last_seen == last
                && !st.predicted
                && !st.group
                && self.cfg.mode != Mode::Strict
                && distance_to_polyline(centre, &self.line) > 1e-12
                && polyline_crossings(st.seen, centre, &self.line).is_empty();
            if let Some((dir, at)) = st.pending.filter(|_| across) {
                self.count(dir, at, last, &st.track, None, out);
            }
        }
    }

    fn take_counts(&mut self, out: &mut Vec<CountDelta>) {
        out.append(&mut self.counts);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::{side, BBox};

    fn cam_text(camera: &str) -> Result<crate::config::Config, String> {
        let text = format!(
            "box_id = 'b'\ndata_dir = '/tmp'\n[models]\n[[cameras]]\nid = 'road-cam'\n\
             url = 'x.mp4'\nmodels = []\nenabled = false\n{camera}"
        );
        crate::config::Config::parse(&text, std::path::Path::new("/"))
    }

    fn cam(extra_line: &str, rule: &str) -> Result<crate::config::Config, String> {
        cam_text(&format!(
            "[[cameras.lines]]\nname = 'road'\npoints = [[0.1, 0.6], [0.9, 0.4]]\n\
             {extra_line}\n[[cameras.rules]]\nkind = 'line_crossing'\nline = 'road'\n{rule}\n"
        ))
    }

    /// The example of docs/config.md ("Which side is A") and docs/line-directions.svg: line
    /// `road` drawn from [0.1, 0.6] to [0.9, 0.4]; side A (left of the walk) is above it,
    /// side B below it, and an object moving from [0.45, 0.3] to [0.55, 0.75] crosses a_to_b
    /// ("southbound"). The config block is taken from the doc itself.
    #[test]
    fn documented_example() {
        let doc = include_str!("../../docs/config.md");
        let svg = include_str!("../../docs/line-directions.svg");
        let road: Vec<&str> = doc
            .split("[[cameras.lines]]")
            .find(|b| b.contains("name = \"road\""))
            .expect("docs/config.md has the `road` example")
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("points = ") || l.starts_with("directions = "))
            .collect();
        assert_eq!(road.len(), 2, "{road:?}");
        for l in &road {
            assert!(svg.contains(l), "the picture shows `{l}`");
        }
        let line = [[0.1, 0.6], [0.9, 0.4]];
        let (from, to) = ([0.45, 0.3], [0.55, 0.75]);
        assert!(side(line[0], line[1], from) < 0.0, "side A is the left of the walk");
        assert!(side(line[0], line[1], to) > 0.0, "side B is its right");
        // Image coordinates, y down: A is above the line (smaller y), B below it.
        assert!(side(line[0], line[1], [0.5, 0.1]) < 0.0);
        assert!(side(line[0], line[1], [0.5, 0.9]) > 0.0);
        let c = polyline_crossings(from, to, &line);
        assert_eq!(c.iter().map(|c| c.1).collect::<Vec<_>>(), vec![CrossDir::AToB]);
        assert_eq!(polyline_crossings(to, from, &line)[0].1, CrossDir::BToA);
        // Through the config and the rule: a car whose anchor moves as in the picture.
        let cfg = cam_text(&format!(
            "[[cameras.lines]]\nname = 'road'\n{}\n[[cameras.rules]]\nkind = 'line_crossing'\n\
             line = 'road'\nraise_event = true\n",
            road.join("\n")
        ))
        .unwrap();
        assert_eq!(cfg.cameras[0].lines[0].points, line.to_vec());
        let mut engine = crate::rules::RuleEngine::new(&cfg.cameras[0]);
        let mut events = Vec::new();
        for (k, p) in [from, [0.5, 0.525], to].into_iter().enumerate() {
            let b = BBox {
                x1: p[0] as f32 - 0.05,
                y1: p[1] as f32 - 0.1,
                x2: p[0] as f32 + 0.05,
                y2: p[1] as f32,
            };
            events.extend(engine.process(&mut tracks(k as f64, b)));
        }
        let counts = engine.take_counts();
        assert_eq!(counts.len(), 1);
        assert_eq!((counts[0].line.as_str(), counts[0].direction), ("road", CrossDir::AToB));
        let detail = events[0].detail.clone().unwrap();
        assert_eq!(
            detail,
            serde_json::json!({
                "direction": "a_to_b",
                "direction_name": "southbound",
                "class": "car",
                "speed_kmh": null
            })
        );
        let scene = Scene::new(&(&cfg.cameras[0]).into());
        assert_eq!(scene.direction_name("road", CrossDir::BToA).as_deref(), Some("northbound"));
        assert_eq!(scene.direction_name("other", CrossDir::AToB), None);
    }

    fn tracks(secs: f64, bbox: BBox) -> Tracks {
        let at = OffsetDateTime::UNIX_EPOCH + time::Duration::seconds_f64(1.8e9 + secs);
        let frame = crate::types::Frame {
            camera_id: std::sync::Arc::from("road-cam"),
            index: 0,
            width: 4,
            height: 4,
            rgb: std::sync::Arc::from(vec![0u8; 48]),
            pts_ns: None,
            captured_at: at,
            captured_instant: std::time::Instant::now(),
        };
        Tracks {
            detections: crate::types::Detections { frame, objects: vec![], infer_ms: 0.0 },
            fallen: vec![],
            tracks: vec![crate::types::Track {
                id: 1,
                class_id: 0,
                class: "car".into(),
                score: 0.9,
                bbox,
                state: crate::types::TrackState::Tracked,
                hits: 3,
                first_seen: at,
                last_seen: at,
                velocity: (0.0, 0.0),
                speed_kmh: None,
                origin: None,
                pose: None,
            }],
        }
    }

    #[test]
    fn directions_are_validated_naming_field_and_camera() {
        let err = |d: &str| cam(d, "").err().unwrap_or_default();
        let e = err("directions = { a_to_b = 'northbound' }");
        assert!(
            e.contains("cameras[0].lines[0].directions.b_to_a")
                && e.contains("road-cam")
                && e.contains("give both"),
            "{e}"
        );
        let e = err("directions = { b_to_a = 'northbound' }");
        assert!(e.contains("lines[0].directions.a_to_b") && e.contains("road-cam"), "{e}");
        let e = err("directions = {}");
        assert!(e.contains("lines[0].directions.a_to_b"), "{e}");
        let e = err("directions = { a_to_b = ' ', b_to_a = 'n' }");
        assert!(e.contains("directions.a_to_b") && e.contains("empty"), "{e}");
        let e = err("directions = { a_to_b = 'n', b_to_a = 'n' }");
        assert!(e.contains("directions.b_to_a") && e.contains("different"), "{e}");
        let e = err("directions = { a_to_b = 'n', b_to_a = 's', c_to_d = 'x' }");
        assert!(e.contains("c_to_d") && e.contains("road-cam"), "{e}");
        assert!(cam("directions = { a_to_b = 'n', b_to_a = 's' }", "").is_ok());
        assert!(cam("", "").is_ok(), "directions are optional");
    }

    /// `direction` may name a direction of the line: the rule raises events for that
    /// crossing direction only; an unknown name is refused at load naming the field and
    /// the camera.
    #[test]
    fn direction_by_the_lines_name() {
        let line = "directions = { a_to_b = 'southbound', b_to_a = 'northbound' }";
        let rule = |d: &str| format!("raise_event = true\ndirection = '{d}'");
        let e = cam(line, &rule("eastbound")).err().unwrap_or_default();
        assert!(
            e.contains("rules[0].direction")
                && e.contains("road-cam")
                && e.contains("eastbound")
                && e.contains("`southbound`, `northbound`"),
            "{e}"
        );
        let e = cam("", &rule("northbound")).err().unwrap_or_default();
        assert!(e.contains("rules[0].direction") && e.contains("none"), "{e}");
        assert!(cam("", &rule("both")).is_ok() && cam("", &rule("a_to_b")).is_ok());
        // Down across the line (a_to_b = southbound), then back up (b_to_a = northbound):
        // two counts, one event, for the northbound crossing.
        let cfg = cam(line, &rule("northbound")).unwrap();
        let mut engine = crate::rules::RuleEngine::new(&cfg.cameras[0]);
        let mut events = Vec::new();
        for (k, y) in [0.3f32, 0.7, 0.3].into_iter().enumerate() {
            let b = BBox { x1: 0.45, y1: y - 0.1, x2: 0.55, y2: y };
            events.extend(engine.process(&mut tracks(k as f64, b)));
        }
        assert_eq!(engine.take_counts().len(), 2);
        let started: Vec<_> =
            events.iter().filter(|e| e.change == crate::types::Change::Started).collect();
        assert_eq!(started.len(), 1, "{events:?}");
        let detail = started[0].detail.clone().unwrap_or_default();
        assert_eq!(detail["direction_name"], "northbound");
    }

    /// A crossing pending at the end (the anchor past the line by less than `min_offset`)
    /// counts on `finish` if the track was observed on the last frame and its box centre is
    /// past the line too; not in strict mode (the box still touches the line), nor for a
    /// track lost before the last frame, nor ever twice.
    #[test]
    fn a_crossing_pending_at_the_end_counts_on_finish() {
        // Downwards across the line y ≈ 0.5 (at x = 0.5), the bottom edge ending 0.005 past.
        let end = |rule: &str, height: f32, lost_at_end: bool| {
            let cfg = cam("", rule).unwrap();
            let mut engine = crate::rules::RuleEngine::new(&cfg.cameras[0]);
            for (k, y2) in [0.4f32, 0.45, 0.505].into_iter().enumerate() {
                let b = BBox { x1: 0.45, y1: y2 - height, x2: 0.55, y2 };
                engine.process(&mut tracks(k as f64, b));
            }
            if lost_at_end {
                let mut t = tracks(3.0, BBox { x1: 0.0, y1: 0.0, x2: 0.1, y2: 0.1 });
                t.tracks.clear();
                engine.process(&mut t);
            }
            let before = engine.take_counts().len();
            engine.finish(OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(1_800_000_004));
            let on_finish = engine.take_counts();
            engine.finish(OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(1_800_000_005));
            assert!(engine.take_counts().is_empty());
            (before, on_finish.iter().map(|c| c.direction).collect::<Vec<_>>())
        };
        // A flat box: its centre 0.001 past the line as well.
        assert_eq!(end("", 0.008, false), (0, vec![CrossDir::AToB]));
        assert_eq!(end("", 0.1, false), (0, vec![]), "its centre is before the line");
        assert_eq!(end("mode = 'centre'", 0.1, false), (0, vec![]), "nothing crossed");
        assert_eq!(end("mode = 'strict'", 0.008, false), (0, vec![]));
        assert_eq!(end("", 0.008, true), (0, vec![]));
    }

    /// `group_box` on boxes of `cyclist-on-shoulder` (the dump of `eval scenarios`): the
    /// track enclosing two tailgating cars at 11.3 s and 28.4 s is a group box; neither car
    /// is, nor is the middle one of three tailgaters, nor one of three boxes on one car.
    #[test]
    fn group_boxes() {
        let b = |x1, y1, x2, y2| BBox { x1, y1, x2, y2 };
        // 11.3 s: two white cars (front, rear) and the box of both.
        let (front, rear) = (b(0.300, 0.301, 0.384, 0.387), b(0.303, 0.241, 0.374, 0.311));
        let both = b(0.302, 0.243, 0.379, 0.376);
        assert!(group_box(&both, [&front, &rear]));
        assert!(!group_box(&front, [&rear, &both]) && !group_box(&rear, [&front, &both]));
        // 28.4 s: two dark cars and the box of both.
        let (front, rear) = (b(0.274, 0.307, 0.372, 0.404), b(0.270, 0.248, 0.340, 0.319));
        assert!(group_box(&b(0.271, 0.263, 0.364, 0.393), [&front, &rear]));
        // Three tailgaters, neighbours at IoU 0.54 (tests/fixtures/rules/line-crossing-tailgaters.toml).
        let cars =
            [b(0.4, 0.305, 0.5, 0.405), b(0.4, 0.275, 0.5, 0.375), b(0.4, 0.245, 0.5, 0.345)];
        for (i, c) in cars.iter().enumerate() {
            assert!(!group_box(c, cars.iter().enumerate().filter(|o| o.0 != i).map(|o| o.1)));
        }
        // Three boxes on one car: two objects' boxes would not overlap this much.
        let one = [b(0.4, 0.3, 0.5, 0.4), b(0.402, 0.302, 0.5, 0.4), b(0.4, 0.3, 0.498, 0.398)];
        assert!(!group_box(&one[0], [&one[1], &one[2]]));
        assert!(!group_box(&both, std::iter::empty()));
    }

    #[test]
    fn modes_parse_and_are_validated() {
        let mode = |m: &str| match &cam("", m).unwrap().cameras[0].rules[0] {
            crate::rules::RuleConfig::LineCrossing(r) => r.mode,
            _ => unreachable!(),
        };
        assert_eq!(mode(""), Mode::Anchor, "default");
        assert_eq!(mode("mode = 'anchor'"), Mode::Anchor);
        assert_eq!(mode("mode = 'centre'"), Mode::Centre);
        assert_eq!(mode("mode = 'center'"), Mode::Centre);
        assert_eq!(mode("mode = 'strict'"), Mode::Strict);
        let e = cam("", "mode = 'whole'").err().unwrap_or_default();
        assert!(e.contains("mode") && e.contains("whole") && e.contains("road-cam"), "{e}");
        let e = cam("", "min_offset = 0.6").err().unwrap_or_default();
        assert!(e.contains("rules[0].min_offset") && e.contains("road-cam"), "{e}");
    }
}
