//! The fall scan (`[cameras.fall_scan]`, docs/design/0053): falls from height, which the
//! tracker misses. A worker who drops off a walkway is a few pixels wide in mid-air and
//! lies small and flat on the ground; the shipped detector loses him on the way down and
//! does not see him lying, so the `fall` rule's upright → lying track never happens.
//!
//! MediaPipe's pose detector finds people by face and head, upright or lying, and gives each
//! one a hip centre and a full-body circle (its radius is about half the person's height
//! plus a margin; the direction hip → circle point is the body's axis). The scan runs it on
//! square tiles of the frame (side 0.3 × the frame's width, at most its height, half
//! overlapping), `scan_fps` times a second of frame time, and only on the tiles where the
//! picture changed since the last scan or where a person it follows was last seen: a still
//! scene costs a small grey copy per scan and no inference.
//!
//! With `zones`, only the tiles that overlap one of them (their bounding boxes) are scanned.
//!
//! People are followed from scan to scan by their hip centre: a sighting continues a chain
//! whose last sighting is at most [`LINK_SECS`] old when it lies at most one body radius to
//! the side, and from one radius up to three down (a falling body covers ~2 m in 0.2 s at the
//! end of a 5 m fall). A chain **falls** ([`landing`]) when its hip centre comes down at least
//! `min_drop_radii` body radii (the median radius while it lies) within `fall_window_secs`:
//! - mostly straight down (the drop more than twice the sideways move),
//! - over at least two steps, none carrying more than two thirds of the drop and none going
//!   up by more than a quarter radius (a body falls continuously; two people linked by
//!   mistake make one jump),
//!
//! and then lies still: every sighting for `still_secs` after the landing within one radius
//! of it, most of them lying (the axis at least `lying_deg` from upright). A person walking
//! toward the camera comes down slowly and keeps walking; one sitting down drops less than a
//! body radius; a person lying on a bench from the start never comes down.
//!
//! A drop that another followed detection made too over the same time is not a fall: the
//! camera tilted and everything it sees came down (a PTZ camera on a tour).
//!
//! A fallen chain is reported to the rules as a person track ([`crate::types::Tracks`]'s
//! `fallen`), with an id from [`ID_BASE`] up (never a tracker's id), its box the body circle
//! and its `first_seen` the landing, until it has not been seen for [`LOST_SECS`].

use time::OffsetDateTime;

use super::tiles::{crop, to_frame, Tile};
use super::Detectors;
use crate::config::FallScanConfig;
use crate::geometry::BBox;
use crate::types::{Detection, Frame, Track, TrackState};

/// Ids of fallen chains start here, far above any tracker's (which count from 1).
pub const ID_BASE: u64 = 1 << 48;
/// Tile side as a fraction of the frame's width (192 px at 640).
const TILE_OF_WIDTH: f32 = 0.3;
/// A sighting continues a chain last seen at most this long before.
pub const LINK_SECS: f64 = 0.7;
/// A chain not seen this long is dropped (and a fallen one no longer reported).
pub const LOST_SECS: f64 = 3.0;
/// Grey copy: one block mean per this many pixels across (160 blocks at 640 px).
const GREY_BLOCKS: u32 = 160;
/// A block moved when its mean changed by at least this many grey levels since the last scan.
const MOVED_LEVELS: i16 = 20;
/// A tile moved when at least this many of its blocks moved.
const MOVED_BLOCKS: usize = 3;

/// One person the detector saw on one scan, in frame pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sighting {
    pub at: OffsetDateTime,
    pub hip: (f32, f32),
    /// The full-body circle's radius.
    pub radius: f32,
    /// The body's axis from upright, degrees (0 upright, 90 lying, 180 head down).
    pub axis_deg: f32,
    pub score: f32,
}

