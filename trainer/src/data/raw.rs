//! A decoded clip before augmentation: what every source (video files,
//! frame folders, the synthetic set) produces and the transforms consume.

use runtime::preprocess::{PackedFrames, Packing};

/// `frames` packed frames of `height x width`: RGB, or RGBx as videos
/// decode to (see `runtime::preprocess::Packing`).
#[derive(Debug, Clone)]
pub struct RawClip {
    pub data: Vec<u8>,
    pub frames: usize,
    pub height: usize,
    pub width: usize,
    pub packing: Packing,
}

impl RawClip {
    pub fn pixels(&self) -> PackedFrames<'_> {
        PackedFrames { data: &self.data, count: self.frames, width: self.width, height: self.height, packing: self.packing }
    }
}
