use std::path::PathBuf;

use clap::Args as ClapArgs;
use trainer::synth::{
    CLASSES, SynthSpec, render_video,
    write::{write_dataset, write_video},
};

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

#[derive(ClapArgs)]
pub struct VideoArgs {
    /// MP4 to write; the ground truth goes beside it as <name>.segments.txt.
    #[arg(long)]
    out: PathBuf,
    /// Width and height of the video (the motion scales with it).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(16..=1024))]
    size: u32,
    /// Seconds of each class's segment.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Length of the training clips whose pace the video keeps (`synth --frames`).
    #[arg(long, default_value_t = 48, value_parser = clap::value_parser!(u64).range(2..=10_000))]
    clip_frames: u64,
    /// Class ids in the order they appear [default: every class once, in label order].
    #[arg(long, value_delimiter = ',')]
    classes: Vec<usize>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn run_video(a: VideoArgs) -> anyhow::Result<()> {
    if !(a.seconds.is_finite() && a.seconds > 0.0 && a.seconds <= 3600.0) {
        anyhow::bail!("--seconds must be in (0, 3600], got {}", a.seconds);
    }
    if let Some(bad) = a.classes.iter().find(|&&c| c >= CLASSES.len()) {
        anyhow::bail!("--classes: {bad} is not a class id (0..{})", CLASSES.len() - 1);
    }
    let order: Vec<usize> = if a.classes.is_empty() { (0..CLASSES.len()).collect() } else { a.classes.clone() };
    let spec = SynthSpec { size: a.size, frames: a.clip_frames as usize, seed: a.seed };
    let segment_frames = ((a.seconds * trainer::synth::FPS as f64).round() as usize).max(1);
    let video = render_video(&spec, &order, segment_frames);
    let truth = write_video(&video, &a.out)?;
    println!(
        "wrote {} ({} segments of {:.1} s, {}x{}), ground truth {}",
        a.out.display(),
        video.segments.len(),
        a.seconds,
        a.size,
        a.size,
        truth.display()
    );
    Ok(())
}
