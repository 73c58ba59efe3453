//! Packet ingestion for tapstream: capture files in, packet records out.
//!
//! This crate owns everything that touches raw packet bytes: reading
//! pcap/pcapng files (gzip-compressed or not), decoding link, network and
//! transport headers into fixed-size [`PacketRecord`]s, counting every packet
//! that cannot become part of a flow by reason, and the per-shard flow table
//! that decides when flows start and end. It depends on no other tapstream
//! crate, so the CPU feature extractor and the CUDA kernels share its types.

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

pub mod capture;
pub mod civil;
pub mod decode;
pub mod flow;
pub mod flowmeta;
pub mod live;
pub mod packet;
pub mod pcapgen;
pub mod skip;

pub use capture::{CaptureError, CaptureFormat, CaptureReader, RawPacket};
pub use decode::decode;
pub use flowmeta::{EndReason, FlowMeta};
pub use packet::PacketRecord;
pub use skip::{SkipCounters, SkipReason};
