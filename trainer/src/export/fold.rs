//! Folding an eval-mode BatchNorm into the convolution before it:
//! `bn(conv(x, w))` = `conv(x, w * s) + (beta - mean * s)` with
//! `s = gamma / sqrt(var + eps)` per output channel. Computed in f64 so the
//! folded f32 weights differ from the unfolded network only by rounding.

use tch::{Device, Kind, Tensor};

use crate::model::layers::{BatchNorm3d, Conv3d};

use super::ExportError;

/// A convolution with the BatchNorm after it folded in.
#[derive(Debug)]
pub struct FoldedConv {
    /// `[out, in / groups, kt, kh, kw]`, f32 on the CPU.
    pub weight: Tensor,
    /// `[out]`, f32 on the CPU.
    pub bias: Tensor,
}

/// Folds `bn` (with its `eps`) into `conv`; `name` (the BN's variable path)
/// names it in the error when its statistics make the fold non-finite, e.g.
/// a negative `running_var` from a corrupt checkpoint.
pub fn fold(conv: &Conv3d, bn: &BatchNorm3d, eps: f64, name: &str) -> Result<FoldedConv, ExportError> {
    tch::no_grad(|| {
        let f64_cpu = |t: &Tensor| t.detach().to_device(Device::Cpu).to_kind(Kind::Double);
        let scale = f64_cpu(&bn.weight) / (f64_cpu(&bn.running_var) + eps).sqrt();
        let weight = f64_cpu(&conv.weight) * scale.view([-1, 1, 1, 1, 1]);
        let bias = f64_cpu(&bn.bias) - f64_cpu(&bn.running_mean) * &scale;
        let (weight, bias) = (weight.to_kind(Kind::Float), bias.to_kind(Kind::Float));
        for (what, t) in [("weight", &weight), ("bias", &bias)] {
            if !bool::try_from(t.isfinite().all()).unwrap_or(false) {
                return Err(ExportError::Weights {
                    tensor: name.to_string(),
                    why: format!("folding it into the conv gives a non-finite {what} (check running_var >= 0 and finite statistics)"),
                });
            }
        }
        Ok(FoldedConv { weight, bias })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn;

    fn conv_bn(vs: &nn::VarStore) -> (Conv3d, BatchNorm3d) {
        let conv = Conv3d::new(vs.root() / "conv", 4, 6, [3, 3, 3], [1, 2, 2], [1, 1, 1], [1; 3], 2);
        let bn = BatchNorm3d::new(vs.root() / "bn", 6, 1e-5, 0.1, false);
        tch::no_grad(|| {
            for (t, lo, hi) in [(&bn.weight, 0.5, 2.0), (&bn.bias, -1.0, 1.0), (&bn.running_mean, -1.0, 1.0), (&bn.running_var, 0.1, 3.0)] {
                let mut t = t.shallow_clone();
                let _ = t.uniform_(lo, hi);
            }
        });
        (conv, bn)
    }

    #[test]
    fn folded_conv_matches_conv_then_eval_batch_norm() {
        tch::manual_seed(3);
        let vs = nn::VarStore::new(Device::Cpu);
        let (conv, bn) = conv_bn(&vs);
        let x = Tensor::randn([2, 4, 5, 9, 7], (Kind::Float, Device::Cpu));
        let want = tch::no_grad(|| bn.forward_t(&conv.forward(&x), false));
        let f = fold(&conv, &bn, 1e-5, "bn").expect("finite fold");
        let got = x.conv3d(&f.weight, Some(&f.bias), conv.stride, conv.padding, conv.dilation, conv.groups);
        let d = (got - want).abs().max().double_value(&[]);
        assert!(d < 1e-5, "folded conv differs by {d:e}");
    }

    #[test]
    fn negative_variance_is_named() {
        let vs = nn::VarStore::new(Device::Cpu);
        let (conv, bn) = conv_bn(&vs);
        tch::no_grad(|| {
            let mut v = bn.running_var.shallow_clone();
            let _ = v.fill_(-1.0);
        });
        let e = fold(&conv, &bn, 1e-5, "s2.pathway0_res0.branch2.a_bn").expect_err("non-finite fold").to_string();
        assert!(e.contains("s2.pathway0_res0.branch2.a_bn") && e.contains("running_var"), "{e}");
    }
}
