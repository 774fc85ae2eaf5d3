//! The training loop's parts against their references: SGD against
//! `torch.optim.SGD` (through tch), weight decay groups, precise BN, label
//! smoothing, and a tiny end-to-end run with its outputs.

use std::path::Path;

use tch::{Device, Kind, Tensor, nn, nn::OptimizerConfig};
use trainer::data::Mode;
use trainer::model::SlowFast;
use trainer::recipe::{Recipe, SolverSection};
use trainer::train::evaluate::{TestSetup, test_multiview};
use trainer::train::optim::Optimizer;
use trainer::train::setup::{self, Which};
use trainer::train::{loss_fn, precise_bn};

fn tiny_recipe(extra: &str) -> Recipe {
    let text = format!(
        "seed: 3\ndevice: cpu\nthreads: 1\n\
model: {{ arch: slowfast_8x8_r50, num_classes: 11, width_per_group: 8, dropout: 0.2 }}\n\
data: {{ dataset: {{ synthetic: {{ train: 22, val: 11, size: 32, frames: 16, seed: 2 }} }}, \
num_frames: 8, train_jitter_scales: [32, 40], train_crop_size: 32, random_flip: false }}\n\
solver: {{ base_lr: 0.1, reference_batch_size: 4, max_epoch: 2, warmup_epochs: 1, warmup_start_lr: 0.01 }}\n\
train: {{ batch_size: 4, log_period: 1 }}\n\
precise_bn: {{ enabled: true, num_batches: 2 }}\n\
test: {{ num_ensemble_views: 2, num_spatial_crops: 3, crop_size: 32, batch_size: 6 }}\n\
loader: {{ workers: 2, prefetch_batches: 1 }}\n{extra}"
    );
    Recipe::parse(&text, Path::new("tiny.yaml")).unwrap_or_else(|e| panic!("{e}"))
}

fn solver(yaml: &str) -> SolverSection {
    serde_saphyr::from_str(yaml).unwrap()
}

/// Two identical `fc` linears in two var stores: ours steps one, tch's
/// reference optimiser the other. Copied, not re-seeded, because the global
/// RNG is shared with parallel tests.
fn twin_linears() -> ((nn::VarStore, nn::Linear), (nn::VarStore, nn::Linear)) {
    let make = || {
        let vs = nn::VarStore::new(Device::Cpu);
        let lin = nn::linear(vs.root() / "fc", 5, 3, Default::default());
        (vs, lin)
    };
    let (a, (mut vs_b, lin_b)) = (make(), make());
    vs_b.copy(&a.0).unwrap();
    (a, (vs_b, lin_b))
}

/// One step of both sides on the same batch, at learning rate `lr`.
fn step_both(ours: &mut Optimizer, lin_a: &nn::Linear, reference: &mut nn::Optimizer, lin_b: &nn::Linear, lr: f64) {
    let x = Tensor::randn([6, 5], (Kind::Float, Device::Cpu));
    let loss_a = x.apply(lin_a).pow_tensor_scalar(2).mean(Kind::Float);
    ours.zero_grad();
    loss_a.backward();
    ours.step(lr);
    reference.set_lr(lr);
    reference.backward_step(&x.apply(lin_b).pow_tensor_scalar(2).mean(Kind::Float));
}

fn assert_same_weights(a: &nn::VarStore, b: &nn::VarStore, tol: f64, context: &str) {
    for (name, va) in a.variables() {
        let diff = (&va - &b.variables()[&name]).abs().max().double_value(&[]);
        assert!(diff < tol, "{name} {context}: {diff}");
    }
}

#[test]
fn sgd_steps_like_torch_sgd() {
    for nesterov in [true, false] {
        let ((vs_a, lin_a), (vs_b, lin_b)) = twin_linears();
        let s = solver(&format!(
            "base_lr: 0.1\nmax_epoch: 1\nnesterov: {nesterov}\nmomentum: 0.9\nweight_decay: 0.01\n\
             bn_weight_decay: 0.01\nzero_wd_1d_param: false\n"
        ));
        let mut ours = Optimizer::new(&vs_a, &s);
        let mut reference = nn::Sgd { momentum: 0.9, dampening: 0.0, wd: 0.01, nesterov }.build(&vs_b, 0.1).unwrap();
        for step in 0..4 {
            step_both(&mut ours, &lin_a, &mut reference, &lin_b, 0.1 / (step + 1) as f64);
        }
        // A few float ulps: the two sum the Nesterov update in different
        // orders (1.2e-7 seen on weights near 1).
        assert_same_weights(&vs_a, &vs_b, 1e-6, &format!("nesterov={nesterov}"));
        assert_eq!(ours.state().len(), 2, "one momentum buffer per parameter");
    }
}

