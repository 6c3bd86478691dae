//! The delivery worker of one sink: reads the outbox, keeps each camera's changes in order,
//! retries with exponential backoff and jitter, dead-letters, and records cursors.
//!
//! One task ("lane") per camera delivers that camera's changes one at a time, oldest first:
//! change N+1 is not attempted before N is acknowledged (or given up), while different
//! cameras proceed independently. Acknowledgements are buffered and written to
//! `uplink_cursors` every `ack_flush` (one transaction for all cameras); a crash loses at
//! most that window of acknowledgements, whose changes are then delivered again (at least
//! once; receivers dedupe by `id`), still in order. Failures and dead letters are written at
//! once. All waiting is against the [`Clock`], so tests can run days of outage in seconds.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::sink::{Outcome, Sink};
use crate::clock::Clock;
use crate::store::outbox::{CursorState, Failure, OutboxRow};
use crate::store::{Store, StoreError};

/// Retry and pacing rules of one sink.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// First retry delay (before jitter); doubles per failed attempt …
    pub backoff_min: Duration,
    /// … up to this.
    pub backoff_max: Duration,
    /// A change that still fails when it is this old (since it was recorded) is dead-lettered.
    pub max_retry: Duration,
    /// Non-retryable rejections of one change before it is dead-lettered.
    pub dead_letter_after: u32,
    /// The longest receiver `Retry-After` honoured (longer ones are cut to this).
    pub max_retry_after: Duration,
    /// Longest real-time sleep between looks at the clock while waiting for a retry (only
    /// matters for a simulated clock; the system clock is waited on exactly).
    pub poll: Duration,
    /// How often acknowledgements are written to the database.
    pub ack_flush: Duration,
    /// Outbox rows read per camera at a time.
    pub batch: u32,
}

/// A sink's policy comes from its config (`uplink::config::SinkConfig::policy`): the shared
/// delivery settings, and for webhooks `dead_letter_after` (for MQTT, whose PUBACK cannot
/// refuse a change, it only counts changes too large to publish).
impl Policy {
    /// The delay after the `attempts`-th failed attempt: `min(max, min·2^(attempts−1))`
    /// scaled by a random factor in [0.5, 1) ("equal jitter", so cameras that failed
    /// together do not retry in lockstep), and never less than the receiver's
    /// `Retry-After` (capped at `max_retry_after`).
    pub fn delay(&self, attempts: u32, retry_after: Option<Duration>) -> Duration {
        let exp = attempts.saturating_sub(1).min(40);
        let base = self.backoff_min.saturating_mul(1u32 << exp.min(31)).min(self.backoff_max);
        let jitter =
            0.5 + 0.5 * (getrandom::u32().unwrap_or(u32::MAX / 2) as f64 / (u32::MAX as f64 + 1.0));
        let d = base.mul_f64(jitter);
        match retry_after {
            Some(r) => d.max(r.min(self.max_retry_after)),
            None => d,
        }
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(3600),
            max_retry: Duration::from_secs(72 * 3600),
            dead_letter_after: 3,
            max_retry_after: Duration::from_secs(24 * 3600),
            poll: Duration::from_secs(1),
            ack_flush: Duration::from_millis(100),
            batch: 256,
        }
    }
}

#[derive(Default)]
struct Acks {
    /// camera → (highest acked seq, when).
    latest: HashMap<String, (i64, OffsetDateTime)>,
    count: u64,
}

struct Shared {
    sink: Arc<dyn Sink>,
    store: Store,
    clock: Arc<dyn Clock>,
    policy: Policy,
    acks: Mutex<Acks>,
}

/// A running worker; `stop` ends it.
pub struct WorkerHandle {
    name: String,
    shutdown: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl WorkerHandle {
    /// Stops delivering (an attempt in flight is abandoned and will be repeated after the
    /// next start) and writes the buffered acknowledgements.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(t) = self.task.take() {
            if let Err(e) = t.await {
                tracing::error!(sink = %self.name, "uplink worker failed: {e}");
            }
        }
    }
}

