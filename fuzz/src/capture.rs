//! `capture_reader` and `decode`: capture files and frames from any bytes.

use std::io::Cursor;
use std::sync::LazyLock;

use tapstream_ingest::capture::{
    CaptureError, CaptureReader, RawPacket, LINKTYPE_UNKNOWN, MAX_RECORD_LEN,
};
use tapstream_ingest::decode::{flow_hash, linktype};
use tapstream_ingest::PacketRecord;

/// Link types the `decode` target picks from with its first byte: the ones
/// `decode` knows ([`linktype::ALL`]), one it does not, and "unknown
/// interface".
pub static LINK_TYPES: LazyLock<Vec<u32>> = LazyLock::new(|| {
    let mut v = linktype::ALL.to_vec();
    v.extend([147, LINKTYPE_UNKNOWN]);
    v
});

/// A first byte at or above this takes the link type from the next four
/// bytes (little-endian) instead of from [`LINK_TYPES`].
pub const RAW_LINK_TYPE: u8 = 0xF0;

/// A packet as the reader returned it, owned.
type Owned = (i64, u32, u32, Vec<u8>);

/// Everything a reader yields: its packets, then how it stopped.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    packets: Vec<Owned>,
    /// `None` at a clean end, else the error's message (offsets included).
    end: Option<String>,
}

fn read_all(data: &[u8], buffer: usize) -> Option<Outcome> {
    let src = Box::new(Cursor::new(data.to_vec()));
    let mut r = CaptureReader::with_buffer_size(src, buffer).ok()?;
    let gzip = r.format().gzip;
    let mut packets = Vec::new();
    let end = loop {
        match r.next_packet() {
            Ok(Some(p)) => {
                check_raw(&p);
                packets.push((p.ts_us, p.link_type, p.orig_len, p.data.to_vec()));
            }
            Ok(None) => break None,
            Err(e) => {
                // The error contract: after an error, only `Ok(None)`.
                assert!(matches!(r.next_packet(), Ok(None)), "a read after {e}");
                break Some(describe(&e));
            }
        }
    };
    assert!(matches!(r.next_packet(), Ok(None)), "a read after the end");
    assert!(r.bytes_read() <= data.len() as u64, "read past the input");
    if !gzip {
        // Every record has a header of at least 8 bytes (pcapng simple
        // packet blocks: 12; pcap: 16; snoop: 24).
        assert!(
            packets.len() * 8 <= data.len(),
            "more packets than bytes allow"
        );
    }
    Some(Outcome { packets, end })
}

/// The error's message: a property of the input, never of the buffer size.
fn describe(e: &CaptureError) -> String {
    if let CaptureError::Io(_) = e {
        panic!("an in-memory read failed: {e}");
    }
    e.to_string()
}

/// What a [`RawPacket`] promises whatever the file.
fn check_raw(p: &RawPacket<'_>) {
    assert!(p.data.len() <= MAX_RECORD_LEN, "a record over the limit");
    assert!(
        p.orig_len as usize >= p.data.len(),
        "orig_len {} below the captured {}",
        p.orig_len,
        p.data.len()
    );
}

/// Target `capture_reader`: the input is a capture file.
///
/// It is read twice, once through a small buffer (16 B to 2 KiB, chosen by
/// the last byte, so records straddle refills and make the buffer grow) and
/// once through a 64 KiB one that holds any input whole: both must yield the
/// same packets and stop the same way, and each read keeps the reader's
/// contract (no read after an error, no read past the input).
pub fn capture_reader(data: &[u8]) {
    let small = 16usize << (data.last().copied().unwrap_or(0) % 8);
    let a = read_all(data, small);
    let b = read_all(data, 1 << 16);
    match (a, b) {
        (None, None) => {}
        (Some(a), Some(b)) => assert_eq!(a, b, "buffer {small} vs 64 KiB"),
        (a, b) => panic!("the format was detected with one buffer size only: {a:?} vs {b:?}"),
    }
}

