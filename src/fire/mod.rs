//! The built-in fire and smoke detector: classical cues on the analysed frames, no weights.
//! A camera runs it by listing [`BUILTIN_FIRE`] in its `models`; its settings are
//! `[cameras.fire_detector]` ([`FireDetectorConfig`]). It belongs to the camera (its
//! background model and region histories are the camera's), and its output are ordinary
//! [`Detection`]s of class `fire` and `smoke`, so the `fire`/`smoke` rules raise events from
//! them like from a model's (see docs/design/0023-classical-fire-detector.md).
//!
//! Per analysed frame, on a small copy of the frame (`analysis_width_px`, area resize, RGB →
//! YCbCr, OpenCV):
//!
//! 1. **Motion**: a MOG2 background model gives the foreground. A frame where more than
//!    `global_change_fraction` of the image is foreground, or the mean luma jumps by more than
//!    [`GLOBAL_LUMA_STEP`] levels (exposure or IR switch, camera moved), is skipped: nothing is
//!    measured on it and its flicker history is cleared.
//! 2. **Colour**: fire pixels follow Celik & Demirel (2009): Y > Cb, Cr > Cb, Y > mean Y,
//!    Cb < mean Cb, Cr > mean Cr, Cr − Cb ≥ `fire_chroma_min_levels` (the frame means make the
//!    rule adapt to the scene: a red sunset sky raises them). Smoke pixels are grey: |Cb − 128|
//!    and |Cr − 128| ≤ `smoke_chroma_max_levels`, luma 40–235, and in the foreground. On a
//!    colourless image (IR, monochrome) or with `night_mode = "on"` a flame pixel is a bright
//!    one (≥ `night_fire_min_luma`). **Night** (auto: the median luma of the image below
//!    `night_luma_max`, most of the scene dark): smoke is not detected (light on wet roads
//!    and walls changes like it), and a flame region must reach `night_fire_min_luma`
//!    somewhere (a flame is a light source, the brightest thing in a dark scene).
//! 3. **Flicker** (Toreyin et al. 2006 count oscillations of a flame pixel): per pixel, a
//!    frame-to-frame luma step of ≥ `flicker_step_levels` whose sign is opposite to the
//!    previous such step is one *reversal*; reversals are kept as a bit history of the last 32
//!    frames. A region's flicker (Hz) is its colour pixels' mean reversals per second / 2
//!    over the last `flicker_window_secs`, i.e. the frequency of the oscillation. The
//!    analysed frame rate bounds what can be seen: at `detect_fps` f the highest measurable
//!    flicker is f / 2 Hz (Nyquist; 2.5 Hz at the default 5 fps, 5 Hz at 10 fps), so flame
//!    flicker at 1–13 Hz shows as its aliased part up to f / 2. A steady lamp makes no
//!    reversal; a rigid object passing over a pixel makes at most one (its leading and
//!    trailing edge); a slow brightening makes steps below the threshold or of one sign.
//! 4. **Regions**: candidate pixels (fire colour with motion or a reversal in the window;
//!    smoke colour in the foreground; not masked) are dilated (3 × 3) and labelled
//!    (connected components). Regions are followed from frame to frame by overlap.
//! 5. **Shape and motion of a region**: fire needs a **core** (colour images: a colour pixel
//!    with Cr − Cb ≥ `fire_core_chroma_min_levels`; flame light is saturated orange-yellow,
//!    about 100–150, skin and blond hair about 40–60), at least 30 % colour pixels, step
//!    coherence ≤ 0.6 and flicker ≥ `fire_flicker_min_hz`, and is rejected when it moves like
//!    a rigid body (its centre moves ≥ 0.2 × its size per frame while its area stays within
//!    ±25 %: car lights) or faster than `fire_max_speed`.
//!    Smoke must be turbulent (its grey pixels oscillate: flicker ≥ `smoke_flicker_min_hz`,
//!    which scattered noise of the background model does not), drift slowly (centre speed
//!    ≤ `smoke_max_speed` frame widths per second), not
//!    shrink below half its first area in the window, and blur what is behind it (edge
//!    energy ≤ `smoke_edge_ratio_max` × the background's, where the background has edges).
//!    **Smoke rising from a flame** (`smoke_above_flame`): a smoke region touching a fire
//!    region confirmed in the last `smoke_window_secs`, its top above that flame's middle,
//!    needs none of the turbulence, speed and edge cues (combustion makes smoke, buoyancy
//!    lifts it; the flame is the evidence); colour, motion, growth, rigid motion and
//!    persistence still apply.
//! 6. **Persistence** (N of M, in frame time so that it does not depend on `detect_fps`): a
//!    region is reported on each frame while ≥ `*_confirm_ratio` of its observations in the
//!    last `*_window_secs` (at least 3) qualified; confidence 0.5 + 0.5 × that share.
//!
//! The cues of every live region are kept ([`FireDetector::cues`], [`FireDetector::cues_for`]).
//! In verification mode (`verify_models`) `CameraAnalytics::analyse` keeps a model's
//! `fire`/`smoke` detection only where [`FireDetector::verifies`] finds a region of that class
//! overlapping it that the detector confirms (what it would report itself); while no region
//! is confirmed, a model that detects only fire and smoke is not run.

