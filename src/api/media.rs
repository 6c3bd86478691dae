//! Recorded media: event clips, segments, exports (see docs/api.md, "Recordings and clips").
//!
//! Files are only ever addressed by ids from the database (event UUIDs, segment row ids) and
//! resolved with `Store::media_path`, which refuses any path leaving the data dir; nothing a
//! client sends becomes part of a path. Files are streamed in 64 KiB chunks (each read on a
//! blocking thread), never buffered whole.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use time::OffsetDateTime;

use super::{
    blocking, load_event, parse_event_id, parse_time, path_param, ApiError, ApiState, ErrorKind,
    Principal,
};
use crate::config::{Config, RecordConfig, StorageConfig};
use crate::record::clip::{self, ClipError, ClipState};
use crate::store::recordings::Segment;

/// Default and maximum page sizes of `GET /api/v1/recordings`.
pub const RECORDINGS_DEFAULT_LIMIT: usize = 200;
pub const RECORDINGS_MAX_LIMIT: usize = 1000;
/// Name prefix of export files in `clips/` (`export-<uuid>.mp4`, `.tmp` while built);
/// retention counts and evicts them ([`crate::record::retention`]).
pub use crate::record::retention::EXPORT_PREFIX;
/// Bytes per streamed chunk.
const CHUNK: usize = 64 * 1024;

/// How often a stalled media download checks whether its file was deleted (by retention)
/// and whether its deadline passed.
const STALL_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// What the media routes need from the configuration.
#[derive(Debug, Clone)]
pub struct MediaSettings {
    /// `[cameras.record]` of every camera that records, by camera id.
    pub recording: Arc<HashMap<String, RecordConfig>>,
    /// `storage.max_export_secs`: longest span `export.mp4` serves.
    pub max_export_secs: f64,
    /// Export slots and counters, shared by all requests.
    pub exports: Arc<Exports>,
    /// `[storage]`: the budget, for `GET /api/v1/storage`.
    pub storage: StorageConfig,
    /// The evidence signing key, read (or made) from the data dir at its first use.
    pub evidence_key: Arc<std::sync::Mutex<Option<Arc<crate::evidence::BoxKey>>>>,
    /// Masking of faces and plates in served stills and videos, or why it cannot run (the
    /// masked views are then refused with 503; docs/security.md "Masking").
    pub masker: crate::masking::MaskerState,
    /// The H.264 encoder of masked videos (the hardware profile's `h264_encoder`).
    pub encoder: String,
    /// Masked copies of clips and segments being built (one build per copy at a time).
    pub masked: Arc<MaskedCache>,
}

impl Default for MediaSettings {
    fn default() -> Self {
        let st = StorageConfig::default();
        MediaSettings {
            recording: Arc::default(),
            max_export_secs: st.max_export_secs,
            exports: Arc::new(Exports::new(&st)),
            storage: st,
            evidence_key: Arc::default(),
            masker: Err(NO_MASKER.into()),
            encoder: crate::masked_video::DEFAULT_ENCODER.into(),
            masked: Arc::default(),
        }
    }
}

use crate::uplink::NO_MASKER;

impl MediaSettings {
    pub fn from_config(cfg: &Config) -> Self {
        MediaSettings {
            recording: Arc::new(
                cfg.cameras
                    .iter()
                    .filter(|c| c.records(&cfg.base_dir))
                    .map(|c| (c.id.clone(), c.record.clone()))
                    .collect(),
            ),
            max_export_secs: cfg.storage.max_export_secs,
            exports: Arc::new(Exports::new(&cfg.storage)),
            storage: cfg.storage.clone(),
            evidence_key: Arc::default(),
            masker: Err(NO_MASKER.into()),
            encoder: crate::ingest::profile::HardwareProfile::for_config(cfg)
                .map(|p| p.elements.h264_encoder)
                .unwrap_or_else(|_| crate::masked_video::DEFAULT_ENCODER.into()),
            masked: Arc::default(),
        }
    }

    /// The record settings of `camera`; defaults for a camera that does not record (its
    /// footage, if any, is from an earlier configuration).
    pub(super) fn record(&self, camera: &str) -> RecordConfig {
        self.recording.get(camera).cloned().unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------------------
// Export slots

/// The export slots (`storage.max_concurrent_exports`): an export holds one from the start
/// of its build to the end of its download. Counters for tests and the logs.
#[derive(Debug)]
pub struct Exports {
    slots: Arc<tokio::sync::Semaphore>,
    /// `storage.max_concurrent_exports`.
    pub limit: usize,
    /// `storage.export_download_timeout_secs`.
    pub download_timeout: std::time::Duration,
    /// Builds finished (file ready to download).
    pub built: AtomicU64,
    /// Builds stopped because the client went away.
    pub cancelled: AtomicU64,
    /// Requests refused with `exports_busy`.
    pub refused: AtomicU64,
    /// Downloads cut off at the timeout.
    pub timed_out: AtomicU64,
}

impl Exports {
    pub fn new(st: &StorageConfig) -> Exports {
        let limit = st.max_concurrent_exports.max(1);
        Exports {
            slots: Arc::new(tokio::sync::Semaphore::new(limit)),
            limit,
            download_timeout: std::time::Duration::from_secs_f64(
                st.export_download_timeout_secs.clamp(1.0, 86_400.0),
            ),
            built: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            timed_out: AtomicU64::new(0),
        }
    }

    /// A slot for one build and its download, or `None` (counted as refused) when every
    /// slot is taken.
    fn try_slot(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let slot = self.slots.clone().try_acquire_owned().ok();
        if slot.is_none() {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        slot
    }

    /// Slots held now (builds and downloads).
    pub fn in_use(&self) -> usize {
        self.limit.saturating_sub(self.slots.available_permits())
    }
}

/// An export's file while it is built and downloaded: a named file in `clips/` (so
/// retention counts it and may delete it), deleted, and its slot freed, when this is
/// dropped — the download finished, failed, timed out, or the client went away.
struct ExportFile {
    path: PathBuf,
    deadline: tokio::time::Instant,
    exports: Arc<Exports>,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for ExportFile {
    fn drop(&mut self) {
        match std::fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {} // retention was first
            Err(e) => tracing::warn!(path = %self.path.display(), "removing export: {e}"),
        }
    }
}

/// Sets the flag when dropped: the request future was dropped (the client went away)
/// before the build it started had finished.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A file no longer has a name (retention deleted it): serving it on would pin its space.
fn unlinked(file: &File) -> bool {
    use std::os::unix::fs::MetadataExt;
    file.metadata().is_ok_and(|m| m.nlink() == 0)
}

// ---------------------------------------------------------------------------------------
// Byte ranges (RFC 9110 §14)

/// How to answer a request for a file of `total` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// No (usable) `Range`: 200 with the whole file. Also the answer to a multi-range
    /// request and to a range unit other than `bytes`.
    Full,
    /// 206 with bytes `start..=end`.
    Partial { start: u64, end: u64 },
    /// 416: malformed, reversed or beyond the end.
    Unsatisfiable,
}

fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses a `Range` header against a file of `total` bytes.
pub fn parse_range(header: Option<&str>, total: u64) -> ByteRange {
    let Some(h) = header else { return ByteRange::Full };
    let Some((unit, spec)) = h.trim().split_once('=') else { return ByteRange::Unsatisfiable };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return ByteRange::Full; // a unit we do not know is ignored (RFC 9110 §14.2)
    }
    if spec.contains(',') {
        return ByteRange::Full; // several ranges: answered with the whole file
    }
    let Some((a, b)) = spec.trim().split_once('-') else { return ByteRange::Unsatisfiable };
    let (a, b) = (a.trim(), b.trim());
    if total == 0 {
        return ByteRange::Unsatisfiable;
    }
    let last = total - 1;
    match (a.is_empty(), b.is_empty()) {
        // bytes=-n: the last n bytes.
        (true, false) => match digits(b) {
            Some(n) if n > 0 => ByteRange::Partial { start: total.saturating_sub(n), end: last },
            _ => ByteRange::Unsatisfiable,
        },
        // bytes=a-: from a to the end.
        (false, true) => match digits(a) {
            Some(s) if s <= last => ByteRange::Partial { start: s, end: last },
            _ => ByteRange::Unsatisfiable,
        },
        (false, false) => match (digits(a), digits(b)) {
            (Some(s), Some(e)) if s <= e && s <= last => {
                ByteRange::Partial { start: s, end: e.min(last) }
            }
            _ => ByteRange::Unsatisfiable,
        },
        (true, true) => ByteRange::Unsatisfiable,
    }
}

/// A body streaming `len` bytes of `file` from `offset`. Each chunk is read on a blocking
/// thread; a slow client holds no thread while it waits. Stops when the client goes away,
/// and — checked every [`STALL_CHECK`] even while the client reads nothing — when the file
/// was deleted (retention: the space is freed now, not when a stalled client leaves) or an
/// export's deadline passed; the response is then cut short. `export` is dropped (file
/// deleted, slot freed) when the stream ends, however it ends.
fn file_body(file: File, offset: u64, len: u64, export: Option<ExportFile>) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let file = Arc::new(file);
    tokio::spawn(async move {
        let export = export;
        let deadline = export.as_ref().map(|e| e.deadline);
        let mut tick = tokio::time::interval(STALL_CHECK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Why the stream stops early, or None to go on.
        let stop = |file: &File| -> Option<&'static str> {
            if unlinked(file) {
                Some("its file was deleted (retention)")
            } else if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                if let Some(e) = &export {
                    e.exports.timed_out.fetch_add(1, Ordering::Relaxed);
                }
                Some("storage.export_download_timeout_secs passed")
            } else {
                None
            }
        };
        let mut pos = offset;
        let end = offset + len;
        while pos < end {
            if let Some(why) = stop(&file) {
                tracing::warn!("media download cut off at byte {pos} of {end}: {why}");
                return;
            }
            let n = CHUNK.min((end - pos) as usize);
            let f = file.clone();
            let read = tokio::task::spawn_blocking(move || {
                let mut buf = vec![0u8; n];
                let mut got = 0;
                while got < n {
                    match f.read_at(&mut buf[got..], pos + got as u64) {
                        Ok(0) => {
                            return Err(std::io::Error::new(
                                std::io::ErrorKind::UnexpectedEof,
                                "file shrank while served",
                            ))
                        }
                        Ok(k) => got += k,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(Bytes::from(buf))
            })
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
            let failed = read.is_err();
            let send = tx.send(read);
            tokio::pin!(send);
            loop {
                tokio::select! {
                    sent = &mut send => {
                        if sent.is_err() || failed {
                            return; // the client went away, or the read failed
                        }
                        break;
                    }
                    _ = tick.tick() => {
                        if let Some(why) = stop(&file) {
                            tracing::warn!("stalled media download cut off at byte {pos} of {end}: {why}");
                            return;
                        }
                    }
                }
            }
            pos += n as u64;
        }
    });
    Body::from_stream(super::RxStream(rx))
}

/// A JSON error with status 416 and `Content-Range: bytes */total`.
fn range_not_satisfiable(total: u64, range: &str) -> Response {
    let mut r = ApiError::new(
        ErrorKind::BadRequest,
        format!("range `{range}` cannot be satisfied: the file has {total} bytes (use bytes=a-b, a- or -n)"),
    )
    .with_code("range_not_satisfiable")
    .into_response();
    *r.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
    if let Ok(v) = HeaderValue::from_str(&format!("bytes */{total}")) {
        r.headers_mut().insert(header::CONTENT_RANGE, v);
    }
    r
}

/// Serves an open file as `video/mp4`, honouring `Range`.
fn mp4_response(file: File, total: u64, headers: &HeaderMap) -> Response {
    let range_text = headers.get(header::RANGE).map(|v| v.to_str().unwrap_or("\u{fffd}"));
    let (status, start, len) = match parse_range(range_text, total) {
        ByteRange::Full => (StatusCode::OK, 0, total),
        ByteRange::Partial { start, end } => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        ByteRange::Unsatisfiable => return range_not_satisfiable(total, range_text.unwrap_or("")),
    };
    let mut resp = Response::new(file_body(file, start, len, None));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if status == StatusCode::PARTIAL_CONTENT {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{total}", start + len - 1))
        {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    resp
}

/// Opens a media file; a missing file is a 404 with `what` in the message.
fn open_media(path: &std::path::Path, what: &str) -> Result<(File, u64), ApiError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::warn!(path = %path.display(), "{what}: file missing");
            return Err(ApiError::not_found(format!(
                "{what}: the file is gone (deleted by retention?)"
            )));
        }
        Err(e) => return Err(ApiError::internal(format!("opening {}: {e}", path.display()))),
    };
    let total = file
        .metadata()
        .map_err(|e| ApiError::internal(format!("stat {}: {e}", path.display())))?
        .len();
    Ok((file, total))
}

