//! Matrix products on the `gemm` crate: the one place that calls it (lengths checked so the call
//! is sound), the Linear layer built on it, and the shared-output handle that lets convolution
//! blocks on several threads write disjoint columns of one output.

use gemm::{gemm, Parallelism};

use super::Fused;

/// Where a product writes: a pointer and how many floats from it may be written. Copies are
/// used one after another by the products that accumulate into the same block, never at once.
#[derive(Clone, Copy)]
pub(super) struct Dst {
    ptr: *mut f32,
    len: usize,
}

impl Dst {
    fn of(s: &mut [f32]) -> Dst {
        Dst {
            ptr: s.as_mut_ptr(),
            len: s.len(),
        }
    }
}

/// A convolution's output `[cout, p]`, written by several threads at once, each product to its
/// own columns (a block of output positions): disjoint, but not a contiguous sub-slice.
#[derive(Clone, Copy)]
pub(super) struct SharedOut {
    ptr: *mut f32,
    len: usize,
}

// SAFETY: the blocks that write through it touch disjoint elements (see `conv2d`).
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// Shared writes into `y`, which must outlive every use of the result.
    pub(super) fn new(y: &mut [f32]) -> SharedOut {
        SharedOut {
            ptr: y.as_mut_ptr(),
            len: y.len(),
        }
    }

    /// `len` elements from `offset` as a slice.
    ///
    /// # Safety
    /// No other live reference, on any thread, may overlap `offset .. offset + len`.
    #[allow(clippy::mut_from_ref)] // the point of the type: disjoint &mut from shared threads
    pub(super) unsafe fn slice(&self, offset: usize, len: usize) -> &mut [f32] {
        assert!(offset + len <= self.len, "slice inside the output");
        // SAFETY: in bounds (checked above); exclusive by the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(offset), len) }
    }

    /// The writable span from `offset` on.
    pub(super) fn at(&self, offset: usize) -> Dst {
        assert!(offset < self.len, "offset inside the output");
        Dst {
            // SAFETY: `offset` is inside the allocation `ptr` points into (checked above).
            ptr: unsafe { self.ptr.add(offset) },
            len: self.len - offset,
        }
    }
}

/// `dst[m, n] = lhs[m, k] x rhs[k, n]` (or `+=` with `accumulate`), each operand given with its
/// row and column strides. The one place that calls the `gemm` crate; lengths are checked so
/// the call is sound.
#[allow(clippy::too_many_arguments)]
pub(super) fn matmul(
    dst: Dst,
    (dst_rs, dst_cs): (usize, usize),
    lhs: &[f32],
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: &[f32],
    (rhs_rs, rhs_cs): (usize, usize),
    m: usize,
    n: usize,
    k: usize,
    parallel: bool,
    accumulate: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    let last = |rs: usize, cs: usize, rows: usize, cols: usize| (rows - 1) * rs + (cols.max(1) - 1) * cs;
    assert!(
        last(dst_rs, dst_cs, m, n) < dst.len,
        "gemm: destination too short"
    );
    if k > 0 {
        assert!(last(lhs_rs, lhs_cs, m, k) < lhs.len(), "gemm: lhs too short");
        assert!(last(rhs_rs, rhs_cs, k, n) < rhs.len(), "gemm: rhs too short");
    }
    // Splitting a product over the cores costs a wake-up of the other threads, about 50 us
    // on the 2-core CI machine: ResNet-20's 28x28 layers at batch 1 (1.8M MACs, 34 us on one
    // core) took 87 us split. Only products of several times that much work are split.
    let threads = if parallel && m * n * k > 1 << 23 {
        Parallelism::Rayon(0)
    } else {
        Parallelism::None
    };
    // SAFETY: every index the product reads or writes, (rows - 1) * rs + (cols - 1) * cs at
    // most, was checked to lie inside its slice (or `dst`'s writable span) above; `dst` comes
    // from memory borrowed mutably by the caller and does not alias the operands.
    unsafe {
        gemm(
            m,
            n,
            k,
            dst.ptr,
            dst_cs as isize,
            dst_rs as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            threads,
        );
    }
}

/// `y[m, n] = lhs[m, k] x rhs[k, n]` into `y` (row-major, `n` columns), each operand given
/// with its row and column strides (a transposed operand is a swap of its strides). Single
/// threaded: callers split batched products themselves.
#[allow(clippy::too_many_arguments)]
pub(super) fn product(
    y: &mut [f32],
    lhs: &[f32],
    lhs_strides: (usize, usize),
    rhs: &[f32],
    rhs_strides: (usize, usize),
    m: usize,
    n: usize,
    k: usize,
) {
    assert!(y.len() >= m * n, "product: destination too short");
    matmul(
        Dst::of(y),
        (n, 1),
        lhs,
        lhs_strides,
        rhs,
        rhs_strides,
        m,
        n,
        k,
        false,
        false,
    );
}

/// `y = x W^T + b` on `n` rows of `f` features; weight `[out, f]`.
pub(super) fn linear(
    x: &[f32],
    n: usize,
    f: usize,
    w: &[f32],
    out: usize,
    b: Option<&[f32]>,
    relu: Fused,
) -> Vec<f32> {
    let mut y = super::buffers::scratch(n * out);
    matmul(
        Dst::of(&mut y),
        (out, 1),
        x,
        (f, 1),
        w,
        (1, f),
        n,
        out,
        f,
        true,
        false,
    );
    if let Some(b) = b {
        y.chunks_mut(out)
            .for_each(|row| row.iter_mut().zip(b).for_each(|(v, bb)| *v += bb));
    }
    if relu == Fused::Relu {
        y.iter_mut().for_each(|v| *v = v.max(0.0));
    }
    y
}