pub mod config;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;

use opencv::core::{Mat, Ptr, Scalar, Size, Vec3b, CV_32S, CV_8UC1};
use opencv::imgproc;
use opencv::prelude::*;
use opencv::video::BackgroundSubtractorMOG2;
use serde::Serialize;
use time::OffsetDateTime;

pub use config::{FireDetectorConfig, NightMode};

use crate::geometry::{point_in_polygon, BBox};
use crate::types::Detection;

/// The reserved model name that runs this detector in a camera's `models`.
pub const BUILTIN_FIRE: &str = "builtin-fire";

/// A jump of the frame's mean luma by more than this (levels, 0–255) between two analysed
/// frames is a global change (exposure or IR switch).
pub const GLOBAL_LUMA_STEP: f64 = 25.0;

/// Fire: the region's mean step coherence over its window at most this. Flame pixels
/// brighten and darken independently; a screen's content or a switched light changes
/// together.
const FIRE_MAX_COHERENCE: f32 = 0.6;

/// An image whose mean |Cb − 128| + |Cr − 128| is below this (levels) has no usable colour.
const MONO_CHROMA_LEVELS: f64 = 3.0;

/// Smoke: at least this share of the (dilated) region is foreground (a lone noise pixel of
/// the background model covers 1/9 of its dilation).
const SMOKE_MIN_MOTION: f32 = 0.15;

/// At most this many remembered flame rectangles (`State::flames`).
const MAX_FLAMES: usize = 256;

/// A region is reported only after this many observations in its window.
const MIN_OBSERVATIONS: u32 = 3;

/// Frames after a (re)start during which the background model learns and nothing is
/// reported.
const WARMUP_FRAMES: u32 = 3;

/// The two classes the detector reports, with their class ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    Fire,
    Smoke,
}

impl Class {
    /// The class of a detection label (`fire`, `smoke`).
    pub fn from_label(label: &str) -> Option<Class> {
        match label {
            "fire" => Some(Class::Fire),
            "smoke" => Some(Class::Smoke),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Class::Fire => "fire",
            Class::Smoke => "smoke",
        }
    }
    fn id(self) -> u32 {
        match self {
            Class::Fire => 0,
            Class::Smoke => 1,
        }
    }
}

/// What the detector measured on a region in its latest observation.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RegionCues {
    pub class: Class,
    /// The region, normalised 0–1 like every detection box.
    #[serde(rename = "box")]
    pub bbox: BBox,
    /// Fraction of the region's pixels with the class's colour (0–1).
    pub colour: f32,
    /// Fraction of the region's pixels in the foreground (0–1).
    pub motion: f32,
    /// Mean oscillation frequency of its colour pixels' luma (Hz, at most detect_fps / 2).
    pub flicker_hz: f32,
    /// Fraction of its colour pixels that oscillated at least twice in the window (0–1).
    pub flickering: f32,
    /// Fire: the largest Cr − Cb of its colour pixels (levels, 0–255): the saturation of its
    /// most strongly coloured part. 0 for smoke and where flames are found by brightness.
    pub core_chroma: f32,
    /// The largest luma of its pixels (0–255): a flame at night is the brightest thing in a
    /// dark scene.
    pub peak_luma: f32,
    /// How much of the region brightens or darkens together on this frame: |up − down| /
    /// (up + down) over its pixels with a luma step (0: mixed, as in flames; 1: all one way,
    /// as a screen's scene cut or a light switched), averaged over the window.
    pub coherence: f32,
    /// Area now / area at the start of the window.
    pub growth: f32,
    /// Speed of the region's centre over the window (frame widths per second).
    pub speed: f32,
    /// Edge energy of the region / the background's (1 where the background has no edges).
    pub edge_ratio: f32,
    /// Moves like a rigid body (translates, keeps its area).
    pub rigid: bool,
    /// Smoke: the region touches a confirmed flame region and reaches above it (smoke rising
    /// from a flame; its own motion cues are then not needed). Always false for fire.
    pub above_flame: bool,
    /// Whether this observation qualified.
    pub qualified: bool,
    /// Qualifying observations among the `window` observations of the persistence window.
    pub hits: u32,
    pub window: u32,
    /// Reported (hits ≥ the confirm count).
    pub confirmed: bool,
    pub confidence: f32,
}

/// One observation of a region.
#[derive(Debug, Clone, Copy)]
struct Obs {
    t: f64,
    hit: bool,
    /// The region's step coherence on that frame.
    coherence: f32,
    /// None when the region was not seen on that frame.
    seen: Option<(f64, f64, f64)>, // area, cx, cy (analysis pixels)
}

#[derive(Debug, Clone)]
struct Region {
    class: Class,
    /// x, y, w, h in analysis pixels (last seen).
    rect: [i32; 4],
    hist: VecDeque<Obs>,
    cues: RegionCues,
}

