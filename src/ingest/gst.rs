//! GStreamer implementation of the camera boundary: a pipeline ending in an appsink that
//! hands tightly packed RGB frames to Rust.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;
use time::OffsetDateTime;

use super::{FrameStream, IngestError, Opener, StreamEvent};
use crate::gst::{bus_error, format_error};
use crate::record::branch::Recording;
use crate::record::RecordSpec;
use crate::types::Frame;

/// Opens a camera by launching a gst-launch style description. With `record`, the
/// description must contain the record branch (`splitmuxsink name=recorder` fed by
/// `queue name=recq`, see pipelines/record.pipeline). A description without an appsink
/// named `sink` is a stream that is only recorded (a main stream beside a `detect_url`):
/// it yields no frames, and [`FrameStream::progress`] tells what passed.
pub struct GstOpener {
    pub camera_id: Arc<str>,
    pub description: String,
    pub record: Option<RecordSpec>,
    /// Drop the H.264/H.265 pictures that nothing references before the decoder while the
    /// reference pictures alone are frequent enough for this `detect_fps` (`ingest::nonref`);
    /// `None`: decode every picture.
    pub skip_nonref_fps: Option<f64>,
    /// `max-threads` of the pipeline's software video decoders (the profile's
    /// `decoder_threads`); 0: the decoder's own choice.
    pub decoder_threads: u32,
}

impl Opener for GstOpener {
    fn open(&self) -> Result<Box<dyn FrameStream>, IngestError> {
        Ok(Box::new(self.open_stream()?))
    }
}

impl GstOpener {
    /// [`Opener::open`], typed.
    pub fn open_stream(&self) -> Result<GstStream, IngestError> {
        crate::gst::init()?;
        let el = gst::parse::launch(&self.description)
            .map_err(|e| IngestError::Pipeline(format!("cannot build pipeline: {e}")))?;
        let pipeline = el
            .downcast::<gst::Pipeline>()
            .map_err(|_| IngestError::Pipeline("description is not a pipeline".into()))?;
        let sink = pipeline.by_name("sink").and_then(|e| e.downcast::<gst_app::AppSink>().ok());
        if sink.is_none() && self.record.is_none() {
            return Err(IngestError::Pipeline("pipeline has no appsink named `sink`".into()));
        }
        let bus =
            pipeline.bus().ok_or_else(|| IngestError::Pipeline("pipeline has no bus".into()))?;
        let recording = match &self.record {
            Some(spec) => Some(Recording::attach(&pipeline, spec).map_err(IngestError::Pipeline)?),
            None => None,
        };
        let progress = match (&sink, &recording) {
            (None, Some(rec)) => Some(Progress::attach(rec.input_pad())),
            _ => None,
        };
        let skipped = Arc::new(std::sync::atomic::AtomicU64::new(0));
        setup_decoders(&pipeline, self.skip_nonref_fps, self.decoder_threads, skipped.clone());
        if pipeline.set_state(gst::State::Playing).is_err() {
            let msg = bus_error(&bus, Duration::from_millis(500))
                .unwrap_or_else(|| "pipeline refused to start".to_string());
            let _ = pipeline.set_state(gst::State::Null);
            return Err(IngestError::Source(msg));
        }
        Ok(GstStream {
            camera_id: self.camera_id.clone(),
            pipeline,
            sink,
            bus,
            index: 0,
            recording,
            progress,
            skipped,
        })
    }
}

/// `max-threads` = `threads` on a decoder whose property is an integer that takes it (libav);
/// another decoder keeps its own (never a panic on a property of another type or range).
fn set_max_threads(el: &gst::Element, threads: u32) {
    let Some(spec) = el.find_property("max-threads") else { return };
    match spec.downcast_ref::<gst::glib::ParamSpecInt>() {
        Some(p)
            if i32::try_from(threads).is_ok_and(|t| (p.minimum()..=p.maximum()).contains(&t)) =>
        {
            el.set_property("max-threads", threads as i32)
        }
        _ => tracing::debug!(
            decoder = %el.name(),
            "max-threads does not take {threads}: the decoder keeps its own"
        ),
    }
}

