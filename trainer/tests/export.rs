//! ONNX export: ONNX Runtime runs the exported graph and agrees with the
//! libtorch eval forward (within 1e-4 max abs, fp32 CPU) on the parity
//! fixtures of both topologies, for both outputs and both head pools, at
//! batch 2 and 1 on one session; the full-size R50 8x8 export loads and runs;
//! the metadata contract reads back; bad inputs are refused by name.
//!
//! ONNX Runtime is loaded from `ORT_DYLIB_PATH` (set by `.cargo/config.toml`
//! after `scripts/setup.sh`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use tch::{Device, Kind, Tensor};
use trainer::export::metadata::{self, KEYS};
use trainer::export::{ExportOptions, INPUT_FAST, INPUT_SLOW, OPSET, PRODUCER_NAME, export_onnx, output_name, write_model};
use trainer::labels;
use trainer::model::{EvalOutput, HeadPool, ModelConfig, Preset, SlowFast};

mod common;
use common::{Fixture, fixture, max_abs};

const TOLERANCE: f64 = 1e-4;

fn ort_env() -> &'static Environment {
    static ENV: OnceLock<Result<Environment, String>> = OnceLock::new();
    let env = ENV.get_or_init(|| {
        let path = std::env::var("ORT_DYLIB_PATH")
            .map_err(|_| "ORT_DYLIB_PATH is not set: run `. scripts/setup.sh` or go through cargo".to_string())?;
        let builder = ort::init_from(&path).map_err(|e| format!("{path}: {e}"))?;
        builder.with_name("trainer-export-tests").build().map_err(|e| e.to_string())
    });
    match env {
        Ok(env) => env,
        Err(e) => panic!("ONNX Runtime: {e}"),
    }
}

fn session_builder() -> SessionBuilder {
    let builder = Session::builder(ort_env()).expect("session builder");
    let builder = builder.with_optimization_level(GraphOptimizationLevel::All).expect("optimisation level");
    builder.with_intra_threads(2).expect("threads")
}

fn session_from_memory(bytes: &[u8]) -> Session {
    session_builder().commit_from_memory(bytes).expect("ONNX Runtime loads the exported model")
}

/// Runs the session on a clip pair; returns the named output and its shape.
fn run(session: &mut Session, slow: &Tensor, fast: &Tensor, output: &str) -> Result<Tensor, String> {
    let to_ort = |t: &Tensor| {
        let data = Vec::<f32>::try_from(t.contiguous().view([-1])).expect("f32 clip");
        ort::value::Tensor::from_array((t.size(), data)).expect("ort tensor")
    };
    let outputs = session.run(ort::inputs![INPUT_SLOW => to_ort(slow), INPUT_FAST => to_ort(fast)]).map_err(|e| e.to_string())?;
    let (shape, data) = outputs[output].try_extract_tensor::<f32>().map_err(|e| e.to_string())?;
    Ok(Tensor::from_slice(data).view(&shape[..]))
}

/// Export options matching a fixture clip (`[N, 3, T, H, W]` fast input).
fn fixture_options(f: &Fixture, output: EvalOutput, dynamic_spatial: bool, crop: i64) -> ExportOptions {
    ExportOptions {
        output,
        dynamic_spatial,
        crop_size: crop,
        fast_frames: f.io["fast"].size()[2],
        ..ExportOptions::new(labels::generated(f.model.config.num_classes as usize))
    }
}

fn libtorch_eval(model: &mut SlowFast, output: EvalOutput, slow: &Tensor, fast: &Tensor) -> Tensor {
    model.eval_output = output;
    tch::no_grad(|| model.forward_t(slow, fast, false)).expect("libtorch forward")
}

