//! A real webhook receiver for the uplink tests: an axum server on a loopback port that
//! verifies every delivery with the project's verifier (`gridwatch::uplink::signing`) and
//! records what it gets. Its behaviour can be switched at run time: accept, refuse
//! connections (listener closed), answer a status (503 + Retry-After …), answer slowly.
#![allow(dead_code)]

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use gridwatch::clock::Clock;
use gridwatch::uplink::signing;
use time::OffsetDateTime;

#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    Accept,
    /// Nothing listens on the port: connection refused.
    Refuse,
    /// Answer this status, with `Retry-After: <secs>` if given.
    Status(u16, Option<u64>),
    /// Sleep this long (real time), then accept.
    Slow(Duration),
}

/// One request that passed signature verification.
#[derive(Debug, Clone)]
pub struct Got {
    pub id: String,
    pub seq: i64,
    pub camera: String,
    pub change: String,
    pub body: String,
    pub headers: Vec<(String, String)>,
    /// Receiver clock (the test's clock) when it arrived.
    pub at: OffsetDateTime,
    /// The status it was answered with.
    pub status: u16,
}

#[derive(Default)]
struct Log {
    got: Vec<Got>,
    bad_signature: u32,
}

struct Shared {
    secret: String,
    clock: Arc<dyn Clock>,
    mode: Mutex<Mode>,
    /// Changes of these kinds are answered 400.
    reject_kinds: Mutex<HashSet<String>>,
    log: Mutex<Log>,
}

pub struct Receiver {
    pub port: u16,
    shared: Arc<Shared>,
    rt: tokio::runtime::Runtime,
    server: Mutex<Option<(tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>)>>,
}

fn header(h: &HeaderMap, name: &str) -> String {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
}

async fn hook(State(sh): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let now = sh.clock.now();
    let (id, ts, sig) = (
        header(&headers, "webhook-id"),
        header(&headers, "webhook-timestamp"),
        header(&headers, "webhook-signature"),
    );
    if signing::verify(
        &sh.secret,
        &id,
        &ts,
        &sig,
        &body,
        now.unix_timestamp(),
        signing::DEFAULT_TOLERANCE_SECS,
    )
    .is_err()
    {
        sh.log.lock().unwrap().bad_signature += 1;
        return (StatusCode::UNAUTHORIZED, "bad signature").into_response();
    }
    let v: serde_json::Value = serde_json::from_slice(&body).expect("envelope is JSON");
    assert_eq!(v["id"].as_str(), Some(id.as_str()), "webhook-id is the envelope id");
    let mode = sh.mode.lock().unwrap().clone();
    let kind = v["kind"].as_str().unwrap_or("").to_string();
    let (status, retry_after) = match mode {
        Mode::Accept | Mode::Refuse if sh.reject_kinds.lock().unwrap().contains(&kind) => {
            (400, None)
        }
        Mode::Accept | Mode::Refuse => (204, None),
        Mode::Status(s, ra) => (s, ra),
        Mode::Slow(d) => {
            tokio::time::sleep(d).await;
            (200, None)
        }
    };
    let got = Got {
        id,
        seq: v["seq"].as_i64().unwrap(),
        camera: v["camera_id"].as_str().unwrap().to_string(),
        change: v["change"].as_str().unwrap().to_string(),
        body: String::from_utf8_lossy(&body).into_owned(),
        headers: ["webhook-id", "webhook-timestamp", "webhook-signature", "content-type"]
            .iter()
            .map(|n| (n.to_string(), header(&headers, n)))
            .collect(),
        at: now,
        status,
    };
    sh.log.lock().unwrap().got.push(got);
    let mut resp = StatusCode::from_u16(status).unwrap().into_response();
    if let Some(ra) = retry_after {
        resp.headers_mut().insert("retry-after", ra.to_string().parse().unwrap());
    }
    resp
}

impl Receiver {
    /// Starts accepting on a free loopback port; signatures are checked against `clock`.
    pub fn start(secret: &str, clock: Arc<dyn Clock>) -> Receiver {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            secret: secret.to_string(),
            clock,
            mode: Mutex::new(Mode::Accept),
            reject_kinds: Mutex::new(HashSet::new()),
            log: Mutex::new(Log::default()),
        });
        let r = Receiver { port, shared, rt, server: Mutex::new(None) };
        r.listen();
        r
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    fn listen(&self) {
        let mut server = self.server.lock().unwrap();
        if server.is_some() {
            return;
        }
        let listener = self.rt.block_on(async {
            for _ in 0..50 {
                if let Ok(l) = tokio::net::TcpListener::bind(("127.0.0.1", self.port)).await {
                    return l;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("cannot listen on 127.0.0.1:{} again", self.port)
        });
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(hook))
            .with_state(self.shared.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = self.rt.spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        *server = Some((tx, task));
    }

    fn close(&self) {
        if let Some((tx, task)) = self.server.lock().unwrap().take() {
            let _ = tx.send(());
            let _ = self
                .rt
                .block_on(async { tokio::time::timeout(Duration::from_secs(10), task).await });
        }
    }

    pub fn set_mode(&self, m: Mode) {
        if m == Mode::Refuse {
            self.close();
        } else {
            self.listen();
        }
        *self.shared.mode.lock().unwrap() = m;
    }

    pub fn reject_kind(&self, kind: &str) {
        self.shared.reject_kinds.lock().unwrap().insert(kind.to_string());
    }

    /// Every verified request, in arrival order.
    pub fn log(&self) -> Vec<Got> {
        self.shared.log.lock().unwrap().got.clone()
    }

    /// Verified requests answered 2xx (what the receiver accepted), in arrival order.
    pub fn accepted(&self) -> Vec<Got> {
        self.log().into_iter().filter(|g| (200..300).contains(&g.status)).collect()
    }

    pub fn bad_signatures(&self) -> u32 {
        self.shared.log.lock().unwrap().bad_signature
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.close();
    }
}

/// A store in a temp dir whose uplink context names `box_id` and `cameras` (grid cell D7).
pub fn uplink_store(
    box_id: &str,
    cameras: &[&str],
) -> (tempfile::TempDir, gridwatch::store::Store) {
    use gridwatch::store::outbox::{CameraMeta, UplinkContext};
    let dir = tempfile::tempdir().unwrap();
    let s = gridwatch::store::Store::open(dir.path()).unwrap();
    let cameras = cameras
        .iter()
        .map(|c| {
            (
                c.to_string(),
                CameraMeta {
                    grid_cell: Some("D7".into()),
                    lat: Some(31.2),
                    lon: Some(121.4),
                    records: false,
                },
            )
        })
        .collect();
    s.set_uplink_context(UplinkContext {
        box_id: box_id.into(),
        public_url: "http://127.0.0.1:8080".into(),
        cameras,
    });
    (dir, s)
}
