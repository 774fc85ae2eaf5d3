//! `slowfast bench`: per-clip latency of the CPU engine beside Python ONNX
//! Runtime running the same file in the same run, and the per-frame cost
//! of preprocessing a 1080p frame into the clip ring buffer.

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args as ClapArgs;
use runtime::engine::{Backend, Engine, EngineOptions};
use runtime::preprocess::Clip;
use runtime::ring::{ClipRing, RingConfig};
use serde::Serialize;

#[derive(ClapArgs)]
pub struct Args {
    /// ONNX model exported by `trainer export`.
    #[arg(long)]
    model: PathBuf,
    #[arg(long, default_value_t = 2)]
    threads: usize,
    #[arg(long, default_value_t = 10)]
    iters: usize,
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Python with `onnxruntime` (scripts/setup-pyref.sh makes one) to time
    /// the same model from Python; skipped when not given.
    #[arg(long)]
    python: Option<PathBuf>,
    /// The Python side of the benchmark.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../bench/onnxruntime_python.py"))]
    script: PathBuf,
    /// 1080p frames pushed into the ring buffer.
    #[arg(long, default_value_t = 200)]
    frames: usize,
}

#[derive(Serialize, serde::Deserialize, Clone)]
struct Timing {
    bench: String,
    implementation: String,
    median_ms: f64,
    mean_ms: f64,
    min_ms: f64,
    max_ms: f64,
    iters: usize,
    threads: usize,
}

fn summarise(bench: &str, implementation: &str, threads: usize, mut ms: Vec<f64>) -> Timing {
    ms.sort_by(f64::total_cmp);
    let n = ms.len();
    let median = if n % 2 == 1 { ms[n / 2] } else { (ms[n / 2 - 1] + ms[n / 2]) / 2.0 };
    Timing {
        bench: bench.into(),
        implementation: implementation.into(),
        median_ms: median,
        mean_ms: ms.iter().sum::<f64>() / n as f64,
        min_ms: ms[0],
        max_ms: ms[n - 1],
        iters: n,
        threads,
    }
}

/// Deterministic inputs in roughly the normalised range.
fn pseudo_random(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        })
        .collect()
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    if a.iters == 0 || a.frames == 0 {
        bail!("--iters and --frames must be at least 1");
    }
    let opts = EngineOptions { backend: Backend::Cpu, strict: true, threads: Some(a.threads), ..EngineOptions::default() };
    let mut engine = Engine::load(&a.model, &opts)?;
    let info = engine.info().clone();
    let size = info.crop_size;
    let clip = Clip {
        slow: pseudo_random(3 * info.slow_frames * size * size, 1),
        fast: pseudo_random(3 * info.fast_frames * size * size, 2),
        slow_frames: info.slow_frames,
        fast_frames: info.fast_frames,
        size,
    };
    // Our iterations are split around the Python run, so neither side
    // always takes the first (or last) place on a host whose speed drifts
    // over a minute (seen here: whichever ran first was about 5 % slower).
    let mut times = Vec::with_capacity(a.iters);
    let mut time_ours = |iters: usize, warmup: usize, times: &mut Vec<f64>| -> anyhow::Result<()> {
        for i in 0..warmup + iters {
            let t = Instant::now();
            engine.probabilities(&[&clip])?;
            if i >= warmup {
                times.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
        Ok(())
    };
    let first_half = if a.python.is_some() { a.iters / 2 } else { a.iters };
    time_ours(first_half, a.warmup, &mut times)?;

    let python = match &a.python {
        Some(py) => {
            let out = Command::new(py)
                .arg(&a.script)
                .args(["--model", &a.model.display().to_string()])
                .args(["--threads", &a.threads.to_string(), "--iters", &a.iters.to_string(), "--warmup", &a.warmup.to_string()])
                .output()
                .with_context(|| format!("running {} {}", py.display(), a.script.display()))?;
            if !out.status.success() {
                bail!("{} failed: {}", a.script.display(), String::from_utf8_lossy(&out.stderr));
            }
            let stdout = String::from_utf8_lossy(&out.stdout);
            let line = stdout.lines().rev().find(|l| l.starts_with('{')).context("the Python benchmark printed no JSON line")?;
            let t: Timing = serde_json::from_str(line).with_context(|| format!("the Python benchmark printed {line:?}"))?;
            Some(t)
        }
        None => None,
    };
    time_ours(a.iters - first_half, 0, &mut times)?;
    let ours = summarise("clip_latency", "runtime (Rust, ort)", a.threads, times);
    println!("{}", serde_json::to_string(&ours)?);
    if let Some(t) = &python {
        println!("{}", serde_json::to_string(t)?);
    }

    // Preprocessing: the ring's push is single-threaded, so this is one core.
    let (w, h) = (1920usize, 1080usize);
    let frame: Vec<u8> = (0..w * h * 3).map(|i| ((i * 31) ^ (i >> 11)) as u8).collect();
    let mut ring = ClipRing::new(RingConfig::from_model(&info), 30.0);
    let mut push = Vec::with_capacity(a.frames);
    for _ in 0..a.frames {
        let t = Instant::now();
        ring.push_rgb(&frame, w, h)?;
        push.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let prep = summarise("preprocess_1080p_frame", "ring buffer push (resize + normalise)", 1, push);
    println!("{}", serde_json::to_string(&prep)?);
    let mut assemble = Vec::new();
    if ring.is_ready() {
        for _ in 0..20 {
            let t = Instant::now();
            if let Some(c) = ring.latest_window(runtime::preprocess::SpatialCrop::Centre) {
                c?;
            }
            assemble.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    let window = (!assemble.is_empty()).then(|| summarise("assemble_window", "ring buffer latest window (copy only)", 1, assemble));
    if let Some(wt) = &window {
        println!("{}", serde_json::to_string(wt)?);
    }

    println!();
    println!(
        "model {} ({}, {}x{} crop, batch 1), {} threads, median of {} runs:",
        a.model.display(),
        info.arch,
        size,
        size,
        a.threads,
        a.iters
    );
    println!("  {:<40} {:>10.1} ms/clip", ours.implementation, ours.median_ms);
    if let Some(p) = &python {
        println!("  {:<40} {:>10.1} ms/clip  (ours / Python = {:.2})", p.implementation, p.median_ms, ours.median_ms / p.median_ms);
    }
    println!("  {:<40} {:>10.3} ms/frame (1920x1080 RGB, one core)", prep.implementation, prep.median_ms);
    if let Some(wt) = &window {
        println!("  {:<40} {:>10.3} ms/window", wt.implementation, wt.median_ms);
    }
    Ok(ExitCode::SUCCESS)
}
