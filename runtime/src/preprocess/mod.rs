//! PySlowFast's test-time transforms, without libtorch: short side resized
//! to the crop size (`random_short_side_scale_jitter` with min = max, i.e.
//! `F.interpolate(mode="bilinear", align_corners=False)`), normalisation
//! `(x / 255 - mean) / std`, then `uniform_crop` with spatial index 0, 1 or 2.
//!
//! PySlowFast normalises before resizing; bilinear weights sum to one, so
//! normalising after gives the same values (to float rounding) while
//! touching only the resized pixels.

mod window;

pub use window::{CropWindow, PackedFrames, Packing, RawClip, crop_clip, crop_clip_into};

#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    #[error("frame of {width}x{height} has {got} bytes, expected {expected} (packed RGB or RGBx)")]
    FrameSize { width: usize, height: usize, got: usize, expected: usize },
    #[error("frame of {width}x{height} is smaller than the {size}x{size} crop after resizing")]
    TooSmall { width: usize, height: usize, size: usize },
    #[error("clip needs {needed} frames but frame {index} was requested")]
    MissingFrame { needed: usize, index: usize },
    #[error("the frames of one clip differ in size: {a:?} and {b:?}")]
    MixedSizes { a: (usize, usize), b: (usize, usize) },
    #[error("clip output holds {got} values, the crop needs {expected}")]
    OutputSize { got: usize, expected: usize },
}

/// Per-channel normalisation of `[0, 1]` RGB.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalization {
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Normalization {
    /// Folds `/ 255`, `- mean` and `/ std` into one multiply-add per value.
    fn affine(&self) -> [(f32, f32); 3] {
        std::array::from_fn(|c| (1.0 / (255.0 * self.std[c]), -self.mean[c] / self.std[c]))
    }
}

/// A frame with its short side resized to the crop size and normalised,
/// planar `[3, height, width]`: what the crops of every view are cut from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScaledFrame {
    pub width: usize,
    pub height: usize,
    pub data: Vec<f32>,
}

/// Size after resizing the short side to `short_side`, the long side
/// rounded down as PySlowFast does (`int(math.floor(long / short * size))`).
pub fn scaled_size(width: usize, height: usize, short_side: usize) -> (usize, usize) {
    if width == 0 || height == 0 {
        return (0, 0);
    }
    if width < height {
        (short_side, (height as f64 / width as f64 * short_side as f64).floor() as usize)
    } else {
        ((width as f64 / height as f64 * short_side as f64).floor() as usize, short_side)
    }
}

/// Source taps of torch's bilinear kernel (align_corners=False) along one axis.
struct Taps {
    i0: Vec<usize>,
    i1: Vec<usize>,
    w0: Vec<f32>,
    w1: Vec<f32>,
}

impl Taps {
    /// Same float steps as ATen's `compute_indices_weights_linear`: scale
    /// `in / out` in f32, source `scale * (dst + 0.5) - 0.5` clamped at 0.
    fn new(input: usize, output: usize) -> Taps {
        let scale = input as f32 / output as f32;
        let mut t = Taps { i0: Vec::with_capacity(output), i1: Vec::with_capacity(output), w0: vec![], w1: vec![] };
        for o in 0..output {
            let real = (scale * (o as f32 + 0.5) - 0.5).max(0.0);
            let i0 = (real as usize).min(input - 1);
            let l1 = (real - i0 as f32).clamp(0.0, 1.0);
            t.i0.push(i0);
            t.i1.push(if i0 < input - 1 { i0 + 1 } else { i0 });
            t.w0.push(1.0 - l1);
            t.w1.push(l1);
        }
        t
    }
}

/// Pixels a frame can be resized from, whatever its layout in memory: the
/// GStreamer element reads YUV and packed formats through this without
/// converting whole frames first.
pub trait RgbSource {
    fn width(&self) -> usize;
    fn height(&self) -> usize;
    /// The `[r, g, b]` values (0..=255) at column `x`, row `y`.
    fn rgb(&self, x: usize, y: usize) -> [f32; 3];
}

/// A packed RGB buffer without row padding.
pub struct PackedRgb<'a> {
    pub data: &'a [u8],
    pub width: usize,
    pub height: usize,
}

impl<'a> PackedRgb<'a> {
    pub fn new(data: &'a [u8], width: usize, height: usize) -> Result<Self, PreprocessError> {
        let expected = width * height * 3;
        if data.len() != expected || expected == 0 {
            return Err(PreprocessError::FrameSize { width, height, got: data.len(), expected });
        }
        Ok(PackedRgb { data, width, height })
    }
}

impl RgbSource for PackedRgb<'_> {
    fn width(&self) -> usize {
        self.width
    }
    fn height(&self) -> usize {
        self.height
    }
    #[inline]
    fn rgb(&self, x: usize, y: usize) -> [f32; 3] {
        let p = &self.data[(y * self.width + x) * 3..][..3];
        [f32::from(p[0]), f32::from(p[1]), f32::from(p[2])]
    }
}

