//! Retention: what recorded media is deleted, and when. One [`Retention::run`] pass:
//!
//! 1. **Age.** Per camera (`[cameras.record] max_age_days`; cameras no longer configured: 7
//!    days), segments that ended before `now − max_age` are deleted, unless *protected*:
//!    they overlap `[started_at − pre_roll, COALESCE(ended_at, now) + post_roll]` of an event
//!    of the same camera with severity `high`/`critical` and `review = 'new'`.
//! 2. **Event media.** Events started before `now − storage.event_retention_days` lose their
//!    clip (row, then file) and snapshot file (`snapshot = NULL, media_deleted_at = now`);
//!    the event rows stay.
//! 3. **Budget.** While over budget — `max_bytes > 0` and the indexed media exceed it, or the
//!    filesystem's free space is below `max(min_free_bytes, min_free_percent % of total)` —
//!    delete the oldest unprotected segment (any camera), then the oldest protected one
//!    (forced eviction, logged as a warning), then the oldest clip, measuring again after
//!    each deletion.
//! 4. **Storage full.** Still over budget with nothing left to delete: every record gate is
//!    closed (the pipelines drop new footage) and one `storage_full` event (severity high) is
//!    raised per recording camera. Once free space is back above the floor plus 10 %, the
//!    gates reopen and the events end.
//!
//! Rows are deleted (committed) before their files, so the index never points at a missing
//! file; a crash in between leaves an orphan file that start-up reconciliation removes.
//! Nothing here panics or stops on an I/O error: errors are logged, counted in the report
//! and the pass goes on.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use time::OffsetDateTime;
use uuid::Uuid;

use super::clock::Clock;
use super::RecordGate;
use crate::config::{Config, RecordConfig, StorageConfig};
use crate::store::retention::{MediaTally, ProtectingEvent, SegmentFile};
use crate::store::{to_ms, Store, StoreError, SNAPSHOT_DIR};
use crate::types::{Change, EventChange, Severity};

/// Kind of the event raised when nothing more can be deleted and the disk is still full.
pub const STORAGE_FULL: &str = "storage_full";

const DAY_MS: f64 = 86_400_000.0;
/// Rows fetched per query while walking segments.
const PAGE: usize = 256;
/// The cached list of protecting events is reloaded at least this often (and whenever a new
/// event was stored), so a review takes effect within a minute.
const PROTECTION_REFRESH_MS: i64 = 60_000;
/// The running media byte count is recomputed from scratch at least this often.
const TALLY_RESYNC_MS: i64 = 600_000;
/// At most this many deletions for the budget in one pass (a guard against a disk that never
/// reports the freed space); the next pass continues.
const MAX_EVICTIONS_PER_PASS: usize = 100_000;

/// Free and total bytes of the filesystem holding a path.
pub trait DiskStats: Send + Sync {
    /// `(bytes available to unprivileged writers, total bytes)` of the filesystem of `path`.
    fn usage(&self, path: &Path) -> io::Result<(u64, u64)>;
}

/// [`DiskStats`] from `statvfs(3)`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Statvfs;

impl DiskStats for Statvfs {
    #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
    fn usage(&self, path: &Path) -> io::Result<(u64, u64)> {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
        // SAFETY: `c` is a valid NUL-terminated string and `st` a writable statvfs struct;
        // statvfs only writes into `st`.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        let frsize = st.f_frsize as u64;
        Ok(((st.f_bavail as u64).saturating_mul(frsize), (st.f_blocks as u64).saturating_mul(frsize)))
    }
}

/// Files deleted and their bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Deleted {
    pub files: usize,
    pub bytes: u64,
}

impl Deleted {
    fn add(&mut self, bytes: u64) {
        self.files += 1;
        self.bytes += bytes;
    }
}

