use super::*;
use crate::types::BBox;

fn t(secs: f64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap() + time::Duration::seconds_f64(secs)
}

fn det(class: &str, score: f32, x1: f32, y1: f32, w: f32, h: f32) -> Detection {
    let class_id = if class == "person" { 0 } else { 2 };
    Detection {
        class_id,
        class: class.into(),
        score,
        bbox: BBox { x1, y1, x2: x1 + w, y2: y1 + h },
        track_id: None,
        keypoints: None,
    }
}

fn ids(tr: &[Track]) -> Vec<u64> {
    tr.iter().map(|t| t.id).collect()
}

/// The track whose box is nearest to `x1` (left edge).
fn id_near(tr: &[Track], x1: f32) -> u64 {
    tr.iter()
        .min_by(|a, b| (a.bbox.x1 - x1).abs().total_cmp(&(b.bbox.x1 - x1).abs()))
        .map(|t| t.id)
        .unwrap()
}

#[test]
fn first_frame_confirms_later_tracks_need_min_hits() {
    let mut tr = Tracker::new(TrackerConfig::default());
    let out = tr.update(&[det("person", 0.9, 0.1, 0.1, 0.1, 0.2)], t(0.0));
    assert_eq!(ids(&out), vec![1]);
    assert_eq!(out[0].state, TrackState::Tracked);
    // A new object on frame 2 is tentative (not reported), confirmed on frame 3.
    let two = [det("person", 0.9, 0.1, 0.1, 0.1, 0.2), det("person", 0.9, 0.6, 0.1, 0.1, 0.2)];
    assert_eq!(ids(&tr.update(&two, t(0.1))), vec![1]);
    let out = tr.update(&two, t(0.2));
    assert_eq!(ids(&out), vec![1, 2]);
    assert_eq!(out[1].first_seen, t(0.1));
    assert_eq!(out[1].hits, 2);
}

/// The motion gate's question: a tentative track or a lost one is unsure; confirmed tracks
/// matched on the frame are not; a weak day-born tentative track does not count.
#[test]
fn unsettled_while_a_track_is_tentative_or_lost() {
    let mut tr = Tracker::new(TrackerConfig::default());
    assert!(!tr.unsettled(), "empty");
    let a = det("person", 0.9, 0.1, 0.1, 0.1, 0.2);
    tr.update(std::slice::from_ref(&a), t(0.0));
    assert!(!tr.unsettled(), "confirmed on the first frame");
    let b = det("person", 0.9, 0.6, 0.1, 0.1, 0.2);
    tr.update(&[a.clone(), b.clone()], t(0.1));
    assert!(tr.unsettled(), "b is tentative");
    tr.update(&[a.clone(), b], t(0.2));
    assert!(!tr.unsettled(), "b confirmed");
    tr.update(std::slice::from_ref(&a), t(0.3));
    assert!(tr.unsettled(), "b lost");
    tr.update(std::slice::from_ref(&a), t(3.0));
    assert!(!tr.unsettled(), "b ended after track_buffer_secs");
    // A weak birth (below new_track_score, allowed everywhere) in daylight.
    let cfg = TrackerConfig { weak_births: WeakBirths::Everywhere, ..TrackerConfig::default() };
    let mut tr = Tracker::new(cfg);
    tr.update(std::slice::from_ref(&a), t(0.0));
    tr.update(&[a.clone(), det("person", 0.4, 0.6, 0.1, 0.1, 0.2)], t(0.1));
    assert!(!tr.unsettled(), "a weak day-born tentative track is left to motion");
}

#[test]
fn crossing_objects_keep_their_ids() {
    let mut tr = Tracker::new(TrackerConfig::default());
    let (mut id_a, mut id_b) = (0, 0);
    // A moves right, B moves left, 0.5 /s at 10 fps; their boxes overlap heavily (IoU 0.6)
    // when they pass each other around frame 8.
    for k in 0..=16 {
        let xa = 0.1 + 0.05 * k as f32;
        let xb = 0.9 - 0.05 * k as f32;
        let out = tr.update(
            &[det("person", 0.9, xa, 0.40, 0.1, 0.2), det("person", 0.85, xb, 0.45, 0.1, 0.2)],
            t(k as f64 * 0.1),
        );
        assert_eq!(out.len(), 2, "frame {k}: {out:?}");
        let a = out.iter().find(|x| (x.bbox.y1 - 0.40).abs() < 0.02).unwrap().id;
        let b = out.iter().find(|x| (x.bbox.y1 - 0.45).abs() < 0.02).unwrap().id;
        if k == 0 {
            (id_a, id_b) = (a, b);
            assert_ne!(a, b);
        }
        assert_eq!((a, b), (id_a, id_b), "ids swapped at frame {k}");
    }
    let out = tr.update(&[det("person", 0.9, 0.95, 0.40, 0.1, 0.2)], t(1.7));
    let v = out.iter().find(|x| x.id == id_a).unwrap().velocity;
    assert!((v.0 - 0.5).abs() < 0.1 && v.1.abs() < 0.05, "velocity {v:?}");
}

