//! INT8 export (`trainer export --int8`): the QDQ graph of the demo
//! recipe's network (random weights), calibrated on the repository's real
//! clips, is valid ONNX that ONNX Runtime and OpenVINO both run, within a
//! stated distance of the fp32 export on those clips; calibration is
//! deterministic; unreadable videos are skipped and counted, and a list
//! with nothing to read is refused by name.

use std::path::{Path, PathBuf};
use std::process::Command;

use runtime::engine::{Backend, Engine, EngineOptions, OpenVinoOptions};
use runtime::preprocess::Clip;
use tch::Kind;
use trainer::data::source::Temporal;
use trainer::data::transform::test_view;
use trainer::data::{Sample, Source};

/// Largest gap in class probability allowed between the INT8 and fp32
/// models on one clip (11 classes). These random weights give nearly
/// uniform outputs, and the measured gap is about 1e-4 on both engines;
/// the trained demo model's agreement is in BENCHMARKS.md.
const PROBABILITY_TOLERANCE: f32 = 0.01;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn recipe() -> PathBuf {
    repo().join("configs/demo_synth_cpu.yaml")
}

fn videos() -> Vec<PathBuf> {
    ["mmaction2_test.mp4", "mmaction2_demo.mp4", "mmaction2_test.avi", "archery_paddlevideo_example.avi"]
        .iter()
        .map(|v| repo().join("data/videos").join(v))
        .collect()
}

fn write_list(dir: &Path, name: &str, paths: &[PathBuf]) -> PathBuf {
    let list = dir.join(name);
    let text: String = paths.iter().map(|p| format!("{} 0\n", p.display())).collect();
    std::fs::write(&list, text).unwrap();
    list
}

/// The demo recipe's network with seeded random weights, saved: random
/// initialisation differs from one process to the next, a file does not.
fn weights(dir: &Path) -> PathBuf {
    let config = trainer::recipe::Recipe::load(&recipe()).unwrap().model_config().unwrap();
    tch::manual_seed(7);
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    trainer::model::SlowFast::new(&vs.root(), &config).unwrap();
    let path = dir.join("weights.safetensors");
    trainer::weights::save(&vs, &path).unwrap();
    path
}

fn export(weights: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(["export", "--config", recipe().to_str().unwrap(), "--weights", weights.to_str().unwrap()])
        .args(args)
        .output()
        .expect("run trainer export");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The recipe's test clip (16 frames at 64, centre) of each video, as the
/// runtime takes it.
fn clips() -> Vec<Clip> {
    let source = Source::List(videos().into_iter().map(|path| Sample { path, label: 0 }).collect());
    let temporal = Temporal { num_frames: 16, sampling_rate: 2, target_fps: 30.0 };
    let norm = runtime::preprocess::Normalization { mean: [0.45; 3], std: [0.225; 3] };
    let position = runtime::sampling::ClipPosition::View { index: 0, count: 1 };
    (0..source.len())
        .map(|i| {
            let raw = source.clips(i, temporal, &[position]).unwrap_or_else(|e| panic!("{}: {}", e.name, e.why));
            let fast = test_view(&raw[0], 64, 0, 1, &norm).unwrap();
            let slow_idx = tch::Tensor::from_slice(&[0i64, 5, 10, 15]);
            let slow = fast.index_select(1, &slow_idx);
            let flat = |t: &tch::Tensor| Vec::<f32>::try_from(t.to_kind(Kind::Float).contiguous().view([-1])).unwrap();
            Clip { slow: flat(&slow), fast: flat(&fast), slow_frames: 4, fast_frames: 16, size: 64 }
        })
        .collect()
}

fn probabilities(model: &Path, backend: Backend, clips: &[Clip]) -> Vec<Vec<f32>> {
    let opts = EngineOptions {
        backend,
        strict: true,
        threads: Some(2),
        openvino: OpenVinoOptions { cache_dir: None },
        ..EngineOptions::default()
    };
    let mut engine = Engine::load(model, &opts).unwrap_or_else(|e| panic!("{e}"));
    clips.iter().map(|c| engine.probabilities(&[c]).unwrap().remove(0)).collect()
}

fn largest_gap(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter().zip(b).flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p - q).abs())).fold(0.0, f32::max)
}

