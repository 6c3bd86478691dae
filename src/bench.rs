//! `gridwatch bench`: decode-only, inference-only and full-pipeline throughput measured in
//! one process on one video, and their ratio (the pipeline as shipped, and again with ONNX
//! Runtime's spinning intra-op threads, docs/design/0052); plus the cost of tracking + rules per frame
//! of one camera at 20 tracked objects (synthetic), and of the built-in fire detector per
//! frame of the video ([`fire`]). Prints a report; asserts nothing.

pub mod capacity;
pub mod connections;
pub mod fire;
pub mod tiles;
pub mod uplink;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::anyhow;

use crate::app::{start_cameras, Analytics};
use crate::config::Config;
use crate::health::Registry;
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

pub fn run(
    video: &Path,
    model: &Path,
    frames: u64,
    width: u32,
    threads: usize,
) -> anyhow::Result<()> {
    let frames = frames.max(10);
    let video =
        std::fs::canonicalize(video).map_err(|e| anyhow!("video {}: {e}", video.display()))?;
    let manifest_path = std::fs::canonicalize(crate::cli::manifest_path(model))
        .map_err(|e| anyhow!("model {}: {e}", model.display()))?;
    println!("gridwatch bench: {} with {}", video.display(), manifest_path.display());
    println!("machine: {} CPU(s), {}", crate::config::available_cores(), cpu_model());

    // 0. Tracking + rules per frame of one camera (no video or model needed).
    for objects in TRACKING_OBJECTS {
        let tr = tracking_rules_cost(objects, TRACKING_FRAMES)?;
        println!(
            "tracking+rules: {} objects ({} confirmed tracks), {} frames, {} rules, 1 zone, 1 line, calibrated: per frame mean {:.0} µs, p50 {:.0} µs, p95 {:.0} µs, max {:.0} µs",
            tr.objects, tr.tracks, tr.frames, tr.rules, tr.mean_us, tr.p50_us, tr.p95_us, tr.max_us
        );
    }

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
    let (fw, fh) =
        kept.first().map(|f| (f.width, f.height)).ok_or_else(|| anyhow!("no frames decoded"))?;
    println!("decode only:    {decoded} frames at {fw}x{fh}: {decode_fps:.1} fps");

    // 1b. The built-in fire and smoke detector alone, every decoded frame, one thread.
    fire::print(&fire::fire_cost(&video, width, frames.min(300) as usize, 1)?);

    // 1c. The low-light enhancement of the models' input (`[cameras.low_light_enhance]`)
    // alone, on the kept frames: the dark test, and CLAHE forced on every frame.
    let e = enhance_cost(&kept)?;
    println!(
        "low-light enhance: {} frames at {fw}x{fh} ({} dark by the default test): dark test p50 {:.2} ms, CLAHE (forced) p50 {:.2} ms, p95 {:.2} ms",
        e.frames, e.dark, e.test_p50_ms, e.clahe_p50_ms, e.clahe_p95_ms
    );

    // 2. Inference only (pre + run + post) on decoded frames.
    let mut det = crate::cli::open_detector(&manifest_path, threads)?;
    for f in kept.iter().take(3) {
        det.detect(&f.rgb, f.width, f.height)?; // warm-up
    }
    let n_inf = frames.min(200) as usize;
    let mut ms = Vec::with_capacity(n_inf);
    let (mut pre, mut run, mut post) = (Vec::new(), Vec::new(), Vec::new());
    let t = Instant::now();
    for i in 0..n_inf {
        let f = &kept[i % kept.len()];
        let s = Instant::now();
        det.detect(&f.rgb, f.width, f.height)?;
        ms.push(s.elapsed().as_secs_f32() * 1000.0);
        let tm = det.last_timings();
        pre.push(tm.pre_ms);
        run.push(tm.run_ms);
        post.push(tm.post_ms);
    }
    let infer_fps = n_inf as f64 / t.elapsed().as_secs_f64();
    let (p50, p95) = (percentile(&mut ms, 0.5), percentile(&mut ms, 0.95));
    println!(
        "inference only: {n_inf} frames, {threads} thread(s): {infer_fps:.1} fps, p50 {p50:.1} ms, p95 {p95:.1} ms \
         (p50 pre {:.1} + run {:.1} + post {:.1} ms)",
        percentile(&mut pre, 0.5),
        percentile(&mut run, 0.5),
        percentile(&mut post, 0.5)
    );
    drop(det);

    // 3. Full pipeline: ingest thread → queue → inference worker + presence rule → store; as
    // shipped (intra-op threads block between operators), then with ONNX Runtime's default
    // (they spin), for the ratio.
    let p = pipeline(&video, &manifest_path, frames, width, threads, false)?;
    let pipe_fps = p.fps;
    println!(
        "full pipeline:  {} frames analysed: {pipe_fps:.1} fps; frame→rules latency p50 {:.1} ms, p95 {:.1} ms; frame→event stored p50 {:.1} ms ({} changes)",
        p.analysed, p.latency_p50_ms, p.latency_p95_ms, p.event_p50_ms, p.changes
    );
    let spin = pipeline(&video, &manifest_path, frames, width, threads, true)?;
    println!(
        "full pipeline, intra-op threads spinning (ONNX Runtime's default): {:.1} fps; shipped / spinning = {:.2}",
        spin.fps,
        pipe_fps / spin.fps
    );
    let bound = decode_fps.min(infer_fps);
    println!(
        "ratio pipeline / min(decode, inference) = {pipe_fps:.1} / {bound:.1} = {:.2}",
        pipe_fps / bound
    );
    if let Some(rss) = peak_rss_mib() {
        println!("peak RSS: {rss:.0} MiB");
    }
    Ok(())
}

