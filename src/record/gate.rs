//! The switch that retention uses to pause a camera's recording when the disk is full.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Open/closed switch of one camera's record branch. Closed drops new footage (the disk is
/// full and nothing can be evicted); on reopening, recording resumes at the next keyframe.
#[derive(Debug, Clone)]
pub struct RecordGate(Arc<AtomicBool>);

impl Default for RecordGate {
    fn default() -> Self {
        RecordGate(Arc::new(AtomicBool::new(true)))
    }
}

impl RecordGate {
    pub fn is_open(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
    pub fn set_open(&self, open: bool) {
        self.0.store(open, Ordering::Relaxed);
    }
}
