//! Decoding only the frames a clip needs: the pipeline prerolls to learn
//! the frame rate and duration, seeks (accurately) to the clip's first
//! frame and stops after its last, instead of decoding the whole video as
//! PySlowFast's PyAV path also avoids. Videos without a usable duration are
//! decoded from the start.

use std::path::Path;

use gst::prelude::*;
use gst_video::prelude::*;

use super::SampleError;
use super::source::RawClip;

/// Frames and rate of a video, found without decoding it all.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Probe {
    pub frames: usize,
    pub fps: f64,
}

const TIMEOUT_S: u64 = 20;
/// A broken file normally fails to preroll in milliseconds, but about one
/// time in seven a pipeline built after earlier ones in the same process
/// neither prerolls nor posts anything for it; a fresh pipeline then
/// answers at once. So prerolling gives up early and tries once more.
const PREROLL_TIMEOUT_S: u64 = 3;
const PREROLL_TRIES: usize = 2;

struct Pipeline {
    pipeline: gst::Pipeline,
    sink: gst_app::AppSink,
    name: String,
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

impl Pipeline {
    fn open(path: &Path) -> Result<Self, SampleError> {
        let name = path.display().to_string();
        let fail = |why: String| SampleError::new(name.clone(), why);
        let meta = std::fs::metadata(path).map_err(|e| fail(format!("cannot open: {e}")))?;
        if !meta.is_file() {
            return Err(fail("not a file".into()));
        }
        if meta.len() == 0 {
            return Err(fail("empty file (0 bytes)".into()));
        }
        gst::init().map_err(|e| fail(format!("GStreamer init: {e}")))?;
        let abs = path.canonicalize().map_err(|e| fail(e.to_string()))?;
        let uri = gst::glib::filename_to_uri(&abs, None).map_err(|e| fail(e.to_string()))?;
        // Only video streams are exposed, so an audio track never stalls the
        // pipeline; a file without one fails at preroll.
        let desc = format!(
            "uridecodebin name=dec uri=\"{uri}\" expose-all-streams=false caps=\"video/x-raw(ANY)\" ! videoconvert ! \
             video/x-raw,format=RGB ! appsink name=sink sync=false max-buffers=8"
        );
        let pipeline = gst::parse::launch(&desc)
            .map_err(|e| fail(format!("building the decoder: {e}")))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| fail("not a pipeline".into()))?;
        let sink = pipeline
            .by_name("sink")
            .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
            .ok_or_else(|| fail("appsink missing".into()))?;
        Ok(Pipeline { pipeline, sink, name })
    }

    fn error(&self, fallback: &str) -> SampleError {
        let why = self
            .pipeline
            .bus()
            .and_then(|bus| bus.pop_filtered(&[gst::MessageType::Error]))
            .and_then(|msg| match msg.view() {
                gst::MessageView::Error(e) => Some(e.error().to_string()),
                _ => None,
            })
            .unwrap_or_else(|| fallback.to_string());
        SampleError::new(self.name.clone(), why)
    }

