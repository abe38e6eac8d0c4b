//! Σᵢ cᵢ·tᵢ + s·ε in one pass over `[n, d]` rows, the normals ε made in place (the fused
//! update of Langevin and re-noising steps, [`crate::NnBackend::combine`]).

use rayon::prelude::*;

use super::math::simd_fn;
use super::random::normals;
use crate::backend::NoiseDraw;

/// Elements per parallel piece of a row.
const PIECE: usize = 1 << 13;

simd_fn! {
    /// out += c·t over one piece.
    fn axpy(out: &mut [f32], t: &[f32], c: f32) {
        out.iter_mut().zip(t).for_each(|(o, &v)| *o += c * v);
    }
}

simd_fn! {
    /// out = c·t over one piece.
    fn scale(out: &mut [f32], t: &[f32], c: f32) {
        out.iter_mut().zip(t).for_each(|(o, &v)| *o = c * v);
    }
}

/// Σᵢ `coefs[i]`·`terms[i]` (+ s·ε for `noise` = (s, draw)) over `n` rows of `d` values,
/// summed left to right.
pub fn combine(terms: &[&[f32]], coefs: &[f32], noise: Option<(f32, &NoiseDraw)>, n: usize, d: usize) -> Vec<f32> {
    assert!(!terms.is_empty() && terms.len() == coefs.len(), "one coefficient per term");
    assert!(terms.iter().all(|t| t.len() == n * d), "terms of shape [n, d]");
    if let Some((_, draw)) = noise {
        assert_eq!(draw.keys.len(), n, "one noise key per row");
    }
    let mut out = vec![0f32; n * d];
    if n * d == 0 {
        return out;
    }
    out.par_chunks_mut(d).enumerate().for_each(|(r, row)| {
        row.par_chunks_mut(PIECE).enumerate().for_each(|(p, piece)| {
            let start = r * d + p * PIECE;
            let end = start + piece.len();
            scale(piece, &terms[0][start..end], coefs[0]);
            for (t, &c) in terms.iter().zip(coefs).skip(1) {
                axpy(piece, &t[start..end], c);
            }
            if let Some((s, draw)) = noise {
                // The normals in runs of 64 (two of the generator's groups), on the stack.
                let mut eps = [0f32; 64];
                for (k, part) in piece.chunks_mut(64).enumerate() {
                    normals(draw.keys[r], draw.counter, draw.tag, p * PIECE + 64 * k, &mut eps[..part.len()]);
                    axpy(part, &eps[..part.len()], s);
                }
            }
        });
    });
    out
}
