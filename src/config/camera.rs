//! `[[cameras]]`: one camera, its source and analysis settings, and its recording
//! (`[cameras.record]`). Its rules, zones and lines are checked by `Config::validate`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::rules::{LineConfig, RuleConfig, ZoneConfig};

/// `[[cameras]]`. `id`, `url` and `models` are required, so this struct has no `Default`: its
/// optional keys take their defaults from the `default_*` functions below it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    /// `rtsp://…`, `file:///…`, a plain file path, or `v4l2:///dev/videoN`. With a
    /// `detect_url`, this is the camera's main stream, recorded as is and never decoded.
    pub url: String,
    /// The camera's sub-stream (`rtsp://…`), decoded for detection instead of `url` (which
    /// is then only recorded). Absent: one connection to `url` serves both.
    #[serde(default)]
    pub detect_url: Option<String>,
    /// Codec of the `detect_url` stream: "auto" (decodebin), "h264" or "h265" (the
    /// profile's decoders). Default "auto".
    #[serde(default = "default_codec")]
    pub detect_codec: String,
    /// Restart a file source at its end (simulates a live camera).
    #[serde(default, rename = "loop")]
    pub loop_file: bool,
    /// Pace file sources at their native frame rate like a live camera (default true).
    #[serde(default = "yes")]
    pub realtime: bool,
    /// RTSP stream codec of `url`: "auto" (decodebin), "h264" or "h265" (profile's
    /// decoders).
    #[serde(default = "default_codec")]
    pub codec: String,
    #[serde(default)]
    pub grid_cell: Option<String>,
    #[serde(default)]
    pub lat: Option<f64>,
    #[serde(default)]
    pub lon: Option<f64>,
    /// Frames per second handed to detection (0 = every decoded frame). Default 5.
    #[serde(default = "default_detect_fps")]
    pub detect_fps: f64,
    /// Width of analysed frames (scaled in the pipeline). Default 640.
    #[serde(default = "default_detect_width")]
    pub detect_width: u32,
    /// Height of analysed frames; default keeps the source aspect ratio.
    #[serde(default)]
    pub detect_height: Option<u32>,
    /// Names of entries in `[models]`, or `builtin-fire` (the built-in fire and smoke
    /// detector, `crate::fire`).
    pub models: Vec<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// No frame for this long while playing counts as a failure and triggers a reconnect.
    /// Default 10.
    #[serde(default = "default_stall")]
    pub stall_timeout_secs: f64,
    /// Reconnect backoff bounds. Default 1 …
    #[serde(default = "default_reconnect_min")]
    pub reconnect_min_secs: f64,
    /// … to 30.
    #[serde(default = "default_reconnect_max")]
    pub reconnect_max_secs: f64,
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// Multi-object tracker parameters (`[cameras.tracker]`); every field has a default.
    #[serde(default)]
    pub tracker: crate::track::TrackerConfig,
    /// Named polygons (`[[cameras.zones]]`), normalised 0–1 image coordinates.
    #[serde(default)]
    pub zones: Vec<ZoneConfig>,
    /// Named polylines (`[[cameras.lines]]`) with a direction (see `geometry`).
    #[serde(default)]
    pub lines: Vec<LineConfig>,
    /// Anchor point per class (`[cameras.anchors]`, class → anchor); default bottom_center.
    #[serde(default)]
    pub anchors: BTreeMap<String, crate::geometry::Anchor>,
    /// Ground-plane calibration (`[cameras.calibration]`): 4 image points and the matching
    /// ground points in metres; gives tracks a speed in km/h. Absent: no speeds.
    #[serde(default)]
    pub calibration: Option<crate::rules::CalibrationConfig>,
    /// Continuous recording and event clips (`[cameras.record]`); every field has a default.
    #[serde(default)]
    pub record: RecordConfig,
    /// Tiled detection for small, far objects (`[cameras.tiles]`); absent: off.
    #[serde(default)]
    pub tiles: Option<TilesConfig>,
    /// Local contrast equalisation of dark frames before detection
    /// (`[cameras.low_light_enhance]`); every field has a default (on).
    #[serde(default)]
    pub low_light_enhance: LowLightEnhanceConfig,
    /// Settings of the built-in fire and smoke detector (`[cameras.fire_detector]`), used
    /// when `models` lists `builtin-fire`; every field has a default.
    #[serde(default)]
    pub fire_detector: Option<crate::fire::FireDetectorConfig>,
    /// The pose stage (`[cameras.pose]`): a keypoints model on crops of person tracks;
    /// absent: off.
    #[serde(default)]
    pub pose: Option<PoseConfig>,
    /// The fall scan (`[cameras.fall_scan]`): a person detector on tiles of moving regions,
    /// for falls from height the tracker loses (docs/design/0053); absent: off.
    #[serde(default)]
    pub fall_scan: Option<FallScanConfig>,
    /// Motion-gated detection (`[cameras.motion_gate]`); every field has a default (on).
    #[serde(default)]
    pub motion_gate: super::MotionGateConfig,
    /// Masking of faces and plates in this camera's served stills (`[cameras.masking]`);
    /// every field has a default (on).
    #[serde(default)]
    pub masking: crate::config::CameraMaskingConfig,
}

fn yes() -> bool {
    true
}
fn default_codec() -> String {
    "auto".into()
}
fn default_detect_fps() -> f64 {
    5.0
}
fn default_detect_width() -> u32 {
    640
}
fn default_stall() -> f64 {
    10.0
}
fn default_reconnect_min() -> f64 {
    1.0
}
fn default_reconnect_max() -> f64 {
    30.0
}

