//! Shared pieces of the rules: config defaults and checks, tracks and outputs, cooldowns,
//! and the start/clear hysteresis of aggregate rules.

use std::collections::HashMap;

use time::{Duration, OffsetDateTime};

use crate::geometry::BBox;
use crate::types::{Change, Detection, Frame, RuleOutput, Severity, Track, TrackState, Tracks};

/// Serde defaults, the one convention of the rule configs: `#[serde(default = "name")]`
/// needs a path to a function, so every default value gets a named function, made by
/// `defaults! { name: Type = value; }`. Defaults several kinds share are below; a kind's
/// own ones sit in its file.
macro_rules! defaults {
    ($($name:ident: $t:ty = $v:expr;)*) => { $(pub(crate) fn $name() -> $t { $v })* };
}
pub(crate) use defaults;

defaults! {
    d0: f64 = 0.0; d1: f64 = 1.0; d2: f64 = 2.0; d3: f64 = 3.0; d5: f64 = 5.0;
    d10: f64 = 10.0; d30: f64 = 30.0; d60: f64 = 60.0;
    count5: u32 = 5;
    score04: f32 = 0.4;
    sev_info: Severity = Severity::Info;
    sev_low: Severity = Severity::Low;
    sev_medium: Severity = Severity::Medium;
    sev_high: Severity = Severity::High;
    sev_critical: Severity = Severity::Critical;
    people: Vec<String> = vec!["person".into()];
    vehicles: Vec<String> = ["car", "bus", "truck", "motorcycle"].map(String::from).to_vec();
}

/// Checks `name ≥ 0` (and finite) for each `(name, value)`; `(field, message)` on error.
pub fn non_negative(fields: &[(&str, f64)]) -> Result<(), (String, String)> {
    for (name, v) in fields {
        if !(v.is_finite() && *v >= 0.0) {
            return Err((name.to_string(), format!("must be a number ≥ 0, got {v}")));
        }
    }
    Ok(())
}

/// Checks that `classes` lists at least one class and no empty name.
pub fn classes_non_empty(c: &[String]) -> Result<(), (String, String)> {
    if c.is_empty() || c.iter().any(|s| s.trim().is_empty()) {
        return Err(("classes".into(), "list at least one class (no empty names)".into()));
    }
    Ok(())
}

pub fn secs(s: f64) -> Duration {
    Duration::seconds_f64(s)
}

/// Whether two boxes show the same person (`fall`, `person_down`: one event per person
/// down): they share at least half of the smaller one.
pub fn same_place(a: &BBox, b: &BBox) -> bool {
    a.intersection(b) >= 0.5 * a.area().min(b.area())
}

/// Tracks matched on this frame (confirmed, not lost) whose class is in `classes`
/// (every class when `classes` is empty). Tracks with a non-finite box are skipped.
pub fn observed<'t>(t: &'t Tracks, classes: &[String]) -> Vec<&'t Track> {
    t.tracks
        .iter()
        .filter(|tr| {
            let b = &tr.bbox;
            tr.state == TrackState::Tracked
                && [b.x1, b.y1, b.x2, b.y2].iter().all(|v| v.is_finite())
                && (classes.is_empty() || classes.iter().any(|c| c == &tr.class))
        })
        .collect()
}

/// A track as an event object (class, score, box, track id, and its pose's keypoints).
pub fn object(t: &Track) -> Detection {
    Detection {
        class_id: t.class_id,
        class: t.class.clone(),
        score: t.score,
        bbox: t.bbox,
        track_id: Some(t.id),
        // The track's latest pose (pose stage), drawn on the event's snapshot.
        keypoints: t.pose.as_ref().map(|p| p.keypoints.clone()),
    }
}

/// Builds a rule output. Rules should construct outputs only through this (and
/// `RuleOutput::with_detail`), so fields added to `RuleOutput` later get their defaults.
/// The rule id, zone and line of the event are filled in by the `RuleEngine`.
pub fn output(
    kind: &str,
    severity: Severity,
    key: u64,
    change: Change,
    at: OffsetDateTime,
    objects: Vec<Detection>,
    snapshot: Option<&Frame>,
) -> RuleOutput {
    RuleOutput {
        key,
        change,
        kind: kind.into(),
        severity,
        at,
        objects,
        snapshot: snapshot.cloned(),
        detail: None,
    }
}

/// No new event for a key until `secs` after the previous event of that key ended. Checked
/// on the frame where the event would start, so a condition that outlasts the cooldown
/// still raises its event then (with its original start time).
#[derive(Debug, Clone)]
pub struct Cooldown {
    secs: f64,
    ended: HashMap<u64, OffsetDateTime>,
}

impl Cooldown {
    pub fn new(secs: f64) -> Self {
        Cooldown { secs, ended: HashMap::new() }
    }
    pub fn allows(&self, key: u64, now: OffsetDateTime) -> bool {
        self.ended.get(&key).is_none_or(|e| now - *e >= secs(self.secs))
    }
    pub fn ended(&mut self, key: u64, at: OffsetDateTime) {
        if self.secs > 0.0 {
            self.ended.insert(key, at);
        }
    }
    /// Reports that per-track incident `key` of a rule ended at `at` (with its last object)
    /// and starts the key's cooldown.
    pub fn end(
        &mut self,
        (kind, severity): (&str, Severity),
        key: u64,
        at: OffsetDateTime,
        obj: Detection,
        out: &mut Vec<RuleOutput>,
    ) {
        out.push(output(kind, severity, key, Change::Ended, at, vec![obj], None));
        self.ended(key, at);
    }
    /// Forgets keys whose cooldown has passed.
    pub fn prune(&mut self, now: OffsetDateTime) {
        let d = secs(self.secs);
        self.ended.retain(|_, e| now - *e < d);
    }
}

/// Start/clear hysteresis of an aggregate condition (crowd, congestion): starts when the
/// condition has held for `min_secs` (any false frame resets that), ends when it has been
/// false for `clear_secs` (any true frame resets that). The event runs from the first
/// frame of the run to the last frame the condition held. One event at a time; `key`
/// increases per episode.
#[derive(Debug, Default)]
pub struct Episode {
    since: Option<OffsetDateTime>,
    last_true: Option<OffsetDateTime>,
    false_since: Option<OffsetDateTime>,
    pub active: bool,
    pub key: u64,
}

impl Episode {
    pub fn step(
        &mut self,
        cond: bool,
        now: OffsetDateTime,
        min_secs: f64,
        clear_secs: f64,
        cooldown: &mut Cooldown,
    ) -> Option<(Change, OffsetDateTime)> {
        if cond {
            self.false_since = None;
            self.last_true = Some(now);
            let since = *self.since.get_or_insert(now);
            if !self.active && now - since >= secs(min_secs) && cooldown.allows(0, now) {
                self.active = true;
                self.key += 1;
                return Some((Change::Started, since));
            }
        } else if self.active {
            let fs = *self.false_since.get_or_insert(now);
            if now - fs >= secs(clear_secs) {
                let end = self.last_true.unwrap_or(fs);
                self.reset();
                cooldown.ended(0, end);
                return Some((Change::Ended, end));
            }
        } else {
            self.since = None;
        }
        None
    }

    /// Ends an open episode (shutdown); returns its end time.
    pub fn finish(&mut self, at: OffsetDateTime) -> Option<OffsetDateTime> {
        let out = self.active.then(|| self.last_true.unwrap_or(at));
        self.reset();
        out
    }

    fn reset(&mut self) {
        self.active = false;
        self.since = None;
        self.last_true = None;
        self.false_since = None;
    }
}
