//! The GPU kernels, compiled as plain C++ and run on the host, produce
//! exactly the CPU extractor's rows for the same packets.
//!
//! This checks everything but the device itself: the host batch builder
//! (segments, ranks, finalize records, slot reuse within a batch, batch
//! boundaries, accumulator growth) and the kernel arithmetic, bit for bit.
//! The GPU host runs the same comparison on the real device
//! (`scripts/gpu-check.sh`). Needs a C++ compiler (`c++`); without one the
//! test says so and returns.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use tapstream_ingest::flow::FlowConfig;
use tapstream_ingest::{decode, CaptureReader, PacketRecord};
use tapstream_kernels::gpu::{
    BatchExecutor, Columns, DeviceScoring, Flagged, GpuError, GpuShard, RecordBatch,
};
use tapstream_kernels::schema::{FEATURES, NUM_FEATURES};
use tapstream_kernels::shard::Output;
use tapstream_kernels::{FlowBatch, Scored, ShardProcessor};

#[path = "gpu_emu/emulator.rs"]
mod emulator;

fn build_emulator(dir: &Path) -> Option<PathBuf> {
    emulator::build_emulator(Path::new(env!("CARGO_MANIFEST_DIR")), dir, "gpu_emulation")
}

struct EmuExecutor {
    child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
    done: VecDeque<Vec<f64>>,
    activity_timeout_us: i64,
}

impl EmuExecutor {
    fn spawn(exe: &Path, activity_timeout_us: i64) -> Self {
        let mut child = Command::new(exe)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        EmuExecutor {
            child,
            stdin,
            stdout,
            done: VecDeque::new(),
            activity_timeout_us,
        }
    }
}

impl Drop for EmuExecutor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_col<T: Copy>(w: &mut impl Write, xs: &[T]) {
    // SAFETY: plain-old-data columns written in the machine's byte order,
    // read back by the emulator on the same machine.
    let bytes =
        unsafe { std::slice::from_raw_parts(xs.as_ptr().cast::<u8>(), std::mem::size_of_val(xs)) };
    w.write_all(bytes).unwrap();
}

impl BatchExecutor for EmuExecutor {
    fn columns(&mut self, cap: usize, fin_cap: usize) -> Result<Columns, GpuError> {
        Ok(Columns::in_memory(cap, fin_cap))
    }

    // The round trip is synchronous (the pipes would deadlock with two
    // batches outstanding); `finish` then hands out results in order.
    fn submit(&mut self, b: &RecordBatch) -> Result<(), GpuError> {
        let (n, segs, nf) = (b.len(), b.segments(), b.finalized());
        let mut buf = Vec::new();
        write_col(
            &mut buf,
            &[
                n as u64,
                segs as u64,
                nf as u64,
                b.slots_needed as u64,
                self.activity_timeout_us as u64,
                b.short_segments() as u64,
                b.long_segments() as u64,
            ],
        );
        let c = &b.cols;
        write_col(&mut buf, c.seg.as_slice(n));
        write_col(&mut buf, c.rank.as_slice(n));
        write_col(&mut buf, c.ts.as_slice(n));
        write_col(&mut buf, c.payload.as_slice(n));
        write_col(&mut buf, c.header.as_slice(n));
        write_col(&mut buf, c.window.as_slice(n));
        write_col(&mut buf, c.flags.as_slice(n));
        write_col(&mut buf, c.kind.as_slice(n));
        write_col(&mut buf, c.seg_start.as_slice(segs + 1));
        write_col(&mut buf, c.seg_slot.as_slice(segs));
        write_col(&mut buf, c.fin_meta.as_slice(nf));
        write_col(&mut buf, c.short_segs.as_slice(b.short_segments()));
        write_col(&mut buf, c.long_segs.as_slice(b.long_segments()));
        self.stdin.write_all(&buf).unwrap();
        self.stdin.flush().unwrap();
        let mut raw = vec![0u8; nf * NUM_FEATURES * 8];
        self.stdout.read_exact(&mut raw).unwrap();
        let rows = raw
            .chunks_exact(8)
            .map(|c| f64::from_ne_bytes(c.try_into().unwrap()))
            .collect();
        self.done.push_back(rows);
        Ok(())
    }