#[test]
fn missed_detections_keep_the_id() {
    let mut tr = Tracker::new(TrackerConfig::default());
    let mut id = None;
    for k in 0..30 {
        let x = 0.05 + 0.02 * k as f32;
        // Not detected on frames 10–17 (0.8 s at 10 fps, within the 2 s buffer).
        let dets = if (10..18).contains(&k) {
            vec![]
        } else {
            vec![det("person", 0.9, x, 0.3, 0.08, 0.2)]
        };
        let out = tr.update(&dets, t(k as f64 * 0.1));
        if dets.is_empty() {
            assert!(out.is_empty(), "lost tracks are not reported by default");
        } else {
            assert_eq!(out.len(), 1);
            assert_eq!(*id.get_or_insert(out[0].id), out[0].id, "frame {k}");
            assert_eq!(out[0].state, TrackState::Tracked);
        }
    }
}

#[test]
fn lost_tracks_are_reported_when_configured() {
    let cfg = TrackerConfig { report_lost_secs: 0.5, ..TrackerConfig::default() };
    let mut tr = Tracker::new(cfg);
    tr.update(&[det("car", 0.9, 0.1, 0.1, 0.2, 0.1)], t(0.0));
    let out = tr.update(&[], t(0.3));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].state, TrackState::Lost);
    assert_eq!(out[0].last_seen, t(0.0));
    assert!(tr.update(&[], t(0.9)).is_empty());
    assert_eq!(tr.confirmed(), 1, "still held within the buffer");
}

#[test]
fn low_score_detection_keeps_occluded_track_alive() {
    let run = |second_stage: bool| {
        let cfg = TrackerConfig {
            low_score: if second_stage { 0.1 } else { 0.5 },
            track_buffer_secs: 1.0,
            ..TrackerConfig::default()
        };
        let mut tr = Tracker::new(cfg);
        let mut seen = Vec::new();
        for k in 0..60 {
            // Partly occluded (score 0.3) from frame 10 to 39: 3 s, longer than the buffer.
            let s = if (10..40).contains(&k) { 0.3 } else { 0.9 };
            let out = tr.update(
                &[det("person", s, 0.2 + 0.005 * k as f32, 0.3, 0.1, 0.25)],
                t(k as f64 * 0.1),
            );
            seen.push(out.first().map(|x| x.id));
        }
        seen
    };
    let with = run(true);
    assert!(with.iter().all(|x| *x == Some(1)), "{with:?}");
    let without = run(false);
    assert!(without[20].is_none(), "without the second stage the occluded object is not tracked");
    assert!(without[59].is_some_and(|id| id > 1), "…and comes back under a new id: {without:?}");
}

#[test]
fn classes_do_not_swap() {
    let mut tr = Tracker::new(TrackerConfig::default());
    let out = tr.update(
        &[det("person", 0.9, 0.3, 0.5, 0.08, 0.2), det("car", 0.9, 0.5, 0.5, 0.2, 0.15)],
        t(0.0),
    );
    let (p, c) = (id_near(&out, 0.3), id_near(&out, 0.5));
    // The person walks into the car's box while the car is not detected: the person track
    // no person detection may be matched to the car track.
    for k in 1..10 {
        let x = 0.3 + 0.03 * k as f32;
        let mut dets = vec![det("person", 0.9, x, 0.5, 0.08, 0.2)];
        if k < 5 {
            dets.push(det("car", 0.9, 0.5, 0.5, 0.2, 0.15));
        }
        let out = tr.update(&dets, t(k as f64 * 0.1));
        for tk in &out {
            if tk.id == p {
                assert_eq!(tk.class, "person");
            }
            if tk.id == c {
                assert_eq!(tk.class, "car");
                assert!(k < 5, "car track matched a person detection at frame {k}");
            }
        }
        assert!(out.iter().any(|tk| tk.id == p), "person lost at frame {k}");
    }
    // A person detection exactly on a lost car track starts a new track, not the car's id.
    let mut tr = Tracker::new(TrackerConfig { min_hits: 1, ..TrackerConfig::default() });
    tr.update(&[det("car", 0.9, 0.5, 0.5, 0.2, 0.15)], t(0.0));
    let out = tr.update(&[det("person", 0.9, 0.5, 0.5, 0.2, 0.15)], t(0.1));
    assert_eq!(ids(&out), vec![2]);
    assert_eq!(out[0].class, "person");
    // Without class awareness the track follows the detection and reports its majority
    // class (a tie keeps the earlier one).
    let mut tr = Tracker::new(TrackerConfig { class_aware: false, ..TrackerConfig::default() });
    tr.update(&[det("car", 0.9, 0.5, 0.5, 0.2, 0.15)], t(0.0));
    let out = tr.update(&[det("person", 0.9, 0.5, 0.5, 0.2, 0.15)], t(0.1));
    assert_eq!((out[0].id, out[0].class.as_str()), (1, "car"));
    let out = tr.update(&[det("person", 0.9, 0.5, 0.5, 0.2, 0.15)], t(0.2));
    assert_eq!((out[0].id, out[0].class.as_str()), (1, "person"));
}

