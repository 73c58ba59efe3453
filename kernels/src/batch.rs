//! Batches of ended flows with their feature rows, passed from the flow
//! workers to inference and to CSV export.

use std::time::Duration;

use tapstream_ingest::FlowMeta;

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

    /// Empties the batch (and drops its mark and scores), keeping its
    /// allocations for reuse.
    pub fn clear(&mut self) {
        self.metas.clear();
        self.rows.clear();
        self.mark = None;
        self.scored = None;
        self.flagged.clear();
    }
}
