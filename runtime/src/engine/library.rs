//! Finding and loading the engines' shared libraries (ONNX Runtime with
//! `load-dynamic`, OpenVINO with `runtime-linking`): nothing is linked at
//! build time, so a missing library is an ordinary error at start-up rather
//! than a loader failure or a panic.

use std::path::PathBuf;
use std::sync::Mutex;

use ort::environment::Environment;

use super::EngineError;

/// One shared library the runtime loads, and where set-up puts it.
pub struct Library {
    /// File name looked for in each directory.
    pub file_name: &'static str,
    /// Variable naming the file; when set, the only place looked at.
    pub env_var: &'static str,
    /// Where set-up put it when this was built (`build.rs`), or empty.
    pub recorded: &'static str,
}

pub const ONNX_RUNTIME: Library =
    Library { file_name: "libonnxruntime.so", env_var: "ORT_DYLIB_PATH", recorded: env!("SLOWFAST_ORT_BUILD_PATH") };

pub const OPENVINO: Library =
    Library { file_name: "libopenvino_c.so", env_var: "OPENVINO_DYLIB_PATH", recorded: env!("SLOWFAST_OPENVINO_BUILD_PATH") };

impl Library {
    /// Where the library is looked for, in order: the variable when set
    /// (and then only there); next to the running binary (how a deployed
    /// device ships it); where set-up put it when this was built; the
    /// directories of `LD_LIBRARY_PATH` and the system's library folders.
    pub fn candidates(&self) -> Vec<PathBuf> {
        if let Some(p) = std::env::var_os(self.env_var).filter(|p| !p.is_empty()) {
            return vec![PathBuf::from(p)];
        }
        let mut out = Vec::new();
        if let Some(dir) = std::env::current_exe().ok().and_then(|exe| exe.parent().map(|d| d.to_path_buf())) {
            out.push(dir.join(self.file_name));
        }
        if !self.recorded.is_empty() {
            out.push(PathBuf::from(self.recorded));
        }
        let ld = std::env::var_os("LD_LIBRARY_PATH").unwrap_or_default();
        out.extend(std::env::split_paths(&ld).filter(|d| !d.as_os_str().is_empty()).map(|d| d.join(self.file_name)));
        let arch = format!("/usr/lib/{}-linux-gnu", std::env::consts::ARCH);
        out.extend(["/usr/local/lib", arch.as_str(), "/usr/lib"].iter().map(|d| PathBuf::from(d).join(self.file_name)));
        out
    }

    /// The first of [`Library::candidates`] that exists, else the first one.
    pub fn path(&self) -> PathBuf {
        let candidates = self.candidates();
        candidates.iter().find(|p| p.is_file()).or(candidates.first()).cloned().unwrap_or_else(|| PathBuf::from(self.file_name))
    }

    /// The library's absolute path with links resolved (ort resolves
    /// relative paths against the executable; OpenVINO finds its plugins
    /// beside the real file), or why there is none.
    pub fn resolve(&self) -> Result<PathBuf, (PathBuf, String)> {
        let path = self.path();
        if !path.is_file() {
            let looked: Vec<String> = self.candidates().iter().skip(1).map(|p| p.display().to_string()).collect();
            let also = if looked.is_empty() { String::new() } else { format!("; also looked for {}", looked.join(", ")) };
            return Err((path, format!("no such file{also}")));
        }
        path.canonicalize().map_err(|e| (path, e.to_string()))
    }
}

/// Where ONNX Runtime is loaded from.
pub fn library_path() -> PathBuf {
    ONNX_RUNTIME.path()
}

static ENVIRONMENT: Mutex<Option<Environment>> = Mutex::new(None);

/// The process-wide ONNX Runtime environment, loading the library on first use.
pub fn environment() -> Result<Environment, EngineError> {
    let mut slot = ENVIRONMENT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(env) = slot.as_ref() {
        return Ok(env.clone());
    }
    let path = ONNX_RUNTIME.resolve().map_err(|(path, why)| EngineError::Library { path, why })?;
    let failed = |e: &dyn std::fmt::Display| EngineError::Library { path: path.clone(), why: e.to_string() };
    let env = ort::init_from(&path).map_err(|e| failed(&e))?.with_name("slowfast").build().map_err(|e| failed(&e))?;
    *slot = Some(env.clone());
    Ok(env)
}
