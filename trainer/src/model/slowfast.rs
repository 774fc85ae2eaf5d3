//! The SlowFast network: the one place that turns a [`ModelConfig`] into
//! layers, with PySlowFast's module names (`s1`, `s1_fuse`, `s2`, ...,
//! `head`) as variable paths, and the one walk through them that the
//! forward, the shape checks, FLOP counts and the export share.

use std::panic::{AssertUnwindSafe, catch_unwind};

use tch::{Tensor, nn};

use super::ModelError;
use super::config::{FAST, ModelConfig, SLOW};
use super::fuse::FuseFastToSlow;
use super::head::Head;
use super::layers::{BatchNorm3d, NormMode, Shape, SyncBn};
use super::resnet::{BlockSpec, ResBlock};
use super::stem::Stem;
use super::walk::{Backend, BatchNorms, FlopCount, Forward, Shapes};

/// What eval mode returns; train mode always returns logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EvalOutput {
    /// Softmax over classes, as PySlowFast's eval forward.
    #[default]
    Probabilities,
    Logits,
}

#[derive(Debug)]
pub struct SlowFast {
    pub config: ModelConfig,
    pub eval_output: EvalOutput,
    /// `s1.pathway0_stem`, `s1.pathway1_stem`
    pub stem: [Stem; 2],
    /// `s1_fuse` .. `s4_fuse`
    pub fuse: Vec<FuseFastToSlow>,
    /// `s2` .. `s5`, each with the blocks of the slow and the fast pathway.
    pub stages: Vec<[Vec<ResBlock>; 2]>,
    pub head: Head,
}

impl SlowFast {
    /// Builds the network under `root` (normally `vs.root()`), with the
    /// reference initialisation.
    pub fn new(root: &nn::Path, config: &ModelConfig) -> Result<Self, ModelError> {
        config.validate()?;
        let c = config;
        let (eps, mom) = (c.bn_eps, c.bn_momentum);
        let width = c.width_per_group;
        let dim_inner = c.num_groups * c.width_per_group;
        // Lateral channels added onto the slow pathway per unit of slow width.
        let out_dim_ratio = c.beta_inv / c.fusion_conv_channel_ratio;

        let s1 = root / "s1";
        let stem = [SLOW, FAST].map(|p| {
            Stem::new(
                &s1 / format!("pathway{p}_stem"),
                c.input_channels,
                width / if p == FAST { c.beta_inv } else { 1 },
                c.temporal_kernels[0][p],
                eps,
                mom,
            )
        });
        let fuse_at = |n: usize, slow_width: i64| {
            FuseFastToSlow::new(
                root / format!("s{n}_fuse"),
                slow_width / c.beta_inv,
                c.fusion_conv_channel_ratio,
                c.fusion_kernel_size,
                c.alpha,
                eps,
                mom,
            )
        };
        let mut fuse = vec![fuse_at(1, width)];

        let mut stages = Vec::with_capacity(4);
        let mut slow_in = width;
        for (s, &depth) in c.stage_depths().iter().enumerate() {
            let n = s + 2;
            let stage_path = root / format!("s{n}");
            let dim_out = width * 4 * (1 << s);
            let inner = dim_inner * (1 << s);
            let blocks = [SLOW, FAST].map(|p| {
                let (dim_in, dim_out, inner) = if p == SLOW {
                    (slow_in + slow_in / out_dim_ratio, dim_out, inner)
                } else {
                    (slow_in / c.beta_inv, dim_out / c.beta_inv, inner / c.beta_inv)
                };
                (0..depth)
                    .map(|i| {
                        let first = i == 0;
                        let spec = BlockSpec {
                            dim_in: if first { dim_in } else { dim_out },
                            dim_inner: inner,
                            dim_out,
                            temporal_kernel: c.block_temporal_kernel(s, p, i),
                            temporal_stride: if first { c.temporal_strides[s][p] } else { 1 },
                            spatial_stride: if first { c.spatial_strides[s][p] } else { 1 },
                            dilation: c.spatial_dilations[s][p],
                            groups: c.num_groups,
                        };
                        ResBlock::new(&stage_path / format!("pathway{p}_res{i}"), spec, eps, mom, c.zero_init_final_bn)
                    })
                    .collect::<Vec<_>>()
            });
            stages.push(blocks);
            if n < 5 {
                fuse.push(fuse_at(n, dim_out));
            }
            slow_in = dim_out;
        }
        let head_dim = slow_in + slow_in / c.beta_inv;
        let head = Head::new(root / "head", head_dim, c.num_classes, c.dropout, c.fc_init_std, c.head_pool.clone());
        Ok(SlowFast { config: c.clone(), eval_output: EvalOutput::default(), stem, fuse, stages, head })
    }

    /// Forward pass on a clip. Train mode returns logits; eval mode returns
    /// probabilities or logits as `eval_output` says. Shapes are checked
    /// first, so bad clips come back as errors, never as libtorch aborts.
    pub fn forward_t(&self, slow: &Tensor, fast: &Tensor, train: bool) -> Result<Tensor, ModelError> {
        self.check_inputs(slow, fast)?;
        let softmax = !train && self.eval_output == EvalOutput::Probabilities;
        let forward = || {
            let Ok(y) = self.walk(&mut Forward { train, softmax }, slow, fast);
            y
        };
        catch_unwind(AssertUnwindSafe(forward)).map_err(|e| {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown libtorch error".to_string());
            ModelError::Torch(msg)
        })
    }

