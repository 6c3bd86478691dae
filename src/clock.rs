//! The appliance's one clock: wall time, monotonic time, and waiting (sleep, sleep until a
//! stop flag, receive with a timeout). Everything that reads the time or waits for it takes
//! a [`Clock`], so tests can run it in simulated time.
//!
//! - [`SystemClock`]: the system's UTC clock and `Instant`; waits block in real time.
//! - [`SimClock`]: a clock that only moves when told to ([`SimClock::advance`], [`SimClock::set`])
//!   or when someone waits on it: **a wait on a `SimClock` never blocks**. It looks once
//!   (has a message arrived, is the stop flag set?) and, if not, moves the clock forward by
//!   the whole timeout and returns. Code driven by one thread (a supervisor with a scripted
//!   source, the offline watch) therefore runs through minutes of simulated time instantly
//!   and in a fixed order. Several threads waiting on the same `SimClock` each move the shared
//!   time forward, so their interleaving is not deterministic: keep the time-driven loops of a
//!   test on one thread, and let other threads only read the time (as the uplink worker does,
//!   polling `now`) while the test moves it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use time::OffsetDateTime;

/// Longest real-time sleep of [`SystemClock`] between looks at a stop flag.
const STOP_POLL: Duration = Duration::from_millis(100);

pub trait Clock: Send + Sync {
    /// Wall time (UTC).
    fn now(&self) -> OffsetDateTime;

    /// Monotonic time, for timeouts and rates (never jumps when the wall clock is set).
    fn instant(&self) -> Instant;

    /// Waits up to `timeout` of this clock's time for `wait` to report that what it waits
    /// for has happened; returns whether it has. `wait(limit)` may block up to `limit` of
    /// real time and returns true once done: the system clock hands it the whole timeout; a
    /// simulated clock calls it once with a zero limit (a look that must not block) and, when
    /// that finds nothing, moves its time forward by `timeout`.
    fn wait_for(&self, timeout: Duration, wait: &mut dyn FnMut(Duration) -> bool) -> bool;
}

impl dyn Clock + '_ {
    /// Sleeps `d` of this clock's time.
    pub fn sleep(&self, d: Duration) {
        self.wait_for(d, &mut |limit| {
            std::thread::sleep(limit);
            false
        });
    }

    /// Sleeps `d`, or less once `stop` is set (looked at every 100 ms in real time); returns
    /// whether `stop` is set.
    pub fn sleep_unless(&self, d: Duration, stop: &AtomicBool) -> bool {
        self.wait_for(d, &mut |limit| {
            let end = Instant::now() + limit;
            loop {
                if stop.load(Ordering::Relaxed) {
                    return true;
                }
                let now = Instant::now();
                if now >= end {
                    return false;
                }
                std::thread::sleep((end - now).min(STOP_POLL));
            }
        })
    }

    /// `rx.recv_timeout(timeout)` in this clock's time.
    pub fn recv_timeout<T>(
        &self,
        rx: &Receiver<T>,
        timeout: Duration,
    ) -> Result<T, RecvTimeoutError> {
        let mut got = Err(RecvTimeoutError::Timeout);
        self.wait_for(timeout, &mut |limit| {
            got = if limit.is_zero() {
                rx.try_recv().map_err(|e| match e {
                    TryRecvError::Empty => RecvTimeoutError::Timeout,
                    TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
                })
            } else {
                rx.recv_timeout(limit)
            };
            !matches!(got, Err(RecvTimeoutError::Timeout))
        });
        got
    }
}

/// The system's UTC clock; waits block in real time.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
    fn instant(&self) -> Instant {
        Instant::now()
    }
    fn wait_for(&self, timeout: Duration, wait: &mut dyn FnMut(Duration) -> bool) -> bool {
        wait(timeout)
    }
}

/// A clock that only moves when told to or waited on (tests; see the module docs).
#[derive(Debug)]
pub struct SimClock(Mutex<SimTime>);

#[derive(Debug)]
struct SimTime {
    wall: OffsetDateTime,
    /// Monotonic time: a real `Instant` taken at creation plus the simulated time elapsed.
    mono: Instant,
}

impl SimClock {
    /// A clock at wall time `at`.
    pub fn new(at: OffsetDateTime) -> Self {
        SimClock(Mutex::new(SimTime { wall: at, mono: Instant::now() }))
    }

