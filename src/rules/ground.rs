//! The ground plane of a camera: its calibration (`[cameras.calibration]`, 4 image points and
//! the 4 matching ground points in metres → a homography) and the per-track ground speed it
//! gives (`GroundSpeeds`, km/h in `Track::speed_kmh`).
//!
//! Speed is measured on the ground, not on the image: each confirmed track's anchor point
//! (per class, default bottom centre: where the vehicle meets the road) is mapped to metres
//! through the homography, and the speed is the least-squares slope of those positions over
//! the last `speed_window_secs` of frame time. The image-plane (Kalman) velocity cannot be
//! used: in perspective, one pixel is centimetres near the camera and metres far from it.
//! The fit over a window averages out the jitter of the box's bottom edge. A box that
//! touches the edge of the picture is cut off there, so its anchor is not where the vehicle
//! is: such frames give no sample and no speed (a vehicle leaving the picture would
//! otherwise seem to slow down to a stop).

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::common::defaults;
use super::Scene;
use crate::geometry::{collinear, convex_in_order, Homography, Pt};
use crate::types::{Track, TrackState};

defaults! {
    d_window: f64 = 1.0;
}

/// A box side within this of the picture's edge (normalised) is taken as cut off there.
const EDGE: f32 = 0.003;

/// Relative tolerance of the collinearity check (twice the triangle's area over its
/// longest side squared): about half a degree.
const COLLINEAR_REL: f64 = 0.01;

/// `[cameras.calibration]`: a flat patch of road as 4 image points (normalised 0–1, like
/// zones) and the same 4 points on the ground in metres (any right-angled frame, e.g. x
/// across the road and y along it), listed in the same order around the quadrilateral.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CalibrationConfig {
    pub image_points: Vec<[f64; 2]>,
    pub ground_points_m: Vec<[f64; 2]>,
    /// Speed is the ground displacement over this much frame time (least squares; over the
    /// last 3 frames if they span more). Default 1.0; a speed is reported once 3 frames
    /// span half of it.
    #[serde(default = "d_window")]
    pub speed_window_secs: f64,
}

impl CalibrationConfig {
    /// Checks the points and solves the image → ground homography. `(field, message)` on
    /// error, the field relative to the camera (e.g. `calibration.image_points`).
    pub fn homography(&self) -> Result<Homography, (String, String)> {
        let img = four(&self.image_points, "image_points")?;
        let gnd = four(&self.ground_points_m, "ground_points_m")?;
        for (k, p) in img.iter().enumerate() {
            if !p.iter().all(|v| v.is_finite() && (0.0..=1.0).contains(v)) {
                return Err((
                    "calibration.image_points".into(),
                    format!(
                        "point {k} [{}, {}] is outside the image (coordinates are normalised 0–1)",
                        p[0], p[1]
                    ),
                ));
            }
        }
        for (k, p) in gnd.iter().enumerate() {
            if !p.iter().all(|v| v.is_finite() && v.abs() <= 100_000.0) {
                return Err((
                    "calibration.ground_points_m".into(),
                    format!("point {k} [{}, {}] is not a finite number of metres", p[0], p[1]),
                ));
            }
        }
        for (pts, key) in [(&img, "image_points"), (&gnd, "ground_points_m")] {
            for skip in 0..4 {
                let t: Vec<usize> = (0..4).filter(|i| *i != skip).collect();
                if collinear(pts[t[0]], pts[t[1]], pts[t[2]], COLLINEAR_REL) {
                    return Err((
                        format!("calibration.{key}"),
                        format!(
                            "points {}, {} and {} are on one line (degenerate: the 4 points \
                             must span an area of the ground)",
                            t[0], t[1], t[2]
                        ),
                    ));
                }
            }
            if !convex_in_order(pts) {
                return Err((
                    format!("calibration.{key}"),
                    "the 4 points must be the corners of a convex quadrilateral, listed in \
                     order around it (the same order in image_points and ground_points_m)"
                        .into(),
                ));
            }
        }
        let h = Homography::from_4_points(&img, &gnd)
            .map_err(|m| ("calibration".to_string(), format!("singular homography: {m}")))?;
        let w0 = h.w(img[0]).signum();
        if img.iter().any(|p| h.w(*p).signum() != w0) {
            return Err((
                "calibration".into(),
                "the horizon of this calibration crosses its own quadrilateral (points out of \
                 order?)"
                    .into(),
            ));
        }
        if !(self.speed_window_secs.is_finite() && (0.2..=10.0).contains(&self.speed_window_secs)) {
            return Err((
                "calibration.speed_window_secs".into(),
                "must be between 0.2 and 10".into(),
            ));
        }
        Ok(h)
    }
}

