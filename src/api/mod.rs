//! HTTP API (axum 0.8). See docs/api.md and docs/openapi.json.
//!
//! Everything except `health`, `openapi.json` and `auth/login` needs a principal: a bearer
//! token (`Authorization: Bearer <token>`) or a session cookie from `auth/login`. Each
//! operation declares what it needs (`routes()`, checked by `auth::authorize`); handlers
//! check the camera scope of what they serve. Every error, including unknown routes and
//! malformed parameters, is JSON: `{"error":{"code":"…","message":"…"}}`.

#[cfg(test)]
mod access_tests;
mod admin;
pub(crate) mod auth;
mod conn;
#[cfg(test)]
mod conn_tests;
mod console;
mod error;
mod locks;
mod media;
mod open;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tls_tests;
pub(crate) mod uplink;
mod viid;

use std::future::Future;
use std::time::Instant;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, Request, State};
use axum::handler::Handler;
use axum::http::{header, HeaderValue, Method, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

pub use auth::{AuthSettings, Principal, PrincipalKind, SESSION_COOKIE};
pub use conn::{
    fit_to_fds, open_fds, raise_fd_limit, redirect_router, serve_tls, serve_with, HttpLimits,
    API_BLOCKING_THREADS,
};
pub use error::{ApiError, ErrorKind};
/// The `Range` header parser, public for the fuzz tests (tests/fuzz.rs).
#[doc(hidden)]
pub use media::{parse_range, ByteRange};
pub use media::{Exports, MediaSettings};
pub use viid::{platform_ha1, REALM as VIID_REALM};

use crate::auth::Permission;
use crate::health::{CameraHealth, CameraState, Registry};
use crate::store::{
    self, Bucket, CountQuery, CountRow, EventQuery, OccupancyQuery, OccupancyRow, Store,
};
use crate::types::{Event, Review, Severity};
use auth::{Access, Client, JsonBody};

/// The OpenAPI 3.1 description of this API, served at `/api/v1/openapi.json`.
pub const OPENAPI_JSON: &str = include_str!("../../docs/openapi.json");

/// Default and maximum page sizes of `GET /api/v1/events`.
pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 500;
/// JPEG quality of `latest.jpg`.
const LATEST_QUALITY: u8 = 80;
/// JPEG quality of a masked snapshot (re-encoded after masking).
const SNAPSHOT_QUALITY: u8 = 85;
/// Longest review note (characters).
pub const MAX_NOTE_CHARS: usize = 2000;

#[derive(Clone)]
pub struct ApiState {
    pub store: Store,
    pub registry: Registry,
    pub box_id: String,
    /// SHA-256 hex of tokens accepted from the config (in addition to the database's);
    /// they have role `admin` and every camera.
    pub config_token_hashes: Vec<String>,
    pub started_at: OffsetDateTime,
    /// Record settings and export limit for the media routes.
    pub media: MediaSettings,
    /// `[auth]`: sessions and lockout, and the clock they use.
    pub auth: AuthSettings,
    /// `[open_data]`: the smallest count the open-data endpoints publish.
    pub open_data: crate::config::OpenDataConfig,
}

/// One operation: a method on a path, what it needs, its handler.
pub(crate) struct Op {
    #[cfg_attr(not(test), allow(dead_code))]
    pub method: Method,
    pub access: Access,
    pub handler: MethodRouter<ApiState>,
    pub kind: OpKind,
}

/// How long an operation may take (docs/security.md "Connection limits").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpKind {
    /// Answered within `request_timeout`.
    Request,
    /// An event stream or long-poll: not timed (it ends itself), at most
    /// `max_streams_per_principal` at once per user or token.
    Stream,
    /// A media download: not timed; a client that stops reading is dropped after
    /// `send_timeout`.
    Download,
}

impl Op {
    fn stream(self) -> Op {
        Op { kind: OpKind::Stream, ..self }
    }
    fn download(self) -> Op {
        Op { kind: OpKind::Download, ..self }
    }
}

/// One served path and its operations.
pub(crate) struct RouteDef {
    pub path: &'static str,
    pub ops: Vec<Op>,
}

fn op<H, T>(method: Method, access: Access, handler: H) -> Op
where
    H: Handler<T, ApiState>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone()).expect("a method axum can route");
    Op { method, access, handler: on(filter, handler), kind: OpKind::Request }
}

