//! The limiter: window boundaries, keys, classes, bounds and de-duplication,
//! and property tests against an unbounded reference.

use std::collections::HashMap;
use std::time::Duration;

use proptest::prelude::*;
use tapstream_ingest::{EndReason, FlowMeta};

use super::*;
use crate::eve::ModelInfo;

const S: i64 = 1_000_000;

/// A flow from 10.0.0.`src` to 10.0.1.`dst` ending at `t_us`.
fn flow(id: u64, src: u8, dst: u8, t_us: i64) -> FlowMeta {
    let mut s = [0u8; 16];
    s[..4].copy_from_slice(&[10, 0, 0, src]);
    let mut d = [0u8; 16];
    d[..4].copy_from_slice(&[10, 0, 1, dst]);
    FlowMeta {
        flow_id: id,
        src: s,
        dst: d,
        sport: 40_000,
        dport: 80,
        proto: 6,
        v6: false,
        icmp_type: 0,
        icmp_code: 0,
        start_us: t_us - 1_000,
        last_us: t_us,
        pkts_fwd: 1,
        pkts_bwd: 1,
        bytes_fwd: 60,
        bytes_bwd: 60,
        reason: EndReason::TcpTermination,
    }
}

fn verdict(l: &mut AlertLimiter, f: &FlowMeta, class: u16) -> Verdict {
    let model = ModelInfo::new("m", "1", "00");
    l.check(&Alert {
        flow: f,
        score: 0.99,
        class: "c",
        class_index: class,
        model: &model,
        threshold: 0.5,
        episode: None,
        explanation: None,
    })
}

fn passes(l: &mut AlertLimiter, f: &FlowMeta, class: u16) -> bool {
    verdict(l, f, class) == Verdict::Pass
}

fn rate(track: Track, count: u32, window: Duration, max_keys: usize) -> AlertLimiter {
    AlertLimiter::new(&LimitSettings {
        dedup_capacity: None,
        rate: Some(RateLimit {
            track,
            count,
            window,
            max_keys,
        }),
    })
}

#[test]
fn window_boundaries() {
    let mut l = rate(Track::BySrc, 2, Duration::from_secs(10), 16);
    let t0 = 1_700_000_000 * S;
    let mut id = 0;
    let mut at = |l: &mut AlertLimiter, t: i64| {
        id += 1;
        verdict(l, &flow(id, 1, 1, t), 0)
    };
    assert_eq!(at(&mut l, t0), Verdict::Pass);
    assert_eq!(at(&mut l, t0 + S), Verdict::Pass);
    let limited = Verdict::Suppress(SuppressReason::RateLimit);
    assert_eq!(at(&mut l, t0 + 2 * S), limited);
    // The last microsecond of the window still belongs to it.
    assert_eq!(at(&mut l, t0 + 10 * S - 1), limited);
    // An older flow (ended before the window began) counts toward it.
    assert_eq!(at(&mut l, t0 - 5 * S), limited);
    // The window ends 10 s after its first alert: a new one starts.
    assert_eq!(at(&mut l, t0 + 10 * S), Verdict::Pass);
    assert_eq!(at(&mut l, t0 + 11 * S), Verdict::Pass);
    assert_eq!(at(&mut l, t0 + 19 * S), limited);
    // The next window starts at the first alert after the end, not on a
    // fixed grid.
    assert_eq!(at(&mut l, t0 + 25 * S), Verdict::Pass);
    assert_eq!(at(&mut l, t0 + 34 * S), Verdict::Pass);
    assert_eq!(at(&mut l, t0 + 34 * S + S / 2), limited);
}

