//! Config blocks of the track-based rules (`[[cameras.rules]]` with `kind = …`), with their
//! defaults and validation. docs/config.md documents every key; keep the two in step.

use serde::Deserialize;

use crate::types::Severity;

fn sev_info() -> Severity {
    Severity::Info
}
fn sev_medium() -> Severity {
    Severity::Medium
}
fn sev_high() -> Severity {
    Severity::High
}
fn people() -> Vec<String> {
    vec!["person".into()]
}
fn vehicles() -> Vec<String> {
    ["car", "bus", "truck", "motorcycle"].iter().map(|s| s.to_string()).collect()
}
// serde's `default = "path"` needs a path to a function, so each default is spelled out.
macro_rules! defaults {
    ($($name:ident = $v:expr;)*) => { $(fn $name() -> f64 { $v })* };
}
defaults! {
    d0 = 0.0; d1 = 1.0; d2 = 2.0; d3 = 3.0; d5 = 5.0; d10 = 10.0; d30 = 30.0; d60 = 60.0;
    d_offset = 0.02; d_tol_deg = 45.0; d_disp = 0.05; d_still = 0.02; d_speed = 0.02;
}
fn count5() -> u32 {
    5
}

/// `intrusion`: a track of `classes` with its anchor inside `zone` for ≥ `min_secs`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntrusionRule {
    pub zone: String,
    /// Required, non-empty.
    pub classes: Vec<String>,
    #[serde(default = "d1")]
    pub min_secs: f64,
    /// A track lost (not reported) this long ends its event. Default 2.
    #[serde(default = "d2")]
    pub clear_secs: f64,
    #[serde(default = "sev_high")]
    pub severity: Severity,
    #[serde(default = "d10")]
    pub cooldown_secs: f64,
}

/// Which crossings of a line raise events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    AToB,
    BToA,
    Both,
}

/// `line_crossing`: a track's anchor crosses `line`; every crossing is counted.
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
    /// Hysteresis: a crossing counts once the anchor is this far (normalised) past the line
    /// without having come back. Default 0.02.
    #[serde(default = "d_offset")]
    pub min_offset: f64,
    #[serde(default = "sev_info")]
    pub severity: Severity,
    /// Per track. Default 0.
    #[serde(default = "d0")]
    pub cooldown_secs: f64,
}
fn both() -> Direction {
    Direction::Both
}

/// `loitering`: one track dwelling in `zone` ≥ `dwell_secs`, gaps ≤ `max_gap_secs` tolerated.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoiteringRule {
    pub zone: String,
    #[serde(default = "people")]
    pub classes: Vec<String>,
    #[serde(default = "d30")]
    pub dwell_secs: f64,
    #[serde(default = "d3")]
    pub max_gap_secs: f64,
    #[serde(default = "sev_medium")]
    pub severity: Severity,
    #[serde(default = "d30")]
    pub cooldown_secs: f64,
}

/// `crowd`: ≥ `min_count` tracks of `classes` in `zone` for ≥ `min_secs`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrowdRule {
    pub zone: String,
    #[serde(default = "people")]
    pub classes: Vec<String>,
    #[serde(default = "count5")]
    pub min_count: u32,
    #[serde(default = "d5")]
    pub min_secs: f64,
    #[serde(default = "d5")]
    pub clear_secs: f64,
    #[serde(default = "sev_medium")]
    pub severity: Severity,
    #[serde(default = "d30")]
    pub cooldown_secs: f64,
}

/// `wrong_way`: a track in `zone` moving against `allowed_heading_deg`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WrongWayRule {
    pub zone: String,
    #[serde(default = "vehicles")]
    pub classes: Vec<String>,
    /// 0 = image right, 90 = image down, 180 = left, 270 (or −90) = up. Required.
    pub allowed_heading_deg: f64,
    /// Moving within this many degrees of the opposite heading is wrong way. Default 45.
    #[serde(default = "d_tol_deg")]
    pub tolerance_deg: f64,
    #[serde(default = "d1")]
    pub min_secs: f64,
    #[serde(default = "d_disp")]
    pub min_displacement: f64,
    #[serde(default = "d2")]
    pub clear_secs: f64,
    #[serde(default = "sev_high")]
    pub severity: Severity,
    #[serde(default = "d30")]
    pub cooldown_secs: f64,
}