#[test]
fn ids_are_never_reused() {
    let mut tr = Tracker::new(TrackerConfig { track_buffer_secs: 0.5, ..TrackerConfig::default() });
    let mut all = Vec::new();
    let mut time = 0.0;
    for round in 0..5 {
        // Two objects for 5 frames, then nothing for 1 s (beyond the buffer): both removed.
        for _ in 0..5 {
            let out = tr.update(
                &[det("person", 0.9, 0.1, 0.1, 0.1, 0.2), det("person", 0.9, 0.5, 0.1, 0.1, 0.2)],
                t(time),
            );
            for x in out {
                if !all.contains(&x.id) {
                    all.push(x.id);
                }
            }
            time += 0.1;
        }
        time += 1.0;
        assert!(tr.update(&[], t(time)).is_empty());
        assert_eq!(tr.confirmed(), 0, "round {round}: expired tracks removed");
    }
    assert_eq!(all, (1..=10).collect::<Vec<u64>>());
}

#[test]
fn out_of_order_or_repeated_time_does_not_break_prediction() {
    let mut tr = Tracker::new(TrackerConfig::default());
    let d = [det("person", 0.9, 0.3, 0.3, 0.1, 0.2)];
    tr.update(&d, t(1.0));
    assert_eq!(ids(&tr.update(&d, t(1.0))), vec![1]);
    assert_eq!(ids(&tr.update(&d, t(0.5))), vec![1]);
    let out = tr.update(&d, t(1.1));
    assert!(out[0].bbox.iou(&d[0].bbox) > 0.9);
}

#[test]
fn assignment_is_optimal_and_skips_forbidden_pairs() {
    // Greedy would take (0,0) = 0.9 then (1,1) forbidden; optimal is (0,1) + (1,0).
    let w = [[Some(0.9), Some(0.8)], [Some(0.7), None]];
    let mut got = assign(2, 2, |r, c| w[r][c]);
    got.sort();
    assert_eq!(got, vec![(0, 1), (1, 0)]);
    // More rows than columns (transposed internally).
    let got = assign(3, 1, |r, _| if r == 2 { Some(0.5) } else { None });
    assert_eq!(got, vec![(2, 0)]);
    assert!(assign(2, 2, |_, _| None).is_empty());
    assert!(assign(0, 3, |_, _| Some(1.0)).is_empty());
}

#[test]
fn config_defaults_and_validation() {
    let c: TrackerConfig = toml::from_str("").unwrap();
    assert_eq!(c, TrackerConfig::default());
    c.validate().unwrap();
    assert!(toml::from_str::<TrackerConfig>("high_scor = 0.3").is_err());
    let bad = TrackerConfig { low_score: 0.7, ..TrackerConfig::default() };
    assert!(bad.validate().unwrap_err().contains("low_score"));
    let bad = TrackerConfig { min_hits: 0, ..TrackerConfig::default() };
    assert!(bad.validate().unwrap_err().contains("min_hits"));
}

#[test]
fn detection_box_option_reports_the_matched_box() {
    let d0 = det("person", 0.9, 0.3, 0.3, 0.1, 0.2);
    let d1 = det("person", 0.9, 0.31, 0.3, 0.1, 0.22);
    for (opt, want_exact) in [(true, true), (false, false)] {
        let mut tr = Tracker::new(TrackerConfig { detection_box: opt, ..TrackerConfig::default() });
        tr.update(std::slice::from_ref(&d0), t(0.0));
        let out = tr.update(std::slice::from_ref(&d1), t(0.1));
        assert_eq!(out[0].bbox == d1.bbox, want_exact, "detection_box = {opt}");
        assert!(out[0].bbox.iou(&d1.bbox) > 0.8);
    }
}

