//! The training loop: SGD with PySlowFast's schedule, per-iteration LR,
//! optional clipping and label smoothing, precise BN before validation,
//! checkpoints every few epochs, and automatic resume from the latest one.

pub mod amp;
pub mod checkpoint;
pub mod evaluate;
pub mod metrics;
pub mod optim;
pub mod precise_bn;
pub mod schedule;
pub mod setup;
pub mod shapes;
pub mod step;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use serde_json::json;
use tch::{Device, Kind, Tensor, nn};

use crate::data::{Failure, Mode, Shard};
use crate::dist::Dist;
use crate::model::SlowFast;
use crate::recipe::{MixedPrecision, Recipe};
use checkpoint::{FORMAT, TrainState};
use metrics::{Metrics, Progress};
use optim::Optimizer;
use setup::Which;
use shapes::Shapes;
use step::Step;

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
    let device = setup::device(recipe.device).map_err(anyhow::Error::msg)?;
    train_on(recipe, out, device, None)
}

/// [`train`] as one rank of a data-parallel job when `dist` is given: this
/// rank reads its shard at its share of the global batch, gradients are
/// averaged over all ranks, and rank 0 alone writes checkpoints, metrics
/// and plots (the others log to `out/logs/rank_N.log`).
pub fn train_on(recipe: &Recipe, out: &Path, device: Device, dist: Option<&Dist>) -> anyhow::Result<Summary> {
    let config = recipe.model_config().map_err(|(f, w)| anyhow::anyhow!("{f}: {w}"))?;
    recipe.check_files()?;
    let (rank, world) = dist.map_or((0, 1), |d| (d.rank(), d.world()));
    recipe.check_world(world)?;
    let main = rank == 0;
    if recipe.train.mixed_precision == MixedPrecision::Fp16 && !device.is_cuda() {
        bail!("{}: `train.mixed_precision: fp16` needs CUDA and this run is on the CPU; use bf16", recipe.source.display());
    }
    if recipe.threads > 0 {
        tch::set_num_threads(recipe.threads);
    }
    let alpha = config.alpha as usize;
    let shard = Shard { rank, world };
    let train_source = setup::source(recipe, Which::Train).map_err(anyhow::Error::msg)?.context("the recipe has no training data")?;
    if train_source.len() < recipe.train.batch_size {
        bail!("{} training samples are fewer than one batch of {}", train_source.len(), recipe.train.batch_size);
    }
    let val_source = setup::source(recipe, Which::Val).map_err(anyhow::Error::msg)?;
    let train_loader = setup::loader(recipe, train_source, Mode::Train, alpha, shard);
    let val_loader = val_source.map(|s| setup::loader(recipe, s, Mode::Val, alpha, shard));

    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create the output folder", out.display()))?;
    let ckpt_dir = out.join("checkpoints");
    if main {
        let recipe_yaml = serde_saphyr::to_string(recipe).context("writing the recipe back")?;
        checkpoint::write_text_atomic(&out.join("recipe.yaml"), &recipe_yaml)?;
    }

    tch::manual_seed(recipe.seed as i64);
    let mut vs = nn::VarStore::new(device);
    let model = SlowFast::new(&vs.root(), &config)?;
    let shapes = Shapes::new(recipe, dist)?;
    let solver = recipe.training_solver();
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
        loss_scaler: None,
        multigrid: None,
    };
    let mut resumed_from = None;
    // The shapes of the last epoch trained (a resumed run's included), to
    // log shape changes only.
    let mut current: Option<shapes::EpochShapes> = None;
    if recipe.train.auto_resume {
        // Rank 0 picks the checkpoint and every rank loads that one.
        let mut latest = if main { checkpoint::latest(&ckpt_dir).map(|(e, _)| e) } else { None };
        if let Some(d) = dist {
            latest = d.agree_on("resume_epoch", latest)?;
        }
        if let Some(epoch) = latest {
            let paths = checkpoint::paths(&ckpt_dir, epoch);
            let (saved, optim) = checkpoint::read_state(&paths)
                .with_context(|| format!("rank {rank}: checkpoints must be on a file system every rank sees"))?;
            if saved.model != config {
                bail!("{}: the checkpoint's model differs from the recipe's; use another --out", paths.state.display());
            }
            if saved.seed != recipe.seed {
                bail!("{}: the checkpoint has seed {}, the recipe {}", paths.state.display(), saved.seed, recipe.seed);
            }
            crate::weights::load(&mut vs, &paths.weights, crate::weights::LoadMode::Strict)?;
            // The BN of the epoch the checkpoint ends, with its sub-batch
            // statistics: the loop then changes shape as an unbroken run would.
            let done = shapes.epoch(epoch.saturating_sub(1), &train_loader)?;
            if saved.multigrid != done.position {
                bail!(
                    "{}: written at {:?} of a multigrid schedule, where this recipe has {:?}; use another --out",
                    paths.state.display(),
                    saved.multigrid,
                    done.position
                );
            }
            shapes.apply_bn(&model, &done);
            current = Some(done);
            let optim = checkpoint::restore_sub_bn(&model, optim).map_err(|e| anyhow::anyhow!("{}: {e}", paths.optim.display()))?;
            optimizer.load_state(optim).map_err(|e| anyhow::anyhow!("{}: {e}", paths.optim.display()))?;
            state = saved;
            resumed_from = Some(epoch);
        }
    }
    let mut scaler = match recipe.train.mixed_precision {
        MixedPrecision::Fp16 => Some(state.loss_scaler.unwrap_or_default()),
        _ => None,
    };
    let mut reducer = None;
    if let Some(d) = dist {
        // Rank 0's weights everywhere, as DDP's construction does.
        d.broadcast_vars(&vs).map_err(|e| d.explain(state.global_iter, "the initial broadcast of the weights", &e))?;
        if recipe.dist.overlap {
            let mb = 1024.0 * 1024.0;
            let params = optimizer.params();
            let r = crate::dist::ffi::Reducer::new(&d.group, &params, mb as i64, (recipe.dist.bucket_mb * mb) as i64)
                .map_err(|e| anyhow::anyhow!("rank {rank}: DDP's Reducer: {e}"))?;
            reducer = Some(r);
        }
    }
    let mut metrics =
        if main { Some(Metrics::open(out, state.epoch).with_context(|| format!("{}: metrics", out.display()))?) } else { None };
    let progress = if main {
        Progress::new(recipe.train.log_period)
    } else {
        let logs = out.join("logs");
        std::fs::create_dir_all(&logs).with_context(|| format!("{}: cannot create the log folder", logs.display()))?;
        let path = logs.join(format!("rank_{rank}.log"));
        Progress::to_file(&path, recipe.train.log_period).with_context(|| format!("{}: cannot open the log", path.display()))?
    };
    if let Some(e) = resumed_from {
        progress.line(&format!("resuming from {} (epoch {e} done)", ckpt_dir.display()));
    }
    if let Some(d) = dist {
        progress.line(&format!(
            "rank {rank} of {world} ({}), {:?} backend, {} clips per step here of {} in all",
            d.launch.source,
            d.group.backend,
            train_loader.options().batch_size,
            recipe.train.batch_size
        ));
    }

    if let Some(mg) = &shapes.multigrid {
        let table = mg.table(world, |s, e| schedule::lr_at(s, recipe.lr_scale(), e));
        for line in table.lines() {
            progress.line(line);
        }
    }
    let max_epoch = shapes.max_epoch();
    let scale = recipe.lr_scale();
    let mut skipped_total = 0;
    let mut last_val = None;
    let start = Instant::now();
    let mut step =
        Step { recipe, model: &model, optimizer: &mut optimizer, reducer: reducer.as_mut(), scaler: scaler.as_mut(), dist, device };
    while state.epoch < max_epoch {
        let epoch = state.epoch; // 0-based epoch being trained
        let now = shapes.epoch(epoch, &train_loader)?;
        let shape = |s: &shapes::EpochShapes| (s.batch_size, s.layout.frames, s.crop, s.bn);
        if current.as_ref().is_none_or(|c| shape(c) != shape(&now)) {
            shapes.apply_bn(&model, &now);
            if shapes.multigrid.is_some() {
                progress.line(&format!("epoch {}: {}", epoch + 1, now.describe()));
                if let Some(m) = metrics.as_mut() {
                    m.record(json!({"kind": "shape", "epoch": epoch + 1, "global_iter": state.global_iter,
                        "batch": now.batch_size, "frames": now.layout.frames, "crop": now.crop, "bn": now.bn}))?;
                }
            }
        }
        let iters = train_loader.batches_in(&now.layout);
        if iters == 0 {
            bail!(
                "epoch {}: {} training samples per process are fewer than one batch ({})",
                epoch + 1,
                train_loader.source().len() / world,
                now.describe()
            );
        }
        progress.start_epoch(epoch + 1, max_epoch, iters);
        let mut failures: Vec<Failure> = Vec::new();
        let epoch_start = Instant::now();
        let mut data_wait = 0.0;
        let mut batches = train_loader.epoch_with(epoch as u64, &now.layout);
        for i in 0.. {
            // How long the step waits for the loader: what shows whether
            // decoding keeps up with the smaller shapes.
            let asked = Instant::now();
            let Some(batch) = batches.next() else { break };
            data_wait += asked.elapsed().as_secs_f64();
            let batch = batch?;
            failures.extend(batch.failures.iter().cloned());
            let lr = schedule::lr_at(&solver, scale, epoch as f64 + i as f64 / iters as f64);
            let (loss, wrong) =
                step.run(&batch, state.global_iter, lr).with_context(|| format!("epoch {} iteration {}", epoch + 1, i + 1))?;
            state.global_iter += 1;
            state.lr = lr;
            if let Some(d) = dist {
                d.heartbeat(state.global_iter);
            }
            progress.iteration(epoch + 1, i + 1, iters, loss, lr);
            if let Some(m) = metrics.as_mut().filter(|_| (i + 1) % recipe.train.log_period == 0 || i + 1 == iters) {
                let secs = start.elapsed().as_secs_f64();
                let mut r = metrics::train_record(epoch + 1, i + 1, state.global_iter, loss, lr, wrong, secs);
                let [_, _, t, h, _] = batch.fast.size()[..] else { unreachable!("fast pathway batches are 5-D") };
                r["clips"] = json!(batch.fast.size()[0] as usize * world);
                r["frames"] = json!(t);
                r["crop"] = json!(h);
                m.record(r)?;
            }
        }
        drop(batches);
        let timing = json!({"train_s": epoch_start.elapsed().as_secs_f64(), "data_wait_s": data_wait, "iters": iters,
            "time_s": start.elapsed().as_secs_f64()});
        state.epoch = epoch + 1;
        state.loss_scaler = step.scaler.as_deref().copied();
        current = Some(now.clone());
        let failures = match dist {
            Some(d) => d.gather_failures(&format!("failures/{}", state.epoch), &failures)?,
            None => Some(failures),
        };
        if let (Some(failures), Some(m)) = (failures, metrics.as_mut()) {
            skipped_total += failures.len();
            report_failures(out, state.epoch, &failures, timing, m, &progress)?;
        }

        let (eval_due, checkpoint_due) = shapes.eval_and_checkpoint(epoch);
        if eval_due || checkpoint_due {
            if let Some(d) = dist {
                // DDP keeps rank 0's BN buffers; precise BN then averages
                // each rank's statistics.
                d.broadcast_buffers(&vs).map_err(|e| d.explain(state.global_iter, "the BN buffer broadcast", &e))?;
            }
            if recipe.precise_bn.enabled {
                // At the default shape, which evaluation and export use
                // (multigrid may have trained this epoch on another); then
                // back to the epoch's BN, its splits starting from these.
                let default = shapes.default_shape(&train_loader)?;
                shapes.apply_bn(&model, &default);
                let key = PRECISE_BN_STREAM + state.epoch as u64;
                precise_bn::update_bn_stats(&model, &train_loader, &default.precise_bn_layout(), key, recipe.precise_bn.num_batches)?;
                model.aggregate_sub_bn_stats();
                shapes.apply_bn(&model, &now);
                if let Some(d) = dist {
                    d.average_in_place(&precise_bn::running_stats(&vs))
                        .map_err(|e| d.explain(state.global_iter, "averaging precise BN statistics", &e))?;
                }
            }
        }
        // PySlowFast merges sub-batch statistics after every epoch.
        model.aggregate_sub_bn_stats();
        if eval_due && let Some(val_loader) = &val_loader {
            let mut sums = evaluate::validate_sums(&model, val_loader, device)?;
            if let Some(d) = dist {
                let mut v = [sums.clips, sums.top1, sums.top5, sums.loss];
                d.sum_f64(&mut v).map_err(|e| d.explain(state.global_iter, "summing validation counts", &e))?;
                [sums.clips, sums.top1, sums.top5, sums.loss] = v;
                let all = d.gather_text(&format!("val_failures/{}", state.epoch), &sums.failures.join("\n"))?;
                sums.failures = all.map(|t| t.iter().flat_map(|s| s.lines()).map(str::to_string).collect()).unwrap_or_default();
            }
            let v = sums.result();
            progress.line(&format!(
                "epoch {} val top-1 {:.2}% top-5 {:.2}% loss {:.4} ({} clips)",
                state.epoch,
                v.top1 * 100.0,
                v.top5 * 100.0,
                v.loss,
                v.clips
            ));
            if let Some(m) = metrics.as_mut() {
                m.record(
                    json!({"kind": "val", "epoch": state.epoch, "time_s": start.elapsed().as_secs_f64(), "top1": v.top1, "top5": v.top5,
                        "loss": v.loss, "clips": v.clips, "skipped": v.failures}),
                )?;
            }
            state.best_val_top1 = Some(state.best_val_top1.map_or(v.top1, |b: f64| b.max(v.top1)));
            last_val = Some(v.top1);
        }
        state.multigrid = now.position.clone();
        if main && checkpoint_due {
            let mut optim_state = step.optimizer.state();
            optim_state.extend(checkpoint::sub_bn_state(&model));
            let p = checkpoint::save(&ckpt_dir, &vs, &optim_state, &state)?;
            progress.line(&format!("checkpoint {}", p.weights.display()));
            if let Some(Err(e)) = metrics.as_ref().map(|m| metrics::plot(out, &m.records())) {
                progress.line(&format!("plots not written: {e}"));
            }
        }
    }
    progress.finish();
    let final_weights = out.join("weights.safetensors");
    if main {
        checkpoint::write_atomic(&final_weights, |tmp| crate::weights::save(&vs, tmp).map_err(|e| e.to_string()))?;
    }
    Ok(Summary { epochs: state.epoch, resumed_from, final_weights, val_top1: last_val, skipped_videos: skipped_total })
}

