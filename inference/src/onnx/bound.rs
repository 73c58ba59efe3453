//! Scoring rows that already sit in memory the caller owns (a CUDA buffer
//! written by the feature kernels, or host memory), with the model's output
//! left where the session put it.
//!
//! Why: with the features on the GPU, [`Engine::infer`](crate::Engine::infer)
//! would need them on the host, and ONNX Runtime would copy them back to the
//! device and the output to the host again; through host copies the CUDA
//! provider was measured at a few M rows/s, far below what the device does.
//! Here the input is a tensor over the caller's pointer, bound with an
//! [`IoBinding`], and the output is bound to the same device, so nothing
//! crosses PCIe until the caller reads back what it needs (the flagged rows).
//!
//! Why the input is bound through ONNX Runtime's C API and not
//! `IoBinding::bind_input`: in ort 2.0.0-rc.15 that method clones every
//! tensor made over borrowed memory (`TensorRefMut::from_raw` included)
//! through an identity session before binding it, which is a device copy and
//! an allocation per batch, and the clone panics when it fails. ONNX
//! Runtime's own `BindInput` keeps a reference to a tensor that is already on
//! the device the session wants it on, and copies it only when it is not.
//!
//! The same code path runs with [`BoundMemory::Host`] on the CPU provider,
//! which is how it is tested on machines without a GPU.

use std::ffi::{CStr, CString};

use ort::memory::{AllocationDevice, AllocatorType, MemoryInfo, MemoryType};
use ort::session::{IoBinding, SessionOutputs};
use ort::value::TensorRefMut;
use ort::AsPointer;

use crate::contract::ModelContract;
use crate::error::InferenceError;
use crate::output::{read_output, Prediction};

/// Where bound input and output memory lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BoundMemory {
    /// Host memory (the CPU provider's tests, and host rows).
    Host,
    /// Device memory of CUDA GPU `ordinal` (the device ONNX Runtime's CUDA
    /// provider runs on; with cudarc's primary context they share it).
    Cuda {
        /// GPU ordinal.
        ordinal: i32,
    },
}

impl BoundMemory {
    fn memory_info(self) -> Result<MemoryInfo<'static>, ort::Error> {
        match self {
            BoundMemory::Host => MemoryInfo::new(
                AllocationDevice::CPU,
                0,
                AllocatorType::Device,
                MemoryType::Default,
            ),
            BoundMemory::Cuda { ordinal } => MemoryInfo::new(
                AllocationDevice::CUDA,
                ordinal,
                AllocatorType::Device,
                MemoryType::Default,
            ),
        }
    }
}

/// An engine's binding for one kind of memory: made on first use, reused
/// for every batch bound to that memory.
pub(super) struct Binding {
    pub(super) memory: BoundMemory,
    pub(super) info: MemoryInfo<'static>,
    pub(super) input: CString,
    pub(super) output: String,
    pub(super) binding: IoBinding,
}

impl std::fmt::Debug for Binding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Binding")
            .field("memory", &self.memory)
            .finish_non_exhaustive()
    }
}

impl Binding {
    pub(super) fn new(
        session: &ort::session::Session,
        memory: BoundMemory,
    ) -> Result<Self, InferenceError> {
        let info = memory
            .memory_info()
            .map_err(runtime("describing the bound memory"))?;
        let binding = session
            .create_binding()
            .map_err(runtime("creating an I/O binding"))?;
        // check_io made sure there is exactly one input and one output.
        let (Some(input), Some(output)) = (session.inputs().first(), session.outputs().first())
        else {
            return Err(InferenceError::BadInput {
                reason: "the model has no input or no output".to_owned(),
            });
        };
        let output = output.name().to_owned();
        let input = CString::new(input.name()).map_err(|_| InferenceError::BadInput {
            reason: "the input's name contains a NUL byte".to_owned(),
        })?;
        Ok(Binding {
            memory,
            info,
            input,
            output,
            binding,
        })
    }
}

pub(super) fn runtime(context: &'static str) -> impl Fn(ort::Error) -> InferenceError {
    move |source| InferenceError::Runtime { context, source }
}

/// ONNX Runtime's `BindInput` on `value` (see the module docs for why not
/// `IoBinding::bind_input`).
pub(super) fn bind_input_raw(
    binding: &mut IoBinding,
    name: &CStr,
    value: &TensorRefMut<'_, f32>,
) -> Result<(), ort::Error> {
    let api = ort::api();
    // SAFETY: both pointers come from live ort objects and `name` is a NUL
    // terminated string; ONNX Runtime copies the value handle (the tensor
    // object it refers to stays alive with the binding) and does not keep
    // `name`.
    let status = unsafe { (api.BindInput)(binding.ptr_mut(), name.as_ptr(), value.ptr()) };
    if status.0.is_null() {
        return Ok(());
    }
    // SAFETY: a non-null status is a valid OrtStatus until released, and its
    // message a NUL terminated string owned by it.
    let message = unsafe { CStr::from_ptr((api.GetErrorMessage)(status.0)) }
        .to_string_lossy()
        .into_owned();
    // SAFETY: released once, after its message was copied.
    unsafe { (api.ReleaseStatus)(status.0) };
    Err(ort::Error::new(message))
}

/// The model's output of one bound run, still where the session left it.
///
/// It borrows the engine: the output memory belongs to ONNX Runtime and is
/// valid until this value is dropped (the next run may reuse it).
pub struct BoundOutput<'a> {
    /// Keeps the output value (and so its memory) alive; `None` for zero
    /// rows, where nothing ran.
    pub(super) _outputs: Option<SessionOutputs<'a>>,
    pub(super) contract: &'a ModelContract,
    pub(super) memory: BoundMemory,
    pub(super) data: *const f32,
    pub(super) shape: Vec<i64>,
    pub(super) rows: usize,
    pub(super) columns: usize,
}

impl std::fmt::Debug for BoundOutput<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundOutput")
            .field("memory", &self.memory)
            .field("shape", &self.shape)
            .finish_non_exhaustive()
    }
}

impl BoundOutput<'_> {
    /// Where the output is.
    pub fn memory(&self) -> BoundMemory {
        self.memory
    }

    /// Address of the first output value (row-major `rows × columns` f32),
    /// in the memory [`memory`](Self::memory) names: for
    /// [`BoundMemory::Cuda`], a device address (`CUdeviceptr`). Null for
    /// zero rows. Valid while `self` lives.
    pub fn data_ptr(&self) -> *const f32 {
        self.data
    }

    /// The output's shape as the model returned it (checked against the
    /// contract: `[rows, labels]`, `[rows]` or `[rows, 1]`).
    pub fn shape(&self) -> &[i64] {
        &self.shape
    }

    /// Rows scored.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Values per row: one per label for probabilities, 1 for a score.
    pub fn columns(&self) -> usize {
        self.columns
    }

    /// Predictions of every row, as [`Engine::infer`](crate::Engine::infer)
    /// gives them, appended to `out`: only for an output in host memory
    /// ([`InferenceError::NotHostMemory`] otherwise).
    pub fn predictions(&self, out: &mut Vec<Prediction>) -> Result<(), InferenceError> {
        if self.memory != BoundMemory::Host {
            return Err(InferenceError::NotHostMemory {
                memory: format!("{:?}", self.memory),
            });
        }
        let len = self.rows * self.columns;
        let data: &[f32] = if len == 0 {
            &[]
        } else {
            // SAFETY: a host output of `len` f32 values (shape checked when
            // this value was made), alive while `self` is.
            unsafe { std::slice::from_raw_parts(self.data, len) }
        };
        read_output(self.contract, self.rows, &self.shape, data, out)
    }
}
