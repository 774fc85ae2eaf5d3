//! SlowFast inference with one API over ONNX Runtime's TensorRT, CUDA and
//! CPU execution providers and OpenVINO's CPU plugin.
//!
//! ONNX Runtime silently falls back to CPU when a GPU provider cannot be
//! registered; here every provider is registered on its own so the one in
//! use is known and reported, and `strict` turns a fallback into an error.

mod library;
pub mod openvino;
pub mod tensorrt;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use ort::ep::{self, ExecutionProvider};
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::value::TensorRef;

pub use library::library_path;
pub use openvino::OpenVinoOptions;
pub use tensorrt::{EngineCache, TensorRtOptions};

use crate::model_info::{ModelInfo, ModelInfoError, OutputKind};
use crate::preprocess::Clip;
use crate::schema::tensors;

const INSTALL_HINT: &str = "run `bash scripts/setup.sh` (installs the PyPI `onnxruntime` wheel and links its library), \
     or `pip install onnxruntime` (CPU) / `pip install onnxruntime-gpu` (CUDA, TensorRT) and set ORT_DYLIB_PATH \
     to its onnxruntime/capi/libonnxruntime.so.*, or put libonnxruntime.so next to the slowfast binary";

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("ONNX Runtime library not loaded: looked for {path} ({why}); to install it, {INSTALL_HINT}")]
    Library { path: PathBuf, why: String },
    #[error("OpenVINO library not loaded: looked for {path} ({why}); to install it, {}", openvino::INSTALL_HINT)]
    OpenVinoLibrary { path: PathBuf, why: String },
    #[error(transparent)]
    Metadata(#[from] ModelInfoError),
    #[error("{provider} execution provider unavailable: {why}")]
    Provider { provider: Provider, why: String },
    #[error("{model}: {why}")]
    Model { model: PathBuf, why: String },
    #[error("{model}: inference failed: {why}")]
    Run { model: PathBuf, why: String },
}

/// What the user asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// ONNX Runtime's CPU provider.
    Cpu,
    Cuda,
    TensorRt,
    /// OpenVINO's CPU plugin.
    OpenVino,
    /// TensorRT, then CUDA, then OpenVINO on x86-64, then ONNX Runtime's
    /// CPU provider: the first that works.
    Auto,
}

impl FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "cpu" => Ok(Backend::Cpu),
            "cuda" => Ok(Backend::Cuda),
            "tensorrt" | "trt" => Ok(Backend::TensorRt),
            "openvino" | "ov" => Ok(Backend::OpenVino),
            "auto" => Ok(Backend::Auto),
            _ => Err(format!("unknown backend {s:?} (expected cpu, cuda, tensorrt, openvino or auto)")),
        }
    }
}

/// The engine a session runs on: one of ONNX Runtime's execution
/// providers, or OpenVINO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    TensorRt,
    Cuda,
    /// OpenVINO's CPU plugin.
    OpenVino,
    /// ONNX Runtime's CPU provider.
    Cpu,
}

impl Provider {
    /// ONNX Runtime's name of the provider; `None` for OpenVINO.
    pub fn ort_name(self) -> Option<&'static str> {
        match self {
            Provider::TensorRt => Some(ep::TensorRT::NAME),
            Provider::Cuda => Some(ep::CUDA::NAME),
            Provider::Cpu => Some(ep::CPU::NAME),
            Provider::OpenVino => None,
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Provider::TensorRt => "TensorRT",
            Provider::Cuda => "CUDA",
            Provider::OpenVino => "OpenVINO CPU",
            Provider::Cpu => "CPU",
        })
    }
}

#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub backend: Backend,
    /// Fail instead of falling back to a later provider (CPU in the end).
    pub strict: bool,
    /// Intra-op threads; `None` lets ONNX Runtime use every core.
    pub threads: Option<usize>,
    pub device_id: i32,
    pub tensorrt: TensorRtOptions,
    pub openvino: OpenVinoOptions,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            backend: Backend::Cpu,
            strict: false,
            threads: None,
            device_id: 0,
            tensorrt: TensorRtOptions::default(),
            openvino: OpenVinoOptions::default(),
        }
    }
}

