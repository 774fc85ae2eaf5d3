//! PySlowFast's spatial transforms on packed u8 clips (`[T, H, W, 3]`, or
//! 4 bytes a pixel as videos decode): random
//! short-side scale jitter, random crop and flip for training; short side
//! to the crop size and left/centre/right crops for testing; then
//! `(x / 255 - mean) / std` into `[3, T, H, W]` f32. The pixels come from
//! `runtime::preprocess::crop_clip`, which computes only the crop (pinned
//! to torch by the runtime's preprocessing fixture); this module draws the
//! random parameters the way PySlowFast does.

use runtime::preprocess::{CropWindow, Normalization, SpatialCrop, crop_clip_into, scaled_size};
use tch::{Device, Kind, Tensor};

use super::rng::Rng;
use runtime::preprocess::RawClip;

/// Writes `raw` cut as `window` says into `out` (`[3, T, size, size]`); a
/// clip whose buffer does not hold its frames is refused.
fn view(raw: &RawClip, window: CropWindow, n: &Normalization, out: &mut Tensor) -> Result<(), String> {
    let values = values_mut(out)?;
    crop_clip_into(&raw.pixels(), &window, n, values).map_err(|e| e.to_string())
}

/// The values of a contiguous f32 CPU tensor, for clips to be written
/// straight into the batch instead of through a staging copy.
fn values_mut(t: &mut Tensor) -> Result<&mut [f32], String> {
    if t.kind() != Kind::Float || t.device() != Device::Cpu || !t.is_contiguous() {
        return Err(format!("clip tensor must be contiguous f32 on the CPU, is {:?} on {:?}", t.kind(), t.device()));
    }
    let len = t.numel();
    let data = t.data_ptr() as *mut f32;
    if len == 0 || data.is_null() {
        return Ok(&mut []);
    }
    // SAFETY: a contiguous f32 CPU tensor stores `numel` f32 values from
    // `data_ptr` (checked above, non-null as it holds values); the
    // exclusive borrow of `t` lasts as long as the slice, and the loader
    // reads the batch only after every clip is written.
    Ok(unsafe { std::slice::from_raw_parts_mut(data, len) })
}

/// An uninitialised `[clips, 3, frames, size, size]` batch for views to fill.
pub fn empty_batch(clips: usize, frames: usize, size: u32) -> Tensor {
    let size = size as i64;
    Tensor::empty([clips as i64, 3, frames as i64, size, size], (Kind::Float, Device::Cpu))
}

/// Training view: short side drawn from `jitter` (PySlowFast's
/// `random_short_side_scale_jitter`), a random `crop` square
/// (`random_crop`: offsets in `0..len - crop`, so never the last one), a
/// horizontal flip with probability 0.5 when `flip`.
/// Written into `out`, one `[3, T, crop, crop]` clip of a batch.
pub fn train_view(
    raw: &RawClip,
    rng: &mut Rng,
    jitter: [u32; 2],
    crop: u32,
    flip: bool,
    n: &Normalization,
    out: &mut Tensor,
) -> Result<(), String> {
    let short = (rng.range(jitter[0] as f64, jitter[1] as f64).round() as usize).max(crop as usize);
    let scaled = scaled_size(raw.width, raw.height, short);
    let c = crop as usize;
    let mut offset = |len: usize| if len > c { rng.below(len - c) } else { 0 };
    let y0 = offset(scaled.1);
    let x0 = offset(scaled.0);
    let flip = flip && rng.coin();
    view(raw, CropWindow { scaled, offset: (y0, x0), size: c, flip }, n, out)
}

/// Test view: short side to `crop`, then crop `index` of `count` along the
/// long side (count 1: centre; count 3: PySlowFast's `uniform_crop` 0/1/2),
/// written into `out`.
pub fn test_view_into(raw: &RawClip, crop: u32, index: usize, count: usize, n: &Normalization, out: &mut Tensor) -> Result<(), String> {
    let c = crop as usize;
    let scaled = scaled_size(raw.width, raw.height, c);
    let kind = SpatialCrop::views(count).and_then(|v| v.get(index)).copied().unwrap_or(SpatialCrop::Centre);
    view(raw, CropWindow { scaled, offset: kind.offset(scaled.0, scaled.1, c), size: c, flip: false }, n, out)
}

/// [`test_view_into`] as a clip of its own, `[3, T, crop, crop]`.
pub fn test_view(raw: &RawClip, crop: u32, index: usize, count: usize, n: &Normalization) -> Result<Tensor, String> {
    let mut out = empty_batch(1, raw.frames, crop).squeeze_dim(0);
    test_view_into(raw, crop, index, count, n, &mut out)?;
    Ok(out)
}

/// Stacks `[3, T, H, W]` fast clips and picks the slow frames:
/// `(slow [N, 3, T/alpha, H, W], fast [N, 3, T, H, W])`.
pub fn pathways(clips: &[Tensor], alpha: usize) -> (Tensor, Tensor) {
    batch_pathways(Tensor::stack(clips, 0), alpha)
}

/// The slow frames of a `[N, 3, T, H, W]` fast batch: `(slow, fast)`.
pub fn batch_pathways(fast: Tensor, alpha: usize) -> (Tensor, Tensor) {
    let t = fast.size()[2] as usize;
    let idx: Vec<i64> = runtime::sampling::slow_indices(t, alpha).into_iter().map(|i| i as i64).collect();
    (fast.index_select(2, &Tensor::from_slice(&idx)), fast)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(frames: usize, h: usize, w: usize) -> RawClip {
        let data = (0..frames * h * w * 3).map(|i| ((i / 3) % w) as u8).collect();
        RawClip { data, frames, height: h, width: w, packing: runtime::preprocess::Packing::Rgb }
    }

    #[test]
    fn train_view_shape_and_normalisation() {
        let n = Normalization { mean: [0.5; 3], std: [0.25; 3] };
        let mut x = empty_batch(1, 4, 32).squeeze_dim(0);
        train_view(&ramp(4, 40, 60), &mut Rng::new(1), [40, 48], 32, true, &n, &mut x).unwrap();
        assert_eq!(x.size(), [3, 4, 32, 32]);
        let max = x.max().double_value(&[]);
        assert!(max <= (60.0 / 255.0 - 0.5) / 0.25 + 1e-4, "{max}");
    }

    #[test]
    fn three_test_crops_cover_left_centre_right() {
        let n = Normalization { mean: [0.0; 3], std: [1.0; 3] };
        let raw = ramp(2, 32, 64);
        let left = test_view(&raw, 32, 0, 3, &n).unwrap();
        let right = test_view(&raw, 32, 2, 3, &n).unwrap();
        let centre = test_view(&raw, 32, 1, 3, &n).unwrap();
        let first = |t: &Tensor| (t.double_value(&[0, 0, 0, 0]) * 255.0).round();
        assert_eq!(first(&left), 0.0);
        assert_eq!(first(&centre), 16.0);
        assert_eq!(first(&right), 32.0);
    }
}
