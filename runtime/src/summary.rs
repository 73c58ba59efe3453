//! The end-of-run summary printed to stderr: what came in, what was skipped
//! and why, how many flows and alerts came out, and how fast each stage ran.
//!
//! Every packet is accounted for: the summary states whether packets in flows
//! plus every skip counter equals the packets read, and says so loudly if not.

use std::fmt::Write as _;
use std::time::Duration;

use tapstream_connectors::limit::SuppressReason;
use tapstream_ingest::decode::linktype;
use tapstream_ingest::source::LinkTypes;
use tapstream_ingest::{EndReason, SkipReason};

use crate::report::RunReport;

fn rate(n: u64, d: Duration) -> String {
    let s = d.as_secs_f64();
    if s <= 0.0 {
        return "-".to_string();
    }
    human(n as f64 / s)
}

/// 1234567.0 → "1.23 M".
pub fn human(x: f64) -> String {
    if x >= 1e9 {
        format!("{:.2} G", x / 1e9)
    } else if x >= 1e6 {
        format!("{:.2} M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1} k", x / 1e3)
    } else {
        format!("{x:.0} ")
    }
}

/// Renders the summary as text.
pub fn render(r: &RunReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "tapstream summary for {}", r.input.display());
    render_input(&mut s, r);
    render_flows(&mut s, r);
    render_output(&mut s, r);
    render_rates(&mut s, r);
    s
}

/// Packets read, skipped and accounted for; capture and Kafka counters.
fn render_input(s: &mut String, r: &RunReport) {
    let rd = &r.reader;
    let w = &r.workers;
    let _ = writeln!(
        s,
        "  packets read       {:>12}  ({} bytes on the wire)",
        rd.packets, rd.bytes
    );
    if rd.link_types.iter().any(|(lt, _)| lt != linktype::ETHERNET) || rd.link_types.other() > 0 {
        let _ = writeln!(s, "  link types         {}", link_types(&rd.link_types));
    }
    let _ = writeln!(s, "  packets in flows   {:>12}", w.stats.packets);
    for (reason, n) in rd.skipped.iter() {
        if n > 0 {
            let _ = writeln!(s, "  skipped {:<18} {:>8}", reason.as_str(), n);
        }
    }
    let d = &w.defrag;
    if d.fragments > 0 {
        let _ = writeln!(
            s,
            "  IP fragments       {:>12}  ({} reassembled into {} datagrams; dropped: {} timed out, {} over the memcap, {} invalid; {} overlapping)",
            d.fragments, d.reassembled, d.datagrams, d.timeouts, d.memcap, d.invalid, d.overlaps
        );
    }
    if r.all_accounted() {
        let _ = writeln!(s, "  accounting         every packet accounted for");
    } else {
        let _ = writeln!(
            s,
            "  accounting         MISMATCH: {} in flows + {} skipped vs {} read ({} decoded)",
            w.stats.packets,
            rd.skipped.total(),
            rd.packets,
            rd.decoded
        );
    }
    if let Some(e) = &rd.read_error {
        let _ = writeln!(s, "  read stopped early: {e}");
    }
    if let Some(c) = &rd.capture {
        let _ = writeln!(
            s,
            "  capture drops      {:>12}  (kernel {}, interface {}, pipeline full {}; {} thread(s) on {}, kernel received {})",
            c.kernel_dropped + c.interface_dropped + c.queue_dropped,
            c.kernel_dropped,
            c.interface_dropped,
            c.queue_dropped,
            c.threads,
            c.interface,
            c.kernel_received
        );
    }
    if let Some(k) = &rd.kafka {
        let _ = writeln!(
            s,
            "  kafka messages     {:>12}  ({} bytes; {} malformed)",
            k.messages, k.bytes, k.malformed
        );
        let _ = writeln!(
            s,
            "  kafka commits      {:>12}  ({} failed; {} revocations; {} flushes not settled in time; lag {})",
            k.commits,
            k.commit_errors,
            k.revocations,
            k.unsettled_flushes,
            if k.lag < 0 { "unknown".to_string() } else { k.lag.to_string() }
        );
    }
}

