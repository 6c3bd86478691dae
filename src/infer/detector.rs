//! [`Detector`]: one ONNX Runtime session for one model manifest: pre-process → run → decode →
//! NMS → normalised [`Detection`]s with label strings.

use std::time::Instant;

use ort::ep::ExecutionProvider;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::session::Session;
use ort::value::{TensorElementType, TensorRef};

use super::decode::{Decoder, OutputTensor};
use super::manifest::ModelManifest;
use super::preprocess::Preprocessor;
use super::{runtime, InferError};
use crate::types::Detection;

/// Session options for every detector.
#[derive(Debug, Clone)]
pub struct DetectorOptions {
    /// ONNX Runtime intra-op threads per session (0 = ONNX Runtime's default).
    pub intra_op_threads: usize,
    /// Execution providers in order of preference: "cpu", "cuda", "tensorrt", "openvino".
    /// Providers this ONNX Runtime build lacks are skipped with a warning; CPU is always the fallback.
    pub execution_providers: Vec<String>,
    /// Whether the intra-op threads spin between operators (`[inference] intra_op_spinning`).
    pub intra_op_spinning: bool,
}

impl Default for DetectorOptions {
    fn default() -> Self {
        DetectorOptions {
            intra_op_threads: 2,
            execution_providers: vec!["cpu".into()],
            intra_op_spinning: false,
        }
    }
}

/// Time spent in the last [`Detector::detect`] call, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timings {
    pub pre_ms: f32,
    pub run_ms: f32,
    pub post_ms: f32,
}

impl Timings {
    pub fn total_ms(&self) -> f32 {
        self.pre_ms + self.run_ms + self.post_ms
    }
}

/// A detector owns its session and buffers; move it into the inference worker thread.
pub struct Detector {
    name: String,
    labels: Vec<String>,
    session: Session,
    input_name: String,
    output_names: Vec<String>,
    pre: Preprocessor,
    decoder: Decoder,
    timings: Timings,
    providers: Vec<String>,
    /// The manifest's `low_light_model`, run instead on low-light frames ([`Detector::for_light`]).
    low_light: Option<Box<Detector>>,
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detector")
            .field("name", &self.name)
            .field("input", &self.input_name)
            .field("input_size", &(self.pre.spec().width, self.pre.spec().height))
            .field("outputs", &self.output_names)
            .field("decoder", &self.decoder.kind)
            .field("providers", &self.providers)
            .field("low_light", &self.low_light)
            .finish()
    }
}

