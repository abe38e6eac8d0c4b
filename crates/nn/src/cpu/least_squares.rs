//! The least-squares gradient term c·Aᵀ(A·x − y) of a small dense A, row by row: the residual
//! r = A·x − y of a row (m dot products) and the update out += c·Aᵀr over any run of the row,
//! without the `[n, d]` gradient in memory ([`crate::NnBackend::combine_least_squares`]).
//!
//! The sums have one fixed order, with one fused multiply-add per product (`f32::mul_add` rounds
//! once with or without FMA hardware; without, it is a library call), so the numbers do not
//! depend on the CPU: on x86-64 with AVX2 and FMA the same operations run as intrinsics (tested
//! bit for bit against the portable loops).

/// Most rows of A a [`LeastSquares`] term may have (its residual is kept on the stack).
pub const MAX_ROWS: usize = 32;

/// Partial sums of [`dot`]: four vectors of eight, so that the adds of one dot product overlap.
const LANES: usize = 32;

/// The term c·Aᵀ(A·x − y), the gradient of c·½‖A·x − y‖², for a dense A `[m, d]` with
/// m ≤ [`MAX_ROWS`] (row-major) and y `[n, m]`, or `[1, m]` for one y shared by every row.
#[derive(Debug, Clone, Copy)]
pub struct LeastSquares<'a> {
    /// A, row-major `[m, d]`.
    pub a: &'a [f32],
    /// y, row-major `[n, m]` or `[1, m]`.
    pub y: &'a [f32],
    /// The rows m of A.
    pub m: usize,
    /// The coefficient c.
    pub c: f32,
}

impl LeastSquares<'_> {
    /// Checks the shapes for `n` rows of `d` values; panics naming the one at fault.
    pub fn check(&self, n: usize, d: usize) {
        assert!((1..=MAX_ROWS).contains(&self.m), "A has 1 to {MAX_ROWS} rows, not {}", self.m);
        assert_eq!(self.a.len(), self.m * d, "A of shape [m, d] = [{}, {d}]", self.m);
        assert!(self.y.len() == self.m || self.y.len() == n * self.m, "y of shape [n, m] or [1, m] (m = {}), not {} values", self.m, self.y.len());
    }

    /// The residual r = A·x − y of row `row` (x its values): [`dot`] of x with each row of A,
    /// minus yᵢ, into `r[..m]`.
    pub fn residual(&self, x: &[f32], row: usize, r: &mut [f32]) {
        let d = x.len();
        let y = if self.y.len() == self.m { self.y } else { &self.y[row * self.m..(row + 1) * self.m] };
        for (i, ri) in r.iter_mut().enumerate().take(self.m) {
            *ri = dot(x, &self.a[i * d..(i + 1) * d]) - y[i];
        }
    }

    /// out[j] += c·gⱼ for the elements `offset .. offset + out.len()` of a row of `d` values,
    /// gⱼ = (Aᵀr)ⱼ = Σᵢ rᵢ·A[i, j]: r₀·A[0, j] rounded, then one fused multiply-add per further
    /// i, ascending; c·gⱼ and the add rounded apart (as [`crate::cpu::combine`]'s other terms).
    pub fn add_adjoint(&self, r: &[f32], d: usize, offset: usize, out: &mut [f32]) {
        let r = &r[..self.m];
        assert!(offset + out.len() <= d && self.a.len() == self.m * d, "a run within a row of A [{}, {d}]", self.m);
        adjoint_dispatch::<false>(r, self.a, d, offset, self.c, out)
    }
}

/// out[j] = gⱼ = Σᵢ rᵢ·A[i, j] for every column j of A `[m, d]` (m = `r.len()` ≥ 1, `out` of
/// length d): the combination rᵀA of A's rows, in [`LeastSquares::add_adjoint`]'s order (r₀·A[0, j]
/// rounded, then one fused multiply-add per further i, ascending), written instead of added.
pub fn row_combination(r: &[f32], a: &[f32], out: &mut [f32]) {
    let d = out.len();
    assert!(!r.is_empty() && a.len() == r.len() * d, "rᵀA for r of {} values and A of {} values, {d} columns", r.len(), a.len());
    adjoint_dispatch::<true>(r, a, d, 0, 1.0, out)
}

/// The AVX2/FMA or the portable loop of the adjoint combination: `SET` writes gⱼ, otherwise
/// out[j] += c·gⱼ.
fn adjoint_dispatch<const SET: bool>(r: &[f32], a: &[f32], d: usize, offset: usize, c: f32, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: this CPU has AVX2 and FMA.
        return unsafe { avx2::adjoint::<SET>(r, a, d, offset, c, out) };
    }
    adjoint_portable::<SET>(r, a, d, offset, c, out, 0)
}

