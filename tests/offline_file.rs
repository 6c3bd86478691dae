//! Complete offline analysis of a file: a file camera with `realtime = false` analyses every
//! frame at `detect_fps` of video time and drops none. The real `gridwatch run` binary, the
//! bundled model, real SQLite and HTTP, on the first 6 s of the PETS 2009 clip.

mod common;
use common::*;

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

/// Decodes `clip` and returns its frame count and frame rate (from the decoded caps).
fn frames_and_fps(clip: &std::path::Path) -> (u64, f64) {
    let p = gst::parse::launch(&format!(
        "filesrc location=\"{}\" ! decodebin ! appsink name=s sync=false",
        clip.display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let sink = p.by_name("s").unwrap().downcast::<gstreamer_app::AppSink>().unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let (mut n, mut fps) = (0u64, 0.0);
    while let Ok(sample) = sink.pull_sample() {
        n += 1;
        let s = sample.caps().unwrap().structure(0).unwrap().to_owned();
        let f = s.get::<gst::Fraction>("framerate").unwrap();
        fps = f.numer() as f64 / f.denom() as f64;
    }
    p.set_state(gst::State::Null).unwrap();
    (n, fps)
}

/// Frames analysed at `detect_fps` of video time: one per tick (0, 1/detect_fps, …) up to the
/// last frame's time (`(n - 1) / fps`); every frame when detect_fps is 0 or at least fps.
fn expected(n: u64, fps: f64, detect_fps: f64) -> u64 {
    if detect_fps == 0.0 || detect_fps >= fps {
        return n;
    }
    ((n - 1) as f64 / fps * detect_fps + 1e-9).floor() as u64 + 1
}

#[test]
fn unpaced_file_analyses_every_frame_at_detect_fps() {
    if !pets_mp4().exists() || gst::init().is_err() {
        eprintln!("SKIP: test-videos/pets09-s2l1.mp4 or GStreamer missing (run `make setup`)");
        return;
    }
    // The first 6 s of the real clip, cut without re-encoding (it starts at a keyframe and
    // has no B-frames).
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("pets-6s.mp4");
    run_to_eos(&format!(
        "filesrc location=\"{}\" ! qtdemux ! h264parse ! identity eos-after=61 ! mp4mux \
         ! filesink location=\"{}\"",
        pets_mp4().display(),
        clip.display()
    ));
    let (n, fps) = frames_and_fps(&clip);
    assert!(n >= 50 && fps > 0.0, "{n} frames at {fps} fps");

    // Two unpaced cameras on one inference worker: each waits for analysis (its own thread
    // only), at 5 and 3 frames per second of video time.
    let cams = format!(
        r#"
[[cameras]]
id = "at5"
url = "{clip}"
realtime = false
detect_fps = 5
models = ["coco"]

[[cameras]]
id = "at3"
url = "{clip}"
realtime = false
detect_fps = 3
models = ["coco"]
"#,
        clip = clip.display(),
    );
    let mut a = Appliance::start(&cams);
    for (id, detect_fps) in [("at5", 5.0), ("at3", 3.0)] {
        let want = expected(n, fps, detect_fps);
        let cam = wait_for(120, &format!("{id} to finish its file\n{}", a.logs()), || {
            let c = a.camera(id);
            let ended = c["state"] == "offline"
                && c["last_error"].as_str().is_some_and(|e| e.contains("end of stream"));
            (ended && c["frames_analysed"].as_u64() >= c["frames_received"].as_u64()).then_some(c)
        });
        assert_eq!(cam["frames_analysed"].as_u64(), Some(want), "{id} ({n} frames at {fps} fps)");
        assert_eq!(cam["frames_received"].as_u64(), Some(want), "{id}: {cam}");
        assert_eq!(cam["frames_dropped"].as_u64(), Some(0), "{id}: {cam}");
        // An unpaced file is not recorded (its frame times are video times, not wall-clock).
        assert_eq!(cam["records"], false, "{id}: {cam}");
    }
    // Nothing is analysed after the end.
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(a.camera("at5")["frames_analysed"].as_u64(), Some(expected(n, fps, 5.0)));
    assert_eq!(a.stop(), Some(0), "{}", a.logs());
}

#[test]
fn expected_counts_follow_video_time() {
    // 59 frames at 10 fps end at 5.8 s: ticks of 1/7 s up to 5.8 s are 0 … 40/7 (41 frames).
    assert_eq!(expected(59, 10.0, 7.0), 41);
    assert_eq!(expected(60, 10.0, 7.0), 42);
    assert_eq!(expected(60, 10.0, 5.0), 30);
    assert_eq!(expected(60, 10.0, 0.0), 60);
    assert_eq!(expected(60, 10.0, 25.0), 60);
}
