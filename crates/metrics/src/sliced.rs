//! Sliced Wasserstein distances between two empirical distributions in ℝ^d, as used to score the
//! Gaussian-mixture benchmark (docs/gmm.md):
//! - **sliced W1** (MCGdiff paper, `sliced_wasserstein` of the original script): the mean over L
//!   random unit directions θ (N(0, I) normalised) of the 1-D Wasserstein-1 distance between the
//!   projected samples ⟨θ, x⟩ (`scipy.stats.wasserstein_distance`);
//! - **max-sliced W2** (the authors' benchopt repository): the maximum over the same directions
//!   of the 1-D Wasserstein-2 distance.
//!
//! These are different quantities; tables name the one they report.
//!
//! Directions come from a seeded ChaCha8 stream, so a distance is a deterministic function of
//! (samples, L, seed); compare methods with the same seed to pair their directions.

use nalgebra::DMatrix;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;

/// Which sliced distance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlicedMetric {
    /// Mean over directions of 1-D W1 (the MCGdiff paper's metric).
    MeanW1,
    /// Maximum over directions of 1-D W2.
    MaxW2,
}

/// L random unit directions in ℝ^d, one per row (L × d).
pub fn directions(d: usize, projections: usize, seed: u64) -> DMatrix<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut m = DMatrix::<f64>::zeros(projections, d);
    for i in 0..projections {
        let mut norm = 0.0;
        for j in 0..d {
            let v: f64 = StandardNormal.sample(&mut rng);
            m[(i, j)] = v;
            norm += v * v;
        }
        let norm = norm.sqrt();
        for j in 0..d {
            m[(i, j)] /= norm;
        }
    }
    m
}

/// The 1-D Wasserstein-p distance (p = 1 or 2) between the empirical distributions of `u` and
/// `v` (uniform weights, any sizes): (∫₀¹ |F_u⁻¹(q) − F_v⁻¹(q)|^p dq)^{1/p}, computed exactly on
/// the merged quantile breakpoints. For p = 1 this is `scipy.stats.wasserstein_distance`.
pub fn wasserstein_1d(u: &[f64], v: &[f64], p: u32) -> f64 {
    assert!(!u.is_empty() && !v.is_empty(), "Wasserstein distance of an empty sample");
    wasserstein_1d_sorted(&sorted(u.to_vec()), &sorted(v.to_vec()), p)
}

/// `values` in increasing order (total order of f64).
fn sorted(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_by(f64::total_cmp);
    values
}

/// [`wasserstein_1d`] of two samples already sorted increasingly: the quantile functions are the
/// sorted values, so equal sizes pair them in order, unequal sizes walk the merged breakpoints
/// i/n and j/m.
fn wasserstein_1d_sorted(a: &[f64], b: &[f64], p: u32) -> f64 {
    let (n, m) = (a.len(), b.len());
    let mut total = 0.0;
    if n == m {
        for (x, y) in a.iter().zip(b) {
            total += (x - y).abs().powi(p as i32);
        }
        total /= n as f64;
    } else {
        let (mut i, mut j, mut q) = (0usize, 0usize, 0.0f64);
        while i < n && j < m {
            let next_a = (i + 1) as f64 / n as f64;
            let next_b = (j + 1) as f64 / m as f64;
            let next = next_a.min(next_b);
            total += (next - q) * (a[i] - b[j]).abs().powi(p as i32);
            q = next;
            if next_a <= next {
                i += 1;
            }
            if next_b <= next {
                j += 1;
            }
        }
    }
    total.powf(1.0 / p as f64)
}

/// Projections ⟨θ_l, x_i⟩ of the rows of `x` (row-major `[n, d]`), L × n.
fn project(x: &[f64], d: usize, dirs: &DMatrix<f64>) -> DMatrix<f64> {
    assert_eq!(x.len() % d, 0, "sample buffer is not a multiple of d = {d}");
    let n = x.len() / d;
    let xm = DMatrix::from_row_slice(n, d, x);
    dirs * xm.transpose()
}

