//! The flood test of the Hardening issue ("bounded memory under attack").
//!
//! 10,000,000 packets from spoofed sources, in three waves (a SYN flood, a
//! UDP flood and an IP fragment flood, 15 s of packet time each, 5 s of quiet
//! between them), with the demo capture's sessions mixed in, are streamed
//! through a FIFO into `tapstream run` with a flow memory cap. The test
//! checks that
//!
//! * the process's peak resident set (`ru_maxrss` from `wait4`, the kernel's
//!   own high-water mark) stays under the memory cap plus a fixed overhead
//!   measured without a flood ([`FIXED_OVERHEAD_MIB`]);
//! * the flow tables evicted flows and went into emergency mode and out of
//!   it again, each transition logged once;
//! * every packet is explained: in a flow, or a fragment, each fragment
//!   reassembled into its datagram's packet or dropped (the orphans: timed
//!   out or over the reassembly memcap), exactly as many as were generated;
//! * every alert the demo capture raises alone is raised again, for the same
//!   flow and class, under the flood.
//!
//! The generator is here rather than in a shared capture so that the 760 MB
//! of pcap never touch a disk. It runs in its own test binary: the figures it
//! prints (wall time above all) mean something only when nothing else runs.

#[path = "util.rs"]
#[allow(dead_code)]
mod util;

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use tapstream_ingest::pcapgen::{PcapWriter, LINKTYPE_ETHERNET};
use tapstream_ingest::CaptureReader;
use tapstream_tools::rng::SplitMix64;
use util::{bin, demo_pcap, have_ort, root};

/// Packets of the flood itself (the demo capture's come on top).
const FLOOD_PACKETS: u64 = 10_000_000;
/// `[flow] memcap_mib` of the run: room for about 100,000 open flows.
const MEMCAP_MIB: u64 = 80;

/// `[defrag] memcap_mib`: the orphan fragments fill it, and make room.
const DEFRAG_MEMCAP_MIB: u64 = 4;
/// What the process needs besides the flow tables: ONNX Runtime and the
/// model, thread stacks, packet chunks, flow batches and the alert limiter.
/// Measured on the development machine: this flood with a 1 MiB memcap
/// peaks at 70 MiB, the demo capture alone at 53 MiB; the rest is room for
/// allocator slack elsewhere.
const FIXED_OVERHEAD_MIB: u64 = 100;
/// The victim of every flood.
const VICTIM: [u8; 4] = [203, 0, 113, 10];
/// First packet time of the demo capture (`tapstream_tools::demo::DEMO_START_US`).
const DEMO_START_US: i64 = tapstream_tools::demo::DEMO_START_US;
/// Packet time of one wave.
const WAVE_US: i64 = 15_000_000;
/// Wave starts after the demo's start: 5 s of quiet between waves is enough
/// for the 1 s emergency limit of unanswered flows to drain every table.
const WAVE_START_US: [i64; 3] = [2_000_000, 22_000_000, 42_000_000];

/// Spoofed addresses and ports from a fixed-seed generator: the same flood
/// on every machine.
trait Spoof {
    fn spoofed(&mut self) -> [u8; 4];
    fn port(&mut self) -> u16;
}

impl Spoof for SplitMix64 {
    /// A spoofed unicast source in 1.0.0.0–126.255.255.255 (never the
    /// demo's 198.18.0.0/15 or the victim).
    fn spoofed(&mut self) -> [u8; 4] {
        let a = 0x0100_0000 + (self.next_u64() % 0x7e00_0000) as u32;
        a.to_be_bytes()
    }

    fn port(&mut self) -> u16 {
        1 + (self.next_u64() % 65_535) as u16
    }
}

/// The kinds of flood.
#[derive(Clone, Copy)]
enum Wave {
    /// TCP SYNs from random sources and ports to the victim's port 80; one
    /// in four answered by a SYN-ACK (a flow with a reply, never
    /// established).
    Syn,
    /// UDP datagrams from random sources and ports to random ports.
    Udp,
    /// IPv4 fragments: whole fragmented datagrams (a first fragment with
    /// the UDP header, then two more) and orphan non-first fragments.
    Fragments,
}

