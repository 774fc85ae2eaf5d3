//! Turning a recipe into what a run uses: the device, the data sources of
//! each split and their loaders. Lists are read here, so a bad line stops
//! the run before the first step.

use runtime::preprocess::Normalization;
use tch::Device;

use crate::data::list::read_list;
use crate::data::source::Temporal;
use crate::data::{Loader, LoaderOptions, Mode, Shard, Source};
use crate::recipe::{Dataset, DeviceChoice, Recipe};
use crate::synth::{Split, SynthSpec};

pub fn device(choice: DeviceChoice) -> Result<Device, String> {
    match choice {
        DeviceChoice::Auto => Ok(Device::cuda_if_available()),
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Cuda(i) => {
            let n = tch::Cuda::device_count();
            if i < n {
                Ok(Device::Cuda(i as usize))
            } else {
                Err(format!("`device: cuda {i}` asked for, but {n} CUDA devices are visible"))
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Train,
    Val,
    Test,
}

/// The samples of one split; `None` when the recipe has no such list. The
/// synthetic set uses its validation clips for testing.
pub fn source(recipe: &Recipe, which: Which) -> Result<Option<Source>, String> {
    let classes = recipe.model_config().map_err(|(f, w)| format!("{f}: {w}"))?.num_classes as usize;
    match &recipe.data.dataset {
        Dataset::Lists(l) => {
            let path = match which {
                Which::Train => &l.train,
                Which::Val => &l.val,
                Which::Test => &l.test,
            };
            let Some(path) = path else { return Ok(None) };
            let samples = read_list(path, l.root.as_deref(), l.format, classes).map_err(|e| e.to_string())?;
            Ok(Some(Source::List(samples)))
        }
        Dataset::Synthetic(s) => {
            let spec = SynthSpec { size: s.size, frames: s.frames, seed: s.seed };
            let (split, count) = match which {
                Which::Train => (Split::Train, s.train),
                Which::Val | Which::Test => (Split::Val, s.val),
            };
            Ok((count > 0).then_some(Source::Synthetic { spec, split, count }))
        }
    }
}

pub fn temporal(recipe: &Recipe) -> Temporal {
    let d = &recipe.data;
    Temporal { num_frames: d.num_frames, sampling_rate: d.sampling_rate, target_fps: d.target_fps }
}

pub fn normalize(recipe: &Recipe) -> Normalization {
    Normalization { mean: recipe.data.mean.map(|v| v as f32), std: recipe.data.std.map(|v| v as f32) }
}

/// The loader of one split for this process: `shard` of every epoch, at
/// its share of the recipe's global batch.
pub fn loader(recipe: &Recipe, source: Source, mode: Mode, alpha: usize, shard: Shard) -> Loader {
    let d = &recipe.data;
    let global = match mode {
        Mode::Train => recipe.train.batch_size,
        Mode::Val => recipe.test.batch_size,
    };
    let batch_size = (global / shard.world.max(1)).max(1);
    Loader::new(
        source,
        LoaderOptions {
            mode,
            batch_size,
            workers: recipe.loader.workers,
            prefetch: recipe.loader.prefetch_batches,
            max_retries: recipe.loader.max_retries,
            seed: recipe.seed,
            temporal: temporal(recipe),
            jitter: d.train_jitter_scales,
            crop: d.train_crop_size,
            flip: d.random_flip,
            normalize: normalize(recipe),
            alpha,
            shard,
        },
    )
}
