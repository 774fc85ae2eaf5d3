//! Command-line front end: one module per subcommand.

mod bench;
#[cfg(feature = "video")]
mod demo;
mod export;
mod info;

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
    /// Write the network as an ONNX model (opset 17) that describes itself.
    Export(export::Args),
}

pub fn run() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Info(a) => info::run(a),
        #[cfg(feature = "video")]
        Command::Demo(a) => demo::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Export(a) => export::run(a),
    }
}
