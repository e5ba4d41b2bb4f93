//! The u8 x i8 -> i32 product at the heart of the int8 kernels: `sums[i][r] = sum_k a[i][k] *
//! w[r][k]`, activations unsigned (`a`, rows of `kp` bytes), weights signed (`w`, packed).
//!
//! Four bytes of one row are broadcast against sixteen rows of the other operand times four
//! bytes (one 512-bit register, or two 256-bit ones), and summed into sixteen i32:
//! - with AVX-512 VNNI, `vpdpbusd` does the 64 (or 32) multiply-adds and the accumulation in
//!   one instruction, exactly, for any i8 weight;
//! - with AVX2, `vpmaddubsw` (32 byte products summed in pairs to 16 i16) then `vpmaddwd` with
//!   ones (pairs of those to 8 i32) and an add. `vpmaddubsw` saturates its i16 pair sums, so
//!   this path takes weights up to `|w| <= 64` only (`2 * 255 * 64 = 32640` fits): 7-bit
//!   weights, what onnxruntime calls `reduce_range` and oneDNN asks for without VNNI;
//! - portably, in plain i32 arithmetic.
//!
//! Within its path's limit ([`Int8Path::max_weight_code`]) every path is exact, and tested
//! equal to [`dot_reference`].

mod tile;

use tile::{tile, tile_nibbles};

/// The largest weight magnitude any path accepts (the i8 range without -128, so that every
/// code has its negation).
pub const MAX_WEIGHT_CODE: i32 = 127;

/// Broadcast rows per tile at most (the 512-bit path's; the others take 4).
pub(super) const MR: usize = 8;
/// Weight rows per packed group: one 512-bit register of sixteen i32 sums (two 256-bit ones).
pub(super) const GROUP: usize = 16;
/// Packed groups one tile reads at most (the 512-bit path reads two).
const MAX_GROUPS: usize = 2;

/// The sums one tile writes: up to `MR` broadcast rows times up to two groups.
type Sums = [[i32; MAX_GROUPS * GROUP]; MR];

/// Which integer product the CPU runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Int8Path {
    /// AVX-512 VNNI on 512-bit registers (`vpdpbusd`).
    Vnni512,
    /// AVX-512 VNNI on 256-bit registers (needs AVX-512 VL).
    Vnni,
    Avx2,
    Portable,
}

