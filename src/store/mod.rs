//! SQLite event store and snapshot files. See docs/storage.md.
//!
//! One writer connection behind a mutex (SQLite allows one writer at a time anyway) and a
//! small pool of read connections; WAL mode lets readers run while the writer commits.

pub mod auth;
pub mod locks;
pub mod migrations;
pub mod outbox;
pub mod recordings;
pub mod retention;
pub mod snapshot;
#[cfg(test)]
mod tests;
pub mod viid;

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use rusqlite::types::Value;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::clock::{Clock, SystemClock};
use crate::geometry::CrossDir;
use crate::types::{
    Change, CountDelta, Detection, Event, EventChange, EventState, OccupancyDelta, Review, Severity,
};

pub use auth::TokenInfo;
pub use snapshot::encode_jpeg;

/// File name of the database inside the data dir.
pub const DB_FILE: &str = "gridwatch.db";
/// Most rows a statistics query (`counts`, `occupancy`, after summing per bucket) returns;
/// beyond it the query fails with [`StoreError::TooMany`] (docs/api.md).
pub const STATS_MAX_ROWS: usize = 10_000;
/// Directory of snapshot JPEGs inside the data dir.
pub const SNAPSHOT_DIR: &str = "snapshots";
/// Emergency space for the database inside the data dir (see `Store::release_reserve`).
pub const RESERVE_FILE: &str = ".reserve";
/// JPEG quality of event snapshots.
pub const SNAPSHOT_QUALITY: u8 = 85;
/// Read connections kept open for reuse.
const READ_POOL_MAX: usize = 4;
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{op}: {source}")]
    Sql {
        op: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("database schema: {0}")]
    Schema(String),
    #[error("event {0} not found")]
    EventNotFound(Uuid),
    #[error("event {0} already exists")]
    EventExists(Uuid),
    #[error("event {0} has ended and cannot be updated")]
    EventEnded(Uuid),
    #[error("image: {0}")]
    Image(String),
    #[error("stored event {id}: {msg}")]
    Corrupt { id: String, msg: String },
    #[error("token: {0}")]
    Token(String),
    /// The change conflicts with what is stored (e.g. a username that is taken).
    #[error("{0}")]
    Conflict(String),
    /// A query would return more than `limit` rows (statistics): the caller must narrow it.
    #[error("more than {limit} {what} match: narrow `since`/`until`, use a larger `bucket` or filter by camera")]
    TooMany { what: &'static str, limit: usize },
    /// No evidence lock with this id.
    #[error("lock {0} not found")]
    LockNotFound(Uuid),
    /// A review transition the workflow does not allow.
    #[error("event {id} is `{}`; it cannot become `{}` (allowed next: {})", from.as_str(), to.as_str(), allowed_next(*from))]
    InvalidTransition { id: Uuid, from: Review, to: Review },
}

fn allowed_next(r: Review) -> String {
    let next: Vec<&str> = r.next().into_iter().map(Review::as_str).collect();
    if next.is_empty() {
        "none, it is final".into()
    } else {
        next.join(", ")
    }
}

impl StoreError {
    /// True when SQLite (or a file write) failed because the filesystem is full.
    pub fn is_disk_full(&self) -> bool {
        match self {
            StoreError::Sql { source: rusqlite::Error::SqliteFailure(e, _), .. } => {
                e.code == rusqlite::ErrorCode::DiskFull
            }
            StoreError::Io { source, .. } => source.raw_os_error() == Some(libc::ENOSPC),
            _ => false,
        }
    }

    fn sql(op: impl Into<String>, source: rusqlite::Error) -> Self {
        StoreError::Sql { op: op.into(), source }
    }
    fn io(op: &'static str, path: &Path, source: std::io::Error) -> Self {
        StoreError::Io { op, path: path.to_path_buf(), source }
    }
}

/// Filter and cursor for [`Store::list_events`]. Results are newest first (by `seq`).
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub camera: Option<String>,
    pub kind: Option<String>,
    pub severity: Option<Severity>,
    pub grid_cell: Option<String>,
    /// Only events in this review state.
    pub review: Option<Review>,
    /// Events that started at or after this instant.
    pub since: Option<OffsetDateTime>,
    /// Events that started strictly before this instant.
    pub until: Option<OffsetDateTime>,
    /// Only events with `seq < before_seq` (the `next_before` of the previous page).
    pub before_seq: Option<i64>,
    /// Page size; 0 is treated as 1.
    pub limit: u32,
    /// Only events of these cameras or grid cells (a principal's scope); `None` = all.
    pub scope: Option<CameraFilter>,
}

/// Limits a query to a principal's scope (see `auth::Scope`, resolved against the
/// configured cameras): rows whose camera is in `cameras`, or, where rows have a grid
/// cell (events, feed changes), whose grid cell is in `grid_cells`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CameraFilter {
    pub cameras: Vec<String>,
    pub grid_cells: Vec<String>,
}

impl CameraFilter {
    /// A SQL condition (with `?N` placeholders appended to `args`) on the camera column
    /// and, when given, a grid-cell expression.
    pub(crate) fn sql(
        &self,
        camera_col: &str,
        cell_expr: Option<&str>,
        args: &mut Vec<Value>,
    ) -> String {
        let mut list = |vals: &[String]| {
            let ph: Vec<String> = vals
                .iter()
                .map(|v| {
                    args.push(Value::Text(v.clone()));
                    format!("?{}", args.len())
                })
                .collect();
            ph.join(", ")
        };
        let mut terms = Vec::new();
        if !self.cameras.is_empty() {
            terms.push(format!("{camera_col} IN ({})", list(&self.cameras)));
        }
        if let Some(cell) = cell_expr.filter(|_| !self.grid_cells.is_empty()) {
            terms.push(format!("{cell} IN ({})", list(&self.grid_cells)));
        }
        if terms.is_empty() {
            "0".into()
        } else {
            format!("({})", terms.join(" OR "))
        }
    }

