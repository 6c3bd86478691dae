//! GStreamer implementation of the camera boundary: a pipeline ending in an appsink that
//! hands tightly packed RGB frames to Rust.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;
use time::OffsetDateTime;

use super::{FrameStream, IngestError, Opener, StreamEvent};
use crate::record::{ClosedSegment, RecEvent, RecordGate, RecordSpec};
use crate::types::Frame;

static INIT: OnceLock<Result<(), String>> = OnceLock::new();

/// Initialises GStreamer once; a failure is reported on every call.
pub fn init() -> Result<(), IngestError> {
    INIT.get_or_init(|| gst::init().map_err(|e| e.to_string()))
        .clone()
        .map_err(|e| IngestError::Gstreamer(format!("cannot initialise GStreamer: {e}")))
}

/// Opens a camera by launching a gst-launch style description. With `record`, the
/// description must contain the record branch (`splitmuxsink name=recorder` fed by
/// `queue name=recq`, see pipelines/record.pipeline).
pub struct GstOpener {
    pub camera_id: Arc<str>,
    pub description: String,
    pub record: Option<RecordSpec>,
}

impl Opener for GstOpener {
    fn open(&self) -> Result<Box<dyn FrameStream>, IngestError> {
        init()?;
        let el = gst::parse::launch(&self.description)
            .map_err(|e| IngestError::Pipeline(format!("cannot build pipeline: {e}")))?;
        let pipeline = el
            .downcast::<gst::Pipeline>()
            .map_err(|_| IngestError::Pipeline("description is not a pipeline".into()))?;
        let sink = pipeline
            .by_name("sink")
            .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
            .ok_or_else(|| IngestError::Pipeline("pipeline has no appsink named `sink`".into()))?;
        let bus =
            pipeline.bus().ok_or_else(|| IngestError::Pipeline("pipeline has no bus".into()))?;
        let recording = match &self.record {
            Some(spec) => Some(Recording::attach(&pipeline, spec)?),
            None => None,
        };
        if pipeline.set_state(gst::State::Playing).is_err() {
            let msg = bus_error(&bus, Duration::from_millis(500))
                .unwrap_or_else(|| "pipeline refused to start".to_string());
            let _ = pipeline.set_state(gst::State::Null);
            return Err(IngestError::Source(msg));
        }
        Ok(Box::new(GstStream {
            camera_id: self.camera_id.clone(),
            pipeline,
            sink,
            bus,
            index: 0,
            recording,
        }))
    }
}

/// First error (or EOS) on the bus within `timeout`, formatted for a health report.
fn bus_error(bus: &gst::Bus, timeout: Duration) -> Option<String> {
    let msg = bus.timed_pop_filtered(
        gst::ClockTime::from_nseconds(timeout.as_nanos() as u64),
        &[gst::MessageType::Error],
    )?;
    match msg.view() {
        gst::MessageView::Error(e) => Some(format_error(e)),
        _ => None,
    }
}

fn format_error(e: &gst::message::Error) -> String {
    let src = e.src().map(|s| s.name().to_string()).unwrap_or_default();
    // The debug string can contain the location (never credentials: URLs are passed as given
    // by the installer; redaction happens before logging in the supervisor).
    format!("{} (from {src})", e.error())
}

pub struct GstStream {
    camera_id: Arc<str>,
    pipeline: gst::Pipeline,
    sink: gst_app::AppSink,
    bus: gst::Bus,
    index: u64,
    recording: Option<Recording>,
}

/// The record branch of one open pipeline: names segment files, drops footage while the
/// gate is closed, and turns `splitmuxsink` fragment messages into [`RecEvent`]s.
struct Recording {
    spec: RecordSpec,
    recorder: gst::Element,
    /// Source pad of `recq`: its caps tell the codec.
    branch_pad: gst::Pad,
    /// Segment files being written: location → running time of their start (ns).
    open: Vec<(String, u64)>,
    /// Wall-clock time at running time 0 of this pipeline (shared with the file-naming
    /// callback, which may need it first).
    base: Arc<Timebase>,
}

/// Maps a pipeline's running time to wall-clock time: measured once, the first time it is
/// needed, as now − the pipeline's current running time.
struct Timebase {
    pipeline: gst::glib::WeakRef<gst::Pipeline>,
    base: std::sync::Mutex<Option<OffsetDateTime>>,
}

