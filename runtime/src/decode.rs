//! Decoding a video file or URI to RGB frames with GStreamer
//! (`uridecodebin ! videoconvert ! appsink`), either whole or only the
//! frames a set of clips needs, seeking to each clip when the container
//! allows it.

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

/// What is known about a video before decoding it.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoProbe {
    pub fps: Option<f64>,
    pub duration_ns: Option<u64>,
    /// `duration x fps`, when both are known.
    pub frame_count: Option<usize>,
    pub seekable: bool,
    pub width: usize,
    pub height: usize,
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
    if path.metadata().map(|m| m.len() == 0).unwrap_or(false) {
        return Err(fail("empty file (zero bytes)".to_string()));
    }
    let abs = path.canonicalize().map_err(|e| fail(e.to_string()))?;
    gst::glib::filename_to_uri(&abs, None).map(|u| u.to_string()).map_err(|e| fail(e.to_string()))
}

/// Decodes every video frame of `input` (a path or URI).
pub fn decode_all(input: &str) -> Result<DecodedVideo, DecodeError> {
    let mut reader = VideoReader::open(input)?;
    let fps = reader.probe().fps;
    let mut frames = Vec::new();
    reader.read_all(|_, f| {
        frames.push(f.clone());
        Ok(())
    })?;
    Ok(DecodedVideo { frames, fps })
}

/// An open, prerolled decoding pipeline.
pub struct VideoReader {
    input: String,
    pipeline: gst::Pipeline,
    /// Media types of the streams the decoder exposed, to say what is
    /// wrong with a file that gives no frame.
    streams: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    sink: gst_app::AppSink,
    probe: VideoProbe,
    /// Timestamp of the first frame: frame `i` is at `base + i / fps`.
    base_ns: u64,
    preroll: Option<RgbFrame>,
}

impl Drop for VideoReader {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

impl VideoReader {
    /// Builds the pipeline and prerolls the first frame, which gives the
    /// caps (size, frame rate); then asks for the duration and seekability.
    pub fn open(input: &str) -> Result<VideoReader, DecodeError> {
        let fail = |why: String| DecodeError::Failed { source_name: input.to_string(), why };
        gst::init().map_err(|e| fail(format!("GStreamer init: {e}")))?;
        let uri = to_uri(input)?;
        // A short appsink queue: decoding stops while frames are not pulled,
        // so a seek is not preceded by decoding the rest of the file.
        let pipeline = gst::parse::launch(&format!(
            "uridecodebin name=decode uri=\"{uri}\" ! videoconvert ! \
             video/x-raw,format=RGB ! appsink name=sink sync=false max-buffers=4"
        ))
        .map_err(|e| fail(format!("building the pipeline: {e}")))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| fail("not a pipeline".to_string()))?;
        let sink = pipeline
            .by_name("sink")
            .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
            .ok_or_else(|| fail("appsink missing".to_string()))?;
        let streams: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
        if let Some(decode) = pipeline.by_name("decode") {
            let seen = streams.clone();
            decode.connect_pad_added(move |_, pad| {
                let kind = pad.current_caps().and_then(|c| c.structure(0).map(|s| s.name().to_string()));
                seen.lock().unwrap_or_else(|p| p.into_inner()).push(kind.unwrap_or_else(|| "an unknown stream".into()));
            });
        }
        let mut reader = VideoReader {
            input: input.to_string(),
            pipeline,
            streams,
            sink,
            probe: VideoProbe { fps: None, duration_ns: None, frame_count: None, seekable: false, width: 0, height: 0 },
            base_ns: 0,
            preroll: None,
        };
        reader.preroll()?;
        Ok(reader)
    }

    pub fn probe(&self) -> &VideoProbe {
        &self.probe
    }

    fn fail(&self, why: impl Into<String>) -> DecodeError {
        DecodeError::Failed { source_name: self.input.clone(), why: why.into() }
    }

