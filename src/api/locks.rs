//! Evidence locks, storage status and the evidence signing key (issue 17; docs/api.md
//! "Evidence locks", "Storage", "Evidence packages").

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

use super::auth::{Client, JsonBody};
use super::{blocking, load_event, parse_time, path_param, ApiError, ApiState, Principal};
use crate::store::locks::{EvidenceLock, LockTarget, MAX_REASON_CHARS};

/// Longest range a lock may cover (days).
pub const MAX_LOCK_DAYS: i64 = 366;
/// Most locks `GET /api/v1/locks` returns.
pub const LOCKS_LIMIT: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LockBody {
    #[serde(default)]
    event_id: Option<String>,
    #[serde(default)]
    camera: Option<String>,
    #[serde(default)]
    start: Option<String>,
    #[serde(default)]
    end: Option<String>,
    reason: String,
}

fn reason_of(field: &str, r: &str) -> Result<String, ApiError> {
    let r = r.trim().to_string();
    if r.is_empty() {
        return Err(ApiError::bad_param(field, format!("`{field}` must not be empty: say why")));
    }
    if r.chars().count() > MAX_REASON_CHARS {
        return Err(ApiError::bad_param(
            field,
            format!("`{field}` must have at most {MAX_REASON_CHARS} characters"),
        ));
    }
    Ok(r)
}

fn body_time(key: &str, v: &str) -> Result<OffsetDateTime, ApiError> {
    parse_time(key, v)
        .map_err(|e| ApiError::bad_param(key, e.message.replace("query parameter", "field")))
}

/// `POST /api/v1/locks`: locks an event (`event_id`) or a camera's footage over a range
/// (`camera`, `start`, `end`), with a `reason`. 201 with the lock; 404 for an event or
/// camera that does not exist or is out of scope.
pub(super) async fn create_lock(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
    client: Client,
    JsonBody(body): JsonBody<LockBody>,
) -> Result<(StatusCode, Json<EvidenceLock>), ApiError> {
    let reason = reason_of("reason", &body.reason)?;
    let target = match (&body.event_id, &body.camera, &body.start, &body.end) {
        (Some(id), None, None, None) => {
            let id = Uuid::parse_str(id).map_err(|_| {
                ApiError::bad_param(
                    "event_id",
                    format!("`event_id` must be an event UUID, got `{id}`"),
                )
            })?;
            // The message does not echo the id: out of scope must look exactly like missing.
            load_event(&st, &p, id).await.map_err(|e| match e.kind {
                super::ErrorKind::NotFound => {
                    ApiError::not_found("the event in `event_id` was not found")
                }
                _ => e,
            })?;
            LockTarget::Event(id)
        }
        (None, Some(cam), Some(s), Some(e)) => {
            let (start, end) = (body_time("start", s)?, body_time("end", e)?);
            if end <= start {
                return Err(ApiError::bad_param("end", "`end` must be later than `start`"));
            }
            if end - start > time::Duration::days(MAX_LOCK_DAYS) {
                return Err(ApiError::bad_param(
                    "end",
                    format!(
                        "a lock covers at most {MAX_LOCK_DAYS} days; lock longer spans in parts"
                    ),
                ));
            }
            let known = st.registry.get(cam).is_some() || st.media.recording.contains_key(cam);
            if !known || !p.sees_camera(&st.registry, cam) {
                return Err(ApiError::not_found("the camera in `camera` was not found"));
            }
            LockTarget::Range { camera: cam.clone(), start, end }
        }
        _ => {
            return Err(ApiError::bad_param(
                "body",
                "give either `event_id`, or `camera`, `start` and `end` (and a `reason`)",
            ))
        }
    };
    let (s, by, now) = (st.store.clone(), p.display_name(), st.auth.now());
    let audit_base = p.audit("lock_create", &client);
    let lock = blocking(move || {
        Ok(s.create_lock(
            &target,
            &reason,
            &by,
            |l| {
                audit_base.target(format!("lock:{}", l.id)).detail(serde_json::json!({
                    "camera_id": l.camera_id,
                    "event_id": l.event_id,
                    "start": l.start.and_then(|t| t.format(&Rfc3339).ok()),
                    "end": l.end.and_then(|t| t.format(&Rfc3339).ok()),
                    "reason": l.reason,
                }))
            },
            now,
        )?)
    })
    .await?;
    tracing::info!(actor = %p.actor(), lock = %lock.id, camera = %lock.camera_id, "evidence locked");
    Ok((StatusCode::CREATED, Json(lock)))
}

#[derive(Serialize)]
pub(super) struct LockList {
    locks: Vec<EvidenceLock>,
}

