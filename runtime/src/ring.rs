//! Clip ring buffer for live streams: every arriving frame is resized and
//! normalised once into a fixed slot; the slow and fast tensors of the
//! latest window are then cut out of the slots by copying only.

use crate::model_info::ModelInfo;
use crate::preprocess::{Clip, Normalization, PackedRgb, PreprocessError, RgbSource, ScaledFrame, SpatialCrop, scale_source_into};
use crate::sampling::{ClipPosition, clip_indices, clip_size, slow_indices};

/// Clip geometry a ring needs, normally read from the model.
#[derive(Debug, Clone, PartialEq)]
pub struct RingConfig {
    pub fast_frames: usize,
    pub alpha: usize,
    pub sampling_rate: usize,
    pub target_fps: f64,
    pub crop_size: usize,
    pub norm: Normalization,
}

impl RingConfig {
    pub fn from_model(info: &ModelInfo) -> RingConfig {
        RingConfig {
            fast_frames: info.fast_frames,
            alpha: info.alpha,
            sampling_rate: info.sampling_rate,
            target_fps: info.target_fps,
            crop_size: info.crop_size,
            norm: Normalization { mean: info.mean, std: info.std },
        }
    }
}

#[derive(Debug)]
pub struct ClipRing {
    config: RingConfig,
    /// Offsets of the fast frames inside the window, oldest frame = 0.
    fast_offsets: Vec<usize>,
    slow_indices: Vec<usize>,
    slots: Vec<ScaledFrame>,
    /// Frame number (counted since the window last restarted) each slot
    /// holds; `None` for a frame that was skipped or never arrived.
    slot_frames: Vec<Option<u64>>,
    /// Slot the next frame goes to.
    next: usize,
    filled: usize,
    /// Frames pushed or skipped since the window last restarted.
    frames: u64,
    frame_size: Option<(usize, usize)>,
}

impl ClipRing {
    /// A ring for a stream at `stream_fps`: one window spans the frames
    /// PySlowFast's `clip_size` gives (64 at 30 fps for 32 x 2), and the
    /// fast frames are picked in it as for the first view of a file.
    pub fn new(config: RingConfig, stream_fps: f64) -> ClipRing {
        let span = clip_size(config.fast_frames, config.sampling_rate, stream_fps, config.target_fps);
        let capacity = (span.ceil() as usize).max(1);
        let fast_offsets = clip_indices(capacity, span, config.fast_frames, ClipPosition::View { index: 0, count: 1 });
        let slow_indices = slow_indices(config.fast_frames, config.alpha);
        ClipRing {
            config,
            fast_offsets,
            slow_indices,
            slots: vec![ScaledFrame::default(); capacity],
            slot_frames: vec![None; capacity],
            next: 0,
            filled: 0,
            frames: 0,
            frame_size: None,
        }
    }

