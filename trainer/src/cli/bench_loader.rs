//! Training-loader throughput on real videos beside a PyAV loader doing
//! PySlowFast's work on the same files in the same run: decode (seeking to
//! the clip), sample 32 frames at rate 2, short-side jitter 256-320, random
//! 224 crop, flip, normalise, pack the two pathways. One worker and one
//! libtorch thread on each side; pin the process (`taskset -c 0`) to
//! compare per core, the Python child inherits the pinning.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args as ClapArgs;
use runtime::preprocess::Normalization;
use trainer::data::source::Temporal;
use trainer::data::{Loader, LoaderOptions, Mode, Sample, Source};

#[derive(ClapArgs)]
pub struct Args {
    /// Videos to read, cycled until --clips clips are made.
    #[arg(required = true)]
    videos: Vec<PathBuf>,
    #[arg(long, default_value_t = 40)]
    clips: usize,
    /// Clips before timing starts (file cache, allocator, libtorch warm-up).
    #[arg(long, default_value_t = 4)]
    warmup: usize,
    /// Python with torch and PyAV (scripts/setup-pyref.sh makes one) to run
    /// bench/pyav_loader.py beside us; skipped when not given.
    #[arg(long)]
    python: Option<PathBuf>,
}

fn options(seed: u64) -> LoaderOptions {
    LoaderOptions {
        mode: Mode::Train,
        batch_size: 1,
        workers: 1,
        prefetch: 1,
        max_retries: 0,
        seed,
        temporal: Temporal { num_frames: 32, sampling_rate: 2, target_fps: 30.0 },
        jitter: [256, 320],
        crop: 224,
        flip: true,
        normalize: Normalization { mean: [0.45; 3], std: [0.225; 3] },
        alpha: 4,
    }
}

/// Clips per second over `clips` clips, after `warmup`.
fn ours(videos: &[PathBuf], clips: usize, warmup: usize) -> anyhow::Result<f64> {
    let samples = |n: usize| -> Vec<Sample> {
        (0..n).map(|i| Sample { path: videos[i % videos.len()].clone(), label: 0 }).collect()
    };
    let warm = Loader::new(Source::List(samples(warmup)), options(1));
    for b in warm.epoch(0) {
        b?;
    }
    let loader = Loader::new(Source::List(samples(clips)), options(2));
    let start = Instant::now();
    let mut made = 0;
    for b in loader.epoch(0) {
        let b = b.map_err(|e| anyhow::anyhow!("{e}"))?;
        if !b.failures.is_empty() {
            bail!("{}: {}", b.failures[0].name, b.failures[0].why);
        }
        made += b.samples.len();
    }
    Ok(made as f64 / start.elapsed().as_secs_f64())
}

pub fn run(a: Args) -> anyhow::Result<()> {
    if a.clips == 0 {
        bail!("--clips must be at least 1");
    }
    for v in &a.videos {
        if !v.is_file() {
            bail!("{}: no such video", v.display());
        }
    }
    tch::set_num_threads(1);
    let rate = ours(&a.videos, a.clips, a.warmup)?;
    println!(
        "loader: {} clips of 32 frames (rate 2) -> [3, 32, 224, 224] + [3, 8, 224, 224], 1 worker, 1 thread, {} videos",
        a.clips,
        a.videos.len()
    );
    println!("{}", serde_json::json!({"implementation": "trainer loader (GStreamer + tch)", "clips_per_s": rate}));

    let Some(python) = a.python else { return Ok(()) };
    let args = ["--clips".to_string(), a.clips.to_string(), "--warmup".into(), a.warmup.to_string()]
        .into_iter()
        .chain(a.videos.iter().map(|v| v.display().to_string()));
    let (line, reference) = super::bench::run_reference(&python, "pyav_loader.py", args)?;
    let ref_rate = reference["clips_per_s"].as_f64().context("reference output has no clips_per_s")?;
    println!("{line}");
    println!("clips/s: trainer {rate:.2}, PyAV + torch {ref_rate:.2}, speed-up {:.2}x", rate / ref_rate);
    Ok(())
}
