//! `tapstream kafka create-topics` and `tapstream kafka produce`: what a
//! Kafka deployment is tried and tested with. Client settings come from
//! `[kafka]` of the configuration.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Subcommand;
use tapstream_kafka::produce::{produce, ProduceOptions};

use crate::common::config_or_default;

#[derive(Subcommand, Debug)]
pub enum KafkaCommand {
    /// Create topics (a no-op for one that exists with that many
    /// partitions). Client settings come from [kafka] of the config.
    CreateTopics {
        /// Topic names.
        #[arg(required = true)]
        topics: Vec<String>,
        /// Partitions per topic.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(i32).range(1..=100_000))]
        partitions: i32,
        /// Replicas per partition.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=100))]
        replication: i32,
        /// TOML configuration file (its [kafka] section).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Write a capture into a `packets` topic as the Kafka source reads it:
    /// pcap chunks, each flow's packets in one partition, in capture order.
    /// Client settings come from [kafka] of the config.
    Produce {
        /// Capture file.
        #[arg(long, value_name = "FILE")]
        pcap: PathBuf,
        /// Topic (must exist; its partition count is read from the broker).
        #[arg(long, default_value = "packets")]
        topic: String,
        /// Packets per message at most.
        #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        chunk_packets: u32,
        /// Bytes per message at most (keep it under the brokers'
        /// message.max.bytes).
        #[arg(long, default_value_t = 512 * 1024, value_parser = clap::value_parser!(u32).range(1024..=1 << 30))]
        chunk_bytes: u32,
        /// What picks a packet's partition: `pair` (its address pair, so the
        /// fragments of a datagram stay with its flow) or `flow` (the
        /// 5-tuple: one busy host pair spread over the partitions, but a
        /// fragmented datagram may be split between consumers).
        #[arg(long, value_enum, default_value_t = PartitionBy::Pair)]
        partition_by: PartitionBy,
        /// TOML configuration file (its [kafka] section).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

/// What picks a packet's partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PartitionBy {
    /// The address pair.
    Pair,
    /// The 5-tuple.
    Flow,
}

pub fn run(command: KafkaCommand) -> Result<ExitCode> {
    match command {
        KafkaCommand::Produce {
            pcap,
            topic,
            chunk_packets,
            chunk_bytes,
            partition_by,
            config,
        } => {
            let cfg = config_or_default(config.as_deref())?;
            let opts = ProduceOptions {
                topic,
                chunk_packets: chunk_packets as usize,
                chunk_bytes: chunk_bytes as usize,
                timeout: Duration::from_secs(60),
                by_flow: partition_by == PartitionBy::Flow,
            };
            let r = produce(&pcap, cfg.kafka_client()?, &opts)?;
            let secs = r.wall.as_secs_f64().max(1e-9);
            eprintln!(
                "produced {} packets in {} messages ({} bytes) to {} ({} partitions) in {:.2} s: {:.0} packets/s, {:.0} messages/s{}",
                r.packets,
                r.messages,
                r.bytes,
                opts.topic,
                r.partitions,
                secs,
                r.packets as f64 / secs,
                r.messages as f64 / secs,
                if r.waits > 0 { format!(" ({} waits for a full queue)", r.waits) } else { String::new() }
            );
        }
        KafkaCommand::CreateTopics {
            topics,
            partitions,
            replication,
            config,
        } => {
            let cfg = config_or_default(config.as_deref())?;
            let client = tapstream_kafka::client_config(cfg.kafka_client()?, &[], &[])
                .context("Kafka client settings")?;
            for t in &topics {
                tapstream_kafka::admin::create_topic(&client, t, partitions, replication)
                    .map_err(|e| anyhow::anyhow!(e))?;
                eprintln!("topic {t}: {partitions} partitions, {replication} replicas");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
