//! Which flows of a deployment's captures are attacks, and of which kind.
//!
//! `tapstream eval` scores a detector on traffic someone labelled by hand,
//! and labels come at the granularity people can give them: a whole capture
//! ("everything in `attack/portscan/` is a port scan"), or an attack run
//! inside a capture that also holds background traffic (the attacker's
//! addresses and the run's start and end). This module turns either form
//! into one rule set per capture and decides, per flow, its kind or benign:
//!
//! - the directory layout `DIR/benign/**` and `DIR/attack/<kind>/**`: every
//!   flow of a capture under `attack/<kind>` is that kind;
//! - a labels TSV (the format of the project's lab captures, `LABELS.tsv`):
//!   `attacker_ips` `-` labels the whole capture; addresses label the flows
//!   with an attacker endpoint that start within the run's window, widened
//!   by [`WINDOW_SLACK_US`] on each side; anything else (spoofed sources,
//!   e.g. `random-spoofed (--rand-source)`) labels the flows whose responder
//!   is `victim_ip`. Every other flow of the capture is benign background.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};

use tapstream_ingest::FlowMeta;

/// The label of benign traffic (in the TSV's `label` column, any case).
pub const BENIGN: &str = "benign";

/// How far before its start and after its end an attack run's window
/// reaches: a flow may have opened a little before the tool's recorded
/// start, and clocks of the labeller and the capture differ slightly.
pub const WINDOW_SLACK_US: i64 = 5_000_000;

/// Columns a labels TSV must have (others are ignored).
pub const TSV_COLUMNS: [&str; 6] = [
    "path",
    "label",
    "attacker_ips",
    "victim_ip",
    "start_epoch",
    "end_epoch",
];

/// Why the labels could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LabelError {
    /// A file or directory could not be read.
    #[error("reading {}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TSV's header lacks a column.
    #[error("{}: the header has no `{column}` column (it needs {})", file.display(), TSV_COLUMNS.join(", "))]
    Header {
        /// The TSV.
        file: PathBuf,
        /// The missing column.
        column: &'static str,
    },
    /// A TSV line is malformed.
    #[error("{}, line {line}: {reason}", file.display())]
    Line {
        /// The TSV.
        file: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The directory is not laid out as `benign/` and `attack/<kind>/`.
    #[error("{}: {reason}", dir.display())]
    Layout {
        /// The data directory.
        dir: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Which flows of a capture an attack run covers.
#[derive(Clone, Debug, PartialEq)]
pub enum Rule {
    /// Every flow.
    Whole,
    /// Flows with an endpoint among `attackers` that start in
    /// `[from_us, to_us]` (µs since the epoch, slack included).
    Attackers {
        /// The attacker addresses.
        attackers: Vec<IpAddr>,
        /// Earliest flow start.
        from_us: i64,
        /// Latest flow start.
        to_us: i64,
    },
    /// Flows whose responder (forward destination) is the victim: the
    /// sources were spoofed.
    Victim(IpAddr),
}

/// One attack run in a capture.
#[derive(Clone, Debug, PartialEq)]
pub struct Episode {
    /// The attack kind (never benign).
    pub kind: String,
    /// Which flows it covers.
    pub rule: Rule,
}

impl Rule {
    fn covers(&self, m: &FlowMeta) -> bool {
        match self {
            Rule::Whole => true,
            Rule::Attackers {
                attackers,
                from_us,
                to_us,
            } => {
                (*from_us..=*to_us).contains(&m.start_us)
                    && (attackers.contains(&m.src_ip()) || attackers.contains(&m.dst_ip()))
            }
            Rule::Victim(victim) => m.dst_ip() == *victim,
        }
    }
}

/// A labelled capture.
#[derive(Clone, Debug, PartialEq)]
pub struct Capture {
    /// The file.
    pub path: PathBuf,
    /// Its path relative to the data directory, `/`-separated.
    pub rel: String,
    /// Its benign group (see [`group_of`]).
    pub group: String,
    /// Its attack runs, in label order; none for a benign capture.
    pub episodes: Vec<Episode>,
}

impl Capture {
    /// The kind of flow `m`: the first attack run that covers it, or `None`
    /// for benign.
    pub fn kind_of(&self, m: &FlowMeta) -> Option<&str> {
        self.episodes
            .iter()
            .find(|e| e.rule.covers(m))
            .map(|e| e.kind.as_str())
    }

    /// The attack kinds of the capture, once each, sorted.
    pub fn kinds(&self) -> BTreeSet<&str> {
        self.episodes.iter().map(|e| e.kind.as_str()).collect()
    }
}

/// Where the labels came from.
#[derive(Clone, Debug, PartialEq)]
pub enum LabelSource {
    /// The directory layout.
    Layout,
    /// A labels TSV.
    Tsv(PathBuf),
}

/// The labelled captures of a data directory.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// The data directory.
    pub root: PathBuf,
    /// Where the labels came from.
    pub source: LabelSource,
    /// The captures, in path order.
    pub captures: Vec<Capture>,
}

/// The captures of `dir`, labelled by `tsv`, else by `dir/LABELS.tsv` when
/// it exists, else by the directory layout.
pub fn discover(dir: &Path, tsv: Option<&Path>) -> Result<Dataset, LabelError> {
    if !dir.is_dir() {
        return Err(LabelError::Layout {
            dir: dir.to_path_buf(),
            reason: "not a directory".into(),
        });
    }
    let default_tsv = dir.join("LABELS.tsv");
    let tsv = tsv
        .map(Path::to_path_buf)
        .or_else(|| default_tsv.is_file().then_some(default_tsv));
    let (source, captures) = match tsv {
        Some(file) => {
            let text = std::fs::read_to_string(&file).map_err(|source| LabelError::Io {
                path: file.clone(),
                source,
            })?;
            let captures = parse_tsv(dir, &file, &text)?;
            (LabelSource::Tsv(file), captures)
        }
        None => (LabelSource::Layout, from_layout(dir)?),
    };
    Ok(Dataset {
        root: dir.to_path_buf(),
        source,
        captures,
    })
}

/// True for a file name tapstream reads as a capture: `.pcap`, `.pcapng`
/// or `.cap`, optionally followed by `.gz`.
pub fn is_capture_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    [".pcap", ".pcapng", ".cap"]
        .iter()
        .any(|ext| name.ends_with(ext))
}

