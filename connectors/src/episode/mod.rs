//! Episodes: one alert per attack, not one per flow.
//!
//! Why: a flood or a scan is thousands of flows, and the classifier flags
//! each of them. One hping3 flood of 40,000 spoofed SYNs was 40,000 alert
//! lines, each naming a class and nothing a person could count or check. A
//! security team wants one alert when an attack starts, an update now and
//! then while it lasts, and a closing record that says how big it was.
//!
//! **Grouping.** An episode is keyed by (class, attacker) and by (class,
//! victim). A flagged flow joins the open episode of its class whose
//! attacker is the flow's source; failing that, the one whose victim is its
//! destination; failing both, it opens an episode with its source as
//! attacker and its destination as victim. So a scan (one source, many
//! destinations) and a spoofed flood (many sources, one destination) are
//! one episode each, and so is password guessing (one pair).
//!
//! **Records.** `start` when an episode opens (written with the flow that
//! opened it), `update` every `update_interval` while flows keep joining,
//! and `end` with the totals when no flow joined for `idle_timeout`, when
//! it is evicted, or when the input ends. Each record is an EVE `alert`
//! whose `tapstream.episode` object carries the counts ([`crate::eve`]).
//!
//! **Time** is packet time: flow end times, and the clock the alert stage
//! passes on from every flow it sees, flagged or not. The default idle
//! timeout (180 s) is longer than the default flow timeout (120 s), so the
//! flows of a flood that end by timeout still find their episode open.
//! Totals do not depend on the order flows arrive in; when updates are
//! written does, a little (flows reach the alert stage from several
//! workers).
//!
//! **Memory** is bounded: at most `max_open` episodes, each with three
//! distinct counts of at most 1 KiB (exact up to 32 values, then a
//! HyperLogLog sketch, 3 % standard error). When all are in
//! use, the eighth that were quiet longest are closed (`end_reason`
//! `evicted`, counted).

mod distinct;

use std::collections::HashMap;
use std::time::Duration;

use tapstream_ingest::FlowMeta;

use crate::eve::{Alert, Explanation, ModelInfo};
use distinct::Distinct;

/// Default `idle_timeout`: longer than the default flow timeout (120 s).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(180);

/// Default `update_interval`.
pub const DEFAULT_UPDATE_INTERVAL: Duration = Duration::from_secs(300);

/// Default `max_open`.
pub const DEFAULT_MAX_OPEN: usize = 10_000;

/// Timers are checked at most this often, in packet time (µs).
const SWEEP_EVERY_US: i64 = 1_000_000;

/// How episodes open, report and close.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EpisodeSettings {
    /// An episode ends once no flow joined it for this long.
    pub idle_timeout: Duration,
    /// An open episode that gained flows is reported this often.
    pub update_interval: Duration,
    /// Episodes open at once at most (0 counts as 1).
    pub max_open: usize,
}

impl Default for EpisodeSettings {
    fn default() -> Self {
        EpisodeSettings {
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            update_interval: DEFAULT_UPDATE_INTERVAL,
            max_open: DEFAULT_MAX_OPEN,
        }
    }
}

/// Why an episode ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EpisodeEnd {
    /// No flow joined it for `idle_timeout`.
    Idle,
    /// `max_open` episodes were open and it was among the quietest.
    Evicted,
    /// The input ended (end of file, or the run was stopped).
    EndOfInput,
}

impl EpisodeEnd {
    /// The name in EVE (`tapstream.episode.end_reason`).
    pub fn as_str(self) -> &'static str {
        match self {
            EpisodeEnd::Idle => "idle",
            EpisodeEnd::Evicted => "evicted",
            EpisodeEnd::EndOfInput => "end_of_input",
        }
    }
}

/// Which record of an episode this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EpisodeState {
    /// It opened.
    Start,
    /// It is still going, with more flows than at its last record.
    Update,
    /// It ended.
    End(EpisodeEnd),
}

