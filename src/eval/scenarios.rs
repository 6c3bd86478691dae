//! `gridwatch eval scenarios`: labelled clips run through the real frame path, scored against
//! hand counts per line × direction (× class) and expected events with time windows.
//!
//! A manifest (TOML, `deny_unknown_fields`) lists scenarios. Each names a clip (relative to
//! the manifest), a camera snippet (the keys of a `[[cameras]]` block: lines, zones, rules,
//! tracker, detect_fps, detect_width, models, …) that is validated by [`Config::parse`]
//! exactly like a box config, its expected counts and its expected events:
//!
//! ```toml
//! [models]                      # optional; default: the bundled NanoDet-g 416
//! default = "../../models/nanodet-g-coco-416-int8/model.toml"
//!
//! [[scenarios]]
//! name = "highway"
//! clip = "../../../shared/media/traffic/highway.mp4"
//! max_secs = 20.0               # optional: analyse only the first 20 s of video
//! reverse = false               # optional: play the clip backwards (staged wrong-way traffic)
//! loop_secs = 600.0             # optional: replay the clip to 600 s of camera time (negatives)
//! report_only = false          # optional: list its events, leave them out of the false-alarm rates
//! [scenarios.camera]
//! detect_fps = 10.0
//! lines = [{ name = "mid", points = [[0.0, 0.5], [1.0, 0.5]] }]
//! rules = [{ kind = "line_crossing", line = "mid", classes = ["car", "truck"] }]
//! [[scenarios.counts]]
//! line = "mid"
//! a_to_b = 27
//! b_to_a = 0
//! a_to_b_classes = { car = 25, truck = 2 }   # optional, where known
//! [[scenarios.events]]
//! kind = "intrusion"
//! start_secs = 2.0
//! tolerance_secs = 2.0
//! [[scenarios.presence]]        # optional: an object visible from `from_secs` to `to_secs`
//! classes = ["person"]          # default ["person"]
//! from_secs = 0.0
//! to_secs = 18.0
//! region = [0.5, 0.3, 1.0, 0.9] # optional: x1, y1, x2, y2 (0–1) the object stays in
//! ```
//!
//! Each clip is analysed offline by [`analyse_video`]: one frame per `1 / detect_fps` of
//! video time (every decoded frame when `detect_fps = 0`), none dropped, the camera's models
//! opened by [`Detectors::for_config`]. A detected event is the `Started` change of a rule;
//! its start is the change's `at` and its alarm time the video time of the frame that raised
//! it. Expected and detected events of a kind are matched one to one, in time order, where
//! the detected start lies within `start_secs ± tolerance_secs`.
//!
//! A `presence` label measures recall over time, not events: of the analysed frames inside
//! its window, the share on which a confirmed track of one of its classes was matched to a
//! detection on that frame (state `tracked`) with its box overlapping `region`; the share with
//! a raw detection of the classes there is reported beside it (detector vs tracker).
//!
//! `reverse = true` stages real wrong-way traffic from a real clip: the analysed frames (the
//! first `max_secs`) are decoded first, then analysed last to first, the frame at video time
//! `t` stamped `T − t` (`T`: the last analysed frame's time). Every motion runs backwards, so
//! labels are written in reversed time and each crossing's direction swaps. The frames are
//! held in memory: a scenario needing more than 1 GiB of them is refused (set `max_secs`).
//!
//! `loop_secs = S` measures false alarms on a negative: the clip (its first `max_secs`, played
//! backwards with `reverse = true`) is analysed again and again, each pass decoded afresh,
//! until `S` seconds of camera time are analysed. Video time continues across passes (pass
//! `k + 1` starts one frame interval after pass `k`'s last frame), so the tracker, the rules
//! and the fire detector see one continuous camera whose scene cuts back to the start at each
//! seam. A looped scenario may expect no counts and no events: every event it raises is a
//! false alarm. The report sums, per event kind over every scored scenario with a rule of that
//! kind, the false alarms (raised events matching no expected one) per hour of analysed camera
//! time.
//!
//! `report_only = true` marks a scenario whose result is reported but not scored (a handheld
//! clip for a detector meant for fixed cameras): its events are listed (the scenario name
//! marked "(report only)", and apart under the false-alarm table) but feed no false-alarm
//! rate, whether or not it expects events.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Context};
use serde::{Deserialize, Serialize};

use crate::analytics::{analyse_video, decode_video, Analysed, CameraAnalytics, Detect, Detectors};
use crate::config::{CameraConfig, Config};
use crate::geometry::BBox;
use crate::geometry::CrossDir;
use crate::infer::detector::DetectorOptions;
use crate::types::{Change, CountDelta, EventChange, TrackState};

/// The model a manifest without `[models]` uses, relative to the current directory.
pub const DEFAULT_MODEL: &str = "models/nanodet-g-coco-416-int8/model.toml";

/// The most decoded frame data a `reverse` scenario may hold in memory (1 GiB: about 1500
/// frames at 640×360).
const REVERSE_MAX_BYTES: usize = 1 << 30;

/// The camera id each scenario's camera gets unless its snippet names one.
const CAMERA_ID: &str = "scenario";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    /// Models by name, paths relative to the manifest (like a config's `[models]`).
    #[serde(default)]
    models: Option<BTreeMap<String, PathBuf>>,
    #[serde(default)]
    scenarios: Vec<RawScenario>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: String,
    /// The clip, relative to the manifest.
    clip: PathBuf,
    /// Analyse only the first `max_secs` of video time (default: the whole clip).
    #[serde(default)]
    max_secs: Option<f64>,
    /// Analyse the clip backwards (see the module docs).
    #[serde(default)]
    reverse: bool,
    /// Replay the clip until this much camera time is analysed (see the module docs).
    #[serde(default)]
    loop_secs: Option<f64>,
    /// Free text: what the clip shows, how it was labelled.
    #[serde(default)]
    notes: Option<String>,
    /// Reported, not scored: the scenario's events are listed but feed no false-alarm rate
    /// (see the module docs).
    #[serde(default)]
    report_only: bool,
    /// The keys of a `[[cameras]]` block; `id`, `url` and `models` may be left out.
    camera: toml::Table,
    #[serde(default)]
    counts: Vec<ExpectedCount>,
    #[serde(default)]
    events: Vec<ExpectedEvent>,
    #[serde(default)]
    presence: Vec<ExpectedPresence>,
}

