//! Event clips and exports from real segments: the PETS video is recorded by the appliance's
//! segment pipeline (`splitmuxsink` + fragmented `mp4mux`, 4 s segments) into a temporary
//! data dir, indexed with wall times (t0 + running time), then remuxed by
//! `record::clip::{build_mp4, ensure_event_clip}` and checked by demuxing and decoding the
//! result with GStreamer. Also fetches a clip through the real HTTP API.
//!
//! `cargo test --test record_clip -- --nocapture` prints the measured figures.

use std::path::{Path, PathBuf};
use std::time::Instant;

use gridwatch::config::RecordConfig;
use gridwatch::record::clip::{build_mp4, ensure_event_clip, ClipError, ClipState};
use gridwatch::store::recordings::NewSegment;
use gridwatch::store::Store;
use gridwatch::types::{Change, Event, EventChange, Severity};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use time::{Duration, OffsetDateTime};

const CAM: &str = "pets";
const FPS: f64 = 10.0;
const SEGMENT_SECS: f64 = 4.0;

fn video() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("test-videos/pets09-s2l1.mp4");
    if p.is_file() {
        Some(p)
    } else {
        eprintln!("skipping: {} not found (run `make setup`)", p.display());
        None
    }
}

fn t0() -> OffsetDateTime {
    time::macros::datetime!(2026-05-01 08:00 UTC)
}

fn secs(s: f64) -> Duration {
    Duration::seconds_f64(s)
}

struct Recorded {
    dir: tempfile::TempDir,
    store: Store,
    segments: Vec<(i64, f64, f64)>,
}

/// Records `video` into 4 s fragmented-MP4 segments exactly like a camera's record branch
/// and indexes them with start = t0 + running time at the segment's opening.
fn record(video: &Path) -> Recorded {
    record_with(video, "parsebin ! video/x-h264 ! h264parse", "h264")
}

/// `record` with another stream: `head` turns the file into parsed `codec` access units.
fn record_with(video: &Path, head: &str, codec: &str) -> Recorded {
    gridwatch::gst::init().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let rel_dir = format!("recordings/{CAM}/20260501");
    let abs_dir = dir.path().join(&rel_dir);
    std::fs::create_dir_all(&abs_dir).unwrap();
    let desc = format!(
        "filesrc name=src ! {head} ! splitmuxsink name=mux async-finalize=true \
         muxer-factory=mp4mux muxer-properties=properties,fragment-duration=1000 sink-factory=filesink \
         sink-properties=properties,buffer-mode=2 max-size-time={}",
        (SEGMENT_SECS * 1e9) as u64
    );
    let pipeline = gst::parse::launch(&desc).unwrap().downcast::<gst::Pipeline>().unwrap();
    pipeline.by_name("src").unwrap().set_property("location", video.to_str().unwrap());
    pipeline
        .by_name("mux")
        .unwrap()
        .set_property("location", abs_dir.join("seg-%05d.mp4").to_str().unwrap());
    let bus = pipeline.bus().unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut opened: Vec<(String, u64)> = Vec::new();
    let mut closed: Vec<(String, u64)> = Vec::new();
    for msg in bus.iter_timed(gst::ClockTime::from_seconds(120)) {
        match msg.view() {
            gst::MessageView::Element(e) => {
                let Some(s) = e.structure() else { continue };
                let loc = s.get::<String>("location").unwrap_or_default();
                let rt = s.get::<gst::ClockTime>("running-time").map(|t| t.nseconds()).unwrap_or(0);
                match s.name().as_str() {
                    "splitmuxsink-fragment-opened" => opened.push((loc, rt)),
                    "splitmuxsink-fragment-closed" => closed.push((loc, rt)),
                    _ => {}
                }
            }
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => {
                panic!("recording failed: {} ({:?})", e.error(), e.debug())
            }
            _ => {}
        }
    }
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(closed.len() >= 3, "expected ≥ 3 segments of 4 s, got {}", closed.len());
    let mut segments = Vec::new();
    for (loc, _) in &closed {
        let start_rt =
            opened.iter().find(|(l, _)| l == loc).map(|(_, rt)| *rt).expect("opened message");
        let path = PathBuf::from(loc);
        let rel = format!("{rel_dir}/{}", path.file_name().unwrap().to_str().unwrap());
        // The closing message comes when the file is finalised (asynchronously, and this
        // pipeline runs faster than real time): the segment's end is its first frame plus
        // its demuxed duration.
        let s = start_rt as f64 / 1e9;
        let d = probe_codec(&path, codec).duration;
        let e = s + d;
        let end_rt = start_rt + (d * 1e9) as u64;
        let id = store
            .insert_segment(&NewSegment {
                camera_id: CAM.into(),
                path: rel,
                start: t0() + secs(s),
                end: t0() + secs(e),
                start_pts_ns: Some(start_rt as i64),
                end_pts_ns: Some(end_rt as i64),
                bytes: std::fs::metadata(&path).unwrap().len(),
                codec: codec.into(),
                frames: None,
                recovered: false,
            })
            .unwrap();
        segments.push((id, s, e));
    }
    // With async-finalize the closing messages can come out of order (a short last segment
    // finalises before the one before it).
    segments.sort_by(|a, b| a.1.total_cmp(&b.1));
    Recorded { dir, store, segments }
}

/// What demuxing a clip shows.
#[derive(Debug)]
struct Probe {
    frames: u64,
    /// First PTS to the end of the last sample (s).
    duration: f64,
    first_is_key: bool,
    keyframes: u64,
    /// Top-level MP4 boxes in file order.
    boxes: Vec<String>,
}

