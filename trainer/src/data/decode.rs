//! Decoding only the frames a clip needs: the pipeline learns the frame
//! rate and duration (from the first packets, held before the decoder by a
//! `gate`; `probe` prerolls, decoding the first frame), seeks to the key
//! frame before the clip's first frame and stops after its last, instead
//! of decoding the whole video (PySlowFast's PyAV path also seeks). On the
//! way, frames nobody samples are skipped by the decoder where the codec
//! allows (see `Pipeline::select`) and never colour-converted. Videos
//! without a usable duration, and those whose seeks miss key frames
//! (MPEG-TS has no index), are decoded from the start.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use gst::prelude::*;
use gst_video::prelude::*;

use super::gate::{self, DROP, Gate};
use super::raw::RawClip;
use super::reference::H264Framing;
use super::{SampleError, SampleErrorKind};
use runtime::preprocess::Packing;

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
/// How many frames before the first wanted one the decoder stops skipping
/// (see `Pipeline::select`): the largest H.264 reorder depth (16 frames in
/// the decoded picture buffer).
const SKIP_MARGIN: usize = 16;

struct Pipeline {
    pipeline: gst::Pipeline,
    sink: gst_app::AppSink,
    /// The video decoder linked to the first video stream, once it is.
    decoder: Arc<Mutex<Option<gst::glib::WeakRef<gst::Element>>>>,
    /// Whether a buffer reached the decoder without a presentation time
    /// (AVI: MPEG-4 Part 2 with packed B-frames). The decoder then guesses
    /// the times of what it outputs, and those repeat and skip, so frames
    /// are numbered by counting instead.
    untimed: Arc<AtomicBool>,
    /// The first packet the decoder got after the seek to the clip was no
    /// point decoding can start at: the demuxer sought by position, without
    /// an index (MPEG-TS), and the frames decoded from there are corrupt.
    /// Checked on gated pipelines, the ones sought to clips.
    mid_gop: Arc<AtomicBool>,
    /// What streams the demuxer found: any at all, any video.
    streams: Arc<Streams>,
    /// Holds the video stream before the decoder until the clip's seek
    /// (see `gate`); `None` when the pipeline prerolls instead.
    gate: Option<Arc<Gate>>,
    name: String,
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

impl Pipeline {
    fn open(path: &Path, gated: bool) -> Result<Self, SampleError> {
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
        // parsebin, not decodebin: decodebin puts a multiqueue (one more
        // thread, a hand-over per packet) between demuxer and decoder, which
        // on a loader worker's single core costs more than it buffers. The
        // decoder runs in the demuxer's thread instead; only the first video
        // stream is linked, so an audio track is never decoded.
        // RGBx, not RGB: videoconvert has a direct path from the decoders'
        // YUV to it (the same values, in half the time), and the crop reads
        // it with one load a pixel.
        let desc = "filesrc name=src ! parsebin name=parse  videoconvert name=convert ! \
             video/x-raw,format=RGBx ! appsink name=sink sync=false max-buffers=8";
        let pipeline = gst::parse::launch(desc)
            .map_err(|e| fail(format!("building the decoder: {e}")))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| fail("not a pipeline".into()))?;
        let by_name = |n: &str| pipeline.by_name(n).ok_or_else(|| fail(format!("{n} missing")));
        by_name("src")?.set_property("location", path);
        let (parse, convert) = (by_name("parse")?, by_name("convert")?);
        let sink = by_name("sink")?.downcast::<gst_app::AppSink>().map_err(|_| fail("appsink missing".into()))?;
        let decoder = Arc::new(Mutex::new(None));
        let untimed = Arc::new(AtomicBool::new(false));
        let streams = Arc::new(Streams::default());
        let gate = gated.then(|| Arc::new(Gate::default()));
        let mid_gop = Arc::new(AtomicBool::new(false));
        let (found, untimed_input, seen, gate_video, landed) =
            (decoder.clone(), untimed.clone(), streams.clone(), gate.clone(), mid_gop.clone());
        let bin = pipeline.downgrade();
        parse.connect_pad_added(move |_, pad| {
            seen.any.store(true, Ordering::Relaxed);
            let Some(bin) = bin.upgrade() else { return };
            let video = Video {
                convert: &convert,
                decoder: &found,
                untimed: &untimed_input,
                mid_gop: &landed,
                seen: &seen.video,
                gate: gate_video.as_ref(),
            };
            if let Err(why) = link_video(&bin, pad, video) {
                gst::element_error!(bin, gst::StreamError::CodecNotFound, ("{}", why));
            }
        });
        Ok(Pipeline { pipeline, sink, decoder, untimed, mid_gop, streams, gate, name })
    }

