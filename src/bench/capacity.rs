//! `gridwatch bench capacity`: cameras per box. For each camera count N it starts the
//! appliance's own stages in one process, as `gridwatch run` does (`app`: store, recorder,
//! inference workers with the store writer, one supervised ingest thread per camera), with N
//! cameras each looping a clip paced in real time, recording on, and otherwise the shipped
//! defaults (one worker, 2 intra-op threads, `detect_fps` 5, width 640, the camera defaults:
//! the motion gate included) plus one `presence` rule so that events flow. The API and the
//! uplink are not started (idle, they cost nothing). After a warm-up it measures, over a
//! window: the share of the wanted analysis frames (N × `detect_fps` × window) that were
//! analysed, the frames the models ran on, CPU cores (process CPU time over wall time), the
//! largest resident set size sampled, and the frame-to-event latency (capture of the causing
//! frame → change committed to the database) p95. Prints a table and the largest N with at
//! least 95 % delivered; asserts nothing (docs/performance.md, "Capacity").
//!
//! With `--detect-clip`, every camera is a main stream (`--clip`, recorded, never decoded) and
//! a sub-stream (`detect_url`, decoded for detection), as a camera with a sub-stream runs.
//!
//! Each N runs in a child process (this binary with `--one`), so memory and threads of one
//! run do not carry into the next.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde::{Deserialize, Serialize};

use crate::app::start_cameras;
use crate::config::Config;
use crate::ingest::profile::HardwareProfile;
use crate::store::Store;

/// What to measure.
#[derive(Debug, Clone)]
pub struct Options {
    /// The clip every camera loops (but the busy ones).
    pub clip: PathBuf,
    /// Camera counts, each measured in its own process.
    pub cameras: Vec<usize>,
    /// The first `busy` cameras loop this clip instead (a mix: busy + idle).
    pub busy_clip: Option<PathBuf>,
    pub busy: usize,
    /// Sub-streams: detection decodes these (`detect_url`), `clip` / `busy_clip` are the main
    /// streams, only recorded.
    pub detect_clip: Option<PathBuf>,
    pub busy_detect_clip: Option<PathBuf>,
    pub model: PathBuf,
    pub detect_fps: f64,
    /// Warm-up, then the measured window (seconds).
    pub warmup_secs: f64,
    pub secs: f64,
    pub record: bool,
    /// Overrides `motion_gate.enabled` of every camera (None: the default).
    pub motion_gate: Option<bool>,
    /// Overrides `[inference] intra_op_spinning` (None: the default, off).
    pub spinning: Option<bool>,
    /// Overrides `[inference] workers` and `intra_op_threads` (None: the defaults for the
    /// cores, `InferenceConfig::layout`).
    pub workers: Option<usize>,
    pub intra_op_threads: Option<usize>,
    /// `hardware_profile`: a built-in name or a profile TOML.
    pub profile: String,
    /// `[inference] ort_library` (None: the default).
    pub ort_library: Option<PathBuf>,
    /// Measure `cameras[0]` here and print one `CAPACITY {json}` line (the child's part).
    pub one: bool,
}

/// One camera count's result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    pub cameras: usize,
    pub busy: usize,
    pub window_secs: f64,
    /// Analysis frames wanted (N × detect_fps × window) and analysed in the window.
    pub wanted: u64,
    pub analysed: u64,
    /// Analysed frames the models ran on (the others coasted: the motion gate).
    pub detected: u64,
    pub cpu_cores: f64,
    pub rss_mib: f64,
    pub events: usize,
    pub event_p95_ms: Option<f32>,
    pub frame_p95_ms: Option<f32>,
    /// The inference layout it ran (`[inference]`, or the default for the cores and `cameras`).
    pub workers: usize,
    pub intra_op_threads: usize,
}

impl Row {
    pub fn delivered(&self) -> f64 {
        if self.wanted == 0 {
            0.0
        } else {
            self.analysed as f64 / self.wanted as f64
        }
    }
}

