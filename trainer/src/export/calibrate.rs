//! Calibration for INT8 export: the network runs in libtorch (eval mode)
//! over real clips of a data list, cut as the recipe's test does, and the
//! range of every tensor the quantised graph quantises is recorded: the
//! input of each convolution (after BN folding the conv and its BN are one
//! node, so the conv's input is what is quantised) and the input of the
//! classifier's projection.
//!
//! Two methods. `minmax` (the default) keeps the smallest and largest value
//! seen over all clips: nothing is clipped, and with the few dozen clips a
//! calibration uses it is stable and deterministic. `percentile P` keeps,
//! per clip, the P-th percentile of the values (and 100 - P for the lower
//! end) and averages them over clips: a rare outlier then no longer
//! stretches the scale of everything else, at the price of saturating it.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};

use serde::Serialize;
use tch::{Kind, Tensor};

use runtime::preprocess::Normalization;
use runtime::sampling::ClipPosition;

use crate::data::source::Temporal;
use crate::data::transform::{pathways, test_view};
use crate::data::{Failure, Source};
use crate::model::SlowFast;
use crate::model::config::HeadPool;
use crate::model::head::Head;
use crate::model::layers::{BatchNorm3d, Conv3d, MaxPool3d};
use crate::model::walk::{Backend, Forward, Op};

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "name", content = "value")]
pub enum Method {
    #[serde(rename = "minmax")]
    MinMax,
    /// Percentile of each clip's values, 0 < P < 100 (e.g. 99.99).
    Percentile(f64),
}

impl std::str::FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "minmax" => Ok(Method::MinMax),
            _ => match s.strip_prefix("percentile:").or_else(|| s.strip_prefix("percentile=")).map(str::parse::<f64>) {
                Some(Ok(p)) if p > 50.0 && p < 100.0 => Ok(Method::Percentile(p)),
                _ => Err(format!("{s:?}: expected `minmax` or `percentile:P` with 50 < P < 100 (e.g. percentile:99.99)")),
            },
        }
    }
}

/// How calibration clips are made: the recipe's (or the export's) test clip.
#[derive(Debug, Clone)]
pub struct Setup {
    pub temporal: Temporal,
    pub crop: u32,
    pub normalize: Normalization,
    pub alpha: usize,
    /// Clips to use; videos that cannot be read are skipped and do not count.
    pub clips: usize,
    /// Order in which the list's videos are tried; the same seed and list
    /// give the same clips, hence the same file.
    pub seed: u64,
    /// The list's name, recorded in the model.
    pub list: String,
}

/// The ranges found, and what they came from.
#[derive(Debug, Clone, Serialize)]
pub struct Calibration {
    pub method: Method,
    pub clips: usize,
    pub list: String,
    pub seed: u64,
    pub skipped: Vec<Failure>,
    /// `[min, max]` by the name of the conv (or the head) whose input it is.
    #[serde(skip)]
    pub ranges: BTreeMap<String, [f32; 2]>,
}