#[test]
fn no_weight_decay_on_batchnorm_or_biases() {
    let r = tiny_recipe("");
    let vs = nn::VarStore::new(Device::Cpu);
    SlowFast::new(&vs.root(), &r.model_config().unwrap()).unwrap();
    let sgd = Optimizer::new(&vs, &r.solver);
    let no_decay = sgd.no_decay();
    assert!(no_decay.contains(&"s1.pathway0_stem.bn.weight"));
    assert!(no_decay.contains(&"s2.pathway1_res0.branch2.c_bn.bias"));
    assert!(no_decay.contains(&"head.projection.bias"));
    assert!(!no_decay.iter().any(|n| n.ends_with("conv.weight") || n.ends_with("branch2.a.weight")));
    assert!(!no_decay.contains(&"head.projection.weight"));
}

#[test]
fn label_smoothing_mixes_in_the_uniform_target() {
    let logits = Tensor::from_slice(&[2.0f32, 0.0, -1.0, 0.5, 0.5, 0.5]).view([2, 3]);
    let labels = Tensor::from_slice(&[0i64, 2]);
    let logp = logits.log_softmax(-1, Kind::Float);
    let nll = -(logp.double_value(&[0, 0]) + logp.double_value(&[1, 2])) / 2.0;
    let uniform = -logp.mean(Kind::Float).double_value(&[]);
    let eps = 0.1;
    let got = loss_fn(&logits, &labels, eps).double_value(&[]);
    assert!((got - ((1.0 - eps) * nll + eps * uniform)).abs() < 1e-6);
    assert!((loss_fn(&logits, &labels, 0.0).double_value(&[]) - nll).abs() < 1e-6);
}

#[test]
fn precise_bn_stores_the_batch_statistics() {
    let r = tiny_recipe("");
    let vs = nn::VarStore::new(Device::Cpu);
    let model = SlowFast::new(&vs.root(), &r.model_config().unwrap()).unwrap();
    let loader = setup::loader(&r, setup::source(&r, Which::Train).unwrap().unwrap(), Mode::Train, 4, Default::default());
    let used = precise_bn::update_bn_stats(&model, &loader, &loader.layout(), 7, 1).unwrap();
    assert_eq!(used, 1);
    // With one batch, the stem BN's running mean is that batch's mean of
    // the stem conv output.
    let batch = loader.epoch(7).next().unwrap().unwrap();
    let conv = tch::no_grad(|| model.stem[0].conv.forward(&batch.slow));
    let want = conv.mean_dim(&[0i64, 2, 3, 4][..], false, Kind::Float);
    let got = &vs.variables()["s1.pathway0_stem.bn.running_mean"];
    let diff = (got - &want).abs().max().double_value(&[]);
    assert!(diff < 1e-5, "running mean off by {diff}");
    assert_eq!(vs.variables()["s1.pathway0_stem.bn.num_batches_tracked"].int64_value(&[]), 0);
}

