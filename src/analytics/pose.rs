//! The pose stage (`[cameras.pose]`, docs/design/0026): a keypoints model runs on crops of
//! person tracks, not on whole frames. A whole wide frame leaves a person too few pixels at
//! the model's 256×256 input (MoveNet finds no one on a whole PETS frame), and a crop costs
//! one inference per person, so the stage picks few: confirmed person tracks matched on this
//! frame, inside the configured zones, whose last pose is at least `every_secs` old, oldest
//! first, at most `max_crops` per analysed frame. Each crop is the track's box grown by
//! `grow` of its height on every side (clipped to the frame); the pose of the crop that best
//! overlaps the track's box is mapped back to the frame and kept for the track.
//!
//! Every reported track then carries its latest pose ([`Track::pose`]), with the time it was
//! taken: rules see it even on frames where no crop ran, and while the track is lost (the
//! last pose before the detector lost the person), as long as the track's box still
//! overlaps the box the pose was taken on ([`SAME_BOX_IOU`]); a stale pose is not given.

use std::collections::HashMap;

use time::OffsetDateTime;

use super::tiles::{crop, to_frame, Tile};
use super::Detectors;
use crate::config::PoseConfig;
use crate::geometry::{point_in_polygon, Anchor, BBox};
use crate::types::{Frame, Pose, Track, TrackState};

/// A track's pose is its pose while its box overlaps the box the pose was taken on by at
/// least this IoU (the usual "same object" overlap). A box that moved or changed shape more
/// since (a fall turns it from tall to wide within a few frames; docs/design/0044) makes
/// the pose stale: the track carries none until its next crop, and rules use its box.
pub const SAME_BOX_IOU: f32 = 0.5;

/// One camera's pose stage: its config, the zones' polygons and each track's latest pose.
pub struct PoseStage {
    cfg: PoseConfig,
    zones: Vec<Vec<crate::geometry::Pt>>,
    /// Each track's latest pose and the track's box on the frame it was taken.
    poses: HashMap<u64, (Pose, BBox)>,
}

impl PoseStage {
    pub fn new(cfg: PoseConfig, cam: &crate::config::CameraConfig) -> PoseStage {
        let zones = cam
            .zones
            .iter()
            .filter(|z| cfg.zones.contains(&z.name))
            .map(|z| z.points.clone())
            .collect();
        PoseStage { cfg, zones, poses: HashMap::new() }
    }

    pub fn config(&self) -> &PoseConfig {
        &self.cfg
    }

    /// The tracks due for a crop on this frame, at most `max_crops`, posed longest ago first.
    fn due(&self, tracks: &[Track], now: OffsetDateTime) -> Vec<usize> {
        let mut due: Vec<(Option<OffsetDateTime>, usize)> = tracks
            .iter()
            .enumerate()
            .filter(|(_, t)| t.state == TrackState::Tracked && self.cfg.classes.contains(&t.class))
            .filter(|(_, t)| {
                self.zones.is_empty()
                    || self
                        .zones
                        .iter()
                        .any(|z| point_in_polygon(Anchor::BottomCenter.point(&t.bbox), z))
            })
            .map(|(i, t)| (self.poses.get(&t.id).map(|p| p.0.at), i))
            .filter(|(at, _)| {
                at.is_none_or(|at| (now - at).as_seconds_f64() >= self.cfg.every_secs - 1e-6)
            })
            .collect();
        due.sort_by_key(|(at, _)| *at);
        due.into_iter().take(self.cfg.max_crops as usize).map(|(_, i)| i).collect()
    }

    /// Poses the due tracks of `frame` with `detectors`, then gives every track its latest
    /// pose and forgets the poses of tracks no longer reported.
    pub fn run(&mut self, detectors: Option<&mut Detectors>, frame: &Frame, tracks: &mut [Track]) {
        if let Some(d) = detectors {
            for i in self.due(tracks, frame.captured_at) {
                let t = &tracks[i];
                let margin = crop_margin(&t.bbox, &self.cfg, frame.width, frame.height);
                match d.pose(&self.cfg.model, frame, &t.bbox, margin) {
                    Ok(Some(p)) => {
                        self.poses.insert(t.id, (Pose { at: frame.captured_at, ..p }, t.bbox));
                    }
                    // No pose in the crop: the old one stays (and ages).
                    Ok(None) => {}
                    Err(e) => tracing::warn!(frame = frame.index, "pose: {e:#}"),
                }
            }
        }
        self.poses.retain(|id, _| tracks.iter().any(|t| t.id == *id));
        for t in tracks.iter_mut() {
            t.pose = self
                .poses
                .get(&t.id)
                .filter(|(_, b)| b.iou(&t.bbox) >= SAME_BOX_IOU)
                .map(|(p, _)| p.clone());
        }
    }
}