impl Sighting {
    /// The sighting of a pose-detector detection (keypoints normalised to the `w` × `h`
    /// frame); None without the two keypoints, or when one was clamped to the edge of the
    /// tile it came from (`tile`, normalised), so its circle is not known.
    pub fn of(d: &Detection, at: OffsetDateTime, w: u32, h: u32, tile: &BBox) -> Option<Sighting> {
        let k = d.keypoints.as_ref()?;
        let (hip, body) = (k.first()?, k.get(1)?);
        let inside = |x: f32, y: f32| x > tile.x1 && x < tile.x2 && y > tile.y1 && y < tile.y2;
        if !inside(hip.x, hip.y) || !inside(body.x, body.y) {
            return None;
        }
        let (hx, hy) = (hip.x * w as f32, hip.y * h as f32);
        let (dx, dy) = (body.x * w as f32 - hx, body.y * h as f32 - hy);
        Some(Sighting {
            at,
            hip: (hx, hy),
            radius: dx.hypot(dy),
            axis_deg: dx.abs().atan2(-dy).to_degrees(),
            score: d.score,
        })
    }
}

/// One person followed from scan to scan.
#[derive(Debug, Clone)]
struct Chain {
    id: u64,
    seen: Vec<Sighting>,
    /// The landing of its fall, once it fell.
    landed: Option<OffsetDateTime>,
}

/// One camera's fall scan.
pub struct FallScan {
    cfg: FallScanConfig,
    /// Bounding boxes (normalised) of the zones the scan is limited to; empty: everywhere.
    zones: Vec<BBox>,
    last_scan: Option<OffsetDateTime>,
    /// Grey copy of the last scanned frame: its size, block side and block means.
    grey: Option<(u32, u32, u32, Vec<u8>)>,
    chains: Vec<Chain>,
    next_id: u64,
}

impl FallScan {
    pub fn new(cfg: FallScanConfig, cam: &crate::config::CameraConfig) -> FallScan {
        let zones = cam
            .zones
            .iter()
            .filter(|z| cfg.zones.contains(&z.name))
            .map(|z| {
                let (xs, ys) = (z.points.iter().map(|p| p[0]), z.points.iter().map(|p| p[1]));
                BBox {
                    x1: xs.clone().fold(f64::MAX, f64::min) as f32,
                    y1: ys.clone().fold(f64::MAX, f64::min) as f32,
                    x2: xs.fold(f64::MIN, f64::max) as f32,
                    y2: ys.fold(f64::MIN, f64::max) as f32,
                }
            })
            .collect();
        FallScan { cfg, zones, last_scan: None, grey: None, chains: Vec::new(), next_id: 0 }
    }

    /// Scans `frame` when due (with `detectors`; without, nothing is scanned) and returns the
    /// fallen people, as tracks.
    pub fn run(&mut self, detectors: Option<&mut Detectors>, frame: &Frame) -> Vec<Track> {
        let now = frame.captured_at;
        // Due a quarter period early: analysed frames come at uneven times (10 a second of
        // a 25 frames/s source are 0.08 and 0.12 s apart), and every other one must do.
        let due = self
            .last_scan
            .is_none_or(|l| now < l || (now - l).as_seconds_f64() >= 0.75 / self.cfg.scan_fps);
        if let (true, Some(d)) = (due, detectors) {
            self.last_scan = Some(now);
            let tiles = self.moving_tiles(frame);
            match d.scan(&self.cfg.model, frame, &tiles) {
                Ok(found) => {
                    let sightings = found
                        .iter()
                        .filter(|(d, _)| d.score >= self.cfg.min_score)
                        .filter_map(|(d, t)| Sighting::of(d, now, frame.width, frame.height, t))
                        .collect();
                    self.follow(sightings, now, frame.width as f32);
                }
                Err(e) => tracing::warn!(frame = frame.index, "fall scan: {e:#}"),
            }
        }
        self.chains.retain(|c| c.seen.last().is_some_and(|s| secs(s.at, now) <= LOST_SECS));
        self.fallen(frame)
    }

