//! Masking of faces and number plates in served stills (event snapshots, `latest.jpg`).
//! Docs: docs/security.md "Masking", ADR 0042.
//!
//! What is hidden, per camera policy (`[cameras.masking]`):
//! - **faces**: every face the face model (BlazeFace) finds on crops around the heads of
//!   the people the camera's detector finds and on tiles of the whole frame, grown by a
//!   quarter on each side; and, whatever the face model says, the head band of every
//!   detected person (the top [`HEAD_BAND`] of the box, or [`HEAD_BAND_WIDTHS`] of its width
//!   if deeper, a little wider than the box), so that a face the
//!   face model misses (turned, blurred, small) is hidden too;
//! - **plates**: the plate band (the lower [`PLATE_BAND`] of the box, full width) of every
//!   car, bus, truck and motorcycle: no permissively licensed plate detector was found, so
//!   plates are masked by geometry.
//!
//! Hidden regions are filled solid (mid grey): nothing of the original survives there.
//! Masking fails closed: any error (model missing, inference failing, bad image) is an
//! `Err`, and the API refuses the masked view (503) rather than serve the original.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::config::{CameraMaskingConfig, Config};
use crate::infer::detector::{Detector, DetectorOptions};
use crate::infer::manifest::{DecoderKind, ModelManifest};
use crate::types::BBox;

/// Fraction of a person box's height, from its top, hidden as the head band (at least; see
/// [`HEAD_BAND_WIDTHS`]).
pub const HEAD_BAND: f32 = 0.25;
/// The head band is also at least this many box widths deep. A head's size follows the
/// body's width, while the box's height depends on the view and the pose: seen from above,
/// bending or sitting, the face lies lower than a quarter of the box (ADR 0046).
pub const HEAD_BAND_WIDTHS: f32 = 0.75;
/// Fraction of a vehicle box's height, from its bottom, hidden as the plate band.
pub const PLATE_BAND: f32 = 0.45;
/// Face boxes grow by this fraction of their size on each side (hair, ears, box error).
pub const FACE_GROW: f32 = 0.25;
/// Grey level of masked pixels.
pub const FILL: u8 = 128;
/// Classes whose plate band is masked.
pub const VEHICLES: [&str; 4] = ["car", "bus", "truck", "motorcycle"];

/// What kind of thing a masked region hides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionKind {
    Face,
    Head,
    Plate,
}

/// A masked region, normalised to the frame (0–1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Region {
    pub kind: RegionKind,
    pub bbox: BBox,
}

/// The masker: the face model and the object detectors of the cameras, each behind a lock
/// (a request at a time per model), and the per-camera policy.
pub struct Masker {
    face: Mutex<Detector>,
    /// Object detector by model name, shared by the cameras that use it.
    objects: HashMap<String, Arc<Mutex<Detector>>>,
    /// Per camera: its object model's name (the first of its `models` that is a detector
    /// with a `person` class) and its policy.
    cameras: HashMap<String, (Option<String>, CameraMaskingConfig)>,
}

impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Masker")
            .field("objects", &self.objects.keys().collect::<Vec<_>>())
            .field("cameras", &self.cameras)
            .finish()
    }
}

/// The masker as the API holds it: ready, or the reason it is not (served as the 503's
/// message).
pub type MaskerState = Result<Arc<Masker>, String>;

