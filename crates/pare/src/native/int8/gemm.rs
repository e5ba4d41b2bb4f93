//! The u8 x i8 -> i32 product at the heart of the int8 kernels: `sums[i][r] = sum_k a[i][k] *
//! w[r][k]`, activations unsigned (`a`, rows of `kp` bytes), weights signed (`w`, packed).
//!
//! Four bytes of one row are broadcast against eight rows of the other operand times four
//! bytes (one 256-bit register), and summed into eight i32:
//! - with AVX-512 VNNI, `vpdpbusd` does the 32 multiply-adds and the accumulation in one
//!   instruction, exactly, for any i8 weight;
//! - with AVX2, `vpmaddubsw` (32 byte products summed in pairs to 16 i16) then `vpmaddwd` with
//!   ones (pairs of those to 8 i32) and an add. `vpmaddubsw` saturates its i16 pair sums, so
//!   this path takes weights up to `|w| <= 64` only (`2 * 255 * 64 = 32640` fits): 7-bit
//!   weights, what onnxruntime calls `reduce_range` and oneDNN asks for without VNNI;
//! - portably, in plain i32 arithmetic.
//!
//! Within its path's limit ([`Int8Path::max_weight_code`]) every path is exact, and tested
//! equal to [`dot_reference`].

/// The largest weight magnitude any path accepts (the i8 range without -128, so that every
/// code has its negation).
pub const MAX_WEIGHT_CODE: i32 = 127;

/// Activation rows per tile.
pub(super) const MR: usize = 4;
/// Weight rows per packed group: one AVX2 register of eight i32 sums.
pub(super) const GROUP: usize = 8;

/// Which integer product the CPU runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Int8Path {
    /// AVX-512 VNNI on 256-bit registers (`vpdpbusd`, needs AVX-512 VL).
    Vnni,
    Avx2,
    Portable,
}

impl Int8Path {
    /// The fastest path this CPU has (checked once).
    pub fn best() -> Int8Path {
        #[cfg(target_arch = "x86_64")]
        {
            static BEST: std::sync::OnceLock<Int8Path> = std::sync::OnceLock::new();
            *BEST.get_or_init(|| {
                if has_vnni() {
                    Int8Path::Vnni
                } else if is_x86_feature_detected!("avx2") {
                    Int8Path::Avx2
                } else {
                    Int8Path::Portable
                }
            })
        }
        #[cfg(not(target_arch = "x86_64"))]
        Int8Path::Portable
    }

