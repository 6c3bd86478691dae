//! Plane geometry for zones and lines, in normalised image coordinates: x from 0 (left) to
//! 1 (right), y from 0 (top) to 1 (bottom), so geometry survives a change of detect size.
//!
//! Sides of a line: walk along a segment from its first point to its second. A point is on
//! the **right** side if it is on your right hand *as seen on the screen* (y grows
//! downwards). For a horizontal line drawn from left to right, "right" is below the line
//! (larger y) and "left" is above it. A crossing `a_to_b` goes from the left side to the
//! right side; `b_to_a` the other way.

use serde::{Deserialize, Serialize};

/// An axis-aligned box in normalised image coordinates (0–1, origin top-left).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BBox {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
}

impl BBox {
    pub fn area(&self) -> f32 {
        (self.x2 - self.x1).max(0.0) * (self.y2 - self.y1).max(0.0)
    }
    /// Area of the overlap of the two boxes.
    pub fn intersection(&self, o: &BBox) -> f32 {
        let iw = (self.x2.min(o.x2) - self.x1.max(o.x1)).max(0.0);
        let ih = (self.y2.min(o.y2) - self.y1.max(o.y1)).max(0.0);
        iw * ih
    }
    /// The smallest box enclosing both.
    pub fn enclosing(&self, o: &BBox) -> BBox {
        BBox {
            x1: self.x1.min(o.x1),
            y1: self.y1.min(o.y1),
            x2: self.x2.max(o.x2),
            y2: self.y2.max(o.y2),
        }
    }
    pub fn iou(&self, o: &BBox) -> f32 {
        let inter = self.intersection(o);
        let union = self.area() + o.area() - inter;
        if union <= 0.0 {
            0.0
        } else {
            inter / union
        }
    }
}

/// A point (x, y) in normalised image coordinates.
pub type Pt = [f64; 2];

const EPS: f64 = 1e-12;

fn sub(a: Pt, b: Pt) -> Pt {
    [a[0] - b[0], a[1] - b[1]]
}

/// z of the cross product (b − a) × (p − a): > 0 when `p` is on the right of a→b (screen
/// coordinates, y down), < 0 on the left, 0 on the line.
pub fn side(a: Pt, b: Pt, p: Pt) -> f64 {
    let d = sub(b, a);
    let v = sub(p, a);
    d[0] * v[1] - d[1] * v[0]
}

/// Euclidean distance.
pub fn dist(a: Pt, b: Pt) -> f64 {
    let d = sub(a, b);
    (d[0] * d[0] + d[1] * d[1]).sqrt()
}

/// Heading of the vector `d` in degrees, 0 = image right, 90 = image down, in (−180, 180].
pub fn heading_deg(d: Pt) -> f64 {
    d[1].atan2(d[0]).to_degrees()
}

/// Smallest absolute difference between two headings, 0–180°.
pub fn angle_diff_deg(a: f64, b: f64) -> f64 {
    let d = (a - b).rem_euclid(360.0);
    if d > 180.0 {
        360.0 - d
    } else {
        d
    }
}

/// Whether `p` lies inside the polygon (even–odd rule; points exactly on an edge may fall
/// either way).
pub fn point_in_polygon(p: Pt, poly: &[Pt]) -> bool {
    let n = poly.len();
    if n < 3 {
        return false;
    }
    let mut inside = false;
    let mut j = n - 1;
    for i in 0..n {
        let (a, b) = (poly[i], poly[j]);
        if (a[1] > p[1]) != (b[1] > p[1]) {
            let x = a[0] + (p[1] - a[1]) * (b[0] - a[0]) / (b[1] - a[1]);
            if p[0] < x {
                inside = !inside;
            }
        }
        j = i;
    }
    inside
}

/// Area of a simple polygon (shoelace), always ≥ 0.
pub fn polygon_area(poly: &[Pt]) -> f64 {
    let n = poly.len();
    if n < 3 {
        return 0.0;
    }
    let mut s = 0.0;
    for i in 0..n {
        let (a, b) = (poly[i], poly[(i + 1) % n]);
        s += a[0] * b[1] - b[0] * a[1];
    }
    (s / 2.0).abs()
}

