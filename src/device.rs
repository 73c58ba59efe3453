//! Where flow features are computed: the CPU extractor or the CUDA kernels.
//!
//! `--device cuda` without a usable GPU (or in a build without the `cuda`
//! feature) is an error before any packet is read; `--device auto` falls
//! back to the CPU and says so once on stderr. Both extractors run behind the
//! same flow table, so flows, their order and their packet counts never
//! depend on the device; the kernels reproduce the CPU's feature values.

use anyhow::Result;
use tapstream_ingest::flow::FlowConfig;
use tapstream_ingest::PacketRecord;
use tapstream_kernels::shard::{Output, ShardProcessor, ShardStats};
use tapstream_kernels::FlowBatch;

use crate::config::{Config, Device};
use crate::scoring::WorkerScorer;

#[cfg(feature = "cuda")]
use tapstream_kernels::gpu::cuda::{CudaDevice, CudaExecutor};
#[cfg(feature = "cuda")]
use tapstream_kernels::gpu::GpuShard;

/// The device a run uses, opened.
#[derive(Clone)]
pub enum Resolved {
    /// The CPU extractor.
    Cpu,
    /// A GPU with the kernels loaded.
    #[cfg(feature = "cuda")]
    Cuda(CudaDevice),
}

impl Resolved {
    /// A short description for summaries: "cpu" or the GPU's name.
    pub fn describe(&self) -> String {
        match self {
            Resolved::Cpu => "cpu".to_string(),
            #[cfg(feature = "cuda")]
            Resolved::Cuda(d) => {
                let i = d.info();
                format!(
                    "cuda: {} (sm_{}{}, driver {})",
                    i.name, i.compute_capability.0, i.compute_capability.1, i.driver_version
                )
            }
        }
    }
}

/// Opens the configured device.
pub fn resolve(cfg: &Config) -> Result<Resolved> {
    match cfg.gpu.device {
        Device::Cpu => Ok(Resolved::Cpu),
        Device::Cuda => open_gpu(cfg),
        Device::Auto => match open_gpu(cfg) {
            Ok(r) => Ok(r),
            Err(e) => {
                eprintln!("tapstream: {e:#}; using the CPU extractor");
                Ok(Resolved::Cpu)
            }
        },
    }
}

#[cfg(feature = "cuda")]
fn open_gpu(cfg: &Config) -> Result<Resolved> {
    let t = std::time::Instant::now();
    let dev = CudaDevice::open(cfg.gpu.ordinal, cfg.gpu.ptx_cache.as_deref())?;
    tracing::info!(
        message = "GPU opened (context, kernels compiled or cached, module loaded)",
        ms = t.elapsed().as_secs_f64() * 1e3
    );
    Ok(Resolved::Cuda(dev))
}

#[cfg(not(feature = "cuda"))]
fn open_gpu(_cfg: &Config) -> Result<Resolved> {
    anyhow::bail!("this tapstream was built without CUDA support (build with `--features cuda`)")
}

/// One shard's flow table and feature extractor.
// The CPU variant is held inline on purpose: it is the hot path.
#[allow(clippy::large_enum_variant)]
pub enum Extractor {
    /// Flow table and CPU accumulators.
    Cpu(ShardProcessor),
    /// Flow table on the host, accumulators on a GPU.
    #[cfg(feature = "cuda")]
    Cuda(Box<GpuShard<CudaExecutor>>),
}

impl Extractor {
    /// A shard on `device`. With GPU features and a worker `scorer` whose
    /// session runs on that GPU's CUDA provider, the shard takes the scorer
    /// and scores each batch where its features are (device-resident; see
    /// `gpu_score`); otherwise `scorer` is left for the worker, which then
    /// scores host rows.
    pub fn new(
        device: &Resolved,
        flow: FlowConfig,
        shard: u32,
        cfg: &Config,
        scorer: &mut Option<WorkerScorer>,
    ) -> Result<Self> {
        let _ = (cfg, &scorer);
        match device {
            Resolved::Cpu => Ok(Extractor::Cpu(ShardProcessor::new(flow, shard)?)),
            #[cfg(feature = "cuda")]
            Resolved::Cuda(dev) => {
                let t = std::time::Instant::now();
                let exec = dev.executor(cfg.gpu.batch_records, flow.activity_timeout_us)?;
                let mut s = GpuShard::new(flow, shard, exec, cfg.gpu.batch_records)?;
                let mut on_device = false;
                if let Some(w) = scorer.take() {
                    let rows = tapstream_kernels::gpu::records::fin_capacity(cfg.gpu.batch_records);
                    match crate::gpu_score::GpuWorkerScoring::new(dev, w, rows) {
                        Ok(g) => {
                            s.set_scoring(Box::new(g))?;
                            on_device = true;
                        }
                        Err((w, why)) => {
                            tracing::info!(
                                message = "the flow worker scores host rows, not on the GPU",
                                shard,
                                reason = %why
                            );
                            *scorer = Some(w);
                        }
                    }
                }
                tracing::info!(
                    message = "GPU shard ready (pinned and device buffers)",
                    shard,
                    batch_records = cfg.gpu.batch_records,
                    scoring_on_device = on_device,
                    ms = t.elapsed().as_secs_f64() * 1e3
                );
                Ok(Extractor::Cuda(Box::new(s)))
            }
        }
    }

