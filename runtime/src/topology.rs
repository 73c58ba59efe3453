//! The one topology: a source's packets through decoders and flow workers to
//! the consumer stage, on threads joined by bounded queues.
//!
//! ```text
//! source ──PacketChunk i──▶ decoder i mod D ──DecodedChunk i──▶ worker 0..N ──FlowBatch──▶ consumer
//! (any PacketSource:        (decode, count     (to every          (flow table +          (inference →
//!  file, live, Kafka;        skips, group       worker)            features, one          alert sink,
//!  one ChunkWriter)          by flow hash)                         shard; scores with     or CSV export)
//!                                                                  placement = workers)
//! ```
//!
//! A source deals its chunks to every decoder in turn. Each decoder sends
//! every chunk it decodes to every worker, and a worker takes chunk i from
//! decoder i mod D, so it sees its records in capture order whatever D is.
//! Several sources (live capture threads in a fanout group) get one decoder
//! each, and the workers take chunks from whichever decoder has one: each
//! source sees whole flows, so only the clock interleaves. A source of flow
//! rows ([`run_rows`]) feeds the consumer directly.
//!
//! Every queue is a bounded crossbeam channel and every chunk comes back
//! through a pool, so memory is bounded and the steady state allocates only
//! a small shared handle per chunk. Offline input never drops: when a worker
//! falls behind, the decoders wait for free chunks and then the source does.
//! Each stage measures the time it spends blocked on its queues, so the
//! summary can report per-stage busy rates.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Instant;
use tapstream_ingest::defrag::DefragConfig;

use anyhow::{anyhow, bail, Context, Result};
use crossbeam_channel::{bounded, Receiver, Sender};
use tapstream_ingest::queue::Pooled;
use tapstream_ingest::source::{ChunkQueues, ChunkWriter, FileSource, PacketChunk, Progress};
use tapstream_ingest::{PacketSource, SourceReport};
use tapstream_kernels::{Backend, FlowBatch, FlowSource, FlowWriter};

use crate::config::{Config, Device, NoContext};
use crate::report::{ConsumerReport, ReaderReport, RunReport, WorkersReport};
use crate::stage::consumer::Consumer;
use crate::stage::context::context_loop;
use crate::stage::decode::{decoder_loop, Decoded, DecoderReport};
use crate::stage::inbox::Inbox;
use crate::stage::worker::{Outbox, Worker, WorkerOutcome};

/// Flow batches in flight per worker between the workers and the consumer.
const FLOW_QUEUE: usize = 16;
/// Flow batches in flight per worker between the workers and the context
/// stage, when it runs.
const CONTEXT_QUEUE: usize = 4;

/// Reads the capture file at `path`, runs it through flows and features, and
/// hands ended flows to `consumer`. Returns when every stage has drained.
pub fn run_file(
    path: &Path,
    cfg: &Config,
    consumer: Consumer,
    progress: Arc<Progress>,
) -> Result<RunReport> {
    let started = Instant::now();
    let source = FileSource::open(path).with_context(|| format!("{}", path.display()))?;
    let sources: Vec<Box<dyn PacketSource>> = vec![Box::new(source)];
    run_sources(
        sources,
        path.to_path_buf(),
        started,
        cfg,
        consumer,
        progress,
    )
}

/// The packet pipeline for `sources` (one, or the capture threads of one
/// interface): decoders, flow workers, consumer. Returns when every stage
/// has drained.
pub fn run_packets(
    sources: Vec<Box<dyn PacketSource>>,
    cfg: &Config,
    consumer: Consumer,
    progress: Arc<Progress>,
) -> Result<RunReport> {
    let started = Instant::now();
    let input = PathBuf::from(sources.first().map(|s| s.describe()).unwrap_or_default());
    run_sources(sources, input, started, cfg, consumer, progress)
}

