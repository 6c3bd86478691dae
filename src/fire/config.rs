//! `[cameras.fire_detector]`: the settings of the built-in fire and smoke detector
//! ([`super::FireDetector`]), which a camera runs by listing [`super::BUILTIN_FIRE`] in its
//! `models`. Every field has a default; `validate` names the field (the caller adds the
//! camera).

use serde::Deserialize;

/// When the detector works in night mode (colour cues off; see [`super`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NightMode {
    /// Night mode when the image is dark (median luma < `night_luma_max`) or has no colour
    /// (an IR or monochrome camera).
    Auto,
    /// Always (an IR camera).
    On,
    /// Never.
    Off,
}

/// `[cameras.fire_detector]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FireDetectorConfig {
    /// Detect flames (class `fire`). Default true.
    pub fire: bool,
    /// Detect smoke (class `smoke`). Default true.
    pub smoke: bool,
    /// Report the detector's own fire and smoke regions as detections. Default true. false
    /// with `verify_models`: the detector only verifies the models' detections.
    pub report_regions: bool,
    /// Verification mode: a `fire`/`smoke` detection of the camera's models is kept only
    /// where the detector has a region of that class, overlapping the box, that qualified
    /// (all its cues held) at least once in its persistence window. Needs another model in
    /// the camera's `models`. Default false.
    pub verify_models: bool,
    /// Width of the analysis image (pixels; the height keeps the frame's aspect). Default 160.
    pub analysis_width_px: u32,
    /// Polygons in normalised 0–1 image coordinates where nothing is detected (sky, street
    /// lamps, billboards). Default none.
    pub masks: Vec<Vec<[f64; 2]>>,
    /// `auto`, `on` or `off`. Default `auto`.
    pub night_mode: NightMode,
    /// Night (auto): the median luma of the image below this (0–255): most of the scene is
    /// dark (lit by point sources, whose light on wet roads and walls changes with traffic
    /// and screens). Default 50.
    pub night_luma_max: f64,
    /// Night: a flame pixel is at least this bright (0–255 luma). Default 200.
    pub night_fire_min_luma: f64,
    /// Length of the flicker window (seconds of frame time, at most 32 analysed frames).
    /// Default 2.
    pub flicker_window_secs: f64,
    /// A frame-to-frame luma step counts for flicker from this size (0–255 levels). Default 12.
    pub flicker_step_levels: f64,
    /// Fire: the region's mean flicker (luma oscillations per second per pixel) at least this
    /// (Hz). Default 0.8.
    pub fire_flicker_min_hz: f64,
    /// Fire: flames stay where they burn; the region's centre moves at most this fraction
    /// of the frame width per second over its window. Default 0.05.
    pub fire_max_speed: f64,
    /// Fire colour (Celik & Demirel): Cr − Cb at least this (levels). Default 40.
    pub fire_chroma_min_levels: f64,
    /// Fire core (colour images, not at night): the region's most strongly coloured pixel
    /// has Cr − Cb at least this (levels). Flame light is strongly red-yellow (Cr − Cb about
    /// 100–150 for orange to yellow); skin and blond hair are weakly coloured reflectors
    /// (about 40–60), which pass `fire_chroma_min_levels` but have no such core. Default 60.
    pub fire_core_chroma_min_levels: f64,
    /// Fire regions smaller than this fraction of the frame are ignored. Default 0.0003.
    pub fire_min_area: f64,
    /// Fire persistence: a region is reported while at least `fire_confirm_ratio` of its
    /// observations in the last `fire_window_secs` (and at least 3) qualified. Default 2 s.
    pub fire_window_secs: f64,
    /// Default 0.5.
    pub fire_confirm_ratio: f64,
    /// Smoke colour: |Cb − 128| and |Cr − 128| at most this (levels). Default 12.
    pub smoke_chroma_max_levels: f64,
    /// Smoke is turbulent: the region's grey pixels oscillate at least this often (Hz, as
    /// `fire_flicker_min_hz`). Default 0.2.
    pub smoke_flicker_min_hz: f64,
    /// Smoke regions smaller than this fraction of the frame are ignored. Default 0.002.
    pub smoke_min_area: f64,
    /// Smoke: the region's edge energy at most this multiple of the background's (smoke
    /// blurs what is behind it). Default 1.0.
    pub smoke_edge_ratio_max: f64,
    /// Smoke drifts slowly: the region's centre moves at most this fraction of the frame
    /// width per second. Default 0.05.
    pub smoke_max_speed: f64,
    /// Smoke rising from a flame: a smoke region that touches a confirmed fire region and
    /// reaches above it qualifies without its own motion cues (turbulence, slow drift, blur):
    /// flaming combustion makes smoke, and buoyancy lifts it from the flame. Its colour,
    /// motion, growth and rigid-motion cues and its persistence still apply. Default true.
    pub smoke_above_flame: bool,
    /// Smoke persistence, as for fire. Default 5 s.
    pub smoke_window_secs: f64,
    /// Default 0.6.
    pub smoke_confirm_ratio: f64,
    /// A frame where more than this fraction of the image is foreground (exposure or IR
    /// switch, camera moved) is skipped. Default 0.4.
    pub global_change_fraction: f64,
    /// Frames in the background model's history (MOG2). Default 200.
    pub background_history_frames: u32,
}