    /// Whether the file has streams, none of them video.
    fn no_video(&self) -> bool {
        self.streams.any.load(Ordering::Relaxed) && !self.streams.video.load(Ordering::Relaxed)
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

    /// Waits for the pipeline to preroll (or its gate to hold the video
    /// stream), an error or the end of the stream, whichever comes first: a
    /// demuxer that gives up on a broken file posts an error but never
    /// finishes the state change.
    fn wait_preroll(&self) -> Result<(), SampleError> {
        let bus = self.pipeline.bus().ok_or_else(|| self.error("pipeline has no bus"))?;
        let fail = |why: String| SampleError::new(self.name.clone(), why);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(PREROLL_TIMEOUT_S);
        while std::time::Instant::now() < deadline {
            while let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(50)) {
                match msg.view() {
                    gst::MessageView::AsyncDone(_) => return Ok(()),
                    gst::MessageView::Application(m) if m.structure().is_some_and(|s| s.name() == gate::HELD) => return Ok(()),
                    gst::MessageView::Error(_) if self.no_video() => return Err(fail("no video stream".into())),
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
        Err(SampleError::timed_out(self.name.clone(), format!("no video frame within {PREROLL_TIMEOUT_S} s")))
    }

    /// Prerolls (or waits for the gate); returns the frame rate, the
    /// duration and the timestamp of the first frame (frame numbers count
    /// from it).
    fn preroll(&self) -> Result<Opened, SampleError> {
        match self.pipeline.set_state(gst::State::Paused) {
            Err(_) => return Err(self.error("cannot start decoding")),
            Ok(gst::StateChangeSuccess::Async) => self.wait_preroll()?,
            Ok(_) => {}
        }
        if let Some(gate) = &self.gate {
            let held = gate.headers().ok_or_else(|| self.error("no video frames"))?;
            if held.untimed {
                self.untimed.store(true, Ordering::Relaxed);
            }
            return Ok(self.opened(held.fps, held.origin_ns));
        }
        let sample = self
            .sink
            .try_pull_preroll(gst::ClockTime::from_seconds(TIMEOUT_S))
            .ok_or_else(|| self.error("no video frame (no video stream, or a truncated file)"))?;
        let caps = sample.caps().ok_or_else(|| self.error("decoded frame without caps"))?;
        let info = gst_video::VideoInfo::from_caps(caps).map_err(|e| SampleError::new(self.name.clone(), e))?;
        let fps = if info.fps().numer() > 0 { info.fps().numer() as f64 / info.fps().denom() as f64 } else { 0.0 };
        let origin_ns = sample.buffer().and_then(|b| b.pts()).map(|t| t.nseconds()).unwrap_or(0);
        Ok(self.opened(fps, origin_ns))
    }

    /// With the frame count from the container's duration.
    fn opened(&self, fps: f64, origin_ns: u64) -> Opened {
        let duration_ns = self.pipeline.query_duration::<gst::ClockTime>().map(|d| d.nseconds());
        let frames = match duration_ns {
            Some(ns) if fps > 0.0 && ns > origin_ns => Some((((ns - origin_ns) as f64 * fps / 1e9).round() as usize).max(1)),
            _ => None,
        };
        Opened { fps, frames, origin_ns }
    }

    /// Has only the `wanted` frames decoded and passed on, as far as the
    /// codec allows. H.264 frames no other frame refers to are dropped
    /// before the decoder when no clip samples them (see `reference`): the
    /// B-frames of most streams, often half of them. For other codecs the
    /// frames from the key frame up to the clip are announced to the
    /// decoder as already late, the way a late video sink would (a QoS
    /// event), and the libav decoders then skip those no other frame
    /// refers to; a decoder applies the verdict on one frame to the next
    /// frame it is handed, so "late" ends `SKIP_MARGIN` frames (the most an
    /// H.264 decoder can reorder) before the first wanted one. The event
    /// goes with each buffer because decoders forget QoS state on flushes
    /// and state changes. Every frame unwanted that still comes out is
    /// dropped at the decoder's output, before colour conversion.
    fn select(&self, wanted: Arc<Wanted>) {
        let decoder = self.decoder.lock().ok().and_then(|d| d.as_ref().and_then(|w| w.upgrade()));
        let Some(decoder) = decoder else { return };
        let (Some(sink), Some(src)) = (decoder.static_pad("sink"), decoder.static_pad("src")) else { return };
        // Output dropping is ours (below), in one place.
        if decoder.has_property("qos") {
            decoder.set_property("qos", false);
        }
        let h264 = sink.current_caps().and_then(|caps| H264Framing::from_caps(&caps));
        let first = wanted.frames.iter().position(|&w| w).unwrap_or(0);
        let late_until = first.saturating_sub(SKIP_MARGIN) as f64;
        let until = gst::ClockTime::from_nseconds(wanted.origin_ns + (late_until * wanted.frame_ns) as u64);
        let upstream = src.clone();
        let input = wanted.clone();
        sink.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
            let Some(buffer) = info.buffer() else { return gst::PadProbeReturn::Ok };
            let Some(pts) = buffer.pts() else { return gst::PadProbeReturn::Ok };
            if let Some(framing) = h264 {
                let unwanted = !input.contains(input.index(pts));
                let droppable = || buffer.map_readable().is_ok_and(|m| framing.droppable(&m));
                if unwanted && droppable() {
                    return DROP;
                }
                return gst::PadProbeReturn::Ok;
            }
            let earliest = if pts < until {
                let segment = pad.sticky_event::<gst::event::Segment>(0);
                segment.and_then(|e| e.segment().downcast_ref::<gst::ClockTime>().and_then(|s| s.to_running_time(until)))
            } else {
                None
            };
            // "In time" is a running time of 0, not "no timing": on the
            // latter the 1.22 libav decoders keep the last mode, skipping.
            let earliest = earliest.unwrap_or(gst::ClockTime::ZERO);
            upstream.send_event(gst::event::Qos::new(gst::QOSType::Underflow, 1.0, 0, earliest));
            gst::PadProbeReturn::Ok
        });
        src.add_probe(gst::PadProbeType::BUFFER, move |_, info| match info.buffer().and_then(|b| b.pts()) {
            Some(pts) if !wanted.contains(wanted.index(pts)) => DROP,
            _ => gst::PadProbeReturn::Ok,
        });
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
            if let Some(msg) = error
                && let gst::MessageView::Error(e) = msg.view()
            {
                return Err(SampleError::new(self.name.clone(), format!("decoding failed: {}", e.error())));
            }
            if std::time::Instant::now() > deadline {
                return Err(SampleError::new(self.name.clone(), format!("decoding stalled for {TIMEOUT_S} s")));
            }
        }
    }
}