/// `stalled_vehicle`: a vehicle whose anchor stays within `tolerance` for ≥ `stationary_secs`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StalledVehicleRule {
    pub zone: String,
    #[serde(default = "vehicles")]
    pub classes: Vec<String>,
    #[serde(default = "d60")]
    pub stationary_secs: f64,
    #[serde(default = "d_still")]
    pub tolerance: f64,
    #[serde(default = "d5")]
    pub clear_secs: f64,
    #[serde(default = "sev_medium")]
    pub severity: Severity,
    #[serde(default = "d60")]
    pub cooldown_secs: f64,
}

/// `congestion`: ≥ `min_count` vehicles in `zone` with median speed < `max_speed`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CongestionRule {
    pub zone: String,
    #[serde(default = "vehicles")]
    pub classes: Vec<String>,
    #[serde(default = "count5")]
    pub min_count: u32,
    /// Normalised image units per second (anchor speed). Default 0.02.
    #[serde(default = "d_speed")]
    pub max_speed: f64,
    #[serde(default = "d30")]
    pub min_secs: f64,
    #[serde(default = "d10")]
    pub clear_secs: f64,
    #[serde(default = "sev_medium")]
    pub severity: Severity,
    #[serde(default = "d60")]
    pub cooldown_secs: f64,
}

/// Checks `name ≥ 0` (and finite) for each `(name, value)`.
pub(crate) fn non_negative(fields: &[(&str, f64)]) -> Result<(), (String, String)> {
    for (name, v) in fields {
        if !(v.is_finite() && *v >= 0.0) {
            return Err((name.to_string(), format!("must be a number ≥ 0, got {v}")));
        }
    }
    Ok(())
}

fn classes_non_empty(c: &[String]) -> Result<(), (String, String)> {
    if c.is_empty() || c.iter().any(|s| s.trim().is_empty()) {
        return Err(("classes".into(), "list at least one class (no empty names)".into()));
    }
    Ok(())
}

/// Validates a rule's numbers and classes; returns `(field, message)` on error. Zone and
/// line names are checked by `Config::validate` against the camera's geometry.
pub(crate) fn validate(r: &crate::config::RuleConfig) -> Result<(), (String, String)> {
    use crate::config::RuleConfig as R;
    match r {
        R::Presence(_) => Ok(()),
        R::Fall(r) => validate_fall(r),
        R::Fire(r) => validate_fire(&r.params()),
        R::Smoke(r) => validate_fire(&r.params()),
        R::CameraTamper(r) => validate_tamper(r),
        R::CameraOffline(r) => non_negative(&[("offline_secs", r.offline_secs)]),
        R::Intrusion(r) => {
            classes_non_empty(&r.classes)?;
            non_negative(&[
                ("min_secs", r.min_secs),
                ("clear_secs", r.clear_secs),
                ("cooldown_secs", r.cooldown_secs),
            ])
        }
        R::LineCrossing(r) => {
            if r.classes.iter().any(|s| s.trim().is_empty()) {
                return Err(("classes".into(), "class names must not be empty".into()));
            }
            non_negative(&[("min_offset", r.min_offset), ("cooldown_secs", r.cooldown_secs)])?;
            if r.min_offset > 0.5 {
                return Err(("min_offset".into(), "must be at most 0.5".into()));
            }
            Ok(())
        }
        R::Loitering(r) => {
            classes_non_empty(&r.classes)?;
            non_negative(&[
                ("dwell_secs", r.dwell_secs),
                ("max_gap_secs", r.max_gap_secs),
                ("cooldown_secs", r.cooldown_secs),
            ])
        }
        R::Crowd(r) => {
            classes_non_empty(&r.classes)?;
            if r.min_count == 0 {
                return Err(("min_count".into(), "must be ≥ 1".into()));
            }
            non_negative(&[
                ("min_secs", r.min_secs),
                ("clear_secs", r.clear_secs),
                ("cooldown_secs", r.cooldown_secs),
            ])
        }
        R::WrongWay(r) => {
            classes_non_empty(&r.classes)?;
            if !r.allowed_heading_deg.is_finite() {
                return Err(("allowed_heading_deg".into(), "must be a number of degrees".into()));
            }
            if !(r.tolerance_deg.is_finite() && (0.0..90.0).contains(&r.tolerance_deg)) {
                return Err(("tolerance_deg".into(), "must be ≥ 0 and < 90".into()));
            }
            non_negative(&[
                ("min_secs", r.min_secs),
                ("min_displacement", r.min_displacement),
                ("clear_secs", r.clear_secs),
                ("cooldown_secs", r.cooldown_secs),
            ])
        }
        R::StalledVehicle(r) => {
            classes_non_empty(&r.classes)?;
            non_negative(&[
                ("stationary_secs", r.stationary_secs),
                ("tolerance", r.tolerance),
                ("clear_secs", r.clear_secs),
                ("cooldown_secs", r.cooldown_secs),
            ])
        }
        R::Congestion(r) => {
            classes_non_empty(&r.classes)?;
            if r.min_count == 0 {
                return Err(("min_count".into(), "must be ≥ 1".into()));
            }
            non_negative(&[
                ("max_speed", r.max_speed),
                ("min_secs", r.min_secs),
                ("clear_secs", r.clear_secs),
                ("cooldown_secs", r.cooldown_secs),
            ])
        }
    }
}

