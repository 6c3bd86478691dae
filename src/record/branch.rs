//! The record branch of a camera pipeline (`queue name=recq ! … ! splitmuxsink
//! name=recorder`, see pipelines/record.pipeline): names segment files, drops footage while
//! the gate is closed, and turns `splitmuxsink` fragment messages into [`RecEvent`]s. Ingest
//! attaches it to the pipeline it opens and hands it the pipeline's bus messages.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use time::OffsetDateTime;

use super::gate::RecordGate;
use super::{ClosedSegment, RecEvent, RecordSpec};

/// The record branch of one open pipeline.
pub struct Recording {
    spec: RecordSpec,
    recorder: gst::Element,
    /// Source pad of `recq`: its caps tell the codec.
    branch_pad: gst::Pad,
    /// Sink pad of `recq`: everything the stream delivers to the branch, before the gate.
    input_pad: gst::Pad,
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
    /// Finds the record branch in `pipeline` and hooks into it; the error says what is
    /// missing.
    pub fn attach(pipeline: &gst::Pipeline, spec: &RecordSpec) -> Result<Recording, String> {
        let recorder = pipeline
            .by_name("recorder")
            .ok_or("record branch has no splitmuxsink named `recorder`")?;
        let queue = pipeline.by_name("recq").ok_or("record branch has no queue named `recq`")?;
        let branch_pad = queue.static_pad("src").ok_or("record queue has no src pad")?;
        let input_pad = queue.static_pad("sink").ok_or("record queue has no sink pad")?;
        std::fs::create_dir_all(&spec.dir)
            .map_err(|e| format!("cannot create recording dir {}: {e}", spec.dir.display()))?;
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
        let need_keyframe = AtomicBool::new(false);
        branch_pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            gate_buffer(&gate, &need_keyframe, info)
        });
        Ok(Recording {
            spec: spec.clone(),
            recorder,
            branch_pad,
            input_pad,
            open: Vec::new(),
            base,
        })
    }

    /// The record queue's sink pad: what reaches the branch, whether or not the gate is open.
    pub fn input_pad(&self) -> gst::Pad {
        self.input_pad.clone()
    }

    /// Handles one bus message if it is the recorder's; true if it was.
    pub fn handle(&mut self, msg: &gst::Message) -> bool {
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

    /// Reports an error message (`error`, formatted) to the recorder when it came from the
    /// record branch (e.g. ENOSPC), so retention runs at once.
    pub fn on_error(&self, msg: &gst::Message, error: &str) {
        let from_recorder =
            msg.src().is_some_and(|s| s.has_as_ancestor(&self.recorder) || *s == self.recorder);
        if from_recorder {
            let _ = self.spec.tx.send(RecEvent::Failed {
                camera_id: self.spec.camera_id.clone(),
                message: error.to_string(),
            });
        }
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
    pub fn abandon(&mut self) {
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
pub fn segment_path(dir: &Path, camera: &str, now: OffsetDateTime, fragment: u32) -> String {
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
    need_keyframe: &AtomicBool,
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