/// The single list of routes and their access rules; `router()` serves exactly these
/// (tests check docs/openapi.json and the authorization matrix against it).
pub(crate) fn routes() -> Vec<RouteDef> {
    use Access::{Authenticated, Needs, Public};
    use Permission::{Administer, Lock, Monitor, OpenData, Review as Rev, See, Unlock};
    let (get, post, patch, delete) = (Method::GET, Method::POST, Method::PATCH, Method::DELETE);
    let r = |path, ops| RouteDef { path, ops };
    vec![
        r("/api/v1/health", vec![op(get.clone(), Public, health)]),
        r("/api/v1/openapi.json", vec![op(get.clone(), Public, openapi)]),
        r("/api/v1/cameras", vec![op(get.clone(), Needs(See), list_cameras)]),
        r("/api/v1/cameras/{id}", vec![op(get.clone(), Needs(See), get_camera)]),
        r("/api/v1/cameras/{id}/latest.jpg", vec![op(get.clone(), Needs(See), latest_jpg)]),
        r("/api/v1/events", vec![op(get.clone(), Needs(See), list_events)]),
        r("/api/v1/events/stream", vec![op(get.clone(), Needs(See), uplink::stream).stream()]),
        r("/api/v1/events/{id}", vec![op(get.clone(), Needs(See), get_event)]),
        r("/api/v1/events/{id}/snapshot.jpg", vec![op(get.clone(), Needs(See), snapshot_jpg)]),
        r("/api/v1/events/{id}/review", vec![op(post.clone(), Needs(Rev), review_event)]),
        r("/api/v1/stats/counts", vec![op(get.clone(), Needs(See), list_counts)]),
        r("/api/v1/stats/occupancy", vec![op(get.clone(), Needs(See), list_occupancy)]),
        // Open data (api/open.rs): aggregated per grid cell × hour × class, small cells withheld.
        r("/api/v1/open/counts", vec![op(get.clone(), Needs(OpenData), open::counts)]),
        r("/api/v1/open/occupancy", vec![op(get.clone(), Needs(OpenData), open::occupancy)]),
        r(
            "/api/v1/events/{id}/clip.mp4",
            vec![op(get.clone(), Needs(See), media::event_clip).download()],
        ),
        r("/api/v1/recordings", vec![op(get.clone(), Needs(See), media::list_recordings)]),
        r(
            "/api/v1/recordings/export.mp4",
            vec![op(get.clone(), Needs(See), media::export_mp4).download()],
        ),
        r(
            "/api/v1/recordings/{id}/segment.mp4",
            vec![op(get.clone(), Needs(See), media::segment_mp4).download()],
        ),
        // Evidence (api/locks.rs, api/media.rs): locks, storage status, signed packages.
        r(
            "/api/v1/locks",
            vec![
                op(get.clone(), Needs(See), locks::list_locks),
                op(post.clone(), Needs(Lock), locks::create_lock),
            ],
        ),
        r("/api/v1/locks/{id}/unlock", vec![op(post.clone(), Needs(Unlock), locks::unlock)]),
        r("/api/v1/storage", vec![op(get.clone(), Needs(Monitor), locks::storage_status)]),
        r("/api/v1/evidence/key", vec![op(get.clone(), Needs(See), locks::key)]),
        r(
            "/api/v1/events/{id}/evidence.tar",
            vec![op(get.clone(), Needs(See), media::event_evidence).download()],
        ),
        r(
            "/api/v1/recordings/evidence.tar",
            vec![op(get.clone(), Needs(See), media::range_evidence).download()],
        ),
        // Uplink (api/uplink.rs): pull feed, delivery status, Prometheus metrics.
        r("/api/v1/feed", vec![op(get.clone(), Needs(See), uplink::feed).stream()]),
        r("/api/v1/uplink", vec![op(get.clone(), Needs(Monitor), uplink::status)]),
        r("/metrics", vec![op(get.clone(), Needs(Monitor), uplink::metrics)]),
        // Sessions (api/auth.rs).
        r("/api/v1/auth/login", vec![op(post.clone(), Public, auth::login)]),
        r("/api/v1/auth/logout", vec![op(post.clone(), Authenticated, auth::logout)]),
        r("/api/v1/auth/me", vec![op(get.clone(), Authenticated, auth::me)]),
        r("/api/v1/auth/password", vec![op(post.clone(), Authenticated, auth::change_password)]),
        // Administration (api/admin.rs).
        r(
            "/api/v1/users",
            vec![
                op(get.clone(), Needs(Administer), admin::list_users),
                op(post.clone(), Needs(Administer), admin::create_user),
            ],
        ),
        r(
            "/api/v1/users/{id}",
            vec![
                op(get.clone(), Needs(Administer), admin::get_user),
                op(patch, Needs(Administer), admin::update_user),
                op(delete.clone(), Needs(Administer), admin::delete_user),
            ],
        ),
        r(
            "/api/v1/tokens",
            vec![
                op(get.clone(), Needs(Administer), admin::list_tokens),
                op(post, Needs(Administer), admin::create_token),
            ],
        ),
        r("/api/v1/tokens/{id}", vec![op(delete, Needs(Administer), admin::revoke_token)]),
        r("/api/v1/audit", vec![op(get.clone(), Needs(Administer), admin::list_audit)]),
        r("/api/v1/audit/export.csv", vec![op(get.clone(), Needs(Administer), admin::export_csv)]),
        r("/api/v1/audit/export.jsonl", vec![op(get, Needs(Administer), admin::export_jsonl)]),
    ]
}

