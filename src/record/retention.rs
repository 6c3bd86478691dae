//! Retention: what recorded media is deleted, and when. One [`Retention::run`] pass:
//!
//! 1. **Age.** Per camera (`[cameras.record] max_age_days`; cameras no longer configured: 7
//!    days), segments that ended before `now − max_age` are deleted, unless *protected*:
//!    they overlap `[started_at − pre_roll, COALESCE(ended_at, now) + post_roll]` of an event
//!    of the same camera with severity `high`/`critical` and `review = 'new'`.
//! 2. **Event media.** Events started before `now − storage.event_retention_days` lose their
//!    clip (row, then file) and snapshot file (`snapshot = NULL, media_deleted_at = now`);
//!    the event rows stay.
//! 3. **Budget.** While over budget — `max_bytes > 0` and the indexed media plus the export
//!    files being downloaded (`clips/export-*`) exceed it, or the filesystem's free space is
//!    below `max(min_free_bytes, min_free_percent % of total)` — delete the oldest export
//!    file (its download stops within a second and the space is freed: transient copies go
//!    before footage), then the oldest unprotected segment (any camera), then the oldest
//!    protected one (forced eviction, logged as a warning), then the oldest clip, measuring
//!    again after each deletion.
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

use super::gate::RecordGate;
use crate::clock::Clock;
use crate::config::{Config, RecordConfig, StorageConfig};
use crate::store::locks::LockSpan;
use crate::store::retention::{MediaTally, ProtectingEvent, SegmentFile};
use crate::store::{to_ms, Store, StoreError, SNAPSHOT_DIR};
use crate::types::{Change, EventChange, Severity};

/// Name prefix of the export files in `clips/` (`export-<uuid>.mp4`, `.tmp` while built):
/// they have no row; retention counts their bytes and deletes them first for the budget.
pub const EXPORT_PREFIX: &str = "export-";

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
        Ok((
            (st.f_bavail as u64).saturating_mul(frsize),
            (st.f_blocks as u64).saturating_mul(frsize),
        ))
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
    /// Segments kept past their age limit because an evidence lock covers them (a run of
    /// segments under one lock counts once: it is skipped without being read).
    pub locked_kept: usize,
    /// Clips deleted for the disk budget.
    pub clips_evicted: Deleted,
    /// Export files (being built or downloaded) deleted for the disk budget.
    pub exports_evicted: Deleted,
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
        self.age.files
            + self.budget.files
            + self.forced.files
            + self.clips_evicted.files
            + self.exports_evicted.files
            + self.clips_expired
            + self.snapshots_expired
            > 0
    }
}

impl fmt::Display for RetentionReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "segments deleted: {} by age, {} for the budget, {} forced; {} kept by locks; clips: {} evicted, {} expired; \
             exports evicted: {}; {} snapshots expired; {} files already missing; {} errors",
            self.age,
            self.budget,
            self.forced,
            self.locked_kept,
            self.clips_evicted,
            self.clips_expired,
            self.exports_evicted,
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
    /// `min_age_days`: younger footage is never deleted for the budget (0 = no floor).
    min_age_ms: i64,
    pre_ms: i64,
    post_ms: i64,
    grid_cell: Option<String>,
}