/// Where `link_video` links a video stream and what it records of it.
struct Video<'a> {
    convert: &'a gst::Element,
    decoder: &'a Mutex<Option<gst::glib::WeakRef<gst::Element>>>,
    untimed: &'a Arc<AtomicBool>,
    mid_gop: &'a Arc<AtomicBool>,
    /// Set once a video stream is seen.
    seen: &'a AtomicBool,
    gate: Option<&'a Arc<Gate>>,
}

/// Links the first video stream parsebin exposes to a decoder (none for
/// raw video) and on to `convert`, through the gate if there is one;
/// other streams stay unlinked.
fn link_video(bin: &gst::Pipeline, pad: &gst::Pad, video: Video) -> Result<(), String> {
    let Video { convert, decoder: found, untimed, mid_gop, seen: video, gate } = video;
    let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
    let Some(media) = caps.structure(0).map(|s| s.name().to_string()) else { return Ok(()) };
    if !(media.starts_with("video/") || media.starts_with("image/")) {
        return Ok(());
    }
    video.store(true, Ordering::Relaxed);
    let Some(target) = convert.static_pad("sink") else { return Err("videoconvert has no sink".into()) };
    if target.is_linked() {
        return Ok(());
    }
    if let Some(gate) = gate {
        gate.install(pad);
    }
    if media == "video/x-raw" {
        return pad.link(&target).map(|_| ()).map_err(|e| format!("linking raw video: {e:?}"));
    }
    let factory = decoder_for(&caps).ok_or_else(|| format!("no decoder installed for {media}"))?;
    let decoder = factory.create().build().map_err(|e| format!("creating {}: {e}", factory.name()))?;
    // Loader workers are the parallelism: a decoder's own threads would
    // only compete with the other workers for the cores.
    if decoder.has_property("max-threads") {
        decoder.set_property("max-threads", 1i32);
    }
    bin.add(&decoder).map_err(|e| e.to_string())?;
    let sink = decoder.static_pad("sink").ok_or("decoder without sink pad")?;
    match gate {
        // Prerolling feeds the decoder its first frames, so this is known
        // before any clip is decoded.
        None => {
            let untimed = untimed.clone();
            sink.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                if info.buffer().is_some_and(|b| b.pts().is_none()) {
                    untimed.store(true, Ordering::Relaxed);
                    return gst::PadProbeReturn::Remove;
                }
                gst::PadProbeReturn::Ok
            });
        }
        // The gate finds out the above itself; a gated pipeline is sought
        // to its clip, once, and checks that the first packet after the
        // seek is one decoding can start at (parsers flag I-frames as key
        // frames, which in H.264 they need not be).
        Some(_) => {
            let (mid_gop, after_flush) = (mid_gop.clone(), AtomicBool::new(false));
            sink.add_probe(gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_FLUSH, move |pad, info| {
                match &info.data {
                    Some(gst::PadProbeData::Event(e)) if e.type_() == gst::EventType::FlushStop => {
                        after_flush.store(true, Ordering::Relaxed)
                    }
                    Some(gst::PadProbeData::Buffer(b)) if after_flush.load(Ordering::Relaxed) => {
                        let start = match pad.current_caps().and_then(|caps| H264Framing::from_caps(&caps)) {
                            Some(framing) => b.map_readable().is_ok_and(|m| framing.random_access(&m)),
                            None => !b.flags().contains(gst::BufferFlags::DELTA_UNIT),
                        };
                        mid_gop.store(!start, Ordering::Relaxed);
                        return gst::PadProbeReturn::Remove;
                    }
                    _ => {}
                }
                gst::PadProbeReturn::Ok
            });
        }
    }
    decoder.link(convert).map_err(|e| format!("linking {}: {e}", factory.name()))?;
    decoder.sync_state_with_parent().map_err(|e| format!("starting {}: {e}", factory.name()))?;
    pad.link(&sink).map_err(|e| format!("linking {}: {e:?}", factory.name()))?;
    if let Ok(mut d) = found.lock() {
        *d = Some(decoder.downgrade());
    }
    Ok(())
}

