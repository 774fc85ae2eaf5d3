//! SlowFast on OpenVINO's CPU plugin.
//!
//! OpenVINO reads our ONNX files directly; the `slowfast.*` metadata is
//! still read from the file by [`ModelInfo`](crate::model_info::ModelInfo).
//! The library is loaded at run time (Intel's `openvino` crate with
//! `runtime-linking`), from `OPENVINO_DYLIB_PATH`, beside the binary or where
//! set-up put it, so a machine without it gets an error, not a loader failure.
//!
//! The network is compiled for the exact shape of one clip: a static shape
//! lets the CPU plugin pick its fastest convolution kernels, which a
//! dynamic batch dimension does not, and the engine runs batches clip by
//! clip (see [`Session::run`]). A clip of another geometry (a model exported with
//! dynamic spatial size) is compiled for when first seen. With a cache
//! directory OpenVINO stores each compiled blob keyed by the model and
//! shape, so a restart imports it instead of compiling again.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use openvino::{CompiledModel, Core, DeviceType, ElementType, InferRequest, Model, PartialShape, RwPropertyKey, Tensor};

use super::EngineError;
use super::library::OPENVINO;
use crate::model_info::ModelInfo;
use crate::preprocess::Clip;
use crate::schema::tensors;

/// Where to look for OpenVINO and how to install it.
pub const INSTALL_HINT: &str = "run `bash scripts/setup.sh` (installs the PyPI `openvino` wheel and links its library), \
     or `pip install openvino` and set OPENVINO_DYLIB_PATH to its openvino/libs/libopenvino_c.so.*, \
     or put libopenvino_c.so (with the rest of openvino/libs) next to the slowfast binary";

#[derive(Debug, Clone, Default)]
pub struct OpenVinoOptions {
    /// OpenVINO's model cache (`CACHE_DIR`): compiled networks per model
    /// file and input shape, so a restart does not compile again. `None`
    /// compiles on every start.
    pub cache_dir: Option<PathBuf>,
}

/// The default cache directory: `$XDG_CACHE_HOME/slowfast/openvino`, else
/// `$HOME/.cache/slowfast/openvino`; `None` without either variable.
pub fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("slowfast").join("openvino"))
}

/// The library is loaded once per process; later loads reuse it.
static LOADED: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Loads `libopenvino_c.so` on first use and says where it came from.
pub fn load_library() -> Result<PathBuf, EngineError> {
    let mut slot = LOADED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(path) = slot.as_ref() {
        return Ok(path.clone());
    }
    let path = OPENVINO.resolve().map_err(|(path, why)| EngineError::OpenVinoLibrary { path, why })?;
    // The bindings parse the library's version string with `unwrap`; an
    // unexpected one must be an error here, not a panic in the caller.
    let loaded = catch_unwind(AssertUnwindSafe(|| openvino_sys::library::load_from(path.clone())))
        .unwrap_or_else(|_| Err("the library's version string could not be read".into()));
    loaded.map_err(|why| EngineError::OpenVinoLibrary { path: path.clone(), why })?;
    *slot = Some(path.clone());
    Ok(path)
}

/// One model on the CPU plugin, compiled per input shape.
pub struct Session {
    core: Core,
    model: Model,
    inputs: Vec<String>,
    outputs: Vec<String>,
    /// Compiled networks by (slow, fast) input shape, batch 1.
    compiled: HashMap<([usize; 5], [usize; 5]), Compiled>,
}

struct Compiled {
    // Kept alive for its infer request.
    _network: CompiledModel,
    request: InferRequest,
}

fn names(count: usize, name_of: impl Fn(usize) -> Result<String, openvino::InferenceError>) -> Result<Vec<String>, String> {
    (0..count).map(|i| name_of(i).map_err(|e| e.to_string())).collect()
}

