//! The layers SlowFast is made of, holding their geometry and their module
//! paths so the same structure can be walked on shapes (FLOP counting, input
//! checks) and ONNX nodes as well as on tensors. Names of the variables are
//! PyTorch's (`weight`, `running_var`, `num_batches_tracked`, ...), so
//! checkpoints map one to one.

use std::sync::{Arc, Mutex, MutexGuard};

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
    /// The module's path (`s2.pathway0_res0.branch2.a`), naming its node
    /// and weights in the export.
    pub name: String,
}

/// The dotted path of `p` (`s1.pathway0_stem`), as PyTorch names modules.
pub fn path_name(p: &nn::Path) -> String {
    p.components().collect::<Vec<_>>().join(".")
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
        Conv3d { weight, out_channels, in_channels, kernel, stride, padding, dilation, groups, name: path_name(&p) }
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

/// `nn.MaxPool3d` without dilation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxPool3d {
    pub kernel: [i64; 3],
    pub stride: [i64; 3],
    pub padding: [i64; 3],
}

impl MaxPool3d {
    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.max_pool3d(self.kernel, self.stride, self.padding, [1; 3], false)
    }

    pub fn out_shape(&self, s: Shape) -> Shape {
        let mut out = s;
        for d in 0..3 {
            out[d + 2] = (s[d + 2] + 2 * self.padding[d] - self.kernel[d]) / self.stride[d] + 1;
        }
        out
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
    /// Where training takes its statistics from; multigrid changes it
    /// between epochs.
    norm: Mutex<Norm>,
    /// The module's path (`s2.pathway0_res0.branch2.a_bn`), naming its
    /// sub-batch statistics in checkpoints.
    pub name: String,
}

/// How a BN layer normalises in training (evaluation always uses the
/// running statistics).
#[derive(Debug, Default)]
enum Norm {
    /// Over this process's batch.
    #[default]
    Batch,
    Sync(SyncBn),
    Sub(SubBn),
}

/// PySlowFast's `SubBatchNorm3d`: the batch is split into `splits`
/// sub-batches (sample `i` in split `i % splits`), each normalised with its
/// own statistics, then one affine transform. Each split keeps its own
/// running statistics; [`BatchNorm3d::aggregate_sub_stats`] merges them
/// into the layer's for evaluation, precise BN and export, so the saved
/// model is an ordinary BN model.
#[derive(Debug)]
struct SubBn {
    splits: i64,
    /// `[splits * C]`, split-major as `split_bn` has them.
    running_mean: Tensor,
    running_var: Tensor,
}

