//! The sections of a recipe other than the model. Defaults are PySlowFast's
//! Kinetics-400 values where a field may be left out.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Where the network runs: `auto`, `cpu`, `cuda` (the first GPU),
/// `cuda:N` or `{ cuda: N }`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", try_from = "DeviceSpec")]
pub enum DeviceChoice {
    /// The first CUDA device when there is one, else the CPU.
    #[default]
    Auto,
    Cpu,
    Cuda(i64),
}

/// The spellings of a device a recipe may use.
#[derive(Deserialize)]
#[serde(untagged)]
enum DeviceSpec {
    Name(String),
    Cuda { cuda: i64 },
}

impl TryFrom<DeviceSpec> for DeviceChoice {
    type Error = String;

    fn try_from(d: DeviceSpec) -> Result<Self, String> {
        match d {
            DeviceSpec::Cuda { cuda } => Ok(DeviceChoice::Cuda(cuda)),
            DeviceSpec::Name(name) => match name.as_str() {
                "auto" => Ok(DeviceChoice::Auto),
                "cpu" => Ok(DeviceChoice::Cpu),
                "cuda" => Ok(DeviceChoice::Cuda(0)),
                other => other
                    .strip_prefix("cuda:")
                    .and_then(|i| i.parse::<i64>().ok())
                    .map(DeviceChoice::Cuda)
                    .ok_or_else(|| format!("device {other:?}: use auto, cpu, cuda or cuda:N")),
            },
        }
    }
}

/// Video lists on disk (PaddleVideo / mmaction2 `path label` lines, or
/// PySlowFast CSV files).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListsDataset {
    pub train: Option<PathBuf>,
    pub val: Option<PathBuf>,
    pub test: Option<PathBuf>,
    /// Prefix joined to every relative path of a list (PySlowFast's `PATH_PREFIX`).
    pub root: Option<PathBuf>,
    #[serde(default)]
    pub format: ListFormat,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListFormat {
    /// `relative/path.mp4 label` per line (PaddleVideo, mmaction2, PySlowFast's
    /// space-separated CSV); a path may be a folder of extracted frames.
    #[default]
    PathLabel,
    /// Comma-separated with a header naming the columns (`path`/`video`/
    /// `filename` and `label`/`label_id`).
    Csv,
}

/// The synthetic motion set, rendered in memory (no files, no GStreamer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyntheticDataset {
    pub train: usize,
    pub val: usize,
    #[serde(default = "default_synth_size")]
    pub size: u32,
    #[serde(default = "default_synth_frames")]
    pub frames: usize,
    #[serde(default)]
    pub seed: u64,
}

fn default_synth_size() -> u32 {
    64
}
fn default_synth_frames() -> usize {
    48
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Dataset {
    Lists(ListsDataset),
    Synthetic(SyntheticDataset),
}

/// Temporal sampling and spatial augmentation (PySlowFast's `DATA` section).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    pub dataset: Dataset,
    /// Frames of the fast pathway.
    #[serde(default = "default_num_frames")]
    pub num_frames: usize,
    /// Every how many frames (at `target_fps`) a frame is taken.
    #[serde(default = "default_sampling_rate")]
    pub sampling_rate: usize,
    /// Frame rate the sampling rate refers to (30 for Kinetics).
    #[serde(default = "default_target_fps")]
    pub target_fps: f64,
    /// Short side drawn uniformly from this range before the random crop.
    #[serde(default = "default_jitter")]
    pub train_jitter_scales: [u32; 2],
    #[serde(default = "default_train_crop")]
    pub train_crop_size: u32,
    /// Horizontal flip with probability 0.5. Off for data whose labels
    /// depend on left and right (the synthetic motion set).
    #[serde(default = "default_true")]
    pub random_flip: bool,
    #[serde(default = "default_mean")]
    pub mean: [f64; 3],
    #[serde(default = "default_std")]
    pub std: [f64; 3],
}

