//! Rank selection by empirical variational Bayesian matrix factorization (EVBMF; Nakajima,
//! Sugiyama, Babacan and Tomioka, "Global analytic solution of fully-observed variational
//! Bayesian matrix factorization", JMLR 2013), the rule Kim et al. (2016) use to pick Tucker-2
//! ranks. A weight matrix is read as low-rank signal plus Gaussian noise of unknown variance;
//! EVBMF estimates that variance from the singular values alone, and a component is kept when
//! its singular value exceeds the analytic threshold `sqrt(M sigma^2 x)`, with no parameter to
//! tune.

/// `tau_bar / sqrt(alpha)`: the positive solution of the paper's threshold equation (its
/// Theorem 13), the same for every `alpha`.
const TAU_BAR_PER_SQRT_ALPHA: f64 = 2.5129;

/// What EVBMF finds for an `L x M` matrix.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Vbmf {
    /// Components whose singular value exceeds the threshold.
    pub rank: usize,
    /// The estimated noise variance per entry.
    pub noise_var: f64,
    /// The singular value a component must exceed.
    pub threshold: f64,
}

/// EVBMF of a matrix with `rows x cols` entries given its singular values (all `min(rows,
/// cols)` of them, in any order).
pub fn vbmf(values: &[f64], rows: usize, cols: usize) -> Vbmf {
    let (l, m) = (rows.min(cols) as f64, rows.max(cols) as f64);
    let mut s: Vec<f64> = values.to_vec();
    s.sort_by(|a, b| b.total_cmp(a));
    let h = s.len();
    let alpha = l / m;
    let tau_bar = TAU_BAR_PER_SQRT_ALPHA * alpha.sqrt();
    let x_bar = (1.0 + tau_bar) * (1.0 + alpha / tau_bar);
    let total: f64 = s.iter().map(|v| v * v).sum();
    if h == 0 || total == 0.0 {
        return Vbmf {
            rank: 0,
            noise_var: 0.0,
            threshold: 0.0,
        };
    }
    // The variance lies between what the largest possible signal rank leaves (the paper's
    // bounds, Sec. 5) and all of the energy as noise.
    let upper = total / (l * m);
    let h_bar = (((l / (1.0 + alpha)).ceil() as usize).saturating_sub(1)).min(h - 1);
    let tail = &s[h_bar..];
    let lower = (s[h_bar] * s[h_bar] / (m * x_bar))
        .max(tail.iter().map(|v| v * v).sum::<f64>() / (tail.len() as f64 * m))
        .min(upper);
    let objective = |sigma2: f64| -> f64 {
        s.iter()
            .map(|v| {
                let x = v * v / (m * sigma2);
                if x <= x_bar {
                    x - x.ln()
                } else {
                    let t = tau(x, alpha);
                    x - x.ln() + (t + 1.0).ln() + alpha * (t / alpha + 1.0).ln() - t
                }
            })
            .sum()
    };
    let noise_var = minimize_log(objective, lower, upper);
    let threshold = (m * noise_var * x_bar).sqrt();
    Vbmf {
        rank: s.iter().filter(|&&v| v > threshold).count(),
        noise_var,
        threshold,
    }
}

/// The paper's `tau(x; alpha)`: the larger root of `tau^2 - (x - 1 - alpha) tau + alpha = 0`,
/// real for `x` above the threshold.
fn tau(x: f64, alpha: f64) -> f64 {
    let b = x - (1.0 + alpha);
    0.5 * (b + (b * b - 4.0 * alpha).max(0.0).sqrt())
}

/// The minimizer of `f` on `[lo, hi]`, searched on a log scale: a grid of 200 points (the
/// objective need not be unimodal), then golden-section refinement around the best one.
fn minimize_log(f: impl Fn(f64) -> f64, lo: f64, hi: f64) -> f64 {
    if !(lo > 0.0 && hi > lo) {
        return hi.max(lo);
    }
    let (a, b) = (lo.ln(), hi.ln());
    const N: usize = 200;
    let at = |k: usize| a + (b - a) * k as f64 / N as f64;
    let best = (0..=N)
        .min_by(|&i, &j| f(at(i).exp()).total_cmp(&f(at(j).exp())))
        .expect("a non-empty grid");
    let (mut lo, mut hi) = (at(best.saturating_sub(1)), at((best + 1).min(N)));
    let g = (5f64.sqrt() - 1.0) / 2.0;
    let (mut c, mut d) = (hi - g * (hi - lo), lo + g * (hi - lo));
    for _ in 0..60 {
        if f(c.exp()) < f(d.exp()) {
            hi = d;
        } else {
            lo = c;
        }
        c = hi - g * (hi - lo);
        d = lo + g * (hi - lo);
    }
    ((lo + hi) / 2.0).exp()
}
