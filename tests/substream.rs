//! Cameras with a detect sub-stream (`detect_url`): the real binary, a real two-stream RTSP
//! camera (`gridwatch rtsp-serve --sub-width`, PETS09-S2L1 at 768×576 and 384×288 showing
//! the same moment), the real model. Detection runs on the sub-stream, the main stream is
//! recorded as is, each stream keeps its own health, and the boxes found on the sub-stream
//! frame the same objects in the main stream's recorded pictures.

mod common;
use common::*;

use gstreamer as gst;
use gstreamer::prelude::*;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

const SUB_WIDTH: u32 = 384;

fn at(v: &serde_json::Value) -> OffsetDateTime {
    OffsetDateTime::parse(v.as_str().unwrap_or_default(), &Rfc3339).expect("an RFC 3339 time")
}

/// A grey picture.
#[derive(Clone)]
struct Grey {
    w: u32,
    h: u32,
    px: Vec<u8>,
}

impl Grey {
    fn from_image(img: image::DynamicImage) -> Grey {
        let g = img.to_luma8();
        Grey { w: g.width(), h: g.height(), px: g.into_raw() }
    }

    fn resized(&self, w: u32, h: u32) -> Grey {
        let img = image::GrayImage::from_raw(self.w, self.h, self.px.clone()).unwrap();
        let r = image::imageops::resize(&img, w, h, image::imageops::FilterType::Triangle);
        Grey { w, h, px: r.into_raw() }
    }

    /// The pixels of the normalised box `[x1, y1, x2, y2]`, shrunk by `inset` of its size on
    /// every side (keeps the drawn box outline out), resampled to `n` × `n`.
    fn crop(&self, b: [f64; 4], inset: f64, n: u32) -> Grey {
        let (bw, bh) = (b[2] - b[0], b[3] - b[1]);
        let px = |v: f64, size: u32| ((v * f64::from(size)).round().max(0.0) as u32).min(size - 1);
        let (x1, x2) = (px(b[0] + inset * bw, self.w), px(b[2] - inset * bw, self.w));
        let (y1, y2) = (px(b[1] + inset * bh, self.h), px(b[3] - inset * bh, self.h));
        let img = image::GrayImage::from_raw(self.w, self.h, self.px.clone()).unwrap();
        let c = image::imageops::crop_imm(&img, x1, y1, (x2 - x1).max(1), (y2 - y1).max(1));
        let r = image::imageops::resize(&c.to_image(), n, n, image::imageops::FilterType::Triangle);
        Grey { w: n, h: n, px: r.into_raw() }
    }
}

