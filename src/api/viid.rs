//! The box as the receiving side of GA/T 1400 (VIID): `/VIID/Subscribes` on the API's
//! listener (issue 18 item 4, ADR 0047, docs/api.md "GA/T 1400 subscriptions").
//!
//! * **Authentication.** HTTP Digest (RFC 2617, MD5, `qop=auth`) with the credentials of a
//!   token of role `platform`: the username is the token's name, the password the token
//!   itself; the box keeps only HA1 = MD5(name:realm:token), set when the token is made
//!   (`api_tokens.digest_ha1`). Nonces are the box's own, random, valid for
//!   [`NONCE_LIFETIME`], and each answer's `nc` must grow (a replayed answer is refused).
//!   Any other role is refused (StatusCode 3), and so is a token limited to cameras for
//!   the cameras outside its scope (they are never notified).
//! * **Operations.** `POST /VIID/Subscribes` (a `SubscribeListObject`: create, or with
//!   `OperateType` 1 cancel), `PUT /VIID/Subscribes` (the same list: update, or cancel with
//!   `OperateType` 1 / `SubscribeCancelFlag`), `PUT /VIID/Subscribes/{id}` (cancel),
//!   `DELETE /VIID/Subscribes?IDList=a,b` (cancel), `GET /VIID/Subscribes` (the caller's
//!   active subscriptions). Each reply is VIID JSON with a `ResponseStatus` per object;
//!   a body that is not VIID JSON is answered HTTP 400 with StatusCode 1 and the reason.
//! * These routes are outside `routes()` (and so outside docs/openapi.json and the
//!   bearer/cookie access matrix): they are VIID, not the gridwatch API.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use serde_json::{json, Map, Value};
use time::{OffsetDateTime, UtcOffset};

use super::auth::Client;
use super::{blocking, ApiState};
use crate::auth::Role;
use crate::store::auth::NewAudit;
use crate::store::viid::{NewSubscription, Stored};
use crate::store::TokenInfo;
use crate::uplink::gat1400::{
    digest_response_ha1, parse_params, parse_viid_time, viid_time, CONTENT_TYPE,
};
use crate::uplink::viid_subscribe::{
    collection_of_detail, Narrowing, DETAIL_FACES, DETAIL_THINGS, SUPPORTED_DETAILS,
};

/// The digest realm of `/VIID/` (part of every platform token's HA1: changing it
/// invalidates them all).
pub const REALM: &str = "gridwatch";
/// How long a nonce may be answered.
pub const NONCE_LIFETIME: Duration = Duration::from_secs(300);
/// Most nonces outstanding (the oldest are forgotten first).
const MAX_NONCES: usize = 4096;
/// Most objects in one subscription list.
const MAX_OBJECTS: usize = 100;
/// `LocalTime` of replies is written in China Standard Time (the API does not know the
/// platform's offset; the sinks' `utc_offset_hours` default).
const REPLY_OFFSET_HOURS: i8 = 8;

/// The digest secret a new token gets: HA1 = MD5(name:realm:token) for role `platform`
/// (its name and the token itself are its `/VIID/` credentials), none for other roles.
pub fn platform_ha1(role: Role, name: &str, token: &str) -> Option<String> {
    (role == Role::Platform).then(|| crate::uplink::gat1400::digest_ha1(name, REALM, token))
}

struct NonceState {
    issued: Instant,
    /// Highest `nc` answered so far.
    last_nc: u32,
}

/// Nonces issued by this router.
#[derive(Default)]
pub(crate) struct Nonces(Mutex<HashMap<String, NonceState>>);

impl Nonces {
    fn issue(&self) -> String {
        let mut b = [0u8; 16];
        if getrandom::fill(&mut b).is_err() {
            b = OffsetDateTime::now_utc().unix_timestamp_nanos().to_le_bytes();
        }
        let nonce = hex::encode(b);
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.retain(|_, s| s.issued.elapsed() < NONCE_LIFETIME);
        if m.len() >= MAX_NONCES {
            if let Some(oldest) = m.iter().min_by_key(|(_, s)| s.issued).map(|(k, _)| k.clone()) {
                m.remove(&oldest);
            }
        }
        m.insert(nonce.clone(), NonceState { issued: Instant::now(), last_nc: 0 });
        nonce
    }

