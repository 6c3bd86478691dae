//! Event clips and exports: the indexed segments of a camera overlapping a time span,
//! remuxed (never re-encoded) into one regular MP4 (`mp4mux faststart=true`: `moov` before
//! `mdat`, no fragments) that browsers can seek.
//!
//! Each segment is read with `filesrc ! qtdemux ! h264parse|h265parse ! appsink`; a sample's
//! wall time is the segment's indexed start plus its PTS minus the first PTS of that file.
//! The clip keeps the samples from the last keyframe at or before the span's start up to
//! the last sample (in decode order) before its end, rebased so the first kept sample is at
//! 0, and pushes them through `appsrc ! parser ! mp4mux ! filesink` as they are read (only
//! the one GOP before the span's start is ever held in memory). Gaps between segments stay
//! gaps in the timeline. The file is written as `<out>.tmp` (the muxer's scratch file for
//! moving `moov` to the front is `<out>.faststart.tmp`, next to it rather than in /tmp),
//! fsynced, renamed to `<out>` and the directory fsynced. A crash can leave `*.tmp` files in
//! `clips/`; nothing references them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::clock::Clock;
use crate::config::{CameraConfig, RecordConfig};
use crate::store::recordings::{Clip, CLIPS_DIR};
use crate::store::{Store, StoreError};
use crate::types::Event;

/// Most segments one clip or export reads (a 30-minute export of 1-second segments).
const MAX_SEGMENTS: usize = 100_000;
/// A sample at most this much earlier than the previous one (clock jitter between the
/// indexed starts of consecutive segments) is moved just after it; an earlier one (an
/// overlapping segment) is dropped up to the next keyframe.
const OVERLAP_TOLERANCE_NS: i64 = 200_000_000;
/// How long a segment reader may stall before it is given up.
const READ_STALL: Duration = Duration::from_secs(20);
/// Base time the muxer gets to finish after EOS (plus 1 s per 10 MB written, for the
/// faststart rewrite).
const FINISH_TIMEOUT: Duration = Duration::from_secs(30);
/// Failed builds of one event clip before `Pending` gives up.
const MAX_FAILURES: u32 = 3;

/// What `build_mp4` wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipInfo {
    /// Wall time of the first kept sample (a keyframe at or before the requested start).
    pub start: OffsetDateTime,
    /// Wall time of the end of the last kept sample.
    pub end: OffsetDateTime,
    pub frames: u64,
    pub bytes: u64,
    pub starts_with_keyframe: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ClipError {
    #[error("camera `{camera}`: no recorded footage in {span}")]
    NoFootage { camera: String, span: String },
    #[error("camera `{camera}`: the footage of {span} is not indexed yet; retry in {retry_after_secs} s")]
    NotReady { camera: String, span: String, retry_after_secs: u64 },
    #[error("camera `{camera}`, {span}: {op} {}: {source}", path.display())]
    Io {
        camera: String,
        span: String,
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("camera `{camera}`, {span}: GStreamer: {message}")]
    Gstreamer { camera: String, span: String, message: String },
    /// The build was stopped by its caller (an export whose client went away).
    #[error("camera `{camera}`, {span}: cancelled")]
    Cancelled { camera: String, span: String },
    #[error("camera `{camera}`, {span}: {source}")]
    Store {
        camera: String,
        span: String,
        #[source]
        source: Box<StoreError>,
    },
}

/// The outcome of [`ensure_event_clip`].
#[derive(Debug, Clone, PartialEq)]
pub enum ClipState {
    Ready(Clip),
    /// The event is still active or the footage after it is not indexed yet.
    Pending {
        retry_after_secs: u64,
    },
    /// No segment of the camera overlaps the clip's span (and none will).
    NoFootage,
}

fn fmt_time(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// `start–end` as RFC 3339, for error messages.
pub fn span_text(start: OffsetDateTime, end: OffsetDateTime) -> String {
    format!("{}–{}", fmt_time(start), fmt_time(end))
}

/// Error context: camera and span.
struct Ctx<'a> {
    camera: &'a str,
    span: String,
}

impl Ctx<'_> {
    fn gst(&self, message: impl Into<String>) -> ClipError {
        ClipError::Gstreamer {
            camera: self.camera.into(),
            span: self.span.clone(),
            message: message.into(),
        }
    }
    fn io(&self, op: &'static str, path: &Path, source: std::io::Error) -> ClipError {
        ClipError::Io {
            camera: self.camera.into(),
            span: self.span.clone(),
            op,
            path: path.into(),
            source,
        }
    }
    fn store(&self, source: StoreError) -> ClipError {
        ClipError::Store {
            camera: self.camera.into(),
            span: self.span.clone(),
            source: Box::new(source),
        }
    }
    fn no_footage(&self) -> ClipError {
        ClipError::NoFootage { camera: self.camera.into(), span: self.span.clone() }
    }
}