    /// Frames one window spans.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    pub fn fast_offsets(&self) -> &[usize] {
        &self.fast_offsets
    }

    pub fn slow_indices(&self) -> &[usize] {
        &self.slow_indices
    }

    /// Whether a full window has arrived since the start or the last size change.
    pub fn is_ready(&self) -> bool {
        self.filled == self.capacity()
    }

    /// Resizes and normalises a packed RGB frame into the oldest slot.
    pub fn push_rgb(&mut self, rgb: &[u8], width: usize, height: usize) -> Result<(), PreprocessError> {
        self.push(&PackedRgb::new(rgb, width, height)?)
    }

    /// Resizes and normalises a frame of any layout into the oldest slot. A
    /// frame of another size than the previous one (caps renegotiated)
    /// starts a new window: a clip never mixes two geometries.
    pub fn push<S: RgbSource>(&mut self, frame: &S) -> Result<(), PreprocessError> {
        let (width, height) = (frame.width(), frame.height());
        if self.frame_size != Some((width, height)) {
            self.clear();
        }
        let (size, norm) = (self.config.crop_size, self.config.norm);
        scale_source_into(frame, size, &norm, &mut self.slots[self.next])?;
        self.frame_size = Some((width, height));
        self.slot_frames[self.next] = Some(self.frames);
        self.advance();
        Ok(())
    }

    /// Puts a frame resized earlier into the oldest slot: a frame standing
    /// for several instants (a slow source, see [`TimedRing`]) is resized
    /// once and copied.
    pub fn push_scaled(&mut self, frame: &ScaledFrame) {
        self.slots[self.next].clone_from(frame);
        self.slot_frames[self.next] = Some(self.frames);
        self.advance();
    }

    /// Like [`ClipRing::push_scaled`] without the copy: the frame moves into
    /// the slot and `frame` gets the slot's old buffer to reuse.
    pub fn push_swap(&mut self, frame: &mut ScaledFrame) {
        std::mem::swap(&mut self.slots[self.next], frame);
        self.slot_frames[self.next] = Some(self.frames);
        self.advance();
    }

    /// Counts a frame without resizing it, for a frame no window will read
    /// (see [`ClipRing::next_frame_needed`]): most live frames between two
    /// sampled ones cost nothing.
    pub fn skip(&mut self) {
        self.slot_frames[self.next] = None;
        self.advance();
    }

    fn advance(&mut self) {
        self.next = (self.next + 1) % self.capacity();
        self.filled = (self.filled + 1).min(self.capacity());
        self.frames += 1;
    }

    /// Frames pushed or skipped since the window last restarted.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Whether the frame about to arrive is sampled by a window that ends
    /// at frame `first_end + k * stride` for some `k >= 0` (frame numbers
    /// as [`ClipRing::frames`] counts them).
    pub fn next_frame_needed(&self, first_end: u64, stride: u64) -> bool {
        self.frame_needed(self.frames, first_end, stride)
    }

    /// Whether frame `f` (counted as [`ClipRing::frames`] counts) is sampled
    /// by a window ending at `first_end + k * stride` for some `k >= 0`.
    pub fn frame_needed(&self, f: u64, first_end: u64, stride: u64) -> bool {
        let span = self.capacity() as u64;
        let stride = stride.max(1);
        // Windows [end - span + 1, end] that contain f.
        let k_min = f.saturating_sub(first_end).div_ceil(stride);
        let k_max = match (f + span - 1).checked_sub(first_end) {
            Some(d) => d / stride,
            None => return false,
        };
        (k_min..=k_max).any(|k| {
            let start = first_end + k * stride + 1 - span;
            f >= start && self.fast_offsets.binary_search(&((f - start) as usize)).is_ok()
        })
    }

    /// Forgets the frames in the window (flush, PTS gap); slots keep their
    /// buffers.
    pub fn clear(&mut self) {
        self.filled = 0;
        self.next = 0;
        self.frames = 0;
        self.slot_frames.iter_mut().for_each(|f| *f = None);
    }

    /// The slow and fast tensors of the latest full window, or `None`
    /// while the window is still filling.
    pub fn latest_window(&self, crop: SpatialCrop) -> Option<Result<Clip, PreprocessError>> {
        if !self.is_ready() {
            return None;
        }
        // When full, `next` is the oldest slot, holding frame `frames - capacity`.
        let oldest = self.frames - self.capacity() as u64;
        let mut fast = Vec::with_capacity(self.fast_offsets.len());
        for &o in &self.fast_offsets {
            let slot = (self.next + o) % self.capacity();
            if self.slot_frames[slot] != Some(oldest + o as u64) {
                // Skipped under another prediction schedule (stride changed).
                return Some(Err(PreprocessError::MissingFrame { needed: self.capacity(), index: o }));
            }
            fast.push(&self.slots[slot]);
        }
        Some(Clip::assemble(&fast, &self.slow_indices, self.config.crop_size, crop))
    }
}