/// 503 with `Retry-After`.
fn retry_later(message: String, code: &'static str, secs: u64) -> Response {
    let mut r = ApiError::new(ErrorKind::Unavailable, message).with_code(code).into_response();
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    r
}

fn clip_error(e: ClipError) -> ApiError {
    match e {
        ClipError::NoFootage { .. } => ApiError::not_found(e.to_string()).with_code("no_footage"),
        e => ApiError::internal(e),
    }
}

// ---------------------------------------------------------------------------------------
// Masked copies (docs/security.md "Masking", ADR 0045)

/// Name prefix of cached masked copies of clips and segments in `clips/`
/// (`export-masked-<key>.mp4`): as export files, retention counts them and deletes them
/// first when over budget, and start-up reconciliation removes them.
pub const MASKED_PREFIX: &str = "export-masked-";
/// Cached masked copies kept at most (the oldest go first), and for at most this long.
const MASKED_KEEP: usize = 16;
const MASKED_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(3600);

/// The masked copies being built: one lock per copy, so that the range requests of one
/// player wait for one build rather than start their own.
#[derive(Debug, Default)]
pub struct MaskedCache {
    building: std::sync::Mutex<HashMap<String, Arc<std::sync::Mutex<()>>>>,
}

/// The 503 of a masked video that cannot be produced (logged with its cause).
fn masking_failed(camera: &str, what: &str, cause: String) -> ApiError {
    tracing::warn!(camera, "masked {what} refused: {cause}");
    ApiError::new(
        ErrorKind::Unavailable,
        format!("masking cannot run, so the masked {what} is refused: {cause}"),
    )
    .with_code("masking_unavailable")
}

/// The view of a video a request asked for, resolved where the video is served: the
/// masked view fails closed (503) only once there is footage to serve, and an unmasked
/// view is audited (`view_unmasked`) only then, before anything is sent.
struct MediaView {
    unmasked: Option<crate::store::auth::NewAudit>,
    masker: crate::masking::MaskerState,
    now: OffsetDateTime,
}

/// Reads `unmasked` (400 for a bad value, 403 without `view_unmasked`).
fn media_view(
    st: &ApiState,
    p: &Principal,
    client: &super::auth::Client,
    query: Option<&str>,
    camera: &str,
    target: String,
) -> Result<MediaView, ApiError> {
    let unmasked = super::unmasked_request(p, query)?.then(|| {
        p.audit("view_unmasked", client)
            .target(target)
            .detail(serde_json::json!({ "camera_id": camera }))
    });
    Ok(MediaView { unmasked, masker: st.media.masker.clone(), now: st.auth.now() })
}

impl MediaView {
    /// (Blocking.) The masker to mask `camera`'s video with, or `None` to serve the original:
    /// unmasked (audited now) or a camera whose policy masks nothing. 503 when masking
    /// cannot run.
    fn resolve(
        &self,
        store: &crate::store::Store,
        camera: &str,
        what: &str,
    ) -> Result<Option<Arc<crate::masking::Masker>>, ApiError> {
        if let Some(a) = &self.unmasked {
            store.audit(a, self.now)?;
            return Ok(None);
        }
        match &self.masker {
            Ok(m) if masks(m, camera) => Ok(Some(m.clone())),
            Ok(_) => Ok(None),
            Err(e) => Err(masking_failed(camera, what, e.clone())),
        }
    }
}

/// Whether masking changes anything on `camera` (its policy masks faces or plates).
fn masks(m: &crate::masking::Masker, camera: &str) -> bool {
    let p = m.policy(camera);
    p.enabled && (p.faces || p.plates)
}

/// The cache key of a masked copy: the source file (path, size, modification time), the
/// camera and its policy, and the masking scheme.
fn masked_key(
    src: &std::path::Path,
    camera: &str,
    m: &crate::masking::Masker,
) -> Result<String, ApiError> {
    use sha2::Digest;
    let meta = std::fs::metadata(src)
        .map_err(|e| ApiError::internal(format!("stat {}: {e}", src.display())))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let text = format!(
        "{}\n{}\n{mtime}\n{camera}\n{:?}\nv1 {} {} {}",
        src.display(),
        meta.len(),
        m.policy(camera),
        crate::masked_video::RUN_INTERVAL_SECS,
        crate::masked_video::MOTION_GROW,
        crate::masked_video::EDGE_PX,
    );
    Ok(hex::encode(&sha2::Sha256::digest(text.as_bytes())[..12]))
}

/// A masked copy, or why there is none yet.
enum Masked {
    Ready(PathBuf),
    /// Every export slot is taken (`exports_busy`).
    Busy,
}

