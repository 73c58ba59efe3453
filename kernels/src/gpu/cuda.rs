//! The CUDA executor: NVRTC compilation (cached), device buffers, two
//! streams so one batch's copies overlap the other's kernels, and the
//! accumulator array that stays on the device across batches.
//!
//! cudarc loads the driver and NVRTC dynamically; both presences are checked
//! before anything is created, so a machine without them gets
//! [`GpuError::Unavailable`] and never a panic.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::driver::{
    result as drv, CudaContext, CudaEvent, CudaFunction, CudaSlice, CudaStream, DevicePtrMut,
    LaunchConfig, PushKernelArg,
};
use cudarc::nvrtc::{CompileOptions, Ptx};

pub use super::device::{DeviceInfo, Phase, PhaseTimes, PHASES};
use super::flag::{collect_flagged, Flagged, ScoreLayout};
use super::records::{BatchExecutor, Column, Columns, GpuError, RecordBatch, ACC_STRIDE};
use super::ModelInput;
use super::{FLOW_FEATURES_CU, FLOW_FEATURES_NAME, NVRTC_OPTIONS};
use crate::schema::NUM_FEATURES;

fn driver_err(what: &'static str) -> impl Fn(cudarc::driver::DriverError) -> GpuError {
    move |e| GpuError::Driver {
        what,
        message: e.to_string(),
    }
}

/// True when both the CUDA driver library and NVRTC can be loaded.
pub fn libraries_present() -> bool {
    // SAFETY: only tries to dlopen the libraries; no symbol is called.
    unsafe { cudarc::driver::sys::is_culib_present() && cudarc::nvrtc::sys::is_culib_present() }
}

/// The virtual architecture NVRTC targets for a compute capability (PTX is
/// JIT-compiled by the driver for the exact GPU).
pub fn arch_for(major: i32, minor: i32) -> &'static str {
    match (major, minor) {
        (m, _) if m >= 10 => "compute_100",
        (9, _) => "compute_90",
        (8, 9) => "compute_89",
        (8, 6..=8) => "compute_86",
        (8, _) => "compute_80",
        (7, 5) => "compute_75",
        _ => "compute_70",
    }
}

/// Compiles the kernels to PTX for `arch` (needs NVRTC, not a GPU).
pub fn compile_ptx(arch: &'static str) -> Result<Ptx, GpuError> {
    // SAFETY: only tries to dlopen the library.
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err(GpuError::Unavailable(
            "libnvrtc not found (pip install nvidia-cuda-nvrtc==13.0.88 and add its lib directory to LD_LIBRARY_PATH)".into(),
        ));
    }
    let opts = CompileOptions {
        arch: Some(arch),
        options: NVRTC_OPTIONS.iter().map(|s| s.to_string()).collect(),
        name: Some(FLOW_FEATURES_NAME.to_string()),
        ..Default::default()
    };
    cudarc::nvrtc::compile_ptx_with_opts(FLOW_FEATURES_CU, opts).map_err(|e| GpuError::Compile {
        name: FLOW_FEATURES_NAME,
        log: e.to_string(),
    })
}

/// PTX text compiled once per process per architecture, optionally also
/// cached on disk keyed by source, architecture and driver version.
fn cached_ptx(arch: &'static str, driver: i32, disk: Option<&Path>) -> Result<String, GpuError> {
    static MEMORY: OnceLock<Mutex<Vec<(&'static str, String)>>> = OnceLock::new();
    let memory = MEMORY.get_or_init(|| Mutex::new(Vec::new()));
    if let Ok(m) = memory.lock() {
        if let Some((_, ptx)) = m.iter().find(|(a, _)| *a == arch) {
            return Ok(ptx.clone());
        }
    }
    let file = disk.map(|dir| dir.join(format!("{:016x}.ptx", cache_key(arch, driver))));
    let from_disk = file.as_ref().and_then(|f| std::fs::read_to_string(f).ok());
    let ptx = match from_disk {
        Some(p) => p,
        None => {
            let p = compile_ptx(arch)?.to_src();
            if let Some(f) = &file {
                // A cache that cannot be written only costs a recompile.
                if let Some(dir) = f.parent() {
                    let _ = std::fs::create_dir_all(dir);
                }
                let _ = std::fs::write(f, &p);
            }
            p
        }
    };
    if let Ok(mut m) = memory.lock() {
        m.push((arch, ptx.clone()));
    }
    Ok(ptx)
}

/// FNV-1a over the source, options, architecture and driver version: a cache
/// key, not a security boundary.
fn cache_key(arch: &str, driver: i32) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    feed(FLOW_FEATURES_CU.as_bytes());
    for o in NVRTC_OPTIONS {
        feed(o.as_bytes());
    }
    feed(arch.as_bytes());
    feed(&driver.to_le_bytes());
    h
}

/// A CUDA context with the kernels loaded.
#[derive(Clone)]
pub struct CudaDevice {
    ctx: Arc<CudaContext>,
    build_perm: CudaFunction,
    gather: CudaFunction,
    process: CudaFunction,
    finalize_long: CudaFunction,
    model_input: CudaFunction,
    flag_scores: CudaFunction,
    info: DeviceInfo,
}

