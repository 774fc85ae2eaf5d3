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
        shard: Default::default(),
    }
}

/// The loader for `clips` training clips of `videos` (cycled), and the
/// clips it will make: (video, start as a fraction of the free range).
fn loader(videos: &[PathBuf], clips: usize, seed: u64) -> (Loader, Vec<(PathBuf, f64)>) {
    let samples: Vec<Sample> = (0..clips).map(|i| Sample { path: videos[i % videos.len()].clone(), label: 0 }).collect();
    let loader = Loader::new(Source::List(samples.clone()), options(seed));
    let plan = loader.order(0).into_iter().enumerate().map(|(pos, i)| (samples[i].path.clone(), loader.clip_fraction(0, pos))).collect();
    (loader, plan)
}

/// Clips made and seconds taken by `loader`, after `warmup` untimed clips.
fn ours(videos: &[PathBuf], loader: &Loader, warmup: usize) -> anyhow::Result<(usize, f64)> {
    let (warm, _) = self::loader(videos, warmup, 1);
    for b in warm.epoch(0) {
        b?;
    }
    let start = Instant::now();
    let mut made = 0;
    for b in loader.epoch(0) {
        let b = b.map_err(|e| anyhow::anyhow!("{e}"))?;
        if !b.failures.is_empty() {
            bail!("{}: {}", b.failures[0].name, b.failures[0].why);
        }
        made += b.samples.len();
    }
    Ok((made, start.elapsed().as_secs_f64()))
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
    println!(
        "loader: {} clips of 32 frames (rate 2) -> [3, 32, 224, 224] + [3, 8, 224, 224], 1 worker, 1 thread, {} videos",
        a.clips,
        a.videos.len()
    );
    let Some(python) = a.python else {
        let (made, secs) = ours(&a.videos, &loader(&a.videos, a.clips, 2).0, a.warmup)?;
        let rate = made as f64 / secs;
        println!("{}", serde_json::json!({"implementation": "trainer loader (GStreamer + tch)", "clips_per_s": rate}));
        return Ok(());
    };
    // This host's speed drifts over tens of seconds, so our clips are made
    // in two halves around the reference run rather than all before it.
    // The reference decodes the very same clips (video and start), as
    // their cost depends on how far each lies from a key frame.
    let (first_half, mut plan) = loader(&a.videos, a.clips.div_ceil(2), 2);
    let (second_half, rest) = loader(&a.videos, a.clips / 2, 3);
    plan.extend(rest);
    let plan_file = std::env::temp_dir().join(format!("slowfast-loader-plan-{}.json", std::process::id()));
    let plan_json: Vec<_> = plan.iter().map(|(p, f)| serde_json::json!([p.display().to_string(), f])).collect();
    std::fs::write(&plan_file, serde_json::to_string(&plan_json)?).with_context(|| format!("writing {}", plan_file.display()))?;

    let first = ours(&a.videos, &first_half, a.warmup)?;
    let args = ["--plan".to_string(), plan_file.display().to_string(), "--warmup".into(), a.warmup.to_string()]
        .into_iter()
        .chain(a.videos.iter().map(|v| v.display().to_string()));
    let reference = super::bench::run_reference(&python, "pyav_loader.py", args);
    let _ = std::fs::remove_file(&plan_file);
    let (line, reference) = reference?;
    let ref_rate = reference["clips_per_s"].as_f64().context("reference output has no clips_per_s")?;
    let second = if a.clips >= 2 { ours(&a.videos, &second_half, a.warmup)? } else { (0, 0.0) };
    let rate = (first.0 + second.0) as f64 / (first.1 + second.1);
    let halves: Vec<f64> = [first, second].iter().filter(|h| h.0 > 0).map(|h| h.0 as f64 / h.1).collect();
    println!(
        "{}",
        serde_json::json!({"implementation": "trainer loader (GStreamer + tch)", "clips_per_s": rate, "halves_clips_per_s": halves})
    );
    println!("{line}");
    println!("clips/s: trainer {rate:.2}, PyAV + torch {ref_rate:.2}, speed-up {:.2}x", rate / ref_rate);
    Ok(())
}
