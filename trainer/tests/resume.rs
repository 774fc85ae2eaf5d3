//! Crash safety: a run killed with SIGKILL in the middle of an epoch and
//! started again with the same command resumes from its last checkpoint and
//! ends with exactly the weights of a run that was never interrupted; the
//! same for a multigrid run killed in its first long-cycle shape, which
//! then crosses into the next shape.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RECIPE: &str = "\
seed: 5
device: cpu
threads: 1
model: { arch: slowfast_8x8_r50, num_classes: 11, width_per_group: 8, dropout: 0.5 }
data:
  dataset: { synthetic: { train: 88, val: 11, size: 32, frames: 16, seed: 2 } }
  num_frames: 8
  train_jitter_scales: [32, 40]
  train_crop_size: 32
  random_flip: true
solver: { base_lr: 0.1, reference_batch_size: 4, max_epoch: 3, warmup_epochs: 1, warmup_start_lr: 0.01, clip_grad_norm: 5.0, label_smoothing: 0.1 }
train: { batch_size: 4, log_period: 1, checkpoint_period: 1, eval_period: 2 }
precise_bn: { enabled: true, num_batches: 2 }
test: { num_ensemble_views: 1, num_spatial_crops: 1, crop_size: 32, batch_size: 4 }
loader: { workers: 2, prefetch_batches: 2 }
";

/// Multigrid on the same network, larger clips: epochs 1-2 train 8 clips
/// of 4 frames per step (sub-batch BN in 2 splits of 4), epochs 3-4 the
/// default 4 clips of 8 frames (plain BN; 4 is the fine-tuning LR); the
/// short cycle turns through 32 clips at 32 px, 16 at 45 and 8 at 64 (then
/// 16, 8, 4). Sampling rates are drawn per clip in the first shape.
fn multigrid_recipe() -> String {
    let text = RECIPE
        .replace("{ train: 88, val: 11, size: 32,", "{ train: 120, val: 11, size: 64,")
        .replace("train_jitter_scales: [32, 40]", "train_jitter_scales: [64, 72]")
        .replace("train_crop_size: 32", "train_crop_size: 64")
        .replace("crop_size: 32, batch_size: 4", "crop_size: 64, batch_size: 4")
        .replace("max_epoch: 3,", "lr_policy: { steps: { steps: [0, 3], lrs: [1, 0.1] } }, max_epoch: 4,");
    text + "multigrid: { long_cycle: true, short_cycle: true, epoch_factor: 1.0, long_cycle_factors: [[0.5, 1.0], [1.0, 1.0]], bn_base_size: 4 }\n"
}

fn train(recipe: &Path, out: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_trainer"));
    c.arg("train").arg("--config").arg(recipe).arg("--out").arg(out).stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

/// The latest training record's (epoch, iteration) in `metrics.jsonl`.
fn progress(out: &Path) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(out.join("metrics.jsonl")).ok()?;
    text.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| (v["kind"] == "train").then(|| Some((v["epoch"].as_u64()?, v["iter"].as_u64()?))).flatten())
}

#[test]
fn killed_mid_epoch_and_restarted_ends_with_the_uninterrupted_weights() {
    let dir = tempfile::tempdir().unwrap();
    // Kill in the middle of epoch 2 (22 iterations an epoch).
    let (straight, crashed) = kill_and_resume(dir.path(), RECIPE, 2, 4, 3);
    let count = |d: &Path| std::fs::read_to_string(d.join("metrics.jsonl")).unwrap().lines().filter(|l| l.contains("\"train\"")).count();
    assert_eq!(count(&straight), 66);
    assert_eq!(count(&crashed), 66);
}