fn probe(path: &Path) -> Probe {
    probe_codec(path, "h264")
}

fn probe_codec(path: &Path, codec: &str) -> Probe {
    let pipeline = gst::parse::launch(&format!(
        "filesrc name=src ! qtdemux ! {codec}parse ! appsink name=sink sync=false"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    pipeline.by_name("src").unwrap().set_property("location", path.to_str().unwrap());
    let sink = pipeline.by_name("sink").unwrap().downcast::<gst_app::AppSink>().unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let (mut frames, mut keyframes, mut first_pts, mut end, mut first_is_key) =
        (0u64, 0u64, None::<u64>, 0u64, false);
    while let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_seconds(10)) {
        let buf = sample.buffer().unwrap();
        let pts = buf.pts().unwrap().nseconds();
        let key = !buf.flags().contains(gst::BufferFlags::DELTA_UNIT);
        if frames == 0 {
            first_is_key = key;
        }
        // With B-frames the smallest PTS is not the first sample's.
        first_pts = Some(first_pts.map_or(pts, |f| f.min(pts)));
        frames += 1;
        keyframes += key as u64;
        end = end.max(pts + buf.duration().map(|d| d.nseconds()).unwrap_or(0));
    }
    assert!(sink.is_eos(), "demuxing {} stalled", path.display());
    pipeline.set_state(gst::State::Null).unwrap();
    let duration = (end - first_pts.unwrap_or(0)) as f64 / 1e9;
    Probe { frames, duration, first_is_key, keyframes, boxes: top_level_boxes(path) }
}

fn top_level_boxes(path: &Path) -> Vec<String> {
    let data = std::fs::read(path).unwrap();
    let mut out = Vec::new();
    let mut i = 0usize;
    while i + 8 <= data.len() {
        let mut size = u32::from_be_bytes(data[i..i + 4].try_into().unwrap()) as u64;
        let kind = String::from_utf8_lossy(&data[i + 4..i + 8]).to_string();
        if size == 1 {
            size = u64::from_be_bytes(data[i + 8..i + 16].try_into().unwrap());
        } else if size == 0 {
            size = (data.len() - i) as u64;
        }
        if size < 8 {
            out.push("<bad size>".into());
            return out;
        }
        out.push(kind);
        i += size as usize;
    }
    if i != data.len() {
        out.push("<torn>".into()); // the last box runs past the end of the file
    }
    out
}

/// Decodes the whole file; returns the decoded frame count (panics on a decoding error).
fn decode(path: &Path) -> u64 {
    let pipeline = gst::parse::launch("filesrc name=src ! decodebin ! videoconvert ! video/x-raw,format=I420 ! appsink name=sink sync=false")
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    pipeline.by_name("src").unwrap().set_property("location", path.to_str().unwrap());
    let sink = pipeline.by_name("sink").unwrap().downcast::<gst_app::AppSink>().unwrap();
    let bus = pipeline.bus().unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut n = 0;
    loop {
        if let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
            if let gst::MessageView::Error(e) = msg.view() {
                panic!(
                    "decoding {} failed after {n} frames: {} ({:?})",
                    path.display(),
                    e.error(),
                    e.debug()
                );
            }
        }
        match sink.try_pull_sample(gst::ClockTime::from_seconds(10)) {
            Some(_) => n += 1,
            None => break,
        }
    }
    assert!(sink.is_eos(), "decoding {} stalled after {n} frames", path.display());
    pipeline.set_state(gst::State::Null).unwrap();
    n
}

/// Asserts a regular, browser-seekable MP4: `ftyp`, `moov` before `mdat`, no fragments.
fn assert_regular_mp4(p: &Probe, what: &str) {
    let pos = |b: &str| p.boxes.iter().position(|x| x == b);
    assert_eq!(p.boxes.first().map(String::as_str), Some("ftyp"), "{what}: {:?}", p.boxes);
    let (moov, mdat) = (pos("moov").expect("moov"), pos("mdat").expect("mdat"));
    assert!(moov < mdat, "{what}: moov must precede mdat (faststart): {:?}", p.boxes);
    assert!(pos("moof").is_none() && pos("mfra").is_none(), "{what}: fragmented: {:?}", p.boxes);
    assert!(p.boxes.iter().all(|b| !b.starts_with('<')), "{what}: malformed: {:?}", p.boxes);
}

fn event(store: &Store, start: f64, end: f64) -> Event {
    let id = uuid::Uuid::now_v7();
    let ch = |change, at| EventChange {
        event_id: id,
        change,
        camera_id: CAM.into(),
        grid_cell: None,
        kind: "presence".into(),
        severity: Severity::Low,
        at,
        objects: vec![],
        snapshot: None,
        rule: Some("presence#0".into()),
        zone: None,
        line: None,
        detail: None,
        caused_by: Instant::now(),
    };
    store.apply(&ch(Change::Started, t0() + secs(start))).unwrap();
    store.apply(&ch(Change::Ended, t0() + secs(end))).unwrap()
}

fn rec() -> RecordConfig {
    RecordConfig {
        segment_secs: SEGMENT_SECS,
        pre_roll_secs: 5.0,
        post_roll_secs: 10.0,
        ..Default::default()
    }
}

