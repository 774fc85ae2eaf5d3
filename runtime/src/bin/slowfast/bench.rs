//! `slowfast bench`: latency per batch of our CPU engines (ONNX Runtime,
//! OpenVINO) beside Python ONNX Runtime, Python OpenVINO and optionally
//! PyTorch eager on the same file in the same run, and the per-frame cost
//! of preprocessing a 1080p frame into the clip ring buffer.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args as ClapArgs;
use runtime::engine::{Backend, Engine, EngineOptions, OpenVinoOptions};
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
    /// Our engines to time, comma-separated: cpu (ONNX Runtime), openvino.
    #[arg(long, default_value = "cpu,openvino", value_delimiter = ',', value_parser = parse_backend)]
    backends: Vec<Backend>,
    /// An INT8 sibling of --model (`trainer export --int8`), timed on the same engines in the same run.
    #[arg(long)]
    int8: Option<PathBuf>,
    /// Batch sizes, comma-separated; each is timed on every engine.
    #[arg(long, default_value = "1", value_delimiter = ',')]
    batch: Vec<usize>,
    /// Python with `onnxruntime` and `openvino` (scripts/setup-pyref.sh
    /// makes one) to time the same model from Python; skipped when not given.
    #[arg(long)]
    python: Option<PathBuf>,
    /// Also time PyTorch eager (pytorchvideo's network of the model's
    /// architecture, R50 8x8 or 4x16) with `--python`.
    #[arg(long)]
    pytorch: bool,
    /// Folder of the Python side of the benchmark.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../bench"))]
    scripts: PathBuf,
    /// 1080p frames pushed into the ring buffer.
    #[arg(long, default_value_t = 200)]
    frames: usize,
}

fn parse_backend(s: &str) -> Result<Backend, String> {
    match s.parse()? {
        b @ (Backend::Cpu | Backend::OpenVino) => Ok(b),
        _ => Err(format!("{s}: `bench` times the CPU engines (cpu, openvino)")),
    }
}

#[derive(Serialize, Clone)]
struct Timing {
    bench: String,
    implementation: String,
    median_ms: f64,
    mean_ms: f64,
    min_ms: f64,
    max_ms: f64,
    iters: usize,
    threads: usize,
    batch: usize,
}