impl Session {
    /// Reads the ONNX file and sets the CPU plugin up: `threads` inference
    /// threads (all cores when `None`), the latency hint (one stream: a
    /// clip's convolutions use every thread), and fp32 arithmetic. Without
    /// the precision hint, CPUs with AMX or AVX512-BF16 run in bfloat16,
    /// which moves SlowFast's logits by about 1e-2.
    ///
    /// The network is compiled for one clip of the model's own geometry
    /// here, so that a model OpenVINO cannot run fails at load (where
    /// `auto` moves on to the next provider), not at the first clip.
    /// OpenVINO's failures are provider errors: ONNX Runtime may still
    /// run a file OpenVINO cannot read.
    pub fn open(model: &Path, info: &ModelInfo, threads: Option<usize>, opts: &OpenVinoOptions) -> Result<Session, EngineError> {
        load_library()?;
        let setup = |why: String| EngineError::Provider { provider: super::Provider::OpenVino, why };
        let model_err = |why: String| setup(format!("{}: {why}", model.display()));
        let mut core = Core::new().map_err(|e| setup(format!("cannot start OpenVINO: {e}")))?;
        let cpu = DeviceType::CPU;
        let mut set = |device: &DeviceType, key: RwPropertyKey, value: &str| {
            let name = key.as_ref().to_string();
            core.set_property(device, &key, value).map_err(|e| setup(format!("{name}={value}: {e}")))
        };
        if let Some(n) = threads {
            set(&cpu, RwPropertyKey::InferenceNumThreads, &n.to_string())?;
        }
        set(&cpu, RwPropertyKey::HintPerformanceMode, "LATENCY")?;
        set(&cpu, RwPropertyKey::HintInferencePrecision, "f32")?;
        if let Some(dir) = &opts.cache_dir {
            std::fs::create_dir_all(dir).map_err(|e| setup(format!("model cache directory {}: {e}", dir.display())))?;
            let dir_str = dir.to_str().ok_or_else(|| setup(format!("model cache directory {} is not UTF-8", dir.display())))?;
            // An empty device name sets the property on the core itself.
            set(&DeviceType::Other("".into()), RwPropertyKey::CacheDir, dir_str)?;
        }
        let path_str = model.to_str().ok_or_else(|| model_err("the path is not UTF-8".into()))?;
        let ov_model = core.read_model_from_file(path_str, "").map_err(|e| model_err(format!("OpenVINO cannot read the model: {e}")))?;
        let inputs = names(ov_model.get_inputs_len().unwrap_or(0), |i| ov_model.get_input_by_index(i)?.get_name())
            .map_err(|e| model_err(format!("input names: {e}")))?;
        let outputs = names(ov_model.get_outputs_len().unwrap_or(0), |i| ov_model.get_output_by_index(i)?.get_name())
            .map_err(|e| model_err(format!("output names: {e}")))?;
        let mut session = Session { core, model: ov_model, inputs, outputs, compiled: HashMap::new() };
        let (side, slow, fast) = (info.crop_size, info.slow_frames, info.fast_frames);
        if session.inputs.iter().any(|i| i == tensors::SLOW) && session.inputs.iter().any(|i| i == tensors::FAST) {
            session.compiled([1, 3, slow, side, side], [1, 3, fast, side, side]).map_err(model_err)?;
        }
        Ok(session)
    }

    pub fn inputs(&self) -> &[String] {
        &self.inputs
    }

    pub fn outputs(&self) -> &[String] {
        &self.outputs
    }

