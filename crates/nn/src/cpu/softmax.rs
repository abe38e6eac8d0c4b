//! Softmax over the last dimension, y = e^{x − max x}/Σ e^{x − max x} per row, and its gradient
//! ∂x = y ⊙ (∂y − Σ ∂y ⊙ y) ([`crate::NnBackend::softmax_last`]): the attention weights of the
//! UNets and the autoencoder, with a vectorised exp instead of a library call per element.

use rayon::prelude::*;

use super::math::{exp, simd_fn};

/// Rows per parallel task: enough work per task for rows of a few dozen values.
fn rows_per_task(len: usize) -> usize {
    (4096 / len.max(1)).max(1)
}

/// Lanes of the partial maxima and sums: eight independent accumulators, so that the reductions
/// vectorise (a single float accumulator is a serial chain the compiler may not reorder).
const LANES: usize = 8;

/// Σ f(i) over `0..n` in [`LANES`] interleaved partial sums, added up at the end.
#[inline(always)]
fn lane_sum(n: usize, f: impl Fn(usize) -> f32) -> f32 {
    let mut acc = [0f32; LANES];
    let full = n / LANES * LANES;
    for base in (0..full).step_by(LANES) {
        for (l, a) in acc.iter_mut().enumerate() {
            *a += f(base + l);
        }
    }
    let tail: f32 = (full..n).map(&f).sum();
    acc.iter().sum::<f32>() + tail
}

simd_fn! {
    /// One row: y = e^{x − m}/Σ e^{x − m}, m = max x (torch's order: the exponentials are
    /// divided by their sum).
    fn softmax_row(x: &[f32], y: &mut [f32]) {
        let mut lanes = [f32::NEG_INFINITY; LANES];
        let full = x.len() / LANES * LANES;
        for chunk in x[..full].chunks_exact(LANES) {
            for (l, &v) in lanes.iter_mut().zip(chunk) {
                *l = if v > *l { v } else { *l };
            }
        }
        let m = x[full..].iter().chain(&lanes).fold(f32::NEG_INFINITY, |a, &v| a.max(v));
        // exp clamps its argument at −87.33 (e^x stays a normal float); below that the weight is
        // 0, as e^{x − m} rounds to in float32 (a masked −∞ logit included).
        for (o, &v) in y.iter_mut().zip(x) {
            let d = v - m;
            *o = if d < -87.33 { 0.0 } else { exp(d) };
        }
        let sum = lane_sum(y.len(), |i| y[i]);
        y.iter_mut().for_each(|o| *o /= sum);
    }
}

simd_fn! {
    /// One row of the gradient: ∂x = y ⊙ (∂y − Σ ∂y ⊙ y).
    fn softmax_grad_row(y: &[f32], g: &[f32], dx: &mut [f32]) {
        let dot = lane_sum(y.len(), |i| y[i] * g[i]);
        for ((o, &yv), &gv) in dx.iter_mut().zip(y).zip(g) {
            *o = yv * (gv - dot);
        }
    }
}

/// Softmax over rows of `len` values of `x` (row-major).
pub fn forward(x: &[f32], len: usize) -> Vec<f32> {
    assert!(len > 0 && x.len().is_multiple_of(len), "rows of {len} values");
    let mut y = vec![0f32; x.len()];
    let chunk = rows_per_task(len) * len;
    y.par_chunks_mut(chunk).zip(x.par_chunks(chunk)).for_each(|(yc, xc)| {
        for (yr, xr) in yc.chunks_mut(len).zip(xc.chunks(len)) {
            softmax_row(xr, yr);
        }
    });
    y
}

/// The gradient of [`forward`] with respect to x, from its output `y` and `grad` = ∂L/∂y.
pub fn backward(y: &[f32], grad: &[f32], len: usize) -> Vec<f32> {
    assert!(len > 0 && y.len().is_multiple_of(len) && grad.len() == y.len(), "rows of {len} values");
    let mut dx = vec![0f32; y.len()];
    let chunk = rows_per_task(len) * len;
    dx.par_chunks_mut(chunk).zip(y.par_chunks(chunk)).zip(grad.par_chunks(chunk)).for_each(|((dc, yc), gc)| {
        for ((dr, yr), gr) in dc.chunks_mut(len).zip(yc.chunks(len)).zip(gc.chunks(len)) {
            softmax_grad_row(yr, gr, dr);
        }
    });
    dx
}

#[cfg(test)]
mod tests {
    /// A −∞ logit (a masked position) and one 100 below the row's maximum weigh exactly 0.
    #[test]
    fn masked_and_far_logits_weigh_zero() {
        let y = super::forward(&[0.0, f32::NEG_INFINITY, -100.0, 1.0], 4);
        assert_eq!((y[1], y[2]), (0.0, 0.0));
        assert!((y[0] + y[3] - 1.0).abs() <= 1e-7 && y[3] > y[0]);
    }

    /// Against f64 arithmetic on rows with large and tiny logits: within 1e-6 of the row's
    /// largest weight (the exp's 2 ulp and the float32 sum of a row), and rows summing to 1.
    #[test]
    fn softmax_matches_f64_and_rows_sum_to_one() {
        let len = 37;
        let x: Vec<f32> = (0..len * 5).map(|i| ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * [1.0, 10.0, 80.0, 1e-3, 200.0][i / len]).collect();
        let y = super::forward(&x, len);
        for (r, (xr, yr)) in x.chunks(len).zip(y.chunks(len)).enumerate() {
            let m = xr.iter().fold(f64::NEG_INFINITY, |a, &v| a.max(f64::from(v)));
            let s: f64 = xr.iter().map(|&v| (f64::from(v) - m).exp()).sum();
            let top = yr.iter().fold(0f64, |a, &v| a.max(f64::from(v)));
            for (&xv, &yv) in xr.iter().zip(yr) {
                let want = (f64::from(xv) - m).exp() / s;
                assert!((f64::from(yv) - want).abs() <= 1e-6 * top, "row {r}: {yv} vs {want}");
            }
            let total: f64 = yr.iter().map(|&v| f64::from(v)).sum();
            assert!((total - 1.0).abs() <= 1e-5, "row {r} sums to {total}");
        }
    }

    /// The gradient against central differences of L = Σ w ⊙ softmax(x) in f64.
    #[test]
    fn softmax_gradient_matches_finite_differences() {
        let len = 9;
        let x: Vec<f32> = (0..len * 3).map(|i| ((i * 31 % 17) as f32 - 8.0) * 0.3).collect();
        let w: Vec<f32> = (0..len * 3).map(|i| ((i * 13 % 11) as f32 - 5.0) * 0.2).collect();
        let y = super::forward(&x, len);
        let dx = super::backward(&y, &w, len);
        let loss = |x: &[f64]| -> f64 {
            x.chunks(len)
                .zip(w.chunks(len))
                .map(|(xr, wr)| {
                    let m = xr.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let s: f64 = xr.iter().map(|v| (v - m).exp()).sum();
                    xr.iter().zip(wr).map(|(v, &wv)| f64::from(wv) * (v - m).exp() / s).sum::<f64>()
                })
                .sum()
        };
        let x64: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
        for i in 0..x.len() {
            let (mut up, mut down) = (x64.clone(), x64.clone());
            up[i] += 1e-5;
            down[i] -= 1e-5;
            let fd = (loss(&up) - loss(&down)) / 2e-5;
            assert!((f64::from(dx[i]) - fd).abs() <= 1e-5, "∂x[{i}] = {} vs {fd}", dx[i]);
        }
    }
}