/// Per-camera state, built for one analysis size.
struct State {
    frame_w: u32,
    frame_h: u32,
    w: usize,
    h: usize,
    mog2: Ptr<BackgroundSubtractorMOG2>,
    prev_y: Vec<u8>,
    last_sign: Vec<i8>,
    /// Sign of this frame's significant luma step (0: none).
    cur_sign: Vec<i8>,
    reversals: Vec<u32>,
    bg_y: Vec<f32>,
    masked: Vec<bool>,
    times: VecDeque<f64>,
    prev_mean_y: Option<f64>,
    /// This frame's flame pixels are found by brightness (a colourless image, or
    /// `night_mode = "on"`).
    by_brightness: bool,
    /// This frame is a night frame (see `NightMode`).
    night: bool,
    frames: u32,
    regions: Vec<Region>,
    /// Confirmed flame regions (frame time, rectangle) of the last `smoke_window_secs`.
    flames: VecDeque<(f64, [i32; 4])>,
}

/// The built-in fire and smoke detector of one camera.
pub struct FireDetector {
    cfg: FireDetectorConfig,
    state: Option<State>,
}

impl FireDetector {
    pub fn new(cfg: FireDetectorConfig) -> FireDetector {
        FireDetector { cfg, state: None }
    }

    pub fn config(&self) -> &FireDetectorConfig {
        &self.cfg
    }

    /// The cues of every live region, as of the latest frame.
    pub fn cues(&self) -> Vec<RegionCues> {
        self.state
            .as_ref()
            .map(|s| s.regions.iter().map(|r| r.cues.clone()).collect())
            .unwrap_or_default()
    }

    /// The cues of the live region of `class` that overlaps `bbox` (normalised 0–1) most, if
    /// any overlaps it.
    pub fn cues_for(&self, class: Class, bbox: &BBox) -> Option<RegionCues> {
        let s = self.state.as_ref()?;
        s.regions
            .iter()
            .filter(|r| r.class == class)
            .map(|r| (overlap(&r.cues.bbox, bbox), r))
            .filter(|(o, _)| *o > 0.0)
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, r)| r.cues.clone())
    }

    /// Whether some region is confirmed (what `verifies` needs): without one no fire or smoke
    /// detection can be verified.
    pub fn verifies_any(&self) -> bool {
        self.state.as_ref().is_some_and(|s| s.regions.iter().any(|r| r.cues.confirmed))
    }

    /// Verification mode: whether a model's detection of `class` (`fire`/`smoke`) at `bbox`
    /// (normalised 0–1) is confirmed by a live region of that class overlapping it that this
    /// detector confirms (every cue, persistence included: what it would report itself).
    /// Other classes always pass.
    pub fn verifies(&self, class: &str, bbox: &BBox) -> bool {
        let c = match class {
            "fire" => Class::Fire,
            "smoke" => Class::Smoke,
            _ => return true,
        };
        let Some(s) = self.state.as_ref() else { return false };
        s.regions
            .iter()
            .any(|r| r.class == c && r.cues.confirmed && overlap(&r.cues.bbox, bbox) > 0.0)
    }

    /// Analyses one frame (`rgb`: `width × height × 3` bytes) captured `at`; returns the
    /// confirmed fire and smoke regions as detections (boxes normalised 0–1). A frame that cannot be
    /// analysed (wrong buffer size, OpenCV error) gives none and is logged.
    pub fn detect(
        &mut self,
        rgb: &[u8],
        width: u32,
        height: u32,
        at: OffsetDateTime,
    ) -> Vec<Detection> {
        match self.try_detect(rgb, width, height, at) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!("builtin fire detector: {e}");
                Vec::new()
            }
        }
    }

    fn try_detect(
        &mut self,
        rgb: &[u8],
        width: u32,
        height: u32,
        at: OffsetDateTime,
    ) -> anyhow::Result<Vec<Detection>> {
        if width == 0 || height == 0 || rgb.len() != width as usize * height as usize * 3 {
            anyhow::bail!("frame of {width}×{height} has {} bytes", rgb.len());
        }
        let t = at.unix_timestamp_nanos() as f64 / 1e9;
        let restart = match &self.state {
            Some(s) => {
                s.frame_w != width
                    || s.frame_h != height
                    || s.times.back().is_some_and(|&last| t < last)
            }
            None => true,
        };
        if restart {
            self.state = Some(State::new(&self.cfg, width, height)?);
        }
        let cfg = &self.cfg;
        let Some(s) = self.state.as_mut() else { return Ok(Vec::new()) };
        s.step(cfg, rgb, t)
    }
}

/// Overlap of two boxes: intersection / the smaller area (0–1).
fn overlap(a: &BBox, b: &BBox) -> f32 {
    let iw = (a.x2.min(b.x2) - a.x1.max(b.x1)).max(0.0);
    let ih = (a.y2.min(b.y2) - a.y1.max(b.y1)).max(0.0);
    let small = a.area().min(b.area());
    if small <= 0.0 {
        0.0
    } else {
        iw * ih / small
    }
}

