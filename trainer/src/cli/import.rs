//! `trainer import`: a checkpoint from another SlowFast zoo as our
//! safetensors weights, without Python and without running anything in the
//! file.
//!
//! ```text
//! trainer import SLOWFAST_8x8_R50.pyth --arch slowfast_8x8_r50 --out w.safetensors
//! trainer import model.pt --config configs/my_recipe.yaml --from pytorchvideo --out w.safetensors
//! ```
//!
//! The kind of file is told by its content (torch zip or pickle) and the
//! zoo by its tensor names (`--from` overrides). The weights are loaded
//! strictly into the network first, so every missing, unexpected or
//! mis-shaped tensor is named and nothing is written for a checkpoint of
//! another variant. Every command that takes `--weights` reads these files
//! directly too; `import` is for converting once and for the report.
//! `--inflate` starts a video network from image weights instead (2D conv
//! weights spread over time, a partial load that lists what it kept).

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args as ClapArgs;
use tch::{Device, nn};
use trainer::import::{self, Zoo};
use trainer::model::{Preset, SlowFast};
use trainer::recipe::Recipe;
use trainer::weights::{self, LoadMode};

#[derive(ClapArgs)]
pub struct Args {
    /// The checkpoint: PySlowFast `.pyth`, pytorchvideo `.pt`/`.pyth`,
    /// Caffe2 `.pkl`, PaddleVideo `.pdparams`, a torch-saved state dict.
    input: PathBuf,
    /// A published architecture (or give --config).
    #[arg(long, value_enum, required_unless_present = "config", conflicts_with = "config")]
    arch: Option<Preset>,
    /// Training recipe whose model the checkpoint is for (any widths).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Classes of the checkpoint's head, when not the preset's 400.
    #[arg(long, conflicts_with = "config")]
    num_classes: Option<i64>,
    /// Which zoo's names: auto (from the names), pyslowfast, pytorchvideo,
    /// caffe2, paddlevideo.
    #[arg(long = "from", default_value = "auto")]
    zoo: String,
    /// The safetensors file to write.
    #[arg(long)]
    out: PathBuf,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
    /// The checkpoint is of an image (2D) network, e.g. ImageNet Caffe2
    /// weights: inflate its conv weights over time and load what fits,
    /// keeping the initialisation of the rest (as PySlowFast does when a
    /// video network starts from ImageNet).
    #[arg(long)]
    inflate: bool,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let zoo = match a.zoo.as_str() {
        "auto" => None,
        z => Some(z.parse::<Zoo>().map_err(anyhow::Error::msg).context("--from")?),
    };
    let config = match (&a.config, a.arch) {
        (Some(path), _) => {
            let recipe = Recipe::load(path)?;
            recipe.model_config().map_err(|(key, why)| anyhow::anyhow!("{}: `{key}`: {why}", path.display()))?
        }
        (None, Some(arch)) => {
            let mut c = arch.config();
            if let Some(n) = a.num_classes {
                c.num_classes = n;
            }
            c
        }
        (None, None) => bail!("give --arch PRESET or --config RECIPE.yaml"),
    };
    let imported = import::import(&a.input, zoo)?;
    let mut vs = nn::VarStore::new(Device::Cpu);
    let _model = SlowFast::new(&vs.root(), &config)?;
    let inflated = if a.inflate {
        Some(weights::load_inflated(&mut vs, &imported.tensors))
    } else {
        weights::load_tensors(&mut vs, &imported.tensors, &a.input, LoadMode::Strict)?;
        None
    };
    if let Some(i) = &inflated
        && i.copied + i.inflated == 0
    {
        bail!("{}: none of its tensors fits the network (is --arch / --config right?)", a.input.display());
    }
    weights::save(&vs, &a.out)?;
    let r = &imported.report;
    if a.json {
        println!("{}", serde_json::to_string(r)?);
        return Ok(());
    }
    println!("{}: a {} checkpoint ({}), state dict at {}", a.input.display(), r.zoo, r.container, r.state_dict_at);
    let prefix = if r.dropped_module_prefix { " (`module.` prefix dropped)" } else { "" };
    match &inflated {
        None => println!("  {} tensors mapped to PySlowFast names and loaded strictly{prefix}", r.tensors),
        Some(i) => {
            println!("  {} tensors mapped to PySlowFast names{prefix}: {} copied, {} inflated over time", r.tensors, i.copied, i.inflated);
            println!("  {} tensors of the network keep their initialisation:", i.kept.len());
            for k in &i.kept {
                println!("    {k}");
            }
            if !i.unused.is_empty() {
                println!("  {} tensors of the file have no place in the network: {}", i.unused.len(), i.unused.join(", "));
            }
        }
    }
    if r.optimizer_state || r.other_tensors > 0 {
        println!("  not imported: optimizer state ({} tensors)", r.other_tensors);
    }
    if let Some(e) = r.epoch {
        println!("  trained for {e} epochs");
    }
    if let Some(cfg) = &r.cfg {
        println!("  training config stored alongside ({} lines)", cfg.lines().count());
    }
    println!("wrote {}", a.out.display());
    Ok(())
}