/// The benign group of a capture at `rel` (relative to the data
/// directory): its parent directory, and for a file named
/// `source__name.pcap` also the source, as `parent:source`.
pub fn group_of(rel: &str) -> String {
    let (parent, name) = rel.rsplit_once('/').unwrap_or((".", rel));
    match name.split_once("__") {
        Some((source, rest)) if !source.is_empty() && !rest.is_empty() => {
            format!("{parent}:{source}")
        }
        _ => parent.to_string(),
    }
}

/// `path` relative to `root`, `/`-separated.
fn relative(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// Every capture under `dir`, recursively, sorted.
pub fn captures_under(dir: &Path) -> Result<Vec<PathBuf>, LabelError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|source| LabelError::Io {
            path: d.clone(),
            source,
        })?;
        for e in entries {
            let e = e.map_err(|source| LabelError::Io {
                path: d.clone(),
                source,
            })?;
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if is_capture_name(&e.file_name().to_string_lossy()) {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The captures of the layout `dir/benign/**` and `dir/attack/<kind>/**`.
pub fn from_layout(dir: &Path) -> Result<Vec<Capture>, LabelError> {
    let layout = |reason: String| LabelError::Layout {
        dir: dir.to_path_buf(),
        reason,
    };
    let (benign, attack) = (dir.join(BENIGN), dir.join("attack"));
    if !benign.is_dir() && !attack.is_dir() {
        return Err(layout(
            "no labels: neither LABELS.tsv nor benign/ or attack/<kind>/ directories".into(),
        ));
    }
    let mut captures = Vec::new();
    if benign.is_dir() {
        for path in captures_under(&benign)? {
            captures.push(capture(dir, path, Vec::new()));
        }
    }
    if attack.is_dir() {
        for path in captures_under(&attack)? {
            let rel = relative(&attack, &path);
            let Some((kind, _)) = rel.split_once('/') else {
                return Err(layout(format!(
                    "attack/{rel}: a capture under attack/ belongs in attack/<kind>/"
                )));
            };
            let episodes = vec![Episode {
                kind: kind.to_string(),
                rule: Rule::Whole,
            }];
            captures.push(capture(dir, path, episodes));
        }
    }
    if captures.is_empty() {
        return Err(layout(
            "no captures (.pcap, .pcapng, .cap, optionally .gz) under benign/ or attack/<kind>/"
                .into(),
        ));
    }
    captures.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(captures)
}

fn capture(root: &Path, path: PathBuf, episodes: Vec<Episode>) -> Capture {
    let rel = relative(root, &path);
    Capture {
        group: group_of(&rel),
        rel,
        path,
        episodes,
    }
}

/// The captures a labels TSV (`text`, read from `file`) lists; paths are
/// relative to `root`. Several lines may name one capture (several attack
/// runs); a flow takes the kind of the first line whose run covers it.
pub fn parse_tsv(root: &Path, file: &Path, text: &str) -> Result<Vec<Capture>, LabelError> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r')))
        .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'));
    let Some((_, header)) = lines.next() else {
        return Err(LabelError::Header {
            file: file.to_path_buf(),
            column: "path",
        });
    };
    let names: Vec<&str> = header.split('\t').map(str::trim).collect();
    let mut cols = [0usize; TSV_COLUMNS.len()];
    for (slot, column) in cols.iter_mut().zip(TSV_COLUMNS) {
        *slot = names
            .iter()
            .position(|n| *n == column)
            .ok_or(LabelError::Header {
                file: file.to_path_buf(),
                column,
            })?;
    }
    let mut captures: Vec<Capture> = Vec::new();
    for (line, text) in lines {
        let bad = |reason: String| LabelError::Line {
            file: file.to_path_buf(),
            line,
            reason,
        };
        let cells: Vec<&str> = text.split('\t').map(str::trim).collect();
        if cells.len() != names.len() {
            return Err(bad(format!(
                "{} tab-separated fields, the header has {}",
                cells.len(),
                names.len()
            )));
        }
        let cell = |i: usize| {
            cols.get(i)
                .and_then(|&c| cells.get(c))
                .copied()
                .unwrap_or("")
        };
        let row = Row {
            path: cell(0),
            label: cell(1),
            attackers: cell(2),
            victim: cell(3),
            start: cell(4),
            end: cell(5),
        };
        let (rel, episode) = row.parse().map_err(bad)?;
        match captures.iter_mut().find(|c| c.rel == rel) {
            Some(c) => c.episodes.extend(episode),
            None => {
                let path = root.join(&rel);
                captures.push(capture(root, path, episode.into_iter().collect()));
            }
        }
    }
    if captures.is_empty() {
        return Err(LabelError::Layout {
            dir: file.to_path_buf(),
            reason: "the labels list no captures".into(),
        });
    }
    Ok(captures)
}

/// The columns of one TSV line that matter.
struct Row<'a> {
    path: &'a str,
    label: &'a str,
    attackers: &'a str,
    victim: &'a str,
    start: &'a str,
    end: &'a str,
}