/// Both sliced distances of one sample to a reference, over the same directions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlicedDistances {
    /// Mean over directions of the 1-D W1 ([`sliced_w1`]).
    pub w1: f64,
    /// Maximum over directions of the 1-D W2 ([`max_sliced_w2`]).
    pub max_w2: f64,
}

/// A reference sample projected on the L directions of `seed` and sorted along each, once, so
/// that many samples (every method of a benchmark job) are scored against it at the cost of
/// projecting and sorting only themselves. The distances are those of [`sliced_w1`] and
/// [`max_sliced_w2`] with the reference as second argument, bit for bit.
#[derive(Debug, Clone)]
pub struct SlicedReference {
    d: usize,
    dirs: DMatrix<f64>,
    /// Per direction, the sorted projections of the reference.
    sorted: Vec<Vec<f64>>,
}

impl SlicedReference {
    /// Projects `reference` (row-major `[n, d]`, n ≥ 1) on `projections` directions drawn from
    /// `seed` ([`directions`]).
    pub fn new(reference: &[f64], d: usize, projections: usize, seed: u64) -> Self {
        let dirs = directions(d, projections, seed);
        let sorted = sorted_rows(&project(reference, d, &dirs));
        Self { d, dirs, sorted }
    }

    /// The 1-D Wasserstein-p distance of `x` (row-major `[n, d]`) to the reference along every
    /// direction, in direction order.
    pub fn per_direction(&self, x: &[f64], p: u32) -> Vec<f64> {
        let px = sorted_rows(&project(x, self.d, &self.dirs));
        px.par_iter().zip(&self.sorted).map(|(a, b)| wasserstein_1d_sorted(a, b, p)).collect()
    }

    /// Sliced W1 and max-sliced W2 of `x` (row-major `[n, d]`) to the reference, from one
    /// projection and sort of `x`.
    pub fn distances(&self, x: &[f64]) -> SlicedDistances {
        let px = sorted_rows(&project(x, self.d, &self.dirs));
        let (w1, w2): (Vec<f64>, Vec<f64>) =
            px.par_iter().zip(&self.sorted).map(|(a, b)| (wasserstein_1d_sorted(a, b, 1), wasserstein_1d_sorted(a, b, 2))).unzip();
        SlicedDistances { w1: w1.iter().sum::<f64>() / w1.len() as f64, max_w2: w2.into_iter().fold(0.0, f64::max) }
    }
}

/// Each row of `m`, sorted increasingly (in parallel over rows).
fn sorted_rows(m: &DMatrix<f64>) -> Vec<Vec<f64>> {
    assert!(m.ncols() > 0, "Wasserstein distance of an empty sample");
    (0..m.nrows()).into_par_iter().map(|k| sorted(m.row(k).iter().copied().collect())).collect()
}

/// Sliced W1: mean over `projections` random directions (seeded) of the 1-D W1 distance.
pub fn sliced_w1(a: &[f64], b: &[f64], d: usize, projections: usize, seed: u64) -> f64 {
    let w = SlicedReference::new(b, d, projections, seed).per_direction(a, 1);
    w.iter().sum::<f64>() / w.len() as f64
}