/// Target `decode`: a capture file (every packet decoded with its link
/// type), or else a frame: byte 0 picks the link type (an index into
/// [`LINK_TYPES`], or from [`RAW_LINK_TYPE`] up: the next four bytes,
/// little-endian), the rest is the frame.
pub fn decode(data: &[u8]) {
    let src = Box::new(Cursor::new(data.to_vec()));
    if let Ok(mut r) = CaptureReader::with_buffer_size(src, 4096) {
        while let Ok(Some(p)) = r.next_packet() {
            decode_checked(&p);
        }
        return;
    }
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let (link_type, frame) = if sel >= RAW_LINK_TYPE {
        let Some((lt, frame)) = rest.split_first_chunk::<4>() else {
            return;
        };
        (u32::from_le_bytes(*lt), frame)
    } else {
        let lt = LINK_TYPES[usize::from(sel) % LINK_TYPES.len()];
        (lt, rest)
    };
    // The captured length (as a reader would give it), or more when the
    // selector's high bits say the frame was cut by a snap length.
    let captured = u32::try_from(frame.len()).unwrap_or(u32::MAX);
    let orig_len = captured.saturating_add(u32::from(sel >> 4) * 100);
    decode_checked(&RawPacket {
        ts_us: i64::from(sel) - 100,
        link_type,
        orig_len,
        data: frame,
    });
}

/// Decodes `pkt` and checks what a record promises: the capture's time and
/// length, a symmetric flow hash of its own tuple, zero-padded IPv4
/// addresses, transport header lengths by protocol; and on a skip, an
/// untouched output.
pub fn decode_checked(pkt: &RawPacket<'_>) {
    defrag_checked(pkt);
    // Every field set, so a decode that forgets one (the pipeline reuses
    // records) shows as a wrong value below.
    let poison = PacketRecord {
        ts_us: 0x5a5a,
        hash: 0xdead_beef,
        src: [0xa5; 16],
        dst: [0x5a; 16],
        payload_len: 7,
        wire_len: 9,
        sport: 11,
        dport: 13,
        header_len: 15,
        window: 17,
        proto: 19,
        flags: 0xff,
        icmp_type: 0xee,
        icmp_code: 0xdd,
        v6: true,
    };
    let mut r = poison;
    match tapstream_ingest::decode(pkt, &mut r) {
        Ok(()) => {
            assert_eq!(r.wire_len, pkt.orig_len);
            assert_eq!(r.ts_us, pkt.ts_us);
            assert_eq!(
                r.hash,
                flow_hash(&r.src, &r.dst, r.sport, r.dport, r.proto, r.v6)
            );
            assert_eq!(
                r.hash,
                flow_hash(&r.dst, &r.src, r.dport, r.sport, r.proto, r.v6),
                "the flow hash is not symmetric"
            );
            if !r.v6 {
                assert!(r.src[4..].iter().chain(&r.dst[4..]).all(|b| *b == 0));
            }
            match r.proto {
                6 => assert!(
                    r.header_len >= 20 && r.header_len <= 60 && r.header_len.is_multiple_of(4)
                ),
                17 | 1 | 58 => assert_eq!(r.header_len, 8),
                _ => assert_eq!((r.header_len, r.sport, r.dport), (0, 0, 0)),
            }
            if !r.is_icmp() {
                assert_eq!((r.icmp_type, r.icmp_code), (0, 0));
            }
            if r.proto != 6 {
                assert_eq!((r.flags, r.window), (0, 0));
            }
        }
        Err(reason) => {
            assert_eq!(
                r, poison,
                "a skipped packet ({reason:?}) changed the record"
            );
        }
    }
}

/// With reassembly on: a fragment is read as one, and a reassembly table
/// that gets it twice accounts for every copy and never panics.
fn defrag_checked(pkt: &RawPacket<'_>) {
    use tapstream_ingest::decode::{decode_whole, fragment_of};
    use tapstream_ingest::defrag::{Defrag, DefragConfig, Fragment};
    let mut rec = PacketRecord::default();
    if decode_whole(pkt, &mut rec) != Err(tapstream_ingest::SkipReason::Fragment) {
        return;
    }
    let mut f = Fragment::default();
    if fragment_of(pkt, &mut f).is_err() {
        return;
    }
    let mut d = Defrag::new(DefragConfig::default());
    for _ in 0..2 {
        let _ = d.add(&f, 0, &mut rec);
    }
    d.finish();
    let s = d.stats();
    assert_eq!(s.fragments, s.reassembled + s.dropped());
}
