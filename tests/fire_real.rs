//! Fire and smoke rules on real footage (../shared, test-only): the fixed-camera fire clips and
//! the hard negatives are decoded (`gridwatch::cli::open_video`), analysed at 5 frames/s of
//! video time with the D-Fire YOLO11n model (`tests/models/fire-smoke-yolo11n-640-int8.toml`),
//! and fed to a `RuleEngine` with the default `fire` and `smoke` rules, frames stamped with
//! their video time. Asserts an alarm (fire or smoke) within 5 s of video time on each of the
//! three fixed-camera clips (the dollhouse, the fisheye CCTV and the distant plume, where the
//! model only finds smoke) and none on the negatives. Prints a table for
//! docs/performance.md. Skips with a message
//! when ../shared/models or ../shared/media is absent.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gridwatch::ingest::StreamEvent;
use gridwatch::rules::RuleEngine;
use gridwatch::types::{Change, Detections, Tracks};
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

const RULES: &str = "box_id='b'\ndata_dir='/tmp'\n[models]\n[[cameras]]\nid='cam'\nurl='x.mp4'\nmodels=[]\n\
                     enabled=false\n[[cameras.rules]]\nkind='fire'\n[[cameras.rules]]\nkind='smoke'\n";

fn run_clip(det: &mut gridwatch::infer::Detector, video: &Path) -> Outcome {
    let cfg = gridwatch::config::Config::parse(RULES, Path::new("/")).expect("rules config");
    let mut engine = RuleEngine::new(&cfg.cameras[0]);
    let mut stream = gridwatch::cli::open_video(video, 640)
        .unwrap_or_else(|e| panic!("{}: {e:#}", video.display()));
    let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("t0");
    let (mut next, mut last_t, mut analysed, mut hits, mut infer) =
        (0.0f64, 0.0f64, 0usize, 0usize, 0.0f64);
    let mut alarms = Vec::new();
    let mut decoded = 0u64;
    loop {
        let f = match stream.next(Duration::from_secs(20)) {
            StreamEvent::Frame(f) => f,
            StreamEvent::Eos => break,
            StreamEvent::Idle => panic!("{}: no frame for 20 s", video.display()),
            StreamEvent::Error(e) => panic!("{}: {e}", video.display()),
        };
        decoded += 1;
        // Video time: the PTS, or the frame count at 30 fps if the stream has none.
        let t = f.pts_ns.map(|p| p as f64 / 1e9).unwrap_or(decoded as f64 / 30.0);
        last_t = t;
        if t + 1e-6 < next {
            continue;
        }
        next += 1.0 / FPS;
        let started = Instant::now();
        let objects =
            det.detect(&f.rgb, f.width, f.height).unwrap_or_else(|e| panic!("detect: {e}"));
        infer += started.elapsed().as_secs_f64() * 1000.0;
        analysed += 1;
        if objects.iter().any(|o| (o.class == "fire" || o.class == "smoke") && o.score >= 0.35) {
            hits += 1;
        }
        let mut frame = f;
        frame.captured_at = t0 + time::Duration::seconds_f64(t);
        frame.camera_id = Arc::from("cam");
        let changes = engine.process(&Tracks {
            detections: Detections { frame, objects, infer_ms: 0.0 },
            tracks: vec![],
        });
        for c in changes {
            if c.change == Change::Started {
                alarms.push((c.kind.clone(), (c.at - t0).as_seconds_f64(), t));
            }
        }
    }
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
    let manifest = repo().join("tests/models/fire-smoke-yolo11n-640-int8.toml");
    let mut det = gridwatch::cli::open_detector(&manifest, 2).unwrap_or_else(|e| panic!("{e:#}"));
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
        let o = run_clip(&mut det, clip);
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
