//! Frame → input tensor: resize (stretch or letterbox) with OpenCV, then one pass to NCHW f32
//! with channel order, `(x − mean) / std` and letterbox padding. Buffers are reused across
//! calls; the padding is only rewritten when the frame size changes.

use opencv::core::{Mat, Size, Vec3b};
use opencv::prelude::*;

use super::decode::RawDetection;
use super::manifest::{Colour, InputSpec, Resize};
use crate::types::{BBox, Keypoint};

/// Maps model-input pixels back to normalised (0–1) frame coordinates:
/// `x_frame = (x_input − pad_x) / scale_x`, then divided by the frame width.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transform {
    pub scale_x: f32,
    pub scale_y: f32,
    pub pad_x: f32,
    pub pad_y: f32,
    pub frame_w: u32,
    pub frame_h: u32,
}

impl Transform {
    /// A point in input pixels → normalised frame coordinates (not clamped).
    pub fn to_frame(&self, x: f32, y: f32) -> (f32, f32) {
        (
            (x - self.pad_x) / self.scale_x / self.frame_w as f32,
            (y - self.pad_y) / self.scale_y / self.frame_h as f32,
        )
    }

    /// A raw detection → a normalised box clamped to 0–1.
    pub fn bbox(&self, d: &RawDetection) -> BBox {
        let (x1, y1) = self.to_frame(d.x1, d.y1);
        let (x2, y2) = self.to_frame(d.x2, d.y2);
        BBox {
            x1: unit(x1.min(x2)),
            y1: unit(y1.min(y2)),
            x2: unit(x1.max(x2)),
            y2: unit(y1.max(y2)),
        }
    }

    /// Keypoints in input pixels → normalised to the frame, clamped to 0–1 (a point in the
    /// letterbox padding or beyond the input lands on the frame's edge); a non-finite
    /// position becomes 0 with score 0, and scores are clamped to 0–1.
    pub fn keypoints(&self, kps: &[Keypoint]) -> Vec<Keypoint> {
        kps.iter()
            .map(|k| {
                let (x, y) = self.to_frame(k.x, k.y);
                let seen = x.is_finite() && y.is_finite();
                Keypoint { x: unit(x), y: unit(y), score: if seen { unit(k.score) } else { 0.0 } }
            })
            .collect()
    }
}