fn on_segment(a: Pt, b: Pt, p: Pt) -> bool {
    p[0] >= a[0].min(b[0]) - EPS
        && p[0] <= a[0].max(b[0]) + EPS
        && p[1] >= a[1].min(b[1]) - EPS
        && p[1] <= a[1].max(b[1]) + EPS
}

/// Whether the closed segments p1–p2 and q1–q2 share at least one point (touching and
/// collinear overlap included).
pub fn segments_touch(p1: Pt, p2: Pt, q1: Pt, q2: Pt) -> bool {
    let d1 = side(q1, q2, p1);
    let d2 = side(q1, q2, p2);
    let d3 = side(p1, p2, q1);
    let d4 = side(p1, p2, q2);
    if ((d1 > EPS && d2 < -EPS) || (d1 < -EPS && d2 > EPS))
        && ((d3 > EPS && d4 < -EPS) || (d3 < -EPS && d4 > EPS))
    {
        return true;
    }
    (d1.abs() <= EPS && on_segment(q1, q2, p1))
        || (d2.abs() <= EPS && on_segment(q1, q2, p2))
        || (d3.abs() <= EPS && on_segment(p1, p2, q1))
        || (d4.abs() <= EPS && on_segment(p1, p2, q2))
}

/// Whether the polygon (closed: last point joins the first) intersects itself: two
/// non-adjacent edges touch, or two adjacent edges fold back onto each other.
pub fn polygon_self_intersects(poly: &[Pt]) -> bool {
    let n = poly.len();
    if n < 3 {
        return false;
    }
    let edge = |i: usize| (poly[i], poly[(i + 1) % n]);
    for i in 0..n {
        let (a1, a2) = edge(i);
        for j in i + 1..n {
            let (b1, b2) = edge(j);
            let adjacent = j == i + 1 || (i == 0 && j == n - 1);
            if adjacent {
                // Shared vertex: only a fold-back (collinear, overlapping) is an intersection.
                let (shared, a_far, b_far) = if j == i + 1 { (a2, a1, b2) } else { (a1, a2, b1) };
                let u = sub(a_far, shared);
                let v = sub(b_far, shared);
                let cross = u[0] * v[1] - u[1] * v[0];
                let dot = u[0] * v[0] + u[1] * v[1];
                if cross.abs() <= EPS && dot > 0.0 {
                    return true;
                }
            } else if segments_touch(a1, a2, b1, b2) {
                return true;
            }
        }
    }
    false
}

/// Direction of a crossing (see the module docs for sides).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum CrossDir {
    /// From the left side of the line to its right side.
    AToB,
    /// From the right side to the left side.
    BToA,
}

impl CrossDir {
    pub fn as_str(&self) -> &'static str {
        match self {
            CrossDir::AToB => "a_to_b",
            CrossDir::BToA => "b_to_a",
        }
    }
    pub fn parse(s: &str) -> Option<CrossDir> {
        match s {
            "a_to_b" => Some(CrossDir::AToB),
            "b_to_a" => Some(CrossDir::BToA),
            _ => None,
        }
    }
    pub fn opposite(&self) -> CrossDir {
        match self {
            CrossDir::AToB => CrossDir::BToA,
            CrossDir::BToA => CrossDir::AToB,
        }
    }
}

/// Where the motion p1→p2 properly crosses the segment a→b: `(t, direction)` with `t` in
/// (0, 1] the fraction of the motion at the crossing. A motion that starts on the segment
/// (t = 0) or only touches it without changing side is not a crossing; `b_inclusive`
/// decides whether a crossing exactly through `b` counts (so that a polyline vertex is
/// counted once, by the segment that starts there).
pub fn segment_crossing(
    p1: Pt,
    p2: Pt,
    a: Pt,
    b: Pt,
    b_inclusive: bool,
) -> Option<(f64, CrossDir)> {
    let s1 = side(a, b, p1);
    let s2 = side(a, b, p2);
    // Strictly from one side to the other: a motion ending exactly on the line has not
    // crossed yet (callers keep the last position that was off the line).
    let dir = if s1 < -EPS && s2 > EPS {
        CrossDir::AToB
    } else if s1 > EPS && s2 < -EPS {
        CrossDir::BToA
    } else {
        return None;
    };
    let t = s1 / (s1 - s2);
    let m = sub(p2, p1);
    let x = [p1[0] + t * m[0], p1[1] + t * m[1]];
    // Position along a→b.
    let d = sub(b, a);
    let len2 = d[0] * d[0] + d[1] * d[1];
    if len2 <= EPS {
        return None;
    }
    let u = ((x[0] - a[0]) * d[0] + (x[1] - a[1]) * d[1]) / len2;
    let ok = u >= -1e-9 && if b_inclusive { u <= 1.0 + 1e-9 } else { u < 1.0 - 1e-9 };
    ok.then_some((t, dir))
}

