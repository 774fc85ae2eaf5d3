//! The two layers SlowFast is made of, holding their geometry so the same
//! structure can be walked on shapes (FLOP counting, input checks) as well as
//! on tensors. Names of the variables are PyTorch's (`weight`, `running_var`,
//! `num_batches_tracked`, ...), so checkpoints map one to one.

use tch::{Kind, Tensor, nn};

/// `[N, C, T, H, W]`
pub type Shape = [i64; 5];

/// `nn.Conv3d(..., bias=False)` with PySlowFast's MSRA ("c2_msra_fill") init.
#[derive(Debug)]
pub struct Conv3d {
    pub weight: Tensor,
    pub out_channels: i64,
    pub in_channels: i64,
    pub kernel: [i64; 3],
    pub stride: [i64; 3],
    pub padding: [i64; 3],
    pub dilation: [i64; 3],
    pub groups: i64,
}

impl Conv3d {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        p: nn::Path,
        in_channels: i64,
        out_channels: i64,
        kernel: [i64; 3],
        stride: [i64; 3],
        padding: [i64; 3],
        dilation: [i64; 3],
        groups: i64,
    ) -> Self {
        // kaiming_normal_(mode="fan_out", nonlinearity="relu"): torch's fan_out
        // is out_channels times the receptive field, whatever the groups.
        let fan_out = (out_channels * kernel.iter().product::<i64>()) as f64;
        let stdev = (2.0 / fan_out).sqrt();
        let dims = [out_channels, in_channels / groups, kernel[0], kernel[1], kernel[2]];
        let weight = p.var("weight", &dims, nn::Init::Randn { mean: 0.0, stdev });
        Conv3d { weight, out_channels, in_channels, kernel, stride, padding, dilation, groups }
    }

    /// A conv with stride 1, no dilation and "same" padding.
    pub fn same(p: nn::Path, in_channels: i64, out_channels: i64, kernel: [i64; 3]) -> Self {
        let padding = kernel.map(|k| k / 2);
        Self::new(p, in_channels, out_channels, kernel, [1; 3], padding, [1; 3], 1)
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.conv3d(&self.weight, None::<Tensor>, self.stride, self.padding, self.dilation, self.groups)
    }

    pub fn out_shape(&self, s: Shape) -> Shape {
        let mut out = [s[0], self.out_channels, 0, 0, 0];
        for d in 0..3 {
            let eff = self.dilation[d] * (self.kernel[d] - 1) + 1;
            out[d + 2] = (s[d + 2] + 2 * self.padding[d] - eff) / self.stride[d] + 1;
        }
        out
    }

    /// Multiply-accumulates for an input of shape `s` (fvcore's convention).
    pub fn macs(&self, s: Shape) -> i64 {
        let out: i64 = self.out_shape(s).iter().product();
        out * (self.in_channels / self.groups) * self.kernel.iter().product::<i64>()
    }
}

/// `nn.BatchNorm3d` including its `num_batches_tracked` counter.
#[derive(Debug)]
pub struct BatchNorm3d {
    pub weight: Tensor,
    pub bias: Tensor,
    pub running_mean: Tensor,
    pub running_var: Tensor,
    pub num_batches_tracked: Tensor,
    eps: f64,
    momentum: f64,
}

impl BatchNorm3d {
    pub fn new(p: nn::Path, channels: i64, eps: f64, momentum: f64, zero_init: bool) -> Self {
        let gamma = if zero_init { 0.0 } else { 1.0 };
        BatchNorm3d {
            weight: p.var("weight", &[channels], nn::Init::Const(gamma)),
            bias: p.var("bias", &[channels], nn::Init::Const(0.0)),
            running_mean: p.zeros_no_train("running_mean", &[channels]),
            running_var: p.ones_no_train("running_var", &[channels]),
            num_batches_tracked: p.add(
                "num_batches_tracked",
                Tensor::zeros([], (Kind::Int64, p.device())),
                false,
            ),
            eps,
            momentum,
        }
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        if train {
            tch::no_grad(|| {
                let mut n = self.num_batches_tracked.shallow_clone();
                let _ = n.g_add_scalar_(1);
            });
        }
        Tensor::batch_norm(
            x,
            Some(&self.weight),
            Some(&self.bias),
            Some(&self.running_mean),
            Some(&self.running_var),
            train,
            self.momentum,
            self.eps,
            true,
        )
    }

    /// Elements normalised (see `FlopCount::total` for how they count).
    pub fn elements(s: Shape) -> i64 {
        s.iter().product()
    }
}