/// Clamps to 0–1; NaN and infinities become 0.
fn unit(v: f32) -> f32 {
    if v.is_finite() {
        v.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// Where the resized frame lands inside the input: size `(w, h)` at offset `(x, y)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub w: u32,
    pub h: u32,
    pub x: u32,
    pub y: u32,
}

/// The placement and back-transform for a frame of `frame_w × frame_h` into `in_w × in_h`.
/// Letterbox: scale `r = min(in_w/frame_w, in_h/frame_h)`, size rounded, padding on the
/// right/bottom (`Letterbox`) or split with the extra pixel right/bottom (`LetterboxCenter`).
pub fn geometry(
    frame_w: u32,
    frame_h: u32,
    in_w: u32,
    in_h: u32,
    resize: Resize,
) -> (Placement, Transform) {
    let (fw, fh) = (frame_w.max(1) as f32, frame_h.max(1) as f32);
    let p = match resize {
        Resize::Stretch => Placement { w: in_w, h: in_h, x: 0, y: 0 },
        Resize::Letterbox | Resize::LetterboxCenter => {
            let r = (in_w as f32 / fw).min(in_h as f32 / fh);
            let w = ((fw * r).round() as u32).clamp(1, in_w);
            let h = ((fh * r).round() as u32).clamp(1, in_h);
            let (x, y) = if resize == Resize::LetterboxCenter {
                ((in_w - w) / 2, (in_h - h) / 2)
            } else {
                (0, 0)
            };
            Placement { w, h, x, y }
        }
    };
    let t = Transform {
        scale_x: p.w as f32 / fw,
        scale_y: p.h as f32 / fh,
        pad_x: p.x as f32,
        pad_y: p.y as f32,
        frame_w: frame_w.max(1),
        frame_h: frame_h.max(1),
    };
    (p, t)
}

/// Reusable pre-processor for one model input.
pub struct Preprocessor {
    spec: InputSpec,
    /// The input size of the last frame (`InputSpec::size_for`).
    in_w: u32,
    in_h: u32,
    resize: Resize,
    /// For each tensor channel, the RGB source channel.
    src_channel: [usize; 3],
    mean: [f32; 3],
    inv_std: [f32; 3],
    pad: [f32; 3],
    resized: Mat,
    tensor: Vec<f32>,
    /// Frame size the padding in `tensor` was written for.
    padded_for: Option<(u32, u32)>,
}

impl Preprocessor {
    pub fn new(spec: &InputSpec) -> Preprocessor {
        let mean = spec.mean();
        let inv_std = spec.inv_std();
        let pv = spec.pad_value;
        Preprocessor {
            spec: spec.clone(),
            in_w: spec.width,
            in_h: spec.height,
            resize: spec.resize,
            src_channel: match spec.colour {
                Colour::Rgb => [0, 1, 2],
                Colour::Bgr => [2, 1, 0],
            },
            mean,
            inv_std,
            pad: [
                (pv - mean[0]) * inv_std[0],
                (pv - mean[1]) * inv_std[1],
                (pv - mean[2]) * inv_std[2],
            ],
            resized: Mat::default(),
            tensor: vec![0.0; 3 * spec.width as usize * spec.height as usize],
            padded_for: None,
        }
    }

    pub fn spec(&self) -> &InputSpec {
        &self.spec
    }

    /// The input tensor shape `[1, 3, H, W]` of the last frame.
    pub fn shape(&self) -> [usize; 4] {
        [1, 3, self.in_h as usize, self.in_w as usize]
    }

    /// The tensor written by the last [`Preprocessor::run`].
    pub fn tensor(&self) -> &[f32] {
        &self.tensor
    }

    /// Converts a tightly packed RGB24 frame into the input tensor; returns the back-transform.
    pub fn run(&mut self, rgb: &[u8], width: u32, height: u32) -> Result<Transform, String> {
        if width == 0 || height == 0 {
            return Err(format!("frame size {width}x{height} is empty"));
        }
        let need = width as usize * height as usize * 3;
        if rgb.len() != need {
            return Err(format!(
                "frame {width}x{height} RGB24 needs {need} bytes, got {} (frames must be tightly packed)",
                rgb.len()
            ));
        }
        if width > i32::MAX as u32 / 3 || height > i32::MAX as u32 {
            return Err(format!("frame size {width}x{height} is too large"));
        }
        if self.padded_for != Some((width, height)) {
            (self.in_w, self.in_h) = self.spec.size_for(width, height);
            let plane = self.in_w as usize * self.in_h as usize;
            self.tensor.resize(3 * plane, 0.0);
            for c in 0..3 {
                self.tensor[c * plane..(c + 1) * plane].fill(self.pad[c]);
            }
            self.padded_for = Some((width, height));
        }
        let (p, t) = geometry(width, height, self.in_w, self.in_h, self.resize);

        let resized: &[u8] = if p.w == width && p.h == height {
            rgb
        } else {
            let src = Mat::new_rows_cols_with_bytes::<Vec3b>(height as i32, width as i32, rgb)
                .map_err(|e| format!("wrapping the frame: {e}"))?;
            opencv::imgproc::resize(
                &src,
                &mut self.resized,
                Size::new(p.w as i32, p.h as i32),
                0.0,
                0.0,
                opencv::imgproc::INTER_LINEAR,
            )
            .map_err(|e| format!("resize {width}x{height} → {}x{}: {e}", p.w, p.h))?;
            self.resized.data_bytes().map_err(|e| format!("reading the resized frame: {e}"))?
        };
        if resized.len() != p.w as usize * p.h as usize * 3 {
            return Err(format!(
                "resized frame has {} bytes, expected {}x{}x3",
                resized.len(),
                p.w,
                p.h
            ));
        }

        let (iw, plane) = (self.in_w as usize, self.in_w as usize * self.in_h as usize);
        let (pw, px, py) = (p.w as usize, p.x as usize, p.y as usize);
        let (ch0, rest) = self.tensor.split_at_mut(plane);
        let (ch1, ch2) = rest.split_at_mut(plane);
        let [s0, s1, s2] = self.src_channel;
        let [m0, m1, m2] = self.mean;
        let [k0, k1, k2] = self.inv_std;
        for (row, src_row) in resized.chunks_exact(pw * 3).enumerate() {
            let start = (py + row) * iw + px;
            let d0 = &mut ch0[start..start + pw];
            let d1 = &mut ch1[start..start + pw];
            let d2 = &mut ch2[start..start + pw];
            for (i, px) in src_row.chunks_exact(3).enumerate() {
                d0[i] = (px[s0] as f32 - m0) * k0;
                d1[i] = (px[s1] as f32 - m1) * k1;
                d2[i] = (px[s2] as f32 - m2) * k2;
            }
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() < 1e-4
    }

    fn spec(w: u32, h: u32, colour: Colour, resize: Resize) -> InputSpec {
        InputSpec {
            name: None,
            layout: super::super::manifest::Layout::Nchw,
            width: w,
            height: h,
            colour,
            mean: None,
            std: None,
            scale: None,
            resize,
            pad_value: 114.0,
            aspect_multiple: None,
        }
    }

    #[test]
    fn letterbox_top_left_mapping() {
        // 768x576 into 416x416: r = 416/768, image 416x312 at the top-left.
        let (p, t) = geometry(768, 576, 416, 416, Resize::Letterbox);
        assert_eq!(p, Placement { w: 416, h: 312, x: 0, y: 0 });
        let (x, y) = t.to_frame(416.0, 312.0);
        assert!(close(x, 1.0) && close(y, 1.0), "{x} {y}");
        let (x, y) = t.to_frame(208.0, 156.0);
        assert!(close(x, 0.5) && close(y, 0.5));
    }

    #[test]
    fn letterbox_center_mapping() {
        // 768x576 into 640x640: r = 640/768 → 640x480 centred, 80 px top and bottom.
        let (p, t) = geometry(768, 576, 640, 640, Resize::LetterboxCenter);
        assert_eq!(p, Placement { w: 640, h: 480, x: 0, y: 80 });
        let (x, y) = t.to_frame(0.0, 80.0);
        assert!(close(x, 0.0) && close(y, 0.0));
        let (x, y) = t.to_frame(320.0, 560.0);
        assert!(close(x, 0.5) && close(y, 1.0));
        // Portrait frame: padding left/right.
        let (p, t) = geometry(720, 1280, 640, 640, Resize::LetterboxCenter);
        assert_eq!(p, Placement { w: 360, h: 640, x: 140, y: 0 });
        let b = t.bbox(&RawDetection {
            x1: 140.0,
            y1: 0.0,
            x2: 500.0,
            y2: 640.0,
            score: 1.0,
            class_id: 0,
            keypoints: None,
        });
        assert!(close(b.x1, 0.0) && close(b.x2, 1.0) && close(b.y2, 1.0), "{b:?}");
    }

    /// Keypoints go through the same letterbox mapping as boxes; points in the padding or
    /// outside the input, and non-finite ones, are clamped onto the frame without panicking.
    #[test]
    fn keypoints_mapped_and_clamped() {
        // 768x432 into 256x256, centred: r = 1/3 → 256x144 at y 56.
        let (p, t) = geometry(768, 432, 256, 256, Resize::LetterboxCenter);
        assert_eq!(p, Placement { w: 256, h: 144, x: 0, y: 56 });
        let k = |x: f32, y: f32, score: f32| Keypoint { x, y, score };
        let out = t.keypoints(&[
            k(128.0, 128.0, 0.9),         // centre of the input = centre of the frame
            k(64.0, 56.0 + 36.0, 0.5),    // (192, 108) px in the frame
            k(10.0, 20.0, 0.8),           // in the top padding → y clamped to 0
            k(300.0, 300.0, 1.5),         // beyond the input → (1, 1), score clamped
            k(f32::NAN, 5.0, 0.7),        // not finite → (0, y), score 0
            k(f32::INFINITY, -1e30, 0.7), // not finite → score 0
            k(100.0, 100.0, f32::NAN),    // NaN score → 0
        ]);
        let near = |a: Keypoint, b: Keypoint| {
            close(a.x, b.x) && close(a.y, b.y) && close(a.score, b.score)
        };
        assert!(near(out[0], k(0.5, 0.5, 0.9)), "{:?}", out[0]);
        assert!(near(out[1], k(0.25, 0.25, 0.5)), "{:?}", out[1]);
        assert!(close(out[2].y, 0.0) && close(out[2].x, 10.0 / 256.0), "{:?}", out[2]);
        assert!(near(out[3], k(1.0, 1.0, 1.0)), "{:?}", out[3]);
        assert_eq!(out[4].score, 0.0);
        assert_eq!(out[5].score, 0.0);
        assert_eq!(out[6].score, 0.0);
        for o in &out {
            assert!((0.0..=1.0).contains(&o.x) && (0.0..=1.0).contains(&o.y), "{o:?}");
        }
    }

    #[test]
    fn stretch_mapping_and_clamp() {
        let (p, t) = geometry(640, 480, 320, 320, Resize::Stretch);
        assert_eq!(p, Placement { w: 320, h: 320, x: 0, y: 0 });
        let b = t.bbox(&RawDetection {
            x1: -10.0,
            y1: 80.0,
            x2: 160.0,
            y2: 400.0,
            score: 1.0,
            class_id: 0,
            keypoints: None,
        });
        assert_eq!(b, BBox { x1: 0.0, y1: 0.25, x2: 0.5, y2: 1.0 });
    }

    #[test]
    fn tensor_values_bgr_letterbox() {
        // 4x2 frame into 4x4 letterbox top-left: 4x2 at y 0..2, padding rows 2..4.
        let mut s = spec(4, 4, Colour::Bgr, Resize::Letterbox);
        s.mean = Some([10.0, 20.0, 30.0]);
        s.std = Some([2.0, 2.0, 2.0]);
        let mut pp = Preprocessor::new(&s);
        let mut rgb = vec![0u8; 4 * 2 * 3];
        rgb[0] = 100; // R of pixel (0,0)
        rgb[1] = 50; // G
        rgb[2] = 30; // B
        let t = pp.run(&rgb, 4, 2).unwrap();
        assert_eq!(t.pad_y, 0.0);
        let tensor = pp.tensor();
        let plane = 16;
        assert_eq!(tensor[0], (30.0 - 10.0) / 2.0); // channel 0 = B
        assert_eq!(tensor[plane], (50.0 - 20.0) / 2.0); // G
        assert_eq!(tensor[2 * plane], (100.0 - 30.0) / 2.0); // channel 2 = R
        assert_eq!(tensor[8], (114.0 - 10.0) / 2.0); // row 2: padding
        assert_eq!(tensor[2 * plane + 15], (114.0 - 30.0) / 2.0);
        // A second frame of the same size reuses the buffer.
        let t2 = pp.run(&rgb, 4, 2).unwrap();
        assert_eq!(t, t2);
    }

    #[test]
    fn resize_through_opencv() {
        // Uniform 8x6 grey frame, stretched to 4x4: every value is the same.
        let s = spec(4, 4, Colour::Rgb, Resize::Stretch);
        let mut pp = Preprocessor::new(&s);
        let rgb = vec![77u8; 8 * 6 * 3];
        pp.run(&rgb, 8, 6).unwrap();
        assert!(pp.tensor().iter().all(|v| *v == 77.0));
    }

    #[test]
    fn wrong_frame_length_is_error() {
        let mut pp = Preprocessor::new(&spec(4, 4, Colour::Rgb, Resize::Stretch));
        let e = pp.run(&[0u8; 10], 4, 4).unwrap_err();
        assert!(e.contains("48 bytes"), "{e}");
        assert!(pp.run(&[], 0, 4).is_err());
    }
}
