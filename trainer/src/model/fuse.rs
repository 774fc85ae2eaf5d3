//! `s{n}_fuse`: the lateral connection. A temporally strided conv turns the
//! fast pathway's features into `fusion_conv_channel_ratio` times as many
//! channels at the slow frame rate; they are concatenated onto the slow
//! pathway (PySlowFast `FuseFastToSlow`).

use tch::{Tensor, nn};

use super::layers::{BatchNorm3d, Conv3d, Shape};

#[derive(Debug)]
pub struct FuseFastToSlow {
    pub conv_f2s: Conv3d,
    pub bn: BatchNorm3d,
}

impl FuseFastToSlow {
    pub fn new(p: nn::Path, fast_channels: i64, channel_ratio: i64, kernel: i64, alpha: i64, eps: f64, momentum: f64) -> Self {
        let out = fast_channels * channel_ratio;
        FuseFastToSlow {
            conv_f2s: Conv3d::new(&p / "conv_f2s", fast_channels, out, [kernel, 1, 1], [alpha, 1, 1], [kernel / 2, 0, 0], [1; 3], 1),
            bn: BatchNorm3d::new(&p / "bn", out, eps, momentum, false),
        }
    }

    pub fn forward_t(&self, slow: &Tensor, fast: &Tensor, train: bool) -> Tensor {
        let lateral = self.bn.forward_t(&self.conv_f2s.forward(fast), train).relu();
        Tensor::cat(&[slow, &lateral], 1)
    }

    /// Shape of the slow pathway after the concatenation.
    pub fn out_shape(&self, slow: Shape, fast: Shape) -> Shape {
        let lateral = self.conv_f2s.out_shape(fast);
        [slow[0], slow[1] + lateral[1], slow[2], slow[3], slow[4]]
    }
}
