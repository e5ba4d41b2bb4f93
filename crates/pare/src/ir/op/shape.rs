//! Each op's output shape for the shapes of its inputs, with errors that say what was expected;
//! and the axis arithmetic the rules share (negative axes, NumPy broadcasting).

use super::Op;
use crate::ir::op::{
    Attention, AvgPool2d, BatchNorm, ChannelShuffle, Clip, Concat, Conv2d, Dropout, Embedding, FakeQuant,
    HashedLinear, LayerNorm, Linear, MaxPool2d, Mean, Pad, Parameter, Reshape, Scale, Select, Slice, Softmax,
    Transpose,
};

/// `axis` of a rank-`rank` shape as an index (negative counts from the end).
pub fn resolve_axis(axis: isize, rank: usize) -> Result<usize, String> {
    let r = rank as isize;
    let a = if axis < 0 { axis + r } else { axis };
    if (0..r).contains(&a) {
        Ok(a as usize)
    } else {
        Err(format!("axis {axis} is out of range for a rank-{rank} input"))
    }
}

/// NumPy broadcasting of two shapes (aligned at the last axis; sizes equal or 1).
pub fn broadcast(a: &[usize], b: &[usize]) -> Result<Vec<usize>, String> {
    let n = a.len().max(b.len());
    let at = |s: &[usize], i: usize| if i + s.len() < n { 1 } else { s[i + s.len() - n] };
    (0..n)
        .map(|i| match (at(a, i), at(b, i)) {
            (x, y) if x == y || y == 1 => Ok(x),
            (1, y) => Ok(y),
            _ => Err(format!("shapes {a:?} and {b:?} do not broadcast")),
        })
        .collect()
}

/// The output size of a window `k` (dilation `d`) sliding by `s` over `size` padded by `p` on
/// both sides; `None` when it does not fit or the arithmetic would overflow.
fn conv_out(size: usize, k: usize, s: usize, p: usize, d: usize) -> Option<usize> {
    let span = d.checked_mul(k.checked_sub(1)?)?.checked_add(1)?;
    let padded = p.checked_mul(2)?.checked_add(size)?;
    (padded >= span && s > 0).then(|| (padded - span) / s + 1)
}

/// Output length of a pooling window swept over `size` (padded by `p` each side): floor mode,
/// or ceil mode's extra partial window when it starts inside the input or its left padding.
pub(crate) fn pool_out(size: usize, k: usize, s: usize, p: usize, ceil: bool) -> Option<usize> {
    let floor = conv_out(size, k, s, p, 1)?;
    if !ceil {
        return Some(floor);
    }
    let out = (size + 2 * p - k).div_ceil(s) + 1;
    Some(if ceil_window_dropped(size, k, s, p) {
        out - 1
    } else {
        out
    })
}

/// True when ceil mode's last window would start in the right padding. PyTorch, pare and
/// tract drop that window; the ONNX spec's output size (what onnxruntime computes) keeps it,
/// so such a pool has no portable ONNX form.
pub(crate) fn ceil_window_dropped(size: usize, k: usize, s: usize, p: usize) -> bool {
    let out = (size + 2 * p).saturating_sub(k).div_ceil(s.max(1)) + 1;
    (out - 1) * s >= size + p
}

/// The number of elements of `shape`, `None` when it overflows.
pub fn elements(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
}

