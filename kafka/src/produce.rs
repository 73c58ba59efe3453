//! `tapstream kafka produce`: a capture into a `packets` topic, the way the
//! Kafka source expects it.
//!
//! Why it exists: to try the Kafka deployment (and to test and benchmark
//! it) something must feed the topic, and the contract matters — a flow's
//! packets must stay in one partition, in capture order. Packets are
//! decoded to find their addresses, spread over the topic's partitions by
//! the same symmetric address-pair hash and multiply-shift the pipeline
//! shards with (so the fragments of a datagram stay with its flow; or by
//! the 5-tuple, which spreads a busy host pair over the partitions), and
//! written as pcap chunks (`encoding = "capture"`) of up to
//! `chunk_packets` packets per message. Packets without IP addresses go to
//! partition 0 (the consumer counts them as skipped, as `run --pcap`
//! does).

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;
use tapstream_connectors::kafka::{KafkaClientConfig, KafkaConfigError, PRODUCER_FORCED};
use tapstream_ingest::decode::pair_of;
use tapstream_ingest::pcapgen::PcapWriter;
use tapstream_ingest::records::{self, ReadError};
use tapstream_ingest::shard_of;

/// Why a capture could not be produced whole.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProduceError {
    /// The client settings were refused.
    #[error("Kafka client settings")]
    Config(#[from] KafkaConfigError),
    /// A librdkafka call failed (`what` says which).
    #[error("{what}")]
    Kafka {
        /// What was being done.
        what: String,
        /// librdkafka's error.
        #[source]
        source: KafkaError,
    },
    /// The topic does not exist.
    #[error("topic {0} does not exist (or has no partitions); create it first")]
    NoTopic(String),
    /// The capture could not be read whole.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// A chunk could not be written.
    #[error("writing a pcap chunk")]
    Chunk(#[from] std::io::Error),
    /// The broker did not acknowledge every message.
    #[error("{0} messages were not delivered")]
    Undelivered(u64),
}

fn kafka(what: impl Into<String>) -> impl FnOnce(KafkaError) -> ProduceError {
    let what = what.into();
    move |source| ProduceError::Kafka { what, source }
}

/// What was produced.
#[derive(Clone, Debug, Default)]
pub struct ProduceReport {
    /// Packets read from the capture.
    pub packets: u64,
    /// Messages acknowledged by the broker.
    pub messages: u64,
    /// Message bytes acknowledged.
    pub bytes: u64,
    /// Partitions of the topic.
    pub partitions: usize,
    /// Times the local queue was full and the producer waited.
    pub waits: u64,
    /// Wall time, start to last acknowledgement.
    pub wall: Duration,
}

/// Counts deliveries.
#[derive(Default)]
struct Counting {
    delivered: AtomicU64,
    bytes: AtomicU64,
    failed: AtomicU64,
}

impl ClientContext for Counting {}

impl ProducerContext for Counting {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(m) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
                let n = rdkafka::message::Message::payload(m).map_or(0, <[u8]>::len) as u64;
                self.bytes.fetch_add(n, Ordering::Relaxed);
            }
            Err((e, _)) => {
                if self.failed.fetch_add(1, Ordering::Relaxed) < 10 {
                    tracing::warn!(message = "message not delivered", error = %e);
                }
            }
        }
    }
}

/// Settings of one produce run.
#[derive(Clone, Debug)]
pub struct ProduceOptions {
    /// The topic.
    pub topic: String,
    /// Packets per message at most.
    pub chunk_packets: usize,
    /// Bytes per message at most (one larger packet still gets a message of
    /// its own); below the brokers' `message.max.bytes` (1 MB by default).
    pub chunk_bytes: usize,
    /// Longest wait for the last acknowledgements.
    pub timeout: Duration,
    /// Partition by 5-tuple (else by address pair, so that the fragments of
    /// a datagram stay with its flow).
    pub by_flow: bool,
}

/// One partition's chunk being built.
struct Pending {
    w: Option<PcapWriter<Vec<u8>>>,
    link_type: u32,
    packets: usize,
    /// Bytes written to `w` so far.
    bytes: usize,
}

