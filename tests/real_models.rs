//! Runs every detector on real frames: PETS (vtest.avi from Debian's opencv-doc, people walking)
//! and a house fire clip. The committed NanoDet-g models never skip; the shared test-only models
//! (../shared/models) skip with a message when absent.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use gridwatch::infer::{runtime, Detector, DetectorOptions, ModelManifest};
use gridwatch::types::Detection;

const PETS: &str = "/usr/share/doc/opencv-doc/examples/data/vtest.avi";
/// Index of the mid-sequence PETS frame checked in detail (frames are sampled every 4 s).
const MID_FRAME: usize = 5;

struct Frame {
    name: String,
    width: u32,
    height: u32,
    rgb: Vec<u8>,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Decodes `video` with gst-launch at `fps` frames per second into PNGs, then loads them as RGB.
fn extract(video: &Path, fps: &str) -> Vec<Frame> {
    assert!(video.exists(), "{} not found (scripts/setup.sh installs opencv-doc)", video.display());
    let dir = tempfile::tempdir().expect("temp dir");
    let pattern = dir.path().join("frame%03d.png");
    let status = Command::new("gst-launch-1.0")
        .arg("-q")
        .arg("filesrc")
        .arg(format!("location={}", video.display()))
        .args(["!", "decodebin", "!", "videoconvert", "!", "videorate", "!"])
        .arg(format!("video/x-raw,format=RGB,framerate={fps}"))
        .args(["!", "pngenc", "snapshot=false", "!", "multifilesink"])
        .arg(format!("location={}", pattern.display()))
        .status()
        .expect("running gst-launch-1.0 (install gstreamer1.0-tools)");
    assert!(status.success(), "gst-launch-1.0 failed on {}", video.display());
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .expect("read temp dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "png"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no frames extracted from {}", video.display());
    paths
        .iter()
        .map(|p| {
            let img = image::open(p).expect("decode png").to_rgb8();
            Frame {
                name: p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                width: img.width(),
                height: img.height(),
                rgb: img.into_raw(),
            }
        })
        .collect()
}

fn pets() -> &'static [Frame] {
    static F: OnceLock<Vec<Frame>> = OnceLock::new();
    F.get_or_init(|| extract(Path::new(PETS), "1/4"))
}

fn fire() -> &'static [Frame] {
    static F: OnceLock<Vec<Frame>> = OnceLock::new();
    F.get_or_init(|| {
        extract(
            &repo().join("../shared/media/fire/fire-house-blaze-phone-vertical-720p.mp4"),
            "1/2",
        )
    })
}

fn shared_present() -> bool {
    repo().join("../shared/models").is_dir()
}

fn load(manifest: &Path) -> Detector {
    runtime::init(None).expect("ONNX Runtime (run scripts/setup.sh)");
    let m = ModelManifest::load(manifest).unwrap_or_else(|e| panic!("{e}"));
    m.verify().unwrap_or_else(|e| panic!("{e}"));
    Detector::load(&m, &DetectorOptions::default()).unwrap_or_else(|e| panic!("{e}"))
}

fn load_shared(manifest: &str) -> Option<Detector> {
    if !shared_present() {
        eprintln!("skipping: ../shared/models not found (test-only models)");
        return None;
    }
    Some(load(&repo().join("tests/models").join(manifest)))
}

fn check_sane(model: &str, frame: &Frame, dets: &[Detection]) {
    for d in dets {
        let b = d.bbox;
        assert!(
            (0.0..=1.0).contains(&b.x1)
                && (0.0..=1.0).contains(&b.x2)
                && (0.0..=1.0).contains(&b.y1)
                && (0.0..=1.0).contains(&b.y2)
                && b.x1 < b.x2
                && b.y1 < b.y2,
            "{model} on {}: box out of range {d:?}",
            frame.name
        );
        assert!(
            d.score.is_finite() && d.score > 0.0 && d.score <= 1.0001,
            "{model}: bad score {d:?}"
        );
    }
}

