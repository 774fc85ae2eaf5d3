//! Multigrid training (Wu et al., "A Multigrid Method for Efficiently
//! Training Video Models", CVPR 2020), computed as PySlowFast does
//! (`slowfast/utils/multigrid.py`, `datasets/multigrid_helper.py`,
//! `datasets/kinetics.py`), so that a recipe trains on the same shapes, for
//! the same epochs, at the same LRs:
//!
//! - the **long cycle** trains on smaller clips (fewer frames, smaller crop)
//!   with a batch as much larger, changing shape at epoch boundaries along
//!   a schedule made from the LR steps, each shape with its own LR;
//! - the **short cycle** cycles the crop every iteration through two
//!   smaller sizes and the long cycle's own, again with larger batches;
//! - BN statistics are kept over `bn_base_size` clips whatever the batch:
//!   sub-batch BN for larger batches, sync-BN across processes for smaller.
//!
//! Python's `round` rounds halves to even; [`round`] does the same so
//! every shape and epoch matches PySlowFast's to the integer.

use serde::{Deserialize, Serialize};

pub use crate::data::loader::BatchShape;
use crate::recipe::multigrid::MultigridSection;
use crate::recipe::sections::{BnSection, LrPolicy, NormType, SolverSection};

/// Python 3's `round` (halves to even), which PySlowFast's shapes use.
fn round(x: f64) -> usize {
    x.round_ties_even().max(0.0) as usize
}

/// A long-cycle shape: batch relative to the default, fast-pathway frames, crop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseShape {
    pub batch_factor: usize,
    pub frames: usize,
    pub crop: usize,
}

/// One row of the long-cycle schedule: `shape` until epoch `end_epoch`
/// (exclusive), at LR step `step_index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LongCycleEntry {
    pub step_index: usize,
    pub shape: BaseShape,
    pub end_epoch: usize,
}

/// How BN takes its statistics during one epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BnPlan {
    Batchnorm,
    /// Over each of this many sub-batches.
    SubBatchnorm(usize),
    /// Over this many processes' batches together.
    SyncBatchnorm(usize),
}

/// The recipe's own `bn` section (what every epoch uses without a long cycle).
impl From<&BnSection> for BnPlan {
    fn from(bn: &BnSection) -> Self {
        match bn.norm_type {
            NormType::Batchnorm => BnPlan::Batchnorm,
            NormType::SyncBatchnorm => BnPlan::SyncBatchnorm(bn.num_sync_devices),
            NormType::SubBatchnorm => BnPlan::SubBatchnorm(bn.num_splits),
        }
    }
}

/// Everything about one training epoch that multigrid decides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochPlan {
    /// Row of the long-cycle schedule (none without a long cycle).
    pub long_cycle_index: Option<usize>,
    /// Clips per step over all processes at the long cycle's own crop.
    pub batch_size: usize,
    pub frames: usize,
    pub crop: u32,
    /// Each clip's sampling rate is drawn from this range, inclusive: fewer
    /// frames span the default clip's time (`LONG_CYCLE_SAMPLING_RATE`).
    pub sampling_rates: [usize; 2],
    pub bn: BnPlan,
    /// Batches in turn, per iteration (`ShortCycleBatchSampler`).
    pub cycle: Vec<BatchShape>,
}

/// The multigrid side of a recipe, resolved: the schedule and the solver
/// it rewrites. Built only from a recipe whose `multigrid` section is set.
#[derive(Debug, Clone, PartialEq)]
pub struct Multigrid {
    pub settings: MultigridSection,
    /// The recipe's own global batch, frames and crop (`DEFAULT_B/T/S`).
    pub default_batch: usize,
    pub default_frames: usize,
    pub default_crop: usize,
    sampling_rate: usize,
    jitter: [u32; 2],
    recipe_bn: BnPlan,
    /// `None` without a long cycle.
    pub schedule: Option<Vec<LongCycleEntry>>,
    /// The recipe's solver with steps, LRs and `max_epoch` rewritten.
    pub solver: SolverSection,
}

