//! `s1.pathway{p}_stem`: conv [t, 7, 7] stride [1, 2, 2], BN, ReLU, then max
//! pool [1, 3, 3] stride [1, 2, 2] (PySlowFast `ResNetBasicStem`).

use tch::nn;

use super::layers::{BatchNorm3d, Conv3d, MaxPool3d, path_name};
use super::walk::{Backend, Op};

pub const POOL: MaxPool3d = MaxPool3d { kernel: [1, 3, 3], stride: [1, 2, 2], padding: [0, 1, 1] };

#[derive(Debug)]
pub struct Stem {
    pub conv: Conv3d,
    pub bn: BatchNorm3d,
    pub name: String,
}

impl Stem {
    pub fn new(p: nn::Path, in_channels: i64, out_channels: i64, temporal_kernel: i64, eps: f64, momentum: f64) -> Self {
        let kernel = [temporal_kernel, 7, 7];
        let padding = [temporal_kernel / 2, 3, 3];
        Stem {
            conv: Conv3d::new(&p / "conv", in_channels, out_channels, kernel, [1, 2, 2], padding, [1; 3], 1),
            bn: BatchNorm3d::new(&p / "bn", out_channels, eps, momentum, false),
            name: path_name(&p),
        }
    }

    pub fn walk<'m, B: Backend<'m>>(&'m self, b: &mut B, x: &B::Value) -> Result<B::Value, B::Error> {
        let op = |name| Op { module: &self.name, name };
        let y = b.conv_bn(&self.conv, &self.bn, x)?;
        let y = b.relu(op("relu"), y)?;
        b.max_pool(op("pool_layer"), &POOL, y)
    }
}
