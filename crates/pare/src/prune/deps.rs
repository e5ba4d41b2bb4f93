//! The channel dependency graph for structured pruning, built only from each op's
//! [`AxisRule`]: no per-op special cases beyond those rules.
//!
//! Every position of every axis of every value is an *element*. Walking the graph in order, each
//! axis of a node's output becomes a vector of elements: a Linear's neurons and a dense conv's
//! filters are new elements (the only removable ones at first), carried axes copy their input's
//! vector, couplings (residual sums, broadcasting, the shared axes of a matrix product) unify
//! elements position by position, a concatenation stacks the vectors, a flatten repeats each
//! element over the positions it covers, a reshape into heads makes one element of each run of
//! `head_dim` positions, a channel shuffle permutes the vector and keeps its columns whole, and
//! fixed axes (spatial positions, normalized or mixed features, the graph's input and outputs)
//! get elements that can never go. Elements that must be removed together fall into one
//! union-find class: a [`Group`], prunable when no element of it is fixed. The groups of a
//! grouped convolution are balanced last, once every coupling is known: each class then removes
//! as many positions from every group (`Elements::balance`). Removing a group slices the
//! producers' output rows, every pass-through parameter (BatchNorm, depthwise filters), every
//! consumer's input columns, and shrinks the reshapes on the way.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{Error, Result};
use crate::ir::op::{channel_axis, Couple, Source};
use crate::ir::{AxisRule, Model, INPUT};

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
    /// Per node: the element id at each position of each axis of its output.
    pub(crate) axes: Vec<Vec<Vec<usize>>>,
    /// Per node: the elements along the output axis its parameters index (`weight_out`), or
    /// along the output's channel axis.
    pub(crate) out_elems: Vec<Vec<usize>>,
    /// Per node: the elements along the axis of its first input that its weights read
    /// (`weight_in`); empty for ops that read none.
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
    /// The reshapes that split an axis, with the elements their carrying part made.
    splits: Vec<SplitRun>,
}

/// A reshape that splits input axis `axis` of node `node` into `parts` axes, and the elements
/// of the part chosen to carry its positions.
#[derive(Clone, Debug)]
struct SplitRun {
    node: usize,
    axis: usize,
    parts: usize,
    carried: Vec<usize>,
    /// Whether some input position could still go when the split was reached (fixed stays
    /// fixed: another carrier cannot help a split of fixed positions).
    movable: bool,
}

/// Which part carries each split's positions, by (node, split input axis); part 0 (the
/// outermost) when absent.
type Carriers = BTreeMap<(usize, usize), usize>;

/// The elements made so far, their producers, and the union-find over them that knows, at any
/// point of the walk, whether a class is fixed.
#[derive(Clone, Default)]
struct Elements {
    parent: Vec<usize>,
    fixed: Vec<bool>,
    producer: Vec<Option<(usize, usize)>>,
    /// Axes cut into equal runs that must stay equal (a grouped convolution's groups), with
    /// their run counts: balanced once every coupling is known.
    balances: Vec<(Vec<usize>, usize)>,
}

impl Elements {
    /// `n` new elements made by node `owner` (channel 0..n), fixed or not.
    fn fresh(&mut self, n: usize, owner: Option<usize>, fixed: bool) -> Vec<usize> {
        let start = self.parent.len();
        for c in 0..n {
            self.parent.push(start + c);
            self.fixed.push(fixed);
            self.producer.push(owner.map(|o| (o, c)));
        }
        (start..start + n).collect()
    }

