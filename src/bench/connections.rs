//! `gridwatch bench-connections`: N slow clients (half-sent request heads, dripped, and
//! reconnecting whenever the server closes them) against a real `gridwatch run` with a
//! recording file camera, under a service-like open-file limit. Reports analysed fps and
//! recorded seconds without and with the attack, the footage lost, and how a well-behaved
//! client fared. Prints a report; asserts nothing (docs/security.md, docs/performance.md).
//!
//! The box runs as a child process (its own descriptor limit, as under a service manager);
//! the attackers and the good client run here on loopback, the attackers from
//! `--addresses` distinct addresses in 127.1.0.0/16 and the good client from 127.0.0.1.
//! Recorded seconds come from the box's segment index after it has stopped.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use time::OffsetDateTime;

use crate::store::Store;

pub struct Options {
    pub video: PathBuf,
    pub model: PathBuf,
    /// Slow clients at once.
    pub clients: usize,
    /// Seconds of each window (without, then with the attack).
    pub secs: u64,
    /// Distinct client addresses the slow clients come from.
    pub addresses: usize,
    /// RLIMIT_NOFILE of the box (soft and hard), as a service might run.
    pub fd_limit: u64,
    /// The `gridwatch` binary to attack (default: this one), e.g. an older build.
    pub box_bin: Option<PathBuf>,
}

const CAMERA: &str = "cam";
const SEGMENT_SECS: u32 = 2;
/// Head sent by a slow client, then one header line per `DRIP`.
const HALF_HEAD: &[u8] = b"GET /api/v1/health HTTP/1.1\r\nHost: gridwatch\r\n";
const DRIP: Duration = Duration::from_secs(2);

pub fn run(o: &Options) -> anyhow::Result<()> {
    if o.clients == 0 || o.secs == 0 || o.addresses == 0 {
        bail!("--clients, --secs and --addresses must be positive");
    }
    let own = crate::api::raise_fd_limit()?;
    if own < o.clients as u64 + 256 {
        bail!("this process may open {own} files; {} slow clients need more", o.clients);
    }
    let dir = TempDir::new()?;
    let token = crate::store::try_generate_token()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let abs = |p: &Path| std::fs::canonicalize(p).with_context(|| format!("{}", p.display()));
    let cfg = format!(
        r#"box_id = "bench-connections"
data_dir = "{data}"
[api]
listen = "127.0.0.1:{port}"
tokens_sha256 = ["{hash}"]
[inference]
intra_op_threads = 1
[models]
m = "{model}"
[[cameras]]
id = "{CAMERA}"
url = "{video}"
loop = true
detect_fps = 5
models = ["m"]
[cameras.record]
segment_secs = {SEGMENT_SECS}
"#,
        data = dir.path().join("data").display(),
        hash = crate::store::hash_token(&token),
        model = abs(&o.model)?.display(),
        video = abs(&o.video)?.display(),
    );
    let cfg_path = dir.path().join("gridwatch.toml");
    std::fs::write(&cfg_path, cfg)?;
    let bin = match &o.box_bin {
        Some(b) => b.clone(),
        None => std::env::current_exe()?,
    };
    let mut child = spawn_box(&bin, &cfg_path, dir.path(), o.fd_limit)?;
    let result = measure(o, &mut child, port, &token);
    // Stop the box (SIGTERM: the recorder closes and indexes its open segment).
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let m = result.map_err(|e| {
        let log = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        anyhow!("{e:#}\nbox log (last lines, newest first):\n{}", tail.join("\n"))
    })?;
    let store = Store::open(&dir.path().join("data"))?;
    let recorded = |w: &Window| -> anyhow::Result<f64> {
        let segs = store.segments(Some(CAMERA), Some(w.from), Some(w.to), 100_000)?;
        Ok(segs
            .iter()
            .map(|s| ((s.end.min(w.to) - s.start.max(w.from)).as_seconds_f64()).max(0.0))
            .sum())
    };
    let (base_rec, attack_rec) = (recorded(&m.base)?, recorded(&m.attack)?);
    let log = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default();
    print_report(o, &m, base_rec, attack_rec, &log);
    Ok(())
}

fn spawn_box(bin: &Path, cfg: &Path, dir: &Path, fd_limit: u64) -> anyhow::Result<Child> {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(bin);
    cmd.args(["run", "--config"])
        .arg(cfg)
        .env("GRIDWATCH_LOG", "info")
        .stdout(std::fs::File::create(dir.join("stdout.log"))?)
        .stderr(std::fs::File::create(dir.join("stderr.log"))?)
        .stdin(Stdio::null());
    let lim = libc::rlimit { rlim_cur: fd_limit as _, rlim_max: fd_limit as _ };
    // SAFETY: setrlimit is async-signal-safe; it only reads `lim`.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(cmd.spawn()?)
}