impl Op {
    /// Output shape for the given input shapes; the error says what was expected.
    pub fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let (lo, hi) = self.arity();
        if inputs.len() < lo || inputs.len() > hi {
            return Err(format!(
                "{} takes {} input(s), got {}",
                self.kind(),
                if lo == hi {
                    lo.to_string()
                } else {
                    format!("at least {lo}")
                },
                inputs.len()
            ));
        }
        if let Op::Parameter(Parameter { shape }) = self {
            if shape.is_empty() || shape.contains(&0) {
                return Err(format!(
                    "parameter shape {shape:?} must be non-empty and positive"
                ));
            }
            return Ok(shape.clone());
        }
        let x = inputs[0];
        let image = |what: &str| -> Result<(usize, usize, usize), String> {
            match *x {
                [c, h, w] => Ok((c, h, w)),
                _ => Err(format!(
                    "{what} expects a [C, H, W] input, got {x:?} (add a flatten/reshape or fix the graph)"
                )),
            }
        };
        match *self {
            // Both engines build the virtual weight in full: it must fit as a parameter does,
            // and every bucket must be read.
            Op::HashedLinear(HashedLinear {
                in_features,
                out_features,
                buckets,
                ..
            }) if buckets == 0
                || in_features
                    .checked_mul(out_features)
                    .is_none_or(|v| v > crate::ir::graph::MAX_ELEMENTS || buckets > v) =>
            {
                Err(format!(
                    "hashed_linear needs 1 to in_features x out_features buckets and at most {} virtual weights, got {in_features} x {out_features} with {buckets} buckets",
                    crate::ir::graph::MAX_ELEMENTS
                ))
            }
            Op::Linear(Linear {
                in_features,
                out_features,
                ..
            })
            | Op::HashedLinear(HashedLinear {
                in_features,
                out_features,
                ..
            }) => match x.split_last() {
                Some((&n, lead)) if n == in_features => {
                    let mut out = lead.to_vec();
                    out.push(out_features);
                    Ok(out)
                }
                _ => Err(format!(
                    "linear expects an input whose last axis is {in_features}, got {x:?}"
                )),
            },
            Op::Conv2d(Conv2d {
                in_channels,
                out_channels,
                kernel_size,
                stride,
                padding,
                dilation,
                groups,
                ..
            }) => {
                let (c, h, w) = image("conv2d")?;
                if c != in_channels {
                    return Err(format!("conv2d expects {in_channels} input channels, got {c}"));
                }
                if groups == 0 || in_channels % groups != 0 || out_channels % groups != 0 {
                    return Err(format!(
                        "conv2d groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}"
                    ));
                }
                if kernel_size.contains(&0) || stride.contains(&0) || dilation.contains(&0) {
                    return Err("conv2d kernel_size, stride and dilation must be positive".into());
                }
                let oh = conv_out(h, kernel_size[0], stride[0], padding[0], dilation[0]);
                let ow = conv_out(w, kernel_size[1], stride[1], padding[1], dilation[1]);
                match (oh, ow) {
                    (Some(oh), Some(ow)) => Ok(vec![out_channels, oh, ow]),
                    _ => Err(format!(
                        "conv2d kernel {kernel_size:?} does not fit input {h}x{w} with padding {padding:?}"
                    )),
                }
            }
            Op::BatchNorm(BatchNorm { num_features, .. }) => {
                if x.first() != Some(&num_features) || !(x.len() == 1 || x.len() == 3) {
                    return Err(format!(
                        "batch_norm expects [{num_features}] or [{num_features}, H, W], got {x:?}"
                    ));
                }
                Ok(x.to_vec())
            }
            Op::MaxPool2d(MaxPool2d {
                kernel_size,
                stride,
                padding,
                ceil_mode,
            })
            | Op::AvgPool2d(AvgPool2d {
                kernel_size,
                stride,
                padding,
                ceil_mode,
                ..
            }) => {
                let (c, h, w) = image(self.kind())?;
                if kernel_size.contains(&0) || stride.contains(&0) {
                    return Err(format!(
                        "{}: kernel_size and stride must be positive",
                        self.kind()
                    ));
                }
                if padding[0] * 2 > kernel_size[0] || padding[1] * 2 > kernel_size[1] {
                    return Err(format!(
                        "{}: padding {padding:?} must be at most half of kernel {kernel_size:?}",
                        self.kind()
                    ));
                }
                let oh = pool_out(h, kernel_size[0], stride[0], padding[0], ceil_mode);
                let ow = pool_out(w, kernel_size[1], stride[1], padding[1], ceil_mode);
                match (oh, ow) {
                    (Some(oh), Some(ow)) => Ok(vec![c, oh, ow]),
                    _ => Err(format!(
                        "{}: kernel {kernel_size:?} does not fit input {h}x{w}",
                        self.kind()
                    )),
                }
            }
            Op::GlobalAvgPool => {
                let (c, _, _) = image("global_avg_pool")?;
                Ok(vec![c, 1, 1])
            }
            Op::Flatten => Ok(vec![elements(x).ok_or_else(|| format!("flatten of {x:?} overflows"))?]),
            Op::Add => {
                if let Some(bad) = inputs.iter().find(|s| **s != x) {
                    return Err(format!("add expects equal input shapes, got {x:?} and {bad:?}"));
                }
                Ok(x.to_vec())
            }
            Op::Concat(Concat { axis }) => {
                let a = resolve_axis(axis, x.len())?;
                let mut out = x.to_vec();
                for s in &inputs[1..] {
                    if s.len() != x.len() || s[..a] != x[..a] || s[a + 1..] != x[a + 1..] {
                        return Err(format!(
                            "concat expects shapes equal but for axis {a}, got {x:?} and {s:?}"
                        ));
                    }
                    out[a] = out[a]
                        .checked_add(s[a])
                        .ok_or_else(|| format!("concat of {x:?} and {s:?} overflows"))?;
                }
                Ok(out)
            }
            Op::LayerNorm(LayerNorm { dim, eps }) => {
                if x.last() != Some(&dim) {
                    return Err(format!("layer_norm expects a last axis of {dim}, got {x:?}"));
                }
                if !(eps > 0.0 && eps.is_finite()) {
                    return Err(format!("layer_norm eps={eps} must be positive and finite"));
                }
                Ok(x.to_vec())
            }
            Op::MatMul => {
                let y = inputs[1];
                let r = x.len();
                if r < 2 || y.len() != r || x[..r - 2] != y[..r - 2] || x[r - 1] != y[r - 2] {
                    return Err(format!(
                        "matmul expects [.., m, k] and [.., k, n] with equal leading axes, got {x:?} and {y:?}"
                    ));
                }
                let mut out = x.to_vec();
                out[r - 1] = y[r - 1];
                Ok(out)
            }
            Op::Softmax(Softmax { axis }) => {
                resolve_axis(axis, x.len())?;
                Ok(x.to_vec())
            }
            Op::Reshape(Reshape { ref shape }) => {
                let (have, want) = (elements(x), elements(shape));
                if shape.is_empty() || shape.contains(&0) || have.is_none() || have != want {
                    let count = |n: Option<usize>| n.map_or("too many".to_string(), |n| n.to_string());
                    return Err(format!(
                        "reshape of {x:?} ({} elements) to {shape:?} ({} elements)",
                        count(have),
                        count(want)
                    ));
                }
                Ok(shape.clone())
            }
            Op::Transpose(Transpose { ref perm }) => {
                let mut seen = vec![false; x.len()];
                let valid = perm.len() == x.len()
                    && perm
                        .iter()
                        .all(|&p| p < x.len() && !std::mem::replace(&mut seen[p], true));
                if !valid {
                    return Err(format!(
                        "transpose perm {perm:?} is not a permutation of the {} axes of {x:?}",
                        x.len()
                    ));
                }
                Ok(perm.iter().map(|&p| x[p]).collect())
            }
            Op::Mul | Op::Sub | Op::Div => {
                broadcast(x, inputs[1]).map_err(|e| format!("{}: {e}", self.kind()))
            }
            Op::Scale(Scale { factor }) => {
                if !factor.is_finite() {
                    return Err(format!("scale factor={factor} must be finite"));
                }
                Ok(x.to_vec())
            }
            Op::Slice(Slice { axis, start, end }) => {
                let a = resolve_axis(axis, x.len())?;
                if start >= end || end > x[a] {
                    return Err(format!(
                        "slice {start}..{end} is empty or outside axis {a} of {x:?}"
                    ));
                }
                let mut out = x.to_vec();
                out[a] = end - start;
                Ok(out)
            }
            Op::Select(Select { axis, index }) => {
                let a = resolve_axis(axis, x.len())?;
                if x.len() < 2 || index >= x[a] {
                    return Err(format!(
                        "select of position {index} of axis {a} needs a rank-2 or larger input with that position, got {x:?}"
                    ));
                }
                let mut out = x.to_vec();
                out.remove(a);
                Ok(out)
            }
            Op::Clip(Clip { min, max }) => {
                if !(min.is_finite() && max.is_finite() && min <= max) {
                    return Err(format!("clip needs finite min <= max, got {min}..{max}"));
                }
                Ok(x.to_vec())
            }
            Op::Mean(Mean { ref axes, keepdim }) => {
                let mut drop = vec![false; x.len()];
                for &a in axes {
                    let a = resolve_axis(a, x.len())?;
                    if std::mem::replace(&mut drop[a], true) {
                        return Err(format!("mean names axis {a} twice"));
                    }
                }
                if axes.is_empty() || (!keepdim && drop.iter().all(|d| *d)) {
                    return Err(format!(
                        "mean over {axes:?} of {x:?} must name an axis and keep at least one"
                    ));
                }
                Ok(x.iter()
                    .zip(&drop)
                    .filter_map(|(&d, &gone)| match (gone, keepdim) {
                        (false, _) => Some(d),
                        (true, true) => Some(1),
                        (true, false) => None,
                    })
                    .collect())
            }
            Op::Silu | Op::Sign | Op::Abs | Op::Erf => Ok(x.to_vec()),
            Op::Pad(Pad { ref pads, value }) => {
                if !value.is_finite() {
                    return Err(format!("pad value {value} must be a finite number"));
                }
                if pads.len() != x.len() {
                    return Err(format!(
                        "pad needs one [before, after] pair per axis of {x:?}, got {}",
                        pads.len()
                    ));
                }
                x.iter()
                    .zip(pads)
                    .map(|(&d, &[a, b])| {
                        d.checked_add(a)
                            .and_then(|v| v.checked_add(b))
                            .ok_or_else(|| format!("pad {pads:?} overflows the shape {x:?}"))
                    })
                    .collect()
            }
            Op::ChannelShuffle(ChannelShuffle { groups }) => match *x {
                [c, _, _] if groups > 0 && c % groups == 0 => Ok(x.to_vec()),
                _ => Err(format!(
                    "channel_shuffle with {groups} groups needs a [C, H, W] input with C a multiple of them, got {x:?}"
                )),
            },
            Op::Attention(Attention { dim, heads, head_dim }) => {
                let fits = match head_dim {
                    None => dim % heads.max(1) == 0,
                    Some(hd) => hd > 0,
                };
                if heads == 0 || dim == 0 || !fits {
                    return Err(format!(
                        "multihead_attention: heads={heads} must divide dim={dim} (both positive), or head_dim be given"
                    ));
                }
                match *x {
                    [_, d] if d == dim => Ok(x.to_vec()),
                    _ => Err(format!(
                        "multihead_attention expects a [tokens, {dim}] input, got {x:?}"
                    )),
                }
            }
            Op::Parameter(Parameter { .. }) => unreachable!("handled before reading inputs"),
            Op::Embedding(Embedding {
                num_embeddings,
                embedding_dim,
            }) => {
                if num_embeddings == 0 || embedding_dim == 0 || num_embeddings > crate::ir::graph::MAX_INDEX {
                    return Err(format!(
                        "embedding of {num_embeddings} x {embedding_dim}: both must be positive, at most {} rows",
                        crate::ir::graph::MAX_INDEX
                    ));
                }
                if x.len() >= crate::ir::graph::MAX_RANK {
                    return Err(format!("embedding ids {x:?} have too many axes for a {embedding_dim}-wide output"));
                }
                Ok(x.iter().copied().chain([embedding_dim]).collect())
            }
            Op::Dropout(Dropout { p }) => {
                if !(0.0..1.0).contains(&p) {
                    return Err(format!("dropout p must be in [0, 1), got {p}"));
                }
                Ok(x.to_vec())
            }
            Op::Relu
            | Op::Relu6
            | Op::Gelu
            | Op::Sigmoid
            | Op::Tanh
            | Op::HardSwish
            | Op::Identity
            | Op::FakeQuant(FakeQuant { .. }) => {
                if let Op::FakeQuant(FakeQuant { bits, scale, .. }) = *self {
                    if !crate::ir::quant::BITS.contains(&bits) {
                        return Err(format!("fake_quant bits={bits} must be in {:?}", crate::ir::quant::BITS));
                    }
                    if !(scale > 0.0 && scale.is_finite()) {
                        return Err(format!("fake_quant scale={scale} must be positive and finite"));
                    }
                }
                Ok(x.to_vec())
            }
        }
    }
}