/// Hand counts of one line: crossings per direction, and per class where known.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExpectedCount {
    pub line: String,
    pub a_to_b: u32,
    pub b_to_a: u32,
    /// Per class (need not cover every vehicle: the rest is unclear).
    #[serde(default)]
    pub a_to_b_classes: BTreeMap<String, u32>,
    #[serde(default)]
    pub b_to_a_classes: BTreeMap<String, u32>,
}

impl ExpectedCount {
    fn total(&self, dir: CrossDir) -> u32 {
        match dir {
            CrossDir::AToB => self.a_to_b,
            CrossDir::BToA => self.b_to_a,
        }
    }
    fn classes(&self, dir: CrossDir) -> &BTreeMap<String, u32> {
        match dir {
            CrossDir::AToB => &self.a_to_b_classes,
            CrossDir::BToA => &self.b_to_a_classes,
        }
    }
}

/// An event a rule of the camera should raise, starting at `start_secs ± tolerance_secs` of
/// video time.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExpectedEvent {
    pub kind: String,
    pub start_secs: f64,
    pub tolerance_secs: f64,
}

/// An object of `classes` visible on every frame from `from_secs` to `to_secs` of video time,
/// inside `region` (normalised x1, y1, x2, y2; default the whole frame).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExpectedPresence {
    #[serde(default = "crate::rules::common::people")]
    pub classes: Vec<String>,
    pub from_secs: f64,
    pub to_secs: f64,
    #[serde(default)]
    pub region: Option<[f32; 4]>,
}

impl ExpectedPresence {
    fn region(&self) -> BBox {
        let [x1, y1, x2, y2] = self.region.unwrap_or([0.0, 0.0, 1.0, 1.0]);
        BBox { x1, y1, x2, y2 }
    }
    fn holds(&self, t: f64) -> bool {
        (self.from_secs..=self.to_secs).contains(&t)
    }
}

/// One validated scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub clip: PathBuf,
    pub max_secs: Option<f64>,
    pub reverse: bool,
    /// Replays the clip to this many seconds of camera time (a negative: no counts, no events).
    pub loop_secs: Option<f64>,
    pub notes: Option<String>,
    /// Reported, not scored: its events feed no false-alarm rate.
    pub report_only: bool,
    /// A one-camera config built from the snippet and the manifest's models.
    pub config: Config,
    pub counts: Vec<ExpectedCount>,
    pub events: Vec<ExpectedEvent>,
    pub presence: Vec<ExpectedPresence>,
}

impl Scenario {
    pub fn camera(&self) -> &CameraConfig {
        &self.config.cameras[0]
    }
}

/// A parsed and validated manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub path: PathBuf,
    pub scenarios: Vec<Scenario>,
}

impl Manifest {
    /// Reads, parses and validates a manifest. Errors name the entry (`scenarios[i]`, its
    /// name) and the field.
    pub fn load(path: &Path) -> anyhow::Result<Manifest> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read manifest {}", path.display()))?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let base = if base.as_os_str().is_empty() { PathBuf::from(".") } else { base };
        Manifest::parse(&text, &base)
            .map(|scenarios| Manifest { path: path.to_path_buf(), scenarios })
            .map_err(|m| anyhow!("manifest {}: {m}", path.display()))
    }

    /// Runs the manifest's model `name` from `path` (a model manifest) in every scenario.
    pub fn use_model(&mut self, name: &str, path: &Path) -> anyhow::Result<()> {
        if !path.is_file() {
            bail!("--model {name}={}: no such model manifest", path.display());
        }
        let path = std::fs::canonicalize(path)
            .with_context(|| format!("--model {name}={}", path.display()))?;
        let mut found = false;
        for s in &mut self.scenarios {
            if let Some(p) = s.config.models.get_mut(name) {
                *p = path.clone();
                found = true;
            }
        }
        if !found {
            bail!("--model {name}=…: the manifest has no model `{name}`");
        }
        Ok(())
    }

    /// Parses and validates manifest text; relative paths resolve against `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Vec<Scenario>, String> {
        let de = toml::Deserializer::parse(text).map_err(|e| e.to_string())?;
        let raw: RawManifest = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let msg = e.into_inner().message().to_string();
            format!("field `{path}`{}: {msg}", scenario_of_path(text, &path))
        })?;
        let models: BTreeMap<String, PathBuf> = match raw.models {
            Some(m) if m.is_empty() => return Err("field `models`: must name a model".into()),
            // Resolved against the manifest's directory by `Config::parse`.
            Some(m) => m,
            None => {
                let cwd = std::env::current_dir().map_err(|e| format!("current directory: {e}"))?;
                BTreeMap::from([("default".to_string(), cwd.join(DEFAULT_MODEL))])
            }
        };
        if raw.scenarios.is_empty() {
            return Err("field `scenarios`: no scenario".into());
        }
        let mut names = BTreeSet::new();
        let mut out = Vec::new();
        for (i, s) in raw.scenarios.into_iter().enumerate() {
            let at =
                |field: &str| format!("scenario `{}` (scenarios[{i}]): field `{field}`", s.name);
            if s.name.trim().is_empty() {
                return Err(format!("{}: must not be empty", at("name")));
            }
            if !names.insert(s.name.clone()) {
                return Err(format!("{}: duplicate scenario name", at("name")));
            }
            let clip = resolve(base, &s.clip);
            if !clip.is_file() {
                return Err(format!("{}: clip {} does not exist", at("clip"), clip.display()));
            }
            if let Some(m) = s.max_secs {
                if !(m.is_finite() && m > 0.0) {
                    return Err(format!(
                        "{}: must be a positive number of seconds",
                        at("max_secs")
                    ));
                }
            }
            if let Some(l) = s.loop_secs {
                if !(l.is_finite() && l > 0.0) {
                    return Err(format!(
                        "{}: must be a positive number of seconds",
                        at("loop_secs")
                    ));
                }
                if !s.counts.is_empty() || !s.events.is_empty() || !s.presence.is_empty() {
                    return Err(format!(
                        "{}: a looped scenario is a negative and may expect no counts, \
                         events or presence (each pass would raise them again); label the \
                         clip in a scenario without `loop_secs`",
                        at("loop_secs")
                    ));
                }
            }
            let config = camera_config(&s.camera, &clip, &models, base)
                .map_err(|m| format!("{}: {m}", at("camera")))?;
            let cam = &config.cameras[0];
            check_counts(&s.counts, cam).map_err(|(f, m)| format!("{}: {m}", at(&f)))?;
            check_events(&s.events, cam).map_err(|(f, m)| format!("{}: {m}", at(&f)))?;
            check_presence(&s.presence).map_err(|(f, m)| format!("{}: {m}", at(&f)))?;
            out.push(Scenario {
                name: s.name,
                clip,
                max_secs: s.max_secs,
                reverse: s.reverse,
                loop_secs: s.loop_secs,
                notes: s.notes,
                report_only: s.report_only,
                config,
                counts: s.counts,
                events: s.events,
                presence: s.presence,
            });
        }
        Ok(out)
    }
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// ` (scenario `name`)` for an error path inside `scenarios[i]`.
fn scenario_of_path(text: &str, path: &str) -> String {
    let Some(rest) = path.strip_prefix("scenarios[") else { return String::new() };
    let Some(idx) = rest.split(']').next().and_then(|n| n.parse::<usize>().ok()) else {
        return String::new();
    };
    let name = toml::from_str::<toml::Table>(text).ok().and_then(|t| {
        t.get("scenarios")?.as_array()?.get(idx)?.get("name")?.as_str().map(str::to_string)
    });
    match name {
        Some(n) => format!(" (scenario `{n}`)"),
        None => String::new(),
    }
}

