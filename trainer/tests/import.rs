//! Checkpoints of other zoos (`tests/fixtures/import/`, written by torch
//! and pytorchvideo themselves; `generate.py` there makes them) give the
//! reference's outputs, and broken or hostile files are refused with an
//! error that says what and where, without panicking or running anything.
//! Tolerance: eval probabilities within 1e-4 max abs (the same weights:
//! they agree to rounding).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use tch::{Device, nn};
use trainer::import::{self, Zoo};
use trainer::model::{HeadPool, ModelConfig, SlowFast};
use trainer::weights::{self, LoadMode};

mod common;
use common::{fixtures_dir, max_abs};

fn import_dir() -> PathBuf {
    fixtures_dir().join("import")
}

/// The tiny_8x8 network with `weights` loaded strictly, and its eval
/// probabilities' distance from the reference's.
fn distance_from_reference(weights: &Path) -> f64 {
    let reference = common::fixture("tiny_8x8", HeadPool::Global);
    eval_distance(&reference.model.config, weights, &reference.io, "eval_probs")
}

/// `config`'s network with `weights` loaded strictly, run in eval on
/// `io`'s slow and fast clips: its distance from `io[expected]`.
fn eval_distance(config: &ModelConfig, weights: &Path, io: &BTreeMap<String, tch::Tensor>, expected: &str) -> f64 {
    let mut vs = nn::VarStore::new(Device::Cpu);
    let model = SlowFast::new(&vs.root(), config).unwrap();
    weights::load(&mut vs, weights, LoadMode::Strict).unwrap_or_else(|e| panic!("{e}"));
    let probs = tch::no_grad(|| model.forward_t(&io["slow"], &io["fast"], false)).unwrap();
    max_abs(&probs, &io[expected])
}

#[test]
fn a_pyslowfast_checkpoint_gives_the_reference_outputs() {
    let path = import_dir().join("pyslowfast.pyth");
    let d = distance_from_reference(&path);
    assert!(d < 1e-4, "eval probabilities differ by {d:e}");
    let imported = import::import(&path, None).unwrap();
    let r = &imported.report;
    assert_eq!((r.zoo.as_str(), r.container.as_str(), r.state_dict_at.as_str()), ("pyslowfast", "torch zip", "model_state"));
    assert_eq!(r.epoch, Some(7));
    assert!(r.optimizer_state && r.other_tensors > 100, "{r:?}");
    assert!(r.cfg.as_deref().is_some_and(|c| c.contains("FUSION_KERNEL_SZ: 7")), "{r:?}");
    assert!(!r.dropped_module_prefix);
}

/// pytorchvideo's names, a `module.` prefix and no BN step counters.
#[test]
fn a_pytorchvideo_state_dict_gives_the_reference_outputs() {
    let path = import_dir().join("pytorchvideo.pt");
    let d = distance_from_reference(&path);
    assert!(d < 1e-4, "eval probabilities differ by {d:e}");
    let r = import::import(&path, None).unwrap().report;
    assert_eq!(r.zoo, "pytorchvideo");
    assert!(r.dropped_module_prefix);
    // Taken for PySlowFast names, the same file is refused by the strict
    // loader, tensor by tensor.
    let mut vs = nn::VarStore::new(Device::Cpu);
    let config = common::fixture("tiny_8x8", HeadPool::Global).model.config;
    let _model = SlowFast::new(&vs.root(), &config).unwrap();
    let tensors = import::import(&path, Some(Zoo::PySlowFast)).unwrap().tensors;
    let e = weights::load_tensors(&mut vs, &tensors, &path, LoadMode::Strict).unwrap_err().to_string();
    assert!(
        e.contains("unexpected: blocks.0.multipathway_blocks.0.conv.weight") && e.contains("missing: s1.pathway0_stem.conv.weight"),
        "{e}"
    );
}

#[test]
fn trainer_import_writes_weights_that_load_as_safetensors() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("tiny.yaml");
    write_tiny_recipe(&recipe);
    let out = dir.path().join("w.safetensors");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_trainer"))
        .arg("import")
        .arg(import_dir().join("pyslowfast.pyth"))
        .arg("--config")
        .arg(&recipe)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    assert!(run.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("a pyslowfast checkpoint (torch zip)") && stdout.contains("optimizer state"), "{stdout}");
    assert!(import::is_safetensors(&out));
    let d = distance_from_reference(&out);
    assert!(d < 1e-4, "eval probabilities differ by {d:e}");
    // Another variant (a wider network) is refused and nothing is written.
    let wide = dir.path().join("wide.yaml");
    std::fs::write(&wide, std::fs::read_to_string(&recipe).unwrap().replace("width_per_group: 8", "width_per_group: 16")).unwrap();
    let refused = dir.path().join("refused.safetensors");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_trainer"))
        .arg("import")
        .arg(import_dir().join("pyslowfast.pyth"))
        .args(["--config", &wide.display().to_string(), "--out", &refused.display().to_string()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success() && stderr.contains("shape of s1.pathway0_stem.conv.weight"), "{stderr}");
    assert!(!refused.exists());
}