impl CudaDevice {
    /// Opens GPU `ordinal` and loads the kernels, compiling them with NVRTC
    /// (or taking them from the cache). Never panics without a GPU.
    pub fn open(ordinal: usize, ptx_cache: Option<&Path>) -> Result<Self, GpuError> {
        // SAFETY: only tries to dlopen the libraries.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err(GpuError::Unavailable(
                "the CUDA driver library (libcuda.so) was not found".into(),
            ));
        }
        let count = CudaContext::device_count().map_err(driver_err("counting devices"))?;
        if count <= 0 || ordinal >= count as usize {
            return Err(GpuError::Unavailable(format!(
                "GPU {ordinal} requested, {count} present"
            )));
        }
        let ctx = CudaContext::new(ordinal).map_err(driver_err("creating a context"))?;
        let (major, minor) = ctx
            .compute_capability()
            .map_err(driver_err("reading the compute capability"))?;
        let mut driver_version: std::ffi::c_int = 0;
        // SAFETY: the driver library is loaded (a context exists) and the
        // call only writes the integer it is given.
        let _ = unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut driver_version) };
        let info = DeviceInfo {
            name: ctx.name().unwrap_or_else(|_| "unknown GPU".into()),
            compute_capability: (major, minor),
            driver_version,
            memory: ctx.total_mem().unwrap_or(0),
        };
        let ptx = cached_ptx(arch_for(major, minor), driver_version, ptx_cache)?;
        let module = ctx
            .load_module(Ptx::from_src(ptx))
            .map_err(driver_err("loading the kernels"))?;
        let build_perm = module
            .load_function("build_perm")
            .map_err(driver_err("finding build_perm"))?;
        let gather = module
            .load_function("gather")
            .map_err(driver_err("finding gather"))?;
        let process = module
            .load_function("process_batch")
            .map_err(driver_err("finding process_batch"))?;
        let finalize_long = module
            .load_function("finalize_long")
            .map_err(driver_err("finding finalize_long"))?;
        let model_input = module
            .load_function("model_input")
            .map_err(driver_err("finding model_input"))?;
        let flag_scores = module
            .load_function("flag_scores")
            .map_err(driver_err("finding flag_scores"))?;
        Ok(CudaDevice {
            ctx,
            build_perm,
            gather,
            process,
            finalize_long,
            model_input,
            flag_scores,
            info,
        })
    }

    /// What the device is.
    pub fn info(&self) -> &DeviceInfo {
        &self.info
    }

    /// Columns for one batch in pinned host memory (no device buffers).
    pub fn pinned_columns(&self, cap: usize, fin_cap: usize) -> Result<Columns, GpuError> {
        pinned_columns(&self.ctx, cap.max(1), fin_cap.max(1))
    }

    /// The device's ordinal (as ONNX Runtime's CUDA provider numbers it).
    pub fn ordinal(&self) -> usize {
        self.ctx.ordinal()
    }

    /// A [`ScoreFlagger`] on this device for batches of up to `rows` rows
    /// (it grows for larger ones).
    pub fn flagger(&self, rows: usize) -> Result<ScoreFlagger, GpuError> {
        ScoreFlagger::new(self.clone(), rows)
    }

    /// `values` copied to this device (and the copy waited for): rows a
    /// check or benchmark starts from when the features are already there.
    pub fn upload_f32(&self, values: &[f32]) -> Result<DeviceF32, GpuError> {
        let stream = self
            .ctx
            .new_stream()
            .map_err(driver_err("creating a stream"))?;
        let data = stream
            .clone_htod(values)
            .map_err(driver_err("copying values to the device"))?;
        stream
            .synchronize()
            .map_err(driver_err("waiting for the copy to the device"))?;
        Ok(DeviceF32 { stream, data })
    }

    /// An executor on this device for batches of up to `cap` records.
    pub fn executor(&self, cap: usize, activity_timeout_us: i64) -> Result<CudaExecutor, GpuError> {
        CudaExecutor::new(self.clone(), cap, activity_timeout_us)
    }
}

/// Device buffers of one in-flight batch.
struct Set {
    stream: Arc<CudaStream>,
    seg: CudaSlice<u32>,
    rank: CudaSlice<u32>,
    ts: CudaSlice<i64>,
    payload: CudaSlice<u32>,
    header: CudaSlice<u16>,
    window: CudaSlice<u16>,
    flags: CudaSlice<u8>,
    kind: CudaSlice<u8>,
    seg_start: CudaSlice<u32>,
    seg_slot: CudaSlice<u32>,
    fin_meta: CudaSlice<u64>,
    short_segs: CudaSlice<u32>,
    long_segs: CudaSlice<u32>,
    perm: CudaSlice<u32>,
    s_ts: CudaSlice<i64>,
    s_payload: CudaSlice<u32>,
    s_header: CudaSlice<u16>,
    s_window: CudaSlice<u16>,
    s_flags: CudaSlice<u8>,
    s_kind: CudaSlice<u8>,
    rows: CudaSlice<f64>,
    host_rows: Column<f64>,
    done: CudaEvent,
}

/// Feature rows of pinned host memory a set starts with.
const INITIAL_HOST_ROWS: usize = 8192;

/// Runs record batches on a GPU; see the module docs.
pub struct CudaExecutor {
    dev: CudaDevice,
    sets: [Set; 2],
    next: usize,
    pending: VecDeque<(usize, usize)>,
    accs: CudaSlice<u8>,
    acc_slots: usize,
    activity_timeout_us: i64,
    cap: usize,
    fin_cap: usize,
    copy_rows: bool,
    profile: Option<Profile>,
    model: Option<DeviceModel>,
    /// Set and finalized rows of the batch finished last.
    last_finished: Option<(usize, usize)>,
}

