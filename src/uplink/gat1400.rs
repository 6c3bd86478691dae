//! GA/T 1400 (VIID) sink: the box registers with a VIID platform as an APE and pushes the
//! structured objects of its incidents (docs/api.md "GA/T 1400 (VIID)", ADR 0043).
//!
//! * **System calls.** `POST /VIID/System/Register` with HTTP Digest (RFC 2617, MD5,
//!   qop=auth): the first request gets the 401 challenge, the second answers it. Every
//!   other call carries `User-Identify: <device_id>`. A background task (started by
//!   [`Sink::open`]) sends `POST /VIID/System/Keepalive` after `keepalive_secs` without a
//!   request, reads `GET /VIID/System/Time` after each registration and hourly (the offset
//!   is in [`Gat1400Sink::status`]), and re-registers after a failure with a random delay
//!   of up to `reregister_max_delay_secs`. A graceful stop sends `/VIID/System/UnRegister`.
//! * **Delivery.** The worker (`uplink::worker`) hands over one outbox change at a time per
//!   camera. An event's `started` change with a snapshot becomes `MotorVehicles`,
//!   `NonMotorVehicles` and `Persons` objects ([`map_change`], the one mapping), then, if
//!   `kinds` names it, its snapshot as an `Images` object ([`map_image`]); with
//!   `VideoSlices` in `kinds`, its `ended` change pushes a reference to its clip
//!   ([`map_video_slice`]). Every other change has nothing to push and is done at once. A change is delivered only when
//!   the platform's `ResponseStatus` for each of its objects has `StatusCode` 0. A 401 or
//!   StatusCode 3 (the registration lapsed, or the platform demands a new one)
//!   re-registers, then the push is repeated once in the same attempt. Object ids are
//!   derived from the channel, the change's time and its outbox seq, so a redelivery
//!   carries the same ids.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use md5::{Digest as _, Md5};
use serde_json::{json, Value};
use time::{OffsetDateTime, UtcOffset};

use super::config::Gat1400Config;
use super::sink::{BoxFuture, Outcome, Sink};
use crate::redact::redact_url;
use crate::store::outbox::{Envelope, OutboxRow};
use crate::store::Store;
use crate::types::BBox;

/// `Content-Type` of VIID requests.
pub const CONTENT_TYPE: &str = "application/VIID+JSON";
/// How often the platform's clock is read while registered.
const TIME_SYNC_EVERY: Duration = Duration::from_secs(3600);
/// A registration with no answered request for this long is treated as lapsed (as the
/// platform does): the box registers again.
const LAPSE: Duration = Duration::from_secs(300);
/// How often the background task looks at its state.
const TICK: Duration = Duration::from_millis(250);
/// JPEG quality of a masked snapshot.
const SNAPSHOT_QUALITY: u8 = 90;

/// Largest snapshot pushed (bigger ones are left out of `SubImageList`).
const SNAPSHOT_MAX_BYTES: u64 = 8 << 20;
/// Most bytes of a platform answer that are read.
const ANSWER_MAX_BYTES: usize = 1 << 20;

/// A platform's (or receiver's) answer body, at most `ANSWER_MAX_BYTES` of it.
pub(super) async fn read_answer(mut resp: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut got = Vec::new();
    while got.len() < ANSWER_MAX_BYTES {
        match resp.chunk().await? {
            Some(c) => got.extend_from_slice(&c[..c.len().min(ANSWER_MAX_BYTES - got.len())]),
            None => break,
        }
    }
    Ok(got)
}

/// What `/api/v1/uplink` (the sink's `session`) reports about the platform session.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Gat1400Status {
    pub registered: bool,
    /// Platform clock minus box clock (seconds), from the last `GET /VIID/System/Time`.
    pub time_offset_secs: Option<f64>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_registered_at: Option<OffsetDateTime>,
    /// Why the last registration, keepalive or time sync failed (cleared on success).
    pub last_error: Option<String>,
}

#[derive(Default)]
struct State {
    status: Gat1400Status,
    /// When the box last made a request that the platform answered.
    last_request: Option<Instant>,
    /// When the platform last answered a request with success (registration, keepalive,
    /// time, push).
    last_ok: Option<Instant>,
    last_sync: Option<Instant>,
    /// No registration before this (random delay after a failure).
    next_register: Option<Instant>,
}

/// Why a VIID call failed.
#[derive(Debug, Clone, PartialEq)]
pub enum CallError {
    /// No answer (connection refused, timeout), 5xx, or StatusCode 4: try again later.
    Unavailable(String),
    /// 401, or StatusCode 3: the registration lapsed or was refused.
    Unauthorized(String),
    /// StatusCode 1 (invalid) or 2 (not found), or another 4xx: the platform refuses.
    Refused(String),
    /// The answer is not the VIID JSON it should be.
    Malformed(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Unavailable(m)
            | CallError::Unauthorized(m)
            | CallError::Refused(m)
            | CallError::Malformed(m) => f.write_str(m),
        }
    }
}

/// The sink: a cheap handle on its [`Session`] (shared with the background task).
pub struct Gat1400Sink(Arc<Session>);

impl std::ops::Deref for Gat1400Sink {
    type Target = Session;
    fn deref(&self) -> &Session {
        &self.0
    }
}

