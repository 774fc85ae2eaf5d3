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
    #[command(flatten)]
    launch: LaunchArgs,
    /// Collective backend, overriding the recipe's `dist.backend`.
    #[arg(long, value_parser = ["auto", "gloo", "nccl"])]
    dist_backend: Option<String>,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let recipe = Recipe::load(&a.config)?;
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(a.config.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default()));
    let mut worker: Vec<OsString> = vec!["train".into(), "--config".into(), a.config.clone().into(), "--out".into(), out.clone().into()];
    if let Some(b) = &a.dist_backend {
        worker.extend(["--dist-backend".into(), b.into()]);
    }
    if a.launch.start_workers(&recipe, &worker)? {
        return Ok(());
    }
    let device = setup::device(recipe.device).map_err(anyhow::Error::msg)?;
    let s = match join(&recipe, device, a.dist_backend.as_deref())? {
        None => trainer::train::train_on(&recipe, &out, device, None)?,
        Some((d, device)) => {
            let rank = d.rank();
            let result = trainer::train::train_on(&recipe, &out, device, Some(&d));
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

/// How a job of several processes starts (shared by `train` and `test`).
#[derive(ClapArgs)]
pub struct LaunchArgs {
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
}

impl LaunchArgs {
    /// With `--nproc-per-node`: starts and watches the workers (each runs
    /// `worker`) and returns true once they are done.
    pub fn start_workers(&self, recipe: &Recipe, worker: &[OsString]) -> anyhow::Result<bool> {
        let Some(n) = self.nproc_per_node else { return Ok(false) };
        // Refuse what no worker could run before starting any.
        recipe.check_world(n * self.nnodes)?;
        let opts = launcher::Options {
            nproc_per_node: n,
            nnodes: self.nnodes,
            node_rank: self.node_rank,
            master_addr: self.master_addr.clone(),
            master_port: self.master_port,
            max_restarts: self.max_restarts,
            grace: Duration::from_secs_f64(recipe.dist.timeout_s.min(30.0)),
            store_timeout: Duration::from_secs_f64(recipe.dist.timeout_s),
        };
        launcher::run(&opts, worker)?;
        Ok(true)
    }
}

/// Joins the job the environment describes, if any (launched by
/// `--nproc-per-node`, torchrun or Slurm): this rank's connection and
/// device, after every rank is seen to run the same recipe.
pub fn join(recipe: &Recipe, device: tch::Device, backend: Option<&str>) -> anyhow::Result<Option<(Dist, tch::Device)>> {
    // A world of one still runs through c10d when a launcher says so
    // (torchrun --nproc-per-node 1): the same code path as on many GPUs.
    let Some(launch) = Launch::from_env().map_err(anyhow::Error::msg)? else { return Ok(None) };
    let device = rank_device(device, launch.local_rank)?;
    let backend = match backend.map(parse_backend).unwrap_or(recipe.dist.backend) {
        DistBackend::Auto if device.is_cuda() => Backend::Nccl,
        DistBackend::Auto | DistBackend::Gloo => Backend::Gloo,
        DistBackend::Nccl => Backend::Nccl,
    };
    let job = job_fingerprint(recipe, launch.world_size)?;
    let d = Dist::init(launch, backend, Duration::from_secs_f64(recipe.dist.timeout_s), device, &job)?;
    Ok(Some((d, device)))
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

/// What every rank must agree on: ranks started with different recipes or
/// world sizes would train something nobody asked for.
fn job_fingerprint(recipe: &Recipe, world: usize) -> anyhow::Result<String> {
    let yaml = serde_saphyr::to_string(recipe).context("writing the recipe back")?;
    Ok(format!("recipe {:016x}, world size {world}", dist::fingerprint(yaml.as_bytes())))
}
