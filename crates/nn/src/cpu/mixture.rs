//! The score of a Gaussian mixture with a shared diagonal precision, one fused pass per row
//! ([`crate::NnBackend::mixture_score`]), and its vector-Jacobian product.
//!
//! Means are given factored, M = C·V with V `[r, d]` (a basis of their span) and C `[K, r]`
//! (each mean's coordinates), so that a row costs r, not K, products of length d (the MCGdiff
//! mixture's 25 means span r = 2 dimensions). With precision P = diag(p), the scales
//! (s_in, s_out, s_skip) and x′ = s_in·x:
//!
//!   ℓ_k = b_k + Σ_j C_kj·⟨V_j, p ⊙ x′⟩,   ρ = softmax(ℓ),   m = ρᵀC,
//!   out = s_out·p ⊙ (mᵀV − x′) + s_skip·x,
//!
//! where b_k = log w_k − ½ μ_kᵀPμ_k, so that with s_out = 1, s_skip = 0 the output is the score
//! P(Σ_k ρ_k μ_k − x′). Its Jacobian in x′ is J = P·Mᵀ(diag ρ − ρρᵀ)·M·P − P, symmetric, so the
//! vector-Jacobian product of ∂out is, with u = p ⊙ ∂out,
//!
//!   a_k = Σ_j C_kj·⟨V_j, u⟩,   c = ρ ⊙ (a − ρᵀa),   m′ = cᵀC,
//!   ∂x = s_in·s_out·(p ⊙ (m′ᵀV) − u) + s_skip·∂out:
//!
//! the same two sweeps over the row (r projections, then one combination) as the value.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::math::{exp, simd_fn};

/// The constants of one evaluation: V `[r, d]`, C `[K, r]`, p `[d]`, b `[K]`, and the scales.
#[derive(Debug, Clone, Copy)]
pub struct Mixture<'a> {
    /// V, row-major `[r, d]`.
    pub basis: &'a [f32],
    /// C, row-major `[K, r]`.
    pub coords: &'a [f32],
    /// p, the diagonal precision `[d]`.
    pub precision: &'a [f32],
    /// b `[K]`.
    pub bias: &'a [f32],
    /// s_in (the input is scaled by it first).
    pub s_in: f32,
    /// s_out (the score's factor).
    pub s_out: f32,
    /// s_skip (the input's own factor in the output).
    pub s_skip: f32,
}

impl Mixture<'_> {
    fn dim(&self) -> usize {
        self.precision.len()
    }

    fn rank(&self) -> usize {
        self.basis.len() / self.dim().max(1)
    }

    fn components(&self) -> usize {
        self.bias.len()
    }
}

/// Lanes of the partial sums (eight independent accumulators, so that a dot product vectorises).
const LANES: usize = 8;

simd_fn! {
    /// ⟨v, p ⊙ y⟩ in [`LANES`] interleaved partial sums.
    fn weighted_dot(v: &[f32], p: &[f32], y: &[f32]) -> f32 {
        let mut acc = [0f32; LANES];
        let full = v.len() / LANES * LANES;
        for ((vc, pc), yc) in v[..full].chunks_exact(LANES).zip(p[..full].chunks_exact(LANES)).zip(y[..full].chunks_exact(LANES)) {
            for l in 0..LANES {
                acc[l] += vc[l] * (pc[l] * yc[l]);
            }
        }
        let tail: f32 = (full..v.len()).map(|i| v[i] * (p[i] * y[i])).sum();
        acc.iter().sum::<f32>() + tail
    }
}

