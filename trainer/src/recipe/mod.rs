//! Training and evaluation recipes as YAML data: one file says everything a
//! run needs (model, data, augmentation, solver, evaluation, loader), in
//! PySlowFast's vocabulary but snake_case. Unknown keys and wrong types are
//! refused by the parser (with the key and its line); values that parse but
//! cannot work together are refused by [`Recipe::validate`] before any work.

mod model;
pub(crate) mod multigrid;
pub(crate) mod sections;

use std::path::{Path, PathBuf};

pub use model::ModelSection;
pub use multigrid::MultigridSection;
pub use sections::{
    BnSection, DataSection, Dataset, DeviceChoice, DistBackend, DistSection, ListFormat, ListsDataset, LoaderSection, LrPolicy,
    MixedPrecision, NormType, OptimizingMethod, PreciseBnSection, SolverSection, SyntheticDataset, TestSection, TrainSection,
};

use serde::{Deserialize, Serialize};

use crate::model::ModelConfig;

#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    #[error("{path}: cannot read the recipe: {why}")]
    Read { path: PathBuf, why: String },
    #[error("{path}: {why}")]
    Parse { path: PathBuf, why: String },
    #[error("{path}: `{field}`: {why}")]
    Invalid { path: PathBuf, field: String, why: String },
}

/// One run: everything `trainer train` and `trainer test` read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// Free text, copied into logs and checkpoints.
    #[serde(default)]
    pub name: String,
    /// Seeds weights, data order, augmentation and dropout.
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub device: DeviceChoice,
    /// libtorch intra-op threads on CPU (0: libtorch's default).
    #[serde(default)]
    pub threads: i32,
    pub model: ModelSection,
    pub data: DataSection,
    pub solver: SolverSection,
    pub train: TrainSection,
    #[serde(default)]
    pub precise_bn: PreciseBnSection,
    pub test: TestSection,
    #[serde(default)]
    pub loader: LoaderSection,
    #[serde(default)]
    pub bn: BnSection,
    #[serde(default)]
    pub dist: DistSection,
    /// Multigrid training; absent: the normal schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multigrid: Option<MultigridSection>,
    /// The file the recipe was read from, for messages.
    #[serde(skip)]
    pub source: PathBuf,
}

impl Recipe {
    /// Reads, parses and validates a recipe file.
    pub fn load(path: &Path) -> Result<Self, RecipeError> {
        let text = std::fs::read_to_string(path).map_err(|e| RecipeError::Read { path: path.to_path_buf(), why: e.to_string() })?;
        Self::parse(&text, path)
    }

    /// Parses recipe text; `path` only names the source in errors and
    /// anchors relative data paths.
    pub fn parse(text: &str, path: &Path) -> Result<Self, RecipeError> {
        let mut recipe: Recipe =
            serde_saphyr::from_str(text).map_err(|e| RecipeError::Parse { path: path.to_path_buf(), why: e.to_string() })?;
        recipe.source = path.to_path_buf();
        recipe.resolve_paths(path.parent().unwrap_or(Path::new(".")));
        recipe.validate().map_err(|(field, why)| RecipeError::Invalid { path: path.to_path_buf(), field, why })?;
        Ok(recipe)
    }

    /// Data paths in a recipe are relative to the recipe's folder, so a
    /// recipe works from any working directory.
    fn resolve_paths(&mut self, base: &Path) {
        if let Dataset::Lists(l) = &mut self.data.dataset {
            for p in [&mut l.train, &mut l.val, &mut l.test].into_iter().flatten() {
                if p.is_relative() {
                    *p = base.join(&*p);
                }
            }
            if let Some(root) = &mut l.root
                && root.is_relative()
            {
                *root = base.join(&*root);
            }
        }
    }

    /// The network this recipe trains.
    pub fn model_config(&self) -> Result<ModelConfig, (String, String)> {
        self.model.resolve()
    }

    /// Global batch over the base LR's reference batch: PySlowFast's linear
    /// scaling rule.
    pub fn lr_scale(&self) -> f64 {
        self.train.batch_size as f64 / self.solver.reference_batch_size as f64
    }

    /// The multigrid schedule, when the recipe has one (validated at load).
    pub fn multigrid(&self) -> Option<crate::multigrid::Multigrid> {
        self.multigrid_checked().ok().flatten()
    }

    /// The multigrid schedule built from this recipe's shape, BN, solver
    /// and network; errors name the key.
    fn multigrid_checked(&self) -> Result<Option<crate::multigrid::Multigrid>, (String, String)> {
        use crate::multigrid::{BnPlan, Defaults, Multigrid};
        let Some(m) = &self.multigrid else { return Ok(None) };
        let model = self.model_config()?;
        let bn = BnPlan::from(&self.bn);
        let defaults = Defaults {
            batch: self.train.batch_size,
            frames: self.data.num_frames,
            crop: self.data.train_crop_size,
            sampling_rate: self.data.sampling_rate,
            jitter: self.data.train_jitter_scales,
            bn,
            alpha: model.alpha as usize,
            min_crop: model.spatial_stride() as u32,
            head_pools_globally: model.head_pool == crate::model::HeadPool::Global,
        };
        Multigrid::new(m, &defaults, &self.solver).map(Some)
    }

