//! Zone occupancy sampling (next to the rules, on the frame path, no I/O): on every analysed
//! frame, for every zone of the camera, the number of confirmed tracks matched on the frame
//! whose anchor is inside, per class and for all classes together (class `*`). Samples are
//! accumulated per 1-minute bucket (frames, sum, max); a bucket is handed out once a frame
//! of a later bucket arrives (`take_completed`), or at shutdown (`flush`). The inference
//! worker sends them to the store writer (`StoreMsg::Occupancy`), which upserts them into
//! `zone_occupancy`; the API averages on read (mean = sum / samples).

use time::OffsetDateTime;

use super::common::observed;
use super::Scene;
use crate::geometry::{point_in_polygon, Pt};
use crate::types::{OccupancyDelta, Tracks};

/// Width of an occupancy bucket.
pub const BUCKET_MS: i64 = 60_000;
/// Class name of the all-classes row.
pub const ALL_CLASSES: &str = "*";

#[derive(Debug)]
struct Bucket {
    start_ms: i64,
    frames: u64,
    /// Per zone (index into `Occupancy::zones`): sum and max of all classes together.
    total: Vec<(u64, u32)>,
    /// (zone index, class, sum, max) for every class seen in the zone during the bucket.
    per_class: Vec<(usize, String, u64, u32)>,
}

/// The occupancy sampler of one camera.
#[derive(Debug)]
pub struct Occupancy {
    camera_id: String,
    /// Zones sorted by name.
    zones: Vec<(String, Vec<Pt>)>,
    scene: Scene,
    cur: Option<Bucket>,
    done: Vec<OccupancyDelta>,
    /// Per-frame scratch: (class, count) of one zone.
    scratch: Vec<(usize, u32)>,
}

fn ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

