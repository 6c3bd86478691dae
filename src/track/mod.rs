//! Multi-object tracking per camera, in the ByteTrack style (Zhang et al., 2022):
//!
//! 1. every track's constant-velocity Kalman filter (`kalman`) is predicted to the frame's
//!    capture time (dt-aware, so a variable analysed frame rate is fine);
//! 2. high-score detections are matched to all confirmed tracks (tracked and lost) by IoU;
//! 3. low-score detections are matched to the confirmed tracks still unmatched that were
//!    tracked on the previous frame (partly occluded objects score low: this keeps them),
//!    and to lost tracks born weak (below: an object that lives on low scores drops out for
//!    a few frames now and then);
//!    then, only for `posture_classes` (cameras with `fall`/`person_down` rules; the code's
//!    stage 2b, docs/design/0044), confirmed tracks still unmatched take a remaining
//!    detection within their body's reach and length ([`posture_reach`]): a person falling;
//! 4. the remaining high-score detections are matched to tentative tracks, which become
//!    confirmed after `min_hits` matches (at once on the tracker's first frame); unmatched
//!    tentative tracks are dropped;
//! 5. unmatched high-score detections above `new_track_score` start tentative tracks;
//! 6. confirmed tracks unmatched for longer than `track_buffer_secs` are removed.
//!
//! Persistent weak objects (`weak_confirm_secs`, docs/design/0024): an unmatched detection
//! scoring below its `new_track_score` (but at least `low_score`) that no track explains
//! starts a *weak* tentative track. It is matched by the remaining detections of any score
//! (those left after stages 1–3, high and low), dropped the first frame it is not, and confirmed
//! only once it has been matched on every analysed frame for `weak_confirm_secs` and its box
//! centre has moved `weak_min_move_heights` box heights from where it was born: a weak but
//! persistent, moving object is real; a flicker is not, and neither is static clutter (which
//! persists too). A match scoring `new_track_score` or more makes it an ordinary tentative
//! track.
//!
//! Each association is an optimal assignment (Hungarian algorithm, `pathfinding`'s
//! `kuhn_munkres`) on IoU, gated by a per-stage threshold and, by default, class-aware.
//!
//! Class groups (`class_groups`, by default one group of car/truck/bus/motorcycle; see
//! docs/design/0020): classes one object may be detected as. Within a group
//! - the score levels are the group's own (a detector scores vehicles lower than people);
//! - a detection suppresses lower-scoring ones of other classes of the group whose box
//!   overlaps it by IoU ≥ `duplicate_iou` (one vehicle boxed as both `car` and `truck`)
//!   before association, their classes counting as votes for its track;
//! - association ignores the class, and a track reports its majority class: the class with
//!   the largest sum of detection scores over its matches (flicker neither splits a track
//!   nor changes what it is counted as).
//!
//! Public ids are given at confirmation, per tracker (= per camera), increasing from 1 and
//! never reused.

pub mod kalman;

use pathfinding::kuhn_munkres::kuhn_munkres;
use pathfinding::matrix::Matrix;
use serde::Deserialize;
use time::OffsetDateTime;

use crate::geometry::{point_in_polygon, Anchor, Pt};
use crate::types::{BBox, Detection, Track, TrackState};
use kalman::Kalman;

/// Classes one object may be detected as (`[[cameras.tracker.class_groups]]`), with their
/// own score levels. See the module docs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassGroup {
    /// Class labels of the group (non-empty; a class belongs to at most one group).
    pub classes: Vec<String>,
    /// `high_score` for detections of these classes (default: the tracker's `high_score`).
    #[serde(default)]
    pub high_score: Option<f32>,
    /// `new_track_score` for detections of these classes (default: the tracker's).
    #[serde(default)]
    pub new_track_score: Option<f32>,
}

impl ClassGroup {
    /// The shipped vehicle group: COCO's road vehicles, scored about 0.15–0.25 lower than
    /// people by the bundled detector (docs/design/0020).
    pub fn vehicles() -> ClassGroup {
        ClassGroup {
            classes: ["car", "truck", "bus", "motorcycle"].map(String::from).to_vec(),
            high_score: Some(0.35),
            new_track_score: Some(0.45),
        }
    }
}

/// Where weak births (docs/design/0024) are allowed (`[cameras.tracker].weak_births`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum WeakBirths {
    /// Only for detections of an `intrusion` rule's classes whose anchor is in its zone
    /// (where any such object is an incident). The default.
    #[default]
    IntrusionZones,
    /// Anywhere in the image, any class.
    Everywhere,
    /// Nowhere (ByteTrack's births only).
    Off,
}