/// Exports with `opts`, then compares ONNX Runtime with libtorch on the
/// clip pair at batch N and on its first clip (same session: dynamic batch),
/// and at batch N with `reference` (pytorchvideo's output) when given.
fn check_against_libtorch(f: &mut Fixture, opts: &ExportOptions, slow: &Tensor, fast: &Tensor, what: &str, reference: Option<&Tensor>) {
    let bytes = export_onnx(&f.model, opts).expect("export");
    let mut session = session_from_memory(&bytes);
    let name = output_name(opts.output);
    let batches = [(slow.shallow_clone(), fast.shallow_clone()), (slow.narrow(0, 0, 1), fast.narrow(0, 0, 1))];
    for (i, (s, x)) in batches.iter().enumerate() {
        let n = s.size()[0];
        let want = libtorch_eval(&mut f.model, opts.output, s, x);
        let got = run(&mut session, s, x, name).expect("ONNX Runtime run");
        let d = max_abs(&got, &want);
        eprintln!("{what}, {name}, batch {n}: max abs difference to libtorch {d:.3e}");
        assert!(d < TOLERANCE, "{what}, {name}, batch {n}: ONNX Runtime differs from libtorch by {d:e}");
        if let (0, Some(r)) = (i, reference) {
            let d = max_abs(&got, r);
            eprintln!("{what}, {name}, batch {n}: max abs difference to pytorchvideo {d:.3e}");
            assert!(d < TOLERANCE, "{what}, {name}: ONNX Runtime differs from the pytorchvideo reference by {d:e}");
        }
    }
}

fn check_fixture_dynamic_spatial(name: &str) {
    let mut f = fixture(name, HeadPool::Global);
    let (slow, fast) = (f.io["slow"].shallow_clone(), f.io["fast"].shallow_clone());
    for (output, reference) in [(EvalOutput::Probabilities, "eval_probs"), (EvalOutput::Logits, "eval_logits")] {
        let opts = fixture_options(&f, output, true, 40);
        let reference = f.io[reference].shallow_clone();
        check_against_libtorch(&mut f, &opts, &slow, &fast, name, Some(&reference));
    }
}

#[test]
fn onnx_runtime_matches_libtorch_8x8() {
    check_fixture_dynamic_spatial("tiny_8x8");
}

#[test]
fn onnx_runtime_matches_libtorch_4x16() {
    check_fixture_dynamic_spatial("tiny_4x16");
}

#[test]
fn fixed_crop_runs_its_size_and_refuses_others() {
    let mut f = fixture("tiny_8x8", HeadPool::Global);
    // The fixture clips are 48 x 40: a centre 40 x 40 crop fits a fixed-size export.
    let (slow, fast) = (f.io["slow"].narrow(3, 4, 40), f.io["fast"].narrow(3, 4, 40));
    let opts = fixture_options(&f, EvalOutput::Probabilities, false, 40);
    check_against_libtorch(&mut f, &opts, &slow, &fast, "tiny_8x8 crop 40", None);
    let bytes = export_onnx(&f.model, &opts).expect("export");
    let mut session = session_from_memory(&bytes);
    let dims = |i: usize| match session.inputs()[i].dtype().tensor_shape() {
        Some(s) => s.to_vec(),
        None => panic!("input {i} is not a tensor"),
    };
    assert_eq!(dims(0), [-1, 3, 4, 40, 40]);
    assert_eq!(dims(1), [-1, 3, 16, 40, 40]);
    let wrong = run(&mut session, &f.io["slow"], &f.io["fast"], "probabilities");
    assert!(wrong.is_err(), "a 48 x 40 clip ran on a model exported for 40 x 40");
}

#[test]
fn kernel_head_pool_matches_libtorch() {
    // Final maps are slow [4, 2, 2] and fast [16, 2, 2]: these kernels leave
    // 3 x 2 x 2 positions on both, each with its own softmax before the mean.
    let pool = HeadPool::Kernel { slow: [2, 1, 1], fast: [14, 1, 1] };
    let mut f = fixture("tiny_8x8", pool);
    let (slow, fast) = (f.io["slow"].shallow_clone(), f.io["fast"].shallow_clone());
    for output in [EvalOutput::Probabilities, EvalOutput::Logits] {
        let opts = fixture_options(&f, output, true, 40);
        check_against_libtorch(&mut f, &opts, &slow, &fast, "tiny_8x8 kernel head", None);
    }
}