/// One run of [`pipeline`].
struct PipelineRun {
    analysed: u64,
    fps: f64,
    latency_p50_ms: f32,
    latency_p95_ms: f32,
    event_p50_ms: f32,
    changes: usize,
}

/// The full pipeline on `frames` frames of `video`: a lossless file camera → queue → one
/// inference worker with a presence rule → store, as `run` wires them.
fn pipeline(
    video: &Path,
    manifest_path: &Path,
    frames: u64,
    width: u32,
    threads: usize,
    spinning: bool,
) -> anyhow::Result<PipelineRun> {
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
    let profile = HardwareProfile::load("cpu", Path::new(".")).map_err(|e| anyhow!(e))?;
    let store = crate::store::Store::open(&cfg.data_dir)?;
    let registry = Registry::new();
    registry.register(crate::ingest::camera_health(&cfg.cameras[0], registry.clock().now()));
    let manifests = crate::analytics::load_manifests(&cfg)?;
    let opts = crate::infer::detector::DetectorOptions {
        intra_op_threads: threads,
        intra_op_spinning: spinning,
        ..Default::default()
    };
    let analytics = Analytics::start(
        &cfg.cameras,
        &manifests,
        &opts,
        1,
        store.clone(),
        registry.clone(),
        None,
    )?;
    let stop = Arc::new(AtomicBool::new(false));
    let t = Instant::now();
    let cams = start_cameras(&cfg, &profile, &registry, &analytics.queue, &stop, None)?;
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
    Ok(PipelineRun {
        analysed,
        fps: analysed as f64 / elapsed,
        latency_p50_ms: percentile(&mut lat, 0.5),
        latency_p95_ms: percentile(&mut lat, 0.95),
        event_p50_ms: percentile(&mut ev, 0.5),
        changes: ev.len(),
    })
}

/// Objects (20, and the 50 the traffic issue sets its 0.1 ms target at) and frames of the
/// synthetic tracking + rules measurement.
pub const TRACKING_OBJECTS: [usize; 2] = [20, 50];
pub const TRACKING_FRAMES: usize = 3000;

/// Result of [`tracking_rules_cost`].
#[derive(Debug, Clone)]
pub struct TrackingCost {
    pub objects: usize,
    /// Confirmed tracks reported on the last frame.
    pub tracks: usize,
    /// Frames measured (after a warm-up of 20 frames).
    pub frames: usize,
    pub rules: usize,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p95_us: f64,
    pub max_us: f64,
}

/// Camera of the synthetic measurement: a zone over the middle of the view, a vertical line
/// through it, and rules of the kinds that look at every track.
const TRACKING_CAMERA: &str = r#"
box_id = "bench"
data_dir = "/nonexistent"
[models]
[[cameras]]
id = "synthetic"
url = "synthetic.mp4"
models = []
enabled = false
[cameras.calibration]
image_points = [[0.1, 0.2], [0.9, 0.2], [0.9, 0.95], [0.1, 0.95]]
ground_points_m = [[0.0, 60.0], [20.0, 60.0], [20.0, 0.0], [0.0, 0.0]]
[[cameras.zones]]
name = "plaza"
points = [[0.1, 0.2], [0.9, 0.2], [0.9, 0.95], [0.1, 0.95]]
[[cameras.lines]]
name = "middle"
points = [[0.5, 0.0], [0.5, 1.0]]
[[cameras.rules]]
kind = "presence"
classes = ["person", "car"]
[[cameras.rules]]
kind = "intrusion"
zone = "plaza"
classes = ["person"]
[[cameras.rules]]
kind = "line_crossing"
line = "middle"
raise_event = true
[[cameras.rules]]
kind = "loitering"
zone = "plaza"
dwell_secs = 20.0
[[cameras.rules]]
kind = "crowd"
zone = "plaza"
min_count = 10
[[cameras.rules]]
kind = "wrong_way"
zone = "plaza"
allowed_heading_deg = 0.0
[[cameras.rules]]
kind = "congestion"
zone = "plaza"
[[cameras.rules]]
kind = "speed"
zone = "plaza"
limit_kmh = 50.0
"#;