#[test]
fn event_clip_and_export_from_real_segments() {
    let Some(video) = video() else { return };
    let t = Instant::now();
    let r = record(&video);
    let store = &r.store;
    let last_end = r.segments.last().unwrap().2;
    println!(
        "recorded {} segments, 0–{last_end:.1} s, in {:.1} s: {:?}",
        r.segments.len(),
        t.elapsed().as_secs_f64(),
        r.segments
    );

    // --- Event 20–22 s, pre-roll 5, post-roll 10: span 15–32 s (17 s).
    let ev = event(store, 20.0, 22.0);
    let t = Instant::now();
    let state = ensure_event_clip(store, &ev, &rec(), t0() + secs(last_end + 1.0)).unwrap();
    let ClipState::Ready(clip) = state else { panic!("expected a clip, got {state:?}") };
    let build_ms = t.elapsed().as_millis();
    assert_eq!(clip.path, format!("clips/{}.mp4", ev.id));
    let path = store.media_path(&clip.path).unwrap();
    let p = probe(&path);
    let decoded = decode(&path);
    let wall = (clip.end - clip.start).as_seconds_f64();
    println!(
        "event clip: built in {build_ms} ms, {} bytes, starts {:.2} s (span 15.00), demuxed {:.2} s / {} frames / {} keyframes, \
         decoded {decoded} frames, boxes {:?}",
        clip.bytes,
        (clip.start - t0()).as_seconds_f64(),
        p.duration,
        p.frames,
        p.keyframes,
        p.boxes
    );
    let expected = 5.0 + 2.0 + 10.0;
    assert!(
        (p.duration - expected).abs() <= 2.0,
        "clip lasts {:.2} s, expected {expected} ± 2",
        p.duration
    );
    assert!((wall - p.duration).abs() < 0.15, "row says {wall:.2} s, file {:.2} s", p.duration);
    let start_off = (clip.start - t0()).as_seconds_f64();
    assert!(
        (13.0..=15.0).contains(&start_off),
        "clip starts at {start_off:.2} s: the keyframe at or before 15 s"
    );
    assert!(
        ((clip.end - t0()).as_seconds_f64() - 32.0).abs() <= 0.15,
        "clip ends at {:?}",
        clip.end - t0()
    );
    assert!(p.first_is_key, "clip must start with a keyframe");
    assert_eq!(decoded, p.frames, "every demuxed frame decodes");
    assert!(
        (p.frames as f64 - p.duration * FPS).abs() <= 1.0,
        "{} frames for {:.2} s at 10 fps",
        p.frames,
        p.duration
    );
    assert_regular_mp4(&p, "event clip");
    assert_eq!(clip.bytes, std::fs::metadata(&path).unwrap().len());
    assert_eq!(store.clip(ev.id).unwrap().as_ref(), Some(&clip));
    let leftovers: Vec<_> = std::fs::read_dir(store.clips_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".tmp") || n.contains("faststart"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    // Asking again returns the stored clip without rebuilding it.
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    let again = ensure_event_clip(store, &ev, &rec(), t0() + secs(last_end + 100.0)).unwrap();
    assert_eq!(again, ClipState::Ready(clip.clone()));
    assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), mtime);

    // --- Export 6–21 s: crosses the boundaries at 8, 12, 16 and 20 s.
    let out = r.dir.path().join("clips/export-test.mp4");
    let t = Instant::now();
    let info = build_mp4(store, CAM, t0() + secs(6.0), t0() + secs(21.0), &out).unwrap();
    let export_ms = t.elapsed().as_millis();
    let p = probe(&out);
    let decoded = decode(&out);
    let crossed = r.segments.iter().filter(|(_, s, _)| *s > 6.0 && *s < 21.0).count();
    println!(
        "export 6–21 s: built in {export_ms} ms, crosses {crossed} segment boundaries, {} bytes, demuxed {:.2} s / {} frames, \
         decoded {decoded}, info {info:?}",
        info.bytes, p.duration, p.frames
    );
    assert!(crossed >= 3);
    assert!(
        (p.duration - 15.0).abs() < 0.15,
        "export lasts {:.2} s, expected 15 (6 s is a keyframe)",
        p.duration
    );
    assert_eq!(info.start, t0() + secs(6.0), "starts at the keyframe at 6 s");
    assert!(p.first_is_key && info.starts_with_keyframe);
    assert_eq!(decoded, p.frames);
    assert_eq!(info.frames, p.frames);
    assert!(
        (p.frames as f64 - p.duration * FPS).abs() <= 1.0,
        "{} frames for {:.2} s",
        p.frames,
        p.duration
    );
    assert_regular_mp4(&p, "export");

    // --- A gap (the 8–12 s segment deleted) stays a gap: same span, fewer frames.
    let (gap_id, gs, ge) =
        *r.segments.iter().find(|(_, s, _)| (*s - 8.0).abs() < 0.5).expect("segment at 8 s");
    assert!(store.delete_segment_row(gap_id).unwrap());
    let out2 = r.dir.path().join("clips/export-gap.mp4");
    let info2 = build_mp4(store, CAM, t0() + secs(6.0), t0() + secs(21.0), &out2).unwrap();
    let p2 = probe(&out2);
    let decoded2 = decode(&out2);
    println!(
        "export with a {:.1} s gap: demuxed {:.2} s / {} frames, decoded {decoded2}",
        ge - gs,
        p2.duration,
        p2.frames
    );
    assert!(
        (p2.duration - p.duration).abs() < 0.15,
        "the gap must keep its length: {:.2} vs {:.2}",
        p2.duration,
        p.duration
    );
    let missing = ((ge - gs) * FPS).round() as u64;
    assert_eq!(p2.frames + missing, p.frames);
    assert_eq!(decoded2, p2.frames);
    assert!(((info2.end - info2.start).as_seconds_f64() - p2.duration).abs() < 0.15);

    // --- No footage: nothing indexed for that span or camera.
    let none = build_mp4(
        store,
        CAM,
        t0() + secs(500.0),
        t0() + secs(510.0),
        &r.dir.path().join("clips/none.mp4"),
    );
    let err = none.unwrap_err();
    assert!(matches!(err, ClipError::NoFootage { .. }), "{err}");
    assert!(
        err.to_string().contains("pets") && err.to_string().contains("2026-05-01T08:08:20Z"),
        "{err}"
    );
    assert!(matches!(
        build_mp4(store, "other", t0(), t0() + secs(10.0), &out2),
        Err(ClipError::NoFootage { .. })
    ));
    let late = event(store, 500.0, 501.0);
    assert_eq!(
        ensure_event_clip(store, &late, &rec(), t0() + secs(900.0)).unwrap(),
        ClipState::NoFootage
    );
}

