//! Σᵢ cᵢ·tᵢ + s·ε in one pass over `[n, d]` rows, the normals ε made in place (the fused
//! update of Langevin and re-noising steps, [`crate::NnBackend::combine`]), optionally with the
//! least-squares gradient c·Aᵀ(A·t₀ − y) of a small dense A made row by row in the same pass
//! ([`crate::NnBackend::combine_least_squares`]).

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::least_squares::LeastSquares;
use super::math::simd_fn;
use super::random::normals;
use crate::backend::NoiseDraw;

/// Elements per parallel piece of a row.
const PIECE: usize = 1 << 13;

/// Normals made per call of the generator (a multiple of its 64-value pairs of groups, small
/// enough to stay in the first-level cache).
const RUN: usize = 1 << 10;

thread_local! {
    /// One run of normals. Borrowed only around sequential code (`normals`, `axpy`): a rayon
    /// call inside the borrow could run another piece on this thread and borrow it twice.
    static EPS: std::cell::RefCell<[f32; RUN]> = const { std::cell::RefCell::new([0.0; RUN]) };
}

simd_fn! {
    /// out += c·t over one piece.
    fn axpy(out: &mut [f32], t: &[f32], c: f32) {
        out.iter_mut().zip(t).for_each(|(o, &v)| *o += c * v);
    }
}

simd_fn! {
    /// out = c·t over one piece of not yet written memory (every element is written).
    fn scale_into(out: &mut [MaybeUninit<f32>], t: &[f32], c: f32) {
        out.iter_mut().zip(t).for_each(|(o, &v)| {
            o.write(c * v);
        });
    }
}