/// Sets up every video decoder of `pipeline`, those there now and those `decodebin` adds
/// later: `max-threads` = `threads` (when not 0 and the decoder has it), and with
/// `skip_nonref_fps` the non-reference skipper ([`super::nonref`]) on its sink pad.
fn setup_decoders(
    pipeline: &gst::Pipeline,
    skip_nonref_fps: Option<f64>,
    threads: u32,
    skipped: Arc<std::sync::atomic::AtomicU64>,
) {
    if skip_nonref_fps.is_none() && threads == 0 {
        return;
    }
    let attach = move |el: &gst::Element| {
        let is_decoder = el.factory().is_some_and(|f| {
            f.has_type(gst::ElementFactoryType::DECODER)
                && f.has_type(gst::ElementFactoryType::MEDIA_VIDEO)
        });
        let Some(pad) = el.static_pad("sink").filter(|_| is_decoder) else { return };
        if threads > 0 {
            set_max_threads(el, threads);
        }
        let Some(detect_fps) = skip_nonref_fps else { return };
        let skipper = std::sync::Mutex::new(super::nonref::Skipper::new(detect_fps));
        let skipped = skipped.clone();
        pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
            let Some(buffer) = info.buffer() else { return gst::PadProbeReturn::Ok };
            let Some(caps) = pad.current_caps() else { return gst::PadProbeReturn::Ok };
            let Some(s) = caps.structure(0) else { return gst::PadProbeReturn::Ok };
            let codec = match s.name().as_str() {
                "video/x-h264" => super::nonref::Codec::H264,
                "video/x-h265" => super::nonref::Codec::H265,
                _ => return gst::PadProbeReturn::Ok,
            };
            let prefixed =
                matches!(s.get::<&str>("stream-format"), Ok("avc" | "avc3" | "hvc1" | "hev1"));
            if s.get::<&str>("alignment").is_ok_and(|a| a != "au") {
                return gst::PadProbeReturn::Ok;
            }
            let Ok(map) = buffer.map_readable() else { return gst::PadProbeReturn::Ok };
            let reference = super::nonref::is_reference(codec, &map, prefixed);
            let t = buffer.dts_or_pts().map(|t| t.nseconds());
            drop(map);
            if skipper.lock().unwrap_or_else(|e| e.into_inner()).skip(t, reference) {
                // Taken and released here: `Drop` would have GStreamer release it again.
                info.data.take();
                skipped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                gst::PadProbeReturn::Handled
            } else {
                gst::PadProbeReturn::Ok
            }
        });
    };
    let mut it = pipeline.iterate_recurse();
    while let Ok(Some(el)) = it.next() {
        attach(&el);
    }
    pipeline.connect_deep_element_added(move |_, _, el| attach(el));
}

pub struct GstStream {
    camera_id: Arc<str>,
    pipeline: gst::Pipeline,
    /// None for a stream that is only recorded.
    sink: Option<gst_app::AppSink>,
    bus: gst::Bus,
    index: u64,
    recording: Option<Recording>,
    progress: Option<Progress>,
    /// Pictures not decoded (`GstOpener::skip_nonref_fps`).
    skipped: Arc<std::sync::atomic::AtomicU64>,
}

