//! Reading the wanted frames: a seek to the key frame before each run of
//! them (runs further apart than `RUN_GAP_S` get their own seek), frames
//! numbered from their timestamps (or counted, where packets carry none),
//! and every seek checked to have landed where decoding can start. A seek
//! that did not (MPEG-TS has no index: its demuxer seeks by position) makes
//! the rest of the video decode from the start instead, since frames built
//! on missing references are corrupt. Videos whose container states no
//! duration are decoded whole.

use std::cell::Cell;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use gst::prelude::*;
use gst_video::prelude::*;

use super::pipeline::{self, Opened, Pipeline};
use super::skip::{self, Wanted, frame_index};
use super::{DecodeError, PACKING};
use crate::preprocess::RgbSource;

/// Decoding through a gap of up to this long is cheaper than a seek, which
/// restarts at the key frame before the next run.
const RUN_GAP_S: f64 = 2.0;

/// One decoded frame, as `PACKING` with rows `stride` bytes apart; valid
/// while the callback it is handed to runs.
pub struct Frame<'a> {
    /// Counted from the first frame of the video.
    pub index: usize,
    pub width: usize,
    pub height: usize,
    /// The buffer's presentation time.
    pub pts_ns: Option<u64>,
    stride: usize,
    plane: &'a [u8],
}

impl<'a> Frame<'a> {
    /// Row `y`'s pixels, without the padding after them.
    pub fn row(&self, y: usize) -> &'a [u8] {
        &self.plane[y * self.stride..][..self.width * PACKING.bytes()]
    }

    /// Appends the frame's rows, packed, to `out`.
    pub fn extend_packed(&self, out: &mut Vec<u8>) {
        for y in 0..self.height {
            out.extend_from_slice(self.row(y));
        }
    }
}

impl RgbSource for Frame<'_> {
    fn width(&self) -> usize {
        self.width
    }
    fn height(&self) -> usize {
        self.height
    }
    #[inline]
    fn rgb(&self, x: usize, y: usize) -> [f32; 3] {
        let p = &self.plane[y * self.stride + x * PACKING.bytes()..][..3];
        [f32::from(p[0]), f32::from(p[1]), f32::from(p[2])]
    }
}

/// A video's frame count and rate, found without decoding it all.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Probe {
    /// From the container's duration; counted by decoding when it states
    /// none.
    pub frames: usize,
    /// From the caps, when they state one.
    pub fps: Option<f64>,
}

/// What reading a video told.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Read {
    pub probe: Probe,
    /// Seeks made to runs of wanted frames; 0 when the video was decoded
    /// from its start.
    pub seeks: usize,
}

/// Frame count and rate of `location`, checked to hold a decodable frame:
/// what `trainer check-data` runs up front.
pub fn probe(location: impl AsRef<Path>) -> Result<Probe, DecodeError> {
    let (p, o) = pipeline::open(location.as_ref(), false)?;
    let fps = (o.fps > 0.0).then_some(o.fps);
    match o.frames {
        Some(frames) => Ok(Probe { frames, fps }),
        None => {
            let counted = read_runs(&p, &o, None, Start::FirstFrame, &mut |_| Ok(()))?;
            Ok(Probe { frames: counted.delivered, fps })
        }
    }
}

/// Hands `each` the frames `pick(frames, fps)` lists (any order, repeats
/// allowed), once each, in order. Wanted frames past the real end of the
/// stream (a file shorter than its container says) are not handed over.
/// Where the container states no duration, every frame is handed over and
/// counted instead, and `pick` is not called.
pub fn read_frames(
    location: impl AsRef<Path>,
    pick: impl FnOnce(usize, Option<f64>) -> Vec<usize>,
    mut each: impl FnMut(Frame<'_>) -> Result<(), String>,
) -> Result<Read, DecodeError> {
    let location = location.as_ref();
    let (p, o) = pipeline::open(location, true)?;
    let fps = (o.fps > 0.0).then_some(o.fps);
    let Some(frames) = o.frames else {
        let counted = read_runs(&p, &o, None, Start::FirstFrame, &mut each)?;
        return Ok(Read { probe: Probe { frames: counted.delivered, fps }, seeks: 0 });
    };
    let mut wanted = pick(frames, fps);
    wanted.sort_unstable();
    wanted.dedup();
    let probe = Probe { frames, fps };
    if wanted.is_empty() {
        return Ok(Read { probe, seeks: 0 });
    }
    let last = Cell::new(None);
    let mut deliver = |f: Frame<'_>| {
        last.set(Some(f.index));
        each(f)
    };
    let first = read_runs(&p, &o, Some(&wanted), Start::AtRuns, &mut deliver)?;
    if !first.missed_key_frame {
        return Ok(Read { probe, seeks: first.seeks });
    }
    drop(p);
    // The frames before the missed run were read right; the rest comes
    // from decoding the video from its start.
    let rest: Vec<usize> = wanted.into_iter().filter(|&i| last.get().is_none_or(|l| i > l)).collect();
    let (p, o) = pipeline::open(location, true)?;
    read_runs(&p, &o, Some(&rest), Start::FirstFrame, &mut deliver)?;
    Ok(Read { probe, seeks: 0 })
}

