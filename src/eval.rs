//! `gridwatch eval mot`: detection + tracking over a video, scored against MOTChallenge
//! ground truth with the CLEAR-MOT metrics (Bernardin & Stiefelhagen, 2008) and the
//! identity metrics IDF1/IDP/IDR (Ristani et al., 2016).
//!
//! Matching follows py-motmetrics / TrackEval: a tracker box and a GT box can match at
//! IoU ≥ 0.5. On every frame, tracker boxes are first matched (Hungarian) against all GT
//! boxes; those matched to GT rows with conf = 0 ("ignore") are dropped, and ignored rows
//! are not counted. Then each GT object keeps its previous tracker id if that box is still
//! present at IoU ≥ 0.5, the rest is matched by the Hungarian algorithm (most matches, then
//! highest total IoU), and a GT object matched to a tracker id other than its last one
//! counts as an identity switch. IDF1 uses the global one-to-one assignment of GT ids to
//! tracker ids that maximises the number of frames where they match.

pub mod masking;
pub mod scenarios;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde::Serialize;

use crate::analytics::{CameraAnalytics, Detect, Detectors};
use crate::ingest::{FrameStream, Opener, StreamEvent};
use crate::track::{assign, TrackerConfig};
use crate::types::{BBox, Detection};

/// Minimum IoU for a tracker box to match a GT box.
pub const MATCH_IOU: f32 = 0.5;

/// One ground-truth box of one frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GtBox {
    pub id: u64,
    pub bbox: BBox,
    /// conf = 0 in the GT file: not counted, and tracker boxes matching it are dropped.
    pub ignore: bool,
}

/// One tracker output box of one frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HypBox {
    pub id: u64,
    pub bbox: BBox,
}

/// Parses MOTChallenge ground truth (`frame,id,left,top,width,height,conf[,x,y,z]`, pixels).
/// Errors name the file and line.
pub fn parse_gt(text: &str, path: &Path) -> anyhow::Result<BTreeMap<u64, Vec<GtBox>>> {
    let mut out: BTreeMap<u64, Vec<GtBox>> = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = || format!("{}:{}", path.display(), n + 1);
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        if f.len() < 6 {
            bail!(
                "{}: expected `frame,id,left,top,width,height[,conf,…]`, got {} field(s)",
                at(),
                f.len()
            );
        }
        let num = |i: usize, what: &str| -> anyhow::Result<f64> {
            f[i].parse::<f64>().ok().filter(|v| v.is_finite()).ok_or_else(|| {
                anyhow!("{}: field {} ({what}) is not a number: `{}`", at(), i + 1, f[i])
            })
        };
        let frame = num(0, "frame")?;
        let id = num(1, "id")?;
        if frame < 1.0 || frame.fract() != 0.0 {
            bail!("{}: frame must be a whole number ≥ 1, got `{}`", at(), f[0]);
        }
        if id < 0.0 || id.fract() != 0.0 {
            bail!("{}: id must be a whole number ≥ 0, got `{}`", at(), f[1]);
        }
        let (l, t, w, h) = (num(2, "left")?, num(3, "top")?, num(4, "width")?, num(5, "height")?);
        if w < 0.0 || h < 0.0 {
            bail!("{}: negative box size", at());
        }
        let conf = if f.len() > 6 { num(6, "conf")? } else { 1.0 };
        let bbox = BBox { x1: l as f32, y1: t as f32, x2: (l + w) as f32, y2: (t + h) as f32 };
        out.entry(frame as u64).or_default().push(GtBox {
            id: id as u64,
            bbox,
            ignore: conf == 0.0,
        });
    }
    Ok(out)
}

/// Parses `A-B` (1-based, inclusive) or a single frame `A`.
pub fn parse_range(s: &str) -> anyhow::Result<(u64, u64)> {
    let bad = || anyhow!("--frames: expected A-B (1-based, inclusive), got `{s}`");
    let (a, b) = match s.split_once('-') {
        Some((a, b)) => (
            a.trim().parse::<u64>().map_err(|_| bad())?,
            b.trim().parse::<u64>().map_err(|_| bad())?,
        ),
        None => {
            let a = s.trim().parse::<u64>().map_err(|_| bad())?;
            (a, a)
        }
    };
    if a == 0 || b < a {
        return Err(bad());
    }
    Ok((a, b))
}

/// Parses `WxH`.
pub fn parse_size(s: &str) -> anyhow::Result<(u32, u32)> {
    let bad = || anyhow!("--gt-size: expected WIDTHxHEIGHT (e.g. 768x576), got `{s}`");
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let (w, h) =
        (w.trim().parse::<u32>().map_err(|_| bad())?, h.trim().parse::<u32>().map_err(|_| bad())?);
    if w == 0 || h == 0 {
        return Err(bad());
    }
    Ok((w, h))
}

