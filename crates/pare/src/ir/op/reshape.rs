//! The `reshape` op.

use serde::{Deserialize, Serialize};

use super::rules::Rules;
use super::shape::elements;
use super::{AxisRule, Kept, Source};

/// The same elements in row-major order under another per-sample shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reshape {
    pub shape: Vec<usize>,
}

impl Rules for Reshape {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let (x, shape) = (inputs[0], &self.shape);
        let (have, want) = (elements(x), elements(shape));
        if shape.is_empty() || shape.contains(&0) || have.is_none() || have != want {
            let count = |n: Option<usize>| n.map_or("too many".to_string(), |n| n.to_string());
            return Err(format!(
                "reshape of {x:?} ({} elements) to {shape:?} ({} elements)",
                count(have),
                count(want)
            ));
        }
        Ok(shape.clone())
    }

    fn axis_rule(&self, inputs: &[&[usize]], _out_rank: usize) -> AxisRule {
        reshape_rule(inputs[0], &self.shape)
    }

    /// The target loses the positions its axes lost.
    fn shrunk(&self, kept: &Kept) -> Self {
        let mut op = self.clone();
        if let Some(s) = &kept.shape {
            op.shape.clone_from(s);
        }
        op
    }
}

/// How `from` reshapes into `to`: runs of input axes and of output axes with equal element
/// counts, in order (`None` when the counts differ, which shape inference already refuses).
fn reshape_runs(from: &[usize], to: &[usize]) -> Option<Vec<(Vec<usize>, Vec<usize>)>> {
    let mut runs = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < from.len() || j < to.len() {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let (mut pa, mut pb) = (1usize, 1usize);
        // At least one axis from each side, then from the side whose count is behind.
        loop {
            let take_from = i < from.len() && (a.is_empty() || (pa < pb && !b.is_empty()));
            let take_to = j < to.len() && (b.is_empty() || (pb < pa && !a.is_empty()));
            if take_from {
                pa *= from[i];
                a.push(i);
                i += 1;
            } else if take_to {
                pb *= to[j];
                b.push(j);
                j += 1;
            } else {
                break;
            }
        }
        if pa != pb {
            return None;
        }
        // Size-1 axes that only one side has left join this run.
        while i < from.len() && from[i] == 1 && to.get(j) != Some(&1) {
            a.push(i);
            i += 1;
        }
        while j < to.len() && to[j] == 1 && from.get(i) != Some(&1) {
            b.push(j);
            j += 1;
        }
        runs.push((a, b));
    }
    Some(runs)
}

/// The sources of a reshape's output axes, run by run: an axis kept as it is, an axis split
/// into several, several axes merged into one; any other regrouping mixes positions and is
/// fixed. Size-1 axes are fixed.
fn reshape_rule(from: &[usize], to: &[usize]) -> AxisRule {
    let Some(runs) = reshape_runs(from, to) else {
        return AxisRule::opaque(to.len());
    };
    let mut outputs = vec![Source::Fixed; to.len()];
    for (a, b) in runs {
        let real_in: Vec<usize> = a.iter().copied().filter(|&x| from[x] > 1).collect();
        let real_out: Vec<usize> = b.iter().copied().filter(|&y| to[y] > 1).collect();
        match (real_in.as_slice(), real_out.as_slice()) {
            ([x], [y]) => outputs[*y] = Source::Input { input: 0, axis: *x },
            ([x], [_, _, ..]) => {
                let sizes: Vec<usize> = real_out.iter().map(|&y| to[y]).collect();
                for (part, &y) in real_out.iter().enumerate() {
                    outputs[y] = Source::Split {
                        input: 0,
                        axis: *x,
                        sizes: sizes.clone(),
                        part,
                    };
                }
            }
            ([_, _, ..], [y]) => {
                outputs[*y] = Source::Merged {
                    input: 0,
                    axes: real_in.clone(),
                }
            }
            _ => {}
        }
    }
    AxisRule {
        outputs,
        ..AxisRule::opaque(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reshape_runs_pair_equal_products() {
        let runs = |a: &[usize], b: &[usize]| reshape_runs(a, b).unwrap();
        assert_eq!(
            runs(&[5, 8], &[5, 2, 4]),
            vec![(vec![0], vec![0]), (vec![1], vec![1, 2])]
        );
        assert_eq!(runs(&[2, 5, 4], &[5, 8]).len(), 1);
        assert_eq!(
            runs(&[5, 2, 4], &[5, 8]),
            vec![(vec![0], vec![0]), (vec![1, 2], vec![1])]
        );
        assert_eq!(runs(&[8, 1], &[8]), vec![(vec![0, 1], vec![0])]);
        assert_eq!(runs(&[1, 8], &[8]), vec![(vec![0, 1], vec![0])]);
        assert_eq!(runs(&[6, 4], &[4, 6]), vec![(vec![0, 1], vec![0, 1])]);
        assert!(reshape_runs(&[6], &[4]).is_none());
    }

    #[test]
    fn reshapes_split_merge_or_fix() {
        let src = |from: &[usize], to: &[usize]| reshape_rule(from, to).outputs;
        let part = |part| Source::Split {
            input: 0,
            axis: 1,
            sizes: vec![2, 4],
            part,
        };
        assert_eq!(
            src(&[5, 8], &[5, 2, 4]),
            vec![Source::Input { input: 0, axis: 0 }, part(0), part(1)]
        );
        assert_eq!(src(&[5, 8], &[5, 1, 2, 4])[1], Source::Fixed);
        assert_eq!(
            src(&[5, 2, 4], &[5, 8])[1],
            Source::Merged {
                input: 0,
                axes: vec![1, 2]
            }
        );
        assert_eq!(src(&[6, 4], &[4, 6]), vec![Source::Fixed, Source::Fixed]);
    }
}
