//! Reading the raw formats cameras and decoders produce as RGB pixels for
//! the ring buffer's resize: only the source pixels the bilinear taps touch
//! are read and converted, so a 1080p frame costs about as much as the
//! small frame it becomes.

use gst_video::{VideoColorMatrix, VideoColorRange, VideoFormat, VideoFrameExt};
use runtime::preprocess::RgbSource;

/// A frame mapped readable in the streaming thread.
pub type Frame<'b> = gst_video::VideoFrameRef<&'b gst::BufferRef>;

/// Formats the element accepts, in the order caps negotiation prefers.
pub const FORMATS: &[VideoFormat] = &[
    VideoFormat::I420,
    VideoFormat::Yv12,
    VideoFormat::Nv12,
    VideoFormat::Nv21,
    VideoFormat::Rgb,
    VideoFormat::Bgr,
    VideoFormat::Rgba,
    VideoFormat::Bgra,
    VideoFormat::Rgbx,
    VideoFormat::Bgrx,
    VideoFormat::Argb,
    VideoFormat::Abgr,
    VideoFormat::Xrgb,
    VideoFormat::Xbgr,
];

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("{0:?} frames are not supported")]
    Format(VideoFormat),
    #[error("cannot read plane {0} of the frame")]
    Plane(u32),
}

/// One mapped frame as RGB pixels, whatever its layout.
pub struct Source<'a> {
    width: usize,
    height: usize,
    layout: Layout<'a>,
}

enum Layout<'a> {
    /// Packed 3 or 4 bytes per pixel; `r`, `g`, `b` are byte offsets.
    Packed { data: &'a [u8], stride: usize, bpp: usize, r: usize, g: usize, b: usize },
    /// Y plane plus half-resolution chroma, planar (I420/YV12) or
    /// interleaved (NV12/NV21).
    Yuv420 { y: &'a [u8], y_stride: usize, u: &'a [u8], v: &'a [u8], uv_stride: usize, uv_step: usize, yuv: Yuv },
}

/// YUV to RGB for one colorimetry: `rgb = m * (yuv - offset) * scale`.
#[derive(Clone, Copy)]
struct Yuv {
    y_off: f32,
    y_scale: f32,
    c_scale: f32,
    /// Cr to R, Cb to G, Cr to G, Cb to B.
    k: [f32; 4],
}

impl Yuv {
    fn new(matrix: VideoColorMatrix, range: VideoColorRange) -> Yuv {
        let k = match matrix {
            VideoColorMatrix::Bt709 => [1.5748, -0.187_324, -0.468_124, 1.8556],
            VideoColorMatrix::Bt2020 => [1.4746, -0.164_553, -0.571_353, 1.8814],
            _ => [1.402, -0.344_136, -0.714_136, 1.772],
        };
        match range {
            VideoColorRange::Range0_255 => Yuv { y_off: 0.0, y_scale: 1.0, c_scale: 1.0, k },
            _ => Yuv { y_off: 16.0, y_scale: 255.0 / 219.0, c_scale: 255.0 / 224.0, k },
        }
    }

    #[inline]
    fn rgb(&self, y: u8, u: u8, v: u8) -> [f32; 3] {
        let y = (f32::from(y) - self.y_off) * self.y_scale;
        let cb = (f32::from(u) - 128.0) * self.c_scale;
        let cr = (f32::from(v) - 128.0) * self.c_scale;
        let [kr, kgb, kgr, kb] = self.k;
        [(y + kr * cr).clamp(0.0, 255.0), (y + kgb * cb + kgr * cr).clamp(0.0, 255.0), (y + kb * cb).clamp(0.0, 255.0)]
    }
}

impl RgbSource for Source<'_> {
    fn width(&self) -> usize {
        self.width
    }

    fn height(&self) -> usize {
        self.height
    }

    #[inline]
    fn rgb(&self, x: usize, y: usize) -> [f32; 3] {
        match &self.layout {
            Layout::Packed { data, stride, bpp, r, g, b } => {
                let p = &data[y * stride + x * bpp..];
                [f32::from(p[*r]), f32::from(p[*g]), f32::from(p[*b])]
            }
            Layout::Yuv420 { y: yp, y_stride, u, v, uv_stride, uv_step, yuv } => {
                let c = (y / 2) * uv_stride + (x / 2) * uv_step;
                yuv.rgb(yp[y * y_stride + x], u[c], v[c])
            }
        }
    }
}

fn plane<'a>(frame: &'a Frame<'_>, i: u32) -> Result<(&'a [u8], usize), FrameError> {
    let data = frame.plane_data(i).map_err(|_| FrameError::Plane(i))?;
    let stride = usize::try_from(frame.plane_stride()[i as usize]).map_err(|_| FrameError::Plane(i))?;
    Ok((data, stride))
}

/// Reads `frame` through its format's layout.
pub fn source<'a>(frame: &'a Frame<'_>) -> Result<Source<'a>, FrameError> {
    let layout = layout(frame)?;
    Ok(Source { width: frame.width() as usize, height: frame.height() as usize, layout })
}

fn layout<'a>(frame: &'a Frame<'_>) -> Result<Layout<'a>, FrameError> {
    use VideoFormat as F;
    let info = frame.info();
    let yuv = || Yuv::new(info.colorimetry().matrix(), info.colorimetry().range());
    let packed = |bpp, r, g, b| -> Result<Layout<'a>, FrameError> {
        let (data, stride) = plane(frame, 0)?;
        Ok(Layout::Packed { data, stride, bpp, r, g, b })
    };
    match frame.format() {
        F::Rgb => packed(3, 0, 1, 2),
        F::Bgr => packed(3, 2, 1, 0),
        F::Rgba | F::Rgbx => packed(4, 0, 1, 2),
        F::Bgra | F::Bgrx => packed(4, 2, 1, 0),
        F::Argb | F::Xrgb => packed(4, 1, 2, 3),
        F::Abgr | F::Xbgr => packed(4, 3, 2, 1),
        F::I420 | F::Yv12 => {
            let (y, y_stride) = plane(frame, 0)?;
            let (p1, uv_stride) = plane(frame, 1)?;
            let (p2, _) = plane(frame, 2)?;
            let (u, v) = if frame.format() == F::I420 { (p1, p2) } else { (p2, p1) };
            Ok(Layout::Yuv420 { y, y_stride, u, v, uv_stride, uv_step: 1, yuv: yuv() })
        }
        F::Nv12 | F::Nv21 => {
            let (y, y_stride) = plane(frame, 0)?;
            let (uv, uv_stride) = plane(frame, 1)?;
            let (u, v) = if frame.format() == F::Nv12 { (uv, &uv[1..]) } else { (&uv[1..], uv) };
            Ok(Layout::Yuv420 { y, y_stride, u, v, uv_stride, uv_step: 2, yuv: yuv() })
        }
        other => Err(FrameError::Format(other)),
    }
}
