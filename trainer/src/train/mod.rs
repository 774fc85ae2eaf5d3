//! The training loop: SGD with PySlowFast's schedule, per-iteration LR,
//! optional clipping and label smoothing, precise BN before validation,
//! checkpoints every few epochs, and automatic resume from the latest one.

pub mod checkpoint;
pub mod evaluate;
pub mod metrics;
pub mod precise_bn;
pub mod schedule;
pub mod setup;
pub mod optim;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use serde_json::json;
use tch::{Kind, Tensor, nn};

use crate::data::rng::Rng;
use crate::data::{Failure, Mode};
use crate::model::SlowFast;
use crate::recipe::Recipe;
use checkpoint::{TrainState, FORMAT};
use metrics::{Metrics, Progress};
use setup::Which;
use optim::Optimizer;

/// What a finished run leaves behind.
#[derive(Debug)]
pub struct Summary {
    pub epochs: usize,
    pub resumed_from: Option<usize>,
    pub final_weights: PathBuf,
    pub val_top1: Option<f64>,
    pub skipped_videos: usize,
}

/// Keys of the counter-based random streams besides the loaders'.
const DROPOUT_STREAM: u64 = 1 << 40;
const PRECISE_BN_STREAM: u64 = 1 << 41;

/// Cross entropy on logits with label smoothing `eps` (uniform over classes).
pub fn loss_fn(logits: &Tensor, labels: &Tensor, eps: f64) -> Tensor {
    let logp = logits.log_softmax(-1, Kind::Float);
    let nll = -logp.gather(1, &labels.unsqueeze(1), false).squeeze_dim(1);
    if eps == 0.0 {
        return nll.mean(Kind::Float);
    }
    let smooth = -logp.mean_dim(-1, false, Kind::Float);
    (nll * (1.0 - eps) + smooth * eps).mean(Kind::Float)
}

/// Trains `recipe` into `out`, resuming from `out/checkpoints` when the
/// recipe allows and a checkpoint is there.
pub fn train(recipe: &Recipe, out: &Path) -> anyhow::Result<Summary> {
    let config = recipe.model_config().map_err(|(f, w)| anyhow::anyhow!("{f}: {w}"))?;
    recipe.check_files()?;
    let device = setup::device(recipe.device).map_err(anyhow::Error::msg)?;
    if recipe.threads > 0 {
        tch::set_num_threads(recipe.threads);
    }
    let alpha = config.alpha as usize;
    let train_source = setup::source(recipe, Which::Train)
        .map_err(anyhow::Error::msg)?
        .context("the recipe has no training data")?;
    if train_source.len() < recipe.train.batch_size {
        bail!("{} training samples are fewer than one batch of {}", train_source.len(), recipe.train.batch_size);
    }
    let val_source = setup::source(recipe, Which::Val).map_err(anyhow::Error::msg)?;
    let train_loader = setup::loader(recipe, train_source, Mode::Train, alpha);
    let val_loader = val_source.map(|s| setup::loader(recipe, s, Mode::Val, alpha));

    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create the output folder", out.display()))?;
    let ckpt_dir = out.join("checkpoints");
    let recipe_yaml = serde_saphyr::to_string(recipe).context("writing the recipe back")?;
    checkpoint::write_text_atomic(&out.join("recipe.yaml"), &recipe_yaml)?;

    tch::manual_seed(recipe.seed as i64);
    let mut vs = nn::VarStore::new(device);
    let model = SlowFast::new(&vs.root(), &config)?;
    let mut optimizer = Optimizer::new(&vs, &recipe.solver);

    let mut state = TrainState {
        format: FORMAT,
        epoch: 0,
        global_iter: 0,
        lr: 0.0,
        seed: recipe.seed,
        model: config.clone(),
        recipe_name: recipe.name.clone(),
        best_val_top1: None,
    };
    let mut resumed_from = None;
    if recipe.train.auto_resume {
        if let Some((epoch, paths)) = checkpoint::latest(&ckpt_dir) {
            let (saved, optim) = checkpoint::read_state(&paths)?;
            if saved.model != config {
                bail!("{}: the checkpoint's model differs from the recipe's; use another --out", paths.state.display());
            }
            if saved.seed != recipe.seed {
                bail!("{}: the checkpoint has seed {}, the recipe {}", paths.state.display(), saved.seed, recipe.seed);
            }
            crate::weights::load(&mut vs, &paths.weights, crate::weights::LoadMode::Strict)?;
            optimizer.load_state(optim).map_err(|e| anyhow::anyhow!("{}: {e}", paths.optim.display()))?;
            state = saved;
            resumed_from = Some(epoch);
        }
    }
    let mut metrics = Metrics::open(out, state.epoch).with_context(|| format!("{}: metrics", out.display()))?;
    let progress = Progress::new(recipe.train.log_period);
    if let Some(e) = resumed_from {
        progress.line(&format!("resuming from {} (epoch {e} done)", ckpt_dir.display()));
    }

    let max_epoch = recipe.solver.max_epoch;
    let iters = train_loader.batches_per_epoch();
    let scale = recipe.lr_scale();
    let mut skipped_total = 0;
    let mut last_val = None;
    let start = Instant::now();
    while state.epoch < max_epoch {
        let epoch = state.epoch; // 0-based epoch being trained
        progress.start_epoch(epoch + 1, max_epoch, iters);
        let mut failures: Vec<Failure> = Vec::new();
        model_train_epoch(recipe, &model, &mut optimizer, &train_loader, &mut state, &mut metrics, &progress, &mut failures, scale, iters, device, start)?;
        state.epoch = epoch + 1;
        skipped_total += failures.len();
        report_failures(out, state.epoch, &failures, &mut metrics, &progress)?;

        let last = state.epoch == max_epoch;
        if state.epoch % recipe.train.eval_period == 0 || last {
            if recipe.precise_bn.enabled {
                precise_bn::update_bn_stats(&model, &vs, &train_loader, PRECISE_BN_STREAM + state.epoch as u64, recipe.precise_bn.num_batches)?;
            }
            if let Some(val_loader) = &val_loader {
                let v = evaluate::validate(&model, val_loader, device)?;
                progress.line(&format!(
                    "epoch {} val top-1 {:.2}% top-5 {:.2}% loss {:.4} ({} clips)",
                    state.epoch,
                    v.top1 * 100.0,
                    v.top5 * 100.0,
                    v.loss,
                    v.clips
                ));
                metrics.record(json!({"kind": "val", "epoch": state.epoch, "top1": v.top1, "top5": v.top5,
                    "loss": v.loss, "clips": v.clips, "skipped": v.failures}))?;
                state.best_val_top1 = Some(state.best_val_top1.map_or(v.top1, |b: f64| b.max(v.top1)));
                last_val = Some(v.top1);
            }
        }
        if state.epoch % recipe.train.checkpoint_period == 0 || last {
            let p = checkpoint::save(&ckpt_dir, &vs, &optimizer.state(), &state)?;
            progress.line(&format!("checkpoint {}", p.weights.display()));
            if let Err(e) = metrics::plot(out, &metrics.records()) {
                progress.line(&format!("plots not written: {e}"));
            }
        }
    }
    progress.finish();
    let final_weights = out.join("weights.safetensors");
    checkpoint::write_atomic(&final_weights, |tmp| crate::weights::save(&vs, tmp).map_err(|e| e.to_string()))?;
    Ok(Summary { epochs: state.epoch, resumed_from, final_weights, val_top1: last_val, skipped_videos: skipped_total })
}