#[test]
fn event_clip_waits_for_the_footage_after_the_event() {
    let Some(video) = video() else { return };
    let r = record(&video);
    let store = &r.store;
    let last_end = r.segments.last().unwrap().2;
    // The post-roll runs past the last indexed segment: not ready until the horizon
    // (span end + 2 × segment + 5 s), then built with what exists.
    let ev = event(store, last_end - 3.0, last_end - 2.0);
    let span_end = last_end - 2.0 + 10.0;
    match ensure_event_clip(store, &ev, &rec(), t0() + secs(last_end)).unwrap() {
        ClipState::Pending { retry_after_secs } => {
            println!("pending; retry after {retry_after_secs} s");
            assert!((1..=(span_end - last_end + 2.0 * SEGMENT_SECS + 6.0) as u64)
                .contains(&retry_after_secs));
        }
        other => panic!("expected Pending, got {other:?}"),
    }
    assert!(store.clip(ev.id).unwrap().is_none());
    let ClipState::Ready(clip) =
        ensure_event_clip(store, &ev, &rec(), t0() + secs(span_end + 2.0 * SEGMENT_SECS + 6.0))
            .unwrap()
    else {
        panic!("expected a clip after the horizon")
    };
    let p = probe(&store.media_path(&clip.path).unwrap());
    println!("clip at the end of the footage: {:.2} s, {} frames", p.duration, p.frames);
    assert!(((clip.end - t0()).as_seconds_f64() - last_end).abs() < 0.2, "ends with the footage");
    assert!(p.first_is_key);

    // An active event is pending whatever the footage.
    let id = uuid::Uuid::now_v7();
    let active = store
        .apply(&EventChange::bare(
            id,
            Change::Started,
            CAM,
            "presence",
            Severity::Low,
            t0() + secs(10.0),
        ))
        .unwrap();
    assert!(matches!(
        ensure_event_clip(store, &active, &rec(), t0() + secs(20.0)).unwrap(),
        ClipState::Pending { .. }
    ));
}

/// The real API (router, auth, streaming) over `store` with the test camera's recording, on a
/// local port, a config token `token`.
struct ApiServer {
    rt: tokio::runtime::Runtime,
    base: String,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl ApiServer {
    fn start(store: &gridwatch::store::Store, box_id: &str, token: &str) -> ApiServer {
        use gridwatch::api::{router, serve, ApiState, MediaSettings};
        let state = ApiState {
            store: store.clone(),
            registry: gridwatch::health::Registry::new(),
            box_id: box_id.into(),
            config_token_hashes: vec![gridwatch::store::hash_token(token)],
            started_at: OffsetDateTime::now_utc(),
            media: MediaSettings {
                recording: std::sync::Arc::new([(CAM.to_string(), rec())].into_iter().collect()),
                max_export_secs: 60.0,
                ..Default::default()
            },
            auth: Default::default(),
            open_data: Default::default(),
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let base = format!("http://{}/api/v1", listener.local_addr().unwrap());
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = rt.spawn(serve(listener, router(state), async move {
            let _ = stop_rx.await;
        }));
        ApiServer { rt, base, stop, server }
    }

    /// Stops the server and waits for it.
    fn stop(self) {
        let _ = self.stop.send(());
        self.rt.block_on(self.server).unwrap().unwrap();
    }
}

/// The clip and the export through the real HTTP API (router, auth, streaming, ranges).
#[test]
fn clip_and_export_over_http() {
    let Some(video) = video() else { return };
    let r = record(&video);
    let ev = event(&r.store, 40.0, 41.0);
    const TOKEN: &str = "gw_clip_test";
    let api = ApiServer::start(&r.store, "clips", TOKEN);
    let base = api.base.clone();
    let http = reqwest::blocking::Client::new();
    let get = |url: &str, range: Option<&str>| {
        let mut req = http.get(url).bearer_auth(TOKEN);
        if let Some(r) = range {
            req = req.header("Range", r);
        }
        req.send().unwrap()
    };

    // Built on the first request.
    // The original (the config token has `view_unmasked`): this test is about the remux.
    let clip_url = format!("{base}/events/{}/clip.mp4?unmasked=1", ev.id);
    assert!(r.store.clip(ev.id).unwrap().is_none());
    let resp = get(&clip_url, None);
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "video/mp4");
    assert_eq!(resp.headers()["accept-ranges"], "bytes");
    let whole = resp.bytes().unwrap().to_vec();
    let file = r.dir.path().join("from-http.mp4");
    std::fs::write(&file, &whole).unwrap();
    let p = probe(&file);
    let decoded = decode(&file);
    println!(
        "HTTP clip: {} bytes, {:.2} s, {} frames, decoded {decoded}",
        whole.len(),
        p.duration,
        p.frames
    );
    assert!((p.duration - 16.0).abs() <= 2.0, "{:.2} s", p.duration);
    assert!(p.first_is_key);
    assert_eq!(decoded, p.frames);
    let stored = r.store.clip(ev.id).unwrap().expect("clip row written");
    assert_eq!(stored.bytes, whole.len() as u64);

    // Ranges return exactly those bytes of the same file.
    let resp = get(&clip_url, Some("bytes=1000-66535"));
    assert_eq!(resp.status(), 206);
    assert_eq!(resp.headers()["content-range"], format!("bytes 1000-66535/{}", whole.len()));
    assert!(resp.bytes().unwrap() == whole[1000..=66535]);
    let resp = get(&clip_url, Some("bytes=-100"));
    assert_eq!(resp.status(), 206);
    assert!(resp.bytes().unwrap() == whole[whole.len() - 100..]);
    let resp = get(&clip_url, Some(&format!("bytes={}-", whole.len())));
    assert_eq!(resp.status(), 416);
    assert_eq!(resp.headers()["content-range"], format!("bytes */{}", whole.len()));

    // Export across segment boundaries.
    let url = format!("{base}/recordings/export.mp4?camera={CAM}&start=2026-05-01T08:00:30Z&end=2026-05-01T08:00:50Z&unmasked=1");
    let resp = get(&url, None);
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-disposition"],
        "attachment; filename=\"pets-20260501T080030Z.mp4\""
    );
    let body = resp.bytes().unwrap();
    let file = r.dir.path().join("export-http.mp4");
    std::fs::write(&file, &body).unwrap();
    let p = probe(&file);
    let decoded = decode(&file);
    println!(
        "HTTP export 30–50 s: {} bytes, {:.2} s, {} frames, decoded {decoded}",
        body.len(),
        p.duration,
        p.frames
    );
    assert!((p.duration - 20.0).abs() < 0.15, "{:.2} s", p.duration);
    assert_eq!(decoded, p.frames);
    let left: Vec<_> = std::fs::read_dir(r.store.clips_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("export-") || n.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "export files left: {left:?}");
    // Too long a span; segments listed with their URLs.
    let url = format!("{base}/recordings/export.mp4?camera={CAM}&start=2026-05-01T08:00:00Z&end=2026-05-01T08:01:00.5Z");
    assert_eq!(get(&url, None).status(), 400);
    let list: serde_json::Value =
        get(&format!("{base}/recordings?camera={CAM}&limit=3"), None).json().unwrap();
    let seg_url = list["recordings"][2]["url"].as_str().unwrap().to_string();
    let seg = get(
        &format!(
            "http://{}{seg_url}?unmasked=1",
            base.trim_start_matches("http://").trim_end_matches("/api/v1")
        ),
        None,
    );
    assert_eq!(seg.status(), 200);
    let seg_bytes = seg.bytes().unwrap();
    let on_disk = std::fs::read(
        r.store.media_path(&r.store.segment(r.segments[2].0).unwrap().unwrap().path).unwrap(),
    )
    .unwrap();
    assert!(seg_bytes == on_disk, "segment served as recorded");

