//! What an exported model says about itself, in ONNX `metadata_props`. This
//! is the contract with the runtime, which reads these keys (all values are
//! strings) instead of guessing clip shape, normalisation or class names.
//! Bump [`FORMAT_VERSION`] on any change a reader of version 1 would misread.

use crate::model::SlowFast;

use super::{ExportError, ExportOptions};

pub const FORMAT_VERSION: &str = "1";

/// `"1"`
pub const KEY_FORMAT_VERSION: &str = "slowfast.format_version";
/// Preset name (`slowfast_8x8_r50`, ...) or `custom`.
pub const KEY_ARCH: &str = "slowfast.arch";
/// JSON of the `ModelConfig`.
pub const KEY_MODEL_CONFIG: &str = "slowfast.model_config";
pub const KEY_ALPHA: &str = "slowfast.alpha";
pub const KEY_FAST_FRAMES: &str = "slowfast.fast_frames";
pub const KEY_SLOW_FRAMES: &str = "slowfast.slow_frames";
/// Source frames between two fast-pathway frames at `target_fps`.
pub const KEY_SAMPLING_RATE: &str = "slowfast.sampling_rate";
pub const KEY_TARGET_FPS: &str = "slowfast.target_fps";
/// Square spatial size the model was exported for (`H = W`).
pub const KEY_CROP_SIZE: &str = "slowfast.crop_size";
/// `"true"` when `H` and `W` are dynamic graph dimensions.
pub const KEY_DYNAMIC_SPATIAL: &str = "slowfast.dynamic_spatial";
/// Comma-separated RGB mean on [0, 1] pixels.
pub const KEY_MEAN: &str = "slowfast.mean";
/// Comma-separated RGB std on [0, 1] pixels.
pub const KEY_STD: &str = "slowfast.std";
pub const KEY_NUM_CLASSES: &str = "slowfast.num_classes";
/// JSON array of `num_classes` strings, index = class id.
pub const KEY_LABELS: &str = "slowfast.labels";
/// `probabilities` or `logits`: what the graph output holds.
pub const KEY_OUTPUT: &str = "slowfast.output";
/// The training recipe (config text or name); empty when unknown.
pub const KEY_RECIPE: &str = "slowfast.recipe";

/// Every key, in the order written.
pub const KEYS: [&str; 16] = [
    KEY_FORMAT_VERSION,
    KEY_ARCH,
    KEY_MODEL_CONFIG,
    KEY_ALPHA,
    KEY_FAST_FRAMES,
    KEY_SLOW_FRAMES,
    KEY_SAMPLING_RATE,
    KEY_TARGET_FPS,
    KEY_CROP_SIZE,
    KEY_DYNAMIC_SPATIAL,
    KEY_MEAN,
    KEY_STD,
    KEY_NUM_CLASSES,
    KEY_LABELS,
    KEY_OUTPUT,
    KEY_RECIPE,
];

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