/// Writes the flood (and the demo's packets, in time order) as a classic
/// little-endian microsecond pcap stream. The frames are built in place in
/// a stack buffer rather than with `pcapgen::Frame`, which has no IPv4
/// fragments and allocates per frame (10 million here).
struct Flood<W: Write> {
    out: PcapWriter<W>,
    rng: SplitMix64,
    /// The demo capture's packets (time, original length, bytes), in time
    /// order.
    demo: Vec<(i64, u32, Vec<u8>)>,
    next_demo: usize,
    flood: u64,
    frags: Frags,
}

/// The fragments a flood wrote.
#[derive(Clone, Copy, Debug, Default)]
struct Frags {
    /// Every fragment (first ones too).
    fragments: u64,
    /// Datagrams written whole (a first and a last fragment).
    datagrams: u64,
}

impl<W: Write> Flood<W> {
    fn new(out: W, demo: Vec<(i64, u32, Vec<u8>)>) -> std::io::Result<Self> {
        Ok(Flood {
            out: PcapWriter::new(out, LINKTYPE_ETHERNET)?,
            rng: SplitMix64::new(0x0f10_0d00_5eed_0001),
            demo,
            next_demo: 0,
            flood: 0,
            frags: Frags::default(),
        })
    }

    /// Writes the demo's packets up to `ts`.
    fn demo_until(&mut self, ts: i64) -> std::io::Result<()> {
        while let Some((t, orig_len, data)) = self.demo.get(self.next_demo) {
            if *t > ts {
                break;
            }
            self.out.write_record(*t, *orig_len, data)?;
            self.next_demo += 1;
        }
        Ok(())
    }

    /// Writes one flood frame (padded to 60 bytes) at `ts`.
    fn frame(&mut self, ts: i64, frame: &[u8]) -> std::io::Result<()> {
        let mut padded = [0u8; 60];
        if let Some(head) = padded.get_mut(..frame.len()) {
            head.copy_from_slice(frame);
            self.out.write(ts, &padded)?;
        } else {
            self.out.write(ts, frame)?;
        }
        self.flood += 1;
        Ok(())
    }

    /// Writes `packets` packets of `wave` spread evenly from `start`.
    fn wave(&mut self, wave: Wave, start: i64, packets: u64) -> std::io::Result<()> {
        let mut i = 0;
        while i < packets {
            let ts = start + (i as i64) * WAVE_US / packets as i64;
            self.demo_until(ts)?;
            let src = self.rng.spoofed();
            let sport = self.rng.port();
            let mut f = [0u8; 128];
            match wave {
                Wave::Syn => {
                    let n = tcp(&mut f, src, VICTIM, sport, 80, 0x02);
                    self.frame(ts, &f[..n])?;
                    i += 1;
                    if self.rng.next_u64() % 4 == 0 && i < packets {
                        let n = tcp(&mut f, VICTIM, src, 80, sport, 0x12);
                        self.frame(ts, &f[..n])?;
                        i += 1;
                    }
                }
                Wave::Udp => {
                    let dport = self.rng.port();
                    let payload = (self.rng.next_u64() % 64) as usize;
                    let n = ipv4(&mut f, src, VICTIM, 17, 8 + payload, 0, 0);
                    udp_header(&mut f[n..], sport, dport, 8 + payload);
                    self.frame(ts, &f[..n + 8 + payload])?;
                    i += 1;
                }
                Wave::Fragments => {
                    let id = self.rng.next_u64() as u16;
                    // Offsets in 8-byte units; MF (0x2000) on all but the
                    // last. Three in four datagrams arrive whole (a first
                    // fragment opens a flow), the rest as a lone orphan.
                    let whole = self.rng.next_u64() % 4 != 0;
                    let parts: &[(u16, usize)] = if whole {
                        &[(0x2000, 32), (4, 16)]
                    } else {
                        &[(0x2000 | 4, 32)]
                    };
                    for (k, &(frag, len)) in parts.iter().enumerate() {
                        if i == packets {
                            break;
                        }
                        let n = ipv4(&mut f, src, VICTIM, 17, len, id, frag);
                        if frag & 0x1fff == 0 {
                            // The first fragment carries the UDP header of
                            // the whole 48-byte datagram.
                            udp_header(&mut f[n..], sport, 53, 48);
                        }
                        self.frags.fragments += 1;
                        if whole && k == 1 {
                            self.frags.datagrams += 1;
                        }
                        self.frame(ts, &f[..n + len])?;
                        i += 1;
                    }
                }
            }
        }
        Ok(())
    }

