//! What a GPU is and what its batches spent their time on: plain types the
//! CUDA executor and its stand-in share, so reports compile in every build.

/// What the device is, for logs and benchmark reports.
#[derive(Clone, Debug)]
pub struct DeviceInfo {
    /// Device name, e.g. "NVIDIA H100 80GB HBM3".
    pub name: String,
    /// Compute capability.
    pub compute_capability: (i32, i32),
    /// Driver version (e.g. 13000).
    pub driver_version: i32,
    /// Device memory in bytes.
    pub memory: usize,
}

impl std::fmt::Display for DeviceInfo {
    /// `NAME (compute X.Y, driver N, M MiB)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (compute {}.{}, driver {}, {} MiB)",
            self.name,
            self.compute_capability.0,
            self.compute_capability.1,
            self.driver_version,
            self.memory >> 20
        )
    }
}

/// The phases of a batch on the device, in stream order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Record columns copied to the device.
    Upload,
    /// Records put into per-segment order (build_perm, gather).
    Sort,
    /// Long segments walked, one warp per role.
    Long,
    /// Short segments applied and finalized, one thread each.
    Short,
    /// Long segments that ended finalized into rows.
    Finalize,
    /// The model-input matrix built from the rows (when asked for).
    ModelInput,
    /// Rows copied back to the host.
    Rows,
}

/// Every [`Phase`], in order.
pub const PHASES: [Phase; 7] = [
    Phase::Upload,
    Phase::Sort,
    Phase::Long,
    Phase::Short,
    Phase::Finalize,
    Phase::ModelInput,
    Phase::Rows,
];

impl Phase {
    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Upload => "upload",
            Phase::Sort => "sort",
            Phase::Long => "long segments",
            Phase::Short => "short segments",
            Phase::Finalize => "finalize long",
            Phase::ModelInput => "model input",
            Phase::Rows => "rows to host",
        }
    }
}

/// Device time per phase, summed over batches.
#[derive(Clone, Debug, Default)]
pub struct PhaseTimes {
    /// Batches timed.
    pub batches: u64,
    /// Milliseconds per phase, indexed like [`PHASES`].
    pub ms: [f64; 7],
}
