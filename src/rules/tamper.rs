//! `camera_tamper`: the camera's view is covered, defocused or moved.
//!
//! Per analysed frame the rule makes a small grey copy (OpenCV: area resize to
//! `analysis_width` pixels wide, RGB → grey, f32; about 0.4 ms per 640×360 frame in all,
//! release build, `tamper_cost` test) and compares it with
//! a rolling reference of the normal scene (an exponential average with weight
//! `reference_alpha`, updated only on frames where no condition holds). Causes, checked in
//! this order (the first that holds is the frame's cause):
//!
//! * `covered`: grey-level standard deviation < `min_stddev` (a hand, tape or paint over the
//!   lens, a flat view), or mean grey level < `dark_level` (> `bright_level`) while the
//!   reference's was ≥ 1.5 × `dark_level` (≤ 255 − 1.5 × (255 − `bright_level`)): a sudden
//!   blackout or glare, not a scene that is dark from the start or darkens slowly at dusk;
//! * `defocused`: sharpness (variance of the Laplacian divided by the grey-level variance, so
//!   that a lighting change does not count) below the reference's / `blur_factor`;
//! * `moved`: the global shift vs the reference (`phase_correlate`) ≥ `max_shift` of the
//!   width, or the zero-shift correlation with the reference < `min_similarity` (a camera
//!   turned to a different view). Correlation ignores global gain and offset, so lighting
//!   changes do not count either.
//!
//! Each cause is its own episode: it must hold ≥ `min_secs` (any frame without it restarts
//! the wait) → event `camera_tamper` from the first frame of the run; it ends once the cause
//! has been absent for `clear_secs` (end: its last frame). The cause is the event's object:
//! one object whose `class` is `covered`, `defocused` or `moved`, with the whole frame as
//! its box and score 1.

use serde::Deserialize;
use time::OffsetDateTime;

use opencv::core::{Mat, Point2d, Size, Vec3b, CV_32F};
use opencv::imgproc;
use opencv::prelude::*;

use super::common::{d5, defaults, non_negative, output, sev_high, Cooldown, Episode};
use super::{Rule, RuleSpec, Scene};
use crate::types::{BBox, Change, Detection, RuleOutput, Severity, Tracks};

const KIND: &str = "camera_tamper";

defaults! {
    tamper_width: u32 = 160;
    d_dark: f64 = 20.0; d_bright: f64 = 235.0; d_min_std: f64 = 6.0; d_blur: f64 = 4.0;
    d_shift: f64 = 0.05; d_sim: f64 = 0.4; d_alpha: f64 = 0.02;
}

/// `camera_tamper`: the view is covered, defocused or moved.
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

impl RuleSpec for TamperRule {
    const KIND: &'static str = KIND;

    fn validate(&self) -> Result<(), (String, String)> {
        if !(16..=1024).contains(&self.analysis_width) {
            return Err(("analysis_width".into(), "must be between 16 and 1024".into()));
        }
        for (name, v) in [("dark_level", self.dark_level), ("bright_level", self.bright_level)] {
            if !(v.is_finite() && (0.0..=255.0).contains(&v)) {
                return Err((name.into(), "must be between 0 and 255".into()));
            }
        }
        if self.blur_factor.is_nan() || self.blur_factor < 1.0 {
            return Err(("blur_factor".into(), "must be ≥ 1".into()));
        }
        if !(self.max_shift.is_finite() && self.max_shift > 0.0 && self.max_shift <= 1.0) {
            return Err(("max_shift".into(), "must be > 0 and ≤ 1".into()));
        }
        if !(self.min_similarity.is_finite() && (-1.0..=1.0).contains(&self.min_similarity)) {
            return Err(("min_similarity".into(), "must be between -1 and 1".into()));
        }
        let alpha = self.reference_alpha;
        if !(alpha.is_finite() && alpha > 0.0 && alpha <= 1.0) {
            return Err(("reference_alpha".into(), "must be > 0 and ≤ 1".into()));
        }
        non_negative(&[
            ("min_stddev", self.min_stddev),
            ("min_secs", self.min_secs),
            ("clear_secs", self.clear_secs),
        ])
    }

    fn build(&self, _scene: &Scene) -> Box<dyn Rule> {
        Box::new(Tamper::new(self.clone()))
    }
}
/// Reference sharpness below this: too little texture to judge focus.
const MIN_REF_SHARPNESS: f64 = 0.02;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    Covered = 0,
    Defocused = 1,
    Moved = 2,
}

