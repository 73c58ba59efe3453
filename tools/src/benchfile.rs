//! Rebuilds the throughput benchmark capture from a list of captures, as
//! `../shared/bench/make-bench-pcap.sh` does, without Wireshark's tools.
//!
//! The GPU host has no `editcap`/`mergecap` and the 588 MB file does not fit
//! the 64 MiB that travels there, so the project rebuilds it from the
//! captures themselves: each capture's packets sorted by time (stable), the
//! capture skipped when it spans more than 900 s or cannot be read whole,
//! shifted so that capture k starts 1000·k s after the base (whole seconds,
//! like `editcap -t`), the whole sequence repeated `repeat` times, written as
//! one microsecond Ethernet pcap.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use std::ops::ControlFlow;

use tapstream_ingest::pcapgen::{PcapWriter, LINKTYPE_ETHERNET};
use tapstream_ingest::records::for_each_packet;

/// The script's base time (2023-11-14T22:13:20Z).
pub const BASE_SECS: i64 = 1_700_000_000;
/// Captures spanning longer than this are left out (whole seconds).
pub const MAX_SPAN_SECS: i64 = 900;

/// What was written.
#[derive(Clone, Copy, Debug, Default)]
pub struct BenchFile {
    /// Captures included per repetition.
    pub captures: u64,
    /// Captures left out (unreadable, not Ethernet, or too long).
    pub skipped: u64,
    /// Packets written.
    pub packets: u64,
}

struct Packet {
    ts_us: i64,
    orig_len: u32,
    data: Vec<u8>,
}

/// Reads a whole Ethernet capture (up to a cut-off last record); `None` if
/// it is not one or is corrupt.
fn read_capture(path: &Path) -> Option<Vec<Packet>> {
    let mut out = Vec::new();
    let mut ethernet = true;
    // A cut-off last record is skipped, as editcap keeps the packets before
    // it.
    for_each_packet(path, |p| {
        if p.link_type != LINKTYPE_ETHERNET {
            ethernet = false;
            return ControlFlow::Break(());
        }
        out.push(Packet {
            ts_us: p.ts_us,
            orig_len: p.orig_len,
            data: p.data.to_vec(),
        });
        ControlFlow::Continue(())
    })
    .ok()?;
    ethernet.then_some(out)
}

/// Writes the benchmark capture for `files` (in the given order) to `out`.
pub fn build(files: &[PathBuf], repeat: u32, out: &Path) -> Result<BenchFile> {
    let f = File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut w = PcapWriter::with_snaplen(
        BufWriter::with_capacity(1 << 20, f),
        LINKTYPE_ETHERNET,
        262_144,
    )?;
    let mut stats = BenchFile::default();
    let mut k: i64 = 0;
    for r in 0..repeat {
        for path in files {
            let Some(mut pkts) = read_capture(path) else {
                if r == 0 {
                    stats.skipped += 1;
                }
                continue;
            };
            pkts.sort_by_key(|p| p.ts_us);
            let (Some(first), Some(last)) = (pkts.first(), pkts.last()) else {
                // The script still numbers an empty capture (capinfos reports
                // its start and duration as 0), so it takes a slot.
                k += 1;
                continue;
            };
            // capinfos reports start and duration in seconds; the script
            // keeps their integer parts.
            let start_secs = first.ts_us / 1_000_000;
            let span_secs = (last.ts_us - first.ts_us) / 1_000_000;
            if span_secs > MAX_SPAN_SECS {
                if r == 0 {
                    stats.skipped += 1;
                }
                continue;
            }
            let shift_us = (BASE_SECS + k * 1000 - start_secs) * 1_000_000;
            for p in &pkts {
                w.write_record(p.ts_us + shift_us, p.orig_len, &p.data)?;
                stats.packets += 1;
            }
            if r == 0 {
                stats.captures += 1;
            }
            k += 1;
        }
    }
    w.finish()?;
    Ok(stats)
}

/// The captures `make-bench-pcap.sh` uses: Ethernet benign and attack files
/// of `MANIFEST.tsv` under `data`, sorted by path.
pub fn manifest_list(data: &Path) -> Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string(data.join("MANIFEST.tsv"))
        .with_context(|| format!("reading {}/MANIFEST.tsv", data.display()))?;
    let mut rel: Vec<&str> = text
        .lines()
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            let (path, link, label) = (cols.first()?, cols.get(6)?, cols.get(7)?);
            (*link == "ether" && (*label == "benign" || label.starts_with("attack")))
                .then_some(*path)
        })
        .collect();
    rel.sort_unstable();
    Ok(rel.into_iter().map(|p| data.join(p)).collect())
}