/// The model-input matrix the device builds from each batch's rows.
struct DeviceModel {
    cols: CudaSlice<u32>,
    mean: CudaSlice<f64>,
    scale: CudaSlice<f64>,
    external: u32,
    width: usize,
    /// Per set: the device matrix, and its pinned copy when copied back.
    inputs: [CudaSlice<f32>; 2],
    host: [Option<Column<f32>>; 2],
    copy_back: bool,
    /// Inputs of finished batches, in row order (when copied back).
    finished: Vec<f32>,
}

impl CudaExecutor {
    fn new(dev: CudaDevice, cap: usize, activity_timeout_us: i64) -> Result<Self, GpuError> {
        let cap = cap.max(2);
        let fin_cap = super::records::fin_capacity(cap);
        let mk = |dev: &CudaDevice| -> Result<Set, GpuError> {
            let stream = dev
                .ctx
                .new_stream()
                .map_err(driver_err("creating a stream"))?;
            let e = driver_err("allocating device buffers");
            // Grown on demand (see submit): pinning memory is slow, and most
            // batches end far fewer flows than they could.
            let host_rows =
                pinned::<f64>(&dev.ctx, fin_cap.min(INITIAL_HOST_ROWS) * NUM_FEATURES, 0)?;
            Ok(Set {
                seg: stream.alloc_zeros(cap).map_err(&e)?,
                rank: stream.alloc_zeros(cap).map_err(&e)?,
                ts: stream.alloc_zeros(cap).map_err(&e)?,
                payload: stream.alloc_zeros(cap).map_err(&e)?,
                header: stream.alloc_zeros(cap).map_err(&e)?,
                window: stream.alloc_zeros(cap).map_err(&e)?,
                flags: stream.alloc_zeros(cap).map_err(&e)?,
                kind: stream.alloc_zeros(cap).map_err(&e)?,
                seg_start: stream.alloc_zeros(cap + 1).map_err(&e)?,
                seg_slot: stream.alloc_zeros(cap).map_err(&e)?,
                fin_meta: stream.alloc_zeros(fin_cap).map_err(&e)?,
                short_segs: stream.alloc_zeros(cap).map_err(&e)?,
                long_segs: stream.alloc_zeros(cap).map_err(&e)?,
                perm: stream.alloc_zeros(cap).map_err(&e)?,
                s_ts: stream.alloc_zeros(cap).map_err(&e)?,
                s_payload: stream.alloc_zeros(cap).map_err(&e)?,
                s_header: stream.alloc_zeros(cap).map_err(&e)?,
                s_window: stream.alloc_zeros(cap).map_err(&e)?,
                s_flags: stream.alloc_zeros(cap).map_err(&e)?,
                s_kind: stream.alloc_zeros(cap).map_err(&e)?,
                rows: stream.alloc_zeros(fin_cap * NUM_FEATURES).map_err(&e)?,
                host_rows,
                done: dev
                    .ctx
                    .new_event(None)
                    .map_err(driver_err("creating an event"))?,
                stream,
            })
        };
        let sets = [mk(&dev)?, mk(&dev)?];
        let accs = sets[0]
            .stream
            .alloc_zeros::<u8>(ACC_STRIDE * 4096)
            .map_err(driver_err("allocating accumulators"))?;
        Ok(CudaExecutor {
            dev,
            sets,
            next: 0,
            pending: VecDeque::with_capacity(2),
            accs,
            acc_slots: 4096,
            activity_timeout_us,
            cap,
            fin_cap,
            copy_rows: true,
            profile: None,
            model: None,
            last_finished: None,
        })
    }

    /// The device.
    pub fn device(&self) -> &CudaDevice {
        &self.dev
    }

    /// Whether finished rows are copied back to the host (the default). A
    /// GPU inference engine reading the device feature matrix turns it off;
    /// [`finish`](BatchExecutor::finish) then returns no rows.
    pub fn set_copy_rows(&mut self, copy: bool) {
        self.copy_rows = copy;
    }

    /// Grows the accumulator array (keeping its contents) to hold `slots`.
    fn ensure_slots(&mut self, slots: usize, stream: &Arc<CudaStream>) -> Result<(), GpuError> {
        if slots <= self.acc_slots {
            return Ok(());
        }
        let mut n = self.acc_slots.max(1);
        while n < slots {
            n *= 2;
        }
        // Rare (the array doubles): let both streams drain so the old buffer
        // is not freed under a kernel still using it.
        for set in &self.sets {
            set.stream
                .synchronize()
                .map_err(driver_err("waiting before growing accumulators"))?;
        }
        let mut bigger = stream
            .alloc_zeros::<u8>(n * ACC_STRIDE)
            .map_err(driver_err("growing accumulators"))?;
        {
            let mut view = bigger.slice_mut(0..self.acc_slots * ACC_STRIDE);
            stream
                .memcpy_dtod(&self.accs, &mut view)
                .map_err(driver_err("copying accumulators"))?;
        }
        self.accs = bigger;
        self.acc_slots = n;
        Ok(())
    }
}

/// Pinned host memory as a [`Column`] (`flags` 0: ordinary cached memory).
fn pinned<
    T: Copy + cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits + Send + 'static,
