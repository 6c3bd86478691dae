//! The typed messages passed between stages: `Frame` (ingest → infer), `Detections`
//! (infer → rules), `EventChange` (rules → store). See docs/architecture.md.

use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub use crate::geometry::BBox;
use crate::geometry::CrossDir;

/// A decoded, tightly packed RGB24 frame at the camera's detect size.
#[derive(Clone)]
pub struct Frame {
    pub camera_id: Arc<str>,
    /// Per-camera frame counter since the appliance started.
    pub index: u64,
    pub width: u32,
    pub height: u32,
    /// `width * height * 3` bytes, RGB, no row padding. Shared, never copied downstream.
    pub rgb: Arc<[u8]>,
    /// Presentation timestamp inside the stream, if the source has one.
    pub pts_ns: Option<u64>,
    /// Wall-clock time (UTC) when the frame left the pipeline; rules use this as "now".
    pub captured_at: OffsetDateTime,
    /// Monotonic instant of the same moment, for latency measurement.
    pub captured_instant: Instant,
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame")
            .field("camera_id", &self.camera_id)
            .field("index", &self.index)
            .field("size", &(self.width, self.height))
            .field("pts_ns", &self.pts_ns)
            .finish()
    }
}

/// One detected object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    pub class_id: u32,
    /// Label from the model's labels file (e.g. "person").
    pub class: String,
    pub score: f32,
    #[serde(rename = "box")]
    pub bbox: BBox,
    /// The tracker's id of the object (set by track-based rules; absent for raw detections).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track_id: Option<u64>,
    /// Body keypoints, from a pose model (`[output] kind = "keypoints"`): the 17 COCO
    /// keypoints in [`KEYPOINT_NAMES`] order, normalised to the frame like `box`. Absent for
    /// other models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keypoints: Option<Vec<Keypoint>>,
}

impl Detection {
    /// A raw detection (no track id, no keypoints).
    pub fn new(class_id: u32, class: impl Into<String>, score: f32, bbox: BBox) -> Detection {
        Detection { class_id, class: class.into(), score, bbox, track_id: None, keypoints: None }
    }
}

/// One body keypoint: `x`, `y` normalised to the frame (0–1, clamped; 0,0 is the top-left
/// corner) and the model's confidence `score` (0–1). A keypoint the model does not see
/// (occluded, outside the frame) still has a position, with a low score: check the score
/// (MoveNet's authors suggest 0.3) before using it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Keypoint {
    pub x: f32,
    pub y: f32,
    pub score: f32,
}

/// The 17 COCO keypoints, in the order of [`Detection::keypoints`].
pub const KEYPOINT_NAMES: [&str; 17] = [
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
];

/// Indices into [`KEYPOINT_NAMES`] of each COCO keypoint.
pub mod kp {
    pub const NOSE: usize = 0;
    pub const LEFT_EYE: usize = 1;
    pub const RIGHT_EYE: usize = 2;
    pub const LEFT_EAR: usize = 3;
    pub const RIGHT_EAR: usize = 4;
    pub const LEFT_SHOULDER: usize = 5;
    pub const RIGHT_SHOULDER: usize = 6;
    pub const LEFT_ELBOW: usize = 7;
    pub const RIGHT_ELBOW: usize = 8;
    pub const LEFT_WRIST: usize = 9;
    pub const RIGHT_WRIST: usize = 10;
    pub const LEFT_HIP: usize = 11;
    pub const RIGHT_HIP: usize = 12;
    pub const LEFT_KNEE: usize = 13;
    pub const RIGHT_KNEE: usize = 14;
    pub const LEFT_ANKLE: usize = 15;
    pub const RIGHT_ANKLE: usize = 16;
}

