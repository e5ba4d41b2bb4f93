//! The shape arithmetic the ops' rules share: negative axes, NumPy broadcasting, image inputs,
//! convolution and pooling windows.

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
pub(super) fn conv_out(size: usize, k: usize, s: usize, p: usize, d: usize) -> Option<usize> {
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

/// `x` as `(C, H, W)`, or an error saying that `what` expects an image.
pub(super) fn image(what: &str, x: &[usize]) -> Result<(usize, usize, usize), String> {
    match *x {
        [c, h, w] => Ok((c, h, w)),
        _ => Err(format!(
            "{what} expects a [C, H, W] input, got {x:?} (add a flatten/reshape or fix the graph)"
        )),
    }
}

/// The output shape of pool `what` over the image `x`. Padding is at most half the kernel.
pub(super) fn pool_shape(
    what: &str,
    x: &[usize],
    kernel_size: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    ceil_mode: bool,
) -> Result<Vec<usize>, String> {
    let (c, h, w) = image(what, x)?;
    if kernel_size.contains(&0) || stride.contains(&0) {
        return Err(format!("{what}: kernel_size and stride must be positive"));
    }
    if padding[0] * 2 > kernel_size[0] || padding[1] * 2 > kernel_size[1] {
        return Err(format!(
            "{what}: padding {padding:?} must be at most half of kernel {kernel_size:?}"
        ));
    }
    let oh = pool_out(h, kernel_size[0], stride[0], padding[0], ceil_mode);
    let ow = pool_out(w, kernel_size[1], stride[1], padding[1], ceil_mode);
    match (oh, ow) {
        (Some(oh), Some(ow)) => Ok(vec![c, oh, ow]),
        _ => Err(format!(
            "{what}: kernel {kernel_size:?} does not fit input {h}x{w}"
        )),
    }
}
