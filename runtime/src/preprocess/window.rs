//! One square view of a clip in a single pass: PySlowFast's spatial
//! sampling (`random_short_side_scale_jitter`, then `random_crop` and
//! `horizontal_flip` in training, or `uniform_crop` in testing) and
//! `tensor_normalize`, computing only the pixels inside the crop.
//!
//! Resizing a whole frame to a 256-320 short side and then keeping a 224
//! square throws away half of the work; here the bilinear taps of the
//! crop's rows and columns are picked out of the full-frame taps, so every
//! output equals the same pixel of the resized frame. The pass is separable
//! in the same order as ATen's kernel (columns within a row first, then
//! the two rows), and each source row is interpolated once per frame.

use super::{Normalization, PreprocessError, Taps};

/// Where the view lies in the resized frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropWindow {
    /// Size of the frame after its short side is resized, `(width, height)`.
    pub scaled: (usize, usize),
    /// Top-left corner of the crop in the resized frame, `(y, x)`.
    pub offset: (usize, usize),
    /// Side of the square crop.
    pub size: usize,
    /// Mirror left-right after cropping.
    pub flip: bool,
}

impl Taps {
    /// The taps of outputs `start..start + len` (reversed when `flip`).
    fn window(&self, start: usize, len: usize, flip: bool) -> Taps {
        let pick = |o: usize| if flip { start + len - 1 - o } else { start + o };
        Taps {
            i0: (0..len).map(|o| self.i0[pick(o)]).collect(),
            i1: (0..len).map(|o| self.i1[pick(o)]).collect(),
            w0: (0..len).map(|o| self.w0[pick(o)]).collect(),
            w1: (0..len).map(|o| self.w1[pick(o)]).collect(),
        }
    }
}

/// How a pixel is stored in packed frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packing {
    /// Three bytes: R, G, B.
    Rgb,
    /// Four bytes: R, G, B and one unused. GStreamer's videoconvert writes
    /// this from YUV on a direct path (the same values as its RGB, about
    /// twice as fast), and the crop reads a pixel with one load.
    Rgbx,
}

impl Packing {
    pub const fn bytes(self) -> usize {
        match self {
            Packing::Rgb => 3,
            Packing::Rgbx => 4,
        }
    }
}

/// `count` packed frames of `width x height`, one after another, rows
/// without padding.
#[derive(Debug, Clone, Copy)]
pub struct PackedFrames<'a> {
    pub data: &'a [u8],
    pub count: usize,
    pub width: usize,
    pub height: usize,
    pub packing: Packing,
}

/// A decoded clip before augmentation, owning its frames: what every
/// training source (video files, frame folders, the synthetic set) produces
/// and the crops consume.
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

/// Resizes, crops and normalises packed frames into a planar
/// `[3, frames, size, size]` clip.
pub fn crop_clip(frames: &PackedFrames, window: &CropWindow, norm: &Normalization) -> Result<Vec<f32>, PreprocessError> {
    let mut out = vec![0.0f32; 3 * frames.count * window.size * window.size];
    crop_clip_into(frames, window, norm, &mut out)?;
    Ok(out)
}