fn default_num_frames() -> usize {
    32
}
fn default_sampling_rate() -> usize {
    2
}
fn default_target_fps() -> f64 {
    30.0
}
fn default_jitter() -> [u32; 2] {
    [256, 320]
}
fn default_train_crop() -> u32 {
    224
}
fn default_true() -> bool {
    true
}
fn default_mean() -> [f64; 3] {
    crate::clip::KINETICS_MEAN
}
fn default_std() -> [f64; 3] {
    crate::clip::KINETICS_STD
}

/// How the learning rate moves over (fractional) epochs, PySlowFast's
/// `SOLVER.LR_POLICY`; warm-up comes on top of any of them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum LrPolicy {
    #[default]
    Cosine,
    /// `lrs[i]` times the base LR from epoch `steps[i]` on.
    Steps {
        steps: Vec<usize>,
        lrs: Vec<f64>,
    },
    Constant,
}

/// PySlowFast's `SOLVER.OPTIMIZING_METHOD`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizingMethod {
    /// SGD with momentum (optionally Nesterov): the published SlowFast recipes.
    #[default]
    Sgd,
    /// AdamW (decoupled weight decay): gets small networks trained from
    /// scratch on little data going much sooner than SGD.
    Adamw,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SolverSection {
    #[serde(default)]
    pub optimizing_method: OptimizingMethod,
    /// LR at `reference_batch_size` clips per step; scaled linearly with the
    /// global batch (Goyal et al.), like the warm-up start and cosine end.
    pub base_lr: f64,
    #[serde(default = "default_reference_batch")]
    pub reference_batch_size: usize,
    #[serde(default)]
    pub lr_policy: LrPolicy,
    pub max_epoch: usize,
    #[serde(default)]
    pub warmup_epochs: f64,
    #[serde(default)]
    pub warmup_start_lr: f64,
    #[serde(default)]
    pub cosine_end_lr: f64,
    #[serde(default = "default_momentum")]
    pub momentum: f64,
    #[serde(default)]
    pub dampening: f64,
    #[serde(default = "default_true")]
    pub nesterov: bool,
    /// AdamW's moment decay rates.
    #[serde(default = "default_betas")]
    pub betas: [f64; 2],
    /// AdamW's denominator term.
    #[serde(default = "default_eps")]
    pub eps: f64,
    #[serde(default = "default_weight_decay")]
    pub weight_decay: f64,
    /// Weight decay of BatchNorm weights and biases (`BN.WEIGHT_DECAY`).
    #[serde(default)]
    pub bn_weight_decay: f64,
    /// No weight decay on any other 1-D parameter either (the head's bias).
    #[serde(default = "default_true")]
    pub zero_wd_1d_param: bool,
    /// Largest L2 norm of all gradients together; none by default.
    #[serde(default)]
    pub clip_grad_norm: Option<f64>,
    #[serde(default)]
    pub label_smoothing: f64,
}

