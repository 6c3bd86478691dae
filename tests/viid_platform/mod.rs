//! A loopback GA/T 1400 (VIID) platform for the uplink tests, written from the message
//! shapes of the standard (not from the box's code): an axum server that demands HTTP
//! Digest (RFC 2617, MD5, qop=auth) on `/VIID/System/Register` and `/UnRegister` with
//! one-time nonces, `User-Identify` of a registered device on every other call, answers
//! `GET /VIID/System/Time` from a clock it can skew, and records every object pushed to
//! `/VIID/<Collection>`. It can refuse pushes (StatusCode ≠ 0) and forget a registration
//! (the next call gets 401: the box must register again).
#![allow(dead_code)]

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use md5::{Digest, Md5};
use serde_json::{json, Value};
use time::OffsetDateTime;

pub const REALM: &str = "viid-test";
/// The `code` of objects answered with malformed JSON.
pub const MALFORMED: u32 = 999;

/// One object the platform received.
#[derive(Debug, Clone)]
pub struct Received {
    pub collection: String,
    pub object: Value,
    /// The StatusCode it was answered with.
    pub code: u32,
    pub content_type: String,
}

#[derive(Default)]
pub struct Log {
    pub received: Vec<Received>,
    pub registrations: u32,
    pub unregistrations: u32,
    /// Digest answers that were wrong (bad response, unknown or reused nonce, wrong uri).
    pub bad_digests: u32,
    pub keepalives: u32,
    pub time_calls: u32,
    /// Calls refused for want of a registration.
    pub unregistered_calls: u32,
    /// The last good `Authorization` header (to try a replay).
    pub last_authorization: Option<String>,
    /// `SubscribeNotificationObject`s received on `/VIID/SubscribeNotifications`.
    pub notifications: Vec<Value>,
}

struct Shared {
    user: String,
    password: String,
    /// Nonces issued and not used yet.
    nonces: Mutex<HashSet<String>>,
    registered: Mutex<HashSet<String>>,
    /// StatusCodes for the next pushes (one per request), then 0.
    refusals: Mutex<VecDeque<u32>>,
    /// While set, pushes are answered 200 with a body that is not VIID JSON (recorded with
    /// code `MALFORMED`).
    malformed: Mutex<bool>,
    /// Platform clock = real clock + this.
    skew: time::Duration,
    log: Mutex<Log>,
}

pub struct Platform {
    pub port: u16,
    shared: Arc<Shared>,
    rt: tokio::runtime::Runtime,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

fn md5_hex(s: &str) -> String {
    hex::encode(Md5::digest(s.as_bytes()))
}

fn status(url: &str, code: u32, id: Option<&str>) -> Value {
    json!({"RequestURL": url, "StatusCode": code.to_string(),
           "StatusString": if code == 0 { "OK" } else { "refused" },
           "Id": id.unwrap_or(""), "LocalTime": "20000101000000"})
}

fn one(url: &str, code: u32) -> Response {
    (
        [("content-type", "application/VIID+JSON")],
        json!({"ResponseStatusObject": status(url, code, None)}).to_string(),
    )
        .into_response()
}

/// `k="v"` pairs of a Digest header (quoted or bare values).
fn params(h: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = h.trim();
    while !rest.is_empty() {
        let Some((k, r)) = rest.split_once('=') else { break };
        let (v, r) = if let Some(r) = r.strip_prefix('"') {
            let end = r.find('"').unwrap_or(r.len());
            (&r[..end], r.get(end + 1..).unwrap_or(""))
        } else {
            let end = r.find(',').unwrap_or(r.len());
            (r[..end].trim(), &r[end..])
        };
        out.push((k.trim().trim_start_matches(',').trim().to_string(), v.to_string()));
        rest = r.trim_start_matches([',', ' ']);
    }
    out
}

impl Shared {
    fn challenge(&self) -> Response {
        let nonce = format!("{:032x}", rand_u128());
        self.nonces.lock().unwrap().insert(nonce.clone());
        let h = format!(
            "Digest realm=\"{REALM}\", qop=\"auth\", nonce=\"{nonce}\", opaque=\"0paque\", algorithm=MD5"
        );
        (StatusCode::UNAUTHORIZED, [("www-authenticate", h)], "").into_response()
    }

