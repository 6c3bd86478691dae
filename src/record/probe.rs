//! What a recorded segment holds, read with GStreamer.
//!
//! [`probe`] demuxes a file (`filesrc ! qtdemux ! appsink`, no decoding) and reports its
//! codec, frame count, duration and picture size; start-up reconciliation uses it to index
//! recovered segments. [`decode_check`] decodes every frame (`filesrc ! decodebin ! appsink`)
//! and is what the crash tests use to show that every indexed segment plays. Both give up
//! after a timeout instead of hanging on a pathological file, and every error names the file.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

/// How long one probe or decode check may take.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// The video stream of a segment, from its container (nothing decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeInfo {
    /// `h264` or `h265`.
    pub codec: String,
    /// Video samples (frames) in the file.
    pub frames: u64,
    /// From the earliest presentation time to the end of the last frame.
    pub duration_ns: u64,
    /// The first sample is a keyframe (every segment must start with one).
    pub first_is_keyframe: bool,
    pub width: u32,
    pub height: u32,
}

/// Result of [`decode_check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeReport {
    pub frames_decoded: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// GStreamer or one of its elements is unusable: not the file's fault.
    #[error("GStreamer: {0}")]
    Setup(String),
    /// The file cannot be read, demuxed or decoded.
    #[error("{}: {msg}", path.display())]
    File { path: PathBuf, msg: String },
    #[error("{}: gave up after {} s", path.display(), after.as_secs())]
    Timeout { path: PathBuf, after: Duration },
}

impl ProbeError {
    /// True when the error says nothing about the file (GStreamer itself is broken), so the
    /// file must not be judged by it.
    pub fn is_setup(&self) -> bool {
        matches!(self, ProbeError::Setup(_))
    }
}

/// Demuxes `path` without decoding (see [`ProbeInfo`]). Fails for a file with no video
/// stream or a codec other than H.264/H.265.
pub fn probe(path: &Path) -> Result<ProbeInfo, ProbeError> {
    probe_with_timeout(path, TIMEOUT)
}

pub fn probe_with_timeout(path: &Path, timeout: Duration) -> Result<ProbeInfo, ProbeError> {
    let mut acc = Acc::default();
    run(path, "qtdemux", timeout, |sample| acc.add(sample))?;
    acc.finish(path)
}

/// Decodes every frame of `path` to its end (with whatever decoder `decodebin` picks).
pub fn decode_check(path: &Path) -> Result<DecodeReport, ProbeError> {
    decode_check_with_timeout(path, TIMEOUT)
}

pub fn decode_check_with_timeout(
    path: &Path,
    timeout: Duration,
) -> Result<DecodeReport, ProbeError> {
    let mut frames = 0u64;
    run(path, "decodebin", timeout, |_| {
        frames += 1;
        Ok(())
    })?;
    Ok(DecodeReport { frames_decoded: frames })
}

#[derive(Default)]
struct Acc {
    codec: Option<String>,
    width: u32,
    height: u32,
    frames: u64,
    first_is_keyframe: bool,
    min_pts: Option<u64>,
    max_end: Option<u64>,
    last_dur: Option<u64>,
}

impl Acc {
    fn add(&mut self, sample: &gst::Sample) -> Result<(), String> {
        if self.codec.is_none() {
            let s =
                sample.caps().and_then(|c| c.structure(0)).ok_or("video sample without caps")?;
            let codec = match s.name().as_str() {
                "video/x-h264" => "h264",
                "video/x-h265" => "h265",
                other => {
                    return Err(format!("codec `{other}` is not recorded (h264 or h265 expected)"))
                }
            };
            self.codec = Some(codec.into());
            self.width = s.get::<i32>("width").unwrap_or(0).max(0) as u32;
            self.height = s.get::<i32>("height").unwrap_or(0).max(0) as u32;
        }
        let Some(buf) = sample.buffer() else { return Ok(()) };
        if self.frames == 0 {
            self.first_is_keyframe = !buf.flags().contains(gst::BufferFlags::DELTA_UNIT);
        }
        self.frames += 1;
        if let Some(pts) = buf.pts().map(gst::ClockTime::nseconds) {
            let dur = buf.duration().map(gst::ClockTime::nseconds);
            if dur.is_some() {
                self.last_dur = dur;
            }
            self.min_pts = Some(self.min_pts.map_or(pts, |m| m.min(pts)));
            let end = pts + dur.or(self.last_dur).unwrap_or(0);
            self.max_end = Some(self.max_end.map_or(end, |m| m.max(end)));
        }
        Ok(())
    }