fn four(v: &[[f64; 2]], key: &str) -> Result<[Pt; 4], (String, String)> {
    <[Pt; 4]>::try_from(v).map_err(|_| {
        (format!("calibration.{key}"), format!("needs exactly 4 points [x, y], has {}", v.len()))
    })
}

/// Samples of one track: (seconds since the estimator's epoch, ground position in m).
type Samples = VecDeque<(f64, Pt)>;

/// Ground speed of the tracks of one calibrated camera.
pub struct GroundSpeeds {
    h: Homography,
    /// The sign of `w` on the calibrated patch: points with the other sign are beyond the
    /// horizon (sky, or behind the camera) and have no ground position.
    w_sign: f64,
    window: f64,
    epoch: Option<OffsetDateTime>,
    tracks: HashMap<u64, Samples>,
}

impl GroundSpeeds {
    /// The estimator of a camera whose calibration is valid (`None` otherwise).
    pub fn new(c: &CalibrationConfig) -> Option<GroundSpeeds> {
        let h = c.homography().ok()?;
        let n = c.image_points.len() as f64;
        let centre = [
            c.image_points.iter().map(|p| p[0]).sum::<f64>() / n,
            c.image_points.iter().map(|p| p[1]).sum::<f64>() / n,
        ];
        Some(GroundSpeeds {
            w_sign: h.w(centre).signum(),
            h,
            window: c.speed_window_secs,
            epoch: None,
            tracks: HashMap::new(),
        })
    }

    /// The ground position (m) of an image point, if it is on the ground side of the horizon.
    pub fn ground(&self, p: Pt) -> Option<Pt> {
        (self.h.w(p).signum() == self.w_sign).then(|| self.h.apply(p)).flatten()
    }

    /// Records the frame's confirmed tracks (captured at `now`) and sets their `speed_kmh`:
    /// the least-squares ground speed over the last `window` seconds (or the last 3 samples,
    /// if they span more: at a low `detect_fps`), once there are at least 3 samples spanning
    /// at least half the window. Lost tracks get `None`; samples older than 5 windows are
    /// dropped, and tracks not seen for 5 windows are forgotten.
    pub fn update(&mut self, scene: &Scene, tracks: &mut [Track], now: OffsetDateTime) {
        let epoch = *self.epoch.get_or_insert(now);
        let t = (now - epoch).as_seconds_f64();
        for tr in tracks.iter_mut() {
            tr.speed_kmh = None;
            let b = &tr.bbox;
            let cut = b.x1 <= EDGE || b.y1 <= EDGE || b.x2 >= 1.0 - EDGE || b.y2 >= 1.0 - EDGE;
            if tr.state != TrackState::Tracked || cut {
                continue;
            }
            let Some(g) = self.ground(scene.anchor(tr)) else { continue };
            let s = self.tracks.entry(tr.id).or_default();
            if s.back().is_some_and(|(last, _)| *last >= t) {
                s.clear(); // time went back (or a repeated frame): start over
            }
            s.push_back((t, g));
            let (window, stale) = (self.window, 5.0 * self.window);
            while s
                .front()
                .is_some_and(|(t0, _)| *t0 < t - stale || (*t0 < t - window - 1e-9 && s.len() > 3))
            {
                s.pop_front();
            }
            tr.speed_kmh = speed_kmh(s, self.window);
        }
        let stale = 5.0 * self.window;
        self.tracks.retain(|_, s| s.back().is_some_and(|(last, _)| *last >= t - stale));
    }
}

