//! The built-in fire and smoke detector alone (`models = ["builtin-fire"]`, shipped defaults,
//! the shipped `fire`/`smoke` rules) on the shared clips, through `gridwatch eval scenarios`
//! and the real frame path (tests/scenarios/fire.toml; onsets labelled by eye,
//! tests/scenarios/README.md). What the detector meets now is asserted; the issue's full
//! targets (every fixed-camera flame within 10 s and smoke within 30 s of onset, no false
//! alarm on any negative) are an ignored test until it meets them (docs/performance.md,
//! "Built-in fire detector"). Skips with a message when `../shared/media` is absent.

use std::path::PathBuf;

use gridwatch::eval::scenarios::{self, EventRow, Manifest, Options, Report};

fn manifest() -> Option<Manifest> {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let media = repo.join("../shared/media/fire");
    if !media.is_dir() {
        eprintln!("SKIP: {} is absent (shared fire clips)", media.display());
        return None;
    }
    Some(Manifest::load(&repo.join("tests/scenarios/fire.toml")).unwrap())
}

fn run(m: &Manifest, only: &[&str]) -> Report {
    let only = only.iter().map(|s| s.to_string()).collect();
    let opts = Options { only, threads: 1, ..Options::default() };
    let r = scenarios::run(m, &opts, &mut |l| eprintln!("{l}")).unwrap();
    eprintln!("{}", scenarios::format_report(&r));
    r
}

fn row<'a>(r: &'a Report, scenario: &str, kind: &str) -> Option<&'a EventRow> {
    r.scenarios.iter().find(|s| s.name == scenario)?.events.iter().find(|e| e.kind == kind)
}

/// Time to alarm of the one expected event of `kind`, if it was raised inside its window.
fn alarm(r: &Report, scenario: &str, kind: &str) -> Option<f64> {
    row(r, scenario, kind).and_then(|e| e.time_to_alarm_secs.first().copied())
}

fn false_alarms(r: &Report, scenario: &str) -> u32 {
    let s = r.scenarios.iter().find(|s| s.name == scenario).unwrap();
    s.events.iter().map(|e| e.detected - e.matched).sum()
}

const NEGATIVES_MET: &[&str] = &[
    "neg-sunset-sun-on-horizon-timelapse",
    "neg-traffic-city-arterial-multilane-elevated",
    "neg-traffic-congestion-city-elevated",
    "neg-traffic-highway-2lanes-toward-camera",
    "neg-traffic-highway-cctv-bothdirs-cyclist-on-shoulder",
    "neg-traffic-motorway-cctv-fog-trucks",
    "neg-traffic-motorway-cctv-tunnel-portal",
    "neg-traffic-parkinglot-overhead",
    "neg-traffic-highway-4lanes-approaching",
    "neg-people-indoor-one-by-one-standing",
    "neg-people-night-ir-cctv-fence-climbing",
    "neg-people-night-lowlight-pedestrians",
    "neg-people-plaza-overhead-crowd",
    "neg-people-street-crosswalk",
    "neg-fall-construction-cctv-fall-from-height",
    "neg-fall-gym-person-collapses-fixed",
];

/// Flames on both fixed-camera fire clips within 10 s of onset, the dollhouse smoke within
/// 30 s, and no alarm on every non-fire clip but the night-city billboards (a known false
/// alarm: video screens, see the ignored test below).
#[test]
fn builtin_fire_alarms_on_fixed_fire_clips_and_not_on_negatives() {
    let Some(m) = manifest() else { return };
    let mut only = vec!["fire-dollhouse", "fire-storage-units"];
    only.extend_from_slice(NEGATIVES_MET);
    let r = run(&m, &only);
    for (scenario, kind, within) in [
        ("fire-dollhouse", "fire", 10.0),
        ("fire-dollhouse", "smoke", 30.0),
        ("fire-storage-units", "fire", 10.0),
    ] {
        let t = alarm(&r, scenario, kind);
        assert!(t.is_some_and(|t| t <= within), "{scenario} {kind}: time to alarm {t:?}");
        assert_eq!(false_alarms(&r, scenario), 0, "{scenario}: an extra {kind} alarm");
    }
    for s in NEGATIVES_MET {
        assert_eq!(false_alarms(&r, s), 0, "{s}: false alarm");
    }
}

/// The issue's targets in full: every fixed-camera clip's flame within 10 s and smoke within
/// 30 s of its onset, and no alarm on any non-fire clip. Not met yet: the storage-unit
/// smoke (time-lapse) and the distant plume are missed, and the night-city billboards raise
/// a fire alarm (docs/performance.md).
#[test]
#[ignore = "the built-in detector does not meet every target yet (docs/performance.md)"]
fn builtin_fire_meets_the_issue_targets() {
    let Some(m) = manifest() else { return };
    let r = run(&m, &[]);
    let mut failures = Vec::new();
    for s in &r.scenarios {
        if s.name.starts_with("handheld-") {
            continue; // report only
        }
        for e in &s.events {
            let within = if e.kind == "fire" { 10.0 } else { 30.0 };
            if e.expected > 0 && !e.time_to_alarm_secs.first().is_some_and(|&t| t <= within) {
                failures.push(format!("{} {}: missed or late", s.name, e.kind));
            }
            if e.detected > e.matched {
                failures.push(format!(
                    "{} {}: {} false alarm(s)",
                    s.name,
                    e.kind,
                    e.detected - e.matched
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