    /// The network compiled for these input shapes, compiling it the
    /// first time. Errors are strings; the caller names the model.
    fn compiled(&mut self, slow: [usize; 5], fast: [usize; 5]) -> Result<&mut Compiled, String> {
        let (core, model) = (&mut self.core, &mut self.model);
        match self.compiled.entry((slow, fast)) {
            Entry::Occupied(e) => Ok(e.into_mut()),
            Entry::Vacant(e) => {
                let mut shapes = Vec::with_capacity(2);
                for (name, shape) in [(tensors::SLOW, slow), (tensors::FAST, fast)] {
                    let dims = shape.map(|d| d as i64);
                    let partial = PartialShape::new_static(5, &dims).map_err(|e| format!("input `{name}` {shape:?}: {e}"))?;
                    shapes.push((name, partial));
                }
                let by_name: Vec<(&str, &PartialShape)> = shapes.iter().map(|(n, s)| (*n, s)).collect();
                model.reshape(&by_name).map_err(|e| format!("the model does not take inputs {slow:?} and {fast:?}: {e}"))?;
                let mut network = core.compile_model(model, DeviceType::CPU).map_err(|e| format!("compiling for the CPU: {e}"))?;
                let request = network.create_infer_request().map_err(|e| format!("infer request: {e}"))?;
                Ok(e.insert(Compiled { _network: network, request }))
            }
        }
    }

    /// Runs the network on one clip and returns the named output's shape
    /// and values.
    ///
    /// The engine runs a batch clip by clip through this, on the network
    /// compiled for one clip: on the CPU plugin a real batch is no faster
    /// per clip (R50 8x8 at 224, 2 threads: 365 ms a clip alone, 402 in a
    /// batch of 4, 412 in a batch of 8), and each new batch size would stop
    /// the stream for a compilation (seconds for R50) the first time.
    pub fn run(&mut self, clip: &Clip, output: &str) -> Result<(Vec<usize>, Vec<f32>), String> {
        let request = &mut self.compiled(clip.slow_shape(), clip.fast_shape())?.request;
        for (name, data) in [(tensors::SLOW, &clip.slow), (tensors::FAST, &clip.fast)] {
            let mut tensor = request.get_tensor(name).map_err(|e| format!("input `{name}`: {e}"))?;
            write_f32(&mut tensor, data).map_err(|e| format!("input `{name}`: {e}"))?;
        }
        request.infer().map_err(|e| e.to_string())?;
        let tensor = request.get_tensor(output).map_err(|e| format!("output `{output}`: {e}"))?;
        let shape = tensor.get_shape().map_err(|e| format!("output `{output}`: {e}"))?;
        let shape: Vec<usize> = shape.get_dimensions().iter().map(|&d| d.max(0) as usize).collect();
        let values = read_f32(&tensor).map_err(|e| format!("output `{output}`: {e}"))?;
        Ok((shape, values))
    }
}

/// Copies `data` into an fp32 tensor of the same length. Type, length and
/// alignment are checked first, so the bindings' cast cannot panic.
fn write_f32(tensor: &mut Tensor, data: &[f32]) -> Result<(), String> {
    let kind = tensor.get_element_type().map_err(|e| e.to_string())?;
    if kind != ElementType::F32 {
        return Err(format!("element type {kind}, expected f32"));
    }
    let raw = tensor.get_raw_data_mut().map_err(|e| e.to_string())?;
    if raw.len() != std::mem::size_of_val(data) {
        return Err(format!("{} values given, the tensor holds {}", data.len(), raw.len() / 4));
    }
    if raw.as_ptr().align_offset(std::mem::align_of::<f32>()) != 0 {
        for (dst, v) in raw.chunks_exact_mut(4).zip(data) {
            dst.copy_from_slice(&v.to_ne_bytes());
        }
        return Ok(());
    }
    tensor.get_data_mut::<f32>().map_err(|e| e.to_string())?.copy_from_slice(data);
    Ok(())
}

fn read_f32(tensor: &Tensor) -> Result<Vec<f32>, String> {
    let kind = tensor.get_element_type().map_err(|e| e.to_string())?;
    if kind != ElementType::F32 {
        return Err(format!("element type {kind}, expected f32"));
    }
    let raw = tensor.get_raw_data().map_err(|e| e.to_string())?;
    Ok(raw.chunks_exact(4).map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]])).collect())
}