impl Occupancy {
    pub fn new(scene: &Scene) -> Self {
        let mut zones: Vec<(String, Vec<Pt>)> =
            scene.zones.iter().map(|(n, p)| (n.clone(), p.clone())).collect();
        zones.sort_by(|a, b| a.0.cmp(&b.0));
        Occupancy {
            camera_id: scene.camera_id.clone(),
            zones,
            scene: scene.clone(),
            cur: None,
            done: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Samples one frame (a camera without zones costs nothing).
    pub fn sample(&mut self, t: &Tracks) {
        if self.zones.is_empty() {
            return;
        }
        let start_ms = ms(t.detections.frame.captured_at).div_euclid(BUCKET_MS) * BUCKET_MS;
        if self.cur.as_ref().is_some_and(|b| b.start_ms != start_ms) {
            self.close_current();
        }
        let nz = self.zones.len();
        let b = self.cur.get_or_insert_with(|| Bucket {
            start_ms,
            frames: 0,
            total: vec![(0, 0); nz],
            per_class: Vec::new(),
        });
        b.frames += 1;
        let tracks = observed(t, &[]);
        let anchors: Vec<Pt> = tracks.iter().map(|tr| self.scene.anchor(tr)).collect();
        for (z, (_, poly)) in self.zones.iter().enumerate() {
            self.scratch.clear();
            let mut n_all = 0u32;
            for (i, p) in anchors.iter().enumerate() {
                if !point_in_polygon(*p, poly) {
                    continue;
                }
                n_all += 1;
                // Group by class: `scratch` holds (index of the first track of the class, n).
                match self.scratch.iter_mut().find(|(j, _)| tracks[*j].class == tracks[i].class) {
                    Some((_, n)) => *n += 1,
                    None => self.scratch.push((i, 1)),
                }
            }
            let tot = &mut b.total[z];
            tot.0 += n_all as u64;
            tot.1 = tot.1.max(n_all);
            for &(j, n) in &self.scratch {
                let class = &tracks[j].class;
                match b.per_class.iter_mut().find(|(zz, c, _, _)| *zz == z && c == class) {
                    Some(e) => {
                        e.2 += n as u64;
                        e.3 = e.3.max(n);
                    }
                    None => b.per_class.push((z, class.clone(), n as u64, n)),
                }
            }
        }
    }

    fn close_current(&mut self) {
        let Some(b) = self.cur.take() else { return };
        let Ok(bucket_start) =
            OffsetDateTime::from_unix_timestamp_nanos(b.start_ms as i128 * 1_000_000)
        else {
            return;
        };
        let row = |zone: &str, class: &str, sum: u64, max: u32| OccupancyDelta {
            camera_id: self.camera_id.clone(),
            zone: zone.to_string(),
            class: class.to_string(),
            bucket_start,
            samples: b.frames,
            sum,
            max,
        };
        for (z, (name, _)) in self.zones.iter().enumerate() {
            let (sum, max) = b.total[z];
            self.done.push(row(name, ALL_CLASSES, sum, max));
        }
        let mut per_class = b.per_class.iter().collect::<Vec<_>>();
        per_class.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        for (z, class, sum, max) in per_class {
            self.done.push(row(&self.zones[*z].0, class, *sum, *max));
        }
    }

    /// Buckets completed since the last call.
    pub fn take_completed(&mut self) -> Vec<OccupancyDelta> {
        std::mem::take(&mut self.done)
    }

    /// Completed buckets plus the current partial one.
    pub fn flush(&mut self) -> Vec<OccupancyDelta> {
        self.close_current();
        self.take_completed()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::types::{BBox, Detections, Frame, Track, TrackState};

    fn at(secs: f64) -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + time::Duration::seconds_f64(1.8e9 + secs)
    }

    fn tracks(secs: f64, objs: &[(u64, &str, f32, TrackState)]) -> Tracks {
        let now = at(secs);
        let frame = Frame {
            camera_id: Arc::from("cam"),
            index: 0,
            width: 4,
            height: 4,
            rgb: Arc::from(vec![0u8; 48]),
            pts_ns: None,
            captured_at: now,
            captured_instant: std::time::Instant::now(),
        };
        Tracks {
            detections: Detections { frame, objects: vec![], infer_ms: 0.0 },
            fallen: vec![],
            tracks: objs
                .iter()
                .map(|&(id, class, x, state)| Track {
                    id,
                    class_id: 0,
                    class: class.into(),
                    score: 0.9,
                    // Anchor (bottom centre) at (x + 0.05, 0.5).
                    bbox: BBox { x1: x, y1: 0.3, x2: x + 0.1, y2: 0.5 },
                    state,
                    hits: 3,
                    first_seen: now,
                    last_seen: now,
                    velocity: (0.0, 0.0),
                    speed_kmh: None,
                    origin: None,
                    pose: None,
                })
                .collect(),
        }
    }

    fn scene() -> Scene {
        let mut s = Scene { camera_id: "cam".into(), ..Default::default() };
        s.zones.insert("left".into(), vec![[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]]);
        s.zones.insert("right".into(), vec![[0.5, 0.0], [1.0, 0.0], [1.0, 1.0], [0.5, 1.0]]);
        s
    }

    #[test]
    fn buckets_per_zone_and_class() {
        use TrackState::*;
        let mut o = Occupancy::new(&scene());
        // Bucket 1.8e9 s is a multiple of 60 s: frames at 0, 10, 20 s are one bucket.
        o.sample(&tracks(
            0.0,
            &[(1, "person", 0.1, Tracked), (2, "person", 0.2, Tracked), (3, "car", 0.7, Tracked)],
        ));
        o.sample(&tracks(10.0, &[(1, "person", 0.1, Tracked), (2, "person", 0.2, Lost)]));
        o.sample(&tracks(20.0, &[(1, "person", 0.6, Tracked), (4, "bike", f32::NAN, Tracked)]));
        assert!(o.take_completed().is_empty(), "the bucket is still open");
        o.sample(&tracks(61.0, &[]));
        let rows = o.take_completed();
        let got: Vec<(&str, &str, u64, u64, u32)> = rows
            .iter()
            .map(|r| (r.zone.as_str(), r.class.as_str(), r.samples, r.sum, r.max))
            .collect();
        assert_eq!(
            got,
            vec![
                ("left", "*", 3, 3, 2),
                ("right", "*", 3, 2, 1),
                ("left", "person", 3, 3, 2),
                ("right", "car", 3, 1, 1),
                ("right", "person", 3, 1, 1),
            ]
        );
        assert!(rows.iter().all(|r| r.bucket_start == at(0.0) && r.camera_id == "cam"));
        // The partial bucket (one empty frame) comes out on flush.
        let rows = o.flush();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].bucket_start, rows[0].samples, rows[0].sum), (at(60.0), 1, 0));
        assert!(o.flush().is_empty());
    }

    #[test]
    fn no_zones_no_rows() {
        let mut o = Occupancy::new(&Scene::default());
        o.sample(&tracks(0.0, &[(1, "person", 0.1, TrackState::Tracked)]));
        o.sample(&tracks(70.0, &[]));
        assert!(o.flush().is_empty());
    }
}
