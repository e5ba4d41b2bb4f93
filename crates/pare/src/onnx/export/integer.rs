//! Quantized export as integer ops: each layer of the QDQ plan ([`super::qdq`]) written as
//! ConvInteger or MatMulInteger on uint8 codes, its int32 sums cast to f32, multiplied by the
//! input scale times each output channel's weight scale, plus the f32 bias. This is the
//! arithmetic pare's int8 engine does, spelled out, so any runtime with these two ops computes
//! it with integer products whether or not it fuses QDQ patterns.
//!
//! Both operands are `uint8`, the pair ONNX's integer ops have taken since they exist (tract
//! and onnxruntime run it; onnxruntime 1.32 ran int8 weights slower still): the layer's input
//! is quantized again from what its fake quantizer quantizes, with the same scale and its
//! codes moved to `0..=255` (the same rounding, so the same codes shifted); the int8 weight
//! codes are stored plus 128 with a zero point of 128.

use super::emit::conv_attrs;
use super::qdq::QLayer;
use super::{attr_int, f32_tensor, usizes, Ctx, Writer};
use crate::ir::op::Conv2d;
use crate::onnx::proto::{data_type, TensorProto};

/// The zero point of weight codes stored as `uint8`.
const WEIGHT_ZERO: u8 = 128;

impl Writer {
    /// Whether the node is a layer of the plan to write as an integer op.
    pub(super) fn integer_layer(&self, ctx: &Ctx) -> bool {
        self.integer_ops && self.qdq.contains_key(ctx.name)
    }

    /// The layer's input `x` (a fake quantizer's value) as uint8 codes, written once per value,
    /// and their zero point. They are quantized from the quantizer's own f32 input: a
    /// QuantizeLinear right after the quantizer's DequantizeLinear is a pattern some runtimes'
    /// optimizers mistype when the two differ in signedness (tract 0.23 does).
    fn input_codes(&mut self, x: &str, q: &QLayer) -> (String, String) {
        let z = format!("{x}/u8_zero_point");
        if let Some(codes) = self.requantized.get(x) {
            return (codes.clone(), z);
        }
        let s = self.scalar(&format!("{x}/u8_scale"), q.input_scale);
        self.init(u8_tensor(&z, &[], &[q.input_zero_point]));
        let codes = format!("{x}/u8");
        let from = self
            .quantized_from
            .get(x)
            .cloned()
            .unwrap_or_else(|| x.to_string());
        self.node("QuantizeLinear", &codes, &[&from, &s, &z], &codes, vec![]);
        self.requantized.insert(x.to_string(), codes.clone());
        (codes, z)
    }

    /// The weight codes as `uint8` (plus [`WEIGHT_ZERO`]) in `shape`, and their zero point.
    fn weight_codes(&mut self, ctx: &Ctx, codes: &[i8], shape: &[usize]) -> (String, String) {
        let w = ctx.param_name("weight");
        let bytes: Vec<u8> = codes
            .iter()
            .map(|&c| (i16::from(c) + i16::from(WEIGHT_ZERO)) as u8)
            .collect();
        let c = self.init(u8_tensor(&format!("{w}_u8"), shape, &bytes));
        let z = self.init(u8_tensor(&format!("{w}_u8_zero_point"), &[], &[WEIGHT_ZERO]));
        (c, z)
    }

    /// `int32 sums -> f32 * (input scale * row scales) + bias`, the last op writing the
    /// node's own value; `channel_shape` broadcasts a per-channel vector against the sums.
    fn rescale(&mut self, ctx: &Ctx, sums: &str, q: &QLayer, channel_shape: &[usize]) {
        let name = ctx.name;
        let f = format!("{name}/sums_f32");
        self.node(
            "Cast",
            &f,
            &[sums],
            &f,
            vec![attr_int("to", i64::from(data_type::FLOAT))],
        );
        let scales: Vec<f32> = q.scales.iter().map(|s| s * q.input_scale).collect();
        let s = self.init(f32_tensor(&format!("{name}/scale"), channel_shape, &scales));
        match &q.bias {
            None => self.node("Mul", name, &[&f, &s], name, vec![]),
            Some(bias) => {
                let scaled = format!("{name}/scaled");
                self.node("Mul", &scaled, &[&f, &s], &scaled, vec![]);
                let b = self.init(f32_tensor(&format!("{name}/bias"), channel_shape, bias));
                self.node("Add", name, &[&scaled, &b], name, vec![]);
            }
        }
    }

    /// A Linear as MatMulInteger on any rank (the weight codes stored transposed, `[in, out]`).
    pub(super) fn integer_linear(&mut self, ctx: &Ctx) {
        let q = self.qdq.remove(ctx.name).expect("an integer layer of the plan");
        let (x, xz) = self.input_codes(&ctx.ins[0], &q);
        let (rows, width) = (q.scales.len(), q.codes.len() / q.scales.len());
        let transposed: Vec<i8> = (0..width * rows)
            .map(|i| q.codes[(i % rows) * width + i / rows])
            .collect();
        let (w, wz) = self.weight_codes(ctx, &transposed, &[width, rows]);
        let sums = format!("{}/sums", ctx.name);
        self.node("MatMulInteger", &sums, &[&x, &w, &xz, &wz], &sums, vec![]);
        self.rescale(ctx, &sums, &q, &[rows]);
    }

    /// A Conv2d as ConvInteger (no bias input: it is added in f32 after the scales).
    pub(super) fn integer_conv(&mut self, ctx: &Ctx, conv: &Conv2d) {
        let q = self.qdq.remove(ctx.name).expect("an integer layer of the plan");
        let (x, xz) = self.input_codes(&ctx.ins[0], &q);
        let shape = ctx.param("weight").shape().to_vec();
        let (w, wz) = self.weight_codes(ctx, &q.codes, &shape);
        let sums = format!("{}/sums", ctx.name);
        self.node("ConvInteger", &sums, &[&x, &w, &xz, &wz], &sums, conv_attrs(conv));
        self.rescale(ctx, &sums, &q, &[q.scales.len(), 1, 1]);
    }
}

/// A `uint8` tensor as a `TensorProto`.
fn u8_tensor(name: &str, shape: &[usize], data: &[u8]) -> TensorProto {
    TensorProto {
        dims: usizes(shape),
        data_type: data_type::UINT8,
        name: name.into(),
        raw_data: data.to_vec(),
        ..Default::default()
    }
}
