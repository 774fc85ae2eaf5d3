//! Batches from decoding workers: workers take batch numbers in turn, the
//! consumer hands batches out in order, and at most `workers + prefetch`
//! batches are in flight. Every random choice is drawn from
//! `Rng::at(seed, [epoch, position, attempt])`, so the batches are the same
//! for any number of workers and after a resume. An unreadable video is
//! replaced by another drawn sample and reported with the batch.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::sync::atomic::{AtomicUsize, Ordering};
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

    pub fn batches_per_epoch(&self) -> usize {
        let (n, b) = (self.source.len(), self.opts.batch_size.max(1));
        match self.opts.mode {
            Mode::Train => n / b,
            Mode::Val => n.div_ceil(b),
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
        let order = self.order(epoch);
        let total = self.batches_per_epoch();
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
                let (source, opts, order, next, bad) =
                    (self.source.clone(), self.opts.clone(), order.clone(), next.clone(), self.bad.clone());
                let (tx, ticket_rx): (Sender<_>, Receiver<()>) = (tx.clone(), ticket_rx.clone());
                std::thread::spawn(move || {
                    while ticket_rx.recv().is_ok() {
                        let b = next.fetch_add(1, Ordering::SeqCst);
                        if b >= total {
                            break;
                        }
                        let batch = make_batch(&source, &opts, &bad, &order, epoch, b);
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

fn make_batch(source: &Source, opts: &LoaderOptions, bad: &BadSet, order: &[usize], epoch: u64, b: usize) -> Result<Batch, LoaderError> {
    let bs = opts.batch_size.max(1);
    let positions = b * bs..((b + 1) * bs).min(order.len());
    // Clips are written straight into the batch, a row each.
    let fast = empty_batch(positions.len(), opts.temporal.num_frames, opts.crop);
    let mut labels = Vec::with_capacity(bs);
    let mut samples = Vec::with_capacity(bs);
    let mut failures = Vec::new();
    for (row, pos) in positions.enumerate() {
        let mut slot = fast.get(row as i64);
        let mut idx = order[pos];
        let mut attempt = 0u64;
        loop {
            let mut rng = sample_rng(opts.seed, epoch, pos, attempt);
            let known = bad.lock().ok().and_then(|b| b.get(&idx).cloned());
            let result = match known {
                Some(why) => Err(super::SampleError::new(source.name(idx), why)),
                None => load(source, opts, idx, &mut rng, &mut slot),
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

fn load(source: &Source, opts: &LoaderOptions, idx: usize, rng: &mut Rng, out: &mut Tensor) -> Result<(), super::SampleError> {
    match opts.mode {
        Mode::Train => {
            let position = ClipPosition::Random { fraction: rng.uniform() };
            let raw = source.clips(idx, opts.temporal, &[position])?.remove(0);
            train_view(&raw, rng, opts.jitter, opts.crop, opts.flip, &opts.normalize, out)
                .map_err(|why| super::SampleError::new(source.name(idx), why))
        }
        Mode::Val => {
            let raw = source.clips(idx, opts.temporal, &[ClipPosition::Random { fraction: 0.5 }])?.remove(0);
            test_view_into(&raw, opts.crop, 1, 1, &opts.normalize, out).map_err(|why| super::SampleError::new(source.name(idx), why))
        }
    }
}