impl crate::config::RuleConfig {
    /// The zone this rule refers to, if any.
    pub fn zone(&self) -> Option<&str> {
        use crate::config::RuleConfig as R;
        match self {
            R::Presence(_)
            | R::LineCrossing(_)
            | R::Fall(_)
            | R::Fire(_)
            | R::Smoke(_)
            | R::CameraTamper(_)
            | R::CameraOffline(_) => None,
            R::Intrusion(r) => Some(&r.zone),
            R::Loitering(r) => Some(&r.zone),
            R::Crowd(r) => Some(&r.zone),
            R::WrongWay(r) => Some(&r.zone),
            R::StalledVehicle(r) => Some(&r.zone),
            R::Congestion(r) => Some(&r.zone),
        }
    }
    /// The line this rule refers to, if any.
    pub fn line(&self) -> Option<&str> {
        match self {
            crate::config::RuleConfig::LineCrossing(r) => Some(&r.line),
            _ => None,
        }
    }
}

fn sev_critical() -> Severity {
    Severity::Critical
}
fn fire_classes() -> Vec<String> {
    vec!["fire".into()]
}
fn smoke_classes() -> Vec<String> {
    vec!["smoke".into()]
}
defaults! {
    d_upright = 1.3; d_drop = 0.3; d_area = 0.0005; d_dark = 20.0; d_bright = 235.0;
    d_min_std = 6.0; d_blur = 4.0; d_shift = 0.05; d_sim = 0.4; d_alpha = 0.02;
}
fn score035() -> f32 {
    0.35
}
fn score04() -> f32 {
    0.4
}
fn k3() -> u32 {
    3
}
fn n5() -> u32 {
    5
}
fn tamper_width() -> u32 {
    160
}

