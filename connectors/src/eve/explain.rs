//! Why a flow was flagged, in units a person can check: the host and
//! service context features that stand out most against the model's benign
//! baseline, as rates with the addresses and port they are about, e.g.
//! "1259 flows/s from 198.18.0.9 to 198.18.0.2 port 22/TCP (benign p99:
//! 0.4/s)".
//!
//! The baseline is the model's (its contract's `tapstream.baseline`: the
//! median and 99th percentile of each context feature over the benign flows
//! it was trained on). A feature explains a flow when it is above that p99;
//! the three furthest above (by `(value + 1) / (p99 + 1)`) are kept, one
//! time scale per statistic (its furthest above), so three different facts
//! are told rather than one fact at three scales.

use tapstream_ingest::FlowMeta;
use tapstream_kernels::context::{CONTEXT_FEATURES, LAMBDAS, NUM_CONTEXT, SCALES};
use tapstream_kernels::schema::{FEATURES, NUM_FEATURES};

use super::format::{push_escaped, push_f32, push_ip, push_str, push_u64};
use super::proto_name;

/// Features an explanation keeps at most.
pub const MAX_ITEMS: usize = 3;

/// One context feature of a flow against its benign baseline.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Item {
    /// Index in `kernels::context::CONTEXT_FEATURES`.
    pub feature: u8,
    /// The flow's value (a damped count).
    pub value: f32,
    /// Median over the model's benign training flows.
    pub median: f32,
    /// 99th percentile over the same flows.
    pub p99: f32,
}

impl Item {
    /// The feature's name.
    pub fn name(&self) -> &'static str {
        CONTEXT_FEATURES
            .get(usize::from(self.feature))
            .copied()
            .unwrap_or("?")
    }

    /// `x` (a damped count at this feature's scale) as a steady rate per
    /// second: a rate `r` reads `r / (λ ln 2)` (`kernels/FEATURES.md`).
    pub fn per_second(&self, x: f32) -> f32 {
        let scale = usize::from(self.feature) % SCALES;
        let lambda = LAMBDAS.get(scale).copied().unwrap_or(1.0);
        (f64::from(x) * lambda * std::f64::consts::LN_2) as f32
    }

    /// The half-life of its scale, in seconds.
    fn half_life(&self) -> u32 {
        [1, 10, 100]
            .get(usize::from(self.feature) % SCALES)
            .copied()
            .unwrap_or(1)
    }
}

/// One input feature's part in an anomaly model's score: its
/// reconstruction error.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Residual {
    /// The feature: a CIC feature index (`kernels::schema::FEATURES`), or
    /// `NUM_FEATURES` + a context feature index.
    pub column: u16,
    /// The flow's value.
    pub value: f32,
    /// Its typical benign value (the inverse signed log of the model's
    /// mean of its signed log).
    pub typical: f32,
    /// Its share of the score.
    pub share: f32,
}

impl Residual {
    /// The feature's name.
    pub fn name(&self) -> &'static str {
        let c = usize::from(self.column);
        match c.checked_sub(NUM_FEATURES) {
            None => FEATURES.get(c).map_or("?", |f| f.0),
            Some(k) => CONTEXT_FEATURES.get(k).copied().unwrap_or("?"),
        }
    }
}

/// The features that made an anomaly model's score high, largest share
/// first, with the score's error and threshold.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Residuals {
    items: [Residual; MAX_ITEMS],
    len: u8,
    /// The model's error `e` for the flow.
    pub error: f32,
    /// The error at its threshold.
    pub threshold: f32,
}

