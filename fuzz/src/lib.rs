//! The bodies of tapstream's fuzz targets, one public function per target.
//!
//! Each `fuzz_targets/<name>.rs` is one line that hands libFuzzer's input to
//! the function of the same name here. Keeping the checks in a library lets
//! plain `cargo test` (no libFuzzer, no sanitizer) replay every committed
//! seed through exactly the checks the fuzzer runs, and lets the seed
//! generator ([`seeds`]) share the input encodings with the targets.
//!
//! Every function panics on a broken promise (that is how libFuzzer sees a
//! finding) and returns quietly on input it cannot use. The promises checked
//! are the ones the crates document: the capture reader and the decoder
//! never panic and say why they stop; the flow table reports every flow's
//! end before its slot is reused and loses no packet; an EVE line parses
//! back to the alert it was written from; config and Kafka message decoding
//! turn any bytes into a value or an error.

pub mod capture;
pub mod config;
pub mod eve;
pub mod flow;
pub mod kafka;
pub mod seeds;

pub use capture::{capture_reader, decode};
pub use config::config;
pub use eve::eve_roundtrip;
pub use flow::flow_table;
pub use kafka::{kafka_flows, kafka_packets};