    /// Checks a Digest `Authorization` for POST `uri`.
    fn digest_ok(&self, auth: &str, uri: &str) -> bool {
        let Some(rest) = auth.strip_prefix("Digest ") else { return false };
        let p = params(rest);
        let get = |k: &str| p.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str()).unwrap_or("");
        // The nonce must be one this platform issued and not used before.
        if !self.nonces.lock().unwrap().remove(get("nonce")) {
            return false;
        }
        if get("uri") != uri
            || get("qop") != "auth"
            || get("realm") != REALM
            || get("opaque") != "0paque"
        {
            return false;
        }
        if get("username") != self.user || get("cnonce").is_empty() || get("nc").len() != 8 {
            return false;
        }
        let ha1 = md5_hex(&format!("{}:{REALM}:{}", self.user, self.password));
        let ha2 = md5_hex(&format!("POST:{uri}"));
        let want =
            md5_hex(&format!("{ha1}:{}:{}:{}:auth:{ha2}", get("nonce"), get("nc"), get("cnonce")));
        want == get("response")
    }

    /// The registered device of a call (`User-Identify`), if any.
    fn identified(&self, h: &HeaderMap) -> Option<String> {
        let id = h.get("user-identify")?.to_str().ok()?.to_string();
        self.registered.lock().unwrap().contains(&id).then_some(id)
    }
}

fn rand_u128() -> u128 {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).unwrap();
    u128::from_le_bytes(b)
}

