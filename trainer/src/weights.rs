//! Weights as safetensors files with PySlowFast's tensor names, BN running
//! statistics included. Loading is strict: every missing, unexpected or
//! mis-shaped tensor is named, so a checkpoint never half-loads silently.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use tch::{Kind, Tensor, nn};

#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("{path}: cannot read safetensors: {why}")]
    Read { path: PathBuf, why: String },
    #[error("{path}: cannot write safetensors: {why}")]
    Write { path: PathBuf, why: String },
    #[error("{path}: weights do not match the model:\n{}", problems.join("\n"))]
    Mismatch { path: PathBuf, problems: Vec<String> },
}

/// What a checkpoint may leave out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LoadMode {
    /// Every tensor of the model must be in the file with its shape, and
    /// nothing else may be.
    #[default]
    Strict,
    /// Fine-tuning: `head.projection.*` may be missing or of another class
    /// count; the model keeps its freshly initialised head.
    NewHead,
}

const HEAD_PREFIX: &str = "head.projection.";

/// Writes every variable of `vs` (parameters and buffers), in name order.
pub fn save(vs: &nn::VarStore, path: &Path) -> Result<(), WeightsError> {
    let vars: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
    let named: Vec<(&str, Tensor)> = vars.iter().map(|(k, v)| (k.as_str(), v.detach().to_device(tch::Device::Cpu).contiguous())).collect();
    Tensor::write_safetensors(&named, path).map_err(|e| WeightsError::Write { path: path.to_path_buf(), why: e.to_string() })
}

/// Reads every tensor of a weights file: safetensors as it is, a
/// checkpoint of another zoo (PySlowFast `.pyth`, pytorchvideo, ...)
/// through `import`, its names mapped to ours, or an fp32 ONNX model of
/// our own export (`.onnx`, BatchNorm unfolded: `import::onnx`).
pub fn read(path: &Path) -> Result<BTreeMap<String, Tensor>, WeightsError> {
    if !path.is_file() {
        return Err(WeightsError::Read { path: path.to_path_buf(), why: "no such file".to_string() });
    }
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("onnx")) {
        let bytes = std::fs::read(path).map_err(|e| WeightsError::Read { path: path.to_path_buf(), why: e.to_string() })?;
        return crate::import::onnx::read(&bytes).map_err(|why| WeightsError::Read { path: path.to_path_buf(), why });
    }
    if !crate::import::is_safetensors(path) {
        return crate::import::import(path, None)
            .map(|i| i.tensors)
            .map_err(|e| WeightsError::Read { path: path.to_path_buf(), why: e.why });
    }
    let tensors = Tensor::read_safetensors(path).map_err(|e| WeightsError::Read { path: path.to_path_buf(), why: e.to_string() })?;
    Ok(tensors.into_iter().collect())
}

/// Copies the tensors of `path` into `vs`, checking names and shapes first:
/// on any mismatch nothing is copied and each problem is listed.
pub fn load(vs: &mut nn::VarStore, path: &Path, mode: LoadMode) -> Result<(), WeightsError> {
    let file = read(path)?;
    load_tensors(vs, &file, path, mode)
}

/// `load` of tensors already read from `path` (named in errors).
pub fn load_tensors(vs: &mut nn::VarStore, file: &BTreeMap<String, Tensor>, path: &Path, mode: LoadMode) -> Result<(), WeightsError> {
    let model: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
    let tolerated = |name: &str| mode == LoadMode::NewHead && name.starts_with(HEAD_PREFIX);
    // BN's step counter, which no forward pass reads: files made without it
    // (Caffe2 conversions, older torch) load as torch loads them, the
    // counter at 0.
    let optional = |name: &str| name.ends_with(".num_batches_tracked");

    let mut problems = Vec::new();
    let mut restart = Vec::new();
    let model_names: BTreeSet<&String> = model.keys().collect();
    let file_names: BTreeSet<&String> = file.keys().collect();
    for name in model_names.difference(&file_names) {
        if optional(name) {
            restart.push(&model[*name]);
        } else if !tolerated(name) {
            problems.push(format!("  missing: {name} {:?}", model[*name].size()));
        }
    }
    for name in file_names.difference(&model_names) {
        if !tolerated(name) {
            problems.push(format!("  unexpected: {name} {:?}", file[*name].size()));
        }
    }
    let mut copies = Vec::new();
    for (name, dst) in &model {
        let Some(src) = file.get(name) else { continue };
        if src.size() != dst.size() {
            if !tolerated(name) {
                problems.push(format!("  shape of {name}: file has {:?}, model wants {:?}", src.size(), dst.size()));
            }
            continue;
        }
        if !is_numeric(src.kind()) {
            problems.push(format!("  dtype of {name}: {:?} is not a number type", src.kind()));
            continue;
        }
        copies.push((dst, src));
    }
    if !problems.is_empty() {
        return Err(WeightsError::Mismatch { path: path.to_path_buf(), problems });
    }
    tch::no_grad(|| {
        for counter in restart {
            let _ = counter.shallow_clone().zero_();
        }
        for (dst, src) in copies {
            let mut dst = dst.shallow_clone();
            dst.copy_(&src.to_kind(dst.kind()).to_device(dst.device()));
        }
    });
    Ok(())
}

fn is_numeric(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16 | Kind::Int64 | Kind::Int | Kind::Int16 | Kind::Int8 | Kind::Uint8
    )
}

/// What `load_inflated` did.
#[derive(Debug, Clone, Default)]
pub struct Inflated {
    /// Tensors copied as they were.
    pub copied: usize,
    /// 2D conv weights spread over the network's temporal kernel.
    pub inflated: usize,
    /// Tensors of the network the file has nothing for, or nothing of the
    /// right shape: they keep their initialisation.
    pub kept: Vec<String>,
    /// Tensors of the file the network has no place for.
    pub unused: Vec<String>,
}

/// Starting a video network from image (2D) weights, as PySlowFast's
/// `inflate_weight` does: a `[O, I, kh, kw]` conv weight fills a
/// `[O, I, T, kh, kw]` one repeated over time and divided by `T` (so a
/// clip of one repeated frame gives the image network's response). The
/// load is partial by nature: whatever the image network lacks (the fast
/// pathway, the lateral connections, a head of other classes) or shapes
/// differently keeps its initialisation, and is listed.
pub fn load_inflated(vs: &mut nn::VarStore, file: &BTreeMap<String, Tensor>) -> Inflated {
    let model: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
    let mut out = Inflated { unused: file.keys().filter(|k| !model.contains_key(*k)).cloned().collect(), ..Inflated::default() };
    tch::no_grad(|| {
        for (name, dst) in &model {
            let Some(src) = file.get(name).filter(|s| is_numeric(s.kind())) else {
                out.kept.push(name.clone());
                continue;
            };
            let (s, d) = (src.size(), dst.size());
            let value = if s == d {
                out.copied += 1;
                src.shallow_clone()
            } else if s.len() == 4 && d.len() == 5 && s[..2] == d[..2] && s[2..] == d[3..] {
                out.inflated += 1;
                src.unsqueeze(2).repeat([1, 1, d[2], 1, 1]) / d[2] as f64
            } else {
                out.kept.push(format!("{name} (file {s:?}, network {d:?})"));
                continue;
            };
            let mut dst = dst.shallow_clone();
            dst.copy_(&value.to_kind(dst.kind()).to_device(dst.device()));
        }
    });
    out
}