    api.stop();
}

/// An H.265 recording (transcoded from the first 12 s) and an H.264 one with B-frames
/// (decode order differs from presentation order): exports across segment boundaries
/// start with a keyframe, last as long as asked and decode completely.
#[test]
fn h265_and_b_frame_exports() {
    let Some(video) = video() else { return };
    for (name, enc, codec) in [
        ("h265", "x265enc key-int-max=20 speed-preset=ultrafast tune=zerolatency bitrate=400 ! h265parse", "h265"),
        ("h264 with B-frames", "x264enc key-int-max=20 bframes=2 b-adapt=false speed-preset=ultrafast bitrate=400 ! h264parse", "h264"),
    ] {
        let factory = enc.split_whitespace().next().unwrap();
        gridwatch::gst::init().unwrap();
        if gst::ElementFactory::find(factory).is_none() {
            eprintln!("skipping {name}: GStreamer element {factory} missing");
            continue;
        }
        let head = format!(
            "parsebin ! video/x-h264 ! avdec_h264 ! identity eos-after=120 ! videoscale ! video/x-raw,width=384,height=288 ! {enc}"
        );
        let r = record_with(&video, &head, codec);
        let out = r.dir.path().join("clips/export.mp4");
        std::fs::create_dir_all(out.parent().unwrap()).unwrap();
        // 3–11 s: from the keyframe at 2 s, across the boundaries at 4 and 8 s.
        let info = build_mp4(&r.store, CAM, t0() + secs(3.0), t0() + secs(11.0), &out).unwrap();
        let p = probe_codec(&out, codec);
        let decoded = decode(&out);
        println!(
            "{name}: {} segments, export 3–11 s → starts {:.2} s, {:.2} s, {} frames, decoded {decoded}, boxes {:?}",
            r.segments.len(),
            (info.start - t0()).as_seconds_f64(),
            p.duration,
            p.frames,
            p.boxes
        );
        assert!(((info.start - t0()).as_seconds_f64() - 2.0).abs() < 0.15, "{name}: starts at the keyframe at 2 s");
        assert!((p.duration - 9.0).abs() < 0.25, "{name}: {:.2} s, expected 9", p.duration);
        assert!(p.first_is_key && info.starts_with_keyframe, "{name}");
        assert_eq!(decoded, p.frames, "{name}: every frame decodes");
        assert!((p.frames as f64 - 9.0 * FPS).abs() <= 1.0, "{name}: {} frames", p.frames);
        assert_regular_mp4(&p, name);
    }
}