/// Builds a tracker config from the defaults plus `key=value` overrides (TOML values).
pub fn tracker_config(overrides: &[String]) -> anyhow::Result<TrackerConfig> {
    let mut text = String::new();
    for o in overrides {
        let (k, v) =
            o.split_once('=').ok_or_else(|| anyhow!("--tracker: expected KEY=VALUE, got `{o}`"))?;
        text.push_str(&format!("{} = {}\n", k.trim(), v.trim()));
    }
    let cfg: TrackerConfig =
        toml::from_str(&text).map_err(|e| anyhow!("--tracker: {}", e.message()))?;
    cfg.validate().map_err(|e| anyhow!("--tracker: {e}"))?;
    Ok(cfg)
}

/// CLEAR-MOT and identity metrics. Rates are fractions (0–1); MOTP is the mean IoU of matches.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct MotMetrics {
    pub frames: u64,
    /// GT boxes counted (conf ≠ 0).
    pub gt_boxes: u64,
    /// Distinct GT objects (ids) counted.
    pub gt_ids: u64,
    /// Tracker boxes after dropping those on ignored GT.
    pub hyp_boxes: u64,
    pub hyp_ids: u64,
    pub tp: u64,
    pub fp: u64,
    #[serde(rename = "fn")]
    pub fn_: u64,
    pub idsw: u64,
    pub frag: u64,
    /// GT objects tracked ≥ 80 % / 20–80 % / < 20 % of their life.
    pub mt: u64,
    pub pt: u64,
    pub ml: u64,
    pub mota: f64,
    pub motp: f64,
    pub idf1: f64,
    pub idp: f64,
    pub idr: f64,
    pub idtp: u64,
    pub precision: f64,
    pub recall: f64,
}

#[derive(Default)]
struct GtLife {
    present: u64,
    matched: u64,
    segments: u64,
    matched_prev: bool,
}

/// Accumulates per-frame GT and tracker boxes; `finish` computes the metrics.
#[derive(Default)]
pub struct MotAccumulator {
    frames: u64,
    last_match: HashMap<u64, u64>,
    life: BTreeMap<u64, GtLife>,
    pairs: HashMap<(u64, u64), u64>,
    hyp_ids: std::collections::HashSet<u64>,
    gt_boxes: u64,
    hyp_boxes: u64,
    tp: u64,
    fp: u64,
    fn_: u64,
    idsw: u64,
    iou_sum: f64,
}

/// Hungarian matching at IoU ≥ 0.5: most matches first, then highest total IoU.
fn match_iou(a: &[BBox], b: &[BBox]) -> Vec<(usize, usize)> {
    assign(a.len(), b.len(), |i, j| {
        let iou = a[i].iou(&b[j]);
        (iou >= MATCH_IOU).then_some(1000.0 + iou as f64)
    })
}