>(
    ctx: &Arc<CudaContext>,
    len: usize,
    flags: u32,
) -> Result<Column<T>, GpuError> {
    let len = len.max(1);
    // SAFETY: the memory is uninitialized; columns are written before the
    // device reads them, and only the written prefix is ever copied or read.
    let mut slice = unsafe { ctx.alloc_pinned_with_flags::<T>(len, flags) }
        .map_err(driver_err("allocating pinned host memory"))?;
    let ptr = slice
        .as_mut_ptr()
        .map_err(driver_err("mapping pinned host memory"))?;
    // SAFETY: `ptr` is valid for `len` elements while `slice` (moved into the
    // column as its owner) lives; the column is its only user.
    Ok(unsafe { Column::from_raw(ptr, len, Box::new(slice)) })
}

/// Pinned columns for a batch of `cap` records (`fin_cap` finalizes), in
/// ordinary cached pinned memory: the host fills several columns at once,
/// which would thrash write-combining buffers.
fn pinned_columns(ctx: &Arc<CudaContext>, cap: usize, fin_cap: usize) -> Result<Columns, GpuError> {
    Ok(Columns {
        seg: pinned(ctx, cap, 0)?,
        rank: pinned(ctx, cap, 0)?,
        ts: pinned(ctx, cap, 0)?,
        payload: pinned(ctx, cap, 0)?,
        header: pinned(ctx, cap, 0)?,
        window: pinned(ctx, cap, 0)?,
        flags: pinned(ctx, cap, 0)?,
        kind: pinned(ctx, cap, 0)?,
        seg_start: pinned(ctx, cap + 1, 0)?,
        seg_slot: pinned(ctx, cap, 0)?,
        fin_meta: pinned(ctx, fin_cap, 0)?,
        short_segs: pinned(ctx, cap, 0)?,
        long_segs: pinned(ctx, cap, 0)?,
    })
}

/// Async copy of the first `n` elements of a pinned column to the device.
fn upload<T: Copy>(
    col: &Column<T>,
    n: usize,
    dst: &mut CudaSlice<T>,
    stream: &CudaStream,
) -> Result<(), GpuError> {
    if n == 0 {
        return Ok(());
    }
    let src = col.as_slice(n);
    let (ptr, _guard) = dst.device_ptr_mut(stream);
    // SAFETY: `src` is pinned memory that is not written again until this
    // batch's completion event fired (the shard keeps the batch in flight);
    // `dst` holds at least `n` elements (both sized to the batch capacity).
    unsafe { drv::memcpy_htod_async(ptr, src, stream.cu_stream()) }
        .map_err(driver_err("copying records to the device"))
}

fn blocks(n: usize, threads: u32) -> u32 {
    (n as u64)
        .div_ceil(u64::from(threads))
        .min(u64::from(u32::MAX)) as u32
}

/// The sizes of a submitted batch, capped at the executor's.
#[derive(Clone, Copy)]
struct BatchSizes {
    /// Records.
    n: usize,
    /// Finalized flows (rows).
    nf: usize,
    /// Short and long segments.
    n_short: usize,
    n_long: usize,
}

// `k` is a double buffer's index (0 or 1) and every per-buffer array has
// two entries; a profile has one timing event more than it has phases.
#[allow(clippy::indexing_slicing)]
impl BatchExecutor for CudaExecutor {
    fn columns(&mut self, cap: usize, fin_cap: usize) -> Result<Columns, GpuError> {
        let cap = cap.min(self.cap).max(1);
        let fin_cap = fin_cap.min(self.fin_cap).max(1);
        pinned_columns(&self.dev.ctx, cap, fin_cap)
    }

    fn submit(&mut self, batch: &RecordBatch) -> Result<(), GpuError> {
        // The finished batch's buffers may be reused from here on.
        self.last_finished = None;
        let k = self.next;
        self.next ^= 1;
        debug_assert!(batch.is_sealed());
        let stream = self.sets[k].stream.clone();
        self.ensure_slots(batch.slots_needed, &stream)?;
        self.mark(k, None)?;
        let sizes = self.upload_batch(k, batch, &stream)?;
        self.mark(k, Some(Phase::Upload))?;
        self.launch_sort(k, sizes.n, &stream)?;
        self.mark(k, Some(Phase::Sort))?;
        self.launch_process(k, sizes.n_short, sizes.n_long, &stream)?;
        self.launch_finalize_long(k, sizes.n_long, &stream)?;
        self.mark(k, Some(Phase::Finalize))?;
        self.launch_model_input(k, sizes.nf, &stream)?;
        self.mark(k, Some(Phase::ModelInput))?;
        self.copy_rows_back(k, sizes.nf, &stream)?;
        self.mark(k, Some(Phase::Rows))?;
        let set = &mut self.sets[k];
        set.done
            .record(&stream)
            .map_err(driver_err("recording an event"))?;
        self.pending.push_back((k, sizes.nf));
        Ok(())
    }

    fn finish(&mut self, rows: &mut Vec<f64>) -> Result<(), GpuError> {
        let Some((k, nf)) = self.pending.pop_front() else {
            return Ok(());
        };
        let set = &self.sets[k];
        set.done
            .synchronize()
            .map_err(driver_err("waiting for a batch"))?;
        self.account(k)?;
        self.collect_inputs(k, nf);
        self.last_finished = Some((k, nf));
        let set = &self.sets[k];
        if self.copy_rows {
            rows.extend_from_slice(set.host_rows.as_slice(nf * NUM_FEATURES));
        }
        Ok(())
    }
}

