//! The built-in fire and smoke detector alone (`models = ["builtin-fire"]`, shipped defaults,
//! the shipped `fire`/`smoke` rules) on the shared clips, through `gridwatch eval scenarios`
//! and the real frame path (tests/scenarios/fire.toml; onsets labelled by eye,
//! tests/scenarios/README.md): the issue's targets (every fixed-camera flame within 10 s and
//! smoke within 30 s of onset, no false alarm on any negative; docs/performance.md, "Built-in
//! fire detector"). Also: false alarms per camera-hour on looped negatives
//! (tests/scenarios/fire-negatives.toml; a bounded part, and the full 68 min), looping
//! itself, report-only (moving-camera) scenarios kept out of the false-alarm rates, and the
//! evidence a fire/smoke event carries.
//! Skips with a message when `../shared/media` is absent.

use std::path::PathBuf;

use gridwatch::eval::scenarios::{self, EventRow, Manifest, Options, Report};

fn manifest() -> Option<Manifest> {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let media = repo.join("../shared/media/fire");
    if !media.is_dir() {
        eprintln!("SKIP: {} is absent (shared fire clips)", media.display());
        return None;
    }
    Some(Manifest::load(&repo.join("tests/scenarios/fire.toml")).unwrap())
}

fn run(m: &Manifest, only: &[&str]) -> Report {
    let only = only.iter().map(|s| s.to_string()).collect();
    let opts = Options { only, threads: 1, ..Options::default() };
    let r = scenarios::run(m, &opts, &mut |l| eprintln!("{l}")).unwrap();
    eprintln!("{}", scenarios::format_report(&r));
    r
}

fn row<'a>(r: &'a Report, scenario: &str, kind: &str) -> Option<&'a EventRow> {
    r.scenarios.iter().find(|s| s.name == scenario)?.events.iter().find(|e| e.kind == kind)
}

