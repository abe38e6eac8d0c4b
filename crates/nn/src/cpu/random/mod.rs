//! Counter-based random numbers: Philox4x32-10 (Salmon, Moraes, Dror & Shaw, "Parallel Random
//! Numbers: As Easy as 1, 2, 3", SC 2011; the generator of cuRAND, JAX and PyTorch's CUDA
//! kernels) and standard normals from it by the Box–Muller transform.
//!
//! A counter-based generator is a keyed bijection of a 128-bit counter: the numbers of draw c of
//! a stream are a function of (key, c, position) only, so any part of a draw can be generated on
//! any thread, in any order, or on a GPU, with the same result. dipbench gives every sample row
//! its own key and numbers its draws (`SampleRng` in `dipbench-operators`).
//!
//! Layout of one draw of `n` standard normals (stream key k, draw counter c, tag t): elements are
//! taken in groups of 32; group g uses the Philox blocks b = 8g + i, i = 0…7, with counter
//! (b, c mod 2³², ⌊c / 2³²⌋, t); element 32g + 8q + i is made from word q of block 8g + i:
//! words (0, 1) give (r·cos θ, r·sin θ) and words (2, 3) the next pair, with
//! r = √(−2 ln u₁), u₁ = (⌊w/2⌋ + ½)·2⁻³¹ ∈ (0, 1), θ = 2π·u₂, u₂ = ⌊w/2⁸⌋·2⁻²⁴ ∈ [0, 1).
//! |z| is at most √(2·31·ln 2) ≈ 6.56 (a truncation of probability below 10⁻¹⁰).
//!
//! The code below is the portable definition; on x86-64 CPUs with AVX2 the groups are made by
//! `avx2`, the same operations in intrinsics, with the same numbers bit for bit (tested).

#[cfg(target_arch = "x86_64")]
mod avx2;

/// Philox4x32 multipliers and Weyl key increments (Random123's PHILOX_M4x32_0/1, PHILOX_W32_0/1).
const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

/// Philox4x32-10 of one counter under one key.
#[inline(always)]
pub fn philox4x32(ctr: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let [mut c0, mut c1, mut c2, mut c3] = ctr;
    let [mut k0, mut k1] = key;
    for _ in 0..10 {
        let p0 = u64::from(M0) * u64::from(c0);
        let p1 = u64::from(M1) * u64::from(c2);
        let (hi0, lo0) = ((p0 >> 32) as u32, p0 as u32);
        let (hi1, lo1) = ((p1 >> 32) as u32, p1 as u32);
        (c0, c1, c2, c3) = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0);
        k0 = k0.wrapping_add(W0);
        k1 = k1.wrapping_add(W1);
    }
    [c0, c1, c2, c3]
}

/// ln x for x in (0, 1], float32, without a library call (Cephes `logf`: x = m·2ᵉ with
/// m ∈ [√½, √2), ln(1 + z) by its degree-9 minimax polynomial). Within 2 ulp of the f64
/// logarithm (tested).
#[inline(always)]
#[allow(clippy::excessive_precision)]
pub fn ln(x: f32) -> f32 {
    let bits = x.to_bits();
    // m in [0.5, 1), moved to [√½, √2) (as selects, so that the function vectorises).
    let m = f32::from_bits((bits & 0x007f_ffff) | 0x3f00_0000);
    let small = m < std::f32::consts::FRAC_1_SQRT_2;
    let e = ((bits >> 23) & 0xff) as i32 - 126 - i32::from(small);
    let z = if small { m + m } else { m } - 1.0;
    let z2 = z * z;
    let p = ((((((((7.037_683_6e-2 * z - 1.151_461_1e-1) * z + 1.167_699_9e-1) * z - 1.242_014_1e-1) * z + 1.424_932_3e-1) * z - 1.666_805_8e-1) * z
        + 2.000_071_5e-1)
        * z
        - 2.499_999_4e-1)
        * z
        + 3.333_333_1e-1)
        * z
        * z2;
    let ef = e as f32;
    // ln 2 split (Cephes): 0.693359375 − 2.12194440e-4.
    let y = p + ef * -2.121_944_4e-4 - 0.5 * z2;
    z + y + ef * 0.693_359_4
}

