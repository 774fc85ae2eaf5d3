//! Batches from decoding workers: workers take batch numbers in turn, the
//! consumer hands batches out in order, and at most `workers + prefetch`
//! batches are in flight. Every random choice is drawn from
//! `Rng::at(seed, [epoch, position, attempt])`, so the batches are the same
//! for any number of workers and after a resume. An unreadable video is
//! replaced by another drawn sample and reported with the batch.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, bounded};
use runtime::preprocess::Normalization;
use runtime::sampling::ClipPosition;
use tch::Tensor;

use super::rng::Rng;
use super::source::{Source, Temporal};
use super::transform::{batch_pathways, empty_batch, test_view_into, train_view};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Shuffled, random clip position, jitter, crop and flip; incomplete
    /// last batch dropped (PySlowFast's `drop_last`).
    Train,
    /// In order, centre clip and centre crop, every sample once.
    Val,
}

#[derive(Debug, Clone)]
pub struct LoaderOptions {
    pub mode: Mode,
    pub batch_size: usize,
    pub workers: usize,
    pub prefetch: usize,
    pub max_retries: usize,
    pub seed: u64,
    pub temporal: Temporal,
    pub jitter: [u32; 2],
    pub crop: u32,
    pub flip: bool,
    pub normalize: Normalization,
    pub alpha: usize,
    /// This process's share of every epoch (data-parallel training).
    pub shard: Shard,
}

/// Rank `rank` of `world` reads positions `rank, rank + world, ...` of the
/// epoch's one shuffled order (PySlowFast's use of `DistributedSampler`),
/// `batch_size` of them per batch. In training, step `b` of all ranks
/// together covers positions `b * batch_size * world ..` of that order, the
/// same samples and augmentations as one process with the global batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub rank: usize,
    pub world: usize,
}

impl Default for Shard {
    fn default() -> Self {
        Shard { rank: 0, world: 1 }
    }
}

impl Shard {
    /// Batches each rank reads from `n` samples at `batch_size` per rank.
    /// Training drops the incomplete last global batch; evaluation reads
    /// every sample once (a rank may then have one batch fewer).
    pub fn batches(&self, mode: Mode, n: usize, batch_size: usize) -> usize {
        let (w, b) = (self.world.max(1), batch_size.max(1));
        match mode {
            Mode::Train => n / (b * w),
            Mode::Val => self.len(n).div_ceil(b),
        }
    }

    /// Positions of the epoch's order this rank has (evaluation).
    fn len(&self, n: usize) -> usize {
        (n + self.world.max(1) - 1 - self.rank.min(n)) / self.world.max(1)
    }

    /// Positions in the epoch's order of this rank's batch `b`.
    pub fn positions(&self, mode: Mode, n: usize, batch_size: usize, b: usize) -> Vec<usize> {
        let (w, bs) = (self.world.max(1), batch_size.max(1));
        let end = match mode {
            Mode::Train => bs,
            Mode::Val => self.len(n).saturating_sub(b * bs).min(bs),
        };
        (0..end).map(|j| self.rank + w * (b * bs + j)).filter(|&p| p < n).collect()
    }

    /// Positions in the epoch's order of this rank's training batch that
    /// starts `offset` clips into the rank's share and has `size` clips
    /// (batches of several sizes: multigrid's short cycle).
    pub fn train_positions(&self, offset: usize, size: usize) -> Vec<usize> {
        let w = self.world.max(1);
        (0..size).map(|j| self.rank + w * (offset + j)).collect()
    }
}

/// One batch layout of an epoch; multigrid's short cycle turns through
/// several, one per iteration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BatchShape {
    /// Clips of this process.
    pub batch_size: usize,
    pub crop: u32,
    /// Short-side range of the scale jitter before the crop.
    pub jitter: [u32; 2],
}

/// The clip shape and batch layouts of one training epoch: the loader's
/// own options, or what multigrid plans for the epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochLayout {
    /// Fast-pathway frames.
    pub frames: usize,
    /// Each clip's sampling rate is drawn from this range (inclusive).
    pub sampling_rates: [usize; 2],
    /// Batch layouts in turn, one per iteration.
    pub cycle: Vec<BatchShape>,
}