/// Tracking + rules cost per frame of one camera: `objects` synthetic objects (people and
/// cars, every fifth a car) walk back and forth across the view at 10 fps, with a little
/// deterministic box jitter, through the frame path (`CameraAnalytics::analyse`, given
/// detections) with the real tracker (camera defaults) and a rule engine with a zone, a line
/// and 8 rules (plus zone occupancy sampling) on a calibrated camera (ground speeds). Measures tracking + rules per frame.
pub fn tracking_rules_cost(objects: usize, frames: usize) -> anyhow::Result<TrackingCost> {
    use crate::analytics::{CameraAnalytics, Detect};
    use crate::types::{BBox, Detection, Frame};
    let cfg = Config::parse(TRACKING_CAMERA, Path::new("/")).map_err(|e| anyhow!(e))?;
    let cam = cfg.cameras.first().ok_or_else(|| anyhow!("no camera"))?;
    let analytics = CameraAnalytics::new(cam);
    let t0 = time::OffsetDateTime::from_unix_timestamp(1_800_000_000).map_err(|e| anyhow!(e))?;
    let frame = Frame {
        camera_id: Arc::from("synthetic"),
        index: 0,
        width: 4,
        height: 4,
        rgb: Arc::from(vec![0u8; 48]),
        pts_ns: None,
        captured_at: t0,
        captured_instant: Instant::now(),
    };
    let mut seed = 0x9e37_79b9_u32;
    let mut jitter = move || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        (seed as f32 / u32::MAX as f32 - 0.5) * 0.004
    };
    let warmup = 20;
    let mut us = Vec::with_capacity(frames);
    let mut tracks = 0;
    for k in 0..frames + warmup {
        let secs = k as f64 / 10.0;
        let dets: Vec<Detection> = (0..objects)
            .map(|i| {
                let car = i % 5 == 4;
                let (w, h) = if car { (0.08, 0.06) } else { (0.03, 0.1) };
                // Rows 0.25..0.9; speed 0.02–0.06 per second; back and forth (triangle wave).
                let y = 0.25 + 0.65 * (i as f64 + 0.5) / objects as f64;
                let speed = 0.02 + 0.04 * ((i * 7) % 10) as f64 / 10.0;
                let phase = (i as f64 * 0.37 + secs * speed).rem_euclid(2.0);
                let x = 0.05 + 0.85 * if phase < 1.0 { phase } else { 2.0 - phase };
                let (x, y) = (x as f32 + jitter(), y as f32 + jitter());
                Detection {
                    class_id: if car { 2 } else { 0 },
                    class: if car { "car" } else { "person" }.into(),
                    score: 0.8 + jitter() * 20.0,
                    bbox: BBox { x1: x, y1: y - h, x2: x + w, y2: y },
                    track_id: None,
                    keypoints: None,
                }
            })
            .collect();
        let mut f = frame.clone();
        f.index = k as u64;
        f.captured_at = t0 + time::Duration::seconds_f64(secs);
        let out = analytics.analyse(Detect::Given(dets), f);
        tracks = out.tracks.tracks.len();
        if k >= warmup {
            us.push(out.track_ms * 1e3);
        }
        std::hint::black_box(out);
    }
    let mean_us = us.iter().map(|v| *v as f64).sum::<f64>() / us.len().max(1) as f64;
    let p50_us = percentile(&mut us, 0.5) as f64;
    let p95_us = percentile(&mut us, 0.95) as f64;
    let max_us = percentile(&mut us, 1.0) as f64;
    Ok(TrackingCost {
        objects,
        tracks,
        frames,
        rules: cam.rules.len(),
        mean_us,
        p50_us,
        p95_us,
        max_us,
    })
}

