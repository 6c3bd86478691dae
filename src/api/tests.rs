use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use super::*;
use crate::config::CameraConfig;
use crate::types::{BBox, Change, Detection, EventChange, Frame, Severity};

const TOKEN: &str = "gw_config_token";
const DB_TOKEN: &str = "gw_database_token";

struct Fx {
    _dir: tempfile::TempDir,
    state: ApiState,
}

fn camera(id: &str) -> CameraHealth {
    let cfg: CameraConfig = serde_json::from_value(serde_json::json!({
        "id": id, "url": "rtsp://cam/x", "models": ["default"], "grid_cell": "C3"
    }))
    .unwrap();
    crate::ingest::camera_health(&cfg, time::OffsetDateTime::now_utc())
}

fn fixture() -> Fx {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.add_token("db", &store::hash_token(DB_TOKEN)).unwrap();
    let registry = Registry::new();
    registry.register(camera("cam1"));
    registry.register(camera("cam2"));
    registry.set_state("cam2", CameraState::Online, None);
    let state = ApiState {
        store,
        registry,
        box_id: "box-7".into(),
        config_token_hashes: vec![store::hash_token(TOKEN).to_uppercase()],
        started_at: OffsetDateTime::now_utc() - time::Duration::seconds(42),
        media: MediaSettings {
            masker: Ok(crate::masking::tests::shared()),
            ..MediaSettings::default()
        },
        auth: AuthSettings::default(),
        open_data: Default::default(),
    };
    Fx { _dir: dir, state }
}

fn frame(camera: &str, w: u32, h: u32) -> Frame {
    Frame {
        camera_id: Arc::from(camera),
        index: 1,
        width: w,
        height: h,
        rgb: Arc::from(vec![90u8; (w * h * 3) as usize]),
        pts_ns: None,
        captured_at: OffsetDateTime::now_utc(),
        captured_instant: Instant::now(),
    }
}

fn start(fx: &Fx, camera: &str, kind: &str, at: OffsetDateTime, snapshot: bool) -> Event {
    fx.state
        .store
        .apply(&EventChange {
            event_id: Uuid::now_v7(),
            change: Change::Started,
            camera_id: camera.into(),
            grid_cell: None,
            kind: kind.into(),
            severity: Severity::Medium,
            at,
            objects: vec![Detection {
                class_id: 0,
                class: "person".into(),
                score: 0.9,
                bbox: BBox { x1: 0.1, y1: 0.1, x2: 0.4, y2: 0.8 },
                track_id: Some(4),
                keypoints: None,
            }],
            snapshot: snapshot.then(|| frame(camera, 96, 64)),
            rule: Some(format!("{kind}#0")),
            zone: Some("area".into()),
            line: None,
            detail: Some(serde_json::json!({"count": 1})),
            caused_by: Instant::now(),
        })
        .unwrap()
}

struct Resp {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    fn content_type(&self) -> &str {
        self.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
    /// Asserts a JSON error with this status and code; returns the error object.
    fn error(&self, status: StatusCode, code: &str) -> Value {
        assert_eq!(self.status, status, "{}", String::from_utf8_lossy(&self.body));
        assert!(self.content_type().starts_with("application/json"), "{}", self.content_type());
        let v = self.json();
        assert_eq!(v["error"]["code"], code, "{v}");
        assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        v["error"].clone()
    }
}

async fn call(fx: &Fx, method: &str, uri: &str, token: Option<&str>) -> Resp {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let resp = router(fx.state.clone()).oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes().to_vec();
    Resp { status, headers, body }
}

async fn get(fx: &Fx, uri: &str) -> Resp {
    call(fx, "GET", uri, Some(TOKEN)).await
}

#[tokio::test]
async fn health_needs_no_token() {
    let fx = fixture();
    let r = call(&fx, "GET", "/api/v1/health", None).await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["box_id"], "box-7");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert!(v["uptime_secs"].as_i64().unwrap() >= 42);
    // Per stream: both cameras have one shared connection, so each counts in main and detect.
    let one_of_two = serde_json::json!({"online": 1, "total": 2});
    assert_eq!(
        v["cameras"],
        serde_json::json!({"online": 1, "total": 2,
            "streams": {"main": one_of_two, "detect": one_of_two}})
    );
}