/// Starts delivering to `sink` on the current tokio runtime. `start_seq` is the sink's
/// registration point (`Store::register_sinks`): only changes after it are delivered.
pub fn spawn(
    sink: Arc<dyn Sink>,
    store: Store,
    clock: Arc<dyn Clock>,
    policy: Policy,
    start_seq: i64,
) -> WorkerHandle {
    let (tx, rx) = watch::channel(false);
    let name = sink.name().to_string();
    let shared = Arc::new(Shared { sink, store, clock, policy, acks: Mutex::new(Acks::default()) });
    let task = tokio::spawn(run(shared, start_seq, rx));
    WorkerHandle { name, shutdown: tx, task: Some(task) }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(StoreError::Schema(format!("blocking task failed: {e}"))),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn flush(sh: &Shared) {
    let (acks, n) = {
        let mut a = lock(&sh.acks);
        if a.latest.is_empty() {
            return;
        }
        let latest: Vec<(String, i64, OffsetDateTime)> =
            a.latest.drain().map(|(c, (s, t))| (c, s, t)).collect();
        (latest, std::mem::take(&mut a.count))
    };
    let store = sh.store.clone();
    let name = sh.sink.name().to_string();
    let (acks2, name2) = (acks.clone(), name.clone());
    if let Err(e) = blocking(move || store.sink_ack(&name2, &acks2, n)).await {
        tracing::error!(sink = %name, "cannot record delivered changes (they will be sent again): {e}");
        // Put them back so the next flush retries.
        let mut a = lock(&sh.acks);
        for (c, s, t) in acks {
            let e = a.latest.entry(c).or_insert((s, t));
            if e.0 < s {
                *e = (s, t);
            }
        }
        a.count += n;
    }
}

async fn run(sh: Arc<Shared>, start_seq: i64, shutdown: watch::Receiver<bool>) {
    sh.sink.open();
    deliver_all(&sh, start_seq, shutdown).await;
    sh.sink.close().await;
}

async fn deliver_all(sh: &Arc<Shared>, start_seq: i64, mut shutdown: watch::Receiver<bool>) {
    let name = sh.sink.name().to_string();
    let store = sh.store.clone();
    let n2 = name.clone();
    let mut cursors = loop {
        let (s, n) = (store.clone(), n2.clone());
        match blocking(move || s.sink_cursors(&n)).await {
            Ok(c) => break c,
            Err(e) => {
                tracing::error!(sink = %name, "cannot read delivery state: {e}; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.changed() => return,
                }
            }
        }
    };
    let mut signal = store.feed_signal();
    let mut lanes = JoinSet::new();
    let mut known: HashSet<String> = HashSet::new();
    let mut seen = start_seq;
    let mut tick = tokio::time::interval(sh.policy.ack_flush);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(sink = %name, kind = sh.sink.kind(), target = %sh.sink.target(), "uplink sink started");
    loop {
        if *shutdown.borrow() {
            break;
        }
        signal.borrow_and_update();
        let s = store.clone();
        match blocking(move || s.outbox_cameras_after(seen)).await {
            Ok(cams) => {
                for (cam, max_seq) in cams {
                    seen = seen.max(max_seq);
                    if known.insert(cam.clone()) {
                        let c = cursors.remove(&cam).unwrap_or_default();
                        let acked = c.acked_seq.max(start_seq);
                        let retry = if c.head_seq.is_some_and(|h| h > acked) {
                            c
                        } else {
                            CursorState::default()
                        };
                        lanes.spawn(lane(sh.clone(), cam, acked, retry, shutdown.clone()));
                    }
                }
            }
            Err(e) => tracing::error!(sink = %name, "cannot read the outbox: {e}"),
        }
        tokio::select! {
            r = signal.changed() => if r.is_err() { break },
            _ = tick.tick() => flush(sh).await,
            _ = shutdown.changed() => break,
            Some(r) = lanes.join_next() => if let Err(e) = r {
                tracing::error!(sink = %name, "uplink lane failed: {e}");
            },
        }
    }
    while let Some(r) = lanes.join_next().await {
        if let Err(e) = r {
            tracing::error!(sink = %name, "uplink lane failed: {e}");
        }
    }
    flush(sh).await;
    tracing::info!(sink = %name, "uplink sink stopped");
}

/// Waits until the clock reaches `at`; false if shut down first.
async fn wait_until(sh: &Shared, at: OffsetDateTime, shutdown: &mut watch::Receiver<bool>) -> bool {
    loop {
        if *shutdown.borrow() {
            return false;
        }
        let now = sh.clock.now();
        if now >= at {
            return true;
        }
        let left = Duration::try_from(at - now).unwrap_or(Duration::ZERO).min(sh.policy.poll);
        tokio::select! {
            _ = tokio::time::sleep(left) => {}
            _ = shutdown.changed() => return false,
        }
    }
}

/// Delivers one camera's changes in order, for ever (until shut down).
async fn lane(
    sh: Arc<Shared>,
    cam: String,
    mut acked: i64,
    mut retry: CursorState,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut signal = sh.store.feed_signal();
    loop {
        if *shutdown.borrow() {
            return;
        }
        signal.borrow_and_update();
        let (s, c, batch) = (sh.store.clone(), cam.clone(), sh.policy.batch);
        let rows = match blocking(move || s.outbox_for_camera(&c, acked, batch)).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(sink = %sh.sink.name(), camera = %cam, "cannot read the outbox: {e}");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.changed() => return,
                }
                continue;
            }
        };
        if rows.is_empty() {
            tokio::select! {
                r = signal.changed() => if r.is_err() { return },
                _ = shutdown.changed() => return,
            }
            continue;
        }
        for row in rows {
            if !deliver_one(&sh, &row, &mut retry, &mut shutdown).await {
                return;
            }
            acked = row.seq;
        }
    }
}

