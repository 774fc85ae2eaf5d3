//! Which frames make a clip, exactly as PySlowFast's decoder picks them
//! (`get_start_end_idx`, `temporal_sampling`, `pack_pathway_output`).

/// `torch.linspace(start, end, steps)` in f32, as libtorch computes it on
/// CPU: the first half counts up from `start`, the second half down from
/// `end`, so both ends are exact. Truncating these values (`.long()`) is how
/// the reference turns them into frame indices, so the float math must match.
pub fn linspace_f32(start: f32, end: f32, steps: usize) -> Vec<f32> {
    match steps {
        0 => vec![],
        1 => vec![start],
        _ => {
            let step = (end - start) / (steps - 1) as f32;
            let half = steps / 2;
            (0..steps).map(|i| if i < half { start + step * i as f32 } else { end - step * (steps - i - 1) as f32 }).collect()
        }
    }
}

/// Frame indices of the slow pathway inside a fast clip of `fast_frames`
/// frames: `linspace(0, T - 1, T / alpha).long()`.
pub fn slow_indices(fast_frames: usize, alpha: usize) -> Vec<usize> {
    if fast_frames == 0 {
        return vec![];
    }
    linspace_f32(0.0, (fast_frames - 1) as f32, fast_frames / alpha.max(1)).iter().map(|&v| v as usize).collect()
}

/// Which temporal view of a video a clip is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ClipPosition {
    /// Training: a window starting at `fraction` (0..1) of the free range;
    /// the caller draws it uniformly (PySlowFast's `clip_idx = -1`).
    Random { fraction: f64 },
    /// Testing: view `index` of `count` evenly spaced windows.
    View { index: usize, count: usize },
}

/// Start and end (inclusive, fractional) frame of a clip spanning
/// `clip_size` frames in a video of `video_frames` frames.
pub fn clip_window(video_frames: usize, clip_size: f64, position: ClipPosition) -> (f64, f64) {
    let delta = (video_frames as f64 - clip_size).max(0.0);
    let start = match position {
        ClipPosition::Random { fraction } => delta * fraction.clamp(0.0, 1.0),
        ClipPosition::View { index, count } => delta * index as f64 / count.max(1) as f64,
    };
    (start, start + clip_size - 1.0)
}

/// Frames of the video a clip spans: `num_frames` frames every
/// `sampling_rate` frames at `target_fps` (30 for Kinetics), converted to
/// the video's own frame rate as PySlowFast does.
pub fn clip_size(num_frames: usize, sampling_rate: usize, video_fps: f64, target_fps: f64) -> f64 {
    (sampling_rate * num_frames) as f64 / target_fps * video_fps
}

/// Frame indices of a clip of `num_frames` frames over a window of
/// `clip_size` video frames: indices past the end of a short video repeat
/// its last frame, as the reference's clamp does.
pub fn clip_indices(video_frames: usize, clip_size: f64, num_frames: usize, position: ClipPosition) -> Vec<usize> {
    if video_frames == 0 {
        return vec![];
    }
    let (start, end) = clip_window(video_frames, clip_size, position);
    linspace_f32(start as f32, end as f32, num_frames).iter().map(|&v| (v.max(0.0) as usize).min(video_frames - 1)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_indices_match_torch_linspace() {
        // torch.linspace(0, 31, 8).long() and torch.linspace(0, 31, 4).long()
        assert_eq!(slow_indices(32, 4), vec![0, 4, 8, 13, 17, 22, 26, 31]);
        assert_eq!(slow_indices(32, 8), vec![0, 10, 20, 31]);
        assert_eq!(slow_indices(16, 4), vec![0, 5, 10, 15]);
    }

    #[test]
    fn centre_view_of_a_long_video() {
        // 131 frames, 32 x 2: delta = 67, one view starts at 0 (delta * 0 / 1).
        let idx = clip_indices(131, clip_size(32, 2, 30.0, 30.0), 32, ClipPosition::View { index: 0, count: 1 });
        assert_eq!(idx.len(), 32);
        assert_eq!(idx[0], 0);
        assert_eq!(idx[31], 63);
        // Third of ten views: start = 67 * 2 / 10 = 13.4.
        let idx = clip_indices(131, 64.0, 32, ClipPosition::View { index: 2, count: 10 });
        assert_eq!(idx[0], 13);
        assert_eq!(idx[31], 76);
    }

    #[test]
    fn short_video_repeats_last_frame() {
        // 25 fps video: 64 frames at 30 fps span 53.3 video frames.
        assert!((clip_size(32, 2, 25.0, 30.0) - 53.333).abs() < 1e-3);
        let idx = clip_indices(20, 64.0, 32, ClipPosition::View { index: 0, count: 1 });
        assert_eq!(idx.len(), 32);
        assert_eq!(*idx.last().unwrap(), 19);
        assert!(idx.windows(2).all(|w| w[0] <= w[1]));
        // linspace(0, 63, 32): from the 11th value on, past frame 19.
        assert_eq!(idx.iter().filter(|&&i| i == 19).count(), 22);
    }
}
