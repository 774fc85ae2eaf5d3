//! An ONNX graph under construction, owning its names and weight bytes, and
//! its encoding through `onnx-rs` (whose AST only borrows).
//!
//! onnx-rs leaves out every scalar field that equals zero, so an attribute
//! such as `keepdims = 0` is written with no value at all. onnx.checker and
//! ONNX Runtime 1.32 read that back as 0, but only because they treat a
//! missing field as its default; graphs built here never set an integer
//! attribute to 0 rather than rely on every reader (TensorRT's parser, older
//! runtimes) doing the same: they keep dimensions and `Flatten` instead.

use onnx_rs::ast::{
    Attribute, AttributeType, DataType, Dimension, Graph as OnnxGraph, Model, Node, OpType, OperatorSetId, StringStringEntry, TensorProto,
    TensorShape, TensorShapeDimension, TensorTypeProto, TypeProto, TypeValue, ValueInfo,
};
use tch::{Device, Kind, Tensor};

/// ONNX opset of every exported model (ReduceMean still takes `axes` as an
/// attribute here), and the IR version that goes with it.
pub const OPSET: i64 = 17;
const IR_VERSION: i64 = 8;

/// A dimension of a graph input or output: fixed, or named and dynamic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dim {
    Fixed(i64),
    Named(&'static str),
}

#[derive(Debug)]
enum AttrValue {
    Int(i64),
    Ints(Vec<i64>),
}

#[derive(Debug)]
struct NodeDef {
    op: OpType<'static>,
    name: String,
    inputs: Vec<String>,
    output: String,
    attrs: Vec<(&'static str, AttrValue)>,
}

#[derive(Debug)]
struct Initializer {
    name: String,
    dims: Vec<i64>,
    kind: Element,
    /// Little endian, as ONNX `raw_data` is defined.
    raw: Vec<u8>,
}

/// Element types of the initializers written: f32 weights, and the int8
/// weights and uint8 / int8 zero points of a quantised graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Element {
    Float,
    Int8,
    Uint8,
}

/// Nodes in execution order plus their weights.
#[derive(Debug, Default)]
pub struct GraphBuilder {
    nodes: Vec<NodeDef>,
    initializers: Vec<Initializer>,
    inputs: Vec<(String, Vec<Dim>)>,
    outputs: Vec<(String, Vec<Dim>)>,
}

/// Model-level fields written around the graph.
pub struct ModelInfo<'a> {
    pub producer_name: &'a str,
    pub producer_version: &'a str,
    pub doc_string: &'a str,
    pub metadata: &'a [(String, String)],
}

impl GraphBuilder {
    /// Declares an f32 graph input; returns its name for the first node.
    pub fn input(&mut self, name: &str, dims: Vec<Dim>) -> String {
        self.inputs.push((name.to_string(), dims));
        name.to_string()
    }

    /// Declares `value` (an f32 node output) as a graph output.
    pub fn output(&mut self, value: &str, dims: Vec<Dim>) {
        self.outputs.push((value.to_string(), dims));
    }

    /// Adds a weight tensor (converted to f32) and returns its name.
    pub fn initializer(&mut self, name: String, t: &Tensor) -> String {
        let t = t.detach().to_device(Device::Cpu).to_kind(Kind::Float).contiguous();
        let n = t.numel();
        let mut values = vec![0f32; n];
        t.copy_data(&mut values, n);
        let mut raw = Vec::with_capacity(4 * n);
        for v in values {
            raw.extend_from_slice(&v.to_le_bytes());
        }
        self.initializers.push(Initializer { name: name.clone(), dims: t.size(), kind: Element::Float, raw });
        name
    }

    /// Adds an f32 initializer from values.
    pub fn floats(&mut self, name: String, dims: Vec<i64>, values: &[f32]) -> String {
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializers.push(Initializer { name: name.clone(), dims, kind: Element::Float, raw });
        name
    }

    /// Adds an int8 or uint8 initializer of raw bytes.
    pub fn bytes(&mut self, name: String, dims: Vec<i64>, kind: Element, raw: Vec<u8>) -> String {
        self.initializers.push(Initializer { name: name.clone(), dims, kind, raw });
        name
    }

