//! `s{n}.pathway{p}_res{i}`: ResNet bottleneck blocks (PySlowFast `ResBlock`
//! with `BottleneckTransform`, stride on the 3x3 conv). The temporal kernel
//! sits in the first 1x1 conv, which is what makes the slow pathway's early
//! stages purely spatial.

use tch::nn;

use super::layers::{BatchNorm3d, Conv3d, path_name};
use super::walk::{Backend, Op};

/// Geometry of one bottleneck block.
#[derive(Debug, Clone, Copy)]
pub struct BlockSpec {
    pub dim_in: i64,
    pub dim_inner: i64,
    pub dim_out: i64,
    pub temporal_kernel: i64,
    pub temporal_stride: i64,
    pub spatial_stride: i64,
    pub dilation: i64,
    pub groups: i64,
}

/// The residual branch: a [t,1,1] -> b [1,3,3] (strided) -> c [1,1,1].
#[derive(Debug)]
pub struct Bottleneck {
    pub a: Conv3d,
    pub a_bn: BatchNorm3d,
    pub b: Conv3d,
    pub b_bn: BatchNorm3d,
    pub c: Conv3d,
    pub c_bn: BatchNorm3d,
}

/// One residual block: `branch1` (projection shortcut, only where the shape
/// changes) plus `branch2` (the bottleneck).
#[derive(Debug)]
pub struct ResBlock {
    pub branch1: Option<(Conv3d, BatchNorm3d)>,
    pub branch2: Bottleneck,
    pub name: String,
}

impl ResBlock {
    pub fn new(p: nn::Path, spec: BlockSpec, eps: f64, momentum: f64, zero_init_final_bn: bool) -> Self {
        let BlockSpec { dim_in, dim_inner, dim_out, temporal_kernel: tk, temporal_stride: ts, spatial_stride: ss, dilation: d, groups } =
            spec;
        let branch1 = (dim_in != dim_out || ss != 1 || ts != 1).then(|| {
            (
                Conv3d::new(&p / "branch1", dim_in, dim_out, [1, 1, 1], [ts, ss, ss], [0; 3], [1; 3], 1),
                BatchNorm3d::new(&p / "branch1_bn", dim_out, eps, momentum, false),
            )
        });
        let q = &p / "branch2";
        let branch2 = Bottleneck {
            a: Conv3d::same(&q / "a", dim_in, dim_inner, [tk, 1, 1]),
            a_bn: BatchNorm3d::new(&q / "a_bn", dim_inner, eps, momentum, false),
            b: Conv3d::new(&q / "b", dim_inner, dim_inner, [1, 3, 3], [ts, ss, ss], [0, d, d], [1, d, d], groups),
            b_bn: BatchNorm3d::new(&q / "b_bn", dim_inner, eps, momentum, false),
            c: Conv3d::same(&q / "c", dim_inner, dim_out, [1, 1, 1]),
            c_bn: BatchNorm3d::new(&q / "c_bn", dim_out, eps, momentum, zero_init_final_bn),
        };
        ResBlock { branch1, branch2, name: path_name(&p) }
    }

    pub fn walk<'m, B: Backend<'m>>(&'m self, b: &mut B, x: &B::Value) -> Result<B::Value, B::Error> {
        let op = |name| Op { module: &self.name, name };
        let t = &self.branch2;
        let y = b.conv_bn(&t.a, &t.a_bn, x)?;
        let y = b.relu(op("branch2.a_relu"), y)?;
        let y = b.conv_bn(&t.b, &t.b_bn, &y)?;
        let y = b.relu(op("branch2.b_relu"), y)?;
        let y = b.conv_bn(&t.c, &t.c_bn, &y)?;
        let sum = match &self.branch1 {
            Some((conv, bn)) => {
                let shortcut = b.conv_bn(conv, bn, x)?;
                b.add(op("add"), &shortcut, &y)?
            }
            None => b.add(op("add"), x, &y)?,
        };
        b.relu(op("relu"), sum)
    }
}
