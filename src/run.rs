//! `tapstream run`: score every flow of a capture, an interface or a Kafka
//! topic and write alerts as EVE JSON (stdout, a file, or Kafka).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use tapstream_connectors::eve::EveWriter;
use tapstream_connectors::limit::AlertLimiter;
use tapstream_connectors::sink::{AlertSink, FileSink, StdoutSink};
use tapstream_inference::model::{load_with_workers, model_path, ModelSpec};
use tapstream_inference::reload::ReloadTrigger;
use tapstream_inference::Reloader;
use tapstream_kafka::{KafkaSink, KafkaSource};
use tapstream_kernels::Settled;
use tapstream_runtime::config::{AlertMode, DetectorSection, KafkaFormat, Placement};
use tapstream_runtime::reopen::ReopenRequest;
use tapstream_runtime::{live, model, privileges, signals, telemetry};
use tapstream_runtime::{AlertStage, Config, Consumer, Detector, LearningDetector};

use crate::common::{finish, load_config, with_progress, Common};

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub common: Common,
    /// ONNX model (overrides model.path; default models/behaviour-mlp.onnx, or models/cic-mlp.onnx where context features cannot be made).
    #[arg(long, value_name = "FILE")]
    pub model: Option<PathBuf>,
    /// EVE JSON output: `-` for stdout or a file (overrides output.eve and
    /// output.kafka).
    #[arg(long, value_name = "PATH")]
    pub eve: Option<String>,
    /// `episodes`: one alert per attack episode (start, updates, end with
    /// counts); `flows`: one line per flagged flow (overrides
    /// output.alerts).
    #[arg(long, value_enum, value_name = "MODE")]
    pub alerts: Option<AlertMode>,
    /// A further detector scoring every flow beside the model, e.g. the
    /// anomaly model of `tapstream learn` (as a `[[detector]]` section with
    /// this name and model file). Repeatable.
    #[arg(long, value_name = "NAME=FILE", value_parser = parse_detector)]
    pub detector: Vec<DetectorSection>,
}

/// `NAME=FILE`.
fn parse_detector(s: &str) -> Result<DetectorSection, String> {
    match s.split_once('=') {
        Some((name, file)) if !name.trim().is_empty() && !file.is_empty() => Ok(DetectorSection {
            name: name.trim().to_owned(),
            model: PathBuf::from(file),
            ..DetectorSection::default()
        }),
        _ => Err(format!("expected NAME=FILE, got `{s}`")),
    }
}

pub fn run(args: RunArgs) -> Result<ExitCode> {
    let mut cfg = load_config(&args.common)?;
    if let Some(e) = &args.eve {
        // The command line's output wins over the file's, Kafka too.
        cfg.output.eve = e.clone();
        cfg.output.kafka = None;
    }
    if let Some(mode) = args.alerts {
        cfg.output.alerts = mode;
    }
    cfg.detectors.extend(args.detector.iter().cloned());
    cfg.validate()?;
    if args.common.kafka {
        if let Some(d) = cfg.detectors.iter().find(|d| d.learn_for.is_some()) {
            anyhow::bail!(
                "detector `{}` learns from its run's first traffic (learn_for), which a Kafka \
                 input does not order: learn from captures with `tapstream learn` and name the \
                 model instead",
                d.name
            );
        }
    }
    // A live capture is opened first, with the privileges it needs, and
    // then they are dropped: before any thread starts (metrics, model,
    // outputs), so no thread keeps a capability.
    let captures = match &args.common.interface {
        Some(iface) => {
            let captures = live::open_captures(&cfg, iface.as_deref())?;
            privileges::drop_privileges(&cfg.privileges)?;
            Some(captures)
        }
        None => None,
    };
    if let Some(addr) = cfg.metrics.listen {
        telemetry::serve(addr)?;
    }
    let rows = args.common.kafka && cfg.source.kafka.format == KafkaFormat::Flows;
    let sessions = model::worker_sessions_needed(&cfg, rows);
    if rows && cfg.inference.placement == Placement::Workers {
        tracing::info!(
            message = "flow rows from Kafka pass no flow worker: the consumer scores them"
        );
    }
    let (mut stage, _sighup) = alert_stage(&cfg, args.model.as_deref(), sessions, rows)?;
    let report = if let Some(captures) = captures {
        let term = signals::stop_signals()?;
        let sources = live::sources(captures, &term);
        with_progress(&args.common, |p| {
            tapstream_runtime::run_packets(sources, &cfg, Consumer::Alerts(Box::new(stage)), p)
        })?
    } else if args.common.kafka {
        // One mark per flow worker, or one in all for flow rows.
        let shards = if rows { 1 } else { cfg.worker_threads() };
        let settled = Arc::new(Settled::new(shards));
        stage.settled = Some(settled.clone());
        let term = signals::stop_signals()?;
        let source = KafkaSource::new(cfg.kafka_client()?, &cfg.source.kafka, settled, term)?;
        with_progress(&args.common, |p| {
            if rows {
                tapstream_runtime::run_rows(
                    Box::new(source),
                    &cfg,
                    Consumer::Alerts(Box::new(stage)),
                    p,
                )
            } else {
                tapstream_runtime::run_packets(
                    vec![Box::new(source)],
                    &cfg,
                    Consumer::Alerts(Box::new(stage)),
                    p,
                )
            }
        })?
    } else {
        let pcap = crate::common::pcap_of(&args.common)?;
        with_progress(&args.common, |p| {
            tapstream_runtime::run_file(&pcap, &cfg, Consumer::Alerts(Box::new(stage)), p)
        })?
    };
    finish(&report, &args.common)
}