impl EpisodeState {
    /// The name in EVE (`tapstream.episode.state`).
    pub fn as_str(self) -> &'static str {
        match self {
            EpisodeState::Start => "start",
            EpisodeState::Update => "update",
            EpisodeState::End(_) => "end",
        }
    }
}

/// One record of an episode, as an [`Alert`] carries it.
#[derive(Clone, Copy, Debug)]
pub struct EpisodeEvent<'a> {
    /// The episode.
    pub episode: &'a Episode,
    /// Which record.
    pub state: EpisodeState,
}

impl EpisodeEvent<'_> {
    /// The record's time: the opening flow's end for `start`, else the
    /// episode's last activity (µs since the epoch).
    pub fn time_us(&self) -> i64 {
        match self.state {
            EpisodeState::Start => self.episode.opener.last_us,
            _ => self.episode.last_us,
        }
    }
}

/// An attack episode: the flows of one class from one attacker or against
/// one victim.
#[derive(Clone, Debug)]
pub struct Episode {
    opener: FlowMeta,
    class: String,
    class_index: u16,
    model: ModelInfo,
    threshold: f32,
    first_us: i64,
    last_us: i64,
    flows: u64,
    packets: u64,
    bytes: u64,
    max_score: f32,
    srcs: Distinct,
    dsts: Distinct,
    ports: Distinct,
    reported_us: i64,
    reported_flows: u64,
    keys: [Key; 2],
    explanation: Option<Explanation>,
    /// How strong the kept explanation is (or will be, once its residuals
    /// are worked out).
    strength: f32,
    /// The kept flow's model input, while its residuals are pending.
    pending: Option<Box<[f32]>>,
}

/// An anomaly model's residuals that are worked out only when a record
/// shows them ([`Episodes::add_pending`]): they cost a pass over the
/// model's parameters, and an episode shows one flow's.
#[derive(Clone, Copy, Debug)]
pub struct Pending<'a> {
    /// The explanation's strength once complete ([`Explanation::strength`];
    /// the caller's estimate from the flow's score).
    pub strength: f32,
    /// The flow's model input, from which the residuals come.
    pub input: &'a [f32],
}

impl Episode {
    fn open(alert: &Alert<'_>, pending: Option<Pending<'_>>, keys: [Key; 2], now_us: i64) -> Self {
        let f = alert.flow;
        let mut ep = Episode {
            opener: *f,
            class: alert.class.to_string(),
            class_index: alert.class_index,
            model: alert.model.clone(),
            threshold: alert.threshold,
            first_us: f.start_us,
            last_us: f.last_us,
            flows: 0,
            packets: 0,
            bytes: 0,
            max_score: alert.score,
            srcs: Distinct::default(),
            dsts: Distinct::default(),
            ports: Distinct::default(),
            reported_us: now_us,
            reported_flows: 1,
            keys,
            explanation: None,
            strength: 0.0,
            pending: None,
        };
        ep.join(alert, pending);
        ep
    }

    fn join(&mut self, alert: &Alert<'_>, pending: Option<Pending<'_>>) {
        let f = alert.flow;
        self.first_us = self.first_us.min(f.start_us);
        self.last_us = self.last_us.max(f.last_us);
        self.flows += 1;
        self.packets = self
            .packets
            .saturating_add(f.pkts_fwd.saturating_add(f.pkts_bwd));
        self.bytes = self
            .bytes
            .saturating_add(f.bytes_fwd.saturating_add(f.bytes_bwd));
        // NaN never wins.
        if alert.score > self.max_score || self.max_score.is_nan() {
            self.max_score = alert.score;
        }
        self.srcs.insert(&address_words(&f.src, f.v6));
        self.dsts.insert(&address_words(&f.dst, f.v6));
        if matches!(f.proto, 6 | 17 | 132) {
            self.ports
                .insert(&[u64::from(f.dport) | u64::from(f.proto) << 16]);
        }
        let strength = match (pending, alert.explanation) {
            (Some(p), _) => p.strength,
            (None, Some(e)) => e.strength(),
            (None, None) => return,
        };
        let kept = self.explanation.is_some() || self.pending.is_some();
        if !kept || strength > self.strength {
            self.explanation = alert.explanation.copied();
            self.strength = strength;
            match (pending, &mut self.pending) {
                (Some(p), Some(buf)) if buf.len() == p.input.len() => buf.copy_from_slice(p.input),
                (p, buf) => *buf = p.map(|p| Box::from(p.input)),
            }
        }
    }