/// (sin θ, cos θ) for θ in [0, 2π), float32, without a library call: θ − π reduced by the
/// nearest multiple of π/2 (three-part Cody–Waite constant) to [−π/4, π/4], Cephes' `sinf` and
/// `cosf` polynomials there, signs and roles by quadrant. Within 3·10⁻⁷ of the f64 values
/// (tested), mostly from π rounded to float32 in θ − π — a shift of the angle, which is
/// uniform, so it does not change the distribution of the normals.
#[inline(always)]
#[allow(clippy::excessive_precision)]
pub fn sin_cos(theta: f32) -> (f32, f32) {
    // sin θ = −sin(θ − π), cos θ = −cos(θ − π), θ − π ∈ [−π, π).
    let x = theta - std::f32::consts::PI;
    // j = round(x·2/π) by the 1.5·2²³ trick, which also leaves j mod 4 in the low bits (integer
    // conversions of floats would not vectorise).
    const ROUND: f32 = 12_582_912.0;
    let t = x * std::f32::consts::FRAC_2_PI + ROUND;
    let j = t - ROUND;
    let q = t.to_bits() & 3;
    let y = ((x - j * 1.570_312_5) - j * 4.837_512_969_970_703e-4) - j * 7.549_789_954_891_882e-8;
    let y2 = y * y;
    let s = ((-1.951_529_6e-4 * y2 + 8.332_161e-3) * y2 - 1.666_665_5e-1) * y2 * y + y;
    let c = ((2.443_315_7e-5 * y2 - 1.388_731_6e-3) * y2 + 4.166_664_6e-2) * y2 * y2 - 0.5 * y2 + 1.0;
    // Quadrant q = j mod 4: sin(y + qπ/2) = (s, c, −s, −c)[q], cos = (c, −s, −c, s)[q] (as
    // selects, so that the function vectorises).
    let (a, b) = if q & 1 != 0 { (c, s) } else { (s, c) };
    let sin_x = if q & 2 != 0 { -a } else { a };
    let cos_x = if (q + 1) & 2 != 0 { -b } else { b };
    (-sin_x, -cos_x)
}

/// The Box–Muller pairs of Philox words (`w1[p]`, `w2[p]`), p < `n`: r = √(−2 ln u₁) and
/// (sin θ, cos θ), θ = 2π·u₂ (module documentation). Three loops (ln, √, sin/cos), each over all
/// pairs: short independent iterations, which the CPU overlaps better than one long chain per
/// pair (12 % faster; the same numbers). `n` is a constant where this is inlined, so the loops
/// become independent vector chains.
#[inline(always)]
fn box_muller(w1: &[u32; 32], w2: &[u32; 32], n: usize, r: &mut [f32; 32], sin: &mut [f32; 32], cos: &mut [f32; 32]) {
    for p in 0..n {
        let u1 = ((w1[p] >> 1) as i32 as f32 + 0.5) * (1.0 / 2_147_483_648.0);
        r[p] = -2.0 * ln(u1);
    }
    for v in r.iter_mut().take(n) {
        *v = v.sqrt();
    }
    for p in 0..n {
        let u2 = (w2[p] >> 8) as i32 as f32 * (1.0 / 16_777_216.0);
        (sin[p], cos[p]) = sin_cos(std::f32::consts::TAU * u2);
    }
}