    /// The solver training follows: the recipe's, or multigrid's rewrite
    /// of it (LR steps per shape, more epochs).
    pub fn training_solver(&self) -> SolverSection {
        self.multigrid().map_or_else(|| self.solver.clone(), |m| m.solver)
    }

    /// Checks that need the world size, made before any work: the global
    /// batches split evenly over the processes, and sync-BN groups tile them.
    pub fn check_world(&self, world: usize) -> Result<(), RecipeError> {
        let err = |field: &str, why: String| RecipeError::Invalid { path: self.source.clone(), field: field.into(), why };
        for (field, b) in [("train.batch_size", self.train.batch_size), ("test.batch_size", self.test.batch_size)] {
            if b % world != 0 {
                return Err(err(field, format!("{b} is the global batch and must split evenly over the {world} processes")));
            }
        }
        // A run on fewer processes than one group syncs over all of them.
        let k = self.bn.num_sync_devices.min(world);
        if self.bn.norm_type == NormType::SyncBatchnorm && !world.is_multiple_of(k) {
            return Err(err("bn.num_sync_devices", format!("{k} does not divide the {world} processes into whole groups")));
        }
        self.check_splits(world).map_err(|why| err("bn.num_splits", why))?;
        if let Some(mg) = self.multigrid() {
            mg.check_world(world).map_err(|why| err("multigrid", why))?;
        }
        Ok(())
    }

    /// Sub-batch BN without multigrid (which checks every shape itself):
    /// each process's batch is a whole number of splits.
    fn check_splits(&self, world: usize) -> Result<(), String> {
        let per = self.train.batch_size / world.max(1);
        if self.bn.norm_type == NormType::SubBatchnorm && self.multigrid.is_none() && !per.is_multiple_of(self.bn.num_splits) {
            return Err(format!("{per} clips per process are not a whole number of {} splits", self.bn.num_splits));
        }
        Ok(())
    }

    /// The data files the recipe names exist (checked when a run starts,
    /// so recipes can be read and compared on machines without the data).
    pub fn check_files(&self) -> Result<(), RecipeError> {
        let Dataset::Lists(l) = &self.data.dataset else { return Ok(()) };
        let err = |field: &str, why: String| RecipeError::Invalid { path: self.source.clone(), field: field.into(), why };
        for (field, p) in [("train", &l.train), ("val", &l.val), ("test", &l.test)] {
            if let Some(p) = p
                && !p.is_file()
            {
                return Err(err(&format!("data.dataset.lists.{field}"), format!("{}: no such file", p.display())));
            }
        }
        if let Some(root) = &l.root
            && !root.is_dir()
        {
            return Err(err("data.dataset.lists.root", format!("{}: no such folder", root.display())));
        }
        Ok(())
    }

