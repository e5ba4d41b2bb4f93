//! Reports: per-layer tables of a model (shape, parameters, MACs, sparsity, how the weights
//! are held) as data and text,
//! latency measurement, and plots.

pub mod gemm;
pub mod plot;

use serde::{Deserialize, Serialize};

use crate::ir::{Model, ParamKind};

/// One row of `pare info`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerRow {
    pub name: String,
    pub op: String,
    /// Per-sample output shape.
    pub output_shape: Vec<usize>,
    /// Trained parameters of the node (buffers excluded).
    pub params: usize,
    pub macs: u64,
    /// Fraction of exactly-zero entries among the node's weights (not biases); `None` when the
    /// node has no weights.
    pub sparsity: Option<f64>,
    /// How the node's weights are held (`f32`, `f16`, `int8`, `uint4`, `1-bit`, ...; see
    /// [`crate::ir::tensor::Store`]); `None` when the node has no weights.
    #[serde(default)]
    pub weights: Option<String>,
}

/// Whole-model totals.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub layers: Vec<LayerRow>,
    pub params: usize,
    /// Trained parameters that are not exactly zero.
    pub nonzero_params: usize,
    pub macs: u64,
}

/// The per-layer table of a model.
pub fn summarize(model: &Model) -> Summary {
    let shapes = model.shapes();
    let mut layers = Vec::new();
    let mut nonzero = 0;
    for (i, (node, shape)) in model.graph.nodes.iter().zip(&shapes.nodes).enumerate() {
        let (mut wz, mut wn) = (0usize, 0usize);
        let mut held: Option<String> = None;
        // A tied node's parameters are its owner's, counted in the owner's row.
        let own = !model.graph.ties.contains_key(&node.name);
        for spec in node.op.params().into_iter().filter(|_| own) {
            let t = &model.params[&crate::ir::op::param_name(&node.name, spec.suffix)];
            if spec.kind != ParamKind::Buffer {
                nonzero += t.len() - t.zero_count();
            }
            if spec.kind == ParamKind::Weight {
                wz += t.zero_count();
                wn += t.len();
                let dtype = t.store().dtype();
                held = Some(match held {
                    Some(h) if h != dtype => format!("{h}+{dtype}"),
                    _ => dtype,
                });
            }
        }
        layers.push(LayerRow {
            name: node.name.clone(),
            op: node.op.kind().to_string(),
            output_shape: shape.clone(),
            params: if own { node.op.num_params() } else { 0 },
            macs: model.node_macs(&shapes, i),
            sparsity: (wn > 0).then(|| wz as f64 / wn as f64),
            weights: held,
        });
    }
    Summary {
        params: layers.iter().map(|l| l.params).sum(),
        macs: layers.iter().map(|l| l.macs).sum(),
        nonzero_params: nonzero,
        layers,
    }
}