/// `[cameras.record]`: continuous recording of one camera (see docs/storage.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordConfig {
    /// Record this camera continuously. Default true. File sources are recorded only when
    /// `realtime = true` (their timestamps must be wall-clock times).
    pub enabled: bool,
    /// Target segment length; segments split at the first keyframe after it. Default 10.
    pub segment_secs: f64,
    /// Continuous footage older than this is deleted. Default 7.
    pub max_age_days: f64,
    /// Minimum-retention floor: footage younger than this is never deleted for the disk
    /// budget (`storage.max_bytes` or the free-space floor); when the budget cannot hold
    /// it, recording stops with `storage_full` instead. 0 = no floor; at most
    /// `max_age_days`. Default 0.
    pub min_age_days: f64,
    /// Event clips start this long before the event. Default 5.
    pub pre_roll_secs: f64,
    /// … and end this long after it. Default 10.
    pub post_roll_secs: f64,
    /// Longest event clip (events that last longer are cut at the end). Default 300.
    pub max_clip_secs: f64,
    /// Bitrate of the one-time H.264 encode for sources that are not H.264/H.265 (USB
    /// cameras, MPEG-4 files). Passthrough sources are never re-encoded. Default 2000.
    pub encode_bitrate_kbps: u32,
}

impl Default for RecordConfig {
    fn default() -> Self {
        RecordConfig {
            enabled: true,
            segment_secs: 10.0,
            max_age_days: 7.0,
            min_age_days: 0.0,
            pre_roll_secs: 5.0,
            post_roll_secs: 10.0,
            max_clip_secs: 300.0,
            encode_bitrate_kbps: 2000,
        }
    }
}

impl RecordConfig {
    /// `at(field)` names the field and the camera.
    pub(crate) fn validate(&self, at: &dyn Fn(&str) -> String) -> Result<(), String> {
        if !(1.0..=3600.0).contains(&self.segment_secs) {
            return Err(format!("{}: must be between 1 and 3600", at("record.segment_secs")));
        }
        for (field, v) in
            [("max_age_days", self.max_age_days), ("max_clip_secs", self.max_clip_secs)]
        {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("{}: must be > 0", at(&format!("record.{field}"))));
            }
        }
        if !(self.min_age_days.is_finite()
            && self.min_age_days >= 0.0
            && self.min_age_days <= self.max_age_days)
        {
            return Err(format!(
                "{}: must be between 0 and record.max_age_days ({}), got {}",
                at("record.min_age_days"),
                self.max_age_days,
                self.min_age_days
            ));
        }
        for (field, v) in
            [("pre_roll_secs", self.pre_roll_secs), ("post_roll_secs", self.post_roll_secs)]
        {
            if !(0.0..=600.0).contains(&v) {
                return Err(format!(
                    "{}: must be between 0 and 600",
                    at(&format!("record.{field}"))
                ));
            }
        }
        if !(100..=100_000).contains(&self.encode_bitrate_kbps) {
            return Err(format!(
                "{}: must be between 100 and 100000",
                at("record.encode_bitrate_kbps")
            ));
        }
        Ok(())
    }
}

/// `[cameras.tiles]`: on selected frames the camera's models also run on `grid` × `grid`
/// overlapping tiles of the frame (each scaled up to the model's input), and the boxes are
/// merged with the full frame's (`analytics::tiles`). Small, far objects gain pixels; the
/// cost is `grid²` extra inferences per tiled frame.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TilesConfig {
    /// Tiles per side (2 = 2×2). Default 2.
    pub grid: u32,
    /// Overlap of neighbouring tiles, a fraction of the tile's width (height). Default 0.2.
    pub overlap: f64,
    /// Tiles run on one analysed frame per this many seconds of frame time; the other frames
    /// are detected whole. 0 = every analysed frame. Default 1.0.
    pub every_secs: f64,
}

impl Default for TilesConfig {
    fn default() -> Self {
        TilesConfig { grid: 2, overlap: 0.2, every_secs: 1.0 }
    }
}

impl TilesConfig {
    /// `at(field)` names the field and the camera.
    pub(crate) fn validate(&self, at: &dyn Fn(&str) -> String) -> Result<(), String> {
        if !(2..=4).contains(&self.grid) {
            return Err(format!("{}: must be 2, 3 or 4", at("tiles.grid")));
        }
        if !(0.0..=0.5).contains(&self.overlap) {
            return Err(format!("{}: must be between 0 and 0.5", at("tiles.overlap")));
        }
        if !(0.0..=3600.0).contains(&self.every_secs) {
            return Err(format!("{}: must be between 0 and 3600", at("tiles.every_secs")));
        }
        Ok(())
    }
}

/// `[cameras.low_light_enhance]`: on a dark frame (median luma below `max_median_luma`) the
/// camera's models see the frame with its luma equalised locally (CLAHE: `grid` × `grid`
/// tiles, histogram clip `clip_limit`), so faint people gain contrast
/// (`analytics::enhance`, docs/design/0035). The frame itself (snapshots, the tracker's
/// low-light test, the fire detector, the pose stage) is not changed. Lit frames, including
/// grey day frames, are never enhanced.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LowLightEnhanceConfig {
    /// Enhance dark frames. Default true.
    pub enabled: bool,
    /// A frame whose median luma (0–255, read on about 4,000 pixels) is below this is dark.
    /// Default 50 (the tracker's low-light level, `analytics::LOW_LIGHT_LUMA`).
    pub max_median_luma: f32,
    /// CLAHE histogram clip limit (OpenCV's `clipLimit`; higher: more contrast and noise).
    /// Default 2.0.
    pub clip_limit: f64,
    /// CLAHE tiles per side. Default 8.
    pub grid: u32,
}

impl Default for LowLightEnhanceConfig {
    fn default() -> Self {
        LowLightEnhanceConfig { enabled: true, max_median_luma: 50.0, clip_limit: 2.0, grid: 8 }
    }
}

