//! Access control through the real router and a real SQLite store: the authorization
//! matrix (every operation × every role × unscoped / in scope / out of scope), sessions and
//! their cookie, lockout, tokens, users, reviews and the audit log.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use time::Duration;
use tower::ServiceExt;

use super::*;
use crate::auth::{Role, Scope};
use crate::clock::{Clock, SimClock};
use crate::config::{AuthConfig, CameraConfig, CookieSecure, RecordConfig};
use crate::store::auth::NewAudit;
use crate::store::recordings::{Clip, NewSegment};
use crate::types::{
    BBox, Change, CountDelta, Detection, EventChange, Frame, OccupancyDelta, Severity,
};

const CONFIG_TOKEN: &str = "gw_matrix_config_token";
const PASSWORD: &str = "correct horse battery";

// ---------------------------------------------------------------------------------------
// Fixture

struct Fx {
    _dir: tempfile::TempDir,
    state: ApiState,
    app: Router,
    clock: Arc<SimClock>,
    /// A precomputed argon2id hash of PASSWORD (hashing is slow on purpose).
    hash: String,
    /// Per camera: an ended event with a snapshot and a stored clip, a segment.
    event: BTreeMap<&'static str, Uuid>,
    segment: BTreeMap<&'static str, i64>,
    /// The span of an export that is pending (ends in the future).
    export_span: (String, String),
}

fn camera(id: &str, cell: &str) -> CameraHealth {
    let cfg: CameraConfig = serde_json::from_value(json!({
        "id": id, "url": "rtsp://cam/x", "models": ["default"], "grid_cell": cell
    }))
    .unwrap();
    crate::ingest::camera_health(&cfg, time::OffsetDateTime::now_utc())
}

fn frame(camera: &str) -> Frame {
    Frame {
        camera_id: Arc::from(camera),
        index: 1,
        width: 64,
        height: 48,
        rgb: Arc::from(vec![90u8; 64 * 48 * 3]),
        pts_ns: None,
        captured_at: OffsetDateTime::now_utc(),
        captured_instant: std::time::Instant::now(),
    }
}

fn rfc(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}

impl Fx {
    fn new(auth: AuthConfig) -> Fx {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let registry = Registry::new();
        registry.register(camera("cam1", "C3"));
        registry.register(camera("cam2", "D4"));
        // Whole milliseconds, as stored.
        let now = store::from_ms(store::to_ms(OffsetDateTime::now_utc())).unwrap();
        let clock = Arc::new(SimClock::new(now));
        let rec = RecordConfig { segment_secs: 4.0, ..Default::default() };
        let state = ApiState {
            store,
            registry,
            box_id: "box-acl".into(),
            config_token_hashes: vec![store::hash_token(CONFIG_TOKEN)],
            started_at: now,
            media: MediaSettings {
                recording: Arc::new(
                    ["cam1", "cam2"].iter().map(|c| (c.to_string(), rec.clone())).collect(),
                ),
                max_export_secs: 600.0,
                masker: Ok(crate::masking::tests::shared()),
                ..Default::default()
            },
            auth: AuthSettings::new(auth, clock.clone()),
            open_data: Default::default(),
        };
        let end = now + Duration::hours(1);
        let mut fx = Fx {
            _dir: dir,
            app: router(state.clone()),
            state,
            clock,
            hash: crate::auth::hash_password(PASSWORD).unwrap(),
            event: BTreeMap::new(),
            segment: BTreeMap::new(),
            export_span: (rfc(end - Duration::seconds(60)), rfc(end)),
        };
        let t = now - Duration::hours(2);
        for cam in ["cam1", "cam2"] {
            fx.state.registry.set_latest(frame(cam));
            let ev = fx.event_on(cam, None, t, true);
            let rel = format!("clips/{ev}.mp4");
            // Real (tiny) MP4s: clips and segments are masked by default.
            let mp4 = crate::masked_video::tests::tiny_mp4();
            fx.write(&rel, mp4);
            let clip = Clip {
                event_id: ev,
                path: rel,
                start: t,
                end: t + Duration::seconds(10),
                bytes: 10,
            };
            fx.state.store.put_clip(&clip).unwrap();
            fx.event.insert(cam, ev);
            let rel = format!("recordings/{cam}/20260501/1-00000.mp4");
            fx.write(&rel, mp4);
            let seg = fx
                .state
                .store
                .insert_segment(&NewSegment {
                    camera_id: cam.into(),
                    path: rel,
                    start: t,
                    end: t + Duration::seconds(4),
                    start_pts_ns: None,
                    end_pts_ns: None,
                    bytes: 13,
                    codec: "h264".into(),
                    frames: None,
                    recovered: false,
                })
                .unwrap();
            fx.segment.insert(cam, seg);
            // A range lock per camera (GET /api/v1/locks lists them by scope).
            fx.lock_on(cam);
            fx.state
                .store
                .add_counts(&[CountDelta {
                    camera_id: cam.into(),
                    line: "gate".into(),
                    class: "person".into(),
                    direction: crate::geometry::CrossDir::AToB,
                    at: t,
                    count: 3,
                    speed_kmh: None,
                }])
                .unwrap();
            fx.state
                .store
                .add_occupancy(&[OccupancyDelta {
                    camera_id: cam.into(),
                    zone: "plaza".into(),
                    class: "*".into(),
                    bucket_start: t,
                    samples: 10,
                    sum: 10,
                    max: 1,
                }])
                .unwrap();
        }
        fx
    }

    /// An active range lock on `cam`.
    fn lock_on(&self, cam: &str) -> Uuid {
        let t = self.clock.now() - Duration::hours(3);
        let target = crate::store::locks::LockTarget::Range {
            camera: cam.into(),
            start: t,
            end: t + Duration::minutes(10),
        };
        self.state
            .store
            .create_lock(
                &target,
                "case 1",
                "test",
                |_| NewAudit::new("test", None, "lock_create"),
                t,
            )
            .unwrap()
            .id
    }

    fn write(&self, rel: &str, data: &[u8]) {
        let p = self.state.store.media_path(rel).unwrap();
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }

    /// An ended event on `cam` (optionally tagged with a grid cell).
    fn event_on(&self, cam: &str, cell: Option<&str>, at: OffsetDateTime, snapshot: bool) -> Uuid {
        let id = Uuid::now_v7();
        let mut ch = EventChange::bare(id, Change::Started, cam, "presence", Severity::High, at);
        ch.grid_cell = cell.map(String::from);
        ch.objects =
            vec![Detection::new(0, "person", 0.9, BBox { x1: 0.1, y1: 0.1, x2: 0.5, y2: 0.9 })];
        ch.snapshot = snapshot.then(|| frame(cam));
        self.state.store.apply(&ch).unwrap();
        let end = EventChange::bare(
            id,
            Change::Ended,
            cam,
            "presence",
            Severity::High,
            at + Duration::seconds(5),
        );
        self.state.store.apply(&end).unwrap();
        id
    }

    fn user(&self, name: &str, role: Role, scope: Option<Scope>) -> Uuid {
        let a = NewAudit::new("test", None, "user_create").target(format!("user:{name}"));
        self.state
            .store
            .create_user(name, &self.hash, role, scope.as_ref(), &a, self.clock.now())
            .unwrap()
            .id
    }

    fn token(&self, name: &str, role: Role, scope: Option<Scope>) -> (Uuid, String) {
        let t = store::generate_token();
        let info = self
            .state
            .store
            .create_token(
                name,
                &store::hash_token(&t),
                role,
                scope.as_ref(),
                "test",
                |id| NewAudit::new("test", None, "token_create").target(format!("token:{id}")),
                self.clock.now(),
            )
            .unwrap();
        (info.id, t)
    }

    async fn send(
        &self,
        method: &str,
        uri: &str,
        cred: &Cred,
        body: Option<Value>,
        addr: Option<&str>,
    ) -> Resp {
        self.send_with(method, uri, cred, body, addr, &[]).await
    }

    async fn send_with(
        &self,
        method: &str,
        uri: &str,
        cred: &Cred,
        body: Option<Value>,
        addr: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut req = Request::builder().method(method).uri(uri);
        match cred {
            Cred::None => {}
            Cred::Bearer(t) => req = req.header(header::AUTHORIZATION, format!("Bearer {t}")),
            Cred::Cookie(c) => req = req.header(header::COOKIE, format!("{SESSION_COOKIE}={c}")),
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let body = match body {
            Some(v) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        let mut req = req.body(body).unwrap();
        if let Some(a) = addr {
            let sa: std::net::SocketAddr = format!("{a}:40000").parse().unwrap();
            req.extensions_mut().insert(ConnectInfo(sa));
        }
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let mut body = Vec::new();
        let mut stream = resp.into_body();
        if headers.get(header::CONTENT_TYPE).is_some_and(|v| v == "text/event-stream") {
            // An event stream stays open: take what arrives until it goes quiet after the
            // first change (every case here has some), or 10 s pass (a slow, loaded box).
            let end = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
            let quiet = std::time::Duration::from_millis(300);
            loop {
                let has_change = String::from_utf8_lossy(&body).contains("event: change");
                let wait = if has_change {
                    quiet
                } else {
                    end.saturating_duration_since(tokio::time::Instant::now())
                };
                match tokio::time::timeout(wait, stream.frame()).await {
                    Ok(Some(Ok(frame))) => body.extend(frame.into_data().unwrap_or_default()),
                    _ => break,
                }
            }
        } else {
            body = stream.collect().await.unwrap().to_bytes().to_vec();
        }
        Resp { status, headers, body }
    }

    /// Logs in; returns the session cookie's value and the whole `Set-Cookie` header.
    async fn login(&self, user: &str, password: &str) -> (String, String) {
        let r = self
            .send(
                "POST",
                "/api/v1/auth/login",
                &Cred::None,
                Some(json!({"username": user, "password": password})),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "login {user}: {}", r.text());
        let set = r.header(header::SET_COOKIE).to_string();
        let value = set
            .strip_prefix(&format!("{SESSION_COOKIE}="))
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        (value, set)
    }

    fn audit(&self, action: &str) -> Vec<crate::store::auth::AuditEntry> {
        let q = crate::store::auth::AuditQuery {
            action: Some(action.into()),
            limit: 1000,
            ..Default::default()
        };
        self.state.store.audit_page(&q).unwrap().entries
    }
}

#[derive(Clone, Debug)]
enum Cred {
    None,
    Bearer(String),
    Cookie(String),
}

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The JSON body; an event stream's `data` lines as `{"changes": [...]}`.
    fn json(&self) -> Value {
        if self.header(header::CONTENT_TYPE) == "text/event-stream" {
            let text = self.text();
            let changes: Vec<Value> = text
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .map(|d| {
                    serde_json::from_str(d)
                        .unwrap_or_else(|e| panic!("event data not JSON ({e}): {d}"))
                })
                .collect();
            return json!({ "changes": changes });
        }
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    fn header(&self, name: header::HeaderName) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
    fn error(&self, status: StatusCode, code: &str) -> Value {
        assert_eq!(self.status, status, "{}", self.text());
        let v = self.json();
        assert_eq!(v["error"]["code"], code, "{v}");
        v["error"].clone()
    }
}

// ---------------------------------------------------------------------------------------
// The matrix

/// Which cameras a principal may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sc {
    All,
    /// `cameras = ["cam1"]`
    Cam,
    /// `grid_cells = ["C3"]` (cam1 is in C3, cam2 in D4)
    Cell,
}

impl Sc {
    fn scope(self) -> Option<Scope> {
        match self {
            Sc::All => None,
            Sc::Cam => Some(Scope { cameras: vec!["cam1".into()], grid_cells: vec![] }),
            Sc::Cell => Some(Scope { cameras: vec![], grid_cells: vec!["C3".into()] }),
        }
    }
}

struct Who {
    label: String,
    role: Role,
    scope: Sc,
    cred: Cred,
    /// Username, for users (their logout test logs in a second session).
    user: Option<String>,
}

/// The resource a request is about: the in-scope camera's (cam1), the other camera's
/// (cam2), or one that does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    In,
    Out,
    Missing,
}

impl Target {
    fn cam(self) -> &'static str {
        match self {
            Target::In => "cam1",
            Target::Out => "cam2",
            Target::Missing => "cam9",
        }
    }
}

/// How an operation relates to cameras.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Nothing camera-specific (public, own session, box-wide).
    Plain,
    /// Takes the id of something that belongs to a camera: out of scope = 404 exactly like
    /// an id that does not exist.
    Id,
    /// A list: filtered to the scope; with Target::Out it is asked for the other camera only.
    List(fn(&Value) -> BTreeSet<String>),
}

struct Case {
    method: &'static str,
    path: &'static str,
    /// What the operation needs, as in docs/openapi.json's `x-access`.
    access: &'static str,
    kind: Kind,
    /// Status of an allowed request (users vs tokens may differ).
    ok: fn(&Who) -> u16,
}

