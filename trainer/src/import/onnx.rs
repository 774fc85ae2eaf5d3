//! Weights back out of an ONNX file this project exported (`trainer
//! export`, fp32): a model shipped without its weights file (the bundled
//! demo model) can still be quantised, re-exported or fine-tuned.
//!
//! Export folds each BatchNorm into the conv before it, so the file holds
//! the folded conv (`N.weight`, `N.bias`) and no BN. The BN comes back as
//! one that changes nothing but adds the bias: weight 1, bias = the folded
//! bias, running mean 0 and running variance `1 - eps` (so that
//! `sqrt(var + eps)` is 1). Exporting the result folds it back to the same
//! numbers (to the last bit but for the rounding of `1 - eps + eps`).
//! Training statistics are gone: fine-tuning starts from this eval-mode BN.

use std::collections::BTreeMap;

use tch::{Kind, Tensor};

use crate::export::PRODUCER_NAME;
use runtime::schema::metadata::{KEY_MODEL_CONFIG, KEY_QUANTIZATION};

/// The BN name of a conv, by PySlowFast's naming: `X.conv` and
/// `X.conv_f2s` go with `X.bn`, any other conv `N` with `N_bn`.
fn bn_of(conv: &str) -> String {
    for suffix in [".conv", ".conv_f2s"] {
        if let Some(module) = conv.strip_suffix(suffix) {
            return format!("{module}.bn");
        }
    }
    format!("{conv}_bn")
}

/// Our weights of the ONNX model in `bytes`; errors say why not.
pub fn read(bytes: &[u8]) -> Result<BTreeMap<String, Tensor>, String> {
    let model = onnx_rs::parse(bytes).map_err(|e| format!("not an ONNX model: {e}"))?;
    if model.producer_name != PRODUCER_NAME {
        return Err(format!("an ONNX model from {:?}: only models exported by `trainer export` can be read back", model.producer_name));
    }
    let meta: BTreeMap<&str, &str> = model.metadata_props.iter().map(|e| (e.key, e.value)).collect();
    if meta.contains_key(KEY_QUANTIZATION) {
        return Err("a quantised (INT8) model: its weights are rounded; read the fp32 model it was made from".into());
    }
    let config: serde_json::Value = meta
        .get(KEY_MODEL_CONFIG)
        .and_then(|c| serde_json::from_str(c).ok())
        .ok_or_else(|| format!("no readable {KEY_MODEL_CONFIG} in its metadata"))?;
    let eps = config.get("bn_eps").and_then(serde_json::Value::as_f64).ok_or_else(|| format!("{KEY_MODEL_CONFIG} has no bn_eps"))?;
    let graph = model.graph.as_ref().ok_or("the model has no graph")?;
    let mut floats: BTreeMap<&str, Tensor> = BTreeMap::new();
    for init in &graph.initializer {
        let values = init.as_f32().ok_or_else(|| format!("{}: not an f32 tensor", init.name()))?;
        let t = Tensor::from_slice(&values).view(init.dims());
        floats.insert(init.name(), t);
    }
    let mut out = BTreeMap::new();
    for (name, t) in &floats {
        if let Some(head) = name.strip_suffix(".projection.weight_transposed") {
            out.insert(format!("{head}.projection.weight"), t.tr().contiguous());
        } else if name.ends_with(".projection.weight") || name.ends_with(".projection.bias") {
            out.insert(name.to_string(), t.shallow_clone());
        } else if let Some(conv) = name.strip_suffix(".weight") {
            let bias = floats.get(format!("{conv}.bias").as_str()).ok_or_else(|| format!("{name} has no {conv}.bias beside it"))?;
            let channels = t.size()[0];
            let bn = bn_of(conv);
            out.insert(name.to_string(), t.shallow_clone());
            out.insert(format!("{bn}.weight"), Tensor::ones([channels], (Kind::Float, tch::Device::Cpu)));
            out.insert(format!("{bn}.bias"), bias.shallow_clone());
            out.insert(format!("{bn}.running_mean"), Tensor::zeros([channels], (Kind::Float, tch::Device::Cpu)));
            out.insert(format!("{bn}.running_var"), Tensor::full([channels], 1.0 - eps, (Kind::Float, tch::Device::Cpu)));
            out.insert(format!("{bn}.num_batches_tracked"), Tensor::zeros([], (Kind::Int64, tch::Device::Cpu)));
        } else if name.ends_with(".bias") {
            // Read with its weight.
        } else {
            return Err(format!("initializer {name} is not a conv or projection weight"));
        }
    }
    if out.is_empty() {
        return Err("no weights in it".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::bn_of;

    #[test]
    fn bn_names_follow_pyslowfast() {
        assert_eq!(bn_of("s1.pathway0_stem.conv"), "s1.pathway0_stem.bn");
        assert_eq!(bn_of("s1_fuse.conv_f2s"), "s1_fuse.bn");
        assert_eq!(bn_of("s2.pathway0_res0.branch2.a"), "s2.pathway0_res0.branch2.a_bn");
        assert_eq!(bn_of("s2.pathway1_res0.branch1"), "s2.pathway1_res0.branch1_bn");
    }
}
