//! HTTPS served by gridwatch itself (issue 15 item 4, docs/security.md "TLS"), against the
//! real server on loopback with a real self-signed certificate: a pinned client gets
//! answers, an unpinned one and a plaintext one do not, a stalled handshake is closed, the
//! certificate survives a restart, the connection caps hold, login sets `Secure`, and the
//! redirect listener answers 308.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use super::*;
use crate::auth::Role;
use crate::config::{ApiTlsConfig, TlsMode};

const PASSWORD: &str = "correct horse battery";

use super::conn_tests::Server;

/// The API over TLS with the self-signed certificate of `data_dir` (made when absent).
async fn start(data_dir: &Path, limits: HttpLimits) -> Server {
    let sans = vec!["box-t".to_string(), "localhost".into(), "127.0.0.1".into()];
    let (id, _) = crate::tls::ensure_self_signed(data_dir, &sans).unwrap();
    let store = Store::open(&data_dir.join("db")).unwrap();
    let state = ApiState {
        store,
        registry: Registry::new(),
        box_id: "box-t".into(),
        config_token_hashes: vec![],
        started_at: OffsetDateTime::now_utc(),
        media: MediaSettings::default(),
        auth: AuthSettings::default(),
        open_data: Default::default(),
    };
    Server::serve(state, limits, Some(id.server_config().unwrap())).await
}

/// The https URL of `path` on `srv`.
fn url(srv: &Server, path: &str) -> String {
    format!("https://127.0.0.1:{}{path}", srv.addr.port())
}

