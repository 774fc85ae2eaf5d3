//! `s1.pathway{p}_stem`: conv [t, 7, 7] stride [1, 2, 2], BN, ReLU, then max
//! pool [1, 3, 3] stride [1, 2, 2] (PySlowFast `ResNetBasicStem`).

use tch::{Tensor, nn};

use super::layers::{BatchNorm3d, Conv3d, Shape};

pub const POOL_KERNEL: [i64; 3] = [1, 3, 3];
pub const POOL_STRIDE: [i64; 3] = [1, 2, 2];
pub const POOL_PADDING: [i64; 3] = [0, 1, 1];

#[derive(Debug)]
pub struct Stem {
    pub conv: Conv3d,
    pub bn: BatchNorm3d,
}

impl Stem {
    pub fn new(p: nn::Path, in_channels: i64, out_channels: i64, temporal_kernel: i64, eps: f64, momentum: f64) -> Self {
        let kernel = [temporal_kernel, 7, 7];
        let padding = [temporal_kernel / 2, 3, 3];
        Stem {
            conv: Conv3d::new(&p / "conv", in_channels, out_channels, kernel, [1, 2, 2], padding, [1; 3], 1),
            bn: BatchNorm3d::new(&p / "bn", out_channels, eps, momentum, false),
        }
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let x = self.bn.forward_t(&self.conv.forward(x), train).relu();
        x.max_pool3d(POOL_KERNEL, POOL_STRIDE, POOL_PADDING, [1; 3], false)
    }

    pub fn out_shape(&self, s: Shape) -> Shape {
        let c = self.conv.out_shape(s);
        let mut out = c;
        for d in 0..3 {
            out[d + 2] = (c[d + 2] + 2 * POOL_PADDING[d] - POOL_KERNEL[d]) / POOL_STRIDE[d] + 1;
        }
        out
    }
}