/// The API with the default `[api.limits]` (tests).
pub fn router(state: ApiState) -> Router {
    router_with(state, &HttpLimits::default())
}

/// The API: every route of `routes()` behind its access rule; non-streaming operations
/// timed, streams capped per principal, bodies limited (`limits`, src/api/conn.rs).
pub fn router_with(state: ApiState, limits: &HttpLimits) -> Router {
    let limits = std::sync::Arc::new(limits.clone());
    let streams = conn::StreamSlots::new(limits.max_streams_per_principal);
    let mut router = Router::new();
    for RouteDef { path, ops } in routes() {
        let mut methods: MethodRouter<ApiState> = MethodRouter::new();
        for Op { access, handler, kind, .. } in ops {
            // Layers run outside in: timeout, authorization, stream cap, handler.
            let handler = match kind {
                OpKind::Stream => handler
                    .route_layer(middleware::from_fn_with_state(streams.clone(), conn::stream_cap)),
                OpKind::Request | OpKind::Download => handler,
            };
            let handler = match access {
                Access::Public => handler,
                access => handler.route_layer(middleware::from_fn_with_state(
                    auth::Gate { st: state.clone(), access },
                    auth::authorize,
                )),
            };
            let handler = match kind {
                OpKind::Request => {
                    handler.route_layer(middleware::from_fn_with_state(limits.clone(), conn::timed))
                }
                OpKind::Stream | OpKind::Download => handler,
            };
            methods = methods.merge(handler);
        }
        router = router.route(path, methods);
    }
    router
        // GA/T 1400 subscriptions (api/viid.rs): VIID, digest-authenticated platform tokens.
        .merge(viid::router(&state, limits.clone()))
        // The operator console (public: the page itself asks for a login).
        .route("/", axum::routing::get(console::index))
        .route("/ui/{*path}", axum::routing::get(console::file))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(limits, conn::discipline))
        .layer(middleware::from_fn(log_request))
        .with_state(state)
}

/// Serves `router` on `listener` with the default `[api.limits]` until `shutdown`
/// completes (tests; `gridwatch run` uses [`serve_with`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, router, HttpLimits::default(), shutdown).await
}

// ---------------------------------------------------------------------------------------
// Middleware

/// Logs method, path (without query) and status. Headers and bodies, and thus tokens,
/// cookies and passwords, are never logged.
async fn log_request(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let t0 = Instant::now();
    let resp = next.run(req).await;
    tracing::debug!(%method, %path, status = resp.status().as_u16(), ms = t0.elapsed().as_secs_f64() * 1e3, "api request");
    resp
}

async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("no route for {method} {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(ErrorKind::MethodNotAllowed, format!("{method} is not allowed on {}", uri.path()))
}

/// Runs blocking work (database, file I/O, JPEG encoding) off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("blocking task failed: {e}")))?
}