impl Int8Path {
    /// The path the engine runs (chosen once): the fastest this CPU has, or the one the
    /// environment variable `PARE_INT8_PATH` names (`vnni512`, `vnni`, `avx2`, `portable`)
    /// where the CPU has it, so that benchmarks can compare paths on one machine.
    pub fn best() -> Int8Path {
        static BEST: std::sync::OnceLock<Int8Path> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| {
            let available = Int8Path::available();
            let asked = std::env::var("PARE_INT8_PATH").ok().and_then(|v| {
                available
                    .iter()
                    .copied()
                    .find(|p| format!("{p:?}").eq_ignore_ascii_case(v.trim()))
            });
            // `available` lists the paths from the slowest to the fastest.
            asked.unwrap_or(*available.last().expect("the portable path is always available"))
        })
    }

    /// Every path this CPU can run, the portable one first, the fastest last.
    pub fn available() -> Vec<Int8Path> {
        let mut v = vec![Int8Path::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2") {
                v.push(Int8Path::Avx2);
            }
            if has_vnni() {
                v.push(Int8Path::Vnni);
                v.push(Int8Path::Vnni512);
            }
        }
        v
    }

    /// The largest weight magnitude this path sums exactly (see the module's notes).
    pub fn max_weight_code(self) -> i32 {
        match self {
            Int8Path::Avx2 => 64,
            Int8Path::Vnni512 | Int8Path::Vnni | Int8Path::Portable => MAX_WEIGHT_CODE,
        }
    }

    /// Whether 4-bit weights are held two to a byte: when the best path's kernel unpacks them.
    pub(super) fn packs_nibbles() -> bool {
        Int8Path::best().reads_nibbles()
    }

    /// Whether this path has a kernel for nibble-packed weights: every SIMD path (the 512-bit
    /// one with AVX-512 BW); the portable one expands them.
    fn reads_nibbles(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            match self {
                Int8Path::Vnni512 => is_x86_feature_detected!("avx512bw"),
                Int8Path::Vnni | Int8Path::Avx2 => true,
                Int8Path::Portable => false,
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        false
    }

    /// Packed groups per tile: the 512-bit path keeps sixteen accumulators with two groups of
    /// sixteen rows (one register each per broadcast row) and eight broadcast rows, the 256-bit
    /// ones eight with one group (two registers each) and four rows; the AVX2 path has only
    /// sixteen registers in all.
    fn groups_per_tile(self) -> usize {
        match self {
            Int8Path::Vnni512 => 2,
            _ => 1,
        }
    }

    /// Broadcast rows per tile (see [`Int8Path::groups_per_tile`]).
    fn rows_per_tile(self) -> usize {
        match self {
            Int8Path::Vnni512 => 8,
            _ => 4,
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
/// with zero rows), each group `kp / 4` chunks of 64 bytes holding its 16 rows' next 4 codes
/// (row-major inside the chunk); codes past `k` are 0.
#[derive(Clone, Debug)]
pub(super) struct Packed {
    pub(super) rows: usize,
    pub(super) kp: usize,
    data: Vec<i8>,
    /// Codes within +-7 held two to a byte (see [`Packed::nibbles`]), for the 512-bit VNNI
    /// path; the other paths read them expanded.
    pub(super) nibbles: bool,
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
                data[g * GROUP * kp + (c / 4) * GROUP * 4 + j * 4 + c % 4] = v;
            }
        }
        Packed {
            rows,
            kp,
            data,
            nibbles: false,
        }
    }

    /// [`Packed::new`] for codes within +-7 (4-bit weights), two to a byte: byte `t` of each
    /// 32-byte chunk holds byte `t` of the 64-byte chunk `new` would make in its low nibble and
    /// byte `t + 32` in its high one, each plus 8. Half the memory; the 512-bit kernel unpacks
    /// a chunk with two masks, a shift and a subtraction.
    pub(super) fn nibbles(q: &[i8], rows: usize, k: usize) -> Packed {
        assert!(q.iter().all(|v| (-7..=7).contains(v)), "4-bit codes");
        let wide = Packed::new(q, rows, k);
        let data = wide
            .data
            .chunks(64)
            .flat_map(|c| (0..32).map(move |t| (((c[t] + 8) as u8) | (((c[t + 32] + 8) as u8) << 4)) as i8))
            .collect();
        Packed {
            data,
            nibbles: true,
            ..wide
        }
    }

    /// The byte form of nibble-packed codes (for the paths without a nibble kernel).
    fn expanded(&self) -> Packed {
        let data = self
            .data
            .chunks(32)
            .flat_map(|c| {
                let lo = c.iter().map(|&b| ((b as u8) & 15) as i8 - 8);
                let hi = c.iter().map(|&b| ((b as u8) >> 4) as i8 - 8);
                lo.chain(hi).collect::<Vec<_>>()
            })
            .collect();
        Packed {
            rows: self.rows,
            kp: self.kp,
            data,
            nibbles: false,
        }
    }

    fn groups(&self) -> usize {
        self.rows.div_ceil(GROUP)
    }

    fn group(&self, g: usize) -> &[i8] {
        let len = if self.nibbles {
            GROUP * self.kp / 2
        } else {
            GROUP * self.kp
        };
        &self.data[g * len..(g + 1) * len]
    }
}

/// Every sum of `m` activation rows (`a`, `m * kp` bytes) against `w`: calls `out(i, r0,
/// sums)` with the sums of activation row `i` against weight rows `r0 .. r0 + sums.len()`
/// (at most 32 at a time), every pair once.
pub(super) fn product(
    path: Int8Path,
    a: &[u8],
    m: usize,
    w: &Packed,
    mut out: impl FnMut(usize, usize, &[i32]),
) {
    if w.nibbles && !path.reads_nibbles() {
        return product(path, a, m, &w.expanded(), out);
    }
    let kp = w.kp;
    assert!(a.len() >= m * kp, "int8 product: activations too short");
    let groups = w.groups();
    let (per, mrows) = (path.groups_per_tile(), path.rows_per_tile());
    let mut sums: Sums = [[0i32; MAX_GROUPS * GROUP]; MR];
    // The packed groups outside: their bytes (the larger operand of a tile) stay in the L1
    // cache while every row of `a` meets them.
    for g in (0..groups).step_by(per) {
        let ng = per.min(groups - g);
        let w1 = if ng == 2 { w.group(g + 1) } else { w.group(g) };
        for i0 in (0..m).step_by(mrows) {
            let mr = mrows.min(m - i0);
            let rows = &a[i0 * kp..(i0 + mr) * kp];
            if w.nibbles {
                tile_nibbles(path, rows, mr, kp, bytes(w.group(g)), bytes(w1), ng, &mut sums);
            } else {
                tile::<true>(path, rows, mr, kp, bytes(w.group(g)), bytes(w1), ng, &mut sums);
            }
            let valid = (ng * GROUP).min(w.rows - g * GROUP);
            for (di, row) in sums.iter().enumerate().take(mr) {
                out(i0 + di, g * GROUP, &row[..valid]);
            }
        }
    }
}

