//! The TOML configuration: every knob of a run, checked before anything starts.
//!
//! Every field has a default, so an empty file (or no file) is a valid
//! configuration. Unknown fields are rejected so a typo never silently falls
//! back to a default, and [`Config::validate`] checks ranges and cross-field
//! rules, returning a typed error before a single packet is read. Command-line
//! flags override the file (see `cli.rs`). `tapstream config --default`
//! prints a fully commented file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Errors found while loading or checking a configuration.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema (unknown field, wrong type, …).
    #[error("invalid config {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the TOML parser said, with line and column.
        message: String,
    },
    /// A value is out of its allowed range.
    #[error("config field `{field}`: {message}")]
    Invalid {
        /// Dotted path of the field, e.g. `flow.timeout`.
        field: &'static str,
        /// What is wrong and what is allowed.
        message: String,
    },
}

/// The whole configuration.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Flow table: timeouts and size.
    pub flow: FlowSection,
    /// Threads, batch sizes and queue depths.
    pub pipeline: PipelineSection,
    /// The model to score flows with.
    pub model: ModelSection,
    /// ONNX Runtime session settings and inference batching.
    pub inference: InferenceSection,
    /// Where alerts go.
    pub output: OutputSection,
    /// Where flow features are computed.
    pub gpu: GpuSection,
    /// Packet sources besides capture files.
    pub source: SourceSection,
    /// The Prometheus endpoint.
    pub metrics: MetricsSection,
    /// Live capture from an interface (`run --interface`).
    pub capture: CaptureSection,
    /// Who the process runs as after opening the capture.
    pub privileges: PrivilegesSection,
    /// `[kafka]`: the Kafka client (brokers, TLS/SASL, librdkafka
    /// properties), shared by the Kafka source, the Kafka alert sink and
    /// `tapstream kafka produce`.
    pub kafka: Option<tapstream_connectors::kafka::KafkaClientConfig>,
}

/// `[metrics]`: the Prometheus scrape endpoint of `tapstream run`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    /// Address to serve metrics on (`GET` any path, Prometheus text), e.g.
    /// `127.0.0.1:9464`; none by default.
    pub listen: Option<std::net::SocketAddr>,
}

/// `[capture]`: live capture from a network interface (`run --interface`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CaptureSection {
    /// Interface to capture on (`--interface` overrides); none by default.
    pub interface: Option<String>,
    /// BPF filter (tcpdump syntax); empty: every packet.
    pub filter: String,
    /// Bytes kept of each packet.
    pub snaplen: u32,
    /// Kernel ring buffer per capture thread, MiB.
    pub buffer_mib: u32,
    /// Deliver packets as they arrive rather than in kernel batches (lower
    /// latency, more wake-ups).
    pub immediate: bool,
    /// Longest wait of one read for packets; also how soon a stop request
    /// or an idle clock tick is noticed.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Put the interface into promiscuous mode.
    pub promiscuous: bool,
    /// Capture threads. Above 1 they share the interface through an
    /// AF_PACKET fanout group (the kernel hashes each flow to one thread).
    pub threads: usize,
    /// Fanout group id for `threads` > 1 (0: derived from the process id;
    /// set it when several processes must not collide).
    pub fanout_group: u16,
}

impl Default for CaptureSection {
    fn default() -> Self {
        CaptureSection {
            interface: None,
            filter: String::new(),
            snaplen: 65535,
            buffer_mib: 64,
            immediate: false,
            timeout: Duration::from_millis(100),
            promiscuous: true,
            threads: 1,
            fanout_group: 0,
        }
    }
}

/// `[privileges]`: the user a live capture runs as once the interface is
/// open.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PrivilegesSection {
    /// User to switch to (with its primary group) after opening the
    /// capture, when started as root; every capability is dropped either
    /// way. Empty: do not switch user.
    pub run_as: String,
    /// Keep running when still root after the drop (`run_as` empty or a
    /// user with uid 0). Off: such a run is refused.
    pub allow_root: bool,
}

impl Default for PrivilegesSection {
    fn default() -> Self {
        PrivilegesSection {
            run_as: "nobody".to_string(),
            allow_root: false,
        }
    }
}

/// `[source]`: packet sources besides capture files.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SourceSection {
    /// `[source.kafka]`: read topics as a consumer group (`run --kafka`).
    pub kafka: KafkaSourceSection,
}

/// What the messages of the source topics hold.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum KafkaFormat {
    /// Captured packets (see `encoding`).
    #[default]
    Packets,
    /// One flow's feature row per message (JSON object or CSV line with the
    /// CIC column names), scored as is.
    Flows,
}

