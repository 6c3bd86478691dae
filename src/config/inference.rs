//! `[inference]`: ONNX Runtime threads and workers.

use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InferenceConfig {
    /// ONNX Runtime intra-op threads per session. Default 2.
    pub intra_op_threads: usize,
    /// Inference worker threads (each has its own session per model). Default 1.
    pub workers: usize,
    /// Path to libonnxruntime.so; default: found next to the binary or in third_party/.
    pub ort_library: Option<PathBuf>,
    /// Whether ONNX Runtime's intra-op threads spin while waiting for work between operators.
    /// Default false: they block, leaving the cores to decoding, recording and the other
    /// cameras (docs/performance.md, "Spinning").
    pub intra_op_spinning: bool,
}

impl Default for InferenceConfig {
    fn default() -> Self {
        InferenceConfig {
            intra_op_threads: 2,
            workers: 1,
            ort_library: None,
            intra_op_spinning: false,
        }
    }
}

impl InferenceConfig {
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.intra_op_threads == 0 || self.workers == 0 {
            return Err("field `inference`: `intra_op_threads` and `workers` must be ≥ 1".into());
        }
        Ok(())
    }
}
