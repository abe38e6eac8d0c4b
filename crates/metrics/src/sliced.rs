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
    let mut a = u.to_vec();
    let mut b = v.to_vec();
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let (n, m) = (a.len(), b.len());
    let mut total = 0.0;
    if n == m {
        for (x, y) in a.iter().zip(&b) {
            total += (x - y).abs().powi(p as i32);
        }
        total /= n as f64;
    } else {
        // Walk the merged breakpoints i/n and j/m of the two quantile functions.
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

/// Projects the rows of `x` (n × d, row-major f64) on every direction: an L × n matrix.
fn project(x: &[f64], d: usize, dirs: &DMatrix<f64>) -> DMatrix<f64> {
    assert_eq!(x.len() % d, 0, "sample buffer is not a multiple of d = {d}");
    let n = x.len() / d;
    let xm = DMatrix::from_row_slice(n, d, x);
    dirs * xm.transpose()
}

fn per_direction(a: &[f64], b: &[f64], d: usize, projections: usize, seed: u64, p: u32) -> Vec<f64> {
    let dirs = directions(d, projections, seed);
    let (pa, pb) = (project(a, d, &dirs), project(b, d, &dirs));
    (0..projections)
        .into_par_iter()
        .map(|k| {
            let ua: Vec<f64> = pa.row(k).iter().copied().collect();
            let ub: Vec<f64> = pb.row(k).iter().copied().collect();
            wasserstein_1d(&ua, &ub, p)
        })
        .collect()
}

/// Mean over `projections` seeded directions of the 1-D W1 distance between the projections of
/// `a` and `b` (both row-major, d columns).
pub fn sliced_w1(a: &[f64], b: &[f64], d: usize, projections: usize, seed: u64) -> f64 {
    let w = per_direction(a, b, d, projections, seed, 1);
    w.iter().sum::<f64>() / w.len() as f64
}

/// Maximum over `projections` seeded directions of the 1-D W2 distance.
pub fn max_sliced_w2(a: &[f64], b: &[f64], d: usize, projections: usize, seed: u64) -> f64 {
    per_direction(a, b, d, projections, seed, 2).into_iter().fold(0.0, f64::max)
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
}