/// A recipe for the tiny_8x8 network: the Kinetics recipe with the
/// fixture's network in place of its own.
fn write_tiny_recipe(recipe: &Path) {
    let demo = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/slowfast_8x8_r50.yaml")).unwrap();
    let (head, rest) = demo.split_once("\nmodel:").unwrap();
    let (_, tail) = rest.split_once("\ndata:").unwrap();
    let model = "model:\n  arch: slowfast_8x8_r50\n  num_classes: 10\n  width_per_group: 8\n  beta_inv: 8\n  dropout: 0.0\n";
    std::fs::write(recipe, format!("{head}\n{model}\ndata:{tail}")).unwrap();
}

/// The entries of a zip, in order.
fn unzip(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut zip = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    (0..zip.len())
        .map(|i| {
            let mut e = zip.by_index(i).unwrap();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            (e.name().map(|n| n.to_string()).unwrap(), data)
        })
        .collect()
}

fn rezip(entries: &[(String, Vec<u8>)], path: &Path) {
    let mut w = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, data) in entries {
        w.start_file(name.as_str(), opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap();
}

fn refused(path: &Path) -> String {
    match import::import(path, None) {
        Ok(_) => panic!("{} was accepted", path.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn broken_files_are_refused_saying_what_and_where() {
    let dir = tempfile::tempdir().unwrap();
    let original = std::fs::read(import_dir().join("pytorchvideo.pt")).unwrap();
    for cut in [0, 10, 1000, original.len() / 2, original.len() - 10] {
        let path = dir.path().join(format!("cut_{cut}.pt"));
        std::fs::write(&path, &original[..cut]).unwrap();
        let e = refused(&path);
        assert!(e.contains(&format!("cut_{cut}.pt")), "{e}");
    }
    let entries = unzip(&import_dir().join("pytorchvideo.pt"));
    // A storage missing from the zip.
    let missing: Vec<_> = entries.iter().filter(|(n, _)| n != "pytorchvideo/data/5").cloned().collect();
    let path = dir.path().join("missing_storage.pt");
    rezip(&missing, &path);
    let e = refused(&path);
    assert!(e.contains("pytorchvideo/data/5"), "{e}");
    // A storage shorter than its tensor.
    let short: Vec<_> =
        entries.iter().map(|(n, d)| (n.clone(), if n == "pytorchvideo/data/0" { d[..d.len() - 4].to_vec() } else { d.clone() })).collect();
    let path = dir.path().join("short_storage.pt");
    rezip(&short, &path);
    let e = refused(&path);
    assert!(e.contains("pytorchvideo/data/0 holds 4700 bytes"), "{e}");
    // Text that is neither.
    let path = dir.path().join("notes.pyth");
    std::fs::write(&path, "not a checkpoint").unwrap();
    assert!(refused(&path).contains("neither a torch zip nor a pickle"));
}

/// A pickle whose tensor claims a shape far beyond its storage.
#[test]
fn absurd_shapes_are_refused_before_anything_is_allocated() {
    let dir = tempfile::tempdir().unwrap();
    let mut entries = unzip(&import_dir().join("pytorchvideo.pt"));
    let pkl = entries.iter_mut().find(|(n, _)| n.ends_with("data.pkl")).unwrap();
    // The first tensor's size tuple: BININT1 8, BININT1 3, ... (a 5-D
    // conv weight); make its first dimension 2**31 - 1 (BININT).
    let data = &mut pkl.1;
    let at = data.windows(2).position(|w| w == [b'K', 8]).unwrap();
    data.splice(at..at + 2, [b'J', 0xff, 0xff, 0xff, 0x7f]);
    let path = dir.path().join("absurd.pt");
    rezip(&entries, &path);
    let e = refused(&path);
    assert!(e.contains("reaches element") || e.contains("absurd"), "{e}");
}

/// `os.system` and `builtins.eval` are named and refused; the command the
/// file carries never runs.
#[test]
fn a_pickle_that_asks_for_code_is_refused_and_runs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("pwned");
    let command = format!("touch {}", marker.display());
    // protocol 2: GLOBAL posix.system, the command, TUPLE1, REDUCE.
    let mut pkl = b"\x80\x02cposix\nsystem\nq\x00X".to_vec();
    pkl.extend((command.len() as u32).to_le_bytes());
    pkl.extend(command.as_bytes());
    pkl.extend(b"\x85R.");
    let path = dir.path().join("evil.pkl");
    std::fs::write(&path, &pkl).unwrap();
    let e = refused(&path);
    assert!(e.contains("refused global `posix.system`") && e.contains("evil.pkl"), "{e}");
    let eval = b"\x80\x04\x95\x1d\x00\x00\x00\x00\x00\x00\x00\x8c\x08builtins\x94\x8c\x04eval\x94\x93\x94\x8c\x011\x94\x85\x94R\x94.";
    let path = dir.path().join("eval.pth");
    std::fs::write(&path, eval).unwrap();
    assert!(refused(&path).contains("refused global `builtins.eval`"));
    // Inside a torch zip too.
    let mut entries = unzip(&import_dir().join("pytorchvideo.pt"));
    entries.iter_mut().find(|(n, _)| n.ends_with("data.pkl")).unwrap().1 = pkl;
    let path = dir.path().join("evil.pt");
    rezip(&entries, &path);
    assert!(refused(&path).contains("refused global `posix.system`"));
    assert!(!marker.exists(), "the pickle's command ran");
}

/// A small deterministic generator, so the fuzz cases are the same on
/// every run (and a failing case can be replayed).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(data: &mut Vec<u8>, rng: &mut Rng) {
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(data.len());
        match rng.below(5) {
            0 => data[at] ^= 1 << rng.below(8),
            1 => data[at] = rng.next() as u8,
            2 => data.truncate(at),
            3 => {
                data.insert(at, rng.next() as u8);
            }
            _ => {
                // Interesting values where lengths and sizes live.
                let v = [0u8, 0xff, 0x7f, 0x80, 1][rng.below(5)];
                data[at] = v;
            }
        }
        if data.is_empty() {
            return;
        }
    }
}

/// Mutations of the fixtures' pickles (thousands) and whole files
/// (hundreds): every case is read or refused, none panics. Cases that
/// once crashed are kept in `fixtures/import/crashes/` and replayed first.
#[test]
fn mutated_checkpoints_never_crash_the_reader() {
    let dir = tempfile::tempdir().unwrap();
    let crashes = import_dir().join("crashes");
    if let Ok(entries) = std::fs::read_dir(&crashes) {
        for e in entries.flatten() {
            let _ = import::import(&e.path(), None);
        }
    }
    let mut rng = Rng(0x5eed_cafe_f00d_1234);
    let entries = unzip(&import_dir().join("pytorchvideo.pt"));
    let pkl = entries.iter().find(|(n, _)| n.ends_with("data.pkl")).unwrap().1.clone();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut cases = 0;
    for i in 0..4000 {
        let mut data = pkl.clone();
        mutate(&mut data, &mut rng);
        let result = std::panic::catch_unwind(|| import::pickle::load(&data).map(|_| ()));
        if result.is_err() {
            let kept = dir.path().join(format!("pickle_case_{i}.pkl"));
            std::fs::write(&kept, &data).unwrap();
            panic!("pickle case {i} panicked; kept as {}", kept.display());
        }
        cases += 1;
        if std::time::Instant::now() > deadline {
            break;
        }
    }
    let original = std::fs::read(import_dir().join("pytorchvideo.pt")).unwrap();
    for i in 0..200 {
        let mut data = if i % 2 == 0 {
            original.clone()
        } else {
            let mut e = entries.clone();
            let p = e.iter_mut().find(|(n, _)| n.ends_with("data.pkl")).unwrap();
            mutate(&mut p.1, &mut rng);
            let path = dir.path().join("rezipped.pt");
            rezip(&e, &path);
            std::fs::read(&path).unwrap()
        };
        if i % 2 == 0 {
            mutate(&mut data, &mut rng);
        }
        let path = dir.path().join(format!("file_case_{i}.pt"));
        std::fs::write(&path, &data).unwrap();
        let result = std::panic::catch_unwind(|| import::import(&path, None).map(|_| ()));
        assert!(result.is_ok(), "file case {i} panicked; kept as {}", path.display());
        std::fs::remove_file(&path).unwrap();
        cases += 1;
    }
    assert!(cases > 1000, "only {cases} cases in the time allowed");
}

/// numpy arrays as PaddleVideo and Caffe2 files pickle them: C and
/// Fortran order, big-endian, half, int64; protocols 4 and 2 (bytes through
/// `_codecs.encode`). `numpy_arrays.py` writes them.
#[test]
fn numpy_arrays_are_read_in_every_order_and_byte_order() {
    for (file, prefix) in [("numpy_protocol4.pdparams", ""), ("numpy_protocol2.pkl", "blobs.")] {
        let tensors: std::collections::BTreeMap<String, tch::Tensor> =
            import::read_tensors(&import_dir().join(file)).unwrap_or_else(|e| panic!("{e}")).into_iter().collect();
        let expected = (tch::Tensor::arange(24, (tch::Kind::Float, Device::Cpu)) * 0.5).reshape([2, 3, 4]);
        for name in ["c_order_f4", "fortran_f8", "big_endian_f4", "half"] {
            let t = &tensors[&format!("{prefix}{name}")];
            assert_eq!(t.size(), [2, 3, 4], "{file}: {name}");
            assert!(max_abs(t, &expected) == 0.0, "{file}: {name} differs: {t}");
        }
        let ints = &tensors[&format!("{prefix}int64")];
        assert_eq!(ints.kind(), tch::Kind::Int64);
        assert_eq!(Vec::<i64>::try_from(ints.flatten(0, -1)).unwrap(), vec![0, 1, 2, 3, 4, 5]);
    }
}

/// A PaddleVideo SlowFast written by Paddle (`paddlevideo.py`: its own
/// backbone and head at reduced width): our network with the imported
/// `.pdparams` gives Paddle's eval probabilities on the same clip.
#[test]
fn a_paddlevideo_checkpoint_gives_paddles_outputs() {
    let path = import_dir().join("paddlevideo.pdparams");
    let io = weights::read(&import_dir().join("paddlevideo_io.safetensors")).unwrap();
    let config = ModelConfig {
        width_per_group: 8,
        beta_inv: 8,
        num_classes: 10,
        dropout: 0.5,
        head_pool: HeadPool::Global,
        ..trainer::model::Preset::SlowFast8x8R50.config()
    };
    let d = eval_distance(&config, &path, &io, "probs");
    assert!(d < 1e-4, "eval probabilities differ from Paddle's by {d:e}");
    let r = import::import(&path, None).unwrap().report;
    assert_eq!((r.zoo.as_str(), r.container.as_str()), ("paddlevideo", "pickle"));
}

/// A Caffe2-style `.pkl` (`caffe2.py`: Caffe2 names that PySlowFast's own
/// converter maps back, momentum blobs and solver counters beside them, no
/// BN step counters): the reference's outputs.
#[test]
fn a_caffe2_checkpoint_gives_the_reference_outputs() {
    let path = import_dir().join("caffe2.pkl");
    let d = distance_from_reference(&path);
    assert!(d < 1e-4, "eval probabilities differ by {d:e}");
    let r = import::import(&path, None).unwrap().report;
    assert_eq!((r.zoo.as_str(), r.state_dict_at.as_str()), ("caffe2", "blobs"));
    assert!(r.optimizer_state && r.other_tensors == 5, "{r:?}");
}

/// Image (2D) weights start the video network: each 2D conv weight is
/// repeated over the network's temporal kernel and divided by it; what the
/// image network lacks or shapes differently keeps its initialisation and
/// is listed.
#[test]
fn image_weights_are_inflated_over_time() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("tiny.yaml");
    write_tiny_recipe(&recipe);
    let out = dir.path().join("inflated.safetensors");
    let input = import_dir().join("caffe2_imagenet.pkl");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_trainer"))
        .arg("import")
        .arg(&input)
        .args(["--config", &recipe.display().to_string(), "--out", &out.display().to_string(), "--inflate"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&run.stderr));
    assert!(
        stdout.contains("inflated over time") && stdout.contains("head.projection.weight (file [1000, 288], network [10, 288])"),
        "{stdout}"
    );
    assert!(stdout.contains("s1.pathway1_stem.conv.weight") && stdout.contains("s1_fuse.conv_f2s.weight"), "{stdout}");
    let image: std::collections::BTreeMap<String, tch::Tensor> = import::read_tensors(&input).unwrap().into_iter().collect();
    let got = weights::read(&out).unwrap();
    // The slow stem's temporal kernel is 1; res4's first conv's is 3.
    for (ours, theirs, t) in
        [("s1.pathway0_stem.conv.weight", "blobs.conv1_w", 1), ("s4.pathway0_res1.branch2.a.weight", "blobs.res4_1_branch2a_w", 3)]
    {
        let want = image[theirs].unsqueeze(2).repeat([1, 1, t, 1, 1]) / t as f64;
        assert_eq!(got[ours].size()[2], t);
        assert!(max_abs(&got[ours], &want) < 1e-7, "{ours}");
    }
    let bn = "s2.pathway0_res0.branch2.a_bn.running_var";
    assert!(max_abs(&got[bn], &image["blobs.res2_0_branch2a_bn_riv"]) == 0.0);
}