simd_fn! {
    /// out = α·(p ⊙ (Σ_j m_j·V_j) − β·p ⊙ y) + γ·z over one row (V row-major `[m.len(), d]`),
    /// into not yet written memory: the sum starts from zeros written here, row by row in the
    /// cache, not from a zero-filled allocation (which the allocator fills with a pass of its own
    /// when it reuses memory: 1.6 % of the GMM grid's first replicate in `memset`).
    fn combine_row(m: &[f32], basis: &[f32], p: &[f32], y: &[f32], z: &[f32], alpha: f32, beta: f32, gamma: f32, out: &mut [MaybeUninit<f32>]) {
        let d = out.len();
        out.iter_mut().for_each(|o| {
            o.write(0.0);
        });
        // SAFETY: every element was written just above, and f32 has no invalid bit patterns.
        let out: &mut [f32] = unsafe { &mut *(out as *mut [MaybeUninit<f32>] as *mut [f32]) };
        for (j, &mj) in m.iter().enumerate() {
            for (o, &v) in out.iter_mut().zip(&basis[j * d..(j + 1) * d]) {
                *o += mj * v;
            }
        }
        for i in 0..d {
            out[i] = alpha * (p[i] * out[i] - beta * (p[i] * y[i])) + gamma * z[i];
        }
    }
}

#[cfg(test)]
/// Σ_j C_kj·t_j for every k: C `[K, r]` times t `[r]`, each sum from f32's neutral −0 left to
/// right (as `Iterator::sum`). Rank 2 (the MCGdiff mixture's) is written out: the same
/// operations in the same order, without a loop of two per component.
#[inline(always)]
fn coords_times(coords: &[f32], t: &[f32], out: &mut [f32]) {
    if let [t0, t1] = *t {
        for (o, row) in out.iter_mut().zip(coords.chunks_exact(2)) {
            *o = (-0.0 + row[0] * t0) + row[1] * t1;
        }
        return;
    }
    for (o, row) in out.iter_mut().zip(coords.chunks_exact(t.len().max(1))) {
        *o = row.iter().zip(t).map(|(c, t)| c * t).sum();
    }
}

#[cfg(test)]
/// Σ_k w_k·C_k: w `[K]` times C `[K, r]`, each sum from 0 in k order. Rank 2 written out (the
/// same operations in the same order).
#[inline(always)]
fn times_coords(w: &[f32], coords: &[f32], out: &mut [f32]) {
    if let [o0, o1] = out {
        let (mut a, mut b) = (0f32, 0f32);
        for (&wk, row) in w.iter().zip(coords.chunks_exact(2)) {
            a += wk * row[0];
            b += wk * row[1];
        }
        (*o0, *o1) = (a, b);
        return;
    }
    out.iter_mut().for_each(|o| *o = 0.0);
    for (&wk, row) in w.iter().zip(coords.chunks_exact(out.len().max(1))) {
        for (o, c) in out.iter_mut().zip(row) {
            *o += wk * c;
        }
    }
}

#[cfg(test)]
simd_fn! {
    /// One row's ℓ = b + C·t, ρ = softmax(ℓ) and m = ρᵀC (module documentation): the
    /// definition [`responsibilities_block`] follows per row (tested bit for bit).
    fn responsibilities(coords: &[f32], bias: &[f32], t: &[f32], rho: &mut [f32], m: &mut [f32]) {
        coords_times(coords, t, rho);
        rho.iter_mut().zip(bias).for_each(|(l, b)| *l += b);
        softmax_in_place(rho);
        times_coords(rho, coords, m);
    }
}

#[cfg(test)]
simd_fn! {
    /// One row's a = C·t, c = ρ ⊙ (a − ρᵀa) (in `a`) and m′ = cᵀC of the vector-Jacobian
    /// product (module documentation): the definition [`vjp_block`] follows per row (tested bit
    /// for bit).
    fn vjp_coefficients(coords: &[f32], rho: &[f32], t: &[f32], a: &mut [f32], m: &mut [f32]) {
        coords_times(coords, t, a);
        let mean: f32 = rho.iter().zip(a.iter()).map(|(r, a)| r * a).sum();
        a.iter_mut().zip(rho).for_each(|(ak, r)| *ak = r * (*ak - mean));
        times_coords(a, coords, m);
    }
}