/// A one-camera config from the snippet, validated by [`Config::parse`]: the clip is its
/// `url`, `models` defaults to every model of the manifest, `realtime` to false.
fn camera_config(
    snippet: &toml::Table,
    clip: &Path,
    models: &BTreeMap<String, PathBuf>,
    base: &Path,
) -> Result<Config, String> {
    for key in ["url", "loop", "realtime", "enabled"] {
        if snippet.contains_key(key) {
            return Err(format!("`{key}` is set by the evaluator (the clip, read once, unpaced)"));
        }
    }
    let mut cam = snippet.clone();
    cam.entry("id").or_insert_with(|| CAMERA_ID.into());
    cam.insert("url".into(), clip.display().to_string().into());
    cam.insert("realtime".into(), false.into());
    cam.entry("models")
        .or_insert_with(|| toml::Value::Array(models.keys().map(|k| k.as_str().into()).collect()));
    let mut doc = toml::Table::new();
    doc.insert("box_id".into(), "scenarios".into());
    doc.insert("data_dir".into(), std::env::temp_dir().display().to_string().into());
    let models: toml::Table =
        models.iter().map(|(k, p)| (k.clone(), p.display().to_string().into())).collect();
    doc.insert("models".into(), models.into());
    doc.insert("cameras".into(), toml::Value::Array(vec![cam.into()]));
    let text = toml::to_string(&doc).map_err(|e| e.to_string())?;
    Config::parse(&text, base)
}

fn check_counts(counts: &[ExpectedCount], cam: &CameraConfig) -> Result<(), (String, String)> {
    let mut seen = BTreeSet::new();
    for (k, c) in counts.iter().enumerate() {
        let field = |f: &str| format!("counts[{k}].{f}");
        if !cam.lines.iter().any(|l| l.name == c.line) {
            let names: Vec<&str> = cam.lines.iter().map(|l| l.name.as_str()).collect();
            return Err((
                field("line"),
                format!("no line `{}` in the camera (lines: {})", c.line, names.join(", ")),
            ));
        }
        if !cam.rules.iter().any(|r| r.kind() == "line_crossing" && r.line() == Some(&c.line)) {
            return Err((field("line"), format!("no line_crossing rule counts line `{}`", c.line)));
        }
        if !seen.insert(c.line.clone()) {
            return Err((field("line"), format!("line `{}` is listed twice", c.line)));
        }
        for dir in [CrossDir::AToB, CrossDir::BToA] {
            let sum: u32 = c.classes(dir).values().sum();
            if sum > c.total(dir) {
                return Err((
                    field(&format!("{}_classes", dir.as_str())),
                    format!("the classes add up to {sum}, more than {}", c.total(dir)),
                ));
            }
        }
    }
    Ok(())
}

fn check_events(events: &[ExpectedEvent], cam: &CameraConfig) -> Result<(), (String, String)> {
    for (k, e) in events.iter().enumerate() {
        let field = |f: &str| format!("events[{k}].{f}");
        if !cam.rules.iter().any(|r| r.kind() == e.kind) {
            let kinds: BTreeSet<&str> = cam.rules.iter().map(|r| r.kind()).collect();
            let kinds: Vec<&str> = kinds.into_iter().collect();
            return Err((
                field("kind"),
                format!("no rule of kind `{}` in the camera (kinds: {})", e.kind, kinds.join(", ")),
            ));
        }
        if !(e.start_secs.is_finite() && e.start_secs >= 0.0) {
            return Err((field("start_secs"), "must be a number of seconds ≥ 0".into()));
        }
        if !(e.tolerance_secs.is_finite() && e.tolerance_secs >= 0.0) {
            return Err((field("tolerance_secs"), "must be a number of seconds ≥ 0".into()));
        }
    }
    Ok(())
}

fn check_presence(presence: &[ExpectedPresence]) -> Result<(), (String, String)> {
    for (k, p) in presence.iter().enumerate() {
        let field = |f: &str| format!("presence[{k}].{f}");
        if p.classes.is_empty() || p.classes.iter().any(|c| c.trim().is_empty()) {
            return Err((field("classes"), "must name at least one class".into()));
        }
        if !(p.from_secs.is_finite() && p.from_secs >= 0.0) {
            return Err((field("from_secs"), "must be a number of seconds ≥ 0".into()));
        }
        if !(p.to_secs.is_finite() && p.to_secs > p.from_secs) {
            return Err((field("to_secs"), format!("must be after from_secs ({})", p.from_secs)));
        }
        if let Some(r) = p.region {
            let inside = r.iter().all(|v| v.is_finite() && (0.0..=1.0).contains(v));
            if !inside || r[0] >= r[2] || r[1] >= r[3] {
                return Err((
                    field("region"),
                    format!("must be [x1, y1, x2, y2] within 0–1 with x1 < x2, y1 < y2, got {r:?}"),
                ));
            }
        }
    }
    Ok(())
}

/// One row of the count table: a line and direction of one scenario.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CountRow {
    pub scenario: String,
    pub line: String,
    pub direction: String,
    pub expected: u32,
    pub counted: u32,
    pub abs_error: u32,
    /// `abs_error / expected` (percent); `None` when nothing was expected.
    pub error_pct: Option<f64>,
    pub expected_classes: BTreeMap<String, u32>,
    pub counted_classes: BTreeMap<String, u32>,
}

