//! `gridwatch eval masking`: the masker's recall on hand-labelled frames of real clips
//! (docs/performance.md "Masking", ADR 0046).
//!
//! For each labelled frame the real [`Masker`] (the face model and the object detector the
//! appliance runs) masks the frame, and each hand-labelled face (≥ [`MIN_FACE_PX`] wide) and
//! plate (≥ [`MIN_PLATE_PX`] wide) counts as **masked** when at least [`COVERED`] of its
//! box's pixels lie in a masked region. Independently, a second face detector (CenterFace,
//! `models/centerface`, another architecture and training set) runs on the original frame;
//! its faces ≥ [`MIN_FACE_PX`] wide that the masker left unmasked are reported (they are
//! candidates to look at, not ground truth: the detector has false positives). The cost is
//! the wall time of `Masker::mask` per frame (detector, face model runs, fill).
//!
//! The labels file (TOML, see tests/masking/labels.toml for the method):
//!
//! ```toml
//! [[frame]]
//! clip = "people/people-street-crosswalk-720p.mp4"  # relative to --media, or absolute
//! index = 15                                        # 0-based decoded frame
//! faces = [[230, 338, 258, 366]]                     # x1, y1, x2, y2 in frame pixels
//! plates = []
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde::{Deserialize, Serialize};

use crate::config::CameraMaskingConfig;
use crate::infer::detector::{Detector, DetectorOptions};
use crate::infer::manifest::{DecoderKind, ModelManifest};
use crate::ingest::{FrameStream, Opener, StreamEvent};
use crate::masking::{Masker, FILL};
use crate::types::{BBox, Frame};

/// Faces narrower than this (frame pixels) are not counted.
pub const MIN_FACE_PX: f32 = 20.0;
/// Plates narrower than this (frame pixels) are not counted.
pub const MIN_PLATE_PX: f32 = 40.0;
/// A labelled box is masked when at least this share of its pixels is masked.
pub const COVERED: f32 = 0.9;

/// The labels file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Labels {
    #[serde(rename = "frame", default)]
    pub frames: Vec<LabelledFrame>,
}

/// One labelled frame.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelledFrame {
    /// The clip, relative to the media folder (or absolute).
    pub clip: PathBuf,
    /// 0-based index of the decoded frame.
    pub index: u64,
    /// How the frame was chosen ("fixed": at a fixed share of the clip, before looking;
    /// "by eye": picked for its faces or plates). Reported, not used.
    #[serde(default)]
    pub chosen: Option<String>,
    /// Faces, `[x1, y1, x2, y2]` in frame pixels.
    #[serde(default)]
    pub faces: Vec<[f32; 4]>,
    /// Number plates, `[x1, y1, x2, y2]` in frame pixels.
    #[serde(default)]
    pub plates: Vec<[f32; 4]>,
    /// Faces narrower than [`MIN_FACE_PX`]: reported apart, not in the target.
    #[serde(default)]
    pub small_faces: Vec<[f32; 4]>,
    /// Plates narrower than [`MIN_PLATE_PX`]: reported apart, not in the target.
    #[serde(default)]
    pub small_plates: Vec<[f32; 4]>,
    /// Free text (what is in the frame, doubtful cases).
    #[serde(default)]
    pub note: Option<String>,
    /// A frame of the `--sweep`: not labelled, only checked by the second detector.
    #[serde(skip)]
    pub sweep: bool,
}

impl Labels {
    pub fn load(path: &Path) -> anyhow::Result<Labels> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let l: Labels = toml::from_str(&text).with_context(|| format!("{}", path.display()))?;
        for (i, f) in l.frames.iter().enumerate() {
            for (what, boxes) in [
                ("faces", &f.faces),
                ("plates", &f.plates),
                ("small_faces", &f.small_faces),
                ("small_plates", &f.small_plates),
            ] {
                for b in boxes {
                    if !(b.iter().all(|v| v.is_finite() && *v >= 0.0) && b[2] > b[0] && b[3] > b[1])
                    {
                        bail!(
                            "{}: frame[{i}] ({} #{}): field `{what}`: box {b:?} is not \
                             [x1, y1, x2, y2] with x2 > x1, y2 > y1 ≥ 0",
                            path.display(),
                            f.clip.display(),
                            f.index
                        );
                    }
                }
            }
        }
        Ok(l)
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub labels: PathBuf,
    /// Folder the labels' clip paths are relative to.
    pub media: PathBuf,
    /// Face model of the masker (BlazeFace manifest).
    pub face_model: PathBuf,
    /// Object detector of the masker (people, vehicles).
    pub model: PathBuf,
    /// The independent face detector (CenterFace manifest); `None`: not run.
    pub checker: Option<PathBuf>,
    /// Only clips whose path contains one of these.
    pub only: Vec<String>,
    /// At most this many labelled frames per clip (the first ones of the file).
    pub max_frames: Option<usize>,
    pub threads: usize,
    /// Also mask every N-th frame of each labelled clip (unlabelled: only the second
    /// detector checks them, and they count in the cost).
    pub sweep: Option<u64>,
    /// Write each frame (PNG), and the same frame masked with the labels outlined, here.
    pub dump: Option<PathBuf>,
}

