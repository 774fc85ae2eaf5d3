//! The network's own structs, walked in the order of
//! `SlowFast::forward_unchecked`, turned into ONNX nodes: stem, lateral
//! fusion after s1 .. s4, residual blocks, head. Eval mode: BatchNorm is
//! folded into the conv before it and dropout disappears. Values are named
//! after the PySlowFast variable paths they come from.

use onnx_rs::ast::OpType;

use crate::model::config::{FAST, HeadPool, SLOW};
use crate::model::fuse::FuseFastToSlow;
use crate::model::head::Head;
use crate::model::layers::{BatchNorm3d, Conv3d};
use crate::model::resnet::ResBlock;
use crate::model::stem::{self, Stem};
use crate::model::{EvalOutput, SlowFast};

use super::ExportError;
use super::fold::fold;
use super::graph::GraphBuilder;

/// Adds the network from the graph inputs `inputs` (`[slow, fast]`) to a
/// final value named `output_name`; returns that name.
pub fn network(
    g: &mut GraphBuilder,
    model: &SlowFast,
    inputs: [String; 2],
    output: EvalOutput,
    output_name: &str,
) -> Result<String, ExportError> {
    // Every BatchNorm3d of the network is built with the config's eps.
    let eps = model.config.bn_eps;
    let mut x = inputs;
    for p in [SLOW, FAST] {
        x[p] = stem(g, &format!("s1.pathway{p}_stem"), &model.stem[p], eps, &x[p])?;
    }
    if let Some(f) = model.fuse.first() {
        x[SLOW] = fuse(g, "s1_fuse", f, eps, &x)?;
    }
    for (s, blocks) in model.stages.iter().enumerate() {
        for p in [SLOW, FAST] {
            for (i, block) in blocks[p].iter().enumerate() {
                x[p] = res_block(g, &format!("s{}.pathway{p}_res{i}", s + 2), block, eps, &x[p])?;
            }
        }
        if let Some(f) = model.fuse.get(s + 1) {
            x[SLOW] = fuse(g, &format!("s{}_fuse", s + 2), f, eps, &x)?;
        }
    }
    Ok(head(g, &model.head, &x, output, output_name))
}

/// Conv with its BatchNorm folded in; `conv_path`/`bn_path` are the
/// variable paths of the two layers.
fn conv_bn(
    g: &mut GraphBuilder,
    conv_path: &str,
    conv: &Conv3d,
    bn_path: &str,
    bn: &BatchNorm3d,
    eps: f64,
    x: &str,
) -> Result<String, ExportError> {
    let folded = fold(conv, bn, eps, bn_path)?;
    let w = g.initializer(format!("{conv_path}.weight"), &folded.weight);
    let b = g.initializer(format!("{conv_path}.bias"), &folded.bias);
    let pads: Vec<i64> = conv.padding.iter().chain(&conv.padding).copied().collect();
    Ok(g.node(OpType::Conv, conv_path, &[x, &w, &b])
        .ints("kernel_shape", &conv.kernel)
        .ints("strides", &conv.stride)
        .ints("pads", &pads)
        .ints("dilations", &conv.dilation)
        .int("group", conv.groups)
        .out())
}

fn relu(g: &mut GraphBuilder, name: String, x: &str) -> String {
    g.node(OpType::Relu, name, &[x]).out()
}

fn stem(g: &mut GraphBuilder, path: &str, stem: &Stem, eps: f64, x: &str) -> Result<String, ExportError> {
    let y = conv_bn(g, &format!("{path}.conv"), &stem.conv, &format!("{path}.bn"), &stem.bn, eps, x)?;
    let y = relu(g, format!("{path}.relu"), &y);
    let pads: Vec<i64> = stem::POOL_PADDING.iter().chain(&stem::POOL_PADDING).copied().collect();
    Ok(g.node(OpType::MaxPool, format!("{path}.pool_layer"), &[&y])
        .ints("kernel_shape", &stem::POOL_KERNEL)
        .ints("strides", &stem::POOL_STRIDE)
        .ints("pads", &pads)
        .out())
}

/// Lateral conv + BN + ReLU on the fast pathway, concatenated onto slow.
fn fuse(g: &mut GraphBuilder, path: &str, f: &FuseFastToSlow, eps: f64, x: &[String; 2]) -> Result<String, ExportError> {
    let lateral = conv_bn(g, &format!("{path}.conv_f2s"), &f.conv_f2s, &format!("{path}.bn"), &f.bn, eps, &x[FAST])?;
    let lateral = relu(g, format!("{path}.relu"), &lateral);
    Ok(g.node(OpType::Concat, format!("{path}.concat"), &[&x[SLOW], &lateral]).int("axis", 1).out())
}

