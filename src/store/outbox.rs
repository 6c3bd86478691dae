//! The uplink outbox and the delivery bookkeeping of its sinks (schema v5, docs/storage.md).
//!
//! Every event change (`Store::apply`, `Store::end_interrupted`) and every camera health
//! change (`Store::append_camera_status`) appends one row to `outbox` in the same SQLite
//! transaction as the change itself. The row holds the complete JSON envelope that every
//! uplink path sends (webhooks, MQTT, the pull feed), so what is delivered is exactly what
//! was durably stored. `outbox.seq` (AUTOINCREMENT: strictly increasing, never reused) is the
//! feed cursor and the envelope's `seq`.
//!
//! Per sink, `uplink_cursors` holds for each camera the highest outbox seq that is done
//! (acknowledged with a 2xx / PUBACK, or dead-lettered) — changes of one camera are delivered
//! strictly in seq order, so one number per (sink, camera) is the whole delivery state — plus
//! the retry state of the change currently being tried. `uplink_dead` lists dead letters.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{from_ms, lock, to_ms, Store, StoreError};
use crate::types::{Change, Detection, Event, Review, Severity};

/// Version of the envelope schema (`version` field); bumped on incompatible changes only.
pub const ENVELOPE_VERSION: u32 = 1;
/// Most outbox rows one scoped feed page looks at ([`Store::feed_page_in`]).
pub const FEED_SCAN_MAX: i64 = 10_000;

/// Per-camera facts the envelope carries that the event rows do not.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CameraMeta {
    pub grid_cell: Option<String>,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    /// The camera records, so its events get a clip (`clip_url`).
    pub records: bool,
}

/// What the store needs to build envelopes: set once at start-up with
/// [`Store::set_uplink_context`]. Without it envelopes have an empty `box_id`, no
/// position and relative media URLs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UplinkContext {
    pub box_id: String,
    /// Base of the absolute media URLs, without a trailing slash (`uplink.public_url`).
    pub public_url: String,
    pub cameras: HashMap<String, CameraMeta>,
}

/// The last committed outbox seq, and whether the box is shutting down (long-polls return).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FeedSignal {
    pub last_seq: i64,
    pub closing: bool,
}

/// Outbox state shared by all clones of a [`Store`].
pub(super) struct OutboxShared {
    ctx: RwLock<Arc<UplinkContext>>,
    /// Live session facts a sink publishes (`Store::set_sink_session`), by sink name.
    sessions: RwLock<HashMap<String, serde_json::Value>>,
    signal: tokio::sync::watch::Sender<FeedSignal>,
}

impl OutboxShared {
    pub(super) fn new(conn: &Connection) -> Result<OutboxShared, StoreError> {
        let last_seq = last_seq(conn)?;
        let (signal, _) = tokio::sync::watch::channel(FeedSignal { last_seq, closing: false });
        Ok(OutboxShared {
            ctx: RwLock::new(Arc::new(UplinkContext::default())),
            sessions: RwLock::new(HashMap::new()),
            signal,
        })
    }
}

fn last_seq(conn: &Connection) -> Result<i64, StoreError> {
    conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM outbox", [], |r| r.get(0))
        .map_err(|e| StoreError::sql("read last outbox seq", e))
}

/// The JSON document delivered for every change, by every uplink path. See docs/api.md
/// ("Uplink") and the `Envelope` schema in docs/openapi.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Envelope schema version (1).
    pub version: u32,
    /// Unique id of this change (UUIDv7); receivers dedupe by it. Also `webhook-id`.
    pub id: Uuid,
    /// Outbox sequence number: per box, strictly increasing over all changes, never reused;
    /// the pull feed's cursor.
    pub seq: i64,
    pub box_id: String,
    /// `started`, `updated`, `ended`, `reviewed` (events), `online`, `offline` (kind
    /// `camera_status`) or `locked`, `unlocked` (kind `evidence_lock`).
    pub change: String,
    /// Event kind (e.g. `crowd`), or `camera_status`.
    pub kind: String,
    pub event_id: Option<Uuid>,
    /// The event's own `seq` (GET /api/v1/events), null for camera status.
    pub event_seq: Option<i64>,
    pub severity: Option<Severity>,
    pub camera_id: String,
    pub grid_cell: Option<String>,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    /// When the change happened (for `started`: the start of the incident).
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub ended_at: Option<OffsetDateTime>,
    /// When the box stored the change.
    #[serde(with = "time::serde::rfc3339")]
    pub recorded_at: OffsetDateTime,
    pub objects: Vec<Detection>,
    /// Objects per class label among `objects`.
    pub counts: BTreeMap<String, u32>,
    pub rule: Option<String>,
    pub zone: Option<String>,
    pub line: Option<String>,
    pub detail: Option<serde_json::Value>,
    pub snapshot_url: Option<String>,
    pub clip_url: Option<String>,
    /// Why a camera went offline (camera status only).
    pub error: Option<String>,
    /// The event's review state (`new`, `acknowledged`, `resolved`, `false_alarm`) and its
    /// last transition; a `reviewed` change carries the transition just made.
    #[serde(default)]
    pub review: Option<Review>,
    #[serde(default)]
    pub reviewed_by: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub reviewed_at: Option<OffsetDateTime>,
    #[serde(default)]
    pub review_note: Option<String>,
}

/// One outbox row as read by the delivery workers.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    pub seq: i64,
    pub id: String,
    pub camera_id: String,
    pub event_id: Option<String>,
    pub change: String,
    pub kind: String,
    /// The envelope JSON, exactly the bytes that are sent and signed.
    pub envelope: String,
    pub created_at: OffsetDateTime,
}

/// A page of the pull feed.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedPage {
    /// `(seq, envelope JSON)` in seq order.
    pub changes: Vec<(i64, String)>,
    /// The cursor for the next request: the last seq of this page, or `after` when empty.
    pub next: i64,
    /// More changes follow right away.
    pub more: bool,
}

/// A sink's cursor and retry state for one camera.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CursorState {
    pub acked_seq: i64,
    /// The change the retry state below belongs to.
    pub head_seq: Option<i64>,
    pub attempts: u32,
    /// Attempts answered with a non-retryable 4xx.
    pub rejections: u32,
    pub next_attempt_at: Option<OffsetDateTime>,
}

/// One failed delivery attempt, as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure<'a> {
    pub camera_id: &'a str,
    pub head_seq: i64,
    pub attempts: u32,
    pub rejections: u32,
    pub next_attempt_at: OffsetDateTime,
    pub status: Option<u16>,
    pub error: &'a str,
    pub at: OffsetDateTime,
}