/// The COCO skeleton: pairs of keypoint indices joined by a limb (drawn on snapshots).
pub const SKELETON: [(usize, usize); 18] = {
    use kp::*;
    [
        (NOSE, LEFT_EYE),
        (NOSE, RIGHT_EYE),
        (LEFT_EYE, LEFT_EAR),
        (RIGHT_EYE, RIGHT_EAR),
        (LEFT_SHOULDER, RIGHT_SHOULDER),
        (LEFT_SHOULDER, LEFT_ELBOW),
        (LEFT_ELBOW, LEFT_WRIST),
        (RIGHT_SHOULDER, RIGHT_ELBOW),
        (RIGHT_ELBOW, RIGHT_WRIST),
        (LEFT_SHOULDER, LEFT_HIP),
        (RIGHT_SHOULDER, RIGHT_HIP),
        (LEFT_HIP, RIGHT_HIP),
        (LEFT_HIP, LEFT_KNEE),
        (LEFT_KNEE, LEFT_ANKLE),
        (RIGHT_HIP, RIGHT_KNEE),
        (RIGHT_KNEE, RIGHT_ANKLE),
        (LEFT_EAR, LEFT_SHOULDER),
        (RIGHT_EAR, RIGHT_SHOULDER),
    ]
};

/// All detections of one frame, from every model the camera runs.
#[derive(Debug, Clone)]
pub struct Detections {
    pub frame: Frame,
    pub objects: Vec<Detection>,
    /// Time spent in preprocessing + inference + decoding for this frame.
    pub infer_ms: f32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(&self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
    pub fn parse(s: &str) -> Option<Severity> {
        Some(match s {
            "info" => Severity::Info,
            "low" => Severity::Low,
            "medium" => Severity::Medium,
            "high" => Severity::High,
            "critical" => Severity::Critical,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventState {
    Active,
    Ended,
}

impl EventState {
    pub fn as_str(&self) -> &'static str {
        match self {
            EventState::Active => "active",
            EventState::Ended => "ended",
        }
    }
}

/// What a rule reports about one incident it tracks. `key` identifies the incident within
/// the rule (e.g. a track id later); the rule engine maps it to an event id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    Started,
    Updated,
    Ended,
}

/// A rule's output for one frame: an incident started, changed or ended.
#[derive(Debug, Clone)]
pub struct RuleOutput {
    pub key: u64,
    pub change: Change,
    pub kind: String,
    pub severity: Severity,
    pub at: OffsetDateTime,
    pub objects: Vec<Detection>,
    /// A better frame for the snapshot (drawn with `objects`), if the rule has one.
    pub snapshot: Option<Frame>,
    /// Rule-specific figures (e.g. `{"count": 7}` for `crowd`), stored as the event's
    /// `detail`; `None` leaves the stored detail unchanged. Build outputs with
    /// `rules::common::output` (+ `RuleOutput::with_detail`) so new fields get defaults.
    pub detail: Option<serde_json::Value>,
}

impl RuleOutput {
    /// Sets `detail` (a JSON object of rule-specific figures).
    pub fn with_detail(mut self, detail: serde_json::Value) -> RuleOutput {
        self.detail = Some(detail);
        self
    }
}

/// A stored incident, as served by the API.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    pub id: uuid::Uuid,
    /// Per-box, strictly increasing, never reused.
    pub seq: i64,
    pub camera_id: String,
    pub grid_cell: Option<String>,
    pub kind: String,
    pub severity: Severity,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub ended_at: Option<OffsetDateTime>,
    pub state: EventState,
    pub objects: Vec<Detection>,
    /// Path of the snapshot JPEG relative to the data dir, if one was written.
    pub snapshot: Option<String>,
    /// Id of the rule that raised it: `<kind>#<index>`, the index counting from 0 in the
    /// camera's `[[cameras.rules]]` list (e.g. `crowd#2`). `None` for events stored before
    /// schema version 3.
    #[serde(default)]
    pub rule: Option<String>,
    /// The zone the rule watches, if any.
    #[serde(default)]
    pub zone: Option<String>,
    /// The line the rule watches, if any.
    #[serde(default)]
    pub line: Option<String>,
    /// Rule-specific figures, a JSON object (e.g. `{"count": 7, "max_count": 9}`).
    #[serde(default)]
    pub detail: Option<serde_json::Value>,
    /// Review workflow: `new` → `acknowledged` → `resolved` | `false_alarm` (see [`Review`]).
    #[serde(default)]
    pub review: Review,
    /// Who made the last review transition (a username, or `token:<name>`).
    #[serde(default)]
    pub reviewed_by: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub reviewed_at: Option<OffsetDateTime>,
    /// The note of the last review transition.
    #[serde(default)]
    pub review_note: Option<String>,
}

/// Where an operator's review of an event stands. Transitions: `new` → `acknowledged`,
/// and `new` or `acknowledged` → `resolved` | `false_alarm`; the last two are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Review {
    #[default]
    New,
    Acknowledged,
    Resolved,
    FalseAlarm,
}

impl Review {
    pub const ALL: [Review; 4] =
        [Review::New, Review::Acknowledged, Review::Resolved, Review::FalseAlarm];