impl Residuals {
    /// The three largest of `parts` (each feature's part of `error`, in the
    /// model's input order; `columns[j]` is input `j`'s schema column,
    /// `row[j]` its value and `typical[j]` its typical value).
    pub fn of(
        parts: &[f64],
        columns: &[usize],
        row: &[f32],
        typical: &dyn Fn(usize) -> f64,
        error: f64,
        threshold: f64,
    ) -> Self {
        // The largest positive parts, the earlier feature first among
        // equals: one pass, as this runs for every flagged flow.
        let mut top = [(0usize, 0.0f64); MAX_ITEMS];
        let mut kept = 0;
        for (j, &p) in parts.iter().enumerate() {
            if p.is_nan() || p <= 0.0 {
                continue;
            }
            let at = top.iter().take(kept).take_while(|&&(_, q)| q >= p).count();
            if at == MAX_ITEMS {
                continue;
            }
            kept = (kept + 1).min(MAX_ITEMS);
            // It takes its place; the smaller ones move down one.
            let mut carry = (j, p);
            for slot in top.iter_mut().take(kept).skip(at) {
                std::mem::swap(slot, &mut carry);
            }
        }
        let part = |j: usize| parts.get(j).copied().unwrap_or(0.0);
        let mut r = Residuals {
            error: error as f32,
            threshold: threshold as f32,
            ..Residuals::default()
        };
        for (slot, &(j, _)) in r.items.iter_mut().zip(top.iter().take(kept)) {
            *slot = Residual {
                column: columns
                    .get(j)
                    .and_then(|&c| u16::try_from(c).ok())
                    .unwrap_or(u16::MAX),
                value: row.get(j).copied().unwrap_or(f32::NAN),
                typical: typical(j) as f32,
                share: (part(j) / error.max(f64::MIN_POSITIVE)) as f32,
            };
            r.len += 1;
        }
        r
    }

    /// The features, largest share first.
    pub fn items(&self) -> &[Residual] {
        self.items.get(..usize::from(self.len)).unwrap_or(&[])
    }
}

/// The features that explain a flagged flow, strongest first: context
/// features against the benign baseline, and for an anomaly model the
/// features with the largest reconstruction error.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Explanation {
    items: [Item; MAX_ITEMS],
    len: u8,
    residuals: Option<Residuals>,
}

impl Explanation {
    /// The context features of `row` above their baseline's p99, the three
    /// furthest above first; `None` when none is (or no baseline is known).
    /// `baseline[j]` is feature `j`'s `(median, p99)`.
    pub fn of(row: &[f32], baseline: &[Option<(f32, f32)>]) -> Option<Self> {
        let mut e = Explanation::default();
        for (j, (&value, b)) in row.iter().zip(baseline).enumerate().take(NUM_CONTEXT) {
            let Some((median, p99)) = *b else { continue };
            if value.partial_cmp(&p99) != Some(std::cmp::Ordering::Greater) {
                continue;
            }
            let item = Item {
                feature: u8::try_from(j).unwrap_or(u8::MAX),
                value,
                median,
                p99,
            };
            e.insert(item);
        }
        (e.len > 0).then_some(e)
    }

    /// Keeps `item` if it is among the strongest three, and the strongest
    /// scale of its statistic.
    fn insert(&mut self, item: Item) {
        let strength = |i: &Item| (i.value + 1.0) / (i.p99.max(0.0) + 1.0);
        let stat = |i: &Item| usize::from(i.feature) / SCALES;
        let len = usize::from(self.len);
        if let Some(k) = self.items().iter().position(|i| stat(i) == stat(&item)) {
            if self
                .items
                .get(k)
                .is_some_and(|old| strength(old) >= strength(&item))
            {
                return;
            }
            // Take the weaker scale out; the stronger one goes in below.
            if let Some(tail) = self.items.get_mut(k..len) {
                tail.rotate_left(1);
            }
            self.len -= 1;
            return self.insert(item);
        }
        let mut at = len;
        while at > 0
            && self
                .items
                .get(at - 1)
                .is_some_and(|p| strength(p) < strength(&item))
        {
            at -= 1;
        }
        if at >= MAX_ITEMS {
            return;
        }
        let end = len.min(MAX_ITEMS - 1);
        if let Some(tail) = self.items.get_mut(at..=end) {
            tail.rotate_right(1);
            if let Some(first) = tail.first_mut() {
                *first = item;
            }
        }
        self.len = u8::try_from((len + 1).min(MAX_ITEMS)).unwrap_or(0);
    }

