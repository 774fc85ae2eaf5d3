//! PySlowFast's spatial transforms on `[T, H, W, 3]` u8 clips: random
//! short-side scale jitter, random crop and flip for training; short side
//! to the crop size and left/centre/right crops for testing; then
//! `(x / 255 - mean) / std` into `[3, T, H, W]` f32.

use tch::{Kind, Tensor};

use super::rng::Rng;
use super::source::RawClip;

/// Mean and std per channel, on [0, 1] RGB.
#[derive(Debug, Clone, Copy)]
pub struct Normalize {
    pub mean: [f64; 3],
    pub std: [f64; 3],
}

/// `[T, 3, H, W]` float in [0, 1].
fn to_float(raw: &RawClip) -> Tensor {
    let dims = [raw.frames as i64, raw.height as i64, raw.width as i64, 3];
    Tensor::from_slice(&raw.data).view(dims).permute([0, 3, 1, 2]).to_kind(Kind::Float) / 255.0
}

/// Short side to `size` (the long side scaled and floored, as PySlowFast's
/// `short_side_scale`), bilinear without corner alignment.
fn short_side(x: &Tensor, size: i64) -> Tensor {
    let (h, w) = (x.size()[2], x.size()[3]);
    let (nh, nw) = if w < h { ((h as f64 / w as f64 * size as f64).floor() as i64, size) } else { (size, (w as f64 / h as f64 * size as f64).floor() as i64) };
    if (nh, nw) == (h, w) {
        return x.shallow_clone();
    }
    x.upsample_bilinear2d([nh, nw], false, None, None)
}

fn finish(x: Tensor, n: &Normalize) -> Tensor {
    let mean = Tensor::from_slice(&n.mean.map(|v| v as f32)).view([1, 3, 1, 1]);
    let std = Tensor::from_slice(&n.std.map(|v| v as f32)).view([1, 3, 1, 1]);
    ((x - mean) / std).permute([1, 0, 2, 3]).contiguous()
}

/// Training view: short side drawn from `jitter`, a random `crop` square,
/// a horizontal flip with probability 0.5 when `flip`.
pub fn train_view(raw: &RawClip, rng: &mut Rng, jitter: [u32; 2], crop: u32, flip: bool, n: &Normalize) -> Tensor {
    let scale = rng.range(jitter[0] as f64, jitter[1] as f64).round() as i64;
    let x = short_side(&to_float(raw), scale.max(crop as i64));
    let (h, w, c) = (x.size()[2], x.size()[3], crop as i64);
    let y0 = rng.below((h - c + 1) as usize) as i64;
    let x0 = rng.below((w - c + 1) as usize) as i64;
    let mut x = x.narrow(2, y0, c).narrow(3, x0, c);
    if flip && rng.coin() {
        x = x.flip([3]);
    }
    finish(x, n)
}

/// Test view: short side to `crop`, then crop `index` of `count` along the
/// long side (count 1: centre; count 3: PySlowFast's `uniform_crop` 0/1/2).
pub fn test_view(raw: &RawClip, crop: u32, index: usize, count: usize, n: &Normalize) -> Tensor {
    let c = crop as i64;
    let x = short_side(&to_float(raw), c);
    let (h, w) = (x.size()[2], x.size()[3]);
    let centre = |len: i64| ((len - c) as f64 / 2.0).ceil() as i64;
    let (mut y0, mut x0) = (centre(h), centre(w));
    if count == 3 && index != 1 {
        let end = index == 2;
        if h > w {
            y0 = if end { h - c } else { 0 };
        } else {
            x0 = if end { w - c } else { 0 };
        }
    }
    finish(x.narrow(2, y0, c).narrow(3, x0, c), n)
}

/// Stacks `[3, T, H, W]` fast clips and picks the slow frames:
/// `(slow [N, 3, T/alpha, H, W], fast [N, 3, T, H, W])`.
pub fn pathways(clips: &[Tensor], alpha: usize) -> (Tensor, Tensor) {
    let fast = Tensor::stack(clips, 0);
    let t = fast.size()[2] as usize;
    let idx: Vec<i64> = runtime::sampling::slow_indices(t, alpha).into_iter().map(|i| i as i64).collect();
    (fast.index_select(2, &Tensor::from_slice(&idx)), fast)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(frames: usize, h: usize, w: usize) -> RawClip {
        let data = (0..frames * h * w * 3).map(|i| ((i / 3) % w) as u8).collect();
        RawClip { data, frames, height: h, width: w }
    }

    #[test]
    fn train_view_shape_and_normalisation() {
        let n = Normalize { mean: [0.5; 3], std: [0.25; 3] };
        let x = train_view(&ramp(4, 40, 60), &mut Rng::new(1), [40, 48], 32, true, &n);
        assert_eq!(x.size(), [3, 4, 32, 32]);
        let max = x.max().double_value(&[]);
        assert!(max <= (60.0 / 255.0 - 0.5) / 0.25 + 1e-4, "{max}");
    }

    #[test]
    fn three_test_crops_cover_left_centre_right() {
        let n = Normalize { mean: [0.0; 3], std: [1.0; 3] };
        let raw = ramp(2, 32, 64);
        let left = test_view(&raw, 32, 0, 3, &n);
        let right = test_view(&raw, 32, 2, 3, &n);
        let centre = test_view(&raw, 32, 1, 3, &n);
        let first = |t: &Tensor| (t.double_value(&[0, 0, 0, 0]) * 255.0).round();
        assert_eq!(first(&left), 0.0);
        assert_eq!(first(&centre), 16.0);
        assert_eq!(first(&right), 32.0);
    }
}