impl Timebase {
    fn wall(&self, running_time_ns: u64) -> OffsetDateTime {
        let mut base = self.base.lock().unwrap_or_else(|e| e.into_inner());
        let b = *base.get_or_insert_with(|| {
            let now = OffsetDateTime::now_utc();
            match self.pipeline.upgrade().and_then(|p| p.current_running_time()) {
                Some(rt) => now - Duration::from_nanos(rt.nseconds()),
                None => now,
            }
        });
        b + Duration::from_nanos(running_time_ns)
    }
}

impl Recording {
    fn attach(pipeline: &gst::Pipeline, spec: &RecordSpec) -> Result<Recording, IngestError> {
        let recorder = pipeline.by_name("recorder").ok_or_else(|| {
            IngestError::Pipeline("record branch has no splitmuxsink named `recorder`".into())
        })?;
        let queue = pipeline.by_name("recq").ok_or_else(|| {
            IngestError::Pipeline("record branch has no queue named `recq`".into())
        })?;
        let branch_pad = queue
            .static_pad("src")
            .ok_or_else(|| IngestError::Pipeline("record queue has no src pad".into()))?;
        std::fs::create_dir_all(&spec.dir).map_err(|e| {
            IngestError::Pipeline(format!(
                "cannot create recording dir {}: {e}",
                spec.dir.display()
            ))
        })?;
        let base = Arc::new(Timebase { pipeline: pipeline.downgrade(), base: Default::default() });
        let (dir, camera, tb) = (spec.dir.clone(), spec.camera_id.clone(), base.clone());
        // Named after the wall time of the fragment's first frame.
        recorder.connect("format-location-full", false, move |args| {
            let fragment = args.get(1).and_then(|v| v.get::<u32>().ok()).unwrap_or(0);
            let rt = args
                .get(2)
                .and_then(|v| v.get::<gst::Sample>().ok())
                .and_then(|sample| {
                    let pts = sample.buffer()?.pts()?;
                    let seg = sample.segment()?.downcast_ref::<gst::ClockTime>()?;
                    seg.to_running_time(pts)
                })
                .map(|t| t.nseconds());
            let start = match rt {
                Some(rt) => tb.wall(rt),
                None => OffsetDateTime::now_utc(),
            };
            Some(segment_path(&dir, &camera, start, fragment).to_value())
        });
        let gate = spec.gate.clone();
        let need_keyframe = std::sync::atomic::AtomicBool::new(false);
        branch_pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            gate_buffer(&gate, &need_keyframe, info)
        });
        Ok(Recording { spec: spec.clone(), recorder, branch_pad, open: Vec::new(), base })
    }

    /// Handles one bus message if it is the recorder's; true if it was.
    fn handle(&mut self, msg: &gst::Message) -> bool {
        let gst::MessageView::Element(el) = msg.view() else { return false };
        if msg.src() != Some(self.recorder.upcast_ref()) {
            return false;
        }
        let Some(s) = el.structure() else { return false };
        let (Ok(location), Ok(rt)) = (s.get::<String>("location"), s.get::<u64>("running-time"))
        else {
            return true;
        };
        match s.name().as_str() {
            "splitmuxsink-fragment-opened" => self.open.push((location, rt)),
            "splitmuxsink-fragment-closed" => {
                let start_rt = match self.open.iter().position(|(l, _)| *l == location) {
                    Some(i) => self.open.remove(i).1,
                    None => rt,
                };
                let codec = self.codec();
                let seg = ClosedSegment {
                    camera_id: self.spec.camera_id.clone(),
                    path: location.into(),
                    start: self.base.wall(start_rt),
                    end: self.base.wall(rt.max(start_rt)),
                    start_pts_ns: start_rt,
                    end_pts_ns: rt.max(start_rt),
                    codec,
                };
                let _ = self.spec.tx.send(RecEvent::Closed(seg));
            }
            _ => {}
        }
        true
    }

    fn codec(&self) -> String {
        let name = self
            .branch_pad
            .current_caps()
            .and_then(|c| c.structure(0).map(|s| s.name().to_string()));
        match name.as_deref() {
            Some("video/x-h265") => "h265".into(),
            _ => "h264".into(),
        }
    }

    /// Files still being written when the pipeline stops without finalising them (error,
    /// stall): the recorder repairs and indexes them.
    fn abandon(&mut self) {
        for (location, _) in self.open.drain(..) {
            let _ = self.spec.tx.send(RecEvent::Abandoned {
                camera_id: self.spec.camera_id.clone(),
                path: location.into(),
            });
        }
    }
}

