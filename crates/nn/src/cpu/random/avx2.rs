//! The normals of [`super`] written out in AVX2 intrinsics: the same operations on the same
//! values in the same order as the portable code (`philox4x32`, `ln`, `sin_cos`, `box_muller`),
//! so the same numbers bit for bit (tested against it), with eight Philox blocks per vector in
//! structure-of-arrays form and each Box–Muller pair computed from registers.
//!
//! Why by hand: the compiler vectorises the portable loops, but it builds each 32×32 → 64-bit
//! Philox product with 128-bit extracts and shuffles, and it spills the Box–Muller arrays and
//! reloads its constants, and it computes one Box–Muller chain at a time, bound by the latency
//! of its polynomials. On a 2-core EPYC (AVX2) a row of 800 normals took 2.6 ns per value that
//! way and takes 1.6 ns here; Philox is a third of that, Box–Muller the rest.
//! Floating-point operations are plain multiplies and adds, never fused (`a * b + c` in Rust
//! rounds twice, and so must these).

use std::arch::x86_64::*;

use super::{M0, M1, W0, W1};

/// The high and low 32 bits of `a · m` in each of the eight 32-bit lanes (Philox's `mulhilo`):
/// `_mm256_mul_epu32` multiplies the even lanes, and the odd lanes after a 32-bit shift.
#[inline(always)]
fn mulhilo(a: __m256i, m: __m256i) -> (__m256i, __m256i) {
    // SAFETY (all intrinsics of this module): the callers run only where `avx2` is enabled.
    unsafe {
        let even = _mm256_mul_epu32(a, m);
        let odd = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);
        let hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0b1010_1010);
        let lo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0b1010_1010);
        (hi, lo)
    }
}

/// Philox4x32-10 of `S` sets of eight blocks: lane i of set s has the counter
/// (`first[s] + i`, `c1`, `c2`, `c3`). Returns the four words of each block, one vector per word.
/// The rounds of the sets are interleaved, so that their dependency chains overlap.
#[inline(always)]
fn philox_sets<const S: usize>(first: [u32; S], c1: u32, c2: u32, c3: u32, key: [u32; 2]) -> [[__m256i; 4]; S] {
    unsafe {
        let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        let (m0, m1) = (_mm256_set1_epi32(M0 as i32), _mm256_set1_epi32(M1 as i32));
        let (v1, v2, v3) = (_mm256_set1_epi32(c1 as i32), _mm256_set1_epi32(c2 as i32), _mm256_set1_epi32(c3 as i32));
        let mut x = [[v1; 4]; S];
        for (c, f) in x.iter_mut().zip(first) {
            *c = [_mm256_add_epi32(_mm256_set1_epi32(f as i32), lanes), v1, v2, v3];
        }
        let [mut k0, mut k1] = key;
        for _ in 0..10 {
            let (kv0, kv1) = (_mm256_set1_epi32(k0 as i32), _mm256_set1_epi32(k1 as i32));
            for c in x.iter_mut() {
                let (hi0, lo0) = mulhilo(c[0], m0);
                let (hi1, lo1) = mulhilo(c[2], m1);
                *c = [_mm256_xor_si256(_mm256_xor_si256(hi1, c[1]), kv0), lo1, _mm256_xor_si256(_mm256_xor_si256(hi0, c[3]), kv1), lo0];
            }
            k0 = k0.wrapping_add(W0);
            k1 = k1.wrapping_add(W1);
        }
        x
    }
}

/// `N` vectors of eight floats, operated on together: each operation is applied to all `N`
/// before the next, so that `N` independent Box–Muller chains overlap in the CPU (one chain alone
/// is bound by the latency of its polynomials). Arithmetic is lane-wise and rounds once per
/// operation, as the scalar code does.
#[derive(Clone, Copy)]
struct F<const N: usize>([__m256; N]);

/// `N` vectors of eight 32-bit integers (bit patterns, exponents, quadrants).
#[derive(Clone, Copy)]
struct I<const N: usize>([__m256i; N]);

