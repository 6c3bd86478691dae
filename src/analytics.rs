//! The frame path as one unit: detect → score floor → track → rules. The live inference
//! workers (`app`), `bench`, `eval` and the real-footage tests all call
//! [`CameraAnalytics::analyse`], so what they measure is what the box runs.
//!
//! Detectors (ONNX sessions) belong to a worker and serve every camera; the tracker and the
//! rule engine belong to a camera and see its frames one at a time. `analyse` runs the models
//! without holding the camera's lock, then tracks and evaluates rules under it.

pub mod enhance;
pub mod fall_scan;
pub mod motion;
pub mod pose;
pub mod tiles;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::clock::Clock;
use crate::config::{CameraConfig, Config, LowLightEnhanceConfig, TilesConfig};
use crate::fire::{FireDetector, BUILTIN_FIRE};
use crate::health::Registry;
use crate::infer::detector::{Detector, DetectorOptions};
use crate::infer::manifest::ModelManifest;
use crate::rules::RuleEngine;
use crate::track::Tracker;
use crate::types::{
    CountDelta, Detection, Detections, EventChange, Frame, HealthTick, OccupancyDelta, Track,
    Tracks,
};

/// Loads and verifies (sha256) every model used by an enabled camera.
pub fn load_manifests(cfg: &Config) -> anyhow::Result<HashMap<String, ModelManifest>> {
    let mut out = HashMap::new();
    for cam in cfg.cameras.iter().filter(|c| c.enabled) {
        let pose = cam.pose.iter().map(|p| &p.model);
        let scan = cam.fall_scan.iter().map(|f| &f.model);
        for name in cam.models.iter().chain(pose).chain(scan) {
            if out.contains_key(name) || name == crate::fire::BUILTIN_FIRE {
                continue;
            }
            let path = &cfg.models[name];
            let m = ModelManifest::load(path)
                .with_context(|| format!("model `{name}` ({})", path.display()))?;
            m.verify().with_context(|| format!("model `{name}` ({})", path.display()))?;
            out.insert(name.clone(), m);
        }
        use crate::infer::manifest::DecoderKind;
        let kind = |name: &String| out.get(name).map(|m| &m.output.kind);
        let wrong = |field: &str, model: &str, what: &str, kind: &str| {
            anyhow::anyhow!(
                "camera `{}`: field `{field}`: model `{model}` is not a {what} \
                 (its manifest needs `[output] kind = \"{kind}\"`)",
                cam.id
            )
        };
        if let Some(p) = &cam.pose {
            if !matches!(kind(&p.model), Some(DecoderKind::Keypoints {})) {
                return Err(wrong("pose.model", &p.model, "keypoints model", "keypoints"));
            }
        }
        if let Some(f) = &cam.fall_scan {
            if !matches!(kind(&f.model), Some(DecoderKind::Blazepose { .. })) {
                return Err(wrong("fall_scan.model", &f.model, "pose detector", "blazepose"));
            }
        }
    }
    Ok(out)
}

/// What the models of one frame see: the enhanced pixels (else the frame's own), whether the
/// frame is low-light, and the tiles when tiled detection is due.
struct Input<'a> {
    rgb: Option<&'a [u8]>,
    low_light: bool,
    tiled: Option<&'a TilesConfig>,
}

/// One inference session per model, by the name `[models]` gives it.
pub struct Detectors {
    models: HashMap<String, Detector>,
    /// Model runs so far (one per model per image: frame or tile), pose crops excluded.
    calls: u64,
}

impl Detectors {
    /// Opens every model in `manifests`. Each model's score threshold is lowered to the lowest
    /// tracker `low_score` of the cameras that run it: the tracker's second stage needs those
    /// detections.
    pub fn load(
        manifests: &HashMap<String, ModelManifest>,
        cameras: &[CameraConfig],
        opts: &DetectorOptions,
    ) -> anyhow::Result<Detectors> {
        let mut models = HashMap::new();
        for (name, m) in manifests {
            let mut d =
                Detector::load(m, opts).with_context(|| format!("loading model `{name}`"))?;
            let floor = cameras
                .iter()
                .filter(|c| c.models.contains(name))
                .map(|c| c.tracker.low_score)
                .fold(d.score_threshold(), f32::min);
            d.set_score_threshold(floor);
            models.insert(name.clone(), d);
        }
        Ok(Detectors { models, calls: 0 })
    }

    /// `load` for every model of the enabled cameras of `cfg` (verified first), with ONNX
    /// Runtime from `inference.ort_library` (or the default places) if not loaded yet.
    pub fn for_config(cfg: &Config, opts: &DetectorOptions) -> anyhow::Result<Detectors> {
        crate::infer::runtime::init(cfg.inference.ort_library.as_deref())?;
        Detectors::load(&load_manifests(cfg)?, &cfg.cameras, opts)
    }

    /// One already opened model under `name` (its threshold as the caller set it).
    pub fn single(name: &str, detector: Detector) -> Detectors {
        Detectors { models: HashMap::from([(name.to_string(), detector)]), calls: 0 }
    }

    /// How many times a model ran on a frame or a tile of one (pose crops not counted).
    pub fn calls(&self) -> u64 {
        self.calls
    }