    /// The tiles to scan: all on the first scan (or a new frame size), else those where the
    /// grey copy changed and those holding a chain's last sighting.
    fn moving_tiles(&mut self, frame: &Frame) -> Vec<Tile> {
        let (w, h) = (frame.width, frame.height);
        let (fw, fh) = (w as f32, h as f32);
        let in_zones = |t: &Tile| {
            self.zones.is_empty()
                || self.zones.iter().any(|z| {
                    (t.x as f32) < z.x2 * fw
                        && ((t.x + t.w) as f32) > z.x1 * fw
                        && (t.y as f32) < z.y2 * fh
                        && ((t.y + t.h) as f32) > z.y1 * fh
                })
        };
        let tiles: Vec<Tile> = layout(w, h).into_iter().filter(in_zones).collect();
        let block = (w / GREY_BLOCKS).max(1);
        let new = grey(&frame.rgb, w, h, block);
        let Some((_, _, _, old)) = self.grey.take().filter(|g| (g.0, g.1, g.2) == (w, h, block))
        else {
            self.grey = Some((w, h, block, new));
            return tiles;
        };
        let (gw, gh) = (w / block, h / block);
        let moved = |t: &Tile| {
            let rows = t.y / block..((t.y + t.h) / block).min(gh);
            rows.flat_map(|gy| {
                (t.x / block..((t.x + t.w) / block).min(gw)).map(move |gx| gy * gw + gx)
            })
            .filter(|&i| {
                (i16::from(new[i as usize]) - i16::from(old[i as usize])).abs() >= MOVED_LEVELS
            })
            .nth(MOVED_BLOCKS - 1)
            .is_some()
        };
        let held = |t: &Tile| {
            self.chains.iter().filter_map(|c| c.seen.last()).any(|s| {
                let (x, y) = s.hip;
                x >= t.x as f32
                    && x < (t.x + t.w) as f32
                    && y >= t.y as f32
                    && y < (t.y + t.h) as f32
            })
        };
        let out = tiles.into_iter().filter(|t| held(t) || moved(t)).collect();
        self.grey = Some((w, h, block, new));
        out
    }

    /// Links this scan's sightings into the chains (the best scores first, each to the
    /// nearest chain that may take it), starts chains for the rest, and marks the chains
    /// that fell.
    fn follow(&mut self, mut found: Vec<Sighting>, now: OffsetDateTime, width: f32) {
        found.sort_by(|a, b| b.score.total_cmp(&a.score));
        // One sighting per person: the best of those whose hip centres lie within half a
        // radius of each other (neighbouring tiles see the same person).
        let mut kept: Vec<Sighting> = Vec::new();
        for s in found {
            let (min_r, max_r) = (width * TILE_OF_WIDTH / 24.0, width * TILE_OF_WIDTH / 2.0);
            if !(min_r..=max_r).contains(&s.radius) {
                continue;
            }
            if kept.iter().all(|k| dist(k.hip, s.hip) > 0.5 * k.radius.max(s.radius)) {
                kept.push(s);
            }
        }
        let mut taken = vec![false; self.chains.len()];
        for s in kept {
            let best = self
                .chains
                .iter()
                .enumerate()
                .filter(|(i, c)| !taken[*i] && c.seen.last().is_some_and(|l| links(l, &s)))
                .min_by(|a, b| {
                    let d = |c: &Chain| c.seen.last().map_or(f32::MAX, |l| dist(l.hip, s.hip));
                    d(a.1).total_cmp(&d(b.1))
                })
                .map(|(i, _)| i);
            match best {
                Some(i) => {
                    taken[i] = true;
                    self.chains[i].seen.push(s);
                }
                None => {
                    self.next_id += 1;
                    self.chains.push(Chain {
                        id: ID_BASE + self.next_id,
                        seen: vec![s],
                        landed: None,
                    });
                    taken.push(true);
                }
            }
        }
        let keep = self.cfg.fall_window_secs + self.cfg.still_secs + 1.0;
        for i in 0..self.chains.len() {
            if self.chains[i].landed.is_none() {
                let fell = landing(&self.chains[i].seen, &self.cfg);
                let fell = fell.filter(|f| !scene_moved(&self.chains, i, f));
                self.chains[i].landed = fell.map(|f| f.landed);
            }
        }
        // Only what a fall still to be found could use is kept (and the last sighting).
        for c in &mut self.chains {
            c.seen.retain(|s| secs(s.at, now) <= keep);
        }
    }

