//! One optimisation step: forward (under autocast when the recipe asks),
//! loss, backward with the gradients averaged over the ranks (DDP's Reducer
//! during backward, or one all-reduce after it), loss scaling, clipping and
//! the update.

use anyhow::bail;
use tch::{Device, Kind, Tensor};

use super::amp::LossScaler;
use super::optim::Optimizer;
use super::{DROPOUT_STREAM, loss_fn};
use crate::data::Batch;
use crate::data::rng::Rng;
use crate::dist::Dist;
use crate::dist::ffi::{AutocastDtype, Reducer, autocast};
use crate::model::SlowFast;
use crate::recipe::{MixedPrecision, Recipe};

/// One optimisation step and what it needs across steps.
pub(super) struct Step<'a> {
    pub recipe: &'a Recipe,
    pub model: &'a SlowFast,
    pub optimizer: &'a mut Optimizer,
    pub reducer: Option<&'a mut Reducer>,
    pub scaler: Option<&'a mut LossScaler>,
    pub dist: Option<&'a Dist>,
    pub device: Device,
}

impl Step<'_> {
    /// Forward, backward (gradients averaged over the ranks), clipping and
    /// the update at `lr`; returns the loss and the error rate, averaged
    /// over the ranks.
    pub fn run(&mut self, batch: &Batch, global_iter: u64, lr: f64) -> anyhow::Result<(f64, f64)> {
        let (recipe, dist) = (self.recipe, self.dist);
        let explain = |what: &str, e: &dyn std::fmt::Display| -> anyhow::Error {
            match dist {
                Some(d) => d.explain(global_iter, what, e).into(),
                None => anyhow::anyhow!("{what}: {e}"),
            }
        };
        if let Some(r) = self.reducer.as_deref_mut() {
            r.prepare().map_err(|e| explain("preparing DDP's buckets", &e))?;
        }
        // Dropout draws from a stream fixed by the step number, so a resumed
        // run drops the same units.
        tch::manual_seed((Rng::at(recipe.seed, &[DROPOUT_STREAM, global_iter]).next_u64() >> 1) as i64);
        let labels = batch.labels.to_device(self.device);
        let (slow, fast) = (batch.slow.to_device(self.device), batch.fast.to_device(self.device));
        let forward = || self.model.forward_t(&slow, &fast, true);
        let logits = match recipe.train.mixed_precision {
            MixedPrecision::Off => forward(),
            MixedPrecision::Fp16 => autocast(self.device, AutocastDtype::Float16, forward)?,
            MixedPrecision::Bf16 => autocast(self.device, AutocastDtype::BFloat16, forward)?,
        }
        .map_err(|e| explain("the forward pass", &e))?
        .to_kind(Kind::Float);
        let loss = loss_fn(&logits, &labels, recipe.solver.label_smoothing);
        self.optimizer.zero_grad();
        let scaled = match self.scaler.as_deref() {
            Some(s) => &loss * s.scale,
            None => loss.shallow_clone(),
        };
        scaled.f_backward().map_err(|e| explain("backward (gradient all-reduce)", &e))?;
        if let (Some(d), None) = (self.dist, self.reducer.as_deref()) {
            all_reduce_flat(d, &self.optimizer.grads()).map_err(|e| explain("the gradient all-reduce", &e))?;
        }
        let wrong = logits.argmax(1, false).ne_tensor(&labels).to_kind(Kind::Float).mean(Kind::Float).double_value(&[]);
        let mut stats = [loss.double_value(&[]), wrong];
        if let Some(d) = self.dist {
            d.sum_f64(&mut stats).map_err(|e| explain("summing the loss", &e))?;
            stats = stats.map(|v| v / d.world() as f64);
        }
        let finite = match self.scaler.as_deref() {
            Some(s) => s.unscale(&self.optimizer.grads()),
            None => {
                if !stats[0].is_finite() {
                    bail!("the loss is {}; lower solver.base_lr or set solver.clip_grad_norm", stats[0]);
                }
                true
            }
        };
        if finite {
            if let Some(max) = recipe.solver.clip_grad_norm {
                self.optimizer.clip_grad_norm(max);
            }
            self.optimizer.step(lr);
        }
        if let Some(s) = self.scaler.as_deref_mut() {
            s.update(!finite);
        }
        Ok((stats[0], stats[1]))
    }
}

/// Gradients averaged over the ranks after backward, in one flat
/// all-reduce: the `dist.overlap: false` path, which the benchmark holds
/// against DDP's Reducer.
pub fn all_reduce_flat(d: &Dist, grads: &[Tensor]) -> Result<(), crate::dist::C10dError> {
    if grads.is_empty() {
        return Ok(());
    }
    tch::no_grad(|| {
        let flat = Tensor::cat(&grads.iter().map(|g| g.view(-1)).collect::<Vec<_>>(), 0).to_device(d.device);
        d.group.all_reduce_sum(&[&flat])?;
        let flat = flat.to_device(grads[0].device()) / d.world() as f64;
        let mut offset = 0;
        for g in grads {
            let n = g.numel() as i64;
            let mut g = g.shallow_clone();
            g.copy_(&flat.narrow(0, offset, n).view_as(&g));
            offset += n;
        }
        Ok(())
    })
}
