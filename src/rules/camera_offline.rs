//! `camera_offline`: events from the camera's source health, not from frames. The app's
//! health watch (`analytics::watch_health`, twice a second) hands each camera's health to its
//! rule engine as a `HealthTick`. An event starts once the camera has been offline for ≥
//! `offline_secs` — counted from the first time it went offline; reconnect attempts
//! (`connecting`) in between do not restart the count — and ends when the camera is `online`
//! again (end: the time it came back). The snapshot is the camera's last frame before the
//! outage, if it sent any. The event's one object carries the camera's last error as its
//! `class` (box: the whole frame, score 1). A camera that never came online (e.g. a missing
//! file) counts as offline from its first failure. On shutdown an open event is ended at the
//! shutdown time.

use serde::Deserialize;
use time::OffsetDateTime;

use super::common::{d10, non_negative, output, secs, sev_high};
use super::{Rule, RuleSpec, Scene};
use crate::geometry::BBox;
use crate::types::{CameraState, Change, Detection, HealthTick, RuleOutput, Severity, Tracks};

pub const KIND: &str = "camera_offline";

/// `camera_offline`: the camera has been offline ≥ `offline_secs`.
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
        Box::new(CameraOffline { cfg: self.clone(), down_since: None, open: false })
    }
}

/// Offline tracking of one camera (one incident at a time, key 0).
pub struct CameraOffline {
    cfg: CameraOfflineRule,
    down_since: Option<OffsetDateTime>,
    open: bool,
}

impl CameraOffline {
    fn output(
        &self,
        change: Change,
        at: OffsetDateTime,
        why: &str,
        h: Option<&HealthTick>,
    ) -> RuleOutput {
        let object = Detection {
            class_id: 0,
            class: why.into(),
            score: 1.0,
            bbox: BBox { x1: 0.0, y1: 0.0, x2: 1.0, y2: 1.0 },
            track_id: None,
            keypoints: None,
        };
        let snapshot = h.and_then(|h| h.latest.as_ref());
        output(KIND, self.cfg.severity, 0, change, at, vec![object], snapshot)
    }
}

impl Rule for CameraOffline {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn on_frame(&mut self, _t: &Tracks, _out: &mut Vec<RuleOutput>) {}

    fn watches_health(&self) -> bool {
        true
    }

    fn on_health(&mut self, h: &HealthTick, out: &mut Vec<RuleOutput>) {
        match h.state {
            CameraState::Online => {
                self.down_since = None;
                if std::mem::take(&mut self.open) {
                    out.push(self.output(Change::Ended, h.since, "online again", None));
                }
            }
            CameraState::Offline => {
                let since = *self.down_since.get_or_insert(h.since);
                if !self.open && h.now - since >= secs(self.cfg.offline_secs) {
                    self.open = true;
                    let why = h.last_error.as_deref().unwrap_or("offline");
                    out.push(self.output(Change::Started, since, why, Some(h)));
                }
            }
            CameraState::Connecting | CameraState::Disabled => {}
        }
    }

    fn finish(&mut self, at: OffsetDateTime, out: &mut Vec<RuleOutput>) {
        if std::mem::take(&mut self.open) {
            out.push(self.output(Change::Ended, at, "appliance stopped", None));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::RuleEngine;

    const CFG: &str =
        "box_id='b'\ndata_dir='/tmp'\n[models]\n[[cameras]]\nid='c'\nurl='x.mp4'\nmodels=[]\n\
         enabled=false\n[[cameras.rules]]\nkind='camera_offline'\noffline_secs=0.3\n";

    fn tick(
        state: CameraState,
        since: OffsetDateTime,
        err: Option<&str>,
        now: OffsetDateTime,
    ) -> HealthTick {
        HealthTick { state, since, last_error: err.map(Into::into), latest: None, now }
    }

    #[test]
    fn offline_long_enough_starts_and_online_ends() {
        let cfg = crate::config::Config::parse(CFG, std::path::Path::new("/")).unwrap();
        let mut engine = RuleEngine::new(&cfg.cameras[0]);
        assert!(engine.watches_health());
        let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let s = |x: f64| t0 + time::Duration::seconds_f64(x);
        let mut step = |state, since, err, now| engine.health(&tick(state, since, err, now));
        assert!(step(CameraState::Online, s(0.0), None, s(0.0)).is_empty());
        // A short outage (reconnect in between) raises nothing.
        assert!(step(CameraState::Offline, s(1.0), Some("boom"), s(1.1)).is_empty());
        assert!(step(CameraState::Online, s(1.2), None, s(1.2)).is_empty());
        // Offline at 2.0, connecting again at 2.2 (since restamped), offline again: counts from 2.0.
        assert!(step(CameraState::Offline, s(2.0), Some("refused"), s(2.1)).is_empty());
        assert!(step(CameraState::Connecting, s(2.2), Some("refused"), s(2.2)).is_empty());
        let c = step(CameraState::Offline, s(2.25), Some("refused again"), s(2.35)).remove(0);
        assert_eq!((c.change, c.kind.as_str(), c.at), (Change::Started, KIND, s(2.0)));
        assert_eq!(c.objects[0].class, "refused again");
        assert_eq!(c.rule.as_deref(), Some("camera_offline#0"));
        assert!(step(CameraState::Offline, s(2.25), Some("x"), s(5.0)).is_empty(), "one event");
        let e = step(CameraState::Online, s(6.0), None, s(6.1)).remove(0);
        assert_eq!((e.event_id, e.change, e.at), (c.event_id, Change::Ended, s(6.0)));
        assert!(engine.finish(s(7.0)).is_empty());
    }
}
