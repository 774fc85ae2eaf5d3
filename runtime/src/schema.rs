//! The contracts between the crates, written once: the `slowfast.*`
//! metadata an exported ONNX model carries (written by `trainer export`,
//! read by [`crate::model_info`]), the graph's tensor names, and the
//! element's prediction structure (posted as a bus message and attached as
//! region-of-interest meta by the `slowfast` element, read back by
//! `slowfast annotate`). Writers and readers both use these names, so a
//! rename cannot leave one side behind.

/// Factory name of the GStreamer element (`gst-plugin`), which `slowfast
/// annotate` builds its pipeline around.
pub const ELEMENT: &str = "slowfast";

/// ONNX `metadata_props` keys and the format they describe. All values are
/// strings. Bump [`FORMAT_VERSION`] on any change a reader of this version
/// would misread.
pub mod metadata {
    pub const FORMAT_VERSION: &str = "1";

    /// `"1"`
    pub const KEY_FORMAT_VERSION: &str = "slowfast.format_version";
    /// Preset name (`slowfast_8x8_r50`, ...) or `custom`.
    pub const KEY_ARCH: &str = "slowfast.arch";
    /// JSON of the trainer's `ModelConfig`.
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
    /// [`super::tensors::PROBABILITIES`] or [`super::tensors::LOGITS`]: what
    /// the graph output holds (and its name).
    pub const KEY_OUTPUT: &str = "slowfast.output";
    /// The training recipe (config text or name); empty when unknown.
    pub const KEY_RECIPE: &str = "slowfast.recipe";

    /// Written only by a quantised export (`trainer export --int8`): how
    /// the graph is quantised, e.g. `int8-qdq: per-channel symmetric int8
    /// weights, per-tensor uint8 activations`. Absent in fp32 models.
    pub const KEY_QUANTIZATION: &str = "slowfast.quantization";
    /// With [`KEY_QUANTIZATION`]: JSON object of the calibration (method,
    /// clips used, clips skipped, data list, seed).
    pub const KEY_CALIBRATION: &str = "slowfast.calibration";

    /// Every key, in the order written ([`KEY_QUANTIZATION`] and
    /// [`KEY_CALIBRATION`] follow them in quantised models only).
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
}

/// Names of the exported graph's inputs and output.
pub mod tensors {
    /// `[N, 3, T / alpha, H, W]`
    pub const SLOW: &str = "slow";
    /// `[N, 3, T, H, W]`
    pub const FAST: &str = "fast";
    /// The output when the graph ends in a softmax.
    pub const PROBABILITIES: &str = "probabilities";
    /// The output when it does not.
    pub const LOGITS: &str = "logits";
}

/// The element's prediction structure: the name of its ROI type, meta
/// parameter and bus message, and its fields.
pub mod prediction {
    pub const NAME: &str = "slowfast";
    /// `u64`: predictions of this element since it started.
    pub const INDEX: &str = "index";
    /// Array of `u32`, best first.
    pub const CLASS_IDS: &str = "class-ids";
    /// Array of strings, one per class id.
    pub const LABELS: &str = "labels";
    /// Array of `f64`, one per class id.
    pub const SCORES: &str = "scores";
    /// `u64` nanoseconds: PTS of the clip's first frame, [`NO_TIME`] when unknown.
    pub const CLIP_START: &str = "clip-start";
    /// `u64` nanoseconds: PTS of the clip's last frame, [`NO_TIME`] when unknown.
    pub const CLIP_END: &str = "clip-end";
    /// A clip time that is not known.
    pub const NO_TIME: u64 = u64::MAX;
    /// `u64` nanoseconds: from the window being handed to the shared
    /// engine (its last frame arrived) to this prediction: queueing behind
    /// other streams' clips plus inference.
    pub const LATENCY: &str = "latency";
    /// `u32`: clips run together in the batch this one ran in.
    pub const BATCH: &str = "batch";
    /// `u64`: windows this element skipped so far (engine still busy).
    pub const SKIPPED: &str = "skipped";
}

/// The element's `stats` property (a structure of this name) and the bus
/// message it posts when it skips a window: one stream's own figures, so an
/// operator with many cameras on one engine sees which one is behind.
pub mod stats {
    pub const NAME: &str = "slowfast-stats";
    /// Name of the element message posted for each skipped window; it
    /// carries [`SKIPPED`] and [`PENDING`].
    pub const SKIPPED_MESSAGE: &str = "slowfast-skipped";
    /// `u64`: predictions since the element started.
    pub const PREDICTIONS: &str = "predictions";
    /// `u64`: windows skipped since the element started.
    pub const SKIPPED: &str = "skipped";
    /// `u32`: clips of this element waiting for or in inference.
    pub const PENDING: &str = "pending";
    /// `u64` nanoseconds over the last [`LATENCY_WINDOW`] predictions
    /// (0 before the first): median, 99th percentile, largest.
    pub const LATENCY_P50: &str = "latency-p50";
    pub const LATENCY_P99: &str = "latency-p99";
    pub const LATENCY_MAX: &str = "latency-max";
    /// `f64`: mean clips per engine run over the same predictions.
    pub const MEAN_BATCH: &str = "mean-batch";
    /// How many recent predictions the latency figures cover.
    pub const LATENCY_WINDOW: usize = 256;
}
