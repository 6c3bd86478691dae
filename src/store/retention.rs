//! The queries of retention and start-up reconciliation (`record::retention`,
//! `record::reconcile`). Rows are always deleted before their files: the caller removes
//! the file after the row's deletion has committed, so the index never points at a
//! missing file (a crash in between leaves an orphan file that reconciliation removes).

use rusqlite::types::Value;
use rusqlite::{params, OptionalExtension};
use uuid::Uuid;

use super::{from_ms, lock, Store, StoreError};
use crate::store::recordings::Clip;

/// A segment row as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentFile {
    pub id: i64,
    pub camera_id: String,
    /// Relative to the data dir.
    pub path: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub bytes: u64,
}

/// An unreviewed (`review = 'new'`) event of severity `high` or `critical`: its footage is
/// kept past the age limit. `storage_full` events (raised by retention itself, about the
/// lack of footage) protect nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectingEvent {
    pub id: String,
    pub camera_id: String,
    pub started_ms: i64,
    /// `None` while the event is active.
    pub ended_ms: Option<i64>,
}

/// What [`Store::expire_event_media`] removed from the database (the caller deletes the
/// files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiredMedia {
    pub event_id: Uuid,
    /// The clip row's path (relative to the data dir), if the event had a clip.
    pub clip: Option<String>,
    /// The clip row's bytes (0 without a clip).
    pub clip_bytes: u64,
    /// The event had a snapshot (`snapshots/<id>.jpg`).
    pub snapshot: bool,
}

/// Sum of indexed media bytes with the high-water marks it was computed up to, so later
/// sums can add only new rows (see [`Store::media_bytes_after`]). Segment ids never repeat
/// (AUTOINCREMENT); a clip rowid can be reused after the newest clip row was deleted, so a
/// holder should recompute the full sum now and then.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MediaTally {
    pub bytes: u64,
    /// Highest segment id included.
    pub segment_id: i64,
    /// Highest clip rowid included.
    pub clip_rowid: i64,
}

fn row_to_file(r: &rusqlite::Row<'_>) -> rusqlite::Result<SegmentFile> {
    Ok(SegmentFile {
        id: r.get(0)?,
        camera_id: r.get(1)?,
        path: r.get(2)?,
        start_ms: r.get(3)?,
        end_ms: r.get(4)?,
        bytes: r.get::<_, i64>(5)?.max(0) as u64,
    })
}