    /// True for the GPU extractor (its results arrive per batch).
    pub fn batched(&self) -> bool {
        !matches!(self, Extractor::Cpu(_))
    }

    /// Processes packet records.
    pub fn process_into<F: FnMut(&mut FlowBatch)>(
        &mut self,
        recs: &[PacketRecord],
        out: &mut Output<'_, F>,
    ) {
        match self {
            Extractor::Cpu(p) => p.process_into(recs, out),
            #[cfg(feature = "cuda")]
            Extractor::Cuda(g) => g.process_into(recs, out),
        }
    }

    /// Processes packet records tagged with the input messages they came
    /// from (see [`ShardProcessor::process_tagged_into`]).
    pub fn process_tagged_into<F: FnMut(&mut FlowBatch)>(
        &mut self,
        recs: &[PacketRecord],
        origins: &[u64],
        out: &mut Output<'_, F>,
    ) {
        match self {
            Extractor::Cpu(p) => p.process_tagged_into(recs, origins, out),
            // Refused by the configuration check (the GPU hands flows off a
            // batch late, so marks would run ahead of them);
            // `oldest_open_origin` then holds every commit back.
            #[cfg(feature = "cuda")]
            Extractor::Cuda(g) => g.process_into(recs, out),
        }
    }

    /// The oldest input message an open flow started in (tagged input);
    /// nothing may be committed from it on.
    pub fn oldest_open_origin(&self) -> Option<u64> {
        match self {
            Extractor::Cpu(p) => p.oldest_open_origin(),
            #[cfg(feature = "cuda")]
            Extractor::Cuda(_) => Some(0),
        }
    }

    /// Advances packet time.
    pub fn advance_into<F: FnMut(&mut FlowBatch)>(&mut self, now_us: i64, out: &mut Output<'_, F>) {
        match self {
            Extractor::Cpu(p) => p.advance_into(now_us, out),
            #[cfg(feature = "cuda")]
            Extractor::Cuda(g) => g.advance_into(now_us, out),
        }
    }

    /// Nothing arrived for a while: deliver flows still waiting in a batch.
    pub fn idle<F: FnMut(&mut FlowBatch)>(&mut self, out: &mut Output<'_, F>) {
        match self {
            Extractor::Cpu(_) => {
                let _ = out;
            }
            #[cfg(feature = "cuda")]
            Extractor::Cuda(g) => g.sync(out),
        }
    }

    /// Ends every flow and delivers them all.
    pub fn flush_into<F: FnMut(&mut FlowBatch)>(&mut self, out: &mut Output<'_, F>) {
        match self {
            Extractor::Cpu(p) => p.flush_into(out),
            #[cfg(feature = "cuda")]
            Extractor::Cuda(g) => g.flush_into(out),
        }
    }

    /// The first device error, if the GPU failed (flows are then lost).
    pub fn error(&self) -> Option<String> {
        match self {
            Extractor::Cpu(_) => None,
            #[cfg(feature = "cuda")]
            Extractor::Cuda(g) => g.error().map(|e| e.to_string()),
        }
    }

    /// Most flows the shard's table holds.
    pub fn max_flows(&self) -> usize {
        match self {
            Extractor::Cpu(p) => p.config().max_flows,
            #[cfg(feature = "cuda")]
            Extractor::Cuda(g) => g.config().max_flows,
        }
    }

    /// Counters.
    pub fn stats(&self) -> ShardStats {
        match self {
            Extractor::Cpu(p) => p.stats(),
            #[cfg(feature = "cuda")]
            Extractor::Cuda(g) => g.stats(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(device: Device) -> Config {
        let mut c = Config::default();
        c.gpu.device = device;
        c
    }

    /// Without a usable GPU (this build lacks CUDA, or the machine lacks a
    /// driver), `cuda` is an error and `auto` falls back to the CPU.
    #[test]
    fn cuda_without_a_gpu_is_an_error_and_auto_falls_back() {
        assert!(matches!(resolve(&cfg(Device::Cpu)), Ok(Resolved::Cpu)));
        #[cfg(feature = "cuda")]
        if tapstream_kernels::gpu::cuda::libraries_present() {
            eprintln!("a CUDA driver is present: only the CPU case is checked");
            return;
        }
        let err = resolve(&cfg(Device::Cuda))
            .err()
            .expect("cuda without a GPU must fail");
        let msg = format!("{err:#}");
        assert!(msg.contains("GPU") || msg.contains("CUDA"), "{msg}");
        assert!(matches!(resolve(&cfg(Device::Auto)), Ok(Resolved::Cpu)));
    }

    #[test]
    fn cpu_extractor_is_not_batched() {
        let c = Config::default();
        let flow = crate::pipeline::flow_config(&c, 1);
        let e = Extractor::new(&Resolved::Cpu, flow, 0, &c, &mut None).unwrap();
        assert!(!e.batched());
        assert!(e.error().is_none());
    }
}
