//! Why a packet did not become part of a flow, and how many did not.
//!
//! Every packet the capture reader yields either lands in a flow or is counted
//! here under exactly one [`SkipReason`]. That makes the pipeline's books
//! balance: packets read = packets in flows + [`SkipCounters::total`]. A
//! nonzero counter is information for the operator (a link type we do not
//! decode, a capture cut by a small snap length), never a silent loss.

use std::fmt;

/// Why a packet was not turned into a [`PacketRecord`](crate::PacketRecord).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
#[non_exhaustive]
pub enum SkipReason {
    /// A well-formed frame that carries no IP packet (ARP, LLDP, STP, LACP,
    /// PPP control protocols, MPLS payloads that are not IP, …).
    NonIp = 0,
    /// The capture's link type (or an interface's, in pcapng) is not one the
    /// decoder knows, including interfaces a pcapng file never described.
    UnsupportedLinkType = 1,
    /// The captured bytes end before the headers the record needs (snap length
    /// cut, or a damaged frame).
    Truncated = 2,
    /// Headers that contradict themselves: a bad IP version or header length,
    /// IP lengths too small for the headers they contain, a TCP data offset
    /// below 5, a raw-IP frame that is not IP.
    Malformed = 3,
    /// A non-first IP fragment: it carries no transport ports, so it cannot be
    /// given to a flow. (First fragments are decoded normally.)
    Fragment = 4,
    /// The capture file ended inside a packet record; the reader reported
    /// [`CaptureError::TruncatedRecord`](crate::capture::CaptureError::TruncatedRecord)
    /// and the pipeline counts that record here.
    TruncatedRecord = 5,
    /// Live capture only: the pipeline had no room for the packet, so the
    /// capture stage dropped it rather than stop reading the kernel's ring.
    QueueFull = 6,
}

impl SkipReason {
    /// Number of reasons (the length of [`SkipReason::ALL`]).
    pub const COUNT: usize = 7;

    /// All reasons, in a stable order (the order of counters and reports).
    pub const ALL: [SkipReason; SkipReason::COUNT] = [
        SkipReason::NonIp,
        SkipReason::UnsupportedLinkType,
        SkipReason::Truncated,
        SkipReason::Malformed,
        SkipReason::Fragment,
        SkipReason::TruncatedRecord,
        SkipReason::QueueFull,
    ];

    /// A short snake_case name, used as a metrics label and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::NonIp => "non_ip",
            SkipReason::UnsupportedLinkType => "unsupported_link_type",
            SkipReason::Truncated => "truncated",
            SkipReason::Malformed => "malformed",
            SkipReason::Fragment => "fragment",
            SkipReason::TruncatedRecord => "truncated_record",
            SkipReason::QueueFull => "queue_full",
        }
    }

    /// Position of this reason in [`SkipReason::ALL`].
    #[inline]
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One counter per [`SkipReason`]; cheap to copy and to merge across shards.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SkipCounters {
    counts: [u64; SkipReason::COUNT],
}

impl SkipCounters {
    /// All counters at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one packet skipped for `reason`.
    #[inline]
    pub fn add(&mut self, reason: SkipReason) {
        self.add_n(reason, 1);
    }

    /// Counts `n` packets skipped for `reason`.
    #[inline]
    pub fn add_n(&mut self, reason: SkipReason, n: u64) {
        if let Some(c) = self.counts.get_mut(reason.index()) {
            *c = c.wrapping_add(n);
        }
    }

    /// Packets skipped for `reason`.
    #[inline]
    pub fn get(&self, reason: SkipReason) -> u64 {
        self.counts.get(reason.index()).copied().unwrap_or(0)
    }

    /// Adds every counter of `other` to this one (shard totals → run totals).
    pub fn merge(&mut self, other: &SkipCounters) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a = a.wrapping_add(*b);
        }
    }

    /// Packets skipped for any reason.
    pub fn total(&self) -> u64 {
        self.counts.iter().fold(0u64, |a, b| a.wrapping_add(*b))
    }

    /// `(reason, count)` for every reason in [`SkipReason::ALL`] order, zeros included.
    pub fn iter(&self) -> impl Iterator<Item = (SkipReason, u64)> + '_ {
        SkipReason::ALL.iter().map(move |r| (*r, self.get(*r)))
    }

    /// Only the reasons with a nonzero count.
    pub fn nonzero(&self) -> impl Iterator<Item = (SkipReason, u64)> + '_ {
        self.iter().filter(|(_, n)| *n != 0)
    }
}

impl fmt::Display for SkipCounters {
    /// `reason=count` pairs for nonzero counters, space-separated (`none` if all zero).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (r, n) in self.nonzero() {
            if !first {
                f.write_str(" ")?;
            }
            write!(f, "{}={n}", r.as_str())?;
            first = false;
        }
        if first {
            f.write_str("none")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_in_index_order_and_names_are_unique_snake_case() {
        for (i, r) in SkipReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
            let s = r.as_str();
            assert!(s.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{s}");
        }
        let mut names: Vec<_> = SkipReason::ALL.iter().map(|r| r.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), SkipReason::COUNT);
    }

    #[test]
    fn counters_add_get_merge_total() {
        let mut a = SkipCounters::new();
        a.add(SkipReason::NonIp);
        a.add(SkipReason::NonIp);
        a.add_n(SkipReason::Fragment, 5);
        let mut b = SkipCounters::new();
        b.add(SkipReason::Truncated);
        b.add(SkipReason::NonIp);
        a.merge(&b);
        assert_eq!(a.get(SkipReason::NonIp), 3);
        assert_eq!(a.get(SkipReason::Fragment), 5);
        assert_eq!(a.get(SkipReason::Truncated), 1);
        assert_eq!(a.get(SkipReason::Malformed), 0);
        assert_eq!(a.total(), 9);
        assert_eq!(a.iter().count(), SkipReason::COUNT);
        assert_eq!(a.iter().map(|(_, n)| n).sum::<u64>(), 9);
        assert_eq!(a.nonzero().count(), 3);
        assert_eq!(a.to_string(), "non_ip=3 truncated=1 fragment=5");
        assert_eq!(SkipCounters::new().to_string(), "none");
    }
}