    fn find(&mut self, x: usize) -> usize {
        let mut r = x;
        while self.parent[r] != r {
            r = self.parent[r];
        }
        let mut y = x;
        while self.parent[y] != r {
            let next = self.parent[y];
            self.parent[y] = r;
            y = next;
        }
        r
    }

    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            let (root, child) = (ra.min(rb), ra.max(rb));
            self.parent[child] = root;
            self.fixed[root] |= self.fixed[child];
        }
    }

    fn fix(&mut self, elems: &[usize]) {
        for &e in elems {
            let r = self.find(e);
            self.fixed[r] = true;
        }
    }

    fn is_fixed(&mut self, e: usize) -> bool {
        let r = self.find(e);
        self.fixed[r]
    }

    /// Unifies two axes position by position; axes of different lengths cannot lose
    /// positions together, so both are fixed.
    fn couple(&mut self, a: &[usize], b: &[usize]) {
        if a.len() == b.len() {
            for (&x, &y) in a.iter().zip(b) {
                self.union(x, y);
            }
        } else {
            self.fix(a);
            self.fix(b);
        }
    }

    /// Makes every class that can still go remove as many positions from each of `groups`
    /// equal runs of `elems`, so that a grouped convolution's groups stay equal, in whichever
    /// of two ways leaves more classes that can go.
    ///
    /// Joining the same slot of every run (see [`Elements::same_slot`]) suits runs whose slots
    /// line up, such as a residual stream that grouped convolutions read and write. It fails
    /// after a channel shuffle: the shuffle keeps each column whole, its columns cross the runs
    /// of the grouped convolution after it, and joining slots then joins every column into one
    /// class. Joining by counts (see [`Elements::balance_counts`]) pairs one column of each run
    /// instead.
    fn balance(&mut self, elems: &[usize], groups: usize) {
        let mut by_count = self.clone();
        by_count.balance_counts(elems, groups);
        self.same_slot(elems, groups);
        if by_count.removable(elems) > self.removable(elems) {
            *self = by_count;
        }
    }

    /// How many classes of `elems` can still go.
    fn removable(&mut self, elems: &[usize]) -> usize {
        let mut roots = BTreeSet::new();
        for &e in elems {
            if !self.is_fixed(e) {
                roots.insert(self.find(e));
            }
        }
        roots.len()
    }

    /// Balances the runs of `elems` by counting what each class removes from each run.
    ///
    /// Classes already balanced stay as they are. Those that lie in one run are joined with
    /// classes of the same size in every other run, in the order of their first positions:
    /// single positions become the same slot of every run, a shuffle's columns one column
    /// from each run. What is left is joined into one class, fixed unless it is balanced.
    /// Joining balanced classes keeps them balanced, so axes balanced earlier stay so.
    fn balance_counts(&mut self, elems: &[usize], groups: usize) {
        let per = elems.len() / groups.max(1);
        if groups < 2 || per == 0 {
            return;
        }
        // Per class that can go: its positions in each run, classes in order of first position.
        let mut counts: Vec<(usize, Vec<usize>)> = Vec::new();
        let mut index: BTreeMap<usize, usize> = BTreeMap::new();
        for (p, &e) in elems.iter().enumerate() {
            if self.is_fixed(e) {
                continue;
            }
            let r = self.find(e);
            let k = *index.entry(r).or_insert_with(|| {
                counts.push((r, vec![0; groups]));
                counts.len() - 1
            });
            counts[k].1[p / per] += 1;
        }
        let mut in_one_run: BTreeMap<(usize, usize), Vec<usize>> = BTreeMap::new();
        let mut rest = Vec::new();
        for (k, (_, c)) in counts.iter().enumerate() {
            if c.iter().all(|&n| n == c[0]) {
                continue;
            }
            let runs: Vec<usize> = (0..groups).filter(|&g| c[g] > 0).collect();
            match *runs {
                [run] => in_one_run.entry((c[run], run)).or_default().push(k),
                _ => rest.push(k),
            }
        }
        let sizes: BTreeSet<usize> = in_one_run.keys().map(|&(n, _)| n).collect();
        for n in sizes {
            let lists: Vec<Vec<usize>> = (0..groups)
                .map(|g| in_one_run.remove(&(n, g)).unwrap_or_default())
                .collect();
            let joined = lists.iter().map(Vec::len).min().unwrap_or(0);
            for j in 0..joined {
                for list in &lists[1..] {
                    self.union(counts[lists[0][j]].0, counts[list[j]].0);
                }
            }
            rest.extend(lists.iter().flat_map(|l| l[joined..].iter().copied()));
        }
        let Some(&first) = rest.first() else { return };
        let mut total = vec![0; groups];
        for &k in &rest {
            self.union(counts[first].0, counts[k].0);
            for (t, n) in total.iter_mut().zip(&counts[k].1) {
                *t += n;
            }
        }
        if total.iter().any(|&n| n != total[0]) {
            self.fix(&[counts[first].0]);
        }
    }

    /// Unifies position `i` of the first of `groups` equal runs of `elems` with position `i`
    /// of every other run.
    fn same_slot(&mut self, elems: &[usize], groups: usize) {
        let per = elems.len() / groups.max(1);
        for g in 1..groups {
            for i in 0..per {
                self.union(elems[i], elems[g * per + i]);
            }
        }
    }

    /// The output axis made from `src` by one [`Source`]; `carrier` is the part that carries
    /// the positions when `src` is part of a split.
    fn source(
        &mut self,
        src: &Source,
        ins: &[Vec<Vec<usize>>],
        in_shapes: &[&[usize]],
        size: usize,
        node: usize,
        carrier: usize,
    ) -> Vec<usize> {
        match src {
            Source::Input { input, axis } => ins[*input][*axis].clone(),
            Source::Stacked { axis } => ins.iter().flat_map(|x| x[*axis].iter().copied()).collect(),
            Source::Made => self.fresh(size, Some(node), false),
            Source::Fixed => self.fresh(size, None, true),
            Source::Merged { input, axes } => {
                let x = &ins[*input];
                // Positions follow the first axis that can still lose some; the others stay.
                let primary = axes.iter().position(|&a| x[a].iter().any(|&e| !self.is_fixed(e)));
                for (k, &a) in axes.iter().enumerate() {
                    if Some(k) != primary {
                        self.fix(&x[a]);
                    }
                }
                let Some(k) = primary else {
                    return self.fresh(size, None, true);
                };
                let dims: Vec<usize> = axes.iter().map(|&a| in_shapes[*input][a]).collect();
                let inner: usize = dims[k + 1..].iter().product();
                let elems = &x[axes[k]];
                (0..size).map(|q| elems[(q / inner) % dims[k]]).collect()
            }
            Source::Split {
                input,
                axis,
                sizes,
                part,
            } => {
                if *part != carrier {
                    return self.fresh(size, None, true);
                }
                // Position k of this part: every input position with coordinate k here.
                let inner: usize = sizes[part + 1..].iter().product();
                let mut first: Vec<Option<usize>> = vec![None; size];
                for (p, &e) in ins[*input][*axis].iter().enumerate() {
                    let k = (p / inner.max(1)) % size.max(1);
                    match first[k] {
                        None => first[k] = Some(e),
                        Some(f) => self.union(f, e),
                    }
                }
                first.into_iter().flatten().collect()
            }
            Source::Shuffled { input, axis, groups } => {
                let x = &ins[*input][*axis];
                self.same_slot(x, *groups);
                let per = x.len() / (*groups).max(1);
                (0..x.len()).map(|o| x[(o % groups) * per + o / groups]).collect()
            }
        }
    }
}

