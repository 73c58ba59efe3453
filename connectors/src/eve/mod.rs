//! Suricata-compatible EVE JSON alerts.
//!
//! Why EVE: security teams already ship Suricata's `eve.json` into their
//! SIEMs (Elastic, Splunk, Sentinel, Graylog, …) with parsers, dashboards and
//! rules keyed on its field names. An ML alert written as a Suricata 7
//! `alert` event, with the same `flow_id`/`community_id`/`alert`/`flow`
//! layout, is ingested by those pipelines unchanged; what only tapstream
//! knows (model, score, threshold) goes into a `tapstream` object that
//! Suricata-aware parsers carry along untouched.
//!
//! # An alert line
//!
//! One JSON object per line, fields in this order (as Suricata orders them):
//!
//! | field | type | value |
//! | --- | --- | --- |
//! | `timestamp` | string | time of the flow's last packet, `YYYY-MM-DDTHH:MM:SS.ffffff+0000` (UTC) |
//! | `flow_id` | integer | [`FlowMeta::flow_id`] (51 bits, exact in JSON doubles) |
//! | `event_type` | string | `"alert"` |
//! | `src_ip` | string | forward source; IPv6 uncompressed, as Suricata 7 writes it |
//! | `src_port` | integer | only for TCP, UDP and SCTP |
//! | `dest_ip` | string | forward destination |
//! | `dest_port` | integer | only for TCP, UDP and SCTP |
//! | `proto` | string | Suricata's name (`"TCP"`, `"UDP"`, `"ICMP"`, `"IPv6-ICMP"`, `"SCTP"`, `"GRE"`, `"ESP"`, …) or the decimal number above 143 |
//! | `icmp_type`, `icmp_code` | integer | only for ICMP and ICMPv6: the first packet's |
//! | `community_id` | string | Community ID v1 with the writer's seed |
//! | `alert` | object | see below |
//! | `flow` | object | `pkts_toserver`, `pkts_toclient`, `bytes_toserver`, `bytes_toclient` (integers; forward = to server; bytes are frame bytes), `start`, `end` (timestamps of the first and last packet) |
//! | `tapstream` | object | `detector` (string, the run's name for the detector that fired; absent for a stage without one), `model`, `model_version`, `model_sha256` (strings), `score`, `threshold` (numbers, `null` if not finite), `class` (string), `end_reason` (string, see [`EndReason::as_str`]); `explanation` and `episode` when present (below) |
//!
//! The `alert` object: `action` `"allowed"` (tapstream observes, it never
//! blocks), `gid` 1, `signature_id` [`SIGNATURE_ID_BASE`] + 1000 ×
//! detector index + class index,
//! `rev` [`SIGNATURE_REV`], `signature`
//! `"TAPSTREAM ML <class> (<model> v<version>)"`, `category`
//! [`CATEGORY`], and `severity` 1 when the score is at least
//! [`HIGH_SEVERITY_SCORE`], else 2 (Suricata's 1 is the most severe; 3 is
//! left to rules-based "informational" events).
//!
//! `tapstream.explanation` (when the model has a benign baseline and a
//! context feature of the flow is above it): up to three objects
//! `{feature, value, per_second, benign_median, benign_p99, text}`, the
//! strongest first ([`explain`]).
//!
//! `tapstream.anomaly` (alerts of a learned anomaly model, `tapstream
//! learn`): `error` and `threshold` (the model's error for the flow and at
//! its threshold) and `features`, up to three objects `{feature, value,
//! typical, share, text}`: the features with the largest reconstruction
//! error, their typical benign value and their share of the error.
//!
//! `tapstream.episode` (episode records, [`crate::episode`]): `id` (the
//! `flow_id` of the flow that opened it, which is the line's flow),
//! `state` (`start`, `update`, `end`), `end_reason` (`end` only: `idle`,
//! `evicted`, `end_of_input`), `first_seen`, `last_seen`, `flows`, `pkts`,
//! `bytes`, `src_ips`, `dest_ips`, `dest_ports` (distinct counts),
//! `counts_exact`, and `attacker` / `victim` (the one source or destination
//! address, else `null`). The line's `timestamp` is the opening flow's end
//! for `start` and `last_seen` otherwise; `score` is the episode's highest.
//!
//! # Signature ids
//!
//! A class keeps its `signature_id` across model versions (the version is in
//! the signature text and in `tapstream.model_version`), so SIEM rules and
//! suppressions written against a sid survive a model update. Class index
//! `i` of the run's first detector maps to `9_100_000 + i`, and of its
//! `d`-th further detector (`[[detector]]`) to `9_100_000 + 1000·d + i`;
//! the ids stay inside the block 9,100,000–9,165,535, clear of the Emerging Threats
//! ranges (2,000,000–2,999,999) and the usual local-rule range
//! (1,000,000–1,999,999).
//!
//! # Example
//!
//! (The doc example on [`EveWriter::write`] builds this alert.)
//!
//! ```text
//! {"timestamp":"2017-07-07T09:30:00.250000+0000","flow_id":1234567890123,"event_type":"alert","src_ip":"172.16.0.1","src_port":51234,"dest_ip":"192.168.10.50","dest_port":80,"proto":"TCP","community_id":"1:10W0xDl6mimYdAJ9qJfbUT1RI/A=","alert":{"action":"allowed","gid":1,"signature_id":9100001,"rev":1,"signature":"TAPSTREAM ML DDoS (cic-ids2017-mlp v1.0.0)","category":"Machine Learning Flow Classification","severity":1},"flow":{"pkts_toserver":8,"pkts_toclient":6,"bytes_toserver":1200,"bytes_toclient":9000,"start":"2017-07-07T09:29:59.000000+0000","end":"2017-07-07T09:30:00.250000+0000"},"tapstream":{"model":"cic-ids2017-mlp","model_version":"1.0.0","model_sha256":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","score":0.97,"threshold":0.5,"class":"DDoS","end_reason":"tcp_termination"}}
//! ```
//!
//! [`EndReason::as_str`]: tapstream_ingest::EndReason::as_str