/// The `32·G` normals of groups `g … g + G − 1` (G = 1 or 2) of draw (`key`, `counter`, `tag`),
/// in element order, from 16·G Box–Muller pairs ([`box_muller`]); with `HEAD` (and G = 1) only
/// the pairs of words (0, 1), that is elements 0 … 15 of the group, in `out[..16]`.
#[inline(always)]
fn normal_groups_body<const G: usize, const HEAD: bool>(key: [u32; 2], counter: u64, tag: u32, g: u64, out: &mut [f32; 64]) {
    let (c_lo, c_hi) = (counter as u32, (counter >> 32) as u32);
    let half = 8 * G;
    // Pair p < 8G comes from words (0, 1) of block 8g + p, pair 8G + p from words (2, 3).
    let mut w1 = [0u32; 32];
    let mut w2 = [0u32; 32];
    for p in 0..half {
        let w = philox4x32([(8 * g + p as u64) as u32, c_lo, c_hi, tag], key);
        (w1[p], w2[p], w1[half + p], w2[half + p]) = (w[0], w[1], w[2], w[3]);
    }
    let mut r = [0f32; 32];
    let mut sin = [0f32; 32];
    let mut cos = [0f32; 32];
    box_muller(&w1, &w2, if HEAD { half } else { 2 * half }, &mut r, &mut sin, &mut cos);
    // Element 32h + 8q + i (group g + h, block 8(g + h) + i, pair p = 8h + i):
    // q = 0 → r·cos of pair p, q = 1 → r·sin, q = 2 → r·cos of pair 8G + p, q = 3 → r·sin.
    for h in 0..G {
        for i in 0..8 {
            let (a, b) = (8 * h + i, half + 8 * h + i);
            out[32 * h + i] = r[a] * cos[a];
            out[32 * h + 8 + i] = r[a] * sin[a];
            if !HEAD {
                out[32 * h + 16 + i] = r[b] * cos[b];
                out[32 * h + 24 + i] = r[b] * sin[b];
            }
        }
    }
}

/// [`normal_groups_body`] on this CPU: the AVX2 version where the CPU has it (the same numbers,
/// bit for bit), else the portable code.
#[inline(always)]
fn normal_groups_dispatch<const G: usize, const HEAD: bool>(key: [u32; 2], counter: u64, tag: u32, g: u64, out: &mut [f32; 64]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: this CPU has AVX2.
        return unsafe { avx2::normal_groups::<G, HEAD>(key, counter, tag, g, out) };
    }
    normal_groups_body::<G, HEAD>(key, counter, tag, g, out)
}

/// Elements 0 … 15 of group `g` alone, in `out[..16]`: the pairs of words (0, 1) of its eight
/// blocks ([`normal_groups_body`] with `HEAD`, the same arithmetic, so the same numbers), half
/// the Box–Muller work of a group. For draws that end early in a group (d = 8 uses 8 of its
/// 32 values, d = 80 the first 16 of its third group).
fn normal_group_head(key: [u32; 2], counter: u64, tag: u32, g: u64, out: &mut [f32; 64]) {
    normal_groups_dispatch::<1, true>(key, counter, tag, g, out)
}

/// The 64 normals of groups `g` and `g + 1` ([`normal_groups_body`]).
fn normal_groups(key: [u32; 2], counter: u64, tag: u32, g: u64, out: &mut [f32; 64]) {
    normal_groups_dispatch::<2, false>(key, counter, tag, g, out)
}

/// The 32 normals of group `g` alone, in `out[..32]` ([`normal_groups_body`]): half the work
/// of [`normal_groups`] where the range needs only one group of an even–odd pair and reaches
/// its element 16 or beyond.
fn normal_group(key: [u32; 2], counter: u64, tag: u32, g: u64, out: &mut [f32; 64]) {
    normal_groups_dispatch::<1, false>(key, counter, tag, g, out)
}