impl Cause {
    pub const ALL: [Cause; 3] = [Cause::Covered, Cause::Defocused, Cause::Moved];
    pub fn as_str(&self) -> &'static str {
        match self {
            Cause::Covered => "covered",
            Cause::Defocused => "defocused",
            Cause::Moved => "moved",
        }
    }
}

/// Measurements of one frame against the reference.
#[derive(Debug, Clone, Copy, Default)]
pub struct Measure {
    pub mean: f64,
    pub stddev: f64,
    pub sharpness: f64,
    pub ref_sharpness: f64,
    /// Global shift vs the reference, in analysis pixels.
    pub shift: f64,
    pub response: f64,
    pub similarity: f64,
}

struct Reference {
    grey: Mat,
    mean: f64,
    sharpness: f64,
    window: Mat,
}

pub struct Tamper {
    cfg: TamperRule,
    reference: Option<Reference>,
    episodes: [Episode; 3],
    cooldowns: [Cooldown; 3],
    warned: bool,
}

impl Tamper {
    pub fn new(cfg: TamperRule) -> Self {
        Tamper {
            cfg,
            reference: None,
            episodes: Default::default(),
            cooldowns: [Cooldown::new(0.0), Cooldown::new(0.0), Cooldown::new(0.0)],
            warned: false,
        }
    }

    /// The small grey f32 copy of a packed RGB frame.
    fn grey(&self, rgb: &[u8], w: u32, h: u32) -> opencv::Result<Mat> {
        let bad = || {
            opencv::Error::new(
                opencv::core::StsBadArg,
                format!("frame {w}x{h} with {} bytes", rgb.len()),
            )
        };
        if w == 0 || h == 0 || w > 16384 || h > 16384 || rgb.len() != w as usize * h as usize * 3 {
            return Err(bad());
        }
        let src = Mat::new_rows_cols_with_bytes::<Vec3b>(h as i32, w as i32, rgb)?;
        let aw = self.cfg.analysis_width.min(w) as i32;
        let ah = ((f64::from(aw) * f64::from(h) / f64::from(w)).round() as i32).max(8);
        let mut small = Mat::default();
        imgproc::resize(&src, &mut small, Size::new(aw, ah), 0.0, 0.0, imgproc::INTER_AREA)?;
        let mut grey8 = Mat::default();
        imgproc::cvt_color(&small, &mut grey8, imgproc::COLOR_RGB2GRAY, 0)?;
        let mut grey = Mat::default();
        grey8.convert_to(&mut grey, CV_32F, 1.0, 0.0)?;
        Ok(grey)
    }

    /// Measures `grey` against the reference (if any) and returns the frame's cause.
    fn classify(&self, grey: &Mat) -> opencv::Result<(Option<Cause>, Measure)> {
        let (mean, var) = mean_var(grey.data_typed::<f32>()?);
        let mut m = Measure {
            mean,
            stddev: var.sqrt(),
            sharpness: sharpness(grey, var)?,
            ..Default::default()
        };
        let c = &self.cfg;
        // Too dark / too bright only counts against a reference that was clearly not, so a
        // scene that darkens slowly (dusk) or is dark from the start is not "covered".
        let r = self.reference.as_ref();
        let dark = m.mean < c.dark_level && r.is_some_and(|r| r.mean >= 1.5 * c.dark_level);
        let bright = m.mean > c.bright_level
            && r.is_some_and(|r| r.mean <= 255.0 - 1.5 * (255.0 - c.bright_level));
        if dark || bright || m.stddev < c.min_stddev {
            return Ok((Some(Cause::Covered), m));
        }
        let Some(r) = &self.reference else { return Ok((None, m)) };
        m.ref_sharpness = r.sharpness;
        if r.sharpness >= MIN_REF_SHARPNESS && m.sharpness < r.sharpness / c.blur_factor {
            return Ok((Some(Cause::Defocused), m));
        }
        let mut response = 0.0;
        // phase_correlate multiplies its inputs by the window in place: give it copies.
        let (mut a, mut b) = (Mat::default(), Mat::default());
        opencv::core::multiply(grey, &r.window, &mut a, 1.0, -1)?;
        opencv::core::multiply(&r.grey, &r.window, &mut b, 1.0, -1)?;
        let Point2d { x, y } =
            imgproc::phase_correlate(&a, &b, &opencv::core::no_array(), Some(&mut response))?;
        m.shift = x.hypot(y);
        m.response = response;
        m.similarity = correlation(grey.data_typed::<f32>()?, r.grey.data_typed::<f32>()?);
        let width = f64::from(grey.cols());
        if (m.shift >= c.max_shift * width && response >= 0.05) || m.similarity < c.min_similarity {
            return Ok((Some(Cause::Moved), m));
        }
        Ok((None, m))
    }