    /// `e` with the anomaly model's residuals `r` (or an explanation of the
    /// residuals alone).
    pub fn with_residuals(e: Option<Self>, r: Residuals) -> Self {
        Explanation {
            residuals: Some(r),
            ..e.unwrap_or_default()
        }
    }

    /// The anomaly model's residuals, when it has them.
    pub fn residuals(&self) -> Option<&Residuals> {
        self.residuals.as_ref()
    }

    /// The features, strongest first.
    pub fn items(&self) -> &[Item] {
        self.items.get(..usize::from(self.len)).unwrap_or(&[])
    }

    /// How far the strongest feature is above its p99 (`(value + 1) /
    /// (p99 + 1)`); an episode keeps its strongest explanation.
    pub fn strength(&self) -> f32 {
        let context = self
            .items()
            .first()
            .map_or(0.0, |i| (i.value + 1.0) / (i.p99.max(0.0) + 1.0));
        // An anomaly model's error over its threshold, when that is larger.
        let anomaly = self
            .residuals
            .map_or(0.0, |r| r.error / r.threshold.max(f32::MIN_POSITIVE));
        context.max(anomaly)
    }
}

/// Appends `,"explanation":[…]` (context features) and `,"anomaly":{…}`
/// (residuals) for `flow`, each when there is something to say.
pub(super) fn push_explanation(out: &mut Vec<u8>, e: &Explanation, flow: &FlowMeta) {
    if !e.items().is_empty() {
        push_context(out, e, flow);
    }
    if let Some(r) = &e.residuals {
        push_residuals(out, r);
    }
}

/// `,"anomaly":{"error":…,"threshold":…,"features":[{feature, value,
/// typical, share, text}]}`.
fn push_residuals(out: &mut Vec<u8>, r: &Residuals) {
    out.extend_from_slice(b",\"anomaly\":{\"error\":");
    push_f32(out, r.error);
    out.extend_from_slice(b",\"threshold\":");
    push_f32(out, r.threshold);
    out.extend_from_slice(b",\"features\":[");
    for (n, item) in r.items().iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"feature\":");
        push_str(out, item.name());
        out.extend_from_slice(b",\"value\":");
        push_f32(out, item.value);
        out.extend_from_slice(b",\"typical\":");
        push_f32(out, item.typical);
        out.extend_from_slice(b",\"share\":");
        push_f32(out, (item.share * 1000.0).round() / 1000.0);
        out.extend_from_slice(b",\"text\":\"");
        push_escaped(out, item.name());
        out.extend_from_slice(b" ");
        push_number(out, item.value);
        out.extend_from_slice(b" where about ");
        push_number(out, item.typical);
        out.extend_from_slice(b" is usual here (");
        push_u64(out, (f64::from(item.share) * 100.0).round() as u64);
        out.extend_from_slice(b" % of the anomaly score)\"}");
    }
    out.extend_from_slice(b"]}");
}

/// A number as a person reads it: at most 3 significant decimals.
fn push_number(out: &mut Vec<u8>, x: f32) {
    let r = if x.abs() >= 100.0 {
        x.round()
    } else {
        (x * 100.0).round() / 100.0
    };
    let mut b = ryu::Buffer::new();
    let s = b.format(r);
    out.extend_from_slice(s.strip_suffix(".0").unwrap_or(s).as_bytes());
}

/// `,"explanation":[…]`: the context features.
fn push_context(out: &mut Vec<u8>, e: &Explanation, flow: &FlowMeta) {
    out.extend_from_slice(b",\"explanation\":[");
    for (n, item) in e.items().iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"feature\":");
        push_str(out, item.name());
        out.extend_from_slice(b",\"value\":");
        push_f32(out, item.value);
        out.extend_from_slice(b",\"per_second\":");
        push_f32(out, round1(item.per_second(item.value)));
        out.extend_from_slice(b",\"benign_median\":");
        push_f32(out, item.median);
        out.extend_from_slice(b",\"benign_p99\":");
        push_f32(out, item.p99);
        out.extend_from_slice(b",\"text\":\"");
        push_text(out, item, flow);
        out.extend_from_slice(b"\"}");
    }
    out.push(b']');
}