impl DepGraph {
    /// Analyses a model. The model's outputs, its input and the tied layers (see
    /// `Graph::ties`) can never lose positions.
    ///
    /// A reshape that splits an axis into several is carried by its outermost part unless that
    /// part ends up fixed (the `3` of a `[3, heads, head_dim]` split that a gather of queries,
    /// keys and values then reads); then the next part inward is tried, one split at a time.
    pub fn build(model: &Model) -> Result<DepGraph> {
        let mut carriers = Carriers::new();
        let mut best = Self::analyse(model, &carriers)?;
        for run in best.splits.clone().into_iter().filter(|r| r.movable) {
            for part in 1..run.parts {
                if !best.is_fixed_run(run.node, run.axis) {
                    break;
                }
                let mut trial = carriers.clone();
                trial.insert((run.node, run.axis), part);
                let d = Self::analyse(model, &trial)?;
                if !d.is_fixed_run(run.node, run.axis) {
                    (carriers, best) = (trial, d);
                    break;
                }
            }
        }
        Ok(best)
    }

    /// Whether every element the split of (node, axis) carries is fixed.
    fn is_fixed_run(&self, node: usize, axis: usize) -> bool {
        self.splits
            .iter()
            .filter(|r| (r.node, r.axis) == (node, axis))
            .all(|r| r.carried.iter().all(|&e| self.group_of[e].is_none()))
    }

