//! Frames read, gathered the two ways callers want them: as the clips a
//! loader samples (one buffer per clip, as decoded), or as every frame of
//! a video in packed RGB (tests, the demo).

use std::cell::Cell;
use std::path::Path;

use super::read::{read_all, read_frames};
use super::{DecodeError, PACKING};
use crate::preprocess::RawClip;

/// The rate `pick` is given when the container states none (the loaders'
/// convention, PySlowFast's Kinetics rate).
const DEFAULT_FPS: f64 = 30.0;

/// Decodes the frames `pick(total_frames, fps)` asks for, one clip per
/// returned index list.
pub fn decode_clips(location: impl AsRef<Path>, pick: impl Fn(usize, f64) -> Vec<Vec<usize>>) -> Result<Vec<RawClip>, DecodeError> {
    let (mut numbers, mut data, mut size) = (Vec::new(), Vec::new(), (0, 0));
    // The clips picked from the stated frame count; picked after reading
    // when the container states none.
    let picked = Cell::new(None);
    let expected = Cell::new(1);
    let read = read_frames(
        location,
        |total, fps| {
            let clips = pick(total, fps.unwrap_or(DEFAULT_FPS));
            let wanted: Vec<usize> = clips.iter().flatten().copied().collect();
            expected.set(wanted.len());
            picked.set(Some(clips));
            wanted
        },
        |frame| {
            if numbers.is_empty() {
                // Frames are copied once, into one buffer sized for all.
                size = (frame.width, frame.height);
                data.reserve_exact(expected.get() * frame.width * frame.height * PACKING.bytes());
            }
            frame.extend_packed(&mut data);
            numbers.push(frame.index);
            Ok(())
        },
    )?;
    let mut clips = picked.take().unwrap_or_else(|| pick(read.probe.frames, read.probe.fps.unwrap_or(DEFAULT_FPS)));
    let (w, h) = size;
    // One clip of exactly the frames decoded (training): the clip is the
    // decoded buffer itself.
    if let [idx] = clips.as_slice()
        && *idx == numbers
    {
        return Ok(vec![RawClip { data, frames: idx.len(), height: h, width: w, packing: PACKING }]);
    }
    let frame_len = w * h * PACKING.bytes();
    Ok(clips
        .drain(..)
        .map(|idx| {
            let mut clip = Vec::with_capacity(idx.len() * frame_len);
            for i in &idx {
                // The latest frame read at or before index `i`: a stream
                // shorter than its header says (truncated) repeats the last
                // sampled frame it has, as the reference clamps indices.
                let k = numbers.partition_point(|n| n <= i).max(1) - 1;
                clip.extend_from_slice(&data[k * frame_len..][..frame_len]);
            }
            RawClip { data: clip, frames: idx.len(), height: h, width: w, packing: PACKING }
        })
        .collect())
}

/// One decoded frame, packed RGB (no row padding).
#[derive(Debug, Clone)]
pub struct RgbFrame {
    pub width: usize,
    pub height: usize,
    pub pts_ns: Option<u64>,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct DecodedVideo {
    pub frames: Vec<RgbFrame>,
    /// Frame rate from the caps, when the container states one.
    pub fps: Option<f64>,
}

/// Decodes every video frame of `location` to packed RGB.
pub fn decode_all(location: impl AsRef<Path>) -> Result<DecodedVideo, DecodeError> {
    let mut frames = Vec::new();
    let read = read_all(location, |f| {
        let mut data = Vec::with_capacity(f.width * f.height * 3);
        for y in 0..f.height {
            data.extend(f.row(y).chunks_exact(PACKING.bytes()).flat_map(|px| &px[..3]));
        }
        frames.push(RgbFrame { width: f.width, height: f.height, pts_ns: f.pts_ns, data });
        Ok(())
    })?;
    Ok(DecodedVideo { frames, fps: read.probe.fps })
}
