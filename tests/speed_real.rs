//! Ground speed on a real clip (tests/scenarios/speed.toml; method and numbers in
//! tests/scenarios/README.md, "Speed"): every vehicle whose speed was measured by hand from
//! the lane markings crosses its lane's line once in the box's counts, and the box's ground
//! speed of that crossing is within the issue's ±10 % of the hand reference in the lanes the
//! calibration covers (2 and 3; lane 1 lies outside it, on a banked curve, and is printed). Runs through
//! the real frame path (`eval scenarios`: NanoDet-g, tracker, rules, calibration). Skips with
//! a message when `../shared/media` is absent.

use std::path::PathBuf;

use gridwatch::eval::scenarios::{self, Manifest, Options};

/// Hand reference (tests/scenarios/README.md, "Speed"): vehicle, lane line it crosses, the
/// video time its lowest point crosses the line's row (y = 0.75), and its speed in km/h from
/// the times it passed the near ends of the lane markings (10 ft dashes, 40 ft cycles).
const REFERENCE: &[(&str, &str, f64, f64)] = &[
    ("A", "lane3", 1.04, 97.1),
    ("B", "lane1", 1.42, 89.2),
    ("C", "lane3", 3.01, 103.9),
    ("D", "lane1", 3.83, 84.0),
    ("E", "lane2", 4.22, 99.9),
    ("F", "lane3", 5.13, 104.0),
];

#[test]
fn ground_speed_within_ten_percent_of_the_hand_reference() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let media = repo.join("../shared/media/traffic");
    if !media.is_dir() {
        eprintln!("SKIP: {} is absent (shared traffic clips)", media.display());
        return;
    }
    let m = Manifest::load(&repo.join("tests/scenarios/speed.toml")).unwrap();
    let report = scenarios::run(&m, &Options { threads: 2, ..Options::default() }, &mut |l| {
        eprintln!("{l}")
    })
    .unwrap();
    print!("{}", scenarios::format_report(&report));
    let speeds = &report.scenarios[0].speeds;
    let mut worst = 0.0f64;
    for (vehicle, line, at, want) in REFERENCE {
        let got: Vec<_> =
            speeds.iter().filter(|c| &c.line == line && (c.at_secs - at).abs() < 0.4).collect();
        assert_eq!(got.len(), 1, "vehicle {vehicle}: crossings of {line} near {at} s: {got:?}");
        let err = (got[0].speed_kmh as f64 - want) / want;
        println!(
            "vehicle {vehicle}: box {:.1} km/h, hand {want} km/h, {:+.1} %",
            got[0].speed_kmh,
            err * 100.0
        );
        if *line == "lane1" {
            // Outside the calibrated quadrilateral (lanes 2 and 3), on a road that banks into
            // a curve: reported, not held to the target (README "Speed").
            continue;
        }
        worst = worst.max(err.abs());
        assert!(err.abs() <= 0.10, "vehicle {vehicle}: {} km/h vs {want} km/h", got[0].speed_kmh);
    }
    println!("largest deviation inside the calibrated lanes: {:.1} %", worst * 100.0);
}