    /// Waits for the pipeline to preroll, an error or the end of the
    /// stream, whichever comes first: a demuxer that gives up on a broken
    /// file posts an error but never finishes the state change.
    fn wait_preroll(&self) -> Result<(), SampleError> {
        let bus = self.pipeline.bus().ok_or_else(|| self.error("pipeline has no bus"))?;
        let fail = |why: String| SampleError::new(self.name.clone(), why);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(PREROLL_TIMEOUT_S);
        while std::time::Instant::now() < deadline {
            while let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(50)) {
                match msg.view() {
                    gst::MessageView::AsyncDone(_) => return Ok(()),
                    gst::MessageView::Error(e) => return Err(fail(format!("no decodable video stream: {}", e.error()))),
                    gst::MessageView::Eos(_) => return Err(fail("no video frames before the end of the stream".into())),
                    _ => {}
                }
            }
            // A failed state change does not always come with a message.
            match self.pipeline.state(gst::ClockTime::ZERO) {
                (Err(_), _, _) => return Err(fail("no decodable video stream (the decoder gave up)".into())),
                (Ok(gst::StateChangeSuccess::Success), gst::State::Paused, _) => return Ok(()),
                _ => {}
            }
        }
        Err(fail(format!("no video frame within {PREROLL_TIMEOUT_S} s")))
    }

    /// Prerolls; returns the frame rate, the duration and the timestamp of
    /// the first frame (frame numbers count from it).
    fn preroll(&self) -> Result<Opened, SampleError> {
        match self.pipeline.set_state(gst::State::Paused) {
            Err(_) => return Err(self.error("cannot start decoding")),
            Ok(gst::StateChangeSuccess::Async) => self.wait_preroll()?,
            Ok(_) => {}
        }
        let sample = self
            .sink
            .try_pull_preroll(gst::ClockTime::from_seconds(TIMEOUT_S))
            .ok_or_else(|| self.error("no video frame (no video stream, or a truncated file)"))?;
        let caps = sample.caps().ok_or_else(|| self.error("decoded frame without caps"))?;
        let info = gst_video::VideoInfo::from_caps(caps).map_err(|e| SampleError::new(self.name.clone(), e))?;
        let fps = if info.fps().numer() > 0 { info.fps().numer() as f64 / info.fps().denom() as f64 } else { 0.0 };
        let origin_ns = sample.buffer().and_then(|b| b.pts()).map(|t| t.nseconds()).unwrap_or(0);
        let duration_ns = self.pipeline.query_duration::<gst::ClockTime>().map(|d| d.nseconds());
        let frames = match duration_ns {
            Some(ns) if fps > 0.0 && ns > origin_ns => Some((((ns - origin_ns) as f64 * fps / 1e9).round() as usize).max(1)),
            _ => None,
        };
        Ok(Opened { fps, frames, origin_ns })
    }

    /// The next decoded sample, `None` at the end of the stream; an error
    /// posted on the bus ends the wait at once.
    fn pull(&self) -> Result<Option<gst::Sample>, SampleError> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(TIMEOUT_S);
        loop {
            if let Some(sample) = self.sink.try_pull_sample(gst::ClockTime::from_mseconds(200)) {
                return Ok(Some(sample));
            }
            if self.sink.is_eos() {
                return Ok(None);
            }
            let error = self.pipeline.bus().and_then(|bus| bus.pop_filtered(&[gst::MessageType::Error]));
            if let Some(msg) = error {
                if let gst::MessageView::Error(e) = msg.view() {
                    return Err(SampleError::new(self.name.clone(), format!("decoding failed: {}", e.error())));
                }
            }
            if std::time::Instant::now() > deadline {
                return Err(SampleError::new(self.name.clone(), format!("decoding stalled for {TIMEOUT_S} s")));
            }
        }
    }
}

/// What prerolling told about a video.
struct Opened {
    fps: f64,
    /// Frames from the duration, when the container states one.
    frames: Option<usize>,
    origin_ns: u64,
}

fn open_prerolled(path: &Path) -> Result<(Pipeline, Opened), SampleError> {
    let mut last = None;
    for _ in 0..PREROLL_TRIES {
        let p = Pipeline::open(path)?;
        match p.preroll() {
            Ok(o) => return Ok((p, o)),
            Err(e) if e.why.starts_with("no video frame within") => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| SampleError::new(path.display().to_string(), "cannot preroll")))
}

/// Frame count and rate of `path`; the checks `check-data` runs up front.
pub fn probe(path: &Path) -> Result<Probe, SampleError> {
    let (p, o) = open_prerolled(path)?;
    let fps = if o.fps > 0.0 { o.fps } else { 30.0 };
    match o.frames {
        Some(frames) => Ok(Probe { frames, fps }),
        None => Ok(Probe { frames: decode_range(&p, &o, 0, usize::MAX)?.len(), fps }),
    }
}

