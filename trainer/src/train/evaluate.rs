//! Accuracy: single-view validation during training, and the multi-view
//! test protocol (temporal views x spatial crops, softmax averaged per
//! video) with per-class accuracy and the most frequent confusions.

use std::collections::BTreeMap;

use runtime::preprocess::Normalization;
use runtime::sampling::ClipPosition;
use serde::Serialize;
use tch::{Device, Kind, Tensor};

use crate::data::loader::LoaderError;
use crate::data::source::{Source, Temporal};
use crate::data::transform::{pathways, test_view};
use crate::data::{Failure, Loader};
use crate::model::SlowFast;

#[derive(Debug, Clone, Default, Serialize)]
pub struct ValResult {
    pub top1: f64,
    pub top5: f64,
    pub loss: f64,
    pub clips: usize,
    pub failures: Vec<String>,
}

/// Correct predictions at top-1 and top-k for `probs` `[N, C]`.
fn hits(probs: &Tensor, labels: &Tensor, k: i64) -> (i64, i64) {
    let k = k.min(probs.size()[1]);
    let (_, top) = probs.topk(k, 1, true, true);
    let eq = top.eq_tensor(&labels.unsqueeze(1));
    let top1 = eq.narrow(1, 0, 1).sum(Kind::Int64).int64_value(&[]);
    let topk = eq.any_dim(1, false).sum(Kind::Int64).int64_value(&[]);
    (top1, topk)
}

/// What [`validate`] adds up, before dividing: the sums that ranks of a
/// distributed run add together.
#[derive(Debug, Clone, Default)]
pub struct ValSums {
    pub clips: f64,
    pub top1: f64,
    pub top5: f64,
    pub loss: f64,
    pub failures: Vec<String>,
}

impl ValSums {
    pub fn result(&self) -> ValResult {
        let d = self.clips.max(1.0);
        ValResult {
            top1: self.top1 / d,
            top5: self.top5 / d,
            loss: self.loss / d,
            clips: self.clips as usize,
            failures: self.failures.clone(),
        }
    }
}

/// Single centre view per sample through the model in eval mode.
pub fn validate(model: &SlowFast, loader: &Loader, device: Device) -> Result<ValResult, LoaderError> {
    validate_sums(model, loader, device).map(|s| s.result())
}

/// [`validate`]'s sums over this process's shard of the loader.
pub fn validate_sums(model: &SlowFast, loader: &Loader, device: Device) -> Result<ValSums, LoaderError> {
    let (mut n, mut c1, mut c5, mut loss) = (0i64, 0i64, 0i64, 0f64);
    let mut failures = Vec::new();
    for batch in loader.epoch(0) {
        let batch = batch?;
        failures.extend(batch.failures.iter().map(|f| format!("{}: {}", f.name, f.why)));
        let probs = tch::no_grad(|| model.forward_t(&batch.slow.to_device(device), &batch.fast.to_device(device), false));
        let probs = probs.map_err(|e| LoaderError { batch: 0, tries: 0, last: e.to_string() })?.to_device(Device::Cpu);
        let (a, b) = hits(&probs, &batch.labels, 5);
        let picked = probs.gather(1, &batch.labels.unsqueeze(1), false).clamp_min(1e-12);
        loss -= picked.log().sum(Kind::Double).double_value(&[]);
        c1 += a;
        c5 += b;
        n += batch.labels.size()[0];
    }
    Ok(ValSums { clips: n as f64, top1: c1 as f64, top5: c5 as f64, loss, failures })
}

