//! Batches of ended flows with their feature rows, passed from the flow
//! workers to inference and to CSV export.

use std::time::Duration;

use tapstream_ingest::FlowMeta;

use crate::context::{FlowStart, NUM_CONTEXT};
use crate::gpu::Flagged;
use crate::schema::NUM_FEATURES;

/// Ended flows and their feature rows: `rows[i*NUM_FEATURES..(i+1)*NUM_FEATURES]`
/// belongs to `metas[i]`. Rows are `f64` so CSV export prints exactly what the
/// extractor computed; models receive `f32` copies.
#[derive(Clone, Debug, Default)]
pub struct FlowBatch {
    /// One entry per ended flow.
    pub metas: Vec<FlowMeta>,
    /// Row-major feature matrix, `metas.len() × NUM_FEATURES`.
    pub rows: Vec<f64>,
    /// Set by a shard whose input is tagged with origins (the Kafka source):
    /// how far its input is settled once the flows before this mark are.
    pub mark: Option<Mark>,
    /// Set when the flow worker already scored the batch (inference in the
    /// workers): then `flagged` holds every flow at or above the threshold,
    /// and nothing downstream scores the batch again.
    pub scored: Option<Scored>,
    /// The flows of a scored batch whose attack score reached the
    /// threshold, by index into `metas`, in increasing order.
    pub flagged: Vec<Flagged>,
    /// With the context stage on: the shard that sent the batch.
    pub shard: Option<u32>,
    /// With the context stage on: each flow's start id, beside `metas`
    /// (set by the flow worker).
    pub start_ids: Vec<u64>,
    /// With the context stage on: the flows the shard started and their
    /// outcomes, in capture order (set by the flow worker, taken by the
    /// context stage).
    pub starts: Vec<FlowStart>,
    /// With the context stage on: the shard has sent every start of input
    /// chunks numbered below this.
    pub watermark: Option<u64>,
    /// Row-major context matrix, `metas.len() × NUM_CONTEXT`, filled by the
    /// context stage (empty without it); computed in `f64`, kept as `f32`.
    pub context: Vec<f32>,
}

/// How a flow worker scored a [`FlowBatch`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scored {
    /// Which model did: the generation the consumer published it as (0 is
    /// the model the run started with; each hot reload adds one).
    pub generation: u64,
    /// Inference calls it took.
    pub calls: u32,
    /// Time inside the engine.
    pub busy: Duration,
}

/// A shard's progress marker, sent after the flows it ended so far.
///
/// Input messages are numbered in the order the source read them (their
/// *origin*). When every flow a shard handed off before a mark has been
/// scored and its alert acknowledged, no message numbered below `safe` has
/// anything left in that shard: each flow with a packet from such a message
/// has ended, and the shard has read all of them. A source may then commit
/// those messages once every shard says so.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mark {
    /// The shard.
    pub shard: u32,
    /// Messages numbered below this are settled in this shard.
    pub safe: u64,
    /// The last flush request the shard has carried out (0 for none); a
    /// flush ends every open flow, and its mark's `safe` is taken before
    /// the flush.
    pub flushed: u64,
}

impl FlowBatch {
    /// An empty batch with room for `flows` flows.
    pub fn with_capacity(flows: usize) -> Self {
        FlowBatch {
            metas: Vec::with_capacity(flows),
            rows: Vec::with_capacity(flows * NUM_FEATURES),
            mark: None,
            scored: None,
            flagged: Vec::new(),
            shard: None,
            start_ids: Vec::new(),
            starts: Vec::new(),
            watermark: None,
            context: Vec::new(),
        }
    }

    /// Number of flows.
    pub fn len(&self) -> usize {
        self.metas.len()
    }

    /// True when no flow is in the batch.
    pub fn is_empty(&self) -> bool {
        self.metas.is_empty()
    }

    /// Appends one flow and its row.
    pub fn push(&mut self, meta: FlowMeta, row: &[f64; NUM_FEATURES]) {
        self.metas.push(meta);
        self.rows.extend_from_slice(row);
    }

    /// Appends one flow whose row `fill` writes in place (no copy of the
    /// row; `fill` receives zeros).
    pub fn push_with(&mut self, meta: FlowMeta, fill: impl FnOnce(&mut [f64; NUM_FEATURES])) {
        let start = self.rows.len();
        self.rows.resize(start + NUM_FEATURES, 0.0);
        if let Some(row) = self
            .rows
            .get_mut(start..)
            .and_then(|s| <&mut [f64; NUM_FEATURES]>::try_from(s).ok())
        {
            fill(row);
        }
        self.metas.push(meta);
    }

    /// The feature row of flow `i`, if it exists.
    pub fn row(&self, i: usize) -> Option<&[f64]> {
        self.rows.get(i * NUM_FEATURES..(i + 1) * NUM_FEATURES)
    }

    /// The context row of flow `i`, when the context stage filled them.
    pub fn context_row(&self, i: usize) -> Option<&[f32]> {
        self.context.get(i * NUM_CONTEXT..(i + 1) * NUM_CONTEXT)
    }

    /// True when the batch carries context rows for its flows.
    pub fn has_context(&self) -> bool {
        !self.metas.is_empty() && self.context.len() == self.metas.len() * NUM_CONTEXT
    }

    /// A batch of the flows `keep` accepts, with their feature and context
    /// rows and the shard; no mark, scores, starts or watermark.
    pub fn select(&self, keep: impl Fn(&FlowMeta) -> bool) -> FlowBatch {
        let mut out = FlowBatch::with_capacity(0);
        out.shard = self.shard;
        let context = self.has_context();
        for (i, m) in self.metas.iter().enumerate().filter(|(_, m)| keep(m)) {
            let (Some(row), c) = (self.row(i), self.context_row(i)) else {
                continue;
            };
            out.metas.push(*m);
            out.rows.extend_from_slice(row);
            if let (true, Some(c)) = (context, c) {
                out.context.extend_from_slice(c);
            }
        }
        out
    }

    /// Empties the batch (and drops its mark and scores), keeping its
    /// allocations for reuse.
    pub fn clear(&mut self) {
        self.metas.clear();
        self.rows.clear();
        self.mark = None;
        self.scored = None;
        self.flagged.clear();
        self.start_ids.clear();
        self.starts.clear();
        self.watermark = None;
        self.context.clear();
    }
}