    fn finish(&mut self, rows: &mut Vec<f64>) -> Result<(), GpuError> {
        rows.extend(self.done.pop_front().unwrap_or_default());
        Ok(())
    }
}

fn records(path: &Path) -> Vec<PacketRecord> {
    let mut reader = match CaptureReader::open(path) {
        Ok(r) => r,
        Err(_) => return Vec::new(),
    };
    let mut out = Vec::new();
    let mut rec = PacketRecord::default();
    while let Ok(Some(p)) = reader.next_packet() {
        if decode(&p, &mut rec).is_ok() {
            out.push(rec);
        }
    }
    out
}

fn cpu_rows(cfg: FlowConfig, recs: &[PacketRecord]) -> FlowBatch {
    let mut shard = ShardProcessor::new(cfg, 0).unwrap();
    let mut out = FlowBatch::default();
    for chunk in recs.chunks(512) {
        shard.process(chunk, &mut out);
    }
    shard.flush(&mut out);
    out
}

fn gpu_rows(cfg: FlowConfig, recs: &[PacketRecord], exe: &Path, cap: usize) -> FlowBatch {
    let exec = EmuExecutor::spawn(exe, cfg.activity_timeout_us);
    let mut shard = GpuShard::new(cfg, 0, exec, cap).unwrap();
    let mut batch = FlowBatch::default();
    let mut out = Output {
        batch: &mut batch,
        max_flows: usize::MAX,
        handoff: |_: &mut FlowBatch| {},
    };
    for chunk in recs.chunks(512) {
        shard.process_into(chunk, &mut out);
    }
    shard.flush_into(&mut out);
    assert!(shard.error().is_none(), "{:?}", shard.error());
    batch
}

/// Asserts the two extractors emitted the same flows with bit-identical rows.
fn assert_same(name: &str, cpu: &FlowBatch, gpu: &FlowBatch) {
    assert_eq!(cpu.len(), gpu.len(), "{name}: flow count");
    for i in 0..cpu.len() {
        assert_eq!(cpu.metas[i], gpu.metas[i], "{name}: flow {i}");
        let (a, b) = (cpu.row(i).unwrap(), gpu.row(i).unwrap());
        for k in 0..NUM_FEATURES {
            assert!(
                a[k].to_bits() == b[k].to_bits(),
                "{name}: flow {i} feature {:?}: cpu {} gpu {}",
                FEATURES[k].0,
                a[k],
                b[k]
            );
        }
    }
}

fn captures() -> Vec<PathBuf> {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data");
    let mut out = Vec::new();
    for dir in [
        "lab/benign",
        "lab/attack",
        "pcaps/attack/scan",
        "pcaps/attack/dos",
    ] {
        let mut stack = vec![data.join(dir)];
        while let Some(d) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.push(p);
                }
            }
        }
    }
    out.sort();
    out
}

