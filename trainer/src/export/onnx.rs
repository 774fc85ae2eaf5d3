//! The ONNX backend of the network's walk: eval mode, BatchNorm folded into
//! the conv before it, no dropout. Nodes and weights are named after the
//! PySlowFast module paths the layers carry.
//!
//! With a [`Calibration`], the graph is quantised in QDQ form, which
//! OpenVINO and TensorRT both turn into INT8 kernels: the input of every
//! convolution and of the classifier's projection goes through
//! QuantizeLinear / DequantizeLinear (per-tensor uint8, its calibrated
//! range), and their weights are stored as int8 (per output channel,
//! symmetric, zero point 0) behind a DequantizeLinear. Biases stay f32.

use onnx_rs::ast::OpType;

use crate::model::config::{FAST, HeadPool, SLOW};
use crate::model::head::Head;
use crate::model::layers::{BatchNorm3d, Conv3d, MaxPool3d};
use crate::model::walk::{Backend, Op};
use crate::model::{EvalOutput, SlowFast};

use super::ExportError;
use super::calibrate::Calibration;
use super::fold::fold;
use super::graph::{Element, GraphBuilder};

/// Adds the network from the graph inputs `inputs` (`[slow, fast]`) to a
/// final value named `output_name`; returns that name.
pub fn network(
    g: &mut GraphBuilder,
    model: &SlowFast,
    inputs: [String; 2],
    output: EvalOutput,
    output_name: &str,
    quant: Option<&Calibration>,
) -> Result<String, ExportError> {
    // Every BatchNorm3d of the network is built with the config's eps.
    let mut onnx = Onnx { g, eps: model.config.bn_eps, output, output_name, quant };
    model.walk(&mut onnx, &inputs[SLOW], &inputs[FAST])
}

/// Values are the names of the nodes' outputs.
struct Onnx<'a> {
    g: &'a mut GraphBuilder,
    eps: f64,
    output: EvalOutput,
    output_name: &'a str,
    quant: Option<&'a Calibration>,
}

impl<'m> Backend<'m> for Onnx<'_> {
    type Value = String;
    type Error = ExportError;

    fn conv_bn(&mut self, conv: &'m Conv3d, bn: &'m BatchNorm3d, x: &String) -> Result<String, ExportError> {
        let folded = fold(conv, bn, self.eps, &bn.name)?;
        let (x, w) = match self.quant {
            None => (x.clone(), self.g.initializer(format!("{}.weight", conv.name), &folded.weight)),
            Some(q) => (
                quantize_activation(self.g, q, &conv.name, x)?,
                quantize_weight(self.g, &format!("{}.weight", conv.name), &folded.weight, -5)?,
            ),
        };
        let b = self.g.initializer(format!("{}.bias", conv.name), &folded.bias);
        Ok(self
            .g
            .node(OpType::Conv, &conv.name, &[&x, &w, &b])
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
        head(self.g, h, [slow, fast], self.output, self.output_name, self.quant)
    }
}

/// `x` through QuantizeLinear and DequantizeLinear with the uint8 scale and
/// zero point of the range calibrated for `node`'s input. The range is
/// widened to hold 0, so that zero (padding, ReLU's floor) is exact.
fn quantize_activation(g: &mut GraphBuilder, q: &Calibration, node: &str, x: &str) -> Result<String, ExportError> {
    let Some([lo, hi]) = q.range(node) else {
        return Err(ExportError::BadOption { field: "calibration", why: format!("no range was recorded for the input of {node}") });
    };
    if !(lo.is_finite() && hi.is_finite()) {
        return Err(ExportError::BadOption { field: "calibration", why: format!("the input of {node} has range [{lo}, {hi}]") });
    }
    let (lo, hi) = (lo.min(0.0), hi.max(0.0));
    let scale = if hi > lo { (hi - lo) / 255.0 } else { 1.0 };
    let zero_point = (-lo / scale).round().clamp(0.0, 255.0) as u8;
    let s = g.floats(format!("{node}.input_scale"), vec![], &[scale]);
    let z = g.bytes(format!("{node}.input_zero_point"), vec![], Element::Uint8, vec![zero_point]);
    let quantized = g.node(OpType::QuantizeLinear, format!("{node}.input_quantized"), &[x, &s, &z]).out();
    Ok(g.node(OpType::DequantizeLinear, format!("{node}.input_dequantized"), &[&quantized, &s, &z]).out())
}