/// [`run_packets`], for a run that started at `started` and reads `input`.
fn run_sources(
    sources: Vec<Box<dyn PacketSource>>,
    input: PathBuf,
    started: Instant,
    cfg: &Config,
    consumer: Consumer,
    progress: Arc<Progress>,
) -> Result<RunReport> {
    let context = context_runs(cfg, &consumer)?;
    let backend = if sources.iter().any(|s| s.numbered()) {
        // A GPU shard hands ended flows off a batch late, after the marks
        // that offset commits rely on.
        if cfg.gpu.device == Device::Cuda {
            bail!(
                "the Kafka source needs CPU features (gpu.device = \"cpu\" or \"auto\"): \
                 the GPU extractor cannot yet say which offsets are safe to commit"
            );
        }
        Backend::Cpu
    } else if context {
        // `context_runs` refused gpu.device = "cuda" (NoContext).
        Backend::Cpu
    } else {
        crate::device::open(&cfg.gpu)?
    };
    let shape = Shape::new(cfg, sources.len());
    let stop = Arc::new(AtomicBool::new(false));
    let (flow_tx, flow_rx) = bounded::<FlowBatch>(FLOW_QUEUE * shape.workers);
    let (flow_pool_tx, flow_pool_rx) =
        bounded::<FlowBatch>(FLOW_QUEUE * shape.workers + shape.workers + 2);
    let (decoder_txs, worker_rxs) = shape.decoded_queues();
    // With context, the workers' batches pass the context stage first.
    let (to_consumer, context_stage) = if context {
        // Short: every batch here is one more in flight (the consumer's
        // queue holds FLOW_QUEUE per worker already).
        let (tx, rx) = bounded::<FlowBatch>(CONTEXT_QUEUE * shape.workers);
        let table = cfg.context.table();
        let workers = shape.workers;
        let h = thread::Builder::new()
            .name("context".into())
            .spawn(move || context_loop(rx, flow_tx, table, workers))
            .context("spawning the context stage")?;
        (tx, Some(h))
    } else {
        (flow_tx, None)
    };
    let workers = spawn_workers(
        &shape,
        cfg,
        &backend,
        &consumer,
        worker_rxs,
        (to_consumer, flow_pool_rx),
        (&stop, context),
    )?;
    let (chunk_txs, decoders) = spawn_decoders(&shape, decoder_txs)?;
    let mut consumer = consumer;
    consumer.watch_progress(&progress);
    let consumer = spawn_consumer(consumer, flow_rx, flow_pool_tx, &stop, context)?;
    let pool = chunk_pool(&shape)?;
    let setup = started.elapsed();
    let sources = spawn_sources(sources, &shape, chunk_txs, pool, &stop, &progress)?;

    let mut reader = join_sources(sources)?;
    reader.decoders = shape.decoders;
    join_decoders(decoders, &mut reader)?;
    for (reason, n) in reader.skipped.iter() {
        metrics::counter!("tapstream_packets_skipped_total", "reason" => reason.as_str())
            .increment(n);
    }
    let (workers, errors) = join_workers(workers, shape.workers, backend.describe())?;
    let context = context_stage
        .map(|h| h.join().map_err(|_| anyhow!("context stage panicked")))
        .transpose()?;
    let consumer = consumer
        .join()
        .map_err(|_| anyhow!("consumer thread panicked"))??;
    errors.check()?;
    Ok(RunReport {
        input,
        reader,
        workers,
        context,
        consumer,
        wall: started.elapsed(),
        setup,
    })
}

/// Scores a source of flow rows (the Kafka `flows` format): rows go from the
/// source straight to the consumer (no decoders, no flow workers).
pub fn run_rows(
    source: Box<dyn FlowSource>,
    cfg: &Config,
    consumer: Consumer,
    progress: Arc<Progress>,
) -> Result<RunReport> {
    let started = Instant::now();
    let input = PathBuf::from(source.describe());
    let (flow_tx, flow_rx) = bounded::<FlowBatch>(FLOW_QUEUE);
    let (flow_pool_tx, flow_pool_rx) = bounded::<FlowBatch>(FLOW_QUEUE + 2);
    if consumer.needs_context() {
        let why = NoContext::FlowRows;
        bail!("the model reads context features, but {why}; {}", why.fix());
    }
    let stop = Arc::new(AtomicBool::new(false));
    let consumer_handle = spawn_consumer(consumer, flow_rx, flow_pool_tx, &stop, false)?;
    let setup = started.elapsed();
    let out = FlowWriter::new(
        flow_tx,
        flow_pool_rx,
        cfg.pipeline.batch_flows,
        stop,
        progress,
    );
    let reader = thread::Builder::new()
        .name("reader".into())
        .spawn(move || source.run(out))
        .context("spawning reader")?
        .join()
        .map_err(|_| anyhow!("reader thread panicked"))?;
    let consumer = consumer_handle
        .join()
        .map_err(|_| anyhow!("consumer thread panicked"))??;
    Ok(RunReport {
        input,
        reader: reader.into(),
        workers: WorkersReport {
            device: "none (flow rows from Kafka)".into(),
            ..WorkersReport::default()
        },
        context: None,
        consumer,
        wall: started.elapsed(),
        setup,
    })
}

