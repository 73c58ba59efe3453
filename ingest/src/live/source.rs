//! [`LiveSource`]: an open interface as a packet source.
//!
//! Why it is not the file source: a file can wait for the pipeline, a
//! network cannot. Its [`Pacing::Live`] makes the writer drop (and count,
//! `queue_full`) the packets of a chunk the pipeline has no room for, so the
//! kernel's ring keeps draining and the books still balance (packets read =
//! packets in flows + skip counters), and stamp each chunk with the wall
//! clock, so flows time out while the link is quiet. It exports the
//! kernel's and the interface's drop counters as it goes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{LiveCapture, LiveStats, Next};
use crate::skip::SkipReason;
use crate::source::{
    CaptureReport, ChunkWriter, Pacing, PacketSource, ReadMeter, SourceReport, CHECK_EVERY,
};

/// How often the kernel counters and queue depth are read.
const STATS_EVERY: Duration = Duration::from_secs(1);

/// One capture thread's handle, read until `term` is set.
#[derive(Debug)]
pub struct LiveSource {
    cap: LiveCapture,
    term: Arc<AtomicBool>,
}

impl LiveSource {
    /// `cap`, read until `term` (SIGTERM, SIGINT) is set.
    pub fn new(cap: LiveCapture, term: Arc<AtomicBool>) -> Self {
        LiveSource { cap, term }
    }
}

/// The metrics of one interface's drops, and what was last added to them.
struct Drops {
    queue: metrics::Counter,
    kernel: metrics::Counter,
    interface: metrics::Counter,
    depth: metrics::Gauge,
    /// The kernel's totals at the last look.
    seen: LiveStats,
    /// Queue drops at the last look.
    queue_seen: u64,
}

impl Drops {
    fn new(interface: &str) -> Self {
        let label = interface.to_string();
        Drops {
            queue: metrics::counter!("tapstream_capture_queue_drops_total", "interface" => label.clone()),
            kernel: metrics::counter!("tapstream_capture_kernel_drops_total", "interface" => label.clone()),
            interface: metrics::counter!("tapstream_capture_interface_drops_total", "interface" => label),
            depth: metrics::gauge!("tapstream_queue_depth", "stage" => "decode"),
            seen: LiveStats::default(),
            queue_seen: 0,
        }
    }

    /// Adds the queue drops since the last look to the report and metrics.
    fn queue_drops(&mut self, out: &ChunkWriter, report: &mut SourceReport) {
        let n = out.dropped().saturating_sub(self.queue_seen);
        if n > 0 {
            report.skipped.add_n(SkipReason::QueueFull, n);
            self.queue.increment(n);
            self.queue_seen = out.dropped();
        }
    }

    /// Adds the kernel's drops since the last look.
    fn kernel_drops(&mut self, s: LiveStats) {
        self.kernel
            .increment(s.dropped.saturating_sub(self.seen.dropped));
        self.interface
            .increment(s.if_dropped.saturating_sub(self.seen.if_dropped));
        self.seen = s;
    }
}

impl PacketSource for LiveSource {
    fn describe(&self) -> String {
        format!("interface {}", self.cap.interface())
    }

    fn pacing(&self) -> Pacing {
        Pacing::Live
    }

    /// Reads until `term` or a stop is set or the capture fails; see the
    /// module docs.
    fn run(self: Box<Self>, mut out: ChunkWriter) -> SourceReport {
        let started = Instant::now();
        let LiveSource { mut cap, term } = *self;
        let interface = cap.interface().to_string();
        let mut report = SourceReport::default();
        let mut meter = ReadMeter::default();
        let mut drops = Drops::new(&interface);
        let mut stats_at = Instant::now();
        let mut until_check = CHECK_EVERY;
        while !out.stopped() && !term.load(Ordering::Relaxed) {
            let check = match cap.next_packet() {
                Ok(Next::Packet(p)) => {
                    report.packets += 1;
                    report.bytes += u64::from(p.orig_len);
                    report.link_types.add(p.link_type);
                    let pushed = out.push(&p);
                    // Counted as they happen (a compare when nothing dropped).
                    drops.queue_drops(&out, &mut report);
                    if !pushed {
                        break;
                    }
                    until_check -= 1;
                    until_check == 0
                }
                Ok(Next::Timeout) => true,
                Err(e) => {
                    tracing::error!(message = "live capture stopped", error = %e);
                    report.read_error = Some(e.to_string());
                    break;
                }
            };
            if !check {
                continue;
            }
            until_check = CHECK_EVERY;
            // A partly filled chunk waits at most FLUSH_WALL; a quiet link
            // still sends the clock now and then.
            let open = out.poll();
            drops.queue_drops(&out, &mut report);
            if !open {
                break;
            }
            if stats_at.elapsed() >= STATS_EVERY {
                stats_at = Instant::now();
                meter.publish(&report, out.progress());
                drops.depth.set(out.queued() as f64);
                if let Ok(s) = cap.stats() {
                    drops.kernel_drops(s);
                }
            }
        }
        // What was read is decoded and counted, even after a stop.
        drops.queue_drops(&out, &mut report);
        meter.publish(&report, out.progress());
        let blocked = out.finish();
        match cap.stats() {
            Ok(s) => drops.kernel_drops(s),
            Err(e) => {
                tracing::warn!(message = "cannot read the capture's kernel counters", error = %e)
            }
        }
        let kernel = drops.seen;
        tracing::info!(
            message = "capture thread done",
            interface = %interface,
            packets = report.packets,
            kernel_received = kernel.received,
            kernel_dropped = kernel.dropped,
            queue_full = report.skipped.get(SkipReason::QueueFull),
        );
        report.capture = Some(CaptureReport {
            interface,
            threads: 1,
            kernel_received: kernel.received,
            kernel_dropped: kernel.dropped,
            interface_dropped: kernel.if_dropped,
            queue_dropped: report.skipped.get(SkipReason::QueueFull),
        });
        // Busy: reading and copying, not waiting for packets or for room.
        report.busy = started
            .elapsed()
            .saturating_sub(blocked)
            .saturating_sub(cap.waited());
        report
    }
}