/// A [`ClipRing`] filled by time rather than by frame count, for live
/// streams whose frames do not come at the rate the caps announce (cameras
/// and RTSP feeds that drop frames, sparse or variable-rate files).
///
/// The ring holds one slot per instant ("tick") at the model's target fps,
/// so a window always spans the time the model was trained on; each tick
/// takes the frame nearest to it. A frame is placed when it arrives: ticks
/// up to half a tick after its timestamp are decided then, those nearer the
/// previous frame go to it, the rest to the new one. A source slower than
/// the target rate thus has its frames repeated; a faster one has frames
/// that no tick takes, and those cost nothing.
///
/// Windows are due every `stride` ticks once the first one is full. A frame
/// that makes several due at once (a source much slower than the stride)
/// gives only the latest.
#[derive(Debug)]
pub struct TimedRing {
    ring: ClipRing,
    tick_ns: f64,
    /// Timestamp (ns) of tick 0: the first frame since the last reset.
    origin: Option<u64>,
    /// Timestamp of the previous frame, and whether `held` has its pixels.
    prev: Option<(u64, bool)>,
    /// The latest resized frame, copied into every slot it stands for (the
    /// last one takes it without a copy unless the next frame may need it).
    held: ScaledFrame,
    /// Tick at which the next window is due; `None` until the first, due
    /// when the ring is first full.
    next_due: Option<u64>,
    /// Until when (ns) the source counts as irregular: a gap longer than a
    /// tick and a half was seen within the last window.
    irregular_until: Option<u64>,
}

/// A window that became due: the ring holding it (read it with
/// [`ClipRing::latest_window`]) and the instants its first and last ticks
/// stand for (ns, on the frames' timeline).
pub struct DueWindow<'a> {
    pub ring: &'a ClipRing,
    pub start_ns: u64,
    pub end_ns: u64,
}

impl TimedRing {
    pub fn new(config: RingConfig) -> TimedRing {
        let fps = if config.target_fps.is_finite() && config.target_fps > 0.0 { config.target_fps } else { 30.0 };
        TimedRing {
            ring: ClipRing::new(config, fps),
            tick_ns: 1e9 / fps,
            origin: None,
            prev: None,
            held: ScaledFrame::default(),
            next_due: None,
            irregular_until: None,
        }
    }

    /// Ticks one window spans.
    pub fn capacity(&self) -> usize {
        self.ring.capacity()
    }

    /// Time one window spans, in ns.
    pub fn span_ns(&self) -> u64 {
        (self.capacity() as f64 * self.tick_ns) as u64
    }

    /// Forgets every frame: the next one starts a new window.
    pub fn reset(&mut self) {
        self.ring.clear();
        self.origin = None;
        self.prev = None;
        self.next_due = None;
        self.irregular_until = None;
    }

    /// Whether a frame at `pts` cannot continue the window: it is further
    /// from the previous frame than one window, ahead or back.
    pub fn is_discontinuity(&self, pts: u64) -> bool {
        let span = self.span_ns();
        self.prev.is_some_and(|(prev, _)| pts > prev.saturating_add(span) || pts.saturating_add(span) < prev)
    }

    /// Timestamp of the previous frame since the last reset.
    pub fn last_pts(&self) -> Option<u64> {
        self.prev.map(|(p, _)| p)
    }

    fn tick_time(&self, origin: u64, tick: u64) -> u64 {
        origin + (tick as f64 * self.tick_ns).round() as u64
    }

    /// Ticks a frame at `pts` decides: `[start, split)` go to the previous
    /// frame, `[split, end)` to this one.
    fn assign(&self, pts: u64) -> (u64, u64, u64) {
        let (Some(origin), Some((prev, prev_pixels))) = (self.origin, self.prev) else { return (0, 0, 1) };
        let pts = pts.max(prev);
        let start = self.ring.frames();
        let end = (((pts - origin) as f64 / self.tick_ns + 0.5).floor() as u64 + 1).max(start);
        if !prev_pixels {
            // Not kept (no window wanted it when it came): the new frame
            // stands in for it.
            return (start, start, end);
        }
        let mid = (prev - origin) as f64 + (pts - prev) as f64 / 2.0;
        let split = ((mid / self.tick_ns).ceil() as u64).clamp(start, end);
        (start, split, end)
    }

