//! The live-capture reader of `tapstream run --interface`.
//!
//! Why it is not the file reader: a file can wait for the pipeline, a
//! network cannot. This reader never blocks on a full pipeline; when no
//! chunk is free it drops the packets it holds and counts them
//! (`queue_full`), so the kernel's ring keeps draining and the books still
//! balance (packets read = packets in flows + skip counters). It stamps each
//! chunk with the wall clock, so flows time out while the link is quiet, and
//! it exports the kernel's and the interface's drop counters as it goes.
//! After the source, the hot path is the file replay's.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use serde::Serialize;
use tapstream_ingest::live::{LiveCapture, LiveConfig, LiveStats, Next};
use tapstream_ingest::SkipReason;

use crate::config::Config;
use crate::pipeline::{LiveOut, Progress, RawChunk, ReaderReport, Shipped};

/// Wall time after which a partly filled chunk goes on (as for files).
const FLUSH_WALL: Duration = Duration::from_millis(100);

/// Wall time between clock-only chunks while no packet arrives.
const CLOCK_EVERY: Duration = Duration::from_millis(500);

/// How often the kernel counters and queue depth are read.
const STATS_EVERY: Duration = Duration::from_secs(1);

/// Packets between looks at the wall clock.
const CHECK_EVERY: u32 = 64;

/// What the kernel and libpcap counted for a live capture, summed over the
/// capture threads.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CaptureReport {
    /// The interface.
    pub interface: String,
    /// Capture threads.
    pub threads: usize,
    /// Packets the kernel passed the filter (`ps_recv`).
    pub kernel_received: u64,
    /// Packets the kernel dropped: its buffer was full (`ps_drop`).
    pub kernel_dropped: u64,
    /// Packets the interface or driver dropped (`ps_ifdrop`).
    pub interface_dropped: u64,
    /// Packets read but dropped because the pipeline was full (also the
    /// `queue_full` skip counter).
    pub queue_dropped: u64,
}

impl CaptureReport {
    /// Adds another capture thread's counts.
    pub(crate) fn merge(&mut self, o: &CaptureReport) {
        if self.interface.is_empty() {
            self.interface.clone_from(&o.interface);
        }
        self.threads += o.threads;
        self.kernel_received += o.kernel_received;
        self.kernel_dropped += o.kernel_dropped;
        self.interface_dropped += o.interface_dropped;
        self.queue_dropped += o.queue_dropped;
    }
}

/// The capture settings of `cfg` for `interface`.
pub fn live_config(cfg: &Config, interface: &str, fanout: Option<u16>) -> LiveConfig {
    let c = &cfg.capture;
    LiveConfig {
        interface: interface.to_string(),
        filter: c.filter.clone(),
        snaplen: c.snaplen,
        buffer_bytes: c.buffer_mib.saturating_mul(1 << 20),
        immediate: c.immediate,
        timeout: c.timeout,
        promiscuous: c.promiscuous,
        fanout,
    }
}

/// Opens `capture.threads` handles on the interface (`cli` overrides
/// `capture.interface`), in one fanout group when there are several.
pub fn open_captures(cfg: &Config, cli: Option<&str>) -> Result<Vec<LiveCapture>> {
    let interface = cli
        .map(str::to_string)
        .or_else(|| cfg.capture.interface.clone())
        .context("live capture needs an interface: --interface IF or capture.interface")?;
    let threads = cfg.capture.threads.max(1);
    let fanout = (threads > 1).then(|| match cfg.capture.fanout_group {
        // Distinct per process, so two sensors on one host do not merge.
        0 => (std::process::id() & 0xffff) as u16,
        g => g,
    });
    (0..threads)
        .map(|_| {
            LiveCapture::open(&live_config(cfg, &interface, fanout)).map_err(anyhow::Error::from)
        })
        .collect()
}

