//! Helpers shared by the sink tests: a flow and alerts to write.

#![allow(dead_code)]

use tapstream_connectors::eve::{Alert, ModelInfo};
use tapstream_connectors::sink::{AlertSink, SinkError};
use tapstream_ingest::{EndReason, FlowMeta};

/// A TCP flow 10.0.0.1:40000 → 10.0.0.2:22 with id `id`.
pub fn flow(id: u64) -> FlowMeta {
    let mut src = [0u8; 16];
    src[..4].copy_from_slice(&[10, 0, 0, 1]);
    let mut dst = [0u8; 16];
    dst[..4].copy_from_slice(&[10, 0, 0, 2]);
    FlowMeta {
        flow_id: id,
        src,
        dst,
        sport: 40_000,
        dport: 22,
        proto: 6,
        v6: false,
        icmp_type: 0,
        icmp_code: 0,
        start_us: 1_600_000_000_000_000,
        last_us: 1_600_000_010_000_000,
        pkts_fwd: 20,
        pkts_bwd: 18,
        bytes_fwd: 4_000,
        bytes_bwd: 6_000,
        reason: EndReason::TcpTermination,
    }
}

/// Writes one alert per id (flows from [`flow`]).
pub fn write_ids(
    sink: &mut dyn AlertSink,
    ids: impl IntoIterator<Item = u64>,
) -> Result<(), SinkError> {
    let model = ModelInfo::new("m", "1", "00");
    for id in ids {
        let f = flow(id);
        sink.write(&Alert {
            flow: &f,
            score: 0.95,
            class: "SSH-Patator",
            class_index: 5,
            model: &model,
            threshold: 0.5,
            episode: None,
            explanation: None,
        })?;
    }
    Ok(())
}
