//! The tiles of the product: `mr` broadcast rows against one or two packed groups, summed
//! in registers, one kernel per instruction set (AVX2, VNNI on 256 and 512 bits, each also on
//! nibble-packed weights) and the portable one.

use super::{Int8Path, Sums, GROUP};

/// One call of `$call!($kernel, R, V)` for the (rows, registers per row) pair `($mr, $v)`:
/// the SIMD kernels take both as constants, so that their accumulators stay in registers.
#[cfg(target_arch = "x86_64")]
macro_rules! by_shape {
    ($mr:expr, $v:expr, $call:ident, $kernel:ident) => {
        match ($mr, $v) {
            (8, 2) => $call!($kernel, 8, 2),
            (8, _) => $call!($kernel, 8, 1),
            (7, 2) => $call!($kernel, 7, 2),
            (7, _) => $call!($kernel, 7, 1),
            (6, 2) => $call!($kernel, 6, 2),
            (6, _) => $call!($kernel, 6, 1),
            (5, 2) => $call!($kernel, 5, 2),
            (5, _) => $call!($kernel, 5, 1),
            (4, 2) => $call!($kernel, 4, 2),
            (4, _) => $call!($kernel, 4, 1),
            (3, 2) => $call!($kernel, 3, 2),
            (3, _) => $call!($kernel, 3, 1),
            (2, 2) => $call!($kernel, 2, 2),
            (2, _) => $call!($kernel, 2, 1),
            (_, 2) => $call!($kernel, 1, 2),
            _ => $call!($kernel, 1, 1),
        }
    };
}

/// Sums of `mr` broadcast rows (`b`, `mr` rows of `kp` bytes) against one (`ng` = 1) or two
/// packed groups (`v0`, `v1`: `kp / 4` chunks of 16 rows times 4 bytes; two only on the
/// 512-bit path) into `sums[i][h * 16 + j]` (row `i` of `b`, row `j` of group `h`). `B_UNSIGNED`: the broadcast rows are the u8
/// operand (activations, the Linear orientation) and the groups the i8 one; otherwise the
/// other way round (filters broadcast over packed positions, the Conv2d orientation).
#[allow(clippy::too_many_arguments)]
pub(super) fn tile<const B_UNSIGNED: bool>(
    path: Int8Path,
    b: &[u8],
    mr: usize,
    kp: usize,
    v0: &[u8],
    v1: &[u8],
    ng: usize,
    sums: &mut Sums,
) {
    assert!(b.len() == mr * kp && v0.len() == GROUP * kp && v1.len() == GROUP * kp);
    assert!(ng >= 1 && ng <= path.groups_per_tile() && mr >= 1 && mr <= path.rows_per_tile());
    // One arm per (rows, registers per row) pair: a group is two 256-bit registers or one
    // 512-bit one.
    #[cfg(target_arch = "x86_64")]
    macro_rules! call {
        ($kernel:ident, $r:literal, $v:literal) => {
            $kernel::<$r, $v, B_UNSIGNED>(b, kp, v0, v1, sums)
        };
    }
    match path {
        // SAFETY: `best` and `available` offer these paths only where the CPU has their
        // features; the lengths the kernels read were checked above.
        #[cfg(target_arch = "x86_64")]
        Int8Path::Vnni512 => unsafe { by_shape!(mr, ng, call, tile_vnni512) },
        #[cfg(target_arch = "x86_64")]
        Int8Path::Vnni => unsafe { by_shape!(mr, 2, call, tile_vnni) },
        #[cfg(target_arch = "x86_64")]
        Int8Path::Avx2 => unsafe { by_shape!(mr, 2, call, tile_avx2) },
        _ => tile_portable::<B_UNSIGNED>(b, mr, kp, [v0, v1], ng, sums),
    }
}

/// [`tile`] on nibble-packed weight groups (`v0`, `v1`: `kp / 4` chunks of 32 bytes; two
/// groups only on the 512-bit path), for a path that reads them (`Int8Path::reads_nibbles`).
#[allow(clippy::too_many_arguments)]
pub(super) fn tile_nibbles(
    path: Int8Path,
    b: &[u8],
    mr: usize,
    kp: usize,
    v0: &[u8],
    v1: &[u8],
    ng: usize,
    sums: &mut Sums,
) {
    assert!(b.len() == mr * kp && v0.len() == GROUP * kp / 2 && v1.len() == GROUP * kp / 2);
    assert!(ng >= 1 && ng <= path.groups_per_tile() && mr >= 1 && mr <= path.rows_per_tile());
    #[cfg(target_arch = "x86_64")]
    macro_rules! call {
        ($kernel:ident, $r:literal, $v:literal) => {
            $kernel::<$r, $v>(b, kp, v0, v1, sums)
        };
    }
    match path {
        // SAFETY: `product` sends nibble-packed weights here only on a path that reads them,
        // which `best` and `available` offer only where the CPU has its features (the 512-bit
        // one also AVX-512 BW); lengths checked above.
        #[cfg(target_arch = "x86_64")]
        Int8Path::Vnni512 => unsafe { by_shape!(mr, ng, call, tile_vnni512_nibbles) },
        #[cfg(target_arch = "x86_64")]
        Int8Path::Vnni => unsafe { by_shape!(mr, 2, call, tile_vnni_nibbles) },
        #[cfg(target_arch = "x86_64")]
        Int8Path::Avx2 => unsafe { by_shape!(mr, 2, call, tile_avx2_nibbles) },
        _ => unreachable!("the portable path reads nibble-packed weights expanded"),
    }
}

