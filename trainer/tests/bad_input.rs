//! Bad clips and bad configs come back as errors that say what was wrong,
//! never as libtorch aborts.

use tch::{Device, Kind, Tensor, nn};
use trainer::model::{HeadPool, ModelConfig, ModelError, Preset, SlowFast};

fn tiny() -> ModelConfig {
    ModelConfig { width_per_group: 8, num_classes: 5, ..Preset::SlowFast8x8R50.config() }
}

fn clip(n: i64, c: i64, t: i64, h: i64, w: i64) -> Tensor {
    Tensor::zeros([n, c, t, h, w], (Kind::Float, Device::Cpu))
}

fn error_of(slow: Tensor, fast: Tensor) -> String {
    let vs = nn::VarStore::new(Device::Cpu);
    let model = SlowFast::new(&vs.root(), &tiny()).unwrap();
    let err = tch::no_grad(|| model.forward_t(&slow, &fast, false)).expect_err("bad clip accepted");
    assert!(matches!(err, ModelError::Input { .. }), "{err:?}");
    err.to_string()
}

#[test]
fn fast_frames_not_divisible_by_alpha() {
    let msg = error_of(clip(1, 3, 2, 32, 32), clip(1, 3, 10, 32, 32));
    assert!(msg.contains("fast pathway") && msg.contains("10 frames") && msg.contains("alpha = 4"), "{msg}");
}

#[test]
fn slow_frames_not_fast_over_alpha() {
    let msg = error_of(clip(1, 3, 3, 32, 32), clip(1, 3, 8, 32, 32));
    assert!(msg.contains("slow pathway") && msg.contains("expected 2 frames") && msg.contains("got 3"), "{msg}");
}

#[test]
fn wrong_channel_count() {
    let msg = error_of(clip(1, 1, 2, 32, 32), clip(1, 1, 8, 32, 32));
    assert!(msg.contains("expected 3 channels") && msg.contains("got 1"), "{msg}");
}

#[test]
fn spatial_size_too_small() {
    let msg = error_of(clip(1, 3, 2, 16, 32), clip(1, 3, 8, 16, 32));
    assert!(msg.contains("16x32") && msg.contains("stride 32x32"), "{msg}");
}

#[test]
fn batch_mismatch_between_pathways() {
    let msg = error_of(clip(2, 3, 2, 32, 32), clip(3, 3, 8, 32, 32));
    assert!(msg.contains("batch of 3 clips") && msg.contains("slow pathway has 2"), "{msg}");
}

#[test]
fn spatial_mismatch_between_pathways() {
    let msg = error_of(clip(1, 3, 2, 32, 32), clip(1, 3, 8, 64, 32));
    assert!(msg.contains("spatial size"), "{msg}");
}

#[test]
fn not_a_five_dimensional_clip() {
    let msg = error_of(Tensor::zeros([3, 2, 32, 32], (Kind::Float, Device::Cpu)), clip(1, 3, 8, 32, 32));
    assert!(msg.contains("slow pathway") && msg.contains("5-D"), "{msg}");
}

#[test]
fn wrong_dtype() {
    let msg = error_of(clip(1, 3, 2, 32, 32).to_kind(Kind::Double), clip(1, 3, 8, 32, 32));
    assert!(msg.contains("Float") && msg.contains("Double"), "{msg}");
}

#[test]
fn clip_smaller_than_fixed_head_pool() {
    let config = ModelConfig { head_pool: HeadPool::Kernel { slow: [2, 7, 7], fast: [8, 7, 7] }, ..tiny() };
    let vs = nn::VarStore::new(Device::Cpu);
    let model = SlowFast::new(&vs.root(), &config).unwrap();
    let err = model.forward_t(&clip(1, 3, 2, 64, 64), &clip(1, 3, 8, 64, 64), false).unwrap_err();
    assert!(err.to_string().contains("pool kernels"), "{err}");
    // 224 / 32 = 7: fits exactly.
    assert!(model.flops([1, 3, 2, 224, 224], [1, 3, 8, 224, 224]).is_ok());
}

#[test]
fn bad_configs_are_refused_naming_the_field() {
    let vs = nn::VarStore::new(Device::Cpu);
    for (config, field) in [
        (ModelConfig { depth: 34, ..tiny() }, "depth"),
        (ModelConfig { alpha: 0, ..tiny() }, "alpha"),
        (ModelConfig { width_per_group: 12, ..tiny() }, "width_per_group"),
        (ModelConfig { fusion_kernel_size: 4, ..tiny() }, "fusion_kernel_size"),
        (ModelConfig { dropout: 1.5, ..tiny() }, "dropout"),
        (ModelConfig { num_block_temp_kernel: [[3, 3], [4, 4], [7, 6], [3, 3]], ..tiny() }, "num_block_temp_kernel"),
        (ModelConfig { temporal_strides: [[1, 1], [1, 2], [1, 1], [1, 1]], ..tiny() }, "temporal_strides"),
    ] {
        let err = SlowFast::new(&vs.root(), &config).expect_err(field);
        assert!(err.to_string().contains(&format!("`{field}`")), "{field}: {err}");
    }
}

/// An export killed before its rename leaves `.NAME.PID.tmp` (as large as
/// the model) beside the output: the next export to that path removes it,
/// and leaves alone those of a running process or of another output.
#[test]
fn a_new_export_removes_the_temporaries_of_interrupted_ones() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.onnx");
    // Above Linux's largest pid_max (2^22): no such process.
    let stale = dir.path().join(".m.onnx.4194305.tmp");
    let running = dir.path().join(format!(".m.onnx.{}.tmp", std::process::id()));
    let other = dir.path().join(".other.onnx.4194305.tmp");
    for p in [&stale, &running, &other] {
        std::fs::write(p, b"half a model").unwrap();
    }
    let recipe = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/demo_synth_cpu.yaml");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(["export", "--random-init", "--config"])
        .arg(&recipe)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(out.is_file());
    assert!(!stale.exists(), "{} left", stale.display());
    assert!(stderr.contains(".m.onnx.4194305.tmp"), "{stderr}");
    assert!(running.exists() && other.exists());
}