/// A dead letter: a change a sink gave up on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetter {
    pub seq: i64,
    pub id: Option<String>,
    pub camera_id: String,
    pub event_id: Option<String>,
    pub change: Option<String>,
    pub attempts: u32,
    pub last_status: Option<u16>,
    /// `rejected` (non-retryable 4xx) or `expired` (max_retry_hours passed).
    pub reason: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// The change a sink is currently retrying for one camera.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Retrying {
    pub camera_id: String,
    pub seq: i64,
    pub attempts: u32,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_attempt_at: Option<OffsetDateTime>,
}

/// Delivery status of one sink (GET /api/v1/uplink, /metrics).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SinkStatus {
    pub name: String,
    pub kind: String,
    /// Where it delivers (URL without credentials or query).
    pub target: String,
    /// Changes recorded since the sink was first configured that it has not delivered
    /// (nor dead-lettered) yet.
    pub backlog: u64,
    #[serde(with = "time::serde::rfc3339::option")]
    pub oldest_undelivered_at: Option<OffsetDateTime>,
    pub oldest_undelivered_age_secs: Option<f64>,
    /// Changes acknowledged since the sink was first configured.
    pub delivered_total: u64,
    pub failed_attempts_total: u64,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_success_at: Option<OffsetDateTime>,
    pub last_error: Option<String>,
    pub last_error_status: Option<u16>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_error_at: Option<OffsetDateTime>,
    pub dead_letter_count: u64,
    /// The 100 most recent dead letters, newest first.
    pub dead_letters: Vec<DeadLetter>,
    /// Changes being retried (one per camera at most).
    pub retrying: Vec<Retrying>,
    /// What the running sink says about its connection (in memory, not stored): a `gat1400`
    /// sink's registration and platform clock offset; null for the other kinds.
    pub session: Option<serde_json::Value>,
}

fn sql(op: &str) -> impl FnOnce(rusqlite::Error) -> StoreError + '_ {
    move |e| StoreError::sql(op, e)
}

fn ts(ms: i64, what: &str) -> Result<OffsetDateTime, StoreError> {
    from_ms(ms).map_err(|e| StoreError::Corrupt {
        id: what.to_string(),
        msg: format!("timestamp {ms}: {e}"),
    })
}

fn change_str(c: Change) -> &'static str {
    match c {
        Change::Started => "started",
        Change::Updated => "updated",
        Change::Ended => "ended",
    }
}

impl UplinkContext {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.public_url)
    }

    /// The envelope of an event change (without `seq`, set by the caller once known).
    pub fn event_envelope(
        &self,
        ev: &Event,
        change: Change,
        at: OffsetDateTime,
        recorded_at: OffsetDateTime,
    ) -> Envelope {
        let cam = self.cameras.get(&ev.camera_id);
        let mut counts = BTreeMap::new();
        for o in &ev.objects {
            *counts.entry(o.class.clone()).or_insert(0) += 1;
        }
        Envelope {
            version: ENVELOPE_VERSION,
            id: Uuid::now_v7(),
            seq: 0,
            box_id: self.box_id.clone(),
            change: change_str(change).into(),
            kind: ev.kind.clone(),
            event_id: Some(ev.id),
            event_seq: Some(ev.seq),
            severity: Some(ev.severity),
            camera_id: ev.camera_id.clone(),
            grid_cell: ev.grid_cell.clone().or_else(|| cam.and_then(|c| c.grid_cell.clone())),
            lat: cam.and_then(|c| c.lat),
            lon: cam.and_then(|c| c.lon),
            at,
            started_at: Some(ev.started_at),
            ended_at: ev.ended_at,
            recorded_at,
            objects: ev.objects.clone(),
            counts,
            rule: ev.rule.clone(),
            zone: ev.zone.clone(),
            line: ev.line.clone(),
            detail: ev.detail.clone(),
            snapshot_url: ev
                .snapshot
                .as_ref()
                .map(|_| self.url(&format!("/api/v1/events/{}/snapshot.jpg", ev.id))),
            clip_url: cam
                .filter(|c| c.records)
                .map(|_| self.url(&format!("/api/v1/events/{}/clip.mp4", ev.id))),
            error: None,
            review: Some(ev.review),
            reviewed_by: ev.reviewed_by.clone(),
            reviewed_at: ev.reviewed_at,
            review_note: ev.review_note.clone(),
        }
    }

    /// The envelope of a review transition (change `reviewed`), made at `ev.reviewed_at`.
    pub fn review_envelope(&self, ev: &Event, recorded_at: OffsetDateTime) -> Envelope {
        let at = ev.reviewed_at.unwrap_or(recorded_at);
        Envelope {
            change: "reviewed".into(),
            ..self.event_envelope(ev, Change::Updated, at, recorded_at)
        }
    }

    /// The envelope of a camera going online or offline.
    pub fn status_envelope(
        &self,
        camera_id: &str,
        online: bool,
        error: Option<&str>,
        at: OffsetDateTime,
        recorded_at: OffsetDateTime,
    ) -> Envelope {
        let cam = self.cameras.get(camera_id);
        Envelope {
            version: ENVELOPE_VERSION,
            id: Uuid::now_v7(),
            seq: 0,
            box_id: self.box_id.clone(),
            change: if online { "online" } else { "offline" }.into(),
            kind: "camera_status".into(),
            event_id: None,
            event_seq: None,
            severity: Some(if online { Severity::Info } else { Severity::High }),
            camera_id: camera_id.into(),
            grid_cell: cam.and_then(|c| c.grid_cell.clone()),
            lat: cam.and_then(|c| c.lat),
            lon: cam.and_then(|c| c.lon),
            at,
            started_at: None,
            ended_at: None,
            recorded_at,
            objects: vec![],
            counts: BTreeMap::new(),
            rule: None,
            zone: None,
            line: None,
            detail: None,
            snapshot_url: None,
            clip_url: None,
            error: if online { None } else { error.map(str::to_string) },
            review: None,
            reviewed_by: None,
            reviewed_at: None,
            review_note: None,
        }
    }
}

impl UplinkContext {
    /// The envelope of an evidence lock being set (`locked`) or released (`unlocked`):
    /// kind `evidence_lock`, the locked event (if it is an event lock), the lock's span as
    /// `started_at`/`ended_at` (a range lock), and the lock itself in `detail`.
    pub fn lock_envelope(
        &self,
        lock: &super::locks::EvidenceLock,
        released: bool,
        recorded_at: OffsetDateTime,
    ) -> Envelope {
        let mut env = self.status_envelope(&lock.camera_id, true, None, recorded_at, recorded_at);
        env.change = if released { "unlocked" } else { "locked" }.into();
        env.kind = super::locks::LOCK_KIND.into();
        env.event_id = lock.event_id;
        env.severity = Some(Severity::Info);
        env.at = if released { lock.released_at.unwrap_or(recorded_at) } else { lock.created_at };
        env.started_at = lock.start;
        env.ended_at = lock.end;
        env.detail = serde_json::to_value(lock).ok();
        env
    }

