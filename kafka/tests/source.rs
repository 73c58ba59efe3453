//! `KafkaSource` run as the wrong kind of source: it reads nothing and ends
//! with a read error, instead of misreading every message and committing.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crossbeam_channel::bounded;
use rdkafka::mocking::MockCluster;
use tapstream_connectors::kafka::{KafkaClientConfig, KafkaFormat, SourceSettings};
use tapstream_ingest::source::{
    ChunkQueues, ChunkWriter, Pacing, PacketChunk, PacketSource, Progress,
};
use tapstream_kafka::KafkaSource;
use tapstream_kernels::Settled;

#[test]
fn a_flows_source_run_for_packets_reads_nothing() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let client: KafkaClientConfig =
        toml::from_str(&format!("brokers = [\"{}\"]", cluster.bootstrap_servers())).unwrap();
    let settings = SourceSettings {
        format: KafkaFormat::Flows,
        topics: vec!["rows".to_string()],
        ..SourceSettings::default()
    };
    let source = KafkaSource::new(
        &client,
        &settings,
        Arc::new(Settled::new(1)),
        // Already told to stop: without the check, the run would end at
        // once with no error.
        Arc::new(AtomicBool::new(true)),
    )
    .unwrap();
    let (decoder_tx, decoder_rx) = bounded(4);
    let (pool_tx, pool_rx) = bounded(4);
    pool_tx.send(PacketChunk::with_capacity(16)).unwrap();
    let queues = ChunkQueues {
        decoders: vec![decoder_tx],
        pool_tx,
        pool_rx,
    };
    let out = ChunkWriter::new(
        queues,
        16,
        Pacing::Offline,
        true,
        Arc::new(AtomicBool::new(false)),
        Arc::new(Progress::default()),
    );
    let report = Box::new(source).run(out);
    let error = report.read_error.expect("a read error");
    assert!(error.contains("`flows`"), "{error}");
    assert_eq!(report.packets, 0);
    assert!(decoder_rx.try_iter().all(|c| c.is_empty()));
}
