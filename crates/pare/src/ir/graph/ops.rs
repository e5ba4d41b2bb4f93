//! Shorthands for the ops zoo models and tests write most.

use crate::ir::op::{AvgPool2d, BatchNorm, Conv2d, Linear, MaxPool2d};
use crate::ir::Op;

pub fn linear(i: usize, o: usize) -> Op {
    Op::Linear(Linear {
        in_features: i,
        out_features: o,
        bias: true,
    })
}

/// A square-kernel conv with equal stride/padding on both axes, groups 1, dilation 1.
pub fn conv(i: usize, o: usize, k: usize, stride: usize, pad: usize, bias: bool) -> Op {
    Op::Conv2d(Conv2d {
        in_channels: i,
        out_channels: o,
        kernel_size: [k, k],
        stride: [stride; 2],
        padding: [pad; 2],
        dilation: [1, 1],
        groups: 1,
        bias,
    })
}

/// A conv with every knob: `[k, k]` kernel, stride 1, `pad` padding, `dilation`, `groups`.
pub fn conv_grouped(
    i: usize,
    o: usize,
    k: usize,
    pad: usize,
    dilation: usize,
    groups: usize,
    bias: bool,
) -> Op {
    Op::Conv2d(Conv2d {
        in_channels: i,
        out_channels: o,
        kernel_size: [k, k],
        stride: [1, 1],
        padding: [pad; 2],
        dilation: [dilation; 2],
        groups,
        bias,
    })
}

/// A depthwise 3x3-style conv: one filter per channel.
pub fn depthwise(c: usize, k: usize, stride: usize, pad: usize) -> Op {
    Op::Conv2d(Conv2d {
        in_channels: c,
        out_channels: c,
        kernel_size: [k, k],
        stride: [stride; 2],
        padding: [pad; 2],
        dilation: [1, 1],
        groups: c,
        bias: false,
    })
}

/// PyTorch's default BatchNorm: eps 1e-5, momentum 0.1.
pub fn bn(c: usize) -> Op {
    Op::BatchNorm(BatchNorm {
        num_features: c,
        eps: 1e-5,
        momentum: 0.1,
    })
}

pub fn max_pool(k: usize, s: usize) -> Op {
    max_pool2d(k, s, 0, false)
}

/// Square max pooling: kernel `k`, stride `s`, padding `p` each side, floor or ceil mode.
pub fn max_pool2d(k: usize, s: usize, p: usize, ceil_mode: bool) -> Op {
    Op::MaxPool2d(MaxPool2d {
        kernel_size: [k, k],
        stride: [s, s],
        padding: [p, p],
        ceil_mode,
    })
}

/// Square average pooling: kernel `k`, stride `s`, padding `p` each side, the padding in the
/// divisor or not, floor or ceil mode.
pub fn avg_pool2d(k: usize, s: usize, p: usize, count_include_pad: bool, ceil_mode: bool) -> Op {
    Op::AvgPool2d(AvgPool2d {
        kernel_size: [k, k],
        stride: [s, s],
        padding: [p, p],
        count_include_pad,
        ceil_mode,
    })
}