fn ns(d: time::Duration) -> i64 {
    d.whole_nanoseconds().clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

fn clock(ns: i64) -> gst::ClockTime {
    gst::ClockTime::from_nseconds(ns.max(0) as u64)
}

/// Remuxes the indexed segments of `camera` overlapping `[start, end)` into one regular MP4
/// at `out` (see the module docs).
pub fn build_mp4(
    store: &Store,
    camera: &str,
    start: OffsetDateTime,
    end: OffsetDateTime,
    out: &Path,
) -> Result<ClipInfo, ClipError> {
    build_mp4_unless(store, camera, start, end, out, &|| false)
}

/// [`build_mp4`] that stops with [`ClipError::Cancelled`] (leaving no file) as soon as
/// `cancelled()` is true; asked before each segment and each sample.
pub fn build_mp4_unless(
    store: &Store,
    camera: &str,
    start: OffsetDateTime,
    end: OffsetDateTime,
    out: &Path,
    cancelled: &dyn Fn() -> bool,
) -> Result<ClipInfo, ClipError> {
    let cx = Ctx { camera, span: span_text(start, end) };
    let stop = || ClipError::Cancelled { camera: camera.into(), span: cx.span.clone() };
    if end <= start {
        return Err(cx.no_footage());
    }
    crate::gst::init().map_err(|e| cx.gst(e.to_string()))?;
    let segments = store
        .segments(Some(camera), Some(start), Some(end), MAX_SEGMENTS)
        .map_err(|e| cx.store(e))?;
    if segments.is_empty() {
        return Err(cx.no_footage());
    }
    let tmp = sibling(out, ".tmp");
    let mut guard = TmpGuard(Some(tmp.clone()));
    let span_ns = ns(end - start);
    let mut cut = Cutter::default();
    let mut writer: Option<Writer> = None;
    let mut emit = |k: Kept| -> Result<(), String> {
        let w = match writer.as_mut() {
            Some(w) => w,
            None => writer.insert(Writer::start(&tmp, &k)?),
        };
        w.push(k)
    };
    let mut read_errors: Vec<String> = Vec::new();

    'segments: for seg in &segments {
        if cancelled() {
            return Err(stop());
        }
        let path = match store.media_path(&seg.path) {
            Ok(p) => p,
            Err(e) => {
                read_errors.push(format!("segment {}: {e}", seg.id));
                continue;
            }
        };
        let mut reader = match SegmentReader::open(&path, &seg.codec) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(camera, segment = seg.id, path = %path.display(), "cannot read segment: {e}");
                read_errors.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        let seg_offset = ns(seg.start - start);
        let mut base: Option<i64> = None;
        cut.new_file();
        loop {
            if cancelled() {
                return Err(stop());
            }
            let sample = match reader.next() {
                Ok(Some(s)) => s,
                Ok(None) => break,
                Err(e) => {
                    // A torn (recovered) segment: keep what was read, go on with the next.
                    tracing::warn!(camera, segment = seg.id, path = %path.display(), "segment read stopped: {e}");
                    read_errors.push(format!("{}: {e}", path.display()));
                    break;
                }
            };
            let (Some(buf), Some(caps)) = (sample.buffer_owned(), sample.caps_owned()) else {
                continue;
            };
            let Some(pts) = buf.pts().or(buf.dts()).map(|t| t.nseconds() as i64) else { continue };
            let dts = buf.dts().map(|t| t.nseconds() as i64).unwrap_or(pts);
            let base = *base.get_or_insert(pts);
            let key = !buf.flags().contains(gst::BufferFlags::DELTA_UNIT);
            let s =
                Kept { pts: seg_offset + pts - base, dts: seg_offset + dts - base, key, buf, caps };
            if s.dts >= span_ns {
                break 'segments;
            }
            cut.feed(s, &mut emit).map_err(|e| cx.gst(e))?;
        }
    }
    let Some(writer) = writer else {
        return Err(match read_errors.into_iter().next() {
            Some(e) => cx.gst(format!("no readable footage: {e}")),
            None => cx.no_footage(),
        });
    };
    let stats = writer.finish().map_err(|e| cx.gst(e))?;
    // The file's creation time is the UTC wall time of its first frame.
    let first = start.saturating_add(time::Duration::nanoseconds(stats.first_pts));
    super::mp4::set_times(&tmp, first, OffsetDateTime::now_utc())
        .map_err(|e| cx.io("stamp the creation time of", &tmp, e))?;
    let bytes = super::fsync::sync_file_and_dir(&tmp).map_err(|e| cx.io("sync", &tmp, e))?;
    std::fs::rename(&tmp, out).map_err(|e| cx.io("rename", &tmp, e))?;
    guard.0 = None;
    if let Some(dir) = out.parent() {
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| cx.io("sync", dir, e))?;
    }
    let at = |rel: i64| start.saturating_add(time::Duration::nanoseconds(rel));
    Ok(ClipInfo {
        start: at(stats.first_pts),
        end: at(stats.end),
        frames: stats.frames,
        bytes,
        starts_with_keyframe: stats.first_key,
    })
}