/// Events of one kind in one scenario.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EventRow {
    pub scenario: String,
    pub kind: String,
    pub expected: u32,
    pub detected: u32,
    pub matched: u32,
    /// matched / detected; `None` when none was detected.
    pub precision: Option<f64>,
    /// matched / expected; `None` when none was expected.
    pub recall: Option<f64>,
    /// Per matched event: the video time of the frame that raised it minus the expected start.
    pub time_to_alarm_secs: Vec<f64>,
    /// Start times (video seconds) of the detected events.
    pub detected_starts_secs: Vec<f64>,
}

/// Recall over a `presence` window of one scenario.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PresenceRow {
    pub classes: Vec<String>,
    pub from_secs: f64,
    pub to_secs: f64,
    /// Analysed frames inside the window.
    pub frames: u32,
    /// Of those, frames with a raw detection of the classes overlapping the region.
    pub detected: u32,
    /// Of those, frames with a matched confirmed track (state `tracked`) there.
    pub tracked: u32,
    /// `tracked / frames`; `None` with no frame in the window.
    pub tracked_fraction: Option<f64>,
}

/// One scenario's result.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    pub name: String,
    pub clip: String,
    pub detect_fps: f64,
    pub detect_width: u32,
    pub analysed_frames: u64,
    /// Analysed frames the camera's models ran on (the others coasted: the motion gate,
    /// `[cameras.motion_gate]`).
    pub detected_frames: u64,
    /// Camera time analysed: the last analysed frame's video time, continued across passes.
    pub video_secs: f64,
    /// How many times the clip was played (1 unless `loop_secs`).
    pub passes: u32,
    /// Reported, not scored (`report_only`): its events are not in `Report::false_alarms`.
    pub report_only: bool,
    pub wall_secs: f64,
    /// Analysed frames per second of wall time (decode + detection + tracking + rules).
    pub fps: f64,
    pub counts: Vec<CountRow>,
    pub events: Vec<EventRow>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub presence: Vec<PresenceRow>,
    /// Ground speeds of the counted crossings (cameras with `[cameras.calibration]`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub speeds: Vec<CrossingSpeed>,
}

/// One counted crossing that had a ground speed.
#[derive(Debug, Clone, Serialize)]
pub struct CrossingSpeed {
    pub line: String,
    pub direction: String,
    pub class: String,
    /// Video time of the crossing.
    pub at_secs: f64,
    pub speed_kmh: f32,
}

/// False alarms of one event kind over every scenario with a rule of that kind.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FalseAlarmRow {
    pub kind: String,
    /// Scenarios with a rule of this kind.
    pub scenarios: u32,
    /// Their analysed camera time, in hours.
    pub camera_hours: f64,
    /// Raised events that matched no expected event.
    pub false_alarms: u32,
    /// `false_alarms / camera_hours`; `None` with no camera time.
    pub per_camera_hour: Option<f64>,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub manifest: String,
    pub scenarios: Vec<ScenarioReport>,
    /// Per event kind, over all scenarios: false alarms per camera-hour.
    pub false_alarms: Vec<FalseAlarmRow>,
}

/// Per event kind: false alarms (detected − matched) and camera time over the scenarios that
/// have a row of that kind (every event rule of a camera gets one), report-only scenarios
/// left out.
pub fn false_alarm_rates(scenarios: &[ScenarioReport]) -> Vec<FalseAlarmRow> {
    let mut by_kind: BTreeMap<String, (u32, f64, u32)> = BTreeMap::new();
    for sc in scenarios.iter().filter(|sc| !sc.report_only) {
        for e in &sc.events {
            let k = by_kind.entry(e.kind.clone()).or_default();
            k.0 += 1;
            k.1 += sc.video_secs / 3600.0;
            k.2 += e.detected.saturating_sub(e.matched);
        }
    }
    by_kind
        .into_iter()
        .map(|(kind, (n, hours, fa))| FalseAlarmRow {
            kind,
            scenarios: n,
            camera_hours: hours,
            false_alarms: fa,
            per_camera_hour: (hours > 0.0).then(|| fa as f64 / hours),
        })
        .collect()
}

/// What `eval scenarios` runs.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Only the scenarios with these names (empty: all); unknown names are an error.
    pub only: Vec<String>,
    /// Caps every scenario's `max_secs`.
    pub max_secs: Option<f64>,
    /// Caps every looped scenario's `loop_secs` (`--loop-secs`; bounded runs in tests).
    pub loop_secs: Option<f64>,
    pub threads: usize,
    /// Writes every analysed frame (detections, tracks, counts) of each scenario to
    /// `<dir>/<scenario>.jsonl`, for diagnosis (`--dump DIR`).
    pub dump: Option<PathBuf>,
    /// Overrides every scenario camera's `motion_gate.enabled` (`--motion-gate on|off`):
    /// what gating costs, measured on the same clips.
    pub motion_gate: Option<bool>,
}

