use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args as ClapArgs;
use runtime::engine::{Backend, Engine, EngineOptions};
use tch::{Kind, Tensor, nn};
use trainer::data::Source;
use trainer::data::{Failure, Shard};
use trainer::dist::Dist;
use trainer::model::SlowFast;
use trainer::recipe::{Dataset, Recipe};
use trainer::train::evaluate::{TestSetup, multiview_probs, multiview_probs_by, summarise};
use trainer::train::setup::{self, Which};
use trainer::weights::{self, LoadMode};

#[derive(ClapArgs)]
pub struct Args {
    /// The recipe the model was trained with (its `test` section sets views and crops).
    #[arg(long)]
    config: PathBuf,
    /// Weights (safetensors, PySlowFast names) [default: <out>/weights.safetensors].
    #[arg(long, conflicts_with = "onnx")]
    weights: Option<PathBuf>,
    /// Test an exported model (fp32 or INT8) on one of the runtime's engines instead of the
    /// libtorch network, with the recipe's own protocol.
    #[arg(long)]
    onnx: Option<PathBuf>,
    /// Engine for --onnx: cpu (ONNX Runtime), openvino, cuda, tensorrt, auto.
    #[arg(long, default_value = "cpu", requires = "onnx")]
    backend: String,
    /// The training output folder.
    #[arg(long, default_value = "runs")]
    out: PathBuf,
    /// Class names (`id name` per line) for the report.
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Where the JSON report goes [default: <out>/test.json].
    #[arg(long)]
    report: Option<PathBuf>,
    #[command(flatten)]
    launch: super::train::LaunchArgs,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let recipe = Recipe::load(&a.config)?;
    let config = recipe.model_config().map_err(|(f, w)| anyhow::anyhow!("{f}: {w}"))?;
    recipe.check_files()?;
    let mut worker: Vec<OsString> = vec!["test".into(), "--config".into(), a.config.clone().into(), "--out".into(), a.out.clone().into()];
    if a.onnx.is_some() {
        worker.extend(["--backend".into(), a.backend.clone().into()]);
    }
    for (flag, value) in [("--weights", &a.weights), ("--onnx", &a.onnx), ("--labels", &a.labels), ("--report", &a.report)] {
        if let Some(v) = value {
            worker.extend([flag.into(), v.clone().into()]);
        }
    }
    if a.launch.start_workers(&recipe, &worker)? {
        return Ok(());
    }
    let device = setup::device(recipe.device).map_err(anyhow::Error::msg)?;
    let dist = super::train::join(&recipe, device, None)?;
    let device = dist.as_ref().map_or(device, |(_, d)| *d);
    let dist = dist.map(|(d, _)| d);
    if recipe.threads > 0 {
        tch::set_num_threads(recipe.threads);
    }
    let source: Source = setup::source(&recipe, Which::Test)
        .map_err(anyhow::Error::msg)?
        .context("the recipe has no test list (data.dataset.lists.test)")?;
    // Checked before any video is read.
    let mut engine = match &a.onnx {
        Some(path) => Some(onnx_engine(path, &a.backend, &recipe, &config, recipe.threads.max(0) as usize)?),
        None => None,
    };
    let mut vs = nn::VarStore::new(device);
    let model = SlowFast::new(&vs.root(), &config)?;
    if engine.is_none() {
        let weights_path = a.weights.clone().unwrap_or_else(|| a.out.join("weights.safetensors"));
        weights::load(&mut vs, &weights_path, LoadMode::Strict)?;
    }
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
        shard: dist.as_ref().map_or(Shard::default(), |d| Shard { rank: d.rank(), world: d.world() }),
    };
    let progress = |done: usize, n: usize| {
        if done.is_multiple_of(50) || done == n {
            eprintln!("tested {done}/{n} videos");
        }
    };
    let (mut probs, mut skipped) = match engine.as_mut() {
        Some(engine) => multiview_probs_by(&source, &test_setup, |slow, fast| engine_forward(engine, slow, fast), progress),
        None => multiview_probs(&model, &source, &test_setup, device, progress),
    };
    if let Some(d) = &dist {
        match gather(d, source.len(), config.num_classes, &probs, &skipped)? {
            Some((all, all_skipped)) => (probs, skipped) = (all, all_skipped),
            None => return Ok(()),
        }
    }
    let mut r = summarise(&probs, skipped, &source, &names, config.num_classes as usize);
    r.views_per_video = t.num_ensemble_views * t.num_spatial_crops;
    println!("{} videos x {} views: top-1 {:.2}%, top-5 {:.2}%", r.videos, r.views_per_video, r.top1 * 100.0, r.top5 * 100.0);
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

