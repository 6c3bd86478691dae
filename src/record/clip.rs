//! Event clips (stub).

use std::collections::HashMap;

use uuid::Uuid;

use crate::config::CameraConfig;
use crate::store::Store;

/// Clips waiting for the footage after their event to be indexed.
#[derive(Default)]
pub struct Pending {
    events: Vec<Uuid>,
}

impl Pending {
    pub fn add(&mut self, event_id: Uuid, _cam: &CameraConfig) {
        self.events.push(event_id);
    }
    pub fn build_ready(&mut self, _store: &Store, _cameras: &HashMap<String, CameraConfig>) {}
}
