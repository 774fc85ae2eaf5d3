//! SlowFast inference runtime: which frames make a clip, decoding, and (in
//! later parts) engines, preprocessing and the clip ring buffer. It never
//! links libtorch, so it runs on edge devices with only GStreamer and ONNX
//! Runtime.

#[cfg(feature = "gstreamer")]
pub mod decode;
pub mod sampling;