/// `<out><suffix>` in the same directory.
fn sibling(out: &Path, suffix: &str) -> PathBuf {
    let mut name = out.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(suffix);
    out.with_file_name(name)
}

/// The muxer's faststart scratch file of `<out>.tmp`: `<out>.faststart.tmp`.
fn scratch_path(tmp: &Path) -> PathBuf {
    let name = tmp.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    tmp.with_file_name(format!("{}.faststart.tmp", name.trim_end_matches(".tmp")))
}

/// Removes the temporary files unless disarmed (error paths).
struct TmpGuard(Option<PathBuf>);

impl Drop for TmpGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(&p);
            let _ = std::fs::remove_file(scratch_path(&p));
        }
    }
}

/// A demuxed sample with its times relative to the requested start (ns).
struct Kept {
    pts: i64,
    dts: i64,
    key: bool,
    buf: gst::Buffer,
    caps: gst::Caps,
}

/// Decides which samples are kept: holds the GOP before the span's start, drops samples
/// that cannot be decoded (before a file's first keyframe, after an overlap).
#[derive(Default)]
struct Cutter {
    /// Samples from the last keyframe before the span's start (until the span starts).
    gop: Vec<Kept>,
    need_key: bool,
    /// Decode time and duration of the last sample accepted (kept or held).
    last_dts: Option<i64>,
    last_dur: i64,
    /// Added to the times of the current file's samples (see `feed`).
    file_shift: i64,
    started: bool,
}

impl Cutter {
    /// Starts the next segment file: it is decoded from its own first keyframe.
    fn new_file(&mut self) {
        self.need_key = true;
        self.file_shift = 0;
    }

    /// Takes one sample in decode order; passes the ones to keep to `emit`, in order.
    fn feed<E>(
        &mut self,
        mut s: Kept,
        emit: &mut impl FnMut(Kept) -> Result<(), E>,
    ) -> Result<(), E> {
        s.dts += self.file_shift;
        s.pts += self.file_shift;
        if let Some(last) = self.last_dts {
            if s.dts <= last {
                if last - s.dts <= OVERLAP_TOLERANCE_NS && (s.key || !self.need_key) {
                    // Jitter between the indexed starts of consecutive segments: the rest
                    // of this file moves to follow the previous sample.
                    let shift = last + self.last_dur.max(1_000) - s.dts;
                    self.file_shift += shift;
                    s.dts += shift;
                    s.pts += shift;
                } else {
                    // An overlapping segment: skip to a keyframe after what was kept.
                    self.need_key = true;
                    return Ok(());
                }
            }
        }
        if self.need_key {
            if !s.key {
                return Ok(());
            }
            self.need_key = false;
        }
        self.last_dts = Some(s.dts);
        self.last_dur = s.buf.duration().map(|d| d.nseconds() as i64).unwrap_or(0);
        if !self.started {
            if s.key {
                // A keyframe at or before the start replaces the GOP held so far.
                self.gop.clear();
            }
            if s.pts < 0 {
                self.gop.push(s);
                return Ok(());
            }
            self.started = true;
            for k in self.gop.drain(..) {
                emit(k)?;
            }
        }
        emit(s)
    }
}

/// Reads the samples of one segment file, parsed to `avc`/`hvc1` access units.
struct SegmentReader {
    pipeline: gst::Pipeline,
    sink: gst_app::AppSink,
    bus: gst::Bus,
}

impl SegmentReader {
    fn open(path: &Path, codec: &str) -> Result<SegmentReader, String> {
        let (parser, caps) = parser_for(codec)?;
        let desc = format!("filesrc name=src ! qtdemux ! {parser} ! {caps} ! appsink name=sink sync=false max-buffers=32");
        let pipeline = gst::parse::launch(&desc)
            .map_err(|e| format!("cannot build the reader: {e}"))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| "reader is not a pipeline".to_string())?;
        let src = pipeline.by_name("src").ok_or("reader has no filesrc")?;
        let path_str =
            path.to_str().ok_or_else(|| format!("path {} is not UTF-8", path.display()))?;
        src.set_property("location", path_str);
        let sink = pipeline
            .by_name("sink")
            .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
            .ok_or("reader has no appsink")?;
        let bus = pipeline.bus().ok_or("reader has no bus")?;
        let reader = SegmentReader { pipeline, sink, bus };
        if reader.pipeline.set_state(gst::State::Playing).is_err() {
            return Err(reader.bus_error().unwrap_or_else(|| "reader refused to start".into()));
        }
        Ok(reader)
    }

    fn bus_error(&self) -> Option<String> {
        crate::gst::bus_error(&self.bus, Duration::ZERO)
    }

    fn next(&mut self) -> Result<Option<gst::Sample>, String> {
        let t0 = Instant::now();
        loop {
            if let Some(s) = self.sink.try_pull_sample(gst::ClockTime::from_mseconds(200)) {
                return Ok(Some(s));
            }
            if self.sink.is_eos() {
                return Ok(None);
            }
            if let Some(e) = self.bus_error() {
                return Err(e);
            }
            if t0.elapsed() > READ_STALL {
                return Err(format!("no sample for {} s", READ_STALL.as_secs()));
            }
        }
    }
}

