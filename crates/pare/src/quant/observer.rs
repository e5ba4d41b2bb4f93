//! Activation-range observers for post-training calibration: min/max, percentile, MSE-optimal
//! clipping and the entropy (KL) method of TensorRT's int8 calibration.
//!
//! Observers see a bounded sample of each activation (every k-th value of each calibration
//! batch, deterministic) plus the exact min and max, so calibrating a large layer on many
//! batches costs bounded memory.

use serde::{Deserialize, Serialize};

use crate::ir::Scheme;

/// How an activation's clipping range is chosen from calibration data.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", deny_unknown_fields)]
pub enum Observer {
    /// The observed minimum and maximum: no clipping, coarsest steps.
    MinMax,
    /// The `q`-th and `(100 - q)`-th percentiles (e.g. `q = 99.99`): clips rare outliers.
    Percentile { q: f32 },
    /// The clipping range (a fraction of min/max, searched on a grid of 100) that minimizes
    /// the mean squared quantization error on the sample.
    Mse,
    /// The threshold minimizing KL(P || Q) between the histogram (2048 bins) and its
    /// quantized version (Migacz, "8-bit inference with TensorRT", 2017): of |x| for symmetric
    /// schemes, of `x - min` for asymmetric ones (the minimum is kept, the top is clipped).
    /// Made for post-ReLU activations: on signed activations with an interior spike (a conv
    /// over constant background) at 4 bits it can clip at the spike; prefer MSE there
    /// (measured in `bench/README.md`).
    Kl,
}

/// Values kept per calibration batch.
const PER_BATCH: usize = 1 << 15;

/// A bounded sample of one activation's values.
#[derive(Clone, Debug)]
pub struct Samples {
    pub min: f32,
    pub max: f32,
    values: Vec<f32>,
}

impl Default for Samples {
    fn default() -> Self {
        Samples {
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            values: Vec::new(),
        }
    }
}

