//! A camera's geometry: the zones and lines of its config (`[[cameras.zones]]`,
//! `[[cameras.lines]]`) with their validation, and the `Scene` rules look them up in.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Deserialize;

use super::RuleSetup;
use crate::geometry::{dist, polygon_area, polygon_self_intersects, Anchor, Pt};
use crate::types::Track;

/// A named polygon: ≥ 3 points `[x, y]` in 0–1, not self-intersecting.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneConfig {
    pub name: String,
    pub points: Vec<[f64; 2]>,
}

/// A named polyline: ≥ 2 points `[x, y]` in 0–1. Crossing `a_to_b` = from the left side to
/// the right side of the line walked from its first to its last point (on screen).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineConfig {
    pub name: String,
    pub points: Vec<[f64; 2]>,
}

/// Zones and lines of one camera: names unique and non-empty, enough points, coordinates
/// in 0–1, zones not self-intersecting and with an area. Returns `(field, message)` on
/// error, the field relative to the camera (e.g. `zones[1].points`).
pub fn validate_geometry(
    zones: &[ZoneConfig],
    lines: &[LineConfig],
) -> Result<(), (String, String)> {
    let coords = |pts: &[[f64; 2]], field: &str, what: &str, name: &str| {
        for (k, p) in pts.iter().enumerate() {
            if !p.iter().all(|v| v.is_finite() && (0.0..=1.0).contains(v)) {
                return Err((
                    field.to_string(),
                    format!(
                        "{what} `{name}` point {k} [{}, {}] is outside the image \
                         (coordinates are normalised 0–1)",
                        p[0], p[1]
                    ),
                ));
            }
        }
        Ok(())
    };
    let mut seen = HashSet::new();
    for (k, z) in zones.iter().enumerate() {
        let name_field = format!("zones[{k}].name");
        if z.name.trim().is_empty() {
            return Err((name_field, "zone names must not be empty".into()));
        }
        if !seen.insert(z.name.as_str()) {
            return Err((name_field, format!("duplicate zone `{}`", z.name)));
        }
        let field = format!("zones[{k}].points");
        if z.points.len() < 3 {
            let n = z.points.len();
            return Err((field, format!("zone `{}` needs at least 3 points, has {n}", z.name)));
        }
        coords(&z.points, &field, "zone", &z.name)?;
        if polygon_self_intersects(&z.points) {
            return Err((field, format!("zone `{}` intersects itself", z.name)));
        }
        if polygon_area(&z.points) < 1e-9 {
            return Err((field, format!("zone `{}` has no area", z.name)));
        }
    }
    let mut seen = HashSet::new();
    for (k, l) in lines.iter().enumerate() {
        let name_field = format!("lines[{k}].name");
        if l.name.trim().is_empty() {
            return Err((name_field, "line names must not be empty".into()));
        }
        if !seen.insert(l.name.as_str()) {
            return Err((name_field, format!("duplicate line `{}`", l.name)));
        }
        let field = format!("lines[{k}].points");
        if l.points.len() < 2 {
            let n = l.points.len();
            return Err((field, format!("line `{}` needs at least 2 points, has {n}", l.name)));
        }
        coords(&l.points, &field, "line", &l.name)?;
        if l.points.windows(2).any(|w| dist(w[0], w[1]) < 1e-9) {
            return Err((
                field,
                format!("line `{}` repeats a point (zero-length segment)", l.name),
            ));
        }
    }
    Ok(())
}

/// Zones, lines and anchors of one camera, as the rules look them up.
#[derive(Debug, Clone, Default)]
pub struct Scene {
    pub camera_id: String,
    pub zones: HashMap<String, Vec<Pt>>,
    pub lines: HashMap<String, Vec<Pt>>,
    pub anchors: BTreeMap<String, Anchor>,
}

impl Scene {
    pub fn new(s: &RuleSetup) -> Scene {
        Scene {
            camera_id: s.camera_id.to_string(),
            zones: s.zones.iter().map(|z| (z.name.clone(), z.points.clone())).collect(),
            lines: s.lines.iter().map(|l| (l.name.clone(), l.points.clone())).collect(),
            anchors: s.anchors.clone(),
        }
    }

    pub fn zone(&self, name: &str) -> Vec<Pt> {
        self.zones.get(name).cloned().unwrap_or_else(|| {
            tracing::warn!(
                camera = %self.camera_id,
                "rule refers to unknown zone `{name}`; it never matches"
            );
            Vec::new()
        })
    }

    pub fn line(&self, name: &str) -> Vec<Pt> {
        self.lines.get(name).cloned().unwrap_or_else(|| {
            tracing::warn!(
                camera = %self.camera_id,
                "rule refers to unknown line `{name}`; it never matches"
            );
            Vec::new()
        })
    }

    /// The anchor point of a track's box (per class; default bottom centre).
    pub fn anchor(&self, t: &Track) -> Pt {
        self.anchors.get(&t.class).copied().unwrap_or_default().point(&t.bbox)
    }
}
