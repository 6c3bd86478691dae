//! Line counting end to end on real footage: PETS09-S2L1 (Debian's `vtest.avi`, 768x576),
//! frames 1–400, every frame analysed (lossless decode, 10 fps capture times) through the
//! shipped frame path (`CameraAnalytics`): the shipped detector, NanoDet-g 416 int8 (PETS is
//! lit; score threshold lowered to the tracker's `low_score`, as `gridwatch run` does), the
//! real tracker (camera defaults) and a `line_crossing` rule with its default parameters. The
//! true crossings per direction come from the MOTChallenge ground truth of those frames
//! (`../shared/eval/pets09-s2l1`): every GT track whose bottom centre passes the line between
//! two of its consecutive boxes (rows with conf = 0 ignored). The pipeline must match within
//! ±1 per direction.
//!
//! The line is vertical at x = 0.5 over the whole height: the walkway crosses the middle of
//! the scene left–right, and 10 GT people cross it 14 times in frames 1–400. Skips with a
//! message when the ground truth is absent.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use gridwatch::analytics::{analyse_video, CameraAnalytics, Detectors};
use gridwatch::config::Config;
use gridwatch::geometry::{polyline_crossings, CrossDir};
use gridwatch::infer::detector::DetectorOptions;

const PETS_AVI: &str = "/usr/share/doc/opencv-doc/examples/data/vtest.avi";
const FRAMES: u64 = 400;
const LINE: [[f64; 2]; 2] = [[0.5, 0.0], [0.5, 1.0]];
const W: f64 = 768.0;
const H: f64 = 576.0;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// True crossings per direction of the GT tracks' bottom centres (frames 1–`FRAMES`).
fn gt_crossings(gt: &Path) -> BTreeMap<CrossDir, u32> {
    let text = std::fs::read_to_string(gt).unwrap_or_else(|e| panic!("{}: {e}", gt.display()));
    let mut tracks: BTreeMap<u64, Vec<(u64, [f64; 2])>> = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let v: Vec<f64> = line
            .split(',')
            .map(|s| s.trim().parse::<f64>())
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("{}:{}: {e}", gt.display(), n + 1));
        assert!(v.len() >= 7, "{}:{}: expected ≥ 7 fields", gt.display(), n + 1);
        let (frame, id, left, top, w, h, conf) =
            (v[0] as u64, v[1] as u64, v[2], v[3], v[4], v[5], v[6]);
        if conf == 0.0 || frame == 0 || frame > FRAMES {
            continue;
        }
        tracks.entry(id).or_default().push((frame, [(left + w / 2.0) / W, (top + h) / H]));
    }
    let mut out = BTreeMap::from([(CrossDir::AToB, 0), (CrossDir::BToA, 0)]);
    for pts in tracks.values_mut() {
        pts.sort_by_key(|p| p.0);
        for w in pts.windows(2) {
            for (_, dir) in polyline_crossings(w[0].1, w[1].1, &LINE) {
                *out.entry(dir).or_default() += 1;
            }
        }
    }
    out
}

#[test]
fn pets_line_count_matches_ground_truth() {
    let gt = repo().join("../shared/eval/pets09-s2l1/gt-frames-0001-0400.txt");
    if !gt.is_file() {
        eprintln!(
            "skipping pets_line_count: {} not found (../shared eval data absent)",
            gt.display()
        );
        return;
    }
    assert!(
        Path::new(PETS_AVI).is_file(),
        "{PETS_AVI} not found (scripts/setup.sh installs opencv-doc)"
    );
    let truth = gt_crossings(&gt);

    let cfg_text = format!(
        r#"box_id = "pets"
data_dir = "/tmp/unused"
[models]
coco = "{repo}/models/nanodet-g-coco-416-int8/model.toml"
[[cameras]]
id = "pets"
url = "{PETS_AVI}"
models = ["coco"]
[[cameras.lines]]
name = "walkway"
points = [[{}, {}], [{}, {}]]
[[cameras.rules]]
kind = "line_crossing"
line = "walkway"
classes = ["person"]
"#,
        LINE[0][0],
        LINE[0][1],
        LINE[1][0],
        LINE[1][1],
        repo = repo().display(),
    );
    let cfg = Config::parse(&cfg_text, Path::new("/")).unwrap_or_else(|e| panic!("{e}"));
    // The shipped frame path: the model's score threshold lowered to the tracker's
    // `low_score` as `gridwatch run` does, the tracker, the rules.
    let mut detectors = Detectors::for_config(&cfg, &DetectorOptions::default())
        .unwrap_or_else(|e| panic!("detector: {e:#}"));
    let camera = CameraAnalytics::new(&cfg.cameras[0]);
    let t0 = time::OffsetDateTime::from_unix_timestamp(1_800_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let mut got = BTreeMap::from([(CrossDir::AToB, 0u32), (CrossDir::BToA, 0u32)]);
    let mut n = 0u64;
    let started = Instant::now();
    // Every frame (GT frame n + 1 is decode index n), stamped with its 10 fps video time.
    analyse_video(Path::new(PETS_AVI), 768, 0.0, t0, &camera, Some(&mut detectors), |_, a| {
        for c in &a.counts {
            assert_eq!(c.line, "walkway");
            *got.entry(c.direction).or_default() += c.count;
        }
        n += 1;
        if n < FRAMES {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(())
        }
    })
    .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(n, FRAMES, "the clip ended early");
    let secs = started.elapsed().as_secs_f64();
    println!("PETS09-S2L1 frames 1-{FRAMES}, vertical line x = 0.5 drawn top to bottom:");
    for dir in [CrossDir::AToB, CrossDir::BToA] {
        println!("  {:6}  ground truth {:2}   pipeline {:2}", dir.as_str(), truth[&dir], got[&dir]);
    }
    println!("  ({n} frames in {secs:.1} s, {:.1} fps)", n as f64 / secs);
    assert!(truth.values().sum::<u32>() >= 10, "ground truth has too few crossings: {truth:?}");
    for dir in [CrossDir::AToB, CrossDir::BToA] {
        let (t, g) = (truth[&dir] as i64, got[&dir] as i64);
        assert!((t - g).abs() <= 1, "{}: pipeline counted {g}, ground truth {t}", dir.as_str());
    }
}