/// One decimal is what a person reads.
fn round1(x: f32) -> f32 {
    (x * 10.0).round() / 10.0
}

/// Whom a statistic is about.
#[derive(Clone, Copy)]
enum Whom {
    /// The flow's source host.
    Src,
    /// Its destination host.
    Dst,
    /// Its destination host, port and protocol.
    Service,
}

/// What is counted, about whom, and maybe a second party after a joining
/// word.
type StatText = (&'static str, Whom, Option<(&'static str, Whom)>);

/// Per statistic, in `kernels::context` order (one per statistic: the
/// length is checked against the schema at compile time).
const STAT_TEXT: [StatText; NUM_CONTEXT / SCALES] = [
    (" flows/s started by ", Whom::Src, None),
    (" new destinations/s contacted by ", Whom::Src, None),
    (" flows/s from ", Whom::Src, Some((" to ", Whom::Dst))),
    (
        " new ports/s tried by ",
        Whom::Src,
        Some((" on ", Whom::Dst)),
    ),
    (" flows/s from ", Whom::Src, Some((" to ", Whom::Service))),
    (" flows/s to ", Whom::Service, None),
    (" new sources/s of ", Whom::Service, None),
    (" flows/s to ", Whom::Dst, None),
    (" answered flows/s of ", Whom::Src, None),
    (" rejections/s received by ", Whom::Src, None),
    (" answers/s given by ", Whom::Dst, None),
    (" rejections/s sent by ", Whom::Dst, None),
];

/// Writes `whom` of flow `f`: an address, or address, port and protocol.
fn push_whom(out: &mut Vec<u8>, whom: Whom, f: &FlowMeta) {
    match whom {
        Whom::Src => push_ip(out, &f.src, f.v6),
        Whom::Dst => push_ip(out, &f.dst, f.v6),
        Whom::Service => {
            push_ip(out, &f.dst, f.v6);
            if matches!(f.proto, 6 | 17 | 132) {
                out.extend_from_slice(b" port ");
                push_u64(out, u64::from(f.dport));
            }
            out.push(b'/');
            match proto_name(f.proto) {
                Some(p) => push_escaped(out, p),
                None => push_u64(out, u64::from(f.proto)),
            }
        }
    }
}