/// A segment cut short by a crash (no `mfra`, torn last box) contributes what it holds;
/// the export goes on with the next segment and decodes.
#[test]
fn export_through_a_torn_segment() {
    let Some(video) = video() else { return };
    let r = record(&video);
    let (id, s, _) =
        *r.segments.iter().find(|(_, s, _)| (*s - 8.0).abs() < 0.5).expect("segment at 8 s");
    let path = r.store.media_path(&r.store.segment(id).unwrap().unwrap().path).unwrap();
    let len = std::fs::metadata(&path).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len * 6 / 10).unwrap();
    drop(f);
    let torn = probe(&path);
    assert_eq!(torn.boxes.last().map(String::as_str), Some("<torn>"), "{:?}", torn.boxes);
    let kept = torn.frames;
    let out = r.dir.path().join("clips/torn.mp4");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let info = build_mp4(&r.store, CAM, t0() + secs(6.0), t0() + secs(21.0), &out).unwrap();
    let p = probe(&out);
    let decoded = decode(&out);
    println!("torn segment at {s:.0} s keeps {kept}/40 frames; export 6–21 s: {:.2} s, {} frames, decoded {decoded}", p.duration, p.frames);
    assert!(kept > 0 && kept < 40, "the truncation must tear the segment ({kept} frames left)");
    assert_eq!(p.frames, 150 - (40 - kept), "everything but the torn-off frames");
    assert_eq!(info.frames, p.frames);
    assert!((p.duration - 15.0).abs() < 0.15, "{:.2} s", p.duration);
    assert_eq!(decoded, p.frames);
}

/// Open descriptors of this process on deleted export files (space no one can see).
fn pinned_exports() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .map(|t| t.to_string_lossy().to_string())
                .filter(|t| t.contains("/export-") && t.ends_with("(deleted)"))
                .count()
        })
        .unwrap_or(0)
}

/// Export files present in `clips/`.
fn export_files(store: &Store) -> Vec<(String, u64)> {
    std::fs::read_dir(store.clips_dir())
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("export-"))
                .map(|e| {
                    let n = e.file_name().to_string_lossy().to_string();
                    (n, e.metadata().map(|m| m.len()).unwrap_or(0))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Polls `f` every 20 ms for up to `secs`; panics with `what` if it never holds.
fn eventually(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + std::time::Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < end, "not within {secs} s: {what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Sends a GET on a fresh connection (keep-alive, as a browser does) and reads the response
/// head only; the body is left unread (a stalled download).
fn open_get(addr: std::net::SocketAddr, path: &str, token: &str) -> (std::net::TcpStream, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(120))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n").unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => head.push(b[0]),
            _ => break,
        }
    }
    (s, String::from_utf8_lossy(&head).to_string())
}

