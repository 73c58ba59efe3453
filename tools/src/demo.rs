//! The demo capture: a small, deterministic pcap that the project makes itself.
//!
//! The quick start needs a capture that shows the main job end to end without
//! shipping third-party data. This module synthesises one: benign web, DNS
//! and file-transfer sessions with realistic handshakes, round-trip times and
//! teardowns, mixed with the attack patterns the default model was trained
//! on (a SYN port scan, an HTTP flood from many connections, a slow-header
//! DoS, and an SSH password-guessing run). It is a demonstration, not an
//! evaluation set: the model's measured accuracy comes from the held-out
//! split of the training data (see the README).
//!
//! Randomness comes from the fixed-seed generator in [`crate::rng`], so the
//! file is byte-identical on every machine and every version of every
//! dependency.

use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr};

use crate::rng::SplitMix64;
use tapstream_ingest::packet::tcp_flags::{ACK, FIN, PSH, RST, SYN};
use tapstream_ingest::pcapgen::{Frame, PcapWriter, LINKTYPE_ETHERNET};

/// First packet time of the demo: 2026-01-05T09:00:00Z.
pub const DEMO_START_US: i64 = 1_767_603_600_000_000;

/// What [`write_demo`] wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DemoStats {
    /// Packets written.
    pub packets: u64,
    /// Benign sessions.
    pub benign_sessions: u64,
    /// Attack sessions (flows the attacker started).
    pub attack_sessions: u64,
}

/// One packet to write, in time order after sorting.
struct Pkt {
    ts: i64,
    seq: u64,
    frame: Frame,
}

/// Collects the packets of all sessions, then sorts them by time.
struct Trace {
    pkts: Vec<Pkt>,
    rng: SplitMix64,
    stats: DemoStats,
}

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

const WEB: [u8; 4] = [198, 18, 0, 2];
const DNS: [u8; 4] = [198, 18, 0, 53];
const SSH: [u8; 4] = [198, 18, 0, 22];

impl Trace {
    fn push(&mut self, ts: i64, frame: Frame) {
        let seq = self.pkts.len() as u64;
        self.pkts.push(Pkt { ts, seq, frame });
    }

    /// A TCP session: handshake, `exchanges` request/response pairs with the
    /// given sizes, then a FIN teardown (or a client RST when `rst_close`).
    /// Returns the time of its last packet.
    #[allow(clippy::too_many_arguments)]
    fn tcp_session(
        &mut self,
        t0: i64,
        client: IpAddr,
        sport: u16,
        server: IpAddr,
        dport: u16,
        rtt_us: i64,
        exchanges: &[(usize, usize, i64)],
        rst_close: bool,
    ) -> i64 {
        let half = (rtt_us / 2).max(1);
        let mut t = t0;
        let c =
            |flags, len| Frame::tcp(client, server, sport, dport, flags, len).with_tcp_options(12);
        let s =
            |flags, len| Frame::tcp(server, client, dport, sport, flags, len).with_tcp_options(12);
        self.push(t, c(SYN, 0).with_window(64240).with_tcp_options(20));
        t += half;
        self.push(t, s(SYN | ACK, 0).with_window(65160).with_tcp_options(20));
        t += half;
        self.push(t, c(ACK, 0).with_window(502));
        for &(req, resp, think_us) in exchanges {
            t += think_us.max(1);
            self.push(t, c(PSH | ACK, req).with_window(502));
            t += half;
            // Server response in MSS-sized segments, client ACKs every other one.
            let mut left = resp;
            let mut segs = 0;
            while left > 0 {
                let n = left.min(1448);
                left -= n;
                let flags = if left == 0 { PSH | ACK } else { ACK };
                self.push(t, s(flags, n).with_window(509));
                t += self.rng.range(20, 120) as i64;
                segs += 1;
                if segs % 2 == 0 || left == 0 {
                    self.push(t + half, c(ACK, 0).with_window(502));
                }
            }
            t += half;
        }
        t += self.rng.range(1_000, 50_000) as i64;
        if rst_close {
            self.push(t, c(RST | ACK, 0).with_window(0));
        } else {
            self.push(t, c(FIN | ACK, 0).with_window(502));
            t += half;
            self.push(t, s(FIN | ACK, 0).with_window(509));
            t += half;
            self.push(t, c(ACK, 0).with_window(502));
        }
        t
    }