/// Runs every selected scenario of `manifest`; `progress` gets one line per scenario.
pub fn run(
    manifest: &Manifest,
    opts: &Options,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<Report> {
    for n in &opts.only {
        if !manifest.scenarios.iter().any(|s| &s.name == n) {
            let names: Vec<&str> = manifest.scenarios.iter().map(|s| s.name.as_str()).collect();
            bail!("--clips: no scenario `{n}` in the manifest (scenarios: {})", names.join(", "));
        }
    }
    let selected: Vec<&Scenario> = manifest
        .scenarios
        .iter()
        .filter(|s| opts.only.is_empty() || opts.only.contains(&s.name))
        .collect();
    let mut out = Vec::new();
    for (i, s) in selected.iter().enumerate() {
        progress(&format!("[{}/{}] {} ({}) …", i + 1, selected.len(), s.name, s.clip.display()));
        let r = run_scenario(s, opts).with_context(|| format!("scenario `{}`", s.name))?;
        progress(&format!(
            "[{}/{}] {}: {} frames ({:.1} s of video) in {:.1} s, {:.1} frames/s",
            i + 1,
            selected.len(),
            s.name,
            r.analysed_frames,
            r.video_secs,
            r.wall_secs,
            r.fps
        ));
        out.push(r);
    }
    let false_alarms = false_alarm_rates(&out);
    Ok(Report { manifest: manifest.path.display().to_string(), scenarios: out, false_alarms })
}

/// A detected event: its start (the change's `at`) and when it was raised, in video seconds.
#[derive(Debug, Clone, Copy)]
struct Detected {
    start: f64,
    raised: f64,
}

/// Adds one frame's (or the finish's) counts and started events, raised at camera time `t`.
fn tally_outputs(
    t: f64,
    counts: &[CountDelta],
    changes: &[EventChange],
    counted: &mut BTreeMap<(String, CrossDir), BTreeMap<String, u32>>,
    detected: &mut BTreeMap<String, Vec<Detected>>,
    speeds: &mut Vec<CrossingSpeed>,
) {
    let t0 = time::OffsetDateTime::UNIX_EPOCH;
    for c in counts {
        *counted
            .entry((c.line.clone(), c.direction))
            .or_default()
            .entry(c.class.clone())
            .or_default() += c.count;
        if let Some(v) = c.speed_kmh {
            speeds.push(CrossingSpeed {
                line: c.line.clone(),
                direction: c.direction.as_str().to_string(),
                class: c.class.clone(),
                at_secs: (c.at - t0).as_seconds_f64(),
                speed_kmh: v,
            });
        }
    }
    for c in changes.iter().filter(|c| c.change == Change::Started) {
        let start = (c.at - t0).as_seconds_f64();
        detected.entry(c.kind.clone()).or_default().push(Detected { start, raised: t });
    }
}

fn run_scenario(s: &Scenario, opts: &Options) -> anyhow::Result<ScenarioReport> {
    let mut cam = s.camera().clone();
    if let Some(on) = opts.motion_gate {
        cam.motion_gate.enabled = on;
    }
    let cam = &cam;
    let dopts = DetectorOptions { intra_op_threads: opts.threads, ..DetectorOptions::default() };
    let mut detectors = Detectors::for_config(&s.config, &dopts)?;
    let analytics = CameraAnalytics::new(cam);
    let every = if cam.detect_fps > 0.0 { 1.0 / cam.detect_fps } else { 0.0 };
    let limit = match (s.max_secs, opts.max_secs) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    // Camera time to analyse, replaying the clip (`None`: one pass).
    let until = match (s.loop_secs, opts.loop_secs) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, _) => a,
    };
    let t0 =
        time::OffsetDateTime::from_unix_timestamp(0).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let mut counted: BTreeMap<(String, CrossDir), BTreeMap<String, u32>> = BTreeMap::new();
    let mut detected: BTreeMap<String, Vec<Detected>> = BTreeMap::new();
    let mut speeds = Vec::new();
    let mut presence: Vec<PresenceRow> = s
        .presence
        .iter()
        .map(|p| PresenceRow {
            classes: p.classes.clone(),
            from_secs: p.from_secs,
            to_secs: p.to_secs,
            frames: 0,
            detected: 0,
            tracked: 0,
            tracked_fraction: None,
        })
        .collect();
    let (mut frames, mut detected_frames, mut last_t) = (0u64, 0u64, 0.0f64);
    let mut dump = match &opts.dump {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("--dump {}", dir.display()))?;
            let path = dir.join(format!("{}.jsonl", s.name));
            let f = std::fs::File::create(&path)
                .with_context(|| format!("--dump: creating {}", path.display()))?;
            Some(std::io::BufWriter::new(f))
        }
        None => None,
    };
    let started = Instant::now();
    // `t`: camera time (video time continued across passes).
    let mut tally = |t: f64, a: Analysed| {
        frames += 1;
        detected_frames += u64::from(a.detected);
        last_t = t;
        if let Some(w) = dump.as_mut() {
            let line = serde_json::json!({
                "t": t,
                "detections": &a.tracks.detections.objects,
                "tracks": &a.tracks.tracks,
                "counts": a.counts.iter()
                    .map(|c| (c.direction.as_str(), c.class.as_str(), c.count))
                    .collect::<Vec<_>>(),
            });
            if let Err(e) = writeln!(w, "{line}") {
                tracing::warn!("--dump: {e}");
            }
        }
        for (p, row) in s.presence.iter().zip(presence.iter_mut()).filter(|(p, _)| p.holds(t)) {
            let (region, class) = (p.region(), |c: &String| p.classes.contains(c));
            row.frames += 1;
            let objects = &a.tracks.detections.objects;
            row.detected +=
                u32::from(objects.iter().any(|d| class(&d.class) && d.bbox.iou(&region) > 0.0));
            row.tracked += u32::from(a.tracks.tracks.iter().any(|tr| {
                tr.state == TrackState::Tracked && class(&tr.class) && tr.bbox.iou(&region) > 0.0
            }));
        }
        tally_outputs(t, &a.counts, &a.changes, &mut counted, &mut detected, &mut speeds);
    };
    // Pass after pass (one unless `until`); `offset`: the camera time of this pass's clip
    // time 0.
    let (mut offset, mut passes) = (0.0f64, 0u32);
    loop {
        passes += 1;
        let (mut first, mut last, mut prev, mut ended) =
            (None::<f64>, None::<f64>, None::<f64>, false);
        // One analysed frame at clip time `tc`: false once the pass or the run is over.
        let mut take = |tc: f64, a: Analysed| -> bool {
            if limit.is_some_and(|l| tc > l + 1e-9) || until.is_some_and(|u| offset + tc > u + 1e-9)
            {
                ended = until.is_some_and(|u| offset + tc > u + 1e-9);
                return false;
            }
            first.get_or_insert(tc);
            (prev, last) = (last, Some(tc));
            tally(offset + tc, a);
            true
        };
        if s.reverse {
            let (mut decoded, mut bytes) = (Vec::new(), 0usize);
            decode_video(&s.clip, cam.detect_width, every, |t, f| {
                if limit.is_some_and(|l| t > l + 1e-9) || bytes > REVERSE_MAX_BYTES {
                    return ControlFlow::Break(());
                }
                bytes += f.rgb.len();
                decoded.push((t, f));
                ControlFlow::Continue(())
            })?;
            if bytes > REVERSE_MAX_BYTES {
                bail!(
                    "scenario `{}`: `reverse` holds every analysed frame in memory, and {} needs \
                     more than {} MiB at detect_width {}; set `max_secs` or a lower detect_fps",
                    s.name,
                    s.clip.display(),
                    REVERSE_MAX_BYTES >> 20,
                    cam.detect_width
                );
            }
            let end = decoded.last().map_or(0.0, |(t, _)| *t);
            while let Some((t, mut f)) = decoded.pop() {
                let tc = end - t;
                f.captured_at = t0 + time::Duration::seconds_f64(offset + tc);
                f.camera_id = std::sync::Arc::from(analytics.camera_id());
                if !take(tc, analytics.analyse(Detect::Run(&mut detectors), f)) {
                    break;
                }
            }
        } else {
            let start = t0 + time::Duration::seconds_f64(offset);
            analyse_video(
                &s.clip,
                cam.detect_width,
                every,
                start,
                &analytics,
                Some(&mut detectors),
                |tc, a| {
                    if take(tc, a) {
                        ControlFlow::Continue(())
                    } else {
                        ControlFlow::Break(())
                    }
                },
            )?;
        }
        let (Some(first), Some(last)) = (first, last) else {
            if ended {
                break; // the run ended before this pass's first frame
            }
            bail!("{}: no frame to analyse", s.clip.display());
        };
        let Some(u) = until else { break };
        // The next pass starts one frame interval after this one's last frame.
        let step = match prev {
            Some(p) if last - p > 1e-6 => last - p,
            _ if every > 0.0 => every,
            _ => 1.0 / 30.0,
        };
        offset += last - first + step;
        if ended || offset + first > u + 1e-9 {
            break;
        }
    }
    // The end of the stream: what the rules make on finishing (a crossing pending as the
    // clip ends) counts like the rest.
    let done = analytics.finish(t0 + time::Duration::seconds_f64(last_t));
    tally_outputs(last_t, &done.counts, &done.changes, &mut counted, &mut detected, &mut speeds);
    let wall = started.elapsed().as_secs_f64();
    let mut counts = Vec::new();
    for e in &s.counts {
        for dir in [CrossDir::AToB, CrossDir::BToA] {
            let by_class = counted.remove(&(e.line.clone(), dir)).unwrap_or_default();
            let n: u32 = by_class.values().sum();
            let want = e.total(dir);
            let abs_error = n.abs_diff(want);
            counts.push(CountRow {
                scenario: s.name.clone(),
                line: e.line.clone(),
                direction: dir.as_str().to_string(),
                expected: want,
                counted: n,
                abs_error,
                error_pct: (want > 0).then(|| 100.0 * abs_error as f64 / want as f64),
                expected_classes: e.classes(dir).clone(),
                counted_classes: by_class,
            });
        }
    }
    // Every event rule of the camera gets a row: one with nothing expected shows its false
    // alarms (line_crossing only counts unless it was given a direction to raise).
    let rules = cam.rules.iter().filter(|r| r.kind() != "line_crossing").map(|r| r.kind());
    let kinds: BTreeSet<String> = s
        .events
        .iter()
        .map(|e| e.kind.clone())
        .chain(detected.keys().cloned())
        .chain(rules.map(String::from))
        .collect();
    let events = kinds
        .into_iter()
        .map(|kind| {
            let want: Vec<&ExpectedEvent> = s.events.iter().filter(|e| e.kind == kind).collect();
            let got = detected.get(&kind).map(Vec::as_slice).unwrap_or_default();
            score_events(&s.name, &kind, &want, got)
        })
        .collect();
    for row in &mut presence {
        row.tracked_fraction =
            (row.frames > 0).then(|| f64::from(row.tracked) / f64::from(row.frames));
    }
    Ok(ScenarioReport {
        name: s.name.clone(),
        clip: s.clip.display().to_string(),
        detect_fps: cam.detect_fps,
        detect_width: cam.detect_width,
        analysed_frames: frames,
        detected_frames,
        video_secs: last_t,
        passes,
        report_only: s.report_only,
        wall_secs: wall,
        fps: if wall > 0.0 { frames as f64 / wall } else { 0.0 },
        counts,
        events,
        presence,
        speeds,
    })
}

