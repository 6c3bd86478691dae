//! Motion-gated detection (`[cameras.motion_gate]`, src/analytics/motion.rs) on real video,
//! through the frame path (`analytics::analyse_video`) with the bundled detector; the
//! detector's runs are counted (`Detectors::calls`). A still scene (the first PETS 2009 frame
//! held for 10 s and encoded with x264, so the decoder gives real compressed frames; one
//! encoder thread, as x264's frame threads give different bytes from run to run under load) runs the
//! detector on few frames and keeps its people tracked meanwhile; the PETS clip itself (people
//! walking) runs it on every frame.

mod common;
use common::*;

use std::ops::ControlFlow;

use gridwatch::analytics::{analyse_video, CameraAnalytics, Detectors};
use gridwatch::config::Config;
use gridwatch::infer::detector::DetectorOptions;
use gridwatch::types::TrackState;
use gstreamer as gst;
use gstreamer::prelude::*;

/// Runs a gst-launch description to its end of stream.
fn run_to_eos(description: &str) {
    let p = gst::parse::launch(description).unwrap().downcast::<gst::Pipeline>().unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let bus = p.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(60),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("no end of stream within 60 s");
    p.set_state(gst::State::Null).unwrap();
    assert!(matches!(msg.view(), gst::MessageView::Eos(_)), "{description}: {msg:?}");
}

/// Analyses the first `secs` of `clip` at 10 fps with the gate on or off: analysed frames,
/// detector runs, and the confirmed tracks on each frame.
fn analyse(clip: &std::path::Path, gate: bool, secs: f64) -> (u64, u64, Vec<usize>) {
    let cfg = Config::parse(
        &format!(
            "box_id='b'\ndata_dir='/tmp'\n[models]\nm='{}/models/nanodet-g-coco-416/model.toml'\n\
             [[cameras]]\nid='c'\nurl='{}'\nrealtime=false\ndetect_fps=10\ndetect_width=768\n\
             models=['m']\n[cameras.motion_gate]\nenabled={gate}\n",
            repo().display(),
            clip.display()
        ),
        std::path::Path::new("/"),
    )
    .unwrap();
    let opts = DetectorOptions { intra_op_threads: 2, ..DetectorOptions::default() };
    let mut detectors = Detectors::for_config(&cfg, &opts).unwrap();
    let camera = CameraAnalytics::new(&cfg.cameras[0]);
    let t0 = time::OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
    let (mut frames, mut tracked) = (0u64, Vec::new());
    analyse_video(clip, 768, 0.1, t0, &camera, Some(&mut detectors), |t, a| {
        // Every analysed frame counts, the one past `secs` too (the models ran on it).
        frames += 1;
        tracked.push(a.tracks.tracks.iter().filter(|t| t.state == TrackState::Tracked).count());
        if t > secs {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    })
    .unwrap();
    (frames, detectors.calls(), tracked)
}

#[test]
fn gate_skips_the_detector_on_a_still_scene_and_runs_it_when_people_move() {
    if !pets_mp4().exists() || gst::init().is_err() {
        eprintln!("SKIP: test-videos/pets09-s2l1.mp4 or GStreamer missing (run `make setup`)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let still = dir.path().join("pets-still.mp4");
    run_to_eos(&format!(
        "filesrc location=\"{}\" ! decodebin ! videoconvert ! video/x-raw,format=I420 \
         ! imagefreeze num-buffers=100 ! video/x-raw,framerate=10/1 \
         ! x264enc speed-preset=ultrafast key-int-max=20 bitrate=800 threads=1 ! h264parse ! mp4mux \
         ! filesink location=\"{}\"",
        pets_mp4().display(),
        still.display()
    ));

    // Still: without the gate the detector runs on all 100 frames. With it, on the first
    // (no background yet), on every frame of the 2 s hold after it, then once a second:
    // 21 + 8 = 29; the people of the frame stay tracked all along (they coast).
    let (frames, calls_off, tracked_off) = analyse(&still, false, 100.0);
    assert_eq!(frames, 100);
    assert_eq!(calls_off, frames, "ungated: one detector run per frame");
    let (frames_on, calls_on, tracked_on) = analyse(&still, true, 100.0);
    assert_eq!(frames_on, frames);
    assert!(calls_on <= 35, "gated: {calls_on} detector runs on {frames} still frames");
    assert!(calls_on >= 21, "gated: {calls_on} runs; the first 2 s must all run");
    let people = tracked_off[10..].iter().copied().min().unwrap();
    assert!(people >= 3, "the first PETS frame shows several people: {tracked_off:?}");
    assert_eq!(tracked_on[10..], tracked_off[10..], "gated tracks coast on the held detections");

    // Moving: people walk through the whole clip, so the detector runs on every frame.
    let (frames, calls, _) = analyse(&pets_mp4(), true, 10.0);
    assert!(frames >= 100, "{frames}");
    assert_eq!(calls, frames, "gated, people moving: {calls} runs on {frames} frames");
}