impl fmt::Display for Deleted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} bytes)", self.files, self.bytes)
    }
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Segments older than their camera's `max_age_days`.
    pub age: Deleted,
    /// Unprotected segments deleted for the disk budget (oldest first).
    pub budget: Deleted,
    /// Protected segments (footage of unreviewed high/critical events) deleted for the budget.
    pub forced: Deleted,
    /// Clips deleted for the disk budget.
    pub clips_evicted: Deleted,
    /// Event clips deleted at `event_retention_days`.
    pub clips_expired: usize,
    /// Event snapshots deleted at `event_retention_days`.
    pub snapshots_expired: usize,
    /// Rows deleted whose file was already gone.
    pub missing_files: usize,
    /// Errors (logged) that did not stop the pass.
    pub errors: usize,
    /// Still over budget after the pass.
    pub over_budget: bool,
    /// Recording is stopped for lack of space (gates closed, `storage_full` events open).
    pub storage_full: bool,
}

impl RetentionReport {
    /// Something was deleted.
    pub fn deleted_anything(&self) -> bool {
        self.age.files + self.budget.files + self.forced.files + self.clips_evicted.files
            + self.clips_expired
            + self.snapshots_expired
            > 0
    }
}

impl fmt::Display for RetentionReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "segments deleted: {} by age, {} for the budget, {} forced; clips: {} evicted, {} expired; \
             {} snapshots expired; {} files already missing; {} errors",
            self.age,
            self.budget,
            self.forced,
            self.clips_evicted,
            self.clips_expired,
            self.snapshots_expired,
            self.missing_files,
            self.errors
        )?;
        if self.storage_full {
            write!(f, "; STORAGE FULL, recording stopped")?;
        } else if self.over_budget {
            write!(f, "; still over budget")?;
        }
        Ok(())
    }
}

/// Retention settings of one camera.
#[derive(Debug, Clone)]
struct Policy {
    max_age_ms: i64,
    pre_ms: i64,
    post_ms: i64,
    grid_cell: Option<String>,
}

impl Policy {
    fn of(r: &RecordConfig, grid_cell: Option<String>) -> Policy {
        Policy {
            max_age_ms: (r.max_age_days.max(0.0) * DAY_MS) as i64,
            pre_ms: (r.pre_roll_secs.max(0.0) * 1000.0) as i64,
            post_ms: (r.post_roll_secs.max(0.0) * 1000.0) as i64,
            grid_cell,
        }
    }
}

/// Space as last measured.
#[derive(Debug, Clone, Copy)]
struct Usage {
    media: u64,
    /// `(free, total)`; `None` when the filesystem cannot be asked.
    disk: Option<(u64, u64)>,
}

struct ProtectionCache {
    max_seq: i64,
    fetched_ms: i64,
    by_camera: Arc<HashMap<String, Vec<ProtectingEvent>>>,
}

/// Which segments may be deleted for their age, and whose deletion is forced.
struct Protection {
    now_ms: i64,
    by_camera: Arc<HashMap<String, Vec<ProtectingEvent>>>,
}

impl Protection {
    /// The event that protects `seg`, if any.
    fn protector<'a>(&'a self, seg: &SegmentFile, policy: &Policy) -> Option<&'a ProtectingEvent> {
        self.by_camera.get(&seg.camera_id)?.iter().find(|e| {
            e.started_ms.saturating_sub(policy.pre_ms) <= seg.end_ms
                && e.ended_ms.unwrap_or(self.now_ms).saturating_add(policy.post_ms) >= seg.start_ms
        })
    }
}

/// The open `storage_full` state.
struct Full {
    events: Vec<(String, Uuid)>,
}

pub struct Retention {
    store: Store,
    clock: Arc<dyn Clock>,
    gates: HashMap<String, RecordGate>,
    disk: Arc<dyn DiskStats>,
    storage: StorageConfig,
    cameras: HashMap<String, Policy>,
    default_policy: Policy,
    protection: Option<ProtectionCache>,
    tally: Option<(MediaTally, i64)>,
    /// Events started before this have had their media expired (saves rescanning them).
    media_done_before: Option<i64>,
    full: Option<Full>,
    /// The filesystem could not be measured on the last pass (logged once per outage).
    disk_error: bool,
}

