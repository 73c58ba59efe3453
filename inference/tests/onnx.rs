//! End-to-end tests of `OnnxEngine` against ONNX Runtime and the fixtures in
//! `tests/data/` (made by `tests/data/make_models.py`, whose weights are
//! repeated below to compute the expected predictions by hand).
//!
//! Tests that need the ONNX Runtime library print a skip line and pass when
//! it is not found, unless `TAPSTREAM_REQUIRE_ORT=1` (set in CI), in which
//! case they fail. Get the library with `scripts/fetch-onnxruntime.sh`.

use std::path::{Path, PathBuf};

mod common;
use common::have_ort;

use tapstream_inference::{
    select_features, sha256_hex, CudaOptions, Engine, ExecutionProvider, InferenceError,
    OnnxConfig, OnnxEngine, OutputKind, Precision, Prediction, Scaler, TensorRtOptions,
};
use tapstream_kernels::schema::{idx, NUM_FEATURES};

type TestResult = Result<(), InferenceError>;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn load(name: &str) -> Result<OnnxEngine, InferenceError> {
    OnnxEngine::load(&data(name), &OnnxConfig::default())
}

/// A full extractor row with the three fixture features set (every other
/// column holds a marker that must not reach the model).
fn row(flow_duration: f64, dst_port: f64, total_fwd_packet: f64) -> Vec<f64> {
    let mut r = vec![-777.0; NUM_FEATURES];
    r[idx::FLOW_DURATION] = flow_duration;
    r[idx::DST_PORT] = dst_port;
    r[idx::TOTAL_FWD_PACKET] = total_fwd_packet;
    r
}

fn rows(xs: &[[f64; 3]]) -> Vec<f64> {
    xs.iter().flat_map(|x| row(x[0], x[1], x[2])).collect()
}

/// x · W + b, with W given feature-major as in make_models.py.
fn affine<const C: usize>(x: &[f64; 3], w: &[[f64; C]; 3], b: &[f64; C]) -> [f64; C] {
    let mut out = *b;
    for (i, xi) in x.iter().enumerate() {
        for (j, o) in out.iter_mut().enumerate() {
            *o += xi * w[i][j];
        }
    }
    out
}