    fn time(&self) -> std::sync::MutexGuard<'_, SimTime> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the wall time (a jump: monotonic time does not move).
    pub fn set(&self, at: OffsetDateTime) {
        self.time().wall = at;
    }

    /// Moves wall time by `d` and, when `d` is positive, monotonic time with it.
    pub fn advance(&self, d: time::Duration) {
        let mut t = self.time();
        t.wall += d;
        if let Ok(std) = Duration::try_from(d) {
            t.mono += std;
        }
    }

    /// Moves wall and monotonic time forward by `d`.
    pub fn advance_std(&self, d: Duration) {
        let mut t = self.time();
        t.wall += d;
        t.mono += d;
    }
}

impl Clock for SimClock {
    fn now(&self) -> OffsetDateTime {
        self.time().wall
    }
    fn instant(&self) -> Instant {
        self.time().mono
    }
    fn wait_for(&self, timeout: Duration, wait: &mut dyn FnMut(Duration) -> bool) -> bool {
        if wait(Duration::ZERO) {
            return true;
        }
        self.advance_std(timeout);
        // Lets a thread that shares the clock (e.g. one reading it) make progress.
        std::thread::yield_now();
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::sync::Arc;

    fn t0() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    #[test]
    fn sim_clock_waits_by_moving_its_time() {
        let sim = Arc::new(SimClock::new(t0()));
        let clock: Arc<dyn Clock> = sim.clone();
        let i0 = clock.instant();
        let real = Instant::now();
        clock.sleep(Duration::from_secs(3600));
        assert_eq!(clock.now(), t0() + time::Duration::hours(1));
        assert_eq!(clock.instant() - i0, Duration::from_secs(3600));

        // A stop flag already set: no time passes.
        let stop = AtomicBool::new(true);
        assert!(clock.sleep_unless(Duration::from_secs(10), &stop));
        assert_eq!(clock.now(), t0() + time::Duration::hours(1));
        stop.store(false, Ordering::Relaxed);
        assert!(!clock.sleep_unless(Duration::from_secs(10), &stop));
        assert_eq!(clock.instant() - i0, Duration::from_secs(3610));

        // A waiting message is taken at once; an empty channel times out in simulated time.
        let (tx, rx) = mpsc::channel();
        tx.send(7).unwrap();
        assert_eq!(clock.recv_timeout(&rx, Duration::from_secs(5)), Ok(7));
        assert_eq!(clock.recv_timeout(&rx, Duration::from_secs(5)), Err(RecvTimeoutError::Timeout));
        assert_eq!(clock.instant() - i0, Duration::from_secs(3615));
        drop(tx);
        assert_eq!(
            clock.recv_timeout(&rx, Duration::from_secs(5)),
            Err(RecvTimeoutError::Disconnected)
        );
        assert!(real.elapsed() < Duration::from_secs(1), "simulated waits do not block");

        // Setting the wall clock does not move monotonic time; advancing moves both.
        sim.set(t0());
        assert_eq!((clock.now(), clock.instant() - i0), (t0(), Duration::from_secs(3615)));
        sim.advance(time::Duration::seconds(-5));
        assert_eq!(clock.instant() - i0, Duration::from_secs(3615));
        sim.advance(time::Duration::seconds(5));
        assert_eq!((clock.now(), clock.instant() - i0), (t0(), Duration::from_secs(3620)));
    }

    #[test]
    fn system_clock_waits_in_real_time() {
        let clock: &dyn Clock = &SystemClock;
        let (tx, rx) = mpsc::channel::<u32>();
        let t = Instant::now();
        assert_eq!(
            clock.recv_timeout(&rx, Duration::from_millis(30)),
            Err(RecvTimeoutError::Timeout)
        );
        assert!(t.elapsed() >= Duration::from_millis(30));
        tx.send(1).unwrap();
        assert_eq!(clock.recv_timeout(&rx, Duration::from_secs(5)), Ok(1));
        let stop = AtomicBool::new(true);
        let t = Instant::now();
        assert!(clock.sleep_unless(Duration::from_secs(5), &stop));
        assert!(t.elapsed() < Duration::from_secs(1));
    }
}