/// `out[k] = e` for k < N, with `x` (and `y`) bound to the k-th vector of the operand(s): a
/// loop the compiler unrolls, without a closure (so that nothing is left out of line).
macro_rules! lanewise {
    ($out:expr, $a:expr, |$x:ident| $e:expr) => {{
        let mut out = $out;
        for k in 0..N {
            let $x = $a[k];
            // SAFETY: the callers run only where `avx2` is enabled.
            out[k] = unsafe { $e };
        }
        out
    }};
    ($out:expr, $a:expr, $b:expr, |$x:ident, $y:ident| $e:expr) => {{
        let mut out = $out;
        for k in 0..N {
            let ($x, $y) = ($a[k], $b[k]);
            // SAFETY: as above.
            out[k] = unsafe { $e };
        }
        out
    }};
}

/// The f32 operators of `F`, each one vector instruction per lane set.
macro_rules! float_op {
    ($trait:ident, $method:ident, $intrinsic:ident) => {
        impl<const N: usize> std::ops::$trait for F<N> {
            type Output = Self;
            #[inline(always)]
            fn $method(self, o: Self) -> Self {
                F(lanewise!(self.0, self.0, o.0, |a, b| $intrinsic(a, b)))
            }
        }
        impl<const N: usize> std::ops::$trait<f32> for F<N> {
            type Output = Self;
            #[inline(always)]
            fn $method(self, c: f32) -> Self {
                self.$method(F::splat(c))
            }
        }
    };
}
float_op!(Add, add, _mm256_add_ps);
float_op!(Sub, sub, _mm256_sub_ps);
float_op!(Mul, mul, _mm256_mul_ps);

impl<const N: usize> F<N> {
    #[inline(always)]
    fn splat(c: f32) -> Self {
        // SAFETY: as above.
        F([unsafe { _mm256_set1_ps(c) }; N])
    }
    #[inline(always)]
    fn to_bits(self) -> I<N> {
        I(lanewise!([unsafe { _mm256_setzero_si256() }; N], self.0, |a| _mm256_castps_si256(a)))
    }
    #[inline(always)]
    fn sqrt(self) -> Self {
        F(lanewise!(self.0, self.0, |a| _mm256_sqrt_ps(a)))
    }
    /// All ones where `self < c` (ordered), as integer lanes.
    #[inline(always)]
    fn lt(self, c: f32) -> I<N> {
        F(lanewise!(self.0, self.0, |a| _mm256_cmp_ps::<_CMP_LT_OQ>(a, _mm256_set1_ps(c)))).to_bits()
    }
}

impl<const N: usize> I<N> {
    #[inline(always)]
    fn splat(c: u32) -> Self {
        // SAFETY: as above.
        I([unsafe { _mm256_set1_epi32(c as i32) }; N])
    }
    #[inline(always)]
    fn bitcast_f32(self) -> F<N> {
        F(lanewise!([unsafe { _mm256_setzero_ps() }; N], self.0, |a| _mm256_castsi256_ps(a)))
    }
    /// The lanes as signed integers, converted to the nearest float (exact below 2²⁴).
    #[inline(always)]
    fn to_f32(self) -> F<N> {
        F(lanewise!([unsafe { _mm256_setzero_ps() }; N], self.0, |a| _mm256_cvtepi32_ps(a)))
    }
    #[inline(always)]
    fn and(self, c: u32) -> Self {
        I(lanewise!(self.0, self.0, |a| _mm256_and_si256(a, _mm256_set1_epi32(c as i32))))
    }
    #[inline(always)]
    fn or(self, c: u32) -> Self {
        I(lanewise!(self.0, self.0, |a| _mm256_or_si256(a, _mm256_set1_epi32(c as i32))))
    }
    #[inline(always)]
    fn xor(self, o: Self) -> Self {
        I(lanewise!(self.0, self.0, o.0, |a, b| _mm256_xor_si256(a, b)))
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        I(lanewise!(self.0, self.0, o.0, |a, b| _mm256_add_epi32(a, b)))
    }
    #[inline(always)]
    fn shr<const S: i32>(self) -> Self {
        I(lanewise!(self.0, self.0, |a| _mm256_srli_epi32::<S>(a)))
    }
    #[inline(always)]
    fn shl<const S: i32>(self) -> Self {
        I(lanewise!(self.0, self.0, |a| _mm256_slli_epi32::<S>(a)))
    }
    /// `if self { a } else { b }` per lane, for masks of all ones or zeros.
    #[inline(always)]
    fn select(self, a: F<N>, b: F<N>) -> F<N> {
        let mut out = b.0;
        for k in 0..N {
            // SAFETY: as above.
            out[k] = unsafe { _mm256_blendv_ps(b.0[k], a.0[k], _mm256_castsi256_ps(self.0[k])) };
        }
        F(out)
    }
    /// All ones where bit `BIT` of the lane is set.
    #[inline(always)]
    fn bit_set(self, bit: u32) -> Self {
        I(lanewise!(self.0, self.0, |a| _mm256_cmpeq_epi32(_mm256_and_si256(a, _mm256_set1_epi32(bit as i32)), _mm256_set1_epi32(bit as i32))))
    }
}