/// Every crossing of the motion p1→p2 with the polyline, ordered along the motion.
pub fn polyline_crossings(p1: Pt, p2: Pt, line: &[Pt]) -> Vec<(f64, CrossDir)> {
    let mut v: Vec<(f64, CrossDir)> = Vec::new();
    let n = line.len();
    for i in 0..n.saturating_sub(1) {
        if let Some(c) = segment_crossing(p1, p2, line[i], line[i + 1], i + 2 == n) {
            v.push(c);
        }
    }
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    v
}

/// Whether the polyline touches the box (closed: an edge or corner on the line counts): a
/// box that does not touch it lies entirely on one side of every segment near it.
pub fn polyline_touches_box(line: &[Pt], b: &BBox) -> bool {
    let (x1, y1, x2, y2) = (b.x1 as f64, b.y1 as f64, b.x2 as f64, b.y2 as f64);
    let inside = |p: Pt| p[0] >= x1 && p[0] <= x2 && p[1] >= y1 && p[1] <= y2;
    let corners = [[x1, y1], [x2, y1], [x2, y2], [x1, y2]];
    if line.len() == 1 {
        return inside(line[0]);
    }
    line.windows(2).any(|w| {
        inside(w[0])
            || inside(w[1])
            || (0..4).any(|i| segments_touch(w[0], w[1], corners[i], corners[(i + 1) % 4]))
    })
}

/// Distance from `p` to the nearest point of the polyline.
pub fn distance_to_polyline(p: Pt, line: &[Pt]) -> f64 {
    let mut best = f64::INFINITY;
    for w in line.windows(2) {
        let (a, b) = (w[0], w[1]);
        let d = sub(b, a);
        let len2 = d[0] * d[0] + d[1] * d[1];
        let t = if len2 <= EPS {
            0.0
        } else {
            (((p[0] - a[0]) * d[0] + (p[1] - a[1]) * d[1]) / len2).clamp(0.0, 1.0)
        };
        best = best.min(dist(p, [a[0] + t * d[0], a[1] + t * d[1]]));
    }
    if line.len() == 1 {
        best = dist(p, line[0]);
    }
    best
}

/// The point of a box that stands for the object's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Anchor {
    /// Middle of the bottom edge: where people and vehicles touch the ground.
    #[default]
    BottomCenter,
    Center,
    TopCenter,
}

impl Anchor {
    pub fn point(&self, b: &BBox) -> Pt {
        let x = (b.x1 as f64 + b.x2 as f64) / 2.0;
        let y = match self {
            Anchor::BottomCenter => b.y2 as f64,
            Anchor::Center => (b.y1 as f64 + b.y2 as f64) / 2.0,
            Anchor::TopCenter => b.y1 as f64,
        };
        [x, y]
    }
}

/// Whether `a`, `b`, `c` are (nearly) on one line: twice their triangle's area is under
/// `rel` times the square of its longest side (scale-free, so it works for normalised
/// image points and for metres alike).
pub fn collinear(a: Pt, b: Pt, c: Pt, rel: f64) -> bool {
    let longest = dist(a, b).max(dist(b, c)).max(dist(a, c));
    longest <= EPS || side(a, b, c).abs() <= rel * longest * longest
}

