//! The anomaly model `tapstream learn` fits: probabilistic PCA (Tipping and
//! Bishop) over signed-log, standardised flow and context features.
//!
//! Why this model: it is fitted in closed form (one covariance, one eigen
//! decomposition: seconds for a million flows on two cores, and the same
//! bits on every run), its score is a log-likelihood a person can take
//! apart feature by feature (each feature's squared reconstruction error),
//! and it is a handful of matrix products in ONNX, so it runs on every
//! engine and provider the classifier does. KitNET's ensemble of
//! autoencoders needs stochastic training (not reproducible bit for bit
//! without care) and many more graph nodes; an isolation forest has no
//! per-feature error to explain with and is a tree ensemble ONNX Runtime
//! runs only on the CPU. `deploy/training/ANOMALY.md` has what was measured.
//!
//! The score of a row `x` (`F` features) is
//! `e = Σᵢ yᵢ² / λᵢ + Σⱼ rⱼ² / σ²`, with `g = sign(x)·ln(1 + |x|)`,
//! `z = (g − mean) / scale` clipped to `±5`, `y = Pᵀz` (the `k` principal components that
//! keep 99 % of the variance), `r = z − P y`, `λᵢ` their variances and `σ²`
//! the mean variance of the rest (at least a tenth of the mean variance per
//! feature). It is twice the negative log-likelihood
//! under the fitted Gaussian, up to a constant: about `F` for a typical
//! benign flow. The ONNX graph computes it in `f32` ([`graph`]);
//! [`Ppca::error`] (in the inference crate, which explains alerts with it)
//! is the `f64` reference it is tested against.

use nalgebra::{DMatrix, SymmetricEigen};
pub use tapstream_inference::anomaly::{signed_log, Ppca, Z_CLIP};

use super::onnx::{Dim, Graph};
use super::LearnError;

/// Smallest per-feature scale, in log units: a feature that barely varies in
/// benign traffic (e.g. always 0) still needs a change of about `e^0.5 ≈ 1.6`
/// times to count as one standard deviation.
pub const SCALE_FLOOR: f64 = 0.5;
/// Share of the variance the principal components keep.
pub const VARIANCE_KEPT: f64 = 0.99;
/// Smallest residual variance `σ²`, as a share of the mean variance per
/// standardised feature: the directions benign traffic barely uses still
/// allow some spread, so one new but harmless value does not dominate.
pub const RESIDUAL_SHARE: f64 = 0.1;
/// Fewest flows a fit accepts.
pub const MIN_FLOWS: usize = 100;
/// Rows per covariance update.
const CHUNK: usize = 4096;

/// Fits the model on `rows` (row major, `width` features each).
pub fn fit(rows: &[f32], width: usize) -> Result<Ppca, LearnError> {
    let n = rows.len().checked_div(width).unwrap_or(0);
    if n < MIN_FLOWS || width < 2 {
        return Err(LearnError::TooFewFlows {
            found: n,
            need: MIN_FLOWS,
        });
    }
    let (mean, scale) = moments(rows, width, n);
    // The standardisation alone first: the components come from it.
    let mut model = Ppca {
        mean,
        scale,
        components: Vec::new(),
        variances: Vec::new(),
        residual_variance: 1.0,
    };
    let mut cov = DMatrix::<f64>::zeros(width, width);
    for chunk in rows.chunks(CHUNK * width) {
        let m = chunk.len() / width;
        let z = DMatrix::from_fn(m, width, |i, j| {
            let x = chunk.get(i * width + j).copied().unwrap_or(0.0);
            model.standardise(x, j)
        });
        cov.gemm_tr(1.0, &z, &z, 1.0);
    }
    cov /= n as f64;
    let eigen = SymmetricEigen::new(cov);
    let mut order: Vec<usize> = (0..width).collect();
    let value = |i: usize| eigen.eigenvalues.get(i).copied().unwrap_or(0.0).max(0.0);
    order.sort_by(|&a, &b| value(b).total_cmp(&value(a)).then(a.cmp(&b)));
    let total: f64 = order.iter().map(|&i| value(i)).sum();
    if !total.is_finite() || total <= 0.0 {
        return Err(LearnError::Degenerate);
    }
    let mut kept = 0.0;
    let mut k = 0;
    for &i in &order {
        if k + 1 >= width || kept >= VARIANCE_KEPT * total {
            break;
        }
        kept += value(i);
        k += 1;
    }
    let floor = total * 1e-6;
    let components = order
        .iter()
        .take(k)
        .map(|&i| eigen.eigenvectors.column(i).iter().copied().collect())
        .collect();
    let variances = order.iter().take(k).map(|&i| value(i).max(floor)).collect();
    let rest: f64 = order.iter().skip(k).map(|&i| value(i)).sum();
    model.residual_variance =
        (rest / (width - k) as f64).max(RESIDUAL_SHARE * total / width as f64);
    model.components = components;
    model.variances = variances;
    Ok(model)
}