/// Asserts ≥ 3 people, mostly upright boxes, on a mid-sequence PETS frame.
fn finds_people(mut det: Detector) {
    let frames = pets();
    let model = det.name().to_string();
    let thr = det.score_threshold();
    assert!(det.labels().len() == 80 && det.labels()[0] == "person", "{model}: COCO labels");
    // Every sampled frame: sane boxes; print the counts.
    let mut counts = Vec::new();
    for f in frames {
        let dets = det.detect(&f.rgb, f.width, f.height).unwrap_or_else(|e| panic!("{e}"));
        check_sane(&model, f, &dets);
        counts.push(dets.iter().filter(|d| d.class == "person").count());
    }
    // The frame at 20 s (PETS has 7–9 people there; at 40 s only 3).
    let mid = &frames[MID_FRAME.min(frames.len() - 1)];
    let dets = det.detect(&mid.rgb, mid.width, mid.height).unwrap_or_else(|e| panic!("{e}"));
    let t = det.last_timings();
    let people: Vec<&Detection> =
        dets.iter().filter(|d| d.class == "person" && d.score >= thr).collect();
    eprintln!(
        "{model}: {} people on {} ({} detections); persons per sampled frame {counts:?}; pre {:.1} ms, run {:.1} ms, post {:.1} ms",
        people.len(),
        mid.name,
        dets.len(),
        t.pre_ms,
        t.run_ms,
        t.post_ms
    );
    assert!(people.len() >= 3, "{model}: expected ≥ 3 people on PETS {}, got {dets:?}", mid.name);
    let (w, h) = (mid.width as f32, mid.height as f32);
    let upright =
        people.iter().filter(|d| (d.bbox.y2 - d.bbox.y1) * h > (d.bbox.x2 - d.bbox.x1) * w).count();
    assert!(
        upright * 10 >= people.len() * 8,
        "{model}: only {upright} of {} person boxes are taller than wide: {people:?}",
        people.len()
    );
    // Enough people across the clip (PETS has ~5–8 people most of the time).
    let with3 = counts.iter().filter(|c| **c >= 3).count();
    assert!(
        with3 * 2 >= counts.len(),
        "{model}: ≥ 3 people on only {with3} of {} frames: {counts:?}",
        counts.len()
    );
}

#[test]
fn committed_nanodet_g_416() {
    finds_people(load(&repo().join("models/nanodet-g-coco-416/model.toml")));
}

/// The shipped detector: int8 on lit frames, its `low_light_model` (the fp32 file) on
/// low-light ones, with the same boxes as that model loaded on its own.
#[test]
fn shipped_detector_runs_fp32_on_low_light_frames() {
    let mut shipped = load(&repo().join("models/nanodet-g-coco-416-int8/model.toml"));
    let mut fp32 = load(&repo().join("models/nanodet-g-coco-416/model.toml"));
    assert_eq!(shipped.for_light(false).name(), "nanodet-g-coco-416-int8");
    assert_eq!(shipped.for_light(true).name(), "nanodet-g-coco-416");
    // A PETS frame darkened to a night image: gridwatch::analytics::low_light says so.
    let f = &pets()[8];
    let dark: Vec<u8> = f.rgb.iter().map(|v| v / 6).collect();
    assert!(gridwatch::analytics::low_light(&dark, f.width, f.height));
    assert!(!gridwatch::analytics::low_light(&f.rgb, f.width, f.height));
    for (rgb, what) in [(&f.rgb, "lit"), (&dark, "dark")] {
        let a = shipped.for_light(true).detect(rgb, f.width, f.height).unwrap();
        let b = fp32.detect(rgb, f.width, f.height).unwrap();
        assert!(!b.is_empty(), "{what}: fp32 finds nobody");
        let boxes = |v: &[Detection]| v.iter().map(|d| (d.class_id, d.bbox)).collect::<Vec<_>>();
        assert_eq!(boxes(&a), boxes(&b), "{what}: the low-light session is the fp32 model");
    }
    let lit = shipped.for_light(false).detect(&f.rgb, f.width, f.height).unwrap();
    assert!(lit.iter().any(|d| d.class == "person"), "int8 finds the PETS people");
}

#[test]
fn committed_nanodet_g_320() {
    finds_people(load(&repo().join("models/nanodet-g-coco-320/model.toml")));
}

#[test]
fn shared_nanodet_g_640x480() {
    if let Some(d) = load_shared("nanodet-g-640x480.toml") {
        finds_people(d);
    }
}