    /// Adds a node whose single output is a value named `output`.
    pub fn node(&mut self, op: OpType<'static>, output: impl Into<String>, inputs: &[&str]) -> NodeRef<'_> {
        let output = output.into();
        self.nodes.push(NodeDef {
            op,
            name: output.clone(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            output,
            attrs: Vec::new(),
        });
        let last = self.nodes.len() - 1;
        NodeRef { node: &mut self.nodes[last] }
    }

    /// Serialises the model as an ONNX protobuf.
    pub fn encode(&self, info: &ModelInfo<'_>) -> Vec<u8> {
        let nodes = self
            .nodes
            .iter()
            .map(|n| Node {
                input: n.inputs.iter().map(String::as_str).collect(),
                output: vec![n.output.as_str()],
                name: &n.name,
                op_type: n.op.clone(),
                attribute: n.attrs.iter().map(|(name, v)| attribute(name, v)).collect(),
                ..Default::default()
            })
            .collect();
        let data_type = |k: Element| match k {
            Element::Float => DataType::Float,
            Element::Int8 => DataType::Int8,
            Element::Uint8 => DataType::Uint8,
        };
        let initializers =
            self.initializers.iter().map(|i| TensorProto::from_raw(&i.name, i.dims.clone(), data_type(i.kind), &i.raw)).collect();
        let graph = OnnxGraph {
            node: nodes,
            name: "slowfast",
            initializer: initializers,
            input: self.inputs.iter().map(|(n, d)| value_info(n, d)).collect(),
            output: self.outputs.iter().map(|(n, d)| value_info(n, d)).collect(),
            ..Default::default()
        };
        let model = Model {
            ir_version: IR_VERSION,
            opset_import: vec![OperatorSetId { domain: "", version: OPSET }],
            producer_name: info.producer_name,
            producer_version: info.producer_version,
            doc_string: info.doc_string,
            graph: Some(graph),
            metadata_props: info.metadata.iter().map(|(k, v)| StringStringEntry { key: k.as_str(), value: v.as_str() }).collect(),
            ..Default::default()
        };
        onnx_rs::encode(&model)
    }
}

/// The node just added, to give it attributes.
pub struct NodeRef<'g> {
    node: &'g mut NodeDef,
}

impl NodeRef<'_> {
    /// An integer attribute; never 0 (see the module docs).
    pub fn int(self, name: &'static str, v: i64) -> Self {
        debug_assert_ne!(v, 0, "attribute {name} = 0 cannot be encoded by onnx-rs");
        self.node.attrs.push((name, AttrValue::Int(v)));
        self
    }

    pub fn ints(self, name: &'static str, v: &[i64]) -> Self {
        self.node.attrs.push((name, AttrValue::Ints(v.to_vec())));
        self
    }

    /// Name of the node's output value.
    pub fn out(self) -> String {
        self.node.output.clone()
    }
}

fn attribute<'a>(name: &'a str, v: &'a AttrValue) -> Attribute<'a> {
    match v {
        AttrValue::Int(i) => Attribute { name, r#type: AttributeType::Int, i: *i, ..Default::default() },
        AttrValue::Ints(ints) => Attribute { name, r#type: AttributeType::Ints, ints: ints.clone(), ..Default::default() },
    }
}

fn value_info<'a>(name: &'a str, dims: &[Dim]) -> ValueInfo<'a> {
    let dim = dims
        .iter()
        .map(|d| TensorShapeDimension {
            value: match *d {
                Dim::Fixed(v) => Dimension::Value(v),
                Dim::Named(n) => Dimension::Param(n),
            },
            ..Default::default()
        })
        .collect();
    ValueInfo {
        name,
        r#type: Some(TypeProto {
            value: Some(TypeValue::Tensor(TensorTypeProto { elem_type: DataType::Float, shape: Some(TensorShape { dim }) })),
            ..Default::default()
        }),
        ..Default::default()
    }
}
