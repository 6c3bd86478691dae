//! Vehicle counting on the shared traffic clips (../shared/media/traffic, test-only), report
//! only: each clip runs through the shipped frame path (`analytics::analyse_video`, the
//! committed NanoDet-g 416 COCO model, score threshold lowered to the tracker's `low_score`
//! as `gridwatch run` does, the camera's default tracker) at 10 frames/s of video time, with
//! one horizontal line across the whole frame at mid-height and a `line_crossing` rule for
//! car/truck/bus/motorcycle. Prints the counts per direction (a_to_b = downwards, the line is
//! drawn left to right) and per class. Nothing is asserted beyond the pipeline running: the
//! clips' hand counts live elsewhere (the scenario evaluator); `MANIFEST.md`'s rough counts
//! are a sanity check only, and no threshold is tuned to a clip.
//!
//! `GRIDWATCH_TRAFFIC_TRACKER` may hold extra `[cameras.tracker]` keys (TOML lines) to
//! compare settings; `GRIDWATCH_TRAFFIC_CLIPS` a comma-separated subset of clip names.
//! Run: `cargo test --release --test traffic_count_real -- --ignored --nocapture`.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use gridwatch::analytics::{analyse_video, CameraAnalytics, Detectors};
use gridwatch::infer::detector::DetectorOptions;
use time::OffsetDateTime;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Counts per (direction, class) on one clip, frames analysed and seconds taken.
fn run(video: &Path, tracker_toml: &str) -> (BTreeMap<(String, String), u32>, u64, f64) {
    let text = format!(
        "box_id = 'b'\ndata_dir = '/tmp'\n[models]\ncoco = '{model}'\n[[cameras]]\nid = 'cam'\n\
         url = '{video}'\nmodels = ['coco']\n[[cameras.lines]]\nname = 'mid'\n\
         points = [[0.0, 0.5], [1.0, 0.5]]\n[[cameras.rules]]\nkind = 'line_crossing'\n\
         line = 'mid'\nclasses = ['car', 'truck', 'bus', 'motorcycle']\n\
         [cameras.tracker]\n{tracker_toml}\n",
        model = repo().join("models/nanodet-g-coco-416/model.toml").display(),
        video = video.display(),
    );
    let cfg = gridwatch::config::Config::parse(&text, Path::new("/")).expect("config");
    let mut detectors = Detectors::for_config(&cfg, &DetectorOptions::default())
        .unwrap_or_else(|e| panic!("{e:#}"));
    let camera = CameraAnalytics::new(&cfg.cameras[0]);
    let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("t0");
    let mut counts = BTreeMap::new();
    let mut n = 0u64;
    let started = Instant::now();
    analyse_video(video, 640, 0.1, t0, &camera, Some(&mut detectors), |_, a| {
        for c in &a.counts {
            *counts.entry((c.direction.as_str().to_string(), c.class.clone())).or_default() +=
                c.count;
        }
        n += 1;
        ControlFlow::Continue(())
    })
    .unwrap_or_else(|e| panic!("{e:#}"));
    (counts, n, started.elapsed().as_secs_f64())
}

#[test]
#[ignore = "report only (counts on real clips, see docs/performance.md); run with --ignored"]
fn vehicle_counts_on_shared_traffic_clips() {
    let media = repo().join("../shared/media/traffic");
    if !media.is_dir() {
        eprintln!("skipping: {} not found (test-only footage)", media.display());
        return;
    }
    let tracker = std::env::var("GRIDWATCH_TRAFFIC_TRACKER").unwrap_or_default();
    let only = std::env::var("GRIDWATCH_TRAFFIC_CLIPS").unwrap_or_default();
    let mut clips: Vec<PathBuf> = std::fs::read_dir(&media)
        .expect("read media dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "mp4"))
        .filter(|p| {
            only.is_empty()
                || only.split(',').any(|c| p.file_name().is_some_and(|f| f.to_string_lossy() == c))
        })
        .collect();
    clips.sort();
    println!("tracker overrides: {tracker:?}");
    for clip in clips {
        let (counts, n, secs) = run(&clip, &tracker);
        let per_dir =
            |d: &str| counts.iter().filter(|((k, _), _)| k == d).map(|(_, v)| v).sum::<u32>();
        println!(
            "{}: a_to_b (down) {:3}  b_to_a (up) {:3}  by class {:?}  ({n} frames, {secs:.0} s)",
            clip.file_name().unwrap_or_default().to_string_lossy(),
            per_dir("a_to_b"),
            per_dir("b_to_a"),
            counts,
        );
    }
}