    /// The envelope of one hour's open-data aggregates (kind `open_data`, change `published`,
    /// lane [`OPEN_DATA_LANE`]): `detail` holds the rows; no camera, object or media.
    pub fn open_data_envelope(
        &self,
        hour_start: OffsetDateTime,
        detail: serde_json::Value,
        recorded_at: OffsetDateTime,
    ) -> Envelope {
        Envelope {
            version: ENVELOPE_VERSION,
            id: Uuid::now_v7(),
            seq: 0,
            box_id: self.box_id.clone(),
            change: "published".into(),
            kind: OPEN_DATA_KIND.into(),
            event_id: None,
            event_seq: None,
            severity: None,
            camera_id: OPEN_DATA_LANE.into(),
            grid_cell: None,
            lat: None,
            lon: None,
            at: hour_start,
            started_at: None,
            ended_at: None,
            recorded_at,
            objects: vec![],
            counts: BTreeMap::new(),
            rule: None,
            zone: None,
            line: None,
            detail: Some(detail),
            snapshot_url: None,
            clip_url: None,
            error: None,
            review: None,
            reviewed_by: None,
            reviewed_at: None,
            review_note: None,
        }
    }
}

/// Kind of the hourly open-data changes.
pub const OPEN_DATA_KIND: &str = "open_data";
/// The outbox lane (`camera_id`) of open-data changes: not a valid camera id, so it never
/// mixes with a camera's changes and camera-scoped feeds never see it.
pub const OPEN_DATA_LANE: &str = "*open_data";

/// Inserts `env` into the outbox on `conn` (inside the caller's transaction) and returns its
/// seq; the stored JSON carries that seq.
fn insert_envelope(conn: &Connection, mut env: Envelope) -> Result<i64, StoreError> {
    let id = env.id.to_string();
    conn.prepare_cached(
        "INSERT INTO outbox (id, camera_id, event_id, change, kind, envelope, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, '', ?6)",
    )
    .and_then(|mut s| {
        s.execute(params![
            id,
            env.camera_id,
            env.event_id.map(|u| u.to_string()),
            env.change,
            env.kind,
            to_ms(env.recorded_at)
        ])
    })
    .map_err(|e| StoreError::sql(format!("append change {id} to the outbox"), e))?;
    env.seq = conn.last_insert_rowid();
    let json = serde_json::to_string(&env).map_err(|e| StoreError::Corrupt {
        id: id.clone(),
        msg: format!("cannot serialise envelope: {e}"),
    })?;
    conn.prepare_cached("UPDATE outbox SET envelope = ?2 WHERE seq = ?1")
        .and_then(|mut s| s.execute(params![env.seq, json]))
        .map_err(|e| StoreError::sql(format!("write envelope of change {id}"), e))?;
    Ok(env.seq)
}

impl Store {
    /// Sets what envelopes need from the config (box id, public URL, camera positions).
    /// Call once at start-up, before any change is written.
    pub fn set_uplink_context(&self, ctx: UplinkContext) {
        *self.inner.outbox.ctx.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(ctx);
    }

