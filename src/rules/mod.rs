//! Rules turn per-frame detections into incidents. Each rule keeps its own state and reports
//! `RuleOutput`s (started / updated / ended, keyed per incident); the per-camera `RuleEngine`
//! assigns event ids and produces `EventChange`s for the store.
//!
//! Rules take "now" from the frame's capture time (or the health reading's time), never from a
//! wall clock, so fixture tests replay detections in simulated time.
//!
//! Each kind lives in `rules/<kind>.rs`: its config struct (serde defaults, `RuleSpec`:
//! validation, zone/line, `build`) and its `Rule`. The `rule_kinds!` registry below lists
//! the kinds once, making `RuleConfig`. Shared pieces: `common` (defaults, checks, outputs,
//! cooldowns, episodes), `per_track` (the per-track incident lifecycle), `scene` (zones and
//! lines). Nothing here depends on `crate::config` or `crate::health`: `RuleSetup` is what
//! the engine needs of a camera, `HealthTick` what health-driven rules (`camera_offline`) see.

pub mod camera_offline;
pub mod common;
pub mod congestion;
pub mod crowd;
pub mod fall;
pub mod fire;
pub mod ground;
pub mod intrusion;
pub mod line_crossing;
pub mod loitering;
pub mod occupancy;
pub mod per_track;
pub mod person_down;
pub mod presence;
pub mod scene;
pub mod speed;
pub mod speed_trap;
pub mod stalled_vehicle;
pub mod tamper;
pub mod wrong_way;

pub use ground::CalibrationConfig;
pub use scene::{LineConfig, Scene, ZoneConfig};

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::geometry::Anchor;
use crate::types::{
    Change, CountDelta, EventChange, HealthTick, OccupancyDelta, RuleOutput, Tracks,
};

/// A rule evaluated on every analysed frame of one camera.
pub trait Rule: Send {
    /// Event kind this rule raises (e.g. "presence").
    fn kind(&self) -> &'static str;
    /// Looks at one frame's detections and the camera's tracks; appends any incident
    /// changes to `out`.
    fn on_frame(&mut self, t: &Tracks, out: &mut Vec<RuleOutput>);
    /// Ends every open incident (appliance stopping); `at` is the end time.
    fn finish(&mut self, at: OffsetDateTime, out: &mut Vec<RuleOutput>);
    /// Moves line-crossing counts produced since the last call into `out` (most rules
    /// count nothing).
    fn take_counts(&mut self, _out: &mut Vec<CountDelta>) {}
    /// Whether the rule decides on the camera's health (`on_health`) rather than frames.
    fn watches_health(&self) -> bool {
        false
    }
    /// Looks at the camera's source health (polled by the app's health watch); appends any
    /// incident changes to `out`.
    fn on_health(&mut self, _h: &HealthTick, _out: &mut Vec<RuleOutput>) {}
}

/// What a rule kind's config block (`[[cameras.rules]]` with its `kind`) provides. Each
/// `rules/<kind>.rs` implements it for its config struct; `rule_kinds!` below registers it.
pub trait RuleSpec {
    /// The block's `kind = "…"`: the snake_case name of its `RuleConfig` variant.
    const KIND: &'static str;
    /// Checks the block's numbers and classes; `(field, message)` on error. Zone and line
    /// names are checked against the camera's by `validate_rules`.
    fn validate(&self) -> Result<(), (String, String)>;
    /// The zone the rule watches, if any.
    fn zone(&self) -> Option<&str> {
        None
    }
    /// The line the rule watches, if any.
    fn line(&self) -> Option<&str> {
        None
    }
    /// Every line the rule watches, as `(config key, name)`, for validation: by default
    /// `line` under the key `line`.
    fn lines(&self) -> Vec<(&'static str, &str)> {
        self.line().map(|l| ("line", l)).into_iter().collect()
    }
    /// A crossing direction the rule names by one of its line's `directions` names (not
    /// `a_to_b`/`b_to_a`/`both`), checked against the line by `validate_rules`: `(field,
    /// name)`.
    fn direction_name(&self) -> Option<(&'static str, &str)> {
        None
    }
    /// The key that makes this rule need the camera's ground-plane calibration
    /// (`[cameras.calibration]`, for speeds in km/h), if any.
    fn needs_calibration(&self) -> Option<&'static str> {
        None
    }
    /// The rule for one camera; `scene` holds the camera's zones, lines and anchors (an
    /// unknown zone/line name gives an empty one that never matches).
    fn build(&self, scene: &Scene) -> Box<dyn Rule>;
}