pub mod explain;
mod format;
mod proto;

pub use explain::Explanation;
pub use format::write_timestamp;
pub use proto::proto_name;

use tapstream_ingest::FlowMeta;

use crate::community_id::{CommunityId, FlowTuple};
use crate::episode::{EpisodeEvent, EpisodeState};
use format::{push_escaped, push_f32, push_ip, push_str, push_u64};

/// First signature id of tapstream's block: class index `i` alerts with
/// `signature_id` `SIGNATURE_ID_BASE + i`.
pub const SIGNATURE_ID_BASE: u32 = 9_100_000;

/// The `rev` of every tapstream signature (the model version is carried in
/// the signature text instead, so sids stay stable).
pub const SIGNATURE_REV: u32 = 1;

/// Generator id: 1, Suricata's id for signature-based alerts, so that SIEM
/// content that filters on `gid == 1` keeps tapstream alerts.
pub const GID: u32 = 1;

/// The `alert.category` of every tapstream alert.
pub const CATEGORY: &str = "Machine Learning Flow Classification";

/// Scores at or above this get severity 1; lower scores (and NaN) get 2.
pub const HIGH_SEVERITY_SCORE: f32 = 0.9;

/// The model an alert came from, as it is named in EVE.
///
/// tapstream's own small struct rather than the inference crate's model
/// contract, so that alert output does not depend on how models are loaded.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ModelInfo {
    /// Model name (`tapstream.model`, and in the signature text).
    pub name: String,
    /// Model version (`tapstream.model_version`, and in the signature text).
    pub version: String,
    /// Hex SHA-256 of the model file (`tapstream.model_sha256`).
    pub sha256: String,
    /// The detector that scored with it (`tapstream.detector`; not written
    /// when empty).
    pub detector: String,
    /// The detector's place in the run (0 for the first): its signature ids
    /// start at `SIGNATURE_ID_BASE + 1000 × index`, so two detectors' classes
    /// never share one.
    pub detector_index: u16,
}

