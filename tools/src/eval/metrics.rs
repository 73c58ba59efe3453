//! What a detector's verdicts on labelled flows add up to.
//!
//! An operator asks three questions of a detector on their own traffic: does
//! it see each kind of attack (flow recall per kind, and whether each attack
//! capture raised at least one alert), how much benign traffic it flags
//! (false-positive rate, pooled and per group of benign captures, since one
//! noisy source can dominate), and how loud it is (alerts per attack
//! episode: the lines one attack puts in front of an analyst). A confusion
//! table shows which class it names for what. [`Tally`] counts flow by flow;
//! [`Tally::finish`] turns the counts into those numbers, with stable field
//! names for `eval.json`.

use std::collections::BTreeMap;

use serde::Serialize;

use super::labels::BENIGN;

/// The confusion table's column for flows that raised no alert.
pub const NOT_ALERTED: &str = "none";

/// Counts of one model's verdicts on labelled flows.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    /// Per attack kind: flows and alerted flows.
    kinds: BTreeMap<String, Count>,
    /// Benign flows per group.
    groups: BTreeMap<String, Count>,
    /// Alerted flows per episode (capture index × kind).
    episodes: BTreeMap<(usize, String), u64>,
    /// True kind (or benign) × predicted class (or [`NOT_ALERTED`]).
    confusion: BTreeMap<String, BTreeMap<String, u64>>,
}

#[derive(Clone, Copy, Debug, Default)]
struct Count {
    flows: u64,
    alerted: u64,
}

impl Count {
    fn add(&mut self, alerted: bool) {
        self.flows += 1;
        self.alerted += u64::from(alerted);
    }

    fn rate(self) -> Rate {
        Rate {
            flows: self.flows,
            alerted: self.alerted,
            rate: ratio(self.alerted, self.flows),
        }
    }
}

/// `a / b`, or `None` when `b` is 0.
fn ratio(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

impl Tally {
    /// Records that capture `capture` holds an attack run of `kind` (so it
    /// counts among that kind's captures and episodes even when none of its
    /// flows turns out to be the attack).
    pub fn episode(&mut self, capture: usize, kind: &str) {
        self.episodes
            .entry((capture, kind.to_string()))
            .or_insert(0);
        self.kinds.entry(kind.to_string()).or_default();
    }

    /// Adds one flow of capture `capture` (benign group `group`): its true
    /// kind (`None`: benign) and the class the model alerted with (`None`:
    /// no alert).
    pub fn flow(&mut self, capture: usize, group: &str, truth: Option<&str>, alert: Option<&str>) {
        let alerted = alert.is_some();
        match truth {
            Some(kind) => {
                self.kinds.entry(kind.to_string()).or_default().add(alerted);
                *self
                    .episodes
                    .entry((capture, kind.to_string()))
                    .or_insert(0) += u64::from(alerted);
            }
            None => self
                .groups
                .entry(group.to_string())
                .or_default()
                .add(alerted),
        }
        let row = self
            .confusion
            .entry(truth.unwrap_or(BENIGN).to_string())
            .or_default();
        *row.entry(alert.unwrap_or(NOT_ALERTED).to_string())
            .or_insert(0) += 1;
    }

    /// The metrics of the flows added so far.
    pub fn finish(&self) -> Metrics {
        let mut kinds = BTreeMap::new();
        for (kind, count) in &self.kinds {
            let alerts: Vec<u64> = self
                .episodes
                .iter()
                .filter(|((_, k), _)| k == kind)
                .map(|(_, &n)| n)
                .collect();
            let hit = alerts.iter().filter(|&&n| n > 0).count() as u64;
            kinds.insert(
                kind.clone(),
                KindMetrics {
                    flows: count.flows,
                    alerted: count.alerted,
                    recall: ratio(count.alerted, count.flows),
                    captures: alerts.len() as u64,
                    captures_hit: hit,
                    files_hit_rate: ratio(hit, alerts.len() as u64),
                    alerts_per_episode: EpisodeStats::of(&alerts),
                },
            );
        }
        let recalls: Vec<f64> = kinds.values().filter_map(|k| k.recall).collect();
        let mean_recall =
            (!recalls.is_empty()).then(|| recalls.iter().sum::<f64>() / recalls.len() as f64);
        let pooled = self.groups.values().fold(Count::default(), |a, c| Count {
            flows: a.flows + c.flows,
            alerted: a.alerted + c.alerted,
        });
        let all_episodes: Vec<u64> = self.episodes.values().copied().collect();
        let alerts = self
            .confusion
            .values()
            .flat_map(|row| row.iter())
            .filter(|(p, _)| p.as_str() != NOT_ALERTED)
            .map(|(_, &n)| n)
            .sum();
        Metrics {
            kinds,
            mean_recall,
            benign: BenignMetrics {
                flows: pooled.flows,
                alerted: pooled.alerted,
                fpr: ratio(pooled.alerted, pooled.flows),
                groups: self
                    .groups
                    .iter()
                    .map(|(g, c)| (g.clone(), c.rate()))
                    .collect(),
            },
            alerts_per_episode: EpisodeStats::of(&all_episodes),
            alerts,
            confusion: self.confusion.clone(),
        }
    }
}

/// One model's metrics (`eval.json`'s `results[].metrics`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Metrics {
    /// Per attack kind.
    pub kinds: BTreeMap<String, KindMetrics>,
    /// The mean of the per-kind flow recalls (kinds with flows only).
    pub mean_recall: Option<f64>,
    /// Benign flows.
    pub benign: BenignMetrics,
    /// Alerted flows per episode (capture × kind), over every episode.
    pub alerts_per_episode: EpisodeStats,
    /// Alerted flows, attack and benign.
    pub alerts: u64,
    /// True kind (or `benign`) → predicted class (or `none`: no alert) →
    /// flows.
    pub confusion: BTreeMap<String, BTreeMap<String, u64>>,
}

