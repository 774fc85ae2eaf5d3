//! `s{n}_fuse`: the lateral connection. A temporally strided conv turns the
//! fast pathway's features into `fusion_conv_channel_ratio` times as many
//! channels at the slow frame rate; they are concatenated onto the slow
//! pathway (PySlowFast `FuseFastToSlow`).

use tch::nn;

use super::layers::{BatchNorm3d, Conv3d, path_name};
use super::walk::{Backend, Op};

#[derive(Debug)]
pub struct FuseFastToSlow {
    pub conv_f2s: Conv3d,
    pub bn: BatchNorm3d,
    pub name: String,
}

impl FuseFastToSlow {
    pub fn new(p: nn::Path, fast_channels: i64, channel_ratio: i64, kernel: i64, alpha: i64, eps: f64, momentum: f64) -> Self {
        let out = fast_channels * channel_ratio;
        FuseFastToSlow {
            conv_f2s: Conv3d::new(&p / "conv_f2s", fast_channels, out, [kernel, 1, 1], [alpha, 1, 1], [kernel / 2, 0, 0], [1; 3], 1),
            bn: BatchNorm3d::new(&p / "bn", out, eps, momentum, false),
            name: path_name(&p),
        }
    }

    /// The slow pathway with the fast one's lateral concatenated onto it.
    pub fn walk<'m, B: Backend<'m>>(&'m self, b: &mut B, slow: &B::Value, fast: &B::Value) -> Result<B::Value, B::Error> {
        let op = |name| Op { module: &self.name, name };
        let lateral = b.conv_bn(&self.conv_f2s, &self.bn, fast)?;
        let lateral = b.relu(op("relu"), lateral)?;
        b.concat(op("concat"), slow, &lateral)
    }
}
