//! JPEG encoding of frames with detection boxes drawn on (event snapshots, `latest.jpg`).

use opencv::core::{Mat, Point, Rect, Scalar, Vector, CV_8UC3};
use opencv::prelude::*;
use opencv::{imgcodecs, imgproc};

use super::StoreError;
use crate::types::{Detection, Frame, Keypoint, SKELETON};

/// Keypoints scoring below this are not drawn (MoveNet's authors' suggested cut-off).
pub const KEYPOINT_DRAW_SCORE: f32 = 0.3;

/// Box colours (RGB), picked by class id.
const PALETTE: [(u8, u8, u8); 8] = [
    (255, 56, 56),
    (72, 249, 10),
    (0, 194, 255),
    (255, 178, 29),
    (207, 210, 49),
    (146, 204, 23),
    (255, 55, 199),
    (52, 69, 147),
];

/// Encodes `frame` as a JPEG of the given quality (1–100), with the boxes of `objects`
/// and a "class score" label over each, and the skeleton of objects with keypoints (limbs
/// in the box colour, joints as white dots; keypoints under [`KEYPOINT_DRAW_SCORE`] left out). The frame itself is never modified. OpenCV's
/// encoder (libjpeg-turbo) is used: at 768x576 it takes a fraction of the time of the
/// `image` crate's (docs/performance.md, "Live view").
pub fn encode_jpeg(
    frame: &Frame,
    objects: &[Detection],
    quality: u8,
) -> Result<Vec<u8>, StoreError> {
    let (w, h) = (frame.width, frame.height);
    let expected = (w as usize).checked_mul(h as usize).and_then(|n| n.checked_mul(3));
    if w == 0 || h == 0 || w > 65_535 || h > 65_535 || expected != Some(frame.rgb.len()) {
        return Err(StoreError::Image(format!(
            "frame {}x{} of camera {} has {} bytes of RGB (expected {})",
            w,
            h,
            frame.camera_id,
            frame.rgb.len(),
            expected.map_or_else(|| "overflow".to_string(), |n| n.to_string())
        )));
    }
    let encode = || -> opencv::Result<Vec<u8>> {
        let mut rgb =
            Mat::new_rows_cols_with_default(h as i32, w as i32, CV_8UC3, Scalar::all(0.0))?;
        rgb.data_bytes_mut()?.copy_from_slice(&frame.rgb);
        let mut bgr = Mat::default();
        imgproc::cvt_color_def(&rgb, &mut bgr, imgproc::COLOR_RGB2BGR)?;
        draw_boxes(&mut bgr, objects)?;
        let mut out = Vector::<u8>::new();
        let params = Vector::from_slice(&[
            imgcodecs::IMWRITE_JPEG_QUALITY,
            i32::from(quality.clamp(1, 100)),
        ]);
        imgcodecs::imencode(".jpg", &bgr, &mut out, &params)?;
        Ok(out.to_vec())
    };
    encode().map_err(|e| {
        StoreError::Image(format!("encoding JPEG for camera {}: {e}", frame.camera_id))
    })
}

/// Draws boxes and labels onto a BGR image.
fn draw_boxes(mat: &mut Mat, objects: &[Detection]) -> opencv::Result<()> {
    let (w, h) = (mat.cols() as u32, mat.rows() as u32);
    let (wf, hf) = (w as f32, h as f32);
    let thickness = ((w.max(h) as f32) / 320.0).round().clamp(1.0, 4.0) as i32;
    let font = imgproc::FONT_HERSHEY_SIMPLEX;
    let scale = (w.max(h) as f64 / 1280.0).clamp(0.35, 1.0);
    for d in objects {
        let b = &d.bbox;
        if ![b.x1, b.y1, b.x2, b.y2].iter().all(|v| v.is_finite()) {
            continue;
        }
        let x1 = (b.x1.clamp(0.0, 1.0) * wf).round() as i32;
        let y1 = (b.y1.clamp(0.0, 1.0) * hf).round() as i32;
        let x2 = (b.x2.clamp(0.0, 1.0) * wf).round() as i32;
        let y2 = (b.y2.clamp(0.0, 1.0) * hf).round() as i32;
        if x2 <= x1 || y2 <= y1 {
            continue;
        }
        let (r, g, bl) = PALETTE[d.class_id as usize % PALETTE.len()];
        let color = Scalar::new(bl as f64, g as f64, r as f64, 0.0);
        if let Some(k) = &d.keypoints {
            draw_skeleton(mat, k, color, thickness)?;
        }
        imgproc::rectangle(
            mat,
            Rect::new(x1, y1, x2 - x1, y2 - y1),
            color,
            thickness,
            imgproc::LINE_8,
            0,
        )?;

        let label = format!("{} {:.2}", d.class, d.score);
        let mut baseline = 0;
        let size = imgproc::get_text_size(&label, font, scale, 1, &mut baseline)?;
        let pad = 2;
        // Above the box when there is room, else just inside its top edge.
        let top = if y1 - size.height - 2 * pad - baseline >= 0 {
            y1 - size.height - 2 * pad - baseline
        } else {
            y1
        };
        let bg = Rect::new(x1, top, size.width + 2 * pad, size.height + baseline + 2 * pad);
        imgproc::rectangle(mat, bg, color, imgproc::FILLED, imgproc::LINE_8, 0)?;
        let text_color = if (r as u32 + g as u32 + bl as u32) > 382 {
            Scalar::all(0.0)
        } else {
            Scalar::all(255.0)
        };
        imgproc::put_text(
            mat,
            &label,
            Point::new(x1 + pad, top + pad + size.height),
            font,
            scale,
            text_color,
            1,
            imgproc::LINE_AA,
            false,
        )?;
    }
    Ok(())
}

/// Draws the limbs ([`SKELETON`]) whose two ends are seen, then every seen joint, onto a BGR
/// image. Positions are normalised; out-of-range or non-finite ones are skipped.
fn draw_skeleton(
    mat: &mut Mat,
    kps: &[Keypoint],
    color: Scalar,
    thickness: i32,
) -> opencv::Result<()> {
    let (wf, hf) = (mat.cols() as f32, mat.rows() as f32);
    let at = |i: usize| -> Option<Point> {
        let k = kps.get(i)?;
        let ok = k.score >= KEYPOINT_DRAW_SCORE
            && (0.0..=1.0).contains(&k.x)
            && (0.0..=1.0).contains(&k.y);
        ok.then(|| Point::new((k.x * wf).round() as i32, (k.y * hf).round() as i32))
    };
    for &(a, b) in SKELETON.iter() {
        if let (Some(p), Some(q)) = (at(a), at(b)) {
            imgproc::line(mat, p, q, color, thickness, imgproc::LINE_AA, 0)?;
        }
    }
    let radius = thickness + 1;
    for p in (0..kps.len()).filter_map(at) {
        imgproc::circle(mat, p, radius, Scalar::all(255.0), imgproc::FILLED, imgproc::LINE_AA, 0)?;
        imgproc::circle(mat, p, radius, color, 1, imgproc::LINE_AA, 0)?;
    }
    Ok(())
}