/// The adjoint combination in plain loops, from element `from` of `out` on (inlined, so that its
/// `mul_add` is an FMA instruction in the AVX2 version's tail): `SET` writes gⱼ = Σᵢ rᵢ·A[i, j],
/// otherwise out[j] += c·gⱼ with c·gⱼ and the add rounded apart.
#[inline(always)]
fn adjoint_portable<const SET: bool>(r: &[f32], a: &[f32], d: usize, offset: usize, c: f32, out: &mut [f32], from: usize) {
    for (j, o) in out.iter_mut().enumerate().skip(from) {
        let col = offset + j;
        let mut g = r[0] * a[col];
        for (i, &ri) in r.iter().enumerate().skip(1) {
            g = ri.mul_add(a[i * d + col], g);
        }
        if SET {
            *o = g;
        } else {
            *o += c * g;
        }
    }
}

/// Σₖ aₖ·bₖ in a fixed order: 32 partial sums sₗ over k ≡ l (mod 32), one fused multiply-add
/// per element, halved pairwise (sₗ += sₗ₊₁₆ for l < 16, then sₗ += sₗ₊₈, sₗ₊₄, sₗ₊₂, sₗ₊₁ likewise),
/// then the elements past the last multiple of 32, fused, in order.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot of equal lengths");
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: this CPU has AVX2 and FMA.
        return unsafe { avx2::dot(a, b) };
    }
    dot_portable(a, b)
}

/// [`dot`] in plain loops.
fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    let body = a.len() / LANES * LANES;
    let mut s = [0f32; LANES];
    for (ca, cb) in a[..body].chunks_exact(LANES).zip(b[..body].chunks_exact(LANES)) {
        for l in 0..LANES {
            s[l] = ca[l].mul_add(cb[l], s[l]);
        }
    }
    let mut width = LANES / 2;
    while width > 0 {
        for l in 0..width {
            s[l] += s[l + width];
        }
        width /= 2;
    }
    dot_tail(a, b, body, s[0])
}