#[derive(Debug, Clone, Serialize)]
pub struct ClassResult {
    pub id: usize,
    pub name: String,
    pub videos: usize,
    pub top1: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Confusion {
    pub truth: String,
    pub predicted: String,
    pub count: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct TestResult {
    pub videos: usize,
    pub views_per_video: usize,
    pub top1: f64,
    pub top5: f64,
    pub per_class: Vec<ClassResult>,
    /// Off-diagonal cells of the confusion matrix, largest first.
    pub confusions: Vec<Confusion>,
    pub confusion_matrix: Vec<Vec<usize>>,
    pub skipped: Vec<Failure>,
}

pub struct TestSetup {
    pub temporal: Temporal,
    pub views: usize,
    pub crops: usize,
    pub crop: u32,
    pub batch_size: usize,
    pub normalize: Normalization,
    pub alpha: usize,
    pub workers: usize,
    /// This process's videos: `rank, rank + world, ...`.
    pub shard: crate::data::Shard,
}

/// PySlowFast's multi-view test: every video decoded once, cut into
/// `views x crops` clips, their softmax averaged. Unreadable videos are
/// skipped and listed.
pub fn test_multiview(
    model: &SlowFast,
    source: &Source,
    setup: &TestSetup,
    class_names: &[String],
    device: Device,
    progress: impl FnMut(usize, usize),
) -> TestResult {
    let (probs, skipped) = multiview_probs(model, source, setup, device, progress);
    let mut r = summarise(&probs, skipped, source, class_names, model.config.num_classes as usize);
    r.views_per_video = setup.views * setup.crops;
    r
}

/// The summed softmax of every view of each video of this process's
/// shard, by video number, and the videos skipped.
pub fn multiview_probs(
    model: &SlowFast,
    source: &Source,
    setup: &TestSetup,
    device: Device,
    progress: impl FnMut(usize, usize),
) -> (BTreeMap<usize, Tensor>, Vec<Failure>) {
    let forward = |slow: &Tensor, fast: &Tensor| {
        tch::no_grad(|| model.forward_t(&slow.to_device(device), &fast.to_device(device), false)).map_err(|e| e.to_string())
    };
    multiview_probs_by(source, setup, forward, progress)
}

/// [`multiview_probs`] with any forward: `forward(slow, fast)` gives the
/// softmax rows of a batch of views (libtorch, or an exported model on one
/// of the runtime's engines). A batch that fails is left out of the sums
/// and reported on stderr.
pub fn multiview_probs_by(
    source: &Source,
    setup: &TestSetup,
    mut forward: impl FnMut(&Tensor, &Tensor) -> Result<Tensor, String>,
    mut progress: impl FnMut(usize, usize),
) -> (BTreeMap<usize, Tensor>, Vec<Failure>) {
    let mine: Vec<usize> = (setup.shard.rank..source.len()).step_by(setup.shard.world.max(1)).collect();
    let n = mine.len();
    let (tx, rx) = crossbeam_channel::bounded::<(usize, Result<Vec<Tensor>, Failure>)>(setup.workers.max(1) * 2);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut video_probs: BTreeMap<usize, Tensor> = BTreeMap::new();
    let mut skipped = Vec::new();
    std::thread::scope(|scope| {
        for _ in 0..setup.workers.max(1) {
            let tx = tx.clone();
            let (next, mine) = (&next, &mine);
            scope.spawn(move || {
                loop {
                    let k = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some(&i) = mine.get(k) else { break };
                    if tx.send((i, views_of(source, setup, i))).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let mut queue: Vec<(usize, Tensor)> = Vec::new();
        let mut run = |queue: &mut Vec<(usize, Tensor)>, probs_out: &mut BTreeMap<usize, Tensor>| {
            if queue.is_empty() {
                return;
            }
            let clips: Vec<Tensor> = queue.iter().map(|(_, t)| t.shallow_clone()).collect();
            let (slow, fast) = pathways(&clips, setup.alpha);
            let probs = forward(&slow, &fast);
            if let Err(e) = &probs {
                eprintln!("test: a batch of {} views failed: {e}", queue.len());
            }
            if let Ok(probs) = probs {
                let probs = probs.to_device(Device::Cpu);
                for (row, (video, _)) in queue.iter().enumerate() {
                    let p = probs.get(row as i64);
                    let sum = match probs_out.remove(video) {
                        Some(acc) => acc + p,
                        None => p,
                    };
                    probs_out.insert(*video, sum);
                }
            }
            queue.clear();
        };
        let mut done = 0;
        for (i, result) in rx {
            done += 1;
            progress(done, n);
            match result {
                Ok(views) => {
                    for v in views {
                        queue.push((i, v));
                        if queue.len() >= setup.batch_size {
                            run(&mut queue, &mut video_probs);
                        }
                    }
                }
                Err(f) => skipped.push(f),
            }
        }
        run(&mut queue, &mut video_probs);
    });
    (video_probs, skipped)
}

/// Top-1/top-5, per-class accuracy and confusions of summed softmax rows.
pub fn summarise(
    video_probs: &BTreeMap<usize, Tensor>,
    skipped: Vec<Failure>,
    source: &Source,
    class_names: &[String],
    classes: usize,
) -> TestResult {
    let mut matrix = vec![vec![0usize; classes]; classes];
    let (mut top1, mut top5) = (0usize, 0usize);
    for (&i, probs) in video_probs {
        let truth = source.label(i);
        let labels = Tensor::from_slice(&[truth as i64]);
        let (a, b) = hits(&probs.unsqueeze(0), &labels, 5);
        top1 += a as usize;
        top5 += b as usize;
        let predicted = probs.argmax(0, false).int64_value(&[]) as usize;
        if truth < classes && predicted < classes {
            matrix[truth][predicted] += 1;
        }
    }
    let name = |c: usize| class_names.get(c).cloned().unwrap_or_else(|| c.to_string());
    let per_class = (0..classes)
        .filter_map(|c| {
            let videos: usize = matrix[c].iter().sum();
            (videos > 0).then(|| ClassResult { id: c, name: name(c), videos, top1: matrix[c][c] as f64 / videos as f64 })
        })
        .collect();
    let mut confusions: Vec<Confusion> = (0..classes)
        .flat_map(|t| (0..classes).map(move |p| (t, p)))
        .filter(|&(t, p)| t != p && matrix[t][p] > 0)
        .map(|(t, p)| Confusion { truth: name(t), predicted: name(p), count: matrix[t][p] })
        .collect();
    confusions.sort_by_key(|c| std::cmp::Reverse(c.count));
    let videos = video_probs.len();
    let d = videos.max(1) as f64;
    TestResult {
        videos,
        views_per_video: 0,
        top1: top1 as f64 / d,
        top5: top5 as f64 / d,
        per_class,
        confusions,
        confusion_matrix: matrix,
        skipped,
    }
}

fn views_of(source: &Source, setup: &TestSetup, i: usize) -> Result<Vec<Tensor>, Failure> {
    let positions: Vec<ClipPosition> = (0..setup.views).map(|index| ClipPosition::View { index, count: setup.views }).collect();
    let raws = source.clips(i, setup.temporal, &positions).map_err(|e| Failure { name: e.name, why: e.why })?;
    raws.iter()
        .flat_map(|raw| (0..setup.crops).map(move |c| test_view(raw, setup.crop, c, setup.crops, &setup.normalize)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|why| Failure { name: source.name(i), why })
}