    /// Whether every label of model `name` is `fire` or `smoke` (a model a verifying built-in
    /// fire detector can veto whole).
    fn fire_smoke_only(&self, name: &str) -> bool {
        self.models
            .get(name)
            .is_some_and(|d| d.labels().iter().all(|l| crate::fire::Class::from_label(l).is_some()))
    }

    /// Runs `models` (in that order) on `frame`, and with `tiles` also on its tiles, merging
    /// the boxes ([`tiles`]); a failing model is logged and skipped.
    /// The models see `input` (the frame's pixels enhanced, [`enhance`]) instead of the frame's
    /// own when given. On a `low_light` frame a model with a `low_light_model` runs that.
    fn run(
        &mut self,
        camera: &str,
        models: &[String],
        frame: &Frame,
        input: Input<'_>,
    ) -> Vec<Detection> {
        let src: &[u8] = input.rgb.unwrap_or(&frame.rgb);
        let whole = (src, frame.width, frame.height);
        let objects = self.run_on(camera, models, frame, whole, input.low_light);
        let Some(cfg) = input.tiled else { return objects };
        let layout = tiles::layout(frame.width, frame.height, cfg.grid, cfg.overlap);
        let mut pieces = Vec::new();
        for (i, tile) in layout.iter().enumerate() {
            let rgb = tiles::crop(src, frame.width, tile);
            for det in self.run_on(camera, models, frame, (&rgb, tile.w, tile.h), input.low_light) {
                pieces.push(tiles::to_frame(det, &layout, i, frame.width, frame.height));
            }
        }
        tiles::merge(objects, pieces)
    }

    /// Runs `models` on an RGB image (`frame` or one of its tiles: pixels, width, height).
    fn run_on(
        &mut self,
        camera: &str,
        models: &[String],
        frame: &Frame,
        (rgb, width, height): (&[u8], u32, u32),
        low_light: bool,
    ) -> Vec<Detection> {
        let mut objects = Vec::new();
        for name in models {
            let Some(d) = self.models.get_mut(name) else { continue };
            self.calls += 1;
            match d.for_light(low_light).detect(rgb, width, height) {
                Ok(v) => objects.extend(v),
                Err(e) => tracing::warn!(camera, frame = frame.index, "inference failed: {e}"),
            }
        }
        merge_pose(objects)
    }
}

/// A pose model beside a detector: a pose detection (one with keypoints) that overlaps a
/// detection of its class without keypoints (IoU ≥ [`KEYPOINT_MATCH_IOU`]) gives that one its
/// keypoints and is dropped, so the tracker sees each person once, in the detector's box.
/// Pose detections are taken best first, each to the free detection it overlaps most; the
/// others stay as they are.
pub fn merge_pose(mut objects: Vec<Detection>) -> Vec<Detection> {
    let (mut pose, rest): (Vec<Detection>, Vec<Detection>) =
        objects.drain(..).partition(|d| d.keypoints.is_some());
    if pose.is_empty() || rest.is_empty() {
        return rest.into_iter().chain(pose).collect();
    }
    objects = rest;
    pose.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept = Vec::new();
    for p in pose {
        let best = objects
            .iter()
            .enumerate()
            .filter(|(_, d)| d.keypoints.is_none() && d.class == p.class)
            .map(|(i, d)| (i, d.bbox.iou(&p.bbox)))
            .filter(|(_, iou)| *iou >= KEYPOINT_MATCH_IOU)
            .max_by(|a, b| a.1.total_cmp(&b.1));
        match best {
            Some((i, _)) => objects[i].keypoints = p.keypoints,
            None => kept.push(p),
        }
    }
    objects.extend(kept);
    objects
}

/// Where a frame's detections come from.
pub enum Detect<'a> {
    /// The camera's models, run on the frame by these sessions.
    Run(&'a mut Detectors),
    /// Detections made elsewhere: recorded ones (`eval mot --dets-in`), synthetic ones (bench).
    Given(Vec<Detection>),
}

/// What one analysed frame produced.
pub struct Analysed {
    /// Event changes, each with its event id.
    pub changes: Vec<EventChange>,
    /// Line crossings counted on this frame.
    pub counts: Vec<CountDelta>,
    /// Zone occupancy of the 1-minute buckets this frame completed.
    pub occupancy: Vec<OccupancyDelta>,
    /// The frame, its detections and the camera's tracks after it.
    pub tracks: Tracks,
    /// Tracker + rules time (ms); detection time is `tracks.detections.infer_ms`.
    pub track_ms: f32,
    /// Whether the camera's models ran on the frame (false: given detections, or the
    /// motion gate let the tracks coast, [`motion`]).
    pub detected: bool,
}

impl Analysed {
    /// Confirmed tracks matched on this frame.
    pub fn tracked(&self) -> impl Iterator<Item = &Track> {
        self.tracks.tracks.iter().filter(|t| t.state == crate::types::TrackState::Tracked)
    }
}

/// What finishing a camera's analytics produced (`CameraAnalytics::finish`).
pub struct Finished {
    /// The open incidents' `Ended` changes.
    pub changes: Vec<EventChange>,
    /// Line crossings counted on finishing.
    pub counts: Vec<CountDelta>,
    /// Zone occupancy, the partial bucket included.
    pub occupancy: Vec<OccupancyDelta>,
}