impl LowLightEnhanceConfig {
    /// `at(field)` names the field and the camera.
    pub(crate) fn validate(&self, at: &dyn Fn(&str) -> String) -> Result<(), String> {
        if !(0.0..=255.0).contains(&self.max_median_luma) {
            return Err(format!(
                "{}: must be between 0 and 255",
                at("low_light_enhance.max_median_luma")
            ));
        }
        if !(1.0..=40.0).contains(&self.clip_limit) {
            return Err(format!(
                "{}: must be between 1 and 40",
                at("low_light_enhance.clip_limit")
            ));
        }
        if !(1..=32).contains(&self.grid) {
            return Err(format!("{}: must be between 1 and 32", at("low_light_enhance.grid")));
        }
        Ok(())
    }
}

/// `[cameras.pose]`: which keypoints model runs on person crops, how often and where.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoseConfig {
    /// A model of `[models]` whose manifest has `[output] kind = "keypoints"`.
    pub model: String,
    /// A track is posed again at most once per this many seconds of frame time. Default 0.2.
    #[serde(default = "pose_every")]
    pub every_secs: f64,
    /// At most this many crops per analysed frame (the tracks posed longest ago first).
    /// Default 2.
    #[serde(default = "pose_max_crops")]
    pub max_crops: u32,
    /// The crop is the track's box grown by this fraction of its height on every side.
    /// Default 0.25.
    #[serde(default = "pose_grow")]
    pub grow: f32,
    /// A box wider than tall (in pixels: a person lying, or the detector's box of a part of
    /// a lying body, which flickers between head and shoulders, legs and the whole) is grown
    /// by this fraction of its width instead, so that the crop holds the whole body
    /// (docs/design/0044). Default 1.
    #[serde(default = "pose_wide_grow")]
    pub wide_grow: f32,
    /// Only tracks whose bottom centre is in one of these zones of the camera (empty: the
    /// whole frame). Default empty.
    #[serde(default)]
    pub zones: Vec<String>,
    /// The classes posed. Default `["person"]`.
    #[serde(default = "crate::rules::common::people")]
    pub classes: Vec<String>,
}

fn pose_every() -> f64 {
    0.2
}
fn pose_max_crops() -> u32 {
    2
}
fn pose_grow() -> f32 {
    0.25
}
fn pose_wide_grow() -> f32 {
    1.0
}

impl PoseConfig {
    /// `at(field)` names the field and the camera; `zones` are the camera's zone names and
    /// `models` the box's `[models]` names.
    pub(crate) fn validate(
        &self,
        at: &dyn Fn(&str) -> String,
        zones: &[&str],
        models: &dyn Fn(&str) -> bool,
    ) -> Result<(), String> {
        stage_refs(at, "pose", &self.model, &self.zones, zones, models)?;
        if !(self.every_secs.is_finite() && (0.0..=3600.0).contains(&self.every_secs)) {
            return Err(format!("{}: must be between 0 and 3600", at("pose.every_secs")));
        }
        if !(1..=16).contains(&self.max_crops) {
            return Err(format!("{}: must be between 1 and 16", at("pose.max_crops")));
        }
        if !(self.grow.is_finite() && (0.0..=1.0).contains(&self.grow)) {
            return Err(format!("{}: must be between 0 and 1", at("pose.grow")));
        }
        if !(self.wide_grow.is_finite() && (0.0..=2.0).contains(&self.wide_grow)) {
            return Err(format!("{}: must be between 0 and 2", at("pose.wide_grow")));
        }
        if self.classes.is_empty() {
            return Err(format!("{}: list at least one class", at("pose.classes")));
        }
        Ok(())
    }
}

/// `[cameras.fall_scan]` (docs/design/0053, `analytics::fall_scan`): MediaPipe's pose
/// detector on tiles of the frame where something moved, people followed from scan to scan by
/// their hip centre, and a `fall` when one comes down at least `min_drop_radii` body radii
/// within `fall_window_secs` and then lies still for `still_secs`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FallScanConfig {
    /// A model of `[models]` whose manifest has `[output] kind = "blazepose"`.
    pub model: String,
    /// Scans per second of frame time (at most the camera's analysed rate). Default 5.
    #[serde(default = "d_scan_fps")]
    pub scan_fps: f64,
    /// People the detector scores under this are not used. Default 0.5 (MediaPipe's own).
    #[serde(default = "d_scan_score")]
    pub min_score: f32,
    /// The hip centre must come down at least this many body radii (the model's full-body
    /// circle: about half a person's height plus a margin, so ~1 m). Default 2: about 2 m,
    /// the height from which GB/T 3608 counts work as work at height.
    #[serde(default = "d_drop_radii")]
    pub min_drop_radii: f64,
    /// ... within this many seconds (a free fall of 11 m takes 1.5 s). Default 1.5.
    #[serde(default = "d_fall_window")]
    pub fall_window_secs: f64,
    /// ... and then stay within one body radius of where it landed, lying, this long.
    /// Default 2.
    #[serde(default = "d_still")]
    pub still_secs: f64,
    /// Lying: the body's axis (hip centre → the model's full-body point) at least this many
    /// degrees from upright. Default 60.
    #[serde(default = "d_lying_axis")]
    pub lying_deg: f64,
    /// Only tiles that overlap one of these zones of the camera (their bounding boxes) are
    /// scanned: the places people can fall from and to (empty: the whole frame). Default
    /// empty.
    #[serde(default)]
    pub zones: Vec<String>,
}

fn d_scan_fps() -> f64 {
    5.0
}
fn d_scan_score() -> f32 {
    0.5
}
fn d_drop_radii() -> f64 {
    2.0
}
fn d_fall_window() -> f64 {
    1.5
}
fn d_still() -> f64 {
    2.0
}
fn d_lying_axis() -> f64 {
    60.0
}