/// A region where weak births are allowed: a zone and the classes (with their anchors) it
/// watches (`intrusion` rules; built by `rules::weak_birth_regions`).
#[derive(Debug, Clone, PartialEq)]
pub struct WeakRegion {
    pub zone: Vec<Pt>,
    pub classes: Vec<(String, Anchor)>,
}

impl WeakRegion {
    fn admits(&self, d: &Detection) -> bool {
        self.classes
            .iter()
            .any(|(c, a)| *c == d.class && point_in_polygon(a.point(&d.bbox), &self.zone))
    }
}

/// Tracker parameters (`[cameras.tracker]`). Every field has a default; see docs/config.md.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackerConfig {
    /// Detections scoring at least this are "high" (first association stage). Default 0.6.
    pub high_score: f32,
    /// Detections scoring at least this but below `high_score` are "low" (second stage);
    /// lower ones are ignored. `gridwatch run` lowers the camera's models' score thresholds
    /// to this. Default 0.25.
    pub low_score: f32,
    /// An unmatched high detection starts a new (tentative) track only if it scores at
    /// least this. Default 0.7.
    pub new_track_score: f32,
    /// Stage 1 (high detections ↔ confirmed tracks): minimum similarity (IoU, times the
    /// detection score when `fuse_score`). Default 0.2.
    pub match_iou: f32,
    /// Stage 2 (low detections ↔ tracks tracked on the previous frame): minimum IoU.
    /// Default 0.5.
    pub low_match_iou: f32,
    /// Stage 3 (remaining high detections ↔ tentative tracks): minimum similarity.
    /// Default 0.3.
    pub tentative_match_iou: f32,
    /// Multiply IoU by the detection score in stages 1 and 3 (ByteTrack's `fuse_score`).
    /// Default false.
    pub fuse_score: bool,
    /// Matches needed to confirm a track (1 = confirm at once). Default 2.
    pub min_hits: u32,
    /// A confirmed track that is not matched is kept (lost, predicted) this long, so a
    /// briefly missed or occluded object keeps its id. Default 2.0.
    pub track_buffer_secs: f64,
    /// Only match detections of the track's class (or of its class group). Default true;
    /// false lets a track follow a detection of any class. A track reports its majority
    /// class either way.
    pub class_aware: bool,
    /// Groups of classes one object may be detected as, with their own score levels.
    /// Default: one group, car/truck/bus/motorcycle, `high_score` 0.35, `new_track_score`
    /// 0.45. `class_groups = []` turns groups off.
    pub class_groups: Vec<ClassGroup>,
    /// Within a class group, a detection suppresses a lower-scoring one of another class of
    /// the group whose box overlaps it by at least this IoU. Default 0.7; 1 turns it off.
    pub duplicate_iou: f32,
    /// Report a matched track's box as the detection's box instead of the Kalman-filtered
    /// box (lost tracks always report the prediction). Default false.
    pub detection_box: bool,
    /// Also report lost tracks (state `lost`, predicted box) for this long after their last
    /// match. Default 0 (only tracks matched on the frame are reported).
    pub report_lost_secs: f64,
    /// Where a detection below `new_track_score` (at least `low_score`) that no track
    /// explains may start a weak tentative track (docs/design/0024). Default
    /// `intrusion_zones`.
    pub weak_births: WeakBirths,
    /// A weak tentative track is confirmed once matched on every analysed frame for this
    /// long (> 0). Default 1.0.
    pub weak_confirm_secs: f64,
    /// ... and once its box centre has moved at least this many box heights from where it
    /// was born: static clutter persists too, but does not move. Default 0.25; 0 confirms
    /// still weak objects too.
    pub weak_min_move_heights: f32,
    /// In a low-light frame (dark or colourless, as the frame path judges it; see
    /// [`Tracker::set_low_light`]), weak births of `person` are allowed anywhere (unless
    /// `weak_births = "off"`) and need no motion: matched on every analysed frame for
    /// `weak_confirm_secs` is enough (docs/design/0027). Default true.
    pub low_light_births: bool,
    /// With `low_light_births`, in a low-light frame: `high_score` of the classes outside the
    /// class groups (people). The detector scores people lower in the dark, as it scores
    /// vehicles lower by day, so the default is the vehicle group's: 0.35.
    pub low_light_high_score: f32,
    /// ... and their `new_track_score` in a low-light frame. Default 0.55 (0.45, the vehicle
    /// group's, starts tracks on people pictured on lit billboards at night; measured in
    /// docs/performance.md, "People").
    pub low_light_new_track_score: f32,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig {
            high_score: 0.6,
            low_score: 0.25,
            new_track_score: 0.7,
            match_iou: 0.2,
            low_match_iou: 0.5,
            tentative_match_iou: 0.3,
            fuse_score: false,
            min_hits: 2,
            track_buffer_secs: 2.0,
            class_aware: true,
            class_groups: vec![ClassGroup::vehicles()],
            duplicate_iou: 0.7,
            detection_box: false,
            report_lost_secs: 0.0,
            weak_births: WeakBirths::IntrusionZones,
            weak_confirm_secs: 1.0,
            weak_min_move_heights: 0.25,
            low_light_births: true,
            low_light_high_score: 0.35,
            low_light_new_track_score: 0.55,
        }
    }
}

