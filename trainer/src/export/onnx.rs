//! The ONNX backend of the network's walk: eval mode, BatchNorm folded into
//! the conv before it, no dropout. Nodes and weights are named after the
//! PySlowFast module paths the layers carry.

use onnx_rs::ast::OpType;

use crate::model::config::{FAST, HeadPool, SLOW};
use crate::model::head::Head;
use crate::model::layers::{BatchNorm3d, Conv3d, MaxPool3d};
use crate::model::walk::{Backend, Op};
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
    let mut onnx = Onnx { g, eps: model.config.bn_eps, output, output_name };
    model.walk(&mut onnx, &inputs[SLOW], &inputs[FAST])
}

/// Values are the names of the nodes' outputs.
struct Onnx<'a> {
    g: &'a mut GraphBuilder,
    eps: f64,
    output: EvalOutput,
    output_name: &'a str,
}

impl<'m> Backend<'m> for Onnx<'_> {
    type Value = String;
    type Error = ExportError;

    fn conv_bn(&mut self, conv: &'m Conv3d, bn: &'m BatchNorm3d, x: &String) -> Result<String, ExportError> {
        let folded = fold(conv, bn, self.eps, &bn.name)?;
        let w = self.g.initializer(format!("{}.weight", conv.name), &folded.weight);
        let b = self.g.initializer(format!("{}.bias", conv.name), &folded.bias);
        Ok(self
            .g
            .node(OpType::Conv, &conv.name, &[x, &w, &b])
            .ints("kernel_shape", &conv.kernel)
            .ints("strides", &conv.stride)
            .ints("pads", &pads(conv.padding))
            .ints("dilations", &conv.dilation)
            .int("group", conv.groups)
            .out())
    }

    fn relu(&mut self, op: Op<'_>, x: String) -> Result<String, ExportError> {
        Ok(self.g.node(OpType::Relu, op.to_string(), &[&x]).out())
    }

    fn max_pool(&mut self, op: Op<'_>, pool: &MaxPool3d, x: String) -> Result<String, ExportError> {
        Ok(self
            .g
            .node(OpType::MaxPool, op.to_string(), &[&x])
            .ints("kernel_shape", &pool.kernel)
            .ints("strides", &pool.stride)
            .ints("pads", &pads(pool.padding))
            .out())
    }

    fn concat(&mut self, op: Op<'_>, a: &String, b: &String) -> Result<String, ExportError> {
        Ok(self.g.node(OpType::Concat, op.to_string(), &[a, b]).int("axis", 1).out())
    }

    fn add(&mut self, op: Op<'_>, a: &String, b: &String) -> Result<String, ExportError> {
        Ok(self.g.node(OpType::Add, op.to_string(), &[a, b]).out())
    }

    fn head(&mut self, h: &'m Head, slow: &String, fast: &String) -> Result<String, ExportError> {
        Ok(head(self.g, h, [slow, fast], self.output, self.output_name))
    }
}

/// ONNX pads: the begins of every axis, then the ends.
fn pads(padding: [i64; 3]) -> Vec<i64> {
    padding.iter().chain(&padding).copied().collect()
}

/// `Global`: mean over [T, H, W] per pathway, concat, Gemm, softmax.
/// `Kernel`: average pool per pathway with stride 1, concat, channels last,
/// projection at every remaining position, softmax per position, then the
/// mean over positions, as `Head::forward_t` does in eval.
fn head(g: &mut GraphBuilder, head: &Head, x: [&str; 2], output: EvalOutput, output_name: &str) -> String {
    let name = &head.name;
    let softmax = output == EvalOutput::Probabilities;
    let weight = head.projection.ws.shallow_clone();
    let bias = head.projection.bs.as_ref().map(|b| b.shallow_clone());
    match &head.pool {
        HeadPool::Global => {
            let pooled: Vec<String> = [SLOW, FAST]
                .map(|p| g.node(OpType::ReduceMean, format!("{name}.pathway{p}_avgpool"), &[x[p]]).ints("axes", &[2, 3, 4]).out())
                .to_vec();
            let cat = g.node(OpType::Concat, format!("{name}.concat"), &[&pooled[0], &pooled[1]]).int("axis", 1).out();
            let flat = g.node(OpType::Flatten, format!("{name}.flatten"), &[&cat]).int("axis", 1).out();
            let w = g.initializer(format!("{name}.projection.weight"), &weight);
            let mut inputs = vec![flat, w];
            if let Some(b) = &bias {
                inputs.push(g.initializer(format!("{name}.projection.bias"), b));
            }
            let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
            let logits_name = if softmax { format!("{name}.projection") } else { output_name.to_string() };
            let logits = g.node(OpType::Gemm, logits_name, &inputs).int("transB", 1).out();
            if softmax { g.node(OpType::Softmax, output_name, &[&logits]).int("axis", -1).out() } else { logits }
        }
        HeadPool::Kernel { slow, fast } => {
            let pooled: Vec<String> = [(SLOW, slow), (FAST, fast)]
                .map(|(p, k)| {
                    g.node(OpType::AveragePool, format!("{name}.pathway{p}_avgpool"), &[x[p]])
                        .ints("kernel_shape", k)
                        .ints("strides", &[1, 1, 1])
                        .out()
                })
                .to_vec();
            let cat = g.node(OpType::Concat, format!("{name}.concat"), &[&pooled[0], &pooled[1]]).int("axis", 1).out();
            // [N, C, T, H, W] -> [N, T, H, W, C]: one prediction per position.
            let last = g.node(OpType::Transpose, format!("{name}.channels_last"), &[&cat]).ints("perm", &[0, 2, 3, 4, 1]).out();
            let w = g.initializer(format!("{name}.projection.weight_transposed"), &weight.tr());
            let mut y = g.node(OpType::MatMul, format!("{name}.projection.matmul"), &[&last, &w]).out();
            if let Some(b) = &bias {
                let b = g.initializer(format!("{name}.projection.bias"), b);
                y = g.node(OpType::Add, format!("{name}.projection"), &[&y, &b]).out();
            }
            if softmax {
                y = g.node(OpType::Softmax, format!("{name}.softmax"), &[&y]).int("axis", -1).out();
            }
            // keepdims stays 1 (see graph.rs); Flatten drops the three 1s.
            let mean = g.node(OpType::ReduceMean, format!("{name}.position_mean"), &[&y]).ints("axes", &[1, 2, 3]).out();
            g.node(OpType::Flatten, output_name, &[&mean]).int("axis", 1).out()
        }
    }
}