impl ModelInfo {
    /// Names a model.
    pub fn new(
        name: impl Into<String>,
        version: impl Into<String>,
        sha256: impl Into<String>,
    ) -> Self {
        ModelInfo {
            name: name.into(),
            version: version.into(),
            sha256: sha256.into(),
            detector: String::new(),
            detector_index: 0,
        }
    }

    /// The same model as detector `name`, the run's `index`-th.
    #[must_use]
    pub fn for_detector(mut self, name: impl Into<String>, index: u16) -> Self {
        self.detector = name.into();
        self.detector_index = index;
        self
    }
}

/// One alert: a scored flow that crossed its threshold.
///
/// Borrows everything, so building one per alert costs nothing.
#[derive(Clone, Copy, Debug)]
pub struct Alert<'a> {
    /// The ended flow.
    pub flow: &'a FlowMeta,
    /// The model's score for `class` (usually a probability in [0, 1]).
    pub score: f32,
    /// The class label, e.g. `"DDoS"`.
    pub class: &'a str,
    /// The class's index in the model's label list; it selects the
    /// signature id. A `u16` keeps every id inside tapstream's sid block.
    pub class_index: u16,
    /// The model that scored the flow.
    pub model: &'a ModelInfo,
    /// The threshold the score was compared with.
    pub threshold: f32,
    /// Set for an episode's record ([`crate::episode`]): `flow` is the
    /// flow that opened it, `score` its highest, and the line carries a
    /// `tapstream.episode` object. `None` for a per-flow alert.
    pub episode: Option<EpisodeEvent<'a>>,
    /// The context features that stand out against the model's benign
    /// baseline ([`explain`]); `None` when the model has no baseline or
    /// nothing stands out.
    pub explanation: Option<&'a Explanation>,
}

impl Alert<'_> {
    /// `alert.signature_id`: [`SIGNATURE_ID_BASE`] + class index.
    pub fn signature_id(&self) -> u32 {
        SIGNATURE_ID_BASE
            + 1000 * u32::from(self.model.detector_index)
            + u32::from(self.class_index)
    }

    /// `alert.severity`: 1 when `score >= HIGH_SEVERITY_SCORE`, else 2
    /// (NaN included).
    pub fn severity(&self) -> u8 {
        if self.score >= HIGH_SEVERITY_SCORE {
            1
        } else {
            2
        }
    }
}

/// Formats alerts as EVE JSON lines.
///
/// Holds only configuration; the caller owns the output buffer, so one
/// writer can serve many threads and a steady state allocates nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EveWriter {
    community_id_seed: u16,
}

impl EveWriter {
    /// A writer whose `community_id`s use `community_id_seed` (0, the
    /// default everywhere, unless the SIEM's other sources use another).
    pub fn new(community_id_seed: u16) -> Self {
        EveWriter { community_id_seed }
    }

    /// The Community ID seed.
    pub fn community_id_seed(&self) -> u16 {
        self.community_id_seed
    }