/// Rows whose per-row K-component part is computed together, row i of a block in lane i.
const BLOCK: usize = 8;

/// One block's values per lane: `[len][BLOCK]`.
type Lanes = [f32; BLOCK];

/// ℓ_k = Σ_j C_kj·t_j per lane, each sum from −0 in j order (as `coords_times`).
#[inline(always)]
fn coords_times_block(coords: &[f32], t: &[Lanes], out: &mut [Lanes]) {
    for (o, row) in out.iter_mut().zip(coords.chunks_exact(t.len().max(1))) {
        let mut acc = [-0.0f32; BLOCK];
        for (&c, tj) in row.iter().zip(t) {
            for i in 0..BLOCK {
                acc[i] += c * tj[i];
            }
        }
        *o = acc;
    }
}

/// m_j = Σ_k w_k·C_kj per lane, each sum from 0 in k order (as `times_coords`).
#[inline(always)]
fn times_coords_block(w: &[Lanes], coords: &[f32], out: &mut [Lanes]) {
    let r = out.len();
    for (j, o) in out.iter_mut().enumerate() {
        let mut acc = [0f32; BLOCK];
        for (wk, row) in w.iter().zip(coords.chunks_exact(r.max(1))) {
            for i in 0..BLOCK {
                acc[i] += wk[i] * row[j];
            }
        }
        *o = acc;
    }
}

simd_fn! {
    /// ℓ = b + C·t, ρ = softmax(ℓ) and m = ρᵀC (module documentation) for [`BLOCK`] rows at
    /// once, row i in lane i (t `[r]`, ρ `[K]`, m `[r]` of lanes): per row the operations of the
    /// one-row definition in its order, so the same numbers bit for bit, vectorised across rows
    /// (one row at a time, this part of 25 components was a fifth of the grid's time at d = 8
    /// and 80).
    fn responsibilities_block(coords: &[f32], bias: &[f32], t: &[Lanes], rho: &mut [Lanes], m: &mut [Lanes]) {
        coords_times_block(coords, t, rho);
        for (l, &b) in rho.iter_mut().zip(bias) {
            for v in l.iter_mut() {
                *v += b;
            }
        }
        // Softmax per lane (`softmax_in_place`).
        let mut max = [f32::NEG_INFINITY; BLOCK];
        for l in rho.iter() {
            for i in 0..BLOCK {
                max[i] = max[i].max(l[i]);
            }
        }
        let mut sum = [-0.0f32; BLOCK];
        for l in rho.iter_mut() {
            for i in 0..BLOCK {
                let z = l[i] - max[i];
                l[i] = if z < -87.33 { 0.0 } else { exp(z) };
                sum[i] += l[i];
            }
        }
        for l in rho.iter_mut() {
            for i in 0..BLOCK {
                l[i] /= sum[i];
            }
        }
        times_coords_block(rho, coords, m);
    }
}

simd_fn! {
    /// a = C·t, c = ρ ⊙ (a − ρᵀa) (in `a`) and m′ = cᵀC of the vector-Jacobian product (module
    /// documentation) for [`BLOCK`] rows at once, row i in lane i, per row the one-row
    /// definition's operations in its order (bit for bit).
    fn vjp_block(coords: &[f32], rho: &[Lanes], t: &[Lanes], a: &mut [Lanes], m: &mut [Lanes]) {
        coords_times_block(coords, t, a);
        let mut mean = [-0.0f32; BLOCK];
        for (r, ak) in rho.iter().zip(a.iter()) {
            for i in 0..BLOCK {
                mean[i] += r[i] * ak[i];
            }
        }
        for (ak, r) in a.iter_mut().zip(rho) {
            for i in 0..BLOCK {
                ak[i] = r[i] * (ak[i] - mean[i]);
            }
        }
        times_coords_block(a, coords, m);
    }
}

/// Rows per parallel task: a few thousand values of work per task.
fn rows_per_task(d: usize) -> usize {
    (16_384 / d.max(1)).max(1)
}

