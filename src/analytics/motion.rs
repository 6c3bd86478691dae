//! Motion-gated detection (`[cameras.motion_gate]`, docs/design/0039). Each analysed frame is
//! reduced to a small grey copy (block means, `analysis_width_px` wide) and compared with a
//! background model of the scene: a per-pixel running mean with time constant
//! `background_secs` of frame time, and a running mean absolute deviation (their noise,
//! each difference capped at 3 × `min_diff_levels`). A pixel moves when it differs from the mean, less the median
//! difference of all pixels (a change of the whole image: exposure, gain, a cloud), by more
//! than `min_diff_levels` and 3 × its noise; the frame moves when at least
//! `min_moving_fraction` of the pixels move.
//!
//! Moving pixels join the mean at a quarter of the rate, so a passing object leaves no ghost
//! and a stopped one becomes background after about a minute.
//!
//! The camera's models then run on a frame when ([`Gate`]): it is the first (or time went
//! back, or its size changed), it moves, it is within `hold_secs` of the last moving frame,
//! the tracker is unsure of something (a tentative or a lost track: `Tracker::unsettled`) or
//! the built-in fire detector has a live region, or `1 / idle_detect_fps` seconds have passed
//! since the models last ran. On the other frames (`Gate::Coast`) the tracker is fed the
//! detections of the last frame the models ran on that its tracked objects matched: nothing
//! moved, so they still hold; stationary objects stay tracked and the rules see every frame.
//!
//! Detecting on motion regions instead of the whole frame is not done: the shipped models
//! take a fixed input (416 × 416), so a crop costs one whole inference like the frame
//! (docs/design/0039).

use time::OffsetDateTime;

use crate::config::MotionGateConfig;
use crate::types::{Detection, Track, TrackState};

/// Why the models run on a frame, or [`Gate::Coast`] when they do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// No background yet: the first frame, a frame of another size, or time went back.
    Start,
    /// The frame moves.
    Motion,
    /// Within `hold_secs` of the last moving frame.
    Hold,
    /// The tracker is unsure (a tentative or a lost track) or a fire region is live.
    Unsettled,
    /// An idle camera's `idle_detect_fps` is due.
    Idle,
    /// The models are skipped: the tracks coast on the held detections.
    Coast,
}

impl Gate {
    /// Whether the models run.
    pub fn detects(self) -> bool {
        self != Gate::Coast
    }
}

/// One camera's motion gate: its background model and the detections its tracks coast on.
pub struct MotionGate {
    cfg: MotionGateConfig,
    /// Frame size the background was built for, and the block side of the grey copy.
    size: (u32, u32),
    block: usize,
    grey: Vec<f32>,
    mean: Vec<f32>,
    noise: Vec<f32>,
    /// Capture time of the last frame, of the last moving one, of the last with the models.
    last_at: Option<OffsetDateTime>,
    last_motion: Option<OffsetDateTime>,
    last_detect: Option<OffsetDateTime>,
    /// The fraction of moving pixels of the last frame.
    moving: f64,
    held: Vec<Detection>,
}

/// A tracked object and a detection are the same when their boxes overlap this much.
const HOLD_IOU: f32 = 0.5;
/// Moving pixels join the background at this fraction of the rate of the others, so an
/// object passing by leaves no ghost; one that stops joins it after about
/// `background_secs` / this × 2.7 (54 s at the defaults).
const MOVING_RATE: f32 = 0.25;
/// Background noise a new model starts with (grey levels).
const START_NOISE: f32 = 2.0;

impl MotionGate {
    pub fn new(cfg: MotionGateConfig) -> MotionGate {
        MotionGate {
            cfg,
            size: (0, 0),
            block: 1,
            grey: Vec::new(),
            mean: Vec::new(),
            noise: Vec::new(),
            last_at: None,
            last_motion: None,
            last_detect: None,
            moving: 0.0,
            held: Vec::new(),
        }
    }

    pub fn config(&self) -> &MotionGateConfig {
        &self.cfg
    }

    /// The fraction of the grey copy's pixels that moved on the last frame (1 on a start).
    pub fn moving_fraction(&self) -> f64 {
        self.moving
    }