/// The highest-ranked decoder for `caps`. Looking one up walks the whole
/// plugin registry and compares caps with every decoder's, which costs as
/// much as decoding a few frames, so the answer is kept per stream format.
fn decoder_for(caps: &gst::CapsRef) -> Option<gst::ElementFactory> {
    static CHOSEN: Mutex<Option<HashMap<String, gst::ElementFactory>>> = Mutex::new(None);
    // The format without the stream's own header bytes (`codec_data`),
    // which differ per file but never change which decoder fits.
    let mut format = caps.to_owned();
    format.make_mut().iter_mut().for_each(|s| s.remove_field("codec_data"));
    let key = format.to_string();
    if let Some(f) = CHOSEN.lock().ok().and_then(|c| c.as_ref().and_then(|m| m.get(&key).cloned())) {
        return Some(f);
    }
    let factories = gst::ElementFactory::factories_with_type(
        gst::ElementFactoryType::DECODER | gst::ElementFactoryType::MEDIA_VIDEO | gst::ElementFactoryType::MEDIA_IMAGE,
        gst::Rank::MARGINAL,
    );
    // One that takes the caps as they are; failing that, one that takes
    // some of them: a demuxer that exposes its pad before the stream's caps
    // are settled (MPEG-TS) offers every H.264 framing, and the parser
    // settles on the one the decoder takes once they are linked. (Not
    // "some" first: VP8 caps without `codec-alpha` intersect the alpha
    // decoder's, which ranks higher but decodes only alpha streams.)
    let best = |fits: &dyn Fn(&gst::ElementFactory) -> bool| {
        factories.iter().filter(|f| fits(f)).min_by_key(|f| std::cmp::Reverse(f.rank())).cloned()
    };
    let factory = best(&|f| f.can_sink_all_caps(caps)).or_else(|| best(&|f| f.can_sink_any_caps(caps)))?;
    if let Ok(mut chosen) = CHOSEN.lock() {
        chosen.get_or_insert_with(HashMap::new).insert(key, factory.clone());
    }
    Some(factory)
}

