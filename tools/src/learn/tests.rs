use tapstream_kernels::context::NUM_CONTEXT;
use tapstream_kernels::schema::NUM_FEATURES;

use super::ppca::{self, signed_log};
use super::*;
use crate::rng::SplitMix64;

/// A standard normal draw (Box–Muller).
fn normal(r: &mut SplitMix64) -> f64 {
    let u = (r.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    let v = (r.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    (-2.0 * (u.max(1e-300)).ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// Benign-looking rows: every feature a log-normal amount driven by one
/// "flow size" factor and a little noise of its own.
fn rows(n: usize, width: usize, seed: u64) -> Vec<f32> {
    let mut r = SplitMix64::new(seed);
    let mut out = Vec::with_capacity(n * width);
    for _ in 0..n {
        let size = normal(&mut r);
        for j in 0..width {
            let level = 1.0 + (j % 7) as f64;
            let g = level + size * (0.5 + (j % 3) as f64 * 0.3) + 0.1 * normal(&mut r);
            out.push(g.exp_m1() as f32);
        }
    }
    out
}

#[test]
fn normal_quantiles_match_the_tables() {
    for (p, z) in [
        (0.5, 0.0),
        (0.975, 1.959_963_985),
        (0.999, 3.090_232_306),
        (0.001, -3.090_232_306),
        (0.999_999, 4.753_424_309),
    ] {
        assert!(
            (normal_quantile(p) - z).abs() < 1e-6,
            "{p}: {}",
            normal_quantile(p)
        );
    }
}

#[test]
fn signed_log_is_odd_and_finite() {
    assert_eq!(signed_log(0.0), 0.0);
    assert!((signed_log(std::f32::consts::E - 1.0) - 1.0).abs() < 1e-6);
    assert_eq!(signed_log(-3.0), -signed_log(3.0));
    assert_eq!(signed_log(f32::NAN), 0.0);
    assert_eq!(signed_log(f32::INFINITY), 0.0);
}

#[test]
fn benign_rows_score_about_their_width_and_outliers_far_above() {
    let width = 12;
    let fit = rows(5000, width, 1);
    let m = ppca::fit(&fit, width).unwrap();
    assert!(m.components.len() < width, "{}", m.components.len());
    let test = rows(2000, width, 2);
    let errors: Vec<f64> = test.chunks_exact(width).map(|r| m.error(r, None)).collect();
    let mean = errors.iter().sum::<f64>() / errors.len() as f64;
    assert!(
        mean > 0.3 * width as f64 && mean < 3.0 * width as f64,
        "{mean}"
    );
    // One feature 100 times its usual value, the rest typical.
    let mut odd = test[..width].to_vec();
    odd[5] = (odd[5] + 1.0) * 100.0;
    let mut shares = Vec::new();
    let e = m.error(&odd, Some(&mut shares));
    let p999 = {
        let mut s = errors.clone();
        s.sort_by(f64::total_cmp);
        s[s.len() * 999 / 1000]
    };
    assert!(e > 5.0 * p999, "outlier {e} vs benign p99.9 {p999}");
    // The reconstruction error names the feature that moved.
    let top = (0..width)
        .max_by(|&a, &b| shares[a].total_cmp(&shares[b]))
        .unwrap();
    assert_eq!(top, 5, "{shares:?}");
    assert!(shares.iter().sum::<f64>() <= e);
}

#[test]
fn fitting_is_deterministic_and_refuses_too_little() {
    let width = 6;
    let a = ppca::fit(&rows(500, width, 3), width).unwrap();
    let b = ppca::fit(&rows(500, width, 3), width).unwrap();
    assert_eq!(a, b);
    assert!(matches!(
        ppca::fit(&rows(10, width, 3), width),
        Err(LearnError::TooFewFlows { found: 10, .. })
    ));
    assert!(matches!(
        ppca::fit(&vec![1.0; 600 * width], width),
        Err(LearnError::Degenerate) | Ok(_)
    ));
}

#[test]
fn constant_features_do_not_break_the_fit() {
    let width = 8;
    let mut r = rows(1000, width, 4);
    for row in r.chunks_exact_mut(width) {
        row[0] = 0.0;
        row[1] = 6.0;
    }
    let m = ppca::fit(&r, width).unwrap();
    assert!(m.scale[0] >= ppca::SCALE_FLOOR && m.residual_variance > 0.0);
    let e = m.error(&r[..width], None);
    assert!(e.is_finite());
}

#[test]
fn thresholds_hold_the_rate_on_their_own_rows() {
    // Uniform errors: at most the rate above.
    let mut e: Vec<f64> = (0..100_000).map(|i| f64::from(i) / 1000.0).collect();
    let t = threshold_at(&mut e, 0.001);
    assert!(t.held_out_flagged <= 100, "{t:?}");
    // Log-normal errors: both land near the true quantile exp(z₀.₉₉₉) ≈ 22,
    // and the held-out flows never exceed the rate.
    let mut r = SplitMix64::new(9);
    let mut e: Vec<f64> = (0..2000).map(|_| normal(&mut r).exp()).collect();
    let t = threshold_at(&mut e, 0.001);
    assert!(t.error > 15.0 && t.error < 40.0, "{t:?}");
    assert!(t.held_out_flagged <= 2, "{t:?}");
    // A tail the log-normal fit underrates: the quantile wins.
    let mut e = vec![1.0; 990];
    e.extend([1e9; 10]);
    let t = threshold_at(&mut e, 0.01);
    assert_eq!(t.method, "quantile");
    assert!(t.held_out_flagged <= 10, "{t:?}");
    assert!(t.error > 1.0 && t.error < 1e9, "{t:?}");
    // Too few flows to allow one above: above them all.
    let mut e = vec![1.0, 2.0, 3.0];
    let t = threshold_at(&mut e, 0.001);
    assert_eq!(t.held_out_flagged, 0, "{t:?}");
}

/// Flows of one input, as the pipeline would collect them, in scrambled
/// batch order.
fn batches(n: usize, seed: u64, reverse: bool) -> Vec<FlowBatch> {
    let width = NUM_FEATURES;
    let data = rows(n, width + NUM_CONTEXT, seed);
    let mut out = vec![FlowBatch::default(), FlowBatch::default()];
    for (i, r) in data.chunks_exact(width + NUM_CONTEXT).enumerate() {
        let mut m = crate::eval::labels::tests::flow([198, 18, 0, 1], [198, 18, 0, 2], i as f64);
        m.sport = 1000 + (i % 5000) as u16;
        m.flow_id = i as u64 + 1;
        let b = &mut out[if reverse { (i + 1) % 2 } else { i % 2 }];
        let mut row = [0.0f64; NUM_FEATURES];
        for (d, s) in row.iter_mut().zip(r) {
            *d = f64::from(*s);
        }
        b.push(m, &row);
        b.context.extend_from_slice(&r[width..]);
    }
    if reverse {
        out.reverse();
    }
    out
}

#[test]
fn learning_writes_a_contract_model_whatever_the_batch_order() {
    let mut a = Flows::new().unwrap();
    a.add("x", &batches(3000, 5, false));
    let mut b = Flows::new().unwrap();
    b.add("x", &batches(3000, 5, true));
    assert_eq!(a.len(), 3000);
    let opts = Options::default();
    let la = learn(&a, &opts).unwrap();
    let lb = learn(&b, &opts).unwrap();
    assert_eq!(la.bytes, lb.bytes, "same flows, same file");
    assert_eq!(la.fit_flows, 2400);
    assert_eq!(la.threshold.held_out, 600);
    assert!(
        la.threshold.held_out_flagged == 0,
        "600 held out, FPR 0.001: none above"
    );
    assert_eq!(la.features, feature_names().len());
    // The file names its contract.
    let text = String::from_utf8_lossy(&la.bytes);
    for key in [keys::SCHEMA, keys::FEATURES, keys::BASELINE, ANOMALY_KEY] {
        assert!(text.contains(key), "{key}");
    }
    // Scores are in [0, 1) and 0.5 is the threshold.
    let s = la.reference_scores(&la.held_out);
    assert!(s.iter().all(|&x| (0.0..1.0).contains(&x)));
    let flagged = s.iter().filter(|&&x| x >= 0.5).count();
    assert_eq!(flagged, la.threshold.held_out_flagged);
}

#[test]
fn a_capped_input_keeps_the_same_sample_whatever_the_batch_order() {
    let gathered = |reverse: bool, cap: usize| {
        let mut f = Flows::new().unwrap().at_most(cap);
        for b in batches(3000, 7, reverse) {
            f.gather(&b, |m| m.flow_id != 5);
        }
        let halvings = f.halvings();
        f.seal("x");
        (f, halvings)
    };
    let (a, halvings) = gathered(false, 1000);
    let (b, _) = gathered(true, 1000);
    // 2,999 flows (one left out) over 1,000: two halvings keep about 750.
    assert_eq!(halvings, 2);
    assert!((600..=1000).contains(&a.len()), "{}", a.len());
    assert_eq!(a.inputs, b.inputs, "the same flows, in the same order");
    // The sample is the flows whose hash has two low zero bits.
    let (all, _) = gathered(false, 10_000);
    assert_eq!(all.len(), 2999);
    let expected = (1..=3000u64)
        .filter(|&id| id != 5 && sampled(id, 2))
        .count();
    assert_eq!(a.len(), expected);
}

#[test]
fn bad_options_and_too_few_flows_are_clear_errors() {
    let mut f = Flows::new().unwrap();
    f.add("x", &batches(50, 6, false));
    let e = learn(&f, &Options::default()).unwrap_err();
    assert!(
        matches!(e, LearnError::TooFewFlows { found: 50, .. }),
        "{e}"
    );
    for (fpr, holdout) in [(0.0, 0.2), (0.7, 0.2), (f64::NAN, 0.2), (0.01, 0.9)] {
        let opts = Options {
            fpr,
            holdout,
            ..Options::default()
        };
        assert!(matches!(learn(&f, &opts), Err(LearnError::Option(_))));
    }
}
