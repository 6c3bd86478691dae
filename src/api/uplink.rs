//! Uplink endpoints: the pull feed (`GET /api/v1/feed`), delivery status
//! (`GET /api/v1/uplink`) and Prometheus metrics (`GET /metrics`). See docs/api.md "Uplink".

use std::fmt::Write as _;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use time::OffsetDateTime;

use super::{blocking, ApiError, ApiState, Principal};
use crate::health::CameraState;
use crate::store::outbox::{FeedPage, SinkStatus};

/// Default and largest page of the feed; longest long-poll.
pub const FEED_DEFAULT_LIMIT: u32 = 100;
pub const FEED_MAX_LIMIT: u32 = 1000;
pub const FEED_MAX_WAIT_SECS: u64 = 60;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FeedQuery {
    pub after: i64,
    pub limit: u32,
    pub wait: Duration,
}

/// Parses `after`, `limit`, `wait_secs`; every failure names its parameter.
pub(crate) fn parse_feed_query(raw: Option<&str>) -> Result<FeedQuery, ApiError> {
    let mut q = FeedQuery { after: 0, limit: FEED_DEFAULT_LIMIT, wait: Duration::ZERO };
    for (key, value) in super::query_params(raw)? {
        match key.as_str() {
            "after" => {
                q.after = value.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                    ApiError::bad_param("after", format!("query parameter `after` must be a non-negative integer (a `next` cursor), got `{value}`"))
                })?
            }
            "limit" => {
                q.limit = value.parse::<u32>().ok().filter(|n| (1..=FEED_MAX_LIMIT).contains(n)).ok_or_else(|| {
                    ApiError::bad_param(
                        "limit",
                        format!("query parameter `limit` must be an integer from 1 to {FEED_MAX_LIMIT}, got `{value}`"),
                    )
                })?
            }
            "wait_secs" => {
                let secs = value.parse::<u64>().ok().filter(|n| *n <= FEED_MAX_WAIT_SECS).ok_or_else(|| {
                    ApiError::bad_param(
                        "wait_secs",
                        format!("query parameter `wait_secs` must be an integer from 0 to {FEED_MAX_WAIT_SECS}, got `{value}`"),
                    )
                })?;
                q.wait = Duration::from_secs(secs);
            }
            _ => {
                return Err(ApiError::bad_param(
                    &key,
                    format!("unknown query parameter `{key}` (allowed: after, limit, wait_secs)"),
                ))
            }
        }
    }
    Ok(q)
}

fn feed_response(page: FeedPage) -> Response {
    // The envelopes are stored as JSON text: they are sent as stored, not re-encoded.
    let mut body =
        String::with_capacity(page.changes.iter().map(|c| c.1.len() + 1).sum::<usize>() + 64);
    body.push_str("{\"changes\":[");
    for (i, (_, env)) in page.changes.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(env);
    }
    let _ = write!(body, "],\"next\":{},\"more\":{}}}", page.next, page.more);
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
}

/// `GET /api/v1/feed?after=&limit=&wait_secs=`: changes with `seq > after` in seq order.
/// With `wait_secs`, an empty page waits up to that long for the next change.
/// A principal limited to some cameras gets only their changes (and `next` skips the rest).
pub(super) async fn feed(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = parse_feed_query(raw.as_deref())?;
    let filter = p.filter(&st.registry);
    let deadline = tokio::time::Instant::now() + q.wait;
    let mut signal = st.store.feed_signal();
    loop {
        let sig = *signal.borrow_and_update();
        let s = st.store.clone();
        let f = filter.clone();
        let page = blocking(move || Ok(s.feed_page_scoped(q.after, q.limit, f.as_ref())?)).await?;
        // `more` with no change in scope: the scan window ended (FEED_SCAN_MAX); the client
        // goes on from `next` at once rather than waiting for new changes.
        if !page.changes.is_empty()
            || page.more
            || sig.closing
            || tokio::time::Instant::now() >= deadline
        {
            return Ok(feed_response(page));
        }
        loop {
            tokio::select! {
                r = signal.changed() => if r.is_err() { return Ok(feed_response(page)) },
                _ = tokio::time::sleep_until(deadline) => return Ok(feed_response(page)),
            }
            let sig = *signal.borrow_and_update();
            if sig.last_seq > q.after || sig.closing {
                break;
            }
        }
    }
}

