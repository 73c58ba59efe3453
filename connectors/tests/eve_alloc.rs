//! Formatting an alert allocates nothing once the output buffer has room.
//!
//! Its own test binary because it installs a counting global allocator;
//! only allocations made on the test's own thread while counting is on are
//! counted, so the harness's threads do not disturb it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use tapstream_connectors::eve::{Alert, EveWriter, ModelInfo};
use tapstream_ingest::{EndReason, FlowMeta};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: forwards every call to the system allocator unchanged; the
// counter is a side effect only.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn formatting_allocates_nothing() {
    let model = ModelInfo::new("cic-ids2017-mlp", "1.0.0", "ab".repeat(32));
    let mut flows = Vec::new();
    for (i, proto) in [6u8, 17, 1, 58, 132, 47, 200].into_iter().enumerate() {
        let mut src = [0u8; 16];
        src[0] = 10;
        src[15] = i as u8;
        flows.push(FlowMeta {
            flow_id: 1 << 50 | i as u64,
            src,
            dst: [0x20; 16],
            sport: 40_000,
            dport: 443,
            proto,
            v6: i % 2 == 1,
            icmp_type: 3,
            icmp_code: 1,
            start_us: 1_700_000_000_000_000,
            last_us: 1_700_000_001_234_567,
            pkts_fwd: 10,
            pkts_bwd: 9,
            bytes_fwd: 1_000,
            bytes_bwd: 90_000,
            reason: EndReason::ActiveTimeout,
        });
    }
    let writer = EveWriter::new(0);
    let mut out = Vec::with_capacity(1 << 20);

    COUNTING.with(|c| c.set(true));
    for round in 0..100 {
        for flow in &flows {
            let alert = Alert {
                flow,
                score: 0.5 + round as f32 / 1000.0,
                class: "DoS \"Hulk\"",
                class_index: 4,
                model: &model,
                threshold: 0.5,
                episode: None,
                explanation: None,
            };
            writer.write(&alert, &mut out);
        }
    }
    COUNTING.with(|c| c.set(false));

    assert_eq!(ALLOCATIONS.load(Ordering::Relaxed), 0);
    assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 700);

    // The counter does see allocations on this thread.
    COUNTING.with(|c| c.set(true));
    drop(std::hint::black_box(vec![1u8; 10]));
    COUNTING.with(|c| c.set(false));
    assert_eq!(ALLOCATIONS.load(Ordering::Relaxed), 1);
}
