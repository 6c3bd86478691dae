//! `camera_offline`: the config block and the frame-side face of the rule. Its events come
//! from ingest health, not frames: `offline::OfflineWatch` raises them (see `rules::offline`).

use serde::Deserialize;
use time::OffsetDateTime;

use super::common::{d10, non_negative, sev_high};
use super::{Rule, RuleSpec, Scene};
use crate::types::{RuleOutput, Severity, Tracks};

pub const KIND: &str = "camera_offline";

/// `camera_offline`: the camera has been offline ≥ `offline_secs` (from ingest health, not
/// frames; see `rules::offline`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraOfflineRule {
    #[serde(default = "d10")]
    pub offline_secs: f64,
    #[serde(default = "sev_high")]
    pub severity: Severity,
}

impl RuleSpec for CameraOfflineRule {
    const KIND: &'static str = KIND;

    fn validate(&self) -> Result<(), (String, String)> {
        non_negative(&[("offline_secs", self.offline_secs)])
    }

    fn build(&self, _scene: &Scene) -> Box<dyn Rule> {
        Box::new(CameraOffline)
    }
}

/// The frame-side face of the rule: it sees no frames (see `OfflineWatch`).
pub struct CameraOffline;

impl Rule for CameraOffline {
    fn kind(&self) -> &'static str {
        KIND
    }
    fn on_frame(&mut self, _t: &Tracks, _out: &mut Vec<RuleOutput>) {}
    fn finish(&mut self, _at: OffsetDateTime, _out: &mut Vec<RuleOutput>) {}
}