/// One camera's analytics: which models it runs, its tracker and its rule engine.
pub struct CameraAnalytics {
    camera_id: String,
    models: Vec<String>,
    /// Only detections of these classes reach the tracker (`None`: all).
    classes: Option<Vec<String>>,
    /// Tiled detection (`[cameras.tiles]`) and the capture time of the last tiled frame.
    tiles: Option<(TilesConfig, Mutex<Option<time::OffsetDateTime>>)>,
    /// Contrast equalisation of dark frames before detection (`[cameras.low_light_enhance]`).
    enhance: LowLightEnhanceConfig,
    state: Mutex<(Tracker, RuleEngine)>,
    /// The built-in fire and smoke detector, when `models` lists `builtin-fire` (its
    /// background model and regions are this camera's).
    fire: Option<Mutex<FireDetector>>,
    /// The pose stage (`[cameras.pose]`): keypoints on crops of person tracks.
    pose: Option<Mutex<pose::PoseStage>>,
    /// The fall scan (`[cameras.fall_scan]`): falls from height the tracker loses.
    fall_scan: Option<Mutex<fall_scan::FallScan>>,
    /// Motion-gated detection (`[cameras.motion_gate]`), when enabled.
    motion: Option<Mutex<motion::MotionGate>>,
}

impl CameraAnalytics {
    pub fn new(cam: &CameraConfig) -> CameraAnalytics {
        CameraAnalytics {
            camera_id: cam.id.clone(),
            models: cam.models.clone(),
            classes: None,
            tiles: cam.tiles.clone().map(|t| (t, Mutex::new(None))),
            enhance: cam.low_light_enhance.clone(),
            state: Mutex::new((
                Tracker::new(cam.tracker.clone())
                    .with_weak_regions(crate::rules::weak_birth_regions(&cam.into()))
                    .with_posture_classes(crate::rules::posture_classes(&cam.into())),
                RuleEngine::new(cam),
            )),
            fire: cam.models.iter().any(|m| m == BUILTIN_FIRE).then(|| {
                Mutex::new(FireDetector::new(cam.fire_detector.clone().unwrap_or_default()))
            }),
            pose: cam.pose.clone().map(|p| Mutex::new(pose::PoseStage::new(p, cam))),
            fall_scan: cam.fall_scan.clone().map(|f| Mutex::new(fall_scan::FallScan::new(f, cam))),
            // At or above the camera's own rate an idle camera would skip nothing, and
            // without a model (the built-in fire detector alone) there is nothing to skip.
            motion: {
                let g = &cam.motion_gate;
                let skips = cam.detect_fps == 0.0 || g.idle_detect_fps < cam.detect_fps;
                let models = cam.models.iter().any(|m| m != BUILTIN_FIRE);
                (g.enabled && skips && models)
                    .then(|| Mutex::new(motion::MotionGate::new(g.clone())))
            },
        }
    }

    /// Keeps only detections of `class` (`eval mot` scores one class).
    pub fn only_class(mut self, class: &str) -> CameraAnalytics {
        self.classes = Some(vec![class.to_string()]);
        self
    }

    pub fn camera_id(&self) -> &str {
        &self.camera_id
    }

    /// The tile settings if the frame captured `at` is due for tiled detection: the first
    /// frame, then one per `every_secs` of frame time (a frame earlier than the last tiled
    /// one, as after a clock step back, restarts the count).
    fn tiles_due(&self, at: time::OffsetDateTime) -> Option<&TilesConfig> {
        let (cfg, last) = self.tiles.as_ref()?;
        let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
        let due = match *last {
            Some(l) => at < l || (at - l).as_seconds_f64() + 1e-6 >= cfg.every_secs,
            None => true,
        };
        if due {
            *last = Some(at);
        }
        due.then_some(cfg)
    }

