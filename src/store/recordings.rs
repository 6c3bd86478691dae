//! Index of recorded segments and event clips (schema v4). A segment row is inserted only
//! after its file is complete and fsynced (see `record`); paths are relative to the data dir
//! and never come from a client.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use rusqlite::{params, OptionalExtension};
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{from_ms, lock, to_ms, Store, StoreError};

/// Directory of recorded segments inside the data dir: `recordings/<camera>/<YYYYMMDD>/…`.
pub const RECORDINGS_DIR: &str = "recordings";
/// Directory of event clips inside the data dir: `clips/<event id>.mp4`.
pub const CLIPS_DIR: &str = "clips";

/// One indexed segment file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Segment {
    pub id: i64,
    pub camera_id: String,
    /// Relative to the data dir (not served: clients address segments by `id`).
    #[serde(skip)]
    pub path: String,
    #[serde(with = "time::serde::rfc3339")]
    pub start: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub end: OffsetDateTime,
    /// Pipeline running time of the first and last frame (ns), when recorded live.
    pub start_pts_ns: Option<i64>,
    pub end_pts_ns: Option<i64>,
    pub bytes: u64,
    /// `h264` or `h265`.
    pub codec: String,
    pub frames: Option<u64>,
    /// Indexed by start-up reconciliation (the process died before indexing it).
    pub recovered: bool,
}

impl Segment {
    pub fn duration_secs(&self) -> f64 {
        (self.end - self.start).as_seconds_f64()
    }
}

/// A segment to index.
#[derive(Debug, Clone)]
pub struct NewSegment {
    pub camera_id: String,
    /// Relative to the data dir.
    pub path: String,
    pub start: OffsetDateTime,
    pub end: OffsetDateTime,
    pub start_pts_ns: Option<i64>,
    pub end_pts_ns: Option<i64>,
    pub bytes: u64,
    pub codec: String,
    pub frames: Option<u64>,
    pub recovered: bool,
}

/// An event clip file.
#[derive(Debug, Clone, PartialEq)]
pub struct Clip {
    pub event_id: Uuid,
    /// Relative to the data dir.
    pub path: String,
    pub start: OffsetDateTime,
    pub end: OffsetDateTime,
    pub bytes: u64,
}

const SEGMENT_COLS: &str =
    "id, camera_id, path, start_ms, end_ms, start_pts_ns, end_pts_ns, bytes, codec, frames, recovered";

fn row_to_segment(r: &rusqlite::Row<'_>) -> rusqlite::Result<Segment> {
    let ms = |i: usize| -> rusqlite::Result<OffsetDateTime> {
        let v: i64 = r.get(i)?;
        from_ms(v).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(
                i,
                rusqlite::types::Type::Integer,
                Box::new(e),
            )
        })
    };
    Ok(Segment {
        id: r.get(0)?,
        camera_id: r.get(1)?,
        path: r.get(2)?,
        start: ms(3)?,
        end: ms(4)?,
        start_pts_ns: r.get(5)?,
        end_pts_ns: r.get(6)?,
        bytes: r.get::<_, i64>(7)?.max(0) as u64,
        codec: r.get(8)?,
        frames: r.get::<_, Option<i64>>(9)?.map(|v| v.max(0) as u64),
        recovered: r.get::<_, i64>(10)? != 0,
    })
}

fn row_to_clip(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, String, i64, i64, i64)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

impl Store {
    pub fn recordings_dir(&self) -> PathBuf {
        self.data_dir().join(RECORDINGS_DIR)
    }

    pub fn clips_dir(&self) -> PathBuf {
        self.data_dir().join(CLIPS_DIR)
    }