#[test]
fn shared_yolox_nano_416() {
    if let Some(d) = load_shared("yolox-nano-416.toml") {
        finds_people(d);
    }
}

#[test]
fn shared_nanodet_m_320() {
    if let Some(d) = load_shared("nanodet-m-320.toml") {
        finds_people(d);
    }
}

#[test]
fn shared_yolov12n_640x480() {
    if let Some(d) = load_shared("yolov12n-640x480.toml") {
        finds_people(d);
    }
}

#[test]
fn shared_fire_smoke_yolo11n() {
    let Some(mut det) = load_shared("fire-smoke-yolo11n-640-int8.toml") else {
        return;
    };
    assert_eq!(det.labels(), ["smoke", "fire"]);
    // No fire in PETS: at most a few (false) detections per frame.
    for f in pets().iter().step_by(4) {
        let dets = det.detect(&f.rgb, f.width, f.height).unwrap_or_else(|e| panic!("{e}"));
        check_sane(det.name(), f, &dets);
        assert!(dets.len() <= 2, "fire/smoke on PETS {}: {dets:?}", f.name);
    }
    let frames = fire();
    let mut hits = Vec::new();
    for f in frames {
        let dets = det.detect(&f.rgb, f.width, f.height).unwrap_or_else(|e| panic!("{e}"));
        check_sane(det.name(), f, &dets);
        hits.push(dets.iter().filter(|d| d.class == "fire" || d.class == "smoke").count());
    }
    eprintln!(
        "fire/smoke detections per house-blaze frame: {hits:?} (timings {:?})",
        det.last_timings()
    );
    let found = hits.iter().filter(|h| **h > 0).count();
    assert!(
        found * 2 >= frames.len(),
        "smoke/fire on only {found} of {} house-blaze frames: {hits:?}",
        frames.len()
    );
}

fn people(det: &mut Detector, f: &Frame) -> Vec<Detection> {
    let thr = det.score_threshold().max(0.4);
    let dets = det.detect(&f.rgb, f.width, f.height).unwrap_or_else(|e| panic!("{e}"));
    dets.into_iter().filter(|d| d.class == "person" && d.score >= thr).collect()
}

/// The committed model (stretch resize) and YOLOX (top-left letterbox) and YOLOv12 (centred
/// letterbox) must put person boxes in the same places: checks every back-transform.
#[test]
fn models_agree_on_person_boxes() {
    let Some(mut yolox) = load_shared("yolox-nano-416.toml") else {
        return;
    };
    let Some(mut v12) = load_shared("yolov12n-640x480.toml") else {
        return;
    };
    let mut nano = load(&repo().join("models/nanodet-g-coco-416/model.toml"));
    let f = &pets()[MID_FRAME];
    let a = people(&mut nano, f);
    for (name, other) in [("yolox", people(&mut yolox, f)), ("yolov12n", people(&mut v12, f))] {
        let ious: Vec<f32> = a
            .iter()
            .map(|d| other.iter().map(|o| d.bbox.iou(&o.bbox)).fold(0.0, f32::max))
            .collect();
        let matched = ious.iter().filter(|i| **i >= 0.5).count();
        eprintln!("nanodet-g-416 vs {name}: best IoUs {ious:?}");
        assert!(
            a.len() >= 3 && matched * 10 >= a.len() * 7,
            "nanodet-g-416 vs {name}: {ious:?}\n{a:?}\n{other:?}"
        );
    }
}

#[test]
fn detector_requires_valid_frame() {
    let mut det = load(&repo().join("models/nanodet-g-coco-320/model.toml"));
    let e = det.detect(&[0u8; 10], 4, 4).unwrap_err().to_string();
    assert!(e.contains("nanodet-g-coco-320") && e.contains("48 bytes"), "{e}");
    assert_eq!(det.input_size(), (320, 320));
}