#[test]
fn int8_model_runs_on_both_engines_close_to_fp32_and_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let list = write_list(dir.path(), "calibration.txt", &videos());
    let (fp32, int8, again) = (dir.path().join("fp32.onnx"), dir.path().join("int8.onnx"), dir.path().join("again.onnx"));
    let w = weights(dir.path());
    let (ok, err) = export(&w, &["--out", fp32.to_str().unwrap()]);
    assert!(ok, "{err}");
    for out in [&int8, &again] {
        let (ok, err) =
            export(&w, &["--int8", "--calibration", list.to_str().unwrap(), "--calibration-clips", "4", "--out", out.to_str().unwrap()]);
        assert!(ok, "{err}");
        assert!(err.contains("calibration: 4 clips (0 unreadable videos skipped)"), "{err}");
    }
    assert!(std::fs::read(&int8).unwrap() == std::fs::read(&again).unwrap(), "same weights, list and seed: the same file");

    let info = runtime::model_info::ModelInfo::from_file(&int8).unwrap();
    assert!(info.quantization.as_deref().is_some_and(|q| q.starts_with("int8-qdq")), "{:?}", info.quantization);
    let bytes = std::fs::read(&int8).unwrap();
    let meta = runtime::onnx_meta::metadata_props(&bytes).unwrap();
    let calibration: serde_json::Value = serde_json::from_str(&meta["slowfast.calibration"]).unwrap();
    assert_eq!(calibration["clips"], 4);
    assert_eq!(calibration["method"]["name"], "minmax");
    // Smaller than fp32: int8 weights.
    assert!(bytes.len() * 3 < std::fs::metadata(&fp32).unwrap().len() as usize, "{} bytes", bytes.len());

    // The percentile method: another file, recorded as such, that runs.
    let percentile = dir.path().join("percentile.onnx");
    let (ok, err) = export(
        &w,
        &[
            "--int8",
            "--calibration",
            list.to_str().unwrap(),
            "--calibration-method",
            "percentile:99.9",
            "--out",
            percentile.to_str().unwrap(),
        ],
    );
    assert!(ok, "{err}");
    let meta = runtime::onnx_meta::metadata_props(&std::fs::read(&percentile).unwrap()).unwrap();
    let method: serde_json::Value = serde_json::from_str(&meta["slowfast.calibration"]).unwrap();
    assert_eq!(method["method"], serde_json::json!({"name": "percentile", "value": 99.9}));
    let (ok, err) = export(&w, &["--int8", "--calibration", list.to_str().unwrap(), "--calibration-method", "median", "--out", "x.onnx"]);
    assert!(!ok && err.contains("percentile:P"), "{err}");

    let clips = clips();
    let reference = probabilities(&fp32, Backend::Cpu, &clips);
    let gap = largest_gap(&probabilities(&percentile, Backend::OpenVino, &clips), &reference);
    assert!(gap < PROBABILITY_TOLERANCE, "percentile: largest gap {gap}");
    for backend in [Backend::Cpu, Backend::OpenVino] {
        let got = probabilities(&int8, backend, &clips);
        let gap = largest_gap(&got, &reference);
        eprintln!("{backend:?}: INT8 against fp32, largest probability gap {gap:.4}");
        assert!(gap < PROBABILITY_TOLERANCE, "{backend:?}: largest gap {gap}");
        // Quantised for real: not the fp32 numbers.
        assert!(gap > 0.0);
    }
}