#[derive(Serialize)]
pub(crate) struct UplinkStatus {
    box_id: String,
    /// Highest outbox seq: the pull feed is complete up to here.
    last_seq: i64,
    sinks: Vec<SinkStatus>,
}

/// `GET /api/v1/uplink`: per sink backlog, oldest undelivered age, last error, dead letters.
pub(super) async fn status(State(st): State<ApiState>) -> Result<Json<UplinkStatus>, ApiError> {
    let s = st.store.clone();
    let (last_seq, sinks) =
        blocking(move || Ok((s.outbox_last_seq()?, s.uplink_status(OffsetDateTime::now_utc())?)))
            .await?;
    Ok(Json(UplinkStatus { box_id: st.box_id.clone(), last_seq, sinks }))
}

/// A Prometheus label value: backslash, double quote and newline escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The text exposition of the uplink and camera figures.
pub(crate) fn render_metrics(
    last_seq: i64,
    sinks: &[SinkStatus],
    cameras: &[crate::health::CameraHealth],
) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, rows: Vec<(String, f64)>| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, v) in rows {
            let _ = writeln!(out, "{name}{labels} {v}");
        }
    };
    let per_sink = |f: &dyn Fn(&SinkStatus) -> Option<f64>| -> Vec<(String, f64)> {
        sinks
            .iter()
            .filter_map(|s| {
                f(s).map(|v| {
                    (format!("{{sink=\"{}\",kind=\"{}\"}}", label(&s.name), label(&s.kind)), v)
                })
            })
            .collect()
    };
    let secs = |t: Option<OffsetDateTime>| t.map(|t| t.unix_timestamp_nanos() as f64 / 1e9);
    family(
        "gridwatch_outbox_last_seq",
        "gauge",
        "Highest outbox sequence number (changes recorded for the uplink).",
        vec![(String::new(), last_seq as f64)],
    );
    family(
        "gridwatch_uplink_backlog",
        "gauge",
        "Changes not yet delivered to the sink.",
        per_sink(&|s| Some(s.backlog as f64)),
    );
    family(
        "gridwatch_uplink_oldest_undelivered_age_seconds",
        "gauge",
        "Age of the oldest change not yet delivered to the sink (0 when none).",
        per_sink(&|s| Some(s.oldest_undelivered_age_secs.unwrap_or(0.0))),
    );
    family(
        "gridwatch_uplink_delivered_total",
        "counter",
        "Changes acknowledged by the sink.",
        per_sink(&|s| Some(s.delivered_total as f64)),
    );
    family(
        "gridwatch_uplink_failed_attempts_total",
        "counter",
        "Delivery attempts that failed.",
        per_sink(&|s| Some(s.failed_attempts_total as f64)),
    );
    family(
        "gridwatch_uplink_dead_letters",
        "gauge",
        "Changes the sink gave up on.",
        per_sink(&|s| Some(s.dead_letter_count as f64)),
    );
    family(
        "gridwatch_uplink_retrying",
        "gauge",
        "Cameras whose next change is being retried.",
        per_sink(&|s| Some(s.retrying.len() as f64)),
    );
    family(
        "gridwatch_uplink_last_success_timestamp_seconds",
        "gauge",
        "Unix time of the last acknowledged delivery.",
        per_sink(&|s| secs(s.last_success_at)),
    );
    family(
        "gridwatch_uplink_last_error_timestamp_seconds",
        "gauge",
        "Unix time of the last failed attempt.",
        per_sink(&|s| secs(s.last_error_at)),
    );
    // Sinks with a platform session (gat1400): registration and platform clock offset.
    family(
        "gridwatch_uplink_registered",
        "gauge",
        "1 while the sink is registered with its platform (GA/T 1400 sinks only).",
        per_sink(&|s| s.session.as_ref()?["registered"].as_bool().map(|r| f64::from(u8::from(r)))),
    );
    family(
        "gridwatch_uplink_platform_time_offset_seconds",
        "gauge",
        "Platform clock minus box clock at the last time sync (GA/T 1400 sinks only).",
        per_sink(&|s| s.session.as_ref()?["time_offset_secs"].as_f64()),
    );
    family(
        "gridwatch_camera_online",
        "gauge",
        "1 while the camera delivers frames.",
        cameras
            .iter()
            .map(|c| {
                (
                    format!("{{camera=\"{}\"}}", label(&c.id)),
                    f64::from(u8::from(c.state == CameraState::Online)),
                )
            })
            .collect(),
    );
    family(
        "gridwatch_camera_stream_online",
        "gauge",
        "1 while the camera's stream delivers (main: recorded, detect: analysed); streams not \
         opened are left out.",
        cameras
            .iter()
            .flat_map(|c| {
                [("main", &c.streams.main), ("detect", &c.streams.detect)].map(|(n, s)| (c, n, s))
            })
            .filter(|(_, _, s)| s.state != CameraState::Disabled)
            .map(|(c, n, s)| {
                (
                    format!("{{camera=\"{}\",stream=\"{n}\"}}", label(&c.id)),
                    f64::from(u8::from(s.state == CameraState::Online)),
                )
            })
            .collect(),
    );
    out
}

