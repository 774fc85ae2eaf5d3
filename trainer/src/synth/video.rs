//! One long synthetic video for demos and end-to-end checks: a segment per
//! class, each a fresh scene moving the way its class does, with the
//! ground truth kept beside it so predictions on the video can be scored.

use super::render::render;
use super::{CLASSES, FPS, SynthSpec};
use crate::data::rng::Rng;

/// Seeds the scenes of videos apart from the train and val clips.
const VIDEO_STREAM: u64 = 2;

/// Frames `start .. start + frames` show class `label`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub start: usize,
    pub frames: usize,
    pub label: usize,
}

impl Segment {
    /// `start_s end_s label name`, the line written to the segments file.
    pub fn line(&self) -> String {
        let s = |f: usize| f as f64 / FPS as f64;
        format!("{:.3} {:.3} {} {}", s(self.start), s(self.start + self.frames), self.label, CLASSES[self.label])
    }
}

/// A video of `size x size` packed RGB frames at [`FPS`].
#[derive(Debug, Clone)]
pub struct Video {
    pub size: u32,
    pub frames: Vec<Vec<u8>>,
    pub segments: Vec<Segment>,
}

/// Renders `segment_frames` frames of every class in `order`, with the
/// motion timing of `spec.frames`-frame training clips (so a model trained
/// on those sees the same speeds here) at `spec.size`.
pub fn render_video(spec: &SynthSpec, order: &[usize], segment_frames: usize) -> Video {
    let mut frames = Vec::with_capacity(order.len() * segment_frames);
    let mut segments = Vec::with_capacity(order.len());
    for (i, &label) in order.iter().enumerate() {
        let label = label % CLASSES.len();
        let mut rng = Rng::at(spec.seed, &[VIDEO_STREAM, i as u64]);
        segments.push(Segment { start: frames.len(), frames: segment_frames, label });
        frames.extend(render(spec, label, &mut rng, segment_frames));
    }
    Video { size: spec.size, frames, segments }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_follow_the_order_and_tile_the_video() {
        let spec = SynthSpec { size: 16, frames: 8, seed: 3 };
        let v = render_video(&spec, &[4, 0, 10], 12);
        assert_eq!(v.frames.len(), 36);
        assert_eq!(v.segments.iter().map(|s| (s.start, s.label)).collect::<Vec<_>>(), [(0, 4), (12, 0), (24, 10)]);
        assert!(v.frames.iter().all(|f| f.len() == 16 * 16 * 3));
        assert_eq!(v.segments[1].line(), "0.400 0.800 0 move_right");
    }

    #[test]
    fn the_first_frames_of_a_segment_are_a_clip_of_its_class() {
        // Same renderer and timing as the training clips: a segment is a
        // longer take of a scene, not a differently paced one.
        let spec = SynthSpec { size: 16, frames: 8, seed: 3 };
        let long = render(&spec, 7, &mut Rng::at(1, &[5]), 20);
        let short = render(&spec, 7, &mut Rng::at(1, &[5]), 8);
        assert_eq!(long.len(), 20);
        assert_eq!(long[..8], short[..]);
    }
}