/// One attack kind's numbers.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KindMetrics {
    /// Flows of the kind.
    pub flows: u64,
    /// Of which alerted.
    pub alerted: u64,
    /// `alerted / flows`.
    pub recall: Option<f64>,
    /// Captures holding an attack run of the kind.
    pub captures: u64,
    /// Of which at least one flow of the kind alerted.
    pub captures_hit: u64,
    /// `captures_hit / captures`.
    pub files_hit_rate: Option<f64>,
    /// Alerted flows per episode of the kind.
    pub alerts_per_episode: EpisodeStats,
}

/// Benign flows and the alerts among them.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BenignMetrics {
    /// Benign flows (benign captures and the background of attack ones).
    pub flows: u64,
    /// Of which alerted.
    pub alerted: u64,
    /// `alerted / flows`: the false-positive rate.
    pub fpr: Option<f64>,
    /// The same per benign group.
    pub groups: BTreeMap<String, Rate>,
}

/// Flows, alerted flows and their ratio.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Rate {
    /// Flows.
    pub flows: u64,
    /// Of which alerted.
    pub alerted: u64,
    /// `alerted / flows`.
    pub rate: Option<f64>,
}

/// Alerted flows per attack episode.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct EpisodeStats {
    /// Episodes.
    pub episodes: u64,
    /// Mean alerted flows per episode.
    pub mean: Option<f64>,
    /// Most alerted flows in one episode.
    pub max: u64,
}