/// Declares `RuleConfig` with one variant per rule kind and dispatches to each config
/// struct's `RuleSpec`.
macro_rules! rule_kinds {
    ($($variant:ident($spec:ty),)*) => {
        /// One rule block (`[[cameras.rules]]`); `kind` selects the rule.
        #[derive(Debug, Clone, Deserialize)]
        #[serde(tag = "kind", rename_all = "snake_case")]
        pub enum RuleConfig {
            $($variant($spec),)*
        }

        impl RuleConfig {
            /// Every rule kind, in registry order.
            pub const KINDS: &'static [&'static str] = &[$(<$spec as RuleSpec>::KIND,)*];

            /// The rule's `kind`.
            pub fn kind(&self) -> &'static str {
                match self { $(Self::$variant(_) => <$spec as RuleSpec>::KIND,)* }
            }
            /// See `RuleSpec::validate`.
            pub fn validate(&self) -> Result<(), (String, String)> {
                match self { $(Self::$variant(r) => r.validate(),)* }
            }
            /// The zone this rule watches, if any.
            pub fn zone(&self) -> Option<&str> {
                match self { $(Self::$variant(r) => r.zone(),)* }
            }
            /// The line this rule watches, if any.
            pub fn line(&self) -> Option<&str> {
                match self { $(Self::$variant(r) => r.line(),)* }
            }
            /// See `RuleSpec::lines`.
            pub fn lines(&self) -> Vec<(&'static str, &str)> {
                match self { $(Self::$variant(r) => r.lines(),)* }
            }
            /// See `RuleSpec::direction_name`.
            pub fn direction_name(&self) -> Option<(&'static str, &str)> {
                match self { $(Self::$variant(r) => r.direction_name(),)* }
            }
            /// See `RuleSpec::needs_calibration`.
            pub fn needs_calibration(&self) -> Option<&'static str> {
                match self { $(Self::$variant(r) => r.needs_calibration(),)* }
            }
            /// See `RuleSpec::build`.
            pub fn build(&self, scene: &Scene) -> Box<dyn Rule> {
                match self { $(Self::$variant(r) => r.build(scene),)* }
            }
        }
    };
}

// The registry: one line per rule kind (docs/developing.md "Add a rule").
rule_kinds! {
    Presence(presence::PresenceRule),
    Intrusion(intrusion::IntrusionRule),
    LineCrossing(line_crossing::LineCrossingRule),
    Loitering(loitering::LoiteringRule),
    Crowd(crowd::CrowdRule),
    WrongWay(wrong_way::WrongWayRule),
    StalledVehicle(stalled_vehicle::StalledVehicleRule),
    Congestion(congestion::CongestionRule),
    Speed(speed::SpeedRule),
    SpeedTrap(speed_trap::SpeedTrapRule),
    Fall(fall::FallRule),
    PersonDown(person_down::PersonDownRule),
    Fire(fire::FireRule),
    Smoke(fire::SmokeRule),
    CameraTamper(tamper::TamperRule),
    CameraOffline(camera_offline::CameraOfflineRule),
}

