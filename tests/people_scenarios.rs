//! People on the shared clips through `gridwatch eval scenarios` (tests/scenarios/people.toml):
//! the labelled falls and the night presence windows (issue 14). The recall windows run in
//! `make test` and check what the detector sees; the targets (a fall within 3 s on
//! both fall clips, no fall anywhere else, the night person tracked on ≥ 80 % of the frames
//! where visible) are not met yet and are held in ignored tests (docs/performance.md).
//! Skips with a message when `../shared/media` is absent.

use std::path::PathBuf;

use gridwatch::eval::scenarios::{self, Manifest, Options, Report};

fn manifest() -> Option<Manifest> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let media = root.join("../shared/media/people");
    if !media.is_dir() {
        eprintln!("SKIP: {} is absent (shared people clips)", media.display());
        return None;
    }
    Some(Manifest::load(&root.join("tests/scenarios/people.toml")).expect("people.toml"))
}

fn run(m: &Manifest, only: &[&str]) -> Report {
    let only = only.iter().map(|s| s.to_string()).collect();
    let opts = Options { threads: 2, only, ..Options::default() };
    let report = scenarios::run(m, &opts, &mut |l| eprintln!("{l}")).expect("eval scenarios");
    print!("{}", scenarios::format_report(&report));
    report
}

/// The night IR clip's presence window: every analysed frame of it is scored, and the
/// detector finds a person in the labelled enclosure on most of them (80 of 85 at the time
/// of writing); what the tracker makes of them is the target below.
#[test]
fn night_presence_window_is_scored_on_every_frame() {
    let Some(m) = manifest() else { return };
    let r = run(&m, &["neg-night-ir-fence"]);
    let p = &r.scenarios[0].presence[0];
    // 1.0–9.4 s at 10 frames/s.
    assert!(p.frames.abs_diff(84) <= 1, "{p:?}");
    assert!(p.detected as f64 >= 0.8 * p.frames as f64, "{p:?}");
    assert!(p.tracked <= p.frames && p.tracked_fraction.is_some(), "{p:?}");
}

/// Issue 14's targets on the shared clips.
#[test]
#[ignore = "issue 14 targets not met yet (falls 0 of 2, night tracking 0 % and 59 %); see docs/performance.md"]
fn people_targets() {
    let Some(m) = manifest() else { return };
    let r = run(&m, &[]);
    let mut failures = Vec::new();
    for sc in &r.scenarios {
        for e in sc.events.iter().filter(|e| e.kind == "fall") {
            if e.matched < e.expected || e.detected > e.matched {
                failures.push(format!("{}: fall {e:?}", sc.name));
            }
            if e.time_to_alarm_secs.iter().any(|t| *t > 3.0) {
                failures.push(format!("{}: fall later than 3 s", sc.name));
            }
        }
        for p in &sc.presence {
            if p.tracked_fraction.is_none_or(|f| f < 0.8) {
                failures.push(format!("{}: tracked {:?}", sc.name, p.tracked_fraction));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("; "));
}
