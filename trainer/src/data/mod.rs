//! Training data: video lists, decoding (GStreamer, frame folders, or the
//! in-memory synthetic set), PySlowFast's clip sampling and augmentation,
//! and a parallel, prefetching, seed-deterministic loader that skips and
//! reports unreadable videos instead of stopping.

#[cfg(feature = "video")]
pub mod decode;
pub mod frames;
#[cfg(feature = "video")]
mod gate;
pub mod list;
pub mod loader;
pub mod raw;
#[cfg(feature = "video")]
pub mod reference;
pub mod rng;
pub mod source;
pub mod transform;

pub use list::{Sample, read_list};
pub use loader::{Batch, BatchShape, EpochLayout, Failure, Loader, LoaderOptions, Mode, Shard};
pub use raw::RawClip;
pub use source::Source;

/// Why one sample could not be read; the loader counts it and moves on.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{name}: {why}")]
pub struct SampleError {
    pub name: String,
    pub why: String,
    /// What code may branch on; the text is for people.
    pub kind: SampleErrorKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SampleErrorKind {
    /// The file is unusable as it is.
    #[default]
    Unreadable,
    /// Decoding produced no frame in time: worth another try on a busy
    /// machine (GStreamer's first registry scan, a loaded CPU).
    TimedOut,
}

impl SampleError {
    pub fn new(name: impl Into<String>, why: impl std::fmt::Display) -> Self {
        SampleError { name: name.into(), why: why.to_string(), kind: SampleErrorKind::Unreadable }
    }

    pub fn timed_out(name: impl Into<String>, why: impl std::fmt::Display) -> Self {
        SampleError { kind: SampleErrorKind::TimedOut, ..Self::new(name, why) }
    }
}