/// Cost of `update` with 20 moving objects (+ 10 low-score clutter boxes) per frame. Prints
/// the mean; asserts only a generous bound (debug builds, shared CI machines).
#[test]
fn update_cost_at_20_objects() {
    let mut tr = Tracker::new(TrackerConfig::default());
    let frames = 200;
    let start = std::time::Instant::now();
    for k in 0..frames {
        let mut dets = Vec::new();
        for i in 0..20 {
            let (row, col) = ((i / 5) as f32, (i % 5) as f32);
            let x =
                0.02 + col * 0.19 + 0.001 * k as f32 * if i % 2 == 0 { 1.0 } else { -1.0 } + 0.05;
            dets.push(det(
                if i % 3 == 0 { "car" } else { "person" },
                0.8,
                x,
                0.05 + row * 0.24,
                0.06,
                0.18,
            ));
        }
        for i in 0..10 {
            dets.push(det("person", 0.3, 0.1 * i as f32, 0.9, 0.05, 0.05));
        }
        let out = tr.update(&dets, t(k as f64 * 0.2));
        assert!(k < 2 || out.len() == 20, "frame {k}: {} tracks", out.len());
    }
    let per_frame_ms = start.elapsed().as_secs_f64() * 1000.0 / frames as f64;
    eprintln!("tracker update, 20 objects + 10 clutter boxes: {per_frame_ms:.3} ms/frame");
    assert!(per_frame_ms < 20.0, "{per_frame_ms} ms/frame");
}

/// A vehicle detection (COCO ids: car 2, motorcycle 3, bus 5, truck 7).
fn vehicle(class: &str, score: f32, x1: f32, y1: f32, w: f32, h: f32) -> Detection {
    let class_id = match class {
        "car" => 2,
        "motorcycle" => 3,
        "bus" => 5,
        _ => 7,
    };
    Detection { class_id, ..det(class, score, x1, y1, w, h) }
}

#[test]
fn a_vehicle_scored_0_45_is_tracked_with_the_shipped_config() {
    let mut tr = Tracker::new(TrackerConfig::default());
    // An empty first frame, so the vehicle must go through tentative → confirmed.
    assert!(tr.update(&[], t(0.0)).is_empty());
    let mut id = None;
    for k in 1..20 {
        let y = 0.1 + 0.03 * k as f32;
        let out = tr.update(&[vehicle("car", 0.45, 0.4, y, 0.1, 0.08)], t(k as f64 * 0.1));
        if k == 1 {
            assert!(out.is_empty(), "tentative on its first frame: {out:?}");
            continue;
        }
        assert_eq!(out.len(), 1, "frame {k}: {out:?}");
        assert_eq!(out[0].class, "car");
        assert_eq!(*id.get_or_insert(out[0].id), out[0].id, "frame {k}: the id changed");
    }
    // People keep their own (higher) levels: a person scored 0.45 starts no track.
    let mut tr = Tracker::new(TrackerConfig::default());
    tr.update(&[], t(0.0));
    for k in 1..10 {
        let out = tr.update(&[det("person", 0.45, 0.4, 0.3, 0.1, 0.2)], t(k as f64 * 0.1));
        assert!(out.is_empty(), "frame {k}: {out:?}");
    }
}

#[test]
fn vehicle_class_flicker_keeps_one_track_with_its_majority_class() {
    let mut tr = Tracker::new(TrackerConfig::default());
    tr.update(&[], t(0.0));
    let mut ids = std::collections::BTreeSet::new();
    let mut classes = Vec::new();
    // car, truck, car, car, bus, car, truck, car, … : car is the majority from the start.
    let pattern = ["car", "truck", "car", "car", "bus", "car", "truck", "car", "motorcycle"];
    for k in 1..30 {
        let class = pattern[(k - 1) % pattern.len()];
        let x = 0.1 + 0.02 * k as f32;
        let out = tr.update(&[vehicle(class, 0.6, x, 0.4, 0.12, 0.1)], t(k as f64 * 0.1));
        for o in &out {
            ids.insert(o.id);
            classes.push(o.class.clone());
        }
    }
    assert_eq!(ids.len(), 1, "one vehicle, one track: {ids:?}");
    // Reported from its confirmation on, always as its majority class.
    assert!(classes.len() >= 27, "{classes:?}");
    assert!(classes.iter().all(|c| c == "car"), "{classes:?}");
}

#[test]
fn majority_is_score_weighted_and_can_change() {
    let mut tr = Tracker::new(TrackerConfig::default());
    // Confirmed on the first frame as a car (0.5); then a truck at 0.9 on every frame.
    let out = tr.update(&[vehicle("car", 0.5, 0.1, 0.4, 0.3, 0.2)], t(0.0));
    assert_eq!(out[0].class, "car");
    let out = tr.update(&[vehicle("truck", 0.9, 0.1, 0.4, 0.3, 0.2)], t(0.1));
    assert_eq!((out[0].id, out[0].class.as_str(), out[0].class_id), (1, "truck", 7));
}

