//! `OnnxEngine::infer_bound` (input bound from caller-owned memory, output
//! left in bound memory) on the CPU provider with host memory: the same code
//! path the GPU uses with CUDA memory, so what can be checked without a GPU
//! is checked here. Its predictions must equal `Engine::infer`'s bit for bit
//! (same session, same rows, same batch), for the fixtures and for the
//! default model at FP32, FP16 and INT8; bad sizes are errors, not panics.
//!
//! Needs ONNX Runtime (skips with a message without it, unless
//! `TAPSTREAM_REQUIRE_ORT=1`).

use std::path::{Path, PathBuf};

mod common;
use common::have_ort;

use tapstream_inference::{
    select_features, BoundInference, BoundMemory, Engine, InferenceError, OnnxConfig, OnnxEngine,
    Prediction,
};
use tapstream_kernels::schema::NUM_FEATURES;

type TestResult = Result<(), InferenceError>;

fn model(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fixture = dir.join("tests/data").join(name);
    if fixture.is_file() {
        fixture
    } else {
        dir.join("../models").join(name)
    }
}

/// `rows` varied feature rows (magnitudes from 0 to about 1e9, some
/// non-finite), as the model's input.
fn inputs(engine: &OnnxEngine, rows: usize, seed: u64) -> Vec<f32> {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let raw: Vec<f64> = (0..rows * NUM_FEATURES)
        .map(|_| match next() % 16 {
            0 => 0.0,
            1 => f64::INFINITY,
            2..=7 => (next() % 100) as f64,
            8..=12 => (next() % 70_000) as f64,
            _ => (next() % 1_000_000_000) as f64 / 3.0,
        })
        .collect();
    let mut input = Vec::new();
    select_features(engine.contract(), &raw, rows, &mut input);
    input
}

/// `infer` and `infer_bound` on host memory agree bit for bit.
fn same_predictions(engine: &mut OnnxEngine, input: &[f32], rows: usize) -> TestResult {
    let path = engine.path().to_path_buf();
    let mut want = Vec::new();
    engine.infer(input, rows, &mut want)?;
    // SAFETY: `input` is host memory holding `input.len()` values, not
    // written during the call.
    let out = unsafe { engine.infer_bound(BoundMemory::Host, input.as_ptr(), input.len(), rows) }?;
    assert_eq!(out.rows(), rows);
    assert_eq!(out.memory(), BoundMemory::Host);
    let mut got = Vec::new();
    out.predictions(&mut got)?;
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(
            g.score.to_bits() == w.score.to_bits() && g.class == w.class,
            "{}: row {i} of {rows}: bound {g:?}, infer {w:?}",
            path.display()
        );
    }
    Ok(())
}

#[test]
fn bound_host_memory_equals_infer_bit_for_bit() -> TestResult {
    if !have_ort("bound_host_memory_equals_infer_bit_for_bit") {
        return Ok(());
    }
    let mut checked = 0;
    for name in [
        "linear3.onnx",
        "scaled3.onnx",
        "score.onnx",
        "score1d.onnx",
        "cic-mlp.onnx",
        "cic-mlp-fp16.onnx",
        "cic-mlp-int8.onnx",
    ] {
        let path = model(name);
        if !path.is_file() {
            eprintln!("bound_host_memory_equals_infer_bit_for_bit: {name} not found");
            continue;
        }
        let mut engine = OnnxEngine::load(&path, &OnnxConfig::default())?;
        // Sizes change between runs: the output bound to the memory is
        // reallocated to each run's shape.
        for (rows, seed) in [(1, 1), (1000, 2), (7, 3), (4096, 4), (1000, 5)] {
            let input = inputs(&engine, rows, seed);
            same_predictions(&mut engine, &input, rows)?;
        }
        // The bound output exposes what the device path reads.
        let input = inputs(&engine, 5, 9);
        // SAFETY: as above.
        let out = unsafe { engine.infer_bound(BoundMemory::Host, input.as_ptr(), input.len(), 5) }?;
        let labels = engine_labels(&path)?;
        assert!(!out.data_ptr().is_null());
        assert_eq!(out.shape()[0], 5);
        assert!(out.columns() == 1 || out.columns() == labels, "{name}");
        assert_eq!(
            out.shape().iter().product::<i64>(),
            5 * out.columns() as i64
        );
        checked += 1;
    }
    assert!(checked >= 4, "fixtures missing");
    Ok(())
}

fn engine_labels(path: &Path) -> Result<usize, InferenceError> {
    Ok(OnnxEngine::load(path, &OnnxConfig::default())?
        .contract()
        .labels
        .len())
}

#[test]
fn bound_input_sizes_are_checked_not_trusted() -> TestResult {
    if !have_ort("bound_input_sizes_are_checked_not_trusted") {
        return Ok(());
    }
    let mut engine = OnnxEngine::load(&model("linear3.onnx"), &OnnxConfig::default())?;
    let buf = [0.5f32; 6];
    let size_error = |r: Result<_, InferenceError>| {
        matches!(r, Err(InferenceError::InputSize { features: 3, .. }))
    };
    // SAFETY (all calls below): `buf` is host memory of `buf.len()` values,
    // and no call is told it holds more.
    unsafe {
        // A buffer too short for the rows asked for.
        assert!(size_error(
            engine
                .infer_bound(BoundMemory::Host, buf.as_ptr(), 5, 2)
                .map(|_| ())
        ));
        assert!(size_error(
            engine
                .infer_bound(BoundMemory::Host, buf.as_ptr(), buf.len(), 3)
                .map(|_| ())
        ));
        // rows × features overflows.
        assert!(size_error(
            engine
                .infer_bound(BoundMemory::Host, buf.as_ptr(), buf.len(), usize::MAX)
                .map(|_| ())
        ));
        // A null pointer is refused whenever a value would be read.
        assert!(size_error(
            engine
                .infer_bound(BoundMemory::Host, std::ptr::null(), 6, 2)
                .map(|_| ())
        ));
        // Zero rows run nothing and give nothing.
        let out = engine.infer_bound(BoundMemory::Host, std::ptr::null(), 0, 0)?;
        assert_eq!(out.rows(), 0);
        let mut p = vec![Prediction::default()];
        out.predictions(&mut p)?;
        assert_eq!(p.len(), 1, "appends nothing");
        drop(out);
        // A longer buffer than needed is fine: only the rows are read.
        let out = engine.infer_bound(BoundMemory::Host, buf.as_ptr(), buf.len(), 1)?;
        assert_eq!(out.rows(), 1);
    }
    Ok(())
}

/// This ONNX Runtime (CPU only) has no CUDA memory: asking for it is an
/// error from ONNX Runtime, not a crash or a silent host run.
#[test]
fn cuda_memory_without_the_cuda_provider_is_an_error() -> TestResult {
    if !have_ort("cuda_memory_without_the_cuda_provider_is_an_error") {
        return Ok(());
    }
    let mut engine = OnnxEngine::load(&model("linear3.onnx"), &OnnxConfig::default())?;
    let buf = [0.5f32; 3];
    // SAFETY: `buf` is really host memory of 3 values, so even a read of it
    // as "CUDA" memory would read valid memory.
    let r = unsafe { engine.infer_bound(BoundMemory::Cuda { ordinal: 0 }, buf.as_ptr(), 3, 1) };
    assert!(r.is_err(), "{r:?}");
    drop(r);
    // The engine still works on the host afterwards.
    let mut out = Vec::new();
    engine.infer(&buf, 1, &mut out)?;
    assert_eq!(out.len(), 1);
    Ok(())
}
