//! Learning what a clip's seek needs without decoding anything first.
//!
//! Prerolling a pipeline decodes and converts the first frames only to
//! tell the frame rate and when frame 0 is shown; the seek to the clip
//! then flushes them and decodes from the clip's key frame again. That was
//! about 6 ms of every training clip (40-160 ms; prerolling as a whole took
//! 9-14 ms). A gate on the demuxer's video output reads the
//! same facts off the first packets (the caps' frame rate, the packets'
//! presentation times) and holds the stream there, before the decoder,
//! until the seek flushes it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use gst::prelude::*;

/// How a buffer probe drops a buffer. `Drop` would be the natural answer,
/// but the bindings take the buffer out of the probe's info to hand it to
/// the closure, and GStreamer 1.22 then unreferences the emptied slot once
/// more (a CRITICAL per dropped frame); `Handled` lets the bindings release
/// the buffer and tells the pad the push succeeded, which is what dropping
/// means.
pub(super) const DROP: gst::PadProbeReturn = gst::PadProbeReturn::Handled;

/// Packets looked at (and dropped) before holding the stream: enough to see
/// whether packets go without presentation times (MPEG-4 in AVI with packed
/// B-frames leaves every other one untimed) and to find the frame shown
/// first, which B-frames can put behind later packets.
const LOOK: usize = 8;

/// The bus message the gate posts once it holds the stream.
pub(super) const HELD: &str = "slowfast-gate-held";

/// What the first packets of the video stream told.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Headers {
    /// From the caps; 0 when they state none.
    pub fps: f64,
    /// The earliest presentation time among them: frame 0's.
    pub origin_ns: u64,
    /// Packets go without presentation times and frames may be reordered,
    /// so the decoder's guessed times cannot number the frames (see
    /// `Pipeline::untimed`).
    pub untimed: bool,
}

#[derive(Default)]
pub(super) struct Gate {
    seen: Mutex<Seen>,
    open: AtomicBool,
}

#[derive(Default)]
struct Seen {
    packets: usize,
    origin: Option<gst::ClockTime>,
    untimed: bool,
    /// A B-VOP among MPEG-4 Part 2 packets.
    b_frames: bool,
    headers: Option<Headers>,
}

impl Gate {
    /// Puts the gate on parsebin's video pad, before any packet leaves it.
    pub fn install(self: &Arc<Self>, pad: &gst::Pad) {
        let gate = self.clone();
        let mask = gst::PadProbeType::BLOCK | gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM;
        pad.add_probe(mask, move |pad, info| gate.on_data(pad, info));
    }

    fn on_data(&self, pad: &gst::Pad, info: &gst::PadProbeInfo) -> gst::PadProbeReturn {
        if self.open.load(Ordering::Acquire) {
            return gst::PadProbeReturn::Remove;
        }
        let Ok(mut seen) = self.seen.lock() else { return gst::PadProbeReturn::Remove };
        match &info.data {
            Some(gst::PadProbeData::Buffer(buffer)) => {
                seen.packets += 1;
                match buffer.pts() {
                    Some(t) => seen.origin = Some(seen.origin.map_or(t, |o| o.min(t))),
                    None => seen.untimed = true,
                }
                if !seen.b_frames && is_mpeg4_part2(pad) {
                    seen.b_frames = buffer.map_readable().is_ok_and(|m| has_b_vop(&m));
                }
                if seen.packets < LOOK {
                    return DROP;
                }
                seen.finish(pad);
                // Held (a blocking probe's Ok) until the seek flushes it.
                gst::PadProbeReturn::Ok
            }
            // A video shorter than LOOK packets (with none, the end goes on
            // and the pipeline prerolls empty: no frames).
            Some(gst::PadProbeData::Event(e)) if e.type_() == gst::EventType::Eos && seen.packets > 0 => {
                seen.finish(pad);
                DROP
            }
            _ => gst::PadProbeReturn::Pass,
        }
    }

    /// What the packets told, once the gate holds the stream.
    pub fn headers(&self) -> Option<Headers> {
        self.seen.lock().ok().and_then(|s| s.headers)
    }

    /// Lets packets through from now on. The packet held is not: the
    /// flushing seek that must follow drops it.
    pub fn open(&self) {
        self.open.store(true, Ordering::Release);
    }
}

impl Seen {
    fn finish(&mut self, pad: &gst::Pad) {
        if self.headers.is_some() {
            return;
        }
        let fps = pad
            .current_caps()
            .and_then(|caps| caps.structure(0).and_then(|s| s.get::<gst::Fraction>("framerate").ok()))
            .filter(|f| f.numer() > 0 && f.denom() > 0)
            .map_or(0.0, |f| f.numer() as f64 / f.denom() as f64);
        let origin_ns = self.origin.map_or(0, |t| t.nseconds());
        // AVI gives presentation times to key frames only. Without B-frames
        // the decoder's times (from decoding order) are right; MPEG-4 Part 2
        // says whether there are any, other codecs are taken to reorder.
        let untimed = self.untimed && (self.b_frames || !is_mpeg4_part2(pad));
        self.headers = Some(Headers { fps, origin_ns, untimed });
        if let Some(element) = pad.parent_element() {
            let _ = element.post_message(gst::message::Application::builder(gst::Structure::new_empty(HELD)).src(&element).build());
        }
    }
}

fn is_mpeg4_part2(pad: &gst::Pad) -> bool {
    pad.current_caps()
        .and_then(|caps| caps.structure(0).map(|s| s.name() == "video/mpeg" && s.get::<i32>("mpegversion") == Ok(4)))
        .unwrap_or(false)
}

/// Whether a packet holds a B-VOP: a VOP start code (00 00 01 B6) whose
/// next two bits, `vop_coding_type`, are 2. Packed bitstreams put a P- and
/// a B-VOP in one packet.
fn has_b_vop(data: &[u8]) -> bool {
    data.windows(5).any(|w| w[..4] == [0, 0, 1, 0xb6] && w[4] >> 6 == 2)
}

#[cfg(test)]
mod tests {
    use super::has_b_vop;

    #[test]
    fn b_vops_are_found_in_packed_packets() {
        let vop = |kind: u8| [0, 0, 1, 0xb6, kind << 6 | 0x15, 0x7f];
        assert!(!has_b_vop(&vop(0)));
        assert!(!has_b_vop(&vop(1)));
        assert!(has_b_vop(&vop(2)));
        let packed: Vec<u8> = vop(1).into_iter().chain([0x33; 9]).chain(vop(2)).collect();
        assert!(has_b_vop(&packed));
        assert!(!has_b_vop(&[0, 0, 1, 0xb3, 0x80]));
    }
}
