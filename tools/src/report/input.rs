//! The rows a report scores: labelled CIC-IDS2017 CSVs (labels mapped as
//! `deploy/training/train.py` maps them), or a capture through the CPU
//! feature extractor; and the attacker-side perturbations of a capture.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use crate::rng::SplitMix64;
use tapstream_ingest::flow::FlowConfig;
use tapstream_ingest::PacketRecord;
use tapstream_kernels::csv::Cells;
use tapstream_kernels::schema::{feature_index, NUM_FEATURES};
use tapstream_kernels::shard::ShardProcessor;
use tapstream_kernels::FlowBatch;

/// The benign label of the data (and of the training recipe).
pub const BENIGN: &str = "BENIGN";

/// Labelled feature rows in schema order.
#[derive(Debug, Default)]
pub struct Rows {
    /// Row-major, `labels.len() × NUM_FEATURES`.
    pub rows: Vec<f64>,
    /// One label per row.
    pub labels: Vec<String>,
}

impl Rows {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// The training class of a CSV row, as `train.py` assigns it: attempted
/// attacks (label ending in ` - Attempted`, or an `Attempted Category`
/// other than empty or `-1`) count as benign, and every `Web Attack - *` is
/// one `Web Attack` class.
pub fn training_label(label: &str, attempted_category: &str) -> String {
    let label = label.trim();
    let cat = attempted_category.trim();
    if label.ends_with(" - Attempted") || !(cat.is_empty() || cat == "-1") {
        return BENIGN.to_string();
    }
    if label.starts_with("Web Attack - ") {
        return "Web Attack".to_string();
    }
    label.to_string()
}

/// The CSV files of `path`: the file itself, or every `*.csv` in the
/// directory except `data_header_reference.csv`, sorted.
pub fn csv_files(path: &Path) -> Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    if !path.is_dir() {
        bail!("--data {}: no such file or directory", path.display());
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("reading directory {}", path.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"))
                && p.file_name()
                    .is_some_and(|n| n != "data_header_reference.csv")
        })
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("--data {}: no CSV files in the directory", path.display());
    }
    Ok(files)
}

/// The `(id, date)` pairs of a held-out ids file (`id<TAB>date<TAB>label`,
/// with a header line).
pub fn read_holdout(path: &Path) -> Result<HashSet<(String, String)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading held-out ids {}", path.display()))?;
    let mut set = HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let mut cols = line.split('\t');
        let (Some(id), Some(date)) = (cols.next(), cols.next()) else {
            continue;
        };
        let (id, date) = (id.trim(), date.trim());
        if i == 0 && id == "id" {
            continue;
        }
        set.insert((id.to_string(), date.to_string()));
    }
    if set.is_empty() {
        bail!("held-out ids {}: no `id<TAB>date` lines", path.display());
    }
    Ok(set)
}

/// What reading the CSVs found.
#[derive(Debug, Default)]
pub struct CsvStats {
    /// Data rows read (before the held-out filter).
    pub read: usize,
    /// Rows per file kept.
    pub per_file: Vec<(PathBuf, usize)>,
}

/// Reads CIC-IDS2017 "improved" CSVs into schema rows (columns matched by
/// name; missing or unparsable cells are 0) and training labels, keeping
/// only rows whose `(id, first 10 characters of Timestamp)` is in `keep`
/// when given.
pub fn read_csvs(
    files: &[PathBuf],
    keep: Option<&HashSet<(String, String)>>,
) -> Result<(Rows, CsvStats)> {
    let mut rows = Rows::default();
    let mut stats = CsvStats::default();
    let mut cells = Cells::default();
    for file in files {
        let text = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        let text = String::from_utf8_lossy(&text);
        let mut lines = text.lines();
        let Some(header) = lines.next() else {
            stats.per_file.push((file.clone(), 0));
            continue;
        };
        cells.split(header.trim_start_matches('\u{feff}'));
        let col = |name: &str| cells.iter().position(|c| c.trim() == name);
        let label_col = col("Label").ok_or_else(|| {
            anyhow!(
                "{}: no `Label` column (not a CIC-IDS2017 CSV)",
                file.display()
            )
        })?;
        let attempted_col = col("Attempted Category");
        let (id_col, ts_col) = (col("id"), col("Timestamp"));
        if keep.is_some() && (id_col.is_none() || ts_col.is_none()) {
            bail!(
                "{}: held-out ids need `id` and `Timestamp` columns",
                file.display()
            );
        }
        let features: Vec<(usize, usize)> = cells
            .iter()
            .enumerate()
            .filter_map(|(i, c)| feature_index(c.trim()).map(|f| (i, f)))
            .collect();
        let mut kept = 0usize;
        for line in lines {
            if line.trim().is_empty() {
                continue;
            }
            cells.split(line);
            stats.read += 1;
            let cell = |i: Option<usize>| i.and_then(|i| cells.get(i)).map_or("", str::trim);
            if let Some(keep) = keep {
                let id = cell(id_col).to_string();
                let date: String = cell(ts_col).chars().take(10).collect();
                if !keep.contains(&(id, date)) {
                    continue;
                }
            }
            let label = training_label(cell(Some(label_col)), cell(attempted_col));
            let start = rows.rows.len();
            rows.rows.resize(start + NUM_FEATURES, 0.0);
            for &(i, f) in &features {
                let v = cells.get(i).and_then(|s| s.trim().parse::<f64>().ok());
                if let (Some(v), Some(slot)) = (v, rows.rows.get_mut(start + f)) {
                    *slot = v;
                }
            }
            rows.labels.push(label);
            kept += 1;
        }
        stats.per_file.push((file.clone(), kept));
    }
    Ok((rows, stats))
}