    fn preroll(&mut self) -> Result<(), DecodeError> {
        self.pipeline.set_state(gst::State::Paused).map_err(|_| self.bus_error())?;
        let (res, _, _) = self.pipeline.state(gst::ClockTime::from_seconds(30));
        if res.is_err() {
            return Err(self.bus_error());
        }
        let Some(sample) = self.sink.try_pull_preroll(gst::ClockTime::from_seconds(30)) else {
            return Err(if self.sink.is_eos() { self.fail("no video frames (zero-length video)") } else { self.bus_error() });
        };
        let (frame, fps) = self.frame_of(&sample)?;
        self.base_ns = frame.pts_ns.unwrap_or(0);
        self.probe.fps = fps;
        self.probe.width = frame.width;
        self.probe.height = frame.height;
        self.probe.duration_ns = self.sink.query_duration::<gst::ClockTime>().map(|d| d.nseconds()).filter(|&d| d > 0);
        // Demuxers that index frames (AVI, MP4) answer in frames; the time
        // duration may include a longer audio track or an edit list.
        let counted = self.sink.query_duration::<gst::format::Default>().map(|n| *n as usize).filter(|&n| n > 0);
        self.probe.frame_count = match (counted, self.probe.duration_ns, fps) {
            (Some(n), _, _) => Some(n),
            (None, Some(d), Some(fps)) => Some((d as f64 * 1e-9 * fps).round() as usize),
            _ => None,
        };
        let mut q = gst::query::Seeking::new(gst::Format::Time);
        self.probe.seekable = self.pipeline.query(&mut q) && q.result().0;
        self.preroll = Some(frame);
        Ok(())
    }

