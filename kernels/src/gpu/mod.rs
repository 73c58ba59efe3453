//! The GPU twin of the CPU extractor: per-flow accumulators resident in
//! device memory, fed with columnar packet records, finalized on the device.
//!
//! * [`records`]: the record layout, the batch builder and [`GpuShard`], which
//!   drives the (host) flow table and an executor. Always compiled, so its
//!   logic is tested on machines without a GPU.
//! * [`FLOW_FEATURES_CU`]: the CUDA C++ source, a line-by-line twin of
//!   `cpu.rs` (see the comments at its top). NVRTC compiles it at start-up for
//!   the GPU found; tests also compile it to PTX (no GPU needed) and, as plain
//!   C++, run it against the CPU extractor.
//! * [`flag`]: the host side of the `flag_scores` kernel, which keeps only
//!   the rows a model flags out of its output on the device.
//! * [`cuda`]: the executor on a real device through cudarc (feature
//!   `cuda`), or its stand-in in builds without it, whose
//!   [`cuda::CudaDevice::open`] fails with a clear error; the rest of the
//!   workspace uses one API either way.
//! * [`device`]: what a GPU is and where its time went (shared by both).

pub mod device;
pub mod flag;
pub mod records;

#[cfg(feature = "cuda")]
pub mod cuda;
#[cfg(not(feature = "cuda"))]
#[path = "stand_in.rs"]
pub mod cuda;

pub use flag::{collect_flagged, Flagged, ScoreLayout};
pub use records::{BatchExecutor, Column, Columns, DeviceScoring, GpuError, GpuShard, RecordBatch};

/// Whether this build has CUDA support (the `cuda` feature); without it
/// every device opens with [`GpuError::NotBuilt`].
pub const CUDA_BUILT: bool = cfg!(feature = "cuda");

/// The kernel source, compiled at start-up by NVRTC.
pub const FLOW_FEATURES_CU: &str = include_str!("flow_features.cu");

/// Name of the source file (for compiler messages).
pub const FLOW_FEATURES_NAME: &str = "flow_features.cu";

/// The kernels the source defines, in launch order.
pub const KERNELS: [&str; 6] = [
    "build_perm",
    "gather",
    "process_batch",
    "finalize_long",
    "model_input",
    "flag_scores",
];

/// What a model takes from each feature row, for the device's model-input
/// matrix (the `model_input` kernel, twin of `inference::select_features`).
#[derive(Clone, Debug, PartialEq)]
pub struct ModelInput {
    /// For each model input column, its index in the schema's features.
    pub columns: Vec<u32>,
    /// `(mean, scale)` per model column when tapstream standardises the
    /// input; `None` when the model's graph scales its own input.
    pub standardize: Option<(Vec<f64>, Vec<f64>)>,
}

/// Threads per block of `process_batch` (whole warps).
pub const PROCESS_BLOCK: u32 = 128;

/// Lanes of the warp that walks one role of one long segment.
pub const WARP: u32 = 32;

/// Roles a long segment is split into (the kernel's `LONG_ROLES`).
pub const LONG_ROLES: u32 = 7;

/// Blocks of `process_batch` given to `n_long` long segments, for `warp`
/// lanes per warp (32 on a GPU, 1 when emulated): one warp per (role,
/// segment).
pub fn long_blocks(n_long: usize, warp: u32) -> u32 {
    let threads = u64::from(LONG_ROLES) * n_long as u64 * u64::from(warp);
    threads
        .div_ceil(u64::from(PROCESS_BLOCK))
        .min(u64::from(u32::MAX)) as u32
}

/// Compiler options every build of the kernels uses: no FMA contraction, so
/// floating point rounds exactly as the CPU extractor's does.
pub const NVRTC_OPTIONS: [&str; 2] = ["--fmad=false", "--std=c++17"];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{feature_index, FEATURES, NUM_FEATURES};

    /// The kernel's `IDX_*` constants are the schema's indices.
    #[test]
    fn kernel_feature_indices_match_the_schema() {
        let mut seen = 0;
        for line in FLOW_FEATURES_CU.lines() {
            let Some(rest) = line.strip_prefix("#define IDX_") else {
                continue;
            };
            let mut parts = rest.split_whitespace();
            let (Some(name), Some(value)) = (parts.next(), parts.next()) else {
                panic!("bad line {line}");
            };
            let value: usize = value.parse().unwrap();
            let (schema_name, _) = FEATURES[value];
            let normalized: String = schema_name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_uppercase()
                    } else {
                        '_'
                    }
                })
                .collect::<String>()
                .split('_')
                .filter(|p| !p.is_empty())
                .collect::<Vec<_>>()
                .join("_");
            assert_eq!(name, normalized, "IDX_{name} = {value}");
            assert_eq!(feature_index(schema_name), Some(value));
            seen += 1;
        }
        assert_eq!(seen, NUM_FEATURES);
        assert!(FLOW_FEATURES_CU.contains(&format!("#define NUM_FEATURES {NUM_FEATURES}")));
    }

    #[test]
    fn kernel_constants_match_the_host() {
        use records::*;
        for (name, value) in [
            ("ACC_STRIDE", ACC_STRIDE as u64),
            ("KIND_UPDATE", u64::from(KIND_UPDATE)),
            ("KIND_FIRST", u64::from(KIND_FIRST)),
            ("KIND_FINALIZE", u64::from(KIND_FINALIZE)),
            ("KIND_CONN", u64::from(KIND_CONN)),
            ("DIR_BACKWARD", u64::from(DIR_BACKWARD)),
            ("LONG_ROLES", u64::from(LONG_ROLES)),
            ("TS_WARP", u64::from(WARP)),
            ("FLAG_SCORE_COLUMN", u64::from(flag::FLAG_SCORE_COLUMN)),
        ] {
            let line = FLOW_FEATURES_CU
                .lines()
                .find(|l| l.starts_with(&format!("#define {name} ")))
                .unwrap_or_else(|| panic!("#define {name} missing"));
            let v = line.split_whitespace().nth(2).unwrap();
            let v = match v.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16).unwrap(),
                None => v.parse().unwrap(),
            };
            assert_eq!(v, value, "{name}");
        }
        for k in KERNELS {
            assert!(
                FLOW_FEATURES_CU.contains(&format!("TS_KERNEL void {k}(")),
                "{k}"
            );
        }
    }
}
