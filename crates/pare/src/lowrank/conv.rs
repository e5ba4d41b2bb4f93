//! Convolutions factorized: spatial SVD, Tucker-2 and depthwise-separable. Weights are
//! PyTorch's `[out, in, kh, kw]`.

use nalgebra::DMatrix;

use super::svd::Svd;
use super::{kept_fraction, ConvMethod, LayerRank, Rank};
use crate::ir::op::param_name;
use crate::ir::op::Conv2d;
use crate::ir::{Model, Node, Op, Params, Tensor};

/// The factorization of conv `node` by `method`: its report row, the nodes that replace it
/// (the last keeps its name and bias) and the new weights. The caller replaces the node only
/// when the row says `factorized`.
pub(super) fn factorize(
    model: &Model,
    node: &Node,
    rank: Rank,
    method: ConvMethod,
) -> (LayerRank, Vec<Node>, Params) {
    let Op::Conv2d(Conv2d {
        in_channels: i,
        out_channels: o,
        kernel_size: [kh, kw],
        stride,
        padding,
        dilation,
        bias,
        ..
    }) = node.op
    else {
        unreachable!("only convolutions are factorized here")
    };
    let w = &model.params[&param_name(&node.name, "weight")];
    let conv = |name: String,
                inp: usize,
                out: usize,
                k: [usize; 2],
                s: [usize; 2],
                p: [usize; 2],
                d: [usize; 2],
                bias: bool,
                input: &str| Node {
        name,
        op: Op::Conv2d(Conv2d {
            in_channels: inp,
            out_channels: out,
            kernel_size: k,
            stride: s,
            padding: p,
            dilation: d,
            groups: 1,
            bias,
        }),
        inputs: vec![input.to_string()],
    };
    let before = o * i * kh * kw;
    let mut params = Params::new();
    match method {
        ConvMethod::Spatial => {
            // M[(c, y), (x, f)] = W[f, c, y, x]: a rank-r split is a kh x 1 conv to r channels
            // (rows of M) followed by a 1 x kw conv (columns of M).
            let m = DMatrix::from_fn(i * kh, kw * o, |row, col| {
                let (c, y) = (row / kh, row % kh);
                let (x, f) = (col / o, col % o);
                w.data()[((f * i + c) * kh + y) * kw + x] as f64
            });
            let svd = Svd::of_matrix(m);
            let r = svd.rank_for(rank);
            let after = r * i * kh + o * r * kw;
            let (b, a) = svd.factors(r); // b: [r, kw * o], a: [i * kh, r]
            let mut vertical = vec![0.0f32; r * i * kh];
            for j in 0..r {
                for row in 0..i * kh {
                    vertical[j * i * kh + row] = a.data()[row * r + j];
                }
            }
            let mut horizontal = vec![0.0f32; o * r * kw];
            for f in 0..o {
                for j in 0..r {
                    for x in 0..kw {
                        horizontal[(f * r + j) * kw + x] = b.data()[j * kw * o + x * o + f];
                    }
                }
            }
            let first = format!("{}_v", node.name);
            params.insert(
                param_name(&first, "weight"),
                Tensor::from_vec(vec![r, i, kh, 1], vertical),
            );
            params.insert(
                param_name(&node.name, "weight"),
                Tensor::from_vec(vec![o, r, 1, kw], horizontal),
            );
            let nodes = vec![
                conv(
                    first.clone(),
                    i,
                    r,
                    [kh, 1],
                    [stride[0], 1],
                    [padding[0], 0],
                    [dilation[0], 1],
                    false,
                    &node.inputs[0],
                ),
                conv(
                    node.name.clone(),
                    r,
                    o,
                    [1, kw],
                    [1, stride[1]],
                    [0, padding[1]],
                    [1, dilation[1]],
                    bias,
                    &first,
                ),
            ];
            let row = LayerRank::new(
                &node.name,
                "spatial",
                svd.values.len(),
                r,
                svd.energy(r),
                (before, after),
            );
            (row, nodes, params)
        }
        ConvMethod::Separable => {
            // W[:, c] ~ p_c d_c^T: the depthwise filter and the pointwise column of channel c,
            // the singular value split evenly between them.
            let k = kh * kw;
            let (mut dw, mut pw) = (vec![0.0f32; i * k], vec![0.0f32; o * i]);
            let (mut kept, mut total) = (0.0f64, 0.0f64);
            let mut full = 0;
            for c in 0..i {
                let slice = DMatrix::from_fn(o, k, |f, yx| w.data()[(f * i + c) * k + yx] as f64);
                total += slice.iter().map(|v| v * v).sum::<f64>();
                let svd = Svd::of_matrix(slice);
                full = svd.values.len();
                let (d, p) = svd.factors(1); // d: [1, k], p: [o, 1]
                kept += svd.values[0] * svd.values[0];
                dw[c * k..(c + 1) * k].copy_from_slice(d.data());
                for f in 0..o {
                    pw[f * i + c] = p.data()[f];
                }
            }
            let first = format!("{}_dw", node.name);
            params.insert(
                param_name(&first, "weight"),
                Tensor::from_vec(vec![i, 1, kh, kw], dw),
            );
            params.insert(
                param_name(&node.name, "weight"),
                Tensor::from_vec(vec![o, i, 1, 1], pw),
            );
            let mut depthwise = conv(
                first.clone(),
                i,
                i,
                [kh, kw],
                stride,
                padding,
                dilation,
                false,
                &node.inputs[0],
            );
            if let Op::Conv2d(Conv2d { groups, .. }) = &mut depthwise.op {
                *groups = i;
            }
            let nodes = vec![
                depthwise,
                conv(
                    node.name.clone(),
                    i,
                    o,
                    [1, 1],
                    [1, 1],
                    [0, 0],
                    [1, 1],
                    bias,
                    &first,
                ),
            ];
            let after = i * k + o * i;
            let row = LayerRank::new(
                &node.name,
                "separable",
                full,
                1,
                kept_fraction(kept, total),
                (before, after),
            );
            (row, nodes, params)
        }
        ConvMethod::Tucker2 => {
            let k = kh * kw;
            // HOSVD on the two channel axes: the leading left singular vectors of the
            // output-channel unfolding [o, i k] and of the input-channel unfolding [i, o k].
            let out_svd = Svd::of(w, o, i * k);
            let in_svd = Svd::of_matrix(DMatrix::from_fn(i, o * k, |c, col| {
                let (f, yx) = (col / k, col % k);
                w.data()[(f * i + c) * k + yx] as f64
            }));
            let (ro, ri) = (out_svd.rank_for(rank), in_svd.rank_for(rank));
            let (uo, ui) = (out_svd.left(ro), in_svd.left(ri));
            // core[a, b, yx] = sum_f sum_c uo[f, a] ui[c, b] W[f, c, yx]
            let mut t = vec![0.0f64; ro * i * k];
            for f in 0..o {
                for a in 0..ro {
                    let u = uo[f * ro + a];
                    for c in 0..i {
                        for yx in 0..k {
                            t[(a * i + c) * k + yx] += u * w.data()[(f * i + c) * k + yx] as f64;
                        }
                    }
                }
            }
            let mut core = vec![0.0f64; ro * ri * k];
            for a in 0..ro {
                for c in 0..i {
                    for b in 0..ri {
                        let u = ui[c * ri + b];
                        for yx in 0..k {
                            core[(a * ri + b) * k + yx] += u * t[(a * i + c) * k + yx];
                        }
                    }
                }
            }
            let total: f64 = w.data().iter().map(|&v| (v as f64).powi(2)).sum();
            let kept: f64 = core.iter().map(|v| v * v).sum();
            let after = i * ri + ri * ro * k + ro * o;
            let first = format!("{}_in", node.name);
            let mid = format!("{}_core", node.name);
            let to_f32 = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<f32>>();
            let mut down = vec![0.0f64; ri * i];
            for c in 0..i {
                for b in 0..ri {
                    down[b * i + c] = ui[c * ri + b];
                }
            }
            params.insert(
                param_name(&first, "weight"),
                Tensor::from_vec(vec![ri, i, 1, 1], to_f32(down)),
            );
            params.insert(
                param_name(&mid, "weight"),
                Tensor::from_vec(vec![ro, ri, kh, kw], to_f32(core)),
            );
            params.insert(
                param_name(&node.name, "weight"),
                Tensor::from_vec(vec![o, ro, 1, 1], to_f32(uo)),
            );
            let nodes = vec![
                conv(
                    first.clone(),
                    i,
                    ri,
                    [1, 1],
                    [1, 1],
                    [0, 0],
                    [1, 1],
                    false,
                    &node.inputs[0],
                ),
                conv(
                    mid.clone(),
                    ri,
                    ro,
                    [kh, kw],
                    stride,
                    padding,
                    dilation,
                    false,
                    &first,
                ),
                conv(
                    node.name.clone(),
                    ro,
                    o,
                    [1, 1],
                    [1, 1],
                    [0, 0],
                    [1, 1],
                    bias,
                    &mid,
                ),
            ];
            let row = LayerRank {
                input_rank: Some(ri),
                ..LayerRank::new(
                    &node.name,
                    "tucker2",
                    out_svd.values.len(),
                    ro,
                    kept_fraction(kept, total),
                    (before, after),
                )
            };
            (row, nodes, params)
        }
    }
}
