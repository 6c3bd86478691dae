//! People on the shared clips through `gridwatch eval scenarios` (tests/scenarios/people.toml):
//! the labelled falls and the night presence windows (issue 14), and the pose stage on a
//! real clip. The recall windows and the gym fall run in `make test`; the targets
//! (a fall within 3 s on both fall clips, no fall anywhere else, the night person tracked on
//! ≥ 80 % of the frames where visible) are held in an ignored test: the construction fall is
//! not met (docs/performance.md), and the 15 clips take about 11 min in a debug build.
//! Skips with a message when `../shared/media` is absent.

use std::ops::ControlFlow;
use std::path::PathBuf;

use gridwatch::analytics::{analyse_video, CameraAnalytics, Detectors};
use gridwatch::eval::scenarios::{self, Manifest, Options, Report};
use gridwatch::infer::detector::DetectorOptions;
use gridwatch::rules::fall::torso_deg;

fn manifest() -> Option<Manifest> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let media = root.join("../shared/media/people");
    if !media.is_dir() {
        eprintln!("SKIP: {} is absent (shared people clips)", media.display());
        return None;
    }
    Some(Manifest::load(&root.join("tests/scenarios/people.toml")).expect("people.toml"))
}

fn run(m: &Manifest, only: &[&str]) -> Report {
    let only = only.iter().map(|s| s.to_string()).collect();
    let opts = Options { threads: 2, only, ..Options::default() };
    let report = scenarios::run(m, &opts, &mut |l| eprintln!("{l}")).expect("eval scenarios");
    print!("{}", scenarios::format_report(&report));
    report
}

/// The night IR clip's presence window: every analysed frame of it is scored, the detector
/// finds a person in the labelled enclosure on most of them (80 of 85 at the time of
/// writing), and the low-light births and levels (docs/design/0027) track them on most
/// (76 of 85 at the time of writing; 0 without them, 64 without the tracks on a still shape
/// by the excavator). The 80 % on both night clips is the target below.
/// One camera on `clip` with the shipped NanoDet-g 416 (`coco`), the shipped model `pose`
/// (a directory of models/) and the camera table `block`.
fn one_camera(clip: &std::path::Path, pose: &str, block: &str) -> (Detectors, CameraAnalytics) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let text = format!(
        "box_id = 'b'\ndata_dir = '/tmp'\n[models]\ncoco = '{m}/nanodet-g-coco-416/model.toml'\n\
         pose = '{m}/{pose}/model.toml'\n[[cameras]]\nid = 'cam'\nurl = '{clip}'\n\
         models = ['coco']\n{block}\n",
        m = root.join("models").display(),
        clip = clip.display(),
    );
    let cfg = gridwatch::config::Config::parse(&text, &root).expect("config");
    let opts = DetectorOptions::default();
    let detectors = Detectors::for_config(&cfg, &opts).unwrap_or_else(|e| panic!("{e:#}"));
    (detectors, CameraAnalytics::new(&cfg.cameras[0]))
}

#[test]
fn night_presence_window_is_scored_on_every_frame() {
    let Some(m) = manifest() else { return };
    let r = run(&m, &["neg-night-ir-fence"]);
    let p = &r.scenarios[0].presence[0];
    // 1.0–9.4 s at 10 frames/s.
    assert!(p.frames.abs_diff(84) <= 1, "{p:?}");
    assert!(p.detected as f64 >= 0.8 * p.frames as f64, "{p:?}");
    assert!(p.tracked <= p.frames && p.tracked_fraction.is_some(), "{p:?}");
    assert!(p.tracked as f64 >= 0.7 * p.frames as f64, "low-light people births: {p:?}");
}

/// The very dark yard: the man is faint right of the lit huts at 2–6 s, where the detector
/// alone finds him on few frames (tracked on 128 of 188 frames, 68 %, without the
/// enhancement). The default low-light enhancement (`[cameras.low_light_enhance]`: CLAHE on
/// the luma of dark frames before detection, docs/design/0035) gives the detector the
/// contrast to find him on more of them (158 of 188 at the time of writing, with the fall
/// cameras' weak person births, docs/design/0044): issue 14's 80 %.
#[test]
fn low_light_yard_is_tracked_with_the_default_enhancement() {
    let Some(m) = manifest() else { return };
    let sc = &m.scenarios.iter().find(|s| s.name == "neg-night-lowlight").expect("scenario");
    assert!(sc.camera().low_light_enhance.enabled, "on by default");
    let r = run(&m, &["neg-night-lowlight"]);
    let p = &r.scenarios[0].presence[0];
    assert!(p.frames.abs_diff(188) <= 1, "{p:?}");
    assert!(p.tracked as f64 >= 0.8 * p.frames as f64, "low-light enhancement: {p:?}");
}