fn ort_msg(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Registers the requested execution providers that this ONNX Runtime build has; returns the
/// names registered (CPU always last, implicitly).
fn register_providers(
    builder: &mut SessionBuilder,
    wanted: &[String],
    model: &str,
) -> Result<Vec<String>, InferError> {
    let mut used = Vec::new();
    for name in wanted {
        let n = name.trim().to_ascii_lowercase();
        let r: Option<Result<(), String>> = match n.as_str() {
            "cpu" => None,
            "cuda" => Some(try_register(builder, ort::ep::CUDA::default(), "CUDA")),
            "tensorrt" | "trt" => {
                Some(try_register(builder, ort::ep::TensorRT::default(), "TensorRT"))
            }
            "openvino" => Some(try_register(builder, ort::ep::OpenVINO::default(), "OpenVINO")),
            other => {
                return Err(InferError::Options(format!(
                    "unknown execution provider `{other}` (use \"cpu\", \"cuda\", \"tensorrt\" or \"openvino\")"
                )));
            }
        };
        match r {
            None => {}
            Some(Ok(())) => used.push(n),
            Some(Err(why)) => {
                tracing::warn!(model, provider = %n, "execution provider not used, falling back: {why}")
            }
        }
    }
    used.push("cpu".into());
    Ok(used)
}

/// Whether this ONNX Runtime build has the execution provider `name` (as `execution_providers`
/// spells it; "cpu" always). `Err` for an unknown name or a failed query.
pub fn provider_available(name: &str) -> Result<bool, String> {
    fn query<E: ExecutionProvider>(label: &str) -> Result<bool, String> {
        E::is_available().map_err(|e| format!("cannot query {label} support: {e}"))
    }
    match name.trim().to_ascii_lowercase().as_str() {
        "cpu" => Ok(true),
        "cuda" => query::<ort::ep::CUDA>("CUDA"),
        "tensorrt" | "trt" => query::<ort::ep::TensorRT>("TensorRT"),
        "openvino" => query::<ort::ep::OpenVINO>("OpenVINO"),
        other => Err(format!("unknown execution provider `{other}`")),
    }
}

fn try_register<E: ExecutionProvider>(
    builder: &mut SessionBuilder,
    ep: E,
    label: &str,
) -> Result<(), String> {
    match E::is_available() {
        Ok(true) => {}
        Ok(false) => {
            return Err(format!("this ONNX Runtime build has no {label} execution provider"))
        }
        Err(e) => return Err(format!("cannot query {label} support: {e}")),
    }
    ep.register(builder).map_err(|e| format!("{label} registration failed: {e}"))
}

impl Detector {
    /// Creates a session for the model. [`runtime::init`] must have succeeded first. Checks the
    /// file's SHA-256 against the manifest, loads the labels and validates the input.
    pub fn load(manifest: &ModelManifest, opts: &DetectorOptions) -> Result<Detector, InferError> {
        let model = manifest.name.clone();
        let Some(env) = runtime::environment() else {
            return Err(InferError::NotInitialised { model });
        };
        let labels = manifest.load_labels()?;
        let bytes = manifest.read_model()?;
        manifest.check_sha256(&bytes)?;

        let sess_err = |msg: String| InferError::Session {
            model: model.clone(),
            path: manifest.file.clone(),
            msg,
        };
        let mut builder = Session::builder(env)
            .map_err(ort_msg)
            .and_then(|b| b.with_optimization_level(GraphOptimizationLevel::All).map_err(ort_msg))
            .and_then(|b| b.with_intra_op_spinning(opts.intra_op_spinning).map_err(ort_msg))
            .map_err(sess_err)?;
        if opts.intra_op_threads > 0 {
            builder = builder
                .with_intra_threads(opts.intra_op_threads)
                .map_err(|e| sess_err(ort_msg(e)))?;
        }
        let providers = register_providers(&mut builder, &opts.execution_providers, &model)?;
        let session = builder.commit_from_memory(&bytes).map_err(|e| sess_err(ort_msg(e)))?;

        // Input.
        let input_name = match &manifest.input.name {
            Some(n) => {
                if !session.inputs().iter().any(|i| i.name() == n) {
                    let have: Vec<&str> =
                        session.inputs().iter().map(|i| i.name()).take(8).collect();
                    return Err(InferError::Model {
                        model,
                        msg: format!("input `{n}` (manifest `input.name`) not in the model; its inputs: {have:?}"),
                    });
                }
                n.clone()
            }
            None => match session.inputs().first() {
                Some(i) => i.name().to_string(),
                None => {
                    return Err(InferError::Model { model, msg: "the model has no inputs".into() })
                }
            },
        };
        let (w, h) = (manifest.input.width, manifest.input.height);
        if let Some(input) = session.inputs().iter().find(|i| i.name() == input_name) {
            let ty = input.dtype().tensor_type();
            if ty != Some(TensorElementType::Float32) {
                return Err(InferError::Model {
                    model,
                    msg: format!(
                        "input `{input_name}` is {ty:?}; only float32 inputs are supported"
                    ),
                });
            }
            if let Some(shape) = input.dtype().tensor_shape() {
                let dims: &[i64] = shape;
                let want = [1i64, 3, h as i64, w as i64];
                let ok =
                    dims.len() == 4 && dims.iter().zip(want.iter()).all(|(d, w)| *d < 0 || d == w);
                if !ok {
                    return Err(InferError::Model {
                        model,
                        msg: format!(
                            "input `{input_name}` has shape {dims:?}, but the manifest says NCHW [1, 3, {h}, {w}] \
                             (fields `input.width`/`input.height`/`input.layout`)"
                        ),
                    });
                }
                if manifest.input.aspect_multiple.is_some() && (dims[2] >= 0 || dims[3] >= 0) {
                    return Err(InferError::Model {
                        model,
                        msg: format!(
                            "input `{input_name}` has the fixed shape {dims:?}, but the manifest's \
                             `input.aspect_multiple` needs a dynamic height and width"
                        ),
                    });
                }
            }
        }
        let output_names: Vec<String> =
            session.outputs().iter().map(|o| o.name().to_string()).collect();
        for o in session.outputs() {
            let ty = o.dtype().tensor_type();
            if ty != Some(TensorElementType::Float32) {
                return Err(InferError::Output {
                    model,
                    output: o.name().to_string(),
                    msg: format!("is {ty:?}; only float32 outputs are supported"),
                });
            }
        }
        if output_names.is_empty() {
            return Err(InferError::Model { model, msg: "the model has no outputs".into() });
        }

        let decoder = Decoder::from_manifest(manifest, Some(labels.len()));
        let low_light = match &manifest.low_light {
            Some(m) => Some(Box::new(Detector::load(m, opts)?)),
            None => None,
        };
        let mut det = Detector {
            name: model,
            labels,
            session,
            input_name,
            output_names,
            pre: Preprocessor::new(&manifest.input),
            decoder,
            timings: Timings::default(),
            providers,
            low_light,
        };
        // Warm-up on a grey frame: checks the outputs against the decoder now, not on the
        // first camera frame, and takes ONNX Runtime's first-run cost out of the latency.
        let grey = vec![114u8; w as usize * h as usize * 3];
        det.detect(&grey, w, h)?;
        let t = det.timings;
        det.timings = Timings::default();
        tracing::info!(
            model = %det.name,
            providers = ?det.providers,
            input = %det.input_name,
            warmup_ms = t.total_ms(),
            "detector loaded"
        );
        Ok(det)
    }

    /// Detects objects in a tightly packed RGB24 frame. Boxes are normalised to 0–1 and clamped.
    pub fn detect(
        &mut self,
        rgb: &[u8],
        width: u32,
        height: u32,
    ) -> Result<Vec<Detection>, InferError> {
        let t0 = Instant::now();
        let transform = self
            .pre
            .run(rgb, width, height)
            .map_err(|msg| InferError::Input { model: self.name.clone(), msg })?;
        let t1 = Instant::now();

        let shape = self.pre.shape();
        let input = TensorRef::from_array_view((shape, self.pre.tensor())).map_err(|e| {
            InferError::Run {
                model: self.name.clone(),
                msg: format!("creating the input tensor: {e}"),
            }
        })?;
        let outputs = self
            .session
            .run(ort::inputs![self.input_name.as_str() => input])
            .map_err(|e| InferError::Run { model: self.name.clone(), msg: e.to_string() })?;
        let t2 = Instant::now();

        let mut views: Vec<OutputTensor> = Vec::with_capacity(self.output_names.len());
        for name in &self.output_names {
            let Some(v) = outputs.get(name.as_str()) else {
                return Err(InferError::Output {
                    model: self.name.clone(),
                    output: name.clone(),
                    msg: "missing from the results".into(),
                });
            };
            let (shape, data) = v.try_extract_tensor::<f32>().map_err(|e| InferError::Output {
                model: self.name.clone(),
                output: name.clone(),
                msg: format!("not a float32 tensor: {e}"),
            })?;
            views.push(OutputTensor {
                name: name.as_str(),
                shape: shape.iter().map(|d| (*d).max(0) as usize).collect(),
                data,
            });
        }
        let raw = self.decoder.decode(&views, (shape[3] as u32, shape[2] as u32)).map_err(|e| {
            InferError::Output {
                model: self.name.clone(),
                output: e.output.clone(),
                msg: e.msg.clone(),
            }
        })?;
        drop(views);
        drop(outputs);

        let mut dets = Vec::with_capacity(raw.len());
        for r in &raw {
            let bbox = transform.bbox(r);
            if bbox.area() <= 0.0 {
                continue;
            }
            let class = match self.labels.get(r.class_id) {
                Some(l) => l.clone(),
                None => format!("class{}", r.class_id),
            };
            dets.push(Detection {
                class_id: r.class_id as u32,
                class,
                score: r.score,
                bbox,
                track_id: None,
                keypoints: r.keypoints.as_deref().map(|k| transform.keypoints(k)),
            });
        }
        let t3 = Instant::now();
        let ms = |a: Instant, b: Instant| (b - a).as_secs_f32() * 1000.0;
        self.timings = Timings { pre_ms: ms(t0, t1), run_ms: ms(t1, t2), post_ms: ms(t2, t3) };
        Ok(dets)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// Model input size `(width, height)` (the largest, with `input.aspect_multiple`).
    pub fn input_size(&self) -> (u32, u32) {
        (self.pre.spec().width, self.pre.spec().height)
    }

    /// Timings of the last successful [`Detector::detect`].
    pub fn last_timings(&self) -> Timings {
        self.timings
    }

    /// Execution providers registered for this session (always ends with "cpu").
    pub fn providers(&self) -> &[String] {
        &self.providers
    }

    /// The score threshold in use (from the manifest unless changed).
    pub fn score_threshold(&self) -> f32 {
        self.decoder.score_threshold
    }

    /// Overrides the manifest's score threshold (clamped to 0–1), the `low_light_model`'s too.
    pub fn set_score_threshold(&mut self, t: f32) {
        self.decoder.score_threshold =
            if t.is_finite() { t.clamp(0.0, 1.0) } else { self.decoder.score_threshold };
        if let Some(l) = &mut self.low_light {
            l.set_score_threshold(t);
        }
    }

    /// The session for a frame: the manifest's `low_light_model` when the frame is low-light
    /// ([`crate::analytics::low_light`]) and the manifest has one, else this one.
    pub fn for_light(&mut self, low_light: bool) -> &mut Detector {
        if low_light && self.low_light.is_some() {
            return self.low_light.as_deref_mut().unwrap_or_else(|| unreachable!("checked"));
        }
        self
    }
}

#[allow(dead_code)]
fn assert_send() {
    fn is_send<T: Send>() {}
    is_send::<Detector>();
}
