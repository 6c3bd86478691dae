//! Replays rule fixtures (tests/fixtures/rules/*.toml): runs of frames with detections in
//! simulated time, and the incident changes the rules must report, in order.

use std::sync::Arc;

use serde::Deserialize;
use time::{Duration, OffsetDateTime};

use super::RuleEngine;
use crate::config::{CameraConfig, RuleConfig};
use crate::types::{BBox, Change, Detection, Detections, Frame, Tracks};
use crate::track::Tracker;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fixture {
    #[allow(dead_code)]
    description: String,
    rules: Vec<RuleConfig>,
    frames: Vec<FrameRun>,
    #[serde(default)]
    expect: Vec<Expect>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FrameRun {
    from: f64,
    to: f64,
    step: f64,
    #[serde(default)]
    objects: Vec<Obj>,
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
    let cam = CameraConfig { rules: fx.rules, ..cfg.cameras[0].clone() };
    let mut engine = RuleEngine::new(&cam);
    let mut tracker = Tracker::new(cam.tracker.clone());
    let mut got = Vec::new();
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
                    }
                })
                .collect::<Vec<_>>();
            let at = frame.captured_at;
            let tracks = tracker.update(&objects, at);
            let detections = Detections { frame, objects, infer_ms: 0.0 };
            for c in engine.process(&Tracks { detections, tracks }) {
                got.push(Expect {
                    change: c.change,
                    kind: c.kind,
                    at: (c.at - t0()).as_seconds_f64(),
                    reported: t,
                    objects: None,
                });
                if let Some(e) = fx.expect.get(got.len() - 1) {
                    if let Some(n) = e.objects {
                        assert_eq!(c.objects.len(), n, "{}: objects of change {}", path.display(), got.len());
                    }
                }
            }
        }
    }
    let expect: Vec<Expect> = fx.expect.into_iter().map(|e| Expect { objects: None, ..e }).collect();
    assert_eq!(got, expect, "{}", path.display());
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
    assert!(n >= 3, "expected rule fixtures in {}", dir.display());
}