/// `GET /metrics`: Prometheus text format (a principal with the `monitor` permission and
/// every camera).
pub(super) async fn metrics(State(st): State<ApiState>) -> Result<Response, ApiError> {
    let s = st.store.clone();
    let (last_seq, sinks) =
        blocking(move || Ok((s.outbox_last_seq()?, s.uplink_status(OffsetDateTime::now_utc())?)))
            .await?;
    let body = render_metrics(last_seq, &sinks, &st.registry.all());
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        body,
    )
        .into_response())
}

/// How long one event stream stays open before the server ends it; the browser reconnects
/// at once with `Last-Event-ID`, which re-checks the session (a revoked or expired session
/// gets its 401 within this time) and loses nothing.
pub const STREAM_MAX_SECS: u64 = 300;
/// Comment lines sent on an idle stream so proxies and browsers keep it open.
const STREAM_KEEPALIVE_SECS: u64 = 15;

/// Where an event stream starts: after `Last-Event-ID` (a reconnect), after `?after=`, or
/// after the newest change (only what happens from now on).
pub(crate) fn parse_stream_start(
    raw: Option<&str>,
    last_event_id: Option<&str>,
) -> Result<Option<i64>, ApiError> {
    let cursor = |name: &str, v: &str| {
        v.trim().parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
            ApiError::bad_param(
                name,
                format!("`{name}` must be a non-negative integer (an event stream id), got `{v}`"),
            )
        })
    };
    let mut after = None;
    for (key, value) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "after" if after.is_none() => after = Some(cursor("after", &value)?),
            "after" => {
                return Err(ApiError::bad_param(
                    "after",
                    "query parameter `after` given more than once",
                ))
            }
            k => {
                return Err(ApiError::bad_param(
                    k,
                    format!("unknown query parameter `{k}` (allowed: after)"),
                ))
            }
        }
    }
    match last_event_id {
        Some(v) => Ok(Some(cursor("Last-Event-ID", v)?)),
        None => Ok(after),
    }
}