/// A box the evaluation reports.
#[derive(Debug, Clone, Serialize)]
pub struct Miss {
    pub clip: String,
    pub index: u64,
    pub kind: &'static str,
    /// `[x1, y1, x2, y2]`, frame pixels.
    pub bbox: [f32; 4],
    /// Share of its pixels masked.
    pub covered: f32,
}

/// Per clip.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClipReport {
    pub clip: String,
    pub frames: usize,
    pub faces: usize,
    pub faces_masked: usize,
    /// Labelled faces ≥ 20 px that the face model's boxes alone mask (without head bands).
    pub faces_by_face_model: usize,
    pub plates: usize,
    pub plates_masked: usize,
    /// Labelled faces under 20 px and plates under 40 px wide (not in the target).
    pub small_faces: usize,
    pub small_faces_masked: usize,
    pub small_plates: usize,
    pub small_plates_masked: usize,
    /// Checker (CenterFace) faces ≥ 20 px wide.
    pub checker_faces: usize,
    /// Of those, left unmasked.
    pub checker_unmasked: usize,
    /// Unlabelled `--sweep` frames; the checker's faces on them (≥ 20 px), and unmasked.
    pub sweep_frames: usize,
    pub sweep_checker_faces: usize,
    pub sweep_checker_unmasked: usize,
    /// Share of the frame's pixels masked, mean over frames.
    pub masked_share: f64,
    pub ms_per_frame: f64,
    pub ms_max: f64,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub clips: Vec<ClipReport>,
    pub total: ClipReport,
    /// (faces masked + plates masked) / (faces + plates); 1 with no labels.
    pub recall: f64,
    pub face_recall: f64,
    pub plate_recall: f64,
    /// Labelled boxes left unmasked, and checker faces left unmasked.
    pub misses: Vec<Miss>,
    pub criterion: String,
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        1.0
    } else {
        a as f64 / b as f64
    }
}

fn load_detector(path: &Path, opts: &DetectorOptions) -> anyhow::Result<Detector> {
    let path = if path.is_dir() { path.join("model.toml") } else { path.to_path_buf() };
    let m = ModelManifest::load(&path).with_context(|| format!("{}", path.display()))?;
    Detector::load(&m, opts).with_context(|| format!("loading {}", path.display()))
}

