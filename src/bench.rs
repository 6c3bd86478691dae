//! `gridwatch bench`: decode-only, inference-only and full-pipeline throughput measured in
//! one process on one video, and their ratio. Prints a report; asserts nothing.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::anyhow;

use crate::app::{start_cameras, Analytics};
use crate::config::Config;
use crate::health::{CameraHealth, Registry};
use crate::ingest::profile::HardwareProfile;
use crate::ingest::StreamEvent;

fn percentile(v: &mut [f32], p: f64) -> f32 {
    if v.is_empty() {
        return f32::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() - 1) as f64 * p).round() as usize;
    v[i]
}

/// Peak resident set size of this process (VmHWM), in MiB.
pub fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

pub fn run(video: &Path, model: &Path, frames: u64, width: u32, threads: usize) -> anyhow::Result<()> {
    let frames = frames.max(10);
    let video = std::fs::canonicalize(video).map_err(|e| anyhow!("video {}: {e}", video.display()))?;
    let manifest_path = std::fs::canonicalize(crate::cli::manifest_path(model))
        .map_err(|e| anyhow!("model {}: {e}", model.display()))?;
    println!("gridwatch bench: {} with {}", video.display(), manifest_path.display());
    println!("machine: {} CPU(s), {}", num_cpus(), cpu_model());

    // 1. Decode only (lossless, unpaced), keeping a few frames for stage 2.
    let mut stream = crate::cli::open_video(&video, width)?;
    let mut kept = Vec::new();
    let t = Instant::now();
    let mut decoded = 0u64;
    while decoded < frames {
        match stream.next(Duration::from_secs(10)) {
            StreamEvent::Frame(f) => {
                decoded += 1;
                if kept.len() < 50 {
                    kept.push(f);
                }
            }
            StreamEvent::Eos => break,
            StreamEvent::Idle => return Err(anyhow!("decoder stalled")),
            StreamEvent::Error(e) => return Err(anyhow!("decode: {e}")),
        }
    }
    let decode_fps = decoded as f64 / t.elapsed().as_secs_f64();
    drop(stream);
    let (fw, fh) = kept.first().map(|f| (f.width, f.height)).ok_or_else(|| anyhow!("no frames decoded"))?;
    println!("decode only:    {decoded} frames at {fw}x{fh}: {decode_fps:.1} fps");

    // 2. Inference only (pre + run + post) on decoded frames.
    let mut det = crate::cli::open_detector(&manifest_path, threads)?;
    for f in kept.iter().take(3) {
        det.detect(&f.rgb, f.width, f.height)?; // warm-up
    }
    let n_inf = frames.min(200) as usize;
    let mut ms = Vec::with_capacity(n_inf);
    let t = Instant::now();
    for i in 0..n_inf {
        let f = &kept[i % kept.len()];
        let s = Instant::now();
        det.detect(&f.rgb, f.width, f.height)?;
        ms.push(s.elapsed().as_secs_f32() * 1000.0);
    }
    let infer_fps = n_inf as f64 / t.elapsed().as_secs_f64();
    let (p50, p95) = (percentile(&mut ms, 0.5), percentile(&mut ms, 0.95));
    println!("inference only: {n_inf} frames, {threads} thread(s): {infer_fps:.1} fps, p50 {p50:.1} ms, p95 {p95:.1} ms");
    drop(det);

    // 3. Full pipeline: ingest thread → queue → inference worker + presence rule → store.
    let data = tempfile_dir()?;
    let cfg_text = format!(
        r#"box_id = "bench"
data_dir = "{data}"
[inference]
intra_op_threads = {threads}
[models]
m = "{model}"
[[cameras]]
id = "bench"
url = "{video}"
realtime = false
detect_fps = 0
detect_width = {width}
models = ["m"]
[[cameras.rules]]
kind = "presence"
classes = ["person", "car"]
min_secs = 0.0
clear_secs = 1.0
"#,
        data = data.display(),
        model = manifest_path.display(),
        video = video.display(),
    );
    let cfg = Config::parse(&cfg_text, Path::new("/")).map_err(|e| anyhow!(e))?;
    let profile = HardwareProfile::load("cpu", Path::new("."))
        .map_err(|e| anyhow!(e))?;
    let store = crate::store::Store::open(&cfg.data_dir)?;
    let registry = Registry::new();
    registry.register(CameraHealth::new(&cfg.cameras[0]));
    let manifests = crate::app::load_manifests(&cfg)?;
    let opts = crate::infer::detector::DetectorOptions {
        intra_op_threads: threads,
        execution_providers: vec!["cpu".into()],
    };
    let analytics = Analytics::start(&cfg.cameras, &manifests, &opts, 1, store.clone(), registry.clone(), true)?;
    let stop = Arc::new(AtomicBool::new(false));
    let t = Instant::now();
    let cams = start_cameras(&cfg, &profile, &registry, &analytics.queue, &stop, true)?;
    let stats = analytics.stats.clone();
    loop {
        let n = stats.analysed.load(Ordering::Relaxed);
        let h = registry.get("bench");
        let ended = h.as_ref().is_some_and(|h| h.state == crate::health::CameraState::Offline);
        if n >= frames || (ended && n >= h.map(|h| h.frames_received).unwrap_or(0)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = t.elapsed().as_secs_f64();
    let analysed = stats.analysed.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for c in cams {
        let _ = c.join();
    }
    let mut lat = stats.frame_latency_ms.lock().map(|v| v.clone()).unwrap_or_default();
    analytics.shutdown();
    let mut ev = stats.event_latency_ms.lock().map(|v| v.clone()).unwrap_or_default();
    store.close()?;
    let _ = std::fs::remove_dir_all(&data);
    let pipe_fps = analysed as f64 / elapsed;
    println!(
        "full pipeline:  {analysed} frames analysed: {pipe_fps:.1} fps; frame→rules latency p50 {:.1} ms, p95 {:.1} ms; frame→event stored p50 {:.1} ms ({} changes)",
        percentile(&mut lat, 0.5),
        percentile(&mut lat, 0.95),
        percentile(&mut ev, 0.5),
        ev.len()
    );
    let bound = decode_fps.min(infer_fps);
    println!("ratio pipeline / min(decode, inference) = {pipe_fps:.1} / {bound:.1} = {:.2}", pipe_fps / bound);
    if let Some(rss) = peak_rss_mib() {
        println!("peak RSS: {rss:.0} MiB");
    }
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!("gridwatch-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string()))
        .unwrap_or_else(|| "unknown CPU".into())
}
