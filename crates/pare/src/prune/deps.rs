//! The channel dependency graph for structured pruning, built only from each op's
//! [`ChannelRule`]: no per-op special cases beyond those rules. A value's channels lie along
//! [`channel_axis`] of its per-sample shape (features of vectors and of each token of a
//! sequence, channels of images).
//!
//! Every channel created by a `Transform` op (a Linear's neuron, a dense conv's filter) is an
//! *element*. Walking the graph in order, each node's channel axis becomes a vector of elements:
//! pass-through ops copy their input's vector, `Add` unifies its inputs position by position
//! (a residual couples channel k of both branches), `Concat` stacks the vectors, `Flatten`
//! repeats each element `H*W` times, a grouped convolution couples the same slot of every
//! group and a channel shuffle permutes the vector. Elements that must be removed together fall into one
//! union-find class: a [`Group`]. Removing a group slices the producers' output rows, every
//! pass-through parameter (BatchNorm, depthwise filters) and every consumer's input columns.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{Error, Result};
use crate::ir::op::channel_axis;
use crate::ir::{ChannelRule, Model, INPUT};

/// A coupled set of channels that can only be removed together.
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    /// The channels, as (producer node index, output channel index).
    pub members: Vec<(usize, usize)>,
}

/// A set of groups with the same producers: "a layer" for per-layer ratios (a plain conv's
/// filters, or every conv feeding one residual stream).
#[derive(Clone, Debug, PartialEq)]
pub struct Family {
    /// Producer node indices (sorted).
    pub producers: Vec<usize>,
    /// Indices into `DepGraph::groups`, ordered by the first producer's channel index.
    pub groups: Vec<usize>,
}

/// The result of the analysis.
#[derive(Clone, Debug)]
pub struct DepGraph {
    /// Per node: the element id at each position of its output's channel axis.
    pub(crate) out_elems: Vec<Vec<usize>>,
    /// Per node: the element ids along its (first) input's channel axis.
    pub(crate) in_elems: Vec<Vec<usize>>,
    /// Per node: the elements of the channels it owns inside itself (an attention op's heads,
    /// producer `(node, head)`), prunable apart from its inputs and output.
    pub(crate) internal: Vec<Vec<usize>>,
    /// Per element: its producer (node index, channel), or `None` for input/fixed channels.
    pub(crate) producer: Vec<Option<(usize, usize)>>,
    /// Per element: its group index, or `None` when it cannot be pruned.
    pub(crate) group_of: Vec<Option<usize>>,
    pub groups: Vec<Group>,
    pub families: Vec<Family>,
}

/// Allocates `n` new elements owned by node `owner` (channel 0..n) and returns their ids.
fn fresh(
    n: usize,
    owner: Option<usize>,
    is_fixed: bool,
    producer: &mut Vec<Option<(usize, usize)>>,
    fixed: &mut Vec<bool>,
) -> Vec<usize> {
    let start = producer.len();
    for c in 0..n {
        producer.push(owner.map(|o| (o, c)));
        fixed.push(is_fixed);
    }
    (start..start + n).collect()
}

/// The pairs that couple position `i` of the first of `groups` equal runs of `elems` with
/// position `i` of every other run.
fn same_slot(elems: &[usize], groups: usize) -> Vec<(usize, usize)> {
    let per = elems.len() / groups.max(1);
    (1..groups)
        .flat_map(|g| (0..per).map(move |i| (elems[i], elems[g * per + i])))
        .collect()
}

struct UnionFind(Vec<usize>);

impl UnionFind {
    fn find(&mut self, x: usize) -> usize {
        let mut r = x;
        while self.0[r] != r {
            r = self.0[r];
        }
        let mut y = x;
        while self.0[y] != r {
            let next = self.0[y];
            self.0[y] = r;
            y = next;
        }
        r
    }
    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            self.0[ra.max(rb)] = ra.min(rb);
        }
    }
}

