//! TensorRT execution provider settings and the on-disk engine cache.
//!
//! Building a TensorRT engine for SlowFast takes minutes, so it is done once
//! per device (`slowfast build-engine`) into a directory holding the engine
//! and timing caches plus an "EP context" model: a one-node ONNX file that
//! wraps the serialized engine. A later start finds that model and loads the
//! engine directly, without the TensorRT builder.

use std::path::{Path, PathBuf};

use ort::ep::TensorRT;

use crate::model_info::ModelInfo;

/// Engine files go in this sub-directory; the EP context model refers to
/// them relative to its own folder, so the directory can be copied whole.
const ENGINE_SUBDIR: &str = "engines";

#[derive(Debug, Clone)]
pub struct TensorRtOptions {
    pub fp16: bool,
    /// Directory for the engine cache, timing cache and EP context model;
    /// `None` builds in memory on every start.
    pub cache_dir: Option<PathBuf>,
    /// Largest batch the engine's optimisation profile accepts.
    pub max_batch: usize,
}

impl Default for TensorRtOptions {
    fn default() -> Self {
        TensorRtOptions { fp16: true, cache_dir: None, max_batch: 1 }
    }
}

/// What was found in the cache directory before the session was created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineCache {
    /// No cache directory: TensorRT builds the engine in memory.
    Disabled,
    /// A prebuilt EP context model was loaded; no engine build.
    Hit { context_model: PathBuf },
    /// No prebuilt engine: it was built and written to `context_model`.
    Built { context_model: PathBuf },
}

/// The EP context model for `model` inside `dir`, named as ONNX Runtime
/// names it when the context path is a directory (`<stem>_ctx.onnx`).
pub fn context_model_path(dir: &Path, model: &Path) -> PathBuf {
    let stem = model.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
    dir.join(format!("{stem}_ctx.onnx"))
}

/// `slow:NxCxTxHxW,fast:...` for one batch size.
fn profile(info: &ModelInfo, batch: usize) -> String {
    let s = info.crop_size;
    format!("slow:{batch}x3x{}x{s}x{s},fast:{batch}x3x{}x{s}x{s}", info.slow_frames, info.fast_frames)
}

/// Provider settings; `dump_context` asks TensorRT to write the EP context
/// model after building (false when loading a prebuilt one).
pub fn provider(info: &ModelInfo, device_id: i32, opts: &TensorRtOptions, dump_context: bool) -> TensorRT {
    let batch = opts.max_batch.max(1);
    let mut ep = TensorRT::default()
        .with_device_id(device_id)
        .with_fp16(opts.fp16)
        // Dynamic batch: without a profile TensorRT rebuilds per shape.
        .with_profile_min_shapes(profile(info, 1))
        .with_profile_opt_shapes(profile(info, 1))
        .with_profile_max_shapes(profile(info, batch));
    if info.quantization.is_some() {
        // A QDQ model (`trainer export --int8`) carries its own scales:
        // TensorRT builds INT8 kernels from them once INT8 is allowed, and
        // needs no calibration table. FP16 stays on for the layers the
        // graph leaves in float. Not runnable here (no GPU): built and
        // documented only.
        ep = ep.with_int8(true);
    }
    if let Some(dir) = &opts.cache_dir {
        ep = ep.with_engine_cache(true).with_timing_cache(true).with_timing_cache_path(dir.display());
        if dump_context {
            // With a context path set, ONNX Runtime takes the engine cache
            // path relative to it.
            ep = ep
                .with_dump_ep_context_model(true)
                .with_ep_context_file_path(dir.display())
                .with_ep_context_embed_mode(0)
                .with_engine_cache_path(ENGINE_SUBDIR);
        } else {
            ep = ep.with_engine_cache_path(dir.join(ENGINE_SUBDIR).display());
        }
    }
    ep
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_model_sits_in_the_cache_dir() {
        assert_eq!(context_model_path(Path::new("/e"), Path::new("/m/r50.onnx")), PathBuf::from("/e/r50_ctx.onnx"));
    }
}