impl TrackerConfig {
    /// Checks ranges; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        let unit = [
            ("high_score", self.high_score),
            ("low_score", self.low_score),
            ("new_track_score", self.new_track_score),
            ("match_iou", self.match_iou),
            ("low_match_iou", self.low_match_iou),
            ("tentative_match_iou", self.tentative_match_iou),
            ("duplicate_iou", self.duplicate_iou),
            ("low_light_high_score", self.low_light_high_score),
            ("low_light_new_track_score", self.low_light_new_track_score),
        ];
        for (name, v) in unit {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("tracker.{name}: must be between 0 and 1"));
            }
        }
        if self.low_score > self.high_score {
            return Err("tracker.low_score: must be ≤ tracker.high_score".into());
        }
        if self.low_score > self.low_light_high_score {
            return Err("tracker.low_light_high_score: must be ≥ tracker.low_score".into());
        }
        let mut seen = std::collections::HashSet::new();
        for (i, g) in self.class_groups.iter().enumerate() {
            let at = format!("tracker.class_groups[{i}]");
            if g.classes.is_empty() {
                return Err(format!("{at}.classes: must not be empty"));
            }
            for c in &g.classes {
                if !seen.insert(c.as_str()) {
                    return Err(format!("{at}.classes: `{c}` is already in another group"));
                }
            }
            for (name, v) in [("high_score", g.high_score), ("new_track_score", g.new_track_score)]
            {
                if v.is_some_and(|v| !(0.0..=1.0).contains(&v)) {
                    return Err(format!("{at}.{name}: must be between 0 and 1"));
                }
            }
            if g.high_score.is_some_and(|h| h < self.low_score) {
                return Err(format!("{at}.high_score: must be ≥ tracker.low_score"));
            }
        }
        if self.min_hits == 0 {
            return Err("tracker.min_hits: must be ≥ 1".into());
        }
        if !(self.track_buffer_secs >= 0.0 && self.track_buffer_secs.is_finite()) {
            return Err("tracker.track_buffer_secs: must be ≥ 0".into());
        }
        if !(self.report_lost_secs >= 0.0 && self.report_lost_secs.is_finite()) {
            return Err("tracker.report_lost_secs: must be ≥ 0".into());
        }
        if !(self.weak_confirm_secs > 0.0 && self.weak_confirm_secs.is_finite()) {
            return Err("tracker.weak_confirm_secs: must be > 0".into());
        }
        if !(self.weak_min_move_heights >= 0.0 && self.weak_min_move_heights.is_finite()) {
            return Err("tracker.weak_min_move_heights: must be ≥ 0".into());
        }
        Ok(())
    }
}

struct Inner {
    kf: Kalman,
    /// Public id, once confirmed.
    id: Option<u64>,
    /// The majority class (largest vote) and its id.
    class_id: u32,
    class: String,
    /// Class group of the track (of its first detection).
    group: Option<usize>,
    /// Per class seen: (class, class id, sum of its detection scores).
    votes: Vec<(String, u32, f32)>,
    score: f32,
    state: TrackState,
    hits: u32,
    first_seen: OffsetDateTime,
    last_seen: OffsetDateTime,
    /// Box of the last matched detection.
    det_box: BBox,
    /// Box of the first detection.
    origin: BBox,
    /// Born from a detection below `new_track_score` (tentative tracks only): confirmed
    /// after `weak_confirm_secs` of consecutive matches.
    weak: bool,
    /// Confirmed from a weak birth: low detections may also find it again while lost.
    born_weak: bool,
    /// A weak tentative track born in a low-light frame of a person: confirmed by
    /// persistence alone (no motion gate).
    night: bool,
}

impl Inner {
    fn new(det: &Detection, group: Option<usize>, at: OffsetDateTime) -> Inner {
        Inner {
            kf: Kalman::new(&det.bbox),
            id: None,
            class_id: det.class_id,
            class: det.class.clone(),
            group,
            votes: Vec::new(),
            score: det.score,
            state: TrackState::Tentative,
            hits: 0,
            first_seen: at,
            last_seen: at,
            det_box: det.bbox,
            origin: det.bbox,
            weak: false,
            born_weak: false,
            night: false,
        }
    }