    fn benign(&mut self) {
        let span = 55_000_000i64;
        // Web browsing: a few requests per connection.
        for i in 0..60u64 {
            let t0 = DEMO_START_US + self.rng.range(0, span as u64) as i64;
            let client = v4(198, 18, 1, 10 + (i % 40) as u8);
            let sport = 40_000 + (i * 7 % 20_000) as u16;
            let rtt = self.rng.range(2_000, 40_000) as i64;
            let n = self.rng.range(1, 4) as usize;
            let ex: Vec<(usize, usize, i64)> = (0..n)
                .map(|_| {
                    (
                        self.rng.range(300, 700) as usize,
                        self.rng.range(2_000, 60_000) as usize,
                        self.rng.range(50_000, 2_000_000) as i64,
                    )
                })
                .collect();
            self.tcp_session(t0, client, sport, WEB.into(), 443, rtt, &ex, false);
            self.stats.benign_sessions += 1;
        }
        // Two larger downloads.
        for i in 0..2u64 {
            let t0 = DEMO_START_US + self.rng.range(0, 20_000_000) as i64;
            let client = v4(198, 18, 1, 60 + i as u8);
            let ex = [(420, 1_500_000, 30_000)];
            self.tcp_session(
                t0,
                client,
                51_000 + i as u16,
                WEB.into(),
                443,
                8_000,
                &ex,
                false,
            );
            self.stats.benign_sessions += 1;
        }
        // DNS lookups.
        for i in 0..80u64 {
            let t0 = DEMO_START_US + self.rng.range(0, span as u64) as i64;
            let client = v4(198, 18, 1, 10 + (i % 40) as u8);
            let sport = 30_000 + (i * 131 % 30_000) as u16;
            let q = self.rng.range(28, 60) as usize;
            self.push(t0, Frame::udp(client, DNS.into(), sport, 53, q));
            let rt = self.rng.range(300, 30_000) as i64;
            let a = q + self.rng.range(16, 180) as usize;
            self.push(t0 + rt, Frame::udp(DNS.into(), client, 53, sport, a));
            self.stats.benign_sessions += 1;
        }
    }