impl EpochLayout {
    /// Batches of one epoch when each process has `n` samples, the
    /// incomplete last one dropped.
    pub fn batches(&self, n: usize) -> usize {
        let mut used = 0;
        let mut count = 0;
        while let Some(b) = self.cycle.get(count % self.cycle.len().max(1)) {
            if b.batch_size == 0 || used + b.batch_size > n {
                break;
            }
            used += b.batch_size;
            count += 1;
        }
        count
    }

    /// Clips of this process before batch `b`.
    fn offset(&self, b: usize) -> usize {
        let len = self.cycle.len().max(1);
        let per_cycle: usize = self.cycle.iter().map(|s| s.batch_size).sum();
        (b / len) * per_cycle + self.cycle.iter().take(b % len).map(|s| s.batch_size).sum::<usize>()
    }
}

/// A video that could not be used, and why.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Failure {
    pub name: String,
    pub why: String,
}

pub struct Batch {
    pub slow: Tensor,
    pub fast: Tensor,
    /// `[N]` int64 class ids.
    pub labels: Tensor,
    /// Sample numbers in the source, after replacements.
    pub samples: Vec<usize>,
    pub failures: Vec<Failure>,
}

#[derive(Debug, thiserror::Error)]
#[error("batch {batch}: {tries} videos in a row could not be read, the last: {last}")]
pub struct LoaderError {
    pub batch: usize,
    pub tries: usize,
    pub last: String,
}

pub struct Loader {
    source: Arc<Source>,
    opts: LoaderOptions,
    bad: BadSet,
}

impl Loader {
    pub fn new(source: Source, opts: LoaderOptions) -> Self {
        Loader { source: Arc::new(source), opts, bad: BadSet::default() }
    }

    pub fn source(&self) -> &Source {
        &self.source
    }

    pub fn options(&self) -> &LoaderOptions {
        &self.opts
    }

    /// Batches this process reads per epoch (its shard's).
    pub fn batches_per_epoch(&self) -> usize {
        self.batches_in(&self.layout())
    }

    /// Batches this process reads in an epoch of `layout`.
    pub fn batches_in(&self, layout: &EpochLayout) -> usize {
        match self.opts.mode {
            Mode::Train => layout.batches(self.source.len() / self.opts.shard.world.max(1)),
            Mode::Val => self.opts.shard.batches(Mode::Val, self.source.len(), self.opts.batch_size),
        }
    }

    /// The layout of the loader's own options: one batch size, crop and
    /// jitter, the recipe's frames and sampling rate.
    pub fn layout(&self) -> EpochLayout {
        let o = &self.opts;
        EpochLayout {
            frames: o.temporal.num_frames,
            sampling_rates: [o.temporal.sampling_rate; 2],
            cycle: vec![BatchShape { batch_size: o.batch_size, crop: o.crop, jitter: o.jitter }],
        }
    }

