//! What each epoch trains on: the recipe's one shape, or the shapes, batch
//! layouts and BN of a multigrid schedule. The training loop asks for an
//! epoch's [`EpochShapes`] and applies its BN to the model when it changes.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::data::{EpochLayout, Loader};
use crate::dist::{Dist, Group};
use crate::model::SlowFast;
use crate::model::layers::{NormMode, SyncBn};
use crate::multigrid::{BnPlan, Multigrid};
use crate::recipe::{NormType, Recipe};

/// Where in a multigrid schedule a checkpoint was written: compared on
/// resume, so a changed recipe cannot continue on other shapes silently.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchedulePosition {
    pub long_cycle_index: Option<usize>,
    pub batch_size: usize,
    pub frames: usize,
    pub crop: u32,
    pub bn: BnPlan,
    pub max_epoch: usize,
}

/// One epoch's shapes as the loop uses them.
#[derive(Debug, Clone)]
pub struct EpochShapes {
    pub layout: EpochLayout,
    pub bn: BnPlan,
    /// Clips per step over all processes at the long-cycle crop.
    pub batch_size: usize,
    pub crop: u32,
    pub position: Option<SchedulePosition>,
}

impl EpochShapes {
    /// The layout precise BN reads: the epoch's shape without the short
    /// cycle (PySlowFast's precise-BN loader).
    pub fn precise_bn_layout(&self) -> EpochLayout {
        let last = self.layout.cycle.last().copied();
        EpochLayout { cycle: last.into_iter().collect(), ..self.layout.clone() }
    }

    /// One line for logs: `batch 64 x 8 frames x 158 px, BN in 2 splits`.
    pub fn describe(&self) -> String {
        let bn = match self.bn {
            BnPlan::Batchnorm => "BN over each process's batch".to_string(),
            BnPlan::SubBatchnorm(k) => format!("BN in {k} sub-batches"),
            BnPlan::SyncBatchnorm(k) => format!("BN synced over {k} processes"),
        };
        let short: Vec<String> = self.layout.cycle.iter().map(|b| format!("{}@{}", b.batch_size, b.crop)).collect();
        format!(
            "batch {} x {} frames x {} px (per process, clips@crop per iteration: {}), sampling rate {}-{}, {bn}",
            self.batch_size,
            self.layout.frames,
            self.crop,
            short.join(" "),
            self.layout.sampling_rates[0],
            self.layout.sampling_rates[1]
        )
    }
}

/// The recipe's shapes for every epoch, and the sync-BN groups they need
/// (formed once, at the start, in the same order on every rank).
pub struct Shapes<'a> {
    recipe: &'a Recipe,
    pub multigrid: Option<Multigrid>,
    world: usize,
    groups: BTreeMap<usize, Option<Arc<Group>>>,
}

impl<'a> Shapes<'a> {
    pub fn new(recipe: &'a Recipe, dist: Option<&Dist>) -> anyhow::Result<Self> {
        let world = dist.map_or(1, |d| d.world());
        let multigrid = recipe.multigrid();
        let mut sizes: Vec<usize> = Vec::new();
        if recipe.bn.norm_type == NormType::SyncBatchnorm {
            sizes.push(recipe.bn.num_sync_devices);
        }
        if let Some(mg) = &multigrid {
            for e in 0..mg.solver.max_epoch {
                if let Ok(p) = mg.epoch_plan(e, world)
                    && let BnPlan::SyncBatchnorm(k) = p.bn
                {
                    sizes.push(k);
                }
            }
        }
        sizes.sort();
        sizes.dedup();
        let mut groups = BTreeMap::new();
        for k in sizes {
            let group = match dist {
                Some(d) => Some(d.subgroup(k.min(world), d.group.backend)?),
                None => None,
            };
            groups.insert(k, group);
        }
        Ok(Shapes { recipe, multigrid, world, groups })
    }

    pub fn max_epoch(&self) -> usize {
        self.multigrid.as_ref().map_or(self.recipe.solver.max_epoch, |m| m.solver.max_epoch)
    }

    /// Epoch `epoch` (0-based) of training with `loader`.
    pub fn epoch(&self, epoch: usize, loader: &Loader) -> anyhow::Result<EpochShapes> {
        let Some(mg) = &self.multigrid else {
            let o = loader.options();
            let bn = BnPlan::from(&self.recipe.bn);
            return Ok(EpochShapes { layout: loader.layout(), bn, batch_size: self.recipe.train.batch_size, crop: o.crop, position: None });
        };
        let p = mg.epoch_plan(epoch, self.world).map_err(anyhow::Error::msg)?;
        let position = SchedulePosition {
            long_cycle_index: p.long_cycle_index,
            batch_size: p.batch_size,
            frames: p.frames,
            crop: p.crop,
            bn: p.bn,
            max_epoch: mg.solver.max_epoch,
        };
        Ok(EpochShapes {
            layout: EpochLayout { frames: p.frames, sampling_rates: p.sampling_rates, cycle: p.cycle },
            bn: p.bn,
            batch_size: p.batch_size,
            crop: p.crop,
            position: Some(position),
        })
    }

    /// The recipe's own shape (`DEFAULT_B/T/S`) with the BN multigrid gives
    /// its batch: what precise BN runs on, since evaluation and export use
    /// the default shape whatever the epoch trained on.
    pub fn default_shape(&self, loader: &Loader) -> anyhow::Result<EpochShapes> {
        let mut shapes = self.epoch(0, loader)?;
        if let Some(mg) = &self.multigrid {
            shapes.layout = loader.layout();
            shapes.batch_size = self.recipe.train.batch_size;
            shapes.crop = loader.options().crop;
            shapes.position = None;
            if mg.schedule.is_some() {
                shapes.bn = mg.bn_for(self.recipe.train.batch_size / self.world.max(1));
            }
        }
        Ok(shapes)
    }

    /// Sets the model's BN for an epoch of `shapes`.
    pub fn apply_bn(&self, model: &SlowFast, shapes: &EpochShapes) {
        let mode = match shapes.bn {
            BnPlan::Batchnorm => NormMode::Batch,
            BnPlan::SubBatchnorm(k) => NormMode::Sub(k),
            // One process: its batch alone, as PySlowFast's sync-BN does
            // with a world of one.
            BnPlan::SyncBatchnorm(k) => match self.groups.get(&k) {
                Some(group) => NormMode::Sync(SyncBn { group: group.clone() }),
                None => NormMode::Batch,
            },
        };
        model.set_norm_mode(&mode);
    }

    /// Whether epoch `epoch` (0-based) ends with a validation and a
    /// checkpoint: multigrid's rule per long-cycle row, else the recipe's
    /// periods.
    pub fn eval_and_checkpoint(&self, epoch: usize) -> (bool, bool) {
        let last = epoch + 1 == self.max_epoch();
        if let Some(due) = self.multigrid.as_ref().and_then(|m| m.is_eval_epoch(epoch)) {
            return (due || last, due || last);
        }
        let t = &self.recipe.train;
        ((epoch + 1).is_multiple_of(t.eval_period) || last, (epoch + 1).is_multiple_of(t.checkpoint_period) || last)
    }
}