    fn finish(self, path: &Path) -> Result<ProbeInfo, ProbeError> {
        let Some(codec) = self.codec else {
            return Err(ProbeError::File { path: path.into(), msg: "no video frame".into() });
        };
        Ok(ProbeInfo {
            codec,
            frames: self.frames,
            duration_ns: match (self.min_pts, self.max_end) {
                (Some(a), Some(b)) => b.saturating_sub(a),
                _ => 0,
            },
            first_is_keyframe: self.first_is_keyframe,
            width: self.width,
            height: self.height,
        })
    }
}

/// Sets the pipeline to NULL when dropped (also on early returns).
struct Stop(gst::Pipeline);

impl Drop for Stop {
    fn drop(&mut self) {
        let _ = self.0.set_state(gst::State::Null);
    }
}

/// `filesrc location=path ! typefind ! <demux>`, its first video pad into an appsink (other pads into
/// fakesinks); calls `each` for every video sample until end of stream.
fn run(
    path: &Path,
    demux: &str,
    timeout: Duration,
    mut each: impl FnMut(&gst::Sample) -> Result<(), String>,
) -> Result<(), ProbeError> {
    let file_err = |msg: String| ProbeError::File { path: path.to_path_buf(), msg };
    crate::gst::init().map_err(|e| ProbeError::Setup(e.to_string()))?;
    let location = path.to_str().ok_or_else(|| file_err("path is not UTF-8".into()))?;
    // Fail early with a clear message instead of a GStreamer "resource not found".
    std::fs::metadata(path).map_err(|e| file_err(e.to_string()))?;
    let make = |name: &str| {
        gst::ElementFactory::make(name)
            .build()
            .map_err(|e| ProbeError::Setup(format!("cannot create element `{name}`: {e}")))
    };
    let pipeline = gst::Pipeline::new();
    let _stop = Stop(pipeline.clone());
    let src = make("filesrc")?;
    src.set_property("location", location);
    // Without a typefind in front, qtdemux waits forever on a file that is not an MP4.
    let typefind = make("typefind")?;
    let demuxer = make(demux)?;
    let sink = gst_app::AppSink::builder().sync(false).max_buffers(32).build();
    pipeline
        .add_many([&src, &typefind, &demuxer, sink.upcast_ref::<gst::Element>()])
        .map_err(|e| ProbeError::Setup(format!("cannot build pipeline: {e}")))?;
    gst::Element::link_many([&src, &typefind, &demuxer])
        .map_err(|e| ProbeError::Setup(format!("cannot link filesrc to {demux}: {e}")))?;

    let sink_pad = sink
        .static_pad("sink")
        .ok_or_else(|| ProbeError::Setup("appsink has no sink pad".into()))?;
    let weak_pipeline = pipeline.downgrade();
    demuxer.connect_pad_added(move |_, pad| {
        let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
        let is_video = caps.structure(0).is_some_and(|s| s.name().starts_with("video/"));
        if is_video && !sink_pad.is_linked() && pad.link(&sink_pad).is_ok() {
            return;
        }
        // Anything else (audio, a second video track) is drained so it cannot stall the demuxer.
        let Some(pipeline) = weak_pipeline.upgrade() else { return };
        if let Ok(fake) = gst::ElementFactory::make("fakesink").property("sync", false).build() {
            if pipeline.add(&fake).is_ok() {
                let _ = fake.sync_state_with_parent();
                if let Some(p) = fake.static_pad("sink") {
                    let _ = pad.link(&p);
                }
            }
        }
    });

    let bus = pipeline.bus().ok_or_else(|| ProbeError::Setup("pipeline has no bus".into()))?;
    if pipeline.set_state(gst::State::Playing).is_err() {
        let msg = crate::gst::bus_error(&bus, Duration::from_millis(500))
            .unwrap_or_else(|| "pipeline refused to start".into());
        return Err(file_err(msg));
    }
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_mseconds(50)) {
            each(&sample).map_err(file_err)?;
        } else if sink.is_eos() {
            break;
        }
        if let Some(msg) = crate::gst::bus_error(&bus, Duration::ZERO) {
            return Err(file_err(msg));
        }
        if Instant::now() >= deadline {
            return Err(ProbeError::Timeout { path: path.to_path_buf(), after: timeout });
        }
    }
    // An error posted just before end of stream still counts.
    match crate::gst::bus_error(&bus, Duration::ZERO) {
        Some(msg) => Err(file_err(msg)),
        None => Ok(()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn test_video() -> PathBuf {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("test-videos/pets09-s2l1.mp4");
        assert!(
            p.exists(),
            "{} is missing: run `make setup` (tools/make-test-videos.sh)",
            p.display()
        );
        p
    }

    /// Records `secs` of the test video into `dir` exactly like a camera's record branch
    /// (fragmented mp4mux in splitmuxsink, `segment_secs` per file); returns the files in
    /// order.
    pub(crate) fn record_segments(dir: &Path, segment_secs: u64, secs: u64) -> Vec<PathBuf> {
        crate::gst::init().unwrap();
        std::fs::create_dir_all(dir).unwrap();
        let desc = format!(
            "filesrc location={src} ! parsebin ! video/x-h264 ! h264parse ! identity eos-after={frames} ! \
             splitmuxsink async-finalize=true muxer-factory=mp4mux \
             muxer-properties=\"properties,fragment-duration=1000\" sink-factory=filesink \
             sink-properties=\"properties,buffer-mode=2\" max-size-time={ns} location={dir}/seg-%05d.mp4",
            src = test_video().display(),
            frames = secs * 10 + 1, // identity ends the stream instead of passing buffer N
            ns = segment_secs * 1_000_000_000,
            dir = dir.display(),
        );
        let pipeline = gst::parse::launch(&desc).unwrap();
        let bus = pipeline.bus().unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        let msg = bus
            .timed_pop_filtered(
                // Generous: the whole lib suite runs in parallel on 2 cores in `make test`.
                gst::ClockTime::from_seconds(180),
                &[gst::MessageType::Eos, gst::MessageType::Error],
            )
            .expect("recording finished within 180 s");
        pipeline.set_state(gst::State::Null).unwrap();
        if let gst::MessageView::Error(e) = msg.view() {
            panic!("recording failed: {} {:?}", e.error(), e.debug());
        }
        let mut files: Vec<PathBuf> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        files
    }

    #[test]
    fn probe_and_decode_a_recorded_segment() {
        let dir = tempfile::tempdir().unwrap();
        let files = record_segments(dir.path(), 4, 9);
        assert_eq!(files.len(), 3, "{files:?}");
        let info = probe(&files[0]).unwrap();
        assert_eq!(info.codec, "h264");
        assert_eq!((info.width, info.height), (768, 576));
        assert!(info.first_is_keyframe);
        assert_eq!(info.frames, 40, "{info:?}");
        assert_eq!(info.duration_ns, 4_000_000_000, "{info:?}");
        assert_eq!(decode_check(&files[0]).unwrap().frames_decoded, 40);
        let last = probe(&files[2]).unwrap();
        assert_eq!(last.frames, 10, "{last:?}");
        assert_eq!(decode_check(&files[2]).unwrap().frames_decoded, 10);
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.mp4");
        let e = probe(&missing).unwrap_err();
        assert!(
            matches!(e, ProbeError::File { .. }) && e.to_string().contains("missing.mp4"),
            "{e}"
        );
        let junk = dir.path().join("junk.mp4");
        std::fs::write(&junk, vec![0x5au8; 10_000]).unwrap();
        for e in [probe(&junk).unwrap_err(), decode_check(&junk).map(|_| ()).unwrap_err()] {
            assert!(
                matches!(e, ProbeError::File { .. }) && e.to_string().contains("junk.mp4"),
                "{e}"
            );
        }
        // Header only (a crash before the first fragment): no frame.
        let files = record_segments(&dir.path().join("rec"), 4, 4);
        let scan = crate::record::mp4::scan_file(&files[0]).unwrap();
        let first_moof = scan.boxes.iter().find(|b| b.is(b"moof")).unwrap().offset;
        let head = dir.path().join("head.mp4");
        std::fs::write(&head, &std::fs::read(&files[0]).unwrap()[..first_moof as usize]).unwrap();
        match probe(&head) {
            Ok(i) => assert_eq!(i.frames, 0, "{i:?}"),
            Err(e) => assert!(e.to_string().contains("head.mp4"), "{e}"),
        }
    }

    #[test]
    fn a_timeout_is_an_error_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let files = record_segments(dir.path(), 4, 4);
        let t0 = Instant::now();
        let e = decode_check_with_timeout(&files[0], Duration::ZERO).unwrap_err();
        assert!(matches!(e, ProbeError::Timeout { .. }), "{e}");
        assert!(e.to_string().contains("seg-00000.mp4"), "{e}");
        assert!(t0.elapsed() < Duration::from_secs(5));
    }
}