/// The pose stage (`[cameras.pose]`) on the real indoor clip: the woman standing at the
/// table (3–17 s) is tracked and her track gets poses from crops, upright (torso within 30°
/// of vertical); nobody in the clip lies, so no pose shows a torso past 60°.
#[test]
fn pose_stage_gives_standing_tracks_upright_poses() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let clip = root.join("../shared/media/people/people-indoor-one-by-one-standing-432p.mp4");
    if !clip.is_file() {
        eprintln!("SKIP: {} is absent (shared people clips)", clip.display());
        return;
    }
    let (mut detectors, camera) =
        one_camera(&clip, "movenet-multipose-lightning-256", "[cameras.pose]\nmodel = 'pose'");
    let t0 = time::OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("t0");
    let (mut fresh, mut upright, mut lying) = (0, 0, 0);
    analyse_video(&clip, 640, 0.2, t0, &camera, Some(&mut detectors), |t, a| {
        let frame = &a.tracks.detections.frame;
        for tr in a.tracked() {
            let Some(p) = tr.pose.as_ref().filter(|p| p.at == frame.captured_at) else { continue };
            fresh += 1;
            match torso_deg(&p.keypoints, 0.3, frame.width, frame.height) {
                Some(d) if d <= 30.0 => upright += 1,
                Some(d) if d >= 60.0 => lying += 1,
                _ => {}
            }
        }
        if t < 12.0 {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(())
        }
    })
    .unwrap_or_else(|e| panic!("{e:#}"));
    println!("poses taken on this frame: {fresh}, upright {upright}, lying {lying}");
    assert!(fresh >= 10, "{fresh} poses");
    assert!(upright as f64 >= 0.8 * fresh as f64, "upright {upright} of {fresh}");
    assert_eq!(lying, 0);
}

/// The gym collapse (docs/design/0044): the man is tracked upright only on weak births (his
/// body is cut by the frame's top, scores 0.35–0.69), walks out of view, falls back into it
/// and lies across the frame; the posture stage keeps his track through the fall and `fall`
/// is raised 2.4 s after the labelled moment (8.6 s) at the time of writing. Issue 14's
/// target is within 3 s; nothing else is raised on the clip.
#[test]
fn gym_fall_is_raised_within_3_s() {
    let Some(m) = manifest() else { return };
    let r = run(&m, &["fall-gym-collapse"]);
    let sc = &r.scenarios[0];
    let fall = sc.events.iter().find(|e| e.kind == "fall").expect("fall row");
    assert_eq!((fall.expected, fall.matched, fall.detected), (1, 1, 1), "{fall:?}");
    assert!(fall.time_to_alarm_secs.iter().all(|t| *t <= 3.0), "{fall:?}");
    for e in &sc.events {
        assert_eq!(e.detected, e.matched, "{}: {e:?}", e.kind);
    }
}

/// The fall scan on the real construction clip: the worker who comes off the walkway is
/// reported fallen after he lands, where he was marked by hand lying (hip centre near
/// (458, 309) of 640 × 352, tests/scenarios/README.md), and nobody is before the fall.
#[test]
fn fall_scan_finds_the_construction_worker_where_he_lies() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let clip = root.join("../shared/media/falls/fall-construction-cctv-fall-from-height-352p.mp4");
    if !clip.is_file() {
        eprintln!("SKIP: {} is absent (shared fall clips)", clip.display());
        return;
    }
    let (mut detectors, camera) =
        one_camera(&clip, "blazepose-detector-224", "[cameras.fall_scan]\nmodel = 'pose'");
    let t0 = time::OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("t0");
    let mut first: Option<(f64, f64, gridwatch::geometry::BBox)> = None;
    analyse_video(&clip, 640, 0.1, t0, &camera, Some(&mut detectors), |t, a| {
        if let Some(f) = a.tracks.fallen.first() {
            let landed = (f.first_seen - t0).as_seconds_f64();
            first.get_or_insert((t, landed, f.bbox));
        }
        if t < 19.0 {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(())
        }
    })
    .unwrap_or_else(|e| panic!("{e:#}"));
    let (t, landed, b) = first.expect("the worker is reported fallen by 19 s");
    println!("reported at {t:.1} s, landed at {landed:.1} s, box {b:?}");
    assert!((14.5..=16.5).contains(&landed), "landed {landed:.1} s (he hits the ground at 15.0 s)");
    assert!(t <= landed + 3.0, "reported {t:.1} s");
    let (x, y) = (458.0 / 640.0, 309.0 / 352.0);
    assert!(b.x1 <= x && x <= b.x2 && b.y1 <= y && y <= b.y2, "{b:?}");
}

/// The fall from height: raised within 3 s of the landing by the fall scan, and the worker
/// who then lies on the ground for 15 s is a `person_down`, nothing else.
#[test]
fn construction_fall_from_height_is_raised_within_3_s() {
    let Some(m) = manifest() else { return };
    let r = run(&m, &["fall-construction-height"]);
    let sc = &r.scenarios[0];
    for e in &sc.events {
        assert_eq!((e.expected, e.matched, e.detected), (1, 1, 1), "{}: {e:?}", e.kind);
    }
    let fall = sc.events.iter().find(|e| e.kind == "fall").expect("fall row");
    assert!(fall.time_to_alarm_secs.iter().all(|t| *t <= 3.0), "{fall:?}");
}

/// Issue 14's targets on all the shared people and traffic clips (every one but the two fall
/// clips a fall negative). The whole manifest takes minutes: `make eval` runs it (its output
/// is in docs/performance.md); `make test` asserts the two fall clips above.
#[test]
#[ignore = "the whole people manifest (15 clips): run by `make eval`, or `cargo test --release --test people_scenarios -- --ignored`"]
fn people_targets() {
    let Some(m) = manifest() else { return };
    let r = run(&m, &[]);
    let mut failures = Vec::new();
    for sc in &r.scenarios {
        for e in &sc.events {
            if e.matched < e.expected || e.detected > e.matched {
                failures.push(format!("{}: {} {e:?}", sc.name, e.kind));
            }
            if e.kind == "fall" && e.time_to_alarm_secs.iter().any(|t| *t > 3.0) {
                failures.push(format!("{}: fall later than 3 s", sc.name));
            }
        }
        for p in &sc.presence {
            if p.tracked_fraction.is_none_or(|f| f < 0.8) {
                failures.push(format!("{}: tracked {:?}", sc.name, p.tracked_fraction));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("; "));
}