impl State {
    fn new(cfg: &FireDetectorConfig, frame_w: u32, frame_h: u32) -> anyhow::Result<State> {
        let w = cfg.analysis_width_px.min(frame_w).max(1) as usize;
        let h = ((frame_h as f64 * w as f64 / frame_w as f64).round() as usize).max(1);
        let mut mog2 = opencv::video::create_background_subtractor_mog2(
            cfg.background_history_frames as i32,
            16.0,
            false,
        )?;
        mog2.set_n_mixtures(3)?;
        let n = w * h;
        let mut masked = vec![false; n];
        if !cfg.masks.is_empty() {
            let polys = &cfg.masks;
            for y in 0..h {
                for x in 0..w {
                    let p = [(x as f64 + 0.5) / w as f64, (y as f64 + 0.5) / h as f64];
                    masked[y * w + x] = polys.iter().any(|poly| point_in_polygon(p, poly));
                }
            }
        }
        Ok(State {
            frame_w,
            frame_h,
            w,
            h,
            mog2,
            prev_y: vec![0; n],
            last_sign: vec![0; n],
            cur_sign: vec![0; n],
            reversals: vec![0; n],
            bg_y: vec![0.0; n],
            masked,
            times: VecDeque::new(),
            prev_mean_y: None,
            by_brightness: false,
            night: false,
            frames: 0,
            regions: Vec::new(),
            flames: VecDeque::new(),
        })
    }

    fn step(
        &mut self,
        cfg: &FireDetectorConfig,
        rgb: &[u8],
        t: f64,
    ) -> anyhow::Result<Vec<Detection>> {
        let (w, h, n) = (self.w, self.h, self.w * self.h);
        let src =
            Mat::new_rows_cols_with_bytes::<Vec3b>(self.frame_h as i32, self.frame_w as i32, rgb)?;
        let mut small = Mat::default();
        imgproc::resize(
            &src,
            &mut small,
            Size::new(w as i32, h as i32),
            0.0,
            0.0,
            imgproc::INTER_AREA,
        )?;
        let mut ycc = Mat::default();
        imgproc::cvt_color_def(&small, &mut ycc, imgproc::COLOR_RGB2YCrCb)?;
        let mut fg = Mat::default();
        opencv::prelude::BackgroundSubtractorMOG2Trait::apply(&mut self.mog2, &ycc, &mut fg, -1.0)?;
        let ycc = ycc.data_bytes()?;
        let fg = fg.data_bytes()?;
        if ycc.len() != n * 3 || fg.len() != n {
            anyhow::bail!("unexpected analysis image size");
        }

        // Frame statistics over the unmasked pixels.
        let (mut sy, mut scr, mut scb, mut chroma, mut nfg, mut cnt) =
            (0f64, 0f64, 0f64, 0f64, 0usize, 0usize);
        let mut hist = [0u32; 256];
        for i in 0..n {
            if self.masked[i] {
                continue;
            }
            let (y, cr, cb) = (ycc[3 * i] as f64, ycc[3 * i + 1] as f64, ycc[3 * i + 2] as f64);
            sy += y;
            hist[ycc[3 * i] as usize] += 1;
            scr += cr;
            scb += cb;
            chroma += (cr - 128.0).abs() + (cb - 128.0).abs();
            nfg += (fg[i] > 0) as usize;
            cnt += 1;
        }
        let cnt_f = cnt.max(1) as f64;
        // The median luma (night: most of the scene is dark).
        let median_y = {
            let (mut acc, mut m) = (0usize, 0usize);
            for (v, &c) in hist.iter().enumerate() {
                acc += c as usize;
                if 2 * acc >= cnt {
                    m = v;
                    break;
                }
            }
            m as f64
        };
        let (mean_y, mean_cr, mean_cb) = (sy / cnt_f, scr / cnt_f, scb / cnt_f);
        let night = match cfg.night_mode {
            NightMode::On => true,
            NightMode::Off => false,
            NightMode::Auto => median_y < cfg.night_luma_max,
        };
        // A colourless image (IR, monochrome, washed-out CCTV): flames are found by
        // brightness; smoke's grey test passes everywhere, its other cues still apply.
        let mono = chroma / cnt_f < MONO_CHROMA_LEVELS;
        // Flames are found by brightness where colour says nothing: a colourless image (IR,
        // monochrome) or a camera declared IR (`night_mode = "on"`). A colour camera at night
        // still sees a flame's colour (it is a light source), so the colour rule stays.
        self.by_brightness = mono || cfg.night_mode == NightMode::On;
        self.night = night;
        let warm = self.frames >= WARMUP_FRAMES;
        let global = warm
            && (nfg as f64 / cnt_f > cfg.global_change_fraction
                || self.prev_mean_y.is_some_and(|p| (p - mean_y).abs() > GLOBAL_LUMA_STEP));
        self.prev_mean_y = Some(mean_y);
        self.frames += 1;
        self.times.push_back(t);
        while self.times.len() > 32 {
            self.times.pop_front();
        }

        // Per pixel: reversals, background luma, candidates.
        let step = cfg.flicker_step_levels as i32;
        let first = self.frames == 1;
        let mut fire_c = vec![0u8; n];
        let mut smoke_c = vec![0u8; n];
        let mut fire_col = vec![false; n];
        let mut smoke_col = vec![false; n];
        let window_bits = self.window_bits(cfg.flicker_window_secs);
        let win_mask: u32 = if window_bits >= 32 { u32::MAX } else { (1u32 << window_bits) - 1 };
        let tau = cfg.fire_chroma_min_levels as i32;
        let sc = cfg.smoke_chroma_max_levels as i32;
        for i in 0..n {
            let (y, cr, cb) = (ycc[3 * i] as i32, ycc[3 * i + 1] as i32, ycc[3 * i + 2] as i32);
            let mut rev = false;
            self.cur_sign[i] = 0;
            if first || global {
                self.last_sign[i] = 0;
                self.bg_y[i] = if first { y as f32 } else { self.bg_y[i] };
            } else {
                let d = y - self.prev_y[i] as i32;
                if d.abs() >= step {
                    let s = d.signum() as i8;
                    self.cur_sign[i] = s;
                    rev = self.last_sign[i] != 0 && s != self.last_sign[i];
                    self.last_sign[i] = s;
                }
            }
            self.reversals[i] = (self.reversals[i] << 1) | rev as u32;
            self.prev_y[i] = y as u8;
            self.bg_y[i] += 0.02 * (y as f32 - self.bg_y[i]);
            if self.masked[i] {
                continue;
            }
            let moving = fg[i] > 0;
            let fire_colour = if self.by_brightness {
                y as f64 >= cfg.night_fire_min_luma
            } else {
                y > cb
                    && cr > cb
                    && (y as f64) > mean_y
                    && (cb as f64) < mean_cb
                    && (cr as f64) > mean_cr
                    && cr - cb >= tau
            };
            fire_col[i] = fire_colour;
            if cfg.fire && fire_colour && (moving || self.reversals[i] & win_mask != 0) {
                fire_c[i] = 255;
            }
            let smoke_colour = !night
                && (cb - 128).abs() <= sc
                && (cr - 128).abs() <= sc
                && (40..=235).contains(&y);
            smoke_col[i] = smoke_colour;
            if cfg.smoke && smoke_colour && moving {
                smoke_c[i] = 255;
            }
        }
        let span = match (self.times.len().checked_sub(window_bits as usize + 1), self.times.back())
        {
            (Some(k), Some(&last)) => last - self.times[k],
            (None, Some(&last)) => last - self.times[0],
            _ => 0.0,
        };
        if !warm || global {
            // Nothing is measured; regions keep their history (a skipped frame is not a miss).
            for r in &mut self.regions {
                r.cues.qualified = false;
            }
            return Ok(self.confirmed());
        }

        let mut seen = Vec::new();
        for (class, cand, min_area) in [
            (Class::Fire, &fire_c, cfg.fire_min_area),
            (Class::Smoke, &smoke_c, cfg.smoke_min_area),
        ] {
            if (class == Class::Fire && !cfg.fire) || (class == Class::Smoke && !cfg.smoke) {
                continue;
            }
            let comps = components(cand, w, h)?;
            let min_px = (min_area * n as f64).max(2.0);
            for c in comps.into_iter().filter(|c| c.area as f64 >= min_px) {
                let m = self.measure(&c, class, &fire_col, &smoke_col, fg, ycc, win_mask, span);
                seen.push((class, c, m));
            }
        }
        self.track(cfg, t, seen);
        Ok(self.confirmed())
    }