    /// One pass of the analysis with the given split carriers.
    fn analyse(model: &Model, carriers: &Carriers) -> Result<DepGraph> {
        let g = &model.graph;
        let shapes = model.shapes();
        let mut el = Elements::default();
        let input_axes: Vec<Vec<usize>> = shapes.input.iter().map(|&n| el.fresh(n, None, true)).collect();
        let n_nodes = g.nodes.len();
        let mut axes: Vec<Vec<Vec<usize>>> = Vec::with_capacity(n_nodes);
        let mut out_elems: Vec<Vec<usize>> = Vec::with_capacity(n_nodes);
        let mut in_elems: Vec<Vec<usize>> = Vec::with_capacity(n_nodes);
        let mut internal: Vec<Vec<usize>> = Vec::with_capacity(n_nodes);
        let mut splits: Vec<SplitRun> = Vec::new();
        let index: BTreeMap<&str, usize> = g
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.as_str(), i))
            .collect();
        for (i, node) in g.nodes.iter().enumerate() {
            let ins: Vec<Vec<Vec<usize>>> = node
                .inputs
                .iter()
                .map(|n| {
                    if n == INPUT {
                        input_axes.clone()
                    } else {
                        axes[index[n.as_str()]].clone()
                    }
                })
                .collect();
            let in_shapes = shapes.inputs_of(g, i);
            let out_shape = &shapes.nodes[i];
            // A tied layer's parameters serve several nodes at once: its positions stay.
            let tied = g.is_tied(&node.name);
            let rule = if tied {
                AxisRule::opaque(out_shape.len())
            } else {
                node.op.axis_rule(&in_shapes)
            };
            let disagrees = || Error::graph(&node.name, "axis mapping disagrees with the shape rules");
            if rule.outputs.len() != out_shape.len() {
                return Err(disagrees());
            }
            for (k, x) in ins.iter().enumerate() {
                for (a, elems) in x.iter().enumerate() {
                    if !rule.reads(k, a) {
                        el.fix(elems);
                    }
                }
            }
            for c in &rule.couples {
                match *c {
                    Couple::Positions { a, b } => {
                        let (x, y) = (&ins[a.0][a.1], &ins[b.0][b.1]);
                        el.couple(x, y);
                    }
                    Couple::InputGroups { input, axis, groups } => {
                        el.balances.push((ins[input][axis].clone(), groups));
                    }
                    Couple::OutputGroups { .. } => {}
                }
            }
            let mut out = Vec::with_capacity(out_shape.len());
            for (j, src) in rule.outputs.iter().enumerate() {
                let split = match src {
                    Source::Split {
                        axis, sizes, part, ..
                    } => Some((*axis, sizes.len(), *part)),
                    _ => None,
                };
                let carrier = split.map_or(0, |(axis, _, _)| carriers.get(&(i, axis)).copied().unwrap_or(0));
                let movable = match src {
                    Source::Split { input, axis, .. } => ins[*input][*axis].iter().any(|&e| !el.is_fixed(e)),
                    _ => false,
                };
                let v = el.source(src, &ins, &in_shapes, out_shape[j], i, carrier);
                if v.len() != out_shape[j] {
                    return Err(disagrees());
                }
                if let Some((axis, parts, _)) = split.filter(|s| s.2 == carrier) {
                    splits.push(SplitRun {
                        node: i,
                        axis,
                        parts,
                        carried: v.clone(),
                        movable,
                    });
                }
                out.push(v);
            }
            for c in &rule.couples {
                if let Couple::OutputGroups { axis, groups } = *c {
                    el.balances.push((out[axis].clone(), groups));
                }
            }
            let out_axis = rule.weight_out.or_else(|| channel_axis(out.len()));
            out_elems.push(out_axis.map(|a| out[a].clone()).unwrap_or_default());
            in_elems.push(
                rule.weight_in
                    .and_then(|a| Some(ins.first()?[a].clone()))
                    .unwrap_or_default(),
            );
            axes.push(out);
            internal.push(el.fresh(node.op.internal_channels(), Some(i), tied));
        }
        for out in g.outputs() {
            for a in &axes[index[out]] {
                el.fix(a);
            }
        }
        for (elems, groups) in std::mem::take(&mut el.balances) {
            el.balance(&elems, groups);
        }
        let n = el.parent.len();
        let mut group_index: BTreeMap<usize, usize> = BTreeMap::new();
        let mut groups: Vec<Group> = Vec::new();
        let mut group_of = vec![None; n];
        for (e, slot) in group_of.iter_mut().enumerate() {
            let r = el.find(e);
            if el.fixed[r] {
                continue;
            }
            let gi = *group_index.entry(r).or_insert_with(|| {
                groups.push(Group { members: Vec::new() });
                groups.len() - 1
            });
            if let Some(p) = el.producer[e] {
                groups[gi].members.push(p);
            }
            *slot = Some(gi);
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
            axes,
            internal,
            out_elems,
            in_elems,
            producer: el.producer,
            group_of,
            groups,
            families,
            splits,
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