#[test]
fn graph_is_opset_17_with_batch_norm_folded() {
    let f = fixture("tiny_4x16", HeadPool::Global);
    let bytes = export_onnx(&f.model, &fixture_options(&f, EvalOutput::Logits, true, 40)).expect("export");
    let model = onnx_rs::parse(&bytes).expect("onnx-rs parses the export");
    assert_eq!(model.opset_import.len(), 1);
    assert_eq!((model.opset_import[0].domain, model.opset_import[0].version), ("", OPSET));
    let graph = model.graph.as_ref().expect("graph");
    let ops: Vec<&str> = graph.node.iter().map(|n| n.op_type.as_str()).collect();
    assert!(!ops.contains(&"BatchNormalization") && !ops.contains(&"Dropout"), "{ops:?}");
    let convs: Vec<_> = graph.node.iter().filter(|n| n.op_type.as_str() == "Conv").collect();
    // 2 stems + 4 laterals + 16 blocks x 3 per pathway + 4 shortcuts per pathway.
    assert_eq!(convs.len(), 2 + 4 + 2 * (16 * 3 + 4));
    assert!(convs.iter().all(|n| n.input.len() == 3), "every conv carries its folded bias");
    let names: Vec<&str> = graph.input.iter().map(|i| i.name).collect();
    assert_eq!(names, [INPUT_SLOW, INPUT_FAST]);
    assert_eq!(graph.output.len(), 1);
    assert_eq!(graph.output[0].name, "logits");
}

#[test]
fn metadata_round_trips_through_onnx_runtime() {
    let f = fixture("tiny_4x16", HeadPool::Global);
    let names: Vec<String> = (0..10).map(|i| format!("class \"{i}\" ünïcode, with spaces")).collect();
    let recipe = "TRAIN:\n  BATCH_SIZE: 8\nSOLVER:\n  BASE_LR: 0.1\n";
    let opts = ExportOptions {
        dynamic_spatial: true,
        crop_size: 40,
        fast_frames: 16,
        sampling_rate: 4,
        target_fps: 29.97,
        mean: [0.45, 0.4, 0.35],
        std: [0.225, 0.25, 0.3],
        recipe: recipe.to_string(),
        ..ExportOptions::new(names.clone())
    };
    let bytes = export_onnx(&f.model, &opts).expect("export");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("tiny.onnx");
    write_model(&path, &bytes).expect("write");
    let session = session_builder().commit_from_file(&path).expect("load from file");
    let meta = session.metadata().expect("metadata");
    assert_eq!(meta.producer().as_deref(), Some(PRODUCER_NAME));
    assert!(meta.description().is_some_and(|d| d.contains("slow [N, 3, 2, H, W]")), "{:?}", meta.description());
    let get = |k: &str| meta.custom(k).unwrap_or_else(|| panic!("metadata key {k} missing"));
    let mut keys = meta.custom_keys().expect("keys");
    keys.sort();
    let mut expected_keys: Vec<String> = KEYS.iter().map(|k| k.to_string()).collect();
    expected_keys.sort();
    assert_eq!(keys, expected_keys);

    let expected = [
        (metadata::KEY_FORMAT_VERSION, "1"),
        (metadata::KEY_ARCH, "custom"),
        (metadata::KEY_ALPHA, "8"),
        (metadata::KEY_FAST_FRAMES, "16"),
        (metadata::KEY_SLOW_FRAMES, "2"),
        (metadata::KEY_SAMPLING_RATE, "4"),
        (metadata::KEY_TARGET_FPS, "29.97"),
        (metadata::KEY_CROP_SIZE, "40"),
        (metadata::KEY_DYNAMIC_SPATIAL, "true"),
        (metadata::KEY_MEAN, "0.45,0.4,0.35"),
        (metadata::KEY_STD, "0.225,0.25,0.3"),
        (metadata::KEY_NUM_CLASSES, "10"),
        (metadata::KEY_OUTPUT, "probabilities"),
        (metadata::KEY_RECIPE, recipe),
    ];
    for (k, v) in expected {
        assert_eq!(get(k), v, "metadata {k}");
    }
    let labels: Vec<String> = serde_json::from_str(&get(metadata::KEY_LABELS)).expect("labels JSON");
    assert_eq!(labels, names);
    let config: ModelConfig = serde_json::from_str(&get(metadata::KEY_MODEL_CONFIG)).expect("model config JSON");
    assert_eq!(config, f.model.config);
}

