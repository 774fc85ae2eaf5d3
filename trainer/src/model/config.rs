//! SlowFast architecture settings as data, in PySlowFast's vocabulary
//! (`MODEL`, `RESNET`, `SLOWFAST` config sections), and the presets of the
//! Kinetics-400 model zoo.

use serde::{Deserialize, Serialize};

use super::ModelError;

/// Index of the slow and the fast pathway in every per-pathway array.
pub const SLOW: usize = 0;
pub const FAST: usize = 1;

/// How the head reduces each pathway's last feature map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum HeadPool {
    /// Global average over time and space: any clip shape works (multigrid
    /// training, PySlowFast with `pool_size = None`).
    Global,
    /// PySlowFast's fixed `AvgPool3d` kernels `[t, h, w]` per pathway with
    /// stride 1; at eval, softmax is taken per remaining position and then
    /// averaged, which is what fully-convolutional testing at a larger crop
    /// does in the reference.
    Kernel { slow: [i64; 3], fast: [i64; 3] },
}

/// One SlowFast network. Every per-stage array lists stem, res2 .. res5 or
/// res2 .. res5; every inner pair is `[slow, fast]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// ResNet depth: 18, 50 or 101 (`RESNET.DEPTH`). Depth 18 is PySlowFast's
    /// (2, 2, 2, 2) stage layout, still with bottleneck blocks.
    pub depth: u32,
    pub num_classes: i64,
    /// Frame-rate ratio between the fast and the slow pathway (`SLOWFAST.ALPHA`).
    pub alpha: i64,
    /// Inverse of the fast pathway's channel ratio beta (`SLOWFAST.BETA_INV`).
    pub beta_inv: i64,
    /// Lateral output channels as a multiple of the fast channels
    /// (`SLOWFAST.FUSION_CONV_CHANNEL_RATIO`).
    pub fusion_conv_channel_ratio: i64,
    /// Temporal kernel of the fast-to-slow lateral convs (`SLOWFAST.FUSION_KERNEL_SZ`).
    pub fusion_kernel_size: i64,
    pub num_groups: i64,
    pub width_per_group: i64,
    pub input_channels: i64,
    /// Temporal kernel of the stem conv and of each bottleneck's first conv,
    /// for stem, res2, res3, res4, res5 (PySlowFast's `_TEMPORAL_KERNEL_BASIS`).
    pub temporal_kernels: [[i64; 2]; 5],
    /// How many leading blocks of res2 .. res5 use the stage's temporal
    /// kernel; the rest use 1 (`RESNET.NUM_BLOCK_TEMP_KERNEL`).
    pub num_block_temp_kernel: [[usize; 2]; 4],
    /// Spatial stride of res2 .. res5 (`RESNET.SPATIAL_STRIDES`).
    pub spatial_strides: [[i64; 2]; 4],
    /// Temporal stride of res2 .. res5 (1 in every published SlowFast).
    pub temporal_strides: [[i64; 2]; 4],
    /// Spatial dilation of res2 .. res5 (`RESNET.SPATIAL_DILATIONS`).
    pub spatial_dilations: [[i64; 2]; 4],
    pub dropout: f64,
    /// Zero-initialise the last BN of every residual branch (`RESNET.ZERO_INIT_FINAL_BN`).
    pub zero_init_final_bn: bool,
    /// Std of the normal init of the projection (`MODEL.FC_INIT_STD`).
    pub fc_init_std: f64,
    pub bn_eps: f64,
    pub bn_momentum: f64,
    pub head_pool: HeadPool,
}

/// The published Kinetics-400 variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    #[value(name = "slowfast_4x16_r50")]
    #[serde(rename = "slowfast_4x16_r50")]
    SlowFast4x16R50,
    #[value(name = "slowfast_8x8_r50")]
    #[serde(rename = "slowfast_8x8_r50")]
    SlowFast8x8R50,
    #[value(name = "slowfast_8x8_r101")]
    #[serde(rename = "slowfast_8x8_r101")]
    SlowFast8x8R101,
}

impl Preset {
    pub fn config(self) -> ModelConfig {
        match self {
            Preset::SlowFast4x16R50 => ModelConfig { alpha: 8, fusion_kernel_size: 5, ..ModelConfig::r50() },
            Preset::SlowFast8x8R50 => ModelConfig { alpha: 4, fusion_kernel_size: 7, ..ModelConfig::r50() },
            // Every res4 block has the temporal kernel (SLOWFAST_8x8_R101's
            // NUM_BLOCK_TEMP_KERNEL [[3,3],[4,4],[23,23],[3,3]]): this is what
            // gives the published 62,826,968 parameters.
            Preset::SlowFast8x8R101 => ModelConfig {
                depth: 101,
                alpha: 4,
                fusion_kernel_size: 5,
                num_block_temp_kernel: [[3, 3], [4, 4], [23, 23], [3, 3]],
                ..ModelConfig::r50()
            },
        }
    }

