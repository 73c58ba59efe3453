//! The Prometheus scrape endpoint (`[metrics] listen`).
//!
//! Why it exists: a sensor or a Kafka consumer runs for weeks, and its
//! operators watch it from Prometheus, not from the end-of-run summary. The
//! stages record counters, gauges and histograms through the `metrics`
//! facade as they go; this module installs the exporter that serves them as
//! Prometheus text on `GET /metrics` (any path), with real histogram buckets
//! for latencies and batch sizes, and says what each metric means.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

/// Latency buckets, seconds: 10 µs to 10 s.
const SECONDS: &[f64] = &[
    1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0,
];

/// Batch-size buckets, rows.
const ROWS: &[f64] = &[
    1.0, 8.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0,
];

/// Serves the metrics on `addr` from a thread of its own until the process
/// ends. Fails when the address cannot be bound or a recorder is already
/// installed.
pub fn serve(addr: SocketAddr) -> Result<()> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_rows".into()), ROWS))
        .context("metrics buckets")?
        .install()
        .with_context(|| format!("starting the metrics endpoint on {addr}"))?;
    describe();
    tracing::info!(message = "metrics endpoint listening", %addr);
    Ok(())
}

/// What kind of metric a name is.
#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every metric tapstream records: kind, name, unit and HELP text.
const METRICS: &[(Kind, &str, Unit, &str)] = &[
    (
        Kind::Counter,
        "tapstream_packets_read_total",
        Unit::Count,
        "Packets read (from the capture file or Kafka messages).",
    ),
    (
        Kind::Counter,
        "tapstream_bytes_read_total",
        Unit::Bytes,
        "Wire bytes of the packets read.",
    ),
    (
        Kind::Counter,
        "tapstream_packets_skipped_total",
        Unit::Count,
        "Packets that could not join a flow, by reason.",
    ),
    (
        Kind::Counter,
        "tapstream_packets_processed_total",
        Unit::Count,
        "Packets the flow workers placed in flows.",
    ),
    (
        Kind::Gauge,
        "tapstream_flows_active",
        Unit::Count,
        "Flows open in the flow tables.",
    ),
    (
        Kind::Counter,
        "tapstream_flows_created_total",
        Unit::Count,
        "Flows opened in the flow tables (continuations of long flows included).",
    ),
    (
        Kind::Counter,
        "tapstream_flows_ended_total",
        Unit::Count,
        "Flows ended, by reason (tcp_termination, active_timeout, idle_timeout, icmp_change, evicted, end_of_input, emergency_timeout).",
    ),
    (
        Kind::Counter,
        "tapstream_flows_evicted_total",
        Unit::Count,
        "Flows ended early because the flow table was full (also counted as ended with reason evicted).",
    ),
    (
        Kind::Counter,
        "tapstream_flow_emergency_total",
        Unit::Count,
        "Times a flow table entered emergency mode: it was full, so shorter timeouts apply (reason emergency_timeout) and unanswered flows are evicted first, until it is 100 - flow.emergency_recovery percent full.",
    ),
    (
        Kind::Gauge,
        "tapstream_flow_emergency_active",
        Unit::Count,
        "Flow tables (shards) in emergency mode now.",
    ),
    (
        Kind::Gauge,
        "tapstream_queue_depth",
        Unit::Count,
        "Batches waiting between stages: decode (packet chunks for the decoders, live capture), flow (flow batches for scoring), alert (alert batches for the sink).",
    ),
    (
        Kind::Counter,
        "tapstream_capture_kernel_drops_total",
        Unit::Count,
        "Packets the kernel dropped because the capture buffer was full (pcap_stats ps_drop).",
    ),
    (
        Kind::Counter,
        "tapstream_capture_interface_drops_total",
        Unit::Count,
        "Packets the interface or its driver dropped (pcap_stats ps_ifdrop).",
    ),
    (
        Kind::Counter,
        "tapstream_capture_queue_drops_total",
        Unit::Count,
        "Packets read from the interface but dropped because the pipeline was full (skip reason queue_full).",
    ),
    (
        Kind::Histogram,
        "tapstream_inference_batch_rows",
        Unit::Count,
        "Rows per inference call.",
    ),
    (
        Kind::Histogram,
        "tapstream_inference_latency_seconds",
        Unit::Seconds,
        "Time per inference call.",
    ),
    (
        Kind::Counter,
        "tapstream_alerts_total",
        Unit::Count,
        "Alerts written, by class.",
    ),
    (
        Kind::Counter,
        "tapstream_alerts_suppressed_total",
        Unit::Count,
        "Alerts not written because of [output.limit], by reason (duplicate_flow, rate_limit).",
    ),
    (
        Kind::Counter,
        "tapstream_eve_reopens_total",
        Unit::Count,
        "Re-opens of the EVE file (SIGHUP, for log rotation), by outcome (ok, error; on error the old file is kept).",
    ),
    (
        Kind::Counter,
        "tapstream_model_reloads_total",
        Unit::Count,
        "Model reloads, by outcome.",
    ),
    (
        Kind::Counter,
        "tapstream_kafka_messages_consumed_total",
        Unit::Count,
        "Kafka messages read by the source.",
    ),
    (
        Kind::Counter,
        "tapstream_kafka_bytes_consumed_total",
        Unit::Bytes,
        "Kafka message value bytes read by the source.",
    ),
    (
        Kind::Counter,
        "tapstream_kafka_malformed_messages_total",
        Unit::Count,
        "Kafka messages that could not be read whole.",
    ),
    (
        Kind::Counter,
        "tapstream_kafka_commits_total",
        Unit::Count,
        "Successful offset commits.",
    ),
    (
        Kind::Counter,
        "tapstream_kafka_commit_errors_total",
        Unit::Count,
        "Failed offset commits.",
    ),
    (
        Kind::Counter,
        "tapstream_kafka_rebalances_total",
        Unit::Count,
        "Partition revocations handled.",
    ),
    (
        Kind::Gauge,
        "tapstream_kafka_read_lag_messages",
        Unit::Count,
        "Messages of a partition not read yet (high watermark minus the next offset to read).",
    ),
    (
        Kind::Gauge,
        "tapstream_kafka_commit_lag_messages",
        Unit::Count,
        "Messages of a partition past the committed offset, or past the log start before any commit (what a restart reads again).",
    ),
    (
        Kind::Counter,
        "tapstream_kafka_messages_produced_total",
        Unit::Count,
        "Alert messages the broker acknowledged.",
    ),
    (
        Kind::Counter,
        "tapstream_kafka_bytes_produced_total",
        Unit::Bytes,
        "Alert message bytes the broker acknowledged.",
    ),
    (
        Kind::Counter,
        "tapstream_kafka_delivery_errors_total",
        Unit::Count,
        "Alert messages the broker did not take.",
    ),
];

/// HELP lines and units of every metric tapstream records.
fn describe() {
    for &(kind, name, unit, help) in METRICS {
        match kind {
            Kind::Counter => describe_counter!(name, unit, help),
            Kind::Gauge => describe_gauge!(name, unit, help),
            Kind::Histogram => describe_histogram!(name, unit, help),
        }
    }
}