/// The masked copy of the clip or segment at `src` (blocking): cached in `clips/` and
/// reused while the source is unchanged; built when there is none, holding an export slot
/// while it is built (unless the caller holds one: `own_slot`). Masking failing is a 503
/// `masking_unavailable`.
fn masked_copy(
    media: &MediaSettings,
    store: &crate::store::Store,
    m: &crate::masking::Masker,
    camera: &str,
    src: &std::path::Path,
    what: &str,
    own_slot: bool,
) -> Result<Masked, ApiError> {
    let key = masked_key(src, camera, m)?;
    let dir = store.clips_dir();
    let out = dir.join(format!("{MASKED_PREFIX}{key}.mp4"));
    let lock = {
        let mut b = media
            .masked
            .building
            .lock()
            .map_err(|_| ApiError::internal("masked cache lock poisoned"))?;
        b.entry(key.clone()).or_default().clone()
    };
    let _held = lock.lock().map_err(|_| ApiError::internal("masked copy lock poisoned"))?;
    let result = (|| {
        if out.is_file() {
            return Ok(Masked::Ready(out.clone()));
        }
        let _slot = if own_slot {
            let Some(slot) = media.exports.try_slot() else { return Ok(Masked::Busy) };
            Some(slot)
        } else {
            None
        };
        std::fs::create_dir_all(&dir)
            .map_err(|e| ApiError::internal(format!("creating {}: {e}", dir.display())))?;
        crate::masked_video::mask_mp4(m, camera, src, &out, &media.encoder, what, &|| false)
            .map_err(|e| masking_failed(camera, what, e))?;
        prune_masked(&dir);
        Ok(Masked::Ready(out.clone()))
    })();
    if let Ok(mut b) = media.masked.building.lock() {
        if Arc::strong_count(&lock) <= 2 {
            b.remove(&key);
        }
    }
    result
}

/// Deletes cached masked copies beyond [`MASKED_KEEP`] (oldest first) or older than
/// [`MASKED_MAX_AGE`].
fn prune_masked(dir: &std::path::Path) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    let mut files: Vec<(PathBuf, std::time::SystemTime)> = rd
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with(MASKED_PREFIX) && n.ends_with(".mp4")
        })
        .filter_map(|e| Some((e.path(), e.metadata().ok()?.modified().ok()?)))
        .collect();
    files.sort_by_key(|f| std::cmp::Reverse(f.1));
    let now = std::time::SystemTime::now();
    for (i, (p, t)) in files.iter().enumerate() {
        let old = now.duration_since(*t).is_ok_and(|a| a > MASKED_MAX_AGE);
        if i >= MASKED_KEEP || old {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn exports_busy(exports: &Exports) -> Response {
    retry_later(
        format!(
            "{} exports or masked copies are being built or downloaded, the most at once (storage.max_concurrent_exports); try again later",
            exports.limit
        ),
        "exports_busy",
        5,
    )
}

// ---------------------------------------------------------------------------------------
// Handlers

enum ClipOutcome {
    File(File, u64),
    Pending(u64),
    NoFootage(String),
    Busy,
}

/// `GET /api/v1/events/{id}/clip.mp4[?unmasked=1]`: masked by default (a cached masked
/// copy); the original needs `view_unmasked` and is audited.
pub(super) async fn event_clip(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
    client: super::auth::Client,
    RawQuery(query): RawQuery,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = parse_event_id(id)?;
    let event = load_event(&st, &p, id).await?;
    let cam = event.camera_id.clone();
    let view = media_view(&st, &p, &client, query.as_deref(), &cam, format!("event:{id}"))?;
    let recording = st.media.recording.contains_key(&event.camera_id);
    let rec = st.media.record(&event.camera_id);
    let store = st.store.clone();
    let media = st.media.clone();
    let outcome = blocking(move || {
        let now = OffsetDateTime::now_utc();
        let cam = event.camera_id.clone();
        if !recording && store.clip(event.id)?.is_none() {
            // A camera that does not record gets no more footage: answer now rather than
            // after the footage horizon.
            let (start, end, _) = clip::clip_span(&event, &rec, now);
            if store.segments(Some(&cam), Some(start), Some(end), 1)?.is_empty() {
                return Ok(ClipOutcome::NoFootage(format!(
                    "camera `{cam}` does not record; no footage for event {id} ({})",
                    clip::span_text(start, end)
                )));
            }
        }
        match clip::ensure_event_clip(&store, &event, &rec, now).map_err(clip_error)? {
            ClipState::Ready(c) => {
                let mut path = store.media_path(&c.path)?;
                let what = format!("clip of event {id}");
                open_media(&path, &what)?; // a missing file is a 404 first
                if let Some(m) = view.resolve(&store, &cam, "clip")? {
                    match masked_copy(&media, &store, &m, &cam, &path, &what, true)? {
                        Masked::Ready(p) => path = p,
                        Masked::Busy => return Ok(ClipOutcome::Busy),
                    }
                }
                let (f, total) = open_media(&path, &what)?;
                Ok(ClipOutcome::File(f, total))
            }
            ClipState::Pending { retry_after_secs } => Ok(ClipOutcome::Pending(retry_after_secs)),
            ClipState::NoFootage => {
                let (start, end, _) = clip::clip_span(&event, &rec, now);
                Ok(ClipOutcome::NoFootage(format!(
                    "no recorded footage of camera `{cam}` for event {id} ({})",
                    clip::span_text(start, end)
                )))
            }
        }
    })
    .await?;
    Ok(match outcome {
        ClipOutcome::File(f, total) => mp4_response(f, total, &headers),
        ClipOutcome::Pending(secs) => retry_later(
            format!("the clip of event {id} is not ready: the event is active or its footage is not recorded yet"),
            "clip_pending",
            secs,
        ),
        ClipOutcome::NoFootage(msg) => ApiError::not_found(msg).with_code("no_footage").into_response(),
        ClipOutcome::Busy => exports_busy(&st.media.exports),
    })
}

/// A segment as listed by `GET /api/v1/recordings`.
#[derive(Serialize)]
struct Recording {
    #[serde(flatten)]
    segment: Segment,
    /// `/api/v1/recordings/{id}/segment.mp4`
    url: String,
}

#[derive(Serialize)]
pub(super) struct RecordingList {
    recordings: Vec<Recording>,
}

struct RecordingsQuery {
    camera: Option<String>,
    since: Option<OffsetDateTime>,
    until: Option<OffsetDateTime>,
    limit: usize,
}

/// Query pairs with unknown, repeated and empty parameters rejected (400 naming them).
pub(super) fn query_pairs(
    raw: Option<&str>,
    allowed: &[&str],
) -> Result<Vec<(String, String)>, ApiError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        let (k, v) = (k.into_owned(), v.into_owned());
        if !allowed.contains(&k.as_str()) {
            return Err(ApiError::bad_param(
                &k,
                format!("unknown query parameter `{k}` (allowed: {})", allowed.join(", ")),
            ));
        }
        if out.iter().any(|(seen, _)| *seen == k) {
            return Err(ApiError::bad_param(
                &k,
                format!("query parameter `{k}` given more than once"),
            ));
        }
        if v.is_empty() {
            return Err(ApiError::bad_param(
                &k,
                format!("query parameter `{k}` must not be empty"),
            ));
        }
        out.push((k, v));
    }
    Ok(out)
}

fn parse_recordings_query(raw: Option<&str>) -> Result<RecordingsQuery, ApiError> {
    let mut q =
        RecordingsQuery { camera: None, since: None, until: None, limit: RECORDINGS_DEFAULT_LIMIT };
    for (k, v) in query_pairs(raw, &["camera", "since", "until", "limit"])? {
        match k.as_str() {
            "camera" => q.camera = Some(v),
            "since" => q.since = Some(parse_time(&k, &v)?),
            "until" => q.until = Some(parse_time(&k, &v)?),
            _ => {
                q.limit = v.parse::<usize>().ok().filter(|n| (1..=RECORDINGS_MAX_LIMIT).contains(n)).ok_or_else(|| {
                    ApiError::bad_param(
                        "limit",
                        format!("query parameter `limit` must be an integer from 1 to {RECORDINGS_MAX_LIMIT}, got `{v}`"),
                    )
                })?
            }
        }
    }
    if let (Some(s), Some(u)) = (q.since, q.until) {
        if s >= u {
            return Err(ApiError::bad_param(
                "until",
                "query parameter `until` must be later than `since`",
            ));
        }
    }
    Ok(q)
}

