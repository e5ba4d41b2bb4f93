//! Data-driven initialization of depthwise-separable conversions: the pointwise layer refitted
//! by least squares so that the pair reproduces the original convolution's outputs on
//! calibration images (the depthwise filters keep their rank-1 weight-space fit).

use nalgebra::DMatrix;

use crate::error::{Error, Result};
use crate::ir::op::param_name;
use crate::ir::op::Conv2d;
use crate::ir::{Model, Op, Reparams, Tensor};

/// After [`super::factorize_with`] with [`super::ConvMethod::Separable`]: refits the pointwise
/// layer of every convolution its report `rows` shows converted, on `images` training images
/// of `set` (seeded draw) normalized as `original` normalizes its inputs. Returns the model and
/// the layers refitted.
pub fn refit_separable(
    model: &Model,
    original: &Model,
    rows: &[super::LayerRank],
    set: &dyn crate::data::Dataset,
    images: usize,
    seed: u64,
) -> Result<(Model, Vec<String>)> {
    let converted: Vec<String> = rows
        .iter()
        .filter(|r| r.factorized && r.method == "separable")
        .map(|r| r.layer.clone())
        .collect();
    if converted.is_empty() || images == 0 {
        return Ok((model.clone(), Vec::new()));
    }
    let norm = &original.graph.input.normalize;
    let batches: Vec<Tensor> = crate::data::calibration_batches(set, norm, images.div_ceil(64), 64, seed)
        .into_iter()
        .map(|b| b.x)
        .collect();
    Ok((refit_pointwise(model, original, &converted, &batches)?, converted))
}

/// Refits, in graph order, the pointwise layer of each of `layers` (converted by
/// [`super::ConvMethod::Separable`], so `{layer}_dw` feeds `{layer}`) to the output of the
/// layer of the same name in `original`, over every position of `batches` (normalized inputs).
/// Each layer is fitted on the outputs of the layers refitted before it, so errors do not
/// compound. A small ridge term keeps the solve well posed.
///
/// # Errors
/// A layer that is not a separable conversion in `model` or no layer of `original`.
pub fn refit_pointwise(
    model: &Model,
    original: &Model,
    layers: &[String],
    batches: &[Tensor],
) -> Result<Model> {
    let mut out = model.clone();
    let mut order: Vec<(usize, &String)> = Vec::new();
    for l in layers {
        let dw = format!("{l}_dw");
        let ok = matches!(
            model.graph.node(l).map(|n| &n.op),
            Some(Op::Conv2d(Conv2d {
                kernel_size: [1, 1],
                groups: 1,
                ..
            }))
        ) && model.graph.node(l).is_some_and(|n| n.inputs == [dw.clone()])
            && original.graph.node(l).is_some();
        if !ok {
            return Err(Error::Config(format!(
                "'{l}' is not a depthwise-separable conversion of a layer of the original model"
            )));
        }
        order.push((model.graph.index_of(l).expect("checked"), l));
    }
    order.sort();
    // The original layers' outputs do not change as layers are refitted: one pass per batch.
    let names: Vec<String> = order.iter().map(|(_, l)| l.to_string()).collect();
    let mut targets = batches
        .iter()
        .map(|x| Ok(crate::exec::infer(original, x, &Reparams::new(), &names)?.taps))
        .collect::<Result<Vec<_>>>()?;
    for (_, layer) in order {
        let Some(Op::Conv2d(Conv2d {
            in_channels: i,
            out_channels: o,
            bias,
            ..
        })) = out.graph.node(layer).map(|n| n.op.clone())
        else {
            unreachable!("checked above")
        };
        let dw = format!("{layer}_dw");
        let d = i + usize::from(bias);
        let mut gram = DMatrix::<f64>::zeros(d, d);
        let mut cross = DMatrix::<f64>::zeros(d, o);
        let mut z = vec![0.0f64; d];
        for (x, target) in batches.iter().zip(&mut targets) {
            let zs = crate::exec::infer(&out, x, &Reparams::new(), std::slice::from_ref(&dw))?
                .taps
                .remove(&dw);
            let ys = target.remove(layer);
            let (Some(zs), Some(ys)) = (zs, ys) else {
                unreachable!("the taps were asked for")
            };
            let (n, hw) = (zs.shape()[0], zs.shape()[2] * zs.shape()[3]);
            if ys.shape() != [n, o, zs.shape()[2], zs.shape()[3]] {
                return Err(Error::graph(
                    layer,
                    "the original layer's output has another shape",
                ));
            }
            for s in 0..n {
                for p in 0..hw {
                    for (c, zc) in z.iter_mut().enumerate().take(i) {
                        *zc = zs.data()[(s * i + c) * hw + p] as f64;
                    }
                    if bias {
                        z[i] = 1.0;
                    }
                    for a in 0..d {
                        for b in a..d {
                            gram[(a, b)] += z[a] * z[b];
                        }
                        for f in 0..o {
                            cross[(a, f)] += z[a] * ys.data()[(s * o + f) * hw + p] as f64;
                        }
                    }
                }
            }
        }
        for a in 0..d {
            for b in 0..a {
                gram[(a, b)] = gram[(b, a)];
            }
        }
        let ridge = 1e-6 * (gram.trace() / d as f64).max(1e-12);
        for a in 0..d {
            gram[(a, a)] += ridge;
        }
        let solved = gram
            .cholesky()
            .ok_or_else(|| Error::graph(layer, "the calibration features are degenerate"))?
            .solve(&cross);
        let weight: Vec<f32> = (0..o)
            .flat_map(|f| (0..i).map(move |c| (f, c)))
            .map(|(f, c)| solved[(c, f)] as f32)
            .collect();
        out.params.insert(
            param_name(layer, "weight"),
            Tensor::from_vec(vec![o, i, 1, 1], weight),
        );
        if bias {
            let b: Vec<f32> = (0..o).map(|f| solved[(i, f)] as f32).collect();
            out.params
                .insert(param_name(layer, "bias"), Tensor::from_vec(vec![o], b));
        }
    }
    Ok(out)
}
