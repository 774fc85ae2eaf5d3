//! Multigrid against PySlowFast's own code (fixtures made by
//! `tests/fixtures/multigrid/generate.py`, which runs `MultigridSchedule`,
//! `ShortCycleBatchSampler`, `get_lr_at_epoch`, `is_eval_epoch`,
//! `is_checkpoint_epoch`, the crop/scale choice of `Kinetics.__getitem__` and
//! `SubBatchNorm3d`), and the recipe checks that refuse unusable shapes.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use tch::{Device, Kind, Tensor, nn};
use trainer::model::layers::{BatchNorm3d, NormMode};
use trainer::multigrid::BnPlan;
use trainer::recipe::Recipe;
use trainer::train::schedule::lr_at;
use trainer::train::shapes::Shapes;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/multigrid").join(name)
}

#[derive(Deserialize)]
struct Case {
    name: String,
    input: Input,
    expected: Expected,
}

#[derive(Deserialize)]
struct Input {
    num_frames: usize,
    train_crop_size: u32,
    sampling_rate: usize,
    train_jitter_scales: [u32; 2],
    batch_size: usize,
    num_gpus: usize,
    steps: Vec<usize>,
    lrs: Vec<f64>,
    max_epoch: usize,
    base_lr: f64,
    gamma: f64,
    warmup_epochs: f64,
    warmup_start_lr: f64,
    long_cycle: bool,
    short_cycle: bool,
    epoch_factor: f64,
    long_cycle_factors: Vec<[f64; 2]>,
    short_cycle_factors: [f64; 2],
    bn_base_size: usize,
    eval_freq: usize,
    checkpoint_period: usize,
    eval_period: usize,
}

#[derive(Deserialize)]
struct Expected {
    schedule: Option<Vec<(usize, [usize; 3], usize)>>,
    steps: Vec<usize>,
    lrs: Vec<f64>,
    max_epoch: usize,
    epochs: Vec<EpochRow>,
    lr: Vec<(f64, f64)>,
}

#[derive(Deserialize)]
struct EpochRow {
    epoch: usize,
    batch_size: usize,
    num_frames: usize,
    crop: u32,
    norm_type: String,
    num_splits: Option<usize>,
    num_sync_devices: Option<usize>,
    long_cycle_sampling_rate: usize,
    is_eval: bool,
    is_checkpoint: bool,
    short_cycle_batch_sizes: Option<Vec<usize>>,
    short_cycle_crops: Option<Vec<u32>>,
    min_scales: Vec<u32>,
    yielded: Option<usize>,
}