impl FallScanConfig {
    /// `at(field)` names the field and the camera; `zones` are the camera's zone names and
    /// `models` tells the box's `[models]` names.
    pub(crate) fn validate(
        &self,
        at: &dyn Fn(&str) -> String,
        zones: &[&str],
        models: &dyn Fn(&str) -> bool,
    ) -> Result<(), String> {
        stage_refs(at, "fall_scan", &self.model, &self.zones, zones, models)?;
        let range = |name: &str, v: f64, lo: f64, hi: f64| {
            if v.is_finite() && v > lo && v <= hi {
                Ok(())
            } else {
                Err(format!("{}: must be > {lo} and ≤ {hi}, got {v}", at(name)))
            }
        };
        range("fall_scan.scan_fps", self.scan_fps, 0.0, 60.0)?;
        range("fall_scan.min_score", self.min_score as f64, 0.0, 1.0)?;
        range("fall_scan.min_drop_radii", self.min_drop_radii, 0.0, 100.0)?;
        range("fall_scan.fall_window_secs", self.fall_window_secs, 0.0, 10.0)?;
        range("fall_scan.still_secs", self.still_secs, 0.0, 60.0)?;
        range("fall_scan.lying_deg", self.lying_deg, 0.0, 180.0)
    }
}

/// Checks a stage's (`[cameras.<stage>]`) `model` against the box's `[models]` names and
/// its `zones` against the camera's zone names `known`.
fn stage_refs(
    at: &dyn Fn(&str) -> String,
    stage: &str,
    model: &str,
    zones: &[String],
    known: &[&str],
    models: &dyn Fn(&str) -> bool,
) -> Result<(), String> {
    if !models(model) {
        let field = at(&format!("{stage}.model"));
        return Err(format!("{field}: unknown model `{model}` (not in [models])"));
    }
    for (i, z) in zones.iter().enumerate() {
        if !known.contains(&z.as_str()) {
            return Err(format!(
                "{}: no zone `{z}` in the camera (zones: {})",
                at(&format!("{stage}.zones[{i}]")),
                known.join(", ")
            ));
        }
    }
    Ok(())
}

/// How a camera URL is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Rtsp(String),
    File(PathBuf),
    V4l2(PathBuf),
}

impl CameraConfig {
    /// Parses `url` into a source. Relative file paths are resolved against `base`.
    pub fn source(&self, base: &Path) -> Result<Source, String> {
        parse_source(&self.url, base)
    }

    /// The source detection decodes: `detect_url` when set, else `url`.
    pub fn detect_source(&self, base: &Path) -> Result<Source, String> {
        match &self.detect_url {
            Some(u) => parse_source(u, base),
            None => self.source(base),
        }
    }

