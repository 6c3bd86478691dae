//! What a delivery path implements. The worker (`uplink::worker`) owns everything else:
//! reading the outbox, per-camera ordering, retries with backoff, dead letters, cursors.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use time::OffsetDateTime;

use crate::store::outbox::OutboxRow;

/// The result of one delivery attempt of one change.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Acknowledged (HTTP 2xx, MQTT PUBACK): the change is done for this sink.
    Delivered,
    /// A transient failure (connection refused, timeout, 408, 429, 5xx, broker away): try
    /// again later; `retry_after` is the receiver's wish (HTTP `Retry-After`), if any.
    Retry { status: Option<u16>, error: String, retry_after: Option<Duration> },
    /// The receiver refused this change (a 4xx other than 408/429): tried a few times,
    /// then dead-lettered.
    Rejected { status: Option<u16>, error: String },
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One delivery target. `deliver` is called for one change at a time per camera (a camera's
/// next change only after this one is `Delivered` or given up), concurrently for different
/// cameras. It must bound its own duration (timeouts) and never panic on receiver input.
pub trait Sink: Send + Sync + 'static {
    /// Unique name (the delivery state is stored under it).
    fn name(&self) -> &str;
    /// `webhook`, `mqtt`, …
    fn kind(&self) -> &'static str;
    /// Where it delivers, safe to show and log (no credentials).
    fn target(&self) -> String;
    /// Makes one attempt at `now` (the worker's clock) to deliver `row`.
    fn deliver<'a>(&'a self, row: &'a OutboxRow, now: OffsetDateTime) -> BoxFuture<'a, Outcome>;
    /// Called once by the worker when it starts, on the uplink runtime, before any `deliver`
    /// (a sink with a standing connection starts it here). Default: nothing.
    fn open(&self) {}
    /// Called once by the worker when it stops, after the last `deliver`; bounded (a sink
    /// with a standing connection says goodbye and closes it here). Default: nothing.
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}
