//! Hands decoded frames from the current source pipeline to the output
//! pipeline's appsrc, mapping each connection's timestamps onto one output
//! timeline.
//!
//! Files keep their own timestamps (there is one connection). For live
//! sources the first frame of a connection is stamped with the output's
//! running time since the first frame ever (so an outage shows as a gap of
//! its real length), and the following frames keep the source's spacing.
//!
//! Files are paced so that no prediction is skipped: the element never
//! holds frames back and skips a window when `max-pending` clips are still
//! in inference, which suits a camera but would make a file's predictions
//! depend on the machine's speed. Before a frame that makes a window due is
//! pushed, the bridge waits until the element has room for it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::model_info::ModelInfo;
use crate::ring::{ClipRing, RingConfig};

use gst::prelude::*;

/// Frames a live output may queue before new ones are dropped (and
/// counted) instead of delaying the camera: one second at 30 fps.
const LIVE_QUEUE: u64 = 30;
/// Frames a file may queue: the appsrc blocks decoding beyond this.
pub const FILE_QUEUE: u64 = 4;

/// Longest wait for one prediction before a file frame is pushed anyway
/// (an inference error posts no prediction).
const PACE_TIMEOUT: Duration = Duration::from_secs(60);

/// What pacing a file needs to know about the element.
pub struct Pacing {
    pub element: gst::Element,
    pub model: ModelInfo,
}

pub struct Bridge {
    appsrc: gst_app::AppSrc,
    live: bool,
    pacing: Option<Pacing>,
    state: Mutex<State>,
    /// Frames pushed into the output, over all connections.
    pub frames: AtomicU64,
    /// Live frames dropped because the output fell a second behind.
    pub dropped: AtomicU64,
}

#[derive(Default)]
struct State {
    caps_set: bool,
    size: Option<(u32, u32)>,
    /// Frames of the current connection.
    session_frames: u64,
    last_frame: Option<Instant>,
    /// Output running time of the first frame ever (live).
    origin: Option<gst::ClockTime>,
    /// Output PTS minus source PTS for this connection (live), in ns.
    offset: Option<i128>,
    last_pts: Option<gst::ClockTime>,
    /// Frames of a full window at the stream's rate (pacing).
    window: Option<u64>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Bridge {
    /// `pacing` is used for files only.
    pub fn new(appsrc: gst_app::AppSrc, live: bool, pacing: Pacing) -> Bridge {
        let pacing = (!live).then_some(pacing);
        Bridge { appsrc, live, pacing, state: Mutex::default(), frames: AtomicU64::new(0), dropped: AtomicU64::new(0) }
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
        if !s.caps_set {
            let Some(caps) = caps else {
                gst::element_error!(self.appsrc, gst::CoreError::Negotiation, ["the decoded video has no caps"]);
                return Err(gst::FlowError::NotNegotiated);
            };
            if let Ok(info) = gst_video::VideoInfo::from_caps(&caps) {
                s.size = Some((info.width(), info.height()));
                if let Some(p) = &self.pacing {
                    // The element sizes its window the same way.
                    let fps = info.fps();
                    let fps = if fps.numer() > 0 && fps.denom() > 0 { fps.numer() as f64 / fps.denom() as f64 } else { 30.0 };
                    s.window = Some(ClipRing::new(RingConfig::from_model(&p.model), fps).capacity() as u64);
                }
            }
            self.appsrc.set_caps(Some(&caps));
            s.caps_set = true;
        }
        if self.live {
            let pts = self.live_pts(&mut s, buffer.pts());
            let b = buffer.make_mut();
            b.set_pts(pts);
            b.set_dts(gst::ClockTime::NONE);
        }
        s.session_frames += 1;
        s.last_frame = Some(Instant::now());
        let (n, window) = (s.session_frames, s.window);
        drop(s);
        if let (Some(p), Some(window)) = (&self.pacing, window) {
            pace(p, n, window);
        }
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

/// Waits until the element can take the window frame `n` makes due
/// without skipping it: completed predictions >= due - max-pending, and
/// fewer than max-pending clips in inference (a finished job is counted
/// as a prediction a moment before it leaves `pending`; under load the
/// first alone let a window through to be skipped).
fn pace(p: &Pacing, n: u64, window: u64) {
    let stride = u64::from(p.element.property::<u32>("stride").max(1));
    if n < window || !(n - window).is_multiple_of(stride) {
        return;
    }
    let due = 1 + (n - window) / stride;
    let max_pending = u64::from(p.element.property::<u32>("max-pending"));
    let skipped_before = p.element.property::<u64>("skipped");
    let start = Instant::now();
    let busy = || {
        p.element.property::<u64>("predictions") + max_pending < due || u64::from(p.element.property::<u32>("pending")) >= max_pending
    };
    while busy() {
        // A reset window (caps change, timestamp gap) or a skip means the
        // count no longer matches the element's: stop waiting.
        if start.elapsed() > PACE_TIMEOUT || p.element.property::<u64>("skipped") > skipped_before {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn ns(v: i128) -> gst::ClockTime {
    gst::ClockTime::from_nseconds(v.clamp(0, u64::MAX as i128 - 1) as u64)
}
