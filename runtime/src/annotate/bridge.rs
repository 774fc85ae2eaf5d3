//! Hands decoded frames from the current source pipeline to the output
//! pipeline's appsrc, mapping each connection's timestamps onto one output
//! timeline.
//!
//! Files keep their own timestamps (there is one connection). For live
//! sources the first frame of a connection is stamped with the output's
//! running time since the first frame ever (so an outage shows as a gap of
//! its real length), and the following frames keep the source's spacing.
//!
//! Files keep their own timestamps too, made strictly increasing: a
//! repeated or missing timestamp (decoders of packed-B-frame MPEG-4 give
//! them) is replaced by the previous one plus a frame duration, so every
//! decoded frame is a frame the encoder and the muxer take.
//!
//! Caps follow the source: a resolution change mid-stream reaches the
//! element (which restarts its window) and the encoder's scaler, which keeps
//! the first size (rounded up to even, as 4:2:0 H.264 needs).
//!
//! Files are not paced here: the element holds a frame that makes a window
//! due while `max-pending` clips are in inference (`block`).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use gst::prelude::*;

/// Frames a live output may queue before new ones are dropped (and
/// counted) instead of delaying the camera: one second at 30 fps.
const LIVE_QUEUE: u64 = 30;
/// Frames a file may queue: the appsrc blocks decoding beyond this.
pub const FILE_QUEUE: u64 = 4;

pub struct Bridge {
    appsrc: gst_app::AppSrc,
    live: bool,
    /// The capsfilter before the encoder, given the first size.
    encode_size: Option<gst::Element>,
    state: Mutex<State>,
    /// Frames pushed into the output, over all connections.
    pub frames: AtomicU64,
    /// Live frames dropped because the output fell a second behind.
    pub dropped: AtomicU64,
}