impl Default for FireDetectorConfig {
    fn default() -> Self {
        FireDetectorConfig {
            fire: true,
            smoke: true,
            report_regions: true,
            verify_models: false,
            analysis_width_px: 160,
            masks: Vec::new(),
            night_mode: NightMode::Auto,
            night_luma_max: 50.0,
            night_fire_min_luma: 200.0,
            flicker_window_secs: 2.0,
            flicker_step_levels: 12.0,
            fire_flicker_min_hz: 0.8,
            fire_max_speed: 0.05,
            fire_chroma_min_levels: 40.0,
            fire_core_chroma_min_levels: 60.0,
            fire_min_area: 0.0003,
            fire_window_secs: 2.0,
            fire_confirm_ratio: 0.5,
            smoke_chroma_max_levels: 12.0,
            smoke_flicker_min_hz: 0.2,
            smoke_min_area: 0.002,
            smoke_edge_ratio_max: 1.0,
            smoke_max_speed: 0.05,
            smoke_above_flame: true,
            smoke_window_secs: 5.0,
            smoke_confirm_ratio: 0.6,
            global_change_fraction: 0.4,
            background_history_frames: 200,
        }
    }
}

impl FireDetectorConfig {
    /// Checks every field; the error is `(field, message)`, the field relative to the block.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let err = |f: &str, m: &str| Err((f.to_string(), m.to_string()));
        if !self.fire && !self.smoke {
            return err("fire", "`fire` and `smoke` are both off: the detector would do nothing");
        }
        if !self.report_regions && !self.verify_models {
            return err(
                "report_regions",
                "false without verify_models: the detector would do nothing",
            );
        }
        if !(64..=640).contains(&self.analysis_width_px) {
            return err("analysis_width_px", "must be between 64 and 640");
        }
        for (i, poly) in self.masks.iter().enumerate() {
            if poly.len() < 3 {
                return Err((format!("masks[{i}]"), "a mask needs at least 3 points".into()));
            }
            for (j, p) in poly.iter().enumerate() {
                if !p.iter().all(|v| v.is_finite() && (0.0..=1.0).contains(v)) {
                    return Err((
                        format!("masks[{i}][{j}]"),
                        format!(
                            "point [{}, {}] is outside the image (coordinates are 0–1)",
                            p[0], p[1]
                        ),
                    ));
                }
            }
        }
        let ranges: [(&str, f64, f64, f64); 18] = [
            ("smoke_flicker_min_hz", self.smoke_flicker_min_hz, 0.0, 60.0),
            ("fire_window_secs", self.fire_window_secs, 0.5, 60.0),
            ("fire_confirm_ratio", self.fire_confirm_ratio, 0.01, 1.0),
            ("smoke_window_secs", self.smoke_window_secs, 0.5, 120.0),
            ("smoke_confirm_ratio", self.smoke_confirm_ratio, 0.01, 1.0),
            ("fire_max_speed", self.fire_max_speed, 0.0, 10.0),
            ("night_luma_max", self.night_luma_max, 0.0, 255.0),
            ("night_fire_min_luma", self.night_fire_min_luma, 0.0, 255.0),
            ("flicker_window_secs", self.flicker_window_secs, 0.5, 10.0),
            ("flicker_step_levels", self.flicker_step_levels, 1.0, 128.0),
            ("fire_flicker_min_hz", self.fire_flicker_min_hz, 0.0, 60.0),
            ("fire_chroma_min_levels", self.fire_chroma_min_levels, 0.0, 255.0),
            ("fire_core_chroma_min_levels", self.fire_core_chroma_min_levels, 0.0, 255.0),
            ("fire_min_area", self.fire_min_area, 0.0, 1.0),
            ("smoke_chroma_max_levels", self.smoke_chroma_max_levels, 0.0, 128.0),
            ("smoke_min_area", self.smoke_min_area, 0.0, 1.0),
            ("smoke_edge_ratio_max", self.smoke_edge_ratio_max, 0.0, 10.0),
            ("smoke_max_speed", self.smoke_max_speed, 0.0, 10.0),
        ];
        for (f, v, lo, hi) in ranges {
            if !(v.is_finite() && (lo..=hi).contains(&v)) {
                return Err((f.into(), format!("must be between {lo} and {hi}")));
            }
        }
        if !(self.global_change_fraction > 0.0 && self.global_change_fraction <= 1.0) {
            return err("global_change_fraction", "must be > 0 and ≤ 1");
        }
        if !(10..=10_000).contains(&self.background_history_frames) {
            return err("background_history_frames", "must be between 10 and 10000");
        }
        Ok(())
    }
}
