//! What `annotate` reads from, and the source pipeline built for each
//! connection to it: decode, convert to I420 (what both the element and
//! x264enc take), and hand frames to the bridge.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use gst::prelude::*;

use super::bridge::Bridge;
use super::error::AnnotateError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A local video file.
    File(PathBuf),
    /// Any other URI `uridecodebin` reads (file://, http://, ...).
    Uri(String),
    /// An RTSP camera or server (rtsp://, rtsps://, rtspt://).
    Rtsp(String),
    /// A V4L2 capture device (/dev/videoN).
    Device(PathBuf),
}

/// RTSP jitter-buffer latency: enough for loopback and LAN cameras.
const RTSP_LATENCY_MS: u32 = 200;
/// How long rtspsrc waits for the TCP connection and replies (µs).
const RTSP_TCP_TIMEOUT_US: u64 = 5_000_000;

impl Input {
    /// Classifies `input` and checks that a file or device exists.
    pub fn parse(input: &str) -> Result<Input, AnnotateError> {
        let lower = input.to_ascii_lowercase();
        if ["rtsp://", "rtsps://", "rtspt://", "rtsph://"].iter().any(|s| lower.starts_with(s)) {
            return Ok(Input::Rtsp(input.to_string()));
        }
        if lower.starts_with("file://") {
            let path =
                gst::glib::filename_from_uri(input).map_err(|e| AnnotateError::BadInput { input: input.into(), why: e.to_string() })?.0;
            return Self::file(&path);
        }
        if input.contains("://") {
            return Ok(Input::Uri(input.to_string()));
        }
        let path = Path::new(input);
        if input.starts_with("/dev/") {
            if !path.exists() {
                return Err(AnnotateError::MissingDevice(path.into()));
            }
            return Ok(Input::Device(path.into()));
        }
        Self::file(path)
    }

    fn file(path: &Path) -> Result<Input, AnnotateError> {
        if !path.exists() {
            return Err(AnnotateError::MissingInput(path.into()));
        }
        if !path.is_file() {
            return Err(AnnotateError::BadInput { input: path.display().to_string(), why: "not a regular file".into() });
        }
        Ok(Input::File(path.into()))
    }

    /// Live inputs are reconnected when lost; the others end at EOS and
    /// their errors are final.
    pub fn is_live(&self) -> bool {
        matches!(self, Input::Rtsp(_) | Input::Device(_))
    }

    pub fn name(&self) -> String {
        match self {
            Input::File(p) | Input::Device(p) => p.display().to_string(),
            Input::Uri(u) | Input::Rtsp(u) => u.clone(),
        }
    }

    fn uri(&self) -> Result<String, AnnotateError> {
        match self {
            Input::File(p) => {
                let abs = p.canonicalize().map_err(|e| AnnotateError::BadInput { input: self.name(), why: e.to_string() })?;
                gst::glib::filename_to_uri(&abs, None)
                    .map(|u| u.to_string())
                    .map_err(|e| AnnotateError::BadInput { input: self.name(), why: e.to_string() })
            }
            Input::Uri(u) | Input::Rtsp(u) => Ok(u.clone()),
            Input::Device(_) => Err(AnnotateError::BadInput { input: self.name(), why: "a device has no URI".into() }),
        }
    }
}

pub fn make(factory: &str) -> Result<gst::Element, AnnotateError> {
    gst::ElementFactory::make(factory).build().map_err(|e| AnnotateError::MissingElement { element: factory.into(), why: e.to_string() })
}

/// One connection to the input: its own pipeline and bus.
pub struct SourcePipeline {
    pub pipeline: gst::Pipeline,
    pub bus: gst::Bus,
}

