//! Burning the current label into frames (`draw=true`): white 8x8 bitmap
//! glyphs (font8x8, public domain) scaled to the frame height, on a dark
//! box in the top-left corner, for every format the element accepts.

use font8x8::UnicodeFonts;
use gst_video::{VideoFormat, VideoFrameExt};

/// Box around the text, in glyph pixels.
const PAD: usize = 2;

/// Writes `text` onto a writable mapped frame. Characters outside the
/// font are drawn as '?'.
pub fn caption(frame: &mut Frame<'_>, text: &str) {
    let (w, h) = (frame.width() as usize, frame.height() as usize);
    // About 1/24 of the height per text line, at least one pixel per dot.
    let scale = (h / 192).max(1);
    let glyphs: Vec<[u8; 8]> =
        text.chars().map(|c| font8x8::BASIC_FONTS.get(c).or_else(|| font8x8::BASIC_FONTS.get('?')).unwrap_or([0; 8])).collect();
    let box_w = ((glyphs.len() * 8 + 2 * PAD) * scale).min(w);
    let box_h = ((8 + 2 * PAD) * scale).min(h);
    let ink = |x: usize, y: usize| -> bool {
        let (gx, gy) = (x / scale, y / scale);
        if gx < PAD || !(PAD..PAD + 8).contains(&gy) {
            return false;
        }
        let (gx, gy) = (gx - PAD, gy - PAD);
        glyphs.get(gx / 8).is_some_and(|g| g[gy] >> (gx % 8) & 1 == 1)
    };
    paint(frame, box_w, box_h, ink);
}

type Frame<'a> = gst_video::VideoFrameRef<&'a mut gst::BufferRef>;

fn paint(frame: &mut Frame<'_>, box_w: usize, box_h: usize, ink: impl Fn(usize, usize) -> bool) {
    use VideoFormat as F;
    let strides: Vec<usize> = frame.plane_stride().iter().map(|&s| s.max(0) as usize).collect();
    let format = frame.format();
    let (fg, bg): ([u8; 3], [u8; 3]) = ([255, 255, 255], [16, 16, 16]);
    let packed = match format {
        F::Rgb => Some((3, [0, 1, 2])),
        F::Bgr => Some((3, [2, 1, 0])),
        F::Rgba | F::Rgbx => Some((4, [0, 1, 2])),
        F::Bgra | F::Bgrx => Some((4, [2, 1, 0])),
        F::Argb | F::Xrgb => Some((4, [1, 2, 3])),
        F::Abgr | F::Xbgr => Some((4, [3, 2, 1])),
        _ => None,
    };
    if let Some((bpp, offs)) = packed {
        let stride = strides[0];
        let Ok(data) = frame.plane_data_mut(0) else { return };
        for y in 0..box_h {
            for x in 0..box_w {
                let colour = if ink(x, y) { fg } else { bg };
                let p = y * stride + x * bpp;
                for (c, &o) in offs.iter().enumerate() {
                    if let Some(v) = data.get_mut(p + o) {
                        *v = colour[c];
                    }
                }
            }
        }
        return;
    }
    // YUV 4:2:0: text in luma, the box neutral grey in chroma.
    if let Ok(luma) = frame.plane_data_mut(0) {
        for y in 0..box_h {
            for x in 0..box_w {
                if let Some(v) = luma.get_mut(y * strides[0] + x) {
                    *v = if ink(x, y) { 235 } else { 16 };
                }
            }
        }
    }
    let (cw, ch) = (box_w.div_ceil(2), box_h.div_ceil(2));
    let chroma_planes: &[(u32, usize)] = match format {
        F::I420 | F::Yv12 => &[(1, 1), (2, 1)],
        F::Nv12 | F::Nv21 => &[(1, 2)],
        _ => &[],
    };
    for &(i, step) in chroma_planes {
        let stride = strides[i as usize];
        if let Ok(data) = frame.plane_data_mut(i) {
            for y in 0..ch {
                for x in 0..cw * step {
                    if let Some(v) = data.get_mut(y * stride + x) {
                        *v = 128;
                    }
                }
            }
        }
    }
}
