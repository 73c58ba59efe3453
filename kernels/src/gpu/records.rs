//! Columnar packet records for the GPU extractor, and the shard that feeds them.
//!
//! The flow table stays on the host (it decides flow identity, direction and
//! end, one packet at a time); the per-flow accumulators live on the device.
//! For every packet the host appends one fixed-size record (timestamp,
//! lengths, flags, window, kind and direction) and for every ended flow a
//! *finalize* record, in event order. Every flow gets its own device
//! accumulator slot, never reused within a batch, and records are grouped by
//! device slot into *segments* (one per flow touched in the batch): the host
//! numbers each record's segment and its rank within the segment, so the
//! device puts every flow's records back in arrival order with one scatter
//! and applies them with one thread per segment, exactly as the CPU extractor
//! would. A segment is as long as the flow's packets in the batch, whatever
//! the table does with its own slots.
//!
//! Columns are written through [`Column`], which is backed by ordinary memory
//! or (with the `cuda` feature) by pinned host memory that the device copies
//! from asynchronously. [`GpuShard`] drives a flow table and a
//! [`BatchExecutor`]; two batches are in flight so the copy and kernels of
//! one overlap the host filling the next.

use std::collections::VecDeque;

use tapstream_ingest::flow::{Direction, EndedFlow, FlowConfig, FlowTable, PlacementKind};
use tapstream_ingest::packet::{proto, PacketRecord};
use tapstream_ingest::FlowMeta;

use crate::batch::{FlowBatch, Scored};
use crate::gpu::Flagged;
use crate::schema::NUM_FEATURES;
use crate::shard::{Output, ShardError, ShardStats};

/// Record kind: a packet joining its flow.
pub const KIND_UPDATE: u8 = 0;
/// Record kind: a flow's first packet (resets the slot's accumulator).
pub const KIND_FIRST: u8 = 1;
/// Record kind: the flow ended; write its feature row.
pub const KIND_FINALIZE: u8 = 2;
/// Record kind: carries (in `ts`) the connection start of the flow whose
/// first packet comes next, when that flow continues a TCP connection.
pub const KIND_CONN: u8 = 3;
/// Bit set in `kind` for a backward packet.
pub const DIR_BACKWARD: u8 = 0x80;
/// Bytes per slot in the device accumulator array (the kernel's `ACC_STRIDE`).
pub const ACC_STRIDE: usize = 768;
/// Bytes copied to the device per record (all columns).
pub const RECORD_BYTES: usize = 4 + 4 + 8 + 4 + 2 + 2 + 1 + 1;
/// A segment with at least this many records is processed by a warp (one
/// lane per independent part of the accumulator) instead of one thread.
pub const LONG_SEGMENT: u32 = 64;

/// Errors of the GPU extractor.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GpuError {
    /// No usable CUDA driver or device.
    #[error("no usable GPU: {0}")]
    Unavailable(String),
    /// This build has no CUDA support (the `cuda` feature is off).
    #[error("this tapstream was built without CUDA support (build with `--features cuda`)")]
    NotBuilt,
    /// NVRTC could not compile a kernel.
    #[error("compiling {name} with NVRTC failed: {log}")]
    Compile {
        /// The source file.
        name: &'static str,
        /// The compiler's log.
        log: String,
    },
    /// A CUDA driver call failed.
    #[error("CUDA {what} failed: {message}")]
    Driver {
        /// What was being done.
        what: &'static str,
        /// The driver's message.
        message: String,
    },
    /// A kernel was asked to run on arguments it cannot take (a model
    /// output layout it cannot read, a batch too large, a null buffer).
    #[error("invalid GPU kernel input: {0}")]
    InvalidInput(String),
    /// Scoring a finished batch on the device failed.
    #[error("scoring on the device failed: {0}")]
    Scoring(String),
    /// The flow table configuration is invalid.
    #[error(transparent)]
    Shard(#[from] ShardError),
}

/// One column of `T`, in memory that stays put for the column's life.
///
/// Backed by a `Vec` (tests, emulation) or by pinned host memory (CUDA); the
/// owner keeps the memory alive and the column never reallocates, so the
/// device can copy from it while the host fills another batch.
pub struct Column<T: Copy> {
    ptr: *mut T,
    cap: usize,
    _owner: Box<dyn Send>,
}

