//! H2 and M2 of issue 15 against the real HTTP server on loopback, with a real SQLite
//! store: a burst of parallel password guesses is checked at most `max_failed_logins`
//! times, the right password then fails from that address until the lock ends, memory
//! stays flat (argon2id costs 19 MiB a check), and the lock does not reach the same
//! account from another address.
//!
//! One test in its own binary (process): it measures the process's RSS, which other tests
//! running beside it would disturb.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use gridwatch::api::{router, serve_with, ApiState, AuthSettings, HttpLimits};
use gridwatch::auth::{hash_password, Role};
use gridwatch::clock::SimClock;
use gridwatch::store::auth::{AuditQuery, NewAudit};
use gridwatch::store::Store;
use time::OffsetDateTime;

const PASSWORD: &str = "correct horse battery";
const GUESSES: usize = 200;
const MIB: u64 = 1 << 20;

/// A field of /proc/self/status in bytes (`VmRSS`, `VmHWM`).
fn status_bytes(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = s.lines().find(|l| l.starts_with(field)).expect("field in /proc/self/status");
    let kib: u64 = line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("kB");
    kib * 1024
}

/// Resets the peak RSS (`VmHWM`) to the current RSS; false where the kernel cannot.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn client(from: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(from.parse::<IpAddr>().unwrap())
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

async fn login(http: &reqwest::Client, base: &str, user: &str, pw: &str) -> (u16, String) {
    match http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&serde_json::json!({"username": user, "password": pw}))
        .send()
        .await
    {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.text().await.unwrap_or_default())
        }
        // A connection the server refused (a connection cap): not checked either.
        Err(e) => (0, e.to_string()),
    }
}

