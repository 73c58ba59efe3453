//! What a model file must be before it runs: no custom operators, external
//! data only inside its own directory, the precision it declares, and one
//! `f32` input and output shaped as its contract says.

use std::fmt;
use std::path::Path;

use ort::value::{Outlet, TensorElementType, ValueType};
use sha2::{Digest, Sha256};

use crate::contract::{ModelContract, OutputKind, Precision};
use crate::error::InferenceError;
use crate::inspect::ModelFacts;

/// The pin in lower case, when it is 64 hex digits.
pub(super) fn normalise_pin(pin: &str) -> Result<String, InferenceError> {
    let trimmed = pin.trim();
    if trimmed.len() == 64 && trimmed.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(trimmed.to_ascii_lowercase())
    } else {
        Err(InferenceError::InvalidPin {
            pin: pin.to_owned(),
        })
    }
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use fmt::Write;
    let digest = Sha256::digest(bytes);
    let mut hex = String::with_capacity(64);
    for b in digest {
        // Writing to a String cannot fail.
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

/// Refuses custom operators and external data outside the model's
/// directory; returns whether the model has external data at all.
pub(super) fn check_graph(f: &ModelFacts, path: &Path) -> Result<bool, String> {
    let custom = f.custom_domains();
    if !custom.is_empty() {
        return Err(format!(
            "it uses custom operators from {custom:?}, and tapstream loads no custom-op libraries"
        ));
    }
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    for loc in &f.external_data {
        let p = Path::new(loc);
        let inside = !loc.is_empty()
            && p.components()
                .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !inside {
            return Err(format!(
                "its external data {loc:?} is not a plain path inside the model's directory"
            ));
        }
        // A symbolic link could still lead out of the directory.
        let resolved = std::fs::canonicalize(dir.join(p))
            .map_err(|e| format!("its external data {loc:?} cannot be opened: {e}"))?;
        let base = std::fs::canonicalize(dir)
            .map_err(|e| format!("the model's directory cannot be resolved: {e}"))?;
        if !resolved.starts_with(&base) {
            return Err(format!(
                "its external data {loc:?} resolves outside the model's directory"
            ));
        }
    }
    Ok(!f.external_data.is_empty())
}

/// The declared precision must be what the graph holds: fp16 weights for
/// `fp16`, quantization for `int8`, and neither for `fp32`.
pub(super) fn check_precision(declared: Precision, f: &ModelFacts) -> Result<(), InferenceError> {
    use crate::inspect::dtype;
    let half = f.initializers_of(dtype::FLOAT16) + f.initializers_of(dtype::BFLOAT16);
    let quantized = f.is_quantized();
    let found = match declared {
        Precision::Fp32 if quantized => Some("the graph is quantized".to_string()),
        Precision::Fp32 if half > 0 => Some(format!("{half} of its weights are 16-bit floats")),
        Precision::Fp16 if half == 0 => Some("it has no 16-bit float weights".to_string()),
        Precision::Fp16 if quantized => Some("the graph is quantized".to_string()),
        Precision::Int8 if !quantized => {
            Some("the graph has no quantization (no QuantizeLinear/DequantizeLinear or quantized operators)".to_string())
        }
        _ => None,
    };
    match found {
        Some(found) => Err(InferenceError::PrecisionMismatch { declared, found }),
        None => Ok(()),
    }
}

/// A graph input or output, as far as the contract cares.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct IoSpec {
    name: String,
    /// Element type, or `None` when not a tensor.
    ty: Option<TensorElementType>,
    /// Dimensions; -1 for a dynamic (symbolic) one.
    dims: Vec<i64>,
    /// How ONNX Runtime prints the type, for messages.
    display: String,
}

impl IoSpec {
    pub(super) fn from_outlet(outlet: &Outlet) -> Self {
        let dtype: &ValueType = outlet.dtype();
        IoSpec {
            name: outlet.name().to_owned(),
            ty: dtype.tensor_type(),
            dims: dtype
                .tensor_shape()
                .map(|s| s.iter().copied().collect())
                .unwrap_or_default(),
            display: dtype.to_string(),
        }
    }
}

fn dim_is(dim: i64, want: usize) -> bool {
    dim < 0 || usize::try_from(dim) == Ok(want)
}

/// Checks the graph's inputs and outputs against the contract.
pub(super) fn check_io(
    contract: &ModelContract,
    inputs: &[IoSpec],
    outputs: &[IoSpec],
) -> Result<(), InferenceError> {
    let n = contract.num_features();
    let bad_input = |reason: String| Err(InferenceError::BadInput { reason });
    let [input] = inputs else {
        return bad_input(format!(
            "the model has {} inputs ({}); it must have exactly one, `[batch, {n}]` float32",
            inputs.len(),
            names(inputs)
        ));
    };
    if input.ty != Some(TensorElementType::Float32) {
        return bad_input(format!(
            "input `{}` is {}; it must be a float32 tensor `[batch, {n}]`",
            input.name, input.display
        ));
    }
    match input.dims[..] {
        [batch, width] => {
            if batch >= 0 {
                return bad_input(format!(
                    "input `{}` has a fixed batch size of {batch}; export it with a dynamic \
                     batch axis, `[batch, {n}]`",
                    input.name
                ));
            }
            if !dim_is(width, n) {
                return bad_input(format!(
                    "input `{}` is {} wide but tapstream.features lists {n} features",
                    input.name, width
                ));
            }
        }
        _ => {
            return bad_input(format!(
                "input `{}` is {}; it must have rank 2, `[batch, {n}]`",
                input.name, input.display
            ))
        }
    }

    let bad_output = |reason: String| Err(InferenceError::BadOutput { reason });
    let [output] = outputs else {
        return bad_output(format!(
            "the model has {} outputs ({}); it must have exactly one",
            outputs.len(),
            names(outputs)
        ));
    };
    if output.ty != Some(TensorElementType::Float32) {
        return bad_output(format!(
            "output `{}` is {}; it must be a float32 tensor",
            output.name, output.display
        ));
    }
    match contract.output {
        OutputKind::Probabilities => {
            let c = contract.labels.len();
            match output.dims[..] {
                [_, width] if dim_is(width, c) => {}
                [_, width] => {
                    return bad_output(format!(
                        "output `{}` has {width} probability columns but tapstream.labels \
                         lists {c} labels",
                        output.name
                    ))
                }
                _ => {
                    return bad_output(format!(
                        "output `{}` is {}; tapstream.output = probabilities needs `[batch, {c}]`",
                        output.name, output.display
                    ))
                }
            }
        }
        OutputKind::Score => match output.dims[..] {
            [_] => {}
            [_, width] if dim_is(width, 1) => {}
            _ => {
                return bad_output(format!(
                    "output `{}` is {}; tapstream.output = score needs `[batch]` or `[batch, 1]`",
                    output.name, output.display
                ))
            }
        },
    }
    Ok(())
}

