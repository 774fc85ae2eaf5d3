//! `trainer export`: the network as an ONNX model (opset 17) for the runtime.
//!
//! ```text
//! trainer export --arch slowfast_8x8_r50 --weights w.safetensors \
//!     --labels models/kinetics400.txt --out models/slowfast_8x8_r50.onnx
//! trainer export --arch slowfast_4x16_r50 --random-init --num-classes 400 --out /tmp/m.onnx \
//!     --output logits --crop 224 --dynamic-spatial --recipe-file configs/k400_4x16.yaml
//! ```
//!
//! - Weights: `--weights FILE.safetensors` (PySlowFast names, loaded
//!   strictly), or `--random-init` to export untrained weights on purpose;
//!   one of the two is required.
//! - Classes: `--labels FILE` (one class per line, `id name` as the Kinetics
//!   list or just `name`; see `trainer::labels`) must list exactly as many
//!   classes as the model has: the preset's 400, or `--num-classes N`.
//!   Without a labels file, `--num-classes N` is required and the classes are
//!   named `class_0 .. class_{N-1}`: a model never ships without names by
//!   accident.
//! - Clip: `--fast-frames` (slow frames = fast / alpha), `--sampling-rate`,
//!   `--target-fps`, `--crop` (square input size; `--dynamic-spatial` leaves
//!   `H`, `W` dynamic in the graph). They go into the model's metadata, which
//!   the runtime reads to sample and preprocess clips.
//! - `--output probabilities|logits`: softmax (default) or raw scores.
//! - `--recipe TEXT` or `--recipe-file FILE`: the training recipe, kept in
//!   the metadata for provenance.
//!
//! - `--config RECIPE.yaml` instead of `--arch`: the model (any widths),
//!   clip, normalisation, crop (the test crop) and recipe text come from the
//!   training recipe, and for the synthetic data set the class names too:
//!
//!   ```text
//!   trainer export --config configs/demo_synth_cpu.yaml \
//!       --weights runs/demo/checkpoints/checkpoint_epoch_12.safetensors --out models/demo/model.onnx
//!   ```
//!
//! - `--int8 --calibration LIST`: a QDQ INT8 model (see
//!   `trainer::export::calibrate`): the network runs over
//!   `--calibration-clips` clips of the list (`path label` lines, as the
//!   training lists; `--calibration recipe` takes the recipe's training
//!   split), cut as the test does, and records each quantised tensor's
//!   range with `--calibration-method` (`minmax`, or `percentile:99.99`).
//!   Videos that cannot be read are skipped and counted, as training does;
//!   a list with none readable is refused. The same list and
//!   `--calibration-seed` give the same file, byte for byte.
//!
//!   ```text
//!   trainer export --config configs/demo_synth_cpu.yaml --weights w.safetensors \
//!       --int8 --calibration recipe --calibration-clips 32 --out models/demo/model_int8.onnx
//!   ```
//!
//! The file is written atomically (temporary file, then rename). Temporary
//! files an interrupted export left beside the output (`.NAME.PID.tmp`, as
//! large as a model) are removed by the next export to the same path, unless
//! their process is still running.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args as ClapArgs, ValueEnum};
use runtime::preprocess::Normalization;
use tch::{Device, nn};
use trainer::data::source::Temporal;
use trainer::data::{Source, read_list};
use trainer::export::{self, ExportOptions, calibrate};
use trainer::labels;
use trainer::model::{EvalOutput, Preset, SlowFast};
use trainer::recipe::ListFormat;
use trainer::recipe::{Dataset, Recipe};
use trainer::train::setup::{self, Which};
use trainer::weights::{self, LoadMode};

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Probabilities,
    Logits,
}

