//! Tiled detection (`[cameras.tiles]`): the frame is cut into `grid` × `grid` overlapping
//! tiles, the camera's models run on each tile (which the model scales up to its input, so
//! small, far objects get more pixels), and the tile boxes are mapped back to frame
//! coordinates and merged with the full frame's boxes.
//!
//! The merge is a class-aware greedy NMS over the full-frame and tile boxes. A tile box that
//! touches an inner tile border (not the frame's border) is *cut*: it may be only part of an
//! object. Whole boxes are kept first (by score); a cut box is then dropped when a kept box of
//! its class covers most of it (the whole object, seen in the full frame or a neighbouring
//! tile, which the overlap allows), and merged with a kept cut box of its class from another
//! tile when they overlap (an object split by the border that no tile saw whole).

use crate::geometry::BBox;
use crate::types::Detection;

/// Two boxes of a class with at least this IoU are one object.
pub const MERGE_IOU: f32 = 0.5;
/// A cut box whose area lies at least this much inside a kept box of its class is part of it.
pub const COVERED: f32 = 0.6;
/// Two cut boxes of a class from different tiles with at least this IoU are one split object.
pub const SPLIT_IOU: f32 = 0.1;
/// A box edge within this many pixels of an inner tile border touches it.
const BORDER_PX: f32 = 2.0;

/// One tile: its top-left corner and size, in frame pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tile {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

/// The `grid` × `grid` tiles of a `width` × `height` frame, each overlapping its neighbour by
/// `overlap` of its size, together covering the frame (row by row).
pub fn layout(width: u32, height: u32, grid: u32, overlap: f64) -> Vec<Tile> {
    let xs = axis(width, grid, overlap);
    let ys = axis(height, grid, overlap);
    ys.iter().flat_map(|&(y, h)| xs.iter().map(move |&(x, w)| Tile { x, y, w, h })).collect()
}

/// Start and size of `grid` segments of a `len` axis: size `len / (grid − (grid − 1)·overlap)`,
/// spread evenly from 0 to the end.
fn axis(len: u32, grid: u32, overlap: f64) -> Vec<(u32, u32)> {
    let g = grid.max(1);
    if g == 1 || len == 0 {
        return vec![(0, len)];
    }
    let size = ((len as f64 / (g as f64 - (g - 1) as f64 * overlap)).ceil() as u32).min(len);
    let span = (len - size) as f64;
    (0..g).map(|i| ((span * i as f64 / (g - 1) as f64).round() as u32, size)).collect()
}

/// The pixels of `tile` from a tightly packed RGB24 frame `width` pixels wide.
pub fn crop(rgb: &[u8], width: u32, tile: &Tile) -> Vec<u8> {
    let (stride, row) = (width as usize * 3, tile.w as usize * 3);
    let mut out = Vec::with_capacity(row * tile.h as usize);
    for y in tile.y as usize..(tile.y + tile.h) as usize {
        let start = y * stride + tile.x as usize * 3;
        out.extend_from_slice(&rgb[start..start + row]);
    }
    out
}

/// A detection of a tile, in frame coordinates.
#[derive(Debug, Clone)]
pub struct Piece {
    pub det: Detection,
    /// Which tile it came from.
    pub tile: usize,
    /// It touches an inner border of its tile: it may be part of an object.
    pub cut: bool,
}

/// Maps `det` (box normalised to tile `index` of `tiles`) to frame coordinates (normalised to
/// the `width` × `height` frame) and marks whether it is cut by an inner tile border.
pub fn to_frame(
    mut det: Detection,
    tiles: &[Tile],
    index: usize,
    width: u32,
    height: u32,
) -> Piece {
    let t = tiles[index];
    let (fw, fh) = (width as f32, height as f32);
    let b = det.bbox;
    let px = |v: f32, off: u32, size: u32| off as f32 + v * size as f32;
    let (x1, x2) = (px(b.x1, t.x, t.w), px(b.x2, t.x, t.w));
    let (y1, y2) = (px(b.y1, t.y, t.h), px(b.y2, t.y, t.h));
    // An edge of the tile is inner when the frame goes on beyond it.
    let cut = (t.x > 0 && x1 - t.x as f32 <= BORDER_PX)
        || (t.x + t.w < width && (t.x + t.w) as f32 - x2 <= BORDER_PX)
        || (t.y > 0 && y1 - t.y as f32 <= BORDER_PX)
        || (t.y + t.h < height && (t.y + t.h) as f32 - y2 <= BORDER_PX);
    det.bbox = BBox { x1: x1 / fw, y1: y1 / fh, x2: x2 / fw, y2: y2 / fh };
    for k in det.keypoints.iter_mut().flatten() {
        (k.x, k.y) = (px(k.x, t.x, t.w) / fw, px(k.y, t.y, t.h) / fh);
    }
    Piece { det, tile: index, cut }
}