    /// Absolute path of a data-dir-relative path from the database. Refuses anything that
    /// could leave the data dir (absolute paths, `..`), whatever the database holds.
    pub fn media_path(&self, rel: &str) -> Result<PathBuf, StoreError> {
        let p = Path::new(rel);
        if rel.is_empty() || !p.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(StoreError::Corrupt {
                id: rel.to_string(),
                msg: "media path is not inside the data dir".into(),
            });
        }
        Ok(self.data_dir().join(p))
    }

    /// The data-dir-relative form of `abs` (which must be inside the data dir).
    pub fn relative_media_path(&self, abs: &Path) -> Option<String> {
        abs.strip_prefix(self.data_dir()).ok()?.to_str().map(str::to_string)
    }

    /// Indexes a complete segment; returns its id. The path must be unique.
    pub fn insert_segment(&self, s: &NewSegment) -> Result<i64, StoreError> {
        let conn = lock(&self.inner.writer);
        conn.execute(
            "INSERT INTO segments (camera_id, path, start_ms, end_ms, start_pts_ns, end_pts_ns, bytes, codec,
                                   frames, recovered, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                s.camera_id,
                s.path,
                to_ms(s.start),
                to_ms(s.end).max(to_ms(s.start)),
                s.start_pts_ns,
                s.end_pts_ns,
                s.bytes as i64,
                s.codec,
                s.frames.map(|f| f as i64),
                s.recovered as i64,
                to_ms(self.now()),
            ],
        )
        .map_err(|e| StoreError::sql(format!("index segment {}", s.path), e))?;
        Ok(conn.last_insert_rowid())
    }

    pub fn segment(&self, id: i64) -> Result<Option<Segment>, StoreError> {
        self.read(|c| {
            c.query_row(
                &format!("SELECT {SEGMENT_COLS} FROM segments WHERE id = ?1"),
                params![id],
                row_to_segment,
            )
            .optional()
            .map_err(|e| StoreError::sql(format!("get segment {id}"), e))
        })
    }

    /// Segments overlapping `[since, until)` (either bound optional), oldest first, at most
    /// `limit`; all cameras when `camera` is `None`.
    pub fn segments(
        &self,
        camera: Option<&str>,
        since: Option<OffsetDateTime>,
        until: Option<OffsetDateTime>,
        limit: usize,
    ) -> Result<Vec<Segment>, StoreError> {
        self.read(|c| {
            let mut stmt = c
                .prepare(&format!(
                    "SELECT {SEGMENT_COLS} FROM segments
                     WHERE (?1 IS NULL OR camera_id = ?1) AND (?2 IS NULL OR end_ms > ?2) AND (?3 IS NULL OR start_ms < ?3)
                     ORDER BY start_ms, id LIMIT ?4"
                ))
                .map_err(|e| StoreError::sql("prepare segment query", e))?;
            let rows = stmt
                .query_map(params![camera, since.map(to_ms), until.map(to_ms), limit.min(i64::MAX as usize) as i64], row_to_segment)
                .map_err(|e| StoreError::sql("query segments", e))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(|e| StoreError::sql("read segment row", e))
        })
    }

    /// Like [`Store::segments`] without a camera, limited to the cameras of `filter` (a
    /// principal's scope; segments have no grid cell of their own).
    pub fn segments_in(
        &self,
        filter: &super::CameraFilter,
        since: Option<OffsetDateTime>,
        until: Option<OffsetDateTime>,
        limit: usize,
    ) -> Result<Vec<Segment>, StoreError> {
        use rusqlite::types::Value;
        let mut args: Vec<Value> = Vec::new();
        let mut sql = format!(
            "SELECT {SEGMENT_COLS} FROM segments WHERE {}",
            filter.sql("camera_id", None, &mut args)
        );
        if let Some(t) = since {
            args.push(Value::Integer(to_ms(t)));
            sql += &format!(" AND end_ms > ?{}", args.len());
        }
        if let Some(t) = until {
            args.push(Value::Integer(to_ms(t)));
            sql += &format!(" AND start_ms < ?{}", args.len());
        }
        args.push(Value::Integer(limit.min(i64::MAX as usize) as i64));
        sql += &format!(" ORDER BY start_ms, id LIMIT ?{}", args.len());
        self.read(|c| {
            let mut stmt =
                c.prepare(&sql).map_err(|e| StoreError::sql("prepare segment query", e))?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(args.iter()), row_to_segment)
                .map_err(|e| StoreError::sql("query segments", e))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(|e| StoreError::sql("read segment row", e))
        })
    }

    /// Every indexed segment path (for start-up reconciliation).
    pub fn segment_paths(&self) -> Result<HashSet<String>, StoreError> {
        self.read(|c| {
            let mut stmt = c
                .prepare("SELECT path FROM segments")
                .map_err(|e| StoreError::sql("prepare segment paths", e))?;
            let rows = stmt
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(|e| StoreError::sql("query segment paths", e))?;
            rows.collect::<Result<HashSet<_>, _>>()
                .map_err(|e| StoreError::sql("read segment path", e))
        })
    }

    /// Removes a segment row (the caller deletes the file afterwards). True if it existed.
    pub fn delete_segment_row(&self, id: i64) -> Result<bool, StoreError> {
        let conn = lock(&self.inner.writer);
        let n = conn
            .execute("DELETE FROM segments WHERE id = ?1", params![id])
            .map_err(|e| StoreError::sql(format!("delete segment {id}"), e))?;
        Ok(n > 0)
    }

    /// Bytes of indexed segments and clips together.
    pub fn media_bytes(&self) -> Result<u64, StoreError> {
        self.read(|c| {
            c.query_row(
                "SELECT (SELECT COALESCE(SUM(bytes), 0) FROM segments) + (SELECT COALESCE(SUM(bytes), 0) FROM clips)",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|v| v.max(0) as u64)
            .map_err(|e| StoreError::sql("sum media bytes", e))
        })
    }

    /// Records (or replaces) the clip of an event.
    pub fn put_clip(&self, clip: &Clip) -> Result<(), StoreError> {
        let conn = lock(&self.inner.writer);
        conn.execute(
            "INSERT OR REPLACE INTO clips (event_id, path, start_ms, end_ms, bytes, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                clip.event_id.to_string(),
                clip.path,
                to_ms(clip.start),
                to_ms(clip.end).max(to_ms(clip.start)),
                clip.bytes as i64,
                to_ms(self.now())
            ],
        )
        .map_err(|e| StoreError::sql(format!("store clip of event {}", clip.event_id), e))?;
        Ok(())
    }

    pub fn clip(&self, event_id: Uuid) -> Result<Option<Clip>, StoreError> {
        let row = self.read(|c| {
            c.query_row(
                "SELECT event_id, path, start_ms, end_ms, bytes FROM clips WHERE event_id = ?1",
                params![event_id.to_string()],
                row_to_clip,
            )
            .optional()
            .map_err(|e| StoreError::sql(format!("get clip of event {event_id}"), e))
        })?;
        row.map(|(_, path, s, e, bytes)| {
            let t = |v| {
                from_ms(v).map_err(|err| StoreError::Corrupt {
                    id: event_id.to_string(),
                    msg: err.to_string(),
                })
            };
            Ok(Clip { event_id, path, start: t(s)?, end: t(e)?, bytes: bytes.max(0) as u64 })
        })
        .transpose()
    }

    /// Removes a clip row (the caller deletes the file afterwards). True if it existed.
    pub fn delete_clip_row(&self, event_id: Uuid) -> Result<bool, StoreError> {
        let conn = lock(&self.inner.writer);
        let n = conn
            .execute("DELETE FROM clips WHERE event_id = ?1", params![event_id.to_string()])
            .map_err(|e| StoreError::sql(format!("delete clip of event {event_id}"), e))?;
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(cam: &str, path: &str, start_s: i64, end_s: i64) -> NewSegment {
        let t = |s: i64| OffsetDateTime::from_unix_timestamp(1_800_000_000 + s).unwrap();
        NewSegment {
            camera_id: cam.into(),
            path: path.into(),
            start: t(start_s),
            end: t(end_s),
            start_pts_ns: Some(0),
            end_pts_ns: Some((end_s - start_s) * 1_000_000_000),
            bytes: 1000,
            codec: "h264".into(),
            frames: Some(100),
            recovered: false,
        }
    }

    #[test]
    fn segments_index_query_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = store.insert_segment(&seg("a", "recordings/a/1.mp4", 0, 10)).unwrap();
        store.insert_segment(&seg("a", "recordings/a/2.mp4", 10, 20)).unwrap();
        store.insert_segment(&seg("b", "recordings/b/1.mp4", 5, 15)).unwrap();
        assert!(
            store.insert_segment(&seg("a", "recordings/a/1.mp4", 0, 10)).is_err(),
            "paths are unique"
        );
        let t = |s: i64| Some(OffsetDateTime::from_unix_timestamp(1_800_000_000 + s).unwrap());
        let got = store.segments(Some("a"), t(9), t(11), 100).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(
            store.segments(Some("a"), t(10), None, 100).unwrap().len(),
            1,
            "end is exclusive"
        );
        assert_eq!(store.segments(None, None, None, 100).unwrap().len(), 3);
        assert_eq!(store.segments(None, None, None, 1).unwrap().len(), 1);
        assert_eq!(store.media_bytes().unwrap(), 3000);
        assert_eq!(store.segment(a).unwrap().unwrap().duration_secs(), 10.0);
        assert!(store.delete_segment_row(a).unwrap());
        assert!(!store.delete_segment_row(a).unwrap());
        assert_eq!(store.segment_paths().unwrap().len(), 2);
    }

    #[test]
    fn media_paths_never_leave_the_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(store.media_path("recordings/a/1.mp4").unwrap().starts_with(store.data_dir()));
        for bad in ["", "/etc/passwd", "../x", "recordings/../../x", "./x"] {
            assert!(store.media_path(bad).is_err(), "{bad}");
        }
        let abs = store.data_dir().join("clips/x.mp4");
        assert_eq!(store.relative_media_path(&abs).as_deref(), Some("clips/x.mp4"));
        assert_eq!(store.relative_media_path(Path::new("/elsewhere/x.mp4")), None);
    }
}