impl crate::uplink::SnapshotMasker for Masker {
    /// A snapshot JPEG of `camera` for the uplink: masked as the camera's policy says and
    /// encoded again at `quality` when `mask` (else the bytes as they are), and with `faces`
    /// the faces in it (normalised, not grown, left to right; ADR 0051). The JPEG is decoded
    /// once and the detectors run once for both.
    fn snapshot(
        &self,
        camera: &str,
        jpeg: &[u8],
        quality: u8,
        mask: bool,
        faces: bool,
    ) -> Result<(Vec<u8>, Vec<BBox>), String> {
        if !mask && !faces {
            return Ok((jpeg.to_vec(), Vec::new()));
        }
        let img = image::load_from_memory_with_format(jpeg, image::ImageFormat::Jpeg)
            .map_err(|e| format!("decoding the still: {e}"))?
            .to_rgb8();
        let (w, h) = img.dimensions();
        let mut rgb = img.into_raw();
        let policy = self.policy(camera);
        let masks = mask && policy.enabled && (policy.faces || policy.plates);
        let found = if masks || faces {
            Some(self.find(camera, &rgb, w, h, faces || policy.faces)?)
        } else {
            None
        };
        let aspect = w as f32 / h as f32;
        let faces_found = match (&found, faces) {
            (Some(f), true) => faces_of(f, aspect),
            _ => Vec::new(),
        };
        if !mask {
            return Ok((jpeg.to_vec(), faces_found));
        }
        if let (Some(f), true) = (&found, masks) {
            for r in regions_of(f, policy, aspect) {
                fill(&mut rgb, w, h, &r.bbox);
            }
        }
        Ok((encode(&rgb, w, h, quality)?, faces_found))
    }
}

impl Masker {
    /// Loads the face model and each camera's object detector. Any failure is an error
    /// naming the model; the caller keeps it and the masked views are refused.
    pub fn from_config(cfg: &Config, opts: &DetectorOptions) -> Result<Masker, String> {
        let face_path = cfg.face_model();
        let face = load_face(&face_path, opts)?;
        let mut objects: HashMap<String, Arc<Mutex<Detector>>> = HashMap::new();
        let mut cameras = HashMap::new();
        for cam in &cfg.cameras {
            let mut chosen = None;
            if cam.masking.enabled && (cam.masking.faces || cam.masking.plates) {
                for name in &cam.models {
                    let Some(path) = cfg.models.get(name) else { continue };
                    if objects.contains_key(name) {
                        chosen = Some(name.clone());
                        break;
                    }
                    let m =
                        ModelManifest::load(path).map_err(|e| format!("model `{name}`: {e}"))?;
                    if matches!(
                        m.output.kind,
                        DecoderKind::Keypoints {}
                            | DecoderKind::Blazeface { .. }
                            | DecoderKind::Blazepose { .. }
                    ) {
                        continue;
                    }
                    let labels = m.load_labels().map_err(|e| format!("model `{name}`: {e}"))?;
                    if !labels.iter().any(|l| l == "person") {
                        continue;
                    }
                    let det =
                        Detector::load(&m, opts).map_err(|e| format!("model `{name}`: {e}"))?;
                    objects.insert(name.clone(), Arc::new(Mutex::new(det)));
                    chosen = Some(name.clone());
                    break;
                }
            }
            cameras.insert(cam.id.clone(), (chosen, cam.masking));
        }
        Ok(Masker { face: Mutex::new(face), objects, cameras })
    }

    /// A masker from parts (tests, benchmarks): the face model, one object detector used
    /// for every camera listed, and their policies.
    pub fn new(
        face: Detector,
        objects: Detector,
        cameras: &[(&str, CameraMaskingConfig)],
    ) -> Masker {
        let obj = Arc::new(Mutex::new(objects));
        Masker {
            face: Mutex::new(face),
            objects: HashMap::from([("objects".to_string(), obj)]),
            cameras: cameras
                .iter()
                .map(|(c, p)| (c.to_string(), (Some("objects".to_string()), *p)))
                .collect(),
        }
    }

    /// Cameras that mask faces or plates but have no detector with a `person` class: their
    /// masked stills are refused (503).
    pub fn cameras_without_detector(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .cameras
            .iter()
            .filter(|(_, (m, p))| m.is_none() && p.enabled && (p.faces || p.plates))
            .map(|(c, _)| c.clone())
            .collect();
        v.sort();
        v
    }

    /// The camera's policy (the default for a camera the masker was not told about).
    pub fn policy(&self, camera: &str) -> CameraMaskingConfig {
        self.cameras.get(camera).map(|c| c.1).unwrap_or_default()
    }

