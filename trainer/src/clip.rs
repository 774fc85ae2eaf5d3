//! Turning decoded frames into the two pathway tensors, with PySlowFast's
//! test-time transforms: short side resized to the crop size (bilinear),
//! centre crop, `(x / 255 - mean) / std`, slow frames picked from the fast
//! clip.

use tch::{Kind, Tensor};

/// Normalisation of the Kinetics recipes (PySlowFast `DATA.MEAN` / `DATA.STD`).
pub const KINETICS_MEAN: [f64; 3] = [0.45, 0.45, 0.45];
pub const KINETICS_STD: [f64; 3] = [0.225, 0.225, 0.225];

/// Frames as a `[T, H, W, 3]` u8 tensor, e.g. from packed RGB buffers.
pub fn frames_to_tensor(frames: &[&[u8]], height: i64, width: i64) -> Tensor {
    let t = frames.len() as i64;
    let mut data = Vec::with_capacity(frames.iter().map(|f| f.len()).sum());
    for f in frames {
        data.extend_from_slice(f);
    }
    Tensor::from_slice(&data).view([t, height, width, 3])
}

/// `[T, H, W, 3]` u8 -> normalised `[3, T, crop, crop]` f32: short side to
/// `crop` then a centre crop (one spatial view).
pub fn preprocess(frames: &Tensor, crop: i64, mean: [f64; 3], std: [f64; 3]) -> Tensor {
    let x = frames.to_kind(Kind::Float) / 255.0;
    let x = x.permute([0, 3, 1, 2]); // [T, 3, H, W]
    let (h, w) = (x.size()[2], x.size()[3]);
    // PySlowFast's short-side scale floors the long side
    // (`int(math.floor(long / short * size))`) and its centre crop rounds
    // the offset up (`math.ceil((dim - size) / 2)`).
    let (nh, nw) = if h <= w {
        (crop, (w as f64 / h as f64 * crop as f64).floor() as i64)
    } else {
        ((h as f64 / w as f64 * crop as f64).floor() as i64, crop)
    };
    let x = x.upsample_bilinear2d([nh, nw], false, None, None);
    let (y0, x0) = ((nh - crop + 1) / 2, (nw - crop + 1) / 2);
    let x = x.narrow(2, y0, crop).narrow(3, x0, crop);
    let mean = Tensor::from_slice(&mean.map(|v| v as f32)).view([1, 3, 1, 1]);
    let std = Tensor::from_slice(&std.map(|v| v as f32)).view([1, 3, 1, 1]);
    ((x - mean) / std).permute([1, 0, 2, 3]).contiguous()
}

/// `[3, T, H, W]` fast clip -> `(slow, fast)` batched to `[1, 3, T', H, W]`.
pub fn pathways(fast: &Tensor, alpha: usize) -> (Tensor, Tensor) {
    let t = fast.size()[1] as usize;
    let idx: Vec<i64> = runtime::sampling::slow_indices(t, alpha).into_iter().map(|i| i as i64).collect();
    let slow = fast.index_select(1, &Tensor::from_slice(&idx));
    (slow.unsqueeze(0), fast.unsqueeze(0))
}