/// `[source.kafka]`: the Kafka source.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaSourceSection {
    /// Consumer group: instances with the same group share the partitions.
    pub group_id: String,
    /// Topics to read.
    pub topics: Vec<String>,
    /// `packets` or `flows`.
    pub format: KafkaFormat,
    /// For `packets`: `capture` (each message a pcap/pcapng chunk) or
    /// `frame` (each message one frame; time in header `ts_us` or the
    /// message timestamp, link type in header `linktype`).
    pub encoding: crate::kafka::Encoding,
    /// Link type of `frame` messages without a `linktype` header
    /// (1 = Ethernet).
    pub link_type: u32,
    /// How often settled offsets are committed.
    #[serde(with = "humantime_serde")]
    pub commit_interval: Duration,
    /// Longest wait, on partition revocation or shutdown, for the flows
    /// ended then to be scored and their alerts acknowledged; past it the
    /// offsets stay uncommitted (the messages are read again later).
    #[serde(with = "humantime_serde")]
    pub flush_timeout: Duration,
    /// End the run (as on SIGTERM) after this long without a message,
    /// counted from the first partition assignment on; for batch jobs and
    /// tests. Unset: run until stopped.
    #[serde(with = "humantime_serde")]
    pub exit_after_idle: Option<Duration>,
    /// Packets of the assigned partitions are handed on in capture-time
    /// order; a partition with nothing queued holds the others back this
    /// long at most (0: arrival order).
    #[serde(with = "humantime_serde")]
    pub order_wait: Duration,
    /// ... or until this many MiB of packets are queued.
    pub order_buffer_mib: usize,
    /// For `flows` in CSV: the header line (CIC column names). Unset: the
    /// producer sends the header as a message before the rows.
    pub csv_header: Option<String>,
}

impl Default for KafkaSourceSection {
    fn default() -> Self {
        KafkaSourceSection {
            group_id: "tapstream".to_string(),
            topics: vec!["packets".to_string()],
            format: KafkaFormat::Packets,
            encoding: crate::kafka::Encoding::Capture,
            link_type: 1,
            commit_interval: Duration::from_secs(1),
            flush_timeout: Duration::from_secs(60),
            exit_after_idle: None,
            order_wait: Duration::from_millis(200),
            order_buffer_mib: 64,
            csv_header: None,
        }
    }
}

/// Which extractor computes flow features.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    /// The CPU extractor (the definition of every feature).
    #[default]
    Cpu,
    /// CUDA kernels on a GPU; an error when no usable GPU is found.
    Cuda,
    /// CUDA when a usable GPU is found, else the CPU (said once on stderr).
    Auto,
}

/// Which threads run the model.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Placement {
    /// The consumer thread scores every flow (one session).
    #[default]
    Consumer,
    /// Each flow worker scores the flows it ends before handing them off
    /// (one session per worker); the consumer only writes alerts. Flow rows
    /// from Kafka have no flow workers: the consumer scores those.
    Workers,
}

/// `[gpu]`: the CUDA feature extractor.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GpuSection {
    /// `cpu`, `cuda` or `auto` (overridden by `--device`).
    pub device: Device,
    /// Which GPU (CUDA device ordinal).
    pub ordinal: usize,
    /// Packet records per GPU batch and worker (1024..=16,777,216); two
    /// batches per worker are in flight, in pinned host and device memory
    /// (about 34 bytes per record plus 672 bytes per ended flow).
    pub batch_records: usize,
    /// Directory caching compiled kernels (keyed by source, GPU architecture
    /// and driver); none by default (kernels are compiled at start-up, once).
    pub ptx_cache: Option<std::path::PathBuf>,
}

impl Default for GpuSection {
    fn default() -> Self {
        GpuSection {
            device: Device::Cpu,
            ordinal: 0,
            batch_records: 1 << 18,
            ptx_cache: None,
        }
    }
}

/// Largest `flow.memcap_mib`: 1 TiB.
pub const MAX_MEMCAP_MIB: u64 = 1 << 20;

/// `[flow]`: how packets become flows. Times are packet time, not wall time.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FlowSection {
    /// Flow (active) timeout: a flow ends once packet time passes this much
    /// after its first packet (CICFlowMeter's flow timeout). Default 120 s.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Activity timeout: a gap longer than this splits a flow's active and
    /// idle periods (CICFlowMeter's activity timeout). Default 5 s.
    #[serde(with = "humantime_serde")]
    pub activity_timeout: Duration,
    /// A TCP flow whose teardown is complete (FIN/FIN/ACK or RST) ends after
    /// this much quiet, so its alert is not held back until the flow timeout.
    /// Default 5 s.
    #[serde(with = "humantime_serde")]
    pub tcp_close_linger: Duration,
    /// Most flows held at once, over all workers. A new flow that finds its
    /// worker's share full puts that flow table in emergency mode and, if
    /// the shorter emergency timeouts free nothing, evicts the least
    /// recently seen flow not yet established (else the least recently
    /// seen), counted. Default 1,048,576.
    pub max_flows: usize,
    /// Memory cap of the flow tables, MiB (0 = none): bounds the number of
    /// open flows to this divided by the host memory an open flow costs
    /// (table slot, index and feature accumulator; see
    /// `ShardProcessor::BYTES_PER_FLOW`). The smaller of this and
    /// `max_flows` wins. It covers the flow state only, not the process:
    /// packet chunks, flow batches, the model and the runtime come on top.
    pub memcap_mib: u64,
    /// In emergency mode (a full flow table), a flow idle for longer than
    /// this ends (Suricata's emergency timeouts). At most `timeout`; a
    /// larger value acts as `timeout`. Default 30 s.
    #[serde(with = "humantime_serde")]
    pub emergency_timeout: Duration,
    /// In emergency mode, a flow not yet established (its direction has not
    /// changed twice: no reply, or no packet after the reply) idle for
    /// longer than this ends; so does a finished TCP flow's linger. At most
    /// `emergency_timeout`. Default 1 s.
    #[serde(with = "humantime_serde")]
    pub emergency_new_timeout: Duration,
    /// Emergency mode ends once at least this percentage of the table is
    /// free again (Suricata's `emergency-recovery`), 1 to 100. Default 30.
    pub emergency_recovery: u32,
}

