//! `camera_tamper`: the camera's view is covered, defocused or moved.
//!
//! Per analysed frame the rule makes a small grey copy (OpenCV: area resize to
//! `analysis_width` pixels wide, RGB → grey, f32; about 0.1 ms at 160×90) and compares it with
//! a rolling reference of the normal scene (an exponential average with weight
//! `reference_alpha`, updated only on frames where no condition holds). Causes, checked in
//! this order (the first that holds is the frame's cause):
//!
//! * `covered`: mean grey level < `dark_level` or > `bright_level`, or its standard deviation
//!   < `min_stddev` (a hand, tape or paint over the lens, a flat view);
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

use time::OffsetDateTime;

use opencv::core::{Mat, Point2d, Size, Vec3b, CV_32F};
use opencv::imgproc;
use opencv::prelude::*;

use super::common::{output, Cooldown, Episode};
use super::Rule;
use crate::rules::config::TamperRule;
use crate::types::{BBox, Change, Detection, RuleOutput, Tracks};

const KIND: &str = "camera_tamper";
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
        let bad = || opencv::Error::new(opencv::core::StsBadArg, format!("frame {w}x{h} with {} bytes", rgb.len()));
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
        let mut m = Measure { mean, stddev: var.sqrt(), sharpness: sharpness(grey, var)?, ..Default::default() };
        let c = &self.cfg;
        if m.mean < c.dark_level || m.mean > c.bright_level || m.stddev < c.min_stddev {
            return Ok((Some(Cause::Covered), m));
        }
        let Some(r) = &self.reference else { return Ok((None, m)) };
        m.ref_sharpness = r.sharpness;
        if r.sharpness >= MIN_REF_SHARPNESS && m.sharpness < r.sharpness / c.blur_factor {
            return Ok((Some(Cause::Defocused), m));
        }
        let mut response = 0.0;
        let Point2d { x, y } = imgproc::phase_correlate(grey, &r.grey, &r.window, Some(&mut response))?;
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
                r.sharpness = (1.0 - a) * r.sharpness + a * m.sharpness;
            }
            _ => {
                let mut window = Mat::default();
                imgproc::create_hanning_window(&mut window, grey.size()?, CV_32F)?;
                self.reference = Some(Reference { grey, sharpness: m.sharpness, window });
            }
        }
        Ok(())
    }

    /// Grey copy, cause and measurements of one frame; updates the reference on normal
    /// frames. Public for tests and tuning.
    pub fn observe(&mut self, rgb: &[u8], w: u32, h: u32) -> opencv::Result<(Option<Cause>, Measure)> {
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
    let cov = a.iter().zip(b).map(|(x, y)| (f64::from(*x) - ma) * (f64::from(*y) - mb)).sum::<f64>() / a.len() as f64;
    cov / (va * vb).sqrt()
}

fn cause_object(c: Cause) -> Detection {
    Detection {
        class_id: c as u32,
        class: c.as_str().into(),
        score: 1.0,
        bbox: BBox { x1: 0.0, y1: 0.0, x2: 1.0, y2: 1.0 },
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
            if let Some((change, at)) = ep.step(cause == Some(c), f.captured_at, min, clear, &mut self.cooldowns[i]) {
                let key = ep.key * 4 + i as u64;
                let (objects, snap) = if change == Change::Started { (vec![cause_object(c)], Some(f)) } else { (vec![cause_object(c)], None) };
                out.push(output(KIND, self.cfg.severity, key, change, at, objects, snap));
            }
        }
    }

    fn finish(&mut self, at: OffsetDateTime, out: &mut Vec<RuleOutput>) {
        for c in Cause::ALL {
            let i = c as usize;
            let key = self.episodes[i].key * 4 + i as u64;
            if let Some(end) = self.episodes[i].finish(at) {
                out.push(output(KIND, self.cfg.severity, key, Change::Ended, end, vec![cause_object(c)], None));
            }
        }
    }
}
