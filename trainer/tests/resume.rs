//! Crash safety: a run killed with SIGKILL in the middle of an epoch and
//! started again with the same command resumes from its last checkpoint and
//! ends with exactly the weights of a run that was never interrupted.

use std::path::Path;
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

fn train(recipe: &Path, out: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_trainer"));
    c.arg("train").arg("--config").arg(recipe).arg("--out").arg(out).stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

/// The latest training record's (epoch, iteration) in `metrics.jsonl`.
fn progress(out: &Path) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(out.join("metrics.jsonl")).ok()?;
    text.lines().rev().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).find_map(|v| {
        (v["kind"] == "train").then(|| Some((v["epoch"].as_u64()?, v["iter"].as_u64()?))).flatten()
    })
}

#[test]
fn killed_mid_epoch_and_restarted_ends_with_the_uninterrupted_weights() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("tiny.yaml");
    std::fs::write(&recipe, RECIPE).unwrap();
    let (straight, crashed) = (dir.path().join("straight"), dir.path().join("crashed"));

    let run = train(&recipe, &straight).output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));

    // Kill in the middle of epoch 2 (22 iterations an epoch).
    let mut child = train(&recipe, &crashed).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if matches!(progress(&crashed), Some((2, i)) if i >= 4) {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be killed");
        assert!(Instant::now() < deadline, "epoch 2 never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    let ckpts = crashed.join("checkpoints");
    assert!(ckpts.join("checkpoint_epoch_00001.json").is_file());
    assert!(!ckpts.join("checkpoint_epoch_00002.json").exists(), "killed too late: epoch 2 had finished");
    assert!(!crashed.join("weights.safetensors").exists());

    let rerun = train(&recipe, &crashed).output().unwrap();
    assert!(rerun.status.success(), "{}", String::from_utf8_lossy(&rerun.stderr));
    assert!(String::from_utf8_lossy(&rerun.stdout).contains("resumed after epoch 1"));

    let a = trainer::weights::read(&straight.join("weights.safetensors")).unwrap();
    let b = trainer::weights::read(&crashed.join("weights.safetensors")).unwrap();
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (name, ta) in &a {
        assert!(ta.equal(&b[name]), "{name} differs after resuming");
    }
    // The optimiser state too, and the metrics hold each iteration once.
    let optim = |d: &Path| trainer::weights::read(&d.join("checkpoints/checkpoint_epoch_00003.optim.safetensors")).unwrap();
    let (oa, ob) = (optim(&straight), optim(&crashed));
    assert!(!oa.is_empty());
    for (name, ta) in &oa {
        assert!(ta.equal(&ob[name]), "{name} differs after resuming");
    }
    let count = |d: &Path| std::fs::read_to_string(d.join("metrics.jsonl")).unwrap().lines().filter(|l| l.contains("\"train\"")).count();
    assert_eq!(count(&straight), 66);
    assert_eq!(count(&crashed), 66);
}