impl Default for FlowSection {
    fn default() -> Self {
        FlowSection {
            timeout: Duration::from_secs(120),
            activity_timeout: Duration::from_secs(5),
            tcp_close_linger: Duration::from_secs(5),
            max_flows: 1 << 20,
            memcap_mib: 0,
            emergency_timeout: Duration::from_secs(30),
            emergency_new_timeout: Duration::from_secs(1),
            emergency_recovery: 30,
        }
    }
}

/// `[pipeline]`: stage threads and the batches between them.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineSection {
    /// Flow worker threads (flow table + features), each owning one shard of
    /// the flow hash space. 0 means one per CPU core minus the reader's and
    /// the decoders', at least 1. At most 256.
    pub workers: usize,
    /// Decoder threads (packet bytes → records, split by shard) between the
    /// reader and the flow workers. 0 means a quarter of the cores left after
    /// the reader's (rounded), at least 1. At most 256.
    pub decoders: usize,
    /// Packets per chunk from the reader to a decoder (64..=65536).
    pub batch_packets: usize,
    /// Decoded chunks in flight per decoder; a decoder waits when all are in
    /// use, so offline input never drops (1..=1024).
    pub queue_batches: usize,
    /// Ended flows per batch from a worker to inference (1..=65536).
    pub batch_flows: usize,
}

impl Default for PipelineSection {
    fn default() -> Self {
        PipelineSection {
            workers: 0,
            decoders: 0,
            batch_packets: 4096,
            queue_batches: 8,
            batch_flows: 1024,
        }
    }
}

/// `[model]`: which ONNX model scores flows.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSection {
    /// Path of the ONNX model. Default: the shipped `models/cic-mlp.onnx`,
    /// looked up in the current directory and beside the executable.
    pub path: Option<PathBuf>,
    /// Expected SHA-256 of the model file (hex). A mismatch refuses the model.
    pub sha256: Option<String>,
    /// Decision threshold on the attack score, overriding the model's own
    /// `tapstream.threshold` (0.0..=1.0).
    pub threshold: Option<f32>,
    /// Reload the model when its file changes (checked every second), as
    /// SIGHUP does. A model that fails its checks leaves the current one
    /// running.
    pub watch: bool,
}

/// `[inference]`: ONNX Runtime and batching.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct InferenceSection {
    /// Path of `libonnxruntime.so`. Default: `ORT_DYLIB_PATH`, then
    /// `.deps/onnxruntime/` (made by `scripts/fetch-onnxruntime.sh`).
    pub onnxruntime_library: Option<PathBuf>,
    /// Rows per inference call at most (1..=1,048,576).
    pub batch_rows: usize,
    /// Longest time a flow waits for its batch to fill before it is scored
    /// anyway (wall time; 0 scores whatever is there at once). At most 60 s.
    #[serde(with = "humantime_serde")]
    pub max_delay: Duration,
    /// ONNX Runtime intra-op threads (1..=256).
    pub intra_threads: usize,
    /// ONNX Runtime inter-op threads (1..=256).
    pub inter_threads: usize,
    /// Execution providers in order of preference: `tensorrt`, `cuda`,
    /// `cpu` (each at most once). The GPU ones need ONNX Runtime built with
    /// them (`onnxruntime-gpu`), and TensorRT needs libnvinfer.
    pub providers: Vec<String>,
    /// When false, a provider that cannot be registered is an error and, with
    /// `cpu` not listed, no node may run on the CPU; when true, ONNX Runtime
    /// skips such providers and falls back (logged, never silent).
    pub allow_fallback: bool,
    /// Cap in MiB of the CPU memory arena all inference sessions share; an
    /// inference needing more fails (and is reported) instead of growing
    /// memory. 0: no cap.
    pub cpu_arena_limit_mib: u64,
    /// Where the model runs: `consumer` (one thread scores every flow) or
    /// `workers` (each flow worker scores its own flows, one session each,
    /// so inference scales with the workers).
    pub placement: Placement,
    /// CUDA provider settings.
    pub cuda: CudaSection,
    /// TensorRT provider settings.
    pub tensorrt: TensorRtSection,
}

impl Default for InferenceSection {
    fn default() -> Self {
        InferenceSection {
            onnxruntime_library: None,
            batch_rows: 1024,
            max_delay: Duration::from_millis(50),
            intra_threads: 1,
            inter_threads: 1,
            providers: vec!["cpu".to_string()],
            allow_fallback: false,
            cpu_arena_limit_mib: 0,
            placement: Placement::Consumer,
            cuda: CudaSection::default(),
            tensorrt: TensorRtSection::default(),
        }
    }
}

