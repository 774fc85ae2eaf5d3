//! Training step time on CPU (forward in train mode, cross-entropy,
//! backward, SGD with Nesterov momentum and PySlowFast's weight-decay
//! groups) beside the same step of the reference network in PyTorch, same
//! batch and input size, in the same run.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args as ClapArgs;
use tch::{Device, Kind, Tensor, nn};
use trainer::model::{Preset, SlowFast};
use trainer::recipe::SolverSection;
use trainer::train::{loss_fn, optim::Optimizer};

use super::bench::{arch_flag, run_reference, summarise};

#[derive(ClapArgs)]
pub struct Args {
    #[arg(long, value_enum, default_value = "slowfast_8x8_r50")]
    arch: Preset,
    /// Clips per step.
    #[arg(long, default_value_t = 2)]
    batch: i64,
    /// Crop size (a multiple of 32).
    #[arg(long, default_value_t = 112)]
    size: i64,
    #[arg(long, default_value_t = 2)]
    threads: i32,
    #[arg(long, default_value_t = 5)]
    iters: usize,
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Python with torch and pytorchvideo (scripts/setup-pyref.sh makes one)
    /// to time bench/pytorch_train_step.py beside us; skipped when not given.
    #[arg(long)]
    pytorch: Option<PathBuf>,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    if a.iters == 0 || a.batch < 1 {
        bail!("--iters and --batch must be at least 1");
    }
    if a.size < 32 || a.size % 32 != 0 {
        bail!("--size must be a positive multiple of 32, got {}", a.size);
    }
    tch::set_num_threads(a.threads);
    tch::manual_seed(0);
    let config = a.arch.config();
    let vs = nn::VarStore::new(Device::Cpu);
    let model = SlowFast::new(&vs.root(), &config)?;
    let solver: SolverSection = serde_saphyr::from_str("base_lr: 0.1\nmax_epoch: 1\n").context("solver settings")?;
    let mut sgd = Optimizer::new(&vs, &solver);
    let opts = (Kind::Float, Device::Cpu);
    let fast = Tensor::randn([a.batch, 3, 32, a.size, a.size], opts);
    let slow = Tensor::randn([a.batch, 3, 32 / config.alpha, a.size, a.size], opts);
    let labels = Tensor::randint(config.num_classes, [a.batch], (Kind::Int64, Device::Cpu));
    let mut times = Vec::with_capacity(a.iters);
    let mut step = |i: usize, times: &mut Vec<f64>| -> anyhow::Result<()> {
        let t = Instant::now();
        let logits = model.forward_t(&slow, &fast, true)?;
        let loss = loss_fn(&logits, &labels, 0.0);
        sgd.zero_grad();
        loss.backward();
        sgd.step(0.01);
        let value = loss.double_value(&[]);
        let ms = t.elapsed().as_secs_f64() * 1e3;
        if !value.is_finite() {
            bail!("step {i}: loss is {value}");
        }
        if i >= a.warmup {
            times.push(ms);
        }
        Ok(())
    };
    // With a reference to run, half of our steps come after it: this
    // host's speed drifts over a minute, and whichever side ran first
    // would otherwise carry the drift.
    let before = if a.pytorch.is_some() { a.warmup + a.iters.div_ceil(2) } else { a.warmup + a.iters };
    for i in 0..before {
        step(i, &mut times)?;
    }
    let reference = match &a.pytorch {
        Some(python) => {
            let args = [
                "--arch",
                arch_flag(a.arch),
                "--batch",
                &a.batch.to_string(),
                "--size",
                &a.size.to_string(),
                "--threads",
                &a.threads.to_string(),
                "--iters",
                &a.iters.to_string(),
                "--warmup",
                &a.warmup.to_string(),
            ]
            .map(String::from);
            Some(run_reference(python, "pytorch_train_step.py", args)?)
        }
        None => None,
    };
    for i in before..a.warmup + a.iters {
        step(i, &mut times)?;
    }
    let ours = summarise("trainer (tch)", times);
    println!(
        "{:?} training step, batch {}, 32 frames at {}x{}, {} threads, {} iterations after {} warm-up",
        a.arch, a.batch, a.size, a.size, a.threads, a.iters, a.warmup
    );
    println!("{}", serde_json::to_string(&ours)?);

    let Some((line, reference)) = reference else { return Ok(()) };
    let ref_median = reference["median_ms"].as_f64().context("reference output has no median_ms")?;
    println!("{line}");
    println!("median step: trainer {:.1} ms, PyTorch {:.1} ms, ratio {:.3}x", ours.median_ms, ref_median, ours.median_ms / ref_median);
    Ok(())
}
