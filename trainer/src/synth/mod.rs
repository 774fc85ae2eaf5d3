//! A synthetic motion data set whose classes can only be told apart over
//! time: every class draws its shape, colours, texture, background and noise
//! from the same distribution, so any single frame says nothing about the
//! label. Clips are rendered in memory ([`render_clip`]) and, with the
//! `video` feature, written as H.264 MP4 files ([`write`]). Everything is a
//! function of the seed, the split and the clip index.

mod render;
pub mod video;
#[cfg(feature = "video")]
pub mod write;

pub use render::render_clip;
pub use video::{Segment, Video, render_video};

/// Class names, in label order.
pub const CLASSES: [&str; 11] = [
    "move_right",
    "move_left",
    "move_up",
    "move_down",
    "move_fast",
    "rotate_clockwise",
    "rotate_counterclockwise",
    "zoom_in",
    "zoom_out",
    "flash",
    "still",
];

/// Frame rate the clips are written at and meant to be read at.
pub const FPS: u32 = 30;

/// Which part of the set a clip belongs to; splits never share a clip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Val,
}

impl Split {
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
        }
    }
}

/// Size and length of every clip and the seed of the whole set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynthSpec {
    pub size: u32,
    pub frames: usize,
    pub seed: u64,
}

/// One clip: packed RGB frames of `size x size`.
#[derive(Debug, Clone)]
pub struct Clip {
    pub size: u32,
    pub frames: Vec<Vec<u8>>,
    pub label: usize,
}

/// Classes are dealt round-robin, so every split is balanced.
pub fn label_of(index: usize) -> usize {
    index % CLASSES.len()
}