#[test]
fn car_and_truck_boxes_on_one_vehicle_make_one_track() {
    let mut tr = Tracker::new(TrackerConfig::default());
    tr.update(&[], t(0.0));
    let mut ids = std::collections::BTreeSet::new();
    for k in 1..20 {
        let x = 0.1 + 0.02 * k as f32;
        // NanoDet-g's per-class NMS keeps both; they overlap by IoU ≈ 0.85. Which one
        // scores higher alternates.
        let (c, tk) = if k % 2 == 0 { (0.55, 0.5) } else { (0.5, 0.55) };
        let dets = [
            vehicle("car", c, x, 0.4, 0.12, 0.1),
            vehicle("truck", tk, x + 0.005, 0.405, 0.12, 0.1),
            // A second car nearby (IoU with the first < 0.7) is a vehicle of its own.
            vehicle("car", 0.6, x + 0.06, 0.4, 0.12, 0.1),
        ];
        let out = tr.update(&dets, t(k as f64 * 0.1));
        if k >= 2 {
            assert_eq!(out.len(), 2, "frame {k}: {out:?}");
        }
        ids.extend(out.iter().map(|o| o.id));
    }
    assert_eq!(ids.len(), 2, "{ids:?}");
    // People are not in a group: overlapping person boxes are never merged.
    let mut tr = Tracker::new(TrackerConfig::default());
    let p = [det("person", 0.9, 0.4, 0.3, 0.1, 0.2), det("person", 0.8, 0.405, 0.3, 0.1, 0.2)];
    assert_eq!(tr.update(&p, t(0.0)).len(), 2);
}

#[test]
fn without_class_groups_classes_are_strict() {
    let cfg = TrackerConfig { class_groups: Vec::new(), ..TrackerConfig::default() };
    let mut tr = Tracker::new(cfg);
    let out = tr.update(&[vehicle("car", 0.9, 0.1, 0.4, 0.3, 0.2)], t(0.0));
    assert_eq!(ids(&out), vec![1]);
    // A truck on the same box is another object (tentative), the car track is lost.
    let out = tr.update(&[vehicle("truck", 0.9, 0.1, 0.4, 0.3, 0.2)], t(0.1));
    assert!(out.is_empty(), "{out:?}");
    // And a vehicle at 0.45 starts nothing with the global levels.
    let mut tr = Tracker::new(TrackerConfig { class_groups: Vec::new(), ..Default::default() });
    tr.update(&[], t(0.0));
    for k in 1..5 {
        assert!(tr
            .update(&[vehicle("car", 0.45, 0.1, 0.4, 0.3, 0.2)], t(k as f64 * 0.1))
            .is_empty());
    }
}

#[test]
fn class_groups_are_validated() {
    let bad = |g: Vec<ClassGroup>| {
        TrackerConfig { class_groups: g, ..TrackerConfig::default() }.validate().unwrap_err()
    };
    let g = |classes: &[&str], high: Option<f32>| ClassGroup {
        classes: classes.iter().map(|c| c.to_string()).collect(),
        high_score: high,
        new_track_score: None,
    };
    assert!(bad(vec![g(&[], None)]).contains("tracker.class_groups[0].classes"));
    let e = bad(vec![g(&["car"], None), g(&["bus", "car"], None)]);
    assert!(e.contains("class_groups[1].classes") && e.contains("`car`"), "{e}");
    assert!(bad(vec![g(&["car"], Some(1.5))]).contains("class_groups[0].high_score"));
    assert!(bad(vec![g(&["car"], Some(0.1))]).contains("≥ tracker.low_score"));
    let toml = "class_groups = [{ classes = [\"car\"], high_score = 0.3 }]\nduplicate_iou = 0.8\n";
    let c: TrackerConfig = toml::from_str(toml).unwrap();
    assert_eq!(c.class_groups, vec![g(&["car"], Some(0.3))]);
    assert!(toml::from_str::<TrackerConfig>("class_groups = [{ classes = [], x = 1 }]").is_err());
}

fn everywhere_cfg() -> TrackerConfig {
    TrackerConfig { weak_births: WeakBirths::Everywhere, ..TrackerConfig::default() }
}

/// A tracker with weak births anywhere (the mechanism, without the zones).
fn everywhere() -> Tracker {
    Tracker::new(everywhere_cfg())
}