impl MotAccumulator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one frame (boxes in any consistent unit).
    pub fn add_frame(&mut self, gt: &[GtBox], hyp: &[HypBox]) {
        self.frames += 1;
        // 1. Drop tracker boxes that match ignored GT rows.
        let all_gt: Vec<BBox> = gt.iter().map(|g| g.bbox).collect();
        let hyp_boxes: Vec<BBox> = hyp.iter().map(|h| h.bbox).collect();
        let mut drop = vec![false; hyp.len()];
        for (g, h) in match_iou(&all_gt, &hyp_boxes) {
            if gt[g].ignore {
                drop[h] = true;
            }
        }
        let hyp: Vec<HypBox> =
            hyp.iter().zip(&drop).filter(|(_, d)| !**d).map(|(h, _)| *h).collect();
        let gt: Vec<GtBox> = gt.iter().filter(|g| !g.ignore).copied().collect();
        self.gt_boxes += gt.len() as u64;
        self.hyp_boxes += hyp.len() as u64;
        self.hyp_ids.extend(hyp.iter().map(|h| h.id));

        // 2. Identity pairs for IDF1 (any pair at IoU ≥ 0.5 on this frame).
        for g in &gt {
            for h in &hyp {
                if g.bbox.iou(&h.bbox) >= MATCH_IOU {
                    *self.pairs.entry((g.id, h.id)).or_default() += 1;
                }
            }
        }

        // 3. CLEAR-MOT: keep still-valid previous matches, Hungarian for the rest.
        let mut gt_match: Vec<Option<usize>> = vec![None; gt.len()];
        let mut hyp_used = vec![false; hyp.len()];
        for (gi, g) in gt.iter().enumerate() {
            let Some(&prev) = self.last_match.get(&g.id) else { continue };
            if let Some(hi) = hyp.iter().position(|h| h.id == prev) {
                if !hyp_used[hi] && g.bbox.iou(&hyp[hi].bbox) >= MATCH_IOU {
                    gt_match[gi] = Some(hi);
                    hyp_used[hi] = true;
                }
            }
        }
        let gi_free: Vec<usize> = (0..gt.len()).filter(|&i| gt_match[i].is_none()).collect();
        let hi_free: Vec<usize> = (0..hyp.len()).filter(|&i| !hyp_used[i]).collect();
        let a: Vec<BBox> = gi_free.iter().map(|&i| gt[i].bbox).collect();
        let b: Vec<BBox> = hi_free.iter().map(|&i| hyp[i].bbox).collect();
        for (x, y) in match_iou(&a, &b) {
            let (gi, hi) = (gi_free[x], hi_free[y]);
            gt_match[gi] = Some(hi);
            hyp_used[hi] = true;
            if self.last_match.get(&gt[gi].id).is_some_and(|&p| p != hyp[hi].id) {
                self.idsw += 1;
            }
        }
        for (gi, g) in gt.iter().enumerate() {
            let life = self.life.entry(g.id).or_default();
            life.present += 1;
            match gt_match[gi] {
                Some(hi) => {
                    self.tp += 1;
                    self.iou_sum += g.bbox.iou(&hyp[hi].bbox) as f64;
                    self.last_match.insert(g.id, hyp[hi].id);
                    life.matched += 1;
                    if !life.matched_prev {
                        life.segments += 1;
                    }
                    life.matched_prev = true;
                }
                None => {
                    self.fn_ += 1;
                    life.matched_prev = false;
                }
            }
        }
        self.fp += hyp_used.iter().filter(|u| !**u).count() as u64;
    }

    pub fn finish(&self) -> MotMetrics {
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        // Global identity assignment: GT ids ↔ tracker ids, maximising matched frames.
        let gt_ids: Vec<u64> = self.life.keys().copied().collect();
        let mut hyp_ids: Vec<u64> = self.hyp_ids.iter().copied().collect();
        hyp_ids.sort_unstable();
        let idtp: u64 = assign(gt_ids.len(), hyp_ids.len(), |i, j| {
            self.pairs.get(&(gt_ids[i], hyp_ids[j])).map(|&n| n as f64)
        })
        .into_iter()
        .map(|(i, j)| self.pairs.get(&(gt_ids[i], hyp_ids[j])).copied().unwrap_or(0))
        .sum();
        let (mut mt, mut pt, mut ml, mut frag) = (0, 0, 0, 0);
        for l in self.life.values() {
            let r = ratio(l.matched as f64, l.present as f64);
            if r >= 0.8 {
                mt += 1;
            } else if r >= 0.2 {
                pt += 1;
            } else {
                ml += 1;
            }
            frag += l.segments.saturating_sub(1);
        }
        let (g, h) = (self.gt_boxes as f64, self.hyp_boxes as f64);
        MotMetrics {
            frames: self.frames,
            gt_boxes: self.gt_boxes,
            gt_ids: gt_ids.len() as u64,
            hyp_boxes: self.hyp_boxes,
            hyp_ids: hyp_ids.len() as u64,
            tp: self.tp,
            fp: self.fp,
            fn_: self.fn_,
            idsw: self.idsw,
            frag,
            mt,
            pt,
            ml,
            mota: if g > 0.0 { 1.0 - (self.fn_ + self.fp + self.idsw) as f64 / g } else { 0.0 },
            motp: ratio(self.iou_sum, self.tp as f64),
            idf1: ratio(2.0 * idtp as f64, g + h),
            idp: ratio(idtp as f64, h),
            idr: ratio(idtp as f64, g),
            idtp,
            precision: ratio(self.tp as f64, h),
            recall: ratio(self.tp as f64, g),
        }
    }
}

/// Detection average precision at IoU ≥ [`MATCH_IOU`] (PASCAL VOC style: detections of all
/// frames ranked by score, each matched greedily to the best-overlapping GT box of its frame,
/// all-point interpolated precision). A detection whose best GT box is ignored (conf = 0) is
/// dropped, as in MOT scoring. Scores below the detector's threshold are never seen, so this is
/// the AP of the precision–recall curve down to that threshold.
#[derive(Debug, Default)]
pub struct ApAccumulator {
    /// (score, true positive) of every counted detection.
    ranked: Vec<(f32, bool)>,
    gt: u64,
}