async fn system(
    State(sh): State<Arc<Shared>>,
    Path(op): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let uri = format!("/VIID/System/{op}");
    match op.as_str() {
        "Register" | "UnRegister" => {
            let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
                return sh.challenge();
            };
            if !sh.digest_ok(auth, &uri) {
                sh.log.lock().unwrap().bad_digests += 1;
                return sh.challenge();
            }
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let key = if op == "Register" { "RegisterObject" } else { "UnRegisterObject" };
            let Some(dev) = v[key]["DeviceID"].as_str().map(str::to_string) else {
                return one(&uri, 1);
            };
            let mut log = sh.log.lock().unwrap();
            log.last_authorization = Some(auth.to_string());
            if op == "Register" {
                log.registrations += 1;
                sh.registered.lock().unwrap().insert(dev);
            } else {
                log.unregistrations += 1;
                sh.registered.lock().unwrap().remove(&dev);
            }
            one(&uri, 0)
        }
        "Keepalive" => {
            if sh.identified(&headers).is_none() {
                sh.log.lock().unwrap().unregistered_calls += 1;
                return StatusCode::UNAUTHORIZED.into_response();
            }
            sh.log.lock().unwrap().keepalives += 1;
            one(&uri, 0)
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn time_of_day(State(sh): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if sh.identified(&headers).is_none() {
        sh.log.lock().unwrap().unregistered_calls += 1;
        return StatusCode::UNAUTHORIZED.into_response();
    }
    sh.log.lock().unwrap().time_calls += 1;
    let t = (OffsetDateTime::now_utc() + sh.skew).to_offset(time::macros::offset!(+8));
    let local = format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    (
        [("content-type", "application/VIID+JSON")],
        json!({"SystemTimeObject": {"VIIDServerID": "31000000005030000001", "TimeMode": "1",
                                     "LocalTime": local, "TimeZone": "Asia/Shanghai"}})
        .to_string(),
    )
        .into_response()
}

async fn collection(
    State(sh): State<Arc<Shared>>,
    Path(coll): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if sh.identified(&headers).is_none() {
        sh.log.lock().unwrap().unregistered_calls += 1;
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let uri = format!("/VIID/{coll}");
    let kind = coll.strip_suffix('s').unwrap_or(&coll).to_string();
    let v: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => return one(&uri, 1),
    };
    let Some(objects) = v[format!("{kind}ListObject")][format!("{kind}Object")].as_array() else {
        return one(&uri, 1);
    };
    let malformed = *sh.malformed.lock().unwrap();
    let code =
        if malformed { MALFORMED } else { sh.refusals.lock().unwrap().pop_front().unwrap_or(0) };
    let content_type =
        headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let mut statuses = Vec::new();
    let mut log = sh.log.lock().unwrap();
    for o in objects {
        // Images and video slices carry their id in their info object.
        let id = match kind.as_str() {
            "Image" => &o["ImageInfo"]["ImageID"],
            "VideoSlice" => &o["VideoSliceInfo"]["VideoID"],
            _ => &o[format!("{kind}ID")],
        };
        let id = id.as_str().unwrap_or("").to_string();
        statuses.push(status(&uri, code, Some(&id)));
        log.received.push(Received {
            collection: coll.clone(),
            object: o.clone(),
            code,
            content_type: content_type.clone(),
        });
    }
    if malformed {
        return ([("content-type", "text/html")], "<html>proxy error</html>").into_response();
    }
    (
        [("content-type", "application/VIID+JSON")],
        json!({"ResponseStatusListObject": {"ResponseStatusObject": statuses}}).to_string(),
    )
        .into_response()
}

/// `POST /VIID/SubscribeNotifications`: the pushes of the box's subscriptions, recorded and
/// acknowledged one status per notification (the platform as the subscriber).
async fn notifications(State(sh): State<Arc<Shared>>, body: Bytes) -> Response {
    let uri = "/VIID/SubscribeNotifications";
    let v: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => return one(uri, 1),
    };
    let Some(list) = v["SubscribeNotificationListObject"]["SubscribeNotificationObject"].as_array()
    else {
        return one(uri, 1);
    };
    let mut statuses = Vec::new();
    let mut log = sh.log.lock().unwrap();
    for n in list {
        statuses.push(status(uri, 0, n["NotificationID"].as_str()));
        log.notifications.push(n.clone());
    }
    (
        [("content-type", "application/VIID+JSON")],
        json!({"ResponseStatusListObject": {"ResponseStatusObject": statuses}}).to_string(),
    )
        .into_response()
}

/// What the box answered a subscription call: HTTP status, `WWW-Authenticate`, VIID JSON.
#[derive(Debug)]
pub struct Answer {
    pub http: u16,
    pub challenge: Option<String>,
    pub body: Value,
}

impl Answer {
    /// The StatusCodes of the answer's `ResponseStatus` objects (one or a list).
    pub fn codes(&self) -> Vec<String> {
        let one = &self.body["ResponseStatusObject"];
        let list = self.body["ResponseStatusListObject"]["ResponseStatusObject"].as_array();
        match list {
            Some(l) => l.iter().map(|s| s["StatusCode"].as_str().unwrap_or("?").into()).collect(),
            None => vec![one["StatusCode"].as_str().unwrap_or("?").into()],
        }
    }
}

/// The platform as a subscriber: calls `/VIID/…` of a box with HTTP Digest (RFC 2617,
/// qop=auth), written from the RFC, not from the box's code.
pub struct Subscriber {
    pub base: String,
    pub user: String,
    pub password: String,
    pub client: reqwest::Client,
    /// The last `Authorization` sent (to try a replay).
    pub last_authorization: Mutex<Option<String>>,
}

impl Subscriber {
    pub fn new(base: &str, user: &str, password: &str) -> Subscriber {
        Subscriber {
            base: base.into(),
            user: user.into(),
            password: password.into(),
            client: reqwest::Client::new(),
            last_authorization: Mutex::new(None),
        }
    }

    async fn send(&self, method: &str, uri: &str, body: &str, auth: Option<&str>) -> Answer {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self
            .client
            .request(m, format!("{}{uri}", self.base))
            .header("content-type", "application/VIID+JSON")
            .header("User-Identify", "31000000005030000001")
            .body(body.to_string());
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let resp = req.send().await.unwrap();
        let http = resp.status().as_u16();
        let challenge =
            resp.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_string());
        let body = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap_or(Value::Null);
        Answer { http, challenge, body }
    }

    /// The `Authorization` answering `challenge` for `method uri`.
    pub fn answer(&self, challenge: &str, method: &str, uri: &str, nc: u32) -> String {
        let p = params(challenge.strip_prefix("Digest ").unwrap());
        let get = |k: &str| p.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap();
        let (realm, nonce) = (get("realm"), get("nonce"));
        let cnonce = format!("{:016x}", rand_u128() as u64);
        let nc = format!("{nc:08x}");
        let ha1 = md5_hex(&format!("{}:{realm}:{}", self.user, self.password));
        let ha2 = md5_hex(&format!("{method}:{uri}"));
        let response = md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
        format!(
            "Digest username=\"{}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
             qop=auth, nc={nc}, cnonce=\"{cnonce}\", response=\"{response}\", algorithm=MD5",
            self.user
        )
    }

    /// `method uri` with `body`: first without credentials (the box challenges), then
    /// answering the challenge.
    pub async fn call(&self, method: &str, uri: &str, body: &str) -> Answer {
        let first = self.send(method, uri, body, None).await;
        assert_eq!(first.http, 401, "{method} {uri} without credentials: {first:?}");
        let auth = self.answer(first.challenge.as_deref().unwrap(), method, uri, 1);
        *self.last_authorization.lock().unwrap() = Some(auth.clone());
        self.send(method, uri, body, Some(&auth)).await
    }

    /// Sends `method uri` with a given `Authorization` (a replay).
    pub async fn call_with(&self, method: &str, uri: &str, body: &str, auth: &str) -> Answer {
        self.send(method, uri, body, Some(auth)).await
    }
}