/// The 512-bit VNNI tile on nibble-packed weights: each 32-byte chunk becomes the 64 signed
/// bytes [`super::Packed::new`] holds (low nibbles, then high ones, minus 8) before `vpdpbusd`.
///
/// # Safety
/// The CPU has AVX-512 F, BW and VNNI; `b` holds `R` rows of `kp` bytes, each group `kp / 4`
/// chunks of 32 bytes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn tile_vnni512_nibbles<const R: usize, const V: usize>(
    b: &[u8],
    kp: usize,
    v0: &[u8],
    v1: &[u8],
    sums: &mut Sums,
) {
    use std::arch::x86_64::*;
    let (low, eight) = (_mm256_set1_epi8(15), _mm512_set1_epi8(8));
    let mut acc = [[_mm512_setzero_si512(); V]; R];
    let (pb, groups) = (b.as_ptr(), [v0.as_ptr(), v1.as_ptr()]);
    for c4 in 0..kp / 4 {
        let mut v = [_mm512_setzero_si512(); V];
        for (h, vh) in v.iter_mut().enumerate() {
            // SAFETY (all reads): c4 < kp / 4, within the lengths above.
            let x = _mm256_loadu_si256(groups[h].add(c4 * 32) as *const __m256i);
            let lo = _mm256_and_si256(x, low);
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(x), low);
            *vh = _mm512_sub_epi8(_mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi), eight);
        }
        for (i, acc_i) in acc.iter_mut().enumerate() {
            let bv = _mm512_set1_epi32((pb.add(i * kp + c4 * 4) as *const i32).read_unaligned());
            for (h, acc_ih) in acc_i.iter_mut().enumerate() {
                *acc_ih = _mm512_dpbusd_epi32(*acc_ih, bv, v[h]);
            }
        }
    }
    for (i, acc_i) in acc.iter().enumerate() {
        for (h, v) in acc_i.iter().enumerate() {
            _mm512_storeu_si512(sums[i][h * GROUP..].as_mut_ptr() as *mut _, *v);
        }
    }
}

/// The 256-bit tiles on nibble-packed weights: a group's 32-byte chunk holds its rows 0-7 in
/// the low nibbles and rows 8-15 in the high ones, which become the two registers (signed bytes,
/// minus 8) that the byte kernel loads; `$step(acc, unsigned, signed)` as in `simd_tile!`. With
/// codes within +-7 the AVX2 pair sums (at most 2 x 255 x 8) never saturate.
macro_rules! nibble_tile_256 {
    ($name:ident, $features:literal, $doc:literal, |$acc:ident, $u:ident, $s:ident| $step:expr) => {
        #[doc = $doc]
        ///
        /// # Safety
        /// The CPU has the features; `b` holds `R` rows of `kp` bytes and the group `v0`
        /// `kp / 4` chunks of 32 bytes (checked by [`tile_nibbles`]); `V == 2`.
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        unsafe fn $name<const R: usize, const V: usize>(
            b: &[u8],
            kp: usize,
            v0: &[u8],
            _v1: &[u8],
            sums: &mut Sums,
        ) {
            use std::arch::x86_64::*;
            let (low, eight) = (_mm256_set1_epi8(15), _mm256_set1_epi8(8));
            let mut acc = [[_mm256_setzero_si256(); V]; R];
            let (pb, group) = (b.as_ptr(), v0.as_ptr());
            for c4 in 0..kp / 4 {
                // SAFETY (all reads): c4 < kp / 4, within the lengths above.
                let x = _mm256_loadu_si256(group.add(c4 * 32) as *const __m256i);
                let lo = _mm256_sub_epi8(_mm256_and_si256(x, low), eight);
                let hi = _mm256_sub_epi8(_mm256_and_si256(_mm256_srli_epi16::<4>(x), low), eight);
                let v = [lo, hi];
                for (i, acc_i) in acc.iter_mut().enumerate() {
                    let bv = _mm256_set1_epi32((pb.add(i * kp + c4 * 4) as *const i32).read_unaligned());
                    for (h, acc_ih) in acc_i.iter_mut().enumerate() {
                        let ($u, $s) = (bv, v[h]);
                        let $acc = *acc_ih;
                        *acc_ih = $step;
                    }
                }
            }
            for (i, acc_i) in acc.iter().enumerate() {
                for (h, v) in acc_i.iter().enumerate() {
                    _mm256_storeu_si256(sums[i][h * 8..].as_mut_ptr() as *mut _, *v);
                }
            }
        }
    };
}