/// Wall clock now, µs since the epoch.
fn wall_us() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// Reads `cap` until `term` or `stop` is set or the capture fails; see the
/// module docs.
pub(crate) fn live_loop(
    mut cap: LiveCapture,
    mut out: LiveOut,
    chunk_packets: usize,
    progress: &Progress,
    stop: &AtomicBool,
    term: &Arc<AtomicBool>,
) -> ReaderReport {
    let started = Instant::now();
    let mut report = ReaderReport::default();
    let interface = cap.interface().to_string();
    let mut capture = CaptureReport {
        interface: interface.clone(),
        threads: 1,
        ..CaptureReport::default()
    };
    let read_packets = metrics::counter!("tapstream_packets_read_total");
    let read_bytes = metrics::counter!("tapstream_bytes_read_total");
    let queue_drops =
        metrics::counter!("tapstream_capture_queue_drops_total", "interface" => interface.clone());
    let kernel_drops =
        metrics::counter!("tapstream_capture_kernel_drops_total", "interface" => interface.clone());
    let if_drops = metrics::counter!(
        "tapstream_capture_interface_drops_total",
        "interface" => interface.clone()
    );
    let depth = metrics::gauge!("tapstream_queue_depth", "stage" => "decode");
    let Some(mut chunk) = out.first() else {
        return report;
    };
    let mut published = (0u64, 0u64);
    let mut kernel = LiveStats::default();
    let mut opened = Instant::now();
    let mut shipped_at = Instant::now();
    let mut stats_at = Instant::now();
    let mut until_check = CHECK_EVERY;
    let ship = |out: &mut LiveOut, chunk: &mut RawChunk, report: &mut ReaderReport| -> bool {
        chunk.set_clock(wall_us());
        match out.ship(chunk) {
            Shipped::Sent => true,
            Shipped::Dropped(n) => {
                report.skipped.add_n(SkipReason::QueueFull, n);
                queue_drops.increment(n);
                true
            }
            Shipped::Closed => false,
        }
    };
    // Adds what was read since the last call to the metrics and progress.
    let publish = |report: &ReaderReport, published: &mut (u64, u64)| {
        let n = report.packets - published.0;
        read_packets.increment(n);
        read_bytes.increment(report.bytes - published.1);
        progress.packets.fetch_add(n, Ordering::Relaxed);
        *published = (report.packets, report.bytes);
    };
    loop {
        if stop.load(Ordering::Relaxed) || term.load(Ordering::Relaxed) {
            break;
        }
        let mut check = false;
        match cap.next_packet() {
            Ok(Next::Packet(p)) => {
                report.packets += 1;
                report.bytes += u64::from(p.orig_len);
                if !chunk.fits(&p) && !ship(&mut out, &mut chunk, &mut report) {
                    break;
                }
                if chunk.is_empty() {
                    opened = Instant::now();
                }
                chunk.push(&p);
                if chunk.len() >= chunk_packets {
                    if !ship(&mut out, &mut chunk, &mut report) {
                        break;
                    }
                    shipped_at = Instant::now();
                }
                until_check -= 1;
                if until_check == 0 {
                    until_check = CHECK_EVERY;
                    check = true;
                }
            }
            Ok(Next::Timeout) => check = true,
            Err(e) => {
                tracing::error!(message = "live capture stopped", error = %e);
                report.read_error = Some(e.to_string());
                break;
            }
        }
        if !check {
            continue;
        }
        // A partly filled chunk waits at most FLUSH_WALL; a quiet link still
        // sends the clock now and then.
        let due = if chunk.is_empty() {
            shipped_at.elapsed() >= CLOCK_EVERY
        } else {
            opened.elapsed() >= FLUSH_WALL
        };
        if due {
            if !ship(&mut out, &mut chunk, &mut report) {
                break;
            }
            shipped_at = Instant::now();
        }
        if stats_at.elapsed() >= STATS_EVERY {
            stats_at = Instant::now();
            publish(&report, &mut published);
            depth.set(out.queued() as f64);
            if let Ok(s) = cap.stats() {
                kernel_drops.increment(s.dropped.saturating_sub(kernel.dropped));
                if_drops.increment(s.if_dropped.saturating_sub(kernel.if_dropped));
                kernel = s;
            }
        }
    }
    // What was read is decoded and counted, even after a stop.
    let blocked = out.blocked;
    out.finish(chunk);
    publish(&report, &mut published);
    match cap.stats() {
        Ok(s) => {
            kernel_drops.increment(s.dropped.saturating_sub(kernel.dropped));
            if_drops.increment(s.if_dropped.saturating_sub(kernel.if_dropped));
            kernel = s;
        }
        Err(e) => tracing::warn!(message = "cannot read the capture's kernel counters", error = %e),
    }
    tracing::info!(
        message = "capture thread done",
        interface = %interface,
        packets = report.packets,
        kernel_received = kernel.received,
        kernel_dropped = kernel.dropped,
        queue_full = report.skipped.get(SkipReason::QueueFull),
    );
    capture.kernel_received = kernel.received;
    capture.kernel_dropped = kernel.dropped;
    capture.interface_dropped = kernel.if_dropped;
    capture.queue_dropped = report.skipped.get(SkipReason::QueueFull);
    report.capture = Some(capture);
    // Busy: reading and copying, not waiting for packets or for room.
    report.busy = started
        .elapsed()
        .saturating_sub(blocked)
        .saturating_sub(cap.waited());
    report
}