/// Every flow of `recs` through the CPU extractor on one thread (as
/// `tapstream bench` runs it).
pub fn extract(recs: &[PacketRecord], flow: FlowConfig) -> Result<FlowBatch> {
    let mut shard = ShardProcessor::new(flow, 0).map_err(|e| anyhow!("flow table: {e}"))?;
    let mut out = FlowBatch::default();
    for chunk in recs.chunks(4096) {
        shard.process(chunk, &mut out);
    }
    shard.flush(&mut out);
    Ok(out)
}

/// A change the initiator of a flow can make to its own packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Perturbation {
    /// Each attacker packet grows by a uniform `0..=max_bytes` bytes
    /// (payload and wire length).
    Padding {
        /// Largest growth in bytes.
        max_bytes: u32,
    },
    /// Each attacker packet is delayed by a uniform `0..=max_us`; records
    /// are then re-sorted by time (stable).
    Jitter {
        /// Largest delay in microseconds.
        max_us: i64,
    },
    /// After each attacker packet, with probability `1/one_in`, a copy with
    /// a 1-byte payload 1 µs later.
    ExtraPackets {
        /// One packet in this many gets a copy.
        one_in: u64,
    },
}

/// The perturbations a report applies, in order.
pub const PERTURBATIONS: [Perturbation; 5] = [
    Perturbation::Padding { max_bytes: 64 },
    Perturbation::Padding { max_bytes: 512 },
    Perturbation::Jitter { max_us: 10_000 },
    Perturbation::Jitter { max_us: 500_000 },
    Perturbation::ExtraPackets { one_in: 4 },
];

/// Seed of every perturbation's random numbers (each starts afresh).
pub const SEED: u64 = 0x7461_7073_7472_6561;

impl Perturbation {
    /// Short stable name.
    pub fn name(&self) -> String {
        match self {
            Perturbation::Padding { max_bytes } => format!("padding_{max_bytes}b"),
            Perturbation::Jitter { max_us } => format!("jitter_{}ms", max_us / 1000),
            Perturbation::ExtraPackets { one_in } => format!("extra_packets_1_in_{one_in}"),
        }
    }

    /// The budget in words.
    pub fn describe(&self) -> String {
        match self {
            Perturbation::Padding { max_bytes } => format!(
                "each attacker packet grows by a uniform 0..={max_bytes} bytes (payload and wire length)"
            ),
            Perturbation::Jitter { max_us } => format!(
                "each attacker packet is delayed by a uniform 0..={} ms, then packets are re-sorted by time (stable)",
                max_us / 1000
            ),
            Perturbation::ExtraPackets { one_in } => format!(
                "after each attacker packet, with probability 1/{one_in}, an extra copy with a 1-byte payload 1 µs later"
            ),
        }
    }

    /// The budget as JSON.
    pub fn budget(&self) -> serde_json::Value {
        match self {
            Perturbation::Padding { max_bytes } => {
                serde_json::json!({ "kind": "padding", "max_bytes_per_packet": max_bytes })
            }
            Perturbation::Jitter { max_us } => {
                serde_json::json!({ "kind": "jitter", "max_delay_ms": *max_us as f64 / 1000.0 })
            }
            Perturbation::ExtraPackets { one_in } => serde_json::json!({
                "kind": "extra_packets",
                "probability_per_packet": 1.0 / *one_in as f64,
                "extra_payload_bytes": 1,
                "extra_delay_us": 1,
            }),
        }
    }
}

/// Each flow's initiator: the source address and port of the first packet
/// with its symmetric flow hash (the attacker, for perturbations).
#[derive(Debug, Default)]
pub struct Initiators(HashMap<u64, ([u8; 16], u16)>);