/// Normalised cross-correlation of two pictures of the same size (1 = the same up to
/// brightness and contrast).
fn ncc(a: &Grey, b: &Grey) -> f64 {
    assert_eq!((a.w, a.h), (b.w, b.h));
    let n = a.px.len() as f64;
    let ma = a.px.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let mb = b.px.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.px.iter().zip(&b.px) {
        let (x, y) = (f64::from(x) - ma, f64::from(y) - mb);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    ab / (aa * bb).sqrt().max(1e-9)
}

/// Every picture of a recorded segment (fragmented MP4), decoded in grey.
fn decode_segment(mp4: &std::path::Path) -> Vec<Grey> {
    gst::init().unwrap();
    let p = gst::parse::launch(&format!(
        "filesrc location=\"{}\" ! qtdemux ! h264parse ! avdec_h264 ! videoconvert \
         ! video/x-raw,format=GRAY8 ! appsink name=sink sync=false",
        mp4.display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let sink = p.by_name("sink").unwrap().downcast::<gstreamer_app::AppSink>().unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let mut out = Vec::new();
    while let Some(s) = sink.try_pull_sample(gst::ClockTime::from_seconds(10)) {
        let caps = s.caps().unwrap().structure(0).unwrap().to_owned();
        let (w, h) = (caps.get::<i32>("width").unwrap(), caps.get::<i32>("height").unwrap());
        let map = s.buffer().unwrap().map_readable().unwrap();
        let stride = map.len() / h as usize;
        let mut px = Vec::with_capacity((w * h) as usize);
        for y in 0..h as usize {
            px.extend_from_slice(&map[y * stride..y * stride + w as usize]);
        }
        out.push(Grey { w: w as u32, h: h as u32, px });
    }
    p.set_state(gst::State::Null).unwrap();
    out
}

#[test]
fn detect_on_the_sub_stream_record_the_main_stream_and_report_each_stream() {
    let mp4 = pets_mp4();
    if !mp4.exists() {
        eprintln!("SKIP: {} missing (run `make setup`)", mp4.display());
        return;
    }
    let port = free_port();
    let closed = free_port(); // nothing listens there
    let dir = tempfile::tempdir().unwrap();
    let (mp4_s, port_s, sub_w) =
        (mp4.display().to_string(), port.to_string(), SUB_WIDTH.to_string());
    let _server = spawn_quiet(
        &[
            "rtsp-serve",
            "--video",
            &mp4_s,
            "--port",
            &port_s,
            "--path",
            "/main",
            "--sub-width",
            &sub_w,
            "--sub-path",
            "/sub",
        ],
        &dir.path().join("rtsp.log"),
    );
    let main = format!("rtsp://127.0.0.1:{port}/main");
    let sub = format!("rtsp://127.0.0.1:{port}/sub");
    let gone = |path: &str| format!("rtsp://127.0.0.1:{closed}/{path}");
    let camera = |id: &str, url: &str, detect_url: &str| {
        format!(
            r#"
[[cameras]]
id = "{id}"
url = "{url}"
codec = "h264"
detect_url = "{detect_url}"
detect_width = {SUB_WIDTH}
detect_fps = 5
models = ["coco"]
stall_timeout_secs = 5.0
reconnect_min_secs = 0.5
reconnect_max_secs = 2.0
[cameras.record]
segment_secs = 4
[[cameras.rules]]
kind = "presence"
classes = ["person"]
min_secs = 1.0
"#
        )
    };
    let cams = [
        camera("both", &main, &sub),
        // Bad input: the sub-stream is unreachable (recording goes on) …
        camera("no-sub", &main, &gone("sub")),
        // … and the main stream is unreachable (detection goes on).
        camera("no-main", &gone("main"), &sub),
    ]
    .concat();
    let a = Appliance::start(&cams);

    // Each stream of the good camera online, at its own size.
    let c = wait_for(60, &format!("both streams online\n{}", a.logs()), || {
        let c = a.camera("both");
        let s = &c["streams"];
        (s["main"]["state"] == "online"
            && s["detect"]["state"] == "online"
            && s["main"]["width"].is_u64())
        .then_some(c)
    });
    let s = &c["streams"];
    assert_eq!(s["shared"], false, "{c}");
    assert_eq!((s["main"]["width"].as_u64(), s["main"]["height"].as_u64()), (Some(768), Some(576)));
    assert_eq!(
        (s["detect"]["width"].as_u64(), s["detect"]["height"].as_u64()),
        (Some(384), Some(288))
    );
    assert_eq!(c["state"], "online", "the camera's state is its detect stream's: {c}");

    // A person found on the sub-stream.
    let ev = wait_for(90, &format!("a presence event on `both`\n{}", a.logs()), || {
        let v = a.get_json("/api/v1/events?camera=both&kind=presence");
        v["events"].as_array()?.first().cloned()
    });
    let id = ev["id"].as_str().unwrap();
    let (st, _, jpeg) =
        a.get(&format!("/api/v1/events/{id}/snapshot.jpg?unmasked=1"), Some(TOKEN)).unwrap();
    assert_eq!(st, 200);
    let snap = Grey::from_image(image::load_from_memory(&jpeg).unwrap());
    assert_eq!((snap.w, snap.h), (384, 288), "the snapshot is the analysed sub-stream frame");
    let boxes: Vec<[f64; 4]> = ev["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            let b = &o["box"];
            ["x1", "y1", "x2", "y2"].map(|k| b[k].as_f64().unwrap())
        })
        .collect();
    assert!(!boxes.is_empty(), "{ev}");

    // The main stream's recording around the event: H.264 as sent, at the main size.
    let t = at(&ev["started_at"]);
    let segs = wait_for(60, "recorded main-stream segments after the event", || {
        let v = a.get_json("/api/v1/recordings?camera=both");
        let s: Vec<_> = v["recordings"].as_array()?.clone();
        s.iter().any(|s| at(&s["start"]) > t + time::Duration::seconds(2)).then_some(s)
    });
    assert!(segs.iter().all(|s| s["codec"] == "h264"), "{segs:?}");
    let mut frames = Vec::new();
    for seg in segs.iter().filter(|s| {
        at(&s["end"]) > t - time::Duration::seconds(3)
            && at(&s["start"]) < t + time::Duration::seconds(3)
    }) {
        let (st, _, body) = a
            .get(&format!("/api/v1/recordings/{}/segment.mp4?unmasked=1", seg["id"]), Some(TOKEN))
            .unwrap();
        assert_eq!(st, 200);
        let f = dir.path().join(format!("seg-{}.mp4", seg["id"]));
        std::fs::write(&f, body).unwrap();
        frames.extend(decode_segment(&f));
    }
    assert!(!frames.is_empty(), "no recorded picture near the event: {segs:?}");
    assert!(frames.iter().all(|f| (f.w, f.h) == (768, 576)), "main stream recorded as is");

    // The recorded picture of the same moment: the one most like the snapshot, scaled down.
    let (best, whole) = frames
        .iter()
        .map(|f| (f, ncc(&f.resized(snap.w, snap.h), &snap)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap();
    eprintln!("whole picture: NCC {whole:.3}");
    assert!(whole > 0.9, "the main and sub-streams show the same view: NCC {whole:.3}");
    // Each box, in normalised coordinates, frames the same pixels in both pictures: checked
    // against the same box moved by its own width or height (left, right, up, down, where it
    // stays in the picture), which must match clearly worse on average. (A person walking may
    // have moved a little between the two pictures, so the level is checked on the median.)
    let mut in_place = Vec::new();
    for b in &boxes {
        let sub_crop = snap.crop(*b, 0.1, 24);
        let here = ncc(&best.crop(*b, 0.1, 24), &sub_crop);
        let (w, h) = (b[2] - b[0], b[3] - b[1]);
        let moved: Vec<f64> = [(-w, 0.0), (w, 0.0), (0.0, -h), (0.0, h)]
            .iter()
            .map(|(dx, dy)| [b[0] + dx, b[1] + dy, b[2] + dx, b[3] + dy])
            .filter(|m| m[0] >= 0.0 && m[1] >= 0.0 && m[2] <= 1.0 && m[3] <= 1.0)
            .map(|m| ncc(&best.crop(m, 0.1, 24), &sub_crop))
            .collect();
        let off = moved.iter().sum::<f64>() / moved.len().max(1) as f64;
        eprintln!("box {b:?}: NCC {here:.3} in place, {moved:.3?} moved");
        assert!(
            !moved.is_empty() && here > off + 0.25,
            "box {b:?}: NCC {here:.3}, moved {moved:?}"
        );
        in_place.push(here);
    }
    in_place.sort_by(f64::total_cmp);
    let median = in_place[in_place.len() / 2];
    assert!(median > 0.85, "median NCC of the boxes in place {median:.3}: {in_place:?}");

    // Unreachable sub-stream: the main stream is recorded, the detect stream is offline.
    let c = wait_for(60, &format!("no-sub: recording, detect offline\n{}", a.logs()), || {
        let c = a.camera("no-sub");
        let s = &c["streams"];
        let recorded = a.get_json("/api/v1/recordings?camera=no-sub")["recordings"]
            .as_array()
            .is_some_and(|r| !r.is_empty());
        (recorded && s["main"]["state"] == "online" && s["detect"]["state"] == "offline")
            .then_some(c)
    });
    assert!(c["streams"]["detect"]["last_error"].is_string(), "{c}");
    assert_eq!(c["state"], "offline", "{c}");
    assert_eq!(c["streams"]["main"]["last_error"], serde_json::Value::Null, "{c}");

    // Unreachable main stream: detection goes on, the main stream is offline.
    let c = wait_for(60, &format!("no-main: analysed, main offline\n{}", a.logs()), || {
        let c = a.camera("no-main");
        let s = &c["streams"];
        (c["frames_analysed"].as_u64()? > 10 && s["main"]["state"] == "offline").then_some(c)
    });
    assert_eq!(
        (c["state"].as_str(), c["streams"]["detect"]["state"].as_str()),
        (Some("online"), Some("online")),
        "{c}"
    );
    assert!(c["streams"]["main"]["last_error"].is_string(), "{c}");
    assert!(c["streams"]["main"]["reconnects"].as_u64().unwrap() >= 1, "{c}");
    let none = a.get_json("/api/v1/recordings?camera=no-main");
    assert_eq!(none["recordings"].as_array().map(Vec::len), Some(0), "{none}");

    // Health and metrics count the streams.
    let h = a.get_json("/api/v1/health");
    let streams = &h["cameras"]["streams"];
    assert_eq!(
        (streams["main"]["online"].as_u64(), streams["main"]["total"].as_u64()),
        (Some(2), Some(3)),
        "{h}"
    );
    assert_eq!(
        (streams["detect"]["online"].as_u64(), streams["detect"]["total"].as_u64()),
        (Some(2), Some(3)),
        "{h}"
    );
    let (_, _, m) = a.get("/metrics", Some(TOKEN)).unwrap();
    let m = String::from_utf8(m).unwrap();
    for line in [
        "gridwatch_camera_stream_online{camera=\"both\",stream=\"main\"} 1",
        "gridwatch_camera_stream_online{camera=\"no-sub\",stream=\"detect\"} 0",
        "gridwatch_camera_stream_online{camera=\"no-main\",stream=\"main\"} 0",
        "gridwatch_camera_stream_online{camera=\"no-main\",stream=\"detect\"} 1",
    ] {
        assert!(m.contains(line), "{line} not in\n{m}");
    }
}

/// `count` pictures of `video` scaled to `width` (aspect kept), encoded with x264 into `out`.
fn scaled_copy(video: &std::path::Path, width: u32, count: u32, out: &std::path::Path) {
    gst::init().unwrap();
    let p = gst::parse::launch(&format!(
        "filesrc location=\"{}\" ! decodebin ! videoscale ! video/x-raw,width={width},\
         pixel-aspect-ratio=1/1 ! identity eos-after={count} ! videoconvert ! x264enc \
         key-int-max=14 speed-preset=ultrafast ! h264parse ! mp4mux ! filesink location=\"{}\"",
        video.display(),
        out.display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let msg = p.bus().unwrap().timed_pop_filtered(
        gst::ClockTime::from_seconds(120),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    p.set_state(gst::State::Null).unwrap();
    assert_eq!(msg.map(|m| m.type_()), Some(gst::MessageType::Eos), "encoding {}", out.display());
}

#[test]
fn a_file_camera_with_a_detect_file_records_the_main_file_paced_and_detects_on_the_other() {
    let mp4 = pets_mp4();
    if !mp4.exists() {
        eprintln!("SKIP: {} missing (run `make setup`)", mp4.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("sub.mp4");
    scaled_copy(&mp4, SUB_WIDTH, 200, &sub);
    let cams = format!(
        r#"
[[cameras]]
id = "files"
url = "{main}"
detect_url = "{sub}"
loop = true
detect_width = {SUB_WIDTH}
detect_fps = 5
models = ["coco"]
[cameras.record]
segment_secs = 2
"#,
        main = mp4.display(),
        sub = sub.display()
    );
    let a = Appliance::start(&cams);
    let c = wait_for(60, &format!("both files online\n{}", a.logs()), || {
        let c = a.camera("files");
        let s = &c["streams"];
        (s["main"]["state"] == "online"
            && s["detect"]["state"] == "online"
            && s["main"]["width"].is_u64()
            && c["frames_analysed"].as_u64()? > 5)
            .then_some(c)
    });
    let s = &c["streams"];
    assert_eq!(
        (s["main"]["width"].as_u64(), s["detect"]["width"].as_u64()),
        (Some(768), Some(384))
    );
    // Paced like a live camera (PETS09 is 7 frames a second), not read as fast as it goes.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let fps = a.camera("files")["streams"]["main"]["fps"].as_f64().unwrap();
    assert!((4.0..=12.0).contains(&fps), "main stream at {fps} frames a second");
    let segs = wait_for(60, &format!("recorded segments\n{}", a.logs()), || {
        let v = a.get_json("/api/v1/recordings?camera=files");
        let s = v["recordings"].as_array()?.clone();
        (!s.is_empty()).then_some(s)
    });
    assert_eq!(segs[0]["codec"], "h264");
    let (st, _, body) = a
        .get(&format!("/api/v1/recordings/{}/segment.mp4?unmasked=1", segs[0]["id"]), Some(TOKEN))
        .unwrap();
    assert_eq!(st, 200);
    let f = dir.path().join("seg.mp4");
    std::fs::write(&f, body).unwrap();
    let frames = decode_segment(&f);
    assert!(!frames.is_empty() && frames.iter().all(|g| (g.w, g.h) == (768, 576)));
}