    /// The codec of the stream detection decodes.
    pub fn detect_stream_codec(&self) -> &str {
        if self.detect_url.is_some() {
            &self.detect_codec
        } else {
            &self.codec
        }
    }

    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.id)
    }

    /// Whether this camera is analysed without loss: an unpaced file (`realtime = false`).
    /// Its pipeline does not drop (the appsink blocks) and its frame-queue slot waits for the
    /// workers, so every frame at `detect_fps` of video time is analysed, stamped with its
    /// video time. Live cameras (RTSP, USB) and paced files drop frames when inference is
    /// behind. The one place this is decided (`app` builds the pipeline and the queue from it).
    pub fn lossless(&self) -> bool {
        !self.realtime && matches!(self.source(Path::new("/")), Ok(Source::File(_)))
    }

    /// True when this camera's stream is recorded: enabled, `record.enabled`, and for file
    /// sources only when paced in real time (so segment times are wall-clock times).
    pub fn records(&self, base: &Path) -> bool {
        self.enabled
            && self.record.enabled
            && match self.source(base) {
                Ok(Source::File(_)) => !self.lossless(),
                Ok(_) => true,
                Err(_) => false,
            }
    }

    /// The camera's own keys (not its id, which `Config::validate` checks against the other
    /// cameras, nor its geometry, rules and recording). `at(field)` names the field and the
    /// camera; `models` are the names in `[models]`.
    pub(crate) fn validate<M>(
        &self,
        at: &dyn Fn(&str) -> String,
        base_dir: &Path,
        models: &BTreeMap<String, M>,
    ) -> Result<(), String> {
        let main = self.source(base_dir).map_err(|m| format!("{}: {m}", at("url")))?;
        for (field, codec) in [("codec", &self.codec), ("detect_codec", &self.detect_codec)] {
            if !matches!(codec.as_str(), "auto" | "h264" | "h265") {
                return Err(format!("{}: must be \"auto\", \"h264\" or \"h265\"", at(field)));
            }
        }
        if let Some(d) = &self.detect_url {
            let scheme = d.trim().split_once("://").map(|(s, _)| s.to_ascii_lowercase());
            let rtsp = matches!(scheme.as_deref(), Some("rtsp" | "rtsps"));
            if let (Source::Rtsp(_), false, Some(s)) = (&main, rtsp, &scheme) {
                return Err(format!(
                    "{}: must be an rtsp:// or rtsps:// URL (the camera's sub-stream), like `url`; \
                     scheme `{s}`",
                    at("detect_url")
                ));
            }
            let detect =
                parse_source(d, base_dir).map_err(|m| format!("{}: {m}", at("detect_url")))?;
            match (&main, &detect) {
                (Source::Rtsp(_), Source::Rtsp(_)) | (Source::File(_), Source::File(_)) => {}
                (Source::Rtsp(_), _) => {
                    return Err(format!(
                    "{}: must be an rtsp:// or rtsps:// URL (the camera's sub-stream), like `url`",
                    at("detect_url")
                ))
                }
                (Source::File(_), _) => {
                    return Err(format!(
                        "{}: beside a file `url` (tests, benchmarks), must be a file too",
                        at("detect_url")
                    ))
                }
                (Source::V4l2(_), _) => {
                    return Err(format!(
                        "{}: a USB camera has one stream; needs an RTSP `url`",
                        at("detect_url")
                    ))
                }
            }
            // Compared as parsed URLs (blanks around them do not count).
            let same = match (&detect, &main) {
                (Source::Rtsp(a), Source::Rtsp(b)) => {
                    url::Url::parse(a).ok() == url::Url::parse(b).ok()
                }
                (a, b) => a == b,
            };
            if same {
                return Err(format!(
                    "{}: is the same stream as `url`; leave it out to detect on `url`",
                    at("detect_url")
                ));
            }
        } else if self.detect_codec != "auto" {
            return Err(format!("{}: set, but the camera has no `detect_url`", at("detect_codec")));
        }
        if !(self.detect_fps >= 0.0 && self.detect_fps <= 120.0) {
            return Err(format!("{}: must be between 0 and 120", at("detect_fps")));
        }
        if !(32..=4096).contains(&self.detect_width) {
            return Err(format!("{}: must be between 32 and 4096", at("detect_width")));
        }
        if let Some(h) = self.detect_height {
            if !(32..=4096).contains(&h) {
                return Err(format!("{}: must be between 32 and 4096", at("detect_height")));
            }
        }
        if let Some(lat) = self.lat {
            if !(-90.0..=90.0).contains(&lat) {
                return Err(format!("{}: must be between -90 and 90", at("lat")));
            }
        }
        if let Some(lon) = self.lon {
            if !(-180.0..=180.0).contains(&lon) {
                return Err(format!("{}: must be between -180 and 180", at("lon")));
            }
        }
        if self.stall_timeout_secs.is_nan() || self.stall_timeout_secs <= 0.0 {
            return Err(format!("{}: must be > 0", at("stall_timeout_secs")));
        }
        if !(self.reconnect_min_secs > 0.0 && self.reconnect_max_secs >= self.reconnect_min_secs) {
            return Err(format!(
                "{}: need 0 < reconnect_min_secs ≤ reconnect_max_secs",
                at("reconnect_min_secs")
            ));
        }
        self.tracker.validate().map_err(|m| format!("{}: {m}", at("tracker")))?;
        if let Some(t) = &self.tiles {
            t.validate(at)?;
        }
        self.low_light_enhance.validate(at)?;
        self.motion_gate.validate(at)?;
        let zones: Vec<&str> = self.zones.iter().map(|z| z.name.as_str()).collect();
        if let Some(p) = &self.pose {
            p.validate(at, &zones, &|m| models.contains_key(m))?;
        }
        if let Some(f) = &self.fall_scan {
            f.validate(at, &zones, &|m| models.contains_key(m))?;
        }
        if self.models.is_empty() && self.enabled {
            return Err(format!("{}: list at least one model", at("models")));
        }
        let builtin = self.models.iter().any(|m| m == crate::fire::BUILTIN_FIRE);
        if let Some(f) = &self.fire_detector {
            f.validate()
                .map_err(|(field, m)| format!("{}: {m}", at(&format!("fire_detector.{field}"))))?;
            if !builtin {
                return Err(format!(
                    "{}: set, but `models` does not list `{}`",
                    at("fire_detector"),
                    crate::fire::BUILTIN_FIRE
                ));
            }
            if f.verify_models && !self.models.iter().any(|m| m != crate::fire::BUILTIN_FIRE) {
                return Err(format!(
                    "{}: no model to verify (`models` lists only `{}`)",
                    at("fire_detector.verify_models"),
                    crate::fire::BUILTIN_FIRE
                ));
            }
        }
        for (j, m) in self.models.iter().enumerate() {
            if m == crate::fire::BUILTIN_FIRE {
                if self.models[..j].contains(m) {
                    return Err(format!("{}: `{m}` is listed twice", at(&format!("models[{j}]"))));
                }
                continue;
            }
            if !models.contains_key(m) {
                return Err(format!(
                    "{}: unknown model `{m}` (not in [models])",
                    at(&format!("models[{j}]"))
                ));
            }
        }
        Ok(())
    }
}

/// Parses a camera URL into a source. Relative file paths are resolved against `base`.
fn parse_source(text: &str, base: &Path) -> Result<Source, String> {
    let u = text.trim();
    if u.is_empty() {
        return Err("is empty".into());
    }
    if let Some((scheme, rest)) = u.split_once("://") {
        match scheme.to_ascii_lowercase().as_str() {
            "rtsp" | "rtsps" => {
                url::Url::parse(u).map_err(|e| format!("`{u}` is not a valid RTSP URL: {e}"))?;
                Ok(Source::Rtsp(u.to_string()))
            }
            "file" => {
                let p = url::Url::parse(u)
                    .ok()
                    .and_then(|x| x.to_file_path().ok())
                    .unwrap_or_else(|| PathBuf::from(rest));
                Ok(Source::File(p))
            }
            "v4l2" => Ok(Source::V4l2(PathBuf::from(rest))),
            other => Err(format!(
                "unsupported URL scheme `{other}` in `{u}` (use rtsp://, file://, a file path or v4l2:///dev/videoN)"
            )),
        }
    } else if u.starts_with("/dev/video") {
        Ok(Source::V4l2(PathBuf::from(u)))
    } else {
        let p = PathBuf::from(u);
        Ok(Source::File(if p.is_absolute() { p } else { base.join(p) }))
    }
}

