//! `[cameras.motion_gate]`: cheap per-camera motion decides whether the camera's models run
//! on an analysed frame (`analytics::motion`, docs/design/0039).

use serde::Deserialize;

/// `[cameras.motion_gate]`: a small grey copy of each analysed frame is compared with a
/// background model of the scene. While nothing moves, nothing is unsure and no fire region
/// is live, the camera's models run only `idle_detect_fps` times a second; on the frames in
/// between, the tracks coast on the last detections of the objects they follow (stationary
/// objects stay tracked, the rules still see every frame). Every field has a default.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MotionGateConfig {
    /// Gate the detector on motion. Default true.
    pub enabled: bool,
    /// Width of the grey copy the motion is read on (pixels; the height keeps the frame's
    /// aspect). Default 160.
    pub analysis_width_px: u32,
    /// A pixel of the grey copy moves when it differs from the background by more than this
    /// (0–255 grey levels), or by more than 3 × its own background noise when that is larger.
    /// Default 10.
    pub min_diff_levels: f32,
    /// The frame moves when at least this fraction of the grey copy's pixels move. Default
    /// 0.0003 (5 of the 14,400 pixels of a 160 × 90 copy).
    pub min_moving_fraction: f64,
    /// Time constant of the background model (seconds of frame time): an object that stops is
    /// part of the background after about twice this. Default 5.
    pub background_secs: f64,
    /// After the last moving frame the models keep running on every frame this long, so new
    /// tracks are confirmed and stopping objects are seen to stop. Default 2.
    pub hold_secs: f64,
    /// On an idle camera (no motion for `hold_secs`, every track settled) the models still run
    /// this many times a second of frame time, so stationary objects are re-detected and
    /// tracks coast on fresh boxes. Default 1 (at or above the camera's `detect_fps` the gate
    /// skips nothing).
    pub idle_detect_fps: f64,
}

impl Default for MotionGateConfig {
    fn default() -> Self {
        MotionGateConfig {
            enabled: true,
            analysis_width_px: 160,
            min_diff_levels: 10.0,
            min_moving_fraction: 0.0003,
            background_secs: 5.0,
            hold_secs: 2.0,
            idle_detect_fps: 1.0,
        }
    }
}

impl MotionGateConfig {
    /// `at(field)` names the field and the camera.
    pub(crate) fn validate(&self, at: &dyn Fn(&str) -> String) -> Result<(), String> {
        if !(16..=1024).contains(&self.analysis_width_px) {
            return Err(format!(
                "{}: must be between 16 and 1024",
                at("motion_gate.analysis_width_px")
            ));
        }
        if !(1.0..=255.0).contains(&self.min_diff_levels) {
            return Err(format!(
                "{}: must be between 1 and 255",
                at("motion_gate.min_diff_levels")
            ));
        }
        if !(self.min_moving_fraction > 0.0 && self.min_moving_fraction <= 1.0) {
            return Err(format!(
                "{}: must be > 0 and at most 1",
                at("motion_gate.min_moving_fraction")
            ));
        }
        for (field, v, max) in [
            ("background_secs", self.background_secs, 3600.0),
            ("hold_secs", self.hold_secs, 3600.0),
            ("idle_detect_fps", self.idle_detect_fps, 120.0),
        ] {
            if !(v.is_finite() && v > 0.0 && v <= max) {
                return Err(format!(
                    "{}: must be > 0 and at most {max}",
                    at(&format!("motion_gate.{field}"))
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, MotionGateConfig};

    fn parse(block: &str) -> Result<Config, String> {
        Config::parse(
            &format!(
                "box_id='b'\ndata_dir='/tmp'\n[models]\n[[cameras]]\nid='gate'\nurl='x.mp4'\n\
                 models=[]\nenabled=false\n{block}"
            ),
            std::path::Path::new("/"),
        )
    }

    #[test]
    fn motion_gate_is_defaulted_and_validated_naming_field_and_camera() {
        let d = MotionGateConfig::default();
        assert_eq!(parse("").unwrap().cameras[0].motion_gate, d);
        assert_eq!(parse("[cameras.motion_gate]\n").unwrap().cameras[0].motion_gate, d);
        let c = parse("[cameras.motion_gate]\nenabled=false\nhold_secs=3\n").unwrap();
        let g = &c.cameras[0].motion_gate;
        assert!(!g.enabled && g.hold_secs == 3.0 && g.idle_detect_fps == d.idle_detect_fps);
        for (bad, field) in [
            ("analysis_width_px=8", "motion_gate.analysis_width_px"),
            ("min_diff_levels=0", "motion_gate.min_diff_levels"),
            ("min_diff_levels=nan", "motion_gate.min_diff_levels"),
            ("min_moving_fraction=0", "motion_gate.min_moving_fraction"),
            ("min_moving_fraction=1.5", "motion_gate.min_moving_fraction"),
            ("background_secs=0", "motion_gate.background_secs"),
            ("hold_secs=-1", "motion_gate.hold_secs"),
            ("hold_secs=inf", "motion_gate.hold_secs"),
            ("idle_detect_fps=0", "motion_gate.idle_detect_fps"),
            ("idle_detect_fps=nan", "motion_gate.idle_detect_fps"),
        ] {
            let e = parse(&format!("[cameras.motion_gate]\n{bad}\n")).unwrap_err();
            assert!(e.contains(field) && e.contains("gate"), "{bad}: {e}");
        }
        let e = parse("[cameras.motion_gate]\nthreshold=3\n").unwrap_err();
        assert!(e.contains("threshold"), "{e}");
    }
}