impl ApAccumulator {
    /// Adds one frame: its GT boxes and its detections (score, box), in the same unit.
    pub fn add_frame(&mut self, gt: &[GtBox], dets: &[(f32, BBox)]) {
        self.gt += gt.iter().filter(|g| !g.ignore).count() as u64;
        let mut order: Vec<usize> = (0..dets.len()).collect();
        order.sort_by(|&a, &b| dets[b].0.total_cmp(&dets[a].0));
        let mut taken = vec![false; gt.len()];
        for i in order {
            let (score, bbox) = dets[i];
            let best = gt
                .iter()
                .enumerate()
                .map(|(j, g)| (j, g.bbox.iou(&bbox)))
                .filter(|&(_, iou)| iou >= MATCH_IOU)
                .max_by(|a, b| a.1.total_cmp(&b.1));
            match best {
                Some((j, _)) if gt[j].ignore => {}
                Some((j, _)) if !taken[j] => {
                    taken[j] = true;
                    self.ranked.push((score, true));
                }
                _ => self.ranked.push((score, false)),
            }
        }
    }

    /// The average precision (0 with no GT box).
    pub fn ap(&self) -> f64 {
        if self.gt == 0 {
            return 0.0;
        }
        let mut ranked = self.ranked.clone();
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
        let (mut tp, mut fp) = (0u64, 0u64);
        let mut curve: Vec<(f64, f64)> = Vec::with_capacity(ranked.len());
        for (_, hit) in ranked {
            if hit {
                tp += 1;
            } else {
                fp += 1;
            }
            curve.push((tp as f64 / self.gt as f64, tp as f64 / (tp + fp) as f64));
        }
        // Precision envelope from the right, then the area under the recall steps.
        for i in (0..curve.len().saturating_sub(1)).rev() {
            curve[i].1 = curve[i].1.max(curve[i + 1].1);
        }
        let mut ap = 0.0;
        let mut last_recall = 0.0;
        for (recall, precision) in curve {
            ap += (recall - last_recall) * precision;
            last_recall = recall;
        }
        ap
    }
}