/// The bytes of i8 codes, for the tiles (which read both operands as bytes).
fn bytes(codes: &[i8]) -> &[u8] {
    // SAFETY: i8 and u8 have the same size and alignment, and every bit pattern is valid.
    unsafe { std::slice::from_raw_parts(codes.as_ptr() as *const u8, codes.len()) }
}

/// Activations packed for [`product_by_position`]: groups of [`GROUP`] positions, each group
/// `kp / 4` chunks of 64 bytes holding its 16 positions' next 4 codes. Packs one group from
/// its rows (`rows`: 16 rows of `kp` codes, row-major) into `packed` (as long): a transpose of
/// 16 x `kp / 4` words of 4 bytes.
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
/// j0 + sums.len()`, at most 32 at a time.
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
    let (per, mrows) = (path.groups_per_tile(), path.rows_per_tile());
    let mut sums: Sums = [[0i32; MAX_GROUPS * GROUP]; MR];
    // The packed positions outside, as in `product`.
    for g in (0..groups).step_by(per) {
        let ng = per.min(groups - g);
        let a1 = if ng == 2 { group(g + 1) } else { group(g) };
        for r0 in (0..rows).step_by(mrows) {
            let mr = mrows.min(rows - r0);
            let wr = &w[r0 * kp..(r0 + mr) * kp];
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

    /// 4-bit codes held two to a byte give the reference sums on every path (the SIMD paths
    /// read them packed, the portable one expanded), on shapes off the tile and the group.
    #[test]
    fn nibble_packed_codes_equal_the_reference() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        for &(m, rows, k) in &[(1, 1, 1), (3, 17, 5), (9, 40, 67), (13, 33, 301), (8, 64, 128)] {
            let kp = padded(k);
            let a: Vec<u8> = (0..m * kp)
                .map(|i| {
                    if i % kp < k {
                        rng.random_range(0..=255u8)
                    } else {
                        0
                    }
                })
                .collect();
            let q: Vec<i8> = (0..rows * k)
                .map(|i| if i % 11 == 0 { -7 } else { rng.random_range(-7..=7) })
                .collect();
            let w = Packed::nibbles(&q, rows, k);
            assert_eq!(
                w.data.len() * 2,
                Packed::new(&q, rows, k).data.len(),
                "two codes a byte"
            );
            assert_eq!(w.expanded().data, Packed::new(&q, rows, k).data);
            for path in Int8Path::available() {
                let mut seen = 0;
                product(path, &a, m, &w, |i, r0, sums| {
                    for (dr, &s) in sums.iter().enumerate() {
                        let r = r0 + dr;
                        let want = dot_reference(&a[i * kp..i * kp + k], &q[r * k..(r + 1) * k]);
                        assert_eq!(s as i64, want, "{path:?} m {m} rows {rows} k {k} at ({i}, {r})");
                        seen += 1;
                    }
                });
                assert_eq!(seen, m * rows, "{path:?}: every output once");
            }
        }
    }

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
                    product(path, &a, m, &w, |i, r0, sums| {
                        for (dr, &s) in sums.iter().enumerate() {
                            let r = r0 + dr;
                            let want = dot_reference(&acts[i], &q[r * k..(r + 1) * k]);
                            assert_eq!(s as i64, want, "{path:?} m {m} rows {rows} k {k} at ({i}, {r})");
                            seen[i * rows + r] = true;
                        }
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
