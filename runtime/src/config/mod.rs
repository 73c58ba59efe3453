//! The TOML configuration: every knob of a run, checked before anything starts.
//!
//! Every field has a default, so an empty file (or no file) is a valid
//! configuration. Unknown fields are rejected so a typo never silently falls
//! back to a default, and [`Config::validate`] has each section check its
//! ranges and cross-field rules, returning a typed error before a single
//! packet is read. Each section lives in a file of its own, beside what it
//! configures. Command-line flags override the file (the CLI applies them
//! and validates again). `tapstream config` prints a fully commented file.

mod context;
mod defrag;
mod flow;
mod gpu;
mod inference;
mod model;
mod output;
mod pipeline;
mod sensor;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use context::{ContextMode, ContextSection, NoContext};
pub use defrag::{DefragSection, OverlapPolicy};
pub use flow::{FlowSection, MAX_MEMCAP_MIB};
pub use gpu::{Device, GpuSection};
pub use inference::{CudaSection, InferenceSection, Placement, Provider, TensorRtSection};
pub use model::{DetectorSection, ModelSection, DEFAULT_DETECTOR};
pub use output::{
    AlertMode, EpisodesSection, KafkaOutputSection, LimitSection, LimitTrack, OutputSection,
    MAX_DEDUP_CAPACITY, MAX_LIMIT_KEYS, MAX_OPEN_EPISODES,
};
pub use pipeline::{logical_cores, PipelineSection, ShardBy};
pub use sensor::{CaptureSection, MetricsSection, PrivilegesSection};
pub use tapstream_connectors::kafka::{KafkaClientConfig, KafkaFormat, SourceSettings};

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
    /// Host and service context of each flow.
    pub context: ContextSection,
    /// IP defragmentation.
    pub defrag: DefragSection,
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
    /// `[[detector]]`: further models scoring every flow beside `[model]`.
    #[serde(rename = "detector", skip_serializing_if = "Vec::is_empty")]
    pub detectors: Vec<DetectorSection>,
    /// `[kafka]`: the Kafka client (brokers, TLS/SASL, librdkafka
    /// properties), shared by the Kafka source, the Kafka alert sink and
    /// `tapstream kafka produce`.
    pub kafka: Option<KafkaClientConfig>,
}

/// `[source]`: packet sources besides capture files.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SourceSection {
    /// `[source.kafka]`: read topics as a consumer group (`run --kafka`).
    pub kafka: SourceSettings,
}

/// A [`ConfigError::Invalid`] for `field`.
pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        message: message.into(),
    }
}

/// `value` of `field` within `range`, or the error that says the range.
pub(crate) fn in_range<T: PartialOrd + std::fmt::Display>(
    field: &'static str,
    value: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<(), ConfigError> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("must be between {} and {}", range.start(), range.end()),
        ))
    }
}