/// Merges the full frame's detections with the tiles' (see the module docs).
pub fn merge(full: Vec<Detection>, pieces: Vec<Piece>) -> Vec<Detection> {
    let whole = full.into_iter().map(|det| Piece { det, tile: usize::MAX, cut: false });
    let mut order: Vec<Piece> = whole.chain(pieces).collect();
    order.sort_by(|a, b| a.cut.cmp(&b.cut).then(b.det.score.total_cmp(&a.det.score)));
    let mut kept: Vec<Piece> = Vec::new();
    'next: for p in order {
        for k in kept.iter_mut().filter(|k| k.det.class == p.det.class) {
            let (a, b) = (&p.det.bbox, &k.det.bbox);
            if a.iou(b) >= MERGE_IOU || (p.cut && inside(a, b) >= COVERED) {
                continue 'next;
            }
            if p.cut && k.cut && k.tile != p.tile && a.iou(b) >= SPLIT_IOU {
                k.det.bbox = BBox {
                    x1: a.x1.min(b.x1),
                    y1: a.y1.min(b.y1),
                    x2: a.x2.max(b.x2),
                    y2: a.y2.max(b.y2),
                };
                k.det.score = k.det.score.max(p.det.score);
                continue 'next;
            }
        }
        kept.push(p);
    }
    kept.into_iter().map(|p| p.det).collect()
}