/// Matches expected events (in start order) to the earliest unmatched detected event whose
/// start lies in the window.
fn score_events(scenario: &str, kind: &str, want: &[&ExpectedEvent], got: &[Detected]) -> EventRow {
    let mut want: Vec<&ExpectedEvent> = want.to_vec();
    want.sort_by(|a, b| a.start_secs.total_cmp(&b.start_secs));
    let mut used = vec![false; got.len()];
    let mut tta = Vec::new();
    for e in &want {
        let hit = (0..got.len())
            .filter(|&j| !used[j] && (got[j].start - e.start_secs).abs() <= e.tolerance_secs)
            .min_by(|&a, &b| got[a].start.total_cmp(&got[b].start));
        if let Some(j) = hit {
            used[j] = true;
            tta.push(got[j].raised - e.start_secs);
        }
    }
    let matched = tta.len() as u32;
    let ratio = |a: u32, b: usize| (b > 0).then(|| a as f64 / b as f64);
    EventRow {
        scenario: scenario.to_string(),
        kind: kind.to_string(),
        expected: want.len() as u32,
        detected: got.len() as u32,
        matched,
        precision: ratio(matched, got.len()),
        recall: ratio(matched, want.len()),
        time_to_alarm_secs: tta,
        detected_starts_secs: got.iter().map(|d| d.start).collect(),
    }
}

/// Per direction of a scenario: total expected, total absolute error over its lines.
pub fn direction_errors(r: &ScenarioReport) -> BTreeMap<String, (u32, u32)> {
    let mut out: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    for c in &r.counts {
        let e = out.entry(c.direction.clone()).or_default();
        e.0 += c.expected;
        e.1 += c.abs_error;
    }
    out
}

fn classes(m: &BTreeMap<String, u32>) -> String {
    if m.is_empty() {
        return "-".into();
    }
    m.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
}

fn opt_pct(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.0} %"))
}

