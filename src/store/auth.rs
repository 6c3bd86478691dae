//! Access-control tables (schema v6, docs/storage.md): users, sessions, the role and scope
//! of API tokens, failed-login lockout, the audit log, and event reviews.
//!
//! Every change that is audited writes its audit row in the same transaction as the change.
//! Times are passed in by the caller (the API's clock), so tests can move them.

use rusqlite::types::Value;
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{from_ms, lock, row_to_raw, to_ms, Store, StoreError, EVENT_COLS};
use crate::auth::{Role, Scope};
use crate::types::{Event, Review};

fn sql(op: &str) -> impl FnOnce(rusqlite::Error) -> StoreError + '_ {
    move |e| StoreError::sql(op, e)
}

fn ts(ms: i64, what: &str) -> Result<OffsetDateTime, StoreError> {
    from_ms(ms).map_err(|e| StoreError::Corrupt {
        id: what.to_string(),
        msg: format!("timestamp {ms}: {e}"),
    })
}

fn scope_json(scope: Option<&Scope>) -> Result<Option<String>, StoreError> {
    scope
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| StoreError::Corrupt { id: "scope".into(), msg: e.to_string() })
}

fn parse_scope(text: Option<String>, what: &str) -> Result<Option<Scope>, StoreError> {
    text.map(|t| serde_json::from_str(&t))
        .transpose()
        .map_err(|e| StoreError::Corrupt { id: what.to_string(), msg: format!("scope: {e}") })
}

fn parse_role(text: &str, what: &str) -> Result<Role, StoreError> {
    Role::parse(text)
        .ok_or_else(|| StoreError::Corrupt { id: what.to_string(), msg: format!("role `{text}`") })
}

/// A user (without the password hash).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct User {
    pub id: Uuid,
    pub username: String,
    pub role: Role,
    /// `None`: every camera.
    pub scope: Option<Scope>,
    pub disabled: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub password_changed_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_login_at: Option<OffsetDateTime>,
}

/// An API token row, without its hash.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenInfo {
    pub id: Uuid,
    pub name: String,
    pub role: Role,
    /// `None`: every camera.
    pub scope: Option<Scope>,
    /// Who created it (an audit actor, e.g. `user:alice` or `cli`); `null` for tokens made
    /// before schema v6.
    pub created_by: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

/// Changes to a user; `None` fields stay as they are.
#[derive(Debug, Clone, Default)]
pub struct UserUpdate {
    pub role: Option<Role>,
    /// `Some(None)`: every camera.
    pub scope: Option<Option<Scope>>,
    /// A new argon2id PHC string; ends every session of the user but `keep_session`.
    pub password_hash: Option<String>,
    /// Disabling ends every session of the user.
    pub disabled: Option<bool>,
    /// The SHA-256 of a session that survives a password change (the user's own).
    pub keep_session: Option<String>,
}

/// One audit log entry to write.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAudit {
    /// Who: `user:<name>`, `token:<id>`, `config-token:<hash prefix>`, `cli`, `anonymous`.
    pub actor: String,
    /// The actor's role at the time, if it has one.
    pub role: Option<Role>,
    /// What, e.g. `login`, `user_create`, `event_review` (docs/api.md lists them).
    pub action: &'static str,
    /// On what, e.g. `user:<name>`, `token:<id>`, `event:<id>`.
    pub target: Option<String>,
    /// Details (never a password or a token).
    pub detail: Option<serde_json::Value>,
    /// The client's address, for requests over the network.
    pub address: Option<String>,
}

impl NewAudit {
    pub fn new(actor: impl Into<String>, role: Option<Role>, action: &'static str) -> NewAudit {
        NewAudit { actor: actor.into(), role, action, target: None, detail: None, address: None }
    }
    pub fn target(mut self, t: impl Into<String>) -> Self {
        self.target = Some(t.into());
        self
    }
    pub fn detail(mut self, d: serde_json::Value) -> Self {
        self.detail = Some(d);
        self
    }
    pub fn address(mut self, a: Option<String>) -> Self {
        self.address = a;
        self
    }
}

/// A stored audit entry, as served by `GET /api/v1/audit`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub actor: String,
    pub role: Option<String>,
    pub action: String,
    pub target: Option<String>,
    pub detail: Option<serde_json::Value>,
    pub address: Option<String>,
}

/// Filter and cursor of [`Store::audit_page`]; newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub target: Option<String>,
    /// Entries at or after this instant.
    pub since: Option<OffsetDateTime>,
    /// Entries strictly before this instant.
    pub until: Option<OffsetDateTime>,
    /// Only entries with `seq < before_seq` (the previous page's `next_before`).
    pub before_seq: Option<i64>,
    /// Page size; 0 is treated as 1.
    pub limit: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    pub next_before: Option<i64>,
}

/// How failed logins lock and slow (`[auth]`, docs/security.md "Login lockout").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Failures of one account from one address that lock that pair; also the failures of
    /// an account from everywhere after which its checks are slowed.
    pub max_failures: u32,
    /// Failures from one address (over any names) that lock the address.
    pub max_address_failures: u32,
    pub window: time::Duration,
    pub lockout: time::Duration,
    /// Longest gap between two checks of a slowed account.
    pub slowdown_max: time::Duration,
}

fn whole_ms(d: time::Duration) -> i64 {
    d.whole_milliseconds().clamp(1, i64::MAX as i128) as i64
}

impl LockoutPolicy {
    fn window_ms(&self) -> i64 {
        whole_ms(self.window)
    }
    fn lockout_ms(&self) -> i64 {
        whole_ms(self.lockout)
    }
    fn slowdown_max_ms(&self) -> i64 {
        whole_ms(self.slowdown_max)
    }
    fn limit(&self, kind: KeyKind) -> u32 {
        match kind {
            KeyKind::Address => self.max_address_failures,
            _ => self.max_failures,
        }
    }
}

/// Between an account and an address in a pair key.
const PAIR_SEP: &str = "|from:";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Pair,
    Address,
    Account,
}

/// What one login attempt is counted against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoginKeys {
    /// `account:<name>|from:<address>`: one account from one address; locks.
    pub pair: Option<String>,
    /// `address:<address>`: one address over any names; locks.
    pub address: Option<String>,
    /// `account:<name>`: one account from every address; slows its checks, never locks
    /// (so that nobody can lock an account out from elsewhere).
    pub account: Option<String>,
}

