//! Reading a model's raw output into [`Prediction`]s: the definition every
//! backend, and the device's `flag_scores` kernel, must match.

use crate::contract::{ModelContract, OutputKind};
use crate::InferenceError;

/// The model's verdict on one row.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Prediction {
    /// Attack score: `1 - p(benign)` for a probabilities model, or the
    /// model's score output. Compare it with the contract's (or configured)
    /// threshold. It is what the model computed; it is not clamped.
    pub score: f32,
    /// Index into [`ModelContract::labels`] of the most likely non-benign
    /// class (lowest index on ties). A score model has no per-class output,
    /// so this is its first non-benign label.
    pub class: usize,
}

/// Checks `input.len() == rows × features` for [`Engine::infer`](crate::Engine::infer).
pub(crate) fn check_input(
    contract: &ModelContract,
    input: &[f32],
    rows: usize,
) -> Result<(), InferenceError> {
    let features = contract.num_features();
    if rows.checked_mul(features) != Some(input.len()) {
        return Err(InferenceError::InputSize {
            rows,
            features,
            found: input.len(),
        });
    }
    Ok(())
}

/// Checks a model output's `shape` and element count `len` for `rows` rows
/// against the contract; returns its columns per row (one per label for
/// probabilities, 1 for a score).
pub(crate) fn output_columns(
    contract: &ModelContract,
    rows: usize,
    shape: &[i64],
    len: usize,
) -> Result<usize, InferenceError> {
    let rows_i64 = i64::try_from(rows).unwrap_or(i64::MAX);
    match contract.output {
        OutputKind::Probabilities => {
            let classes = contract.labels.len();
            let ok = matches!(shape, [r, c] if *r == rows_i64 && usize::try_from(*c) == Ok(classes))
                && rows.checked_mul(classes) == Some(len);
            if !ok {
                return Err(InferenceError::OutputShape {
                    rows,
                    expected: format!("[{rows}, {classes}] (one probability per label)"),
                    found: shape.to_vec(),
                });
            }
            Ok(classes)
        }
        OutputKind::Score => {
            let ok = match shape {
                [n] => *n == rows_i64,
                [n, 1] => *n == rows_i64,
                _ => false,
            } && len == rows;
            if !ok {
                return Err(InferenceError::OutputShape {
                    rows,
                    expected: format!("[{rows}] or [{rows}, 1] (one score per row)"),
                    found: shape.to_vec(),
                });
            }
            Ok(1)
        }
    }
}

/// Turns a model's raw output (`shape`, `data`) for `rows` rows into
/// predictions appended to `out`, checking the shape against the contract.
///
/// This is the definition every other reader of model outputs must match
/// (the device's `flag_scores` kernel is tested against it): for
/// probabilities, score `1 - p(benign)` in `f32` and class the most likely
/// non-benign label, NaN losing to any number and the lowest index winning
/// ties; for a score output, the score as is and
/// [`first_attack_label`].
pub fn read_output(
    contract: &ModelContract,
    rows: usize,
    shape: &[i64],
    data: &[f32],
    out: &mut Vec<Prediction>,
) -> Result<(), InferenceError> {
    let columns = output_columns(contract, rows, shape, data.len())?;
    match contract.output {
        OutputKind::Probabilities => {
            // The contract guarantees a benign label for probabilities.
            let benign = contract.benign.unwrap_or(usize::MAX);
            out.extend(data.chunks_exact(columns).map(|p| {
                let mut best = None::<(usize, f32)>;
                for (i, &v) in p.iter().enumerate() {
                    // A NaN probability loses to any number.
                    let v = if v.is_nan() { f32::NEG_INFINITY } else { v };
                    if i != benign && best.is_none_or(|(_, b)| v > b) {
                        best = Some((i, v));
                    }
                }
                Prediction {
                    score: 1.0 - p.get(benign).copied().unwrap_or(0.0),
                    class: best.map_or(0, |(i, _)| i),
                }
            }));
        }
        OutputKind::Score => {
            let class = first_attack_label(contract);
            out.extend(data.iter().map(|&score| Prediction { score, class }));
        }
    }
    Ok(())
}