impl Drop for SegmentReader {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

fn parser_for(codec: &str) -> Result<(&'static str, &'static str), String> {
    match codec {
        "h264" => Ok(("h264parse", "video/x-h264,stream-format=avc,alignment=au")),
        "h265" => Ok(("h265parse", "video/x-h265,stream-format=hvc1,alignment=au")),
        other => Err(format!("unsupported codec `{other}` (expected h264 or h265)")),
    }
}

struct WriterStats {
    first_pts: i64,
    end: i64,
    frames: u64,
    first_key: bool,
}

/// `appsrc ! parser ! mp4mux faststart=true ! filesink`.
struct Writer {
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
    bus: gst::Bus,
    caps: gst::Caps,
    /// Subtracted from the kept samples' times (the first sample's decode time).
    offset: i64,
    last_dts: i64,
    first_pts: i64,
    end: i64,
    frames: u64,
    first_key: bool,
    bytes_in: u64,
}

impl Writer {
    fn start(tmp: &Path, first: &Kept) -> Result<Writer, String> {
        let name = first.caps.structure(0).map(|s| s.name().to_string()).unwrap_or_default();
        let parser = match name.as_str() {
            "video/x-h264" => "h264parse",
            "video/x-h265" => "h265parse",
            other => return Err(format!("unsupported stream `{other}`")),
        };
        let desc = format!(
            "appsrc name=src format=time block=true max-bytes=4000000 ! {parser} ! mp4mux name=mux faststart=true ! filesink name=sink"
        );
        let pipeline = gst::parse::launch(&desc)
            .map_err(|e| format!("cannot build the muxer: {e}"))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| "muxer is not a pipeline".to_string())?;
        let tmp_str = tmp.to_str().ok_or_else(|| format!("path {} is not UTF-8", tmp.display()))?;
        let faststart = scratch_path(tmp);
        let faststart_str = faststart
            .to_str()
            .ok_or_else(|| format!("path {} is not UTF-8", faststart.display()))?;
        pipeline.by_name("sink").ok_or("muxer has no filesink")?.set_property("location", tmp_str);
        // Keep the faststart rewrite's scratch file on the data disk, not in /tmp.
        pipeline
            .by_name("mux")
            .ok_or("muxer has no mp4mux")?
            .set_property("faststart-file", faststart_str);
        let src = pipeline
            .by_name("src")
            .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
            .ok_or("muxer has no appsrc")?;
        src.set_caps(Some(&first.caps));
        let bus = pipeline.bus().ok_or("muxer has no bus")?;
        if pipeline.set_state(gst::State::Playing).is_err() {
            let msg = bus_error(&bus).unwrap_or_else(|| "muxer refused to start".into());
            let _ = pipeline.set_state(gst::State::Null);
            return Err(msg);
        }
        Ok(Writer {
            pipeline,
            src,
            bus,
            caps: first.caps.clone(),
            offset: first.dts.min(first.pts),
            last_dts: -1,
            first_pts: first.pts,
            end: first.pts,
            frames: 0,
            first_key: first.key,
            bytes_in: 0,
        })
    }

    fn push(&mut self, k: Kept) -> Result<(), String> {
        if k.caps != self.caps {
            self.src.set_caps(Some(&k.caps));
            self.caps = k.caps;
        }
        let pts = k.pts - self.offset;
        let dts = (k.dts - self.offset).min(pts).max(self.last_dts + 1).max(0);
        let pts = pts.max(dts);
        self.last_dts = dts;
        let mut buf = k.buf;
        let dur = buf.duration().map(|d| d.nseconds() as i64).unwrap_or(0);
        {
            let b = buf.make_mut();
            b.set_pts(clock(pts));
            b.set_dts(clock(dts));
        }
        self.bytes_in += buf.size() as u64;
        self.frames += 1;
        self.end = self.end.max(k.pts + dur);
        self.src
            .push_buffer(buf)
            .map_err(|e| bus_error(&self.bus).unwrap_or_else(|| format!("push failed: {e:?}")))?;
        Ok(())
    }

