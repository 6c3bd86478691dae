//! GA/T 1400 (VIID) subscriptions (schema v10, issue 18, ADR 0047): what a platform token
//! asked for with `POST /VIID/Subscribes` (api/viid.rs). The notifications themselves are
//! delivered from the outbox by `uplink::viid_subscribe`; a subscription only sees changes
//! recorded after it was made (`after_seq`).

use rusqlite::{params, OptionalExtension};
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::auth::{insert_audit, NewAudit};
use super::{from_ms, lock, to_ms, Store, StoreError};
use crate::auth::Scope;

fn sql(op: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |e| StoreError::sql(op, e)
}

/// A subscription as the platform asked for it (checked by the API).
#[derive(Debug, Clone, PartialEq)]
pub struct NewSubscription {
    /// `SubscribeID`.
    pub id: String,
    pub title: Option<String>,
    /// `ResourceURI` split at commas: the box's device id or channel ids.
    pub resources: Vec<String>,
    /// `SubscribeDetail` split at commas: the subscribed categories.
    pub details: Vec<String>,
    pub receive_addr: String,
    /// `BeginTime` / `EndTime` as sent (`yyyyMMddHHmmss`, in the platform's UTC offset,
    /// which the sink knows).
    pub begin_time: Option<String>,
    pub end_time: Option<String>,
    /// From `Timeout` (seconds after it was made), if given.
    pub expires_at: Option<OffsetDateTime>,
    /// The `SubscribeObject` as received (JSON).
    pub body: String,
}

/// A stored subscription with its owner.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Subscription {
    pub id: String,
    pub token_id: Uuid,
    pub token_name: String,
    /// The owner's camera scope (`None`: every camera).
    pub scope: Option<Scope>,
    pub title: Option<String>,
    pub resources: Vec<String>,
    pub details: Vec<String>,
    pub receive_addr: String,
    pub begin_time: Option<String>,
    pub end_time: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// Only changes with a larger outbox seq are notified.
    pub after_seq: i64,
    /// The `SubscribeObject` as received (JSON): its narrowing conditions
    /// (`uplink::viid_subscribe::Narrowing`) are read from it.
    pub body: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub cancelled_at: Option<OffsetDateTime>,
}

/// What storing a subscription did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    Created,
    /// The same token sent the same `SubscribeID` again: its conditions were replaced (and
    /// a cancelled one is active again), notified from now on.
    Replaced,
    /// The id belongs to another token's subscription: nothing changed.
    Taken,
}

const COLS: &str = "s.id, s.token_id, t.name, t.scope, s.title, s.resources, s.details, \
    s.receive_addr, s.begin_time, s.end_time, s.expires_at, s.after_seq, s.created_at, \
    s.cancelled_at, s.body";

type Raw = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<i64>,
    i64,
    i64,
    Option<i64>,
    String,
);

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Raw> {
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
        r.get(11)?,
        r.get(12)?,
        r.get(13)?,
        r.get(14)?,
    ))
}

fn from_raw(raw: Raw) -> Result<Subscription, StoreError> {
    let (
        id,
        token,
        name,
        scope,
        title,
        res,
        det,
        addr,
        begin,
        end,
        exp,
        after,
        created,
        cancel,
        body,
    ) = raw;
    let bad = |msg: String| StoreError::Corrupt { id: format!("subscription {id}"), msg };
    let ts = |ms: i64| from_ms(ms).map_err(|e| bad(format!("time: {e}")));
    let list = |s: &str| -> Result<Vec<String>, StoreError> {
        serde_json::from_str(s).map_err(|e| bad(format!("list: {e}")))
    };
    Ok(Subscription {
        token_id: Uuid::parse_str(&token).map_err(|e| bad(format!("token id: {e}")))?,
        token_name: name,
        scope: scope
            .map(|s| serde_json::from_str(&s).map_err(|e| bad(format!("scope: {e}"))))
            .transpose()?,
        title,
        resources: list(&res)?,
        details: list(&det)?,
        receive_addr: addr,
        begin_time: begin,
        end_time: end,
        expires_at: exp.map(ts).transpose()?,
        after_seq: after,
        body,
        created_at: ts(created)?,
        cancelled_at: cancel.map(ts).transpose()?,
        id,
    })
}

