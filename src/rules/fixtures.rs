//! Replays rule fixtures (tests/fixtures/rules/*.toml): runs of frames with detections in
//! simulated time, and the incident changes the rules must report, in order.
//!
//! A fixture may also give the camera's `zones`, `lines`, `anchors` and `calibration` (as in
//! the config; validated like it; with a calibration the rule engine gives the tracks their
//! ground speed) and, per frame run, `tracks` directly instead of going through the
//! tracker: `tracks = [{ id = 1, class = "person", box = [x1, y1, x2, y2] }]`, or a linear
//! motion over the run with `from_box`/`to_box` (interpolated from the run's first to its
//! last frame; the velocity is derived from it unless `velocity = [vx, vy]` is given).
//! As soon as one run has `tracks`, the tracker is bypassed for the whole fixture and
//! every frame's tracks are exactly those listed (state `tracked`). `[[expect_counts]]`
//! lists the line-crossing counts the rules must emit, in order (each counts 1).
//! A listed track may carry a pose taken on that frame: `pose = { shoulders = [x, y],
//! hips = [x, y] }` sets both shoulders and both hips there (score 0.9), the other keypoints
//! unseen (score 0).
//! `finish_at = secs` shuts the engine down after the last frame (`RuleEngine::finish` at
//! that time); the changes it reports are expected with `reported = finish_at`.

use std::sync::Arc;

use serde::Deserialize;
use time::{Duration, OffsetDateTime};

use super::RuleEngine;
use crate::config::{CameraConfig, LineConfig, RuleConfig, ZoneConfig};
use crate::geometry::{Anchor, CrossDir};
use crate::track::Tracker;
use crate::types::{BBox, Change, Detection, Detections, Frame, Track, TrackState, Tracks};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fixture {
    #[allow(dead_code)]
    description: String,
    rules: Vec<RuleConfig>,
    frames: Vec<FrameRun>,
    #[serde(default)]
    expect: Vec<Expect>,
    #[serde(default)]
    zones: Vec<ZoneConfig>,
    #[serde(default)]
    lines: Vec<LineConfig>,
    #[serde(default)]
    anchors: std::collections::BTreeMap<String, Anchor>,
    #[serde(default)]
    expect_counts: Vec<ExpectCount>,
    #[serde(default)]
    finish_at: Option<f64>,
    #[serde(default)]
    calibration: Option<crate::rules::CalibrationConfig>,
}