/// The case's PySlowFast config as one of our recipes (LR not scaled:
/// the reference batch is the batch).
fn recipe(i: &Input) -> Recipe {
    let steps = &i.steps;
    let lrs = &i.lrs[..steps.len()];
    let text = format!(
        "model: {{ arch: slowfast_8x8_r50, num_classes: 10 }}\n\
data: {{ dataset: {{ lists: {{ train: train.csv }} }}, num_frames: {}, sampling_rate: {}, train_jitter_scales: {:?}, train_crop_size: {} }}\n\
solver: {{ base_lr: {}, reference_batch_size: {}, lr_policy: {{ steps: {{ steps: {steps:?}, lrs: {lrs:?} }} }}, max_epoch: {}, \
warmup_epochs: {}, warmup_start_lr: {} }}\n\
train: {{ batch_size: {}, checkpoint_period: {}, eval_period: {} }}\n\
test: {{ batch_size: {} }}\n\
multigrid: {{ long_cycle: {}, short_cycle: {}, epoch_factor: {}, long_cycle_factors: {:?}, short_cycle_factors: {:?}, \
bn_base_size: {}, eval_freq: {}, gamma: {} }}\n",
        i.num_frames,
        i.sampling_rate,
        i.train_jitter_scales,
        i.train_crop_size,
        i.base_lr,
        i.batch_size,
        i.max_epoch,
        i.warmup_epochs,
        i.warmup_start_lr,
        i.batch_size,
        i.checkpoint_period,
        i.eval_period,
        i.num_gpus,
        i.long_cycle,
        i.short_cycle,
        i.epoch_factor,
        i.long_cycle_factors,
        i.short_cycle_factors,
        i.bn_base_size,
        i.eval_freq,
        i.gamma
    );
    Recipe::parse(&text, Path::new("case.yaml")).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn schedules_equal_pyslowfasts() {
    let cases: Vec<Case> = serde_json::from_str(&std::fs::read_to_string(fixture("schedule.json")).unwrap()).unwrap();
    assert_eq!(cases.len(), 5);
    for case in &cases {
        let name = &case.name;
        let r = recipe(&case.input);
        r.check_world(case.input.num_gpus).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mg = r.multigrid().expect("multigrid section");
        let (e, world) = (&case.expected, case.input.num_gpus);
        let schedule: Option<Vec<(usize, [usize; 3], usize)>> = mg
            .schedule
            .as_ref()
            .map(|s| s.iter().map(|r| (r.step_index, [r.shape.batch_factor, r.shape.frames, r.shape.crop], r.end_epoch)).collect());
        assert_eq!(schedule, e.schedule, "{name}: long-cycle schedule");
        let solver = r.training_solver();
        assert_eq!(solver.max_epoch, e.max_epoch, "{name}: max_epoch");
        let trainer::recipe::LrPolicy::Steps { steps, lrs } = &solver.lr_policy else { panic!("{name}: not steps") };
        assert_eq!(steps, &e.steps, "{name}: LR steps");
        assert_eq!(lrs.len(), e.lrs.len(), "{name}: LRs");
        for (a, b) in lrs.iter().zip(&e.lrs) {
            assert!((a - b).abs() <= 1e-15 * b.abs().max(1.0), "{name}: LRs {lrs:?} vs {:?}", e.lrs);
        }
        for &(x, want) in &e.lr {
            let got = lr_at(&solver, 1.0, x);
            assert!((got - want).abs() <= 1e-12 * want.abs().max(1e-6), "{name}: LR at epoch {x}: {got} vs {want}");
        }

        let shapes = Shapes::new(&r, None).unwrap();
        assert_eq!(e.epochs.len(), e.max_epoch, "{name}: one row per epoch");
        for row in &e.epochs {
            let ctx = format!("{name} epoch {}", row.epoch);
            let p = mg.epoch_plan(row.epoch, world).unwrap_or_else(|why| panic!("{ctx}: {why}"));
            assert_eq!((p.batch_size, p.frames, p.crop), (row.batch_size, row.num_frames, row.crop), "{ctx}: shape");
            let bn = match row.norm_type.as_str() {
                "batchnorm" => BnPlan::Batchnorm,
                "sub_batchnorm" => BnPlan::SubBatchnorm(row.num_splits.expect("splits")),
                "sync_batchnorm" => BnPlan::SyncBatchnorm(row.num_sync_devices.expect("devices")),
                other => panic!("{ctx}: norm type {other}"),
            };
            assert_eq!(p.bn, bn, "{ctx}: BN");
            // 0 in PySlowFast: the one sampling rate.
            let hi = if row.long_cycle_sampling_rate > 0 { row.long_cycle_sampling_rate } else { case.input.sampling_rate };
            assert_eq!(p.sampling_rates, [case.input.sampling_rate, hi], "{ctx}: sampling rates");
            let due = shapes.eval_and_checkpoint(row.epoch);
            assert_eq!(due, (row.is_eval, row.is_checkpoint), "{ctx}: validation and checkpoint");
            let sizes: Vec<usize> = p.cycle.iter().map(|b| b.batch_size).collect();
            let crops: Vec<u32> = p.cycle.iter().map(|b| b.crop).collect();
            let mins: Vec<u32> = p.cycle.iter().map(|b| b.jitter[0]).collect();
            match (&row.short_cycle_batch_sizes, &row.short_cycle_crops) {
                (Some(s), Some(c)) => {
                    assert_eq!(&sizes, s, "{ctx}: short-cycle batches");
                    assert_eq!(&crops, c, "{ctx}: short-cycle crops");
                    let layout = trainer::data::EpochLayout { frames: p.frames, sampling_rates: p.sampling_rates, cycle: p.cycle.clone() };
                    assert_eq!(Some(layout.batches(1000)), row.yielded, "{ctx}: batches yielded from 1000 clips");
                }
                _ => assert_eq!(sizes, [row.batch_size / world], "{ctx}: one batch size"),
            }
            assert_eq!(mins, row.min_scales, "{ctx}: jitter minimum");
            assert!(p.cycle.iter().all(|b| b.jitter[1] == case.input.train_jitter_scales[1]), "{ctx}: jitter maximum");
        }
    }
}

/// A BN layer set as the fixture's, in sub-batch mode.
fn sub_bn(t: &std::collections::HashMap<String, Tensor>, prefix: &str, splits: usize) -> (nn::VarStore, BatchNorm3d) {
    let vs = nn::VarStore::new(Device::Cpu);
    let bn = BatchNorm3d::new(vs.root() / "bn", 4, 1e-5, 0.1, false);
    tch::no_grad(|| {
        bn.weight.shallow_clone().copy_(&t[&format!("{prefix}weight")]);
        bn.bias.shallow_clone().copy_(&t[&format!("{prefix}bias")]);
    });
    bn.set_mode(NormMode::Sub(splits));
    (vs, bn)
}

fn close(name: &str, a: &Tensor, b: &Tensor, tol: f64) {
    assert_eq!(a.size(), b.size(), "{name}: shape");
    let d = (a - b).abs().max().double_value(&[]);
    assert!(d <= tol, "{name}: max |difference| {d:e} > {tol:e}");
}

#[test]
fn sub_batch_norm_equals_pyslowfasts_subbatchnorm3d() {
    let t: std::collections::HashMap<String, Tensor> =
        Tensor::read_safetensors(fixture("sub_bn.safetensors")).unwrap().into_iter().collect();
    // Tolerance 1e-5: float32 with a different order of the affine step.
    const TOL: f64 = 1e-5;
    for splits in [2usize, 4] {
        let p = format!("splits{splits}.");
        let g = |n: &str| t[&format!("{p}{n}")].shallow_clone();
        let (_vs, bn) = sub_bn(&t, &p, splits);
        let (m0, v0) = bn.training_stats();
        close(&format!("{p}split_running_mean_before"), &m0, &g("split_running_mean_before"), 0.0);
        close(&format!("{p}split_running_var_before"), &v0, &g("split_running_var_before"), 0.0);
        close(&format!("{p}train_out1"), &bn.forward_t(&g("x1"), true), &g("train_out1"), TOL);
        let x2 = g("x2").set_requires_grad(true);
        let out2 = bn.forward_t(&x2, true);
        close(&format!("{p}train_out2"), &out2, &g("train_out2"), TOL);
        (&out2 * g("g")).sum(Kind::Float).backward();
        close(&format!("{p}grad_x2"), &x2.grad(), &g("grad_x2"), TOL);
        close(&format!("{p}grad_weight"), &bn.weight.grad(), &g("grad_weight"), TOL);
        close(&format!("{p}grad_bias"), &bn.bias.grad(), &g("grad_bias"), TOL);
        let (m, v) = bn.training_stats();
        close(&format!("{p}split_running_mean"), &m, &g("split_running_mean"), TOL);
        close(&format!("{p}split_running_var"), &v, &g("split_running_var"), TOL);
        bn.aggregate_sub_stats();
        close(&format!("{p}bn_running_mean"), &bn.running_mean, &g("bn_running_mean"), TOL);
        close(&format!("{p}bn_running_var"), &bn.running_var, &g("bn_running_var"), TOL);
        let eval = tch::no_grad(|| bn.forward_t(&g("x_eval"), false));
        close(&format!("{p}eval_out"), &eval, &g("eval_out"), TOL);
    }
}

const BASE: &str = "model: { arch: slowfast_8x8_r50, num_classes: 10 }\n\
data: { dataset: { lists: { train: train.csv } }, num_frames: 32, train_crop_size: 224 }\n\
solver: { base_lr: 0.1, lr_policy: { steps: { steps: [0, 20, 30], lrs: [1, 0.1, 0.01] } }, max_epoch: 40 }\n\
train: { batch_size: 16 }\ntest: {}\n";

fn refused(extra: &str) -> String {
    match Recipe::parse(&format!("{BASE}{extra}"), Path::new("mg.yaml")) {
        Ok(_) => panic!("accepted: {extra}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn unusable_shapes_are_refused_when_the_recipe_is_read() {
    // 32 x 0.3125 = 10 frames: not a multiple of alpha 4.
    let e = refused("multigrid: { long_cycle: true, short_cycle: true, long_cycle_factors: [[0.3125, 1.0], [1.0, 1.0]] }\n");
    assert!(e.contains("`multigrid.long_cycle_factors`") && e.contains("10 frames") && e.contains("alpha 4"), "{e}");
    // 224 x 0.1 = 22 px: below the network's stride of 32.
    let e = refused("multigrid: { long_cycle: true, short_cycle: false, long_cycle_factors: [[0.5, 0.1], [1.0, 1.0]] }\n");
    assert!(e.contains("`multigrid.long_cycle_factors`") && e.contains("crop 22") && e.contains("stride 32"), "{e}");
    let e = refused("multigrid: { short_cycle: true, short_cycle_factors: [0.1, 0.5] }\n");
    assert!(e.contains("`multigrid.short_cycle_factors`") && e.contains("crop 22"), "{e}");
    // The first shape's 128 clips over a base of 5 make 25 sub-batches of
    // 5.12 clips.
    let e = refused("multigrid: { long_cycle: true, short_cycle: true, bn_base_size: 5 }\n");
    assert!(e.contains("`multigrid.bn_base_size`") && e.contains("128 clips per process") && e.contains("25 BN splits"), "{e}");
    let e = refused("bn: { norm_type: sub_batchnorm, num_splits: 3 }\n");
    assert!(e.contains("`bn.num_splits`") && e.contains("16 clips"), "{e}");
    // The long cycle rewrites LR steps: a cosine schedule has none.
    let cosine = BASE.replace("lr_policy: { steps: { steps: [0, 20, 30], lrs: [1, 0.1, 0.01] } }", "lr_policy: cosine");
    let e = Recipe::parse(&format!("{cosine}multigrid: {{ long_cycle: true }}\n"), Path::new("mg.yaml")).unwrap_err().to_string();
    assert!(e.contains("`multigrid.long_cycle`") && e.contains("lr_policy: steps"), "{e}");
    let e = refused("multigrid: { long_cycle: true, short_cycle: true, default_s: 256 }\n");
    assert!(e.contains("`multigrid.default_s`"), "{e}");
    let e = refused("multigrid: { long_cycle: true, short_cycle: true, head_pool: global }\n");
    assert!(e.contains("unknown field `head_pool`"), "{e}");
    let kernel = BASE.replace("num_classes: 10 }", "num_classes: 10, head_pool: { kernel: { slow: [8, 7, 7], fast: [32, 7, 7] } } }");
    let e = Recipe::parse(&format!("{kernel}multigrid: {{ long_cycle: true }}\n"), Path::new("mg.yaml")).unwrap_err().to_string();
    assert!(e.contains("`model.head_pool`") && e.contains("pool globally"), "{e}");
}

#[test]
fn sync_groups_must_tile_the_processes() {
    // Global batch 16 on 8 processes: 2 clips each at the default shape,
    // so BN syncs groups of 4 processes; on one process the same shape
    // has 16 clips, 2 sub-batches of 8.
    let r = Recipe::parse(&format!("{BASE}multigrid: {{ long_cycle: true, short_cycle: true }}\n"), Path::new("mg.yaml")).unwrap();
    assert!(r.check_world(8).is_ok());
    let e = r.check_world(6).unwrap_err().to_string();
    assert!(e.contains("must split evenly over the 6 processes"), "{e}");
    let mg = r.multigrid().unwrap();
    let last = mg.solver.max_epoch - 1;
    assert_eq!(mg.epoch_plan(last, 8).unwrap().bn, BnPlan::SyncBatchnorm(4));
    assert_eq!(mg.epoch_plan(last, 1).unwrap().bn, BnPlan::SubBatchnorm(2));
}

/// A short multigrid run of the synthetic recipe (the bench's, 16 epochs
/// over 3 long-cycle shapes and the short cycle) changes shape on the
/// epochs its schedule says and learns the motion classes. A few minutes on
/// two cores: a third of the normal schedule's steps. On this host it gave
/// 55% top-1 (chance: 9.1%); the bar leaves room for other kernels' rounding.
#[test]
fn a_multigrid_run_changes_shape_on_schedule_and_learns() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../configs/bench_multigrid_synth.yaml");
    let mut r = Recipe::load(&path).unwrap_or_else(|e| panic!("{e}"));
    // Validate only at the last epoch of each long-cycle row.
    if let Some(m) = r.multigrid.as_mut() {
        m.eval_freq = 1;
    }
    r.data.dataset = match r.data.dataset {
        trainer::recipe::Dataset::Synthetic(s) => trainer::recipe::Dataset::Synthetic(trainer::recipe::SyntheticDataset { val: 110, ..s }),
        other => other,
    };
    let mg = r.multigrid().expect("multigrid");
    let out = tempfile::tempdir().unwrap();
    let summary = trainer::train::train(&r, out.path()).unwrap_or_else(|e| panic!("{e:#}"));
    let records: Vec<serde_json::Value> =
        std::fs::read_to_string(out.path().join("metrics.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    // Every row whose shape differs from the one before starts a new shape.
    let mut expected = Vec::new();
    let (mut start, mut last) = (0, None);
    for row in mg.schedule.as_ref().unwrap() {
        if row.end_epoch > start && last != Some(row.shape) {
            expected.push((start as u64 + 1, row.shape.frames as u64, row.shape.crop as u64));
            last = Some(row.shape);
        }
        start = start.max(row.end_epoch);
    }
    let changes: Vec<(u64, u64, u64)> = records
        .iter()
        .filter(|r| r["kind"] == "shape")
        .map(|r| (r["epoch"].as_u64().unwrap(), r["frames"].as_u64().unwrap(), r["crop"].as_u64().unwrap()))
        .collect();
    assert_eq!(changes, expected, "shape changes");
    // Each step trained the shape of its epoch (the short cycle's crops aside).
    for r in records.iter().filter(|r| r["kind"] == "train") {
        let e = r["epoch"].as_u64().unwrap() as usize - 1;
        assert_eq!(r["frames"].as_u64().unwrap() as usize, mg.epoch_plan(e, 1).unwrap().frames, "epoch {}", e + 1);
    }
    let top1 = summary.val_top1.expect("validated at the end");
    eprintln!("multigrid val top-1 {:.1}%", top1 * 100.0);
    assert!(top1 >= 0.3, "the multigrid run did not learn: {:.1}% top-1", top1 * 100.0);
}