fn ids(v: &Value, list: &str, field: &str) -> BTreeSet<String> {
    v[list]
        .as_array()
        .unwrap_or_else(|| panic!("no `{list}` in {v}"))
        .iter()
        .map(|x| x[field].as_str().unwrap().to_string())
        .collect()
}

/// The policy of every operation, written down independently of the router: a new route
/// without a row here fails `matrix_covers_every_route`.
fn cases() -> Vec<Case> {
    fn ok200(_: &Who) -> u16 {
        200
    }
    fn ok201(_: &Who) -> u16 {
        201
    }
    fn ok204(_: &Who) -> u16 {
        204
    }
    fn pending(_: &Who) -> u16 {
        503
    }
    fn users_only(w: &Who) -> u16 {
        if w.user.is_some() {
            204
        } else {
            400
        }
    }
    let c = |method, path, access, kind, ok| Case { method, path, access, kind, ok };
    vec![
        c("GET", "/api/v1/health", "public", Kind::Plain, ok200),
        c("GET", "/api/v1/openapi.json", "public", Kind::Plain, ok200),
        c("GET", "/api/v1/cameras", "see", Kind::List(|v| ids(v, "cameras", "id")), ok200),
        c("GET", "/api/v1/cameras/{id}", "see", Kind::Id, ok200),
        c("GET", "/api/v1/cameras/{id}/latest.jpg", "see", Kind::Id, ok200),
        c("GET", "/api/v1/events", "see", Kind::List(|v| ids(v, "events", "camera_id")), ok200),
        c("GET", "/api/v1/events/{id}", "see", Kind::Id, ok200),
        c("GET", "/api/v1/events/{id}/snapshot.jpg", "see", Kind::Id, ok200),
        c("POST", "/api/v1/events/{id}/review", "review", Kind::Id, ok200),
        c(
            "GET",
            "/api/v1/stats/counts",
            "see",
            Kind::List(|v| ids(v, "counts", "camera_id")),
            ok200,
        ),
        c(
            "GET",
            "/api/v1/stats/occupancy",
            "see",
            Kind::List(|v| ids(v, "occupancy", "camera_id")),
            ok200,
        ),
        c("GET", "/api/v1/open/counts", "open_data", Kind::Plain, ok200),
        c("GET", "/api/v1/open/occupancy", "open_data", Kind::Plain, ok200),
        c("GET", "/api/v1/events/{id}/clip.mp4", "see", Kind::Id, ok200),
        c(
            "GET",
            "/api/v1/recordings",
            "see",
            Kind::List(|v| ids(v, "recordings", "camera_id")),
            ok200,
        ),
        c("GET", "/api/v1/recordings/export.mp4", "see", Kind::Id, pending),
        c("GET", "/api/v1/recordings/{id}/segment.mp4", "see", Kind::Id, ok200),
        c("GET", "/api/v1/feed", "see", Kind::List(|v| ids(v, "changes", "camera_id")), ok200),
        c(
            "GET",
            "/api/v1/events/stream",
            "see",
            Kind::List(|v| ids(v, "changes", "camera_id")),
            ok200,
        ),
        c("GET", "/api/v1/locks", "see", Kind::List(|v| ids(v, "locks", "camera_id")), ok200),
        c("POST", "/api/v1/locks", "lock", Kind::Id, ok201),
        c("POST", "/api/v1/locks/{id}/unlock", "unlock", Kind::Id, ok200),
        c("GET", "/api/v1/storage", "monitor", Kind::Plain, ok200),
        c("GET", "/api/v1/evidence/key", "see", Kind::Plain, ok200),
        c("GET", "/api/v1/events/{id}/evidence.tar", "see", Kind::Id, ok200),
        c("GET", "/api/v1/recordings/evidence.tar", "see", Kind::Id, pending),
        c("GET", "/api/v1/uplink", "monitor", Kind::Plain, ok200),
        c("GET", "/metrics", "monitor", Kind::Plain, ok200),
        c("POST", "/api/v1/auth/login", "public", Kind::Plain, ok200),
        c("POST", "/api/v1/auth/logout", "authenticated", Kind::Plain, ok204),
        c("GET", "/api/v1/auth/me", "authenticated", Kind::Plain, ok200),
        c("POST", "/api/v1/auth/password", "authenticated", Kind::Plain, users_only),
        c("GET", "/api/v1/users", "administer", Kind::Plain, ok200),
        c("POST", "/api/v1/users", "administer", Kind::Plain, ok201),
        c("GET", "/api/v1/users/{id}", "administer", Kind::Plain, ok200),
        c("PATCH", "/api/v1/users/{id}", "administer", Kind::Plain, ok200),
        c("DELETE", "/api/v1/users/{id}", "administer", Kind::Plain, ok204),
        c("GET", "/api/v1/tokens", "administer", Kind::Plain, ok200),
        c("POST", "/api/v1/tokens", "administer", Kind::Plain, ok201),
        c("DELETE", "/api/v1/tokens/{id}", "administer", Kind::Plain, ok204),
        c("GET", "/api/v1/audit", "administer", Kind::Plain, ok200),
        c("GET", "/api/v1/audit/export.csv", "administer", Kind::Plain, ok200),
        c("GET", "/api/v1/audit/export.jsonl", "administer", Kind::Plain, ok200),
    ]
}

/// A concrete request for `case` about `target`: (uri, body, credential override).
async fn request(
    fx: &Fx,
    case: &Case,
    target: Target,
    who: Option<&Who>,
) -> (String, Option<Value>, Option<Cred>) {
    let cam = target.cam();
    let event = match target {
        Target::Missing => Uuid::now_v7(),
        t => fx.event[t.cam()],
    };
    let n = Uuid::now_v7().simple().to_string();
    let uri = |p: &str| p.to_string();
    match (case.method, case.path) {
        (_, "/api/v1/cameras/{id}") => (format!("/api/v1/cameras/{cam}"), None, None),
        (_, "/api/v1/cameras/{id}/latest.jpg") => {
            (format!("/api/v1/cameras/{cam}/latest.jpg"), None, None)
        }
        (_, "/api/v1/events/{id}") => (format!("/api/v1/events/{event}"), None, None),
        (_, "/api/v1/events/stream") => ("/api/v1/events/stream?after=0".into(), None, None),
        (_, "/api/v1/events/{id}/snapshot.jpg") => {
            (format!("/api/v1/events/{event}/snapshot.jpg"), None, None)
        }
        (_, "/api/v1/events/{id}/clip.mp4") => {
            (format!("/api/v1/events/{event}/clip.mp4"), None, None)
        }
        (_, "/api/v1/events/{id}/review") => {
            // A fresh event each time, so that `new → acknowledged` is allowed.
            let id = match target {
                Target::Missing => Uuid::now_v7(),
                t => fx.event_on(
                    t.cam(),
                    None,
                    OffsetDateTime::now_utc() - Duration::minutes(5),
                    false,
                ),
            };
            (
                format!("/api/v1/events/{id}/review"),
                Some(json!({"state": "acknowledged", "note": "seen"})),
                None,
            )
        }
        (_, "/api/v1/recordings/{id}/segment.mp4") => {
            let seg = match target {
                Target::Missing => 999_999,
                t => fx.segment[t.cam()],
            };
            (format!("/api/v1/recordings/{seg}/segment.mp4"), None, None)
        }
        (_, "/api/v1/events/{id}/evidence.tar") => {
            (format!("/api/v1/events/{event}/evidence.tar"), None, None)
        }
        (_, "/api/v1/recordings/evidence.tar") => {
            let (s, e) = &fx.export_span;
            (format!("/api/v1/recordings/evidence.tar?camera={cam}&start={s}&end={e}"), None, None)
        }
        ("POST", "/api/v1/locks") => {
            (uri(case.path), Some(json!({"event_id": event, "reason": "case 7"})), None)
        }
        (_, "/api/v1/locks/{id}/unlock") => {
            let id = match target {
                Target::Missing => Uuid::now_v7(),
                t => fx.lock_on(t.cam()),
            };
            (format!("/api/v1/locks/{id}/unlock"), Some(json!({"reason": "released"})), None)
        }
        (_, "/api/v1/recordings/export.mp4") => {
            let (s, e) = &fx.export_span;
            (format!("/api/v1/recordings/export.mp4?camera={cam}&start={s}&end={e}"), None, None)
        }
        (
            _,
            "/api/v1/events"
            | "/api/v1/stats/counts"
            | "/api/v1/stats/occupancy"
            | "/api/v1/recordings"
            | "/api/v1/locks",
        ) => match target {
            Target::In => (uri(case.path), None, None),
            _ => (format!("{}?camera={cam}", case.path), None, None),
        },
        ("POST", "/api/v1/auth/login") => {
            let name = format!("login-{n}");
            fx.user(&name, Role::Viewer, None);
            (uri(case.path), Some(json!({"username": name, "password": PASSWORD})), None)
        }
        ("POST", "/api/v1/auth/logout") => match who.and_then(|w| w.user.as_deref()) {
            // A second session of the same user, so that the principal's own lives on.
            Some(user) => {
                (uri(case.path), None, Some(Cred::Cookie(fx.login(user, PASSWORD).await.0)))
            }
            None => (uri(case.path), None, None),
        },
        ("POST", "/api/v1/auth/password") => (
            uri(case.path),
            Some(json!({"current_password": PASSWORD, "new_password": PASSWORD})),
            None,
        ),
        ("POST", "/api/v1/users") => (
            uri(case.path),
            Some(json!({"username": format!("new-{n}"), "password": PASSWORD, "role": "viewer"})),
            None,
        ),
        (_, "/api/v1/users/{id}") => {
            let id = fx.user(&format!("target-{n}"), Role::Viewer, None);
            let body = (case.method == "PATCH").then(|| json!({"role": "operator"}));
            (format!("/api/v1/users/{id}"), body, None)
        }
        ("POST", "/api/v1/tokens") => {
            (uri(case.path), Some(json!({"name": format!("t-{n}"), "role": "platform"})), None)
        }
        (_, "/api/v1/tokens/{id}") => {
            let (id, _) = fx.token(&format!("t-{n}"), Role::Platform, None);
            (format!("/api/v1/tokens/{id}"), None, None)
        }
        (_, p) => (uri(p), None, None),
    }
}

/// What `who` gets for `case`: 401 / 403 / the allowed outcome.
fn denied(case: &Case, who: Option<&Who>) -> Option<(u16, &'static str)> {
    if case.access == "public" {
        return None;
    }
    let Some(w) = who else { return Some((401, "unauthorized")) };
    if case.access == "authenticated" {
        return None;
    }
    let perm =
        crate::auth::Permission::ALL.into_iter().find(|p| p.as_str() == case.access).unwrap();
    if !w.role.can(perm) || (perm.box_wide() && w.scope != Sc::All) {
        return Some((403, "forbidden"));
    }
    None
}

/// `body` with the parts of `uri` that differ from `other` (the ids) replaced by a placeholder.
fn normalise(body: &[u8], uri: &str, other: &str) -> String {
    let parts = |u: &str| u.split(['/', '?', '&', '=']).map(String::from).collect::<Vec<_>>();
    let mut s = String::from_utf8_lossy(body).into_owned();
    for (a, b) in parts(uri).iter().zip(parts(other).iter()) {
        if a != b {
            s = s.replace(a.as_str(), "<ID>");
        }
    }
    s
}

async fn check(fx: &Fx, case: &Case, who: Option<&Who>, log: &mut Vec<String>) {
    let label = who.map(|w| w.label.as_str()).unwrap_or("anonymous");
    let cred = who.map(|w| w.cred.clone()).unwrap_or(Cred::None);
    let what = format!("{} {} as {label}", case.method, case.path);
    // The principal sees cam2 only when unscoped.
    let sees_out = who.is_some_and(|w| w.scope == Sc::All);
    for target in [Target::In, Target::Out] {
        let (uri, body, over) = request(fx, case, target, who).await;
        let r = fx.send(case.method, &uri, over.as_ref().unwrap_or(&cred), body, None).await;
        let ctx = format!("{what} ({target:?}: {uri}): {} {}", r.status, r.text());
        if let Some((status, code)) = denied(case, who) {
            assert_eq!(r.status.as_u16(), status, "{ctx}");
            assert_eq!(r.json()["error"]["code"], code, "{ctx}");
            log.push(format!("{what}: {status}"));
            break; // the same for any target
        }
        match case.kind {
            Kind::Plain => {
                assert_eq!(r.status.as_u16(), (case.ok)(who.unwrap_or(&dummy())), "{ctx}");
                log.push(format!("{what}: {}", r.status.as_u16()));
                break;
            }
            Kind::Id if target == Target::In || sees_out => {
                assert_eq!(r.status.as_u16(), (case.ok)(who.unwrap()), "{ctx}");
            }
            Kind::Id => {
                // Out of scope: exactly what an id that does not exist gets.
                let (muri, mbody, mover) = request(fx, case, Target::Missing, who).await;
                let m =
                    fx.send(case.method, &muri, mover.as_ref().unwrap_or(&cred), mbody, None).await;
                assert_eq!(r.status, StatusCode::NOT_FOUND, "{ctx}");
                assert_eq!(
                    (r.status, normalise(&r.body, &uri, &muri)),
                    (m.status, normalise(&m.body, &muri, &uri)),
                    "{ctx}: out of scope must look like a missing id ({muri})"
                );
            }
            Kind::List(cams) => {
                assert_eq!(r.status.as_u16(), (case.ok)(who.unwrap()), "{ctx}");
                let got = cams(&r.json());
                // Lists with a `camera` parameter are asked for cam2 alone when Out.
                let filtered = target == Target::Out
                    && !matches!(
                        case.path,
                        "/api/v1/feed" | "/api/v1/events/stream" | "/api/v1/cameras"
                    );
                let expected: BTreeSet<String> = match (filtered, sees_out) {
                    (false, true) => ["cam1", "cam2"].map(String::from).into(),
                    (false, false) => ["cam1"].map(String::from).into(),
                    (true, true) => ["cam2"].map(String::from).into(),
                    (true, false) => BTreeSet::new(),
                };
                assert_eq!(got, expected, "{ctx}");
            }
        }
        log.push(format!("{what} {target:?}: {}", r.status.as_u16()));
    }
}