fn names(specs: &[IoSpec]) -> String {
    if specs.is_empty() {
        return "none".to_owned();
    }
    specs
        .iter()
        .map(|s| format!("`{}`: {}", s.name, s.display))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::keys;
    use std::collections::HashMap;
    use tapstream_kernels::schema::{SCHEMA_NAME, SCHEMA_VERSION};

    fn contract(output: &str) -> ModelContract {
        let m = HashMap::from([
            (keys::SCHEMA, SCHEMA_NAME.to_owned()),
            (keys::SCHEMA_VERSION, SCHEMA_VERSION.to_string()),
            (
                keys::FEATURES,
                r#"["Dst Port","Protocol","Flow Duration"]"#.to_owned(),
            ),
            (keys::SCALER, "in-graph".to_owned()),
            (keys::LABELS, r#"["BENIGN","DoS"]"#.to_owned()),
            (keys::BENIGN_LABEL, "BENIGN".to_owned()),
            (keys::OUTPUT, output.to_owned()),
            (keys::THRESHOLD, "0.5".to_owned()),
            (keys::MODEL_NAME, "m".to_owned()),
            (keys::MODEL_VERSION, "1".to_owned()),
        ]);
        ModelContract::from_metadata(|k| m.get(k).cloned(), "00").unwrap()
    }

    fn spec(ty: TensorElementType, dims: &[i64]) -> IoSpec {
        IoSpec {
            name: "x".to_owned(),
            ty: Some(ty),
            dims: dims.to_vec(),
            display: format!("{ty:?}{dims:?}"),
        }
    }

    const F32: TensorElementType = TensorElementType::Float32;

    #[test]
    fn accepts_dynamic_and_exact_dims() {
        let p = contract("probabilities");
        let s = contract("score");
        assert!(check_io(&p, &[spec(F32, &[-1, 3])], &[spec(F32, &[-1, 2])]).is_ok());
        assert!(check_io(&p, &[spec(F32, &[-1, -1])], &[spec(F32, &[-1, -1])]).is_ok());
        assert!(check_io(&s, &[spec(F32, &[-1, 3])], &[spec(F32, &[-1])]).is_ok());
        assert!(check_io(&s, &[spec(F32, &[-1, 3])], &[spec(F32, &[-1, 1])]).is_ok());
    }

    #[test]
    fn refuses_bad_inputs() {
        let p = contract("probabilities");
        let out = [spec(F32, &[-1, 2])];
        for inputs in [
            vec![],
            vec![spec(F32, &[-1, 3]), spec(F32, &[-1, 3])],
            vec![spec(TensorElementType::Int64, &[-1, 3])],
            vec![spec(TensorElementType::Float16, &[-1, 3])],
            vec![spec(F32, &[-1, 4])],
            vec![spec(F32, &[8, 3])],
            vec![spec(F32, &[-1])],
            vec![spec(F32, &[-1, 3, 1])],
            vec![IoSpec {
                ty: None,
                ..spec(F32, &[])
            }],
        ] {
            assert!(
                matches!(
                    check_io(&p, &inputs, &out),
                    Err(InferenceError::BadInput { .. })
                ),
                "{inputs:?}"
            );
        }
    }

    #[test]
    fn refuses_bad_outputs() {
        let p = contract("probabilities");
        let s = contract("score");
        let input = [spec(F32, &[-1, 3])];
        for (c, outputs) in [
            (&p, vec![]),
            (&p, vec![spec(F32, &[-1, 2]), spec(F32, &[-1, 2])]),
            (&p, vec![spec(TensorElementType::Int64, &[-1, 2])]),
            (&p, vec![spec(F32, &[-1, 3])]),
            (&p, vec![spec(F32, &[-1])]),
            (&s, vec![spec(F32, &[-1, 2])]),
            (&s, vec![spec(F32, &[])]),
        ] {
            assert!(
                matches!(
                    check_io(c, &input, &outputs),
                    Err(InferenceError::BadOutput { .. })
                ),
                "{outputs:?}"
            );
        }
    }

    #[test]
    fn pins_are_normalised_and_checked() {
        let hex = "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08";
        assert_eq!(normalise_pin(hex).unwrap(), hex.to_ascii_lowercase());
        assert!(matches!(
            normalise_pin("abc"),
            Err(InferenceError::InvalidPin { .. })
        ));
        assert!(matches!(
            normalise_pin(&"g".repeat(64)),
            Err(InferenceError::InvalidPin { .. })
        ));
        assert_eq!(
            sha256_hex(b"test"),
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
    }
}
