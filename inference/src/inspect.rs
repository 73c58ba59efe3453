//! What an ONNX file contains, read before ONNX Runtime sees it.
//!
//! Three checks need facts that ONNX Runtime's session API does not expose:
//! the precision a model declares must match its weights (an `fp16` model
//! with float32 weights, or an `int8` one without quantization, is refused),
//! a model may not pull in custom operators (tapstream loads no custom-op
//! libraries), and a model may not read external tensor data from outside
//! its own directory.
//!
//! This reads just the protobuf fields those checks need (node operator
//! types and domains, initializer data types, external-data locations, in
//! the main graph and every subgraph). It is hand-written because it needs
//! five fields of three messages: generating the whole ONNX schema (prost
//! plus a protobuf compiler at build time) would cost more than it saves.
//! Unknown fields of any wire type are skipped, so newer ONNX files read
//! fine; malformed input is an error, never a panic.

use std::collections::BTreeSet;

/// ONNX `TensorProto.DataType` values this module names.
pub mod dtype {
    /// float32.
    pub const FLOAT: i32 = 1;
    /// uint8.
    pub const UINT8: i32 = 2;
    /// int8.
    pub const INT8: i32 = 3;
    /// float16.
    pub const FLOAT16: i32 = 10;
    /// bfloat16.
    pub const BFLOAT16: i32 = 16;
}

/// Operator domains ONNX Runtime implements itself.
const BUILTIN_DOMAINS: [&str; 4] = ["", "ai.onnx", "ai.onnx.ml", "com.microsoft"];

/// Subgraphs nested deeper than this are refused (they would only serve to
/// exhaust the stack).
const MAX_DEPTH: usize = 32;

/// What [`inspect`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModelFacts {
    /// `(domain, op_type)` of every node, in the main graph and subgraphs.
    pub ops: BTreeSet<(String, String)>,
    /// Data types of the initializers (weights), with how many of each.
    pub initializer_types: Vec<(i32, usize)>,
    /// `location` of every tensor stored as external data.
    pub external_data: Vec<String>,
}

impl ModelFacts {
    /// Initializers of data type `t`.
    pub fn initializers_of(&self, t: i32) -> usize {
        self.initializer_types
            .iter()
            .find(|(d, _)| *d == t)
            .map_or(0, |(_, n)| *n)
    }

    /// Whether any node has this operator type (any domain).
    pub fn has_op(&self, op: &str) -> bool {
        self.ops.iter().any(|(_, o)| o == op)
    }

    /// Operator domains ONNX Runtime does not implement itself (custom ops).
    pub fn custom_domains(&self) -> BTreeSet<&str> {
        self.ops
            .iter()
            .map(|(d, _)| d.as_str())
            .filter(|d| !BUILTIN_DOMAINS.contains(d))
            .collect()
    }

    /// Whether the graph is quantized (QDQ pairs or quantized operators).
    pub fn is_quantized(&self) -> bool {
        self.ops.iter().any(|(_, o)| {
            o == "QuantizeLinear"
                || o == "DequantizeLinear"
                || o.starts_with("QLinear")
                || o == "MatMulInteger"
                || o == "ConvInteger"
                || o == "DynamicQuantizeLinear"
        })
    }

    fn add_initializer(&mut self, t: i32) {
        match self.initializer_types.iter_mut().find(|(d, _)| *d == t) {
            Some((_, n)) => *n += 1,
            None => self.initializer_types.push((t, 1)),
        }
    }
}

/// Why a file could not be read as ONNX.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a readable ONNX model: {0}")]
pub struct InspectError(pub String);

/// Reads the facts of an ONNX `ModelProto`.
pub fn inspect(bytes: &[u8]) -> Result<ModelFacts, InspectError> {
    let mut facts = ModelFacts::default();
    let mut saw_graph = false;
    for field in Fields::new(bytes) {
        let (number, value) = field?;
        // ModelProto.graph = 7, .functions = 25.
        match (number, value) {
            (7, Value::Bytes(g)) => {
                graph(g, &mut facts, 0)?;
                saw_graph = true;
            }
            (25, Value::Bytes(f)) => function(f, &mut facts)?,
            _ => {}
        }
    }
    if !saw_graph {
        return Err(InspectError("no graph".into()));
    }
    Ok(facts)
}

