//! The per-track incident lifecycle shared by the rules that raise one event per track
//! (intrusion, loitering, stalled_vehicle, wrong_way, fall). The rule only decides, per
//! track and frame, what its condition says (`Step`); `PerTrack` keeps each track's slot
//! and does the rest:
//!
//! * **start**: once the condition has held for `min_secs` (since the time the rule gives)
//!   and the track's cooldown allows it; the event starts at that time, with the frame as
//!   snapshot;
//! * **end**: when the condition breaks or the track leaves (`Step::Broken`, `Step::Left`);
//!   the end time is always the last frame the condition held;
//! * **lost tracks**: at the start of every frame, before its observations, a track not
//!   seen for too long (`Forget`) is dropped and its event ends; a track found again after
//!   that starts over (a new event, subject to the cooldown);
//! * **shutdown** (`finish`): every open event ends at the last frame its condition held;
//! * **cooldown**: after an event of a track ended, none starts for that track until
//!   `cooldown_secs` later;
//! * **detail**: the rule's fixed figures (`with_detail`, e.g. the speed rule's limit) and,
//!   on cameras with a ground-plane calibration, the track's ground speed over the frames
//!   the condition held: `speed_kmh` (mean) and `max_speed_kmh`, at the start (so far) and
//!   at the end (the whole event). No figures, no detail.

use std::collections::BTreeMap;

use time::OffsetDateTime;

use super::common::{object, output, secs, Cooldown};
use crate::types::TrackState;
use crate::types::{Change, Detection, Frame, RuleOutput, Severity, Track};

/// What a rule's condition says about one track on one frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Step {
    /// The condition holds, and has held since `since` (the event's start time). The event
    /// starts once it has held `min_secs`, `ready` is true and the cooldown allows it.
    Holds { since: OffsetDateTime, ready: bool },
    /// The condition does not hold: an open event ends; the track stays watched.
    Broken,
    /// The track left what the rule watches (e.g. its zone): an open event ends and the
    /// track's state is dropped.
    Left,
    /// Seen, but nothing to decide on this frame (e.g. the first sighting of a motion rule).
    Idle,
    /// Not an observation for this rule (e.g. too low a score, outside the zone for
    /// loitering): as if the track had not been seen on this frame.
    Skip,
}

impl Step {
    /// The condition holds since `since`, with nothing else to wait for.
    pub fn holds(since: OffsetDateTime) -> Step {
        Step::Holds { since, ready: true }
    }
}

/// When a track not seen for a while is dropped (its event ending).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Forget {
    /// Not seen for `clear_secs` or longer.
    After(f64),
    /// Not seen for longer than `max_gap_secs` (gaps up to it are tolerated; loitering).
    GapOver(f64),
}

/// One track's slot: the rule's own state `S` plus the lifecycle.
struct Slot<S> {
    state: S,
    active: bool,
    last_seen: OffsetDateTime,
    /// The last frame the condition held: the end time of its event.
    last_true: OffsetDateTime,
    obj: Detection,
    /// Ground speeds (km/h) of the frames of the current run of the condition.
    speed: SpeedStats,
}

/// Mean and maximum of a run's ground speeds.
#[derive(Debug, Clone, Copy, Default)]
struct SpeedStats {
    sum: f64,
    n: u32,
    max: f32,
}

impl SpeedStats {
    fn add(&mut self, v: Option<f32>) {
        if let Some(v) = v.filter(|v| v.is_finite()) {
            self.sum += v as f64;
            self.n += 1;
            self.max = if self.n == 1 { v } else { self.max.max(v) };
        }
    }
}

/// Per-track incidents of one rule, keyed by track id (the incident key).
pub struct PerTrack<S> {
    kind: &'static str,
    severity: Severity,
    min_secs: f64,
    forget: Forget,
    tracks: BTreeMap<u64, Slot<S>>,
    cooldown: Cooldown,
    /// The rule's fixed figures, in every event's detail.
    base: Option<serde_json::Map<String, serde_json::Value>>,
}

impl<S: Default> PerTrack<S> {
    pub fn new(
        kind: &'static str,
        severity: Severity,
        min_secs: f64,
        forget: Forget,
        cooldown_secs: f64,
    ) -> Self {
        PerTrack {
            kind,
            severity,
            min_secs,
            forget,
            tracks: BTreeMap::new(),
            cooldown: Cooldown::new(cooldown_secs),
            base: None,
        }
    }

    /// Adds the rule's fixed figures (a JSON object) to every event's detail.
    pub fn with_detail(mut self, base: serde_json::Value) -> Self {
        self.base = base.as_object().cloned();
        self
    }

    /// The event detail: the fixed figures and the run's speeds, `None` without either.
    fn detail(&self, s: &SpeedStats) -> Option<serde_json::Value> {
        let mut d = self.base.clone().unwrap_or_default();
        if s.n > 0 {
            let mean = (s.sum / s.n as f64) as f32;
            d.insert("speed_kmh".into(), serde_json::json!(round1(mean)));
            d.insert("max_speed_kmh".into(), serde_json::json!(round1(s.max)));
        }
        (!d.is_empty()).then_some(serde_json::Value::Object(d))
    }

