//! Recipes: the shipped YAML files say what the papers say, and bad
//! recipes are refused before any work, naming the file, key and line.

use std::path::{Path, PathBuf};

use trainer::model::Preset;
use trainer::recipe::{Dataset, LrPolicy, Recipe, RecipeError};
use trainer::train::schedule::lr_at;

fn configs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs")
}

fn parse(text: &str) -> Result<Recipe, RecipeError> {
    Recipe::parse(text, Path::new("/recipes/bad.yaml"))
}

const MINIMAL: &str = "\
model:
  arch: slowfast_4x16_r50
  num_classes: 11
  width_per_group: 8
data:
  dataset:
    synthetic: { train: 22, val: 11 }
  num_frames: 16
  train_jitter_scales: [64, 80]
  train_crop_size: 64
solver:
  base_lr: 0.1
  max_epoch: 2
train:
  batch_size: 4
test:
  crop_size: 64
";

#[test]
fn every_shipped_recipe_parses_and_validates() {
    let mut seen = 0;
    for entry in std::fs::read_dir(configs()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            Recipe::load(&path).unwrap_or_else(|e| panic!("{e}"));
            seen += 1;
        }
    }
    assert!(seen >= 3, "expected the Kinetics and demo recipes, found {seen}");
}

#[test]
fn kinetics_recipes_follow_pyslowfast() {
    for (file, preset) in [("slowfast_4x16_r50.yaml", Preset::SlowFast4x16R50), ("slowfast_8x8_r50.yaml", Preset::SlowFast8x8R50)] {
        let r = Recipe::load(&configs().join(file)).unwrap();
        assert_eq!(r.model_config().unwrap(), preset.config(), "{file}");
        let d = &r.data;
        assert_eq!((d.num_frames, d.sampling_rate, d.target_fps), (32, 2, 30.0));
        assert_eq!((d.train_jitter_scales, d.train_crop_size, d.random_flip), ([256, 320], 224, true));
        assert_eq!((d.mean, d.std), ([0.45; 3], [0.225; 3]));
        let s = &r.solver;
        assert!(s.nesterov && s.momentum == 0.9 && s.weight_decay == 1e-4 && s.bn_weight_decay == 0.0);
        assert_eq!((s.base_lr, s.reference_batch_size, s.max_epoch), (0.1, 64, 196));
        assert_eq!((s.warmup_epochs, s.warmup_start_lr, &s.lr_policy), (34.0, 0.01, &LrPolicy::Cosine));
        assert_eq!((r.test.num_ensemble_views, r.test.num_spatial_crops, r.test.crop_size), (10, 3, 256));
        // Linear scaling: half the global batch, half every LR.
        let mut half = r.clone();
        half.train.batch_size = 32;
        assert!((lr_at(&half.solver, half.lr_scale(), 0.0) - 0.005).abs() < 1e-12);
        assert!((lr_at(&r.solver, r.lr_scale(), 196.0)).abs() < 1e-12);
        // The data is not on this machine: refused by key before training.
        let e = r.check_files().unwrap_err().to_string();
        assert!(e.contains("data.dataset.lists.train") && e.contains(file), "{e}");
        assert!(matches!(r.data.dataset, Dataset::Lists(_)));
    }
}

#[test]
fn demo_recipe_is_small() {
    let r = Recipe::load(&configs().join("demo_synth_cpu.yaml")).unwrap();
    let m = r.model_config().unwrap();
    assert_eq!((m.num_classes, m.depth, m.width_per_group, m.beta_inv), (11, 18, 16, 4));
    assert_eq!(r.solver.optimizing_method, trainer::recipe::OptimizingMethod::Adamw);
    assert!(!r.data.random_flip, "flipping swaps the synthetic set's left/right classes");
    assert!(matches!(r.data.dataset, Dataset::Synthetic(_)));
}

#[test]
fn minimal_recipe_fills_pyslowfast_defaults() {
    let r = parse(MINIMAL).unwrap();
    assert_eq!(r.model_config().unwrap().alpha, 8);
    assert_eq!((r.solver.momentum, r.solver.nesterov, r.solver.weight_decay), (0.9, true, 1e-4));
    assert_eq!((r.test.num_ensemble_views, r.test.num_spatial_crops), (10, 3));
    assert!(r.precise_bn.enabled);
}

#[test]
fn unknown_keys_are_refused_with_key_file_and_line() {
    let text = MINIMAL.replace("  max_epoch: 2\n", "  max_epoch: 2\n  warmup_epoch: 3\n");
    let e = parse(&text).unwrap_err().to_string();
    assert!(e.contains("/recipes/bad.yaml"), "{e}");
    assert!(e.contains("warmup_epoch"), "{e}");
    assert!(e.contains("line 14") || e.contains("14:"), "{e}");
    let text = MINIMAL.replace("  num_classes: 11\n", "  num_class: 11\n");
    let e = parse(&text).unwrap_err().to_string();
    assert!(e.contains("num_class"), "{e}");
    let text = format!("{MINIMAL}extra_section: 1\n");
    assert!(parse(&text).unwrap_err().to_string().contains("extra_section"));
}