/// The report as one plain-text table per part: counts, events, throughput.
pub fn format_report(r: &Report) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "scenario evaluation: {}", r.manifest);
    let _ = writeln!(s, "\ncounts (per line and direction):");
    let _ = writeln!(
        s,
        "{:<28} {:<8} {:<6} {:>8} {:>7} {:>5} {:>6}  {:<26} counted classes",
        "scenario", "line", "dir", "expected", "counted", "|err|", "err %", "expected classes"
    );
    let (mut want, mut err) = (0u32, 0u32);
    for sc in &r.scenarios {
        for c in &sc.counts {
            want += c.expected;
            err += c.abs_error;
            let _ = writeln!(
                s,
                "{:<28} {:<8} {:<6} {:>8} {:>7} {:>5} {:>6}  {:<26} {}",
                sc.name,
                c.line,
                c.direction,
                c.expected,
                c.counted,
                c.abs_error,
                c.error_pct.map_or("-".into(), |p| format!("{p:.0}")),
                classes(&c.expected_classes),
                classes(&c.counted_classes)
            );
        }
    }
    let total_pct =
        if want > 0 { format!("{:.1} %", 100.0 * err as f64 / want as f64) } else { "-".into() };
    let _ = writeln!(s, "total: {want} expected, {err} absolute error ({total_pct})");
    let _ = writeln!(s, "\nevents (per kind):");
    let _ = writeln!(
        s,
        "{:<28} {:<16} {:>8} {:>8} {:>7} {:>9} {:>7}  time to alarm (s)",
        "scenario", "kind", "expected", "detected", "matched", "precision", "recall"
    );
    for sc in &r.scenarios {
        for e in &sc.events {
            let tta: Vec<String> =
                e.time_to_alarm_secs.iter().map(|t| format!("{t:+.1}")).collect();
            let _ = writeln!(
                s,
                "{:<28} {:<16} {:>8} {:>8} {:>7} {:>9} {:>7}  {}",
                if sc.report_only { format!("{} (report only)", sc.name) } else { sc.name.clone() },
                e.kind,
                e.expected,
                e.detected,
                e.matched,
                opt_pct(e.precision.map(|p| p * 100.0)),
                opt_pct(e.recall.map(|p| p * 100.0)),
                if tta.is_empty() { "-".into() } else { tta.join(" ") }
            );
        }
    }
    if !r.false_alarms.is_empty() {
        let _ = writeln!(
            s,
            "\nfalse alarms / camera-hour (per kind, over every scored scenario with a rule of the \
             kind; a raised event that matches no expected one is false):"
        );
        let _ = writeln!(
            s,
            "{:<16} {:>9} {:>13} {:>12} {:>18}",
            "kind", "scenarios", "camera hours", "false alarms", "per camera-hour"
        );
        for f in &r.false_alarms {
            let _ = writeln!(
                s,
                "{:<16} {:>9} {:>13.3} {:>12} {:>18}",
                f.kind,
                f.scenarios,
                f.camera_hours,
                f.false_alarms,
                f.per_camera_hour.map_or("-".into(), |v| format!("{v:.2}"))
            );
        }
    }
    let report_only: Vec<String> = r
        .scenarios
        .iter()
        .filter(|sc| sc.report_only)
        .map(|sc| {
            let ev: Vec<String> = sc
                .events
                .iter()
                .map(|e| {
                    let starts: Vec<String> =
                        e.detected_starts_secs.iter().map(|t| format!("{t:.1}")).collect();
                    let at = if starts.is_empty() {
                        String::new()
                    } else {
                        format!(" (start {} s)", starts.join(", "))
                    };
                    format!(
                        "{} {} raised{at}, {} unmatched",
                        e.kind,
                        e.detected,
                        e.detected - e.matched
                    )
                })
                .collect();
            format!("  {}: {} ({:.3} camera hours)", sc.name, ev.join("; "), sc.video_secs / 3600.0)
        })
        .collect();
    if !report_only.is_empty() {
        let _ = writeln!(
            s,
            "\nreport-only scenarios (`report_only = true`: listed, not in the false-alarm rates):"
        );
        for l in report_only {
            let _ = writeln!(s, "{l}");
        }
    }
    if r.scenarios.iter().any(|sc| !sc.presence.is_empty()) {
        let _ = writeln!(
            s,
            "\npresence (analysed frames in a labelled window with a detection / a matched track):"
        );
        let _ = writeln!(
            s,
            "{:<28} {:<10} {:>13} {:>7} {:>8} {:>7} {:>8}",
            "scenario", "classes", "window s", "frames", "detected", "tracked", "tracked %"
        );
        for sc in &r.scenarios {
            for p in &sc.presence {
                let _ = writeln!(
                    s,
                    "{:<28} {:<10} {:>13} {:>7} {:>8} {:>7} {:>8}",
                    sc.name,
                    p.classes.join(","),
                    format!("{:.1}–{:.1}", p.from_secs, p.to_secs),
                    p.frames,
                    p.detected,
                    p.tracked,
                    opt_pct(p.tracked_fraction.map(|f| f * 100.0))
                );
            }
        }
    }
    if r.scenarios.iter().any(|sc| !sc.speeds.is_empty()) {
        let _ = writeln!(s, "\nground speeds of the counted crossings (calibrated cameras):");
        let _ = writeln!(
            s,
            "{:<28} {:<8} {:<6} {:<10} {:>8} {:>8}",
            "scenario", "line", "dir", "class", "at s", "km/h"
        );
        for sc in &r.scenarios {
            for c in &sc.speeds {
                let _ = writeln!(
                    s,
                    "{:<28} {:<8} {:<6} {:<10} {:>8.2} {:>8.1}",
                    sc.name, c.line, c.direction, c.class, c.at_secs, c.speed_kmh
                );
            }
        }
    }
    let _ = writeln!(s, "\nthroughput:");
    let _ = writeln!(
        s,
        "{:<28} {:>10} {:>6} {:>7} {:>8} {:>6} {:>9} {:>8} {:>9}",
        "scenario",
        "detect_fps",
        "width",
        "frames",
        "detected",
        "passes",
        "video s",
        "wall s",
        "frames/s"
    );
    for sc in &r.scenarios {
        let _ = writeln!(
            s,
            "{:<28} {:>10} {:>6} {:>7} {:>8} {:>6} {:>9.1} {:>8.1} {:>9.1}",
            sc.name,
            sc.detect_fps,
            sc.detect_width,
            sc.analysed_frames,
            sc.detected_frames,
            sc.passes,
            sc.video_secs,
            sc.wall_secs,
            sc.fps
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }

    const HEAD: &str = "[models]\ndefault = \"models/nanodet-g-coco-416/model.toml\"\n";
    const GOOD: &str = r#"
[[scenarios]]
name = "pets"
clip = "test-videos/pets09-s2l1.mp4"
[scenarios.camera]
detect_fps = 5.0
lines = [{ name = "mid", points = [[0.5, 0.0], [0.5, 1.0]] }]
rules = [{ kind = "line_crossing", line = "mid" }, { kind = "loitering", zone = "all" }]
zones = [{ name = "all", points = [[0, 0], [1, 0], [1, 1], [0, 1]] }]
[[scenarios.counts]]
line = "mid"
a_to_b = 3
b_to_a = 2
a_to_b_classes = { person = 3 }
[[scenarios.events]]
kind = "loitering"
start_secs = 10
tolerance_secs = 5
"#;

    fn parse(extra: &str) -> Result<Vec<Scenario>, String> {
        Manifest::parse(&format!("{HEAD}{extra}"), &repo())
    }

    #[test]
    fn eval_scenarios_manifest_parses() {
        let s = parse(GOOD).unwrap();
        assert_eq!(s.len(), 1);
        let cam = s[0].camera();
        assert_eq!((cam.id.as_str(), cam.detect_fps, cam.realtime), ("scenario", 5.0, false));
        assert_eq!(cam.models, vec!["default".to_string()]);
        assert_eq!(s[0].counts[0].a_to_b_classes["person"], 3);
    }

    #[test]
    fn eval_scenarios_errors_name_entry_and_field() {
        let cases = [
            (GOOD.replace("a_to_b = 3", "a_to_b = 3\nnorth = 1"), "counts[0]", "north"),
            (GOOD.replace("line = \"mid\"\na_to", "line = \"top\"\na_to"), "counts[0].line", "top"),
            (GOOD.replace("pets09-s2l1.mp4", "nope.mp4"), "`clip`", "nope.mp4"),
            (GOOD.replace("detect_fps = 5.0", "detect_fps = -1.0"), "`camera`", "detect_fps"),
            (
                GOOD.replace("kind = \"loitering\"\nstart", "kind = \"fire\"\nstart"),
                "events[0].kind",
                "fire",
            ),
            (
                GOOD.replace("tolerance_secs = 5", "tolerance_secs = -5"),
                "events[0].tolerance_secs",
                "",
            ),
            (GOOD.replace("{ person = 3 }", "{ person = 4 }"), "counts[0].a_to_b_classes", "4"),
            (GOOD.replace("detect_fps = 5.0", "url = \"x.mp4\""), "`camera`", "url"),
        ];
        for (text, field, word) in cases {
            let e = parse(&text).unwrap_err();
            assert!(e.contains("pets") && e.contains(field) && e.contains(word), "{field}: {e}");
        }
        let looped = GOOD.replace("[scenarios.camera]", "loop_secs = 60.0\n[scenarios.camera]");
        for (text, word) in [
            (looped.replace("60.0", "-1.0"), "positive"),
            (looped.replace("60.0", "nan"), "positive"),
            (looped.clone(), "negative"),
        ] {
            let e = parse(&text).unwrap_err();
            assert!(e.contains("pets") && e.contains("`loop_secs`") && e.contains(word), "{e}");
        }
        let e = parse(&looped.replace("loop_secs = 60.0", "loop_secs = \"1h\"")).unwrap_err();
        assert!(e.contains("scenarios[0].loop_secs") && e.contains("pets"), "{e}");
        let e = parse(&format!("{GOOD}{}", GOOD)).unwrap_err();
        assert!(e.contains("scenarios[1]") && e.contains("duplicate"), "{e}");
        let presence = |p: &str| format!("{GOOD}[[scenarios.presence]]\n{p}\n");
        assert_eq!(
            parse(&presence("from_secs = 1\nto_secs = 4")).unwrap()[0].presence[0].classes,
            ["person"]
        );
        for (p, field) in [
            ("from_secs = 4\nto_secs = 1", "presence[0].to_secs"),
            ("from_secs = -1\nto_secs = 1", "presence[0].from_secs"),
            ("from_secs = 0\nto_secs = 1\nregion = [0.5, 0, 0.4, 1]", "presence[0].region"),
            ("from_secs = 0\nto_secs = 1\nregion = [0, 0, 1, 1.5]", "presence[0].region"),
            ("from_secs = 0\nto_secs = 1\nclasses = []", "presence[0].classes"),
            ("from_secs = 0\nto_secs = 1\nseen = 3", "seen"),
        ] {
            let e = parse(&presence(p)).unwrap_err();
            assert!(e.contains("pets") && e.contains(field), "{field}: {e}");
        }
    }

    #[test]
    fn eval_scenarios_loop_secs_parses_with_reverse() {
        let negative = GOOD
            .split("[[scenarios.counts]]")
            .next()
            .unwrap_or_default()
            .replace("[scenarios.camera]", "loop_secs = 120.5\nreverse = true\n[scenarios.camera]");
        let s = parse(&negative).unwrap();
        assert_eq!((s[0].loop_secs, s[0].reverse), (Some(120.5), true));
        assert_eq!(parse(GOOD).unwrap()[0].loop_secs, None);
    }

    #[test]
    fn eval_scenarios_false_alarms_per_camera_hour() {
        let row = |kind: &str, expected: u32, detected: u32, matched: u32| EventRow {
            scenario: String::new(),
            kind: kind.into(),
            expected,
            detected,
            matched,
            precision: None,
            recall: None,
            time_to_alarm_secs: vec![],
            detected_starts_secs: vec![],
        };
        let sc = |video_secs: f64, events: Vec<EventRow>| ScenarioReport {
            name: String::new(),
            clip: String::new(),
            detect_fps: 10.0,
            detect_width: 640,
            analysed_frames: 0,
            detected_frames: 0,
            video_secs,
            passes: 1,
            report_only: false,
            wall_secs: 0.0,
            fps: 0.0,
            counts: vec![],
            events,
            presence: vec![],
            speeds: vec![],
        };
        // A report-only scenario (handheld clips) raises alarms that are not counted.
        let handheld =
            ScenarioReport { report_only: true, ..sc(900.0, vec![row("fire", 0, 4, 0)]) };
        let r = false_alarm_rates(&[
            sc(1800.0, vec![row("fire", 0, 1, 0), row("smoke", 0, 0, 0)]),
            sc(3600.0, vec![row("fire", 1, 3, 1)]),
            handheld.clone(),
        ]);
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].kind.as_str(), r[0].scenarios, r[0].false_alarms), ("fire", 2, 3));
        assert!((r[0].camera_hours - 1.5).abs() < 1e-9);
        assert!((r[0].per_camera_hour.unwrap() - 2.0).abs() < 1e-9);
        assert_eq!((r[1].kind.as_str(), r[1].false_alarms), ("smoke", 0));
        assert!((r[1].camera_hours - 0.5).abs() < 1e-9 && r[1].per_camera_hour == Some(0.0));
        // The report lists it apart.
        let report = Report { manifest: String::new(), scenarios: vec![handheld], false_alarms: r };
        let text = format_report(&report);
        assert!(text.contains("report-only scenarios") && text.contains("fire 4 raised"), "{text}");
    }

    #[test]
    fn eval_scenarios_events_match_within_window() {
        let want = [
            ExpectedEvent { kind: "k".into(), start_secs: 2.0, tolerance_secs: 1.0 },
            ExpectedEvent { kind: "k".into(), start_secs: 10.0, tolerance_secs: 1.0 },
        ];
        let got = [
            Detected { start: 2.5, raised: 3.0 },
            Detected { start: 2.8, raised: 3.5 },
            Detected { start: 20.0, raised: 20.0 },
        ];
        let r = score_events("s", "k", &want.iter().collect::<Vec<_>>(), &got);
        assert_eq!((r.expected, r.detected, r.matched), (2, 3, 1));
        assert_eq!(r.time_to_alarm_secs, vec![1.0]);
        assert_eq!((r.precision, r.recall), (Some(1.0 / 3.0), Some(0.5)));
    }
}