#[test]
fn parallel_guesses_are_checked_at_most_the_limit_and_memory_stays_flat() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let now =
        OffsetDateTime::from_unix_timestamp(OffsetDateTime::now_utc().unix_timestamp()).unwrap();
    let clock = Arc::new(SimClock::new(now));
    let hash = hash_password(PASSWORD).unwrap();
    let audit = NewAudit::new("test", None, "user_create").target("user:admin");
    store.create_user("admin", &hash, Role::Admin, None, &audit, now).unwrap();
    let auth = AuthSettings { clock: clock.clone(), ..Default::default() };
    let limit = auth.config.max_failed_logins as usize;
    let lockout = time::Duration::seconds(auth.config.lockout_secs as i64);
    let state = ApiState {
        store: store.clone(),
        registry: gridwatch::health::Registry::new(),
        box_id: "lockout".into(),
        config_token_hashes: Vec::new(),
        started_at: now,
        media: Default::default(),
        auth,
        open_data: Default::default(),
    };
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let base = format!("http://{addr}");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    // The connection layer's per-address caps and rate (docs/security.md "Connection
    // limits") would turn most of one address's 200 simultaneous connections away before
    // they reach the login: opened wide here, every guess reaches the lockout under test.
    let limits = HttpLimits {
        max_connections: 1024,
        max_connections_per_address: 1024,
        max_new_connections_per_address_per_sec: 100_000.0,
        ..HttpLimits::default()
    };
    let server = rt.spawn(serve_with(listener, router(state), limits, async move {
        let _ = stop_rx.await;
    }));

    // Loopback is all of 127/8: three client addresses.
    let (a, b, warm) = (client("127.0.0.1"), client("127.0.0.2"), client("127.0.0.3"));
    // Warm up (threads, buffers, the unknown-user hash), then the idle RSS.
    rt.block_on(async {
        assert_eq!(login(&warm, &base, "admin", PASSWORD).await.0, 200);
        assert_eq!(login(&warm, &base, "someone", "not a password").await.0, 401);
    });
    let idle = status_bytes("VmRSS:");
    let hwm_reset = reset_peak_rss();

    // The burst, with the RSS sampled while it runs.
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(idle));
    let sampler = {
        let (done, peak) = (done.clone(), peak.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(status_bytes("VmRSS:"), Ordering::Relaxed);
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        })
    };
    let statuses: Vec<(u16, String)> = rt.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..GUESSES {
            let (a, base) = (a.clone(), base.clone());
            tasks.push(tokio::spawn(async move {
                login(&a, &base, "admin", &format!("guess number {i:04}")).await
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let mut peak = peak.load(Ordering::Relaxed);
    if hwm_reset {
        peak = peak.max(status_bytes("VmHWM:"));
    }
    let after = status_bytes("VmRSS:");

    let count = |s: u16| statuses.iter().filter(|(st, _)| *st == s).count();
    let (wrong, refused, busy, unconnected) = (count(401), count(429), count(503), count(0));
    // Every checked guess is in the audit log (`login_failed`); the last of them answers
    // 429 (it locked), the others 401.
    let failed = store
        .audit_page(&AuditQuery {
            action: Some("login_failed".into()),
            limit: 1000,
            ..Default::default()
        })
        .unwrap()
        .entries;
    let checked = failed.len() - 1; // the warm-up's unknown user
    eprintln!(
        "{GUESSES} parallel guesses: {checked} checked ({wrong} answered 401), {refused} \
         answered 429, {busy} busy (503), {unconnected} not connected; RSS idle {} MiB, peak \
         {} MiB, after {} MiB",
        idle / MIB,
        peak / MIB,
        after / MIB
    );
    let odd: Vec<_> = statuses.iter().filter(|(s, _)| ![0, 401, 429, 503].contains(s)).collect();
    assert!(odd.is_empty(), "a guess got in or failed otherwise: {odd:?}");
    assert!(checked <= limit, "{checked} guesses were checked; the limit is {limit}");
    assert!(wrong <= checked && checked >= 1, "{wrong} answered 401, {checked} checked");
    assert!(
        peak.saturating_sub(idle) <= 100 * MIB,
        "RSS grew {} MiB during the burst (idle {} MiB)",
        peak.saturating_sub(idle) / MIB,
        idle / MIB
    );
    assert!(after.saturating_sub(idle) <= 100 * MIB, "RSS after the burst: {} MiB", after / MIB);

    rt.block_on(async {
        // Every attempt allowed was a wrong guess: from this address the right password
        // fails until the lock ends …
        let (st, body) = login(&a, &base, "admin", PASSWORD).await;
        assert_eq!(st, 429, "{body}");
        // … but the lock is for this address only: a stranger cannot lock `admin` out.
        let (st, body) = login(&b, &base, "admin", PASSWORD).await;
        assert_eq!(st, 200, "from another address: {body}");
        clock.advance(lockout + time::Duration::seconds(1));
        let (st, body) = login(&a, &base, "admin", PASSWORD).await;
        assert_eq!(st, 200, "after the lock: {body}");
    });

    // A spread attack: 200 names from 200 addresses at once (nothing locks). The password
    // work runs a few at a time and refuses past its queue: memory stays flat again.
    let idle = status_bytes("VmRSS:");
    let hwm_reset = reset_peak_rss();
    let statuses: Vec<u16> = rt.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..GUESSES {
            let (http, base) =
                (client(&format!("127.0.{}.{}", 1 + i / 250, 1 + i % 250)), base.clone());
            tasks.push(tokio::spawn(async move {
                login(&http, &base, &format!("user{i:04}"), "a guessed password").await.0
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    let peak = if hwm_reset { status_bytes("VmHWM:") } else { status_bytes("VmRSS:") };
    let count = |s: u16| statuses.iter().filter(|st| **st == s).count();
    eprintln!(
        "{GUESSES} names from {GUESSES} addresses: {} checked (401), {} busy (503), {} not \
         connected; RSS idle {} MiB, peak {} MiB",
        count(401),
        count(503),
        count(0),
        idle / MIB,
        peak / MIB
    );
    assert_eq!(count(401) + count(503) + count(0), GUESSES, "{statuses:?}");
    assert!(
        peak.saturating_sub(idle) <= 100 * MIB,
        "RSS grew {} MiB during the spread attack",
        peak.saturating_sub(idle) / MIB
    );

    stop_tx.send(()).unwrap();
    rt.block_on(async {
        tokio::time::timeout(std::time::Duration::from_secs(10), server)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    });
}
