//! Matrix products x·W with a thin side, row by row: the dense operators of the Gaussian-mixture
//! benchmark (y = x·Aᵀ and Aᵀr = r·A for A `[m, d]` with m ≤ 4 and d up to 800), where a
//! general GEMM spends its time packing and on microkernels mostly empty
//! ([`crate::NnBackend::matmul_thin`]).
//!
//! For x `[n, k]` and W `[k, m]`, each output row is computed on its own, in one fixed order that
//! does not depend on the CPU or the number of threads:
//! - few inputs (k ≤ [`MAX_THIN`]): the row is the combination Σₗ xₗ·W[l, :] of W's rows
//!   ([`super::least_squares::row_combination`]: x₀·W[0, j] rounded, then one fused
//!   multiply-add per further l);
//! - otherwise few outputs (m ≤ [`MAX_THIN`]): each entry is the dot product of the row with a
//!   column of W ([`super::least_squares::dot`]: 32 partial sums, halved pairwise).

use super::least_squares::{dot, row_combination};

/// The widest thin side, inputs k or outputs m per row, that [`matmul_thin`] takes.
pub const MAX_THIN: usize = 32;

/// x `[n, k]` · W `[k, m]` → `[n, m]`, all row-major, for k ≤ [`MAX_THIN`] or m ≤ [`MAX_THIN`]
/// (module documentation for the order of the sums). Panics on other shapes.
///
/// On the calling thread only, as the mixture score's backward pass: it runs inside burn's
/// backward passes (∂x of a product is a product), where autodiff holds its graph's lock, and a
/// parallel loop there lets a thread-pool thread pick up another chunk of samples whose backward
/// pass then waits on that lock (a deadlock the GMM grid hit with a parallel version of this
/// function). The benchmark's chunks are the parallelism.
pub fn matmul_thin(x: &[f32], w: &[f32], n: usize, k: usize, m: usize) -> Vec<f32> {
    assert!(x.len() == n * k && w.len() == k * m, "x [{n}, {k}] and W [{k}, {m}]: {} and {} values", x.len(), w.len());
    assert!(k <= MAX_THIN || m <= MAX_THIN, "a thin product needs k or m ≤ {MAX_THIN}, got x [{n}, {k}] · W [{k}, {m}]");
    let mut out = vec![0f32; n * m];
    if n == 0 || m == 0 || k == 0 {
        // An empty sum is zero.
        return out;
    }
    let rows = out.chunks_exact_mut(m).zip(x.chunks_exact(k));
    if k <= MAX_THIN {
        rows.for_each(|(o_row, x_row)| row_combination(x_row, w, o_row));
    } else {
        // The columns of W as rows, so that each dot product reads contiguous memory.
        let w_t: Vec<f32> = (0..m).flat_map(|j| (0..k).map(move |l| w[l * m + j])).collect();
        for (o_row, x_row) in rows {
            for (j, o) in o_row.iter_mut().enumerate() {
                *o = dot(x_row, &w_t[j * k..(j + 1) * k]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: f32) -> Vec<f32> {
        (0..n).map(|i| ((i as f32) * 0.917 + seed).sin() * (1.0 + (i % 5) as f32)).collect()
    }

    /// Both paths against f64 products. Each entry is a sum of k float32 products of values up
    /// to 5 in magnitude; the row combination rounds k + 1 times in sequence (k ≤ 32: within
    /// ~33·2⁻²⁴ ≈ 2e-6 of the magnitudes), the dot products ~30 times along a path (partial sums
    /// and halvings), so 4e-6 of Σ|xₗ·Wₗⱼ| bounds both with room.
    #[test]
    fn thin_products_match_f64() {
        for (n, k, m) in [(5, 800, 4), (3, 4, 800), (2, 33, 1), (7, 1, 9), (4, 3, 3), (1, 32, 40), (9, 100, 32), (300, 800, 2)] {
            let (x, w) = (values(n * k, 0.2), values(k * m, 1.9));
            let out = matmul_thin(&x, &w, n, k, m);
            for i in 0..n {
                for j in 0..m {
                    let terms = (0..k).map(|l| x[i * k + l] as f64 * w[l * m + j] as f64);
                    let (want, scale) = terms.fold((0.0, 0.0), |(s, a), t| (s + t, a + t.abs()));
                    let got = out[i * m + j] as f64;
                    assert!((got - want).abs() <= 4e-6 * scale, "x [{n}, {k}] · W [{k}, {m}], entry ({i}, {j}): {got} vs {want}");
                }
            }
        }
    }

    /// Empty sums are zero; shapes that are not thin are refused.
    #[test]
    fn edge_shapes() {
        assert_eq!(matmul_thin(&[], &[], 3, 0, 2), vec![0.0; 6]);
        assert!(matmul_thin(&[], &[1.0, 2.0], 0, 1, 2).is_empty());
        assert!(std::panic::catch_unwind(|| matmul_thin(&[0.0; 33 * 33], &[0.0; 33 * 33], 33, 33, 33)).is_err());
    }

    /// A row's entries do not depend on the rows beside it (callers split rows anywhere).
    #[test]
    fn rows_are_independent_of_the_split() {
        let (n, k, m) = (70, 800, 3);
        let (x, w) = (values(n * k, 0.7), values(k * m, 0.1));
        let all = matmul_thin(&x, &w, n, k, m);
        for i in [0, 20, 69] {
            let one = matmul_thin(&x[i * k..(i + 1) * k], &w, 1, k, m);
            assert!(one.iter().zip(&all[i * m..(i + 1) * m]).all(|(a, b)| a.to_bits() == b.to_bits()), "row {i}");
        }
    }
}
