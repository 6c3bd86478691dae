//! A camera's geometry: the zones and lines of its config (`[[cameras.zones]]`,
//! `[[cameras.lines]]`) with their validation, and the `Scene` rules look them up in.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::RuleSetup;
use crate::geometry::{dist, polygon_area, polygon_self_intersects, Anchor, CrossDir, Pt};
use crate::types::Track;

/// A named polygon: ≥ 3 points `[x, y]` in 0–1, not self-intersecting.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneConfig {
    pub name: String,
    pub points: Vec<[f64; 2]>,
}

/// A named polyline: ≥ 2 points `[x, y]` in 0–1. Crossing `a_to_b` = from the left side to
/// the right side of the line walked from its first to its last point (on screen; side A is
/// on the left of that walk, side B on its right, see docs/line-directions.svg).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineConfig {
    pub name: String,
    pub points: Vec<[f64; 2]>,
    /// Optional names of the two crossing directions (e.g. "northbound"/"southbound"),
    /// shown next to the stable `a_to_b`/`b_to_a` keys. Both or neither.
    #[serde(default)]
    pub directions: Option<LineDirections>,
}

/// `directions = { a_to_b = "northbound", b_to_a = "southbound" }` of a line: both sides
/// non-empty and distinct once validated (`validate_geometry`). The sides are options so that
/// a missing one gets an error naming the field and the camera, not a bare serde message.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LineDirections {
    #[serde(default)]
    pub a_to_b: Option<String>,
    #[serde(default)]
    pub b_to_a: Option<String>,
}

impl LineDirections {
    /// The name of a crossing direction (always `Some` once validated).
    pub fn name(&self, dir: CrossDir) -> Option<&str> {
        match dir {
            CrossDir::AToB => self.a_to_b.as_deref(),
            CrossDir::BToA => self.b_to_a.as_deref(),
        }
    }

    /// Both names given, non-empty and distinct; `(field, message)` with the field relative
    /// to the line's `directions`.
    fn validate(&self, line: &str) -> Result<(), (String, String)> {
        for (key, other, v) in
            [("a_to_b", "b_to_a", &self.a_to_b), ("b_to_a", "a_to_b", &self.b_to_a)]
        {
            match v {
                None => {
                    return Err((
                        key.into(),
                        format!(
                            "line `{line}` names direction `{other}` but not `{key}`: give both \
                             (directions = {{ a_to_b = \"…\", b_to_a = \"…\" }}) or neither"
                        ),
                    ))
                }
                Some(n) if n.trim().is_empty() => {
                    return Err((
                        key.into(),
                        format!("line `{line}`: direction names must not be empty"),
                    ))
                }
                Some(_) => {}
            }
        }
        if self.a_to_b.as_deref().map(str::trim) == self.b_to_a.as_deref().map(str::trim) {
            return Err((
                "b_to_a".into(),
                format!("line `{line}`: the two directions must have different names"),
            ));
        }
        Ok(())
    }
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
        if let Some(d) = &l.directions {
            d.validate(&l.name).map_err(|(f, m)| (format!("lines[{k}].directions.{f}"), m))?;
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
    /// The direction names of the lines that have them.
    pub directions: HashMap<String, LineDirections>,
    pub anchors: BTreeMap<String, Anchor>,
}

impl Scene {
    pub fn new(s: &RuleSetup) -> Scene {
        Scene {
            camera_id: s.camera_id.to_string(),
            zones: s.zones.iter().map(|z| (z.name.clone(), z.points.clone())).collect(),
            lines: s.lines.iter().map(|l| (l.name.clone(), l.points.clone())).collect(),
            directions: s
                .lines
                .iter()
                .filter_map(|l| Some((l.name.clone(), l.directions.clone()?)))
                .collect(),
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

    /// The name of `dir` on line `name`, if the line names its directions.
    pub fn direction_name(&self, name: &str, dir: CrossDir) -> Option<String> {
        self.directions.get(name).and_then(|d| d.name(dir)).map(str::to_string)
    }

    /// The anchor point of a track's box (per class; default bottom centre).
    pub fn anchor(&self, t: &Track) -> Pt {
        self.anchors.get(&t.class).copied().unwrap_or_default().point(&t.bbox)
    }
}
