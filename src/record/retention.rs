//! Retention (stub; see the issue-4 plan in docs/storage.md).

use std::collections::HashMap;
use std::sync::Arc;

use super::clock::Clock;
use super::RecordGate;
use crate::config::Config;
use crate::store::Store;

pub struct Retention {
    _store: Store,
    _clock: Arc<dyn Clock>,
    _gates: HashMap<String, RecordGate>,
}

impl Retention {
    pub fn new(_cfg: &Config, store: Store, clock: Arc<dyn Clock>, gates: HashMap<String, RecordGate>) -> Self {
        Retention { _store: store, _clock: clock, _gates: gates }
    }

    /// One pass: age limits, event media retention, disk budget, storage_full alarm.
    pub fn run(&mut self) {}
}