impl SourcePipeline {
    /// Builds the pipeline; `size` pins width and height (after the first
    /// connection) so the output's caps never change.
    pub fn build(input: &Input, bridge: Arc<Bridge>, size: Option<(u32, u32)>) -> Result<SourcePipeline, AnnotateError> {
        let pipeline = gst::Pipeline::with_name("annotate-source");
        let convert = make("videoconvert")?;
        let scale = make("videoscale")?;
        let filter = make("capsfilter")?;
        let mut caps = gst_video::VideoCapsBuilder::new().format(gst_video::VideoFormat::I420);
        if let Some((w, h)) = size {
            caps = caps.width(w as i32).height(h as i32);
        }
        filter.set_property("caps", caps.build());
        let sink = gst_app::AppSink::builder().name("frames").sync(false).build();
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    bridge.push(sample)
                })
                .build(),
        );
        let tail = [&convert, &scale, &filter, sink.upcast_ref()];
        pipeline.add_many(tail).map_err(pipeline_error)?;
        gst::Element::link_many(tail).map_err(pipeline_error)?;

        let decoder = match input {
            Input::Device(dev) => {
                let src = make("v4l2src")?;
                src.set_property("device", dev.display().to_string());
                // decodebin handles raw, MJPEG and H.264 cameras alike.
                let decode = make("decodebin")?;
                pipeline.add_many([&src, &decode]).map_err(pipeline_error)?;
                src.link(&decode).map_err(pipeline_error)?;
                decode
            }
            _ => {
                let decode = make("uridecodebin")?;
                decode.set_property("uri", input.uri()?);
                if matches!(input, Input::Rtsp(_)) {
                    decode.connect("source-setup", false, |args| {
                        if let Some(src) = args.get(1).and_then(|v| v.get::<gst::Element>().ok()) {
                            if src.find_property("latency").is_some() {
                                src.set_property("latency", RTSP_LATENCY_MS);
                            }
                            if src.find_property("tcp-timeout").is_some() {
                                src.set_property("tcp-timeout", RTSP_TCP_TIMEOUT_US);
                            }
                        }
                        None
                    });
                }
                pipeline.add(&decode).map_err(pipeline_error)?;
                decode
            }
        };
        let pipeline_weak = pipeline.downgrade();
        let convert_weak = convert.downgrade();
        // What the decoder exposed: without a video stream nothing ever
        // reaches the appsink and the pipeline would wait forever.
        let found: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
        let found_added = found.clone();
        decoder.connect_pad_added(move |_, pad| {
            let (Some(pipeline), Some(convert)) = (pipeline_weak.upgrade(), convert_weak.upgrade()) else { return };
            let is_video = pad
                .current_caps()
                .or_else(|| Some(pad.query_caps(None)))
                .and_then(|c| c.structure(0).map(|s| s.name().starts_with("video/")))
                .unwrap_or(false);
            let kind = pad
                .current_caps()
                .or_else(|| Some(pad.query_caps(None)))
                .and_then(|c| c.structure(0).map(|s| s.name().to_string()))
                .unwrap_or_else(|| "an unknown stream".into());
            found_added.lock().unwrap_or_else(|p| p.into_inner()).push(kind);
            let target = convert.static_pad("sink");
            match target {
                Some(sinkpad) if is_video && !sinkpad.is_linked() => {
                    if let Err(e) = pad.link(&sinkpad) {
                        gst::element_error!(pipeline, gst::StreamError::Failed, ["cannot link the decoded video: {e:?}"]);
                    }
                }
                // Audio and extra video streams are discarded; an unlinked
                // pad would stop the demuxer with not-linked.
                _ => {
                    let Ok(fake) = gst::ElementFactory::make("fakesink").property("sync", false).property("async", false).build() else {
                        return;
                    };
                    if pipeline.add(&fake).is_ok() {
                        let _ = fake.sync_state_with_parent();
                        if let Some(fp) = fake.static_pad("sink") {
                            let _ = pad.link(&fp);
                        }
                    }
                }
            }
        });
        let pipeline_weak = pipeline.downgrade();
        let convert_weak = convert.downgrade();
        let name = input.name();
        decoder.connect_no_more_pads(move |_| {
            let (Some(pipeline), Some(convert)) = (pipeline_weak.upgrade(), convert_weak.upgrade()) else { return };
            if convert.static_pad("sink").is_some_and(|p| p.is_linked()) {
                return;
            }
            let found = found.lock().unwrap_or_else(|p| p.into_inner());
            let streams = if found.is_empty() { "no stream at all".to_string() } else { format!("only {}", found.join(", ")) };
            gst::element_error!(pipeline, gst::StreamError::WrongType, ("no video stream in {name} (it holds {streams})"));
        });
        let bus = pipeline.bus().ok_or_else(|| AnnotateError::Pipeline("the source pipeline has no bus".into()))?;
        Ok(SourcePipeline { pipeline, bus })
    }

    pub fn start(&self) -> Result<(), String> {
        self.pipeline.set_state(gst::State::Playing).map(|_| ()).map_err(|_| "cannot start".to_string())
    }

    pub fn stop(&self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

impl Drop for SourcePipeline {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn pipeline_error(e: impl std::fmt::Display) -> AnnotateError {
    AnnotateError::Pipeline(format!("cannot build the pipeline: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_inputs() {
        assert_eq!(Input::parse("rtsp://cam/stream").unwrap(), Input::Rtsp("rtsp://cam/stream".into()));
        assert_eq!(Input::parse("http://host/v.mp4").unwrap(), Input::Uri("http://host/v.mp4".into()));
        assert!(Input::parse("rtsp://x").unwrap().is_live());
        let err = Input::parse("/nowhere/clip.mp4").unwrap_err().to_string();
        assert!(err.contains("/nowhere/clip.mp4") && err.contains("no such file"), "{err}");
        let err = Input::parse("/dev/video-none-9").unwrap_err().to_string();
        assert!(err.contains("/dev/video-none-9") && err.contains("device"), "{err}");
        let file = tempfile::NamedTempFile::new().unwrap();
        let p = file.path().to_path_buf();
        assert_eq!(Input::parse(&p.display().to_string()).unwrap(), Input::File(p.clone()));
        assert!(!Input::File(p).is_live());
    }
}
