//! SlowFast inference runtime: which frames make a clip, decoding,
//! preprocessing identical to PySlowFast's test protocol, the clip ring
//! buffer for live streams, and engines on ONNX Runtime and OpenVINO. It
//! never links libtorch, so it runs on edge devices with only GStreamer and
//! ONNX Runtime.

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

/// For command-line tools: a closed stdout (`slowfast ... | head -1`) ends
/// the process quietly, as it does other Unix tools, instead of making the
/// next `println!` panic (Rust ignores SIGPIPE by default).
pub fn exit_quietly_on_closed_stdout() {
    // SAFETY: restores the default disposition of one signal, before any
    // thread that could be writing to stdout starts.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
