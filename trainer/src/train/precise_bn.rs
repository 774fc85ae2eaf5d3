//! Precise BN (Wu & Johnson 2021, PySlowFast's `update_bn_stats`): the
//! running statistics, an exponential average over weights that kept
//! changing, are replaced by the plain average of per-batch statistics
//! under the final weights.

use std::collections::BTreeMap;

use tch::{Tensor, nn};

use crate::data::{EpochLayout, Loader, loader::LoaderError};
use crate::model::SlowFast;

/// Recomputes every BN layer's running mean and variance over up to
/// `num_batches` batches of epoch `epoch_key` of `loader` in `layout`;
/// returns the batches used. In sub-batch BN these are the splits'
/// statistics (merge them afterwards, as PySlowFast does).
/// `num_batches_tracked` is left as training made it.
pub fn update_bn_stats(
    model: &SlowFast,
    loader: &Loader,
    layout: &EpochLayout,
    epoch_key: u64,
    num_batches: usize,
) -> Result<usize, LoaderError> {
    let bns = model.batch_norms();
    let layers: Vec<(Tensor, Tensor)> = bns.iter().map(|bn| bn.training_stats()).collect();
    let counters: Vec<(Tensor, Tensor)> =
        bns.iter().map(|bn| (bn.num_batches_tracked.shallow_clone(), bn.num_batches_tracked.copy())).collect();
    let momentum = model.config.bn_momentum;
    let mut sums: Vec<(Tensor, Tensor)> = layers.iter().map(|(m, v)| (m.zeros_like(), v.zeros_like())).collect();
    let device = layers.first().map(|(m, _)| m.device()).unwrap_or(tch::Device::Cpu);
    let mut used = 0usize;
    for batch in loader.epoch_with(epoch_key, layout).take(num_batches) {
        let batch = batch?;
        tch::no_grad(|| -> Result<(), LoaderError> {
            for (m, v) in &layers {
                let (mut m, mut v) = (m.shallow_clone(), v.shallow_clone());
                let _ = m.zero_();
                let _ = v.zero_();
            }
            // From zero, one update leaves momentum x the batch statistic.
            let _ = model.forward_t(&batch.slow.to_device(device), &batch.fast.to_device(device), true);
            for ((m, v), (sm, sv)) in layers.iter().zip(sums.iter_mut()) {
                let _ = sm.g_add_(&(m / momentum));
                let _ = sv.g_add_(&(v / momentum));
            }
            Ok(())
        })?;
        used += 1;
    }
    if used > 0 {
        tch::no_grad(|| {
            for ((m, v), (sm, sv)) in layers.iter().zip(sums.iter()) {
                let (mut m, mut v) = (m.shallow_clone(), v.shallow_clone());
                m.copy_(&(sm / used as f64));
                v.copy_(&(sv / used as f64));
            }
            for (t, saved) in &counters {
                let mut t = t.shallow_clone();
                t.copy_(saved);
            }
        });
    }
    Ok(used)
}

/// Every BN layer's running mean and variance (shallow), in name order:
/// what data-parallel ranks average after their own precise-BN passes.
pub fn running_stats(vs: &nn::VarStore) -> Vec<Tensor> {
    let vars: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
    vars.into_iter().filter(|(n, _)| n.ends_with(".running_mean") || n.ends_with(".running_var")).map(|(_, t)| t).collect()
}