    /// The regions to hide in a tightly packed RGB24 frame of `camera`.
    pub fn regions(&self, camera: &str, rgb: &[u8], w: u32, h: u32) -> Result<Vec<Region>, String> {
        let policy = self.policy(camera);
        if !policy.enabled || !(policy.faces || policy.plates) {
            return Ok(Vec::new());
        }
        let found = self.find(camera, rgb, w, h, policy.faces)?;
        Ok(regions_of(&found, policy, w as f32 / h as f32))
    }

    /// The camera's detector's people and vehicles in a tightly packed RGB24 frame and, with
    /// `faces`, the face model's boxes on the whole frame, its tiles and each person's head:
    /// the one search that masking and GA/T 1400 `Faces` both read.
    fn find(&self, camera: &str, rgb: &[u8], w: u32, h: u32, faces: bool) -> Result<Found, String> {
        if w == 0 || h == 0 || rgb.len() != w as usize * h as usize * 3 {
            return Err(format!("frame {w}x{h} has {} bytes of RGB", rgb.len()));
        }
        let model = match self.cameras.get(camera) {
            Some((m, _)) => m.clone(),
            None => self.objects.keys().next().cloned(),
        };
        let Some(det) = model.as_ref().and_then(|m| self.objects.get(m)) else {
            return Err(format!(
                "camera `{camera}` has no object detector with a `person` class to find people \
                 and vehicles"
            ));
        };
        let objects = det
            .lock()
            .map_err(|_| "the object detector's lock is poisoned".to_string())?
            .detect(rgb, w, h)
            .map_err(|e| e.to_string())?;
        let people: Vec<BBox> =
            objects.iter().filter(|o| o.class == "person").map(|o| o.bbox).collect();
        let mut found_faces = Vec::new();
        if faces {
            let mut face = self.face.lock().map_err(|_| "the face model's lock is poisoned")?;
            for crop in crops(&people, w, h) {
                found_faces.extend(detect_in(&mut face, rgb, w, h, crop)?);
            }
        }
        Ok(Found { objects, people, faces: found_faces })
    }

    /// Masks `rgb` in place; returns the regions hidden.
    pub fn mask(
        &self,
        camera: &str,
        rgb: &mut [u8],
        w: u32,
        h: u32,
    ) -> Result<Vec<Region>, String> {
        let regions = self.regions(camera, rgb, w, h)?;
        for r in &regions {
            fill(rgb, w, h, &r.bbox);
        }
        Ok(regions)
    }

    /// Masks a JPEG: decodes it, masks it, encodes it again at `quality`.
    pub fn mask_jpeg(&self, camera: &str, jpeg: &[u8], quality: u8) -> Result<Vec<u8>, String> {
        use crate::uplink::SnapshotMasker;
        self.snapshot(camera, jpeg, quality, true, false).map(|(masked, _)| masked)
    }
}

/// What [`Masker::find`] finds in a frame: the detector's objects, its people, and the face
/// model's boxes (none unless asked for).
struct Found {
    objects: Vec<crate::types::Detection>,
    people: Vec<BBox>,
    faces: Vec<BBox>,
}

/// The regions `policy` hides, from what was found in a frame `aspect` = width / height wide:
/// each person's head band and each face (grown) with `faces`, each vehicle's plate band
/// with `plates`.
fn regions_of(found: &Found, policy: CameraMaskingConfig, aspect: f32) -> Vec<Region> {
    let mut out = Vec::new();
    for o in &found.objects {
        let b = o.bbox;
        if policy.faces && o.class == "person" {
            out.push(Region { kind: RegionKind::Head, bbox: head_band(&b, aspect) });
        }
        if policy.plates && VEHICLES.contains(&o.class.as_str()) {
            let band = BBox { x1: b.x1, y1: b.y2 - PLATE_BAND * (b.y2 - b.y1), x2: b.x2, y2: b.y2 };
            out.push(Region { kind: RegionKind::Plate, bbox: clamp(band) });
        }
    }
    if policy.faces {
        out.extend(found.faces.iter().map(|f| Region { kind: RegionKind::Face, bbox: grow(*f) }));
    }
    out
}