/// Thousands separators: 431080 -> "431,080".
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// A fixed-width text table of `summary`.
pub fn render(summary: &Summary) -> String {
    let shape = |s: &[usize]| {
        format!(
            "[{}]",
            s.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
        )
    };
    let rows: Vec<[String; 7]> = summary
        .layers
        .iter()
        .map(|l| {
            [
                l.name.clone(),
                l.op.clone(),
                shape(&l.output_shape),
                thousands(l.params as u64),
                thousands(l.macs),
                l.sparsity
                    .map(|s| format!("{:.1}%", s * 100.0))
                    .unwrap_or_else(|| "-".into()),
                l.weights.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let header = ["layer", "op", "output", "params", "MACs", "sparsity", "weights"];
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: &[String]| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if (3..6).contains(&i) {
                    format!("{c:>w$}", w = widths[i])
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = String::new();
    out.push_str(&line(&header.map(String::from)));
    out.push('\n');
    for r in &rows {
        out.push_str(&line(r));
        out.push('\n');
    }
    let sparsity = 1.0 - summary.nonzero_params as f64 / summary.params.max(1) as f64;
    out.push_str(&format!(
        "total: {} parameters ({} non-zero, {:.1}% sparse), {} MACs per sample\n",
        thousands(summary.params as u64),
        thousands(summary.nonzero_params as u64),
        sparsity * 100.0,
        thousands(summary.macs)
    ));
    out
}

/// Which forward pass a latency measurement times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// pare's own kernels ([`crate::native`]): what a deployed model runs.
    Native,
    /// The training engine's eval-mode pass ([`crate::exec::infer`]), for comparison.
    Training,
}

/// Median wall-clock milliseconds of an eval-mode forward pass on a batch of `batch` zero
/// images, after two warm-up runs, of the model's deployable form (BatchNorm folded into the
/// preceding layers, see [`crate::fuse`]): the CPU latency a user of the model would see.
pub fn latency_ms(model: &Model, batch: usize, reps: usize, engine: Engine) -> crate::Result<f64> {
    Ok(latencies_ms(&[model], batch, reps, engine)?[0])
}

/// [`latency_ms`] of several models, measured interleaved: each repetition runs every model
/// once in turn, so that a slowdown of the machine while they are measured (another tenant of
/// the VM, a clock change) falls on all of them alike and their ratio stays honest. Measured
/// one after the other, a drift between minutes (nearly 2x between runs on a shared 2-core VM) lands
/// on one model only and makes a speed-up up or down.
pub fn latencies_ms(models: &[&Model], batch: usize, reps: usize, engine: Engine) -> crate::Result<Vec<f64>> {
    let none = crate::ir::Reparams::new();
    // The native engine runs a plan compiled once, as a deployment does.
    let prepared = models
        .iter()
        .map(|m| {
            let (model, x) = deployable(m, batch)?;
            let plan = match engine {
                Engine::Native => Some(crate::native::compile(&model)?),
                Engine::Training => None,
            };
            Ok((model, plan, x))
        })
        .collect::<crate::Result<Vec<_>>>()?;
    let run =
        |(model, plan, x): &(Model, Option<crate::native::Plan>, crate::ir::Tensor)| -> crate::Result<f64> {
            // The native plan takes the batch over (a deployment owning its input buffer):
            // the copy handed to it is made before the clock starts.
            let owned = plan.as_ref().map(|_| x.clone());
            let t = std::time::Instant::now();
            match (plan, owned) {
                (Some(plan), Some(x)) => plan.run_owned(x).map(drop)?,
                _ => crate::exec::infer(model, x, &none, &[]).map(drop)?,
            }
            Ok(t.elapsed().as_secs_f64() * 1e3)
        };
    for p in &prepared {
        for _ in 0..2 {
            run(p)?;
        }
    }
    let mut times = vec![Vec::with_capacity(reps.max(1)); prepared.len()];
    for _ in 0..reps.max(1) {
        for (p, t) in prepared.iter().zip(&mut times) {
            t.push(run(p)?);
        }
    }
    Ok(times.into_iter().map(median).collect())
}

/// What a latency is measured on: the model with BatchNorm folded, and a batch of zero images.
fn deployable(model: &Model, batch: usize) -> crate::Result<(Model, crate::ir::Tensor)> {
    let folded = crate::fuse::fold_batch_norm(model)?;
    let mut shape = vec![batch];
    shape.extend(&folded.graph.input.shape);
    Ok((folded, crate::ir::Tensor::zeros(shape)))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One node's share of [`layer_latencies_ms`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerTime {
    pub name: String,
    pub op: String,
    /// The native kernel that ran it (e.g. "linear binary (avx2)").
    pub kernel: String,
    pub macs: u64,
    /// Median milliseconds over the repetitions.
    pub ms: f64,
}

/// Median milliseconds per node of pare's kernels on a batch of `batch` zero images, for each
/// model's deployable form (BatchNorm folded, ReLUs fused into the layer before them, which
/// then carries their time): which layers a latency goes to, and whether a pruned layer got as
/// much faster as its MACs say. The models run interleaved, as in [`latencies_ms`].
pub fn layer_latencies_ms(
    models: &[&Model],
    batch: usize,
    reps: usize,
) -> crate::Result<Vec<Vec<LayerTime>>> {
    let mut prepared = models
        .iter()
        .map(|m| {
            let (folded, x) = deployable(m, batch)?;
            let plan = crate::native::compile(&folded)?;
            plan.run(&x)?;
            let times: Vec<Vec<f64>> = vec![Vec::with_capacity(reps.max(1)); folded.graph.nodes.len()];
            Ok((folded, plan, x, times))
        })
        .collect::<crate::Result<Vec<_>>>()?;
    for _ in 0..reps.max(1) {
        for (_, plan, x, times) in &mut prepared {
            plan.run_timed(x, &mut |i, t| times[i].push(t.as_secs_f64() * 1e3))?;
        }
    }
    Ok(prepared
        .into_iter()
        .map(|(folded, plan, _, times)| {
            let shapes = folded.shapes();
            let kernels: std::collections::HashMap<usize, String> = plan.kernels().into_iter().collect();
            folded
                .graph
                .nodes
                .iter()
                .enumerate()
                .zip(times)
                .filter(|(_, t)| !t.is_empty())
                .map(|((i, node), t)| LayerTime {
                    name: node.name.clone(),
                    op: node.op.kind().to_string(),
                    kernel: kernels.get(&i).cloned().unwrap_or_default(),
                    macs: folded.node_macs(&shapes, i),
                    ms: median(t),
                })
                .collect()
        })
        .collect())
}
