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
use crate::config::{AuthConfig, CameraConfig, CookieSecure, RecordConfig};
use crate::record::clock::{Clock, SimClock};
use crate::store::auth::NewAudit;
use crate::store::recordings::{Clip, NewSegment};
use crate::types::{BBox, Change, CountDelta, Detection, EventChange, Frame, OccupancyDelta, Severity};

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
    CameraHealth::new(&cfg)
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
        let now = OffsetDateTime::now_utc();
        let clock = Arc::new(SimClock::new(now));
        let rec = RecordConfig { segment_secs: 4.0, ..Default::default() };
        let state = ApiState {
            store,
            registry,
            box_id: "box-acl".into(),
            config_token_hashes: vec![store::hash_token(CONFIG_TOKEN)],
            started_at: now,
            media: MediaSettings {
                recording: Arc::new(["cam1", "cam2"].iter().map(|c| (c.to_string(), rec.clone())).collect()),
                max_export_secs: 600.0,
            },
            auth: AuthSettings { config: auth, clock: clock.clone() },
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
            fx.write(&rel, b"clip bytes");
            let clip = Clip { event_id: ev, path: rel, start: t, end: t + Duration::seconds(10), bytes: 10 };
            fx.state.store.put_clip(&clip).unwrap();
            fx.event.insert(cam, ev);
            let rel = format!("recordings/{cam}/20260501/1-00000.mp4");
            fx.write(&rel, b"segment bytes");
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
            fx.state
                .store
                .add_counts(&[CountDelta {
                    camera_id: cam.into(),
                    line: "gate".into(),
                    class: "person".into(),
                    direction: crate::geometry::CrossDir::AToB,
                    at: t,
                    count: 3,
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
        ch.objects = vec![Detection::new(0, "person", 0.9, BBox { x1: 0.1, y1: 0.1, x2: 0.5, y2: 0.9 })];
        ch.snapshot = snapshot.then(|| frame(cam));
        self.state.store.apply(&ch).unwrap();
        let end = EventChange::bare(id, Change::Ended, cam, "presence", Severity::High, at + Duration::seconds(5));
        self.state.store.apply(&end).unwrap();
        id
    }

    fn user(&self, name: &str, role: Role, scope: Option<Scope>) -> Uuid {
        let a = NewAudit::new("test", None, "user_create").target(format!("user:{name}"));
        self.state.store.create_user(name, &self.hash, role, scope.as_ref(), &a, self.clock.now()).unwrap().id
    }

    fn token(&self, name: &str, role: Role, scope: Option<Scope>) -> (Uuid, String) {
        let t = store::generate_token();
        let info = self
            .state
            .store
            .create_token(name, &store::hash_token(&t), role, scope.as_ref(), "test", |id| {
                NewAudit::new("test", None, "token_create").target(format!("token:{id}"))
            }, self.clock.now())
            .unwrap();
        (info.id, t)
    }

    async fn send(&self, method: &str, uri: &str, cred: &Cred, body: Option<Value>, addr: Option<&str>) -> Resp {
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
        let body = resp.into_body().collect().await.unwrap().to_bytes().to_vec();
        Resp { status, headers, body }
    }

    /// Logs in; returns the session cookie's value and the whole `Set-Cookie` header.
    async fn login(&self, user: &str, password: &str) -> (String, String) {
        let r = self.send("POST", "/api/v1/auth/login", &Cred::None, Some(json!({"username": user, "password": password})), None).await;
        assert_eq!(r.status, StatusCode::OK, "login {user}: {}", r.text());
        let set = r.header(header::SET_COOKIE).to_string();
        let value = set.strip_prefix(&format!("{SESSION_COOKIE}=")).unwrap().split(';').next().unwrap().to_string();
        (value, set)
    }

    fn audit(&self, action: &str) -> Vec<crate::store::auth::AuditEntry> {
        let q = crate::store::auth::AuditQuery { action: Some(action.into()), limit: 1000, ..Default::default() };
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
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
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
    v[list].as_array().unwrap_or_else(|| panic!("no `{list}` in {v}")).iter().map(|x| x[field].as_str().unwrap().to_string()).collect()
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
        if w.user.is_some() { 204 } else { 400 }
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
        c("GET", "/api/v1/stats/counts", "see", Kind::List(|v| ids(v, "counts", "camera_id")), ok200),
        c("GET", "/api/v1/stats/occupancy", "see", Kind::List(|v| ids(v, "occupancy", "camera_id")), ok200),
        c("GET", "/api/v1/events/{id}/clip.mp4", "see", Kind::Id, ok200),
        c("GET", "/api/v1/recordings", "see", Kind::List(|v| ids(v, "recordings", "camera_id")), ok200),
        c("GET", "/api/v1/recordings/export.mp4", "see", Kind::Id, pending),
        c("GET", "/api/v1/recordings/{id}/segment.mp4", "see", Kind::Id, ok200),
        c("GET", "/api/v1/feed", "see", Kind::List(|v| ids(v, "changes", "camera_id")), ok200),
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
async fn request(fx: &Fx, case: &Case, target: Target, who: Option<&Who>) -> (String, Option<Value>, Option<Cred>) {
    let cam = target.cam();
    let event = match target {
        Target::Missing => Uuid::now_v7(),
        t => fx.event[t.cam()],
    };
    let n = Uuid::now_v7().simple().to_string();
    let uri = |p: &str| p.to_string();
    match (case.method, case.path) {
        (_, "/api/v1/cameras/{id}") => (format!("/api/v1/cameras/{cam}"), None, None),
        (_, "/api/v1/cameras/{id}/latest.jpg") => (format!("/api/v1/cameras/{cam}/latest.jpg"), None, None),
        (_, "/api/v1/events/{id}") => (format!("/api/v1/events/{event}"), None, None),
        (_, "/api/v1/events/{id}/snapshot.jpg") => (format!("/api/v1/events/{event}/snapshot.jpg"), None, None),
        (_, "/api/v1/events/{id}/clip.mp4") => (format!("/api/v1/events/{event}/clip.mp4"), None, None),
        (_, "/api/v1/events/{id}/review") => {
            // A fresh event each time, so that `new → acknowledged` is allowed.
            let id = match target {
                Target::Missing => Uuid::now_v7(),
                t => fx.event_on(t.cam(), None, OffsetDateTime::now_utc() - Duration::minutes(5), false),
            };
            (format!("/api/v1/events/{id}/review"), Some(json!({"state": "acknowledged", "note": "seen"})), None)
        }
        (_, "/api/v1/recordings/{id}/segment.mp4") => {
            let seg = match target {
                Target::Missing => 999_999,
                t => fx.segment[t.cam()],
            };
            (format!("/api/v1/recordings/{seg}/segment.mp4"), None, None)
        }
        (_, "/api/v1/recordings/export.mp4") => {
            let (s, e) = &fx.export_span;
            (format!("/api/v1/recordings/export.mp4?camera={cam}&start={s}&end={e}"), None, None)
        }
        (_, "/api/v1/events" | "/api/v1/stats/counts" | "/api/v1/stats/occupancy" | "/api/v1/recordings") => match target {
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
            Some(user) => (uri(case.path), None, Some(Cred::Cookie(fx.login(user, PASSWORD).await.0))),
            None => (uri(case.path), None, None),
        },
        ("POST", "/api/v1/auth/password") => {
            (uri(case.path), Some(json!({"current_password": PASSWORD, "new_password": PASSWORD})), None)
        }
        ("POST", "/api/v1/users") => {
            (uri(case.path), Some(json!({"username": format!("new-{n}"), "password": PASSWORD, "role": "viewer"})), None)
        }
        (_, "/api/v1/users/{id}") => {
            let id = fx.user(&format!("target-{n}"), Role::Viewer, None);
            let body = (case.method == "PATCH").then(|| json!({"role": "operator"}));
            (format!("/api/v1/users/{id}"), body, None)
        }
        ("POST", "/api/v1/tokens") => (uri(case.path), Some(json!({"name": format!("t-{n}"), "role": "platform"})), None),
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
    let perm = crate::auth::Permission::ALL.into_iter().find(|p| p.as_str() == case.access).unwrap();
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
                let m = fx.send(case.method, &muri, mover.as_ref().unwrap_or(&cred), mbody, None).await;
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
                let filtered = target == Target::Out && !matches!(case.path, "/api/v1/feed" | "/api/v1/cameras");
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
    Who { label: "anonymous".into(), role: Role::Viewer, scope: Sc::All, cred: Cred::None, user: None }
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
        let want = table.get(k).unwrap_or_else(|| panic!("{} {}: no row in the authorization matrix", k.0, k.1));
        assert_eq!(access, want, "{} {}: the router's access differs from the matrix", k.0, k.1);
    }
    assert_eq!(served.len(), table.len(), "the matrix has rows for operations the router does not serve");
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
            whos.push(Who { label: format!("user {name}"), role, scope: sc, cred: Cred::Cookie(cookie), user: Some(name) });
        }
        for role in Role::ALL {
            let name = format!("tok-{role}-{sc:?}").to_lowercase();
            let (_, t) = fx.token(&name, role, sc.scope());
            whos.push(Who { label: format!("token {name}"), role, scope: sc, cred: Cred::Bearer(t), user: None });
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
    let expected = allowed * 2 - whos.iter().filter(|w| w.role.can(crate::auth::Permission::Review) && w.scope != Sc::All).count();
    assert_eq!(reviews.len(), expected, "one audit entry per allowed review");
}
