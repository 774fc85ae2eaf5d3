//! Having only the wanted frames decoded and passed on, as far as the
//! codec allows: a clip samples every second to eighth frame, and the rest
//! need not be decoded, or at least not colour-converted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use gst::prelude::*;

use super::gate::DROP;
use super::h264::H264Framing;
use super::pipeline::Pipeline;

/// How many frames before the first wanted one of a run the decoder stops
/// skipping: the largest H.264 reorder depth (16 frames in the decoded
/// picture buffer).
const SKIP_MARGIN: usize = 16;

/// The frame numbers clips sample, and how timestamps map to them.
pub(super) struct Wanted {
    /// `frames[i]`: frame `i` is sampled.
    frames: Vec<bool>,
    origin_ns: u64,
    frame_ns: f64,
    /// Until when (stream time) frames are reported late to the decoder:
    /// `SKIP_MARGIN` frames before the run of wanted frames now decoded.
    late_until_ns: AtomicU64,
}

impl Wanted {
    /// From sorted frame numbers.
    pub fn new(sorted: &[usize], origin_ns: u64, frame_ns: f64) -> Wanted {
        let mut frames = vec![false; sorted.last().map_or(0, |&hi| hi + 1)];
        for &i in sorted {
            frames[i] = true;
        }
        Wanted { frames, origin_ns, frame_ns, late_until_ns: AtomicU64::new(0) }
    }

    pub fn index(&self, pts: gst::ClockTime) -> usize {
        frame_index(pts, self.origin_ns, self.frame_ns)
    }

    pub fn contains(&self, i: usize) -> bool {
        self.frames.get(i).copied().unwrap_or(false)
    }

    /// The run of wanted frames decoded next starts at frame `first`.
    pub fn next_run(&self, first: usize) {
        let late = first.saturating_sub(SKIP_MARGIN) as f64;
        self.late_until_ns.store(self.origin_ns + (late * self.frame_ns) as u64, Ordering::Relaxed);
    }
}

/// The number of the frame shown at `pts`, counted from the first frame.
pub(super) fn frame_index(pts: gst::ClockTime, origin_ns: u64, frame_ns: f64) -> usize {
    (pts.nseconds().saturating_sub(origin_ns) as f64 / frame_ns).round() as usize
}

/// H.264 frames no other frame refers to are dropped before the decoder
/// when no clip samples them (see `h264`): the B-frames of most streams,
/// often half of them. For other codecs the frames from the key frame up
/// to the run are announced to the decoder as already late, the way a late
/// video sink would (a QoS event), and the libav decoders then skip those
/// no other frame refers to; a decoder applies the verdict on one frame to
/// the next frame it is handed, so "late" ends `SKIP_MARGIN` frames (the
/// most an H.264 decoder can reorder) before the first wanted one. The
/// event goes with each buffer because decoders forget QoS state on
/// flushes and state changes. Every frame unwanted that still comes out is
/// dropped at the decoder's output, before colour conversion.
pub(super) fn install(p: &Pipeline, wanted: Arc<Wanted>) {
    let Some(decoder) = p.decoder() else { return };
    let (Some(sink), Some(src)) = (decoder.static_pad("sink"), decoder.static_pad("src")) else { return };
    // Output dropping is ours (below), in one place.
    if decoder.has_property("qos") {
        decoder.set_property("qos", false);
    }
    let h264 = sink.current_caps().and_then(|caps| H264Framing::from_caps(&caps));
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
        let until = gst::ClockTime::from_nseconds(input.late_until_ns.load(Ordering::Relaxed));
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