/// The epoch's unreadable videos: counted in the metrics and listed in
/// `bad_videos_epoch_N.txt`, so the data can be fixed later.
/// The epoch's record also carries its `timing` (seconds of training and
/// of waiting for data).
fn report_failures(
    out: &Path,
    epoch: usize,
    failures: &[Failure],
    timing: serde_json::Value,
    metrics: &mut Metrics,
    progress: &Progress,
) -> anyhow::Result<()> {
    let mut names: Vec<&str> = failures.iter().map(|f| f.name.as_str()).collect();
    names.sort();
    names.dedup();
    let mut record = json!({"kind": "epoch", "epoch": epoch, "skipped": failures.len(), "bad_videos": names});
    if let (Some(r), Some(t)) = (record.as_object_mut(), timing.as_object()) {
        r.extend(t.clone());
    }
    metrics.record(record)?;
    if failures.is_empty() {
        return Ok(());
    }
    let text: String = failures.iter().map(|f| format!("{}\t{}\n", f.name, f.why)).collect();
    let path = out.join(format!("bad_videos_epoch_{epoch:05}.txt"));
    checkpoint::write_text_atomic(&path, &text)?;
    progress.line(&format!("epoch {epoch}: {} unreadable videos skipped and replaced, listed in {}", failures.len(), path.display()));
    Ok(())
}
