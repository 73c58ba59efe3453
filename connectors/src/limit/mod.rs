//! Fewer repeated alerts: de-duplication by flow id and a rate limit per
//! tracked address and class, decided before an alert reaches its sink.
//!
//! Why: a scan or a flood is thousands of flows, and the model raises one
//! alert per flow, so one source can bury a SIEM (and the analysts behind
//! it) in identical alerts; and a flow scored twice (a Kafka source reads
//! messages again after a rebalance) is alerted twice. Suricata answers the
//! first with `threshold` type `limit` and `rate_filter`: at most `count`
//! alerts per tracked key per window. This module does the same for
//! tapstream's alerts, keyed by address (source, destination or the pair)
//! and class, plus a memory of flow ids already seen.
//!
//! Decisions use packet time (the alert's flow end time), never the wall
//! clock, so replaying a capture gives the same decisions for the same
//! order of alerts. Memory is bounded: both tables forget their oldest
//! entries when full, and a forgotten id or key starts afresh.
//!
//! The limiter only decides. Writing, and counting what was written or
//! suppressed, stays with the caller, like the rest of the alert stage.

mod table;

use std::time::Duration;

use crate::eve::Alert;
use table::{RateTable, SeenIds};

/// Default number of flow ids remembered for de-duplication.
pub const DEFAULT_DEDUP_CAPACITY: usize = 65_536;

/// Default number of keys the rate limit tracks at once.
pub const DEFAULT_MAX_KEYS: usize = 65_536;

/// What the limiter suppresses. The default suppresses nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LimitSettings {
    /// Suppress an alert whose flow id was seen before, remembering at most
    /// this many ids (the oldest forgotten first; 0 counts as 1). `None`:
    /// no de-duplication.
    pub dedup_capacity: Option<usize>,
    /// The rate limit; `None`: none.
    pub rate: Option<RateLimit>,
}

/// At most `count` alerts per key and class per `window` of packet time.
///
/// A key's window starts at its first alert; the first alert at or after
/// the window's end starts the next one (Suricata's `limit`). An alert
/// older than its key's window start (flows do not end in time order across
/// workers) counts toward the current window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// What the key is made of (always with the alert's class).
    pub track: Track,
    /// Alerts let through per key and window (0 counts as 1).
    pub count: u32,
    /// The window, in packet time (below 1 µs counts as 1 µs).
    pub window: Duration,
    /// Keys tracked at most; when full, the key whose window began earliest
    /// is forgotten (0 counts as 1).
    pub max_keys: usize,
}

/// The addresses a rate limit tracks alerts by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Track {
    /// The flow's forward source address (`src_ip`).
    BySrc,
    /// The flow's forward destination address (`dest_ip`).
    ByDst,
    /// Source and destination together, in that order.
    ByPair,
}

/// Why an alert was not written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SuppressReason {
    /// Its flow id was seen before.
    DuplicateFlow,
    /// Its key and class had their `count` alerts in the current window.
    RateLimit,
}

impl SuppressReason {
    /// Every reason, in a fixed order.
    pub const ALL: [SuppressReason; 2] = [SuppressReason::DuplicateFlow, SuppressReason::RateLimit];

    /// The name used in metrics and summaries: `duplicate_flow`,
    /// `rate_limit`.
    pub fn as_str(self) -> &'static str {
        match self {
            SuppressReason::DuplicateFlow => "duplicate_flow",
            SuppressReason::RateLimit => "rate_limit",
        }
    }
}

/// What to do with an alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Write it.
    Pass,
    /// Drop it, and count it under this reason.
    Suppress(SuppressReason),
}

/// Alerts suppressed so far, per reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SuppressedCounts {
    /// Alerts whose flow id was seen before.
    pub duplicate_flow: u64,
    /// Alerts over the rate limit.
    pub rate_limit: u64,
}

impl SuppressedCounts {
    /// Counts one alert suppressed for `reason`.
    pub fn add(&mut self, reason: SuppressReason) {
        match reason {
            SuppressReason::DuplicateFlow => self.duplicate_flow += 1,
            SuppressReason::RateLimit => self.rate_limit += 1,
        }
    }

    /// The count for `reason`.
    pub fn get(&self, reason: SuppressReason) -> u64 {
        match reason {
            SuppressReason::DuplicateFlow => self.duplicate_flow,
            SuppressReason::RateLimit => self.rate_limit,
        }
    }

    /// Every suppressed alert.
    pub fn total(&self) -> u64 {
        self.duplicate_flow + self.rate_limit
    }
}

/// Decides, alert by alert, which to write; see the module docs.
///
/// De-duplication comes first: a duplicate is suppressed as such and does
/// not use up its key's rate. Every flow id checked is remembered, whether
/// its alert was then written or rate limited, so a flow scored again is
/// always reported as a duplicate.
#[derive(Debug, Default)]
pub struct AlertLimiter {
    // Boxed: a limiter that is off costs two null pointers wherever it is
    // carried.
    seen: Option<Box<SeenIds>>,
    rate: Option<Box<(Track, RateTable)>>,
}

impl AlertLimiter {
    /// A limiter with these settings. Memory grows with use, up to the
    /// configured capacities.
    pub fn new(settings: &LimitSettings) -> Self {
        AlertLimiter {
            seen: settings.dedup_capacity.map(|c| Box::new(SeenIds::new(c))),
            rate: settings.rate.as_ref().map(|r| {
                let window_us = i64::try_from(r.window.as_micros()).unwrap_or(i64::MAX);
                Box::new((r.track, RateTable::new(r.count, window_us, r.max_keys)))
            }),
        }
    }

    /// True when the limiter can suppress anything.
    pub fn is_active(&self) -> bool {
        self.seen.is_some() || self.rate.is_some()
    }

    /// Whether to write `alert`; it is counted toward later decisions.
    pub fn check(&mut self, alert: &Alert<'_>) -> Verdict {
        if let Some(seen) = &mut self.seen {
            if seen.check_insert(alert.flow.flow_id) {
                return Verdict::Suppress(SuppressReason::DuplicateFlow);
            }
        }
        if let Some(rate) = &mut self.rate {
            let (track, table) = &mut **rate;
            let f = alert.flow;
            let none = [0u8; 16];
            let (src, dst) = match track {
                Track::BySrc => (f.src, none),
                Track::ByDst => (none, f.dst),
                Track::ByPair => (f.src, f.dst),
            };
            let key = table::Key {
                src,
                dst,
                v6: f.v6,
                class: alert.class_index,
            };
            if !table.admit(key, f.last_us) {
                return Verdict::Suppress(SuppressReason::RateLimit);
            }
        }
        Verdict::Pass
    }

    /// Keys the rate limit holds now (for tests of its bound).
    #[cfg(test)]
    fn rate_keys(&self) -> usize {
        self.rate.as_ref().map_or(0, |r| r.1.len())
    }
}

#[cfg(test)]
mod tests;