/// Which streams a demuxer exposed, so that a file with none to decode is
/// told apart from one whose video cannot be decoded.
#[derive(Default)]
struct Streams {
    any: AtomicBool,
    video: AtomicBool,
}

/// What prerolling told about a video.
struct Opened {
    fps: f64,
    /// Frames from the duration, when the container states one.
    frames: Option<usize>,
    origin_ns: u64,
}

/// A pipeline ready to seek, with what it told of the video: prerolled
/// (the first frame decoded, which `probe` wants as proof), or `gated`.
fn open_for_seek(path: &Path, gated: bool) -> Result<(Pipeline, Opened), SampleError> {
    let mut last = None;
    for _ in 0..PREROLL_TRIES {
        let p = Pipeline::open(path, gated)?;
        match p.preroll() {
            Ok(o) => return Ok((p, o)),
            Err(e) if e.kind == SampleErrorKind::TimedOut => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| SampleError::new(path.display().to_string(), "cannot preroll")))
}

/// Frame count and rate of `path`; the checks `check-data` runs up front.
pub fn probe(path: &Path) -> Result<Probe, SampleError> {
    let (p, o) = open_for_seek(path, false)?;
    let fps = if o.fps > 0.0 { o.fps } else { 30.0 };
    match o.frames {
        Some(frames) => Ok(Probe { frames, fps }),
        None => Ok(Probe { frames: decode_frames(&p, &o, None, Seek::ToStart)?.numbers.len(), fps }),
    }
}

/// Decodes the frames `pick(total_frames, fps)` asks for, one clip per
/// returned index list.
pub fn decode_clips(path: &Path, pick: impl Fn(usize, f64) -> Vec<Vec<usize>>) -> Result<Vec<RawClip>, SampleError> {
    let mut read = decode_wanted(path, &pick, Seek::ToClip)?;
    if read.mid_gop {
        // The seek landed between key frames, so the frames decoded from
        // there were built on missing references: decode from the start.
        read = decode_wanted(path, &pick, Seek::ToStart)?;
    }
    let Read { total, frames, fps, .. } = read;
    let (w, h) = (frames.width, frames.height);
    let mut clips = pick(total, fps);
    // One clip of exactly the frames decoded (training): the clip is the
    // decoded buffer itself.
    if let [idx] = clips.as_slice()
        && *idx == frames.numbers
    {
        return Ok(vec![RawClip { data: frames.data, frames: idx.len(), height: h, width: w, packing: PACKING }]);
    }
    let frame_len = w * h * PACKING.bytes();
    Ok(clips
        .drain(..)
        .map(|idx| {
            let mut data = Vec::with_capacity(idx.len() * frame_len);
            for i in &idx {
                // The latest kept frame at or before index `i`: a stream
                // shorter than its header says (truncated) repeats the last
                // sampled frame it has, as the reference clamps indices.
                let k = frames.numbers.partition_point(|n| n <= i).max(1) - 1;
                data.extend_from_slice(&frames.data[k * frame_len..][..frame_len]);
            }
            RawClip { data, frames: idx.len(), height: h, width: w, packing: PACKING }
        })
        .collect())
}

/// How decoded frames are stored (the appsink's caps).
const PACKING: Packing = Packing::Rgbx;

/// Where decoding starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seek {
    /// At the key frame before the clip, as the container's index says.
    ToClip,
    /// At the first frame: for containers whose seeks miss key frames.
    ToStart,
}

/// A video's frame count and rate, and the frames a pick wanted of it.
struct Read {
    total: usize,
    fps: f64,
    frames: Decoded,
    /// The seek missed a key frame (see `Pipeline::mid_gop`).
    mid_gop: bool,
}