/// Whether the closed polygon is strictly convex, its points listed in order around it
/// (either way round).
pub fn convex_in_order(poly: &[Pt]) -> bool {
    let n = poly.len();
    if n < 3 {
        return false;
    }
    let s: Vec<f64> = (0..n).map(|i| side(poly[i], poly[(i + 1) % n], poly[(i + 2) % n])).collect();
    (s.iter().all(|v| *v > EPS) || s.iter().all(|v| *v < -EPS)) && !polygon_self_intersects(poly)
}

/// A projective map of the plane (3×3 matrix acting on `[x, y, 1]`): the image of a flat
/// ground plane seen by a pinhole camera maps to the ground by one of these (see
/// `rules::ground`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Homography {
    m: [[f64; 3]; 3],
}

impl Homography {
    /// The map taking `src[i]` to `dst[i]` (i = 0..4): the direct linear solution with
    /// `h33 = 1`, on Hartley-normalised points (centroid at the origin, mean distance √2)
    /// for conditioning. `Err` when the 8×8 system is singular (three points on a line).
    pub fn from_4_points(src: &[Pt; 4], dst: &[Pt; 4]) -> Result<Homography, String> {
        let (ts, ns) = normalise(src).ok_or("the points coincide")?;
        let (td, nd) = normalise(dst).ok_or("the points coincide")?;
        let mut a = [[0.0f64; 9]; 8];
        for i in 0..4 {
            let ([x, y], [u, v]) = (ns[i], nd[i]);
            a[2 * i] = [x, y, 1.0, 0.0, 0.0, 0.0, -x * u, -y * u, u];
            a[2 * i + 1] = [0.0, 0.0, 0.0, x, y, 1.0, -x * v, -y * v, v];
        }
        let h = solve8(a).ok_or("singular (three of the points are on one line)")?;
        let hn = Homography { m: [[h[0], h[1], h[2]], [h[3], h[4], h[5]], [h[6], h[7], 1.0]] };
        let td_inv = td.inverse().ok_or("singular")?;
        let mut out = td_inv.then(&hn.then(&ts));
        let s = out.m[2][2];
        if !(s.is_finite() && s.abs() > EPS) {
            return Err("singular".into());
        }
        out.m.iter_mut().flatten().for_each(|v| *v /= s);
        if !out.m.iter().flatten().all(|v| v.is_finite()) || out.det().abs() <= 1e-15 {
            return Err("singular".into());
        }
        Ok(out)
    }

    /// `self` after `first`: p ↦ self(first(p)).
    fn then(&self, first: &Homography) -> Homography {
        let mut m = [[0.0; 3]; 3];
        for (i, row) in m.iter_mut().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = (0..3).map(|k| self.m[i][k] * first.m[k][j]).sum();
            }
        }
        Homography { m }
    }

    fn det(&self) -> f64 {
        let m = &self.m;
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
            - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    }

    /// The inverse map, if the matrix is invertible.
    pub fn inverse(&self) -> Option<Homography> {
        let d = self.det();
        if !(d.is_finite() && d.abs() > 1e-15) {
            return None;
        }
        let m = &self.m;
        let c = |i: usize, j: usize| {
            let (r0, r1) = ((i + 1) % 3, (i + 2) % 3);
            let (c0, c1) = ((j + 1) % 3, (j + 2) % 3);
            m[r0][c0] * m[r1][c1] - m[r0][c1] * m[r1][c0]
        };
        let mut inv = [[0.0; 3]; 3];
        for (i, row) in inv.iter_mut().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = c(j, i) / d;
            }
        }
        Some(Homography { m: inv })
    }

    /// The third homogeneous coordinate of `p`'s image: its sign tells on which side of the
    /// map's horizon (`w = 0`) the point lies.
    pub fn w(&self, p: Pt) -> f64 {
        self.m[2][0] * p[0] + self.m[2][1] * p[1] + self.m[2][2]
    }

    /// The image of `p`; `None` on (or numerically at) the horizon.
    pub fn apply(&self, p: Pt) -> Option<Pt> {
        let w = self.w(p);
        if !(w.is_finite() && w.abs() > 1e-12) {
            return None;
        }
        let x = (self.m[0][0] * p[0] + self.m[0][1] * p[1] + self.m[0][2]) / w;
        let y = (self.m[1][0] * p[0] + self.m[1][1] * p[1] + self.m[1][2]) / w;
        (x.is_finite() && y.is_finite()).then_some([x, y])
    }
}