    /// Every path this CPU can run, the portable one included.
    pub fn available() -> Vec<Int8Path> {
        let mut v = vec![Int8Path::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2") {
                v.push(Int8Path::Avx2);
            }
            if has_vnni() {
                v.push(Int8Path::Vnni);
            }
        }
        v
    }

    /// The largest weight magnitude this path sums exactly (see the module's notes).
    pub fn max_weight_code(self) -> i32 {
        match self {
            Int8Path::Avx2 => 64,
            Int8Path::Vnni | Int8Path::Portable => MAX_WEIGHT_CODE,
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn has_vnni() -> bool {
    is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512vl")
}

/// `k` rounded up to whole 4-byte steps: the row length of packed weights and activations.
pub(super) fn padded(k: usize) -> usize {
    k.div_ceil(4) * 4
}

/// Weights `[rows, k]` packed for the product: groups of [`GROUP`] rows (the last one padded
/// with zero rows), each group `kp / 4` chunks of 32 bytes holding its 8 rows' next 4 codes
/// (row-major inside the chunk); codes past `k` are 0.
#[derive(Clone, Debug)]
pub(super) struct Packed {
    pub(super) rows: usize,
    pub(super) kp: usize,
    data: Vec<i8>,
}

impl Packed {
    /// Packs row-major codes `q` `[rows, k]`, each within `MAX_WEIGHT_CODE`.
    pub(super) fn new(q: &[i8], rows: usize, k: usize) -> Packed {
        debug_assert_eq!(q.len(), rows * k);
        debug_assert!(q.iter().all(|v| (*v as i32).abs() <= MAX_WEIGHT_CODE));
        let kp = padded(k);
        let groups = rows.div_ceil(GROUP);
        let mut data = vec![0i8; groups * GROUP * kp];
        for (r, row) in q.chunks(k.max(1)).enumerate().take(rows) {
            let (g, j) = (r / GROUP, r % GROUP);
            for (c, &v) in row.iter().enumerate() {
                data[g * GROUP * kp + (c / 4) * 32 + j * 4 + c % 4] = v;
            }
        }
        Packed { rows, kp, data }
    }

    fn groups(&self) -> usize {
        self.rows.div_ceil(GROUP)
    }

    fn group(&self, g: usize) -> &[i8] {
        &self.data[g * GROUP * self.kp..(g + 1) * GROUP * self.kp]
    }
}

/// Every sum of `m` activation rows (`a`, `m * kp` bytes) against `w`: calls `out(i, r, sum)`
/// once for each row `i < m` and weight row `r < w.rows`.
pub(super) fn product(
    path: Int8Path,
    a: &[u8],
    m: usize,
    w: &Packed,
    mut out: impl FnMut(usize, usize, i32),
) {
    let kp = w.kp;
    assert!(a.len() >= m * kp, "int8 product: activations too short");
    let groups = w.groups();
    let mut sums = [[0i32; 2 * GROUP]; MR];
    for i0 in (0..m).step_by(MR) {
        let mr = MR.min(m - i0);
        let rows = &a[i0 * kp..(i0 + mr) * kp];
        for g in (0..groups).step_by(2) {
            let ng = 2.min(groups - g);
            let w1 = if ng == 2 { w.group(g + 1) } else { w.group(g) };
            tile::<true>(path, rows, mr, kp, bytes(w.group(g)), bytes(w1), ng, &mut sums);
            for (di, row) in sums.iter().enumerate().take(mr) {
                for (dr, &s) in row.iter().enumerate().take(ng * GROUP) {
                    let r = g * GROUP + dr;
                    if r < w.rows {
                        out(i0 + di, r, s);
                    }
                }
            }
        }
    }
}

/// Sums of `mr` broadcast rows (`b`, `mr` rows of `kp` bytes) against one (`ng` = 1) or two
/// packed groups (`v0`, `v1`: `kp / 4` chunks of 8 rows times 4 bytes) into `sums[i][h * 8 +
/// j]` (row `i` of `b`, row `j` of group `h`). `B_UNSIGNED`: the broadcast rows are the u8
/// operand (activations, the Linear orientation) and the groups the i8 one; otherwise the
/// other way round (filters broadcast over packed positions, the Conv2d orientation).
#[allow(clippy::too_many_arguments)]
fn tile<const B_UNSIGNED: bool>(
    path: Int8Path,
    b: &[u8],
    mr: usize,
    kp: usize,
    v0: &[u8],
    v1: &[u8],
    ng: usize,
    sums: &mut [[i32; 2 * GROUP]; MR],
) {
    assert!(b.len() == mr * kp && v0.len() == GROUP * kp && v1.len() == GROUP * kp);
    // One arm per (rows, groups) pair, so that the SIMD kernels keep their sums in registers.
    macro_rules! dispatch {
        ($kernel:ident) => {
            match (mr, ng) {
                (4, 2) => $kernel::<4, 2, B_UNSIGNED>(b, kp, v0, v1, sums),
                (4, _) => $kernel::<4, 1, B_UNSIGNED>(b, kp, v0, v1, sums),
                (3, 2) => $kernel::<3, 2, B_UNSIGNED>(b, kp, v0, v1, sums),
                (3, _) => $kernel::<3, 1, B_UNSIGNED>(b, kp, v0, v1, sums),
                (2, 2) => $kernel::<2, 2, B_UNSIGNED>(b, kp, v0, v1, sums),
                (2, _) => $kernel::<2, 1, B_UNSIGNED>(b, kp, v0, v1, sums),
                (_, 2) => $kernel::<1, 2, B_UNSIGNED>(b, kp, v0, v1, sums),
                _ => $kernel::<1, 1, B_UNSIGNED>(b, kp, v0, v1, sums),
            }
        };
    }
    match path {
        // SAFETY: `best` and `available` offer these paths only where the CPU has their
        // features; the lengths the kernels read were checked above.
        #[cfg(target_arch = "x86_64")]
        Int8Path::Vnni => unsafe { dispatch!(tile_vnni) },
        #[cfg(target_arch = "x86_64")]
        Int8Path::Avx2 => unsafe { dispatch!(tile_avx2) },
        _ => tile_portable::<B_UNSIGNED>(b, mr, kp, [v0, v1], ng, sums),
    }
}

fn tile_portable<const B_UNSIGNED: bool>(
    b: &[u8],
    mr: usize,
    kp: usize,
    v: [&[u8]; 2],
    ng: usize,
    sums: &mut [[i32; 2 * GROUP]; MR],
) {
    // The u8 operand as unsigned, the other as i8.
    let product = |x: u8, y: u8| {
        if B_UNSIGNED {
            x as i32 * y as i8 as i32
        } else {
            x as i8 as i32 * y as i32
        }
    };
    for (i, row) in b.chunks(kp).enumerate().take(mr) {
        for (h, group) in v.iter().enumerate().take(ng) {
            for j in 0..GROUP {
                let mut s = 0i32;
                for (c4, four) in row.chunks(4).enumerate() {
                    let at = &group[c4 * 32 + j * 4..c4 * 32 + j * 4 + 4];
                    s += (0..4).map(|t| product(four[t], at[t])).sum::<i32>();
                }
                sums[i][h * GROUP + j] = s;
            }
        }
    }
}

/// The SIMD tile for one instruction set: `$step(acc, unsigned, signed)` adds the 4-byte dot
/// products of each 32-bit lane to `acc`. Each chunk of 4 bytes of a broadcast row meets one
/// 32-byte chunk of each group.
macro_rules! simd_tile {
    ($name:ident, $features:literal, $doc:literal, |$acc:ident, $u:ident, $s:ident| $step:expr) => {
        #[doc = $doc]
        ///
        /// # Safety
        /// The CPU has the features; `b` holds `R` rows of `kp` bytes and each group `kp / 4`
        /// chunks of 32 bytes (checked by [`tile`]).
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        unsafe fn $name<const R: usize, const G: usize, const B_UNSIGNED: bool>(
            b: &[u8],
            kp: usize,
            v0: &[u8],
            v1: &[u8],
            sums: &mut [[i32; 2 * GROUP]; MR],
        ) {
            use std::arch::x86_64::*;
            let mut acc = [[_mm256_setzero_si256(); G]; R];
            let (pb, p0, p1) = (b.as_ptr(), v0.as_ptr(), v1.as_ptr());
            for c4 in 0..kp / 4 {
                // SAFETY (all reads): c4 < kp / 4, within the lengths above.
                let v = [
                    _mm256_loadu_si256(p0.add(c4 * 32) as *const __m256i),
                    _mm256_loadu_si256(p1.add(c4 * 32) as *const __m256i),
                ];
                for (i, acc_i) in acc.iter_mut().enumerate() {
                    let four = (pb.add(i * kp + c4 * 4) as *const i32).read_unaligned();
                    let bv = _mm256_set1_epi32(four);
                    for (h, acc_ih) in acc_i.iter_mut().enumerate() {
                        // The unsigned operand first, as the instructions want it.
                        let ($u, $s) = if B_UNSIGNED { (bv, v[h]) } else { (v[h], bv) };
                        let $acc = *acc_ih;
                        *acc_ih = $step;
                    }
                }
            }
            for (i, acc_i) in acc.iter().enumerate() {
                for (h, v) in acc_i.iter().enumerate() {
                    _mm256_storeu_si256(sums[i][h * GROUP..].as_mut_ptr() as *mut __m256i, *v);
                }
            }
        }
    };
}

simd_tile!(
    tile_avx2,
    "avx2",
    "`vpmaddubsw` (pairs of byte products to i16, saturating), `vpmaddwd` with ones (pairs of those to i32), an add.",
    |acc, u, s| _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)))
);