/// `<dir>/<YYYYMMDD>/<unix ms>-<fragment>.mp4`: the name carries the wall time the file was
/// opened, which start-up reconciliation uses for files that were never indexed.
pub fn segment_path(
    dir: &std::path::Path,
    camera: &str,
    now: OffsetDateTime,
    fragment: u32,
) -> String {
    let day = format!("{:04}{:02}{:02}", now.year(), u8::from(now.month()), now.day());
    let day_dir = dir.join(day);
    if let Err(e) = std::fs::create_dir_all(&day_dir) {
        tracing::error!(camera, dir = %day_dir.display(), "cannot create recording dir: {e}");
    }
    let ms = now.unix_timestamp_nanos() / 1_000_000;
    day_dir.join(format!("{ms}-{fragment:05}.mp4")).display().to_string()
}

/// Pad probe of the record branch: drops buffers while the gate is closed, then resumes at
/// the next keyframe so no segment starts with frames that cannot be decoded.
fn gate_buffer(
    gate: &RecordGate,
    need_keyframe: &std::sync::atomic::AtomicBool,
    info: &mut gst::PadProbeInfo,
) -> gst::PadProbeReturn {
    use std::sync::atomic::Ordering::Relaxed;
    if !gate.is_open() {
        need_keyframe.store(true, Relaxed);
        return gst::PadProbeReturn::Drop;
    }
    if need_keyframe.load(Relaxed) {
        let delta = info.buffer().is_some_and(|b| b.flags().contains(gst::BufferFlags::DELTA_UNIT));
        if delta {
            return gst::PadProbeReturn::Drop;
        }
        need_keyframe.store(false, Relaxed);
    }
    gst::PadProbeReturn::Ok
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
            if let Some(rec) = &mut self.recording {
                if rec.handle(&msg) {
                    continue;
                }
            }
            match msg.view() {
                gst::MessageView::Error(e) => {
                    let err = format_error(e);
                    if let Some(rec) = &self.recording {
                        if msg
                            .src()
                            .is_some_and(|s| s.has_as_ancestor(&rec.recorder) || *s == rec.recorder)
                        {
                            let _ = rec.spec.tx.send(RecEvent::Failed {
                                camera_id: rec.spec.camera_id.clone(),
                                message: err.clone(),
                            });
                        }
                    }
                    return Some(StreamEvent::Error(err));
                }
                // Frames queued in the appsink before EOS are still delivered by `next`.
                gst::MessageView::Eos(_) if self.sink.is_eos() => return Some(StreamEvent::Eos),
                _ => {}
            }
        }
        None
    }
}

impl FrameStream for GstStream {
    fn next(&mut self, timeout: Duration) -> StreamEvent {
        if let Some(ev) = self.poll_bus() {
            return ev;
        }
        match self.sink.try_pull_sample(gst::ClockTime::from_nseconds(timeout.as_nanos() as u64)) {
            Some(sample) => match self.make_frame(&sample) {
                Ok(f) => StreamEvent::Frame(f),
                Err(e) => StreamEvent::Error(e.to_string()),
            },
            None if self.sink.is_eos() => StreamEvent::Eos,
            None => StreamEvent::Idle,
        }
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

/// True when this machine's GStreamer registry has the element factory.
pub fn has_element(name: &str) -> bool {
    init().is_ok() && gst::ElementFactory::find(name).is_some()
}

/// The video codec of a media file, if it is one the recorder can pass through
/// (`Some("h264" | "h265")`); `None` for any other codec.
pub fn discover_codec(path: &std::path::Path) -> Result<Option<&'static str>, IngestError> {
    use gstreamer_pbutils as pbutils;
    use gstreamer_pbutils::prelude::*;
    init()?;
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

    #[test]
    fn discover_codec_handles_relative_paths_and_other_codecs() {
        let mp4 = std::path::Path::new("test-videos/../test-videos/pets09-s2l1.mp4");
        if !mp4.exists() || init().is_err() {
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