    /// The network from the clip pair to the head's output, on any backend:
    /// stems, the lateral fusion after s1 .. s4, the residual blocks of each
    /// stage (slow pathway first), head.
    pub fn walk<'m, B: Backend<'m>>(&'m self, b: &mut B, slow: &B::Value, fast: &B::Value) -> Result<B::Value, B::Error> {
        let mut x = [self.stem[SLOW].walk(b, slow)?, self.stem[FAST].walk(b, fast)?];
        x[SLOW] = self.fuse[0].walk(b, &x[SLOW], &x[FAST])?;
        for (s, blocks) in self.stages.iter().enumerate() {
            for p in [SLOW, FAST] {
                for block in &blocks[p] {
                    x[p] = block.walk(b, &x[p])?;
                }
            }
            if let Some(fuse) = self.fuse.get(s + 1) {
                x[SLOW] = fuse.walk(b, &x[SLOW], &x[FAST])?;
            }
        }
        b.head(&self.head, &x[SLOW], &x[FAST])
    }

    /// Every BatchNorm layer, in forward order.
    pub fn batch_norms(&self) -> Vec<&BatchNorm3d> {
        let mut bns = BatchNorms::default();
        let Ok(()) = self.walk(&mut bns, &(), &());
        bns.0
    }

    /// Makes every BN layer sync-BN over `sync`'s group for training.
    pub fn set_sync_bn(&self, sync: &SyncBn) {
        self.set_norm_mode(&NormMode::Sync(sync.clone()));
    }

    /// What every BN layer normalises over in training (multigrid changes
    /// it with the batch size).
    pub fn set_norm_mode(&self, mode: &NormMode) {
        for bn in self.batch_norms() {
            bn.set_mode(mode.clone());
        }
    }

    /// Merges sub-batch BN statistics into the layers' running ones, as
    /// PySlowFast does after every epoch: before evaluation, checkpoints
    /// and export.
    pub fn aggregate_sub_bn_stats(&self) {
        for bn in self.batch_norms() {
            bn.aggregate_sub_stats();
        }
    }

    /// Compute of one eval forward on clips of the given shapes (refused
    /// as [`Self::check_shapes`] refuses them).
    pub fn flops(&self, slow: Shape, fast: Shape) -> Result<FlopCount, ModelError> {
        self.check_clip_rules(slow, fast)?;
        let mut shapes = Shapes::default();
        self.walk(&mut shapes, &slow, &fast)?;
        Ok(shapes.count)
    }

    /// Number of trainable parameters (what papers and model zoos report).
    pub fn num_parameters(vs: &nn::VarStore) -> i64 {
        vs.trainable_variables().iter().map(|t| t.numel() as i64).sum()
    }

    fn check_inputs(&self, slow: &Tensor, fast: &Tensor) -> Result<(), ModelError> {
        let shape = |name: &'static str, t: &Tensor| -> Result<Shape, ModelError> {
            let s = t.size();
            s.clone()
                .try_into()
                .map_err(|_| ModelError::Input { pathway: name, why: format!("expected a 5-D clip [N, C, T, H, W], got shape {s:?}") })
        };
        let (s, f) = (shape("slow", slow)?, shape("fast", fast)?);
        let want = self.stem[SLOW].conv.weight.kind();
        for (name, t) in [("slow", slow), ("fast", fast)] {
            if t.kind() != want {
                return Err(ModelError::Input { pathway: name, why: format!("expected {want:?} data, got {:?}", t.kind()) });
            }
            if t.device() != self.stem[SLOW].conv.weight.device() {
                return Err(ModelError::Input {
                    pathway: name,
                    why: format!("clip is on {:?}, the model on {:?}", t.device(), self.stem[SLOW].conv.weight.device()),
                });
            }
        }
        self.check_shapes(s, f)
    }

    /// The shape rules of a SlowFast clip pair, each broken one named.
    pub fn check_shapes(&self, slow: Shape, fast: Shape) -> Result<(), ModelError> {
        self.flops(slow, fast).map(|_| ())
    }

    /// The rules the shape walk relies on; the walk itself checks the head.
    fn check_clip_rules(&self, slow: Shape, fast: Shape) -> Result<(), ModelError> {
        let c = &self.config;
        let err = |pathway, why: String| Err(ModelError::Input { pathway, why });
        for (name, s) in [("slow", slow), ("fast", fast)] {
            if s.iter().any(|&d| d < 1) {
                return err(name, format!("every dimension must be at least 1, got shape {s:?}"));
            }
            if s[1] != c.input_channels {
                return err(name, format!("expected {} channels (dim 1 of [N, C, T, H, W]), got {}", c.input_channels, s[1]));
            }
        }
        if slow[0] != fast[0] {
            return err("fast", format!("batch of {} clips, but the slow pathway has {}", fast[0], slow[0]));
        }
        if fast[2] % c.alpha != 0 {
            return err("fast", format!("{} frames is not divisible by alpha = {}", fast[2], c.alpha));
        }
        if slow[2] * c.alpha != fast[2] {
            return err(
                "slow",
                format!("expected {} frames (fast frames {} / alpha {}), got {}", fast[2] / c.alpha, fast[2], c.alpha, slow[2]),
            );
        }
        if slow[3..] != fast[3..] {
            return err("fast", format!("spatial size {:?} differs from the slow pathway's {:?}", &fast[3..], &slow[3..]));
        }
        let min = c.spatial_stride();
        if slow[3] < min || slow[4] < min {
            return err("slow", format!("spatial size {}x{} is smaller than the network's stride {min}x{min}", slow[3], slow[4]));
        }
        Ok(())
    }
}
