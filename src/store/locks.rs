//! Evidence locks (schema v8, issue 17): the footage of an event, or of a camera over a time
//! range, that retention never deletes — neither by age nor for the disk budget — while the
//! lock is active. Locking and releasing write the lock row, its audit entry and its outbox
//! envelope (change `locked` / `unlocked`, kind `evidence_lock`) in one transaction, like a
//! review. Rows are never deleted: a released lock keeps who released it, when and why.

use rusqlite::{params, OptionalExtension};
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::auth::{insert_audit, NewAudit};
use super::{from_ms, lock, to_ms, Store, StoreError};

/// The envelope kind of lock changes.
pub const LOCK_KIND: &str = "evidence_lock";
/// Longest lock or unlock reason (characters).
pub const MAX_REASON_CHARS: usize = 500;

/// SQL condition "the event row `{e}` is under an active lock": an event lock on it, or a
/// range lock on its camera overlapping `[started_at, COALESCE(ended_at, started_at)]`.
/// Its clip and snapshot are then kept.
pub(crate) fn event_locked_sql(e: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM evidence_locks l WHERE l.released_at IS NULL AND \
         (l.event_id = {e}.id OR (l.event_id IS NULL AND l.camera_id = {e}.camera_id \
          AND l.start_ms <= COALESCE({e}.ended_at, {e}.started_at) AND l.end_ms >= {e}.started_at)))"
    )
}

/// An evidence lock as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EvidenceLock {
    pub id: Uuid,
    pub camera_id: String,
    /// The locked event (an event lock); `null` for a range lock.
    pub event_id: Option<Uuid>,
    /// The locked range (a range lock); `null` for an event lock, whose footage is the
    /// event's clip span (pre-roll before its start to post-roll after its end).
    #[serde(with = "time::serde::rfc3339::option")]
    pub start: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub end: Option<OffsetDateTime>,
    pub reason: String,
    /// Who locked it: a username or `token:<name>`.
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub active: bool,
    #[serde(with = "time::serde::rfc3339::option")]
    pub released_at: Option<OffsetDateTime>,
    pub released_by: Option<String>,
    pub release_reason: Option<String>,
}

/// What to lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockTarget {
    /// An event's footage (its clip span), clip and snapshot.
    Event(Uuid),
    /// A camera's footage over `[start, end]`, and the clips and snapshots of its events in
    /// that range.
    Range { camera: String, start: OffsetDateTime, end: OffsetDateTime },
}

/// An active lock as retention applies it (times in ms since the epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockSpan {
    pub lock_id: String,
    pub camera_id: String,
    /// `Some` for an event lock: `start_ms`/`end_ms` are then the event's start and end
    /// (`None` while it is active), to be widened by the camera's pre- and post-roll.
    pub event_id: Option<String>,
    pub start_ms: i64,
    pub end_ms: Option<i64>,
}

const LOCK_COLS: &str =
    "id, camera_id, event_id, start_ms, end_ms, reason, created_by, created_at, \
                         released_at, released_by, release_reason";

type RawLock = (
    String,
    String,
    Option<String>,
    Option<i64>,
    Option<i64>,
    String,
    String,
    i64,
    Option<i64>,
    Option<String>,
    Option<String>,
);

fn row_to_raw(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawLock> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
        r.get(10)?,
    ))
}

fn from_raw(raw: RawLock) -> Result<EvidenceLock, StoreError> {
    let (id, camera_id, event_id, start, end, reason, created_by, created, released, rby, rreason) =
        raw;
    let bad = |msg: String| StoreError::Corrupt { id: format!("lock {id}"), msg };
    let uuid = |s: &str| Uuid::parse_str(s).map_err(|e| bad(format!("id `{s}`: {e}")));
    let t = |ms: i64| from_ms(ms).map_err(|e| bad(format!("time {ms}: {e}")));
    Ok(EvidenceLock {
        id: uuid(&id)?,
        camera_id,
        event_id: event_id.as_deref().map(uuid).transpose()?,
        start: start.map(t).transpose()?,
        end: end.map(t).transpose()?,
        reason,
        created_by,
        created_at: t(created)?,
        active: released.is_none(),
        released_at: released.map(t).transpose()?,
        released_by: rby,
        release_reason: rreason,
    })
}

fn sql(op: &str) -> impl FnOnce(rusqlite::Error) -> StoreError + '_ {
    move |e| StoreError::sql(op, e)
}