/// Validates a camera's rules: each block's own checks, that the zones and lines they
/// name exist, and that a rule in km/h has a calibrated camera (`calibrated`). Returns
/// `(field, message)` on error, the field relative to the camera (e.g. `rules[2].zone`).
pub fn validate_rules(
    rules: &[RuleConfig],
    zones: &[ZoneConfig],
    lines: &[LineConfig],
    calibrated: bool,
) -> Result<(), (String, String)> {
    for (j, r) in rules.iter().enumerate() {
        let f = |x: &str| format!("rules[{j}].{x}");
        r.validate().map_err(|(field, m)| (f(&field), m))?;
        if let (Some(key), false) = (r.needs_calibration(), calibrated) {
            return Err((
                f(key),
                format!(
                    "rule `{}` measures speed in km/h: the camera needs a ground-plane \
                     calibration ([cameras.calibration] with image_points and ground_points_m)",
                    r.kind()
                ),
            ));
        }
        if let Some(z) = r.zone() {
            if !zones.iter().any(|x| x.name == z) {
                let known = names(zones.iter().map(|x| &x.name));
                return Err((f("zone"), format!("unknown zone `{z}` (camera zones: {known})")));
            }
        }
        for (key, l) in r.lines() {
            if !lines.iter().any(|x| x.name == l) {
                let known = names(lines.iter().map(|x| &x.name));
                return Err((f(key), format!("unknown line `{l}` (camera lines: {known})")));
            }
        }
        if let (Some(l), Some((field, name))) = (r.line(), r.direction_name()) {
            let d = lines.iter().find(|x| x.name == l).and_then(|x| x.directions.as_ref());
            let named = [d.and_then(|d| d.a_to_b.as_ref()), d.and_then(|d| d.b_to_a.as_ref())];
            if !named.iter().flatten().any(|n| n.as_str() == name) {
                let known = names(named.into_iter().flatten());
                return Err((
                    f(field),
                    format!(
                        "unknown direction `{name}`: expected `a_to_b`, `b_to_a`, `both` or a \
                         direction name of line `{l}` ({known})"
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn names<'a>(it: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<String> = it.map(|n| format!("`{n}`")).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// What the rule engine needs of one camera (`From<&CameraConfig>` lives in `config`).
#[derive(Debug, Clone, Copy)]
pub struct RuleSetup<'a> {
    pub camera_id: &'a str,
    pub grid_cell: Option<&'a str>,
    pub rules: &'a [RuleConfig],
    pub zones: &'a [ZoneConfig],
    pub lines: &'a [LineConfig],
    pub anchors: &'a BTreeMap<String, Anchor>,
    /// The ground-plane calibration (`[cameras.calibration]`), if any: tracks get
    /// `speed_kmh`.
    pub calibration: Option<&'a CalibrationConfig>,
}

/// Where the camera's tracker may start weak tracks (`weak_births = "intrusion_zones"`,
/// docs/design/0024): each `intrusion` rule's zone, for its classes at their anchors. An
/// intrusion zone is where any object of those classes is an incident, so a weak but
/// persistent one there is worth a track; elsewhere the tracker's levels alone decide.
/// A `fall` or `person_down` rule adds the whole frame for its classes (docs/design/0044):
/// a fall is only seen on a person tracked upright before it, and people the detector
/// scores low (cut by the frame's edge, far, half hidden) are the ones who otherwise have
/// no track; the weak births' motion gate still keeps static clutter out.
pub fn weak_birth_regions(s: &RuleSetup) -> Vec<crate::track::WeakRegion> {
    s.rules
        .iter()
        .filter_map(|r| match r {
            RuleConfig::Intrusion(r) => Some(r),
            _ => None,
        })
        .filter_map(|r| {
            let zone = s.zones.iter().find(|z| z.name == r.zone)?.points.clone();
            let classes = r
                .classes
                .iter()
                .map(|c| (c.clone(), s.anchors.get(c).copied().unwrap_or_default()))
                .collect();
            Some(crate::track::WeakRegion { zone, classes })
        })
        .chain(posture_rules(s).map(|classes| {
            crate::track::WeakRegion {
                zone: vec![[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]],
                classes: classes
                    .iter()
                    .map(|c| (c.clone(), s.anchors.get(c).copied().unwrap_or_default()))
                    .collect(),
            }
        }))
        .collect()
}

/// The classes of the camera's `fall` and `person_down` rules, one list per rule.
fn posture_rules<'a>(s: &RuleSetup<'a>) -> impl Iterator<Item = &'a Vec<String>> {
    s.rules.iter().filter_map(|r| match r {
        RuleConfig::Fall(r) => Some(&r.classes),
        RuleConfig::PersonDown(r) => Some(&r.classes),
        _ => None,
    })
}

/// The classes whose tracks may follow a change of posture (the tracker's stage 2b,
/// docs/design/0044): those of the camera's `fall` and `person_down` rules. A fall is the
/// very moment a person's box turns from tall to wide and moves, when IoU association
/// breaks; these rules need the track to survive it.
pub fn posture_classes(s: &RuleSetup) -> Vec<String> {
    let mut out: Vec<String> = posture_rules(s).flatten().cloned().collect();
    out.sort();
    out.dedup();
    out
}

/// What every event of a rule carries: its id (`<kind>#<index in the camera's rules>`),
/// and the zone and line it watches. The API lists them per camera.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleMeta {
    pub id: String,
    pub kind: &'static str,
    pub zone: Option<String>,
    pub line: Option<String>,
}

/// Id, kind, zone and line of each rule, in config order.
pub fn describe(rules: &[RuleConfig]) -> Vec<RuleMeta> {
    rules
        .iter()
        .enumerate()
        .map(|(i, r)| RuleMeta {
            id: format!("{}#{i}", r.kind()),
            kind: r.kind(),
            zone: r.zone().map(str::to_string),
            line: r.line().map(str::to_string),
        })
        .collect()
}

/// All rules of one camera plus the mapping from rule incidents to event ids, and the
/// camera's zone occupancy sampler.
pub struct RuleEngine {
    camera_id: String,
    grid_cell: Option<String>,
    rules: Vec<Box<dyn Rule>>,
    meta: Vec<RuleMeta>,
    open: HashMap<(usize, u64), Uuid>,
    buf: Vec<RuleOutput>,
    counts: Vec<CountDelta>,
    occupancy: occupancy::Occupancy,
    /// Ground speeds of the tracks (calibrated cameras only).
    speeds: Option<ground::GroundSpeeds>,
    scene: Scene,
}

impl RuleEngine {
    /// The engine of one camera; `setup` is usually `&CameraConfig`.
    pub fn new<'a>(setup: impl Into<RuleSetup<'a>>) -> Self {
        let setup = setup.into();
        let scene = Scene::new(&setup);
        RuleEngine {
            camera_id: setup.camera_id.to_string(),
            grid_cell: setup.grid_cell.map(str::to_string),
            rules: setup.rules.iter().map(|r| r.build(&scene)).collect(),
            meta: describe(setup.rules),
            open: HashMap::new(),
            buf: Vec::new(),
            counts: Vec::new(),
            occupancy: occupancy::Occupancy::new(&scene),
            speeds: setup.calibration.and_then(ground::GroundSpeeds::new),
            scene,
        }
    }

    /// Id, zone and line of each rule, in config order.
    pub fn rules(&self) -> &[RuleMeta] {
        &self.meta
    }

    /// Sets the tracks' ground speed (`Track::speed_kmh`, calibrated cameras), runs every
    /// rule on the frame's detections and tracks, and samples zone occupancy.
    pub fn process(&mut self, t: &mut Tracks) -> Vec<EventChange> {
        if let Some(s) = &mut self.speeds {
            s.update(&self.scene, &mut t.tracks, t.detections.frame.captured_at);
        }
        let t = &*t;
        self.occupancy.sample(t);
        let mut changes = Vec::new();
        for i in 0..self.rules.len() {
            self.rules[i].on_frame(t, &mut self.buf);
            self.rules[i].take_counts(&mut self.counts);
            self.drain(i, t.detections.frame.captured_instant, &mut changes);
        }
        changes
    }

    /// Line-crossing counts produced by `process` since the last call (for the store).
    pub fn take_counts(&mut self) -> Vec<CountDelta> {
        std::mem::take(&mut self.counts)
    }

    /// Zone occupancy of the 1-minute buckets completed since the last call (for the store).
    pub fn take_occupancy(&mut self) -> Vec<OccupancyDelta> {
        self.occupancy.take_completed()
    }

    /// Zone occupancy of every bucket, including the current partial one (shutdown; the
    /// store merges a partial bucket with the rest of that minute after a restart).
    pub fn flush_occupancy(&mut self) -> Vec<OccupancyDelta> {
        self.occupancy.flush()
    }

    /// Whether any rule decides on the camera's health (the app then polls it).
    pub fn watches_health(&self) -> bool {
        self.rules.iter().any(|r| r.watches_health())
    }

    /// Runs the health-driven rules on one reading of the camera's health.
    pub fn health(&mut self, h: &HealthTick) -> Vec<EventChange> {
        let mut changes = Vec::new();
        for i in 0..self.rules.len() {
            if self.rules[i].watches_health() {
                self.rules[i].on_health(h, &mut self.buf);
                self.drain(i, std::time::Instant::now(), &mut changes);
            }
        }
        changes
    }

    /// Ends all open incidents (graceful shutdown, the end of a file); counts made on
    /// finishing (`line_crossing`'s pending crossings) are left for `take_counts`.
    pub fn finish(&mut self, at: OffsetDateTime) -> Vec<EventChange> {
        let mut changes = Vec::new();
        for i in 0..self.rules.len() {
            self.rules[i].finish(at, &mut self.buf);
            self.rules[i].take_counts(&mut self.counts);
            self.drain(i, std::time::Instant::now(), &mut changes);
        }
        changes
    }

    fn drain(
        &mut self,
        rule: usize,
        caused_by: std::time::Instant,
        changes: &mut Vec<EventChange>,
    ) {
        for o in self.buf.drain(..) {
            let id = match o.change {
                Change::Started => {
                    let id = Uuid::now_v7();
                    self.open.insert((rule, o.key), id);
                    id
                }
                Change::Updated => match self.open.get(&(rule, o.key)) {
                    Some(id) => *id,
                    None => continue,
                },
                Change::Ended => match self.open.remove(&(rule, o.key)) {
                    Some(id) => id,
                    None => continue,
                },
            };
            let meta = self.meta.get(rule);
            changes.push(EventChange {
                event_id: id,
                change: o.change,
                camera_id: self.camera_id.clone(),
                grid_cell: self.grid_cell.clone(),
                kind: o.kind,
                severity: o.severity,
                at: o.at,
                objects: o.objects,
                snapshot: o.snapshot,
                rule: meta.map(|m| m.id.clone()),
                zone: meta.and_then(|m| m.zone.clone()),
                line: meta.and_then(|m| m.line.clone()),
                detail: o.detail,
                caused_by,
            });
        }
    }
}

#[cfg(test)]
mod fixtures;

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::types::{BBox, Detections, Frame, Track, TrackState};

    fn frame_at(secs: f64) -> Frame {
        Frame {
            camera_id: Arc::from("cam"),
            index: 0,
            width: 4,
            height: 4,
            rgb: Arc::from(vec![0u8; 48]),
            pts_ns: None,
            captured_at: OffsetDateTime::UNIX_EPOCH + time::Duration::seconds_f64(1.8e9 + secs),
            captured_instant: std::time::Instant::now(),
        }
    }

    fn tracks_at(secs: f64, y2: f32) -> Tracks {
        let frame = frame_at(secs);
        let now = frame.captured_at;
        Tracks {
            detections: Detections { frame, objects: vec![], infer_ms: 0.0 },
            fallen: vec![],
            tracks: vec![Track {
                id: 7,
                class_id: 0,
                class: "person".into(),
                score: 0.9,
                bbox: BBox { x1: 0.4, y1: 0.3, x2: 0.5, y2 },
                state: TrackState::Tracked,
                hits: 3,
                first_seen: now,
                last_seen: now,
                velocity: (0.0, 0.0),
                speed_kmh: None,
                origin: None,
                pose: None,
            }],
        }
    }

    const CAM: &str = r#"
box_id = "b"
data_dir = "/tmp"
[models]
[[cameras]]
id = "cam"
url = "x.mp4"
models = []
enabled = false
[[cameras.zones]]
name = "area"
points = [[0.2, 0.2], [0.8, 0.2], [0.8, 0.8], [0.2, 0.8]]
[[cameras.lines]]
name = "gate"
points = [[0.1, 0.5], [0.9, 0.5]]
[[cameras.rules]]
kind = "intrusion"
zone = "area"
classes = ["person"]
min_secs = 0.0
[[cameras.rules]]
kind = "line_crossing"
line = "gate"
min_offset = 0.0
"#;

    #[test]
    fn engine_ends_open_incidents_and_hands_out_counts() {
        let cfg = crate::config::Config::parse(CAM, std::path::Path::new("/")).unwrap();
        let mut engine = RuleEngine::new(&cfg.cameras[0]);
        let started = engine.process(&mut tracks_at(0.0, 0.45));
        assert_eq!(started.len(), 1);
        assert_eq!((started[0].kind.as_str(), started[0].change), ("intrusion", Change::Started));
        assert!(started[0].snapshot.is_some());
        assert_eq!(
            (started[0].rule.as_deref(), started[0].zone.as_deref(), started[0].line.as_deref()),
            (Some("intrusion#0"), Some("area"), None)
        );
        assert_eq!(started[0].objects[0].track_id, Some(7));
        assert_eq!(
            engine.rules()[1],
            RuleMeta {
                id: "line_crossing#1".into(),
                kind: "line_crossing",
                zone: None,
                line: Some("gate".into())
            }
        );
        assert!(engine.take_counts().is_empty());
        assert!(engine.process(&mut tracks_at(0.5, 0.55)).is_empty());
        let counts = engine.take_counts();
        assert_eq!(counts.len(), 1);
        assert_eq!(
            (counts[0].camera_id.as_str(), counts[0].line.as_str(), counts[0].direction),
            ("cam", "gate", crate::geometry::CrossDir::AToB)
        );
        assert!(engine.take_counts().is_empty(), "counts are handed out once");
        let end = frame_at(9.0).captured_at;
        let ended = engine.finish(end);
        assert_eq!(ended.len(), 1);
        assert_eq!((ended[0].event_id, ended[0].change), (started[0].event_id, Change::Ended));
        assert_eq!(ended[0].at, frame_at(0.5).captured_at, "ends at the last frame inside");
        assert!(engine.finish(end).is_empty());
        // Occupancy of zone `area`: the track was inside on both frames of one bucket.
        assert!(engine.take_occupancy().is_empty(), "bucket still open");
        let occ = engine.flush_occupancy();
        let got: Vec<(&str, &str, u64, u64, u32)> = occ
            .iter()
            .map(|o| (o.zone.as_str(), o.class.as_str(), o.samples, o.sum, o.max))
            .collect();
        assert_eq!(got, vec![("area", "*", 2, 2, 1), ("area", "person", 2, 2, 1)]);
    }

    /// A person the fall scan saw fall (`Tracks::fallen`): `fall` from the landing once it
    /// has held `down_secs`, `person_down` after its own `down_secs`; both end once the scan
    /// no longer sees the person. The tracker's tracks play no part.
    #[test]
    fn fallen_people_of_the_fall_scan_raise_fall_and_person_down() {
        let text = CAM.split("[[cameras.rules]]").next().unwrap().to_string()
            + "[[cameras.rules]]\nkind = \"fall\"\n[[cameras.rules]]\nkind = \"person_down\"\n";
        let cfg = crate::config::Config::parse(&text, std::path::Path::new("/")).unwrap();
        let mut engine = RuleEngine::new(&cfg.cameras[0]);
        let landed = frame_at(1.0).captured_at;
        // Seen to 13 s, then reported lost for 3 s (`fall_scan::LOST_SECS`), then gone.
        let at = |secs: f64| {
            let seen = secs <= 13.0;
            let mut t = tracks_at(secs, 0.45);
            t.tracks.clear();
            if secs > 16.0 {
                return t;
            }
            let now = t.detections.frame.captured_at;
            t.fallen = vec![Track {
                id: crate::analytics::fall_scan::ID_BASE + 1,
                bbox: BBox { x1: 0.4, y1: 0.6, x2: 0.6, y2: 0.8 },
                state: if seen { TrackState::Tracked } else { TrackState::Lost },
                first_seen: landed,
                last_seen: if seen { now } else { frame_at(13.0).captured_at },
                ..tracks_at(secs, 0.45).tracks[0].clone()
            }];
            t
        };
        let mut got = Vec::new();
        for i in 0..=100 {
            let secs = 2.0 + i as f64 * 0.5;
            for c in engine.process(&mut at(secs)) {
                got.push((c.kind.clone(), c.change, (c.at - landed).as_seconds_f64()));
            }
        }
        let kinds: Vec<(&str, Change)> = got.iter().map(|(k, c, _)| (k.as_str(), *c)).collect();
        assert_eq!(
            kinds,
            [
                ("fall", Change::Started),
                ("person_down", Change::Started),
                ("fall", Change::Ended),
                ("person_down", Change::Ended)
            ],
            "{got:?}"
        );
        assert!(
            got[0].2.abs() < 1e-6 && got[1].2.abs() < 1e-6,
            "both start at the landing: {got:?}"
        );
        assert!((got[2].2 - 12.0).abs() < 1e-6, "fall ends at the last sighting: {got:?}");
        assert!((got[3].2 - 42.0).abs() < 1e-6, "person_down: lost_secs after it: {got:?}");
    }

    #[test]
    fn a_fall_seen_by_the_tracker_and_the_scan_is_one_event() {
        let text = CAM.split("[[cameras.rules]]").next().unwrap().to_string()
            + "[[cameras.rules]]\nkind = \"fall\"\n[[cameras.rules]]\nkind = \"person_down\"\n";
        let cfg = crate::config::Config::parse(&text, std::path::Path::new("/")).unwrap();
        let lying = BBox { x1: 0.35, y1: 0.8, x2: 0.65, y2: 0.9 };
        // A tracked person stands to 1 s, lies from 1.5 s; the scan reports a fallen person
        // (landed at 1.5 s) from 2 s where `scanned` says. Events started: (fall, person_down).
        let started = |scanned: Option<BBox>| {
            let mut engine = RuleEngine::new(&cfg.cameras[0]);
            let (mut falls, mut downs) = (0, 0);
            for i in 0..=40 {
                let secs = i as f64 * 0.5;
                let mut t = tracks_at(secs, 0.9);
                if secs >= 1.5 {
                    t.tracks[0].bbox = lying;
                }
                if let Some(bbox) = scanned.filter(|_| secs >= 2.0) {
                    let now = t.detections.frame.captured_at;
                    t.fallen = vec![Track {
                        id: crate::analytics::fall_scan::ID_BASE + 1,
                        bbox,
                        first_seen: frame_at(1.5).captured_at,
                        last_seen: now,
                        ..t.tracks[0].clone()
                    }];
                }
                for c in engine.process(&mut t).iter().filter(|c| c.change == Change::Started) {
                    match c.kind.as_str() {
                        "fall" => falls += 1,
                        "person_down" => downs += 1,
                        _ => {}
                    }
                }
            }
            (falls, downs)
        };
        assert_eq!(started(None), (1, 1), "the tracked fall alone");
        let here = BBox { x1: 0.4, y1: 0.78, x2: 0.6, y2: 0.92 };
        assert_eq!(started(Some(here)), (1, 1), "the same person: one event of each");
        let elsewhere = BBox { x1: 0.05, y1: 0.1, x2: 0.2, y2: 0.2 };
        assert_eq!(started(Some(elsewhere)), (2, 2), "two people: two of each");
    }

    fn rule(toml_text: &str) -> Result<(), (String, String)> {
        let r: RuleConfig =
            toml::from_str(toml_text).map_err(|e| ("parse".to_string(), e.to_string()))?;
        r.validate()
    }

    #[test]
    fn alarm_rules_are_validated() {
        assert!(rule("kind = 'fire'").is_ok());
        assert!(rule("kind = 'smoke'\nclasses = ['smoke', 'fire']").is_ok());
        assert!(rule("kind = 'fall'").is_ok());
        assert!(rule("kind = 'camera_tamper'").is_ok());
        assert!(rule("kind = 'camera_offline'").is_ok());
        let field = |t: &str| rule(t).err().map(|e| e.0).unwrap_or_default();
        assert_eq!(field("kind = 'fire'\nk = 6"), "k");
        assert_eq!(field("kind = 'smoke'\nn = 0"), "n");
        assert_eq!(field("kind = 'fire'\nmin_area = 2.0"), "min_area");
        assert_eq!(field("kind = 'fire'\nclasses = []"), "classes");
        assert_eq!(field("kind = 'fall'\nlying_ratio = 0.0"), "lying_ratio");
        assert_eq!(field("kind = 'fall'\nmin_height_drop = 1.0"), "min_height_drop");
        assert_eq!(field("kind = 'fall'\ndown_secs = -1.0"), "down_secs");
        assert_eq!(field("kind = 'camera_tamper'\nblur_factor = 0.5"), "blur_factor");
        assert_eq!(field("kind = 'camera_tamper'\nanalysis_width = 4"), "analysis_width");
        assert_eq!(field("kind = 'camera_tamper'\nreference_alpha = 0.0"), "reference_alpha");
        assert_eq!(field("kind = 'camera_offline'\noffline_secs = -5.0"), "offline_secs");
        assert_eq!(
            field("kind = 'camera_offline'\nofline_secs = 5.0"),
            "parse",
            "unknown keys are rejected"
        );
    }

    /// Every registered kind's `RuleSpec::KIND` is its `kind = "…"` in the config, once.
    #[test]
    fn registry_kinds_are_the_config_tags() {
        let mut seen = std::collections::HashSet::new();
        for k in RuleConfig::KINDS {
            assert!(seen.insert(k), "kind `{k}` registered twice");
            match toml::from_str::<RuleConfig>(&format!("kind = '{k}'")) {
                Ok(r) => assert_eq!(r.kind(), *k),
                // Kinds with required keys: anything but an unknown tag.
                Err(e) => assert!(e.to_string().contains("missing field"), "`{k}`: {e}"),
            }
        }
        let r: RuleConfig =
            toml::from_str("kind = 'intrusion'\nzone = 'a'\nclasses = ['x']").unwrap();
        let built = r.build(&Scene::default());
        assert_eq!((r.kind(), built.kind()), ("intrusion", "intrusion"));
        let meta = describe(&[r.clone(), r]);
        assert_eq!(meta[1].id, "intrusion#1");
        assert_eq!(
            (meta[1].kind, meta[1].zone.as_deref(), meta[1].line.as_deref()),
            ("intrusion", Some("a"), None)
        );
    }

    #[test]
    fn unknown_zone_never_matches() {
        // Config::validate rejects this; an engine built anyway must not panic.
        let cfg = crate::config::Config::parse(CAM, std::path::Path::new("/")).unwrap();
        let mut cam = cfg.cameras[0].clone();
        cam.zones.clear();
        cam.lines.clear();
        let mut engine = RuleEngine::new(&cam);
        assert!(engine.process(&mut tracks_at(0.0, 0.45)).is_empty());
        assert!(engine.process(&mut tracks_at(0.5, 0.55)).is_empty());
        assert!(engine.take_counts().is_empty());
    }
}
