//! What an exported model says about itself, in ONNX `metadata_props`: the
//! runtime reads these keys (`runtime::schema::metadata`, which owns them)
//! instead of guessing clip shape, normalisation or class names.

use crate::model::SlowFast;

use super::{ExportError, ExportOptions};

pub use runtime::schema::metadata::*;

/// The key/value pairs for `model` exported with `opts` (already validated).
pub fn entries(model: &SlowFast, opts: &ExportOptions) -> Result<Vec<(String, String)>, ExportError> {
    let c = &model.config;
    let json = |what: &'static str, r: serde_json::Result<String>| {
        r.map_err(|e| ExportError::BadOption { field: what, why: format!("cannot be written as JSON: {e}") })
    };
    let list = |v: &[f64; 3]| v.iter().map(f64::to_string).collect::<Vec<_>>().join(",");
    let pairs = [
        (KEY_FORMAT_VERSION, FORMAT_VERSION.to_string()),
        (KEY_ARCH, opts.arch_name().to_string()),
        (KEY_MODEL_CONFIG, json("model config", serde_json::to_string(c))?),
        (KEY_ALPHA, c.alpha.to_string()),
        (KEY_FAST_FRAMES, opts.fast_frames.to_string()),
        (KEY_SLOW_FRAMES, (opts.fast_frames / c.alpha).to_string()),
        (KEY_SAMPLING_RATE, opts.sampling_rate.to_string()),
        (KEY_TARGET_FPS, opts.target_fps.to_string()),
        (KEY_CROP_SIZE, opts.crop_size.to_string()),
        (KEY_DYNAMIC_SPATIAL, opts.dynamic_spatial.to_string()),
        (KEY_MEAN, list(&opts.mean)),
        (KEY_STD, list(&opts.std)),
        (KEY_NUM_CLASSES, c.num_classes.to_string()),
        (KEY_LABELS, json("labels", serde_json::to_string(&opts.labels))?),
        (KEY_OUTPUT, super::output_name(opts.output).to_string()),
        (KEY_RECIPE, opts.recipe.clone()),
    ];
    Ok(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

/// What a quantised model adds: how it is quantised and its calibration.
pub fn quantization(c: &super::calibrate::Calibration) -> Result<Vec<(String, String)>, ExportError> {
    let calibration = serde_json::to_string(c)
        .map_err(|e| ExportError::BadOption { field: "calibration", why: format!("cannot be written as JSON: {e}") })?;
    Ok(vec![(KEY_QUANTIZATION.to_string(), QUANTIZATION_INT8_QDQ.to_string()), (KEY_CALIBRATION.to_string(), calibration)])
}

/// `slowfast.quantization` of `trainer export --int8`.
pub const QUANTIZATION_INT8_QDQ: &str = "int8-qdq: per-channel symmetric int8 weights, per-tensor uint8 activations";