/// M1 through the real HTTP server and real footage (the recording indexed 12 times over,
/// hard links, so a long export takes a while to build): one export slot; a build whose
/// client goes away is cancelled and leaves nothing; a second export while the slot is held
/// is refused with a JSON 503; a stalled download's file is a named file that retention
/// counts and deletes first, which cuts the download off and frees the space; a stalled
/// download is also cut off at the timeout.
#[test]
fn exports_are_limited_cancelled_and_counted_by_retention() {
    use gridwatch::api::{router, serve, ApiState, Exports, MediaSettings};
    use gridwatch::config::StorageConfig;
    use std::sync::atomic::Ordering::Relaxed;
    let Some(video) = video() else { return };
    let r = record(&video);
    // Loop the recording: hard links of the same segments, indexed one video length later.
    let len = r.segments.last().unwrap().2.ceil();
    let loops = 12;
    for k in 1..loops {
        for (id, s, e) in &r.segments {
            let seg = r.store.segment(*id).unwrap().unwrap();
            let rel = seg.path.replace("seg-", &format!("loop{k}-seg-"));
            std::fs::hard_link(r.store.media_path(&seg.path).unwrap(), r.dir.path().join(&rel))
                .unwrap();
            let off = k as f64 * len;
            r.store
                .insert_segment(&NewSegment {
                    camera_id: CAM.into(),
                    path: rel,
                    start: t0() + secs(s + off),
                    end: t0() + secs(e + off),
                    start_pts_ns: seg.start_pts_ns,
                    end_pts_ns: seg.end_pts_ns,
                    bytes: seg.bytes,
                    codec: seg.codec.clone(),
                    frames: None,
                    recovered: false,
                })
                .unwrap();
        }
    }
    let footage = loops as f64 * len;
    const TOKEN: &str = "gw_export_limits";
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    // A server with one export slot and the given download timeout.
    let start = |timeout_secs: f64| {
        let storage = StorageConfig {
            max_concurrent_exports: 1,
            export_download_timeout_secs: timeout_secs,
            ..Default::default()
        };
        let exports = std::sync::Arc::new(Exports::new(&storage));
        let state = ApiState {
            store: r.store.clone(),
            registry: gridwatch::health::Registry::new(),
            box_id: "exports".into(),
            config_token_hashes: vec![gridwatch::store::hash_token(TOKEN)],
            started_at: OffsetDateTime::now_utc(),
            media: MediaSettings {
                recording: std::sync::Arc::new([(CAM.to_string(), rec())].into_iter().collect()),
                max_export_secs: 4.0 * 3600.0,
                exports: exports.clone(),
                ..Default::default()
            },
            auth: Default::default(),
            open_data: Default::default(),
        };
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = rt.spawn(serve(listener, router(state), async move {
            let _ = stop_rx.await;
        }));
        (exports, addr, stop_tx, server)
    };
    let (exports, addr, stop_tx, server) = start(600.0);
    let fmt = |t: OffsetDateTime| t.format(&time::format_description::well_known::Rfc3339).unwrap();
    let export = |from: f64, to: f64| {
        format!(
            "/api/v1/recordings/export.mp4?camera={CAM}&start={}&end={}&unmasked=1",
            fmt(t0() + secs(from)),
            fmt(t0() + secs(to))
        )
    };

    // 1. Cancelled on disconnect: the whole footage, the client leaves once the build runs.
    let t = Instant::now();
    let (s, _) = {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(
            s,
            "GET {} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n",
            export(0.0, footage)
        )
        .unwrap();
        (s, ())
    };
    eventually(60, "the build started (its .tmp file)", || {
        export_files(&r.store).iter().any(|(n, _)| n.ends_with(".tmp"))
    });
    drop(s);
    let left = Instant::now();
    eventually(30, "the build was cancelled", || exports.cancelled.load(Relaxed) == 1);
    println!(
        "cancelled {:.2} s after the client left ({:.1} s of footage; build had run {:.2} s)",
        left.elapsed().as_secs_f64(),
        footage,
        (left - t).as_secs_f64()
    );
    assert_eq!(exports.built.load(Relaxed), 0, "the build ran to its end");
    eventually(10, "the slot is free and nothing is left", || {
        exports.in_use() == 0 && export_files(&r.store).is_empty()
    });

    // 2. A stalled download (the body is bigger than the socket buffers) holds the slot.
    let (stalled, head) = open_get(addr, &export(0.0, 6.0 * len), TOKEN);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let length: u64 = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase().strip_prefix("content-length: ").map(|v| v.trim().to_string())
        })
        .and_then(|v| v.parse().ok())
        .expect("content-length");
    assert!(length > 16 << 20, "export of {length} bytes fits in socket buffers");
    // Its file is a named file in the data dir, as big as the download.
    let files = export_files(&r.store);
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(files[0].1, length);
    assert_eq!(exports.in_use(), 1);
    // A second export is refused with a JSON error while the slot is held.
    let (_, head) = open_get(addr, &export(0.0, 10.0), TOKEN);
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    assert!(head.to_ascii_lowercase().contains("retry-after: 5"), "{head}");
    let busy = reqwest::blocking::Client::new()
        .get(format!("http://{addr}{}", export(0.0, 10.0)))
        .bearer_auth(TOKEN)
        .send()
        .unwrap();
    assert_eq!(busy.status(), 503);
    let body: serde_json::Value = busy.json().unwrap();
    assert_eq!(body["error"]["code"], "exports_busy", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("max_concurrent_exports"));
    assert_eq!(exports.refused.load(Relaxed), 2);

    // Retention counts the export against max_bytes and deletes it first (no footage goes);
    // the stalled download is then cut off and the space is freed, not pinned.
    let footage_bytes = r.store.media_bytes().unwrap();
    let cfg = gridwatch::config::Config::parse(
        &format!(
            "box_id = 'b'\ndata_dir = '/tmp'\n[models]\n[storage]\nmax_bytes = {}\nmin_free_bytes = 0\nmin_free_percent = 0\n",
            footage_bytes + length / 2
        ),
        Path::new("/"),
    )
    .unwrap();
    let clock = std::sync::Arc::new(gridwatch::clock::SimClock::new(t0() + secs(footage)));
    let mut ret = gridwatch::record::retention::Retention::new(
        &cfg,
        r.store.clone(),
        clock,
        Default::default(),
    );
    let report = ret.run();
    assert_eq!(report.exports_evicted.files, 1, "{report}");
    assert_eq!(
        (report.budget.files, report.forced.files, report.over_budget),
        (0, 0, false),
        "{report}"
    );
    assert_eq!(r.store.media_bytes().unwrap(), footage_bytes);
    eventually(10, "the stalled download let go of the deleted file", || {
        exports.in_use() == 0 && pinned_exports() == 0
    });
    assert_eq!(exports.timed_out.load(Relaxed), 0, "cut off by the deletion, not a timeout");
    drop(stalled);

    // 3. A stalled download is cut off at export_download_timeout_secs (3 s on this server).
    let (exports3, addr3, stop3, server3) = start(3.0);
    let (stalled, head) = open_get(addr3, &export(0.0, 6.0 * len), TOKEN);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(export_files(&r.store).len(), 1);
    let t = Instant::now();
    eventually(30, "the stalled download timed out", || {
        exports3.timed_out.load(Relaxed) == 1 && exports3.in_use() == 0
    });
    eventually(5, "its file is gone", || {
        export_files(&r.store).is_empty() && pinned_exports() == 0
    });
    println!("stalled download cut off after {:.1} s more", t.elapsed().as_secs_f64());
    drop(stalled);
    stop3.send(()).unwrap();
    rt.block_on(server3).unwrap().unwrap();

    // 4. A client that reads the whole export: the file is deleted after the download.
    let body = reqwest::blocking::Client::new()
        .get(format!("http://{addr}{}", export(30.0, 50.0)))
        .bearer_auth(TOKEN)
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert!(body.len() > 1000);
    eventually(5, "the downloaded export's file is gone", || {
        export_files(&r.store).is_empty() && exports.in_use() == 0
    });
    stop_tx.send(()).unwrap();
    rt.block_on(server).unwrap().unwrap();
}