/// The platform session of one sink and its delivery calls.
pub struct Session {
    name: String,
    base: String,
    target: String,
    device_id: String,
    channels: BTreeMap<String, String>,
    username: String,
    password: String,
    kinds: Vec<String>,
    keepalive: Duration,
    reregister_max: Duration,
    offset: UtcOffset,
    timeout: Duration,
    client: reqwest::Client,
    store: Option<Store>,
    images: Images,
    state: Mutex<State>,
    /// Serialises registrations (lanes and the background task).
    registering: tokio::sync::Mutex<()>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Gat1400Sink {
    /// A sink for `cfg`; `store` gives the events' snapshots (`SubImageList`). Reads the
    /// password (`password_env`) now; registers when the worker starts it.
    pub fn new(cfg: &Gat1400Config, store: Option<Store>) -> Result<Gat1400Sink, String> {
        Self::with_masker(cfg, store, Err(super::NO_MASKER.into()))
    }

    /// As [`Gat1400Sink::new`], masking snapshots with `masker` (unless
    /// `send_unmasked_images`).
    pub fn with_masker(
        cfg: &Gat1400Config,
        store: Option<Store>,
        masker: super::SnapshotMasking,
    ) -> Result<Gat1400Sink, String> {
        let at = |m: String| format!("gat1400 sink `{}`: {m}", cfg.name);
        let password = cfg.password_value().map_err(|e| at(format!("password: {e}")))?;
        let timeout = Duration::from_secs_f64(cfg.delivery.timeout_secs);
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs_f64(cfg.delivery.connect_timeout_secs))
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("gridwatch/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| at(format!("HTTP client: {e}")))?;
        let secs = (cfg.utc_offset_hours * 3600.0).round() as i32;
        let offset = UtcOffset::from_whole_seconds(secs).map_err(|e| at(format!("{e}")))?;
        Ok(Gat1400Sink(Arc::new(Session {
            name: cfg.name.clone(),
            base: cfg.url.trim_end_matches('/').to_string(),
            target: redact_url(&cfg.url),
            device_id: cfg.device_id.clone(),
            channels: cfg.channels.clone(),
            username: cfg.username().to_string(),
            password: password.expose().to_string(),
            kinds: cfg.kinds.clone(),
            keepalive: Duration::from_secs_f64(cfg.keepalive_secs),
            reregister_max: Duration::from_secs_f64(cfg.reregister_max_delay_secs),
            offset,
            timeout,
            client,
            store,
            images: Images::of(cfg, masker, cfg.kinds.iter().any(|k| k == "Faces")),
            state: Mutex::new(State::default()),
            registering: tokio::sync::Mutex::new(()),
            task: Mutex::new(None),
        })))
    }
}

impl Session {
    /// The platform session now.
    pub fn status(&self) -> Gat1400Status {
        lock(&self.state).status.clone()
    }

    /// One HTTP exchange with the platform: (status, `WWW-Authenticate`, body).
    async fn http(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        authorization: Option<String>,
    ) -> Result<(u16, Option<String>, Vec<u8>), CallError> {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("accept", "application/json, application/VIID+JSON")
            .header("User-Identify", &self.device_id);
        if let Some(b) = body {
            req = req.header("content-type", CONTENT_TYPE).body(b.to_string());
        }
        if let Some(a) = authorization {
            req = req.header("authorization", a);
        }
        let resp = req.send().await.map_err(|e| {
            CallError::Unavailable(format!("{path}: {}", describe(&e, self.timeout)))
        })?;
        let status = resp.status().as_u16();
        let challenge = resp
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let got = read_answer(resp).await.map_err(|e| {
            CallError::Unavailable(format!(
                "{path}: reading the answer: {}",
                describe(&e, self.timeout)
            ))
        })?;
        lock(&self.state).last_request = Some(Instant::now());
        Ok((status, challenge, got))
    }

    /// A system or collection call answered with `ResponseStatus` objects (one, or a list).
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Vec<ResponseStatus>, CallError> {
        let (status, _, got) = self.http(method, path, body, None).await?;
        answer_statuses(path, status, &got)
    }

    /// `POST /VIID/System/Register` with digest authentication.
    pub async fn register(&self) -> Result<(), CallError> {
        let path = "/VIID/System/Register";
        let body = json!({"RegisterObject": {"DeviceID": self.device_id}});
        let (status, challenge, got) =
            self.http(reqwest::Method::POST, path, Some(&body), None).await?;
        let (status, got) = if status == 401 {
            let challenge =
                challenge.and_then(|c| DigestChallenge::parse(&c)).ok_or_else(|| {
                    CallError::Malformed(format!(
                        "{path}: HTTP 401 without a Digest challenge (WWW-Authenticate)"
                    ))
                })?;
            let auth = challenge.authorization(
                &self.username,
                &self.password,
                "POST",
                path,
                &new_cnonce(),
            );
            let (status, _, got) =
                self.http(reqwest::Method::POST, path, Some(&body), Some(auth)).await?;
            if status == 401 {
                return Err(CallError::Unauthorized(format!(
                    "registration refused: wrong username or password (HTTP 401 to the digest answer for user `{}`)",
                    self.username
                )));
            }
            (status, got)
        } else {
            (status, got)
        };
        let st = answer_statuses(path, status, &got)?;
        match st.first() {
            Some(s) if s.code == 0 => {
                let mut state = lock(&self.state);
                state.status.registered = true;
                state.status.last_registered_at = Some(OffsetDateTime::now_utc());
                state.status.last_error = None;
                state.next_register = None;
                state.last_ok = Some(Instant::now());
                Ok(())
            }
            Some(s) => Err(s.error(path)),
            None => Err(CallError::Malformed(format!("{path}: no ResponseStatusObject"))),
        }
    }

    /// `POST /VIID/System/UnRegister` (digest, like the registration).
    pub async fn unregister(&self) -> Result<(), CallError> {
        let path = "/VIID/System/UnRegister";
        let body = json!({"UnRegisterObject": {"DeviceID": self.device_id}});
        let (mut status, challenge, mut got) =
            self.http(reqwest::Method::POST, path, Some(&body), None).await?;
        if status == 401 {
            if let Some(c) = challenge.and_then(|c| DigestChallenge::parse(&c)) {
                let auth =
                    c.authorization(&self.username, &self.password, "POST", path, &new_cnonce());
                (status, _, got) =
                    self.http(reqwest::Method::POST, path, Some(&body), Some(auth)).await?;
            }
        }
        lock(&self.state).status.registered = false;
        check_ok(path, answer_statuses(path, status, &got)?)
    }

    /// `POST /VIID/System/Keepalive`.
    pub async fn keepalive(&self) -> Result<(), CallError> {
        let path = "/VIID/System/Keepalive";
        let body = json!({"KeepaliveObject": {"DeviceID": self.device_id}});
        check_ok(path, self.call(reqwest::Method::POST, path, Some(&body)).await?)
    }

    /// `GET /VIID/System/Time`: the platform clock minus the box clock (seconds), recorded
    /// in the status.
    pub async fn sync_time(&self) -> Result<f64, CallError> {
        let path = "/VIID/System/Time";
        let sent = OffsetDateTime::now_utc();
        let (status, _, got) = self.http(reqwest::Method::GET, path, None, None).await?;
        let back = OffsetDateTime::now_utc();
        if status == 401 {
            return Err(CallError::Unauthorized(format!("{path}: HTTP 401")));
        }
        if !(200..300).contains(&status) {
            return Err(CallError::Unavailable(format!("{path}: HTTP {status}")));
        }
        let v: Value = serde_json::from_slice(&got).map_err(|e| {
            CallError::Malformed(format!("{path}: malformed VIID JSON from the platform: {e}"))
        })?;
        let local = v["SystemTimeObject"]["LocalTime"].as_str().ok_or_else(|| {
            CallError::Malformed(format!("{path}: no SystemTimeObject.LocalTime in the answer"))
        })?;
        let platform = parse_viid_time(local, self.offset).ok_or_else(|| {
            CallError::Malformed(format!("{path}: LocalTime `{local}` is not yyyyMMddHHmmss"))
        })?;
        // Against the middle of the exchange; the format has whole seconds.
        let mid: OffsetDateTime = sent + (back - sent) / 2;
        let offset = (platform - mid).as_seconds_f64();
        let mut state = lock(&self.state);
        state.status.time_offset_secs = Some(offset);
        state.last_sync = Some(Instant::now());
        Ok(offset)
    }

