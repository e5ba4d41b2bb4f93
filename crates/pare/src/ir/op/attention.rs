//! The `attention` op.

use serde::{Deserialize, Serialize};

use super::rules::Rules;
use super::{AxisRule, Kept, ParamKind, ParamSpec};

/// Multi-head self-attention over a `[tokens, dim]` sequence, PyTorch's
/// `nn.MultiheadAttention(dim, heads, batch_first=True)` called as `att(x, x, x)`: one input
/// projection `in_proj_weight` `[3 * dim, dim]` (query, key, value rows in that order) with
/// `in_proj_bias`, scaled dot-product softmax per head of `dim / heads` features, and the
/// output projection `out_proj.weight` `[dim, dim]` with `out_proj.bias`.
///
/// `head_dim` is `dim / heads` unless given: a model whose heads were pruned keeps fewer
/// heads of the same size, so its inner width `heads * head_dim` is below `dim` and the
/// projections are `[3 * inner, dim]` and `[dim, inner]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attention {
    pub dim: usize,
    pub heads: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<usize>,
}

impl Attention {
    /// The size of each head.
    pub fn head_dim(&self) -> usize {
        self.head_dim.unwrap_or(self.dim / self.heads.max(1))
    }

    /// The inner width of the projections, `heads * head_dim`.
    pub fn inner(&self) -> usize {
        self.heads * self.head_dim()
    }

    /// For the heads `keep`: the rows of `in_proj_weight` (and `in_proj_bias`) and the columns
    /// of `out_proj.weight` that hold them, in order.
    pub fn head_slices(&self, keep: &[usize]) -> (Vec<usize>, Vec<usize>) {
        let (hd, inner) = (self.head_dim(), self.inner());
        let cols: Vec<usize> = keep.iter().flat_map(|&h| h * hd..(h + 1) * hd).collect();
        let rows = (0..3)
            .flat_map(|k| cols.iter().map(move |c| k * inner + c))
            .collect();
        (rows, cols)
    }
}

impl Rules for Attention {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let (x, dim, heads) = (inputs[0], self.dim, self.heads);
        let fits = match self.head_dim {
            None => dim % heads.max(1) == 0,
            Some(hd) => hd > 0,
        };
        if heads == 0 || dim == 0 || !fits {
            return Err(format!(
                "multihead_attention: heads={heads} must divide dim={dim} (both positive), or head_dim be given"
            ));
        }
        match *x {
            [_, d] if d == dim => Ok(x.to_vec()),
            _ => Err(format!(
                "multihead_attention expects a [tokens, {dim}] input, got {x:?}"
            )),
        }
    }

    /// Tokens carry on; the features are mixed (the heads are the op's own channels).
    fn axis_rule(&self, inputs: &[&[usize]], _out_rank: usize) -> AxisRule {
        let rank = inputs[0].len();
        AxisRule::same_axes(rank, &[rank.saturating_sub(1)])
    }

    fn params(&self) -> Vec<ParamSpec> {
        let (dim, inner) = (self.dim, self.inner());
        let p = |suffix, shape, kind| ParamSpec::new(suffix, shape, kind, None, None);
        vec![
            p("in_proj_weight", vec![3 * inner, dim], ParamKind::Weight),
            p("in_proj_bias", vec![3 * inner], ParamKind::Bias),
            p("out_proj.weight", vec![dim, inner], ParamKind::Weight),
            p("out_proj.bias", vec![dim], ParamKind::Bias),
        ]
    }

    /// Projections (3 in, 1 out) plus scores and their weighted sum.
    fn macs(&self, _inputs: &[&[usize]], output: &[usize]) -> u64 {
        let (t, inner) = (output.first().copied().unwrap_or(0), self.inner());
        (4 * t * self.dim * inner + 2 * t * t * inner) as u64
    }

    /// Fewer heads of the same size: `head_dim` is then stated.
    fn shrunk(&self, kept: &Kept) -> Self {
        let mut op = self.clone();
        if let Some(k) = kept.internal.filter(|&k| k != self.heads) {
            op.heads = k;
            op.head_dim = Some(self.head_dim());
        }
        op
    }
}
