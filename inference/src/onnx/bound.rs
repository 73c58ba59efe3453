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

use std::ffi::{c_void, CStr, CString};

use ort::memory::{AllocationDevice, AllocatorType, MemoryInfo, MemoryType};
use ort::session::{IoBinding, SessionOutputs};
use ort::value::{Shape, TensorRefMut, TensorValueType};
use ort::AsPointer;

use super::{no_output, ExecutionProvider, OnnxEngine};
use crate::contract::ModelContract;
use crate::engine::BoundInference;
use crate::error::InferenceError;
use crate::output::output_columns;
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
    memory: BoundMemory,
    info: MemoryInfo<'static>,
    input: CString,
    output: String,
    binding: IoBinding,
}

impl std::fmt::Debug for Binding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Binding")
            .field("memory", &self.memory)
            .finish_non_exhaustive()
    }
}

impl Binding {
    fn new(session: &ort::session::Session, memory: BoundMemory) -> Result<Self, InferenceError> {
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

fn runtime(context: &'static str) -> impl Fn(ort::Error) -> InferenceError {
    move |source| InferenceError::Runtime { context, source }
}

/// ONNX Runtime's `BindInput` on `value` (see the module docs for why not
/// `IoBinding::bind_input`).
fn bind_input_raw(
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
    _outputs: Option<SessionOutputs<'a>>,
    contract: &'a ModelContract,
    memory: BoundMemory,
    data: *const f32,
    shape: Vec<i64>,
    rows: usize,
    columns: usize,
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

impl BoundInference for OnnxEngine {
    fn providers(&self) -> &[ExecutionProvider] {
        &self.providers
    }

    // Synchronisation: ONNX Runtime runs on its own CUDA stream. Every write
    // to `input` must be complete before this call (synchronise the stream
    // that wrote it); when it returns, the run has finished and the output
    // is complete (ONNX Runtime synchronises its stream at the end of a run
    // unless told not to, and this never tells it not to).
    unsafe fn infer_bound(
        &mut self,
        memory: BoundMemory,
        input: *const f32,
        len: usize,
        rows: usize,
    ) -> Result<BoundOutput<'_>, InferenceError> {
        let features = self.contract.num_features();
        let needed = rows
            .checked_mul(features)
            .filter(|&n| n <= len && (n == 0 || !input.is_null()))
            .ok_or(InferenceError::InputSize {
                rows,
                features,
                found: len,
            })?;
        let rows_i64 = i64::try_from(rows).map_err(|_| InferenceError::InputSize {
            rows,
            features,
            found: len,
        })?;
        if needed == 0 {
            let columns = match self.contract.output {
                crate::OutputKind::Probabilities => self.contract.labels.len(),
                crate::OutputKind::Score => 1,
            };
            return Ok(BoundOutput {
                _outputs: None,
                contract: &self.contract,
                memory,
                data: std::ptr::null(),
                shape: vec![0, columns as i64],
                rows: 0,
                columns,
            });
        }
        if self.binding.as_ref().map(|b| b.memory) != Some(memory) {
            self.binding = Some(Binding::new(&self.session, memory)?);
        }
        let Some(bound) = self.binding.as_mut() else {
            return Err(InferenceError::BadInput {
                reason: "no I/O binding".to_owned(),
            });
        };
        let shape = Shape::new([rows_i64, features as i64]);
        // SAFETY: the caller guarantees `needed` values at `input` in
        // `memory`; the tensor is only read by the run below.
        let tensor = unsafe {
            TensorRefMut::<f32>::from_raw(
                bound.info.clone(),
                input.cast_mut().cast::<c_void>(),
                shape,
            )
        }
        .map_err(runtime("creating the input tensor"))?;
        bind_input_raw(&mut bound.binding, &bound.input, &tensor)
            .map_err(runtime("binding the input"))?;
        // Bound afresh for every run: once allocated, a bound output keeps
        // its shape, and the next batch may have another number of rows (an
        // earlier run's output, if still referenced, keeps its own memory).
        bound
            .binding
            .bind_output_to_device(bound.output.as_str(), &bound.info)
            .map_err(runtime("binding the output to the device"))?;
        drop(tensor);
        let outputs = self
            .session
            .run_binding(&bound.binding)
            .map_err(runtime("running the model"))?;
        let value = outputs.values().next().ok_or_else(|| no_output(rows))?;
        let shape: Vec<i64> = value
            .dtype()
            .tensor_shape()
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        let Ok(tensor) = value.downcast::<TensorValueType<f32>>() else {
            return Err(InferenceError::OutputShape {
                rows,
                expected: "a float32 tensor".to_owned(),
                found: shape,
            });
        };
        let len = shape.iter().try_fold(1usize, |n, &d| {
            usize::try_from(d).ok().and_then(|d| n.checked_mul(d))
        });
        let columns = output_columns(&self.contract, rows, &shape, len.unwrap_or(usize::MAX))?;
        let data = tensor.data_ptr().cast::<f32>();
        Ok(BoundOutput {
            _outputs: Some(outputs),
            contract: &self.contract,
            memory,
            data,
            shape,
            rows,
            columns,
        })
    }
}