    fn first_due(&self) -> u64 {
        self.next_due.unwrap_or(self.capacity() as u64 - 1)
    }

    fn tick_needed(&self, tick: u64, stride: u64) -> bool {
        self.ring.frame_needed(tick, self.first_due(), stride)
    }

    /// Whether [`TimedRing::push`] will read the pixels of a frame at `pts`:
    /// a tick it takes is sampled by a coming window, or, while the source
    /// is irregular (slow, or dropping frames), a tick that may turn out
    /// nearer to it than to the next frame is. Other frames need not be
    /// mapped or resized: at the target rate, about half of them.
    ///
    /// The first long gap after a regular stretch finds the frame before it
    /// not kept: its ticks take the frame after the gap instead.
    pub fn needs_pixels(&self, pts: u64, stride: u64) -> bool {
        let stride = stride.max(1);
        let (_, split, end) = self.assign(pts);
        if (split..end).any(|t| self.tick_needed(t, stride)) {
            return true;
        }
        if !self.is_irregular(pts) {
            return false;
        }
        (end..end + self.capacity() as u64).any(|t| self.tick_needed(t, stride))
    }

    fn is_irregular(&self, pts: u64) -> bool {
        let gap = self.prev.map(|(prev, _)| pts.saturating_sub(prev) as f64).unwrap_or(0.0);
        gap > 1.5 * self.tick_ns || self.irregular_until.is_some_and(|until| pts <= until)
    }

