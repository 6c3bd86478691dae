//! Connection discipline of the HTTP server (docs/security.md "Connection limits").
//!
//! What one network client may cost the box, so that no client can cost footage:
//! - connections: at most `max_connections` open, at most `max_connections_per_address` from
//!   one address; a connection beyond either is closed as soon as it is accepted;
//! - time: a request head must arrive within `header_read_timeout` of the connection opening
//!   or of the previous response (hyper's timer, so this is also the idle keep-alive
//!   timeout); a client that stops reading a response is dropped after `send_timeout`;
//!   non-streaming requests (body included) are answered within `request_timeout`;
//! - bytes: a request body over `max_body_bytes` is a 413 on every route;
//! - streams: at most `max_streams_per_principal` event streams and feed long-polls per
//!   user or token (429 beyond);
//! - descriptors: `raise_fd_limit` lifts RLIMIT_NOFILE to its hard limit, and `fit_to_fds`
//!   lowers the connection caps so that a reserve for cameras, recorder and store remains.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tower_service::Service;

use super::{ApiError, ErrorKind, Principal};
use crate::config::ApiLimitsConfig;

/// `[api.limits]` as the server uses them.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpLimits {
    pub header_read_timeout: Duration,
    pub request_timeout: Duration,
    pub send_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_address: usize,
    pub max_new_connections_per_address_per_sec: f64,
    pub max_body_bytes: usize,
    pub max_streams_per_principal: usize,
}

impl HttpLimits {
    pub fn from_config(c: &ApiLimitsConfig) -> HttpLimits {
        HttpLimits {
            header_read_timeout: Duration::from_secs_f64(c.header_read_timeout_secs),
            request_timeout: Duration::from_secs_f64(c.request_timeout_secs),
            send_timeout: Duration::from_secs_f64(c.send_timeout_secs),
            max_connections: c.max_connections,
            max_connections_per_address: c.max_connections_per_address,
            max_new_connections_per_address_per_sec: c.max_new_connections_per_address_per_sec,
            max_body_bytes: c.max_body_bytes,
            max_streams_per_principal: c.max_streams_per_principal,
        }
    }
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits::from_config(&ApiLimitsConfig::default())
    }
}

// ---------------------------------------------------------------------------------------
// File descriptors

/// Descriptors kept for everything but the API: the store (database, WAL, shared memory,
/// the writer's and the pooled readers' files), snapshots, the uplink's sockets, loaded
/// libraries and the runtimes' own descriptors.
pub const FD_RESERVE_BASE: u64 = 256;
/// Descriptors kept per camera: its RTSP/file source, GStreamer's pipes and event fds,
/// the recorder's open segment and the next one, clip and export work.
pub const FD_RESERVE_PER_CAMERA: u64 = 64;
/// Descriptors one API connection may hold: its socket and one open media file.
pub const FDS_PER_CONNECTION: u64 = 2;
/// Blocking threads of the API runtime (`app::run`), each of which may open a transient
/// SQLite read connection (database, WAL, shared memory: 3 descriptors).
pub const API_BLOCKING_THREADS: usize = 32;
const FDS_PER_BLOCKING_THREAD: u64 = 3;
/// Largest request head (431 beyond; hyper's buffers per connection are bounded near it):
/// bounds what the slow clients let in may hold in memory.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// The connection cap is never lowered below this (the API degrades, it does not vanish).
const MIN_CONNECTIONS: usize = 4;

/// Raises the soft RLIMIT_NOFILE to the hard limit; returns the soft limit now in force.
#[allow(clippy::unnecessary_cast)] // rlim_t is not u64 everywhere
pub fn raise_fd_limit() -> std::io::Result<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return Ok(raised.rlim_cur as u64);
        }
        tracing::warn!(
            "cannot raise the open-file limit from {} to {}: {}",
            lim.rlim_cur,
            lim.rlim_max,
            std::io::Error::last_os_error()
        );
    }
    Ok(lim.rlim_cur as u64)
}

/// Descriptors this process has open now (0 where /proc is missing).
pub fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count() as u64).unwrap_or(0)
}