/// `[inference.cuda]`: the CUDA execution provider.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CudaSection {
    /// GPU ordinal.
    pub device_id: u32,
    /// Cap of the provider's memory arena in MiB (`gpu_mem_limit`); 0 = no
    /// cap. Per session (with `placement = "workers"`, one per flow worker
    /// besides the consumer's).
    pub memory_limit_mib: u64,
}

/// `[inference.tensorrt]`: the TensorRT execution provider. TensorRT
/// (libnvinfer) is not installed on the machines this project is tested
/// on: these settings are checked and passed on, never run there.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TensorRtSection {
    /// GPU ordinal.
    pub device_id: u32,
    /// Allow FP16 kernels.
    pub fp16: bool,
    /// Allow INT8 kernels (a calibration table is needed unless the model is
    /// quantized already).
    pub int8: bool,
    /// INT8 calibration table (TensorRT cache format), e.g.
    /// `models/cic-mlp.trt-calibration.cache`.
    pub int8_calibration_table: Option<PathBuf>,
    /// Directory caching built engines.
    pub engine_cache: Option<PathBuf>,
    /// Directory of the timing cache.
    pub timing_cache: Option<PathBuf>,
    /// Builder workspace in MiB; 0 = TensorRT's default.
    pub workspace_mib: u64,
}

impl InferenceSection {
    /// The CPU arena cap in bytes, if any.
    pub fn cpu_arena_limit(&self) -> Option<usize> {
        (self.cpu_arena_limit_mib > 0)
            .then(|| usize::try_from(self.cpu_arena_limit_mib << 20).unwrap_or(usize::MAX))
    }

    /// The execution providers as the inference crate takes them (after
    /// [`Config::validate`]).
    pub fn execution_providers(&self) -> Vec<tapstream_inference::ExecutionProvider> {
        use tapstream_inference::{CudaOptions, ExecutionProvider, TensorRtOptions};
        let mib = |m: u64| (m > 0).then(|| usize::try_from(m << 20).unwrap_or(usize::MAX));
        self.providers
            .iter()
            .filter_map(|p| match p.as_str() {
                "cpu" => Some(ExecutionProvider::Cpu),
                "cuda" => Some(ExecutionProvider::Cuda(CudaOptions {
                    device_id: i32::try_from(self.cuda.device_id).unwrap_or(i32::MAX),
                    memory_limit: mib(self.cuda.memory_limit_mib),
                })),
                "tensorrt" => {
                    let t = &self.tensorrt;
                    Some(ExecutionProvider::TensorRt(TensorRtOptions {
                        device_id: i32::try_from(t.device_id).unwrap_or(i32::MAX),
                        fp16: t.fp16,
                        int8: t.int8,
                        int8_calibration_table: t.int8_calibration_table.clone(),
                        engine_cache: t.engine_cache.clone(),
                        timing_cache: t.timing_cache.clone(),
                        max_workspace: mib(t.workspace_mib),
                    }))
                }
                _ => None,
            })
            .collect()
    }
}

/// `[output]`: alert destination.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OutputSection {
    /// EVE JSON destination: `-` for stdout (default) or a file path
    /// (appended; `tapstream run` re-opens it on SIGHUP, for log rotation).
    pub eve: String,
    /// Community ID seed (0 unless your other sensors use another).
    pub community_id_seed: u16,
    /// `[output.kafka]`: alerts go to a Kafka topic instead of `eve`.
    pub kafka: Option<KafkaOutputSection>,
    /// `[output.limit]`: which repeated alerts are suppressed (none by
    /// default).
    pub limit: LimitSection,
}

/// Most flow ids `output.limit.dedup_capacity` may remember.
pub const MAX_DEDUP_CAPACITY: usize = 1 << 24;

/// Most keys `output.limit.max_keys` may track.
pub const MAX_LIMIT_KEYS: usize = 1 << 22;

/// What `[output.limit]` rate limits by.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LimitTrack {
    /// No rate limit.
    #[default]
    None,
    /// The flow's source address.
    BySrc,
    /// The flow's destination address.
    ByDst,
    /// Source and destination together.
    ByPair,
}

/// `[output.limit]`: suppression of repeated alerts, after Suricata's
/// `threshold` type `limit`. Suppressed alerts are counted per reason, never
/// written. The defaults suppress nothing.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitSection {
    /// Drop an alert whose `flow_id` was seen before (a flow scored twice,
    /// e.g. read again from Kafka after a rebalance). Default false.
    pub dedup_flows: bool,
    /// Flow ids remembered for `dedup_flows`, the oldest forgotten first
    /// (1..=16,777,216; about 50 bytes each). Default 65,536.
    pub dedup_capacity: usize,
    /// What the rate limit counts by: `none` (no rate limit; the default),
    /// `by_src`, `by_dst` or `by_pair` (source and destination); always per
    /// class.
    pub track: LimitTrack,
    /// At most this many alerts per tracked key and class per `window`
    /// (1..=1,000,000). Default 10.
    pub count: u32,
    /// The window, in packet time (flow end times, so replays decide alike):
    /// it opens at a key's first alert, and the first alert after it ends
    /// opens the next (1ms..=24h). Default 60s.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Keys tracked at most; when full, the key whose window opened earliest
    /// is forgotten (1..=4,194,304; about 260 bytes each). Default
    /// 65,536.
    pub max_keys: usize,
}