    pub fn allows_camera(&self, camera: &str) -> bool {
        self.cameras.iter().any(|c| c == camera)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct EventPage {
    pub events: Vec<Event>,
    /// Pass as `before_seq` to get the next (older) page; `None` when this is the last page.
    pub next_before: Option<i64>,
}

/// Width of the stored count buckets (1 minute).
pub const COUNT_BUCKET_MS: i64 = 60_000;

/// Aggregation of [`Store::counts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Minute,
    Hour,
    Day,
}

impl Bucket {
    pub fn parse(s: &str) -> Option<Bucket> {
        match s {
            "minute" => Some(Bucket::Minute),
            "hour" => Some(Bucket::Hour),
            "day" => Some(Bucket::Day),
            _ => None,
        }
    }
    pub fn as_str(&self) -> &'static str {
        match self {
            Bucket::Minute => "minute",
            Bucket::Hour => "hour",
            Bucket::Day => "day",
        }
    }
    /// Bucket width in ms (days are UTC days).
    pub fn ms(&self) -> i64 {
        match self {
            Bucket::Minute => 60_000,
            Bucket::Hour => 3_600_000,
            Bucket::Day => 86_400_000,
        }
    }
}

/// Filter of [`Store::counts`]: 1-minute buckets whose start is in `[since, until)`.
#[derive(Debug, Clone)]
pub struct CountQuery {
    pub camera: Option<String>,
    pub line: Option<String>,
    pub class: Option<String>,
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
    pub bucket: Bucket,
}

/// One aggregated count row.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CountRow {
    pub camera_id: String,
    pub line: String,
    pub class: String,
    pub direction: CrossDir,
    /// Start of the (minute, hour or UTC day) bucket.
    #[serde(with = "time::serde::rfc3339")]
    pub bucket_start: OffsetDateTime,
    pub count: i64,
    /// Mean ground speed (km/h, 0.1) of the counted crossings that had one (cameras with a
    /// ground-plane calibration), or `None`.
    pub mean_speed_kmh: Option<f64>,
    /// How many of the counted crossings had a ground speed.
    pub speed_count: i64,
}

/// Start (ms) of the bucket of width `width_ms` containing `ms` (floor, also before 1970).
pub fn bucket_start(ms: i64, width_ms: i64) -> i64 {
    ms.div_euclid(width_ms) * width_ms
}

/// Filter of [`Store::occupancy`]: 1-minute buckets whose start is in `[since, until)`.
#[derive(Debug, Clone)]
pub struct OccupancyQuery {
    pub camera: Option<String>,
    pub zone: Option<String>,
    /// A class, or `*` for all classes together; `None` = every class and `*`.
    pub class: Option<String>,
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
    pub bucket: Bucket,
}

/// Occupancy of one zone and class over one (minute, hour or UTC day) bucket.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OccupancyRow {
    pub camera_id: String,
    pub zone: String,
    /// Class label, or `*` for all classes together.
    pub class: String,
    #[serde(with = "time::serde::rfc3339")]
    pub bucket_start: OffsetDateTime,
    /// Frames of the camera analysed in the bucket.
    pub samples: i64,
    /// Mean number of tracked objects of the class inside the zone per analysed frame.
    pub mean: f64,
    /// Largest number inside on one frame.
    pub max: i64,
}

struct Inner {
    data_dir: PathBuf,
    db_path: PathBuf,
    snapshot_dir: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    /// Envelope context and the feed signal of the uplink outbox.
    outbox: outbox::OutboxShared,
    /// Source of the rows' own stamps (`created_at`, `updated_at`, …).
    clock: RwLock<Arc<dyn Clock>>,
}

/// Handle to the database and snapshot directory; cheap to clone, shareable across threads.
/// All methods block: call them from `spawn_blocking` in async code.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("db", &self.inner.db_path).finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Milliseconds since the Unix epoch (UTC).
pub fn to_ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

pub fn from_ms(ms: i64) -> Result<OffsetDateTime, time::error::ComponentRange> {
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
}

fn configure(conn: &Connection, writer: bool) -> Result<(), StoreError> {
    conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| StoreError::sql("set busy_timeout", e))?;
    conn.pragma_update(None, "foreign_keys", true)
        .map_err(|e| StoreError::sql("enable foreign_keys", e))?;
    if writer {
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(|e| StoreError::sql("set journal_mode=WAL", e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Schema(format!("journal_mode is {mode}, WAL required")));
        }
    }
    // FULL: a committed event survives power loss (WAL is fsynced at every commit).
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(|e| StoreError::sql("set synchronous=FULL", e))?;
    Ok(())
}

/// The process umask for everything the appliance writes (recordings and clips written by
/// GStreamer, SQLite's files, exports): files 0600, directories 0700. Set once at start
/// (`main`), before any thread is started; returns the previous mask.
pub fn set_private_umask() -> u32 {
    // SAFETY: umask(2) only swaps the process's file mode creation mask; it cannot fail.
    unsafe { libc::umask(0o077) as u32 }
}

/// Creates `dir` (and its parents) 0700, or tightens an existing one to 0700 when group or
/// others have any access (the data dir holds the database, footage and credentials).
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let mode = fs::metadata(dir)?.permissions().mode();
    if mode & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(mode & 0o700))?;
    }
    Ok(())
}

/// Creates `path` 0600 if missing, or tightens an existing file to 0600.
fn private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let f = fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path)?;
    let mode = f.metadata()?.permissions().mode();
    if mode & 0o077 != 0 {
        f.set_permissions(fs::Permissions::from_mode(mode & 0o700))?;
    }
    Ok(())
}

/// `File::create` with mode 0600 whatever the umask.
pub fn create_private(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)
}

