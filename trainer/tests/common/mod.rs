//! The parity fixtures of `tests/fixtures/` (made by `generate.py` from
//! pytorchvideo's `create_slowfast`), shared by the parity and export tests.
// Each test crate uses a different part of this module.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use tch::{Device, Tensor, nn};
use trainer::model::{HeadPool, ModelConfig, Preset, SlowFast};
use trainer::weights::{self, LoadMode};

#[derive(Deserialize)]
struct FixtureConfig {
    depth: u32,
    width_per_group: i64,
    beta_inv: i64,
    alpha: i64,
    fusion_kernel: i64,
    fusion_conv_channel_ratio: i64,
    num_classes: i64,
    dropout: f64,
}

pub struct Fixture {
    pub vs: nn::VarStore,
    pub model: SlowFast,
    /// Inputs and the reference's outputs and gradients.
    pub io: BTreeMap<String, Tensor>,
}

pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A fixture's model, weights loaded strictly, with `head_pool`.
pub fn fixture(name: &str, head_pool: HeadPool) -> Fixture {
    let dir = fixtures_dir();
    let text = std::fs::read_to_string(dir.join(format!("{name}_config.json"))).expect("fixture config");
    let f: FixtureConfig = serde_json::from_str(&text).expect("fixture config JSON");
    let config = ModelConfig {
        depth: f.depth,
        width_per_group: f.width_per_group,
        beta_inv: f.beta_inv,
        alpha: f.alpha,
        fusion_kernel_size: f.fusion_kernel,
        fusion_conv_channel_ratio: f.fusion_conv_channel_ratio,
        num_classes: f.num_classes,
        dropout: f.dropout,
        head_pool,
        ..Preset::SlowFast8x8R50.config()
    };
    let mut vs = nn::VarStore::new(Device::Cpu);
    let model = SlowFast::new(&vs.root(), &config).expect("fixture model");
    weights::load(&mut vs, &dir.join(format!("{name}_weights.safetensors")), LoadMode::Strict).expect("fixture weights");
    let io = weights::read(&dir.join(format!("{name}_io.safetensors"))).expect("fixture io");
    Fixture { vs, model, io }
}

pub fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size(), "shapes differ");
    (a - b).abs().max().double_value(&[])
}
