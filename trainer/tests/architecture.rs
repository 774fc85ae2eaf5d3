//! The network's shape, size, compute and initialisation against the
//! published PySlowFast figures.

use tch::{Device, Kind, Tensor, nn};
use trainer::model::{EvalOutput, ModelConfig, Preset, SlowFast};

fn build(config: &ModelConfig) -> (nn::VarStore, SlowFast) {
    let vs = nn::VarStore::new(Device::Cpu);
    let model = SlowFast::new(&vs.root(), config).expect("valid config");
    (vs, model)
}

#[test]
fn parameter_counts_match_the_reference() {
    for (preset, expected) in
        [(Preset::SlowFast4x16R50, 34_480_216), (Preset::SlowFast8x8R50, 34_566_488), (Preset::SlowFast8x8R101, 62_826_968)]
    {
        let (vs, _) = build(&preset.config());
        assert_eq!(SlowFast::num_parameters(&vs), expected, "{preset:?}");
    }
}

#[test]
fn gmacs_at_256_are_within_one_percent_of_fvcore() {
    for (preset, expected) in [(Preset::SlowFast4x16R50, 36.34), (Preset::SlowFast8x8R50, 66.07), (Preset::SlowFast8x8R101, 126.42)] {
        let (_, model) = build(&preset.config());
        let slow = [1, 3, preset.slow_frames(), 256, 256];
        let gmacs = model.flops(slow, [1, 3, 32, 256, 256]).unwrap().gmacs();
        let rel = (gmacs - expected).abs() / expected;
        assert!(rel < 0.01, "{preset:?}: {gmacs:.3} GMACs vs {expected} ({:.2}% off)", rel * 100.0);
    }
}

#[test]
fn tensor_names_and_shapes_are_pyslowfast_s() {
    let (vs, _) = build(&Preset::SlowFast8x8R50.config());
    let vars = vs.variables();
    for (name, shape) in [
        ("s1.pathway0_stem.conv.weight", vec![64, 3, 1, 7, 7]),
        ("s1.pathway1_stem.conv.weight", vec![8, 3, 5, 7, 7]),
        ("s1.pathway0_stem.bn.running_mean", vec![64]),
        ("s1_fuse.conv_f2s.weight", vec![16, 8, 7, 1, 1]),
        ("s1_fuse.bn.num_batches_tracked", vec![]),
        ("s2.pathway0_res0.branch1.weight", vec![256, 80, 1, 1, 1]),
        ("s2.pathway0_res0.branch2.a.weight", vec![64, 80, 1, 1, 1]),
        ("s2.pathway1_res0.branch2.a.weight", vec![8, 8, 3, 1, 1]),
        ("s3.pathway0_res0.branch2.b.weight", vec![128, 128, 1, 3, 3]),
        ("s4.pathway0_res0.branch2.a.weight", vec![256, 640, 3, 1, 1]),
        ("s4.pathway1_res2.branch2.b_bn.running_var", vec![32]),
        ("s5.pathway0_res2.branch2.c_bn.weight", vec![2048]),
        ("head.projection.weight", vec![400, 2304]),
        ("head.projection.bias", vec![400]),
    ] {
        let t = vars.get(name).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(t.size(), shape, "{name}");
    }
    // res1+ of a stage keep their shape: no projection shortcut.
    assert!(!vars.contains_key("s2.pathway0_res1.branch1.weight"));
    // 5 BN tensors per BN, 1 per conv, 2 for the projection.
    let bns = vars.keys().filter(|k| k.ends_with(".running_var")).count();
    let convs = vars.keys().filter(|k| k.ends_with(".weight") && vars[*k].dim() == 5).count();
    assert_eq!(vars.len(), bns * 5 + convs + 2);
}

#[test]
fn num_block_temp_kernel_limits_the_temporal_kernel_to_leading_blocks() {
    let (vs, _) = build(&Preset::SlowFast8x8R101.config());
    assert_eq!(vs.variables()["s4.pathway0_res22.branch2.a.weight"].size()[2], 3);
    let six = ModelConfig { num_block_temp_kernel: [[3, 3], [4, 4], [6, 6], [3, 3]], ..Preset::SlowFast8x8R101.config() };
    let (vs, _) = build(&six);
    let vars = vs.variables();
    assert_eq!(vars["s4.pathway0_res5.branch2.a.weight"].size()[2], 3);
    assert_eq!(vars["s4.pathway0_res6.branch2.a.weight"].size()[2], 1);
    assert_eq!(vars["s4.pathway1_res22.branch2.a.weight"].size()[2], 1);
    // 17 blocks lose 2 of 3 temporal taps: slow 1024 x 256, fast 128 x 32.
    assert_eq!(SlowFast::num_parameters(&vs), 62_826_968 - 17 * 2 * (1024 * 256 + 128 * 32));
}