    /// Appends `alert` to `out` as one JSON object and a `\n`.
    ///
    /// Never fails and never panics: every input produces a valid JSON
    /// line (non-finite scores are written as `null`). Allocates nothing
    /// beyond growing `out`.
    ///
    /// ```
    /// use tapstream_connectors::eve::{Alert, EveWriter, ModelInfo};
    /// use tapstream_ingest::{EndReason, FlowMeta};
    ///
    /// let mut src = [0u8; 16];
    /// src[..4].copy_from_slice(&[172, 16, 0, 1]);
    /// let mut dst = [0u8; 16];
    /// dst[..4].copy_from_slice(&[192, 168, 10, 50]);
    /// let flow = FlowMeta {
    ///     flow_id: 1_234_567_890_123,
    ///     src,
    ///     dst,
    ///     sport: 51234,
    ///     dport: 80,
    ///     proto: 6,
    ///     v6: false,
    ///     icmp_type: 0,
    ///     icmp_code: 0,
    ///     start_us: 1_499_419_799_000_000,
    ///     last_us: 1_499_419_800_250_000,
    ///     pkts_fwd: 8,
    ///     pkts_bwd: 6,
    ///     bytes_fwd: 1200,
    ///     bytes_bwd: 9000,
    ///     reason: EndReason::TcpTermination,
    /// };
    /// let model = ModelInfo::new(
    ///     "cic-ids2017-mlp",
    ///     "1.0.0",
    ///     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    /// );
    /// let alert = Alert {
    ///     flow: &flow,
    ///     score: 0.97,
    ///     class: "DDoS",
    ///     class_index: 1,
    ///     model: &model,
    ///     threshold: 0.5,
    ///     episode: None,
    ///     explanation: None,
    /// };
    /// let mut out = Vec::new();
    /// EveWriter::new(0).write(&alert, &mut out);
    /// let line = String::from_utf8(out).unwrap();
    /// assert!(line.starts_with(r#"{"timestamp":"2017-07-07T09:30:00.250000+0000","flow_id":1234567890123,"event_type":"alert""#));
    /// assert!(line.contains(r#""community_id":"1:10W0xDl6mimYdAJ9qJfbUT1RI/A=""#));
    /// assert!(line.contains(r#""signature":"TAPSTREAM ML DDoS (cic-ids2017-mlp v1.0.0)""#));
    /// assert!(line.ends_with("}\n"));
    /// ```
    pub fn write(&self, alert: &Alert<'_>, out: &mut Vec<u8>) {
        let flow = alert.flow;
        let model = alert.model;
        let ports = matches!(flow.proto, 6 | 17 | 132);
        let icmp = matches!(flow.proto, 1 | 58);

        out.extend_from_slice(b"{\"timestamp\":\"");
        write_timestamp(out, alert.episode.map_or(flow.last_us, |e| e.time_us()));
        out.extend_from_slice(b"\",\"flow_id\":");
        push_u64(out, flow.flow_id);
        out.extend_from_slice(b",\"event_type\":\"alert\",\"src_ip\":\"");
        push_ip(out, &flow.src, flow.v6);
        if ports {
            out.extend_from_slice(b"\",\"src_port\":");
            push_u64(out, u64::from(flow.sport));
            out.extend_from_slice(b",\"dest_ip\":\"");
        } else {
            out.extend_from_slice(b"\",\"dest_ip\":\"");
        }
        push_ip(out, &flow.dst, flow.v6);
        if ports {
            out.extend_from_slice(b"\",\"dest_port\":");
            push_u64(out, u64::from(flow.dport));
            out.extend_from_slice(b",\"proto\":");
        } else {
            out.extend_from_slice(b"\",\"proto\":");
        }
        match proto_name(flow.proto) {
            Some(name) => push_str(out, name),
            None => {
                out.push(b'"');
                push_u64(out, u64::from(flow.proto));
                out.push(b'"');
            }
        }
        if icmp {
            out.extend_from_slice(b",\"icmp_type\":");
            push_u64(out, u64::from(flow.icmp_type));
            out.extend_from_slice(b",\"icmp_code\":");
            push_u64(out, u64::from(flow.icmp_code));
        }
        out.extend_from_slice(b",\"community_id\":");
        let cid = CommunityId::v1(&FlowTuple::from_meta(flow), self.community_id_seed);
        push_str(out, cid.as_str());

        out.extend_from_slice(b",\"alert\":{\"action\":\"allowed\",\"gid\":");
        push_u64(out, u64::from(GID));
        out.extend_from_slice(b",\"signature_id\":");
        push_u64(out, u64::from(alert.signature_id()));
        out.extend_from_slice(b",\"rev\":");
        push_u64(out, u64::from(SIGNATURE_REV));
        out.extend_from_slice(b",\"signature\":\"TAPSTREAM ML ");
        push_escaped(out, alert.class);
        out.extend_from_slice(b" (");
        push_escaped(out, &model.name);
        out.extend_from_slice(b" v");
        push_escaped(out, &model.version);
        out.extend_from_slice(b")\",\"category\":");
        push_str(out, CATEGORY);
        out.extend_from_slice(b",\"severity\":");
        push_u64(out, u64::from(alert.severity()));

        out.extend_from_slice(b"},\"flow\":{\"pkts_toserver\":");
        push_u64(out, flow.pkts_fwd);
        out.extend_from_slice(b",\"pkts_toclient\":");
        push_u64(out, flow.pkts_bwd);
        out.extend_from_slice(b",\"bytes_toserver\":");
        push_u64(out, flow.bytes_fwd);
        out.extend_from_slice(b",\"bytes_toclient\":");
        push_u64(out, flow.bytes_bwd);
        out.extend_from_slice(b",\"start\":\"");
        write_timestamp(out, flow.start_us);
        out.extend_from_slice(b"\",\"end\":\"");
        write_timestamp(out, flow.last_us);

        out.extend_from_slice(b"\"},\"tapstream\":{");
        if !model.detector.is_empty() {
            out.extend_from_slice(b"\"detector\":");
            push_str(out, &model.detector);
            out.push(b',');
        }
        out.extend_from_slice(b"\"model\":");
        push_str(out, &model.name);
        out.extend_from_slice(b",\"model_version\":");
        push_str(out, &model.version);
        out.extend_from_slice(b",\"model_sha256\":");
        push_str(out, &model.sha256);
        out.extend_from_slice(b",\"score\":");
        push_f32(out, alert.score);
        out.extend_from_slice(b",\"threshold\":");
        push_f32(out, alert.threshold);
        out.extend_from_slice(b",\"class\":");
        push_str(out, alert.class);
        out.extend_from_slice(b",\"end_reason\":");
        push_str(out, flow.reason.as_str());
        if let Some(e) = alert.explanation {
            explain::push_explanation(out, e, flow);
        }
        if let Some(e) = &alert.episode {
            push_episode(out, e);
        }
        out.extend_from_slice(b"}}\n");
    }
}

