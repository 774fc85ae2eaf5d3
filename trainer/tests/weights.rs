//! Safetensors round trips, and strict loading that names every problem.

use tch::{Device, Kind, Tensor, nn};
use trainer::model::{ModelConfig, Preset, SlowFast};
use trainer::weights::{self, LoadMode, WeightsError};

fn tiny(classes: i64) -> ModelConfig {
    ModelConfig { width_per_group: 8, num_classes: classes, zero_init_final_bn: false, ..Preset::SlowFast4x16R50.config() }
}

fn build(config: &ModelConfig) -> (nn::VarStore, SlowFast) {
    let vs = nn::VarStore::new(Device::Cpu);
    let m = SlowFast::new(&vs.root(), config).unwrap();
    (vs, m)
}

fn clip() -> (Tensor, Tensor) {
    let fast = Tensor::randn([2, 3, 16, 32, 32], (Kind::Float, Device::Cpu));
    (fast.narrow(2, 0, 2), fast)
}

#[test]
fn save_then_load_gives_the_same_network_bn_statistics_included() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let path = dir.join("w.safetensors");
    tch::manual_seed(3);
    let (vs_a, a) = build(&tiny(6));
    let (slow, fast) = clip();
    let _ = a.forward_t(&slow, &fast, true).unwrap(); // moves running statistics
    weights::save(&vs_a, &path).unwrap();

    tch::manual_seed(4);
    let (mut vs_b, b) = build(&tiny(6));
    weights::load(&mut vs_b, &path, LoadMode::Strict).unwrap();
    let va = vs_a.variables();
    for (name, t) in vs_b.variables() {
        assert!(t.equal(&va[&name]), "{name} differs after load");
    }
    assert_eq!(vs_b.variables()["s2_fuse.bn.num_batches_tracked"].kind(), Kind::Int64);
    let (ya, yb) = tch::no_grad(|| (a.forward_t(&slow, &fast, false).unwrap(), b.forward_t(&slow, &fast, false).unwrap()));
    assert!(ya.equal(&yb));
}

#[test]
fn missing_unexpected_and_misshaped_tensors_are_each_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let path = dir.join("w.safetensors");
    let (vs, _) = build(&tiny(6));
    let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    named.retain(|(n, _)| n != "s3.pathway1_res1.branch2.b.weight");
    for (n, t) in named.iter_mut() {
        if n == "s2.pathway0_res0.branch1.weight" {
            *t = Tensor::zeros([3, 3], (Kind::Float, Device::Cpu));
        }
    }
    named.push(("head.extra.weight".to_string(), Tensor::zeros([2], (Kind::Float, Device::Cpu))));
    Tensor::write_safetensors(&named, &path).unwrap();

    let (mut vs_b, _) = build(&tiny(6));
    let before = vs_b.variables()["s2.pathway0_res0.branch2.a.weight"].copy();
    let err = weights::load(&mut vs_b, &path, LoadMode::Strict).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, WeightsError::Mismatch { ref problems, .. } if problems.len() == 3), "{msg}");
    assert!(msg.contains("missing: s3.pathway1_res1.branch2.b.weight"), "{msg}");
    assert!(msg.contains("unexpected: head.extra.weight"), "{msg}");
    assert!(msg.contains("shape of s2.pathway0_res0.branch1.weight: file has [3, 3]"), "{msg}");
    assert!(msg.contains("w.safetensors"), "{msg}");
    // Nothing was half-loaded.
    assert!(vs_b.variables()["s2.pathway0_res0.branch2.a.weight"].equal(&before));
}

#[test]
fn a_new_head_is_allowed_only_when_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let path = dir.join("w.safetensors");
    let (vs, _) = build(&tiny(400));
    weights::save(&vs, &path).unwrap();
    let (mut vs_b, _) = build(&tiny(6));
    let err = weights::load(&mut vs_b, &path, LoadMode::Strict).unwrap_err().to_string();
    assert!(err.contains("head.projection.weight") && err.contains("[400, 288]"), "{err}");
    weights::load(&mut vs_b, &path, LoadMode::NewHead).unwrap();
    let stem = "s1.pathway1_stem.conv.weight";
    assert!(vs_b.variables()[stem].equal(&vs.variables()[stem]));
    assert_eq!(vs_b.variables()["head.projection.weight"].size(), vec![6, 288]);
}

#[test]
fn unreadable_files_name_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (mut vs, _) = build(&tiny(6));
    let missing = dir.join("nope.safetensors");
    let err = weights::load(&mut vs, &missing, LoadMode::Strict).unwrap_err().to_string();
    assert!(err.contains("nope.safetensors") && err.contains("no such file"), "{err}");
    let garbage = dir.join("garbage.safetensors");
    std::fs::write(&garbage, b"not a safetensors file").unwrap();
    let err = weights::load(&mut vs, &garbage, LoadMode::Strict).unwrap_err().to_string();
    assert!(err.contains("garbage.safetensors"), "{err}");
}