impl Store {
    /// Locks `target` with `reason` (by `by`, a display name); writes the lock, the audit
    /// entry `audit(lock)` and the `locked` outbox change in one transaction.
    /// `EventNotFound` for an unknown event.
    pub fn create_lock(
        &self,
        target: &LockTarget,
        reason: &str,
        by: &str,
        audit: impl FnOnce(&EvidenceLock) -> NewAudit,
        at: OffsetDateTime,
    ) -> Result<EvidenceLock, StoreError> {
        let mut conn = lock(&self.inner.writer);
        let tx = conn.transaction().map_err(sql("begin tx for a lock"))?;
        let (camera, event, start, end) = match target {
            LockTarget::Event(id) => {
                let cam: Option<String> = tx
                    .query_row(
                        "SELECT camera_id FROM events WHERE id = ?1",
                        params![id.to_string()],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(sql("look up the event to lock"))?;
                (cam.ok_or(StoreError::EventNotFound(*id))?, Some(*id), None, None)
            }
            LockTarget::Range { camera, start, end } => {
                (camera.clone(), None, Some(*start), Some(*end))
            }
        };
        let lock = EvidenceLock {
            id: Uuid::now_v7(),
            camera_id: camera,
            event_id: event,
            start,
            end,
            reason: reason.to_string(),
            created_by: by.to_string(),
            created_at: from_ms(to_ms(at)).unwrap_or(at),
            active: true,
            released_at: None,
            released_by: None,
            release_reason: None,
        };
        tx.execute(
            "INSERT INTO evidence_locks (id, camera_id, event_id, start_ms, end_ms, reason, created_by, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                lock.id.to_string(),
                lock.camera_id,
                lock.event_id.map(|u| u.to_string()),
                lock.start.map(to_ms),
                lock.end.map(to_ms),
                lock.reason,
                lock.created_by,
                to_ms(at)
            ],
        )
        .map_err(sql("insert lock"))?;
        insert_audit(&tx, &audit(&lock), at)?;
        let seq = self.outbox_lock(&tx, &lock, false)?;
        tx.commit().map_err(sql("commit lock"))?;
        drop(conn);
        self.outbox_committed(seq);
        Ok(lock)
    }

    /// Releases an active lock; writes the release, its audit entry and the `unlocked`
    /// outbox change in one transaction. `LockNotFound`; `Conflict` if already released.
    pub fn release_lock(
        &self,
        id: Uuid,
        reason: &str,
        by: &str,
        audit: &NewAudit,
        at: OffsetDateTime,
    ) -> Result<EvidenceLock, StoreError> {
        let id_s = id.to_string();
        let mut conn = lock(&self.inner.writer);
        let tx = conn.transaction().map_err(sql("begin tx for an unlock"))?;
        let raw = tx
            .query_row(
                &format!("SELECT {LOCK_COLS} FROM evidence_locks WHERE id = ?1"),
                params![id_s],
                row_to_raw,
            )
            .optional()
            .map_err(sql("read lock"))?
            .ok_or(StoreError::LockNotFound(id))?;
        let mut l = from_raw(raw)?;
        if let (Some(t), Some(b)) = (l.released_at, &l.released_by) {
            return Err(StoreError::Conflict(format!(
                "lock {id} was already released at {} by {b}",
                t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
            )));
        }
        tx.execute(
            "UPDATE evidence_locks SET released_at = ?2, released_by = ?3, release_reason = ?4 WHERE id = ?1",
            params![id_s, to_ms(at), by, reason],
        )
        .map_err(sql("release lock"))?;
        l.active = false;
        l.released_at = Some(from_ms(to_ms(at)).unwrap_or(at));
        l.released_by = Some(by.to_string());
        l.release_reason = Some(reason.to_string());
        insert_audit(&tx, audit, at)?;
        let seq = self.outbox_lock(&tx, &l, true)?;
        tx.commit().map_err(sql("commit unlock"))?;
        drop(conn);
        self.outbox_committed(seq);
        Ok(l)
    }

    /// One lock by id.
    pub fn evidence_lock(&self, id: Uuid) -> Result<Option<EvidenceLock>, StoreError> {
        let raw = self.read(|c| {
            c.query_row(
                &format!("SELECT {LOCK_COLS} FROM evidence_locks WHERE id = ?1"),
                params![id.to_string()],
                row_to_raw,
            )
            .optional()
            .map_err(sql("read lock"))
        })?;
        raw.map(from_raw).transpose()
    }