    /// The frame path: detections (the camera's models, or given), the tracker, then the
    /// rules and zone occupancy. The camera's state is locked only for tracking and rules.
    pub fn analyse(&self, detect: Detect<'_>, frame: Frame) -> Analysed {
        let started = Instant::now();
        // The built-in fire detector first: while it verifies and has no qualified region, a
        // model that only detects fire and smoke is not run (all its boxes would be dropped).
        let (mut own, mut vetoed, mut fire_live) = (Vec::new(), false, false);
        if let Some(f) = &self.fire {
            let mut fire = f.lock().unwrap_or_else(|e| e.into_inner());
            own = fire.detect(&frame.rgb, frame.width, frame.height, frame.captured_at);
            vetoed = fire.config().verify_models && !fire.verifies_any();
            fire_live = !own.is_empty() || fire.verifies_any();
        }
        let gate = match (&detect, &self.motion) {
            (Detect::Run(_), Some(m)) => {
                let unsettled = fire_live || self.lock().0.unsettled();
                let mut m = m.lock().unwrap_or_else(|e| e.into_inner());
                let (rgb, w, h, at) = (&frame.rgb, frame.width, frame.height, frame.captured_at);
                let g = m.decide(rgb, w, h, at, unsettled);
                let moving = m.moving_fraction();
                tracing::trace!(camera = %self.camera_id, frame = frame.index, ?g, moving, "motion gate");
                Some(g)
            }
            _ => None,
        };
        let detected = matches!(detect, Detect::Run(_)) && gate.is_none_or(motion::Gate::detects);
        // One reading of the light for the enhancement, the models (`low_light_model`) and
        // the tracker's levels.
        let light = light_stats(&frame.rgb, frame.width, frame.height);
        let dark = light.is_some_and(is_low_light);
        let (mut objects, detectors) = match detect {
            Detect::Run(d) if !detected => {
                let held = self
                    .motion
                    .as_ref()
                    .map(|m| m.lock().unwrap_or_else(|e| e.into_inner()).held());
                (held.unwrap_or_default(), Some(d))
            }
            Detect::Run(d) => {
                let tiled = self.tiles_due(frame.captured_at);
                let mut models = std::borrow::Cow::Borrowed(&self.models[..]);
                if vetoed {
                    models = models.iter().filter(|m| !d.fire_smoke_only(m)).cloned().collect();
                }
                let enhanced = enhance::for_detection(&self.enhance, &frame, light);
                let input = Input { rgb: enhanced.as_deref(), low_light: dark, tiled };
                (d.run(&self.camera_id, &models, &frame, input), Some(d))
            }
            Detect::Given(v) => (v, None),
        };
        if let Some(f) = &self.fire {
            let fire = f.lock().unwrap_or_else(|e| e.into_inner());
            let cfg = fire.config();
            if cfg.verify_models {
                objects.retain(|o| fire.verifies(&o.class, &o.bbox));
            }
        }
        // The models' boxes of a frame they ran on, for the motion gate to hold.
        let candidates = (detected && self.motion.is_some()).then(|| objects.clone());
        if let Some(f) = &self.fire {
            if f.lock().unwrap_or_else(|e| e.into_inner()).config().report_regions {
                objects.extend(own);
            }
        }
        if let Some(keep) = &self.classes {
            objects.retain(|o| keep.contains(&o.class));
        }
        let infer_ms = started.elapsed().as_secs_f32() * 1000.0;
        let at = frame.captured_at;
        let mut detections = Detections { frame, objects, infer_ms };
        let started = Instant::now();
        let mut tracked = {
            let mut guard = self.lock();
            let tracker = &mut guard.0;
            let f = &detections.frame;
            tracker.set_frame_aspect(f.width as f32 / f.height.max(1) as f32);
            if tracker.config().low_light_births {
                tracker.set_low_light(dark);
            }
            tracker.update(&detections.objects, at)
        };
        if let (Some(m), Some(c)) = (&self.motion, candidates) {
            m.lock().unwrap_or_else(|e| e.into_inner()).hold(c, &tracked);
        }
        let (mut detectors, mut pose_ms, mut fallen) = (detectors, 0.0, Vec::new());
        if let Some(pose) = &self.pose {
            let posing = Instant::now();
            let mut pose = pose.lock().unwrap_or_else(|e| e.into_inner());
            pose.run(detectors.as_deref_mut(), &detections.frame, &mut tracked);
            // Pose inference is inference, not tracking.
            pose_ms = posing.elapsed().as_secs_f32() * 1000.0;
        }
        if let Some(scan) = &self.fall_scan {
            let scanning = Instant::now();
            let mut scan = scan.lock().unwrap_or_else(|e| e.into_inner());
            fallen = scan.run(detectors, &detections.frame);
            pose_ms += scanning.elapsed().as_secs_f32() * 1000.0;
        }
        detections.infer_ms += pose_ms;
        let mut tracks = Tracks { tracks: tracked, detections, fallen };
        let mut guard = self.lock();
        let engine = &mut guard.1;
        let mut changes = engine.process(&mut tracks);
        let (counts, occupancy) = (engine.take_counts(), engine.take_occupancy());
        drop(guard);
        attach_keypoints(&tracks.detections, &mut changes);
        if let Some(fire) = &self.fire {
            attach_fire_cues(&fire.lock().unwrap_or_else(|e| e.into_inner()), &mut changes);
        }
        Analysed {
            changes,
            counts,
            occupancy,
            tracks,
            track_ms: started.elapsed().as_secs_f32() * 1000.0 - pose_ms,
            detected,
        }
    }

    /// Ends open incidents at `at`, takes the counts made on finishing, and flushes zone
    /// occupancy, including the current partial bucket (shutdown, the end of a file; the
    /// store merges a partial bucket with the rest of that minute).
    pub fn finish(&self, at: time::OffsetDateTime) -> Finished {
        let mut guard = self.lock();
        let engine = &mut guard.1;
        let changes = engine.finish(at);
        Finished { changes, counts: engine.take_counts(), occupancy: engine.flush_occupancy() }
    }

    /// The cues of the built-in fire detector's live regions (empty without it).
    pub fn fire_cues(&self) -> Vec<crate::fire::RegionCues> {
        match &self.fire {
            Some(f) => f.lock().unwrap_or_else(|e| e.into_inner()).cues(),
            None => Vec::new(),
        }
    }

    /// Whether a rule of this camera decides on its health (`camera_offline`).
    pub fn watches_health(&self) -> bool {
        self.lock().1.watches_health()
    }

