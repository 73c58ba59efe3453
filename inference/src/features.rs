//! Turning extractor rows into model input.
//!
//! The extractor writes every numeric feature of the schema, as `f64`, in
//! schema order; a model consumes a subset, in its own order, as `f32`,
//! possibly standardised. This is the one place that conversion happens, so
//! the pipeline, the benches and the precision report all feed a model the
//! same way.

use tapstream_kernels::context::NUM_CONTEXT;
use tapstream_kernels::schema::NUM_FEATURES;

use crate::contract::{ModelContract, Scaler};

/// Appends the model input for the first `n` rows of `rows` to `out`.
///
/// `rows` is row-major, `NUM_FEATURES` (`kernels::schema::NUM_FEATURES`)
/// values per row, as the extractor writes them. For each row, the model's
/// columns ([`ModelContract::columns`]) are picked in the model's order and,
/// for an [`Scaler::External`] scaler, standardised as `(x - mean) / scale`
/// (computed in `f64`). `rows_written × contract.features.len()` values are
/// appended to `out` (clear it first for a fresh batch), so flow batches can
/// be gathered into one model batch without copying their rows.
///
/// Non-finite raw values (NaN, ±∞: CIC rate features are infinite for flows
/// of zero duration) are read as `0` before scaling, as the training recipe
/// cleans them; a result beyond the `f32` range saturates to `±f32::MAX`. So
/// every value handed to the model is finite.
///
/// Returns the number of rows written: `n`, or fewer when `rows` holds fewer
/// than `n` complete rows (a caller bug that this reports instead of
/// panicking).
pub fn select_features(
    contract: &ModelContract,
    rows: &[f64],
    n: usize,
    out: &mut Vec<f32>,
) -> usize {
    select_features_with(contract, rows, &[], n, out)
}

/// [`select_features`] for a model that may read context features: row
/// `i`'s context row is `context[i*NUM_CONTEXT..]` (the batch's
/// `FlowBatch::context`). A model that needs context gets fewer rows than
/// `n` (the caller's error) when `context` holds fewer complete rows.
pub fn select_features_with(
    contract: &ModelContract,
    rows: &[f64],
    context: &[f32],
    n: usize,
    out: &mut Vec<f32>,
) -> usize {
    let mut n = n.min(rows.len() / NUM_FEATURES);
    if contract.needs_context() {
        n = n.min(context.len() / NUM_CONTEXT);
    }
    let width = contract.columns.len();
    out.reserve(n * width);
    let mut ctx = context.chunks_exact(NUM_CONTEXT);
    for row in rows.chunks_exact(NUM_FEATURES).take(n) {
        let c_row = ctx.next().unwrap_or_default();
        match &contract.scaler {
            Scaler::InGraph => {
                out.extend(
                    contract
                        .columns
                        .iter()
                        .map(|&c| to_f32(finite(at(row, c_row, c)))),
                );
            }
            Scaler::External { mean, scale } => {
                out.extend(
                    contract
                        .columns
                        .iter()
                        .zip(mean.iter().zip(scale))
                        .map(|(&c, (m, s))| to_f32((finite(at(row, c_row, c)) - m) / s)),
                );
            }
        }
    }
    n
}

/// Column `c` of a feature row and its context row; the contract's columns
/// are checked against the schemas when it is loaded and context rows are
/// checked above, so the fallback never shows.
#[inline]
fn at(row: &[f64], context: &[f32], c: usize) -> f64 {
    if c < NUM_FEATURES {
        row.get(c).copied().unwrap_or(0.0)
    } else {
        context
            .get(c - NUM_FEATURES)
            .copied()
            .map_or(0.0, f64::from)
    }
}

#[inline]
fn finite(x: f64) -> f64 {
    if x.is_finite() {
        x
    } else {
        0.0
    }
}

#[inline]
fn to_f32(x: f64) -> f32 {
    // The scaler is finite and non-zero, so `x` is finite here; clamp keeps
    // huge values finite in f32.
    x.clamp(f64::from(f32::MIN), f64::from(f32::MAX)) as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::keys;
    use std::collections::HashMap;
    use tapstream_kernels::schema::{idx, SCHEMA_NAME, SCHEMA_VERSION};

    fn contract(scaler: &str) -> ModelContract {
        let m = HashMap::from([
            (keys::SCHEMA, SCHEMA_NAME.to_owned()),
            (keys::SCHEMA_VERSION, SCHEMA_VERSION.to_string()),
            (
                keys::FEATURES,
                r#"["Flow Bytes/s","Dst Port","Protocol"]"#.to_owned(),
            ),
            (keys::SCALER, scaler.to_owned()),
            (keys::LABELS, r#"["BENIGN","ATTACK"]"#.to_owned()),
            (keys::BENIGN_LABEL, "BENIGN".to_owned()),
            (keys::OUTPUT, "probabilities".to_owned()),
            (keys::THRESHOLD, "0.5".to_owned()),
            (keys::MODEL_NAME, "m".to_owned()),
            (keys::MODEL_VERSION, "1".to_owned()),
        ]);
        ModelContract::from_metadata(|k| m.get(k).cloned(), "00").unwrap()
    }

    fn row(bytes_s: f64, dst_port: f64, proto: f64) -> Vec<f64> {
        let mut r = vec![-1.0; NUM_FEATURES];
        r[idx::FLOW_BYTES_S] = bytes_s;
        r[idx::DST_PORT] = dst_port;
        r[idx::PROTOCOL] = proto;
        r
    }

    #[test]
    fn picks_columns_in_model_order() {
        let c = contract("in-graph");
        let mut rows = row(1500.5, 443.0, 6.0);
        rows.extend(row(0.25, 53.0, 17.0));
        let mut out = vec![9.0];
        assert_eq!(select_features(&c, &rows, 2, &mut out), 2);
        assert_eq!(out, vec![9.0, 1500.5, 443.0, 6.0, 0.25, 53.0, 17.0]);
    }

    #[test]
    fn applies_external_scaler() {
        let c = contract(r#"{"mean":[1000,400,6],"scale":[500,10,2]}"#);
        let rows = row(2000.0, 443.0, 17.0);
        let mut out = Vec::new();
        assert_eq!(select_features(&c, &rows, 1, &mut out), 1);
        assert_eq!(out, vec![2.0, 4.3, 5.5]);
    }

    #[test]
    fn non_finite_becomes_zero_before_scaling() {
        let c = contract("in-graph");
        let mut rows = row(f64::INFINITY, f64::NAN, f64::NEG_INFINITY);
        rows.extend(row(1e300, -1e300, 1.0));
        let mut out = Vec::new();
        select_features(&c, &rows, 2, &mut out);
        assert_eq!(out, vec![0.0, 0.0, 0.0, f32::MAX, f32::MIN, 1.0]);

        let c = contract(r#"{"mean":[10,20,30],"scale":[2,4,5]}"#);
        let rows = row(f64::INFINITY, f64::NAN, 30.0);
        out.clear();
        select_features(&c, &rows, 1, &mut out);
        assert_eq!(out, vec![-5.0, -5.0, 0.0]);
    }

    #[test]
    fn short_input_writes_only_complete_rows() {
        let c = contract("in-graph");
        let mut rows = row(1.0, 2.0, 3.0);
        rows.extend([0.0; 5]);
        let mut out = Vec::new();
        assert_eq!(select_features(&c, &rows, 2, &mut out), 1);
        assert_eq!(out.len(), 3);
        assert_eq!(select_features(&c, &[], 4, &mut out), 0);
        assert_eq!(out.len(), 3);
    }
}