#[derive(Default)]
struct State {
    /// Caps of the latest source frame, as they came.
    source_caps: Option<gst::Caps>,
    /// The first caps, which the encoder keeps.
    first_caps: Option<gst::Caps>,
    /// Caps given to the appsrc last.
    caps: Option<gst::Caps>,
    size: Option<(u32, u32)>,
    /// Frame duration from the caps, for timestamps made up (files).
    frame_ns: u64,
    /// Frames of the current connection.
    session_frames: u64,
    last_frame: Option<Instant>,
    /// Output running time of the first frame ever (live).
    origin: Option<gst::ClockTime>,
    /// Output PTS minus source PTS for this connection (live), in ns.
    offset: Option<i128>,
    last_pts: Option<gst::ClockTime>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Bridge {
    /// `encode_size` is the capsfilter that fixes the encoded size, if
    /// anything is encoded.
    pub fn new(appsrc: gst_app::AppSrc, live: bool, encode_size: Option<gst::Element>) -> Bridge {
        Bridge { appsrc, live, encode_size, state: Mutex::default(), frames: AtomicU64::new(0), dropped: AtomicU64::new(0) }
    }

    /// A new connection starts: its timestamps get a new offset.
    pub fn new_session(&self) {
        let mut s = lock(&self.state);
        s.offset = None;
        s.session_frames = 0;
        s.last_frame = None;
    }

    /// Frame size of the first connection, which later ones are scaled to.
    pub fn size(&self) -> Option<(u32, u32)> {
        lock(&self.state).size
    }

    pub fn session_frames(&self) -> u64 {
        lock(&self.state).session_frames
    }

    pub fn last_frame(&self) -> Option<Instant> {
        lock(&self.state).last_frame
    }

    /// Called on the source's streaming thread for every decoded frame.
    pub fn push(&self, sample: gst::Sample) -> Result<gst::FlowSuccess, gst::FlowError> {
        let caps = sample.caps_owned();
        let Some(mut buffer) = sample.buffer_owned() else { return Ok(gst::FlowSuccess::Ok) };
        // The sample's reference would make the buffer look shared and cost
        // a copy when its timestamps are rewritten or the caption drawn.
        drop(sample);
        let mut s = lock(&self.state);
        match caps {
            Some(caps) if s.source_caps.as_ref() != Some(&caps) => {
                s.source_caps = Some(caps.clone());
                self.new_caps(&mut s, caps);
            }
            Some(_) => {}
            None if s.caps.is_none() => {
                gst::element_error!(self.appsrc, gst::CoreError::Negotiation, ("the decoded video has no caps"));
                return Err(gst::FlowError::NotNegotiated);
            }
            None => {}
        }
        let pts = if self.live { self.live_pts(&mut s, buffer.pts()) } else { file_pts(&mut s, buffer.pts()) };
        if buffer.pts() != Some(pts) || buffer.dts().is_some() {
            let b = buffer.make_mut();
            b.set_pts(pts);
            b.set_dts(gst::ClockTime::NONE);
        }
        s.session_frames += 1;
        s.last_frame = Some(Instant::now());
        drop(s);
        if self.live && self.appsrc.current_level_buffers() >= LIVE_QUEUE {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return Ok(gst::FlowSuccess::Ok);
        }
        let r = self.appsrc.push_buffer(buffer);
        if r.is_ok() {
            self.frames.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    /// First caps, or a change (resolution, rate) in the middle of a
    /// connection: the element restarts its window, the encoder keeps the
    /// first caps (a renegotiated encoder would start a new SPS, which the
    /// MP4 muxer refuses).
    fn new_caps(&self, s: &mut State, caps: gst::Caps) {
        let mut caps = caps;
        match &s.first_caps {
            None => {
                s.first_caps = Some(caps.clone());
                if let Ok(info) = gst_video::VideoInfo::from_caps(&caps) {
                    let fps = info.fps();
                    s.frame_ns = if fps.numer() > 0 && fps.denom() > 0 {
                        (1_000_000_000u128 * fps.denom() as u128 / fps.numer() as u128) as u64
                    } else {
                        1_000_000_000 / 30
                    };
                    let (w, h) = (info.width(), info.height());
                    s.size = Some((w, h));
                    if let Some(filter) = &self.encode_size {
                        let even = |v: u32| (v + v % 2) as i32;
                        let mut fixed = caps.clone();
                        fixed.make_mut().set("width", even(w));
                        fixed.make_mut().set("height", even(h));
                        filter.set_property("caps", fixed);
                    }
                }
            }
            Some(first) => {
                // The timestamps are the bridge's: a new nominal rate only
                // would renegotiate the encoder.
                if let Some(rate) = first.structure(0).and_then(|st| st.value("framerate").ok()) {
                    caps.make_mut().set_value("framerate", rate.clone());
                }
                let s0 = first.structure(0);
                for field in ["pixel-aspect-ratio", "colorimetry", "chroma-site", "interlace-mode"] {
                    let Some(st) = caps.make_mut().structure_mut(0) else { continue };
                    match s0.and_then(|f| f.value(field).ok()) {
                        Some(v) => st.set_value(field, v.clone()),
                        None => st.remove_field(field),
                    }
                }
                if s.caps.as_ref() == Some(&caps) {
                    return;
                }
            }
        }
        self.appsrc.set_caps(Some(&caps));
        s.caps = Some(caps);
    }

    fn live_pts(&self, s: &mut State, pts: Option<gst::ClockTime>) -> gst::ClockTime {
        let now = self.appsrc.current_running_time().unwrap_or(gst::ClockTime::ZERO);
        let origin = *s.origin.get_or_insert(now);
        let since_origin = now.saturating_sub(origin);
        let out = match (pts, s.offset) {
            (Some(p), Some(off)) => ns(p.nseconds() as i128 + off),
            (Some(p), None) => {
                s.offset = Some(since_origin.nseconds() as i128 - p.nseconds() as i128);
                since_origin
            }
            (None, _) => since_origin,
        };
        // Strictly increasing: a jump back would reset the element's window
        // and upset the muxer.
        let out = match s.last_pts {
            Some(last) if out <= last => last + gst::ClockTime::from_useconds(1),
            _ => out,
        };
        s.last_pts = Some(out);
        out
    }
}

/// A file frame's timestamp, strictly after the previous one: its own
/// when it is, else the previous one plus a frame duration.
fn file_pts(s: &mut State, pts: Option<gst::ClockTime>) -> gst::ClockTime {
    let out = match (pts, s.last_pts) {
        (Some(p), Some(last)) if p > last => p,
        (Some(p), None) => p,
        (_, Some(last)) => last + gst::ClockTime::from_nseconds(s.frame_ns.max(1)),
        (None, None) => gst::ClockTime::ZERO,
    };
    s.last_pts = Some(out);
    out
}

fn ns(v: i128) -> gst::ClockTime {
    gst::ClockTime::from_nseconds(v.clamp(0, u64::MAX as i128 - 1) as u64)
}