fn softmax<const C: usize>(z: [f64; C]) -> [f64; C] {
    let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e = z.map(|v| (v - max).exp());
    let sum: f64 = e.iter().sum();
    e.map(|v| v / sum)
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

fn assert_close(got: f32, want: f64, what: &str) {
    assert!(
        (f64::from(got) - want).abs() < 1e-5,
        "{what}: got {got}, want {want}"
    );
}

// Weights of make_models.py, as f32 values widened to f64.
const W3: [[f64; 3]; 3] = [
    [0.001f32 as f64, 0.002f32 as f64, -0.0005f32 as f64],
    [-0.01f32 as f64, 0.02f32 as f64, 0.03f32 as f64],
    [0.5, -0.25, 0.125],
];
const B3: [f64; 3] = [1.0, -0.5, 0.25];
const W2: [[f64; 2]; 3] = [[1.5, -1.5], [-0.75, 0.75], [0.25, 0.5]];
const B2: [f64; 2] = [0.1f32 as f64, -0.1f32 as f64];
const MEAN2: [f64; 3] = [1000.0, 80.0, 10.0];
const SCALE2: [f64; 3] = [500.0, 40.0, 5.0];
const WS: [[f64; 1]; 3] = [[0.002f32 as f64], [-0.01f32 as f64], [0.3f32 as f64]];
const BS: [f64; 1] = [-1.0];

const INPUTS: [[f64; 3]; 4] = [
    [100.0, 10.0, 2.0],
    [1500.0, 80.0, 4.0],
    [0.0, 443.0, 1.0],
    [250.0, 22.0, 9.0],
];

#[test]
fn linear3_matches_hand_computation() -> TestResult {
    if !have_ort("linear3_matches_hand_computation") {
        return Ok(());
    }
    let path = data("linear3.onnx");
    let mut engine = load("linear3.onnx")?;
    let c = engine.contract().clone();
    assert_eq!(
        c.features,
        ["Flow Duration", "Dst Port", "Total Fwd Packet"]
    );
    assert_eq!(
        c.columns,
        [idx::FLOW_DURATION, idx::DST_PORT, idx::TOTAL_FWD_PACKET]
    );
    assert_eq!(c.scaler, Scaler::InGraph);
    assert_eq!(c.labels, ["BENIGN", "DoS", "PortScan"]);
    assert_eq!(c.benign, Some(0));
    assert_eq!(c.output, OutputKind::Probabilities);
    assert_eq!(c.threshold, 0.5);
    assert_eq!(
        (c.name.as_str(), c.version.as_str()),
        ("fixture-linear3", "1.0.0")
    );
    assert_eq!(c.precision, Precision::Fp32);
    let bytes = std::fs::read(&path).map_err(|source| InferenceError::ReadModel {
        path: path.clone(),
        source,
    })?;
    assert_eq!(c.sha256, sha256_hex(&bytes));
    assert_eq!(engine.path(), path);

    let mut input = Vec::new();
    let n = select_features(&c, &rows(&INPUTS), INPUTS.len(), &mut input);
    assert_eq!(n, INPUTS.len());
    let mut out = Vec::new();
    engine.infer(&input, n, &mut out)?;
    assert_eq!(out.len(), n);
    for (x, p) in INPUTS.iter().zip(&out) {
        let prob = softmax(affine(x, &W3, &B3));
        assert_close(p.score, 1.0 - prob[0], &format!("score of {x:?}"));
        let class = if prob[2] > prob[1] { 2 } else { 1 };
        assert_eq!(p.class, class, "class of {x:?} ({prob:?})");
    }
    // Both attack classes occur, so the argmax is really exercised.
    assert!(out.iter().any(|p| p.class == 1) && out.iter().any(|p| p.class == 2));
    Ok(())
}

#[test]
fn external_scaler_model_matches_hand_computation() -> TestResult {
    if !have_ort("external_scaler_model_matches_hand_computation") {
        return Ok(());
    }
    let mut engine = load("scaled3.onnx")?;
    let c = engine.contract().clone();
    assert_eq!(
        c.scaler,
        Scaler::External {
            mean: MEAN2.to_vec(),
            scale: SCALE2.to_vec()
        }
    );
    assert_eq!(c.threshold, 0.7);
    let mut input = Vec::new();
    let n = select_features(&c, &rows(&INPUTS), INPUTS.len(), &mut input);
    let mut out = Vec::new();
    engine.infer(&input, n, &mut out)?;
    for (x, p) in INPUTS.iter().zip(&out) {
        let z = [0, 1, 2].map(|i| (x[i] - MEAN2[i]) / SCALE2[i]);
        let prob = softmax(affine(&z, &W2, &B2));
        assert_close(p.score, prob[1], &format!("score of {x:?}"));
        assert_eq!(p.class, 1);
    }
    Ok(())
}

#[test]
fn score_models_match_hand_computation() -> TestResult {
    if !have_ort("score_models_match_hand_computation") {
        return Ok(());
    }
    // score.onnx: [N, 1] output, labels [BENIGN, ATTACK]; score1d.onnx: [N],
    // labels [ATTACK] and no benign label.
    for (file, class, benign, precision) in [
        ("score.onnx", 1, Some(0), Precision::Fp32),
        ("score1d.onnx", 0, None, Precision::Fp32),
    ] {
        let mut engine = load(file)?;
        let c = engine.contract().clone();
        assert_eq!(c.output, OutputKind::Score, "{file}");
        assert_eq!(c.benign, benign, "{file}");
        assert_eq!(c.precision, precision, "{file}");
        assert_eq!(c.threshold, 0.25, "{file}");
        let mut input = Vec::new();
        let n = select_features(&c, &rows(&INPUTS), INPUTS.len(), &mut input);
        let mut out = Vec::new();
        engine.infer(&input, n, &mut out)?;
        for (x, p) in INPUTS.iter().zip(&out) {
            let want = sigmoid(affine(x, &WS, &BS)[0]);
            assert_close(p.score, want, &format!("{file}: score of {x:?}"));
            assert_eq!(p.class, class, "{file}");
        }
    }
    Ok(())
}

#[test]
fn broken_models_are_refused_with_the_right_error() {
    if !have_ort("broken_models_are_refused_with_the_right_error") {
        return;
    }
    let check = |file: &str, ok: &dyn Fn(&InferenceError) -> bool| match load(file) {
        Ok(_) => panic!("{file} was accepted"),
        Err(e) => {
            assert!(ok(&e), "{file}: unexpected error {e:?}");
            // The message names the problem for the user.
            eprintln!("{file}: {e}");
        }
    };
    check(
        "wrong_schema.onnx",
        &|e| matches!(e, InferenceError::SchemaMismatch { found, .. } if found == "unsw-nb15"),
    );
    check(
        "unknown_feature.onnx",
        &|e| matches!(e, InferenceError::UnknownFeature { name, .. } if name == "Label"),
    );
    check(
        "int64_input.onnx",
        &|e| matches!(e, InferenceError::BadInput { reason } if reason.contains("must be a float32")),
    );
    check(
        "input_width.onnx",
        &|e| matches!(e, InferenceError::BadInput { reason } if reason.contains("4 wide")),
    );
    check(
        "wrong_width.onnx",
        &|e| matches!(e, InferenceError::BadOutput { reason } if reason.contains("2 probability columns")),
    );
    check("missing_metadata.onnx", &|e| {
        matches!(
            e,
            InferenceError::MissingMetadata {
                key: "tapstream.schema"
            }
        )
    });
    check(
        "threshold2.onnx",
        &|e| matches!(e, InferenceError::ThresholdOutOfRange { value } if *value == 2.0),
    );
    check("mislabelled_fp16.onnx", &|e| {
        matches!(
            e,
            InferenceError::PrecisionMismatch {
                declared: Precision::Fp16,
                ..
            }
        )
    });
    check(
        "custom_op.onnx",
        &|e| matches!(e, InferenceError::UnsafeModel { reason, .. } if reason.contains("com.example")),
    );
    check(
        "external_escape.onnx",
        &|e| matches!(e, InferenceError::UnsafeModel { reason, .. } if reason.contains("../external_escape.weights")),
    );
    // Not an ONNX file at all.
    check("make_models.py", &|e| {
        matches!(e, InferenceError::LoadModel { .. })
    });
    check("no-such-model.onnx", &|e| {
        matches!(e, InferenceError::ReadModel { .. })
    });
}

/// External data inside the model's own directory is allowed, and read.
#[test]
fn external_data_beside_the_model_loads() -> TestResult {
    if !have_ort("external_data_beside_the_model_loads") {
        return Ok(());
    }
    let mut inside = load("external_inside.onnx")?;
    let mut plain = load("linear3.onnx")?;
    let c = plain.contract().clone();
    let mut input = Vec::new();
    let n = select_features(&c, &rows(&INPUTS), INPUTS.len(), &mut input);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    inside.infer(&input, n, &mut a)?;
    plain.infer(&input, n, &mut b)?;
    assert_eq!(a, b);
    Ok(())
}

#[test]
fn sha256_pin_is_enforced() -> TestResult {
    let path = data("linear3.onnx");
    let bytes = std::fs::read(&path).map_err(|source| InferenceError::ReadModel {
        path: path.clone(),
        source,
    })?;
    let digest = sha256_hex(&bytes);

    // A wrong pin is refused before ONNX Runtime is even needed.
    let mut wrong = digest.clone().into_bytes();
    wrong[0] = if wrong[0] == b'0' { b'1' } else { b'0' };
    let wrong = String::from_utf8(wrong).unwrap_or_default();
    let cfg = OnnxConfig {
        sha256: Some(wrong.clone()),
        ..OnnxConfig::default()
    };
    match OnnxEngine::load(&path, &cfg) {
        Err(InferenceError::Sha256Mismatch {
            expected, actual, ..
        }) => {
            assert_eq!(expected, wrong);
            assert_eq!(actual, digest);
        }
        other => panic!("wrong pin: {other:?}"),
    }

    if !have_ort("sha256_pin_is_enforced") {
        return Ok(());
    }
    // The right pin, in either case, is accepted.
    for pin in [digest.clone(), digest.to_ascii_uppercase()] {
        let cfg = OnnxConfig {
            sha256: Some(pin),
            ..OnnxConfig::default()
        };
        let engine = OnnxEngine::load(&path, &cfg)?;
        assert_eq!(engine.contract().sha256, digest);
    }
    Ok(())
}

#[test]
fn infer_handles_edge_cases_and_batching_is_exact() -> TestResult {
    if !have_ort("infer_handles_edge_cases_and_batching_is_exact") {
        return Ok(());
    }
    let mut engine = load("linear3.onnx")?;
    engine.warmup(64)?;
    let c = engine.contract().clone();
    let mut out = vec![Prediction::default(); 3];

    // Zero rows: no run, empty output.
    engine.infer(&[], 0, &mut out)?;
    assert!(out.is_empty());

    // Input length must be rows × features.
    assert!(matches!(
        engine.infer(&[0.0; 5], 2, &mut out),
        Err(InferenceError::InputSize {
            rows: 2,
            features: 3,
            found: 5
        })
    ));
    assert!(out.is_empty());

    // A big batch gives the same predictions as one row at a time, and a
    // reused buffer keeps its capacity.
    let many: Vec<[f64; 3]> = (0..1000)
        .map(|i| {
            let i = f64::from(i);
            [i * 3.0, (i * 7.0) % 1024.0, i % 13.0]
        })
        .collect();
    let mut input = Vec::new();
    let n = select_features(&c, &rows(&many), many.len(), &mut input);
    engine.infer(&input, n, &mut out)?;
    assert_eq!(out.len(), 1000);
    let capacity = out.capacity();
    let mut single = Vec::new();
    for (i, x) in many.iter().enumerate().step_by(97) {
        let mut one = Vec::new();
        select_features(&c, &row(x[0], x[1], x[2]), 1, &mut one);
        engine.infer(&one, 1, &mut single)?;
        assert_eq!(single.len(), 1);
        assert!(
            (single[0].score - out[i].score).abs() < 1e-6 && single[0].class == out[i].class,
            "row {i}: batch {:?} vs single {:?}",
            out[i],
            single[0]
        );
    }
    engine.infer(&input[..300], 100, &mut out)?;
    assert_eq!(out.len(), 100);
    assert_eq!(out.capacity(), capacity);
    Ok(())
}

#[test]
fn engine_is_send_and_usable_behind_a_box() -> TestResult {
    fn assert_send<T: Send>(_: &T) {}
    if !have_ort("engine_is_send_and_usable_behind_a_box") {
        return Ok(());
    }
    let engine: Box<dyn Engine> = Box::new(load("score.onnx")?);
    assert_send(&engine);
    let handle = std::thread::spawn(move || {
        let mut engine = engine;
        let mut out = Vec::new();
        engine
            .infer(&[0.0, 0.0, 0.0], 1, &mut out)
            .map(|()| out[0].score)
    });
    let score = handle.join().expect("inference thread panicked")?;
    assert_close(score, sigmoid(BS[0]), "score of zeros");
    Ok(())
}

/// The shipped default model, trained by `deploy/training/` (skipped when it
/// has not been built yet).
#[test]
fn default_model_cic_mlp_loads_and_runs() -> TestResult {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/cic-mlp.onnx");
    if !path.is_file() {
        eprintln!(
            "skipping default_model_cic_mlp_loads_and_runs: {} not found",
            path.display()
        );
        return Ok(());
    }
    if !have_ort("default_model_cic_mlp_loads_and_runs") {
        return Ok(());
    }
    let mut engine = OnnxEngine::load(&path, &OnnxConfig::default())?;
    let c = engine.contract().clone();
    assert_eq!(c.features.len(), 82, "{:?}", c.features);
    assert_eq!(c.columns.len(), 82);
    let benign = c.labels.iter().position(|l| l == "BENIGN");
    assert!(benign.is_some(), "labels {:?} lack BENIGN", c.labels);
    assert!(c.labels.len() >= 2);
    if c.output == OutputKind::Probabilities {
        assert_eq!(c.benign, benign);
    }
    assert!((0.0..=1.0).contains(&c.threshold));

    // A batch of 64 varied rows (including non-finite values) runs and gives
    // sane predictions.
    let mut raw = Vec::with_capacity(64 * NUM_FEATURES);
    for i in 0..64 {
        for j in 0..NUM_FEATURES {
            raw.push(((i * 31 + j * 17) % 1000) as f64 * (1 + i % 5) as f64);
        }
    }
    raw[idx::FLOW_BYTES_S] = f64::INFINITY;
    raw[NUM_FEATURES + idx::FLOW_PACKETS_S] = f64::NAN;
    let mut input = Vec::new();
    let n = select_features(&c, &raw, 64, &mut input);
    assert_eq!(input.len(), 64 * 82);
    let mut out = Vec::new();
    engine.infer(&input, n, &mut out)?;
    assert_eq!(out.len(), 64);
    for p in &out {
        assert!(
            p.score.is_finite() && (-1e-5..=1.0 + 1e-5).contains(&p.score),
            "{p:?}"
        );
        assert!(
            p.class < c.labels.len() && Some(p.class) != c.benign,
            "{p:?}"
        );
    }
    Ok(())
}

/// A GPU provider that this ONNX Runtime library lacks (the CPU wheel has
/// neither CUDA nor TensorRT) is an error, never a silent drop to the CPU;
/// with `allow_fallback` the model loads and runs on the CPU instead.
#[test]
fn missing_gpu_providers_are_errors_unless_fallback_is_allowed() -> TestResult {
    if !have_ort("missing_gpu_providers_are_errors_unless_fallback_is_allowed") {
        return Ok(());
    }
    let trt = ExecutionProvider::TensorRt(TensorRtOptions {
        precision: Precision::Int8,
        int8_calibration_table: Some(data("calibration.cache")),
        engine_cache: Some(std::env::temp_dir()),
        timing_cache: Some(std::env::temp_dir()),
        max_workspace: Some(1 << 30),
        ..TensorRtOptions::default()
    });
    let cuda = ExecutionProvider::Cuda(CudaOptions {
        device_id: 0,
        memory_limit: Some(1 << 30),
    });
    for providers in [
        vec![cuda.clone()],
        vec![trt.clone(), cuda.clone(), ExecutionProvider::Cpu],
        vec![trt.clone()],
    ] {
        let cfg = OnnxConfig {
            providers: providers.clone(),
            ..OnnxConfig::default()
        };
        match OnnxEngine::load(&data("linear3.onnx"), &cfg) {
            Err(InferenceError::LoadModel { .. }) => {}
            Ok(_) => {
                // A GPU build of ONNX Runtime with a usable device: nothing
                // to check here.
                eprintln!("{providers:?} registered: this ONNX Runtime has GPU providers");
                return Ok(());
            }
            Err(e) => panic!("{providers:?}: unexpected error {e}"),
        }
        let cfg = OnnxConfig {
            providers,
            allow_fallback: true,
            ..OnnxConfig::default()
        };
        let mut engine = OnnxEngine::load(&data("linear3.onnx"), &cfg)?;
        let c = engine.contract().clone();
        let mut input = Vec::new();
        let n = select_features(&c, &rows(&INPUTS), INPUTS.len(), &mut input);
        let mut out = Vec::new();
        engine.infer(&input, n, &mut out)?;
        assert_eq!(out.len(), n);
    }
    Ok(())
}