/// `ln` of the portable code (Cephes `logf`, x in (0, 1]), the same operations in the same order.
#[inline(always)]
#[allow(clippy::excessive_precision)]
fn ln<const N: usize>(x: F<N>) -> F<N> {
    let bits = x.to_bits();
    let m = bits.and(0x007f_ffff).or(0x3f00_0000).bitcast_f32();
    let small = m.lt(std::f32::consts::FRAC_1_SQRT_2);
    // e = biased exponent − 126 − [small]: the mask is −1 where small.
    let e = bits.shr::<23>().and(0xff).add(I::splat(126u32.wrapping_neg())).add(small);
    let z = small.select(m + m, m) - 1.0;
    let z2 = z * z;
    let mut p = z * 7.037_683_6e-2 - 1.151_461_1e-1;
    p = p * z + 1.167_699_9e-1;
    p = p * z - 1.242_014_1e-1;
    p = p * z + 1.424_932_3e-1;
    p = p * z - 1.666_805_8e-1;
    p = p * z + 2.000_071_5e-1;
    p = p * z - 2.499_999_4e-1;
    p = p * z + 3.333_333_1e-1;
    p = p * z * z2;
    let ef = e.to_f32();
    let y = p + ef * -2.121_944_4e-4 - z2 * 0.5;
    z + y + ef * 0.693_359_4
}

/// `sin_cos` of the portable code (θ in [0, 2π)), the same operations in the same order:
/// (sin θ, cos θ).
#[inline(always)]
#[allow(clippy::excessive_precision)]
fn sin_cos<const N: usize>(theta: F<N>) -> (F<N>, F<N>) {
    let x = theta - std::f32::consts::PI;
    const ROUND: f32 = 12_582_912.0;
    let t = x * std::f32::consts::FRAC_2_PI + ROUND;
    let j = t - ROUND;
    let q = t.to_bits().and(3);
    let y = x - j * 1.570_312_5 - j * 4.837_512_969_970_703e-4 - j * 7.549_789_954_891_882e-8;
    let y2 = y * y;
    let s = ((y2 * -1.951_529_6e-4 + 8.332_161e-3) * y2 - 1.666_665_5e-1) * y2 * y + y;
    let c = ((y2 * 2.443_315_7e-5 - 1.388_731_6e-3) * y2 + 4.166_664_6e-2) * y2 * y2 - y2 * 0.5 + 1.0;
    // Quadrant q: odd q swaps the roles of s and c; bit 1 of q negates sin x, bit 1 of q + 1
    // negates cos x; then sin θ = −sin x, cos θ = −cos x (sign flips, exact).
    let odd = q.bit_set(1);
    let (a, b) = (odd.select(c, s), odd.select(s, c));
    let sign = I::splat(1 << 31);
    let flip_sin = q.and(2).shl::<30>().xor(sign);
    let flip_cos = q.add(I::splat(1)).and(2).shl::<30>().xor(sign);
    (a.to_bits().xor(flip_sin).bitcast_f32(), b.to_bits().xor(flip_cos).bitcast_f32())
}

