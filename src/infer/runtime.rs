//! Loading the ONNX Runtime shared library (ort `load-dynamic`) once per process.
//!
//! Search order: the explicit path from the config → `<exe dir>/lib/libonnxruntime.so` →
//! `<exe dir>/libonnxruntime.so` → the development copy fetched by `scripts/setup.sh`
//! (`GRIDWATCH_ORT_DEV_LIB`, set at compile time by `.cargo/config.toml`). A missing library or
//! one too old for this build is an error listing every path tried, never a panic.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use super::InferError;

struct Runtime {
    path: PathBuf,
    env: ort::environment::Environment,
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();
static INIT_LOCK: Mutex<()> = Mutex::new(());

const LIB_NAME: &str = "libonnxruntime.so";

/// The candidate library paths, in search order.
pub fn candidates(explicit: Option<&Path>) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(p) = explicit {
        v.push(std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()));
    }
    if let Some(dir) = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf))
    {
        v.push(dir.join("lib").join(LIB_NAME));
        v.push(dir.join(LIB_NAME));
    }
    if let Some(dev) = option_env!("GRIDWATCH_ORT_DEV_LIB") {
        v.push(PathBuf::from(dev));
    }
    v
}

/// Loads ONNX Runtime and creates the process-wide environment. Idempotent: later calls return
/// the path loaded first (whatever `explicit` they pass). Returns the library path used.
pub fn init(explicit: Option<&Path>) -> Result<PathBuf, InferError> {
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt.path.clone());
    }
    let _guard = INIT_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt.path.clone());
    }
    let (path, env) = load_first(&candidates(explicit), explicit.is_some())?;
    tracing::info!(library = %path.display(), version = ?version_of(&path), "ONNX Runtime loaded");
    let _ = RUNTIME.set(Runtime { path: path.clone(), env });
    Ok(path)
}

/// Tries each candidate in order; the error lists every path tried and why it failed.
fn load_first(
    candidates: &[PathBuf],
    explicit: bool,
) -> Result<(PathBuf, ort::environment::Environment), InferError> {
    let mut tried: Vec<String> = Vec::new();
    for path in candidates {
        if !path.exists() {
            tried.push(format!("{} (not found)", path.display()));
            continue;
        }
        match load(path) {
            Ok(env) => {
                if explicit && !tried.is_empty() {
                    tracing::warn!(
                        "configured ONNX Runtime library could not be used ({}); using {}",
                        tried.join("; "),
                        path.display()
                    );
                }
                return Ok((path.clone(), env));
            }
            Err(e) => tried.push(format!("{} ({e})", path.display())),
        }
    }
    Err(InferError::Runtime(format!(
        "cannot load the ONNX Runtime library (need version ≥ 1.{}); tried: {}. Run scripts/setup.sh to fetch it, \
         or set `inference.ort_library` in the config to the path of libonnxruntime.so",
        ort::MINOR_VERSION,
        if tried.is_empty() {
            "no candidate paths".to_string()
        } else {
            tried.join("; ")
        }
    )))
}

fn load(path: &Path) -> Result<ort::environment::Environment, String> {
    let p = path.to_path_buf();
    let r = std::panic::catch_unwind(move || -> Result<ort::environment::Environment, String> {
        let builder = ort::init_from(&p).map_err(|e| e.to_string())?;
        builder.with_name("gridwatch").build().map_err(|e| e.to_string())
    });
    match r {
        Ok(r) => r,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Err(format!("loading panicked: {msg}"))
        }
    }
}

/// Whether [`init`] has succeeded.
pub fn is_initialised() -> bool {
    RUNTIME.get().is_some()
}

/// The library path loaded by [`init`], if any.
pub fn library_path() -> Option<&'static Path> {
    RUNTIME.get().map(|r| r.path.as_path())
}

/// The process-wide environment, if [`init`] has succeeded.
pub fn environment() -> Option<&'static ort::environment::Environment> {
    RUNTIME.get().map(|r| &r.env)
}

/// The ONNX Runtime version (e.g. "1.32.0") once loaded, from the build info or the library's
/// versioned file name.
pub fn version() -> Option<String> {
    let rt = RUNTIME.get()?;
    let info = std::panic::catch_unwind(ort::info).ok();
    if let Some(v) = info.and_then(|i| {
        i.split(|c: char| c == ',' || c.is_whitespace())
            .find_map(|part| part.trim().strip_prefix("git-branch=rel-").map(str::to_string))
    }) {
        return Some(v);
    }
    version_of(&rt.path)
}

/// "1.32.0" from `libonnxruntime.so.1.32.0` (following a symlink), if the name has it.
fn version_of(path: &Path) -> Option<String> {
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let name = real.file_name()?.to_str()?;
    let v = name.strip_prefix("libonnxruntime.so.")?;
    (!v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || c == '.')).then(|| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_in_order() {
        let c = candidates(Some(Path::new("/x/libonnxruntime.so")));
        assert_eq!(c[0], PathBuf::from("/x/libonnxruntime.so"));
        assert!(c[1].ends_with("lib/libonnxruntime.so"));
        assert!(c[2].ends_with("libonnxruntime.so"));
    }

    #[test]
    fn version_from_file_name() {
        assert_eq!(
            version_of(Path::new("/nonexistent/libonnxruntime.so.1.32.0")).as_deref(),
            Some("1.32.0")
        );
        assert_eq!(version_of(Path::new("/nonexistent/libonnxruntime.so")), None);
    }

    #[test]
    fn bad_candidates_are_listed_not_panicked_on() {
        // ort keeps the first library it loads for the whole process, after which loading a
        // fake one "succeeds": another test of this binary may already have loaded the real
        // one. So the check runs in a fresh process of this binary that runs only this test.
        const CHILD: &str = "GRIDWATCH_ORT_FRESH_PROCESS";
        if std::env::var_os(CHILD).is_none() {
            let name = "infer::runtime::tests::bad_candidates_are_listed_not_panicked_on";
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", name, "--test-threads=1"])
                .env(CHILD, "1")
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{stdout}{stderr}");
            assert!(stdout.contains("1 passed"), "the fresh process ran no test: {stdout}");
            return;
        }
        assert!(!is_initialised());
        let dir = std::env::temp_dir().join(format!("gridwatch-ort-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fake = dir.join("libonnxruntime.so");
        std::fs::write(&fake, b"not a shared library").unwrap();
        let missing = dir.join("missing/libonnxruntime.so");
        let e = load_first(&[missing.clone(), fake.clone()], true).unwrap_err().to_string();
        assert!(e.contains(&missing.display().to_string()) && e.contains("not found"), "{e}");
        assert!(e.contains(&fake.display().to_string()), "{e}");
        assert!(e.contains("scripts/setup.sh"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn init_loads_dev_library() {
        // A missing explicit path falls through to the development copy.
        let p = init(Some(Path::new("/nonexistent/libonnxruntime.so"))).unwrap();
        assert!(p.exists());
        assert!(is_initialised());
        assert_eq!(init(None).unwrap(), p);
        let v = version().unwrap();
        assert!(v.starts_with("1."), "{v}");
    }
}