    /// The strongest explanation of its flows (see [`Explanation`]); with
    /// [`Episode::pending`], its residuals are still to be added.
    pub fn explanation(&self) -> Option<&Explanation> {
        self.explanation.as_ref()
    }

    /// The model input of the flow whose explanation it keeps, while that
    /// explanation's residuals are pending ([`Episodes::add_pending`]).
    pub fn pending(&self) -> Option<&[f32]> {
        self.pending.as_deref()
    }

    /// Its id: the `flow_id` of the flow that opened it.
    pub fn id(&self) -> u64 {
        self.opener.flow_id
    }

    /// The flow that opened it.
    pub fn opener(&self) -> &FlowMeta {
        &self.opener
    }

    /// First packet of its earliest flow (µs since the epoch).
    pub fn first_us(&self) -> i64 {
        self.first_us
    }

    /// Last packet of its latest flow (µs since the epoch).
    pub fn last_us(&self) -> i64 {
        self.last_us
    }

    /// Flows flagged in it.
    pub fn flows(&self) -> u64 {
        self.flows
    }

    /// Packets of those flows, both directions.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// Frame bytes of those flows, both directions.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The highest score of its flows.
    pub fn max_score(&self) -> f32 {
        self.max_score
    }

    /// Distinct source addresses.
    pub fn src_ips(&self) -> u64 {
        self.srcs.count()
    }

    /// Distinct destination addresses.
    pub fn dest_ips(&self) -> u64 {
        self.dsts.count()
    }

    /// Distinct destination ports (with their protocol; flows without ports
    /// add none).
    pub fn dest_ports(&self) -> u64 {
        self.ports.count()
    }

    /// Whether the three distinct counts are exact (each is exact up to 32,
    /// an estimate within about 3 % (one standard error) above).
    pub fn counts_exact(&self) -> bool {
        self.srcs.is_exact() && self.dsts.is_exact() && self.ports.is_exact()
    }

    /// The attacker, when every flow came from one source.
    pub fn attacker(&self) -> Option<&[u8; 16]> {
        (self.srcs.is_exact() && self.srcs.count() == 1).then_some(&self.opener.src)
    }

    /// The victim, when every flow went to one destination.
    pub fn victim(&self) -> Option<&[u8; 16]> {
        (self.dsts.is_exact() && self.dsts.count() == 1).then_some(&self.opener.dst)
    }
}

/// The two 64-bit words of an address, with the family folded in.
fn address_words(addr: &[u8; 16], v6: bool) -> [u64; 2] {
    let mut hi = [0u8; 8];
    let mut lo = [0u8; 8];
    hi.copy_from_slice(addr.get(..8).unwrap_or(&[0; 8]));
    lo.copy_from_slice(addr.get(8..).unwrap_or(&[0; 8]));
    [
        u64::from_le_bytes(hi),
        u64::from_le_bytes(lo) ^ u64::from(v6),
    ]
}

/// What the episode table did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EpisodeCounts {
    /// Episodes opened (one `start` record each).
    pub opened: u64,
    /// `update` records.
    pub updates: u64,
    /// Episodes ended idle or at the end of the input.
    pub closed: u64,
    /// Episodes ended early because `max_open` were open.
    pub evicted: u64,
}

impl EpisodeCounts {
    /// Records written: starts, updates and ends.
    pub fn records(&self) -> u64 {
        self.opened + self.updates + self.closed + self.evicted
    }
}

/// An episode's key: class, role and address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    /// Detector and class (two detectors' classes never share an episode).
    class: u32,
    victim: bool,
    addr: [u8; 16],
    v6: bool,
}

