//! Physical removal of channel groups: a smaller model with smaller dense tensors, and the
//! [`Surgery`] log that replays the same removal onto the base architecture.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::deps::DepGraph;
use crate::error::{Error, Result};
use crate::ir::op::{channel_axis, param_name, Kept};
use crate::ir::{Model, Params, Tensor};

/// What structured pruning removed: per producer node (a Linear or dense Conv2d of the base
/// model), the indices of its output channels that are gone; for an attention node, the
/// indices of its heads. Replayable data: applying it to
/// the base model with [`replay`] gives the pruned architecture and weights.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Surgery {
    pub removed: BTreeMap<String, Vec<usize>>,
}

impl Surgery {
    pub fn is_empty(&self) -> bool {
        self.removed.values().all(Vec::is_empty)
    }

    /// Channels removed in total.
    pub fn count(&self) -> usize {
        self.removed.values().map(Vec::len).sum()
    }

    /// Composes iterative pruning: `next` was recorded on the model this surgery made from
    /// `base`; the result removes both, in `base`'s channel numbering.
    pub fn then(&self, base: &Model, next: &Surgery) -> Result<Surgery> {
        let shapes = base.shapes();
        let mut out = self.clone();
        for (name, chans) in &next.removed {
            let i = base.graph.index_of(name).ok_or_else(|| {
                Error::Config(format!("surgery names node '{name}', which the base model lacks"))
            })?;
            let gone: BTreeSet<usize> = self.removed.get(name).into_iter().flatten().copied().collect();
            let remaining: Vec<usize> = (0..channels(base, &shapes, i))
                .filter(|c| !gone.contains(c))
                .collect();
            let entry = out.removed.entry(name.clone()).or_default();
            for &c in chans {
                let base_c = *remaining.get(c).ok_or_else(|| {
                    Error::Config(format!("surgery removes channel {c} of '{name}', which it lacks"))
                })?;
                entry.push(base_c);
            }
            entry.sort_unstable();
        }
        Ok(out)
    }
}

/// Removes the given groups (indices into `deps.groups`) from `model`.
///
/// # Errors
/// When a removal would leave a layer with no channels, or a group index is out of range.
pub fn remove_groups(model: &Model, deps: &DepGraph, groups: &BTreeSet<usize>) -> Result<(Model, Surgery)> {
    if let Some(&g) = groups.iter().find(|&&g| g >= deps.groups.len()) {
        return Err(Error::Config(format!(
            "group {g} does not exist ({} groups)",
            deps.groups.len()
        )));
    }
    let removed_elems: BTreeSet<usize> = (0..deps.group_of.len())
        .filter(|&e| deps.group_of[e].is_some_and(|g| groups.contains(&g)))
        .collect();
    let mut surgery = Surgery::default();
    for &e in &removed_elems {
        if let Some((node, ch)) = deps.producer[e] {
            surgery
                .removed
                .entry(model.graph.nodes[node].name.clone())
                .or_default()
                .push(ch);
        }
    }
    for v in surgery.removed.values_mut() {
        v.sort_unstable();
    }
    let keep = |elems: &[usize]| -> Vec<usize> {
        (0..elems.len())
            .filter(|&p| !removed_elems.contains(&elems[p]))
            .collect()
    };
    let mut graph = model.graph.clone();
    let mut params = Params::new();
    for (i, node) in graph.nodes.iter_mut().enumerate() {
        let keep_out = keep(&deps.out_elems[i]);
        let keep_in = keep(&deps.in_elems[i]);
        let keep_internal = keep(&deps.internal[i]);
        let kept_shape: Vec<usize> = deps.axes[i].iter().map(|a| keep(a).len()).collect();
        if kept_shape.contains(&0) || keep_internal.is_empty() && !deps.internal[i].is_empty() {
            return Err(Error::graph(
                &node.name,
                "pruning would remove every channel (or head) of this layer",
            ));
        }
        let old_specs = node.op.params();
        let tracked = |elems: &[usize], kept: &[usize]| (kept.len() < elems.len()).then_some(kept.len());
        let shrinks = deps.axes[i].iter().zip(&kept_shape).any(|(a, k)| *k < a.len());
        node.op = node.op.shrunk(&Kept {
            inputs: tracked(&deps.in_elems[i], &keep_in),
            outputs: tracked(&deps.out_elems[i], &keep_out),
            internal: tracked(&deps.internal[i], &keep_internal),
            shape: shrinks.then_some(kept_shape),
        });
        if keep_internal.len() < deps.internal[i].len() {
            remove_heads(&node.name, model, &keep_internal, &mut params);
            continue;
        }
        for spec in old_specs {
            let name = param_name(&node.name, spec.suffix);
            let mut t = model.params[&name].clone();
            // Only axes that lost channels are sliced (an op whose axes are not the tracked
            // channel axis keeps its parameters whole).
            if let Some(a) = spec.out_axis.filter(|_| keep_out.len() < deps.out_elems[i].len()) {
                t = t.select(a, &keep_out);
            }
            if let Some(a) = spec.in_axis.filter(|_| keep_in.len() < deps.in_elems[i].len()) {
                t = if t.shape()[a] < deps.in_elems[i].len() {
                    group_slots(
                        &t,
                        a,
                        deps.out_elems[i].len(),
                        &keep_out,
                        deps.in_elems[i].len(),
                        &keep_in,
                    )
                } else {
                    t.select(a, &keep_in)
                };
            }
            params.insert(name, t);
        }
    }
    Ok((Model::new(graph, params)?, surgery))
}