/// Hartley normalisation of 4 points: the similarity `t` (centroid to the origin, mean
/// distance √2) and the moved points.
fn normalise(p: &[Pt; 4]) -> Option<(Homography, [Pt; 4])> {
    let c = [p.iter().map(|q| q[0]).sum::<f64>() / 4.0, p.iter().map(|q| q[1]).sum::<f64>() / 4.0];
    let mean = p.iter().map(|q| dist(*q, c)).sum::<f64>() / 4.0;
    if !(mean.is_finite() && mean > EPS) {
        return None;
    }
    let s = std::f64::consts::SQRT_2 / mean;
    let t = Homography { m: [[s, 0.0, -s * c[0]], [0.0, s, -s * c[1]], [0.0, 0.0, 1.0]] };
    Some((t, p.map(|q| [s * (q[0] - c[0]), s * (q[1] - c[1])])))
}

/// Solves the 8×8 system `a[.., ..8] x = a[.., 8]` by Gaussian elimination with partial
/// pivoting; `None` when it is (numerically) singular.
fn solve8(mut a: [[f64; 9]; 8]) -> Option<[f64; 8]> {
    for col in 0..8 {
        let piv = (col..8).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[piv][col].abs().is_nan() || a[piv][col].abs() <= 1e-10 {
            return None;
        }
        a.swap(col, piv);
        let p = a[col];
        for (r, row) in a.iter_mut().enumerate() {
            let f = row[col] / p[col];
            if r != col && f != 0.0 {
                for (v, pv) in row.iter_mut().zip(p.iter()).skip(col) {
                    *v -= f * pv;
                }
            }
        }
    }
    let mut x = [0.0; 8];
    for i in 0..8 {
        x[i] = a[i][8] / a[i][i];
    }
    x.iter().all(|v| v.is_finite()).then_some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SQ: [Pt; 4] = [[0.2, 0.2], [0.8, 0.2], [0.8, 0.8], [0.2, 0.8]];

    #[test]
    fn inside_outside() {
        assert!(point_in_polygon([0.5, 0.5], &SQ));
        assert!(!point_in_polygon([0.1, 0.5], &SQ));
        assert!(!point_in_polygon([0.5, 0.9], &SQ));
        // Concave L shape.
        let l = [[0.0, 0.0], [0.6, 0.0], [0.6, 0.3], [0.3, 0.3], [0.3, 0.6], [0.0, 0.6]];
        assert!(point_in_polygon([0.1, 0.5], &l));
        assert!(!point_in_polygon([0.5, 0.5], &l));
        assert!(!point_in_polygon([0.5, 0.5], &l[..2]));
    }

    #[test]
    fn area() {
        assert!((polygon_area(&SQ) - 0.36).abs() < 1e-12);
        let mut rev = SQ.to_vec();
        rev.reverse();
        assert!((polygon_area(&rev) - 0.36).abs() < 1e-12);
        assert_eq!(polygon_area(&SQ[..2]), 0.0);
    }

    #[test]
    fn self_intersection() {
        assert!(!polygon_self_intersects(&SQ));
        // Bow tie.
        assert!(polygon_self_intersects(&[[0.2, 0.2], [0.8, 0.8], [0.8, 0.2], [0.2, 0.8]]));
        // A vertex touching a non-adjacent edge.
        assert!(polygon_self_intersects(&[[0.0, 0.0], [1.0, 0.0], [0.5, 0.0], [0.5, 1.0]]));
        // Triangle is fine; a degenerate fold-back is not.
        assert!(!polygon_self_intersects(&[[0.1, 0.1], [0.9, 0.1], [0.5, 0.9]]));
        assert!(polygon_self_intersects(&[[0.1, 0.1], [0.9, 0.1], [0.5, 0.1]]));
        // Concave but simple.
        assert!(!polygon_self_intersects(&[
            [0.0, 0.0],
            [0.6, 0.0],
            [0.6, 0.3],
            [0.3, 0.3],
            [0.3, 0.6],
            [0.0, 0.6]
        ]));
    }

    #[test]
    fn sides_and_crossings() {
        // Horizontal line drawn left → right: below is the right side.
        let (a, b) = ([0.2, 0.5], [0.8, 0.5]);
        assert!(side(a, b, [0.5, 0.7]) > 0.0);
        assert!(side(a, b, [0.5, 0.3]) < 0.0);
        // Moving down (left → right side) is a_to_b.
        let c = segment_crossing([0.5, 0.4], [0.5, 0.6], a, b, true).unwrap();
        assert_eq!(c.1, CrossDir::AToB);
        assert!((c.0 - 0.5).abs() < 1e-9);
        assert_eq!(segment_crossing([0.5, 0.6], [0.5, 0.4], a, b, true).unwrap().1, CrossDir::BToA);
        // Beside the segment, parallel, ending on the line: no crossing.
        assert!(segment_crossing([0.9, 0.4], [0.9, 0.6], a, b, true).is_none());
        assert!(segment_crossing([0.3, 0.4], [0.6, 0.4], a, b, true).is_none());
        assert!(segment_crossing([0.5, 0.4], [0.5, 0.5], a, b, true).is_none());
        // Starting exactly on the line is not a crossing (callers skip on-line positions).
        assert_eq!(segment_crossing([0.5, 0.5], [0.5, 0.6], a, b, true).map(|c| c.1), None);
        // Polyline vertex counted once.
        let line = [[0.2, 0.5], [0.5, 0.5], [0.8, 0.5]];
        assert_eq!(polyline_crossings([0.5, 0.4], [0.5, 0.6], &line).len(), 1);
        // A zig-zag polyline can be crossed twice by one motion.
        let z = [[0.1, 0.1], [0.5, 0.9], [0.9, 0.1]];
        let cs = polyline_crossings([0.0, 0.5], [1.0, 0.5], &z);
        assert_eq!(cs.len(), 2);
        assert!(cs[0].0 < cs[1].0);
        assert_ne!(cs[0].1, cs[1].1);
    }

    #[test]
    fn polyline_and_box() {
        let line = [[0.2, 0.5], [0.8, 0.5]];
        let b = |x1, y1, x2, y2| BBox { x1, y1, x2, y2 };
        assert!(polyline_touches_box(&line, &b(0.4, 0.4, 0.5, 0.6)), "straddles");
        assert!(!polyline_touches_box(&line, &b(0.4, 0.3, 0.5, 0.45)), "above");
        assert!(!polyline_touches_box(&line, &b(0.4, 0.55, 0.5, 0.7)), "below");
        assert!(polyline_touches_box(&line, &b(0.4, 0.3, 0.5, 0.5)), "bottom edge on the line");
        assert!(!polyline_touches_box(&line, &b(0.85, 0.4, 0.95, 0.6)), "beside the end");
        assert!(polyline_touches_box(&line, &b(0.1, 0.4, 0.9, 0.45 + 0.1)), "covers the line");
        assert!(polyline_touches_box(&line, &b(0.5, 0.45, 0.9, 0.55)), "holds the end point");
        // A diagonal segment through a box without a vertex inside it.
        assert!(polyline_touches_box(&[[0.0, 0.0], [1.0, 1.0]], &b(0.4, 0.4, 0.6, 0.6)));
        assert!(!polyline_touches_box(&[[0.0, 0.0], [1.0, 1.0]], &b(0.6, 0.1, 0.9, 0.4)));
    }

    #[test]
    fn distances_headings_anchors() {
        assert!((distance_to_polyline([0.5, 0.6], &[[0.2, 0.5], [0.8, 0.5]]) - 0.1).abs() < 1e-12);
        assert!((distance_to_polyline([1.0, 0.5], &[[0.2, 0.5], [0.8, 0.5]]) - 0.2).abs() < 1e-12);
        assert!((heading_deg([0.0, 1.0]) - 90.0).abs() < 1e-12);
        assert!(heading_deg([1.0, 0.0]).abs() < 1e-12);
        assert!((angle_diff_deg(170.0, -170.0) - 20.0).abs() < 1e-9);
        assert!((angle_diff_deg(0.0, 270.0) - 90.0).abs() < 1e-9);
        let b = BBox { x1: 0.2, y1: 0.2, x2: 0.4, y2: 0.6 };
        let p = Anchor::BottomCenter.point(&b);
        assert!((p[0] - 0.3).abs() < 1e-6 && (p[1] - 0.6).abs() < 1e-6);
        assert!((Anchor::Center.point(&b)[1] - 0.4).abs() < 1e-6);
        assert!((Anchor::TopCenter.point(&b)[1] - 0.2).abs() < 1e-6);
    }
    #[test]
    fn homography_maps_its_points_and_a_known_point() {
        // A road seen in perspective: a 3.5 m × 30 m rectangle of the ground (a lane, two
        // dashes long) whose far end is narrower on screen.
        let img = [[0.45, 0.40], [0.55, 0.40], [0.70, 0.90], [0.30, 0.90]];
        let gnd = [[0.0, 30.0], [3.5, 30.0], [3.5, 0.0], [0.0, 0.0]];
        let h = Homography::from_4_points(&img, &gnd).unwrap();
        for i in 0..4 {
            let p = h.apply(img[i]).unwrap();
            assert!(dist(p, gnd[i]) < 1e-9, "{i}: {p:?}");
        }
        // The image centre line x = 0.5 is the lane's middle; the crossing of the diagonals
        // of the image quadrilateral is the image of the crossing of the ground diagonals,
        // the rectangle's centre (projective maps keep lines and their intersections).
        let mid = h.apply([0.5, 0.65]).unwrap();
        assert!((mid[0] - 1.75).abs() < 1e-9, "{mid:?}");
        let (a, b, c, d) = (img[0], img[2], img[1], img[3]);
        let t = side(c, d, a) / (side(c, d, a) - side(c, d, b));
        let x = [a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])];
        let g = h.apply(x).unwrap();
        assert!(dist(g, [1.75, 15.0]) < 1e-9, "{g:?}");
        // A known perspective: the ground point (x, y) m seen at u = 0.5 + 0.1 x / (1 + y / 10),
        // v = 0.3 + 0.6 / (1 + y / 10) (a camera looking along y). Its homography from any 4
        // points maps every other point exactly.
        let cam = |p: Pt| {
            let k = 1.0 + p[1] / 10.0;
            [0.5 + 0.1 * (p[0] - 1.75) / k, 0.3 + 0.6 / k]
        };
        let gnd2 = [[0.0, 0.0], [3.5, 0.0], [3.5, 40.0], [0.0, 40.0]];
        let h2 = Homography::from_4_points(&gnd2.map(cam), &gnd2).unwrap();
        for q in [[1.0, 5.0], [7.0, 80.0], [-3.0, 12.5]] {
            let g = h2.apply(cam(q)).unwrap();
            assert!(dist(g, q) < 1e-6, "{q:?} -> {g:?}");
            let back = h2.inverse().unwrap().apply(q).unwrap();
            assert!(dist(back, cam(q)) < 1e-9);
        }
        // Beyond the horizon (v = 0.3) the ground is behind the camera.
        assert!(h2.w([0.5, 0.29]).signum() != h2.w([0.5, 0.5]).signum());
    }

    #[test]
    fn homography_refuses_degenerate_points() {
        let gnd = [[0.0, 0.0], [3.5, 0.0], [3.5, 30.0], [0.0, 30.0]];
        let line = [[0.1, 0.1], [0.2, 0.2], [0.3, 0.3], [0.5, 0.9]];
        assert!(Homography::from_4_points(&line, &gnd).is_err());
        let same = [[0.1, 0.1]; 4];
        assert!(Homography::from_4_points(&same, &gnd).is_err());
        assert!(collinear([0.1, 0.1], [0.2, 0.2], [0.3, 0.3000001], 1e-3));
        assert!(!collinear([0.1, 0.1], [0.2, 0.2], [0.3, 0.4], 1e-3));
        assert!(convex_in_order(&gnd));
        assert!(!convex_in_order(&[gnd[0], gnd[2], gnd[1], gnd[3]]));
    }
}