    fn matches_class(&self, d: &Detection, group: Option<usize>, class_aware: bool) -> bool {
        !class_aware
            || (self.group.is_some() && self.group == group)
            || (self.class_id == d.class_id && self.class == d.class)
    }

    fn vote(&mut self, d: &Detection) {
        match self.votes.iter_mut().find(|v| v.1 == d.class_id && v.0 == d.class) {
            Some(v) => v.2 += d.score,
            None => self.votes.push((d.class.clone(), d.class_id, d.score)),
        }
    }

    /// Updates with the detection `d`; `also` are the duplicates it suppressed (votes only).
    fn observe(&mut self, d: &Detection, also: &[&Detection], at: OffsetDateTime) {
        if self.hits > 0 {
            self.kf.update(&d.bbox);
        }
        self.det_box = d.bbox;
        self.score = d.score;
        self.vote(d);
        for o in also {
            self.vote(o);
        }
        // The majority class; ties keep the earlier class.
        let mut best = &self.votes[0];
        for v in &self.votes[1..] {
            if v.2 > best.2 {
                best = v;
            }
        }
        if self.class_id != best.1 || self.class != best.0 {
            self.class_id = best.1;
            self.class = best.0.clone();
        }
        self.hits += 1;
        self.last_seen = at;
    }

    fn public(&self, detection_box: bool) -> Option<Track> {
        Some(Track {
            id: self.id?,
            class_id: self.class_id,
            class: self.class.clone(),
            score: self.score,
            bbox: if detection_box && self.state == TrackState::Tracked {
                self.det_box
            } else {
                self.kf.bbox()
            },
            state: self.state,
            hits: self.hits,
            first_seen: self.first_seen,
            last_seen: self.last_seen,
            velocity: self.kf.velocity(),
            speed_kmh: None,
            origin: Some(self.origin),
            pose: None,
        })
    }
}

/// The tracker of one camera.
pub struct Tracker {
    cfg: TrackerConfig,
    /// Regions of weak births when `weak_births = "intrusion_zones"`.
    weak_regions: Vec<WeakRegion>,
    tracks: Vec<Inner>,
    last_id: u64,
    last_at: Option<OffsetDateTime>,
    /// Whether the next frame is a low-light one (`set_low_light`).
    low_light: bool,
    /// Classes whose confirmed tracks may follow a change of posture (stage 2b).
    posture_classes: Vec<String>,
    /// The frame's width / height (`set_frame_aspect`), for distances in pixels.
    aspect: f32,
}

/// The class whose weak births are allowed everywhere in low light (`low_light_births`).
pub const LOW_LIGHT_CLASS: &str = "person";

impl Tracker {
    pub fn new(cfg: TrackerConfig) -> Tracker {
        Tracker {
            cfg,
            weak_regions: Vec::new(),
            tracks: Vec::new(),
            last_id: 0,
            last_at: None,
            low_light: false,
            posture_classes: Vec::new(),
            aspect: 1.0,
        }
    }

    /// Lets confirmed tracks of `classes` follow a change of posture (stage 2b, see
    /// [`posture_reach`]; docs/design/0044). The camera's `fall` and `person_down` rules
    /// ask for it (`rules::posture_classes`).
    pub fn with_posture_classes(mut self, classes: Vec<String>) -> Tracker {
        self.posture_classes = classes;
        self
    }

    /// Tells the tracker the frame's width / height (the posture stage measures distances
    /// in pixels); it stays so until set again. Ignored unless finite and > 0.
    pub fn set_frame_aspect(&mut self, aspect: f32) {
        if aspect.is_finite() && aspect > 0.0 {
            self.aspect = aspect;
        }
    }

    /// Tells the tracker whether the next frames are low-light ones (dark or colourless:
    /// `analytics::low_light`); it stays so until set again. Only births depend on it.
    pub fn set_low_light(&mut self, low_light: bool) {
        self.low_light = low_light;
    }

    /// Whether `d` may start a weak tentative track that is born in low light.
    fn low_light_birth(&self, d: &Detection) -> bool {
        self.cfg.low_light_births && self.low_light && d.class == LOW_LIGHT_CLASS
    }

    /// The regions where weak births are allowed when `weak_births = "intrusion_zones"`
    /// (the camera's `intrusion` zones and classes).
    pub fn with_weak_regions(mut self, regions: Vec<WeakRegion>) -> Tracker {
        self.weak_regions = regions;
        self
    }