/// Produces `pcap` into the topic with `client`'s settings; returns when
/// every message is acknowledged (an error if any was not).
pub fn produce(
    pcap: &Path,
    client: &KafkaClientConfig,
    opts: &ProduceOptions,
) -> Result<ProduceReport, ProduceError> {
    let started = Instant::now();
    // A bad path fails at once, before any broker is asked.
    let reader = records::open(pcap)?;
    let c = crate::client_config(
        client,
        &[("linger.ms", "5"), ("batch.size", "1000000")],
        PRODUCER_FORCED,
    )?;
    let producer: BaseProducer<Counting> = c
        .create_with_context(Counting::default())
        .map_err(kafka("creating the Kafka producer"))?;
    let partitions = partitions(&producer, &opts.topic)?;
    let mut report = ProduceReport {
        partitions,
        ..ProduceReport::default()
    };
    let mut pending: Vec<Pending> = (0..partitions)
        .map(|_| Pending {
            w: None,
            link_type: 0,
            packets: 0,
            bytes: 0,
        })
        .collect();
    let mut failed = None;
    let mut rec = tapstream_ingest::PacketRecord::default();
    let count = records::for_each_packet_of(reader, pcap, |pkt| {
        let key = if opts.by_flow {
            tapstream_ingest::decode(pkt, &mut rec)
                .ok()
                .map(|()| rec.hash)
        } else {
            pair_of(pkt)
        };
        let part = key.map_or(0, |h| shard_of(h, partitions));
        let Some(p) = pending.get_mut(part) else {
            return ControlFlow::Continue(());
        };
        match add(&producer, opts, part, p, pkt, &mut report) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                failed = Some(e);
                ControlFlow::Break(())
            }
        }
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    // Truncated records were never produced: the packets are those handed on.
    report.packets = count.packets - count.truncated;
    for (part, p) in pending.iter_mut().enumerate() {
        if p.w.is_some() {
            send(&producer, &opts.topic, part, p, &mut report)?;
        }
    }
    producer
        .flush(opts.timeout)
        .map_err(kafka("waiting for the broker to acknowledge every message"))?;
    let ctx = producer.context();
    report.messages = ctx.delivered.load(Ordering::Relaxed);
    report.bytes = ctx.bytes.load(Ordering::Relaxed);
    let failed = ctx.failed.load(Ordering::Relaxed);
    report.wall = started.elapsed();
    if failed > 0 {
        return Err(ProduceError::Undelivered(failed));
    }
    Ok(report)
}

/// The partition count of `topic`, from the broker's metadata.
fn partitions(producer: &BaseProducer<Counting>, topic: &str) -> Result<usize, ProduceError> {
    let meta = producer
        .client()
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(kafka(format!("reading the metadata of topic {topic}")))?;
    let partitions = meta
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().len())
        .unwrap_or(0);
    if partitions == 0 {
        return Err(ProduceError::NoTopic(topic.to_owned()));
    }
    Ok(partitions)
}

/// Adds a packet to its partition's chunk, sending the chunk first when the
/// packet does not fit it, and after when it is full.
fn add(
    producer: &BaseProducer<Counting>,
    opts: &ProduceOptions,
    part: usize,
    p: &mut Pending,
    pkt: &tapstream_ingest::RawPacket<'_>,
    report: &mut ProduceReport,
) -> Result<(), ProduceError> {
    // A pcap record is a 16-byte header and the captured bytes.
    let record = 16 + pkt.data.len();
    if p.w.is_some() && (p.link_type != pkt.link_type || p.bytes + record > opts.chunk_bytes) {
        send(producer, &opts.topic, part, p, report)?;
    }
    if p.w.is_none() {
        p.w = Some(PcapWriter::new(
            Vec::with_capacity(64 * 1024),
            pkt.link_type,
        )?);
        p.link_type = pkt.link_type;
        p.bytes = 24;
    }
    if let Some(w) = p.w.as_mut() {
        w.write_record(pkt.ts_us, pkt.orig_len, pkt.data)?;
        p.packets += 1;
        p.bytes += record;
    }
    if p.packets >= opts.chunk_packets {
        send(producer, &opts.topic, part, p, report)?;
    }
    producer.poll(Duration::ZERO);
    Ok(())
}

/// Sends a partition's chunk, waiting while the local queue is full.
fn send(
    producer: &BaseProducer<Counting>,
    topic: &str,
    part: usize,
    p: &mut Pending,
    report: &mut ProduceReport,
) -> Result<(), ProduceError> {
    let Some(w) = p.w.take() else {
        return Ok(());
    };
    p.packets = 0;
    p.bytes = 0;
    let bytes = w.finish()?;
    // Partitions are counted by an i32 in Kafka's metadata.
    let partition = i32::try_from(part).unwrap_or(i32::MAX);
    let key = part.to_string();
    loop {
        let record = BaseRecord::to(topic)
            .partition(partition)
            .key(&key)
            .payload(&bytes);
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                report.waits += 1;
                producer.poll(Duration::from_millis(50));
            }
            Err((e, _)) => return Err(kafka("producing a message")(e)),
        }
    }
}