    /// Registers unless registered (one registration at a time). After a failed
    /// registration, none is tried before its random delay is over (the attempt fails with
    /// the last error instead), so a platform that is down is not hammered by every camera.
    async fn ensure_registered(&self) -> Result<(), CallError> {
        let _g = self.registering.lock().await;
        {
            let s = lock(&self.state);
            if s.status.registered {
                return Ok(());
            }
            if let Some(at) = s.next_register.filter(|at| *at > Instant::now()) {
                let why = s.status.last_error.clone().unwrap_or_default();
                return Err(CallError::Unavailable(format!(
                    "not registered ({why}); next registration in {:.1} s",
                    (at - Instant::now()).as_secs_f64()
                )));
            }
        }
        let r = self.register().await;
        match &r {
            Ok(()) => {
                tracing::info!(sink = %self.name, target = %self.target, "registered with the VIID platform");
                if let Err(e) = self.sync_time().await {
                    tracing::warn!(sink = %self.name, "VIID time sync failed: {e}");
                }
            }
            Err(e) => self.failed(&e.to_string()),
        }
        r
    }

    /// Records a failed registration: the next one comes after a random delay.
    fn failed(&self, why: &str) {
        let mut state = lock(&self.state);
        state.status.registered = false;
        state.status.last_error = Some(why.to_string());
        let jitter = getrandom::u32().unwrap_or(u32::MAX / 2) as f64 / (u32::MAX as f64 + 1.0);
        state.next_register = Some(Instant::now() + self.reregister_max.mul_f64(jitter));
    }

    /// Publishes the session status to the store (`/api/v1/uplink`) when it changed.
    fn publish(&self, last: &mut Option<Gat1400Status>) {
        let now = self.status();
        if last.as_ref() != Some(&now) {
            if let (Some(store), Ok(v)) = (&self.store, serde_json::to_value(&now)) {
                store.set_sink_session(&self.name, v);
            }
            *last = Some(now);
        }
    }

    /// The background task: registration, keepalive, time sync; publishes the status.
    async fn maintain(self: Arc<Self>) {
        let mut published = None;
        loop {
            self.publish(&mut published);
            let (registered, idle, due_register, due_sync) = {
                let s = lock(&self.state);
                let now = Instant::now();
                (
                    s.status.registered,
                    s.last_request.is_none_or(|t| now - t >= self.keepalive),
                    s.next_register.is_none_or(|t| now >= t),
                    s.last_sync.is_none_or(|t| now - t >= TIME_SYNC_EVERY),
                )
            };
            let lapsed = {
                let mut s = lock(&self.state);
                let lapsed = s.status.registered && s.last_ok.is_some_and(|t| t.elapsed() >= LAPSE);
                if lapsed {
                    s.status.registered = false;
                    s.next_register = None;
                }
                lapsed
            };
            if lapsed {
                tracing::warn!(sink = %self.name, "no answer from the VIID platform for {} s: registering again", LAPSE.as_secs());
                continue;
            }
            if !registered && due_register {
                if let Err(e) = self.ensure_registered().await {
                    tracing::warn!(sink = %self.name, "VIID registration failed: {e}");
                }
            } else if registered && due_sync {
                if let Err(e) = self.sync_time().await {
                    tracing::warn!(sink = %self.name, "VIID time sync failed: {e}");
                }
            } else if registered && idle {
                match self.keepalive().await {
                    Ok(()) => {
                        let mut s = lock(&self.state);
                        s.status.last_error = None;
                        s.last_ok = Some(Instant::now());
                    }
                    Err(CallError::Unauthorized(e)) => {
                        tracing::warn!(sink = %self.name, "VIID keepalive refused, registering again: {e}");
                        let mut s = lock(&self.state);
                        s.status.registered = false;
                        s.next_register = None;
                    }
                    Err(e) => {
                        tracing::warn!(sink = %self.name, "VIID keepalive failed: {e}");
                        lock(&self.state).status.last_error = Some(format!("keepalive: {e}"));
                    }
                }
            }
            self.publish(&mut published);
            tokio::time::sleep(TICK).await;
        }
    }

    /// Pushes one collection; Ok when every object got StatusCode 0.
    async fn push(&self, collection: &str, objects: &[Value]) -> Result<(), CallError> {
        let path = format!("/VIID/{collection}");
        let kind = collection_object(collection);
        let body = json!({ format!("{kind}ListObject"): { format!("{kind}Object"): objects } });
        let st = self.call(reqwest::Method::POST, &path, Some(&body)).await?;
        for o in objects {
            let id = object_id(collection, o);
            // A status per object (by `Id`); a single status without an id answers for all.
            let s = st.iter().find(|s| s.id.as_deref() == Some(id)).or_else(|| {
                (st.len() == 1 && st[0].id.as_deref().unwrap_or("").is_empty()).then(|| &st[0])
            });
            match s {
                Some(s) if s.code == 0 => {}
                Some(s) => return Err(s.error(&format!("{path} object {id}"))),
                None => {
                    return Err(CallError::Malformed(format!(
                        "{path}: the platform did not acknowledge object {id}"
                    )))
                }
            }
        }
        Ok(())
    }

