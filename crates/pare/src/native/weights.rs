//! The forms a layer's weight takes in a compiled plan (dense f32, compressed sparse rows,
//! bit-packed signs, integer codes) and the rules that pick one from the model's values:
//! a layer runs on bits or integers only where that computes what the f32 kernel computes.

use super::binary::{BinaryConv, BinaryMatrix};
use super::int8::{ActCodes, Int8Conv, Int8Matrix};
use super::sparse::{Csr, SPARSE_AT_MOST};
use crate::ir::op::param_name;
use crate::ir::op::{Conv2d, Linear};
use crate::ir::{Model, Op, Tensor};

/// A Linear layer's weight `[out, in]` as its product wants it.
#[derive(Clone, Debug)]
pub(super) enum LinearWeight {
    Dense(Vec<f32>),
    /// Mostly zeros (unstructured pruning): compressed sparse rows, chosen when at most
    /// `SPARSE_AT_MOST` of the weights are non-zero.
    Sparse(Csr),
    /// `alpha_r * sign(w)` rows on a binary input (BNN, XNOR-Net): bit-packed, products by
    /// XNOR and popcount.
    Binary(BinaryMatrix),
    /// Integer rows on an input quantized to 8 bits ([`int8_input`]): u8 x i8 products.
    Int8(Int8Matrix, ActCodes),
}

impl LinearWeight {
    /// The fastest form of `weight`; `binary` says the layer reads a sign ([`runs_binary`]),
    /// `int8` the codes of the fake quantizer it reads ([`int8_input`]). Sign bits and integer
    /// codes are packed as the tensor holds them, with no f32 copy.
    pub(super) fn new(
        weight: &Tensor,
        out_features: usize,
        in_features: usize,
        binary: bool,
        int8: Option<ActCodes>,
    ) -> LinearWeight {
        if let Some(b) = binary
            .then(|| BinaryMatrix::from_tensor(weight, out_features, in_features))
            .flatten()
        {
            return LinearWeight::Binary(b);
        }
        if let Some((m, act)) =
            int8.and_then(|act| Some((Int8Matrix::from_tensor(weight, out_features, in_features)?, act)))
        {
            return LinearWeight::Int8(m, act);
        }
        let weight = weight.data();
        if Csr::density(weight) <= SPARSE_AT_MOST {
            LinearWeight::Sparse(Csr::from_dense(weight, out_features, in_features))
        } else {
            LinearWeight::Dense(weight.to_vec())
        }
    }
}

/// The rows and row width of a Linear's or an ungrouped Conv2d's weight as a matrix (a
/// filter per row).
fn weight_rows(op: &Op) -> Option<(usize, usize)> {
    match *op {
        Op::Linear(Linear {
            in_features,
            out_features,
            ..
        }) => Some((out_features, in_features)),
        Op::Conv2d(Conv2d {
            in_channels,
            out_channels,
            kernel_size: [kh, kw],
            groups: 1,
            ..
        }) => Some((out_channels, in_channels * kh * kw)),
        _ => None,
    }
}

/// Whether node `i` of `model` runs a binary kernel: a Linear, or an ungrouped undilated
/// Conv2d, with `alpha * sign` rows (filters) reading the output of a sign.
pub(super) fn runs_binary(model: &Model, i: usize) -> bool {
    let node = &model.graph.nodes[i];
    if matches!(node.op, Op::Conv2d(Conv2d { dilation, .. }) if dilation != [1, 1]) {
        return false;
    }
    let Some((rows, width)) = weight_rows(&node.op) else {
        return false;
    };
    let reads_sign = node.inputs.len() == 1
        && model
            .graph
            .node(&node.inputs[0])
            .is_some_and(|n| n.op == Op::Sign);
    reads_sign
        && model
            .params
            .get(&param_name(model.graph.param_owner(i), "weight"))
            .is_some_and(|w| BinaryMatrix::is_binary_tensor(w, rows, width))
}

/// The shortest filter (input channels times kernel positions) a Conv2d runs on integers:
/// below it, quantizing the input, reordering it channels-last and gathering it byte by byte
/// costs more than the integer product saves. Measured on ResNet-20 (batch 64, AVX-512 VNNI):
/// the 1-channel 3x3 stem (depth 9) at 0.35-0.40x the f32 speed, the 1x1 shortcuts (16, 32)
/// at 0.55-1.06x, the 16-channel 3x3 layers (144) at 1.0-1.2x and faster beyond.
const MIN_INT8_CONV_DEPTH: usize = 64;

/// The codes of the input of node `i` when it may run an integer kernel: a Linear, or an
/// ungrouped Conv2d of depth [`MIN_INT8_CONV_DEPTH`] or more, whose one input is a fake
/// quantizer of at most 8 bits. Whether it does depends on its weights too ([`runs_int8`]).
pub(super) fn int8_input(model: &Model, i: usize) -> Option<ActCodes> {
    let node = &model.graph.nodes[i];
    let deep = match node.op {
        Op::Linear(Linear { .. }) => true,
        Op::Conv2d(Conv2d {
            groups: 1,
            in_channels,
            kernel_size: [kh, kw],
            ..
        }) => in_channels * kh * kw >= MIN_INT8_CONV_DEPTH,
        _ => false,
    };
    if !deep || node.inputs.len() != 1 {
        return None;
    }
    ActCodes::new(model.graph.node(&node.inputs[0])?.op.act_qparams()?)
}

/// Whether node `i` of `model` runs an integer kernel: its input qualifies ([`int8_input`])
/// and every weight row is on an integer grid the CPU's product takes
/// ([`Int8Matrix::from_dense`]).
pub(super) fn runs_int8(model: &Model, i: usize) -> bool {
    let Some((rows, width)) = weight_rows(&model.graph.nodes[i].op) else {
        return false;
    };
    int8_input(model, i).is_some()
        && model
            .params
            .get(&param_name(model.graph.param_owner(i), "weight"))
            .is_some_and(|w| Int8Matrix::is_int_tensor(w, rows, width))
}

/// A Conv2d's filters `[cout, cin / groups, kh, kw]` as its kernel wants them.
#[derive(Clone, Debug)]
pub(super) enum ConvWeight {
    Dense(Vec<f32>),
    /// `alpha * sign` filters on a binary input: the XNOR-popcount kernel ([`runs_binary`]).
    Binary(BinaryConv),
    /// Integer filters on an 8-bit input ([`runs_int8`]).
    Int8(Int8Conv),
}