    fn finish(self) -> Result<WriterStats, String> {
        let result = (|| {
            self.src.end_of_stream().map_err(|e| format!("end of stream refused: {e:?}"))?;
            let timeout = FINISH_TIMEOUT + Duration::from_secs(self.bytes_in / 10_000_000);
            let msg = self
                .bus
                .timed_pop_filtered(
                    gst::ClockTime::from_nseconds(timeout.as_nanos() as u64),
                    &[gst::MessageType::Eos, gst::MessageType::Error],
                )
                .ok_or_else(|| format!("muxer did not finish within {} s", timeout.as_secs()))?;
            match msg.view() {
                gst::MessageView::Error(e) => Err(crate::gst::format_error(e)),
                _ => Ok(()),
            }
        })();
        let _ = self.pipeline.set_state(gst::State::Null);
        result?;
        Ok(WriterStats {
            first_pts: self.first_pts,
            end: self.end,
            frames: self.frames,
            first_key: self.first_key,
        })
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

fn bus_error(bus: &gst::Bus) -> Option<String> {
    crate::gst::bus_error(bus, Duration::from_millis(100))
}

// ---------------------------------------------------------------------------------------
// Event clips

/// The span of an event's clip: `[started_at − pre_roll, min(COALESCE(ended_at, now) +
/// post_roll, start + max_clip))`, and whether it is final (the event has ended, or the
/// span is cut at `max_clip_secs` and so no longer depends on the end).
pub fn clip_span(
    event: &Event,
    rec: &RecordConfig,
    now: OffsetDateTime,
) -> (OffsetDateTime, OffsetDateTime, bool) {
    // Saturating: an event time near the limits of the calendar must not panic (L3).
    let secs = time::Duration::seconds_f64;
    let start = event.started_at.saturating_sub(secs(rec.pre_roll_secs));
    let open_end = event.ended_at.unwrap_or(now).saturating_add(secs(rec.post_roll_secs));
    let cap = start.saturating_add(secs(rec.max_clip_secs));
    let end = open_end.min(cap).max(start);
    let is_final = event.ended_at.is_some() || open_end >= cap;
    (start, end, is_final)
}

/// `None` when the footage up to `end` is complete: an indexed segment of `camera` ends
/// at or after `end`, or `now` is past `end + 2 × segment_secs + 5 s` (nothing more will
/// come). Otherwise the seconds after which to ask again.
pub fn footage_wait(
    store: &Store,
    camera: &str,
    end: OffsetDateTime,
    segment_secs: f64,
    now: OffsetDateTime,
) -> Result<Option<u64>, StoreError> {
    // Saturating: `end` is a client's (bounded by the API, but this must not panic anyway).
    let horizon = end.saturating_add(time::Duration::seconds_f64(2.0 * segment_secs + 5.0));
    if now > horizon {
        return Ok(None);
    }
    // `segments` returns rows with end_ms > since: since = end − 1 ms means end_ms ≥ end.
    if !store
        .segments(Some(camera), Some(end.saturating_sub(time::Duration::milliseconds(1))), None, 1)?
        .is_empty()
    {
        return Ok(None);
    }
    // The segment holding `end` closes at the latest one segment length after it.
    let until_closed =
        (end.saturating_add(time::Duration::seconds_f64(segment_secs)) - now).as_seconds_f64();
    let until_horizon = (horizon - now).as_seconds_f64();
    Ok(Some((until_closed.min(until_horizon).ceil().max(0.0) as u64 + 1).max(1)))
}

/// `Err(NotReady)` while footage up to `end` may still be indexed (see [`footage_wait`]);
/// for exports, whose span a client chooses.
pub fn export_ready(
    store: &Store,
    camera: &str,
    start: OffsetDateTime,
    end: OffsetDateTime,
    segment_secs: f64,
    now: OffsetDateTime,
) -> Result<(), ClipError> {
    let cx = Ctx { camera, span: span_text(start, end) };
    match footage_wait(store, camera, end, segment_secs, now).map_err(|e| cx.store(e))? {
        None => Ok(()),
        Some(retry_after_secs) => {
            Err(ClipError::NotReady { camera: camera.into(), span: cx.span, retry_after_secs })
        }
    }
}

/// Serialises event clip builds (the recorder thread and API requests may ask for the same
/// clip at once; the second one finds the first one's row).
static BUILD_LOCK: Mutex<()> = Mutex::new(());

/// The clip of `event`: the stored one if its file exists, otherwise built from the
/// segments once the footage is complete (see [`footage_wait`]) into `clips/<id>.mp4`.
pub fn ensure_event_clip(
    store: &Store,
    event: &Event,
    rec: &RecordConfig,
    now: OffsetDateTime,
) -> Result<ClipState, ClipError> {
    let (start, end, is_final) = clip_span(event, rec, now);
    let cx = Ctx { camera: &event.camera_id, span: span_text(start, end) };
    if let Some(clip) = existing_clip(store, event.id).map_err(|e| cx.store(e))? {
        return Ok(ClipState::Ready(clip));
    }
    if !is_final {
        let secs = (rec.post_roll_secs + rec.segment_secs).ceil().max(1.0) as u64;
        return Ok(ClipState::Pending { retry_after_secs: secs });
    }
    if let Some(secs) = footage_wait(store, &event.camera_id, end, rec.segment_secs, now)
        .map_err(|e| cx.store(e))?
    {
        return Ok(ClipState::Pending { retry_after_secs: secs });
    }
    let _lock = BUILD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(clip) = existing_clip(store, event.id).map_err(|e| cx.store(e))? {
        return Ok(ClipState::Ready(clip));
    }
    let rel = format!("{CLIPS_DIR}/{}.mp4", event.id);
    let out = store.media_path(&rel).map_err(|e| cx.store(e))?;
    let dir = store.clips_dir();
    std::fs::create_dir_all(&dir).map_err(|e| cx.io("create", &dir, e))?;
    let t0 = Instant::now();
    let info = match build_mp4(store, &event.camera_id, start, end, &out) {
        Ok(info) => info,
        Err(ClipError::NoFootage { .. }) => return Ok(ClipState::NoFootage),
        Err(e) => return Err(e),
    };
    let clip =
        Clip { event_id: event.id, path: rel, start: info.start, end: info.end, bytes: info.bytes };
    store.put_clip(&clip).map_err(|e| cx.store(e))?;
    tracing::info!(
        camera = %event.camera_id, event = %event.id, frames = info.frames, bytes = info.bytes,
        secs = (info.end - info.start).as_seconds_f64(), ms = t0.elapsed().as_millis() as u64,
        "event clip built"
    );
    Ok(ClipState::Ready(clip))
}

/// The clip row of `event_id` if its file exists.
fn existing_clip(store: &Store, event_id: Uuid) -> Result<Option<Clip>, StoreError> {
    let Some(clip) = store.clip(event_id)? else { return Ok(None) };
    match store.media_path(&clip.path) {
        Ok(p) if p.is_file() => Ok(Some(clip)),
        _ => {
            tracing::warn!(event = %event_id, path = %clip.path, "clip file missing; rebuilding");
            Ok(None)
        }
    }
}

/// Clips waiting for the footage after their event to be indexed.
pub struct Pending {
    items: Vec<PendingClip>,
    clock: Arc<dyn Clock>,
}

struct PendingClip {
    event_id: Uuid,
    camera_id: String,
    rec: RecordConfig,
    due: Instant,
    failures: u32,
}

impl Pending {
    /// No clip waiting; `clock` schedules the tries and is the "now" of active events.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Pending { items: Vec::new(), clock }
    }

    /// Remembers an ended event; its clip is first tried after the post-roll.
    pub fn add(&mut self, event_id: Uuid, cam: &CameraConfig) {
        if self.items.iter().any(|i| i.event_id == event_id) {
            return;
        }
        self.items.push(PendingClip {
            event_id,
            camera_id: cam.id.clone(),
            rec: cam.record.clone(),
            due: self.clock.instant() + Duration::from_secs_f64(cam.record.post_roll_secs.max(0.0)),
            failures: 0,
        });
    }

    /// Events waiting for their clip.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Builds the clips that are due and ready. Cheap (no database access) when none is due.
    pub fn build_ready(&mut self, store: &Store, cameras: &HashMap<String, CameraConfig>) {
        let now = self.clock.instant();
        if !self.items.iter().any(|i| i.due <= now) {
            return;
        }
        let items = std::mem::take(&mut self.items);
        for mut item in items {
            if item.due > now {
                self.items.push(item);
                continue;
            }
            let rec = cameras.get(&item.camera_id).map(|c| &c.record).unwrap_or(&item.rec);
            let result = match store.get_event(item.event_id) {
                Ok(Some(event)) => ensure_event_clip(store, &event, rec, self.clock.now()),
                Ok(None) => {
                    tracing::debug!(event = %item.event_id, "event gone before its clip was built");
                    continue;
                }
                Err(e) => Err(ClipError::Store {
                    camera: item.camera_id.clone(),
                    span: "event lookup".into(),
                    source: Box::new(e),
                }),
            };
            match result {
                Ok(ClipState::Ready(_)) => {}
                Ok(ClipState::Pending { retry_after_secs }) => {
                    item.due = self.clock.instant() + Duration::from_secs(retry_after_secs);
                    self.items.push(item);
                }
                Ok(ClipState::NoFootage) => {
                    tracing::info!(camera = %item.camera_id, event = %item.event_id, "no recorded footage for the event clip");
                }
                Err(e) => {
                    item.failures += 1;
                    if item.failures >= MAX_FAILURES {
                        tracing::error!(camera = %item.camera_id, event = %item.event_id,
                            "giving up on the event clip after {} attempts: {e}", item.failures);
                    } else {
                        tracing::warn!(camera = %item.camera_id, event = %item.event_id,
                            attempt = item.failures, "event clip failed, will retry: {e}");
                        item.due = self.clock.instant()
                            + Duration::from_secs(10 * u64::from(item.failures));
                        self.items.push(item);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::recordings::NewSegment;
    use crate::types::{Change, EventChange, Severity};

    fn sample(pts_ms: i64, key: bool) -> Kept {
        crate::gst::init().unwrap();
        let mut buf = gst::Buffer::new();
        let b = buf.get_mut().unwrap();
        b.set_duration(gst::ClockTime::from_mseconds(100));
        if !key {
            b.set_flags(gst::BufferFlags::DELTA_UNIT);
        }
        let t = pts_ms * 1_000_000;
        Kept { pts: t, dts: t, key, buf, caps: gst::Caps::new_empty_simple("video/x-h264") }
    }

    /// Feeds (pts ms, keyframe) samples; returns the kept pts in ms.
    fn run(cut: &mut Cutter, samples: &[(i64, bool)]) -> Vec<i64> {
        let mut out = Vec::new();
        for &(t, k) in samples {
            cut.feed(sample(t, k), &mut |s: Kept| -> Result<(), ()> {
                out.push(s.pts / 1_000_000);
                Ok(())
            })
            .unwrap();
        }
        out
    }

    /// A GOP of 4 frames every 100 ms starting at `t` ms.
    fn gop(t: i64) -> Vec<(i64, bool)> {
        (0..4).map(|i| (t + i * 100, i == 0)).collect()
    }

    #[test]
    fn cutter_starts_at_the_last_keyframe_before_the_start() {
        let mut c = Cutter { need_key: true, ..Default::default() };
        let s: Vec<_> = [gop(-1000), gop(-600), gop(-200), gop(200)].concat();
        assert_eq!(run(&mut c, &s), vec![-200, -100, 0, 100, 200, 300, 400, 500]);
        // A keyframe exactly at the start replaces the held GOP.
        let mut c = Cutter { need_key: true, ..Default::default() };
        let s: Vec<_> = [gop(-400), vec![(0, true), (100, false)]].concat();
        assert_eq!(run(&mut c, &s), vec![0, 100]);
        // Footage starting after the span's start: from its first keyframe.
        let mut c = Cutter { need_key: true, ..Default::default() };
        assert_eq!(run(&mut c, &[(500, false), (600, true), (700, false)]), vec![600, 700]);
    }

    #[test]
    fn cutter_handles_jitter_overlap_and_broken_files() {
        // The next file's indexed start is 50 ms early: moved just after the last sample.
        let mut c = Cutter { need_key: true, ..Default::default() };
        let mut out = run(&mut c, &gop(0));
        c.new_file();
        out.extend(run(&mut c, &gop(250))); // starts 50 ms before the previous file ends
        c.new_file();
        out.extend(run(&mut c, &gop(800)));
        assert_eq!(out, (0..12).map(|i| i * 100).collect::<Vec<_>>());
        // A file overlapping by a whole GOP: dropped up to its first keyframe after the
        // kept footage.
        let mut c = Cutter { need_key: true, ..Default::default() };
        let mut out = run(&mut c, &[gop(0), gop(400)].concat());
        c.new_file();
        out.extend(run(&mut c, &[gop(0), gop(400), gop(800)].concat()));
        assert_eq!(
            out,
            [(0..8).map(|i| i * 100).collect::<Vec<_>>(), vec![800, 900, 1000, 1100]].concat()
        );
        // A file that does not start with a keyframe: its leading frames are dropped.
        let mut c = Cutter { need_key: true, ..Default::default() };
        assert_eq!(
            run(&mut c, &[(0, false), (100, false), (200, true), (300, false)]),
            vec![200, 300]
        );
    }

    fn ev(started: OffsetDateTime, ended: Option<OffsetDateTime>) -> Event {
        Event {
            id: Uuid::now_v7(),
            seq: 1,
            camera_id: "c".into(),
            grid_cell: None,
            kind: "presence".into(),
            severity: Severity::Low,
            started_at: started,
            ended_at: ended,
            state: if ended.is_some() {
                crate::types::EventState::Ended
            } else {
                crate::types::EventState::Active
            },
            objects: vec![],
            snapshot: None,
            rule: None,
            zone: None,
            line: None,
            detail: None,
            review: Default::default(),
            reviewed_by: None,
            reviewed_at: None,
            review_note: None,
        }
    }

    #[test]
    fn clip_spans() {
        let t = time::macros::datetime!(2026-05-01 08:00 UTC);
        let s = time::Duration::seconds;
        let rec = RecordConfig {
            pre_roll_secs: 5.0,
            post_roll_secs: 10.0,
            max_clip_secs: 60.0,
            ..Default::default()
        };
        assert_eq!(
            clip_span(&ev(t, Some(t + s(2))), &rec, t + s(100)),
            (t - s(5), t + s(12), true)
        );
        // Active: open end at now + post-roll, not final…
        assert_eq!(clip_span(&ev(t, None), &rec, t + s(20)), (t - s(5), t + s(30), false));
        // … until the cap makes it final.
        assert_eq!(clip_span(&ev(t, None), &rec, t + s(50)), (t - s(5), t + s(55), true));
        assert_eq!(
            clip_span(&ev(t, Some(t + s(600))), &rec, t + s(700)),
            (t - s(5), t + s(55), true)
        );
        // L3: at the ends of the calendar the span saturates instead of panicking.
        let (max, min) =
            (time::PrimitiveDateTime::MAX.assume_utc(), time::PrimitiveDateTime::MIN.assume_utc());
        let (start, end, _) = clip_span(&ev(max - s(2), Some(max)), &rec, max);
        assert_eq!((start, end), (max - s(7), max));
        let (start, end, _) = clip_span(&ev(min, Some(min + s(1))), &rec, min + s(1));
        assert_eq!((start, end), (min, min + s(11)));
    }

    /// L3: the footage horizon of a span ending at the last instant the calendar holds.
    #[test]
    fn footage_wait_at_the_end_of_the_calendar() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let max = time::PrimitiveDateTime::MAX.assume_utc();
        let w = footage_wait(&store, "c", max, 4.0, max - time::Duration::seconds(30)).unwrap();
        assert!(w.is_some_and(|secs| secs >= 1), "{w:?}");
        let r = export_ready(&store, "c", max - time::Duration::seconds(60), max, 4.0, max);
        assert!(matches!(r, Err(ClipError::NotReady { .. })), "{r:?}");
    }

    fn stored_event(
        store: &Store,
        camera: &str,
        start: OffsetDateTime,
        end: OffsetDateTime,
    ) -> Uuid {
        let id = Uuid::now_v7();
        let ch = |change, at| EventChange::bare(id, change, camera, "presence", Severity::Low, at);
        store.apply(&ch(Change::Started, start)).unwrap();
        store.apply(&ch(Change::Ended, end)).unwrap();
        id
    }

    fn cam(id: &str) -> CameraConfig {
        let mut c: CameraConfig = serde_json::from_value(
            serde_json::json!({"id": id, "url": "rtsp://cam/x", "models": ["default"]}),
        )
        .unwrap();
        c.record.post_roll_secs = 0.0;
        c.record.segment_secs = 4.0;
        c
    }

    #[test]
    fn pending_drops_no_footage_waits_and_gives_up_on_failures() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let clock = Arc::new(crate::clock::SimClock::new(OffsetDateTime::now_utc()));
        let now = clock.now();
        let cams: HashMap<String, CameraConfig> =
            ["a", "b"].iter().map(|c| (c.to_string(), cam(c))).collect();
        let mut p = Pending::new(clock.clone());

        // Long over, nothing recorded: dropped on the first try.
        let old = stored_event(
            &store,
            "a",
            now - time::Duration::hours(1),
            now - time::Duration::minutes(59),
        );
        p.add(old, &cams["a"]);
        p.add(old, &cams["a"]);
        assert_eq!(p.len(), 1, "added once");
        p.build_ready(&store, &cams);
        assert!(p.is_empty());

        // Just ended: waits for its post-roll footage.
        let recent = stored_event(&store, "a", now - time::Duration::seconds(2), now);
        p.add(recent, &cams["a"]);
        p.build_ready(&store, &cams);
        assert_eq!(p.len(), 1);
        assert!(p.items[0].due > clock.instant(), "rescheduled");
        assert!(store.clip(recent).unwrap().is_none());

        // Footage that cannot be read: retried, then given up (with the camera named).
        let t = now - time::Duration::hours(2);
        std::fs::create_dir_all(store.recordings_dir().join("b")).unwrap();
        std::fs::write(store.recordings_dir().join("b/1.mp4"), b"not an mp4 file at all").unwrap();
        store
            .insert_segment(&NewSegment {
                camera_id: "b".into(),
                path: "recordings/b/1.mp4".into(),
                start: t,
                end: t + time::Duration::seconds(10),
                start_pts_ns: None,
                end_pts_ns: None,
                bytes: 22,
                codec: "h264".into(),
                frames: None,
                recovered: false,
            })
            .unwrap();
        let broken = stored_event(
            &store,
            "b",
            t + time::Duration::seconds(5),
            t + time::Duration::seconds(6),
        );
        let event = store.get_event(broken).unwrap().unwrap();
        let err = ensure_event_clip(&store, &event, &cams["b"].record, now).unwrap_err();
        assert!(matches!(err, ClipError::Gstreamer { .. }), "{err}");
        assert!(err.to_string().contains("camera `b`"), "{err}");
        p.items.clear();
        p.add(broken, &cams["b"]);
        for attempt in 1..=MAX_FAILURES {
            assert_eq!(p.len(), 1, "attempt {attempt}");
            p.items[0].due = clock.instant();
            p.build_ready(&store, &cams);
        }
        assert!(p.is_empty(), "given up after {MAX_FAILURES} failures");
        let left: Vec<_> = std::fs::read_dir(store.clips_dir()).unwrap().collect();
        assert!(left.is_empty(), "nothing left in clips/: {left:?}");
    }
}