impl Row<'_> {
    /// The capture's relative path and its attack run (none for benign).
    fn parse(&self) -> Result<(String, Option<Episode>), String> {
        let rel = clean_path(self.path)?;
        if self.label.is_empty() {
            return Err("empty label".into());
        }
        let victim = match self.victim {
            "" | "-" => None,
            v => Some(
                v.parse::<IpAddr>()
                    .map_err(|_| format!("victim_ip `{v}` is not an address"))?,
            ),
        };
        if self.label.eq_ignore_ascii_case(BENIGN) {
            return Ok((rel, None));
        }
        let rule = self.rule(victim)?;
        let kind = self.label.to_string();
        Ok((rel, Some(Episode { kind, rule })))
    }

    fn rule(&self, victim: Option<IpAddr>) -> Result<Rule, String> {
        if self.attackers == "-" {
            return Ok(Rule::Whole);
        }
        let items: Vec<&str> = self
            .attackers
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        let addrs: Vec<IpAddr> = items.iter().filter_map(|s| s.parse().ok()).collect();
        if addrs.is_empty() {
            // Spoofed or unknown sources: the victim's side decides.
            return match victim {
                Some(v) => Ok(Rule::Victim(v)),
                None => Err(format!(
                    "attacker_ips `{}` names no address, so the flows to victim_ip are the attack, but victim_ip is empty",
                    self.attackers
                )),
            };
        }
        if addrs.len() != items.len() {
            return Err(format!(
                "attacker_ips `{}` mixes addresses and other text",
                self.attackers
            ));
        }
        let start = epoch_us("start_epoch", self.start)?;
        let end = epoch_us("end_epoch", self.end)?;
        if end < start {
            return Err(format!(
                "end_epoch {} is before start_epoch {}",
                self.end, self.start
            ));
        }
        Ok(Rule::Attackers {
            attackers: addrs,
            from_us: start.saturating_sub(WINDOW_SLACK_US),
            to_us: end.saturating_add(WINDOW_SLACK_US),
        })
    }
}