    /// Hands one reading of the camera's health to its health-driven rules.
    pub fn health(&self, h: &HealthTick) -> Vec<EventChange> {
        self.lock().1.health(h)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Tracker, RuleEngine)> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Below this median luma (0–255) most of the scene is dark: a night image (the built-in fire
/// detector's default `night_luma_max`).
pub const LOW_LIGHT_LUMA: f32 = 50.0;
/// Below this mean chroma (|Cb − 128| + |Cr − 128|, levels) the image has no colour: an IR or
/// monochrome camera (the fire detector's test for a colourless image).
pub const LOW_LIGHT_CHROMA: f32 = 3.0;

/// Whether a frame (`rgb`, `width` × `height`) is a low-light image, for the tracker's
/// `low_light_births` and a model's `low_light_model` (docs/design/0054): its median luma
/// is below [`LOW_LIGHT_LUMA`] or its mean chroma below [`LOW_LIGHT_CHROMA`] (an IR camera at
/// night; a day camera that gives grey images counts too). Read on about 4,000 pixels of a
/// regular grid (well under a millisecond); a frame without pixels is not low-light.
pub fn low_light(rgb: &[u8], width: u32, height: u32) -> bool {
    light_stats(rgb, width, height).is_some_and(is_low_light)
}

/// [`low_light`] on a frame's [`light_stats`] (median luma, mean chroma).
fn is_low_light((median, chroma): (f32, f32)) -> bool {
    median < LOW_LIGHT_LUMA || chroma < LOW_LIGHT_CHROMA
}

/// The median luma (0–255) and mean chroma (|Cb − 128| + |Cr − 128|) of a packed RGB24 frame,
/// read on about 4,000 pixels of a regular grid; `None` for a frame without pixels or a short
/// buffer.
pub fn light_stats(rgb: &[u8], width: u32, height: u32) -> Option<(f32, f32)> {
    let (w, h) = (width as usize, height as usize);
    if w == 0 || h == 0 || rgb.len() < w * h * 3 {
        return None;
    }
    let step = ((w * h / 4096) as f64).sqrt().max(1.0) as usize;
    let mut hist = [0u32; 256];
    let (mut chroma, mut n) = (0f64, 0u32);
    for y in (step / 2..h).step_by(step) {
        for x in (step / 2..w).step_by(step) {
            let i = 3 * (y * w + x);
            let (r, g, b) = (rgb[i] as f32, rgb[i + 1] as f32, rgb[i + 2] as f32);
            let luma = 0.299 * r + 0.587 * g + 0.114 * b;
            let cb = -0.168_736 * r - 0.331_264 * g + 0.5 * b;
            let cr = 0.5 * r - 0.418_688 * g - 0.081_312 * b;
            hist[luma.clamp(0.0, 255.0) as usize] += 1;
            chroma += (cb.abs() + cr.abs()) as f64;
            n += 1;
        }
    }
    if n == 0 {
        return None;
    }
    let mut below = 0;
    let median = hist
        .iter()
        .position(|&c| {
            below += c;
            below * 2 >= n
        })
        .unwrap_or(255) as f32;
    Some((median, (chroma / n as f64) as f32))
}

/// Event objects are tracks (`rules::common::object`), which carry no keypoints. When a pose
/// model ran on the frame, each object without keypoints gets those of the frame's detection
/// of its class that overlaps it most (IoU ≥ [`KEYPOINT_MATCH_IOU`]); they are stored with the
/// event and drawn on its snapshot. Changes whose snapshot is another frame are left alone.
fn attach_keypoints(dets: &Detections, changes: &mut [EventChange]) {
    if !dets.objects.iter().any(|d| d.keypoints.is_some()) {
        return;
    }
    let this = &dets.frame;
    for c in changes.iter_mut() {
        if c.snapshot.as_ref().is_some_and(|s| s.index != this.index) {
            continue;
        }
        for o in c.objects.iter_mut().filter(|o| o.keypoints.is_none()) {
            let best = dets
                .objects
                .iter()
                .filter(|d| d.keypoints.is_some() && d.class == o.class)
                .map(|d| (d.bbox.iou(&o.bbox), d))
                .filter(|(iou, _)| *iou >= KEYPOINT_MATCH_IOU)
                .max_by(|a, b| a.0.total_cmp(&b.0));
            if let Some((_, d)) = best {
                o.keypoints.clone_from(&d.keypoints);
            }
        }
    }
}

/// How much a detection or an event object must overlap a pose detection to take its
/// keypoints ([`merge_pose`], [`attach_keypoints`]).
pub const KEYPOINT_MATCH_IOU: f32 = 0.5;

/// Evidence for `fire`/`smoke` events on a camera with the built-in detector: a started or
/// updated change gets `detail.cues`, the cues (`crate::fire::RegionCues`: region box, colour,
/// motion, flicker, growth, edges, persistence) of the detector's live region behind each of
/// its objects, read on the frame that raised it. In verification mode these are the cues
/// that confirmed the model's box. The objects' boxes are drawn on the change's snapshot.
fn attach_fire_cues(fire: &crate::fire::FireDetector, changes: &mut [EventChange]) {
    for c in changes.iter_mut() {
        if !matches!(c.kind.as_str(), "fire" | "smoke") || c.change == crate::types::Change::Ended {
            continue;
        }
        let cues: Vec<crate::fire::RegionCues> = c
            .objects
            .iter()
            .filter_map(|o| fire.cues_for(crate::fire::Class::from_label(&o.class)?, &o.bbox))
            .collect();
        if cues.is_empty() {
            continue;
        }
        let Ok(cues) = serde_json::to_value(cues) else { continue };
        let mut detail = match c.detail.take() {
            Some(serde_json::Value::Object(m)) => m,
            _ => serde_json::Map::new(),
        };
        detail.insert("cues".into(), cues);
        c.detail = Some(serde_json::Value::Object(detail));
    }
}

/// Analyses a video file offline (decoded without loss or pacing, scaled to `width`): one frame
/// per `every_secs` of video time (0: every frame), each stamped `t0` + its video time (the
/// PTS, or the frame count at 30 fps without one), through [`CameraAnalytics::analyse`].
/// `each` gets the video time and the result, and stops the run with `ControlFlow::Break`.
pub fn analyse_video(
    video: &std::path::Path,
    width: u32,
    every_secs: f64,
    t0: time::OffsetDateTime,
    camera: &CameraAnalytics,
    mut detectors: Option<&mut Detectors>,
    mut each: impl FnMut(f64, Analysed) -> std::ops::ControlFlow<()>,
) -> anyhow::Result<()> {
    decode_video(video, width, every_secs, |t, mut f| {
        f.captured_at = t0 + time::Duration::seconds_f64(t);
        f.camera_id = std::sync::Arc::from(camera.camera_id());
        let detect = match detectors.as_deref_mut() {
            Some(d) => Detect::Run(d),
            None => Detect::Given(Vec::new()),
        };
        each(t, camera.analyse(detect, f))
    })
}

/// Decodes a video file without loss or pacing, scaled to `width`, and hands `each` one frame
/// per `every_secs` of video time (0: every frame) with its video time in seconds (the PTS,
/// or the frame count at 30 fps without one), until the end or `ControlFlow::Break`.
pub fn decode_video(
    video: &std::path::Path,
    width: u32,
    every_secs: f64,
    mut each: impl FnMut(f64, Frame) -> std::ops::ControlFlow<()>,
) -> anyhow::Result<()> {
    use crate::ingest::StreamEvent;
    let mut stream = crate::cli::open_video(video, width)?;
    let (mut next, mut decoded) = (0.0f64, 0u64);
    loop {
        let f = match stream.next(std::time::Duration::from_secs(20)) {
            StreamEvent::Frame(f) => f,
            StreamEvent::Eos => return Ok(()),
            StreamEvent::Idle => anyhow::bail!("{}: no frame for 20 s", video.display()),
            StreamEvent::Error(e) => anyhow::bail!("{}: {e}", video.display()),
        };
        decoded += 1;
        let t = match f.pts_ns {
            Some(ns) => ns as f64 / 1e9,
            None => decoded as f64 / 30.0,
        };
        if t + 1e-6 < next {
            continue;
        }
        next += every_secs;
        if each(t, f).is_break() {
            return Ok(());
        }
    }
}

/// The health watch: every `period` of `clock`'s time, hands the health of each camera with a
/// health-driven rule to that camera's rules, and passes the changes to `send`, until `stop`
/// is set. Open incidents end with the cameras' `finish` at shutdown.
pub fn watch_health(
    cameras: &[CameraAnalytics],
    registry: &Registry,
    clock: &dyn Clock,
    stop: &AtomicBool,
    period: Duration,
    send: &mut dyn FnMut(EventChange),
) {
    let watched: Vec<&CameraAnalytics> = cameras.iter().filter(|c| c.watches_health()).collect();
    while !watched.is_empty() && !stop.load(Ordering::Relaxed) {
        let now = clock.now();
        for cam in &watched {
            let Some(h) = registry.get(cam.camera_id()) else { continue };
            let tick = HealthTick {
                state: h.state,
                since: h.since,
                last_error: h.last_error,
                latest: registry.latest(cam.camera_id()),
                now,
            };
            for c in cam.health(&tick) {
                let why = c.objects.first().map(|o| o.class.as_str()).unwrap_or_default();
                tracing::warn!(camera = cam.camera_id(), "{} {:?}: {why}", c.kind, c.change);
                send(c);
            }
        }
        clock.sleep(period);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;
    use std::sync::Arc;

    use time::OffsetDateTime;

    use super::*;
    use crate::clock::SimClock;
    use crate::ingest::{
        camera_health, supervise, FrameStream, IngestError, Opener, SuperviseOptions,
    };
    use crate::rules::camera_offline::KIND;
    use crate::types::{CameraState, Change};

    const CFG: &str =
        "box_id='b'\ndata_dir='/tmp'\n[models]\n[[cameras]]\nid='c'\nurl='x.mp4'\nmodels=[]\n\
         enabled=false\n[[cameras.rules]]\nkind='camera_offline'\noffline_secs=0.3\n";

    /// Refuses to open; stops its supervisor after `tries` attempts.
    struct Refusing {
        tries: AtomicU32,
        stop: Arc<AtomicBool>,
    }
    impl Opener for Refusing {
        fn open(&self) -> Result<Box<dyn FrameStream>, IngestError> {
            if self.tries.fetch_sub(1, Ordering::Relaxed) <= 1 {
                self.stop.store(true, Ordering::Relaxed);
            }
            Err(IngestError::Source("file not found".into()))
        }
    }

    /// A simulated clock that sets `stop` once its time passes `until` (ends a watch that
    /// would otherwise wait for ever).
    struct Until<'a>(&'a SimClock, OffsetDateTime, &'a AtomicBool);
    impl Clock for Until<'_> {
        fn now(&self) -> OffsetDateTime {
            self.0.now()
        }
        fn instant(&self) -> Instant {
            self.0.instant()
        }
        fn wait_for(&self, timeout: Duration, wait: &mut dyn FnMut(Duration) -> bool) -> bool {
            if self.0.now() >= self.1 {
                self.2.store(true, Ordering::Relaxed);
            }
            self.0.wait_for(timeout, wait)
        }
    }

    /// The tracker's low-light flag: dark or colourless frames are low-light; a lit colour
    /// frame is not, nor is a frame without pixels.
    #[test]
    fn low_light_is_dark_or_colourless() {
        let img =
            |w: u32, h: u32, px: [u8; 3]| -> Vec<u8> { (0..w * h).flat_map(|_| px).collect() };
        assert!(low_light(&img(64, 48, [20, 18, 25]), 64, 48), "dark");
        assert!(low_light(&img(64, 48, [120, 120, 120]), 64, 48), "grey (IR)");
        assert!(!low_light(&img(64, 48, [150, 110, 90]), 64, 48), "lit, coloured");
        // A third of the image black, the rest lit and coloured: the median is lit; two thirds
        // black: dark.
        let mut part = img(64, 48, [150, 110, 90]);
        part[..64 * 16 * 3].fill(0);
        assert!(!low_light(&part, 64, 48));
        part[..64 * 32 * 3].fill(0);
        assert!(low_light(&part, 64, 48));
        assert!(!low_light(&[], 0, 0));
        assert!(!low_light(&[1, 2, 3], 64, 48), "short buffer");
    }

    /// Through the real supervisor, registry, health watch and rule engine, in simulated time:
    /// a camera that cannot be opened raises `camera_offline` with its error; shutdown ends it.
    #[test]
    fn supervisor_failure_raises_camera_offline() {
        let cfg = Config::parse(CFG, std::path::Path::new("/")).unwrap();
        let cam = CameraConfig { enabled: true, ..cfg.cameras[0].clone() };
        let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let sim = Arc::new(SimClock::new(t0));
        let reg = Registry::with_clock(sim.clone());
        reg.register(camera_health(&cam, sim.now()));
        // The supervisor fails three times (at 0, 20 and 60 ms: backoff 20, then 40 ms), then
        // is stopped: the camera stays offline since the last failure (each reconnect attempt
        // goes through `connecting`).
        let stop = Arc::new(AtomicBool::new(false));
        let opts = SuperviseOptions {
            camera_id: "c".into(),
            loop_file: false,
            live: false,
            stall_timeout: Duration::from_millis(300),
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_millis(50),
        };
        let refusing = Refusing { tries: 3.into(), stop: stop.clone() };
        supervise(&refusing, &opts, &reg, &*sim, &stop, &mut |_| {});
        let h = reg.get("c").unwrap();
        let down = t0 + time::Duration::milliseconds(60);
        assert_eq!((h.state, h.since, h.reconnects), (CameraState::Offline, down, 2));
        assert_eq!(sim.now(), down);

        // The watch (polling every 20 ms) raises the event once the camera has been offline
        // for 0.3 s; the appliance is stopped on the first event, which ends it.
        let cameras = [CameraAnalytics::new(&cam)];
        let mut got = Vec::new();
        let watch_stop = AtomicBool::new(false);
        let clock = Until(&sim, t0 + time::Duration::seconds(60), &watch_stop);
        watch_health(&cameras, &reg, &clock, &watch_stop, Duration::from_millis(20), &mut |c| {
            watch_stop.store(true, Ordering::Relaxed);
            got.push((c, sim.now()));
        });
        got.extend(cameras[0].finish(sim.now()).changes.into_iter().map(|c| (c, sim.now())));
        assert!(!got.is_empty(), "no camera_offline event");
        let (started, raised) = &got[0];
        assert_eq!(got.len(), 2, "started, then ended at shutdown");
        assert_eq!((started.change, started.kind.as_str()), (Change::Started, KIND));
        assert!(started.objects[0].class.contains("file not found"), "{:?}", started.objects);
        assert_eq!((got[1].0.change, got[1].0.event_id), (Change::Ended, started.event_id));
        // Started when the camera went offline, raised at the first poll 0.3 s after that,
        // ended one poll later.
        assert_eq!(started.at, down);
        assert_eq!(*raised, down + time::Duration::milliseconds(300));
        assert_eq!(got[1].0.at, down + time::Duration::milliseconds(320));
    }

    /// A pose stage or fall scan given a model of another decoder kind is refused at load,
    /// naming the camera, the field and the kind it needs.
    #[test]
    fn stage_models_of_the_wrong_kind_are_refused_at_load() {
        let with = |block: &str| {
            let text = format!(
                "box_id='b'\ndata_dir='/tmp'\n[models]\n\
                 coco='{m}/nanodet-g-coco-416/model.toml'\n\
                 pose='{m}/movenet-multipose-lightning-256/model.toml'\n\
                 scan='{m}/blazepose-detector-224/model.toml'\n[[cameras]]\nid='yard'\n\
                 url='x.mp4'\nmodels=['coco']\n{block}\n",
                m = concat!(env!("CARGO_MANIFEST_DIR"), "/models"),
            );
            let cfg = Config::parse(&text, std::path::Path::new("/")).unwrap();
            load_manifests(&cfg).map(|_| ()).map_err(|e| format!("{e:#}"))
        };
        assert!(with("[cameras.pose]\nmodel='pose'\n[cameras.fall_scan]\nmodel='scan'").is_ok());
        let e = with("[cameras.fall_scan]\nmodel='pose'").unwrap_err();
        assert!(
            e.contains("`yard`") && e.contains("fall_scan.model") && e.contains("blazepose"),
            "{e}"
        );
        let e = with("[cameras.pose]\nmodel='scan'").unwrap_err();
        assert!(e.contains("`yard`") && e.contains("pose.model") && e.contains("keypoints"), "{e}");
    }

    /// Through the frame path: a person whose detections carry keypoints (a pose model's)
    /// loiters; the event's object is the track, with the keypoints of the frame's detection.
    /// A car (no keypoints) stays without.
    #[test]
    fn event_objects_carry_the_pose_keypoints() {
        let cfg = Config::parse(
            "box_id='b'\ndata_dir='/tmp'\n[models]\n[[cameras]]\nid='c'\nurl='x.mp4'\n\
             models=[]\nenabled=false\n[[cameras.zones]]\nname='all'\n\
             points=[[0.0,0.0],[1.0,0.0],[1.0,1.0],[0.0,1.0]]\n[[cameras.rules]]\n\
             kind='loitering'\nzone='all'\nclasses=['person','car']\ndwell_secs=1.0\n",
            std::path::Path::new("/"),
        )
        .unwrap();
        let camera = CameraAnalytics::new(&cfg.cameras[0]);
        let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let pose = |i: u64| {
            let k = (0..17)
                .map(|j| crate::types::Keypoint {
                    x: 0.3 + 0.001 * i as f32,
                    y: 0.2 + 0.03 * j as f32,
                    score: 0.9,
                })
                .collect();
            let b = crate::types::BBox { x1: 0.25, y1: 0.15, x2: 0.35, y2: 0.75 };
            Detection { keypoints: Some(k), ..Detection::new(0, "person", 0.9, b) }
        };
        let car = Detection::new(
            2,
            "car",
            0.9,
            crate::types::BBox { x1: 0.6, y1: 0.6, x2: 0.9, y2: 0.8 },
        );
        let mut started = Vec::new();
        for i in 0..20u64 {
            let frame = Frame {
                camera_id: Arc::from("c"),
                index: i,
                width: 64,
                height: 48,
                rgb: Arc::from(vec![0u8; 64 * 48 * 3]),
                pts_ns: None,
                captured_at: t0 + time::Duration::milliseconds(100 * i as i64),
                captured_instant: Instant::now(),
            };
            let a = camera.analyse(Detect::Given(vec![pose(i), car.clone()]), frame);
            for c in a.changes.into_iter().filter(|c| c.change == Change::Started) {
                started.push((i, c));
            }
        }
        let person = started.iter().find(|(_, c)| c.objects.iter().any(|o| o.class == "person"));
        let (i, c) = person.expect("a loitering event for the person");
        let o = c.objects.iter().find(|o| o.class == "person").unwrap();
        assert!(o.track_id.is_some(), "{o:?}");
        assert_eq!(o.keypoints, pose(*i).keypoints, "the keypoints of the frame that raised it");
        let cars = started.iter().flat_map(|(_, c)| &c.objects).filter(|o| o.class == "car");
        assert!(cars.clone().count() > 0 && cars.clone().all(|o| o.keypoints.is_none()));
    }

    /// A pose model beside a detector: the pose person overlapping the detector's person
    /// gives it its keypoints and goes; a pose person no detector saw, and a pose
    /// detection of another class, stay.
    #[test]
    fn pose_detections_merge_into_the_detectors() {
        use crate::types::{BBox, Keypoint};
        let b = |x1: f32, y1: f32, x2: f32, y2: f32| BBox { x1, y1, x2, y2 };
        let k = Some(vec![Keypoint { x: 0.5, y: 0.5, score: 0.8 }; 17]);
        let det = Detection::new(0, "person", 0.7, b(0.1, 0.1, 0.3, 0.9));
        let car = Detection::new(2, "car", 0.8, b(0.5, 0.5, 0.9, 0.9));
        let pose_same = Detection {
            keypoints: k.clone(),
            ..Detection::new(0, "person", 0.5, b(0.12, 0.12, 0.31, 0.88))
        };
        let pose_alone = Detection {
            keypoints: k.clone(),
            ..Detection::new(0, "person", 0.4, b(0.6, 0.1, 0.7, 0.4))
        };
        let pose_car =
            Detection { keypoints: k.clone(), ..Detection::new(0, "car", 0.4, car.bbox) };
        let out = merge_pose(vec![
            pose_same.clone(),
            det.clone(),
            pose_alone.clone(),
            car.clone(),
            pose_car.clone(),
        ]);
        assert_eq!(out.len(), 3, "{out:?}");
        assert_eq!(out[0], Detection { keypoints: k.clone(), ..det.clone() });
        assert_eq!(out[1], Detection { keypoints: k.clone(), ..car.clone() }, "class `car` too");
        assert_eq!(out[2], pose_alone);
        // Without a detector, pose detections are the objects; without pose, nothing changes.
        assert_eq!(merge_pose(vec![pose_alone.clone()]), [pose_alone]);
        assert_eq!(merge_pose(vec![det.clone(), car.clone()]), [det, car]);
    }
}