/// Runs the evaluation; `progress` gets a line per clip.
pub fn run(opts: &Options, progress: &mut dyn FnMut(&str)) -> anyhow::Result<Report> {
    let labels = Labels::load(&opts.labels)?;
    crate::infer::runtime::init(None)?;
    let dopts = DetectorOptions { intra_op_threads: opts.threads, ..DetectorOptions::default() };
    let face = load_detector(&opts.face_model, &dopts)?;
    let objects = load_detector(&opts.model, &dopts)?;
    let masker = Masker::new(face, objects, &[("eval", CameraMaskingConfig::default())]);
    let mut checker = match &opts.checker {
        Some(p) => {
            let d = load_detector(p, &dopts)?;
            let m =
                ModelManifest::load(&if p.is_dir() { p.join("model.toml") } else { p.clone() })?;
            if !matches!(m.output.kind, DecoderKind::Centerface {} | DecoderKind::Blazeface { .. })
            {
                bail!("--checker {}: not a face detector", p.display());
            }
            Some(d)
        }
        None => None,
    };
    if let Some(d) = &opts.dump {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }

    // Frames grouped by clip, in file order.
    let mut by_clip: BTreeMap<String, Vec<LabelledFrame>> = BTreeMap::new();
    for f in &labels.frames {
        let key = f.clip.display().to_string();
        if !opts.only.is_empty() && !opts.only.iter().any(|o| key.contains(o.as_str())) {
            continue;
        }
        let v = by_clip.entry(key).or_default();
        if opts.max_frames.is_none_or(|m| v.len() < m) {
            v.push(f.clone());
        }
    }
    if by_clip.is_empty() {
        bail!("{}: no labelled frames (after --clips)", opts.labels.display());
    }

    let mut clips = Vec::new();
    let mut misses = Vec::new();
    let mut total = ClipReport { clip: "all".into(), ..Default::default() };
    let mut total_ms = 0.0;
    let mut total_share = 0.0;
    for (clip, frames) in &by_clip {
        let path =
            if Path::new(clip).is_absolute() { PathBuf::from(clip) } else { opts.media.join(clip) };
        let wanted: Vec<u64> = frames.iter().map(|f| f.index).collect();
        let decoded = frames_of(&path, &wanted, opts.sweep)?;
        let mut frames = frames.clone();
        for &i in decoded.keys() {
            if !wanted.contains(&i) {
                frames.push(LabelledFrame {
                    clip: PathBuf::from(clip),
                    index: i,
                    chosen: None,
                    faces: vec![],
                    plates: vec![],
                    small_faces: vec![],
                    small_plates: vec![],
                    note: None,
                    sweep: true,
                });
            }
        }
        let mut r = ClipReport { clip: clip.clone(), ..Default::default() };
        let mut ms_sum = 0.0;
        let mut share_sum = 0.0;
        for lf in &frames {
            let frame = decoded
                .get(&lf.index)
                .ok_or_else(|| anyhow!("{clip}: frame {} not decoded", lf.index))?;
            let (w, h) = (frame.width, frame.height);
            let mut rgb = frame.rgb.to_vec();
            let t = Instant::now();
            let regions =
                masker.mask("eval", &mut rgb, w, h).map_err(|e| anyhow!("{clip}: {e}"))?;
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            ms_sum += ms;
            r.ms_max = r.ms_max.max(ms);
            // Which pixels the masker hid, painted with its own fill on a blank frame.
            let mut hidden = vec![0u8; rgb.len()];
            for reg in &regions {
                crate::masking::fill(&mut hidden, w, h, &reg.bbox);
            }
            let covered = |b: &[f32; 4]| coverage(&hidden, w, h, b);
            // The face model's regions alone (without head and plate bands): what it adds.
            let mut by_face_model = vec![0u8; rgb.len()];
            for reg in regions.iter().filter(|r| r.kind == crate::masking::RegionKind::Face) {
                crate::masking::fill(&mut by_face_model, w, h, &reg.bbox);
            }
            share_sum += coverage(&hidden, w, h, &[0.0, 0.0, w as f32, h as f32]) as f64;
            if lf.sweep {
                r.sweep_frames += 1;
            } else {
                r.frames += 1;
            }
            let faces = lf.faces.iter().chain(&lf.small_faces).map(|b| (b, MIN_FACE_PX, true));
            let plates = lf.plates.iter().chain(&lf.small_plates).map(|b| (b, MIN_PLATE_PX, false));
            for (b, min, is_face) in faces.chain(plates) {
                let c = covered(b);
                let ok = c >= COVERED;
                let small = b[2] - b[0] < min;
                let (n, masked, kind) = match (is_face, small) {
                    (true, false) => (&mut r.faces, &mut r.faces_masked, "face"),
                    (false, false) => (&mut r.plates, &mut r.plates_masked, "plate"),
                    (true, true) => (&mut r.small_faces, &mut r.small_faces_masked, "small_face"),
                    (false, true) => {
                        (&mut r.small_plates, &mut r.small_plates_masked, "small_plate")
                    }
                };
                *n += 1;
                *masked += ok as usize;
                if is_face && !small && coverage(&by_face_model, w, h, b) >= COVERED {
                    r.faces_by_face_model += 1;
                }
                if !ok {
                    misses.push(Miss {
                        clip: clip.clone(),
                        index: lf.index,
                        kind,
                        bbox: *b,
                        covered: c,
                    });
                }
            }
            let mut checker_boxes = Vec::new();
            if let Some(ch) = checker.as_mut() {
                for d in ch.detect(&frame.rgb, w, h)? {
                    let b = px(&d.bbox, w, h);
                    if b[2] - b[0] < MIN_FACE_PX {
                        continue;
                    }
                    let c = covered(&b);
                    let (n, unmasked) = if lf.sweep {
                        (&mut r.sweep_checker_faces, &mut r.sweep_checker_unmasked)
                    } else {
                        (&mut r.checker_faces, &mut r.checker_unmasked)
                    };
                    *n += 1;
                    if c < COVERED {
                        *unmasked += 1;
                        misses.push(Miss {
                            clip: clip.clone(),
                            index: lf.index,
                            kind: if lf.sweep { "sweep_checker_face" } else { "checker_face" },
                            bbox: b,
                            covered: c,
                        });
                    }
                    checker_boxes.push(b);
                }
            }
            if let Some(dir) = &opts.dump {
                let name = Path::new(clip)
                    .file_stem()
                    .map(|s| s.to_string_lossy().to_string())
                    .unwrap_or_else(|| "clip".into());
                let mut out = rgb.clone();
                for b in lf.faces.iter().chain(&lf.plates) {
                    outline(&mut out, w, h, b, [0, 255, 0]);
                }
                for b in &checker_boxes {
                    outline(&mut out, w, h, b, [255, 0, 255]);
                }
                let save = |what: &str, buf: &[u8]| {
                    let p = dir.join(format!("{name}-{:05}{what}.png", lf.index));
                    image::save_buffer(&p, buf, w, h, image::ExtendedColorType::Rgb8)
                        .with_context(|| format!("writing {}", p.display()))
                };
                save("", &frame.rgb)?;
                save("-masked", &out)?;
            }
        }
        let all = (r.frames + r.sweep_frames).max(1) as f64;
        r.ms_per_frame = ms_sum / all;
        r.masked_share = share_sum / all;
        progress(&format!(
            "{clip}: {} frames, faces {}/{}, plates {}/{}, checker unmasked {}/{}, {:.0} ms/frame",
            r.frames,
            r.faces_masked,
            r.faces,
            r.plates_masked,
            r.plates,
            r.checker_unmasked,
            r.checker_faces,
            r.ms_per_frame
        ));
        total.frames += r.frames;
        total.faces += r.faces;
        total.faces_masked += r.faces_masked;
        total.faces_by_face_model += r.faces_by_face_model;
        total.plates += r.plates;
        total.plates_masked += r.plates_masked;
        total.small_faces += r.small_faces;
        total.small_faces_masked += r.small_faces_masked;
        total.small_plates += r.small_plates;
        total.small_plates_masked += r.small_plates_masked;
        total.checker_faces += r.checker_faces;
        total.checker_unmasked += r.checker_unmasked;
        total.sweep_frames += r.sweep_frames;
        total.sweep_checker_faces += r.sweep_checker_faces;
        total.sweep_checker_unmasked += r.sweep_checker_unmasked;
        total.ms_max = total.ms_max.max(r.ms_max);
        total_ms += ms_sum;
        total_share += share_sum;
        clips.push(r);
    }
    let all = (total.frames + total.sweep_frames).max(1) as f64;
    total.ms_per_frame = total_ms / all;
    total.masked_share = total_share / all;
    Ok(Report {
        recall: ratio(total.faces_masked + total.plates_masked, total.faces + total.plates),
        face_recall: ratio(total.faces_masked, total.faces),
        plate_recall: ratio(total.plates_masked, total.plates),
        clips,
        total,
        misses,
        criterion: format!(
            "a labelled face (≥ {MIN_FACE_PX} px wide) or plate (≥ {MIN_PLATE_PX} px wide) is \
             masked when ≥ {:.0} % of its box's pixels are masked",
            COVERED * 100.0
        ),
    })
}