    /// Whether `d` may start a weak tentative track.
    fn weak_birth_allowed(&self, d: &Detection) -> bool {
        match self.cfg.weak_births {
            WeakBirths::Off => false,
            WeakBirths::Everywhere => true,
            WeakBirths::IntrusionZones => self.weak_regions.iter().any(|r| r.admits(d)),
        }
    }

    pub fn config(&self) -> &TrackerConfig {
        &self.cfg
    }

    /// Confirmed tracks currently held (tracked or lost).
    pub fn confirmed(&self) -> usize {
        self.tracks.iter().filter(|t| t.id.is_some()).count()
    }

    /// Whether the tracker follows something it is not sure of: a tentative track (other
    /// than a weak one born by day, which only moving confirms) or a lost confirmed track.
    /// The motion gate (`analytics::motion`) keeps the models running while this holds.
    pub fn unsettled(&self) -> bool {
        self.tracks.iter().any(|t| match t.id {
            None => !t.weak || t.night,
            Some(_) => t.state == TrackState::Lost,
        })
    }

    /// Feeds one frame's detections captured at `at`; returns the confirmed tracks matched
    /// on this frame (state `Tracked`) plus, if `report_lost_secs` > 0, recently lost ones
    /// (state `Lost`), sorted by id.
    pub fn update(&mut self, dets: &[Detection], at: OffsetDateTime) -> Vec<Track> {
        let cfg = self.cfg.clone();
        let first_frame = self.last_at.is_none();
        let dt = match self.last_at {
            Some(prev) => (at - prev).as_seconds_f64().max(0.0),
            None => 0.0,
        };
        if self.last_at.is_none_or(|p| at > p) {
            self.last_at = Some(at);
        }
        for t in &mut self.tracks {
            if t.state != TrackState::Tracked {
                t.kf.freeze_size();
            }
            t.kf.predict(dt);
        }
        let preds: Vec<BBox> = self.tracks.iter().map(|t| t.kf.bbox()).collect();
        let was_tracked: Vec<bool> =
            self.tracks.iter().map(|t| t.state == TrackState::Tracked).collect();

        let groups: Vec<Option<usize>> = dets.iter().map(|d| self.group_of(&d.class)).collect();
        let level = |i: usize, pick: fn(&ClassGroup) -> Option<f32>, default: f32| {
            groups[i].and_then(|g| pick(&cfg.class_groups[g])).unwrap_or(default)
        };
        let dark = cfg.low_light_births && self.low_light;
        let (day_high, day_new) = (cfg.high_score, cfg.new_track_score);
        let (high_score, new_track_score) = match dark {
            true => (cfg.low_light_high_score, cfg.low_light_new_track_score),
            false => (day_high, day_new),
        };
        let high_of = |i: usize| level(i, |g| g.high_score, high_score);
        let valid =
            |d: &Detection| d.score.is_finite() && d.score >= cfg.low_score && d.bbox.area() > 0.0;
        // Duplicates across the classes of a group: the best-scoring detection keeps the
        // object, the others only vote for its class.
        let mut order: Vec<usize> = (0..dets.len()).filter(|&i| valid(&dets[i])).collect();
        order.sort_by(|&a, &b| dets[b].score.total_cmp(&dets[a].score));
        let mut kept: Vec<usize> = Vec::with_capacity(order.len());
        let mut also: Vec<Vec<usize>> = vec![Vec::new(); dets.len()];
        for i in order {
            let dup = groups[i].and_then(|_| {
                kept.iter().copied().find(|&k| {
                    groups[k] == groups[i]
                        && (dets[k].class_id != dets[i].class_id || dets[k].class != dets[i].class)
                        && dets[k].bbox.iou(&dets[i].bbox) >= cfg.duplicate_iou
                })
            });
            match dup {
                Some(k) => also[k].push(i),
                None => kept.push(i),
            }
        }
        kept.sort_unstable();
        let also: Vec<Vec<&Detection>> =
            also.iter().map(|v| v.iter().map(|&i| &dets[i]).collect()).collect();
        let mut high: Vec<usize> =
            kept.iter().copied().filter(|&i| dets[i].score >= high_of(i)).collect();
        let mut low: Vec<usize> =
            kept.iter().copied().filter(|&i| dets[i].score < high_of(i)).collect();
        let new_of = |i: usize| level(i, |g| g.new_track_score, new_track_score);
        let mut matched = vec![false; self.tracks.len()];

        // Stage 1: high detections ↔ confirmed tracks (tracked and lost).
        let pool: Vec<usize> =
            (0..self.tracks.len()).filter(|&i| self.tracks[i].id.is_some()).collect();
        let pairs =
            self.associate(&high, &pool, (dets, &groups, &preds), cfg.match_iou, cfg.fuse_score);
        let mut used_high = vec![false; high.len()];
        for &(di, ti) in &pairs {
            used_high[di] = true;
            let t = pool[ti];
            matched[t] = true;
            self.tracks[t].observe(&dets[high[di]], &also[high[di]], at);
            self.tracks[t].state = TrackState::Tracked;
        }
        high = high.iter().zip(&used_high).filter(|(_, u)| !**u).map(|(d, _)| *d).collect();

        // Stage 2: low detections ↔ unmatched tracks that were tracked on the previous frame
        // (and lost ones born weak).
        let pool2: Vec<usize> = pool
            .iter()
            .copied()
            .filter(|&t| !matched[t] && (was_tracked[t] || self.tracks[t].born_weak))
            .collect();
        let mut used_low = vec![false; low.len()];
        for (di, ti) in
            self.associate(&low, &pool2, (dets, &groups, &preds), cfg.low_match_iou, false)
        {
            let t = pool2[ti];
            used_low[di] = true;
            matched[t] = true;
            self.tracks[t].observe(&dets[low[di]], &also[low[di]], at);
            self.tracks[t].state = TrackState::Tracked;
        }
        low = low.iter().zip(&used_low).filter(|(_, u)| !**u).map(|(d, _)| *d).collect();

        // Stage 2b: a change of posture (docs/design/0044). A person who falls, sits down or
        // gets up changes the box's shape and place faster than the constant-velocity model
        // follows, so IoU finds no match and the track breaks exactly when the posture
        // changes. The confirmed tracks of `posture_classes` still unmatched (tracked on the
        // previous frame or lost within `track_buffer_secs`) take the remaining detections
        // of their class (any score) that lie within the body's reach of their last box and
        // keep its size, nearest first; a detection that a matched track explains, or that a
        // tentative track born before the track was last seen explains (something that was
        // already there), is not taken. The Kalman filter restarts at the new box (a posture
        // change is not motion).
        if !self.posture_classes.is_empty() {
            let pool3: Vec<usize> = pool
                .iter()
                .copied()
                .filter(|&t| !matched[t] && self.posture_classes.contains(&self.tracks[t].class))
                .collect();
            let matched_boxes: Vec<BBox> = (0..self.tracks.len())
                .filter(|&t| matched[t])
                .map(|t| self.tracks[t].kf.bbox())
                .collect();
            let rest: Vec<usize> = high
                .iter()
                .chain(&low)
                .copied()
                .filter(|&d| {
                    !matched_boxes.iter().any(|b| dets[d].bbox.iou(b) >= cfg.tentative_match_iou)
                })
                .collect();
            let aspect = self.aspect;
            let tentative: Vec<(OffsetDateTime, BBox)> = (0..self.tracks.len())
                .filter(|&u| self.tracks[u].id.is_none())
                .map(|u| (self.tracks[u].first_seen, preds[u]))
                .collect();
            let pairs = assign(rest.len(), pool3.len(), |i, j| {
                let d = &dets[rest[i]];
                let t = &self.tracks[pool3[j]];
                if !t.matches_class(d, groups[rest[i]], true) {
                    return None;
                }
                // Already there before the track was last seen (a tentative track of its
                // own explains it): something else, e.g. static clutter or another person.
                let older = tentative.iter().any(|(born, b)| {
                    *born < t.last_seen && d.bbox.iou(b) >= cfg.tentative_match_iou
                });
                if older {
                    return None;
                }
                posture_reach(&t.det_box, &d.bbox, aspect).map(|r| f64::from(1.0 - r))
            });
            let mut taken = vec![false; dets.len()];
            for (di, ti) in pairs {
                let (d, t) = (rest[di], pool3[ti]);
                taken[d] = true;
                matched[t] = true;
                let tr = &mut self.tracks[t];
                tr.kf = Kalman::new(&dets[d].bbox);
                tr.observe(&dets[d], &also[d], at);
                tr.state = TrackState::Tracked;
            }
            high.retain(|&d| !taken[d]);
            low.retain(|&d| !taken[d]);
        }

        for &t in &pool {
            if !matched[t] {
                self.tracks[t].state = TrackState::Lost;
            }
        }

        // Stage 3: remaining high detections ↔ tentative tracks.
        let tentative: Vec<usize> =
            (0..self.tracks.len()).filter(|&i| self.tracks[i].id.is_none()).collect();
        let pairs = self.associate(
            &high,
            &tentative,
            (dets, &groups, &preds),
            cfg.tentative_match_iou,
            cfg.fuse_score,
        );
        let mut used_high = vec![false; high.len()];
        for &(di, ti) in &pairs {
            used_high[di] = true;
            let t = tentative[ti];
            matched[t] = true;
            let d = high[di];
            self.tracks[t].observe(&dets[d], &also[d], at);
            if dets[d].score >= new_of(d) {
                self.tracks[t].weak = false;
                self.tracks[t].night = false;
            }
            self.confirm_if_due(t, at);
        }
        high = high.iter().zip(&used_high).filter(|(_, u)| !**u).map(|(d, _)| *d).collect();

        // Stage 3b: remaining low detections ↔ weak tentative tracks still unmatched.
        let weak: Vec<usize> = tentative.iter().copied().filter(|&t| !matched[t]).collect();
        let weak: Vec<usize> = weak.into_iter().filter(|&t| self.tracks[t].weak).collect();
        let pairs = self.associate(&low, &weak, (dets, &groups, &preds), cfg.low_match_iou, false);
        let mut used_low = vec![false; low.len()];
        for &(di, ti) in &pairs {
            used_low[di] = true;
            let t = weak[ti];
            matched[t] = true;
            self.tracks[t].observe(&dets[low[di]], &also[low[di]], at);
            self.confirm_if_due(t, at);
        }
        low = low.iter().zip(&used_low).filter(|(_, u)| !**u).map(|(d, _)| *d).collect();

        // Drop unmatched tentative tracks and expired lost tracks.
        let buffer = time::Duration::seconds_f64(cfg.track_buffer_secs);
        let mut keep = matched.into_iter();
        self.tracks.retain(|t| {
            let m = keep.next().unwrap_or(false);
            match t.id {
                None => m,
                Some(_) => m || at - t.last_seen <= buffer,
            }
        });

        // Stage 4: new tracks from unmatched confident detections.
        for &d in &high {
            let det = &dets[d];
            if det.score < new_of(d) {
                continue;
            }
            let mut t = Inner::new(det, groups[d], at);
            t.observe(det, &also[d], at);
            if first_frame || cfg.min_hits <= 1 {
                self.last_id += 1;
                t.id = Some(self.last_id);
                t.state = TrackState::Tracked;
            }
            self.tracks.push(t);
        }

        // Stage 5: weak tentative tracks from the other unmatched detections that no track
        // (of their class or group) explains, best first.
        if cfg.weak_births != WeakBirths::Off {
            let mut rest: Vec<usize> = high
                .iter()
                .chain(&low)
                .copied()
                .filter(|&d| {
                    dets[d].score < new_of(d)
                        && (self.weak_birth_allowed(&dets[d]) || self.low_light_birth(&dets[d]))
                })
                .collect();
            rest.sort_by(|&a, &b| dets[b].score.total_cmp(&dets[a].score));
            for d in rest {
                let det = &dets[d];
                let explained = self.tracks.iter().any(|t| {
                    t.matches_class(det, groups[d], cfg.class_aware)
                        && det.bbox.iou(&t.kf.bbox()) >= cfg.tentative_match_iou
                });
                if explained {
                    continue;
                }
                let mut t = Inner::new(det, groups[d], at);
                t.weak = true;
                t.night = self.low_light_birth(det);
                t.observe(det, &also[d], at);
                self.tracks.push(t);
            }
        }

        let report_lost = time::Duration::seconds_f64(cfg.report_lost_secs);
        let mut out: Vec<Track> = self
            .tracks
            .iter()
            .filter(|t| match t.state {
                TrackState::Tracked => true,
                TrackState::Lost => cfg.report_lost_secs > 0.0 && at - t.last_seen <= report_lost,
                TrackState::Tentative => false,
            })
            .filter_map(|t| t.public(cfg.detection_box))
            .collect();
        out.sort_by_key(|t| t.id);
        out
    }