impl Backend {
    /// The providers tried, in order. OpenVINO's CPU plugin is Intel's
    /// and tuned for x86-64; on ARM `auto` keeps ONNX Runtime's CPU
    /// provider, which Jetson builds of ONNX Runtime ship.
    pub fn order(self) -> &'static [Provider] {
        match self {
            Backend::Cpu => &[Provider::Cpu],
            Backend::Cuda => &[Provider::Cuda, Provider::Cpu],
            Backend::TensorRt => &[Provider::TensorRt, Provider::Cpu],
            Backend::OpenVino => &[Provider::OpenVino, Provider::Cpu],
            Backend::Auto if cfg!(target_arch = "x86_64") => &[Provider::TensorRt, Provider::Cuda, Provider::OpenVino, Provider::Cpu],
            Backend::Auto => &[Provider::TensorRt, Provider::Cuda, Provider::Cpu],
        }
    }
}

/// The library a session runs in.
enum Session {
    Ort(ort::session::Session),
    OpenVino(openvino::Session),
}

pub struct Engine {
    session: Session,
    info: ModelInfo,
    provider: Provider,
    cache: EngineCache,
    /// Why earlier providers in the order were skipped.
    fallbacks: Vec<String>,
}

impl Engine {
    /// Reads the model's metadata, then creates a session on the first
    /// provider of `opts.backend`'s order that works.
    pub fn load(model: &Path, opts: &EngineOptions) -> Result<Engine, EngineError> {
        let info = ModelInfo::from_file(model)?;
        let order = opts.backend.order();
        let mut fallbacks = Vec::new();
        for &provider in order {
            let last = provider == Provider::Cpu;
            let opened = match provider {
                Provider::OpenVino => openvino::Session::open(model, &info, opts.threads, &opts.openvino)
                    .map(|s| (Session::OpenVino(s), EngineCache::Disabled)),
                _ => library::environment()
                    .and_then(|env| open(&env, model, &info, provider, opts))
                    .map(|(s, cache)| (Session::Ort(s), cache)),
            };
            match opened {
                Ok((session, cache)) => {
                    let engine = Engine { session, info, provider, cache, fallbacks };
                    engine.check_signature()?;
                    return Ok(engine);
                }
                // A missing library skips its providers too: `auto` on a
                // box with OpenVINO but no ONNX Runtime still runs.
                Err(e @ (EngineError::Provider { .. } | EngineError::Library { .. } | EngineError::OpenVinoLibrary { .. })) if !last => {
                    // Auto may skip TensorRT for CUDA; strict never reaches a
                    // CPU engine (OpenVINO's included: strict asks for the GPU).
                    let next = order.iter().skip_while(|&&p| p != provider).nth(1);
                    let next_is_cpu = matches!(next, Some(Provider::Cpu | Provider::OpenVino));
                    if opts.strict && (opts.backend != Backend::Auto || next_is_cpu) {
                        return Err(e);
                    }
                    fallbacks.push(e.to_string());
                }
                Err(e) => return Err(e),
            }
        }
        Err(EngineError::Model { model: model.into(), why: "no execution provider could be used".into() })
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The provider the session runs on.
    pub fn provider(&self) -> Provider {
        self.provider
    }

    pub fn cache(&self) -> &EngineCache {
        &self.cache
    }

    /// Messages of the providers that were tried and skipped.
    pub fn fallbacks(&self) -> &[String] {
        &self.fallbacks
    }

    /// Inputs `slow`, `fast` and the output named after its kind, as the
    /// exporter writes them.
    fn check_signature(&self) -> Result<(), EngineError> {
        let bad = |why: String| EngineError::Model { model: self.info.path.clone(), why };
        let (inputs, outputs): (Vec<&str>, Vec<&str>) = match &self.session {
            Session::Ort(s) => (s.inputs().iter().map(|i| i.name()).collect(), s.outputs().iter().map(|o| o.name()).collect()),
            Session::OpenVino(s) => (s.inputs().iter().map(String::as_str).collect(), s.outputs().iter().map(String::as_str).collect()),
        };
        for name in [tensors::SLOW, tensors::FAST] {
            if !inputs.contains(&name) {
                return Err(bad(format!("the graph has no input `{name}` (inputs: {inputs:?})")));
            }
        }
        let want = self.info.output.tensor_name();
        if !outputs.contains(&want) {
            return Err(bad(format!("metadata `slowfast.output` says {want:?} but the graph outputs are {outputs:?}")));
        }
        Ok(())
    }

    /// Class probabilities of each clip (softmax applied when the model
    /// outputs logits), the clips run as one batch.
    pub fn probabilities(&mut self, clips: &[&Clip]) -> Result<Vec<Vec<f32>>, EngineError> {
        let model = self.info.path.clone();
        let fail = |why: String| EngineError::Run { model: model.clone(), why };
        let Some(first) = clips.first() else { return Ok(vec![]) };
        if let Some(c) = clips.iter().find(|c| c.slow_shape() != first.slow_shape() || c.fast_shape() != first.fast_shape()) {
            return Err(fail(format!("clips of one batch differ in shape: {:?} and {:?}", first.fast_shape(), c.fast_shape())));
        }
        let n = clips.len();
        let output_name = self.info.output.tensor_name();
        let (num_classes, kind) = (self.info.num_classes, self.info.output);
        let (shape, data) = match &mut self.session {
            Session::Ort(session) => {
                let (mut slow_shape, mut fast_shape) = (first.slow_shape(), first.fast_shape());
                slow_shape[0] = n;
                fast_shape[0] = n;
                // A single clip is passed without copying.
                let (slow, fast): (std::borrow::Cow<[f32]>, std::borrow::Cow<[f32]>) = if n == 1 {
                    (first.slow.as_slice().into(), first.fast.as_slice().into())
                } else {
                    (
                        clips.iter().flat_map(|c| c.slow.iter().copied()).collect::<Vec<_>>().into(),
                        clips.iter().flat_map(|c| c.fast.iter().copied()).collect::<Vec<_>>().into(),
                    )
                };
                let slow = TensorRef::from_array_view((slow_shape, &*slow)).map_err(|e| fail(format!("input `slow`: {e}")))?;
                let fast = TensorRef::from_array_view((fast_shape, &*fast)).map_err(|e| fail(format!("input `fast`: {e}")))?;
                let outputs = session.run(ort::inputs![tensors::SLOW => slow, tensors::FAST => fast]).map_err(|e| fail(e.to_string()))?;
                let Some(value) = outputs.get(output_name) else {
                    return Err(fail(format!("no output `{output_name}`")));
                };
                let (shape, data) = value.try_extract_tensor::<f32>().map_err(|e| fail(format!("output `{output_name}`: {e}")))?;
                (shape.iter().map(|&d| d.max(0) as usize).collect::<Vec<_>>(), data.to_vec())
            }
            // Clip by clip, straight from each clip's own buffers (see
            // `openvino::Session::run` for why a batch is not one run).
            Session::OpenVino(session) => {
                let mut data = Vec::with_capacity(n * num_classes);
                for clip in clips {
                    let (shape, values) = session.run(clip, output_name).map_err(&fail)?;
                    if shape != [1, num_classes] {
                        return Err(fail(format!("output `{output_name}` has shape {shape:?} for one clip, expected [1, {num_classes}]")));
                    }
                    data.extend(values);
                }
                (vec![n, num_classes], data)
            }
        };
        if shape != [n, num_classes] {
            return Err(fail(format!("output `{output_name}` has shape {shape:?}, expected [{n}, {num_classes}] (slowfast.num_classes)")));
        }
        Ok(data
            .chunks(num_classes)
            .map(|row| match kind {
                OutputKind::Probabilities => row.to_vec(),
                OutputKind::Logits => softmax(row),
            })
            .collect())
    }
}

pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f64> = logits.iter().map(|&v| f64::from(v - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    exp.iter().map(|&e| (e / sum) as f32).collect()
}

/// A session on one provider (no fallback inside).
fn open(
    env: &ort::environment::Environment,
    model: &Path,
    info: &ModelInfo,
    provider: Provider,
    opts: &EngineOptions,
) -> Result<(ort::session::Session, EngineCache), EngineError> {
    let model_err = |why: String| EngineError::Model { model: model.into(), why };
    let prov_err = |why: String| EngineError::Provider { provider, why };
    let mut builder = ort::session::Session::builder(env)
        .and_then(|b| b.with_optimization_level(GraphOptimizationLevel::All).map_err(Into::into))
        .map_err(|e| model_err(format!("session options: {e}")))?;
    if let Some(n) = opts.threads {
        builder = builder.with_intra_threads(n).map_err(|e| model_err(format!("threads: {e}")))?;
    }
    let mut source = model.to_path_buf();
    let mut cache = EngineCache::Disabled;
    match provider {
        Provider::Cpu => {}
        Provider::OpenVino => return Err(prov_err("OpenVINO is not an ONNX Runtime provider".into())),
        Provider::Cuda => {
            check_available(provider)?;
            register(&mut builder, ep::CUDA::default().with_device_id(opts.device_id).build(), provider)?;
        }
        Provider::TensorRt => {
            check_available(provider)?;
            let mut dump = false;
            if let Some(dir) = &opts.tensorrt.cache_dir {
                std::fs::create_dir_all(dir).map_err(|e| prov_err(format!("engine cache directory {}: {e}", dir.display())))?;
                let ctx = tensorrt::context_model_path(dir, model);
                if ctx.is_file() {
                    source = ctx.clone();
                    cache = EngineCache::Hit { context_model: ctx };
                } else {
                    dump = true;
                    cache = EngineCache::Built { context_model: ctx };
                }
            }
            let trt = tensorrt::provider(info, opts.device_id, &opts.tensorrt, dump);
            register(&mut builder, trt.build(), provider)?;
            // TensorRT leaves unsupported nodes to CUDA rather than CPU.
            register(&mut builder, ep::CUDA::default().with_device_id(opts.device_id).build(), Provider::Cuda)?;
        }
    }
    let session = builder.commit_from_file(&source).map_err(|e| match provider {
        Provider::Cpu => model_err(format!("ONNX Runtime cannot load the model: {e}")),
        _ => prov_err(format!("creating a session on {}: {e}", source.display())),
    })?;
    if let EngineCache::Built { context_model } = &cache
        && !context_model.is_file()
    {
        return Err(prov_err(format!(
            "the engine was built but ONNX Runtime did not write the EP context model {}",
            context_model.display()
        )));
    }
    Ok((session, cache))
}

fn check_available(provider: Provider) -> Result<(), EngineError> {
    let available = match provider {
        Provider::TensorRt => ep::TensorRT::is_available(),
        Provider::Cuda => ep::CUDA::is_available(),
        Provider::Cpu => Ok(true),
        Provider::OpenVino => Ok(false),
    };
    match available {
        Ok(true) => Ok(()),
        Ok(false) => Err(EngineError::Provider {
            provider,
            why: format!(
                "the ONNX Runtime library at {} was built without {} (a CPU-only build such as the PyPI `onnxruntime` wheel); \
                 install `onnxruntime-gpu` with CUDA{} and point ORT_DYLIB_PATH at its libonnxruntime.so",
                library_path().display(),
                provider.ort_name().unwrap_or("OpenVINO"),
                if provider == Provider::TensorRt { " and TensorRT 10" } else { "" }
            ),
        }),
        Err(e) => Err(EngineError::Provider { provider, why: format!("cannot list ONNX Runtime's providers: {e}") }),
    }
}

fn register(builder: &mut SessionBuilder, dispatch: ep::ExecutionProviderDispatch, provider: Provider) -> Result<(), EngineError> {
    dispatch.error_on_failure().register(builder).map_err(|e| EngineError::Provider { provider, why: format!("registration failed: {e}") })
}
