//! Fire and smoke rules on real footage (../shared, test-only): the fixed-camera fire clips and
//! the hard negatives are decoded (`gridwatch::cli::open_video`), analysed at 5 frames/s of
//! video time through the shipped frame path (`CameraAnalytics`) with the D-Fire YOLO11n model
//! (`tests/models/fire-smoke-yolo11n-640-int8.toml`) and the default `fire` and `smoke`
//! rules, frames stamped with their video time. Asserts an alarm (fire or smoke) within 5 s of video time on each of the
//! three fixed-camera clips (the dollhouse, the fisheye CCTV and the distant plume, where the
//! model only finds smoke) and none on the negatives. Prints a table for
//! docs/performance.md. Skips with a message
//! when ../shared/models or ../shared/media is absent.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use gridwatch::analytics::{analyse_video, CameraAnalytics, Detectors};
use gridwatch::config::{CameraConfig, Config};
use gridwatch::infer::detector::DetectorOptions;
use gridwatch::types::Change;
use time::OffsetDateTime;

const FPS: f64 = 5.0;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

struct Outcome {
    clip: String,
    duration: f64,
    analysed: usize,
    /// (kind, video time the event starts, video time it was raised).
    alarms: Vec<(String, f64, f64)>,
    /// Frames with any fire/smoke detection ≥ the rules' min_score.
    frames_with_hits: usize,
    infer_ms: f64,
}

impl Outcome {
    fn first(&self) -> Option<&(String, f64, f64)> {
        self.alarms.iter().min_by(|a, b| a.2.total_cmp(&b.2))
    }
}

/// A camera running the D-Fire model with the default `fire` and `smoke` rules.
fn camera_config() -> Config {
    let text = format!(
        "box_id = 'b'\ndata_dir = '/tmp'\n[models]\nfire = '{}'\n[[cameras]]\nid = 'cam'\n\
         url = 'x.mp4'\nmodels = ['fire']\n[[cameras.rules]]\nkind = 'fire'\n\
         [[cameras.rules]]\nkind = 'smoke'\n",
        repo().join("tests/models/fire-smoke-yolo11n-640-int8.toml").display()
    );
    Config::parse(&text, Path::new("/")).unwrap_or_else(|e| panic!("config: {e}"))
}

fn run_clip(cam: &CameraConfig, detectors: &mut Detectors, video: &Path) -> Outcome {
    let camera = CameraAnalytics::new(cam);
    let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("t0");
    let (mut last_t, mut analysed, mut hits, mut infer) = (0.0f64, 0usize, 0usize, 0.0f64);
    let mut alarms = Vec::new();
    analyse_video(video, 640, 1.0 / FPS, t0, &camera, Some(detectors), |t, a| {
        last_t = t;
        analysed += 1;
        let detections = &a.tracks.detections;
        infer += detections.infer_ms as f64;
        let fire_or_smoke =
            |o: &gridwatch::types::Detection| o.class == "fire" || o.class == "smoke";
        if detections.objects.iter().any(|o| fire_or_smoke(o) && o.score >= 0.35) {
            hits += 1;
        }
        for c in a.changes.into_iter().filter(|c| c.change == Change::Started) {
            alarms.push((c.kind.clone(), (c.at - t0).as_seconds_f64(), t));
        }
        ControlFlow::Continue(())
    })
    .unwrap_or_else(|e| panic!("{e:#}"));
    Outcome {
        clip: video.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        duration: last_t,
        analysed,
        alarms,
        frames_with_hits: hits,
        infer_ms: if analysed > 0 { infer / analysed as f64 } else { 0.0 },
    }
}

#[test]
fn fire_and_smoke_on_shared_clips() {
    let models = repo().join("../shared/models/fire-smoke-yolo11n-640-int8");
    let media = repo().join("../shared/media");
    if !models.is_dir() || !media.join("fire").is_dir() || !media.join("negatives").is_dir() {
        eprintln!(
            "skipping: {} or {} not found (test-only model and footage)",
            models.display(),
            media.display()
        );
        return;
    }
    let cfg = camera_config();
    let mut detectors = Detectors::for_config(&cfg, &DetectorOptions::default())
        .unwrap_or_else(|e| panic!("{e:#}"));
    let fire = |n: &str| media.join("fire").join(n);
    let mut negatives: Vec<PathBuf> = std::fs::read_dir(media.join("negatives"))
        .expect("negatives dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "mp4"))
        .collect();
    negatives.sort();
    // (clip, must alarm within 5 s)
    let mut clips = vec![
        (fire("fire-dollhouse-outdoor-flames-smoke-240p.mp4"), true),
        (fire("fire-cctv-storage-units-fisheye-timelapse-360p.mp4"), true),
        (fire("smoke-distant-plume-noflame-360p.mp4"), true),
    ];
    let n_fire = clips.len();
    clips.extend(negatives.iter().map(|p| (p.clone(), false)));

    println!("| clip | video s | analysed frames | frames with fire/smoke ≥ 0.35 | first alarm (raised at, event start) | alarms | infer ms/frame |");
    println!("|---|---|---|---|---|---|---|");
    let mut failures = Vec::new();
    for (i, (clip, must)) in clips.iter().enumerate() {
        let o = run_clip(&cfg.cameras[0], &mut detectors, clip);
        let first = o
            .first()
            .map(|(k, at, raised)| format!("`{k}` raised at {raised:.1} s (start {at:.1} s)"))
            .unwrap_or_else(|| "none".into());
        let kinds: Vec<String> = o.alarms.iter().map(|(k, at, _)| format!("{k}@{at:.1}")).collect();
        println!(
            "| `{}` | {:.1} | {} | {} | {} | {} | {:.0} |",
            o.clip,
            o.duration,
            o.analysed,
            o.frames_with_hits,
            first,
            if kinds.is_empty() { "—".into() } else { kinds.join(", ") },
            o.infer_ms
        );
        assert!(
            o.analysed as f64 >= o.duration * FPS * 0.8,
            "{}: only {} frames analysed",
            o.clip,
            o.analysed
        );
        if *must && !o.first().is_some_and(|a| a.2 <= 5.0) {
            failures.push(format!("{}: no alarm within 5 s of video ({first})", o.clip));
        }
        if i >= n_fire && !o.alarms.is_empty() {
            failures.push(format!("{}: false alarm(s) on a negative: {kinds:?}", o.clip));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