    /// Confirms the tentative track `t` (just matched at `at`) once it has earned it: an
    /// ordinary one after `min_hits` matches, a weak one after `weak_confirm_secs` of
    /// consecutive matches (and `min_hits`) once it has moved `weak_min_move_heights`.
    fn confirm_if_due(&mut self, t: usize, at: OffsetDateTime) {
        let tr = &self.tracks[t];
        let weak_due = || {
            let (b, o) = (tr.kf.bbox(), &tr.origin);
            let old = (at - tr.first_seen).as_seconds_f64() >= self.cfg.weak_confirm_secs;
            // Born in low light: persistence alone (a person standing still at night).
            let moved =
                tr.night || centre_shift(o, &b) >= self.cfg.weak_min_move_heights * (b.y2 - b.y1);
            old && moved
        };
        let due = tr.hits >= self.cfg.min_hits && (!tr.weak || weak_due());
        if due {
            self.last_id += 1;
            let tr = &mut self.tracks[t];
            tr.id = Some(self.last_id);
            tr.born_weak = tr.weak;
            tr.weak = false;
            tr.night = false;
            tr.state = TrackState::Tracked;
        }
    }

    /// The class group of `class`, if any.
    fn group_of(&self, class: &str) -> Option<usize> {
        self.cfg.class_groups.iter().position(|g| g.classes.iter().any(|c| c == class))
    }