/// The report as text.
pub fn format_report(r: &Report) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<58} {:>6} {:>7} {:>7} {:>11} {:>12} {:>7} {:>9} {:>7}",
        "clip",
        "frames",
        "faces",
        "plates",
        "small f/p",
        "checker miss",
        "masked",
        "ms/frame",
        "ms max"
    );
    for c in r.clips.iter().chain(std::iter::once(&r.total)) {
        let _ = writeln!(
            s,
            "{:<58} {:>6} {:>7} {:>7} {:>11} {:>12} {:>6.0}% {:>9.0} {:>7.0}",
            c.clip,
            c.frames,
            format!("{}/{}", c.faces_masked, c.faces),
            format!("{}/{}", c.plates_masked, c.plates),
            format!(
                "{}/{} {}/{}",
                c.small_faces_masked, c.small_faces, c.small_plates_masked, c.small_plates
            ),
            format!("{}/{}", c.checker_unmasked, c.checker_faces),
            c.masked_share * 100.0,
            c.ms_per_frame,
            c.ms_max
        );
    }
    let _ = writeln!(
        s,
        "faces masked by the face model's boxes alone (without head bands): {}/{}",
        r.total.faces_by_face_model, r.total.faces
    );
    if r.total.sweep_frames > 0 {
        let _ = writeln!(
            s,
            "sweep: {} unlabelled frames, checker faces left unmasked {}/{}",
            r.total.sweep_frames, r.total.sweep_checker_unmasked, r.total.sweep_checker_faces
        );
    }
    let _ = writeln!(
        s,
        "recall {:.4} (faces {:.4}, plates {:.4}); {}",
        r.recall, r.face_recall, r.plate_recall, r.criterion
    );
    for m in &r.misses {
        let _ = writeln!(
            s,
            "  unmasked {:<12} {} #{} [{:.0}, {:.0}, {:.0}, {:.0}] ({:.0} % masked)",
            m.kind,
            m.clip,
            m.index,
            m.bbox[0],
            m.bbox[1],
            m.bbox[2],
            m.bbox[3],
            m.covered * 100.0
        );
    }
    s
}