    fn update_reference(&mut self, grey: Mat, m: &Measure) -> opencv::Result<()> {
        let a = self.cfg.reference_alpha;
        match &mut self.reference {
            Some(r) if r.grey.size()? == grey.size()? => {
                let mut next = Mat::default();
                opencv::core::add_weighted(&grey, a, &r.grey, 1.0 - a, 0.0, &mut next, -1)?;
                r.grey = next;
                r.mean = (1.0 - a) * r.mean + a * m.mean;
                r.sharpness = (1.0 - a) * r.sharpness + a * m.sharpness;
            }
            _ => {
                let mut window = Mat::default();
                imgproc::create_hanning_window(&mut window, grey.size()?, CV_32F)?;
                self.reference =
                    Some(Reference { grey, mean: m.mean, sharpness: m.sharpness, window });
            }
        }
        Ok(())
    }

    /// Grey copy, cause and measurements of one frame; updates the reference on normal
    /// frames. Public for tests and tuning.
    pub fn observe(
        &mut self,
        rgb: &[u8],
        w: u32,
        h: u32,
    ) -> opencv::Result<(Option<Cause>, Measure)> {
        let grey = self.grey(rgb, w, h)?;
        if self.reference.as_ref().is_some_and(|r| r.grey.size().ok() != grey.size().ok()) {
            self.reference = None; // the analysed size changed: start over
        }
        let (cause, m) = self.classify(&grey)?;
        if cause.is_none() {
            self.update_reference(grey, &m)?;
        }
        Ok((cause, m))
    }
}

fn mean_var(v: &[f32]) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    let n = v.len() as f64;
    let mean = v.iter().map(|x| f64::from(*x)).sum::<f64>() / n;
    let var = v.iter().map(|x| (f64::from(*x) - mean).powi(2)).sum::<f64>() / n;
    (mean, var)
}

/// Laplacian variance / grey-level variance (0 for a flat image).
fn sharpness(grey: &Mat, var: f64) -> opencv::Result<f64> {
    if var < 1e-6 {
        return Ok(0.0);
    }
    let mut lap = Mat::default();
    imgproc::laplacian(grey, &mut lap, CV_32F, 1, 1.0, 0.0, opencv::core::BORDER_DEFAULT)?;
    let (_, lv) = mean_var(lap.data_typed::<f32>()?);
    Ok(lv / var)
}

/// Zero-mean normalised correlation of two equally sized images (1 when either is flat).
fn correlation(a: &[f32], b: &[f32]) -> f64 {
    if a.len() != b.len() || a.is_empty() {
        return 0.0;
    }
    let ((ma, va), (mb, vb)) = (mean_var(a), mean_var(b));
    if va < 1e-6 || vb < 1e-6 {
        return 1.0;
    }
    let cov =
        a.iter().zip(b).map(|(x, y)| (f64::from(*x) - ma) * (f64::from(*y) - mb)).sum::<f64>()
            / a.len() as f64;
    cov / (va * vb).sqrt()
}

fn cause_object(c: Cause) -> Detection {
    Detection {
        class_id: c as u32,
        class: c.as_str().into(),
        score: 1.0,
        bbox: BBox { x1: 0.0, y1: 0.0, x2: 1.0, y2: 1.0 },
        track_id: None,
        keypoints: None,
    }
}

impl Rule for Tamper {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn on_frame(&mut self, t: &Tracks, out: &mut Vec<RuleOutput>) {
        let f = &t.detections.frame;
        let cause = match self.observe(&f.rgb, f.width, f.height) {
            Ok((cause, _)) => cause,
            Err(e) => {
                if !self.warned {
                    tracing::warn!(camera = %f.camera_id, "camera_tamper: frame not analysed: {e}");
                    self.warned = true;
                }
                return;
            }
        };
        let (min, clear) = (self.cfg.min_secs, self.cfg.clear_secs);
        for c in Cause::ALL {
            let i = c as usize;
            let ep = &mut self.episodes[i];
            if let Some((change, at)) =
                ep.step(cause == Some(c), f.captured_at, min, clear, &mut self.cooldowns[i])
            {
                let key = ep.key * 4 + i as u64;
                let (objects, snap) = if change == Change::Started {
                    (vec![cause_object(c)], Some(f))
                } else {
                    (vec![cause_object(c)], None)
                };
                out.push(output(KIND, self.cfg.severity, key, change, at, objects, snap));
            }
        }
    }