    /// Runs one frame: drops lost tracks, then asks `cond(track, state, active)` about each
    /// of `tracks` (the rule's candidates on this frame, in order) and applies its answer.
    /// A track's state starts as `S::default()` on its first sighting; `active` tells
    /// whether its event is open.
    pub fn on_frame<'t>(
        &mut self,
        frame: &Frame,
        tracks: impl IntoIterator<Item = &'t Track>,
        out: &mut Vec<RuleOutput>,
        mut cond: impl FnMut(&Track, &mut S, bool) -> Step,
    ) {
        let now = frame.captured_at;
        self.forget_lost(now, out);
        for tr in tracks {
            let step = match self.tracks.get_mut(&tr.id) {
                Some(slot) => {
                    let step = cond(tr, &mut slot.state, slot.active);
                    if step == Step::Skip {
                        continue;
                    }
                    slot.last_seen = now;
                    slot.obj = object(tr);
                    step
                }
                None => {
                    let mut state = S::default();
                    let step = cond(tr, &mut state, false);
                    if matches!(step, Step::Skip | Step::Left) {
                        continue; // nothing to end, nothing to keep
                    }
                    let slot = Slot {
                        state,
                        active: false,
                        last_seen: now,
                        last_true: now,
                        obj: object(tr),
                        speed: SpeedStats::default(),
                    };
                    self.tracks.insert(tr.id, slot);
                    step
                }
            };
            let speed = (tr.state == TrackState::Tracked).then_some(tr.speed_kmh).flatten();
            self.apply(tr.id, step, speed, frame, out);
        }
        self.cooldown.prune(now);
    }

    /// Ends every open event (shutdown) at the last frame its condition held.
    pub fn finish(&mut self, out: &mut Vec<RuleOutput>) {
        for (id, slot) in std::mem::take(&mut self.tracks) {
            self.end(id, slot, out);
        }
    }

    fn forget_lost(&mut self, now: OffsetDateTime, out: &mut Vec<RuleOutput>) {
        let lost = |last_seen: OffsetDateTime| match self.forget {
            Forget::After(s) => now - last_seen >= secs(s),
            Forget::GapOver(s) => now - last_seen > secs(s),
        };
        let gone: Vec<u64> =
            self.tracks.iter().filter(|(_, s)| lost(s.last_seen)).map(|(id, _)| *id).collect();
        for id in gone {
            if let Some(slot) = self.tracks.remove(&id) {
                self.end(id, slot, out);
            }
        }
    }

    fn apply(
        &mut self,
        id: u64,
        step: Step,
        speed: Option<f32>,
        frame: &Frame,
        out: &mut Vec<RuleOutput>,
    ) {
        let now = frame.captured_at;
        match step {
            Step::Holds { since, ready } => {
                let Some(slot) = self.tracks.get_mut(&id) else { return };
                slot.last_true = now;
                slot.speed.add(speed);
                if !slot.active
                    && ready
                    && now - since >= secs(self.min_secs)
                    && self.cooldown.allows(id, now)
                {
                    slot.active = true;
                    let objects = vec![slot.obj.clone()];
                    let stats = slot.speed;
                    let mut o = output(
                        self.kind,
                        self.severity,
                        id,
                        Change::Started,
                        since,
                        objects,
                        Some(frame),
                    );
                    o.detail = self.detail(&stats);
                    out.push(o);
                }
            }
            Step::Broken => {
                let Some(slot) = self.tracks.get_mut(&id) else { return };
                let stats = std::mem::take(&mut slot.speed);
                if slot.active {
                    slot.active = false;
                    let (at, obj) = (slot.last_true, slot.obj.clone());
                    self.end_event(id, at, obj, &stats, out);
                }
            }
            Step::Left => {
                if let Some(slot) = self.tracks.remove(&id) {
                    self.end(id, slot, out);
                }
            }
            Step::Idle | Step::Skip => {}
        }
    }

    /// Ends `slot`'s event if it is open.
    fn end(&mut self, id: u64, slot: Slot<S>, out: &mut Vec<RuleOutput>) {
        if slot.active {
            self.end_event(id, slot.last_true, slot.obj, &slot.speed, out);
        }
    }

    /// Reports the end of track `id`'s event at `at` and starts its cooldown.
    fn end_event(
        &mut self,
        id: u64,
        at: OffsetDateTime,
        obj: Detection,
        stats: &SpeedStats,
        out: &mut Vec<RuleOutput>,
    ) {
        let mut o = output(self.kind, self.severity, id, Change::Ended, at, vec![obj], None);
        o.detail = self.detail(stats);
        out.push(o);
        self.cooldown.ended(id, at);
    }
}

/// `v` rounded to 0.1 (km/h in event details).
pub fn round1(v: f32) -> f64 {
    (v as f64 * 10.0).round() / 10.0
}
