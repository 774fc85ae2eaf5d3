//! The decoding pipeline: `filesrc` (or `urisourcebin` for a URI) into
//! `parsebin`, the decoder picked for the first video stream, `videoconvert`
//! to RGBx and an appsink; prerolling it with a time-out, pulling frames,
//! and saying what is wrong with a file that gives none.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use gst::prelude::*;

use super::DecodeError;
use super::gate::{self, Gate};
use super::h264::H264Framing;

/// How long decoding may stall before the video is given up.
const TIMEOUT_S: u64 = 20;
/// A broken file normally fails to preroll in milliseconds, but about one
/// time in seven a pipeline built after earlier ones in the same process
/// neither prerolls nor posts anything for it; a fresh pipeline then
/// answers at once. So prerolling gives up early and tries once more.
/// (A URI gets the whole time-out: the network may be slow.)
const PREROLL_TIMEOUT_S: u64 = 3;
const PREROLL_TRIES: usize = 2;

pub(super) struct Pipeline {
    pub pipeline: gst::Pipeline,
    sink: gst_app::AppSink,
    /// The video decoder linked to the first video stream, once it is.
    decoder: Arc<Mutex<Option<gst::glib::WeakRef<gst::Element>>>>,
    /// Whether a buffer reached the decoder without a presentation time
    /// (AVI: MPEG-4 Part 2 with packed B-frames). The decoder then guesses
    /// the times of what it outputs, and those repeat and skip, so frames
    /// are numbered by counting instead.
    pub untimed: Arc<AtomicBool>,
    /// The first packet the decoder got after the latest seek was no point
    /// decoding can start at: the demuxer sought by position, without an
    /// index (MPEG-TS), and the frames decoded from there are corrupt.
    /// Checked on gated pipelines, the ones sought to clips.
    pub mid_gop: Arc<AtomicBool>,
    /// The media types of the streams the demuxer found.
    streams: Arc<Mutex<Vec<String>>>,
    /// Holds the video stream before the decoder until the clip's seek
    /// (see `gate`); `None` when the pipeline prerolls instead.
    pub gate: Option<Arc<Gate>>,
    pub name: String,
    location: std::path::PathBuf,
    uri: bool,
}