/// What [`enhance_cost`] measured (ms per frame, one thread).
#[derive(Debug, Clone)]
pub struct EnhanceCost {
    pub frames: usize,
    /// Frames the default test finds dark (they would be enhanced).
    pub dark: usize,
    pub test_p50_ms: f32,
    pub clahe_p50_ms: f32,
    pub clahe_p95_ms: f32,
}

/// Times the low-light enhancement (`analytics::enhance`) on `frames`: the default dark test
/// alone, then the enhancement forced on every frame (`max_median_luma` 255).
pub fn enhance_cost(frames: &[crate::types::Frame]) -> anyhow::Result<EnhanceCost> {
    use crate::analytics::enhance::for_detection;
    let cfg = crate::config::LowLightEnhanceConfig::default();
    let forced = crate::config::LowLightEnhanceConfig { max_median_luma: 255.0, ..cfg.clone() };
    let (mut test, mut clahe, mut dark) = (Vec::new(), Vec::new(), 0);
    for f in frames {
        let s = Instant::now();
        let stats = crate::analytics::light_stats(&f.rgb, f.width, f.height);
        test.push(s.elapsed().as_secs_f32() * 1000.0);
        dark += stats.is_some_and(|(median, _)| median < cfg.max_median_luma) as usize;
        let s = Instant::now();
        let out = for_detection(&forced, f, stats);
        clahe.push(s.elapsed().as_secs_f32() * 1000.0);
        if out.is_none() {
            return Err(anyhow!("low-light enhancement failed on frame {}", f.index));
        }
    }
    if frames.is_empty() {
        return Err(anyhow!("no frames"));
    }
    Ok(EnhanceCost {
        frames: frames.len(),
        dark,
        test_p50_ms: percentile(&mut test, 0.5),
        clahe_p50_ms: percentile(&mut clahe, 0.5),
        clahe_p95_ms: percentile(&mut clahe, 0.95),
    })
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!("gridwatch-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// `gridwatch bench-record`: CPU cost of recording a 1080p30 H.264 stream (passthrough).
/// Generates `secs` of 1080p30 H.264 at `bitrate_kbps`, then runs, as fast as possible, the
/// same demux with and without the record branch the appliance uses (fragmented-MP4
/// segments on disk) and reports the branch's CPU time per second of video, i.e. its share
/// of one core when the stream arrives in real time. Median of 3 runs each.
pub fn record_cost(secs: u32, bitrate_kbps: u32) -> anyhow::Result<()> {
    use crate::ingest::profile::{RecordMode, RecordPlan};
    crate::gst::init()?;
    let dir = std::env::temp_dir().join(format!("gridwatch-bench-record-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let _cleanup = RemoveDir(dir.clone());
    let video = dir.join("1080p30.mp4");
    println!(
        "gridwatch bench-record: generating {secs} s of 1080p30 H.264 at {bitrate_kbps} kbit/s …"
    );
    run_to_eos(&format!(
        "videotestsrc num-buffers={} pattern=snow ! video/x-raw,width=1920,height=1080,framerate=30/1 \
         ! x264enc bitrate={bitrate_kbps} speed-preset=ultrafast key-int-max=60 ! h264parse ! mp4mux \
         ! filesink location=\"{}\"",
        secs * 30,
        video.display()
    ))?;
    let bytes = std::fs::metadata(&video)?.len();
    let profile = HardwareProfile::load("cpu", Path::new(".")).map_err(|e| anyhow!(e))?;
    let plan =
        RecordPlan { mode: RecordMode::Passthrough(Some("h264")), segment_ns: 10_000_000_000 };
    let demux = format!(
        "filesrc location=\"{}\" ! qtdemux ! h264parse ! tee name=rec ! queue ! fakesink sync=false",
        video.display()
    );
    let mut base = Vec::new();
    let mut rec = Vec::new();
    for i in 0..3 {
        base.push(run_to_eos(&demux)?);
        let out = dir.join(format!("run{i}"));
        std::fs::create_dir_all(&out)?;
        let branch = profile.record_branch(plan, true);
        rec.push(run_to_eos(&format!(
            "{demux} {branch} location=\"{}/seg%05d.mp4\"",
            out.display()
        ))?);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let (b, r) = (median(&mut base), median(&mut rec));
    let video_secs = secs as f64;
    println!(
        "stream: {} s of 1080p30 H.264, {:.1} Mbit/s ({:.1} MiB)",
        secs,
        bytes as f64 * 8.0 / video_secs / 1e6,
        bytes as f64 / 1048576.0
    );
    println!(
        "demux+parse only: {:.3} s CPU ({:.2} % of one core in real time)",
        b,
        100.0 * b / video_secs
    );
    println!(
        "demux+parse+record: {:.3} s CPU ({:.2} % of one core in real time)",
        r,
        100.0 * r / video_secs
    );
    println!(
        "record branch (mux + write, passthrough): {:.3} s CPU per {secs} s of video = {:.2} % of one core (target ≤ 2 %)",
        (r - b).max(0.0),
        100.0 * (r - b).max(0.0) / video_secs
    );
    Ok(())
}

struct RemoveDir(std::path::PathBuf);
impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs a pipeline to EOS; returns the CPU time (user + system, all threads) it took.
fn run_to_eos(desc: &str) -> anyhow::Result<f64> {
    use gstreamer as gst;
    use gstreamer::prelude::*;
    let pipeline = gst::parse::launch(desc).map_err(|e| anyhow!("{e}: {desc}"))?;
    let bus = pipeline.bus().ok_or_else(|| anyhow!("no bus"))?;
    let cpu0 = process_cpu_secs()?;
    pipeline.set_state(gst::State::Playing)?;
    let res = match bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(600),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    ) {
        Some(m) => match m.view() {
            gst::MessageView::Error(e) => Err(anyhow!("pipeline error: {}", e.error())),
            _ => Ok(()),
        },
        None => Err(anyhow!("pipeline did not finish in 600 s")),
    };
    pipeline.set_state(gst::State::Null)?;
    res?;
    Ok(process_cpu_secs()? - cpu0)
}

/// User + system CPU time of this process (all threads), microsecond resolution.
fn process_cpu_secs() -> anyhow::Result<f64> {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own; no other memory is touched.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Err(anyhow!(
            "clock_gettime(CLOCK_PROCESS_CPUTIME_ID): {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9)
}

/// `gridwatch bench-mask-clip`: the cost of a masked copy of `clip` (decode → mask → encode,
/// `masked_video::mask_mp4`), in seconds per second of video; and of the same copy with
/// masking switched off (decode → encode only), to tell the masker's share. Prints a
/// report; asserts nothing (docs/performance.md "Masking").
pub fn mask_clip_cost(
    clip: &Path,
    model: &Path,
    face_model: &Path,
    threads: usize,
) -> anyhow::Result<()> {
    use crate::config::CameraMaskingConfig;
    let objects = crate::cli::open_detector(model, threads)?;
    let face = crate::cli::open_detector(face_model, threads)?;
    let on = CameraMaskingConfig::default();
    let off = CameraMaskingConfig { enabled: false, ..on };
    let masker = crate::masking::Masker::new(face, objects, &[("on", on), ("off", off)]);
    let dir = std::env::temp_dir().join(format!("gridwatch-bench-mask-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = mask_runs(&masker, clip, &dir, threads);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn mask_runs(
    masker: &crate::masking::Masker,
    clip: &Path,
    dir: &Path,
    threads: usize,
) -> anyhow::Result<()> {
    println!(
        "masked copy of {} (run every {} s, encoder `{}`, {threads} inference threads)",
        clip.display(),
        crate::masked_video::RUN_INTERVAL_SECS,
        crate::masked_video::DEFAULT_ENCODER
    );
    for camera in ["off", "on"] {
        let out = dir.join(format!("{camera}.mp4"));
        let t = Instant::now();
        let info = crate::masked_video::mask_mp4(
            masker,
            camera,
            clip,
            &out,
            crate::masked_video::DEFAULT_ENCODER,
            "bench",
            &|| false,
        )
        .map_err(|e| anyhow!("{e}"))?;
        let secs = t.elapsed().as_secs_f64();
        println!(
            "  masking {camera:>3}: {:.2} s for {:.2} s of video ({} frames, {} masker runs, {} \
             regions): {:.2} s per second of video, {:.1} ms per frame",
            secs,
            info.video_secs,
            info.frames,
            if camera == "on" { info.runs } else { 0 },
            info.regions,
            secs / info.video_secs.max(1e-9),
            1000.0 * secs / info.frames.max(1) as f64
        );
    }
    if let Some(rss) = peak_rss_mib() {
        println!("  peak RSS {rss:.0} MiB");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn tracking_rules_cost_runs_with_all_objects_tracked() {
        let r = super::tracking_rules_cost(20, 50).unwrap();
        assert_eq!((r.objects, r.tracks, r.frames, r.rules), (20, 20, 50, 8));
        assert!(r.mean_us.is_finite() && r.p95_us >= 0.0, "{r:?}");
    }
}