#[test]
fn keys_are_independent_per_track_and_class() {
    let t = 5 * S;
    // by_src: sources count apart; destinations do not matter.
    let mut l = rate(Track::BySrc, 1, Duration::from_secs(60), 16);
    assert!(passes(&mut l, &flow(1, 1, 1, t), 0));
    assert!(!passes(&mut l, &flow(2, 1, 2, t), 0));
    assert!(passes(&mut l, &flow(3, 2, 1, t), 0));
    // Per class: the same source alerts once more for another class.
    assert!(passes(&mut l, &flow(4, 1, 1, t), 7));
    assert!(!passes(&mut l, &flow(5, 1, 3, t), 7));

    let mut l = rate(Track::ByDst, 1, Duration::from_secs(60), 16);
    assert!(passes(&mut l, &flow(1, 1, 1, t), 0));
    assert!(!passes(&mut l, &flow(2, 2, 1, t), 0));
    assert!(passes(&mut l, &flow(3, 1, 2, t), 0));

    let mut l = rate(Track::ByPair, 1, Duration::from_secs(60), 16);
    assert!(passes(&mut l, &flow(1, 1, 1, t), 0));
    assert!(!passes(&mut l, &flow(2, 1, 1, t), 0));
    assert!(passes(&mut l, &flow(3, 1, 2, t), 0));
    assert!(passes(&mut l, &flow(4, 2, 1, t), 0));
    // The pair is ordered: 10.0.0.1 → 10.0.1.1 is not the reverse.
    let mut rev = flow(5, 1, 1, t);
    std::mem::swap(&mut rev.src, &mut rev.dst);
    assert!(passes(&mut l, &rev, 0));
}

#[test]
fn ipv4_and_ipv6_with_the_same_bytes_are_different_keys() {
    let mut l = rate(Track::BySrc, 1, Duration::from_secs(60), 16);
    let v4 = flow(1, 1, 1, S);
    let mut v6 = flow(2, 1, 1, S);
    v6.v6 = true;
    assert!(passes(&mut l, &v4, 0));
    assert!(passes(&mut l, &v6, 0));
}

#[test]
fn a_full_table_forgets_its_oldest_key() {
    let mut l = rate(Track::BySrc, 1, Duration::from_secs(3600), 2);
    for src in 1..=3u8 {
        assert!(passes(&mut l, &flow(src.into(), src, 1, S), 0));
        assert!(l.rate_keys() <= 2);
    }
    // Source 1 was forgotten and starts afresh; 3 is still limited.
    assert!(!passes(&mut l, &flow(10, 3, 1, S), 0));
    assert!(passes(&mut l, &flow(11, 1, 1, S), 0));
    assert_eq!(l.rate_keys(), 2);
}

#[test]
fn duplicates_are_dropped_before_the_rate_limit() {
    let mut l = AlertLimiter::new(&LimitSettings {
        dedup_capacity: Some(2),
        rate: Some(RateLimit {
            track: Track::BySrc,
            count: 2,
            window: Duration::from_secs(60),
            max_keys: 16,
        }),
    });
    let dup = Verdict::Suppress(SuppressReason::DuplicateFlow);
    assert_eq!(verdict(&mut l, &flow(1, 1, 1, S), 0), Verdict::Pass);
    // A duplicate does not use up the source's second alert.
    assert_eq!(verdict(&mut l, &flow(1, 1, 1, S), 0), dup);
    assert_eq!(verdict(&mut l, &flow(2, 1, 1, S), 0), Verdict::Pass);
    assert_eq!(
        verdict(&mut l, &flow(3, 1, 1, S), 0),
        Verdict::Suppress(SuppressReason::RateLimit)
    );
    // Id 3 was remembered although rate limited: its repeat is a duplicate.
    assert_eq!(verdict(&mut l, &flow(3, 1, 1, S), 0), dup);
    // Capacity 2: ids 1 and 2 are forgotten by now.
    assert_eq!(l.seen.as_ref().map(|s| s.len()), Some(2));
    assert_eq!(
        verdict(&mut l, &flow(1, 1, 1, S), 0),
        Verdict::Suppress(SuppressReason::RateLimit)
    );
}

#[test]
fn dedup_alone_and_the_default() {
    let mut l = AlertLimiter::new(&LimitSettings {
        dedup_capacity: Some(8),
        rate: None,
    });
    assert!(l.is_active());
    assert!(passes(&mut l, &flow(1, 1, 1, S), 0));
    assert!(!passes(&mut l, &flow(1, 1, 1, S), 0));
    assert!(passes(&mut l, &flow(2, 1, 1, S), 0));
    let off = AlertLimiter::new(&LimitSettings::default());
    assert!(!off.is_active());
    assert!(!AlertLimiter::default().is_active());
}

#[test]
fn suppressed_counts_add_up() {
    let mut c = SuppressedCounts::default();
    c.add(SuppressReason::RateLimit);
    c.add(SuppressReason::RateLimit);
    c.add(SuppressReason::DuplicateFlow);
    assert_eq!(c.get(SuppressReason::RateLimit), 2);
    assert_eq!(c.get(SuppressReason::DuplicateFlow), 1);
    assert_eq!(c.total(), 3);
    let names: Vec<_> = SuppressReason::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(names, ["duplicate_flow", "rate_limit"]);
}