impl GstStream {
    /// How many pictures nothing references were not decoded so far.
    pub fn skipped(&self) -> u64 {
        self.skipped.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Counts the compressed frames entering the record branch of a stream that hands no frames
/// to Rust (before the record gate, so a full disk does not look like a dead camera).
struct Progress {
    count: Arc<std::sync::atomic::AtomicU64>,
    seen: u64,
    pad: gst::Pad,
}

impl Progress {
    fn attach(pad: gst::Pad) -> Progress {
        let count = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let c = count.clone();
        pad.add_probe(
            gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
            move |_, info| {
                let n = match &info.data {
                    Some(gst::PadProbeData::BufferList(l)) => l.len() as u64,
                    _ => 1,
                };
                c.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                gst::PadProbeReturn::Ok
            },
        );
        Progress { count, seen: 0, pad }
    }

    /// Frames since the last call, and the picture size from the stream's caps.
    fn take(&mut self) -> (u64, Option<(u32, u32)>) {
        let now = self.count.load(std::sync::atomic::Ordering::Relaxed);
        let n = now - self.seen;
        self.seen = now;
        let size = self.pad.current_caps().and_then(|c| {
            let s = c.structure(0)?;
            let w = s.get::<i32>("width").ok()?;
            let h = s.get::<i32>("height").ok()?;
            Some((u32::try_from(w).ok()?, u32::try_from(h).ok()?))
        });
        (n, size)
    }
}

impl GstStream {
    fn make_frame(&mut self, sample: &gst::Sample) -> Result<Frame, IngestError> {
        let caps =
            sample.caps().ok_or_else(|| IngestError::Pipeline("sample without caps".into()))?;
        let info = gst_video::VideoInfo::from_caps(caps)
            .map_err(|_| IngestError::Pipeline(format!("unexpected caps {caps}")))?;
        let buffer =
            sample.buffer().ok_or_else(|| IngestError::Pipeline("sample without buffer".into()))?;
        let vf = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info)
            .map_err(|_| IngestError::Pipeline("cannot map video frame".into()))?;
        let (w, h) = (info.width() as usize, info.height() as usize);
        let stride = vf.plane_stride()[0] as usize;
        let data =
            vf.plane_data(0).map_err(|_| IngestError::Pipeline("cannot read plane".into()))?;
        let row = w * 3;
        let rgb: Arc<[u8]> = if stride == row {
            Arc::from(&data[..row * h])
        } else {
            let mut v = Vec::with_capacity(row * h);
            for y in 0..h {
                v.extend_from_slice(&data[y * stride..y * stride + row]);
            }
            Arc::from(v)
        };
        self.index += 1;
        Ok(Frame {
            camera_id: self.camera_id.clone(),
            index: self.index,
            width: w as u32,
            height: h as u32,
            rgb,
            pts_ns: buffer.pts().map(|p| p.nseconds()),
            captured_at: OffsetDateTime::now_utc(),
            captured_instant: Instant::now(),
        })
    }
}

impl GstStream {
    /// Handles pending bus messages; returns an error or EOS to report.
    fn poll_bus(&mut self) -> Option<StreamEvent> {
        while let Some(msg) = self.bus.pop_filtered(&[
            gst::MessageType::Error,
            gst::MessageType::Eos,
            gst::MessageType::Element,
        ]) {
            if let Some(ev) = self.handle_message(&msg) {
                return Some(ev);
            }
        }
        None
    }

    /// Handles one bus message; returns an error or EOS to report.
    fn handle_message(&mut self, msg: &gst::Message) -> Option<StreamEvent> {
        if let Some(rec) = &mut self.recording {
            if rec.handle(msg) {
                return None;
            }
        }
        match msg.view() {
            gst::MessageView::Error(e) => {
                let err = format_error(e);
                if let Some(rec) = &self.recording {
                    rec.on_error(msg, &err);
                }
                Some(StreamEvent::Error(err))
            }
            // Frames queued in the appsink before EOS are still delivered by `next`.
            gst::MessageView::Eos(_) if self.sink.as_ref().is_none_or(gst_app::AppSink::is_eos) => {
                Some(StreamEvent::Eos)
            }
            _ => None,
        }
    }
}

impl FrameStream for GstStream {
    fn next(&mut self, timeout: Duration) -> StreamEvent {
        if let Some(ev) = self.poll_bus() {
            return ev;
        }
        let Some(sink) = self.sink.clone() else {
            // Only recorded: wait for bus messages, then report the frames that passed.
            let deadline = Instant::now() + timeout;
            while let Some(left) = deadline.checked_duration_since(Instant::now()) {
                let waited = self.bus.timed_pop_filtered(
                    gst::ClockTime::from_nseconds(left.as_nanos() as u64),
                    &[gst::MessageType::Error, gst::MessageType::Eos, gst::MessageType::Element],
                );
                let Some(msg) = waited else { break };
                if let Some(ev) = self.handle_message(&msg) {
                    return ev;
                }
            }
            return StreamEvent::Idle;
        };
        match sink.try_pull_sample(gst::ClockTime::from_nseconds(timeout.as_nanos() as u64)) {
            Some(sample) => match self.make_frame(&sample) {
                Ok(f) => StreamEvent::Frame(f),
                Err(e) => StreamEvent::Error(e.to_string()),
            },
            None if sink.is_eos() => StreamEvent::Eos,
            None => StreamEvent::Idle,
        }
    }