/// Resizes and normalises one packed RGB frame into `out`, reusing its
/// buffer (the ring buffer calls this for every arriving frame).
pub fn scale_frame_into(
    rgb: &[u8],
    width: usize,
    height: usize,
    short_side: usize,
    norm: &Normalization,
    out: &mut ScaledFrame,
) -> Result<(), PreprocessError> {
    scale_source_into(&PackedRgb::new(rgb, width, height)?, short_side, norm, out)
}

/// Resizes and normalises a frame of any layout into `out`: only the source
/// pixels the bilinear taps touch are read.
pub fn scale_source_into<S: RgbSource>(
    src: &S,
    short_side: usize,
    norm: &Normalization,
    out: &mut ScaledFrame,
) -> Result<(), PreprocessError> {
    let (width, height) = (src.width(), src.height());
    let (ow, oh) = scaled_size(width, height, short_side);
    if ow < short_side || oh < short_side || width == 0 || height == 0 {
        return Err(PreprocessError::TooSmall { width, height, size: short_side });
    }
    let (xs, ys) = (Taps::new(width, ow), Taps::new(height, oh));
    let affine = norm.affine();
    out.width = ow;
    out.height = oh;
    out.data.resize(3 * ow * oh, 0.0);
    let plane = ow * oh;
    for oy in 0..oh {
        let (y0, y1) = (ys.i0[oy], ys.i1[oy]);
        let (h0, h1) = (ys.w0[oy], ys.w1[oy]);
        for ox in 0..ow {
            let (x0, x1) = (xs.i0[ox], xs.i1[ox]);
            let (w0, w1) = (xs.w0[ox], xs.w1[ox]);
            let (p00, p01, p10, p11) = (src.rgb(x0, y0), src.rgb(x1, y0), src.rgb(x0, y1), src.rgb(x1, y1));
            for (c, &(scale, shift)) in affine.iter().enumerate() {
                let top = p00[c] * w0 + p01[c] * w1;
                let bottom = p10[c] * w0 + p11[c] * w1;
                let v = top * h0 + bottom * h1;
                out.data[c * plane + oy * ow + ox] = v * scale + shift;
            }
        }
    }
    Ok(())
}

pub fn scale_frame(
    rgb: &[u8],
    width: usize,
    height: usize,
    short_side: usize,
    norm: &Normalization,
) -> Result<ScaledFrame, PreprocessError> {
    let mut out = ScaledFrame::default();
    scale_frame_into(rgb, width, height, short_side, norm, &mut out)?;
    Ok(out)
}

/// Which of PySlowFast's three spatial crops (`uniform_crop` spatial_idx):
/// along the long side, the start (left/top), centre or end (right/bottom).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpatialCrop {
    Start,
    Centre,
    End,
}

impl SpatialCrop {
    /// The crops of one temporal view: 1 (centre, as PySlowFast's single
    /// crop) or 3 (left/top, centre, right/bottom).
    pub fn views(count: usize) -> Option<&'static [SpatialCrop]> {
        match count {
            1 => Some(&[SpatialCrop::Centre]),
            3 => Some(&[SpatialCrop::Start, SpatialCrop::Centre, SpatialCrop::End]),
            _ => None,
        }
    }

    /// `(y, x)` of the crop's top-left corner; the centre offset rounds up
    /// (`math.ceil((dim - size) / 2)`).
    pub fn offset(self, width: usize, height: usize, size: usize) -> (usize, usize) {
        let centre = |d: usize| (d - size).div_ceil(2);
        let (mut y, mut x) = (centre(height), centre(width));
        let end = |d: usize| d - size;
        match (self, height > width) {
            (SpatialCrop::Centre, _) => {}
            (SpatialCrop::Start, true) => y = 0,
            (SpatialCrop::End, true) => y = end(height),
            (SpatialCrop::Start, false) => x = 0,
            (SpatialCrop::End, false) => x = end(width),
        }
        (y, x)
    }
}

/// One view's input: both pathways as contiguous `[1, 3, T, size, size]`
/// f32 tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct Clip {
    pub slow: Vec<f32>,
    pub fast: Vec<f32>,
    pub slow_frames: usize,
    pub fast_frames: usize,
    pub size: usize,
}

impl Clip {
    pub fn slow_shape(&self) -> [usize; 5] {
        [1, 3, self.slow_frames, self.size, self.size]
    }

    pub fn fast_shape(&self) -> [usize; 5] {
        [1, 3, self.fast_frames, self.size, self.size]
    }

