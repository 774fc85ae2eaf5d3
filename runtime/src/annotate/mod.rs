//! `slowfast annotate`: decode a file, URI, RTSP camera or V4L2 device, run
//! the `slowfast` element with `draw=true`, encode H.264 once, and write an
//! MP4 and/or serve the annotated stream over RTSP while predictions are
//! reported as they come.
//!
//! ```text
//!  source pipeline (one per connection)        output pipeline (one per run)
//!  uridecodebin | v4l2src ! decodebin           appsrc ! slowfast draw=true ! videoconvert ! videoscale
//!    ! videoconvert ! videoscale                  ! first caps, even size ! x264enc
//!    ! I420 (size pinned after the first            ! tee ┬ queue ! h264parse ! mp4mux ! filesink
//!      connection) ! appsink ── Bridge ──►              └ queue ! h264parse ! appsink ──► RTSP media appsrc(s)
//! ```
//!
//! The encoder sees one size for the whole run: the first one, rounded up
//! to even (x264 takes no odd 4:2:0 size); frames of another size (a
//! resolution change mid-stream) are scaled to it, while the element sees
//! them as they are and restarts its window. A source without a video
//! stream is an error as soon as its decoder has exposed every stream.
//!
//! Why two pipelines: a lost camera is torn down and rebuilt with back-off
//! while the output pipeline (element state, encoder, MP4 muxer, RTSP
//! clients) keeps running, so one MP4 spans every reconnection; the outage
//! shows as a held frame of its real length because the bridge maps each
//! connection's timestamps onto the output's running time. Buffers travel by
//! reference through the bridge (no copy).
//!
//! Why an appsink → appsrc feed for RTSP: the in-process gst-rtsp-server
//! media is `appsrc ! h264parse ! rtph264pay` fed with the encoder's output,
//! so clients cost no extra decoder or encoder and every client sees the same
//! annotated frames as the file. The media is shared; a new client waits for
//! a key frame, which is requested from the encoder when its media starts.

mod backoff;
mod bridge;
mod error;
mod input;
mod output;
mod plugin;
mod prediction;
mod serve;
mod supervisor;

use std::path::PathBuf;
use std::time::Duration;

pub use backoff::Backoff;
pub use error::AnnotateError;
pub use input::Input;
pub use plugin::{PLUGIN_FILE, PluginLocation, ensure_element};
pub use prediction::{ClassScore, PredictionRecord};
pub use serve::ServeAddress;
pub use supervisor::{Event, Finish, Summary, run};

/// Properties of the `slowfast` element the command sets.
#[derive(Debug, Clone)]
pub struct ElementSettings {
    pub model: PathBuf,
    pub labels: Option<PathBuf>,
    /// Nick of the element's `backend` enum: auto, tensorrt, cuda, cpu, openvino.
    pub backend: String,
    pub strict: bool,
    pub fp16: bool,
    pub threads: u32,
    pub engine_cache_dir: Option<PathBuf>,
    pub stride: u32,
    pub top_k: u32,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub input: Input,
    pub output: Option<PathBuf>,
    pub serve: Option<ServeAddress>,
    pub element: ElementSettings,
    /// Consecutive failed reconnections after which a live source is given
    /// up (`None`: never).
    pub max_retries: Option<u32>,
    pub backoff: Backoff,
    /// A live source that delivers no frame for this long is treated as lost.
    pub stall_timeout: Duration,
    /// How long the output may take to finalise after EOS.
    pub drain_timeout: Duration,
    /// H.264 key frame interval in frames (RTSP clients join on key frames).
    pub key_interval: u32,
}