/// [`crop_clip`] into `out` (`3 * frames * size * size` values, every one
/// written): a loader fills its batch tensor in place, with no staging
/// buffer and no copy.
pub fn crop_clip_into(pixels: &PackedFrames, window: &CropWindow, norm: &Normalization, out: &mut [f32]) -> Result<(), PreprocessError> {
    let &PackedFrames { data, count: frames, width, height, packing } = pixels;
    let frame_len = width * height * packing.bytes();
    if frame_len == 0 || frames == 0 || data.len() != frames * frame_len {
        return Err(PreprocessError::FrameSize { width, height, got: data.len() / frames.max(1), expected: frame_len });
    }
    let CropWindow { scaled: (sw, sh), offset: (y0, x0), size, flip } = *window;
    if size == 0 || y0 + size > sh || x0 + size > sw {
        return Err(PreprocessError::TooSmall { width: sw.saturating_sub(x0), height: sh.saturating_sub(y0), size });
    }
    let plane = size * size;
    if out.len() != 3 * frames * plane {
        return Err(PreprocessError::OutputSize { got: out.len(), expected: 3 * frames * plane });
    }
    let xs = Taps::new(width, sw).window(x0, size, flip);
    let ys = Taps::new(height, sh).window(y0, size, false);
    let affine = norm.affine();
    let mut rows = RowCache::new(size, width, packing);
    for (t, frame) in data.chunks_exact(frame_len).enumerate() {
        rows.clear();
        for oy in 0..size {
            let (top, bottom) = rows.pair(frame, &xs, ys.i0[oy], ys.i1[oy]);
            let (h0, h1) = (ys.w0[oy], ys.w1[oy]);
            for (c, &(scale, shift)) in affine.iter().enumerate() {
                let dst = &mut out[(c * frames + t) * plane + oy * size..][..size];
                let (top, bottom) = (&top[c * size..][..size], &bottom[c * size..][..size]);
                for ((d, &a), &b) in dst.iter_mut().zip(top).zip(bottom) {
                    *d = (a * h0 + b * h1) * scale + shift;
                }
            }
        }
    }
    Ok(())
}

/// The last two source rows interpolated along x, planar (`[3][size]`
/// f32, so the vertical pass runs over contiguous values): output rows walk
/// down the frame, so each source row is computed once.
struct RowCache {
    rows: [(usize, Vec<f32>); 2],
    /// Of the source frames.
    width: usize,
    packing: Packing,
}

impl RowCache {
    fn new(size: usize, width: usize, packing: Packing) -> RowCache {
        let row = || (usize::MAX, vec![0.0; size * 3]);
        RowCache { rows: [row(), row()], width, packing }
    }

    fn clear(&mut self) {
        self.rows[0].0 = usize::MAX;
        self.rows[1].0 = usize::MAX;
    }

    /// Rows `r0` and `r1` (`r1` is `r0` or `r0 + 1`), interpolated.
    fn pair(&mut self, frame: &[u8], xs: &Taps, r0: usize, r1: usize) -> (&[f32], &[f32]) {
        let bytes = self.packing.bytes();
        let row_len = self.width * bytes;
        if self.rows[0].0 != r0 {
            if self.rows[1].0 == r0 {
                self.rows.swap(0, 1);
            } else {
                interpolate_row(&frame[r0 * row_len..][..row_len], bytes, xs, &mut self.rows[0].1);
                self.rows[0].0 = r0;
            }
        }
        if r1 != r0 && self.rows[1].0 != r1 {
            interpolate_row(&frame[r1 * row_len..][..row_len], bytes, xs, &mut self.rows[1].1);
            self.rows[1].0 = r1;
        }
        let [a, b] = &self.rows;
        (&a.1, if r1 == r0 { &a.1 } else { &b.1 })
    }
}

/// One packed source row (`bytes` a pixel, R, G, B first) interpolated
/// along x into planar `[r | g | b]`.
fn interpolate_row(src: &[u8], bytes: usize, xs: &Taps, out: &mut [f32]) {
    // SAFETY: SSE2 is part of every x86-64 CPU (the baseline target).
    #[cfg(target_arch = "x86_64")]
    unsafe {
        sse2::interpolate_row(src, bytes, xs, out)
    };
    #[cfg(not(target_arch = "x86_64"))]
    interpolate_row_scalar(src, bytes, xs, out);
}

/// The reference for the vector path: per channel `p * w0 + q * w1` in f32,
/// two products and a sum, as ATen computes it.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn interpolate_row_scalar(src: &[u8], bytes: usize, xs: &Taps, out: &mut [f32]) {
    let size = xs.i0.len();
    let (r, gb) = out.split_at_mut(size);
    let (g, b) = gb.split_at_mut(size);
    for ox in 0..size {
        let (p, q) = (&src[xs.i0[ox] * bytes..][..3], &src[xs.i1[ox] * bytes..][..3]);
        let (w0, w1) = (xs.w0[ox], xs.w1[ox]);
        r[ox] = f32::from(p[0]) * w0 + f32::from(q[0]) * w1;
        g[ox] = f32::from(p[1]) * w0 + f32::from(q[1]) * w1;
        b[ox] = f32::from(p[2]) * w0 + f32::from(q[2]) * w1;
    }
}