/// The receiving end of a channel as a `Stream` (bodies and event streams fed by a task).
pub(crate) struct RxStream<T>(tokio::sync::mpsc::Receiver<T>);

impl<T> futures_core::Stream for RxStream<T> {
    type Item = T;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}

fn path_param(p: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    p.map(|Path(s)| s).map_err(|e| {
        ApiError::bad_param("id", format!("invalid path parameter `id`: {}", e.body_text()))
    })
}

fn parse_event_id(p: Result<Path<String>, PathRejection>) -> Result<Uuid, ApiError> {
    let s = path_param(p)?;
    Uuid::parse_str(&s)
        .map_err(|_| ApiError::bad_param("id", format!("`id` must be an event UUID, got `{s}`")))
}

fn jpeg_response(bytes: Vec<u8>, cache: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg")),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        ],
        bytes,
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------
// Handlers

#[derive(Serialize)]
struct Health {
    status: &'static str,
    box_id: String,
    version: &'static str,
    uptime_secs: i64,
    cameras: CameraCounts,
}

#[derive(Serialize)]
struct CameraCounts {
    online: usize,
    total: usize,
    /// Per stream: cameras whose main (recorded) / detect stream is online, of those that
    /// use it (not `disabled`).
    streams: StreamCounts,
}

#[derive(Serialize)]
struct StreamCounts {
    main: Counts,
    detect: Counts,
}

#[derive(Serialize)]
struct Counts {
    online: usize,
    total: usize,
}

impl Counts {
    fn of<'a>(streams: impl Iterator<Item = &'a crate::health::StreamHealth>) -> Counts {
        let used: Vec<_> = streams.filter(|s| s.state != CameraState::Disabled).collect();
        let online = used.iter().filter(|s| s.state == CameraState::Online).count();
        Counts { online, total: used.len() }
    }
}

async fn health(State(st): State<ApiState>) -> Json<Health> {
    let cams = st.registry.all();
    let online = cams.iter().filter(|c| c.state == CameraState::Online).count();
    Json(Health {
        status: "ok",
        box_id: st.box_id.clone(),
        version: env!("CARGO_PKG_VERSION"),
        uptime_secs: (OffsetDateTime::now_utc() - st.started_at).whole_seconds().max(0),
        cameras: CameraCounts {
            online,
            total: cams.len(),
            streams: StreamCounts {
                main: Counts::of(cams.iter().map(|c| &c.streams.main)),
                detect: Counts::of(cams.iter().map(|c| &c.streams.detect)),
            },
        },
    })
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], OPENAPI_JSON)
        .into_response()
}

#[derive(Serialize)]
struct CameraList {
    cameras: Vec<CameraHealth>,
}

async fn list_cameras(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
) -> Json<CameraList> {
    let cameras = match p.filter(&st.registry) {
        None => st.registry.all(),
        Some(f) => st.registry.all().into_iter().filter(|c| f.allows_camera(&c.id)).collect(),
    };
    Json(CameraList { cameras })
}

/// The camera's health, or 404 when it does not exist or is outside `p`'s scope.
fn camera_for(st: &ApiState, p: &Principal, id: &str) -> Result<CameraHealth, ApiError> {
    st.registry
        .get(id)
        .filter(|_| p.sees_camera(&st.registry, id))
        .ok_or_else(|| ApiError::not_found(format!("camera `{id}` not found")))
}