/// Hands `each` every frame of `location`, in order, numbered by their
/// timestamps; the frame count is the number handed over.
pub fn read_all(location: impl AsRef<Path>, mut each: impl FnMut(Frame<'_>) -> Result<(), String>) -> Result<Read, DecodeError> {
    let (p, o) = pipeline::open(location.as_ref(), true)?;
    let counted = read_runs(&p, &o, None, Start::FirstFrame, &mut each)?;
    Ok(Read { probe: Probe { frames: counted.delivered, fps: (o.fps > 0.0).then_some(o.fps) }, seeks: 0 })
}

/// Where decoding starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// At the key frame before each run of wanted frames.
    AtRuns,
    /// At the first frame, once.
    FirstFrame,
}

struct Runs {
    delivered: usize,
    seeks: usize,
    /// A seek missed a key frame (see `Pipeline::mid_gop`); nothing from
    /// that run was handed over.
    missed_key_frame: bool,
}

/// Runs of `wanted` (sorted, unique) at most `gap` frames apart.
fn runs_of(wanted: &[usize], gap: usize) -> Vec<(usize, usize)> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for &i in wanted {
        match runs.last_mut() {
            Some((_, end)) if i <= *end + gap => *end = i,
            _ => runs.push((i, i)),
        }
    }
    runs
}

/// The frames numbered in `wanted` (all frames when `None`), in order.
fn read_runs(
    p: &Pipeline,
    o: &Opened,
    wanted: Option<&[usize]>,
    start: Start,
    each: &mut dyn FnMut(Frame<'_>) -> Result<(), String>,
) -> Result<Runs, DecodeError> {
    let frame_ns = if o.fps > 0.0 { 1e9 / o.fps } else { 0.0 };
    let counted = p.untimed.load(Ordering::Relaxed);
    let runs = match wanted {
        Some(w) if start == Start::AtRuns && frame_ns > 0.0 => runs_of(w, (RUN_GAP_S * o.fps).ceil() as usize),
        Some(w) => vec![(w.first().copied().unwrap_or(0), w.last().copied().unwrap_or(0))],
        None => vec![(0, usize::MAX)],
    };
    let set = wanted.map(|w| Arc::new(Wanted::new(w, o.origin_ns, frame_ns)));
    if let (Some(w), true, false) = (&set, frame_ns > 0.0, counted) {
        skip::install(p, w.clone());
    }
    if let Some(gate) = &p.gate {
        gate.open();
    }
    let mut out = Runs { delivered: 0, seeks: 0, missed_key_frame: false };
    let mut size = None;
    for (k, &(lo, hi)) in runs.iter().enumerate() {
        if let Some(w) = &set {
            w.next_run(lo);
        }
        // A gated pipeline must seek once at least: the seek's flush drops
        // what the gate held.
        let to_run = lo > 0 && frame_ns > 0.0 && start == Start::AtRuns;
        if to_run || (k == 0 && p.gate.is_some()) {
            // Seek positions are in stream time, which an MP4 edit list
            // shifts against the frames' timestamps: aim two frames early
            // without the origin, so the target is never past the first
            // wanted frame. To the key frame before it, not ACCURATE: the
            // segment then starts at the key frame, so the frames up to the
            // run have running times the decoder can be told are late.
            let target = if to_run { ((lo as f64 - 2.0).max(0.0) * frame_ns) as u64 } else { 0 };
            p.pipeline
                .seek_simple(
                    gst::SeekFlags::FLUSH | gst::SeekFlags::KEY_UNIT | gst::SeekFlags::SNAP_BEFORE,
                    gst::ClockTime::from_nseconds(target),
                )
                .map_err(|_| p.error(&format!("seek to frame {lo} refused")))?;
            out.seeks += usize::from(to_run);
        }
        if k == 0 {
            p.pipeline.set_state(gst::State::Playing).map_err(|_| p.error("cannot start decoding"))?;
        }
        let mut next = lo;
        let mut started = false;
        loop {
            // The end of the stream: later runs are past it too.
            let Some(sample) = p.pull()? else { return finish(p, out) };
            // The probe on the decoder's input judged the seek's first
            // packet before the decoder could output anything after it.
            if to_run && !started && p.mid_gop.load(Ordering::Relaxed) {
                out.missed_key_frame = true;
                return Ok(out);
            }
            let (Some(caps), Some(buffer)) = (sample.caps(), sample.buffer()) else { continue };
            // Frame number from the timestamp, so frames a decoder let
            // through before the run are dropped, not miscounted. Counted
            // frames start from the first one after the seek: the key
            // frame, whose time comes from the container.
            let index = match (buffer.pts(), frame_ns > 0.0) {
                (Some(pts), true) if !counted || !started => frame_index(pts, o.origin_ns, frame_ns),
                _ => next,
            };
            started = true;
            next = index + 1;
            let unwanted = set.as_ref().is_some_and(|w| !w.contains(index));
            if index < lo || (unwanted && index < hi) {
                continue;
            }
            if index > hi {
                break;
            }
            let info = gst_video::VideoInfo::from_caps(caps).map_err(|e| p.fail(e))?;
            let frame =
                gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info).map_err(|e| p.fail(format!("mapping a frame: {e}")))?;
            let (width, height) = (info.width() as usize, info.height() as usize);
            if *size.get_or_insert((width, height)) != (width, height) {
                return Err(p.fail(format!("frame size changed mid-stream to {width}x{height}")));
            }
            let stride = frame.plane_stride()[0] as usize;
            let plane = frame.plane_data(0).map_err(|e| p.fail(e))?;
            each(Frame { index, width, height, pts_ns: buffer.pts().map(|t| t.nseconds()), stride, plane }).map_err(|why| p.fail(why))?;
            out.delivered += 1;
            if index == hi {
                break;
            }
        }
    }
    finish(p, out)
}