/// The faces of `found` for GA/T 1400 `Faces`: one box per face (where crops found the same
/// face twice, over half of the smaller box shared, the tighter box found at the finer scale
/// stays), kept only where its centre is in a person's head band (the face model alone, tuned
/// for the masking's recall, also fires on hands, trunks and bins: ADR 0051), left to right.
fn faces_of(found: &Found, aspect: f32) -> Vec<BBox> {
    let mut faces: Vec<BBox> = Vec::new();
    for f in &found.faces {
        match faces.iter().position(|k| overlap(k, f) > 0.5) {
            None => faces.push(*f),
            Some(i) if area(f) < area(&faces[i]) => faces[i] = *f,
            Some(_) => {}
        }
    }
    let heads: Vec<BBox> = found.people.iter().map(|b| head_band(b, aspect)).collect();
    faces.retain(|f| {
        let (cx, cy) = ((f.x1 + f.x2) / 2.0, (f.y1 + f.y2) / 2.0);
        heads.iter().any(|b| (b.x1..=b.x2).contains(&cx) && (b.y1..=b.y2).contains(&cy))
    });
    faces.sort_by(|a, b| a.x1.total_cmp(&b.x1));
    faces
}

fn load_face(path: &Path, opts: &DetectorOptions) -> Result<Detector, String> {
    let what = |e: &dyn std::fmt::Display| format!("face model {}: {e}", path.display());
    let m = ModelManifest::load(path).map_err(|e| what(&e))?;
    if !matches!(m.output.kind, DecoderKind::Blazeface { .. }) {
        return Err(what(&"needs `[output] kind = \"blazeface\"`"));
    }
    Detector::load(&m, opts).map_err(|e| what(&e))
}

/// Encodes RGB24 as a JPEG.
pub fn encode(rgb: &[u8], w: u32, h: u32, quality: u8) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .encode(rgb, w, h, image::ExtendedColorType::Rgb8)
        .map_err(|e| format!("encoding the masked still: {e}"))?;
    Ok(out)
}

/// The head band of a person box (normalised to a frame `aspect` = width / height wide): the
/// top [`HEAD_BAND`] of its height or [`HEAD_BAND_WIDTHS`] of its width, whichever is deeper
/// (at most the whole box), 10 % wider than the box on each side and 5 % above it.
fn head_band(b: &BBox, aspect: f32) -> BBox {
    let (bw, bh) = (b.x2 - b.x1, b.y2 - b.y1);
    // The box's width in units of the frame's height (the coordinates are normalised).
    let depth = (HEAD_BAND * bh).max(HEAD_BAND_WIDTHS * bw * aspect).min(bh);
    clamp(BBox { x1: b.x1 - 0.1 * bw, y1: b.y1 - 0.05 * bh, x2: b.x2 + 0.1 * bw, y2: b.y1 + depth })
}

fn clamp(b: BBox) -> BBox {
    BBox {
        x1: b.x1.clamp(0.0, 1.0),
        y1: b.y1.clamp(0.0, 1.0),
        x2: b.x2.clamp(0.0, 1.0),
        y2: b.y2.clamp(0.0, 1.0),
    }
}

fn grow(b: BBox) -> BBox {
    let (dw, dh) = ((b.x2 - b.x1) * FACE_GROW, (b.y2 - b.y1) * FACE_GROW);
    clamp(BBox { x1: b.x1 - dw, y1: b.y1 - dh, x2: b.x2 + dw, y2: b.y2 + dh })
}

/// Pixel rectangle `[x0, x1) × [y0, y1)` of a normalised box (rounded outwards).
fn pixels(b: &BBox, w: u32, h: u32) -> (u32, u32, u32, u32) {
    let x0 = (b.x1.max(0.0) * w as f32).floor() as u32;
    let y0 = (b.y1.max(0.0) * h as f32).floor() as u32;
    let x1 = ((b.x2.min(1.0) * w as f32).ceil() as u32).min(w);
    let y1 = ((b.y2.min(1.0) * h as f32).ceil() as u32).min(h);
    (x0.min(x1), y0.min(y1), x1, y1)
}