impl Calibration {
    /// The range recorded for the input of `node`.
    pub fn range(&self, node: &str) -> Option<[f32; 2]> {
        self.ranges.get(node).copied()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CalibrateError {
    #[error("calibration list {list}: it has no videos")]
    Empty { list: String },
    #[error("calibration list {list}: none of its {tried} videos could be read (first: {first})")]
    NoneReadable { list: String, tried: usize, first: String },
    #[error("calibration: --calibration-clips must be at least 1")]
    NoClips,
    #[error("calibration: the network failed on {video}: {why}")]
    Forward { video: String, why: String },
}

/// Runs `model` over up to `setup.clips` clips of `source` and records the
/// range of every quantised tensor.
pub fn calibrate(
    model: &SlowFast,
    source: &Source,
    setup: &Setup,
    method: Method,
    mut progress: impl FnMut(usize, usize),
) -> Result<Calibration, CalibrateError> {
    if setup.clips == 0 {
        return Err(CalibrateError::NoClips);
    }
    if source.is_empty() {
        return Err(CalibrateError::Empty { list: setup.list.clone() });
    }
    let mut stats = Stats { method, per_node: BTreeMap::new() };
    let mut skipped = Vec::new();
    let mut used = 0;
    for i in order(source.len(), setup.seed) {
        if used == setup.clips {
            break;
        }
        let clip = source
            .clips(i, setup.temporal, &[ClipPosition::View { index: 0, count: 1 }])
            .map_err(|e| Failure { name: e.name, why: e.why })
            .and_then(|raws| test_view(&raws[0], setup.crop, 0, 1, &setup.normalize).map_err(|why| Failure { name: source.name(i), why }));
        let clip = match clip {
            Ok(c) => c,
            Err(f) => {
                skipped.push(f);
                continue;
            }
        };
        let (slow, fast) = pathways(&[clip], setup.alpha);
        let mut recorder = Recorder { forward: Forward { train: false, softmax: false }, stats: &mut stats };
        let ran = catch_unwind(AssertUnwindSafe(|| tch::no_grad(|| model.walk(&mut recorder, &slow, &fast).map(|_| ()))));
        match ran {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(CalibrateError::Forward { video: source.name(i), why: e.to_string() }),
            Err(_) => return Err(CalibrateError::Forward { video: source.name(i), why: "libtorch failed".into() }),
        }
        used += 1;
        progress(used, setup.clips);
    }
    if used == 0 {
        let first = skipped.first().map(|f| format!("{}: {}", f.name, f.why)).unwrap_or_default();
        return Err(CalibrateError::NoneReadable { list: setup.list.clone(), tried: skipped.len(), first });
    }
    Ok(Calibration { method, clips: used, list: setup.list.clone(), seed: setup.seed, skipped, ranges: stats.ranges() })
}

/// The videos in the order they are tried: a permutation fixed by `seed`
/// (splitmix64 keys), so a list longer than the clips wanted is sampled
/// across, not from its head.
fn order(n: usize, seed: u64) -> Vec<usize> {
    let key = |i: usize| {
        let mut z = seed.wrapping_add((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by_key(|&i| (key(i), i));
    idx
}

struct Stats {
    method: Method,
    /// min and max so far (minmax) or the sums of per-clip percentiles.
    per_node: BTreeMap<String, (f64, f64, usize)>,
}

impl Stats {
    fn record(&mut self, node: &str, x: &Tensor) {
        let (lo, hi) = match self.method {
            Method::MinMax => {
                // One pass over the activation, not two.
                let (lo, hi) = x.aminmax(None::<i64>, false);
                (lo.double_value(&[]), hi.double_value(&[]))
            }
            Method::Percentile(p) => {
                let flat = x.flatten(0, -1).to_kind(Kind::Float);
                let n = flat.size()[0];
                let k = |q: f64| ((q / 100.0 * (n - 1) as f64).round() as i64 + 1).clamp(1, n);
                let at = |q: f64| flat.kthvalue(k(q), 0, false).0.double_value(&[]);
                (at(100.0 - p), at(p))
            }
        };
        let entry = self.per_node.entry(node.to_string()).or_insert((f64::INFINITY, f64::NEG_INFINITY, 0));
        match self.method {
            Method::MinMax => {
                entry.0 = entry.0.min(lo);
                entry.1 = entry.1.max(hi);
            }
            Method::Percentile(_) => {
                if entry.2 == 0 {
                    (entry.0, entry.1) = (0.0, 0.0);
                }
                entry.0 += lo;
                entry.1 += hi;
            }
        }
        entry.2 += 1;
    }

    fn ranges(&self) -> BTreeMap<String, [f32; 2]> {
        self.per_node
            .iter()
            .map(|(k, &(lo, hi, n))| {
                let (lo, hi) = match self.method {
                    Method::MinMax => (lo, hi),
                    Method::Percentile(_) => (lo / n as f64, hi / n as f64),
                };
                (k.clone(), [lo as f32, hi as f32])
            })
            .collect()
    }
}

/// The eval forward, recording each quantised tensor on the way.
struct Recorder<'s> {
    forward: Forward,
    stats: &'s mut Stats,
}

impl<'m> Backend<'m> for Recorder<'_> {
    type Value = Tensor;
    type Error = std::convert::Infallible;

    fn conv_bn(&mut self, conv: &'m Conv3d, bn: &'m BatchNorm3d, x: &Tensor) -> Result<Tensor, Self::Error> {
        self.stats.record(&conv.name, x);
        self.forward.conv_bn(conv, bn, x)
    }

    fn relu(&mut self, op: Op<'_>, x: Tensor) -> Result<Tensor, Self::Error> {
        self.forward.relu(op, x)
    }

    fn max_pool(&mut self, op: Op<'_>, pool: &MaxPool3d, x: Tensor) -> Result<Tensor, Self::Error> {
        self.forward.max_pool(op, pool, x)
    }

    fn concat(&mut self, op: Op<'_>, a: &Tensor, b: &Tensor) -> Result<Tensor, Self::Error> {
        self.forward.concat(op, a, b)
    }

    fn add(&mut self, op: Op<'_>, a: &Tensor, b: &Tensor) -> Result<Tensor, Self::Error> {
        self.forward.add(op, a, b)
    }

    /// The projection's input is what the exported graph feeds it: the
    /// pathways pooled as the head's pooling says, concatenated.
    fn head(&mut self, head: &'m Head, slow: &Tensor, fast: &Tensor) -> Result<Tensor, Self::Error> {
        let pooled: Vec<Tensor> = match &head.pool {
            HeadPool::Global => [slow, fast].iter().map(|x| x.mean_dim(&[2i64, 3, 4][..], true, Kind::Float)).collect(),
            HeadPool::Kernel { slow: ks, fast: kf } => {
                [(slow, ks), (fast, kf)].iter().map(|(x, k)| x.avg_pool3d(&k[..], [1, 1, 1], [0, 0, 0], false, true, None::<i64>)).collect()
            }
        };
        self.stats.record(&head.name, &Tensor::cat(&pooled, 1));
        self.forward.head(head, slow, fast)
    }
}