/// What prerolling told about a video.
pub(super) struct Opened {
    /// From the caps; 0 when they state none.
    pub fps: f64,
    /// Frames from the duration, when the container states one.
    pub frames: Option<usize>,
    /// Frame 0's timestamp: frame numbers count from it.
    pub origin_ns: u64,
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

impl Pipeline {
    fn open(location: &Path, gated: bool) -> Result<Self, DecodeError> {
        let name = location.display().to_string();
        let fail = |why: String| DecodeError::new(name.clone(), why);
        let uri = location.to_str().filter(|s| s.contains("://"));
        if uri.is_none() {
            let meta = std::fs::metadata(location).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => fail("no such file".into()),
                _ => fail(format!("cannot open: {e}")),
            })?;
            if !meta.is_file() {
                return Err(fail("not a file".into()));
            }
            if meta.len() == 0 {
                return Err(fail("empty file (0 bytes)".into()));
            }
        }
        gst::init().map_err(|e| fail(format!("GStreamer init: {e}")))?;
        // parsebin, not decodebin: decodebin puts a multiqueue (one more
        // thread, a hand-over per packet) between demuxer and decoder, which
        // on a loader worker's single core costs more than it buffers. The
        // decoder runs in the demuxer's thread instead; only the first video
        // stream is linked, so an audio track is never decoded.
        let source = if uri.is_some() { "urisourcebin name=src" } else { "filesrc name=src" };
        let desc = format!(
            "{source} ! parsebin name=parse  videoconvert name=convert ! \
             video/x-raw,format=RGBx ! appsink name=sink sync=false max-buffers=8"
        );
        let pipeline = gst::parse::launch(&desc)
            .map_err(|e| fail(format!("building the decoder: {e}")))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| fail("not a pipeline".into()))?;
        let by_name = |n: &str| pipeline.by_name(n).ok_or_else(|| fail(format!("{n} missing")));
        match uri {
            Some(uri) => by_name("src")?.set_property("uri", uri),
            None => by_name("src")?.set_property("location", location),
        }
        let (parse, convert) = (by_name("parse")?, by_name("convert")?);
        let sink = by_name("sink")?.downcast::<gst_app::AppSink>().map_err(|_| fail("appsink missing".into()))?;
        let decoder = Arc::new(Mutex::new(None));
        let untimed = Arc::new(AtomicBool::new(false));
        let streams = Arc::new(Mutex::new(Vec::new()));
        let gate = gated.then(|| Arc::new(Gate::default()));
        let mid_gop = Arc::new(AtomicBool::new(false));
        let (found, untimed_input, seen, gate_video, landed) =
            (decoder.clone(), untimed.clone(), streams.clone(), gate.clone(), mid_gop.clone());
        let bin = pipeline.downgrade();
        parse.connect_pad_added(move |_, pad| {
            let Some(bin) = bin.upgrade() else { return };
            let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
            let media = caps.structure(0).map_or_else(|| "an unknown stream".to_string(), |s| s.name().to_string());
            seen.lock().unwrap_or_else(|p| p.into_inner()).push(media.clone());
            if !is_video(&media) {
                return;
            }
            let video = Video { convert: &convert, decoder: &found, untimed: &untimed_input, mid_gop: &landed, gate: gate_video.as_ref() };
            if let Err(why) = link_video(&bin, pad, &caps, &media, video) {
                gst::element_error!(bin, gst::StreamError::CodecNotFound, ("{}", why));
            }
        });
        Ok(Pipeline {
            pipeline,
            sink,
            decoder,
            untimed,
            mid_gop,
            streams,
            gate,
            name,
            location: location.to_path_buf(),
            uri: uri.is_some(),
        })
    }

    pub fn fail(&self, why: impl std::fmt::Display) -> DecodeError {
        DecodeError::new(self.name.clone(), why)
    }

    /// The first error posted on the bus (with GStreamer's own detail), or
    /// `fallback`, preceded by what is wrong with the file when the
    /// streams found say it: no video stream, or none at all (a truncated
    /// or damaged file).
    pub fn error(&self, fallback: &str) -> DecodeError {
        let posted = self.pipeline.bus().and_then(|bus| bus.pop_filtered(&[gst::MessageType::Error])).and_then(|msg| match msg.view() {
            gst::MessageView::Error(e) => Some(e.error().to_string()),
            _ => None,
        });
        self.fail(self.explain(posted, fallback))
    }

    fn explain(&self, posted: Option<String>, fallback: &str) -> String {
        let streams = self.streams.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let what = if streams.is_empty() {
            Some("no stream could be read: the file is truncated, damaged or not a video".to_string())
        } else if !streams.iter().any(|s| is_video(s)) {
            Some(format!("no video stream in it (it holds only {})", streams.join(", ")))
        } else {
            None
        };
        match (what, posted) {
            (Some(what), Some(posted)) => format!("{what}; GStreamer: {posted}"),
            (Some(what), None) => what,
            (None, Some(posted)) => format!("{fallback}: {posted}"),
            (None, None) => fallback.to_string(),
        }
    }

    /// Waits for the pipeline to preroll (or its gate to hold the video
    /// stream), an error or the end of the stream, whichever comes first: a
    /// demuxer that gives up on a broken file posts an error but never
    /// finishes the state change.
    fn wait_preroll(&self) -> Result<(), DecodeError> {
        let bus = self.pipeline.bus().ok_or_else(|| self.fail("pipeline has no bus"))?;
        let limit = if self.uri { TIMEOUT_S } else { PREROLL_TIMEOUT_S };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(limit);
        while std::time::Instant::now() < deadline {
            while let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(50)) {
                match msg.view() {
                    gst::MessageView::AsyncDone(_) => return Ok(()),
                    gst::MessageView::Application(m) if m.structure().is_some_and(|s| s.name() == gate::HELD) => return Ok(()),
                    gst::MessageView::Error(e) => {
                        return Err(self.fail(self.explain(Some(e.error().to_string()), "no decodable video stream")));
                    }
                    gst::MessageView::Eos(_) => return Err(self.fail(self.explain(None, "no video frames before the end of the stream"))),
                    _ => {}
                }
            }
            // A failed state change does not always come with a message.
            match self.pipeline.state(gst::ClockTime::ZERO) {
                (Err(_), _, _) => return Err(self.error("no decodable video stream (the decoder gave up)")),
                (Ok(gst::StateChangeSuccess::Success), gst::State::Paused, _) => return Ok(()),
                _ => {}
            }
        }
        let waited = format!("no video frame within {limit} s");
        let streams_found = !self.streams.lock().unwrap_or_else(|p| p.into_inner()).is_empty();
        Err(DecodeError::timed_out(
            self.name.clone(),
            if streams_found { waited.clone() } else { self.explain(Some(waited.clone()), &waited) },
        ))
    }

    /// Prerolls (or waits for the gate); returns the frame rate, the
    /// duration and the timestamp of the first frame.
    fn preroll(&self) -> Result<Opened, DecodeError> {
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
            return self.opened(held.fps, held.origin_ns);
        }
        let sample = self
            .sink
            .try_pull_preroll(gst::ClockTime::from_seconds(TIMEOUT_S))
            .ok_or_else(|| self.error("no video frame (no video stream, or a truncated file)"))?;
        let caps = sample.caps().ok_or_else(|| self.fail("decoded frame without caps"))?;
        let info = gst_video::VideoInfo::from_caps(caps).map_err(|e| self.fail(e))?;
        let fps = if info.fps().numer() > 0 { info.fps().numer() as f64 / info.fps().denom() as f64 } else { 0.0 };
        let origin_ns = sample.buffer().and_then(|b| b.pts()).map(|t| t.nseconds()).unwrap_or(0);
        self.opened(fps, origin_ns)
    }

    /// With the frame count the container states: its duration times the
    /// frame rate. (Not counted from frame 0's time: an MP4 edit list
    /// shifts the timestamps but not the duration, and PySlowFast samples
    /// from PyAV's `stream.frames`, the sample count, which this matches.)
    /// MPEG-TS states no duration of its own: the one estimated from clock
    /// references is a few frames off, so its packets are counted instead.
    fn opened(&self, fps: f64, origin_ns: u64) -> Result<Opened, DecodeError> {
        if self.has_element("tsdemux") {
            let frames = count_video_packets(&self.location)?;
            return Ok(Opened { fps, frames: Some(frames).filter(|&n| n > 0), origin_ns });
        }
        let duration_ns = self.pipeline.query_duration::<gst::ClockTime>().map(|d| d.nseconds()).filter(|&ns| ns > 0);
        let frames = duration_ns.filter(|_| fps > 0.0).map(|ns| ((ns as f64 * fps / 1e9).round() as usize).max(1));
        Ok(Opened { fps, frames, origin_ns })
    }

    /// Whether an element made by `factory` runs in the pipeline (inside
    /// parsebin too).
    fn has_element(&self, factory: &str) -> bool {
        self.pipeline.iterate_recurse().into_iter().flatten().any(|e| e.factory().is_some_and(|f| f.name() == factory))
    }

    /// The decoder linked to the video stream, if it is still there.
    pub fn decoder(&self) -> Option<gst::Element> {
        self.decoder.lock().ok().and_then(|d| d.as_ref().and_then(|w| w.upgrade()))
    }

    /// The next decoded sample, `None` at the end of the stream; an error
    /// posted on the bus ends the wait at once.
    pub fn pull(&self) -> Result<Option<gst::Sample>, DecodeError> {
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
                return Err(self.fail(format!("decoding failed: {}", e.error())));
            }
            if std::time::Instant::now() > deadline {
                return Err(self.fail(format!("decoding stalled for {TIMEOUT_S} s")));
            }
        }
    }
}