/// Decodes the frames `pick(total_frames, fps)` asks for, one clip per
/// returned index list.
pub fn decode_clips(path: &Path, pick: impl Fn(usize, f64) -> Vec<Vec<usize>>) -> Result<Vec<RawClip>, SampleError> {
    let (p, o) = open_prerolled(path)?;
    let (total, frames) = match o.frames {
        Some(total) => {
            let clips = pick(total, if o.fps > 0.0 { o.fps } else { 30.0 });
            let lo = clips.iter().flatten().copied().min().unwrap_or(0);
            let hi = clips.iter().flatten().copied().max().unwrap_or(0);
            (total, decode_range(&p, &o, lo, hi)?)
        }
        None => {
            let all = decode_range(&p, &o, 0, usize::MAX)?;
            (all.len(), all)
        }
    };
    let fps = o.fps;
    let fps = if fps > 0.0 { fps } else { 30.0 };
    let (w, h) = (frames[0].2, frames[0].3);
    Ok(pick(total, fps)
        .into_iter()
        .map(|idx| {
            let mut data = Vec::with_capacity(idx.len() * w * h * 3);
            for i in &idx {
                // The latest frame shown at or before index `i`: a stream
                // shorter than its header says (truncated) repeats its last
                // decoded frame, as the reference clamps indices.
                let k = frames.partition_point(|f| f.0 <= *i).max(1) - 1;
                data.extend_from_slice(&frames[k].1);
            }
            RawClip { data, frames: idx.len(), height: h, width: w }
        })
        .collect())
}

/// A decoded frame: (frame number, packed RGB, width, height).
type Frame = (usize, Vec<u8>, usize, usize);

/// Frames `lo..=hi` (by presentation time), in order.
fn decode_range(p: &Pipeline, o: &Opened, lo: usize, hi: usize) -> Result<Vec<Frame>, SampleError> {
    let frame_ns = if o.fps > 0.0 { 1e9 / o.fps } else { 0.0 };
    if lo > 0 && frame_ns > 0.0 {
        // Seek positions are in stream time, which an MP4 edit list shifts
        // against the frames' timestamps: aim two frames early without the
        // origin, so the target is never past the first wanted frame (the
        // frames before it are dropped by number below).
        let target = gst::ClockTime::from_nseconds(((lo as f64 - 2.0).max(0.0) * frame_ns) as u64);
        p.pipeline
            .seek_simple(gst::SeekFlags::FLUSH | gst::SeekFlags::ACCURATE, target)
            .map_err(|_| p.error("seek refused"))?;
    }
    p.pipeline.set_state(gst::State::Playing).map_err(|_| p.error("cannot start decoding"))?;
    let mut out = Vec::new();
    let mut next = lo;
    loop {
        let Some(sample) = p.pull()? else { break };
        let (Some(caps), Some(buffer)) = (sample.caps(), sample.buffer()) else { continue };
        // Frame number from the timestamp, so frames before the seek target
        // (a decoder that cannot seek exactly) are dropped, not miscounted.
        let index = match (buffer.pts(), frame_ns > 0.0) {
            (Some(pts), true) => (pts.nseconds().saturating_sub(o.origin_ns) as f64 / frame_ns).round() as usize,
            _ => next,
        };
        next = index + 1;
        if index < lo {
            continue;
        }
        if index > hi {
            break;
        }
        let info = gst_video::VideoInfo::from_caps(caps).map_err(|e| SampleError::new(p.name.clone(), e))?;
        let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info)
            .map_err(|e| SampleError::new(p.name.clone(), format!("mapping a frame: {e}")))?;
        let (w, h) = (info.width() as usize, info.height() as usize);
        let stride = frame.plane_stride()[0] as usize;
        let plane = frame.plane_data(0).map_err(|e| SampleError::new(p.name.clone(), e))?;
        let mut data = Vec::with_capacity(w * h * 3);
        for row in 0..h {
            data.extend_from_slice(&plane[row * stride..row * stride + w * 3]);
        }
        if out.last().is_some_and(|f: &Frame| f.2 != w || f.3 != h) {
            return Err(SampleError::new(p.name.clone(), format!("frame size changed mid-stream to {w}x{h}")));
        }
        out.push((index, data, w, h));
        if index == hi {
            break;
        }
    }
    if out.is_empty() {
        return Err(p.error("no video frames decoded"));
    }
    Ok(out)
}
