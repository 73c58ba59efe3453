//! `tapstream eval --perturb`: detection when the attacker bends its
//! traffic, measured on the captures themselves.
//!
//! Why: a detector that loses a kind when the attacker pads its packets,
//! jitters its timing, slips in 1-byte packets or fragments its datagrams
//! is easy to evade, and the clean numbers do not show it. Each
//! perturbation rewrites a copy of every capture, packet by packet, and the
//! copy goes through the whole pipeline (decoders, defragmentation, flows,
//! context, the models), so what is measured is what a sensor would see.
//!
//! The attacker is each flow's initiator (its first packet's source address
//! and port), as in `tapstream model report`'s perturbations
//! ([`Perturbation`], with the same budgets and seed); only its packets
//! change. Packets are rewritten where they are Ethernet frames with a
//! plain IPv4 (no options) or IPv6 (no extension headers) header over TCP,
//! UDP or ICMP; others pass unchanged and are counted. Copies are built in
//! memory, one capture at a time.

use std::io::BufWriter;
use std::ops::ControlFlow;
use std::path::Path;

use serde::Serialize;
use tapstream_ingest::decode::{decode, linktype};
use tapstream_ingest::pcapgen::{fragments, PcapWriter};
use tapstream_ingest::records::for_each_packet;
use tapstream_ingest::PacketRecord;

use crate::report::input::{Initiators, Perturbation, PERTURBATIONS, SEED};
use crate::rng::SplitMix64;

/// Bytes of the first fragment when attacker datagrams are fragmented: the
/// "tiny fragment" that leaves the TCP flags to the second.
pub const FIRST_FRAGMENT_BYTES: usize = 8;

/// One way the attacker bends its traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Perturb {
    /// One of the model report's perturbations, done on the packets.
    Packets(Perturbation),
    /// Every attacker datagram with more than 8 bytes of IP payload is sent
    /// as two fragments: the first 8 bytes, then the rest.
    Fragment,
}

impl Perturb {
    /// Every perturbation, in report order.
    pub fn all() -> Vec<Perturb> {
        PERTURBATIONS
            .iter()
            .map(|p| Perturb::Packets(*p))
            .chain(std::iter::once(Perturb::Fragment))
            .collect()
    }

    /// Its short stable name.
    pub fn name(&self) -> String {
        match self {
            Perturb::Packets(p) => p.name(),
            Perturb::Fragment => "fragment_8b".to_string(),
        }
    }

    /// What it does, in words.
    pub fn describe(&self) -> String {
        match self {
            Perturb::Packets(p) => p.describe(),
            Perturb::Fragment => format!(
                "each attacker datagram over {FIRST_FRAGMENT_BYTES} bytes of IP payload is sent as \
                 two IP fragments: its first {FIRST_FRAGMENT_BYTES} bytes (no TCP flags), then the rest"
            ),
        }
    }

    /// The names `--perturb` takes: `all` or a comma-separated list.
    pub fn parse_list(text: &str) -> Result<Vec<Perturb>, String> {
        let all = Perturb::all();
        if text.trim() == "all" {
            return Ok(all);
        }
        let mut out = Vec::new();
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let Some(p) = all.iter().find(|p| p.name() == name) else {
                let names: Vec<String> = all.iter().map(Perturb::name).collect();
                return Err(format!(
                    "unknown perturbation {name:?}: use `all` or some of {}",
                    names.join(", ")
                ));
            };
            if !out.contains(p) {
                out.push(*p);
            }
        }
        if out.is_empty() {
            return Err("no perturbation named".to_string());
        }
        Ok(out)
    }
}

/// What a perturbed copy holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Rewritten {
    /// Packets read.
    pub packets: u64,
    /// Attacker packets rewritten.
    pub rewritten: u64,
    /// Attacker packets left as they were (not Ethernet with a plain IP
    /// header, or nothing to do to them, e.g. too short to fragment).
    pub unchanged: u64,
    /// Packets left out: their link type differs from the capture's first.
    pub left_out: u64,
}

impl Rewritten {
    /// Adds another capture's counts.
    pub fn add(&mut self, o: &Rewritten) {
        self.packets += o.packets;
        self.rewritten += o.rewritten;
        self.unchanged += o.unchanged;
        self.left_out += o.left_out;
    }
}

/// A packet of the copy.
struct Out {
    ts_us: i64,
    frame: Vec<u8>,
}

