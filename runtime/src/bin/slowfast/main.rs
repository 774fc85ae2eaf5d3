//! `slowfast`: SlowFast video recognition on ONNX Runtime.
//!
//! ```text
//! slowfast classify VIDEO... --model m.onnx [--views 10x3|1x1] [--top-k 5] [--json]
//!          [--backend cpu|cuda|tensorrt|openvino|auto] [--strict] [--threads N] [--engine-dir DIR]
//! slowfast compare --model m.onnx --model m_int8.onnx [--backend openvino] VIDEO...|--list LIST
//! slowfast build-engine m.onnx --fp16 --out DIR
//! slowfast bench --model m.onnx [--threads 2] [--python PY]
//! slowfast annotate INPUT [--output out.mp4] [--serve rtsp://127.0.0.1:8554/annotated] [--model m.onnx] [--json]
//! slowfast bench-pipeline [--model m.onnx] [--live-seconds 60] [--streams 1,2,4,8]
//! ```

mod annotate;
mod bench;
mod build_engine;
mod classify;
mod compare;
mod multi_stream;
mod pipeline_bench;
mod probe;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use runtime::engine::{Backend, Engine, EngineCache, EngineOptions, OpenVinoOptions, TensorRtOptions, openvino};

#[derive(Parser)]
#[command(name = "slowfast", version, about = "SlowFast video recognition on ONNX Runtime (TensorRT, CUDA, CPU) and OpenVINO (CPU)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Top-k classes of each video, averaged over temporal x spatial views.
    Classify(classify::Args),
    /// Agreement of two models (fp32 and INT8) or two engines on real videos.
    Compare(compare::Args),
    /// Build the TensorRT engine for this device once and cache it.
    BuildEngine(build_engine::Args),
    /// CPU latency per clip beside Python ONNX Runtime; preprocessing per frame.
    Bench(bench::Args),
    /// Annotate a file, URI, RTSP stream or camera: predictions drawn on the
    /// video, written to an MP4 and/or served over RTSP.
    Annotate(annotate::Args),
    /// Cost of the element on the frame path (1080p, beside `identity`) and
    /// cadence on a live 720p30 source; with --streams, many live cameras on
    /// one shared engine.
    BenchPipeline(pipeline_bench::Args),
}

/// Engine flags shared by the subcommands that run a model.
#[derive(Args, Clone)]
pub struct EngineArgs {
    /// Engine: cpu (ONNX Runtime), cuda, tensorrt, openvino (OpenVINO's CPU plugin),
    /// or auto (TensorRT, CUDA, OpenVINO on x86-64, then ONNX Runtime's CPU).
    #[arg(long, default_value = "cpu", value_parser = parse_backend)]
    backend: Backend,
    /// Fail when the requested provider cannot be used instead of falling back to CPU.
    #[arg(long)]
    strict: bool,
    /// Intra-op threads [default: all cores].
    #[arg(long)]
    threads: Option<usize>,
    /// GPU index for CUDA and TensorRT.
    #[arg(long, default_value_t = 0)]
    device: i32,
    /// Compiled-engine cache: TensorRT's (from `build-engine --out`), reused when it holds this
    /// model's engine, and OpenVINO's compiled networks [OpenVINO's default:
    /// ~/.cache/slowfast/openvino].
    #[arg(long)]
    engine_dir: Option<PathBuf>,
    /// TensorRT FP16 kernels.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    fp16: bool,
}

fn parse_backend(s: &str) -> Result<Backend, String> {
    s.parse()
}

impl EngineArgs {
    fn options(&self) -> EngineOptions {
        EngineOptions {
            backend: self.backend,
            strict: self.strict,
            threads: self.threads,
            device_id: self.device,
            tensorrt: TensorRtOptions { fp16: self.fp16, cache_dir: self.engine_dir.clone(), max_batch: 1 },
            openvino: OpenVinoOptions { cache_dir: self.engine_dir.clone().or_else(openvino::default_cache_dir) },
        }
    }
}

/// Says on stderr which provider runs the model and why others were skipped.
fn report_engine(engine: &Engine) {
    for skipped in engine.fallbacks() {
        eprintln!("slowfast: falling back: {skipped}");
    }
    match engine.cache() {
        EngineCache::Disabled => {}
        EngineCache::Hit { context_model } => eprintln!("slowfast: TensorRT engine cache hit: {}", context_model.display()),
        EngineCache::Built { context_model } => {
            eprintln!("slowfast: TensorRT engine cache miss: built and saved {}", context_model.display())
        }
    }
    eprintln!("slowfast: execution provider: {}", engine.provider());
}

fn main() -> ExitCode {
    runtime::exit_quietly_on_closed_stdout();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Classify(a) => classify::run(a),
        Command::Compare(a) => compare::run(a),
        Command::BuildEngine(a) => build_engine::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Annotate(a) => annotate::run(a),
        Command::BenchPipeline(a) => pipeline_bench::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("slowfast: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