impl<'a> From<&'a CameraConfig> for crate::rules::RuleSetup<'a> {
    fn from(c: &'a CameraConfig) -> Self {
        crate::rules::RuleSetup {
            camera_id: &c.id,
            grid_cell: c.grid_cell.as_deref(),
            rules: &c.rules,
            zones: &c.zones,
            lines: &c.lines,
            anchors: &c.anchors,
            calibration: c.calibration.as_ref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, LowLightEnhanceConfig, TilesConfig};

    fn parse(tiles: &str) -> Result<Config, String> {
        Config::parse(
            &format!(
                "box_id='b'\ndata_dir='/tmp'\n[models]\n[[cameras]]\nid='gate'\nurl='x.mp4'\n\
                 models=[]\nenabled=false\n{tiles}"
            ),
            std::path::Path::new("/"),
        )
    }

    #[test]
    fn low_light_enhance_is_on_by_default_and_validated() {
        let d = LowLightEnhanceConfig::default();
        assert_eq!(parse("").unwrap().cameras[0].low_light_enhance, d);
        assert!(d.enabled && d.max_median_luma == 50.0 && d.clip_limit == 2.0 && d.grid == 8);
        let c = parse("[cameras.low_light_enhance]\nenabled=false\n").unwrap();
        assert!(!c.cameras[0].low_light_enhance.enabled);
        let c = parse("[cameras.low_light_enhance]\nclip_limit=3.0\ngrid=4\n").unwrap();
        assert_eq!(c.cameras[0].low_light_enhance.grid, 4);
        for (bad, field) in [
            ("max_median_luma=-1", "low_light_enhance.max_median_luma"),
            ("max_median_luma=256", "low_light_enhance.max_median_luma"),
            ("max_median_luma=nan", "low_light_enhance.max_median_luma"),
            ("clip_limit=0.5", "low_light_enhance.clip_limit"),
            ("clip_limit=nan", "low_light_enhance.clip_limit"),
            ("grid=0", "low_light_enhance.grid"),
            ("grid=33", "low_light_enhance.grid"),
        ] {
            let e = parse(&format!("[cameras.low_light_enhance]\n{bad}\n")).unwrap_err();
            assert!(e.contains(field) && e.contains("gate"), "{bad}: {e}");
        }
        let e = parse("[cameras.low_light_enhance]\ngamma=2\n").unwrap_err();
        assert!(e.contains("gamma"), "{e}");
    }

    #[test]
    fn tiles_are_optional_defaulted_and_validated() {
        assert_eq!(parse("").unwrap().cameras[0].tiles, None);
        let t = parse("[cameras.tiles]\n").unwrap().cameras[0].tiles.clone();
        assert_eq!(t, Some(TilesConfig { grid: 2, overlap: 0.2, every_secs: 1.0 }));
        let t = parse("[cameras.tiles]\ngrid=3\noverlap=0.25\nevery_secs=0\n").unwrap();
        assert_eq!(t.cameras[0].tiles.as_ref().map(|t| t.grid), Some(3));
        for (bad, field) in [
            ("grid=1", "tiles.grid"),
            ("grid=5", "tiles.grid"),
            ("overlap=0.6", "tiles.overlap"),
            ("overlap=-0.1", "tiles.overlap"),
            ("every_secs=-1", "tiles.every_secs"),
            ("every_secs=nan", "tiles.every_secs"),
        ] {
            let e = parse(&format!("[cameras.tiles]\n{bad}\n")).unwrap_err();
            assert!(e.contains(field) && e.contains("gate"), "{bad}: {e}");
        }
        let e = parse("[cameras.tiles]\nsize=2\n").unwrap_err();
        assert!(e.contains("size"), "{e}");
    }

    #[test]
    fn pose_is_optional_defaulted_and_validated() {
        let with = |pose: &str| {
            Config::parse(
                &format!(
                    "box_id='b'\ndata_dir='/tmp'\n[models]\npose='{}/models/movenet-multipose-lightning-256/model.toml'\n[[cameras]]\n\
                     id='gate'\nurl='x.mp4'\nmodels=[]\nenabled=false\n[[cameras.zones]]\n\
                     name='yard'\npoints=[[0,0],[1,0],[1,1]]\n[cameras.pose]\n{pose}\n",
                    env!("CARGO_MANIFEST_DIR")
                ),
                std::path::Path::new("/"),
            )
        };
        assert_eq!(parse("").unwrap().cameras[0].pose, None);
        let p = with("model='pose'").unwrap().cameras[0].pose.clone().unwrap();
        assert_eq!((p.every_secs, p.max_crops, p.grow, p.wide_grow), (0.2, 2, 0.25, 1.0));
        assert!(p.zones.is_empty() && p.classes == ["person"]);
        assert!(with("model='pose'\nzones=['yard']").is_ok());
        for (bad, field) in [
            ("model='nope'", "pose.model"),
            ("model='pose'\nzones=['gate']", "pose.zones[0]"),
            ("model='pose'\nevery_secs=-1", "pose.every_secs"),
            ("model='pose'\nmax_crops=0", "pose.max_crops"),
            ("model='pose'\ngrow=2", "pose.grow"),
            ("model='pose'\nwide_grow=3", "pose.wide_grow"),
            ("model='pose'\nclasses=[]", "pose.classes"),
            ("model='pose'\nsize=2", "size"),
        ] {
            let e = with(bad).unwrap_err();
            assert!(e.contains(field) && e.contains("gate"), "{bad}: {e}");
        }
    }

    #[test]
    fn fall_scan_is_optional_defaulted_and_validated() {
        let with = |scan: &str| {
            Config::parse(
                &format!(
                    "box_id='b'\ndata_dir='/tmp'\n[models]\nbp='{}/models/blazepose-detector-224/model.toml'\n[[cameras]]\n\
                     id='gate'\nurl='x.mp4'\nmodels=[]\nenabled=false\n[[cameras.zones]]\n\
                     name='deck'\npoints=[[0,0],[1,0],[1,1]]\n[cameras.fall_scan]\n{scan}\n",
                    env!("CARGO_MANIFEST_DIR")
                ),
                std::path::Path::new("/"),
            )
        };
        assert_eq!(parse("").unwrap().cameras[0].fall_scan, None);
        let f = with("model='bp'").unwrap().cameras[0].fall_scan.clone().unwrap();
        assert_eq!((f.scan_fps, f.min_score, f.min_drop_radii), (5.0, 0.5, 2.0));
        assert_eq!((f.fall_window_secs, f.still_secs, f.lying_deg), (1.5, 2.0, 60.0));
        assert!(f.zones.is_empty());
        assert!(with("model='bp'\nzones=['deck']").is_ok());
        for (bad, field) in [
            ("model='nope'", "fall_scan.model"),
            ("model='bp'\nscan_fps=0", "fall_scan.scan_fps"),
            ("model='bp'\nmin_score=1.5", "fall_scan.min_score"),
            ("model='bp'\nmin_drop_radii=-1", "fall_scan.min_drop_radii"),
            ("model='bp'\nfall_window_secs=nan", "fall_scan.fall_window_secs"),
            ("model='bp'\nstill_secs=0", "fall_scan.still_secs"),
            ("model='bp'\nlying_deg=200", "fall_scan.lying_deg"),
            ("model='bp'\nzones=['x']", "fall_scan.zones[0]"),
            ("model='bp'\nsize=2", "size"),
        ] {
            let e = with(bad).unwrap_err();
            assert!(e.contains(field) && e.contains("gate"), "{bad}: {e}");
        }
    }

    #[test]
    fn calibration_is_optional_and_validated_naming_field_and_camera() {
        assert_eq!(parse("").unwrap().cameras[0].calibration, None);
        let ok = "[cameras.calibration]\nimage_points = [[0.45, 0.4], [0.55, 0.4], [0.7, 0.9], \
                  [0.3, 0.9]]\nground_points_m = [[0, 30], [3.5, 30], [3.5, 0], [0, 0]]\n";
        let c = parse(ok).unwrap().cameras[0].calibration.clone().unwrap();
        assert_eq!(c.speed_window_secs, 1.0);
        for (bad, field, msg) in [
            ("[[0.45, 0.4], [0.55, 0.4], [0.7, 0.9]]", "calibration.image_points", "exactly 4"),
            (
                "[[0.1, 0.4], [0.5, 0.4], [0.9, 0.4], [0.3, 0.9]]",
                "calibration.image_points",
                "one line",
            ),
            (
                "[[0.45, 0.4], [0.55, 0.4], [1.7, 0.9], [0.3, 0.9]]",
                "calibration.image_points",
                "outside",
            ),
        ] {
            let e =
                parse(&ok.replacen("[[0.45, 0.4], [0.55, 0.4], [0.7, 0.9], [0.3, 0.9]]", bad, 1))
                    .unwrap_err();
            assert!(e.contains(&format!("cameras[0].{field}`")) && e.contains("gate"), "{e}");
            assert!(e.contains(msg), "{e}");
        }
        let e = parse(&ok.replace("[0, 0]]", "[3.5, 60]]")).unwrap_err();
        assert!(e.contains("calibration.ground_points_m") && e.contains("one line"), "{e}");
        let e = parse(&format!("{ok}height_m = 3\n")).unwrap_err();
        assert!(e.contains("height_m"), "{e}");
        // Rules in km/h need the calibration.
        let zone = "[[cameras.zones]]\nname='road'\npoints=[[0,0.5],[1,0.5],[1,1],[0,1]]\n";
        let speed = "[[cameras.rules]]\nkind='speed'\nzone='road'\nlimit_kmh=50\n";
        assert!(parse(&format!("{ok}{zone}{speed}")).is_ok());
        let e = parse(&format!("{zone}{speed}")).unwrap_err();
        assert!(e.contains("cameras[0].rules[0].limit_kmh`") && e.contains("gate"), "{e}");
        assert!(e.contains("calibration"), "{e}");
        let jam = "[[cameras.rules]]\nkind='congestion'\nzone='road'\nmax_speed_kmh=10\n";
        assert!(parse(&format!("{ok}{zone}{jam}")).is_ok());
        let e = parse(&format!("{zone}{jam}")).unwrap_err();
        assert!(e.contains("rules[0].max_speed_kmh`") && e.contains("calibration"), "{e}");
        let both = format!("{jam}max_speed_heights=0.5\n");
        let e = parse(&format!("{ok}{zone}{both}")).unwrap_err();
        assert!(e.contains("rules[0].max_speed_kmh`") && e.contains("not both"), "{e}");
        // Without km/h, congestion needs no calibration.
        assert!(
            parse(&format!("{zone}{}", jam.replace("max_speed_kmh", "max_speed_heights"))).is_ok()
        );
    }

    fn parse_streams(keys: &str) -> Result<Config, String> {
        Config::parse(
            &format!(
                "box_id='b'\ndata_dir='/tmp'\n[models]\n[[cameras]]\nid='gate'\nmodels=[]\n\
                 enabled=false\n{keys}\n"
            ),
            std::path::Path::new("/"),
        )
    }

    #[test]
    fn detect_url_is_a_second_rtsp_stream_validated_naming_field_and_camera() {
        let main = "url='rtsp://cam.local/main'";
        let c = parse_streams(main).unwrap();
        assert_eq!(
            (c.cameras[0].detect_url.as_deref(), c.cameras[0].detect_codec.as_str()),
            (None, "auto")
        );
        let c = parse_streams(&format!(
            "{main}\ndetect_url='rtsp://cam.local/sub'\ndetect_codec='h264'"
        ))
        .unwrap();
        let cam = &c.cameras[0];
        assert_eq!(cam.detect_stream_codec(), "h264");
        // Two files (tests, benchmarks): a paced main file recorded, a sub file decoded.
        let files = parse_streams("url='main.mp4'\ndetect_url='file:///v/sub.mp4'").unwrap();
        assert_eq!(
            files.cameras[0].detect_source(std::path::Path::new("/")).unwrap(),
            crate::config::Source::File("/v/sub.mp4".into())
        );
        assert_eq!(
            cam.detect_source(std::path::Path::new("/")).unwrap(),
            crate::config::Source::Rtsp("rtsp://cam.local/sub".into())
        );
        for (keys, field, msg) in [
            (format!("{main}\ndetect_url='rtsp://cam.local/main'"), "detect_url", "same stream"),
            (format!("{main}\ndetect_url=' rtsp://cam.local/main '"), "detect_url", "same stream"),
            (format!("{main}\ndetect_url='http://cam.local/sub'"), "detect_url", "scheme `http`"),
            (format!("{main}\ndetect_url='sub.mp4'"), "detect_url", "rtsp:// or rtsps://"),
            (format!("{main}\ndetect_url=''"), "detect_url", "empty"),
            (format!("{main}\ndetect_url='rtsp://[::1/sub'"), "detect_url", "not a valid RTSP URL"),
            (
                "url='main.mp4'\ndetect_url='rtsp://cam.local/sub'".into(),
                "detect_url",
                "a file too",
            ),
            (
                format!("{main}\ndetect_url='rtsp://cam.local/sub'\ndetect_codec='vp8'"),
                "detect_codec",
                "h265",
            ),
            (format!("{main}\ndetect_codec='h264'"), "detect_codec", "no `detect_url`"),
            ("url='main.mp4'\ndetect_url='main.mp4'".into(), "detect_url", "same stream"),
            ("url='/dev/video0'\ndetect_url='rtsp://cam.local/sub'".into(), "detect_url", "USB"),
        ] {
            let e = parse_streams(&keys).unwrap_err();
            assert!(
                e.contains(&format!("cameras[0].{field}`"))
                    && e.contains("gate")
                    && e.contains(msg),
                "{keys}: {e}"
            );
        }
    }

    fn parse_fire(models: &str, block: &str) -> Result<Config, String> {
        Config::parse(
            &format!(
                "box_id='b'\ndata_dir='/tmp'\n[models]\n[[cameras]]\nid='yard'\nurl='x.mp4'\n\
                 models={models}\n{block}"
            ),
            std::path::Path::new("/"),
        )
    }

    #[test]
    fn builtin_fire_is_a_model_name_with_a_validated_block() {
        let c = parse_fire("['builtin-fire']", "").unwrap();
        assert_eq!(c.cameras[0].models, vec!["builtin-fire".to_string()]);
        assert_eq!(c.cameras[0].fire_detector, None);
        let c = parse_fire(
            "['builtin-fire']",
            "[cameras.fire_detector]\nnight_mode='on'\nmasks=[[[0,0],[1,0],[1,0.2]]]\n",
        )
        .unwrap();
        let f = c.cameras[0].fire_detector.clone().unwrap();
        assert_eq!(f.night_mode, crate::fire::NightMode::On);
        assert_eq!(f.analysis_width_px, 160);
        for (block, field) in [
            ("masks=[[[0,0],[1.2,0.5],[0,1]]]", "fire_detector.masks[0][1]"),
            ("masks=[[[0,0],[0.5,-0.1],[0,1]]]", "fire_detector.masks[0][1]"),
            ("masks=[[[0,0],[1,1]]]", "fire_detector.masks[0]"),
            ("analysis_width_px=10", "fire_detector.analysis_width_px"),
            ("fire_flicker_min_hz=-1", "fire_detector.fire_flicker_min_hz"),
            ("fire_core_chroma_min_levels=300", "fire_detector.fire_core_chroma_min_levels"),
            ("fire_window_secs=nan", "fire_detector.fire_window_secs"),
            ("smoke_confirm_ratio=0", "fire_detector.smoke_confirm_ratio"),
            ("global_change_fraction=0", "fire_detector.global_change_fraction"),
            ("fire=false\nsmoke=false", "fire_detector.fire"),
            ("verify_models=true", "fire_detector.verify_models"),
            ("report_regions=false", "fire_detector.report_regions"),
        ] {
            let e = parse_fire("['builtin-fire']", &format!("[cameras.fire_detector]\n{block}\n"))
                .unwrap_err();
            assert!(e.contains(field) && e.contains("yard"), "{block}: {e}");
        }
        let e =
            parse_fire("['builtin-fire']", "[cameras.fire_detector]\nflicker_hz=3\n").unwrap_err();
        assert!(e.contains("flicker_hz") && e.contains("yard"), "{e}");
        let e = parse_fire("['builtin-fire']", "[cameras.fire_detector]\nnight_mode='dusk'\n")
            .unwrap_err();
        assert!(e.contains("night_mode"), "{e}");
        // The block without the detector, the name twice, and the name taken in [models].
        let e = parse_fire("[]\nenabled=false", "[cameras.fire_detector]\n").unwrap_err();
        assert!(e.contains("fire_detector") && e.contains("builtin-fire"), "{e}");
        let e = parse_fire("['builtin-fire','builtin-fire']", "").unwrap_err();
        assert!(e.contains("models[1]") && e.contains("yard"), "{e}");
        let e = Config::parse(
            "box_id='b'\ndata_dir='/tmp'\n[models]\nbuiltin-fire='m.toml'\n",
            std::path::Path::new("/"),
        )
        .unwrap_err();
        assert!(e.contains("models.builtin-fire") && e.contains("reserved"), "{e}");
    }
}