/// What multigrid takes from the rest of a recipe: its own shape and BN
/// (`DEFAULT_B/T/S`) and what the network allows.
#[derive(Debug, Clone)]
pub struct Defaults {
    /// Global batch.
    pub batch: usize,
    pub frames: usize,
    pub crop: u32,
    pub sampling_rate: usize,
    pub jitter: [u32; 2],
    /// The recipe's BN, kept without a long cycle.
    pub bn: BnPlan,
    pub alpha: usize,
    /// The network's total spatial stride: the smallest crop.
    pub min_crop: u32,
    pub head_pools_globally: bool,
}

impl Multigrid {
    /// The schedule of `m` over a recipe's `defaults` and `solver`, every
    /// shape checked. Errors name the key.
    pub fn new(m: &MultigridSection, defaults: &Defaults, solver: &SolverSection) -> Result<Multigrid, (String, String)> {
        let bad = |field: &str, why: String| Err((format!("multigrid.{field}"), why));
        if !m.long_cycle && !m.short_cycle {
            return bad("long_cycle", "turn on long_cycle, short_cycle or both (or leave the section out)".into());
        }
        if !(m.epoch_factor > 0.0) {
            return bad("epoch_factor", format!("must be positive, got {}", m.epoch_factor));
        }
        if m.long_cycle_factors.is_empty() || m.long_cycle_factors.iter().flatten().any(|&f| !(f > 0.0)) {
            return bad(
                "long_cycle_factors",
                format!("{:?}: needs at least one [frames, crop] pair of positive factors", m.long_cycle_factors),
            );
        }
        if m.short_cycle_factors.iter().any(|&f| !(f > 0.0)) {
            return bad("short_cycle_factors", format!("{:?}: both must be positive", m.short_cycle_factors));
        }
        for (field, v) in [("bn_base_size", m.bn_base_size), ("eval_freq", m.eval_freq)] {
            if v == 0 {
                return bad(field, "must be at least 1".into());
            }
        }
        if !(m.gamma > 0.0) {
            return bad("gamma", format!("must be positive, got {}", m.gamma));
        }
        let crop = defaults.crop;
        if m.default_s.is_some_and(|s| s != crop) {
            return bad("default_s", format!("{:?} differs from data.train_crop_size {crop}, which PySlowFast uses", m.default_s));
        }
        let mut mg = Multigrid {
            settings: m.clone(),
            default_batch: defaults.batch,
            default_frames: defaults.frames,
            default_crop: crop as usize,
            sampling_rate: defaults.sampling_rate,
            jitter: defaults.jitter,
            recipe_bn: defaults.bn,
            schedule: None,
            solver: solver.clone(),
        };
        if m.long_cycle {
            let LrPolicy::Steps { steps, .. } = &solver.lr_policy else {
                return bad(
                    "long_cycle",
                    "the long cycle gives each shape its own LR over the LR steps; use solver.lr_policy: steps".into(),
                );
            };
            if steps.len() < 2 {
                return bad("long_cycle", "the long cycle is made from the LR steps: name at least two".into());
            }
            if solver.max_epoch <= *steps.last().unwrap_or(&0) {
                return bad("long_cycle", "solver.max_epoch must be after the last LR step (the fine-tuning phase)".into());
            }
            let schedule = mg.long_cycle_schedule(steps, solver.max_epoch);
            let mut new_steps: Vec<usize> = std::iter::once(0).chain(schedule.iter().map(|e| e.end_epoch)).collect();
            let n = new_steps.len();
            // The fine-tuning phase starts halfway through the last row.
            new_steps[n - 1] = (new_steps[n - 2] + new_steps[n - 1]) / 2;
            let mut lrs: Vec<f64> = schedule.iter().map(|e| m.gamma.powf(e.step_index as f64) * e.shape.batch_factor as f64).collect();
            let last = lrs.len() - 1;
            lrs.insert(last, lrs[last.saturating_sub(1)]);
            mg.solver.max_epoch = schedule.last().map_or(0, |e| e.end_epoch);
            mg.solver.lr_policy = LrPolicy::Steps { steps: new_steps, lrs };
            mg.schedule = Some(schedule);
        } else {
            // Short cycle alone: the same schedule stretched by the factor.
            if let LrPolicy::Steps { steps, .. } = &mut mg.solver.lr_policy {
                for s in steps.iter_mut() {
                    *s = (*s as f64 * m.epoch_factor) as usize;
                }
            }
            mg.solver.max_epoch = (solver.max_epoch as f64 * m.epoch_factor) as usize;
        }
        if mg.solver.max_epoch == 0 {
            return bad("epoch_factor", "leaves no epoch to train".into());
        }
        mg.check_shapes(defaults)?;
        Ok(mg)
    }