/// `fall`: a tracked person whose box turns from upright to lying with a height drop, and
/// who stays down (see `rules::fall`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FallRule {
    #[serde(default = "people")]
    pub classes: Vec<String>,
    #[serde(default = "score04")]
    pub min_score: f32,
    /// Upright: box height / width (in pixels) ≥ this. Default 1.3.
    #[serde(default = "d_upright")]
    pub upright_ratio: f64,
    /// Lying: box width / height (in pixels) ≥ this. Default 1.0.
    #[serde(default = "d1")]
    pub lying_ratio: f64,
    /// The box height must drop by at least this fraction of the upright height. Default 0.3.
    #[serde(default = "d_drop")]
    pub min_height_drop: f64,
    /// Upright → lying within this many seconds. Default 2.
    #[serde(default = "d2")]
    pub transition_secs: f64,
    /// The person must stay down (not upright again) this long. Default 3.
    #[serde(default = "d3")]
    pub down_secs: f64,
    /// A track not reported this long ends its event. Default 5.
    #[serde(default = "d5")]
    pub clear_secs: f64,
    #[serde(default = "sev_high")]
    pub severity: Severity,
    #[serde(default = "d30")]
    pub cooldown_secs: f64,
}

/// The parameters shared by `fire` and `smoke` (which differ only in their defaults).
#[derive(Debug, Clone)]
pub struct FireParams {
    pub kind: &'static str,
    pub classes: Vec<String>,
    pub min_score: f32,
    pub min_area: f64,
    pub k: u32,
    pub n: u32,
    pub clear_secs: f64,
    pub severity: Severity,
}

macro_rules! fire_rule {
    ($(#[$m:meta])* $name:ident, $kind:literal, $classes:literal, $sev:literal) => {
        $(#[$m])*
        #[derive(Debug, Clone, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            #[serde(default = $classes)]
            pub classes: Vec<String>,
            #[serde(default = "score035")]
            pub min_score: f32,
            /// Minimum box area as a fraction of the frame (0–1). Default 0.0005.
            #[serde(default = "d_area")]
            pub min_area: f64,
            /// Qualifying frames needed among the last `n` analysed frames. Default 3 of 5.
            #[serde(default = "k3")]
            pub k: u32,
            #[serde(default = "n5")]
            pub n: u32,
            /// The event ends after this long without a qualifying frame. Default 10.
            #[serde(default = "d10")]
            pub clear_secs: f64,
            #[serde(default = $sev)]
            pub severity: Severity,
        }
        impl $name {
            pub fn params(&self) -> FireParams {
                FireParams {
                    kind: $kind,
                    classes: self.classes.clone(),
                    min_score: self.min_score,
                    min_area: self.min_area,
                    k: self.k,
                    n: self.n,
                    clear_secs: self.clear_secs,
                    severity: self.severity,
                }
            }
        }
    };
}

fire_rule!(
    /// `fire`: detections of `classes` (default ["fire"]) in ≥ k of the last n analysed frames.
    FireRule, "fire", "fire_classes", "sev_critical"
);
fire_rule!(
    /// `smoke`: like `fire`, with `classes` default ["smoke"] and severity "high".
    SmokeRule, "smoke", "smoke_classes", "sev_high"
);

fn validate_fire(r: &FireParams) -> Result<(), (String, String)> {
    classes_non_empty(&r.classes)?;
    if !(0.0..=1.0).contains(&r.min_score) {
        return Err(("min_score".into(), "must be between 0 and 1".into()));
    }
    if !(r.min_area.is_finite() && (0.0..=1.0).contains(&r.min_area)) {
        return Err((
            "min_area".into(),
            "must be between 0 and 1 (a fraction of the frame)".into(),
        ));
    }
    if r.n == 0 || r.n > 1000 {
        return Err(("n".into(), "must be between 1 and 1000".into()));
    }
    if r.k == 0 || r.k > r.n {
        return Err(("k".into(), format!("must be between 1 and n ({})", r.n)));
    }
    non_negative(&[("clear_secs", r.clear_secs)])
}

fn validate_fall(r: &FallRule) -> Result<(), (String, String)> {
    classes_non_empty(&r.classes)?;
    if !(0.0..=1.0).contains(&r.min_score) {
        return Err(("min_score".into(), "must be between 0 and 1".into()));
    }
    for (name, v) in [("upright_ratio", r.upright_ratio), ("lying_ratio", r.lying_ratio)] {
        if !(v.is_finite() && v > 0.0) {
            return Err((name.into(), format!("must be a number > 0, got {v}")));
        }
    }
    if !(r.min_height_drop.is_finite() && (0.0..1.0).contains(&r.min_height_drop)) {
        return Err(("min_height_drop".into(), "must be ≥ 0 and < 1".into()));
    }
    non_negative(&[
        ("transition_secs", r.transition_secs),
        ("down_secs", r.down_secs),
        ("clear_secs", r.clear_secs),
        ("cooldown_secs", r.cooldown_secs),
    ])
}

/// `camera_tamper`: the view is covered, defocused or moved (see `rules::tamper`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TamperRule {
    /// Width of the grey copy compared with the reference (pixels). Default 160.
    #[serde(default = "tamper_width")]
    pub analysis_width: u32,
    /// Covered: mean grey level below this (0–255). Default 20.
    #[serde(default = "d_dark")]
    pub dark_level: f64,
    /// Covered: mean grey level above this. Default 235.
    #[serde(default = "d_bright")]
    pub bright_level: f64,
    /// Covered: grey-level standard deviation below this. Default 6.
    #[serde(default = "d_min_std")]
    pub min_stddev: f64,
    /// Defocused: Laplacian variance below the reference's divided by this. Default 4.
    #[serde(default = "d_blur")]
    pub blur_factor: f64,
    /// Moved: global shift vs the reference ≥ this fraction of the width. Default 0.05.
    #[serde(default = "d_shift")]
    pub max_shift: f64,
    /// Moved: correlation with the reference below this (−1–1). Default 0.4.
    #[serde(default = "d_sim")]
    pub min_similarity: f64,
    /// Weight of each normal frame in the rolling reference (0–1). Default 0.02.
    #[serde(default = "d_alpha")]
    pub reference_alpha: f64,
    /// A condition must hold this long. Default 5.
    #[serde(default = "d5")]
    pub min_secs: f64,
    /// The event ends after the view has been normal this long. Default 5.
    #[serde(default = "d5")]
    pub clear_secs: f64,
    #[serde(default = "sev_high")]
    pub severity: Severity,
}

