//! Low-light enhancement of the detector's input (`[cameras.low_light_enhance]`): on a dark
//! frame, the luma is equalised locally (CLAHE) before the camera's models run, so a faint
//! person gains contrast. Only the models' input changes: the frame kept for snapshots,
//! the tracker's low-light test, the fire detector and the pose stage see the original.

use opencv::core::{Mat, Size, Vec3b, Vector};
use opencv::imgproc;
use opencv::prelude::*;

use crate::config::LowLightEnhanceConfig;
use crate::types::Frame;

/// CLAHE on the luma of a packed RGB24 image (`width` × `height`): the image goes to YCrCb,
/// Y is equalised in `grid` × `grid` tiles with histogram clip `clip_limit` (OpenCV's), and
/// back to RGB (chroma unchanged).
pub fn clahe_luma(
    rgb: &[u8],
    width: u32,
    height: u32,
    clip_limit: f64,
    grid: u32,
) -> opencv::Result<Vec<u8>> {
    let (w, h) = (width as usize, height as usize);
    if w == 0 || h == 0 || w > 16384 || h > 16384 || rgb.len() != w * h * 3 {
        return Err(opencv::Error::new(
            opencv::core::StsBadArg,
            format!("frame {width}x{height} with {} bytes", rgb.len()),
        ));
    }
    let src = Mat::new_rows_cols_with_bytes::<Vec3b>(h as i32, w as i32, rgb)?;
    let mut ycc = Mat::default();
    imgproc::cvt_color_def(&src, &mut ycc, imgproc::COLOR_RGB2YCrCb)?;
    let mut planes = Vector::<Mat>::new();
    opencv::core::split(&ycc, &mut planes)?;
    let mut clahe = imgproc::create_clahe(clip_limit, Size::new(grid as i32, grid as i32))?;
    let mut y = Mat::default();
    clahe.apply(&planes.get(0)?, &mut y)?;
    planes.set(0, y)?;
    let mut merged = Mat::default();
    opencv::core::merge(&planes, &mut merged)?;
    let mut out = Mat::default();
    imgproc::cvt_color_def(&merged, &mut out, imgproc::COLOR_YCrCb2RGB)?;
    Ok(out.data_bytes()?.to_vec())
}

/// The pixels the camera's models see instead of `frame`'s, or `None` to use the frame's own:
/// with `cfg.enabled`, a dark frame (median luma below `cfg.max_median_luma`; `light` is the
/// frame's [`super::light_stats`], read once by the frame path) gets [`clahe_luma`]. A frame
/// that cannot be enhanced is detected as it is (logged).
pub fn for_detection(
    cfg: &LowLightEnhanceConfig,
    frame: &Frame,
    light: Option<(f32, f32)>,
) -> Option<Vec<u8>> {
    if !cfg.enabled {
        return None;
    }
    let (median, _) = light?;
    if median >= cfg.max_median_luma {
        return None;
    }
    match clahe_luma(&frame.rgb, frame.width, frame.height, cfg.clip_limit, cfg.grid) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(frame = frame.index, "low-light enhancement failed: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dark, flat 64×48 image (luma about 12) with a faint figure (luma about 20) in it.
    fn dark_with_figure() -> Vec<u8> {
        let (w, h) = (64usize, 48usize);
        let mut rgb = vec![0u8; w * h * 3];
        for y in 0..h {
            for x in 0..w {
                let figure = (40..46).contains(&x) && (15..40).contains(&y);
                let v = if figure { [22, 20, 18] } else { [13, 12, 11] };
                rgb[3 * (y * w + x)..3 * (y * w + x) + 3].copy_from_slice(&v);
            }
        }
        rgb
    }

    fn luma(rgb: &[u8], w: usize, x: usize, y: usize) -> f32 {
        let p = &rgb[3 * (y * w + x)..];
        0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32
    }

    fn frame(rgb: Vec<u8>, w: u32, h: u32) -> Frame {
        Frame {
            camera_id: "cam".into(),
            index: 0,
            width: w,
            height: h,
            rgb: rgb.into(),
            pts_ns: None,
            captured_at: time::OffsetDateTime::UNIX_EPOCH,
            captured_instant: std::time::Instant::now(),
        }
    }

    #[test]
    fn clahe_raises_the_contrast_of_a_faint_figure() {
        let rgb = dark_with_figure();
        let out = clahe_luma(&rgb, 64, 48, 2.0, 8).unwrap();
        assert_eq!(out.len(), rgb.len());
        let before = luma(&rgb, 64, 42, 27) - luma(&rgb, 64, 30, 27);
        let after = luma(&out, 64, 42, 27) - luma(&out, 64, 30, 27);
        assert!(after > 1.5 * before, "contrast {before} -> {after}");
        assert!(clahe_luma(&rgb[..100], 64, 48, 2.0, 8).is_err(), "short buffer");
        assert!(clahe_luma(&[], 0, 0, 2.0, 8).is_err(), "empty");
    }

    #[test]
    fn only_dark_frames_are_enhanced_when_enabled() {
        let cfg = LowLightEnhanceConfig::default();
        let for_detection = |cfg: &LowLightEnhanceConfig, f: &Frame| {
            for_detection(cfg, f, crate::analytics::light_stats(&f.rgb, f.width, f.height))
        };
        let dark = frame(dark_with_figure(), 64, 48);
        assert!(for_detection(&cfg, &dark).is_some(), "dark frame");
        let off = LowLightEnhanceConfig { enabled: false, ..cfg.clone() };
        assert!(for_detection(&off, &dark).is_none(), "disabled");
        // Lit frames (colour or grey: an IR or grey day camera) are left alone.
        let lit: Vec<u8> = dark_with_figure().iter().map(|v| v + 100).collect();
        assert!(for_detection(&cfg, &frame(lit, 64, 48)).is_none(), "lit");
        assert!(for_detection(&cfg, &frame(vec![120; 64 * 48 * 3], 64, 48)).is_none(), "grey");
        assert!(for_detection(&cfg, &frame(vec![1, 2, 3], 64, 48)).is_none(), "short buffer");
    }
}
