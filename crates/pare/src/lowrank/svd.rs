//! Singular value decompositions of weight matrices (nalgebra), with the values in decreasing
//! order, the energy the largest ones keep, and the factors a factorized layer takes.

use nalgebra::DMatrix;

use super::Rank;
use crate::ir::Tensor;

/// A weight's singular value decomposition, values in decreasing order.
pub(super) struct Svd {
    /// `[out, k]` left singular vectors, column j for value j.
    u: DMatrix<f64>,
    /// `[k, in]` right singular vectors transposed, row j for value j.
    v_t: DMatrix<f64>,
    pub(super) values: Vec<f64>,
    /// `kept[r]`: the fraction of the squared values the largest `r` hold (`kept[0] = 0`).
    kept: Vec<f64>,
    /// Position of value j (in decreasing order) in `u`'s columns and `v_t`'s rows.
    order: Vec<usize>,
}

impl Svd {
    /// The SVD of `w` read as a row-major `[rows, cols]` matrix.
    pub(super) fn of(w: &Tensor, rows: usize, cols: usize) -> Svd {
        Svd::of_matrix(DMatrix::from_row_iterator(
            rows,
            cols,
            w.data().iter().map(|&x| x as f64),
        ))
    }

    pub(super) fn of_matrix(m: DMatrix<f64>) -> Svd {
        let svd = m.svd(true, true);
        let mut order: Vec<usize> = (0..svd.singular_values.len()).collect();
        order.sort_by(|&a, &b| svd.singular_values[b].total_cmp(&svd.singular_values[a]));
        let values: Vec<f64> = order.iter().map(|&i| svd.singular_values[i]).collect();
        let total: f64 = values.iter().map(|s| s * s).sum();
        let kept = std::iter::once(0.0)
            .chain(values.iter().scan(0.0, |acc, s| {
                *acc += s * s;
                Some(if total == 0.0 { 1.0 } else { *acc / total })
            }))
            .collect();
        Svd {
            values,
            kept,
            u: svd.u.expect("requested U"),
            v_t: svd.v_t.expect("requested V^T"),
            order,
        }
    }

    pub(super) fn energy(&self, r: usize) -> f64 {
        self.kept[r]
    }

    pub(super) fn rank_for(&self, rule: Rank) -> usize {
        let full = self.values.len();
        match rule {
            Rank::Fixed(r) => r.min(full),
            Rank::Energy(e) => (1..=full).find(|&r| self.kept[r] >= e - 1e-12).unwrap_or(full),
            // A layer whose values all look like noise still keeps its strongest component.
            Rank::Vbmf => super::vbmf::vbmf(&self.values, self.u.nrows(), self.v_t.ncols())
                .rank
                .max(1),
        }
    }

    /// `sqrt(S_r) V_r^T` as `[r, in]` and `U_r sqrt(S_r)` as `[out, r]`, row-major f32.
    pub(super) fn factors(&self, r: usize) -> (Tensor, Tensor) {
        let (rows, cols) = (self.u.nrows(), self.v_t.ncols());
        let mut v = Vec::with_capacity(r * cols);
        for (j, &k) in self.order[..r].iter().enumerate() {
            let s = self.values[j].sqrt();
            v.extend((0..cols).map(|c| (s * self.v_t[(k, c)]) as f32));
        }
        let mut u = Vec::with_capacity(rows * r);
        for row in 0..rows {
            for (j, &k) in self.order[..r].iter().enumerate() {
                u.push((self.u[(row, k)] * self.values[j].sqrt()) as f32);
            }
        }
        (
            Tensor::from_vec(vec![r, cols], v),
            Tensor::from_vec(vec![rows, r], u),
        )
    }
}

impl Svd {
    /// The leading `r` left singular vectors, `[rows, r]` row-major (orthonormal columns).
    pub(super) fn left(&self, r: usize) -> Vec<f64> {
        let rows = self.u.nrows();
        let mut out = Vec::with_capacity(rows * r);
        for row in 0..rows {
            out.extend(self.order[..r].iter().map(|&k| self.u[(row, k)]));
        }
        out
    }
}