/// A scratch directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> std::io::Result<TempDir> {
        let p = std::env::temp_dir()
            .join(format!("gridwatch-bench-connections-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p)?;
        Ok(TempDir(p))
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Window {
    from: OffsetDateTime,
    to: OffsetDateTime,
}

/// What the good client saw in one window.
#[derive(Default)]
struct Seen {
    asked: u64,
    answered: u64,
    latencies_ms: Vec<f32>,
    /// (seconds since the window began, frames analysed) per answer.
    frames: Vec<(f64, u64)>,
    not_online: u64,
    max_box_fds: u64,
    /// Why requests were not answered: (reason, count).
    misses: Vec<(String, u64)>,
}

impl Seen {
    fn miss(&mut self, why: String) {
        match self.misses.iter_mut().find(|(w, _)| *w == why) {
            Some((_, n)) => *n += 1,
            None => self.misses.push((why, 1)),
        }
    }

    fn fps(&self) -> Option<f64> {
        let (a, b) = (self.frames.first()?, self.frames.last()?);
        (b.0 - a.0 > 1.0).then(|| (b.1 - a.1) as f64 / (b.0 - a.0))
    }
}

#[derive(Default)]
struct AttackStats {
    connects: AtomicU64,
    failed_connects: AtomicU64,
    closed_by_server: AtomicU64,
    open: AtomicU64,
    max_open: AtomicU64,
}

struct Measured {
    base: Window,
    attack: Window,
    base_seen: Seen,
    attack_seen: Seen,
    stats: Arc<AttackStats>,
}

fn measure(o: &Options, child: &mut Child, port: u16, token: &str) -> anyhow::Result<Measured> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    // A new connection per request: a client arriving during the attack, not one that
    // kept its connection from before.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(0)
        .local_address(IpAddr::V4(Ipv4Addr::LOCALHOST))
        .build()?;
    let url = format!("http://{addr}/api/v1/cameras");
    let pid = child.id();
    rt.block_on(async {
        // Up, and recording steadily (a few segments) before the first window.
        let t0 = Instant::now();
        loop {
            if let Some(status) = child.try_wait()? {
                bail!("the box exited during start-up: {status}");
            }
            if let Ok(r) = client.get(&url).bearer_auth(token).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            if t0.elapsed() > Duration::from_secs(120) {
                bail!("the box did not answer within 120 s");
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        tokio::time::sleep(Duration::from_secs(3 * SEGMENT_SECS as u64 + 2)).await;
        let secs = Duration::from_secs(o.secs);
        eprintln!("bench-connections: {} s without the attack …", o.secs);
        let base_from = OffsetDateTime::now_utc();
        let base_seen = good_client(&client, &url, token, secs, pid).await;
        let base = Window { from: base_from, to: OffsetDateTime::now_utc() };

        eprintln!(
            "bench-connections: {} s with {} slow clients from {} address(es) …",
            o.secs, o.clients, o.addresses
        );
        let stats = Arc::new(AttackStats::default());
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let attack_from = OffsetDateTime::now_utc();
        let mut tasks = Vec::new();
        for i in 0..o.clients {
            let a = i % o.addresses;
            let src = Ipv4Addr::new(127, 1, (a / 250) as u8, (a % 250 + 1) as u8);
            tasks.push(tokio::spawn(slow_client(addr, src, stop_rx.clone(), stats.clone())));
        }
        let attack_seen = good_client(&client, &url, token, secs, pid).await;
        let attack = Window { from: attack_from, to: OffsetDateTime::now_utc() };
        let _ = stop_tx.send(true);
        for t in tasks {
            let _ = t.await;
        }
        if let Some(status) = child.try_wait()? {
            bail!("the box exited during the attack: {status}");
        }
        // The segment open at the window's end is indexed when it closes.
        tokio::time::sleep(Duration::from_secs(2 * SEGMENT_SECS as u64)).await;
        Ok(Measured { base, attack, base_seen, attack_seen, stats })
    })
}

/// A well-behaved client: `GET /api/v1/cameras` once a second for `secs` (a new connection
/// each time, 5 s timeout), noting answers, latency, frames analysed and the box's open
/// descriptors.
async fn good_client(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    secs: Duration,
    pid: u32,
) -> Seen {
    let mut seen = Seen::default();
    let t0 = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    while t0.elapsed() < secs {
        tick.tick().await;
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0);
        seen.max_box_fds = seen.max_box_fds.max(fds as u64);
        seen.asked += 1;
        let t = Instant::now();
        let resp = match client.get(url).bearer_auth(token).send().await {
            Ok(r) if r.status().is_success() => r,
            Ok(r) => {
                seen.miss(format!("HTTP {}", r.status().as_u16()));
                continue;
            }
            Err(e) => {
                let why = if e.is_timeout() {
                    "timed out (5 s)"
                } else if e.is_connect() {
                    "connect failed"
                } else {
                    "connection closed or reset"
                };
                seen.miss(why.to_string());
                continue;
            }
        };
        let Ok(body) = resp.bytes().await else { continue };
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) else { continue };
        seen.answered += 1;
        seen.latencies_ms.push(t.elapsed().as_secs_f32() * 1e3);
        if let Some(cam) = v["cameras"].as_array().and_then(|c| c.first()) {
            if let Some(n) = cam["frames_analysed"].as_u64() {
                seen.frames.push((t0.elapsed().as_secs_f64(), n));
            }
            if cam["state"] != "online" {
                seen.not_online += 1;
            }
        }
    }
    seen
}

/// One slow client: connects from `src`, sends half a request head and a header line every
/// [`DRIP`], and reconnects whenever the server closes it, until `stop`.
async fn slow_client(
    addr: SocketAddr,
    src: Ipv4Addr,
    mut stop: tokio::sync::watch::Receiver<bool>,
    stats: Arc<AttackStats>,
) {
    while !*stop.borrow() {
        let sock = match tokio::net::TcpSocket::new_v4() {
            Ok(s) => s,
            Err(_) => return,
        };
        if sock.bind(SocketAddr::from((src, 0))).is_err() {
            return;
        }
        let s = tokio::select! {
            r = sock.connect(addr) => r,
            _ = stop.changed() => return,
        };
        let Ok(s) = s else {
            stats.failed_connects.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        stats.connects.fetch_add(1, Ordering::Relaxed);
        let open = stats.open.fetch_add(1, Ordering::Relaxed) + 1;
        stats.max_open.fetch_max(open, Ordering::Relaxed);
        let _ = s.try_write(HALF_HEAD);
        let mut buf = [0u8; 1024];
        let mut drip = tokio::time::interval_at(tokio::time::Instant::now() + DRIP, DRIP);
        let stopped = loop {
            tokio::select! {
                r = s.readable() => {
                    if r.is_err() {
                        break false;
                    }
                    match s.try_read(&mut buf) {
                        Ok(0) => break false,
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(_) => break false,
                    }
                }
                _ = drip.tick() => {
                    if let Err(e) = s.try_write(b"X-Slow: 1\r\n") {
                        if e.kind() != std::io::ErrorKind::WouldBlock {
                            break false;
                        }
                    }
                }
                _ = stop.changed() => break true,
            }
        };
        stats.open.fetch_sub(1, Ordering::Relaxed);
        if stopped {
            return;
        }
        stats.closed_by_server.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn print_report(o: &Options, m: &Measured, base_rec: f64, attack_rec: f64, log: &str) {
    let len = |w: &Window| (w.to - w.from).as_seconds_f64();
    let fps = |s: &Seen| s.fps().map_or("n/a".to_string(), |f| format!("{f:.2}"));
    let lat = |s: &Seen| {
        let mut v = s.latencies_ms.clone();
        if v.is_empty() {
            return "n/a".to_string();
        }
        let p50 = super::percentile(&mut v, 0.5);
        let max = v.iter().cloned().fold(0.0f32, f32::max);
        format!("p50 {p50:.1} ms, max {max:.1} ms")
    };
    let st = &m.stats;
    println!(
        "bench-connections: {} slow clients from {} address(es), {} s windows, box open-file \
         limit {}{}",
        o.clients,
        o.addresses,
        o.secs,
        o.fd_limit,
        o.box_bin.as_ref().map(|b| format!(", box {}", b.display())).unwrap_or_default()
    );
    println!("                       without attack    with attack");
    println!("  analysed fps         {:>14}    {:>11}", fps(&m.base_seen), fps(&m.attack_seen));
    println!(
        "  recorded s / window  {:>8.1} / {:<5.1} {:>6.1} / {:<5.1}",
        base_rec,
        len(&m.base),
        attack_rec,
        len(&m.attack)
    );
    println!(
        "  footage lost s       {:>14.1}    {:>11.1}",
        (len(&m.base) - base_rec).max(0.0),
        (len(&m.attack) - attack_rec).max(0.0)
    );
    println!(
        "  good client answered {:>9}/{:<4}    {:>6}/{:<4}",
        m.base_seen.answered, m.base_seen.asked, m.attack_seen.answered, m.attack_seen.asked
    );
    println!("  good client latency  base {}; attack {}", lat(&m.base_seen), lat(&m.attack_seen));
    for (name, s) in [("base", &m.base_seen), ("attack", &m.attack_seen)] {
        let misses: Vec<String> = s.misses.iter().map(|(w, n)| format!("{n} {w}")).collect();
        if !misses.is_empty() {
            println!("  good client misses ({name}): {}", misses.join(", "));
        }
    }
    println!(
        "  camera not online    {:>14}    {:>11}   (answers that saw it)",
        m.base_seen.not_online, m.attack_seen.not_online
    );
    println!(
        "  box open fds (max)   {:>14}    {:>11}",
        m.base_seen.max_box_fds, m.attack_seen.max_box_fds
    );
    println!(
        "  slow clients: {} connects, {} closed by the box, {} failed connects, at most {} \
         open at once on this side",
        st.connects.load(Ordering::Relaxed),
        st.closed_by_server.load(Ordering::Relaxed),
        st.failed_connects.load(Ordering::Relaxed),
        st.max_open.load(Ordering::Relaxed)
    );
    if let Some(last) = log.lines().rev().find(|l| l.contains("connection limit reached")) {
        println!("  box's last limit warning: {}", last.trim());
    }
    let count = |needle: &str| log.lines().filter(|l| l.contains(needle)).count();
    println!(
        "  box log: {} 'connection limit reached' warnings, {} 'Too many open files'",
        count("connection limit reached"),
        count("Too many open files")
    );
}
