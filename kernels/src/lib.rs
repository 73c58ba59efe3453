//! Flow features: the CIC schema, the [`FeatureExtractor`] trait with its
//! CPU reference and CUDA implementations, and the batches of ended flows
//! that leave the flow workers.
//!
//! The CPU extractor ([`ShardProcessor`]) is the *definition* of every
//! feature value; the CUDA kernels ([`gpu`], behind the `cuda` feature, with
//! a stand-in in other builds) reproduce it bit for bit and are tested
//! against it on machines without a GPU by compiling the same `.cu` as C++.
//! Beside [`FlowBatch`] live the [`Mark`]s a numbered source's offsets wait
//! on and the [`Settled`] state they end in, and the [`FlowSource`] trait of
//! input that is already flow rows.

// No panic on input-derived data: indexing, `unwrap`, `expect` and
// `panic!` need a checked path or a local allow that says why it holds.
// No function over 100 lines.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic,
        clippy::too_many_lines
    )
)]
pub mod batch;
pub mod context;
pub mod cpu;
pub mod csv;
pub mod extract;
pub mod gpu;
pub mod rows;
pub mod schema;
mod settled;
pub mod shard;

pub use batch::{FlowBatch, Mark, Scored};
pub use context::{
    ContextConfig, ContextRow, ContextRows, ContextStats, ContextTable, FlowStart, Outcome,
};
pub use extract::{Backend, FeatureExtractor, Handoff};
pub use rows::{FlowSource, FlowWriter};
pub use settled::Settled;
pub use shard::{ShardProcessor, ShardStats};
