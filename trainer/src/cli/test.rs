use std::path::PathBuf;

use anyhow::Context;
use clap::Args as ClapArgs;
use tch::nn;
use trainer::data::Source;
use trainer::model::SlowFast;
use trainer::recipe::{Dataset, Recipe};
use trainer::train::evaluate::{TestSetup, test_multiview};
use trainer::train::setup::{self, Which};
use trainer::weights::{self, LoadMode};

#[derive(ClapArgs)]
pub struct Args {
    /// The recipe the model was trained with (its `test` section sets views and crops).
    #[arg(long)]
    config: PathBuf,
    /// Weights (safetensors, PySlowFast names) [default: <out>/weights.safetensors].
    #[arg(long)]
    weights: Option<PathBuf>,
    /// The training output folder.
    #[arg(long, default_value = "runs")]
    out: PathBuf,
    /// Class names (`id name` per line) for the report.
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Where the JSON report goes [default: <out>/test.json].
    #[arg(long)]
    report: Option<PathBuf>,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let recipe = Recipe::load(&a.config)?;
    let config = recipe.model_config().map_err(|(f, w)| anyhow::anyhow!("{f}: {w}"))?;
    recipe.check_files()?;
    let device = setup::device(recipe.device).map_err(anyhow::Error::msg)?;
    if recipe.threads > 0 {
        tch::set_num_threads(recipe.threads);
    }
    let source: Source = setup::source(&recipe, Which::Test)
        .map_err(anyhow::Error::msg)?
        .context("the recipe has no test list (data.dataset.lists.test)")?;
    let mut vs = nn::VarStore::new(device);
    let model = SlowFast::new(&vs.root(), &config)?;
    let weights_path = a.weights.clone().unwrap_or_else(|| a.out.join("weights.safetensors"));
    weights::load(&mut vs, &weights_path, LoadMode::Strict)?;
    let names: Vec<String> = match (&a.labels, &recipe.data.dataset) {
        (Some(p), _) => trainer::labels::read(p)?,
        (None, Dataset::Synthetic(_)) => trainer::synth::CLASSES.iter().map(|s| s.to_string()).collect(),
        (None, _) => (0..config.num_classes).map(|i| i.to_string()).collect(),
    };
    let t = &recipe.test;
    let test_setup = TestSetup {
        temporal: setup::temporal(&recipe),
        views: t.num_ensemble_views,
        crops: t.num_spatial_crops,
        crop: t.crop_size,
        batch_size: t.batch_size,
        normalize: setup::normalize(&recipe),
        alpha: config.alpha as usize,
        workers: recipe.loader.workers,
    };
    let r = test_multiview(&model, &source, &test_setup, &names, device, |done, n| {
        if done % 50 == 0 || done == n {
            eprintln!("tested {done}/{n} videos");
        }
    });
    println!(
        "{} videos x {} views: top-1 {:.2}%, top-5 {:.2}%",
        r.videos,
        r.views_per_video,
        r.top1 * 100.0,
        r.top5 * 100.0
    );
    for c in &r.per_class {
        println!("  {:>4} {:<28} {:>5.1}% of {}", c.id, c.name, c.top1 * 100.0, c.videos);
    }
    for c in r.confusions.iter().take(10) {
        println!("  confused: {} -> {} ({}x)", c.truth, c.predicted, c.count);
    }
    if !r.skipped.is_empty() {
        println!("skipped {} unreadable videos", r.skipped.len());
    }
    let report = a.report.unwrap_or_else(|| a.out.join("test.json"));
    std::fs::write(&report, serde_json::to_string_pretty(&r)?).with_context(|| format!("{}", report.display()))?;
    println!("report: {}", report.display());
    Ok(())
}