/// A pipeline ready to seek, with what it told of the video: prerolled
/// (the first frame decoded, which `probe` wants as proof), or `gated`.
pub(super) fn open(location: &Path, gated: bool) -> Result<(Pipeline, Opened), DecodeError> {
    let mut last = None;
    for _ in 0..PREROLL_TRIES {
        let p = Pipeline::open(location, gated)?;
        match p.preroll() {
            Ok(o) => return Ok((p, o)),
            Err(e) if e.kind == super::DecodeErrorKind::TimedOut => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| DecodeError::new(location.display().to_string(), "cannot preroll")))
}

/// The packets of the first video stream, counted by demuxing and parsing
/// only (a parser hands on one frame a packet).
fn count_video_packets(location: &Path) -> Result<usize, DecodeError> {
    let name = location.display().to_string();
    let fail = |why: String| DecodeError::new(name.clone(), why);
    let pipeline = gst::parse::launch("filesrc name=src ! parsebin name=parse")
        .map_err(|e| fail(format!("building the packet counter: {e}")))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| fail("not a pipeline".into()))?;
    let (Some(src), Some(parse)) = (pipeline.by_name("src"), pipeline.by_name("parse")) else {
        return Err(fail("packet counter incomplete".into()));
    };
    src.set_property("location", location);
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (counted, video_seen) = (count.clone(), Arc::new(AtomicBool::new(false)));
    let bin = pipeline.downgrade();
    // Every stream goes to a sink (an unlinked one would stop the demuxer);
    // the first video stream's buffers are counted on the way.
    parse.connect_pad_added(move |_, pad| {
        let Some(bin) = bin.upgrade() else { return };
        let Ok(sink) = gst::ElementFactory::make("fakesink").property("sync", false).property("async", false).build() else { return };
        if bin.add(&sink).is_err() || sink.sync_state_with_parent().is_err() {
            return;
        }
        let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
        let video = caps.structure(0).is_some_and(|s| is_video(s.name()));
        if video && !video_seen.swap(true, Ordering::Relaxed) {
            let counted = counted.clone();
            pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                counted.fetch_add(1, Ordering::Relaxed);
                gst::PadProbeReturn::Ok
            });
        }
        if let Some(target) = sink.static_pad("sink") {
            let _ = pad.link(&target);
        }
    });
    let result = (|| {
        pipeline.set_state(gst::State::Playing).map_err(|_| fail("cannot start counting packets".into()))?;
        let bus = pipeline.bus().ok_or_else(|| fail("pipeline has no bus".into()))?;
        let done = [gst::MessageType::Eos, gst::MessageType::Error];
        match bus.timed_pop_filtered(gst::ClockTime::from_seconds(TIMEOUT_S), &done).as_ref().map(|m| m.view()) {
            Some(gst::MessageView::Eos(_)) => Ok(count.load(Ordering::Relaxed)),
            Some(gst::MessageView::Error(e)) => Err(fail(format!("counting packets: {}", e.error()))),
            _ => Err(fail(format!("counting packets took over {TIMEOUT_S} s"))),
        }
    })();
    let _ = pipeline.set_state(gst::State::Null);
    result
}

