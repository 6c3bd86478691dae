//! Who is calling and what they may do (docs/api.md "Authentication and access control").
//!
//! Every operation in `routes()` declares an [`Access`]; `router()` puts [`authorize`] in
//! front of each non-public one. It finds the [`Principal`] — from `Authorization: Bearer`
//! (a database token, or a config token hash) or from the session cookie — answers 401
//! without one and 403 when the role lacks the permission (or a scoped principal asks for
//! something box-wide), and hands the principal to the handler, which checks the camera
//! scope of what it serves (out of scope = 404, as if it did not exist).
//!
//! Also here: login (with failed-login lockout), logout, `me` and the password change.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{blocking, ApiError, ApiState, ErrorKind};
use crate::auth::{self as access, PasswordWork, Permission, Role, Scope};
use crate::clock::{Clock, SystemClock};
use crate::config::{AuthConfig, CookieSecure};
use crate::health::Registry;
use crate::store::auth::{LockoutPolicy, LoginKeys, LoginRefusal, NewAudit, User, UserUpdate};
use crate::store::{self, CameraFilter};
use crate::types::Event;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "gw_session";

/// `[auth]`, the clock sessions and lockouts are measured with, and the bounded password
/// work (argon2id) of logins and password changes.
#[derive(Clone)]
pub struct AuthSettings {
    pub config: AuthConfig,
    pub clock: Arc<dyn Clock>,
    pub passwords: Arc<PasswordWork>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings::new(AuthConfig::default(), Arc::new(SystemClock))
    }
}

impl AuthSettings {
    pub fn new(config: AuthConfig, clock: Arc<dyn Clock>) -> Self {
        let passwords = Arc::new(PasswordWork::new(
            config.password_checks_parallel,
            config.password_checks_queued,
        ));
        AuthSettings { config, clock, passwords }
    }
    pub fn from_config(cfg: &crate::config::Config) -> Self {
        AuthSettings::new(cfg.auth.clone(), Arc::new(SystemClock))
    }
    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }
    pub fn lockout_policy(&self) -> LockoutPolicy {
        let secs = |s: u64| time::Duration::seconds(s.min(i64::MAX as u64) as i64);
        LockoutPolicy {
            max_failures: self.config.max_failed_logins,
            max_address_failures: self.config.max_failed_logins_per_address,
            window: secs(self.config.failed_login_window_secs),
            lockout: secs(self.config.lockout_secs),
            slowdown_max: secs(self.config.slowdown_max_secs),
        }
    }
}

/// The 503 of password work that is refused (too many logins at once).
fn busy() -> ApiError {
    ApiError::new(
        ErrorKind::Unavailable,
        "too many logins are being checked at once; retry in a moment",
    )
    .with_code("busy")
    .retry_after(1)
}

/// What an operation needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Anyone (health, the OpenAPI document, login).
    Public,
    /// Any user or token (who am I, logout, own password).
    Authenticated,
    /// A role with this permission; box-wide permissions also need an unscoped principal.
    Needs(Permission),
}