    /// Optimal assignment of detections `ds` to tracks `ts` (indices into `dets` / tracks);
    /// returns pairs of positions in `ds` and `ts`.
    fn associate(
        &self,
        ds: &[usize],
        ts: &[usize],
        (dets, groups, preds): (&[Detection], &[Option<usize>], &[BBox]),
        min_sim: f32,
        fuse: bool,
    ) -> Vec<(usize, usize)> {
        let class_aware = self.cfg.class_aware;
        assign(ds.len(), ts.len(), |i, j| {
            let d = &dets[ds[i]];
            let t = &self.tracks[ts[j]];
            if !t.matches_class(d, groups[ds[i]], class_aware) {
                return None;
            }
            let iou = d.bbox.iou(&preds[ts[j]]);
            let sim = if fuse { iou * d.score } else { iou };
            (iou > 0.0 && sim >= min_sim).then_some((sim - min_sim) as f64)
        })
    }
}

/// Whether box `d` can be the body of box `last` after a change of posture, and how far
/// (0 at the feet, 1 at the edge of the reach): on a frame `aspect` = width / height, in
/// pixels, with `H` the longer side of `last`:
/// - **reach**: the centre of `d` lies within `H` of the middle of the bottom edge of `last`
///   (the feet, or where the body touches the ground): a body of length `H` that falls,
///   sits or gets up stays within its own length of that point;
/// - **size**: the longer side of `d` is between half and twice `H`: the body keeps its
///   length; a body lying along the camera's axis looks shorter (foreshortened up to 60°),
///   one that falls toward a close camera longer.
///
/// None outside either gate.
pub fn posture_reach(last: &BBox, d: &BBox, aspect: f32) -> Option<f32> {
    let side = |b: &BBox| ((b.x2 - b.x1) * aspect).max(b.y2 - b.y1);
    let h = side(last);
    let l = side(d);
    if !(h > 0.0 && l > 0.0 && l >= 0.5 * h && l <= 2.0 * h) {
        return None;
    }
    let dx = ((d.x1 + d.x2) / 2.0 - (last.x1 + last.x2) / 2.0) * aspect;
    let dy = (d.y1 + d.y2) / 2.0 - last.y2;
    let r = dx.hypot(dy) / h;
    (r <= 1.0).then_some(r)
}