    /// Places the frame at `pts` (ns; a timestamp before the previous one is
    /// taken as equal to it). `frame` must be given when
    /// [`TimedRing::needs_pixels`] says so. `due` is called for the window
    /// this frame makes due, if any.
    pub fn push<S: RgbSource>(
        &mut self,
        pts: u64,
        frame: Option<&S>,
        stride: u64,
        mut due: impl FnMut(DueWindow<'_>),
    ) -> Result<(), PreprocessError> {
        let stride = stride.max(1);
        let pts = self.prev.map_or(pts, |(prev, _)| pts.max(prev));
        let scale = frame.is_some() && self.needs_pixels(pts, stride);
        let (start, split, end) = self.assign(pts);
        let origin = *self.origin.get_or_insert(pts);
        let first_due = self.first_due();
        let last_due = (end > first_due).then(|| first_due + (end - 1 - first_due) / stride * stride).filter(|&d| d >= start);
        for t in start..split {
            if self.tick_needed(t, stride) {
                self.ring.push_scaled(&self.held);
            } else {
                self.ring.skip();
            }
            self.window_due(t, last_due, origin, &mut due);
        }
        if let (true, Some(f)) = (scale, frame) {
            scale_source_into(f, self.ring.config.crop_size, &self.ring.config.norm, &mut self.held)?;
        }
        // The pixels are kept for the next frame's ticks only while the
        // source is irregular (see `needs_pixels`) or its rate is not known
        // yet (the first frame); otherwise the last slot takes them without
        // a copy.
        let keep = scale && (self.prev.is_none() || self.is_irregular(pts));
        let last_needed = if scale { (split..end).rev().find(|&t| self.tick_needed(t, stride)) } else { None };
        for t in split..end {
            if !scale || !self.tick_needed(t, stride) {
                self.ring.skip();
            } else if !keep && Some(t) == last_needed {
                self.ring.push_swap(&mut self.held);
            } else {
                self.ring.push_scaled(&self.held);
            }
            self.window_due(t, last_due, origin, &mut due);
        }
        if let Some((prev, _)) = self.prev
            && (pts - prev) as f64 > 1.5 * self.tick_ns
        {
            self.irregular_until = Some(pts + self.span_ns());
        }
        self.prev = Some((pts, keep));
        if let Some(d) = last_due {
            self.next_due = Some(d + stride);
        }
        Ok(())
    }

    fn window_due(&self, tick: u64, last_due: Option<u64>, origin: u64, due: &mut impl FnMut(DueWindow<'_>)) {
        if last_due != Some(tick) || !self.ring.is_ready() {
            return;
        }
        let first = tick + 1 - self.capacity() as u64;
        due(DueWindow { ring: &self.ring, start_ns: self.tick_time(origin, first), end_ns: self.tick_time(origin, tick) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preprocess::scale_frame;

    fn config(alpha: usize) -> RingConfig {
        RingConfig {
            fast_frames: 32,
            alpha,
            sampling_rate: 2,
            target_fps: 30.0,
            crop_size: 8,
            norm: Normalization { mean: [0.45; 3], std: [0.225; 3] },
        }
    }

    /// `linspace(0, T - 1, T / alpha)` truncated, written out independently
    /// of `sampling::linspace_f32`.
    fn reference_slow(t: usize, alpha: usize) -> Vec<usize> {
        let n = t / alpha;
        (0..n).map(|i| ((t - 1) as f64 * i as f64 / (n - 1) as f64) as usize).collect()
    }

    #[test]
    fn index_math_matches_the_reference_formula() {
        for alpha in [4, 8] {
            let ring = ClipRing::new(config(alpha), 30.0);
            assert_eq!(ring.slow_indices(), reference_slow(32, alpha), "alpha {alpha}");
            assert_eq!(ring.capacity(), 64);
            // 32 frames over 64 at 30 fps: linspace(0, 63, 32) truncated.
            let want: Vec<usize> = (0..32).map(|i| (63.0 * i as f64 / 31.0) as usize).collect();
            assert_eq!(ring.fast_offsets(), want);
        }
        assert_eq!(reference_slow(32, 4), vec![0, 4, 8, 13, 17, 22, 26, 31]);
        assert_eq!(reference_slow(32, 8), vec![0, 10, 20, 31]);
        // A 25 fps stream spans 53.3 frames.
        let ring = ClipRing::new(config(4), 25.0);
        assert_eq!(ring.capacity(), 54);
        assert_eq!(*ring.fast_offsets().last().unwrap(), 52);
    }

    fn frame(k: usize, w: usize, h: usize) -> Vec<u8> {
        (0..w * h * 3).map(|i| ((i * 7 + k * 13) % 251) as u8).collect()
    }

    #[test]
    fn window_equals_direct_preprocessing_of_the_same_frames() {
        let cfg = config(4);
        let (w, h) = (12, 9);
        let mut ring = ClipRing::new(cfg.clone(), 30.0);
        let total = 100;
        for k in 0..total {
            assert_eq!(ring.is_ready(), k >= 64);
            ring.push_rgb(&frame(k, w, h), w, h).unwrap();
        }
        let first = total - ring.capacity();
        let direct: Vec<ScaledFrame> =
            ring.fast_offsets().iter().map(|&o| scale_frame(&frame(first + o, w, h), w, h, 8, &cfg.norm).unwrap()).collect();
        let refs: Vec<&ScaledFrame> = direct.iter().collect();
        for crop in [SpatialCrop::Start, SpatialCrop::Centre, SpatialCrop::End] {
            let got = ring.latest_window(crop).unwrap().unwrap();
            let want = Clip::assemble(&refs, ring.slow_indices(), 8, crop).unwrap();
            assert_eq!(got, want, "{crop:?}");
            assert_eq!(got.fast.len(), 3 * 32 * 64);
            assert_eq!(got.slow.len(), 3 * 8 * 64);
        }
    }

    #[test]
    fn a_new_frame_size_restarts_the_window() {
        let mut ring = ClipRing::new(config(8), 30.0);
        for k in 0..64 {
            ring.push_rgb(&frame(k, 10, 10), 10, 10).unwrap();
        }
        assert!(ring.is_ready());
        ring.push_rgb(&frame(0, 12, 10), 12, 10).unwrap();
        assert!(!ring.is_ready());
        assert!(ring.latest_window(SpatialCrop::Centre).is_none());
        assert!(ring.push_rgb(&[0; 5], 12, 10).is_err());
    }

    #[test]
    fn skipping_frames_no_window_samples_gives_the_same_windows() {
        let (w, h) = (12, 10);
        let (first_end, stride) = (63u64, 32u64);
        let mut full = ClipRing::new(config(4), 30.0);
        let mut sparse = ClipRing::new(config(4), 30.0);
        let (mut resized, mut windows) = (0, 0);
        for k in 0..200u64 {
            full.push_rgb(&frame(k as usize, w, h), w, h).unwrap();
            if sparse.next_frame_needed(first_end, stride) {
                sparse.push_rgb(&frame(k as usize, w, h), w, h).unwrap();
                resized += 1;
            } else {
                sparse.skip();
            }
            if k >= first_end && (k - first_end) % stride == 0 {
                let want = full.latest_window(SpatialCrop::Centre).unwrap().unwrap();
                let got = sparse.latest_window(SpatialCrop::Centre).unwrap().unwrap();
                assert!(got == want, "window ending at frame {k} differs");
                windows += 1;
            }
        }
        assert_eq!(windows, 5); // frames 63, 95, 127, 159, 191
        assert!(resized < 150, "{resized} of 200 frames resized");
        // Under another schedule the window lacks frames, and says so.
        assert!(matches!(sparse.latest_window(SpatialCrop::Centre), Some(Err(PreprocessError::MissingFrame { .. }))));
    }
    /// A uniform grey frame whose level tells frame `i` back from a clip.
    fn grey(i: u64) -> Vec<u8> {
        vec![(i % 200) as u8; 10 * 8 * 3]
    }

    /// Grey levels of the fast frames of a clip (8x8 crops).
    fn levels(clip: &Clip, norm: &Normalization) -> Vec<u8> {
        let frame = 8 * 8;
        (0..clip.fast.len() / 3 / frame).map(|t| ((clip.fast[t * frame] * norm.std[0] + norm.mean[0]) * 255.0).round() as u8).collect()
    }

    struct Seen {
        /// (start ns, end ns, grey levels of the fast frames)
        windows: Vec<(u64, u64, Vec<u8>)>,
        resized: usize,
    }

    /// Feeds frames `(index, pts)` with stride `stride`, mapping pixels only
    /// when the ring asks for them.
    fn feed(frames: &[(u64, u64)], stride: u64) -> Seen {
        let cfg = config(4);
        let norm = cfg.norm;
        let mut ring = TimedRing::new(cfg);
        let mut seen = Seen { windows: vec![], resized: 0 };
        for &(i, pts) in frames {
            let pixels = grey(i);
            let src = PackedRgb::new(&pixels, 10, 8).unwrap();
            let needed = ring.needs_pixels(pts, stride);
            seen.resized += usize::from(needed);
            let windows = &mut seen.windows;
            ring.push(pts, needed.then_some(&src), stride, |w| {
                let clip = w.ring.latest_window(SpatialCrop::Centre).unwrap().unwrap();
                windows.push((w.start_ns, w.end_ns, levels(&clip, &norm)));
            })
            .unwrap();
        }
        seen
    }

    const TICK: f64 = 1e9 / 30.0;

    /// Grey level of the frame nearest to `t` ns (either one on a tie).
    fn nearest(frames: &[(u64, u64)], t: f64) -> Vec<u8> {
        let d = |pts: u64| (pts as f64 - t).abs();
        let best = frames.iter().map(|&(_, p)| d(p)).fold(f64::INFINITY, f64::min);
        frames.iter().filter(|&&(_, p)| d(p) - best < 1e3).map(|&(i, _)| (i % 200) as u8).collect()
    }

    fn check_nearest(frames: &[(u64, u64)], seen: &Seen) {
        let offsets = ClipRing::new(config(4), 30.0).fast_offsets().to_vec();
        for (start, end, got) in &seen.windows {
            assert_eq!(((end - start) as f64 / TICK).round(), 63.0, "window {start}..{end}");
            for (j, &o) in offsets.iter().enumerate() {
                let t = *start as f64 + o as f64 * TICK;
                let want = nearest(frames, t);
                assert!(want.contains(&got[j]), "window at {start}: fast frame {j} ({t} ns) is frame {}, nearest {want:?}", got[j]);
            }
        }
    }

    #[test]
    fn a_source_at_the_target_rate_takes_one_tick_per_frame() {
        // Timestamps rounded to the millisecond, as many muxers store them.
        let frames: Vec<(u64, u64)> = (0..200).map(|i| (i, i * 1000 / 30 * 1_000_000)).collect();
        let seen = feed(&frames, 16);
        let ends: Vec<u64> = seen.windows.iter().map(|w| (w.1 as f64 / TICK).round() as u64).collect();
        assert_eq!(ends, (63..200).step_by(16).collect::<Vec<_>>());
        let offsets = ClipRing::new(config(4), 30.0).fast_offsets().to_vec();
        for (start, _, got) in &seen.windows {
            let first = (*start as f64 / TICK).round() as u64;
            let want: Vec<u8> = offsets.iter().map(|&o| ((first + o as u64) % 200) as u8).collect();
            assert_eq!(got, &want);
        }
        assert!(seen.resized < 150, "{} of 200 frames resized", seen.resized);
    }

    #[test]
    fn a_slow_source_repeats_the_nearest_frame() {
        // 2 frames per second into a 30 fps model: 15 ticks per frame.
        let frames: Vec<(u64, u64)> = (0..20).map(|i| (i, i * 500_000_000)).collect();
        let seen = feed(&frames, 16);
        // 9.5 s = tick 285: windows end on ticks 63 + 16k up to it, at most
        // one per frame.
        assert!(seen.windows.len() >= 12, "{} windows", seen.windows.len());
        check_nearest(&frames, &seen);
    }

    #[test]
    fn dropped_frames_keep_the_window_on_time() {
        // Every frame of a 30 fps stream dropped with probability 1/2; the
        // first drop is a lone one (see `needs_pixels`).
        let mut rng = 12345u64;
        let mut frames = vec![];
        for i in 0..300u64 {
            rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            if i == 0 || i == 2 || (i > 2 && rng >> 63 == 1) {
                frames.push((i, (i as f64 * TICK).round() as u64));
            }
        }
        let seen = feed(&frames, 16);
        // Ticks 63..=299 every 16: 15 windows, whichever frames came.
        assert_eq!(seen.windows.len(), 15);
        check_nearest(&frames, &seen);
    }

    #[test]
    fn a_gap_longer_than_the_window_is_a_discontinuity() {
        let mut ring = TimedRing::new(config(4));
        let src_pixels = grey(0);
        let src = PackedRgb::new(&src_pixels, 10, 8).unwrap();
        ring.push(5_000_000_000, Some(&src), 16, |_| {}).unwrap();
        let span = ring.span_ns();
        assert_eq!(span, 2_133_333_333);
        assert!(!ring.is_discontinuity(5_000_000_000 + span));
        assert!(ring.is_discontinuity(5_000_000_001 + span));
        assert!(!ring.is_discontinuity(5_000_000_000 - 1_000_000));
        assert!(ring.is_discontinuity(0));
        ring.reset();
        assert!(!ring.is_discontinuity(0));
    }
}
