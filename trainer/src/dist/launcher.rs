//! `trainer train --nproc-per-node N`: starts N workers of this very
//! command and watches them, as torchrun does, without Python. It hosts the
//! TCPStore (node 0), gives each worker torchrun's variables, stops the job
//! when a worker fails (naming it), and restarts every worker up to
//! `--max-restarts` times; the restarted workers resume from the last
//! checkpoint.

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::ffi::Store;

#[derive(Debug, Clone)]
pub struct Options {
    pub nproc_per_node: usize,
    pub nnodes: usize,
    pub node_rank: usize,
    pub master_addr: String,
    /// `None`: a free port of this machine (one node only).
    pub master_port: Option<u16>,
    pub max_restarts: u32,
    /// How long the other workers get to stop by themselves after one
    /// failed, before they are killed.
    pub grace: Duration,
    pub store_timeout: Duration,
}

/// Runs the job; `worker_args` are the arguments each worker is started
/// with (this executable's subcommand and its options).
pub fn run(opts: &Options, worker_args: &[OsString]) -> anyhow::Result<()> {
    if opts.nproc_per_node == 0 || opts.nnodes == 0 {
        bail!("--nproc-per-node and --nnodes must be at least 1");
    }
    if opts.node_rank >= opts.nnodes {
        bail!("--node-rank {} is outside --nnodes {}", opts.node_rank, opts.nnodes);
    }
    if opts.nnodes > 1 && opts.max_restarts > 0 {
        bail!(
            "--max-restarts across several nodes needs an elastic agent: launch with torchrun (`torchrun --no-python ... --max-restarts K`)"
        );
    }
    let world = opts.nproc_per_node * opts.nnodes;
    let port = match opts.master_port {
        Some(p) => p,
        None if opts.nnodes == 1 => free_port().context("finding a free port for the rendezvous store")?,
        None => bail!("--master-port is needed with --nnodes > 1 (every node must name the same one)"),
    };
    // The agent's store outlives every attempt; attempts use their own
    // prefix, so keys of a failed attempt never leak into the next.
    let _store = if opts.node_rank == 0 {
        Some(
            Store::new(&opts.master_addr, port, true, world, opts.store_timeout.as_millis() as i64, "")
                .with_context(|| format!("hosting the rendezvous store on port {port}"))?,
        )
    } else {
        None
    };
    let exe = std::env::current_exe().context("finding this executable")?;
    for attempt in 0..=opts.max_restarts {
        let mut workers = Vec::new();
        for local in 0..opts.nproc_per_node {
            let rank = opts.node_rank * opts.nproc_per_node + local;
            let mut cmd = Command::new(&exe);
            cmd.args(worker_args)
                .env("RANK", rank.to_string())
                .env("LOCAL_RANK", local.to_string())
                .env("WORLD_SIZE", world.to_string())
                .env("LOCAL_WORLD_SIZE", opts.nproc_per_node.to_string())
                .env("GROUP_RANK", opts.node_rank.to_string())
                .env("MASTER_ADDR", &opts.master_addr)
                .env("MASTER_PORT", port.to_string())
                .env("TORCHELASTIC_RESTART_COUNT", attempt.to_string())
                .env("TORCHELASTIC_MAX_RESTARTS", opts.max_restarts.to_string())
                .env("TORCHELASTIC_RUN_ID", "slowfast")
                .env("TORCHELASTIC_USE_AGENT_STORE", "True");
            if std::env::var_os("OMP_NUM_THREADS").is_none() {
                // torchrun's default: N workers on one machine must not each
                // take every core.
                cmd.env("OMP_NUM_THREADS", "1");
            }
            let child = cmd.spawn().with_context(|| format!("starting worker rank {rank}"))?;
            eprintln!("[launcher] rank {rank}: pid {}", child.id());
            workers.push((rank, child));
        }
        let prefix = format!("/worker/attempt_{attempt}");
        match watch(&mut workers, opts.grace, _store.as_ref(), &prefix)? {
            None => return Ok(()),
            Some(failure) if attempt < opts.max_restarts => {
                eprintln!("[launcher] {failure}; restarting all workers (restart {} of {})", attempt + 1, opts.max_restarts);
            }
            Some(failure) => bail!("{failure}"),
        }
    }
    unreachable!("the last attempt returns")
}

/// Waits for every worker; on the first failure the others get `grace` to
/// stop by themselves, then are killed. Returns what failed, if anything.
/// A worker's failure is posted in the attempt's store keys
/// (`exit/<rank>`), where the survivors look to say who stopped.
fn watch(workers: &mut [(usize, Child)], grace: Duration, store: Option<&Store>, prefix: &str) -> anyhow::Result<Option<String>> {
    let mut done = vec![false; workers.len()];
    let mut failure: Option<(String, Instant)> = None;
    loop {
        for (i, (rank, child)) in workers.iter_mut().enumerate() {
            if done[i] {
                continue;
            }
            if let Some(status) = child.try_wait().context("waiting for a worker")? {
                done[i] = true;
                if !status.success() {
                    let what = format!("worker rank {rank} (pid {}) {}", child.id(), describe(status));
                    if let Some(store) = store {
                        let _ = store.set(&format!("{prefix}/exit/{rank}"), what.as_bytes());
                    }
                    if failure.is_none() {
                        failure = Some((what, Instant::now()));
                    }
                }
            }
        }
        if done.iter().all(|&d| d) {
            return Ok(failure.map(|f| f.0));
        }
        if let Some((_, since)) = &failure
            && since.elapsed() > grace
        {
            for (i, (rank, child)) in workers.iter_mut().enumerate() {
                if !done[i] {
                    eprintln!("[launcher] rank {rank} did not stop within {grace:?}: killing it");
                    let _ = child.kill();
                    let _ = child.wait();
                    done[i] = true;
                }
            }
            continue;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(9)) => "was killed (SIGKILL)".into(),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        (None, None) => "stopped".into(),
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}