impl Access {
    /// As written in docs/openapi.json (`x-access`).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Access::Public => "public",
            Access::Authenticated => "authenticated",
            Access::Needs(p) => p.as_str(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrincipalKind {
    User {
        id: Uuid,
        username: String,
    },
    Token {
        id: Uuid,
        name: String,
    },
    /// A token whose SHA-256 is in `api.tokens_sha256` (role `admin`, every camera).
    ConfigToken {
        hash_prefix: String,
    },
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub kind: PrincipalKind,
    pub role: Role,
    /// `None`: every camera.
    pub scope: Option<Scope>,
    /// SHA-256 of the session id and its expiry, for cookie sessions.
    pub session: Option<(String, OffsetDateTime)>,
}

impl Principal {
    /// The audit log's name for this principal.
    pub fn actor(&self) -> String {
        match &self.kind {
            PrincipalKind::User { username, .. } => format!("user:{username}"),
            PrincipalKind::Token { id, .. } => format!("token:{id}"),
            PrincipalKind::ConfigToken { hash_prefix } => format!("config-token:{hash_prefix}"),
        }
    }

    /// Shown as `reviewed_by`: the username, or `token:<name>`.
    pub fn display_name(&self) -> String {
        match &self.kind {
            PrincipalKind::User { username, .. } => username.clone(),
            PrincipalKind::Token { name, .. } => format!("token:{name}"),
            PrincipalKind::ConfigToken { hash_prefix } => format!("config-token:{hash_prefix}"),
        }
    }

    pub(crate) fn audit(&self, action: &'static str, client: &Client) -> NewAudit {
        NewAudit::new(self.actor(), Some(self.role), action).address(client.address.clone())
    }

    /// The query filter of this principal's scope (`None`: every camera): the listed
    /// cameras plus the configured cameras located in a listed grid cell.
    pub(crate) fn filter(&self, registry: &Registry) -> Option<CameraFilter> {
        let scope = self.scope.as_ref()?;
        let mut cameras = scope.cameras.clone();
        for c in registry.all() {
            if c.grid_cell.as_ref().is_some_and(|g| scope.grid_cells.contains(g))
                && !cameras.contains(&c.id)
            {
                cameras.push(c.id);
            }
        }
        Some(CameraFilter { cameras, grid_cells: scope.grid_cells.clone() })
    }

    pub(crate) fn sees_camera(&self, registry: &Registry, camera: &str) -> bool {
        self.filter(registry).is_none_or(|f| f.allows_camera(camera))
    }

    /// An event is in scope when its camera is, or its grid cell is listed.
    pub(crate) fn sees_event(&self, registry: &Registry, ev: &Event) -> bool {
        match self.filter(registry) {
            None => true,
            Some(f) => {
                f.allows_camera(&ev.camera_id)
                    || ev.grid_cell.as_ref().is_some_and(|g| f.grid_cells.contains(g))
            }
        }
    }
}

/// The client of a request: its address (for lockout and the audit log) and whether it
/// came over TLS (for the cookie's `Secure` flag).
#[derive(Debug, Clone, Default)]
pub(crate) struct Client {
    pub address: Option<String>,
    pub tls: bool,
}

impl Client {
    /// Proxy headers count only from `auth.trusted_proxies` (see
    /// [`crate::config::proxies::forwarded_client`]).
    /// `over_tls`: the connection itself is TLS (served by this process).
    fn of(
        peer: Option<SocketAddr>,
        over_tls: bool,
        headers: &HeaderMap,
        cfg: &crate::config::AuthConfig,
    ) -> Client {
        let trusted: &[_] = if cfg.trust_proxy_headers { &cfg.trusted_proxies } else { &[] };
        // A value that is not text is one entry that is not an address (it stops the walk).
        let xff = headers.get_all("x-forwarded-for").iter().map(|v| v.to_str().unwrap_or("?"));
        let f = crate::config::proxies::forwarded_client(peer.map(|a| a.ip()), xff, trusted);
        let proto = headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok());
        Client {
            address: f.client.map(|ip| ip.to_string()),
            // Our own TLS, or the nearest proxy's word: the last element.
            tls: over_tls
                || f.via_trusted_proxy
                    && proto
                        .and_then(|p| p.rsplit(',').next())
                        .is_some_and(|p| p.trim().eq_ignore_ascii_case("https")),
        }
    }
}

impl FromRequestParts<ApiState> for Client {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, st: &ApiState) -> Result<Self, ApiError> {
        let addr = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
        let over_tls = parts.extensions.get::<super::conn::TlsConn>().is_some();
        Ok(Client::of(addr, over_tls, &parts.headers, &st.auth.config))
    }
}

/// A JSON request body: `Content-Type: application/json` is required (a cross-site form
/// cannot send it), and a field that does not parse is a 400 naming it.
pub(crate) struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<ApiState> for JsonBody<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, st: &ApiState) -> Result<Self, ApiError> {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return Err(ApiError::new(
                ErrorKind::UnsupportedMediaType,
                "the request body must be JSON (`Content-Type: application/json`)",
            ));
        }
        let bytes = Bytes::from_request(req, st).await.map_err(|e| {
            ApiError::bad_param("body", format!("cannot read the request body: {}", e.body_text()))
        })?;
        let de = &mut serde_json::Deserializer::from_slice(&bytes);
        serde_path_to_error::deserialize(de).map(JsonBody).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." { "body".to_string() } else { path };
            ApiError::bad_param(
                &field,
                format!("request body, field `{field}`: {}", e.into_inner()),
            )
        })
    }
}