async fn get_camera(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<CameraHealth>, ApiError> {
    let id = path_param(id)?;
    camera_for(&st, &p, &id).map(Json)
}

async fn latest_jpg(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
    client: Client,
    RawQuery(query): RawQuery,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = path_param(id)?;
    camera_for(&st, &p, &id)?;
    let frame = st.registry.latest(&id).ok_or_else(|| {
        ApiError::new(
            ErrorKind::Unavailable,
            format!("camera `{id}` has not delivered a frame yet"),
        )
        .with_code("no_frame")
    })?;
    let view = still_view(&st, &p, &client, query.as_deref(), &id, format!("camera:{id}")).await?;
    let bytes = blocking(move || match view {
        View::Unmasked => Ok(store::encode_jpeg(&frame, &[], LATEST_QUALITY)?),
        View::Masked(m) => {
            let mut rgb = frame.rgb.to_vec();
            m.mask(&id, &mut rgb, frame.width, frame.height)
                .and_then(|_| {
                    crate::masking::encode(&rgb, frame.width, frame.height, LATEST_QUALITY)
                })
                .map_err(|e| masking_failed(&id, e))
        }
    })
    .await?;
    Ok(jpeg_response(bytes, "no-store"))
}

/// Which view of a still a request gets.
enum View {
    Masked(std::sync::Arc<crate::masking::Masker>),
    Unmasked,
}

/// The view a request for a still of `camera` gets: masked, unless it asks `unmasked=1`,
/// which needs `view_unmasked` and is audited (action `view_unmasked`, before anything is
/// served; no audit row, no picture). A masked view when masking cannot run is a 503
/// (`masking_unavailable`): never the original. Other query parameters are ignored (the
/// console adds a cache breaker).
async fn still_view(
    st: &ApiState,
    p: &Principal,
    client: &Client,
    query: Option<&str>,
    camera: &str,
    target: String,
) -> Result<View, ApiError> {
    if !unmasked_request(p, query)? {
        return match &st.media.masker {
            Ok(m) => Ok(View::Masked(m.clone())),
            Err(e) => Err(masking_failed(camera, e.clone())),
        };
    }
    let audit = p
        .audit("view_unmasked", client)
        .target(target)
        .detail(serde_json::json!({ "camera_id": camera }));
    let (s, now) = (st.store.clone(), st.auth.now());
    blocking(move || Ok(s.audit(&audit, now)?)).await?;
    Ok(View::Unmasked)
}

/// Whether the request asks for the unmasked view (`unmasked=1|true`; `0|false` or absent:
/// masked); 400 for another value, 403 when the principal lacks `view_unmasked`.
pub(super) fn unmasked_request(p: &Principal, query: Option<&str>) -> Result<bool, ApiError> {
    let mut unmasked = false;
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if k == "unmasked" {
            unmasked = match v.as_ref() {
                "1" | "true" => true,
                "0" | "false" => false,
                _ => {
                    return Err(ApiError::bad_param(
                        "unmasked",
                        format!("`unmasked` must be 1, true, 0 or false, got `{v}`"),
                    ))
                }
            };
        }
    }
    if unmasked && !p.role.can(Permission::ViewUnmasked) {
        return Err(ApiError::forbidden(format!(
            "role `{}` may not see pictures or video unmasked (needs `view_unmasked`)",
            p.role
        )));
    }
    Ok(unmasked)
}

/// The 503 of a masked view that cannot be produced (logged with its cause).
fn masking_failed(camera: &str, cause: String) -> ApiError {
    tracing::warn!(camera, "masked still refused: {cause}");
    ApiError::new(
        ErrorKind::Unavailable,
        format!("masking cannot run, so the masked still is refused: {cause}"),
    )
    .with_code("masking_unavailable")
}

#[derive(Serialize)]
struct EventList {
    events: Vec<Event>,
    next_before: Option<i64>,
}

/// Parses the query string of `GET /api/v1/events`; every failure names its parameter.
pub(crate) fn parse_event_query(raw: Option<&str>) -> Result<EventQuery, ApiError> {
    let mut q = EventQuery { limit: DEFAULT_LIMIT, ..Default::default() };
    let mut seen: Vec<String> = Vec::new();
    for (key, value) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        let key = key.into_owned();
        if seen.contains(&key) {
            return Err(ApiError::bad_param(
                &key,
                format!("query parameter `{key}` given more than once"),
            ));
        }
        let text = |v: &str| -> Result<String, ApiError> {
            if v.is_empty() {
                Err(ApiError::bad_param(&key, format!("query parameter `{key}` must not be empty")))
            } else {
                Ok(v.to_string())
            }
        };
        match key.as_str() {
            "camera" => q.camera = Some(text(&value)?),
            "kind" => q.kind = Some(text(&value)?),
            "grid_cell" => q.grid_cell = Some(text(&value)?),
            "severity" => {
                q.severity = Some(Severity::parse(&value).ok_or_else(|| {
                    ApiError::bad_param(
                        "severity",
                        format!("query parameter `severity` must be `info`, `low`, `medium`, `high` or `critical`, got `{value}`"),
                    )
                })?)
            }
            "review" => {
                q.review = Some(Review::parse(&value).ok_or_else(|| {
                    ApiError::bad_param(
                        "review",
                        format!("query parameter `review` must be `new`, `acknowledged`, `resolved` or `false_alarm`, got `{value}`"),
                    )
                })?)
            }
            "since" => q.since = Some(parse_time(&key, &value)?),
            "until" => q.until = Some(parse_time(&key, &value)?),
            "before" => {
                let n = value.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    ApiError::bad_param("before", format!("query parameter `before` must be a positive integer (a `next_before` cursor), got `{value}`"))
                })?;
                q.before_seq = Some(n);
            }
            "limit" => {
                q.limit = value.parse::<u32>().ok().filter(|n| (1..=MAX_LIMIT).contains(n)).ok_or_else(|| {
                    ApiError::bad_param(
                        "limit",
                        format!("query parameter `limit` must be an integer from 1 to {MAX_LIMIT}, got `{value}`"),
                    )
                })?;
            }
            _ => {
                return Err(ApiError::bad_param(
                    &key,
                    format!("unknown query parameter `{key}` (allowed: camera, grid_cell, kind, severity, review, since, until, before, limit)"),
                ))
            }
        }
        seen.push(key);
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