impl Store {
    /// Opens (creating if needed) the data dir, database and snapshot dir, migrates the
    /// schema to the latest version and removes snapshot files no event references.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        let store = Self::open_shared(data_dir)?;
        store.clean_snapshots()?;
        Ok(store)
    }

    /// Like [`Store::open`] but leaves the snapshot files alone: for command-line tools that
    /// may run beside the appliance (whose snapshot being written has no row yet).
    pub fn open_shared(data_dir: &Path) -> Result<Store, StoreError> {
        private_dir(data_dir).map_err(|e| StoreError::io("create data dir", data_dir, e))?;
        let data_dir =
            data_dir.canonicalize().map_err(|e| StoreError::io("resolve data dir", data_dir, e))?;
        let snapshot_dir = data_dir.join(SNAPSHOT_DIR);
        private_dir(&snapshot_dir)
            .map_err(|e| StoreError::io("create snapshot dir", &snapshot_dir, e))?;
        let db_path = data_dir.join(DB_FILE);
        // SQLite gives its -wal and -shm files the database file's mode: create it 0600
        // (and tighten one made by an older version) before SQLite opens it.
        for suffix in ["", "-wal", "-shm"] {
            let p = data_dir.join(format!("{DB_FILE}{suffix}"));
            if suffix.is_empty() || p.exists() {
                private_file(&p).map_err(|e| StoreError::io("create database", &p, e))?;
            }
        }
        let mut writer = Connection::open(&db_path)
            .map_err(|e| StoreError::sql(format!("open database {}", db_path.display()), e))?;
        configure(&writer, true)?;
        migrations::migrate(&mut writer)?;
        let outbox = outbox::OutboxShared::new(&writer)?;
        let store = Store {
            inner: Arc::new(Inner {
                data_dir,
                db_path,
                snapshot_dir,
                outbox,
                writer: Mutex::new(writer),
                readers: Mutex::new(Vec::new()),
                clock: RwLock::new(Arc::new(SystemClock)),
            }),
        };
        Ok(store)
    }

    /// Sets the clock the store stamps its rows with (`created_at`, `updated_at`, …; the
    /// times of events and segments come from their callers). The system clock until then.
    pub fn set_clock(&self, clock: Arc<dyn Clock>) {
        *self.inner.clock.write().unwrap_or_else(|e| e.into_inner()) = clock;
    }

    /// The current time of the store's clock.
    pub(crate) fn now(&self) -> OffsetDateTime {
        self.inner.clock.read().unwrap_or_else(|e| e.into_inner()).now()
    }

    /// Ends events left `active` by a crash or power cut (the process that owned them is
    /// gone): `ended_at` is the last time the event was written. Each gets an `ended` change
    /// in the outbox, in the same transaction. Returns how many.
    pub fn end_interrupted(&self) -> Result<usize, StoreError> {
        let mut conn = lock(&self.inner.writer);
        let tx = conn
            .transaction()
            .map_err(|e| StoreError::sql("begin tx to end interrupted events", e))?;
        let ids: Vec<String> = tx
            .prepare("SELECT id FROM events WHERE state = 'active' ORDER BY seq")
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .map_err(|e| StoreError::sql("list interrupted events", e))?;
        let n = tx
            .execute(
                "UPDATE events SET state = 'ended', ended_at = MAX(updated_at, started_at) WHERE state = 'active'",
                [],
            )
            .map_err(|e| StoreError::sql("end interrupted events", e))?;
        let seq = outbox::outbox_interrupted(self, &tx, &ids)?;
        tx.commit().map_err(|e| StoreError::sql("commit ending interrupted events", e))?;
        drop(conn);
        self.outbox_committed(seq);
        if n > 0 {
            tracing::warn!(events = n, "ended events left active by an unclean shutdown");
        }
        Ok(n)
    }

    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }

    /// Deletes the reserve file (zeros kept in the data dir), so that the database can
    /// commit when the filesystem is full — the deletions that free space and the
    /// `storage_full` alarm must not fail for lack of the space they would free. True if a
    /// reserve was released.
    pub fn release_reserve(&self) -> bool {
        let path = self.inner.data_dir.join(RESERVE_FILE);
        match fs::remove_file(&path) {
            Ok(()) => {
                tracing::warn!(
                    "filesystem full: released the database's reserve space ({})",
                    path.display()
                );
                true
            }
            Err(_) => false,
        }
    }

    /// Runs a database write; if the filesystem is full, releases the reserve and runs it
    /// once more. Every writer that must not fail for lack of space goes through this.
    pub fn with_reserve<T>(
        &self,
        mut f: impl FnMut() -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match f() {
            Err(e) if e.is_disk_full() && self.release_reserve() => f(),
            r => r,
        }
    }

    /// Makes the reserve file `bytes` long (zeros, fsynced), so it really occupies the space;
    /// no-op when it already has that size. A partial reserve is removed on failure.
    pub fn ensure_reserve(&self, bytes: u64) -> Result<(), StoreError> {
        let path = self.inner.data_dir.join(RESERVE_FILE);
        if fs::metadata(&path).is_ok_and(|m| m.len() == bytes) {
            return Ok(());
        }
        let res = (|| {
            let mut f = create_private(&path)?;
            let chunk = vec![0u8; 1 << 20];
            let mut left = bytes;
            while left > 0 {
                let n = left.min(chunk.len() as u64) as usize;
                f.write_all(&chunk[..n])?;
                left -= n as u64;
            }
            f.sync_all()
        })();
        res.map_err(|e| {
            let _ = fs::remove_file(&path);
            StoreError::io("write reserve file", &path, e)
        })
    }

    pub fn db_path(&self) -> &Path {
        &self.inner.db_path
    }

    pub fn schema_version(&self) -> Result<u32, StoreError> {
        migrations::current_version(&lock(&self.inner.writer))
    }

    /// Runs `f` on a pooled read-only connection.
    fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let pooled = lock(&self.inner.readers).pop();
        let conn = match pooled {
            Some(c) => c,
            None => {
                let c = Connection::open_with_flags(
                    &self.inner.db_path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY
                        | OpenFlags::SQLITE_OPEN_NO_MUTEX
                        | OpenFlags::SQLITE_OPEN_URI,
                )
                .map_err(|e| {
                    StoreError::sql(
                        format!("open database {} read-only", self.inner.db_path.display()),
                        e,
                    )
                })?;
                configure(&c, false)?;
                c
            }
        };
        let out = f(&conn);
        let mut pool = lock(&self.inner.readers);
        if pool.len() < READ_POOL_MAX {
            pool.push(conn);
        }
        out
    }

    /// Removes leftovers of interrupted snapshot writes (`*.tmp`) and snapshot files that no
    /// event row references (written, but the row's transaction never committed).
    fn clean_snapshots(&self) -> Result<(), StoreError> {
        let dir = &self.inner.snapshot_dir;
        let entries = fs::read_dir(dir).map_err(|e| StoreError::io("list snapshot dir", dir, e))?;
        let conn = lock(&self.inner.writer);
        let mut stmt = conn
            .prepare("SELECT 1 FROM events WHERE id = ?1 AND snapshot IS NOT NULL")
            .map_err(|e| StoreError::sql("prepare snapshot check", e))?;
        let mut removed = 0usize;
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let orphan = if name.ends_with(".tmp") {
                true
            } else if let Some(id) = name.strip_suffix(".jpg").and_then(|s| Uuid::parse_str(s).ok())
            {
                !stmt
                    .exists(params![id.to_string()])
                    .map_err(|e| StoreError::sql("check snapshot reference", e))?
            } else {
                false
            };
            if orphan {
                match fs::remove_file(&path) {
                    Ok(()) => removed += 1,
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "cannot remove orphan snapshot")
                    }
                }
            }
        }
        if removed > 0 {
            tracing::info!(removed, "removed unreferenced snapshot files");
        }
        Ok(())
    }

    fn snapshot_rel(id: Uuid) -> String {
        format!("{SNAPSHOT_DIR}/{id}.jpg")
    }

    /// Writes a snapshot atomically: `<id>.jpg.tmp`, fsync, rename, fsync the directory.
    fn write_snapshot(&self, id: Uuid, jpeg: &[u8]) -> Result<String, StoreError> {
        let dir = &self.inner.snapshot_dir;
        let final_path = dir.join(format!("{id}.jpg"));
        let tmp = dir.join(format!("{id}.jpg.tmp"));
        let res = (|| {
            let mut f =
                create_private(&tmp).map_err(|e| StoreError::io("create snapshot", &tmp, e))?;
            f.write_all(jpeg).map_err(|e| StoreError::io("write snapshot", &tmp, e))?;
            f.sync_all().map_err(|e| StoreError::io("fsync snapshot", &tmp, e))?;
            drop(f);
            fs::rename(&tmp, &final_path)
                .map_err(|e| StoreError::io("rename snapshot", &final_path, e))?;
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| StoreError::io("fsync snapshot dir", dir, e))
        })();
        if res.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        res.map(|()| Self::snapshot_rel(id))
    }

    /// Applies one change from the rule engine and returns the stored event.
    ///
    /// * `Started` inserts an active event (error if the id exists).
    /// * `Updated` replaces objects and severity (error if unknown or already ended).
    /// * `Ended` sets `ended_at` and state `ended`; objects are replaced when non-empty.
    ///   Ending an ended event is a no-op that keeps the first `ended_at`.
    ///
    /// If `change.snapshot` is set, the frame is drawn with `change.objects` and written to
    /// `snapshots/<id>.jpg` (atomically, fsynced) before the row referencing it commits.
    pub fn apply(&self, change: &EventChange) -> Result<Event, StoreError> {
        let id = change.event_id;
        let jpeg = match &change.snapshot {
            Some(frame) => Some(encode_jpeg(frame, &change.objects, SNAPSHOT_QUALITY)?),
            None => None,
        };
        // JSON has no NaN/inf (serde_json would write null and the row could not be read back).
        let finite = |v: f32| if v.is_finite() { v } else { 0.0 };
        let clean: Vec<Detection> = change
            .objects
            .iter()
            .map(|d| {
                let mut d = d.clone();
                d.score = finite(d.score);
                let b = &mut d.bbox;
                (b.x1, b.y1, b.x2, b.y2) = (finite(b.x1), finite(b.y1), finite(b.x2), finite(b.y2));
                for k in d.keypoints.iter_mut().flatten() {
                    (k.x, k.y, k.score) = (finite(k.x), finite(k.y), finite(k.score));
                }
                d
            })
            .collect();
        let objects = serde_json::to_string(&clean).map_err(|e| StoreError::Corrupt {
            id: id.to_string(),
            msg: format!("cannot serialise objects: {e}"),
        })?;
        let detail =
            change.detail.as_ref().map(serde_json::to_string).transpose().map_err(|e| {
                StoreError::Corrupt {
                    id: id.to_string(),
                    msg: format!("cannot serialise detail: {e}"),
                }
            })?;
        let now = to_ms(self.now());
        let at = to_ms(change.at);
        let id_s = id.to_string();

        let mut conn = lock(&self.inner.writer);
        let tx = conn
            .transaction()
            .map_err(|e| StoreError::sql(format!("begin tx for event {id}"), e))?;
        let state: Option<String> = tx
            .query_row("SELECT state FROM events WHERE id = ?1", params![id_s], |r| r.get(0))
            .optional()
            .map_err(|e| StoreError::sql(format!("look up event {id}"), e))?;
        match (change.change, state.as_deref()) {
            (Change::Started, Some(_)) => return Err(StoreError::EventExists(id)),
            (Change::Updated | Change::Ended, None) => return Err(StoreError::EventNotFound(id)),
            (Change::Updated, Some("ended")) => return Err(StoreError::EventEnded(id)),
            _ => {}
        }
        // The snapshot file is durable before the row that references it can commit.
        let snapshot = match &jpeg {
            Some(bytes) => Some(self.write_snapshot(id, bytes)?),
            None => None,
        };
        let res = match change.change {
            Change::Started => tx.execute(
                "INSERT INTO events (id, camera_id, grid_cell, kind, severity, state, started_at, ended_at,
                                     objects, snapshot, created_at, updated_at, rule, zone, line, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'active', ?6, NULL, ?7, ?8, ?9, ?9, ?10, ?11, ?12, ?13)",
                params![
                    id_s,
                    change.camera_id,
                    change.grid_cell,
                    change.kind,
                    change.severity.as_str(),
                    at,
                    objects,
                    snapshot,
                    now,
                    change.rule,
                    change.zone,
                    change.line,
                    detail
                ],
            ),
            Change::Updated => tx.execute(
                "UPDATE events SET objects = ?2, severity = ?3, snapshot = COALESCE(?4, snapshot), updated_at = ?5,
                        detail = COALESCE(?6, detail)
                 WHERE id = ?1",
                params![id_s, objects, change.severity.as_str(), snapshot, now, detail],
            ),
            Change::Ended => tx.execute(
                "UPDATE events SET state = 'ended', ended_at = COALESCE(ended_at, ?2),
                        objects = CASE WHEN ?3 = '[]' THEN objects ELSE ?3 END,
                        snapshot = COALESCE(?4, snapshot), updated_at = ?5, detail = COALESCE(?6, detail)
                 WHERE id = ?1",
                params![id_s, at, objects, snapshot, now, detail],
            ),
        };
        res.map_err(|e| StoreError::sql(format!("write event {id}"), e))?;
        let event = tx
            .query_row(
                &format!("SELECT {EVENT_COLS} FROM events WHERE id = ?1"),
                params![id_s],
                row_to_raw,
            )
            .map_err(|e| StoreError::sql(format!("read back event {id}"), e))?
            .into_event()?;
        // The uplink outbox row of this change commits with it (see store/outbox.rs).
        let outbox_seq = self.outbox_event(&tx, &event, change.change, change.at)?;
        tx.commit().map_err(|e| StoreError::sql(format!("commit event {id}"), e))?;
        drop(conn);
        self.outbox_committed(outbox_seq);
        Ok(event)
    }

    pub fn get_event(&self, id: Uuid) -> Result<Option<Event>, StoreError> {
        let raw = self.read(|c| {
            c.query_row(
                &format!("SELECT {EVENT_COLS} FROM events WHERE id = ?1"),
                params![id.to_string()],
                row_to_raw,
            )
            .optional()
            .map_err(|e| StoreError::sql(format!("get event {id}"), e))
        })?;
        raw.map(RawEvent::into_event).transpose()
    }

    /// Lists events matching `q`, newest first, one page at a time.
    pub fn list_events(&self, q: &EventQuery) -> Result<EventPage, StoreError> {
        let limit = q.limit.max(1);
        let mut sql = format!("SELECT {EVENT_COLS} FROM events WHERE 1");
        let mut args: Vec<Value> = Vec::new();
        if let Some(c) = &q.camera {
            args.push(Value::Text(c.clone()));
            sql += &format!(" AND camera_id = ?{}", args.len());
        }
        if let Some(k) = &q.kind {
            args.push(Value::Text(k.clone()));
            sql += &format!(" AND kind = ?{}", args.len());
        }
        if let Some(v) = q.severity {
            args.push(Value::Text(v.as_str().into()));
            sql += &format!(" AND severity = ?{}", args.len());
        }
        if let Some(g) = &q.grid_cell {
            args.push(Value::Text(g.clone()));
            sql += &format!(" AND grid_cell = ?{}", args.len());
        }
        if let Some(r) = q.review {
            args.push(Value::Text(r.as_str().into()));
            sql += &format!(" AND review = ?{}", args.len());
        }
        if let Some(t) = q.since {
            args.push(Value::Integer(to_ms(t)));
            sql += &format!(" AND started_at >= ?{}", args.len());
        }
        if let Some(t) = q.until {
            args.push(Value::Integer(to_ms(t)));
            sql += &format!(" AND started_at < ?{}", args.len());
        }
        if let Some(b) = q.before_seq {
            args.push(Value::Integer(b));
            sql += &format!(" AND seq < ?{}", args.len());
        }
        if let Some(f) = &q.scope {
            sql += &format!(" AND {}", f.sql("camera_id", Some("grid_cell"), &mut args));
        }
        args.push(Value::Integer(limit as i64 + 1));
        sql += &format!(" ORDER BY seq DESC LIMIT ?{}", args.len());
        let mut raws = self.read(|c| {
            let mut stmt =
                c.prepare_cached(&sql).map_err(|e| StoreError::sql("prepare list events", e))?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(args.iter()), row_to_raw)
                .map_err(|e| StoreError::sql("list events", e))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(|e| StoreError::sql("list events", e))
        })?;
        let more = raws.len() > limit as usize;
        raws.truncate(limit as usize);
        let events = raws.into_iter().map(RawEvent::into_event).collect::<Result<Vec<_>, _>>()?;
        let next_before = if more { events.last().map(|e| e.seq) } else { None };
        Ok(EventPage { events, next_before })
    }

    /// Absolute path of the event's snapshot, if it has one. Built from the event id only,
    /// never from a stored or client-supplied path.
    pub fn snapshot_file(&self, event: &Event) -> Option<PathBuf> {
        event.snapshot.as_ref()?;
        Some(self.inner.snapshot_dir.join(format!("{}.jpg", event.id)))
    }

    /// Stores a token hash (64 hex digits) under a display name; returns the token's id.
    pub fn add_token(&self, name: &str, sha256_hex: &str) -> Result<Uuid, StoreError> {
        if sha256_hex.len() != 64 || !sha256_hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(StoreError::Token("hash must be 64 hex digits (SHA-256)".into()));
        }
        let id = Uuid::now_v7();
        let conn = lock(&self.inner.writer);
        conn.execute(
            "INSERT INTO api_tokens (id, name, sha256, created_at, revoked_at) VALUES (?1, ?2, ?3, ?4, NULL)",
            params![id.to_string(), name, sha256_hex.to_ascii_lowercase(), to_ms(self.now())],
        )
        .map_err(|e| match e {
            rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
                StoreError::Token("a token with this hash already exists".into())
            }
            e => StoreError::sql(format!("add token `{name}`"), e),
        })?;
        Ok(id)
    }

    /// Revokes a token; returns false if no active token has this id.
    pub fn revoke_token(&self, id: Uuid) -> Result<bool, StoreError> {
        let conn = lock(&self.inner.writer);
        let n = conn
            .execute(
                "UPDATE api_tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                params![id.to_string(), to_ms(self.now())],
            )
            .map_err(|e| StoreError::sql(format!("revoke token {id}"), e))?;
        Ok(n > 0)
    }

    /// SHA-256 hex hashes of all non-revoked tokens.
    pub fn token_hashes(&self) -> Result<Vec<String>, StoreError> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached("SELECT sha256 FROM api_tokens WHERE revoked_at IS NULL")
                .map_err(|e| StoreError::sql("prepare token query", e))?;
            let rows = stmt
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(|e| StoreError::sql("read tokens", e))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(|e| StoreError::sql("read tokens", e))
        })
    }

    /// Whether `sha256_hex` is the hash of a non-revoked token.
    pub fn token_valid(&self, sha256_hex: &str) -> Result<bool, StoreError> {
        let h = sha256_hex.to_ascii_lowercase();
        self.read(|c| {
            let mut stmt = c
                .prepare_cached("SELECT 1 FROM api_tokens WHERE sha256 = ?1 AND revoked_at IS NULL")
                .map_err(|e| StoreError::sql("prepare token check", e))?;
            stmt.exists(params![h]).map_err(|e| StoreError::sql("check token", e))
        })
    }

    /// Number of non-revoked tokens.
    pub fn count_tokens(&self) -> Result<u64, StoreError> {
        self.read(|c| {
            c.query_row("SELECT COUNT(*) FROM api_tokens WHERE revoked_at IS NULL", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n.max(0) as u64)
            .map_err(|e| StoreError::sql("count tokens", e))
        })
    }

    /// For `api.generate_token_if_none`: if there is no token at all (none in the config,
    /// none active in the database), creates one named `name`, stores its hash and returns
    /// the token so the caller can show it once. Returns `None` when a token exists.
    /// Users who log in with a password count too: with one, no token is generated.
    pub fn bootstrap_token(
        &self,
        config_hashes: &[String],
        name: &str,
    ) -> Result<Option<String>, StoreError> {
        if !config_hashes.is_empty() || self.count_tokens()? > 0 || self.count_users()? > 0 {
            return Ok(None);
        }
        let token = try_generate_token()?;
        self.add_token(name, &hash_token(&token))?;
        Ok(Some(token))
    }

    /// Adds line-crossing counts to their 1-minute buckets (upsert), all in one transaction.
    pub fn add_counts(&self, deltas: &[CountDelta]) -> Result<(), StoreError> {
        if deltas.is_empty() {
            return Ok(());
        }
        let mut conn = lock(&self.inner.writer);
        let tx = conn.transaction().map_err(|e| StoreError::sql("begin tx for counts", e))?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO line_counts (camera_id, line, class, direction, bucket_start_ms, count,
                                              speed_sum_kmh, speed_n)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT (camera_id, line, class, direction, bucket_start_ms)
                     DO UPDATE SET count = count + excluded.count,
                                   speed_sum_kmh = speed_sum_kmh + excluded.speed_sum_kmh,
                                   speed_n = speed_n + excluded.speed_n",
                )
                .map_err(|e| StoreError::sql("prepare count upsert", e))?;
            for d in deltas {
                let speed = d.speed_kmh.filter(|v| v.is_finite() && *v >= 0.0);
                let speed_n = if speed.is_some() { d.count as i64 } else { 0 };
                let speed_sum = speed.map_or(0.0, |v| v as f64 * d.count as f64);
                stmt.execute(params![
                    d.camera_id,
                    d.line,
                    d.class,
                    d.direction.as_str(),
                    bucket_start(to_ms(d.at), COUNT_BUCKET_MS),
                    d.count as i64,
                    speed_sum,
                    speed_n
                ])
                .map_err(|e| StoreError::sql("upsert count", e))?;
            }
        }
        tx.commit().map_err(|e| StoreError::sql("commit counts", e))
    }

    /// Crossing counts summed per (camera, line, class, direction, bucket), ordered by
    /// bucket start, then camera, line, class and direction.
    pub fn counts(&self, q: &CountQuery) -> Result<Vec<CountRow>, StoreError> {
        let w = q.bucket.ms();
        let mut args: Vec<Value> = vec![Value::Integer(w)];
        let mut sql = String::from(
            "SELECT camera_id, line, class, direction, (bucket_start_ms - (((bucket_start_ms % ?1) + ?1) % ?1)) AS b,
                    SUM(count), SUM(speed_sum_kmh), SUM(speed_n)
             FROM line_counts WHERE 1",
        );
        for (col, v) in [("camera_id", &q.camera), ("line", &q.line), ("class", &q.class)] {
            if let Some(v) = v {
                args.push(Value::Text(v.clone()));
                sql += &format!(" AND {col} = ?{}", args.len());
            }
        }
        if let Some(t) = q.since {
            args.push(Value::Integer(to_ms(t)));
            sql += &format!(" AND bucket_start_ms >= ?{}", args.len());
        }
        if let Some(t) = q.until {
            args.push(Value::Integer(to_ms(t)));
            sql += &format!(" AND bucket_start_ms < ?{}", args.len());
        }
        sql += &format!(
            " GROUP BY camera_id, line, class, direction, b ORDER BY b, camera_id, line, class, direction LIMIT {}",
            STATS_MAX_ROWS + 1
        );
        let rows = self.read(|c| {
            let mut stmt =
                c.prepare_cached(&sql).map_err(|e| StoreError::sql("prepare counts query", e))?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(args.iter()), |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, i64>(5)?,
                        r.get::<_, f64>(6)?,
                        r.get::<_, i64>(7)?,
                    ))
                })
                .map_err(|e| StoreError::sql("query counts", e))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(|e| StoreError::sql("query counts", e))
        })?;
        if rows.len() > STATS_MAX_ROWS {
            return Err(StoreError::TooMany { what: "count rows", limit: STATS_MAX_ROWS });
        }
        rows.into_iter()
            .map(|(camera_id, line, class, dir, b, count, speed_sum, speed_n)| {
                let bad = |msg: String| StoreError::Corrupt {
                    id: format!("line_counts {camera_id}/{line}"),
                    msg,
                };
                Ok(CountRow {
                    direction: CrossDir::parse(&dir)
                        .ok_or_else(|| bad(format!("direction `{dir}`")))?,
                    bucket_start: from_ms(b).map_err(|e| bad(format!("bucket: {e}")))?,
                    count,
                    mean_speed_kmh: (speed_n > 0)
                        .then(|| (speed_sum / speed_n as f64 * 10.0).round() / 10.0),
                    speed_count: speed_n,
                    camera_id,
                    line,
                    class,
                })
            })
            .collect()
    }

    /// Adds zone occupancy samples to their 1-minute buckets (upsert: samples and sums add
    /// up, max is the larger), all in one transaction.
    pub fn add_occupancy(&self, deltas: &[OccupancyDelta]) -> Result<(), StoreError> {
        if deltas.is_empty() {
            return Ok(());
        }
        let mut conn = lock(&self.inner.writer);
        let tx = conn.transaction().map_err(|e| StoreError::sql("begin tx for occupancy", e))?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO zone_occupancy (camera_id, zone, class, bucket_start_ms, samples, sum, max)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT (camera_id, zone, class, bucket_start_ms)
                     DO UPDATE SET samples = samples + excluded.samples, sum = sum + excluded.sum,
                                   max = MAX(max, excluded.max)",
                )
                .map_err(|e| StoreError::sql("prepare occupancy upsert", e))?;
            for d in deltas {
                stmt.execute(params![
                    d.camera_id,
                    d.zone,
                    d.class,
                    bucket_start(to_ms(d.bucket_start), COUNT_BUCKET_MS),
                    i64::try_from(d.samples).unwrap_or(i64::MAX),
                    i64::try_from(d.sum).unwrap_or(i64::MAX),
                    d.max as i64
                ])
                .map_err(|e| StoreError::sql("upsert occupancy", e))?;
            }
        }
        tx.commit().map_err(|e| StoreError::sql("commit occupancy", e))
    }

    /// Zone occupancy per (camera, zone, class, bucket), ordered by bucket start, then
    /// camera, zone and class. The mean of a class divides its summed count by the frames
    /// analysed in the bucket (the `*` rows' samples), so minutes in which the class was
    /// never inside count as zero.
    pub fn occupancy(&self, q: &OccupancyQuery) -> Result<Vec<OccupancyRow>, StoreError> {
        use std::collections::BTreeMap;
        let w = q.bucket.ms();
        // Summed per requested bucket in SQL, so that what is read is bounded by the result.
        let mut args: Vec<Value> = vec![Value::Integer(w)];
        let mut sql = String::from(
            "SELECT camera_id, zone, class, (bucket_start_ms - (((bucket_start_ms % ?1) + ?1) % ?1)) AS b,
                    SUM(samples), SUM(sum), MAX(max)
             FROM zone_occupancy WHERE 1",
        );
        for (col, v) in [("camera_id", &q.camera), ("zone", &q.zone)] {
            if let Some(v) = v {
                args.push(Value::Text(v.clone()));
                sql += &format!(" AND {col} = ?{}", args.len());
            }
        }
        if let Some(c) = &q.class {
            args.push(Value::Text(c.clone()));
            sql += &format!(" AND (class = ?{} OR class = '*')", args.len());
        }
        if let Some(t) = q.since {
            args.push(Value::Integer(to_ms(t)));
            sql += &format!(" AND bucket_start_ms >= ?{}", args.len());
        }
        if let Some(t) = q.until {
            args.push(Value::Integer(to_ms(t)));
            sql += &format!(" AND bucket_start_ms < ?{}", args.len());
        }
        sql += &format!(" GROUP BY camera_id, zone, class, b LIMIT {}", STATS_MAX_ROWS + 1);
        type Raw = (String, String, String, i64, i64, i64, i64);
        let rows: Vec<Raw> = self.read(|c| {
            let mut stmt = c
                .prepare_cached(&sql)
                .map_err(|e| StoreError::sql("prepare occupancy query", e))?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(args.iter()), |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                    ))
                })
                .map_err(|e| StoreError::sql("query occupancy", e))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(|e| StoreError::sql("query occupancy", e))
        })?;
        if rows.len() > STATS_MAX_ROWS {
            return Err(StoreError::TooMany { what: "occupancy rows", limit: STATS_MAX_ROWS });
        }
        // Frames per (bucket, camera, zone) from the all-classes rows.
        let mut frames: BTreeMap<(i64, String, String), i64> = BTreeMap::new();
        // (bucket, camera, zone, class) → (sum, max, own samples).
        type Key = (i64, String, String, String);
        let mut acc: BTreeMap<Key, (i64, i64, i64)> = BTreeMap::new();
        for (camera, zone, class, b, samples, sum, max) in rows {
            let b = bucket_start(b, w);
            if class == crate::rules::occupancy::ALL_CLASSES {
                *frames.entry((b, camera.clone(), zone.clone())).or_default() += samples;
            }
            if q.class.as_ref().is_some_and(|c| *c != class) {
                continue;
            }
            let e = acc.entry((b, camera, zone, class)).or_default();
            e.0 = e.0.saturating_add(sum);
            e.1 = e.1.max(max);
            e.2 = e.2.saturating_add(samples);
        }
        acc.into_iter()
            .map(|((b, camera_id, zone, class), (sum, max, own))| {
                let samples = frames
                    .get(&(b, camera_id.clone(), zone.clone()))
                    .copied()
                    .unwrap_or(own)
                    .max(own);
                let bad = |msg: String| StoreError::Corrupt {
                    id: format!("zone_occupancy {camera_id}/{zone}"),
                    msg,
                };
                Ok(OccupancyRow {
                    bucket_start: from_ms(b).map_err(|e| bad(format!("bucket: {e}")))?,
                    samples,
                    mean: if samples > 0 { sum as f64 / samples as f64 } else { 0.0 },
                    max,
                    camera_id,
                    zone,
                    class,
                })
            })
            .collect()
    }

    /// Checkpoints the WAL into the database file and truncates it (graceful shutdown).
    /// The store stays usable afterwards.
    pub fn close(&self) -> Result<(), StoreError> {
        lock(&self.inner.readers).clear();
        let conn = lock(&self.inner.writer);
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(|e| StoreError::sql("checkpoint WAL", e))
    }
}