    /// Reads the motion of the frame captured `at` (packed RGB24, `width` × `height`),
    /// updates the background, and decides whether the models run; `unsettled` says whether
    /// the tracker is unsure of something or a fire region is live.
    pub fn decide(
        &mut self,
        rgb: &[u8],
        width: u32,
        height: u32,
        at: OffsetDateTime,
        unsettled: bool,
    ) -> Gate {
        let gate = match self.observe(rgb, width, height, at) {
            None => {
                self.last_motion = Some(at);
                Gate::Start
            }
            Some(f) if f >= self.cfg.min_moving_fraction => {
                self.last_motion = Some(at);
                Gate::Motion
            }
            Some(_) if self.since(self.last_motion, at) < self.cfg.hold_secs => Gate::Hold,
            Some(_) if unsettled => Gate::Unsettled,
            Some(_)
                if self.since(self.last_detect, at) + 1e-6 >= 1.0 / self.cfg.idle_detect_fps =>
            {
                Gate::Idle
            }
            Some(_) => Gate::Coast,
        };
        if gate.detects() {
            self.last_detect = Some(at);
        }
        gate
    }

    /// Seconds from `t` to `at` (infinite without `t`).
    fn since(&self, t: Option<OffsetDateTime>, at: OffsetDateTime) -> f64 {
        t.map_or(f64::INFINITY, |t| (at - t).as_seconds_f64())
    }

    /// Updates the background with the frame; the fraction of moving pixels, or `None` when
    /// the model (re)starts on this frame.
    fn observe(&mut self, rgb: &[u8], width: u32, height: u32, at: OffsetDateTime) -> Option<f64> {
        let (w, h) = (width as usize, height as usize);
        let back = self.last_at.is_some_and(|l| at < l);
        let dt = self.last_at.map_or(0.0, |l| (at - l).as_seconds_f64());
        self.last_at = Some(at);
        if w == 0 || h == 0 || rgb.len() < w * h * 3 {
            // Nothing to read motion on: count it as moving (the models decide).
            self.size = (0, 0);
            self.moving = 1.0;
            return Some(1.0);
        }
        let restart = back || self.size != (width, height);
        if restart {
            self.size = (width, height);
            self.block = (w / self.cfg.analysis_width_px as usize).max(1);
        }
        self.shrink(rgb, w, h);
        if restart || self.mean.len() != self.grey.len() {
            self.mean.clone_from(&self.grey);
            self.noise = vec![START_NOISE; self.grey.len()];
            self.moving = 1.0;
            return None;
        }
        let a = (1.0 - (-dt.max(0.0) / self.cfg.background_secs).exp()) as f32;
        // A change of the whole image (the camera's exposure or gain, a cloud) is not motion:
        // the median difference from the background is taken off every pixel first.
        let mut hist = [0u32; 511];
        for (g, m) in self.grey.iter().zip(&self.mean) {
            hist[((g - m).round().clamp(-255.0, 255.0) + 255.0) as usize] += 1;
        }
        let (mut below, half) = (0u32, self.grey.len().div_ceil(2) as u32);
        let offset = hist
            .iter()
            .position(|&c| {
                below += c;
                below >= half
            })
            .map_or(0.0, |i| i as f32 - 255.0);
        let mut moving = 0usize;
        for ((g, m), n) in self.grey.iter().zip(&mut self.mean).zip(&mut self.noise) {
            let d = (g - *m - offset).abs();
            let moves = d > self.cfg.min_diff_levels.max(3.0 * *n);
            moving += usize::from(moves);
            // A pixel that always flickers (leaves, rain) learns its noise; one that a
            // passing object covers for a moment hardly does.
            *n += a * (d.min(3.0 * self.cfg.min_diff_levels) - *n);
            // Passing objects leave no ghost: moving pixels join the background slower.
            *m += if moves { a * MOVING_RATE } else { a } * (g - *m);
        }
        self.moving = moving as f64 / self.grey.len().max(1) as f64;
        Some(self.moving)
    }