    fn finish(&mut self, at: OffsetDateTime, out: &mut Vec<RuleOutput>) {
        for c in Cause::ALL {
            let i = c as usize;
            let key = self.episodes[i].key * 4 + i as u64;
            if let Some(end) = self.episodes[i].finish(at) {
                out.push(output(
                    KIND,
                    self.cfg.severity,
                    key,
                    Change::Ended,
                    end,
                    vec![cause_object(c)],
                    None,
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use opencv::core::{Mat, Size, Vec3b};

    use super::*;
    use crate::types::{Detections, Frame};

    const W: u32 = 320;
    const H: u32 = 180;

    /// A textured scene: smooth gradients plus pseudo-random 4×4 blocks and a few edges.
    fn scene() -> Vec<u8> {
        let mut v = Vec::with_capacity((W * H * 3) as usize);
        let mut seed = 0x2545_f491_u32;
        let mut blocks = vec![0u8; ((W / 4) * (H / 4)) as usize];
        for b in &mut blocks {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            *b = (seed % 120) as u8;
        }
        for y in 0..H {
            for x in 0..W {
                let g = (x * 60 / W + y * 40 / H) as u8;
                let b = blocks[((y / 4) * (W / 4) + x / 4) as usize];
                let edge = if (x / 40 + y / 30) % 2 == 0 { 40 } else { 0 };
                let p = 30u8.saturating_add(g).saturating_add(b).saturating_add(edge);
                v.extend_from_slice(&[p, p.saturating_sub(10), p.saturating_add(5)]);
            }
        }
        v
    }

    /// `img` with every value scaled by `gain` plus `offset`, and noise of ±`noise`.
    fn vary(img: &[u8], gain: f32, offset: f32, noise: u32, seed: u32) -> Vec<u8> {
        let mut s = seed.wrapping_mul(2_654_435_761).max(1);
        img.iter()
            .map(|p| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                let n = if noise > 0 { (s % (2 * noise + 1)) as f32 - noise as f32 } else { 0.0 };
                (*p as f32 * gain + offset + n).clamp(0.0, 255.0) as u8
            })
            .collect()
    }

    fn blurred(img: &[u8]) -> Vec<u8> {
        let src = Mat::new_rows_cols_with_bytes::<Vec3b>(H as i32, W as i32, img).unwrap();
        let mut dst = Mat::default();
        imgproc::gaussian_blur(
            &src,
            &mut dst,
            Size::new(0, 0),
            4.0,
            4.0,
            opencv::core::BORDER_DEFAULT,
        )
        .unwrap();
        dst.data_bytes().unwrap().to_vec()
    }

    /// `img` shifted right by `dx` pixels (the left edge repeated).
    fn shifted(img: &[u8], dx: u32) -> Vec<u8> {
        let mut out = img.to_vec();
        for y in 0..H {
            for x in 0..W {
                let sx = x.saturating_sub(dx);
                let (d, s) = (((y * W + x) * 3) as usize, ((y * W + sx) * 3) as usize);
                out[d..d + 3].copy_from_slice(&img[s..s + 3]);
            }
        }
        out
    }

    fn tracks(rgb: Vec<u8>, secs: f64) -> Tracks {
        let frame = Frame {
            camera_id: Arc::from("cam"),
            index: 0,
            width: W,
            height: H,
            rgb: Arc::from(rgb),
            pts_ns: None,
            captured_at: OffsetDateTime::UNIX_EPOCH + time::Duration::seconds_f64(1.8e9 + secs),
            captured_instant: std::time::Instant::now(),
        };
        Tracks {
            detections: Detections { frame, objects: vec![], infer_ms: 0.0 },
            tracks: vec![],
            fallen: vec![],
        }
    }

    fn rule() -> Tamper {
        let cfg: TamperRule = toml::from_str("min_secs = 3.0\nclear_secs = 2.0").unwrap();
        Tamper::new(cfg)
    }

    /// (change, cause, event time) of every output.
    type Got = Vec<(Change, String, f64)>;

    /// Feeds `frames(t)` at 5 fps over [from, to) and collects the outputs.
    fn feed(r: &mut Tamper, from: f64, to: f64, got: &mut Got, frames: &dyn Fn(u32) -> Vec<u8>) {
        let mut out = Vec::new();
        let mut i = (from * 5.0).round() as u32;
        while f64::from(i) / 5.0 < to {
            let t = f64::from(i) / 5.0;
            r.on_frame(&tracks(frames(i), t), &mut out);
            for o in out.drain(..) {
                let at = (o.at - (OffsetDateTime::UNIX_EPOCH + time::Duration::seconds_f64(1.8e9)))
                    .as_seconds_f64();
                got.push((o.change, o.objects[0].class.clone(), (at * 10.0).round() / 10.0));
            }
            i += 1;
        }
    }

    #[test]
    fn covered_defocused_moved() {
        let base = scene();
        let normal = |i: u32| vary(&base, 1.0, 0.0, 3, i);
        let (mut r, mut got) = (rule(), Got::new());
        feed(&mut r, 0.0, 10.0, &mut got, &normal);
        assert!(got.is_empty(), "normal scene: {got:?}");
        // Covered (black) 10–20 s.
        feed(&mut r, 10.0, 20.0, &mut got, &|i| vary(&base, 0.03, 0.0, 1, i));
        feed(&mut r, 20.0, 30.0, &mut got, &normal);
        // Defocused 30–40 s.
        let blur = blurred(&base);
        feed(&mut r, 30.0, 40.0, &mut got, &|i| vary(&blur, 1.0, 0.0, 1, i));
        feed(&mut r, 40.0, 50.0, &mut got, &normal);
        // Moved (10 % of the width) 50–60 s.
        let moved = shifted(&base, 32);
        feed(&mut r, 50.0, 60.0, &mut got, &|i| vary(&moved, 1.0, 0.0, 3, i));
        feed(&mut r, 60.0, 70.0, &mut got, &normal);
        // The shift is measured: 32 px of 320 = 16 px at the 160 px analysis width.
        let (cause, m) = r.observe(&vary(&moved, 1.0, 0.0, 3, 1), W, H).unwrap();
        assert_eq!(cause, Some(Cause::Moved));
        assert!((m.shift - 16.0).abs() < 1.0 && m.response > 0.05, "{m:?}");
        assert_eq!(r.observe(&normal(2), W, H).unwrap().0, None, "the reference is intact");
        let s = |c: Change, k: &str, at: f64| (c, k.to_string(), at);
        assert_eq!(
            got,
            vec![
                s(Change::Started, "covered", 10.0),
                s(Change::Ended, "covered", 19.8),
                s(Change::Started, "defocused", 30.0),
                s(Change::Ended, "defocused", 39.8),
                s(Change::Started, "moved", 50.0),
                s(Change::Ended, "moved", 59.8),
            ]
        );
        let mut out = Vec::new();
        r.finish(OffsetDateTime::now_utc(), &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn noise_and_lighting_changes_do_not_fire() {
        let base = scene();
        let (mut r, mut got) = (rule(), Got::new());
        // Heavier sensor noise, a slow dimming to 55 %, a sudden switch, brightening.
        feed(&mut r, 0.0, 20.0, &mut got, &|i| {
            vary(&base, 1.0 - 0.45 * i as f32 / 100.0, 0.0, 8, i)
        });
        feed(&mut r, 20.0, 40.0, &mut got, &|i| vary(&base, 0.7, 15.0, 8, i));
        feed(&mut r, 40.0, 60.0, &mut got, &|i| vary(&base, 1.1, 0.0, 6, i));
        assert!(got.is_empty(), "{got:?}");
        // Measurements are sane on a normal frame.
        let (cause, m) = r.observe(&vary(&base, 1.1, 0.0, 3, 1), W, H).unwrap();
        assert_eq!(cause, None, "{m:?}");
        assert!(m.similarity > 0.8 && m.shift < 1.0, "{m:?}");
    }

    /// Cost per analysed 640×360 frame (run with --release --ignored --nocapture).
    #[test]
    #[ignore]
    fn tamper_cost() {
        let (w, h) = (640u32, 360u32);
        let img: Vec<u8> =
            (0..w * h * 3).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
        let mut r = rule();
        r.observe(&img, w, h).unwrap();
        let n = 500;
        let t = std::time::Instant::now();
        for _ in 0..n {
            r.observe(&img, w, h).unwrap();
        }
        println!(
            "camera_tamper: {:.3} ms per 640x360 frame",
            t.elapsed().as_secs_f64() * 1000.0 / f64::from(n)
        );
    }

    #[test]
    fn bad_frames_are_skipped() {
        let mut r = rule();
        let mut out = Vec::new();
        let mut t = tracks(vec![0u8; 10], 0.0);
        t.detections.frame.width = 4;
        r.on_frame(&t, &mut out);
        assert!(out.is_empty());
    }
}
