//! Object detection with ONNX Runtime: model manifests (`models/<name>/model.toml`), runtime
//! loading, pre-processing (OpenCV), output decoders for the common detector families and
//! class-aware NMS, and [`detector::Detector`] which ties them together.
//!
//! Boxes leave this module normalised to 0–1 frame coordinates (see [`crate::types::BBox`]).

pub mod decode;
pub mod detector;
pub mod manifest;
pub mod preprocess;
pub mod queue;
pub mod runtime;

use std::path::PathBuf;

pub use detector::{Detector, DetectorOptions, Timings};
pub use manifest::ModelManifest;

/// Everything that can go wrong loading or running a model. Messages name the model and,
/// where there is one, the file.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    #[error("cannot read {what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("model manifest {path}: {msg}")]
    Manifest { path: PathBuf, msg: String },
    #[error("model `{model}`: {path}: sha256 mismatch: expected {expected}, actual {actual} (the file is corrupt or not the model the manifest describes)")]
    Checksum { model: String, path: PathBuf, expected: String, actual: String },
    #[error("ONNX Runtime: {0}")]
    Runtime(String),
    #[error("ONNX Runtime is not initialised: call gridwatch::infer::runtime::init() before loading model `{model}`")]
    NotInitialised { model: String },
    #[error("model `{model}` ({path}): cannot create session: {msg}")]
    Session { model: String, path: PathBuf, msg: String },
    #[error("model `{model}`: {msg}")]
    Model { model: String, msg: String },
    #[error("model `{model}`: invalid input frame: {msg}")]
    Input { model: String, msg: String },
    #[error("model `{model}`: output `{output}`: {msg}")]
    Output { model: String, output: String, msg: String },
    #[error("model `{model}`: pre-processing (OpenCV): {msg}")]
    Preprocess { model: String, msg: String },
    #[error("model `{model}`: inference failed: {msg}")]
    Run { model: String, msg: String },
    #[error("detector options: {0}")]
    Options(String),
}