/// Appends `,"episode":{…}`: the record's state, and the episode's times,
/// totals and distinct counts so far.
fn push_episode(out: &mut Vec<u8>, e: &EpisodeEvent<'_>) {
    let ep = e.episode;
    out.extend_from_slice(b",\"episode\":{\"id\":");
    push_u64(out, ep.id());
    out.extend_from_slice(b",\"state\":");
    push_str(out, e.state.as_str());
    if let EpisodeState::End(why) = e.state {
        out.extend_from_slice(b",\"end_reason\":");
        push_str(out, why.as_str());
    }
    out.extend_from_slice(b",\"first_seen\":\"");
    write_timestamp(out, ep.first_us());
    out.extend_from_slice(b"\",\"last_seen\":\"");
    write_timestamp(out, ep.last_us());
    for (name, n) in [
        (&b"\",\"flows\":"[..], ep.flows()),
        (b",\"pkts\":", ep.packets()),
        (b",\"bytes\":", ep.bytes()),
        (b",\"src_ips\":", ep.src_ips()),
        (b",\"dest_ips\":", ep.dest_ips()),
        (b",\"dest_ports\":", ep.dest_ports()),
    ] {
        out.extend_from_slice(name);
        push_u64(out, n);
    }
    out.extend_from_slice(b",\"counts_exact\":");
    out.extend_from_slice(if ep.counts_exact() { b"true" } else { b"false" });
    let v6 = ep.opener().v6;
    for (name, addr) in [
        (&b",\"attacker\":"[..], ep.attacker()),
        (b",\"victim\":", ep.victim()),
    ] {
        out.extend_from_slice(name);
        match addr {
            Some(a) => {
                out.push(b'"');
                push_ip(out, a, v6);
                out.push(b'"');
            }
            None => out.extend_from_slice(b"null"),
        }
    }
    out.push(b'}');
}
