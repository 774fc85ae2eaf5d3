//! Checkpoints: `checkpoint_epoch_NNNNN.safetensors` (weights with
//! PySlowFast names, loadable by `trainer::weights`), `.optim.safetensors`
//! (momentum buffers) and `.json` (epoch, iteration, schedule, seeds and
//! the model). Each file is written to a temporary name, synced and
//! renamed; the JSON goes last, so a checkpoint exists only once complete.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::{Tensor, nn};

use crate::model::{ModelConfig, SlowFast};

/// Everything beyond the tensors needed to continue a run where it stopped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    pub format: u32,
    /// Epochs completed.
    pub epoch: usize,
    /// Optimisation steps taken.
    pub global_iter: u64,
    /// LR of the last step.
    pub lr: f64,
    /// Seed of weights, data order, augmentation and dropout. Data order,
    /// augmentation and dropout are drawn from (seed, epoch, position), so
    /// `seed` and `epoch` are their whole state.
    pub seed: u64,
    pub model: ModelConfig,
    pub recipe_name: String,
    pub best_val_top1: Option<f64>,
    /// Dynamic loss scaling of fp16 training (absent otherwise, and in
    /// checkpoints written before mixed precision existed).
    #[serde(default)]
    pub loss_scaler: Option<super::amp::LossScaler>,
    /// Shape, batch and BN of the last epoch of a multigrid run (its LR and
    /// sampler follow from the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multigrid: Option<super::shapes::SchedulePosition>,
}

pub const FORMAT: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {why}")]
    Io { path: PathBuf, why: String },
}

fn io(path: &Path, e: impl std::fmt::Display) -> CheckpointError {
    CheckpointError::Io { path: path.to_path_buf(), why: e.to_string() }
}

/// Writes through a temporary file in the same folder, synced before the
/// rename and the folder synced after, so a crash leaves old or new.
pub fn write_atomic(path: &Path, write: impl FnOnce(&Path) -> Result<(), String>) -> Result<(), CheckpointError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    write(&tmp).map_err(|e| io(path, e))?;
    std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io(path, e))?;
    std::fs::File::open(dir).and_then(|f| f.sync_all()).map_err(|e| io(dir, e))?;
    Ok(())
}

pub fn write_text_atomic(path: &Path, text: &str) -> Result<(), CheckpointError> {
    write_atomic(path, |tmp| {
        let mut f = std::fs::File::create(tmp).map_err(|e| e.to_string())?;
        f.write_all(text.as_bytes()).map_err(|e| e.to_string())
    })
}

pub struct Paths {
    pub weights: PathBuf,
    pub optim: PathBuf,
    pub state: PathBuf,
}

pub fn paths(dir: &Path, epoch: usize) -> Paths {
    let stem = dir.join(format!("checkpoint_epoch_{epoch:05}"));
    Paths {
        weights: stem.with_extension("safetensors"),
        optim: stem.with_extension("optim.safetensors"),
        state: stem.with_extension("json"),
    }
}

pub fn save(dir: &Path, vs: &nn::VarStore, optim: &[(String, Tensor)], state: &TrainState) -> Result<Paths, CheckpointError> {
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let p = paths(dir, state.epoch);
    write_atomic(&p.weights, |tmp| crate::weights::save(vs, tmp).map_err(|e| e.to_string()))?;
    write_atomic(&p.optim, |tmp| {
        let named: Vec<(&str, &Tensor)> = optim.iter().map(|(n, t)| (n.as_str(), t)).collect();
        Tensor::write_safetensors(&named, tmp).map_err(|e| e.to_string())
    })?;
    let json = serde_json::to_string_pretty(state).map_err(|e| io(&p.state, e))?;
    write_text_atomic(&p.state, &json)?;
    Ok(p)
}

/// The complete checkpoint of the highest epoch in `dir`, if any.
pub fn latest(dir: &Path) -> Option<(usize, Paths)> {
    let entries = std::fs::read_dir(dir).ok()?;
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            name.strip_prefix("checkpoint_epoch_")?.strip_suffix(".json")?.parse::<usize>().ok()
        })
        .filter(|&epoch| {
            let p = paths(dir, epoch);
            p.weights.is_file() && p.optim.is_file()
        })
        .max()
        .map(|epoch| (epoch, paths(dir, epoch)))
}

/// Prefix of sub-batch BN statistics in the `.optim` file: training state
/// that the weights (an ordinary BN model) do not carry.
const SUB_BN_PREFIX: &str = "sub_bn.";

/// The model's sub-batch BN statistics, named for the `.optim` file.
pub fn sub_bn_state(model: &SlowFast) -> Vec<(String, Tensor)> {
    let mut out = Vec::new();
    for bn in model.batch_norms() {
        if let Some((mean, var)) = bn.sub_stats() {
            let cpu = |t: Tensor| t.to_device(tch::Device::Cpu);
            out.push((format!("{SUB_BN_PREFIX}{}.running_mean", bn.name), cpu(mean)));
            out.push((format!("{SUB_BN_PREFIX}{}.running_var", bn.name), cpu(var)));
        }
    }
    out
}

/// Loads the sub-batch BN statistics of `saved` into the model (set to
/// the checkpoint's BN already) and returns the rest, the optimiser's.
pub fn restore_sub_bn(model: &SlowFast, mut saved: HashMap<String, Tensor>) -> Result<HashMap<String, Tensor>, String> {
    for bn in model.batch_norms() {
        let key = |s: &str| format!("{SUB_BN_PREFIX}{}.{s}", bn.name);
        match (saved.remove(&key("running_mean")), saved.remove(&key("running_var"))) {
            (Some(mean), Some(var)) => bn.load_sub_stats(&mean, &var)?,
            (None, None) if bn.sub_stats().is_none() => {}
            _ => return Err(format!("{}: sub-batch BN statistics missing or not expected", key("running_*"))),
        }
    }
    if let Some(k) = saved.keys().find(|k| k.starts_with(SUB_BN_PREFIX)) {
        return Err(format!("{k}: no such BN layer in sub-batch BN"));
    }
    Ok(saved)
}

pub fn read_state(p: &Paths) -> Result<(TrainState, HashMap<String, Tensor>), CheckpointError> {
    let text = std::fs::read_to_string(&p.state).map_err(|e| io(&p.state, e))?;
    let state: TrainState = serde_json::from_str(&text).map_err(|e| io(&p.state, e))?;
    if state.format != FORMAT {
        return Err(io(&p.state, format!("checkpoint format {} is not {FORMAT}", state.format)));
    }
    let optim = Tensor::read_safetensors(&p.optim).map_err(|e| io(&p.optim, e))?.into_iter().collect();
    Ok((state, optim))
}
