//! Connection discipline against the real server on loopback (issue 15, H1 and Info):
//! header timeout, connection caps, body limit, response headers, stream cap.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::*;

const TOKEN: &str = "gw_conn_token";
const OTHER_TOKEN: &str = "gw_conn_other_token";

/// The real server on loopback (plain, or TLS with `tls`); `tls_tests` uses it too.
pub(super) struct Server {
    _dir: Option<tempfile::TempDir>,
    pub(super) addr: SocketAddr,
    pub(super) store: Store,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(limits: HttpLimits) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.add_token("other", &store::hash_token(OTHER_TOKEN)).unwrap();
        let state = ApiState {
            store: store.clone(),
            registry: Registry::new(),
            box_id: "box-c".into(),
            config_token_hashes: vec![store::hash_token(TOKEN)],
            started_at: OffsetDateTime::now_utc(),
            media: MediaSettings::default(),
            auth: AuthSettings::default(),
            open_data: Default::default(),
        };
        let mut srv = Server::serve(state, limits, None).await;
        srv._dir = Some(dir);
        srv
    }

    /// Serves `state` with `limits` (over TLS with `tls`) on a free loopback port.
    pub(super) async fn serve(
        state: ApiState,
        limits: HttpLimits,
        tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    ) -> Server {
        let store = state.store.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let router = router_with(state, &limits);
        let task = tokio::spawn(serve_tls(listener, router, limits, tls, async move {
            let _ = rx.await;
        }));
        Server { _dir: None, addr, store, stop: Some(tx), task }
    }

    /// Stops as `gridwatch run` does: streams and long-polls end, then the server.
    pub(super) async fn stop(mut self) {
        self.store.close_feed();
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("server stops")
            .unwrap()
            .unwrap();
    }
}

fn limits() -> HttpLimits {
    HttpLimits { header_read_timeout: Duration::from_secs(30), ..HttpLimits::default() }
}

/// A blocking client socket to `addr` from the loopback address `127.0.0.<from>` (Linux
/// routes all of 127/8 to the loopback interface: distinct client addresses on one host).
async fn connect_from(from: u8, addr: SocketAddr) -> TcpStream {
    let s = tokio::net::TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::from((Ipv4Addr::new(127, 0, 0, from), 0))).unwrap();
    let s = s.connect(addr).await.unwrap().into_std().unwrap();
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// Sends `req` and reads until the server closes or `timeout` passes; returns what came
/// back and whether the server closed the connection.
async fn exchange(mut s: TcpStream, req: Vec<u8>, timeout: Duration) -> (String, bool, TcpStream) {
    tokio::task::spawn_blocking(move || {
        s.set_read_timeout(Some(timeout)).unwrap();
        let _ = s.write_all(&req);
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        let closed = loop {
            match s.read(&mut buf) {
                Ok(0) => break true,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
                    ) =>
                {
                    break true
                }
                Err(_) => break false, // timed out, still open
            }
        };
        (String::from_utf8_lossy(&out).into_owned(), closed, s)
    })
    .await
    .unwrap()
}

/// One request on a kept-alive connection: reads the head and a `Content-Length` body.
async fn request(mut s: TcpStream, req: String) -> (String, TcpStream) {
    tokio::task::spawn_blocking(move || {
        s.write_all(req.as_bytes()).unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = s.read(&mut buf).expect("an answer");
            assert!(n > 0, "closed: {}", String::from_utf8_lossy(&out));
            out.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&out).to_string();
            if let Some(end) = text.find("\r\n\r\n") {
                let len = text[..end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap())
                    })
                    .unwrap_or(0);
                if out.len() >= end + 4 + len {
                    return (text, s);
                }
            }
        }
    })
    .await
    .unwrap()
}

fn get(path: &str, token: Option<&str>) -> String {
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}\r\n")
}

const HALF: &[u8] = b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n";