/// A person the detector scores 0.45 (under the people levels) on every frame, moving
/// slowly: a weak tentative track from its first frame, confirmed `weak_confirm_secs` later,
/// with one id from then on.
#[test]
fn a_persistent_weak_person_is_tracked_after_weak_confirm_secs() {
    let mut tr = everywhere();
    assert!(tr.update(&[], t(0.0)).is_empty());
    let mut id = None;
    for k in 1..=30 {
        let x = 0.3 + 0.005 * k as f32;
        let at = k as f64 * 0.1;
        let out = tr.update(&[det("person", 0.45, x, 0.3, 0.05, 0.12)], t(at));
        // Born at 0.1 s: confirmed at 1.1 s (1.0 s of consecutive matches).
        if k < 11 {
            assert!(out.is_empty(), "{at:.1} s: {out:?}");
            continue;
        }
        assert_eq!(out.len(), 1, "{at:.1} s: {out:?}");
        assert_eq!(out[0].class, "person");
        assert_eq!(out[0].first_seen, t(0.1));
        assert_eq!(*id.get_or_insert(out[0].id), out[0].id, "{at:.1} s: the id changed");
    }
    // The same with weak births off, or with the default (intrusion zones) and none: never
    // tracked.
    for cfg in [
        TrackerConfig { weak_births: WeakBirths::Off, ..TrackerConfig::default() },
        TrackerConfig::default(),
    ] {
        let mut tr = Tracker::new(cfg);
        tr.update(&[], t(0.0));
        for k in 1..=30 {
            let x = 0.3 + 0.005 * k as f32;
            let out = tr.update(&[det("person", 0.45, x, 0.3, 0.05, 0.12)], t(k as f64 * 0.1));
            assert!(out.is_empty(), "frame {k}: {out:?}");
        }
    }
}

/// With the default `weak_births = "intrusion_zones"`, a weak person is tracked inside an
/// intrusion zone that watches people, not outside it nor for another class.
#[test]
fn weak_births_only_in_intrusion_zones_of_their_class() {
    let zone = vec![[0.5, 0.0], [1.0, 0.0], [1.0, 1.0], [0.5, 1.0]];
    let region = |class: &str| WeakRegion {
        zone: zone.clone(),
        classes: vec![(class.to_string(), crate::geometry::Anchor::BottomCenter)],
    };
    for (x0, class, want) in
        [(0.6, "person", true), (0.1, "person", false), (0.6, "bicycle", false)]
    {
        let mut tr = Tracker::new(TrackerConfig::default()).with_weak_regions(vec![region(class)]);
        tr.update(&[], t(0.0));
        let mut tracked = false;
        for k in 1..=30 {
            let x = x0 + 0.005 * k as f32;
            let out = tr.update(&[det("person", 0.45, x, 0.3, 0.05, 0.12)], t(k as f64 * 0.1));
            tracked |= !out.is_empty();
        }
        assert_eq!(tracked, want, "person at x {x0}, zone for {class}");
    }
}

/// Weak detections that do not persist — missing on one frame in three, or jumping about —
/// never confirm a track.
#[test]
fn weak_flicker_starts_no_track() {
    let mut tr = everywhere();
    tr.update(&[], t(0.0));
    for k in 1..=60 {
        let dets = if k % 3 == 0 { vec![] } else { vec![det("person", 0.5, 0.3, 0.3, 0.05, 0.12)] };
        let out = tr.update(&dets, t(k as f64 * 0.1));
        assert!(out.is_empty(), "frame {k}: {out:?}");
    }
    let mut tr = everywhere();
    tr.update(&[], t(0.0));
    for k in 1..=60 {
        let x = [0.1, 0.5, 0.8, 0.3][k % 4];
        let out = tr.update(&[det("person", 0.5, x, 0.3, 0.05, 0.12)], t(k as f64 * 0.1));
        assert!(out.is_empty(), "frame {k}: {out:?}");
    }
}

/// A weak box that a track explains (a partial second box on a tracked person) starts no
/// second track, however long it persists.
#[test]
fn weak_box_on_a_tracked_object_starts_no_second_track() {
    let mut tr = everywhere();
    for k in 0..40 {
        let x = 0.2 + 0.01 * k as f32;
        let dets = [det("person", 0.9, x, 0.3, 0.1, 0.2), det("person", 0.4, x, 0.3, 0.1, 0.12)];
        let out = tr.update(&dets, t(k as f64 * 0.1));
        assert_eq!(ids(&out), vec![1], "frame {k}");
    }
}

/// Static clutter the detector scores weakly as a person on every frame (a post, a shadow)
/// is persistent but does not move: no track, unless `weak_min_move_heights` = 0.
#[test]
fn static_weak_clutter_starts_no_track() {
    for (min_move, want) in [(0.25, false), (0.0, true)] {
        let cfg = TrackerConfig { weak_min_move_heights: min_move, ..everywhere_cfg() };
        let mut tr = Tracker::new(cfg);
        tr.update(&[], t(0.0));
        let mut tracked = false;
        for k in 1..=50 {
            // Box jitter of ±0.002 (about 2 % of its height), as measured on real clutter.
            let j = if k % 2 == 0 { 0.002 } else { -0.002 };
            let out = tr.update(&[det("person", 0.45, 0.3 + j, 0.3, 0.04, 0.1)], t(k as f64 * 0.1));
            tracked |= !out.is_empty();
        }
        assert_eq!(tracked, want, "weak_min_move_heights = {min_move}");
    }
}