    /// The fallen chains as person tracks.
    fn fallen(&self, frame: &Frame) -> Vec<Track> {
        let (w, h) = (frame.width as f32, frame.height as f32);
        self.chains
            .iter()
            .filter_map(|c| {
                let landed = c.landed?;
                let s = c.seen.last()?;
                let (x, y, r) = (s.hip.0, s.hip.1, s.radius);
                let bbox = BBox {
                    x1: ((x - r) / w).clamp(0.0, 1.0),
                    y1: ((y - r) / h).clamp(0.0, 1.0),
                    x2: ((x + r) / w).clamp(0.0, 1.0),
                    y2: ((y + r) / h).clamp(0.0, 1.0),
                };
                let state =
                    if s.at == frame.captured_at { TrackState::Tracked } else { TrackState::Lost };
                Some(Track {
                    id: c.id,
                    class_id: 0,
                    class: "person".into(),
                    score: s.score,
                    bbox,
                    state,
                    hits: c.seen.len() as u32,
                    first_seen: landed,
                    last_seen: s.at,
                    velocity: (0.0, 0.0),
                    speed_kmh: None,
                    origin: None,
                    pose: None,
                })
            })
            .collect()
    }
}

/// Whether sighting `s` may continue a chain whose last sighting is `l`: soon enough, at most
/// one body radius to the side, one up or three down (the larger radius of the two).
fn links(l: &Sighting, s: &Sighting) -> bool {
    let r = l.radius.max(s.radius);
    let (dx, dy) = (s.hip.0 - l.hip.0, s.hip.1 - l.hip.1);
    let dt = secs(l.at, s.at);
    dt > 0.0 && dt <= LINK_SECS && dx.abs() <= r && (-r..=3.0 * r).contains(&dy)
}

/// A fall found in a chain: where its drop started and landed, and how far it came down.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Drop {
    pub from: OffsetDateTime,
    pub landed: OffsetDateTime,
    /// The drop of the hip centre, pixels.
    pub px: f32,
}

/// The fall in `seen` (a chain's sightings, oldest first), if it holds one: see the module
/// docs.
pub fn landing(seen: &[Sighting], cfg: &FallScanConfig) -> Option<Drop> {
    let last = seen.last()?;
    for (b, land) in seen.iter().enumerate() {
        if secs(land.at, last.at) + 1e-6 < cfg.still_secs {
            break;
        }
        let stay: Vec<&Sighting> =
            seen[b..].iter().filter(|s| secs(land.at, s.at) <= cfg.still_secs + 1e-6).collect();
        // The body's size lying: the median radius of the stay (one sighting's may be off).
        let mut radii: Vec<f32> = stay.iter().map(|s| s.radius).collect();
        radii.sort_by(f32::total_cmp);
        let r = radii[radii.len() / 2];
        let still = stay.iter().all(|s| dist(s.hip, land.hip) <= r);
        let lying = stay.iter().filter(|s| f64::from(s.axis_deg) >= cfg.lying_deg).count();
        if !still || 2 * lying < stay.len() {
            continue;
        }
        for a in (0..b).rev() {
            let from = &seen[a];
            if secs(from.at, land.at) > cfg.fall_window_secs + 1e-6 {
                break;
            }
            let (dx, dy) = ((land.hip.0 - from.hip.0).abs(), land.hip.1 - from.hip.1);
            if f64::from(dy) < cfg.min_drop_radii * f64::from(r) || dy <= 2.0 * dx {
                continue;
            }
            let steps: Vec<f32> = seen[a..=b].windows(2).map(|p| p[1].hip.1 - p[0].hip.1).collect();
            let continuous =
                steps.len() >= 2 && steps.iter().all(|&s| s >= -0.25 * r && s <= dy * 2.0 / 3.0);
            if continuous {
                return Some(Drop { from: from.at, landed: land.at, px: dy });
            }
        }
    }
    None
}