fn summarise(bench: &str, implementation: &str, threads: usize, batch: usize, mut ms: Vec<f64>) -> Timing {
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
        batch,
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

/// One of the Python references: a script and its arguments.
struct Reference {
    script: &'static str,
    args: Vec<String>,
    /// The name printed when the script gives none.
    name: &'static str,
}

/// Runs a reference script and reads the last JSON line it prints.
fn run_python(py: &Path, scripts: &Path, r: &Reference) -> anyhow::Result<Timing> {
    let script = scripts.join(r.script);
    let out =
        Command::new(py).arg(&script).args(&r.args).output().with_context(|| format!("running {} {}", py.display(), script.display()))?;
    if !out.status.success() {
        bail!("{} failed: {}", script.display(), String::from_utf8_lossy(&out.stderr));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().rev().find(|l| l.starts_with('{')).with_context(|| format!("{} printed no JSON line", script.display()))?;
    let v: serde_json::Value = serde_json::from_str(line).with_context(|| format!("{} printed {line:?}", script.display()))?;
    let num =
        |k: &str| v.get(k).and_then(serde_json::Value::as_f64).with_context(|| format!("{} printed no {k:?}: {line}", script.display()));
    Ok(Timing {
        bench: "clip_latency".into(),
        implementation: v.get("implementation").and_then(|s| s.as_str()).unwrap_or(r.name).to_string(),
        median_ms: num("median_ms")?,
        mean_ms: num("mean_ms")?,
        min_ms: num("min_ms")?,
        max_ms: num("max_ms")?,
        iters: num("iters")? as usize,
        threads: num("threads")? as usize,
        batch: num("batch").map(|b| b as usize).unwrap_or(1),
    })
}

fn engine_name(backend: Backend) -> &'static str {
    match backend {
        Backend::OpenVino => "runtime (Rust, OpenVINO CPU)",
        _ => "runtime (Rust, ort CPU)",
    }
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    if a.iters == 0 || a.frames == 0 || a.batch.contains(&0) {
        bail!("--iters, --frames and every --batch must be at least 1");
    }
    if a.pytorch && a.python.is_none() {
        bail!("--pytorch needs --python (a Python with torch and pytorchvideo)");
    }
    let mut engines = Vec::new();
    let models: Vec<(&PathBuf, bool)> = std::iter::once((&a.model, false)).chain(a.int8.as_ref().map(|m| (m, true))).collect();
    for (model, int8) in models {
        for &backend in &a.backends {
            let opts = EngineOptions {
                backend,
                strict: true,
                threads: Some(a.threads),
                openvino: OpenVinoOptions { cache_dir: None },
                ..EngineOptions::default()
            };
            let engine = Engine::load(model, &opts).with_context(|| format!("{} on {backend:?}", model.display()))?;
            if int8 && engine.info().quantization.is_none() {
                bail!("--int8 {}: the model is not quantised (no slowfast.quantization)", model.display());
            }
            let name = format!("{}{}", engine_name(backend), if int8 { ", INT8" } else { "" });
            engines.push((name, engine));
        }
    }
    let Some((_, first)) = engines.first() else { bail!("--backends names no engine") };
    let info = first.info().clone();
    let size = info.crop_size;
    let torch_arch = match info.arch.as_str() {
        "slowfast_8x8_r50" => Some("8x8"),
        "slowfast_4x16_r50" => Some("4x16"),
        _ => None,
    };
    if a.pytorch && torch_arch.is_none() {
        bail!("--pytorch: no pytorchvideo network for architecture {:?} (R50 8x8 and 4x16 only)", info.arch);
    }

    let mut rows: Vec<Timing> = Vec::new();
    for &batch in &a.batch {
        let clips: Vec<Clip> = (0..batch as u64)
            .map(|k| Clip {
                slow: pseudo_random(3 * info.slow_frames * size * size, 1 + 2 * k),
                fast: pseudo_random(3 * info.fast_frames * size * size, 2 + 2 * k),
                slow_frames: info.slow_frames,
                fast_frames: info.fast_frames,
                size,
            })
            .collect();
        let refs: Vec<&Clip> = clips.iter().collect();
        let common = |extra: &[String]| {
            let mut v = vec!["--threads".to_string(), a.threads.to_string(), "--batch".into(), batch.to_string()];
            v.extend(["--iters".to_string(), a.iters.to_string(), "--warmup".into(), a.warmup.to_string()]);
            v.extend_from_slice(extra);
            v
        };
        let model_arg = ["--model".to_string(), a.model.display().to_string()];
        let mut references = vec![
            Reference { script: "onnxruntime_python.py", args: common(&model_arg), name: "Python onnxruntime" },
            Reference { script: "openvino_python.py", args: common(&model_arg), name: "Python OpenVINO" },
        ];
        if a.pytorch
            && let Some(arch) = torch_arch
        {
            let arch_args = ["--arch".to_string(), arch.to_string(), "--size".into(), size.to_string()];
            references.push(Reference { script: "pytorch_eager.py", args: common(&arch_args), name: "PyTorch eager" });
        }
        // Our iterations are split around the Python runs, so neither side
        // always takes the first (or last) place on a host whose speed
        // drifts over a minute (seen here: whichever ran first was about 5 %
        // slower).
        let mut times: Vec<Vec<f64>> = vec![Vec::with_capacity(a.iters); engines.len()];
        let first_half = if a.python.is_some() { a.iters / 2 } else { a.iters };
        let mut time_ours = |iters: usize, warmup: usize, times: &mut Vec<Vec<f64>>| -> anyhow::Result<()> {
            for ((_, engine), out) in engines.iter_mut().zip(times.iter_mut()) {
                for i in 0..warmup + iters {
                    let t = Instant::now();
                    engine.probabilities(&refs)?;
                    if i >= warmup {
                        out.push(t.elapsed().as_secs_f64() * 1e3);
                    }
                }
            }
            Ok(())
        };
        time_ours(first_half, a.warmup, &mut times)?;
        let mut python = Vec::new();
        if let Some(py) = &a.python {
            for r in &references {
                python.push(run_python(py, &a.scripts, r)?);
            }
        }
        time_ours(a.iters - first_half, 0, &mut times)?;
        for ((name, _), ms) in engines.iter().zip(times) {
            rows.push(summarise("clip_latency", name, a.threads, batch, ms));
        }
        rows.extend(python);
    }
    for r in &rows {
        println!("{}", serde_json::to_string(r)?);
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
    let prep = summarise("preprocess_1080p_frame", "ring buffer push (resize + normalise)", 1, 1, push);
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
    let window = (!assemble.is_empty()).then(|| summarise("assemble_window", "ring buffer latest window (copy only)", 1, 1, assemble));
    if let Some(wt) = &window {
        println!("{}", serde_json::to_string(wt)?);
    }

    println!();
    println!("model {} ({}, {}x{} crop), {} threads, median of {} runs:", a.model.display(), info.arch, size, size, a.threads, a.iters);
    for &batch in &a.batch {
        let of_batch: Vec<&Timing> = rows.iter().filter(|r| r.batch == batch).collect();
        let python_ort = of_batch.iter().find(|r| r.implementation.starts_with("Python onnxruntime")).map(|r| r.median_ms);
        println!("  batch {batch}:");
        for r in of_batch {
            let clips_per_s = batch as f64 * 1e3 / r.median_ms;
            let ratio = python_ort.map(|p| format!("  ({:.2}x Python onnxruntime's time)", r.median_ms / p)).unwrap_or_default();
            println!("    {:<40} {:>10.1} ms/batch {:>7.2} clips/s{ratio}", r.implementation, r.median_ms, clips_per_s);
        }
    }
    println!("  {:<40} {:>10.3} ms/frame (1920x1080 RGB, one core)", prep.implementation, prep.median_ms);
    if let Some(wt) = &window {
        println!("  {:<40} {:>10.3} ms/window", wt.implementation, wt.median_ms);
    }
    Ok(ExitCode::SUCCESS)
}