    /// Cuts a `size` crop out of each fast frame (in order) and picks the
    /// slow frames among them by `slow_indices`; pixels are only copied.
    pub fn assemble(fast: &[&ScaledFrame], slow_indices: &[usize], size: usize, crop: SpatialCrop) -> Result<Clip, PreprocessError> {
        let Some(first) = fast.first() else {
            return Err(PreprocessError::MissingFrame { needed: 1, index: 0 });
        };
        let (w, h) = (first.width, first.height);
        if let Some(other) = fast.iter().find(|f| (f.width, f.height) != (w, h)) {
            return Err(PreprocessError::MixedSizes { a: (w, h), b: (other.width, other.height) });
        }
        if w < size || h < size {
            return Err(PreprocessError::TooSmall { width: w, height: h, size });
        }
        if let Some(&bad) = slow_indices.iter().find(|&&i| i >= fast.len()) {
            return Err(PreprocessError::MissingFrame { needed: fast.len(), index: bad });
        }
        let offset = crop.offset(w, h, size);
        let slow_frames: Vec<&ScaledFrame> = slow_indices.iter().map(|&i| fast[i]).collect();
        Ok(Clip {
            slow: crop_pathway(&slow_frames, offset, size),
            fast: crop_pathway(fast, offset, size),
            slow_frames: slow_indices.len(),
            fast_frames: fast.len(),
            size,
        })
    }
}

/// `[3, T, size, size]` from `T` planar frames.
fn crop_pathway(frames: &[&ScaledFrame], (y0, x0): (usize, usize), size: usize) -> Vec<f32> {
    let t = frames.len();
    let mut out = vec![0.0f32; 3 * t * size * size];
    for (ti, f) in frames.iter().enumerate() {
        let plane = f.width * f.height;
        for c in 0..3 {
            let dst = &mut out[(c * t + ti) * size * size..][..size * size];
            for y in 0..size {
                let src = &f.data[c * plane + (y0 + y) * f.width + x0..][..size];
                dst[y * size..(y + 1) * size].copy_from_slice(src);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNIT: Normalization = Normalization { mean: [0.0; 3], std: [1.0 / 255.0; 3] };

    #[test]
    fn sizes_round_down_like_pyslowfast() {
        assert_eq!(scaled_size(340, 256, 224), (297, 224)); // 297.5
        assert_eq!(scaled_size(1920, 1080, 224), (398, 224)); // 398.2
        assert_eq!(scaled_size(240, 320, 256), (256, 341)); // 341.3
    }

    #[test]
    fn crop_offsets_follow_uniform_crop() {
        // wide frame: crops move along x, centre rounds up
        assert_eq!(SpatialCrop::Start.offset(297, 224, 224), (0, 0));
        assert_eq!(SpatialCrop::Centre.offset(297, 224, 224), (0, 37));
        assert_eq!(SpatialCrop::End.offset(297, 224, 224), (0, 73));
        // tall frame: along y
        assert_eq!(SpatialCrop::End.offset(256, 341, 256), (85, 0));
        assert_eq!(SpatialCrop::Centre.offset(256, 341, 256), (43, 0));
    }

    #[test]
    fn identity_size_keeps_pixels_and_upscaling_interpolates() {
        let rgb: Vec<u8> = (0..4 * 4 * 3).map(|i| i as u8).collect();
        let f = scale_frame(&rgb, 4, 4, 4, &UNIT).unwrap();
        for c in 0..3 {
            for p in 0..16 {
                assert!((f.data[c * 16 + p] - rgb[p * 3 + c] as f32).abs() < 1e-4);
            }
        }
        // 1x2 row [0, 100] to width 4: torch gives [0, 25, 75, 100]
        let rgb = [0u8, 0, 0, 100, 100, 100];
        let f = scale_frame(&rgb, 2, 1, 1, &UNIT).unwrap();
        assert_eq!((f.width, f.height), (2, 1));
        let f = scale_frame(&[0, 0, 0, 100, 100, 100, 0, 0, 0, 100, 100, 100], 2, 2, 4, &UNIT).unwrap();
        let row: Vec<f32> = f.data[..4].to_vec();
        for (got, want) in row.iter().zip([0.0, 25.0, 75.0, 100.0]) {
            assert!((got - want).abs() < 1e-4, "{row:?}");
        }
    }

    #[test]
    fn bad_frames_are_errors() {
        assert!(matches!(scale_frame(&[0; 10], 2, 2, 2, &UNIT), Err(PreprocessError::FrameSize { .. })));
        let f = ScaledFrame { width: 3, height: 3, data: vec![0.0; 27] };
        assert!(matches!(Clip::assemble(&[&f], &[0], 4, SpatialCrop::Centre), Err(PreprocessError::TooSmall { .. })));
        assert!(matches!(Clip::assemble(&[&f], &[1], 2, SpatialCrop::Centre), Err(PreprocessError::MissingFrame { .. })));
    }
}
