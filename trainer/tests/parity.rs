//! Numerical parity with the reference implementation.
//!
//! Fixtures in `tests/fixtures/` come from pytorchvideo's `create_slowfast`
//! (the PySlowFast architecture) with reduced widths and the full topology,
//! weights renamed to PySlowFast's names; `tests/fixtures/generate.py` makes
//! them. Tolerances: eval outputs within 1e-4 max abs; train-mode loss and
//! gradients within 1e-4 relative (to the largest gradient entry), fp32 CPU.

use tch::{Kind, Tensor};
use trainer::model::{EvalOutput, HeadPool};
use trainer::weights;

mod common;
use common::{Fixture, fixtures_dir, max_abs};

fn fixture(name: &str) -> Fixture {
    common::fixture(name, HeadPool::Global)
}

fn check_eval(name: &str) {
    let mut f = fixture(name);
    let (slow, fast) = (&f.io["slow"], &f.io["fast"]);
    let probs = tch::no_grad(|| f.model.forward_t(slow, fast, false)).unwrap();
    let d = max_abs(&probs, &f.io["eval_probs"]);
    assert!(d < 1e-4, "{name}: eval probabilities differ by {d:e}");
    f.model.eval_output = EvalOutput::Logits;
    let logits = tch::no_grad(|| f.model.forward_t(slow, fast, false)).unwrap();
    let d = max_abs(&logits, &f.io["eval_logits"]);
    assert!(d < 1e-4, "{name}: eval logits differ by {d:e}");
}

fn check_train(name: &str) {
    let f = fixture(name);
    let (slow, fast) = (&f.io["slow"], &f.io["fast"]);
    let logits = f.model.forward_t(slow, fast, true).unwrap();
    let d = max_abs(&logits, &f.io["train_logits"]);
    assert!(d < 1e-4, "{name}: train logits differ by {d:e}");
    let loss = logits.cross_entropy_for_logits(&f.io["labels"]);
    let expected = f.io["train_loss"].double_value(&[]);
    let rel = (loss.double_value(&[]) - expected).abs() / expected.abs();
    assert!(rel < 1e-4, "{name}: loss {} vs {expected} ({rel:e} relative)", loss.double_value(&[]));
    loss.backward();
    let vars = f.vs.variables();
    let mut checked = 0;
    for (key, want) in &f.io {
        let Some(param) = key.strip_prefix("grad.") else { continue };
        let got = vars[param].grad();
        let scale = want.abs().max().double_value(&[]).max(1e-12);
        let rel = max_abs(&got, want) / scale;
        assert!(rel < 1e-4, "{name}: gradient of {param} differs by {rel:e} relative");
        checked += 1;
    }
    assert!(checked >= 6, "{name}: only {checked} gradients in the fixture");
}

#[test]
fn eval_matches_reference_8x8() {
    check_eval("tiny_8x8");
}

#[test]
fn eval_matches_reference_4x16() {
    check_eval("tiny_4x16");
}

#[test]
fn train_loss_and_gradients_match_reference_8x8() {
    check_train("tiny_8x8");
}

#[test]
fn train_loss_and_gradients_match_reference_4x16() {
    check_train("tiny_4x16");
}

/// PySlowFast's fixed head pool kernels on a map larger than them (testing
/// at a crop larger than the training crop): softmax per position, then the
/// average, which differs from softmax of the averaged features.
#[test]
fn fixed_head_pool_kernels_match_reference() {
    let expected = weights::read(&fixtures_dir().join("tiny_8x8_kernel_head.safetensors")).unwrap();
    let kernel = |key: &str| -> [i64; 3] {
        let v: Vec<i64> = Vec::try_from(&expected[key]).unwrap();
        v.try_into().unwrap()
    };
    let pool = HeadPool::Kernel { slow: kernel("head_pool_slow"), fast: kernel("head_pool_fast") };
    let mut f = common::fixture("tiny_8x8", pool);
    let (slow, fast) = (&f.io["slow"], &f.io["fast"]);
    let probs = tch::no_grad(|| f.model.forward_t(slow, fast, false)).unwrap();
    let d = max_abs(&probs, &expected["eval_probs"]);
    assert!(d < 1e-4, "probabilities differ by {d:e}");
    f.model.eval_output = EvalOutput::Logits;
    let logits = tch::no_grad(|| f.model.forward_t(slow, fast, false)).unwrap();
    let d = max_abs(&logits, &expected["eval_logits"]);
    assert!(d < 1e-4, "logits differ by {d:e}");
    // The per-position softmax is not the global one.
    let global = fixture("tiny_8x8");
    let global_probs = tch::no_grad(|| global.model.forward_t(slow, fast, false)).unwrap();
    assert!(max_abs(&probs, &global_probs) > 1e-3);
}

#[test]
fn fixture_inputs_use_the_reference_slow_frames() {
    let f = fixture("tiny_8x8");
    let fast = &f.io["fast"];
    let idx: Vec<i64> = runtime::sampling::slow_indices(fast.size()[2] as usize, 4).into_iter().map(|i| i as i64).collect();
    let slow = fast.index_select(2, &Tensor::from_slice(&idx));
    assert!(slow.equal(&f.io["slow"]));
    assert_eq!(f.io["labels"].kind(), Kind::Int64);
}