/// The value for rows x `[n, d]`: (out `[n, d]`, ρ `[n, K]`) (module documentation).
pub fn forward(x: &[f32], mix: &Mixture<'_>) -> (Vec<f32>, Vec<f32>) {
    let (d, r, k) = (mix.dim(), mix.rank(), mix.components());
    assert_eq!(mix.coords.len(), k * r, "C is K × r");
    let n = x.len() / d.max(1);
    let mut out: Vec<f32> = Vec::with_capacity(n * d);
    let mut resp = vec![0f32; n * k];
    let per = rows_per_task(d);
    out.spare_capacity_mut()[..n * d].par_chunks_mut(per * d).zip(resp.par_chunks_mut(per * k)).zip(x.par_chunks(per * d)).for_each(|((out, resp), x)| {
        let (mut t, mut rho, mut m) = (vec![[0f32; BLOCK]; r], vec![[0f32; BLOCK]; k], vec![[0f32; BLOCK]; r]);
        let mut m_row = vec![0f32; r];
        for ((out, resp), x) in out.chunks_mut(BLOCK * d).zip(resp.chunks_mut(BLOCK * k)).zip(x.chunks(BLOCK * d)) {
            // t_j = ⟨V_j, p ⊙ x′⟩ = s_in·⟨V_j, p ⊙ x⟩ per row (lanes past the last row: 0).
            for (i, xr) in x.chunks_exact(d).enumerate() {
                for (j, tj) in t.iter_mut().enumerate() {
                    tj[i] = mix.s_in * weighted_dot(&mix.basis[j * d..(j + 1) * d], mix.precision, xr);
                }
            }
            for tj in t.iter_mut() {
                tj[x.len() / d..].fill(0.0);
            }
            // ℓ = b + C·t, ρ = softmax(ℓ), m = ρᵀC.
            responsibilities_block(mix.coords, mix.bias, &t, &mut rho, &mut m);
            for (i, ((o, resp), xr)) in out.chunks_exact_mut(d).zip(resp.chunks_exact_mut(k)).zip(x.chunks_exact(d)).enumerate() {
                resp.iter_mut().zip(&rho).for_each(|(v, l)| *v = l[i]);
                m_row.iter_mut().zip(&m).for_each(|(v, l)| *v = l[i]);
                // out = s_out·(p ⊙ mᵀV − p ⊙ x′) + s_skip·x.
                combine_row(&m_row, mix.basis, mix.precision, xr, xr, mix.s_out, mix.s_in, mix.s_skip, o);
            }
        }
    });
    // SAFETY: `combine_row` wrote each of the n rows of d values.
    unsafe { out.set_len(n * d) };
    (out, resp)
}