fn finish(p: &Pipeline, out: Runs) -> Result<Runs, DecodeError> {
    if out.delivered == 0 {
        return Err(p.error("no video frames decoded"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn videos() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/videos")
    }

    const CLIPS: [&str; 4] = ["mmaction2_test.mp4", "mmaction2_demo.mp4", "mmaction2_test.avi", "archery_paddlevideo_example.avi"];

    fn gst_launch(args: &str) {
        let out = std::process::Command::new("gst-launch-1.0").arg("-q").args(args.split_whitespace()).output().unwrap();
        assert!(out.status.success(), "gst-launch-1.0 {args}: {}", String::from_utf8_lossy(&out.stderr));
    }

    #[test]
    fn wanted_frames_split_into_runs_at_gaps_wider_than_the_limit() {
        assert_eq!(runs_of(&[0, 2, 4, 100, 102, 300], 60), vec![(0, 4), (100, 102), (300, 300)]);
        assert_eq!(runs_of(&[10, 70], 60), vec![(10, 70)]);
        assert_eq!(runs_of(&[10, 71], 60), vec![(10, 10), (71, 71)]);
        assert!(runs_of(&[], 60).is_empty());
    }

    /// The gate tells what prerolling tells: frame rate, frame count, frame
    /// 0's time and whether packets are untimed, on H.264 with B-frames,
    /// MPEG-4 in AVI with and without packed B-frames, and a video shorter
    /// than the packets the gate looks at.
    #[test]
    fn the_gate_tells_what_prerolling_tells() {
        let dir = tempfile::tempdir().unwrap();
        let short = dir.path().join("five_frames.mp4");
        gst_launch(&format!(
            "videotestsrc num-buffers=5 ! video/x-raw,width=64,height=64,framerate=30/1 ! x264enc ! mp4mux ! filesink location={}",
            short.display()
        ));
        for video in CLIPS.iter().map(|n| videos().join(n)).chain([short]) {
            let told = |gated| {
                let (p, o) = pipeline::open(&video, gated).unwrap();
                (o.fps, o.frames, o.origin_ns, p.untimed.load(Ordering::Relaxed))
            };
            assert_eq!(told(true), told(false), "{}", video.display());
        }
    }

    /// Seeks in MP4 and AVI land on the key frame before the clip; in
    /// MPEG-TS (no index) they may not, and that is noticed.
    #[test]
    fn a_seek_that_misses_key_frames_is_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let ts = dir.path().join("remuxed.ts");
        let mp4 = videos().join("mmaction2_test.mp4");
        gst_launch(&format!("filesrc location={} ! qtdemux ! h264parse ! mpegtsmux ! filesink location={}", mp4.display(), ts.display()));
        let clip: Vec<usize> = (100..164).step_by(2).collect();
        let missed = |video: &Path| {
            let (p, o) = pipeline::open(video, true).unwrap();
            read_runs(&p, &o, Some(&clip), Start::AtRuns, &mut |_| Ok(())).unwrap().missed_key_frame
        };
        for video in CLIPS.iter().map(|n| videos().join(n)) {
            assert!(!missed(&video), "{}", video.display());
        }
        assert!(missed(&ts));
    }
}