impl Retention {
    /// Retention of the media under `store`'s data dir, measuring free space with `statvfs`.
    pub fn new(cfg: &Config, store: Store, clock: Arc<dyn Clock>, gates: HashMap<String, RecordGate>) -> Self {
        Self::with_disk(cfg, store, clock, gates, Arc::new(Statvfs))
    }

    /// Like [`Retention::new`] with another source of free/total space (tests).
    pub fn with_disk(
        cfg: &Config,
        store: Store,
        clock: Arc<dyn Clock>,
        gates: HashMap<String, RecordGate>,
        disk: Arc<dyn DiskStats>,
    ) -> Self {
        let cameras =
            cfg.cameras.iter().map(|c| (c.id.clone(), Policy::of(&c.record, c.grid_cell.clone()))).collect();
        Retention {
            store,
            clock,
            gates,
            disk,
            storage: cfg.storage.clone(),
            cameras,
            default_policy: Policy::of(&RecordConfig::default(), None),
            protection: None,
            tally: None,
            media_done_before: None,
            full: None,
            disk_error: false,
        }
    }

    /// Recording is stopped for lack of space.
    pub fn storage_full(&self) -> bool {
        self.full.is_some()
    }

    /// One pass: age limits, event media retention, disk budget, storage_full alarm.
    pub fn run(&mut self) -> RetentionReport {
        let started = Instant::now();
        let now = self.clock.now();
        let now_ms = to_ms(now);
        let mut report = RetentionReport::default();
        if let Err(e) = self.age(now_ms, &mut report) {
            tracing::error!("retention (age): {e}");
            report.errors += 1;
        }
        if let Err(e) = self.event_media(now_ms, &mut report) {
            tracing::error!("retention (event media): {e}");
            report.errors += 1;
        }
        match self.budget(now_ms, &mut report) {
            Ok(usage) => self.update_full(now, usage, &mut report),
            Err(e) => {
                tracing::error!("retention (disk budget): {e}");
                report.errors += 1;
            }
        }
        report.storage_full = self.full.is_some();
        if report.deleted_anything() || report.errors > 0 {
            tracing::info!(ms = started.elapsed().as_millis() as u64, "retention: {report}");
        }
        report
    }

    fn policy(&self, camera: &str) -> &Policy {
        self.cameras.get(camera).unwrap_or(&self.default_policy)
    }

    /// The protecting events, reloaded when a new event was stored or the cache is a minute old.
    fn protection(&mut self, now_ms: i64) -> Result<Protection, StoreError> {
        let max_seq = self.store.max_event_seq()?;
        let fresh = self.protection.as_ref().is_some_and(|c| {
            c.max_seq == max_seq && now_ms >= c.fetched_ms && now_ms - c.fetched_ms < PROTECTION_REFRESH_MS
        });
        if !fresh {
            let mut by_camera: HashMap<String, Vec<ProtectingEvent>> = HashMap::new();
            for e in self.store.protecting_events()? {
                by_camera.entry(e.camera_id.clone()).or_default().push(e);
            }
            self.protection = Some(ProtectionCache { max_seq, fetched_ms: now_ms, by_camera: Arc::new(by_camera) });
        }
        let by_camera = self.protection.as_ref().map(|c| c.by_camera.clone()).unwrap_or_default();
        Ok(Protection { now_ms, by_camera })
    }

    fn age(&mut self, now_ms: i64, report: &mut RetentionReport) -> Result<(), StoreError> {
        let mut protection: Option<Protection> = None;
        for camera in self.store.segment_cameras()? {
            let policy = self.policy(&camera).clone();
            let cutoff = now_ms.saturating_sub(policy.max_age_ms);
            let mut cursor = None;
            loop {
                let page = self.store.segment_files(Some(&camera), Some(cutoff), cursor, PAGE)?;
                let Some(last) = page.last() else { break };
                cursor = Some((last.start_ms, last.id));
                if protection.is_none() {
                    protection = Some(self.protection(now_ms)?);
                }
                for seg in &page {
                    if protection.as_ref().and_then(|p| p.protector(seg, &policy)).is_some() {
                        continue;
                    }
                    if self.delete_segment(seg, now_ms, report)? {
                        report.age.add(seg.bytes);
                    }
                }
                if page.len() < PAGE {
                    break;
                }
            }
        }
        Ok(())
    }

