//! Flow features: the CIC schema and its CPU reference extractor.
//!
//! The CPU extractor here is the *definition* of every feature value; the
//! CUDA kernels (behind the `cuda` feature, later) must reproduce it.

// No panic on input-derived data: indexing, `unwrap`, `expect` and
// `panic!` need a checked path or a local allow that says why it holds.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]
pub mod batch;
pub mod cpu;
pub mod csv;
pub mod gpu;
pub mod schema;
pub mod shard;

pub use batch::{FlowBatch, Mark, Scored};
pub use shard::{ShardProcessor, ShardStats};