/// Lowers the connection caps so that, with every connection at its worst
/// ([`FDS_PER_CONNECTION`]) and every API blocking thread holding a read connection, the
/// reserve for `cameras` cameras still remains under `fd_limit`. Returns a warning when
/// the configured caps were lowered.
pub fn fit_to_fds(
    limits: &mut HttpLimits,
    fd_limit: u64,
    open_now: u64,
    cameras: usize,
) -> Option<String> {
    let reserve = FD_RESERVE_BASE + FD_RESERVE_PER_CAMERA * cameras as u64;
    let blocking = FDS_PER_BLOCKING_THREAD * API_BLOCKING_THREADS as u64;
    let budget = fd_limit.saturating_sub(open_now + reserve + blocking);
    let fit = ((budget / FDS_PER_CONNECTION) as usize).max(MIN_CONNECTIONS);
    if fit >= limits.max_connections {
        return None;
    }
    let configured = limits.max_connections;
    limits.max_connections = fit;
    limits.max_connections_per_address = limits.max_connections_per_address.min(fit);
    Some(format!(
        "field `api.limits.max_connections`: lowered from {configured} to {fit}: the open-file \
         limit is {fd_limit}, {open_now} are open, and {reserve} are reserved for {cameras} \
         camera(s), the recorder and the store (raise LimitNOFILE / `ulimit -n` to serve more)"
    ))
}

// ---------------------------------------------------------------------------------------
// Serving

/// Serves `router` on `listener` under `limits` until `shutdown` completes, then lets
/// in-flight requests finish (at most `request_timeout`). Handlers see the client's
/// address as `ConnectInfo<SocketAddr>`.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_tls(listener, router, limits, None, shutdown).await
}

/// [`serve_with`], over TLS when `tls` is given (docs/security.md "TLS"). Every limit of
/// plain HTTP applies: a connection takes its place in the caps when it is accepted, before
/// its handshake; the handshake must complete within `header_read_timeout` (a client that
/// opens TCP and never finishes it is closed like one that never sends a request head, and
/// may be evicted for a new client like it), and then the request head within
/// `header_read_timeout` again. Requests over TLS carry [`TlsConn`] in their extensions.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: HttpLimits,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(
            %addr,
            tls = tls.is_some(),
            max_connections = limits.max_connections,
            per_address = limits.max_connections_per_address,
            "API listening"
        );
    }
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let table = ConnTable::new(
        limits.max_connections,
        limits.max_connections_per_address,
        limits.max_new_connections_per_address_per_sec,
    );
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(MAX_HEAD_BYTES)
        .max_buf_size(MAX_HEAD_BYTES + 16 * 1024);
    let (closing_tx, closing_rx) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    const LOG_EVERY: Duration = Duration::from_secs(10);
    let (mut logged_at, mut logged_pressure) = (None::<tokio::time::Instant>, 0u64);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors, or a connection reset before accept: back off a
                    // little instead of spinning.
                    tracing::warn!(error = %e, "API: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let slot = table.acquire(peer.ip());
        let pressure =
            table.refused.load(Ordering::Relaxed) + table.evicted.load(Ordering::Relaxed);
        if pressure > logged_pressure && logged_at.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
            logged_at = Some(tokio::time::Instant::now());
            logged_pressure = pressure;
            tracing::warn!(
                peer = %peer.ip(),
                refused = table.refused.load(Ordering::Relaxed),
                slow_closed = table.evicted.load(Ordering::Relaxed),
                "API: connection limit reached (totals since start)"
            );
        }
        let Some(slot) = slot else {
            drop(stream);
            continue;
        };
        if acceptor.is_none() && head_waiting(&stream) {
            // Its whole request head is already here: not a slow client.
            slot.ctl.served.store(true, Ordering::Release);
        }
        let _ = stream.set_nodelay(true);
        let stall = Arc::new(AtomicU64::new(0));
        let tracked = Tracked { inner: stream, stall: stall.clone() };
        let ctl = slot.ctl.clone();
        let mut svc = WithPeer { router: router.clone(), peer, ctl: ctl.clone(), tls: false };
        let mut closing = closing_rx.clone();
        let http = http.clone();
        let send_timeout = limits.send_timeout;
        let handshake_timeout = limits.header_read_timeout;
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let Some(acceptor) = acceptor else {
                let conn = http.serve_connection(TokioIo::new(tracked), svc);
                return drive(conn, &ctl, &stall, send_timeout, closing, peer).await;
            };
            let handshake = tokio::time::timeout(handshake_timeout, acceptor.accept(tracked));
            let tls = tokio::select! {
                r = handshake => match r {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "API: TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "API: TLS handshake not finished in time; closing");
                        return;
                    }
                },
                _ = ctl.evict.notified() => {
                    tracing::debug!(%peer, "API: slow TLS handshake closed to make room");
                    return;
                }
                _ = closing.changed() => return,
            };
            svc.tls = true;
            let conn = http.serve_connection(TokioIo::new(tls), svc);
            drive(conn, &ctl, &stall, send_timeout, closing, peer).await
        });
    }
    drop(listener);
    let _ = closing_tx.send(true);
    let deadline = tokio::time::Instant::now() + limits.request_timeout;
    while table.open() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if table.open() > 0 {
        tracing::warn!(open = table.open(), "API: closing connections still open at shutdown");
    }
    Ok(())
}