impl LoginKeys {
    /// The keys of an attempt on `username` (`None`: a name that cannot exist, which gets
    /// no account keys, so junk names cannot fill the table) from `address`.
    pub fn new(username: Option<&str>, address: Option<&str>) -> LoginKeys {
        let account = username.map(Self::account_key);
        LoginKeys {
            pair: account.as_ref().map(|a| format!("{a}{PAIR_SEP}{}", address.unwrap_or("-"))),
            address: address.map(|a| format!("address:{a}")),
            account,
        }
    }

    fn account_key(username: &str) -> String {
        format!("account:{}", username.to_ascii_lowercase())
    }

    fn all(&self) -> impl Iterator<Item = (KeyKind, &str)> {
        [
            (KeyKind::Pair, &self.pair),
            (KeyKind::Address, &self.address),
            (KeyKind::Account, &self.account),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
    }

    /// What a key stands for, for messages: `("account", name, Some(address))`,
    /// `("address", address, None)` or `("account", name, None)`.
    pub fn describe(key: &str) -> (&str, &str, Option<&str>) {
        let (kind, rest) = key.split_once(':').unwrap_or(("", key));
        match rest.split_once(PAIR_SEP) {
            Some((name, addr)) => (kind, name, Some(addr)),
            None => (kind, rest, None),
        }
    }
}

/// Why a login attempt is not checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginRefusal {
    /// A pair or an address is locked until `until`.
    Locked { key: String, until: OffsetDateTime },
    /// The account's checks are slowed: the next one at `until`.
    Slowed { key: String, until: OffsetDateTime },
    /// Every attempt the window allows this pair or address is counted, some still being
    /// checked: either one succeeds or the key locks.
    Pending { key: String },
}

type FailureRow = (i64, i64, Option<i64>);

fn read_failures(conn: &Connection, key: &str) -> Result<Option<FailureRow>, StoreError> {
    conn.query_row(
        "SELECT failures, window_start, locked_until FROM login_failures WHERE key = ?1",
        params![key],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .optional()
    .map_err(sql("read failed logins"))
}

fn write_failures(
    conn: &Connection,
    key: &str,
    failures: i64,
    start: i64,
    until: Option<i64>,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO login_failures (key, failures, window_start, locked_until) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (key) DO UPDATE SET failures = excluded.failures, window_start = excluded.window_start,
                                         locked_until = excluded.locked_until",
        params![key, failures, start, until],
    )
    .map_err(sql("count failed login"))?;
    Ok(())
}

/// Takes one attempt off a key's count.
fn uncount(conn: &Connection, key: &str) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE login_failures SET failures = MAX(failures - 1, 0) WHERE key = ?1",
        params![key],
    )
    .map_err(sql("uncount login attempt"))?;
    Ok(())
}

pub(super) fn insert_audit(
    conn: &Connection,
    a: &NewAudit,
    at: OffsetDateTime,
) -> Result<i64, StoreError> {
    let detail = a
        .detail
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| StoreError::Corrupt { id: "audit".into(), msg: e.to_string() })?;
    conn.prepare_cached(
        "INSERT INTO audit (at, actor, role, action, target, detail, address) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut s| {
        s.execute(params![to_ms(at), a.actor, a.role.map(Role::as_str), a.action, a.target, detail, a.address])
    })
    .map_err(sql("write audit entry"))?;
    Ok(conn.last_insert_rowid())
}

const USER_COLS: &str =
    "id, username, role, scope, disabled, created_at, updated_at, password_changed_at, last_login_at";

type RawUser = (String, String, String, Option<String>, bool, i64, i64, i64, Option<i64>);

fn row_to_user(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawUser> {
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
}

fn user_from_raw(raw: RawUser) -> Result<User, StoreError> {
    let (id, username, role, scope, disabled, created, updated, pw_changed, last_login) = raw;
    let what = format!("user {username}");
    Ok(User {
        id: Uuid::parse_str(&id)
            .map_err(|e| StoreError::Corrupt { id: what.clone(), msg: format!("id: {e}") })?,
        role: parse_role(&role, &what)?,
        scope: parse_scope(scope, &what)?,
        disabled,
        created_at: ts(created, &what)?,
        updated_at: ts(updated, &what)?,
        password_changed_at: ts(pw_changed, &what)?,
        last_login_at: last_login.map(|t| ts(t, &what)).transpose()?,
        username,
    })
}

const TOKEN_COLS: &str = "id, name, role, scope, created_by, created_at, revoked_at";

type RawToken = (String, String, String, Option<String>, Option<String>, i64, Option<i64>);

fn row_to_token(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawToken> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
}

fn token_from_raw(raw: RawToken) -> Result<TokenInfo, StoreError> {
    let (id, name, role, scope, created_by, created, revoked) = raw;
    let what = format!("token {id}");
    Ok(TokenInfo {
        id: Uuid::parse_str(&id)
            .map_err(|e| StoreError::Corrupt { id: what.clone(), msg: format!("id: {e}") })?,
        role: parse_role(&role, &what)?,
        scope: parse_scope(scope, &what)?,
        created_by,
        created_at: ts(created, &what)?,
        revoked_at: revoked.map(|t| ts(t, &what)).transpose()?,
        name,
    })
}

fn get_user(conn: &Connection, id: &str) -> Result<Option<User>, StoreError> {
    conn.query_row(
        &format!("SELECT {USER_COLS} FROM users WHERE id = ?1"),
        params![id],
        row_to_user,
    )
    .optional()
    .map_err(sql("read user"))?
    .map(user_from_raw)
    .transpose()
}

/// Revokes the live tokens a user created, and those that these tokens created in turn
/// (ADR 0028: a token lives no longer than its creator's right to make it), each with an
/// audit entry by `by`'s actor; returns their ids.
fn revoke_tokens_of(
    tx: &Connection,
    username: &str,
    why: &str,
    by: &NewAudit,
    at: OffsetDateTime,
) -> Result<Vec<String>, StoreError> {
    let creator = format!("user:{username}");
    let ids: Vec<String> = {
        let mut stmt = tx
            .prepare_cached(
                "WITH RECURSIVE doomed(id) AS (
                     SELECT id FROM api_tokens WHERE created_by = ?1 AND revoked_at IS NULL
                     UNION
                     SELECT t.id FROM api_tokens t JOIN doomed d ON t.created_by = 'token:' || d.id
                      WHERE t.revoked_at IS NULL)
                 SELECT id FROM doomed",
            )
            .map_err(sql("prepare creator's tokens"))?;
        let rows =
            stmt.query_map(params![creator], |r| r.get(0)).map_err(sql("creator's tokens"))?;
        rows.collect::<Result<_, _>>().map_err(sql("creator's tokens"))?
    };
    for id in &ids {
        tx.execute(
            "UPDATE api_tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
            params![id, to_ms(at)],
        )
        .map_err(sql("revoke creator's token"))?;
        let entry = NewAudit {
            action: "token_revoke",
            target: Some(format!("token:{id}")),
            detail: Some(serde_json::json!({ "reason": format!("its creator {creator} {why}") })),
            ..by.clone()
        };
        insert_audit(tx, &entry, at)?;
    }
    Ok(ids)
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation)
}