impl Store {
    /// Stores a subscription of token `token` (see [`Stored`]) and writes `audit` with it;
    /// it is notified of changes recorded from now on.
    pub fn put_viid_subscription(
        &self,
        token: Uuid,
        s: &NewSubscription,
        audit: &NewAudit,
        at: OffsetDateTime,
    ) -> Result<Stored, StoreError> {
        let list = |v: &[String]| serde_json::to_string(v).unwrap_or_else(|_| "[]".into());
        let mut conn = lock(&self.inner.writer);
        let tx = conn.transaction().map_err(sql("begin tx to store a subscription"))?;
        let owner: Option<String> = tx
            .query_row(
                "SELECT token_id FROM viid_subscriptions WHERE id = ?1",
                params![s.id],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql("read subscription owner"))?;
        let stored = match owner {
            Some(o) if o != token.to_string() => return Ok(Stored::Taken),
            Some(_) => Stored::Replaced,
            None => Stored::Created,
        };
        let after: i64 = tx
            .query_row("SELECT COALESCE(MAX(seq), 0) FROM outbox", [], |r| r.get(0))
            .map_err(sql("read last outbox seq"))?;
        tx.execute(
            "INSERT INTO viid_subscriptions (id, token_id, title, resources, details, receive_addr,
                 begin_time, end_time, expires_at, after_seq, body, created_at, cancelled_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, NULL)
             ON CONFLICT (id) DO UPDATE SET title = ?3, resources = ?4, details = ?5,
                 receive_addr = ?6, begin_time = ?7, end_time = ?8, expires_at = ?9,
                 after_seq = ?10, body = ?11, created_at = ?12, cancelled_at = NULL",
            params![
                s.id,
                token.to_string(),
                s.title,
                list(&s.resources),
                list(&s.details),
                s.receive_addr,
                s.begin_time,
                s.end_time,
                s.expires_at.map(to_ms),
                after,
                s.body,
                to_ms(at)
            ],
        )
        .map_err(sql("store subscription"))?;
        insert_audit(&tx, audit, at)?;
        tx.commit().map_err(sql("commit subscription"))?;
        Ok(stored)
    }

    /// Cancels token `token`'s subscription `id` and writes `audit`; false when it has none
    /// by that id (or it is already cancelled).
    pub fn cancel_viid_subscription(
        &self,
        token: Uuid,
        id: &str,
        audit: &NewAudit,
        at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let mut conn = lock(&self.inner.writer);
        let tx = conn.transaction().map_err(sql("begin tx to cancel a subscription"))?;
        let n = tx
            .execute(
                "UPDATE viid_subscriptions SET cancelled_at = ?3
                 WHERE id = ?1 AND token_id = ?2 AND cancelled_at IS NULL",
                params![id, token.to_string(), to_ms(at)],
            )
            .map_err(sql("cancel subscription"))?;
        if n > 0 {
            insert_audit(&tx, audit, at)?;
        }
        tx.commit().map_err(sql("commit subscription cancel"))?;
        Ok(n > 0)
    }

    /// Subscriptions not cancelled whose token is not revoked (expired ones included: the
    /// sink compares a change's time with their end), oldest first; with `token`, only
    /// that token's.
    pub fn viid_subscriptions(&self, token: Option<Uuid>) -> Result<Vec<Subscription>, StoreError> {
        let raws = self.read(|c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {COLS} FROM viid_subscriptions s JOIN api_tokens t ON t.id = s.token_id
                     WHERE s.cancelled_at IS NULL AND t.revoked_at IS NULL
                       AND (?1 IS NULL OR s.token_id = ?1)
                     ORDER BY s.created_at, s.id"
                ))
                .map_err(sql("prepare subscriptions"))?;
            let rows = stmt
                .query_map(params![token.map(|t| t.to_string())], row)
                .map_err(sql("read subscriptions"))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(sql("read subscriptions"))
        })?;
        raws.into_iter().map(from_raw).collect()
    }
}
