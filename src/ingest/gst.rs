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
use crate::types::Frame;

static INIT: OnceLock<Result<(), String>> = OnceLock::new();

/// Initialises GStreamer once; a failure is reported on every call.
pub fn init() -> Result<(), IngestError> {
    INIT.get_or_init(|| gst::init().map_err(|e| e.to_string()))
        .clone()
        .map_err(|e| IngestError::Gstreamer(format!("cannot initialise GStreamer: {e}")))
}

/// Opens a camera by launching a gst-launch style description.
pub struct GstOpener {
    pub camera_id: Arc<str>,
    pub description: String,
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
        let bus = pipeline.bus().ok_or_else(|| IngestError::Pipeline("pipeline has no bus".into()))?;
        if pipeline.set_state(gst::State::Playing).is_err() {
            let msg = bus_error(&bus, Duration::from_millis(500))
                .unwrap_or_else(|| "pipeline refused to start".to_string());
            let _ = pipeline.set_state(gst::State::Null);
            return Err(IngestError::Source(msg));
        }
        Ok(Box::new(GstStream { camera_id: self.camera_id.clone(), pipeline, sink, bus, index: 0 }))
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
}

impl GstStream {
    fn make_frame(&mut self, sample: &gst::Sample) -> Result<Frame, IngestError> {
        let caps = sample.caps().ok_or_else(|| IngestError::Pipeline("sample without caps".into()))?;
        let info = gst_video::VideoInfo::from_caps(caps)
            .map_err(|_| IngestError::Pipeline(format!("unexpected caps {caps}")))?;
        let buffer = sample.buffer().ok_or_else(|| IngestError::Pipeline("sample without buffer".into()))?;
        let vf = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info)
            .map_err(|_| IngestError::Pipeline("cannot map video frame".into()))?;
        let (w, h) = (info.width() as usize, info.height() as usize);
        let stride = vf.plane_stride()[0] as usize;
        let data = vf.plane_data(0).map_err(|_| IngestError::Pipeline("cannot read plane".into()))?;
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

impl FrameStream for GstStream {
    fn next(&mut self, timeout: Duration) -> StreamEvent {
        while let Some(msg) = self.bus.pop_filtered(&[gst::MessageType::Error, gst::MessageType::Eos]) {
            match msg.view() {
                gst::MessageView::Error(e) => return StreamEvent::Error(format_error(e)),
                // Frames queued in the appsink before EOS are still delivered below.
                gst::MessageView::Eos(_) if self.sink.is_eos() => return StreamEvent::Eos,
                _ => {}
            }
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
}

impl Drop for GstStream {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// True when this machine's GStreamer registry has the element factory.
pub fn has_element(name: &str) -> bool {
    init().is_ok() && gst::ElementFactory::find(name).is_some()
}
