use std::path::PathBuf;

use clap::Args as ClapArgs;
use trainer::recipe::Recipe;

#[derive(ClapArgs)]
pub struct Args {
    /// YAML recipe (see configs/).
    #[arg(long)]
    config: PathBuf,
    /// Output folder: checkpoints, metrics.jsonl, plots, weights
    /// [default: runs/<recipe file name>]. Rerunning the same command
    /// resumes from its latest checkpoint.
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let recipe = Recipe::load(&a.config)?;
    let out = a.out.unwrap_or_else(|| {
        PathBuf::from("runs").join(a.config.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default())
    });
    let s = trainer::train::train(&recipe, &out)?;
    println!("trained {} epochs into {}", s.epochs, out.display());
    if let Some(e) = s.resumed_from {
        println!("resumed after epoch {e}");
    }
    if let Some(top1) = s.val_top1 {
        println!("validation top-1: {:.2}%", top1 * 100.0);
    }
    println!("unreadable videos skipped: {}", s.skipped_videos);
    println!("weights: {}", s.final_weights.display());
    Ok(())
}