    /// How many reversal bits (frame intervals) lie in the last `secs` of frame time.
    fn window_bits(&self, secs: f64) -> u32 {
        let Some(&last) = self.times.back() else { return 0 };
        let k = self.times.iter().filter(|&&t| last - t <= secs + 1e-6).count();
        (k.saturating_sub(1)).min(32) as u32
    }

    #[allow(clippy::too_many_arguments)]
    fn measure(
        &self,
        c: &Component,
        class: Class,
        fire_col: &[bool],
        smoke_col: &[bool],
        fg: &[u8],
        ycc: &[u8],
        win_mask: u32,
        span: f64,
    ) -> Measured {
        let w = self.w;
        let (mut col, mut mov, mut flick, mut e_cur, mut e_bg, mut px) =
            (0u32, 0u32, 0u32, 0f64, 0f64, 0u32);
        let (mut flickering, mut up, mut down) = (0u32, 0u32, 0u32);
        // The largest Cr − Cb of the colour pixels, and the largest luma of the region.
        let (mut core_chroma, mut peak_luma) = (i32::MIN, 0u8);
        let colour = if class == Class::Fire { fire_col } else { smoke_col };
        let [x0, y0, cw, ch] = c.rect;
        for y in y0..y0 + ch {
            for x in x0..x0 + cw {
                let i = y as usize * w + x as usize;
                if c.labels[(y - y0) as usize * cw as usize + (x - x0) as usize] == 0 {
                    continue;
                }
                px += 1;
                peak_luma = peak_luma.max(self.prev_y[i]);
                mov += (fg[i] > 0) as u32;
                match self.cur_sign[i] {
                    1 => up += 1,
                    -1 => down += 1,
                    _ => {}
                }
                if colour[i] {
                    col += 1;
                    core_chroma = core_chroma.max(ycc[3 * i + 1] as i32 - ycc[3 * i + 2] as i32);
                    let r = (self.reversals[i] & win_mask).count_ones();
                    flick += r;
                    flickering += (r >= 2) as u32;
                }
                if (x as usize) + 1 < w && (y as usize) + 1 < self.h {
                    let (r, d) = (i + 1, i + w);
                    e_cur += (self.prev_y[i] as f64 - self.prev_y[r] as f64).abs()
                        + (self.prev_y[i] as f64 - self.prev_y[d] as f64).abs();
                    e_bg += (self.bg_y[i] - self.bg_y[r]).abs() as f64
                        + (self.bg_y[i] - self.bg_y[d]).abs() as f64;
                }
            }
        }
        let px_f = px.max(1) as f64;
        let flicker_hz =
            if span > 0.25 && col > 0 { flick as f64 / col as f64 / (2.0 * span) } else { 0.0 };
        // The background has edges where its mean gradient is ≥ 2 levels per pixel.
        let edge_ratio = if e_bg / px_f >= 2.0 { e_cur / e_bg } else { 1.0 };
        Measured {
            colour: col as f32 / px_f as f32,
            motion: mov as f32 / px_f as f32,
            flicker_hz: flicker_hz as f32,
            flickering: if col > 0 { flickering as f32 / col as f32 } else { 0.0 },
            // Fewer than 4 stepping pixels say nothing about coherence.
            coherence: if up + down >= 4 {
                (up as f32 - down as f32).abs() / (up + down) as f32
            } else {
                0.0
            },
            edge_ratio: edge_ratio as f32,
            core_chroma: core_chroma.max(0) as f32,
            peak_luma: peak_luma as f32,
        }
    }

