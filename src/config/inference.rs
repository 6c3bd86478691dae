//! `[inference]`: ONNX Runtime threads and workers.

use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InferenceConfig {
    /// ONNX Runtime intra-op threads per session. Default: see [`InferenceConfig::layout`].
    pub intra_op_threads: Option<usize>,
    /// Inference worker threads (each has its own session per model). Default: see
    /// [`InferenceConfig::layout`].
    pub workers: Option<usize>,
    /// Path to libonnxruntime.so; default: found next to the binary or in third_party/.
    pub ort_library: Option<PathBuf>,
    /// Whether ONNX Runtime's intra-op threads spin while waiting for work between operators.
    /// Default false: they block, leaving the cores to decoding, recording and the other
    /// cameras (docs/performance.md, "Spinning").
    pub intra_op_spinning: bool,
}

/// The inference layout a box runs: `workers` threads, each running its sessions with
/// `intra_op_threads` ONNX Runtime threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub workers: usize,
    pub intra_op_threads: usize,
    /// The cores it was derived from.
    pub cores: usize,
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} worker(s) × {} intra-op thread(s) on {} core(s)",
            self.workers, self.intra_op_threads, self.cores
        )
    }
}

/// Most intra-op threads a session gets by default: on 2 cores, 1 × 2 and 2 × 1 delivered the
/// same (docs/performance.md, "Inference layout"), 1 × 2 keeping one camera's full speed;
/// beyond that, more workers run sessions side by side for more cameras (docs/design/0055).
const DEFAULT_MAX_INTRA_OP_THREADS: usize = 2;

/// The cores this process may use: its CPU affinity and cgroup quota counted (`taskset`,
/// containers), at least 1.
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl InferenceConfig {
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.intra_op_threads == Some(0) || self.workers == Some(0) {
            return Err("field `inference`: `intra_op_threads` and `workers` must be ≥ 1".into());
        }
        Ok(())
    }

    /// The layout for `cameras` cameras on the cores this process may use.
    pub fn layout(&self, cameras: usize) -> Layout {
        self.layout_on(available_cores(), cameras)
    }

    /// The layout on `cores` cores: what is set, and for what is not, one worker per
    /// [`DEFAULT_MAX_INTRA_OP_THREADS`] cores (no more workers than cameras), each with its
    /// share of the cores, at most that many threads. 1 core: 1 × 1; 2: 1 × 2; 4: 2 × 2.
    pub fn layout_on(&self, cores: usize, cameras: usize) -> Layout {
        let cores = cores.max(1);
        let (workers, intra_op_threads) = match (self.workers, self.intra_op_threads) {
            (Some(w), Some(t)) => (w, t),
            (Some(w), None) => (w, (cores / w).clamp(1, DEFAULT_MAX_INTRA_OP_THREADS)),
            (None, t) => {
                let t = t.unwrap_or(cores.min(DEFAULT_MAX_INTRA_OP_THREADS));
                ((cores / t).clamp(1, cameras.max(1)), t)
            }
        };
        Layout { workers, intra_op_threads, cores }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(workers: Option<usize>, intra_op_threads: Option<usize>) -> InferenceConfig {
        InferenceConfig { workers, intra_op_threads, ..Default::default() }
    }

    fn wt(l: Layout) -> (usize, usize) {
        (l.workers, l.intra_op_threads)
    }

    #[test]
    fn the_default_layout_follows_the_cores_and_the_cameras() {
        let auto = cfg(None, None);
        // cores → (workers, threads) with 16 cameras.
        for (cores, want) in [(0, (1, 1)), (1, (1, 1)), (2, (1, 2)), (3, (1, 2)), (4, (2, 2))] {
            assert_eq!(wt(auto.layout_on(cores, 16)), want, "{cores} cores");
        }
        assert_eq!(wt(auto.layout_on(8, 16)), (4, 2));
        // No more workers than cameras (each worker holds its own sessions).
        assert_eq!(wt(auto.layout_on(8, 1)), (1, 2));
        assert_eq!(wt(auto.layout_on(8, 0)), (1, 2));
        assert_eq!(wt(auto.layout_on(8, 3)), (3, 2));
    }

    #[test]
    fn a_set_field_is_kept_and_the_other_fills_the_cores() {
        assert_eq!(wt(cfg(Some(3), Some(5)).layout_on(2, 1)), (3, 5));
        assert_eq!(wt(cfg(Some(2), None).layout_on(2, 16)), (2, 1));
        assert_eq!(wt(cfg(Some(2), None).layout_on(8, 16)), (2, 2));
        assert_eq!(wt(cfg(Some(4), None).layout_on(1, 16)), (4, 1));
        assert_eq!(wt(cfg(None, Some(1)).layout_on(8, 16)), (8, 1));
        assert_eq!(wt(cfg(None, Some(4)).layout_on(8, 16)), (2, 4));
        assert_eq!(wt(cfg(None, Some(4)).layout_on(2, 16)), (1, 4));
    }

    #[test]
    fn zero_workers_or_threads_are_refused() {
        for c in [cfg(Some(0), None), cfg(None, Some(0))] {
            let e = c.validate().unwrap_err();
            assert!(e.contains("`inference`") && e.contains("≥ 1"), "{e}");
        }
        assert!(cfg(None, None).validate().is_ok());
    }
}