#[test]
fn weak_confirm_secs_is_validated() {
    let bad = TrackerConfig { weak_confirm_secs: 0.0, ..TrackerConfig::default() };
    assert!(bad.validate().unwrap_err().contains("weak_confirm_secs"));
    let bad = TrackerConfig { weak_min_move_heights: f32::NAN, ..TrackerConfig::default() };
    assert!(bad.validate().unwrap_err().contains("weak_min_move_heights"));
    let c: TrackerConfig = toml::from_str("weak_confirm_secs = 0.5").unwrap();
    assert_eq!(c.weak_confirm_secs, 0.5);
    let c: TrackerConfig = toml::from_str("weak_births = \"everywhere\"").unwrap();
    assert_eq!(c.weak_births, WeakBirths::Everywhere);
    assert!(toml::from_str::<TrackerConfig>("weak_births = \"zones\"").is_err());
}

/// A track confirmed from a weak birth and missed for a few frames is found again by
/// low-score detections (an object that lives on low scores drops out now and then); an
/// ordinary track is not (ByteTrack: low detections only continue tracks matched on the
/// previous frame), and while it is held (lost) it explains the low detections, which then
/// start no weak track either.
#[test]
fn low_detections_recover_a_lost_weak_born_track_only() {
    for first in [0.45, 0.9] {
        let mut tr = everywhere();
        tr.update(&[], t(0.0));
        let mut ids_after = std::collections::BTreeSet::new();
        for k in 1..=40 {
            let x = 0.2 + 0.005 * k as f32;
            let dets = match k {
                1..=20 => vec![det("person", first, x, 0.3, 0.05, 0.12)],
                21..=25 => vec![],
                _ => vec![det("person", 0.4, x, 0.3, 0.05, 0.12)],
            };
            let out = tr.update(&dets, t(k as f64 * 0.1));
            if k == 20 {
                assert_eq!(ids(&out), vec![1], "confirmed by frame 20 (first score {first})");
            }
            if k > 25 {
                ids_after.extend(ids(&out));
            }
        }
        let want: Vec<u64> = if first < 0.7 { vec![1] } else { vec![] };
        assert_eq!(ids_after.into_iter().collect::<Vec<_>>(), want, "first score {first}");
    }
}

/// A weak person standing still (box jitter as on real clutter) in low light: tracked after
/// `weak_confirm_secs` of consecutive matches, with no motion and no zone (docs/design/0027);
/// by day, or with `low_light_births = false`, never. A still weak car is never tracked.
#[test]
fn a_still_weak_person_is_tracked_in_low_light_only() {
    for (class, low_light, births, want) in [
        ("person", true, true, Some(1.0)),
        ("person", false, true, None),
        ("person", true, false, None),
        ("car", true, true, None),
    ] {
        let cfg = TrackerConfig { low_light_births: births, ..TrackerConfig::default() };
        let mut tr = Tracker::new(cfg);
        tr.set_low_light(low_light);
        tr.update(&[], t(0.0));
        let mut first = None;
        for k in 1..=50 {
            let j = if k % 2 == 0 { 0.002 } else { -0.002 };
            let d = det(class, 0.3, 0.3 + j, 0.3, 0.04, 0.1);
            let out = tr.update(&[d], t(k as f64 * 0.1));
            if first.is_none() && !out.is_empty() {
                first = Some(((k - 1) as f64 * 0.1 * 10.0).round() / 10.0);
            }
        }
        let case = format!("{class}, low light {low_light}, low_light_births {births}");
        assert_eq!(first, want, "{case}: seconds from birth to the first report");
    }
}

/// In low light a weak person that flickers (missing on one frame in three) is still not
/// tracked: persistence is the guard.
#[test]
fn weak_flicker_in_low_light_starts_no_track() {
    let mut tr = Tracker::new(TrackerConfig::default());
    tr.set_low_light(true);
    tr.update(&[], t(0.0));
    for k in 1..=60 {
        let dets = if k % 3 == 0 { vec![] } else { vec![det("person", 0.3, 0.3, 0.3, 0.05, 0.12)] };
        let out = tr.update(&dets, t(k as f64 * 0.1));
        assert!(out.is_empty(), "frame {k}: {out:?}");
    }
}

/// In low light people have the lower levels (0.35 / 0.55): a person scored 0.6 starts an
/// ordinary track (confirmed on its second match); by day the same detections start none.
/// Vehicles keep their group's levels.
#[test]
fn people_levels_are_lower_in_low_light() {
    for (low_light, want) in [(true, vec![1]), (false, vec![])] {
        let mut tr = Tracker::new(TrackerConfig::default());
        tr.set_low_light(low_light);
        tr.update(&[], t(0.0));
        // Three frames (0.3 s): too short for a weak confirmation either way.
        let mut out = Vec::new();
        for k in 1..=3 {
            let d = det("person", 0.6, 0.1 + 0.01 * k as f32, 0.3, 0.05, 0.12);
            out = tr.update(&[d], t(k as f64 * 0.1));
        }
        assert_eq!(ids(&out), want, "low light {low_light}");
    }
    let mut tr = Tracker::new(TrackerConfig::default());
    tr.set_low_light(true);
    tr.update(&[], t(0.0));
    for k in 1..=3 {
        let d = det("car", 0.4, 0.1 + 0.01 * k as f32, 0.3, 0.1, 0.08);
        assert!(tr.update(&[d], t(k as f64 * 0.1)).is_empty(), "car 0.4 < its group's 0.45");
    }
}