    pub fn as_str(self) -> &'static str {
        match self {
            Review::New => "new",
            Review::Acknowledged => "acknowledged",
            Review::Resolved => "resolved",
            Review::FalseAlarm => "false_alarm",
        }
    }

    pub fn parse(s: &str) -> Option<Review> {
        Review::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whether the workflow allows going from `self` to `to`.
    pub fn can_become(self, to: Review) -> bool {
        use Review::*;
        matches!(
            (self, to),
            (New, Acknowledged | Resolved | FalseAlarm) | (Acknowledged, Resolved | FalseAlarm)
        )
    }

    /// The states reachable from `self`.
    pub fn next(self) -> Vec<Review> {
        Review::ALL.into_iter().filter(|r| self.can_become(*r)).collect()
    }
}

/// The message from the rule engine to the store writer.
#[derive(Debug, Clone)]
pub struct EventChange {
    pub event_id: uuid::Uuid,
    pub change: Change,
    pub camera_id: String,
    pub grid_cell: Option<String>,
    pub kind: String,
    pub severity: Severity,
    pub at: OffsetDateTime,
    pub objects: Vec<Detection>,
    /// Frame to encode as the event's snapshot (boxes drawn from `objects`).
    pub snapshot: Option<Frame>,
    /// Rule id (`<kind>#<index>`), zone and line of the rule; written when the event starts.
    pub rule: Option<String>,
    pub zone: Option<String>,
    pub line: Option<String>,
    /// Rule-specific figures; `None` keeps the stored value.
    pub detail: Option<serde_json::Value>,
    /// When the frame that caused this change was captured (for latency metrics).
    pub caused_by: Instant,
}

impl EventChange {
    /// A change with no objects, snapshot, rule, zone, line, detail or grid cell (system
    /// events such as `storage_full`; tests). Set the other fields as needed.
    pub fn bare(
        event_id: uuid::Uuid,
        change: Change,
        camera_id: &str,
        kind: &str,
        severity: Severity,
        at: OffsetDateTime,
    ) -> Self {
        EventChange {
            event_id,
            change,
            camera_id: camera_id.into(),
            grid_cell: None,
            kind: kind.into(),
            severity,
            at,
            objects: vec![],
            snapshot: None,
            rule: None,
            zone: None,
            line: None,
            detail: None,
            caused_by: Instant::now(),
        }
    }
}

/// Lifecycle state of a track (see `track::Tracker`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackState {
    /// Not yet confirmed (fewer than `min_hits` matches); never reported, has no public id.
    Tentative,
    /// Confirmed and matched to a detection on this frame.
    Tracked,
    /// Confirmed but not matched on this frame; `bbox` is the motion model's prediction.
    Lost,
}