/// Elements `start .. start + out.len()` of draw (`key`, `counter`, `tag`) of standard normals
/// (module documentation for the layout). Groups are made two at a time, or one where the
/// range needs only one of an even-odd pair, or the first half of one where the range ends
/// there (the same numbers each way).
pub fn normals(key: [u32; 2], counter: u64, tag: u32, start: usize, out: &mut [f32]) {
    let mut buf = [0f32; 64];
    let mut pos = start;
    let end = start + out.len();
    while pos < end {
        let g = pos / 32;
        let both = g.is_multiple_of(2) && end > 32 * (g + 1);
        if both && pos == 32 * g && end - pos >= 64 {
            // A whole pair of groups: made in place.
            let dst: &mut [f32; 64] = (&mut out[pos - start..pos - start + 64]).try_into().expect("64 values");
            normal_groups(key, counter, tag, g as u64, dst);
            pos += 64;
            continue;
        }
        // Values of the group(s) made: both of a pair, one group, or its first 16 elements
        // where the range ends there.
        let made = if both {
            normal_groups(key, counter, tag, g as u64, &mut buf);
            64
        } else if end <= 32 * g + 16 {
            normal_group_head(key, counter, tag, g as u64, &mut buf);
            16
        } else {
            normal_group(key, counter, tag, g as u64, &mut buf);
            32
        };
        let offset = pos - 32 * g;
        let take = (made - offset).min(end - pos);
        out[pos - start..pos - start + take].copy_from_slice(&buf[offset..offset + take]);
        pos += take;
    }
}