/// Writes `input` perturbed by `p` to `output` (classic pcap, the first
/// packet's link type). The random numbers start from the same seed for
/// every capture.
pub fn write_perturbed(input: &Path, output: &Path, p: Perturb) -> Result<Rewritten, String> {
    let mut count = Rewritten::default();
    let mut link_type = None;
    let mut packets: Vec<Out> = Vec::new();
    let mut initiators = Initiators::default();
    let mut rng = SplitMix64::new(SEED);
    let mut rec = PacketRecord::default();
    for_each_packet(input, |pkt| {
        count.packets += 1;
        if *link_type.get_or_insert(pkt.link_type) != pkt.link_type {
            count.left_out += 1;
            return ControlFlow::Continue(());
        }
        let attacker = decode(pkt, &mut rec).is_ok() && initiators.sent_by_initiator(&rec);
        let before = packets.len();
        if attacker {
            let ethernet = pkt.link_type == linktype::ETHERNET;
            rewrite(p, pkt.ts_us, pkt.data, ethernet, &mut rng, &mut packets);
            if packets.len() == before + 1
                && packets
                    .last()
                    .is_some_and(|o| o.frame == pkt.data && o.ts_us == pkt.ts_us)
            {
                count.unchanged += 1;
            } else {
                count.rewritten += 1;
            }
        } else {
            packets.push(Out {
                ts_us: pkt.ts_us,
                frame: pkt.data.to_vec(),
            });
        }
        ControlFlow::Continue(())
    })
    .map_err(|e| e.to_string())?;
    if matches!(
        p,
        Perturb::Packets(Perturbation::Jitter { .. } | Perturbation::ExtraPackets { .. })
    ) {
        packets.sort_by_key(|o| o.ts_us); // stable: equal times keep their order
    }
    let file = std::fs::File::create(output).map_err(|e| format!("{}: {e}", output.display()))?;
    let lt = link_type.unwrap_or(linktype::ETHERNET);
    let mut w = PcapWriter::new(BufWriter::new(file), lt).map_err(|e| e.to_string())?;
    for o in &packets {
        w.write(o.ts_us, &o.frame).map_err(|e| e.to_string())?;
    }
    w.finish().map_err(|e| e.to_string())?;
    Ok(count)
}

/// Appends what an attacker packet becomes under `p` to `out`.
fn rewrite(
    p: Perturb,
    ts_us: i64,
    data: &[u8],
    ethernet: bool,
    rng: &mut SplitMix64,
    out: &mut Vec<Out>,
) {
    let ip = if ethernet { Ip::of(data) } else { None };
    let same = |out: &mut Vec<Out>| {
        out.push(Out {
            ts_us,
            frame: data.to_vec(),
        })
    };
    match (p, ip) {
        (Perturb::Packets(Perturbation::Jitter { max_us }), _) => out.push(Out {
            ts_us: ts_us.saturating_add(rng.upto(max_us.max(0) as u64) as i64),
            frame: data.to_vec(),
        }),
        (Perturb::Packets(Perturbation::Padding { max_bytes }), Some(ip)) => {
            let pad = rng.upto(u64::from(max_bytes)) as usize;
            match ip.resized(data, ip.payload_len + pad) {
                Some(frame) => out.push(Out { ts_us, frame }),
                None => same(out),
            }
        }
        (Perturb::Packets(Perturbation::ExtraPackets { one_in }), ip) => {
            same(out);
            if rng.upto(one_in.max(1) - 1) == 0 {
                if let Some(frame) =
                    ip.and_then(|ip| ip.resized(data, ip.transport_header_len(data)? + 1))
                {
                    out.push(Out {
                        ts_us: ts_us.saturating_add(1),
                        frame,
                    });
                }
            }
        }
        (Perturb::Fragment, Some(ip)) if ip.payload_len > FIRST_FRAGMENT_BYTES => {
            let frame = data.get(..ip.end()).unwrap_or(data);
            let id = rng.upto(u64::from(u32::MAX)) as u32;
            let pieces = [
                (0, FIRST_FRAGMENT_BYTES),
                (FIRST_FRAGMENT_BYTES, ip.payload_len - FIRST_FRAGMENT_BYTES),
            ];
            match fragments(frame, id, &pieces) {
                Some(frags) => out.extend(frags.into_iter().map(|frame| Out { ts_us, frame })),
                None => same(out),
            }
        }
        _ => same(out),
    }
}

/// A plain IP header in an Ethernet frame.
#[derive(Clone, Copy, Debug)]
struct Ip {
    v6: bool,
    proto: u8,
    /// IP payload bytes, as the header says.
    payload_len: usize,
}

