//! The FP16 and INT8 variants of the default model load, run on the CPU
//! provider, and stay within a stated budget of FP32's decisions and scores
//! on the CIC-IDS2017 sample's held-out split (the rows the model never saw;
//! `models/cic-mlp.holdout-ids.txt`).
//!
//! The budget (also in the README): FP16 changes at most 0.1 % of the
//! alert decisions and no attack score by more than 0.01; INT8 changes at
//! most 0.2 % of the decisions, moves scores by less than 0.005 on average,
//! and keeps the benign false-positive rate within 0.5 percentage points of
//! FP32's; every variant keeps attack detection at 99 % or more.

use std::path::Path;

use tapstream_inference::{select_features, Engine, OnnxConfig, OnnxEngine, Precision, Prediction};
use tapstream_kernels::schema::NUM_FEATURES;
use tapstream_tools::report::input::{csv_files, read_csvs, read_holdout, BENIGN};

use crate::util::{have_ort, root, shared_data};

/// Held-out rows as full schema rows, and whether each is an attack (read
/// as `tapstream model report` reads them, labels mapped as train.py maps
/// them).
fn holdout(data: &Path) -> (Vec<f64>, Vec<bool>) {
    let keep = read_holdout(&root().join("models/cic-mlp.holdout-ids.txt")).unwrap();
    let files = csv_files(&data.join("flows/cicids2017_improved_sample")).unwrap();
    let (rows, _) = read_csvs(&files, Some(&keep)).unwrap();
    let attack = rows.labels.iter().map(|l| l != BENIGN).collect();
    (rows.rows, attack)
}

fn predict(file: &str, rows: &[f64]) -> (Precision, f32, Vec<Prediction>) {
    let mut engine = OnnxEngine::load(&root().join(file), &OnnxConfig::default())
        .unwrap_or_else(|e| panic!("{file}: {e}"));
    let c = engine.contract().clone();
    let n = rows.len() / NUM_FEATURES;
    let mut input = Vec::new();
    assert_eq!(select_features(&c, rows, n, &mut input), n);
    let (mut all, mut out) = (Vec::with_capacity(n), Vec::new());
    let width = c.num_features();
    for chunk in input.chunks(1024 * width) {
        engine.infer(chunk, chunk.len() / width, &mut out).unwrap();
        all.extend_from_slice(&out);
    }
    (c.precision, c.threshold, all)
}

#[test]
fn fp16_and_int8_variants_stay_within_their_budget() {
    let test = "fp16_and_int8_variants_stay_within_their_budget";
    let (Some(data), true) = (shared_data(test), have_ort(test)) else {
        return;
    };
    let (rows, attack) = holdout(&data);
    let n = attack.len();
    assert_eq!(n, 6282, "the held-out split of models/cic-mlp.metrics.json");
    let rates = |p: &[Prediction], t: f32| {
        let alert = |i: usize| p[i].score >= t;
        let benign = attack.iter().filter(|a| !**a).count();
        let fp = (0..n).filter(|&i| !attack[i] && alert(i)).count();
        let tp = (0..n).filter(|&i| attack[i] && alert(i)).count();
        (fp as f64 / benign as f64, tp as f64 / (n - benign) as f64)
    };
    let (precision, t, fp32) = predict("models/cic-mlp.onnx", &rows);
    assert_eq!(precision, Precision::Fp32);
    let (fpr32, det32) = rates(&fp32, t);
    assert!(
        fpr32 <= 0.01 && det32 >= 0.99,
        "fp32: fpr {fpr32}, detection {det32}"
    );
    for (file, want, max_flips, max_delta, max_mean_delta) in [
        (
            "models/cic-mlp-fp16.onnx",
            Precision::Fp16,
            0.001,
            0.01,
            0.001,
        ),
        (
            "models/cic-mlp-int8.onnx",
            Precision::Int8,
            0.002,
            1.0,
            0.005,
        ),
    ] {
        let (precision, t2, p) = predict(file, &rows);
        assert_eq!(precision, want, "{file}");
        assert_eq!(t2, t, "{file}: the variants keep FP32's threshold");
        let flips = (0..n)
            .filter(|&i| (p[i].score >= t) != (fp32[i].score >= t))
            .count();
        let deltas: Vec<f64> = (0..n)
            .map(|i| f64::from((p[i].score - fp32[i].score).abs()))
            .collect();
        let max = deltas.iter().copied().fold(0.0, f64::max);
        let mean = deltas.iter().sum::<f64>() / n as f64;
        let (fpr, det) = rates(&p, t);
        eprintln!(
            "{file}: {flips} decisions flipped of {n}, score change max {max:.2e} mean {mean:.2e}, \
             benign FPR {fpr:.4} (fp32 {fpr32:.4}), detection {det:.4} (fp32 {det32:.4})"
        );
        assert!(
            flips as f64 <= max_flips * n as f64,
            "{file}: {flips} flips"
        );
        assert!(max <= max_delta, "{file}: max score change {max}");
        assert!(mean <= max_mean_delta, "{file}: mean score change {mean}");
        assert!(fpr <= fpr32 + 0.005, "{file}: benign FPR {fpr}");
        assert!(det >= 0.99, "{file}: detection {det}");
    }
}
