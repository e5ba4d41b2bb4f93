//! The `linear` op.

use serde::{Deserialize, Serialize};

use super::rules::{keep, Rules};
use super::{AxisRule, Kept, ParamKind, ParamSpec, Source};

/// `y = x W^T + b`, weight stored `[out, in]` as in PyTorch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Linear {
    pub in_features: usize,
    pub out_features: usize,
    pub bias: bool,
}

/// `[.., in] -> [.., out]`: the shape of a product by an `[out, in]` weight on the last axis.
pub(super) fn linear_shape(
    x: &[usize],
    in_features: usize,
    out_features: usize,
) -> Result<Vec<usize>, String> {
    match x.split_last() {
        Some((&n, lead)) if n == in_features => {
            let mut out = lead.to_vec();
            out.push(out_features);
            Ok(out)
        }
        _ => Err(format!(
            "linear expects an input whose last axis is {in_features}, got {x:?}"
        )),
    }
}

/// One dot product of length `in_features` per output element.
pub(super) fn linear_macs(output: &[usize], in_features: usize, out_features: usize) -> u64 {
    let positions: usize = output.iter().product::<usize>() / out_features.max(1);
    (positions * in_features * out_features) as u64
}

impl Rules for Linear {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        linear_shape(inputs[0], self.in_features, self.out_features)
    }

    /// New features on the last axis from the input's last axis, every other axis kept.
    fn axis_rule(&self, inputs: &[&[usize]], _out_rank: usize) -> AxisRule {
        let rank = inputs[0].len();
        let last = rank.saturating_sub(1);
        let mut r = AxisRule::same_axes(rank, &[last]);
        r.outputs[last] = Source::Made;
        r.weight_in = Some(last);
        r.weight_out = Some(last);
        r
    }

    fn params(&self) -> Vec<ParamSpec> {
        let mut v = vec![ParamSpec::new(
            "weight",
            vec![self.out_features, self.in_features],
            ParamKind::Weight,
            Some(0),
            Some(1),
        )];
        if self.bias {
            v.push(ParamSpec::new(
                "bias",
                vec![self.out_features],
                ParamKind::Bias,
                Some(0),
                None,
            ));
        }
        v
    }

    fn macs(&self, _inputs: &[&[usize]], output: &[usize]) -> u64 {
        linear_macs(output, self.in_features, self.out_features)
    }

    fn shrunk(&self, kept: &Kept) -> Self {
        let mut op = self.clone();
        keep(&mut op.in_features, kept.inputs);
        keep(&mut op.out_features, kept.outputs);
        op
    }
}