/// Tries `row` until it is delivered or given up (true), or the worker stops (false).
async fn deliver_one(
    sh: &Shared,
    row: &OutboxRow,
    retry: &mut CursorState,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    let name = sh.sink.name();
    if retry.head_seq != Some(row.seq) {
        *retry = CursorState { head_seq: Some(row.seq), ..CursorState::default() };
    }
    loop {
        if let Some(at) = retry.next_attempt_at {
            if !wait_until(sh, at, shutdown).await {
                return false;
            }
        }
        let now = sh.clock.now();
        let outcome = tokio::select! {
            o = sh.sink.deliver(row, now) => o,
            _ = shutdown.changed() => return false,
        };
        let (status, error, retry_after, rejected) = match outcome {
            Outcome::Delivered => {
                if retry.attempts > 0 {
                    tracing::info!(sink = name, camera = %row.camera_id, seq = row.seq, "delivered after {} failed attempt(s)", retry.attempts);
                }
                let mut a = lock(&sh.acks);
                a.latest.insert(row.camera_id.clone(), (row.seq, sh.clock.now()));
                a.count += 1;
                *retry = CursorState::default();
                return true;
            }
            Outcome::Retry { status, error, retry_after } => (status, error, retry_after, false),
            Outcome::Rejected { status, error } => (status, error, None, true),
        };
        retry.attempts += 1;
        retry.rejections += u32::from(rejected);
        let now = sh.clock.now();
        let age = now - row.created_at;
        let give_up = if rejected && retry.rejections >= sh.policy.dead_letter_after {
            Some("rejected")
        } else if age >= sh.policy.max_retry {
            Some("expired")
        } else {
            None
        };
        if let Some(reason) = give_up {
            let (s, n, r, attempts) =
                (sh.store.clone(), name.to_string(), row.clone(), retry.attempts);
            let reason_s = reason.to_string();
            match blocking(move || s.sink_dead_letter(&n, &r, attempts, status, &reason_s, now))
                .await
            {
                Ok(()) => {
                    tracing::warn!(
                        sink = name, camera = %row.camera_id, seq = row.seq, id = %row.id, attempts = retry.attempts,
                        "change dead-lettered ({reason}): {error}"
                    );
                    *retry = CursorState::default();
                    return true;
                }
                Err(e) => {
                    tracing::error!(sink = name, seq = row.seq, "cannot record dead letter: {e}")
                }
            }
        }
        let delay = sh.policy.delay(retry.attempts, retry_after);
        let next = now + delay;
        retry.next_attempt_at = Some(next);
        if retry.attempts.is_power_of_two() {
            tracing::warn!(
                sink = name, camera = %row.camera_id, seq = row.seq, attempts = retry.attempts,
                "delivery failed: {error}; next attempt in {:.1} s", delay.as_secs_f64()
            );
        } else {
            tracing::debug!(sink = name, camera = %row.camera_id, seq = row.seq, attempts = retry.attempts, "delivery failed: {error}");
        }
        let (s, n, cam) = (sh.store.clone(), name.to_string(), row.camera_id.clone());
        let (head, attempts, rejections) = (row.seq, retry.attempts, retry.rejections);
        let res = blocking(move || {
            s.sink_failure(
                &n,
                &Failure {
                    camera_id: &cam,
                    head_seq: head,
                    attempts,
                    rejections,
                    next_attempt_at: next,
                    status,
                    error: &error,
                    at: now,
                },
            )
        })
        .await;
        if let Err(e) = res {
            tracing::error!(sink = name, seq = row.seq, "cannot record failed attempt: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap_and_honours_retry_after() {
        let p = Policy {
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(3600),
            ..Policy::default()
        };
        for attempts in 1..=40u32 {
            let base = (1u64 << (attempts - 1).min(31)).min(3600) as f64;
            for _ in 0..20 {
                let d = p.delay(attempts, None).as_secs_f64();
                assert!(
                    d >= base * 0.5 && d < base,
                    "attempt {attempts}: {d} not in [{}, {base})",
                    base * 0.5
                );
            }
        }
        assert_eq!(p.delay(1, Some(Duration::from_secs(7200))), Duration::from_secs(7200));
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(10 * 86400))),
            Duration::from_secs(86400),
            "capped"
        );
        assert!(
            p.delay(20, Some(Duration::from_secs(5))) >= Duration::from_secs(1800),
            "backoff wins over a short Retry-After"
        );
    }
}