/// The least-squares ground speed (km/h) of the samples, if they span at least half of
/// `window` seconds with at least 3 samples.
fn speed_kmh(s: &Samples, window: f64) -> Option<f32> {
    let (first, last) = (s.front()?.0, s.back()?.0);
    if s.len() < 3 || last - first < window / 2.0 - 1e-9 {
        return None;
    }
    let n = s.len() as f64;
    let tm = s.iter().map(|x| x.0).sum::<f64>() / n;
    let xm = s.iter().map(|x| x.1[0]).sum::<f64>() / n;
    let ym = s.iter().map(|x| x.1[1]).sum::<f64>() / n;
    let (mut stt, mut stx, mut sty) = (0.0, 0.0, 0.0);
    for (t, p) in s {
        let dt = t - tm;
        stt += dt * dt;
        stx += dt * (p[0] - xm);
        sty += dt * (p[1] - ym);
    }
    if stt <= 0.0 {
        return None;
    }
    let v = (stx / stt).hypot(sty / stt) * 3.6;
    v.is_finite().then_some(v as f32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::BBox;

    /// A road in perspective: the ground (x across, y along the road, m) seen by a camera
    /// looking along y, as in `geometry`'s homography test.
    fn cam(p: Pt) -> Pt {
        let k = 1.0 + p[1] / 10.0;
        [0.5 + 0.1 * (p[0] - 1.75) / k, 0.3 + 0.6 / k]
    }

    fn calibration() -> CalibrationConfig {
        let gnd = [[0.0, 0.0], [3.5, 0.0], [3.5, 40.0], [0.0, 40.0]];
        CalibrationConfig {
            image_points: gnd.iter().map(|g| cam(*g)).collect(),
            ground_points_m: gnd.to_vec(),
            speed_window_secs: 1.0,
        }
    }

    fn track(id: u64, anchor: Pt, at: OffsetDateTime) -> Track {
        let (x, y) = (anchor[0] as f32, anchor[1] as f32);
        Track {
            id,
            class_id: 2,
            class: "car".into(),
            score: 0.8,
            bbox: BBox { x1: x - 0.02, y1: y - 0.03, x2: x + 0.02, y2: y },
            state: TrackState::Tracked,
            hits: 5,
            first_seen: at,
            last_seen: at,
            velocity: (0.0, 0.0),
            speed_kmh: None,
            origin: None,
            pose: None,
        }
    }

    /// A vehicle driving at a known ground speed, its image positions made by the camera model
    /// the calibration was taken from, gives that speed within 1 % all the way from 2 m to
    /// 240 m; with its box's bottom edge jittering by ±1 pixel (at 640 px), within 3 % while it
    /// is within 20 m (one pixel is more metres further away).
    #[test]
    fn known_ground_speed_is_measured_within_one_percent() {
        let c = calibration();
        let mut est = GroundSpeeds::new(&c).unwrap();
        let scene = Scene::default();
        let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let (kmh, fps) = (72.0, 5.0);
        let v = kmh / 3.6;
        let mut got = Vec::new();
        for i in 0..60 {
            let t = i as f64 / fps;
            let at = t0 + time::Duration::seconds_f64(t);
            let jitter = if i % 2 == 0 { 1.0 / 640.0 } else { -1.0 / 640.0 };
            let near = cam([1.0, 2.0 + v * t]);
            let far = cam([1.0, 2.0 + v * t * 0.5]);
            let mut tr = vec![track(1, near, at), track(2, [far[0], far[1] + jitter], at)];
            est.update(&scene, &mut tr, at);
            if i < 2 {
                assert_eq!(tr[0].speed_kmh, None, "too little history at {t} s");
            }
            if let (Some(a), Some(b)) = (tr[0].speed_kmh, tr[1].speed_kmh) {
                got.push((t, a, b));
            }
        }
        assert!(got.len() > 50);
        for (t, a, _) in &got {
            assert!((*a as f64 - kmh).abs() < kmh * 0.01, "{t} s: {a} km/h");
        }
        // Half the speed, with jitter, while the vehicle is within 20 m of the camera.
        for (t, _, b) in got.iter().filter(|(t, ..)| 2.0 + v * t * 0.5 < 20.0) {
            assert!((*b as f64 - kmh / 2.0).abs() < kmh / 2.0 * 0.03, "{t} s: {b} km/h");
        }
    }

    /// At 1 analysed frame per second the 1 s window never holds 3 samples: the last 3
    /// (2 s) are used instead.
    #[test]
    fn low_detect_fps_uses_the_last_three_frames() {
        let mut est = GroundSpeeds::new(&calibration()).unwrap();
        let scene = Scene::default();
        let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let v = 50.0 / 3.6;
        let mut got = Vec::new();
        for i in 0..6 {
            let at = t0 + time::Duration::seconds(i);
            let mut tr = vec![track(1, cam([2.0, 3.0 + v * i as f64]), at)];
            est.update(&scene, &mut tr, at);
            got.push(tr[0].speed_kmh);
        }
        assert_eq!(&got[..2], &[None, None]);
        for s in &got[2..] {
            assert!((s.unwrap() - 50.0).abs() < 0.5, "{got:?}");
        }
        assert_eq!(est.tracks[&1].len(), 3);
    }

    /// A vehicle driving out of the bottom of the picture: once its box is cut off by the
    /// edge it has no speed (rather than a falling one).
    #[test]
    fn boxes_cut_off_by_the_picture_edge_give_no_speed() {
        let mut est = GroundSpeeds::new(&calibration()).unwrap();
        let scene = Scene::default();
        let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let mut got = Vec::new();
        for i in 0..15 {
            let at = t0 + time::Duration::milliseconds(200 * i);
            // 36 km/h toward the camera, from 20 m: after 2.4 s (at −4 m) the ground point is
            // below the picture; the box is clamped to it.
            let p = cam([1.0, 20.0 - 10.0 * 0.2 * i as f64]);
            let mut tr = vec![track(1, [p[0], p[1].min(1.0)], at)];
            est.update(&scene, &mut tr, at);
            got.push((p[1], tr[0].speed_kmh));
        }
        for (y, s) in &got[3..] {
            match s {
                Some(v) => assert!(*y < 1.0 && (v - 36.0).abs() < 0.4, "{got:?}"),
                None => assert!(*y >= 0.997, "{got:?}"),
            }
        }
        assert!(got.iter().any(|(_, s)| s.is_none()) && got.iter().any(|(_, s)| s.is_some()));
    }

    /// Cost per frame at 50 tracks (run with --release --ignored --nocapture).
    #[test]
    #[ignore]
    fn ground_speed_cost() {
        let mut est = GroundSpeeds::new(&calibration()).unwrap();
        let scene = Scene::default();
        let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let n = 3000;
        let mut spent = std::time::Duration::ZERO;
        for k in 0..n {
            let at = t0 + time::Duration::milliseconds(100 * k);
            let mut tr: Vec<Track> = (0..50u64)
                .map(|i| {
                    let g = [(i % 4) as f64, 3.0 + (i as f64 * 1.3 + 2.5 * k as f64 / 10.0) % 40.0];
                    track(i, cam(g), at)
                })
                .collect();
            let t = std::time::Instant::now();
            est.update(&scene, &mut tr, at);
            spent += t.elapsed();
            std::hint::black_box(&tr);
        }
        println!(
            "ground speed: {:.1} µs per frame at 50 tracks",
            spent.as_secs_f64() * 1e6 / n as f64
        );
    }

    #[test]
    fn lost_and_beyond_horizon_tracks_have_no_speed() {
        let mut est = GroundSpeeds::new(&calibration()).unwrap();
        let scene = Scene::default();
        let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        for i in 0..10 {
            let at = t0 + time::Duration::milliseconds(200 * i);
            // Above the horizon (v < 0.3): sky.
            let mut tr = vec![track(1, [0.5, 0.2], at), track(2, cam([1.0, 5.0]), at)];
            tr[1].state = TrackState::Lost;
            est.update(&scene, &mut tr, at);
            assert_eq!((tr[0].speed_kmh, tr[1].speed_kmh), (None, None));
        }
        assert!(est.tracks.is_empty());
    }

    #[test]
    fn bad_calibrations_name_the_field() {
        let ok = calibration();
        assert!(ok.homography().is_ok());
        let cases: Vec<(CalibrationConfig, &str, &str)> = vec![
            (
                CalibrationConfig { image_points: ok.image_points[..3].to_vec(), ..ok.clone() },
                "calibration.image_points",
                "exactly 4",
            ),
            (
                CalibrationConfig {
                    ground_points_m: [ok.ground_points_m.clone(), vec![[1.0, 1.0]]].concat(),
                    ..ok.clone()
                },
                "calibration.ground_points_m",
                "exactly 4",
            ),
            (
                CalibrationConfig {
                    image_points: vec![[0.1, 0.5], [0.9, 0.5], [1.2, 0.9], [0.1, 0.9]],
                    ..ok.clone()
                },
                "calibration.image_points",
                "outside the image",
            ),
            (
                CalibrationConfig {
                    image_points: vec![[0.1, 0.5], [0.5, 0.5], [0.9, 0.5], [0.1, 0.9]],
                    ..ok.clone()
                },
                "calibration.image_points",
                "on one line",
            ),
            (
                CalibrationConfig {
                    ground_points_m: vec![[0.0, 0.0], [0.0, 10.0], [0.0, 20.0], [3.0, 5.0]],
                    ..ok.clone()
                },
                "calibration.ground_points_m",
                "on one line",
            ),
            (
                CalibrationConfig {
                    ground_points_m: vec![[0.0, 0.0], [f64::NAN, 0.0], [3.5, 40.0], [0.0, 40.0]],
                    ..ok.clone()
                },
                "calibration.ground_points_m",
                "finite",
            ),
            (
                CalibrationConfig {
                    ground_points_m: vec![[0.0, 0.0], [3.5, 40.0], [3.5, 0.0], [0.0, 40.0]],
                    ..ok.clone()
                },
                "calibration.ground_points_m",
                "convex quadrilateral",
            ),
            (
                CalibrationConfig { speed_window_secs: 0.0, ..ok.clone() },
                "calibration.speed_window_secs",
                "between",
            ),
        ];
        for (c, field, msg) in cases {
            let (f, m) = c.homography().unwrap_err();
            assert_eq!(f, field, "{m}");
            assert!(m.contains(msg), "{f}: {m}");
        }
    }
}