simd_tile!(
    tile_vnni,
    "avx512f,avx512vl,avx512vnni",
    "`vpdpbusd`: the four byte products of each lane summed into it, exactly, in one instruction.",
    |acc, u, s| _mm256_dpbusd_epi32(acc, u, s)
);

/// The bytes of i8 codes, for the tiles (which read both operands as bytes).
fn bytes(codes: &[i8]) -> &[u8] {
    // SAFETY: i8 and u8 have the same size and alignment, and every bit pattern is valid.
    unsafe { std::slice::from_raw_parts(codes.as_ptr() as *const u8, codes.len()) }
}

/// Activations packed for [`product_by_position`]: groups of [`GROUP`] positions, each group
/// `kp / 4` chunks of 32 bytes holding its 8 positions' next 4 codes. Packs one group from
/// its rows (`rows`: 8 rows of `kp` codes, row-major) into `packed` (as long): a transpose of
/// 8 x `kp / 4` words of 4 bytes.
pub(super) fn pack_group(rows: &[u8], packed: &mut [u8]) {
    let kp = rows.len() / GROUP;
    assert!(
        kp.is_multiple_of(4) && packed.len() == rows.len(),
        "pack_group: whole groups"
    );
    let (src, dst) = (rows.as_ptr() as *const u32, packed.as_mut_ptr() as *mut u32);
    for c4 in 0..kp / 4 {
        for jj in 0..GROUP {
            // SAFETY: word jj * kp / 4 + c4 < 8 * kp / 4 = rows.len() / 4 and word c4 * 8 + jj
            // < kp / 4 * 8 = packed.len() / 4 (checked above); unaligned reads and writes.
            unsafe {
                dst.add(c4 * GROUP + jj)
                    .write_unaligned(src.add(jj * kp / 4 + c4).read_unaligned())
            };
        }
    }
}