nibble_tile_256!(
    tile_avx2_nibbles,
    "avx2",
    "The AVX2 tile (`vpmaddubsw`, `vpmaddwd`) on nibble-packed weights.",
    |acc, u, s| _mm256_add_epi32(
        acc,
        _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1))
    )
);

nibble_tile_256!(
    tile_vnni_nibbles,
    "avx2,avx512f,avx512vl,avx512vnni",
    "The 256-bit VNNI tile (`vpdpbusd`) on nibble-packed weights.",
    |acc, u, s| _mm256_dpbusd_epi32(acc, u, s)
);

fn tile_portable<const B_UNSIGNED: bool>(
    b: &[u8],
    mr: usize,
    kp: usize,
    v: [&[u8]; 2],
    ng: usize,
    sums: &mut Sums,
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
                    let at = &group[c4 * GROUP * 4 + j * 4..c4 * GROUP * 4 + j * 4 + 4];
                    s += (0..4).map(|t| product(four[t], at[t])).sum::<i32>();
                }
                sums[i][h * GROUP + j] = s;
            }
        }
    }
}

/// The SIMD tile for one register width: `$step(acc, unsigned, signed)` adds the 4-byte dot
/// products of each 32-bit lane to `acc`. Each chunk of 4 bytes of a broadcast row meets the
/// `V` registers (of `$lanes` rows) its groups hold at that chunk: a group's chunk is 64 bytes,
/// two 256-bit registers or one 512-bit one.
macro_rules! simd_tile {
    (
        $name:ident, $features:literal, $doc:literal,
        $lanes:literal, $zero:ident, $load:ident, $set1:ident, $store:ident,
        |$acc:ident, $u:ident, $s:ident| $step:expr
    ) => {
        #[doc = $doc]
        ///
        /// # Safety
        /// The CPU has the features; `b` holds `R` rows of `kp` bytes and each group `kp / 4`
        /// chunks of 64 bytes (checked by [`tile`]); `V * $lanes <= 2 * GROUP`.
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        // With one register per group (512 bits), `h % PER` is 0.
        #[allow(clippy::modulo_one)]
        unsafe fn $name<const R: usize, const V: usize, const B_UNSIGNED: bool>(
            b: &[u8],
            kp: usize,
            v0: &[u8],
            v1: &[u8],
            sums: &mut Sums,
        ) {
            use std::arch::x86_64::*;
            // Registers per group.
            const PER: usize = GROUP / $lanes;
            let mut acc = [[$zero(); V]; R];
            let (pb, groups) = (b.as_ptr(), [v0.as_ptr(), v1.as_ptr()]);
            for c4 in 0..kp / 4 {
                // SAFETY (all reads): c4 < kp / 4, within the lengths above.
                let mut v = [$zero(); V];
                for (h, vh) in v.iter_mut().enumerate() {
                    let at = groups[h / PER].add(c4 * GROUP * 4 + (h % PER) * $lanes * 4);
                    *vh = $load(at as *const _);
                }
                for (i, acc_i) in acc.iter_mut().enumerate() {
                    let four = (pb.add(i * kp + c4 * 4) as *const i32).read_unaligned();
                    let bv = $set1(four);
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
                    $store(sums[i][h * $lanes..].as_mut_ptr() as *mut _, *v);
                }
            }
        }
    };
}

simd_tile!(
    tile_avx2,
    "avx2",
    "`vpmaddubsw` (pairs of byte products to i16, saturating), `vpmaddwd` with ones (pairs of those to i32), an add.",
    8, _mm256_setzero_si256, _mm256_loadu_si256, _mm256_set1_epi32, _mm256_storeu_si256,
    |acc, u, s| _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)))
);

simd_tile!(
    tile_vnni,
    "avx512f,avx512vl,avx512vnni",
    "`vpdpbusd` on 256 bits: the four byte products of each lane summed into it, exactly, in one instruction.",
    8, _mm256_setzero_si256, _mm256_loadu_si256, _mm256_set1_epi32, _mm256_storeu_si256,
    |acc, u, s| _mm256_dpbusd_epi32(acc, u, s)
);

simd_tile!(
    tile_vnni512,
    "avx512f,avx512vnni",
    "`vpdpbusd` on 512 bits: sixteen lanes of four byte products per instruction.",
    16,
    _mm512_setzero_si512,
    _mm512_loadu_si512,
    _mm512_set1_epi32,
    _mm512_storeu_si512,
    |acc, u, s| _mm512_dpbusd_epi32(acc, u, s)
);