/// One tracked object of one camera, as reported after a frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Track {
    /// Per-camera id: assigned when the track is confirmed, increasing, never reused.
    pub id: u64,
    /// The track's majority class (the largest sum of detection scores over its matches,
    /// see `track`): a flickering detection class does not change it frame to frame.
    pub class_id: u32,
    pub class: String,
    /// Score of the last matched detection.
    pub score: f32,
    /// Filtered box (normalised 0–1); for a lost track, the predicted box.
    #[serde(rename = "box")]
    pub bbox: BBox,
    pub state: TrackState,
    /// Detections matched to this track so far.
    pub hits: u32,
    /// Time of the first detection of this object (before confirmation).
    #[serde(with = "time::serde::rfc3339")]
    pub first_seen: OffsetDateTime,
    /// Time of the last matched detection.
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen: OffsetDateTime,
    /// Velocity of the box centre, normalised units per second (x right, y down).
    pub velocity: (f32, f32),
    /// Ground speed in km/h, on cameras with a ground-plane calibration (`rules::ground`,
    /// set by the rule engine): `None` without one, for lost tracks, and until the track
    /// has about half a second of history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed_kmh: Option<f32>,
    /// Box of the object's first detection, at `first_seen` (while the track was still
    /// tentative): where the object was before the track was confirmed. `None` when not
    /// known (tracks given by fixtures).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<BBox>,
    /// The latest pose of the object from the camera's pose stage (`[cameras.pose]`,
    /// `analytics::pose`), with the time it was taken; kept while the track is lost. `None`
    /// without a pose stage or before the first crop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pose: Option<Pose>,
}

/// A body pose of one tracked object: a keypoints model's output on a crop of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pose {
    /// Capture time of the frame the crop came from.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The model's person score.
    pub score: f32,
    /// The 17 COCO keypoints ([`KEYPOINT_NAMES`] order), normalised to the frame.
    pub keypoints: Vec<Keypoint>,
}

/// The message from the tracker to the rules: a frame's detections plus the camera's tracks.
#[derive(Debug, Clone)]
pub struct Tracks {
    pub detections: Detections,
    pub tracks: Vec<Track>,
    /// People the fall scan saw fall (`analytics::fall_scan`; ids from its `ID_BASE`), for the
    /// `fall` and `person_down` rules; empty without a scan.
    pub fallen: Vec<Track>,
}

/// One counted line crossing (rules → store, upserted into 1-minute buckets).
#[derive(Debug, Clone, PartialEq)]
pub struct CountDelta {
    pub camera_id: String,
    pub line: String,
    pub class: String,
    /// `a_to_b` or `b_to_a` (see `geometry`).
    pub direction: CrossDir,
    /// When the anchor crossed (the capture time of the first frame past the line).
    pub at: OffsetDateTime,
    pub count: u32,
    /// Ground speed of the crossing vehicle in km/h (the mean when `count` > 1), on
    /// cameras with a ground-plane calibration once the track has a speed.
    pub speed_kmh: Option<f32>,
}

/// Zone occupancy of one completed (or, at shutdown, partial) 1-minute bucket: over the
/// camera's analysed frames in the bucket, the number of confirmed tracks of `class` whose
/// anchor was inside `zone` (rules → store, upserted; see `rules::occupancy`). `class` `*`
/// is all classes together; its `samples` is the number of frames analysed in the bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct OccupancyDelta {
    pub camera_id: String,
    pub zone: String,
    pub class: String,
    /// Start of the 1-minute bucket (UTC).
    pub bucket_start: OffsetDateTime,
    /// Frames sampled.
    pub samples: u64,
    /// Sum over those frames of the number of objects inside.
    pub sum: u64,
    /// Largest number inside on one frame.
    pub max: u32,
}

/// State of a camera's source (`health::CameraHealth::state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CameraState {
    /// Pipeline is being built or is waiting for its first frame.
    Connecting,
    /// Frames are arriving.
    Online,
    /// The source failed (see `last_error`); a reconnect is scheduled unless the camera ended.
    Offline,
    /// Disabled in the config.
    Disabled,
}

/// The message from camera health to the rules (`RuleEngine::health`): a camera's source state
/// at `now`, polled by the app's health watch. Rules about the source itself
/// (`camera_offline`) decide on these instead of frames.
#[derive(Debug, Clone)]
pub struct HealthTick {
    pub state: CameraState,
    /// When `state` last changed.
    pub since: OffsetDateTime,
    pub last_error: Option<String>,
    /// The camera's last frame, if it sent any (the snapshot of a source incident).
    pub latest: Option<Frame>,
    /// When the health was read.
    pub now: OffsetDateTime,
}