/// The vector-Jacobian product for rows: ∂x `[n, d]` from ∂out `[n, d]` and the value's ρ
/// `[n, K]` (module documentation).
///
/// On the calling thread only. burn's autodiff runs a backward step while holding its graph's
/// lock; a parallel loop there lets a thread-pool thread pick up another pending task — another
/// chunk of samples whose backward pass then waits on a graph lock this thread holds (a
/// deadlock seen with the GMM benchmark's chunks, which are pool tasks). The chunks are the
/// parallelism.
pub fn backward(grad: &[f32], resp: &[f32], mix: &Mixture<'_>) -> Vec<f32> {
    let (d, r, k) = (mix.dim(), mix.rank(), mix.components());
    let n = grad.len() / d.max(1);
    assert_eq!(resp.len(), n * k, "one ρ row per gradient row");
    let mut dx: Vec<f32> = Vec::with_capacity(n * d);
    let (mut t, mut rho, mut a, mut m) = (vec![[0f32; BLOCK]; r], vec![[0f32; BLOCK]; k], vec![[0f32; BLOCK]; k], vec![[0f32; BLOCK]; r]);
    let mut m_row = vec![0f32; r];
    for ((out, resp), grad) in dx.spare_capacity_mut()[..n * d].chunks_mut(BLOCK * d).zip(resp.chunks(BLOCK * k)).zip(grad.chunks(BLOCK * d)) {
        // a = C·(V·(p ⊙ ∂out)), c = ρ ⊙ (a − ρᵀa), m′ = cᵀC, per row in lanes (lanes past the
        // last row: 0).
        let rows = grad.len() / d;
        for (i, (g, rr)) in grad.chunks_exact(d).zip(resp.chunks_exact(k)).enumerate() {
            for (j, tj) in t.iter_mut().enumerate() {
                tj[i] = weighted_dot(&mix.basis[j * d..(j + 1) * d], mix.precision, g);
            }
            rho.iter_mut().zip(rr).for_each(|(l, &v)| l[i] = v);
        }
        for l in t.iter_mut().chain(rho.iter_mut()) {
            l[rows..].fill(0.0);
        }
        vjp_block(mix.coords, &rho, &t, &mut a, &mut m);
        for (i, (o, g)) in out.chunks_exact_mut(d).zip(grad.chunks_exact(d)).enumerate() {
            m_row.iter_mut().zip(&m).for_each(|(v, l)| *v = l[i]);
            // ∂x = s_in·s_out·(p ⊙ m′ᵀV − p ⊙ ∂out) + s_skip·∂out.
            combine_row(&m_row, mix.basis, mix.precision, g, g, mix.s_in * mix.s_out, 1.0, mix.s_skip, o);
        }
    }
    // SAFETY: `combine_row` wrote each of the n rows of d values.
    unsafe { dx.set_len(n * d) };
    dx
}