/// `weight` as int8 per slice along `axis` (symmetric: scale = max |w| /
/// 127, zero point 0) behind a DequantizeLinear. `axis` is given negative:
/// onnx-rs leaves out integer attributes equal to 0 (see graph.rs), and a
/// missing `axis` means 1.
fn quantize_weight(g: &mut GraphBuilder, name: &str, weight: &tch::Tensor, axis: i64) -> Result<String, ExportError> {
    let w = weight.detach().to_device(tch::Device::Cpu).to_kind(tch::Kind::Float).contiguous();
    let dims = w.size();
    let rank = dims.len() as i64;
    let along = (axis + rank) as usize;
    if axis >= 0 || axis < -rank {
        return Err(ExportError::Weights { tensor: name.into(), why: format!("axis {axis} for a tensor of rank {rank}") });
    }
    let n = w.numel();
    let mut values = vec![0f32; n];
    w.copy_data(&mut values, n);
    // Element k belongs to channel (k / inner) % channels.
    let channels = dims[along] as usize;
    let inner: usize = dims[along + 1..].iter().product::<i64>() as usize;
    let mut max_abs = vec![0f32; channels];
    for (k, v) in values.iter().enumerate() {
        let c = (k / inner) % channels;
        max_abs[c] = max_abs[c].max(v.abs());
    }
    if max_abs.iter().any(|m| !m.is_finite()) {
        return Err(ExportError::Weights { tensor: name.into(), why: "holds a value that is not finite".into() });
    }
    let scales: Vec<f32> = max_abs.iter().map(|&m| if m > 0.0 { m / 127.0 } else { 1.0 }).collect();
    let raw: Vec<u8> =
        values.iter().enumerate().map(|(k, v)| (v / scales[(k / inner) % channels]).round().clamp(-127.0, 127.0) as i8 as u8).collect();
    let q = g.bytes(format!("{name}_quantized"), dims.clone(), Element::Int8, raw);
    let s = g.floats(format!("{name}_scale"), vec![channels as i64], &scales);
    let z = g.bytes(format!("{name}_zero_point"), vec![channels as i64], Element::Int8, vec![0; channels]);
    Ok(g.node(OpType::DequantizeLinear, format!("{name}_dequantized"), &[&q, &s, &z]).int("axis", axis).out())
}

/// ONNX pads: the begins of every axis, then the ends.
fn pads(padding: [i64; 3]) -> Vec<i64> {
    padding.iter().chain(&padding).copied().collect()
}

/// `Global`: mean over [T, H, W] per pathway, concat, Gemm, softmax.
/// `Kernel`: average pool per pathway with stride 1, concat, channels last,
/// projection at every remaining position, softmax per position, then the
/// mean over positions, as `Head::forward_t` does in eval.
fn head(
    g: &mut GraphBuilder,
    head: &Head,
    x: [&str; 2],
    output: EvalOutput,
    output_name: &str,
    quant: Option<&Calibration>,
) -> Result<String, ExportError> {
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
            let mut flat = g.node(OpType::Flatten, format!("{name}.flatten"), &[&cat]).int("axis", 1).out();
            let w = match quant {
                None => g.initializer(format!("{name}.projection.weight"), &weight),
                Some(q) => {
                    flat = quantize_activation(g, q, name, &flat)?;
                    // [classes, features] with transB: one scale per class.
                    quantize_weight(g, &format!("{name}.projection.weight"), &weight, -2)?
                }
            };
            let mut inputs = vec![flat, w];
            if let Some(b) = &bias {
                inputs.push(g.initializer(format!("{name}.projection.bias"), b));
            }
            let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
            let logits_name = if softmax { format!("{name}.projection") } else { output_name.to_string() };
            let logits = g.node(OpType::Gemm, logits_name, &inputs).int("transB", 1).out();
            Ok(if softmax { g.node(OpType::Softmax, output_name, &[&logits]).int("axis", -1).out() } else { logits })
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
            let mut last = g.node(OpType::Transpose, format!("{name}.channels_last"), &[&cat]).ints("perm", &[0, 2, 3, 4, 1]).out();
            let w = match quant {
                None => g.initializer(format!("{name}.projection.weight_transposed"), &weight.tr()),
                Some(q) => {
                    last = quantize_activation(g, q, name, &last)?;
                    // [features, classes]: one scale per class.
                    quantize_weight(g, &format!("{name}.projection.weight_transposed"), &weight.tr(), -1)?
                }
            };
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
            Ok(g.node(OpType::Flatten, output_name, &[&mean]).int("axis", 1).out())
        }
    }
}