/// Whether the context stage runs: `[context]` and the consumer's model
/// decide; a model that needs context, or `[context] enabled = "on"`, where
/// the run cannot make it ([`NoContext`]) is an error.
fn context_runs(cfg: &Config, consumer: &Consumer) -> Result<bool> {
    let needed = consumer.needs_context();
    if !needed && !cfg.context.runs(false) {
        return Ok(false);
    }
    match NoContext::of(cfg, false) {
        None => Ok(true),
        // The workers score before the stage: only a first model that
        // reads context minds (`tapstream features --context` and further
        // detectors, which score in the alert stage, do not).
        Some(NoContext::WorkersPlacement) if !consumer.first_needs_context() => Ok(true),
        Some(why) if needed => bail!("the model reads context features, but {why}; {}", why.fix()),
        Some(why) => bail!("[context] enabled = \"on\", but {why}; {}", why.fix()),
    }
}

/// How many threads of each stage a run has, and how the queues between
/// them are sized.
struct Shape {
    sources: usize,
    decoders: usize,
    workers: usize,
    /// One source: workers take chunk i from decoder i mod D.
    ordered: bool,
    chunk_packets: usize,
    /// Chunks per decoder pool (and per decoder→worker queue).
    decoded_per_decoder: usize,
    /// Each worker's reassembly table (`None`: fragments are skipped).
    defrag: Option<DefragConfig>,
    /// Packets are sharded by 5-tuple (else by address pair).
    by_flow: bool,
}

impl Shape {
    fn new(cfg: &Config, sources: usize) -> Self {
        let ordered = sources <= 1;
        Shape {
            sources: sources.max(1),
            decoders: if ordered {
                cfg.decoder_threads()
            } else {
                sources
            },
            workers: cfg.worker_threads(),
            ordered,
            chunk_packets: cfg.pipeline.batch_packets,
            decoded_per_decoder: cfg.pipeline.queue_batches + 1,
            defrag: cfg.defrag.table(cfg.worker_threads()),
            by_flow: cfg.pipeline.shard_by == crate::config::ShardBy::Flow,
        }
    }

    /// Raw chunks: two per decoder (one being decoded, one queued) and two
    /// per source (one being filled, one spare).
    fn raw_pool_size(&self) -> usize {
        2 * self.decoders + 2 * self.sources
    }

    /// The queue from every decoder to every worker: each decoder owns Q+1
    /// decoded chunks and its queue to each worker holds them all, so it
    /// only ever waits for its pool. Returns each decoder's senders and
    /// each worker's receivers.
    #[allow(clippy::type_complexity)]
    fn decoded_queues(&self) -> (Vec<Vec<Sender<Decoded>>>, Vec<Vec<Receiver<Decoded>>>) {
        let mut txs: Vec<Vec<Sender<Decoded>>> = (0..self.decoders)
            .map(|_| Vec::with_capacity(self.workers))
            .collect();
        let mut rxs: Vec<Vec<Receiver<Decoded>>> = (0..self.workers)
            .map(|_| Vec::with_capacity(self.decoders))
            .collect();
        for d in &mut txs {
            for w in &mut rxs {
                let (tx, rx) = bounded::<Decoded>(self.decoded_per_decoder);
                d.push(tx);
                w.push(rx);
            }
        }
        (txs, rxs)
    }
}