    /// The three waves and the rest of the demo; returns the writer.
    fn run(mut self) -> std::io::Result<(W, u64, Frags)> {
        let per_wave = FLOOD_PACKETS / 3;
        let waves = [Wave::Syn, Wave::Udp, Wave::Fragments];
        for (k, (wave, at)) in waves.into_iter().zip(WAVE_START_US).enumerate() {
            let n = if k == 2 {
                FLOOD_PACKETS - 2 * per_wave
            } else {
                per_wave
            };
            self.wave(wave, DEMO_START_US + at, n)?;
        }
        self.demo_until(i64::MAX)?;
        Ok((self.out.finish()?, self.flood, self.frags))
    }
}

/// Ethernet and IPv4 headers (protocol `proto`, `payload` bytes after the
/// IP header, identification `id`, flags and offset `frag`); returns the
/// offset of the transport header.
fn ipv4(
    f: &mut [u8],
    src: [u8; 4],
    dst: [u8; 4],
    proto: u8,
    payload: usize,
    id: u16,
    frag: u16,
) -> usize {
    f[..14].copy_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00]);
    f[14] = 0x45;
    f[15] = 0;
    f[16..18].copy_from_slice(&((20 + payload) as u16).to_be_bytes());
    f[18..20].copy_from_slice(&id.to_be_bytes());
    f[20..22].copy_from_slice(&frag.to_be_bytes());
    f[22] = 64;
    f[23] = proto;
    f[24..26].copy_from_slice(&[0, 0]);
    f[26..30].copy_from_slice(&src);
    f[30..34].copy_from_slice(&dst);
    34
}

/// A TCP segment without payload; returns the frame length.
fn tcp(f: &mut [u8], src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, flags: u8) -> usize {
    let n = ipv4(f, src, dst, 6, 20, 0, 0x4000);
    let t = &mut f[n..n + 20];
    t.fill(0);
    t[..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[12] = 0x50;
    t[13] = flags;
    t[14..16].copy_from_slice(&1024u16.to_be_bytes());
    n + 20
}

/// A UDP header with length field `len` (header and payload; payload bytes
/// after it are zeroed).
fn udp_header(f: &mut [u8], sport: u16, dport: u16, len: usize) {
    f[..2].copy_from_slice(&sport.to_be_bytes());
    f[2..4].copy_from_slice(&dport.to_be_bytes());
    f[4..6].copy_from_slice(&(len as u16).to_be_bytes());
    f[6..8].copy_from_slice(&[0, 0]);
    let end = f.len().min(len);
    f[8..end.max(8)].fill(0);
}

/// The packets of a capture: (time, original length, bytes).
fn packets(path: &Path) -> Vec<(i64, u32, Vec<u8>)> {
    let mut r = CaptureReader::open(path).expect("the demo capture opens");
    let mut out = Vec::new();
    while let Some(p) = r.next_packet().expect("the demo capture reads") {
        out.push((p.ts_us, p.orig_len, p.data.to_vec()));
    }
    out
}

/// (flow_id, class) of every alert in an EVE file.
fn alerts(eve: &Path) -> HashSet<(u64, String)> {
    let text = std::fs::read_to_string(eve).expect("EVE output");
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("EVE line is JSON");
            (
                v["flow_id"].as_u64().expect("flow_id"),
                v["tapstream"]["class"].as_str().expect("class").to_string(),
            )
        })
        .collect()
}