    fn progress(&mut self) -> Option<(u64, Option<(u32, u32)>)> {
        self.progress.as_mut().map(Progress::take)
    }

    /// Ends the stream cleanly: EOS through the pipeline so the record branch finalises its
    /// last segment (indexed like any other), waiting at most 3 s.
    fn finish(&mut self) {
        if self.recording.is_none() {
            return;
        }
        self.pipeline.send_event(gst::event::Eos::new());
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            let Some(msg) = self.bus.timed_pop_filtered(
                gst::ClockTime::from_mseconds(100),
                &[gst::MessageType::Error, gst::MessageType::Eos, gst::MessageType::Element],
            ) else {
                continue;
            };
            if let Some(rec) = &mut self.recording {
                if rec.handle(&msg) {
                    continue;
                }
            }
            if matches!(msg.view(), gst::MessageView::Eos(_) | gst::MessageView::Error(_)) {
                break;
            }
        }
    }
}

impl Drop for GstStream {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
        if let Some(rec) = &mut self.recording {
            rec.abandon();
        }
    }
}

/// The video codec of a media file, if it is one the recorder can pass through
/// (`Some("h264" | "h265")`); `None` for any other codec.
pub fn discover_codec(path: &std::path::Path) -> Result<Option<&'static str>, IngestError> {
    use gstreamer_pbutils as pbutils;
    use gstreamer_pbutils::prelude::*;
    crate::gst::init()?;
    // A file URI needs an absolute path (configs name files relative to themselves).
    let abs = std::fs::canonicalize(path)
        .map_err(|e| IngestError::Source(format!("{}: {e}", path.display())))?;
    let uri = gst::glib::filename_to_uri(&abs, None)
        .map_err(|e| IngestError::Source(format!("{}: {e}", path.display())))?;
    let discoverer = pbutils::Discoverer::new(gst::ClockTime::from_seconds(10))
        .map_err(|e| IngestError::Gstreamer(format!("cannot create discoverer: {e}")))?;
    let info = discoverer
        .discover_uri(&uri)
        .map_err(|e| IngestError::Source(format!("cannot inspect {}: {e}", path.display())))?;
    let codec = info.video_streams().first().and_then(|v| v.caps()).and_then(|caps| {
        caps.structure(0).and_then(|s| match s.name().as_str() {
            "video/x-h264" => Some("h264"),
            "video/x-h265" => Some("h265"),
            _ => None,
        })
    });
    Ok(codec)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encodes the first 4 s of the PETS clip at 25 fps with 2 B-frames (not referenced)
    /// between reference pictures: 1 picture in 3 is a reference.
    fn b_frame_clip(dir: &std::path::Path) -> Option<std::path::PathBuf> {
        let pets = std::path::Path::new("test-videos/pets09-s2l1.mp4");
        if !pets.exists() || crate::gst::init().is_err() {
            return None;
        }
        let out = dir.join("b.mp4");
        let p = gst::parse::launch(&format!(
            "filesrc location={} ! decodebin ! videoscale ! video/x-raw,width=320,height=240 \
             ! videorate ! video/x-raw,framerate=25/1 ! identity eos-after=100 ! videoconvert \
             ! x264enc bframes=2 b-adapt=false b-pyramid=false key-int-max=25 \
               speed-preset=ultrafast ! h264parse ! mp4mux ! filesink location={}",
            pets.display(),
            out.display()
        ))
        .ok()?
        .downcast::<gst::Pipeline>()
        .ok()?;
        p.set_state(gst::State::Playing).ok()?;
        let bus = p.bus()?;
        let msg = bus.timed_pop_filtered(
            gst::ClockTime::from_seconds(60),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        );
        let _ = p.set_state(gst::State::Null);
        matches!(msg.map(|m| m.type_()), Some(gst::MessageType::Eos)).then_some(out)
    }

    fn frames(opener: &GstOpener) -> (Vec<Frame>, u64) {
        let mut s = opener.open_stream().unwrap();
        let mut out = Vec::new();
        loop {
            match s.next(Duration::from_secs(10)) {
                StreamEvent::Frame(f) => out.push(f),
                StreamEvent::Idle => {}
                StreamEvent::Eos => break,
                StreamEvent::Error(e) => panic!("{e}"),
            }
        }
        (out, s.skipped())
    }

    #[test]
    fn pictures_nothing_references_are_not_decoded_and_the_rest_decode_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let Some(clip) = b_frame_clip(dir.path()) else {
            eprintln!("SKIP: test video, GStreamer or x264enc missing (run `make setup`)");
            return;
        };
        let profile =
            crate::ingest::profile::HardwareProfile::load("cpu", std::path::Path::new("."))
                .unwrap();
        let mode =
            crate::ingest::profile::PipelineMode { realtime: false, drop: false, max_fps: 2.0 };
        let description =
            profile.render(&crate::config::Source::File(clip), "auto", 320, None, mode, None);
        let opener = |skip| GstOpener {
            camera_id: Arc::from("b"),
            description: description.clone(),
            record: None,
            skip_nonref_fps: skip,
            decoder_threads: 0,
        };
        let (all, none_skipped) = frames(&opener(None));
        // At 2 analysed frames a second, 8.3 reference pictures a second are enough: the
        // B-frames (2 in 3) are not decoded.
        let (some, skipped) = frames(&opener(Some(2.0)));
        assert_eq!(none_skipped, 0);
        assert!(skipped >= 50, "{skipped} of 100 pictures skipped");
        // As many analysed frames, each within one reference interval (3 pictures, 120 ms) of
        // the one decoding everything gives; where both gave the same picture, it is decoded
        // exactly the same.
        assert_eq!(all.len(), some.len());
        assert!(all.len() >= 7, "{}", all.len());
        let mut same = 0;
        for (a, b) in all.iter().zip(&some) {
            let (ta, tb) = (a.pts_ns.unwrap(), b.pts_ns.unwrap());
            assert!(ta.abs_diff(tb) <= 120_000_000, "{ta} vs {tb}");
            if ta == tb {
                assert!(a.rgb == b.rgb, "picture at {ta} ns decoded differently");
                same += 1;
            }
        }
        assert!(same >= 1);
        // Too few reference pictures for 5 analysed frames a second: nothing is skipped.
        let (_, skipped) = frames(&GstOpener { skip_nonref_fps: Some(5.0), ..opener(None) });
        assert_eq!(skipped, 0, "8.3 reference pictures a second are not 2 × 5");
    }

    #[test]
    fn discover_codec_handles_relative_paths_and_other_codecs() {
        let mp4 = std::path::Path::new("test-videos/../test-videos/pets09-s2l1.mp4");
        if !mp4.exists() || crate::gst::init().is_err() {
            eprintln!("SKIP: test video or GStreamer missing (run `make setup`)");
            return;
        }
        assert_eq!(
            discover_codec(mp4).unwrap(),
            Some("h264"),
            "a relative path (as configs give them)"
        );
        let avi = std::path::Path::new("/usr/share/doc/opencv-doc/examples/data/vtest.avi");
        if avi.exists() {
            assert_eq!(
                discover_codec(avi).unwrap(),
                None,
                "MS-MPEG4 is encoded once, not passed through"
            );
        }
        let e = discover_codec(std::path::Path::new("no/such/file.mp4")).unwrap_err().to_string();
        assert!(e.contains("no/such/file.mp4"), "{e}");
    }
}
