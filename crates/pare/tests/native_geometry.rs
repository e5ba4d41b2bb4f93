//! The native engine's convolution and pooling kernels, one geometry at a time, against the
//! training engine: each layer alone is the model's output, so a wrong border, stride or
//! window cannot hide behind the ops that follow it.

mod common;

use common::{assert_native_close, random};
use pare::ir::graph::ops::{avg_pool2d, max_pool2d};
use pare::ir::op::Conv2d;
use pare::ir::{GraphBuilder, Model, Op};

/// Each convolution geometry alone, its output the model's output: in the op zoo above a
/// wrong conv can hide behind the saturating ops that follow it.
#[test]
fn every_conv_geometry_matches_the_engine_at_its_output() {
    let conv = |k: [usize; 2], stride, padding, dilation, groups| {
        Op::Conv2d(Conv2d {
            in_channels: 16,
            out_channels: if groups == 16 { 16 } else { 4 },
            kernel_size: k,
            stride,
            padding,
            dilation,
            groups,
            bias: true,
        })
    };
    let cases = [
        ("3x3", conv([3, 3], [1, 1], [1, 1], [1, 1], 1)),
        ("3x3 unpadded", conv([3, 3], [1, 1], [0, 0], [1, 1], 1)),
        ("5x5 dilated", conv([5, 5], [1, 1], [4, 4], [2, 2], 1)),
        ("tall grouped", conv([3, 2], [1, 1], [2, 1], [2, 1], 2)),
        ("wide", conv([1, 3], [1, 1], [0, 1], [1, 1], 1)),
        ("strided", conv([3, 3], [2, 1], [1, 1], [1, 1], 1)),
        ("1x1", conv([1, 1], [1, 1], [0, 0], [1, 1], 1)),
        ("1x1 strided", conv([1, 1], [2, 2], [0, 0], [1, 1], 1)),
        // Depthwise (its own direct kernel): borders, strides, dilation, padding past the
        // kernel's reach.
        ("depthwise 3x3", conv([3, 3], [1, 1], [1, 1], [1, 1], 16)),
        ("depthwise strided", conv([3, 3], [2, 2], [1, 1], [1, 1], 16)),
        (
            "depthwise unpadded strided",
            conv([3, 3], [2, 3], [0, 0], [1, 1], 16),
        ),
        ("depthwise 5x5 dilated", conv([5, 5], [1, 1], [4, 4], [2, 2], 16)),
        ("depthwise tall", conv([3, 2], [2, 1], [2, 1], [2, 1], 16)),
        ("depthwise wide padding", conv([3, 3], [1, 2], [3, 2], [1, 1], 16)),
    ];
    for (what, op) in cases {
        // Images large enough that a block holds one sample (the kernel-row path at stride 1,
        // one block at batch 1, three at batch 3) and small ones that share blocks (im2col).
        for (shape, batches) in [([16, 30, 28], [1, 3]), ([16, 11, 9], [1, 64])] {
            let mut b = GraphBuilder::new(shape.to_vec());
            b.then("conv", op.clone());
            let m = Model::init(b.finish().unwrap(), 3).unwrap();
            for batch in batches {
                let mut dims = vec![batch];
                dims.extend(shape);
                assert_native_close(
                    &m,
                    &random(dims, 4, 1.0),
                    &format!("{what} {shape:?} batch {batch}"),
                );
            }
        }
    }
}

/// Each pooling geometry alone, floor and ceil mode, on odd and even sizes: ceil mode's
/// partial last window (clipped to the image, its average's divisor clipped to the padded
/// image) and the window it drops when that would start in the right padding.
#[test]
fn every_pool_geometry_matches_the_engine_at_its_output() {
    let mut cases = vec![];
    for ceil in [false, true] {
        for (k, s, p) in [(3, 2, 0), (2, 2, 1), (3, 2, 1), (3, 3, 1)] {
            cases.push(max_pool2d(k, s, p, ceil));
        }
        for include in [false, true] {
            for (k, s, p) in [(3, 2, 0), (2, 2, 1), (3, 2, 1)] {
                cases.push(avg_pool2d(k, s, p, include, ceil));
            }
        }
    }
    for op in cases {
        for shape in [[3, 11, 9], [3, 8, 8], [2, 5, 6]] {
            let mut b = GraphBuilder::new(shape.to_vec());
            b.then("pool", op.clone());
            let m = Model::init(b.finish().unwrap(), 3).unwrap();
            let x = random([&[2], &shape[..]].concat(), 4, 1.0);
            assert_native_close(&m, &x, &format!("{op:?} {shape:?}"));
        }
    }
}