fn dummy() -> Who {
    Who {
        label: "anonymous".into(),
        role: Role::Viewer,
        scope: Sc::All,
        cred: Cred::None,
        user: None,
    }
}

#[test]
fn matrix_covers_every_route() {
    let table: BTreeMap<(String, String), &'static str> =
        cases().iter().map(|c| ((c.method.to_string(), c.path.to_string()), c.access)).collect();
    let mut served = BTreeMap::new();
    for r in routes() {
        for o in &r.ops {
            served.insert((o.method.as_str().to_string(), r.path.to_string()), o.access.as_str());
        }
    }
    for (k, access) in &served {
        let want = table
            .get(k)
            .unwrap_or_else(|| panic!("{} {}: no row in the authorization matrix", k.0, k.1));
        assert_eq!(access, want, "{} {}: the router's access differs from the matrix", k.0, k.1);
    }
    assert_eq!(
        served.len(),
        table.len(),
        "the matrix has rows for operations the router does not serve"
    );
}

/// Every operation × anonymous, the config token, a user session per human role and a
/// token per role, each unscoped, limited to camera cam1 and limited to grid cell C3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_matrix() {
    let fx = Fx::new(AuthConfig::default());
    let mut whos = vec![Who {
        label: "config token".into(),
        role: Role::Admin,
        scope: Sc::All,
        cred: Cred::Bearer(CONFIG_TOKEN.into()),
        user: None,
    }];
    for sc in [Sc::All, Sc::Cam, Sc::Cell] {
        for role in Role::HUMAN {
            let name = format!("{role}-{sc:?}").to_lowercase();
            fx.user(&name, role, sc.scope());
            let (cookie, _) = fx.login(&name, PASSWORD).await;
            whos.push(Who {
                label: format!("user {name}"),
                role,
                scope: sc,
                cred: Cred::Cookie(cookie),
                user: Some(name),
            });
        }
        for role in Role::ALL {
            let name = format!("tok-{role}-{sc:?}").to_lowercase();
            let (_, t) = fx.token(&name, role, sc.scope());
            whos.push(Who {
                label: format!("token {name}"),
                role,
                scope: sc,
                cred: Cred::Bearer(t),
                user: None,
            });
        }
    }
    let mut log = Vec::new();
    for case in cases() {
        check(&fx, &case, None, &mut log).await;
        for w in &whos {
            check(&fx, &case, Some(w), &mut log).await;
        }
    }
    // Sanity: the matrix really ran every combination.
    assert!(log.len() > cases().len() * whos.len(), "{}", log.len());
    // Every review of the matrix is in the audit log with who made it.
    let reviews = fx.audit("event_review");
    let allowed = whos.iter().filter(|w| w.role.can(crate::auth::Permission::Review)).count();
    let expected = allowed * 2
        - whos
            .iter()
            .filter(|w| w.role.can(crate::auth::Permission::Review) && w.scope != Sc::All)
            .count();
    assert_eq!(reviews.len(), expected, "one audit entry per allowed review");

    // Stills, clips, segments and evidence with `?unmasked=1`: `view_unmasked` on top of
    // `see`, audited on every use.
    let stills = [
        "/api/v1/cameras/cam1/latest.jpg?unmasked=1".to_string(),
        format!("/api/v1/events/{}/snapshot.jpg?unmasked=1", fx.event["cam1"]),
        format!("/api/v1/events/{}/clip.mp4?unmasked=1", fx.event["cam1"]),
        format!("/api/v1/recordings/{}/segment.mp4?unmasked=1", fx.segment["cam1"]),
        format!("/api/v1/events/{}/evidence.tar?unmasked=1", fx.event["cam1"]),
    ];
    let mut allowed = 0;
    for w in &whos {
        for uri in &stills {
            let r = fx.send("GET", uri, &w.cred, None, None).await;
            let ctx = format!("GET {uri} as {}: {} {}", w.label, r.status, r.text());
            if w.role.can(crate::auth::Permission::See)
                && w.role.can(crate::auth::Permission::ViewUnmasked)
            {
                assert_eq!(r.status, StatusCode::OK, "{ctx}");
                allowed += 1;
            } else {
                assert_eq!(r.status, StatusCode::FORBIDDEN, "{ctx}");
                assert_eq!(r.json()["error"]["code"], "forbidden", "{ctx}");
            }
        }
    }
    assert!(allowed > 0 && allowed < whos.len() * stills.len(), "{allowed}");
    let uses = fx.audit("view_unmasked");
    assert_eq!(uses.len(), allowed, "one audit entry per unmasked still or video served");
    assert!(uses.iter().all(|e| e.detail.as_ref().unwrap()["camera_id"] == "cam1"));
}

// ---------------------------------------------------------------------------------------
// Sessions, lockout, tokens, users, reviews, audit

fn cookie_attrs(set_cookie: &str) -> BTreeMap<String, String> {
    set_cookie
        .split(';')
        .skip(1)
        .map(|a| {
            let (k, v) = a.trim().split_once('=').unwrap_or((a.trim(), ""));
            (k.to_ascii_lowercase(), v.to_string())
        })
        .collect()
}

/// M5: over a real loopback connection (peer 127.0.0.1), `X-Forwarded-For` is believed
/// only from a listed proxy, and then its rightmost untrusted entry is the client: entries
/// a client wrote itself (spoofed first entries) are not.
#[tokio::test]
async fn proxy_headers_count_only_from_listed_proxies() {
    let base = Fx::new(AuthConfig::default());
    base.user("alice", Role::Viewer, None);
    let login = |proxies: &[&str], xff: &[&str]| {
        let auth = AuthConfig {
            trust_proxy_headers: !proxies.is_empty(),
            trusted_proxies: proxies.iter().map(|p| p.parse().unwrap()).collect(),
            ..AuthConfig::default()
        };
        let st =
            ApiState { auth: AuthSettings::new(auth, base.clock.clone()), ..base.state.clone() };
        let xff: String = xff.iter().map(|v| format!("X-Forwarded-For: {v}\r\n")).collect();
        async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let server = tokio::spawn(serve(listener, router(st), async move {
                let _ = rx.await;
            }));
            let body = json!({"username": "alice", "password": PASSWORD}).to_string();
            let req = format!(
                "POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{xff}\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            let out = tokio::task::spawn_blocking(move || {
                use std::io::{Read, Write};
                let mut s = std::net::TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(std::time::Duration::from_secs(60))).unwrap();
                s.write_all(req.as_bytes()).unwrap();
                let mut out = String::new();
                s.read_to_string(&mut out).unwrap();
                out
            })
            .await
            .unwrap();
            tx.send(()).unwrap();
            server.await.unwrap().unwrap();
            out
        }
    };
    let cases: [(&[&str], &[&str], &str); 6] = [
        // No proxy configured: the header is ignored, the peer is the client.
        (&[], &["6.6.6.6"], "127.0.0.1"),
        // A proxy is configured but this connection did not come from it (a client reaching
        // the box around its proxy): ignored.
        (&["10.9.9.9"], &["6.6.6.6"], "127.0.0.1"),
        // From the proxy: the entry it appended, not the client's spoofed first entries.
        (&["127.0.0.1"], &["6.6.6.6, 7.7.7.7, 198.51.100.7"], "198.51.100.7"),
        // Spoofed entries naming the proxy itself, over two header lines.
        (&["127.0.0.0/8"], &["127.0.0.1, 6.6.6.6", "198.51.100.8, 127.0.0.2"], "198.51.100.8"),
        // Garbage from the client: the proxy stands for it.
        (&["127.0.0.1"], &["nonsense"], "127.0.0.1"),
        (&["127.0.0.1"], &[], "127.0.0.1"),
    ];
    for (i, (proxies, xff, want)) in cases.iter().enumerate() {
        base.clock.advance(Duration::seconds(1));
        let out = login(proxies, xff).await;
        assert!(out.starts_with("HTTP/1.1 200"), "case {i}: {out}");
        let logins = base.audit("login");
        assert_eq!(logins.len(), i + 1, "case {i}");
        let last = logins.iter().max_by_key(|e| e.seq).unwrap();
        assert_eq!(last.address.as_deref(), Some(*want), "case {i}: {proxies:?} {xff:?}");
    }
}