/// For `PATCH` bodies: an absent field is `None`, `null` is `Some(None)`.
pub(crate) fn double_option<'de, T, D>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    Option::<T>::deserialize(de).map(Some)
}

// ---------------------------------------------------------------------------------------
// Finding the principal

/// Extracts the token of `Authorization: Bearer <token>`.
fn bearer(value: &HeaderValue) -> Result<&str, ApiError> {
    let value =
        value.to_str().map_err(|_| ApiError::unauthorized("malformed Authorization header"))?;
    let (scheme, token) = value.trim().split_once(' ').unwrap_or((value, ""));
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(ApiError::unauthorized("Authorization header must be `Bearer <token>`"));
    }
    Ok(token)
}

/// Compares two strings in time independent of where they differ.
fn ct_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// Who is calling: a bearer token (if the header is present) or else the session cookie.
pub(crate) async fn authenticate(
    st: &ApiState,
    headers: &HeaderMap,
) -> Result<Principal, ApiError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let hash = store::hash_token(bearer(value)?);
        let in_config = st
            .config_token_hashes
            .iter()
            .fold(false, |ok, h| ok | ct_eq(&h.to_ascii_lowercase(), &hash));
        if in_config {
            return Ok(Principal {
                kind: PrincipalKind::ConfigToken { hash_prefix: hash[..8].to_string() },
                role: Role::Admin,
                scope: None,
                session: None,
            });
        }
        let s = st.store.clone();
        let token = blocking(move || Ok(s.active_token(&hash)?)).await?;
        return match token {
            Some(t) => Ok(Principal {
                kind: PrincipalKind::Token { id: t.id, name: t.name },
                role: t.role,
                scope: t.scope,
                session: None,
            }),
            None => Err(ApiError::unauthorized("invalid or revoked token")),
        };
    }
    if let Some(sid) = cookie(headers, SESSION_COOKIE) {
        let hash = store::hash_token(sid);
        let (s, now) = (st.store.clone(), st.auth.now());
        let h = hash.clone();
        return match blocking(move || Ok(s.session_user(&h, now)?)).await? {
            Some((u, expires)) => Ok(Principal {
                kind: PrincipalKind::User { id: u.id, username: u.username },
                role: u.role,
                scope: u.scope,
                session: Some((hash, expires)),
            }),
            None => {
                Err(ApiError::unauthorized("the session has expired or was ended; log in again")
                    .with_code("session_expired"))
            }
        };
    }
    Err(ApiError::unauthorized(
        "missing credentials: send `Authorization: Bearer <token>`, or log in (POST /api/v1/auth/login) for a session cookie",
    ))
}

/// State of the per-operation gate.
#[derive(Clone)]
pub(crate) struct Gate {
    pub st: ApiState,
    pub access: Access,
}

fn permission_text(p: Permission) -> &'static str {
    match p {
        Permission::See => "see cameras and events",
        Permission::Review => "review events",
        Permission::Lock => "lock evidence against retention",
        Permission::Unlock => "release evidence locks",
        Permission::Monitor => "read the box's operational status",
        Permission::Configure => "configure cameras, zones and rules",
        Permission::Administer => "manage users, tokens and the audit log",
        Permission::OpenData => "read the open-data statistics",
        Permission::ViewUnmasked => "see stills without masking",
    }
}

/// The middleware in front of every non-public operation.
pub(crate) async fn authorize(
    State(gate): State<Gate>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let p = authenticate(&gate.st, req.headers()).await?;
    if let Access::Needs(perm) = gate.access {
        if !p.role.can(perm) {
            let roles: Vec<&str> =
                Role::ALL.into_iter().filter(|r| r.can(perm)).map(Role::as_str).collect();
            return Err(ApiError::forbidden(format!(
                "role `{}` may not {} (needs one of: {})",
                p.role,
                permission_text(perm),
                roles.join(", ")
            )));
        }
        if perm.box_wide() && p.scope.is_some() {
            return Err(ApiError::forbidden(format!(
                "access limited to {} cannot {}: that needs access to every camera",
                Scope::describe(p.scope.as_ref()),
                permission_text(perm)
            )));
        }
    }
    req.extensions_mut().insert(p);
    Ok(next.run(req).await)
}