/// How far (pixels) the crop of box `b` reaches beyond it on each side on a `width` ×
/// `height` frame: `grow` of its height, or for a box wider than tall (a person lying, or a
/// part of a lying body) `wide_grow` of its width.
pub fn crop_margin(b: &BBox, cfg: &PoseConfig, width: u32, height: u32) -> f32 {
    let (bw, bh) = ((b.x2 - b.x1) * width as f32, (b.y2 - b.y1) * height as f32);
    if bw > bh {
        cfg.wide_grow * bw
    } else {
        cfg.grow * bh
    }
}

/// The crop around `b` (normalised) grown by `margin` pixels on each side, clipped to the
/// `width` × `height` frame; None when empty.
pub fn crop_tile(b: &BBox, margin: f32, width: u32, height: u32) -> Option<Tile> {
    let (w, h) = (width as f32, height as f32);
    let m = margin.max(0.0);
    let x1 = (b.x1 * w - m).floor().clamp(0.0, w) as u32;
    let y1 = (b.y1 * h - m).floor().clamp(0.0, h) as u32;
    let x2 = (b.x2 * w + m).ceil().clamp(0.0, w) as u32;
    let y2 = (b.y2 * h + m).ceil().clamp(0.0, h) as u32;
    (x2 > x1 + 1 && y2 > y1 + 1).then(|| Tile { x: x1, y: y1, w: x2 - x1, h: y2 - y1 })
}

impl Detectors {
    /// Runs the keypoints model `model` on the crop around `bbox` of `frame` (grown by
    /// `margin` pixels on each side) and returns the pose whose box best overlaps `bbox`, in frame
    /// coordinates (its `at` is the frame's capture time).
    pub fn pose(
        &mut self,
        model: &str,
        frame: &Frame,
        bbox: &BBox,
        margin: f32,
    ) -> anyhow::Result<Option<Pose>> {
        let Some(d) = self.models.get_mut(model) else {
            anyhow::bail!("model `{model}` is not loaded");
        };
        let Some(tile) = crop_tile(bbox, margin, frame.width, frame.height) else {
            return Ok(None);
        };
        let rgb = crop(&frame.rgb, frame.width, &tile);
        let tiles = [tile];
        let best = d
            .detect(&rgb, tile.w, tile.h)?
            .into_iter()
            .filter(|p| p.keypoints.is_some())
            .map(|p| to_frame(p, &tiles, 0, frame.width, frame.height).det)
            .map(|p| (p.bbox.iou(bbox), p))
            .filter(|(iou, _)| *iou > 0.0)
            .max_by(|a, b| a.0.total_cmp(&b.0));
        Ok(best.and_then(|(_, p)| {
            Some(Pose { at: frame.captured_at, score: p.score, keypoints: p.keypoints? })
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crops_grow_and_clip_to_the_frame() {
        let b = BBox { x1: 0.5, y1: 0.25, x2: 0.6, y2: 0.75 };
        // 100×100 frame: box 50..60 × 25..75, grown by 0.25 × 50 px = 12.5 px.
        assert_eq!(crop_tile(&b, 12.5, 100, 100), Some(Tile { x: 37, y: 12, w: 36, h: 76 }));
        let edge = BBox { x1: 0.0, y1: 0.8, x2: 0.1, y2: 1.0 };
        assert_eq!(crop_tile(&edge, 10.0, 100, 100), Some(Tile { x: 0, y: 70, w: 20, h: 30 }));
        assert_eq!(crop_tile(&BBox { x1: 0.5, y1: 0.5, x2: 0.5, y2: 0.5 }, 0.0, 100, 100), None);
    }

    #[test]
    fn wide_boxes_get_the_wide_margin() {
        let cfg = PoseConfig {
            model: "pose".into(),
            every_secs: 0.2,
            max_crops: 2,
            grow: 0.25,
            wide_grow: 1.0,
            zones: vec![],
            classes: vec!["person".into()],
        };
        // 200×100 frame. Standing: 20 × 40 px → 0.25 × 40 = 10 px.
        let up = BBox { x1: 0.5, y1: 0.2, x2: 0.6, y2: 0.6 };
        assert!((crop_margin(&up, &cfg, 200, 100) - 10.0).abs() < 1e-4);
        // Lying: 60 × 20 px → 1.0 × 60 = 60 px, the body's length beyond the box.
        let lying = BBox { x1: 0.3, y1: 0.6, x2: 0.6, y2: 0.8 };
        assert!((crop_margin(&lying, &cfg, 200, 100) - 60.0).abs() < 1e-4);
    }
}