/// Starts one flow worker per shard, each with its extractor and (with the
/// model in the workers) its scorer.
fn spawn_workers(
    shape: &Shape,
    cfg: &Config,
    backend: &Backend,
    consumer: &Consumer,
    worker_rxs: Vec<Vec<Receiver<Decoded>>>,
    (flow_tx, flow_pool_rx): (Sender<FlowBatch>, Receiver<FlowBatch>),
    (stop, context): (&Arc<AtomicBool>, bool),
) -> Result<Vec<JoinHandle<WorkerOutcome>>> {
    let models = consumer.worker_models();
    if let Some(m) = &models {
        if m.workers() != shape.workers {
            bail!(
                "{} model sessions were loaded for {} flow workers",
                m.workers(),
                shape.workers
            );
        }
    }
    let extra = if context {
        crate::stage::context::BYTES_PER_OPEN_FLOW
    } else {
        0
    };
    let flow_cfg = cfg.flow.flow_config_with(shape.workers, extra);
    let mut handles = Vec::with_capacity(shape.workers);
    for (shard, rxs) in worker_rxs.into_iter().enumerate() {
        let mut scorer = models
            .as_ref()
            .map(|m| m.scorer(shard, cfg.inference.batch_rows))
            .transpose()?;
        // A GPU shard may take the scorer, to score on the device.
        let extractor =
            crate::device::extractor(backend, flow_cfg, shard as u32, &cfg.gpu, &mut scorer)?;
        let outbox = Outbox::new(
            shard,
            scorer,
            (flow_tx.clone(), flow_pool_rx.clone()),
            cfg.pipeline.batch_flows,
            stop.clone(),
        )
        .with_context(context);
        let inbox = Inbox::new(rxs, shape.ordered);
        let defrag = shape.defrag;
        let h = thread::Builder::new()
            .name(format!("flow-{shard}"))
            .spawn(move || {
                Worker::new(shard, extractor, outbox)
                    .with_defrag(defrag)
                    .run(inbox)
            })
            .context("spawning flow worker")?;
        handles.push(h);
    }
    Ok(handles)
}

/// The queue to each decoder and the decoders' threads.
type Decoders = (
    Vec<Sender<Pooled<PacketChunk>>>,
    Vec<JoinHandle<DecoderReport>>,
);

/// Starts the decoders, each sending to every worker.
fn spawn_decoders(shape: &Shape, decoder_txs: Vec<Vec<Sender<Decoded>>>) -> Result<Decoders> {
    let mut chunk_txs = Vec::with_capacity(shape.decoders);
    let mut handles = Vec::with_capacity(shape.decoders);
    for (d, txs) in decoder_txs.into_iter().enumerate() {
        let (tx, rx) = bounded::<Pooled<PacketChunk>>(shape.raw_pool_size());
        chunk_txs.push(tx);
        let pool = shape.decoded_per_decoder;
        let settings = (shape.defrag.is_some(), shape.by_flow);
        let h = thread::Builder::new()
            .name(format!("decode-{d}"))
            .spawn(move || decoder_loop(rx, txs, pool, settings))
            .context("spawning decoder")?;
        handles.push(h);
    }
    Ok((chunk_txs, handles))
}

/// Starts the consumer stage on its own thread; when it fails, `stop` is
/// set (nothing downstream can take flows, so reading stops).
fn spawn_consumer(
    consumer: Consumer,
    rx: Receiver<FlowBatch>,
    pool: Sender<FlowBatch>,
    stop: &Arc<AtomicBool>,
    context: bool,
) -> Result<JoinHandle<Result<ConsumerReport>>> {
    let stop = stop.clone();
    thread::Builder::new()
        .name("consumer".into())
        .spawn(move || {
            let r = consumer.run(rx, pool, &stop, context);
            if r.is_err() {
                stop.store(true, Ordering::Relaxed);
            }
            r
        })
        .context("spawning consumer")
}