/// Opens the FIFO for writing once `child` has opened it for reading;
/// panics with the child's log if it exits first.
fn open_writer(fifo: &Path, child: &mut Child, log: &Path) -> File {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        // Non-blocking: fails with ENXIO until a reader has the FIFO open.
        match OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(fifo)
        {
            Ok(probe) => {
                // A reader is there, so a blocking open returns at once.
                let f = OpenOptions::new()
                    .write(true)
                    .open(fifo)
                    .expect("open FIFO");
                drop(probe);
                return f;
            }
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {}
            Err(e) => panic!("opening the FIFO: {e}"),
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "tapstream exited ({status}) before reading: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "tapstream never opened the FIFO");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits for `child`; returns its exit status and peak resident set, bytes.
fn wait_with_peak_rss(child: &Child) -> (i32, u64) {
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: `rusage` is plain old data that `wait4` fills in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own child, not yet reaped (`Child::wait` is never
    // called on it); the pointers are valid for the call.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4: {}", std::io::Error::last_os_error());
    // Linux reports ru_maxrss in KiB.
    (status, usage.ru_maxrss as u64 * 1024)
}

/// Kills `child` unless the returned sender is dropped within `limit`, so a
/// hung run fails the test instead of blocking CI (the writer then gets a
/// broken pipe).
fn watchdog(child: &Child, limit: Duration) -> std::sync::mpsc::Sender<()> {
    let pid = child.id() as libc::pid_t;
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
            eprintln!("tapstream still running after {limit:?}: killing it");
            // SAFETY: plain system call; the child is not reaped before the
            // sender is dropped, so `pid` is still ours.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    });
    tx
}

/// Makes a FIFO at `path`.
fn mkfifo(path: &Path) {
    let c = CString::new(path.as_os_str().as_bytes()).expect("no NUL in a temp path");
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    let r = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
    assert_eq!(r, 0, "mkfifo: {}", std::io::Error::last_os_error());
}

/// `[context] memcap_mib` of the context-model run.
const CONTEXT_MEMCAP_MIB: u64 = 16;
/// What the context stage needs besides its table, on top of
/// [`FIXED_OVERHEAD_MIB`]: its thread, its input queue of flow batches, each
/// batch's context rows, and the hash table of open flows' rows growing
/// (the flow memcap covers its entries). Measured: this flood peaks at
/// 192 MiB with the context model, 147 MiB without.
const CONTEXT_OVERHEAD_MIB: u64 = 16;

/// One flood run: tapstream's exit status, peak RSS, wall time, the flood's
/// packet counts (or the writer's error) and its log.
struct FloodRun {
    status: i32,
    peak_rss: u64,
    wall: Duration,
    written: std::io::Result<(u64, Frags)>,
    log_text: String,
}

/// Streams the flood (with the demo capture's packets) through a FIFO into
/// the command `run` makes for it.
fn flood_through(
    dir: &Path,
    name: &str,
    run: &dyn Fn(&Path, &str) -> std::process::Command,
    demo_records: Vec<(i64, u32, Vec<u8>)>,
) -> FloodRun {
    let fifo = dir.join(format!("{name}.pcap"));
    mkfifo(&fifo);
    let log = dir.join(format!("{name}.log"));
    let started = Instant::now();
    let mut child = run(&fifo, name).spawn().expect("start tapstream");
    let watchdog = watchdog(&child, Duration::from_secs(900));
    let writer = open_writer(&fifo, &mut child, &log);
    // Closing the FIFO (dropping the writer) is the end of the capture.
    let written = Flood::new(BufWriter::with_capacity(1 << 20, writer), demo_records)
        .and_then(Flood::run)
        .map(|(writer, flood, frags)| {
            drop(writer);
            (flood, frags)
        });
    let (status, peak_rss) = wait_with_peak_rss(&child);
    let wall = started.elapsed();
    drop(watchdog);
    FloodRun {
        status,
        peak_rss,
        wall,
        written,
        log_text: std::fs::read_to_string(&log).unwrap_or_default(),
    }
}

#[test]
fn ten_million_packet_flood_stays_under_the_memory_cap() {
    if !have_ort("ten_million_packet_flood_stays_under_the_memory_cap") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("flood.toml");
    // One worker and one decoder, what `auto` picks on 2 cores: queues and
    // chunk pools grow with the thread counts, and the fixed overhead must
    // not depend on the machine. The limiter keeps the flood's own alerts
    // (all to the victim) to a few thousand; the demo's flows alert at most
    // 2,000 times per destination, so none of theirs is suppressed.
    std::fs::write(
        &config,
        format!(
            "[flow]\nmemcap_mib = {MEMCAP_MIB}\n\
             [context]\nmemcap_mib = {CONTEXT_MEMCAP_MIB}\n\
             [defrag]\nmemcap_mib = {DEFRAG_MEMCAP_MIB}\n\
             [pipeline]\nworkers = 1\ndecoders = 1\n\
             [output.limit]\ntrack = \"by_dst\"\ncount = 2000\nwindow = \"24h\"\n"
        ),
    )
    .expect("write config");
    // The CIC-schema model: its alerts depend on each flow alone, so the
    // demo's must come back unchanged under the flood. Then the default
    // model, whose context rows the flood changes (hosts evicted from the
    // context table), for memory only.
    let run = |model: Option<&'static str>| {
        let (dir, config) = (dir.path().to_path_buf(), config.clone());
        move |pcap: &Path, name: &str| {
            let mut cmd = bin();
            cmd.current_dir(root())
                .env("TAPSTREAM_LOG", "info")
                .args(["run", "--alerts", "flows"])
                .arg("--pcap")
                .arg(pcap)
                .arg("--config")
                .arg(&config)
                .arg("--eve")
                .arg(dir.join(format!("{name}.eve.json")))
                .arg("--summary-json")
                .arg(dir.join(format!("{name}.summary.json")))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(File::create(dir.join(format!("{name}.log"))).expect("log file"));
            if let Some(m) = model {
                cmd.arg("--model").arg(m);
            }
            cmd
        }
    };
    let cic = run(Some("models/cic-mlp.onnx"));

    // The demo capture alone: the alerts the flood must not take away.
    let demo = demo_pcap(dir.path());
    let o = util::output(&mut cic(&demo, "demo"));
    assert!(
        o.status.success(),
        "demo run failed: {}",
        std::fs::read_to_string(dir.path().join("demo.log")).unwrap_or_default()
    );
    let expected = alerts(&dir.path().join("demo.eve.json"));
    assert!(expected.len() > 1_000, "{} demo alerts", expected.len());
    let demo_records = packets(&demo);
    let demo_packets = demo_records.len() as u64;

    let r = flood_through(dir.path(), "flood", &cic, demo_records.clone());
    let FloodRun {
        status,
        peak_rss,
        wall,
        log_text,
        ..
    } = &r;
    let (status, peak_rss, wall, log_text) = (*status, *peak_rss, *wall, log_text.clone());
    let (flood, frags) = match r.written {
        Ok(w) => w,
        Err(e) => panic!("writing the flood: {e}; tapstream said: {log_text}"),
    };
    assert_eq!(status, 0, "tapstream failed: {log_text}");
    assert_eq!(flood, FLOOD_PACKETS);

    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("flood.summary.json")).expect("summary"),
    )
    .expect("summary JSON");
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(u64::MAX);
    let got = alerts(&dir.path().join("flood.eve.json"));
    let scored = expected.intersection(&got).count();
    let entries = n(&summary["flow_emergency"]["entries"]);
    let cap = (MEMCAP_MIB + DEFRAG_MEMCAP_MIB + FIXED_OVERHEAD_MIB) << 20;
    eprintln!(
        "flood: {} packets ({flood} flood, {demo_packets} demo) in {:.1} s wall; peak RSS {:.1} MiB \
         (cap {} MiB = memcap {MEMCAP_MIB} + defrag memcap {DEFRAG_MEMCAP_MIB} + fixed \
         {FIXED_OVERHEAD_MIB}); defrag {}; {} flows, {} evictions, \
         {entries} emergency entries, ended {}; {scored} of {} demo alerts raised again; \
         {} alerts, {} suppressed",
        n(&summary["packets"]),
        wall.as_secs_f64(),
        peak_rss as f64 / f64::from(1u32 << 20),
        cap >> 20,
        summary["defrag"],
        n(&summary["flows"]),
        n(&summary["evictions"]),
        summary["flows_ended"],
        expected.len(),
        n(&summary["alerts"]),
        summary["alerts_suppressed"],
    );

    // Memory: the whole process, not only the flow tables.
    assert!(
        peak_rss < cap,
        "peak RSS {peak_rss} bytes is over the {} MiB cap",
        cap >> 20
    );
    // Every packet explained: in a flow, or a fragment, reassembled or
    // dropped.
    assert_eq!(n(&summary["packets"]), flood + demo_packets);
    assert_eq!(summary["accounted"], true);
    let skipped: HashMap<String, u64> =
        serde_json::from_value(summary["skipped"].clone()).expect("skip counters");
    for (reason, count) in &skipped {
        assert_eq!(*count, 0, "skipped {reason}");
    }
    let d = &summary["defrag"];
    assert_eq!(n(&d["fragments"]), frags.fragments);
    assert_eq!(n(&d["datagrams"]), frags.datagrams);
    assert_eq!(n(&d["reassembled"]), 2 * frags.datagrams);
    assert_eq!(
        n(&d["reassembled"]) + n(&d["timeouts"]) + n(&d["memcap"]) + n(&d["invalid"]),
        frags.fragments
    );
    // The orphans filled the reassembly table and were dropped to make
    // room: every whole datagram was still reassembled (asserted above).
    assert!(n(&d["memcap"]) > 0, "{d}");
    assert_eq!(
        n(&summary["packets_in_flows"]),
        flood + demo_packets - frags.fragments + frags.datagrams
    );
    // The table was full, evicted, and went into emergency mode at least
    // once per wave and out of it again.
    assert_eq!(n(&summary["workers"]), 1);
    assert!(n(&summary["evictions"]) > 0);
    assert!(n(&summary["flows_ended"]["emergency_timeout"]) > 0);
    assert!(entries >= 3, "{entries} entries");
    assert_eq!(n(&summary["flow_emergency"]["exits"]), entries);
    assert_eq!(n(&summary["flow_emergency"]["active"]), 0);
    // Each transition logged once (a line counts the transitions a shard
    // made since its last line, `times=`).
    let logged = |what: &str| -> u64 {
        log_text
            .lines()
            .filter(|l| l.contains(what))
            .map(|l| {
                let times = l.split("times=").nth(1).unwrap_or("");
                let digits: String = times.chars().take_while(char::is_ascii_digit).collect();
                digits.parse::<u64>().unwrap_or(0)
            })
            .sum()
    };
    assert_eq!(
        logged("emergency mode (shorter timeouts"),
        entries,
        "{log_text}"
    );
    assert_eq!(logged("emergency mode over"), entries, "{log_text}");
    // Legitimate flows are still scored: every demo alert, same flow id and
    // class.
    let missing: Vec<_> = expected.difference(&got).take(5).collect();
    assert!(
        missing.is_empty(),
        "{} of {} demo alerts missing under the flood, e.g. {missing:?}",
        expected.len() - scored,
        expected.len()
    );

    // The default model, with the context stage: its table and the rows of
    // open flows stay within their memcaps too.
    let ctx = run(None);
    let r = flood_through(dir.path(), "context", &ctx, demo_records);
    assert_eq!(r.status, 0, "tapstream failed: {}", r.log_text);
    assert!(
        r.written.is_ok(),
        "writing the flood: {:?}",
        r.written.err()
    );
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("context.summary.json")).expect("summary"),
    )
    .expect("summary JSON");
    let c = &summary["context"];
    let cap = (MEMCAP_MIB
        + CONTEXT_MEMCAP_MIB
        + DEFRAG_MEMCAP_MIB
        + FIXED_OVERHEAD_MIB
        + CONTEXT_OVERHEAD_MIB)
        << 20;
    eprintln!(
        "context flood: {:.1} s wall; peak RSS {:.1} MiB (cap {} MiB = flow memcap {MEMCAP_MIB} \
         + context memcap {CONTEXT_MEMCAP_MIB} + defrag memcap {DEFRAG_MEMCAP_MIB} + fixed \
         {FIXED_OVERHEAD_MIB} + context stage \
         {CONTEXT_OVERHEAD_MIB}); context {c}",
        r.wall.as_secs_f64(),
        r.peak_rss as f64 / f64::from(1u32 << 20),
        cap >> 20,
    );
    assert!(
        r.peak_rss < cap,
        "peak RSS {} bytes is over the {} MiB cap",
        r.peak_rss,
        cap >> 20
    );
    assert_eq!(summary["accounted"], true);
    assert!(n(&c["starts"]) > 1_000_000, "{c}");
    assert!(
        n(&c["evictions"]) > 0 && n(&c["emergency_entries"]) > 0,
        "{c}"
    );
    assert_eq!(n(&c["missing"]), 0, "{c}");
}