fn validate_tamper(r: &TamperRule) -> Result<(), (String, String)> {
    if !(16..=1024).contains(&r.analysis_width) {
        return Err(("analysis_width".into(), "must be between 16 and 1024".into()));
    }
    for (name, v) in [("dark_level", r.dark_level), ("bright_level", r.bright_level)] {
        if !(v.is_finite() && (0.0..=255.0).contains(&v)) {
            return Err((name.into(), "must be between 0 and 255".into()));
        }
    }
    if r.blur_factor.is_nan() || r.blur_factor < 1.0 {
        return Err(("blur_factor".into(), "must be ≥ 1".into()));
    }
    if !(r.max_shift.is_finite() && r.max_shift > 0.0 && r.max_shift <= 1.0) {
        return Err(("max_shift".into(), "must be > 0 and ≤ 1".into()));
    }
    if !(r.min_similarity.is_finite() && (-1.0..=1.0).contains(&r.min_similarity)) {
        return Err(("min_similarity".into(), "must be between -1 and 1".into()));
    }
    if !(r.reference_alpha.is_finite() && r.reference_alpha > 0.0 && r.reference_alpha <= 1.0) {
        return Err(("reference_alpha".into(), "must be > 0 and ≤ 1".into()));
    }
    non_negative(&[
        ("min_stddev", r.min_stddev),
        ("min_secs", r.min_secs),
        ("clear_secs", r.clear_secs),
    ])
}

/// `camera_offline`: the camera has been offline ≥ `offline_secs` (from ingest health, not
/// frames; see `rules::offline`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraOfflineRule {
    #[serde(default = "d10")]
    pub offline_secs: f64,
    #[serde(default = "sev_high")]
    pub severity: Severity,
}

#[cfg(test)]
mod tests {
    use crate::config::RuleConfig;

    fn rule(toml_text: &str) -> Result<(), (String, String)> {
        let r: RuleConfig =
            toml::from_str(toml_text).map_err(|e| ("parse".to_string(), e.to_string()))?;
        super::validate(&r)
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
}
