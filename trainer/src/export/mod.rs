//! ONNX export of a [`SlowFast`] network, written from Rust (opset 17).
//!
//! The graph has inputs `slow` `[N, C, Ts, H, W]` and `fast`
//! `[N, C, Tf, H, W]` (batch `N` dynamic; `H`, `W` fixed to the crop or
//! dynamic) and one output, `probabilities` (softmax) or `logits`
//! `[N, num_classes]`. It is walked from the model's own structs, in eval
//! mode: BatchNorm folded into the convolutions, no dropout. The file
//! describes itself through `metadata_props` (see [`metadata`]).
//!
//! ```no_run
//! # use trainer::export::{ExportOptions, export_onnx, write_model};
//! # use trainer::model::{Preset, SlowFast};
//! # fn main() -> anyhow::Result<()> {
//! let vs = tch::nn::VarStore::new(tch::Device::Cpu);
//! let model = SlowFast::new(&vs.root(), &Preset::SlowFast8x8R50.config())?;
//! let opts = ExportOptions { arch: Some(Preset::SlowFast8x8R50), ..ExportOptions::new(trainer::labels::generated(400)) };
//! write_model("slowfast.onnx".as_ref(), &export_onnx(&model, &opts)?)?;
//! # Ok(()) }
//! ```

pub mod calibrate;
mod fold;
mod graph;
pub mod metadata;
mod onnx;

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::clip::{KINETICS_MEAN, KINETICS_STD};
use crate::model::{EvalOutput, ModelConfig, Preset, SlowFast};

use graph::{Dim, GraphBuilder, ModelInfo};

pub use graph::OPSET;

/// Names of the graph inputs.
pub use runtime::schema::tensors::{FAST as INPUT_FAST, SLOW as INPUT_SLOW};
/// ONNX `producer_name` of every exported model.
pub const PRODUCER_NAME: &str = "slowfast-rs trainer";

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("export option `{field}`: {why}")]
    BadOption { field: &'static str, why: String },
    #[error("weights: {tensor}: {why}")]
    Weights { tensor: String, why: String },
    #[error("{path}: cannot write the model: {why}")]
    Write { path: PathBuf, why: String },
}

/// How to export: the clip the model expects, its classes and provenance.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportOptions {
    /// The preset the model was built from, or `None` for a custom config
    /// (written as `custom`).
    pub arch: Option<Preset>,
    pub output: EvalOutput,
    /// Square spatial size of the input (`H = W`).
    pub crop_size: i64,
    /// Leave `H` and `W` dynamic in the graph; `crop_size` stays the size
    /// the model is meant for.
    pub dynamic_spatial: bool,
    /// Frames of the fast pathway; the slow one gets `fast_frames / alpha`.
    pub fast_frames: i64,
    /// Source frames between two sampled frames at `target_fps`.
    pub sampling_rate: i64,
    pub target_fps: f64,
    /// RGB normalisation on [0, 1] pixels.
    pub mean: [f64; 3],
    pub std: [f64; 3],
    /// One name per class, index = class id.
    pub labels: Vec<String>,
    /// The training recipe the weights came from; empty when unknown.
    pub recipe: String,
}

impl ExportOptions {
    /// PySlowFast's Kinetics test settings (32 fast frames at rate 2, 30 fps,
    /// 256 crop, mean 0.45 / std 0.225), softmax output, custom arch.
    pub fn new(labels: Vec<String>) -> Self {
        ExportOptions {
            arch: None,
            output: EvalOutput::Probabilities,
            crop_size: 256,
            dynamic_spatial: false,
            fast_frames: 32,
            sampling_rate: 2,
            target_fps: 30.0,
            mean: KINETICS_MEAN,
            std: KINETICS_STD,
            labels,
            recipe: String::new(),
        }
    }

    /// What `slowfast.arch` says.
    pub fn arch_name(&self) -> &'static str {
        self.arch.map_or("custom", Preset::name)
    }
}

/// Graph output name (and `slowfast.output` value) for an output kind.
pub fn output_name(output: EvalOutput) -> &'static str {
    match output {
        EvalOutput::Probabilities => runtime::schema::tensors::PROBABILITIES,
        EvalOutput::Logits => runtime::schema::tensors::LOGITS,
    }
}

/// The model as ONNX protobuf bytes.
pub fn export_onnx(model: &SlowFast, opts: &ExportOptions) -> Result<Vec<u8>, ExportError> {
    export_graph(model, opts, None)
}

/// The model quantised to INT8 (QDQ) with `calibration`'s ranges, as ONNX
/// protobuf bytes; the calibration is recorded in the metadata.
pub fn export_onnx_int8(model: &SlowFast, opts: &ExportOptions, calibration: &calibrate::Calibration) -> Result<Vec<u8>, ExportError> {
    export_graph(model, opts, Some(calibration))
}