/// An RFC 3339 query parameter. A literal '+' in an offset arrives as ' ' unless the client
/// encoded it as %2B, so a space is read as '+'.
/// Earliest and latest (exclusive) time a query parameter may name. Times are checked
/// before any arithmetic on them (spans, buckets, footage horizons), which near the ends of
/// the calendar (year 9999) would overflow.
pub(crate) const QUERY_TIME_MIN: OffsetDateTime = time::macros::datetime!(1970-01-01 0:00 UTC);
pub(crate) const QUERY_TIME_MAX: OffsetDateTime = time::macros::datetime!(9000-01-01 0:00 UTC);

fn parse_time(key: &str, v: &str) -> Result<OffsetDateTime, ApiError> {
    let t = OffsetDateTime::parse(v, &Rfc3339)
        .or_else(|e| OffsetDateTime::parse(&v.replace(' ', "+"), &Rfc3339).map_err(|_| e))
        .map_err(|e| {
            ApiError::bad_param(
                key,
                format!("query parameter `{key}` must be an RFC 3339 time (e.g. 2026-01-31T12:00:00Z): {e}"),
            )
        })?;
    if !(QUERY_TIME_MIN..QUERY_TIME_MAX).contains(&t) {
        return Err(ApiError::bad_param(
            key,
            format!("query parameter `{key}` must be from 1970-01-01T00:00:00Z to before 9000-01-01T00:00:00Z, got `{v}`"),
        ));
    }
    Ok(t)
}

/// The parameters shared by the statistics endpoints: text filters named in `allowed`
/// (e.g. camera, line/zone, class), `since`, `until` and `bucket` (default hour).
struct StatsParams {
    text: std::collections::HashMap<&'static str, String>,
    since: Option<OffsetDateTime>,
    until: Option<OffsetDateTime>,
    bucket: Bucket,
}

/// Parses a statistics query string; unknown, empty or repeated parameters are 400s
/// naming the parameter.
fn parse_stats_query(raw: Option<&str>, allowed: &[&'static str]) -> Result<StatsParams, ApiError> {
    let mut q =
        StatsParams { text: Default::default(), since: None, until: None, bucket: Bucket::Hour };
    for (key, value) in query_params(raw)? {
        match key.as_str() {
            "since" => q.since = Some(parse_time(&key, &value)?),
            "until" => q.until = Some(parse_time(&key, &value)?),
            "bucket" => {
                q.bucket = Bucket::parse(&value).ok_or_else(|| {
                    ApiError::bad_param(
                        "bucket",
                        format!(
                        "query parameter `bucket` must be `minute`, `hour` or `day`, got `{value}`"
                    ),
                    )
                })?
            }
            k => match allowed.iter().find(|a| **a == k) {
                Some(name) => {
                    if value.is_empty() {
                        return Err(ApiError::bad_param(
                            &key,
                            format!("query parameter `{key}` must not be empty"),
                        ));
                    }
                    q.text.insert(name, value);
                }
                None => {
                    return Err(ApiError::bad_param(
                        &key,
                        format!(
                            "unknown query parameter `{key}` (allowed: {}, since, until, bucket)",
                            allowed.join(", ")
                        ),
                    ))
                }
            },
        }
    }
    check_span(q.since, q.until)?;
    Ok(q)
}

/// The query string's parameters in order; one given twice is a 400 naming it.
pub(crate) fn query_params(raw: Option<&str>) -> Result<Vec<(String, String)>, ApiError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (key, value) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        if out.iter().any(|(seen, _)| *seen == key) {
            return Err(ApiError::bad_param(
                &key,
                format!("query parameter `{key}` given more than once"),
            ));
        }
        out.push((key.into_owned(), value.into_owned()));
    }
    Ok(out)
}