impl Ip {
    /// Bytes of Ethernet and IP header.
    fn header(&self) -> usize {
        if self.v6 {
            54
        } else {
            34
        }
    }

    /// Where the IP packet ends in the frame.
    fn end(&self) -> usize {
        self.header() + self.payload_len
    }

    /// An Ethernet frame's IP header, when it is plain (IPv4 without options
    /// or fragmentation, IPv6 without extension headers) over TCP, UDP or
    /// ICMP, and the frame holds the whole packet.
    fn of(d: &[u8]) -> Option<Ip> {
        let ip = match d.get(12..14)? {
            [0x08, 0x00] => {
                let h: &[u8; 20] = d.get(14..34)?.try_into().ok()?;
                let fragmented = u16::from_be_bytes([h[6], h[7]]) & 0x3FFF != 0;
                if h[0] != 0x45 || fragmented {
                    return None;
                }
                let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
                Ip {
                    v6: false,
                    proto: h[9],
                    payload_len: total.checked_sub(20)?,
                }
            }
            [0x86, 0xDD] => {
                let h: &[u8; 40] = d.get(14..54)?.try_into().ok()?;
                Ip {
                    v6: true,
                    proto: h[6],
                    payload_len: usize::from(u16::from_be_bytes([h[4], h[5]])),
                }
            }
            _ => return None,
        };
        let known = matches!((ip.proto, ip.v6), (6 | 17, _) | (1, false) | (58, true));
        (known && d.len() >= ip.end()).then_some(ip)
    }

    /// The transport header's length (TCP: its data offset).
    fn transport_header_len(&self, d: &[u8]) -> Option<usize> {
        match self.proto {
            6 => Some(usize::from(*d.get(self.header() + 12)? >> 4) * 4),
            _ => Some(8),
        }
        .filter(|&n| n >= 8 && n <= self.payload_len)
    }