    /// Ok when `nonce` is ours, fresh, and `nc` is larger than every earlier answer's (then
    /// recorded); Err(true) when it was ours but expired (answer `stale=true`).
    fn accept(&self, nonce: &str, nc: u32) -> Result<(), bool> {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let Some(s) = m.get_mut(nonce) else { return Err(false) };
        if s.issued.elapsed() >= NONCE_LIFETIME {
            m.remove(nonce);
            return Err(true);
        }
        if nc <= s.last_nc {
            return Err(false);
        }
        s.last_nc = nc;
        Ok(())
    }
}

#[derive(Clone)]
struct Gate {
    st: ApiState,
    nonces: Arc<Nonces>,
}

/// The `/VIID/` routes, each behind the digest gate and the request timeout.
pub(crate) fn router(state: &ApiState, limits: Arc<super::HttpLimits>) -> Router<ApiState> {
    let gate = Gate { st: state.clone(), nonces: Arc::new(Nonces::default()) };
    Router::new()
        .route("/VIID/Subscribes", get(list).post(subscribe).put(update).delete(cancel_list))
        .route("/VIID/Subscribes/{id}", axum::routing::put(cancel_one))
        .route_layer(middleware::from_fn_with_state(gate, digest))
        .route_layer(middleware::from_fn_with_state(limits, super::conn::timed))
}

fn reply_time() -> String {
    let offset = UtcOffset::from_hms(REPLY_OFFSET_HOURS, 0, 0).unwrap_or(UtcOffset::UTC);
    viid_time(OffsetDateTime::now_utc(), offset)
}

fn status_object(url: &str, code: u8, text: &str, id: Option<&str>) -> Value {
    let mut o = json!({
        "RequestURL": url,
        "StatusCode": code.to_string(),
        "StatusString": text,
        "LocalTime": reply_time(),
    });
    if let Some(id) = id {
        o["Id"] = json!(id);
    }
    o
}

fn viid(status: StatusCode, body: Value) -> Response {
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))], body.to_string())
        .into_response()
}

/// One `ResponseStatusObject` (a refusal of the whole request).
fn one(status: StatusCode, url: &str, code: u8, text: &str) -> Response {
    viid(status, json!({"ResponseStatusObject": status_object(url, code, text, None)}))
}

fn list_reply(statuses: Vec<Value>) -> Response {
    viid(StatusCode::OK, json!({"ResponseStatusListObject": {"ResponseStatusObject": statuses}}))
}

// ---------------------------------------------------------------------------------------
// Digest

