//! JPEG encoding of frames with detection boxes drawn on (event snapshots, `latest.jpg`).

use opencv::core::{Mat, Point, Rect, Scalar, CV_8UC3};
use opencv::imgproc;
use opencv::prelude::*;

use super::StoreError;
use crate::types::{Detection, Frame};

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
/// and a "class score" label over each. The frame itself is never modified.
pub fn encode_jpeg(frame: &Frame, objects: &[Detection], quality: u8) -> Result<Vec<u8>, StoreError> {
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
    let drawn;
    let rgb: &[u8] = if objects.is_empty() {
        &frame.rgb
    } else {
        drawn = draw_boxes(&frame.rgb, w, h, objects)
            .map_err(|e| StoreError::Image(format!("drawing boxes on camera {} frame: {e}", frame.camera_id)))?;
        &drawn
    };
    let mut out = Vec::with_capacity(rgb.len() / 8);
    let mut enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality.clamp(1, 100));
    enc.encode(rgb, w, h, image::ExtendedColorType::Rgb8)
        .map_err(|e| StoreError::Image(format!("encoding JPEG for camera {}: {e}", frame.camera_id)))?;
    Ok(out)
}

/// Returns a copy of `rgb` with boxes and labels drawn (OpenCV, in RGB channel order).
fn draw_boxes(rgb: &[u8], w: u32, h: u32, objects: &[Detection]) -> opencv::Result<Vec<u8>> {
    let mut mat = Mat::new_rows_cols_with_default(h as i32, w as i32, CV_8UC3, Scalar::all(0.0))?;
    mat.data_bytes_mut()?.copy_from_slice(rgb);
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
        let color = Scalar::new(r as f64, g as f64, bl as f64, 0.0);
        imgproc::rectangle(&mut mat, Rect::new(x1, y1, x2 - x1, y2 - y1), color, thickness, imgproc::LINE_8, 0)?;

        let label = format!("{} {:.2}", d.class, d.score);
        let mut baseline = 0;
        let size = imgproc::get_text_size(&label, font, scale, 1, &mut baseline)?;
        let pad = 2;
        // Above the box when there is room, else just inside its top edge.
        let top = if y1 - size.height - 2 * pad - baseline >= 0 { y1 - size.height - 2 * pad - baseline } else { y1 };
        let bg = Rect::new(x1, top, size.width + 2 * pad, size.height + baseline + 2 * pad);
        imgproc::rectangle(&mut mat, bg, color, imgproc::FILLED, imgproc::LINE_8, 0)?;
        let text_color = if (r as u32 + g as u32 + bl as u32) > 382 { Scalar::all(0.0) } else { Scalar::all(255.0) };
        imgproc::put_text(
            &mut mat,
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
    Ok(mat.data_bytes()?.to_vec())
}