#[test]
fn unavailable_accelerator_falls_back_to_cpu() {
    runtime::init(None).expect("ONNX Runtime");
    let m = ModelManifest::load(&repo().join("models/nanodet-g-coco-320/model.toml")).unwrap();
    let opts = DetectorOptions {
        intra_op_threads: 1,
        execution_providers: vec![
            "tensorrt".into(),
            "cuda".into(),
            "openvino".into(),
            "cpu".into(),
        ],
        ..DetectorOptions::default()
    };
    let det = Detector::load(&m, &opts).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(det.providers().last().map(String::as_str), Some("cpu"));
    let bad = DetectorOptions {
        intra_op_threads: 1,
        execution_providers: vec!["gpu9000".into()],
        ..DetectorOptions::default()
    };
    let e = Detector::load(&m, &bad).unwrap_err().to_string();
    assert!(e.contains("gpu9000"), "{e}");
}

/// A manifest that does not fit the model (wrong reg_max) fails at load, naming model and output.
#[test]
fn wrong_manifest_fails_at_load_naming_the_output() {
    runtime::init(None).expect("ONNX Runtime");
    let dir = repo().join("models/nanodet-g-coco-320");
    let text = std::fs::read_to_string(dir.join("model.toml"))
        .unwrap()
        .replace("reg_max = 10", "reg_max = 7")
        .replace("name = \"nanodet-g-coco-320\"", "name = \"wrong-reg-max\"");
    let m = ModelManifest::parse(&text, &dir).unwrap();
    let e = Detector::load(&m, &DetectorOptions::default()).unwrap_err().to_string();
    assert!(
        e.contains("wrong-reg-max") && e.contains("output `Identity") && e.contains("32"),
        "{e}"
    );
    eprintln!("{e}");
}

/// The committed pose model on a real frame with a known pose: the indoor clip at 28 s shows
/// one man standing upright, seen from behind, head to feet in view (768x432, so the 256x256
/// letterbox pads top and bottom and the back-transform matters). His keypoints must be in
/// body order from top to bottom, inside his box, and his box must match the detector's.
#[test]
fn committed_movenet_pose_on_a_standing_person() {
    let clip = repo().join("../shared/media/people/people-indoor-one-by-one-standing-432p.mp4");
    if !clip.exists() {
        eprintln!("skipping: {} not found (../shared is absent)", clip.display());
        return;
    }
    use gridwatch::types::kp;
    let frames = extract(&clip, "1/4");
    let f = &frames[7]; // 28 s: person 2 (black jacket) stands at the table
    let mut pose = load(&repo().join("models/movenet-multipose-lightning-256/model.toml"));
    assert_eq!(pose.labels(), ["person"]);
    let dets = pose.detect(&f.rgb, f.width, f.height).unwrap_or_else(|e| panic!("{e}"));
    check_sane(pose.name(), f, &dets);
    eprintln!("movenet on {} ({:?}): {dets:?}", f.name, pose.last_timings());
    assert_eq!(dets.len(), 1, "exactly one person on the frame: {dets:?}");
    let p = &dets[0];
    assert_eq!(p.class, "person");
    let k = p.keypoints.as_ref().expect("a pose model's detection has keypoints");
    assert_eq!(k.len(), 17);
    for q in k {
        assert!((0.0..=1.0).contains(&q.x) && (0.0..=1.0).contains(&q.y), "{q:?}");
        assert!((0.0..=1.0).contains(&q.score), "{q:?}");
    }
    // Mean height of the seen keypoints of a body part (pixels).
    let h = f.height as f32;
    let part = |name: &str, ids: &[usize]| -> f32 {
        let seen: Vec<f32> = ids.iter().filter(|&&i| k[i].score >= 0.3).map(|&i| k[i].y).collect();
        assert!(!seen.is_empty(), "no {name} keypoint scores ≥ 0.3: {k:?}");
        seen.iter().sum::<f32>() / seen.len() as f32 * h
    };
    let head = part("head", &[kp::NOSE, kp::LEFT_EYE, kp::RIGHT_EYE, kp::LEFT_EAR, kp::RIGHT_EAR]);
    let shoulders = part("shoulder", &[kp::LEFT_SHOULDER, kp::RIGHT_SHOULDER]);
    let hips = part("hip", &[kp::LEFT_HIP, kp::RIGHT_HIP]);
    let knees = part("knee", &[kp::LEFT_KNEE, kp::RIGHT_KNEE]);
    let ankles = part("ankle", &[kp::LEFT_ANKLE, kp::RIGHT_ANKLE]);
    eprintln!("y (px): head {head:.0}, shoulders {shoulders:.0}, hips {hips:.0}, knees {knees:.0}, ankles {ankles:.0}");
    assert!(
        head < shoulders && shoulders < hips && hips < knees && knees < ankles,
        "not head > shoulders > hips > knees > ankles from the top: {k:?}"
    );
    // Standing: the body spans most of the box height, and the seen keypoints lie in the box
    // (a margin of 5 % of the box for joints on its edge).
    let b = p.bbox;
    assert!((ankles - head) / h > 0.6 * (b.y2 - b.y1), "{head} {ankles} {b:?}");
    let (mx, my) = (0.05 * (b.x2 - b.x1), 0.05 * (b.y2 - b.y1));
    for (i, q) in k.iter().enumerate().filter(|(_, q)| q.score >= 0.3) {
        assert!(
            q.x >= b.x1 - mx && q.x <= b.x2 + mx && q.y >= b.y1 - my && q.y <= b.y2 + my,
            "keypoint {} {q:?} outside the box {b:?}",
            gridwatch::types::KEYPOINT_NAMES[i]
        );
    }
    // The box agrees with the committed detector's person box.
    let mut nano = load(&repo().join("models/nanodet-g-coco-416/model.toml"));
    let other = people(&mut nano, f);
    let iou = other.iter().map(|o| o.bbox.iou(&b)).fold(0.0, f32::max);
    assert!(iou >= 0.6, "pose box {b:?} vs nanodet-g {other:?}: IoU {iou}");
}