#[test]
fn full_r50_8x8_exports_and_runs_at_224() {
    let dir = tempfile::tempdir().expect("temp dir");
    let labels_file = dir.path().join("classes.txt");
    let lines: String = (0..400).map(|i| format!("{i} action {i}\n")).collect();
    std::fs::write(&labels_file, lines).expect("labels file");
    let out = dir.path().join("slowfast_8x8_r50.onnx");
    let run_cli = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(["export", "--arch", "slowfast_8x8_r50", "--random-init", "--crop", "224", "--recipe", "random init"])
        .arg("--labels")
        .arg(&labels_file)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run trainer export");
    assert!(run_cli.status.success(), "trainer export failed: {}", String::from_utf8_lossy(&run_cli.stderr));
    let size = std::fs::metadata(&out).expect("model written").len();
    eprintln!("slowfast_8x8_r50 at 224: {size} bytes");
    // 34,566,488 parameters less the folded BN scales, as f32.
    assert!(size > 130_000_000 && size < 145_000_000, "{size} bytes");
    let leftovers = std::fs::read_dir(dir.path()).expect("dir").count();
    assert_eq!(leftovers, 2, "temporary file left behind");

    let mut session = session_builder().commit_from_file(&out).expect("ONNX Runtime loads the R50 export");
    let meta = session.metadata().expect("metadata");
    assert_eq!(meta.custom(metadata::KEY_ARCH).as_deref(), Some("slowfast_8x8_r50"));
    assert_eq!(meta.custom(metadata::KEY_SLOW_FRAMES).as_deref(), Some("8"));
    assert_eq!(meta.custom(metadata::KEY_CROP_SIZE).as_deref(), Some("224"));
    let labels: Vec<String> = serde_json::from_str(&meta.custom(metadata::KEY_LABELS).expect("labels")).expect("JSON");
    assert_eq!(labels[399], "action 399");
    drop(meta);

    tch::manual_seed(0);
    let fast = Tensor::randn([1, 3, 32, 224, 224], (Kind::Float, Device::Cpu));
    let idx: Vec<i64> = runtime::sampling::slow_indices(32, 4).into_iter().map(|i| i as i64).collect();
    let slow = fast.index_select(2, &Tensor::from_slice(&idx));
    let probs = run(&mut session, &slow, &fast, "probabilities").expect("R50 inference");
    assert_eq!(probs.size(), [1, 400]);
    let sum = probs.sum(Kind::Double).double_value(&[]);
    assert!((sum - 1.0).abs() < 1e-4, "probabilities sum to {sum}");
    assert!(bool::try_from(probs.isfinite().all()).expect("bool"));
}