/// The elements of `a`·`b` from `body` on, added to `total` in order, fused (inlined, so that
/// `mul_add` is an FMA instruction in the AVX2 version).
#[inline(always)]
fn dot_tail(a: &[f32], b: &[f32], body: usize, total: f32) -> f32 {
    a[body..].iter().zip(&b[body..]).fold(total, |t, (x, y)| x.mul_add(*y, t))
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    //! [`super::dot`] and [`super::LeastSquares::add_adjoint`] in AVX2/FMA intrinsics: lane l of
    //! vector v holds partial sum s₈ᵥ₊ₗ, so the portable halving order is: v0 += v2, v1 += v3,
    //! v0 += v1, then the 128-bit halves, then the pairs, then the last two lanes.

    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len(), "dot of equal lengths");
        let body = a.len() / super::LANES * super::LANES;
        let mut s = [_mm256_setzero_ps(); 4];
        for k in (0..body).step_by(super::LANES) {
            for (v, sv) in s.iter_mut().enumerate() {
                // SAFETY: k + 8v + 8 <= body <= len of both (loads of eight in bounds).
                let (x, y) = unsafe { (_mm256_loadu_ps(a.as_ptr().add(k + 8 * v)), _mm256_loadu_ps(b.as_ptr().add(k + 8 * v))) };
                *sv = _mm256_fmadd_ps(x, y, *sv);
            }
        }
        // sₗ += sₗ₊₁₆ (l < 16) is v0 + v2 and v1 + v3; then sₗ += sₗ₊₈ (l < 8) adds the two.
        let s01 = _mm256_add_ps(_mm256_add_ps(s[0], s[2]), _mm256_add_ps(s[1], s[3]));
        let half = _mm_add_ps(_mm256_castps256_ps128(s01), _mm256_extractf128_ps::<1>(s01));
        let pair = _mm_add_ps(half, _mm_movehl_ps(half, half));
        let one = _mm_add_ss(pair, _mm_movehdup_ps(pair));
        super::dot_tail(a, b, body, _mm_cvtss_f32(one))
    }

    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn adjoint<const SET: bool>(r: &[f32], a: &[f32], d: usize, offset: usize, c: f32, out: &mut [f32]) {
        let len = out.len();
        // The loads below rely on this (also checked by the caller).
        assert!(offset + len <= d && a.len() >= r.len() * d, "run within the row and A");
        let body = len / 8 * 8;
        let cv = _mm256_set1_ps(c);
        for j in (0..body).step_by(8) {
            // SAFETY: offset + j + 8 <= offset + len <= d, so every row's load is within A,
            // and j + 8 <= len for `out`.
            unsafe {
                let col = offset + j;
                let mut g = _mm256_mul_ps(_mm256_set1_ps(r[0]), _mm256_loadu_ps(a.as_ptr().add(col)));
                for (i, &ri) in r.iter().enumerate().skip(1) {
                    g = _mm256_fmadd_ps(_mm256_set1_ps(ri), _mm256_loadu_ps(a.as_ptr().add(i * d + col)), g);
                }
                let o = out.as_mut_ptr().add(j);
                if SET {
                    _mm256_storeu_ps(o, g);
                } else {
                    _mm256_storeu_ps(o, _mm256_add_ps(_mm256_loadu_ps(o), _mm256_mul_ps(cv, g)));
                }
            }
        }
        super::adjoint_portable::<SET>(r, a, d, offset, c, out, body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: f32) -> Vec<f32> {
        (0..n).map(|i| ((i as f32) * 0.731 + seed).sin() * (1.0 + (i % 7) as f32)).collect()
    }

    /// The dispatched kernels (AVX2/FMA here where the CPU has them) against the portable loops,
    /// bit for bit, at lengths around the vector and partial-sum widths.
    #[test]
    fn kernels_are_the_portable_loops_bit_for_bit() {
        for len in [0, 1, 7, 8, 31, 32, 33, 63, 64, 100, 800, 1000] {
            let (a, b) = (values(len, 0.3), values(len, 1.7));
            assert_eq!(dot(&a, &b).to_bits(), dot_portable(&a, &b).to_bits(), "dot, length {len}");
        }
        for m in [1, 2, 3, 4, 9] {
            for (d, offset, len) in [(8, 0, 8), (80, 0, 80), (800, 0, 800), (1000, 13, 900), (20, 5, 3)] {
                let (a, r) = (values(m * d, 0.9), values(m, 2.2));
                let mut fast = values(len, 4.1);
                let mut plain = fast.clone();
                LeastSquares { a: &a, y: &[], m, c: -0.37 }.add_adjoint(&r, d, offset, &mut fast);
                adjoint_portable::<false>(&r, &a, d, offset, -0.37, &mut plain, 0);
                assert!(fast.iter().zip(&plain).all(|(f, p)| f.to_bits() == p.to_bits()), "m = {m}, d = {d}, offset = {offset}");
            }
            for d in [1, 7, 8, 9, 80, 803] {
                let (a, r) = (values(m * d, 0.4), values(m, 1.3));
                let (mut fast, mut plain) = (vec![f32::NAN; d], vec![f32::NAN; d]);
                row_combination(&r, &a, &mut fast);
                adjoint_portable::<true>(&r, &a, d, 0, 1.0, &mut plain, 0);
                assert!(fast.iter().zip(&plain).all(|(f, p)| f.to_bits() == p.to_bits()), "rᵀA, m = {m}, d = {d}");
            }
        }
    }

    /// The residual and the adjoint update against f64 sums. The residual: 800 float32 products
    /// of values up to 7 in magnitude, in 32 partial sums of 25 terms, reduced in 5 halvings:
    /// about 30 roundings on a path, each within 2⁻²⁴ ≈ 6e-8 of what it touches, so the worst
    /// case is ~1.8e-6 of Σ|xₖ·aₖ|; rounding errors of random sign add up as a square root, so
    /// 1e-6 is a tolerance for the typical case with room (measured: below 1e-7).
    #[test]
    fn residual_and_adjoint_match_f64() {
        let (n, m, d) = (3, 4, 800);
        let (a, x, y) = (values(m * d, 0.5), values(n * d, 1.1), values(n * m, 2.9));
        let ls = LeastSquares { a: &a, y: &y, m, c: 0.25 };
        ls.check(n, d);
        for row in 0..n {
            let xr = &x[row * d..(row + 1) * d];
            let mut r = [0f32; MAX_ROWS];
            ls.residual(xr, row, &mut r);
            let r64: Vec<f64> = (0..m).map(|i| (0..d).map(|k| xr[k] as f64 * a[i * d + k] as f64).sum::<f64>() - y[row * m + i] as f64).collect();
            for i in 0..m {
                let scale = (0..d).map(|k| (xr[k] as f64 * a[i * d + k] as f64).abs()).sum::<f64>();
                assert!((r[i] as f64 - r64[i]).abs() < 1e-6 * scale, "residual {i} of row {row}: {} vs {}", r[i], r64[i]);
            }
            let mut out = vec![1f32; d];
            ls.add_adjoint(&r[..m], d, 0, &mut out);
            for j in 0..d {
                let g: f64 = (0..m).map(|i| r[i] as f64 * a[i * d + j] as f64).sum();
                let magnitude: f64 = (0..m).map(|i| (r[i] as f64 * a[i * d + j] as f64).abs()).sum();
                let want = 1.0 + 0.25 * g;
                // m + 2 roundings, each within 2⁻²⁴ ≈ 6e-8 of what it touches: 1e-6 of the
                // magnitudes involved (the products can cancel, so not of the result alone).
                let tol = 1e-6 * (1.0 + 0.25 * magnitude + want.abs());
                assert!((out[j] as f64 - want).abs() < tol, "element {j}: {} vs {want}", out[j]);
            }
        }
    }
}