#[test]
fn emulated_kernels_equal_the_cpu_extractor() {
    let dir = std::env::temp_dir().join(format!("tapstream-emu-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let Some(exe) = build_emulator(&dir) else {
        return;
    };
    let files = captures();
    if files.is_empty() {
        eprintln!(
            "emulated_kernels_equal_the_cpu_extractor: ../shared/data absent, synthetic only"
        );
    }
    // Small flow tables force eviction and slot reuse; small batches force
    // flows across batch boundaries and reuse within a batch.
    let configs = [
        FlowConfig::default(),
        FlowConfig {
            max_flows: 64,
            flow_timeout_us: 2_000_000,
            ..FlowConfig::default()
        },
    ];
    let mut flows = 0;
    for f in &files {
        let recs = records(f);
        if recs.is_empty() {
            continue;
        }
        for (ci, cfg) in configs.iter().enumerate() {
            let cpu = cpu_rows(*cfg, &recs);
            for cap in [97, 4096] {
                let gpu = gpu_rows(*cfg, &recs, &exe, cap);
                assert_same(&format!("{} cfg{ci} cap{cap}", f.display()), &cpu, &gpu);
            }
            flows += cpu.len();
        }
    }
    eprintln!(
        "{} captures, {flows} flows: GPU kernels (emulated) == CPU",
        files.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Random packets whose gaps sit on every threshold of the extractor (bulk
/// gap, activity timeout, flow timeout) and sometimes go backwards, across a
/// handful of hosts and ports so flows collide, end and restart.
/// `mode` 0: many flows, threshold gaps; 1: one TCP connection, gaps around
/// the bulk gap; 2: one TCP connection, threshold gaps (long flows cross the
/// activity timeout, so the warp path sees active/idle splits); 3: like 1,
/// with rare jumps of ±2^45 µs, so bulk durations take the exact sequential
/// fallback of the warp path.
fn synthetic(seed: u64, n: usize, mode: u64) -> Vec<PacketRecord> {
    let bulk_focus = mode != 0;
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    const GAPS: [i64; 12] = [
        0,
        1,
        999_999,
        1_000_000,
        1_000_001,
        4_999_999,
        5_000_000,
        5_000_001,
        119_999_999,
        120_000_000,
        120_000_001,
        -3,
    ];
    // Bulk focus: one TCP connection, mostly payload, gaps around 1 s.
    const BULK_GAPS: [i64; 6] = [0, 0, 1, 999_999, 1_000_000, 1_000_001];
    let mut ts = 1_600_000_000_000_000i64;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        ts += if mode == 3 && next() % 64 == 0 {
            if next() % 2 == 0 {
                1 << 45
            } else {
                -(1 << 45)
            }
        } else if mode == 1 || mode == 3 {
            BULK_GAPS[(next() % BULK_GAPS.len() as u64) as usize]
        } else if mode == 2 && next() % 4 != 0 {
            // Mostly short gaps so the connection stays long, some on the thresholds.
            (next() % 1000) as i64
        } else {
            GAPS[(next() % GAPS.len() as u64) as usize]
        };
        let a = if bulk_focus { 0 } else { (next() % 3) as u8 };
        let b = if bulk_focus {
            3
        } else {
            3 + (next() % 2) as u8
        };
        let forward = next() % 2 == 0;
        let proto = if bulk_focus {
            6
        } else {
            [6u8, 6, 6, 17, 1][(next() % 5) as usize]
        };
        let (sport, dport) = match (proto, bulk_focus) {
            (1, _) => (0, 0),
            (_, true) => (1000, 80),
            _ => (1000 + (next() % 3) as u16, 80),
        };
        let mut src = [0u8; 16];
        let mut dst = [0u8; 16];
        src[..4].copy_from_slice(&[10, 0, 0, a]);
        dst[..4].copy_from_slice(&[10, 0, 0, b]);
        let (src, dst, sport, dport) = if forward {
            (src, dst, sport, dport)
        } else {
            (dst, src, dport, sport)
        };
        // Bulk focus: never FIN/RST/SYN, so the connection stays one flow.
        let flags = match (proto, bulk_focus) {
            (6, true) => 0x18,
            (6, false) => (next() & 0xff) as u8,
            _ => 0,
        };
        out.push(PacketRecord {
            ts_us: ts,
            hash: tapstream_ingest::decode::flow_hash(&src, &dst, sport, dport, proto, false),
            src,
            dst,
            payload_len: if bulk_focus {
                [0u32, 1, 100, 1448, 1448, 1448][(next() % 6) as usize]
            } else {
                [0u32, 0, 1, 1448, 65_535][(next() % 5) as usize]
            },
            wire_len: 60,
            sport,
            dport,
            header_len: [20u16, 32, 60, 8][(next() % 4) as usize],
            window: (next() & 0xffff) as u16,
            proto,
            flags,
            icmp_type: if proto == 1 {
                (next() % 3) as u8 * 8
            } else {
                0
            },
            icmp_code: if proto == 1 { (next() % 2) as u8 } else { 0 },
            v6: false,
        });
    }
    out
}

#[test]
fn emulated_kernels_equal_the_cpu_extractor_on_threshold_streams() {
    let dir = std::env::temp_dir().join(format!("tapstream-emu2-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let Some(exe) = build_emulator(&dir) else {
        return;
    };
    let mut flows = 0;
    for seed in 1..=120u64 {
        let recs = synthetic(seed * 0x9e37_79b9, 3000, seed % 4);
        for cfg in [
            FlowConfig::default(),
            FlowConfig {
                max_flows: 3,
                ..FlowConfig::default()
            },
        ] {
            let cpu = cpu_rows(cfg, &recs);
            for cap in [5, 257] {
                let gpu = gpu_rows(cfg, &recs, &exe, cap);
                assert_same(&format!("seed {seed} cap {cap}"), &cpu, &gpu);
            }
            flows += cpu.len();
        }
    }
    assert!(flows > 1000, "{flows}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// One capture through the emulated kernels against the CPU, for
/// investigation: `TAPSTREAM_EMU_CAPTURE=FILE [TAPSTREAM_EMU_CAP=N]
/// TS_EMU_STATS=1 cargo test --release --test gpu_emulation -- --ignored
/// --nocapture` (the emulator then prints how many long walks fell back to
/// one record at a time).
#[test]
#[ignore]
fn emulate_one_capture() {
    let Some(file) = std::env::var_os("TAPSTREAM_EMU_CAPTURE") else {
        eprintln!("emulate_one_capture: set TAPSTREAM_EMU_CAPTURE");
        return;
    };
    let cap = std::env::var("TAPSTREAM_EMU_CAP")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(262_144);
    let dir = std::env::temp_dir().join(format!("tapstream-emu3-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let Some(exe) = build_emulator(&dir) else {
        return;
    };
    let recs = records(Path::new(&file));
    let cfg = FlowConfig::default();
    let cpu = cpu_rows(cfg, &recs);
    let gpu = gpu_rows(cfg, &recs, &exe, cap);
    assert_same(&format!("{file:?}"), &cpu, &gpu);
    eprintln!(
        "{} records, {} flows: emulated GPU == CPU",
        recs.len(),
        cpu.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// What the test scoring saw, shared with the test.
#[derive(Default)]
struct ScoringLog {
    /// Batches scored, and flows in them.
    batches: u64,
    flows: u64,
    /// Generations prepared, and batches in flight each time.
    prepared: Vec<(u64, usize)>,
}

/// A stand-in for device scoring: flags a flow by a rule that depends on
/// the generation (so a batch labelled with the wrong generation shows),
/// and offers a new model every `every` scored batches, up to `last`.
struct TestScoring {
    generation: u64,
    last: u64,
    every: u64,
    log: std::sync::Arc<std::sync::Mutex<ScoringLog>>,
    flagged: Vec<Flagged>,
}

fn flags(generation: u64, row: &[f64]) -> bool {
    row.iter().fold(generation, |h, v| {
        h.wrapping_mul(31).wrapping_add(v.to_bits())
    }) % 3
        == 0
}

impl DeviceScoring<EmuExecutor> for TestScoring {
    fn prepare(&mut self, exec: &mut EmuExecutor) -> Result<(), GpuError> {
        let mut log = self.log.lock().unwrap();
        log.prepared.push((self.generation, exec.done.len()));
        Ok(())
    }

    fn newer_model(&self) -> bool {
        let log = self.log.lock().unwrap();
        self.generation < self.last && log.batches >= self.every * (self.generation + 1)
    }

    fn switch(&mut self) {
        self.generation += 1;
    }

    fn score(
        &mut self,
        _exec: &EmuExecutor,
        host: &[f64],
        rows: usize,
    ) -> Result<(Scored, &[Flagged]), GpuError> {
        assert_eq!(host.len(), rows * NUM_FEATURES);
        self.flagged.clear();
        for (i, row) in host.chunks_exact(NUM_FEATURES).enumerate() {
            if flags(self.generation, row) {
                self.flagged.push(Flagged {
                    row: i as u32,
                    class: 7,
                    score: 0.5,
                });
            }
        }
        let mut log = self.log.lock().unwrap();
        log.batches += 1;
        log.flows += rows as u64;
        Ok((
            Scored {
                generation: self.generation,
                calls: 1,
                busy: std::time::Duration::from_micros(1),
            },
            &self.flagged,
        ))
    }
}

/// A GPU shard that scores on the device hands off scored batches: the
/// same flows in the same order as the CPU shard, no feature rows, each
/// batch scored by one model generation (a switch completes the batches in
/// flight first), and flagged rows that point at the right flows.
#[test]
fn a_scoring_gpu_shard_hands_off_scored_batches_of_one_model_each() {
    let dir = std::env::temp_dir().join(format!("tapstream-emu3-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let Some(exe) = build_emulator(&dir) else {
        return;
    };
    let mut switches_seen = 0;
    for (seed, cap, max_flows) in [(7u64, 64, 7), (11, 5, 1), (13, 257, 1000)] {
        let recs = synthetic(seed * 0x9e37_79b9, 4000, 0);
        let cfg = FlowConfig::default();
        let cpu = cpu_rows(cfg, &recs);
        let log = std::sync::Arc::new(std::sync::Mutex::new(ScoringLog::default()));
        let exec = EmuExecutor::spawn(&exe, cfg.activity_timeout_us);
        let mut shard = GpuShard::new(cfg, 0, exec, cap).unwrap();
        shard
            .set_scoring(Box::new(TestScoring {
                generation: 0,
                last: 3,
                every: 4,
                log: log.clone(),
                flagged: Vec::new(),
            }))
            .unwrap();
        let mut handed: Vec<FlowBatch> = Vec::new();
        let mut batch = FlowBatch::default();
        let mut out = Output {
            batch: &mut batch,
            max_flows,
            handoff: |b: &mut FlowBatch| {
                handed.push(b.clone());
                b.clear();
            },
        };
        for chunk in recs.chunks(512) {
            shard.process_into(chunk, &mut out);
        }
        shard.flush_into(&mut out);
        (out.handoff)(out.batch);
        assert!(shard.error().is_none(), "{:?}", shard.error());
        handed.retain(|b| !b.is_empty());

        let name = format!("seed {seed} cap {cap} max_flows {max_flows}");
        let metas: Vec<_> = handed
            .iter()
            .flat_map(|b| b.metas.iter().copied())
            .collect();
        assert_eq!(metas, cpu.metas, "{name}: the CPU shard's flows, in order");
        let log = log.lock().unwrap();
        assert_eq!(log.flows as usize, cpu.len(), "{name}");
        let mut at = 0;
        let mut generation = 0;
        let mut calls = 0;
        for b in &handed {
            let s = b
                .scored
                .unwrap_or_else(|| panic!("{name}: an unscored batch"));
            assert!(b.rows.is_empty(), "{name}: rows stay on the device");
            assert!(b.len() <= max_flows, "{name}");
            assert!(s.generation >= generation, "{name}: generations go forward");
            generation = s.generation;
            calls += s.calls as u64;
            let want: Vec<u32> = (0..b.len())
                .filter(|&i| flags(s.generation, cpu.row(at + i).unwrap()))
                .map(|i| i as u32)
                .collect();
            let got: Vec<u32> = b.flagged.iter().map(|f| f.row).collect();
            assert_eq!(
                got, want,
                "{name}: flagged flows of a generation-{} batch",
                s.generation
            );
            assert!(b.flagged.iter().all(|f| f.class == 7 && f.score == 0.5));
            at += b.len();
        }
        // Batches without flows are not handed off, but were scored.
        assert!(calls <= log.batches, "{name}");
        assert!(calls > 0, "{name}");
        // prepare ran once at the start and once per switch, each time with
        // nothing in flight.
        assert!(
            log.prepared.iter().all(|&(_, in_flight)| in_flight == 0),
            "{name}: {:?}",
            log.prepared
        );
        let gens: Vec<u64> = log.prepared.iter().map(|&(g, _)| g).collect();
        assert_eq!(gens, (0..gens.len() as u64).collect::<Vec<_>>(), "{name}");
        assert_eq!(generation, gens.len() as u64 - 1, "{name}");
        switches_seen += gens.len() - 1;
    }
    assert!(
        switches_seen >= 3,
        "the test switched models {switches_seen} times"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