/// `GET /api/v1/locks[?camera=…][&active=true|false]`: newest first, at most 1000; active
/// and released unless `active` is given.
pub(super) async fn list_locks(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
    RawQuery(raw): RawQuery,
) -> Result<Json<LockList>, ApiError> {
    let (mut camera, mut active) = (None, None);
    for (k, v) in super::media::query_pairs(raw.as_deref(), &["camera", "active"])? {
        match k.as_str() {
            "camera" => camera = Some(v),
            _ => {
                active = Some(match v.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(ApiError::bad_param(
                            "active",
                            format!(
                                "query parameter `active` must be `true` or `false`, got `{v}`"
                            ),
                        ))
                    }
                })
            }
        }
    }
    let s = st.store.clone();
    let cam = camera.clone();
    let locks = blocking(move || {
        Ok(s.evidence_locks(cam.as_deref(), active == Some(true), LOCKS_LIMIT)?)
    })
    .await?;
    let locks = locks
        .into_iter()
        .filter(|l| active != Some(false) || !l.active)
        .filter(|l| p.sees_camera(&st.registry, &l.camera_id))
        .collect();
    Ok(Json(LockList { locks }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UnlockBody {
    reason: String,
}

/// `POST /api/v1/locks/{id}/unlock` (admins): releases a lock with a `reason`; audited.
/// 404 for a lock that does not exist or is out of scope; 409 if already released.
pub(super) async fn unlock(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
    client: Client,
    id: Result<Path<String>, PathRejection>,
    JsonBody(body): JsonBody<UnlockBody>,
) -> Result<Json<EvidenceLock>, ApiError> {
    let raw = path_param(id)?;
    let id = Uuid::parse_str(&raw)
        .map_err(|_| ApiError::bad_param("id", format!("`id` must be a lock UUID, got `{raw}`")))?;
    let reason = reason_of("reason", &body.reason)?;
    let s = st.store.clone();
    let existing = blocking(move || Ok(s.evidence_lock(id)?))
        .await?
        .filter(|l| p.sees_camera(&st.registry, &l.camera_id))
        .ok_or_else(|| ApiError::not_found(format!("lock {id} not found")))?;
    let audit =
        p.audit("lock_release", &client).target(format!("lock:{id}")).detail(serde_json::json!({
            "camera_id": existing.camera_id,
            "event_id": existing.event_id,
            "reason": reason,
            "locked_by": existing.created_by,
            "locked_reason": existing.reason,
        }));
    let (s, by, now) = (st.store.clone(), p.display_name(), st.auth.now());
    let lock = blocking(move || Ok(s.release_lock(id, &reason, &by, &audit, now)?)).await?;
    tracing::warn!(actor = %p.actor(), lock = %id, camera = %lock.camera_id, "evidence lock released");
    Ok(Json(lock))
}

/// `GET /api/v1/storage`: usage, what locks and floors keep, the budget.
pub(super) async fn storage_status(
    State(st): State<ApiState>,
) -> Result<Json<crate::record::retention::StorageStatus>, ApiError> {
    let now = st.auth.now();
    let status = blocking(move || {
        Ok(crate::record::retention::storage_status(
            &st.store,
            &st.media.storage,
            &st.media.recording,
            now,
            &crate::record::retention::Statvfs,
        )?)
    })
    .await?;
    Ok(Json(status))
}

/// The evidence signing key of the box (made in the data dir at its first use).
pub(super) fn evidence_key(
    st: &ApiState,
) -> Result<std::sync::Arc<crate::evidence::BoxKey>, ApiError> {
    let mut slot = st.media.evidence_key.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(k) = slot.as_ref() {
        return Ok(k.clone());
    }
    let k = std::sync::Arc::new(
        crate::evidence::BoxKey::load_or_create(st.store.data_dir()).map_err(|e| {
            tracing::error!("evidence signing key: {e}");
            ApiError::new(
                super::ErrorKind::Unavailable,
                "the evidence signing key is not available",
            )
            .with_code("no_evidence_key")
        })?,
    );
    *slot = Some(k.clone());
    Ok(k)
}

#[derive(Serialize)]
pub(super) struct KeyInfo {
    algorithm: &'static str,
    /// Base64 of the 32-byte Ed25519 public key.
    public_key: String,
    /// SHA-256 of the 32 bytes, hex.
    fingerprint: String,
    box_id: String,
}

/// `GET /api/v1/evidence/key`: the public half of the box's evidence signing key.
pub(super) async fn key(State(st): State<ApiState>) -> Result<Json<KeyInfo>, ApiError> {
    let st2 = st.clone();
    let k = blocking(move || evidence_key(&st2)).await?;
    let public = k.public();
    Ok(Json(KeyInfo {
        algorithm: "ed25519",
        public_key: public.public_base64(),
        fingerprint: public.fingerprint(),
        box_id: st.box_id.clone(),
    }))
}