/// The open episodes.
///
/// Alerts go in with [`Episodes::add`], the clock with
/// [`Episodes::advance`]; records come out through the caller's `out`
/// (which writes them to a sink), so the table never holds output.
#[derive(Debug)]
pub struct Episodes {
    settings: EpisodeSettings,
    slots: Vec<Option<Episode>>,
    free: Vec<usize>,
    keys: HashMap<Key, usize>,
    /// Class ids by detector and class name.
    classes: HashMap<String, HashMap<String, u32>>,
    class_count: usize,
    open: usize,
    clock_us: i64,
    swept_us: i64,
    counts: EpisodeCounts,
}

/// Where records go: a sink's write, usually.
pub type Out<'o, E> = dyn FnMut(&Alert<'_>) -> Result<(), E> + 'o;

impl Episodes {
    /// An empty table.
    pub fn new(settings: EpisodeSettings) -> Self {
        Episodes {
            settings,
            slots: Vec::new(),
            free: Vec::new(),
            keys: HashMap::new(),
            classes: HashMap::new(),
            class_count: 0,
            open: 0,
            clock_us: i64::MIN,
            swept_us: i64::MIN,
            counts: EpisodeCounts::default(),
        }
    }

    /// Episodes open now.
    pub fn open(&self) -> usize {
        self.open
    }

    /// What the table did so far.
    pub fn counts(&self) -> EpisodeCounts {
        self.counts
    }

    /// Adds a flagged flow (`alert.episode` is ignored): it joins its
    /// episode, or opens one and its `start` record goes to `out`.
    ///
    /// # Errors
    /// What `out` returned; the table stays consistent.
    pub fn add<E>(&mut self, alert: &Alert<'_>, out: &mut Out<'_, E>) -> Result<(), E> {
        self.add_pending(alert, None, out)
    }

