use std::convert::Infallible;

use tapstream_ingest::{EndReason, FlowMeta};

use super::*;
use crate::eve::EveWriter;

const T0: i64 = 1_700_000_000_000_000;
const S: i64 = 1_000_000;

fn v4(a: u32) -> [u8; 16] {
    let mut x = [0u8; 16];
    x[..4].copy_from_slice(&a.to_be_bytes());
    x
}

/// A TCP flow `src → dst:dport` ending at `t` (µs after T0).
pub(crate) fn flow(id: u64, src: u32, dst: u32, dport: u16, t: i64) -> FlowMeta {
    FlowMeta {
        flow_id: id,
        src: v4(src),
        dst: v4(dst),
        sport: 40_000,
        dport,
        proto: 6,
        v6: false,
        icmp_type: 0,
        icmp_code: 0,
        start_us: T0 + t,
        last_us: T0 + t,
        pkts_fwd: 1,
        pkts_bwd: 1,
        bytes_fwd: 60,
        bytes_bwd: 54,
        reason: EndReason::IdleTimeout,
    }
}

/// A record as the tests keep it: state, end reason, and the JSON line.
#[derive(Debug)]
struct Rec {
    state: EpisodeState,
    id: u64,
    flows: u64,
    json: serde_json::Value,
}

struct Run {
    eps: Episodes,
    recs: Vec<Rec>,
    model: ModelInfo,
}

impl Run {
    fn new(settings: EpisodeSettings) -> Self {
        Run {
            eps: Episodes::new(settings),
            recs: Vec::new(),
            model: ModelInfo::new("m", "1", "00"),
        }
    }

    fn add(&mut self, f: &FlowMeta, class: &str) {
        let alert = Alert {
            flow: f,
            score: 0.9,
            class,
            class_index: 2,
            model: &self.model,
            threshold: 0.5,
            episode: None,
            explanation: None,
        };
        assert!(self.eps.add(&alert, &mut keep(&mut self.recs)).is_ok());
    }

    fn advance(&mut self, t: i64) {
        assert!(self.eps.advance(T0 + t, &mut keep(&mut self.recs)).is_ok());
    }

    fn finish(&mut self) {
        assert!(self.eps.finish(&mut keep(&mut self.recs)).is_ok());
    }

    fn states(&self) -> Vec<&'static str> {
        self.recs.iter().map(|r| r.state.as_str()).collect()
    }
}

