//! Preprocessing parity with PySlowFast's test transforms as torch computes
//! them (fixture made by fixtures/make_preprocess_fixture.py).

use runtime::preprocess::{Clip, Normalization, ScaledFrame, SpatialCrop, scale_frame};
use serde_json::Value;

fn numbers(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

#[test]
fn matches_torch_resize_normalise_and_three_crops() {
    let text = include_str!("fixtures/preprocess_parity.json");
    let fixture: Value = serde_json::from_str(text).unwrap();
    let cases = fixture["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 4);
    for case in cases {
        let (w, h, t, crop) = ["width", "height", "num_frames", "crop"].map(|k| case[k].as_u64().unwrap() as usize).into();
        let pixels: Vec<u8> = numbers(&case["frames"]).into_iter().map(|v| v as u8).collect();
        let mean = numbers(&case["mean"]);
        let std = numbers(&case["std"]);
        let norm = Normalization { mean: std::array::from_fn(|c| mean[c] as f32), std: std::array::from_fn(|c| std[c] as f32) };
        let frames: Vec<ScaledFrame> =
            pixels.chunks(w * h * 3).map(|f| scale_frame(f, w, h, crop, &norm).unwrap()).collect();
        assert_eq!(frames.len(), t);
        let refs: Vec<&ScaledFrame> = frames.iter().collect();
        let all: Vec<usize> = (0..t).collect();
        for (i, crop_kind) in [SpatialCrop::Start, SpatialCrop::Centre, SpatialCrop::End].into_iter().enumerate() {
            let clip = Clip::assemble(&refs, &all, crop, crop_kind).unwrap();
            let want = numbers(&case["crops"][i]);
            assert_eq!(clip.fast.len(), want.len());
            let worst = clip.fast.iter().zip(&want).map(|(a, b)| (f64::from(*a) - b).abs()).fold(0.0, f64::max);
            assert!(worst < 1e-4, "{w}x{h} -> crop {crop} spatial {i}: max abs diff {worst}");
        }
    }
}