impl Store {
    /// Distinct cameras that have indexed segments (an index skip-scan: one seek per camera).
    pub fn segment_cameras(&self) -> Result<Vec<String>, StoreError> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached(
                    "WITH RECURSIVE cam(id) AS (
                         SELECT MIN(camera_id) FROM segments
                         UNION ALL
                         SELECT (SELECT MIN(camera_id) FROM segments WHERE camera_id > cam.id) FROM cam WHERE cam.id IS NOT NULL
                     )
                     SELECT id FROM cam WHERE id IS NOT NULL",
                )
                .map_err(|e| StoreError::sql("prepare segment cameras", e))?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(|e| StoreError::sql("query segment cameras", e))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(|e| StoreError::sql("read segment camera", e))
        })
    }

    /// Segments oldest first (by start, then id), at most `limit`: of `camera` (all when
    /// `None`), ending before `end_before_ms` (any when `None`), and after the cursor
    /// `(start_ms, id)` of the previous page.
    pub fn segment_files(
        &self,
        camera: Option<&str>,
        end_before_ms: Option<i64>,
        after: Option<(i64, i64)>,
        limit: usize,
    ) -> Result<Vec<SegmentFile>, StoreError> {
        // The statement is built for the filters given: a generic `?1 IS NULL OR …` form
        // keeps SQLite from using the (camera_id, start_ms) index.
        let mut sql = String::from(
            "SELECT id, camera_id, path, start_ms, end_ms, bytes FROM segments WHERE 1",
        );
        let mut args: Vec<Value> = Vec::new();
        if let Some(c) = camera {
            args.push(Value::Text(c.to_string()));
            sql += &format!(" AND camera_id = ?{}", args.len());
        }
        if let Some(t) = end_before_ms {
            // `start_ms < t` is implied (start ≤ end) and bounds the index range.
            args.push(Value::Integer(t));
            sql += &format!(" AND start_ms < ?{n} AND end_ms < ?{n}", n = args.len());
        }
        if let Some((start, id)) = after {
            args.push(Value::Integer(start));
            args.push(Value::Integer(id));
            sql += &format!(" AND (start_ms, id) > (?{}, ?{})", args.len() - 1, args.len());
        }
        args.push(Value::Integer(limit.min(i64::MAX as usize) as i64));
        sql += &format!(" ORDER BY start_ms, id LIMIT ?{}", args.len());
        self.read(|c| {
            let mut stmt =
                c.prepare_cached(&sql).map_err(|e| StoreError::sql("prepare segment files", e))?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(args.iter()), row_to_file)
                .map_err(|e| StoreError::sql("query segment files", e))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(|e| StoreError::sql("read segment file", e))
        })
    }

    /// The id of the segment indexed under `path` (relative to the data dir), if any.
    pub fn segment_id_by_path(&self, path: &str) -> Result<Option<i64>, StoreError> {
        self.read(|c| {
            c.query_row("SELECT id FROM segments WHERE path = ?1", params![path], |r| r.get(0))
                .optional()
                .map_err(|e| StoreError::sql(format!("look up segment {path}"), e))
        })
    }

    /// Every unreviewed event of severity `high` or `critical` (except `storage_full`).
    pub fn protecting_events(&self) -> Result<Vec<ProtectingEvent>, StoreError> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT id, camera_id, started_at, ended_at FROM events
                     WHERE review = 'new' AND severity IN ('high', 'critical') AND kind <> 'storage_full'",
                )
                .map_err(|e| StoreError::sql("prepare protecting events", e))?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(ProtectingEvent { id: r.get(0)?, camera_id: r.get(1)?, started_ms: r.get(2)?, ended_ms: r.get(3)? })
                })
                .map_err(|e| StoreError::sql("query protecting events", e))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(|e| StoreError::sql("read protecting event", e))
        })
    }

    /// The highest event `seq` (0 without events): changes whenever an event is inserted.
    pub fn max_event_seq(&self) -> Result<i64, StoreError> {
        self.read(|c| {
            c.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))
                .map_err(|e| StoreError::sql("read max event seq", e))
        })
    }

    /// `prev` plus the bytes of segments and clips indexed after its high-water marks (pass
    /// `MediaTally::default()` for the full sum).
    pub fn media_bytes_after(&self, prev: MediaTally) -> Result<MediaTally, StoreError> {
        self.read(|c| {
            let (seg_bytes, seg_id): (i64, i64) = c
                .query_row(
                    "SELECT COALESCE(SUM(bytes), 0), COALESCE(MAX(id), ?1) FROM segments WHERE id > ?1",
                    params![prev.segment_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(|e| StoreError::sql("sum new segment bytes", e))?;
            let (clip_bytes, clip_rowid): (i64, i64) = c
                .query_row(
                    "SELECT COALESCE(SUM(bytes), 0), COALESCE(MAX(rowid), ?1) FROM clips WHERE rowid > ?1",
                    params![prev.clip_rowid],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(|e| StoreError::sql("sum new clip bytes", e))?;
            Ok(MediaTally {
                bytes: prev.bytes.saturating_add(seg_bytes.max(0) as u64).saturating_add(clip_bytes.max(0) as u64),
                segment_id: seg_id,
                clip_rowid,
            })
        })
    }

    /// Events started before `started_before_ms` (and at or after `since_ms`, if given)
    /// whose media has not been deleted yet, oldest first, at most `limit`.
    pub fn events_with_media_due(
        &self,
        since_ms: Option<i64>,
        started_before_ms: i64,
        limit: usize,
    ) -> Result<Vec<(Uuid, i64)>, StoreError> {
        let rows = self.read(|c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT id, started_at FROM events ev
                     WHERE started_at < ?1 AND started_at >= ?2 AND media_deleted_at IS NULL
                       AND NOT {}
                     ORDER BY started_at, seq LIMIT ?3",
                    super::locks::event_locked_sql("ev")
                ))
                .map_err(|e| StoreError::sql("prepare media retention query", e))?;
            let rows = stmt
                .query_map(
                    params![
                        started_before_ms,
                        since_ms.unwrap_or(i64::MIN),
                        limit.min(i64::MAX as usize) as i64
                    ],
                    |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)),
                )
                .map_err(|e| StoreError::sql("query media retention", e))?;
            rows.collect::<Result<Vec<_>, _>>()
                .map_err(|e| StoreError::sql("read media retention row", e))
        })?;
        rows.into_iter()
            .map(|(id, at)| {
                Uuid::parse_str(&id)
                    .map(|u| (u, at))
                    .map_err(|e| StoreError::Corrupt { id, msg: format!("event id: {e}") })
            })
            .collect()
    }

    /// In one transaction: deletes the event's clip row and sets `snapshot = NULL,
    /// media_deleted_at = at_ms`. Returns what the event had, so the caller can delete the
    /// files; `None` if the event does not exist.
    pub fn expire_event_media(
        &self,
        event_id: Uuid,
        at_ms: i64,
    ) -> Result<Option<ExpiredMedia>, StoreError> {
        let id = event_id.to_string();
        let mut conn = lock(&self.inner.writer);
        let tx = conn
            .transaction()
            .map_err(|e| StoreError::sql(format!("begin media expiry of event {id}"), e))?;
        // A lock set since the caller looked keeps the media (checked in this transaction).
        let snapshot: Option<(Option<String>, bool)> = tx
            .query_row(
                &format!(
                    "SELECT snapshot, {} FROM events ev WHERE id = ?1",
                    super::locks::event_locked_sql("ev")
                ),
                params![id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| StoreError::sql(format!("look up event {id}"), e))?;
        let Some((snapshot, false)) = snapshot else { return Ok(None) };
        let clip: Option<(String, i64)> = tx
            .query_row("SELECT path, bytes FROM clips WHERE event_id = ?1", params![id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
            .map_err(|e| StoreError::sql(format!("look up clip of event {id}"), e))?;
        tx.execute("DELETE FROM clips WHERE event_id = ?1", params![id])
            .map_err(|e| StoreError::sql(format!("delete clip of event {id}"), e))?;
        tx.execute(
            "UPDATE events SET snapshot = NULL, media_deleted_at = ?2 WHERE id = ?1",
            params![id, at_ms],
        )
        .map_err(|e| StoreError::sql(format!("mark media of event {id} deleted"), e))?;
        tx.commit()
            .map_err(|e| StoreError::sql(format!("commit media expiry of event {id}"), e))?;
        let (clip, clip_bytes) = match clip {
            Some((path, bytes)) => (Some(path), bytes.max(0) as u64),
            None => (None, 0),
        };
        Ok(Some(ExpiredMedia { event_id, clip, clip_bytes, snapshot: snapshot.is_some() }))
    }

    /// Clips of events whose media was already expired (a clip built again on request after
    /// retention removed it): (event id, path, bytes), at most `limit`.
    pub fn clips_of_expired_events(
        &self,
        limit: usize,
    ) -> Result<Vec<(String, String, u64)>, StoreError> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT c.event_id, c.path, c.bytes FROM clips c JOIN events e ON e.id = c.event_id
                     WHERE e.media_deleted_at IS NOT NULL AND NOT {} ORDER BY c.event_id LIMIT ?1",
                    super::locks::event_locked_sql("e")
                ))
                .map_err(|e| StoreError::sql("prepare expired clips query", e))?;
            let rows = stmt
                .query_map(params![limit.min(i64::MAX as usize) as i64], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?.max(0) as u64))
                })
                .map_err(|e| StoreError::sql("query expired clips", e))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(|e| StoreError::sql("read expired clip", e))
        })
    }

    /// The clip with the earliest start (ties: event id) whose event is not locked.
    pub fn oldest_clip(&self) -> Result<Option<Clip>, StoreError> {
        let row = self.read(|c| {
            c.query_row(
                &format!(
                    "SELECT c.event_id, c.path, c.start_ms, c.end_ms, c.bytes FROM clips c
                     LEFT JOIN events e ON e.id = c.event_id
                     WHERE e.id IS NULL OR NOT {}
                     ORDER BY c.start_ms, c.event_id LIMIT 1",
                    super::locks::event_locked_sql("e")
                ),
                [],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, i64>(4)?,
                    ))
                },
            )
            .optional()
            .map_err(|e| StoreError::sql("get oldest clip", e))
        })?;
        row.map(|(id, path, s, e, bytes)| {
            let bad = |msg: String| StoreError::Corrupt { id: id.clone(), msg };
            Ok(Clip {
                event_id: Uuid::parse_str(&id).map_err(|e| bad(format!("clip event id: {e}")))?,
                path: path.clone(),
                start: from_ms(s).map_err(|e| bad(format!("clip start: {e}")))?,
                end: from_ms(e).map_err(|e| bad(format!("clip end: {e}")))?,
                bytes: bytes.max(0) as u64,
            })
        })
        .transpose()
    }

    /// Every clip row: (event id, path relative to the data dir).
    pub fn clip_files(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached("SELECT event_id, path FROM clips ORDER BY event_id")
                .map_err(|e| StoreError::sql("prepare clip files", e))?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                .map_err(|e| StoreError::sql("query clip files", e))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(|e| StoreError::sql("read clip file", e))
        })
    }

    /// Deletes a clip row by its stored event id text (also one that is not a valid UUID).
    pub fn delete_clip_row_by_key(&self, event_id: &str) -> Result<bool, StoreError> {
        let conn = lock(&self.inner.writer);
        let n = conn
            .execute("DELETE FROM clips WHERE event_id = ?1", params![event_id])
            .map_err(|e| StoreError::sql(format!("delete clip of event {event_id}"), e))?;
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::recordings::NewSegment;
    use time::OffsetDateTime;

    fn seg(cam: &str, path: &str, start_s: i64, end_s: i64, bytes: u64) -> NewSegment {
        let t = |s: i64| OffsetDateTime::from_unix_timestamp(1_800_000_000 + s).unwrap();
        NewSegment {
            camera_id: cam.into(),
            path: path.into(),
            start: t(start_s),
            end: t(end_s),
            start_pts_ns: None,
            end_pts_ns: None,
            bytes,
            codec: "h264".into(),
            frames: None,
            recovered: false,
        }
    }

    const T0: i64 = 1_800_000_000_000;

    #[test]
    fn segment_pages_cameras_and_tally() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(store.segment_cameras().unwrap().is_empty());
        assert_eq!(store.media_bytes_after(MediaTally::default()).unwrap(), MediaTally::default());
        store.insert_segment(&seg("b", "recordings/b/1.mp4", 0, 10, 100)).unwrap();
        store.insert_segment(&seg("a", "recordings/a/1.mp4", 0, 10, 10)).unwrap();
        store.insert_segment(&seg("a", "recordings/a/2.mp4", 10, 20, 20)).unwrap();
        store.insert_segment(&seg("c", "recordings/c/1.mp4", 30, 40, 1)).unwrap();
        assert_eq!(store.segment_cameras().unwrap(), ["a", "b", "c"]);

        let all = store.segment_files(None, None, None, 100).unwrap();
        let names: Vec<&str> = all.iter().map(|s| s.path.as_str()).collect();
        assert_eq!(
            names,
            [
                "recordings/b/1.mp4",
                "recordings/a/1.mp4",
                "recordings/a/2.mp4",
                "recordings/c/1.mp4"
            ]
        );
        // Paging with the (start, id) cursor visits each row once.
        let mut seen = vec![];
        let mut cursor = None;
        loop {
            let page = store.segment_files(None, None, cursor, 1).unwrap();
            let Some(s) = page.last() else { break };
            cursor = Some((s.start_ms, s.id));
            seen.push(s.path.clone());
        }
        assert_eq!(seen, names);
        let old = store.segment_files(Some("a"), Some(T0 + 20_000), None, 100).unwrap();
        assert_eq!(old.len(), 1, "end is exclusive: {old:?}");
        assert_eq!((old[0].start_ms, old[0].end_ms, old[0].bytes), (T0, T0 + 10_000, 10));

        let tally = store.media_bytes_after(MediaTally::default()).unwrap();
        assert_eq!(tally.bytes, 131);
        assert_eq!(tally.bytes, store.media_bytes().unwrap());
        store.insert_segment(&seg("a", "recordings/a/3.mp4", 20, 30, 1000)).unwrap();
        let next = store.media_bytes_after(tally).unwrap();
        assert_eq!(next.bytes, 1131);
        assert_eq!(store.media_bytes_after(next).unwrap(), next, "nothing new");
    }

    #[test]
    fn event_media_expiry() {
        use crate::types::{Change, EventChange, Severity};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let at = |ms: i64| from_ms(T0 + ms).unwrap();
        let mk = |ms: i64| {
            let ev = EventChange::bare(
                Uuid::now_v7(),
                Change::Started,
                "cam",
                "presence",
                Severity::High,
                at(ms),
            );
            store.apply(&ev).unwrap().id
        };
        let a = mk(0);
        let b = mk(1000);
        let c = mk(5000);
        store
            .put_clip(&Clip {
                event_id: a,
                path: format!("clips/{a}.mp4"),
                start: at(0),
                end: at(10),
                bytes: 7,
            })
            .unwrap();
        assert_eq!(store.protecting_events().unwrap().len(), 3);
        assert!(store.max_event_seq().unwrap() >= 3);
        let due = store.events_with_media_due(None, T0 + 5000, 10).unwrap();
        assert_eq!(due, [(a, T0), (b, T0 + 1000)]);
        assert_eq!(
            store.events_with_media_due(Some(T0 + 1), T0 + 5000, 10).unwrap(),
            [(b, T0 + 1000)]
        );
        assert_eq!(store.oldest_clip().unwrap().unwrap().event_id, a);
        let got = store.expire_event_media(a, T0 + 99).unwrap().unwrap();
        assert_eq!(
            got,
            ExpiredMedia {
                event_id: a,
                clip: Some(format!("clips/{a}.mp4")),
                clip_bytes: 7,
                snapshot: false
            }
        );
        assert!(store.clip(a).unwrap().is_none());
        assert_eq!(store.events_with_media_due(None, T0 + 5000, 10).unwrap(), [(b, T0 + 1000)]);
        assert!(store.expire_event_media(Uuid::now_v7(), 0).unwrap().is_none());
        assert!(store.oldest_clip().unwrap().is_none());
        let _ = c;
    }
}