impl Store {
    // ---- users ------------------------------------------------------------------------

    /// Number of users (enabled or not).
    pub fn count_users(&self) -> Result<u64, StoreError> {
        self.read(|c| {
            c.query_row("SELECT COUNT(*) FROM users", [], |r| r.get::<_, i64>(0))
                .map(|n| n.max(0) as u64)
                .map_err(sql("count users"))
        })
    }

    /// Adds a user; `Conflict` when the username is taken (case-insensitively).
    pub fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        role: Role,
        scope: Option<&Scope>,
        audit: &NewAudit,
        at: OffsetDateTime,
    ) -> Result<User, StoreError> {
        if !role.is_human() {
            return Err(StoreError::Conflict(format!(
                "role `{role}` is for tokens; users are people"
            )));
        }
        let id = Uuid::now_v7().to_string();
        let now = to_ms(at);
        let mut conn = lock(&self.inner.writer);
        let tx = conn.transaction().map_err(sql("begin tx to add a user"))?;
        tx.execute(
            "INSERT INTO users (id, username, password_hash, role, scope, disabled, created_at, updated_at,
                                password_changed_at, last_login_at)
             VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, ?6, ?6, NULL)",
            params![id, username, password_hash, role.as_str(), scope_json(scope)?, now],
        )
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict(format!("a user named `{username}` exists already"))
            } else {
                StoreError::sql(format!("add user `{username}`"), e)
            }
        })?;
        insert_audit(&tx, audit, at)?;
        let user = get_user(&tx, &id)?
            .ok_or_else(|| StoreError::Corrupt { id, msg: "user vanished".into() })?;
        tx.commit().map_err(sql("commit new user"))?;
        Ok(user)
    }

    /// All users, by username.
    pub fn users(&self) -> Result<Vec<User>, StoreError> {
        let raws = self.read(|c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {USER_COLS} FROM users ORDER BY username COLLATE NOCASE"
                ))
                .map_err(sql("prepare user list"))?;
            let rows = stmt.query_map([], row_to_user).map_err(sql("list users"))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(sql("list users"))
        })?;
        raws.into_iter().map(user_from_raw).collect()
    }

    pub fn user(&self, id: Uuid) -> Result<Option<User>, StoreError> {
        self.read(|c| get_user(c, &id.to_string()))
    }

    /// A user and their password hash, by username (case-insensitive).
    pub fn user_credentials(&self, username: &str) -> Result<Option<(User, String)>, StoreError> {
        let raw = self.read(|c| {
            c.query_row(
                &format!("SELECT {USER_COLS}, password_hash FROM users WHERE username = ?1"),
                params![username],
                |r| Ok((row_to_user(r)?, r.get::<_, String>(9)?)),
            )
            .optional()
            .map_err(sql("look up user"))
        })?;
        raw.map(|(u, h)| Ok((user_from_raw(u)?, h))).transpose()
    }

    pub fn user_by_name(&self, username: &str) -> Result<Option<User>, StoreError> {
        Ok(self.user_credentials(username)?.map(|(u, _)| u))
    }

    /// Applies `update`; `None` when no user has this id. A new password or disabling ends
    /// the user's sessions (except `update.keep_session`).
    pub fn update_user(
        &self,
        id: Uuid,
        update: &UserUpdate,
        audit: &NewAudit,
        at: OffsetDateTime,
    ) -> Result<Option<User>, StoreError> {
        if update.role.is_some_and(|r| !r.is_human()) {
            return Err(StoreError::Conflict(
                "role `platform` is for tokens; users are people".into(),
            ));
        }
        let id_s = id.to_string();
        let now = to_ms(at);
        let mut conn = lock(&self.inner.writer);
        let tx = conn.transaction().map_err(sql("begin tx to update a user"))?;
        if get_user(&tx, &id_s)?.is_none() {
            return Ok(None);
        }
        if let Some(role) = update.role {
            tx.execute("UPDATE users SET role = ?2 WHERE id = ?1", params![id_s, role.as_str()])
                .map_err(sql("set role"))?;
        }
        if let Some(scope) = &update.scope {
            tx.execute(
                "UPDATE users SET scope = ?2 WHERE id = ?1",
                params![id_s, scope_json(scope.as_ref())?],
            )
            .map_err(sql("set scope"))?;
        }
        if let Some(hash) = &update.password_hash {
            tx.execute(
                "UPDATE users SET password_hash = ?2, password_changed_at = ?3 WHERE id = ?1",
                params![id_s, hash, now],
            )
            .map_err(sql("set password"))?;
        }
        if let Some(d) = update.disabled {
            tx.execute("UPDATE users SET disabled = ?2 WHERE id = ?1", params![id_s, d])
                .map_err(sql("set disabled"))?;
        }
        if update.password_hash.is_some() || update.disabled == Some(true) {
            tx.execute(
                "UPDATE sessions SET revoked_at = ?2 WHERE user_id = ?1 AND revoked_at IS NULL AND id_sha256 IS NOT ?3",
                params![id_s, now, update.keep_session],
            )
            .map_err(sql("end the user's sessions"))?;
        }
        tx.execute("UPDATE users SET updated_at = ?2 WHERE id = ?1", params![id_s, now])
            .map_err(sql("touch user"))?;
        insert_audit(&tx, audit, at)?;
        let user = get_user(&tx, &id_s)?;
        if let Some(u) = &user {
            if u.disabled || u.role != Role::Admin || u.scope.is_some() {
                let why = if u.disabled { "was disabled" } else { "may no longer manage tokens" };
                revoke_tokens_of(&tx, &u.username, why, audit, at)?;
            }
        }
        tx.commit().map_err(sql("commit user update"))?;
        Ok(user)
    }

    /// Deletes a user and their sessions, and revokes the tokens they created (and the
    /// tokens those created); false when no user has this id.
    pub fn delete_user(
        &self,
        id: Uuid,
        audit: &NewAudit,
        at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let mut conn = lock(&self.inner.writer);
        let tx = conn.transaction().map_err(sql("begin tx to delete a user"))?;
        let user = get_user(&tx, &id.to_string())?;
        tx.execute("DELETE FROM sessions WHERE user_id = ?1", params![id.to_string()])
            .map_err(sql("delete sessions"))?;
        let n = tx
            .execute("DELETE FROM users WHERE id = ?1", params![id.to_string()])
            .map_err(sql("delete user"))?;
        if n > 0 {
            insert_audit(&tx, audit, at)?;
        }
        if let Some(u) = user {
            revoke_tokens_of(&tx, &u.username, "was deleted", audit, at)?;
        }
        tx.commit().map_err(sql("commit user deletion"))?;
        Ok(n > 0)
    }

    // ---- sessions ---------------------------------------------------------------------

    /// Stores a new session (by the SHA-256 of its id) and the user's login time; drops
    /// sessions that expired or were ended.
    pub fn create_session(
        &self,
        id_sha256: &str,
        user_id: Uuid,
        expires_at: OffsetDateTime,
        address: Option<&str>,
        audit: &NewAudit,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let now = to_ms(at);
        let mut conn = lock(&self.inner.writer);
        let tx = conn.transaction().map_err(sql("begin tx for a session"))?;
        tx.execute(
            "DELETE FROM sessions WHERE expires_at <= ?1 OR revoked_at IS NOT NULL",
            params![now],
        )
        .map_err(sql("drop old sessions"))?;
        tx.execute(
            "INSERT INTO sessions (id_sha256, user_id, created_at, expires_at, revoked_at, address)
             VALUES (?1, ?2, ?3, ?4, NULL, ?5)",
            params![id_sha256, user_id.to_string(), now, to_ms(expires_at), address],
        )
        .map_err(sql("store session"))?;
        tx.execute(
            "UPDATE users SET last_login_at = ?2 WHERE id = ?1",
            params![user_id.to_string(), now],
        )
        .map_err(sql("set last login"))?;
        insert_audit(&tx, audit, at)?;
        tx.commit().map_err(sql("commit session"))
    }

    /// The enabled user of a live session (not ended, not expired at `now`) and when it expires.
    pub fn session_user(
        &self,
        id_sha256: &str,
        now: OffsetDateTime,
    ) -> Result<Option<(User, OffsetDateTime)>, StoreError> {
        let cols: String =
            USER_COLS.split(", ").map(|c| format!("u.{c}")).collect::<Vec<_>>().join(", ");
        let raw = self.read(|c| {
            c.query_row(
                &format!(
                    "SELECT {cols}, s.expires_at FROM sessions s JOIN users u ON u.id = s.user_id
                     WHERE s.id_sha256 = ?1 AND s.revoked_at IS NULL AND s.expires_at > ?2 AND u.disabled = 0"
                ),
                params![id_sha256, to_ms(now)],
                |r| Ok((row_to_user(r)?, r.get::<_, i64>(9)?)),
            )
            .optional()
            .map_err(sql("look up session"))
        })?;
        raw.map(|(u, exp)| Ok((user_from_raw(u)?, ts(exp, "session")?))).transpose()
    }

    /// Ends a session (logout); false when it was not live.
    pub fn end_session(
        &self,
        id_sha256: &str,
        audit: &NewAudit,
        at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let mut conn = lock(&self.inner.writer);
        let tx = conn.transaction().map_err(sql("begin tx to end a session"))?;
        let n = tx
            .execute(
                "UPDATE sessions SET revoked_at = ?2 WHERE id_sha256 = ?1 AND revoked_at IS NULL",
                params![id_sha256, to_ms(at)],
            )
            .map_err(sql("end session"))?;
        if n > 0 {
            insert_audit(&tx, audit, at)?;
        }
        tx.commit().map_err(sql("commit logout"))?;
        Ok(n > 0)
    }

    /// Live sessions of a user.
    pub fn count_sessions(&self, user_id: Uuid, now: OffsetDateTime) -> Result<u64, StoreError> {
        self.read(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM sessions WHERE user_id = ?1 AND revoked_at IS NULL AND expires_at > ?2",
                params![user_id.to_string(), to_ms(now)],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n.max(0) as u64)
            .map_err(sql("count sessions"))
        })
    }

    // ---- tokens -----------------------------------------------------------------------

    /// Stores a token hash with a role and scope; `Token` error for a malformed or
    /// duplicate hash.
    #[allow(clippy::too_many_arguments)]
    pub fn create_token(
        &self,
        name: &str,
        sha256_hex: &str,
        role: Role,
        scope: Option<&Scope>,
        created_by: &str,
        audit: impl FnOnce(Uuid) -> NewAudit,
        at: OffsetDateTime,
    ) -> Result<TokenInfo, StoreError> {
        if sha256_hex.len() != 64 || !sha256_hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(StoreError::Token("hash must be 64 hex digits (SHA-256)".into()));
        }
        let id = Uuid::now_v7();
        let mut conn = lock(&self.inner.writer);
        let tx = conn.transaction().map_err(sql("begin tx to add a token"))?;
        tx.execute(
            "INSERT INTO api_tokens (id, name, sha256, created_at, revoked_at, role, scope, created_by)
             VALUES (?1, ?2, ?3, ?4, NULL, ?5, ?6, ?7)",
            params![
                id.to_string(),
                name,
                sha256_hex.to_ascii_lowercase(),
                to_ms(at),
                role.as_str(),
                scope_json(scope)?,
                created_by
            ],
        )
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Token("a token with this hash already exists".into())
            } else {
                StoreError::sql(format!("add token `{name}`"), e)
            }
        })?;
        insert_audit(&tx, &audit(id), at)?;
        let info = tx
            .query_row(
                &format!("SELECT {TOKEN_COLS} FROM api_tokens WHERE id = ?1"),
                params![id.to_string()],
                row_to_token,
            )
            .map_err(sql("read back token"))?;
        tx.commit().map_err(sql("commit token"))?;
        token_from_raw(info)
    }

    /// The non-revoked token with this hash.
    pub fn active_token(&self, sha256_hex: &str) -> Result<Option<TokenInfo>, StoreError> {
        let h = sha256_hex.to_ascii_lowercase();
        let raw = self.read(|c| {
            c.query_row(
                &format!(
                    "SELECT {TOKEN_COLS} FROM api_tokens WHERE sha256 = ?1 AND revoked_at IS NULL"
                ),
                params![h],
                row_to_token,
            )
            .optional()
            .map_err(sql("check token"))
        })?;
        raw.map(token_from_raw).transpose()
    }

    /// All tokens (without hashes), oldest first.
    pub fn list_tokens(&self) -> Result<Vec<TokenInfo>, StoreError> {
        let raws = self.read(|c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {TOKEN_COLS} FROM api_tokens ORDER BY created_at, id"
                ))
                .map_err(sql("prepare token list"))?;
            let rows = stmt.query_map([], row_to_token).map_err(sql("list tokens"))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(sql("list tokens"))
        })?;
        raws.into_iter().map(token_from_raw).collect()
    }

    /// Sets the HTTP Digest secret (`HA1`, hex) of a token: platform tokens get one when
    /// they are made (their name and the token itself are the digest credentials of
    /// `/VIID/`, ADR 0047).
    pub fn set_token_digest(&self, id: Uuid, ha1: &str) -> Result<(), StoreError> {
        let conn = lock(&self.inner.writer);
        conn.execute(
            "UPDATE api_tokens SET digest_ha1 = ?2 WHERE id = ?1",
            params![id.to_string(), ha1],
        )
        .map_err(sql("set token digest"))?;
        Ok(())
    }

    /// The active tokens named `name` that have a digest secret, with it (HA1, hex).
    pub fn digest_tokens(&self, name: &str) -> Result<Vec<(TokenInfo, String)>, StoreError> {
        let raws = self.read(|c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {TOKEN_COLS}, digest_ha1 FROM api_tokens
                     WHERE name = ?1 AND revoked_at IS NULL AND digest_ha1 IS NOT NULL"
                ))
                .map_err(sql("prepare digest tokens"))?;
            let rows = stmt
                .query_map(params![name], |r| Ok((row_to_token(r)?, r.get::<_, String>(7)?)))
                .map_err(sql("read digest tokens"))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(sql("read digest tokens"))
        })?;
        raws.into_iter().map(|(t, h)| Ok((token_from_raw(t)?, h))).collect()
    }

    /// Revokes a token and writes `audit`; false if no active token has this id.
    pub fn revoke_token_audited(
        &self,
        id: Uuid,
        audit: &NewAudit,
        at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let mut conn = lock(&self.inner.writer);
        let tx = conn.transaction().map_err(sql("begin tx to revoke a token"))?;
        let n = tx
            .execute(
                "UPDATE api_tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                params![id.to_string(), to_ms(at)],
            )
            .map_err(sql("revoke token"))?;
        if n > 0 {
            insert_audit(&tx, audit, at)?;
        }
        tx.commit().map_err(sql("commit token revocation"))?;
        Ok(n > 0)
    }

    // ---- failed logins ----------------------------------------------------------------
    //
    // A login attempt is counted when it starts, in one write transaction that also checks
    // the limits ([`Store::login_begin`]), so parallel guesses cannot all be checked; it is
    // settled when the password has been checked ([`Store::login_end`]).

    /// Starts a login attempt: refuses it when a key is locked, slowed, or has its allowed
    /// attempts of the window all used (some still being checked); else counts it against
    /// every key, atomically.
    pub fn login_begin(
        &self,
        keys: &LoginKeys,
        policy: &LockoutPolicy,
        now: OffsetDateTime,
    ) -> Result<Result<(), LoginRefusal>, StoreError> {
        let now_ms = to_ms(now);
        let window_ms = policy.window_ms();
        let mut conn = lock(&self.inner.writer);
        let tx = conn.transaction().map_err(sql("begin tx for a login attempt"))?;
        // Rows that can no longer matter.
        tx.execute(
            "DELETE FROM login_failures WHERE (locked_until IS NULL OR locked_until <= ?1) AND window_start <= ?2",
            params![now_ms, now_ms.saturating_sub(window_ms)],
        )
        .map_err(sql("prune failed logins"))?;
        let mut writes = Vec::new();
        for (kind, key) in keys.all() {
            let row = read_failures(&tx, key)?;
            let until = row.and_then(|r| r.2).filter(|u| *u > now_ms);
            if let Some(u) = until {
                let until = ts(u, "login lock")?;
                let key = key.to_string();
                return Ok(Err(match kind {
                    KeyKind::Account => LoginRefusal::Slowed { key, until },
                    _ => LoginRefusal::Locked { key, until },
                }));
            }
            let (failures, start) = match row {
                Some((f, s, _)) if now_ms - s < window_ms => (f, s),
                _ => (0, now_ms),
            };
            let mut until = None;
            match kind {
                KeyKind::Account => {
                    // Past the limit, one check per slot, the slots growing apart.
                    let over = failures - i64::from(policy.max_failures);
                    if over >= 0 {
                        let delay = 1000i64
                            .saturating_mul(1i64 << over.min(30))
                            .min(policy.slowdown_max_ms());
                        until = Some(now_ms.saturating_add(delay));
                    }
                }
                KeyKind::Pair | KeyKind::Address => {
                    if failures >= i64::from(policy.limit(kind)) {
                        return Ok(Err(LoginRefusal::Pending { key: key.to_string() }));
                    }
                }
            }
            writes.push((key, failures + 1, start, until));
        }
        for (key, failures, start, until) in writes {
            write_failures(&tx, key, failures, start, until)?;
        }
        tx.commit().map_err(sql("commit login attempt"))?;
        Ok(Ok(()))
    }

    /// Settles an attempt that [`Store::login_begin`] let through. A failure stays counted
    /// and locks a pair or an address whose count reached its limit (returned: the keys
    /// this failure locked and until when). A success clears the pair's count and takes
    /// this attempt off the address and the account.
    pub fn login_end(
        &self,
        keys: &LoginKeys,
        policy: &LockoutPolicy,
        success: bool,
        now: OffsetDateTime,
    ) -> Result<Vec<(String, OffsetDateTime)>, StoreError> {
        let now_ms = to_ms(now);
        let mut locked = Vec::new();
        let mut conn = lock(&self.inner.writer);
        let tx = conn.transaction().map_err(sql("begin tx to settle a login"))?;
        for (kind, key) in keys.all() {
            match (success, kind) {
                (true, KeyKind::Pair) => {
                    tx.execute(
                        "DELETE FROM login_failures WHERE key = ?1 AND (locked_until IS NULL OR locked_until <= ?2)",
                        params![key, now_ms],
                    )
                    .map_err(sql("clear failed logins"))?;
                }
                (true, _) => uncount(&tx, key)?,
                (false, KeyKind::Account) => {}
                (false, kind) => {
                    let Some((failures, _, until)) = read_failures(&tx, key)? else { continue };
                    if until.is_some_and(|u| u > now_ms) || failures < i64::from(policy.limit(kind))
                    {
                        continue;
                    }
                    let u = now_ms.saturating_add(policy.lockout_ms());
                    write_failures(&tx, key, 0, now_ms, Some(u))?;
                    locked.push((key.to_string(), ts(u, "login lock")?));
                }
            }
        }
        tx.commit().map_err(sql("commit login settlement"))?;
        Ok(locked)
    }

    /// Takes back an attempt that [`Store::login_begin`] counted but that was never checked
    /// (the password work was busy).
    pub fn login_cancel(&self, keys: &LoginKeys) -> Result<(), StoreError> {
        let mut conn = lock(&self.inner.writer);
        let tx = conn.transaction().map_err(sql("begin tx to cancel a login"))?;
        for (_, key) in keys.all() {
            uncount(&tx, key)?;
        }
        tx.commit().map_err(sql("commit login cancel"))
    }

    /// Removes the counts, locks and slowdown of an account: its own key and its key from
    /// every address (an installer reset the password). True if there was any.
    pub fn login_unlock(&self, username: &str) -> Result<bool, StoreError> {
        let account = LoginKeys::account_key(username);
        let pairs = format!("{account}{PAIR_SEP}");
        let conn = lock(&self.inner.writer);
        let n = conn
            .execute(
                "DELETE FROM login_failures WHERE key = ?1 OR substr(key, 1, length(?2)) = ?2",
                params![account, pairs],
            )
            .map_err(sql("unlock login"))?;
        Ok(n > 0)
    }

    // ---- audit ------------------------------------------------------------------------

    /// Writes one audit entry on its own (for actions that change nothing else, such as a
    /// failed login or a lockout); returns its seq.
    pub fn audit(&self, entry: &NewAudit, at: OffsetDateTime) -> Result<i64, StoreError> {
        let conn = lock(&self.inner.writer);
        insert_audit(&conn, entry, at)
    }

    /// Audit entries matching `q`, newest first, one page at a time.
    pub fn audit_page(&self, q: &AuditQuery) -> Result<AuditPage, StoreError> {
        let limit = q.limit.max(1);
        let mut sql_text = String::from(
            "SELECT seq, at, actor, role, action, target, detail, address FROM audit WHERE 1",
        );
        let mut args: Vec<Value> = Vec::new();
        for (col, v) in [("actor", &q.actor), ("action", &q.action), ("target", &q.target)] {
            if let Some(v) = v {
                args.push(Value::Text(v.clone()));
                sql_text += &format!(" AND {col} = ?{}", args.len());
            }
        }
        if let Some(t) = q.since {
            args.push(Value::Integer(to_ms(t)));
            sql_text += &format!(" AND at >= ?{}", args.len());
        }
        if let Some(t) = q.until {
            args.push(Value::Integer(to_ms(t)));
            sql_text += &format!(" AND at < ?{}", args.len());
        }
        if let Some(b) = q.before_seq {
            args.push(Value::Integer(b));
            sql_text += &format!(" AND seq < ?{}", args.len());
        }
        args.push(Value::Integer(i64::from(limit) + 1));
        sql_text += &format!(" ORDER BY seq DESC LIMIT ?{}", args.len());
        type Raw = (
            i64,
            i64,
            String,
            Option<String>,
            String,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        let mut raws: Vec<Raw> = self.read(|c| {
            let mut stmt = c.prepare_cached(&sql_text).map_err(sql("prepare audit query"))?;
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
                        r.get(7)?,
                    ))
                })
                .map_err(sql("read audit"))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(sql("read audit"))
        })?;
        let more = raws.len() > limit as usize;
        raws.truncate(limit as usize);
        let entries = raws
            .into_iter()
            .map(|(seq, at, actor, role, action, target, detail, address)| {
                let what = format!("audit {seq}");
                Ok(AuditEntry {
                    seq,
                    at: ts(at, &what)?,
                    detail: detail.map(|d| serde_json::from_str(&d)).transpose().map_err(|e| {
                        StoreError::Corrupt { id: what, msg: format!("detail: {e}") }
                    })?,
                    actor,
                    role,
                    action,
                    target,
                    address,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let next_before = if more { entries.last().map(|e| e.seq) } else { None };
        Ok(AuditPage { entries, next_before })
    }

    // ---- review -----------------------------------------------------------------------

    /// Moves an event's review to `to` (checked against the workflow: `InvalidTransition`
    /// otherwise), recording who, when and the note, with its audit entry.
    pub fn review_event(
        &self,
        id: Uuid,
        to: Review,
        by: &str,
        note: Option<&str>,
        audit: &NewAudit,
        at: OffsetDateTime,
    ) -> Result<Event, StoreError> {
        let id_s = id.to_string();
        let mut conn = lock(&self.inner.writer);
        let tx = conn.transaction().map_err(sql("begin tx for a review"))?;
        let from: Option<String> = tx
            .query_row("SELECT review FROM events WHERE id = ?1", params![id_s], |r| r.get(0))
            .optional()
            .map_err(sql("read review state"))?;
        let from = from.ok_or(StoreError::EventNotFound(id))?;
        let from = Review::parse(&from).ok_or_else(|| StoreError::Corrupt {
            id: id_s.clone(),
            msg: format!("review `{from}`"),
        })?;
        if !from.can_become(to) {
            return Err(StoreError::InvalidTransition { id, from, to });
        }
        let mut audit = audit.clone();
        if let Some(serde_json::Value::Object(m)) = &mut audit.detail {
            m.insert("from".into(), from.as_str().into());
        }
        tx.execute(
            "UPDATE events SET review = ?2, reviewed_by = ?3, reviewed_at = ?4, review_note = ?5 WHERE id = ?1",
            params![id_s, to.as_str(), by, to_ms(at), note],
        )
        .map_err(sql("write review"))?;
        insert_audit(&tx, &audit, at)?;
        let event = tx
            .query_row(
                &format!("SELECT {EVENT_COLS} FROM events WHERE id = ?1"),
                params![id_s],
                row_to_raw,
            )
            .map_err(sql("read back reviewed event"))?
            .into_event()?;
        let seq = self.outbox_review(&tx, &event)?;
        tx.commit().map_err(sql("commit review"))?;
        self.outbox_committed(seq);
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;
    use time::macros::datetime;

    use super::*;
    use crate::store::{hash_token, migrations, DB_FILE};
    use crate::types::{Change, EventChange, Severity};

    fn audit() -> NewAudit {
        NewAudit::new("test", None, "test")
    }

    impl Store {
        fn login_lock_rows(&self) -> i64 {
            self.read(|c| {
                c.query_row("SELECT COUNT(*) FROM login_failures WHERE failures > 0 OR locked_until IS NOT NULL", [], |r| r.get(0))
                    .map_err(sql("count"))
            })
            .unwrap()
        }
    }

    /// A database from before v6 (tokens without roles, events without reviewers) keeps
    /// working: its tokens get role `admin` and every camera, its events review `new`.
    #[test]
    fn v5_tokens_keep_full_access_and_events_read_back() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut c = Connection::open(dir.path().join(DB_FILE)).unwrap();
            migrations::migrate_to(&mut c, 5).unwrap();
            c.execute(
                "INSERT INTO api_tokens (id, name, sha256, created_at) VALUES (?1, 'old', ?2, 0)",
                params![Uuid::now_v7().to_string(), hash_token("gw_old")],
            )
            .unwrap();
            c.execute(
                "INSERT INTO events (id, camera_id, kind, severity, state, started_at, created_at, updated_at, review)
                 VALUES (?1, 'cam', 'presence', 'low', 'ended', 0, 0, 0, 'acknowledged')",
                params![Uuid::now_v7().to_string()],
            )
            .unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.schema_version().unwrap(), crate::store::migrations::latest_version());
        let t = s.active_token(&hash_token("gw_old")).unwrap().unwrap();
        assert_eq!((t.role, t.scope, t.created_by), (Role::Admin, None, None));
        let ev = &s
            .list_events(&crate::store::EventQuery { limit: 10, ..Default::default() })
            .unwrap()
            .events[0];
        assert_eq!(
            (ev.review, ev.reviewed_by.as_deref(), ev.reviewed_at),
            (Review::Acknowledged, None, None)
        );
    }

    fn policy() -> LockoutPolicy {
        LockoutPolicy {
            max_failures: 3,
            max_address_failures: 5,
            window: time::Duration::minutes(15),
            lockout: time::Duration::minutes(15),
            slowdown_max: time::Duration::seconds(8),
        }
    }

    /// One attempt, begun and settled at `t`; `Err` with the refusal, or `Ok` with the
    /// keys it locked.
    fn attempt(
        s: &Store,
        k: &LoginKeys,
        ok: bool,
        t: OffsetDateTime,
    ) -> Result<Vec<(String, OffsetDateTime)>, LoginRefusal> {
        s.login_begin(k, &policy(), t).unwrap()?;
        Ok(s.login_end(k, &policy(), ok, t).unwrap())
    }

    #[test]
    fn failures_lock_only_within_the_window_and_locks_end() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let k = LoginKeys::new(Some("A"), Some("10.0.0.1"));
        assert_eq!(k.pair.as_deref(), Some("account:a|from:10.0.0.1"));
        let t0 = datetime!(2026-05-01 10:00 UTC);
        // Two failures, then the window passes: the count starts over.
        assert_eq!(attempt(&s, &k, false, t0), Ok(vec![]));
        assert_eq!(attempt(&s, &k, false, t0 + time::Duration::minutes(10)), Ok(vec![]));
        let t1 = t0 + time::Duration::minutes(26);
        assert_eq!(attempt(&s, &k, false, t1), Ok(vec![]), "window passed: 1 of 3");
        assert_eq!(attempt(&s, &k, false, t1), Ok(vec![]));
        let t2 = t1 + time::Duration::seconds(1);
        let until = t2 + time::Duration::minutes(15);
        let pair = k.pair.clone().unwrap();
        assert_eq!(attempt(&s, &k, false, t2), Ok(vec![(pair.clone(), until)]));
        assert_eq!(
            attempt(&s, &k, true, until - time::Duration::seconds(1)),
            Err(LoginRefusal::Locked { key: pair.clone(), until }),
            "locked: even the right password is not checked"
        );
        // Another address: the account is not locked there, only slowed (3 failures).
        let other = LoginKeys::new(Some("a"), Some("10.0.0.2"));
        let t3 = t2 + time::Duration::seconds(5);
        assert_eq!(attempt(&s, &other, false, t3), Ok(vec![]));
        assert_eq!(
            attempt(&s, &other, true, t3 + time::Duration::milliseconds(999)),
            Err(LoginRefusal::Slowed {
                key: "account:a".into(),
                until: t3 + time::Duration::seconds(1)
            })
        );
        // The slots grow apart (1 s, 2 s, 4 s, 8 s, 8 s …) and are taken by whoever comes.
        let mut t = t3 + time::Duration::seconds(1);
        for (i, gap) in [2, 4, 8, 8].into_iter().enumerate() {
            let from = LoginKeys::new(Some("a"), Some(&format!("10.9.9.{i}")));
            assert_eq!(attempt(&s, &from, false, t), Ok(vec![]));
            t += time::Duration::seconds(gap);
        }
        assert_eq!(
            attempt(&s, &LoginKeys::new(Some("a"), None), false, t - time::Duration::seconds(1)),
            Err(LoginRefusal::Slowed { key: "account:a".into(), until: t })
        );
        assert_eq!(attempt(&s, &other, true, t), Ok(vec![]), "the right password, in its slot");
        // Locked pair a/10.0.0.1; counts of address 10.0.0.1, account a, address 10.0.0.2,
        // pairs and addresses 10.9.9.0–3 (the pair of 10.0.0.2 was cleared by the success).
        assert_eq!(s.login_lock_rows(), 12);
        // The lock ends at `until`; an unlock (password reset) clears every key of the account.
        assert_eq!(attempt(&s, &k, true, until + time::Duration::minutes(1)), Ok(vec![]));
        attempt(&s, &k, false, until + time::Duration::minutes(1)).unwrap();
        assert!(s.login_unlock("A").unwrap());
        assert_eq!(s.login_lock_rows(), 1, "the address's own count stays");
    }

    #[test]
    fn parallel_attempts_are_counted_before_they_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let k = LoginKeys::new(Some("bob"), Some("10.0.0.1"));
        let t = datetime!(2026-05-01 10:00 UTC);
        // Three begin (none settled yet): the fourth is refused without a check.
        for _ in 0..3 {
            s.login_begin(&k, &policy(), t).unwrap().unwrap();
        }
        let pair = k.pair.clone().unwrap();
        assert_eq!(
            s.login_begin(&k, &policy(), t).unwrap(),
            Err(LoginRefusal::Pending { key: pair.clone() })
        );
        // One was never checked (busy): taken back, so one more may begin.
        s.login_cancel(&k).unwrap();
        s.login_begin(&k, &policy(), t).unwrap().unwrap();
        // The first failure locks (attempts count when they start); the right password,
        // admitted before, still gets in, but does not lift the lock.
        assert_eq!(s.login_end(&k, &policy(), false, t).unwrap().len(), 1);
        assert!(s.login_end(&k, &policy(), false, t).unwrap().is_empty());
        assert!(s.login_end(&k, &policy(), true, t).unwrap().is_empty());
        assert!(matches!(
            s.login_begin(&k, &policy(), t).unwrap(),
            Err(LoginRefusal::Locked { .. })
        ));
        // Below the limit, a success clears the pair's count.
        let k = LoginKeys::new(Some("carol"), Some("10.0.0.2"));
        for _ in 0..2 {
            attempt(&s, &k, false, t).unwrap();
        }
        attempt(&s, &k, true, t).unwrap();
        for _ in 0..2 {
            assert_eq!(attempt(&s, &k, false, t), Ok(vec![]));
        }
        // Junk names count against the address only.
        let junk = LoginKeys::new(None, Some("10.0.0.7"));
        assert_eq!((junk.pair.as_deref(), junk.account.as_deref()), (None, None));
        for _ in 0..5 {
            attempt(&s, &junk, false, t).unwrap();
        }
        assert!(matches!(attempt(&s, &junk, false, t), Err(LoginRefusal::Locked { .. })));
    }

    #[test]
    fn users_sessions_and_reviews() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let t = datetime!(2026-05-01 10:00 UTC);
        let u = s.create_user("Alice", "$argon2id$x", Role::Operator, None, &audit(), t).unwrap();
        assert!(matches!(
            s.create_user("alice", "h", Role::Viewer, None, &audit(), t),
            Err(StoreError::Conflict(_))
        ));
        assert!(matches!(
            s.create_user("bot", "h", Role::Platform, None, &audit(), t),
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(s.user_credentials("ALICE").unwrap().unwrap().1, "$argon2id$x");
        s.create_session("h1", u.id, t + time::Duration::hours(1), Some("10.0.0.1"), &audit(), t)
            .unwrap();
        s.create_session("h2", u.id, t + time::Duration::hours(1), None, &audit(), t).unwrap();
        assert_eq!(s.session_user("h1", t).unwrap().unwrap().0.username, "Alice");
        assert!(s.session_user("h1", t + time::Duration::hours(1)).unwrap().is_none(), "expired");
        assert!(s.session_user("nope", t).unwrap().is_none());
        // A new password ends the other sessions.
        let upd = UserUpdate {
            password_hash: Some("new".into()),
            keep_session: Some("h1".into()),
            ..Default::default()
        };
        s.update_user(u.id, &upd, &audit(), t).unwrap().unwrap();
        assert!(s.session_user("h1", t).unwrap().is_some());
        assert!(s.session_user("h2", t).unwrap().is_none());
        assert_eq!(s.count_sessions(u.id, t).unwrap(), 1);
        // Disabled users have no live session.
        s.update_user(
            u.id,
            &UserUpdate { disabled: Some(false), ..Default::default() },
            &audit(),
            t,
        )
        .unwrap();
        assert!(s.session_user("h1", t).unwrap().is_some());
        s.update_user(
            u.id,
            &UserUpdate { disabled: Some(true), ..Default::default() },
            &audit(),
            t,
        )
        .unwrap();
        assert!(s.session_user("h1", t).unwrap().is_none());
        assert!(s
            .update_user(Uuid::now_v7(), &UserUpdate::default(), &audit(), t)
            .unwrap()
            .is_none());

        let id = Uuid::now_v7();
        s.apply(&EventChange::bare(id, Change::Started, "cam", "presence", Severity::High, t))
            .unwrap();
        let a = NewAudit::new("user:Alice", Some(Role::Operator), "event_review")
            .detail(serde_json::json!({"to": "resolved"}));
        let ev = s.review_event(id, Review::Resolved, "Alice", Some("ok"), &a, t).unwrap();
        assert_eq!(
            (ev.review, ev.reviewed_by.as_deref(), ev.reviewed_at, ev.review_note.as_deref()),
            (Review::Resolved, Some("Alice"), Some(t), Some("ok"))
        );
        let e = s.review_event(id, Review::Acknowledged, "Alice", None, &a, t).unwrap_err();
        assert!(
            matches!(
                e,
                StoreError::InvalidTransition {
                    from: Review::Resolved,
                    to: Review::Acknowledged,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("final"), "{e}");
        assert!(matches!(
            s.review_event(Uuid::now_v7(), Review::Resolved, "x", None, &a, t),
            Err(StoreError::EventNotFound(_))
        ));
        // One audit entry for the one change, with `from` filled in by the store.
        let page = s
            .audit_page(&AuditQuery {
                action: Some("event_review".into()),
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(page.entries.len(), 1);
        assert_eq!(page.entries[0].detail.as_ref().unwrap()["from"], "new");
        assert_eq!(s.get_event(id).unwrap().unwrap().review, Review::Resolved);
        // The transition goes upstream too (change `reviewed`), once, after the `started`.
        let feed = s.feed_page(0, 10).unwrap();
        let envs: Vec<serde_json::Value> =
            feed.changes.iter().map(|(_, e)| serde_json::from_str(e).unwrap()).collect();
        assert_eq!(
            envs.iter().map(|e| e["change"].as_str().unwrap()).collect::<Vec<_>>(),
            ["started", "reviewed"]
        );
        let r = &envs[1];
        assert_eq!(
            (&r["review"], &r["reviewed_by"], &r["review_note"]),
            (&"resolved".into(), &"Alice".into(), &"ok".into())
        );
        assert_eq!(
            r["at"], envs[0]["at"],
            "a review's `at` is when it was made (here the event's start time t)"
        );
    }
}