/// The share of wanted frames a camera count must deliver to count as served.
pub const SERVED: f64 = 0.95;

pub fn run(o: &Options) -> anyhow::Result<()> {
    if o.cameras.is_empty() || o.cameras.contains(&0) {
        bail!("--cameras: give one or more positive counts, e.g. 2,4,8");
    }
    if !(o.secs > 0.0 && o.warmup_secs >= 0.0 && o.detect_fps > 0.0) {
        bail!("--secs and --detect-fps must be positive, --warmup-secs not negative");
    }
    if o.busy > 0 && o.busy_clip.is_none() {
        bail!("--busy needs --busy-clip");
    }
    if o.busy_detect_clip.is_some() && (o.detect_clip.is_none() || o.busy_clip.is_none()) {
        bail!("--busy-detect-clip needs --detect-clip and --busy-clip");
    }
    if o.detect_clip.is_some() && o.busy > 0 && o.busy_detect_clip.is_none() {
        bail!("--detect-clip with --busy: give the busy cameras' sub-stream as --busy-detect-clip");
    }
    if o.one {
        let row = measure(o, o.cameras[0])?;
        println!("CAPACITY {}", serde_json::to_string(&row)?);
        return Ok(());
    }
    println!(
        "gridwatch bench capacity: {} camera(s) per run, clip {}{}{}, detect_fps {}, recording {}, \
         motion gate {}, intra-op spinning {}, inference workers × threads {} × {}, {} s warm-up + \
         {} s window",
        o.cameras.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(","),
        o.clip.display(),
        match &o.detect_clip {
            Some(d) => format!(" (detecting on the sub-stream {})", d.display()),
            None => String::new(),
        },
        match (&o.busy_clip, &o.busy_detect_clip) {
            (Some(b), Some(d)) => {
                format!(" (the first {} loop {}, sub-stream {})", o.busy, b.display(), d.display())
            }
            (Some(b), None) => format!(" (the first {} loop {})", o.busy, b.display()),
            (None, _) => String::new(),
        },
        o.detect_fps,
        if o.record { "on" } else { "off" },
        on_off(o.motion_gate),
        on_off(o.spinning),
        o.workers.map_or("auto".into(), |w| w.to_string()),
        o.intra_op_threads.map_or("auto".into(), |t| t.to_string()),
        o.warmup_secs,
        o.secs
    );
    println!("machine: {} CPU(s), {}", crate::config::available_cores(), super::cpu_model());
    let mut rows = Vec::new();
    for &n in &o.cameras {
        let row = run_child(o, n).with_context(|| format!("{n} camera(s)"))?;
        print_row(&row, rows.is_empty());
        rows.push(row);
    }
    let served = rows.iter().filter(|r| r.delivered() >= SERVED).map(|r| r.cameras).max();
    match served {
        Some(n) => println!("largest camera count with ≥ 95 % delivered: {n}"),
        None => println!("largest camera count with ≥ 95 % delivered: none of those measured"),
    }
    Ok(())
}

fn print_row(r: &Row, header: bool) {
    if header {
        println!(
            "{:>7} {:>4} {:>5} {:>9} {:>8} {:>9} {:>8} {:>7} {:>8} {:>7} {:>13}",
            "cameras",
            "busy",
            "W×T",
            "delivered",
            "frames",
            "detected",
            "fps/cam",
            "CPU",
            "RSS MiB",
            "events",
            "event p95 ms"
        );
    }
    let ms = |v: Option<f32>| v.map_or("-".to_string(), |v| format!("{v:.0}"));
    println!(
        "{:>7} {:>4} {:>5} {:>8.1}% {:>8} {:>8.1}% {:>8.2} {:>7.2} {:>8.0} {:>7} {:>13}",
        r.cameras,
        r.busy,
        format!("{}×{}", r.workers, r.intra_op_threads),
        100.0 * r.delivered(),
        r.analysed,
        100.0 * r.detected as f64 / r.analysed.max(1) as f64,
        r.analysed as f64 / r.window_secs / r.cameras as f64,
        r.cpu_cores,
        r.rss_mib,
        r.events,
        ms(r.event_p95_ms)
    );
}

