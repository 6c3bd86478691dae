//! Administration (role `admin`, every camera): users, API tokens and the audit log.
//! Every change is written to the audit log in the same transaction. See docs/api.md.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::auth::{double_option, Client, JsonBody, Principal, PrincipalKind};
use super::{blocking, parse_time, path_param, ApiError, ApiState, ErrorKind};
use crate::auth::{self as access, Role, Scope};
use crate::store::auth::{AuditEntry, AuditQuery, TokenInfo, User, UserUpdate};

/// Default and largest page of `GET /api/v1/audit`.
pub const AUDIT_DEFAULT_LIMIT: u32 = 100;
pub const AUDIT_MAX_LIMIT: u32 = 1000;
/// Most entries one audit export holds; a larger one is refused (400 `too_many_results`,
/// narrow it with `since`/`until`) before more than this is read.
pub const AUDIT_EXPORT_MAX: usize = 100_000;

fn parse_id(p: Result<Path<String>, PathRejection>, what: &str) -> Result<Uuid, ApiError> {
    let s = path_param(p)?;
    Uuid::parse_str(&s).map_err(|_| {
        ApiError::bad_param("id", format!("`id` must be a {what} id (UUID), got `{s}`"))
    })
}

fn parse_role(s: &str, human: bool, field: &str) -> Result<Role, ApiError> {
    let allowed: Vec<&str> =
        if human { Role::HUMAN.iter() } else { Role::ALL.iter() }.map(|r| r.as_str()).collect();
    Role::parse(s).filter(|r| !human || r.is_human()).ok_or_else(|| {
        ApiError::bad_param(
            field,
            format!("`{field}` must be one of {}, got `{s}`", allowed.join(", ")),
        )
    })
}

/// Normalises a scope and checks its cameras and grid cells exist on this box.
fn check_scope(st: &ApiState, scope: Option<Scope>) -> Result<Option<Scope>, ApiError> {
    let Some(scope) = scope else { return Ok(None) };
    let scope = scope.normalised().map_err(|m| ApiError::bad_param("scope", m))?;
    let cams = st.registry.all();
    for c in &scope.cameras {
        if !cams.iter().any(|k| k.id == *c) {
            let known: Vec<&str> = cams.iter().map(|k| k.id.as_str()).collect();
            return Err(ApiError::bad_param(
                "scope",
                format!("scope.cameras: no camera `{c}` (cameras: {})", known.join(", ")),
            ));
        }
    }
    for g in &scope.grid_cells {
        if !cams.iter().any(|k| k.grid_cell.as_deref() == Some(g.as_str())) {
            let mut known: Vec<&str> = cams.iter().filter_map(|k| k.grid_cell.as_deref()).collect();
            known.sort();
            known.dedup();
            return Err(ApiError::bad_param(
                "scope",
                format!(
                    "scope.grid_cells: no camera is in grid cell `{g}` (grid cells: {})",
                    known.join(", ")
                ),
            ));
        }
    }
    Ok(Some(scope))
}

fn scope_json(scope: &Option<Scope>) -> serde_json::Value {
    serde_json::to_value(scope).unwrap_or(serde_json::Value::Null)
}

async fn hash(password: String, st: &ApiState, field: &str) -> Result<String, ApiError> {
    access::check_password(&password, st.auth.config.min_password_len)
        .map_err(|m| ApiError::bad_param(field, m))?;
    super::auth::hash_password(st, password).await
}

// ---------------------------------------------------------------------------------------
// Users

#[derive(Serialize)]
pub(super) struct UserList {
    users: Vec<User>,
}

