//! Where samples come from: a video list (files decoded with GStreamer, or
//! folders of frames) or the synthetic set rendered in memory. Each source
//! turns "sample i, these clip positions" into raw RGB clips.

use std::path::Path;

use runtime::preprocess::{Packing, RawClip};
use runtime::sampling::{ClipPosition, clip_indices, clip_size};

use super::{Sample, SampleError};
use crate::synth::{self, Split, SynthSpec};

/// How frames are taken from a video (PySlowFast `DATA.NUM_FRAMES`,
/// `SAMPLING_RATE`, `TARGET_FPS`).
#[derive(Debug, Clone, Copy)]
pub struct Temporal {
    pub num_frames: usize,
    pub sampling_rate: usize,
    pub target_fps: f64,
}

impl Temporal {
    fn indices(&self, total: usize, fps: f64, position: ClipPosition) -> Vec<usize> {
        let size = clip_size(self.num_frames, self.sampling_rate, fps, self.target_fps);
        clip_indices(total, size, self.num_frames, position)
    }
}

#[derive(Debug, Clone)]
pub enum Source {
    List(Vec<Sample>),
    Synthetic { spec: SynthSpec, split: Split, count: usize },
}

impl Source {
    pub fn len(&self) -> usize {
        match self {
            Source::List(s) => s.len(),
            Source::Synthetic { count, .. } => *count,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn label(&self, i: usize) -> usize {
        match self {
            Source::List(s) => s[i].label,
            Source::Synthetic { .. } => synth::label_of(i),
        }
    }

    /// How sample `i` is named in reports.
    pub fn name(&self, i: usize) -> String {
        match self {
            Source::List(s) => s[i].path.display().to_string(),
            Source::Synthetic { split, .. } => format!("synthetic:{}:{i}", split.name()),
        }
    }

    /// The clips of sample `i` at `positions`, decoded once.
    pub fn clips(&self, i: usize, temporal: Temporal, positions: &[ClipPosition]) -> Result<Vec<RawClip>, SampleError> {
        match self {
            Source::List(samples) => read_file(&samples[i].path, temporal, positions),
            Source::Synthetic { spec, split, .. } => {
                let clip = synth::render_clip(spec, *split, i);
                let size = spec.size as usize;
                Ok(positions
                    .iter()
                    .map(|&pos| {
                        let idx = temporal.indices(clip.frames.len(), synth::FPS as f64, pos);
                        let mut data = Vec::with_capacity(idx.len() * size * size * 3);
                        for k in &idx {
                            data.extend_from_slice(&clip.frames[*k]);
                        }
                        RawClip { data, frames: idx.len(), height: size, width: size, packing: Packing::Rgb }
                    })
                    .collect())
            }
        }
    }

    /// Checks that sample `i` can be read, without decoding all of it.
    pub fn check(&self, i: usize) -> Result<(), SampleError> {
        match self {
            Source::List(samples) => {
                let path = &samples[i].path;
                if path.is_dir() { super::frames::list_frames(path).map(|_| ()) } else { probe_file(path) }
            }
            Source::Synthetic { .. } => Ok(()),
        }
    }
}

fn read_file(path: &Path, temporal: Temporal, positions: &[ClipPosition]) -> Result<Vec<RawClip>, SampleError> {
    if path.is_dir() {
        // Extracted frames carry no rate: they are taken to be at the target rate.
        return super::frames::read_clips(path, |total| {
            positions.iter().map(|&p| temporal.indices(total, temporal.target_fps, p)).collect()
        });
    }
    decode_file(path, temporal, positions)
}

#[cfg(feature = "video")]
fn decode_file(path: &Path, temporal: Temporal, positions: &[ClipPosition]) -> Result<Vec<RawClip>, SampleError> {
    let clips = runtime::decode::decode_clips(path, |total, fps| positions.iter().map(|&p| temporal.indices(total, fps, p)).collect())?;
    Ok(clips)
}

#[cfg(not(feature = "video"))]
fn decode_file(path: &Path, _: Temporal, _: &[ClipPosition]) -> Result<Vec<RawClip>, SampleError> {
    Err(SampleError::new(path.display().to_string(), "video decoding needs the `video` feature (GStreamer); use frame folders"))
}

#[cfg(feature = "video")]
fn probe_file(path: &Path) -> Result<(), SampleError> {
    runtime::decode::probe(path)?;
    Ok(())
}

#[cfg(not(feature = "video"))]
fn probe_file(path: &Path) -> Result<(), SampleError> {
    decode_file(path, Temporal { num_frames: 1, sampling_rate: 1, target_fps: 30.0 }, &[]).map(|_| ())
}
