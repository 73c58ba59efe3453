//! A capped CPU arena: inference within the cap works, an inference that
//! needs more fails with an error instead of growing without bound, and a
//! second, different cap in the same process is refused. (Its own test
//! binary: the cap is per process.)

use std::path::{Path, PathBuf};

mod common;
use common::have_ort;

use tapstream_inference::{select_features, Engine, InferenceError, OnnxConfig, OnnxEngine};
use tapstream_kernels::schema::NUM_FEATURES;

fn model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/cic-mlp.onnx")
}

#[test]
fn capped_arena_bounds_inference_memory() {
    if !have_ort("capped_arena_bounds_inference_memory") {
        return;
    }
    let cap = 1 << 20;
    let cfg = OnnxConfig {
        cpu_arena_limit: Some(cap),
        ..OnnxConfig::default()
    };
    let mut engine = OnnxEngine::load(&model(), &cfg).unwrap();
    let c = engine.contract().clone();
    let run = |engine: &mut OnnxEngine, rows: usize| {
        let raw = vec![1.0f64; rows * NUM_FEATURES];
        let mut input = Vec::new();
        select_features(&c, &raw, rows, &mut input);
        let mut out = Vec::new();
        engine.infer(&input, rows, &mut out).map(|()| out.len())
    };
    // 16 rows need a few KiB of activations: fine under 1 MiB.
    assert_eq!(run(&mut engine, 16).unwrap(), 16);
    // 65,536 rows need tens of MiB: refused, and the engine still works.
    match run(&mut engine, 65_536) {
        Err(InferenceError::Runtime { .. }) => {}
        other => panic!("expected an allocation error, got {other:?}"),
    }
    assert_eq!(run(&mut engine, 16).unwrap(), 16);
    // The cap is per process.
    let other = OnnxConfig {
        cpu_arena_limit: Some(2 * cap),
        ..OnnxConfig::default()
    };
    assert!(matches!(
        OnnxEngine::load(&model(), &other),
        Err(InferenceError::InvalidConfig {
            field: "cpu_arena_limit",
            ..
        })
    ));
}