/// What `gridwatch eval mot` runs.
#[derive(Debug, Clone)]
pub struct MotOptions {
    pub video: PathBuf,
    pub gt: PathBuf,
    /// 1-based inclusive frame range; default: the GT's first to last frame.
    pub frames: Option<(u64, u64)>,
    pub model: PathBuf,
    /// Width frames are scaled to before detection.
    pub width: u32,
    pub threads: usize,
    /// Pixel size of the GT coordinates; default: the video's native size.
    pub gt_size: Option<(u32, u32)>,
    /// Class label that is tracked and scored.
    pub class: String,
    /// Detector score threshold; default: the tracker's `low_score`.
    pub score_threshold: Option<f32>,
    pub tracker: TrackerConfig,
    /// Read detections (MOT det format, GT pixels) instead of running the model.
    pub dets_in: Option<PathBuf>,
    /// Write the detections (MOT det format, GT pixels) for later `dets_in` runs.
    pub dets_out: Option<PathBuf>,
    /// Write the tracker output (MOTChallenge result format, GT pixels).
    pub tracks_out: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MotReport {
    pub video: String,
    pub gt: String,
    pub first_frame: u64,
    pub last_frame: u64,
    pub gt_size: (u32, u32),
    pub detect_size: (u32, u32),
    pub model: String,
    pub metrics: MotMetrics,
    /// Detection AP at IoU 0.5 of the scored class, before tracking (see [`ApAccumulator`]).
    pub detection_ap50: f64,
    /// Frames per second over decode + detection + tracking (wall clock).
    pub fps: f64,
    pub detect_ms: f64,
    pub track_ms: f64,
}

/// The native pixel size of a video (first decoded frame, unscaled).
pub fn video_size(video: &Path) -> anyhow::Result<(u32, u32)> {
    crate::gst::init()?;
    let loc =
        format!("\"{}\"", video.display().to_string().replace('\\', "\\\\").replace('"', "\\\""));
    let description = format!(
        "filesrc location={loc} ! decodebin ! videoconvert ! video/x-raw,format=RGB \
         ! appsink name=sink max-buffers=2 drop=false sync=false enable-last-sample=false"
    );
    let opener = crate::ingest::gst::GstOpener {
        camera_id: std::sync::Arc::from("probe"),
        description,
        record: None,
        skip_nonref_fps: None,
        decoder_threads: 0,
    };
    let mut s = opener.open().with_context(|| format!("opening {}", video.display()))?;
    match s.next(Duration::from_secs(10)) {
        StreamEvent::Frame(f) => Ok((f.width, f.height)),
        StreamEvent::Eos => Err(anyhow!("{}: no frames", video.display())),
        StreamEvent::Idle => Err(anyhow!("{}: no frame for 10 s", video.display())),
        StreamEvent::Error(e) => Err(anyhow!("{}: {e}", video.display())),
    }
}

fn parse_dets(
    text: &str,
    path: &Path,
    class: &str,
    size: (u32, u32),
) -> anyhow::Result<HashMap<u64, Vec<Detection>>> {
    let mut out: HashMap<u64, Vec<Detection>> = HashMap::new();
    let (w, h) = (size.0 as f32, size.1 as f32);
    // Same layout as GT (MOT det.txt), with the score in the conf column.
    for (n, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let num = |i: usize| -> anyhow::Result<f32> {
            f.get(i).and_then(|s| s.parse::<f32>().ok()).filter(|v| v.is_finite()).ok_or_else(
                || {
                    anyhow!(
                        "{}:{}: field {} is missing or not a number",
                        path.display(),
                        n + 1,
                        i + 1
                    )
                },
            )
        };
        let (frame, l, t, bw, bh, score) = (num(0)?, num(2)?, num(3)?, num(4)?, num(5)?, num(6)?);
        out.entry(frame as u64).or_default().push(Detection {
            class_id: 0,
            class: class.to_string(),
            score,
            bbox: BBox { x1: l / w, y1: t / h, x2: (l + bw) / w, y2: (t + bh) / h },
            track_id: None,
            keypoints: None,
        });
    }
    Ok(out)
}

/// The name the evaluated model runs under (the one model of the evaluation camera).
const EVAL_MODEL: &str = "model";

/// The evaluation camera: the tracker under test, the one model, no rules, and only
/// detections of the scored class.
fn eval_camera(o: &MotOptions) -> anyhow::Result<CameraAnalytics> {
    const CAMERA: &str = "box_id = 'eval'\ndata_dir = '/tmp'\n[models]\n[[cameras]]\n\
                          id = 'eval'\nurl = 'eval.mp4'\nmodels = []\nenabled = false\n";
    let cfg = crate::config::Config::parse(CAMERA, Path::new("/")).map_err(|e| anyhow!(e))?;
    let mut cam = cfg.cameras.into_iter().next().ok_or_else(|| anyhow!("no eval camera"))?;
    cam.tracker = o.tracker.clone();
    cam.models = vec![EVAL_MODEL.to_string()];
    Ok(CameraAnalytics::new(&cam).only_class(&o.class))
}

/// Runs detection + tracking over the frame range and scores it.
pub fn run_mot(o: &MotOptions) -> anyhow::Result<MotReport> {
    let gt_text =
        std::fs::read_to_string(&o.gt).with_context(|| format!("reading GT {}", o.gt.display()))?;
    let gt = parse_gt(&gt_text, &o.gt)?;
    let (first, last) = match o.frames {
        Some(r) => r,
        None => match (gt.keys().next(), gt.keys().next_back()) {
            (Some(&a), Some(&b)) => (a, b),
            _ => bail!("{}: no ground truth rows", o.gt.display()),
        },
    };
    let gt_size = match o.gt_size {
        Some(s) => s,
        None => video_size(&o.video)?,
    };
    let cached = match &o.dets_in {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading detections {}", p.display()))?;
            Some(parse_dets(&text, p, &o.class, gt_size)?)
        }
        None => None,
    };
    let mut detectors = match cached {
        Some(_) => None,
        None => {
            let mut d = crate::cli::open_detector(&o.model, o.threads)?;
            d.set_score_threshold(o.score_threshold.unwrap_or(o.tracker.low_score));
            Some(Detectors::single(EVAL_MODEL, d))
        }
    };
    let mut dets_out = o.dets_out.as_ref().map(|p| (p, String::new()));
    let mut tracks_out = o.tracks_out.as_ref().map(|p| (p, String::new()));
    let mut stream: Box<dyn FrameStream> = crate::cli::open_video(&o.video, o.width)?;
    let analytics = eval_camera(o)?;
    let mut acc = MotAccumulator::new();
    let mut ap = ApAccumulator::default();
    let t0 =
        time::OffsetDateTime::from_unix_timestamp(0).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let (gw, gh) = (gt_size.0 as f32, gt_size.1 as f32);
    let (mut detect_s, mut track_s) = (0.0f64, 0.0f64);
    let mut detect_size = (0, 0);
    let mut last_seen_frame = 0;
    let start = Instant::now();
    loop {
        let mut f = match stream.next(Duration::from_secs(10)) {
            StreamEvent::Frame(f) => f,
            StreamEvent::Eos => break,
            StreamEvent::Idle => bail!("{}: no frame for 10 s", o.video.display()),
            StreamEvent::Error(e) => bail!("{}: {e}", o.video.display()),
        };
        last_seen_frame = f.index;
        if f.index < first {
            continue;
        }
        if f.index > last {
            break;
        }
        detect_size = (f.width, f.height);
        if let Some(ns) = f.pts_ns {
            f.captured_at = t0 + time::Duration::nanoseconds(ns as i64);
        }
        let index = f.index;
        let detect = match (&mut detectors, &cached) {
            (Some(d), _) => Detect::Run(d),
            (None, Some(c)) => Detect::Given(c.get(&index).cloned().unwrap_or_default()),
            (None, None) => Detect::Given(Vec::new()),
        };
        let out = analytics.analyse(detect, f);
        detect_s += out.tracks.detections.infer_ms as f64 / 1000.0;
        track_s += out.track_ms as f64 / 1000.0;
        let dets = &out.tracks.detections.objects;
        let frame_gt = gt.get(&index).map(Vec::as_slice).unwrap_or(&[]);
        let scaled = |b: BBox| BBox { x1: b.x1 * gw, y1: b.y1 * gh, x2: b.x2 * gw, y2: b.y2 * gh };
        ap.add_frame(frame_gt, &dets.iter().map(|d| (d.score, scaled(d.bbox))).collect::<Vec<_>>());
        if let Some((_, buf)) = &mut dets_out {
            for d in dets {
                let b = d.bbox;
                buf.push_str(&format!(
                    "{},-1,{:.2},{:.2},{:.2},{:.2},{:.4},-1,-1,-1\n",
                    index,
                    b.x1 * gw,
                    b.y1 * gh,
                    (b.x2 - b.x1) * gw,
                    (b.y2 - b.y1) * gh,
                    d.score
                ));
            }
        }
        let hyp: Vec<HypBox> =
            out.tracked().map(|t| HypBox { id: t.id, bbox: scaled(t.bbox) }).collect();
        if let Some((_, buf)) = &mut tracks_out {
            for h in &hyp {
                let b = h.bbox;
                buf.push_str(&format!(
                    "{},{},{:.2},{:.2},{:.2},{:.2},1,-1,-1,-1\n",
                    index,
                    h.id,
                    b.x1,
                    b.y1,
                    b.x2 - b.x1,
                    b.y2 - b.y1
                ));
            }
        }
        acc.add_frame(frame_gt, &hyp);
    }
    let elapsed = start.elapsed().as_secs_f64();
    if acc.frames == 0 {
        bail!(
            "{}: no frames in {first}-{last} (the video has {last_seen_frame})",
            o.video.display()
        );
    }
    if acc.frames < last - first + 1 {
        bail!(
            "{}: the video ends at frame {last_seen_frame}, before the last frame {last}",
            o.video.display()
        );
    }
    for (p, buf) in [dets_out, tracks_out].into_iter().flatten() {
        std::fs::write(p, buf).with_context(|| format!("writing {}", p.display()))?;
    }
    let n = acc.frames as f64;
    Ok(MotReport {
        video: o.video.display().to_string(),
        gt: o.gt.display().to_string(),
        first_frame: first,
        last_frame: last,
        gt_size,
        detect_size,
        model: if o.dets_in.is_some() {
            "(detections from file)".into()
        } else {
            o.model.display().to_string()
        },
        metrics: acc.finish(),
        detection_ap50: ap.ap(),
        fps: n / elapsed.max(1e-9),
        detect_ms: detect_s * 1000.0 / n,
        track_ms: track_s * 1000.0 / n,
    })
}