    /// PySlowFast's `get_long_cycle_schedule`, step for step (the sums in
    /// the same order, so the rounding of the epochs is the same).
    fn long_cycle_schedule(&self, steps: &[usize], max_epoch: usize) -> Vec<LongCycleEntry> {
        let m = &self.settings;
        let (t0, s0) = (self.default_frames as f64, self.default_crop as f64);
        let default_size = t0 * s0 * s0;
        let default_iters = *steps.last().unwrap_or(&0) as f64;
        let mut avg_bs = Vec::new();
        let mut all_shapes: Vec<Vec<BaseShape>> = Vec::new();
        for &[tf, sf] in &m.long_cycle_factors {
            let base_t = round(t0 * tf);
            let base_s = round(s0 * sf);
            // The short-cycle crops stay unrounded here, as in PySlowFast.
            let mut spatial: Vec<(usize, f64)> = Vec::new();
            if m.short_cycle {
                spatial.push((base_t, s0 * m.short_cycle_factors[0]));
                spatial.push((base_t, s0 * m.short_cycle_factors[1]));
            }
            spatial.push((base_t, base_s as f64));
            let batch: Vec<usize> = spatial.iter().map(|&(t, s)| round(default_size / (t as f64 * s * s))).collect();
            avg_bs.push(batch.iter().map(|&b| b as f64).sum::<f64>() / batch.len() as f64);
            let last = BaseShape { batch_factor: batch[batch.len() - 1], frames: base_t, crop: base_s };
            all_shapes.push(vec![last]);
        }
        let total_bs: f64 = avg_bs.iter().sum();
        let mut total_iters = 0.0;
        let mut rows: Vec<(usize, BaseShape, f64)> = Vec::new();
        for step_index in 0..steps.len() - 1 {
            let step_epochs = (steps[step_index + 1] - steps[step_index]) as f64;
            for (i, shapes) in all_shapes.iter().enumerate() {
                let cur_epochs = step_epochs * avg_bs[i] / total_bs;
                total_iters += cur_epochs / avg_bs[i];
                rows.push((step_index, shapes[0], cur_epochs));
            }
        }
        let iter_saving = default_iters / total_iters;
        let final_step_epochs = (max_epoch - steps[steps.len() - 1]) as f64;
        // Fine-tuning saves as many iterations as the rest of training.
        let ft_epochs = final_step_epochs / iter_saving * avg_bs[avg_bs.len() - 1];
        // PySlowFast takes the last long-cycle shape's third short-cycle
        // entry (its own crop); without a short cycle that index does not
        // exist there (IndexError), and the shape meant is the same one.
        let last = all_shapes[all_shapes.len() - 1][0];
        rows.push((steps.len() - 1, last, ft_epochs));
        let total: f64 = rows.iter().map(|r| r.2).sum();
        let x = max_epoch as f64 * m.epoch_factor / total;
        let mut cumulative = 0.0;
        rows.into_iter()
            .map(|(step_index, shape, epochs)| {
                cumulative += epochs * x;
                LongCycleEntry { step_index, shape, end_epoch: round(cumulative) }
            })
            .collect()
    }