/// The Box–Muller pairs of Philox words (w₁, w₂), as the portable `box_muller`: r = √(−2 ln u₁),
/// θ = 2π·u₂; returns (r·cos θ, r·sin θ).
#[inline(always)]
fn box_muller<const N: usize>(w1: I<N>, w2: I<N>) -> (F<N>, F<N>) {
    let u1 = (w1.shr::<1>().to_f32() + 0.5) * (1.0 / 2_147_483_648.0);
    let r = (ln(u1) * -2.0).sqrt();
    let u2 = w2.shr::<8>().to_f32() * (1.0 / 16_777_216.0);
    let (sin, cos) = sin_cos(u2 * std::f32::consts::TAU);
    (r * cos, r * sin)
}

/// Stores eight floats at `out[at..at + 8]`.
#[inline(always)]
fn store(out: &mut [f32; 64], at: usize, v: __m256) {
    assert!(at + 8 <= 64);
    // SAFETY: `at + 8 <= 64` (checked), unaligned store.
    unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(at), v) }
}

/// The layout of the portable `normal_groups_body::<G, HEAD>`: groups g … g + G − 1 into `out`
/// (element 32h + 8q + i from word q of block 8(g + h) + i), or with `HEAD` only elements
/// 0 … 15 of group g.
///
/// # Safety
/// The CPU must have AVX2.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn normal_groups<const G: usize, const HEAD: bool>(key: [u32; 2], counter: u64, tag: u32, g: u64, out: &mut [f32; 64]) {
    const { assert!((G == 1 || G == 2) && (G == 1 || !HEAD), "one or two groups; a head of one group") };
    let (c_lo, c_hi) = (counter as u32, (counter >> 32) as u32);
    let first: [u32; G] = std::array::from_fn(|h| (8 * (g + h as u64)) as u32);
    let words = philox_sets::<G>(first, c_lo, c_hi, tag, key);
    // Chains: words (0, 1) of each set, then words (2, 3) unless `HEAD`.
    if HEAD {
        let (cos, sin) = box_muller::<1>(I([words[0][0]]), I([words[0][1]]));
        store(out, 0, cos.0[0]);
        store(out, 8, sin.0[0]);
    } else if G == 1 {
        let (cos, sin) = box_muller::<2>(I([words[0][0], words[0][2]]), I([words[0][1], words[0][3]]));
        for q in 0..2 {
            store(out, 16 * q, cos.0[q]);
            store(out, 16 * q + 8, sin.0[q]);
        }
    } else {
        let (a, b) = (words[0], words[G - 1]);
        let (cos, sin) = box_muller::<4>(I([a[0], a[2], b[0], b[2]]), I([a[1], a[3], b[1], b[3]]));
        // Chain c = 2h + q' is set h, word pair q': elements 32h + 16q' … (cos) and + 8 (sin).
        for c in 0..4 {
            store(out, 16 * c, cos.0[c]);
            store(out, 16 * c + 8, sin.0[c]);
        }
    }
}

/// [`box_muller`] on one vector of word pairs, for the tests: (r·cos θ, r·sin θ) per lane.
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(test)]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn box_muller_words(w1: [u32; 8], w2: [u32; 8]) -> ([f32; 8], [f32; 8]) {
    // SAFETY: [u32; 8] and __m256i have the same size; any bits are valid for both.
    let load = |w: [u32; 8]| unsafe { std::mem::transmute::<[u32; 8], __m256i>(w) };
    let (cos, sin) = box_muller::<1>(I([load(w1)]), I([load(w2)]));
    // SAFETY: as above, for floats.
    unsafe { (std::mem::transmute::<__m256, [f32; 8]>(cos.0[0]), std::mem::transmute::<__m256, [f32; 8]>(sin.0[0])) }
}
