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
        let f = self.frames;
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
}