    async fn deliver_row(&self, row: &OutboxRow) -> Outcome {
        let pushes = |c: &str| match c {
            "started" => true,
            "ended" => self.wants("VideoSlices"),
            _ => false,
        };
        if !pushes(&row.change) || row.event_id.is_none() {
            return Outcome::Delivered; // nothing to push (docs/api.md "GA/T 1400 (VIID)")
        }
        let env: Envelope = match serde_json::from_str(&row.envelope) {
            Ok(e) => e,
            Err(e) => {
                return Outcome::Rejected { status: None, error: format!("stored envelope: {e}") }
            }
        };
        let channel = self.channels.get(&env.camera_id).unwrap_or(&self.device_id);
        let mut mapped = BTreeMap::new();
        if row.change == "ended" {
            match map_video_slice(&env, row.seq, channel, self.offset) {
                Some(v) => {
                    mapped.insert("VideoSlices", vec![v]);
                }
                None => return Outcome::Delivered, // no clip (the camera does not record)
            }
        } else {
            let objects =
                env.objects.iter().any(|o| collection_of(&o.class).is_some_and(|c| self.wants(c)));
            if !objects && !self.wants("Images") && !self.wants("Faces") {
                return Outcome::Delivered;
            }
            let snap = match read_snapshot(self.store.clone(), &env, &self.images).await {
                Ok(Some(snap)) => snap,
                Ok(None) => return Outcome::Delivered, // objects and images need their image
                Err(error) => return Outcome::Retry { status: None, error, retry_after: None },
            };
            mapped = map_change(&env, row.seq, channel, &snap, self.offset);
            mapped.insert("Images", vec![map_image(&env, row.seq, channel, &snap, self.offset)]);
        }
        if let Err(e) = self.ensure_registered().await {
            return not_registered(e);
        }
        // The objects first, then the image they come from, then the clip.
        let order =
            ["MotorVehicles", "NonMotorVehicles", "Persons", "Faces", "Images", "VideoSlices"];
        let mapped: Vec<(&str, Vec<Value>)> =
            order.into_iter().filter_map(|c| mapped.remove(c).map(|o| (c, o))).collect();
        for (collection, objects) in mapped.iter().filter(|(c, _)| self.wants(c)) {
            let mut r = self.push(collection, objects).await;
            if let Err(CallError::Unauthorized(e)) = &r {
                tracing::info!(sink = %self.name, "VIID platform asks for a new registration: {e}");
                lock(&self.state).status.registered = false;
                if let Err(e) = self.ensure_registered().await {
                    return not_registered(e);
                }
                r = self.push(collection, objects).await;
            }
            if let Err(e) = r {
                return outcome_of(e);
            }
        }
        lock(&self.state).last_ok = Some(Instant::now());
        Outcome::Delivered
    }

    fn wants(&self, collection: &str) -> bool {
        self.kinds.iter().any(|k| k == collection)
    }
}

/// How a sink's snapshots leave the box (as taken, or masked as the box serves them), and
/// whether their faces are looked for (`Faces` in `kinds`, ADR 0051).
#[derive(Clone)]
pub(crate) struct Images {
    /// `send_unmasked_images`: pushed as taken.
    original: bool,
    /// Find the faces in each snapshot (before masking).
    faces: bool,
    /// The masker (it also finds faces), or why it cannot run (then nothing with a masked
    /// snapshot or faces is pushed).
    masker: super::SnapshotMasking,
}

impl Images {
    /// The images of `cfg`'s sink; `faces`: this sink pushes `Faces` (the platform push does
    /// when `kinds` names it; subscriptions never do).
    pub(crate) fn of(cfg: &Gat1400Config, masker: super::SnapshotMasking, faces: bool) -> Images {
        if cfg.send_unmasked_images {
            tracing::warn!(
                sink = %cfg.name,
                "send_unmasked_images: snapshots are pushed to this VIID platform unmasked"
            );
        }
        Images { original: cfg.send_unmasked_images, faces, masker }
    }
}

/// The snapshot of a change's event, if it has one (and it is not too large), masked unless
/// `images` says original, with its faces when `images` asks for them. An error (masking or
/// face finding cannot run or failed on it) means the change must wait: a snapshot is never
/// pushed unmasked by mistake, nor `Faces` left out silently.
pub(crate) async fn read_snapshot(
    store: Option<Store>,
    env: &Envelope,
    images: &Images,
) -> Result<Option<Snapshot>, String> {
    let (Some(store), Some(id)) = (store, env.event_id) else { return Ok(None) };
    let images = images.clone();
    let camera = env.camera_id.clone();
    type Read = Option<(Vec<u8>, Vec<BBox>)>;
    let read = tokio::task::spawn_blocking(move || -> Result<Read, String> {
        let Some(ev) = store.get_event(id).ok().flatten() else { return Ok(None) };
        let Some(path) = store.snapshot_file(&ev) else { return Ok(None) };
        match std::fs::metadata(&path) {
            Ok(m) if m.len() <= SNAPSHOT_MAX_BYTES => {}
            _ => return Ok(None),
        }
        let Ok(jpeg) = std::fs::read(&path) else { return Ok(None) };
        if images.original && !images.faces {
            return Ok(Some((jpeg, Vec::new())));
        }
        let m = images.masker.as_ref().map_err(|e| {
            if images.faces {
                format!("faces not found: no face detector: {e}")
            } else {
                format!("snapshot not pushed: masking unavailable: {e}")
            }
        })?;
        let (jpeg, faces) = m
            .snapshot(&camera, &jpeg, SNAPSHOT_QUALITY, !images.original, images.faces)
            .map_err(|e| format!("snapshot not pushed: masking or finding faces failed: {e}"))?;
        Ok(Some((jpeg, faces)))
    })
    .await
    .map_err(|e| format!("reading the snapshot: {e}"))??;
    Ok(read.and_then(|(jpeg, faces)| {
        let (width, height) = jpeg_size(&jpeg)?;
        Some(Snapshot { jpeg, width, height, faces })
    }))
}

/// A failed registration never refuses the change itself: it waits (and expires at
/// `max_retry_hours` like any undelivered change).
fn not_registered(e: CallError) -> Outcome {
    Outcome::Retry { status: None, error: e.to_string(), retry_after: None }
}

fn outcome_of(e: CallError) -> Outcome {
    match e {
        CallError::Refused(error) => Outcome::Rejected { status: None, error },
        e => Outcome::Retry { status: None, error: e.to_string(), retry_after: None },
    }
}

fn check_ok(path: &str, st: Vec<ResponseStatus>) -> Result<(), CallError> {
    match st.first() {
        Some(s) if s.code == 0 => Ok(()),
        Some(s) => Err(s.error(path)),
        None => Err(CallError::Malformed(format!("{path}: no ResponseStatusObject"))),
    }
}

/// A transport error with its root cause (never the URL).
fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    let mut root: &dyn std::error::Error = e;
    while let Some(s) = root.source() {
        root = s;
    }
    let what = if e.is_timeout() {
        format!("timed out (limit {:.1} s)", timeout.as_secs_f64())
    } else if e.is_connect() {
        "cannot connect to the platform".into()
    } else {
        "request failed".into()
    };
    let cause = root.to_string();
    if cause.is_empty() || what.contains(&cause) {
        what
    } else {
        format!("{what}: {cause}")
    }
}