    /// Matches this frame's components to the live regions by overlap, updates their
    /// histories and cues, and drops regions unseen for a whole window.
    fn track(&mut self, cfg: &FireDetectorConfig, t: f64, seen: Vec<(Class, Component, Measured)>) {
        let mut matched = vec![false; self.regions.len()];
        // Where flames were confirmed in the last smoke window, up to the previous frame
        // (smoke rising from a flame).
        let flames: Vec<[i32; 4]> = self.flames.iter().map(|f| f.1).collect();
        for (class, c, m) in seen {
            let best = self
                .regions
                .iter()
                .enumerate()
                .filter(|(j, r)| !matched[*j] && r.class == class)
                .map(|(j, r)| (j, rect_overlap(&r.rect, &c.rect)))
                .filter(|(_, o)| *o > 0)
                .max_by_key(|(_, o)| *o)
                .map(|(j, _)| j);
            let (cx, cy) = (c.cx, c.cy);
            let obs =
                |hit| Obs { t, hit, coherence: m.coherence, seen: Some((c.area as f64, cx, cy)) };
            match best {
                Some(j) => {
                    matched[j] = true;
                    let r = &mut self.regions[j];
                    r.rect = c.rect;
                    r.hist.push_back(obs(false));
                    let hit = self.qualify_region(cfg, j, &m, &flames);
                    let r = &mut self.regions[j];
                    if let Some(o) = r.hist.back_mut() {
                        o.hit = hit;
                    }
                }
                None => {
                    let mut hist = VecDeque::new();
                    hist.push_back(obs(false));
                    self.regions.push(Region {
                        class,
                        rect: c.rect,
                        hist,
                        cues: blank_cues(class),
                    });
                    matched.push(true);
                    let j = self.regions.len() - 1;
                    let hit = self.qualify_region(cfg, j, &m, &flames);
                    if let Some(o) = self.regions[j].hist.back_mut() {
                        o.hit = hit;
                    }
                }
            }
        }
        for (j, r) in self.regions.iter_mut().enumerate() {
            if j < matched.len() && !matched[j] {
                r.hist.push_back(Obs { t, hit: false, coherence: 0.0, seen: None });
                r.cues.qualified = false;
            }
        }
        for r in &mut self.regions {
            let (secs, ratio) = persistence(cfg, r.class);
            while r.hist.front().is_some_and(|o| t - o.t > secs + 1e-6) {
                r.hist.pop_front();
            }
            let n = r.hist.len() as u32;
            let hits = r.hist.iter().filter(|o| o.hit).count() as u32;
            r.cues.hits = hits;
            r.cues.window = n;
            // The hits must also cover `ratio` of the window in time (a region seen for a
            // moment does not count).
            let span = match (r.hist.iter().find(|o| o.hit), r.hist.iter().rev().find(|o| o.hit)) {
                (Some(a), Some(b)) => b.t - a.t,
                _ => 0.0,
            };
            r.cues.confirmed = n >= MIN_OBSERVATIONS
                && hits as f64 >= ratio * n as f64
                && span + 1e-6 >= ratio * secs * 0.8;
            r.cues.confidence = 0.5 + 0.5 * hits as f32 / n.max(1) as f32;
            if r.cues.confirmed {
                tracing::debug!(target: "gridwatch::fire", "t={t:.2} {} rect={:?} confirmed", r.class.as_str(), r.rect);
            }
        }
        self.regions.retain(|r| r.hist.iter().any(|o| o.seen.is_some()));
        for r in self.regions.iter().filter(|r| r.class == Class::Fire && r.cues.confirmed) {
            self.flames.push_back((t, r.rect));
        }
        while self.flames.front().is_some_and(|f| t - f.0 > cfg.smoke_window_secs + 1e-6)
            || self.flames.len() > MAX_FLAMES
        {
            self.flames.pop_front();
        }
    }