/// Whether another chain than `faller` came down by at least half of drop `f` over the same
/// time (its sightings within [`LINK_SECS`] of the drop's start and landing): the camera
/// tilted, and everything it sees moved down.
fn scene_moved(chains: &[Chain], faller: usize, f: &Drop) -> bool {
    let near = |c: &Chain, t: OffsetDateTime| {
        c.seen
            .iter()
            .filter(|s| secs(s.at, t).abs() <= LINK_SECS)
            .min_by(|a, b| secs(a.at, t).abs().total_cmp(&secs(b.at, t).abs()))
            .map(|s| s.hip.1)
    };
    chains.iter().enumerate().filter(|(i, _)| *i != faller).any(|(_, c)| {
        matches!((near(c, f.from), near(c, f.landed)), (Some(a), Some(b)) if b - a >= 0.5 * f.px)
    })
}

/// The scan's tiles of a `w` × `h` frame: squares of side 0.3 × `w` (at most `h`), half
/// overlapping, the last row and column flush with the frame's edges.
pub fn layout(w: u32, h: u32) -> Vec<Tile> {
    let side = ((w as f32 * TILE_OF_WIDTH).round() as u32).clamp(1, h.max(1)).min(w.max(1));
    let starts = |len: u32| {
        let mut v: Vec<u32> =
            (0..=len.saturating_sub(side)).step_by((side / 2).max(1) as usize).collect();
        if v.last().is_some_and(|&l| l + side < len) {
            v.push(len - side);
        }
        v
    };
    let (xs, ys) = (starts(w), starts(h));
    ys.iter().flat_map(|&y| xs.iter().map(move |&x| Tile { x, y, w: side, h: side })).collect()
}

/// Block means (grey, `block` × `block` pixels) of a packed RGB24 frame.
fn grey(rgb: &[u8], w: u32, h: u32, block: u32) -> Vec<u8> {
    let (gw, gh) = (w / block, h / block);
    let mut out = Vec::with_capacity((gw * gh) as usize);
    for gy in 0..gh {
        for gx in 0..gw {
            let mut sum = 0u32;
            for y in gy * block..(gy + 1) * block {
                let row = (y * w + gx * block) as usize * 3;
                for p in rgb.get(row..row + block as usize * 3).unwrap_or(&[]).chunks_exact(3) {
                    sum +=
                        (u32::from(p[0]) * 77 + u32::from(p[1]) * 150 + u32::from(p[2]) * 29) >> 8;
                }
            }
            out.push((sum / (block * block)) as u8);
        }
    }
    out
}

fn dist(a: (f32, f32), b: (f32, f32)) -> f32 {
    (a.0 - b.0).hypot(a.1 - b.1)
}

fn secs(from: OffsetDateTime, to: OffsetDateTime) -> f64 {
    (to - from).as_seconds_f64()
}

