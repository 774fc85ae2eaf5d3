//! What a SlowFast ONNX model says about itself: the `slowfast.*` metadata
//! our exporter writes, which fixes the clip geometry, normalisation and
//! labels the runtime must use.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::onnx_meta;
use crate::schema::metadata::*;
use crate::schema::tensors;

/// The metadata format this runtime understands.
pub use crate::schema::metadata::FORMAT_VERSION;

#[derive(Debug, thiserror::Error)]
pub enum ModelInfoError {
    #[error("{model}: cannot read the model file: {why}")]
    Read { model: PathBuf, why: String },
    #[error("{model}: {why}")]
    NotOnnx { model: PathBuf, why: String },
    #[error(
        "{model}: no SlowFast metadata (key `slowfast.format_version` is missing); \
         export the model with `cargo run -p trainer -- export`, which records the clip geometry, normalisation and labels"
    )]
    NoMetadata { model: PathBuf },
    #[error("{model}: metadata key `{key}` is missing")]
    Missing { model: PathBuf, key: &'static str },
    #[error("{model}: metadata key `{key}`: {why}")]
    Invalid { model: PathBuf, key: &'static str, why: String },
}

/// Whether the model ends in a softmax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    Probabilities,
    Logits,
}

impl OutputKind {
    /// The name of the graph output, which the exporter makes equal to the kind.
    pub fn tensor_name(self) -> &'static str {
        match self {
            OutputKind::Probabilities => tensors::PROBABILITIES,
            OutputKind::Logits => tensors::LOGITS,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ModelInfo {
    /// The file the metadata was read from, for messages.
    pub path: PathBuf,
    pub arch: String,
    /// The trainer's `ModelConfig`, as JSON.
    pub model_config: serde_json::Value,
    /// Frame-rate ratio between the fast and slow pathways.
    pub alpha: usize,
    pub fast_frames: usize,
    pub slow_frames: usize,
    /// Frames of the target-fps video between two fast-pathway frames.
    pub sampling_rate: usize,
    /// Frame rate the sampling rate refers to (30 for Kinetics).
    pub target_fps: f64,
    pub crop_size: usize,
    /// Whether the graph accepts other spatial sizes than `crop_size`.
    pub dynamic_spatial: bool,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub num_classes: usize,
    pub labels: Vec<String>,
    pub output: OutputKind,
    pub recipe: String,
    /// `slowfast.quantization` of a quantised model; `None` for fp32.
    pub quantization: Option<String>,
}

impl ModelInfo {
    /// Reads and checks the metadata of an ONNX file.
    pub fn from_file(model: &Path) -> Result<Self, ModelInfoError> {
        let bytes = std::fs::read(model).map_err(|e| ModelInfoError::Read { model: model.into(), why: e.to_string() })?;
        let props = onnx_meta::metadata_props(&bytes).map_err(|e| ModelInfoError::NotOnnx { model: model.into(), why: e.to_string() })?;
        Self::from_props(model, &props)
    }

    /// Checks a metadata map; `model` only names the file in errors.
    pub fn from_props(model: &Path, props: &BTreeMap<String, String>) -> Result<Self, ModelInfoError> {
        let p = Props { model, props };
        let version = p.get(KEY_FORMAT_VERSION).map_err(|_| ModelInfoError::NoMetadata { model: model.into() })?;
        if version != FORMAT_VERSION {
            return Err(p.invalid(
                KEY_FORMAT_VERSION,
                format!("version {version:?} is not supported (this runtime reads version {FORMAT_VERSION})"),
            ));
        }
        let info = ModelInfo {
            path: model.into(),
            arch: p.get(KEY_ARCH)?.to_string(),
            model_config: p.parse_with(KEY_MODEL_CONFIG, |s| serde_json::from_str(s).map_err(|e| e.to_string()))?,
            alpha: p.positive(KEY_ALPHA)?,
            fast_frames: p.positive(KEY_FAST_FRAMES)?,
            slow_frames: p.positive(KEY_SLOW_FRAMES)?,
            sampling_rate: p.positive(KEY_SAMPLING_RATE)?,
            target_fps: p.parse_with(KEY_TARGET_FPS, |s| match s.trim().parse::<f64>() {
                Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
                _ => Err(format!("{s:?} is not a positive frame rate")),
            })?,
            crop_size: p.positive(KEY_CROP_SIZE)?,
            dynamic_spatial: p.parse_with(KEY_DYNAMIC_SPATIAL, |s| match s {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(format!("{s:?} is neither \"true\" nor \"false\"")),
            })?,
            mean: p.triple(KEY_MEAN, false)?,
            std: p.triple(KEY_STD, true)?,
            num_classes: p.positive(KEY_NUM_CLASSES)?,
            labels: p.parse_with(KEY_LABELS, |s| {
                serde_json::from_str::<Vec<String>>(s).map_err(|e| format!("not a JSON array of strings: {e}"))
            })?,
            output: p.parse_with(KEY_OUTPUT, |s| match s {
                tensors::PROBABILITIES => Ok(OutputKind::Probabilities),
                tensors::LOGITS => Ok(OutputKind::Logits),
                _ => Err(format!("{s:?} is neither \"probabilities\" nor \"logits\"")),
            })?,
            recipe: p.get(KEY_RECIPE)?.to_string(),
            quantization: props.get(KEY_QUANTIZATION).cloned(),
        };
        if info.labels.len() != info.num_classes {
            return Err(
                p.invalid(KEY_LABELS, format!("{} labels for {} classes (slowfast.num_classes)", info.labels.len(), info.num_classes))
            );
        }
        if !info.fast_frames.is_multiple_of(info.alpha) || info.fast_frames / info.alpha != info.slow_frames {
            return Err(p.invalid(
                KEY_SLOW_FRAMES,
                format!("{} slow frames do not follow from {} fast frames at alpha {}", info.slow_frames, info.fast_frames, info.alpha),
            ));
        }
        Ok(info)
    }

    /// Indices of the fast clip's frames that feed the slow pathway.
    pub fn slow_indices(&self) -> Vec<usize> {
        crate::sampling::slow_indices(self.fast_frames, self.alpha)
    }

    pub fn label(&self, class: usize) -> &str {
        self.labels.get(class).map(String::as_str).unwrap_or("?")
    }
}

struct Props<'a> {
    model: &'a Path,
    props: &'a BTreeMap<String, String>,
}

impl Props<'_> {
    fn get(&self, key: &'static str) -> Result<&str, ModelInfoError> {
        self.props.get(key).map(String::as_str).ok_or_else(|| ModelInfoError::Missing { model: self.model.into(), key })
    }

