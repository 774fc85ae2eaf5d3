use std::path::PathBuf;

use clap::Args as ClapArgs;
use trainer::synth::{SynthSpec, write::write_dataset};

#[derive(ClapArgs)]
pub struct Args {
    /// Folder to write train/, val/, train.txt, val.txt and labels.txt into.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 660)]
    train: usize,
    #[arg(long, default_value_t = 220)]
    val: usize,
    /// Width and height of the clips.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(16..=1024))]
    size: u32,
    #[arg(long, default_value_t = 48, value_parser = clap::value_parser!(u64).range(2..=10_000))]
    frames: u64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Encoding threads.
    #[arg(long, default_value_t = 2)]
    workers: usize,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let spec = SynthSpec { size: a.size, frames: a.frames as usize, seed: a.seed };
    let w = write_dataset(&a.out, &spec, a.train, a.val, a.workers)?;
    println!("wrote {} clips ({} classes) under {}", w.clips, trainer::synth::CLASSES.len(), a.out.display());
    println!("lists: {} {}", w.train_list.display(), w.val_list.display());
    println!("labels: {}", w.labels.display());
    Ok(())
}