    fn event_media(&mut self, now_ms: i64, report: &mut RetentionReport) -> Result<(), StoreError> {
        let keep_ms = (self.storage.event_retention_days.max(0.0) * DAY_MS) as i64;
        let cutoff = now_ms.saturating_sub(keep_ms);
        let snapshots = self.store.data_dir().join(SNAPSHOT_DIR);
        loop {
            let due = self.store.events_with_media_due(self.media_done_before, cutoff, PAGE)?;
            for &(id, _) in &due {
                let Some(m) = self.store.expire_event_media(id, now_ms)? else { continue };
                if let Some(clip) = &m.clip {
                    self.remove_file(clip, report);
                    report.clips_expired += 1;
                }
                if m.snapshot {
                    let path = snapshots.join(format!("{id}.jpg"));
                    remove_abs(&path, report);
                    report.snapshots_expired += 1;
                }
                if m.clip.is_some() || m.snapshot {
                    tracing::debug!(event = %id, "event media expired");
                }
            }
            if due.len() < PAGE {
                break;
            }
        }
        self.media_done_before = Some(cutoff);
        Ok(())
    }

    /// Indexed media bytes: a running tally (new rows added, own deletions subtracted),
    /// recomputed from scratch every 10 minutes or when `resync`.
    fn media_bytes(&mut self, now_ms: i64, resync: bool) -> Result<u64, StoreError> {
        let tally = match self.tally {
            Some((t, at)) if !resync && now_ms >= at && now_ms - at < TALLY_RESYNC_MS => {
                let t = self.store.media_bytes_after(t)?;
                self.tally = Some((t, at));
                t
            }
            _ => {
                let t = self.store.media_bytes_after(MediaTally::default())?;
                self.tally = Some((t, now_ms));
                t
            }
        };
        Ok(tally.bytes)
    }

    fn forget_bytes(&mut self, bytes: u64) {
        if let Some((t, _)) = &mut self.tally {
            t.bytes = t.bytes.saturating_sub(bytes);
        }
    }

    fn disk_usage(&mut self) -> Option<(u64, u64)> {
        match self.disk.usage(self.store.data_dir()) {
            Ok(u) => {
                self.disk_error = false;
                Some(u)
            }
            Err(e) => {
                if !self.disk_error {
                    tracing::error!(dir = %self.store.data_dir().display(), "cannot measure free space: {e}");
                }
                self.disk_error = true;
                None
            }
        }
    }

    /// The free-space floor for a filesystem of `total` bytes.
    fn floor(&self, total: u64) -> u64 {
        let pct = (self.storage.min_free_percent.clamp(0.0, 100.0) / 100.0 * total as f64) as u64;
        self.storage.min_free_bytes.max(pct)
    }

    /// Bytes to delete to be within budget (0 = within budget).
    fn shortfall(&self, u: &Usage) -> u64 {
        let over_max = if self.storage.max_bytes > 0 { u.media.saturating_sub(self.storage.max_bytes) } else { 0 };
        let below_floor = u.disk.map_or(0, |(free, total)| self.floor(total).saturating_sub(free));
        over_max.max(below_floor)
    }

    fn measure(&mut self, now_ms: i64, resync: bool) -> Result<Usage, StoreError> {
        let media = if self.storage.max_bytes > 0 || resync { self.media_bytes(now_ms, resync)? } else { 0 };
        Ok(Usage { media, disk: self.disk_usage() })
    }

