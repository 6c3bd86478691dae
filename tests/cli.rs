//! `gridwatch check` / `run` on good and bad configs: bad ones exit non-zero naming the field.

mod common;
use common::*;
use std::process::Command;

fn write_cfg(dir: &std::path::Path, body: &str) -> std::path::PathBuf {
    let p = dir.join("gridwatch.toml");
    std::fs::write(&p, body).unwrap();
    p
}

fn base(extra_cam: &str, model: &str) -> String {
    format!(
        r#"box_id = "t"
data_dir = "data"
[models]
coco = "{model}"
[[cameras]]
id = "front-gate"
url = "{mp4}"
models = ["coco"]
{extra_cam}
"#,
        mp4 = pets_mp4().display()
    )
}

fn model() -> String {
    repo().join("models/nanodet-g-coco-416/model.toml").display().to_string()
}

fn run(args: &[&str], cfg: &std::path::Path) -> (i32, String) {
    let out = Command::new(bin()).args(args).arg("--config").arg(cfg).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn bad_configs_fail_check_and_run_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (base("detect_fsp = 3", &model()), "detect_fsp"),
        (base("", &model()).replace(&pets_mp4().display().to_string(), "http://10.0.0.9/stream"), "cameras[0].url"),
        (base("", "/nonexistent/model.toml"), "models.coco"),
    ];
    for (cfg, needle) in cases {
        let p = write_cfg(dir.path(), &cfg);
        for cmd in ["check", "run"] {
            let (code, text) = run(&[cmd], &p);
            assert_ne!(code, 0, "{cmd} accepted a bad config:\n{cfg}\n{text}");
            assert!(text.contains(needle), "{cmd}: message does not name `{needle}`:\n{text}");
        }
    }
    // Errors inside a camera also name the camera.
    let p = write_cfg(dir.path(), &base("detect_fsp = 3", &model()));
    assert!(run(&["check"], &p).1.contains("front-gate"));
}

#[test]
fn check_passes_on_the_demo_config() {
    let (code, text) = run(&["check"], &repo().join("config/demo.toml"));
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("gstreamer elements") && text.contains("sha256 ok"), "{text}");
}

#[test]
fn check_reports_unreachable_camera_and_corrupt_model() {
    let dir = tempfile::tempdir().unwrap();
    // A copy of the model manifest pointing at a corrupted model file.
    let mdir = dir.path().join("m");
    std::fs::create_dir(&mdir).unwrap();
    let src = repo().join("models/nanodet-g-coco-416");
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), mdir.join(e.file_name())).unwrap();
    }
    let onnx = std::fs::read_dir(&mdir).unwrap().map(|e| e.unwrap().path()).find(|p| p.extension().is_some_and(|x| x == "onnx")).unwrap();
    let mut bytes = std::fs::read(&onnx).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    std::fs::write(&onnx, bytes).unwrap();
    let port = free_port(); // nothing listens there
    let cfg = base("", &mdir.join("model.toml").display().to_string())
        .replace(&pets_mp4().display().to_string(), &format!("rtsp://user:secret@127.0.0.1:{port}/x"));
    let p = write_cfg(dir.path(), &cfg);
    let (code, text) = run(&["check"], &p);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("[FAIL] model coco") && text.contains("sha256"), "{text}");
    assert!(text.contains("[FAIL] camera front-gate"), "{text}");
    assert!(!text.contains("secret"), "password leaked: {text}");
    // `run` refuses the corrupt model too.
    let (code, text) = run(&["run"], &p);
    assert_ne!(code, 0);
    assert!(text.contains("sha256"), "{text}");
}

#[test]
fn detect_prints_people_on_a_pets_video_and_rejects_bad_input() {
    let model = repo().join("models/nanodet-g-coco-320");
    let out = Command::new(bin())
        .args(["detect", "--model"])
        .arg(&model)
        .args(["--video", PETS_AVI, "--frames", "3", "--json"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    for l in &lines {
        let people = l["objects"].as_array().unwrap().iter().filter(|o| o["class"] == "person").count();
        assert!(people >= 3, "few people in {l}");
    }
    // A corrupt "image" and a missing video are errors that say which file.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.jpg");
    std::fs::write(&bad, b"not a jpeg").unwrap();
    for args in [vec!["--image", bad.to_str().unwrap()], vec!["--video", "/nonexistent.mp4"]] {
        let out = Command::new(bin()).args(["detect", "--model"]).arg(&model).args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(err.contains(args[1]), "{err}");
    }
}