fn graph(bytes: &[u8], facts: &mut ModelFacts, depth: usize) -> Result<(), InspectError> {
    if depth > MAX_DEPTH {
        return Err(InspectError(format!(
            "subgraphs nested more than {MAX_DEPTH} deep"
        )));
    }
    for field in Fields::new(bytes) {
        match field? {
            // GraphProto.node = 1, .initializer = 5, .sparse_initializer = 15.
            (1, Value::Bytes(n)) => node(n, facts, depth)?,
            (5, Value::Bytes(t)) => {
                let t = tensor(t, facts)?;
                facts.add_initializer(t);
            }
            (15, Value::Bytes(s)) => {
                // SparseTensorProto.values = 1, .indices = 2.
                for f in Fields::new(s) {
                    if let (1 | 2, Value::Bytes(t)) = f? {
                        let t = tensor(t, facts)?;
                        facts.add_initializer(t);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn function(bytes: &[u8], facts: &mut ModelFacts) -> Result<(), InspectError> {
    // FunctionProto.node = 7.
    for field in Fields::new(bytes) {
        if let (7, Value::Bytes(n)) = field? {
            node(n, facts, 0)?;
        }
    }
    Ok(())
}

fn node(bytes: &[u8], facts: &mut ModelFacts, depth: usize) -> Result<(), InspectError> {
    let (mut op, mut domain) = (String::new(), String::new());
    for field in Fields::new(bytes) {
        match field? {
            // NodeProto.op_type = 4, .domain = 7, .attribute = 5.
            (4, Value::Bytes(s)) => op = text(s)?,
            (7, Value::Bytes(s)) => domain = text(s)?,
            (5, Value::Bytes(a)) => attribute(a, facts, depth)?,
            _ => {}
        }
    }
    facts.ops.insert((domain, op));
    Ok(())
}

fn attribute(bytes: &[u8], facts: &mut ModelFacts, depth: usize) -> Result<(), InspectError> {
    for field in Fields::new(bytes) {
        match field? {
            // AttributeProto.t = 5, .g = 6, .tensors = 10, .graphs = 11.
            (5 | 10, Value::Bytes(t)) => {
                tensor(t, facts)?;
            }
            (6 | 11, Value::Bytes(g)) => graph(g, facts, depth + 1)?,
            _ => {}
        }
    }
    Ok(())
}

/// Notes a tensor's external data; returns its data type.
fn tensor(bytes: &[u8], facts: &mut ModelFacts) -> Result<i32, InspectError> {
    let mut data_type = 0;
    for field in Fields::new(bytes) {
        match field? {
            // TensorProto.data_type = 2, .external_data = 13
            // (StringStringEntryProto: key = 1, value = 2).
            (2, Value::Varint(v)) => data_type = v as i32,
            (13, Value::Bytes(e)) => {
                let (mut key, mut value) = (String::new(), String::new());
                for f in Fields::new(e) {
                    match f? {
                        (1, Value::Bytes(k)) => key = text(k)?,
                        (2, Value::Bytes(v)) => value = text(v)?,
                        _ => {}
                    }
                }
                if key == "location" {
                    facts.external_data.push(value);
                }
            }
            _ => {}
        }
    }
    Ok(data_type)
}

fn text(bytes: &[u8]) -> Result<String, InspectError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| InspectError("a string is not UTF-8".into()))
}

enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// The fields of one protobuf message, in order.
struct Fields<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> Fields<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Fields {
            rest: bytes,
            failed: false,
        }
    }

    fn varint(&mut self) -> Result<u64, InspectError> {
        let mut v = 0u64;
        for i in 0..10 {
            let Some((&b, rest)) = self.rest.split_first() else {
                return Err(InspectError("truncated varint".into()));
            };
            self.rest = rest;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(InspectError("varint longer than 10 bytes".into()))
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], InspectError> {
        let n = usize::try_from(n).map_err(|_| InspectError("length too large".into()))?;
        if n > self.rest.len() {
            return Err(InspectError("a field runs past the end".into()));
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }

    fn field(&mut self) -> Result<(u32, Value<'a>), InspectError> {
        let key = self.varint()?;
        let number =
            u32::try_from(key >> 3).map_err(|_| InspectError("bad field number".into()))?;
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Value::Fixed
            }
            2 => {
                let n = self.varint()?;
                Value::Bytes(self.take(n)?)
            }
            5 => {
                self.take(4)?;
                Value::Fixed
            }
            w => return Err(InspectError(format!("unsupported wire type {w}"))),
        };
        Ok((number, value))
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Value<'a>), InspectError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() || self.failed {
            return None;
        }
        let f = self.field();
        self.failed = f.is_err();
        Some(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn bytes_field(number: u32, payload: &[u8], out: &mut Vec<u8>) {
        varint(u64::from(number) << 3 | 2, out);
        varint(payload.len() as u64, out);
        out.extend_from_slice(payload);
    }

    fn varint_field(number: u32, v: u64, out: &mut Vec<u8>) {
        varint(u64::from(number) << 3, out);
        varint(v, out);
    }

    fn node(op: &str, domain: &str) -> Vec<u8> {
        let mut n = Vec::new();
        bytes_field(4, op.as_bytes(), &mut n);
        if !domain.is_empty() {
            bytes_field(7, domain.as_bytes(), &mut n);
        }
        n
    }

    fn tensor(data_type: i32, location: Option<&str>) -> Vec<u8> {
        let mut t = Vec::new();
        varint_field(2, data_type as u64, &mut t);
        if let Some(loc) = location {
            let mut e = Vec::new();
            bytes_field(1, b"location", &mut e);
            bytes_field(2, loc.as_bytes(), &mut e);
            bytes_field(13, &e, &mut t);
        }
        t
    }

    fn model(graph: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        varint_field(1, 8, &mut m); // ir_version
        bytes_field(2, b"test", &mut m); // producer_name
        bytes_field(7, graph, &mut m);
        m
    }

    #[test]
    fn reads_ops_initializers_and_external_data() {
        let mut g = Vec::new();
        bytes_field(1, &node("Gemm", ""), &mut g);
        bytes_field(1, &node("DequantizeLinear", ""), &mut g);
        bytes_field(5, &tensor(dtype::FLOAT16, None), &mut g);
        bytes_field(5, &tensor(dtype::FLOAT16, None), &mut g);
        bytes_field(5, &tensor(dtype::INT8, Some("weights.bin")), &mut g);
        let f = inspect(&model(&g)).unwrap();
        assert!(f.has_op("Gemm"));
        assert!(f.is_quantized());
        assert_eq!(f.initializers_of(dtype::FLOAT16), 2);
        assert_eq!(f.initializers_of(dtype::INT8), 1);
        assert_eq!(f.external_data, vec!["weights.bin".to_string()]);
        assert!(f.custom_domains().is_empty());
    }

    #[test]
    fn finds_custom_domains_in_subgraphs() {
        let mut inner = Vec::new();
        bytes_field(1, &node("MyOp", "com.example"), &mut inner);
        let mut attr = Vec::new();
        bytes_field(1, b"then_branch", &mut attr);
        bytes_field(6, &inner, &mut attr);
        let mut if_node = node("If", "");
        bytes_field(5, &attr, &mut if_node);
        let mut g = Vec::new();
        bytes_field(1, &if_node, &mut g);
        let f = inspect(&model(&g)).unwrap();
        assert_eq!(
            f.custom_domains().into_iter().collect::<Vec<_>>(),
            vec!["com.example"]
        );
    }

    #[test]
    fn malformed_input_is_an_error() {
        assert!(inspect(b"").is_err());
        assert!(inspect(&[0x3a, 0x05, 0x01]).is_err()); // graph runs past the end
        assert!(inspect(&[0xff; 11]).is_err()); // overlong varint
        assert!(inspect(&[0x0f]).is_err()); // wire type 7
                                            // Subgraphs nested past the limit.
        let mut g = Vec::new();
        bytes_field(1, &node("Relu", ""), &mut g);
        for _ in 0..40 {
            let mut attr = Vec::new();
            bytes_field(6, &g, &mut attr);
            let mut n = node("If", "");
            bytes_field(5, &attr, &mut n);
            g.clear();
            bytes_field(1, &n, &mut g);
        }
        assert!(inspect(&model(&g)).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..2000usize {
            let bytes: Vec<u8> = (0..len % 97)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = inspect(&bytes);
            let _ = inspect(&model(&bytes));
        }
    }
}