fn challenge(g: &Gate, url: &str, stale: bool, why: &str) -> Response {
    let nonce = g.nonces.issue();
    let mut h = format!("Digest realm=\"{REALM}\", qop=\"auth\", nonce=\"{nonce}\", algorithm=MD5");
    if stale {
        h += ", stale=true";
    }
    let mut r = one(StatusCode::UNAUTHORIZED, url, 3, why);
    if let Ok(v) = HeaderValue::from_str(&h) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

/// A digest answer's fields (checked against the request, not yet against a secret).
struct DigestAnswer {
    user: String,
    nonce: String,
    uri: String,
    response: String,
    nc: u32,
    cnonce: String,
}

/// Reads the `Authorization` of a request for `uri`; Err: why it is not a usable answer.
fn check_answer(headers: &HeaderMap, uri: &str) -> Result<DigestAnswer, String> {
    let h = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or("HTTP Digest authentication is required")?;
    let rest = h
        .trim()
        .strip_prefix("Digest ")
        .or_else(|| h.trim().strip_prefix("digest "))
        .ok_or("only HTTP Digest authentication is accepted on /VIID/")?;
    let p = parse_params(rest);
    let get = |k: &str| p.iter().find(|(n, _)| n.eq_ignore_ascii_case(k)).map(|(_, v)| v.clone());
    let need = |k: &str| get(k).ok_or(format!("the digest answer has no `{k}`"));
    if need("realm")? != REALM {
        return Err(format!("the digest realm must be `{REALM}`"));
    }
    if get("algorithm").is_some_and(|a| !a.eq_ignore_ascii_case("MD5")) {
        return Err("the digest algorithm must be MD5".into());
    }
    if get("qop").as_deref() != Some("auth") {
        return Err("the digest answer must use qop=auth".into());
    }
    let d_uri = need("uri")?;
    if d_uri != uri {
        return Err("the digest `uri` is not this request's".into());
    }
    let nc = u32::from_str_radix(&need("nc")?, 16).map_err(|_| "the digest `nc` is not hex")?;
    Ok(DigestAnswer {
        user: need("username")?,
        nonce: need("nonce")?,
        uri: d_uri,
        response: need("response")?,
        nc,
        cnonce: need("cnonce")?,
    })
}

/// The digest gate: a platform token's answer to one of our nonces, or a 401 challenge.
async fn digest(State(g): State<Gate>, mut req: Request, next: Next) -> Response {
    let url = req.uri().path().to_string();
    let uri = req.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default();
    let method = req.method().as_str().to_string();
    let DigestAnswer { user, nonce, uri: d_uri, response, nc, cnonce } =
        match check_answer(req.headers(), &uri) {
            Ok(a) => a,
            Err(why) => return challenge(&g, &url, false, &why),
        };
    let store = g.st.store.clone();
    let name = user.clone();
    let tokens = match blocking(move || Ok(store.digest_tokens(&name)?)).await {
        Ok(t) => t,
        Err(e) => return one(StatusCode::INTERNAL_SERVER_ERROR, &url, 4, &e.to_string()),
    };
    let qop = Some((format!("{nc:08x}"), cnonce));
    let found: Option<TokenInfo> = tokens.into_iter().find_map(|(t, ha1)| {
        let q = qop.as_ref().map(|(n, c)| (n.as_str(), c.as_str()));
        let want = digest_response_ha1(&ha1, &method, &d_uri, &nonce, q);
        // Compared in constant time: the answer is a secret-derived value.
        constant_eq(want.as_bytes(), response.to_ascii_lowercase().as_bytes()).then_some(t)
    });
    let Some(token) = found else {
        tracing::warn!(user = %crate::auth::loggable(&user), "VIID digest answer refused");
        return challenge(&g, &url, false, "wrong digest username or password");
    };
    // The nonce is used up only by a right answer (a wrong one cannot burn a platform's).
    match g.nonces.accept(&nonce, nc) {
        Ok(()) => {}
        Err(stale) => {
            return challenge(&g, &url, stale, "the digest nonce is unknown, expired or replayed")
        }
    }
    if token.role != Role::Platform {
        return one(
            StatusCode::FORBIDDEN,
            &url,
            3,
            &format!(
                "token `{}` has role {}; /VIID/ is for platform tokens",
                token.name, token.role
            ),
        );
    }
    req.extensions_mut().insert(token);
    next.run(req).await
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

// ---------------------------------------------------------------------------------------
// Subscriptions

/// Reads a `SubscribeListObject.SubscribeObject` list (or one `SubscribeObject`).
fn subscribe_objects(body: &[u8]) -> Result<Vec<Value>, String> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| format!("malformed VIID JSON: {e} (expected a SubscribeListObject)"))?;
    let list = if let Some(l) = v.get("SubscribeListObject") {
        match l.get("SubscribeObject") {
            Some(Value::Array(a)) => a.clone(),
            Some(o @ Value::Object(_)) => vec![o.clone()],
            _ => return Err("SubscribeListObject.SubscribeObject must be a list of objects".into()),
        }
    } else if let Some(o @ Value::Object(_)) = v.get("SubscribeObject") {
        vec![o.clone()]
    } else {
        return Err("expected {\"SubscribeListObject\":{\"SubscribeObject\":[…]}}".into());
    };
    if list.is_empty() {
        return Err("SubscribeListObject.SubscribeObject is empty".into());
    }
    if list.len() > MAX_OBJECTS {
        return Err(format!("more than {MAX_OBJECTS} subscriptions in one request"));
    }
    Ok(list)
}

