//! [`FileSource`]: a capture file (pcap, pcapng or snoop, optionally
//! gzip-compressed) as a packet source.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{ChunkWriter, PacketSource, ReadMeter, SourceReport, CHECK_EVERY};
use crate::capture::{CaptureError, CaptureReader};
use crate::skip::SkipReason;

/// Packets between updates of the progress and the metrics.
const PUBLISH_EVERY: u32 = 4096;

/// A capture file, opened.
#[derive(Debug)]
pub struct FileSource {
    path: PathBuf,
    reader: CaptureReader,
}

impl FileSource {
    /// Opens `path` (its format is recognised from its first bytes).
    pub fn open(path: &Path) -> Result<Self, CaptureError> {
        Ok(FileSource {
            path: path.to_path_buf(),
            reader: CaptureReader::open(path)?,
        })
    }
}

impl PacketSource for FileSource {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    /// Reads to the end of the file. A record cut short by the end of the
    /// file is counted (`truncated_record`); corruption stops reading and is
    /// reported (`read_error`), with every packet before it kept.
    fn run(self: Box<Self>, mut out: ChunkWriter) -> SourceReport {
        let started = Instant::now();
        let mut reader = self.reader;
        let mut report = SourceReport::default();
        let mut meter = ReadMeter::default();
        let mut until_check = CHECK_EVERY;
        let mut until_publish = PUBLISH_EVERY;
        while !out.stopped() {
            let pkt = match reader.next_packet() {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(CaptureError::TruncatedRecord { .. }) => {
                    report.packets += 1;
                    report.skipped.add(SkipReason::TruncatedRecord);
                    continue;
                }
                Err(e) => {
                    tracing::warn!(message = "capture is corrupt; stopped reading", error = %e);
                    report.read_error = Some(e.to_string());
                    break;
                }
            };
            report.packets += 1;
            report.bytes += u64::from(pkt.orig_len);
            report.link_types.add(pkt.link_type);
            if !out.push(&pkt) {
                break;
            }
            until_check -= 1;
            if until_check == 0 {
                until_check = CHECK_EVERY;
                if !out.poll() {
                    break;
                }
            }
            until_publish -= 1;
            if until_publish == 0 {
                until_publish = PUBLISH_EVERY;
                publish(&reader, &report, &mut meter, &out);
            }
        }
        publish(&reader, &report, &mut meter, &out);
        let blocked = out.finish();
        report.busy = started.elapsed().saturating_sub(blocked);
        report
    }
}

fn publish(
    reader: &CaptureReader,
    report: &SourceReport,
    meter: &mut ReadMeter,
    out: &ChunkWriter,
) {
    out.progress()
        .bytes
        .store(reader.bytes_read(), Ordering::Relaxed);
    meter.publish(report, out.progress());
}