// `k` is a double buffer's index (0 or 1) and every per-buffer array has
// two entries; a profile has one timing event more than it has phases.
#[allow(clippy::indexing_slicing)]
impl CudaExecutor {
    /// Copies batch `batch`'s columns to set `k`'s device buffers; returns
    /// its sizes, capped at the executor's.
    fn upload_batch(
        &mut self,
        k: usize,
        batch: &RecordBatch,
        stream: &Arc<CudaStream>,
    ) -> Result<BatchSizes, GpuError> {
        let sizes = BatchSizes {
            n: batch.len().min(self.cap),
            nf: batch.finalized().min(self.fin_cap),
            n_short: batch.short_segments().min(self.cap),
            n_long: batch.long_segments().min(self.cap),
        };
        let (n, segs) = (sizes.n, batch.segments().min(self.cap));
        let c = &batch.cols;
        let set = &mut self.sets[k];
        upload(&c.seg, n, &mut set.seg, stream)?;
        upload(&c.rank, n, &mut set.rank, stream)?;
        upload(&c.ts, n, &mut set.ts, stream)?;
        upload(&c.payload, n, &mut set.payload, stream)?;
        upload(&c.header, n, &mut set.header, stream)?;
        upload(&c.window, n, &mut set.window, stream)?;
        upload(&c.flags, n, &mut set.flags, stream)?;
        upload(&c.kind, n, &mut set.kind, stream)?;
        upload(&c.seg_start, segs + 1, &mut set.seg_start, stream)?;
        upload(&c.seg_slot, segs, &mut set.seg_slot, stream)?;
        upload(&c.fin_meta, sizes.nf, &mut set.fin_meta, stream)?;
        upload(&c.short_segs, sizes.n_short, &mut set.short_segs, stream)?;
        upload(&c.long_segs, sizes.n_long, &mut set.long_segs, stream)?;
        Ok(sizes)
    }

    /// Puts set `k`'s `n` records into per-segment order on the device
    /// (`build_perm`, `gather`).
    fn launch_sort(
        &mut self,
        k: usize,
        n: usize,
        stream: &Arc<CudaStream>,
    ) -> Result<(), GpuError> {
        let set = &mut self.sets[k];
        if n > 0 {
            let n32 = n as u32;
            let mut b = stream.launch_builder(&self.dev.build_perm);
            b.arg(&set.seg)
                .arg(&set.rank)
                .arg(&set.seg_start)
                .arg(&mut set.perm)
                .arg(&n32);
            let cfg = LaunchConfig {
                grid_dim: (blocks(n, 256), 1, 1),
                block_dim: (256, 1, 1),
                shared_mem_bytes: 0,
            };
            // SAFETY: build_perm(seg, rank, seg_start, perm, n) reads n
            // records and writes perm at positions < n (the host's segment
            // starts and ranks form a permutation of 0..n).
            unsafe { b.launch(cfg) }.map_err(driver_err("launching build_perm"))?;
            let mut b = stream.launch_builder(&self.dev.gather);
            b.arg(&set.perm)
                .arg(&n32)
                .arg(&set.ts)
                .arg(&set.payload)
                .arg(&set.header)
                .arg(&set.window)
                .arg(&set.flags)
                .arg(&set.kind)
                .arg(&mut set.s_ts)
                .arg(&mut set.s_payload)
                .arg(&mut set.s_header)
                .arg(&mut set.s_window)
                .arg(&mut set.s_flags)
                .arg(&mut set.s_kind);
            // SAFETY: gather reads perm[j] < n and the record columns at
            // those indices, and writes the sorted columns at j < n.
            unsafe { b.launch(cfg) }.map_err(driver_err("launching gather"))?;
        }
        Ok(())
    }

    /// Runs `process_batch` over set `k`'s short and long segments: in one
    /// launch, or (profiling) in two, so each is timed.
    fn launch_process(
        &mut self,
        k: usize,
        n_short: usize,
        n_long: usize,
        stream: &Arc<CudaStream>,
    ) -> Result<(), GpuError> {
        let long_blocks = super::long_blocks(n_long, super::WARP);
        let short_blocks = blocks(n_short, super::PROCESS_BLOCK);
        // Profiling launches the long and the short segments apart, to time
        // each; otherwise one launch runs both side by side.
        let launches: &[(u32, u32)] = if self.profile.is_some() {
            &[(long_blocks, 0), (0, short_blocks)]
        } else {
            &[(long_blocks, short_blocks)]
        };
        for (i, &(lb, sb)) in launches.iter().enumerate() {
            if lb + sb > 0 {
                let set = &mut self.sets[k];
                let (n_short32, n_long32) = (n_short as u32, n_long as u32);
                let mut b = stream.launch_builder(&self.dev.process);
                b.arg(&mut self.accs)
                    .arg(&set.seg_start)
                    .arg(&set.seg_slot)
                    .arg(&set.short_segs)
                    .arg(if sb > 0 { &n_short32 } else { &0u32 })
                    .arg(&set.long_segs)
                    .arg(&n_long32)
                    .arg(&lb)
                    .arg(&set.s_ts)
                    .arg(&set.s_payload)
                    .arg(&set.s_header)
                    .arg(&set.s_window)
                    .arg(&set.s_flags)
                    .arg(&set.s_kind)
                    .arg(&set.fin_meta)
                    .arg(&self.activity_timeout_us)
                    .arg(&mut set.rows);
                let cfg = LaunchConfig {
                    grid_dim: (lb + sb, 1, 1),
                    block_dim: (super::PROCESS_BLOCK, 1, 1),
                    shared_mem_bytes: 0,
                };
                // SAFETY: process_batch touches the accumulators of the slots
                // named by seg_slot (all < acc_slots, ensured above): one warp
                // per (role, long segment) writes only its role's part, one
                // thread per short segment its whole slot (slots are distinct
                // within a batch); it reads the sorted records of each
                // segment and writes rows < nf (finalize records carry row
                // indices < nf).
                unsafe { b.launch(cfg) }.map_err(driver_err("launching process_batch"))?;
            }
            self.mark(k, Some(if i == 0 { Phase::Long } else { Phase::Short }))?;
        }
        Ok(())
    }

