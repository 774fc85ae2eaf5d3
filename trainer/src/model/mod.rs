//! The SlowFast network (Feichtenhofer et al., ICCV 2019) as PySlowFast
//! builds it. One file per part; `slowfast.rs` puts them together and
//! `walk.rs` has the backends every part is walked on.

pub mod config;
pub mod fuse;
pub mod head;
pub mod layers;
pub mod resnet;
pub mod slowfast;
pub mod stem;
pub mod walk;

pub use config::{HeadPool, ModelConfig, Preset};
pub use slowfast::{EvalOutput, SlowFast};
pub use walk::FlopCount;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model config: field `{field}`: {why}")]
    Config { field: String, why: String },
    #[error("{pathway} pathway input: {why}")]
    Input { pathway: &'static str, why: String },
    #[error("libtorch: {0}")]
    Torch(String),
}