/// Runs this binary's `bench capacity --one` for `n` cameras and reads its result line.
fn run_child(o: &Options, n: usize) -> anyhow::Result<Row> {
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.args(["bench", "capacity", "--one", "--cameras", &n.to_string()]);
    cmd.arg("--clip").arg(&o.clip).arg("--model").arg(&o.model);
    cmd.args(["--detect-fps", &o.detect_fps.to_string()]);
    cmd.args(["--secs", &o.secs.to_string(), "--warmup-secs", &o.warmup_secs.to_string()]);
    cmd.args(["--record", if o.record { "on" } else { "off" }]);
    if let Some(b) = &o.busy_clip {
        cmd.arg("--busy-clip").arg(b).args(["--busy", &o.busy.min(n).to_string()]);
    }
    if let Some(d) = &o.detect_clip {
        cmd.arg("--detect-clip").arg(d);
    }
    if let Some(d) = &o.busy_detect_clip {
        cmd.arg("--busy-detect-clip").arg(d);
    }
    if let Some(g) = o.motion_gate {
        cmd.args(["--motion-gate", if g { "on" } else { "off" }]);
    }
    if let Some(s) = o.spinning {
        cmd.args(["--spinning", if s { "on" } else { "off" }]);
    }
    if let Some(w) = o.workers {
        cmd.args(["--workers", &w.to_string()]);
    }
    if let Some(t) = o.intra_op_threads {
        cmd.args(["--intra-op-threads", &t.to_string()]);
    }
    cmd.args(["--profile", &o.profile]);
    if let Some(l) = &o.ort_library {
        cmd.arg("--ort-library").arg(l);
    }
    if std::env::var_os("GRIDWATCH_LOG").is_none() {
        cmd.env("GRIDWATCH_LOG", "warn"); // the table, not every event's log line
    }
    let out = cmd.stderr(std::process::Stdio::inherit()).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find_map(|l| l.strip_prefix("CAPACITY "));
    match (out.status.success(), line) {
        (true, Some(json)) => Ok(serde_json::from_str(json)?),
        _ => bail!("the measuring process failed ({}): {text}", out.status),
    }
}

/// `s` as a TOML string (quoted and escaped).
fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// The box config of a run: `n` cameras looping the clips, with the shipped defaults.
fn config_text(o: &Options, n: usize, data: &Path) -> anyhow::Result<String> {
    let abs = |p: &Path| std::fs::canonicalize(p).with_context(|| format!("{}", p.display()));
    let model = abs(&crate::cli::manifest_path(&o.model))?;
    let clip = abs(&o.clip)?;
    let busy = o.busy_clip.as_deref().map(abs).transpose()?;
    let sub = o.detect_clip.as_deref().map(abs).transpose()?;
    let busy_sub = o.busy_detect_clip.as_deref().map(abs).transpose()?;
    // A built-in profile's name, or a profile file (made absolute: the config's base is /).
    let profile = match Path::new(&o.profile) {
        p if p.exists() => abs(p)?.display().to_string(),
        _ => o.profile.clone(),
    };
    let mut t = format!(
        "box_id = \"bench-capacity\"\ndata_dir = \"{}\"\nhardware_profile = {}\n\
         [models]\nm = \"{}\"\n",
        data.display(),
        toml_str(&profile),
        model.display()
    );
    t += "[inference]\n";
    if let Some(l) = &o.ort_library {
        t += &format!("ort_library = {}\n", toml_str(&abs(l)?.display().to_string()));
    }
    if let Some(s) = o.spinning {
        t += &format!("intra_op_spinning = {s}\n");
    }
    if let Some(w) = o.workers {
        t += &format!("workers = {w}\n");
    }
    if let Some(n) = o.intra_op_threads {
        t += &format!("intra_op_threads = {n}\n");
    }
    for i in 0..n {
        let (url, detect) = match &busy {
            Some(b) if i < o.busy => (b, &busy_sub),
            _ => (&clip, &sub),
        };
        t += &format!(
            "[[cameras]]\nid = \"cam{i:02}\"\nurl = \"{}\"\nloop = true\ndetect_fps = {}\n\
             models = [\"m\"]\n",
            url.display(),
            o.detect_fps,
        );
        if let Some(d) = detect {
            t += &format!("detect_url = \"{}\"\n", d.display());
        }
        t += &format!("[cameras.record]\nenabled = {}\n", o.record);
        if let Some(g) = o.motion_gate {
            t += &format!("[cameras.motion_gate]\nenabled = {g}\n");
        }
        t += "[[cameras.rules]]\nkind = \"presence\"\nclasses = [\"person\", \"car\"]\n\
              min_secs = 0.0\nclear_secs = 1.0\n";
    }
    Ok(t)
}