    /// Locks newest first, at most `limit`: of `camera` (all when `None`), only active ones
    /// when `active_only`.
    pub fn evidence_locks(
        &self,
        camera: Option<&str>,
        active_only: bool,
        limit: usize,
    ) -> Result<Vec<EvidenceLock>, StoreError> {
        let rows = self.read(|c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {LOCK_COLS} FROM evidence_locks
                     WHERE (?1 IS NULL OR camera_id = ?1) AND (?2 = 0 OR released_at IS NULL)
                     ORDER BY seq DESC LIMIT ?3"
                ))
                .map_err(sql("prepare locks query"))?;
            let rows = stmt
                .query_map(
                    params![camera, active_only as i64, limit.min(i64::MAX as usize) as i64],
                    row_to_raw,
                )
                .map_err(sql("query locks"))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(sql("read lock row"))
        })?;
        rows.into_iter().map(from_raw).collect()
    }

    /// Every active lock as retention applies it; event locks with their event's times.
    pub fn active_lock_spans(&self) -> Result<Vec<LockSpan>, StoreError> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT l.id, l.camera_id, l.event_id,
                            COALESCE(l.start_ms, e.started_at), COALESCE(l.end_ms, e.ended_at)
                     FROM evidence_locks l LEFT JOIN events e ON e.id = l.event_id
                     WHERE l.released_at IS NULL AND (l.event_id IS NULL OR e.id IS NOT NULL)",
                )
                .map_err(sql("prepare lock spans"))?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(LockSpan {
                        lock_id: r.get(0)?,
                        camera_id: r.get(1)?,
                        event_id: r.get(2)?,
                        start_ms: r.get(3)?,
                        end_ms: r.get(4)?,
                    })
                })
                .map_err(sql("query lock spans"))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(sql("read lock span"))
        })
    }

    /// A number that changes whenever a lock is created or released (rows are never
    /// deleted, and a lock is released once).
    pub fn lock_generation(&self) -> Result<i64, StoreError> {
        self.read(|c| {
            c.query_row("SELECT COUNT(*) + COUNT(released_at) FROM evidence_locks", [], |r| {
                r.get(0)
            })
            .map_err(sql("read lock generation"))
        })
    }

    /// Sum of the bytes of `camera`'s segments overlapping any of `spans` (ms, inclusive),
    /// each segment counted once.
    pub fn segment_bytes_in_spans(
        &self,
        camera: &str,
        spans: &[(i64, i64)],
    ) -> Result<u64, StoreError> {
        if spans.is_empty() {
            return Ok(0);
        }
        let mut ids = std::collections::HashSet::new();
        let mut total = 0u64;
        self.read(|c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT id, bytes FROM segments WHERE camera_id = ?1 AND start_ms <= ?3 AND end_ms >= ?2",
                )
                .map_err(sql("prepare locked bytes"))?;
            for &(s, e) in spans {
                let rows = stmt
                    .query_map(params![camera, s, e], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
                    .map_err(sql("query locked bytes"))?;
                for row in rows {
                    let (id, b) = row.map_err(sql("read locked bytes"))?;
                    if ids.insert(id) {
                        total = total.saturating_add(b.max(0) as u64);
                    }
                }
            }
            Ok(())
        })?;
        Ok(total)
    }

    /// Bytes of the clips whose event is locked.
    pub fn locked_clip_bytes(&self) -> Result<u64, StoreError> {
        let cond = event_locked_sql("e");
        self.read(|c| {
            c.query_row(
                &format!(
                    "SELECT COALESCE(SUM(c.bytes), 0) FROM clips c JOIN events e ON e.id = c.event_id WHERE {cond}"
                ),
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|b| b.max(0) as u64)
            .map_err(sql("sum locked clip bytes"))
        })
    }

    /// Bytes of `camera`'s segments that end after `after_ms` (the footage a
    /// `min_age_days` floor keeps).
    pub fn segment_bytes_after(&self, camera: &str, after_ms: i64) -> Result<u64, StoreError> {
        self.read(|c| {
            c.query_row(
                "SELECT COALESCE(SUM(bytes), 0) FROM segments WHERE camera_id = ?1 AND end_ms > ?2",
                params![camera, after_ms],
                |r| r.get::<_, i64>(0),
            )
            .map(|b| b.max(0) as u64)
            .map_err(sql("sum recent segment bytes"))
        })
    }

    /// `(bytes, seconds covered)` of `camera`'s segments that end after `after_ms`: its
    /// measured recording rate.
    pub fn recording_rate(&self, camera: &str, after_ms: i64) -> Result<(u64, f64), StoreError> {
        self.read(|c| {
            c.query_row(
                "SELECT COALESCE(SUM(bytes), 0), COALESCE(SUM(end_ms - start_ms), 0) FROM segments
                 WHERE camera_id = ?1 AND end_ms > ?2",
                params![camera, after_ms],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?.max(0) as u64,
                        r.get::<_, i64>(1)?.max(0) as f64 / 1000.0,
                    ))
                },
            )
            .map_err(sql("measure recording rate"))
        })
    }

    /// Per camera with footage: `(camera, segment bytes, first start ms, last end ms)`.
    pub fn segment_totals(&self) -> Result<Vec<(String, u64, i64, i64)>, StoreError> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT camera_id, SUM(bytes), MIN(start_ms), MAX(end_ms) FROM segments
                     GROUP BY camera_id ORDER BY camera_id",
                )
                .map_err(sql("prepare segment totals"))?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((r.get(0)?, r.get::<_, i64>(1)?.max(0) as u64, r.get(2)?, r.get(3)?))
                })
                .map_err(sql("query segment totals"))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(sql("read segment totals"))
        })
    }

    /// Bytes of all clips.
    pub fn clip_bytes(&self) -> Result<u64, StoreError> {
        self.read(|c| {
            c.query_row("SELECT COALESCE(SUM(bytes), 0) FROM clips", [], |r| r.get::<_, i64>(0))
                .map(|b| b.max(0) as u64)
                .map_err(sql("sum clip bytes"))
        })
    }

    /// Whether a `storage_full` event is active (recording stopped for lack of space).
    pub fn storage_full_active(&self) -> Result<bool, StoreError> {
        self.read(|c| {
            c.query_row(
                "SELECT EXISTS (SELECT 1 FROM events WHERE kind = 'storage_full' AND state = 'active')",
                [],
                |r| r.get(0),
            )
            .map_err(sql("look for storage_full events"))
        })
    }
}