impl Sink for Gat1400Sink {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> &'static str {
        "gat1400"
    }
    fn target(&self) -> String {
        self.target.clone()
    }
    fn deliver<'a>(&'a self, row: &'a OutboxRow, _now: OffsetDateTime) -> BoxFuture<'a, Outcome> {
        Box::pin(self.deliver_row(row))
    }
    fn open(&self) {
        let task = tokio::spawn(self.0.clone().maintain());
        if let Some(old) = lock(&self.task).replace(task) {
            old.abort();
        }
    }
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Some(t) = lock(&self.task).take() {
                t.abort();
            }
            if lock(&self.state).status.registered {
                let _ = tokio::time::timeout(self.timeout, self.unregister()).await;
            }
        })
    }
}

/// One `ResponseStatusObject`.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponseStatus {
    pub code: i64,
    pub text: String,
    pub id: Option<String>,
}

impl ResponseStatus {
    pub(crate) fn error(&self, what: &str) -> CallError {
        let m = format!("{what}: StatusCode {} ({})", self.code, self.text);
        match self.code {
            3 => CallError::Unauthorized(m),
            1 | 2 => CallError::Refused(m),
            _ => CallError::Unavailable(m),
        }
    }
}

/// The `ResponseStatus` objects of an answer: `{"ResponseStatusObject":{…}}` or
/// `{"ResponseStatusListObject":{"ResponseStatusObject":[…]}}`. The HTTP status decides
/// first: 401 is `Unauthorized`, 5xx `Unavailable`, another non-2xx `Refused`.
pub fn answer_statuses(
    path: &str,
    http: u16,
    body: &[u8],
) -> Result<Vec<ResponseStatus>, CallError> {
    let start = String::from_utf8_lossy(&body[..body.len().min(200)]).trim().to_string();
    match http {
        401 => return Err(CallError::Unauthorized(format!("{path}: HTTP 401"))),
        408 | 429 | 500..=599 => {
            return Err(CallError::Unavailable(format!("{path}: HTTP {http} {start}")))
        }
        200..=299 => {}
        _ => return Err(CallError::Refused(format!("{path}: HTTP {http} {start}"))),
    }
    let bad = |why: String| {
        CallError::Malformed(format!("{path}: malformed VIID JSON from the platform: {why}"))
    };
    let v: Value = serde_json::from_slice(body).map_err(|e| bad(format!("{e} (`{start}`)")))?;
    let list = if let Some(o) = v.get("ResponseStatusObject") {
        vec![o.clone()]
    } else if let Some(l) = v.pointer("/ResponseStatusListObject/ResponseStatusObject") {
        match l {
            Value::Array(a) => a.clone(),
            o @ Value::Object(_) => vec![o.clone()],
            _ => return Err(bad("ResponseStatusObject is not a list".into())),
        }
    } else {
        return Err(bad(format!("no ResponseStatusObject in `{start}`")));
    };
    list.iter()
        .map(|o| {
            let code = match &o["StatusCode"] {
                Value::Number(n) => n.as_i64(),
                Value::String(s) => s.trim().parse().ok(),
                _ => None,
            }
            .ok_or_else(|| bad("StatusCode missing or not a number".into()))?;
            Ok(ResponseStatus {
                code,
                text: o["StatusString"].as_str().unwrap_or("").to_string(),
                id: o["Id"].as_str().map(str::to_string),
            })
        })
        .collect()
}

/// A `WWW-Authenticate: Digest …` challenge (RFC 2617).
#[derive(Debug, Clone, PartialEq)]
pub struct DigestChallenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    /// Whether the server offers `qop=auth` (else the RFC 2069 form is answered).
    pub qop_auth: bool,
}

impl DigestChallenge {
    /// Parses the header value; None unless it is a Digest challenge with a nonce, MD5.
    pub fn parse(h: &str) -> Option<DigestChallenge> {
        let rest = h.trim().strip_prefix("Digest").or_else(|| h.trim().strip_prefix("digest"))?;
        let params = parse_params(rest);
        let get = |k: &str| {
            params.iter().find(|(n, _)| n.eq_ignore_ascii_case(k)).map(|(_, v)| v.clone())
        };
        if let Some(a) = get("algorithm") {
            if !a.eq_ignore_ascii_case("MD5") {
                return None;
            }
        }
        Some(DigestChallenge {
            realm: get("realm").unwrap_or_default(),
            nonce: get("nonce")?,
            opaque: get("opaque"),
            qop_auth: get("qop").is_some_and(|q| q.split(',').any(|x| x.trim() == "auth")),
        })
    }

    /// The `Authorization` header answering this challenge (nc 00000001: a fresh nonce is
    /// asked for on every registration).
    pub fn authorization(
        &self,
        user: &str,
        password: &str,
        method: &str,
        uri: &str,
        cnonce: &str,
    ) -> String {
        let nc = "00000001";
        let response = digest_response(
            user,
            &self.realm,
            password,
            method,
            uri,
            &self.nonce,
            self.qop_auth.then_some((nc, cnonce)),
        );
        let mut h = format!(
            "Digest username=\"{user}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", response=\"{response}\", algorithm=MD5",
            self.realm, self.nonce
        );
        if self.qop_auth {
            h += &format!(", qop=auth, nc={nc}, cnonce=\"{cnonce}\"");
        }
        if let Some(o) = &self.opaque {
            h += &format!(", opaque=\"{o}\"");
        }
        h
    }
}

/// `name=value` / `name="value"` pairs of an auth header, comma separated.
pub fn parse_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let name: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=' && *c != ','))
            .collect::<String>()
            .trim()
            .to_string();
        if name.is_empty() {
            break;
        }
        if chars.next() != Some('=') {
            continue;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = std::iter::from_fn(|| chars.next_if(|c| *c != ','))
                .collect::<String>()
                .trim()
                .to_string();
        }
        out.push((name, value));
    }
    out
}

fn md5_hex(s: &str) -> String {
    hex::encode(Md5::digest(s.as_bytes()))
}

/// The RFC 2617 `response`: MD5(HA1:nonce:nc:cnonce:qop:HA2) with `qop=auth` (`qop` =
/// Some((nc, cnonce))), else MD5(HA1:nonce:HA2); HA1 = MD5(user:realm:password), HA2 =
/// MD5(method:uri).
pub fn digest_response(
    user: &str,
    realm: &str,
    password: &str,
    method: &str,
    uri: &str,
    nonce: &str,
    qop: Option<(&str, &str)>,
) -> String {
    digest_response_ha1(&digest_ha1(user, realm, password), method, uri, nonce, qop)
}