// SAFETY: the column owns its memory (through `_owner`) and hands out
// references only through `&self`/`&mut self`, like a `Vec`.
unsafe impl<T: Copy + Send> Send for Column<T> {}

impl<T: Copy + Default + Send + 'static> Column<T> {
    /// A column in ordinary memory.
    pub fn in_memory(cap: usize) -> Self {
        let mut v = vec![T::default(); cap.max(1)];
        let ptr = v.as_mut_ptr();
        Column {
            ptr,
            cap: v.len(),
            _owner: Box::new(v),
        }
    }
}

impl<T: Copy> Column<T> {
    /// A column over memory owned by `owner`.
    ///
    /// # Safety
    /// `ptr` must be valid for reads and writes of `cap` elements of `T` for
    /// as long as `owner` lives, and nothing else may access that memory
    /// except through this column (device copies excepted, which the caller
    /// orders with its own events).
    pub unsafe fn from_raw(ptr: *mut T, cap: usize, owner: Box<dyn Send>) -> Self {
        Column {
            ptr,
            cap,
            _owner: owner,
        }
    }

    /// Capacity in elements.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// The first `len` elements (clamped to the capacity).
    pub fn as_slice(&self, len: usize) -> &[T] {
        // SAFETY: `ptr` is valid for `cap` elements while `_owner` lives.
        unsafe { std::slice::from_raw_parts(self.ptr, len.min(self.cap)) }
    }

    /// Raw pointer to the first element (for device copies).
    pub fn as_ptr(&self) -> *const T {
        self.ptr
    }

    #[inline]
    fn set(&mut self, i: usize, v: T) {
        if i < self.cap {
            // SAFETY: in bounds; `&mut self` gives exclusive access.
            unsafe { self.ptr.add(i).write(v) }
        }
    }
}

/// The columns of one batch.
pub struct Columns {
    /// Segment of each record.
    pub seg: Column<u32>,
    /// Rank of each record within its segment (arrival order).
    pub rank: Column<u32>,
    /// Packet time, µs.
    pub ts: Column<i64>,
    /// Transport payload bytes (a finalize record: its row index).
    pub payload: Column<u32>,
    /// Transport header bytes.
    pub header: Column<u16>,
    /// TCP window.
    pub window: Column<u16>,
    /// TCP flags (0 for non-TCP).
    pub flags: Column<u8>,
    /// Kind and direction.
    pub kind: Column<u8>,
    /// Start of each segment in per-segment order, plus the end.
    pub seg_start: Column<u32>,
    /// Flow slot of each segment.
    pub seg_slot: Column<u32>,
    /// Packed identity of each finalized flow (see the kernel).
    pub fin_meta: Column<u64>,
    /// Segments processed one per thread.
    pub short_segs: Column<u32>,
    /// Segments processed one per warp ([`LONG_SEGMENT`] records or more).
    pub long_segs: Column<u32>,
}

impl Columns {
    /// Columns in ordinary memory for `cap` records of which at most
    /// `fin_cap` finalize flows.
    pub fn in_memory(cap: usize, fin_cap: usize) -> Self {
        Columns {
            seg: Column::in_memory(cap),
            rank: Column::in_memory(cap),
            ts: Column::in_memory(cap),
            payload: Column::in_memory(cap),
            header: Column::in_memory(cap),
            window: Column::in_memory(cap),
            flags: Column::in_memory(cap),
            kind: Column::in_memory(cap),
            seg_start: Column::in_memory(cap + 1),
            seg_slot: Column::in_memory(cap),
            fin_meta: Column::in_memory(fin_cap),
            short_segs: Column::in_memory(cap),
            long_segs: Column::in_memory(cap),
        }
    }

    /// Records a batch can hold.
    pub fn capacity(&self) -> usize {
        [
            self.seg.capacity(),
            self.rank.capacity(),
            self.ts.capacity(),
            self.payload.capacity(),
            self.header.capacity(),
            self.window.capacity(),
            self.flags.capacity(),
            self.kind.capacity(),
            self.seg_slot.capacity(),
            self.short_segs.capacity(),
            self.long_segs.capacity(),
            self.seg_start.capacity().saturating_sub(1),
        ]
        .into_iter()
        .min()
        .unwrap_or(0)
    }
}