/// The frames `pick(total_frames, fps)` wants of `path`.
fn decode_wanted(path: &Path, pick: &impl Fn(usize, f64) -> Vec<Vec<usize>>, seek: Seek) -> Result<Read, SampleError> {
    let (p, o) = open_for_seek(path, true)?;
    let fps = if o.fps > 0.0 { o.fps } else { 30.0 };
    let (total, frames) = match o.frames {
        Some(total) => {
            let mut wanted: Vec<usize> = pick(total, fps).into_iter().flatten().collect();
            wanted.sort_unstable();
            wanted.dedup();
            (total, decode_frames(&p, &o, Some(&wanted), seek)?)
        }
        None => {
            let all = decode_frames(&p, &o, None, seek)?;
            (all.numbers.len(), all)
        }
    };
    Ok(Read { total, fps, frames, mid_gop: p.mid_gop.load(Ordering::Relaxed) })
}

/// Decoded frames, packed one after another, and their numbers.
struct Decoded {
    numbers: Vec<usize>,
    data: Vec<u8>,
    width: usize,
    height: usize,
}

/// The number of the frame shown at `pts`, counted from the first frame.
fn frame_index(pts: gst::ClockTime, origin_ns: u64, frame_ns: f64) -> usize {
    (pts.nseconds().saturating_sub(origin_ns) as f64 / frame_ns).round() as usize
}

/// The frame numbers clips sample, and how timestamps map to them.
struct Wanted {
    /// `frames[i]`: frame `i` is sampled.
    frames: Vec<bool>,
    origin_ns: u64,
    frame_ns: f64,
}

impl Wanted {
    /// From sorted frame numbers.
    fn new(sorted: &[usize], origin_ns: u64, frame_ns: f64) -> Wanted {
        let mut frames = vec![false; sorted.last().map_or(0, |&hi| hi + 1)];
        for &i in sorted {
            frames[i] = true;
        }
        Wanted { frames, origin_ns, frame_ns }
    }

    fn index(&self, pts: gst::ClockTime) -> usize {
        frame_index(pts, self.origin_ns, self.frame_ns)
    }

    fn contains(&self, i: usize) -> bool {
        self.frames.get(i).copied().unwrap_or(false)
    }
}

