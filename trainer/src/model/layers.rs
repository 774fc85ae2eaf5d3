//! The two layers SlowFast is made of, holding their geometry so the same
//! structure can be walked on shapes (FLOP counting, input checks) as well as
//! on tensors. Names of the variables are PyTorch's (`weight`, `running_var`,
//! `num_batches_tracked`, ...), so checkpoints map one to one.

use std::sync::{Arc, OnceLock};

use tch::{Kind, Tensor, nn};

use crate::dist::Group;

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
    /// Set for sync-BN: training statistics over the whole group.
    sync: OnceLock<SyncBn>,
}

/// Sync-BN (PySlowFast's `sync_batchnorm`): batch statistics are summed
/// over the processes of `group` (none: this process alone, through the
/// same arithmetic, so one process with batch 2B matches two with B).
#[derive(Clone)]
pub struct SyncBn {
    pub group: Option<Arc<Group>>,
}

impl std::fmt::Debug for SyncBn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.group {
            Some(g) => write!(f, "SyncBn(rank {} of {})", g.rank, g.size),
            None => write!(f, "SyncBn(local)"),
        }
    }
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
            sync: OnceLock::new(),
        }
    }

    /// Turns this layer into sync-BN for training (once).
    pub fn set_sync(&self, sync: SyncBn) {
        let _ = self.sync.set(sync);
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        if train {
            tch::no_grad(|| {
                let mut n = self.num_batches_tracked.shallow_clone();
                let _ = n.g_add_scalar_(1);
            });
            if let Some(sync) = self.sync.get() {
                return self.forward_sync(x, sync);
            }
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

    /// Training forward with statistics summed over the group: per-channel
    /// sum and sum of squares (from a stable local mean and variance, in
    /// f64) go through one differentiable all-reduce, so backward sums the
    /// statistics' gradients over the group as SyncBatchNorm does.
    fn forward_sync(&self, x: &Tensor, sync: &SyncBn) -> Tensor {
        let c = x.size()[1];
        let dims: &[i64] = &[0, 2, 3, 4];
        let n_local = (x.numel() as i64 / c.max(1)) as f64;
        let (var_l, mean_l) = x.to_kind(Kind::Float).var_mean_correction(dims, 0, false);
        let (var_l, mean_l) = (var_l.to_kind(Kind::Double), mean_l.to_kind(Kind::Double));
        let sum = &mean_l * n_local;
        let sumsq = (&var_l + &mean_l * &mean_l) * n_local;
        let count = Tensor::from_slice(&[n_local]).to_device(x.device());
        let local = Tensor::cat(&[sum, sumsq, count], 0);
        let stats = match &sync.group {
            Some(g) if g.size > 1 => {
                let stats = local.to_device(comm_device(g, x.device()));
                match g.all_reduce_sum_autograd(&stats) {
                    Ok(s) => s.to_device(x.device()),
                    // SlowFast::forward_t catches this and returns it as an
                    // error; resume_unwind skips the panic hook's report.
                    Err(e) => std::panic::resume_unwind(Box::new(format!("sync-BN all-reduce: {e}"))),
                }
            }
            _ => local,
        };
        let n = stats.get(2 * c).detach();
        let mean = stats.narrow(0, 0, c) / &n;
        let var = stats.narrow(0, c, c) / &n - &mean * &mean;
        let invstd = (&var + self.eps).rsqrt();
        let view = [1, c, 1, 1, 1];
        let kind = x.kind();
        let gain = &invstd * self.weight.to_kind(Kind::Double);
        let scale = gain.to_kind(kind).view(view);
        let shift = (self.bias.to_kind(Kind::Double) - &mean * &gain).to_kind(kind).view(view);
        tch::no_grad(|| {
            let total = n.double_value(&[]);
            let m = self.momentum;
            let unbiased = var.detach() * (total / (total - 1.0).max(1.0));
            let mut rm = self.running_mean.shallow_clone();
            let mut rv = self.running_var.shallow_clone();
            rm.copy_(&(&rm * (1.0 - m) + mean.detach().to_kind(rm.kind()) * m));
            rv.copy_(&(&rv * (1.0 - m) + unbiased.to_kind(rv.kind()) * m));
        });
        x * scale + shift
    }

    /// Elements normalised (see `FlopCount::total` for how they count).
    pub fn elements(s: Shape) -> i64 {
        s.iter().product()
    }
}

/// Gloo reduces CPU tensors; NCCL those of this rank's GPU.
fn comm_device(g: &Group, data: tch::Device) -> tch::Device {
    match g.backend {
        crate::dist::Backend::Gloo => tch::Device::Cpu,
        crate::dist::Backend::Nccl => data,
    }
}