/// SHA-256 of a token, lowercase hex (what the config and the database store).
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new random API token: `gw_` followed by 64 hex digits (32 bytes from the OS RNG).
///
/// # Panics
/// If the operating system's random generator is unavailable (then no secure token can
/// be made at all); see [`try_generate_token`] for a fallible variant.
pub fn generate_token() -> String {
    match try_generate_token() {
        Ok(t) => t,
        Err(e) => panic!("{e}"),
    }
}

/// Like [`generate_token`], but returns an error if the OS random generator fails.
pub fn try_generate_token() -> Result<String, StoreError> {
    let mut buf = [0u8; 32];
    getrandom::fill(&mut buf)
        .map_err(|e| StoreError::Token(format!("OS random generator failed: {e}")))?;
    Ok(format!("gw_{}", hex::encode(buf)))
}

const EVENT_COLS: &str = "seq, id, camera_id, grid_cell, kind, severity, state, started_at, ended_at, objects, snapshot, \
                          rule, zone, line, detail, review, reviewed_by, reviewed_at, review_note";

struct RawEvent {
    seq: i64,
    id: String,
    camera_id: String,
    grid_cell: Option<String>,
    kind: String,
    severity: String,
    state: String,
    started_at: i64,
    ended_at: Option<i64>,
    objects: String,
    snapshot: Option<String>,
    rule: Option<String>,
    zone: Option<String>,
    line: Option<String>,
    detail: Option<String>,
    review: String,
    reviewed_by: Option<String>,
    reviewed_at: Option<i64>,
    review_note: Option<String>,
}