pub(super) async fn list_users(State(st): State<ApiState>) -> Result<Json<UserList>, ApiError> {
    let s = st.store.clone();
    Ok(Json(UserList { users: blocking(move || Ok(s.users()?)).await? }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewUserBody {
    username: String,
    password: String,
    role: String,
    #[serde(default)]
    scope: Option<Scope>,
}

pub(super) async fn create_user(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
    client: Client,
    JsonBody(b): JsonBody<NewUserBody>,
) -> Result<Response, ApiError> {
    access::validate_username(&b.username).map_err(|m| ApiError::bad_param("username", m))?;
    let role = parse_role(&b.role, true, "role")?;
    let scope = check_scope(&st, b.scope)?;
    let hash = hash(b.password, &st, "password").await?;
    let audit = p
        .audit("user_create", &client)
        .target(format!("user:{}", b.username))
        .detail(serde_json::json!({ "role": role, "scope": scope_json(&scope) }));
    let (s, now, name) = (st.store.clone(), st.auth.now(), b.username.clone());
    let user =
        blocking(move || Ok(s.create_user(&name, &hash, role, scope.as_ref(), &audit, now)?))
            .await?;
    tracing::info!(actor = %p.actor(), username = %user.username, role = %user.role, "user created");
    Ok((StatusCode::CREATED, Json(user)).into_response())
}

async fn load_user(st: &ApiState, id: Uuid) -> Result<User, ApiError> {
    let s = st.store.clone();
    blocking(move || Ok(s.user(id)?))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("user {id} not found")))
}

pub(super) async fn get_user(
    State(st): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<User>, ApiError> {
    Ok(Json(load_user(&st, parse_id(id, "user")?).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UserPatch {
    #[serde(default)]
    role: Option<String>,
    /// Absent: unchanged; `null`: every camera.
    #[serde(default, deserialize_with = "double_option")]
    scope: Option<Option<Scope>>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    disabled: Option<bool>,
}

fn is_self(p: &Principal, id: Uuid) -> bool {
    matches!(&p.kind, PrincipalKind::User { id: me, .. } if *me == id)
}

fn self_lockout(what: &str) -> ApiError {
    ApiError::new(
        ErrorKind::Conflict,
        format!("you cannot {what} your own account (another admin can)"),
    )
    .with_code("self_lockout")
}

pub(super) async fn update_user(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
    client: Client,
    id: Result<Path<String>, PathRejection>,
    JsonBody(b): JsonBody<UserPatch>,
) -> Result<Json<User>, ApiError> {
    let id = parse_id(id, "user")?;
    let user = load_user(&st, id).await?;
    let role = b.role.as_deref().map(|r| parse_role(r, true, "role")).transpose()?;
    let scope = match b.scope {
        None => None,
        Some(s) => Some(check_scope(&st, s)?),
    };
    if is_self(&p, id) {
        if role.is_some_and(|r| r != Role::Admin) {
            return Err(self_lockout("take the admin role from"));
        }
        if b.disabled == Some(true) {
            return Err(self_lockout("disable"));
        }
        if scope.as_ref().is_some_and(|s| s.is_some()) {
            return Err(self_lockout("limit the cameras of"));
        }
    }
    let password_hash = match b.password {
        Some(pw) => Some(hash(pw, &st, "password").await?),
        None => None,
    };
    let mut changed = Vec::new();
    let mut detail = serde_json::Map::new();
    if let Some(r) = role {
        changed.push("role");
        detail.insert("role".into(), r.as_str().into());
    }
    if let Some(s) = &scope {
        changed.push("scope");
        detail.insert("scope".into(), scope_json(s));
    }
    if password_hash.is_some() {
        changed.push("password");
    }
    if let Some(d) = b.disabled {
        changed.push("disabled");
        detail.insert("disabled".into(), d.into());
    }
    if changed.is_empty() {
        return Err(ApiError::bad_param(
            "body",
            "nothing to change: give role, scope, password or disabled",
        ));
    }
    detail.insert("changed".into(), changed.into());
    let audit = p
        .audit("user_update", &client)
        .target(format!("user:{}", user.username))
        .detail(detail.into());
    let update =
        UserUpdate { role, scope, password_hash, disabled: b.disabled, keep_session: None };
    let (s, now) = (st.store.clone(), st.auth.now());
    let user = blocking(move || Ok(s.update_user(id, &update, &audit, now)?))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("user {id} not found")))?;
    tracing::info!(actor = %p.actor(), username = %user.username, "user updated");
    Ok(Json(user))
}

pub(super) async fn delete_user(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
    client: Client,
    id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(id, "user")?;
    if is_self(&p, id) {
        return Err(self_lockout("delete"));
    }
    let user = load_user(&st, id).await?;
    let audit = p
        .audit("user_delete", &client)
        .target(format!("user:{}", user.username))
        .detail(serde_json::json!({ "role": user.role }));
    let (s, now) = (st.store.clone(), st.auth.now());
    if !blocking(move || Ok(s.delete_user(id, &audit, now)?)).await? {
        return Err(ApiError::not_found(format!("user {id} not found")));
    }
    tracing::info!(actor = %p.actor(), username = %user.username, "user deleted");
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------
// Tokens

#[derive(Serialize)]
pub(super) struct TokenList {
    tokens: Vec<TokenInfo>,
    /// Tokens accepted by hash from `api.tokens_sha256` (role `admin`; not listed).
    config_tokens: usize,
}

pub(super) async fn list_tokens(State(st): State<ApiState>) -> Result<Json<TokenList>, ApiError> {
    let s = st.store.clone();
    let tokens = blocking(move || Ok(s.list_tokens()?)).await?;
    Ok(Json(TokenList { tokens, config_tokens: st.config_token_hashes.len() }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewTokenBody {
    name: String,
    role: String,
    #[serde(default)]
    scope: Option<Scope>,
}

#[derive(Serialize)]
pub(super) struct NewToken {
    /// The token itself: shown only in this response.
    token: String,
    #[serde(flatten)]
    info: TokenInfo,
}

pub(super) async fn create_token(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
    client: Client,
    JsonBody(b): JsonBody<NewTokenBody>,
) -> Result<Response, ApiError> {
    let name = b.name.trim().to_string();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::bad_param("name", "`name` must be 1–100 printable characters"));
    }
    let role = parse_role(&b.role, false, "role")?;
    let scope = check_scope(&st, b.scope)?;
    let token = crate::store::try_generate_token().map_err(ApiError::internal)?;
    let hash = crate::store::hash_token(&token);
    let audit = p.audit("token_create", &client);
    let detail = serde_json::json!({ "name": name, "role": role, "scope": scope_json(&scope) });
    let (s, now, actor) = (st.store.clone(), st.auth.now(), p.actor());
    let ha1 = super::viid::platform_ha1(role, &name, &token);
    let info = blocking(move || {
        let audit = |id: Uuid| audit.target(format!("token:{id}")).detail(detail);
        let info = s.create_token(&name, &hash, role, scope.as_ref(), &actor, audit, now)?;
        if let Some(ha1) = ha1 {
            s.set_token_digest(info.id, &ha1)?;
        }
        Ok(info)
    })
    .await?;
    tracing::info!(actor = %p.actor(), token = %info.id, role = %info.role, "token created");
    let mut resp = (StatusCode::CREATED, Json(NewToken { token, info })).into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

pub(super) async fn revoke_token(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
    client: Client,
    id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(id, "token")?;
    let audit = p.audit("token_revoke", &client).target(format!("token:{id}"));
    let (s, now) = (st.store.clone(), st.auth.now());
    if !blocking(move || Ok(s.revoke_token_audited(id, &audit, now)?)).await? {
        return Err(ApiError::not_found(format!("no active token {id}")));
    }
    tracing::info!(actor = %p.actor(), token = %id, "token revoked");
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------
// Audit log

#[derive(Serialize)]
pub(super) struct AuditList {
    entries: Vec<AuditEntry>,
    next_before: Option<i64>,
}

/// Parses the audit filters (`actor`, `action`, `target`, `since`, `until`) and, unless
/// `export`, the page (`before`, `limit`); every failure names its parameter.
pub(crate) fn parse_audit_query(raw: Option<&str>, export: bool) -> Result<AuditQuery, ApiError> {
    let mut q = AuditQuery { limit: AUDIT_DEFAULT_LIMIT, ..Default::default() };
    let allowed: &[&str] = if export {
        &["actor", "action", "target", "since", "until"]
    } else {
        &["actor", "action", "target", "since", "until", "before", "limit"]
    };
    let mut seen: Vec<String> = Vec::new();
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        let (k, v) = (k.into_owned(), v.into_owned());
        if !allowed.contains(&k.as_str()) {
            return Err(ApiError::bad_param(
                &k,
                format!("unknown query parameter `{k}` (allowed: {})", allowed.join(", ")),
            ));
        }
        if seen.contains(&k) {
            return Err(ApiError::bad_param(
                &k,
                format!("query parameter `{k}` given more than once"),
            ));
        }
        if v.is_empty() {
            return Err(ApiError::bad_param(
                &k,
                format!("query parameter `{k}` must not be empty"),
            ));
        }
        match k.as_str() {
            "actor" => q.actor = Some(v),
            "action" => q.action = Some(v),
            "target" => q.target = Some(v),
            "since" => q.since = Some(parse_time(&k, &v)?),
            "until" => q.until = Some(parse_time(&k, &v)?),
            "before" => {
                q.before_seq = Some(v.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    ApiError::bad_param("before", format!("query parameter `before` must be a positive integer (a `next_before` cursor), got `{v}`"))
                })?)
            }
            _ => {
                q.limit = v.parse::<u32>().ok().filter(|n| (1..=AUDIT_MAX_LIMIT).contains(n)).ok_or_else(|| {
                    ApiError::bad_param("limit", format!("query parameter `limit` must be an integer from 1 to {AUDIT_MAX_LIMIT}, got `{v}`"))
                })?
            }
        }
        seen.push(k);
    }
    if let (Some(s), Some(u)) = (q.since, q.until) {
        if s >= u {
            return Err(ApiError::bad_param(
                "until",
                "query parameter `until` must be later than `since`",
            ));
        }
    }
    Ok(q)
}

pub(super) async fn list_audit(
    State(st): State<ApiState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<AuditList>, ApiError> {
    let q = parse_audit_query(raw.as_deref(), false)?;
    let s = st.store.clone();
    let page = blocking(move || Ok(s.audit_page(&q)?)).await?;
    Ok(Json(AuditList { entries: page.entries, next_before: page.next_before }))
}

/// Every entry matching the filters, oldest first.
async fn all_entries(st: &ApiState, raw: Option<&str>) -> Result<Vec<AuditEntry>, ApiError> {
    let mut q = parse_audit_query(raw, true)?;
    q.limit = AUDIT_MAX_LIMIT;
    let s = st.store.clone();
    blocking(move || {
        let mut all = Vec::new();
        loop {
            let page = s.audit_page(&q)?;
            all.extend(page.entries);
            if all.len() > AUDIT_EXPORT_MAX {
                return Err(ApiError::new(
                    ErrorKind::BadRequest,
                    format!("more than {AUDIT_EXPORT_MAX} audit entries match; narrow the export with `since`/`until` (or `actor`, `action`, `target`)"),
                )
                .with_code("too_many_results"));
            }
            match page.next_before {
                Some(b) => q.before_seq = Some(b),
                None => break,
            }
        }
        all.reverse();
        Ok(all)
    })
    .await
}

fn export_response(body: String, content_type: &'static str, ext: &str) -> Response {
    let fmt = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    let stamp = OffsetDateTime::now_utc().format(&fmt).unwrap_or_default();
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"audit-{stamp}.{ext}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    resp
}

pub(crate) fn audit_csv(entries: &[AuditEntry]) -> String {
    let mut out = String::from("seq,at,actor,role,action,target,address,detail\r\n");
    for e in entries {
        let at = e.at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        let detail = e.detail.as_ref().map(|d| d.to_string()).unwrap_or_default();
        let fields = [
            e.seq.to_string(),
            at,
            e.actor.clone(),
            e.role.clone().unwrap_or_default(),
            e.action.clone(),
            e.target.clone().unwrap_or_default(),
            e.address.clone().unwrap_or_default(),
            detail,
        ];
        out += &crate::csv::record(&fields);
    }
    out
}

/// `GET /api/v1/audit/export.csv`: every matching entry, oldest first (RFC 4180).
pub(super) async fn export_csv(
    State(st): State<ApiState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let entries = all_entries(&st, raw.as_deref()).await?;
    Ok(export_response(audit_csv(&entries), "text/csv; charset=utf-8", "csv"))
}

/// `GET /api/v1/audit/export.jsonl`: every matching entry, oldest first, one JSON object a line.
pub(super) async fn export_jsonl(
    State(st): State<ApiState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let entries = all_entries(&st, raw.as_deref()).await?;
    let mut body = String::new();
    for e in &entries {
        body += &serde_json::to_string(e).map_err(ApiError::internal)?;
        body.push('\n');
    }
    Ok(export_response(body, "application/x-ndjson", "jsonl"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_query_parameters() {
        let q = parse_audit_query(Some("actor=user%3Aalice&action=login&limit=5&before=9"), false)
            .unwrap();
        assert_eq!(
            (q.actor.as_deref(), q.action.as_deref(), q.limit, q.before_seq),
            (Some("user:alice"), Some("login"), 5, Some(9))
        );
        for (raw, param) in [
            ("limit=0", "limit"),
            ("before=x", "before"),
            ("who=x", "who"),
            ("actor=", "actor"),
            ("since=x", "since"),
        ] {
            assert_eq!(
                parse_audit_query(Some(raw), false).unwrap_err().parameter.as_deref(),
                Some(param),
                "{raw}"
            );
        }
        assert_eq!(
            parse_audit_query(Some("limit=5"), true).unwrap_err().parameter.as_deref(),
            Some("limit")
        );
    }
}