    pub fn uplink_context(&self) -> Arc<UplinkContext> {
        self.inner.outbox.ctx.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Publishes a running sink's session facts for `uplink_status` (`session`).
    pub fn set_sink_session(&self, sink: &str, session: serde_json::Value) {
        self.inner
            .outbox
            .sessions
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(sink.to_string(), session);
    }

    /// Appends the outbox row of an event change inside `apply`'s transaction.
    pub(super) fn outbox_event(
        &self,
        conn: &Connection,
        ev: &Event,
        change: Change,
        at: OffsetDateTime,
    ) -> Result<i64, StoreError> {
        let env = self.uplink_context().event_envelope(ev, change, at, self.now());
        insert_envelope(conn, env)
    }

    /// Appends the outbox row of a review transition inside `review_event`'s transaction.
    pub(super) fn outbox_review(&self, conn: &Connection, ev: &Event) -> Result<i64, StoreError> {
        insert_envelope(conn, self.uplink_context().review_envelope(ev, self.now()))
    }

    /// Appends the outbox row of a lock change inside the caller's transaction.
    pub(super) fn outbox_lock(
        &self,
        conn: &Connection,
        lock: &super::locks::EvidenceLock,
        released: bool,
    ) -> Result<i64, StoreError> {
        insert_envelope(conn, self.uplink_context().lock_envelope(lock, released, self.now()))
    }

    /// Wakes feed long-polls and delivery workers after a commit that appended `seq`.
    pub(super) fn outbox_committed(&self, seq: i64) {
        self.inner.outbox.signal.send_modify(|s| s.last_seq = s.last_seq.max(seq));
    }

    /// Records a camera going online or offline (kind `camera_status`); returns its seq.
    pub fn append_camera_status(
        &self,
        camera_id: &str,
        online: bool,
        error: Option<&str>,
        at: OffsetDateTime,
    ) -> Result<i64, StoreError> {
        let env = self.uplink_context().status_envelope(camera_id, online, error, at, self.now());
        let mut conn = lock(&self.inner.writer);
        let tx = conn.transaction().map_err(sql("begin tx for camera status"))?;
        let seq = insert_envelope(&tx, env)?;
        tx.commit().map_err(sql("commit camera status"))?;
        drop(conn);
        self.outbox_committed(seq);
        Ok(seq)
    }

    /// Appends the open-data change of the hour starting at `hour_start` unless that hour was
    /// published before (checked and recorded in the same transaction, so a restart never
    /// publishes an hour twice); returns its seq, or `None` when it was already published.
    pub fn append_open_data(
        &self,
        hour_start: OffsetDateTime,
        detail: serde_json::Value,
    ) -> Result<Option<i64>, StoreError> {
        let env = self.uplink_context().open_data_envelope(hour_start, detail, self.now());
        let mut conn = lock(&self.inner.writer);
        let tx = conn.transaction().map_err(sql("begin tx for open data"))?;
        let done = tx
            .query_row(
                "SELECT 1 FROM open_data_published WHERE hour_start = ?1",
                [to_ms(hour_start)],
                |_| Ok(()),
            )
            .optional()
            .map_err(sql("read open_data_published"))?
            .is_some();
        if done {
            return Ok(None);
        }
        let seq = insert_envelope(&tx, env)?;
        tx.execute(
            "INSERT INTO open_data_published (hour_start, seq) VALUES (?1, ?2)",
            params![to_ms(hour_start), seq],
        )
        .map_err(sql("record open data hour"))?;
        tx.commit().map_err(sql("commit open data"))?;
        drop(conn);
        self.outbox_committed(seq);
        Ok(Some(seq))
    }

    /// Records `hour_start` as done without publishing it (seq 0): the first run's starting
    /// point, so that hours from before the box ran are never published.
    pub fn start_open_data(&self, hour_start: OffsetDateTime) -> Result<(), StoreError> {
        lock(&self.inner.writer)
            .execute(
                "INSERT OR IGNORE INTO open_data_published (hour_start, seq) VALUES (?1, 0)",
                [to_ms(hour_start)],
            )
            .map_err(sql("record the first open data hour"))?;
        Ok(())
    }

    /// Start of the latest hour whose open data was published (or the first run's starting
    /// point), if any.
    pub fn open_data_last_hour(&self) -> Result<Option<OffsetDateTime>, StoreError> {
        let ms: Option<i64> = self.read(|c| {
            c.query_row("SELECT MAX(hour_start) FROM open_data_published", [], |r| r.get(0))
                .map_err(sql("read open_data_published"))
        })?;
        ms.map(|m| {
            from_ms(m).map_err(|e| StoreError::Corrupt {
                id: "open_data_published".into(),
                msg: e.to_string(),
            })
        })
        .transpose()
    }

    /// A receiver of the feed signal (last committed seq; closing flag).
    pub fn feed_signal(&self) -> tokio::sync::watch::Receiver<FeedSignal> {
        self.inner.outbox.signal.subscribe()
    }

    /// Tells long-polls and workers that the box is shutting down.
    pub fn close_feed(&self) {
        self.inner.outbox.signal.send_modify(|s| s.closing = true);
    }

    /// The highest outbox seq (0 when empty).
    pub fn outbox_last_seq(&self) -> Result<i64, StoreError> {
        self.read(last_seq)
    }

    /// Changes with `seq > after`, oldest first, at most `limit` (≥ 1).
    pub fn feed_page(&self, after: i64, limit: u32) -> Result<FeedPage, StoreError> {
        let limit = limit.max(1) as usize;
        let mut changes = self.read(|c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT seq, envelope FROM outbox WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                )
                .map_err(sql("prepare feed query"))?;
            let rows = stmt
                .query_map(params![after, limit as i64 + 1], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
                })
                .map_err(sql("read feed"))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(sql("read feed"))
        })?;
        let more = changes.len() > limit;
        changes.truncate(limit);
        let next = changes.last().map(|c| c.0).unwrap_or(after);
        Ok(FeedPage { changes, next, more })
    }

    /// [`Store::feed_page`] or, with a principal's scope, [`Store::feed_page_in`].
    pub fn feed_page_scoped(
        &self,
        after: i64,
        limit: u32,
        scope: Option<&super::CameraFilter>,
    ) -> Result<FeedPage, StoreError> {
        match scope {
            None => self.feed_page(after, limit),
            Some(f) => self.feed_page_in(after, limit, f),
        }
    }

    /// Like [`Store::feed_page`], limited to the changes of `filter`'s cameras or grid cells
    /// (a principal's scope). When the page is not full, `next` moves past the changes
    /// outside the scope too, so the next poll does not read them again. One call looks at
    /// most [`FEED_SCAN_MAX`] outbox rows (`seq` in `after+1 ..= after+FEED_SCAN_MAX`): a
    /// narrow scope over a long outbox costs bounded work per poll, and `more` says to go on.
    pub fn feed_page_in(
        &self,
        after: i64,
        limit: u32,
        filter: &super::CameraFilter,
    ) -> Result<FeedPage, StoreError> {
        use rusqlite::types::Value;
        let limit = limit.max(1) as usize;
        let mut args: Vec<Value> = vec![Value::Integer(after)];
        let cond =
            filter.sql("camera_id", Some("json_extract(envelope, '$.grid_cell')"), &mut args);
        let hi = after.saturating_add(FEED_SCAN_MAX);
        args.push(Value::Integer(hi));
        let hi_arg = args.len();
        args.push(Value::Integer(limit as i64 + 1));
        let query = format!(
            "SELECT seq, envelope FROM outbox WHERE seq > ?1 AND seq <= ?{hi_arg} AND {cond} ORDER BY seq LIMIT ?{}",
            args.len()
        );
        let (mut changes, last) = self.read(|c| {
            // One read transaction: the scoped rows and the highest seq from the same snapshot.
            let tx = c.unchecked_transaction().map_err(sql("begin feed read"))?;
            let rows = {
                let mut stmt = tx.prepare_cached(&query).map_err(sql("prepare feed query"))?;
                let rows = stmt
                    .query_map(rusqlite::params_from_iter(args.iter()), |r| {
                        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
                    })
                    .map_err(sql("read feed"))?;
                rows.collect::<Result<Vec<_>, _>>().map_err(sql("read feed"))?
            };
            let last = last_seq(&tx)?;
            tx.finish().map_err(sql("end feed read"))?;
            Ok((rows, last))
        })?;
        let full = changes.len() > limit;
        changes.truncate(limit);
        // Everything up to here was looked at: the end of the scanned window.
        let scanned = last.min(hi);
        let next = match changes.last() {
            Some(c) if full => c.0,
            Some(c) => c.0.max(scanned),
            None => after.max(scanned),
        };
        Ok(FeedPage { changes, next, more: full || next < last })
    }

    /// Outbox rows of one camera with `seq > after`, oldest first.
    pub fn outbox_for_camera(
        &self,
        camera_id: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let rows = self.read(|c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT seq, id, camera_id, event_id, change, kind, envelope, created_at FROM outbox
                     WHERE camera_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
                )
                .map_err(sql("prepare outbox query"))?;
            let rows = stmt
                .query_map(params![camera_id, after, limit.max(1) as i64], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, String>(6)?,
                        r.get::<_, i64>(7)?,
                    ))
                })
                .map_err(sql("read outbox"))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(sql("read outbox"))
        })?;
        rows.into_iter()
            .map(|(seq, id, camera_id, event_id, change, kind, envelope, created)| {
                Ok(OutboxRow {
                    created_at: ts(created, &format!("outbox {seq}"))?,
                    seq,
                    id,
                    camera_id,
                    event_id,
                    change,
                    kind,
                    envelope,
                })
            })
            .collect()
    }

    /// Cameras with outbox rows after `after`, with their highest seq.
    pub fn outbox_cameras_after(&self, after: i64) -> Result<Vec<(String, i64)>, StoreError> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT camera_id, MAX(seq) FROM outbox WHERE seq > ?1 GROUP BY camera_id",
                )
                .map_err(sql("prepare outbox cameras query"))?;
            let rows = stmt
                .query_map(params![after], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(sql("outbox cameras"))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(sql("outbox cameras"))
        })
    }

    /// Registers the configured sinks (`(name, kind, target)`) and returns each one's
    /// `start_seq`: a sink seen for the first time delivers only changes recorded from now
    /// on. Sinks no longer configured are marked inactive (kept, with their history).
    pub fn register_sinks(
        &self,
        sinks: &[(String, String, String)],
    ) -> Result<Vec<i64>, StoreError> {
        let mut conn = lock(&self.inner.writer);
        let tx = conn.transaction().map_err(sql("begin tx for sinks"))?;
        let last = last_seq(&tx)?;
        let now = to_ms(self.now());
        tx.execute("UPDATE uplink_sinks SET active = 0", []).map_err(sql("deactivate sinks"))?;
        let mut out = Vec::new();
        for (name, kind, target) in sinks {
            tx.execute(
                "INSERT INTO uplink_sinks (name, kind, target, active, start_seq, created_at) VALUES (?1, ?2, ?3, 1, ?4, ?5)
                 ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, target = excluded.target, active = 1",
                params![name, kind, target, last, now],
            )
            .map_err(|e| StoreError::sql(format!("register sink `{name}`"), e))?;
            let start: i64 = tx
                .query_row(
                    "SELECT start_seq FROM uplink_sinks WHERE name = ?1",
                    params![name],
                    |r| r.get(0),
                )
                .map_err(|e| StoreError::sql(format!("read sink `{name}`"), e))?;
            out.push(start);
        }
        tx.commit().map_err(sql("commit sinks"))?;
        Ok(out)
    }

    /// The cursors and retry states of a sink, per camera.
    pub fn sink_cursors(&self, sink: &str) -> Result<HashMap<String, CursorState>, StoreError> {
        let rows = self.read(|c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT camera_id, acked_seq, head_seq, attempts, rejections, next_attempt_at
                     FROM uplink_cursors WHERE sink = ?1",
                )
                .map_err(sql("prepare cursor query"))?;
            let rows = stmt
                .query_map(params![sink], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, Option<i64>>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, Option<i64>>(5)?,
                    ))
                })
                .map_err(sql("read cursors"))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(sql("read cursors"))
        })?;
        rows.into_iter()
            .map(|(cam, acked_seq, head_seq, attempts, rejections, next)| {
                let next_attempt_at =
                    next.map(|ms| ts(ms, &format!("cursor {sink}/{cam}"))).transpose()?;
                Ok((
                    cam,
                    CursorState {
                        acked_seq,
                        head_seq,
                        attempts: attempts.clamp(0, u32::MAX as i64) as u32,
                        rejections: rejections.clamp(0, u32::MAX as i64) as u32,
                        next_attempt_at,
                    },
                ))
            })
            .collect()
    }

    /// Records acknowledged changes: per camera the highest acked seq (cursors only move
    /// forward) and when; `delivered` is added to the sink's total. One transaction.
    pub fn sink_ack(
        &self,
        sink: &str,
        acks: &[(String, i64, OffsetDateTime)],
        delivered: u64,
    ) -> Result<(), StoreError> {
        if acks.is_empty() {
            return Ok(());
        }
        let mut conn = lock(&self.inner.writer);
        let tx = conn.transaction().map_err(sql("begin tx for acks"))?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO uplink_cursors (sink, camera_id, acked_seq, last_success_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (sink, camera_id) DO UPDATE SET
                        acked_seq = MAX(acked_seq, excluded.acked_seq),
                        last_success_at = MAX(COALESCE(last_success_at, 0), excluded.last_success_at)",
                )
                .map_err(sql("prepare ack"))?;
            for (cam, seq, at) in acks {
                stmt.execute(params![sink, cam, seq, to_ms(*at)]).map_err(sql("record ack"))?;
            }
        }
        tx.execute(
            "UPDATE uplink_sinks SET delivered = delivered + ?2 WHERE name = ?1",
            params![sink, delivered.min(i64::MAX as u64) as i64],
        )
        .map_err(sql("count deliveries"))?;
        tx.commit().map_err(sql("commit acks"))
    }

    /// Records a failed attempt and the retry state of the change being tried.
    pub fn sink_failure(&self, sink: &str, f: &Failure<'_>) -> Result<(), StoreError> {
        let mut conn = lock(&self.inner.writer);
        let tx = conn.transaction().map_err(sql("begin tx for failure"))?;
        tx.execute(
            "INSERT INTO uplink_cursors (sink, camera_id, acked_seq, head_seq, attempts, rejections, next_attempt_at,
                                         last_status, last_error, last_error_at)
             VALUES (?1, ?2, 0, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (sink, camera_id) DO UPDATE SET head_seq = excluded.head_seq, attempts = excluded.attempts,
                rejections = excluded.rejections, next_attempt_at = excluded.next_attempt_at,
                last_status = excluded.last_status, last_error = excluded.last_error, last_error_at = excluded.last_error_at",
            params![
                sink,
                f.camera_id,
                f.head_seq,
                f.attempts,
                f.rejections,
                to_ms(f.next_attempt_at),
                f.status,
                f.error,
                to_ms(f.at)
            ],
        )
        .map_err(sql("record failed attempt"))?;
        tx.execute(
            "UPDATE uplink_sinks SET failed_attempts = failed_attempts + 1 WHERE name = ?1",
            params![sink],
        )
        .map_err(sql("count failed attempts"))?;
        tx.commit().map_err(sql("commit failed attempt"))
    }

    /// Gives up on a change: lists it as a dead letter and moves the camera's cursor past it
    /// (the camera's later changes go on), in one transaction.
    pub fn sink_dead_letter(
        &self,
        sink: &str,
        row: &OutboxRow,
        attempts: u32,
        status: Option<u16>,
        reason: &str,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut conn = lock(&self.inner.writer);
        let tx = conn.transaction().map_err(sql("begin tx for dead letter"))?;
        tx.execute(
            "INSERT OR REPLACE INTO uplink_dead (sink, seq, camera_id, attempts, last_status, reason, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![sink, row.seq, row.camera_id, attempts, status, reason, to_ms(at)],
        )
        .map_err(sql("record dead letter"))?;
        tx.execute(
            "INSERT INTO uplink_cursors (sink, camera_id, acked_seq) VALUES (?1, ?2, ?3)
             ON CONFLICT (sink, camera_id) DO UPDATE SET acked_seq = MAX(acked_seq, excluded.acked_seq),
                head_seq = NULL, attempts = 0, rejections = 0, next_attempt_at = NULL",
            params![sink, row.camera_id, row.seq],
        )
        .map_err(sql("advance cursor past dead letter"))?;
        tx.execute(
            "UPDATE uplink_sinks SET failed_attempts = failed_attempts + 1 WHERE name = ?1",
            params![sink],
        )
        .map_err(sql("count failed attempts"))?;
        tx.commit().map_err(sql("commit dead letter"))
    }

    /// Delivery status of every configured (active) sink at `now`.
    pub fn uplink_status(&self, now: OffsetDateTime) -> Result<Vec<SinkStatus>, StoreError> {
        type SinkRow = (String, String, String, i64, i64, i64);
        let sinks: Vec<SinkRow> = self.read(|c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT name, kind, target, start_seq, delivered, failed_attempts FROM uplink_sinks
                     WHERE active = 1 ORDER BY name",
                )
                .map_err(sql("prepare sink query"))?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))
                .map_err(sql("read sinks"))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(sql("read sinks"))
        })?;
        let mut out = Vec::new();
        for (name, kind, target, start_seq, delivered, failed) in sinks {
            let mut st = self
                .read(|c| sink_status(c, now, name, kind, target, start_seq, delivered, failed))?;
            st.session = self
                .inner
                .outbox
                .sessions
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(&st.name)
                .cloned();
            out.push(st);
        }
        Ok(out)
    }

    /// Deletes outbox rows recorded before `before` that every configured sink is done with
    /// (delivered or dead-lettered); returns how many.
    pub fn prune_outbox(&self, before: OffsetDateTime) -> Result<usize, StoreError> {
        let conn = lock(&self.inner.writer);
        conn.execute(
            "DELETE FROM outbox WHERE created_at < ?1 AND NOT EXISTS (
                SELECT 1 FROM uplink_sinks s WHERE s.active = 1 AND outbox.seq > s.start_seq
                  AND outbox.seq > COALESCE((SELECT acked_seq FROM uplink_cursors c
                                             WHERE c.sink = s.name AND c.camera_id = outbox.camera_id), 0))",
            params![to_ms(before)],
        )
        .map_err(sql("prune outbox"))
    }
}