/// Where a test's records go: kept, as [`Rec`]s.
fn keep(recs: &mut Vec<Rec>) -> impl FnMut(&Alert<'_>) -> Result<(), Infallible> + '_ {
    move |a| {
        recs.push(record(a));
        Ok(())
    }
}

fn record(a: &Alert<'_>) -> Rec {
    let e = a.episode.expect("an episode record");
    let mut line = Vec::new();
    EveWriter::new(0).write(a, &mut line);
    Rec {
        state: e.state,
        id: e.episode.id(),
        flows: e.episode.flows(),
        json: serde_json::from_slice(&line).expect("valid JSON"),
    }
}

#[test]
fn a_spoofed_flood_is_one_episode_against_its_victim() {
    let mut run = Run::new(EpisodeSettings::default());
    for i in 0..20_000u32 {
        let src = 0xC612_0000 + i.wrapping_mul(2_654_435_761) % 65_536; // 198.18.x.y
        run.add(
            &flow(u64::from(i), src, 0xC613_0001, 80, i64::from(i) * 100),
            "syn_flood",
        );
    }
    run.finish();
    assert_eq!(run.states(), ["start", "end"]);
    let end = &run.recs[1].json;
    let ep = &end["tapstream"]["episode"];
    assert_eq!(ep["state"], "end");
    assert_eq!(ep["end_reason"], "end_of_input");
    assert_eq!(ep["flows"], 20_000);
    assert_eq!(ep["pkts"], 40_000);
    assert_eq!(ep["dest_ips"], 1);
    assert_eq!(ep["dest_ports"], 1);
    assert_eq!(ep["victim"], "198.19.0.1");
    assert!(ep["attacker"].is_null());
    assert_eq!(ep["counts_exact"], false);
    let srcs = ep["src_ips"].as_u64().unwrap();
    assert!((17_000..23_000).contains(&srcs), "{srcs} distinct sources");
    assert_eq!(end["event_type"], "alert");
    assert_eq!(end["alert"]["signature"], "TAPSTREAM ML syn_flood (m v1)");
    assert_eq!(end["timestamp"], ep["last_seen"]);
    assert_eq!(run.eps.counts().records(), 2);
}

#[test]
fn a_scan_is_one_episode_of_its_attacker() {
    let mut run = Run::new(EpisodeSettings::default());
    for i in 0..500u32 {
        run.add(
            &flow(
                u64::from(i),
                1,
                1_000 + i % 20,
                (i % 100) as u16,
                i64::from(i) * 1_000,
            ),
            "scan",
        );
    }
    run.finish();
    assert_eq!(run.states(), ["start", "end"]);
    let ep = &run.recs[1].json["tapstream"]["episode"];
    assert_eq!(ep["attacker"], "0.0.0.1");
    assert!(ep["victim"].is_null());
    assert_eq!(ep["dest_ips"], 20, "exact up to 32");
    let ports = ep["dest_ports"].as_u64().unwrap();
    assert!((85..=115).contains(&ports), "{ports} ports, estimated");
    assert_eq!(ep["src_ips"], 1);
}

#[test]
fn classes_and_unrelated_hosts_are_separate_episodes() {
    let mut run = Run::new(EpisodeSettings::default());
    run.add(&flow(1, 1, 2, 22, 0), "brute_force");
    run.add(&flow(2, 1, 2, 22, S), "scan");
    run.add(&flow(3, 3, 4, 22, 2 * S), "brute_force");
    run.add(&flow(4, 1, 2, 22, 3 * S), "brute_force");
    run.finish();
    assert_eq!(
        run.states(),
        ["start", "start", "start", "end", "end", "end"]
    );
    let flows: Vec<(u64, u64)> = run.recs[3..].iter().map(|r| (r.id, r.flows)).collect();
    assert_eq!(flows, [(1, 2), (2, 1), (3, 1)], "ends oldest first");
}

#[test]
fn an_idle_episode_ends_and_the_next_flow_opens_another() {
    let settings = EpisodeSettings {
        idle_timeout: Duration::from_secs(60),
        ..EpisodeSettings::default()
    };
    let mut run = Run::new(settings);
    for i in 0..10 {
        run.add(&flow(i, 1, 2, 22, i as i64 * S), "brute_force");
    }
    run.advance(68 * S);
    assert_eq!(run.states(), ["start"], "quiet for 59 s only");
    run.advance(70 * S);
    assert_eq!(run.states(), ["start", "end"]);
    assert_eq!(
        run.recs[1].json["tapstream"]["episode"]["end_reason"],
        "idle"
    );
    assert_eq!(run.recs[1].flows, 10);
    run.add(&flow(99, 1, 2, 22, 71 * S), "brute_force");
    assert_eq!(run.states(), ["start", "end", "start"]);
    assert_eq!(run.eps.open(), 1);
}

#[test]
fn a_long_episode_is_updated_only_when_it_grew() {
    let settings = EpisodeSettings {
        update_interval: Duration::from_secs(300),
        ..EpisodeSettings::default()
    };
    let mut run = Run::new(settings);
    for s in 0..700 {
        run.add(&flow(s, 1, 2, 80, s as i64 * S), "http_flood");
        run.advance(s as i64 * S);
    }
    // Quiet after 700 s: no update without new flows, then the idle end.
    run.advance(1_000 * S);
    assert_eq!(run.states(), ["start", "update", "update", "end"]);
    let flows: Vec<u64> = run.recs.iter().map(|r| r.flows).collect();
    assert_eq!(flows, [1, 301, 601, 700]);
}

#[test]
fn open_episodes_are_bounded_and_every_one_ends_once() {
    let settings = EpisodeSettings {
        max_open: 16,
        ..EpisodeSettings::default()
    };
    let mut run = Run::new(settings);
    for i in 0..100u32 {
        run.add(
            &flow(u64::from(i), 10 + i, 1_000 + i, 22, i64::from(i) * S),
            "brute_force",
        );
        assert!(run.eps.open() <= 16);
    }
    run.finish();
    let c = run.eps.counts();
    assert_eq!(c.opened, 100);
    assert_eq!(c.evicted + c.closed, 100);
    assert!(c.evicted >= 84, "{c:?}");
    let mut ends: Vec<u64> = run
        .recs
        .iter()
        .filter(|r| r.state != EpisodeState::Start)
        .map(|r| r.id)
        .collect();
    ends.sort_unstable();
    assert_eq!(ends, (0..100).collect::<Vec<u64>>());
}

#[test]
fn totals_do_not_depend_on_arrival_order() {
    let flows: Vec<FlowMeta> = (0..3_000u32)
        .map(|i| {
            flow(
                u64::from(i),
                7 + i % 40,
                99,
                (i % 5) as u16,
                i64::from(i) * 10_000,
            )
        })
        .collect();
    let ends = |order: &mut dyn Iterator<Item = &FlowMeta>| {
        let mut run = Run::new(EpisodeSettings::default());
        for f in order {
            run.add(f, "dns_flood");
        }
        run.finish();
        let ep = run.recs.last().unwrap().json["tapstream"]["episode"].clone();
        (
            run.eps.counts().opened,
            ep["flows"].clone(),
            ep["src_ips"].clone(),
            ep["first_seen"].clone(),
            ep["last_seen"].clone(),
        )
    };
    assert_eq!(ends(&mut flows.iter()), ends(&mut flows.iter().rev()));
}

#[test]
fn an_episode_keeps_its_strongest_flows_pending_residuals() {
    let mut run = Run::new(EpisodeSettings::default());
    let model = run.model.clone();
    fn scan<'a>(f: &'a FlowMeta, e: Option<&'a Explanation>, m: &'a ModelInfo) -> Alert<'a> {
        Alert {
            flow: f,
            score: 0.9,
            class: "scan",
            class_index: 2,
            model: m,
            threshold: 0.5,
            episode: None,
            explanation: e,
        }
    }
    // A context explanation of strength 4.5 ((8 + 1) / (1 + 1)).
    let mut row = [0f32; tapstream_kernels::context::NUM_CONTEXT];
    row[0] = 8.0;
    let baseline = vec![Some((0.0, 1.0)); row.len()];
    let context = Explanation::of(&row, &baseline).expect("above its p99");
    assert_eq!(context.strength(), 4.5);
    let (a, b) = (0x0a00_0001, 0x0a00_0002);
    let mut pending_seen = Vec::new();
    let mut out = |r: &Alert<'_>| -> Result<(), Infallible> {
        let e = r.episode.expect("an episode record");
        pending_seen.push(e.episode.pending().map(<[f32]>::to_vec));
        Ok(())
    };
    let steps: [(f32, Option<&Explanation>); 5] = [
        (4.0, None),
        (3.0, None),           // weaker: not kept
        (5.0, None),           // kept
        (0.0, Some(&context)), // 4.5 without residuals: weaker than 5
        (5.0, None),           // as strong: the first one stays
    ];
    for (i, (strength, e)) in steps.into_iter().enumerate() {
        let f = flow(i as u64 + 1, a, b, 22 + i as u16, i as i64 * S);
        let input = [i as f32];
        let pending = (e.is_none()).then_some(Pending {
            strength,
            input: &input,
        });
        assert!(run
            .eps
            .add_pending(&scan(&f, e, &model), pending, &mut out)
            .is_ok());
    }
    assert!(run.eps.finish(&mut out).is_ok());
    // The start record shows the first flow's; the end record the
    // strongest one's.
    assert_eq!(pending_seen.first(), Some(&Some(vec![0.0])));
    assert_eq!(pending_seen.last(), Some(&Some(vec![2.0])));

    // A stronger explanation without residuals replaces pending ones.
    let mut run = Run::new(EpisodeSettings::default());
    let mut seen = Vec::new();
    let mut out = |r: &Alert<'_>| -> Result<(), Infallible> {
        let e = r.episode.expect("an episode record");
        seen.push((
            e.episode.pending().is_some(),
            e.episode.explanation().is_some(),
        ));
        Ok(())
    };
    let (f1, f2) = (flow(1, a, b, 22, 0), flow(2, a, b, 23, S));
    let p = Pending {
        strength: 2.0,
        input: &[1.0],
    };
    assert!(run
        .eps
        .add_pending(&scan(&f1, None, &model), Some(p), &mut out)
        .is_ok());
    assert!(run
        .eps
        .add_pending(&scan(&f2, Some(&context), &model), None, &mut out)
        .is_ok());
    assert!(run.eps.finish(&mut out).is_ok());
    assert_eq!(seen, [(true, false), (false, true)]);
}