    /// The shapes the recipe would train on, checked before any work: every
    /// frame count a multiple of alpha, every crop at least the network's
    /// stride, every batch a whole number of BN splits (on one process;
    /// [`Multigrid::check_world`] checks the real world size).
    fn check_shapes(&self, defaults: &Defaults) -> Result<(), (String, String)> {
        let (alpha, stride) = (defaults.alpha, defaults.min_crop);
        let field = if self.schedule.is_some() { "multigrid.long_cycle_factors" } else { "multigrid.short_cycle_factors" };
        if !defaults.head_pools_globally {
            return Err(("model.head_pool".into(), "multigrid trains one network on every shape: the head must pool globally".into()));
        }
        for e in self.epochs_with_shapes() {
            let p = self.epoch_plan(e, 1).map_err(|why| (field.to_string(), why))?;
            if p.frames == 0 || p.frames % alpha != 0 {
                return Err((
                    "multigrid.long_cycle_factors".into(),
                    format!("epoch {}: {} frames are not a positive multiple of alpha {alpha}", e + 1, p.frames),
                ));
            }
            for b in &p.cycle {
                if b.crop < stride {
                    let f = if b.crop == p.crop { "multigrid.long_cycle_factors" } else { "multigrid.short_cycle_factors" };
                    return Err((f.into(), format!("epoch {}: crop {} is below the network stride {stride}", e + 1, b.crop)));
                }
            }
        }
        self.check_world(1).map_err(|why| ("multigrid.bn_base_size".to_string(), why))
    }

    /// One epoch of each long-cycle row (all epochs share one shape without).
    fn epochs_with_shapes(&self) -> Vec<usize> {
        match &self.schedule {
            Some(s) => {
                let mut start = 0;
                s.iter()
                    .filter_map(|e| {
                        let first = start;
                        start = start.max(e.end_epoch);
                        (e.end_epoch > first).then_some(first)
                    })
                    .collect()
            }
            None => vec![0],
        }
    }