/// The three channels of a pixel in three lanes of one SSE2 register (part
/// of every x86-64 CPU), so a tap is one multiply and the pair one add: the
/// same f32 operations in the same order as the scalar loop, in 40 % less
/// of the training loader's time (the scalar loop was 7 % of it).
#[cfg(target_arch = "x86_64")]
mod sse2 {
    use std::arch::x86_64::*;

    use super::Taps;

    #[target_feature(enable = "sse2")]
    pub(super) fn interpolate_row(src: &[u8], bytes: usize, xs: &Taps, out: &mut [f32]) {
        match bytes {
            4 => row(src.as_chunks::<4>().0, xs, out),
            _ => row(src.as_chunks::<3>().0, xs, out),
        }
    }

    /// A pixel's bytes as `[r, g, b, _]` f32.
    #[inline]
    #[target_feature(enable = "sse2")]
    fn lanes<const N: usize>(p: &[u8; N]) -> __m128 {
        let word = u32::from_le_bytes([p[0], p[1], p[2], p.get(3).copied().unwrap_or(0)]);
        let zero = _mm_setzero_si128();
        let v = _mm_cvtsi32_si128(word as i32);
        _mm_cvtepi32_ps(_mm_unpacklo_epi16(_mm_unpacklo_epi8(v, zero), zero))
    }

    #[inline]
    #[target_feature(enable = "sse2")]
    fn row<const N: usize>(pixels: &[[u8; N]], xs: &Taps, out: &mut [f32]) {
        let size = xs.i0.len();
        let (r, gb) = out.split_at_mut(size);
        let (g, b) = gb.split_at_mut(size);
        let (g, b) = (&mut g[..size], &mut b[..size]);
        let taps = xs.i0.iter().zip(&xs.i1).zip(xs.w0.iter().zip(&xs.w1));
        for (ox, ((&i0, &i1), (&w0, &w1))) in taps.enumerate().take(size) {
            let p = _mm_mul_ps(lanes(&pixels[i0]), _mm_set1_ps(w0));
            let q = _mm_mul_ps(lanes(&pixels[i1]), _mm_set1_ps(w1));
            let v = _mm_add_ps(p, q);
            r[ox] = _mm_cvtss_f32(v);
            g[ox] = _mm_cvtss_f32(_mm_shuffle_ps::<1>(v, v));
            b[ox] = _mm_cvtss_f32(_mm_shuffle_ps::<2>(v, v));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ScaledFrame, SpatialCrop, scale_frame, scaled_size};
    use super::*;

    const NORM: Normalization = Normalization { mean: [0.45, 0.4, 0.35], std: [0.225, 0.25, 0.2] };

    fn frames(n: usize, w: usize, h: usize) -> Vec<u8> {
        (0..n * w * h * 3).map(|i| ((i * 7919) % 251) as u8).collect()
    }

    fn rgb(data: &[u8], count: usize, width: usize, height: usize) -> PackedFrames<'_> {
        PackedFrames { data, count, width, height, packing: Packing::Rgb }
    }

    /// The same pixels with a fourth byte (never read) after each.
    fn padded(rgb: &[u8]) -> Vec<u8> {
        rgb.chunks_exact(3).flat_map(|p| [p[0], p[1], p[2], 0xa5]).collect()
    }

    /// The same view cut out of a whole resized frame.
    fn cut(f: &ScaledFrame, (y0, x0): (usize, usize), size: usize, flip: bool) -> Vec<f32> {
        let mut v = Vec::new();
        for c in 0..3 {
            for y in 0..size {
                for x in 0..size {
                    let x = if flip { x0 + size - 1 - x } else { x0 + x };
                    v.push(f.data[c * f.width * f.height + (y0 + y) * f.width + x]);
                }
            }
        }
        v
    }

