//! Decoding a video file or URI to RGB frames with GStreamer
//! (`uridecodebin ! videoconvert ! appsink`).

use std::path::PathBuf;

use gst::prelude::*;
use gst_video::prelude::*;

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("{source_name}: {why}")]
    Failed { source_name: String, why: String },
}

/// One decoded frame, packed RGB (no row padding).
#[derive(Debug, Clone)]
pub struct RgbFrame {
    pub width: usize,
    pub height: usize,
    pub pts_ns: Option<u64>,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct DecodedVideo {
    pub frames: Vec<RgbFrame>,
    /// Frame rate from the caps, when the container states one.
    pub fps: Option<f64>,
}

/// Turns a path or a URI into a URI for `uridecodebin`.
pub fn to_uri(input: &str) -> Result<String, DecodeError> {
    if input.contains("://") {
        return Ok(input.to_string());
    }
    let path = PathBuf::from(input);
    let fail = |why: String| DecodeError::Failed { source_name: input.to_string(), why };
    if !path.exists() {
        return Err(fail("no such file".to_string()));
    }
    let abs = path.canonicalize().map_err(|e| fail(e.to_string()))?;
    gst::glib::filename_to_uri(&abs, None).map(|u| u.to_string()).map_err(|e| fail(e.to_string()))
}

/// Decodes every video frame of `input` (a path or URI).
pub fn decode_all(input: &str) -> Result<DecodedVideo, DecodeError> {
    let fail = |why: String| DecodeError::Failed { source_name: input.to_string(), why };
    gst::init().map_err(|e| fail(format!("GStreamer init: {e}")))?;
    let uri = to_uri(input)?;
    let pipeline = gst::parse::launch(&format!(
        "uridecodebin uri=\"{uri}\" ! videoconvert ! \
         video/x-raw,format=RGB ! appsink name=sink sync=false"
    ))
    .map_err(|e| fail(format!("building the pipeline: {e}")))?
    .downcast::<gst::Pipeline>()
    .map_err(|_| fail("not a pipeline".to_string()))?;
    let result = pull_frames(&pipeline, input);
    let _ = pipeline.set_state(gst::State::Null);
    result
}

fn pull_frames(pipeline: &gst::Pipeline, input: &str) -> Result<DecodedVideo, DecodeError> {
    let fail = |why: String| DecodeError::Failed { source_name: input.to_string(), why };
    let sink = pipeline
        .by_name("sink")
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .ok_or_else(|| fail("appsink missing".to_string()))?;
    pipeline.set_state(gst::State::Playing).map_err(|_| bus_error(pipeline, input))?;
    let mut frames = Vec::new();
    let mut fps = None;
    loop {
        let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_seconds(30)) else {
            if sink.is_eos() {
                break;
            }
            return Err(bus_error(pipeline, input));
        };
        let (Some(caps), Some(buffer)) = (sample.caps(), sample.buffer()) else { continue };
        let info = gst_video::VideoInfo::from_caps(caps).map_err(|e| fail(format!("caps: {e}")))?;
        if fps.is_none() && info.fps().numer() > 0 {
            fps = Some(info.fps().numer() as f64 / info.fps().denom() as f64);
        }
        let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info)
            .map_err(|e| fail(format!("mapping a frame: {e}")))?;
        let (w, h) = (info.width() as usize, info.height() as usize);
        let stride = frame.plane_stride()[0] as usize;
        let plane = frame.plane_data(0).map_err(|e| fail(format!("frame data: {e}")))?;
        let mut data = Vec::with_capacity(w * h * 3);
        for row in 0..h {
            data.extend_from_slice(&plane[row * stride..row * stride + w * 3]);
        }
        frames.push(RgbFrame { width: w, height: h, pts_ns: buffer.pts().map(|t| t.nseconds()), data });
    }
    if frames.is_empty() {
        return Err(fail("no video frames decoded".to_string()));
    }
    Ok(DecodedVideo { frames, fps })
}

/// The first error posted on the bus, or a generic one.
fn bus_error(pipeline: &gst::Pipeline, input: &str) -> DecodeError {
    let why = pipeline
        .bus()
        .and_then(|bus| bus.pop_filtered(&[gst::MessageType::Error]))
        .and_then(|msg| match msg.view() {
            gst::MessageView::Error(e) => Some(format!("{} ({})", e.error(), e.debug().unwrap_or_default())),
            _ => None,
        })
        .unwrap_or_else(|| "decoding stopped without a frame or an error".to_string());
    DecodeError::Failed { source_name: input.to_string(), why }
}