    /// The samples of `epoch` in the order they are read (shuffled by the
    /// seed in training).
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        let n = self.source.len();
        match self.opts.mode {
            Mode::Train => Rng::at(self.opts.seed, &[epoch, u64::MAX]).permutation(n),
            Mode::Val => (0..n).collect(),
        }
    }

    /// Where the training clip at position `pos` of `epoch` starts, as a
    /// fraction of the video's free range, when its sample is readable:
    /// what a benchmark needs to have a reference decode the same clips.
    pub fn clip_fraction(&self, epoch: u64, pos: usize) -> f64 {
        sample_rng(self.opts.seed, epoch, pos, 0).uniform()
    }

    /// The batches of `epoch`, in order, decoded ahead on worker threads.
    pub fn epoch(&self, epoch: u64) -> EpochIter {
        self.epoch_with(epoch, &self.layout())
    }

    /// [`Loader::epoch`] with the shapes of `layout` (training); the
    /// workers go through every batch layout without restarting.
    pub fn epoch_with(&self, epoch: u64, layout: &EpochLayout) -> EpochIter {
        let order = self.order(epoch);
        let total = self.batches_in(layout);
        let layout = Arc::new(layout.clone());
        let in_flight = self.opts.workers.max(1) + self.opts.prefetch;
        let (tx, rx) = bounded(in_flight);
        let (ticket_tx, ticket_rx) = bounded(in_flight);
        for _ in 0..in_flight {
            let _ = ticket_tx.send(());
        }
        let next = Arc::new(AtomicUsize::new(0));
        let order = Arc::new(order);
        let workers = (0..self.opts.workers.max(1))
            .map(|_| {
                let (source, opts, order, next, bad, layout) =
                    (self.source.clone(), self.opts.clone(), order.clone(), next.clone(), self.bad.clone(), layout.clone());
                let (tx, ticket_rx): (Sender<_>, Receiver<()>) = (tx.clone(), ticket_rx.clone());
                std::thread::spawn(move || {
                    while ticket_rx.recv().is_ok() {
                        let b = next.fetch_add(1, Ordering::SeqCst);
                        if b >= total {
                            break;
                        }
                        let batch = make_batch(&source, &opts, &layout, &bad, &order, epoch, b);
                        if tx.send((b, batch)).is_err() {
                            break;
                        }
                    }
                })
            })
            .collect();
        EpochIter { rx: Some(rx), tickets: Some(ticket_tx), pending: BTreeMap::new(), next: 0, total, workers }
    }
}

pub struct EpochIter {
    rx: Option<Receiver<(usize, Result<Batch, LoaderError>)>>,
    tickets: Option<Sender<()>>,
    pending: BTreeMap<usize, Result<Batch, LoaderError>>,
    next: usize,
    total: usize,
    workers: Vec<JoinHandle<()>>,
}

impl EpochIter {
    pub fn len(&self) -> usize {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }
}

impl Iterator for EpochIter {
    type Item = Result<Batch, LoaderError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.total {
            return None;
        }
        let rx = self.rx.as_ref()?;
        while !self.pending.contains_key(&self.next) {
            let (b, batch) = rx.recv().ok()?;
            self.pending.insert(b, batch);
        }
        let batch = self.pending.remove(&self.next)?;
        self.next += 1;
        if let Some(t) = &self.tickets {
            let _ = t.send(());
        }
        Some(batch)
    }
}