/// A batch being filled, then sealed and handed to an executor.
pub struct RecordBatch {
    /// The columns.
    pub cols: Columns,
    len: usize,
    segs: usize,
    seg_count: Vec<u32>,
    n_short: usize,
    n_long: usize,
    n_conn: usize,
    /// Ended flows, in row order.
    pub metas: Vec<FlowMeta>,
    /// Highest slot referenced plus one.
    pub slots_needed: usize,
    sealed: bool,
}

impl RecordBatch {
    /// An empty batch over `cols`.
    pub fn new(cols: Columns) -> Self {
        let cap = cols.capacity();
        RecordBatch {
            cols,
            len: 0,
            segs: 0,
            seg_count: Vec::with_capacity(cap),
            n_short: 0,
            n_long: 0,
            n_conn: 0,
            metas: Vec::new(),
            slots_needed: 0,
            sealed: false,
        }
    }

    /// Records in the batch.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the batch holds no record.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Segments in the batch.
    pub fn segments(&self) -> usize {
        self.segs
    }

    /// Finalized flows in the batch.
    pub fn finalized(&self) -> usize {
        self.metas.len()
    }

    /// True when one more record does not fit.
    pub fn is_full(&self) -> bool {
        self.len >= self.cols.capacity()
    }

    /// True when one more finalize (a record and a row) does not fit.
    pub fn finalize_full(&self) -> bool {
        self.is_full() || self.metas.len() >= self.cols.fin_meta.capacity()
    }

    /// Copies this batch (columns up to its length, segments, rows to come)
    /// into `dst`, which must have at least the same capacities.
    pub fn copy_into(&self, dst: &mut RecordBatch) {
        fn col<T: Copy>(src: &Column<T>, dst: &mut Column<T>, n: usize) {
            for (i, v) in src.as_slice(n).iter().enumerate() {
                dst.set(i, *v);
            }
        }
        let (n, s, f) = (self.len, self.segs, self.metas.len());
        let (a, b) = (&self.cols, &mut dst.cols);
        col(&a.seg, &mut b.seg, n);
        col(&a.rank, &mut b.rank, n);
        col(&a.ts, &mut b.ts, n);
        col(&a.payload, &mut b.payload, n);
        col(&a.header, &mut b.header, n);
        col(&a.window, &mut b.window, n);
        col(&a.flags, &mut b.flags, n);
        col(&a.kind, &mut b.kind, n);
        col(&a.seg_start, &mut b.seg_start, s + 1);
        col(&a.seg_slot, &mut b.seg_slot, s);
        col(&a.fin_meta, &mut b.fin_meta, f);
        col(&a.short_segs, &mut b.short_segs, self.n_short);
        col(&a.long_segs, &mut b.long_segs, self.n_long);
        dst.len = n;
        dst.segs = s;
        dst.n_short = self.n_short;
        dst.n_long = self.n_long;
        dst.n_conn = self.n_conn;
        dst.seg_count.clear();
        dst.seg_count.extend_from_slice(&self.seg_count);
        dst.metas.clear();
        dst.metas.extend_from_slice(&self.metas);
        dst.slots_needed = self.slots_needed;
        dst.sealed = self.sealed;
    }

    /// Records in the batch's longest segment (what one GPU thread walks).
    pub fn longest_segment(&self) -> usize {
        self.seg_count.iter().copied().max().unwrap_or(0) as usize
    }

    /// Packet records (not finalize or connection records) in the batch.
    pub fn packets(&self) -> usize {
        self.len - self.metas.len() - self.n_conn
    }

    /// Computes the segment starts and splits segments into short and
    /// long ones; the batch is then ready to execute.
    pub fn seal(&mut self) {
        let mut start = 0u32;
        let (mut short, mut long) = (0, 0);
        for (s, &c) in self.seg_count.iter().enumerate() {
            self.cols.seg_start.set(s, start);
            start += c;
            if c >= LONG_SEGMENT {
                self.cols.long_segs.set(long, s as u32);
                long += 1;
            } else {
                self.cols.short_segs.set(short, s as u32);
                short += 1;
            }
        }
        self.cols.seg_start.set(self.segs, start);
        self.n_short = short;
        self.n_long = long;
        self.sealed = true;
    }

