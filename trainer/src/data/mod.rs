//! Training data: video lists, decoding (GStreamer, frame folders, or the
//! in-memory synthetic set), PySlowFast's clip sampling and augmentation,
//! and a parallel, prefetching, seed-deterministic loader that skips and
//! reports unreadable videos instead of stopping.

pub mod frames;
pub mod list;
pub mod loader;
pub mod rng;
pub mod source;
pub mod transform;

pub use list::{Sample, read_list};
pub use loader::{Batch, BatchShape, EpochLayout, Failure, Loader, LoaderOptions, Mode, Shard};
pub use runtime::preprocess::RawClip;
pub use source::Source;

/// Why one sample could not be read; the loader counts it and moves on.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{name}: {why}")]
pub struct SampleError {
    pub name: String,
    pub why: String,
}

impl SampleError {
    pub fn new(name: impl Into<String>, why: impl std::fmt::Display) -> Self {
        SampleError { name: name.into(), why: why.to_string() }
    }
}

#[cfg(feature = "video")]
impl From<runtime::decode::DecodeError> for SampleError {
    fn from(e: runtime::decode::DecodeError) -> Self {
        SampleError { name: e.source_name, why: e.why }
    }
}