/// Fills a normalised box of an RGB24 frame with [`FILL`].
pub fn fill(rgb: &mut [u8], w: u32, h: u32, b: &BBox) {
    let (x0, y0, x1, y1) = pixels(b, w, h);
    for y in y0..y1 {
        let row = (y * w) as usize * 3;
        rgb[row + x0 as usize * 3..row + x1 as usize * 3].fill(FILL);
    }
}

fn area(b: &BBox) -> f32 {
    (b.x2 - b.x1).max(0.0) * (b.y2 - b.y1).max(0.0)
}

/// The intersection of two boxes over the smaller one's area (1: one holds the other).
fn overlap(a: &BBox, b: &BBox) -> f32 {
    let iw = (a.x2.min(b.x2) - a.x1.max(b.x1)).max(0.0);
    let ih = (a.y2.min(b.y2) - a.y1.max(b.y1)).max(0.0);
    let smaller = area(a).min(area(b));
    if smaller > 0.0 {
        iw * ih / smaller
    } else {
        0.0
    }
}

/// Where the face model looks, in frame pixels: the whole frame (large faces), tiles of
/// 256 px with a quarter's overlap (faces of about 40–150 px), and a square around the top
/// of each person box (small faces, which the crop enlarges to the model's 256 px).
fn crops(people: &[BBox], w: u32, h: u32) -> Vec<(u32, u32, u32, u32)> {
    let mut out = vec![(0, 0, w, h)];
    const T: u32 = 256;
    if w > T || h > T {
        let step = T * 3 / 4;
        let starts = |n: u32| -> Vec<u32> {
            if n <= T {
                return vec![0];
            }
            let mut v: Vec<u32> = (0..).map(|i| i * step).take_while(|s| s + T < n).collect();
            v.push(n - T);
            v
        };
        for y in starts(h) {
            for x in starts(w) {
                out.push((x, y, T.min(w), T.min(h)));
            }
        }
    }
    for b in people {
        let (x0, y0, x1, y1) = pixels(b, w, h);
        let (bw, bh) = (x1.saturating_sub(x0), y1.saturating_sub(y0));
        let side = bw.max(bh * 2 / 5).max(32).min(w).min(h);
        let cx = (x0 + x1) / 2;
        let left = cx.saturating_sub(side / 2).min(w - side);
        let top = y0.saturating_sub(side / 10).min(h - side);
        out.push((left, top, side, side));
    }
    out
}

/// Runs the face model on a crop `(x, y, cw, ch)` of the frame; boxes normalised to the frame.
fn detect_in(
    face: &mut Detector,
    rgb: &[u8],
    w: u32,
    h: u32,
    (x, y, cw, ch): (u32, u32, u32, u32),
) -> Result<Vec<BBox>, String> {
    if cw == 0 || ch == 0 {
        return Ok(Vec::new());
    }
    let dets = if (x, y, cw, ch) == (0, 0, w, h) {
        face.detect(rgb, w, h).map_err(|e| e.to_string())?
    } else {
        let mut crop = Vec::with_capacity(cw as usize * ch as usize * 3);
        for row in y..y + ch {
            let s = (row * w + x) as usize * 3;
            crop.extend_from_slice(&rgb[s..s + cw as usize * 3]);
        }
        face.detect(&crop, cw, ch).map_err(|e| e.to_string())?
    };
    let (fx, fy, sx, sy) =
        (x as f32 / w as f32, y as f32 / h as f32, cw as f32 / w as f32, ch as f32 / h as f32);
    Ok(dets
        .into_iter()
        .map(|d| BBox {
            x1: fx + d.bbox.x1 * sx,
            y1: fy + d.bbox.y1 * sy,
            x2: fx + d.bbox.x2 * sx,
            y2: fy + d.bbox.y2 * sy,
        })
        .collect())
}

