//! Preprocessing parity with PySlowFast's test and training transforms as
//! torch computes them (fixture made by fixtures/make_preprocess_fixture.py).
//! Tolerance: 1e-4 max abs on normalised values (about 0.006 of one 8-bit
//! level at std 0.225); the float steps differ only in order of rounding.

use runtime::preprocess::{
    Clip, CropWindow, Normalization, PackedFrames, Packing, ScaledFrame, SpatialCrop, crop_clip, scale_frame, scaled_size,
};
use serde_json::Value;

fn numbers(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

/// The case's input frames, packed RGB.
fn pixels(case: &Value) -> Vec<u8> {
    numbers(&case["frames"]).into_iter().map(|v| v as u8).collect()
}

fn rgb(data: &[u8], count: usize, width: usize, height: usize) -> PackedFrames<'_> {
    PackedFrames { data, count, width, height, packing: Packing::Rgb }
}

fn fixture() -> Value {
    serde_json::from_str(include_str!("fixtures/preprocess_parity.json")).unwrap()
}

fn normalization(case: &Value) -> Normalization {
    let mean = numbers(&case["mean"]);
    let std = numbers(&case["std"]);
    Normalization { mean: std::array::from_fn(|c| mean[c] as f32), std: std::array::from_fn(|c| std[c] as f32) }
}

#[test]
fn training_view_matches_torch_jitter_crop_and_flip() {
    let fixture = fixture();
    let cases = fixture["train_cases"].as_array().unwrap();
    assert_eq!(cases.len(), 3);
    for case in cases {
        let [w, h, t, short, crop] = ["width", "height", "num_frames", "short_side", "crop"].map(|k| case[k].as_u64().unwrap() as usize);
        let pixels = pixels(case);
        let scaled = scaled_size(w, h, short);
        let want_scaled = numbers(&case["scaled"]);
        assert_eq!((scaled.0 as f64, scaled.1 as f64), (want_scaled[0], want_scaled[1]), "{w}x{h} to short side {short}");
        let offset = numbers(&case["offset"]);
        let window =
            CropWindow { scaled, offset: (offset[0] as usize, offset[1] as usize), size: crop, flip: case["flip"].as_bool().unwrap() };
        let got = crop_clip(&rgb(&pixels, t, w, h), &window, &normalization(case)).unwrap();
        let want = numbers(&case["clip"]);
        assert_eq!(got.len(), want.len());
        let worst = got.iter().zip(&want).map(|(a, b)| (f64::from(*a) - b).abs()).fold(0.0, f64::max);
        assert!(worst < 1e-4, "{w}x{h} -> short side {short}, {window:?}: max abs diff {worst}");
    }
}

#[test]
fn test_crops_cut_in_one_pass_match_torch() {
    let fixture = fixture();
    for case in fixture["cases"].as_array().unwrap() {
        let [w, h, t, crop] = ["width", "height", "num_frames", "crop"].map(|k| case[k].as_u64().unwrap() as usize);
        let pixels = pixels(case);
        let scaled = scaled_size(w, h, crop);
        for (i, kind) in [SpatialCrop::Start, SpatialCrop::Centre, SpatialCrop::End].into_iter().enumerate() {
            let window = CropWindow { scaled, offset: kind.offset(scaled.0, scaled.1, crop), size: crop, flip: false };
            let got = crop_clip(&rgb(&pixels, t, w, h), &window, &normalization(case)).unwrap();
            let want = numbers(&case["crops"][i]);
            let worst = got.iter().zip(&want).map(|(a, b)| (f64::from(*a) - b).abs()).fold(0.0, f64::max);
            assert!(worst < 1e-4, "{w}x{h} -> crop {crop} spatial {i}: max abs diff {worst}");
        }
    }
}

#[test]
fn matches_torch_resize_normalise_and_three_crops() {
    let fixture = fixture();
    let cases = fixture["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 4);
    for case in cases {
        let (w, h, t, crop) = ["width", "height", "num_frames", "crop"].map(|k| case[k].as_u64().unwrap() as usize).into();
        let pixels = pixels(case);
        let norm = normalization(case);
        let frames: Vec<ScaledFrame> = pixels.chunks(w * h * 3).map(|f| scale_frame(f, w, h, crop, &norm).unwrap()).collect();
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
