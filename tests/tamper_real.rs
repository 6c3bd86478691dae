//! `camera_tamper` on real fixed-camera footage (../shared/media, test-only): analysed at 5
//! frames/s of video time with the default rule, no event may be raised on normal scenes
//! (traffic, people, lighting). Prints the events of every clip, including the ones not
//! asserted (the night clip, where a man walks up to the lens at the end). Skips with a
//! message when ../shared/media is absent.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use gridwatch::analytics::{analyse_video, CameraAnalytics};
use gridwatch::types::Change;
use time::OffsetDateTime;

const RULES: &str =
    "box_id='b'\ndata_dir='/tmp'\n[models]\n[[cameras]]\nid='cam'\nurl='x.mp4'\nmodels=[]\n\
                     enabled=false\n[[cameras.rules]]\nkind='camera_tamper'\n";

/// (cause, start, raised) of every started event, through the shipped frame path.
fn run(video: &Path) -> Vec<(String, f64, f64)> {
    let cfg = gridwatch::config::Config::parse(RULES, Path::new("/")).expect("config");
    let camera = CameraAnalytics::new(&cfg.cameras[0]);
    let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("t0");
    let mut out = Vec::new();
    analyse_video(video, 640, 0.2, t0, &camera, None, |t, a| {
        for c in a.changes.into_iter().filter(|c| c.change == Change::Started) {
            let cause = c.objects.first().map(|o| o.class.clone()).unwrap_or_default();
            out.push((cause, (c.at - t0).as_seconds_f64(), t));
        }
        ControlFlow::Continue(())
    })
    .unwrap_or_else(|e| panic!("{e:#}"));
    out
}

#[test]
fn no_tamper_on_normal_footage() {
    let media = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/media");
    if !media.is_dir() {
        eprintln!("skipping: {} not found (test-only footage)", media.display());
        return;
    }
    let clips = [
        ("traffic/traffic-highway-2lanes-toward-camera-240p.mp4", true),
        ("traffic/traffic-parkinglot-overhead-432p.mp4", true),
        ("people/people-indoor-one-by-one-standing-432p.mp4", true),
        ("negatives/neg-night-city-billboards-bus-lights-240p.mp4", true),
        ("fire/fire-dollhouse-outdoor-flames-smoke-240p.mp4", true),
        ("people/people-night-lowlight-pedestrians-720p.mp4", false),
        ("traffic/traffic-motorway-cctv-fog-trucks-288p.mp4", true),
        ("negatives/neg-sunset-sun-on-horizon-timelapse-720p.mp4", true),
    ];
    let mut failures = Vec::new();
    for (clip, assert_none) in clips {
        let events = run(&media.join(clip));
        println!("camera_tamper on {clip}: {events:?}");
        if assert_none && !events.is_empty() {
            failures.push(format!("{clip}: {events:?}"));
        }
    }
    assert!(failures.is_empty(), "camera_tamper false alarms: {failures:#?}");
}