impl Default for LimitSection {
    fn default() -> Self {
        LimitSection {
            dedup_flows: false,
            dedup_capacity: tapstream_connectors::limit::DEFAULT_DEDUP_CAPACITY,
            track: LimitTrack::None,
            count: 10,
            window: Duration::from_secs(60),
            max_keys: tapstream_connectors::limit::DEFAULT_MAX_KEYS,
        }
    }
}

impl LimitSection {
    /// The limiter's settings (after [`Config::validate`]).
    pub fn settings(&self) -> tapstream_connectors::limit::LimitSettings {
        use tapstream_connectors::limit::{LimitSettings, RateLimit, Track};
        let track = match self.track {
            LimitTrack::None => None,
            LimitTrack::BySrc => Some(Track::BySrc),
            LimitTrack::ByDst => Some(Track::ByDst),
            LimitTrack::ByPair => Some(Track::ByPair),
        };
        LimitSettings {
            dedup_capacity: self.dedup_flows.then_some(self.dedup_capacity),
            rate: track.map(|track| RateLimit {
                track,
                count: self.count,
                window: self.window,
                max_keys: self.max_keys,
            }),
        }
    }
}

/// `[output.kafka]`: the Kafka alert sink (client settings from `[kafka]`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KafkaOutputSection {
    /// Topic the alerts are written to, one EVE JSON object per message.
    pub topic: String,
}

impl Default for OutputSection {
    fn default() -> Self {
        OutputSection {
            eve: "-".to_string(),
            community_id_seed: 0,
            kafka: None,
            limit: LimitSection::default(),
        }
    }
}