    /// Computes the cues of region `j` (its latest observation is this frame's) and whether
    /// this observation qualifies.
    fn qualify_region(
        &mut self,
        cfg: &FireDetectorConfig,
        j: usize,
        m: &Measured,
        flames: &[[i32; 4]],
    ) -> bool {
        let w = self.w as f64;
        let (by_brightness, night) = (self.by_brightness, self.night);
        let (sx, sy) = (1.0 / self.w as f32, 1.0 / self.h as f32);
        let r = &mut self.regions[j];
        let seen: Vec<(f64, f64, f64, f64)> =
            r.hist.iter().filter_map(|o| o.seen.map(|(a, x, y)| (o.t, a, x, y))).collect();
        let (first, last) = (seen[0], seen[seen.len() - 1]);
        let coh: Vec<f32> =
            r.hist.iter().filter(|o| o.seen.is_some()).map(|o| o.coherence).collect();
        let coherence = coh.iter().sum::<f32>() / coh.len().max(1) as f32;
        let growth = if first.1 > 0.0 { last.1 / first.1 } else { 1.0 };
        let dt = last.0 - first.0;
        let speed =
            if dt > 0.0 { ((last.2 - first.2).hypot(last.3 - first.3) / w) / dt } else { 0.0 };
        // Rigid: the centre moves ≥ 0.2 × the size per observation, the area stays ±25 %.
        let rigid = seen.len() >= 3 && {
            let steps: f64 =
                seen.windows(2).map(|p| (p[1].2 - p[0].2).hypot(p[1].3 - p[0].3)).sum::<f64>()
                    / (seen.len() - 1) as f64;
            let mean_a = seen.iter().map(|s| s.1).sum::<f64>() / seen.len() as f64;
            let spread = seen.iter().map(|s| (s.1 - mean_a).abs()).fold(0.0, f64::max) / mean_a;
            steps >= 0.2 * mean_a.sqrt() && spread <= 0.25
        };
        // Smoke rising from a confirmed flame: the regions touch (rectangles grown by one
        // pixel overlap) and the smoke reaches above the flame's middle (its top is higher;
        // with the image's top edge as the limit when both reach it).
        let above_flame = r.class == Class::Smoke
            && flames
                .iter()
                .any(|f| rect_overlap(f, &r.rect) > 0 && 2 * r.rect[1] < 2 * f[1] + f[3]);
        let qualified = match r.class {
            Class::Fire => {
                !rigid
                    && speed <= cfg.fire_max_speed
                    && m.flicker_hz as f64 >= cfg.fire_flicker_min_hz
                    && coherence <= FIRE_MAX_COHERENCE
                    && m.colour >= 0.3
                    && (by_brightness
                        || (m.core_chroma as f64 >= cfg.fire_core_chroma_min_levels
                            && (!night || m.peak_luma as f64 >= cfg.night_fire_min_luma)))
            }
            Class::Smoke => {
                // Its own motion cues: turbulent, slow, blurring what is behind it. A region
                // rising from a confirmed flame needs none of them (the flame is the
                // evidence; its smoke may be pushed fast by the fire's own draught).
                let own = speed <= cfg.smoke_max_speed
                    && m.edge_ratio as f64 <= cfg.smoke_edge_ratio_max
                    && m.flicker_hz as f64 >= cfg.smoke_flicker_min_hz;
                !rigid
                    && growth >= 0.5
                    && m.colour >= 0.5
                    && m.motion >= SMOKE_MIN_MOTION
                    && (own || (cfg.smoke_above_flame && above_flame))
            }
        };
        let [x, y, rw, rh] = r.rect;
        tracing::debug!(
            target: "gridwatch::fire",
            "t={:.2} {} rect={:?} colour={:.2} motion={:.2} flicker={:.2}Hz flickering={:.2} coh={:.2} growth={:.2} speed={:.3} edge={:.2} core={:.0} peak={:.0} night={night} rigid={rigid} above_flame={above_flame} ok={qualified}",
            last.0, r.class.as_str(), r.rect, m.colour, m.motion, m.flicker_hz, m.flickering, coherence, growth, speed, m.edge_ratio, m.core_chroma, m.peak_luma
        );
        r.cues = RegionCues {
            class: r.class,
            bbox: BBox {
                x1: x as f32 * sx,
                y1: y as f32 * sy,
                x2: (x + rw) as f32 * sx,
                y2: (y + rh) as f32 * sy,
            },
            colour: m.colour,
            motion: m.motion,
            flicker_hz: m.flicker_hz,
            flickering: m.flickering,
            core_chroma: if r.class == Class::Fire && !by_brightness { m.core_chroma } else { 0.0 },
            peak_luma: m.peak_luma,
            coherence,
            growth: growth as f32,
            speed: speed as f32,
            edge_ratio: m.edge_ratio,
            rigid,
            above_flame,
            qualified,
            ..r.cues.clone()
        };
        qualified
    }