    fn attacks(&mut self) {
        let attacker = v4(198, 18, 66, 6);
        // SYN port scan of the web server: closed ports answer RST/ACK.
        let t_scan = DEMO_START_US + 5_000_000;
        for (k, port) in (1..=1024u16).enumerate() {
            let t = t_scan + k as i64 * self.rng.range(80, 400) as i64;
            let sport = 61_000 + (k % 3) as u16;
            self.push(
                t,
                Frame::tcp(attacker, WEB.into(), sport, port, SYN, 0)
                    .with_window(1024)
                    .with_tcp_options(4),
            );
            let rt = self.rng.range(40, 200) as i64;
            if port == 443 || port == 80 || port == 22 {
                self.push(
                    t + rt,
                    Frame::tcp(WEB.into(), attacker, port, sport, SYN | ACK, 0)
                        .with_window(65160)
                        .with_tcp_options(4),
                );
                self.push(
                    t + 2 * rt,
                    Frame::tcp(attacker, WEB.into(), sport, port, RST, 0).with_window(0),
                );
            } else {
                self.push(
                    t + rt,
                    Frame::tcp(WEB.into(), attacker, port, sport, RST | ACK, 0).with_window(0),
                );
            }
            self.stats.attack_sessions += 1;
        }
        // HTTP flood: many short connections hammering one URL.
        let t_flood = DEMO_START_US + 20_000_000;
        for i in 0..300u64 {
            let t0 = t_flood + i as i64 * self.rng.range(2_000, 12_000) as i64;
            let src = v4(198, 18, 70, 1 + (i % 4) as u8);
            let sport = 33_000 + (i % 28_000) as u16;
            let ex = [(self.rng.range(200, 260) as usize, 11_595, 1_000)];
            self.tcp_session(t0, src, sport, WEB.into(), 80, 600, &ex, true);
            self.stats.attack_sessions += 1;
        }
        // Slow-header DoS: connections that send a few bytes every few seconds.
        let t_slow = DEMO_START_US + 10_000_000;
        for i in 0..40u64 {
            let t0 = t_slow + i as i64 * 150_000;
            let sport = 45_000 + i as u16;
            let c = |flags, len| Frame::tcp(attacker, WEB.into(), sport, 80, flags, len);
            let s = |flags, len| Frame::tcp(WEB.into(), attacker, 80, sport, flags, len);
            self.push(t0, c(SYN, 0).with_window(29200).with_tcp_options(20));
            self.push(
                t0 + 300,
                s(SYN | ACK, 0).with_window(28960).with_tcp_options(20),
            );
            self.push(t0 + 600, c(ACK, 0).with_window(229));
            let mut t = t0 + 1_000;
            self.push(t, c(PSH | ACK, 230).with_window(229));
            self.push(t + 300, s(ACK, 0).with_window(235));
            for _ in 0..4 {
                t += self.rng.range(9_000_000, 11_000_000) as i64;
                let len = self.rng.range(8, 24) as usize;
                self.push(t, c(PSH | ACK, len).with_window(229));
                self.push(t + 300, s(ACK, 0).with_window(235));
            }
            self.stats.attack_sessions += 1;
        }
        // SSH password guessing: one short session per attempt.
        let t_ssh = DEMO_START_US + 30_000_000;
        for i in 0..60u64 {
            let t0 = t_ssh + i as i64 * self.rng.range(300_000, 500_000) as i64;
            let sport = 50_000 + i as u16;
            let ex = [
                (41, 41, 2_000),
                (1_500, 1_080, 1_000),
                (48, 500, 1_000),
                (100, 52, 2_000),
                (96, 52, 200_000),
            ];
            self.tcp_session(t0, attacker, sport, SSH.into(), 22, 400, &ex, false);
            self.stats.attack_sessions += 1;
        }
    }
}

/// Writes the demo capture to `out` (classic pcap, Ethernet, microseconds).
pub fn write_demo<W: Write>(out: W) -> io::Result<DemoStats> {
    let mut trace = Trace {
        pkts: Vec::new(),
        rng: SplitMix64::new(0x7a95_57e4_11c0_0001),
        stats: DemoStats::default(),
    };
    trace.benign();
    trace.attacks();
    trace.pkts.sort_by_key(|p| (p.ts, p.seq));
    let mut w = PcapWriter::new(out, LINKTYPE_ETHERNET)?;
    for p in &trace.pkts {
        w.write_frame(p.ts, &p.frame)?;
    }
    w.finish()?;
    trace.stats.packets = trace.pkts.len() as u64;
    Ok(trace.stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_is_deterministic_and_time_ordered() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        let sa = write_demo(&mut a).unwrap();
        let sb = write_demo(&mut b).unwrap();
        assert_eq!(a, b);
        assert_eq!(sa, sb);
        assert!(sa.packets > 10_000, "{sa:?}");
        // Timestamps never go backwards: walk the pcap records.
        let mut off = 24;
        let mut last = 0u64;
        let mut n = 0;
        while off + 16 <= a.len() {
            let sec = u32::from_le_bytes(a[off..off + 4].try_into().unwrap()) as u64;
            let usec = u32::from_le_bytes(a[off + 4..off + 8].try_into().unwrap()) as u64;
            let cap = u32::from_le_bytes(a[off + 8..off + 12].try_into().unwrap()) as usize;
            let ts = sec * 1_000_000 + usec;
            assert!(ts >= last);
            last = ts;
            off += 16 + cap;
            n += 1;
        }
        assert_eq!(off, a.len());
        assert_eq!(n, sa.packets);
    }
}