/// Flows and their end reasons, evictions and emergencies.
fn render_flows(s: &mut String, r: &RunReport) {
    let w = &r.workers;
    let _ = writeln!(
        s,
        "  flows              {:>12}  (features on {})",
        r.flows(),
        w.device
    );
    for reason in EndReason::ALL {
        let n = w.stats.ended_for(reason);
        if n > 0 {
            let _ = writeln!(s, "    ended {:<16} {:>10}", reason.as_str(), n);
        }
    }
    if w.stats.evictions > 0 {
        let _ = writeln!(s, "  flow table evictions {:>10}", w.stats.evictions);
    }
    if w.stats.emergency_entries > 0 {
        let _ = writeln!(
            s,
            "  flow table emergencies {:>8}  (entered by full tables, {} left)",
            w.stats.emergency_entries, w.stats.emergency_exits
        );
    }
    if let Some(c) = &r.context {
        let t = &c.table;
        let _ = writeln!(
            s,
            "  context            {:>12}  flow starts, {} outcomes, {} entries ({} expired, {} evicted, {} emergencies)",
            t.starts, t.outcomes, t.entries, t.expired, t.evictions, t.emergency_entries
        );
    }
}

/// Adds `defrag`, `alert_lines`, `detectors` and `episodes` to the summary JSON `v`
/// (beside the rest: one `json!` this long would pass the macro's recursion
/// limit).
fn add_defrag_and_episodes(v: &mut serde_json::Value, r: &RunReport) {
    if let Some(map) = v.as_object_mut() {
        map.insert("defrag".into(), defrag_json(&r.workers.defrag));
        map.insert("alert_lines".into(), r.consumer.alert_lines.into());
        let detectors: Vec<serde_json::Value> = r
            .consumer
            .detectors
            .iter()
            .map(|d| {
                let learn = d.learn.as_ref().map_or(serde_json::Value::Null, |l| {
                    serde_json::json!({
                        "learned": l.learned, "kept": l.kept, "skipped": l.skipped,
                        "failed": l.failed,
                    })
                });
                serde_json::json!({
                    "name": d.name, "scored": d.scored, "flagged": d.flagged, "swaps": d.swaps,
                    "inference_seconds": d.inference_busy.as_secs_f64(), "learn": learn,
                })
            })
            .collect();
        map.insert("detectors".into(), detectors.into());
        map.insert(
            "episodes".into(),
            r.consumer
                .episodes
                .map_or(serde_json::Value::Null, episodes_json),
        );
    }
}

/// What reassembly did with the fragments, in `--summary-json`.
fn defrag_json(d: &tapstream_ingest::defrag::DefragStats) -> serde_json::Value {
    serde_json::json!({
        "fragments": d.fragments,
        "datagrams": d.datagrams,
        "reassembled": d.reassembled,
        "timeouts": d.timeouts,
        "memcap": d.memcap,
        "invalid": d.invalid,
        "overlaps": d.overlaps,
    })
}

/// The episode counts in `--summary-json`.
fn episodes_json(e: tapstream_connectors::episode::EpisodeCounts) -> serde_json::Value {
    serde_json::json!({
        "started": e.opened,
        "updates": e.updates,
        "ended": e.closed,
        "evicted": e.evicted,
    })
}

/// Scoring, alerts and CSV rows.
fn render_output(s: &mut String, r: &RunReport) {
    let c = &r.consumer;
    if c.scored > 0 || !c.labels.is_empty() {
        let _ = writeln!(
            s,
            "  flows scored       {:>12}  ({} inference calls{})",
            c.scored,
            c.inference_calls,
            match c.scored_in_workers {
                0 => String::new(),
                n if n == c.scored => " in the flow workers".to_string(),
                n => format!("; {n} rows in the flow workers"),
            }
        );
        let _ = writeln!(s, "  alerts             {:>12}", c.alerts());
        if let Some(e) = &c.episodes {
            let _ = writeln!(
                s,
                "  alert lines        {:>12}  (episodes: {} started, {} updates, {} ended, {} evicted)",
                c.alert_lines, e.opened, e.updates, e.closed, e.evicted
            );
        }
        if c.model_swaps > 0 {
            let _ = writeln!(s, "  model reloads      {:>12}", c.model_swaps);
        }
        if c.detectors.len() > 1 {
            let _ = writeln!(s, "  detectors          {:>12}", c.detectors.len());
            for d in &c.detectors {
                let _ = writeln!(
                    s,
                    "    {:<26} {:>8} flagged of {} scored ({:.3} s inference){}",
                    d.name,
                    d.flagged,
                    d.scored,
                    d.inference_busy.as_secs_f64(),
                    match d.swaps {
                        0 => String::new(),
                        n => format!(", {n} reloads"),
                    }
                );
                if let Some(l) = &d.learn {
                    let _ = writeln!(
                        s,
                        "    {:<26} learned from {} flows ({} kept), {} skipped (started within \
                         a flow timeout of the learning period's end){}",
                        "",
                        l.learned,
                        l.kept,
                        l.skipped,
                        l.failed
                            .as_ref()
                            .map_or(String::new(), |e| format!("; fit failed: {e}")),
                    );
                }
            }
        }
        for (label, n) in c.labels.iter().zip(&c.alerts_by_class) {
            if *n > 0 {
                let _ = writeln!(s, "    {label:<26} {n:>8}");
            }
        }
        if c.suppressed.total() > 0 {
            let _ = writeln!(
                s,
                "  alerts suppressed  {:>12}  ({} duplicate flow, {} rate limit)",
                c.suppressed.total(),
                c.suppressed.duplicate_flow,
                c.suppressed.rate_limit
            );
        }
    }
    if c.csv_rows > 0 {
        let _ = writeln!(s, "  CSV rows written   {:>12}", c.csv_rows);
    }
    if c.eve_reopens + c.eve_reopen_errors > 0 {
        let _ = writeln!(
            s,
            "  EVE file re-opened {:>12}  ({} failed)",
            c.eve_reopens, c.eve_reopen_errors
        );
    }
    if let Some(e) = &c.sink_error {
        let _ = writeln!(s, "  alert output stopped: {e}");
    }
}