    /// Segments processed one per thread (after [`seal`](Self::seal)).
    pub fn short_segments(&self) -> usize {
        self.n_short
    }

    /// Segments processed one per warp (after [`seal`](Self::seal)).
    pub fn long_segments(&self) -> usize {
        self.n_long
    }

    /// True once [`seal`](Self::seal) ran.
    pub fn is_sealed(&self) -> bool {
        self.sealed
    }

    fn clear(&mut self) {
        self.len = 0;
        self.segs = 0;
        self.n_short = 0;
        self.n_long = 0;
        self.n_conn = 0;
        self.seg_count.clear();
        self.metas.clear();
        self.slots_needed = 0;
        self.sealed = false;
    }
}

/// Slot → segment of the batch being filled (stamped with the batch number
/// so nothing has to be cleared between batches).
#[derive(Default)]
struct SegmentMap {
    seg: Vec<u32>,
    epoch: Vec<u32>,
    current: u32,
}

impl SegmentMap {
    fn next_batch(&mut self) {
        self.current = self.current.wrapping_add(1);
        if self.current == 0 {
            self.epoch.iter_mut().for_each(|e| *e = u32::MAX);
            self.current = 1;
        }
    }
}

/// Appends a record for device slot `slot`, opening its segment if needed.
// `s` is below the map's length once it is resized, and `seg` indexes a
// count pushed when its segment opened.
#[allow(clippy::too_many_arguments, clippy::indexing_slicing)]
fn push_record(
    b: &mut RecordBatch,
    map: &mut SegmentMap,
    slot: u32,
    ts: i64,
    payload: u32,
    header: u16,
    window: u16,
    flags: u8,
    kind: u8,
) {
    let s = slot as usize;
    if s >= map.seg.len() {
        let n = (s + 1).next_power_of_two();
        map.seg.resize(n, 0);
        map.epoch.resize(n, 0);
    }
    let seg = if map.epoch[s] == map.current {
        map.seg[s]
    } else {
        let seg = b.segs as u32;
        map.seg[s] = seg;
        map.epoch[s] = map.current;
        b.cols.seg_slot.set(b.segs, slot);
        b.seg_count.push(0);
        b.segs += 1;
        seg
    };
    let rank = &mut b.seg_count[seg as usize];
    let i = b.len;
    b.cols.seg.set(i, seg);
    b.cols.rank.set(i, *rank);
    *rank += 1;
    b.cols.ts.set(i, ts);
    b.cols.payload.set(i, payload);
    b.cols.header.set(i, header);
    b.cols.window.set(i, window);
    b.cols.flags.set(i, flags);
    b.cols.kind.set(i, kind);
    b.len += 1;
    b.slots_needed = b.slots_needed.max(s + 1);
}

/// Packs the identity a finalize needs (must match the kernel's unpacking).
pub fn pack_meta(m: &FlowMeta) -> u64 {
    u64::from(m.sport)
        | (u64::from(m.dport) << 16)
        | (u64::from(m.proto) << 32)
        | (u64::from(m.icmp_type) << 40)
        | (u64::from(m.icmp_code) << 48)
}

/// Runs sealed batches against accumulators it keeps between batches.
pub trait BatchExecutor: Send {
    /// Starts running `batch`; its rows come back from [`finish`](Self::finish)
    /// in submission order. At most two batches are outstanding.
    fn submit(&mut self, batch: &RecordBatch) -> Result<(), GpuError>;
    /// Waits for the oldest submitted batch and writes its rows
    /// (`finalized × NUM_FEATURES`, row-major) into `rows`.
    fn finish(&mut self, rows: &mut Vec<f64>) -> Result<(), GpuError>;
    /// Fresh columns for one batch of `cap` records, at most `fin_cap` of
    /// them finalizes (pinned memory for a device).
    fn columns(&mut self, cap: usize, fin_cap: usize) -> Result<Columns, GpuError>;
}