/// `GET /api/v1/events/stream`: Server-Sent Events, one `change` message per outbox change
/// (the feed's envelope as `data`, its seq as `id`), limited to the principal's cameras.
pub(super) async fn stream(
    State(st): State<ApiState>,
    Extension(p): Extension<Principal>,
    headers: axum::http::HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let last_id = headers.get("last-event-id").map(|v| v.to_str().unwrap_or("invalid"));
    let start = parse_stream_start(raw.as_deref(), last_id)?;
    let s = st.store.clone();
    let mut after = match start {
        Some(n) => n,
        None => blocking(move || Ok(s.outbox_last_seq()?)).await?,
    };
    let filter = p.filter(&st.registry);
    let mut until = tokio::time::Instant::now() + Duration::from_secs(STREAM_MAX_SECS);
    if let Some((_, expires)) = &p.session {
        let left = (*expires - st.auth.now()).whole_milliseconds().max(0) as u64;
        until = until.min(tokio::time::Instant::now() + Duration::from_millis(left));
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Event, std::convert::Infallible>>(16);
    let store = st.store.clone();
    tokio::spawn(async move {
        let mut signal = store.feed_signal();
        let _ = tx
            .send(Ok(Event::default().retry(Duration::from_secs(2)).comment("gridwatch events")))
            .await;
        loop {
            let sig = *signal.borrow_and_update();
            if sig.closing {
                return;
            }
            let (s, f) = (store.clone(), filter.clone());
            let page = match blocking(move || {
                Ok(s.feed_page_scoped(after, FEED_DEFAULT_LIMIT, f.as_ref())?)
            })
            .await
            {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "event stream: reading changes failed; closing the stream");
                    return;
                }
            };
            for (seq, env) in &page.changes {
                if tx
                    .send(Ok(Event::default().event("change").id(seq.to_string()).data(env)))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            after = page.next;
            if page.more {
                continue;
            }
            tokio::select! {
                r = signal.changed() => if r.is_err() { return },
                _ = tx.closed() => return,
                _ = tokio::time::sleep_until(until) => return,
            }
        }
    });
    let keep = KeepAlive::new().interval(Duration::from_secs(STREAM_KEEPALIVE_SECS));
    Ok(Sse::new(super::RxStream(rx)).keep_alive(keep).into_response())
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;
    use crate::health::Registry;
    use crate::store::Store;
    use crate::types::{Change, EventChange, Severity};

    const TOKEN: &str = "gw_uplink_test";

    fn state() -> (tempfile::TempDir, ApiState) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let st = ApiState {
            store,
            registry: Registry::new(),
            box_id: "box-9".into(),
            config_token_hashes: vec![crate::store::hash_token(TOKEN)],
            started_at: OffsetDateTime::now_utc(),
            media: crate::api::MediaSettings::default(),
            auth: crate::api::AuthSettings::default(),
            open_data: Default::default(),
        };
        (dir, st)
    }

    fn start(store: &Store, cam: &str) {
        store
            .apply(&EventChange::bare(
                uuid::Uuid::now_v7(),
                Change::Started,
                cam,
                "presence",
                Severity::Low,
                OffsetDateTime::now_utc(),
            ))
            .unwrap();
    }

    async fn get(st: &ApiState, uri: &str) -> (StatusCode, String, String) {
        let req = Request::get(uri)
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(Body::empty())
            .unwrap();
        let resp = super::super::router(st.clone()).oneshot(req).await.unwrap();
        let status = resp.status();
        let ct = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec())
            .unwrap();
        (status, ct, body)
    }

    /// Opens the event stream with `headers`; returns the status and a reader of its body.
    async fn open_stream(st: &ApiState, uri: &str, headers: &[(&str, &str)]) -> (StatusCode, Body) {
        let mut req = Request::get(uri).header("authorization", format!("Bearer {TOKEN}"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = super::super::router(st.clone())
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        (resp.status(), resp.into_body())
    }

    /// Reads the stream until `n` `change` messages arrived: their (id, envelope).
    async fn changes(body: &mut Body, n: usize) -> Vec<(i64, serde_json::Value)> {
        let (mut text, mut out) = (String::new(), Vec::new());
        while out.len() < n {
            let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
                .await
                .unwrap_or_else(|_| panic!("no change within 5 s; got so far: {text}"))
                .expect("stream ended early")
                .unwrap();
            text.push_str(std::str::from_utf8(&frame.into_data().unwrap()).unwrap());
            while let Some(end) = text.find("\n\n") {
                let msg: String = text.drain(..end + 2).collect();
                let field =
                    |name: &str| msg.lines().find_map(|l| l.strip_prefix(name)).map(str::to_string);
                if field("event: ").as_deref() == Some("change") {
                    let id = field("id: ").unwrap().parse().unwrap();
                    out.push((id, serde_json::from_str(&field("data: ").unwrap()).unwrap()));
                }
            }
        }
        out
    }

    #[tokio::test]
    async fn event_stream_sends_new_changes_live_and_resumes_after_last_event_id() {
        let (_d, st) = state();
        start(&st.store, "a"); // before the stream opens: not sent without a cursor
        let (status, mut body) = open_stream(&st, "/api/v1/events/stream", &[]).await;
        assert_eq!(status, StatusCode::OK);
        let store = st.store.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            start(&store, "b");
            start(&store, "a");
        });
        let got = changes(&mut body, 2).await;
        assert_eq!(
            got.iter().map(|(_, e)| e["camera_id"].as_str().unwrap()).collect::<Vec<_>>(),
            ["b", "a"]
        );
        assert!(got.iter().all(|(id, e)| e["seq"] == *id && e["change"] == "started"));

        // A reconnect with Last-Event-ID gets what came after it, and nothing before.
        let first = got[0].0.to_string();
        let (_, mut body) =
            open_stream(&st, "/api/v1/events/stream", &[("last-event-id", &first)]).await;
        assert_eq!(changes(&mut body, 1).await[0].0, got[1].0);
        let (_, mut body) = open_stream(&st, "/api/v1/events/stream?after=0", &[]).await;
        assert_eq!(changes(&mut body, 3).await.len(), 3);

        for (uri, headers, param) in [
            ("/api/v1/events/stream?after=-1", vec![], "after"),
            ("/api/v1/events/stream?since=1", vec![], "since"),
            ("/api/v1/events/stream", vec![("last-event-id", "x")], "Last-Event-ID"),
        ] {
            let (status, body) = open_stream(&st, uri, &headers).await;
            let text =
                String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap();
            assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {text}");
            assert!(text.contains(param), "{uri}: {text}");
        }

        // Shutting down ends open streams (graceful shutdown does not wait on them).
        let (_, mut body) = open_stream(&st, "/api/v1/events/stream", &[]).await;
        st.store.close_feed();
        let end = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(f) = body.frame().await {
                f.unwrap();
            }
        });
        end.await.expect("the stream ends when the box shuts down");
    }

    #[tokio::test]
    async fn feed_pages_every_change_once_and_long_polls() {
        let (_d, st) = state();
        for i in 0..7 {
            start(&st.store, if i % 2 == 0 { "a" } else { "b" });
        }
        let (mut after, mut seqs) = (0i64, vec![]);
        loop {
            let (status, _, body) = get(&st, &format!("/api/v1/feed?after={after}&limit=3")).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            for c in v["changes"].as_array().unwrap() {
                seqs.push(c["seq"].as_i64().unwrap());
                assert_eq!(c["change"], "started");
            }
            after = v["next"].as_i64().unwrap();
            if !v["more"].as_bool().unwrap() {
                break;
            }
        }
        assert_eq!(seqs, (1..=7).collect::<Vec<i64>>());
        // Nothing new: an immediate empty page, the cursor unchanged.
        let (_, _, body) = get(&st, "/api/v1/feed?after=7").await;
        assert_eq!(body, r#"{"changes":[],"next":7,"more":false}"#);
        // Long-poll: answered within a second of the next change.
        let store = st.store.clone();
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(700)).await;
            let t = Instant::now();
            tokio::task::spawn_blocking(move || start(&store, "a")).await.unwrap();
            t
        });
        let t0 = Instant::now();
        let (_, _, body) = get(&st, "/api/v1/feed?after=7&wait_secs=20").await;
        let answered = Instant::now();
        let written = writer.await.unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["changes"][0]["seq"], 8, "{body}");
        assert!(
            answered.duration_since(written) < Duration::from_secs(1),
            "{:?}",
            answered.duration_since(written)
        );
        assert!(t0.elapsed() < Duration::from_secs(5));
        // A long-poll with nothing new returns empty after wait_secs; closing answers at once.
        let t0 = Instant::now();
        let (_, _, body) = get(&st, "/api/v1/feed?after=8&wait_secs=1").await;
        assert!(
            t0.elapsed() >= Duration::from_secs(1) && body.contains("\"changes\":[]"),
            "{body}"
        );
        st.store.close_feed();
        let t0 = Instant::now();
        get(&st, "/api/v1/feed?after=8&wait_secs=30").await;
        assert!(t0.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn feed_parameters_are_checked() {
        let (_d, st) = state();
        for (q, param) in [
            ("after=-1", "after"),
            ("limit=0", "limit"),
            ("limit=1001", "limit"),
            ("wait_secs=61", "wait_secs"),
            ("x=1", "x"),
            ("after=1&after=2", "after"),
        ] {
            let (status, _, body) = get(&st, &format!("/api/v1/feed?{q}")).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{q}");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["error"]["parameter"], param, "{q}: {body}");
        }
        let req = Request::get("/api/v1/feed").body(Body::empty()).unwrap();
        assert_eq!(
            super::super::router(st.clone()).oneshot(req).await.unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
        let req = Request::get("/metrics").body(Body::empty()).unwrap();
        assert_eq!(
            super::super::router(st.clone()).oneshot(req).await.unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
    }

    /// The envelope, feed page and status the box serves have exactly the fields
    /// docs/openapi.json declares (required = all properties = what is sent).
    #[tokio::test]
    async fn served_json_matches_the_openapi_schemas() {
        let (_d, st) = state();
        st.store.register_sinks(&[("city".into(), "webhook".into(), "http://x/h".into())]).unwrap();
        start(&st.store, "a");
        st.store.append_camera_status("a", false, Some("gone"), OffsetDateTime::now_utc()).unwrap();
        let spec: serde_json::Value = serde_json::from_str(crate::api::OPENAPI_JSON).unwrap();
        let check = |schema: &str, v: &serde_json::Value| {
            let s = &spec["components"]["schemas"][schema];
            let keys = |x: &serde_json::Value| -> std::collections::BTreeSet<String> {
                x.as_object().unwrap().keys().cloned().collect()
            };
            let required: std::collections::BTreeSet<String> = s["required"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k.as_str().unwrap().to_string())
                .collect();
            assert_eq!(keys(&s["properties"]), required, "{schema}: every property is required");
            assert_eq!(keys(v), required, "{schema}: served fields differ from the spec");
        };
        let (_, _, body) = get(&st, "/api/v1/feed").await;
        let page: serde_json::Value = serde_json::from_str(&body).unwrap();
        check("FeedPage", &page);
        for env in page["changes"].as_array().unwrap() {
            check("Envelope", env);
        }
        let (_, _, body) = get(&st, "/api/v1/uplink").await;
        let status: serde_json::Value = serde_json::from_str(&body).unwrap();
        check("UplinkStatus", &status);
        check("SinkStatus", &status["sinks"][0]);
    }

    #[tokio::test]
    async fn status_and_metrics_show_backlog_and_errors() {
        let (_d, st) = state();
        st.store
            .register_sinks(&[("city".into(), "webhook".into(), "http://127.0.0.1:9/h".into())])
            .unwrap();
        start(&st.store, "a");
        start(&st.store, "b");
        let (status, _, body) = get(&st, "/api/v1/uplink").await;
        assert_eq!(status, StatusCode::OK);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!((v["box_id"].as_str(), v["last_seq"].as_i64()), (Some("box-9"), Some(2)));
        assert_eq!(v["sinks"][0]["name"], "city");
        assert_eq!(v["sinks"][0]["backlog"], 2);
        assert!(v["sinks"][0]["oldest_undelivered_age_secs"].as_f64().unwrap() >= 0.0);
        let (status, ct, text) = get(&st, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
        assert!(
            text.contains("gridwatch_uplink_backlog{sink=\"city\",kind=\"webhook\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE gridwatch_uplink_delivered_total counter\n"), "{text}");
        assert!(text.contains("gridwatch_outbox_last_seq 2\n"), "{text}");
        // Every sample line is `name{labels} value` with a numeric value.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let v = l.rsplit(' ').next().unwrap();
            assert!(v.parse::<f64>().is_ok(), "{l}");
        }
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