/// Each stage's rate over its busy time, and the end-to-end rates.
fn render_rates(s: &mut String, r: &RunReport) {
    let (rd, w, c) = (&r.reader, &r.workers, &r.consumer);
    let _ = writeln!(s, "  stage rates (busy time, excluding waits on queues):");
    let _ = writeln!(
        s,
        "    read             {:>10}pkt/s  ({:.3} s)",
        rate(rd.packets, rd.busy),
        rd.busy.as_secs_f64()
    );
    let _ = writeln!(
        s,
        "    decode           {:>10}pkt/s  ({:.3} s over {} decoder{})",
        rate(rd.packets, rd.decode_busy),
        rd.decode_busy.as_secs_f64(),
        rd.decoders,
        if rd.decoders == 1 { "" } else { "s" }
    );
    let _ = writeln!(
        s,
        "    flows+features   {:>10}pkt/s  ({:.3} s over {} worker{})",
        rate(w.stats.packets, w.busy),
        w.busy.as_secs_f64(),
        w.workers,
        if w.workers == 1 { "" } else { "s" }
    );
    if c.inference_calls > 0 {
        let _ = writeln!(
            s,
            "    inference        {:>10}rows/s ({:.3} s{})",
            rate(c.scored, c.inference_busy),
            c.inference_busy.as_secs_f64(),
            if c.scored_in_workers > 0 {
                ", part of the flow workers' time"
            } else {
                ""
            }
        );
        let _ = writeln!(
            s,
            "    alert output     {:>10}alerts/s ({:.3} s)",
            rate(c.alerts(), c.sink_busy),
            c.sink_busy.as_secs_f64()
        );
    }
    if c.csv_rows > 0 {
        let _ = writeln!(
            s,
            "    CSV output       {:>10}rows/s ({:.3} s)",
            rate(c.csv_rows, c.busy),
            c.busy.as_secs_f64()
        );
    }
    let _ = writeln!(
        s,
        "  end to end         {:>10}pkt/s, {}flows/s  ({:.3} s wall, {:.3} s of it start-up)",
        rate(rd.packets, r.wall),
        rate(r.flows(), r.wall),
        r.wall.as_secs_f64(),
        r.setup.as_secs_f64()
    );
}

/// The context stage's counters in the JSON summary.
fn context_json(c: &crate::stage::context::ContextReport) -> serde_json::Value {
    serde_json::json!({
        "starts": c.table.starts,
        "outcomes": c.table.outcomes,
        "entries": c.table.entries,
        "expired": c.table.expired,
        "evictions": c.table.evictions,
        "refused": c.table.refused,
        "emergency_entries": c.table.emergency_entries,
        "emergency_active": c.table.emergency,
        "missing": c.missing,
        "busy_seconds": c.busy.as_secs_f64(),
    })
}

/// `NAME (number) packets, …` for the summary and messages.
fn link_types(l: &LinkTypes) -> String {
    let mut parts: Vec<String> = l
        .iter()
        .map(|(lt, n)| format!("{} {n}", linktype::describe(lt)))
        .collect();
    if l.other() > 0 {
        parts.push(format!("others {}", l.other()));
    }
    parts.join(", ")
}