/// Σᵢ `coefs[i]`·`terms[i]` (+ c·Aᵀ(A·t₀ − y) for `least_squares`) (+ s·ε for `noise` = (s,
/// draw)) over `n` rows of `d` values, summed left to right. The output is written once by the
/// first term (no zero-filled allocation); the normals are made in runs of [`RUN`] into a
/// buffer of the thread; the residuals A·t₀ − y first, in a pass of their own.
pub fn combine(terms: &[&[f32]], coefs: &[f32], least_squares: Option<LeastSquares<'_>>, noise: Option<(f32, &NoiseDraw)>, n: usize, d: usize) -> Vec<f32> {
    assert!(!terms.is_empty() && terms.len() == coefs.len(), "one coefficient per term");
    assert!(terms.iter().all(|t| t.len() == n * d), "terms of shape [n, d]");
    if let Some((_, draw)) = noise {
        assert_eq!(draw.keys.len(), n, "one noise key per row");
    }
    if let Some(ls) = &least_squares {
        ls.check(n, d);
    }
    let mut out: Vec<f32> = Vec::with_capacity(n * d);
    if n * d == 0 {
        return out;
    }
    // r = A·t₀ − y per row, `[n, m]`.
    let residuals: Vec<f32> = match &least_squares {
        Some(ls) => {
            let mut r = vec![0f32; n * ls.m];
            r.par_chunks_mut(ls.m).enumerate().for_each(|(row, r)| ls.residual(&terms[0][row * d..(row + 1) * d], row, r));
            r
        }
        None => Vec::new(),
    };
    // Piece p of row r: elements r·d + p·PIECE … of the output.
    let fill = |r: usize, p: usize, piece: &mut [MaybeUninit<f32>]| {
        let start = r * d + p * PIECE;
        let end = start + piece.len();
        scale_into(piece, &terms[0][start..end], coefs[0]);
        // SAFETY: `scale_into` wrote every element of the piece, and f32 has no invalid bit
        // patterns; the slice keeps the piece's length and alignment.
        let piece: &mut [f32] = unsafe { &mut *(piece as *mut [MaybeUninit<f32>] as *mut [f32]) };
        for (t, &c) in terms.iter().zip(coefs).skip(1) {
            axpy(piece, &t[start..end], c);
        }
        if let Some(ls) = &least_squares {
            ls.add_adjoint(&residuals[r * ls.m..(r + 1) * ls.m], d, p * PIECE, piece);
        }
        if let Some((s, draw)) = noise {
            // The normals in runs of RUN values, in this thread's buffer (a fresh zeroed
            // array per run would cost ~4 % in the zeroing alone).
            EPS.with_borrow_mut(|eps| {
                for (k, part) in piece.chunks_mut(RUN).enumerate() {
                    let eps = &mut eps[..part.len()];
                    normals(draw.keys[r], draw.counter, draw.tag, p * PIECE + RUN * k, eps);
                    axpy(part, eps, s);
                }
            });
        }
    };
    let spare = &mut out.spare_capacity_mut()[..n * d];
    if d <= PIECE {
        // Short rows: several whole rows per task and no parallel iterator per row (whose
        // overhead dominated at d = 8).
        let rows = PIECE / d;
        spare.par_chunks_mut(rows * d).enumerate().for_each(|(b, block)| {
            for (i, row) in block.chunks_mut(d).enumerate() {
                fill(b * rows + i, 0, row);
            }
        });
    } else {
        spare.par_chunks_mut(d).enumerate().for_each(|(r, row)| {
            row.par_chunks_mut(PIECE).enumerate().for_each(|(p, piece)| fill(r, p, piece));
        });
    }
    // SAFETY: the pieces cover all n·d elements, each written above.
    unsafe { out.set_len(n * d) };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same sums one element at a time, in the same order (c₀t₀, then cᵢtᵢ added, then
    /// c·(Aᵀr)ⱼ, then s·ε), with the whole row's normals drawn by [`normals`] in one call and its
    /// residual r by `LeastSquares::residual` on the whole row.
    fn plain(terms: &[&[f32]], coefs: &[f32], ls: Option<LeastSquares<'_>>, noise: Option<(f32, &NoiseDraw)>, n: usize, d: usize) -> Vec<f32> {
        let mut out = vec![0f32; n * d];
        let mut eps = vec![0f32; d];
        let mut res = [0f32; super::super::least_squares::MAX_ROWS];
        for r in 0..n {
            if let Some((_, draw)) = noise {
                normals(draw.keys[r], draw.counter, draw.tag, 0, &mut eps);
            }
            if let Some(ls) = &ls {
                ls.residual(&terms[0][r * d..(r + 1) * d], r, &mut res);
            }
            for j in 0..d {
                let i = r * d + j;
                let mut v = coefs[0] * terms[0][i];
                for (t, &c) in terms.iter().zip(coefs).skip(1) {
                    v += c * t[i];
                }
                if let Some(ls) = &ls {
                    let mut g = res[0] * ls.a[j];
                    for k in 1..ls.m {
                        g = res[k].mul_add(ls.a[k * d + j], g);
                    }
                    v += ls.c * g;
                }
                if let Some((s, _)) = noise {
                    v += s * eps[j];
                }
                out[i] = v;
            }
        }
        out
    }

    /// Bit for bit the plain sums, with and without noise and the least-squares term (whose
    /// update of a piece starts at its offset in the row), at row lengths below, at and across
    /// the piece and run boundaries, and with short rows over several tasks (the split into
    /// tasks, pieces and runs must not show).
    #[test]
    fn combine_is_the_plain_sum_at_every_split() {
        for &(n, d) in &[(3, 1), (5, 8), (2 * PIECE / 8 + 3, 8), (4, 800), (2, RUN + 17), (2, PIECE), (3, PIECE + 2 * RUN + 5)] {
            let term = |seed: f32| -> Vec<f32> { (0..n * d).map(|i| ((i as f32) * 0.37 + seed).sin()).collect() };
            let (a, b, c) = (term(0.1), term(1.3), term(2.9));
            let terms: [&[f32]; 3] = [&a, &b, &c];
            let coefs = [0.93f32, 0.07, -0.0125];
            let draw = NoiseDraw { keys: (0..n as u32).map(|r| [r, 11]).collect(), counter: 5, tag: 2 };
            let wave = |len: usize, seed: f32| -> Vec<f32> { (0..len).map(|i| ((i as f32) * 0.53 + seed).cos()).collect() };
            let (a, y) = (wave(3 * d, 4.4), wave(3 * n, 5.5));
            let ls = LeastSquares { a: &a, y: &y, m: 3, c: -0.02 };
            for noise in [None, Some((0.3f32, &draw))] {
                for ls in [None, Some(ls)] {
                    let got = combine(&terms, &coefs, ls, noise, n, d);
                    let want = plain(&terms, &coefs, ls, noise, n, d);
                    let (noisy, least) = (noise.is_some(), ls.is_some());
                    assert!(got.iter().zip(&want).all(|(g, w)| g.to_bits() == w.to_bits()), "n = {n}, d = {d}, noise = {noisy}, least squares = {least}");
                }
            }
        }
    }
}