fn export_graph(model: &SlowFast, opts: &ExportOptions, quant: Option<&calibrate::Calibration>) -> Result<Vec<u8>, ExportError> {
    validate(model, opts)?;
    let c = &model.config;
    let mut metadata = metadata::entries(model, opts)?;
    if let Some(q) = quant {
        metadata.extend(metadata::quantization(q)?);
    }
    let (h, w) =
        if opts.dynamic_spatial { (Dim::Named("H"), Dim::Named("W")) } else { (Dim::Fixed(opts.crop_size), Dim::Fixed(opts.crop_size)) };
    let clip = |frames| vec![Dim::Named("N"), Dim::Fixed(c.input_channels), Dim::Fixed(frames), h, w];

    let mut g = GraphBuilder::default();
    let slow = g.input(INPUT_SLOW, clip(opts.fast_frames / c.alpha));
    let fast = g.input(INPUT_FAST, clip(opts.fast_frames));
    let out = onnx::network(&mut g, model, [slow, fast], opts.output, output_name(opts.output), quant)?;
    g.output(&out, vec![Dim::Named("N"), Dim::Fixed(c.num_classes)]);

    let doc = doc_string(model, opts);
    let info =
        ModelInfo { producer_name: PRODUCER_NAME, producer_version: env!("CARGO_PKG_VERSION"), doc_string: &doc, metadata: &metadata };
    Ok(g.encode(&info))
}

/// Writes `bytes` to `path` atomically: a temporary file in the same
/// directory, renamed over `path` once complete, so a reader never sees half
/// a model.
pub fn write_model(path: &Path, bytes: &[u8]) -> Result<(), ExportError> {
    let (dir, name) = check_output_path(path)?;
    let err = |why: String| ExportError::Write { path: path.to_path_buf(), why };
    let tmp = dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
    let written = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, path));
    written.map_err(|e| {
        // Best effort: the error that matters is the one reported.
        let _ = std::fs::remove_file(&tmp);
        err(e.to_string())
    })
}

/// Checks that `path` can be a model file: a file name in an existing
/// directory. Returns the directory and the file name.
pub fn check_output_path(path: &Path) -> Result<(&Path, &std::ffi::OsStr), ExportError> {
    let err = |why: String| ExportError::Write { path: path.to_path_buf(), why };
    let name = path.file_name().ok_or_else(|| err("not a file name".to_string()))?;
    if path.is_dir() {
        return Err(err("is a directory".to_string()));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(err(format!("directory {} does not exist", dir.display())));
    }
    Ok((dir, name))
}

fn validate(model: &SlowFast, opts: &ExportOptions) -> Result<(), ExportError> {
    let c = &model.config;
    let bad = |field: &'static str, why: String| Err(ExportError::BadOption { field, why });
    if opts.labels.len() as i64 != c.num_classes {
        return bad("labels", format!("{} names for a model with {} classes", opts.labels.len(), c.num_classes));
    }
    if let Some(i) = opts.labels.iter().position(|l| l.trim().is_empty()) {
        return bad("labels", format!("class {i} has an empty name"));
    }
    if let Some(preset) = opts.arch {
        // Settings that only matter in training may differ from the preset.
        let expected = ModelConfig {
            num_classes: c.num_classes,
            dropout: c.dropout,
            fc_init_std: c.fc_init_std,
            bn_momentum: c.bn_momentum,
            zero_init_final_bn: c.zero_init_final_bn,
            ..preset.config()
        };
        if *c != expected {
            return bad("arch", format!("the model's config is not the {} preset's; export it as custom", preset.name()));
        }
    }
    if opts.fast_frames < c.alpha || opts.fast_frames % c.alpha != 0 {
        return bad("fast_frames", format!("{} is not a positive multiple of alpha = {}", opts.fast_frames, c.alpha));
    }
    if opts.sampling_rate < 1 {
        return bad("sampling_rate", format!("must be at least 1, got {}", opts.sampling_rate));
    }
    if !(opts.target_fps.is_finite() && opts.target_fps > 0.0) {
        return bad("target_fps", format!("must be a positive number, got {}", opts.target_fps));
    }
    if opts.mean.iter().any(|m| !m.is_finite()) {
        return bad("mean", format!("must be finite, got {:?}", opts.mean));
    }
    if opts.std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
        return bad("std", format!("must be positive, got {:?}", opts.std));
    }
    let n = c.input_channels;
    let (t, s) = (opts.fast_frames, opts.crop_size);
    model.check_shapes([1, n, t / c.alpha, s, s], [1, n, t, s, s]).or_else(|e| bad("crop_size", format!("{s}: {e}")))
}

fn doc_string(model: &SlowFast, opts: &ExportOptions) -> String {
    let c = &model.config;
    let (tf, ts) = (opts.fast_frames, opts.fast_frames / c.alpha);
    let hw = if opts.dynamic_spatial { "H, W".to_string() } else { format!("{0}, {0}", opts.crop_size) };
    format!(
        "SlowFast {arch} (ResNet-{depth}, alpha {alpha}) for {k} classes. Inputs: slow [N, {ch}, {ts}, {hw}] and fast \
         [N, {ch}, {tf}, {hw}], RGB on [0, 1] normalised with mean {mean:?} and std {std:?}, fast frames sampled every \
         {rate} frames at {fps} fps, slow frames spread over them as PySlowFast does. Output: {out} [N, {k}]. BatchNorm folded \
         into the convolutions. Exported by {PRODUCER_NAME} {version}.",
        arch = opts.arch_name(),
        depth = c.depth,
        alpha = c.alpha,
        k = c.num_classes,
        ch = c.input_channels,
        mean = opts.mean,
        std = opts.std,
        rate = opts.sampling_rate,
        fps = opts.target_fps,
        out = output_name(opts.output),
        version = env!("CARGO_PKG_VERSION"),
    )
}
