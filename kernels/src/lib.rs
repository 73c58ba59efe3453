//! Flow features: the CIC schema and its CPU reference extractor.
//!
//! The CPU extractor here is the *definition* of every feature value; the
//! CUDA kernels (behind the `cuda` feature, later) must reproduce it.
pub mod batch;
pub mod cpu;
pub mod csv;
pub mod gpu;
pub mod schema;
pub mod shard;

pub use batch::{FlowBatch, Mark};
pub use shard::{ShardProcessor, ShardStats};