/// `until`, when both are given, must be later than `since` (a 400 naming `until`).
fn check_span(
    since: Option<OffsetDateTime>,
    until: Option<OffsetDateTime>,
) -> Result<(), ApiError> {
    match (since, until) {
        (Some(s), Some(u)) if s >= u => {
            Err(ApiError::bad_param("until", "query parameter `until` must be later than `since`"))
        }
        _ => Ok(()),
    }
}

/// Parses the query string of `GET /api/v1/stats/counts`; every failure names its parameter.
pub(crate) fn parse_count_query(raw: Option<&str>) -> Result<CountQuery, ApiError> {
    let mut p = parse_stats_query(raw, &["camera", "line", "class"])?;
    Ok(CountQuery {
        camera: p.text.remove("camera"),
        line: p.text.remove("line"),
        class: p.text.remove("class"),
        since: p.since,
        until: p.until,
        bucket: p.bucket,
    })
}

/// Parses the query string of `GET /api/v1/stats/occupancy`; every failure names its parameter.
pub(crate) fn parse_occupancy_query(raw: Option<&str>) -> Result<OccupancyQuery, ApiError> {
    let mut p = parse_stats_query(raw, &["camera", "zone", "class"])?;
    Ok(OccupancyQuery {
        camera: p.text.remove("camera"),
        zone: p.text.remove("zone"),
        class: p.text.remove("class"),
        since: p.since,
        until: p.until,
        bucket: p.bucket,
    })
}

#[derive(Serialize)]
struct OccupancyList {
    bucket: &'static str,
    occupancy: Vec<OccupancyRow>,
}

async fn list_occupancy(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
    RawQuery(raw): RawQuery,
) -> Result<Json<OccupancyList>, ApiError> {
    let q = parse_occupancy_query(raw.as_deref())?;
    let bucket = q.bucket.as_str();
    let s = st.store.clone();
    let mut occupancy = blocking(move || Ok(s.occupancy(&q)?)).await?;
    if let Some(f) = p.filter(&st.registry) {
        occupancy.retain(|r| f.allows_camera(&r.camera_id));
    }
    Ok(Json(OccupancyList { bucket, occupancy }))
}

#[derive(Serialize)]
struct CountList {
    bucket: &'static str,
    counts: Vec<NamedCountRow>,
}

/// A count row with the name its line gives the direction now (`[[cameras.lines]]
/// directions`), or `null`; `direction` stays the stable key.
#[derive(Serialize)]
struct NamedCountRow {
    #[serde(flatten)]
    row: CountRow,
    direction_name: Option<String>,
}

/// Names the directions of count rows from the cameras' current lines.
fn name_directions(registry: &Registry, rows: Vec<CountRow>) -> Vec<NamedCountRow> {
    use std::collections::HashMap;
    let mut names = HashMap::new();
    for cam in registry.all() {
        for l in cam.lines {
            if let Some(d) = l.directions {
                names.insert((cam.id.clone(), l.name), d);
            }
        }
    }
    rows.into_iter()
        .map(|row| {
            let direction_name = names
                .get(&(row.camera_id.clone(), row.line.clone()))
                .and_then(|d| d.name(row.direction))
                .map(str::to_string);
            NamedCountRow { row, direction_name }
        })
        .collect()
}