/// What to tell the user when a capture file gave nothing to analyse: no
/// packet at all, or none that could become part of a flow. `None` when some
/// packet could be used, and for live and Kafka input (an idle interface or
/// topic is not a fault). The [`Unusable`] says whether the link type is to
/// blame (an error: nothing of this capture can ever be analysed) or the
/// packets (a warning).
pub fn unusable(r: &RunReport) -> Option<Unusable> {
    let rd = &r.reader;
    if rd.capture.is_some() || rd.kafka.is_some() || rd.decoded > 0 || rd.read_error.is_some() {
        return None;
    }
    let input = r.input.display();
    if rd.packets == 0 {
        return Some(Unusable {
            link_type: false,
            message: format!("{input} holds no packets"),
        });
    }
    let mut why: Vec<String> = rd
        .skipped
        .iter()
        .filter(|&(_, n)| n > 0)
        .map(|(reason, n)| format!("{n} {}", reason.as_str()))
        .collect();
    // Fragments the defragmenter dropped are no skip reason of the reader.
    let d = &r.workers.defrag;
    for (n, what) in [
        (d.invalid, "invalid IP fragments"),
        (d.timeouts, "IP fragments never completed"),
        (d.memcap, "IP fragments over the memcap"),
    ] {
        if n > 0 {
            why.push(format!("{n} {what}"));
        }
    }
    let link_type = rd.skipped.get(SkipReason::UnsupportedLinkType) == rd.packets;
    let hint = if link_type {
        let mut known: Vec<&str> = Vec::new();
        for name in linktype::ALL.iter().filter_map(|&lt| linktype::name(lt)) {
            if !known.contains(&name) {
                known.push(name);
            }
        }
        format!(
            "; tapstream decodes none of them (it decodes {})",
            known.join(", ")
        )
    } else {
        String::new()
    };
    Some(Unusable {
        link_type,
        message: format!(
            "{} (link type {}; skipped: {}){hint}",
            if rd.packets == 1 {
                format!("the one packet in {input} could not be used")
            } else {
                format!(
                    "none of the {} packets in {input} could be used",
                    rd.packets
                )
            },
            link_types(&rd.link_types),
            why.join(", ")
        ),
    })
}

/// A capture file that gave nothing to analyse ([`unusable`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unusable {
    /// Every packet was of a link type tapstream does not decode.
    pub link_type: bool,
    /// What happened, naming the input and its link types.
    pub message: String,
}

/// Packets per link type, as `--summary-json` lists them.
fn link_types_json(l: &LinkTypes) -> serde_json::Value {
    l.iter()
        .map(|(lt, n)| {
            serde_json::json!({
                "link_type": lt,
                "name": linktype::name(lt),
                "packets": n,
            })
        })
        .collect()
}