#[test]
fn wrong_types_are_refused_with_the_line() {
    let text = MINIMAL.replace("  batch_size: 4\n", "  batch_size: four\n");
    let e = parse(&text).unwrap_err().to_string();
    assert!(e.contains("four") || e.contains("batch_size"), "{e}");
    assert!(e.contains("line 15") || e.contains("15:"), "{e}");
    let text = MINIMAL.replace("[64, 80]", "[64, 80, 96]");
    assert!(parse(&text).is_err());
    let text = MINIMAL.replace("arch: slowfast_4x16_r50", "arch: slowfast_2x32_r50");
    let e = parse(&text).unwrap_err().to_string();
    assert!(e.contains("slowfast_2x32_r50"), "{e}");
}

#[test]
fn values_that_cannot_work_together_name_their_key() {
    for (from, to, key) in [
        ("train_crop_size: 64", "train_crop_size: 96", "data.train_crop_size"),
        ("num_frames: 16", "num_frames: 12", "data.num_frames"),
        ("width_per_group: 8", "width_per_group: 12", "model.width_per_group"),
        ("num_classes: 11", "num_classes: 10", "model.num_classes"),
        ("base_lr: 0.1", "base_lr: -0.1", "solver.base_lr"),
        ("batch_size: 4", "batch_size: 0", "train.batch_size"),
        ("[64, 80]", "[80, 64]", "data.train_jitter_scales"),
    ] {
        let text = MINIMAL.replace(from, to);
        assert_ne!(text, MINIMAL, "{from}");
        match parse(&text) {
            Err(RecipeError::Invalid { field, path, .. }) => {
                assert_eq!(field, key);
                assert_eq!(path, Path::new("/recipes/bad.yaml"));
            }
            other => panic!("{from} -> {to}: expected an invalid {key}, got {other:?}"),
        }
    }
}

#[test]
fn missing_file_is_named() {
    let e = Recipe::load(Path::new("/nonexistent/recipe.yaml")).unwrap_err().to_string();
    assert!(e.contains("/nonexistent/recipe.yaml"), "{e}");
}

#[test]
fn devices_are_spelt_as_torch_spells_them() {
    use trainer::recipe::DeviceChoice;
    for (text, want) in [
        ("auto", DeviceChoice::Auto),
        ("cpu", DeviceChoice::Cpu),
        ("cuda", DeviceChoice::Cuda(0)),
        ("cuda:1", DeviceChoice::Cuda(1)),
        ("{ cuda: 2 }", DeviceChoice::Cuda(2)),
    ] {
        let r = parse(&format!("device: {text}\n{MINIMAL}")).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(r.device, want, "{text}");
        // The recipe written back into a run folder reads the same.
        let again = Recipe::parse(&serde_saphyr::to_string(&r).unwrap(), Path::new("/r.yaml")).unwrap();
        assert_eq!(again.device, want);
    }
    let e = parse(&format!("device: gpu\n{MINIMAL}")).unwrap_err().to_string();
    assert!(e.contains("/recipes/bad.yaml") && e.contains("device \"gpu\": use auto, cpu, cuda or cuda:N"), "{e}");
    assert!(e.contains("line 1"), "{e}");
}

#[test]
fn distributed_settings_are_checked_against_the_world() {
    let r = parse(&format!("{MINIMAL}bn: {{ norm_type: sync_batchnorm, num_sync_devices: 4 }}\n")).unwrap();
    assert!(r.check_world(1).is_ok() && r.check_world(4).is_ok());
    let e = r.check_world(3).unwrap_err().to_string();
    assert!(e.contains("train.batch_size"), "{e}");
    let twelve = MINIMAL.replace("batch_size: 4", "batch_size: 12").replace("test:\n", "test:\n  batch_size: 12\n");
    let r = parse(&format!("{twelve}bn: {{ norm_type: sync_batchnorm, num_sync_devices: 4 }}\n")).unwrap();
    let e = r.check_world(6).unwrap_err().to_string();
    assert!(e.contains("`bn.num_sync_devices`: 4 does not divide the 6 processes"), "{e}");
    let e = parse(&format!("{MINIMAL}dist: {{ timeout_s: 0 }}\n")).unwrap_err().to_string();
    assert!(e.contains("dist.timeout_s"), "{e}");
    let e = parse(&format!("{MINIMAL}dist: {{ bakend: gloo }}\n")).unwrap_err().to_string();
    assert!(e.contains("bakend"), "{e}");
}
