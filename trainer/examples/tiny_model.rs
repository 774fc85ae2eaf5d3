//! Makes `runtime/tests/fixtures/tiny_8x8.onnx`, the small model the runtime
//! and GStreamer element tests run: the SlowFast 8x8 R50 topology at width 8
//! (`width_per_group: 8`), 5 classes, random init, 32 px crop, logits output.
//!
//! ```text
//! cargo run -p trainer --example tiny_model -- runtime/tests/fixtures/tiny_8x8.onnx
//! ```

use anyhow::Context;
use tch::{Device, nn};
use trainer::export::{self, ExportOptions};
use trainer::model::{EvalOutput, ModelConfig, Preset, SlowFast};

fn main() -> anyhow::Result<()> {
    let out = std::env::args().nth(1).context("usage: tiny_model OUTPUT.onnx")?;
    tch::manual_seed(0);
    let config = ModelConfig { width_per_group: 8, num_classes: 5, zero_init_final_bn: false, ..Preset::SlowFast8x8R50.config() };
    let vs = nn::VarStore::new(Device::Cpu);
    let model = SlowFast::new(&vs.root(), &config)?;
    let labels = ["archery", "bowling", "cooking", "dancing", "eating"].map(String::from).to_vec();
    let opts = ExportOptions {
        output: EvalOutput::Logits,
        crop_size: 32,
        recipe: "tiny-width test fixture (width_per_group 8, random init)".into(),
        ..ExportOptions::new(labels)
    };
    let bytes = export::export_onnx(&model, &opts)?;
    export::write_model(std::path::Path::new(&out), &bytes)?;
    println!("wrote {out} ({} bytes)", bytes.len());
    Ok(())
}
