//! `slowfast build-engine`: builds the TensorRT engine on the device that
//! will run it and stores it with an EP context model, so the next start
//! loads it without a rebuild.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::Args as ClapArgs;
use runtime::engine::{Backend, Engine, EngineCache, EngineOptions, TensorRtOptions};

#[derive(ClapArgs)]
pub struct Args {
    /// ONNX model exported by `trainer export`.
    model: PathBuf,
    /// Directory for the engine, the timing cache and the EP context model.
    #[arg(long)]
    out: PathBuf,
    /// FP16 kernels (FP32 otherwise).
    #[arg(long)]
    fp16: bool,
    /// Largest batch the engine accepts.
    #[arg(long, default_value_t = 1)]
    max_batch: usize,
    /// GPU index.
    #[arg(long, default_value_t = 0)]
    device: i32,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let opts = EngineOptions {
        backend: Backend::TensorRt,
        // Building on CPU would produce nothing to cache.
        strict: true,
        threads: None,
        device_id: a.device,
        tensorrt: TensorRtOptions { fp16: a.fp16, cache_dir: Some(a.out.clone()), max_batch: a.max_batch },
        ..EngineOptions::default()
    };
    let start = Instant::now();
    let engine = Engine::load(&a.model, &opts).with_context(|| format!("cannot build a TensorRT engine for {}", a.model.display()))?;
    match engine.cache() {
        EngineCache::Hit { context_model } => {
            println!("engine already built: {} (loaded in {:.1} s, no rebuild)", context_model.display(), start.elapsed().as_secs_f64())
        }
        EngineCache::Built { context_model } => println!(
            "built TensorRT engine{} in {:.1} s: {} (caches in {})",
            if a.fp16 { " (FP16)" } else { "" },
            start.elapsed().as_secs_f64(),
            context_model.display(),
            a.out.display()
        ),
        EngineCache::Disabled => anyhow::bail!("no engine cache directory was used"),
    }
    println!("load it with: slowfast classify VIDEO --model {} --backend tensorrt --engine-dir {}", a.model.display(), a.out.display());
    Ok(ExitCode::SUCCESS)
}