fn is_video(media: &str) -> bool {
    media.starts_with("video/") || media.starts_with("image/")
}

/// Where `link_video` links a video stream and what it records of it.
struct Video<'a> {
    convert: &'a gst::Element,
    decoder: &'a Mutex<Option<gst::glib::WeakRef<gst::Element>>>,
    untimed: &'a Arc<AtomicBool>,
    mid_gop: &'a Arc<AtomicBool>,
    gate: Option<&'a Arc<Gate>>,
}

/// Links the first video stream parsebin exposes to a decoder (none for
/// raw video) and on to `convert`, through the gate if there is one;
/// later ones stay unlinked.
fn link_video(bin: &gst::Pipeline, pad: &gst::Pad, caps: &gst::Caps, media: &str, video: Video) -> Result<(), String> {
    let Video { convert, decoder: found, untimed, mid_gop, gate } = video;
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
    let factory = decoder_for(caps).ok_or_else(|| format!("no decoder installed for {media}"))?;
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
        // to its clips, and after every seek the first packet is checked to
        // be one decoding can start at (parsers flag I-frames as key
        // frames, which in H.264 they need not be).
        Some(_) => {
            let (mid_gop, after_flush) = (mid_gop.clone(), AtomicBool::new(false));
            sink.add_probe(gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_FLUSH, move |pad, info| {
                match &info.data {
                    Some(gst::PadProbeData::Event(e)) if e.type_() == gst::EventType::FlushStop => {
                        after_flush.store(true, Ordering::Relaxed)
                    }
                    Some(gst::PadProbeData::Buffer(b)) if after_flush.swap(false, Ordering::Relaxed) => {
                        let start = match pad.current_caps().and_then(|caps| H264Framing::from_caps(&caps)) {
                            Some(framing) => b.map_readable().is_ok_and(|m| framing.random_access(&m)),
                            None => !b.flags().contains(gst::BufferFlags::DELTA_UNIT),
                        };
                        mid_gop.store(!start, Ordering::Relaxed);
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