#[test]
fn tiny_run_writes_checkpoints_metrics_plots_and_tests() {
    let r = tiny_recipe("");
    let out = tempfile::tempdir().unwrap();
    let summary = trainer::train::train(&r, out.path()).unwrap();
    assert_eq!((summary.epochs, summary.resumed_from, summary.skipped_videos), (2, None, 0));
    let top1 = summary.val_top1.unwrap();
    assert!((0.0..=1.0).contains(&top1));
    for f in [
        "checkpoints/checkpoint_epoch_00001.safetensors",
        "checkpoints/checkpoint_epoch_00002.json",
        "checkpoints/checkpoint_epoch_00002.optim.safetensors",
        "weights.safetensors",
        "recipe.yaml",
        "loss.png",
        "lr.png",
        "accuracy.png",
    ] {
        assert!(out.path().join(f).is_file(), "{f} missing");
    }
    assert_eq!(&std::fs::read(out.path().join("loss.png")).unwrap()[1..4], b"PNG");
    // Iteration-level warm-up then cosine, as the schedule says.
    let records: Vec<serde_json::Value> =
        std::fs::read_to_string(out.path().join("metrics.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let train: Vec<&serde_json::Value> = records.iter().filter(|r| r["kind"] == "train").collect();
    assert_eq!(train.len(), 10, "5 iterations (22 clips / 4) x 2 epochs");
    let lrs: Vec<f64> = train.iter().map(|r| r["lr"].as_f64().unwrap()).collect();
    assert!((lrs[0] - 0.01).abs() < 1e-12 && lrs[1] > lrs[0], "{lrs:?}");
    assert!(lrs[5] > lrs[9], "cosine decays: {lrs:?}");
    assert!(records.iter().any(|r| r["kind"] == "val" && r["epoch"] == 2));
    // The weights load strictly into a fresh model, and the multi-view
    // test runs on them.
    let mut vs = nn::VarStore::new(Device::Cpu);
    let model = SlowFast::new(&vs.root(), &r.model_config().unwrap()).unwrap();
    trainer::weights::load(&mut vs, &summary.final_weights, trainer::weights::LoadMode::Strict).unwrap();
    let source = setup::source(&r, Which::Test).unwrap().unwrap();
    let names: Vec<String> = trainer::synth::CLASSES.iter().map(|s| s.to_string()).collect();
    let setup_ = TestSetup {
        temporal: setup::temporal(&r),
        views: 2,
        crops: 3,
        crop: 32,
        batch_size: 6,
        normalize: setup::normalize(&r),
        alpha: 4,
        workers: 2,
        shard: Default::default(),
    };
    let t = test_multiview(&model, &source, &setup_, &names, Device::Cpu, |_, _| {});
    assert_eq!((t.videos, t.views_per_video), (11, 6));
    assert_eq!(t.per_class.iter().map(|c| c.videos).sum::<usize>(), 11);
    assert_eq!(t.confusion_matrix.iter().flatten().sum::<usize>(), 11);
    assert!(t.top5 >= t.top1);
}

#[test]
fn adamw_steps_like_torch_adamw() {
    let ((vs_a, lin_a), (vs_b, lin_b)) = twin_linears();
    let s = solver(
        "optimizing_method: adamw\nbase_lr: 0.01\nmax_epoch: 1\nweight_decay: 0.05\nbn_weight_decay: 0.05\n\
         zero_wd_1d_param: false\nbetas: [0.8, 0.99]\neps: 1.0e-6\n",
    );
    let mut ours = Optimizer::new(&vs_a, &s);
    let mut reference = nn::AdamW { beta1: 0.8, beta2: 0.99, wd: 0.05, eps: 1e-6, amsgrad: false }.build(&vs_b, 0.01).unwrap();
    for step in 0..3 {
        step_both(&mut ours, &lin_a, &mut reference, &lin_b, 0.01 / (step + 1) as f64);
    }
    // Through a checkpoint: a fresh optimiser loaded from the saved state
    // (moments and step count) carries on.
    let mut resumed = Optimizer::new(&vs_a, &s);
    resumed.load_state(ours.state().into_iter().collect()).unwrap();
    for step in 3..5 {
        step_both(&mut resumed, &lin_a, &mut reference, &lin_b, 0.01 / (step + 1) as f64);
    }
    assert_same_weights(&vs_a, &vs_b, 1e-6, "after a resume");
}

#[test]
fn bf16_autocast_trains_on_the_cpu_and_fp16_there_is_refused() {
    // Autocast is on inside the region only.
    use trainer::dist::ffi::{AutocastDtype, autocast};
    let (x, w) = (Tensor::randn([1, 2, 3, 4, 4], (Kind::Float, Device::Cpu)), Tensor::randn([2, 2, 1, 1, 1], (Kind::Float, Device::Cpu)));
    let conv = || x.conv3d(&w, None::<Tensor>, [1, 1, 1], [0, 0, 0], [1, 1, 1], 1);
    assert_eq!(autocast(Device::Cpu, AutocastDtype::BFloat16, conv).unwrap().kind(), Kind::BFloat16);
    assert_eq!(conv().kind(), Kind::Float);
    // bf16 forward (autocast on the CPU), fp32 loss, weights and update.
    let mut r = tiny_recipe("");
    r.solver.max_epoch = 1;
    r.train.mixed_precision = trainer::recipe::MixedPrecision::Bf16;
    let out = tempfile::tempdir().unwrap();
    trainer::train::train(&r, out.path()).unwrap();
    let records = std::fs::read_to_string(out.path().join("metrics.jsonl")).unwrap();
    let losses: Vec<f64> = records
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == "train")
        .map(|v| v["loss"].as_f64().unwrap())
        .collect();
    assert_eq!(losses.len(), 5);
    assert!(losses.iter().all(|l| l.is_finite() && *l > 0.0), "{losses:?}");
    let w = trainer::weights::read(&out.path().join("weights.safetensors")).unwrap();
    assert!(w.values().filter(|t| t.is_floating_point()).all(|t| t.kind() == Kind::Float), "weights stay fp32");

    let text = "seed: 3\ndevice: cpu\nmodel: { arch: slowfast_8x8_r50, num_classes: 11 }\n\
data: { dataset: { synthetic: { train: 22, val: 11, size: 320 } } }\n\
solver: { base_lr: 0.1, max_epoch: 1 }\ntrain: { batch_size: 4, mixed_precision: fp16 }\ntest: {}\n";
    let e = Recipe::parse(text, Path::new("r.yaml")).unwrap_err().to_string();
    assert!(e.contains("train.mixed_precision") && e.contains("needs CUDA"), "{e}");
}