/// The ONNX graph of `m`: input `features` `[batch, F]`, output `score`
/// `[batch, 1]` = `e / (e + threshold)`, so a flow scores at least 0.5
/// exactly when `e ≥ threshold`, and scores stay in `[0, 1)` in any
/// precision.
pub fn graph(m: &Ppca, threshold: f64, g: &mut Graph) {
    let f = m.width();
    let k = m.components.len();
    let (fi, ki) = (f as i64, k as i64);
    let x = g.input("features", vec![Dim::Named("batch"), Dim::Fixed(fi)]);
    let one = g.constant("one", &[1], vec![1.0]);
    let mean = g.constant("mean", &[fi], to_f32(m.mean.iter().copied()));
    let inv = g.constant("inv_scale", &[fi], to_f32(m.scale.iter().map(|s| 1.0 / s)));
    let p = g.constant(
        "components",
        &[fi, ki],
        to_f32((0..f).flat_map(|j| {
            m.components
                .iter()
                .map(move |c| c.get(j).copied().unwrap_or(0.0))
        })),
    );
    let pt = g.constant(
        "components_t",
        &[ki, fi],
        to_f32(m.components.iter().flatten().copied()),
    );
    let w_sub = g.constant(
        "inv_variances",
        &[ki, 1],
        to_f32(m.variances.iter().map(|v| 1.0 / v)),
    );
    let w_res = g.constant(
        "inv_residual_variance",
        &[fi, 1],
        vec![(1.0 / m.residual_variance) as f32; f],
    );
    let t = g.constant("threshold", &[1], vec![threshold as f32]);
    let a = g.node("Abs", &[&x], "abs");
    let a1 = g.node("Add", &[&a, &one], "abs_plus_one");
    let l = g.node("Log", &[&a1], "log");
    let s = g.node("Sign", &[&x], "sign");
    let sl = g.node("Mul", &[&s, &l], "signed_log");
    let c = g.node("Sub", &[&sl, &mean], "centred");
    let hi = g.constant("z_clip", &[1], vec![Z_CLIP as f32]);
    let lo = g.constant("minus_z_clip", &[1], vec![-Z_CLIP as f32]);
    let z0 = g.node("Mul", &[&c, &inv], "z_unclipped");
    let z1 = g.node("Min", &[&z0, &hi], "z_upper");
    let z = g.node("Max", &[&z1, &lo], "z");
    let y = g.node("MatMul", &[&z, &p], "y");
    let back = g.node("MatMul", &[&y, &pt], "reconstructed");
    let r = g.node("Sub", &[&z, &back], "residual");
    let r2 = g.node("Mul", &[&r, &r], "residual_sq");
    let y2 = g.node("Mul", &[&y, &y], "y_sq");
    let q = g.node("MatMul", &[&r2, &w_res], "residual_error");
    let h = g.node("MatMul", &[&y2, &w_sub], "subspace_error");
    let e = g.node("Add", &[&q, &h], "error");
    let et = g.node("Add", &[&e, &t], "error_plus_threshold");
    g.node("Div", &[&e, &et], "score");
    g.output("score", vec![Dim::Named("batch"), Dim::Fixed(1)]);
}

/// `e / (e + threshold)`: the graph's score for an error.
pub fn score_of(error: f64, threshold: f64) -> f64 {
    error / (error + threshold)
}

fn to_f32(v: impl Iterator<Item = f64>) -> Vec<f32> {
    v.map(|x| x as f32).collect()
}

/// Per-feature mean and scale of the signed log.
fn moments(rows: &[f32], width: usize, n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut sum = vec![0.0f64; width];
    for row in rows.chunks_exact(width) {
        for (s, &x) in sum.iter_mut().zip(row) {
            *s += signed_log(x);
        }
    }
    let mean: Vec<f64> = sum.iter().map(|s| s / n as f64).collect();
    let mut sq = vec![0.0f64; width];
    for row in rows.chunks_exact(width) {
        for ((s, &x), m) in sq.iter_mut().zip(row).zip(&mean) {
            let d = signed_log(x) - m;
            *s += d * d;
        }
    }
    let scale = sq
        .iter()
        .map(|s| (s / n as f64).sqrt().max(SCALE_FLOOR))
        .collect();
    (mean, scale)
}