/// The first label that is not the benign one (the contract guarantees one):
/// the class of every prediction of a score model.
pub fn first_attack_label(contract: &ModelContract) -> usize {
    (0..contract.labels.len())
        .find(|&i| Some(i) != contract.benign)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::keys;
    use std::collections::HashMap;
    use tapstream_kernels::schema::{SCHEMA_NAME, SCHEMA_VERSION};

    fn contract(output: &str, labels: &str, benign: Option<&str>) -> ModelContract {
        let mut m = HashMap::from([
            (keys::SCHEMA, SCHEMA_NAME.to_owned()),
            (keys::SCHEMA_VERSION, SCHEMA_VERSION.to_string()),
            (keys::FEATURES, r#"["Dst Port","Protocol"]"#.to_owned()),
            (keys::SCALER, "in-graph".to_owned()),
            (keys::LABELS, labels.to_owned()),
            (keys::OUTPUT, output.to_owned()),
            (keys::THRESHOLD, "0.5".to_owned()),
            (keys::MODEL_NAME, "m".to_owned()),
            (keys::MODEL_VERSION, "1".to_owned()),
        ]);
        if let Some(b) = benign {
            m.insert(keys::BENIGN_LABEL, b.to_owned());
        }
        ModelContract::from_metadata(|k| m.get(k).cloned(), "00").unwrap()
    }

    #[test]
    fn probabilities_give_one_minus_benign_and_best_attack() {
        // Benign in the middle, to check the index is honoured.
        let c = contract(
            "probabilities",
            r#"["DoS","BENIGN","Scan"]"#,
            Some("BENIGN"),
        );
        let mut out = Vec::new();
        let data = [0.1, 0.7, 0.2, 0.5, 0.0, 0.5, 0.0, 1.0, 0.0];
        read_output(&c, 3, &[3, 3], &data, &mut out).unwrap();
        assert_eq!(out[0].class, 2);
        assert!((out[0].score - 0.3).abs() < 1e-6);
        assert_eq!(
            out[1],
            Prediction {
                score: 1.0,
                class: 0
            },
            "tie → lowest"
        );
        assert_eq!(
            out[2],
            Prediction {
                score: 0.0,
                class: 0
            }
        );
    }

    #[test]
    fn score_outputs_accept_rank_one_and_two() {
        let c = contract("score", r#"["BENIGN","ATTACK"]"#, Some("BENIGN"));
        let mut out = Vec::new();
        read_output(&c, 2, &[2], &[0.25, 0.75], &mut out).unwrap();
        read_output(&c, 2, &[2, 1], &[0.5, 1.0], &mut out).unwrap();
        let scores: Vec<f32> = out.iter().map(|p| p.score).collect();
        assert_eq!(scores, [0.25, 0.75, 0.5, 1.0]);
        assert!(out.iter().all(|p| p.class == 1));
    }

    #[test]
    fn wrong_shapes_are_errors_not_panics() {
        let c = contract("probabilities", r#"["BENIGN","A"]"#, Some("BENIGN"));
        let mut out = Vec::new();
        for (shape, len) in [
            (&[2i64, 3][..], 6),
            (&[3, 2][..], 6),
            (&[2][..], 2),
            (&[2, 2][..], 3),
        ] {
            assert!(matches!(
                read_output(&c, 2, shape, &vec![0.0; len], &mut out),
                Err(InferenceError::OutputShape { .. })
            ));
        }
        let c = contract("score", r#"["A"]"#, None);
        assert!(matches!(
            read_output(&c, 2, &[2, 2], &[0.0; 4], &mut out),
            Err(InferenceError::OutputShape { .. })
        ));
        assert!(out.is_empty());
    }

    #[test]
    fn input_size_is_checked() {
        let c = contract("score", r#"["A"]"#, None);
        assert!(check_input(&c, &[0.0; 4], 2).is_ok());
        assert!(matches!(
            check_input(&c, &[0.0; 5], 2),
            Err(InferenceError::InputSize {
                rows: 2,
                features: 2,
                found: 5
            })
        ));
        assert!(check_input(&c, &[], usize::MAX).is_err());
    }
}