#[allow(clippy::too_many_arguments)]
fn sink_status(
    c: &Connection,
    now: OffsetDateTime,
    name: String,
    kind: String,
    target: String,
    start_seq: i64,
    delivered: i64,
    failed: i64,
) -> Result<SinkStatus, StoreError> {
    let (backlog, oldest): (i64, Option<i64>) = c
        .prepare_cached(
            "SELECT COUNT(*), MIN(o.created_at) FROM outbox o
             LEFT JOIN uplink_cursors k ON k.sink = ?1 AND k.camera_id = o.camera_id
             WHERE o.seq > ?2 AND o.seq > COALESCE(k.acked_seq, 0)",
        )
        .and_then(|mut s| s.query_row(params![name, start_seq], |r| Ok((r.get(0)?, r.get(1)?))))
        .map_err(sql("count backlog"))?;
    let oldest = oldest.map(|ms| ts(ms, "outbox")).transpose()?;
    let last = c
        .prepare_cached(
            "SELECT last_error, last_status, last_error_at FROM uplink_cursors
             WHERE sink = ?1 AND last_error_at IS NOT NULL ORDER BY last_error_at DESC LIMIT 1",
        )
        .and_then(|mut s| {
            s.query_row(params![name], |r| {
                Ok((
                    r.get::<_, Option<String>>(0)?,
                    r.get::<_, Option<i64>>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .optional()
        })
        .map_err(sql("read last error"))?;
    let last_success: Option<i64> = c
        .query_row(
            "SELECT MAX(last_success_at) FROM uplink_cursors WHERE sink = ?1",
            params![name],
            |r| r.get(0),
        )
        .map_err(sql("read last success"))?;
    let dead_count: i64 = c
        .query_row("SELECT COUNT(*) FROM uplink_dead WHERE sink = ?1", params![name], |r| r.get(0))
        .map_err(sql("count dead letters"))?;
    type DeadRow = (
        i64,
        Option<String>,
        String,
        Option<String>,
        Option<String>,
        i64,
        Option<i64>,
        String,
        i64,
    );
    let dead: Vec<DeadRow> = {
        let mut stmt = c
            .prepare_cached(
                "SELECT d.seq, o.id, d.camera_id, o.event_id, o.change, d.attempts, d.last_status, d.reason, d.at
                 FROM uplink_dead d LEFT JOIN outbox o ON o.seq = d.seq
                 WHERE d.sink = ?1 ORDER BY d.at DESC, d.seq DESC LIMIT 100",
            )
            .map_err(sql("prepare dead letter query"))?;
        let rows = stmt
            .query_map(params![name], |r| {
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
                ))
            })
            .map_err(sql("read dead letters"))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(sql("read dead letters"))?
    };
    type RetryRow = (String, i64, i64, Option<i64>, Option<String>, Option<i64>);
    let retrying: Vec<RetryRow> = {
        let mut stmt = c
            .prepare_cached(
                "SELECT camera_id, head_seq, attempts, last_status, last_error, next_attempt_at FROM uplink_cursors
                 WHERE sink = ?1 AND head_seq IS NOT NULL AND head_seq > acked_seq AND attempts > 0 ORDER BY camera_id",
            )
            .map_err(sql("prepare retry query"))?;
        let rows = stmt
            .query_map(params![name], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
            })
            .map_err(sql("read retry states"))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(sql("read retry states"))?
    };
    let status16 = |s: Option<i64>| s.and_then(|v| u16::try_from(v).ok());
    Ok(SinkStatus {
        backlog: backlog.max(0) as u64,
        oldest_undelivered_age_secs: oldest.map(|t| (now - t).as_seconds_f64().max(0.0)),
        oldest_undelivered_at: oldest,
        delivered_total: delivered.max(0) as u64,
        failed_attempts_total: failed.max(0) as u64,
        last_success_at: last_success.map(|ms| ts(ms, "last_success_at")).transpose()?,
        last_error: last.as_ref().and_then(|l| l.0.clone()),
        last_error_status: status16(last.as_ref().and_then(|l| l.1)),
        last_error_at: last.map(|l| ts(l.2, "last_error_at")).transpose()?,
        dead_letter_count: dead_count.max(0) as u64,
        dead_letters: dead
            .into_iter()
            .map(|(seq, id, camera_id, event_id, change, attempts, st, reason, at)| {
                Ok(DeadLetter {
                    seq,
                    id,
                    camera_id,
                    event_id,
                    change,
                    attempts: attempts.clamp(0, u32::MAX as i64) as u32,
                    last_status: status16(st),
                    reason,
                    at: ts(at, "dead letter")?,
                })
            })
            .collect::<Result<_, StoreError>>()?,
        retrying: retrying
            .into_iter()
            .map(|(camera_id, seq, attempts, st, err, next)| {
                Ok(Retrying {
                    camera_id,
                    seq,
                    attempts: attempts.clamp(0, u32::MAX as i64) as u32,
                    last_status: status16(st),
                    last_error: err,
                    next_attempt_at: next.map(|ms| ts(ms, "next_attempt_at")).transpose()?,
                })
            })
            .collect::<Result<_, StoreError>>()?,
        name,
        kind,
        target,
        session: None,
    })
}

/// For `Store::end_interrupted`: appends an `ended` change for each event id, inside the
/// caller's transaction; returns the highest seq written.
pub(super) fn outbox_interrupted(
    store: &Store,
    conn: &Connection,
    ids: &[String],
) -> Result<i64, StoreError> {
    let mut last = 0;
    for id in ids {
        let raw = conn
            .query_row(
                &format!("SELECT {} FROM events WHERE id = ?1", super::EVENT_COLS),
                params![id],
                super::row_to_raw,
            )
            .map_err(|e| StoreError::sql(format!("read back event {id}"), e))?;
        let ev = raw.into_event()?;
        let at = ev.ended_at.unwrap_or(ev.started_at);
        last = store.outbox_event(conn, &ev, Change::Ended, at)?;
    }
    Ok(last)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::types::{BBox, EventChange};

    fn change(ev: Uuid, c: Change, cam: &str, at: OffsetDateTime) -> EventChange {
        EventChange {
            event_id: ev,
            change: c,
            camera_id: cam.into(),
            grid_cell: None,
            kind: "crowd".into(),
            severity: Severity::High,
            at,
            objects: vec![
                Detection::new(0, "person", 0.9, BBox { x1: 0.1, y1: 0.1, x2: 0.2, y2: 0.3 }),
                Detection::new(0, "person", 0.8, BBox { x1: 0.3, y1: 0.1, x2: 0.4, y2: 0.3 }),
                Detection::new(2, "car", 0.7, BBox { x1: 0.5, y1: 0.5, x2: 0.9, y2: 0.9 }),
            ],
            snapshot: None,
            rule: Some("crowd#0".into()),
            zone: Some("plaza".into()),
            line: None,
            detail: Some(serde_json::json!({"count": 2})),
            caused_by: Instant::now(),
        }
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let mut cameras = HashMap::new();
        cameras.insert(
            "gate".to_string(),
            CameraMeta {
                grid_cell: Some("D7".into()),
                lat: Some(31.23),
                lon: Some(121.47),
                records: true,
            },
        );
        s.set_uplink_context(UplinkContext {
            box_id: "box-1".into(),
            public_url: "https://box.example:8443".into(),
            cameras,
        });
        (dir, s)
    }

    fn envelopes(s: &Store) -> Vec<Envelope> {
        let page = s.feed_page(0, 1000).unwrap();
        page.changes.iter().map(|(_, e)| serde_json::from_str(e).unwrap()).collect()
    }

    #[test]
    fn every_change_is_in_the_outbox_with_a_complete_envelope() {
        let (_d, s) = store();
        let mut rx = s.feed_signal();
        let t0 = time::macros::datetime!(2026-03-01 10:00:00 UTC);
        let ev = Uuid::now_v7();
        let stored = s.apply(&change(ev, Change::Started, "gate", t0)).unwrap();
        assert!(rx.has_changed().unwrap(), "commit signals the feed");
        assert_eq!(rx.borrow_and_update().last_seq, 1);
        s.apply(&change(ev, Change::Updated, "gate", t0 + time::Duration::seconds(3))).unwrap();
        s.apply(&change(ev, Change::Ended, "gate", t0 + time::Duration::seconds(9))).unwrap();
        s.append_camera_status(
            "gate",
            false,
            Some("no frame for 10 s"),
            t0 + time::Duration::seconds(20),
        )
        .unwrap();
        let envs = envelopes(&s);
        assert_eq!(envs.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3, 4]);
        assert_eq!(
            envs.iter().map(|e| e.change.as_str()).collect::<Vec<_>>(),
            ["started", "updated", "ended", "offline"]
        );
        let ids: std::collections::HashSet<Uuid> = envs.iter().map(|e| e.id).collect();
        assert_eq!(ids.len(), 4, "one id per change");
        let e = &envs[0];
        assert_eq!(
            (e.box_id.as_str(), e.camera_id.as_str(), e.kind.as_str()),
            ("box-1", "gate", "crowd")
        );
        assert_eq!(
            (e.event_id, e.event_seq, e.severity),
            (Some(ev), Some(stored.seq), Some(Severity::High))
        );
        assert_eq!((e.grid_cell.as_deref(), e.lat, e.lon), (Some("D7"), Some(31.23), Some(121.47)));
        assert_eq!(e.at, t0);
        assert_eq!(e.counts, BTreeMap::from([("car".to_string(), 1), ("person".to_string(), 2)]));
        assert_eq!(e.snapshot_url, None, "no snapshot was written");
        assert_eq!(
            e.clip_url.as_deref(),
            Some(format!("https://box.example:8443/api/v1/events/{ev}/clip.mp4").as_str())
        );
        assert_eq!(envs[2].ended_at, Some(t0 + time::Duration::seconds(9)));
        // Times are RFC 3339 UTC in the JSON itself.
        let raw = &s.feed_page(0, 1).unwrap().changes[0].1;
        assert!(raw.contains("\"at\":\"2026-03-01T10:00:00Z\""), "{raw}");
        let st = &envs[3];
        assert_eq!(
            (st.kind.as_str(), st.event_id, st.error.as_deref()),
            ("camera_status", None, Some("no frame for 10 s"))
        );
        assert_eq!(st.severity, Some(Severity::High));
        // A rejected change (event ended) leaves no outbox row.
        assert!(s.apply(&change(ev, Change::Updated, "gate", t0)).is_err());
        assert_eq!(s.outbox_last_seq().unwrap(), 4);
    }

    /// A line_crossing event's envelope names the direction as its detail does (the stable
    /// key and the line's name for it, rules::line_crossing).
    #[test]
    fn line_crossing_envelope_names_the_direction() {
        let (_d, s) = store();
        let t0 = time::macros::datetime!(2026-03-01 10:00:00 UTC);
        let mut c = change(Uuid::now_v7(), Change::Started, "gate", t0);
        c.kind = "line_crossing".into();
        (c.rule, c.zone, c.line) = (Some("line_crossing#0".into()), None, Some("road".into()));
        c.detail = Some(serde_json::json!(
            {"direction": "a_to_b", "direction_name": "southbound", "class": "car"}
        ));
        s.apply(&c).unwrap();
        let env = serde_json::to_value(&envelopes(&s)[0]).unwrap();
        assert_eq!(env["line"], "road");
        assert_eq!(env["detail"]["direction"], "a_to_b");
        assert_eq!(env["detail"]["direction_name"], "southbound");
    }

    #[test]
    fn interrupted_events_get_an_ended_change_and_pages_follow_the_cursor() {
        let (_d, s) = store();
        let now = OffsetDateTime::now_utc();
        for i in 0..5 {
            s.apply(&change(
                Uuid::now_v7(),
                Change::Started,
                if i % 2 == 0 { "gate" } else { "yard" },
                now,
            ))
            .unwrap();
        }
        assert_eq!(s.end_interrupted().unwrap(), 5);
        let envs = envelopes(&s);
        assert_eq!(envs.len(), 10);
        assert!(envs[5..].iter().all(|e| e.change == "ended" && e.ended_at.is_some()));
        // Pagination: every change once, in order.
        let (mut after, mut got) = (0, vec![]);
        loop {
            let p = s.feed_page(after, 3).unwrap();
            got.extend(p.changes.iter().map(|c| c.0));
            after = p.next;
            if !p.more {
                break;
            }
        }
        assert_eq!(got, (1..=10).collect::<Vec<i64>>());
        assert_eq!(
            s.feed_page(10, 3).unwrap(),
            FeedPage { changes: vec![], next: 10, more: false }
        );
        assert_eq!(s.outbox_cameras_after(8).unwrap().len(), 2);
        let gate = s.outbox_for_camera("gate", 1, 100).unwrap();
        assert!(gate.iter().all(|r| r.camera_id == "gate" && r.seq > 1));
        assert!(gate.windows(2).all(|w| w[0].seq < w[1].seq));
    }

    #[test]
    fn sink_bookkeeping_backlog_dead_letters_and_pruning() {
        let (_d, s) = store();
        let now = OffsetDateTime::now_utc();
        s.apply(&change(Uuid::now_v7(), Change::Started, "gate", now)).unwrap(); // before the sink: not its business
        let starts =
            s.register_sinks(&[("city".into(), "webhook".into(), "https://x/h".into())]).unwrap();
        assert_eq!(starts, [1]);
        for cam in ["gate", "gate", "yard"] {
            s.apply(&change(Uuid::now_v7(), Change::Started, cam, now)).unwrap();
        }
        let st = &s.uplink_status(now).unwrap()[0];
        assert_eq!((st.backlog, st.delivered_total, st.dead_letter_count), (3, 0, 0));
        assert!(st.oldest_undelivered_age_secs.is_some());
        s.sink_ack("city", &[("gate".into(), 2, now)], 1).unwrap();
        let rows = s.outbox_for_camera("gate", 2, 10).unwrap();
        s.sink_failure(
            "city",
            &Failure {
                camera_id: "gate",
                head_seq: 3,
                attempts: 2,
                rejections: 2,
                next_attempt_at: now + time::Duration::seconds(5),
                status: Some(400),
                error: "HTTP 400: bad",
                at: now,
            },
        )
        .unwrap();
        let st = &s.uplink_status(now).unwrap()[0];
        assert_eq!((st.backlog, st.delivered_total, st.failed_attempts_total), (2, 1, 1));
        assert_eq!(
            (st.last_error.as_deref(), st.last_error_status),
            (Some("HTTP 400: bad"), Some(400))
        );
        assert_eq!(st.retrying.len(), 1);
        assert_eq!(s.sink_cursors("city").unwrap()["gate"].attempts, 2);
        s.sink_dead_letter("city", &rows[0], 3, Some(400), "rejected", now).unwrap();
        // An older ack flushed later never moves the cursor back.
        s.sink_ack("city", &[("gate".into(), 2, now)], 0).unwrap();
        let st = &s.uplink_status(now).unwrap()[0];
        assert_eq!((st.backlog, st.dead_letter_count), (1, 1));
        assert_eq!(st.dead_letters[0].seq, 3);
        assert_eq!(st.dead_letters[0].reason, "rejected");
        assert!(st.retrying.is_empty());
        assert_eq!(s.sink_cursors("city").unwrap()["gate"].acked_seq, 3);
        // Pruning keeps what the sink still needs (yard's change), removes the rest.
        let later = now + time::Duration::days(1);
        assert_eq!(s.prune_outbox(later).unwrap(), 3);
        assert_eq!(
            s.feed_page(0, 10).unwrap().changes.iter().map(|c| c.0).collect::<Vec<_>>(),
            [4]
        );
        // A sink removed from the config stops holding rows back; its state is kept.
        s.register_sinks(&[]).unwrap();
        assert!(s.uplink_status(now).unwrap().is_empty());
        assert_eq!(s.prune_outbox(later).unwrap(), 1);
        assert_eq!(
            s.register_sinks(&[("city".into(), "webhook".into(), "https://x/h".into())]).unwrap(),
            [1],
            "start kept"
        );
    }
}