    /// Checks that need the number of processes: every shape's batch splits
    /// evenly over them, then into whole BN splits or sync groups.
    pub fn check_world(&self, world: usize) -> Result<(), String> {
        for e in self.epochs_with_shapes() {
            let p = self.epoch_plan(e, world)?;
            let per = p.batch_size / world;
            match p.bn {
                BnPlan::SubBatchnorm(k) if k == 0 || !per.is_multiple_of(k) => {
                    return Err(format!(
                        "epoch {}: {per} clips per process (batch {} over {world}) are not a whole number of {k} BN splits",
                        e + 1,
                        p.batch_size
                    ));
                }
                BnPlan::SyncBatchnorm(k) if world > 1 && (k > world || !world.is_multiple_of(k)) => {
                    return Err(format!(
                        "epoch {}: {per} clips per process need BN synced over {k} processes, which do not tile the {world}",
                        e + 1
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The row of the long-cycle schedule epoch `epoch` (0-based) is in
    /// (`get_current_long_cycle_shape`).
    pub fn long_cycle_index(&self, epoch: usize) -> Option<usize> {
        let s = self.schedule.as_ref()?;
        Some(s.iter().position(|e| epoch < e.end_epoch).unwrap_or(s.len() - 1))
    }

    /// What epoch `epoch` (0-based) trains on with `world` processes.
    pub fn epoch_plan(&self, epoch: usize, world: usize) -> Result<EpochPlan, String> {
        let world = world.max(1);
        let index = self.long_cycle_index(epoch);
        let (batch_size, frames, crop) = match (index, &self.schedule) {
            (Some(i), Some(s)) => {
                let shape = s[i].shape;
                (shape.batch_factor * self.default_batch, shape.frames, shape.crop)
            }
            _ => (self.default_batch, self.default_frames, self.default_crop),
        };
        if batch_size % world != 0 {
            return Err(format!("epoch {}: the global batch {batch_size} does not split evenly over {world} processes", epoch + 1));
        }
        let per = batch_size / world;
        let (bn, sampling_rates) = if index.is_some() {
            (self.bn_for(per), [self.sampling_rate, self.sampling_rate * (self.default_frames / frames.max(1))])
        } else {
            (self.recipe_bn, [self.sampling_rate; 2])
        };
        let s0 = self.default_crop as f64;
        // Smaller crops come from proportionally smaller frames
        // (kinetics.py): a larger span of the same sampling grid.
        let jitter = |c: usize| [round(self.jitter[0] as f64 * c as f64 / s0) as u32, self.jitter[1]];
        let mut cycle = Vec::new();
        if self.settings.short_cycle {
            for f in self.settings.short_cycle_factors {
                let factor = round((crop as f64 / (f * s0)).powi(2));
                let c = round(f * s0);
                cycle.push(BatchShape { batch_size: per * factor, crop: c as u32, jitter: jitter(c) });
            }
        }
        cycle.push(BatchShape { batch_size: per, crop: crop as u32, jitter: jitter(crop) });
        Ok(EpochPlan { long_cycle_index: index, batch_size, frames, crop: crop as u32, sampling_rates, bn, cycle })
    }

    /// BN for `per` clips per process (`update_long_cycle`): statistics over
    /// `bn_base_size` clips, in sub-batches or synced across processes.
    pub fn bn_for(&self, per: usize) -> BnPlan {
        let factor = per as f64 / self.settings.bn_base_size as f64;
        if factor < 1.0 {
            BnPlan::SyncBatchnorm((1.0 / factor) as usize)
        } else if factor > 1.0 {
            BnPlan::SubBatchnorm(factor as usize)
        } else {
            BnPlan::Batchnorm
        }
    }

    /// PySlowFast's multigrid rule for validations and checkpoints:
    /// `eval_freq` times per long-cycle row, the last epoch of each row
    /// among them (so every shape change follows a checkpoint), and the last
    /// epoch. `None` without a long cycle: the recipe's periods apply.
    pub fn is_eval_epoch(&self, epoch: usize) -> Option<bool> {
        let schedule = self.schedule.as_ref()?;
        if epoch + 1 == self.solver.max_epoch {
            return Some(true);
        }
        let mut prev = 0;
        for e in schedule {
            if epoch < e.end_epoch {
                let period = ((e.end_epoch - prev) / self.settings.eval_freq + 1).max(1);
                return Some((e.end_epoch - 1 - epoch).is_multiple_of(period));
            }
            prev = e.end_epoch;
        }
        None
    }

    /// The schedule as a table, one row per long-cycle shape: what `trainer
    /// info --config` prints and `trainer train` logs before starting.
    /// `lr_at(solver, epoch)` is the trainer's LR schedule; BN is given for
    /// `world` processes.
    pub fn table(&self, world: usize, lr_at: impl Fn(&SolverSection, f64) -> f64) -> String {
        let mut out = String::new();
        let Some(schedule) = &self.schedule else {
            out.push_str(&format!(
                "multigrid: short cycle only, {} epochs (epoch factor {})\n",
                self.solver.max_epoch, self.settings.epoch_factor
            ));
            return out;
        };
        // The steps' LR, without warm-up (which ends at epoch `warmup_epochs`).
        let steps_only = SolverSection { warmup_epochs: 0.0, ..self.solver.clone() };
        out.push_str("multigrid long cycle (global batch x frames x crop; LR of the row without warm-up)\n");
        let bn_title = format!("BN ({world} process{})", if world == 1 { "" } else { "es" });
        out.push_str(&format!("{:>5}  {:>4}  {:>18}  {:>9}  {:>10}  {bn_title}\n", "index", "step", "shape", "epochs", "LR"));
        let mut start = 0;
        for (i, e) in schedule.iter().enumerate() {
            let shape = format!("{} x {} x {}", e.shape.batch_factor * self.default_batch, e.shape.frames, e.shape.crop);
            let lr = lr_at(&steps_only, start as f64);
            let bn = match self.bn_for(e.shape.batch_factor * self.default_batch / world.max(1)) {
                BnPlan::SubBatchnorm(k) => format!("{k} splits"),
                BnPlan::SyncBatchnorm(k) => format!("synced over {k}"),
                BnPlan::Batchnorm => "whole batch".into(),
            };
            // A row can round to no epochs at all (PySlowFast keeps it).
            let epochs = if e.end_epoch > start { format!("{}-{}", start + 1, e.end_epoch) } else { "none".into() };
            out.push_str(&format!("{i:>5}  {:>4}  {shape:>18}  {epochs:>9}  {lr:>10.6}  {bn}\n", e.step_index));
            start = start.max(e.end_epoch);
        }
        out.push_str(&format!(
            "{} epochs (epoch factor {}); BN statistics over {} clips; warm-up to epoch {}\n",
            self.solver.max_epoch, self.settings.epoch_factor, self.settings.bn_base_size, self.solver.warmup_epochs
        ));
        out
    }
}