fn row_to_raw(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawEvent> {
    Ok(RawEvent {
        seq: r.get(0)?,
        id: r.get(1)?,
        camera_id: r.get(2)?,
        grid_cell: r.get(3)?,
        kind: r.get(4)?,
        severity: r.get(5)?,
        state: r.get(6)?,
        started_at: r.get(7)?,
        ended_at: r.get(8)?,
        objects: r.get(9)?,
        snapshot: r.get(10)?,
        rule: r.get(11)?,
        zone: r.get(12)?,
        line: r.get(13)?,
        detail: r.get(14)?,
        review: r.get(15)?,
        reviewed_by: r.get(16)?,
        reviewed_at: r.get(17)?,
        review_note: r.get(18)?,
    })
}

impl RawEvent {
    fn into_event(self) -> Result<Event, StoreError> {
        let bad = |msg: String| StoreError::Corrupt { id: self.id.clone(), msg };
        let id = Uuid::parse_str(&self.id).map_err(|e| bad(format!("id: {e}")))?;
        let severity = Severity::parse(&self.severity)
            .ok_or_else(|| bad(format!("severity `{}`", self.severity)))?;
        let state = match self.state.as_str() {
            "active" => EventState::Active,
            "ended" => EventState::Ended,
            s => return Err(bad(format!("state `{s}`"))),
        };
        let started_at = from_ms(self.started_at).map_err(|e| bad(format!("started_at: {e}")))?;
        let ended_at =
            self.ended_at.map(from_ms).transpose().map_err(|e| bad(format!("ended_at: {e}")))?;
        let objects: Vec<Detection> =
            serde_json::from_str(&self.objects).map_err(|e| bad(format!("objects: {e}")))?;
        let detail: Option<serde_json::Value> = self
            .detail
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| bad(format!("detail: {e}")))?;
        let review =
            Review::parse(&self.review).ok_or_else(|| bad(format!("review `{}`", self.review)))?;
        let reviewed_at = self
            .reviewed_at
            .map(from_ms)
            .transpose()
            .map_err(|e| bad(format!("reviewed_at: {e}")))?;
        Ok(Event {
            id,
            seq: self.seq,
            camera_id: self.camera_id,
            grid_cell: self.grid_cell,
            kind: self.kind,
            severity,
            started_at,
            ended_at,
            state,
            objects,
            snapshot: self.snapshot,
            rule: self.rule,
            zone: self.zone,
            line: self.line,
            detail,
            review,
            reviewed_by: self.reviewed_by,
            reviewed_at,
            review_note: self.review_note,
        })
    }
}