impl From<tapstream_connectors::kafka::SettingError> for ConfigError {
    fn from(e: tapstream_connectors::kafka::SettingError) -> Self {
        invalid(e.field, e.message)
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

    /// Checks every range and cross-field rule, section by section.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.flow.validate()?;
        self.context.validate()?;
        self.defrag.validate()?;
        if self.defrag.enabled && self.pipeline.shard_by == ShardBy::Flow {
            return Err(invalid(
                "pipeline.shard_by",
                "\"flow\" splits the fragments of a datagram over workers, which then cannot \
                 reassemble it: set [defrag] enabled = false too, or keep \"pair\"",
            ));
        }
        self.pipeline.validate()?;
        self.model.validate()?;
        model::validate_detectors(&self.model, &self.detectors)?;
        if self.context.enabled == ContextMode::Off {
            if let Some(d) = self.detectors.iter().find(|d| d.learn_for.is_some()) {
                return Err(invalid(
                    "detector.learn_for",
                    format!(
                        "detector `{}` learns from context features, which [context] enabled = \"off\" turns off",
                        d.name
                    ),
                ));
            }
        }
        self.inference.validate()?;
        self.gpu.validate()?;
        self.output.validate()?;
        self.source.kafka.check()?;
        self.capture.validate()?;
        self.privileges.validate()?;
        if let Some(client) = &self.kafka {
            use tapstream_connectors::kafka::{CONSUMER_FORCED, PRODUCER_FORCED};
            client
                .check(CONSUMER_FORCED)
                .and_then(|()| client.check(PRODUCER_FORCED))
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
    pub fn kafka_client(&self) -> Result<&KafkaClientConfig, ConfigError> {
        self.kafka.as_ref().ok_or_else(|| {
            invalid(
                "kafka",
                "Kafka needs a [kafka] section with at least `brokers`",
            )
        })
    }

    /// Flow worker threads to start (see [`PipelineSection::worker_threads`]).
    pub fn worker_threads(&self) -> usize {
        self.pipeline.worker_threads()
    }

    /// Decoder threads to start (see [`PipelineSection::decoder_threads`]).
    pub fn decoder_threads(&self) -> usize {
        self.pipeline.decoder_threads()
    }
}

/// A commented configuration file with every field at its default.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("../../../deploy/tapstream.toml");

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
    fn an_unknown_provider_is_refused_with_the_known_ones() {
        let e = parse("[inference]\nproviders = [\"cuda\", \"gpu\"]\n").unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, ConfigError::Parse { .. }), "{e}");
        assert!(
            msg.contains("gpu") && msg.contains("tensorrt") && msg.contains("cpu"),
            "{msg}"
        );
        let c = parse("[inference]\nproviders = [\"tensorrt\", \"cuda\", \"cpu\"]\n").unwrap();
        assert_eq!(c.inference.execution_providers().len(), 3);
    }

    #[test]
    fn tensorrt_precision_is_one_setting() {
        let c = parse(
            "[inference.tensorrt]\nprecision = \"int8\"\nint8_calibration_table = \"x.cache\"\n",
        )
        .unwrap();
        assert_eq!(
            c.inference.tensorrt.precision,
            tapstream_inference::Precision::Int8
        );
        let e = parse("[inference.tensorrt]\nprecision = \"int4\"\n").unwrap_err();
        assert!(matches!(e, ConfigError::Parse { .. }), "{e}");
    }

    #[test]
    fn the_older_tensorrt_switches_are_still_read() {
        use tapstream_inference::Precision;
        for (text, precision) in [
            ("fp16 = false\nint8 = false\n", Precision::Fp32),
            ("fp16 = true\n", Precision::Fp16),
            ("fp16 = true\nint8 = true\n", Precision::Int8),
        ] {
            let c = parse(&format!("[inference.tensorrt]\n{text}")).unwrap();
            assert_eq!(c.inference.tensorrt.precision, precision, "{text}");
        }
        // A mode `precision` cannot say, and two ways of saying one thing.
        for (text, words) in [
            ("int8 = true\n", "FP32 fallback"),
            ("precision = \"fp16\"\nfp16 = true\n", "alone"),
        ] {
            let e = parse(&format!("[inference.tensorrt]\n{text}")).unwrap_err();
            assert!(matches!(e, ConfigError::Parse { .. }), "{e}");
            assert!(e.to_string().contains(words), "{e}");
        }
        let e = parse("[inference.tensorrt]\nfp8 = true\n").unwrap_err();
        assert!(e.to_string().contains("fp8"), "{e}");
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
            ("[model]\ndetector = \" \"\n", "model.detector"),
            (
                "[[detector]]\nname = \"classifier\"\nmodel = \"a.onnx\"\n",
                "detector.name",
            ),
            (
                "[[detector]]\nname = \"a\"\nmodel = \"a.onnx\"\n[[detector]]\nname = \"a\"\nmodel = \"b.onnx\"\n",
                "detector.name",
            ),
            ("[[detector]]\nname = \"\"\nmodel = \"a.onnx\"\n", "detector.name"),
            ("[[detector]]\nname = \"a\"\nmodel = \"\"\n", "detector.model"),
            (
                "[[detector]]\nname = \"a\"\nmodel = \"a.onnx\"\nthreshold = 2.0\n",
                "detector",
            ),
            (
                "[inference]\nintra_threads = 0\n",
                "inference.intra_threads",
            ),
            ("[inference]\nmax_delay = \"5m\"\n", "inference.max_delay"),
            ("[inference]\nproviders = []\n", "inference.providers"),
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
                "[output.episodes]\nidle_timeout = \"500ms\"\n",
                "output.episodes.idle_timeout",
            ),
            (
                "[output.episodes]\nupdate_interval = \"2d\"\n",
                "output.episodes.update_interval",
            ),
            (
                "[output.episodes]\nmax_open = 0\n",
                "output.episodes.max_open",
            ),
            ("[pipeline]\nshard_by = \"flow\"\n", "pipeline.shard_by"),
            ("[defrag]\ntimeout = \"11m\"\n", "defrag.timeout"),
            ("[defrag]\nmemcap_mib = 0\n", "defrag.memcap_mib"),
            (
                "[output.episodes]\nmax_open = 262145\n",
                "output.episodes.max_open",
            ),
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
    fn flow_sharding_needs_defrag_off() {
        let c = parse("[pipeline]\nshard_by = \"flow\"\n[defrag]\nenabled = false\n").unwrap();
        assert_eq!(c.pipeline.shard_by, ShardBy::Flow);
        assert!(c.defrag.table(4).is_none());
        let t = Config::default().defrag.table(4).unwrap();
        assert_eq!(t.timeout_us, 60_000_000);
        assert!(t.max_datagrams > 1_000, "{t:?}");
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
    fn decoders_parse_and_auto_splits_the_cores() {
        let c = parse("[pipeline]\ndecoders = 3\nworkers = 2\n").unwrap();
        assert_eq!(c.decoder_threads(), 3);
        assert_eq!(c.worker_threads(), 2);
        assert!(parse("[pipeline]\ndecoders = 256\n").is_ok());
        assert!(Config::default().decoder_threads() >= 1);
    }
}