/// What a BN layer is set to normalise over in training.
#[derive(Debug, Clone)]
pub enum NormMode {
    Batch,
    Sync(SyncBn),
    /// Over each of this many sub-batches.
    Sub(usize),
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
            num_batches_tracked: p.add("num_batches_tracked", Tensor::zeros([], (Kind::Int64, p.device())), false),
            eps,
            momentum,
            norm: Mutex::new(Norm::Batch),
            name: path_name(&p),
        }
    }

    fn norm(&self) -> MutexGuard<'_, Norm> {
        // A panic while holding the lock leaves nothing half-written.
        self.norm.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Turns this layer into sync-BN for training.
    pub fn set_sync(&self, sync: SyncBn) {
        self.set_mode(NormMode::Sync(sync));
    }

    /// Sets what training normalises over. Leaving sub-batch BN merges its
    /// statistics first; entering it starts every split from the layer's
    /// running statistics (PySlowFast's `normal_to_sub_bn` on the
    /// checkpoint it reloads at a shape change). Asking for the same
    /// number of splits again keeps the splits' statistics.
    pub fn set_mode(&self, mode: NormMode) {
        let mut norm = self.norm();
        if let (Norm::Sub(sub), NormMode::Sub(k)) = (&*norm, &mode)
            && sub.splits == *k as i64
        {
            return;
        }
        if let Norm::Sub(sub) = &*norm {
            self.merge(sub);
        }
        *norm = match mode {
            NormMode::Batch => Norm::Batch,
            NormMode::Sync(s) => Norm::Sync(s),
            NormMode::Sub(k) => {
                let k = k.max(1) as i64;
                Norm::Sub(SubBn {
                    splits: k,
                    running_mean: self.running_mean.detach().repeat([k]),
                    running_var: self.running_var.detach().repeat([k]),
                })
            }
        };
    }

    /// Sub-batch BN's statistics merged into the layer's running ones (a
    /// no-op in other modes): the mean of the splits' means, and the mean
    /// of their variances plus the variance of their means, as
    /// `SubBatchNorm3d.aggregate_stats`.
    pub fn aggregate_sub_stats(&self) {
        if let Norm::Sub(sub) = &*self.norm() {
            self.merge(sub);
        }
    }

    fn merge(&self, sub: &SubBn) {
        tch::no_grad(|| {
            let k = sub.splits;
            let means = sub.running_mean.view([k, -1]);
            let mean = means.sum_dim_intlist(0, false, None) / k as f64;
            let spread = (&means - &mean).square().sum_dim_intlist(0, false, None) / k as f64;
            let var = sub.running_var.view([k, -1]).sum_dim_intlist(0, false, None) / k as f64 + spread;
            self.running_mean.shallow_clone().copy_(&mean);
            self.running_var.shallow_clone().copy_(&var);
        });
    }

    /// The running statistics a training forward updates (shallow): the
    /// splits' in sub-batch BN, the layer's otherwise. Precise BN averages
    /// these.
    pub fn training_stats(&self) -> (Tensor, Tensor) {
        match &*self.norm() {
            Norm::Sub(sub) => (sub.running_mean.shallow_clone(), sub.running_var.shallow_clone()),
            _ => (self.running_mean.shallow_clone(), self.running_var.shallow_clone()),
        }
    }

    /// The splits' running statistics when in sub-batch BN (for checkpoints).
    pub fn sub_stats(&self) -> Option<(Tensor, Tensor)> {
        match &*self.norm() {
            Norm::Sub(sub) => Some((sub.running_mean.shallow_clone(), sub.running_var.shallow_clone())),
            _ => None,
        }
    }

    /// Restores the splits' running statistics saved by [`Self::sub_stats`].
    pub fn load_sub_stats(&self, mean: &Tensor, var: &Tensor) -> Result<(), String> {
        match &mut *self.norm() {
            Norm::Sub(sub) if sub.running_mean.size() == mean.size() && sub.running_var.size() == var.size() => {
                tch::no_grad(|| {
                    sub.running_mean.copy_(mean);
                    sub.running_var.copy_(var);
                });
                Ok(())
            }
            Norm::Sub(sub) => Err(format!(
                "{}: {} splits want {:?}, the checkpoint has {:?}",
                self.name,
                sub.splits,
                sub.running_mean.size(),
                mean.size()
            )),
            _ => Err(format!("{}: not in sub-batch BN", self.name)),
        }
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        if train {
            tch::no_grad(|| {
                let mut n = self.num_batches_tracked.shallow_clone();
                let _ = n.g_add_scalar_(1);
            });
            match &*self.norm() {
                Norm::Sync(sync) => return self.forward_sync(x, sync),
                Norm::Sub(sub) => return self.forward_sub(x, sub),
                Norm::Batch => {}
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

    /// Training forward of sub-batch BN: the splits side by side as
    /// channels of a batch `splits` times smaller, normalised without an
    /// affine transform, then the layer's weight and bias.
    fn forward_sub(&self, x: &Tensor, sub: &SubBn) -> Tensor {
        let size = x.size();
        let (n, c, k) = (size[0], size[1], sub.splits);
        if n % k != 0 {
            std::panic::resume_unwind(Box::new(format!("{}: a batch of {n} does not split into {k} sub-batches", self.name)));
        }
        let mut wide = size.clone();
        wide[0] = n / k;
        wide[1] = c * k;
        let y = Tensor::batch_norm(
            &x.reshape(&wide),
            None::<&Tensor>,
            None::<&Tensor>,
            Some(&sub.running_mean),
            Some(&sub.running_var),
            true,
            self.momentum,
            self.eps,
            true,
        )
        .reshape(&size);
        let view = [1, c, 1, 1, 1];
        y * self.weight.view(view) + self.bias.view(view)
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
