//! Versioned schema migrations.
//!
//! The schema version lives in SQLite's `PRAGMA user_version`. `MIGRATIONS[i]` upgrades a
//! database from version `i` to version `i + 1`; each runs in its own transaction together
//! with the `user_version` bump, so a crash leaves the database at a whole version.
//!
//! To change the schema, APPEND a new entry; never edit an entry that has shipped.

use rusqlite::Connection;

use super::StoreError;

/// Ordered list of migrations; the current schema version is `MIGRATIONS.len()`.
pub const MIGRATIONS: &[&str] = &[
    // v1: events and API tokens.
    r#"
CREATE TABLE events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT    NOT NULL UNIQUE,
    camera_id   TEXT    NOT NULL,
    grid_cell   TEXT,
    kind        TEXT    NOT NULL,
    severity    TEXT    NOT NULL CHECK (severity IN ('info','low','medium','high','critical')),
    state       TEXT    NOT NULL CHECK (state IN ('active','ended')),
    started_at  INTEGER NOT NULL,
    ended_at    INTEGER,
    objects     TEXT    NOT NULL DEFAULT '[]',
    snapshot    TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX events_camera_seq ON events (camera_id, seq);
CREATE INDEX events_kind_seq   ON events (kind, seq);
CREATE INDEX events_started_at ON events (started_at);

CREATE TABLE api_tokens (
    id          TEXT    PRIMARY KEY,
    name        TEXT    NOT NULL,
    sha256      TEXT    NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
"#,
    // v2: line-crossing counts in 1-minute buckets (rule `line_crossing`).
    r#"
CREATE TABLE line_counts (
    camera_id       TEXT    NOT NULL,
    line            TEXT    NOT NULL,
    class           TEXT    NOT NULL,
    direction       TEXT    NOT NULL CHECK (direction IN ('a_to_b','b_to_a')),
    bucket_start_ms INTEGER NOT NULL,
    count           INTEGER NOT NULL CHECK (count >= 0),
    PRIMARY KEY (camera_id, line, class, direction, bucket_start_ms)
) WITHOUT ROWID;
CREATE INDEX line_counts_camera_bucket ON line_counts (camera_id, bucket_start_ms);
"#,
    // v3: event details (rule id, zone, line, rule-specific JSON) and zone occupancy in
    // 1-minute buckets.
    r#"
ALTER TABLE events ADD COLUMN rule   TEXT;
ALTER TABLE events ADD COLUMN zone   TEXT;
ALTER TABLE events ADD COLUMN line   TEXT;
ALTER TABLE events ADD COLUMN detail TEXT;

CREATE TABLE zone_occupancy (
    camera_id       TEXT    NOT NULL,
    zone            TEXT    NOT NULL,
    class           TEXT    NOT NULL,
    bucket_start_ms INTEGER NOT NULL,
    samples         INTEGER NOT NULL CHECK (samples >= 0),
    sum             INTEGER NOT NULL CHECK (sum >= 0),
    max             INTEGER NOT NULL CHECK (max >= 0),
    PRIMARY KEY (camera_id, zone, class, bucket_start_ms)
) WITHOUT ROWID;
CREATE INDEX zone_occupancy_camera_bucket ON zone_occupancy (camera_id, bucket_start_ms);
"#,
    // v4: recorded segments (indexed only once complete and fsynced), event clips, and the
    // review state of events (footage of unreviewed high-severity events is kept longer).
    r#"
CREATE TABLE segments (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    camera_id     TEXT    NOT NULL,
    path          TEXT    NOT NULL UNIQUE,
    start_ms      INTEGER NOT NULL,
    end_ms        INTEGER NOT NULL CHECK (end_ms >= start_ms),
    start_pts_ns  INTEGER,
    end_pts_ns    INTEGER,
    bytes         INTEGER NOT NULL CHECK (bytes >= 0),
    codec         TEXT    NOT NULL,
    frames        INTEGER,
    recovered     INTEGER NOT NULL DEFAULT 0 CHECK (recovered IN (0, 1)),
    created_at    INTEGER NOT NULL
);
CREATE INDEX segments_camera_start ON segments (camera_id, start_ms);
CREATE INDEX segments_start ON segments (start_ms);

CREATE TABLE clips (
    event_id    TEXT    PRIMARY KEY REFERENCES events (id),
    path        TEXT    NOT NULL UNIQUE,
    start_ms    INTEGER NOT NULL,
    end_ms      INTEGER NOT NULL CHECK (end_ms >= start_ms),
    bytes       INTEGER NOT NULL CHECK (bytes >= 0),
    created_at  INTEGER NOT NULL
);

ALTER TABLE events ADD COLUMN review TEXT NOT NULL DEFAULT 'new'
    CHECK (review IN ('new','acknowledged','resolved','false_alarm'));
ALTER TABLE events ADD COLUMN media_deleted_at INTEGER;
"#,
    // v5: the uplink outbox (one row per event change or camera status change, written in the
    // same transaction as the change; `seq` is the pull feed's cursor) and the delivery
    // bookkeeping of each sink: where each camera's changes are acknowledged up to, the retry
    // state of the change being delivered, and dead letters.
    r#"
CREATE TABLE outbox (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT    NOT NULL UNIQUE,
    camera_id   TEXT    NOT NULL,
    event_id    TEXT,
    change      TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    envelope    TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX outbox_camera_seq ON outbox (camera_id, seq);
CREATE INDEX outbox_created_at ON outbox (created_at);

CREATE TABLE uplink_sinks (
    name            TEXT    PRIMARY KEY,
    kind            TEXT    NOT NULL,
    target          TEXT    NOT NULL,
    active          INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    start_seq       INTEGER NOT NULL,
    delivered       INTEGER NOT NULL DEFAULT 0,
    failed_attempts INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL
);

CREATE TABLE uplink_cursors (
    sink            TEXT    NOT NULL REFERENCES uplink_sinks (name),
    camera_id       TEXT    NOT NULL,
    acked_seq       INTEGER NOT NULL,
    head_seq        INTEGER,
    attempts        INTEGER NOT NULL DEFAULT 0,
    rejections      INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,
    last_status     INTEGER,
    last_error      TEXT,
    last_error_at   INTEGER,
    last_success_at INTEGER,
    PRIMARY KEY (sink, camera_id)
) WITHOUT ROWID;

CREATE TABLE uplink_dead (
    sink        TEXT    NOT NULL REFERENCES uplink_sinks (name),
    seq         INTEGER NOT NULL,
    camera_id   TEXT    NOT NULL,
    attempts    INTEGER NOT NULL,
    last_status INTEGER,
    reason      TEXT    NOT NULL,
    at          INTEGER NOT NULL,
    PRIMARY KEY (sink, seq)
) WITHOUT ROWID;
"#,
    // v6: access control. Users (argon2id password hashes) with a role and an optional
    // camera scope, their sessions (only the SHA-256 of a session id is stored), roles and
    // scopes of API tokens (tokens from before v6 keep full access: role `admin`), the
    // lockout bookkeeping of failed logins, the audit log, and who reviewed an event.
    r#"
CREATE TABLE users (
    id                  TEXT    PRIMARY KEY,
    username            TEXT    NOT NULL UNIQUE COLLATE NOCASE,
    password_hash       TEXT    NOT NULL,
    role                TEXT    NOT NULL CHECK (role IN ('viewer','operator','installer','admin')),
    scope               TEXT,
    disabled            INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    password_changed_at INTEGER NOT NULL,
    last_login_at       INTEGER
);

CREATE TABLE sessions (
    id_sha256   TEXT    PRIMARY KEY,
    user_id     TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    revoked_at  INTEGER,
    address     TEXT
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expires ON sessions (expires_at);

ALTER TABLE api_tokens ADD COLUMN role TEXT NOT NULL DEFAULT 'admin'
    CHECK (role IN ('viewer','operator','installer','admin','platform'));
ALTER TABLE api_tokens ADD COLUMN scope TEXT;
ALTER TABLE api_tokens ADD COLUMN created_by TEXT;

CREATE TABLE login_failures (
    key           TEXT    PRIMARY KEY,
    failures      INTEGER NOT NULL CHECK (failures >= 0),
    window_start  INTEGER NOT NULL,
    locked_until  INTEGER
) WITHOUT ROWID;

CREATE TABLE audit (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    at       INTEGER NOT NULL,
    actor    TEXT    NOT NULL,
    role     TEXT,
    action   TEXT    NOT NULL,
    target   TEXT,
    detail   TEXT,
    address  TEXT
);
CREATE INDEX audit_at ON audit (at);
CREATE INDEX audit_actor ON audit (actor, seq);
CREATE INDEX audit_action ON audit (action, seq);
CREATE INDEX audit_target ON audit (target, seq);

ALTER TABLE events ADD COLUMN reviewed_by TEXT;
ALTER TABLE events ADD COLUMN reviewed_at INTEGER;
ALTER TABLE events ADD COLUMN review_note TEXT;
"#,
    // v7: ground speeds of the counted crossings (cameras with a ground-plane calibration):
    // their sum and how many crossings had one, per bucket (mean = sum / n).
    r#"
ALTER TABLE line_counts ADD COLUMN speed_sum_kmh REAL    NOT NULL DEFAULT 0;
ALTER TABLE line_counts ADD COLUMN speed_n       INTEGER NOT NULL DEFAULT 0 CHECK (speed_n >= 0);
"#,
    // v8: evidence locks (issue 17): footage of an event, or of a camera over a time range,
    // that retention never deletes while the lock is active.
    r#"
CREATE TABLE evidence_locks (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    id             TEXT    NOT NULL UNIQUE,
    camera_id      TEXT    NOT NULL,
    event_id       TEXT    REFERENCES events (id),
    start_ms       INTEGER,
    end_ms         INTEGER,
    reason         TEXT    NOT NULL,
    created_by     TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    released_at    INTEGER,
    released_by    TEXT,
    release_reason TEXT,
    CHECK ((event_id IS NOT NULL AND start_ms IS NULL AND end_ms IS NULL)
        OR (event_id IS NULL AND start_ms IS NOT NULL AND end_ms IS NOT NULL AND end_ms > start_ms))
);
CREATE INDEX evidence_locks_active ON evidence_locks (released_at, camera_id);
CREATE INDEX evidence_locks_event ON evidence_locks (event_id);
"#,
    // v9: open data. Tokens of role `open_data` (the role's CHECK is widened by rebuilding
    // the table, SQLite cannot alter a CHECK), and the hours whose open-data aggregates were
    // appended to the outbox (one row per hour, written in the same transaction).
    r#"
CREATE TABLE api_tokens_v9 (
    id          TEXT    PRIMARY KEY,
    name        TEXT    NOT NULL,
    sha256      TEXT    NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER,
    role        TEXT    NOT NULL DEFAULT 'admin'
        CHECK (role IN ('viewer','operator','installer','admin','platform','open_data')),
    scope       TEXT,
    created_by  TEXT
);
INSERT INTO api_tokens_v9 (id, name, sha256, created_at, revoked_at, role, scope, created_by)
    SELECT id, name, sha256, created_at, revoked_at, role, scope, created_by FROM api_tokens;
DROP TABLE api_tokens;
ALTER TABLE api_tokens_v9 RENAME TO api_tokens;

CREATE TABLE open_data_published (
    hour_start  INTEGER PRIMARY KEY,
    seq         INTEGER NOT NULL
) WITHOUT ROWID;
"#,
    // v10: GA/T 1400 (VIID) subscriptions made by platform tokens (issue 18, ADR 0047), and
    // the digest secret of platform tokens (HA1 = MD5(name:realm:token), set when the token
    // is made; tokens made before v10 have none and cannot use /VIID/).
    r#"
ALTER TABLE api_tokens ADD COLUMN digest_ha1 TEXT;

CREATE TABLE viid_subscriptions (
    id           TEXT    PRIMARY KEY,
    token_id     TEXT    NOT NULL,
    title        TEXT,
    resources    TEXT    NOT NULL,
    details      TEXT    NOT NULL,
    receive_addr TEXT    NOT NULL,
    begin_time   TEXT,
    end_time     TEXT,
    expires_at   INTEGER,
    after_seq    INTEGER NOT NULL,
    body         TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    cancelled_at INTEGER
);
"#,
];

/// The schema version this build writes.
pub fn latest_version() -> u32 {
    MIGRATIONS.len() as u32
}

pub fn current_version(conn: &Connection) -> Result<u32, StoreError> {
    let v: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|e| StoreError::sql("read schema version", e))?;
    u32::try_from(v).map_err(|_| StoreError::Schema(format!("invalid schema version {v}")))
}

/// Migrates `conn` up to `target` (≤ `latest_version()`), one version per transaction.
/// A database newer than this build is refused rather than touched.
pub fn migrate_to(conn: &mut Connection, target: u32) -> Result<u32, StoreError> {
    let latest = latest_version();
    if target > latest {
        return Err(StoreError::Schema(format!(
            "no migration to version {target} (latest is {latest})"
        )));
    }
    let mut v = current_version(conn)?;
    if v > latest {
        return Err(StoreError::Schema(format!(
            "database schema version {v} is newer than this build supports ({latest}); refusing to downgrade"
        )));
    }
    while v < target {
        let sql = MIGRATIONS[v as usize];
        let next = v + 1;
        let tx = conn.transaction().map_err(|e| StoreError::sql("begin migration", e))?;
        tx.execute_batch(sql)
            .map_err(|e| StoreError::Schema(format!("migration to version {next} failed: {e}")))?;
        tx.pragma_update(None, "user_version", next)
            .map_err(|e| StoreError::sql("set schema version", e))?;
        tx.commit().map_err(|e| StoreError::sql("commit migration", e))?;
        tracing::info!(version = next, "database migrated");
        v = next;
    }
    Ok(v)
}

pub fn migrate(conn: &mut Connection) -> Result<u32, StoreError> {
    migrate_to(conn, latest_version())
}