// ---------------------------------------------------------------------------------------
// Login, logout, me, password

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LoginBody {
    username: String,
    password: String,
}

#[derive(Serialize)]
struct LoginReply {
    user: User,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
}

fn fmt_time(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// The 429 of a lock or slowdown in force on `key` until `until`.
fn locked(key: &str, until: OffsetDateTime, now: OffsetDateTime) -> ApiError {
    let secs = (until - now).as_seconds_f64().ceil().max(1.0) as u64;
    let t = fmt_time(until);
    let (code, message) = match LoginKeys::describe(key) {
        ("account", name, Some(addr)) => (
            "account_locked",
            format!("account `{name}` is locked from address {addr} after too many failed logins until {t}"),
        ),
        ("account", name, None) => (
            "account_slowed",
            format!(
                "account `{name}` is slowed, not locked, after failed logins from several \
                 addresses: its next password check is at {t}"
            ),
        ),
        ("address", addr, _) => (
            "address_locked",
            format!("address {addr} is locked after too many failed logins until {t}"),
        ),
        _ => ("locked", format!("{key} is locked until {t}")),
    };
    ApiError::new(ErrorKind::TooManyRequests, format!("{message} (retry in {secs} s)"))
        .with_code(code)
        .retry_after(secs)
        .with_field("locked_until", t.into())
}

/// The keys a login on `username` from `client` counts against (a name that cannot exist
/// gets none of its own, so junk names cannot fill the table).
fn lock_keys(username: &str, client: &Client) -> LoginKeys {
    let name = access::validate_username(username).is_ok().then_some(username);
    LoginKeys::new(name, client.address.as_deref())
}

/// The 429 of a refused attempt.
fn refused(r: LoginRefusal, now: OffsetDateTime) -> ApiError {
    match r {
        LoginRefusal::Locked { key, until } | LoginRefusal::Slowed { key, until } => {
            locked(&key, until, now)
        }
        LoginRefusal::Pending { key } => {
            let what = match LoginKeys::describe(&key) {
                ("account", name, _) => format!("for account `{name}` from this address"),
                _ => "from this address".to_string(),
            };
            ApiError::new(
                ErrorKind::TooManyRequests,
                format!("every login attempt allowed {what} is being checked; retry in a moment"),
            )
            .with_code("too_many_attempts")
            .retry_after(1)
        }
    }
}

/// Counts a login attempt before its password is checked (atomically, so parallel guesses
/// cannot all be checked), or refuses it.
async fn begin_attempt(
    st: &ApiState,
    keys: &LoginKeys,
    username: &str,
    client: &Client,
) -> Result<(), ApiError> {
    let (s, k, now, policy) =
        (st.store.clone(), keys.clone(), st.auth.now(), st.auth.lockout_policy());
    if let Err(r) = blocking(move || Ok(s.login_begin(&k, &policy, now)?)).await? {
        tracing::warn!(
            username = %access::loggable(username),
            address = client.address.as_deref().unwrap_or("-"),
            refusal = ?r,
            "login refused"
        );
        return Err(refused(r, now));
    }
    Ok(())
}

/// Settles a failed attempt: audits it and any lock it causes, and returns the error to
/// answer with.
async fn failed_login(
    st: &ApiState,
    keys: LoginKeys,
    username: &str,
    reason: &'static str,
    client: &Client,
    wrong: ApiError,
) -> ApiError {
    let now = st.auth.now();
    let policy = st.auth.lockout_policy();
    let name = access::loggable(username);
    tracing::warn!(
        username = %name,
        address = client.address.as_deref().unwrap_or("-"),
        reason,
        "failed login"
    );
    let s = st.store.clone();
    let failed = NewAudit::new("anonymous", None, "login_failed")
        .target(format!("user:{name}"))
        .detail(serde_json::json!({ "reason": reason }))
        .address(client.address.clone());
    let res = blocking(move || {
        s.audit(&failed, now)?;
        Ok(s.login_end(&keys, &policy, false, now)?)
    })
    .await;
    let newly_locked = match res {
        Ok(l) => l,
        Err(e) => return e,
    };
    let mut answer = wrong;
    for (key, until) in &newly_locked {
        tracing::warn!(key, until = %fmt_time(*until), "login locked after too many failures");
        let limit = match LoginKeys::describe(key).0 {
            "address" => policy.max_address_failures,
            _ => policy.max_failures,
        };
        let entry = NewAudit::new("anonymous", None, "login_lockout")
            .target(key.clone())
            .detail(serde_json::json!({
                "until": fmt_time(*until),
                "failures": limit,
                "window_secs": st.auth.config.failed_login_window_secs,
            }))
            .address(client.address.clone());
        let s = st.store.clone();
        if let Err(e) = blocking(move || Ok(s.audit(&entry, now)?)).await {
            return e;
        }
        answer = locked(key, *until, now);
    }
    answer
}

/// Checks a password with the bounded password work; an unknown user costs the same time.
/// `Err(reason)` on failure. When the work is busy, the attempt is taken back and the
/// answer is a 503.
async fn verify(
    st: &ApiState,
    keys: &LoginKeys,
    creds: Option<(User, String)>,
    password: String,
) -> Result<Result<User, &'static str>, ApiError> {
    let work = &st.auth.passwords;
    let checked = match creds {
        Some((u, hash)) => work.verify(hash, password).await.map(|ok| (Some(u), ok)),
        None => work.burn(password).await.map(|_| (None, false)),
    };
    match checked {
        Err(access::Busy) => {
            let (s, k) = (st.store.clone(), keys.clone());
            blocking(move || Ok(s.login_cancel(&k)?)).await?;
            tracing::warn!("login refused: password work busy");
            Err(busy())
        }
        Ok((None, _)) => Ok(Err("unknown user")),
        Ok((Some(_), false)) => Ok(Err("wrong password")),
        Ok((Some(u), true)) if u.disabled => Ok(Err("account disabled")),
        Ok((Some(u), true)) => Ok(Ok(u)),
    }
}