impl Drop for EpochIter {
    fn drop(&mut self) {
        // Closing both channels wakes every worker, blocked or not.
        self.tickets.take();
        self.rx.take();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// Samples found unreadable, with the first reason: they fail again at
/// once instead of being reopened (a broken file can take seconds to give
/// up). Whether a sample fails does not change, so batches stay the same.
type BadSet = Arc<Mutex<HashMap<usize, String>>>;

/// The random stream of one attempt at the sample in position `pos`;
/// `load` draws the clip's start from it first.
fn sample_rng(seed: u64, epoch: u64, pos: usize, attempt: u64) -> Rng {
    Rng::at(seed, &[epoch, pos as u64, attempt])
}

fn make_batch(
    source: &Source,
    opts: &LoaderOptions,
    layout: &EpochLayout,
    bad: &BadSet,
    order: &[usize],
    epoch: u64,
    b: usize,
) -> Result<Batch, LoaderError> {
    let (positions, shape) = match opts.mode {
        Mode::Train => {
            let shape = layout.cycle[b % layout.cycle.len()];
            (opts.shard.train_positions(layout.offset(b), shape.batch_size), shape)
        }
        Mode::Val => {
            let positions = opts.shard.positions(opts.mode, order.len(), opts.batch_size.max(1), b);
            (positions, BatchShape { batch_size: opts.batch_size, crop: opts.crop, jitter: opts.jitter })
        }
    };
    let bs = positions.len();
    // Clips are written straight into the batch, a row each.
    let fast = empty_batch(positions.len(), layout.frames, shape.crop);
    let mut labels = Vec::with_capacity(bs);
    let mut samples = Vec::with_capacity(bs);
    let mut failures = Vec::new();
    for (row, pos) in positions.into_iter().enumerate() {
        let mut slot = fast.get(row as i64);
        let mut idx = order[pos];
        let mut attempt = 0u64;
        loop {
            let mut rng = sample_rng(opts.seed, epoch, pos, attempt);
            let known = bad.lock().ok().and_then(|b| b.get(&idx).cloned());
            let result = match known {
                Some(why) => Err(super::SampleError::new(source.name(idx), why)),
                None => load(source, opts, layout, shape, idx, &mut rng, &mut slot),
            };
            match result {
                Ok(()) => {
                    labels.push(source.label(idx) as i64);
                    samples.push(idx);
                    break;
                }
                Err(e) => {
                    if let Ok(mut b) = bad.lock() {
                        b.entry(idx).or_insert_with(|| e.why.clone());
                    }
                    failures.push(Failure { name: e.name.clone(), why: e.why.clone() });
                    if attempt as usize >= opts.max_retries {
                        return Err(LoaderError { batch: b, tries: attempt as usize + 1, last: e.to_string() });
                    }
                    // PySlowFast draws a random other video in training; in
                    // evaluation the next one keeps the pass deterministic too.
                    idx = match opts.mode {
                        Mode::Train => rng.below(source.len()),
                        Mode::Val => (idx + 1) % source.len(),
                    };
                    attempt += 1;
                }
            }
        }
    }
    let (slow, fast) = batch_pathways(fast, opts.alpha);
    Ok(Batch { slow, fast, labels: Tensor::from_slice(&labels), samples, failures })
}

fn load(
    source: &Source,
    opts: &LoaderOptions,
    layout: &EpochLayout,
    shape: BatchShape,
    idx: usize,
    rng: &mut Rng,
    out: &mut Tensor,
) -> Result<(), super::SampleError> {
    match opts.mode {
        Mode::Train => {
            let position = ClipPosition::Random { fraction: rng.uniform() };
            let [lo, hi] = layout.sampling_rates;
            // PySlowFast's `get_random_sampling_rate`; one rate draws nothing.
            let sampling_rate = if hi > lo { lo + rng.below(hi - lo + 1) } else { lo };
            let temporal = Temporal { num_frames: layout.frames, sampling_rate, ..opts.temporal };
            let raw = source.clips(idx, temporal, &[position])?.remove(0);
            train_view(&raw, rng, shape.jitter, shape.crop, opts.flip, &opts.normalize, out)
                .map_err(|why| super::SampleError::new(source.name(idx), why))
        }
        Mode::Val => {
            let raw = source.clips(idx, opts.temporal, &[ClipPosition::Random { fraction: 0.5 }])?.remove(0);
            test_view_into(&raw, opts.crop, 1, 1, &opts.normalize, out).map_err(|why| super::SampleError::new(source.name(idx), why))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_positions(mode: Mode, n: usize, bs: usize, world: usize) -> Vec<Vec<Vec<usize>>> {
        (0..world)
            .map(|rank| {
                let s = Shard { rank, world };
                (0..s.batches(mode, n, bs)).map(|b| s.positions(mode, n, bs, b)).collect()
            })
            .collect()
    }

    #[test]
    fn evaluation_shards_cover_every_sample_once() {
        for (n, bs, world) in [(11, 2, 2), (10, 3, 4), (3, 4, 4), (7, 1, 3), (9, 4, 1)] {
            let mut seen: Vec<usize> = all_positions(Mode::Val, n, bs, world).into_iter().flatten().flatten().collect();
            seen.sort();
            assert_eq!(seen, (0..n).collect::<Vec<_>>(), "n {n} batch {bs} world {world}");
        }
    }

    #[test]
    fn training_steps_read_the_global_batches_of_one_process() {
        for (n, bs, world) in [(22, 2, 2), (23, 1, 4), (40, 3, 3)] {
            let per_rank = all_positions(Mode::Train, n, bs, world);
            let single = Shard::default();
            let steps = single.batches(Mode::Train, n, bs * world);
            for rank in &per_rank {
                assert_eq!(rank.len(), steps, "every rank takes the same number of steps");
                assert!(rank.iter().all(|b| b.len() == bs));
            }
            for step in 0..steps {
                let mut together: Vec<usize> = per_rank.iter().flat_map(|r| r[step].clone()).collect();
                together.sort();
                assert_eq!(together, single.positions(Mode::Train, n, bs * world, step), "step {step}");
            }
        }
    }
}