/// A normalised box in frame pixels.
fn px(b: &BBox, w: u32, h: u32) -> [f32; 4] {
    [b.x1 * w as f32, b.y1 * h as f32, b.x2 * w as f32, b.y2 * h as f32]
}

/// Share of the pixels of box `b` (frame pixels; those inside the frame) that are [`FILL`]
/// in `hidden`.
fn coverage(hidden: &[u8], w: u32, h: u32, b: &[f32; 4]) -> f32 {
    let x0 = (b[0].max(0.0).round() as u32).min(w);
    let y0 = (b[1].max(0.0).round() as u32).min(h);
    let x1 = (b[2].max(0.0).round() as u32).min(w);
    let y1 = (b[3].max(0.0).round() as u32).min(h);
    let (mut n, mut hit) = (0u64, 0u64);
    for y in y0..y1 {
        for x in x0..x1 {
            n += 1;
            hit += (hidden[((y * w + x) * 3) as usize] == FILL) as u64;
        }
    }
    if n == 0 {
        return 1.0;
    }
    hit as f32 / n as f32
}

/// Draws a box outline (2 px) for the dump.
fn outline(rgb: &mut [u8], w: u32, h: u32, b: &[f32; 4], colour: [u8; 3]) {
    let x0 = (b[0].max(0.0) as u32).min(w.saturating_sub(1));
    let y0 = (b[1].max(0.0) as u32).min(h.saturating_sub(1));
    let x1 = (b[2].max(0.0) as u32).min(w.saturating_sub(1));
    let y1 = (b[3].max(0.0) as u32).min(h.saturating_sub(1));
    let mut put = |x: u32, y: u32| {
        let i = ((y * w + x) * 3) as usize;
        rgb[i..i + 3].copy_from_slice(&colour);
    };
    for x in x0..=x1 {
        for d in 0..2 {
            put(x, (y0 + d).min(h - 1));
            put(x, y1.saturating_sub(d));
        }
    }
    for y in y0..=y1 {
        for d in 0..2 {
            put((x0 + d).min(w - 1), y);
            put(x1.saturating_sub(d), y);
        }
    }
}