impl Platform {
    /// Starts a platform on a free loopback port whose digest credentials are
    /// `user`/`password` and whose clock runs `skew` ahead of the real one.
    pub fn start(user: &str, password: &str, skew: time::Duration) -> Platform {
        Self::start_on(0, user, password, skew)
    }

    /// Like `start`, on loopback port `port` (0: a free one).
    pub fn start_on(port: u16, user: &str, password: &str, skew: time::Duration) -> Platform {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let shared = Arc::new(Shared {
            user: user.into(),
            password: password.into(),
            nonces: Mutex::new(HashSet::new()),
            registered: Mutex::new(HashSet::new()),
            refusals: Mutex::new(VecDeque::new()),
            malformed: Mutex::new(false),
            skew,
            log: Mutex::new(Log::default()),
        });
        let listener = rt
            .block_on(async { tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap() });
        let port = listener.local_addr().unwrap().port();
        let app = axum::Router::new()
            .route("/VIID/System/Time", axum::routing::get(time_of_day))
            .route("/VIID/System/{op}", axum::routing::post(system))
            .route("/VIID/SubscribeNotifications", axum::routing::post(notifications))
            .route("/VIID/{collection}", axum::routing::post(collection))
            // Each object carries its scene image: a batch of several is several MB, as
            // platforms accept (axum's own limit is 2 MB).
            .layer(axum::extract::DefaultBodyLimit::max(64 << 20))
            .with_state(shared.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        rt.spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        Platform { port, shared, rt, stop: Some(tx) }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The next pushes are answered with these StatusCodes (one per request).
    pub fn refuse(&self, codes: &[u32]) {
        self.shared.refusals.lock().unwrap().extend(codes);
    }

    /// While `on`, pushes get a 200 answer that is not VIID JSON.
    pub fn answer_malformed(&self, on: bool) {
        *self.shared.malformed.lock().unwrap() = on;
    }

    /// Forgets every registration: the next call of the box gets 401.
    pub fn forget_registrations(&self) {
        self.shared.registered.lock().unwrap().clear();
    }

    pub fn is_registered(&self, device: &str) -> bool {
        self.shared.registered.lock().unwrap().contains(device)
    }

    pub fn log<T>(&self, f: impl FnOnce(&Log) -> T) -> T {
        f(&self.shared.log.lock().unwrap())
    }

    /// Notifications received, in arrival order.
    pub fn notifications(&self) -> Vec<Value> {
        self.log(|l| l.notifications.clone())
    }

    /// Objects answered StatusCode 0, in arrival order.
    pub fn accepted(&self) -> Vec<Received> {
        self.log(|l| l.received.iter().filter(|r| r.code == 0).cloned().collect())
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