    /// Finalizes the long segments of set `k` that ended into rows.
    fn launch_finalize_long(
        &mut self,
        k: usize,
        n_long: usize,
        stream: &Arc<CudaStream>,
    ) -> Result<(), GpuError> {
        let set = &mut self.sets[k];
        if n_long > 0 {
            let n32 = n_long as u32;
            let mut b = stream.launch_builder(&self.dev.finalize_long);
            b.arg(&self.accs)
                .arg(&set.seg_start)
                .arg(&set.seg_slot)
                .arg(&set.long_segs)
                .arg(&n32)
                .arg(&set.s_kind)
                .arg(&set.s_payload)
                .arg(&set.fin_meta)
                .arg(&mut set.rows);
            let cfg = LaunchConfig {
                grid_dim: (blocks(n_long, 128), 1, 1),
                block_dim: (128, 1, 1),
                shared_mem_bytes: 0,
            };
            // SAFETY: reads the accumulators the long warps stored (same
            // stream, so after it) and writes rows < nf.
            unsafe { b.launch(cfg) }.map_err(driver_err("launching finalize_long"))?;
        }
        Ok(())
    }

    /// Copies set `k`'s `nf` rows to its pinned host rows (when rows are
    /// copied back), growing them when needed.
    fn copy_rows_back(
        &mut self,
        k: usize,
        nf: usize,
        stream: &Arc<CudaStream>,
    ) -> Result<(), GpuError> {
        let set = &mut self.sets[k];
        if nf > 0 && self.copy_rows {
            let len = nf * NUM_FEATURES;
            if set.host_rows.capacity() < len {
                // The set's previous batch has finished (at most one batch per
                // set is in flight), so its pinned rows can be replaced.
                let grown = (set.host_rows.capacity() * 2)
                    .max(len)
                    .min(self.fin_cap * NUM_FEATURES);
                set.host_rows = pinned::<f64>(&self.dev.ctx, grown, 0)?;
            }
            let (ptr, _guard) = set.rows.device_ptr_mut(stream);
            let dst = set.host_rows.as_slice(len);
            // SAFETY: host_rows is pinned, holds at least `len` values, and is read by
            // the host only after `done` fires.
            unsafe {
                drv::memcpy_dtoh_async(
                    std::slice::from_raw_parts_mut(dst.as_ptr() as *mut f64, dst.len()),
                    ptr,
                    stream.cu_stream(),
                )
            }
            .map_err(driver_err("copying rows to the host"))?;
        }
        Ok(())
    }

    /// Waits for the oldest submitted batch without reading its rows back
    /// into host vectors (the rows were still copied to pinned memory when
    /// [`set_copy_rows`](Self::set_copy_rows) is on): for benchmarks of the
    /// device stage alone.
    pub fn wait_oldest(&mut self) -> Result<(), GpuError> {
        let Some((k, nf)) = self.pending.pop_front() else {
            return Ok(());
        };
        self.sets[k]
            .done
            .synchronize()
            .map_err(driver_err("waiting for a batch"))?;
        self.account(k)?;
        self.collect_inputs(k, nf);
        self.last_finished = Some((k, nf));
        Ok(())
    }

    /// From now on, also builds each batch's model-input matrix on the
    /// device (the model's columns, standardised when `input` says so, as
    /// `f32`; see the `model_input` kernel), and with `copy_back` copies it
    /// to the host too, for [`take_model_inputs`](Self::take_model_inputs).
    /// `None` stops building it. Call with nothing in flight.
    pub fn set_model_input(
        &mut self,
        input: Option<&ModelInput>,
        copy_back: bool,
    ) -> Result<(), GpuError> {
        let Some(input) = input else {
            self.model = None;
            return Ok(());
        };
        let width = input.columns.len();
        if width == 0 || input.columns.iter().any(|&c| c as usize >= NUM_FEATURES) {
            return Err(GpuError::Unavailable(
                "a model input needs at least one column, each a schema feature".into(),
            ));
        }
        let (mean, scale, external) = match &input.standardize {
            Some((m, s)) if m.len() == width && s.len() == width => (m.clone(), s.clone(), 1u32),
            Some(_) => {
                return Err(GpuError::Unavailable(
                    "a model input's scaler needs one mean and one scale per column".into(),
                ))
            }
            None => (vec![0.0; width], vec![1.0; width], 0u32),
        };
        let stream = self.sets[0].stream.clone();
        let e = driver_err("allocating the model input");
        let cols = stream.clone_htod(&input.columns).map_err(&e)?;
        let mean = stream.clone_htod(&mean).map_err(&e)?;
        let scale = stream.clone_htod(&scale).map_err(&e)?;
        let inputs = [
            stream
                .alloc_zeros::<f32>(self.fin_cap * width)
                .map_err(&e)?,
            stream
                .alloc_zeros::<f32>(self.fin_cap * width)
                .map_err(&e)?,
        ];
        stream
            .synchronize()
            .map_err(driver_err("uploading the model input"))?;
        self.model = Some(DeviceModel {
            cols,
            mean,
            scale,
            external,
            width,
            inputs,
            host: [None, None],
            copy_back,
            finished: Vec::new(),
        });
        Ok(())
    }