#[derive(Deserialize, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
struct ExpectCount {
    line: String,
    class: String,
    direction: CrossDir,
    /// Crossing time in seconds from the start of the fixture.
    at: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FxTrack {
    id: u64,
    class: String,
    #[serde(default = "default_score")]
    score: f32,
    #[serde(default, rename = "box")]
    bbox: Option<[f32; 4]>,
    #[serde(default)]
    from_box: Option<[f32; 4]>,
    #[serde(default)]
    to_box: Option<[f32; 4]>,
    #[serde(default)]
    velocity: Option<[f32; 2]>,
    #[serde(default)]
    pose: Option<FxPose>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FxPose {
    shoulders: [f32; 2],
    hips: [f32; 2],
}

impl FxPose {
    fn at(&self, now: OffsetDateTime) -> crate::types::Pose {
        use crate::types::{kp, Keypoint};
        let mut keypoints = vec![Keypoint { x: 0.0, y: 0.0, score: 0.0 }; 17];
        for (i, [x, y]) in [
            (kp::LEFT_SHOULDER, self.shoulders),
            (kp::RIGHT_SHOULDER, self.shoulders),
            (kp::LEFT_HIP, self.hips),
            (kp::RIGHT_HIP, self.hips),
        ] {
            keypoints[i] = Keypoint { x, y, score: 0.9 };
        }
        crate::types::Pose { at: now, score: 0.9, keypoints }
    }
}

fn default_score() -> f32 {
    0.9
}

impl FxTrack {
    /// The track at fraction `f` (0–1) of a run lasting `secs`.
    fn at(&self, f: f32, secs: f64, now: OffsetDateTime, path: &std::path::Path) -> Track {
        let (b, v) = match (self.bbox, self.from_box, self.to_box) {
            (Some(b), None, None) => (b, [0.0, 0.0]),
            (None, Some(a), Some(z)) => {
                let b = std::array::from_fn(|i| a[i] + (z[i] - a[i]) * f);
                let d = if secs > 0.0 { secs as f32 } else { 1.0 };
                let c = |b: [f32; 4]| [(b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0];
                let (ca, cz) = (c(a), c(z));
                (b, [(cz[0] - ca[0]) / d, (cz[1] - ca[1]) / d])
            }
            _ => panic!(
                "{}: track {}: give either `box` or both `from_box` and `to_box`",
                path.display(),
                self.id
            ),
        };
        let v = self.velocity.unwrap_or(v);
        Track {
            id: self.id,
            class_id: 0,
            class: self.class.clone(),
            score: self.score,
            bbox: BBox { x1: b[0], y1: b[1], x2: b[2], y2: b[3] },
            state: TrackState::Tracked,
            hits: 1,
            first_seen: now,
            last_seen: now,
            velocity: (v[0], v[1]),
            speed_kmh: None,
            origin: None,
            pose: self.pose.as_ref().map(|p| p.at(now)),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FrameRun {
    from: f64,
    to: f64,
    step: f64,
    #[serde(default)]
    objects: Vec<Obj>,
    #[serde(default)]
    tracks: Vec<FxTrack>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Obj {
    class: String,
    score: f32,
    #[serde(default)]
    bbox: Option<[f32; 4]>,
}

#[derive(Deserialize, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
struct Expect {
    change: Change,
    kind: String,
    /// Event time in seconds from the start of the fixture.
    at: f64,
    /// Time of the frame on which the change is reported.
    reported: f64,
    #[serde(default)]
    objects: Option<usize>,
    /// Keys expected in the change's `detail` (others are not checked).
    #[serde(default)]
    detail: Option<serde_json::Map<String, serde_json::Value>>,
}

fn t0() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
}

fn run(path: &std::path::Path) {
    let text = std::fs::read_to_string(path).unwrap();
    let fx: Fixture = toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let cfg = crate::config::Config::parse(
        "box_id='b'\ndata_dir='/tmp'\n[models]\n[[cameras]]\nid='cam'\nurl='x.mp4'\nmodels=[]\nenabled=false\n",
        std::path::Path::new("/"),
    )
    .unwrap();
    let cam = CameraConfig {
        rules: fx.rules,
        zones: fx.zones,
        lines: fx.lines,
        anchors: fx.anchors,
        calibration: fx.calibration,
        ..cfg.cameras[0].clone()
    };
    let checked = crate::config::Config { cameras: vec![cam.clone()], ..cfg.clone() };
    if let Err(e) = checked.validate() {
        panic!("{}: invalid zones/lines/rules: {e}", path.display());
    }
    let direct = fx.frames.iter().any(|r| !r.tracks.is_empty());
    let mut counts = Vec::new();
    let mut engine = RuleEngine::new(&cam);
    let mut tracker = Tracker::new(cam.tracker.clone())
        .with_weak_regions(crate::rules::weak_birth_regions(&(&cam).into()))
        .with_posture_classes(crate::rules::posture_classes(&(&cam).into()));
    let mut got = Vec::new();
    // Records the changes reported at `t`, checking their objects and detail as it goes.
    let check = |changes: Vec<crate::types::EventChange>, t: f64, got: &mut Vec<Expect>| {
        for c in changes {
            got.push(Expect {
                change: c.change,
                kind: c.kind,
                at: (c.at - t0()).as_seconds_f64(),
                reported: t,
                objects: None,
                detail: None,
            });
            if let Some(e) = fx.expect.get(got.len() - 1) {
                if let Some(n) = e.objects {
                    assert_eq!(
                        c.objects.len(),
                        n,
                        "{}: objects of change {}",
                        path.display(),
                        got.len()
                    );
                }
                for (k, v) in e.detail.iter().flatten() {
                    let actual = c.detail.as_ref().and_then(|d| d.get(k));
                    assert_eq!(
                        actual,
                        Some(v),
                        "{}: detail `{k}` of change {}",
                        path.display(),
                        got.len()
                    );
                }
            }
        }
    };
    let mut index = 0;
    for run in &fx.frames {
        let n = ((run.to - run.from) / run.step).round() as i64;
        for k in 0..=n {
            let t = run.from + k as f64 * run.step;
            index += 1;
            let frame = Frame {
                camera_id: Arc::from("cam"),
                index,
                width: 4,
                height: 4,
                rgb: Arc::from(vec![0u8; 48]),
                pts_ns: None,
                captured_at: t0() + Duration::seconds_f64(t),
                captured_instant: std::time::Instant::now(),
            };
            let objects = run
                .objects
                .iter()
                .map(|o| {
                    let b = o.bbox.unwrap_or([0.4, 0.4, 0.5, 0.7]);
                    Detection {
                        class_id: 0,
                        class: o.class.clone(),
                        score: o.score,
                        bbox: BBox { x1: b[0], y1: b[1], x2: b[2], y2: b[3] },
                        track_id: None,
                        keypoints: None,
                    }
                })
                .collect::<Vec<_>>();
            let at = frame.captured_at;
            let tracks = if direct {
                let f = if n > 0 { k as f32 / n as f32 } else { 0.0 };
                run.tracks.iter().map(|tr| tr.at(f, run.to - run.from, at, path)).collect()
            } else {
                tracker.update(&objects, at)
            };
            let detections = Detections { frame, objects, infer_ms: 0.0 };
            let changes = engine.process(&mut Tracks { detections, tracks, fallen: vec![] });
            check(changes, t, &mut got);
            for c in engine.take_counts() {
                counts.push(ExpectCount {
                    line: c.line,
                    class: c.class,
                    direction: c.direction,
                    at: (c.at - t0()).as_seconds_f64(),
                });
                assert_eq!(c.count, 1);
            }
        }
    }
    if let Some(t) = fx.finish_at {
        check(engine.finish(t0() + Duration::seconds_f64(t)), t, &mut got);
    }
    let expect: Vec<Expect> =
        fx.expect.into_iter().map(|e| Expect { objects: None, detail: None, ..e }).collect();
    assert_eq!(got, expect, "{}", path.display());
    assert_eq!(counts, fx.expect_counts, "{}: line counts", path.display());
}

#[test]
fn rule_fixtures() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rules");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            run(&p);
            n += 1;
        }
    }
    assert!(n >= 14, "expected rule fixtures in {}", dir.display());
}
