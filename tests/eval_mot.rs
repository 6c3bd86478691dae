//! `gridwatch eval mot` end to end: real video, NanoDet-g, tracker, metrics against the
//! PETS09-S2L1 ground truth in ../shared (skipped with a message when absent).

mod common;
use common::*;
use std::process::Command;

fn gt_dir() -> std::path::PathBuf {
    repo().join("../shared/eval/pets09-s2l1")
}

#[test]
fn pets09_frames_1_to_100_track_well() {
    let gt = gt_dir().join("gt-frames-0001-0400.txt");
    if !gt.is_file() {
        eprintln!(
            "skipping: {} not found (evaluation ground truth lives in ../shared)",
            gt.display()
        );
        return;
    }
    if !std::path::Path::new(PETS_AVI).is_file() {
        eprintln!("skipping: {PETS_AVI} not found (Debian package opencv-doc)");
        return;
    }
    let out = Command::new(bin())
        .current_dir(repo())
        .args(["eval", "mot", "--video", PETS_AVI, "--frames", "1-100", "--json", "--gt"])
        .arg(&gt)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "eval mot failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let m = &r["metrics"];
    eprintln!("frames 1-100: {m}");
    assert_eq!(m["frames"], 100);
    assert_eq!(r["gt_size"], serde_json::json!([768, 576]), "GT size read from the video");
    let (mota, idf1) = (m["mota"].as_f64().unwrap(), m["idf1"].as_f64().unwrap());
    assert!(mota > 0.6, "MOTA {mota} too low: {m}");
    assert!(idf1 > 0.5, "IDF1 {idf1} too low: {m}");
    assert!(m["gt_boxes"].as_u64().unwrap() > 400, "{m}");
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