impl Config {
    /// Reads, parses and validates a TOML file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses and validates TOML text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().replace('\n', " "),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks every range and cross-field rule.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn invalid(field: &'static str, message: impl Into<String>) -> ConfigError {
            ConfigError::Invalid {
                field,
                message: message.into(),
            }
        }
        let f = &self.flow;
        if f.timeout.is_zero() || f.timeout > Duration::from_secs(86_400) {
            return Err(invalid("flow.timeout", "must be between 1µs and 24h"));
        }
        if f.activity_timeout.is_zero() || f.activity_timeout > f.timeout {
            return Err(invalid(
                "flow.activity_timeout",
                "must be positive and not longer than flow.timeout",
            ));
        }
        if f.tcp_close_linger > f.timeout {
            return Err(invalid(
                "flow.tcp_close_linger",
                "must not be longer than flow.timeout",
            ));
        }
        if f.max_flows == 0 || f.max_flows > 1 << 28 {
            return Err(invalid("flow.max_flows", "must be between 1 and 268435456"));
        }
        if f.memcap_mib > MAX_MEMCAP_MIB {
            return Err(invalid(
                "flow.memcap_mib",
                format!("must be at most {MAX_MEMCAP_MIB} (0 = no cap)"),
            ));
        }
        if f.emergency_timeout.is_zero() {
            return Err(invalid("flow.emergency_timeout", "must be positive"));
        }
        if f.emergency_new_timeout.is_zero() {
            return Err(invalid("flow.emergency_new_timeout", "must be positive"));
        }
        if !(1..=100).contains(&f.emergency_recovery) {
            return Err(invalid(
                "flow.emergency_recovery",
                "must be between 1 and 100 (percent of the table free)",
            ));
        }
        let p = &self.pipeline;
        if p.workers > 256 {
            return Err(invalid(
                "pipeline.workers",
                "must be at most 256 (0 = auto)",
            ));
        }
        if p.decoders > 256 {
            return Err(invalid(
                "pipeline.decoders",
                "must be at most 256 (0 = auto)",
            ));
        }
        if !(64..=65536).contains(&p.batch_packets) {
            return Err(invalid(
                "pipeline.batch_packets",
                "must be between 64 and 65536",
            ));
        }
        if !(1..=1024).contains(&p.queue_batches) {
            return Err(invalid(
                "pipeline.queue_batches",
                "must be between 1 and 1024",
            ));
        }
        if !(1..=65536).contains(&p.batch_flows) {
            return Err(invalid(
                "pipeline.batch_flows",
                "must be between 1 and 65536",
            ));
        }
        if let Some(t) = self.model.threshold {
            if !(0.0..=1.0).contains(&t) {
                return Err(invalid("model.threshold", "must be between 0.0 and 1.0"));
            }
        }
        if let Some(h) = &self.model.sha256 {
            if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(invalid(
                    "model.sha256",
                    "must be 64 hexadecimal digits (the SHA-256 of the model file)",
                ));
            }
        }
        let i = &self.inference;
        if !(1..=1 << 20).contains(&i.batch_rows) {
            return Err(invalid(
                "inference.batch_rows",
                "must be between 1 and 1048576",
            ));
        }
        if i.max_delay > Duration::from_secs(60) {
            return Err(invalid("inference.max_delay", "must be at most 60s"));
        }
        if !(1..=256).contains(&i.intra_threads) {
            return Err(invalid(
                "inference.intra_threads",
                "must be between 1 and 256",
            ));
        }
        if !(1..=256).contains(&i.inter_threads) {
            return Err(invalid(
                "inference.inter_threads",
                "must be between 1 and 256",
            ));
        }
        if i.providers.is_empty() {
            return Err(invalid(
                "inference.providers",
                "must name at least one of tensorrt, cuda, cpu",
            ));
        }
        for (k, p) in i.providers.iter().enumerate() {
            if !["cpu", "cuda", "tensorrt"].contains(&p.as_str()) {
                return Err(invalid(
                    "inference.providers",
                    format!("unknown provider {p:?}; the providers are tensorrt, cuda and cpu"),
                ));
            }
            if i.providers.iter().take(k).any(|q| q == p) {
                return Err(invalid(
                    "inference.providers",
                    format!("{p:?} is listed twice"),
                ));
            }
        }
        if i.cpu_arena_limit_mib > 1 << 24 {
            return Err(invalid(
                "inference.cpu_arena_limit_mib",
                "must be at most 16777216 (16 TiB)",
            ));
        }
        if i.cuda.memory_limit_mib > 1 << 24 || i.tensorrt.workspace_mib > 1 << 24 {
            return Err(invalid(
                "inference.cuda.memory_limit_mib",
                "memory sizes must be at most 16 TiB (16777216 MiB)",
            ));
        }
        if let Some(t) = &i.tensorrt.int8_calibration_table {
            if !i.tensorrt.int8 {
                return Err(invalid(
                    "inference.tensorrt.int8_calibration_table",
                    format!("{} is set but int8 is off", t.display()),
                ));
            }
        }
        if !(1024..=1 << 24).contains(&self.gpu.batch_records) {
            return Err(invalid(
                "gpu.batch_records",
                "must be between 1024 and 16777216",
            ));
        }
        if self.output.eve.is_empty() {
            return Err(invalid("output.eve", "must be `-` (stdout) or a file path"));
        }
        if let Some(k) = &self.output.kafka {
            if k.topic.is_empty() {
                return Err(invalid("output.kafka.topic", "must name a topic"));
            }
            if self.output.eve != "-" {
                return Err(invalid(
                    "output.kafka",
                    "alerts go either to Kafka or to output.eve, not both",
                ));
            }
        }
        let l = &self.output.limit;
        if !(1..=MAX_DEDUP_CAPACITY).contains(&l.dedup_capacity) {
            return Err(invalid(
                "output.limit.dedup_capacity",
                format!("must be between 1 and {MAX_DEDUP_CAPACITY}"),
            ));
        }
        if !(1..=1_000_000).contains(&l.count) {
            return Err(invalid(
                "output.limit.count",
                "must be between 1 and 1000000",
            ));
        }
        if l.window < Duration::from_millis(1) || l.window > Duration::from_secs(86_400) {
            return Err(invalid(
                "output.limit.window",
                "must be between 1ms and 24h",
            ));
        }
        if !(1..=MAX_LIMIT_KEYS).contains(&l.max_keys) {
            return Err(invalid(
                "output.limit.max_keys",
                format!("must be between 1 and {MAX_LIMIT_KEYS}"),
            ));
        }
        let k = &self.source.kafka;
        if k.group_id.is_empty() {
            return Err(invalid("source.kafka.group_id", "must not be empty"));
        }
        if k.topics.is_empty() || k.topics.iter().any(String::is_empty) {
            return Err(invalid(
                "source.kafka.topics",
                "must name at least one topic, none empty",
            ));
        }
        if k.commit_interval < Duration::from_millis(10)
            || k.commit_interval > Duration::from_secs(3600)
        {
            return Err(invalid(
                "source.kafka.commit_interval",
                "must be between 10ms and 1h",
            ));
        }
        if k.flush_timeout.is_zero() || k.flush_timeout > Duration::from_secs(3600) {
            return Err(invalid(
                "source.kafka.flush_timeout",
                "must be between 1ms and 1h",
            ));
        }
        if let Some(h) = &k.csv_header {
            crate::kafka::flows::FlowDecoder::with_csv_header(h)
                .map_err(|e| invalid("source.kafka.csv_header", e.to_string()))?;
        }
        if k.order_wait > Duration::from_secs(60) {
            return Err(invalid("source.kafka.order_wait", "must be at most 60s"));
        }
        if !(1..=1 << 16).contains(&k.order_buffer_mib) {
            return Err(invalid(
                "source.kafka.order_buffer_mib",
                "must be between 1 and 65536",
            ));
        }
        let c = &self.capture;
        if c.interface
            .as_ref()
            .is_some_and(|i| i.is_empty() || i.len() > 255)
        {
            return Err(invalid(
                "capture.interface",
                "must be an interface name (1 to 255 bytes)",
            ));
        }
        if !(64..=262_144).contains(&c.snaplen) {
            return Err(invalid(
                "capture.snaplen",
                "must be between 64 and 262144 bytes",
            ));
        }
        if !(1..=2047).contains(&c.buffer_mib) {
            return Err(invalid("capture.buffer_mib", "must be between 1 and 2047"));
        }
        if c.timeout < Duration::from_millis(1) || c.timeout > Duration::from_secs(10) {
            return Err(invalid("capture.timeout", "must be between 1ms and 10s"));
        }
        if !(1..=64).contains(&c.threads) {
            return Err(invalid("capture.threads", "must be between 1 and 64"));
        }
        if self.privileges.run_as.contains(['\0', ':', '/']) {
            return Err(invalid(
                "privileges.run_as",
                "must be a user name (no NUL, `:` or `/`)",
            ));
        }
        if let Some(client) = &self.kafka {
            client
                .check(crate::kafka::source::FORCED)
                .and_then(|()| client.check(tapstream_connectors::sink::kafka::PRODUCER_FORCED))
                .map_err(|e| invalid("kafka", e.to_string()))?;
        } else if self.output.kafka.is_some() {
            return Err(invalid(
                "output.kafka",
                "needs a [kafka] section with the brokers",
            ));
        }
        Ok(())
    }

    /// The `[kafka]` client settings, or an error saying they are needed.
    pub fn kafka_client(
        &self,
    ) -> Result<&tapstream_connectors::kafka::KafkaClientConfig, ConfigError> {
        self.kafka.as_ref().ok_or_else(|| ConfigError::Invalid {
            field: "kafka",
            message: "Kafka needs a [kafka] section with at least `brokers`".to_string(),
        })
    }

    /// Worker threads to start: the configured count, or when 0 one per core
    /// minus the reader's and the decoders' (at least one).
    pub fn worker_threads(&self) -> usize {
        if self.pipeline.workers > 0 {
            return self.pipeline.workers;
        }
        cores().saturating_sub(1 + self.decoder_threads()).max(1)
    }

    /// Decoder threads to start: the configured count, or when 0 a quarter
    /// of the cores left after the reader's, rounded (at least one). A
    /// decoder keeps up with about 2.7 flow workers (21 vs 7.7 M pkt/s per
    /// thread on the benchmark capture), so this splits those cores about
    /// 1 : 3.
    pub fn decoder_threads(&self) -> usize {
        if self.pipeline.decoders > 0 {
            return self.pipeline.decoders;
        }
        auto_decoders(cores())
    }
}