/// Summed softmax rows by video, and the videos skipped.
type Gathered = (BTreeMap<usize, Tensor>, Vec<Failure>);

/// Every rank's summed softmax rows and skipped videos, for rank 0 (the
/// others get `None`): rows go through one all-reduce of an `[N, C]` table
/// (each video is some rank's alone), skipped videos through the store.
fn gather(d: &Dist, n: usize, classes: i64, probs: &BTreeMap<usize, Tensor>, skipped: &[Failure]) -> anyhow::Result<Option<Gathered>> {
    let table = Tensor::zeros([n as i64, classes + 1], (Kind::Double, tch::Device::Cpu));
    for (&i, p) in probs {
        let row = table.get(i as i64);
        row.narrow(0, 0, classes).copy_(&p.to_kind(Kind::Double).to_device(tch::Device::Cpu));
        let _ = row.narrow(0, classes, 1).fill_(1.0);
    }
    let table = table.to_device(d.device);
    d.group.all_reduce_sum(&[&table]).map_err(|e| d.explain(0, "gathering test predictions", &e))?;
    let Some(skipped) = d.gather_failures("test_skipped", skipped)? else { return Ok(None) };
    let table = table.to_device(tch::Device::Cpu);
    let all = (0..n)
        .filter(|&i| table.double_value(&[i as i64, classes]) > 0.0)
        .map(|i| (i, table.get(i as i64).narrow(0, 0, classes).to_kind(Kind::Float)))
        .collect();
    Ok(Some((all, skipped)))
}

/// The exported model on its engine, after checking that it takes the
/// recipe's clips and classes.
fn onnx_engine(
    path: &std::path::Path,
    backend: &str,
    recipe: &Recipe,
    config: &trainer::model::ModelConfig,
    threads: usize,
) -> anyhow::Result<Engine> {
    let backend: Backend = backend.parse().map_err(anyhow::Error::msg)?;
    let opts = EngineOptions { backend, strict: true, threads: (threads > 0).then_some(threads), ..EngineOptions::default() };
    let engine = Engine::load(path, &opts)?;
    let info = engine.info();
    let checks = [
        ("slowfast.num_classes", info.num_classes, config.num_classes as usize, "model.num_classes"),
        ("slowfast.fast_frames", info.fast_frames, recipe.data.num_frames, "data.num_frames"),
        ("slowfast.crop_size", info.crop_size, recipe.test.crop_size as usize, "test.crop_size"),
        ("slowfast.alpha", info.alpha, config.alpha as usize, "model.alpha"),
    ];
    for (key, model, wanted, field) in checks {
        if model != wanted && !(key == "slowfast.crop_size" && info.dynamic_spatial) {
            anyhow::bail!("{}: {key} is {model} but the recipe's {field} is {wanted}", path.display());
        }
    }
    eprintln!("testing {} on {}", path.display(), engine.provider());
    Ok(engine)
}

/// One batch of views through the engine: the softmax rows as a tensor.
fn engine_forward(engine: &mut Engine, slow: &Tensor, fast: &Tensor) -> Result<Tensor, String> {
    let n = slow.size()[0];
    let to_vec = |t: &Tensor| Vec::<f32>::try_from(t.to_kind(Kind::Float).contiguous().view([-1])).map_err(|e| e.to_string());
    let mut clips = Vec::with_capacity(n as usize);
    for i in 0..n {
        let (s, f) = (slow.get(i), fast.get(i));
        let size = f.size()[3] as usize;
        clips.push(runtime::preprocess::Clip {
            slow: to_vec(&s)?,
            fast: to_vec(&f)?,
            slow_frames: s.size()[1] as usize,
            fast_frames: f.size()[1] as usize,
            size,
        });
    }
    let refs: Vec<&runtime::preprocess::Clip> = clips.iter().collect();
    let rows = engine.probabilities(&refs).map_err(|e| e.to_string())?;
    let classes = rows.first().map_or(0, Vec::len) as i64;
    let flat: Vec<f32> = rows.into_iter().flatten().collect();
    Ok(Tensor::from_slice(&flat).view([n, classes]))
}