/// The report as a readable table.
pub fn format_report(r: &MotReport) -> String {
    let m = &r.metrics;
    let pct = |x: f64| format!("{:.1}%", x * 100.0);
    let mut s = String::new();
    s.push_str(&format!(
        "gridwatch eval mot: {} frames {}-{}\n",
        r.video, r.first_frame, r.last_frame
    ));
    s.push_str(&format!(
        "  ground truth {} ({}x{} px), model {} at {}x{}\n\n",
        r.gt, r.gt_size.0, r.gt_size.1, r.model, r.detect_size.0, r.detect_size.1
    ));
    let rows: Vec<(&str, String, &str)> = vec![
        ("MOTA", pct(m.mota), "1 - (FN + FP + IDSW) / GT"),
        ("MOTP", pct(m.motp), "mean IoU of matches"),
        ("IDF1", pct(m.idf1), "identity F1"),
        ("IDP", pct(m.idp), "identity precision"),
        ("IDR", pct(m.idr), "identity recall"),
        ("Precision", pct(m.precision), "TP / tracker boxes"),
        ("Recall", pct(m.recall), "TP / GT boxes"),
        ("GT", m.gt_boxes.to_string(), "GT boxes (conf ≠ 0)"),
        ("GT ids", m.gt_ids.to_string(), "GT objects"),
        (
            "MT/PT/ML",
            format!("{}/{}/{}", m.mt, m.pt, m.ml),
            "mostly tracked / partly / mostly lost",
        ),
        ("TP", m.tp.to_string(), ""),
        ("FP", m.fp.to_string(), ""),
        ("FN", m.fn_.to_string(), ""),
        ("IDSW", m.idsw.to_string(), "identity switches"),
        ("Frag", m.frag.to_string(), "fragmentations"),
        ("Tracks", m.hyp_ids.to_string(), "tracker ids"),
        ("AP50", format!("{:.4}", r.detection_ap50), "detections before tracking, IoU ≥ 0.5"),
        ("fps", format!("{:.1}", r.fps), "decode + detect + track"),
        ("detect", format!("{:.1} ms", r.detect_ms), "per frame"),
        ("track", format!("{:.3} ms", r.track_ms), "per frame"),
    ];
    for (k, v, note) in rows {
        s.push_str(&format!("  {k:<10} {v:>10}  {note}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(x: f32, y: f32) -> BBox {
        BBox { x1: x, y1: y, x2: x + 10.0, y2: y + 20.0 }
    }
    fn g(id: u64, x: f32) -> GtBox {
        GtBox { id, bbox: b(x, 0.0), ignore: false }
    }
    fn h(id: u64, x: f32) -> HypBox {
        HypBox { id, bbox: b(x, 0.0) }
    }

    #[test]
    fn perfect_tracker() {
        let mut acc = MotAccumulator::new();
        for k in 0..10 {
            let x = k as f32;
            acc.add_frame(&[g(1, x), g(2, 50.0 + x)], &[h(7, x), h(9, 50.0 + x)]);
        }
        let m = acc.finish();
        assert_eq!((m.gt_boxes, m.tp, m.fp, m.fn_, m.idsw, m.frag), (20, 20, 0, 0, 0, 0));
        assert_eq!((m.mota, m.idf1, m.motp, m.precision, m.recall), (1.0, 1.0, 1.0, 1.0, 1.0));
        assert_eq!((m.mt, m.pt, m.ml), (2, 0, 0));
    }

    #[test]
    fn one_false_positive() {
        let mut acc = MotAccumulator::new();
        for k in 0..10 {
            let mut hyp = vec![h(1, 0.0)];
            if k == 3 {
                hyp.push(h(2, 100.0));
            }
            acc.add_frame(&[g(1, 0.0)], &hyp);
        }
        let m = acc.finish();
        assert_eq!((m.fp, m.fn_, m.idsw), (1, 0, 0));
        assert!((m.mota - (1.0 - 1.0 / 10.0)).abs() < 1e-12);
        // IDF1 = 2·10 / (10 + 11)
        assert!((m.idf1 - 20.0 / 21.0).abs() < 1e-12);
    }

    #[test]
    fn one_id_switch_and_identity_metrics() {
        // GT 1 is tracked as id 5 for 6 frames, then as id 6 for 4 frames.
        let mut acc = MotAccumulator::new();
        for k in 0..10 {
            acc.add_frame(&[g(1, 0.0)], &[h(if k < 6 { 5 } else { 6 }, 0.0)]);
        }
        let m = acc.finish();
        assert_eq!((m.tp, m.fp, m.fn_, m.idsw, m.frag), (10, 0, 0, 1, 0));
        assert!((m.mota - 0.9).abs() < 1e-12);
        // Best identity map 1↔5: IDTP 6 of 10 GT and 10 tracker boxes.
        assert_eq!(m.idtp, 6);
        assert!(
            (m.idf1 - 0.6).abs() < 1e-12
                && (m.idp - 0.6).abs() < 1e-12
                && (m.idr - 0.6).abs() < 1e-12
        );
    }

    #[test]
    fn previous_match_is_kept_while_valid() {
        // Two tracker boxes overlap GT 1; the one it was matched to keeps it even when the
        // other fits better: no switch.
        let mut acc = MotAccumulator::new();
        acc.add_frame(&[g(1, 0.0)], &[h(1, 0.0)]);
        acc.add_frame(&[g(1, 0.0)], &[h(1, 2.0), h(2, 0.0)]);
        let m = acc.finish();
        assert_eq!((m.idsw, m.fp, m.tp), (0, 1, 2));
    }

    #[test]
    fn misses_fragmentation_and_mostly_lost() {
        let mut acc = MotAccumulator::new();
        // GT 1 present 10 frames, tracked on 0–2 and 6–9 (same id): 3 FN, 1 fragmentation.
        // GT 2 present 10 frames, never tracked: mostly lost.
        for k in 0..10 {
            let hyp = if (3..6).contains(&k) { vec![] } else { vec![h(4, 0.0)] };
            acc.add_frame(&[g(1, 0.0), g(2, 200.0)], &hyp);
        }
        let m = acc.finish();
        assert_eq!((m.tp, m.fn_, m.fp, m.idsw, m.frag), (7, 13, 0, 0, 1));
        assert_eq!((m.mt, m.pt, m.ml), (0, 1, 1));
        assert!((m.mota - (1.0 - 13.0 / 20.0)).abs() < 1e-12);
        assert!((m.recall - 0.35).abs() < 1e-12 && m.precision == 1.0);
    }

    #[test]
    fn ignored_gt_and_boxes_on_it_are_not_counted() {
        let mut acc = MotAccumulator::new();
        let ign = GtBox { id: 3, bbox: b(100.0, 0.0), ignore: true };
        acc.add_frame(&[g(1, 0.0), ign], &[h(1, 0.0), h(2, 101.0), h(3, 300.0)]);
        let m = acc.finish();
        // h2 sits on the ignored box (dropped); h3 is a real FP.
        assert_eq!((m.gt_boxes, m.hyp_boxes, m.tp, m.fp, m.fn_), (1, 2, 1, 1, 0));
        assert_eq!(m.gt_ids, 1);
    }

    #[test]
    fn below_half_iou_is_a_miss_and_a_false_positive() {
        let mut acc = MotAccumulator::new();
        acc.add_frame(&[g(1, 0.0)], &[h(1, 6.0)]); // IoU 4/16 = 0.25
        let m = acc.finish();
        assert_eq!((m.tp, m.fp, m.fn_), (0, 1, 1));
        assert!((m.mota + 1.0).abs() < 1e-12);
    }

    #[test]
    fn hungarian_maximises_matches() {
        // Greedy by IoU would pair h1 with g1 and leave g2 unmatched.
        let gts = [
            GtBox { id: 1, bbox: b(0.0, 0.0), ignore: false },
            GtBox { id: 2, bbox: b(3.0, 0.0), ignore: false },
        ];
        let hyps = [h(1, 1.0), h(2, -2.0)];
        let mut acc = MotAccumulator::new();
        acc.add_frame(&gts, &hyps);
        let m = acc.finish();
        assert_eq!((m.tp, m.fp, m.fn_), (2, 0, 0), "{m:?}");
    }

    #[test]
    fn detection_ap_ranks_by_score_and_interpolates() {
        let gts = [g(1, 0.0), g(2, 20.0)];
        let mut ap = ApAccumulator::default();
        // Ranked: TP 0.9 (recall 1/2, precision 1), FP 0.8 (a duplicate on g1), TP 0.3.
        ap.add_frame(&gts, &[(0.9, b(0.0, 0.0)), (0.8, b(0.5, 0.0)), (0.3, b(20.0, 0.0))]);
        let want = 0.5 * 1.0 + 0.5 * (2.0 / 3.0);
        assert!((ap.ap() - want).abs() < 1e-9, "{}", ap.ap());
        // A detection on an ignored GT box is dropped, a missed GT box lowers recall.
        let mut ap = ApAccumulator::default();
        let ignored = GtBox { id: 3, bbox: b(40.0, 0.0), ignore: true };
        ap.add_frame(
            &[g(1, 0.0), g(2, 20.0), ignored],
            &[(0.9, b(0.0, 0.0)), (0.95, b(40.0, 0.0))],
        );
        assert!((ap.ap() - 0.5).abs() < 1e-9, "{}", ap.ap());
        assert_eq!(ApAccumulator::default().ap(), 0.0);
    }

    #[test]
    fn gt_parse_errors_name_the_line() {
        let p = Path::new("gt.txt");
        let ok = parse_gt(
            "1,9,499,158,31.03,75.17,1,-4.1,-7.3,0\n\n1,10,1,2,3,4,0,-1,-1,-1\n2,9,1,2,3,4\n",
            p,
        )
        .unwrap();
        assert_eq!(ok[&1].len(), 2);
        assert!(ok[&1][1].ignore && !ok[&1][0].ignore);
        assert_eq!(ok[&1][0].bbox.x2, 499.0 + 31.03);
        let e = parse_gt("1,9,499,158,31,75,1\n2,9,abc,158,31,75,1\n", p).unwrap_err().to_string();
        assert!(e.contains("gt.txt:2") && e.contains("abc"), "{e}");
        let e = parse_gt("1,9,4\n", p).unwrap_err().to_string();
        assert!(e.contains("gt.txt:1"), "{e}");
        let e = parse_gt("0,9,1,1,1,1,1\n", p).unwrap_err().to_string();
        assert!(e.contains("gt.txt:1") && e.contains("frame"), "{e}");
    }

    #[test]
    fn ranges_sizes_and_tracker_overrides() {
        assert_eq!(parse_range("1-400").unwrap(), (1, 400));
        assert_eq!(parse_range("7").unwrap(), (7, 7));
        assert!(
            parse_range("0-3").is_err()
                && parse_range("5-2").is_err()
                && parse_range("a-b").is_err()
        );
        assert_eq!(parse_size("768x576").unwrap(), (768, 576));
        assert!(parse_size("768").is_err());
        let c = tracker_config(&["min_hits=3".into(), "high_score = 0.6".into()]).unwrap();
        assert_eq!((c.min_hits, c.high_score), (3, 0.6));
        assert!(tracker_config(&["min_hit=3".into()]).unwrap_err().to_string().contains("min_hit"));
        assert!(tracker_config(&["min_hits=0".into()]).is_err());
    }
}