/// Draw (`counter`, `tag`) of `d` normals for every row key of `keys`, row-major `[rows, d]`,
/// in parallel over rows and over 32-aligned pieces of long rows (the numbers do not depend on
/// the split).
pub fn fill_normals(keys: &[[u32; 2]], counter: u64, tag: u32, d: usize, out: &mut [f32]) {
    use rayon::prelude::*;
    assert_eq!(out.len(), keys.len() * d, "one row of d values per key");
    if d == 0 {
        return;
    }
    const PIECE: usize = 1 << 14;
    if d <= PIECE {
        // Rows of one piece: no nested parallel iterator per row (its overhead dominates at small d).
        out.par_chunks_mut(d).zip(keys.par_iter()).for_each(|(row, key)| normals(*key, counter, tag, 0, row));
        return;
    }
    out.par_chunks_mut(d).zip(keys.par_iter()).for_each(|(row, key)| {
        row.par_chunks_mut(PIECE).enumerate().for_each(|(p, piece)| normals(*key, counter, tag, p * PIECE, piece));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn philox_reproduces_the_random123_known_answers() {
        // Random123 kat_vectors, philox4x32_10: zero, all-ones and π-digit counter/key.
        assert_eq!(philox4x32([0; 4], [0; 2]), [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]);
        assert_eq!(philox4x32([u32::MAX; 4], [u32::MAX; 2]), [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd]);
        assert_eq!(
            philox4x32([0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344], [0xa409_3822, 0x299f_31d0]),
            [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1]
        );
    }

    #[test]
    fn ln_and_sin_cos_match_f64() {
        let mut worst_ln = 0f64;
        for i in 1..=200_000u32 {
            let x = i as f32 / 200_000.0;
            let exact = (x as f64).ln();
            worst_ln = worst_ln.max((ln(x) as f64 - exact).abs() / exact.abs().max(1e-30));
        }
        for k in [1u32, 2, 3, 1000, 1 << 20] {
            let x = (k as f32) * (1.0 / 2_147_483_648.0);
            let exact = (x as f64).ln();
            worst_ln = worst_ln.max((ln(x) as f64 - exact).abs() / exact.abs());
        }
        // 2 ulp of float32 relative (the zero at x = 1 is matched in absolute terms below).
        assert!(worst_ln < 2.4e-7, "ln: {worst_ln:e}");
        assert!(ln(1.0).abs() < 1e-7);
        let mut worst_trig = 0f64;
        for i in 0..200_000u32 {
            let t = std::f32::consts::TAU * i as f32 / 200_000.0;
            let (s, c) = sin_cos(t);
            let (es, ec) = (t as f64).sin_cos();
            worst_trig = worst_trig.max((s as f64 - es).abs()).max((c as f64 - ec).abs());
        }
        assert!(worst_trig < 3e-7, "sin/cos: {worst_trig:e}");
    }

    #[test]
    fn normals_have_the_moments_and_tails_of_a_standard_normal() {
        // 2²⁰ draws: standard errors 1e-3 (mean), 1.4e-3 (variance), 2.4e-3 (fourth moment / 3);
        // bounds at about 5 standard errors. Tail frequencies beyond 2 and 3 against
        // 2(1 − Φ): 0.0455, 0.0027.
        let n = 1 << 20;
        let mut v = vec![0f32; n];
        normals([7, 11], 3, 0, 0, &mut v);
        let m = v.iter().map(|&x| x as f64).sum::<f64>() / n as f64;
        let var = v.iter().map(|&x| (x as f64 - m).powi(2)).sum::<f64>() / n as f64;
        let kurt = v.iter().map(|&x| (x as f64 - m).powi(4)).sum::<f64>() / n as f64 / (var * var);
        let tail = |t: f32| v.iter().filter(|x| x.abs() > t).count() as f64 / n as f64;
        assert!(m.abs() < 5e-3, "mean {m}");
        assert!((var - 1.0).abs() < 7e-3, "variance {var}");
        assert!((kurt - 3.0).abs() < 0.04, "kurtosis {kurt}");
        assert!((tail(2.0) - 0.0455).abs() < 1.1e-3, "P(|z| > 2) = {}", tail(2.0));
        assert!((tail(3.0) - 0.0027).abs() < 2.6e-4, "P(|z| > 3) = {}", tail(3.0));
        assert!(v.iter().all(|x| x.is_finite() && x.abs() < 6.6));
    }

    #[test]
    fn normals_follow_the_documented_layout() {
        // Known answers from an independent Python implementation of Philox4x32-10 and of the
        // module's layout (element 32g + 8q + i from block 8g + i) and Box–Muller, with u₁ and θ
        // rounded to float32 as here and the rest in f64 (printed to 7 decimals). Our ln and
        // sin/cos are within 2 ulp and 3e-7: 2e-6 absolute. Ranges that start inside a group and
        // cross into the next, and a far one, reach every path of `normals`.
        let (key, counter, tag) = ([0x1234_5678, 0x9abc_def0], (7u64 << 32) | 11, 5);
        let expected: [(usize, [f64; 6]); 4] = [
            (0, [1.8781961, 2.4327344, -0.3822332, -0.6378744, -1.1804251, -0.3496311]),
            (29, [-1.0531971, 1.049041, 0.6550249, 1.4090139, 1.055959, -0.1513969]),
            (64, [0.3015338, 1.9086483, 0.1686066, 0.7683033, -0.3064891, 1.2345366]),
            (990, [-0.1396804, 0.3914741, 1.1761665, -1.1505628, 0.9103336, -0.7360801]),
        ];
        for (start, want) in expected {
            let mut got = [0f32; 6];
            normals(key, counter, tag, start, &mut got);
            for (e, (g, w)) in got.iter().zip(want).enumerate() {
                assert!((f64::from(*g) - w).abs() < 2e-6, "element {}: {g} vs {w}", start + e);
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_avx2_normals_are_the_portable_ones_bit_for_bit() {
        if !std::is_x86_feature_detected!("avx2") {
            eprintln!("this CPU has no AVX2: the portable code is the only one used");
            return;
        }
        // Whole groups, single groups and half groups of many streams, draws, tags and group
        // numbers (counters and group numbers beyond 2³² included), against the portable
        // loops compiled without AVX2.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            state
        };
        for _ in 0..4000 {
            let (a, b, c) = (next(), next(), next());
            let (key, counter, tag, g) = ([a as u32, (a >> 32) as u32], b, c as u32, (c >> 32) % (1 << 30) * 2);
            let run = |portable: &mut [f32; 64], simd: &mut [f32; 64], which: usize| match which {
                0 => {
                    normal_groups_body::<2, false>(key, counter, tag, g, portable);
                    // SAFETY: AVX2 checked above.
                    unsafe { avx2::normal_groups::<2, false>(key, counter, tag, g, simd) }
                }
                1 => {
                    normal_groups_body::<1, false>(key, counter, tag, g, portable);
                    // SAFETY: as above.
                    unsafe { avx2::normal_groups::<1, false>(key, counter, tag, g, simd) }
                }
                _ => {
                    normal_groups_body::<1, true>(key, counter, tag, g, portable);
                    // SAFETY: as above.
                    unsafe { avx2::normal_groups::<1, true>(key, counter, tag, g, simd) }
                }
            };
            for (which, len) in [(0, 64), (1, 32), (2, 16)] {
                let (mut portable, mut simd) = ([0f32; 64], [0f32; 64]);
                run(&mut portable, &mut simd, which);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&portable[..len]), bits(&simd[..len]), "variant {which}, key {key:?}, counter {counter}, tag {tag}, g {g}");
            }
        }
        // The Box–Muller transform alone on words at the ends of their ranges (u₁ at its
        // smallest and largest, θ at 0 and just below 2π, every quadrant boundary) and on a
        // sweep of 2²⁰ pairs.
        let ends = [0u32, 1, 2, 3, 255, 256, 0x7fff_ffff, 0x8000_0000, 0xffff_fffe, u32::MAX, 0x4000_0000, 0xc000_0000, 0x3fff_ff00, 0xbfff_ff00];
        let mut pairs: Vec<(u32, u32)> = ends.iter().flat_map(|&a| ends.iter().map(move |&b| (a, b))).collect();
        pairs.extend((0..1u32 << 20).map(|i| (i.wrapping_mul(0x9e37_79b9), i.wrapping_mul(0x85eb_ca6b) ^ (i << 7))));
        for chunk in pairs.chunks(8) {
            let (mut w1, mut w2) = ([0u32; 32], [0u32; 32]);
            for (p, &(a, b)) in chunk.iter().enumerate() {
                (w1[p], w2[p]) = (a, b);
            }
            let (mut r, mut sin, mut cos) = ([0f32; 32], [0f32; 32], [0f32; 32]);
            box_muller(&w1, &w2, 8, &mut r, &mut sin, &mut cos);
            // SAFETY: AVX2 checked above.
            let (c8, s8) = unsafe { avx2::box_muller_words(w1[..8].try_into().unwrap(), w2[..8].try_into().unwrap()) };
            for p in 0..chunk.len() {
                assert_eq!((r[p] * cos[p]).to_bits(), c8[p].to_bits(), "words {:?}", chunk[p]);
                assert_eq!((r[p] * sin[p]).to_bits(), s8[p].to_bits(), "words {:?}", chunk[p]);
            }
        }
    }

    #[test]
    fn any_slice_of_a_draw_is_the_same_numbers() {
        let mut whole = vec![0f32; 1000];
        normals([1, 2], 5, 0, 0, &mut whole);
        // Every path of `normals`: pairs of groups, single groups, the first half of a group (ranges
        // that end within elements 0…15 of an unpaired group: (0, 8), (0, 16), (40, 5), (64, 16),
        // (999, 1)).
        for (start, len) in [(0, 1), (0, 8), (0, 16), (0, 17), (31, 2), (32, 8), (40, 5), (33, 100), (60, 30), (64, 16), (64, 17), (999, 1), (500, 500)] {
            let mut part = vec![0f32; len];
            normals([1, 2], 5, 0, start, &mut part);
            assert_eq!(&whole[start..start + len], &part[..]);
        }
        let mut other = vec![0f32; 1000];
        normals([1, 2], 6, 0, 0, &mut other);
        assert_ne!(whole, other);
    }
}