#[tokio::test]
async fn auth_required_on_events() {
    let fx = fixture();
    let r = call(&fx, "GET", "/api/v1/events", None).await;
    r.error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert!(r
        .headers
        .get(header::WWW_AUTHENTICATE)
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("Bearer"));

    let r = call(&fx, "GET", "/api/v1/events", Some("wrong")).await;
    r.error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert!(r.headers.contains_key(header::WWW_AUTHENTICATE));

    // Wrong scheme.
    let req = Request::get("/api/v1/events")
        .header(header::AUTHORIZATION, format!("Basic {TOKEN}"))
        .body(Body::empty())
        .unwrap();
    let resp = router(fx.state.clone()).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    // Config token (stored upper-case hex) and database token both work.
    assert_eq!(call(&fx, "GET", "/api/v1/events", Some(TOKEN)).await.status, StatusCode::OK);
    assert_eq!(call(&fx, "GET", "/api/v1/events", Some(DB_TOKEN)).await.status, StatusCode::OK);
    // Lower-case scheme is accepted too.
    let req = Request::get("/api/v1/cameras")
        .header(header::AUTHORIZATION, format!("bearer {DB_TOKEN}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(router(fx.state.clone()).oneshot(req).await.unwrap().status(), StatusCode::OK);

    // A revoked database token stops working immediately.
    let id = fx.state.store.list_tokens().unwrap()[0].id;
    fx.state.store.revoke_token(id).unwrap();
    call(&fx, "GET", "/api/v1/events", Some(DB_TOKEN))
        .await
        .error(StatusCode::UNAUTHORIZED, "unauthorized");

    // Every protected route is protected.
    for path in ["/api/v1/cameras", "/api/v1/cameras/cam1", "/api/v1/cameras/cam1/latest.jpg"] {
        call(&fx, "GET", path, None).await.error(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    let ev = format!("/api/v1/events/{}", Uuid::now_v7());
    for path in [ev.clone(), format!("{ev}/snapshot.jpg")] {
        call(&fx, "GET", &path, None).await.error(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    assert_eq!(call(&fx, "GET", "/api/v1/openapi.json", None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn bad_query_parameters_are_json_400_naming_the_parameter() {
    let fx = fixture();
    let cases = [
        ("since=yesterday", "since"),
        ("until=2026-13-01T00:00:00Z", "until"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=ten", "limit"),
        ("limit=-1", "limit"),
        ("before=abc", "before"),
        ("before=0", "before"),
        ("camera=", "camera"),
        ("colour=red", "colour"),
        ("limit=5&limit=6", "limit"),
        ("since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z", "until"),
    ];
    for (q, param) in cases {
        let r = get(&fx, &format!("/api/v1/events?{q}")).await;
        let e = r.error(StatusCode::BAD_REQUEST, "bad_request");
        assert_eq!(e["parameter"], param, "{q}: {e}");
        assert!(e["message"].as_str().unwrap().contains(param), "{q}: {e}");
    }
    // Limits at the edges and a '+' offset sent unencoded (arrives as a space) are fine.
    for q in [
        "limit=1",
        "limit=500",
        "since=2026-01-01T00:00:00+01:00",
        "since=2026-01-01T00:00:00%2B01:00&until=2027-01-01T00:00:00Z",
    ] {
        assert_eq!(get(&fx, &format!("/api/v1/events?{q}")).await.status, StatusCode::OK, "{q}");
    }
}

#[tokio::test]
async fn events_pagination_and_filters() {
    let fx = fixture();
    let base = time::macros::datetime!(2026-05-01 08:00 UTC);
    let mut all = Vec::new();
    for i in 0..23 {
        let cam = if i % 3 == 0 { "cam2" } else { "cam1" };
        all.push(start(&fx, cam, "presence", base + time::Duration::minutes(i), false));
    }
    let mut seqs = Vec::new();
    let mut uri = "/api/v1/events?limit=10".to_string();
    let mut pages = 0;
    loop {
        let v = get(&fx, &uri).await.json();
        pages += 1;
        let evs = v["events"].as_array().unwrap();
        assert!(evs.len() <= 10);
        seqs.extend(evs.iter().map(|e| e["seq"].as_i64().unwrap()));
        match v["next_before"].as_i64() {
            Some(b) => uri = format!("/api/v1/events?limit=10&before={b}"),
            None => {
                assert!(v["next_before"].is_null());
                break;
            }
        }
    }
    assert_eq!(pages, 3);
    let expected: Vec<i64> = all.iter().rev().map(|e| e.seq).collect();
    assert_eq!(seqs, expected);

    // Default limit 50 returns everything here; events round-trip as the store returns them.
    let v = get(&fx, "/api/v1/events").await.json();
    let evs: Vec<Event> = serde_json::from_value(v["events"].clone()).unwrap();
    assert_eq!(evs.len(), 23);
    assert_eq!(evs[0], *all.last().unwrap());

    let v = get(&fx, "/api/v1/events?camera=cam2&limit=500").await.json();
    assert_eq!(v["events"].as_array().unwrap().len(), 8);
    let v = get(&fx, "/api/v1/events?since=2026-05-01T08:10:00Z&until=2026-05-01T10:12:00%2B02:00")
        .await
        .json();
    assert_eq!(v["events"].as_array().unwrap().len(), 2);
    let v = get(&fx, "/api/v1/events?kind=loitering").await.json();
    assert_eq!(v["events"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn single_event_and_snapshot() {
    let fx = fixture();
    let with = start(&fx, "cam1", "presence", OffsetDateTime::now_utc(), true);
    let without = start(&fx, "cam1", "presence", OffsetDateTime::now_utc(), false);

    let r = get(&fx, &format!("/api/v1/events/{}", with.id)).await;
    assert_eq!(r.status, StatusCode::OK);
    let got: Event = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(got, with);

    let r = get(&fx, &format!("/api/v1/events/{}/snapshot.jpg", with.id)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.content_type(), "image/jpeg");
    assert_eq!(&r.body[..3], &[0xFF, 0xD8, 0xFF]);
    image::load_from_memory_with_format(&r.body, image::ImageFormat::Jpeg).unwrap();

    get(&fx, &format!("/api/v1/events/{}/snapshot.jpg", without.id))
        .await
        .error(StatusCode::NOT_FOUND, "no_snapshot");
    let unknown = Uuid::now_v7();
    get(&fx, &format!("/api/v1/events/{unknown}")).await.error(StatusCode::NOT_FOUND, "not_found");
    get(&fx, &format!("/api/v1/events/{unknown}/snapshot.jpg"))
        .await
        .error(StatusCode::NOT_FOUND, "not_found");
    for bad in ["not-a-uuid", "..%2F..%2Fgridwatch.db", "123"] {
        let e = get(&fx, &format!("/api/v1/events/{bad}"))
            .await
            .error(StatusCode::BAD_REQUEST, "bad_request");
        assert_eq!(e["parameter"], "id");
        get(&fx, &format!("/api/v1/events/{bad}/snapshot.jpg"))
            .await
            .error(StatusCode::BAD_REQUEST, "bad_request");
    }
}

#[tokio::test]
async fn cameras_and_latest_jpg() {
    let fx = fixture();
    let v = get(&fx, "/api/v1/cameras").await.json();
    let ids: Vec<&str> =
        v["cameras"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["cam1", "cam2"]);

    let v = get(&fx, "/api/v1/cameras/cam2").await.json();
    assert_eq!(v["state"], "online");
    assert_eq!(v["grid_cell"], "C3");
    get(&fx, "/api/v1/cameras/nope").await.error(StatusCode::NOT_FOUND, "not_found");
    get(&fx, "/api/v1/cameras/nope/latest.jpg").await.error(StatusCode::NOT_FOUND, "not_found");

    get(&fx, "/api/v1/cameras/cam1/latest.jpg")
        .await
        .error(StatusCode::SERVICE_UNAVAILABLE, "no_frame");
    fx.state.registry.set_latest(frame("cam1", 64, 48));
    let r = get(&fx, "/api/v1/cameras/cam1/latest.jpg").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.content_type(), "image/jpeg");
    let img = image::load_from_memory_with_format(&r.body, image::ImageFormat::Jpeg).unwrap();
    assert_eq!((img.width(), img.height()), (64, 48));
}

/// Each camera lists its configured rules (id, kind, zone, line), and serves exactly the
/// fields docs/openapi.json declares for `CameraHealth`.
#[tokio::test]
async fn cameras_list_their_rules() {
    let fx = fixture();
    let cfg: CameraConfig = serde_json::from_value(serde_json::json!({
        "id": "gate", "url": "rtsp://cam/x", "models": ["default"],
        "zones": [{ "name": "area", "points": [[0.1, 0.1], [0.9, 0.1], [0.5, 0.9]] }],
        "lines": [{ "name": "kerb", "points": [[0.1, 0.5], [0.9, 0.5]] }],
        "rules": [
            { "kind": "intrusion", "zone": "area", "classes": ["person"] },
            { "kind": "line_crossing", "line": "kerb" },
            { "kind": "fire" },
        ],
    }))
    .unwrap();
    fx.state.registry.register(crate::ingest::camera_health(&cfg, OffsetDateTime::now_utc()));
    let v = get(&fx, "/api/v1/cameras/gate").await.json();
    assert_eq!(
        v["rules"],
        serde_json::json!([
            { "id": "intrusion#0", "kind": "intrusion", "zone": "area", "line": null },
            { "id": "line_crossing#1", "kind": "line_crossing", "zone": null, "line": "kerb" },
            { "id": "fire#2", "kind": "fire", "zone": null, "line": null },
        ])
    );
    let v = get(&fx, "/api/v1/cameras").await.json();
    assert_eq!(v["cameras"][0]["rules"], serde_json::json!([]), "cam1 has no rules");
    let spec: Value = serde_json::from_str(OPENAPI_JSON).unwrap();
    let schema = &spec["components"]["schemas"]["CameraHealth"];
    let keys = |x: &Value| -> BTreeSet<String> { x.as_object().unwrap().keys().cloned().collect() };
    let required: BTreeSet<String> =
        schema["required"].as_array().unwrap().iter().map(|k| k.as_str().unwrap().into()).collect();
    assert_eq!(keys(&schema["properties"]), required, "every property is required");
    assert_eq!(keys(&v["cameras"][0]), required, "served fields differ from the spec");
    let rule = &schema["properties"]["rules"]["items"];
    let rule_keys: BTreeSet<String> =
        rule["required"].as_array().unwrap().iter().map(|k| k.as_str().unwrap().into()).collect();
    assert_eq!(keys(&rule["properties"]), rule_keys);
    let served = get(&fx, "/api/v1/cameras/gate").await.json();
    assert_eq!(keys(&served["rules"][0]), rule_keys);
}

#[tokio::test]
async fn unknown_routes_and_methods_are_json() {
    let fx = fixture();
    call(&fx, "GET", "/nope", None).await.error(StatusCode::NOT_FOUND, "not_found");
    call(&fx, "GET", "/api/v1/events/x/y/z", Some(TOKEN))
        .await
        .error(StatusCode::NOT_FOUND, "not_found");
    call(&fx, "POST", "/api/v1/health", None)
        .await
        .error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
}

#[tokio::test]
async fn openapi_covers_every_route() {
    let fx = fixture();
    let r = call(&fx, "GET", "/api/v1/openapi.json", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.content_type().starts_with("application/json"));
    let spec = r.json();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = spec["paths"].as_object().unwrap();
    let served: BTreeSet<String> = routes().iter().map(|r| r.path.to_string()).collect();
    let documented: BTreeSet<String> = paths.keys().cloned().collect();
    assert_eq!(served, documented, "router and docs/openapi.json disagree");
    for r in routes() {
        // Exactly the served methods are documented.
        let served_methods: BTreeSet<String> =
            r.ops.iter().map(|o| o.method.as_str().to_ascii_lowercase()).collect();
        let documented_methods: BTreeSet<String> = paths[r.path]
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| *k != "parameters")
            .cloned()
            .collect();
        assert_eq!(
            served_methods, documented_methods,
            "{}: methods in router and spec differ",
            r.path
        );
        for o in &r.ops {
            let m = o.method.as_str().to_ascii_lowercase();
            let op = &paths[r.path][&m];
            // Public operations declare `security: []`; the others inherit bearer or session.
            let public_in_spec = op["security"].as_array().is_some_and(|s| s.is_empty());
            assert_eq!(
                public_in_spec,
                o.access == auth::Access::Public,
                "{m} {}: security differs",
                r.path
            );
            // `x-access` states what the router enforces.
            assert_eq!(
                op["x-access"],
                o.access.as_str(),
                "{m} {}: x-access differs from the router",
                r.path
            );
            if matches!(o.access, auth::Access::Needs(_) | auth::Access::Authenticated) {
                assert!(op["responses"]["401"].is_object(), "{m} {}: 401 undocumented", r.path);
            }
            if matches!(o.access, auth::Access::Needs(_)) {
                assert!(op["responses"]["403"].is_object(), "{m} {}: 403 undocumented", r.path);
            }
            // Every `{param}` in the path is documented.
            for seg in r.path.split('/').filter(|s| s.starts_with('{')) {
                let name = seg.trim_matches(|c| c == '{' || c == '}');
                let params = op["parameters"].as_array().cloned().unwrap_or_default();
                let params = params
                    .iter()
                    .chain(paths[r.path]["parameters"].as_array().into_iter().flatten());
                assert!(
                    params.clone().any(|p| p["name"] == name && p["in"] == "path"),
                    "{m} {}: `{name}` undocumented",
                    r.path
                );
            }
        }
    }
    assert!(spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer");
    let session = &spec["components"]["securitySchemes"]["session"];
    assert_eq!(
        (session["type"].as_str(), session["in"].as_str(), session["name"].as_str()),
        (Some("apiKey"), Some("cookie"), Some(SESSION_COOKIE))
    );
    for s in ["Event", "Detection", "CameraHealth", "Error"] {
        assert!(spec["components"]["schemas"][s].is_object(), "schema {s} missing");
    }
}

#[tokio::test]
async fn serve_shuts_down_gracefully() {
    let fx = fixture();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, router(fx.state.clone()), async move {
        let _ = rx.await;
    }));
    // tokio's io-util feature is not enabled: a plain blocking client on a blocking thread.
    let out = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    })
    .await
    .unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("\"box_id\":\"box-7\""));
    tx.send(()).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[test]
fn query_parser_unit() {
    let q = parse_event_query(None).unwrap();
    assert_eq!(q.limit, DEFAULT_LIMIT);
    let q = parse_event_query(Some("camera=a%20b&kind=presence&before=7&limit=3")).unwrap();
    assert_eq!(q.camera.as_deref(), Some("a b"));
    assert_eq!(q.kind.as_deref(), Some("presence"));
    assert_eq!((q.before_seq, q.limit), (Some(7), 3));
    let q = parse_event_query(Some("severity=high&grid_cell=B7")).unwrap();
    assert_eq!(
        (q.severity, q.grid_cell.as_deref()),
        (Some(crate::types::Severity::High), Some("B7"))
    );
    let e = parse_event_query(Some("severity=urgent")).unwrap_err();
    assert!(e.to_string().contains("`severity`") && e.to_string().contains("urgent"), "{e}");
}

#[tokio::test]
async fn counts_aggregate_per_bucket() {
    use crate::geometry::CrossDir;
    use crate::types::CountDelta;
    let fx = fixture();
    let d = |line: &str, dir, at: OffsetDateTime, count| CountDelta {
        camera_id: "cam1".into(),
        line: line.into(),
        class: "person".into(),
        direction: dir,
        at,
        count,
        speed_kmh: None,
    };
    let t = time::macros::datetime!(2026-03-01 10:00:05 UTC);
    fx.state
        .store
        .add_counts(&[
            CountDelta { speed_kmh: Some(40.0), ..d("gate", CrossDir::AToB, t, 1) },
            d("gate", CrossDir::AToB, t, 1),
            CountDelta {
                speed_kmh: Some(50.0),
                ..d("gate", CrossDir::AToB, t + time::Duration::minutes(3), 1)
            },
            d("gate", CrossDir::BToA, t + time::Duration::minutes(90), 4),
            d("road", CrossDir::AToB, t, 9),
        ])
        .unwrap();
    let r = get(&fx, "/api/v1/stats/counts?camera=cam1&line=gate&bucket=hour").await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    assert_eq!(v["bucket"], "hour");
    assert_eq!(
        v["counts"],
        serde_json::json!([
            {"camera_id": "cam1", "line": "gate", "class": "person", "direction": "a_to_b",
             "bucket_start": "2026-03-01T10:00:00Z", "count": 3, "direction_name": null,
             "mean_speed_kmh": 45.0, "speed_count": 2},
            {"camera_id": "cam1", "line": "gate", "class": "person", "direction": "b_to_a",
             "bucket_start": "2026-03-01T11:00:00Z", "count": 4, "direction_name": null,
             "mean_speed_kmh": null, "speed_count": 0},
        ])
    );
    let v = get(&fx, "/api/v1/stats/counts?line=gate&bucket=minute&since=2026-03-01T10:01:00Z&until=2026-03-01T11:00:00Z")
        .await
        .json();
    assert_eq!(v["counts"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["counts"][0]["bucket_start"], "2026-03-01T10:03:00Z");
    // Default bucket is hour; day sums everything of the day.
    assert_eq!(get(&fx, "/api/v1/stats/counts").await.json()["bucket"], "hour");
    let v = get(&fx, "/api/v1/stats/counts?bucket=day&camera=cam1").await.json();
    assert_eq!(
        v["counts"].as_array().unwrap().iter().map(|c| c["count"].as_i64().unwrap()).sum::<i64>(),
        16
    );
    // Nothing for another camera.
    assert_eq!(
        get(&fx, "/api/v1/stats/counts?camera=cam2").await.json()["counts"],
        serde_json::json!([])
    );
    // Protected.
    call(&fx, "GET", "/api/v1/stats/counts", None)
        .await
        .error(StatusCode::UNAUTHORIZED, "unauthorized");
}

/// Counts keep the stable `direction` key and carry the name the camera's line gives it
/// now (`directions`); lines without names, or gone from the config, give `null`. The camera
/// lists the names with its line.
#[tokio::test]
async fn counts_carry_direction_names() {
    use crate::geometry::CrossDir;
    use crate::types::CountDelta;
    let fx = fixture();
    let cfg: CameraConfig = serde_json::from_value(serde_json::json!({
        "id": "road", "url": "rtsp://cam/x", "models": ["default"],
        "lines": [
            { "name": "north", "points": [[0.1, 0.6], [0.9, 0.4]],
              "directions": { "a_to_b": "southbound", "b_to_a": "northbound" } },
            { "name": "plain", "points": [[0.1, 0.5], [0.9, 0.5]] },
        ],
    }))
    .unwrap();
    fx.state.registry.register(crate::ingest::camera_health(&cfg, OffsetDateTime::now_utc()));
    let t = time::macros::datetime!(2026-03-01 10:00:05 UTC);
    let d = |line: &str, direction| CountDelta {
        camera_id: "road".into(),
        line: line.into(),
        class: "car".into(),
        direction,
        at: t,
        count: 1,
        speed_kmh: None,
    };
    fx.state
        .store
        .add_counts(&[
            d("north", CrossDir::AToB),
            d("north", CrossDir::BToA),
            d("plain", CrossDir::AToB),
            d("removed", CrossDir::AToB),
        ])
        .unwrap();
    let v = get(&fx, "/api/v1/stats/counts?camera=road&bucket=day").await.json();
    let got: Vec<(String, String, Value)> = v["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap().to_string();
            (s("line"), s("direction"), r["direction_name"].clone())
        })
        .collect();
    let row = |l: &str, d: &str, n: Value| (l.to_string(), d.to_string(), n);
    assert_eq!(
        got,
        vec![
            row("north", "a_to_b", "southbound".into()),
            row("north", "b_to_a", "northbound".into()),
            row("plain", "a_to_b", Value::Null),
            row("removed", "a_to_b", Value::Null),
        ]
    );
    // Exactly the fields docs/openapi.json declares for `CountRow`.
    let spec: Value = serde_json::from_str(OPENAPI_JSON).unwrap();
    let schema = &spec["components"]["schemas"]["CountRow"];
    let keys = |x: &Value| -> BTreeSet<String> { x.as_object().unwrap().keys().cloned().collect() };
    assert_eq!(keys(&schema["properties"]), keys(&v["counts"][0]));
    let cam = get(&fx, "/api/v1/cameras/road").await.json();
    assert_eq!(cam["lines"][0]["directions"]["a_to_b"], "southbound");
    assert!(cam["lines"][1].get("directions").is_none(), "{cam}");
    let line = &spec["components"]["schemas"]["CameraHealth"]["properties"]["lines"]["items"];
    assert!(keys(&line["properties"]).is_superset(&keys(&cam["lines"][0])), "{line}");
}

#[tokio::test]
async fn counts_bad_parameters_are_400() {
    let fx = fixture();
    for (q, param) in [
        ("bucket=week", "bucket"),
        ("bucket=", "bucket"),
        ("since=yesterday", "since"),
        ("until=2026-13-01T00:00:00Z", "until"),
        ("line=", "line"),
        ("camera=a&camera=b", "camera"),
        ("direction=a_to_b", "direction"),
        ("since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z", "until"),
    ] {
        let e = get(&fx, &format!("/api/v1/stats/counts?{q}"))
            .await
            .error(StatusCode::BAD_REQUEST, "bad_request");
        assert_eq!(e["parameter"], param, "{q}: {e}");
    }
}

#[tokio::test]
async fn occupancy_aggregates_per_bucket() {
    use crate::types::OccupancyDelta;
    let fx = fixture();
    let d = |zone: &str, class: &str, at: OffsetDateTime, samples, sum, max| OccupancyDelta {
        camera_id: "cam1".into(),
        zone: zone.into(),
        class: class.into(),
        bucket_start: at,
        samples,
        sum,
        max,
    };
    let t = time::macros::datetime!(2026-03-01 10:00 UTC);
    fx.state
        .store
        .add_occupancy(&[
            d("plaza", "*", t, 600, 1200, 4),
            d("plaza", "person", t, 600, 1200, 4),
            d("plaza", "*", t + time::Duration::minutes(1), 600, 0, 0),
            d("kerb", "*", t, 600, 300, 1),
            d("kerb", "car", t, 600, 300, 1),
        ])
        .unwrap();
    let r =
        get(&fx, "/api/v1/stats/occupancy?camera=cam1&zone=plaza&class=person&bucket=hour").await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.json(),
        serde_json::json!({"bucket": "hour", "occupancy": [
            {"camera_id": "cam1", "zone": "plaza", "class": "person", "bucket_start": "2026-03-01T10:00:00Z",
             "samples": 1200, "mean": 1.0, "max": 4}
        ]})
    );
    let v = get(&fx, "/api/v1/stats/occupancy?bucket=minute&since=2026-03-01T10:00:00Z&until=2026-03-01T10:01:00Z")
        .await
        .json();
    let rows = v["occupancy"].as_array().unwrap();
    let keys: Vec<(&str, &str)> =
        rows.iter().map(|r| (r["zone"].as_str().unwrap(), r["class"].as_str().unwrap())).collect();
    assert_eq!(keys, vec![("kerb", "*"), ("kerb", "car"), ("plaza", "*"), ("plaza", "person")]);
    assert_eq!(rows[1]["mean"], 0.5);
    // Default bucket hour; nothing for another camera; protected.
    let v = get(&fx, "/api/v1/stats/occupancy?camera=cam2").await.json();
    assert_eq!(v, serde_json::json!({"bucket": "hour", "occupancy": []}));
    call(&fx, "GET", "/api/v1/stats/occupancy", None)
        .await
        .error(StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn occupancy_bad_parameters_are_400() {
    let fx = fixture();
    for (q, param) in [
        ("bucket=week", "bucket"),
        ("since=yesterday", "since"),
        ("until=2026-02-30T00:00:00Z", "until"),
        ("zone=", "zone"),
        ("zone=a&zone=b", "zone"),
        ("line=gate", "line"),
        ("since=2026-02-01T00:00:00Z&until=2026-02-01T00:00:00Z", "until"),
    ] {
        let e = get(&fx, &format!("/api/v1/stats/occupancy?{q}"))
            .await
            .error(StatusCode::BAD_REQUEST, "bad_request");
        assert_eq!(e["parameter"], param, "{q}: {e}");
    }
}

#[tokio::test]
async fn events_carry_rule_zone_detail_and_track_ids() {
    let fx = fixture();
    let e = start(&fx, "cam1", "intrusion", OffsetDateTime::now_utc(), false);
    let v = get(&fx, &format!("/api/v1/events/{}", e.id)).await.json();
    assert_eq!(v["rule"], "intrusion#0");
    assert_eq!(v["zone"], "area");
    assert!(v["line"].is_null());
    assert_eq!(v["detail"], serde_json::json!({"count": 1}));
    assert_eq!(v["objects"][0]["track_id"], 4);
}

/// L6: a statistics query that would return more than STATS_MAX_ROWS rows (after summing
/// per bucket) is a 400 `too_many_results` naming the limit, read no further; the same data
/// in larger buckets is served.
#[tokio::test]
async fn stats_results_are_limited() {
    use crate::geometry::CrossDir;
    use crate::types::{CountDelta, OccupancyDelta};
    let fx = fixture();
    let t = time::macros::datetime!(2026-03-01 00:00:00 UTC);
    let n = crate::store::STATS_MAX_ROWS as i64 + 1;
    let counts: Vec<CountDelta> = (0..n)
        .map(|i| CountDelta {
            camera_id: "cam1".into(),
            line: "gate".into(),
            class: "person".into(),
            direction: CrossDir::AToB,
            at: t + time::Duration::minutes(i),
            count: 1,
            speed_kmh: None,
        })
        .collect();
    fx.state.store.add_counts(&counts).unwrap();
    let occ: Vec<OccupancyDelta> = (0..n)
        .map(|i| OccupancyDelta {
            camera_id: "cam1".into(),
            zone: "plaza".into(),
            class: "person".into(),
            bucket_start: t + time::Duration::minutes(i),
            samples: 10,
            sum: 5,
            max: 1,
        })
        .collect();
    fx.state.store.add_occupancy(&occ).unwrap();
    for path in ["counts", "occupancy"] {
        let r = get(&fx, &format!("/api/v1/stats/{path}?bucket=minute")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}");
        let v = r.json();
        assert_eq!(v["error"]["code"], "too_many_results", "{path}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().contains("10000"), "{v}");
        // Fewer buckets: served, every minute summed.
        let r = get(&fx, &format!("/api/v1/stats/{path}?bucket=day")).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        let rows = r.json()[path].as_array().unwrap().clone();
        assert_eq!(rows.len(), 7, "{path}: 10,001 minutes are 7 days");
        if path == "counts" {
            let total: i64 = rows.iter().map(|r| r["count"].as_i64().unwrap()).sum();
            assert_eq!(total, n);
        }
    }
}

/// Open data: per grid cell (cam1 and cam2 are both in C3) × hour × class, counts below
/// `open_data.min_count` withheld, no camera or line anywhere, JSON and CSV; a token of role
/// `open_data` reads it and nothing else.
#[tokio::test]
async fn open_data_aggregates_per_cell_and_withholds_small_cells() {
    use crate::geometry::CrossDir;
    use crate::types::{CountDelta, OccupancyDelta};
    let fx = fixture();
    let t = time::macros::datetime!(2026-03-01 10:05:00 UTC);
    let d = |camera: &str, class: &str, at: OffsetDateTime, count| CountDelta {
        camera_id: camera.into(),
        line: "gate".into(),
        class: class.into(),
        direction: CrossDir::AToB,
        at,
        count,
        speed_kmh: None,
    };
    let st = &fx.state.store;
    st.add_counts(&[
        d("cam1", "car", t, 7),
        d("cam2", "car", t + time::Duration::minutes(20), 5),
        d("cam1", "person", t, 3),
        d("cam1", "car", t + time::Duration::hours(1), 20),
    ])
    .unwrap();
    let occ = |camera: &str, class: &str, sum, max| OccupancyDelta {
        camera_id: camera.into(),
        zone: "yard".into(),
        class: class.into(),
        bucket_start: time::macros::datetime!(2026-03-01 10:05:00 UTC),
        samples: 10,
        sum,
        max,
    };
    st.add_occupancy(&[
        occ("cam1", "*", 120, 14),
        occ("cam1", "person", 120, 14),
        occ("cam2", "*", 20, 3),
        occ("cam2", "car", 20, 3),
    ])
    .unwrap();
    let r = get(&fx, "/api/v1/open/counts").await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    let body = String::from_utf8_lossy(&r.body).to_string();
    assert!(!body.contains("cam1") && !body.contains("cam2") && !body.contains("gate"), "{body}");
    assert_eq!(
        r.json(),
        serde_json::json!({"min_count": 10, "counts": [
            {"grid_cell": "C3", "hour": "2026-03-01T10:00:00Z", "class": "car", "count": 12, "suppressed": false},
            {"grid_cell": "C3", "hour": "2026-03-01T10:00:00Z", "class": "person", "count": null, "suppressed": true},
            {"grid_cell": "C3", "hour": "2026-03-01T11:00:00Z", "class": "car", "count": 20, "suppressed": false},
        ]})
    );
    let r = get(&fx, "/api/v1/open/counts?format=csv&until=2026-03-01T11:00:00Z").await;
    assert_eq!(r.headers[header::CONTENT_TYPE], "text/csv; charset=utf-8");
    assert_eq!(
        String::from_utf8_lossy(&r.body),
        "grid_cell,hour,class,count,suppressed\r\nC3,2026-03-01T10:00:00Z,car,12,false\r\n\
         C3,2026-03-01T10:00:00Z,person,,true\r\n"
    );
    let v = get(&fx, "/api/v1/open/occupancy").await.json();
    assert_eq!(
        v["occupancy"],
        serde_json::json!([
            {"grid_cell": "C3", "hour": "2026-03-01T10:00:00Z", "class": "car", "mean": null, "peak": null, "suppressed": true},
            {"grid_cell": "C3", "hour": "2026-03-01T10:00:00Z", "class": "person", "mean": 12.0, "peak": 14, "suppressed": false},
        ]),
        "{v}"
    );
    get(&fx, "/api/v1/open/counts?bucket=minute")
        .await
        .error(StatusCode::BAD_REQUEST, "bad_request");
    // The open-data role reads only this.
    let tok = crate::store::generate_token();
    st.create_token(
        "publisher",
        &store::hash_token(&tok),
        crate::auth::Role::OpenData,
        None,
        "test",
        |id| {
            crate::store::auth::NewAudit::new("test", None, "token_create")
                .target(format!("token:{id}"))
        },
        OffsetDateTime::now_utc(),
    )
    .unwrap();
    assert_eq!(call(&fx, "GET", "/api/v1/open/occupancy", Some(&tok)).await.status, StatusCode::OK);
    for uri in ["/api/v1/events", "/api/v1/stats/counts", "/api/v1/cameras", "/api/v1/feed"] {
        call(&fx, "GET", uri, Some(&tok)).await.error(StatusCode::FORBIDDEN, "forbidden");
    }
}