    fn budget(&mut self, now_ms: i64, report: &mut RetentionReport) -> Result<Usage, StoreError> {
        let mut usage = self.measure(now_ms, false)?;
        if self.shortfall(&usage) == 0 {
            return Ok(usage);
        }
        // Deleted files count as freed even if the filesystem has not released them yet
        // (a reader still has one open): otherwise one open file could empty the disk.
        let free_at_start = usage.disk.map(|(f, _)| f);
        let mut freed = 0u64;
        let protection = self.protection(now_ms)?;
        let mut cursor: Option<(i64, i64)> = None;
        let mut unprotected_left = true;
        let mut evictions = 0usize;
        while self.shortfall(&usage) > 0 {
            if evictions >= MAX_EVICTIONS_PER_PASS {
                tracing::warn!("retention: {evictions} deletions in one pass and still over budget; continuing next pass");
                break;
            }
            let bytes = if unprotected_left {
                match self.next_unprotected(&protection, &mut cursor)? {
                    Some(seg) => {
                        if !self.delete_segment(&seg, now_ms, report)? {
                            continue;
                        }
                        report.budget.add(seg.bytes);
                        seg.bytes
                    }
                    None => {
                        unprotected_left = false;
                        continue;
                    }
                }
            } else if let Some(seg) = self.store.segment_files(None, None, None, 1)?.pop() {
                let policy = self.policy(&seg.camera_id).clone();
                let protector = protection.protector(&seg, &policy).map(|e| e.id.clone());
                if !self.delete_segment(&seg, now_ms, report)? {
                    continue;
                }
                match protector {
                    Some(ev) => {
                        tracing::warn!(
                            camera = %seg.camera_id, path = %seg.path,
                            "forced eviction of footage of unreviewed event {ev} (disk budget; nothing else left to delete)"
                        );
                        report.forced.add(seg.bytes);
                    }
                    None => report.budget.add(seg.bytes), // indexed since the unprotected ones ran out
                }
                seg.bytes
            } else if let Some(clip) = self.store.oldest_clip()? {
                if !self.store.delete_clip_row(clip.event_id)? {
                    continue;
                }
                self.forget_bytes(clip.bytes);
                self.remove_file(&clip.path, report);
                tracing::warn!(event = %clip.event_id, "event clip deleted for the disk budget");
                report.clips_evicted.add(clip.bytes);
                clip.bytes
            } else {
                break; // nothing left
            };
            evictions += 1;
            freed = freed.saturating_add(bytes);
            let media = if self.storage.max_bytes > 0 { self.media_bytes(now_ms, false)? } else { 0 };
            let disk = self.disk_usage().map(|(free, total)| {
                (free_at_start.map_or(free, |f0| free.max(f0.saturating_add(freed))), total)
            });
            usage = Usage { media, disk };
        }
        if self.shortfall(&usage) > 0 {
            // Before declaring the disk full, make sure the byte tally is not stale.
            usage = self.measure(now_ms, true)?;
        }
        report.over_budget = self.shortfall(&usage) > 0;
        Ok(usage)
    }

    /// The oldest segment after `cursor` that no event protects; advances `cursor`.
    fn next_unprotected(
        &self,
        protection: &Protection,
        cursor: &mut Option<(i64, i64)>,
    ) -> Result<Option<SegmentFile>, StoreError> {
        loop {
            let page = self.store.segment_files(None, None, *cursor, PAGE)?;
            let n = page.len();
            for seg in page {
                *cursor = Some((seg.start_ms, seg.id));
                if protection.protector(&seg, self.policy(&seg.camera_id)).is_none() {
                    return Ok(Some(seg));
                }
            }
            if n < PAGE {
                return Ok(None);
            }
        }
    }

    /// Deletes a segment's row, then its file. False if the row was already gone.
    fn delete_segment(&mut self, seg: &SegmentFile, now_ms: i64, report: &mut RetentionReport) -> Result<bool, StoreError> {
        if !self.store.delete_segment_row(seg.id)? {
            return Ok(false);
        }
        self.forget_bytes(seg.bytes);
        self.remove_file(&seg.path, report);
        // Remove the day directory once empty, but never today's or yesterday's, which a
        // pipeline may be about to write into.
        if let Ok(abs) = self.store.media_path(&seg.path) {
            if let Some(day) = abs.parent() {
                let name = day.file_name().and_then(|n| n.to_str()).unwrap_or("");
                let two_days_ago = crate::store::from_ms(now_ms - 2 * DAY_MS as i64)
                    .map(|t| format!("{:04}{:02}{:02}", t.year(), u8::from(t.month()), t.day()));
                if name.len() == 8
                    && name.bytes().all(|b| b.is_ascii_digit())
                    && two_days_ago.is_ok_and(|limit| name <= limit.as_str())
                {
                    let _ = fs::remove_dir(day); // fails (harmlessly) unless empty
                }
            }
        }
        Ok(true)
    }