/// The packet chunks the sources fill, allocated up front (start-up).
fn chunk_pool(shape: &Shape) -> Result<(Sender<PacketChunk>, Receiver<PacketChunk>)> {
    let pool_size = shape.raw_pool_size();
    let (pool_tx, pool_rx) = bounded::<PacketChunk>(pool_size);
    for _ in 0..pool_size {
        pool_tx
            .send(PacketChunk::with_capacity(shape.chunk_packets))
            .map_err(|_| anyhow!("chunk pool closed during start-up"))?;
    }
    Ok((pool_tx, pool_rx))
}

/// Starts each source on a reader thread of its own, dealing to all the
/// decoders (one source) or to its own decoder (several).
fn spawn_sources(
    sources: Vec<Box<dyn PacketSource>>,
    shape: &Shape,
    chunk_txs: Vec<Sender<Pooled<PacketChunk>>>,
    (pool_tx, pool_rx): (Sender<PacketChunk>, Receiver<PacketChunk>),
    stop: &Arc<AtomicBool>,
    progress: &Arc<Progress>,
) -> Result<Vec<JoinHandle<SourceReport>>> {
    let mut per_source: Vec<Vec<_>> = if shape.ordered {
        vec![chunk_txs]
    } else {
        chunk_txs.into_iter().map(|tx| vec![tx]).collect()
    };
    let mut handles = Vec::with_capacity(sources.len());
    for (i, source) in sources.into_iter().enumerate() {
        let decoders = std::mem::take(per_source.get_mut(i).context("a source without decoders")?);
        let queues = ChunkQueues {
            decoders,
            pool_tx: pool_tx.clone(),
            pool_rx: pool_rx.clone(),
        };
        let (pacing, numbered) = (source.pacing(), source.numbered());
        let (stop, progress) = (stop.clone(), progress.clone());
        let chunk_packets = shape.chunk_packets;
        let h = thread::Builder::new()
            .name(if i == 0 {
                "reader".into()
            } else {
                format!("reader-{i}")
            })
            .spawn(move || {
                let out = ChunkWriter::new(queues, chunk_packets, pacing, numbered, stop, progress);
                source.run(out)
            })
            .context("spawning reader")?;
        handles.push(h);
    }
    Ok(handles)
}

/// Waits for every source and merges what they counted.
fn join_sources(handles: Vec<JoinHandle<SourceReport>>) -> Result<ReaderReport> {
    let mut total = SourceReport::default();
    for h in handles {
        total.merge(h.join().map_err(|_| anyhow!("reader thread panicked"))?);
    }
    Ok(total.into())
}

/// Waits for every decoder and adds what they counted to `reader`.
fn join_decoders(handles: Vec<JoinHandle<DecoderReport>>, reader: &mut ReaderReport) -> Result<()> {
    for h in handles {
        let d = h.join().map_err(|_| anyhow!("decoder thread panicked"))?;
        reader.decoded += d.decoded;
        reader.fragments += d.fragments;
        reader.skipped.merge(&d.skipped);
        reader.decode_busy += d.busy;
    }
    Ok(())
}

/// Failures of the flow workers, reported once the consumer has drained.
struct WorkerErrors {
    device: Option<String>,
    scoring: Option<String>,
}

impl WorkerErrors {
    fn check(self) -> Result<()> {
        if let Some(e) = self.device {
            bail!("the GPU extractor failed, flows were lost: {e}");
        }
        if let Some(e) = self.scoring {
            bail!("a flow worker could not score its flows, which were lost: {e}");
        }
        Ok(())
    }
}

/// Waits for every worker and sums what they counted.
fn join_workers(
    handles: Vec<JoinHandle<WorkerOutcome>>,
    workers: usize,
    device: String,
) -> Result<(WorkersReport, WorkerErrors)> {
    let mut report = WorkersReport {
        workers,
        device,
        ..WorkersReport::default()
    };
    let mut errors = WorkerErrors {
        device: None,
        scoring: None,
    };
    for h in handles {
        let w = h.join().map_err(|_| anyhow!("flow worker panicked"))?;
        report.add(&w.stats);
        report.defrag.add(&w.defrag);
        report.busy += w.busy;
        errors.device = errors.device.or(w.device_error);
        errors.scoring = errors.scoring.or(w.scoring_error);
    }
    Ok((report, errors))
}