    fn confirmed(&self) -> Vec<Detection> {
        self.regions
            .iter()
            .filter(|r| r.cues.confirmed)
            .map(|r| Detection::new(r.class.id(), r.class.as_str(), r.cues.confidence, r.cues.bbox))
            .collect()
    }
}

/// The persistence window (seconds) and the share of it that must qualify.
fn persistence(cfg: &FireDetectorConfig, c: Class) -> (f64, f64) {
    match c {
        Class::Fire => (cfg.fire_window_secs, cfg.fire_confirm_ratio),
        Class::Smoke => (cfg.smoke_window_secs, cfg.smoke_confirm_ratio),
    }
}

fn blank_cues(class: Class) -> RegionCues {
    RegionCues {
        class,
        bbox: BBox { x1: 0.0, y1: 0.0, x2: 0.0, y2: 0.0 },
        colour: 0.0,
        motion: 0.0,
        flicker_hz: 0.0,
        flickering: 0.0,
        core_chroma: 0.0,
        peak_luma: 0.0,
        coherence: 0.0,
        growth: 1.0,
        speed: 0.0,
        edge_ratio: 1.0,
        rigid: false,
        above_flame: false,
        qualified: false,
        hits: 0,
        window: 0,
        confirmed: false,
        confidence: 0.0,
    }
}

/// Intersection area of two x, y, w, h rectangles grown by one pixel.
fn rect_overlap(a: &[i32; 4], b: &[i32; 4]) -> i32 {
    let iw = ((a[0] + a[2] + 1).min(b[0] + b[2] + 1) - (a[0] - 1).max(b[0] - 1)).max(0);
    let ih = ((a[1] + a[3] + 1).min(b[1] + b[3] + 1) - (a[1] - 1).max(b[1] - 1)).max(0);
    iw * ih
}

struct Measured {
    colour: f32,
    motion: f32,
    flicker_hz: f32,
    flickering: f32,
    coherence: f32,
    edge_ratio: f32,
    /// The largest Cr − Cb of its colour pixels (levels; 0 without colour pixels).
    core_chroma: f32,
    /// The largest luma of its pixels (0–255).
    peak_luma: f32,
}

/// A connected component of a candidate mask (after a 3 × 3 dilation).
struct Component {
    /// x, y, w, h in analysis pixels.
    rect: [i32; 4],
    area: u32,
    cx: f64,
    cy: f64,
    /// Membership inside `rect`, row-major (non-zero: in the component).
    labels: Vec<u8>,
}

fn components(mask: &[u8], w: usize, h: usize) -> opencv::Result<Vec<Component>> {
    if !mask.iter().any(|&v| v != 0) {
        return Ok(Vec::new());
    }
    let m = Mat::new_rows_cols_with_bytes::<u8>(h as i32, w as i32, mask)?;
    let kernel = Mat::new_rows_cols_with_default(3, 3, CV_8UC1, Scalar::all(1.0))?;
    let mut dil = Mat::default();
    imgproc::dilate_def(&m, &mut dil, &kernel)?;
    let (mut labels, mut stats, mut cents) = (Mat::default(), Mat::default(), Mat::default());
    let k = imgproc::connected_components_with_stats(
        &dil,
        &mut labels,
        &mut stats,
        &mut cents,
        8,
        CV_32S,
    )?;
    let lab = labels.data_typed::<i32>()?;
    let mut out = Vec::new();
    for l in 1..k {
        let x = *stats.at_2d::<i32>(l, imgproc::CC_STAT_LEFT)?;
        let y = *stats.at_2d::<i32>(l, imgproc::CC_STAT_TOP)?;
        let cw = *stats.at_2d::<i32>(l, imgproc::CC_STAT_WIDTH)?;
        let ch = *stats.at_2d::<i32>(l, imgproc::CC_STAT_HEIGHT)?;
        let area = *stats.at_2d::<i32>(l, imgproc::CC_STAT_AREA)?;
        let cx = *cents.at_2d::<f64>(l, 0)?;
        let cy = *cents.at_2d::<f64>(l, 1)?;
        let mut member = vec![0u8; (cw * ch) as usize];
        for yy in 0..ch {
            for xx in 0..cw {
                let v = lab[(y + yy) as usize * w + (x + xx) as usize];
                member[(yy * cw + xx) as usize] = (v == l) as u8;
            }
        }
        out.push(Component { rect: [x, y, cw, ch], area: area as u32, cx, cy, labels: member });
    }
    Ok(out)
}