impl Detectors {
    /// Runs the pose-detector model `model` on each tile of `frame` and returns its
    /// detections in frame coordinates, each with its tile (normalised to the frame).
    pub fn scan(
        &mut self,
        model: &str,
        frame: &Frame,
        tiles: &[Tile],
    ) -> anyhow::Result<Vec<(Detection, BBox)>> {
        let Some(d) = self.models.get_mut(model) else {
            anyhow::bail!("model `{model}` is not loaded");
        };
        let (w, h) = (frame.width as f32, frame.height as f32);
        let mut out = Vec::new();
        for (i, t) in tiles.iter().enumerate() {
            let rgb = crop(&frame.rgb, frame.width, t);
            let area = BBox {
                x1: t.x as f32 / w,
                y1: t.y as f32 / h,
                x2: (t.x + t.w) as f32 / w,
                y2: (t.y + t.h) as f32 / h,
            };
            for det in d.detect(&rgb, t.w, t.h)? {
                out.push((to_frame(det, tiles, i, frame.width, frame.height).det, area));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> FallScanConfig {
        FallScanConfig {
            model: "scan".into(),
            scan_fps: 5.0,
            min_score: 0.5,
            min_drop_radii: 2.0,
            fall_window_secs: 1.5,
            still_secs: 2.0,
            lying_deg: 60.0,
            zones: vec![],
        }
    }

    fn at(t: f64) -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + time::Duration::seconds_f64(1.8e9 + t)
    }

    /// Sightings every 0.2 s from `(t, y, axis)`; x 300, radius 40.
    fn chain(points: &[(f64, f32, f32)]) -> Vec<Sighting> {
        points
            .iter()
            .map(|&(t, y, axis_deg)| Sighting {
                at: at(t),
                hip: (300.0, y),
                radius: 40.0,
                axis_deg,
                score: 0.7,
            })
            .collect()
    }

    /// Lying still at `y` from `t0` for `secs`, every 0.2 s.
    fn lying(t0: f64, y: f32, secs: f64) -> Vec<(f64, f32, f32)> {
        (0..=(secs / 0.2).round() as usize).map(|i| (t0 + i as f64 * 0.2, y, 110.0)).collect()
    }

    #[test]
    fn a_fall_from_height_lands_and_lies_still() {
        // Upright on a walkway at y 100, down 2.5 radii (100 px) in 0.6 s, then lying still;
        // the latest start that makes the fall (2 radii in 2 steps) is the drop's.
        let mut p = vec![(0.0, 100.0, 5.0), (0.2, 102.0, 5.0), (0.4, 120.0, 90.0)];
        p.extend([(0.6, 160.0, 150.0)]);
        p.extend(lying(0.8, 200.0, 2.0));
        let seen = chain(&p);
        assert_eq!(
            landing(&seen, &cfg()).map(|f| (f.from, f.landed, f.px)),
            Some((at(0.4), at(0.8), 80.0))
        );
        // Not before it has lain still for `still_secs`.
        assert_eq!(landing(&seen[..seen.len() - 1], &cfg()), None);
        // A smaller drop than `min_drop_radii` is no fall from height.
        let c = FallScanConfig { min_drop_radii: 3.0, ..cfg() };
        assert_eq!(landing(&seen, &c), None);
    }

    #[test]
    fn sitting_walking_and_mislinks_are_not_falls() {
        // Sitting down: the hips come down less than a radius.
        let mut sit = vec![(0.0, 100.0, 5.0), (0.2, 110.0, 10.0), (0.4, 125.0, 20.0)];
        sit.extend(lying(0.6, 130.0, 2.0));
        assert_eq!(landing(&chain(&sit), &cfg()), None);
        // Coming down as far but upright (jumping off a step and standing there).
        let mut stand = vec![(0.0, 100.0, 5.0), (0.2, 140.0, 5.0), (0.4, 180.0, 5.0)];
        stand.extend((0..=10).map(|i| (0.6 + i as f64 * 0.2, 200.0, 5.0)));
        assert_eq!(landing(&chain(&stand), &cfg()), None);
        // Walking toward the camera: down 2 radii a second, and on without stopping.
        let walk: Vec<_> =
            (0..20).map(|i| (i as f64 * 0.2, 100.0 + 16.0 * i as f32, 90.0)).collect();
        assert_eq!(landing(&chain(&walk), &cfg()), None);
        // Two people linked by mistake: the whole drop in one jump.
        let mut jump = vec![(0.0, 100.0, 5.0), (0.2, 100.0, 5.0), (0.4, 200.0, 110.0)];
        jump.extend(lying(0.6, 200.0, 2.0));
        assert_eq!(landing(&chain(&jump), &cfg()), None);
        // Down fast, then up and away: not still.
        let mut away = vec![(0.0, 100.0, 5.0), (0.2, 140.0, 90.0), (0.4, 180.0, 90.0)];
        away.extend((0..=10).map(|i| (0.6 + i as f64 * 0.2, 200.0 - 12.0 * i as f32, 90.0)));
        assert_eq!(landing(&chain(&away), &cfg()), None);
        // Lying from the start (a bench): nothing came down.
        assert_eq!(landing(&chain(&lying(0.0, 200.0, 5.0)), &cfg()), None);
    }

    /// A camera with a zone `deck` (the top-left corner) and the table `extra`.
    fn cam(extra: &str) -> crate::config::CameraConfig {
        let text = format!(
            "box_id='b'\ndata_dir='/tmp'\n[models]\nx='{}/models/blazepose-detector-224/model.toml'\n\
             [[cameras]]\nid='c'\nurl='x.mp4'\nmodels=[]\n\
             enabled=false\n[[cameras.zones]]\nname='deck'\n\
             points=[[0.0,0.0],[0.3,0.0],[0.3,0.3]]\n{extra}",
            env!("CARGO_MANIFEST_DIR")
        );
        crate::config::Config::parse(&text, std::path::Path::new("/")).unwrap().cameras[0].clone()
    }

    fn frame(t: f64, rgb: Vec<u8>) -> Frame {
        Frame {
            camera_id: std::sync::Arc::from("cam"),
            index: 0,
            width: 640,
            height: 352,
            rgb: std::sync::Arc::from(rgb),
            pts_ns: None,
            captured_at: at(t),
            captured_instant: std::time::Instant::now(),
        }
    }

    /// The first scan covers every tile (of the zones); then only tiles where the picture
    /// changed.
    #[test]
    fn only_moving_tiles_in_the_zones_are_scanned() {
        let grey = vec![100u8; 640 * 352 * 3];
        let mut moved = grey.clone();
        // A 40 × 40 px square brightens at (500, 250): the 2 tiles (or 4) around it move.
        for y in 250..290 {
            for x in 500..540 {
                moved[(y * 640 + x) * 3..(y * 640 + x) * 3 + 3].copy_from_slice(&[220; 3]);
            }
        }
        let mut scan = FallScan::new(cfg(), &cam(""));
        assert_eq!(scan.moving_tiles(&frame(0.0, grey.clone())).len(), 18);
        assert!(scan.moving_tiles(&frame(0.2, grey.clone())).is_empty(), "nothing moved");
        let tiles = scan.moving_tiles(&frame(0.4, moved.clone()));
        assert!(!tiles.is_empty() && tiles.len() <= 4, "{tiles:?}");
        assert!(tiles.iter().all(|t| t.x <= 500 && t.x + t.w >= 540 && t.y + t.h > 250));
        // Limited to a zone in the top-left corner: 4 tiles, and the square is outside it.
        let limited = FallScanConfig { zones: vec!["deck".into()], ..cfg() };
        let mut scan =
            FallScan::new(limited, &cam("[cameras.fall_scan]\nmodel='x'\nzones=['deck']"));
        assert_eq!(scan.moving_tiles(&frame(0.0, grey)).len(), 4);
        assert!(scan.moving_tiles(&frame(0.2, moved)).is_empty());
    }

    /// Through `follow`, scan by scan: a person falls beside a sign that stays put (a fall),
    /// and the same with the sign coming down too (the camera tilted: no fall).
    #[test]
    fn a_drop_that_the_whole_scene_makes_is_not_a_fall() {
        let run = |sign_moves: bool| {
            let mut scan = FallScan::new(cfg(), &cam(""));
            let person = [100.0, 102.0, 120.0, 160.0, 200.0];
            for i in 0..16 {
                let t = i as f64 * 0.2;
                let y = person.get(i).copied().unwrap_or(200.0);
                let axis = if i < 2 { 5.0 } else { 110.0 };
                let sign_y = if sign_moves { 60.0 + (y - 100.0) } else { 60.0 };
                let s = |x: f32, y: f32, axis_deg: f32| Sighting {
                    at: at(t),
                    hip: (x, y),
                    radius: 40.0,
                    axis_deg,
                    score: 0.8,
                };
                scan.follow(vec![s(300.0, y, axis), s(500.0, sign_y, 0.0)], at(t), 640.0);
            }
            scan.chains.iter().filter(|c| c.landed.is_some()).count()
        };
        assert_eq!(run(false), 1, "a fall beside a still sign");
        assert_eq!(run(true), 0, "the camera tilted");
    }

    #[test]
    fn links_allow_a_fall_but_not_a_sideways_jump() {
        let s = |t: f64, x: f32, y: f32| Sighting {
            at: at(t),
            hip: (x, y),
            radius: 40.0,
            axis_deg: 0.0,
            score: 0.9,
        };
        let l = s(0.0, 300.0, 100.0);
        assert!(links(&l, &s(0.2, 320.0, 210.0)), "down 2.75 radii");
        assert!(!links(&l, &s(0.2, 350.0, 110.0)), "1.25 radii to the side");
        assert!(!links(&l, &s(0.2, 300.0, 50.0)), "1.25 radii up");
        assert!(!links(&l, &s(0.8, 300.0, 100.0)), "too long ago");
        assert!(!links(&l, &s(0.0, 300.0, 100.0)), "the same scan");
    }

    #[test]
    fn tiles_cover_the_frame_and_keypoints_at_a_tile_edge_are_not_used() {
        for (w, h) in [(640, 352), (1920, 1080), (352, 640), (100, 20), (1, 1)] {
            let tiles = layout(w, h);
            assert!(!tiles.is_empty(), "{w}x{h}");
            for t in &tiles {
                assert!(t.x + t.w <= w && t.y + t.h <= h, "{w}x{h}: {t:?}");
            }
            let covered = |x: u32, y: u32| {
                tiles.iter().any(|t| x >= t.x && x < t.x + t.w && y >= t.y && y < t.y + t.h)
            };
            assert!(covered(0, 0) && covered(w - 1, h - 1) && covered(w / 2, h / 2), "{w}x{h}");
        }
        assert_eq!(layout(640, 352).len(), 18, "192-px tiles, 96 px apart");
        let tile = BBox { x1: 0.25, y1: 0.25, x2: 0.75, y2: 0.75 };
        let kp = |x: f32, y: f32| crate::types::Keypoint { x, y, score: 0.8 };
        let det = |k: Vec<crate::types::Keypoint>| Detection {
            keypoints: Some(k),
            ..Detection::new(0, "person", 0.8, tile)
        };
        let s = Sighting::of(&det(vec![kp(0.5, 0.5), kp(0.6, 0.5)]), at(0.0), 200, 100, &tile)
            .expect("inside");
        assert!((s.radius - 20.0).abs() < 1e-3 && (s.axis_deg - 90.0).abs() < 1e-3, "{s:?}");
        // The body point clamped to the tile's edge: its circle is not known.
        assert_eq!(
            Sighting::of(&det(vec![kp(0.5, 0.5), kp(0.75, 0.5)]), at(0.0), 200, 100, &tile),
            None
        );
        assert_eq!(Sighting::of(&det(vec![kp(0.5, 0.5)]), at(0.0), 200, 100, &tile), None);
        assert_eq!(
            Sighting::of(&det(vec![kp(f32::NAN, 0.5), kp(0.6, 0.5)]), at(0.0), 200, 100, &tile),
            None
        );
    }
}