/// A grouped convolution's weight `[out, in / groups, ...]`, its filters already cut to
/// `keep_out` (of `out_total`), keeps on `axis` each filter's own group's kept input slots
/// (`keep_in`, of `in_total`). The dependency analysis keeps as many positions in every group,
/// not always the same slots: a channel shuffle before the convolution crosses them.
fn group_slots(
    t: &Tensor,
    axis: usize,
    out_total: usize,
    keep_out: &[usize],
    in_total: usize,
    keep_in: &[usize],
) -> Tensor {
    let per_in = t.shape()[axis];
    let groups = in_total / per_in.max(1);
    let per_out = out_total / groups.max(1);
    let slots: Vec<Vec<usize>> = (0..groups)
        .map(|g| {
            keep_in
                .iter()
                .filter(|&&p| p / per_in == g)
                .map(|&p| p % per_in)
                .collect()
        })
        .collect();
    if slots.iter().all(|s| *s == slots[0]) {
        return t.select(axis, &slots[0]);
    }
    // Row `r` of the weight is filter `keep_out[r]`: its slots are those of its group.
    debug_assert_eq!(axis, 1, "a grouped weight's input slots are its axis 1");
    let inner: usize = t.shape()[axis + 1..].iter().product();
    let mut shape = t.shape().to_vec();
    shape[axis] = slots[0].len();
    let mut data = Vec::with_capacity(shape.iter().product());
    for (row, &o) in t.data().chunks(per_in * inner).zip(keep_out) {
        for &s in &slots[o / per_out.max(1)] {
            data.extend_from_slice(&row[s * inner..(s + 1) * inner]);
        }
    }
    Tensor::from_vec(shape, data)
}

/// The number of channels the surgery log numbers for node `i`: its heads for attention, the
/// size of the output axis its weights make otherwise (the channel axis for ops without).
fn channels(model: &Model, shapes: &crate::ir::Shapes, i: usize) -> usize {
    let op = &model.graph.nodes[i].op;
    if op.internal_channels() > 0 {
        return op.internal_channels();
    }
    let s = &shapes.nodes[i];
    let rule = op.axis_rule(&shapes.inputs_of(&model.graph, i));
    rule.weight_out
        .or_else(|| channel_axis(s.len()))
        .map_or(0, |a| s[a])
}

