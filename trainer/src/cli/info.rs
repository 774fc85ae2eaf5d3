use std::path::PathBuf;

use clap::Args as ClapArgs;
use tch::{Device, nn};
use trainer::model::{Preset, SlowFast};
use trainer::recipe::Recipe;
use trainer::train::schedule::lr_at;

#[derive(ClapArgs)]
pub struct Args {
    #[arg(long, value_enum, default_value = "slowfast_8x8_r50")]
    arch: Preset,
    /// Describe the network of this training recipe instead of --arch (its
    /// crop size and frame count are used unless --size / --frames are given).
    #[arg(long, conflicts_with = "arch")]
    config: Option<PathBuf>,
    /// Square input size for the compute count.
    #[arg(long)]
    size: Option<i64>,
    /// Fast pathway frames.
    #[arg(long)]
    frames: Option<i64>,
    /// Processes the recipe would train on (the multigrid table's BN).
    #[arg(long, default_value_t = 1)]
    processes: usize,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let mut schedule = None;
    let (name, config, size, frames) = match &a.config {
        Some(path) => {
            let recipe = Recipe::load(path)?;
            recipe.check_world(a.processes)?;
            let config = recipe.model_config().map_err(|(f, w)| anyhow::anyhow!("{}: {f}: {w}", path.display()))?;
            schedule = recipe.multigrid().map(|m| m.table(a.processes, |s, e| lr_at(s, recipe.lr_scale(), e)));
            (recipe.name.clone(), config, recipe.test.crop_size as i64, recipe.data.num_frames as i64)
        }
        None => (a.arch.name().to_string(), a.arch.config(), 256, 32),
    };
    let (size, frames) = (a.size.unwrap_or(size), a.frames.unwrap_or(frames));
    let vs = nn::VarStore::new(Device::Cpu);
    let model = SlowFast::new(&vs.root(), &config)?;
    let slow = [1, 3, frames / config.alpha, size, size];
    let fast = [1, 3, frames, size, size];
    let flops = model.flops(slow, fast)?;
    println!("arch: {name}");
    println!("parameters: {}", SlowFast::num_parameters(&vs));
    println!("input: slow {slow:?}, fast {fast:?}");
    println!(
        "GMACs: {:.2} (conv {:.2}, batch norm {:.2}, linear {:.4})",
        flops.gmacs(),
        flops.conv_macs as f64 / 1e9,
        2.0 * flops.bn_elements as f64 / 1e9,
        flops.linear_macs as f64 / 1e9
    );
    if let Some(table) = schedule {
        print!("{table}");
    }
    Ok(())
}
