//! The trainer's test-time preprocessing (libtorch) against PySlowFast's
//! transforms as torch computes them: the same fixture the runtime's
//! pure-Rust preprocessing is checked against, centre crop, within 1e-4.

use serde_json::Value;
use tch::Tensor;
use trainer::clip::{frames_to_tensor, preprocess};

fn numbers(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

#[test]
fn centre_crop_matches_pyslowfast() {
    let text = include_str!("../../runtime/tests/fixtures/preprocess_parity.json");
    let fixture: Value = serde_json::from_str(text).unwrap();
    for case in fixture["cases"].as_array().unwrap() {
        let (w, h, t, crop) = ["width", "height", "num_frames", "crop"].map(|k| case[k].as_u64().unwrap() as usize).into();
        let pixels: Vec<u8> = numbers(&case["frames"]).into_iter().map(|v| v as u8).collect();
        let mean = numbers(&case["mean"]);
        let std = numbers(&case["std"]);
        let frames: Vec<&[u8]> = pixels.chunks(w * h * 3).collect();
        assert_eq!(frames.len(), t);
        let x = preprocess(
            &frames_to_tensor(&frames, h as i64, w as i64),
            crop as i64,
            std::array::from_fn(|c| mean[c]),
            std::array::from_fn(|c| std[c]),
        );
        let want = Tensor::from_slice(&numbers(&case["crops"][1])).to_kind(tch::Kind::Float);
        assert_eq!(x.numel(), want.numel(), "{w}x{h} -> {crop}");
        let worst = (x.flatten(0, -1) - want).abs().max().double_value(&[]);
        assert!(worst < 1e-4, "{w}x{h} -> crop {crop}: max abs diff {worst}");
    }
}
