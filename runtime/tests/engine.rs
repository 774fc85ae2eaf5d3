//! The engine API on the tiny fixture model (CPU provider).

use std::path::PathBuf;

use runtime::engine::{Backend, Engine, EngineOptions, Provider};
use runtime::model_info::OutputKind;
use runtime::preprocess::Clip;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny_8x8.onnx")
}

fn clip(seed: u32, slow: usize, fast: usize, size: usize) -> Clip {
    let wave = |n: usize, k: u32| (0..n).map(|i| (i as f32 * 0.37 + k as f32).sin() * 1.5).collect::<Vec<f32>>();
    Clip {
        slow: wave(3 * slow * size * size, seed),
        fast: wave(3 * fast * size * size, seed + 7),
        slow_frames: slow,
        fast_frames: fast,
        size,
    }
}

#[test]
fn runs_on_cpu_and_batches_like_single_clips() {
    let opts = EngineOptions { backend: Backend::Cpu, strict: true, threads: Some(2), ..EngineOptions::default() };
    let mut engine = Engine::load(&fixture(), &opts).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(engine.provider(), Provider::Cpu);
    let info = engine.info().clone();
    assert_eq!((info.alpha, info.fast_frames, info.slow_frames, info.sampling_rate), (4, 32, 8, 2));
    assert_eq!(info.labels.len(), info.num_classes);
    assert_eq!(info.output, OutputKind::Logits);
    let (a, b) = (clip(1, 8, 32, info.crop_size), clip(2, 8, 32, info.crop_size));
    let pa = engine.probabilities(&[&a]).unwrap();
    let pb = engine.probabilities(&[&b]).unwrap();
    let both = engine.probabilities(&[&a, &b]).unwrap();
    assert_eq!(both.len(), 2);
    for (single, batched) in [(&pa[0], &both[0]), (&pb[0], &both[1])] {
        assert_eq!(single.len(), info.num_classes);
        assert!((single.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        assert!(single.iter().zip(batched.iter()).all(|(x, y)| (x - y).abs() < 1e-5), "{single:?} vs {batched:?}");
    }
    assert_ne!(pa[0], pb[0], "different clips give different outputs");
    // A clip of the wrong geometry is an error naming the model, not a panic.
    let bad = clip(3, 4, 32, info.crop_size);
    let e = engine.probabilities(&[&bad]).unwrap_err().to_string();
    assert!(e.contains("tiny_8x8.onnx"), "{e}");
}
