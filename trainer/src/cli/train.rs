use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args as ClapArgs;
use trainer::dist::{self, Backend, Dist, Launch, launcher};
use trainer::recipe::{DistBackend, Recipe};
use trainer::train::setup;

#[derive(ClapArgs)]
pub struct Args {
    /// YAML recipe (see configs/).
    #[arg(long)]
    config: PathBuf,
    /// Output folder: checkpoints, metrics.jsonl, plots, weights
    /// [default: runs/<recipe file name>]. Rerunning the same command
    /// resumes from its latest checkpoint.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Start this many workers on this machine and watch them (torchrun's
    /// contract, no Python); each takes its share of `train.batch_size`.
    #[arg(long)]
    nproc_per_node: Option<usize>,
    /// Machines in the job (with --nproc-per-node).
    #[arg(long, default_value_t = 1)]
    nnodes: usize,
    /// This machine's index among --nnodes; node 0 hosts the rendezvous.
    #[arg(long, default_value_t = 0)]
    node_rank: usize,
    /// Address of node 0, where workers meet.
    #[arg(long, default_value = "127.0.0.1")]
    master_addr: String,
    /// Port of the rendezvous on node 0 [default: a free one with one node].
    #[arg(long)]
    master_port: Option<u16>,
    /// Restart every worker this many times after a failure; the restarted
    /// job resumes from its last checkpoint (one node).
    #[arg(long, default_value_t = 0)]
    max_restarts: u32,
    /// Collective backend, overriding the recipe's `dist.backend`.
    #[arg(long, value_parser = ["auto", "gloo", "nccl"])]
    dist_backend: Option<String>,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let recipe = Recipe::load(&a.config)?;
    let out = a.out.clone().unwrap_or_else(|| {
        PathBuf::from("runs").join(a.config.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default())
    });
    if let Some(n) = a.nproc_per_node {
        // Refuse what no worker could run before starting any.
        recipe.check_world(n * a.nnodes)?;
        let mut worker: Vec<OsString> = vec!["train".into(), "--config".into(), a.config.clone().into(), "--out".into(), out.clone().into()];
        if let Some(b) = &a.dist_backend {
            worker.extend(["--dist-backend".into(), b.into()]);
        }
        let opts = launcher::Options {
            nproc_per_node: n,
            nnodes: a.nnodes,
            node_rank: a.node_rank,
            master_addr: a.master_addr.clone(),
            master_port: a.master_port,
            max_restarts: a.max_restarts,
            grace: Duration::from_secs_f64(recipe.dist.timeout_s.min(30.0)),
            store_timeout: Duration::from_secs_f64(recipe.dist.timeout_s),
        };
        return launcher::run(&opts, &worker);
    }
    let launch = Launch::from_env().map_err(anyhow::Error::msg)?;
    let device = setup::device(recipe.device).map_err(anyhow::Error::msg)?;
    let s = match launch.filter(|l| l.world_size > 1) {
        None => trainer::train::train_on(&recipe, &out, device, None)?,
        Some(launch) => {
            let rank = launch.rank;
            let device = rank_device(device, launch.local_rank)?;
            let backend = match a.dist_backend.as_deref().map(parse_backend).unwrap_or(recipe.dist.backend) {
                DistBackend::Auto if device.is_cuda() => Backend::Nccl,
                DistBackend::Auto | DistBackend::Gloo => Backend::Gloo,
                DistBackend::Nccl => Backend::Nccl,
            };
            let timeout = Duration::from_secs_f64(recipe.dist.timeout_s);
            let d = Dist::init(launch, backend, timeout, device)?;
            let result = check_recipe(&d, &recipe).and_then(|()| trainer::train::train_on(&recipe, &out, device, Some(&d)));
            match result {
                Ok(s) if d.is_main() => s,
                Ok(_) => return Ok(()),
                Err(e) => {
                    let why = format!("{e:#}");
                    d.report_error(&why);
                    return Err(e).with_context(|| format!("rank {rank}"));
                }
            }
        }
    };
    println!("trained {} epochs into {}", s.epochs, out.display());
    if let Some(e) = s.resumed_from {
        println!("resumed after epoch {e}");
    }
    if let Some(top1) = s.val_top1 {
        println!("validation top-1: {:.2}%", top1 * 100.0);
    }
    println!("unreadable videos skipped: {}", s.skipped_videos);
    println!("weights: {}", s.final_weights.display());
    Ok(())
}

/// One GPU per local rank on CUDA, as torchrun jobs expect.
fn rank_device(device: tch::Device, local_rank: usize) -> anyhow::Result<tch::Device> {
    if !device.is_cuda() {
        return Ok(device);
    }
    let n = tch::Cuda::device_count() as usize;
    if local_rank >= n {
        anyhow::bail!("local rank {local_rank} needs GPU {local_rank}, but {n} CUDA devices are visible");
    }
    Ok(tch::Device::Cuda(local_rank))
}

fn parse_backend(s: &str) -> DistBackend {
    match s {
        "gloo" => DistBackend::Gloo,
        "nccl" => DistBackend::Nccl,
        _ => DistBackend::Auto,
    }
}

/// Ranks started with different recipes or world sizes would train
/// something nobody asked for: compare fingerprints first.
fn check_recipe(d: &Dist, recipe: &Recipe) -> anyhow::Result<()> {
    let yaml = serde_saphyr::to_string(recipe).context("writing the recipe back")?;
    let value = format!("recipe {:016x}, world size {}", dist::fingerprint(yaml.as_bytes()), d.world());
    d.check_same("recipe", &value)?;
    Ok(())
}
