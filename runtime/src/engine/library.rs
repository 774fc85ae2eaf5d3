//! Finding and loading the ONNX Runtime shared library (`load-dynamic`):
//! nothing is linked at build time, so a missing library is an ordinary
//! error at start-up rather than a loader failure or a panic.

use std::path::PathBuf;
use std::sync::Mutex;

use ort::environment::Environment;

use super::EngineError;

const LIB_NAME: &str = "libonnxruntime.so";

/// Where the library is looked for, in order: `ORT_DYLIB_PATH` when set
/// (and then only there); next to the running binary (how a deployed
/// device ships it); where set-up put it when this was built; the
/// directories of `LD_LIBRARY_PATH` and the system's library folders.
pub fn library_candidates() -> Vec<PathBuf> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return vec![PathBuf::from(p)];
    }
    let mut out = Vec::new();
    if let Some(dir) = std::env::current_exe().ok().and_then(|exe| exe.parent().map(|d| d.to_path_buf())) {
        out.push(dir.join(LIB_NAME));
    }
    let recorded = env!("SLOWFAST_ORT_BUILD_PATH");
    if !recorded.is_empty() {
        out.push(PathBuf::from(recorded));
    }
    let ld = std::env::var_os("LD_LIBRARY_PATH").unwrap_or_default();
    out.extend(std::env::split_paths(&ld).filter(|d| !d.as_os_str().is_empty()).map(|d| d.join(LIB_NAME)));
    let arch = format!("/usr/lib/{}-linux-gnu", std::env::consts::ARCH);
    out.extend(["/usr/local/lib", arch.as_str(), "/usr/lib"].iter().map(|d| PathBuf::from(d).join(LIB_NAME)));
    out
}

/// The first of [`library_candidates`] that exists, else the first one.
pub fn library_path() -> PathBuf {
    let candidates = library_candidates();
    candidates.iter().find(|p| p.is_file()).or(candidates.first()).cloned().unwrap_or_else(|| PathBuf::from(LIB_NAME))
}

static ENVIRONMENT: Mutex<Option<Environment>> = Mutex::new(None);

/// The process-wide ONNX Runtime environment, loading the library on first use.
pub fn environment() -> Result<Environment, EngineError> {
    let mut slot = ENVIRONMENT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(env) = slot.as_ref() {
        return Ok(env.clone());
    }
    let path = library_path();
    let missing = |why: String| EngineError::Library { path: path.clone(), why };
    if !path.is_file() {
        let looked: Vec<String> = library_candidates().iter().skip(1).map(|p| p.display().to_string()).collect();
        let also = if looked.is_empty() { String::new() } else { format!("; also looked for {}", looked.join(", ")) };
        return Err(missing(format!("no such file{also}")));
    }
    // An absolute path: ort resolves relative ones against the executable.
    let path = path.canonicalize().map_err(|e| missing(e.to_string()))?;
    let env = ort::init_from(&path)
        .map_err(|e| EngineError::Library { path: path.clone(), why: e.to_string() })?
        .with_name("slowfast")
        .build()
        .map_err(|e| EngineError::Library { path: path.clone(), why: e.to_string() })?;
    *slot = Some(env.clone());
    Ok(env)
}
