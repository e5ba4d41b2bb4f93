//! The pare ops that are a chain of standard ONNX ops: multi-head attention and the fake
//! quantizer (QuantizeLinear / DequantizeLinear).

use super::{attr_int, attr_ints, i64_tensor, Ctx, Writer};
use crate::error::{Error, Result};
use crate::ir::op::FakeQuant;
use crate::ir::op::Op;
use crate::onnx::proto::{data_type, TensorProto};

impl Writer {
    /// PyTorch's `nn.MultiheadAttention` self-attention in standard ops, batch axis first
    /// throughout: one input projection, heads split by Reshape + Transpose, scaled scores,
    /// softmax, the weighted sum, heads merged, the output projection.
    pub(super) fn attention(&mut self, ctx: &Ctx, _dim: usize, heads: usize, head_dim: usize) {
        let name = ctx.name;
        let sub = |s: &str| format!("{name}/{s}");
        let x = ctx.ins[0].as_str();
        let tokens = ctx.in_shapes[0][0];
        let inner = heads * head_dim;
        let (w, b) = (self.param(ctx, "in_proj_weight"), self.param(ctx, "in_proj_bias"));
        let (wt, mm, qkv) = (sub("in_proj_t"), sub("in_proj_matmul"), sub("in_proj"));
        self.node("Transpose", &wt, &[&w], &wt, vec![attr_ints("perm", &[1, 0])]);
        self.node("MatMul", &mm, &[x, &wt], &mm, vec![]);
        self.node("Add", &qkv, &[&mm, &b], &qkv, vec![]);
        // [N, T, 3 * inner] -> [N, T, 3, H, d] -> [N, 3, H, T, d]
        let (split, heads_first) = (sub("qkv_split"), sub("qkv_heads"));
        self.reshape(&split, &qkv, &[tokens, 3, heads, head_dim], &split);
        self.transpose(&heads_first, &split, &[1, 2, 0, 3], &heads_first);
        let mut qkv_names = vec![];
        for (k, part) in ["q", "k", "v"].iter().enumerate() {
            let idx = self.init(i64_tensor(&sub(&format!("{part}_index")), &[], &[k as i64]));
            let out = sub(part);
            self.node(
                "Gather",
                &out,
                &[&heads_first, &idx],
                &out,
                vec![attr_int("axis", 1)],
            );
            qkv_names.push(out);
        }
        let (kt, scores, scaled, probs, ctxv) = (
            sub("k_t"),
            sub("scores"),
            sub("scaled"),
            sub("probs"),
            sub("context"),
        );
        self.node(
            "Transpose",
            &kt,
            &[&qkv_names[1]],
            &kt,
            vec![attr_ints("perm", &[0, 1, 3, 2])],
        );
        self.node("MatMul", &scores, &[&qkv_names[0], &kt], &scores, vec![]);
        let f = self.scalar(&sub("scale"), 1.0 / (head_dim as f32).sqrt());
        self.node("Mul", &scaled, &[&scores, &f], &scaled, vec![]);
        self.node("Softmax", &probs, &[&scaled], &probs, vec![attr_int("axis", -1)]);
        self.node("MatMul", &ctxv, &[&probs, &qkv_names[2]], &ctxv, vec![]);
        // [N, H, T, d] -> [N, T, H, d] -> [N, T, inner]
        let (merged, flat) = (sub("context_t"), sub("context_flat"));
        self.transpose(&merged, &ctxv, &[1, 0, 2], &merged);
        self.reshape(&flat, &merged, &[tokens, inner], &flat);
        let (ow, ob) = (
            self.param(ctx, "out_proj.weight"),
            self.param(ctx, "out_proj.bias"),
        );
        let (owt, omm) = (sub("out_proj_t"), sub("out_proj_matmul"));
        self.node("Transpose", &owt, &[&ow], &owt, vec![attr_ints("perm", &[1, 0])]);
        self.node("MatMul", &omm, &[&flat, &owt], &omm, vec![]);
        self.node("Add", name, &[&omm, &ob], name, vec![]);
    }

    /// A fake quantizer as a QuantizeLinear / DequantizeLinear pair (8-bit types; a narrower
    /// or symmetric grid is clipped to its own levels first, so ONNX saturates where pare does).
    pub(super) fn fake_quant(&mut self, ctx: &Ctx, op: &Op) -> Result<()> {
        let name = ctx.name;
        let q = op.act_qparams().expect("a fake quantizer");
        let Op::FakeQuant(FakeQuant { bits, symmetric, .. }) = *op else {
            unreachable!()
        };
        if bits > 8 {
            return Err(Error::graph(
                name,
                format!("a {bits}-bit fake quantizer has no ONNX form (QuantizeLinear holds 8-bit codes)"),
            ));
        }
        let (zp_type, full) = if symmetric {
            (data_type::INT8, (-128, 127))
        } else {
            (data_type::UINT8, (0, 255))
        };
        let mut x = ctx.ins[0].clone();
        if (q.qmin, q.qmax) != full {
            let lo = (q.qmin - q.zero_point) as f32 * q.scale;
            let hi = (q.qmax - q.zero_point) as f32 * q.scale;
            let c = format!("{name}/levels");
            self.clip(&c, &x, lo, hi);
            x = c;
        }
        let s = self.scalar(&format!("{name}/scale"), q.scale);
        let zp_bytes = if symmetric {
            vec![(q.zero_point as i8) as u8]
        } else {
            vec![q.zero_point as u8]
        };
        let zp = self.init(TensorProto {
            data_type: zp_type,
            name: format!("{name}/zero_point"),
            raw_data: zp_bytes,
            ..Default::default()
        });
        let codes = format!("{name}/codes");
        self.node("QuantizeLinear", &codes, &[&x, &s, &zp], &codes, vec![]);
        self.quantized_from.insert(name.to_string(), x.clone());
        self.node("DequantizeLinear", name, &[&codes, &s, &zp], name, vec![]);
        Ok(())
    }
}