fn res_block(g: &mut GraphBuilder, path: &str, block: &ResBlock, eps: f64, x: &str) -> Result<String, ExportError> {
    let b = &block.branch2;
    let q = format!("{path}.branch2");
    let y = conv_bn(g, &format!("{q}.a"), &b.a, &format!("{q}.a_bn"), &b.a_bn, eps, x)?;
    let y = relu(g, format!("{q}.a_relu"), &y);
    let y = conv_bn(g, &format!("{q}.b"), &b.b, &format!("{q}.b_bn"), &b.b_bn, eps, &y)?;
    let y = relu(g, format!("{q}.b_relu"), &y);
    let y = conv_bn(g, &format!("{q}.c"), &b.c, &format!("{q}.c_bn"), &b.c_bn, eps, &y)?;
    let shortcut = match &block.branch1 {
        Some((conv, bn)) => conv_bn(g, &format!("{path}.branch1"), conv, &format!("{path}.branch1_bn"), bn, eps, x)?,
        None => x.to_string(),
    };
    let sum = g.node(OpType::Add, format!("{path}.add"), &[&shortcut, &y]).out();
    Ok(relu(g, format!("{path}.relu"), &sum))
}

/// `Global`: mean over [T, H, W] per pathway, concat, Gemm, softmax.
/// `Kernel`: average pool per pathway with stride 1, concat, channels last,
/// projection at every remaining position, softmax per position, then the
/// mean over positions, as `Head::forward_t` does in eval.
fn head(g: &mut GraphBuilder, head: &Head, x: &[String; 2], output: EvalOutput, output_name: &str) -> String {
    let softmax = output == EvalOutput::Probabilities;
    let weight = head.projection.ws.shallow_clone();
    let bias = head.projection.bs.as_ref().map(|b| b.shallow_clone());
    match &head.pool {
        HeadPool::Global => {
            let pooled: Vec<String> = [SLOW, FAST]
                .map(|p| g.node(OpType::ReduceMean, format!("head.pathway{p}_avgpool"), &[&x[p]]).ints("axes", &[2, 3, 4]).out())
                .to_vec();
            let cat = g.node(OpType::Concat, "head.concat", &[&pooled[0], &pooled[1]]).int("axis", 1).out();
            let flat = g.node(OpType::Flatten, "head.flatten", &[&cat]).int("axis", 1).out();
            let w = g.initializer("head.projection.weight".to_string(), &weight);
            let mut inputs = vec![flat, w];
            if let Some(b) = &bias {
                inputs.push(g.initializer("head.projection.bias".to_string(), b));
            }
            let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
            let logits_name = if softmax { "head.projection" } else { output_name };
            let logits = g.node(OpType::Gemm, logits_name, &inputs).int("transB", 1).out();
            if softmax { g.node(OpType::Softmax, output_name, &[&logits]).int("axis", -1).out() } else { logits }
        }
        HeadPool::Kernel { slow, fast } => {
            let pooled: Vec<String> = [(SLOW, slow), (FAST, fast)]
                .map(|(p, k)| {
                    g.node(OpType::AveragePool, format!("head.pathway{p}_avgpool"), &[&x[p]])
                        .ints("kernel_shape", k)
                        .ints("strides", &[1, 1, 1])
                        .out()
                })
                .to_vec();
            let cat = g.node(OpType::Concat, "head.concat", &[&pooled[0], &pooled[1]]).int("axis", 1).out();
            // [N, C, T, H, W] -> [N, T, H, W, C]: one prediction per position.
            let last = g.node(OpType::Transpose, "head.channels_last", &[&cat]).ints("perm", &[0, 2, 3, 4, 1]).out();
            let w = g.initializer("head.projection.weight_transposed".to_string(), &weight.tr());
            let mut y = g.node(OpType::MatMul, "head.projection.matmul", &[&last, &w]).out();
            if let Some(b) = &bias {
                let b = g.initializer("head.projection.bias".to_string(), b);
                y = g.node(OpType::Add, "head.projection", &[&y, &b]).out();
            }
            if softmax {
                y = g.node(OpType::Softmax, "head.softmax", &[&y]).int("axis", -1).out();
            }
            // keepdims stays 1 (see graph.rs); Flatten drops the three 1s.
            let mean = g.node(OpType::ReduceMean, "head.position_mean", &[&y]).ints("axes", &[1, 2, 3]).out();
            g.node(OpType::Flatten, output_name, &[&mean]).int("axis", 1).out()
        }
    }
}