/// Refuses a username or password longer than any that can be valid, naming the field,
/// before either is logged or checked.
fn check_lengths(fields: &[(&str, &str, usize)]) -> Result<(), ApiError> {
    for (field, value, max) in fields {
        if value.len() > *max {
            return Err(ApiError::bad_param(
                field,
                format!("`{field}` is too long: at most {max} bytes"),
            )
            .with_code("too_long"));
        }
    }
    Ok(())
}

/// Hashes a new password with the bounded password work (503 when it is busy).
pub(crate) async fn hash_password(st: &ApiState, password: String) -> Result<String, ApiError> {
    match st.auth.passwords.hash(password).await {
        Ok(h) => h.map_err(ApiError::internal),
        Err(access::Busy) => Err(busy()),
    }
}

fn session_cookie(
    st: &ApiState,
    client: &Client,
    value: &str,
    max_age: u64,
) -> Result<HeaderValue, ApiError> {
    let secure = match st.auth.config.cookie_secure {
        CookieSecure::Always => true,
        CookieSecure::Never => false,
        CookieSecure::Auto => client.tls,
    };
    let c = format!(
        "{SESSION_COOKIE}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    );
    HeaderValue::from_str(&c).map_err(|e| ApiError::internal(format!("session cookie: {e}")))
}

/// `POST /api/v1/auth/login`
pub(super) async fn login(
    State(st): State<ApiState>,
    client: Client,
    JsonBody(body): JsonBody<LoginBody>,
) -> Result<Response, ApiError> {
    let username = body.username.trim().to_string();
    check_lengths(&[
        ("username", &username, access::MAX_USERNAME_BYTES),
        ("password", &body.password, access::MAX_PASSWORD_BYTES),
    ])?;
    let keys = lock_keys(&username, &client);
    begin_attempt(&st, &keys, &username, &client).await?;
    let s = st.store.clone();
    let name = username.clone();
    let creds = if access::validate_username(&username).is_ok() {
        blocking(move || Ok(s.user_credentials(&name)?)).await?
    } else {
        None
    };
    let wrong =
        ApiError::unauthorized("wrong username or password").with_code("invalid_credentials");
    let user = match verify(&st, &keys, creds, body.password).await? {
        Ok(u) => u,
        Err(reason) => return Err(failed_login(&st, keys, &username, reason, &client, wrong).await),
    };
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw)
        .map_err(|e| ApiError::internal(format!("OS random generator failed: {e}")))?;
    let sid = hex::encode(raw);
    let hash = store::hash_token(&sid);
    let now = st.auth.now();
    let ttl = st.auth.config.session_ttl_secs;
    let expires_at = now + time::Duration::seconds(ttl as i64);
    let audit = NewAudit::new(format!("user:{}", user.username), Some(user.role), "login")
        .target(format!("user:{}", user.username))
        .detail(serde_json::json!({ "expires_at": fmt_time(expires_at) }))
        .address(client.address.clone());
    let (s, uid, addr) = (st.store.clone(), user.id, client.address.clone());
    let policy = st.auth.lockout_policy();
    let user = blocking(move || {
        s.login_end(&keys, &policy, true, now)?;
        s.create_session(&hash, uid, expires_at, addr.as_deref(), &audit, now)?;
        s.user(uid)?.ok_or_else(|| ApiError::internal("user vanished during login"))
    })
    .await?;
    tracing::info!(username = %user.username, role = %user.role, address = client.address.as_deref().unwrap_or("-"), "login");
    let mut resp = Json(LoginReply { user, expires_at }).into_response();
    resp.headers_mut().insert(header::SET_COOKIE, session_cookie(&st, &client, &sid, ttl)?);
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// `POST /api/v1/auth/logout`: ends the session of the cookie (if any) and clears the cookie.
pub(super) async fn logout(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
    client: Client,
) -> Result<Response, ApiError> {
    if let Some((hash, _)) = &p.session {
        let audit = p.audit("logout", &client).target(p.actor());
        let (s, h, now) = (st.store.clone(), hash.clone(), st.auth.now());
        blocking(move || Ok(s.end_session(&h, &audit, now)?)).await?;
        tracing::info!(actor = %p.actor(), "logout");
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut().insert(header::SET_COOKIE, session_cookie(&st, &client, "", 0)?);
    Ok(resp)
}

#[derive(Serialize)]
pub(crate) struct Me {
    /// `user`, `token` or `config_token`.
    kind: &'static str,
    /// User or token id; `null` for a config token.
    id: Option<Uuid>,
    /// Username, token name, or `config-token:<hash prefix>`.
    name: String,
    role: Role,
    permissions: Vec<Permission>,
    scope: Option<Scope>,
    #[serde(with = "time::serde::rfc3339::option")]
    session_expires_at: Option<OffsetDateTime>,
}

/// `GET /api/v1/auth/me`
pub(super) async fn me(Extension(p): Extension<Principal>) -> Json<Me> {
    let (kind, id, name) = match &p.kind {
        PrincipalKind::User { id, username } => ("user", Some(*id), username.clone()),
        PrincipalKind::Token { id, name } => ("token", Some(*id), name.clone()),
        PrincipalKind::ConfigToken { .. } => ("config_token", None, p.display_name()),
    };
    let mut permissions = p.role.permissions();
    if p.scope.is_some() {
        permissions.retain(|perm| !perm.box_wide());
    }
    Json(Me {
        kind,
        id,
        name,
        role: p.role,
        permissions,
        scope: p.scope.clone(),
        session_expires_at: p.session.as_ref().map(|s| s.1),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PasswordBody {
    current_password: String,
    new_password: String,
}

/// `POST /api/v1/auth/password`: a user changes their own password; their other sessions end.
pub(super) async fn change_password(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
    client: Client,
    JsonBody(body): JsonBody<PasswordBody>,
) -> Result<StatusCode, ApiError> {
    let PrincipalKind::User { id, username } = &p.kind else {
        return Err(ApiError::bad_param(
            "body",
            "only users have a password; a token is replaced by creating a new one",
        )
        .with_code("not_a_user"));
    };
    let (id, username) = (*id, username.clone());
    check_lengths(&[
        ("current_password", &body.current_password, access::MAX_PASSWORD_BYTES),
        ("new_password", &body.new_password, access::MAX_PASSWORD_BYTES),
    ])?;
    access::check_password(&body.new_password, st.auth.config.min_password_len)
        .map_err(|m| ApiError::bad_param("new_password", m))?;
    let keys = lock_keys(&username, &client);
    begin_attempt(&st, &keys, &username, &client).await?;
    let s = st.store.clone();
    let name = username.clone();
    let creds = blocking(move || Ok(s.user_credentials(&name)?)).await?;
    if let Err(reason) = verify(&st, &keys, creds, body.current_password).await? {
        let wrong = ApiError::bad_param("current_password", "the current password is wrong")
            .with_code("wrong_password");
        return Err(failed_login(&st, keys, &username, reason, &client, wrong).await);
    }
    let (s, k, policy, now) = (st.store.clone(), keys, st.auth.lockout_policy(), st.auth.now());
    blocking(move || Ok(s.login_end(&k, &policy, true, now)?)).await?;
    let hash = hash_password(&st, body.new_password).await?;
    let update = UserUpdate {
        password_hash: Some(hash),
        keep_session: p.session.as_ref().map(|s| s.0.clone()),
        ..Default::default()
    };
    let audit = p.audit("password_change", &client).target(format!("user:{username}"));
    let (s, now) = (st.store.clone(), st.auth.now());
    blocking(move || Ok(s.update_user(id, &update, &audit, now)?))
        .await?
        .ok_or_else(|| ApiError::unauthorized("the user no longer exists"))?;
    tracing::info!(username, "password changed");
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_and_client_addresses() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; gw_session=abc ; b=2"));
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "gw"), None);
        let addr: SocketAddr = "10.0.0.9:5555".parse().unwrap();
        let mut fwd = HeaderMap::new();
        fwd.insert("x-forwarded-for", HeaderValue::from_static("1.2.3.4, 192.168.1.20"));
        fwd.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        let cfg = |trust: bool, proxies: &[&str]| crate::config::AuthConfig {
            trust_proxy_headers: trust,
            trusted_proxies: proxies.iter().map(|p| p.parse().unwrap()).collect(),
            ..Default::default()
        };
        let c = Client::of(Some(addr), false, &fwd, &cfg(false, &[]));
        assert_eq!(
            (c.address.as_deref(), c.tls),
            (Some("10.0.0.9"), false),
            "proxy headers ignored by default"
        );
        let c = Client::of(Some(addr), false, &fwd, &cfg(true, &["10.0.0.9"]));
        assert_eq!(
            (c.address.as_deref(), c.tls),
            (Some("192.168.1.20"), true),
            "the proxy's own entry is the last"
        );
        let c = Client::of(Some(addr), false, &fwd, &cfg(true, &["10.0.0.8"]));
        assert_eq!(
            (c.address.as_deref(), c.tls),
            (Some("10.0.0.9"), false),
            "a peer that is not a listed proxy is the client"
        );
        assert_eq!(
            Client::of(None, false, &HeaderMap::new(), &cfg(true, &["10.0.0.9"])).address,
            None
        );
    }

    #[test]
    fn lock_messages_name_what_is_locked_and_until_when() {
        let now = time::macros::datetime!(2026-05-01 10:00 UTC);
        let keys = LoginKeys::new(Some("Alice"), Some("10.0.0.9"));
        let e = locked(keys.pair.as_deref().unwrap(), now + time::Duration::minutes(15), now);
        assert_eq!((e.code(), e.retry_after_secs), ("account_locked", Some(900)));
        assert!(
            e.message.contains("account `alice` is locked from address 10.0.0.9")
                && e.message.contains("2026-05-01T10:15:00Z"),
            "{}",
            e.message
        );
        assert_eq!(e.extra["locked_until"], "2026-05-01T10:15:00Z");
        let e = locked(keys.address.as_deref().unwrap(), now + time::Duration::seconds(1), now);
        assert_eq!(e.code(), "address_locked");
        assert!(e.message.contains("address 10.0.0.9"), "{}", e.message);
        let e = locked(keys.account.as_deref().unwrap(), now + time::Duration::seconds(2), now);
        assert_eq!((e.code(), e.retry_after_secs), ("account_slowed", Some(2)));
        assert!(e.message.contains("slowed, not locked"), "{}", e.message);
    }
}