    /// The name used on the command line and in exported models' metadata.
    pub fn name(self) -> &'static str {
        match self {
            Preset::SlowFast4x16R50 => "slowfast_4x16_r50",
            Preset::SlowFast8x8R50 => "slowfast_8x8_r50",
            Preset::SlowFast8x8R101 => "slowfast_8x8_r101",
        }
    }

    /// Frames of the slow pathway for the 32-frame fast clip of the recipe.
    pub fn slow_frames(self) -> i64 {
        32 / self.config().alpha
    }
}

impl ModelConfig {
    /// SlowFast R50 as in PySlowFast's `SLOWFAST_8x8_R50.yaml` (alpha 4,
    /// fusion kernel 7); the 4x16 and R101 presets change a few fields.
    pub fn r50() -> Self {
        ModelConfig {
            depth: 50,
            num_classes: 400,
            alpha: 4,
            beta_inv: 8,
            fusion_conv_channel_ratio: 2,
            fusion_kernel_size: 7,
            num_groups: 1,
            width_per_group: 64,
            input_channels: 3,
            temporal_kernels: [[1, 5], [1, 3], [1, 3], [3, 3], [3, 3]],
            num_block_temp_kernel: [[3, 3], [4, 4], [6, 6], [3, 3]],
            spatial_strides: [[1, 1], [2, 2], [2, 2], [2, 2]],
            temporal_strides: [[1, 1]; 4],
            spatial_dilations: [[1, 1]; 4],
            dropout: 0.5,
            zero_init_final_bn: true,
            fc_init_std: 0.01,
            bn_eps: 1e-5,
            bn_momentum: 0.1,
            head_pool: HeadPool::Global,
        }
    }

    /// Bottleneck blocks in res2 .. res5.
    pub fn stage_depths(&self) -> [usize; 4] {
        match self.depth {
            18 => [2, 2, 2, 2],
            101 => [3, 4, 23, 3],
            _ => [3, 4, 6, 3],
        }
    }

    /// Temporal kernel of the first conv of block `block` in res`stage+2`.
    pub fn block_temporal_kernel(&self, stage: usize, pathway: usize, block: usize) -> i64 {
        if block < self.num_block_temp_kernel[stage][pathway] { self.temporal_kernels[stage + 1][pathway] } else { 1 }
    }

    /// Refuses settings that cannot build a network, naming the field.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |field: &str, why: String| Err(ModelError::Config { field: field.to_string(), why });
        if !matches!(self.depth, 18 | 50 | 101) {
            return bad("depth", format!("{} is not supported, use 18, 50 or 101", self.depth));
        }
        for (field, v) in [
            ("num_classes", self.num_classes),
            ("alpha", self.alpha),
            ("beta_inv", self.beta_inv),
            ("fusion_conv_channel_ratio", self.fusion_conv_channel_ratio),
            ("fusion_kernel_size", self.fusion_kernel_size),
            ("num_groups", self.num_groups),
            ("width_per_group", self.width_per_group),
            ("input_channels", self.input_channels),
        ] {
            if v < 1 {
                return bad(field, format!("must be at least 1, got {v}"));
            }
        }
        if self.fusion_kernel_size % 2 == 0 {
            return bad("fusion_kernel_size", format!("must be odd to keep frames aligned, got {}", self.fusion_kernel_size));
        }
        if self.width_per_group % self.beta_inv != 0 {
            return bad("width_per_group", format!("{} is not divisible by beta_inv {}", self.width_per_group, self.beta_inv));
        }
        if self.beta_inv % self.fusion_conv_channel_ratio != 0 {
            return bad(
                "fusion_conv_channel_ratio",
                format!("{} does not divide beta_inv {}", self.fusion_conv_channel_ratio, self.beta_inv),
            );
        }
        let depths = self.stage_depths();
        for (s, pair) in self.num_block_temp_kernel.iter().enumerate() {
            for &n in pair {
                if n > depths[s] {
                    return bad("num_block_temp_kernel", format!("res{} has {} blocks, {} requested", s + 2, depths[s], n));
                }
            }
        }
        for (field, arr) in [
            ("temporal_kernels", &self.temporal_kernels[..]),
            ("spatial_strides", &self.spatial_strides[..]),
            ("temporal_strides", &self.temporal_strides[..]),
            ("spatial_dilations", &self.spatial_dilations[..]),
        ] {
            if let Some(v) = arr.iter().flatten().find(|&&v| v < 1) {
                return bad(field, format!("entries must be at least 1, got {v}"));
            }
        }
        if self.temporal_kernels.iter().flatten().any(|k| k % 2 == 0) {
            return bad("temporal_kernels", "kernels must be odd to keep frames aligned".to_string());
        }
        if self.temporal_strides.iter().any(|p| p[SLOW] != p[FAST]) {
            return bad("temporal_strides", "must be equal for both pathways to keep them aligned".to_string());
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad("dropout", format!("must be in [0, 1), got {}", self.dropout));
        }
        if let HeadPool::Kernel { slow, fast } = &self.head_pool
            && slow.iter().chain(fast).any(|&k| k < 1)
        {
            return bad("head_pool", "kernel sizes must be at least 1".to_string());
        }
        Ok(())
    }

    /// Total spatial stride from input to the last feature map.
    pub fn spatial_stride(&self) -> i64 {
        4 * self.spatial_strides.iter().map(|s| s[SLOW]).product::<i64>()
    }
}