/// "<rate> <what>/s <about whom> (<half-life> s scale; benign p99 <rate>/s)".
fn push_text(out: &mut Vec<u8>, item: &Item, f: &FlowMeta) {
    let rate = |out: &mut Vec<u8>, x: f32| {
        let mut b = ryu::Buffer::new();
        let r = round1(item.per_second(x));
        let s = b.format(r);
        out.extend_from_slice(s.strip_suffix(".0").unwrap_or(s).as_bytes());
    };
    rate(out, item.value);
    let (lead, first, second) = STAT_TEXT
        .get(usize::from(item.feature) / SCALES)
        .copied()
        .unwrap_or((" flows/s to ", Whom::Dst, None));
    out.extend_from_slice(lead.as_bytes());
    push_whom(out, first, f);
    if let Some((joint, whom)) = second {
        out.extend_from_slice(joint.as_bytes());
        push_whom(out, whom, f);
    }
    out.extend_from_slice(b" (");
    push_u64(out, u64::from(item.half_life()));
    out.extend_from_slice(b" s half-life; benign p99 ");
    rate(out, item.p99);
    out.extend_from_slice(b"/s)");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn baseline() -> Vec<Option<(f32, f32)>> {
        (0..NUM_CONTEXT).map(|_| Some((1.0, 10.0))).collect()
    }

    #[test]
    fn keeps_the_three_furthest_above_their_p99() {
        let mut row = [0f32; NUM_CONTEXT];
        row[0] = 50.0;
        row[1] = 40.0; // the same statistic, weaker: not told twice
        row[4] = 500.0;
        row[12] = 20.0;
        row[13] = 5_000.0;
        row[20] = 9.0; // below its p99: no explanation
        row[23] = 30.0; // fourth strongest
        let e = Explanation::of(&row, &baseline()).unwrap();
        let got: Vec<u8> = e.items().iter().map(|i| i.feature).collect();
        assert_eq!(got, [13, 4, 0]);
        row[2] = 60.0; // now the strongest scale of statistic 0
        let e = Explanation::of(&row, &baseline()).unwrap();
        let got: Vec<u8> = e.items().iter().map(|i| i.feature).collect();
        assert_eq!(got, [13, 4, 2]);
        assert!((e.strength() - 5_001.0 / 11.0).abs() < 1e-3);
    }

    #[test]
    fn nothing_above_the_baseline_explains_nothing() {
        let row = [10f32; NUM_CONTEXT];
        assert!(Explanation::of(&row, &baseline()).is_none());
        let none: Vec<Option<(f32, f32)>> = vec![None; NUM_CONTEXT];
        assert!(Explanation::of(&[1e9; NUM_CONTEXT], &none).is_none());
        let mut nan = [f32::NAN; NUM_CONTEXT];
        nan[1] = f32::INFINITY;
        let e = Explanation::of(&nan, &baseline()).unwrap();
        assert_eq!(e.items().len(), 1);
    }

    #[test]
    fn every_statistic_says_what_it_counts() {
        // 198.18.0.1 -> 198.18.0.2:22.
        let f = crate::episode::tests::flow(1, 0xC612_0001, 0xC612_0002, 22, 0);
        let text = |name: &str| {
            let feature = CONTEXT_FEATURES.iter().position(|n| *n == name).unwrap();
            let item = Item {
                feature: u8::try_from(feature).unwrap(),
                value: 100.0,
                median: 0.0,
                p99: 1.0,
            };
            let mut out = Vec::new();
            push_text(&mut out, &item, &f);
            String::from_utf8(out).unwrap()
        };
        assert!(
            text("ctx_src_rejected_1s").starts_with("69.3 rejections/s received by 198.18.0.1 "),
            "{}",
            text("ctx_src_rejected_1s")
        );
        assert!(text("ctx_dst_answered_10s").contains("answers/s given by 198.18.0.2 "));
        assert!(text("ctx_dst_rejected_100s").contains("rejections/s sent by 198.18.0.2 "));
        assert!(text("ctx_src_answered_1s").contains("answered flows/s of 198.18.0.1 "));
    }

    #[test]
    fn rates_follow_the_scale() {
        let i = |feature| Item {
            feature,
            value: 100.0,
            median: 0.0,
            p99: 1.0,
        };
        assert!((i(0).per_second(100.0) - 69.3).abs() < 0.1);
        assert!((i(1).per_second(100.0) - 6.93).abs() < 0.01);
        assert!((i(2).per_second(100.0) - 0.693).abs() < 0.001);
    }

    proptest::proptest! {
        /// The one-pass selection keeps what sorting every part would:
        /// the largest positive parts, the earlier feature first among
        /// equals; zeros, negatives and NaN never.
        #[test]
        fn residuals_keep_the_largest_parts(
            picks in proptest::collection::vec(0usize..6, 0..40),
        ) {
            let values = [0.0, -1.0, f64::NAN, 0.5, 2.0, 2.0];
            let parts: Vec<f64> = picks.iter().map(|&k| values[k]).collect();
            let columns: Vec<usize> = (0..parts.len()).collect();
            let row = vec![1.0f32; parts.len()];
            let r = Residuals::of(&parts, &columns, &row, &|_| 0.0, 10.0, 1.0);
            let mut order: Vec<usize> = (0..parts.len()).filter(|&j| parts[j] > 0.0).collect();
            order.sort_by(|&a, &b| parts[b].total_cmp(&parts[a]).then(a.cmp(&b)));
            order.truncate(MAX_ITEMS);
            let got: Vec<usize> = r.items().iter().map(|i| usize::from(i.column)).collect();
            proptest::prop_assert_eq!(got, order);
        }
    }
}