#[test]
fn initialisation_follows_pyslowfast() {
    tch::manual_seed(1);
    let (vs, _) = build(&Preset::SlowFast8x8R50.config());
    let vars = vs.variables();
    let std = |n: &str| vars[n].std(true).double_value(&[]);
    // MSRA fill, fan_out = 256 * 1 for a 1x1x1 conv to 256 channels.
    let w = "s2.pathway0_res0.branch1.weight";
    let expect = (2.0f64 / 256.0).sqrt();
    assert!((std(w) - expect).abs() / expect < 0.02, "{w}: {} vs {expect}", std(w));
    let p = std("head.projection.weight");
    assert!((p - 0.01).abs() < 0.0005, "projection std {p}");
    assert_eq!(vars["head.projection.bias"].abs().sum(Kind::Float).double_value(&[]), 0.0);
    // Final BN of each residual branch is zero, every other BN is one.
    assert_eq!(vars["s3.pathway1_res2.branch2.c_bn.weight"].abs().sum(Kind::Float).double_value(&[]), 0.0);
    assert_eq!(vars["s3.pathway1_res2.branch2.b_bn.weight"].mean(Kind::Float).double_value(&[]), 1.0);
    assert_eq!(vars["s3.pathway1_res0.branch1_bn.weight"].mean(Kind::Float).double_value(&[]), 1.0);
    assert_eq!(vars["s1_fuse.bn.running_var"].mean(Kind::Float).double_value(&[]), 1.0);

    let no_zero = ModelConfig { zero_init_final_bn: false, ..Preset::SlowFast8x8R50.config() };
    let (vs, _) = build(&no_zero);
    assert_eq!(vs.variables()["s3.pathway1_res2.branch2.c_bn.weight"].mean(Kind::Float).double_value(&[]), 1.0);
}

fn tiny() -> ModelConfig {
    ModelConfig { width_per_group: 8, num_classes: 7, ..Preset::SlowFast8x8R50.config() }
}

#[test]
fn eval_returns_probabilities_or_logits_and_train_returns_logits() {
    tch::manual_seed(2);
    let (vs, mut model) = build(&ModelConfig { zero_init_final_bn: false, fc_init_std: 1.0, ..tiny() });
    let _ = vs;
    let fast = Tensor::randn([2, 3, 8, 64, 48], (Kind::Float, Device::Cpu));
    let slow = fast.narrow(2, 0, 2);
    let probs = tch::no_grad(|| model.forward_t(&slow, &fast, false)).unwrap();
    assert_eq!(probs.size(), vec![2, 7]);
    let sums = probs.sum_dim_intlist(&[1i64][..], false, Kind::Float);
    assert!(sums.allclose(&Tensor::ones([2], (Kind::Float, Device::Cpu)), 1e-5, 1e-6, false));
    model.eval_output = EvalOutput::Logits;
    let logits = tch::no_grad(|| model.forward_t(&slow, &fast, false)).unwrap();
    assert!(logits.softmax(1, Kind::Float).allclose(&probs, 1e-5, 1e-6, false));
    assert!(logits.lt(0.0).any().int64_value(&[]) == 1, "logits, not probabilities");
    let train = model.forward_t(&slow, &fast, true).unwrap();
    assert_eq!(train.size(), vec![2, 7]);
    assert!(train.requires_grad());
}

#[test]
fn head_pool_works_for_any_clip_shape() {
    let (_, model) = build(&tiny());
    for (t, h, w) in [(4, 32, 32), (8, 64, 96), (16, 40, 72)] {
        let fast = Tensor::randn([1, 3, t, h, w], (Kind::Float, Device::Cpu));
        let slow = fast.narrow(2, 0, t / 4);
        let out = tch::no_grad(|| model.forward_t(&slow, &fast, false)).unwrap();
        assert_eq!(out.size(), vec![1, 7], "{t}x{h}x{w}");
    }
}

#[test]
fn train_forward_counts_batches_in_every_bn() {
    let (vs, model) = build(&tiny());
    let fast = Tensor::randn([2, 3, 8, 32, 32], (Kind::Float, Device::Cpu));
    let slow = fast.narrow(2, 0, 2);
    let _ = model.forward_t(&slow, &fast, true).unwrap();
    let _ = model.forward_t(&slow, &fast, true).unwrap();
    let _ = tch::no_grad(|| model.forward_t(&slow, &fast, false)).unwrap();
    for (name, t) in vs.variables() {
        if name.ends_with("num_batches_tracked") {
            assert_eq!(t.int64_value(&[]), 2, "{name}");
        }
    }
}