/// A client that trusts only the self-signed certificate of `data_dir` (pinning it).
fn pinned_client(data_dir: &Path) -> reqwest::Client {
    let (cert, _) = crate::tls::self_signed_paths(data_dir);
    let pem = std::fs::read(cert).unwrap();
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .tls_info(true)
        .https_only(true)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// The SHA-256 fingerprint of the certificate the server presented.
fn served_fingerprint(r: &reqwest::Response) -> String {
    let info = r.extensions().get::<reqwest::tls::TlsInfo>().expect("TLS info");
    crate::tls::fingerprint_sha256(info.peer_certificate().expect("a certificate"))
}

fn limits(header_read_secs: f64) -> HttpLimits {
    HttpLimits {
        header_read_timeout: Duration::from_secs_f64(header_read_secs),
        ..HttpLimits::default()
    }
}

/// Waits (blocking, in a test's own thread) until the peer closes; how long it took, or
/// `None` after `limit`. Whatever the server sent is returned too.
fn until_closed(mut s: TcpStream, limit: Duration) -> (Option<Duration>, Vec<u8>) {
    let t0 = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while t0.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) => return (Some(t0.elapsed()), got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (Some(t0.elapsed()), got),
        }
    }
    (None, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_the_pinned_certificate_and_keeps_it_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path(), limits(5.0)).await;
    let client = pinned_client(dir.path());
    let r = client.get(url(&srv, "/api/v1/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
    let first = served_fingerprint(&r);
    let printed = crate::tls::self_signed_fingerprint(dir.path()).unwrap().unwrap();
    assert_eq!(first, printed, "the fingerprint `gridwatch check` prints is the one served");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["box_id"], "box-t");
    // A client that does not trust this certificate is refused by its own verification.
    let stranger = reqwest::Client::builder()
        .use_rustls_tls()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let e = stranger.get(url(&srv, "/api/v1/health")).send().await.unwrap_err();
    assert!(e.is_connect(), "{e:?}");
    srv.stop().await;

    // Restart: the same certificate, so pinned clients keep working.
    let srv = start(dir.path(), limits(5.0)).await;
    let r = pinned_client(dir.path()).get(url(&srv, "/api/v1/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(served_fingerprint(&r), first, "same certificate after a restart");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_and_stalled_handshakes_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path(), limits(1.0)).await;
    let addr = srv.addr;
    let (plain, silent, partial) = tokio::task::spawn_blocking(move || {
        // Plain HTTP to the TLS port: no HTTP answer, the connection is closed.
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let plain = until_closed(s, Duration::from_secs(5));
        // TCP opened, nothing sent: closed after the handshake timeout (1 s).
        let silent = until_closed(TcpStream::connect(addr).unwrap(), Duration::from_secs(5));
        // Half a ClientHello (a record header promising 512 bytes, then nothing).
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).unwrap();
        let partial = until_closed(s, Duration::from_secs(5));
        (plain, silent, partial)
    })
    .await
    .unwrap();
    let (took, got) = plain;
    assert!(took.is_some_and(|t| t < Duration::from_secs(2)), "plaintext closed at once: {took:?}");
    assert!(!got.starts_with(b"HTTP/"), "no HTTP answer in plaintext: {got:?}");
    for (what, (took, _)) in [("silent", silent), ("partial hello", partial)] {
        let t = took.unwrap_or_else(|| panic!("{what}: a stalled handshake must be closed"));
        assert!(
            t >= Duration::from_millis(800) && t < Duration::from_millis(3000),
            "{what}: closed after {t:?}, want about the 1 s timeout"
        );
    }
    // The server still answers.
    let r = pinned_client(dir.path()).get(url(&srv, "/api/v1/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_connections_count_against_the_caps() {
    let dir = tempfile::tempdir().unwrap();
    let l = HttpLimits { max_connections_per_address: 2, ..limits(30.0) };
    let srv = start(dir.path(), l).await;
    let client = pinned_client(dir.path());
    let addr = srv.addr;
    // Two connections that never finish their handshake fill this address's places.
    let held: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(addr).unwrap()).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fresh = || {
        reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(
                reqwest::Certificate::from_pem(
                    &std::fs::read(crate::tls::self_signed_paths(dir.path()).0).unwrap(),
                )
                .unwrap(),
            )
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap()
    };
    let e = fresh().get(url(&srv, "/api/v1/health")).send().await;
    assert!(e.is_err(), "a third connection from the address is closed: {e:?}");
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = client.get(url(&srv, "/api/v1/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_over_tls_sets_a_secure_cookie() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path(), limits(5.0)).await;
    let hash = crate::auth::hash_password(PASSWORD).unwrap();
    let a = crate::store::auth::NewAudit::new("test", None, "user_create").target("user:alice");
    srv.store
        .create_user("alice", &hash, Role::Operator, None, &a, OffsetDateTime::now_utc())
        .unwrap();
    let r = pinned_client(dir.path())
        .post(url(&srv, "/api/v1/auth/login"))
        .json(&serde_json::json!({"username": "alice", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let set = r.headers().get("set-cookie").unwrap().to_str().unwrap().to_string();
    let attrs: Vec<String> =
        set.split(';').skip(1).map(|a| a.trim().to_ascii_lowercase()).collect();
    assert!(attrs.iter().any(|a| a == "secure"), "`Secure` over TLS (cookie_secure auto): {set}");
    assert!(attrs.iter().any(|a| a == "httponly"), "{set}");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redirect_listener_answers_308_to_https() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve_with(
        listener,
        redirect_router(8443, "127.0.0.1".into()),
        HttpLimits::default(),
        async move {
            let _ = rx.await;
        },
    ));
    let ask = move |req: &'static [u8]| {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(req).unwrap();
        let (_, got) = until_closed(s, Duration::from_secs(3));
        String::from_utf8_lossy(&got).to_string()
    };
    let (named, bare, post) = tokio::task::spawn_blocking(move || {
        (
            ask(b"GET /api/v1/events?limit=5 HTTP/1.1\r\nHost: box.example:8080\r\nConnection: close\r\n\r\n"),
            ask(b"GET /ui/ HTTP/1.0\r\n\r\n"),
            ask(b"POST /api/v1/auth/login HTTP/1.1\r\nHost: [::1]:80\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"),
        )
    })
    .await
    .unwrap();
    let location = |resp: &str| {
        assert!(resp.starts_with("HTTP/1.1 308") || resp.starts_with("HTTP/1.0 308"), "{resp}");
        resp.lines()
            .find_map(|l| l.strip_prefix("location: ").or_else(|| l.strip_prefix("Location: ")))
            .unwrap_or_else(|| panic!("no Location: {resp}"))
            .to_string()
    };
    assert_eq!(location(&named), "https://box.example:8443/api/v1/events?limit=5");
    assert_eq!(location(&bare), "https://127.0.0.1:8443/ui/");
    assert_eq!(location(&post), "https://[::1]:8443/api/v1/auth/login");
    let _ = tx.send(());
    task.await.unwrap().unwrap();
}

#[test]
fn files_mode_names_the_field_of_a_mismatched_or_broken_file() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let sans = vec!["localhost".to_string()];
    crate::tls::ensure_self_signed(a.path(), &sans).unwrap();
    crate::tls::ensure_self_signed(b.path(), &sans).unwrap();
    let (cert_a, key_a) = crate::tls::self_signed_paths(a.path());
    let (_, key_b) = crate::tls::self_signed_paths(b.path());
    let files = |cert: &Path, key: &Path| ApiTlsConfig {
        mode: TlsMode::Files,
        cert_path: Some(cert.to_path_buf()),
        key_path: Some(key.to_path_buf()),
        ..ApiTlsConfig::default()
    };
    files(&cert_a, &key_a).check_files().unwrap();
    let e = files(&cert_a, &key_b).check_files().unwrap_err();
    assert!(e.starts_with("field `api.tls.key_path`") && e.contains("does not belong"), "{e}");
    let e = files(&key_a, &key_a).check_files().unwrap_err();
    assert!(e.starts_with("field `api.tls.cert_path`"), "{e}");
    let e = files(&a.path().join("none.pem"), &key_a).check_files().unwrap_err();
    assert!(e.starts_with("field `api.tls.cert_path`") && e.contains("cannot read"), "{e}");

    // Through the config loader: relative paths resolve against the config's directory,
    // and the mismatch stops the load.
    std::fs::copy(&cert_a, a.path().join("cert.pem")).unwrap();
    std::fs::copy(&key_b, a.path().join("key.pem")).unwrap();
    let text = format!(
        "box_id = \"t\"\ndata_dir = \"{}\"\nmodels = {{}}\n[api.tls]\nmode = \"files\"\ncert_path = \"cert.pem\"\nkey_path = \"key.pem\"\n",
        a.path().join("data").display()
    );
    let e = crate::config::Config::parse(&text, a.path()).unwrap_err();
    assert!(e.contains("field `api.tls.key_path`") && e.contains("does not belong"), "{e}");
    std::fs::copy(&key_a, a.path().join("key.pem")).unwrap();
    let c = crate::config::Config::parse(&text, a.path()).unwrap();
    assert_eq!(c.api.tls.cert_path.as_deref(), Some(a.path().join("cert.pem").as_path()));
}