    /// The grey copy: the mean luma of each `block` × `block` square of the frame.
    fn shrink(&mut self, rgb: &[u8], w: usize, h: usize) {
        let b = self.block;
        let (gw, gh) = ((w / b).max(1), (h / b).max(1));
        let (bw, bh) = (b.min(w), b.min(h));
        self.grey.clear();
        self.grey.resize(gw * gh, 0.0);
        let mut acc = vec![0u64; gw];
        let scale = 1.0 / (256.0 * (bw * bh) as f32);
        for gy in 0..gh {
            acc.iter_mut().for_each(|a| *a = 0);
            for y in gy * bh..(gy + 1) * bh {
                let row = &rgb[y * w * 3..(y * w + gw * bw) * 3];
                for (x, px) in row.chunks_exact(3).enumerate() {
                    acc[x / bw] += 77 * px[0] as u64 + 150 * px[1] as u64 + 29 * px[2] as u64;
                }
            }
            for (g, a) in self.grey[gy * gw..(gy + 1) * gw].iter_mut().zip(&acc) {
                *g = *a as f32 * scale;
            }
        }
    }

    /// After a frame the models ran on: keeps the detections (`candidates`, the models'
    /// boxes) that a track matched on it (a tracked track overlapping them by
    /// [`HOLD_IOU`]) as the boxes the tracks coast on.
    pub fn hold(&mut self, candidates: Vec<Detection>, tracks: &[Track]) {
        self.held = candidates
            .into_iter()
            .filter(|d| {
                tracks
                    .iter()
                    .any(|t| t.state == TrackState::Tracked && t.bbox.iou(&d.bbox) >= HOLD_IOU)
            })
            .collect();
    }

    /// The detections the tracks coast on, for a frame the models skip.
    pub fn held(&self) -> Vec<Detection> {
        self.held.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
            + time::Duration::milliseconds(ms)
    }

    /// A 320 × 180 grey-ish image with a textured background and, at `x`, a dark square.
    fn image(x: Option<usize>) -> Vec<u8> {
        let (w, h) = (320, 180);
        let mut v = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            for i in 0..w {
                let dark = x.is_some_and(|x| (x..x + 12).contains(&i) && (80..100).contains(&y));
                let g = if dark { 30 } else { 100 + ((i * 7 + y * 13) % 40) as u8 };
                v.extend([g, g, g]);
            }
        }
        v
    }

    /// Still frames coast after the hold, with one detection a second; a moving square
    /// detects on every frame; an unsure tracker keeps the models running.
    #[test]
    fn still_frames_coast_and_motion_detects() {
        let mut g = MotionGate::new(MotionGateConfig::default());
        let still = image(None);
        let mut gates = Vec::new();
        for i in 0..50 {
            gates.push(g.decide(&still, 320, 180, t(100 * i), false));
        }
        assert_eq!(gates[0], Gate::Start);
        // Held for 2 s, then one idle detection per second.
        assert!(gates[1..20].iter().all(|&x| x == Gate::Hold), "{gates:?}");
        let detected: Vec<usize> = (20..50).filter(|&i| gates[i].detects()).collect();
        assert_eq!(detected, [29, 39, 49], "{gates:?}");
        for i in 50..60 {
            let x = 40 + 6 * (i - 50) as usize;
            assert_eq!(g.decide(&image(Some(x)), 320, 180, t(100 * i), false), Gate::Motion);
            assert!(g.moving_fraction() > 0.001, "{}", g.moving_fraction());
        }
        for i in 60..79 {
            assert_eq!(g.decide(&still, 320, 180, t(100 * i), false), Gate::Hold, "{i}");
        }
        assert_eq!(g.decide(&still, 320, 180, t(8000), true), Gate::Unsettled);
        assert_eq!(g.decide(&still, 320, 180, t(8100), false), Gate::Coast);
        // Time back, another size: a new background.
        assert_eq!(g.decide(&still, 320, 180, t(100), false), Gate::Start);
        assert_eq!(g.decide(&image(None)[..160 * 90 * 3], 160, 90, t(200), false), Gate::Start);
    }
}