async fn list_counts(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
    RawQuery(raw): RawQuery,
) -> Result<Json<CountList>, ApiError> {
    let q = parse_count_query(raw.as_deref())?;
    let bucket = q.bucket.as_str();
    let s = st.store.clone();
    let mut counts = blocking(move || Ok(s.counts(&q)?)).await?;
    if let Some(f) = p.filter(&st.registry) {
        counts.retain(|r| f.allows_camera(&r.camera_id));
    }
    let counts = name_directions(&st.registry, counts);
    Ok(Json(CountList { bucket, counts }))
}

async fn list_events(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
    RawQuery(raw): RawQuery,
) -> Result<Json<EventList>, ApiError> {
    let mut q = parse_event_query(raw.as_deref())?;
    q.scope = p.filter(&st.registry);
    let s = st.store.clone();
    let page = blocking(move || Ok(s.list_events(&q)?)).await?;
    Ok(Json(EventList { events: page.events, next_before: page.next_before }))
}

/// The event, or 404 when it does not exist or is outside `p`'s scope.
async fn load_event(st: &ApiState, p: &Principal, id: Uuid) -> Result<Event, ApiError> {
    let s = st.store.clone();
    blocking(move || Ok(s.get_event(id)?))
        .await?
        .filter(|e| p.sees_event(&st.registry, e))
        .ok_or_else(|| ApiError::not_found(format!("event {id} not found")))
}

async fn get_event(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Event>, ApiError> {
    let id = parse_event_id(id)?;
    Ok(Json(load_event(&st, &p, id).await?))
}

async fn snapshot_jpg(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
    client: Client,
    RawQuery(query): RawQuery,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = parse_event_id(id)?;
    let event = load_event(&st, &p, id).await?;
    let path = st.store.snapshot_file(&event).ok_or_else(|| {
        ApiError::not_found(format!("event {id} has no snapshot")).with_code("no_snapshot")
    })?;
    let camera = event.camera_id.clone();
    let view =
        still_view(&st, &p, &client, query.as_deref(), &camera, format!("event:{id}")).await?;
    let bytes = blocking(move || {
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::warn!(event = %id, path = %path.display(), "snapshot file missing");
                return Err(ApiError::not_found(format!("event {id} has no snapshot"))
                    .with_code("no_snapshot"));
            }
            Err(e) => return Err(ApiError::internal(format!("reading {}: {e}", path.display()))),
        };
        match view {
            View::Unmasked => Ok(bytes),
            View::Masked(m) => m
                .mask_jpeg(&camera, &bytes, SNAPSHOT_QUALITY)
                .map_err(|e| masking_failed(&camera, e)),
        }
    })
    .await?;
    Ok(jpeg_response(bytes, "no-store"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReviewBody {
    state: String,
    #[serde(default)]
    note: Option<String>,
}

/// `POST /api/v1/events/{id}/review`: moves the event along the review workflow
/// (`new` → `acknowledged` → `resolved` | `false_alarm`); 409 for a transition the
/// workflow does not allow.
async fn review_event(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
    client: Client,
    id: Result<Path<String>, PathRejection>,
    JsonBody(body): JsonBody<ReviewBody>,
) -> Result<Json<Event>, ApiError> {
    let id = parse_event_id(id)?;
    let event = load_event(&st, &p, id).await?;
    let to = Review::parse(&body.state).filter(|r| *r != Review::New).ok_or_else(|| {
        ApiError::bad_param(
            "state",
            format!(
                "`state` must be `acknowledged`, `resolved` or `false_alarm`, got `{}`",
                body.state
            ),
        )
    })?;
    let note = body.note.map(|n| n.trim().to_string()).filter(|n| !n.is_empty());
    if note.as_ref().is_some_and(|n| n.chars().count() > MAX_NOTE_CHARS) {
        return Err(ApiError::bad_param(
            "note",
            format!("`note` must have at most {MAX_NOTE_CHARS} characters"),
        ));
    }
    let audit =
        p.audit("event_review", &client).target(format!("event:{id}")).detail(serde_json::json!({
            "from": event.review,
            "to": to,
            "note": note,
            "camera_id": event.camera_id,
        }));
    let (s, by, now) = (st.store.clone(), p.display_name(), st.auth.now());
    let event =
        blocking(move || Ok(s.review_event(id, to, &by, note.as_deref(), &audit, now)?)).await?;
    tracing::info!(actor = %p.actor(), event = %id, review = to.as_str(), "event reviewed");
    Ok(Json(event))
}