impl DepGraph {
    /// Analyses a model. The model's output channels (the logits), its input channels and the
    /// channels of tied layers (see `Graph::ties`) can never be pruned.
    pub fn build(model: &Model) -> Result<DepGraph> {
        let g = &model.graph;
        let shapes = model.shapes();
        let mut producer: Vec<Option<(usize, usize)>> = Vec::new();
        let mut fixed: Vec<bool> = Vec::new();
        let input_channels = channel_axis(shapes.input.len()).map_or(0, |a| shapes.input[a]);
        let input_elems = fresh(input_channels, None, true, &mut producer, &mut fixed);
        let mut out_elems: Vec<Vec<usize>> = Vec::with_capacity(g.nodes.len());
        let mut in_elems: Vec<Vec<usize>> = Vec::with_capacity(g.nodes.len());
        let mut internal: Vec<Vec<usize>> = Vec::with_capacity(g.nodes.len());
        let mut unions: Vec<(usize, usize)> = Vec::new();
        let index: BTreeMap<&str, usize> = g
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.as_str(), i))
            .collect();
        for (i, node) in g.nodes.iter().enumerate() {
            let ins: Vec<Vec<usize>> = node
                .inputs
                .iter()
                .map(|n| {
                    if n == INPUT {
                        input_elems.clone()
                    } else {
                        out_elems[index[n.as_str()]].clone()
                    }
                })
                .collect();
            let out_shape = &shapes.nodes[i];
            let out_channels = channel_axis(out_shape.len()).map_or(0, |a| out_shape[a]);
            // A tied layer's parameters serve several nodes at once: its channels stay.
            let tied = g.is_tied(&node.name);
            let rule = if tied {
                ChannelRule::Opaque
            } else {
                node.op.channel_rule(&shapes.inputs_of(g, i))
            };
            let out = match rule {
                ChannelRule::Transform => fresh(out_channels, Some(i), false, &mut producer, &mut fixed),
                ChannelRule::Passthrough => {
                    for other in &ins[1..] {
                        unions.extend(ins[0].iter().copied().zip(other.iter().copied()));
                    }
                    ins[0].clone()
                }
                ChannelRule::Concat => ins.concat(),
                ChannelRule::Flatten => {
                    let spatial: usize = shapes.nodes[i][0] / ins[0].len().max(1);
                    ins[0]
                        .iter()
                        .flat_map(|&e| std::iter::repeat_n(e, spatial))
                        .collect()
                }
                ChannelRule::Grouped { groups } => {
                    // Equal groups: a slot goes from every group at once, on both sides.
                    let out = fresh(out_channels, Some(i), false, &mut producer, &mut fixed);
                    unions.extend(same_slot(&out, groups));
                    unions.extend(same_slot(&ins[0], groups));
                    out
                }
                ChannelRule::Shuffle { groups } => {
                    // Input slot j of every group goes together; the output is the permutation.
                    unions.extend(same_slot(&ins[0], groups));
                    let per = ins[0].len() / groups.max(1);
                    (0..ins[0].len())
                        .map(|o| ins[0][(o % groups) * per + o / groups])
                        .collect()
                }
                ChannelRule::Opaque => {
                    for &e in ins.iter().flatten() {
                        fixed[e] = true;
                    }
                    fresh(out_channels, Some(i), true, &mut producer, &mut fixed)
                }
            };
            if out.len() != out_channels {
                return Err(Error::graph(
                    &node.name,
                    "channel analysis disagrees with the shape rules",
                ));
            }
            in_elems.push(ins.into_iter().next().unwrap_or_default());
            out_elems.push(out);
            internal.push(fresh(
                node.op.internal_channels(),
                Some(i),
                tied,
                &mut producer,
                &mut fixed,
            ));
        }
        for out in g.outputs() {
            for &e in &out_elems[index[out]] {
                fixed[e] = true;
            }
        }
        let n = producer.len();
        let mut uf = UnionFind((0..n).collect());
        for (a, b) in unions {
            uf.union(a, b);
        }
        // A class is prunable only if none of its elements is fixed.
        let mut class_fixed = vec![false; n];
        for (e, _) in fixed.iter().enumerate().filter(|(_, f)| **f) {
            let r = uf.find(e);
            class_fixed[r] = true;
        }
        let mut group_index: BTreeMap<usize, usize> = BTreeMap::new();
        let mut groups: Vec<Group> = Vec::new();
        let mut group_of = vec![None; n];
        for e in 0..n {
            let r = uf.find(e);
            if class_fixed[r] {
                continue;
            }
            let gi = *group_index.entry(r).or_insert_with(|| {
                groups.push(Group { members: Vec::new() });
                groups.len() - 1
            });
            if let Some(p) = producer[e] {
                groups[gi].members.push(p);
            }
            group_of[e] = Some(gi);
        }
        let mut fam: BTreeMap<Vec<usize>, Vec<usize>> = BTreeMap::new();
        for (gi, grp) in groups.iter().enumerate() {
            let producers: BTreeSet<usize> = grp.members.iter().map(|m| m.0).collect();
            fam.entry(producers.into_iter().collect()).or_default().push(gi);
        }
        let families = fam
            .into_iter()
            .map(|(producers, groups)| Family { producers, groups })
            .collect();
        Ok(DepGraph {
            internal,
            out_elems,
            in_elems,
            producer,
            group_of,
            groups,
            families,
        })
    }

    /// The family whose producers include the node called `name`.
    pub fn family_of(&self, model: &Model, name: &str) -> Option<usize> {
        let i = model.graph.index_of(name)?;
        self.families.iter().position(|f| f.producers.contains(&i))
    }

    /// A short readable name for a family: its producers' names joined with '+'.
    pub fn family_name(&self, model: &Model, f: usize) -> String {
        self.families[f]
            .producers
            .iter()
            .map(|&p| model.graph.nodes[p].name.as_str())
            .collect::<Vec<_>>()
            .join("+")
    }
}