#[derive(ClapArgs)]
pub struct Args {
    /// A published architecture (or give --config).
    #[arg(long, value_enum, required_unless_present = "config", conflicts_with = "config")]
    arch: Option<Preset>,
    /// Training recipe: model, clip, normalisation, test crop and (for the
    /// synthetic set) class names come from it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Weights: safetensors with PySlowFast names, or a PySlowFast / pytorchvideo / Caffe2 / PaddleVideo
    /// checkpoint (read, never run).
    #[arg(long, conflicts_with = "random_init")]
    weights: Option<PathBuf>,
    /// Export the reference random initialisation (no training).
    #[arg(long)]
    random_init: bool,
    /// The ONNX file to write.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, value_enum, default_value = "probabilities")]
    output: Output,
    /// Square spatial input size.
    #[arg(long, default_value_t = 256)]
    crop: i64,
    /// Leave height and width dynamic in the graph.
    #[arg(long)]
    dynamic_spatial: bool,
    /// Class names, one per line (`id name` or `name`).
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Classes of the model [default: the preset's].
    #[arg(long)]
    num_classes: Option<i64>,
    /// Frames of the fast pathway.
    #[arg(long, default_value_t = 32)]
    fast_frames: i64,
    /// Source frames between two sampled frames at the target frame rate.
    #[arg(long, default_value_t = 2)]
    sampling_rate: i64,
    /// Frame rate the clip is resampled to before sampling.
    #[arg(long, default_value_t = 30.0)]
    target_fps: f64,
    /// Training recipe the weights came from (free text).
    #[arg(long, conflicts_with = "recipe_file")]
    recipe: Option<String>,
    /// File holding the training recipe (its contents are stored).
    #[arg(long)]
    recipe_file: Option<PathBuf>,
    /// Quantise to INT8 (QDQ: per-channel int8 weights, uint8 activations), calibrated on --calibration.
    #[arg(long, requires = "calibration")]
    int8: bool,
    /// Calibration videos: a list of `path label` lines, or `recipe` for the recipe's training split.
    #[arg(long, requires = "int8")]
    calibration: Option<String>,
    /// Folder that relative paths of the calibration list are joined to.
    #[arg(long)]
    calibration_root: Option<PathBuf>,
    /// Clips the calibration runs (one per video; unreadable videos do not count).
    #[arg(long, default_value_t = 32)]
    calibration_clips: usize,
    /// `minmax` (nothing clipped) or `percentile:P` (e.g. percentile:99.99).
    #[arg(long, default_value = "minmax")]
    calibration_method: calibrate::Method,
    /// Order in which the list's videos are tried.
    #[arg(long, default_value_t = 0)]
    calibration_seed: u64,
}

/// How calibration clips are cut: the test clip of the recipe, or of the
/// export's own clip settings.
struct ClipSpec {
    temporal: Temporal,
    crop: u32,
    normalize: Normalization,
    alpha: usize,
}

/// Writes the model: fp32, or with `--int8` calibrated and quantised.
fn export_and_write(a: &Args, model: &SlowFast, opts: &ExportOptions, recipe: Option<&Recipe>, clip: ClipSpec) -> anyhow::Result<usize> {
    let bytes = if a.int8 {
        let Some(list) = &a.calibration else { bail!("--int8 needs --calibration LIST") };
        let classes = model.config.num_classes as usize;
        let source = if list == "recipe" {
            let Some(recipe) = recipe else { bail!("--calibration recipe needs --config RECIPE.yaml") };
            setup::source(recipe, Which::Train).map_err(anyhow::Error::msg)?.context("the recipe has no training split")?
        } else {
            let samples = read_list(std::path::Path::new(list), a.calibration_root.as_deref(), ListFormat::PathLabel, classes)
                .with_context(|| format!("--calibration {list}"))?;
            Source::List(samples)
        };
        let calib_setup = calibrate::Setup {
            temporal: clip.temporal,
            crop: clip.crop,
            normalize: clip.normalize,
            alpha: clip.alpha,
            clips: a.calibration_clips,
            seed: a.calibration_seed,
            list: list.clone(),
        };
        let calibration = calibrate::calibrate(model, &source, &calib_setup, a.calibration_method, |done, n| {
            if done.is_multiple_of(8) || done == n {
                eprintln!("calibrated on {done}/{n} clips");
            }
        })?;
        for f in &calibration.skipped {
            eprintln!("calibration: skipped {}: {}", f.name, f.why);
        }
        eprintln!(
            "calibration: {} clips ({} unreadable videos skipped), method {:?}, {} quantised tensors",
            calibration.clips,
            calibration.skipped.len(),
            calibration.method,
            calibration.ranges.len()
        );
        export::export_onnx_int8(model, opts, &calibration)?
    } else {
        export::export_onnx(model, opts)?
    };
    remove_stale_temporaries(&a.out);
    export::write_model(&a.out, &bytes)?;
    Ok(bytes.len())
}

pub fn run(a: Args) -> anyhow::Result<()> {
    if let Some(path) = a.config.clone() {
        return run_recipe(a, &path);
    }
    let Some(arch) = a.arch else { bail!("give --arch PRESET or --config RECIPE.yaml") };
    if a.weights.is_none() && !a.random_init {
        bail!("no weights: give --weights FILE.safetensors, or --random-init to export untrained weights on purpose");
    }
    // Cheap checks first, so a typo fails before the network is built.
    export::check_output_path(&a.out)?;
    let mut config = arch.config();
    if let Some(n) = a.num_classes {
        if n < 1 {
            bail!("--num-classes must be at least 1, got {n}");
        }
        config.num_classes = n;
    }
    let names = match (&a.labels, a.num_classes) {
        (Some(file), _) => {
            let names = labels::read(file)?;
            if names.len() as i64 != config.num_classes {
                let source = match a.num_classes {
                    Some(_) => "--num-classes".to_string(),
                    None => format!("the {} preset; --num-classes changes it", arch.name()),
                };
                bail!("{}: {} labels, but the model has {} classes ({source})", file.display(), names.len(), config.num_classes);
            }
            names
        }
        (None, Some(n)) => labels::generated(n as usize),
        (None, None) => bail!(
            "no class names: give --labels FILE (one class per line, `id name` or `name`), \
             or --num-classes N to name the classes class_0 .. class_{{N-1}}"
        ),
    };
    let recipe = match (&a.recipe, &a.recipe_file) {
        (Some(text), _) => text.clone(),
        (None, Some(file)) => std::fs::read_to_string(file).with_context(|| format!("{}: cannot read the recipe", file.display()))?,
        (None, None) => String::new(),
    };

    let mut vs = nn::VarStore::new(Device::Cpu);
    let model = SlowFast::new(&vs.root(), &config)?;
    if let Some(w) = &a.weights {
        weights::load(&mut vs, w, LoadMode::Strict)?;
    }
    let opts = ExportOptions {
        arch: Some(arch),
        output: match a.output {
            Output::Probabilities => EvalOutput::Probabilities,
            Output::Logits => EvalOutput::Logits,
        },
        crop_size: a.crop,
        dynamic_spatial: a.dynamic_spatial,
        fast_frames: a.fast_frames,
        sampling_rate: a.sampling_rate,
        target_fps: a.target_fps,
        recipe,
        ..ExportOptions::new(names)
    };
    let clip = ClipSpec {
        temporal: Temporal { num_frames: a.fast_frames as usize, sampling_rate: a.sampling_rate as usize, target_fps: a.target_fps },
        crop: a.crop as u32,
        normalize: Normalization { mean: opts.mean.map(|v| v as f32), std: opts.std.map(|v| v as f32) },
        alpha: config.alpha as usize,
    };
    let written = export_and_write(&a, &model, &opts, None, clip)?;
    report(&a, &config, &opts, written, arch.name());
    Ok(())
}

/// `--config`: everything but the weights and the output comes from the recipe.
fn run_recipe(a: Args, path: &std::path::Path) -> anyhow::Result<()> {
    if a.weights.is_none() && !a.random_init {
        bail!("no weights: give --weights FILE.safetensors, or --random-init to export untrained weights on purpose");
    }
    export::check_output_path(&a.out)?;
    let recipe = Recipe::load(path)?;
    let config = recipe.model_config().map_err(|(key, why)| anyhow::anyhow!("{}: `{key}`: {why}", path.display()))?;
    let names = match (&a.labels, &recipe.data.dataset) {
        (Some(file), _) => labels::read(file)?,
        (None, Dataset::Synthetic(_)) => trainer::synth::CLASSES.iter().map(|c| c.to_string()).collect(),
        (None, Dataset::Lists(_)) => bail!("{}: give --labels FILE for the classes of its lists", path.display()),
    };
    if names.len() as i64 != config.num_classes {
        bail!("{} class names, but {} has `model.num_classes` {}", names.len(), path.display(), config.num_classes);
    }
    let mut vs = nn::VarStore::new(Device::Cpu);
    let model = SlowFast::new(&vs.root(), &config)?;
    if let Some(w) = &a.weights {
        weights::load(&mut vs, w, LoadMode::Strict)?;
    }
    let d = &recipe.data;
    let arch = recipe.model.arch.filter(|p| p.config() == config);
    let opts = ExportOptions {
        arch,
        output: match a.output {
            Output::Probabilities => EvalOutput::Probabilities,
            Output::Logits => EvalOutput::Logits,
        },
        crop_size: i64::from(recipe.test.crop_size),
        dynamic_spatial: a.dynamic_spatial,
        fast_frames: d.num_frames as i64,
        sampling_rate: d.sampling_rate as i64,
        target_fps: d.target_fps,
        mean: d.mean,
        std: d.std,
        recipe: std::fs::read_to_string(path).with_context(|| format!("{}: cannot read the recipe", path.display()))?,
        ..ExportOptions::new(names)
    };
    let clip = ClipSpec {
        temporal: setup::temporal(&recipe),
        crop: recipe.test.crop_size,
        normalize: setup::normalize(&recipe),
        alpha: config.alpha as usize,
    };
    let written = export_and_write(&a, &model, &opts, Some(&recipe), clip)?;
    report(&a, &config, &opts, written, arch.map_or("custom", |p| p.name()));
    Ok(())
}

/// Removes `.NAME.PID.tmp` files beside `out` whose process is gone (an
/// export killed before its rename). Best effort: a file that cannot be
/// removed costs disk space, not the export.
fn remove_stale_temporaries(out: &std::path::Path) {
    let Some(name) = out.file_name().map(|n| n.to_string_lossy().into_owned()) else { return };
    let dir = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let prefix = format!(".{name}.");
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = file.strip_prefix(&prefix).and_then(|rest| rest.strip_suffix(".tmp")) else { continue };
        let Ok(pid) = pid.parse::<u32>() else { continue };
        // A pid with no /proc entry has exited (Linux); elsewhere nothing
        // is removed.
        let alive = !std::path::Path::new("/proc/self").exists() || std::path::Path::new(&format!("/proc/{pid}")).exists();
        if pid != std::process::id() && !alive {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => eprintln!("removed {}, left by an interrupted export", entry.path().display()),
                Err(e) => eprintln!("warning: cannot remove {}, left by an interrupted export: {e}", entry.path().display()),
            }
        }
    }
}

fn report(a: &Args, config: &trainer::model::ModelConfig, opts: &ExportOptions, bytes: usize, arch: &str) {
    let side = if a.dynamic_spatial { "H x W (dynamic)".to_string() } else { format!("{0} x {0}", opts.crop_size) };
    println!("wrote {} ({:.1} MB, ONNX opset {})", a.out.display(), bytes as f64 / 1e6, export::OPSET);
    println!(
        "arch {arch}: slow {} / fast {} frames at {side}, {} {} classes",
        opts.fast_frames / config.alpha,
        opts.fast_frames,
        export::output_name(opts.output),
        config.num_classes
    );
    match &a.weights {
        Some(w) => println!("weights: {}", w.display()),
        None => println!("weights: random init (--random-init), predictions are meaningless"),
    }
}
