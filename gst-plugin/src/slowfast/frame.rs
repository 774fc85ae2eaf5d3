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

#[cfg(test)]
mod tests {
    use super::*;

    /// A 2x2 frame of `format` whose bytes `fill` writes, plane by plane.
    fn with_frame(format: VideoFormat, fill: impl Fn(u32, &mut [u8], usize), check: impl Fn(&Source)) {
        gst::init().expect("gstreamer");
        let info = gst_video::VideoInfo::builder(format, 2, 2).build().expect("video info");
        let buffer = gst::Buffer::with_size(info.size()).expect("buffer");
        let mut frame = gst_video::VideoFrame::from_buffer_writable(buffer, &info).expect("writable frame");
        for p in 0..frame.n_planes() {
            let stride = frame.plane_stride()[p as usize] as usize;
            fill(p, frame.plane_data_mut(p).expect("plane"), stride);
        }
        let buffer = frame.into_buffer();
        let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer.as_ref(), &info).expect("readable frame");
        check(&source(&frame).expect("supported format"));
    }

    fn close(got: [f32; 3], want: [f32; 3], what: &str) {
        assert!(got.iter().zip(want).all(|(g, w)| (g - w).abs() <= 1.5), "{what}: {got:?}, expected {want:?}");
    }

    #[test]
    fn packed_formats_put_each_channel_where_its_name_says() {
        // (format, bytes per pixel, offsets of R, G, B)
        let cases = [
            (VideoFormat::Rgb, 3, [0, 1, 2]),
            (VideoFormat::Bgr, 3, [2, 1, 0]),
            (VideoFormat::Rgba, 4, [0, 1, 2]),
            (VideoFormat::Rgbx, 4, [0, 1, 2]),
            (VideoFormat::Bgra, 4, [2, 1, 0]),
            (VideoFormat::Bgrx, 4, [2, 1, 0]),
            (VideoFormat::Argb, 4, [1, 2, 3]),
            (VideoFormat::Xrgb, 4, [1, 2, 3]),
            (VideoFormat::Abgr, 4, [3, 2, 1]),
            (VideoFormat::Xbgr, 4, [3, 2, 1]),
        ];
        for (format, bpp, [r, g, b]) in cases {
            with_frame(
                format,
                |_, data, stride| {
                    data.fill(255);
                    // Pixel (1, 1): R 10, G 20, B 30; the others white.
                    let p = stride + bpp;
                    (data[p + r], data[p + g], data[p + b]) = (10, 20, 30);
                },
                |s| {
                    close(s.rgb(1, 1), [10.0, 20.0, 30.0], &format!("{format:?}"));
                    close(s.rgb(0, 0), [255.0; 3], &format!("{format:?} white"));
                },
            );
        }
    }

    /// BT.601 limited range (GStreamer's colorimetry for SD sizes): Y 81,
    /// Cb 90, Cr 240 is pure red; Y 16 / 235 with neutral chroma are black
    /// and white. Swapped chroma planes would turn the red blue.
    #[test]
    fn yuv_420_formats_read_their_planes_in_order() {
        for format in [VideoFormat::I420, VideoFormat::Yv12, VideoFormat::Nv12, VideoFormat::Nv21] {
            let (cb, cr) = (90u8, 240u8);
            with_frame(
                format,
                |p, data, stride| match (format, p) {
                    (_, 0) => {
                        data.fill(81);
                        data[stride] = 16; // (0, 1)
                        data[stride + 1] = 235; // (1, 1)
                    }
                    (VideoFormat::I420, 1) | (VideoFormat::Yv12, 2) => data[0] = cb,
                    (VideoFormat::I420, 2) | (VideoFormat::Yv12, 1) => data[0] = cr,
                    (VideoFormat::Nv12, 1) => (data[0], data[1]) = (cb, cr),
                    (VideoFormat::Nv21, 1) => (data[0], data[1]) = (cr, cb),
                    _ => unreachable!("2x2 4:2:0 frames have at most 3 planes"),
                },
                |s| {
                    close(s.rgb(0, 0), [255.0, 0.0, 0.0], &format!("{format:?} red"));
                    close(s.rgb(1, 0), [255.0, 0.0, 0.0], &format!("{format:?} red"));
                    // The same chroma with Y at black and white: the chroma
                    // pulls them apart, so only check the luma moved them.
                    assert!(s.rgb(0, 1)[0] < s.rgb(1, 1)[0], "{format:?}: luma");
                },
            );
        }
    }

    #[test]
    fn neutral_chroma_is_grey_at_the_ends_of_the_limited_range() {
        with_frame(
            VideoFormat::I420,
            |p, data, stride| {
                if p == 0 {
                    data.fill(16);
                    data[1] = 235;
                    data[stride] = 126; // mid grey: (126 - 16) * 255 / 219 = 128.1
                } else {
                    data[0] = 128;
                }
            },
            |s| {
                close(s.rgb(0, 0), [0.0; 3], "black");
                close(s.rgb(1, 0), [255.0; 3], "white");
                close(s.rgb(0, 1), [128.1; 3], "grey");
            },
        );
    }
}