/// The pose model on PETS (768x576, people ~60–100 px tall). On the whole frame at 256x256
/// they are too small for it; on crops around the detector's person boxes (how a pose stage
/// would run it) most get a pose with the shoulders above the hips above the ankles.
#[test]
fn committed_movenet_on_pets_crops() {
    let mut pose = load(&repo().join("models/movenet-multipose-lightning-256/model.toml"));
    let mut nano = load(&repo().join("models/nanodet-g-coco-416/model.toml"));
    let f = &pets()[MID_FRAME];
    let whole = pose.detect(&f.rgb, f.width, f.height).unwrap_or_else(|e| panic!("{e}"));
    check_sane(pose.name(), f, &whole);
    let boxes = people(&mut nano, f);
    let (w, h) = (f.width as f32, f.height as f32);
    let (mut upright, mut ms) = (0, Vec::new());
    for b in boxes.iter().map(|d| d.bbox) {
        // The box grown by 25 % of its height on every side, cut to the frame.
        let m = 0.25 * (b.y2 - b.y1) * h;
        let x1 = (b.x1 * w - m).max(0.0) as u32;
        let y1 = (b.y1 * h - m).max(0.0) as u32;
        let x2 = ((b.x2 * w + m) as u32).min(f.width);
        let y2 = ((b.y2 * h + m) as u32).min(f.height);
        let (cw, ch) = (x2 - x1, y2 - y1);
        let mut crop = Vec::with_capacity((cw * ch * 3) as usize);
        for y in y1..y2 {
            let row = ((y * f.width + x1) * 3) as usize;
            crop.extend_from_slice(&f.rgb[row..row + (cw * 3) as usize]);
        }
        let dets = pose.detect(&crop, cw, ch).unwrap_or_else(|e| panic!("{e}"));
        ms.push(pose.last_timings().total_ms());
        let Some(p) = dets.iter().max_by(|a, b| a.score.total_cmp(&b.score)) else { continue };
        let k = p.keypoints.as_ref().expect("keypoints");
        assert!(k.iter().all(|q| (0.0..=1.0).contains(&q.x) && (0.0..=1.0).contains(&q.y)));
        let y = |a: usize, b: usize| (k[a].y + k[b].y) / 2.0;
        use gridwatch::types::kp;
        if y(kp::LEFT_SHOULDER, kp::RIGHT_SHOULDER) < y(kp::LEFT_HIP, kp::RIGHT_HIP)
            && y(kp::LEFT_HIP, kp::RIGHT_HIP) < y(kp::LEFT_ANKLE, kp::RIGHT_ANKLE)
        {
            upright += 1;
        }
    }
    eprintln!(
        "movenet on PETS {}: {} people on the whole frame; upright poses on {upright} of {} person crops; ms per crop {ms:.0?}",
        f.name,
        whole.len(),
        boxes.len()
    );
    assert!(boxes.len() >= 3, "nanodet-g found {} people", boxes.len());
    assert!(upright * 10 >= boxes.len() * 6, "{upright} of {} crops", boxes.len());
}