/// Scores each finished batch where the executor left its model input (on
/// the device), so ended flows leave the shard already scored: the batch
/// the caller receives carries its flagged flows ([`FlowBatch::flagged`])
/// and no feature rows.
///
/// A new model may need another model input (columns, scaler): when
/// [`newer_model`](Self::newer_model) says one waits, the shard completes
/// every batch in flight (scored by the current model) and hands off the
/// flows it holds, then calls [`switch`](Self::switch) and
/// [`prepare`](Self::prepare) with nothing in flight, so no flow batch mixes
/// two models.
pub trait DeviceScoring<E>: Send {
    /// Sets `exec` up for the current model (for example, the model input it
    /// builds on the device). Called with nothing in flight: once when the
    /// scoring is installed and after each [`switch`](Self::switch).
    fn prepare(&mut self, exec: &mut E) -> Result<(), GpuError>;
    /// Whether a newer model waits to take over.
    fn newer_model(&self) -> bool;
    /// Takes the newer model.
    fn switch(&mut self);
    /// Scores the `rows` flows of the batch `exec` finished last (`host`
    /// holds their feature rows when the executor copies them back, else it
    /// is empty); returns how, and the flagged flows by row in the batch,
    /// in increasing order.
    fn score(
        &mut self,
        exec: &E,
        host: &[f64],
        rows: usize,
    ) -> Result<(Scored, &[Flagged]), GpuError>;
}

/// A flow table whose features are computed by a [`BatchExecutor`].
///
/// The same table as [`crate::shard::ShardProcessor`], so flows, their ends
/// and their order are identical; only the arithmetic moves to the device.
/// Ended flows reach the caller's [`Output`] when their batch completes.
pub struct GpuShard<E: BatchExecutor> {
    table: FlowTable,
    exec: E,
    map: SegmentMap,
    filling: RecordBatch,
    spare: Option<RecordBatch>,
    in_flight: VecDeque<RecordBatch>,
    rows: Vec<f64>,
    ended: Vec<EndedFlow>,
    slots: DeviceSlots,
    shard_id: u32,
    error: Option<GpuError>,
    scoring: Option<Box<dyn DeviceScoring<E>>>,
}

/// Device accumulator slots, one per flow: a flow keeps its slot for life,
/// and a slot freed by a flow that ended in the batch being filled is only
/// handed out again in a later batch. So a batch touches each device slot in
/// at most one flow, every segment is one flow, and no GPU thread ever walks
/// a chain of short flows that happened to share a table slot.
#[derive(Default)]
struct DeviceSlots {
    of_table: Vec<u32>,
    free: Vec<u32>,
    quarantine: Vec<u32>,
    next: u32,
}

impl DeviceSlots {
    /// Gives table slot `t`'s new flow a device slot.
    // `t` is below the length once resized.
    #[allow(clippy::indexing_slicing)]
    fn open(&mut self, t: u32) -> u32 {
        let d = self.free.pop().unwrap_or_else(|| {
            self.next += 1;
            self.next - 1
        });
        let t = t as usize;
        if t >= self.of_table.len() {
            self.of_table.resize((t + 1).next_power_of_two(), 0);
        }
        self.of_table[t] = d;
        d
    }

    /// The device slot of table slot `t`'s flow.
    fn of(&self, t: u32) -> u32 {
        self.of_table.get(t as usize).copied().unwrap_or(0)
    }

    /// The flow in table slot `t` ended in the batch being filled.
    fn close(&mut self, t: u32) -> u32 {
        let d = self.of(t);
        self.quarantine.push(d);
        d
    }

    /// The batch was sealed: slots freed in it may be reused.
    fn release(&mut self) {
        self.free.append(&mut self.quarantine);
    }
}

impl<E: BatchExecutor> GpuShard<E> {
    /// A shard whose batches hold up to `batch_records` records, of which at
    /// most a quarter (and at least one) end flows.
    pub fn new(
        cfg: FlowConfig,
        shard_id: u32,
        mut exec: E,
        batch_records: usize,
    ) -> Result<Self, GpuError> {
        let table = FlowTable::new(cfg).map_err(ShardError::from)?;
        let cap = batch_records.max(2);
        let fin_cap = fin_capacity(cap);
        let filling = RecordBatch::new(exec.columns(cap, fin_cap)?);
        let spare = Some(RecordBatch::new(exec.columns(cap, fin_cap)?));
        let mut map = SegmentMap::default();
        map.next_batch();
        Ok(GpuShard {
            table,
            exec,
            map,
            filling,
            spare,
            in_flight: VecDeque::with_capacity(2),
            rows: Vec::new(),
            ended: Vec::new(),
            slots: DeviceSlots::default(),
            shard_id,
            error: None,
            scoring: None,
        })
    }