/// HA1 = MD5(user:realm:password), hex: what a digest server stores (ADR 0047).
pub fn digest_ha1(user: &str, realm: &str, password: &str) -> String {
    md5_hex(&format!("{user}:{realm}:{password}"))
}

/// [`digest_response`] from a stored HA1.
pub fn digest_response_ha1(
    ha1: &str,
    method: &str,
    uri: &str,
    nonce: &str,
    qop: Option<(&str, &str)>,
) -> String {
    let ha2 = md5_hex(&format!("{method}:{uri}"));
    match qop {
        Some((nc, cnonce)) => md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")),
        None => md5_hex(&format!("{ha1}:{nonce}:{ha2}")),
    }
}

fn new_cnonce() -> String {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        b = OffsetDateTime::now_utc().unix_timestamp_nanos().to_le_bytes()[..8]
            .try_into()
            .unwrap_or([7; 8]);
    }
    hex::encode(b)
}

/// A VIID time: `yyyyMMddHHmmss` in the platform's UTC offset.
pub fn viid_time(t: OffsetDateTime, offset: UtcOffset) -> String {
    let t = t.to_offset(offset);
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Parses `yyyyMMddHHmmss` (in `offset`).
pub fn parse_viid_time(s: &str, offset: UtcOffset) -> Option<OffsetDateTime> {
    let s = s.trim();
    if s.len() != 14 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s[r].parse::<u32>().ok();
    let month = time::Month::try_from(n(4..6)? as u8).ok()?;
    let date = time::Date::from_calendar_date(n(0..4)? as i32, month, n(6..8)? as u8).ok()?;
    let t = time::Time::from_hms(n(8..10)? as u8, n(10..12)? as u8, n(12..14)? as u8).ok()?;
    Some(time::PrimitiveDateTime::new(date, t).assume_offset(offset))
}

/// An event's snapshot JPEG and its size in pixels.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub jpeg: Vec<u8>,
    pub width: u32,
    pub height: u32,
    /// The faces found in it (normalised boxes), when its sink pushes `Faces`.
    pub faces: Vec<BBox>,
}

/// Width and height from a JPEG's SOF segment.
pub fn jpeg_size(j: &[u8]) -> Option<(u32, u32)> {
    if j.get(..2)? != [0xFF, 0xD8] {
        return None;
    }
    let mut i = 2;
    while i + 4 <= j.len() {
        if j[i] != 0xFF {
            return None;
        }
        let marker = j[i + 1];
        if marker == 0xFF {
            i += 1;
            continue;
        }
        let len = u16::from_be_bytes([j[i + 2], j[i + 3]]) as usize;
        let sof = (0xC0..=0xCF).contains(&marker) && !matches!(marker, 0xC4 | 0xC8 | 0xCC);
        if sof {
            let h = u16::from_be_bytes([*j.get(i + 5)?, *j.get(i + 6)?]) as u32;
            let w = u16::from_be_bytes([*j.get(i + 7)?, *j.get(i + 8)?]) as u32;
            return (w > 0 && h > 0).then_some((w, h));
        }
        i += 2 + len;
    }
    None
}

/// The VIID collection of a gridwatch class label (None: not pushed).
pub fn collection_of(class: &str) -> Option<&'static str> {
    match class {
        "car" | "truck" | "bus" => Some("MotorVehicles"),
        "motorcycle" | "bicycle" => Some("NonMotorVehicles"),
        "person" => Some("Persons"),
        _ => None,
    }
}

/// The object name of a collection (`MotorVehicles` → `MotorVehicle`): its list is
/// `{Kind}ListObject.{Kind}Object`, its id `{Kind}ID`.
pub fn collection_object(collection: &str) -> &str {
    collection.strip_suffix('s').unwrap_or(collection)
}

/// The two-digit object type of a collection in object ids.
fn type_code(collection: &str) -> &'static str {
    match collection {
        "Persons" => "01",
        "MotorVehicles" => "02",
        "Faces" => "06",
        _ => "03",
    }
}

/// The id of a pushed object: `{Kind}ID`, `ImageInfo.ImageID` or `VideoSliceInfo.VideoID`.
pub fn object_id<'a>(collection: &str, o: &'a Value) -> &'a str {
    let v = match collection {
        "Images" => &o["ImageInfo"]["ImageID"],
        "VideoSlices" => &o["VideoSliceInfo"]["VideoID"],
        c => &o[format!("{}ID", collection_object(c))],
    };
    v.as_str().unwrap_or_default()
}

/// The `Images` object of an incident's start (docs/api.md mapping table): its snapshot,
/// with `ImageID` = the objects' `SourceID`, so the platform links them.
pub fn map_image(
    env: &Envelope,
    seq: i64,
    channel: &str,
    snap: &Snapshot,
    offset: UtcOffset,
) -> Value {
    let shot = viid_time(env.at, offset);
    let image_id = format!("{channel}02{shot}{:05}", seq.rem_euclid(100_000));
    json!({
        "ImageInfo": {
            "ImageID": image_id,
            "InfoKind": 1,
            "ImageSource": "99",
            "DeviceID": channel,
            "StoragePath": "",
            "FileFormat": "Jpeg",
            "ShotTime": shot,
            "Title": env.kind,
            "ContentDescription": incident_description(env),
            "Width": snap.width,
            "Height": snap.height,
        },
        "Data": base64::engine::general_purpose::STANDARD.encode(&snap.jpeg),
    })
}

/// The `VideoSlices` object of an incident's end: a reference to its clip (`clip_url`, which
/// needs a token with `see` to fetch); None when the camera does not record.
pub fn map_video_slice(
    env: &Envelope,
    seq: i64,
    channel: &str,
    offset: UtcOffset,
) -> Option<Value> {
    let url = env.clip_url.as_ref()?;
    let begin = env.started_at.unwrap_or(env.at);
    let end = env.ended_at.unwrap_or(env.at).max(begin);
    let video_id = format!("{channel}01{}{:05}", viid_time(end, offset), seq.rem_euclid(100_000));
    Some(json!({
        "VideoSliceInfo": {
            "VideoID": video_id,
            "InfoKind": 1,
            "VideoSource": "99",
            "IsAbstractVideo": 0,
            "DeviceID": channel,
            "StoragePath": url,
            "FileFormat": "Mp4",
            "Title": env.kind,
            "ContentDescription": incident_description(env),
            "BeginTime": viid_time(begin, offset),
            "EndTime": viid_time(end, offset),
            "VideoLen": (end - begin).whole_seconds().max(0),
        }
    }))
}

