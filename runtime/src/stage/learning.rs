//! A detector that learns what is normal here before it scores
//! (`[[detector]] learn_for`): for the first stretch of packet time it
//! gathers the flows, then fits its model on them and scores the flows
//! after.
//!
//! Why a stage of its own: which flows are learned and which are scored
//! must not depend on when batches arrive, so that a replayed capture gives
//! the same alerts for any number of workers. Flows are sorted by their
//! first packet, which the input fixes:
//!
//! * a flow that starts before `T` = the input's first packet + `learn_for`
//!   is learned;
//! * one that starts before `T` + the flow timeout is neither learned nor
//!   scored: flows of the learning period are still ending then;
//! * every later flow is scored by the learned model.
//!
//! The model is fitted once no learned flow can still come. A flow ends at
//! most the flow timeout after its first packet, and every flow worker
//! moves its clock with every input chunk (the packet clock is the input's,
//! not the shard's). A flow that started a flow timeout and a clock tick
//! after `T` was opened in an input chunk whose clock had passed `T` + the
//! timeout; its shard's next watermark (every start of chunks below it
//! sent) names a chunk number `K` past it. Once every shard's watermark has
//! reached `K`, every shard has moved its clock that far and ended, and
//! sent, every flow that started before `T`. The fit runs on a thread of
//! its own; flows to score that come meanwhile are held (up to a limit; at
//! the limit the stage waits for the fit) and scored once it is done. Before
//! the fit can start, what is held is bounded by the pipeline's queues: no
//! shard runs more than their length ahead of another.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use tapstream_inference::LoadedModel;
use tapstream_ingest::source::Progress;
use tapstream_ingest::FlowMeta;
use tapstream_kernels::FlowBatch;

use super::detectors::{Detector, DetectorCounts, Extra};

/// Fits a detector's model on the flows it is given.
pub trait Learner: Send {
    /// Adds the flows of `b` that `keep` accepts (with their feature and
    /// context rows).
    fn add(&mut self, b: &FlowBatch, keep: &dyn Fn(&FlowMeta) -> bool);
    /// Flows added so far.
    fn flows(&self) -> u64;
    /// Fits the model on the flows added and loads it for scoring.
    fn fit(self: Box<Self>) -> Result<LoadedModel>;
}

/// A detector that learns for `learn_for` of packet time, then scores.
pub struct LearningDetector {
    /// Its name in alerts and in the summary.
    pub name: String,
    /// How long (packet time, from the input's first packet) it learns.
    pub learn_for: Duration,
    /// The flow timeout of the run: no flow lasts longer.
    pub flow_timeout: Duration,
    /// The flow workers of the run (each is a shard whose flows arrive).
    pub shards: usize,
    /// Flows to score held while the model is fitted, at most; at the
    /// limit the stage waits for the fit.
    pub hold_max: usize,
    /// What fits the model.
    pub learner: Box<dyn Learner>,
}

/// The packet clock moves in steps this long (the flow workers' tick).
const TICK_US: i64 = super::decode::TICK_US;

/// Where a learning detector stands.
enum Phase {
    /// Gathering the flows of the learning period.
    Learning(Box<dyn Learner>),
    /// The model is being fitted on a thread of its own.
    Fitting(JoinHandle<Result<LoadedModel>>),
    /// The fit failed; the detector scores nothing.
    Failed,
}

/// A learning detector's state in the alert stage, until its model is
/// ready and it becomes an [`Extra`].
pub(crate) struct Learning {
    pub(crate) index: u16,
    learn_for_us: i64,
    timeout_us: i64,
    hold_max: usize,
    phase: Phase,
    /// The input's first packet time, from the reader.
    progress: Option<Arc<Progress>>,
    /// Per shard: it has sent a flow that started a tick past the wait,
    /// and not yet the watermark after it.
    late_seen: Vec<bool>,
    /// Per shard: its latest watermark.
    watermarks: Vec<u64>,
    /// The lowest watermark that followed a late flow: once every shard has
    /// reached it, no learned flow can still come.
    complete_at: Option<u64>,
    /// Flows to score, in arrival order, until the model is ready.
    held: Vec<FlowBatch>,
    held_flows: usize,
    pub(crate) counts: DetectorCounts,
}

/// What a learning detector counted, beside [`DetectorCounts`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LearnCounts {
    /// Flows of the learning period.
    pub learned: u64,
    /// Those kept to fit on (fewer when a cap sampled them).
    pub kept: u64,
    /// Flows that started in the flow timeout after the learning period
    /// (neither learned nor scored).
    pub skipped: u64,
    /// The fit failed (then it scored nothing): why.
    pub failed: Option<String>,
}

impl Learning {
    pub(crate) fn new(d: LearningDetector, index: u16) -> Self {
        let to_us = |d: Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        let shards = d.shards.max(1);
        Learning {
            index,
            learn_for_us: to_us(d.learn_for),
            timeout_us: to_us(d.flow_timeout),
            hold_max: d.hold_max.max(1),
            phase: Phase::Learning(d.learner),
            progress: None,
            late_seen: vec![false; shards],
            watermarks: vec![0; shards],
            complete_at: None,
            held: Vec::new(),
            held_flows: 0,
            counts: DetectorCounts {
                name: d.name,
                learn: Some(LearnCounts::default()),
                ..DetectorCounts::default()
            },
        }
    }