/// The first `n + 1` frames of a video, the last returned (tests).
#[doc(hidden)]
pub fn frame_of(video: &Path, n: u64) -> Result<crate::types::Frame, String> {
    use crate::ingest::{Opener, StreamEvent};
    crate::gst::init().map_err(|e| e.to_string())?;
    let loc =
        format!("\"{}\"", video.display().to_string().replace('\\', "\\\\").replace('"', "\\\""));
    let opener = crate::ingest::gst::GstOpener {
        camera_id: Arc::from("still"),
        description: format!(
            "filesrc location={loc} ! decodebin ! videoconvert ! video/x-raw,format=RGB \
             ! appsink name=sink max-buffers=2 drop=false sync=false enable-last-sample=false"
        ),
        record: None,
        skip_nonref_fps: None,
        decoder_threads: 0,
    };
    let mut s = opener.open().map_err(|e| e.to_string())?;
    let mut i = 0;
    loop {
        match s.next(std::time::Duration::from_secs(10)) {
            StreamEvent::Frame(f) if i == n => return Ok(f),
            StreamEvent::Frame(_) => i += 1,
            StreamEvent::Eos => return Err(format!("{}: only {i} frames", video.display())),
            StreamEvent::Idle => return Err(format!("{}: no frame for 10 s", video.display())),
            StreamEvent::Error(e) => return Err(format!("{}: {e}", video.display())),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::path::PathBuf;

    fn repo(p: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(p)
    }

    pub(crate) fn load(path: &str) -> Detector {
        crate::infer::runtime::init(None).unwrap();
        let m = ModelManifest::load(&repo(path)).unwrap();
        Detector::load(&m, &DetectorOptions::default()).unwrap()
    }

    pub(crate) fn masker(cameras: &[(&str, CameraMaskingConfig)]) -> Masker {
        Masker::new(
            load("models/blazeface-back-256/model.toml"),
            load("models/nanodet-g-coco-416/model.toml"),
            cameras,
        )
    }

    /// The real masker (BlazeFace and NanoDet-g) for cameras cam1 and cam2, loaded once for
    /// the API tests' fixtures.
    pub(crate) fn shared() -> Arc<Masker> {
        static M: std::sync::OnceLock<Arc<Masker>> = std::sync::OnceLock::new();
        M.get_or_init(|| {
            let on = CameraMaskingConfig::default();
            Arc::new(masker(&[("cam1", on), ("cam2", on)]))
        })
        .clone()
    }

    /// Frame 15 (0.5 s) of the crosswalk clip: a woman walking toward the camera, her face
    /// about 26 px wide centred near (244, 351) of 1280×720 (checked by eye).
    fn crosswalk() -> Option<crate::types::Frame> {
        let clip = repo("../shared/media/people/people-street-crosswalk-720p.mp4");
        if !clip.is_file() {
            eprintln!("skipping: {} not found (test-only footage)", clip.display());
            return None;
        }
        Some(frame_of(&clip, 15).unwrap())
    }
    const FACE: (f32, f32) = (244.0, 351.0);

    #[test]
    fn blazeface_finds_a_real_face_on_a_crop() {
        let Some(f) = crosswalk() else { return };
        assert_eq!((f.width, f.height), (1280, 720));
        let mut face = load("models/blazeface-back-256/model.toml");
        let got = detect_in(&mut face, &f.rgb, f.width, f.height, (160, 300, 180, 180)).unwrap();
        let near: Vec<_> = got
            .iter()
            .map(|b| ((b.x1 + b.x2) / 2.0 * 1280.0, (b.y1 + b.y2) / 2.0 * 720.0, b))
            .filter(|(x, y, _)| (x - FACE.0).abs() < 8.0 && (y - FACE.1).abs() < 8.0)
            .collect();
        assert_eq!(near.len(), 1, "faces found: {got:?}");
        let w = (near[0].2.x2 - near[0].2.x1) * 1280.0;
        assert!((18.0..40.0).contains(&w), "face width {w} px");
        // Nothing face-like on a crop of the empty road.
        let road = detect_in(&mut face, &f.rgb, f.width, f.height, (700, 540, 180, 180)).unwrap();
        assert!(road.is_empty(), "{road:?}");
    }

    #[test]
    fn masked_frame_hides_the_face_and_policy_switches_it_off() {
        let Some(f) = crosswalk() else { return };
        let on = CameraMaskingConfig::default();
        let off = CameraMaskingConfig { enabled: false, ..on };
        let m = masker(&[("cam", on), ("off", off)]);
        let mut rgb = f.rgb.to_vec();
        let regions = m.mask("cam", &mut rgb, f.width, f.height).unwrap();
        assert!(regions.iter().any(|r| r.kind == RegionKind::Face), "{regions:?}");
        assert!(regions.iter().any(|r| r.kind == RegionKind::Head), "{regions:?}");
        // Every pixel of the face (±12 px around its centre) is the fill, nothing of the original.
        let (cx, cy) = (FACE.0 as u32, FACE.1 as u32);
        for y in cy - 12..cy + 12 {
            for x in cx - 12..cx + 12 {
                let i = ((y * f.width + x) * 3) as usize;
                assert_eq!(&rgb[i..i + 3], &[FILL; 3], "pixel ({x}, {y}) not masked");
            }
        }
        // Masking off: the frame is unchanged.
        let mut rgb = f.rgb.to_vec();
        assert!(m.mask("off", &mut rgb, f.width, f.height).unwrap().is_empty());
        assert!(rgb == *f.rgb);
        // Garbage in: an error, never a pass.
        assert!(m.mask("cam", &mut [0u8; 10], 4, 4).is_err());
        assert!(m.mask_jpeg("cam", b"not a jpeg", 85).is_err());
    }

    #[test]
    fn head_band_follows_the_box_width_when_the_box_is_short() {
        let px = |b: BBox| [b.x1 * 1280.0, b.y1 * 720.0, b.x2 * 1280.0, b.y2 * 720.0];
        let close = |a: [f32; 4], e: [f32; 4]| a.iter().zip(e).all(|(a, e)| (a - e).abs() < 0.5);
        let aspect = 1280.0 / 720.0;
        let norm = |x1: f32, y1: f32, x2: f32, y2: f32| BBox {
            x1: x1 / 1280.0,
            y1: y1 / 720.0,
            x2: x2 / 1280.0,
            y2: y2 / 720.0,
        };
        // Standing, seen from the side (40 × 200 px): the top quarter (50 px > 0.75 × 40).
        let b = px(head_band(&norm(600.0, 200.0, 640.0, 400.0), aspect));
        assert!(close(b, [596.0, 190.0, 644.0, 250.0]), "{b:?}");
        // Seen from above (45 × 96 px, the plaza clip): 0.75 × 45 = 33.75 px deep, not 24.
        let b = px(head_band(&norm(800.0, 390.0, 845.0, 486.0), aspect));
        assert!(close(b, [795.5, 385.2, 849.5, 423.75]), "{b:?}");
        // Lying (200 × 60 px): the whole box.
        let b = px(head_band(&norm(100.0, 500.0, 300.0, 560.0), aspect));
        assert!(close(b, [80.0, 497.0, 320.0, 560.0]), "{b:?}");
    }

    #[test]
    fn plate_band_of_vehicles() {
        let b = BBox { x1: 0.2, y1: 0.4, x2: 0.6, y2: 0.8 };
        let mut rgb = vec![7u8; 10 * 10 * 3];
        fill(&mut rgb, 10, 10, &BBox { x1: b.x1, y1: b.y2 - PLATE_BAND * 0.4, x2: b.x2, y2: b.y2 });
        // Rows 6–7 (0.62–0.8 → pixels 6..8), columns 2..6.
        let masked: Vec<(usize, usize)> =
            (0..100).filter(|i| rgb[i * 3] == FILL).map(|i| (i % 10, i / 10)).collect();
        assert_eq!(masked.len(), 8, "{masked:?}");
        assert!(masked.iter().all(|&(x, y)| (2..6).contains(&x) && (6..8).contains(&y)));
    }
}
