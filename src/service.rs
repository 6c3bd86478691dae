//! Running under systemd (`Type=notify`, packaging/gridwatch.service): the sd_notify
//! protocol over the datagram socket in `$NOTIFY_SOCKET` (a path, or an abstract name after
//! `@`). `READY=1` once the API listens, `STOPPING=1` when shutting down, and `WATCHDOG=1`
//! every half `$WATCHDOG_USEC` while the store answers a read (a wedged database or disk
//! stops the pings, and systemd restarts the service). Without `$NOTIFY_SOCKET` (a shell, a
//! test) every call does nothing.

use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Sends one notification (`READY=1`, …) to the service manager. Returns whether it was
/// sent; an error is logged, never fatal (the service manager may be gone).
pub fn notify(state: &str) -> bool {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return false };
    match send(&path, state) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!("sd_notify {state}: {e}");
            false
        }
    }
}

fn send(path: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let sock = UnixDatagram::unbound()?;
    let bytes = path.as_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name)?
        }
        None => std::os::unix::net::SocketAddr::from_pathname(std::path::Path::new(path))?,
    };
    sock.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}

/// The watchdog interval systemd asks for (`$WATCHDOG_USEC`, for this process when
/// `$WATCHDOG_PID` is set), if any.
pub fn watchdog_interval() -> Option<Duration> {
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.trim() != std::process::id().to_string() {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// A thread that sends `WATCHDOG=1` every half interval while `alive()` holds.
pub struct Watchdog {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    /// Starts pinging if systemd asked for a watchdog (`watchdog_interval`); `None` otherwise.
    pub fn start(alive: impl Fn() -> bool + Send + 'static) -> Option<Watchdog> {
        let every = watchdog_interval()? / 2;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("watchdog".into())
            .spawn(move || {
                let tick = Duration::from_millis(100).min(every);
                let mut waited = every; // ping at once
                while !flag.load(Ordering::Relaxed) {
                    if waited >= every {
                        waited = Duration::ZERO;
                        if alive() {
                            notify("WATCHDOG=1");
                        } else {
                            tracing::error!("watchdog: the store does not answer; no ping");
                        }
                    }
                    std::thread::sleep(tick);
                    waited += tick;
                }
            })
            .ok()?;
        Some(Watchdog { stop, thread: Some(thread) })
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One message over a real datagram socket, at a path and at an abstract name.
    #[test]
    fn sends_to_a_path_and_to_an_abstract_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let rx = UnixDatagram::bind(&path).unwrap();
        send(path.as_os_str(), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("gridwatch-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let rx = UnixDatagram::bind_addr(&addr).unwrap();
        send(std::ffi::OsStr::new(&format!("@{name}")), "WATCHDOG=1").unwrap();
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"WATCHDOG=1");
    }
}