    /// The reader's progress, where the input's first packet time appears.
    pub(crate) fn set_progress(&mut self, p: Arc<Progress>) {
        self.progress = Some(p);
    }

    /// The end of the learning period, and where scoring starts (µs), once
    /// the first packet is known.
    fn bounds(&self) -> Option<(i64, i64)> {
        let first = *self.progress.as_ref()?.first_packet_us.get()?;
        let t = first.saturating_add(self.learn_for_us);
        Some((t, t.saturating_add(self.timeout_us)))
    }

    fn learn_counts(&mut self) -> &mut LearnCounts {
        self.counts.learn.get_or_insert_with(LearnCounts::default)
    }

    /// Takes a batch: learns its flows of the learning period, holds those
    /// to score, and starts the fit once no learned flow can still come.
    /// Returns the detector once its model is ready.
    pub(crate) fn gather(&mut self, b: &FlowBatch, context: bool) -> Option<Extra> {
        let Some((t, score_from)) = self.bounds() else {
            // No packet read yet: a batch can only be empty.
            return None;
        };
        let (mut learned, mut skipped, mut to_score) = (0u64, 0u64, 0usize);
        for m in &b.metas {
            if m.start_us < t {
                learned += 1;
            } else if m.start_us < score_from {
                skipped += 1;
            } else {
                to_score += 1;
            }
        }
        if let Phase::Learning(l) = &mut self.phase {
            if learned > 0 {
                l.add(b, &|m: &FlowMeta| m.start_us < t);
            }
        } else if learned > 0 {
            // Only a flow past the flow timeout can do this (never, as the
            // flow table ends every flow at it): it is not learned.
            skipped += learned;
            learned = 0;
        }
        let c = self.learn_counts();
        c.learned += learned;
        c.skipped += skipped;
        let shard = b.shard.unwrap_or(0) as usize;
        if to_score > 0 {
            if !matches!(self.phase, Phase::Failed) {
                self.held_flows += to_score;
                self.held.push(b.select(|m| m.start_us >= score_from));
            }
            let late = score_from.saturating_add(TICK_US);
            if b.metas.iter().any(|m| m.start_us >= late) {
                if let Some(seen) = self.late_seen.get_mut(shard) {
                    *seen = true;
                }
            }
        }
        if let Some(w) = b.watermark {
            if let Some(at) = self.watermarks.get_mut(shard) {
                *at = (*at).max(w);
            }
            if let Some(seen) = self.late_seen.get_mut(shard).filter(|s| **s) {
                *seen = false;
                self.complete_at = Some(self.complete_at.map_or(w, |c| c.min(w)));
            }
        }
        if let Some(k) = self.complete_at {
            if self.watermarks.iter().all(|&w| w >= k) {
                self.start_fit();
            }
        }
        if self.held_flows >= self.hold_max {
            if let Phase::Fitting(_) = self.phase {
                tracing::info!(
                    message = "waiting for the learning detector's fit",
                    detector = %self.counts.name,
                    held = self.held_flows,
                );
                return self.wait(context);
            }
            // Still learning: the held flows wait for the fit; none is lost.
        }
        self.poll(context)
    }

    /// Every flow has come: fits now (if not yet) and waits for it.
    pub(crate) fn finish(&mut self, context: bool) -> Option<Extra> {
        self.start_fit();
        self.wait(context)
    }

    fn start_fit(&mut self) {
        let phase = std::mem::replace(&mut self.phase, Phase::Failed);
        self.phase = match phase {
            Phase::Learning(l) => {
                tracing::info!(
                    message = "learning period over: fitting the model",
                    detector = %self.counts.name,
                    flows = l.flows(),
                );
                self.learn_counts().kept = l.flows();
                let spawned = std::thread::Builder::new()
                    .name(format!("learn-{}", self.counts.name))
                    .spawn(move || l.fit());
                match spawned {
                    Ok(h) => Phase::Fitting(h),
                    Err(e) => {
                        self.fail(anyhow!(e).context("spawning the fit thread"));
                        Phase::Failed
                    }
                }
            }
            other => other,
        };
    }

    /// The detector, once the fit has finished (without waiting).
    pub(crate) fn poll(&mut self, context: bool) -> Option<Extra> {
        match &self.phase {
            Phase::Fitting(h) if h.is_finished() => self.wait(context),
            _ => None,
        }
    }

