//! `gridwatch eval mot` end to end: real video, NanoDet-g, tracker, metrics against the
//! PETS09-S2L1 ground truth in ../shared (skipped with a message when absent).

mod common;
use common::*;
use std::process::Command;

fn gt_dir() -> std::path::PathBuf {
    repo().join("../shared/eval/pets09-s2l1")
}

/// The PETS09-S2L1 ground truth, or `None` (with a message) where it or the video is absent.
fn pets_gt() -> Option<std::path::PathBuf> {
    let gt = gt_dir().join("gt-frames-0001-0400.txt");
    if !gt.is_file() {
        eprintln!(
            "skipping: {} not found (evaluation ground truth lives in ../shared)",
            gt.display()
        );
        return None;
    }
    if !std::path::Path::new(PETS_AVI).is_file() {
        eprintln!("skipping: {PETS_AVI} not found (Debian package opencv-doc)");
        return None;
    }
    Some(gt)
}

/// `gridwatch eval mot --json` on PETS frames 1-100 with `model`.
fn eval_mot(gt: &std::path::Path, model: &str) -> serde_json::Value {
    let out = Command::new(bin())
        .current_dir(repo())
        .args(["eval", "mot", "--video", PETS_AVI, "--frames", "1-100", "--json", "-m", model])
        .arg("--gt")
        .arg(gt)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "eval mot failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[test]
fn pets09_frames_1_to_100_track_well() {
    let Some(gt) = pets_gt() else { return };
    let r = eval_mot(&gt, "models/nanodet-g-coco-416");
    let m = &r["metrics"];
    eprintln!("frames 1-100: {m}, AP50 {}", r["detection_ap50"]);
    assert_eq!(m["frames"], 100);
    assert_eq!(r["gt_size"], serde_json::json!([768, 576]), "GT size read from the video");
    let (mota, idf1) = (m["mota"].as_f64().unwrap(), m["idf1"].as_f64().unwrap());
    assert!(mota > 0.6, "MOTA {mota} too low: {m}");
    assert!(idf1 > 0.5, "IDF1 {idf1} too low: {m}");
    assert!(m["gt_boxes"].as_u64().unwrap() > 400, "{m}");
    let ap = r["detection_ap50"].as_f64().unwrap();
    assert!(ap > 0.7 && ap <= 1.0, "person AP50 {ap}");
}

/// The int8 detector's accuracy check on a small set of frames (the issue-16 target, AP50 within
/// 0.01 of fp32 on frames 1-400, is `make eval`; on 100 frames, a quarter of the boxes, the
/// allowance is 0.02). Loading it also checks its sha256 against the manifest.
#[test]
fn int8_detector_keeps_the_fp32_person_ap50() {
    let Some(gt) = pets_gt() else { return };
    let ap = |model: &str| eval_mot(&gt, model)["detection_ap50"].as_f64().unwrap();
    let (fp32, int8) = (ap("models/nanodet-g-coco-416"), ap("models/nanodet-g-coco-416-int8"));
    eprintln!("PETS frames 1-100, person AP50: fp32 {fp32:.4}, int8 {int8:.4}");
    assert!(fp32 > 0.7, "fp32 AP50 {fp32}");
    assert!(int8 >= fp32 - 0.02, "int8 AP50 {int8} vs fp32 {fp32}");
}

#[test]
fn bad_ground_truth_line_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let gt = dir.path().join("gt.txt");
    std::fs::write(&gt, "1,1,10,10,20,40,1,-1,-1,-1\n2,1,10,x,20,40,1,-1,-1,-1\n").unwrap();
    let out = Command::new(bin())
        .current_dir(repo())
        .args(["eval", "mot", "--video", "test-videos/pets09-s2l1.mp4", "--gt"])
        .arg(&gt)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("gt.txt:2") && err.contains("`x`"), "{err}");
}