    /// Cross-field checks, each failure naming the dotted key.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let model = self.model_config()?;
        let bad = |field: &str, why: String| Err((field.to_string(), why));
        let d = &self.data;
        if d.num_frames == 0 || !d.num_frames.is_multiple_of(model.alpha as usize) {
            return bad("data.num_frames", format!("{} must be a positive multiple of model alpha {}", d.num_frames, model.alpha));
        }
        if d.sampling_rate == 0 {
            return bad("data.sampling_rate", "must be at least 1".into());
        }
        if !(d.target_fps > 0.0) {
            return bad("data.target_fps", format!("must be positive, got {}", d.target_fps));
        }
        let [lo, hi] = d.train_jitter_scales;
        if lo == 0 || lo > hi {
            return bad("data.train_jitter_scales", format!("[{lo}, {hi}] must be positive and ascending"));
        }
        let min_size = model.spatial_stride() as u32;
        if d.train_crop_size < min_size || d.train_crop_size > lo {
            return bad(
                "data.train_crop_size",
                format!("{} must be between the network stride {min_size} and the smallest jitter scale {lo}", d.train_crop_size),
            );
        }
        if self.test.crop_size < min_size {
            return bad("test.crop_size", format!("{} is below the network stride {min_size}", self.test.crop_size));
        }
        if d.std.iter().any(|&s| !(s > 0.0)) {
            return bad("data.std", format!("{:?}: every entry must be positive", d.std));
        }
        match &d.dataset {
            Dataset::Lists(l) => {
                if l.train.is_none() && l.test.is_none() {
                    return bad("data.dataset.lists", "name a train list, a test list or both".into());
                }
            }
            Dataset::Synthetic(s) => {
                if s.train == 0 {
                    return bad("data.dataset.synthetic.train", "must be at least 1".into());
                }
                if s.size < lo {
                    return bad(
                        "data.dataset.synthetic.size",
                        format!("{} px clips are smaller than the smallest jitter scale {lo}", s.size),
                    );
                }
                if model.num_classes as usize != crate::synth::CLASSES.len() {
                    return bad(
                        "model.num_classes",
                        format!("the synthetic set has {} classes, the model {}", crate::synth::CLASSES.len(), model.num_classes),
                    );
                }
            }
        }
        let s = &self.solver;
        for (field, v) in [("solver.base_lr", s.base_lr), ("solver.max_epoch", s.max_epoch as f64)] {
            if !(v > 0.0) {
                return bad(field, format!("must be positive, got {v}"));
            }
        }
        for (field, v) in [
            ("solver.momentum", s.momentum),
            ("solver.dampening", s.dampening),
            ("solver.weight_decay", s.weight_decay),
            ("solver.warmup_start_lr", s.warmup_start_lr),
            ("solver.cosine_end_lr", s.cosine_end_lr),
            ("solver.warmup_epochs", s.warmup_epochs),
        ] {
            if !(v >= 0.0) {
                return bad(field, format!("must be zero or positive, got {v}"));
            }
        }
        if !s.betas.iter().all(|b| (0.0..1.0).contains(b)) {
            return bad("solver.betas", format!("both must be in [0, 1), got {:?}", s.betas));
        }
        if !(s.eps > 0.0) {
            return bad("solver.eps", format!("must be positive, got {}", s.eps));
        }
        if s.optimizing_method == OptimizingMethod::Sgd && s.nesterov && (s.momentum <= 0.0 || s.dampening != 0.0) {
            return bad("solver.nesterov", "Nesterov momentum needs momentum > 0 and dampening 0".into());
        }
        if s.warmup_epochs > s.max_epoch as f64 {
            return bad("solver.warmup_epochs", format!("{} is beyond max_epoch {}", s.warmup_epochs, s.max_epoch));
        }
        if let LrPolicy::Steps { steps, lrs } = &s.lr_policy
            && (steps.len() != lrs.len() || steps.first() != Some(&0) || steps.windows(2).any(|w| w[0] >= w[1]))
        {
            return bad("solver.lr_policy.steps", "needs ascending epochs starting at 0 and one relative LR per step".into());
        }
        if !(0.0..1.0).contains(&s.label_smoothing) {
            return bad("solver.label_smoothing", format!("must be in [0, 1), got {}", s.label_smoothing));
        }
        if let Some(c) = s.clip_grad_norm
            && !(c > 0.0)
        {
            return bad("solver.clip_grad_norm", format!("must be positive, got {c}"));
        }
        if s.reference_batch_size == 0 {
            return bad("solver.reference_batch_size", "must be at least 1".into());
        }
        let t = &self.train;
        for (field, v) in [
            ("train.batch_size", t.batch_size),
            ("train.checkpoint_period", t.checkpoint_period),
            ("train.eval_period", t.eval_period),
            ("train.log_period", t.log_period),
            ("test.batch_size", self.test.batch_size),
            ("test.num_ensemble_views", self.test.num_ensemble_views),
            ("test.num_spatial_crops", self.test.num_spatial_crops),
            ("loader.workers", self.loader.workers),
            ("loader.prefetch_batches", self.loader.prefetch_batches),
        ] {
            if v == 0 {
                return bad(field, "must be at least 1".into());
            }
        }
        if !matches!(self.test.num_spatial_crops, 1 | 3) {
            return bad(
                "test.num_spatial_crops",
                format!("{}: use 1 (centre) or 3 (PySlowFast's left/centre/right)", self.test.num_spatial_crops),
            );
        }
        for (field, v) in [("bn.num_sync_devices", self.bn.num_sync_devices), ("bn.num_splits", self.bn.num_splits)] {
            if v == 0 {
                return bad(field, "must be at least 1".into());
            }
        }
        if let Err(why) = self.check_splits(1) {
            return bad("bn.num_splits", why);
        }
        self.multigrid_checked()?;
        if !(self.dist.timeout_s > 0.0) {
            return bad("dist.timeout_s", format!("must be positive, got {}", self.dist.timeout_s));
        }
        if !(self.dist.bucket_mb > 0.0) {
            return bad("dist.bucket_mb", format!("must be positive, got {}", self.dist.bucket_mb));
        }
        if self.train.mixed_precision == MixedPrecision::Fp16 && self.device == DeviceChoice::Cpu {
            return bad("train.mixed_precision", "fp16 autocast needs CUDA; use bf16 on CPU".into());
        }
        if self.precise_bn.enabled && self.precise_bn.num_batches == 0 {
            return bad("precise_bn.num_batches", "must be at least 1 when precise BN is enabled".into());
        }
        if let DeviceChoice::Cuda(i) = self.device
            && i < 0
        {
            return bad("device", format!("cuda index {i} is negative"));
        }
        Ok(())
    }
}