#[tokio::test]
async fn half_sent_requests_and_idle_connections_are_closed_after_the_header_timeout() {
    let timeout = Duration::from_millis(400);
    let srv = Server::start(HttpLimits { header_read_timeout: timeout, ..limits() }).await;
    // A head that never ends.
    let t0 = Instant::now();
    let s = connect_from(1, srv.addr).await;
    let (_, closed, _) = exchange(s, HALF.to_vec(), Duration::from_secs(5)).await;
    let took = t0.elapsed();
    assert!(closed, "a half-sent request head is still open after {took:?}");
    assert!(took >= timeout && took < Duration::from_secs(3), "{took:?}");
    // A connection that sends nothing at all.
    let t0 = Instant::now();
    let s = connect_from(1, srv.addr).await;
    let (_, closed, _) = exchange(s, vec![], Duration::from_secs(5)).await;
    assert!(closed && t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    // An idle keep-alive connection after a complete exchange.
    let s = connect_from(1, srv.addr).await;
    let (head, s) = request(s, get("/api/v1/health", None)).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let t0 = Instant::now();
    let (_, closed, _) = exchange(s, vec![], Duration::from_secs(5)).await;
    assert!(closed && t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    srv.stop().await;
}

#[tokio::test]
async fn connection_caps_hold_while_a_client_from_elsewhere_is_answered() {
    let srv = Server::start(HttpLimits {
        max_connections: 6,
        max_connections_per_address: 3,
        max_new_connections_per_address_per_sec: 1000.0,
        ..limits()
    })
    .await;
    let half = |s| exchange(s, HALF.to_vec(), Duration::from_millis(300));
    // One address holds its 3 connections with half-sent heads; a 4th is closed at once.
    let mut held = Vec::new();
    for _ in 0..3 {
        let (_, closed, s) = half(connect_from(1, srv.addr).await).await;
        assert!(!closed, "connection within the per-address cap was closed");
        held.push(s);
    }
    let t0 = Instant::now();
    let (out, closed, _) = half(connect_from(1, srv.addr).await).await;
    assert!(closed && out.is_empty(), "a 4th connection from one address was served: {out}");
    assert!(t0.elapsed() < Duration::from_millis(300));
    // A well-behaved client from another address is answered, and keeps its connection.
    let good = connect_from(2, srv.addr).await;
    let (head, good) = request(good, get("/api/v1/health", None)).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // Two more addresses fill the global cap (3 + 1 + 2 = 6).
    for from in [3, 4] {
        let (_, closed, s) = half(connect_from(from, srv.addr).await).await;
        assert!(!closed, "connection within the global cap was closed");
        held.push(s);
    }
    // A client from a fifth address is answered: it takes the place of the oldest
    // connection without a complete request (the first of address 1), which is closed.
    let req = b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let (out, _, _) =
        exchange(connect_from(5, srv.addr).await, req.to_vec(), Duration::from_secs(5)).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let first = held.remove(0);
    let (_, closed, _) = exchange(first, vec![], Duration::from_secs(3)).await;
    assert!(closed, "the oldest slow connection was not closed to make room");
    for s in std::mem::take(&mut held) {
        let (_, closed, s) = exchange(s, vec![], Duration::from_millis(200)).await;
        assert!(!closed, "more than one slow connection was closed");
        held.push(s);
    }
    // The well-behaved client's open connection still gets answers; it has sent a request,
    // so it is never the one closed to make room.
    let (head, _good) = request(good, get("/api/v1/health", None)).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // New clients that send requests take the places of the 4 slow connections left (and a
    // free one); with every place held by connections that have sent a request, a new
    // connection is closed.
    let mut answered = Vec::new();
    for from in [6, 7, 8, 10, 11] {
        let (head, s) =
            request(connect_from(from, srv.addr).await, get("/api/v1/health", None)).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        answered.push(s);
    }
    let (out, closed, _) = half(connect_from(9, srv.addr).await).await;
    assert!(closed && out.is_empty(), "a connection beyond the global cap was served: {out}");
    srv.stop().await;
}

#[tokio::test]
async fn request_bodies_are_limited_on_every_route_and_timed() {
    let srv = Server::start(HttpLimits {
        max_body_bytes: 1024,
        request_timeout: Duration::from_millis(500),
        ..limits()
    })
    .await;
    // A declared body over the limit is refused before it is read (the client sends only
    // the head, so the answer cannot be lost to a reset).
    for (method, path) in
        [("POST", "/api/v1/auth/login"), ("GET", "/api/v1/health"), ("POST", "/nowhere")]
    {
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: 5000\r\n\r\n"
        );
        let (out, _, _) =
            exchange(connect_from(1, srv.addr).await, req.into_bytes(), Duration::from_secs(5))
                .await;
        assert!(out.starts_with("HTTP/1.1 413"), "{method} {path}: {out}");
        assert!(out.contains(r#""code":"payload_too_large""#), "{out}");
    }
    // A chunked body (no length declared) is read up to the limit, then refused.
    let mut req =
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                    Transfer-Encoding: chunked\r\n\r\n7d0\r\n"
            .to_vec();
    req.extend_from_slice(&[b' '; 2000]);
    req.extend_from_slice(b"\r\n");
    let (out, _, _) = exchange(connect_from(1, srv.addr).await, req, Duration::from_secs(5)).await;
    assert!(out.starts_with("HTTP/1.1 413"), "chunked: {out}");
    // A request head over 64 KiB is refused (431) without being buffered further.
    let req =
        format!("GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(70_000));
    let (out, closed, _) =
        exchange(connect_from(1, srv.addr).await, req.into_bytes(), Duration::from_secs(5)).await;
    assert!(out.starts_with("HTTP/1.1 431") || (out.is_empty() && closed), "big head: {out}");
    // A body within the limit still reaches the handler (a bad login is a 401).
    let body = r#"{"username":"nobody","password":"wrong-password"}"#;
    let req = format!(
        "POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (out, _) = request(connect_from(1, srv.addr).await, req).await;
    assert!(out.starts_with("HTTP/1.1 401"), "{out}");
    // A body that never finishes arriving is a 408 after request_timeout.
    let req = "POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
               Content-Length: 100\r\n\r\n{\"username\":";
    let t0 = Instant::now();
    let (out, _, _) =
        exchange(connect_from(1, srv.addr).await, req.into(), Duration::from_secs(5)).await;
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    srv.stop().await;
}

#[tokio::test]
async fn responses_say_nosniff_and_no_store() {
    let srv = Server::start(limits()).await;
    let s = connect_from(1, srv.addr).await;
    let mut s = s;
    for (path, token, status) in [
        ("/api/v1/health", None, "200"),
        ("/api/v1/cameras", Some(TOKEN), "200"),
        ("/api/v1/events", None, "401"),
        ("/api/v1/nowhere", Some(TOKEN), "404"),
        ("/metrics", Some(TOKEN), "200"),
    ] {
        let (head, next) = request(s, get(path, token)).await;
        s = next;
        let lower = head.to_ascii_lowercase();
        assert!(head.starts_with(&format!("HTTP/1.1 {status}")), "{path}: {head}");
        assert!(lower.contains("x-content-type-options: nosniff"), "{path}: {head}");
        assert!(lower.contains("cache-control: no-store"), "{path}: {head}");
    }
    // The console keeps its own caching (revalidated) and is not sniffed either.
    let (head, _) = request(s, get("/", None)).await;
    let lower = head.to_ascii_lowercase();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(lower.contains("x-content-type-options: nosniff"), "{head}");
    assert!(lower.contains("cache-control: no-cache"), "{head}");
    srv.stop().await;
}

#[tokio::test]
async fn event_streams_and_long_polls_are_capped_per_principal() {
    let srv = Server::start(HttpLimits { max_streams_per_principal: 2, ..limits() }).await;
    let open = |token: &'static str, path: &'static str| {
        let addr = srv.addr;
        async move {
            let s = connect_from(1, addr).await;
            let (out, _, s) =
                exchange(s, get(path, Some(token)).into_bytes(), Duration::from_millis(500)).await;
            (out, s)
        }
    };
    let (a, _a) = open(TOKEN, "/api/v1/events/stream").await;
    assert!(a.starts_with("HTTP/1.1 200") && a.contains("text/event-stream"), "{a}");
    let (b, b_sock) = open(TOKEN, "/api/v1/feed?wait_secs=30").await;
    assert!(b.is_empty(), "the long-poll answered at once: {b}");
    // A third, of either kind, is refused for this principal …
    for path in ["/api/v1/events/stream", "/api/v1/feed?wait_secs=30"] {
        let (c, _) = open(TOKEN, path).await;
        assert!(c.starts_with("HTTP/1.1 429"), "{path}: {c}");
        assert!(c.contains(r#""code":"too_many_streams""#), "{c}");
        assert!(c.to_ascii_lowercase().contains("retry-after:"), "{c}");
    }
    // … not for another token.
    let (d, _d) = open(OTHER_TOKEN, "/api/v1/events/stream").await;
    assert!(d.starts_with("HTTP/1.1 200"), "{d}");
    // A stream that ends gives its place back.
    drop(b_sock);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (e, _e) = open(TOKEN, "/api/v1/events/stream").await;
        if e.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(e.starts_with("HTTP/1.1 429"), "{e}");
        assert!(Instant::now() < deadline, "the long-poll's place was not given back");
    }
    srv.stop().await;
}

#[tokio::test]
async fn new_connections_per_address_are_rate_limited() {
    let srv =
        Server::start(HttpLimits { max_new_connections_per_address_per_sec: 2.0, ..limits() })
            .await;
    let req = b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    // A burst of twice the rate is served; the next connection is closed unanswered.
    for i in 0..4 {
        let (out, _, _) =
            exchange(connect_from(1, srv.addr).await, req.to_vec(), Duration::from_secs(5)).await;
        assert!(out.starts_with("HTTP/1.1 200"), "connection {i}: {out}");
    }
    let (out, closed, _) =
        exchange(connect_from(1, srv.addr).await, req.to_vec(), Duration::from_secs(5)).await;
    assert!(closed && out.is_empty(), "a 5th connection at once was served: {out}");
    // Another address is not affected.
    let (out, _, _) =
        exchange(connect_from(2, srv.addr).await, req.to_vec(), Duration::from_secs(5)).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    srv.stop().await;
}

#[test]
fn caps_are_lowered_to_leave_the_descriptor_reserve() {
    let mut l = HttpLimits::default();
    // Plenty of descriptors: the configured caps stand.
    assert_eq!(fit_to_fds(&mut l, 1 << 20, 100, 4), None);
    assert_eq!(l, HttpLimits::default());
    // A service's 1024: 1024 - 40 open - (256 + 4 × 64) reserved - 96 (blocking) = 376
    // descriptors, 2 per connection.
    let w = fit_to_fds(&mut l, 1024, 40, 4).expect("lowered");
    assert_eq!(l.max_connections, 188);
    assert!(w.contains("api.limits.max_connections") && w.contains("1024"), "{w}");
    // The issue's 512 with 8 cameras: nothing left; the API still takes a few connections.
    let mut l = HttpLimits::default();
    fit_to_fds(&mut l, 512, 40, 8).expect("lowered");
    assert_eq!((l.max_connections, l.max_connections_per_address), (4, 4));
}