    fn frame_of(&self, sample: &gst::Sample) -> Result<(RgbFrame, Option<f64>), DecodeError> {
        let (Some(caps), Some(buffer)) = (sample.caps(), sample.buffer()) else {
            return Err(self.fail("a sample without caps or buffer"));
        };
        let info = gst_video::VideoInfo::from_caps(caps).map_err(|e| self.fail(format!("caps: {e}")))?;
        let fps = (info.fps().numer() > 0).then(|| info.fps().numer() as f64 / info.fps().denom() as f64);
        let frame =
            gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info).map_err(|e| self.fail(format!("mapping a frame: {e}")))?;
        let (w, h) = (info.width() as usize, info.height() as usize);
        let stride = frame.plane_stride()[0] as usize;
        let plane = frame.plane_data(0).map_err(|e| self.fail(format!("frame data: {e}")))?;
        let mut data = Vec::with_capacity(w * h * 3);
        for row in 0..h {
            data.extend_from_slice(&plane[row * stride..row * stride + w * 3]);
        }
        Ok((RgbFrame { width: w, height: h, pts_ns: buffer.pts().map(|t| t.nseconds()), data }, fps))
    }

    /// The next frame in decoding order, `None` at the end of the stream.
    fn next_frame(&mut self) -> Result<Option<RgbFrame>, DecodeError> {
        match self.sink.try_pull_sample(gst::ClockTime::from_seconds(30)) {
            Some(sample) => self.frame_of(&sample).map(|(f, _)| Some(f)),
            None if self.sink.is_eos() => Ok(None),
            None => Err(self.bus_error()),
        }
    }

    /// Frame index of a timestamp.
    fn index_of(&self, frame: &RgbFrame, fps: f64) -> Option<usize> {
        frame.pts_ns.map(|pts| ((pts.saturating_sub(self.base_ns)) as f64 * 1e-9 * fps).round() as usize)
    }

    /// Every frame in order, numbered from 0.
    pub fn read_all(&mut self, mut f: impl FnMut(usize, &RgbFrame) -> Result<(), String>) -> Result<usize, DecodeError> {
        self.pipeline.set_state(gst::State::Playing).map_err(|_| self.bus_error())?;
        let mut count = 0;
        // The prerolled frame is also the first sample pulled in PLAYING.
        self.preroll = None;
        while let Some(frame) = self.next_frame()? {
            f(count, &frame).map_err(|why| self.fail(why))?;
            count += 1;
        }
        if count == 0 {
            return Err(self.fail("no video frames decoded"));
        }
        Ok(count)
    }

    /// The frames at `indices` (any order, repeats allowed), each passed
    /// once to `f`. Runs of nearby indices are decoded after one seek;
    /// needs a seekable stream with a known frame rate. Indices past the
    /// real end of the stream are not delivered: the caller repeats the last
    /// frame, as PySlowFast does for short videos.
    pub fn read_frames(&mut self, indices: &[usize], mut f: impl FnMut(usize, &RgbFrame) -> Result<(), String>) -> Result<(), DecodeError> {
        let Some(fps) = self.probe.fps.filter(|_| self.probe.seekable) else {
            return Err(self.fail("cannot seek: the stream is not seekable or has no frame rate"));
        };
        let mut wanted: Vec<usize> = indices.to_vec();
        wanted.sort_unstable();
        wanted.dedup();
        // Decoding through a gap of up to two seconds is cheaper than a
        // seek, which restarts at the previous keyframe.
        let gap = (2.0 * fps).ceil() as usize;
        let mut ranges: Vec<(usize, usize)> = Vec::new();
        for &i in &wanted {
            match ranges.last_mut() {
                Some((_, end)) if i <= *end + gap => *end = i,
                _ => ranges.push((i, i)),
            }
        }
        self.pipeline.set_state(gst::State::Playing).map_err(|_| self.bus_error())?;
        let mut next_wanted = wanted.iter().peekable();
        for (start, end) in ranges {
            // Seek to the keyframe at or before frame `start` (half a frame
            // early so rounding never lands after it) and number frames by
            // counting from that keyframe: its timestamp is reliable, while
            // the timestamps a decoder gives the frames after a seek are not
            // always (Xvid packed B-frames in AVI come out shifted by one).
            let t = self.base_ns as f64 + ((start as f64 - 0.5).max(0.0) / fps) * 1e9;
            self.pipeline
                .seek_simple(
                    gst::SeekFlags::FLUSH | gst::SeekFlags::KEY_UNIT | gst::SeekFlags::SNAP_BEFORE,
                    gst::ClockTime::from_nseconds(t as u64),
                )
                .map_err(|e| self.fail(format!("seeking to frame {start}: {e}")))?;
            let mut idx = None;
            while let Some(frame) = self.next_frame()? {
                let i = match idx {
                    Some(prev) => prev + 1,
                    None => self.index_of(&frame, fps).ok_or_else(|| self.fail("a frame without a timestamp; cannot seek by frame"))?,
                };
                idx = Some(i);
                while next_wanted.peek().is_some_and(|&&w| w < i) {
                    next_wanted.next();
                }
                if next_wanted.peek() == Some(&&i) {
                    f(i, &frame).map_err(|why| self.fail(why))?;
                    next_wanted.next();
                }
                if i >= end {
                    break;
                }
            }
        }
        Ok(())
    }

    /// The first error posted on the bus, or a generic one, preceded by
    /// what is wrong with the file when the streams found say it: no video
    /// stream, or no stream at all (a truncated or damaged file).
    fn bus_error(&self) -> DecodeError {
        let error = self.pipeline.bus().and_then(|bus| bus.pop_filtered(&[gst::MessageType::Error])).and_then(|msg| match msg.view() {
            gst::MessageView::Error(e) => {
                let debug = e.debug().map(|d| d.lines().last().unwrap_or_default().trim().to_string()).unwrap_or_default();
                Some(if debug.is_empty() { e.error().to_string() } else { format!("{} ({debug})", e.error()) })
            }
            _ => None,
        });
        let streams = self.streams.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let what = if streams.is_empty() {
            Some("no stream could be read: the file is truncated, damaged or not a video".to_string())
        } else if !streams.iter().any(|s| s.starts_with("video/")) {
            Some(format!("no video stream in it (it holds only {})", streams.join(", ")))
        } else {
            None
        };
        let why = match (what, error) {
            (Some(what), Some(error)) => format!("{what}; GStreamer: {error}"),
            (Some(what), None) => what,
            (None, Some(error)) => error,
            (None, None) => "decoding stopped before a frame without an error: the file is probably truncated".to_string(),
        };
        self.fail(why)
    }
}