/// The summary as JSON (for `--summary-json` and scripts).
pub fn to_json(r: &RunReport) -> serde_json::Value {
    let skipped: serde_json::Map<String, serde_json::Value> = r
        .reader
        .skipped
        .iter()
        .map(|(reason, n)| (reason.as_str().to_string(), n.into()))
        .collect();
    let ended: serde_json::Map<String, serde_json::Value> = EndReason::ALL
        .iter()
        .map(|reason| {
            (
                reason.as_str().to_string(),
                r.workers.stats.ended_for(*reason).into(),
            )
        })
        .collect();
    let alerts: serde_json::Map<String, serde_json::Value> = r
        .consumer
        .labels
        .iter()
        .zip(&r.consumer.alerts_by_class)
        .filter(|(_, n)| **n > 0)
        .map(|(l, n)| (l.clone(), (*n).into()))
        .collect();
    let suppressed: serde_json::Map<String, serde_json::Value> = SuppressReason::ALL
        .iter()
        .map(|reason| {
            (
                reason.as_str().to_string(),
                r.consumer.suppressed.get(*reason).into(),
            )
        })
        .collect();
    let mut v = serde_json::json!({
        "input": r.input.display().to_string(),
        "packets": r.reader.packets,
        "bytes": r.reader.bytes,
        "decoded": r.reader.decoded,
        "packets_in_flows": r.workers.stats.packets,
        "skipped": skipped,
        "link_types": link_types_json(&r.reader.link_types),
        "link_types_other": r.reader.link_types.other(),
        "accounted": r.all_accounted(),
        "read_error": r.reader.read_error,
        "capture": r.reader.capture.as_ref().map(|c| serde_json::json!({
            "interface": c.interface,
            "threads": c.threads,
            "kernel_received": c.kernel_received,
            "kernel_dropped": c.kernel_dropped,
            "interface_dropped": c.interface_dropped,
            "queue_dropped": c.queue_dropped,
        })),
        "kafka": r.reader.kafka.as_ref().map(|k| serde_json::json!({
            "messages": k.messages,
            "bytes": k.bytes,
            "malformed": k.malformed,
            "commits": k.commits,
            "commit_errors": k.commit_errors,
            "revocations": k.revocations,
            "unsettled_flushes": k.unsettled_flushes,
            "lag": k.lag,
        })),
        "context": r.context.as_ref().map(context_json),
        "flows": r.flows(),
        "flows_ended": ended,
        "evictions": r.workers.stats.evictions,
        "flow_emergency": {
            "entries": r.workers.stats.emergency_entries,
            "exits": r.workers.stats.emergency_exits,
            "active": r.workers.stats.emergency_active,
        },
        "scored": r.consumer.scored,
        "scored_in_workers": r.consumer.scored_in_workers,
        "model_swaps": r.consumer.model_swaps,
        "alerts": r.consumer.alerts(),
        "alerts_by_class": alerts,
        "alerts_suppressed": suppressed,
        "eve_reopens": {
            "ok": r.consumer.eve_reopens,
            "error": r.consumer.eve_reopen_errors,
        },
        "csv_rows": r.consumer.csv_rows,
        "sink_error": r.consumer.sink_error,
        "workers": r.workers.workers,
        "decoders": r.reader.decoders,
        "device": r.workers.device,
        "seconds": r.wall.as_secs_f64(),
        "setup_seconds": r.setup.as_secs_f64(),
        "stage_busy_seconds": {
            "read_decode": (r.reader.busy + r.reader.decode_busy).as_secs_f64(),
            "read": r.reader.busy.as_secs_f64(),
            "decode": r.reader.decode_busy.as_secs_f64(),
            "flows_features": r.workers.busy.as_secs_f64(),
            "inference": r.consumer.inference_busy.as_secs_f64(),
            "alert_output": r.consumer.sink_busy.as_secs_f64(),
            "consumer": r.consumer.busy.as_secs_f64(),
        },
    });
    add_defrag_and_episodes(&mut v, r);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(packets: u64, decoded: u64, skipped: &[(SkipReason, u64)], lt: u32) -> RunReport {
        let mut r = RunReport {
            input: "x.pcap".into(),
            ..RunReport::default()
        };
        r.reader.packets = packets;
        r.reader.decoded = decoded;
        for &(why, n) in skipped {
            r.reader.skipped.add_n(why, n);
        }
        for _ in 0..packets {
            r.reader.link_types.add(lt);
        }
        r
    }

    #[test]
    fn a_capture_with_nothing_usable_is_named_with_its_link_type() {
        let u = unusable(&report(
            3,
            0,
            &[(SkipReason::UnsupportedLinkType, 3)],
            linktype::IPV4 + 2,
        ))
        .unwrap();
        assert!(u.link_type);
        assert!(
            u.message.contains("none of the 3 packets in x.pcap")
                && u.message.contains("IEEE802_15_4_NOFCS (230) 3")
                && u.message.contains("it decodes NULL, ETHERNET"),
            "{}",
            u.message
        );
        let u = unusable(&report(1, 0, &[(SkipReason::NonIp, 1)], linktype::ETHERNET)).unwrap();
        assert!(!u.link_type);
        assert!(
            u.message
                .contains("the one packet in x.pcap could not be used")
                && u.message.contains("ETHERNET (1) 1")
                && u.message.contains("1 non_ip"),
            "{}",
            u.message
        );
        assert!(unusable(&report(0, 0, &[], 1)).is_some_and(|u| u.message.contains("no packets")));
        // Fragments that never made a datagram say where they went.
        let mut frags = report(3, 0, &[], linktype::ETHERNET);
        frags.workers.defrag.fragments = 3;
        frags.workers.defrag.invalid = 2;
        frags.workers.defrag.timeouts = 1;
        let u = unusable(&frags).unwrap();
        assert!(
            u.message
                .contains("skipped: 2 invalid IP fragments, 1 IP fragments never completed)"),
            "{}",
            u.message
        );
        // Something usable, or input that is not a file: nothing to say.
        assert_eq!(unusable(&report(5, 1, &[(SkipReason::NonIp, 4)], 1)), None);
        let mut live = report(0, 0, &[], 1);
        live.reader.capture = Some(Default::default());
        assert_eq!(unusable(&live), None);
    }
}
