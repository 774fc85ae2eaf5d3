//! Data-parallel cost on this machine: the all-reduce of a full network's
//! gradients over Gloo loopback, and the training step of 2 processes x 1
//! thread (DDP's Reducer overlapping backward, and one all-reduce after
//! it) against 1 process x 2 threads on the same global batch, beside
//! PyTorch DDP on the same model, machine and run.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args as ClapArgs;
use serde_json::json;
use tch::{Device, Kind, Tensor, nn};
use trainer::dist::ffi::Reducer;
use trainer::dist::{Backend, Dist, Launch};
use trainer::model::{Preset, SlowFast};
use trainer::recipe::SolverSection;
use trainer::train::step::all_reduce_flat;
use trainer::train::{loss_fn, optim::Optimizer};

use super::bench::{arch_flag, summarise};

#[derive(ClapArgs, Clone)]
pub struct Args {
    #[arg(long, value_enum, default_value = "slowfast_8x8_r50")]
    arch: Preset,
    /// Clips per step over all processes.
    #[arg(long, default_value_t = 4)]
    batch: i64,
    /// Crop size (a multiple of 32).
    #[arg(long, default_value_t = 128)]
    size: i64,
    #[arg(long, default_value_t = 4)]
    iters: usize,
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// All-reduces of the whole gradient timed.
    #[arg(long, default_value_t = 10)]
    allreduce_iters: usize,
    /// Python with torch (scripts/setup-pyref.sh) to time PyTorch DDP
    /// (bench/pytorch_ddp.py under torchrun) beside us.
    #[arg(long)]
    python: Option<PathBuf>,
    /// Internal: run as one of the two workers.
    #[arg(long, hide = true)]
    worker: bool,
}

struct Net {
    vs: nn::VarStore,
    model: SlowFast,
    sgd: Optimizer,
    slow: Tensor,
    fast: Tensor,
    labels: Tensor,
}

fn net(a: &Args, batch: i64) -> anyhow::Result<Net> {
    tch::manual_seed(0);
    let config = a.arch.config();
    let vs = nn::VarStore::new(Device::Cpu);
    let model = SlowFast::new(&vs.root(), &config)?;
    let solver: SolverSection = serde_saphyr::from_str("base_lr: 0.1\nmax_epoch: 1\n").context("solver settings")?;
    let sgd = Optimizer::new(&vs, &solver);
    let opts = (Kind::Float, Device::Cpu);
    let fast = Tensor::randn([batch, 3, 32, a.size, a.size], opts);
    let slow = Tensor::randn([batch, 3, 32 / config.alpha, a.size, a.size], opts);
    let labels = Tensor::randint(config.num_classes, [batch], (Kind::Int64, Device::Cpu));
    Ok(Net { vs, model, sgd, slow, fast, labels })
}

