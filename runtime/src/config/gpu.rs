//! `[gpu]`: where flow features are computed.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{in_range, ConfigError};

/// Which extractor computes flow features.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Device {
    /// The CPU extractor (the definition of every feature).
    #[default]
    Cpu,
    /// CUDA kernels on a GPU; an error when no usable GPU is found.
    Cuda,
    /// CUDA when a usable GPU is found, else the CPU (said once on stderr).
    Auto,
}

/// `[gpu]`: the CUDA feature extractor.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GpuSection {
    /// `cpu`, `cuda` or `auto` (overridden by `--device`).
    pub device: Device,
    /// Which GPU (CUDA device ordinal).
    pub ordinal: usize,
    /// Packet records per GPU batch and worker (1024..=16,777,216); two
    /// batches per worker are in flight, in pinned host and device memory
    /// (about 34 bytes per record plus 672 bytes per ended flow).
    pub batch_records: usize,
    /// Directory caching compiled kernels (keyed by source, GPU architecture
    /// and driver); none by default (kernels are compiled at start-up, once).
    pub ptx_cache: Option<PathBuf>,
}

impl Default for GpuSection {
    fn default() -> Self {
        GpuSection {
            device: Device::Cpu,
            ordinal: 0,
            batch_records: 1 << 18,
            ptx_cache: None,
        }
    }
}

impl GpuSection {
    /// Checks the batch size's range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        in_range("gpu.batch_records", self.batch_records, 1024..=1 << 24)?;
        Ok(())
    }
}