/// A pose manifest on a model whose outputs are not MoveNet's fails at load, naming the
/// model, the output and the manifest field.
#[test]
fn keypoints_manifest_on_a_detector_fails_at_load() {
    runtime::init(None).expect("ONNX Runtime");
    let dir = repo().join("models/nanodet-g-coco-320");
    let text = std::fs::read_to_string(dir.join("model.toml")).unwrap();
    let output = text.find("[output]").expect("[output]");
    let text = format!(
        "{}[output]\nkind = \"keypoints\"\nscore_threshold = 0.25\nnms_iou = 0.6\n",
        &text[..output]
    )
    .replace("name = \"nanodet-g-coco-320\"", "name = \"not-a-pose-model\"");
    let m = ModelManifest::parse(&text, &dir).unwrap_or_else(|e| panic!("{e}"));
    let e = Detector::load(&m, &DetectorOptions::default()).unwrap_err().to_string();
    eprintln!("{e}");
    assert!(
        e.contains("not-a-pose-model")
            && e.contains("output `Identity")
            && e.contains("`output.kind` = \"keypoints\""),
        "{e}"
    );
}

/// The aspect-fitted input (`input.aspect_multiple`, docs/design/0048): the default model's file
/// run at 416×320 on PETS's 768×576 frames finds the same people as at 416×416 (same scale,
/// less padding): every confident square-input person has a box of IoU ≥ 0.7 among the fitted
/// ones, on every sampled frame, and every box is inside the frame.
#[test]
fn aspect_fitted_input_finds_the_same_people() {
    let mut square = load(&repo().join("models/nanodet-g-coco-416/model.toml"));
    let mut fitted = load(&repo().join("models/nanodet-g-coco-416-aspect/model.toml"));
    assert_eq!(fitted.input_size(), (416, 416), "the largest input");
    let (mut confident, mut matched) = (0, 0);
    for f in pets() {
        let a = people(&mut square, f);
        let b = people(&mut fitted, f);
        check_sane("nanodet-g-coco-416-aspect", f, &b);
        for d in a.iter().filter(|d| d.score >= 0.5) {
            confident += 1;
            let best = b.iter().map(|o| d.bbox.iou(&o.bbox)).fold(0.0, f32::max);
            if best >= 0.7 {
                matched += 1;
            } else {
                eprintln!("{}: {d:?} best IoU {best:.2} among {b:?}", f.name);
            }
        }
    }
    eprintln!("aspect-fitted: {matched} of {confident} confident square-input people matched");
    assert!(confident >= 20, "too few people to compare: {confident}");
    assert!(matched * 100 >= confident * 97, "{matched} of {confident}");
}

/// `input.aspect_multiple` on a model whose input has a fixed height and width fails at load,
/// naming the model and the field; a frame of another shape never reaches ONNX Runtime.
#[test]
fn aspect_multiple_on_a_fixed_input_fails_at_load() {
    runtime::init(None).expect("ONNX Runtime");
    let dir = repo().join("models/nanodet-g-coco-320");
    let text = std::fs::read_to_string(dir.join("model.toml"))
        .unwrap()
        .replace("pad_value = 0", "pad_value = 0\naspect_multiple = 32")
        .replace("resize = \"stretch\"", "resize = \"letterbox_center\"")
        .replace("name = \"nanodet-g-coco-320\"", "name = \"fixed-input\"");
    assert!(text.contains("aspect_multiple"), "the manifest has `pad_value = 0`");
    let m = ModelManifest::parse(&text, &dir).unwrap_or_else(|e| panic!("{e}"));
    let e = Detector::load(&m, &DetectorOptions::default()).unwrap_err().to_string();
    eprintln!("{e}");
    assert!(
        e.contains("fixed-input") && e.contains("input.aspect_multiple") && e.contains("dynamic"),
        "{e}"
    );
}