#[allow(clippy::too_many_arguments)]
fn model_train_epoch(
    recipe: &Recipe,
    model: &SlowFast,
    optimizer: &mut Optimizer,
    loader: &crate::data::Loader,
    state: &mut TrainState,
    metrics: &mut Metrics,
    progress: &Progress,
    failures: &mut Vec<Failure>,
    scale: f64,
    iters: usize,
    device: tch::Device,
    start: Instant,
) -> anyhow::Result<()> {
    let epoch = state.epoch;
    for (i, batch) in loader.epoch(epoch as u64).enumerate() {
        let batch = batch?;
        failures.extend(batch.failures.iter().cloned());
        let lr = schedule::lr_at(&recipe.solver, scale, epoch as f64 + i as f64 / iters as f64);
        // Dropout draws from a stream fixed by the step number, so a resumed
        // run drops the same units.
        tch::manual_seed((Rng::at(recipe.seed, &[DROPOUT_STREAM, state.global_iter]).next_u64() >> 1) as i64);
        let labels = batch.labels.to_device(device);
        let logits = model.forward_t(&batch.slow.to_device(device), &batch.fast.to_device(device), true)?;
        let loss = loss_fn(&logits, &labels, recipe.solver.label_smoothing);
        let loss_value = loss.double_value(&[]);
        if !loss_value.is_finite() {
            bail!("epoch {} iteration {}: the loss is {loss_value}; lower solver.base_lr or set solver.clip_grad_norm", epoch + 1, i + 1);
        }
        optimizer.zero_grad();
        loss.backward();
        if let Some(max) = recipe.solver.clip_grad_norm {
            optimizer.clip_grad_norm(max);
        }
        optimizer.step(lr);
        state.global_iter += 1;
        state.lr = lr;
        let wrong = logits.argmax(1, false).ne_tensor(&labels).to_kind(Kind::Float).mean(Kind::Float).double_value(&[]);
        progress.iteration(epoch + 1, i + 1, iters, loss_value, lr);
        if (i + 1) % recipe.train.log_period == 0 || i + 1 == iters {
            let secs = start.elapsed().as_secs_f64();
            metrics.record(metrics::train_record(epoch + 1, i + 1, state.global_iter, loss_value, lr, wrong, secs))?;
        }
    }
    Ok(())
}

/// The epoch's unreadable videos: counted in the metrics and listed in
/// `bad_videos_epoch_N.txt`, so the data can be fixed later.
fn report_failures(out: &Path, epoch: usize, failures: &[Failure], metrics: &mut Metrics, progress: &Progress) -> anyhow::Result<()> {
    let mut names: Vec<&str> = failures.iter().map(|f| f.name.as_str()).collect();
    names.sort();
    names.dedup();
    metrics.record(json!({"kind": "epoch", "epoch": epoch, "skipped": failures.len(), "bad_videos": names}))?;
    if failures.is_empty() {
        return Ok(());
    }
    let text: String = failures.iter().map(|f| format!("{}\t{}\n", f.name, f.why)).collect();
    let path = out.join(format!("bad_videos_epoch_{epoch:05}.txt"));
    checkpoint::write_text_atomic(&path, &text)?;
    progress.line(&format!("epoch {epoch}: {} unreadable videos skipped and replaced, listed in {}", failures.len(), path.display()));
    Ok(())
}