/// A string field (numbers are taken as their digits; platforms send both).
fn text(o: &Map<String, Value>, k: &str) -> Option<String> {
    match o.get(k)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn valid_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// Whether the object asks for a cancellation (`OperateType` 1, or a truthy
/// `SubscribeCancelFlag`).
fn is_cancel(o: &Map<String, Value>) -> bool {
    text(o, "OperateType").as_deref() == Some("1")
        || matches!(text(o, "SubscribeCancelFlag").as_deref(), Some("1" | "true"))
        || o.get("SubscribeCancelFlag") == Some(&Value::Bool(true))
}

/// Checks one `SubscribeObject`; Err: why it is refused (StatusCode 1).
fn parse_subscription(
    o: &Map<String, Value>,
    now: OffsetDateTime,
) -> Result<NewSubscription, String> {
    let id = text(o, "SubscribeID").ok_or("SubscribeID is required")?;
    if !valid_id(&id) {
        return Err("SubscribeID must be 1–64 letters, digits, '-', '_', '.' or ':'".into());
    }
    let resources: Vec<String> = text(o, "ResourceURI")
        .or_else(|| text(o, "Resource"))
        .ok_or("ResourceURI is required (the box's device id or channel ids, comma separated)")?
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if resources.is_empty() || resources.iter().any(|r| !valid_id(r)) {
        return Err("ResourceURI must list device ids, channel ids or camera ids".into());
    }
    let details: Vec<String> = text(o, "SubscribeDetail")
        .ok_or("SubscribeDetail is required (categories, comma separated)")?
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if details.iter().any(|d| d.parse::<u16>().is_err()) {
        return Err("SubscribeDetail must be category numbers, comma separated".into());
    }
    if !details.iter().any(|d| SUPPORTED_DETAILS.contains(&d.as_str())) {
        return Err(format!(
            "SubscribeDetail `{}`: this box notifies only 11 (persons), 13 (motor vehicles) and 14 (non-motor vehicles); it produces no {DETAIL_FACES} (faces) or {DETAIL_THINGS} (things)",
            details.join(","),
        ));
    }
    let collections: Vec<&str> = details.iter().filter_map(|d| collection_of_detail(d)).collect();
    Narrowing::of(o, &resources, &collections)?;
    let addr = text(o, "ReceiveAddr").ok_or("ReceiveAddr is required")?;
    match url::Url::parse(&addr) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
        _ => return Err("ReceiveAddr must be an http(s) URL".into()),
    }
    let time_field = |k: &str| -> Result<Option<String>, String> {
        match text(o, k) {
            None => Ok(None),
            Some(t) if parse_viid_time(&t, UtcOffset::UTC).is_some() => Ok(Some(t)),
            Some(t) => Err(format!("{k} `{}` is not yyyyMMddHHmmss", crate::auth::loggable(&t))),
        }
    };
    let (begin_time, end_time) = (time_field("BeginTime")?, time_field("EndTime")?);
    if let (Some(b), Some(e)) = (&begin_time, &end_time) {
        if e <= b {
            return Err("EndTime must be after BeginTime".into());
        }
    }
    let expires_at = match text(o, "Timeout") {
        None => None,
        Some(t) => match t.parse::<u32>() {
            Ok(s) if s > 0 => Some(now + time::Duration::seconds(s.into())),
            _ => return Err("Timeout must be a whole number of seconds above 0".into()),
        },
    };
    Ok(NewSubscription {
        id,
        title: text(o, "Title").map(|t| t.chars().take(200).collect()),
        resources,
        details,
        receive_addr: addr,
        begin_time,
        end_time,
        expires_at,
        body: Value::Object(o.clone()).to_string(),
    })
}