/// A TSV path: relative, without `..`, `/`-separated.
fn clean_path(p: &str) -> Result<String, String> {
    if p.is_empty() {
        return Err("empty path".into());
    }
    let path = Path::new(p);
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            Component::CurDir => {}
            _ => {
                return Err(format!(
                    "path `{p}` must be relative to the data directory, without `..`"
                ))
            }
        }
    }
    if parts.is_empty() {
        return Err(format!("path `{p}` names no file"));
    }
    Ok(parts.join("/"))
}

/// Seconds since the epoch (decimals allowed) as µs.
fn epoch_us(column: &str, s: &str) -> Result<i64, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{column} `{s}` is not a number of seconds"))?;
    if !secs.is_finite() || !(0.0..1e11).contains(&secs) {
        return Err(format!("{column} `{s}` is out of range"));
    }
    Ok((secs * 1e6).round() as i64)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const HEADER: &str =
        "set\tpath\tlabel\ttool\tattacker_ips\tvictim_ip\tstart_epoch\tend_epoch\tnotes";

    fn tsv(lines: &[&str]) -> Result<Vec<Capture>, LabelError> {
        let text = std::iter::once(HEADER)
            .chain(lines.iter().copied())
            .collect::<Vec<_>>()
            .join("\n");
        parse_tsv(Path::new("/data"), Path::new("/data/LABELS.tsv"), &text)
    }

    pub(crate) fn flow(src: [u8; 4], dst: [u8; 4], start_s: f64) -> FlowMeta {
        let mut m = FlowMeta {
            flow_id: 1,
            src: [0; 16],
            dst: [0; 16],
            sport: 1000,
            dport: 80,
            proto: 6,
            v6: false,
            icmp_type: 0,
            icmp_code: 0,
            start_us: (start_s * 1e6) as i64,
            last_us: (start_s * 1e6) as i64,
            pkts_fwd: 1,
            pkts_bwd: 0,
            bytes_fwd: 60,
            bytes_bwd: 0,
            reason: tapstream_ingest::EndReason::EndOfInput,
        };
        m.src[..4].copy_from_slice(&src);
        m.dst[..4].copy_from_slice(&dst);
        m
    }

    fn ip(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    #[test]
    fn tsv_rows_become_rules() {
        let caps = tsv(&[
            "A\tbenign/web.pcap\tbenign\tcurl\t-\t198.18.0.2\t100.0\t200.0\tx",
            "A\tattack/scan/s.pcap\tportscan\tnmap\t198.18.0.1\t198.18.0.2\t1000.5\t1001\tx",
            "A\tattack/syn/spoof.pcap\tsynflood\thping3\trandom-spoofed (--rand-source)\t198.18.0.2\t1\t2\tx",
            "A\tattack/all.pcap\tudpflood\thping3\t-\t-\t-\t-\tx",
        ])
        .unwrap();
        assert_eq!(caps.len(), 4);
        assert_eq!(caps[0].rel, "benign/web.pcap");
        assert_eq!(caps[0].path, Path::new("/data/benign/web.pcap"));
        assert!(caps[0].episodes.is_empty());
        assert_eq!(
            caps[1].episodes,
            vec![Episode {
                kind: "portscan".into(),
                rule: Rule::Attackers {
                    attackers: vec![ip(198, 18, 0, 1)],
                    from_us: 995_500_000,
                    to_us: 1_006_000_000,
                },
            }]
        );
        assert_eq!(caps[2].episodes[0].rule, Rule::Victim(ip(198, 18, 0, 2)));
        assert_eq!(caps[3].episodes[0].rule, Rule::Whole);
        assert_eq!(caps[3].group, "attack");
    }

    #[test]
    fn attacker_window_is_widened_by_five_seconds() {
        let caps = tsv(&["A\tx.pcap\tportscan\tnmap\t10.0.0.1, 10.0.0.9\t10.0.0.2\t1000\t1010\tx"])
            .unwrap();
        let c = &caps[0];
        let atk = [10, 0, 0, 1];
        let other = [10, 0, 0, 2];
        assert_eq!(c.kind_of(&flow(atk, other, 995.0)), Some("portscan"));
        assert_eq!(c.kind_of(&flow(atk, other, 994.999)), None);
        assert_eq!(
            c.kind_of(&flow(other, atk, 1015.0)),
            Some("portscan"),
            "either endpoint"
        );
        assert_eq!(c.kind_of(&flow(atk, other, 1015.001)), None);
        assert_eq!(
            c.kind_of(&flow([10, 0, 0, 9], [8, 8, 8, 8], 1005.0)),
            Some("portscan")
        );
        assert_eq!(
            c.kind_of(&flow(other, [8, 8, 8, 8], 1005.0)),
            None,
            "background"
        );
    }

    #[test]
    fn spoofed_sources_label_flows_to_the_victim() {
        let caps = tsv(&[
            "A\tsyn.pcap\tsynflood\thping3\trandom-spoofed (--rand-source)\t198.18.0.2\t1\t2\tx",
        ])
        .unwrap();
        let c = &caps[0];
        let victim = [198, 18, 0, 2];
        assert_eq!(
            c.kind_of(&flow([7, 7, 7, 7], victim, 50.0)),
            Some("synflood")
        );
        assert_eq!(c.kind_of(&flow(victim, [7, 7, 7, 7], 50.0)), None);
    }

    #[test]
    fn several_lines_for_one_capture_are_several_runs() {
        let caps = tsv(&[
            "A\tmix.pcap\tportscan\tnmap\t10.0.0.1\t10.0.0.2\t100\t110\tx",
            "A\tmix.pcap\tsshbrute\thydra\t10.0.0.1\t10.0.0.2\t200\t210\tx",
        ])
        .unwrap();
        assert_eq!(caps.len(), 1);
        let c = &caps[0];
        assert_eq!(
            c.kind_of(&flow([10, 0, 0, 1], [10, 0, 0, 2], 105.0)),
            Some("portscan")
        );
        assert_eq!(
            c.kind_of(&flow([10, 0, 0, 1], [10, 0, 0, 2], 205.0)),
            Some("sshbrute")
        );
        assert_eq!(c.kind_of(&flow([10, 0, 0, 1], [10, 0, 0, 2], 150.0)), None);
        assert_eq!(
            c.kinds().into_iter().collect::<Vec<_>>(),
            ["portscan", "sshbrute"]
        );
    }

    #[test]
    fn malformed_lines_name_their_line() {
        let cases = [
            (
                "A\tx.pcap\tportscan\tnmap\t10.0.0.1\t10.0.0.2\tsoon\t110\tx",
                "start_epoch `soon`",
            ),
            (
                "A\tx.pcap\tportscan\tnmap\t10.0.0.1\t10.0.0.2\t110\t100\tx",
                "before start_epoch",
            ),
            (
                "A\tx.pcap\tportscan\tnmap\t10.0.0.1\t10.0.0.2\t100",
                "7 tab-separated fields",
            ),
            (
                "A\t../x.pcap\tportscan\tnmap\t-\t-\t-\t-\tx",
                "without `..`",
            ),
            (
                "A\tx.pcap\tportscan\tnmap\t10.0.0.1,bogus\t-\t1\t2\tx",
                "mixes addresses",
            ),
            (
                "A\tx.pcap\tsynflood\thping3\tspoofed\t-\t1\t2\tx",
                "victim_ip is empty",
            ),
            (
                "A\tx.pcap\tsynflood\thping3\tspoofed\tvictim\t1\t2\tx",
                "victim_ip `victim`",
            ),
            ("A\tx.pcap\t\thping3\t-\t-\t1\t2\tx", "empty label"),
        ];
        for (line, want) in cases {
            let e = tsv(&["A\tok.pcap\tbenign\tcurl\t-\t-\t-\t-\tx", line]).unwrap_err();
            let msg = e.to_string();
            assert!(msg.starts_with("/data/LABELS.tsv, line 3: "), "{msg}");
            assert!(msg.contains(want), "{msg} lacks {want}");
        }
        let e = parse_tsv(Path::new("/d"), Path::new("L.tsv"), "path\tlabel\n").unwrap_err();
        assert!(e.to_string().contains("no `attacker_ips` column"), "{e}");
    }

    #[test]
    fn groups_and_capture_names() {
        assert_eq!(group_of("benign/http.pcap"), "benign");
        assert_eq!(
            group_of("benign/office/lan__mon.pcap.gz"),
            "benign/office:lan"
        );
        assert_eq!(group_of("top.pcap"), ".");
        assert_eq!(group_of("benign/__x.pcap"), "benign");
        for name in ["a.pcap", "b.PCAPNG", "c.cap", "d.pcap.gz", "e.pcapng.gz"] {
            assert!(is_capture_name(name), "{name}");
        }
        for name in ["LABELS.tsv", "notes.txt", "x.gz", "pcap"] {
            assert!(!is_capture_name(name), "{name}");
        }
    }

    #[test]
    fn layout_labels_whole_captures() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for f in [
            "benign/lan__a.pcap",
            "benign/sub/b.pcapng.gz",
            "benign/readme.txt",
            "attack/portscan/s.pcap",
            "attack/portscan/deep/t.pcap",
            "attack/udpflood/u.pcap",
        ] {
            let p = root.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"").unwrap();
        }
        let ds = discover(root, None).unwrap();
        assert_eq!(ds.source, LabelSource::Layout);
        let got: Vec<(&str, &str, Vec<&str>)> = ds
            .captures
            .iter()
            .map(|c| {
                (
                    c.rel.as_str(),
                    c.group.as_str(),
                    c.kinds().into_iter().collect(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "attack/portscan/deep/t.pcap",
                    "attack/portscan/deep",
                    vec!["portscan"]
                ),
                (
                    "attack/portscan/s.pcap",
                    "attack/portscan",
                    vec!["portscan"]
                ),
                (
                    "attack/udpflood/u.pcap",
                    "attack/udpflood",
                    vec!["udpflood"]
                ),
                ("benign/lan__a.pcap", "benign:lan", vec![]),
                ("benign/sub/b.pcapng.gz", "benign/sub", vec![]),
            ]
        );
        let c = &ds.captures[0];
        assert_eq!(
            c.kind_of(&flow([1, 1, 1, 1], [2, 2, 2, 2], 0.0)),
            Some("portscan")
        );
        // A capture directly under attack/ has no kind.
        std::fs::write(root.join("attack/loose.pcap"), b"").unwrap();
        let e = discover(root, None).unwrap_err().to_string();
        assert!(e.contains("attack/loose.pcap"), "{e}");
        // LABELS.tsv wins over the layout.
        std::fs::write(
            root.join("LABELS.tsv"),
            format!("{HEADER}\nA\tbenign/lan__a.pcap\tbenign\tc\t-\t-\t-\t-\tx\n"),
        )
        .unwrap();
        let ds = discover(root, None).unwrap();
        assert_eq!(ds.source, LabelSource::Tsv(root.join("LABELS.tsv")));
        assert_eq!(ds.captures.len(), 1);
    }
}
