//! The cost of the built-in fire and smoke detector (`crate::fire`) per analysed frame of a
//! real clip: the clip is decoded at `width` (every frame, lossless), and only
//! [`FireDetector::detect`] is timed, frame after frame, on one thread. Asserts nothing.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::anyhow;

use crate::fire::{FireDetector, FireDetectorConfig};
use crate::ingest::StreamEvent;

/// What [`fire_cost`] measured.
#[derive(Debug, Clone)]
pub struct FireCost {
    pub frames: usize,
    pub width: u32,
    pub height: u32,
    pub mean_ms: f64,
    pub p50_ms: f32,
    pub p95_ms: f32,
    pub max_ms: f32,
    /// Frames with at least one fire or smoke detection.
    pub frames_with_detections: usize,
}

/// Runs the detector (default settings) on up to `frames` frames of `video` scaled to
/// `width`, every `every`-th decoded frame (1: all).
pub fn fire_cost(
    video: &Path,
    width: u32,
    frames: usize,
    every: usize,
) -> anyhow::Result<FireCost> {
    let mut stream = crate::cli::open_video(video, width)?;
    let mut det = FireDetector::new(FireDetectorConfig::default());
    let (mut ms, mut hit, mut decoded, mut size) = (Vec::new(), 0usize, 0usize, (0, 0));
    while ms.len() < frames {
        let f = match stream.next(Duration::from_secs(10)) {
            StreamEvent::Frame(f) => f,
            StreamEvent::Eos => break,
            StreamEvent::Idle => return Err(anyhow!("decoder stalled")),
            StreamEvent::Error(e) => return Err(anyhow!("decode: {e}")),
        };
        decoded += 1;
        if (decoded - 1) % every.max(1) != 0 {
            continue;
        }
        size = (f.width, f.height);
        let at = time::OffsetDateTime::UNIX_EPOCH
            + time::Duration::nanoseconds(f.pts_ns.unwrap_or(decoded as u64 * 33_333_333) as i64);
        let s = Instant::now();
        let d = det.detect(&f.rgb, f.width, f.height, at);
        ms.push(s.elapsed().as_secs_f32() * 1000.0);
        hit += (!d.is_empty()) as usize;
    }
    if ms.is_empty() {
        return Err(anyhow!("{}: no frames decoded", video.display()));
    }
    let mean = ms.iter().map(|&v| v as f64).sum::<f64>() / ms.len() as f64;
    Ok(FireCost {
        frames: ms.len(),
        width: size.0,
        height: size.1,
        mean_ms: mean,
        p50_ms: super::percentile(&mut ms, 0.5),
        p95_ms: super::percentile(&mut ms, 0.95),
        max_ms: super::percentile(&mut ms, 1.0),
        frames_with_detections: hit,
    })
}

/// Prints one line for [`fire_cost`].
pub fn print(c: &FireCost) {
    println!(
        "builtin fire:   {} frames at {}x{}, 1 thread: per frame mean {:.2} ms, p50 {:.2} ms, p95 {:.2} ms, max {:.2} ms ({} frames with fire/smoke)",
        c.frames, c.width, c.height, c.mean_ms, c.p50_ms, c.p95_ms, c.max_ms, c.frames_with_detections
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stage runs on the repository's test clip and times every frame it analysed.
    #[test]
    fn fire_cost_runs_on_a_real_clip() {
        let clip = Path::new(env!("CARGO_MANIFEST_DIR")).join("test-videos/pets09-s2l1.mp4");
        if !clip.is_file() {
            eprintln!("skipping: {} is absent", clip.display());
            return;
        }
        let c = fire_cost(&clip, 640, 12, 3).unwrap();
        assert_eq!(c.frames, 12);
        assert_eq!(c.width, 640);
        assert!(c.mean_ms > 0.0 && c.p50_ms <= c.max_ms);
    }
}
