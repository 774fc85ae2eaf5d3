//! SlowFast inference runtime: which frames make a clip, decoding,
//! preprocessing identical to PySlowFast's test protocol, the clip ring
//! buffer for live streams, and engines on ONNX Runtime. It never links
//! libtorch, so it runs on edge devices with only GStreamer and ONNX Runtime.

#[cfg(feature = "annotate")]
pub mod annotate;
#[cfg(feature = "decode")]
pub mod classify;
#[cfg(feature = "decode")]
pub mod decode;
pub mod engine;
pub mod labels;
pub mod model_info;
pub mod onnx_meta;
pub mod preprocess;
pub mod ring;
pub mod sampling;
pub mod schema;