    #[test]
    fn equals_the_crop_of_the_whole_resized_frame() {
        let (w, h) = (37, 23);
        for (short, offset, size, flip) in [(30, (3, 11), 24, true), (23, (0, 13), 23, false), (17, (2, 5), 12, true)] {
            let data = frames(1, w, h);
            let scaled = scaled_size(w, h, short);
            let whole = scale_frame(&data, w, h, short, &NORM).unwrap();
            let got = crop_clip(&rgb(&data, 1, w, h), &CropWindow { scaled, offset, size, flip }, &NORM).unwrap();
            let want = cut(&whole, offset, size, flip);
            let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(worst < 1e-6, "short side {short}: {worst}");
        }
    }

    #[test]
    fn frames_land_in_their_planes() {
        let (w, h, n) = (20, 16, 3);
        let data = frames(n, w, h);
        let window = CropWindow { scaled: (20, 16), offset: SpatialCrop::Centre.offset(20, 16, 16), size: 16, flip: false };
        let clip = crop_clip(&rgb(&data, n, w, h), &window, &NORM).unwrap();
        for t in 0..n {
            let one = crop_clip(&rgb(&data[t * w * h * 3..][..w * h * 3], 1, w, h), &window, &NORM).unwrap();
            for c in 0..3 {
                assert_eq!(&clip[(c * n + t) * 256..][..256], &one[c * 256..][..256]);
            }
        }
    }

    #[test]
    fn bad_sizes_are_errors() {
        let data = frames(2, 8, 8);
        let window = CropWindow { scaled: (8, 8), offset: (1, 0), size: 8, flip: false };
        assert!(matches!(crop_clip(&rgb(&data, 2, 8, 8), &window, &NORM), Err(PreprocessError::TooSmall { .. })));
        let window = CropWindow { offset: (0, 0), ..window };
        assert!(matches!(crop_clip(&rgb(&data[1..], 2, 8, 8), &window, &NORM), Err(PreprocessError::FrameSize { .. })));
        assert!(crop_clip(&rgb(&data, 2, 8, 8), &window, &NORM).is_ok());
        let rgbx = PackedFrames { packing: Packing::Rgbx, ..rgb(&data, 2, 8, 8) };
        assert!(matches!(crop_clip(&rgbx, &window, &NORM), Err(PreprocessError::FrameSize { expected: 256, .. })));
        let mut short = vec![0.0; 3 * 8 * 8];
        let got = crop_clip_into(&rgb(&data, 2, 8, 8), &window, &NORM, &mut short);
        assert!(matches!(got, Err(PreprocessError::OutputSize { got: 192, expected: 384 })));
    }

    #[test]
    fn rgbx_frames_give_the_rgb_values() {
        let (w, h, n) = (33, 21, 2);
        let data = frames(n, w, h);
        let rgbx = padded(&data);
        for (short, flip) in [(27, true), (21, false), (40, true)] {
            let scaled = scaled_size(w, h, short);
            let window = CropWindow { scaled, offset: (scaled.1 - 21, scaled.0 - 21), size: 21, flip };
            let want = crop_clip(&rgb(&data, n, w, h), &window, &NORM).unwrap();
            let got = crop_clip(&PackedFrames { packing: Packing::Rgbx, ..rgb(&rgbx, n, w, h) }, &window, &NORM).unwrap();
            assert_eq!(got, want, "short side {short}");
        }
    }

    /// The vector path computes the same floats as the scalar one, bit for
    /// bit, for both packings, up to the last pixel of a row.
    #[test]
    fn row_interpolation_is_the_scalar_arithmetic() {
        let w = 29;
        let row = frames(1, w, 1);
        for (packing, src) in [(Packing::Rgb, row.clone()), (Packing::Rgbx, padded(&row))] {
            for (out_len, start, len, flip) in [(41, 3, 30, false), (41, 11, 30, true), (29, 0, 29, false), (17, 0, 17, true)] {
                let xs = Taps::new(w, out_len).window(start, len, flip);
                let (mut want, mut got) = (vec![0.0; 3 * len], vec![1.0; 3 * len]);
                interpolate_row_scalar(&src, packing.bytes(), &xs, &mut want);
                interpolate_row(&src, packing.bytes(), &xs, &mut got);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "{packing:?} {out_len} {start} {len} {flip}");
            }
        }
    }
}