#[test]
fn unreadable_videos_are_skipped_and_an_unreadable_list_refused() {
    let dir = tempfile::tempdir().unwrap();
    let corrupt = dir.path().join("corrupt.mp4");
    std::fs::write(&corrupt, b"not a video at all").unwrap();
    let missing = dir.path().join("missing.mp4");
    let mut paths = videos();
    paths.insert(1, corrupt.clone());
    paths.push(missing.clone());
    let list = write_list(dir.path(), "with_bad.txt", &paths);
    let out = dir.path().join("m.onnx");
    let w = weights(dir.path());
    let (ok, err) =
        export(&w, &["--int8", "--calibration", list.to_str().unwrap(), "--calibration-clips", "8", "--out", out.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(err.contains("calibration: 4 clips (2 unreadable videos skipped)"), "{err}");
    assert!(err.contains("corrupt.mp4") && err.contains("missing.mp4"), "{err}");
    let meta = runtime::onnx_meta::metadata_props(&std::fs::read(&out).unwrap()).unwrap();
    let calibration: serde_json::Value = serde_json::from_str(&meta["slowfast.calibration"]).unwrap();
    assert_eq!(calibration["skipped"].as_array().map(Vec::len), Some(2));

    let bad_only = write_list(dir.path(), "bad_only.txt", &[corrupt, missing]);
    let (ok, err) = export(&w, &["--int8", "--calibration", bad_only.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(!ok && err.contains("bad_only.txt") && err.contains("none of its 2 videos could be read"), "{err}");

    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "# no videos\n").unwrap();
    let (ok, err) = export(&w, &["--int8", "--calibration", empty.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(!ok && err.contains("empty.txt") && err.contains("no samples"), "{err}");

    let (ok, err) = export(&w, &["--int8", "--out", out.to_str().unwrap()]);
    assert!(!ok && err.contains("--calibration"), "{err}");
}

/// `trainer test --onnx`: the recipe's own test protocol on an exported
/// model. The fp32 file on ONNX Runtime makes the libtorch network's
/// predictions (same report), and the INT8 file runs on OpenVINO.
#[test]
fn trainer_test_measures_an_exported_model_with_the_recipes_protocol() {
    let dir = tempfile::tempdir().unwrap();
    // The demo recipe with a validation set of 22 synthetic clips.
    let text = std::fs::read_to_string(recipe()).unwrap().replace("val: 220", "val: 22");
    let small = dir.path().join("recipe.yaml");
    std::fs::write(&small, text).unwrap();
    let w = weights(dir.path());
    let list = write_list(dir.path(), "calibration.txt", &videos());
    let (fp32, int8) = (dir.path().join("fp32.onnx"), dir.path().join("int8.onnx"));
    assert!(export(&w, &["--out", fp32.to_str().unwrap()]).0);
    let (ok, err) =
        export(&w, &["--int8", "--calibration", list.to_str().unwrap(), "--calibration-clips", "2", "--out", int8.to_str().unwrap()]);
    assert!(ok, "{err}");
    let test = |extra: &[&str], report: &str| -> serde_json::Value {
        let path = dir.path().join(report);
        let out = Command::new(env!("CARGO_BIN_EXE_trainer"))
            .args(["test", "--config", small.to_str().unwrap(), "--out", dir.path().to_str().unwrap(), "--report", path.to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    };
    let libtorch = test(&["--weights", w.to_str().unwrap()], "libtorch.json");
    let onnx = test(&["--onnx", fp32.to_str().unwrap(), "--backend", "cpu"], "onnx.json");
    let quantised = test(&["--onnx", int8.to_str().unwrap(), "--backend", "openvino"], "int8.json");
    assert_eq!(libtorch["videos"], 22);
    assert_eq!(onnx["videos"], libtorch["videos"]);
    // The same predictions, but for a video whose two best classes are
    // closer than the engines' rounding (random weights: near-uniform).
    for key in ["top1", "top5"] {
        let gap = (onnx[key].as_f64().unwrap() - libtorch[key].as_f64().unwrap()).abs();
        assert!(gap <= 1.0 / 22.0 + 1e-9, "{key}: {} against {}", onnx[key], libtorch[key]);
    }
    assert_eq!(quantised["videos"], 22);

    // A model that does not take the recipe's clips is refused by field.
    let out = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(["test", "--config", small.to_str().unwrap(), "--out", dir.path().to_str().unwrap()])
        .args(["--onnx", repo().join("runtime/tests/fixtures/tiny_8x8.onnx").to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("tiny_8x8.onnx") && err.contains("recipe's"), "{err}");
}

/// An fp32 model of our own export is a weights file too (BatchNorm
/// unfolded): exporting from it gives the same file byte for byte, which
/// is how the bundled demo model got its INT8 sibling. An INT8 file is
/// refused: its weights are rounded.
#[test]
fn an_exported_model_gives_its_weights_back() {
    let dir = tempfile::tempdir().unwrap();
    let w = weights(dir.path());
    let (first, second, int8) = (dir.path().join("first.onnx"), dir.path().join("second.onnx"), dir.path().join("int8.onnx"));
    assert!(export(&w, &["--out", first.to_str().unwrap()]).0);
    let (ok, err) = export(&first, &["--out", second.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(std::fs::read(&first).unwrap() == std::fs::read(&second).unwrap(), "re-export differs");
    let list = write_list(dir.path(), "calibration.txt", &videos()[..1]);
    assert!(export(&first, &["--int8", "--calibration", list.to_str().unwrap(), "--out", int8.to_str().unwrap()]).0);
    let (ok, err) = export(&int8, &["--out", dir.path().join("x.onnx").to_str().unwrap()]);
    assert!(!ok && err.contains("int8.onnx") && err.contains("quantised"), "{err}");
}
