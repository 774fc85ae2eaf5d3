//! SlowFast video recognition in libtorch: the network, its weights and its
//! compute, shared by the `trainer` command.

pub mod clip;
pub mod data;
pub mod dist;
pub mod export;
pub mod import;
pub mod model;
pub mod multigrid;
pub mod recipe;
pub mod synth;
pub mod train;
pub mod weights;

/// Class-name files, shared with the runtime.
pub use runtime::labels;