/// An override as the header prints it.
fn on_off(v: Option<bool>) -> &'static str {
    match v {
        None => "default",
        Some(true) => "on",
        Some(false) => "off",
    }
}

/// Current resident set size (VmRSS), MiB.
fn rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Starts the appliance's stages with `n` cameras, waits the warm-up, measures the window.
fn measure(o: &Options, n: usize) -> anyhow::Result<Row> {
    let dir = std::env::temp_dir().join(format!("gridwatch-capacity-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let _cleanup = super::RemoveDir(dir.clone());
    let text = config_text(o, n, &dir.join("data"))?;
    let cfg = Config::parse(&text, Path::new("/")).map_err(|e| anyhow!(e))?;
    // As `app::run` starts them, without the API and the uplink.
    let profile = HardwareProfile::for_config(&cfg).map_err(|e| anyhow!(e))?;
    crate::infer::runtime::init(cfg.inference.ort_library.as_deref())?;
    crate::gst::init()?;
    let manifests = crate::analytics::load_manifests(&cfg)?;
    let clock: Arc<dyn crate::clock::Clock> = Arc::new(crate::clock::SystemClock);
    let store = Store::open(&cfg.data_dir)?;
    store.set_clock(clock.clone());
    store.set_uplink_context(crate::app::uplink_context(&cfg));
    let registry = crate::app::camera_registry(&cfg, clock.clone());
    let (recorder, analytics) =
        crate::app::start_analysis(&cfg, &profile, &manifests, &store, &registry, clock.clone())?;
    let shutdown = Arc::new(AtomicBool::new(false));
    let cameras = start_cameras(
        &cfg,
        &profile,
        &registry,
        &analytics.queue,
        &shutdown,
        Some((&recorder, &store)),
    )?;
    std::thread::sleep(Duration::from_secs_f64(o.warmup_secs));
    let stats = analytics.stats.clone();
    let take = |v: &std::sync::Mutex<Vec<f32>>| {
        std::mem::take(&mut *v.lock().unwrap_or_else(|e| e.into_inner()))
    };
    take(&stats.event_latency_ms);
    take(&stats.frame_latency_ms);
    let (a0, d0) = (stats.analysed.load(Ordering::Relaxed), stats.detected.load(Ordering::Relaxed));
    let cpu0 = super::process_cpu_secs()?;
    let t0 = Instant::now();
    let mut rss = rss_mib().unwrap_or(0.0);
    while t0.elapsed().as_secs_f64() < o.secs {
        std::thread::sleep(Duration::from_millis(500));
        rss = rss.max(rss_mib().unwrap_or(0.0));
    }
    let window = t0.elapsed().as_secs_f64();
    let cpu = super::process_cpu_secs()? - cpu0;
    let analysed = stats.analysed.load(Ordering::Relaxed) - a0;
    let detected = stats.detected.load(Ordering::Relaxed) - d0;
    let mut ev = take(&stats.event_latency_ms);
    let mut fr = take(&stats.frame_latency_ms);
    shutdown.store(true, Ordering::Relaxed);
    for h in cameras {
        let _ = h.join();
    }
    analytics.shutdown();
    recorder.shutdown();
    store.close()?;
    let p95 = |v: &mut Vec<f32>| (!v.is_empty()).then(|| super::percentile(v, 0.95));
    let layout = cfg.inference_layout();
    Ok(Row {
        cameras: n,
        busy: if o.busy_clip.is_some() { o.busy.min(n) } else { 0 },
        window_secs: window,
        wanted: (n as f64 * o.detect_fps * window).round() as u64,
        analysed,
        detected,
        cpu_cores: cpu / window,
        rss_mib: rss,
        events: ev.len(),
        event_p95_ms: p95(&mut ev),
        frame_p95_ms: p95(&mut fr),
        workers: layout.workers,
        intra_op_threads: layout.intra_op_threads,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(profile: &str, ort_library: Option<&Path>) -> Options {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        Options {
            clip: root.join("Cargo.toml"), // only made absolute here, never opened
            cameras: vec![3],
            busy_clip: None,
            busy: 0,
            detect_clip: None,
            busy_detect_clip: None,
            model: root.join("models/nanodet-g-coco-416-int8"),
            detect_fps: 5.0,
            warmup_secs: 1.0,
            secs: 1.0,
            record: true,
            motion_gate: None,
            spinning: None,
            workers: None,
            intra_op_threads: None,
            profile: profile.into(),
            ort_library: ort_library.map(Path::to_path_buf),
            one: false,
        }
    }

    #[test]
    fn the_run_config_names_the_profile_and_the_onnx_runtime_library() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let lib = root.join("Cargo.lock"); // any existing file: the path is only written
        let text = config_text(&options("nvidia-dgpu", Some(&lib)), 3, Path::new("/tmp/d"))
            .expect("config");
        let cfg = Config::parse(&text, Path::new("/")).expect("parses");
        let p = HardwareProfile::for_config(&cfg).expect("built-in profile");
        assert_eq!(p.name, "nvidia-dgpu");
        assert_eq!(p.inference.execution_providers, ["tensorrt", "cuda", "cpu"]);
        assert_eq!(cfg.inference.ort_library.as_deref(), Some(lib.as_path()));
        assert_eq!(cfg.cameras.len(), 3);
        // Unset, the layout is the default for the cores (no more workers than cameras).
        assert_eq!((cfg.inference.workers, cfg.inference.intra_op_threads), (None, None));

        // A profile file given relative to the working directory is made absolute.
        // (Tests run in the package root.)
        let rel = "hardware-profiles/cpu.toml";
        let text = config_text(&options(rel, None), 1, Path::new("/tmp/d")).expect("config");
        let cfg = Config::parse(&text, Path::new("/")).expect("parses");
        assert_eq!(HardwareProfile::for_config(&cfg).expect("profile file").name, "cpu");
    }

    #[test]
    fn a_missing_library_or_an_unknown_profile_is_named() {
        let e =
            config_text(&options("cpu", Some(Path::new("/nope/libort.so"))), 1, Path::new("/d"))
                .unwrap_err();
        assert!(format!("{e:#}").contains("/nope/libort.so"), "{e:#}");
        let text = config_text(&options("no-such-gpu", None), 1, Path::new("/d")).expect("text");
        let cfg = Config::parse(&text, Path::new("/")).expect("parses");
        let e = HardwareProfile::for_config(&cfg).unwrap_err();
        assert!(e.contains("no-such-gpu"), "{e}");
    }
}
