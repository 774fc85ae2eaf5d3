//! The `multigrid` section: PySlowFast's `MULTIGRID` keys in snake_case.
//! What they turn into (the long-cycle schedule, the short-cycle batches,
//! the BN of each shape) is computed in [`crate::multigrid`].

use serde::{Deserialize, Serialize};

/// Multigrid training (Wu et al., CVPR 2020). Absent: the normal schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultigridSection {
    /// Change the clip shape (frames, crop) and the batch at epoch
    /// boundaries over a schedule made from the LR steps.
    #[serde(default)]
    pub long_cycle: bool,
    /// Cycle the crop every iteration through the short-cycle factors and
    /// the long cycle's own size, the batch growing as the crop shrinks.
    #[serde(default)]
    pub short_cycle: bool,
    /// How many times the normal schedule's epochs multigrid trains for.
    #[serde(default = "default_epoch_factor")]
    pub epoch_factor: f64,
    /// `[frames, crop]` of each long-cycle shape relative to the default.
    #[serde(default = "default_long_cycle_factors")]
    pub long_cycle_factors: Vec<[f64; 2]>,
    /// The two short-cycle crops relative to the default crop.
    #[serde(default = "default_short_cycle_factors")]
    pub short_cycle_factors: [f64; 2],
    /// Clips per BN statistic: a larger per-process batch is normalised in
    /// sub-batches of this size, a smaller one is synced across processes.
    #[serde(default = "default_bn_base_size")]
    pub bn_base_size: usize,
    /// Validations (and checkpoints) per long-cycle shape.
    #[serde(default = "default_eval_freq")]
    pub eval_freq: usize,
    /// Factor between the LRs of consecutive steps (PySlowFast's `SOLVER.GAMMA`).
    #[serde(default = "default_gamma")]
    pub gamma: f64,
    /// The crop the factors refer to. PySlowFast sets it to
    /// `DATA.TRAIN_CROP_SIZE`; it may be written here as a reminder.
    #[serde(default)]
    pub default_s: Option<u32>,
}

fn default_epoch_factor() -> f64 {
    1.5
}
fn default_long_cycle_factors() -> Vec<[f64; 2]> {
    let r = 0.5f64.sqrt();
    vec![[0.25, r], [0.5, r], [0.5, 1.0], [1.0, 1.0]]
}
fn default_short_cycle_factors() -> [f64; 2] {
    [0.5, 0.5f64.sqrt()]
}
fn default_bn_base_size() -> usize {
    8
}
fn default_eval_freq() -> usize {
    3
}
fn default_gamma() -> f64 {
    0.1
}