/// The product the other way round, for convolutions whose output is channel-major: `w` is
/// `rows` rows of `kp` codes (row-major, zero past `k`), `a` holds `len` positions packed by
/// [`pack_group`]. Calls `out(r, j0, sums)` with the sums of row `r` for positions `j0 ..
/// j0 + sums.len()`, at most 16 at a time.
pub(super) fn product_by_position(
    path: Int8Path,
    w: &[i8],
    rows: usize,
    kp: usize,
    a: &[u8],
    len: usize,
    mut out: impl FnMut(usize, usize, &[i32]),
) {
    let groups = len.div_ceil(GROUP);
    assert!(
        w.len() >= rows * kp && a.len() >= groups * GROUP * kp,
        "int8 product: operands too short"
    );
    let group = |g: usize| &a[g * GROUP * kp..(g + 1) * GROUP * kp];
    let mut sums = [[0i32; 2 * GROUP]; MR];
    for r0 in (0..rows).step_by(MR) {
        let mr = MR.min(rows - r0);
        let wr = &w[r0 * kp..(r0 + mr) * kp];
        for g in (0..groups).step_by(2) {
            let ng = 2.min(groups - g);
            let a1 = if ng == 2 { group(g + 1) } else { group(g) };
            tile::<false>(path, bytes(wr), mr, kp, group(g), a1, ng, &mut sums);
            let valid = (ng * GROUP).min(len - g * GROUP);
            for (dr, row) in sums.iter().enumerate().take(mr) {
                out(r0 + dr, g * GROUP, &row[..valid]);
            }
        }
    }
}

/// `sum_k a[k] * w[k]` in i64, the definition every path must equal.
pub fn dot_reference(a: &[u8], w: &[i8]) -> i64 {
    a.iter().zip(w).map(|(&x, &y)| x as i64 * y as i64).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Every path equals the reference on shapes that are not multiples of the tile, the
    /// group or the 4-byte step, with codes at the extremes (255 against +-64: the pair sums
    /// the saturation bound is about).
    #[test]
    fn every_path_equals_the_reference() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for &(m, rows, k) in &[
            (1, 1, 1),
            (3, 7, 5),
            (5, 9, 13),
            (4, 16, 32),
            (9, 17, 67),
            (13, 40, 301),
            (2, 8, 4),
        ] {
            for extreme in [false, true] {
                let kp = padded(k);
                let mut a = vec![0u8; m * kp];
                let mut acts = Vec::new();
                for i in 0..m {
                    for c in 0..k {
                        let v = if extreme { 255 } else { rng.random_range(0..=255u8) };
                        a[i * kp + c] = v;
                    }
                    acts.push(a[i * kp..i * kp + k].to_vec());
                }
                for path in Int8Path::available() {
                    // Codes up to the path's limit: +-64 against 255 is the pair sum the AVX2
                    // saturation bound is about, +-127 the whole i8 range.
                    let top = path.max_weight_code();
                    let q: Vec<i8> = (0..rows * k)
                        .map(|_| {
                            if extreme {
                                if rng.random_bool(0.5) {
                                    top as i8
                                } else {
                                    -top as i8
                                }
                            } else {
                                rng.random_range(-top..=top) as i8
                            }
                        })
                        .collect();
                    let w = Packed::new(&q, rows, k);
                    let mut seen = vec![false; m * rows];
                    product(path, &a, m, &w, |i, r, s| {
                        let want = dot_reference(&acts[i], &q[r * k..(r + 1) * k]);
                        assert_eq!(s as i64, want, "{path:?} m {m} rows {rows} k {k} at ({i}, {r})");
                        seen[i * rows + r] = true;
                    });
                    assert!(seen.iter().all(|s| *s), "{path:?}: every output written");
                    // The other orientation: positions packed, weight rows broadcast.
                    let whole = m.div_ceil(GROUP) * GROUP * kp;
                    let mut rows_a = a.clone();
                    rows_a.resize(whole, 0);
                    let mut packed = vec![0u8; whole];
                    for (src, dst) in rows_a.chunks(GROUP * kp).zip(packed.chunks_mut(GROUP * kp)) {
                        pack_group(src, dst);
                    }
                    let wrows: Vec<i8> = q
                        .chunks(k)
                        .flat_map(|r| r.iter().copied().chain(std::iter::repeat_n(0, kp - k)))
                        .collect();
                    let mut seen = vec![false; m * rows];
                    product_by_position(path, &wrows, rows, kp, &packed, m, |r, j0, sums| {
                        for (dj, &s) in sums.iter().enumerate() {
                            let want = dot_reference(&acts[j0 + dj], &q[r * k..(r + 1) * k]);
                            assert_eq!(s as i64, want, "{path:?} by position, m {m} rows {rows} k {k}");
                            seen[(j0 + dj) * rows + r] = true;
                        }
                    });
                    assert!(
                        seen.iter().all(|s| *s),
                        "{path:?}: every output written by position"
                    );
                }
            }
        }
    }
}