    fn invalid(&self, key: &'static str, why: String) -> ModelInfoError {
        ModelInfoError::Invalid { model: self.model.into(), key, why }
    }

    fn parse_with<T>(&self, key: &'static str, f: impl FnOnce(&str) -> Result<T, String>) -> Result<T, ModelInfoError> {
        f(self.get(key)?).map_err(|why| self.invalid(key, why))
    }

    fn positive(&self, key: &'static str) -> Result<usize, ModelInfoError> {
        self.parse_with(key, |s| match s.trim().parse::<usize>() {
            Ok(v) if v > 0 => Ok(v),
            _ => Err(format!("{s:?} is not a positive integer")),
        })
    }

    fn triple(&self, key: &'static str, nonzero: bool) -> Result<[f32; 3], ModelInfoError> {
        self.parse_with(key, |s| {
            let v: Vec<f32> = s.split(',').map(|x| x.trim().parse::<f32>()).collect::<Result<_, _>>().map_err(|e| format!("{s:?}: {e}"))?;
            match <[f32; 3]>::try_from(v) {
                Ok(t) if t.iter().all(|x| x.is_finite() && (!nonzero || *x != 0.0)) => Ok(t),
                _ => Err(format!("{s:?} is not three finite{} numbers (one per RGB channel)", if nonzero { " non-zero" } else { "" })),
            }
        })
    }
}

/// Where the INT8 sibling of an exported model lives: `NAME_int8.onnx`
/// beside `NAME.onnx`, as `trainer export --int8` is told to write it. The
/// element's `int8` property and `slowfast annotate --int8` load it.
pub fn int8_sibling(model: &Path) -> PathBuf {
    let stem = model.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    model.with_file_name(format!("{stem}_int8.onnx"))
}

/// The INT8 sibling of `model` when it exists, else why not and how to
/// write it.
pub fn find_int8_sibling(model: &Path) -> Result<PathBuf, String> {
    let sibling = int8_sibling(model);
    if sibling.is_file() {
        return Ok(sibling);
    }
    Err(format!(
        "{} has no INT8 sibling {} (write it with `trainer export ... --int8 --calibration LIST --out {}`)",
        model.display(),
        sibling.display(),
        sibling.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props() -> BTreeMap<String, String> {
        [
            ("slowfast.format_version", "1"),
            ("slowfast.arch", "slowfast_8x8_r50"),
            ("slowfast.model_config", "{\"depth\":50}"),
            ("slowfast.alpha", "4"),
            ("slowfast.fast_frames", "32"),
            ("slowfast.slow_frames", "8"),
            ("slowfast.sampling_rate", "2"),
            ("slowfast.target_fps", "30"),
            ("slowfast.crop_size", "224"),
            ("slowfast.dynamic_spatial", "false"),
            ("slowfast.mean", "0.45,0.45,0.45"),
            ("slowfast.std", "0.225,0.225,0.225"),
            ("slowfast.num_classes", "2"),
            ("slowfast.labels", "[\"archery\",\"bowling\"]"),
            ("slowfast.output", "logits"),
            ("slowfast.recipe", "kinetics400"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn err(p: &BTreeMap<String, String>) -> String {
        ModelInfo::from_props(Path::new("m.onnx"), p).unwrap_err().to_string()
    }

    #[test]
    fn parses_complete_metadata() {
        let info = ModelInfo::from_props(Path::new("m.onnx"), &props()).unwrap();
        assert_eq!((info.alpha, info.fast_frames, info.slow_frames, info.crop_size), (4, 32, 8, 224));
        assert_eq!(info.std, [0.225; 3]);
        assert_eq!(info.output, OutputKind::Logits);
        assert_eq!(info.label(1), "bowling");
        assert_eq!(info.slow_indices(), vec![0, 4, 8, 13, 17, 22, 26, 31]);
    }

    #[test]
    fn errors_name_the_model_and_the_key() {
        let e = err(&BTreeMap::new());
        assert!(e.contains("m.onnx") && e.contains("slowfast.format_version") && e.contains("no SlowFast metadata"), "{e}");
        let mut p = props();
        p.insert("slowfast.num_classes".into(), "3".into());
        let e = err(&p);
        assert!(e.contains("m.onnx") && e.contains("slowfast.labels") && e.contains("2 labels for 3 classes"), "{e}");
        let mut p = props();
        p.remove("slowfast.crop_size");
        assert!(err(&p).contains("`slowfast.crop_size` is missing"));
        let mut p = props();
        p.insert("slowfast.std".into(), "0.2,0,0.2".into());
        assert!(err(&p).contains("slowfast.std"));
        let mut p = props();
        p.insert("slowfast.slow_frames".into(), "4".into());
        assert!(err(&p).contains("slowfast.slow_frames"));
        let mut p = props();
        p.insert("slowfast.format_version".into(), "2".into());
        assert!(err(&p).contains("not supported"));
    }
}