/// Runs one connection until it ends, is evicted, stops reading for `send_timeout`, or
/// (after `closing`) finishes its request in flight.
async fn drive<I>(
    conn: hyper::server::conn::http1::Connection<I, WithPeer>,
    ctl: &ConnCtl,
    stall: &AtomicU64,
    send_timeout: Duration,
    mut closing: tokio::sync::watch::Receiver<bool>,
    peer: SocketAddr,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let mut conn = std::pin::pin!(conn);
    let mut stalled = std::pin::pin!(write_stalled(stall, send_timeout));
    let mut graceful = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "API connection ended");
                }
                return;
            }
            _ = ctl.evict.notified() => {
                tracing::debug!(%peer, "API: slow client closed to make room");
                return;
            }
            _ = &mut stalled => {
                tracing::debug!(%peer, "API: client stopped reading; closing");
                return;
            }
            r = closing.changed(), if !graceful => {
                graceful = true;
                if r.is_ok() {
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// In a request's extensions when it came over a TLS connection that this server
/// terminated (the session cookie's `Secure` flag, `auth.cookie_secure = "auto"`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct TlsConn;

/// The plain-HTTP listener of `api.tls.redirect_http_listen`: every request gets a 308 to
/// the same path and query over `https`, at the host the client asked for (its `Host`
/// header, else `fallback_host`) and `https_port`. Served with [`serve_with`], so its
/// connections are limited like the API's.
pub fn redirect_router(https_port: u16, fallback_host: String) -> Router {
    Router::new().fallback(move |req: Request| {
        let loc = redirect_location(&req, https_port, &fallback_host);
        async move {
            let mut resp = match HeaderValue::from_str(&loc) {
                Ok(v) => (axum::http::StatusCode::PERMANENT_REDIRECT, [(header::LOCATION, v)])
                    .into_response(),
                Err(_) => axum::http::StatusCode::BAD_REQUEST.into_response(),
            };
            let h = resp.headers_mut();
            h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp
        }
    })
}

fn redirect_location(req: &Request, https_port: u16, fallback_host: &str) -> String {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .and_then(|h| h.parse::<axum::http::uri::Authority>().ok())
        .map(|a| a.host().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| fallback_host.to_string());
    let port = if https_port == 443 { String::new() } else { format!(":{https_port}") };
    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
    format!("https://{host}{port}{pq}")
}

/// The router with the client's address in each request's extensions (as
/// `into_make_service_with_connect_info` does).
#[derive(Clone)]
struct WithPeer {
    router: Router,
    peer: SocketAddr,
    ctl: Arc<ConnCtl>,
    tls: bool,
}

impl hyper::service::Service<Request<hyper::body::Incoming>> for WithPeer {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = axum::routing::future::RouteFuture<std::convert::Infallible>;

    fn call(&self, mut req: Request<hyper::body::Incoming>) -> Self::Future {
        self.ctl.served.store(true, Ordering::Release);
        req.extensions_mut().insert(ConnectInfo(self.peer));
        if self.tls {
            req.extensions_mut().insert(TlsConn);
        }
        self.router.clone().call(req.map(Body::new))
    }
}

/// Open connections, all together and per client address. When all `max` places are
/// taken, a new connection takes the place of the oldest connection that has not yet sent a
/// complete request (a slow or silent client); only when there is none is it closed.
struct ConnTable {
    max: usize,
    per_address: usize,
    /// New connections per second from one address (burst twice this).
    rate: f64,
    open: AtomicUsize,
    inner: Mutex<TableInner>,
    refused: AtomicU64,
    evicted: AtomicU64,
}

#[derive(Default)]
struct TableInner {
    by_address: HashMap<IpAddr, usize>,
    /// New-connection token bucket per address: (tokens, last refill).
    rates: HashMap<IpAddr, (f64, std::time::Instant)>,
    /// Connections in accept order that may not have sent a request yet (pruned lazily).
    waiting: VecDeque<Weak<ConnCtl>>,
    /// Connections told to close that have not closed yet (they still hold a descriptor).
    evicting: usize,
}

/// What the table and a connection's task share.
#[derive(Default)]
struct ConnCtl {
    /// A complete request head has arrived: never evicted.
    served: AtomicBool,
    evicted: AtomicBool,
    evict: tokio::sync::Notify,
}

/// One open connection's place in the table, given back on drop.
struct Slot {
    table: Arc<ConnTable>,
    ip: IpAddr,
    ctl: Arc<ConnCtl>,
}

impl ConnTable {
    fn new(max: usize, per_address: usize, rate: f64) -> Arc<ConnTable> {
        Arc::new(ConnTable {
            max,
            per_address,
            rate,
            open: AtomicUsize::new(0),
            inner: Mutex::new(TableInner::default()),
            refused: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
        })
    }

    fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Takes one new-connection token of `ip` (rate `rate`, burst `2 × rate`).
    fn take_token(&self, g: &mut TableInner, ip: IpAddr) -> bool {
        let now = std::time::Instant::now();
        let burst = (2.0 * self.rate).max(1.0);
        let refill = |(tokens, at): (f64, std::time::Instant)| {
            (tokens + now.duration_since(at).as_secs_f64() * self.rate).min(burst)
        };
        if g.rates.len() >= 4096 && !g.rates.contains_key(&ip) {
            // Forget addresses whose bucket is full again (not seen for a while).
            g.rates.retain(|_, b| refill(*b) < burst);
        }
        let b = g.rates.entry(ip).or_insert((burst, now));
        let tokens = refill(*b);
        if tokens < 1.0 {
            *b = (tokens, now);
            return false;
        }
        *b = (tokens - 1.0, now);
        true
    }

    fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let slot = self.try_acquire(ip.to_canonical());
        if slot.is_none() {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        slot
    }

    fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if g.by_address.get(&ip).is_some_and(|n| *n >= self.per_address) {
            return None;
        }
        if !self.take_token(&mut g, ip) {
            return None;
        }
        let open = self.open.load(Ordering::Acquire);
        if open.saturating_sub(g.evicting) >= self.max {
            // Closing connections still hold descriptors: a bounded number in flight.
            if open >= self.max + self.max / 8 + 8 {
                return None;
            }
            let victim = loop {
                match g.waiting.pop_front() {
                    None => break None,
                    Some(w) => match w.upgrade() {
                        Some(c)
                            if !c.served.load(Ordering::Acquire)
                                && !c.evicted.load(Ordering::Acquire) =>
                        {
                            break Some(c)
                        }
                        _ => {}
                    },
                }
            };
            let victim = victim?;
            victim.evicted.store(true, Ordering::Release);
            victim.evict.notify_one();
            g.evicting += 1;
            self.evicted.fetch_add(1, Ordering::Relaxed);
        }
        *g.by_address.entry(ip).or_insert(0) += 1;
        self.open.fetch_add(1, Ordering::AcqRel);
        let ctl = Arc::new(ConnCtl::default());
        g.waiting.push_back(Arc::downgrade(&ctl));
        if g.waiting.len() > 2 * self.max + 16 {
            g.waiting.retain(|w| {
                w.upgrade().is_some_and(|c| {
                    !c.served.load(Ordering::Acquire) && !c.evicted.load(Ordering::Acquire)
                })
            });
        }
        Some(Slot { table: self.clone(), ip, ctl })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut g = self.table.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = g.by_address.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                g.by_address.remove(&self.ip);
            }
        }
        if self.ctl.evicted.load(Ordering::Acquire) {
            g.evicting = g.evicting.saturating_sub(1);
        }
        self.table.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Whether a complete request head (up to 4 KiB) already waits in the socket's receive
/// buffer: one non-blocking peek, nothing consumed.
fn head_waiting(stream: &tokio::net::TcpStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut buf = [0u8; 4096];
    // SAFETY: recv into a buffer we own, with its length; MSG_PEEK consumes nothing and
    // MSG_DONTWAIT never blocks.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n > 0 && buf[..n as usize].windows(4).any(|w| w == b"\r\n\r\n")
}

/// Milliseconds on a process-wide monotonic clock (never 0).
fn now_ms() -> u64 {
    static T0: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    T0.get_or_init(std::time::Instant::now).elapsed().as_millis() as u64 + 1
}

/// A socket that notes since when its writes have made no progress (the client stopped
/// reading): `stall` holds [`now_ms`] of the first write that found the socket full, 0
/// while writes go through.
struct Tracked {
    inner: tokio::net::TcpStream,
    stall: Arc<AtomicU64>,
}

impl Tracked {
    fn note<T>(&self, r: &Poll<std::io::Result<T>>) {
        match r {
            Poll::Pending => {
                let _ =
                    self.stall.compare_exchange(0, now_ms(), Ordering::AcqRel, Ordering::Relaxed);
            }
            Poll::Ready(_) => self.stall.store(0, Ordering::Release),
        }
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.note(&r);
        r
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.note(&r);
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Completes when a write has been stuck for `timeout`.
async fn write_stalled(stall: &AtomicU64, timeout: Duration) {
    let limit = timeout.as_millis() as u64;
    let tick = (timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
    loop {
        tokio::time::sleep(tick).await;
        let since = stall.load(Ordering::Acquire);
        if since != 0 && now_ms().saturating_sub(since) >= limit {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Per-request middleware

/// Every request: its body read whole, at most `max_body_bytes` (413) within
/// `request_timeout` (408); every response gets `X-Content-Type-Options: nosniff`, and
/// API and media responses `Cache-Control: no-store` (the console's files keep their own).
pub(super) async fn discipline(
    State(limits): State<Arc<HttpLimits>>,
    req: Request,
    next: Next,
) -> Response {
    let console = {
        let p = req.uri().path();
        p == "/" || p.starts_with("/ui/")
    };
    let mut resp = match read_body(req, &limits).await {
        Ok(req) => next.run(req).await,
        Err(e) => e.into_response(),
    };
    let h = resp.headers_mut();
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if !console {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

async fn read_body(req: Request, limits: &HttpLimits) -> Result<Request, ApiError> {
    let too_large = || {
        ApiError::new(
            ErrorKind::PayloadTooLarge,
            format!("the request body must be at most {} bytes", limits.max_body_bytes),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body_bytes as u64) {
        return Err(too_large());
    }
    let (parts, body) = req.into_parts();
    if body.is_end_stream() {
        return Ok(Request::from_parts(parts, body));
    }
    let read = axum::body::to_bytes(body, limits.max_body_bytes);
    match tokio::time::timeout(limits.request_timeout, read).await {
        Ok(Ok(bytes)) => Ok(Request::from_parts(parts, Body::from(bytes))),
        Ok(Err(e)) => {
            let over = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if over {
                Err(too_large())
            } else {
                Err(ApiError::bad_param("body", format!("cannot read the request body: {e}")))
            }
        }
        Err(_) => Err(ApiError::new(
            ErrorKind::RequestTimeout,
            format!(
                "the request body did not arrive within {} s",
                limits.request_timeout.as_secs_f64()
            ),
        )),
    }
}

/// A non-streaming operation: answered within `request_timeout` or a 503 `request_timeout`.
pub(super) async fn timed(
    State(limits): State<Arc<HttpLimits>>,
    req: Request,
    next: Next,
) -> Response {
    match tokio::time::timeout(limits.request_timeout, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => ApiError::new(
            ErrorKind::Unavailable,
            format!(
                "the request was not answered within {} s",
                limits.request_timeout.as_secs_f64()
            ),
        )
        .with_code("request_timeout")
        .retry_after(1)
        .into_response(),
    }
}

/// Event streams and long-polls open per principal (the `actor`: a user, a token).
#[derive(Default)]
pub(super) struct StreamSlots {
    max: usize,
    open: Mutex<HashMap<String, usize>>,
}

struct StreamSlot {
    slots: Arc<StreamSlots>,
    actor: String,
}

impl StreamSlots {
    pub(super) fn new(max: usize) -> Arc<StreamSlots> {
        Arc::new(StreamSlots { max, open: Mutex::new(HashMap::new()) })
    }

    fn acquire(self: &Arc<Self>, actor: String) -> Option<StreamSlot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(actor.clone()).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(StreamSlot { slots: self.clone(), actor })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.actor) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.actor);
            }
        }
    }
}

/// An event stream or long-poll: at most `max` per principal at once, held until the
/// response body ends or the client goes (429 `too_many_streams` beyond). Runs after
/// authorization (it needs the principal).
pub(super) async fn stream_cap(
    State(slots): State<Arc<StreamSlots>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(actor) = req.extensions().get::<Principal>().map(Principal::actor) else {
        return ApiError::internal("stream cap without a principal").into_response();
    };
    let Some(slot) = slots.acquire(actor) else {
        return ApiError::new(
            ErrorKind::TooManyRequests,
            format!(
                "at most {} event streams and feed long-polls may be open at once per user or \
                 token; close one first",
                slots.max
            ),
        )
        .with_code("too_many_streams")
        .retry_after(5)
        .into_response();
    };
    let resp = next.run(req).await;
    let (parts, body) = resp.into_parts();
    Response::from_parts(parts, Body::new(Held { body, _slot: slot }))
}

/// A response body that holds a stream slot until it is dropped.
struct Held {
    body: Body,
    _slot: StreamSlot,
}

impl HttpBody for Held {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }
    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