/// The frames numbered in `wanted` (sorted, unique; all frames when
/// `None`), in order; frames in between are not kept.
fn decode_frames(p: &Pipeline, o: &Opened, wanted: Option<&[usize]>, seek: Seek) -> Result<Decoded, SampleError> {
    let frame_ns = if o.fps > 0.0 { 1e9 / o.fps } else { 0.0 };
    let counted = p.untimed.load(Ordering::Relaxed);
    let (lo, hi) = match wanted {
        Some(w) => (w.first().copied().unwrap_or(0), w.last().copied().unwrap_or(0)),
        None => (0, usize::MAX),
    };
    let wanted = wanted.map(|w| Arc::new(Wanted::new(w, o.origin_ns, frame_ns)));
    if let (Some(w), true, false) = (&wanted, frame_ns > 0.0, counted) {
        p.select(w.clone());
    }
    if let Some(gate) = &p.gate {
        gate.open();
    }
    // A gated stream is always sought: the seek's flush drops what the gate held.
    let to_clip = lo > 0 && frame_ns > 0.0 && seek == Seek::ToClip;
    if to_clip || p.gate.is_some() {
        // Seek positions are in stream time, which an MP4 edit list shifts
        // against the frames' timestamps: aim two frames early without the
        // origin, so the target is never past the first wanted frame. To
        // the key frame before it, not ACCURATE: the segment then starts at
        // the key frame, so the frames up to the clip have running times
        // the decoder can be told are late (see `select`).
        let target = if to_clip { ((lo as f64 - 2.0).max(0.0) * frame_ns) as u64 } else { 0 };
        let target = gst::ClockTime::from_nseconds(target);
        p.pipeline
            .seek_simple(gst::SeekFlags::FLUSH | gst::SeekFlags::KEY_UNIT | gst::SeekFlags::SNAP_BEFORE, target)
            .map_err(|_| p.error("seek refused"))?;
    }
    p.pipeline.set_state(gst::State::Playing).map_err(|_| p.error("cannot start decoding"))?;
    // Frames are copied once, into one buffer sized for all of them.
    let expected = wanted.as_ref().map_or(1, |w| w.frames.iter().filter(|&&x| x).count());
    let mut out = Decoded { numbers: Vec::with_capacity(expected), data: Vec::new(), width: 0, height: 0 };
    let mut next = lo;
    let mut started = false;
    loop {
        let Some(sample) = p.pull()? else { break };
        let (Some(caps), Some(buffer)) = (sample.caps(), sample.buffer()) else { continue };
        // Frame number from the timestamp, so frames a decoder let through
        // before the clip are dropped, not miscounted. Counted frames start
        // from the first one after the seek: the key frame, whose time
        // comes from the container.
        let index = match (buffer.pts(), frame_ns > 0.0) {
            (Some(pts), true) if !counted || !started => frame_index(pts, o.origin_ns, frame_ns),
            _ => next,
        };
        started = true;
        next = index + 1;
        let unwanted = wanted.as_ref().is_some_and(|w| !w.contains(index));
        if index < lo || (unwanted && index < hi) {
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
        if out.numbers.is_empty() {
            (out.width, out.height) = (w, h);
            out.data.reserve_exact(expected * w * h * PACKING.bytes());
        } else if (out.width, out.height) != (w, h) {
            return Err(SampleError::new(p.name.clone(), format!("frame size changed mid-stream to {w}x{h}")));
        }
        let row_len = w * PACKING.bytes();
        for row in 0..h {
            out.data.extend_from_slice(&plane[row * stride..][..row_len]);
        }
        out.numbers.push(index);
        if index == hi {
            break;
        }
    }
    if out.numbers.is_empty() {
        return Err(p.error("no video frames decoded"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// The gate tells what prerolling tells: frame rate, frame count, frame
    /// 0's time and whether packets are untimed, on H.264 with B-frames,
    /// MPEG-4 in AVI with and without packed B-frames, and a video shorter
    /// than the packets the gate looks at.
    #[test]
    fn the_gate_tells_what_prerolling_tells() {
        let dir = tempfile::tempdir().unwrap();
        let short = dir.path().join("five_frames.mp4");
        let frames: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i * 40; 64 * 64 * 3]).collect();
        crate::synth::write::write_mp4(&frames, 64, &short).unwrap();
        let shared = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/videos");
        let names = ["mmaction2_test.mp4", "mmaction2_demo.mp4", "mmaction2_test.avi", "archery_paddlevideo_example.avi"];
        for video in names.iter().map(|n| shared.join(n)).chain([short]) {
            let told = |gated| {
                let (p, o) = open_for_seek(&video, gated).unwrap();
                (o.fps, o.frames, o.origin_ns, p.untimed.load(Ordering::Relaxed))
            };
            assert_eq!(told(true), told(false), "{}", video.display());
        }
    }

    /// Seeks in MP4 and AVI land on the key frame before the clip; in
    /// MPEG-TS (no index) they may not, and that is noticed.
    #[test]
    fn a_seek_that_misses_key_frames_is_noticed() {
        let shared = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/videos");
        let dir = tempfile::tempdir().unwrap();
        let ts = dir.path().join("remuxed.ts");
        let mp4 = shared.join("mmaction2_test.mp4");
        let remux = std::process::Command::new("gst-launch-1.0")
            .args(["-q", "filesrc", &format!("location={}", mp4.display()), "!", "qtdemux", "!", "h264parse", "!", "mpegtsmux"])
            .args(["!", "filesink", &format!("location={}", ts.display())])
            .status()
            .unwrap();
        assert!(remux.success());
        let clip = |_: usize, _: f64| vec![(100..164).step_by(2).collect()];
        let names = ["mmaction2_test.mp4", "mmaction2_demo.mp4", "mmaction2_test.avi", "archery_paddlevideo_example.avi"];
        for video in names.iter().map(|n| shared.join(n)) {
            assert!(!decode_wanted(&video, &clip, Seek::ToClip).unwrap().mid_gop, "{}", video.display());
        }
        assert!(decode_wanted(&ts, &clip, Seek::ToClip).unwrap().mid_gop);
    }
}