impl Policy {
    fn of(r: &RecordConfig, grid_cell: Option<String>) -> Policy {
        Policy {
            max_age_ms: (r.max_age_days.max(0.0) * DAY_MS) as i64,
            min_age_ms: (r.min_age_days.max(0.0) * DAY_MS) as i64,
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

/// The active evidence locks by camera, with the generation they were read at.
struct LockCache {
    generation: i64,
    fetched_ms: i64,
    by_camera: Arc<HashMap<String, Vec<LockSpan>>>,
}

/// Active evidence locks as retention applies them.
#[derive(Clone, Default)]
pub struct Locks {
    now_ms: i64,
    by_camera: Arc<HashMap<String, Vec<LockSpan>>>,
}

impl Locks {
    /// Reads the active locks of `store`.
    pub fn load(store: &Store, now_ms: i64) -> Result<Locks, StoreError> {
        let mut by_camera: HashMap<String, Vec<LockSpan>> = HashMap::new();
        for l in store.active_lock_spans()? {
            by_camera.entry(l.camera_id.clone()).or_default().push(l);
        }
        Ok(Locks { now_ms, by_camera: Arc::new(by_camera) })
    }

    /// The footage spans `[start, end]` (ms) of `camera`'s locks: an event lock covers its
    /// event's clip span, pre-roll before to post-roll after (up to now while it is active).
    pub fn spans(&self, camera: &str, pre_ms: i64, post_ms: i64) -> Vec<(i64, i64)> {
        self.by_camera
            .get(camera)
            .map(|v| {
                v.iter()
                    .map(|l| match l.event_id {
                        Some(_) => (
                            l.start_ms.saturating_sub(pre_ms),
                            l.end_ms.unwrap_or(self.now_ms).saturating_add(post_ms),
                        ),
                        None => (l.start_ms, l.end_ms.unwrap_or(l.start_ms)),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The footage span `[start, end]` (ms) of a lock that covers `seg`, if any.
    fn lock_of(&self, seg: &SegmentFile, policy: &Policy) -> Option<(i64, i64)> {
        self.by_camera.get(&seg.camera_id)?.iter().find_map(|l| {
            let (s, e) = match l.event_id {
                Some(_) => (
                    l.start_ms.saturating_sub(policy.pre_ms),
                    l.end_ms.unwrap_or(self.now_ms).saturating_add(policy.post_ms),
                ),
                None => (l.start_ms, l.end_ms.unwrap_or(l.start_ms)),
            };
            (s <= seg.end_ms && e >= seg.start_ms).then_some((s, e))
        })
    }

    /// Cameras with active locks.
    pub fn cameras(&self) -> impl Iterator<Item = &String> {
        self.by_camera.keys()
    }
}

/// What the minimum-retention floor of `policy` keeps: footage that ended less than
/// `min_age_days` ago.
fn under_floor(seg: &SegmentFile, policy: &Policy, now_ms: i64) -> bool {
    policy.min_age_ms > 0 && seg.end_ms > now_ms.saturating_sub(policy.min_age_ms)
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
    locks: Option<LockCache>,
    /// The lock generation `media_done_before` was computed under: a released lock makes
    /// the events it kept due again, so a change rescans them.
    media_lock_generation: i64,
    tally: Option<(MediaTally, i64)>,
    /// Events started before this have had their media expired (saves rescanning them).
    media_done_before: Option<i64>,
    /// When clips of already expired events were last looked for.
    clip_sweep_ms: Option<i64>,
    full: Option<Full>,
    /// The filesystem could not be measured on the last pass (logged once per outage).
    disk_error: bool,
}

impl Retention {
    /// Retention of the media under `store`'s data dir, measuring free space with `statvfs`.
    pub fn new(
        cfg: &Config,
        store: Store,
        clock: Arc<dyn Clock>,
        gates: HashMap<String, RecordGate>,
    ) -> Self {
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
        let cameras = cfg
            .cameras
            .iter()
            .map(|c| (c.id.clone(), Policy::of(&c.record, c.grid_cell.clone())))
            .collect();
        // The floors against the budget, at start-up: the budget's own pass raises
        // storage_full when it comes to that; this says so early and why.
        match floor_check(cfg, Some(&store), disk.usage(store.data_dir()).ok(), clock.now()) {
            Ok(msg) if msg.starts_with("no camera") => {}
            Ok(msg) => tracing::info!("storage: {msg}"),
            Err(msg) => tracing::error!("storage: {msg}"),
        }
        Retention {
            store,
            clock,
            gates,
            disk,
            storage: cfg.storage.clone(),
            cameras,
            default_policy: Policy::of(&RecordConfig::default(), None),
            protection: None,
            locks: None,
            media_lock_generation: 0,
            tally: None,
            media_done_before: None,
            clip_sweep_ms: None,
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
            Ok((usage, nothing_left)) => {
                self.update_full(now, usage, nothing_left, &mut report);
                self.keep_reserve(&usage);
            }
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

    /// Size of the database's reserve file on a filesystem of `total` bytes: a quarter of
    /// the free-space floor, between 1 and 64 MiB.
    fn reserve_bytes(&self, total: u64) -> u64 {
        (self.floor(total) / 4).clamp(1 << 20, 64 << 20)
    }

    /// (Re)creates the reserve once the floor plus the reserve itself is free.
    fn keep_reserve(&mut self, usage: &Usage) {
        let Some((free, total)) = usage.disk else { return };
        let size = self.reserve_bytes(total);
        let path = self.store.data_dir().join(crate::store::RESERVE_FILE);
        if self.full.is_some() || fs::metadata(&path).is_ok_and(|m| m.len() == size) {
            return;
        }
        if free >= self.floor(total).saturating_add(size) {
            if let Err(e) = self.store.ensure_reserve(size) {
                tracing::warn!("cannot create the database's reserve space: {e}");
            }
        }
    }

    /// Runs a database write; when the filesystem is full, releases the reserve and tries
    /// once more.
    fn db<T>(&self, mut f: impl FnMut(&Store) -> Result<T, StoreError>) -> Result<T, StoreError> {
        self.store.with_reserve(|| f(&self.store))
    }

    fn policy(&self, camera: &str) -> &Policy {
        self.cameras.get(camera).unwrap_or(&self.default_policy)
    }

    /// The protecting events, reloaded when a new event was stored or the cache is a minute old.
    fn protection(&mut self, now_ms: i64) -> Result<Protection, StoreError> {
        let max_seq = self.store.max_event_seq()?;
        let fresh = self.protection.as_ref().is_some_and(|c| {
            c.max_seq == max_seq
                && now_ms >= c.fetched_ms
                && now_ms - c.fetched_ms < PROTECTION_REFRESH_MS
        });
        if !fresh {
            let mut by_camera: HashMap<String, Vec<ProtectingEvent>> = HashMap::new();
            for e in self.store.protecting_events()? {
                by_camera.entry(e.camera_id.clone()).or_default().push(e);
            }
            self.protection = Some(ProtectionCache {
                max_seq,
                fetched_ms: now_ms,
                by_camera: Arc::new(by_camera),
            });
        }
        let by_camera = self.protection.as_ref().map(|c| c.by_camera.clone()).unwrap_or_default();
        Ok(Protection { now_ms, by_camera })
    }

    /// The active locks, reloaded when one was created or released, or after a minute (an
    /// event lock's span follows its event's end).
    fn locks(&mut self, now_ms: i64) -> Result<Locks, StoreError> {
        let generation = self.store.lock_generation()?;
        let fresh = self.locks.as_ref().is_some_and(|c| {
            c.generation == generation
                && now_ms >= c.fetched_ms
                && now_ms - c.fetched_ms < PROTECTION_REFRESH_MS
        });
        if !fresh {
            let l = Locks::load(&self.store, now_ms)?;
            self.locks = Some(LockCache { generation, fetched_ms: now_ms, by_camera: l.by_camera });
        }
        let by_camera = self.locks.as_ref().map(|c| c.by_camera.clone()).unwrap_or_default();
        Ok(Locks { now_ms, by_camera })
    }

    /// Whether an active lock covers `seg` (the locks are re-read first if one changed, so
    /// a lock takes effect before the next deletion).
    fn locked(&mut self, seg: &SegmentFile, now_ms: i64) -> Result<Option<(i64, i64)>, StoreError> {
        let locks = self.locks(now_ms)?;
        Ok(locks.lock_of(seg, self.policy(&seg.camera_id)))
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
                let mut jumped = false;
                for seg in &page {
                    if protection.as_ref().and_then(|p| p.protector(seg, &policy)).is_some() {
                        continue;
                    }
                    if let Some((s, e)) = self.locked(seg, now_ms)? {
                        report.locked_kept += 1;
                        if seg.start_ms >= s && e > seg.start_ms {
                            // Every later segment of this camera that starts by `e` is under
                            // the same lock: skip them without reading them (a long range
                            // lock would otherwise be re-read at every pass).
                            cursor = Some((e, i64::MAX));
                            jumped = true;
                            break;
                        }
                        continue;
                    }
                    if self.delete_segment(seg, now_ms, report)? {
                        report.age.add(seg.bytes);
                    }
                }
                if page.len() < PAGE && !jumped {
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
        let generation = self.store.lock_generation()?;
        if generation != self.media_lock_generation {
            // A lock was released (or set): events it kept may be due now.
            self.media_done_before = None;
            self.media_lock_generation = generation;
        }
        loop {
            let due = self.store.events_with_media_due(self.media_done_before, cutoff, PAGE)?;
            for &(id, _) in &due {
                let Some(m) = self.store.expire_event_media(id, now_ms)? else { continue };
                self.forget_bytes(m.clip_bytes);
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
        // A clip can be built again on request after its event's media expired; those are
        // looked for every 10 minutes.
        if self.clip_sweep_ms.is_none_or(|t| now_ms < t || now_ms - t >= TALLY_RESYNC_MS) {
            for (event_id, path, bytes) in self.store.clips_of_expired_events(PAGE)? {
                if self.store.delete_clip_row_by_key(&event_id)? {
                    self.forget_bytes(bytes);
                    self.remove_file(&path, report);
                    report.clips_expired += 1;
                }
            }
            self.clip_sweep_ms = Some(now_ms);
        }
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
        let over_max = if self.storage.max_bytes > 0 {
            u.media.saturating_sub(self.storage.max_bytes)
        } else {
            0
        };
        let below_floor = u.disk.map_or(0, |(free, total)| self.floor(total).saturating_sub(free));
        over_max.max(below_floor)
    }

    fn measure(&mut self, now_ms: i64, resync: bool) -> Result<Usage, StoreError> {
        let media = if self.storage.max_bytes > 0 || resync {
            self.media_bytes(now_ms, resync)?
                + export_files(&self.store).iter().map(|e| e.1).sum::<u64>()
        } else {
            0
        };
        Ok(Usage { media, disk: self.disk_usage() })
    }

    /// Deletes for the disk budget; returns the usage after it and whether nothing deletable
    /// was left.
    fn budget(
        &mut self,
        now_ms: i64,
        report: &mut RetentionReport,
    ) -> Result<(Usage, bool), StoreError> {
        let mut usage = self.measure(now_ms, false)?;
        if self.shortfall(&usage) == 0 {
            return Ok((usage, false));
        }
        // Deleted files count as freed even if the filesystem has not released them yet
        // (a reader still has one open): otherwise one open file could empty the disk.
        let free_at_start = usage.disk.map(|(f, _)| f);
        let mut freed = 0u64;
        let protection = self.protection(now_ms)?;
        let mut cursor: Option<(i64, i64)> = None;
        let mut forced_cursor: Option<(i64, i64)> = None;
        let mut unprotected_left = true;
        let mut evictions = 0usize;
        let mut nothing_left = false;
        let mut exports = std::collections::VecDeque::from(export_files(&self.store));
        let mut export_bytes: u64 = exports.iter().map(|e| e.1).sum();
        while self.shortfall(&usage) > 0 {
            if evictions >= MAX_EVICTIONS_PER_PASS {
                tracing::warn!("retention: {evictions} deletions in one pass and still over budget; continuing next pass");
                break;
            }
            let bytes = if let Some((path, bytes)) = exports.pop_front() {
                // Transient copies go before footage. The download notices within a second
                // that its file has no name any more, stops, and the space is freed.
                remove_abs(&path, report);
                tracing::warn!(path = %path.display(), "export deleted for the disk budget (its download is cut off)");
                report.exports_evicted.add(bytes);
                export_bytes = export_bytes.saturating_sub(bytes);
                bytes
            } else if unprotected_left {
                match self.next_evictable(&protection, false, now_ms, &mut cursor)? {
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
            } else if let Some(seg) =
                self.next_evictable(&protection, true, now_ms, &mut forced_cursor)?
            {
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
                if !self.db(|s| s.delete_clip_row(clip.event_id))? {
                    continue;
                }
                self.forget_bytes(clip.bytes);
                self.remove_file(&clip.path, report);
                tracing::warn!(event = %clip.event_id, "event clip deleted for the disk budget");
                report.clips_evicted.add(clip.bytes);
                clip.bytes
            } else {
                nothing_left = true;
                break;
            };
            evictions += 1;
            freed = freed.saturating_add(bytes);
            let media = if self.storage.max_bytes > 0 {
                self.media_bytes(now_ms, false)? + export_bytes
            } else {
                0
            };
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
        Ok((usage, nothing_left))
    }

    /// The oldest segment after `cursor` that the disk budget may delete: not under an
    /// evidence lock, not younger than its camera's `min_age_days`, and (unless
    /// `protected_too`) not protected by an unreviewed high/critical event. Advances `cursor`.
    fn next_evictable(
        &mut self,
        protection: &Protection,
        protected_too: bool,
        now_ms: i64,
        cursor: &mut Option<(i64, i64)>,
    ) -> Result<Option<SegmentFile>, StoreError> {
        loop {
            let page = self.store.segment_files(None, None, *cursor, PAGE)?;
            let n = page.len();
            for seg in page {
                *cursor = Some((seg.start_ms, seg.id));
                let policy = self.policy(&seg.camera_id).clone();
                if under_floor(&seg, &policy, now_ms)
                    || (!protected_too && protection.protector(&seg, &policy).is_some())
                    || self.locked(&seg, now_ms)?.is_some()
                {
                    continue;
                }
                return Ok(Some(seg));
            }
            if n < PAGE {
                return Ok(None);
            }
        }
    }

    /// Deletes a segment's row, then its file. False if the row was already gone. If even
    /// the reserve cannot make room for the database, the file goes first (the row follows
    /// as soon as that space is free; reconciliation drops a row whose file is gone).
    fn delete_segment(
        &mut self,
        seg: &SegmentFile,
        now_ms: i64,
        report: &mut RetentionReport,
    ) -> Result<bool, StoreError> {
        let (deleted, file_first) = match self.db(|s| s.delete_segment_row(seg.id)) {
            Err(e) if e.is_disk_full() => {
                tracing::warn!(path = %seg.path, "database full: deleting the segment file before its index row");
                self.remove_file(&seg.path, report);
                (self.store.delete_segment_row(seg.id)?, true)
            }
            r => (r?, false),
        };
        if !deleted {
            return Ok(false);
        }
        self.forget_bytes(seg.bytes);
        if !file_first {
            self.remove_file(&seg.path, report);
        }
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

    fn update_full(
        &mut self,
        now: OffsetDateTime,
        usage: Usage,
        nothing_left: bool,
        report: &mut RetentionReport,
    ) {
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
            if !nothing_left {
                return; // more to delete next pass
            }
            if self.full.is_none() {
                let (locked, young) = self.kept_bytes(to_ms(now)).unwrap_or_else(|e| {
                    tracing::error!("retention: cannot sum locked and floor footage: {e}");
                    (0, 0)
                });
                let mut detail = detail.clone();
                if let serde_json::Value::Object(m) = &mut detail {
                    m.insert("locked_bytes".into(), locked.into());
                    m.insert("min_age_bytes".into(), young.into());
                }
                tracing::error!(
                    free_bytes = free,
                    floor_bytes = floor,
                    needed_bytes = short,
                    locked_bytes = locked,
                    min_age_bytes = young,
                    "storage full: nothing left to delete (what is left is under an evidence lock, \
                     younger than its camera's record.min_age_days, or the database); recording stopped on every camera"
                );
                let mut cams: Vec<&String> = self.gates.keys().collect();
                cams.sort();
                let mut events = vec![];
                for cam in cams {
                    let id = Uuid::now_v7();
                    match self.db(|s| {
                        s.apply(&self.full_change(
                            id,
                            cam,
                            Change::Started,
                            now,
                            Some(detail.clone()),
                        ))
                    }) {
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
            // The end keeps the start's detail (how much was missing).
            if let Err(e) =
                self.db(|s| s.apply(&self.full_change(id, &cam, Change::Ended, now, None)))
            {
                tracing::error!(camera = %cam, event = %id, "cannot end storage_full event: {e}");
                report.errors += 1;
            }
        }
        self.full = None;
        tracing::warn!(
            free_bytes = free,
            floor_bytes = floor,
            "storage available again; recording resumed"
        );
    }

    /// Bytes kept by evidence locks (segments and clips) and by the `min_age_days` floors.
    fn kept_bytes(&mut self, now_ms: i64) -> Result<(u64, u64), StoreError> {
        let locks = self.locks(now_ms)?;
        let mut locked = self.store.locked_clip_bytes()?;
        let cams: Vec<String> = locks.cameras().cloned().collect();
        for cam in cams {
            let p = self.policy(&cam).clone();
            locked +=
                self.store.segment_bytes_in_spans(&cam, &locks.spans(&cam, p.pre_ms, p.post_ms))?;
        }
        let mut young = 0;
        for cam in self.store.segment_cameras()? {
            let p = self.policy(&cam);
            if p.min_age_ms > 0 {
                young +=
                    self.store.segment_bytes_after(&cam, now_ms.saturating_sub(p.min_age_ms))?;
            }
        }
        Ok((locked, young))
    }

    fn full_change(
        &self,
        id: Uuid,
        cam: &str,
        change: Change,
        at: OffsetDateTime,
        detail: Option<serde_json::Value>,
    ) -> EventChange {
        EventChange {
            grid_cell: self.cameras.get(cam).and_then(|p| p.grid_cell.clone()),
            detail,
            ..EventChange::bare(id, change, cam, STORAGE_FULL, Severity::High, at)
        }
    }
}

/// Storage status (`GET /api/v1/storage`): what the media uses, what evidence locks and
/// `min_age_days` floors keep, the budget and the filesystem.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StorageStatus {
    /// Indexed segments + clips + export files being downloaded (what `max_bytes` limits).
    pub media_bytes: u64,
    pub segment_bytes: u64,
    pub clip_bytes: u64,
    pub export_bytes: u64,
    /// Footage and clips kept by active evidence locks (counted in `media_bytes`).
    pub locked_bytes: u64,
    /// Footage younger than its camera's `min_age_days` (counted in `media_bytes`).
    pub min_age_bytes: u64,
    pub active_locks: usize,
    /// `storage.max_bytes` (0 = no byte budget).
    pub max_bytes: u64,
    /// The filesystem: free and total bytes, and the free-space floor; `null` when it
    /// cannot be measured.
    pub free_bytes: Option<u64>,
    pub total_bytes: Option<u64>,
    pub floor_bytes: Option<u64>,
    /// Recording is stopped for lack of space (a `storage_full` event is active).
    pub storage_full: bool,
    pub cameras: Vec<CameraStorage>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct CameraStorage {
    pub camera_id: String,
    pub segment_bytes: u64,
    pub locked_bytes: u64,
    pub min_age_bytes: u64,
    pub max_age_days: f64,
    pub min_age_days: f64,
    #[serde(with = "time::serde::rfc3339::option")]
    pub oldest: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub newest: Option<OffsetDateTime>,
}

/// Measures [`StorageStatus`]; `recording` has the record settings of the configured
/// cameras (others get the defaults, as in retention).
pub fn storage_status(
    store: &Store,
    storage: &StorageConfig,
    recording: &HashMap<String, RecordConfig>,
    now: OffsetDateTime,
    disk: &dyn DiskStats,
) -> Result<StorageStatus, StoreError> {
    let now_ms = to_ms(now);
    let locks = Locks::load(store, now_ms)?;
    let default = RecordConfig::default();
    let mut cameras = Vec::new();
    let mut segment_bytes = 0u64;
    let mut locked = store.locked_clip_bytes()?;
    let mut young = 0u64;
    for (cam, bytes, first, last) in store.segment_totals()? {
        let rec = recording.get(&cam).unwrap_or(&default);
        let p = Policy::of(rec, None);
        let l = store.segment_bytes_in_spans(&cam, &locks.spans(&cam, p.pre_ms, p.post_ms))?;
        let y = if p.min_age_ms > 0 {
            store.segment_bytes_after(&cam, now_ms.saturating_sub(p.min_age_ms))?
        } else {
            0
        };
        segment_bytes += bytes;
        locked += l;
        young += y;
        cameras.push(CameraStorage {
            camera_id: cam,
            segment_bytes: bytes,
            locked_bytes: l,
            min_age_bytes: y,
            max_age_days: rec.max_age_days,
            min_age_days: rec.min_age_days,
            oldest: crate::store::from_ms(first).ok(),
            newest: crate::store::from_ms(last).ok(),
        });
    }
    let clip_bytes = store.clip_bytes()?;
    let export_bytes: u64 = export_files(store).iter().map(|e| e.1).sum();
    let d = disk.usage(store.data_dir()).ok();
    let floor = d.map(|(_, total)| {
        let pct = (storage.min_free_percent.clamp(0.0, 100.0) / 100.0 * total as f64) as u64;
        storage.min_free_bytes.max(pct)
    });
    Ok(StorageStatus {
        media_bytes: segment_bytes + clip_bytes + export_bytes,
        segment_bytes,
        clip_bytes,
        export_bytes,
        locked_bytes: locked,
        min_age_bytes: young,
        active_locks: store.evidence_locks(None, true, 100_000)?.len(),
        max_bytes: storage.max_bytes,
        free_bytes: d.map(|x| x.0),
        total_bytes: d.map(|x| x.1),
        floor_bytes: floor,
        storage_full: store.storage_full_active()?,
        cameras,
    })
}

/// Footage over which a camera's recording rate is measured for the floor check.
const RATE_WINDOW_MS: i64 = 86_400_000;
/// Least footage (seconds) a rate is measured from.
const RATE_MIN_SECS: f64 = 60.0;

/// The `min_age_days` floors against the disk budget (`gridwatch check`, and at start-up):
/// each recording camera's floor needs `min_age_days` × its recording rate, measured over
/// its last 24 h of indexed footage (`store`, when the box has recorded). The media may use
/// at most `storage.max_bytes` (when set) and the filesystem's free space plus what the
/// media uses now, less the free-space floor (`disk` = `(free, total)`). `Ok` with a summary
/// when the floors fit or cannot be measured yet; `Err` naming the cameras and the numbers
/// when they do not: the box would stop recording (`storage_full`) rather than keep less.
pub fn floor_check(
    cfg: &Config,
    store: Option<&Store>,
    disk: Option<(u64, u64)>,
    now: OffsetDateTime,
) -> Result<String, String> {
    let floors: Vec<_> = cfg
        .cameras
        .iter()
        .filter(|c| c.records(&cfg.base_dir) && c.record.min_age_days > 0.0)
        .collect();
    if floors.is_empty() {
        return Ok("no camera has record.min_age_days".into());
    }
    let now_ms = to_ms(now);
    let mut need = 0u64;
    let mut parts = Vec::new();
    let mut unmeasured = Vec::new();
    for c in &floors {
        let measured = match store {
            Some(s) => s
                .recording_rate(&c.id, now_ms - RATE_WINDOW_MS)
                .map_err(|e| format!("cannot read the recordings index: {e}"))?,
            None => (0, 0.0),
        };
        if measured.1 < RATE_MIN_SECS {
            unmeasured.push(c.id.as_str());
            continue;
        }
        let rate = measured.0 as f64 / measured.1;
        let bytes = (rate * c.record.min_age_days * DAY_MS / 1000.0) as u64;
        need = need.saturating_add(bytes);
        parts.push(format!(
            "camera `{}`: record.min_age_days = {} at {:.0} kbit/s measured = {}",
            c.id,
            c.record.min_age_days,
            rate * 8.0 / 1000.0,
            human_bytes(bytes)
        ));
    }
    let media = match store {
        Some(s) => {
            s.media_bytes_after(MediaTally::default())
                .map_err(|e| format!("cannot read the recordings index: {e}"))?
                .bytes
        }
        None => 0,
    };
    let mut caps = Vec::new();
    if cfg.storage.max_bytes > 0 {
        caps.push((
            cfg.storage.max_bytes,
            format!("storage.max_bytes = {}", cfg.storage.max_bytes),
        ));
    }
    if let Some((free, total)) = disk {
        let pct = (cfg.storage.min_free_percent.clamp(0.0, 100.0) / 100.0 * total as f64) as u64;
        let floor = cfg.storage.min_free_bytes.max(pct);
        let cap = free.saturating_add(media).saturating_sub(floor);
        caps.push((
            cap,
            format!(
                "the data filesystem: {} free + {} of media − the free-space floor {}",
                human_bytes(free),
                human_bytes(media),
                human_bytes(floor)
            ),
        ));
    }
    let unmeasured = if unmeasured.is_empty() {
        String::new()
    } else {
        format!(
            "; not measured yet (under a minute of footage in the last 24 h): {}",
            unmeasured.join(", ")
        )
    };
    if parts.is_empty() {
        return Ok(format!("min_age_days floors{unmeasured}"));
    }
    match caps.iter().min_by_key(|c| c.0) {
        Some((cap, what)) if need > *cap => Err(format!(
            "the record.min_age_days floors need {} but the budget holds {} ({what}): {}; \
             recording would stop with storage_full rather than keep less. Raise the budget \
             or lower min_age_days{unmeasured}",
            human_bytes(need),
            human_bytes(*cap),
            parts.join("; ")
        )),
        Some((cap, what)) => Ok(format!(
            "floors need {} of {} ({what}): {}{unmeasured}",
            human_bytes(need),
            human_bytes(*cap),
            parts.join("; ")
        )),
        None => Ok(format!("floors need {}: {}{unmeasured}", human_bytes(need), parts.join("; "))),
    }
}

/// `12.3 GB` (decimal units, for messages).
fn human_bytes(b: u64) -> String {
    let b = b as f64;
    if b >= 1e9 {
        format!("{:.1} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.1} kB", b / 1e3)
    } else {
        format!("{b} bytes")
    }
}

/// The export files in `clips/` (`export-*`, finished or being built), oldest first, with
/// their sizes.
fn export_files(store: &Store) -> Vec<(std::path::PathBuf, u64)> {
    let Ok(dir) = fs::read_dir(store.clips_dir()) else { return Vec::new() };
    let mut out: Vec<(std::path::PathBuf, u64, std::time::SystemTime)> = dir
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(EXPORT_PREFIX))
        .filter_map(|e| {
            let m = e.metadata().ok().filter(|m| m.is_file())?;
            Some((e.path(), m.len(), m.modified().unwrap_or(std::time::UNIX_EPOCH)))
        })
        .collect();
    out.sort_by_key(|e| e.2);
    out.into_iter().map(|(p, b, _)| (p, b)).collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SimClock;
    use crate::store::recordings::{Clip, NewSegment};
    use crate::store::EventQuery;
    use crate::types::{EventState, Frame};
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use time::Duration;

    const CAMS: &str = "[models]
[[cameras]]
id = 'cam1'
url = 'x.mp4'
models = []
enabled = false
[cameras.record]
max_age_days = 1
pre_roll_secs = 5
post_roll_secs = 10
[[cameras]]
id = 'cam2'
url = 'x.mp4'
models = []
enabled = false
grid_cell = 'G7'
";

    /// Free space = `total − other − bytes of the media files under the data dir`.
    struct FakeDisk {
        root: PathBuf,
        total: AtomicU64,
        other: AtomicU64,
        fail: AtomicBool,
    }

    fn du(p: &Path) -> u64 {
        let Ok(rd) = fs::read_dir(p) else { return 0 };
        rd.flatten()
            .map(|e| match e.file_type() {
                Ok(t) if t.is_dir() => du(&e.path()),
                Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
                Err(_) => 0,
            })
            .sum()
    }

    impl DiskStats for FakeDisk {
        fn usage(&self, _path: &Path) -> io::Result<(u64, u64)> {
            if self.fail.load(Ordering::Relaxed) {
                return Err(io::Error::other("statvfs broke"));
            }
            let used: u64 =
                ["recordings", "clips", "snapshots"].iter().map(|d| du(&self.root.join(d))).sum();
            let total = self.total.load(Ordering::Relaxed);
            Ok((total.saturating_sub(self.other.load(Ordering::Relaxed) + used), total))
        }
    }

    struct Env {
        _tmp: tempfile::TempDir,
        store: Store,
        clock: Arc<SimClock>,
        disk: Arc<FakeDisk>,
        gates: HashMap<String, RecordGate>,
        ret: Retention,
    }

    fn now0() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap() // 2027-01-15 08:00 UTC
    }

    /// A store in a temp dir, cameras `cam1` (1 day, rolls 5/10 s) and `cam2` (defaults),
    /// a 1 GB fake disk and `storage` as the `[storage]` table.
    fn env(storage: &str) -> Env {
        env_cams(storage, CAMS)
    }

    /// [`env`] with other cameras (`cams`: the `[models]` table and `[[cameras]]`).
    fn env_cams(storage: &str, cams: &str) -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let text = format!("box_id = 'b'\ndata_dir = '/tmp'\n[storage]\n{storage}\n{cams}");
        let cfg = Config::parse(&text, Path::new("/")).unwrap();
        let clock = Arc::new(SimClock::new(now0()));
        let disk = Arc::new(FakeDisk {
            root: store.data_dir().to_path_buf(),
            total: AtomicU64::new(1 << 30),
            other: AtomicU64::new(0),
            fail: AtomicBool::new(false),
        });
        let gates: HashMap<String, RecordGate> =
            ["cam1", "cam2"].iter().map(|c| (c.to_string(), RecordGate::default())).collect();
        let ret =
            Retention::with_disk(&cfg, store.clone(), clock.clone(), gates.clone(), disk.clone());
        Env { _tmp: tmp, store, clock, disk, gates, ret }
    }

    impl Env {
        /// Writes a segment file of `bytes` bytes starting at `start`, `secs` long, and indexes it.
        fn seg(&self, cam: &str, start: OffsetDateTime, secs: i64, bytes: usize) -> (i64, PathBuf) {
            let day =
                format!("{:04}{:02}{:02}", start.year(), u8::from(start.month()), start.day());
            let rel = format!("recordings/{cam}/{day}/{}-00000.mp4", to_ms(start));
            let abs = self.store.data_dir().join(&rel);
            fs::create_dir_all(abs.parent().unwrap()).unwrap();
            fs::write(&abs, vec![7u8; bytes]).unwrap();
            let id = self
                .store
                .insert_segment(&NewSegment {
                    camera_id: cam.into(),
                    path: rel,
                    start,
                    end: start + Duration::seconds(secs),
                    start_pts_ns: None,
                    end_pts_ns: None,
                    bytes: bytes as u64,
                    codec: "h264".into(),
                    frames: None,
                    recovered: false,
                })
                .unwrap();
            (id, abs)
        }

        fn event(
            &self,
            cam: &str,
            sev: Severity,
            start: OffsetDateTime,
            end: Option<OffsetDateTime>,
            snapshot: bool,
        ) -> Uuid {
            let frame = Frame {
                camera_id: Arc::from(cam),
                index: 0,
                width: 8,
                height: 8,
                rgb: Arc::from(vec![128u8; 8 * 8 * 3]),
                pts_ns: None,
                captured_at: start,
                captured_instant: Instant::now(),
            };
            let mut c = EventChange {
                event_id: Uuid::now_v7(),
                change: Change::Started,
                camera_id: cam.into(),
                grid_cell: None,
                kind: "intrusion".into(),
                severity: sev,
                at: start,
                objects: vec![],
                snapshot: snapshot.then_some(frame),
                rule: None,
                zone: None,
                line: None,
                detail: None,
                caused_by: Instant::now(),
            };
            let id = self.store.apply(&c).unwrap().id;
            if let Some(end) = end {
                c.change = Change::Ended;
                c.at = end;
                c.snapshot = None;
                self.store.apply(&c).unwrap();
            }
            id
        }

        fn clip(&self, event: Uuid, at: OffsetDateTime, bytes: usize) -> PathBuf {
            let rel = format!("clips/{event}.mp4");
            let abs = self.store.data_dir().join(&rel);
            fs::create_dir_all(abs.parent().unwrap()).unwrap();
            fs::write(&abs, vec![1u8; bytes]).unwrap();
            self.store
                .put_clip(&Clip {
                    event_id: event,
                    path: rel,
                    start: at,
                    end: at,
                    bytes: bytes as u64,
                })
                .unwrap();
            abs
        }

        /// Another connection, as the API would use.
        fn sql(&self, sql: &str, id: Uuid) -> Option<i64> {
            let c = rusqlite::Connection::open(self.store.db_path()).unwrap();
            c.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
            if sql.starts_with("SELECT") {
                c.query_row(sql, [id.to_string()], |r| r.get(0)).unwrap()
            } else {
                c.execute(sql, [id.to_string()]).unwrap();
                None
            }
        }

        fn indexed(&self, id: i64) -> bool {
            self.store.segment(id).unwrap().is_some()
        }

        fn storage_full_events(&self) -> Vec<crate::types::Event> {
            let q =
                EventQuery { kind: Some(STORAGE_FULL.into()), limit: 100, ..Default::default() };
            let mut v = self.store.list_events(&q).unwrap().events;
            v.sort_by(|a, b| a.camera_id.cmp(&b.camera_id));
            v
        }
    }

    fn kept(e: &Env, segs: &[&(i64, PathBuf)]) {
        for (id, p) in segs {
            assert!(e.indexed(*id) && p.exists(), "segment {id} ({}) must be kept", p.display());
        }
    }

    fn gone(e: &Env, segs: &[&(i64, PathBuf)]) {
        for (id, p) in segs {
            assert!(
                !e.indexed(*id) && !p.exists(),
                "segment {id} ({}) must be deleted",
                p.display()
            );
        }
    }

    #[test]
    fn footage_older_than_the_camera_max_age_is_deleted() {
        let mut e = env("");
        let now = now0();
        let d = Duration::days;
        let a = e.seg("cam1", now - d(2) - Duration::seconds(10), 10, 100); // 1-day camera
        let b = e.seg("cam1", now - Duration::hours(23), 10, 100);
        let c = e.seg("cam2", now - d(6), 10, 100); // default 7 days
        let old = e.seg("retired", now - d(8), 10, 300); // no longer configured: 7 days
        let young = e.seg("retired", now - d(6), 10, 100);
        let r = e.ret.run();
        assert_eq!(r.age, Deleted { files: 2, bytes: 400 }, "{r}");
        assert_eq!(
            (r.budget.files, r.forced.files, r.errors, r.storage_full),
            (0, 0, 0, false),
            "{r}"
        );
        gone(&e, &[&a, &old]);
        kept(&e, &[&b, &c, &young]);
        // Emptied day directories at least two days old are removed.
        assert!(!a.1.parent().unwrap().exists() && !old.1.parent().unwrap().exists());
        assert!(b.1.parent().unwrap().exists());
        assert_eq!(e.ret.run(), RetentionReport::default(), "a second pass has nothing to do");
        // A day later, b has aged out too.
        e.clock.advance(d(1));
        assert_eq!(e.ret.run().age.files, 1);
        gone(&e, &[&b]);
    }

    #[test]
    fn unreviewed_high_severity_footage_is_kept_until_reviewed() {
        let mut e = env("");
        let now = now0();
        let s = Duration::seconds;
        let ev0 = now - Duration::days(3);
        let ev1 = ev0 + s(60);
        let high = e.event("cam1", Severity::High, ev0, Some(ev1), false);
        e.event("cam1", Severity::Medium, ev0 + s(300), Some(ev0 + s(400)), false);
        e.event("cam2", Severity::Critical, ev0 + s(500), Some(ev0 + s(600)), false);
        let active = e.event("cam1", Severity::Critical, now - Duration::days(2), None, false);

        let before = e.seg("cam1", ev0 - s(30), 10, 100); // ends 20 s before: outside the 5 s pre-roll
        let pre = e.seg("cam1", ev0 - s(10), 10, 100); // in the pre-roll
        let during = e.seg("cam1", ev0 + s(20), 10, 100);
        let post = e.seg("cam1", ev1 + s(5), 10, 100); // in the 10 s post-roll
        let after = e.seg("cam1", ev1 + s(11), 10, 100); // just past it
        let medium = e.seg("cam1", ev0 + s(300), 10, 100); // medium severity protects nothing
        let other_cam = e.seg("cam1", ev0 + s(500), 10, 100); // cam2's event does not protect cam1
        let ongoing = e.seg("cam1", now - Duration::hours(36), 10, 100); // active event: protected up to now

        let r = e.ret.run();
        assert_eq!(r.age.files, 4, "{r}");
        gone(&e, &[&before, &after, &medium, &other_cam]);
        kept(&e, &[&pre, &during, &post, &ongoing]);

        // Reviewed: its footage ages out normally (within a minute: protection is cached that long).
        e.sql("UPDATE events SET review = 'acknowledged' WHERE id = ?1", high);
        e.clock.advance(s(61));
        let r = e.ret.run();
        assert_eq!(r.age.files, 3, "{r}");
        gone(&e, &[&pre, &during, &post]);
        kept(&e, &[&ongoing]);
        // The active event ends: its footage is protected until it is reviewed, however old.
        e.store
            .apply(&EventChange::bare(
                active,
                Change::Ended,
                "cam1",
                "intrusion",
                Severity::Critical,
                now,
            ))
            .unwrap();
        e.clock.advance(Duration::days(30));
        assert_eq!(e.ret.run().age.files, 0);
        kept(&e, &[&ongoing]);
        e.sql("UPDATE events SET review = 'false_alarm' WHERE id = ?1", active);
        e.clock.advance(s(61));
        assert_eq!(e.ret.run().age.files, 1);
        gone(&e, &[&ongoing]);
    }

    #[test]
    fn event_clips_and_snapshots_are_kept_for_event_retention_days() {
        let mut e = env("event_retention_days = 30");
        let now = now0();
        let old = e.event(
            "cam1",
            Severity::Low,
            now - Duration::days(31),
            Some(now - Duration::days(31)),
            true,
        );
        let recent = e.event(
            "cam2",
            Severity::High,
            now - Duration::days(29),
            Some(now - Duration::days(29)),
            true,
        );
        let bare = e.event("cam2", Severity::Low, now - Duration::days(40), None, false);
        let old_clip = e.clip(old, now - Duration::days(31), 500);
        let recent_clip = e.clip(recent, now - Duration::days(29), 500);
        let snap = |id: Uuid| e.store.data_dir().join(SNAPSHOT_DIR).join(format!("{id}.jpg"));
        assert!(snap(old).exists() && snap(recent).exists());

        let r = e.ret.run();
        assert_eq!(
            (r.clips_expired, r.snapshots_expired, r.missing_files, r.errors),
            (1, 1, 0, 0),
            "{r}"
        );
        assert!(!old_clip.exists() && !snap(old).exists());
        assert!(e.store.clip(old).unwrap().is_none());
        let ev = e.store.get_event(old).unwrap().expect("the event row stays");
        assert_eq!(ev.snapshot, None);
        assert_eq!(
            e.sql("SELECT media_deleted_at FROM events WHERE id = ?1", old),
            Some(to_ms(now))
        );
        assert!(e.sql("SELECT media_deleted_at FROM events WHERE id = ?1", bare).is_some());
        // The younger event keeps its media …
        assert!(
            recent_clip.exists()
                && snap(recent).exists()
                && e.store.clip(recent).unwrap().is_some()
        );
        assert_eq!(e.sql("SELECT media_deleted_at FROM events WHERE id = ?1", recent), None);
        assert_eq!(e.ret.run(), RetentionReport::default());
        // … until it is 30 days old too.
        e.clock.advance(Duration::days(2));
        let r = e.ret.run();
        assert_eq!((r.clips_expired, r.snapshots_expired), (1, 1), "{r}");
        assert!(!recent_clip.exists() && !snap(recent).exists());
        assert!(e.store.get_event(recent).unwrap().is_some());
        // A clip built again on request for an expired event goes at the next sweep.
        let rebuilt = e.clip(old, now - Duration::days(31), 300);
        e.clock.advance(Duration::minutes(11));
        let r = e.ret.run();
        assert_eq!((r.clips_expired, r.snapshots_expired), (1, 0), "{r}");
        assert!(!rebuilt.exists() && e.store.clip(old).unwrap().is_none());
    }

    #[test]
    fn over_budget_deletes_the_oldest_footage_first() {
        let mut e = env("max_bytes = 3000");
        let now = now0();
        let m = Duration::minutes;
        let s1 = e.seg("cam1", now - m(50), 10, 1000);
        let s2 = e.seg("cam2", now - m(40), 10, 1000);
        let s3 = e.seg("cam1", now - m(30), 10, 1000);
        let s4 = e.seg("cam2", now - m(20), 10, 1000);
        let s5 = e.seg("cam1", now - m(10), 10, 1000);
        let ev = e.event("cam1", Severity::Low, now - m(45), Some(now - m(44)), false);
        let clip = e.clip(ev, now - m(45), 500);
        // 5500 bytes: three segments must go (the clip is older than two of them, but clips go last).
        let r = e.ret.run();
        assert_eq!(r.budget, Deleted { files: 3, bytes: 3000 }, "{r}");
        assert_eq!(
            (r.age.files, r.forced.files, r.clips_evicted.files, r.over_budget),
            (0, 0, 0, false),
            "{r}"
        );
        gone(&e, &[&s1, &s2, &s3]);
        kept(&e, &[&s4, &s5]);
        assert!(clip.exists());
        assert_eq!(e.store.media_bytes().unwrap(), 2500);
        // The running tally follows new segments.
        let s6 = e.seg("cam2", now - m(5), 10, 1000);
        assert_eq!(e.ret.run().budget.files, 1);
        gone(&e, &[&s4]);
        kept(&e, &[&s5, &s6]);
    }

    /// M1: an export being downloaded is a named file that counts against `max_bytes` and
    /// the free-space floor, and is deleted before any footage; one within budget is kept.
    #[test]
    fn export_files_count_and_go_before_footage() {
        let mut e = env("max_bytes = 3000");
        let now = now0();
        let m = Duration::minutes;
        let s1 = e.seg("cam1", now - m(50), 10, 1000);
        let s2 = e.seg("cam2", now - m(40), 10, 1000);
        let clips = e.store.clips_dir();
        fs::create_dir_all(&clips).unwrap();
        let x1 = clips.join(format!("{EXPORT_PREFIX}a.mp4"));
        fs::write(&x1, vec![3u8; 900]).unwrap();
        // 2900 bytes: within budget, nothing goes.
        let r = e.ret.run();
        assert!(!r.deleted_anything(), "{r}");
        assert!(x1.exists());
        // A second export (being built: .tmp) takes it to 3500: the older export goes
        // first, and that is enough.
        let x2 = clips.join(format!("{EXPORT_PREFIX}b.mp4.tmp"));
        fs::write(&x2, vec![3u8; 600]).unwrap();
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
        fs::File::options().write(true).open(&x1).unwrap().set_modified(old).unwrap();
        let r = e.ret.run();
        assert_eq!(r.exports_evicted, Deleted { files: 1, bytes: 900 }, "{r}");
        assert_eq!((r.budget.files, r.over_budget), (0, false), "{r}");
        assert!(!x1.exists() && x2.exists());
        kept(&e, &[&s1, &s2]);
        // The free-space floor counts it too: exports go before footage there as well.
        let mut e2 = env("min_free_bytes = 0\nmin_free_percent = 50");
        e2.disk.total.store(5_000, Ordering::Relaxed);
        let t = e2.seg("cam1", now - m(50), 10, 1000);
        let clips = e2.store.clips_dir();
        fs::create_dir_all(&clips).unwrap();
        let x = clips.join(format!("{EXPORT_PREFIX}c.mp4"));
        fs::write(&x, vec![3u8; 2000]).unwrap();
        let r = e2.ret.run();
        assert_eq!(r.exports_evicted.files, 1, "{r}");
        assert_eq!(r.budget.files, 0, "{r}");
        assert!(!x.exists());
        kept(&e2, &[&t]);
    }

    #[test]
    fn low_free_space_deletes_the_oldest_footage_first() {
        let mut e = env("min_free_bytes = 0\nmin_free_percent = 50");
        e.disk.total.store(10_000, Ordering::Relaxed);
        let now = now0();
        let segs: Vec<_> = (0..6)
            .map(|i| {
                e.seg(
                    if i % 2 == 0 { "cam1" } else { "cam2" },
                    now - Duration::minutes(60 - i),
                    10,
                    1000,
                )
            })
            .collect();
        // 6000 used of 10000: free 4000 < floor 5000 → one segment goes.
        let r = e.ret.run();
        assert_eq!(r.budget, Deleted { files: 1, bytes: 1000 }, "{r}");
        gone(&e, &[&segs[0]]);
        kept(&e, &segs[1..].iter().collect::<Vec<_>>());
        // Something else fills the disk: two more.
        e.disk.other.store(2000, Ordering::Relaxed);
        assert_eq!(e.ret.run().budget.files, 2);
        gone(&e, &[&segs[1], &segs[2]]);
    }

    #[test]
    fn protected_footage_is_evicted_only_when_nothing_else_is_left() {
        let mut e = env("max_bytes = 2100");
        let now = now0();
        let m = Duration::minutes;
        let p1 = e.seg("cam1", now - m(60), 10, 1000);
        let u1 = e.seg("cam1", now - m(50), 10, 1000);
        let p2 = e.seg("cam2", now - m(40), 10, 1000);
        e.event("cam1", Severity::High, now - m(60), Some(now - m(60)), false);
        let p2_event = e.event("cam2", Severity::Critical, now - m(40), Some(now - m(39)), false);
        let clip = e.clip(p2_event, now - m(40), 100);
        // 3100 bytes, 2100 allowed: the unprotected segment goes, although p1 is older.
        let r = e.ret.run();
        assert_eq!(r.budget, Deleted { files: 1, bytes: 1000 }, "{r}");
        assert_eq!(
            (r.forced.files, r.clips_evicted.files, r.over_budget, r.storage_full),
            (0, 0, false, false),
            "{r}"
        );
        gone(&e, &[&u1]);
        kept(&e, &[&p1, &p2]);
        // More footage of the critical event: only protected footage is left, so the oldest
        // of it is evicted (forced), and the clip, the last resort, stays.
        let p3 = e.seg("cam2", now - m(39) - Duration::seconds(30), 10, 1000);
        let r = e.ret.run();
        assert_eq!(r.forced, Deleted { files: 1, bytes: 1000 }, "{r}");
        assert_eq!((r.budget.files, r.clips_evicted.files, r.over_budget), (0, 0, false), "{r}");
        gone(&e, &[&p1]);
        kept(&e, &[&p2, &p3]);
        assert!(clip.exists());
    }

    #[test]
    fn storage_full_only_when_nothing_can_be_evicted_and_ends_when_space_returns() {
        let mut e = env("min_free_bytes = 10000\nmin_free_percent = 0");
        e.disk.total.store(100_000, Ordering::Relaxed);
        e.disk.other.store(85_000, Ordering::Relaxed);
        let now = now0();
        let m = Duration::minutes;
        let s1 = e.seg("cam1", now - m(30), 10, 2000);
        let s2 = e.seg("cam2", now - m(20), 10, 2000);
        let s3 = e.seg("cam1", now - m(10), 10, 2000);
        let ev = e.event("cam1", Severity::Low, now - m(30), Some(now - m(29)), false);
        let clip = e.clip(ev, now - m(30), 1000);
        // free 8000 < 10000: one segment is enough; no alarm.
        let r = e.ret.run();
        assert_eq!((r.budget.files, r.storage_full, r.over_budget), (1, false, false), "{r}");
        gone(&e, &[&s1]);
        assert!(e.gates.values().all(RecordGate::is_open));
        assert!(e.storage_full_events().is_empty());

        // The disk fills up with something else: everything goes, then recording stops.
        e.disk.other.store(95_000, Ordering::Relaxed);
        let r = e.ret.run();
        assert_eq!((r.budget.files, r.clips_evicted.files, r.forced.files), (2, 1, 0), "{r}");
        assert!(r.storage_full && r.over_budget, "{r}");
        gone(&e, &[&s2, &s3]);
        assert!(!clip.exists() && e.store.clip(ev).unwrap().is_none());
        assert!(e.gates.values().all(|g| !g.is_open()));
        let full = e.storage_full_events();
        assert_eq!(full.iter().map(|x| x.camera_id.as_str()).collect::<Vec<_>>(), ["cam1", "cam2"]);
        for x in &full {
            assert_eq!((x.severity, x.state), (Severity::High, EventState::Active));
            let d = x.detail.as_ref().unwrap();
            assert_eq!(d["free_bytes"], 5000, "{d}");
            assert_eq!(d["needed_bytes"], 5000, "{d}");
            assert_eq!(d["floor_bytes"], 10000, "{d}");
        }
        assert_eq!(full[1].grid_cell.as_deref(), Some("G7"));

        // Still full: no second alarm.
        e.clock.advance(m(1));
        assert!(e.ret.run().storage_full);
        assert_eq!(e.storage_full_events().len(), 2);
        // Back above the floor but within its 10 % margin: still stopped.
        e.disk.other.store(89_500, Ordering::Relaxed);
        let r = e.ret.run();
        assert!(r.storage_full && !r.over_budget, "{r}");
        assert!(e.gates.values().all(|g| !g.is_open()));
        // Space is back: recording resumes and the alarms end.
        e.disk.other.store(80_000, Ordering::Relaxed);
        e.clock.advance(m(1));
        let r = e.ret.run();
        assert!(!r.storage_full, "{r}");
        assert!(e.gates.values().all(RecordGate::is_open));
        let full = e.storage_full_events();
        assert_eq!(full.len(), 2);
        for x in &full {
            assert_eq!((x.state, x.ended_at), (EventState::Ended, Some(now + m(2))));
            assert_eq!(
                x.detail.as_ref().unwrap()["needed_bytes"],
                5000,
                "the start's detail is kept"
            );
        }
    }

    #[test]
    fn a_missing_or_undeletable_file_does_not_stop_the_pass() {
        let mut e = env("");
        let now = now0();
        let missing = e.seg("cam1", now - Duration::days(3), 10, 100);
        let undeletable = e.seg("cam1", now - Duration::days(3) + Duration::seconds(10), 10, 100);
        let fine = e.seg("cam1", now - Duration::days(3) + Duration::seconds(20), 10, 100);
        fs::remove_file(&missing.1).unwrap();
        fs::remove_file(&undeletable.1).unwrap();
        fs::create_dir(&undeletable.1).unwrap(); // remove_file fails on a directory
        e.disk.fail.store(true, Ordering::Relaxed);
        let r = e.ret.run();
        assert_eq!(r.age.files, 3, "{r}");
        assert_eq!((r.missing_files, r.errors), (1, 1), "{r}");
        assert!(!e.indexed(missing.0) && !e.indexed(undeletable.0));
        gone(&e, &[&fine]);
    }

    fn lock(e: &Env, target: LockTargetT, at: OffsetDateTime) -> Uuid {
        e.store
            .create_lock(
                &target,
                "investigation 17/2027",
                "alice",
                |l| {
                    crate::store::auth::NewAudit::new("user:alice", None, "lock_create")
                        .target(format!("lock:{}", l.id))
                },
                at,
            )
            .unwrap()
            .id
    }

    type LockTargetT = crate::store::locks::LockTarget;

    /// Issue 17 item 3: a locked event's footage, clip and snapshot, and a locked range,
    /// survive a squeeze that evicts everything else, then age past every limit; retention
    /// raises storage_full rather than touching them; unlocking lets them go.
    #[test]
    fn locked_footage_survives_a_squeeze_that_evicts_everything_else() {
        let mut e = env("min_free_bytes = 10000\nmin_free_percent = 0");
        e.disk.total.store(100_000, Ordering::Relaxed);
        let now = now0();
        let m = Duration::minutes;
        let s = Duration::seconds;
        // cam1: a low-severity event (protects nothing by itself) at now − 50 min.
        let ev_at = now - m(50);
        let ev = e.event("cam1", Severity::Low, ev_at, Some(ev_at + s(20)), true);
        let clip = e.clip(ev, ev_at - s(5), 700);
        let before = e.seg("cam1", ev_at - s(30), 10, 1000); // ends 20 s before the 5 s pre-roll
        let pre = e.seg("cam1", ev_at - s(10), 10, 1000); // in the pre-roll
        let during = e.seg("cam1", ev_at + s(10), 10, 1000);
        let post = e.seg("cam1", ev_at + s(25), 10, 1000); // in the 10 s post-roll
        let after = e.seg("cam1", ev_at + s(41), 10, 1000);
        // cam2: a locked range and footage around it.
        let r0 = now - m(40);
        let in_range = e.seg("cam2", r0, 10, 1000);
        let out_range = e.seg("cam2", r0 + m(2), 10, 1000);
        let later = e.seg("cam1", now - m(5), 10, 1000);
        let other_ev = e.event("cam2", Severity::Low, now - m(30), Some(now - m(30)), true);
        let other_clip = e.clip(other_ev, now - m(30), 300);
        let lock_ev = lock(&e, LockTargetT::Event(ev), now);
        let lock_range =
            lock(&e, LockTargetT::Range { camera: "cam2".into(), start: r0, end: r0 + s(30) }, now);
        let locked_bytes = 3 * 1000 + 1000 + 700;
        assert!(e.ret.run() == RetentionReport::default(), "nothing to do yet");

        // The disk fills with something else: every unlocked segment and clip goes, then
        // recording stops with storage_full; the locked footage stays.
        e.disk.other.store(95_000, Ordering::Relaxed);
        let r = e.ret.run();
        assert!(r.storage_full && r.over_budget, "{r}");
        gone(&e, &[&before, &after, &out_range, &later]);
        kept(&e, &[&pre, &during, &post, &in_range]);
        assert!(!other_clip.exists() && clip.exists(), "the locked event's clip stays");
        assert!(e.store.clip(ev).unwrap().is_some());
        let full = e.storage_full_events();
        assert_eq!(full.len(), 2);
        let d = full[0].detail.as_ref().unwrap();
        assert_eq!(d["locked_bytes"], locked_bytes, "{d}");
        // The storage status shows them.
        let st = storage_status(
            &e.store,
            &StorageConfig::default(),
            &HashMap::new(),
            now,
            e.disk.as_ref(),
        )
        .unwrap();
        assert_eq!((st.locked_bytes, st.active_locks, st.storage_full), (locked_bytes, 2, true));

        // Long past every age limit (1 day footage, 30 days event media): still kept.
        e.disk.other.store(0, Ordering::Relaxed);
        e.clock.advance(Duration::days(40));
        let r = e.ret.run();
        assert!(!r.storage_full, "{r}");
        // (The unlocked event's snapshot expires; its clip went in the squeeze.)
        assert_eq!((r.age.files, r.clips_expired, r.snapshots_expired), (0, 0, 1), "{r}");
        assert!(r.locked_kept >= 2, "{r:?}");
        kept(&e, &[&pre, &during, &post, &in_range]);
        let snap = e.store.data_dir().join(SNAPSHOT_DIR).join(format!("{ev}.jpg"));
        assert!(clip.exists() && snap.exists());

        // Unlocking (admin, audited) lets retention delete them at its next pass.
        let a = crate::store::auth::NewAudit::new("user:root", None, "lock_release");
        let t = e.clock.now();
        e.store.release_lock(lock_ev, "case closed", "root", &a, t).unwrap();
        let again = e.store.release_lock(lock_ev, "twice", "root", &a, t);
        assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
        let r = e.ret.run();
        assert_eq!((r.age.files, r.clips_expired, r.snapshots_expired), (3, 1, 1), "{r}");
        gone(&e, &[&pre, &during, &post]);
        assert!(!clip.exists() && !snap.exists());
        kept(&e, &[&in_range]);
        e.store.release_lock(lock_range, "done", "root", &a, t).unwrap();
        assert_eq!(e.ret.run().age.files, 1);
        gone(&e, &[&in_range]);

        // The uplink carries each lock change (outbox, in order).
        let page = e.store.feed_page(0, 1000).unwrap();
        let changes: Vec<(String, String)> = page
            .changes
            .iter()
            .map(|(_, j)| {
                let v: serde_json::Value = serde_json::from_str(j).unwrap();
                (v["change"].as_str().unwrap().into(), v["kind"].as_str().unwrap().into())
            })
            .filter(|(_, k)| k == crate::store::locks::LOCK_KIND)
            .collect();
        assert_eq!(
            changes.iter().map(|c| c.0.as_str()).collect::<Vec<_>>(),
            ["locked", "locked", "unlocked", "unlocked"]
        );
    }

    /// The age pass skips a run of segments under one range lock without reading them, and
    /// still deletes what follows the lock.
    #[test]
    fn the_age_pass_skips_a_locked_run_and_deletes_what_follows() {
        let mut e = env("");
        let t = now0() - Duration::days(3);
        let s = Duration::seconds;
        let before = e.seg("cam1", t - s(20), 10, 100);
        let locked: Vec<_> = (0..7).map(|i| e.seg("cam1", t + s(10 * i), 10, 100)).collect();
        let after = [e.seg("cam1", t + s(70), 10, 100), e.seg("cam1", t + s(80), 10, 100)];
        let other_cam = e.seg("cam2", t + s(30), 10, 100);
        lock(&e, LockTargetT::Range { camera: "cam1".into(), start: t, end: t + s(60) }, now0());
        let r = e.ret.run();
        assert_eq!(r.age.files, 3, "{r}"); // cam2's footage is 3 days old, its limit 7
        gone(&e, &[&before, &after[0], &after[1]]);
        kept(&e, &locked.iter().chain([&other_cam]).collect::<Vec<_>>());
        assert_eq!(r.locked_kept, 1, "the run is skipped at its first segment: {r:?}");
    }

    /// Issue 17 item 4: footage younger than its camera's `min_age_days` is never deleted
    /// for the budget; when only such footage is left, storage_full is raised instead.
    #[test]
    fn min_age_floor_is_never_evicted_for_the_budget() {
        let cams = "[models]
[[cameras]]
id = 'cam1'
url = 'x.mp4'
models = []
enabled = false
[cameras.record]
max_age_days = 2
min_age_days = 0.5
[[cameras]]
id = 'cam2'
url = 'x.mp4'
models = []
enabled = false
";
        let mut e = env_cams("max_bytes = 2500", cams);
        let now = now0();
        let h = Duration::hours;
        let old1 = e.seg("cam1", now - h(20), 10, 1000); // older than the 12 h floor
        let c2a = e.seg("cam2", now - h(3), 10, 1000);
        let young1 = e.seg("cam1", now - h(2), 10, 1000);
        let young2 = e.seg("cam1", now - h(1), 10, 1000);
        let c2b = e.seg("cam2", now - Duration::minutes(30), 10, 1000);
        // 5000 bytes, 2500 allowed: the oldest unfloored go, skipping cam1's young footage
        // although it is older than cam2's last segment.
        let r = e.ret.run();
        assert_eq!(r.budget, Deleted { files: 3, bytes: 3000 }, "{r}");
        assert!(!r.storage_full, "{r}");
        gone(&e, &[&old1, &c2a, &c2b]);
        kept(&e, &[&young1, &young2]);
        // More young footage than the budget holds: nothing is deleted, recording stops.
        let young3 = e.seg("cam1", now - Duration::minutes(10), 10, 1000);
        let r = e.ret.run();
        assert_eq!((r.budget.files, r.forced.files), (0, 0), "{r}");
        assert!(r.storage_full, "{r}");
        kept(&e, &[&young1, &young2, &young3]);
        let d = e.storage_full_events()[0].detail.clone().unwrap();
        assert_eq!(d["min_age_bytes"], 3000, "{d}");
        // 12 h later the first two are past the floor: they go, recording resumes.
        e.clock.advance(h(12));
        let r = e.ret.run();
        assert_eq!(r.budget.files, 1, "{r}");
        assert!(!r.storage_full, "{r}");
        gone(&e, &[&young1]);
        assert!(e.gates.values().all(RecordGate::is_open));
    }

    const MODEL: &str =
        concat!(env!("CARGO_MANIFEST_DIR"), "/models/nanodet-g-coco-320/model.toml");

    /// `gridwatch check` (and start-up): the floors against the budget, at the measured
    /// recording rate.
    #[test]
    fn floor_check_measures_the_rate_and_fails_when_the_budget_cannot_hold_it() {
        let cfg = |max: u64, min_age: f64| {
            let text = format!(
                "box_id = 'b'\ndata_dir = '/tmp'\n[storage]\nmax_bytes = {max}\n[models]\n\
                 m = '{MODEL}'\n[[cameras]]\nid = 'gate'\nurl = 'rtsp://cam/x'\nmodels = ['m']\n\
                 [cameras.record]\nmax_age_days = 7\nmin_age_days = {min_age}\n"
            );
            Config::parse(&text, Path::new("/")).unwrap()
        };
        let e = env("");
        let now = now0();
        // No footage yet: cannot be measured, not an error.
        let msg = floor_check(&cfg(1_000_000, 1.0), Some(&e.store), None, now).unwrap();
        assert!(msg.contains("not measured yet") && msg.contains("gate"), "{msg}");
        // One hour at 1000 bytes per 10 s = 100 B/s: a day is 8.64 MB.
        for i in 0..360 {
            e.seg("gate", now - Duration::hours(1) + Duration::seconds(10 * i), 10, 1000);
        }
        let ok = floor_check(&cfg(10_000_000, 1.0), Some(&e.store), None, now).unwrap();
        assert!(ok.contains("8.6 MB"), "{ok}");
        let err = floor_check(&cfg(5_000_000, 1.0), Some(&e.store), None, now).unwrap_err();
        assert!(
            err.contains("gate") && err.contains("8.6 MB") && err.contains("storage.max_bytes"),
            "{err}"
        );
        // The filesystem counts too: 3 MB free + 0.36 MB of media − the 256 MiB floor.
        let err =
            floor_check(&cfg(0, 1.0), Some(&e.store), Some((3_000_000, 1 << 40)), now).unwrap_err();
        assert!(err.contains("data filesystem"), "{err}");
        // A floor above the age limit is a config error naming the field and the camera.
        let text = format!(
            "box_id = 'b'\ndata_dir = '/tmp'\n[models]\nm = '{MODEL}'\n[[cameras]]\n\
             id = 'gate'\nurl = 'rtsp://cam/x'\nmodels = ['m']\n[cameras.record]\n\
             max_age_days = 3\nmin_age_days = 4\n"
        );
        let bad = Config::parse(&text, Path::new("/")).unwrap_err().to_string();
        assert!(bad.contains("min_age_days") && bad.contains("gate"), "{bad}");
    }

    #[test]
    fn statvfs_measures_the_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        let (free, total) = Statvfs.usage(dir.path()).unwrap();
        assert!(total > 0 && free <= total, "{free} {total}");
        assert!(Statvfs.usage(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn report_display() {
        let r = RetentionReport {
            age: Deleted { files: 2, bytes: 10 },
            storage_full: true,
            ..Default::default()
        };
        let s = r.to_string();
        assert!(s.contains("2 (10 bytes) by age") && s.contains("STORAGE FULL"), "{s}");
    }
}
