//! The whole path a user takes: train a tiny SlowFast on synthetic clips,
//! export it to ONNX from its recipe and checkpoint, write a synthetic MP4,
//! and run the model inside a `gst-launch-1.0` pipeline and through
//! `slowfast annotate`. Every step is a built binary of the workspace
//! (`cargo test --workspace` builds them before any test runs).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `target/<profile>`, where cargo puts binaries and the plugin.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent().and_then(|deps| deps.parent()).expect("target dir").to_path_buf()
}

fn tool(name: &str) -> PathBuf {
    let path = target_dir().join(name);
    assert!(path.exists(), "{} is not built: run `cargo test --workspace` (or `cargo build --workspace`)", path.display());
    path
}

fn ok(out: Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{what} failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

const RECIPE: &str = "\
name: e2e_tiny
seed: 3
device: cpu
threads: 2
model: { arch: slowfast_8x8_r50, num_classes: 11, width_per_group: 8, dropout: 0.0 }
data:
  dataset: { synthetic: { train: 22, val: 11, size: 32, frames: 16, seed: 4 } }
  num_frames: 8
  train_jitter_scales: [32, 40]
  train_crop_size: 32
  random_flip: false
solver: { base_lr: 0.1, reference_batch_size: 4, max_epoch: 1, warmup_epochs: 0, warmup_start_lr: 0.01 }
train: { batch_size: 4, log_period: 1, checkpoint_period: 1, eval_period: 1 }
precise_bn: { enabled: true, num_batches: 2 }
test: { num_ensemble_views: 1, num_spatial_crops: 1, crop_size: 32, batch_size: 4 }
loader: { workers: 1, prefetch_batches: 1 }
";

fn latest_checkpoint(dir: &Path) -> PathBuf {
    let mut weights: Vec<PathBuf> = std::fs::read_dir(dir.join("checkpoints"))
        .expect("checkpoints written")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            name.starts_with("checkpoint_epoch_") && name.ends_with(".safetensors") && !name.ends_with(".optim.safetensors")
        })
        .collect();
    weights.sort();
    weights.pop().expect("a weights checkpoint")
}

#[test]
fn train_export_and_stream_through_gstreamer() {
    let dir = tempfile::tempdir().expect("temp dir");
    let recipe = dir.path().join("tiny.yaml");
    std::fs::write(&recipe, RECIPE).expect("recipe");
    let run = dir.path().join("run");

    // 1. Train (one short epoch) and take its checkpoint.
    ok(
        Command::new(tool("trainer")).arg("train").arg("--config").arg(&recipe).arg("--out").arg(&run).output().expect("trainer"),
        "trainer train",
    );
    let weights = latest_checkpoint(&run);

    // 2. Export it from its recipe: labels, clip and crop come along.
    let model = dir.path().join("tiny.onnx");
    ok(
        Command::new(tool("trainer"))
            .args(["export", "--config"])
            .arg(&recipe)
            .arg("--weights")
            .arg(&weights)
            .arg("--out")
            .arg(&model)
            .output()
            .expect("trainer export"),
        "trainer export",
    );

    // 3. A synthetic motion clip as a real H.264 MP4.
    let synth = dir.path().join("synth");
    ok(
        Command::new(tool("trainer"))
            .args(["synth", "--out"])
            .arg(&synth)
            .args(["--train", "1", "--val", "1", "--size", "64", "--frames", "90"])
            .output()
            .expect("trainer synth"),
        "trainer synth",
    );
    let val = std::fs::read_to_string(synth.join("val.txt")).expect("val list");
    let clip = synth.join(val.split_whitespace().next().expect("a val clip"));

    // 4. The element in a gst-launch pipeline posts predictions named by the
    // recipe's classes.
    let registry = dir.path().join("registry.bin");
    let uri = format!("file://{}", clip.display());
    let launch = ok(
        Command::new("gst-launch-1.0")
            .env("GST_PLUGIN_PATH", target_dir())
            .env("GST_REGISTRY", &registry)
            .args(["-m", "uridecodebin", &format!("uri={uri}"), "!", "videoconvert", "!"])
            .args(["slowfast", &format!("model={}", model.display()), "backend=cpu", "stride=8", "!", "fakesink"])
            .output()
            .expect("gst-launch-1.0"),
        "gst-launch-1.0",
    );
    let predictions: Vec<&str> = launch.lines().filter(|l| l.contains("slowfast, index=")).collect();
    assert!(!predictions.is_empty(), "no prediction in:\n{launch}");
    let classes = [
        "move_right",
        "move_left",
        "move_up",
        "move_down",
        "move_fast",
        "rotate_clockwise",
        "rotate_counterclockwise",
        "zoom_in",
        "zoom_out",
        "flash",
        "still",
    ];
    assert!(
        predictions.iter().any(|p| classes.iter().any(|c| p.contains(c))),
        "predictions do not name the recipe's classes: {predictions:?}"
    );

    // 5. `slowfast annotate` writes an annotated MP4 and prints JSON lines.
    let annotated = dir.path().join("annotated.mp4");
    let out = ok(
        Command::new(tool("slowfast"))
            .env("GST_REGISTRY", &registry)
            .arg("annotate")
            .arg(&clip)
            .arg("--model")
            .arg(&model)
            .arg("--output")
            .arg(&annotated)
            .arg("--json")
            .output()
            .expect("slowfast annotate"),
        "slowfast annotate",
    );
    let json: Vec<serde_json::Value> = out.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).collect();
    let predicted: Vec<&str> = json.iter().filter(|v| v["event"] == "prediction").filter_map(|v| v["top"][0]["label"].as_str()).collect();
    assert!(!predicted.is_empty(), "no prediction line in:\n{out}");
    assert!(predicted.iter().all(|l| classes.contains(l)), "{predicted:?}");
    let summary = json.iter().find(|v| v["event"] == "finished").expect("a summary line");
    assert_eq!(summary["frames"], 90, "{summary}");
    assert!(std::fs::metadata(&annotated).map(|m| m.len() > 1000).unwrap_or(false), "no annotated MP4");
}
