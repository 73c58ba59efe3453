//! Criterion benchmarks per stage and end to end, on the project's own demo
//! capture (made in memory, so the benchmark needs no shared data):
//! read + decode, flow table + CPU features, and the threaded pipeline with
//! flows discarded and with the default model and EVE formatting (the last
//! one only when the ONNX Runtime library and the default model are found).
//!
//! `tapstream bench --pcap FILE` measures the same stages on any capture.

use std::io::Cursor;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use tapstream::config::Config;
use tapstream::consumer::Consumer;
use tapstream::pipeline::{self, Progress};
use tapstream::{bench, demo, model};
use tapstream_ingest::{decode, CaptureReader, PacketRecord};
use tapstream_kernels::shard::ShardProcessor;
use tapstream_kernels::FlowBatch;

fn demo_bytes() -> Vec<u8> {
    let mut v = Vec::new();
    demo::write_demo(&mut v).expect("writing to a Vec cannot fail");
    v
}

fn records(bytes: &[u8]) -> Vec<PacketRecord> {
    let mut reader =
        CaptureReader::from_reader(Box::new(Cursor::new(bytes.to_vec()))).expect("demo pcap");
    let mut out = Vec::new();
    let mut rec = PacketRecord::default();
    while let Ok(Some(p)) = reader.next_packet() {
        if decode(&p, &mut rec).is_ok() {
            out.push(rec);
        }
    }
    out
}

fn stages(c: &mut Criterion) {
    let bytes = demo_bytes();
    let recs = records(&bytes);
    let packets = recs.len() as u64;

    let mut g = c.benchmark_group("tapstream::stage");
    g.throughput(Throughput::Elements(packets));
    g.bench_function("cpu_read_decode", |b| {
        b.iter_batched(
            || Box::new(Cursor::new(bytes.clone())),
            |cur| {
                let mut reader = CaptureReader::from_reader(cur).expect("demo pcap");
                let mut rec = PacketRecord::default();
                let mut n = 0u64;
                while let Ok(Some(p)) = reader.next_packet() {
                    n += u64::from(decode(&p, &mut rec).is_ok());
                }
                n
            },
            BatchSize::SmallInput,
        )
    });
    let cfg = Config::default();
    let flow_cfg = pipeline::flow_config(&cfg, 1);
    g.bench_function("cpu_flows_features", |b| {
        b.iter_batched(
            || ShardProcessor::new(flow_cfg, 0).expect("default config"),
            |mut shard| {
                let mut out = FlowBatch::with_capacity(4096);
                for chunk in recs.chunks(4096) {
                    shard.process(chunk, &mut out);
                    out.clear();
                }
                shard.flush(&mut out);
                out.len()
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn end_to_end(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("demo.pcap");
    std::fs::write(&path, demo_bytes()).expect("writing the demo capture");
    let cfg = Config::default();
    let packets = records(&std::fs::read(&path).expect("demo")).len() as u64;

    let mut g = c.benchmark_group("tapstream::pipeline");
    g.throughput(Throughput::Elements(packets));
    g.sample_size(20);
    g.bench_function("cpu_flows_discarded", |b| {
        b.iter(|| {
            pipeline::run(
                &path,
                &cfg,
                Consumer::Discard,
                Arc::new(Progress::default()),
            )
            .expect("pipeline")
        })
    });
    match model::load(&cfg, None) {
        Ok(_) => {
            // The model in the consumer thread (the default), then in each
            // flow worker (`[inference] placement = "workers"`).
            let mut in_workers = cfg.clone();
            in_workers.inference.placement = tapstream::config::Placement::Workers;
            for (name, cfg) in [
                ("cpu_end_to_end_default_model", &cfg),
                ("cpu_end_to_end_default_model_in_workers", &in_workers),
            ] {
                let sessions = model::worker_sessions_needed(cfg, false);
                g.bench_function(name, |b| {
                    b.iter_batched(
                        || {
                            let mut m = model::load(cfg, None).expect("model loaded once already");
                            model::add_worker_sessions(cfg, &mut m, sessions)
                                .expect("worker sessions");
                            m
                        },
                        |m| {
                            pipeline::run(
                                &path,
                                cfg,
                                Consumer::Alerts(bench::discarding_stage(cfg, m)),
                                Arc::new(Progress::default()),
                            )
                            .expect("pipeline")
                        },
                        BatchSize::PerIteration,
                    )
                });
            }
        }
        Err(e) => eprintln!("cpu_end_to_end_default_model skipped: {e:#}"),
    }
    g.finish();
}

/// The CUDA extractor on the same records, when a GPU is present: the
/// `cuda_` twin of `cpu_flows_features` (rows copied back to the host).
#[cfg(feature = "cuda")]
fn cuda(c: &mut Criterion) {
    use tapstream_kernels::gpu::cuda::CudaDevice;
    let dev = match CudaDevice::open(0, None) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("cuda benches skipped: {e}");
            return;
        }
    };
    let bytes = demo_bytes();
    let recs = records(&bytes);
    let cfg = Config::default();
    let flow = pipeline::flow_config(&cfg, 1);
    let mut g = c.benchmark_group("tapstream::stage");
    g.throughput(Throughput::Elements(recs.len() as u64));
    let mut rows =
        tapstream::gpu::GpuRows::new(&dev, flow, cfg.gpu.batch_records).expect("GPU shard");
    g.bench_function("cuda_flows_features", |b| {
        b.iter(|| rows.rows(&recs).expect("GPU rows").len())
    });
    g.finish();
}

#[cfg(not(feature = "cuda"))]
fn cuda(_c: &mut Criterion) {}

criterion_group!(benches, stages, cuda, end_to_end);
criterion_main!(benches);
