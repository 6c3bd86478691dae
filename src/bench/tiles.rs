//! `gridwatch bench-tiles`: what tiled detection (`[cameras.tiles]`) gains and costs on real
//! clips. Each clip runs twice through the frame path ([`analyse_video`]), whole frames only
//! and with tiles on every analysed frame; it prints, per clip, vehicle detections per
//! analysed frame (at the model's score threshold and at 0.5) and detection time per frame.
//! Detections are not checked against labels: more of them is a recall proxy, not recall.

use std::path::{Path, PathBuf};

use anyhow::anyhow;

use crate::analytics::{analyse_video, CameraAnalytics, Detectors};
use crate::config::Config;

/// COCO classes counted as vehicles.
pub const VEHICLES: &[&str] = &["car", "truck", "bus", "motorcycle"];

/// One pass over a clip.
struct Pass {
    frames: u64,
    /// Vehicle detections at ≥ the model's score threshold, and at ≥ 0.5.
    at_threshold: u64,
    at_half: u64,
    ms: Vec<f32>,
}

#[allow(clippy::too_many_arguments)]
pub fn run(
    videos: &[PathBuf],
    model: &Path,
    fps: f64,
    width: u32,
    secs: f64,
    grid: u32,
    overlap: f64,
    threads: usize,
) -> anyhow::Result<()> {
    let manifest = std::fs::canonicalize(crate::cli::manifest_path(model))
        .map_err(|e| anyhow!("model {}: {e}", model.display()))?;
    println!(
        "gridwatch bench-tiles: {} at {fps} fps, width {width}, first {secs} s; tiles {grid}x{grid} overlap {overlap} on every analysed frame",
        manifest.display()
    );
    println!("machine: {} CPU(s), {}", crate::config::available_cores(), super::cpu_model());
    println!(
        "| clip | frames | vehicles/frame ≥ thr (whole → tiled) | ≥ 0.5 (whole → tiled) | ms/frame p50 (whole → tiled) |"
    );
    println!("|---|---|---|---|---|");
    for video in videos {
        let mut w = pass(video, &manifest, fps, width, secs, false, grid, overlap, threads)?;
        let mut t = pass(video, &manifest, fps, width, secs, true, grid, overlap, threads)?;
        let per = |n: u64, f: u64| n as f64 / f.max(1) as f64;
        let (wm, tm) = (super::percentile(&mut w.ms, 0.5), super::percentile(&mut t.ms, 0.5));
        println!(
            "| {} | {} | {:.2} → {:.2} ({}) | {:.2} → {:.2} ({}) | {wm:.0} → {tm:.0} (×{:.1}) |",
            video.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
            w.frames,
            per(w.at_threshold, w.frames),
            per(t.at_threshold, t.frames),
            gain(w.at_threshold, t.at_threshold),
            per(w.at_half, w.frames),
            per(t.at_half, t.frames),
            gain(w.at_half, t.at_half),
            tm / wm,
        );
    }
    Ok(())
}

/// The change from `a` to `b` in per cent ("—" from 0).
fn gain(a: u64, b: u64) -> String {
    if a == 0 {
        "—".into()
    } else {
        format!("{:+.0} %", (b as f64 / a as f64 - 1.0) * 100.0)
    }
}

#[allow(clippy::too_many_arguments)]
fn pass(
    video: &Path,
    manifest: &Path,
    fps: f64,
    width: u32,
    secs: f64,
    tiles: bool,
    grid: u32,
    overlap: f64,
    threads: usize,
) -> anyhow::Result<Pass> {
    let tiles = if tiles {
        format!("[cameras.tiles]\ngrid = {grid}\noverlap = {overlap}\nevery_secs = 0\n")
    } else {
        String::new()
    };
    let text = format!(
        "box_id = \"bench\"\ndata_dir = \"/tmp\"\n[inference]\nintra_op_threads = {threads}\n\
         [models]\nm = \"{model}\"\n[[cameras]]\nid = \"bench\"\nurl = \"{video}\"\n\
         realtime = false\ndetect_fps = {fps}\ndetect_width = {width}\nmodels = [\"m\"]\n{tiles}",
        model = manifest.display(),
        video = video.display(),
    );
    let cfg = Config::parse(&text, Path::new("/")).map_err(|e| anyhow!(e))?;
    let threshold = crate::analytics::load_manifests(&cfg)?["m"].output.score_threshold;
    let opts =
        crate::infer::detector::DetectorOptions { intra_op_threads: threads, ..Default::default() };
    let mut detectors = Detectors::for_config(&cfg, &opts)?;
    let camera = CameraAnalytics::new(&cfg.cameras[0]);
    let mut p = Pass { frames: 0, at_threshold: 0, at_half: 0, ms: Vec::new() };
    let every = if fps > 0.0 { 1.0 / fps } else { 0.0 };
    let t0 = time::OffsetDateTime::now_utc();
    analyse_video(video, width, every, t0, &camera, Some(&mut detectors), |t, a| {
        if t > secs {
            return std::ops::ControlFlow::Break(());
        }
        let d = &a.tracks.detections;
        let vehicles = || d.objects.iter().filter(|o| VEHICLES.contains(&o.class.as_str()));
        p.frames += 1;
        p.at_threshold += vehicles().filter(|o| o.score >= threshold).count() as u64;
        p.at_half += vehicles().filter(|o| o.score >= 0.5).count() as u64;
        p.ms.push(d.infer_ms);
        std::ops::ControlFlow::Continue(())
    })?;
    Ok(p)
}