#[test]
fn low_light_levels_are_validated() {
    let bad = TrackerConfig { low_light_high_score: 0.2, ..TrackerConfig::default() };
    assert!(bad.validate().unwrap_err().contains("low_light_high_score"));
    let bad = TrackerConfig { low_light_new_track_score: 1.5, ..TrackerConfig::default() };
    assert!(bad.validate().unwrap_err().contains("low_light_new_track_score"));
    let c: TrackerConfig = toml::from_str("low_light_births = false").unwrap();
    assert!(!c.low_light_births);
}

#[test]
fn posture_reach_is_within_the_body_length_of_the_feet() {
    let up = BBox { x1: 0.4, y1: 0.2, x2: 0.5, y2: 0.6 }; // 0.4 tall: H = 0.4
                                                          // Lying beside the feet, as long as the person was tall.
    let lying = BBox { x1: 0.33, y1: 0.5, x2: 0.65, y2: 0.62 };
    let r = posture_reach(&up, &lying, 1.0).unwrap();
    assert!(r < 0.2, "{r}");
    // Too far: centre 0.5 away from the feet.
    let far = BBox { x1: 0.85, y1: 0.5, x2: 1.0, y2: 0.62 };
    assert_eq!(posture_reach(&up, &far, 1.0), None);
    // Another size of body: a small person (0.1 long) or a car-sized box (0.9 long).
    assert_eq!(posture_reach(&up, &BBox { x1: 0.45, y1: 0.55, x2: 0.5, y2: 0.65 }, 1.0), None);
    assert_eq!(posture_reach(&up, &BBox { x1: 0.0, y1: 0.5, x2: 0.9, y2: 0.7 }, 1.0), None);
    // Pixels: on a 2:1 frame the same lying box is twice as long and as far sideways.
    assert!(posture_reach(&up, &lying, 2.0).is_some());
    assert_eq!(posture_reach(&up, &BBox { x1: 0.2, y1: 0.5, x2: 0.36, y2: 0.62 }, 3.0), None);
    assert_eq!(posture_reach(&BBox { x1: 0.5, y1: 0.5, x2: 0.5, y2: 0.5 }, &lying, 1.0), None);
}

#[test]
fn a_person_falling_keeps_the_track_only_with_posture_classes() {
    let standing = det("person", 0.9, 0.4, 0.2, 0.1, 0.4);
    let lying = det("person", 0.45, 0.33, 0.5, 0.32, 0.12);
    for posture in [false, true] {
        let classes = if posture { vec!["person".to_string()] } else { vec![] };
        let mut tr = Tracker::new(TrackerConfig::default()).with_posture_classes(classes);
        for k in 0..5 {
            assert_eq!(
                ids(&tr.update(std::slice::from_ref(&standing), t(k as f64 * 0.1))),
                vec![1]
            );
        }
        // The box turns wide and low (IoU 0.15 with the standing one) and scores lower.
        let mut out = Vec::new();
        for k in 5..10 {
            out = tr.update(std::slice::from_ref(&lying), t(k as f64 * 0.1));
        }
        if posture {
            assert_eq!(ids(&out), vec![1], "{out:?}");
            assert!((out[0].bbox.y1 - 0.5).abs() < 0.02, "{out:?}");
        } else {
            assert!(out.is_empty(), "{out:?}");
        }
    }
}

#[test]
fn a_lost_person_does_not_take_the_clutter_at_their_feet() {
    let mut tr = Tracker::new(TrackerConfig::default())
        .with_posture_classes(vec!["person".into()])
        .with_weak_regions(vec![WeakRegion {
            zone: vec![[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]],
            classes: vec![("person".into(), Anchor::BottomCenter)],
        }]);
    let person = det("person", 0.9, 0.4, 0.2, 0.1, 0.4);
    let clutter = det("person", 0.3, 0.3, 0.55, 0.3, 0.1);
    for k in 0..7 {
        let out = tr.update(&[person.clone(), clutter.clone()], t(k as f64 * 0.5));
        assert_eq!(ids(&out), vec![1], "{out:?}");
    }
    for k in 7..20 {
        let out = tr.update(std::slice::from_ref(&clutter), t(k as f64 * 0.5));
        assert!(out.is_empty(), "{k}: {out:?}");
    }
}