fn default_betas() -> [f64; 2] {
    [0.9, 0.999]
}
fn default_eps() -> f64 {
    1e-8
}
fn default_reference_batch() -> usize {
    64
}
fn default_momentum() -> f64 {
    0.9
}
fn default_weight_decay() -> f64 {
    1e-4
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSection {
    /// Clips per optimisation step over all devices (the global batch).
    pub batch_size: usize,
    #[serde(default = "one")]
    pub checkpoint_period: usize,
    #[serde(default = "one")]
    pub eval_period: usize,
    /// Iterations between metric lines.
    #[serde(default = "default_log_period")]
    pub log_period: usize,
    /// Pick up the latest checkpoint of the output folder by itself.
    #[serde(default = "default_true")]
    pub auto_resume: bool,
    /// Autocast for the forward pass (PySlowFast's `TRAIN.MIXED_PRECISION`):
    /// fp16 with dynamic loss scaling on CUDA, or bf16.
    #[serde(default)]
    pub mixed_precision: MixedPrecision,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MixedPrecision {
    #[default]
    Off,
    /// float16 under autocast, loss scaled as torch's GradScaler does (CUDA only).
    Fp16,
    /// bfloat16 under autocast; its range needs no loss scaling.
    Bf16,
}

/// Normalisation layers (PySlowFast's `BN` section).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BnSection {
    #[serde(default)]
    pub norm_type: NormType,
    /// Processes whose batches share BN statistics with `sync_batchnorm`
    /// (`BN.NUM_SYNC_DEVICES`): consecutive ranks in groups of this size.
    #[serde(default = "one")]
    pub num_sync_devices: usize,
    /// Sub-batches of each process's batch that `sub_batchnorm` takes
    /// statistics over separately (`BN.NUM_SPLITS`).
    #[serde(default = "one")]
    pub num_splits: usize,
}

impl Default for BnSection {
    fn default() -> Self {
        BnSection { norm_type: NormType::default(), num_sync_devices: 1, num_splits: 1 }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NormType {
    /// Statistics of each process's own batch (PySlowFast's default).
    #[default]
    Batchnorm,
    /// Statistics over `num_sync_devices` processes' batches together.
    SyncBatchnorm,
    /// Statistics over each of `num_splits` sub-batches (PySlowFast's
    /// `SubBatchNorm3d`), merged into one BN for evaluation and export.
    SubBatchnorm,
}

/// Data-parallel training across processes (see `trainer::dist`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistSection {
    #[serde(default)]
    pub backend: DistBackend,
    /// Longest wait of any collective or rendezvous before the run stops
    /// with an error naming the rank that is missing.
    #[serde(default = "default_dist_timeout")]
    pub timeout_s: f64,
    /// Gradient bucket size of the all-reduce (DDP's `bucket_cap_mb`).
    #[serde(default = "default_bucket_mb")]
    pub bucket_mb: f64,
    /// Start each bucket's all-reduce while backward still runs (DDP's
    /// Reducer); off: one all-reduce of all gradients after backward.
    #[serde(default = "default_true")]
    pub overlap: bool,
}

impl Default for DistSection {
    fn default() -> Self {
        DistSection { backend: DistBackend::Auto, timeout_s: default_dist_timeout(), bucket_mb: default_bucket_mb(), overlap: true }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DistBackend {
    /// NCCL when training on CUDA, Gloo on CPU.
    #[default]
    Auto,
    Gloo,
    Nccl,
}

fn default_dist_timeout() -> f64 {
    600.0
}
fn default_bucket_mb() -> f64 {
    25.0
}

fn one() -> usize {
    1
}
fn default_log_period() -> usize {
    10
}

/// PySlowFast's precise BN: before evaluation, BN statistics are recomputed
/// over this many training batches with the final weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreciseBnSection {
    pub enabled: bool,
    pub num_batches: usize,
}

impl Default for PreciseBnSection {
    fn default() -> Self {
        PreciseBnSection { enabled: true, num_batches: 200 }
    }
}

/// Multi-view testing: `num_ensemble_views` clips evenly spaced in time,
/// each at `num_spatial_crops` crops, softmax averaged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestSection {
    #[serde(default = "default_views")]
    pub num_ensemble_views: usize,
    #[serde(default = "default_crops")]
    pub num_spatial_crops: usize,
    /// Short side is resized to this, then the crops are this square.
    #[serde(default = "default_test_crop")]
    pub crop_size: u32,
    #[serde(default = "default_test_batch")]
    pub batch_size: usize,
}

fn default_views() -> usize {
    10
}
fn default_crops() -> usize {
    3
}
fn default_test_crop() -> u32 {
    256
}
fn default_test_batch() -> usize {
    8
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoaderSection {
    /// Decoding threads.
    pub workers: usize,
    /// Batches decoded ahead of the training step.
    pub prefetch_batches: usize,
    /// Replacement samples tried for one unreadable video before the batch
    /// is given up.
    #[serde(default = "default_retries")]
    pub max_retries: usize,
}

fn default_retries() -> usize {
    10
}

impl Default for LoaderSection {
    fn default() -> Self {
        LoaderSection { workers: 4, prefetch_batches: 2, max_retries: default_retries() }
    }
}