/// One generated alert: flow id, source, destination, class, time (s).
type Event = (u64, u8, u8, u16, i64);

fn events() -> impl Strategy<Value = Vec<Event>> {
    prop::collection::vec((0u64..40, 0u8..4, 0u8..4, 0u16..3, 0i64..300), 0..300)
}

fn track() -> impl Strategy<Value = Track> {
    prop_oneof![Just(Track::BySrc), Just(Track::ByDst), Just(Track::ByPair)]
}

/// The key of the unbounded reference: tracked addresses and class.
fn ref_key(track: Track, e: &Event) -> (u8, u8, u16) {
    match track {
        Track::BySrc => (e.1, 0, e.3),
        Track::ByDst => (0, e.2, e.3),
        Track::ByPair => (e.1, e.2, e.3),
    }
}

proptest! {
    #[test]
    fn off_suppresses_nothing(evs in events()) {
        let mut l = AlertLimiter::new(&LimitSettings::default());
        for e in &evs {
            prop_assert!(passes(&mut l, &flow(e.0, e.1, e.2, e.4 * S), e.3));
        }
    }

    /// With room for every key, the limiter decides exactly as a plain
    /// map of windows does.
    #[test]
    fn matches_an_unbounded_reference(
        evs in events(),
        track in track(),
        count in 1u32..5,
        window_s in 1i64..100,
    ) {
        let mut l = rate(track, count, Duration::from_secs(window_s as u64), 1 << 10);
        let mut windows: HashMap<(u8, u8, u16), (i64, u32)> = HashMap::new();
        for e in &evs {
            let t = e.4 * S;
            let expected = match windows.get_mut(&ref_key(track, e)) {
                Some(w) if t - w.0 >= window_s * S => { *w = (t, 1); true }
                Some(w) if w.1 < count => { w.1 += 1; true }
                Some(_) => false,
                None => { windows.insert(ref_key(track, e), (t, 1)); true }
            };
            prop_assert_eq!(passes(&mut l, &flow(e.0, e.1, e.2, t), e.3), expected);
        }
    }

    /// In time order, no key and class gets more than `count` alerts in a
    /// window (a window: from an alert that opened one to `window` later).
    #[test]
    fn never_more_than_count_per_key_per_window(
        mut evs in events(),
        track in track(),
        count in 1u32..5,
        window_s in 1i64..100,
    ) {
        evs.sort_by_key(|e| e.4);
        let mut l = rate(track, count, Duration::from_secs(window_s as u64), 1 << 10);
        let mut passed: HashMap<(u8, u8, u16), Vec<i64>> = HashMap::new();
        for e in &evs {
            if passes(&mut l, &flow(e.0, e.1, e.2, e.4 * S), e.3) {
                passed.entry(ref_key(track, e)).or_default().push(e.4);
            }
        }
        for times in passed.values() {
            let mut start = 0;
            while start < times.len() {
                let end = times[start] + window_s;
                let n = times[start..].iter().take_while(|&&t| t < end).count();
                prop_assert!(n as u32 <= count, "{n} in one window of {times:?}");
                start += n;
            }
        }
    }

    /// Small tables never exceed their bounds, and a duplicate flow id is
    /// suppressed whenever the table still holds it.
    #[test]
    fn bounded_tables(
        evs in events(),
        track in track(),
        max_keys in 1usize..6,
        capacity in 1usize..6,
    ) {
        let mut l = AlertLimiter::new(&LimitSettings {
            dedup_capacity: Some(capacity),
            rate: Some(RateLimit {
                track,
                count: 1,
                window: Duration::from_secs(30),
                max_keys,
            }),
        });
        let mut recent: std::collections::VecDeque<u64> = Default::default();
        for e in &evs {
            let v = verdict(&mut l, &flow(e.0, e.1, e.2, e.4 * S), e.3);
            let dup = recent.contains(&e.0);
            prop_assert_eq!(v == Verdict::Suppress(SuppressReason::DuplicateFlow), dup);
            if !dup {
                if recent.len() == capacity {
                    recent.pop_front();
                }
                recent.push_back(e.0);
            }
            prop_assert!(l.rate_keys() <= max_keys);
            prop_assert!(l.seen.as_ref().map_or(0, |s| s.len()) <= capacity);
        }
    }
}
