//! A whole capture file in memory: the one loop that reads a capture into
//! packets or records for the tools (bench, parity, reports, the benchmark
//! file, the Kafka producer).
//!
//! Why one copy: each tool used to write this loop itself, and two of them
//! treated corruption as the end of the file, so a check quietly covered
//! only the packets before it. Here a record cut short by the end of the
//! file is counted and skipped, and corruption is an error that says how
//! many packets came before it.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use crate::capture::{CaptureError, CaptureReader, RawPacket};
use crate::decode::decode;
use crate::packet::PacketRecord;

/// Why a capture could not be read whole. The reader's error is the
/// source (printed after this one's message by `{:#}` and error chains).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The file could not be opened, or is not a capture.
    #[error("{}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: CaptureError,
    },
    /// Reading stopped at corruption, after `packets` good packets.
    #[error("{}: corrupt after {packets} packets", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Packets read before the corruption.
        packets: u64,
        /// What the reader found.
        #[source]
        source: CaptureError,
    },
}

/// What reading a capture counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadCount {
    /// Packet records read, a truncated final record included.
    pub packets: u64,
    /// Records cut short by the end of the file (counted, not handed on).
    pub truncated: u64,
}

/// Reads every packet of the capture at `path` in order, handing each to
/// `each` until it breaks; see the module docs.
pub fn for_each_packet(
    path: &Path,
    each: impl FnMut(&RawPacket<'_>) -> ControlFlow<()>,
) -> Result<ReadCount, ReadError> {
    for_each_packet_of(open(path)?, path, each)
}

/// Opens the capture at `path` (for a caller that wants a bad path to fail
/// before it sets anything else up).
pub fn open(path: &Path) -> Result<CaptureReader, ReadError> {
    CaptureReader::open(path).map_err(|source| ReadError::Open {
        path: path.to_path_buf(),
        source,
    })
}

/// [`for_each_packet`] on a capture already opened from `path`.
pub fn for_each_packet_of(
    mut reader: CaptureReader,
    path: &Path,
    mut each: impl FnMut(&RawPacket<'_>) -> ControlFlow<()>,
) -> Result<ReadCount, ReadError> {
    let mut count = ReadCount::default();
    loop {
        match reader.next_packet() {
            Ok(Some(p)) => {
                count.packets += 1;
                if each(&p).is_break() {
                    return Ok(count);
                }
            }
            Ok(None) => return Ok(count),
            Err(CaptureError::TruncatedRecord { .. }) => {
                count.packets += 1;
                count.truncated += 1;
            }
            Err(source) => {
                return Err(ReadError::Corrupt {
                    path: path.to_path_buf(),
                    packets: count.packets,
                    source,
                })
            }
        }
    }
}

/// A capture's packets decoded into records (packets that do not decode
/// are left out, and counted only in `count`).
#[derive(Clone, Debug, Default)]
pub struct Records {
    /// The decoded records, in capture order.
    pub recs: Vec<PacketRecord>,
    /// Packets read.
    pub count: ReadCount,
}

impl Records {
    /// Packets decoded into records.
    pub fn decoded(&self) -> u64 {
        self.recs.len() as u64
    }
}

/// Reads and decodes every packet of a capture; at most `limit` records
/// are kept (every packet is still read and counted).
pub fn read_records(path: &Path, limit: usize) -> Result<Records, ReadError> {
    let mut recs = Vec::new();
    let count = read_records_into(path, limit, &mut recs)?;
    Ok(Records { recs, count })
}

/// [`read_records`] appending to `recs`, for a caller that sized it (a
/// benchmark that times the reading, not the vector's growth).
pub fn read_records_into(
    path: &Path,
    limit: usize,
    recs: &mut Vec<PacketRecord>,
) -> Result<ReadCount, ReadError> {
    let mut rec = PacketRecord::default();
    for_each_packet(path, |p| {
        if decode(p, &mut rec).is_ok() && recs.len() < limit {
            recs.push(rec);
        }
        ControlFlow::Continue(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pcapgen::{pcap_bytes, Frame};

    fn frames(n: usize) -> Vec<(i64, Frame)> {
        let a = "198.18.0.1".parse().unwrap();
        let b = "198.18.0.2".parse().unwrap();
        (0..n)
            .map(|i| (1_000_000 + i as i64, Frame::udp(a, b, 1000, 53, i)))
            .collect()
    }

    #[test]
    fn every_packet_is_read_and_a_cut_last_record_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.pcap");
        let bytes = pcap_bytes(&frames(5));
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        let r = read_records(&path, usize::MAX).unwrap();
        assert_eq!(
            r.count,
            ReadCount {
                packets: 5,
                truncated: 1
            }
        );
        assert_eq!(r.decoded(), 4);
        assert_eq!(read_records(&path, 2).unwrap().recs.len(), 2);
        let mut seen = 0;
        let c = for_each_packet(&path, |_| {
            seen += 1;
            if seen == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
        assert_eq!((seen, c.packets), (2, 2));
    }

    #[test]
    fn corruption_is_an_error_that_counts_the_packets_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.pcap");
        let fs = frames(3);
        let mut bytes = pcap_bytes(&fs);
        // The third record's captured length: far beyond any snap length.
        let third = 24 + 32 + fs[0].1.to_bytes().len() + fs[1].1.to_bytes().len();
        bytes[third + 8..third + 12].copy_from_slice(&u32::MAX.to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        match read_records(&path, usize::MAX) {
            Err(ReadError::Corrupt { packets, .. }) => assert_eq!(packets, 2),
            other => panic!("expected corruption, got {other:?}"),
        }
        let missing = dir.path().join("none.pcap");
        assert!(matches!(
            read_records(&missing, 1),
            Err(ReadError::Open { .. })
        ));
    }
}
