//! Command-line front end: one module per subcommand.

mod bench;
mod bench_dist;
#[cfg(feature = "video")]
mod bench_loader;
mod bench_multigrid;
mod bench_train;
mod check_data;
#[cfg(feature = "video")]
mod demo;
mod export;
mod import;
mod info;
#[cfg(feature = "video")]
mod synth;
mod test;
mod train;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "trainer", version, about = "SlowFast networks in libtorch")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Parameter count and compute (GMACs) of an architecture.
    Info(info::Args),
    /// Run the network on a real video clip and report what came out.
    #[cfg(feature = "video")]
    Demo(demo::Args),
    /// Eval-mode forward latency on CPU, beside PyTorch eager in the same run.
    Bench(bench::Args),
    /// Training-loader clips/s on real videos, beside PySlowFast's PyAV loader in the same run.
    #[cfg(feature = "video")]
    BenchLoader(bench_loader::Args),
    /// Training step time (forward, backward, SGD) on CPU, beside PyTorch in the same run.
    BenchTrain(bench_train::Args),
    /// Gradient all-reduce and data-parallel step time (2 processes against 1), beside PyTorch DDP.
    BenchDist(bench_dist::Args),
    /// Multigrid against the normal schedule: one recipe trained both ways in
    /// one run (epoch time, data wait, time to accuracy, a plot).
    BenchMultigrid(bench_multigrid::Args),
    /// Write the network as an ONNX model (opset 17) that describes itself.
    Export(export::Args),
    /// Convert a checkpoint of another zoo (PySlowFast, pytorchvideo, Caffe2, PaddleVideo) to our weights, safely.
    Import(import::Args),
    /// Train a recipe; rerunning the same command resumes from the latest checkpoint.
    Train(train::Args),
    /// Multi-view test (temporal views x spatial crops) with per-class accuracy.
    Test(test::Args),
    /// Write the synthetic motion data set as H.264 MP4 clips with lists.
    #[cfg(feature = "video")]
    Synth(synth::Args),
    /// Write one video with a segment per class (and its ground truth) for demos.
    #[cfg(feature = "video")]
    SynthVideo(synth::VideoArgs),
    /// Open every video of a list and write the unreadable ones to a file.
    CheckData(check_data::Args),
}

pub fn run() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Info(a) => info::run(a),
        #[cfg(feature = "video")]
        Command::Demo(a) => demo::run(a),
        Command::Bench(a) => bench::run(a),
        #[cfg(feature = "video")]
        Command::BenchLoader(a) => bench_loader::run(a),
        Command::BenchTrain(a) => bench_train::run(a),
        Command::BenchDist(a) => bench_dist::run(a),
        Command::BenchMultigrid(a) => bench_multigrid::run(a),
        Command::Export(a) => export::run(a),
        Command::Import(a) => import::run(a),
        Command::Train(a) => train::run(a),
        Command::Test(a) => test::run(a),
        #[cfg(feature = "video")]
        Command::Synth(a) => synth::run(a),
        #[cfg(feature = "video")]
        Command::SynthVideo(a) => synth::run_video(a),
        Command::CheckData(a) => check_data::run(a),
    }
}