    /// Deletes a media file by its data-dir-relative path.
    fn remove_file(&self, rel: &str, report: &mut RetentionReport) {
        match self.store.media_path(rel) {
            Ok(abs) => remove_abs(&abs, report),
            Err(e) => {
                tracing::error!("not deleting media file: {e}");
                report.errors += 1;
            }
        }
    }

    fn update_full(&mut self, now: OffsetDateTime, usage: Usage, report: &mut RetentionReport) {
        let short = self.shortfall(&usage);
        let (free, total) = usage.disk.unwrap_or((0, 0));
        let floor = usage.disk.map_or(0, |(_, t)| self.floor(t));
        let detail = serde_json::json!({
            "free_bytes": free,
            "total_bytes": total,
            "floor_bytes": floor,
            "needed_bytes": short,
            "media_bytes": usage.media,
            "max_bytes": self.storage.max_bytes,
        });
        if short > 0 {
            if self.full.is_none() {
                tracing::error!(
                    free_bytes = free, floor_bytes = floor, needed_bytes = short,
                    "storage full: nothing left to delete; recording stopped on every camera"
                );
                let mut cams: Vec<&String> = self.gates.keys().collect();
                cams.sort();
                let mut events = vec![];
                for cam in cams {
                    let id = Uuid::now_v7();
                    match self.store.apply(&self.full_change(id, cam, Change::Started, now, detail.clone())) {
                        Ok(_) => events.push((cam.clone(), id)),
                        Err(e) => {
                            tracing::error!(camera = %cam, "cannot store storage_full event: {e}");
                            report.errors += 1;
                        }
                    }
                }
                self.full = Some(Full { events });
            }
            for g in self.gates.values() {
                g.set_open(false);
            }
            return;
        }
        let Some(full) = &self.full else { return };
        // Hysteresis: resume only with 10 % of the floor to spare, so recording does not
        // flap on and off around the limit.
        let spare = usage.disk.is_none_or(|(free, total)| {
            let floor = self.floor(total);
            free >= floor.saturating_add(floor / 10)
        });
        if !spare {
            return;
        }
        let events = full.events.clone();
        for g in self.gates.values() {
            g.set_open(true);
        }
        for (cam, id) in events {
            if let Err(e) = self.store.apply(&self.full_change(id, &cam, Change::Ended, now, detail.clone())) {
                tracing::error!(camera = %cam, event = %id, "cannot end storage_full event: {e}");
                report.errors += 1;
            }
        }
        self.full = None;
        tracing::warn!(free_bytes = free, floor_bytes = floor, "storage available again; recording resumed");
    }

    fn full_change(&self, id: Uuid, cam: &str, change: Change, at: OffsetDateTime, detail: serde_json::Value) -> EventChange {
        EventChange {
            event_id: id,
            change,
            camera_id: cam.to_string(),
            grid_cell: self.cameras.get(cam).and_then(|p| p.grid_cell.clone()),
            kind: STORAGE_FULL.into(),
            severity: Severity::High,
            at,
            objects: vec![],
            snapshot: None,
            rule: None,
            zone: None,
            line: None,
            detail: Some(detail),
            caused_by: Instant::now(),
        }
    }
}

fn remove_abs(path: &Path, report: &mut RetentionReport) {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            tracing::warn!(path = %path.display(), "media file was already gone");
            report.missing_files += 1;
        }
        Err(e) => {
            tracing::error!(path = %path.display(), "cannot delete media file: {e}");
            report.errors += 1;
        }
    }
}