    /// [`Episodes::add`] for a flow whose explanation's residuals are
    /// `pending`: its episode keeps them unworked, and its records say so
    /// ([`Episode::pending`]), so the writer works out only what it shows.
    ///
    /// # Errors
    /// What `out` returned.
    pub fn add_pending<E>(
        &mut self,
        alert: &Alert<'_>,
        pending: Option<Pending<'_>>,
        out: &mut Out<'_, E>,
    ) -> Result<(), E> {
        let f = alert.flow;
        self.clock_us = self.clock_us.max(f.last_us);
        let class = self.class_id(&alert.model.detector, alert.class);
        let by_src = Key {
            class,
            victim: false,
            addr: f.src,
            v6: f.v6,
        };
        let by_dst = Key {
            class,
            victim: true,
            addr: f.dst,
            v6: f.v6,
        };
        let found = self.keys.get(&by_src).or_else(|| self.keys.get(&by_dst));
        if let Some(Some(ep)) = found.and_then(|&slot| self.slots.get_mut(slot)) {
            ep.join(alert, pending);
            return Ok(());
        }
        if self.open >= self.settings.max_open.max(1) {
            self.evict(out)?;
        }
        let ep = Episode::open(alert, pending, [by_src, by_dst], self.clock_us);
        let written = emit(&ep, EpisodeState::Start, out);
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(None);
                self.slots.len() - 1
            }
        };
        for k in ep.keys {
            self.keys.insert(k, slot);
        }
        if let Some(s) = self.slots.get_mut(slot) {
            *s = Some(ep);
        }
        self.open += 1;
        self.counts.opened += 1;
        written
    }

    /// Moves the clock to `now_us` (packet time; it never goes back):
    /// writes `update` records that are due and ends idle episodes.
    ///
    /// # Errors
    /// What `out` returned.
    pub fn advance<E>(&mut self, now_us: i64, out: &mut Out<'_, E>) -> Result<(), E> {
        self.clock_us = self.clock_us.max(now_us);
        if self.open == 0 || self.clock_us.saturating_sub(self.swept_us) < SWEEP_EVERY_US {
            return Ok(());
        }
        self.swept_us = self.clock_us;
        let now = self.clock_us;
        let idle = micros(self.settings.idle_timeout);
        let every = micros(self.settings.update_interval);
        let mut due: Vec<(i64, u64, usize, bool)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(slot, s)| {
                let ep = s.as_ref()?;
                if now.saturating_sub(ep.last_us) >= idle {
                    Some((ep.first_us, ep.id(), slot, true))
                } else if now.saturating_sub(ep.reported_us) >= every
                    && ep.flows > ep.reported_flows
                {
                    Some((ep.first_us, ep.id(), slot, false))
                } else {
                    None
                }
            })
            .collect();
        due.sort_unstable();
        for (_, _, slot, ends) in due {
            if ends {
                self.close(slot, EpisodeEnd::Idle, out)?;
            } else if let Some(Some(ep)) = self.slots.get_mut(slot) {
                ep.reported_us = now;
                ep.reported_flows = ep.flows;
                self.counts.updates += 1;
                emit(ep, EpisodeState::Update, out)?;
            }
        }
        Ok(())
    }

    /// Ends every open episode (the input ended), oldest first.
    ///
    /// # Errors
    /// What `out` returned.
    pub fn finish<E>(&mut self, out: &mut Out<'_, E>) -> Result<(), E> {
        for slot in self.oldest(|ep| ep.first_us) {
            self.close(slot, EpisodeEnd::EndOfInput, out)?;
        }
        Ok(())
    }

    /// Closes the eighth of the open episodes that were quiet longest.
    fn evict<E>(&mut self, out: &mut Out<'_, E>) -> Result<(), E> {
        let n = (self.settings.max_open / 8).max(1);
        for slot in self.oldest(|ep| ep.last_us).into_iter().take(n) {
            self.close(slot, EpisodeEnd::Evicted, out)?;
        }
        Ok(())
    }

    /// The open slots, sorted by `time` and then id.
    fn oldest(&self, time: impl Fn(&Episode) -> i64) -> Vec<usize> {
        let mut open: Vec<(i64, u64, usize)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(slot, s)| s.as_ref().map(|ep| (time(ep), ep.id(), slot)))
            .collect();
        open.sort_unstable();
        open.into_iter().map(|(_, _, slot)| slot).collect()
    }

    /// Ends the episode in `slot` and writes its `end` record.
    fn close<E>(&mut self, slot: usize, why: EpisodeEnd, out: &mut Out<'_, E>) -> Result<(), E> {
        let Some(ep) = self.slots.get_mut(slot).and_then(Option::take) else {
            return Ok(());
        };
        for k in &ep.keys {
            if self.keys.get(k) == Some(&slot) {
                self.keys.remove(k);
            }
        }
        self.free.push(slot);
        self.open -= 1;
        match why {
            EpisodeEnd::Evicted => self.counts.evicted += 1,
            _ => self.counts.closed += 1,
        }
        emit(&ep, EpisodeState::End(why), out)
    }

    /// A small number for a class label.
    fn class_id(&mut self, detector: &str, class: &str) -> u32 {
        let found = self
            .classes
            .get(detector)
            .and_then(|c| c.get(class))
            .copied();
        if let Some(id) = found {
            return id;
        }
        let id = u32::try_from(self.class_count).unwrap_or(u32::MAX);
        self.class_count += 1;
        self.classes
            .entry(detector.to_string())
            .or_default()
            .insert(class.to_string(), id);
        id
    }
}

/// Writes one record of `ep` through `out`.
fn emit<E>(ep: &Episode, state: EpisodeState, out: &mut Out<'_, E>) -> Result<(), E> {
    out(&Alert {
        flow: &ep.opener,
        score: ep.max_score,
        class: &ep.class,
        class_index: ep.class_index,
        model: &ep.model,
        threshold: ep.threshold,
        episode: Some(EpisodeEvent { episode: ep, state }),
        explanation: ep.explanation.as_ref(),
    })
}

/// A duration in µs, saturating.
fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

#[cfg(test)]
pub(crate) mod tests;