/// Logical cores this process may use.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The automatic decoder count on a machine with `cores` logical cores:
/// (cores − 1) / 4, rounded.
fn auto_decoders(cores: usize) -> usize {
    (cores.saturating_add(1) / 4).max(1)
}

/// A commented configuration file with every field at its default.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("../deploy/tapstream.toml");

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Config, ConfigError> {
        Config::parse(s, Path::new("test.toml"))
    }

    #[test]
    fn empty_file_is_the_default() {
        assert_eq!(parse("").unwrap(), Config::default());
    }

    #[test]
    fn shipped_example_parses_to_the_defaults() {
        assert_eq!(parse(DEFAULT_CONFIG_TOML).unwrap(), Config::default());
    }

    #[test]
    fn durations_and_overrides_parse() {
        let c = parse(
            "[flow]\ntimeout = \"30s\"\nactivity_timeout = \"2s\"\nmax_flows = 1000\n\
             memcap_mib = 64\nemergency_timeout = \"10s\"\nemergency_new_timeout = \"500ms\"\n\
             emergency_recovery = 50\n\
             [model]\nthreshold = 0.9\n[inference]\nmax_delay = \"10ms\"\n",
        )
        .unwrap();
        assert_eq!(c.flow.memcap_mib, 64);
        assert_eq!(c.flow.emergency_timeout, Duration::from_secs(10));
        assert_eq!(c.flow.emergency_new_timeout, Duration::from_millis(500));
        assert_eq!(c.flow.emergency_recovery, 50);
        assert_eq!(c.flow.timeout, Duration::from_secs(30));
        assert_eq!(c.flow.activity_timeout, Duration::from_secs(2));
        assert_eq!(c.flow.max_flows, 1000);
        assert_eq!(c.model.threshold, Some(0.9));
        assert_eq!(c.inference.max_delay, Duration::from_millis(10));
    }

    #[test]
    fn unknown_field_is_rejected_with_its_name() {
        let e = parse("[flow]\ntimeuot = \"30s\"\n").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("timeuot"), "{msg}");
        assert!(matches!(e, ConfigError::Parse { .. }));
    }

    #[test]
    fn wrong_type_is_rejected() {
        let e = parse("[flow]\nmax_flows = \"many\"\n").unwrap_err();
        assert!(matches!(e, ConfigError::Parse { .. }), "{e}");
        let e = parse("[flow]\ntimeout = \"soon\"\n").unwrap_err();
        assert!(matches!(e, ConfigError::Parse { .. }), "{e}");
    }

    #[test]
    fn out_of_range_values_name_the_field() {
        for (text, field) in [
            ("[flow]\nmax_flows = 0\n", "flow.max_flows"),
            (
                "[flow]\nactivity_timeout = \"200s\"\n",
                "flow.activity_timeout",
            ),
            ("[flow]\ntimeout = \"0s\"\n", "flow.timeout"),
            ("[flow]\nmemcap_mib = 2000000\n", "flow.memcap_mib"),
            (
                "[flow]\nemergency_timeout = \"0s\"\n",
                "flow.emergency_timeout",
            ),
            (
                "[flow]\nemergency_new_timeout = \"0s\"\n",
                "flow.emergency_new_timeout",
            ),
            (
                "[flow]\nemergency_recovery = 0\n",
                "flow.emergency_recovery",
            ),
            (
                "[flow]\nemergency_recovery = 101\n",
                "flow.emergency_recovery",
            ),
            ("[pipeline]\nbatch_packets = 1\n", "pipeline.batch_packets"),
            ("[pipeline]\nworkers = 1000\n", "pipeline.workers"),
            ("[pipeline]\ndecoders = 257\n", "pipeline.decoders"),
            ("[model]\nthreshold = 1.5\n", "model.threshold"),
            ("[model]\nsha256 = \"abc\"\n", "model.sha256"),
            (
                "[inference]\nintra_threads = 0\n",
                "inference.intra_threads",
            ),
            ("[inference]\nmax_delay = \"5m\"\n", "inference.max_delay"),
            ("[inference]\nproviders = []\n", "inference.providers"),
            (
                "[inference]\nproviders = [\"gpu\"]\n",
                "inference.providers",
            ),
            (
                "[inference]\nproviders = [\"cuda\", \"cuda\"]\n",
                "inference.providers",
            ),
            (
                "[inference.tensorrt]\nint8_calibration_table = \"x.cache\"\n",
                "inference.tensorrt.int8_calibration_table",
            ),
            ("[output]\neve = \"\"\n", "output.eve"),
            ("[output.limit]\ncount = 0\n", "output.limit.count"),
            ("[output.limit]\nwindow = \"0s\"\n", "output.limit.window"),
            ("[output.limit]\nwindow = \"25h\"\n", "output.limit.window"),
            ("[output.limit]\nmax_keys = 0\n", "output.limit.max_keys"),
            (
                "[output.limit]\nmax_keys = 4194305\n",
                "output.limit.max_keys",
            ),
            (
                "[output.limit]\ndedup_capacity = 0\n",
                "output.limit.dedup_capacity",
            ),
            (
                "[output.limit]\ndedup_capacity = 16777217\n",
                "output.limit.dedup_capacity",
            ),
            ("[gpu]\nbatch_records = 10\n", "gpu.batch_records"),
        ] {
            match parse(text) {
                Err(ConfigError::Invalid { field: f, .. }) => assert_eq!(f, field, "{text}"),
                other => panic!("{text}: expected Invalid({field}), got {other:?}"),
            }
        }
    }

    #[test]
    fn output_limit_parses_and_is_off_by_default() {
        use tapstream_connectors::limit::{LimitSettings, RateLimit, Track};
        assert_eq!(
            Config::default().output.limit.settings(),
            LimitSettings::default()
        );
        let c = parse(
            "[output.limit]\ndedup_flows = true\ndedup_capacity = 100\ntrack = \"by_pair\"\n\
             count = 3\nwindow = \"2m\"\nmax_keys = 50\n",
        )
        .unwrap();
        assert_eq!(
            c.output.limit.settings(),
            LimitSettings {
                dedup_capacity: Some(100),
                rate: Some(RateLimit {
                    track: Track::ByPair,
                    count: 3,
                    window: Duration::from_secs(120),
                    max_keys: 50,
                }),
            }
        );
        for (name, track) in [
            ("by_src", Track::BySrc),
            ("by_dst", Track::ByDst),
            ("by_pair", Track::ByPair),
        ] {
            let c = parse(&format!("[output.limit]\ntrack = \"{name}\"\n")).unwrap();
            assert_eq!(c.output.limit.settings().rate.map(|r| r.track), Some(track));
        }
        // Limits without a track, or a capacity without dedup_flows, do
        // nothing.
        let c = parse("[output.limit]\ncount = 1\ndedup_capacity = 5\n").unwrap();
        assert_eq!(c.output.limit.settings(), LimitSettings::default());
        let e = parse("[output.limit]\ntrack = \"by_rule\"\n").unwrap_err();
        assert!(matches!(e, ConfigError::Parse { .. }), "{e}");
        let e = parse("[output.limit]\nseconds = 60\n").unwrap_err();
        assert!(e.to_string().contains("seconds"), "{e}");
        // The effective configuration prints and parses back.
        let printed = toml::to_string_pretty(&c).unwrap();
        assert_eq!(parse(&printed).unwrap(), c);
    }

    #[test]
    fn auto_workers_is_at_least_one() {
        assert!(Config::default().worker_threads() >= 1);
        let mut c = Config::default();
        c.pipeline.workers = 3;
        assert_eq!(c.worker_threads(), 3);
    }

    #[test]
    fn decoders_parse_and_auto_splits_the_cores() {
        let c = parse("[pipeline]\ndecoders = 3\nworkers = 2\n").unwrap();
        assert_eq!(c.decoder_threads(), 3);
        assert_eq!(c.worker_threads(), 2);
        assert!(parse("[pipeline]\ndecoders = 256\n").is_ok());
        assert!(Config::default().decoder_threads() >= 1);
        // A quarter of the cores after the reader's, rounded, at least one.
        for (cores, decoders) in [(1, 1), (2, 1), (4, 1), (8, 2), (16, 4), (64, 16)] {
            assert_eq!(auto_decoders(cores), decoders, "{cores} cores");
        }
    }
}
