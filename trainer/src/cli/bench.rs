//! Forward latency of our network beside PyTorch eager running the
//! reference (pytorchvideo) network on the same machine, in the same run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args as ClapArgs;
use serde::Serialize;
use tch::{Device, Kind, Tensor, nn};
use trainer::model::{Preset, SlowFast};

#[derive(ClapArgs)]
pub struct Args {
    #[arg(long, value_enum, default_value = "slowfast_8x8_r50")]
    arch: Preset,
    #[arg(long, default_value_t = 224)]
    size: i64,
    #[arg(long, default_value_t = 2)]
    threads: i32,
    #[arg(long, default_value_t = 10)]
    iters: usize,
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Python with torch and pytorchvideo (scripts/setup-pyref.sh makes one)
    /// to time PyTorch eager beside us; skipped when not given.
    #[arg(long)]
    pytorch: Option<PathBuf>,
}

#[derive(Serialize)]
pub(crate) struct Timing {
    implementation: String,
    pub(crate) median_ms: f64,
    mean_ms: f64,
    min_ms: f64,
    max_ms: f64,
}

pub(crate) fn summarise(implementation: &str, mut ms: Vec<f64>) -> Timing {
    ms.sort_by(f64::total_cmp);
    let n = ms.len();
    let median = if n % 2 == 1 { ms[n / 2] } else { (ms[n / 2 - 1] + ms[n / 2]) / 2.0 };
    Timing {
        implementation: implementation.to_string(),
        median_ms: median,
        mean_ms: ms.iter().sum::<f64>() / n as f64,
        min_ms: ms[0],
        max_ms: ms[n - 1],
    }
}

pub(crate) fn arch_flag(p: Preset) -> &'static str {
    match p {
        Preset::SlowFast4x16R50 => "4x16",
        Preset::SlowFast8x8R50 => "8x8",
        Preset::SlowFast8x8R101 => "r101",
    }
}

/// Runs `bench/<script>` with `python` and reads the JSON object on the
/// last line of its output: `(that line, the object)`.
pub(crate) fn run_reference(
    python: &Path,
    script: &str,
    args: impl IntoIterator<Item = String>,
) -> anyhow::Result<(String, serde_json::Value)> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../bench").join(script);
    let out = Command::new(python)
        .arg(&script)
        .args(args)
        .output()
        .with_context(|| format!("running {} {}", python.display(), script.display()))?;
    if !out.status.success() {
        bail!("{} failed: {}", script.display(), String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default().to_string();
    let value = serde_json::from_str(&line).with_context(|| format!("reading the reference's output {line:?}"))?;
    Ok((line, value))
}

pub fn run(a: Args) -> anyhow::Result<()> {
    if a.iters == 0 {
        bail!("--iters must be at least 1");
    }
    tch::set_num_threads(a.threads);
    tch::manual_seed(0);
    let config = a.arch.config();
    let vs = nn::VarStore::new(Device::Cpu);
    let model = SlowFast::new(&vs.root(), &config)?;
    let slow = Tensor::randn([1, 3, 32 / config.alpha, a.size, a.size], (Kind::Float, Device::Cpu));
    let fast = Tensor::randn([1, 3, 32, a.size, a.size], (Kind::Float, Device::Cpu));
    let mut times = Vec::with_capacity(a.iters);
    for i in 0..a.warmup + a.iters {
        let t = Instant::now();
        let out = tch::no_grad(|| model.forward_t(&slow, &fast, false))?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        drop(out);
        if i >= a.warmup {
            times.push(ms);
        }
    }
    let ours = summarise("trainer (tch)", times);
    println!("{:?} batch 1, {}x{}, {} threads, {} iterations after {} warm-up", a.arch, a.size, a.size, a.threads, a.iters, a.warmup);
    println!("{}", serde_json::to_string(&ours)?);

    let Some(python) = a.pytorch else { return Ok(()) };
    let args = ["--arch", arch_flag(a.arch), "--size", &a.size.to_string(), "--threads", &a.threads.to_string()]
        .map(String::from)
        .into_iter()
        .chain(["--iters".into(), a.iters.to_string(), "--warmup".into(), a.warmup.to_string()]);
    let (line, reference) = run_reference(&python, "pytorch_eager.py", args)?;
    let ref_median = reference["median_ms"].as_f64().context("reference output has no median_ms")?;
    println!("{line}");
    println!("median: trainer {:.1} ms, PyTorch eager {:.1} ms, ratio {:.3}x", ours.median_ms, ref_median, ours.median_ms / ref_median);
    Ok(())
}