#[tokio::test]
async fn login_sets_a_strict_http_only_cookie_that_expires_and_survives_restarts() {
    let auth = AuthConfig { session_ttl_secs: 3600, ..Default::default() };
    let fx = Fx::new(auth.clone());
    fx.user("alice", Role::Operator, None);
    // Wrong content type: refused before anything else.
    let r = fx
        .send_with(
            "POST",
            "/api/v1/auth/login",
            &Cred::None,
            None,
            None,
            &[("content-type", "application/x-www-form-urlencoded")],
        )
        .await;
    r.error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    // Username case does not matter; the cookie carries the session.
    let r = fx
        .send(
            "POST",
            "/api/v1/auth/login",
            &Cred::None,
            Some(json!({"username": "ALICE", "password": PASSWORD})),
            Some("10.1.1.1"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    assert_eq!(
        (v["user"]["username"].as_str(), v["user"]["role"].as_str()),
        (Some("alice"), Some("operator"))
    );
    assert!(v["user"].get("password_hash").is_none(), "{v}");
    assert_eq!(v["expires_at"], rfc(fx.clock.now() + Duration::hours(1)));
    assert_eq!(r.header(header::CACHE_CONTROL), "no-store");
    let set = r.header(header::SET_COOKIE).to_string();
    let value = set.strip_prefix("gw_session=").unwrap().split(';').next().unwrap().to_string();
    assert_eq!(value.len(), 64, "32 random bytes, hex");
    let attrs = cookie_attrs(&set);
    assert!(attrs.contains_key("httponly"), "{set}");
    assert_eq!(attrs.get("samesite").map(String::as_str), Some("Strict"), "{set}");
    assert_eq!(attrs.get("path").map(String::as_str), Some("/"), "{set}");
    assert_eq!(attrs.get("max-age").map(String::as_str), Some("3600"), "{set}");
    assert!(
        !attrs.contains_key("secure"),
        "plain HTTP without a trusted proxy: no Secure flag: {set}"
    );
    // Only the hash of the session id is stored.
    let stored: String = rusqlite::Connection::open(fx.state.store.db_path())
        .unwrap()
        .query_row("SELECT id_sha256 FROM sessions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored, store::hash_token(&value));
    let cookie = Cred::Cookie(value.clone());
    let me = fx.send("GET", "/api/v1/auth/me", &cookie, None, None).await.json();
    assert_eq!(me["kind"], "user");
    assert_eq!(me["name"], "alice");
    assert_eq!(me["permissions"], json!(["see", "review", "lock", "open_data", "view_unmasked"]));
    assert_eq!(me["session_expires_at"], v["expires_at"]);
    assert_schema("Me", &me);
    assert_schema("User", &v["user"]);

    // A restart: new store handle and router on the same data dir; the session still works.
    let store2 = Store::open(fx.state.store.data_dir()).unwrap();
    let st2 = ApiState { store: store2, ..fx.state.clone() };
    let r = router(st2)
        .oneshot(
            Request::get("/api/v1/events")
                .header(header::COOKIE, format!("gw_session={value}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // Expiry: one second before it still works, at it the session is gone.
    fx.clock.advance(Duration::seconds(3599));
    assert_eq!(fx.send("GET", "/api/v1/events", &cookie, None, None).await.status, StatusCode::OK);
    fx.clock.advance(Duration::seconds(1));
    fx.send("GET", "/api/v1/events", &cookie, None, None)
        .await
        .error(StatusCode::UNAUTHORIZED, "session_expired");

    // Logout ends the session at once and clears the cookie; both are audited.
    let (value, _) = fx.login("alice", PASSWORD).await;
    let cookie = Cred::Cookie(value);
    let r = fx.send("POST", "/api/v1/auth/logout", &cookie, None, Some("10.1.1.1")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        cookie_attrs(r.header(header::SET_COOKIE)).get("max-age").map(String::as_str),
        Some("0")
    );
    fx.send("GET", "/api/v1/events", &cookie, None, None)
        .await
        .error(StatusCode::UNAUTHORIZED, "session_expired");
    let logins = fx.audit("login");
    assert_eq!(logins.len(), 2);
    assert_eq!(
        (logins[1].actor.as_str(), logins[1].address.as_deref()),
        ("user:alice", Some("10.1.1.1"))
    );
    let logouts = fx.audit("logout");
    assert_eq!(
        (logouts.len(), logouts[0].actor.as_str(), logouts[0].target.as_deref()),
        (1, "user:alice", Some("user:alice"))
    );

    // Secure: always, or auto behind a trusted TLS proxy.
    for (cfg, headers, secure) in [
        (AuthConfig { cookie_secure: CookieSecure::Always, ..auth.clone() }, vec![], true),
        (
            AuthConfig {
                cookie_secure: CookieSecure::Never,
                trust_proxy_headers: true,
                trusted_proxies: vec!["192.168.7.7".parse().unwrap()],
                ..auth.clone()
            },
            vec![("x-forwarded-proto", "https")],
            false,
        ),
        (
            AuthConfig {
                trust_proxy_headers: true,
                trusted_proxies: vec!["192.168.7.0/24".parse().unwrap()],
                ..auth.clone()
            },
            vec![("x-forwarded-proto", "https")],
            true,
        ),
        (
            // Not from a listed proxy: its word about TLS does not count.
            AuthConfig {
                trust_proxy_headers: true,
                trusted_proxies: vec!["10.0.0.1".parse().unwrap()],
                ..auth.clone()
            },
            vec![("x-forwarded-proto", "https")],
            false,
        ),
        (
            AuthConfig { trust_proxy_headers: false, ..auth.clone() },
            vec![("x-forwarded-proto", "https")],
            false,
        ),
    ] {
        let st =
            ApiState { auth: AuthSettings::new(cfg.clone(), fx.clock.clone()), ..fx.state.clone() };
        let mut req =
            Request::post("/api/v1/auth/login").header(header::CONTENT_TYPE, "application/json");
        for (k, v) in &headers {
            req = req.header(*k, *v);
        }
        let body = Body::from(json!({"username": "alice", "password": PASSWORD}).to_string());
        let mut req = req.body(body).unwrap();
        req.extensions_mut()
            .insert(ConnectInfo("192.168.7.7:1".parse::<std::net::SocketAddr>().unwrap()));
        let resp = router(st).oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let set = resp.headers()[header::SET_COOKIE].to_str().unwrap().to_string();
        assert_eq!(cookie_attrs(&set).contains_key("secure"), secure, "{cfg:?} {headers:?}: {set}");
    }
    // A bearer header wins over a cookie; a bad one is not rescued by a good cookie.
    let (value, _) = fx.login("alice", PASSWORD).await;
    let r = fx
        .send_with(
            "GET",
            "/api/v1/auth/me",
            &Cred::Bearer("wrong".into()),
            None,
            None,
            &[("cookie", &format!("gw_session={value}"))],
        )
        .await;
    r.error(StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn failed_logins_lock_the_account_from_an_address_slow_it_elsewhere_and_lock_addresses() {
    let auth = AuthConfig {
        max_failed_logins: 5,
        max_failed_logins_per_address: 8,
        failed_login_window_secs: 900,
        lockout_secs: 900,
        slowdown_max_secs: 10,
        ..Default::default()
    };
    let fx = Fx::new(auth);
    fx.user("bob", Role::Viewer, None);
    let login = |user: &str, pw: &str, addr: &str| {
        let body = json!({"username": user, "password": pw});
        let addr = addr.to_string();
        let fx = &fx;
        async move { fx.send("POST", "/api/v1/auth/login", &Cred::None, Some(body), Some(&addr)).await }
    };
    // Four wrong passwords from one address: 401 each, nothing locked yet.
    for _ in 0..4 {
        let r = login("bob", "wrong password!", "10.0.0.9").await;
        r.error(StatusCode::UNAUTHORIZED, "invalid_credentials");
        assert!(!r.text().contains("wrong password!"), "the password is never echoed");
    }
    // The fifth locks bob from that address: 429 with Retry-After and until when.
    let r = login("bob", "wrong password!", "10.0.0.9").await;
    let e = r.error(StatusCode::TOO_MANY_REQUESTS, "account_locked");
    let until = rfc(fx.clock.now() + Duration::minutes(15));
    assert_eq!(e["locked_until"], until);
    let msg = e["message"].as_str().unwrap();
    assert!(
        msg.contains("account `bob` is locked from address 10.0.0.9") && msg.contains(&until),
        "{e}"
    );
    assert_eq!(r.header(header::RETRY_AFTER), "900");
    // While locked even the right password is refused there (and does not reveal it was right).
    fx.clock.advance(Duration::minutes(10));
    let r = login("bob", PASSWORD, "10.0.0.9").await;
    r.error(StatusCode::TOO_MANY_REQUESTS, "account_locked");
    assert_eq!(r.header(header::RETRY_AFTER), "300");
    // From another address bob is not locked out (a stranger cannot lock an account).
    assert_eq!(login("bob", PASSWORD, "10.0.0.10").await.status, StatusCode::OK);
    // The account as a whole (5 failures from anywhere) is slowed: one check per slot,
    // whoever takes it; the slots grow apart (1 s, 2 s, …).
    let r = login("bob", "wrong password!", "10.0.0.11").await;
    r.error(StatusCode::TOO_MANY_REQUESTS, "account_slowed");
    assert_eq!(r.header(header::RETRY_AFTER), "1");
    fx.clock.advance(Duration::seconds(1));
    login("bob", "wrong password!", "10.0.0.11")
        .await
        .error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    login("bob", PASSWORD, "10.0.0.10")
        .await
        .error(StatusCode::TOO_MANY_REQUESTS, "account_slowed");
    fx.clock.advance(Duration::seconds(1));
    assert_eq!(login("bob", PASSWORD, "10.0.0.10").await.status, StatusCode::OK, "in its slot");
    // After the lockout the right password works from 10.0.0.9 and the counts start over.
    fx.clock.advance(Duration::minutes(5));
    assert_eq!(login("bob", PASSWORD, "10.0.0.9").await.status, StatusCode::OK);
    for _ in 0..4 {
        login("bob", "wrong password!", "10.0.1.1")
            .await
            .error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
    assert_eq!(
        login("bob", PASSWORD, "10.0.1.1").await.status,
        StatusCode::OK,
        "4 < 5: not locked; success clears the count"
    );
    login("bob", "wrong password!", "10.0.1.1")
        .await
        .error(StatusCode::UNAUTHORIZED, "invalid_credentials");

    // Per address: eight failures from one address over any names lock the address,
    // including for a user whose own account is fine.
    fx.user("carol", Role::Viewer, None);
    for name in ["x1", "x2", "nobody", "x4", "x5", "x6", "x7"] {
        login(name, "guess guess guess", "192.168.7.7")
            .await
            .error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
    let r = login("x8", "guess guess guess", "192.168.7.7").await;
    let e = r.error(StatusCode::TOO_MANY_REQUESTS, "address_locked");
    assert!(e["message"].as_str().unwrap().contains("address 192.168.7.7"), "{e}");
    login("carol", PASSWORD, "192.168.7.7")
        .await
        .error(StatusCode::TOO_MANY_REQUESTS, "address_locked");
    assert_eq!(
        login("carol", PASSWORD, "192.168.7.8").await.status,
        StatusCode::OK,
        "another address is fine"
    );
    // The lock is stored: it holds across a restart.
    let st2 =
        ApiState { store: Store::open(fx.state.store.data_dir()).unwrap(), ..fx.state.clone() };
    let body = Body::from(json!({"username": "carol", "password": PASSWORD}).to_string());
    let mut req = Request::post("/api/v1/auth/login")
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .unwrap();
    req.extensions_mut()
        .insert(ConnectInfo("192.168.7.7:1".parse::<std::net::SocketAddr>().unwrap()));
    assert_eq!(router(st2).oneshot(req).await.unwrap().status(), StatusCode::TOO_MANY_REQUESTS);

    // Audit: every failure (with the reason, never the password) and both lockouts.
    let failed = fx.audit("login_failed");
    assert_eq!(failed.len(), 5 + 1 + 4 + 1 + 8);
    assert!(failed.iter().any(|e| e.detail.as_ref().unwrap()["reason"] == "unknown user"));
    assert!(failed.iter().any(|e| e.detail.as_ref().unwrap()["reason"] == "wrong password"));
    let locks = fx.audit("login_lockout");
    let targets: BTreeSet<&str> = locks.iter().map(|e| e.target.as_deref().unwrap()).collect();
    assert_eq!(targets, ["account:bob|from:10.0.0.9", "address:192.168.7.7"].into());
    let all =
        serde_json::to_string(&fx.state.store.audit_page(&Default::default()).unwrap().entries)
            .unwrap();
    assert!(
        !all.contains("wrong password!") && !all.contains("guess guess"),
        "no password in the audit log"
    );
}

/// L2: a username or password longer than any valid one is refused with a 400 naming the
/// field, before it is counted, logged or audited; odd characters are escaped in the audit.
#[tokio::test]
async fn over_long_credentials_are_refused_before_they_are_logged() {
    let fx = Fx::new(AuthConfig::default());
    // 1 MiB does not get past the body limit (docs/security.md, "Connection limits").
    let huge = json!({"username": "n".repeat(1 << 20), "password": "whatever pw"});
    let r = fx.send("POST", "/api/v1/auth/login", &Cred::None, Some(huge), Some("10.1.1.1")).await;
    r.error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    // Under the body limit, a name or password longer than any valid one.
    let long = "n".repeat(16 << 10);
    for (body, field) in [
        (json!({"username": long, "password": "whatever pw"}), "username"),
        (json!({"username": "bob", "password": "p".repeat(1025)}), "password"),
    ] {
        let r =
            fx.send("POST", "/api/v1/auth/login", &Cred::None, Some(body), Some("10.1.1.1")).await;
        let e = r.error(StatusCode::BAD_REQUEST, "too_long");
        assert_eq!(e["parameter"], field, "{e}");
        assert!(r.body.len() < 1000, "the answer does not echo the input");
    }
    // A 64-byte name is still a (wrong) login; nothing of the 1 MiB one was audited.
    let name = "m".repeat(64);
    let r = fx
        .send(
            "POST",
            "/api/v1/auth/login",
            &Cred::None,
            Some(json!({"username": name, "password": "whatever pw"})),
            Some("10.1.1.1"),
        )
        .await;
    r.error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    let forged = "x\nINFO forged line";
    fx.send(
        "POST",
        "/api/v1/auth/login",
        &Cred::None,
        Some(json!({"username": forged, "password": "whatever pw"})),
        Some("10.1.1.1"),
    )
    .await
    .error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    let failed = fx.audit("login_failed");
    let targets: BTreeSet<String> = failed.iter().map(|e| e.target.clone().unwrap()).collect();
    assert_eq!(
        targets,
        [format!("user:{name}"), "user:x\\nINFO forged line".to_string()].into(),
        "only the two short attempts, the newline escaped"
    );
    // The password change names its fields too.
    fx.user("dora", Role::Viewer, None);
    let (cookie, _) = fx.login("dora", PASSWORD).await;
    let e = fx
        .send(
            "POST",
            "/api/v1/auth/password",
            &Cred::Cookie(cookie),
            Some(json!({"current_password": "c".repeat(2000), "new_password": "long enough pw"})),
            None,
        )
        .await
        .error(StatusCode::BAD_REQUEST, "too_long");
    assert_eq!(e["parameter"], "current_password");
    // Creating a user with a long name: 400 naming the field, the name not echoed.
    let r = fx
        .send(
            "POST",
            "/api/v1/users",
            &Cred::Bearer(CONFIG_TOKEN.into()),
            Some(json!({"username": long, "password": "long enough pw", "role": "viewer"})),
            None,
        )
        .await;
    assert_eq!(r.error(StatusCode::BAD_REQUEST, "bad_request")["parameter"], "username");
    assert!(r.body.len() < 1000, "the answer does not echo the name");
}

/// M4: a token lives no longer than its creator's right to make it. Deleting the admin who
/// made a token revokes it, and the tokens it made in turn; demoting or disabling an admin
/// does the same. Tokens made on the box (`gridwatch token create`, first run) stay.
#[tokio::test]
async fn tokens_are_revoked_with_their_creator() {
    let fx = Fx::new(AuthConfig::default());
    let root = Cred::Bearer(CONFIG_TOKEN.into());
    let mk_token = |cred: Cred, name: &'static str| {
        let fx = &fx;
        async move {
            let r = fx
                .send(
                    "POST",
                    "/api/v1/tokens",
                    &cred,
                    Some(json!({"name": name, "role": "admin"})),
                    None,
                )
                .await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
            Cred::Bearer(r.json()["token"].as_str().unwrap().to_string())
        }
    };
    let works = |cred: Cred| {
        let fx = &fx;
        async move { fx.send("GET", "/api/v1/users", &cred, None, None).await.status }
    };
    let ann = fx.user("ann", Role::Admin, None);
    let amy = fx.user("amy", Role::Admin, None);
    let (ann_cookie, _) = fx.login("ann", PASSWORD).await;
    let (amy_cookie, _) = fx.login("amy", PASSWORD).await;
    let t1 = mk_token(Cred::Cookie(ann_cookie), "ann's").await;
    let t2 = mk_token(t1.clone(), "made by ann's token").await;
    let t3 = mk_token(Cred::Cookie(amy_cookie), "amy's").await;
    let (_, box_token) = fx.token("on the box", Role::Admin, None);
    let box_token = Cred::Bearer(box_token);
    for t in [&t1, &t2, &t3, &box_token] {
        assert_eq!(works(t.clone()).await, StatusCode::OK);
    }
    // ann is deleted (by another admin): her token and its token stop working.
    let r = fx.send("DELETE", &format!("/api/v1/users/{ann}"), &root, None, None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    for t in [&t1, &t2] {
        fx.send("GET", "/api/v1/users", t, None, None)
            .await
            .error(StatusCode::UNAUTHORIZED, "unauthorized");
        // … and cannot make a new admin.
        let r = fx
            .send(
                "POST",
                "/api/v1/users",
                t,
                Some(json!({"username": "mallory", "password": "long enough pw", "role": "admin"})),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(works(t3.clone()).await, StatusCode::OK, "amy's token is not ann's");
    // amy is demoted: she may no longer make tokens, so hers ends.
    let r = fx
        .send(
            "PATCH",
            &format!("/api/v1/users/{amy}"),
            &root,
            Some(json!({"role": "operator"})),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(works(t3).await, StatusCode::UNAUTHORIZED);
    assert_eq!(works(box_token).await, StatusCode::OK, "a token made on the box stays");
    // Each revocation is audited with its reason, by whoever removed the creator.
    let revoked = fx.audit("token_revoke");
    assert_eq!(revoked.len(), 3, "{revoked:?}");
    assert!(revoked.iter().all(|e| e.actor.starts_with("config-token:")));
    let reasons: BTreeSet<String> = revoked
        .iter()
        .map(|e| e.detail.as_ref().unwrap()["reason"].as_str().unwrap().into())
        .collect();
    assert_eq!(
        reasons,
        [
            "its creator user:ann was deleted".to_string(),
            "its creator user:amy may no longer manage tokens".into()
        ]
        .into()
    );
}

#[tokio::test]
async fn tokens_are_shown_once_scoped_and_revocable() {
    let fx = Fx::new(AuthConfig::default());
    let admin = Cred::Bearer(CONFIG_TOKEN.into());
    // Bad requests name the field.
    let bad = |body: Value, field: &'static str| {
        let fx = &fx;
        let admin = admin.clone();
        async move {
            let e = fx
                .send("POST", "/api/v1/tokens", &admin, Some(body), None)
                .await
                .error(StatusCode::BAD_REQUEST, "bad_request");
            assert_eq!(e["parameter"], field, "{e}");
        }
    };
    bad(json!({"name": "x", "role": "root"}), "role").await;
    bad(json!({"name": "", "role": "platform"}), "name").await;
    bad(json!({"name": "x", "role": "platform", "scope": {"cameras": ["cam7"]}}), "scope").await;
    bad(json!({"name": "x", "role": "platform", "scope": {"cameras": []}}), "scope").await;
    bad(json!({"name": "x", "role": "platform", "scope": {"grid_cells": ["Z9"]}}), "scope").await;
    bad(json!({"name": "x", "role": "platform", "colour": 1}), "colour").await;
    bad(json!({"name": 7, "role": "platform"}), "name").await;

    let r = fx
        .send(
            "POST",
            "/api/v1/tokens",
            &admin,
            Some(json!({"name": "city", "role": "platform", "scope": {"cameras": ["cam1"]}})),
            Some("10.9.9.9"),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(r.header(header::CACHE_CONTROL), "no-store");
    let v = r.json();
    let token = v["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("gw_") && token.len() == 67);
    assert_eq!(
        (v["role"].as_str(), v["created_by"].as_str()),
        (
            Some("platform"),
            Some("config-token:".to_string() + &store::hash_token(CONFIG_TOKEN)[..8]).as_deref()
        )
    );
    let mut t = v.clone();
    t.as_object_mut().unwrap().remove("token");
    assert_schema("Token", &t);
    let id = v["id"].as_str().unwrap().to_string();
    // The list never shows the token again.
    let list = fx.send("GET", "/api/v1/tokens", &admin, None, None).await;
    assert!(!list.text().contains(&token));
    assert_eq!(list.json()["config_tokens"], 1);
    assert!(list.json()["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["id"] == id.as_str()
            && t["scope"] == json!({"cameras": ["cam1"], "grid_cells": []})));
    // The platform token: feed, events, clips of cam1; no review, no admin.
    let tok = Cred::Bearer(token.clone());
    let feed = fx.send("GET", "/api/v1/feed", &tok, None, None).await.json();
    assert!(feed["changes"].as_array().unwrap().iter().all(|c| c["camera_id"] == "cam1"));
    assert_eq!(
        fx.send("GET", &format!("/api/v1/events/{}/clip.mp4", fx.event["cam1"]), &tok, None, None)
            .await
            .status,
        StatusCode::OK
    );
    fx.send("GET", &format!("/api/v1/events/{}/clip.mp4", fx.event["cam2"]), &tok, None, None)
        .await
        .error(StatusCode::NOT_FOUND, "not_found");
    let review = json!({"state": "acknowledged"});
    let uri = format!("/api/v1/events/{}/review", fx.event["cam1"]);
    fx.send("POST", &uri, &tok, Some(review), None).await.error(StatusCode::FORBIDDEN, "forbidden");
    fx.send("GET", "/api/v1/tokens", &tok, None, None)
        .await
        .error(StatusCode::FORBIDDEN, "forbidden");
    let me = fx.send("GET", "/api/v1/auth/me", &tok, None, None).await.json();
    assert_eq!(
        (me["kind"].as_str(), me["name"].as_str(), me["role"].as_str()),
        (Some("token"), Some("city"), Some("platform"))
    );
    assert_eq!(
        me["permissions"],
        json!(["see", "open_data"]),
        "monitor is box-wide: not for a scoped token"
    );
    // Revoke: stops working at once; a second revoke is a 404.
    assert_eq!(
        fx.send("DELETE", &format!("/api/v1/tokens/{id}"), &admin, None, None).await.status,
        StatusCode::NO_CONTENT
    );
    fx.send("GET", "/api/v1/feed", &tok, None, None)
        .await
        .error(StatusCode::UNAUTHORIZED, "unauthorized");
    fx.send("DELETE", &format!("/api/v1/tokens/{id}"), &admin, None, None)
        .await
        .error(StatusCode::NOT_FOUND, "not_found");
    fx.send("DELETE", "/api/v1/tokens/nope", &admin, None, None)
        .await
        .error(StatusCode::BAD_REQUEST, "bad_request");
    // Audited with actor, target, address; the token itself is nowhere in the log.
    let created = fx.audit("token_create");
    let mine =
        created.iter().find(|e| e.target.as_deref() == Some(&format!("token:{id}"))).unwrap();
    assert_eq!(
        (mine.actor.starts_with("config-token:"), mine.role.as_deref(), mine.address.as_deref()),
        (true, Some("admin"), Some("10.9.9.9"))
    );
    assert_eq!(mine.detail.as_ref().unwrap()["role"], "platform");
    let revoked = fx.audit("token_revoke");
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0].target.as_deref(), Some(format!("token:{id}").as_str()));
    let export = fx.send("GET", "/api/v1/audit/export.jsonl", &admin, None, None).await;
    assert!(!export.text().contains(&token));
}

#[tokio::test]
async fn admins_manage_users_and_every_change_is_audited() {
    let fx = Fx::new(AuthConfig::default());
    fx.user("root", Role::Admin, None);
    let (c, _) = fx.login("root", PASSWORD).await;
    let admin = Cred::Cookie(c);
    let post = |body: Value| {
        let (fx, admin) = (&fx, admin.clone());
        async move { fx.send("POST", "/api/v1/users", &admin, Some(body), None).await }
    };
    for (body, field) in [
        (json!({"username": "a b", "password": PASSWORD, "role": "viewer"}), "username"),
        (json!({"username": "dave", "password": "short", "role": "viewer"}), "password"),
        (json!({"username": "dave", "password": PASSWORD, "role": "platform"}), "role"),
        (
            json!({"username": "dave", "password": PASSWORD, "role": "viewer", "scope": {"cameras": ["nope"]}}),
            "scope",
        ),
        (json!({"username": "dave", "role": "viewer"}), "body"),
    ] {
        let e = post(body.clone()).await.error(StatusCode::BAD_REQUEST, "bad_request");
        assert_eq!(e["parameter"], field, "{body}: {e}");
    }
    let r = post(json!({"username": "dave", "password": PASSWORD, "role": "operator", "scope": {"grid_cells": ["C3"]}})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let dave = r.json();
    assert_schema("User", &dave);
    let id = dave["id"].as_str().unwrap().to_string();
    post(json!({"username": "DAVE", "password": PASSWORD, "role": "viewer"}))
        .await
        .error(StatusCode::CONFLICT, "conflict");
    // dave sees only cam1 (grid cell C3), and an event of cam2 tagged with C3.
    let (dc, _) = fx.login("dave", PASSWORD).await;
    let dave_c = Cred::Cookie(dc);
    let tagged =
        fx.event_on("cam2", Some("C3"), OffsetDateTime::now_utc() - Duration::minutes(1), false);
    let evs = fx.send("GET", "/api/v1/events?limit=500", &dave_c, None, None).await.json();
    let seen: BTreeSet<String> = evs["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert!(
        seen.contains(&tagged.to_string())
            && seen.contains(&fx.event["cam1"].to_string())
            && !seen.contains(&fx.event["cam2"].to_string())
    );
    assert_eq!(
        fx.send("GET", &format!("/api/v1/events/{tagged}"), &dave_c, None, None).await.status,
        StatusCode::OK
    );
    let feed = fx.send("GET", "/api/v1/feed", &dave_c, None, None).await.json();
    assert!(feed["changes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["event_id"] == tagged.to_string().as_str()));
    assert!(feed["changes"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["camera_id"] == "cam1" || c["grid_cell"] == "C3"));

    // PATCH: role, scope back to all cameras (null), disabled, password; bad values named.
    let patch = |body: Value| {
        let (fx, admin, id) = (&fx, admin.clone(), id.clone());
        async move { fx.send("PATCH", &format!("/api/v1/users/{id}"), &admin, Some(body), None).await }
    };
    patch(json!({})).await.error(StatusCode::BAD_REQUEST, "bad_request");
    assert_eq!(
        patch(json!({"role": "superuser"})).await.error(StatusCode::BAD_REQUEST, "bad_request")
            ["parameter"],
        "role"
    );
    let v = patch(json!({"role": "viewer", "scope": null})).await.json();
    assert_eq!((v["role"].as_str(), &v["scope"]), (Some("viewer"), &Value::Null));
    // A role change applies to the live session at once.
    fx.send(
        "POST",
        &format!("/api/v1/events/{}/review", fx.event["cam2"]),
        &dave_c,
        Some(json!({"state": "acknowledged"})),
        None,
    )
    .await
    .error(StatusCode::FORBIDDEN, "forbidden");
    let v = patch(json!({"disabled": true})).await.json();
    assert_eq!(v["disabled"], true);
    fx.send("GET", "/api/v1/events", &dave_c, None, None)
        .await
        .error(StatusCode::UNAUTHORIZED, "session_expired");
    fx.send(
        "POST",
        "/api/v1/auth/login",
        &Cred::None,
        Some(json!({"username": "dave", "password": PASSWORD})),
        None,
    )
    .await
    .error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    patch(json!({"disabled": false, "password": "a brand new secret"})).await;
    fx.login("dave", "a brand new secret").await;

    // Admins cannot lock themselves out.
    let root_id = fx.state.store.user_by_name("root").unwrap().unwrap().id;
    for body in [
        json!({"role": "viewer"}),
        json!({"disabled": true}),
        json!({"scope": {"cameras": ["cam1"]}}),
    ] {
        fx.send("PATCH", &format!("/api/v1/users/{root_id}"), &admin, Some(body), None)
            .await
            .error(StatusCode::CONFLICT, "self_lockout");
    }
    fx.send("DELETE", &format!("/api/v1/users/{root_id}"), &admin, None, None)
        .await
        .error(StatusCode::CONFLICT, "self_lockout");

    // Own password: wrong current one is a 400 (and counts as a failed login); tokens have none.
    let wrong = json!({"current_password": "not it at all", "new_password": "another secret!"});
    let e = fx
        .send("POST", "/api/v1/auth/password", &admin, Some(wrong), None)
        .await
        .error(StatusCode::BAD_REQUEST, "wrong_password");
    assert_eq!(e["parameter"], "current_password");
    let weak = json!({"current_password": PASSWORD, "new_password": "short"});
    fx.send("POST", "/api/v1/auth/password", &admin, Some(weak), None)
        .await
        .error(StatusCode::BAD_REQUEST, "bad_request");
    let (other, _) = fx.login("root", PASSWORD).await;
    let change = json!({"current_password": PASSWORD, "new_password": "another secret!"});
    assert_eq!(
        fx.send("POST", "/api/v1/auth/password", &admin, Some(change), None).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        fx.send("GET", "/api/v1/users", &admin, None, None).await.status,
        StatusCode::OK,
        "this session lives on"
    );
    fx.send("GET", "/api/v1/users", &Cred::Cookie(other), None, None)
        .await
        .error(StatusCode::UNAUTHORIZED, "session_expired");
    let tok = json!({"current_password": "x", "new_password": "another secret!"});
    fx.send("POST", "/api/v1/auth/password", &Cred::Bearer(CONFIG_TOKEN.into()), Some(tok), None)
        .await
        .error(StatusCode::BAD_REQUEST, "not_a_user");

    // Delete: 204, then 404; sessions of the deleted user are gone.
    let (dc, _) = fx.login("dave", "a brand new secret").await;
    assert_eq!(
        fx.send("DELETE", &format!("/api/v1/users/{id}"), &admin, None, None).await.status,
        StatusCode::NO_CONTENT
    );
    fx.send("GET", &format!("/api/v1/users/{id}"), &admin, None, None)
        .await
        .error(StatusCode::NOT_FOUND, "not_found");
    fx.send("GET", "/api/v1/events", &Cred::Cookie(dc), None, None)
        .await
        .error(StatusCode::UNAUTHORIZED, "session_expired");

    // The audit log has each change, by root, on dave.
    let on_dave = crate::store::auth::AuditQuery {
        target: Some("user:dave".into()),
        limit: 100,
        ..Default::default()
    };
    let entries = fx.state.store.audit_page(&on_dave).unwrap().entries;
    let actions: Vec<(&str, &str)> =
        entries.iter().rev().map(|e| (e.action.as_str(), e.actor.as_str())).collect();
    assert_eq!(
        actions,
        [
            ("user_create", "user:root"),
            ("login", "user:dave"),
            ("user_update", "user:root"),
            ("user_update", "user:root"),
            ("login_failed", "anonymous"),
            ("user_update", "user:root"),
            ("login", "user:dave"),
            ("login", "user:dave"),
            ("user_delete", "user:root"),
        ]
    );
    let upd = &entries.iter().find(|e| e.action == "user_update").unwrap().detail.as_ref().unwrap()
        ["changed"];
    assert_eq!(
        *upd,
        json!(["password", "disabled"]),
        "the newest update; never the password itself"
    );
    assert!(fx.audit("password_change").iter().any(|e| e.actor == "user:root"));
}

#[tokio::test]
async fn review_workflow_records_who_when_and_why() {
    let fx = Fx::new(AuthConfig::default());
    fx.user("olga", Role::Operator, None);
    let (c, _) = fx.login("olga", PASSWORD).await;
    let op = Cred::Cookie(c);
    let ev = fx.event["cam1"];
    let uri = format!("/api/v1/events/{ev}/review");
    let review = |state: &str, note: Option<&str>| {
        let body = json!({"state": state, "note": note});
        let (fx, op, uri) = (&fx, op.clone(), uri.clone());
        async move { fx.send("POST", &uri, &op, Some(body), Some("10.2.2.2")).await }
    };
    assert_eq!(
        review("closed", None).await.error(StatusCode::BAD_REQUEST, "bad_request")["parameter"],
        "state"
    );
    assert_eq!(
        review("new", None).await.error(StatusCode::BAD_REQUEST, "bad_request")["parameter"],
        "state"
    );
    let long = "n".repeat(MAX_NOTE_CHARS + 1);
    assert_eq!(
        review("acknowledged", Some(&long)).await.error(StatusCode::BAD_REQUEST, "bad_request")
            ["parameter"],
        "note"
    );
    // new → acknowledged → resolved; then it is final.
    fx.clock.advance(Duration::seconds(10));
    let r = review("acknowledged", Some("  on my way  ")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    assert_eq!(
        (v["review"].as_str(), v["reviewed_by"].as_str(), v["review_note"].as_str()),
        (Some("acknowledged"), Some("olga"), Some("on my way"))
    );
    assert_eq!(v["reviewed_at"], rfc(fx.clock.now()));
    assert_schema("Event", &v);
    let e = review("acknowledged", None).await.error(StatusCode::CONFLICT, "invalid_transition");
    assert!(
        e["message"].as_str().unwrap().contains("`acknowledged`")
            && e["message"].as_str().unwrap().contains("resolved, false_alarm"),
        "{e}"
    );
    let v = review("resolved", Some("handled by patrol 7")).await.json();
    assert_eq!(
        (v["review"].as_str(), v["review_note"].as_str()),
        (Some("resolved"), Some("handled by patrol 7"))
    );
    let e = review("false_alarm", None).await.error(StatusCode::CONFLICT, "invalid_transition");
    assert!(e["message"].as_str().unwrap().contains("final"), "{e}");
    // new → false_alarm directly, by a token (reviewed_by names the token).
    let (_, t) = fx.token("ops-bot", Role::Operator, None);
    let uri2 = format!("/api/v1/events/{}/review", fx.event["cam2"]);
    let v = fx
        .send("POST", &uri2, &Cred::Bearer(t), Some(json!({"state": "false_alarm"})), None)
        .await
        .json();
    assert_eq!(
        (v["review"].as_str(), v["reviewed_by"].as_str(), &v["review_note"]),
        (Some("false_alarm"), Some("token:ops-bot"), &Value::Null)
    );
    // Persisted: the event as served later, and in the list.
    let got = fx.send("GET", &format!("/api/v1/events/{ev}"), &op, None, None).await.json();
    assert_eq!(
        (got["review"].as_str(), got["reviewed_by"].as_str()),
        (Some("resolved"), Some("olga"))
    );
    let by_state = |state: &str| {
        let (fx, op, uri) = (&fx, op.clone(), format!("/api/v1/events?review={state}&limit=500"));
        async move {
            let v = fx.send("GET", &uri, &op, None, None).await.json();
            v["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(by_state("resolved").await, [ev.to_string()]);
    assert_eq!(by_state("false_alarm").await, [fx.event["cam2"].to_string()]);
    assert!(by_state("new").await.is_empty());
    let e = fx
        .send("GET", "/api/v1/events?review=done", &op, None, None)
        .await
        .error(StatusCode::BAD_REQUEST, "bad_request");
    assert_eq!(e["parameter"], "review");
    // Audited: from, to, note, camera, by whom, from where.
    let entries = fx.audit("event_review");
    let mine: Vec<_> = entries
        .iter()
        .filter(|e| e.target.as_deref() == Some(&format!("event:{ev}")))
        .rev()
        .collect();
    assert_eq!(mine.len(), 2);
    assert_eq!(
        mine[0].detail.as_ref().unwrap(),
        &json!({"from": "new", "to": "acknowledged", "note": "on my way", "camera_id": "cam1"})
    );
    assert_eq!(mine[1].detail.as_ref().unwrap()["from"], "acknowledged");
    assert_eq!(
        (mine[0].actor.as_str(), mine[0].role.as_deref(), mine[0].address.as_deref()),
        ("user:olga", Some("operator"), Some("10.2.2.2"))
    );
}

/// L6: an audit export is bounded: more than AUDIT_EXPORT_MAX matching entries is a 400
/// `too_many_results` (read no further), and a narrowed export is served.
#[tokio::test]
async fn audit_export_is_limited() {
    let fx = Fx::new(AuthConfig::default());
    let admin = Cred::Bearer(CONFIG_TOKEN.into());
    let max = super::admin::AUDIT_EXPORT_MAX as i64;
    let t0 = store::to_ms(fx.clock.now()) - 1_000_000;
    {
        // As many rows as the limit allows plus one, written at once (the store writes one
        // row per audited action; this is the same table).
        let mut c =
            rusqlite::Connection::open(fx.state.store.data_dir().join(store::DB_FILE)).unwrap();
        c.busy_timeout(std::time::Duration::from_secs(30)).unwrap();
        let tx = c.transaction().unwrap();
        {
            let mut st = tx
                .prepare("INSERT INTO audit (at, actor, role, action, target) VALUES (?1, 'token:x', 'admin', 'probe', ?2)")
                .unwrap();
            for i in 0..=max {
                st.execute(rusqlite::params![t0 + i, format!("t{}", i % 7)]).unwrap();
            }
        }
        tx.commit().unwrap();
    }
    for ext in ["csv", "jsonl"] {
        let r = fx
            .send("GET", &format!("/api/v1/audit/export.{ext}?action=probe"), &admin, None, None)
            .await;
        let e = r.error(StatusCode::BAD_REQUEST, "too_many_results");
        assert!(e["message"].as_str().unwrap().contains("100000"), "{e}");
    }
    let r =
        fx.send("GET", "/api/v1/audit/export.csv?action=probe&target=t3", &admin, None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.text().lines().count() as i64, 1 + (max + 1 + 7 - 1 - 3) / 7);
}

#[tokio::test]
async fn audit_log_filters_pages_and_exports() {
    let fx = Fx::new(AuthConfig::default());
    let admin = Cred::Bearer(CONFIG_TOKEN.into());
    fx.user("erin", Role::Viewer, None);
    for i in 0..7 {
        fx.clock.advance(Duration::seconds(1));
        fx.send("POST", "/api/v1/auth/login", &Cred::None, Some(json!({"username": "erin", "password": if i % 2 == 0 { PASSWORD } else { "nope nope nope" }})), None).await;
    }
    let page = |q: &str| {
        let (fx, admin) = (&fx, admin.clone());
        let uri = format!("/api/v1/audit?{q}");
        async move { fx.send("GET", &uri, &admin, None, None).await }
    };
    // Newest first, a cursor to the next page, filters by action / actor / target / time.
    let mut seqs = Vec::new();
    let mut q = "limit=3".to_string();
    loop {
        let v = page(&q).await.json();
        for e in v["entries"].as_array().unwrap() {
            assert_schema("AuditEntry", e);
            seqs.push(e["seq"].as_i64().unwrap());
        }
        match v["next_before"].as_i64() {
            Some(b) => q = format!("limit=3&before={b}"),
            None => break,
        }
    }
    assert_eq!(seqs.len(), 10, "the fixture's 2 lock_create + user_create + 7 logins");
    assert!(seqs.windows(2).all(|w| w[0] > w[1]));
    assert_eq!(page("action=login").await.json()["entries"].as_array().unwrap().len(), 4);
    assert_eq!(
        page("action=login_failed&actor=anonymous").await.json()["entries"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(page("target=user%3Aerin").await.json()["entries"].as_array().unwrap().len(), 8);
    let since = rfc(fx.clock.now() - Duration::seconds(1));
    assert_eq!(
        page(&format!("since={since}")).await.json()["entries"].as_array().unwrap().len(),
        2
    );
    assert_eq!(
        page("limit=0").await.error(StatusCode::BAD_REQUEST, "bad_request")["parameter"],
        "limit"
    );
    assert_eq!(
        page("who=x").await.error(StatusCode::BAD_REQUEST, "bad_request")["parameter"],
        "who"
    );

    // Exports: everything matching, oldest first.
    let csv =
        fx.send("GET", "/api/v1/audit/export.csv?target=user%3Aerin", &admin, None, None).await;
    assert_eq!(csv.status, StatusCode::OK);
    assert_eq!(csv.header(header::CONTENT_TYPE), "text/csv; charset=utf-8");
    assert!(csv.header(header::CONTENT_DISPOSITION).starts_with("attachment; filename=\"audit-"));
    let text = csv.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "seq,at,actor,role,action,target,address,detail");
    assert_eq!(lines.len(), 9);
    assert!(lines[1].contains(",user_create,user:erin,"), "{}", lines[1]);
    assert!(lines[8].contains(",user:erin,viewer,login,user:erin,"), "{}", lines[8]);
    let jsonl =
        fx.send("GET", "/api/v1/audit/export.jsonl?action=login_failed", &admin, None, None).await;
    assert_eq!(jsonl.header(header::CONTENT_TYPE), "application/x-ndjson");
    let rows: Vec<crate::store::auth::AuditEntry> =
        jsonl.text().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 3);
    assert!(rows.windows(2).all(|w| w[0].seq < w[1].seq));
    fx.send("GET", "/api/v1/audit/export.csv?limit=5", &admin, None, None)
        .await
        .error(StatusCode::BAD_REQUEST, "bad_request");
}

/// The served JSON has exactly the fields docs/openapi.json declares for `schema`
/// (every property required, nothing more).
fn assert_schema(schema: &str, v: &Value) {
    let spec: Value = serde_json::from_str(OPENAPI_JSON).unwrap();
    let s = &spec["components"]["schemas"][schema];
    assert!(s.is_object(), "schema {schema} missing");
    let keys = |x: &Value| -> BTreeSet<String> { x.as_object().unwrap().keys().cloned().collect() };
    let required: BTreeSet<String> =
        s["required"].as_array().unwrap().iter().map(|k| k.as_str().unwrap().to_string()).collect();
    assert_eq!(keys(&s["properties"]), required, "{schema}: every property is required");
    assert_eq!(keys(v), required, "{schema}: served fields differ from the spec: {v}");
}

/// Issue 17: evidence locks through the API: validation, a lock on an unknown event is a
/// 404, unlock is admin-only and audited; the storage status shows the locks; the evidence
/// key is served; a range without footage is a 404 naming camera and span.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_locks_storage_status_and_evidence_errors() {
    let fx = Fx::new(AuthConfig::default());
    fx.user("olga", Role::Operator, None);
    fx.user("root", Role::Admin, None);
    let op = Cred::Cookie(fx.login("olga", PASSWORD).await.0);
    let admin = Cred::Cookie(fx.login("root", PASSWORD).await.0);
    let ev = fx.event["cam1"];
    let post = |cred: &Cred, body: Value| {
        let (fx, cred) = (&fx, cred.clone());
        async move { fx.send("POST", "/api/v1/locks", &cred, Some(body), Some("10.3.3.3")).await }
    };
    // Bad input.
    let unknown = Uuid::now_v7();
    let r = post(&op, json!({"event_id": unknown, "reason": "case 9"})).await;
    let e = r.error(StatusCode::NOT_FOUND, "not_found");
    assert!(e["message"].as_str().unwrap().contains("event_id"), "{e}");
    let r = post(&op, json!({"event_id": ev, "reason": "   "})).await;
    assert_eq!(r.error(StatusCode::BAD_REQUEST, "bad_request")["parameter"], "reason");
    let r = post(&op, json!({"event_id": ev, "camera": "cam1", "reason": "x"})).await;
    assert_eq!(r.error(StatusCode::BAD_REQUEST, "bad_request")["parameter"], "body");
    let t = rfc(fx.clock.now());
    let r = post(&op, json!({"camera": "cam1", "start": t, "end": t, "reason": "x"})).await;
    assert_eq!(r.error(StatusCode::BAD_REQUEST, "bad_request")["parameter"], "end");
    let r = post(&op, json!({"camera": "cam9", "start": t, "end": rfc(fx.clock.now() + Duration::minutes(1)), "reason": "x"})).await;
    r.error(StatusCode::NOT_FOUND, "not_found");

    // An operator locks the event; the lock is listed, audited and in the storage status.
    let r = post(&op, json!({"event_id": ev, "reason": "  case 9: hit and run "})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let lock = r.json();
    assert_schema("EvidenceLock", &lock);
    assert_eq!(
        (lock["reason"].as_str(), lock["created_by"].as_str()),
        (Some("case 9: hit and run"), Some("olga"))
    );
    assert_eq!(
        (lock["event_id"].as_str(), lock["active"].as_bool()),
        (Some(ev.to_string().as_str()), Some(true))
    );
    let id = lock["id"].as_str().unwrap().to_string();
    let audit = fx.audit("lock_create");
    let a = audit.iter().find(|a| a.target.as_deref() == Some(&format!("lock:{id}"))).unwrap();
    assert_eq!((a.actor.as_str(), a.address.as_deref()), ("user:olga", Some("10.3.3.3")));
    assert_eq!(a.detail.as_ref().unwrap()["reason"], "case 9: hit and run");
    let list =
        fx.send("GET", "/api/v1/locks?camera=cam1&active=true", &op, None, None).await.json();
    assert!(list["locks"].as_array().unwrap().iter().any(|l| l["id"] == id.as_str()));
    let status = fx.send("GET", "/api/v1/storage", &admin, None, None).await;
    assert_eq!(status.status, StatusCode::OK, "{}", status.text());
    let status = status.json();
    assert_schema("StorageStatus", &status);
    assert_eq!(status["active_locks"], 3, "{status}"); // + the fixture's range lock per camera
    assert!(status["locked_bytes"].as_u64().unwrap() >= 10, "the locked clip counts: {status}");

    // Unlock: the operator may not, the admin may, once, with a reason; audited.
    let unlock = format!("/api/v1/locks/{id}/unlock");
    let r = fx.send("POST", &unlock, &op, Some(json!({"reason": "done"})), None).await;
    r.error(StatusCode::FORBIDDEN, "forbidden");
    let r = fx.send("POST", &unlock, &admin, Some(json!({"reason": ""})), None).await;
    assert_eq!(r.error(StatusCode::BAD_REQUEST, "bad_request")["parameter"], "reason");
    let r = fx.send("POST", &unlock, &admin, Some(json!({"reason": "case closed"})), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    assert_eq!((v["active"].as_bool(), v["released_by"].as_str()), (Some(false), Some("root")));
    let r = fx.send("POST", &unlock, &admin, Some(json!({"reason": "again"})), None).await;
    r.error(StatusCode::CONFLICT, "conflict");
    let missing = format!("/api/v1/locks/{}/unlock", Uuid::now_v7());
    let r = fx.send("POST", &missing, &admin, Some(json!({"reason": "x"})), None).await;
    r.error(StatusCode::NOT_FOUND, "not_found");
    let rel = fx.audit("lock_release");
    assert_eq!(rel.len(), 1);
    assert_eq!(rel[0].actor, "user:root");
    assert_eq!(rel[0].detail.as_ref().unwrap()["reason"], "case closed");
    assert_eq!(rel[0].detail.as_ref().unwrap()["locked_by"], "olga");

    // The uplink carries both changes.
    let feed = fx.state.store.feed_page(0, 1000).unwrap();
    let lock_changes: Vec<String> = feed
        .changes
        .iter()
        .map(|(_, j)| serde_json::from_str::<Value>(j).unwrap())
        .filter(|e| e["kind"] == "evidence_lock" && e["detail"]["id"] == id.as_str())
        .map(|e| e["change"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(lock_changes, ["locked", "unlocked"]);

    // The evidence key, and a range without footage: 404 naming camera and span.
    let k = fx.send("GET", "/api/v1/evidence/key", &op, None, None).await.json();
    assert_schema("EvidenceKey", &k);
    let pk = crate::evidence::BoxKey::public_of(fx.state.store.data_dir()).unwrap().unwrap();
    assert_eq!(k["public_key"], pk.public_base64());
    let s = fx.clock.now() - Duration::hours(10);
    let uri = format!(
        "/api/v1/recordings/evidence.tar?camera=cam1&start={}&end={}",
        rfc(s),
        rfc(s + Duration::seconds(60))
    );
    let e = fx.send("GET", &uri, &op, None, None).await.error(StatusCode::NOT_FOUND, "no_footage");
    let msg = e["message"].as_str().unwrap();
    assert!(msg.contains("cam1") && msg.contains("no recorded footage"), "{msg}");
    // An export is audited (the fixture's event package: its stored clip and snapshot).
    let r = fx.send("GET", &format!("/api/v1/events/{ev}/evidence.tar"), &op, None, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header(header::CONTENT_TYPE), "application/x-tar");
    let a = fx.audit("evidence_export");
    assert_eq!(a.len(), 1);
    assert_eq!(
        (a[0].actor.as_str(), a[0].target.clone()),
        ("user:olga", Some(format!("event:{ev}")))
    );
    let tar = fx.state.store.data_dir().join("downloaded.tar");
    std::fs::write(&tar, &r.body).unwrap();
    let v = crate::evidence::verify(&tar, Some(&pk)).unwrap();
    let names: Vec<&str> = v.manifest.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["video.mp4", "snapshot.jpg", "event.json"]);
    assert_eq!(v.manifest.exported_by, "user:olga");
    assert_eq!(v.manifest.box_id, "box-acl");
}

// ---------------------------------------------------------------------------------------
// Masking of stills (docs/security.md "Masking")

/// A viewer gets the snapshot of a real street frame with the face filled; the original
/// on disk is unchanged; an operator's `?unmasked=1` gets the original bytes and is audited.
#[tokio::test]
async fn viewer_gets_a_masked_snapshot_and_unmasked_is_audited() {
    let clip = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/media/people/people-street-crosswalk-720p.mp4");
    if !clip.is_file() {
        eprintln!("skipping: {} not found (test-only footage)", clip.display());
        return;
    }
    let fx = Fx::new(AuthConfig::default());
    let mut still = crate::masking::frame_of(&clip, 15).unwrap();
    still.camera_id = Arc::from("cam1");
    let id = Uuid::now_v7();
    let at = fx.clock.now() - Duration::minutes(5);
    let mut ch = EventChange::bare(id, Change::Started, "cam1", "presence", Severity::High, at);
    ch.snapshot = Some(still);
    fx.state.store.apply(&ch).unwrap();
    let path = fx.state.store.snapshot_file(&fx.state.store.get_event(id).unwrap().unwrap());
    let original = std::fs::read(path.unwrap()).unwrap();

    let (_, viewer) = fx.token("viewer", Role::Viewer, None);
    let uri = format!("/api/v1/events/{id}/snapshot.jpg");
    let r = fx.send("GET", &uri, &Cred::Bearer(viewer.clone()), None, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let masked = image::load_from_memory(&r.body).unwrap().to_rgb8();
    let orig = image::load_from_memory(&original).unwrap().to_rgb8();
    assert_eq!(masked.dimensions(), (1280, 720));
    // The face (about 26 px wide, centred near (244, 351); checked by eye): every pixel is
    // the fill within JPEG's error, so nothing of the original is left there.
    let mut diff = 0u64;
    for y in 339..363 {
        for x in 232..256 {
            let (m, o) = (masked.get_pixel(x, y), orig.get_pixel(x, y));
            for c in 0..3 {
                let d = (m[c] as i32 - crate::masking::FILL as i32).abs();
                assert!(d <= 12, "pixel ({x}, {y}) is {m:?}, not the fill");
                diff += (m[c] as i32 - o[c] as i32).unsigned_abs() as u64;
            }
        }
    }
    assert!(diff / (24 * 24 * 3) >= 20, "the face was grey already? mean difference {diff}");
    // Far from any person or vehicle the picture is the original (re-encoded).
    let (m, o) = (masked.get_pixel(640, 700), orig.get_pixel(640, 700));
    assert!((0..3).all(|c| (m[c] as i32 - o[c] as i32).abs() <= 12), "{m:?} vs {o:?}");
    let path = fx.state.store.snapshot_file(&fx.state.store.get_event(id).unwrap().unwrap());
    assert_eq!(std::fs::read(path.unwrap()).unwrap(), original, "the original is untouched");

    // A viewer may not ask for the original; an operator may, and it is audited.
    let r = fx.send("GET", &format!("{uri}?unmasked=1"), &Cred::Bearer(viewer), None, None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    assert!(fx.audit("view_unmasked").is_empty());
    let (_, op) = fx.token("op", Role::Operator, None);
    let r =
        fx.send("GET", &format!("{uri}?unmasked=1"), &Cred::Bearer(op.clone()), None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, original);
    let uses = fx.audit("view_unmasked");
    assert_eq!(uses.len(), 1);
    assert!(uses[0].actor.starts_with("token:"), "{:?}", uses[0]);
    assert_eq!(uses[0].target.as_deref(), Some(format!("event:{id}").as_str()));
    // Without `unmasked`, an operator too gets the masked view (not audited).
    let r = fx.send("GET", &uri, &Cred::Bearer(op), None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_ne!(r.body, original);
    assert_eq!(fx.audit("view_unmasked").len(), 1);
    // A bad value names the parameter.
    let r = fx
        .send("GET", &format!("{uri}?unmasked=yes"), &Cred::Bearer(CONFIG_TOKEN.into()), None, None)
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error"]["parameter"], "unmasked");
}

/// When masking cannot run, the masked view is refused (503), never served raw: with no
/// masker loaded, and with a masker that fails on the still.
#[tokio::test]
async fn masking_failure_refuses_the_masked_view() {
    let fx = Fx::new(AuthConfig::default());
    let (_, viewer) = fx.token("viewer", Role::Viewer, None);
    let viewer = Cred::Bearer(viewer);
    let snap = format!("/api/v1/events/{}/snapshot.jpg", fx.event["cam1"]);
    let latest = "/api/v1/cameras/cam1/latest.jpg".to_string();

    // No masker (the face model could not be loaded).
    let mut broken = Fx::new(AuthConfig::default());
    broken.state.media.masker = Err("face model models/x.toml: not found".into());
    broken.app = router(broken.state.clone());
    let (_, v) = broken.token("viewer", Role::Viewer, None);
    let snap2 = format!("/api/v1/events/{}/snapshot.jpg", broken.event["cam1"]);
    for uri in [&snap2, &latest] {
        let r = broken.send("GET", uri, &Cred::Bearer(v.clone()), None, None).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
        let e = r.json();
        assert_eq!(e["error"]["code"], "masking_unavailable");
        assert!(e["error"]["message"].as_str().unwrap().contains("models/x.toml"), "{e}");
        // The original is still there for those allowed to ask for it.
        let admin = Cred::Bearer(CONFIG_TOKEN.into());
        let r = broken.send("GET", &format!("{uri}?unmasked=1"), &admin, None, None).await;
        assert_eq!(r.status, StatusCode::OK);
    }

    // A masker that fails on this still: the stored snapshot is not a JPEG.
    let path =
        fx.state.store.snapshot_file(&fx.state.store.get_event(fx.event["cam1"]).unwrap().unwrap());
    std::fs::write(path.unwrap(), b"\xff\xd8 not really a jpeg").unwrap();
    let r = fx.send("GET", &snap, &viewer, None, None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "masking_unavailable");
    assert!(!r.body.starts_with(b"\xff\xd8"));
}

// ---------------------------------------------------------------------------------------
// Masking of clips, segments and evidence (docs/security.md "Masking", ADR 0045)

/// A viewer gets the event clip of a real street clip masked (decoded, masked, encoded):
/// the face of the woman walking toward the camera is the fill on a frame between the
/// masker's runs; the copy is cached (the same bytes again); `?unmasked=1` is refused to the
/// viewer and gives an operator the original bytes, audited. The operator's evidence
/// package is masked by default (`masked: true`) and verifies; with `?unmasked=1` it
/// carries the original.
#[tokio::test]
async fn viewer_gets_a_masked_clip_and_unmasked_is_audited() {
    let clip = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/media/people/people-street-crosswalk-720p.mp4");
    if !clip.is_file() {
        eprintln!("skipping: {} not found (test-only footage)", clip.display());
        return;
    }
    let fx = Fx::new(AuthConfig::default());
    let ev = fx.event["cam1"];
    let original = std::fs::read(&clip).unwrap();
    fx.write(&format!("clips/{ev}.mp4"), &original);
    let (_, viewer) = fx.token("viewer", Role::Viewer, None);
    let uri = format!("/api/v1/events/{ev}/clip.mp4");
    let r = fx.send("GET", &uri, &Cred::Bearer(viewer.clone()), None, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header(header::CONTENT_TYPE), "video/mp4");
    assert_ne!(r.body, original);
    let file = fx.state.store.data_dir().join("masked-download.mp4");
    std::fs::write(&file, &r.body).unwrap();
    let masked = crate::masked_video::tests::decode_all(&file);
    let orig = crate::masked_video::tests::decode_all(&clip);
    assert_eq!(masked.len(), orig.len());
    // Frame 15 (runs at 0, 6, 12, 18, …): the face, about 26 px wide centred near
    // (244, 351) (checked by eye), is the fill within the encoder's error.
    let (m, o, w) = (&masked[15].0, &orig[15].0, masked[15].1 as usize);
    let mut diff = 0u64;
    for y in 339..363 {
        for x in 232..256 {
            let p = (y * w + x) * 3;
            for c in 0..3 {
                let d = (m[p + c] as i32 - crate::masking::FILL as i32).abs();
                assert!(d <= 16, "pixel ({x}, {y}) is {:?}, not the fill", &m[p..p + 3]);
                diff += (m[p + c] as i32 - o[p + c] as i32).unsigned_abs() as u64;
            }
        }
    }
    assert!(diff / (24 * 24 * 3) >= 20, "the face was grey already? mean difference {diff}");
    // Cached: the same masked bytes again, with ranges.
    let r2 = fx.send("GET", &uri, &Cred::Bearer(viewer.clone()), None, None).await;
    assert_eq!((r2.status, &r2.body), (StatusCode::OK, &r.body));
    // The original is untouched; the viewer may not have it; an operator may, audited.
    assert_eq!(
        std::fs::read(fx.state.store.media_path(&format!("clips/{ev}.mp4")).unwrap()).unwrap(),
        original
    );
    let r = fx.send("GET", &format!("{uri}?unmasked=1"), &Cred::Bearer(viewer), None, None).await;
    r.error(StatusCode::FORBIDDEN, "forbidden");
    assert!(fx.audit("view_unmasked").is_empty());
    let (_, op) = fx.token("op", Role::Operator, None);
    let op = Cred::Bearer(op);
    let r = fx.send("GET", &format!("{uri}?unmasked=1"), &op, None, None).await;
    assert_eq!((r.status, r.body == original), (StatusCode::OK, true));
    let uses = fx.audit("view_unmasked");
    assert_eq!(uses.len(), 1);
    assert_eq!(uses[0].target.as_deref(), Some(format!("event:{ev}").as_str()));

    // Evidence: masked by default, says so, verifies; unmasked on request (audited).
    let pk = || crate::evidence::BoxKey::public_of(fx.state.store.data_dir()).unwrap().unwrap();
    let tar = fx.state.store.data_dir().join("package.tar");
    let r = fx.send("GET", &format!("/api/v1/events/{ev}/evidence.tar"), &op, None, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    std::fs::write(&tar, &r.body).unwrap();
    let v = crate::evidence::verify(&tar, Some(&pk())).unwrap();
    assert!(v.manifest.masked);
    let (orig_sha, _) = crate::evidence::sha256_file(&clip).unwrap();
    let video = v.manifest.files.iter().find(|f| f.name == "video.mp4").unwrap();
    assert_ne!(video.sha256, orig_sha, "the package carries the masked copy");
    assert_eq!(fx.audit("view_unmasked").len(), 1);
    let r = fx
        .send("GET", &format!("/api/v1/events/{ev}/evidence.tar?unmasked=1"), &op, None, None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    std::fs::write(&tar, &r.body).unwrap();
    let v = crate::evidence::verify(&tar, Some(&pk())).unwrap();
    assert!(!v.manifest.masked);
    let video = v.manifest.files.iter().find(|f| f.name == "video.mp4").unwrap();
    assert_eq!(video.sha256, orig_sha, "the package carries the original");
    assert_eq!(fx.audit("view_unmasked").len(), 2);
    let exports = fx.audit("evidence_export");
    assert_eq!(exports.len(), 2);
    assert_eq!(exports[1].detail.as_ref().unwrap()["masked"], true, "{:?}", exports[1]);
}

/// When masking cannot run, masked clips, segments and evidence are refused (503), never
/// served raw: with no masker loaded, and with a masker that fails on the file.
#[tokio::test]
async fn masking_failure_refuses_masked_video() {
    let mut broken = Fx::new(AuthConfig::default());
    broken.state.media.masker = Err("face model models/x.toml: not found".into());
    broken.app = router(broken.state.clone());
    let (_, v) = broken.token("viewer", Role::Viewer, None);
    let ev = broken.event["cam1"];
    let uris = [
        format!("/api/v1/events/{ev}/clip.mp4"),
        format!("/api/v1/recordings/{}/segment.mp4", broken.segment["cam1"]),
        format!("/api/v1/events/{ev}/evidence.tar"),
    ];
    for uri in &uris {
        let r = broken.send("GET", uri, &Cred::Bearer(v.clone()), None, None).await;
        let e = r.error(StatusCode::SERVICE_UNAVAILABLE, "masking_unavailable");
        assert!(e["message"].as_str().unwrap().contains("models/x.toml"), "{uri}: {e}");
        // The original is still there for those allowed to ask for it.
        let admin = Cred::Bearer(CONFIG_TOKEN.into());
        let r = broken.send("GET", &format!("{uri}?unmasked=1"), &admin, None, None).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}: {}", r.text());
    }
    assert!(broken
        .audit("evidence_export")
        .iter()
        .all(|a| a.detail.as_ref().unwrap()["masked"] == false));

    // A masker that fails on the file: the stored clip is not a video.
    let fx = Fx::new(AuthConfig::default());
    let ev = fx.event["cam1"];
    fx.write(&format!("clips/{ev}.mp4"), b"\x00\x00\x00\x18ftypmp42 not really a video");
    let (_, v) = fx.token("viewer", Role::Viewer, None);
    for uri in
        [format!("/api/v1/events/{ev}/clip.mp4"), format!("/api/v1/events/{ev}/evidence.tar")]
    {
        let r = fx.send("GET", &uri, &Cred::Bearer(v.clone()), None, None).await;
        r.error(StatusCode::SERVICE_UNAVAILABLE, "masking_unavailable");
        assert!(!r.body.windows(4).any(|w| w == b"ftyp"), "{uri}: raw bytes served");
    }
    let left: Vec<_> = std::fs::read_dir(fx.state.store.clips_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("export-"))
        .collect();
    assert!(left.is_empty(), "files left behind: {left:?}");
}

/// A viewer's export of a range of real footage (a recorded segment: the street clip) is
/// masked end to end (remuxed, decoded, masked, encoded) and leaves no file behind; an
/// operator's range evidence package is masked by default and verifies.
#[tokio::test]
async fn masked_export_and_range_evidence_of_real_footage() {
    let clip = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/media/people/people-street-crosswalk-720p.mp4");
    if !clip.is_file() {
        eprintln!("skipping: {} not found (test-only footage)", clip.display());
        return;
    }
    let fx = Fx::new(AuthConfig::default());
    let start = fx.clock.now() - Duration::hours(5);
    let rel = "recordings/cam1/street/1-00000.mp4".to_string();
    fx.write(&rel, &std::fs::read(&clip).unwrap());
    fx.state
        .store
        .insert_segment(&NewSegment {
            camera_id: "cam1".into(),
            path: rel,
            start,
            end: start + Duration::seconds(3),
            start_pts_ns: None,
            end_pts_ns: None,
            bytes: 656_194,
            codec: "h264".into(),
            frames: Some(90),
            recovered: false,
        })
        .unwrap();
    let span =
        format!("camera=cam1&start={}&end={}", rfc(start), rfc(start + Duration::seconds(3)));
    let (_, viewer) = fx.token("viewer", Role::Viewer, None);
    let r = fx
        .send(
            "GET",
            &format!("/api/v1/recordings/export.mp4?{span}"),
            &Cred::Bearer(viewer),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let file = fx.state.store.data_dir().join("export-download.mp4");
    std::fs::write(&file, &r.body).unwrap();
    let masked = crate::masked_video::tests::decode_all(&file);
    let orig = crate::masked_video::tests::decode_all(&clip);
    assert_eq!(masked.len(), orig.len());
    // The face of frame 15 (centred near (244, 351), about 26 px wide) is the fill.
    let (m, w) = (&masked[15].0, masked[15].1 as usize);
    for y in 341..361 {
        for x in 234..254 {
            let p = (y * w + x) * 3;
            assert!(
                (0..3).all(|c| (m[p + c] as i32 - crate::masking::FILL as i32).abs() <= 16),
                "pixel ({x}, {y}) is {:?}",
                &m[p..p + 3]
            );
        }
    }
    std::fs::remove_file(&file).unwrap();
    let left: Vec<_> = std::fs::read_dir(fx.state.store.clips_dir())
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("export-") || n.ends_with(".tmp"))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "files left behind: {left:?}");

    let (_, op) = fx.token("op", Role::Operator, None);
    let r = fx
        .send(
            "GET",
            &format!("/api/v1/recordings/evidence.tar?{span}"),
            &Cred::Bearer(op),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let tar = fx.state.store.data_dir().join("range.tar");
    std::fs::write(&tar, &r.body).unwrap();
    let pk = crate::evidence::BoxKey::public_of(fx.state.store.data_dir()).unwrap().unwrap();
    let v = crate::evidence::verify(&tar, Some(&pk)).unwrap();
    assert!(v.manifest.masked);
    assert_eq!(v.manifest.frames, Some(orig.len() as u64));
    assert!(fx.audit("view_unmasked").is_empty());
}