/// Creates, replaces or cancels each object of the list; one status per object.
/// The audit entry of a subscription change by `token`.
fn audit(token: &TokenInfo, client: &Client, action: &'static str, id: &str) -> NewAudit {
    NewAudit::new(format!("token:{}", token.id), Some(token.role), action)
        .target(format!("viid_subscription:{id}"))
        .address(client.address.clone())
}

async fn apply(
    st: ApiState,
    token: TokenInfo,
    client: Client,
    url: &str,
    body: &[u8],
    update: bool,
) -> Response {
    let objects = match subscribe_objects(body) {
        Ok(o) => o,
        Err(e) => return one(StatusCode::BAD_REQUEST, url, 1, &e),
    };
    let now = st.auth.now();
    let mut statuses = Vec::new();
    for v in objects {
        let Value::Object(o) = v else {
            statuses.push(status_object(url, 1, "a SubscribeObject must be an object", None));
            continue;
        };
        let id = text(&o, "SubscribeID");
        let idr = id.as_deref();
        if is_cancel(&o) {
            let Some(id) = id.clone() else {
                statuses.push(status_object(url, 1, "SubscribeID is required to cancel", None));
                continue;
            };
            statuses.push(cancel_status(&st, &token, &client, url, &id, now).await);
            continue;
        }
        let new = match parse_subscription(&o, now) {
            Ok(n) => n,
            Err(e) => {
                statuses.push(status_object(url, 1, &e, idr));
                continue;
            }
        };
        let (s, t) = (st.store.clone(), token.id);
        let n2 = new.clone();
        let detail = serde_json::json!({
            "resources": new.resources, "details": new.details, "receive_addr": new.receive_addr,
            "begin_time": new.begin_time, "end_time": new.end_time, "expires_at": new.expires_at
                .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok()),
        });
        let a = audit(&token, &client, "viid_subscribe", &new.id).detail(detail);
        match blocking(move || Ok(s.put_viid_subscription(t, &n2, &a, now)?)).await {
            Ok(Stored::Taken) => statuses.push(status_object(
                url,
                1,
                "SubscribeID is taken by another platform's subscription",
                idr,
            )),
            Ok(Stored::Replaced) if !update => statuses.push(status_object(
                url,
                0,
                "OK (replaced the subscription with this id)",
                idr,
            )),
            Ok(stored) => {
                tracing::info!(token = %token.name, subscription = %new.id, ?stored, "VIID subscription stored");
                statuses.push(status_object(url, 0, "OK", idr))
            }
            Err(e) => statuses.push(status_object(url, 4, &e.to_string(), idr)),
        }
    }
    list_reply(statuses)
}

async fn cancel_status(
    st: &ApiState,
    token: &TokenInfo,
    client: &Client,
    url: &str,
    id: &str,
    now: OffsetDateTime,
) -> Value {
    let (s, t, i) = (st.store.clone(), token.id, id.to_string());
    let a = audit(token, client, "viid_unsubscribe", id);
    match blocking(move || Ok(s.cancel_viid_subscription(t, &i, &a, now)?)).await {
        Ok(true) => {
            tracing::info!(token = %token.name, subscription = %id, "VIID subscription cancelled");
            status_object(url, 0, "OK (cancelled)", Some(id))
        }
        Ok(false) => status_object(url, 2, "no active subscription with this id", Some(id)),
        Err(e) => status_object(url, 4, &e.to_string(), Some(id)),
    }
}

async fn subscribe(
    State(st): State<ApiState>,
    Extension(token): Extension<TokenInfo>,
    client: Client,
    body: Bytes,
) -> Response {
    apply(st, token, client, "/VIID/Subscribes", &body, false).await
}

async fn update(
    State(st): State<ApiState>,
    Extension(token): Extension<TokenInfo>,
    client: Client,
    body: Bytes,
) -> Response {
    apply(st, token, client, "/VIID/Subscribes", &body, true).await
}