/// The fraction of `a`'s area inside `b`.
fn inside(a: &BBox, b: &BBox) -> f32 {
    let iw = (a.x2.min(b.x2) - a.x1.max(b.x1)).max(0.0);
    let ih = (a.y2.min(b.y2) - a.y1.max(b.y1)).max(0.0);
    let area = a.area();
    if area <= 0.0 {
        0.0
    } else {
        iw * ih / area
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(class: &str, score: f32, x1: f32, y1: f32, x2: f32, y2: f32) -> Detection {
        Detection::new(0, class, score, BBox { x1, y1, x2, y2 })
    }

    fn close(a: &BBox, b: [f32; 4]) -> bool {
        [a.x1 - b[0], a.y1 - b[1], a.x2 - b[2], a.y2 - b[3]].iter().all(|d| d.abs() < 1e-4)
    }

    #[test]
    fn layout_covers_the_frame_with_the_overlap() {
        let t = layout(640, 360, 2, 0.2);
        assert_eq!(t.len(), 4);
        // 640 / 1.8 = 355.6 → 356 wide, at 0 and 284 (overlap 72 px ≈ 0.2 · 356).
        assert_eq!(t[0], Tile { x: 0, y: 0, w: 356, h: 200 });
        assert_eq!(t[1], Tile { x: 284, y: 0, w: 356, h: 200 });
        assert_eq!(t[2], Tile { x: 0, y: 160, w: 356, h: 200 });
        assert_eq!(t[3], Tile { x: 284, y: 160, w: 356, h: 200 });
        for (w, h, g, o) in [(641, 359, 3, 0.25), (100, 80, 4, 0.0), (1280, 720, 2, 0.5)] {
            let t = layout(w, h, g, o);
            assert_eq!(t.len(), (g * g) as usize);
            assert!(t.iter().all(|t| t.x + t.w <= w && t.y + t.h <= h), "{t:?}");
            assert_eq!(t.iter().map(|t| t.x + t.w).max(), Some(w));
            assert_eq!(t.iter().map(|t| t.y + t.h).max(), Some(h));
            // Neighbours overlap (or touch, without overlap): no gap.
            for i in 1..g as usize {
                assert!(t[i].x <= t[i - 1].x + t[i - 1].w, "{t:?}");
            }
        }
    }

    #[test]
    fn crop_takes_the_tile_rows() {
        // 4×2 frame, pixel (x, y) = [x, y, 7].
        let rgb: Vec<u8> = (0..2u8).flat_map(|y| (0..4u8).flat_map(move |x| [x, y, 7])).collect();
        let c = crop(&rgb, 4, &Tile { x: 1, y: 1, w: 2, h: 1 });
        assert_eq!(c, vec![1, 1, 7, 2, 1, 7]);
    }

    #[test]
    fn tile_boxes_map_to_frame_coordinates() {
        let tiles = layout(640, 360, 2, 0.2);
        // The middle of tile 3 (x 284–640, y 160–360): a box at 0.25–0.5 of the tile.
        let p = to_frame(det("car", 0.6, 0.25, 0.25, 0.5, 0.5), &tiles, 3, 640, 360);
        let want = [(284.0 + 89.0) / 640.0, 210.0 / 360.0, 462.0 / 640.0, 260.0 / 360.0];
        assert!(close(&p.det.bbox, want), "{:?}", p.det.bbox);
        assert!(!p.cut);
        assert_eq!((p.det.class.as_str(), p.det.score, p.tile), ("car", 0.6, 3));
        // Touching the tile's right edge, which is the frame's edge: not cut.
        assert!(!to_frame(det("car", 0.6, 0.8, 0.2, 1.0, 0.4), &tiles, 3, 640, 360).cut);
        // Touching its left edge (x = 284, inside the frame): cut.
        assert!(to_frame(det("car", 0.6, 0.0, 0.2, 0.1, 0.4), &tiles, 3, 640, 360).cut);
        // Tile 0: its right and bottom edges are inner.
        assert!(to_frame(det("car", 0.6, 0.9, 0.2, 1.0, 0.4), &tiles, 0, 640, 360).cut);
        assert!(to_frame(det("car", 0.6, 0.2, 0.8, 0.3, 0.999), &tiles, 0, 640, 360).cut);
        assert!(!to_frame(det("car", 0.6, 0.0, 0.0, 0.2, 0.2), &tiles, 0, 640, 360).cut);
    }

    #[test]
    fn merge_keeps_new_small_objects_and_drops_duplicates() {
        let piece = |d, tile, cut| Piece { det: d, tile, cut };
        let full = vec![det("car", 0.8, 0.10, 0.10, 0.30, 0.30)];
        let pieces = vec![
            // The same car seen in a tile (slightly different box): a duplicate.
            piece(det("car", 0.9, 0.11, 0.10, 0.31, 0.31), 0, false),
            // A far car only the tile found: kept.
            piece(det("car", 0.5, 0.60, 0.05, 0.64, 0.08), 1, false),
            // A truck box over the car: another class, kept (class-aware).
            piece(det("truck", 0.4, 0.10, 0.10, 0.30, 0.30), 0, false),
        ];
        let out = merge(full, pieces);
        let cars: Vec<_> = out.iter().filter(|d| d.class == "car").collect();
        assert_eq!(cars.len(), 2, "{out:?}");
        // The higher-scored of the two duplicate boxes stays.
        assert_eq!(cars[0].score, 0.9);
        assert_eq!(out.iter().filter(|d| d.class == "truck").count(), 1);
    }

    #[test]
    fn merge_handles_boxes_cut_by_tile_borders() {
        let piece = |d, tile, cut| Piece { det: d, tile, cut };
        // A bus across the border between tiles 0 and 1: the full frame sees it whole, tile 0
        // sees its left part (cut, with a higher score): the part goes, the whole bus stays.
        let full = vec![det("bus", 0.6, 0.40, 0.20, 0.60, 0.40)];
        let pieces = vec![piece(det("bus", 0.9, 0.40, 0.20, 0.555, 0.40), 0, true)];
        let out = merge(full, pieces);
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(close(&out[0].bbox, [0.40, 0.20, 0.60, 0.40]));

        // A car that no box saw whole: its two parts from tiles 0 and 1 (overlapping in the
        // overlap band) become one box spanning both, with the higher score.
        let pieces = vec![
            piece(det("car", 0.5, 0.50, 0.10, 0.555, 0.15), 0, true),
            piece(det("car", 0.7, 0.445, 0.10, 0.53, 0.16), 1, true),
        ];
        let out = merge(Vec::new(), pieces);
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(close(&out[0].bbox, [0.445, 0.10, 0.555, 0.16]), "{:?}", out[0].bbox);
        assert_eq!(out[0].score, 0.7);

        // A cut box nothing else covers is kept (a partly visible object at the border).
        let out = merge(
            vec![det("car", 0.8, 0.1, 0.1, 0.2, 0.2)],
            vec![piece(det("car", 0.5, 0.50, 0.50, 0.56, 0.55), 2, true)],
        );
        assert_eq!(out.len(), 2, "{out:?}");
    }
}