/// The issue's targets on the shared clips (tests/scenarios/fire.toml), in one run: every
/// fixed-camera clip's flame within 10 s and smoke within 30 s of its labelled onset, and no
/// alarm on any non-fire clip. Report-only clips (moving cameras: the handheld phones and the
/// drone over the distant plume) are run and listed but not scored; the false-alarm rates
/// leave them out.
#[test]
fn builtin_fire_meets_the_issue_targets() {
    let Some(m) = manifest() else { return };
    let r = run(&m, &[]);
    let mut failures = Vec::new();
    for s in &r.scenarios {
        if s.report_only {
            continue;
        }
        for e in &s.events {
            let within = if e.kind == "fire" { 10.0 } else { 30.0 };
            if e.expected > 0 && !e.time_to_alarm_secs.first().is_some_and(|&t| t <= within) {
                failures.push(format!("{} {}: missed or late", s.name, e.kind));
            }
            if e.detected > e.matched {
                failures.push(format!(
                    "{} {}: {} false alarm(s)",
                    s.name,
                    e.kind,
                    e.detected - e.matched
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    // The fixed-camera fire clips are scored, and each expects both kinds it shows.
    for (scenario, kinds) in
        [("fire-dollhouse", &["fire", "smoke"][..]), ("fire-storage-units", &["fire", "smoke"])]
    {
        let sc = r.scenarios.iter().find(|s| s.name == scenario).unwrap();
        assert!(!sc.report_only, "{scenario} is scored");
        for k in kinds {
            assert!(row(&r, scenario, k).is_some_and(|e| e.expected == 1), "{scenario} {k}");
        }
    }
    for name in ["handheld-paper-fire", "handheld-house-blaze", "smoke-plume"] {
        let sc = r.scenarios.iter().find(|s| s.name == name).unwrap();
        assert!(sc.report_only, "{name} (moving camera) is report-only");
    }
    for f in &r.false_alarms {
        let scored: u32 = r
            .scenarios
            .iter()
            .filter(|s| !s.report_only)
            .flat_map(|s| s.events.iter().filter(|e| e.kind == f.kind))
            .map(|e| e.detected - e.matched)
            .sum();
        let hours: f64 = r.scenarios.iter().filter(|s| !s.report_only).map(|s| s.video_secs).sum();
        assert_eq!(f.false_alarms, scored, "{f:?}");
        assert!((f.camera_hours - hours / 3600.0).abs() < 1e-9, "{f:?}");
    }
}

/// False alarms per camera-hour on looped negatives (tests/scenarios/fire-negatives.toml),
/// bounded for `make test`: three hard non-fire clips (a low sun at tunnel portals, a
/// sunset time-lapse, a 3 s street clip replayed 20 times), each replayed to 60 s of
/// camera time with video time continuing across the seams. The full hour is `make eval`
/// (docs/performance.md).
#[test]
fn builtin_fire_no_false_alarm_on_looped_negatives() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    if !repo.join("../shared/media/traffic").is_dir() {
        eprintln!("SKIP: ../shared/media is absent (shared non-fire clips)");
        return;
    }
    let m = Manifest::load(&repo.join("tests/scenarios/fire-negatives.toml")).unwrap();
    let only = [
        "traffic-motorway-cctv-tunnel-portal",
        "neg-sunset-sun-on-horizon-timelapse",
        "people-street-crosswalk",
    ];
    let opts = Options {
        only: only.iter().map(|s| s.to_string()).collect(),
        loop_secs: Some(60.0),
        threads: 1,
        ..Options::default()
    };
    let r = scenarios::run(&m, &opts, &mut |l| eprintln!("{l}")).unwrap();
    eprintln!("{}", scenarios::format_report(&r));
    for s in &r.scenarios {
        assert!(s.passes >= 3, "{}: {} passes", s.name, s.passes);
        assert!((59.0..=60.0 + 1e-6).contains(&s.video_secs), "{}: {} s", s.name, s.video_secs);
    }
    assert_eq!(r.false_alarms.len(), 2, "{:?}", r.false_alarms);
    for f in &r.false_alarms {
        assert!((f.camera_hours - 3.0 / 60.0).abs() < 0.001, "{f:?}");
        assert_eq!(f.false_alarms, 0, "{} false alarms on looped negatives: {f:?}", f.kind);
    }
}

/// Item 3 of issue 13: a `fire`/`smoke` event carries its evidence. On the dollhouse clip
/// (fixed camera, flames from the first frame), the frame path's `Started` changes of both
/// rules have the region boxes as objects, the detector's cues of each region in
/// `detail.cues` (box, colour, motion, flicker, …, all in range and the region confirmed),
/// and the frame as the snapshot; the stored snapshot is that frame with the boxes drawn.
#[test]
fn builtin_fire_events_carry_region_cues_and_snapshot() {
    use gridwatch::analytics::{analyse_video, CameraAnalytics, Detectors};
    use gridwatch::infer::detector::DetectorOptions;
    use gridwatch::types::Change;
    let Some(m) = manifest() else { return };
    let s = m.scenarios.iter().find(|s| s.name == "fire-dollhouse").unwrap();
    let cam = s.camera();
    let analytics = CameraAnalytics::new(cam);
    let opts = DetectorOptions { intra_op_threads: 1, ..DetectorOptions::default() };
    let mut detectors = Detectors::for_config(&s.config, &opts).unwrap();
    let t0 = time::OffsetDateTime::UNIX_EPOCH;
    let mut started = Vec::new();
    analyse_video(&s.clip, cam.detect_width, 0.1, t0, &analytics, Some(&mut detectors), |t, a| {
        started.extend(a.changes.into_iter().filter(|c| c.change == Change::Started));
        if t > 12.0 {
            std::ops::ControlFlow::Break(())
        } else {
            std::ops::ControlFlow::Continue(())
        }
    })
    .unwrap();
    let kinds: Vec<&str> = started.iter().map(|c| c.kind.as_str()).collect();
    assert!(kinds.contains(&"fire") && kinds.contains(&"smoke"), "started: {kinds:?}");
    for c in &started {
        assert!(!c.objects.is_empty(), "{}: no region", c.kind);
        assert!(c.objects.iter().all(|o| o.class == c.kind), "{}: {:?}", c.kind, c.objects);
        let cues = c.detail.as_ref().and_then(|d| d.get("cues")).and_then(|v| v.as_array());
        let cues = cues.unwrap_or_else(|| panic!("{}: no detail.cues in {:?}", c.kind, c.detail));
        assert_eq!(cues.len(), c.objects.len(), "{}: one cue set per region", c.kind);
        eprintln!("{} started at {}: detail {}", c.kind, c.at, c.detail.as_ref().unwrap());
        for (q, o) in cues.iter().zip(&c.objects) {
            assert_eq!(q["class"], c.kind.as_str(), "{q}");
            assert_eq!(q["confirmed"], true, "{q}");
            let b = &q["box"];
            let f = |k: &str| b[k].as_f64().unwrap_or(f64::NAN) as f32;
            let (x1, y1, x2, y2) = (f("x1"), f("y1"), f("x2"), f("y2"));
            // The region the cues describe is the object's box.
            assert!(
                (x1 - o.bbox.x1).abs() < 1e-4
                    && (y2 - o.bbox.y2).abs() < 1e-4
                    && x2 > x1
                    && y2 > y1,
                "{}: cue box {b} vs object {:?}",
                c.kind,
                o.bbox
            );
            for k in ["colour", "motion", "flickering", "coherence"] {
                let v = q[k].as_f64().unwrap_or(-1.0);
                assert!((0.0..=1.0).contains(&v), "{}: {k} = {v}", c.kind);
            }
            assert!(q["flicker_hz"].as_f64().is_some_and(|v| v > 0.0 && v <= 5.0), "{q}");
            assert!(q["hits"].as_u64().is_some_and(|h| h > 0), "{q}");
        }
        let frame = c.snapshot.as_ref().unwrap_or_else(|| panic!("{}: no snapshot", c.kind));
        let plain = gridwatch::store::encode_jpeg(frame, &[], 95).unwrap();
        let drawn = gridwatch::store::encode_jpeg(frame, &c.objects, 95).unwrap();
        assert_ne!(plain, drawn, "{}: the region is drawn on the snapshot", c.kind);
    }
}

/// `loop_secs` with and without `reverse = true` on a real clip: the camera time of the
/// analysed frames (from `--dump`) rises across the seams, at most one frame interval
/// apart, up to `loop_secs`.
#[test]
fn looped_scenarios_continue_video_time_across_passes() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    if !repo.join("../shared/media/traffic").is_dir() {
        eprintln!("SKIP: ../shared/media is absent (shared non-fire clips)");
        return;
    }
    let one = |name: &str, reverse: bool| {
        format!(
            "[[scenarios]]\nname = \"{name}\"\n\
             clip = \"../../../shared/media/traffic/traffic-motorway-cctv-fog-trucks-288p.mp4\"\n\
             max_secs = 6.0\nreverse = {reverse}\nloop_secs = 20.0\n[scenarios.camera]\n\
             models = [\"builtin-fire\"]\ndetect_fps = 5.0\nrules = [{{ kind = \"fire\" }}]\n"
        )
    };
    let text = format!("{}{}", one("forward", false), one("backward", true));
    let scenarios = Manifest::parse(&text, &repo.join("tests/scenarios")).unwrap();
    let m = Manifest { path: repo.join("tests/scenarios/inline.toml"), scenarios };
    let dump = std::env::temp_dir().join(format!("gw-loop-dump-{}", std::process::id()));
    let opts = Options { threads: 1, dump: Some(dump.clone()), ..Options::default() };
    let r = scenarios::run(&m, &opts, &mut |l| eprintln!("{l}")).unwrap();
    for s in &r.scenarios {
        assert_eq!(s.passes, 4, "{}: 6 s passes to 20 s", s.name);
        let text = std::fs::read_to_string(dump.join(format!("{}.jsonl", s.name))).unwrap();
        let t: Vec<f64> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["t"].as_f64().unwrap())
            .collect();
        assert_eq!(t.len() as u64, s.analysed_frames);
        let last = *t.last().unwrap();
        assert!(t[0] < 0.2 && (19.6..=20.0 + 1e-6).contains(&last), "{}: {t:?}", s.name);
        // 0.2 s apart (5 fps); a clip's first frame may lie between two steps of the grid.
        for w in t.windows(2) {
            let step = w[1] - w[0];
            assert!((0.05..=0.2 + 1e-6).contains(&step), "{}: {} → {}", s.name, w[0], w[1]);
        }
    }
    let _ = std::fs::remove_dir_all(&dump);
}

/// The issue's false-alarm target in full: at most 0.1 per camera-hour per kind over every
/// non-fire shared clip looped to 68 min (tests/scenarios/fire-negatives.toml, also
/// `make eval`), 17 scenarios with a fire and a smoke rule each. Met since the flame-core and
/// night cues: no alarm in 1.133 camera-hours (docs/performance.md). About 4 min in a debug
/// build on the dev box.
#[test]
fn builtin_fire_false_alarms_per_camera_hour_meet_the_target() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    if !repo.join("../shared/media/traffic").is_dir() {
        eprintln!("SKIP: ../shared/media is absent (shared non-fire clips)");
        return;
    }
    let m = Manifest::load(&repo.join("tests/scenarios/fire-negatives.toml")).unwrap();
    let opts = Options { threads: 1, ..Options::default() };
    let r = scenarios::run(&m, &opts, &mut |l| eprintln!("{l}")).unwrap();
    eprintln!("{}", scenarios::format_report(&r));
    let kinds: Vec<&str> = r.false_alarms.iter().map(|f| f.kind.as_str()).collect();
    assert_eq!(kinds, ["fire", "smoke"], "{:?}", r.false_alarms);
    for f in &r.false_alarms {
        assert_eq!(f.scenarios, 17, "{f:?}");
        assert!(f.camera_hours >= 1.0, "{f:?}");
        assert!(f.per_camera_hour.is_some_and(|v| v <= 0.1), "{f:?}");
    }
}
