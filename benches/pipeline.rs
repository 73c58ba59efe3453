//! Criterion benchmarks per stage and end to end, on the project's own demo
//! capture (made in memory, so the benchmark needs no shared data):
//! read + decode, flow table + CPU features, and the threaded pipeline with
//! flows discarded and with the default model and EVE formatting (the last
//! one only when the ONNX Runtime library and the default model are found);
//! and the context table on a spoofed flood (every start a new source), on
//! one past a 16 MiB memcap (the table full, making room once a second) and
//! on a few busy hosts.
//!
//! `tapstream bench --pcap FILE` measures the same stages on any capture.

use std::io::Cursor;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use tapstream_ingest::records::read_records;
use tapstream_ingest::{decode, CaptureReader, PacketRecord};
use tapstream_kernels::shard::ShardProcessor;
use tapstream_kernels::{ContextConfig, ContextRows, FlowBatch, FlowStart};
use tapstream_runtime::config::Placement;
use tapstream_runtime::{model, run_file, Config, Consumer, Progress};
use tapstream_tools::{bench, demo};

fn demo_bytes() -> Vec<u8> {
    let mut v = Vec::new();
    demo::write_demo(&mut v).expect("writing to a Vec cannot fail");
    v
}

/// The demo capture `bytes` in a temporary directory (kept alive by the
/// caller), and its decoded records.
fn demo_file(bytes: &[u8]) -> (tempfile::TempDir, std::path::PathBuf, Vec<PacketRecord>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("demo.pcap");
    std::fs::write(&path, bytes).expect("writing the demo capture");
    let recs = read_records(&path, usize::MAX).expect("demo pcap").recs;
    (dir, path, recs)
}

fn stages(c: &mut Criterion) {
    let bytes = demo_bytes();
    let (_dir, _path, recs) = demo_file(&bytes);
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
    let flow_cfg = cfg.flow.flow_config(1);
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

/// `n` flow starts 1 ms apart from `sources` sources (IPv4, round robin) to
/// one server's ports 80 and 443, each flow ending at once.
fn starts(n: u32, sources: u32) -> Vec<FlowStart> {
    (0..n)
        .map(|i| {
            let mut src = [0u8; 16];
            src[..4].copy_from_slice(&(0xC612_0000 | (i % sources)).to_be_bytes());
            let mut dst = [0u8; 16];
            dst[..4].copy_from_slice(&[198, 19, 0, 1]);
            FlowStart {
                id: u64::from(i),
                order: u64::from(i),
                ts_us: i64::from(i) * 1000,
                src,
                dst,
                dport: if i % 2 == 0 { 80 } else { 443 },
                proto: 6,
                v6: false,
                outcome: None,
            }
        })
        .collect()
}

fn context(c: &mut Criterion) {
    let mut g = c.benchmark_group("tapstream::context");
    let n = 200_000;
    g.throughput(Throughput::Elements(u64::from(n)));
    for (name, sources) in [("spoofed_flood", n), ("busy_hosts", 64)] {
        let starts = starts(n, sources);
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut rows = ContextRows::new(ContextConfig::default());
                for chunk in starts.chunks(4096) {
                    rows.start_all(chunk);
                    for s in chunk {
                        std::hint::black_box(rows.take(s.id));
                    }
                }
                rows.stats().entries
            })
        });
    }
    // A spoofed flood past a 16 MiB memcap, as in `tests/flood.rs`: 250,000
    // new sources a second of packet time for 8 s, so the full table makes
    // room once a second.
    let flood = spoofed_past_memcap(2_000_000, 4);
    g.throughput(Throughput::Elements(flood.len() as u64));
    g.sample_size(10);
    g.bench_function("spoofed_flood_past_memcap", |b| {
        b.iter(|| {
            let mut rows = ContextRows::new(ContextConfig::with_memcap_mib(16));
            for chunk in flood.chunks(4096) {
                rows.start_all(chunk);
                for s in chunk {
                    std::hint::black_box(rows.take(s.id));
                }
            }
            rows.stats().entries
        })
    });
    g.finish();
}

/// `n` starts `gap_us` apart, each from a new pseudo-random source to a
/// pseudo-random port.
fn spoofed_past_memcap(n: u32, gap_us: i64) -> Vec<FlowStart> {
    let mut rng = tapstream_tools::rng::SplitMix64::new(7);
    (0..n)
        .map(|i| {
            let mut s = starts(1, 1).remove(0);
            let r = rng.next_u64();
            s.id = u64::from(i);
            s.order = u64::from(i);
            s.ts_us = i64::from(i) * gap_us;
            s.src[..4].copy_from_slice(&(r as u32).to_be_bytes());
            s.dport = (r >> 32) as u16;
            s
        })
        .collect()
}

fn end_to_end(c: &mut Criterion) {
    let (_dir, path, recs) = demo_file(&demo_bytes());
    let cfg = Config::default();
    let packets = recs.len() as u64;

    let mut g = c.benchmark_group("tapstream::pipeline");
    g.throughput(Throughput::Elements(packets));
    g.sample_size(20);
    g.bench_function("cpu_flows_discarded", |b| {
        b.iter(|| {
            run_file(
                &path,
                &cfg,
                Consumer::Discard,
                Arc::new(Progress::default()),
            )
            .expect("pipeline")
        })
    });
    match model::load(&cfg, None, 0) {
        Ok(_) => {
            // The model in the consumer thread (the default), then in each
            // flow worker (`[inference] placement = "workers"`).
            let mut in_workers = cfg.clone();
            in_workers.inference.placement = Placement::Workers;
            for (name, cfg) in [
                ("cpu_end_to_end_default_model", &cfg),
                ("cpu_end_to_end_default_model_in_workers", &in_workers),
            ] {
                let sessions = model::worker_sessions_needed(cfg, false);
                g.bench_function(name, |b| {
                    b.iter_batched(
                        || model::load(cfg, None, sessions).expect("model loaded once already"),
                        |m| {
                            run_file(
                                &path,
                                cfg,
                                Consumer::Alerts(Box::new(bench::discarding_stage(cfg, m))),
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
fn cuda(c: &mut Criterion) {
    use tapstream_kernels::gpu::cuda::CudaDevice;
    if !tapstream_kernels::gpu::CUDA_BUILT {
        return;
    }
    let dev = match CudaDevice::open(0, None) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("cuda benches skipped: {e}");
            return;
        }
    };
    let (_dir, _path, recs) = demo_file(&demo_bytes());
    let cfg = Config::default();
    let flow = cfg.flow.flow_config(1);
    let mut g = c.benchmark_group("tapstream::stage");
    g.throughput(Throughput::Elements(recs.len() as u64));
    let mut rows =
        tapstream_tools::gpu::GpuRows::new(&dev, flow, cfg.gpu.batch_records).expect("GPU shard");
    g.bench_function("cuda_flows_features", |b| {
        b.iter(|| rows.rows(&recs).expect("GPU rows").len())
    });
    g.finish();
}

criterion_group!(benches, stages, context, cuda, end_to_end);
criterion_main!(benches);