    /// Scores every finished batch with `scoring` from now on (see
    /// [`DeviceScoring`]). Call before the first packet.
    pub fn set_scoring(&mut self, mut scoring: Box<dyn DeviceScoring<E>>) -> Result<(), GpuError> {
        scoring.prepare(&mut self.exec)?;
        self.scoring = Some(scoring);
        Ok(())
    }

    /// Starts over with an empty flow table, keeping the executor and its
    /// buffers (call after [`flush_into`](Self::flush_into); accumulators
    /// need no clearing, a flow's first record resets its slot).
    pub fn reset(&mut self) -> Result<(), GpuError> {
        let cfg = *self.table.config();
        self.table = FlowTable::new(cfg).map_err(ShardError::from)?;
        self.map.next_batch();
        self.slots.release();
        Ok(())
    }

    /// The executor, e.g. to change its settings between captures.
    pub fn executor_mut(&mut self) -> &mut E {
        &mut self.exec
    }

    /// Hands back the executor (after [`flush_into`](Self::flush_into)).
    pub fn into_executor(self) -> E {
        self.exec
    }

    /// The first device error, if one happened (the shard then drops flows).
    pub fn error(&self) -> Option<&GpuError> {
        self.error.as_ref()
    }

    /// Processes packets in order; flows whose batch completes are emitted.
    pub fn process_into<F: FnMut(&mut FlowBatch)>(
        &mut self,
        recs: &[PacketRecord],
        out: &mut Output<'_, F>,
    ) {
        let mut ended = std::mem::take(&mut self.ended);
        for rec in recs {
            // Flows this packet ends (its own timed-out flow, swept idle
            // flows, an evicted one) are finalized before its own record, so
            // a reused slot sees the old flow's finalize first.
            let placement = self.table.process(rec, &mut |e: EndedFlow| ended.push(e));
            self.finalize_all(&mut ended, out);
            // Room for this packet and a connection record before it.
            if self.filling.len() + 2 > self.filling.cols.capacity() {
                self.rotate(out);
            }
            let flags = if rec.proto == proto::TCP {
                rec.flags
            } else {
                0
            };
            let dir = match placement.dir {
                Direction::Forward => 0,
                Direction::Backward => DIR_BACKWARD,
            };
            let (kind, dslot) = match placement.kind {
                PlacementKind::New { continuation } => {
                    let dslot = self.slots.open(placement.slot);
                    if let Some(c) = continuation {
                        push_record(
                            &mut self.filling,
                            &mut self.map,
                            dslot,
                            c.conn_start_us,
                            0,
                            0,
                            0,
                            0,
                            KIND_CONN,
                        );
                        self.filling.n_conn += 1;
                    }
                    (KIND_FIRST, dslot)
                }
                PlacementKind::Existing => (KIND_UPDATE, self.slots.of(placement.slot)),
            };
            push_record(
                &mut self.filling,
                &mut self.map,
                dslot,
                rec.ts_us,
                rec.payload_len,
                rec.header_len,
                rec.window,
                flags,
                kind | dir,
            );
        }
        self.ended = ended;
    }

    /// Advances packet time (idle sweeps) like the CPU shard.
    pub fn advance_into<F: FnMut(&mut FlowBatch)>(&mut self, now_us: i64, out: &mut Output<'_, F>) {
        // Sweeps may end many flows at once: end them into as many batches as needed.
        let mut ended = std::mem::take(&mut self.ended);
        self.table
            .advance(now_us, &mut |e: EndedFlow| ended.push(e));
        self.finalize_all(&mut ended, out);
        self.ended = ended;
    }

    /// Ends every flow and waits for all results.
    pub fn flush_into<F: FnMut(&mut FlowBatch)>(&mut self, out: &mut Output<'_, F>) {
        let mut ended = std::mem::take(&mut self.ended);
        self.table.flush(&mut |e: EndedFlow| ended.push(e));
        self.finalize_all(&mut ended, out);
        self.ended = ended;
        self.sync(out);
    }

