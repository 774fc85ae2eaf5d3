//! Errors of `slowfast annotate`; each names the file, stream or element
//! it is about.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum AnnotateError {
    #[error("input {0}: no such file")]
    MissingInput(PathBuf),
    #[error("input {0}: no such video device")]
    MissingDevice(PathBuf),
    #[error("input {input}: {why}")]
    BadInput { input: String, why: String },
    #[error("output {path}: {why}")]
    BadOutput { path: PathBuf, why: String },
    #[error("--serve {address}: {why}")]
    BadServe { address: String, why: String },
    #[error(
        "the GStreamer element `slowfast` was not found: looked for {looked} and in the GStreamer registry \
         (GST_PLUGIN_PATH={plugin_path}); build it with `cargo build -p gst-plugin-slowfast` (it lands beside the \
         slowfast binary) or point GST_PLUGIN_PATH at the directory holding libgstslowfast.so"
    )]
    PluginNotFound { looked: String, plugin_path: String },
    #[error("cannot load the slowfast plugin {path}: {why}")]
    PluginLoad { path: PathBuf, why: String },
    #[error("GStreamer element {element} is missing (install the GStreamer plugin package that provides it): {why}")]
    MissingElement { element: String, why: String },
    #[error("{0}")]
    Pipeline(String),
    #[error("source {input} lost and given up after {retries} failed reconnection attempts: {why}")]
    SourceGivenUp { input: String, retries: u32, why: String },
    #[error("source {input}: {why}")]
    Source { input: String, why: String },
    #[error("output not finalised within {0:?} after end of stream: the MP4 may be unplayable")]
    DrainTimeout(std::time::Duration),
}