    /// The device model-input matrix of the batch that
    /// [`finish`](BatchExecutor::finish) or [`wait_oldest`](Self::wait_oldest)
    /// last returned: `(device address, rows, width)`, row-major `f32`, in
    /// the device's primary context; `None` without a model input or before
    /// any batch finished.
    ///
    /// The matrix is complete (the batch's completion event fired) and stays
    /// valid until the next [`submit`](BatchExecutor::submit), which reuses
    /// its buffer: score it before submitting again.
    pub fn finished_model_input(&self) -> Option<(u64, usize, usize)> {
        let m = self.model.as_ref()?;
        let (k, rows) = self.last_finished?;
        let (ptr, _sync) =
            cudarc::driver::DevicePtr::device_ptr(&m.inputs[k], &self.sets[k].stream);
        Some((ptr, rows, m.width))
    }

    /// Model inputs of the batches finished so far (row-major, one row per
    /// finalized flow, in row order), when copied back; empties the buffer.
    pub fn take_model_inputs(&mut self) -> Vec<f32> {
        self.model
            .as_mut()
            .map(|m| std::mem::take(&mut m.finished))
            .unwrap_or_default()
    }

    fn launch_model_input(
        &mut self,
        k: usize,
        nf: usize,
        stream: &Arc<CudaStream>,
    ) -> Result<(), GpuError> {
        let Some(m) = self.model.as_mut() else {
            return Ok(());
        };
        if nf == 0 {
            return Ok(());
        }
        let total = nf * m.width;
        let (n32, w32) = (nf as u32, m.width as u32);
        let set = &self.sets[k];
        let mut b = stream.launch_builder(&self.dev.model_input);
        b.arg(&set.rows)
            .arg(&n32)
            .arg(&m.cols)
            .arg(&w32)
            .arg(&m.mean)
            .arg(&m.scale)
            .arg(&m.external)
            .arg(&mut m.inputs[k]);
        let cfg = LaunchConfig {
            grid_dim: (blocks(total, 256), 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: reads nf rows of NUM_FEATURES values (rows holds fin_cap ≥
        // nf), `width` columns (each < NUM_FEATURES, checked), mean and scale
        // of `width` values, and writes nf × width < fin_cap × width values.
        unsafe { b.launch(cfg) }.map_err(driver_err("launching model_input"))?;
        if m.copy_back {
            let host = match &mut m.host[k] {
                Some(h) if h.capacity() >= total => h,
                slot => {
                    // The set's previous batch has finished; grow its buffer.
                    let cap = total
                        .max(INITIAL_HOST_ROWS * m.width)
                        .min(self.fin_cap * m.width);
                    slot.insert(pinned::<f32>(&self.dev.ctx, cap, 0)?)
                }
            };
            let (ptr, _guard) = m.inputs[k].device_ptr_mut(stream);
            let dst = host.as_slice(total);
            // SAFETY: `host` is pinned, holds at least `total` values, and is
            // read by the host only after the batch's `done` event fired.
            unsafe {
                drv::memcpy_dtoh_async(
                    std::slice::from_raw_parts_mut(dst.as_ptr() as *mut f32, dst.len()),
                    ptr,
                    stream.cu_stream(),
                )
            }
            .map_err(driver_err("copying the model input to the host"))?;
        }
        Ok(())
    }

    /// Keeps the finished batch's copied-back model input.
    fn collect_inputs(&mut self, k: usize, nf: usize) {
        if let Some(m) = self.model.as_mut() {
            if let (true, Some(h)) = (m.copy_back, &m.host[k]) {
                m.finished.extend_from_slice(h.as_slice(nf * m.width));
            }
        }
    }

    /// Times every phase of every batch submitted from now on (with CUDA
    /// events; the long and short segments then run as two launches), or
    /// stops timing. Call between passes, with nothing in flight.
    pub fn set_profile(&mut self, on: bool) -> Result<(), GpuError> {
        if !on {
            self.profile = None;
            return Ok(());
        }
        let mk = || -> Result<Vec<CudaEvent>, GpuError> {
            (0..=PHASES.len())
                .map(|_| {
                    self.dev
                        .ctx
                        .new_event(Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT))
                        .map_err(driver_err("creating a timing event"))
                })
                .collect()
        };
        self.profile = Some(Profile {
            events: [mk()?, mk()?],
            times: PhaseTimes::default(),
        });
        Ok(())
    }

    /// Phase times summed over the batches finished since profiling began.
    pub fn profile(&self) -> Option<&PhaseTimes> {
        self.profile.as_ref().map(|p| &p.times)
    }

    /// Records the event that ends `phase` (or starts the batch) on set
    /// `k`'s stream, when profiling.
    fn mark(&mut self, k: usize, phase: Option<Phase>) -> Result<(), GpuError> {
        let Some(p) = &self.profile else {
            return Ok(());
        };
        let i = phase.map_or(0, |ph| ph as usize + 1);
        p.events[k][i]
            .record(&self.sets[k].stream)
            .map_err(driver_err("recording a timing event"))
    }

    /// Adds the finished batch on set `k` to the phase times.
    fn account(&mut self, k: usize) -> Result<(), GpuError> {
        let Some(p) = &mut self.profile else {
            return Ok(());
        };
        let ev = &p.events[k];
        for (i, t) in p.times.ms.iter_mut().enumerate() {
            *t += f64::from(
                ev[i]
                    .elapsed_ms(&ev[i + 1])
                    .map_err(driver_err("reading a timing event"))?,
            );
        }
        p.times.batches += 1;
        Ok(())
    }
}

/// `f32` values in device memory, complete (see [`CudaDevice::upload_f32`]).
pub struct DeviceF32 {
    stream: Arc<CudaStream>,
    data: CudaSlice<f32>,
}

impl DeviceF32 {
    /// The device address of the first value, valid while `self` lives.
    pub fn device_ptr(&self) -> u64 {
        let (ptr, _sync) = cudarc::driver::DevicePtr::device_ptr(&self.data, &self.stream);
        ptr
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.data.len() == 0
    }
}

/// Runs the `flag_scores` kernel over a model output on the device and
/// copies back only what it flagged (see [`super::flag`]).
pub struct ScoreFlagger {
    dev: CudaDevice,
    stream: Arc<CudaStream>,
    count: CudaSlice<u32>,
    /// `(row, class, score bits)` per flagged row, 3 × `cap` values.
    triples: CudaSlice<u32>,
    cap: usize,
    host: Vec<u32>,
}

impl ScoreFlagger {
    fn new(dev: CudaDevice, rows: usize) -> Result<Self, GpuError> {
        let stream = dev
            .ctx
            .new_stream()
            .map_err(driver_err("creating a stream"))?;
        let cap = rows.max(1);
        let e = driver_err("allocating the flagged-row buffers");
        Ok(ScoreFlagger {
            count: stream.alloc_zeros(1).map_err(&e)?,
            triples: stream.alloc_zeros(3 * cap).map_err(&e)?,
            cap,
            host: Vec::new(),
            stream,
            dev,
        })
    }

    /// Appends to `out` (after clearing it) the rows of a model output whose
    /// attack score is at or above `threshold`, sorted by row, with the
    /// class and score `inference::read_output` gives them. Only the count
    /// and the flagged rows cross to the host. Returns when they have.
    ///
    /// # Safety
    /// `output` must be the device address (on this device, in its primary
    /// context) of `rows × layout.columns()` `f32` values whose writing has
    /// completed (e.g. an ONNX Runtime run that returned), and they must
    /// stay allocated and unwritten until this returns.
    pub unsafe fn flag(
        &mut self,
        output: u64,
        rows: usize,
        layout: ScoreLayout,
        threshold: f32,
        out: &mut Vec<Flagged>,
    ) -> Result<(), GpuError> {
        out.clear();
        let Some((cols, benign, class)) = layout.kernel_args() else {
            return Err(GpuError::InvalidInput(format!(
                "a model output layout the flag kernel cannot read: {layout:?}"
            )));
        };
        if rows == 0 {
            return Ok(());
        }
        let Ok(n) = u32::try_from(rows) else {
            return Err(GpuError::InvalidInput(format!(
                "{rows} rows in one batch; the flag kernel takes at most {}",
                u32::MAX
            )));
        };
        if output == 0 {
            return Err(GpuError::InvalidInput("a null model output".into()));
        }
        let e = driver_err("allocating the flagged-row buffers");
        if rows > self.cap {
            self.triples = self.stream.alloc_zeros(3 * rows).map_err(&e)?;
            self.cap = rows;
        }
        let cap32 = u32::try_from(self.cap).unwrap_or(u32::MAX);
        self.stream
            .memset_zeros(&mut self.count)
            .map_err(driver_err("clearing the flag count"))?;
        let mut b = self.stream.launch_builder(&self.dev.flag_scores);
        b.arg(&output)
            .arg(&n)
            .arg(&cols)
            .arg(&benign)
            .arg(&class)
            .arg(&threshold)
            .arg(&mut self.count)
            .arg(&cap32)
            .arg(&mut self.triples);
        let cfg = LaunchConfig {
            grid_dim: (blocks(rows, 256), 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: flag_scores reads rows × cols values at `output` (the
        // caller's guarantee; benign < cols checked by kernel_args), and
        // writes the count and at most `cap` triples (3 × cap values).
        unsafe { b.launch(cfg) }.map_err(driver_err("launching flag_scores"))?;
        let mut count = [0u32; 1];
        self.stream
            .memcpy_dtoh(&self.count, &mut count[..])
            .map_err(driver_err("copying the flag count"))?;
        self.stream
            .synchronize()
            .map_err(driver_err("waiting for flag_scores"))?;
        let k = (count[0] as usize).min(self.cap);
        if k > 0 {
            self.host.resize(3 * k, 0);
            self.stream
                .memcpy_dtoh(&self.triples.slice(0..3 * k), &mut self.host[..])
                .map_err(driver_err("copying the flagged rows"))?;
            self.stream
                .synchronize()
                .map_err(driver_err("waiting for the flagged rows"))?;
        }
        collect_flagged(self.host.get(..3 * k).unwrap_or_default(), out);
        Ok(())
    }
}

struct Profile {
    /// Per set: the batch's start, then the end of each phase.
    events: [Vec<CudaEvent>; 2],
    times: PhaseTimes,
}