    /// Submits what is pending and waits for every batch: all flows ended
    /// so far are emitted when this returns.
    pub fn sync<F: FnMut(&mut FlowBatch)>(&mut self, out: &mut Output<'_, F>) {
        if !self.filling.is_empty() {
            self.submit_filling(out);
        }
        while !self.in_flight.is_empty() {
            self.complete_oldest(out);
        }
    }

    /// The flow configuration.
    pub fn config(&self) -> &FlowConfig {
        self.table.config()
    }

    /// Counters, as the CPU shard reports them.
    pub fn stats(&self) -> ShardStats {
        ShardStats::of_table(self.shard_id, &self.table)
    }

    fn finalize_all<F: FnMut(&mut FlowBatch)>(
        &mut self,
        ended: &mut Vec<EndedFlow>,
        out: &mut Output<'_, F>,
    ) {
        for e in ended.drain(..) {
            if self.filling.finalize_full() {
                self.rotate(out);
            }
            let dslot = self.slots.close(e.slot);
            finalize(&mut self.filling, &mut self.map, dslot, &e);
        }
    }

    /// Submits the filling batch, keeping at most two in flight.
    fn rotate<F: FnMut(&mut FlowBatch)>(&mut self, out: &mut Output<'_, F>) {
        if !self.filling.is_empty() {
            self.submit_filling(out);
        }
    }

    fn submit_filling<F: FnMut(&mut FlowBatch)>(&mut self, out: &mut Output<'_, F>) {
        if self.scoring.as_ref().is_some_and(|s| s.newer_model()) {
            self.switch_model(out);
        }
        if self.spare.is_none() {
            self.complete_oldest(out);
        }
        let Some(next) = self.spare.take() else {
            return;
        };
        let mut batch = std::mem::replace(&mut self.filling, next);
        batch.seal();
        self.map.next_batch();
        self.slots.release();
        if self.error.is_none() {
            if let Err(e) = self.exec.submit(&batch) {
                self.error = Some(e);
            }
        }
        self.in_flight.push_back(batch);
    }

    /// Completes the batches in flight with the current model, hands off
    /// the flows they ended, and lets the scoring take the newer model.
    fn switch_model<F: FnMut(&mut FlowBatch)>(&mut self, out: &mut Output<'_, F>) {
        while !self.in_flight.is_empty() {
            self.complete_oldest(out);
        }
        if !out.batch.is_empty() {
            (out.handoff)(out.batch);
        }
        let Some(scoring) = self.scoring.as_mut() else {
            return;
        };
        scoring.switch();
        if self.error.is_none() {
            if let Err(e) = scoring.prepare(&mut self.exec) {
                self.error = Some(e);
            }
        }
    }

    fn complete_oldest<F: FnMut(&mut FlowBatch)>(&mut self, out: &mut Output<'_, F>) {
        let Some(mut batch) = self.in_flight.pop_front() else {
            return;
        };
        if self.error.is_none() {
            self.rows.clear();
            match self.exec.finish(&mut self.rows) {
                Ok(()) => match self.scoring.as_mut() {
                    None => emit_rows(&batch.metas, &self.rows, out),
                    Some(s) => match s.score(&self.exec, &self.rows, batch.metas.len()) {
                        Ok((how, flagged)) => out.emit_scored(&batch.metas, flagged, how),
                        Err(e) => self.error = Some(e),
                    },
                },
                Err(e) => self.error = Some(e),
            }
        }
        batch.clear();
        self.spare = Some(batch);
    }
}

/// Finalizes a batch of `cap` records may hold: a quarter, at least one.
pub fn fin_capacity(cap: usize) -> usize {
    (cap / 4).max(1)
}

fn finalize(b: &mut RecordBatch, map: &mut SegmentMap, dslot: u32, e: &EndedFlow) {
    let row = b.metas.len();
    b.cols.fin_meta.set(row, pack_meta(&e.meta));
    b.metas.push(e.meta);
    push_record(b, map, dslot, 0, row as u32, 0, 0, 0, KIND_FINALIZE);
}

fn emit_rows<F: FnMut(&mut FlowBatch)>(metas: &[FlowMeta], rows: &[f64], out: &mut Output<'_, F>) {
    for (meta, row) in metas.iter().zip(rows.chunks_exact(NUM_FEATURES)) {
        out.emit_row(*meta, row);
    }
}