impl EpisodeStats {
    fn of(alerts: &[u64]) -> Self {
        EpisodeStats {
            episodes: alerts.len() as u64,
            mean: ratio(alerts.iter().sum(), alerts.len() as u64),
            max: alerts.iter().copied().max().unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two port-scan captures (one missed entirely), one UDP flood, benign
    /// flows in two groups and in the background of an attack capture.
    fn tally() -> Tally {
        let mut t = Tally::default();
        t.episode(0, "portscan");
        t.episode(1, "portscan");
        t.episode(2, "udpflood");
        t.episode(3, "sshbrute"); // labelled, but no flow matched
        for i in 0..4 {
            let alert = (i < 3).then_some("Portscan");
            t.flow(0, "attack/portscan", Some("portscan"), alert);
        }
        t.flow(0, "attack/portscan", None, Some("DDoS"));
        t.flow(0, "attack/portscan", None, None);
        t.flow(1, "attack/portscan", Some("portscan"), None);
        t.flow(2, "attack/udpflood", Some("udpflood"), Some("DDoS"));
        t.flow(2, "attack/udpflood", Some("udpflood"), Some("DoS Hulk"));
        for i in 0..8 {
            let alert = (i == 0).then_some("Portscan");
            t.flow(4, "benign", None, alert);
        }
        t.flow(5, "benign:lan", None, None);
        t
    }

    #[test]
    fn recall_files_and_episodes_per_kind() {
        let m = tally().finish();
        let ps = &m.kinds["portscan"];
        assert_eq!((ps.flows, ps.alerted), (5, 3));
        assert_eq!(ps.recall, Some(0.6));
        assert_eq!((ps.captures, ps.captures_hit), (2, 1));
        assert_eq!(ps.files_hit_rate, Some(0.5));
        assert_eq!(
            ps.alerts_per_episode,
            EpisodeStats {
                episodes: 2,
                mean: Some(1.5),
                max: 3
            }
        );
        let udp = &m.kinds["udpflood"];
        assert_eq!((udp.flows, udp.alerted, udp.recall), (2, 2, Some(1.0)));
        let ssh = &m.kinds["sshbrute"];
        assert_eq!(
            (ssh.flows, ssh.recall, ssh.captures, ssh.captures_hit),
            (0, None, 1, 0)
        );
        // Mean over the kinds with flows: (0.6 + 1.0) / 2.
        assert_eq!(m.mean_recall, Some(0.8));
        assert_eq!(
            m.alerts_per_episode,
            EpisodeStats {
                episodes: 4,
                mean: Some(5.0 / 4.0),
                max: 3
            }
        );
        assert_eq!(m.alerts, 3 + 2 + 1 + 1);
    }

    #[test]
    fn benign_rate_pooled_and_per_group() {
        let m = tally().finish();
        assert_eq!((m.benign.flows, m.benign.alerted), (11, 2));
        assert_eq!(m.benign.fpr, Some(2.0 / 11.0));
        let g = &m.benign.groups;
        assert_eq!(
            g.keys().collect::<Vec<_>>(),
            ["attack/portscan", "benign", "benign:lan"]
        );
        assert_eq!(
            g["attack/portscan"],
            Rate {
                flows: 2,
                alerted: 1,
                rate: Some(0.5)
            }
        );
        assert_eq!(
            g["benign"],
            Rate {
                flows: 8,
                alerted: 1,
                rate: Some(0.125)
            }
        );
        assert_eq!(g["benign:lan"].rate, Some(0.0));
    }

    #[test]
    fn confusion_rows_sum_to_flows() {
        let m = tally().finish();
        let row = |k: &str| m.confusion[k].clone().into_iter().collect::<Vec<_>>();
        assert_eq!(
            row("portscan"),
            [("Portscan".into(), 3), ("none".into(), 2)]
        );
        assert_eq!(
            row("udpflood"),
            [("DDoS".into(), 1), ("DoS Hulk".into(), 1)]
        );
        assert_eq!(
            row("benign"),
            [
                ("DDoS".into(), 1),
                ("Portscan".into(), 1),
                ("none".into(), 9)
            ]
        );
        assert!(!m.confusion.contains_key("sshbrute"));
    }

    #[test]
    fn nothing_added_gives_no_rates() {
        let m = Tally::default().finish();
        assert!(m.kinds.is_empty());
        assert_eq!(m.mean_recall, None);
        assert_eq!(m.benign.fpr, None);
        assert_eq!(
            m.alerts_per_episode,
            EpisodeStats {
                episodes: 0,
                mean: None,
                max: 0
            }
        );
    }
}