/// `GET /api/v1/recordings`
pub(super) async fn list_recordings(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
    RawQuery(raw): RawQuery,
) -> Result<Json<RecordingList>, ApiError> {
    let q = parse_recordings_query(raw.as_deref())?;
    let filter = p.filter(&st.registry);
    // A camera outside the scope has no recordings, as if it did not exist.
    if let (Some(f), Some(c)) = (&filter, &q.camera) {
        if !f.allows_camera(c) {
            return Ok(Json(RecordingList { recordings: vec![] }));
        }
    }
    let store = st.store.clone();
    let segments = blocking(move || {
        Ok(match (&filter, &q.camera) {
            (Some(f), None) => store.segments_in(f, q.since, q.until, q.limit)?,
            _ => store.segments(q.camera.as_deref(), q.since, q.until, q.limit)?,
        })
    })
    .await?;
    let recordings = segments
        .into_iter()
        .map(|s| Recording { url: format!("/api/v1/recordings/{}/segment.mp4", s.id), segment: s })
        .collect();
    Ok(Json(RecordingList { recordings }))
}

/// `GET /api/v1/recordings/{id}/segment.mp4[?unmasked=1]`: masked by default (a cached
/// masked copy); the original needs `view_unmasked` and is audited.
pub(super) async fn segment_mp4(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
    client: super::auth::Client,
    RawQuery(query): RawQuery,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let raw = path_param(id)?;
    let id = raw.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
        ApiError::bad_param("id", format!("`id` must be a positive segment id, got `{raw}`"))
    })?;
    let store = st.store.clone();
    let (st2, p2) = (st.clone(), p.clone());
    let seg = blocking(move || {
        store
            .segment(id)?
            .filter(|s| p2.sees_camera(&st2.registry, &s.camera_id))
            .ok_or_else(|| ApiError::not_found(format!("recording {id} not found")))
    })
    .await?;
    let cam = seg.camera_id.clone();
    let view = media_view(&st, &p, &client, query.as_deref(), &cam, format!("recording:{id}"))?;
    let (store, media) = (st.store.clone(), st.media.clone());
    let opened = blocking(move || {
        let mut path = store.media_path(&seg.path)?;
        let what = format!("recording {id} of camera `{cam}`");
        open_media(&path, &what)?; // a missing file is a 404 first
        if let Some(m) = view.resolve(&store, &cam, "recording")? {
            match masked_copy(&media, &store, &m, &cam, &path, &what, true)? {
                Masked::Ready(p) => path = p,
                Masked::Busy => return Ok(None),
            }
        }
        open_media(&path, &what).map(Some)
    })
    .await?;
    Ok(match opened {
        Some((file, total)) => mp4_response(file, total, &headers),
        None => exports_busy(&st.media.exports),
    })
}

struct ExportQuery {
    camera: String,
    start: OffsetDateTime,
    end: OffsetDateTime,
}

fn parse_export_query(raw: Option<&str>, max_secs: f64) -> Result<ExportQuery, ApiError> {
    let (mut camera, mut start, mut end) = (None, None, None);
    for (k, v) in query_pairs(raw, &["camera", "start", "end", "unmasked"])? {
        match k.as_str() {
            "camera" => camera = Some(v),
            "start" => start = Some(parse_time(&k, &v)?),
            "end" => end = Some(parse_time(&k, &v)?),
            _ => {} // `unmasked`: read by `media_view`
        }
    }
    let missing = |k: &str| ApiError::bad_param(k, format!("query parameter `{k}` is required"));
    let camera = camera.ok_or_else(|| missing("camera"))?;
    let start = start.ok_or_else(|| missing("start"))?;
    let end = end.ok_or_else(|| missing("end"))?;
    let secs = (end - start).as_seconds_f64();
    if secs <= 0.0 {
        return Err(ApiError::bad_param("end", "query parameter `end` must be later than `start`"));
    }
    if secs > max_secs {
        return Err(ApiError::bad_param(
            "end",
            format!("the span `start`–`end` is {secs} s; at most {max_secs} s (storage.max_export_secs) can be exported"),
        ));
    }
    Ok(ExportQuery { camera, start, end })
}

/// `camera-20260501T081203Z.mp4`, with anything but `[A-Za-z0-9._-]` replaced by `_`.
fn export_filename(camera: &str, start: OffsetDateTime) -> String {
    let fmt = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    let t = start.to_offset(time::UtcOffset::UTC).format(&fmt).unwrap_or_default();
    let cam: String = camera
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' })
        .collect();
    format!("{cam}-{t}.mp4")
}

enum ExportOutcome {
    File(File, u64, ExportFile),
    NotReady(String, u64),
}