/// Keeps the heads `keep` of an attention node: the rows of its input projection and the
/// columns of its output projection that hold them.
fn remove_heads(name: &str, model: &Model, keep: &[usize], params: &mut Params) {
    let op = &model.graph.node(name).expect("a node of the model").op;
    let (rows, cols) = op.head_slices(keep);
    let p = |suffix: &str| model.params[&param_name(name, suffix)].clone();
    for (suffix, axis, idx) in [
        ("in_proj_weight", 0, &rows),
        ("in_proj_bias", 0, &rows),
        ("out_proj.weight", 1, &cols),
    ] {
        params.insert(param_name(name, suffix), p(suffix).select(axis, idx));
    }
    params.insert(param_name(name, "out_proj.bias"), p("out_proj.bias"));
}

/// Applies a surgery log to the base model it was recorded on.
///
/// # Errors
/// When the log names an unknown node or channel, or removes only part of a coupled group
/// (the log was not made for this architecture).
pub fn replay(base: &Model, surgery: &Surgery) -> Result<Model> {
    let deps = DepGraph::build(base)?;
    let mut by_channel: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    for (gi, g) in deps.groups.iter().enumerate() {
        for &m in &g.members {
            by_channel.insert(m, gi);
        }
    }
    let mut groups = BTreeSet::new();
    for (name, chans) in &surgery.removed {
        let node = base.graph.index_of(name).ok_or_else(|| {
            Error::Config(format!(
                "surgery log names node '{name}', which the base model lacks"
            ))
        })?;
        for &c in chans {
            let g = by_channel.get(&(node, c)).ok_or_else(|| {
                Error::Config(format!(
                    "surgery log removes channel {c} of '{name}', which is not prunable"
                ))
            })?;
            groups.insert(*g);
        }
    }
    let (model, again) = remove_groups(base, &deps, &groups)?;
    if &again != surgery {
        return Err(Error::Config(
            "surgery log removes part of a coupled channel group; it was not made for this base model".into(),
        ));
    }
    Ok(model)
}

/// Zeroes, in place, every weight and bias slice that [`remove_groups`] would cut for these
/// groups' channels (producer rows, BatchNorm gamma/beta/running mean, depthwise filters),
/// leaving shapes unchanged. On such a model removal is exact: the removed channels carry zeros.
pub fn zero_groups(model: &mut Model, deps: &DepGraph, groups: &BTreeSet<usize>) {
    let in_groups = |e: usize| deps.group_of[e].is_some_and(|g| groups.contains(&g));
    for (i, node) in model.graph.nodes.iter().enumerate() {
        let heads: Vec<usize> = (0..deps.internal[i].len())
            .filter(|&h| in_groups(deps.internal[i][h]))
            .collect();
        if !heads.is_empty() {
            // A head's query, key and value rows (with their biases) and its output columns.
            let (rows, cols) = node.op.head_slices(&heads);
            for (suffix, axis, idx) in [
                ("in_proj_weight", 0, &rows),
                ("in_proj_bias", 0, &rows),
                ("out_proj.weight", 1, &cols),
            ] {
                let t = model
                    .params
                    .get_mut(&param_name(&node.name, suffix))
                    .expect("declared");
                zero_slices(t, axis, idx);
            }
        }
        let positions: Vec<usize> = (0..deps.out_elems[i].len())
            .filter(|&p| in_groups(deps.out_elems[i][p]))
            .collect();
        if positions.is_empty() {
            continue;
        }
        for spec in node.op.params() {
            if spec.kind == crate::ir::ParamKind::Buffer && spec.suffix != "running_mean" {
                continue;
            }
            let Some(axis) = spec.out_axis else { continue };
            let t = model
                .params
                .get_mut(&param_name(&node.name, spec.suffix))
                .expect("declared");
            zero_slices(t, axis, &positions);
        }
    }
}

/// Sets the slices at `positions` along `axis` to zero.
fn zero_slices(t: &mut crate::ir::Tensor, axis: usize, positions: &[usize]) {
    let shape = t.shape().to_vec();
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    for o in 0..outer {
        for &p in positions {
            let start = (o * shape[axis] + p) * inner;
            t.data_mut()[start..start + inner]
                .iter_mut()
                .for_each(|v| *v = 0.0);
        }
    }
}