#[cfg(test)]
mod scan_tests {
    use super::*;

    /// L6: a scoped feed page looks at no more than FEED_SCAN_MAX outbox rows. A principal
    /// whose camera has one change after 25,000 of other cameras gets empty pages that move
    /// `next` on by the window with `more`, then its change; every change of its own arrives.
    #[test]
    fn scoped_feed_scan_is_bounded_per_page() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let other = 25_000i64;
        {
            let mut c = lock(&s.inner.writer);
            let tx = c.transaction().unwrap();
            {
                let mut st = tx
                    .prepare(
                        "INSERT INTO outbox (id, camera_id, event_id, change, kind, envelope, created_at)
                         VALUES (?1, ?2, NULL, 'started', 'presence', ?3, 0)",
                    )
                    .unwrap();
                for i in 0..=other {
                    let cam = if i == other || i == 7 { "mine" } else { "theirs" };
                    let env = format!("{{\"camera_id\":\"{cam}\",\"n\":{i}}}");
                    st.execute(params![format!("c{i}"), cam, env]).unwrap();
                }
            }
            tx.commit().unwrap();
        }
        let f = crate::store::CameraFilter { cameras: vec!["mine".into()], grid_cells: vec![] };
        let last = other + 1;
        let mut after = 0;
        let mut seen = Vec::new();
        let mut pages = 0;
        loop {
            let p = s.feed_page_in(after, 100, &f).unwrap();
            pages += 1;
            assert!(p.next - after <= FEED_SCAN_MAX, "page after {after} jumped to {}", p.next);
            seen.extend(p.changes.iter().map(|c| c.0));
            assert!(p.next > after || !p.more, "no progress after {after}");
            after = p.next;
            if !p.more {
                break;
            }
            assert!(pages < 100, "too many pages");
        }
        assert_eq!(seen, vec![8, last]);
        assert_eq!(after, last);
        assert_eq!(pages, 3, "25,001 rows in windows of {FEED_SCAN_MAX}");
        // An unscoped page is unaffected (its LIMIT bounds it).
        assert_eq!(s.feed_page(0, 5).unwrap().changes.len(), 5);
    }
}