/// Step times (ms) after warm-up: forward, loss, backward, `between`
/// (the gradient exchange of the mode), SGD.
fn steps(
    a: &Args,
    n: &mut Net,
    mut reducer: Option<&mut Reducer>,
    mut between: impl FnMut(&Optimizer) -> anyhow::Result<()>,
) -> anyhow::Result<Vec<f64>> {
    let mut times = Vec::new();
    for i in 0..a.warmup + a.iters {
        let t = Instant::now();
        if let Some(r) = reducer.as_deref_mut() {
            r.prepare()?;
        }
        let logits = n.model.forward_t(&n.slow, &n.fast, true)?;
        let loss = loss_fn(&logits, &n.labels, 0.0);
        n.sgd.zero_grad();
        loss.f_backward()?;
        between(&n.sgd)?;
        n.sgd.step(0.01);
        if !loss.double_value(&[]).is_finite() {
            bail!("step {i}: the loss is not finite");
        }
        if i >= a.warmup {
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    Ok(times)
}

fn median(mut v: Vec<f64>) -> f64 {
    summarise("", std::mem::take(&mut v)).median_ms
}

/// One of the two workers: prints a JSON line (rank 0).
fn worker(a: &Args) -> anyhow::Result<()> {
    tch::set_num_threads(1);
    let launch = Launch::from_env().map_err(anyhow::Error::msg)?.context("bench-dist --worker runs under its parent")?;
    let d = Dist::init(launch, Backend::Gloo, Duration::from_secs(600), Device::Cpu, "bench-dist")?;
    let mut n = net(a, a.batch / 2)?;
    d.broadcast_vars(&n.vs)?;
    let numel: i64 = n.sgd.params().iter().map(|p| p.numel() as i64).sum();

    // The whole gradient as one flat buffer, then in DDP's 25 MB buckets.
    let flat = Tensor::ones([numel], (Kind::Float, Device::Cpu));
    let mut flat_ms = Vec::new();
    for _ in 0..a.allreduce_iters {
        let t = Instant::now();
        d.group.all_reduce_sum(&[&flat])?;
        flat_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let bucket = 25 * 1024 * 1024 / 4;
    let buckets: Vec<Tensor> = (0..numel).step_by(bucket as usize).map(|s| flat.narrow(0, s, bucket.min(numel - s)).copy()).collect();
    let mut bucket_ms = Vec::new();
    for _ in 0..a.allreduce_iters {
        let t = Instant::now();
        for b in &buckets {
            d.group.all_reduce_sum(&[b])?;
        }
        bucket_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }

    // Compute alone (no exchange), then the two ways of exchanging.
    let local = steps(a, &mut n, None, |_| Ok(()))?;
    d.group.barrier()?;
    let mb = 1024 * 1024;
    let mut reducer = Reducer::new(&d.group, &n.sgd.params(), mb, 25 * mb)?;
    let overlapped = steps(a, &mut n, Some(&mut reducer), |_| Ok(()))?;
    drop(reducer);
    d.group.barrier()?;
    let after = steps(a, &mut n, None, |sgd| Ok(all_reduce_flat(&d, &sgd.grads())?))?;
    if d.is_main() {
        println!(
            "{}",
            json!({
                "parameters": numel,
                "allreduce_flat_ms": median(flat_ms),
                "allreduce_buckets_ms": median(bucket_ms),
                "buckets": buckets.len(),
                "step_no_exchange_ms": median(local),
                "step_ddp_overlap_ms": median(overlapped),
                "step_allreduce_after_ms": median(after),
            })
        );
    }
    Ok(())
}

pub fn run(a: Args) -> anyhow::Result<()> {
    if a.worker {
        return worker(&a);
    }
    if a.iters == 0 || a.batch < 2 || a.batch % 2 != 0 {
        bail!("--iters must be at least 1 and --batch even (it is split over 2 processes)");
    }
    if a.size < 32 || a.size % 32 != 0 {
        bail!("--size must be a positive multiple of 32, got {}", a.size);
    }
    let port = std::net::TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port().to_string();
    let exe = std::env::current_exe()?;
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    args.push("--worker".into());
    let workers: Vec<_> = (0..2)
        .map(|rank| {
            Command::new(&exe)
                .args(&args)
                .env("RANK", rank.to_string())
                .env("WORLD_SIZE", "2")
                .env("LOCAL_RANK", rank.to_string())
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", &port)
                .env("OMP_NUM_THREADS", "1")
                .stdout(Stdio::piped())
                .spawn()
                .context("starting a worker")
        })
        .collect::<anyhow::Result<_>>()?;
    let mut outputs = Vec::new();
    for w in workers {
        let o = w.wait_with_output()?;
        if !o.status.success() {
            bail!("a bench worker failed");
        }
        outputs.push(String::from_utf8_lossy(&o.stdout).into_owned());
    }
    let line = outputs[0].lines().last().unwrap_or_default().to_string();
    let ours: serde_json::Value = serde_json::from_str(&line).with_context(|| format!("worker output {line:?}"))?;

    let reference = match &a.python {
        Some(python) => Some(run_torchrun(python, &a)?),
        None => None,
    };

    tch::set_num_threads(2);
    let mut n = net(&a, a.batch)?;
    let single = median(steps(&a, &mut n, None, |_| Ok(()))?);

    let f = |k: &str| ours[k].as_f64().unwrap_or(f64::NAN);
    println!(
        "{:?}, {} parameters, global batch {}, 32 frames at {}x{}, {} steps after {} warm-up",
        a.arch, ours["parameters"], a.batch, a.size, a.size, a.iters, a.warmup
    );
    println!(
        "all-reduce of all gradients over Gloo loopback (2 ranks): one flat buffer {:.1} ms, {} buckets of 25 MB {:.1} ms",
        f("allreduce_flat_ms"),
        ours["buckets"],
        f("allreduce_buckets_ms")
    );
    println!("1 process x 2 threads, batch {}: {single:.1} ms a step", a.batch);
    println!("2 processes x 1 thread, batch {} each, median step:", a.batch / 2);
    println!("  no exchange (compute alone):         {:.1} ms", f("step_no_exchange_ms"));
    println!(
        "  DDP Reducer (overlaps backward):     {:.1} ms = {:.3}x the single process",
        f("step_ddp_overlap_ms"),
        f("step_ddp_overlap_ms") / single
    );
    println!(
        "  one all-reduce after backward:       {:.1} ms = {:.3}x the single process",
        f("step_allreduce_after_ms"),
        f("step_allreduce_after_ms") / single
    );
    if let Some((line, r)) = reference {
        let ddp = r["median_ms"].as_f64().unwrap_or(f64::NAN);
        println!("{line}");
        println!("  PyTorch DDP (gloo, torchrun):        {ddp:.1} ms; ours / PyTorch = {:.3}x", f("step_ddp_overlap_ms") / ddp);
        if let Some(ar) = r["allreduce_flat_ms"].as_f64() {
            println!("  PyTorch all-reduce of one flat buffer: {ar:.1} ms");
        }
    }
    Ok(())
}

/// PyTorch DDP on the same model and split, launched by torchrun.
fn run_torchrun(python: &std::path::Path, a: &Args) -> anyhow::Result<(String, serde_json::Value)> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../bench/pytorch_ddp.py");
    let args = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
        .map(String::from)
        .into_iter()
        .chain([script.display().to_string()])
        .chain(
            [
                "--arch",
                arch_flag(a.arch),
                "--batch",
                &(a.batch / 2).to_string(),
                "--size",
                &a.size.to_string(),
                "--iters",
                &a.iters.to_string(),
                "--warmup",
                &a.warmup.to_string(),
                "--allreduce-iters",
                &a.allreduce_iters.to_string(),
            ]
            .map(String::from),
        );
    let out =
        Command::new(python).args(args).env("OMP_NUM_THREADS", "1").output().with_context(|| format!("running {}", python.display()))?;
    if !out.status.success() {
        bail!("PyTorch DDP failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().rfind(|l| l.starts_with('{')).unwrap_or_default().to_string();
    let value = serde_json::from_str(&line).with_context(|| format!("reading PyTorch DDP's output {line:?}"))?;
    Ok((line, value))
}