/// Max-sliced W2 over the same seeded directions: max over directions of the 1-D W2 distance.
pub fn max_sliced_w2(a: &[f64], b: &[f64], d: usize, projections: usize, seed: u64) -> f64 {
    SlicedReference::new(b, d, projections, seed).per_direction(a, 2).into_iter().fold(0.0, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn w1_of_shifted_samples_is_the_shift() {
        let u: Vec<f64> = (0..100).map(|i| i as f64 * 0.37).collect();
        let v: Vec<f64> = u.iter().map(|x| x + 2.5).collect();
        assert!((wasserstein_1d(&u, &v, 1) - 2.5).abs() < 1e-12);
        assert!((wasserstein_1d(&u, &v, 2) - 2.5).abs() < 1e-12);
    }

    #[test]
    fn w1_unequal_sizes_matches_scipy() {
        // By hand from the quantile functions: q ∈ (0,1/3]: |0−5|, (1/3,1/2]: |1−5|,
        // (1/2,2/3]: |1−6|, (2/3,1]: |3−6|, i.e. 5/3 + 4/6 + 5/6 + 3/3 = 25/6 (scipy agrees:
        // wasserstein_distance([0, 1, 3], [5, 6]) = 4.1667).
        let expect = 5.0 / 3.0 + 4.0 / 6.0 + 5.0 / 6.0 + 3.0 / 3.0;
        assert!((wasserstein_1d(&[0.0, 1.0, 3.0], &[5.0, 6.0], 1) - expect).abs() < 1e-12);
        // Symmetric.
        assert!((wasserstein_1d(&[5.0, 6.0], &[0.0, 1.0, 3.0], 1) - expect).abs() < 1e-12);
    }

    #[test]
    fn sliced_distance_of_a_translation_is_the_mean_projected_shift() {
        // For b = a + δ, every 1-D W1 is |⟨θ, δ⟩|, so the sliced W1 is the mean of |⟨θ, δ⟩|.
        let d = 3;
        let a: Vec<f64> = (0..300).map(|i| ((i * 7919) % 101) as f64 / 10.0).collect();
        let delta = [1.0, -2.0, 0.5];
        let b: Vec<f64> = a.iter().enumerate().map(|(i, x)| x + delta[i % d]).collect();
        let dirs = directions(d, 50, 9);
        let expect: f64 = (0..50).map(|k| (0..d).map(|j| dirs[(k, j)] * delta[j]).sum::<f64>().abs()).sum::<f64>() / 50.0;
        assert!((sliced_w1(&a, &b, d, 50, 9) - expect).abs() < 1e-9);
        assert_eq!(sliced_w1(&a, &a, d, 50, 9), 0.0);
        assert!(max_sliced_w2(&a, &b, d, 50, 9) >= expect);
    }

    #[test]
    fn a_shared_reference_gives_the_per_direction_distances_bit_for_bit() {
        // Expected values computed directly: project both samples on the directions, then the
        // 1-D distance of each pair of projections (`wasserstein_1d` sorts its own copies), mean
        // and max. Unequal sizes (200 vs 150 rows) take the merged-breakpoint path, equal sizes
        // the paired one.
        let (d, l, seed) = (4, 30, 5);
        let r: Vec<f64> = (0..200 * d).map(|i| ((i * 7919) % 103) as f64 / 7.0).collect();
        let dirs = directions(d, l, seed);
        let along = |x: &[f64], k: usize| -> Vec<f64> { x.chunks(d).map(|row| (0..d).map(|j| dirs[(k, j)] * row[j]).sum()).collect() };
        let reference = SlicedReference::new(&r, d, l, seed);
        for n in [200, 150] {
            let x: Vec<f64> = (0..n * d).map(|i| ((i * 104_729) % 97) as f64 / 5.0 - 3.0).collect();
            let w1: Vec<f64> = (0..l).map(|k| wasserstein_1d(&along(&x, k), &along(&r, k), 1)).collect();
            let w2: Vec<f64> = (0..l).map(|k| wasserstein_1d(&along(&x, k), &along(&r, k), 2)).collect();
            let (mean_w1, max_w2) = (w1.iter().sum::<f64>() / l as f64, w2.iter().fold(0.0, |a: f64, b| a.max(*b)));
            let both = reference.distances(&x);
            // The projections are the same products summed in another order (nalgebra's GEMM):
            // equal to 1e-12 relative, not bit for bit; the shared and pairwise paths are.
            assert!((both.w1 - mean_w1).abs() <= 1e-12 * mean_w1 && (both.max_w2 - max_w2).abs() <= 1e-12 * max_w2, "{both:?} vs {mean_w1}, {max_w2}");
            assert_eq!(both.w1.to_bits(), sliced_w1(&x, &r, d, l, seed).to_bits());
            assert_eq!(both.max_w2.to_bits(), max_sliced_w2(&x, &r, d, l, seed).to_bits());
        }
    }
}