#[cfg(test)]
/// Softmax of a short row in place (the K responsibilities; the exponential of
/// [`super::math::exp`], which is 0 for arguments below −87.33).
#[inline(always)]
fn softmax_in_place(l: &mut [f32]) {
    let max = l.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v));
    for v in l.iter_mut() {
        let z = *v - max;
        *v = if z < -87.33 { 0.0 } else { exp(z) };
    }
    let sum: f32 = l.iter().sum();
    l.iter_mut().for_each(|v| *v /= sum);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rank-2 paths of `coords_times` and `times_coords` give the general loops' sums bit
    /// for bit (signed zeros included: −0 products are among the inputs).
    #[test]
    fn rank_two_sums_are_the_general_sums_bit_for_bit() {
        let k = 25;
        let coords: Vec<f32> = (0..2 * k).map(|i| if i % 7 == 3 { -0.0 } else { ((i as f32) * 0.61).sin() * 3.0 }).collect();
        for t in [[0.37f32, -1.9], [-0.0, 0.0], [0.0, -0.0], [1e-30, 4e30]] {
            let mut fast = vec![0f32; k];
            coords_times(&coords, &t, &mut fast);
            let general: Vec<f32> = coords.chunks_exact(2).map(|row| row.iter().zip(&t).map(|(c, t)| c * t).sum()).collect();
            assert!(fast.iter().zip(&general).all(|(a, b)| a.to_bits() == b.to_bits()), "C·t at t = {t:?}");
            let w: Vec<f32> = (0..k).map(|i| t[i % 2] * (i as f32 + 0.5)).collect();
            let mut m = [0f32; 2];
            times_coords(&w, &coords, &mut m);
            let mut want = [0f32; 2];
            for (&wk, row) in w.iter().zip(coords.chunks_exact(2)) {
                for (o, c) in want.iter_mut().zip(row) {
                    *o += wk * c;
                }
            }
            assert_eq!(m.map(f32::to_bits), want.map(f32::to_bits), "wᵀC at t = {t:?}");
        }
    }

    /// The same quantities in f64, straight from the formulas with the means M = C·V expanded.
    fn reference(x: &[f64], mix: &Mixture<'_>) -> (Vec<f64>, Vec<f64>) {
        let (d, r, k) = (mix.dim(), mix.rank(), mix.components());
        let mean = |c: usize, i: usize| (0..r).map(|j| f64::from(mix.coords[c * r + j]) * f64::from(mix.basis[j * d + i])).sum::<f64>();
        let p = |i: usize| f64::from(mix.precision[i]);
        let xs: Vec<f64> = x.iter().map(|v| v * f64::from(mix.s_in)).collect();
        let logits: Vec<f64> = (0..k).map(|c| f64::from(mix.bias[c]) + (0..d).map(|i| mean(c, i) * p(i) * xs[i]).sum::<f64>()).collect();
        let mx = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = logits.iter().map(|l| (l - mx).exp()).collect();
        let s: f64 = e.iter().sum();
        let rho: Vec<f64> = e.iter().map(|v| v / s).collect();
        let out = (0..d)
            .map(|i| {
                let mbar: f64 = (0..k).map(|c| rho[c] * mean(c, i)).sum();
                f64::from(mix.s_out) * p(i) * (mbar - xs[i]) + f64::from(mix.s_skip) * x[i]
            })
            .collect();
        (out, rho)
    }

    struct Case {
        basis: Vec<f32>,
        coords: Vec<f32>,
        precision: Vec<f32>,
        bias: Vec<f32>,
    }

    fn case(d: usize, r: usize, k: usize) -> Case {
        let f = |i: usize, a: usize, b: usize| (((i * a + b) % 97) as f32 / 97.0 - 0.5) * 2.0;
        Case {
            basis: (0..r * d).map(|i| f(i, 31, 7) / (d as f32).sqrt()).collect(),
            coords: (0..k * r).map(|i| 4.0 * f(i, 17, 3)).collect(),
            precision: (0..d).map(|i| 0.5 + 0.4 * f(i, 13, 5)).collect(),
            bias: (0..k).map(|i| f(i, 7, 1)).collect(),
        }
    }

    fn mixture(c: &Case, s_in: f32, s_out: f32, s_skip: f32) -> Mixture<'_> {
        Mixture { basis: &c.basis, coords: &c.coords, precision: &c.precision, bias: &c.bias, s_in, s_out, s_skip }
    }

    #[test]
    fn value_matches_the_formulas_in_f64() {
        // Rows of 37 values (not a multiple of the eight lanes), 5 components in 3 dimensions.
        let (d, r, k, n) = (37, 3, 5, 9);
        let c = case(d, r, k);
        let mix = mixture(&c, 0.8, -1.3, 0.6);
        let x: Vec<f32> = (0..n * d).map(|i| ((i * 53 % 89) as f32 / 89.0 - 0.5) * 6.0).collect();
        let (out, resp) = forward(&x, &mix);
        for row in 0..n {
            let xr: Vec<f64> = x[row * d..(row + 1) * d].iter().map(|&v| f64::from(v)).collect();
            let (want, rho) = reference(&xr, &mix);
            let scale = want.iter().fold(1.0f64, |a, v| a.max(v.abs()));
            for i in 0..d {
                // float32 sums of 37 terms of size ~10: well inside 1e-5 of the row's scale.
                assert!((f64::from(out[row * d + i]) - want[i]).abs() < 1e-5 * scale, "row {row} coordinate {i}");
            }
            for q in 0..k {
                assert!((f64::from(resp[row * k + q]) - rho[q]).abs() < 1e-6, "row {row} ρ_{q}");
            }
        }
    }

    #[test]
    fn vector_jacobian_product_matches_central_differences() {
        // ⟨∂x, e⟩ against (⟨g, out(x + h·e)⟩ − ⟨g, out(x − h·e)⟩)/2h in f64 on the reference.
        let (d, r, k) = (21, 2, 4);
        let c = case(d, r, k);
        let mix = mixture(&c, 1.1, 0.7, 0.4);
        let x: Vec<f32> = (0..d).map(|i| ((i * 29 % 41) as f32 / 41.0 - 0.5) * 3.0).collect();
        let g: Vec<f32> = (0..d).map(|i| ((i * 11 % 23) as f32 / 23.0 - 0.5) * 2.0).collect();
        let (_, resp) = forward(&x, &mix);
        let dx = backward(&g, &resp, &mix);
        let pairing = |x: &[f64]| reference(x, &mix).0.iter().zip(&g).map(|(o, g)| o * f64::from(*g)).sum::<f64>();
        let x64: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
        let h = 1e-5;
        for i in 0..d {
            let (mut up, mut down) = (x64.clone(), x64.clone());
            up[i] += h;
            down[i] -= h;
            let numeric = (pairing(&up) - pairing(&down)) / (2.0 * h);
            // Central differences are exact to O(h²) ≈ 1e-10 here; the kernel is float32.
            assert!((f64::from(dx[i]) - numeric).abs() < 2e-5 * numeric.abs().max(1.0), "coordinate {i}: {} vs {numeric}", dx[i]);
        }
    }

    #[test]
    fn rows_are_independent_of_the_parallel_split() {
        let (d, r, k) = (16, 2, 3);
        let c = case(d, r, k);
        let mix = mixture(&c, 1.0, 1.0, 0.0);
        let x: Vec<f32> = (0..3000 * d).map(|i| ((i * 7 % 101) as f32 / 101.0 - 0.5) * 8.0).collect();
        let (all, _) = forward(&x, &mix);
        let (last, _) = forward(&x[2999 * d..], &mix);
        assert_eq!(&all[2999 * d..], &last[..]);
    }

    /// The block kernels give the one-row definitions' numbers bit for bit, in every lane:
    /// ranks 1–3, 25 components, logits far apart (exponentials cut to 0 below −87.33) and
    /// signed zeros.
    #[test]
    fn block_kernels_are_the_one_row_kernels_bit_for_bit() {
        let k = 25;
        for r in 1..=3 {
            let coords: Vec<f32> = (0..k * r).map(|i| if i % 11 == 5 { -0.0 } else { ((i as f32) * 0.83).sin() * 9.0 }).collect();
            let bias: Vec<f32> = (0..k).map(|i| if i == 3 { -300.0 } else { ((i as f32) * 1.7).cos() * 4.0 }).collect();
            let rows: Vec<Vec<f32>> =
                (0..BLOCK).map(|i| (0..r).map(|j| if (i + j) % 5 == 0 { -0.0 } else { ((i * 3 + j) as f32 * 0.57).sin() * 6.0 }).collect()).collect();
            let t: Vec<Lanes> = (0..r).map(|j| std::array::from_fn(|i| rows[i][j])).collect();
            let (mut rho, mut m) = (vec![[0f32; BLOCK]; k], vec![[0f32; BLOCK]; r]);
            responsibilities_block(&coords, &bias, &t, &mut rho, &mut m);
            let (mut a, mut m2) = (vec![[0f32; BLOCK]; k], vec![[0f32; BLOCK]; r]);
            vjp_block(&coords, &rho, &t, &mut a, &mut m2);
            for (i, row) in rows.iter().enumerate() {
                let (mut rho1, mut m1) = (vec![0f32; k], vec![0f32; r]);
                responsibilities(&coords, &bias, row, &mut rho1, &mut m1);
                let lane = |v: &[Lanes]| v.iter().map(|l| l[i].to_bits()).collect::<Vec<_>>();
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(lane(&rho), bits(&rho1), "ρ, rank {r}, lane {i}");
                assert_eq!(lane(&m), bits(&m1), "m, rank {r}, lane {i}");
                let (mut a1, mut mv) = (vec![0f32; k], vec![0f32; r]);
                vjp_coefficients(&coords, &rho1, row, &mut a1, &mut mv);
                assert_eq!(lane(&a), bits(&a1), "c, rank {r}, lane {i}");
                assert_eq!(lane(&m2), bits(&mv), "m′, rank {r}, lane {i}");
            }
        }
    }
}
