//! The project's one video decoder: the frames clips need of a file (or a
//! URI), decoded with GStreamer. The trainer's loader, `slowfast classify`
//! and the tests all read videos through it, so every fix to how a seek
//! lands or a broken file is told apart reaches all of them.
//!
//! One concern per module:
//! - `pipeline`: `source ! parsebin`, the decoder chosen by the stream's
//!   caps and linked to the first video stream, prerolling with a time-out,
//!   and what a file that gives no frame is told to be;
//! - `gate`: frame rate and frame 0's time read off the first packets,
//!   which are held before the decoder until the seek;
//! - `h264`: H.264 packets read before the decoder: frames no other frame
//!   refers to, and points decoding can start at;
//! - `skip`: the decoder told to skip frames no clip samples;
//! - `read`: a seek to each run of wanted frames, each checked to have
//!   landed where decoding can start (MPEG-TS has no index; otherwise the
//!   video is decoded from the start), and the frames numbered;
//! - `clips`: clips assembled from the frames read.

mod clips;
mod gate;
mod h264;
mod pipeline;
mod read;
mod skip;

pub use clips::{DecodedVideo, RgbFrame, decode_all, decode_clips};
pub use read::{Frame, Probe, Read, probe, read_all, read_frames};

use crate::preprocess::Packing;

/// How decoded frames are packed (the appsink's caps). RGBx, not RGB:
/// videoconvert has a direct path from the decoders' YUV to it (the same
/// values, in half the time), and a crop reads it with one load a pixel.
pub const PACKING: Packing = Packing::Rgbx;

/// Why a video gave no frames; `source_name` is the file or URI.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{source_name}: {why}")]
pub struct DecodeError {
    pub source_name: String,
    pub why: String,
    /// What code may branch on; the text is for people.
    pub kind: DecodeErrorKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DecodeErrorKind {
    /// The file is unusable as it is.
    #[default]
    Unreadable,
    /// Decoding produced no frame in time: worth another try on a busy
    /// machine (GStreamer's first registry scan, a loaded CPU).
    TimedOut,
}

impl DecodeError {
    pub fn new(source_name: impl Into<String>, why: impl std::fmt::Display) -> Self {
        DecodeError { source_name: source_name.into(), why: why.to_string(), kind: DecodeErrorKind::Unreadable }
    }

    pub fn timed_out(source_name: impl Into<String>, why: impl std::fmt::Display) -> Self {
        DecodeError { kind: DecodeErrorKind::TimedOut, ..Self::new(source_name, why) }
    }
}