    /// Waits for the fit, then gives the detector with every held flow
    /// gathered for scoring.
    fn wait(&mut self, context: bool) -> Option<Extra> {
        let Phase::Fitting(h) = std::mem::replace(&mut self.phase, Phase::Failed) else {
            return None;
        };
        let started = Instant::now();
        let fitted = h
            .join()
            .map_err(|_| anyhow!("the fit thread panicked"))
            .and_then(|r| r);
        match fitted {
            Ok(model) => {
                let mut e = Extra::new(
                    Detector {
                        name: self.counts.name.clone(),
                        model,
                        reload: None,
                    },
                    self.index,
                    context,
                );
                e.counts.learn = self.counts.learn.take();
                tracing::info!(
                    message = "learned model scoring",
                    detector = %self.counts.name,
                    waited_ms = started.elapsed().as_millis() as u64,
                    held = self.held_flows,
                );
                for b in self.held.drain(..) {
                    e.gather(&b);
                }
                self.held_flows = 0;
                Some(e)
            }
            Err(e) => {
                self.fail(e);
                None
            }
        }
    }

    fn fail(&mut self, e: anyhow::Error) {
        tracing::error!(
            message = "the learning detector could not fit its model; it scores nothing",
            detector = %self.counts.name,
            error = format!("{e:#}"),
        );
        self.learn_counts().failed = Some(format!("{e:#}"));
        self.held.clear();
        self.held_flows = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tapstream_kernels::schema::NUM_FEATURES;

    /// Counts what it is given; its fit fails, naming that count.
    struct Counting(u64);

    impl Learner for Counting {
        fn add(&mut self, b: &FlowBatch, keep: &dyn Fn(&FlowMeta) -> bool) {
            self.0 += b.metas.iter().filter(|m| keep(m)).count() as u64;
        }
        fn flows(&self) -> u64 {
            self.0
        }
        fn fit(self: Box<Self>) -> Result<LoadedModel> {
            Err(anyhow!("fitted on {}", self.0))
        }
    }

    /// A batch of shard `shard` with flows starting at `starts_s` seconds.
    fn batch(shard: u32, starts_s: &[i64], watermark: Option<u64>) -> FlowBatch {
        let mut b = FlowBatch {
            shard: Some(shard),
            watermark,
            ..FlowBatch::default()
        };
        for (i, &s) in starts_s.iter().enumerate() {
            let meta = FlowMeta {
                flow_id: i as u64,
                src: [0; 16],
                dst: [0; 16],
                sport: 0,
                dport: 0,
                proto: 6,
                v6: false,
                icmp_type: 0,
                icmp_code: 0,
                start_us: s * 1_000_000,
                last_us: s * 1_000_000,
                pkts_fwd: 1,
                pkts_bwd: 0,
                bytes_fwd: 0,
                bytes_bwd: 0,
                reason: tapstream_ingest::EndReason::EndOfInput,
            };
            b.push(meta, &[0.0; NUM_FEATURES]);
        }
        b
    }

    fn fitting(l: &Learning) -> bool {
        !matches!(l.phase, Phase::Learning(_))
    }

    /// Learns for 10 s from a first packet at 0, with a 5 s flow timeout.
    fn learning(shards: usize) -> Learning {
        let progress = Arc::new(Progress::default());
        let _ = progress.first_packet_us.set(0);
        let mut l = Learning::new(
            LearningDetector {
                name: "site".into(),
                learn_for: Duration::from_secs(10),
                flow_timeout: Duration::from_secs(5),
                shards,
                hold_max: 1_000,
                learner: Box::new(Counting(0)),
            },
            1,
        );
        l.set_progress(progress);
        l
    }

    #[test]
    fn the_fit_waits_for_every_shard_past_the_late_flows_chunk() {
        let mut l = learning(2);
        // Shard 0: a flow learned (1 s), one in the wait (12 s) and one
        // scored a tick past it (20 s: scoring starts at 15 s); then the
        // end of its chunk 2 (watermark 3).
        assert!(l.gather(&batch(0, &[1, 12, 20], None), true).is_none());
        assert!(l.gather(&batch(0, &[], Some(3)), true).is_none());
        assert!(!fitting(&l), "shard 1 has not reached chunk 3");
        // Shard 1, behind: a flow of the learning period still comes.
        assert!(l.gather(&batch(1, &[9], Some(2)), true).is_none());
        assert!(!fitting(&l));
        assert!(l.gather(&batch(1, &[], Some(3)), true).is_none());
        assert!(fitting(&l), "every shard is past chunk 3");
        assert!(l.finish(true).is_none());
        let c = l.counts.learn.clone().unwrap_or_default();
        assert_eq!(c.learned, 2);
        assert_eq!(c.skipped, 1);
        assert_eq!(c.failed.as_deref(), Some("fitted on 2"));
        // Held flows are dropped with a failed fit.
        assert!(l.held.is_empty());
    }

    #[test]
    fn without_late_flows_the_fit_waits_for_the_end() {
        let mut l = learning(1);
        // Scored, but not a tick past the wait: no proof yet.
        assert!(l.gather(&batch(0, &[1, 2, 15], Some(1)), true).is_none());
        assert!(!fitting(&l));
        assert!(l.finish(true).is_none());
        let c = l.counts.learn.clone().unwrap_or_default();
        assert_eq!((c.learned, c.skipped), (2, 0));
        assert_eq!(c.failed.as_deref(), Some("fitted on 2"));
    }
}