impl Initiators {
    /// Whether `r` comes from its flow's initiator (the first record of a
    /// flow makes its sender the initiator).
    pub fn sent_by_initiator(&mut self, r: &PacketRecord) -> bool {
        let (src, sport) = *self.0.entry(r.hash).or_insert((r.src, r.sport));
        r.src == src && r.sport == sport
    }
}

/// Which records the attacker sent: those from the initiator (see
/// [`Initiators`]).
pub fn attacker_mask(recs: &[PacketRecord]) -> Vec<bool> {
    let mut initiators = Initiators::default();
    recs.iter()
        .map(|r| initiators.sent_by_initiator(r))
        .collect()
}

/// `recs` with `p` applied to the attacker's packets, using `seed`.
pub fn perturb(recs: &[PacketRecord], p: Perturbation, seed: u64) -> Vec<PacketRecord> {
    let attacker = attacker_mask(recs);
    let mut rng = SplitMix64::new(seed);
    let mut out = Vec::with_capacity(recs.len() + recs.len() / 4);
    for (r, &mine) in recs.iter().zip(&attacker) {
        let mut r = *r;
        if !mine {
            out.push(r);
            continue;
        }
        match p {
            Perturbation::Padding { max_bytes } => {
                let pad = rng.upto(u64::from(max_bytes)) as u32;
                r.payload_len = r.payload_len.saturating_add(pad);
                r.wire_len = r.wire_len.saturating_add(pad);
                out.push(r);
            }
            Perturbation::Jitter { max_us } => {
                let delay = rng.upto(max_us.max(0) as u64) as i64;
                r.ts_us = r.ts_us.saturating_add(delay);
                out.push(r);
            }
            Perturbation::ExtraPackets { one_in } => {
                out.push(r);
                if rng.upto(one_in.max(1) - 1) == 0 {
                    let mut extra = r;
                    extra.wire_len = r.wire_len.saturating_sub(r.payload_len).saturating_add(1);
                    extra.payload_len = 1;
                    extra.ts_us = r.ts_us.saturating_add(1);
                    out.push(extra);
                }
            }
        }
    }
    if !matches!(p, Perturbation::Padding { .. }) {
        out.sort_by_key(|r| r.ts_us);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_follow_the_training_recipe() {
        assert_eq!(training_label("BENIGN", "-1"), "BENIGN");
        assert_eq!(training_label("Web Attack - XSS", "-1"), "Web Attack");
        assert_eq!(training_label("DoS Hulk - Attempted", "-1"), "BENIGN");
        assert_eq!(training_label("DoS Hulk", "3"), "BENIGN");
        assert_eq!(training_label("DoS Hulk", ""), "DoS Hulk");
    }

    fn rec(ts: i64, src: u8, sport: u16, hash: u64) -> PacketRecord {
        let mut r = PacketRecord {
            ts_us: ts,
            hash,
            sport,
            payload_len: 10,
            wire_len: 64,
            ..PacketRecord::default()
        };
        r.src[15] = src;
        r
    }

    #[test]
    fn only_the_initiator_is_perturbed() {
        let recs: Vec<_> = (0..400)
            .map(|i| {
                if i % 2 == 0 {
                    rec(i * 10, 1, 1000, 7)
                } else {
                    rec(i * 10, 2, 80, 7)
                }
            })
            .collect();
        let mask = attacker_mask(&recs);
        assert_eq!(mask.iter().filter(|&&m| m).count(), 200);
        let padded = perturb(&recs, Perturbation::Padding { max_bytes: 64 }, SEED);
        for (a, b) in recs.iter().zip(&padded) {
            assert!(b.payload_len - a.payload_len <= 64);
            assert_eq!(b.payload_len - a.payload_len, b.wire_len - a.wire_len);
            if a.src[15] == 2 {
                assert_eq!(a, b);
            }
        }
        assert_eq!(
            padded,
            perturb(&recs, Perturbation::Padding { max_bytes: 64 }, SEED),
            "fixed seed"
        );
        let extra = perturb(&recs, Perturbation::ExtraPackets { one_in: 4 }, SEED);
        let added = extra.len() - recs.len();
        assert!((20..=90).contains(&added), "{added}");
        assert!(extra.windows(2).all(|w| w[0].ts_us <= w[1].ts_us));
        let jitter = perturb(&recs, Perturbation::Jitter { max_us: 500 }, SEED);
        assert_eq!(jitter.len(), recs.len());
        assert!(jitter.windows(2).all(|w| w[0].ts_us <= w[1].ts_us));
    }
}
