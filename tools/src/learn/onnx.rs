//! Writing the learned model as an ONNX file, so it runs through the same
//! engines, providers and contract checks as any other model.
//!
//! Only the handful of `onnx.proto` messages a small float graph needs are
//! declared here, with prost's derive (field numbers from `onnx.proto`,
//! IR version 8, opset 13); proto3 encoding of these fields is what ONNX's
//! proto2 readers expect, defaults left out.

use prost::Message;

/// `TensorProto.DataType.FLOAT`.
const FLOAT: i32 = 1;
/// The IR version written (ONNX 1.10+, read by every ONNX Runtime in use).
const IR_VERSION: i64 = 8;
/// The default-domain opset the graph's operators are taken from.
const OPSET: i64 = 13;

#[derive(Clone, PartialEq, Message)]
struct ModelProto {
    #[prost(int64, tag = "1")]
    ir_version: i64,
    #[prost(string, tag = "2")]
    producer_name: String,
    #[prost(string, tag = "3")]
    producer_version: String,
    #[prost(string, tag = "6")]
    doc_string: String,
    #[prost(message, optional, tag = "7")]
    graph: Option<GraphProto>,
    #[prost(message, repeated, tag = "8")]
    opset_import: Vec<OperatorSetIdProto>,
    #[prost(message, repeated, tag = "14")]
    metadata_props: Vec<StringStringEntryProto>,
}

#[derive(Clone, PartialEq, Message)]
struct OperatorSetIdProto {
    #[prost(string, tag = "1")]
    domain: String,
    #[prost(int64, tag = "2")]
    version: i64,
}

#[derive(Clone, PartialEq, Message)]
struct StringStringEntryProto {
    #[prost(string, tag = "1")]
    key: String,
    #[prost(string, tag = "2")]
    value: String,
}

#[derive(Clone, PartialEq, Message)]
struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    node: Vec<NodeProto>,
    #[prost(string, tag = "2")]
    name: String,
    #[prost(message, repeated, tag = "5")]
    initializer: Vec<TensorProto>,
    #[prost(message, repeated, tag = "11")]
    input: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "12")]
    output: Vec<ValueInfoProto>,
}

#[derive(Clone, PartialEq, Message)]
struct NodeProto {
    #[prost(string, repeated, tag = "1")]
    input: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    output: Vec<String>,
    #[prost(string, tag = "3")]
    name: String,
    #[prost(string, tag = "4")]
    op_type: String,
}

#[derive(Clone, PartialEq, Message)]
struct TensorProto {
    #[prost(int64, repeated, tag = "1")]
    dims: Vec<i64>,
    #[prost(int32, tag = "2")]
    data_type: i32,
    #[prost(float, repeated, tag = "4")]
    float_data: Vec<f32>,
    #[prost(string, tag = "8")]
    name: String,
}

#[derive(Clone, PartialEq, Message)]
struct ValueInfoProto {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, optional, tag = "2")]
    r#type: Option<TypeProto>,
}

#[derive(Clone, PartialEq, Message)]
struct TypeProto {
    #[prost(message, optional, tag = "1")]
    tensor_type: Option<TensorTypeProto>,
}

#[derive(Clone, PartialEq, Message)]
struct TensorTypeProto {
    #[prost(int32, tag = "1")]
    elem_type: i32,
    #[prost(message, optional, tag = "2")]
    shape: Option<TensorShapeProto>,
}

#[derive(Clone, PartialEq, Message)]
struct TensorShapeProto {
    #[prost(message, repeated, tag = "1")]
    dim: Vec<Dimension>,
}

#[derive(Clone, PartialEq, Message)]
struct Dimension {
    #[prost(int64, optional, tag = "1")]
    dim_value: Option<i64>,
    #[prost(string, optional, tag = "2")]
    dim_param: Option<String>,
}

/// A dimension of a graph input or output: fixed, or named (dynamic).
#[derive(Clone, Debug)]
pub enum Dim {
    /// A fixed size.
    Fixed(i64),
    /// A dynamic axis with this name.
    Named(&'static str),
}

/// A float graph under construction: constants, nodes, one input, one
/// output, and the metadata (the model contract).
#[derive(Debug, Default)]
pub struct Graph {
    nodes: Vec<(String, Vec<String>, String)>,
    constants: Vec<(String, Vec<i64>, Vec<f32>)>,
    input: Option<(String, Vec<Dim>)>,
    output: Option<(String, Vec<Dim>)>,
    metadata: Vec<(String, String)>,
}

impl Graph {
    /// A float constant `name` of shape `dims` (row major).
    pub fn constant(&mut self, name: &str, dims: &[i64], data: Vec<f32>) -> String {
        self.constants.push((name.to_owned(), dims.to_vec(), data));
        name.to_owned()
    }

    /// A node `op` over `inputs`, its one output named `out`.
    pub fn node(&mut self, op: &str, inputs: &[&str], out: &str) -> String {
        self.nodes.push((
            op.to_owned(),
            inputs.iter().map(|s| (*s).to_owned()).collect(),
            out.to_owned(),
        ));
        out.to_owned()
    }

    /// The graph's float input.
    pub fn input(&mut self, name: &str, dims: Vec<Dim>) -> String {
        self.input = Some((name.to_owned(), dims));
        name.to_owned()
    }

    /// The graph's float output (a node's output of that name).
    pub fn output(&mut self, name: &str, dims: Vec<Dim>) {
        self.output = Some((name.to_owned(), dims));
    }

    /// A `metadata_props` entry.
    pub fn metadata(&mut self, key: &str, value: String) {
        self.metadata.push((key.to_owned(), value));
    }

    /// The serialised `ModelProto`.
    pub fn encode(self, producer_version: &str, doc: &str) -> Vec<u8> {
        let value_info = |(name, dims): (String, Vec<Dim>)| ValueInfoProto {
            name,
            r#type: Some(TypeProto {
                tensor_type: Some(TensorTypeProto {
                    elem_type: FLOAT,
                    shape: Some(TensorShapeProto {
                        dim: dims
                            .into_iter()
                            .map(|d| match d {
                                Dim::Fixed(v) => Dimension {
                                    dim_value: Some(v),
                                    dim_param: None,
                                },
                                Dim::Named(p) => Dimension {
                                    dim_value: None,
                                    dim_param: Some(p.to_owned()),
                                },
                            })
                            .collect(),
                    }),
                }),
            }),
        };
        let graph = GraphProto {
            node: self
                .nodes
                .into_iter()
                .enumerate()
                .map(|(i, (op, input, out))| NodeProto {
                    name: format!("{op}_{i}"),
                    op_type: op,
                    input,
                    output: vec![out],
                })
                .collect(),
            name: "tapstream_anomaly".to_owned(),
            initializer: self
                .constants
                .into_iter()
                .map(|(name, dims, float_data)| TensorProto {
                    dims,
                    data_type: FLOAT,
                    float_data,
                    name,
                })
                .collect(),
            input: self.input.into_iter().map(value_info).collect(),
            output: self.output.into_iter().map(value_info).collect(),
        };
        ModelProto {
            ir_version: IR_VERSION,
            producer_name: "tapstream learn".to_owned(),
            producer_version: producer_version.to_owned(),
            doc_string: doc.to_owned(),
            graph: Some(graph),
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: OPSET,
            }],
            metadata_props: self
                .metadata
                .into_iter()
                .map(|(key, value)| StringStringEntryProto { key, value })
                .collect(),
        }
        .encode_to_vec()
    }
}