async fn cancel_one(
    State(st): State<ApiState>,
    Extension(token): Extension<TokenInfo>,
    client: Client,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Response {
    let url = "/VIID/Subscribes";
    let Ok(Path(id)) = id else {
        return one(StatusCode::BAD_REQUEST, url, 1, "bad subscription id");
    };
    let s = cancel_status(&st, &token, &client, url, &id, st.auth.now()).await;
    viid(StatusCode::OK, json!({ "ResponseStatusObject": s }))
}

async fn cancel_list(
    State(st): State<ApiState>,
    Extension(token): Extension<TokenInfo>,
    client: Client,
    RawQuery(q): RawQuery,
) -> Response {
    let url = "/VIID/Subscribes";
    let ids: Vec<String> = url::form_urlencoded::parse(q.unwrap_or_default().as_bytes())
        .filter(|(k, _)| k == "IDList")
        .flat_map(|(_, v)| v.split(',').map(|s| s.trim().to_string()).collect::<Vec<_>>())
        .filter(|s| !s.is_empty())
        .collect();
    if ids.is_empty() || ids.len() > MAX_OBJECTS {
        return one(StatusCode::BAD_REQUEST, url, 1, "IDList must list 1–100 subscription ids");
    }
    let now = st.auth.now();
    let mut statuses = Vec::new();
    for id in ids {
        statuses.push(cancel_status(&st, &token, &client, url, &id, now).await);
    }
    list_reply(statuses)
}

async fn list(State(st): State<ApiState>, Extension(token): Extension<TokenInfo>) -> Response {
    let url = "/VIID/Subscribes";
    let s = st.store.clone();
    match blocking(move || Ok(s.viid_subscriptions(Some(token.id))?)).await {
        Ok(subs) => {
            let objects: Vec<Value> = subs.iter().map(subscribe_object).collect();
            viid(StatusCode::OK, json!({"SubscribeListObject": {"SubscribeObject": objects}}))
        }
        Err(e) => one(StatusCode::INTERNAL_SERVER_ERROR, url, 4, &e.to_string()),
    }
}

/// A stored subscription as a `SubscribeObject` (its stored conditions).
fn subscribe_object(s: &crate::store::viid::Subscription) -> Value {
    let mut o = json!({
        "SubscribeID": s.id,
        "ResourceURI": s.resources.join(","),
        "SubscribeDetail": s.details.join(","),
        "ReceiveAddr": s.receive_addr,
        "SubscribeStatus": 0,
    });
    if let Some(t) = &s.title {
        o["Title"] = json!(t);
    }
    if let Some(t) = &s.begin_time {
        o["BeginTime"] = json!(t);
    }
    if let Some(t) = &s.end_time {
        o["EndTime"] = json!(t);
    }
    // The narrowing conditions as the platform sent them.
    if let Ok(Value::Object(body)) = serde_json::from_str::<Value>(&s.body) {
        for k in ["ResourceClass", "Filter", "ResultImageDeclare"] {
            if let Some(v) = body.get(k).filter(|v| !v.is_null()) {
                o[k] = v.clone();
            }
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whatever a client sends, reading it never panics (mutations of a valid subscription
    /// list and of a digest answer).
    #[test]
    fn client_input_never_panics() {
        let seeds: [&[u8]; 2] = [
            br#"{"SubscribeListObject":{"SubscribeObject":[{"SubscribeID":"s","ResourceURI":"44010000001190000001","SubscribeDetail":"13","ReceiveAddr":"http://p/","BeginTime":"20261206000000","Timeout":5}]}}"#,
            br#"Digest username="c", realm="gridwatch", nonce="n", uri="/VIID/Subscribes", qop=auth, nc=00000001, cnonce="c", response="r""#,
        ];
        let now = OffsetDateTime::UNIX_EPOCH;
        for b in crate::mutate::mutations(&seeds, 20_000, 0x2545_F491_4F6C_DD1Du64) {
            if let Ok(list) = subscribe_objects(&b) {
                for o in list {
                    if let Value::Object(o) = o {
                        let _ = parse_subscription(&o, now);
                        let _ = is_cancel(&o);
                    }
                }
            }
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_bytes(&b) {
                h.insert(header::AUTHORIZATION, v);
                let _ = check_answer(&h, "/VIID/Subscribes");
            }
        }
    }

    #[test]
    fn nonces_are_single_sequence_and_expire() {
        let n = Nonces::default();
        let a = n.issue();
        assert_eq!(n.accept(&a, 1), Ok(()));
        assert_eq!(n.accept(&a, 1), Err(false), "a replayed nc is refused");
        assert_eq!(n.accept(&a, 2), Ok(()));
        assert_eq!(n.accept("nope", 1), Err(false));
        n.0.lock().unwrap().get_mut(&a).unwrap().issued = Instant::now() - NONCE_LIFETIME;
        assert_eq!(n.accept(&a, 3), Err(true), "an expired nonce is stale");
    }

    #[test]
    fn subscriptions_are_checked_with_clear_reasons() {
        let now = time::macros::datetime!(2026-12-06 12:00 UTC);
        let ok = json!({"SubscribeID": "s1", "ResourceURI": "44010000001190000001",
            "SubscribeDetail": "13,11", "ReceiveAddr": "http://p/VIID/SubscribeNotifications",
            "BeginTime": "20261206000000", "EndTime": "20261207000000", "Timeout": 60});
        let Value::Object(o) = ok.clone() else { unreachable!() };
        let s = parse_subscription(&o, now).unwrap();
        assert_eq!(s.details, ["13", "11"]);
        assert_eq!(s.expires_at, Some(now + time::Duration::seconds(60)));
        let bad = |k: &str, v: Value, want: &str| {
            let mut b = ok.clone();
            b[k] = v;
            let Value::Object(o) = b else { unreachable!() };
            let e = parse_subscription(&o, now).unwrap_err();
            assert!(e.contains(want), "{k}: {e}");
        };
        bad("SubscribeDetail", json!("12"), "notifies only");
        bad("SubscribeDetail", json!("x"), "category numbers");
        bad("ReceiveAddr", json!("ftp://x"), "http(s)");
        bad("EndTime", json!("2026"), "EndTime");
        bad("EndTime", json!("20261205000000"), "after BeginTime");
        bad("Timeout", json!(-1), "Timeout");
        bad("Filter", json!("Gender=1"), "Filter key `Gender`");
        bad("Filter", json!("PlateNo"), "Key=Value");
        bad("Filter", json!([1]), "Filter must be");
        bad("ResourceClass", json!(0), "tollgates");
        bad("ResourceClass", json!("9"), "not 0–5");
        bad("ResultImageDeclare", json!("scene"), "ResultImageDeclare");
        let with = |extra: Value| {
            let mut b = ok.clone();
            b.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            let Value::Object(o) = b else { unreachable!() };
            parse_subscription(&o, now)
        };
        // PlateNo is a motor-vehicle field (13 is subscribed); a person-only subscription
        // cannot filter on it.
        assert!(with(json!({"Filter": "PlateNo=&DeviceID=31010500001310000011"})).is_ok());
        assert!(with(json!({"Filter": {"InfoKind": 1}, "ResourceClass": 4})).is_ok());
        let e = with(json!({"Filter": "PlateNo=X", "SubscribeDetail": "11"})).unwrap_err();
        assert!(e.contains("PersonAppearTime"), "names the fields it fills: {e}");
        let e = with(json!({"ResourceClass": 5})).unwrap_err();
        assert!(e.contains("region codes"), "{e}");
        assert!(with(json!({"ResourceClass": "5", "ResourceURI": "31,4401"})).is_ok());
        bad("SubscribeID", json!("a b"), "SubscribeID");
        assert!(subscribe_objects(b"{").unwrap_err().contains("malformed VIID JSON"));
        assert!(subscribe_objects(b"{}").unwrap_err().contains("SubscribeListObject"));
    }
}