    /// The frame with `len` bytes of IP payload: cut, or grown with zero
    /// bytes; the IP (and UDP) lengths follow.
    fn resized(&self, d: &[u8], len: usize) -> Option<Vec<u8>> {
        let h = self.header();
        let mut f = d.get(..h)?.to_vec();
        let payload = d.get(h..self.end())?;
        f.extend_from_slice(payload.get(..len.min(payload.len()))?);
        f.resize(h + len, 0);
        if self.v6 {
            f.get_mut(18..20)?
                .copy_from_slice(&u16::try_from(len).ok()?.to_be_bytes());
        } else {
            f.get_mut(16..18)?
                .copy_from_slice(&u16::try_from(len + 20).ok()?.to_be_bytes());
        }
        if self.proto == 17 {
            f.get_mut(h + 4..h + 6)?
                .copy_from_slice(&u16::try_from(len).ok()?.to_be_bytes());
        }
        if f.len() < 60 {
            f.resize(60, 0);
        }
        Some(f)
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use tapstream_ingest::decode::{decode_whole, fragment_of};
    use tapstream_ingest::defrag::{Defrag, DefragConfig, Fragment};
    use tapstream_ingest::packet::tcp_flags::{ACK, PSH, SYN};
    use tapstream_ingest::pcapgen::{Frame, LINKTYPE_ETHERNET};
    use tapstream_ingest::records::read_records;

    use super::*;

    /// A client's session to a server: the client (initiator) is the
    /// attacker.
    fn session(dir: &Path) -> std::path::PathBuf {
        let c: IpAddr = "198.18.0.1".parse().unwrap();
        let s: IpAddr = "198.18.0.2".parse().unwrap();
        let path = dir.join("session.pcap");
        let mut w =
            PcapWriter::new(std::fs::File::create(&path).unwrap(), LINKTYPE_ETHERNET).unwrap();
        let mut t = 1_700_000_000_000_000;
        for i in 0..40u16 {
            let sp = 40_000 + i;
            for (src, dst, a, b, flags, len) in [
                (c, s, sp, 80, SYN, 0),
                (s, c, 80, sp, SYN | ACK, 0),
                (c, s, sp, 80, PSH | ACK, 200),
                (s, c, 80, sp, PSH | ACK, 900),
            ] {
                t += 1_000;
                w.write(t, &Frame::tcp(src, dst, a, b, flags, len).to_bytes())
                    .unwrap();
            }
            t += 1_000;
            w.write(t, &Frame::udp(c, s, sp, 53, 30).to_bytes())
                .unwrap();
        }
        w.finish().unwrap();
        path
    }

    /// The session's records before and after `p`, the counts, the copy's
    /// path and the directory that holds it (removed when dropped).
    fn perturbed(
        p: Perturb,
    ) -> (
        Vec<PacketRecord>,
        Vec<PacketRecord>,
        Rewritten,
        std::path::PathBuf,
        tempfile::TempDir,
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let input = session(&dir);
        let output = dir.join("out.pcap");
        let n = write_perturbed(&input, &output, p).unwrap();
        let before = read_records(&input, usize::MAX).unwrap().recs;
        let after = read_records(&output, usize::MAX).unwrap().recs;
        (before, after, n, output, tmp)
    }

    fn from_client(r: &PacketRecord) -> bool {
        r.src[3] == 1
    }

    #[test]
    fn padding_grows_only_the_attackers_packets() {
        let p = Perturb::Packets(Perturbation::Padding { max_bytes: 64 });
        let (before, after, n, _, _dir) = perturbed(p);
        assert_eq!(before.len(), after.len());
        assert_eq!((n.packets, n.left_out), (200, 0));
        assert!(n.rewritten > 100, "{n:?}");
        let mut grew = 0;
        for (b, a) in before.iter().zip(&after) {
            assert_eq!((a.hash, a.flags, a.ts_us), (b.hash, b.flags, b.ts_us));
            if from_client(b) {
                assert!(a.payload_len >= b.payload_len && a.payload_len <= b.payload_len + 64);
                grew += usize::from(a.payload_len > b.payload_len);
            } else {
                assert_eq!(a, b);
            }
        }
        assert!(grew > 100, "{grew}");
    }

    #[test]
    fn jitter_delays_the_attacker_and_keeps_time_order() {
        let p = Perturb::Packets(Perturbation::Jitter { max_us: 10_000 });
        let (before, after, _, _, _dir) = perturbed(p);
        assert_eq!(before.len(), after.len());
        assert!(after.windows(2).all(|w| w[0].ts_us <= w[1].ts_us));
        let moved = before
            .iter()
            .zip(&after)
            .filter(|(b, a)| b.ts_us != a.ts_us)
            .count();
        assert!(moved > 50, "{moved}");
    }

    #[test]
    fn extra_packets_are_one_byte_copies() {
        let p = Perturb::Packets(Perturbation::ExtraPackets { one_in: 4 });
        let (before, after, _, _, _dir) = perturbed(p);
        let extra = after.len() - before.len();
        assert!((10..=90).contains(&extra), "{extra} extra packets");
        assert_eq!(after.iter().filter(|r| r.payload_len == 1).count(), extra);
        assert!(after.iter().filter(|r| r.payload_len == 1).all(from_client));
    }

    #[test]
    fn fragmented_copies_reassemble_into_the_original_packets() {
        let (before, _, n, path, _dir) = perturbed(Perturb::Fragment);
        // Client packets over 8 bytes of IP payload: SYN (20), data (220),
        // UDP (38): all 120 of them.
        assert_eq!(n.rewritten, 120, "{n:?}");
        let mut d = Defrag::new(DefragConfig::default());
        let mut got = Vec::new();
        let mut rec = PacketRecord::default();
        for_each_packet(&path, |pkt| {
            match decode_whole(pkt, &mut rec) {
                Ok(()) => got.push(rec),
                Err(_) => {
                    let mut f = Fragment::default();
                    fragment_of(pkt, &mut f).unwrap();
                    if d.add(&f, 0, &mut rec).is_some() {
                        got.push(rec);
                    }
                }
            }
            ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(got.len(), before.len());
        for (g, b) in got.iter().zip(&before) {
            assert_eq!(
                (g.hash, g.flags, g.window, g.payload_len, g.ts_us),
                (b.hash, b.flags, b.window, b.payload_len, b.ts_us)
            );
        }
    }

    #[test]
    fn names_parse() {
        assert_eq!(Perturb::parse_list("all").unwrap().len(), 6);
        let two = Perturb::parse_list("fragment_8b, padding_64b,fragment_8b").unwrap();
        assert_eq!(two, [Perturb::Fragment, Perturb::Packets(PERTURBATIONS[0])]);
        let e = Perturb::parse_list("padding").unwrap_err();
        assert!(
            e.contains("jitter_10ms") && e.contains("fragment_8b"),
            "{e}"
        );
        assert!(Perturb::parse_list(" ,").is_err());
    }
}