/// The frames `wanted` (0-based decoded indices) of a video, and with `every` also every
/// `every`-th frame to the end, decoding it once.
pub fn frames_of(
    video: &Path,
    wanted: &[u64],
    every: Option<u64>,
) -> anyhow::Result<BTreeMap<u64, Frame>> {
    if !video.is_file() {
        bail!("{}: not found", video.display());
    }
    crate::gst::init()?;
    let last = wanted.iter().copied().max().unwrap_or(0);
    let loc =
        format!("\"{}\"", video.display().to_string().replace('\\', "\\\\").replace('"', "\\\""));
    let opener = crate::ingest::gst::GstOpener {
        camera_id: Arc::from("eval"),
        description: format!(
            "filesrc location={loc} ! decodebin ! videoconvert ! video/x-raw,format=RGB \
             ! appsink name=sink max-buffers=2 drop=false sync=false enable-last-sample=false"
        ),
        record: None,
        skip_nonref_fps: None,
        decoder_threads: 0,
    };
    let mut s: Box<dyn FrameStream> = opener.open()?;
    let mut out = BTreeMap::new();
    let mut i = 0u64;
    let every = every.filter(|&n| n > 0);
    while i <= last || every.is_some() {
        match s.next(Duration::from_secs(10)) {
            StreamEvent::Frame(f) => {
                if wanted.contains(&i) || every.is_some_and(|n| i.is_multiple_of(n)) {
                    out.insert(i, f);
                }
                i += 1;
            }
            StreamEvent::Eos if i > last => break,
            StreamEvent::Eos => bail!("{}: only {i} frames (wanted #{last})", video.display()),
            StreamEvent::Idle => bail!("{}: no frame for 10 s", video.display()),
            StreamEvent::Error(e) => bail!("{}: {e}", video.display()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coverage_counts_filled_pixels_of_the_box() {
        let (w, h) = (10u32, 10u32);
        let mut hidden = vec![0u8; 300];
        crate::masking::fill(&mut hidden, w, h, &BBox { x1: 0.0, y1: 0.0, x2: 0.5, y2: 1.0 });
        assert_eq!(coverage(&hidden, w, h, &[0.0, 0.0, 5.0, 10.0]), 1.0);
        assert_eq!(coverage(&hidden, w, h, &[0.0, 0.0, 10.0, 10.0]), 0.5);
        assert_eq!(coverage(&hidden, w, h, &[5.0, 0.0, 10.0, 10.0]), 0.0);
        // Outside the frame: clipped.
        assert_eq!(coverage(&hidden, w, h, &[-5.0, 0.0, 5.0, 20.0]), 1.0);
    }

    /// CenterFace (the real model, `kind = "centerface"`) on frame 15 of the crosswalk clip:
    /// the woman's face, about 26 px wide near (244, 351) (checked by eye, as in
    /// `masking::tests`), and nothing on the empty road.
    #[test]
    fn centerface_finds_a_real_face() {
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let clip = repo.join("../shared/media/people/people-street-crosswalk-720p.mp4");
        if !clip.is_file() {
            eprintln!("skipping: {} not found (test-only footage)", clip.display());
            return;
        }
        let frames = frames_of(&clip, &[15], None).unwrap();
        let f = &frames[&15];
        crate::infer::runtime::init(None).unwrap();
        let mut cf =
            load_detector(&repo.join("models/centerface"), &DetectorOptions::default()).unwrap();
        let faces: Vec<[f32; 4]> = cf
            .detect(&f.rgb, f.width, f.height)
            .unwrap()
            .iter()
            .map(|d| px(&d.bbox, 1280, 720))
            .collect();
        let near: Vec<_> = faces
            .iter()
            .filter(|b| {
                ((b[0] + b[2]) / 2.0 - 244.0).abs() < 8.0
                    && ((b[1] + b[3]) / 2.0 - 351.0).abs() < 10.0
            })
            .collect();
        assert_eq!(near.len(), 1, "{faces:?}");
        let w = near[0][2] - near[0][0];
        assert!((18.0..40.0).contains(&w), "face width {w}: {faces:?}");
        assert!(!faces.iter().any(|b| b[1] > 540.0), "a face on the road: {faces:?}");
    }

    #[test]
    fn labels_reject_bad_boxes() {
        let dir = std::env::temp_dir().join(format!("gw-mask-labels-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("l.toml");
        std::fs::write(&p, "[[frame]]\nclip = \"a.mp4\"\nindex = 3\nfaces = [[10, 10, 5, 20]]\n")
            .unwrap();
        let e = Labels::load(&p).unwrap_err().to_string();
        assert!(e.contains("faces") && e.contains("a.mp4"), "{e}");
        std::fs::write(&p, "[[frame]]\nclip = \"a.mp4\"\nindex = 3\nfacez = []\n").unwrap();
        assert!(Labels::load(&p).is_err());
        std::fs::write(&p, "[[frame]]\nclip = \"a.mp4\"\nindex = 3\nplates = [[1, 2, 50, 20]]\n")
            .unwrap();
        assert_eq!(Labels::load(&p).unwrap().frames[0].plates.len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