/// `GET /api/v1/recordings/export.mp4[?…&unmasked=1]`: masked by default (decoded, masked
/// and encoded again after the remux); the original needs `view_unmasked` and is audited.
pub(super) async fn export_mp4(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
    client: super::auth::Client,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = parse_export_query(raw.as_deref(), st.media.max_export_secs)?;
    if !p.sees_camera(&st.registry, &q.camera) {
        // Exactly what a camera that does not exist gets.
        let span = clip::span_text(q.start, q.end);
        return Err(clip_error(ClipError::NoFootage { camera: q.camera, span }));
    }
    let view =
        media_view(&st, &p, &client, raw.as_deref(), &q.camera, format!("camera:{}", q.camera))?;
    let encoder = st.media.encoder.clone();
    let exports = st.media.exports.clone();
    let Some(slot) = exports.try_slot() else { return Ok(exports_busy(&exports)) };
    // The client going away drops this future: the build stops at its next sample.
    let cancel = Arc::new(AtomicBool::new(false));
    let _cancel_on_drop = CancelOnDrop(cancel.clone());
    let recording = st.media.recording.contains_key(&q.camera);
    let rec = st.media.record(&q.camera);
    let filename = export_filename(&q.camera, q.start);
    let store = st.store.clone();
    let outcome = blocking(move || {
        let now = OffsetDateTime::now_utc();
        // A camera that does not record gets no more footage: no waiting for it.
        if recording {
            match clip::export_ready(&store, &q.camera, q.start, q.end, rec.segment_secs, now) {
                Ok(()) => {}
                Err(e @ ClipError::NotReady { retry_after_secs, .. }) => {
                    return Ok(ExportOutcome::NotReady(e.to_string(), retry_after_secs))
                }
                Err(e) => return Err(clip_error(e)),
            }
        }
        let dir = store.clips_dir();
        std::fs::create_dir_all(&dir)
            .map_err(|e| ApiError::internal(format!("creating {}: {e}", dir.display())))?;
        // A named file while it is downloaded, so that retention counts it (and may delete
        // it first when over budget); deleted when the download ends (`ExportFile`). Not
        // referenced by any clip row: start-up reconciliation removes one a crash left.
        let base = format!("{EXPORT_PREFIX}{}", uuid::Uuid::now_v7());
        let out: PathBuf = dir.join(format!("{base}.mp4"));
        let guard = ExportFile {
            path: out.clone(),
            deadline: tokio::time::Instant::now() + exports.download_timeout,
            exports: exports.clone(),
            _slot: slot,
        };
        if store.segments(Some(&q.camera), Some(q.start), Some(q.end), 1)?.is_empty() {
            let span = clip::span_text(q.start, q.end);
            return Err(clip_error(ClipError::NoFootage { camera: q.camera.clone(), span }));
        }
        // A masked export is remuxed to a scratch file first, then masked into `out`.
        let masker = view.resolve(&store, &q.camera, "export")?;
        let scratch = ScratchFiles(vec![dir.join(format!("{base}.orig.mp4"))]);
        let remux_to = if masker.is_some() { &scratch.0[0] } else { &out };
        let built = clip::build_mp4_unless(&store, &q.camera, q.start, q.end, remux_to, &|| {
            cancel.load(Ordering::Relaxed)
        });
        match built {
            Ok(_) => exports.built.fetch_add(1, Ordering::Relaxed),
            Err(e @ ClipError::Cancelled { .. }) => {
                exports.cancelled.fetch_add(1, Ordering::Relaxed);
                tracing::info!("export cancelled, the client went away: {e}");
                return Err(clip_error(e));
            }
            Err(e) => return Err(clip_error(e)),
        };
        if let Some(m) = &masker {
            let what =
                format!("export of camera `{}` ({})", q.camera, clip::span_text(q.start, q.end));
            crate::masked_video::mask_mp4(m, &q.camera, remux_to, &out, &encoder, &what, &|| {
                cancel.load(Ordering::Relaxed)
            })
            .map_err(|e| {
                if cancel.load(Ordering::Relaxed) {
                    exports.cancelled.fetch_add(1, Ordering::Relaxed);
                    let span = clip::span_text(q.start, q.end);
                    return clip_error(ClipError::Cancelled { camera: q.camera.clone(), span });
                }
                masking_failed(&q.camera, "export", e)
            })?;
        }
        drop(scratch);
        let (total, f) = File::open(&out)
            .and_then(|f| Ok((f.metadata()?.len(), f)))
            .map_err(|e| ApiError::internal(format!("opening {}: {e}", out.display())))?;
        Ok(ExportOutcome::File(f, total, guard))
    })
    .await?;
    let (file, total, guard) = match outcome {
        ExportOutcome::File(f, t, g) => (f, t, g),
        ExportOutcome::NotReady(msg, secs) => return Ok(retry_later(msg, "footage_pending", secs)),
    };
    let mut resp = Response::new(file_body(file, 0, total, Some(guard)));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(total));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("none"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

// ---------------------------------------------------------------------------------------
// Evidence packages

/// What an evidence package is of.
struct EvidenceSpec {
    camera: String,
    start: OffsetDateTime,
    end: OffsetDateTime,
    event: Option<crate::types::Event>,
}

enum EvidenceOutcome {
    File(File, u64, ExportFile, String),
    NotReady(String, &'static str, u64),
}

/// `GET /api/v1/events/{id}/evidence.tar`: the signed evidence package of an event (its
/// clip span, snapshot and event record with review history).
pub(super) async fn event_evidence(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
    client: super::auth::Client,
    RawQuery(query): RawQuery,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = parse_event_id(id)?;
    let event = load_event(&st, &p, id).await?;
    let rec = st.media.record(&event.camera_id);
    let (start, end, is_final) = clip::clip_span(&event, &rec, OffsetDateTime::now_utc());
    if !is_final {
        let secs = (rec.post_roll_secs + rec.segment_secs).ceil().max(1.0) as u64;
        return Ok(retry_later(
            format!("event {id} is active: its evidence package can be made once it has ended"),
            "clip_pending",
            secs,
        ));
    }
    let spec = EvidenceSpec { camera: event.camera_id.clone(), start, end, event: Some(event) };
    let target = format!("event:{id}");
    let view = media_view(&st, &p, &client, query.as_deref(), &spec.camera, target)?;
    evidence(st, p, client, spec, view).await
}

/// `GET /api/v1/recordings/evidence.tar?camera=…&start=…&end=…`: the signed evidence
/// package of a camera's footage over a range.
pub(super) async fn range_evidence(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
    client: super::auth::Client,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = parse_export_query(raw.as_deref(), st.media.max_export_secs)?;
    if !p.sees_camera(&st.registry, &q.camera) {
        let span = clip::span_text(q.start, q.end);
        return Err(clip_error(ClipError::NoFootage { camera: q.camera, span }));
    }
    let target = format!("camera:{}", q.camera);
    let view = media_view(&st, &p, &client, raw.as_deref(), &q.camera, target)?;
    let spec = EvidenceSpec { camera: q.camera, start: q.start, end: q.end, event: None };
    evidence(st, p, client, spec, view).await
}

async fn evidence(
    st: ApiState,
    p: Principal,
    client: super::auth::Client,
    spec: EvidenceSpec,
    view: MediaView,
) -> Result<Response, ApiError> {
    let encoder = st.media.encoder.clone();
    let exports = st.media.exports.clone();
    let Some(slot) = exports.try_slot() else { return Ok(exports_busy(&exports)) };
    let cancel = Arc::new(AtomicBool::new(false));
    let _cancel_on_drop = CancelOnDrop(cancel.clone());
    let recording = st.media.recording.contains_key(&spec.camera);
    let rec = st.media.record(&spec.camera);
    let key = super::locks::evidence_key(&st)?;
    let st2 = st.clone();
    let actor = p.actor();
    let p2 = p.clone();
    let outcome = blocking(move || {
        let (st, p) = (st2, p2);
        let store = &st.store;
        let now = OffsetDateTime::now_utc();
        let (cam, start, end) = (spec.camera.as_str(), spec.start, spec.end);
        if recording {
            match clip::export_ready(store, cam, start, end, rec.segment_secs, now) {
                Ok(()) => {}
                Err(e @ ClipError::NotReady { retry_after_secs, .. }) => {
                    return Ok(EvidenceOutcome::NotReady(e.to_string(), "footage_pending", retry_after_secs))
                }
                Err(e) => return Err(clip_error(e)),
            }
        }
        let dir = store.clips_dir();
        std::fs::create_dir_all(&dir)
            .map_err(|e| ApiError::internal(format!("creating {}: {e}", dir.display())))?;
        let base = format!("{EXPORT_PREFIX}{}", uuid::Uuid::now_v7());
        // Named `export-*` while built and downloaded: retention counts them and deletes
        // them first when over budget; start-up reconciliation removes a crash's leftovers.
        let tar_path = dir.join(format!("{base}.tar"));
        let guard = ExportFile {
            path: tar_path.clone(),
            deadline: tokio::time::Instant::now() + exports.download_timeout,
            exports: exports.clone(),
            _slot: slot,
        };
        let scratch = ScratchFiles(vec![
            dir.join(format!("{base}.mp4")),
            dir.join(format!("{base}.event.json")),
            dir.join(format!("{base}.masked.mp4")),
            dir.join(format!("{base}.snapshot.jpg")),
        ]);
        let no_footage = || {
            ApiError::not_found(format!(
                "no recorded footage of camera `{cam}` in {}: there is nothing to put into an evidence package",
                clip::span_text(start, end)
            ))
            .with_code("no_footage")
        };
        let (video_path, first, last, frames) = match &spec.event {
            // An event's video is its clip (remuxed from the original footage, never
            // re-encoded; built now if it does not exist yet).
            Some(ev) => {
                if !recording
                    && store.clip(ev.id)?.is_none()
                    && store.segments(Some(cam), Some(start), Some(end), 1)?.is_empty()
                {
                    return Err(no_footage());
                }
                match clip::ensure_event_clip(store, ev, &rec, now).map_err(clip_error)? {
                    ClipState::Ready(c) => (store.media_path(&c.path)?, c.start, c.end, None),
                    ClipState::Pending { retry_after_secs } => {
                        return Ok(EvidenceOutcome::NotReady(
                            format!("the footage of event {} is not recorded yet", ev.id),
                            "clip_pending",
                            retry_after_secs,
                        ))
                    }
                    ClipState::NoFootage => return Err(no_footage()),
                }
            }
            None => {
                let video = &scratch.0[0];
                match clip::build_mp4_unless(store, cam, start, end, video, &|| {
                    cancel.load(Ordering::Relaxed)
                }) {
                    Ok(info) => (video.clone(), info.start, info.end, Some(info.frames)),
                    Err(ClipError::NoFootage { .. }) => return Err(no_footage()),
                    Err(e @ ClipError::Cancelled { .. }) => {
                        exports.cancelled.fetch_add(1, Ordering::Relaxed);
                        return Err(clip_error(e));
                    }
                    Err(e) => return Err(clip_error(e)),
                }
            }
        };
        // A masked package: video and snapshot masked (re-encoded), `masked: true` in the
        // manifest. Unmasked (`view_unmasked`, audited now): the originals.
        let masker = view.resolve(store, cam, "evidence package")?;
        let (video_path, frames) = match &masker {
            // An event's clip: its cached masked copy (as `clip.mp4` serves it).
            Some(m) if spec.event.is_some() => {
                let what = format!("clip of event {}", spec.event.as_ref().map(|e| e.id.to_string()).unwrap_or_default());
                match masked_copy(&st.media, store, m, cam, &video_path, &what, false)? {
                    Masked::Ready(p) => (p, None),
                    Masked::Busy => return Err(ApiError::internal("masked copy without a slot reported busy")),
                }
            }
            Some(m) => {
                let what = format!("evidence package of camera `{cam}` ({})", clip::span_text(start, end));
                let out = &scratch.0[2];
                let info = crate::masked_video::mask_mp4(m, cam, &video_path, out, &encoder, &what, &|| {
                    cancel.load(Ordering::Relaxed)
                })
                .map_err(|e| masking_failed(cam, "evidence package", e))?;
                (out.clone(), Some(info.frames))
            }
            None => (video_path, frames),
        };
        let mut files = vec![crate::evidence::PackageFile {
            name: "video.mp4",
            media_type: "video/mp4",
            path: video_path,
        }];
        if let Some(ev) = &spec.event {
            if let Some(mut snap) = store.snapshot_file(ev).filter(|p| p.is_file()) {
                if let Some(m) = &masker {
                    let bytes = std::fs::read(&snap)
                        .map_err(|e| ApiError::internal(format!("reading {}: {e}", snap.display())))?;
                    let masked = m
                        .mask_jpeg(cam, &bytes, 90)
                        .map_err(|e| masking_failed(cam, "evidence package", e))?;
                    let out = &scratch.0[3];
                    std::fs::write(out, masked)
                        .map_err(|e| ApiError::internal(format!("writing {}: {e}", out.display())))?;
                    snap = out.clone();
                }
                files.push(crate::evidence::PackageFile {
                    name: "snapshot.jpg",
                    media_type: "image/jpeg",
                    path: snap,
                });
            }
            let history = store.audit_page(&crate::store::auth::AuditQuery {
                action: Some("event_review".into()),
                target: Some(format!("event:{}", ev.id)),
                limit: 1000,
                ..Default::default()
            })?;
            let mut reviews = history.entries;
            reviews.reverse(); // oldest first
            let locks: Vec<_> = store
                .evidence_locks(Some(&ev.camera_id), false, 10_000)?
                .into_iter()
                .filter(|l| l.event_id == Some(ev.id))
                .collect();
            let json = serde_json::json!({
                "event": ev,
                "review_history": reviews,
                "locks": locks,
            });
            let path = &scratch.0[1];
            let mut bytes = serde_json::to_vec_pretty(&json).map_err(ApiError::internal)?;
            bytes.push(b'\n');
            std::fs::write(path, bytes).map_err(|e| ApiError::internal(format!("writing {}: {e}", path.display())))?;
            files.push(crate::evidence::PackageFile {
                name: "event.json",
                media_type: "application/json",
                path: path.clone(),
            });
        }
        let segments = store
            .segments(Some(cam), Some(start), Some(end), 100_000)?
            .into_iter()
            .map(|s| crate::evidence::SegmentRef { start: s.start, end: s.end, codec: s.codec, recovered: s.recovered })
            .collect();
        let manifest = crate::evidence::new_manifest(
            &st.box_id,
            cam,
            spec.event.as_ref().map(|e| e.id),
            (start, end),
            (first, last, frames),
            segments,
            p.actor(),
            Some(p.role.as_str().to_string()),
            now,
        );
        let manifest = crate::evidence::Manifest { masked: masker.is_some(), ..manifest };
        let manifest = crate::evidence::write_package(manifest, &files, &key, &tar_path)
            .map_err(ApiError::internal)?;
        drop(scratch);
        let target = match &spec.event {
            Some(ev) => format!("event:{}", ev.id),
            None => format!("camera:{cam}"),
        };
        let audit = p.audit("evidence_export", &client).target(target).detail(serde_json::json!({
            "package_id": manifest.package_id,
            "camera_id": cam,
            "event_id": manifest.event_id,
            "start": manifest.start.format(&time::format_description::well_known::Rfc3339).ok(),
            "end": manifest.end.format(&time::format_description::well_known::Rfc3339).ok(),
            "files": manifest.files.iter().map(|f| serde_json::json!({"name": f.name, "sha256": f.sha256, "bytes": f.bytes})).collect::<Vec<_>>(),
            "key_fingerprint": manifest.key_fingerprint,
            "masked": manifest.masked,
        }));
        store.audit(&audit, now)?;
        exports.built.fetch_add(1, Ordering::Relaxed);
        let (total, f) = File::open(&tar_path)
            .and_then(|f| Ok((f.metadata()?.len(), f)))
            .map_err(|e| ApiError::internal(format!("opening {}: {e}", tar_path.display())))?;
        let name = format!("evidence-{}.tar", export_filename(cam, first).trim_end_matches(".mp4"));
        Ok(EvidenceOutcome::File(f, total, guard, name))
    })
    .await?;
    let (file, total, guard, filename) = match outcome {
        EvidenceOutcome::File(f, t, g, n) => (f, t, g, n),
        EvidenceOutcome::NotReady(msg, code, secs) => return Ok(retry_later(msg, code, secs)),
    };
    tracing::info!(%actor, bytes = total, "evidence package exported");
    let mut resp = Response::new(file_body(file, 0, total, Some(guard)));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-tar"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(total));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("none"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

/// Scratch files of a package build, removed when dropped.
struct ScratchFiles(Vec<PathBuf>);

impl Drop for ScratchFiles {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_parser() {
        use ByteRange::*;
        let t = 10_000;
        let p = |h: &str| parse_range(Some(h), t);
        assert_eq!(parse_range(None, t), Full);
        assert_eq!(p("bytes=0-499"), Partial { start: 0, end: 499 }, "first bytes");
        assert_eq!(p("bytes=500-999"), Partial { start: 500, end: 999 }, "middle");
        assert_eq!(p("bytes=-500"), Partial { start: 9_500, end: 9_999 }, "suffix");
        assert_eq!(p("bytes=1000-"), Partial { start: 1_000, end: 9_999 }, "open");
        assert_eq!(p("bytes=9999-"), Partial { start: 9_999, end: 9_999 }, "last byte");
        assert_eq!(p("bytes=9000-20000"), Partial { start: 9_000, end: 9_999 }, "end clamped");
        assert_eq!(
            p("bytes=-20000"),
            Partial { start: 0, end: 9_999 },
            "suffix longer than the file"
        );
        assert_eq!(p("BYTES = 1-2"), Partial { start: 1, end: 2 }, "unit case and spaces");
        assert_eq!(p("bytes=10000-"), Unsatisfiable, "beyond the end");
        assert_eq!(p("bytes=10000-10005"), Unsatisfiable, "beyond the end");
        assert_eq!(p("bytes=5-2"), Unsatisfiable, "reversed");
        for bad in [
            "bytes=",
            "bytes=-",
            "bytes=abc",
            "bytes=1-x",
            "bytes=-0",
            "bytes=+1-2",
            "bytes 0-1",
            "bytes=0x10-",
        ] {
            assert_eq!(p(bad), Unsatisfiable, "{bad}");
        }
        assert_eq!(p("bytes=0-1,5-6"), Full, "several ranges: whole file");
        assert_eq!(p("items=0-1"), Full, "unknown unit ignored");
        assert_eq!(parse_range(Some("bytes=0-"), 0), Unsatisfiable, "empty file");
    }

    #[test]
    fn export_filenames_are_safe() {
        let t = time::macros::datetime!(2026-05-01 10:12:03 +02:00);
        assert_eq!(export_filename("gate-north", t), "gate-north-20260501T081203Z.mp4");
        assert_eq!(export_filename("a\"b/../c", t), "a_b_.._c-20260501T081203Z.mp4");
    }

    #[test]
    fn export_query() {
        let ok = parse_export_query(
            Some("camera=c&start=2026-05-01T10:00:00Z&end=2026-05-01T10:30:00Z"),
            1800.0,
        )
        .unwrap();
        assert_eq!(ok.camera, "c");
        for (q, param) in [
            ("start=2026-05-01T10:00:00Z&end=2026-05-01T10:01:00Z", "camera"),
            ("camera=c&end=2026-05-01T10:01:00Z", "start"),
            ("camera=c&start=2026-05-01T10:00:00Z", "end"),
            ("camera=c&start=2026-05-01T10:00:00Z&end=2026-05-01T10:00:00Z", "end"),
            ("camera=c&start=2026-05-01T10:00:00Z&end=2026-05-01T10:30:00.001Z", "end"),
            ("camera=c&start=yesterday&end=2026-05-01T10:00:00Z", "start"),
            ("camera=c&start=2026-05-01T10:00:00Z&end=2026-05-01T10:01:00Z&format=mkv", "format"),
        ] {
            let e =
                parse_export_query(Some(q), 1800.0).err().unwrap_or_else(|| panic!("{q} accepted"));
            assert_eq!(e.parameter.as_deref(), Some(param), "{q}: {e}");
        }
    }
}

/// The media routes through the real router (auth middleware included).
#[cfg(test)]
mod api_tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use serde_json::Value;
    use time::Duration;
    use tower::ServiceExt;
    use uuid::Uuid;

    use super::*;
    use crate::api::router;
    use crate::health::Registry;
    use crate::store::recordings::{Clip, NewSegment};
    use crate::store::{self, Store};
    use crate::types::{Change, Event, EventChange, Severity};

    const TOKEN: &str = "gw_media_token";

    struct Fx {
        _dir: tempfile::TempDir,
        state: ApiState,
    }

    /// `recording`: the cameras that record (segment_secs 4).
    fn fixture(recording: &[&str]) -> Fx {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let rec = RecordConfig { segment_secs: 4.0, ..Default::default() };
        let state = ApiState {
            store,
            registry: Registry::new(),
            box_id: "box-m".into(),
            config_token_hashes: vec![store::hash_token(TOKEN)],
            started_at: OffsetDateTime::now_utc(),
            media: MediaSettings {
                recording: Arc::new(
                    recording.iter().map(|c| (c.to_string(), rec.clone())).collect(),
                ),
                max_export_secs: 600.0,
                ..Default::default()
            },
            auth: crate::api::AuthSettings::default(),
            open_data: Default::default(),
        };
        Fx { _dir: dir, state }
    }

    struct Resp {
        status: StatusCode,
        headers: HeaderMap,
        body: Vec<u8>,
    }

    impl Resp {
        fn header(&self, name: header::HeaderName) -> &str {
            self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
        }
        fn json(&self) -> Value {
            serde_json::from_slice(&self.body).unwrap_or_else(|e| {
                panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body))
            })
        }
        fn error(&self, status: StatusCode, code: &str) -> Value {
            assert_eq!(self.status, status, "{}", String::from_utf8_lossy(&self.body));
            let v = self.json();
            assert_eq!(v["error"]["code"], code, "{v}");
            v["error"].clone()
        }
    }

    async fn call(fx: &Fx, method: &str, uri: &str, range: Option<&str>, token: bool) -> Resp {
        let mut req = Request::builder().method(method).uri(uri);
        if token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {TOKEN}"));
        }
        if let Some(r) = range {
            req = req.header(header::RANGE, r);
        }
        let resp =
            router(fx.state.clone()).oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes().to_vec();
        Resp { status, headers, body }
    }

    async fn get(fx: &Fx, uri: &str, range: Option<&str>) -> Resp {
        call(fx, "GET", uri, range, true).await
    }

    fn event(fx: &Fx, camera: &str, start: OffsetDateTime, end: Option<OffsetDateTime>) -> Event {
        let id = Uuid::now_v7();
        let ch = |change, at| EventChange::bare(id, change, camera, "presence", Severity::Low, at);
        let e = fx.state.store.apply(&ch(Change::Started, start)).unwrap();
        match end {
            Some(t) => fx.state.store.apply(&ch(Change::Ended, t)).unwrap(),
            None => e,
        }
    }

    /// Deterministic content, so any slice can be checked.
    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 % 251) as u8).collect()
    }

    fn write(fx: &Fx, rel: &str, data: &[u8]) {
        let p = fx.state.store.media_path(rel).unwrap();
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }

    fn segment(fx: &Fx, camera: &str, rel: &str, start: OffsetDateTime, secs: i64) -> i64 {
        fx.state
            .store
            .insert_segment(&NewSegment {
                camera_id: camera.into(),
                path: rel.into(),
                start,
                end: start + Duration::seconds(secs),
                start_pts_ns: None,
                end_pts_ns: None,
                bytes: 1,
                codec: "h264".into(),
                frames: None,
                recovered: false,
            })
            .unwrap()
    }

    #[tokio::test]
    async fn clip_mp4_serves_ranges() {
        let fx = fixture(&["cam1"]);
        let t = OffsetDateTime::now_utc() - Duration::hours(1);
        let ev = event(&fx, "cam1", t, Some(t + Duration::seconds(2)));
        // A stored clip whose file exists is served as is (larger than one chunk).
        let data = pattern(200_000);
        let rel = format!("clips/{}.mp4", ev.id);
        write(&fx, &rel, &data);
        let clip = Clip {
            event_id: ev.id,
            path: rel,
            start: t,
            end: t + Duration::seconds(17),
            bytes: data.len() as u64,
        };
        fx.state.store.put_clip(&clip).unwrap();
        // The original (the fixture's config token may: `view_unmasked`); masking is
        // tested with real footage in `masked_media_tests`.
        let uri = format!("/api/v1/events/{}/clip.mp4?unmasked=1", ev.id);

        let r = get(&fx, &uri, None).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header(header::CONTENT_TYPE), "video/mp4");
        assert_eq!(r.header(header::ACCEPT_RANGES), "bytes");
        assert_eq!(r.header(header::CONTENT_LENGTH), "200000");
        assert!(r.body == data, "whole file");

        for (range, start, end) in [
            ("bytes=0-499", 0usize, 499usize),
            ("bytes=70000-135000", 70_000, 135_000),
            ("bytes=-500", 199_500, 199_999),
            ("bytes=1000-", 1000, 199_999),
            ("bytes=199999-300000", 199_999, 199_999),
        ] {
            let r = get(&fx, &uri, Some(range)).await;
            assert_eq!(r.status, StatusCode::PARTIAL_CONTENT, "{range}");
            assert_eq!(
                r.header(header::CONTENT_RANGE),
                format!("bytes {start}-{end}/200000"),
                "{range}"
            );
            assert_eq!(r.header(header::CONTENT_LENGTH), (end - start + 1).to_string(), "{range}");
            assert!(r.body == data[start..=end], "{range}: wrong bytes");
        }
        for range in ["bytes=200000-", "bytes=5-2", "bytes=abc", "bytes=-0", "bytes"] {
            let r = get(&fx, &uri, Some(range)).await;
            r.error(StatusCode::RANGE_NOT_SATISFIABLE, "range_not_satisfiable");
            assert_eq!(r.header(header::CONTENT_RANGE), "bytes */200000", "{range}");
        }
        // Several ranges: the whole file.
        let r = get(&fx, &uri, Some("bytes=0-1,10-20")).await;
        assert_eq!((r.status, r.body.len()), (StatusCode::OK, 200_000));
        // HEAD: headers only.
        let r = call(&fx, "HEAD", &uri, None, true).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header(header::CONTENT_LENGTH), "200000");
        assert!(r.body.is_empty());
        // Protected.
        call(&fx, "GET", &uri, None, false).await.error(StatusCode::UNAUTHORIZED, "unauthorized");
    }

    #[tokio::test]
    async fn clip_mp4_pending_and_no_footage() {
        let fx = fixture(&["cam1"]);
        let now = OffsetDateTime::now_utc();
        let clip_uri = |e: &Event| format!("/api/v1/events/{}/clip.mp4", e.id);

        // Ended just now on a recording camera: its post-roll is not recorded yet.
        let recent =
            event(&fx, "cam1", now - Duration::seconds(3), Some(now - Duration::seconds(1)));
        let r = get(&fx, &clip_uri(&recent), None).await;
        let e = r.error(StatusCode::SERVICE_UNAVAILABLE, "clip_pending");
        let retry: u64 = r.header(header::RETRY_AFTER).parse().unwrap();
        assert!((1..=30).contains(&retry), "Retry-After {retry}");
        assert!(e["message"].as_str().unwrap().contains(&recent.id.to_string()));

        // Still active.
        let active = event(&fx, "cam1", now - Duration::seconds(3), None);
        get(&fx, &clip_uri(&active), None)
            .await
            .error(StatusCode::SERVICE_UNAVAILABLE, "clip_pending");

        // Long over and nothing recorded: 404 naming camera and span.
        let old = event(
            &fx,
            "cam1",
            now - Duration::hours(2),
            Some(now - Duration::hours(2) + Duration::seconds(5)),
        );
        let e = get(&fx, &clip_uri(&old), None).await.error(StatusCode::NOT_FOUND, "no_footage");
        assert!(e["message"].as_str().unwrap().contains("cam1"), "{e}");

        // A camera that does not record: 404 at once, even right after the event.
        let other =
            event(&fx, "cam2", now - Duration::seconds(3), Some(now - Duration::seconds(1)));
        let e = get(&fx, &clip_uri(&other), None).await.error(StatusCode::NOT_FOUND, "no_footage");
        assert!(e["message"].as_str().unwrap().contains("does not record"), "{e}");

        // Unknown and malformed ids.
        get(&fx, &format!("/api/v1/events/{}/clip.mp4", Uuid::now_v7()), None)
            .await
            .error(StatusCode::NOT_FOUND, "not_found");
        for bad in ["not-a-uuid", "..%2F..%2Fgridwatch.db", "..", "%2e%2e"] {
            let e = get(&fx, &format!("/api/v1/events/{bad}/clip.mp4"), None)
                .await
                .error(StatusCode::BAD_REQUEST, "bad_request");
            assert_eq!(e["parameter"], "id");
        }
    }

    #[tokio::test]
    async fn recordings_listing_and_segments() {
        let fx = fixture(&["cam1"]);
        let t = time::macros::datetime!(2026-05-01 08:00 UTC);
        let mut ids = Vec::new();
        for i in 0..5 {
            let rel = format!("recordings/cam1/20260501/{i}.mp4");
            write(&fx, &rel, &pattern(1000 + i));
            ids.push(segment(&fx, "cam1", &rel, t + Duration::seconds(10 * i as i64), 10));
        }
        segment(&fx, "cam2", "recordings/cam2/20260501/0.mp4", t, 10);

        let v = get(&fx, "/api/v1/recordings", None).await.json();
        let recs = v["recordings"].as_array().unwrap();
        assert_eq!(recs.len(), 6);
        let v = get(
            &fx,
            "/api/v1/recordings?camera=cam1&since=2026-05-01T08:00:15Z&until=2026-05-01T08:00:35Z",
            None,
        )
        .await
        .json();
        let recs = v["recordings"].as_array().unwrap();
        let got: Vec<i64> = recs.iter().map(|r| r["id"].as_i64().unwrap()).collect();
        assert_eq!(got, ids[1..4], "overlapping, oldest first");
        assert_eq!(recs[0]["url"], format!("/api/v1/recordings/{}/segment.mp4", ids[1]));
        assert_eq!(recs[0]["start"], "2026-05-01T08:00:10Z");
        assert_eq!(recs[0]["end"], "2026-05-01T08:00:20Z");
        assert_eq!(recs[0]["codec"], "h264");
        assert!(recs[0].get("path").is_none(), "file paths are not served");
        let v = get(&fx, "/api/v1/recordings?camera=cam1&limit=2", None).await.json();
        assert_eq!(v["recordings"].as_array().unwrap().len(), 2);
        for (q, param) in [
            ("since=yesterday", "since"),
            ("until=2026-13-01T00:00:00Z", "until"),
            ("limit=0", "limit"),
            ("limit=1001", "limit"),
            ("limit=x", "limit"),
            ("camera=", "camera"),
            ("camera=a&camera=b", "camera"),
            ("path=x", "path"),
            ("since=2026-05-02T00:00:00Z&until=2026-05-01T00:00:00Z", "until"),
        ] {
            let e = get(&fx, &format!("/api/v1/recordings?{q}"), None)
                .await
                .error(StatusCode::BAD_REQUEST, "bad_request");
            assert_eq!(e["parameter"], param, "{q}: {e}");
        }
        assert_eq!(get(&fx, "/api/v1/recordings?limit=1000", None).await.status, StatusCode::OK);

        // One segment by id, with ranges (the original: `view_unmasked`).
        let uri = format!("/api/v1/recordings/{}/segment.mp4?unmasked=1", ids[2]);
        let r = get(&fx, &uri, None).await;
        assert_eq!((r.status, r.header(header::CONTENT_TYPE)), (StatusCode::OK, "video/mp4"));
        assert!(r.body == pattern(1002));
        let r = get(&fx, &uri, Some("bytes=-2")).await;
        assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
        assert_eq!(r.header(header::CONTENT_RANGE), "bytes 1000-1001/1002");
        assert!(r.body == pattern(1002)[1000..]);
        get(&fx, &uri, Some("bytes=1002-"))
            .await
            .error(StatusCode::RANGE_NOT_SATISFIABLE, "range_not_satisfiable");

        // Unknown id, file gone, malformed ids: never a file.
        get(&fx, "/api/v1/recordings/999/segment.mp4", None)
            .await
            .error(StatusCode::NOT_FOUND, "not_found");
        std::fs::remove_file(fx.state.store.media_path("recordings/cam1/20260501/0.mp4").unwrap())
            .unwrap();
        get(&fx, &format!("/api/v1/recordings/{}/segment.mp4", ids[0]), None)
            .await
            .error(StatusCode::NOT_FOUND, "not_found");
        for bad in [
            "..%2F..%2Fgridwatch.db",
            "..",
            "%2e%2e%2fgridwatch.db",
            "0",
            "-1",
            "1.5",
            "abc",
            "1%00",
        ] {
            let e = get(&fx, &format!("/api/v1/recordings/{bad}/segment.mp4"), None)
                .await
                .error(StatusCode::BAD_REQUEST, "bad_request");
            assert_eq!(e["parameter"], "id", "{bad}");
        }
        for bad in
            ["/api/v1/recordings/../../gridwatch.db", "/api/v1/recordings/1/..%2F..%2Fgridwatch.db"]
        {
            let r = get(&fx, bad, None).await;
            assert!(
                r.status == StatusCode::NOT_FOUND || r.status == StatusCode::BAD_REQUEST,
                "{bad}: {}",
                r.status
            );
            assert!(!r.body.starts_with(b"SQLite format"), "{bad} served the database");
        }
        // Even a database row pointing outside the data dir is refused.
        let evil = segment(&fx, "cam1", "../outside.mp4", t + Duration::hours(1), 10);
        std::fs::write(fx.state.store.data_dir().join("../outside.mp4"), b"secret").unwrap();
        let r = get(&fx, &format!("/api/v1/recordings/{evil}/segment.mp4"), None).await;
        assert_ne!(r.status, StatusCode::OK);
        assert!(!r.body.windows(6).any(|w| w == b"secret"));
        let _ = std::fs::remove_file(fx.state.store.data_dir().join("../outside.mp4"));

        call(&fx, "GET", "/api/v1/recordings", None, false)
            .await
            .error(StatusCode::UNAUTHORIZED, "unauthorized");
        call(&fx, "GET", &uri, None, false).await.error(StatusCode::UNAUTHORIZED, "unauthorized");
    }

    #[tokio::test]
    async fn export_span_limits_and_readiness() {
        let fx = fixture(&["cam1"]);
        let e = |q: &str| format!("/api/v1/recordings/export.mp4?{q}");
        // 600 s allowed (max_export_secs = 600 in the fixture), 600.001 s is not.
        let r = get(
            &fx,
            &e("camera=cam1&start=2026-05-01T08:00:00Z&end=2026-05-01T08:10:00.001Z"),
            None,
        )
        .await;
        let err = r.error(StatusCode::BAD_REQUEST, "bad_request");
        assert_eq!(err["parameter"], "end");
        assert!(err["message"].as_str().unwrap().contains("max_export_secs"), "{err}");
        for (q, param) in [
            ("start=2026-05-01T08:00:00Z&end=2026-05-01T08:01:00Z", "camera"),
            ("camera=cam1&end=2026-05-01T08:01:00Z", "start"),
            ("camera=cam1&start=2026-05-01T08:00:00Z", "end"),
            ("camera=cam1&start=2026-05-01T08:01:00Z&end=2026-05-01T08:00:00Z", "end"),
            ("camera=cam1&start=2026-05-01T08:00:00Z&end=2026-05-01T08:00:00Z", "end"),
            ("camera=cam1&start=now&end=2026-05-01T08:00:00Z", "start"),
        ] {
            let err = get(&fx, &e(q), None).await.error(StatusCode::BAD_REQUEST, "bad_request");
            assert_eq!(err["parameter"], param, "{q}: {err}");
        }
        // L3: times near the ends of the calendar are refused before any arithmetic on
        // them (a footage horizon past 9999-12-31 used to panic), for exports and the
        // event and recording listings alike.
        for (q, param) in [
            ("camera=cam1&start=9999-12-31T23:50:00Z&end=9999-12-31T23:59:59Z", "start"),
            ("camera=cam1&start=2026-05-01T08:00:00Z&end=9999-12-31T23:59:59Z", "end"),
            ("camera=cam1&start=9999-12-31T23:59:00-23:59&end=9999-12-31T23:59:59-23:59", "start"),
            ("camera=cam1&start=0000-01-01T00:00:00Z&end=0000-01-01T00:01:00Z", "start"),
            ("camera=cam1&start=1969-12-31T23:59:00Z&end=1970-01-01T00:01:00Z", "start"),
        ] {
            let err = get(&fx, &e(q), None).await.error(StatusCode::BAD_REQUEST, "bad_request");
            assert_eq!(err["parameter"], param, "{q}: {err}");
            assert!(err["message"].as_str().unwrap().contains("9000-01-01"), "{q}: {err}");
        }
        for uri in [
            "/api/v1/recordings?since=9999-12-31T23:59:59Z",
            "/api/v1/recordings?until=9999-12-31T23:59:59-23:59",
        ] {
            get(&fx, uri, None).await.error(StatusCode::BAD_REQUEST, "bad_request");
        }
        // In range but nothing recorded: 404.
        let r =
            get(&fx, &e("camera=cam1&start=2026-05-01T08:00:00Z&end=2026-05-01T08:10:00Z"), None)
                .await;
        let err = r.error(StatusCode::NOT_FOUND, "no_footage");
        assert!(err["message"].as_str().unwrap().contains("cam1"), "{err}");
        // Ending now on a recording camera: the footage is not indexed yet.
        let fmt =
            |t: OffsetDateTime| t.format(&time::format_description::well_known::Rfc3339).unwrap();
        let now = OffsetDateTime::now_utc();
        let q = format!("camera=cam1&start={}&end={}", fmt(now - Duration::seconds(30)), fmt(now));
        let r = get(&fx, &e(&q), None).await;
        let err = r.error(StatusCode::SERVICE_UNAVAILABLE, "footage_pending");
        assert!(err["message"].as_str().unwrap().contains("camera `cam1`"), "{err}");
        assert!(r.header(header::RETRY_AFTER).parse::<u64>().unwrap() >= 1);
        // … but for a camera that does not record it is a 404 at once.
        let q = format!("camera=cam9&start={}&end={}", fmt(now - Duration::seconds(30)), fmt(now));
        get(&fx, &e(&q), None).await.error(StatusCode::NOT_FOUND, "no_footage");
        call(&fx, "GET", &e("camera=cam1"), None, false)
            .await
            .error(StatusCode::UNAUTHORIZED, "unauthorized");
        // Nothing left behind in clips/.
        let clips = fx.state.store.clips_dir();
        let left = std::fs::read_dir(&clips).map(|d| d.count()).unwrap_or(0);
        assert_eq!(left, 0, "files left in {}", clips.display());
    }
}