/// Issue 17 item 2: evidence packages of real footage over the real HTTP API. They verify
/// offline (library and `gridwatch verify`), only with this box's key; a flipped byte of
/// the video is found and named; the MP4 carries the UTC time of its first frame as its
/// creation time; a span without footage is a 404 saying so.
#[test]
fn evidence_packages_of_real_footage_verify_offline() {
    use gridwatch::evidence::{verify, BoxKey};
    let Some(video) = video() else { return };
    let r = record(&video);
    let ev = event(&r.store, 40.0, 41.0);
    const TOKEN: &str = "gw_evidence_test";
    let api = ApiServer::start(&r.store, "box-evidence", TOKEN);
    let base = api.base.clone();
    let http = reqwest::blocking::Client::new();
    let get = |url: &str| http.get(url).bearer_auth(TOKEN).send().unwrap();
    let key: serde_json::Value = get(&format!("{base}/evidence/key")).json().unwrap();
    let pk = gridwatch::evidence::PublicKey::parse(key["public_key"].as_str().unwrap()).unwrap();
    assert_eq!(Some(pk.clone()), BoxKey::public_of(r.dir.path()).unwrap());

    let fetch = |url: &str, name: &str| {
        let t = Instant::now();
        let resp = get(url);
        assert_eq!(resp.status(), 200, "{url}");
        assert_eq!(resp.headers()["content-type"], "application/x-tar");
        let path = r.dir.path().join(name);
        std::fs::write(&path, resp.bytes().unwrap()).unwrap();
        println!(
            "{name}: {} bytes in {:.2} s",
            std::fs::metadata(&path).unwrap().len(),
            t.elapsed().as_secs_f64()
        );
        path
    };
    let ev_tar = fetch(&format!("{base}/events/{}/evidence.tar?unmasked=1", ev.id), "event.tar");
    let s =
        |x: f64| (t0() + secs(x)).format(&time::format_description::well_known::Rfc3339).unwrap();
    let range_tar = fetch(
        &format!(
            "{base}/recordings/evidence.tar?camera={CAM}&start={}&end={}&unmasked=1",
            s(10.0),
            s(25.0)
        ),
        "range.tar",
    );
    let tmp = r.dir.path().join("unpacked");
    for (tar, event_id) in [(&ev_tar, Some(ev.id)), (&range_tar, None)] {
        let v = verify(tar, Some(&pk)).unwrap_or_else(|e| panic!("{}: {e}", tar.display()));
        let m = &v.manifest;
        assert_eq!(
            (m.box_id.as_str(), m.camera_id.as_str(), m.event_id),
            ("box-evidence", CAM, event_id)
        );
        assert_eq!(
            m.exported_by,
            format!("config-token:{}", &gridwatch::store::hash_token(TOKEN)[..8])
        );
        assert!(!m.segments.is_empty() && m.clock.source == "system", "{m:?}");
        assert_eq!(m.key_fingerprint, pk.fingerprint());
        // Unpacked with the system's tar: the video decodes and carries its first frame's
        // UTC time as its creation time.
        let out = tmp.join(m.package_id.to_string());
        std::fs::create_dir_all(&out).unwrap();
        let st = std::process::Command::new("tar")
            .arg("-xf")
            .arg(tar)
            .arg("-C")
            .arg(&out)
            .status()
            .unwrap();
        assert!(st.success());
        let dir = out.join(format!("evidence-{}", m.package_id));
        verify(&dir, Some(&pk)).unwrap();
        let mp4 = dir.join("video.mp4");
        let created = gridwatch::record::mp4::creation_time(&mp4).unwrap().expect("mvhd");
        assert_eq!(created.unix_timestamp(), m.start.unix_timestamp(), "{created} vs {}", m.start);
        let p = probe(&mp4);
        assert_eq!(decode(&mp4), p.frames);
        assert!(p.first_is_key && p.frames > 50, "{p:?}");
        if event_id.is_some() {
            let j: serde_json::Value =
                serde_json::from_slice(&std::fs::read(dir.join("event.json")).unwrap()).unwrap();
            assert_eq!(j["event"]["id"], ev.id.to_string());
            assert!(j["review_history"].is_array() && j["locks"].is_array());
        } else {
            assert!(m.start <= t0() + secs(10.0) && m.end >= t0() + secs(24.0), "{m:?}");
            assert!((m.end - m.start).as_seconds_f64() < 15.0 + 2.0 * SEGMENT_SECS);
        }
    }

    // Tampering: one byte in the middle of the video (inside the archive), or another
    // box's key. `gridwatch verify` names the file and exits 1.
    let mut bytes = std::fs::read(&range_tar).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x20;
    let bad = r.dir.path().join("tampered.tar");
    std::fs::write(&bad, &bytes).unwrap();
    let e = verify(&bad, Some(&pk)).unwrap_err();
    assert_eq!(e.file, "video.mp4", "{e}");
    let other = BoxKey::load_or_create(tempfile::tempdir().unwrap().path()).unwrap().public();
    assert_eq!(verify(&range_tar, Some(&other)).unwrap_err().file, "manifest.json");
    let cli = |tar: &Path, key: &str| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_gridwatch"))
            .arg("verify")
            .arg(tar)
            .arg("--key")
            .arg(key)
            .output()
            .unwrap();
        (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let (code, out) = cli(&range_tar, &pk.public_base64());
    assert_eq!(code, 0, "{out}");
    let (code, out) = cli(&bad, &pk.public_base64());
    assert!(code == 1 && out.contains("video.mp4"), "{code}: {out}");
    let (code, out) = cli(&range_tar, &other.public_base64());
    assert!(code == 1 && out.contains("manifest.json"), "{code}: {out}");

    // No footage in the span: a 404 that says so.
    let resp = get(&format!(
        "{base}/recordings/evidence.tar?camera={CAM}&start={}&end={}",
        s(-3600.0),
        s(-3550.0)
    ));
    assert_eq!(resp.status(), 404);
    let v: serde_json::Value = resp.json().unwrap();
    assert_eq!(v["error"]["code"], "no_footage");
    assert!(v["error"]["message"].as_str().unwrap().contains("no recorded footage"), "{v}");

    api.stop();
}
