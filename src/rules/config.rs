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
        R::Intrusion(r) => {
            classes_non_empty(&r.classes)?;
            non_negative(&[("min_secs", r.min_secs), ("clear_secs", r.clear_secs), ("cooldown_secs", r.cooldown_secs)])
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
            non_negative(&[("min_secs", r.min_secs), ("clear_secs", r.clear_secs), ("cooldown_secs", r.cooldown_secs)])
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
            R::Presence(_) | R::LineCrossing(_) => None,
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