impl Samples {
    /// Adds one batch: exact min/max, and an evenly strided sample of at most `PER_BATCH` values.
    pub fn add(&mut self, data: &[f32]) {
        for &v in data.iter().filter(|v| v.is_finite()) {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
        let stride = data.len().div_ceil(PER_BATCH).max(1);
        self.values
            .extend(data.iter().step_by(stride).filter(|v| v.is_finite()));
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The clipping range `observer` chooses for quantizing to `scheme`.
    pub fn range(&self, observer: Observer, scheme: Scheme) -> (f32, f32) {
        if self.values.is_empty() {
            return (0.0, 0.0);
        }
        match observer {
            Observer::MinMax => (self.min, self.max),
            Observer::Percentile { q } => {
                let mut v = self.values.clone();
                v.sort_unstable_by(f32::total_cmp);
                let at = |p: f32| v[((p / 100.0) * (v.len() - 1) as f32).round() as usize];
                let q = q.clamp(50.0, 100.0);
                (at(100.0 - q).max(self.min), at(q).min(self.max))
            }
            Observer::Mse => {
                let err = |lo: f32, hi: f32| {
                    let p = scheme.params(lo, hi);
                    self.values
                        .iter()
                        .map(|&x| {
                            let d = (p.fake(x) - x) as f64;
                            d * d
                        })
                        .sum::<f64>()
                };
                (1..=100)
                    .map(|i| i as f32 / 100.0)
                    .map(|a| (self.min * a, self.max * a))
                    .min_by(|a, b| err(a.0, a.1).total_cmp(&err(b.0, b.1)))
                    .unwrap_or((self.min, self.max))
            }
            Observer::Kl if scheme.symmetric => {
                let (_, qmax) = scheme.levels();
                let mags: Vec<f32> = self.values.iter().map(|v| v.abs()).collect();
                let t = kl_threshold(&mags, qmax as usize + 1);
                (self.min.max(-t), self.max.min(t))
            }
            Observer::Kl => {
                // Asymmetric: keep the minimum (e.g. the background value of normalized
                // pixels, or ReLU's zero) and search the clipping point above it.
                let (qmin, qmax) = scheme.levels();
                let shifted: Vec<f32> = self.values.iter().map(|v| v - self.min).collect();
                let t = kl_threshold(&shifted, (qmax - qmin) as usize + 1);
                (self.min, (self.min + t).min(self.max))
            }
        }
    }
}

/// TensorRT's entropy calibration on non-negative values: the threshold whose clipped histogram,
/// quantized to `levels` levels, diverges least from the original one.
///
/// Exact zeros (ReLU's zeros, the background of normalized images: the range minimum after
/// the shift) are left out of the histogram: they are represented exactly whatever the
/// threshold, and a spike there otherwise drives the search to absurdly small thresholds at
/// low bit widths.
fn kl_threshold(values: &[f32], levels: usize) -> f32 {
    let values: Vec<f32> = values.iter().copied().filter(|v| *v > 0.0).collect();
    if values.is_empty() {
        return 0.0;
    }
    const BINS: usize = 2048;
    let amax = values.iter().fold(0f32, |m, v| m.max(*v));
    if amax == 0.0 {
        return 0.0;
    }
    let width = amax / BINS as f32;
    let mut hist = vec![0f64; BINS];
    for v in &values {
        hist[((v / width) as usize).min(BINS - 1)] += 1.0;
    }
    let levels = levels.clamp(2, BINS);
    let mut best = (f64::INFINITY, BINS);
    for i in levels..=BINS {
        // Reference: the first i bins with the outliers folded into the last one.
        let mut p: Vec<f64> = hist[..i].to_vec();
        p[i - 1] += hist[i..].iter().sum::<f64>();
        // Candidate: the i bins merged into `levels` groups, each group's mass spread evenly
        // over its non-empty bins.
        let mut q = vec![0f64; i];
        for g in 0..levels {
            let (a, b) = (g * i / levels, ((g + 1) * i / levels).max(g * i / levels + 1));
            let mass: f64 = hist[a..b].iter().sum();
            let nonzero = hist[a..b].iter().filter(|&&h| h > 0.0).count();
            if nonzero > 0 {
                for j in a..b {
                    if hist[j] > 0.0 {
                        q[j] = mass / nonzero as f64;
                    }
                }
            }
        }
        let (ps, qs): (f64, f64) = (p.iter().sum(), q.iter().sum());
        if ps == 0.0 || qs == 0.0 {
            continue;
        }
        let kl: f64 = p
            .iter()
            .zip(&q)
            .filter(|(&pi, _)| pi > 0.0)
            .map(|(&pi, &qi)| {
                let (pn, qn) = (pi / ps, (qi / qs).max(1e-12));
                pn * (pn / qn).ln()
            })
            .sum();
        if kl < best.0 {
            best = (kl, i);
        }
    }
    (best.1 as f32 + 0.5) * width
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heavy_tailed() -> Samples {
        let mut s = Samples::default();
        // Mostly small values, a few large outliers (like post-ReLU activations).
        let data: Vec<f32> = (0..20000)
            .map(|i| {
                let u = ((i * 7919) % 10007) as f32 / 10007.0;
                if i % 1000 == 0 {
                    40.0 + u
                } else {
                    u * u * 4.0
                }
            })
            .collect();
        s.add(&data);
        s
    }

    #[test]
    fn observers_clip_outliers_in_order() {
        let s = heavy_tailed();
        let scheme = Scheme {
            bits: 8,
            symmetric: false,
        };
        let (_, mm) = s.range(Observer::MinMax, scheme);
        let (_, pc) = s.range(Observer::Percentile { q: 99.0 }, scheme);
        let (_, mse) = s.range(Observer::Mse, scheme);
        let (_, kl) = s.range(Observer::Kl, scheme);
        assert!(mm > 40.0);
        assert!(pc < 4.1, "percentile {pc}");
        assert!(mse <= mm && kl <= mm, "mse {mse} kl {kl}");
        assert!(kl > 0.0 && mse > 0.0);
    }

    #[test]
    fn kl_ignores_a_spike_of_exact_zeros_at_low_bits() {
        // 70% ReLU zeros, the rest spread over [0, 4]: 4-bit KL must not clip near zero.
        let data: Vec<f32> = (0..10000)
            .map(|i| {
                if i % 10 < 7 {
                    0.0
                } else {
                    4.0 * ((i * 7919) % 1000) as f32 / 1000.0
                }
            })
            .collect();
        let mut s = Samples::default();
        s.add(&data);
        let (lo, hi) = s.range(
            Observer::Kl,
            Scheme {
                bits: 4,
                symmetric: false,
            },
        );
        assert_eq!(lo, 0.0);
        assert!(hi > 2.0, "hi {hi}");
    }

    #[test]
    fn asymmetric_kl_keeps_a_shifted_minimum() {
        // Like normalized pixels: most values at the background level -0.8, some up to 2.
        let mut s = Samples::default();
        let data: Vec<f32> = (0..10000)
            .map(|i| {
                if i % 3 == 0 {
                    -0.8 + 2.8 * ((i * 37) % 1000) as f32 / 1000.0
                } else {
                    -0.8
                }
            })
            .collect();
        s.add(&data);
        let (lo, hi) = s.range(
            Observer::Kl,
            Scheme {
                bits: 8,
                symmetric: false,
            },
        );
        assert_eq!(lo, -0.8);
        assert!(hi > 1.0, "hi {hi}");
    }

    #[test]
    fn mse_range_has_lower_error_than_minmax_at_low_bits() {
        let s = heavy_tailed();
        let scheme = Scheme {
            bits: 3,
            symmetric: false,
        };
        let err = |(lo, hi): (f32, f32)| {
            let p = scheme.params(lo, hi);
            s.values
                .iter()
                .map(|&x| ((p.fake(x) - x) as f64).powi(2))
                .sum::<f64>()
        };
        assert!(err(s.range(Observer::Mse, scheme)) < err(s.range(Observer::MinMax, scheme)));
    }
}
