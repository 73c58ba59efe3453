//! Where flow features are computed: the CPU extractor or the CUDA kernels.
//!
//! `--device cuda` without a usable GPU (or in a build without the `cuda`
//! feature) is an error before any packet is read; `--device auto` falls
//! back to the CPU and says so once on stderr. Both extractors run behind the
//! same flow table, so flows, their order and their packet counts never
//! depend on the device; the kernels reproduce the CPU's feature values.

use std::time::Instant;

use anyhow::Result;
use tapstream_inference::device::GpuWorkerScoring;
use tapstream_inference::WorkerScorer;
use tapstream_ingest::flow::FlowConfig;
use tapstream_kernels::extract::{cpu_extractor, gpu_extractor};
use tapstream_kernels::gpu::cuda::CudaDevice;
use tapstream_kernels::gpu::records::fin_capacity;
use tapstream_kernels::gpu::DeviceScoring;
use tapstream_kernels::{Backend, FeatureExtractor};

use crate::config::{Device, GpuSection};

/// Opens the configured device.
pub fn open(gpu: &GpuSection) -> Result<Backend> {
    match gpu.device {
        Device::Cpu => Ok(Backend::Cpu),
        Device::Cuda => open_gpu(gpu),
        Device::Auto => match open_gpu(gpu) {
            Ok(b) => Ok(b),
            Err(e) => {
                eprintln!("tapstream: {e:#}; using the CPU extractor");
                Ok(Backend::Cpu)
            }
        },
    }
}

fn open_gpu(gpu: &GpuSection) -> Result<Backend> {
    let t = Instant::now();
    let dev = CudaDevice::open(gpu.ordinal, gpu.ptx_cache.as_deref())?;
    tracing::info!(
        message = "GPU opened (context, kernels compiled or cached, module loaded)",
        ms = t.elapsed().as_secs_f64() * 1e3
    );
    Ok(Backend::Cuda(dev))
}

/// One shard's extractor on `backend`. With GPU features and a worker
/// `scorer` whose session runs on that GPU's CUDA provider, the shard takes
/// the scorer and scores each batch where its features are
/// (device-resident; see `tapstream_inference::device`); otherwise `scorer`
/// is left for the worker, which then scores host rows.
pub(crate) fn extractor(
    backend: &Backend,
    flow: FlowConfig,
    shard: u32,
    gpu: &GpuSection,
    scorer: &mut Option<WorkerScorer>,
) -> Result<Box<dyn FeatureExtractor>> {
    let dev = match backend {
        Backend::Cpu => return Ok(cpu_extractor(flow, shard)?),
        Backend::Cuda(dev) => dev,
    };
    let t = Instant::now();
    let mut scoring: Option<Box<dyn DeviceScoring<_>>> = None;
    if let Some(w) = scorer.take() {
        match GpuWorkerScoring::new(dev, w, fin_capacity(gpu.batch_records)) {
            Ok(g) => scoring = Some(Box::new(g)),
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
    let on_device = scoring.is_some();
    let ex = gpu_extractor(dev, flow, shard, gpu.batch_records, scoring)?;
    tracing::info!(
        message = "GPU shard ready (pinned and device buffers)",
        shard,
        batch_records = gpu.batch_records,
        scoring_on_device = on_device,
        ms = t.elapsed().as_secs_f64() * 1e3
    );
    Ok(ex)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu(device: Device) -> GpuSection {
        GpuSection {
            device,
            ..GpuSection::default()
        }
    }

    /// Without a usable GPU (this build lacks CUDA, or the machine lacks a
    /// driver), `cuda` is an error and `auto` falls back to the CPU.
    #[test]
    fn cuda_without_a_gpu_is_an_error_and_auto_falls_back() {
        assert!(matches!(open(&gpu(Device::Cpu)), Ok(Backend::Cpu)));
        if tapstream_kernels::gpu::cuda::libraries_present() {
            eprintln!("a CUDA driver is present: only the CPU case is checked");
            return;
        }
        let err = open(&gpu(Device::Cuda))
            .err()
            .expect("cuda without a GPU must fail");
        let msg = format!("{err:#}");
        assert!(msg.contains("GPU") || msg.contains("CUDA"), "{msg}");
        assert!(matches!(open(&gpu(Device::Auto)), Ok(Backend::Cpu)));
    }

    #[test]
    fn the_cpu_extractor_is_not_batched() {
        let flow = crate::config::FlowSection::default().flow_config(1);
        let e = extractor(&Backend::Cpu, flow, 0, &GpuSection::default(), &mut None).unwrap();
        assert!(!e.batched());
        assert!(e.error().is_none());
    }
}
