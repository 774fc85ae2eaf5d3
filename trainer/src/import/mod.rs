//! Checkpoints from the SlowFast zoos (PySlowFast, pytorchvideo, Caffe2,
//! PaddleVideo) read without Python and without
//! running anything they contain: the container (`container`), a
//! restricted pickle machine (`pickle`), tensors out of torch storages and
//! numpy arrays (`tensors`), and the zoos' names mapped to ours (`names`).
//! What comes out is a state dict under PySlowFast's names, which the
//! strict loader in `weights` then checks against the network. `onnx`
//! reads the weights back out of our own fp32 exports.

mod container;
mod names;
pub mod onnx;
pub mod pickle;
mod tensors;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tch::Tensor;

pub use names::Zoo;

#[derive(Debug, thiserror::Error)]
#[error("{path}: {why}")]
pub struct ImportError {
    pub path: PathBuf,
    pub why: String,
}

/// A checkpoint's weights under our names, and what else it held.
pub struct Imported {
    pub tensors: BTreeMap<String, Tensor>,
    pub report: Report,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    /// `torch zip` or `pickle`.
    pub container: String,
    pub zoo: String,
    /// Where the state dict was in the file (`model_state`, or the root).
    pub state_dict_at: String,
    pub tensors: usize,
    /// A `module.` prefix (DistributedDataParallel) was dropped.
    pub dropped_module_prefix: bool,
    /// Tensors outside the state dict (an optimizer's momentum buffers).
    pub other_tensors: usize,
    pub optimizer_state: bool,
    pub epoch: Option<i64>,
    /// The training config stored alongside (PySlowFast's YAML dump).
    pub cfg: Option<String>,
}

/// Where a checkpoint keeps its state dict, in the order looked for: the
/// PySlowFast and pytorchvideo zoos (`model_state`), Caffe2's (`blobs`),
/// Lightning-style files (`state_dict`), others (`model`); otherwise the
/// file is the state dict.
const STATE_DICT_KEYS: [&str; 4] = ["model_state", "blobs", "state_dict", "model"];

/// Reads `path` as a checkpoint of `zoo` (`None`: told by its names).
pub fn import(path: &Path, zoo: Option<Zoo>) -> Result<Imported, ImportError> {
    let fail = |why: String| ImportError { path: path.to_path_buf(), why };
    let mut read = container::read(path).map_err(fail)?;
    let mut report = Report { container: read.container.to_string(), ..Report::default() };
    let at = STATE_DICT_KEYS.into_iter().find(|k| matches!(read.root.get(k), Some(pickle::Value::Dict(_))));
    report.state_dict_at = at.unwrap_or("the file's root").to_string();
    report.epoch = match read.root.get("epoch") {
        Some(pickle::Value::Int(e)) => Some(*e),
        _ => None,
    };
    report.cfg = match read.root.get("cfg") {
        Some(pickle::Value::Str(c)) => Some(c.clone()),
        _ => None,
    };
    report.optimizer_state = read.root.get("optimizer_state").or_else(|| read.root.get("optimizer")).is_some();
    let dict = match at {
        Some(k) => read.root.get(k).unwrap_or(&read.root),
        None => &read.root,
    };
    report.other_tensors = container::count_tensors(&read.root) - container::count_tensors(dict);
    let mut state = container::collect(dict, &mut *read.storages).map_err(fail)?;
    if !state.is_empty() && state.iter().all(|(n, _)| n.starts_with("module.")) {
        report.dropped_module_prefix = true;
        for (n, _) in &mut state {
            n.drain(.."module.".len());
        }
    }
    if state.is_empty() {
        return Err(fail("no tensors in it".into()));
    }
    let zoo = match zoo {
        Some(z) => z,
        None => names::detect(state.iter().map(|(n, _)| n.as_str())).ok_or_else(|| {
            let first: Vec<&str> = state.iter().take(3).map(|(n, _)| n.as_str()).collect();
            fail(format!("names like {first:?} are not of a known SlowFast zoo; say which with --from"))
        })?,
    };
    report.zoo = zoo.to_string();
    let mut tensors = BTreeMap::new();
    let mut problems = Vec::new();
    // One at a time, each raw copy dropped as its tensor is made, so the
    // file's weights are held about twice at most.
    for (name, raw) in state {
        match names::place(zoo, &name) {
            Ok(names::Place::TrainingState) => {
                report.other_tensors += 1;
                report.optimizer_state = true;
            }
            Ok(names::Place::Weight { name: ours, transposed }) => {
                let t = raw.to_tch().map_err(|why| fail(format!("{name}: {why}")))?;
                let t = if transposed { t.tr().contiguous() } else { t };
                if tensors.insert(ours.clone(), t).is_some() {
                    problems.push(format!("  {name}: a second tensor for {ours}"));
                }
            }
            Err(why) => problems.push(format!("  {why}")),
        }
    }
    if !problems.is_empty() {
        return Err(fail(format!("{} tensors have no place in the network ({zoo} names):\n{}", problems.len(), problems.join("\n"))));
    }
    report.tensors = tensors.len();
    Ok(Imported { tensors, report })
}

/// Whether `path` holds safetensors (an 8-byte little-endian header length,
/// then a JSON header), which `weights::read` reads directly.
pub fn is_safetensors(path: &Path) -> bool {
    let mut head = [0u8; 9];
    let Ok(mut f) = std::fs::File::open(path) else { return false };
    use std::io::Read;
    f.read_exact(&mut head).is_ok() && head[8] == b'{'
}

/// Every tensor in `path` under its path in the file, names not mapped:
/// for looking into a checkpoint of a zoo whose names are not mapped yet.
pub fn read_tensors(path: &Path) -> Result<Vec<(String, Tensor)>, ImportError> {
    let fail = |why: String| ImportError { path: path.to_path_buf(), why };
    let mut read = container::read(path).map_err(fail)?;
    let tensors = container::collect(&read.root, &mut *read.storages).map_err(fail)?;
    tensors.into_iter().map(|(n, t)| t.to_tch().map(|t| (n, t)).map_err(&fail)).collect()
}
