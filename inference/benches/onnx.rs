//! Per-batch latency of `OnnxEngine::infer` on CPU, for batch sizes 1, 64
//! and 1024.
//!
//! Benches the default model `models/cic-mlp.onnx` and, for comparison, the
//! tiny `linear3.onnx` test fixture (which measures ONNX Runtime's per-call
//! overhead). A model or the ONNX Runtime library that is absent is skipped
//! with a line on stderr. Input rows are synthetic but deterministic, passed
//! through `select_features` as the pipeline does. Threads: 1 intra-op, 1
//! inter-op (the shipped default); set `TAPSTREAM_BENCH_THREADS` to change
//! intra-op threads.
//!
//! Run: `cargo bench -p tapstream-inference --bench onnx`.

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tapstream_inference::{select_features, Engine, OnnxConfig, OnnxEngine};
use tapstream_kernels::schema::NUM_FEATURES;

const BATCHES: [usize; 3] = [1, 64, 1024];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Deterministic, plausible-looking feature rows (xorshift; no RNG crate).
fn synthetic_rows(n: usize) -> Vec<f64> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    (0..n * NUM_FEATURES)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 100_000) as f64 / 7.0
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let threads = std::env::var("TAPSTREAM_BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let cfg = OnnxConfig {
        intra_threads: threads,
        ..OnnxConfig::default()
    };
    if let Err(e) = tapstream_inference::init_runtime(None) {
        eprintln!("skipping onnx benches: {e}");
        return;
    }
    let root = repo_root();
    let models = [
        ("cic-mlp", root.join("models/cic-mlp.onnx")),
        ("linear3", root.join("inference/tests/data/linear3.onnx")),
    ];
    let rows = synthetic_rows(*BATCHES.iter().max().unwrap_or(&1));
    let mut group = c.benchmark_group("tapstream_inference::OnnxEngine::infer");
    for (name, path) in models {
        if !path.is_file() {
            eprintln!("skipping {name}: {} not found", path.display());
            continue;
        }
        let mut engine = match OnnxEngine::load(&path, &cfg) {
            Ok(engine) => engine,
            Err(e) => {
                eprintln!("skipping {name}: {e}");
                continue;
            }
        };
        let mut input = Vec::new();
        let mut out = Vec::new();
        for &batch in &BATCHES {
            input.clear();
            let n = select_features(engine.contract(), &rows, batch, &mut input);
            if let Err(e) = engine.warmup(n) {
                eprintln!("skipping {name}: {e}");
                break;
            }
            group.throughput(Throughput::Elements(n as u64));
            group.bench_with_input(
                BenchmarkId::new(format!("cpu_{name}_t{threads}"), n),
                &n,
                |b, &n| {
                    b.iter(|| {
                        engine
                            .infer(black_box(&input), n, &mut out)
                            .expect("inference failed");
                        black_box(&out);
                    })
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