/// The alert stage of a run: the model (and `sessions` worker sessions),
/// the configured sink, the limiter, and hot reload on SIGHUP (kept while
/// the returned guard lives).
fn alert_stage(
    cfg: &Config,
    model_path: Option<&Path>,
    sessions: usize,
    flows_input: bool,
) -> Result<(AlertStage, signals::SighupGuard)> {
    let spec = model::spec_for(cfg, model_path, flows_input)?;
    let loaded = load_with_workers(&spec, sessions)?;
    let (sink, reopen) = alert_sink(cfg)?;
    // SIGHUP (and a changed file with model.watch) reloads the model.
    let reload = Reloader::start(spec, cfg.model.watch, sessions)
        .context("spawning the model reload thread")?;
    let mut triggers = vec![reload.trigger()];
    let detectors = detectors(cfg, &mut triggers)?;
    let learning = learning_detectors(cfg)?;
    let guard = signals::reload_on_sighup(triggers)?;
    let stage = AlertStage {
        detector: cfg.model.detector_name().to_owned(),
        detectors,
        learning,
        reload: Some(Arc::new(reload)),
        limiter: AlertLimiter::new(&cfg.output.limit.settings()),
        episodes: cfg.output.episodes.settings(cfg.output.alerts),
        reopen,
        ..AlertStage::new(
            loaded,
            sink,
            cfg.inference.batch_rows,
            cfg.inference.max_delay,
        )
    };
    Ok((stage, guard))
}

/// The `[[detector]]` models, each with its reload thread (its trigger
/// added to `triggers`).
fn detectors(cfg: &Config, triggers: &mut Vec<ReloadTrigger>) -> Result<Vec<Detector>> {
    let mut out = Vec::new();
    for d in cfg.detectors.iter().filter(|d| d.learn_for.is_none()) {
        let spec = ModelSpec {
            path: model_path(None, Some(&d.model))?,
            onnx: cfg.inference.onnx_config(d.sha256.clone()),
            threshold: d.threshold,
        };
        let model =
            load_with_workers(&spec, 0).with_context(|| format!("detector `{}`", d.name))?;
        let reload = Reloader::start(spec, cfg.model.watch, 0)
            .context("spawning a detector's reload thread")?;
        triggers.push(reload.trigger());
        out.push(Detector {
            name: d.name.clone(),
            model,
            reload: Some(Arc::new(reload)),
        });
    }
    Ok(out)
}

/// The `[[detector]]` sections that learn their model in the run.
fn learning_detectors(cfg: &Config) -> Result<Vec<LearningDetector>> {
    let mut out = Vec::new();
    for d in &cfg.detectors {
        let Some(learn_for) = d.learn_for else {
            continue;
        };
        let learner = crate::learn::RunLearner::new(cfg, d)
            .with_context(|| format!("detector `{}`", d.name))?;
        out.push(LearningDetector {
            name: d.name.clone(),
            learn_for,
            flow_timeout: cfg.flow.timeout,
            shards: cfg.worker_threads(),
            hold_max: crate::learn::HOLD_MAX,
            learner: Box::new(learner),
        });
    }
    Ok(out)
}

/// The configured alert sink: Kafka, stdout, or a file that SIGHUP re-opens
/// (log rotation; stdout and Kafka have none).
fn alert_sink(cfg: &Config) -> Result<(Box<dyn AlertSink>, Option<ReopenRequest>)> {
    let eve = EveWriter::new(cfg.output.community_id_seed);
    if let Some(k) = &cfg.output.kafka {
        let sink = KafkaSink::new(cfg.kafka_client()?, k.topic.clone(), eve)
            .with_context(|| format!("opening the Kafka alert sink (topic {})", k.topic))?;
        return Ok((Box::new(sink), None));
    }
    if cfg.output.eve == "-" {
        return Ok((Box::new(StdoutSink::new(eve)), None));
    }
    let request = ReopenRequest::new();
    request.on_sighup()?;
    let sink = FileSink::open(Path::new(&cfg.output.eve), eve)
        .with_context(|| format!("opening EVE output {}", cfg.output.eve))?;
    Ok((Box::new(sink), Some(request)))
}