/// `gridwatch <kind>: rule …, zone …` of an incident.
fn incident_description(env: &Envelope) -> String {
    let mut d = format!("gridwatch {}", env.kind);
    for (k, v) in [("rule", &env.rule), ("zone", &env.zone), ("line", &env.line)] {
        if let Some(v) = v {
            d += &format!(", {k} {v}");
        }
    }
    d
}

/// The fields [`map_change`] fills in an object of `collection` (a subscription's `Filter`
/// may name only these; a unit test keeps the list equal to what `map_change` writes).
pub fn mapped_fields(collection: &str) -> &'static [&'static str] {
    const MOTOR: [&str; 18] = [
        "MotorVehicleID",
        "InfoKind",
        "SourceID",
        "DeviceID",
        "LeftTopX",
        "LeftTopY",
        "RightBtmX",
        "RightBtmY",
        "SubImageList",
        "StorageUrl1",
        "HasPlate",
        "PlateClass",
        "PlateColor",
        "PlateNo",
        "VehicleColor",
        "PassTime",
        "MarkTime",
        "AppearTime",
    ];
    const NON_MOTOR: [&str; 13] = [
        "NonMotorVehicleID",
        "InfoKind",
        "SourceID",
        "DeviceID",
        "LeftTopX",
        "LeftTopY",
        "RightBtmX",
        "RightBtmY",
        "SubImageList",
        "HasPlate",
        "PlateNo",
        "MarkTime",
        "AppearTime",
    ];
    const PERSON: [&str; 18] = [
        "PersonID",
        "InfoKind",
        "SourceID",
        "DeviceID",
        "LeftTopX",
        "LeftTopY",
        "RightBtmX",
        "RightBtmY",
        "SubImageList",
        "IsDriver",
        "IsForeigner",
        "IsSuspectedTerrorist",
        "IsCriminalInvolved",
        "IsDetainees",
        "IsVictim",
        "IsSuspiciousPerson",
        "LocationMarkTime",
        "PersonAppearTime",
    ];
    const FACE: [&str; 18] = [
        "FaceID",
        "InfoKind",
        "SourceID",
        "DeviceID",
        "LeftTopX",
        "LeftTopY",
        "RightBtmX",
        "RightBtmY",
        "SubImageList",
        "IsDriver",
        "IsForeigner",
        "IsSuspectedTerrorist",
        "IsCriminalInvolved",
        "IsDetainees",
        "IsVictim",
        "IsSuspiciousPerson",
        "LocationMarkTime",
        "FaceAppearTime",
    ];
    match collection {
        "Faces" => &FACE,
        "MotorVehicles" => &MOTOR,
        "NonMotorVehicles" => &NON_MOTOR,
        "Persons" => &PERSON,
        _ => &[],
    }
}

/// THE mapping of a change to VIID objects (the table in docs/api.md "GA/T 1400 (VIID)"):
/// per collection, the objects of `env` with `DeviceID` = `channel`, positions in pixels of
/// the snapshot, and the snapshot as their `SubImageList`. Ids: the image is
/// `channel + "02" + time(14) + seq(5)` (41 digits, seq = outbox seq mod 100000) and each
/// object `image id + type(2) + n(5)` (48), so redelivery repeats them.
pub fn map_change(
    env: &Envelope,
    seq: i64,
    channel: &str,
    snap: &Snapshot,
    offset: UtcOffset,
) -> BTreeMap<&'static str, Vec<Value>> {
    let shot = viid_time(env.at, offset);
    let image_id = format!("{channel}02{shot}{:05}", seq.rem_euclid(100_000));
    let sub_image = json!({"SubImageInfoObject": [{
        "ImageID": image_id,
        "DeviceID": channel,
        "Type": "14",
        "FileFormat": "Jpeg",
        "ShotTime": shot,
        "Width": snap.width,
        "Height": snap.height,
        "Data": base64::engine::general_purpose::STANDARD.encode(&snap.jpeg),
    }]});
    let (w, h) = (snap.width as f32, snap.height as f32);
    let px = |v: f32, size: f32| ((v.clamp(0.0, 1.0) * size).round() as u32).min(size as u32 - 1);
    let mut out: BTreeMap<&'static str, Vec<Value>> = BTreeMap::new();
    let objects = env
        .objects
        .iter()
        .enumerate()
        .filter_map(|(i, o)| Some((collection_of(&o.class)?, i + 1, o.bbox)));
    // Faces: numbered after the objects, so their ids never meet.
    let faces =
        snap.faces.iter().enumerate().map(|(i, f)| ("Faces", env.objects.len() + i + 1, *f));
    for (collection, n, b) in objects.chain(faces) {
        let kind = collection_object(collection);
        let id = format!("{image_id}{}{:05}", type_code(collection), n);
        let mut obj = json!({
            format!("{kind}ID"): id,
            "InfoKind": 1,
            "SourceID": image_id,
            "DeviceID": channel,
            "LeftTopX": px(b.x1, w),
            "LeftTopY": px(b.y1, h),
            "RightBtmX": px(b.x2, w),
            "RightBtmY": px(b.y2, h),
            "SubImageList": sub_image,
        });
        let extra = match collection {
            "MotorVehicles" => json!({
                "StorageUrl1": "",
                "HasPlate": "0",
                "PlateClass": "99",
                "PlateColor": "99",
                "PlateNo": "",
                "VehicleColor": "99",
                "PassTime": shot,
                "MarkTime": shot,
                "AppearTime": shot,
            }),
            "NonMotorVehicles" => json!({
                "HasPlate": "0",
                "PlateNo": "",
                "MarkTime": shot,
                "AppearTime": shot,
            }),
            // Persons and Faces: the same person marks, `PersonAppearTime` / `FaceAppearTime`.
            _ => json!({
                "IsDriver": 0,
                "IsForeigner": 0,
                "IsSuspectedTerrorist": 0,
                "IsCriminalInvolved": 0,
                "IsDetainees": 0,
                "IsVictim": 0,
                "IsSuspiciousPerson": 0,
                "LocationMarkTime": shot,
                format!("{kind}AppearTime"): shot,
            }),
        };
        if let (Value::Object(m), Value::Object(e)) = (&mut obj, extra) {
            m.extend(e);
        }
        out.entry(collection).or_default().push(obj);
    }
    out
}