/// How far the centre of box `b` is from the centre of box `a`.
fn centre_shift(a: &BBox, b: &BBox) -> f32 {
    ((b.x1 + b.x2 - a.x1 - a.x2) / 2.0).hypot((b.y1 + b.y2 - a.y1 - a.y2) / 2.0)
}

/// Maximum-weight assignment between `rows` and `cols` items with the Hungarian algorithm
/// (`pathfinding::kuhn_munkres`). `weight(r, c)` is `None` for a forbidden pair and a
/// non-negative gain otherwise. Returns the (row, col) pairs of the optimal assignment,
/// forbidden pairs left out; this maximises the total gain over allowed pairs.
pub fn assign(
    rows: usize,
    cols: usize,
    weight: impl Fn(usize, usize) -> Option<f64>,
) -> Vec<(usize, usize)> {
    if rows == 0 || cols == 0 {
        return Vec::new();
    }
    let transpose = rows > cols;
    let (n, m) = if transpose { (cols, rows) } else { (rows, cols) };
    // Integer weights (kuhn_munkres needs an exact, ordered type); every allowed pair gets at
    // least 1 so that it is always preferred to leaving both sides unassigned.
    let mut allowed = vec![false; n * m];
    let mut w = vec![0i64; n * m];
    for i in 0..n {
        for j in 0..m {
            let (r, c) = if transpose { (j, i) } else { (i, j) };
            if let Some(g) = weight(r, c).filter(|g| g.is_finite()) {
                allowed[i * m + j] = true;
                w[i * m + j] = 1 + (g.max(0.0) * 1e6).round() as i64;
            }
        }
    }
    if !allowed.iter().any(|a| *a) {
        return Vec::new();
    }
    let Ok(matrix) = Matrix::from_vec(n, m, w) else { return Vec::new() };
    let (_, cols_of) = kuhn_munkres(&matrix);
    cols_of
        .into_iter()
        .enumerate()
        .filter(|&(i, j)| allowed[i * m + j])
        .map(|(i, j)| if transpose { (j, i) } else { (i, j) })
        .collect()
}

#[cfg(test)]
mod tests;
