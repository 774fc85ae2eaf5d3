//! The `model` section: a preset architecture plus any field of
//! [`ModelConfig`] overridden, so a recipe reads as "SlowFast 8x8 R50 but
//! with 10 classes" instead of repeating the whole network.

use serde::{Deserialize, Serialize};

use crate::model::{HeadPool, ModelConfig, Preset};

/// Every field but `arch` is optional and replaces the preset's value.
/// The fields mirror [`ModelConfig`] one to one so that a misspelt key is a
/// parse error with its line, not a silently ignored setting.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    pub arch: Option<Preset>,
    pub depth: Option<u32>,
    pub num_classes: Option<i64>,
    pub alpha: Option<i64>,
    pub beta_inv: Option<i64>,
    pub fusion_conv_channel_ratio: Option<i64>,
    pub fusion_kernel_size: Option<i64>,
    pub num_groups: Option<i64>,
    pub width_per_group: Option<i64>,
    pub input_channels: Option<i64>,
    pub temporal_kernels: Option<[[i64; 2]; 5]>,
    pub num_block_temp_kernel: Option<[[usize; 2]; 4]>,
    pub spatial_strides: Option<[[i64; 2]; 4]>,
    pub temporal_strides: Option<[[i64; 2]; 4]>,
    pub spatial_dilations: Option<[[i64; 2]; 4]>,
    pub dropout: Option<f64>,
    pub zero_init_final_bn: Option<bool>,
    pub fc_init_std: Option<f64>,
    pub bn_eps: Option<f64>,
    pub bn_momentum: Option<f64>,
    pub head_pool: Option<HeadPool>,
}

impl ModelSection {
    /// The preset (R50 8x8 when none is named) with the overrides applied,
    /// validated; errors name the `model.` key.
    pub fn resolve(&self) -> Result<ModelConfig, (String, String)> {
        let mut c = self.arch.map(Preset::config).unwrap_or_else(ModelConfig::r50);
        macro_rules! apply {
            ($($f:ident),*) => { $( if let Some(v) = &self.$f { c.$f = v.clone(); } )* };
        }
        apply!(
            depth,
            num_classes,
            alpha,
            beta_inv,
            fusion_conv_channel_ratio,
            fusion_kernel_size,
            num_groups,
            width_per_group,
            input_channels,
            temporal_kernels,
            num_block_temp_kernel,
            spatial_strides,
            temporal_strides,
            spatial_dilations,
            dropout,
            zero_init_final_bn,
            fc_init_std,
            bn_eps,
            bn_momentum,
            head_pool
        );
        c.validate().map_err(|e| match e {
            crate::model::ModelError::Config { field, why } => (format!("model.{field}"), why),
            other => ("model".to_string(), other.to_string()),
        })?;
        if !(c.bn_momentum > 0.0 && c.bn_momentum <= 1.0) {
            return Err(("model.bn_momentum".into(), format!("must be in (0, 1], got {}", c.bn_momentum)));
        }
        Ok(c)
    }
}
