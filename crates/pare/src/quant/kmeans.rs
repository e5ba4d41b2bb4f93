//! One-dimensional k-means for weight sharing (Han et al., Deep Compression, section 3.1).
//!
//! Centroids are kept sorted, so the nearest centroid of a value is found by binary search
//! over the midpoints between neighbours: each Lloyd iteration costs `O(n log k)`.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// How the centroids start. The paper found linear initialization best: it keeps centroids
/// on the rare large weights, which matter most.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CentroidInit {
    /// Evenly spaced over `[min, max]`.
    Linear,
    /// Evenly spaced over the CDF: quantiles of the values.
    Density,
    /// `k` distinct values drawn at random (Forgy).
    Random,
}

/// The clustering of one layer's (non-zero) weights.
#[derive(Clone, Debug, PartialEq)]
pub struct Clusters {
    /// Sorted ascending.
    pub centroids: Vec<f32>,
    /// Centroid index of each input value.
    pub assignment: Vec<u32>,
    /// Lloyd iterations run.
    pub iterations: usize,
}

fn initial(values: &[f32], k: usize, init: CentroidInit, seed: u64) -> Vec<f32> {
    let (lo, hi) = values
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let mut c: Vec<f32> = match init {
        CentroidInit::Linear => (0..k)
            .map(|i| {
                if k == 1 {
                    (lo + hi) / 2.0
                } else {
                    lo + (hi - lo) * i as f32 / (k - 1) as f32
                }
            })
            .collect(),
        CentroidInit::Density => {
            let mut v = values.to_vec();
            v.sort_unstable_by(f32::total_cmp);
            (0..k)
                .map(|i| v[((i as f64 + 0.5) / k as f64 * v.len() as f64) as usize % v.len()])
                .collect()
        }
        CentroidInit::Random => {
            let mut v = values.to_vec();
            v.sort_unstable_by(f32::total_cmp);
            v.dedup();
            v.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
            v.truncate(k);
            v
        }
    };
    c.sort_unstable_by(f32::total_cmp);
    c.dedup();
    c
}

/// Index of the centroid nearest to `v` (ties to the lower one).
pub fn nearest(centroids: &[f32], v: f32) -> u32 {
    // Number of midpoints strictly below v = index of the nearest centroid.
    let (mut lo, mut hi) = (0usize, centroids.len() - 1);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if v > (centroids[mid] + centroids[mid + 1]) / 2.0 {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo as u32
}

/// Clusters `values` into at most `k` centroids (fewer if there are fewer distinct values or
/// initial centroids coincide). Empty clusters keep their centroid, as in the paper's code.
pub fn kmeans(values: &[f32], k: usize, init: CentroidInit, seed: u64, max_iter: usize) -> Clusters {
    if values.is_empty() || k == 0 {
        return Clusters {
            centroids: Vec::new(),
            assignment: Vec::new(),
            iterations: 0,
        };
    }
    let mut centroids = initial(values, k, init, seed);
    let mut assignment: Vec<u32> = values.iter().map(|&v| nearest(&centroids, v)).collect();
    let mut iterations = 0;
    for _ in 0..max_iter {
        iterations += 1;
        let mut sum = vec![0f64; centroids.len()];
        let mut count = vec![0usize; centroids.len()];
        for (&v, &a) in values.iter().zip(&assignment) {
            sum[a as usize] += v as f64;
            count[a as usize] += 1;
        }
        for (c, (s, n)) in centroids.iter_mut().zip(sum.iter().zip(&count)) {
            if *n > 0 {
                *c = (*s / *n as f64) as f32;
            }
        }
        // Means of ordered clusters stay ordered; sort anyway against ties.
        centroids.sort_unstable_by(f32::total_cmp);
        let next: Vec<u32> = values.iter().map(|&v| nearest(&centroids, v)).collect();
        if next == assignment {
            break;
        }
        assignment = next;
    }
    Clusters {
        centroids,
        assignment,
        iterations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn separates_obvious_clusters() {
        let v = [1.0, 1.1, 0.9, 5.0, 5.2, 4.8, -3.0, -3.1];
        let c = kmeans(&v, 3, CentroidInit::Linear, 0, 50);
        assert_eq!(c.centroids.len(), 3);
        assert!((c.centroids[0] + 3.05).abs() < 1e-5);
        assert!((c.centroids[1] - 1.0).abs() < 1e-5);
        assert!((c.centroids[2] - 5.0).abs() < 1e-5);
        assert_eq!(c.assignment, vec![1, 1, 1, 2, 2, 2, 0, 0]);
    }

    proptest! {
        #[test]
        fn every_value_goes_to_its_nearest_centroid(
            v in prop::collection::vec(-3f32..3.0, 1..300),
            k in 1usize..40,
            init in prop_oneof![Just(CentroidInit::Linear), Just(CentroidInit::Density), Just(CentroidInit::Random)],
        ) {
            let c = kmeans(&v, k, init, 7, 100);
            prop_assert!(c.centroids.len() <= k);
            prop_assert!(c.centroids.windows(2).all(|w| w[0] <= w[1]));
            for (&x, &a) in v.iter().zip(&c.assignment) {
                let d = (x - c.centroids[a as usize]).abs();
                let best = c.centroids.iter().map(|c| (x - c).abs()).fold(f32::INFINITY, f32::min);
                prop_assert!(d <= best + 1e-6);
            }
        }
    }
}