#[test]
fn multigrid_killed_in_one_shape_resumes_into_the_next_exactly() {
    let dir = tempfile::tempdir().unwrap();
    // Epoch 2 has 6 steps (32 + 16 + 8 + 32 + 16 + 8 of 120 clips).
    let (straight, crashed) = kill_and_resume(dir.path(), &multigrid_recipe(), 2, 3, 4);
    // The splits' statistics of epoch 2 were saved and restored.
    let optim = trainer::weights::read(&crashed.join("checkpoints/checkpoint_epoch_00002.optim.safetensors")).unwrap();
    assert!(optim.keys().any(|k| k.starts_with("sub_bn.") && k.ends_with(".running_mean")), "no sub-batch BN statistics saved");
    for run in [&straight, &crashed] {
        let records: Vec<serde_json::Value> =
            std::fs::read_to_string(run.join("metrics.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let shapes: Vec<(u64, u64, u64)> = records
            .iter()
            .filter(|r| r["kind"] == "shape")
            .map(|r| (r["epoch"].as_u64().unwrap(), r["batch"].as_u64().unwrap(), r["frames"].as_u64().unwrap()))
            .collect();
        assert_eq!(shapes, [(1, 8, 4), (3, 4, 8)], "{}: shape changes", run.display());
        // Steps: 6 in each of epochs 1 and 2, then 12 of 16 + 8 + 4 clips.
        let steps = |e: u64| records.iter().filter(|r| r["kind"] == "train" && r["epoch"] == e).count();
        assert_eq!((steps(1), steps(2), steps(3), steps(4)), (6, 6, 12, 12), "{}", run.display());
        let crops: Vec<u64> =
            records.iter().filter(|r| r["kind"] == "train" && r["epoch"] == 3).map(|r| r["crop"].as_u64().unwrap()).take(3).collect();
        assert_eq!(crops, [32, 45, 64]);
    }
}

/// Trains `recipe` straight through and again with a SIGKILL once epoch
/// `kill_epoch` has logged `kill_iter` steps, then restarts it; asserts the
/// two end with the same weights and optimiser state. Returns both outputs.
fn kill_and_resume(dir: &Path, recipe_text: &str, kill_epoch: u64, kill_iter: u64, epochs: usize) -> (PathBuf, PathBuf) {
    let recipe = dir.join("tiny.yaml");
    std::fs::write(&recipe, recipe_text).unwrap();
    let (straight, crashed) = (dir.join("straight"), dir.join("crashed"));

    let run = train(&recipe, &straight).output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));

    let mut child = train(&recipe, &crashed).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if matches!(progress(&crashed), Some((e, i)) if e == kill_epoch && i >= kill_iter) {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be killed");
        assert!(Instant::now() < deadline, "epoch {kill_epoch} never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    let ckpts = crashed.join("checkpoints");
    let done = kill_epoch as usize - 1;
    assert!(ckpts.join(format!("checkpoint_epoch_{done:05}.json")).is_file());
    assert!(!ckpts.join(format!("checkpoint_epoch_{kill_epoch:05}.json")).exists(), "killed too late: epoch {kill_epoch} had finished");
    assert!(!crashed.join("weights.safetensors").exists());

    let rerun = train(&recipe, &crashed).output().unwrap();
    assert!(rerun.status.success(), "{}", String::from_utf8_lossy(&rerun.stderr));
    assert!(String::from_utf8_lossy(&rerun.stdout).contains(&format!("resumed after epoch {done}")));

    let a = trainer::weights::read(&straight.join("weights.safetensors")).unwrap();
    let b = trainer::weights::read(&crashed.join("weights.safetensors")).unwrap();
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (name, ta) in &a {
        assert!(ta.equal(&b[name]), "{name} differs after resuming");
    }
    // The optimiser state too (and any sub-batch BN statistics).
    for epoch in kill_epoch as usize..=epochs {
        let file = format!("checkpoints/checkpoint_epoch_{epoch:05}.optim.safetensors");
        let (oa, ob) = (trainer::weights::read(&straight.join(&file)).unwrap(), trainer::weights::read(&crashed.join(&file)).unwrap());
        assert!(!oa.is_empty());
        assert_eq!(oa.keys().collect::<Vec<_>>(), ob.keys().collect::<Vec<_>>(), "{file}");
        for (name, ta) in &oa {
            assert!(ta.equal(&ob[name]), "{file}: {name} differs after resuming");
        }
    }
    (straight, crashed)
}
