//! Finding and loading the ONNX Runtime shared library (`load-dynamic`):
//! nothing is linked at build time, so a missing library is an ordinary
//! error at start-up rather than a loader failure or a panic.

use std::path::PathBuf;
use std::sync::Mutex;

use ort::environment::Environment;

use super::EngineError;

const LIB_NAME: &str = "libonnxruntime.so";

/// Where the library is looked for: `ORT_DYLIB_PATH`, else next to the
/// running binary (how a deployed device ships it).
pub fn library_path() -> PathBuf {
    match std::env::var_os("ORT_DYLIB_PATH") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|dir| dir.join(LIB_NAME)))
            .unwrap_or_else(|| PathBuf::from(LIB_NAME)),
    }
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
        return Err(missing("no such file".into()));
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