fn trainer_export(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_trainer")).arg("export").args(args).output().expect("run trainer export");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

#[test]
fn cli_refuses_bad_inputs_by_name() {
    let dir = tempfile::tempdir().expect("temp dir");
    let labels_file = dir.path().join("three.txt");
    std::fs::write(&labels_file, "archery\nbowling\ncapoeira\n").expect("labels");
    let out = dir.path().join("m.onnx");
    let (l, o) = (path_str(&labels_file), path_str(&out));

    let (ok, err) = trainer_export(&["--arch", "slowfast_8x8_r50", "--random-init", "--labels", l, "--out", o]);
    assert!(!ok && err.contains(l) && err.contains("3 labels") && err.contains("400 classes"), "{err}");

    let (ok, err) = trainer_export(&["--arch", "slowfast_4x16_r50", "--random-init", "--labels", l, "--num-classes", "5", "--out", o]);
    assert!(!ok && err.contains(l) && err.contains("3 labels") && err.contains("5 classes"), "{err}");

    let missing = dir.path().join("absent.safetensors");
    let (ok, err) = trainer_export(&["--arch", "slowfast_8x8_r50", "--weights", path_str(&missing), "--num-classes", "400", "--out", o]);
    assert!(!ok && err.contains(path_str(&missing)) && err.contains("no such file"), "{err}");

    let (ok, err) = trainer_export(&["--arch", "slowfast_8x8_r50", "--num-classes", "400", "--out", o]);
    assert!(!ok && err.contains("--weights") && err.contains("--random-init"), "{err}");

    let (ok, err) = trainer_export(&["--arch", "slowfast_8x8_r50", "--random-init", "--out", o]);
    assert!(!ok && err.contains("--labels") && err.contains("--num-classes"), "{err}");

    let nowhere = dir.path().join("no/such/dir/m.onnx");
    let (ok, err) = trainer_export(&["--arch", "slowfast_8x8_r50", "--random-init", "--num-classes", "4", "--out", path_str(&nowhere)]);
    assert!(!ok && err.contains(path_str(&dir.path().join("no/such/dir"))) && err.contains("does not exist"), "{err}");

    assert!(!out.exists(), "nothing may be written on failure");
}

#[test]
fn library_refuses_bad_options_by_field() {
    let f = fixture("tiny_8x8", HeadPool::Global);
    let base = fixture_options(&f, EvalOutput::Probabilities, false, 40);
    let err = |opts: ExportOptions| export_onnx(&f.model, &opts).expect_err("bad options").to_string();

    let e = err(ExportOptions { labels: labels::generated(9), ..base.clone() });
    assert!(e.contains("`labels`") && e.contains("9 names") && e.contains("10 classes"), "{e}");
    let e = err(ExportOptions { fast_frames: 18, ..base.clone() });
    assert!(e.contains("`fast_frames`") && e.contains("alpha = 4"), "{e}");
    let e = err(ExportOptions { crop_size: 16, ..base.clone() });
    assert!(e.contains("`crop_size`") && e.contains("stride"), "{e}");
    let e = err(ExportOptions { arch: Some(Preset::SlowFast8x8R50), ..base.clone() });
    assert!(e.contains("`arch`") && e.contains("slowfast_8x8_r50") && e.contains("custom"), "{e}");
    let e = err(ExportOptions { std: [0.2, 0.0, 0.2], ..base.clone() });
    assert!(e.contains("`std`"), "{e}");

    let e = write_model(Path::new("/nonexistent-dir/m.onnx"), b"x").expect_err("missing dir").to_string();
    assert!(e.contains("/nonexistent-dir") && e.contains("does not exist"), "{e}");
}

#[test]
fn cli_exports_from_a_training_recipe() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("demo.onnx");
    let recipe = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../configs/demo_synth_cpu.yaml");
    let (ok, err) = trainer_export(&["--config", path_str(&recipe), "--random-init", "--out", path_str(&out)]);
    assert!(ok, "{err}");
    let session = session_builder().commit_from_file(&out).expect("ONNX Runtime loads the export");
    let meta = session.metadata().expect("metadata");
    assert_eq!(meta.custom(metadata::KEY_ARCH).as_deref(), Some("custom"));
    assert_eq!(meta.custom(metadata::KEY_FAST_FRAMES).as_deref(), Some("16"));
    assert_eq!(meta.custom(metadata::KEY_CROP_SIZE).as_deref(), Some("64"));
    let labels: Vec<String> = serde_json::from_str(&meta.custom(metadata::KEY_LABELS).expect("labels")).expect("JSON");
    assert_eq!(labels, trainer::synth::CLASSES.map(String::from).to_vec());
    let recipe_text = meta.custom(metadata::KEY_RECIPE).expect("recipe");
    assert!(recipe_text.contains("name: demo_synth_cpu"));

    // A recipe whose lists need a labels file says so.
    let lists = dir.path().join("k400.yaml");
    let text = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../configs/slowfast_8x8_r50.yaml")).expect("recipe");
    std::fs::write(&lists, text).expect("copy");
    let (ok, err) = trainer_export(&["--config", path_str(&lists), "--random-init", "--out", path_str(&out)]);
    assert!(!ok && err.contains("k400.yaml") && err.contains("--labels"), "{err}");
}