/// `check`: registers with the platform, reads its clock and unregisters. Ok: a line
/// for the report.
pub async fn probe(cfg: &Gat1400Config) -> Result<String, String> {
    let sink = Gat1400Sink::new(cfg, None)?;
    let sink = &sink.0;
    sink.register().await.map_err(|e| e.to_string())?;
    let offset = sink.sync_time().await;
    let _ = sink.unregister().await;
    match offset {
        Ok(o) => Ok(format!(
            "registered with {} as {}; platform clock {o:+.1} s from the box's; snapshots \
             pushed {}{}",
            sink.target,
            sink.device_id,
            if cfg.send_unmasked_images { "UNMASKED (send_unmasked_images)" } else { "masked" },
            if cfg.kinds.iter().any(|k| k == "Faces") {
                "; face positions pushed (Faces)"
            } else {
                ""
            }
        )),
        Err(e) => Err(format!("registered with {}, but time sync failed: {e}", sink.target)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 2617 section 3.5's example.
    #[test]
    fn digest_matches_the_rfc_example() {
        let r = digest_response(
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
            "GET",
            "/dir/index.html",
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            Some(("00000001", "0a4f113b")),
        );
        assert_eq!(r, "6629fae49393a05397450978507c4ef1");
        let c = DigestChallenge::parse(
            "Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
        )
        .unwrap();
        assert!(c.qop_auth);
        assert_eq!(c.opaque.as_deref(), Some("5ccc069c403ebaf9f0171e9517f40e41"));
        let h = c.authorization("Mufasa", "Circle Of Life", "GET", "/dir/index.html", "0a4f113b");
        assert!(h.contains("response=\"6629fae49393a05397450978507c4ef1\""), "{h}");
        assert!(DigestChallenge::parse("Basic realm=\"x\"").is_none());
        assert!(
            DigestChallenge::parse("Digest realm=\"x\", nonce=\"n\", algorithm=SHA-256").is_none()
        );
    }

    /// Whatever the platform sends, reading it never panics (random bytes, and mutations of
    /// valid answers and challenges).
    #[test]
    fn platform_input_never_panics() {
        let seeds: [&[u8]; 3] = [
            br#"{"ResponseStatusListObject":{"ResponseStatusObject":[{"Id":"a","StatusCode":"0"}]}}"#,
            br#"Digest realm="r", qop="auth", nonce="n\"x", opaque="o""#,
            b"\xFF\xD8\xFF\xC0\x00\x11\x08\x00\xF0\x01\x40",
        ];
        for b in crate::mutate::mutations(&seeds, 20_000, 0x9E37_79B9_7F4A_7C15u64) {
            let _ = answer_statuses("/p", 200, &b);
            let text = String::from_utf8_lossy(&b);
            let _ = DigestChallenge::parse(&text);
            let _ = parse_params(&text);
            let _ = jpeg_size(&b);
            let _ = parse_viid_time(&text, UtcOffset::UTC);
        }
    }

    /// `mapped_fields` is exactly what `map_change` writes, per collection.
    #[test]
    fn mapped_fields_are_the_mapping_s_fields() {
        let o = |class: &str| {
            serde_json::json!({"class_id": 0, "class": class, "score": 0.9,
                "box": {"x1": 0.1, "y1": 0.1, "x2": 0.5, "y2": 0.5}})
        };
        let env: Envelope = serde_json::from_value(serde_json::json!({
            "version": 1, "id": uuid::Uuid::nil(), "seq": 7, "box_id": "b", "change": "started",
            "kind": "intrusion", "event_id": null, "event_seq": null, "severity": null,
            "camera_id": "c", "grid_cell": null, "lat": null, "lon": null,
            "at": "2026-12-06T12:00:00Z", "started_at": null, "ended_at": null,
            "recorded_at": "2026-12-06T12:00:00Z", "counts": {},
            "objects": [o("car"), o("bicycle"), o("person")],
            "rule": null, "zone": null, "line": null, "detail": null, "snapshot_url": null,
            "clip_url": null
        }))
        .expect("a minimal envelope");
        let face = BBox { x1: 0.2, y1: 0.1, x2: 0.25, y2: 0.18 };
        let snap = Snapshot { jpeg: vec![1, 2, 3], width: 640, height: 480, faces: vec![face] };
        let mapped = map_change(&env, 7, "31010500001190000001", &snap, UtcOffset::UTC);
        assert_eq!(mapped.len(), 4);
        assert_eq!(
            mapped["Faces"][0]["FaceID"].as_str().unwrap()[41..],
            *"0600004",
            "type 06, numbered after the three objects"
        );
        for (collection, objects) in mapped {
            let mut keys: Vec<&str> =
                objects[0].as_object().unwrap().keys().map(|k| k.as_str()).collect();
            let mut want = mapped_fields(collection).to_vec();
            keys.sort();
            want.sort();
            assert_eq!(keys, want, "{collection}");
        }
    }

    #[test]
    fn viid_times_round_trip_in_the_platform_offset() {
        let cst = UtcOffset::from_hms(8, 0, 0).unwrap();
        let t = time::macros::datetime!(2026-12-06 19:05:07.9 UTC);
        assert_eq!(viid_time(t, cst), "20261207030507");
        assert_eq!(
            parse_viid_time("20261207030507", cst),
            Some(time::macros::datetime!(2026-12-06 19:05:07 UTC))
        );
        assert_eq!(parse_viid_time("2026120703050", cst), None);
        assert_eq!(parse_viid_time("20261307030507", cst), None);
    }

    #[test]
    fn answers_are_read_by_object_and_malformed_ones_named() {
        let one = br#"{"ResponseStatusObject":{"RequestURL":"/VIID/System/Register","StatusCode":"0","StatusString":"OK"}}"#;
        assert_eq!(answer_statuses("/p", 200, one).unwrap()[0].code, 0);
        let list = br#"{"ResponseStatusListObject":{"ResponseStatusObject":[{"Id":"a","StatusCode":0},{"Id":"b","StatusCode":"1","StatusString":"bad"}]}}"#;
        let st = answer_statuses("/p", 200, list).unwrap();
        assert_eq!(st[1], ResponseStatus { code: 1, text: "bad".into(), id: Some("b".into()) });
        assert!(matches!(st[1].error("x"), CallError::Refused(_)));
        let e = answer_statuses("/p", 200, b"<html>").unwrap_err();
        assert!(matches!(&e, CallError::Malformed(m) if m.contains("malformed VIID JSON")), "{e}");
        assert!(matches!(answer_statuses("/p", 401, b""), Err(CallError::Unauthorized(_))));
        assert!(matches!(answer_statuses("/p", 503, b""), Err(CallError::Unavailable(_))));
    }
}
