//! GroupNorm with a per-sample, per-channel affine map and an optional SiLU, fused into two
//! passes over the data, with its gradient (CPU, float32 data, float64 statistics).
//!
//! For x of shape `[n, c, h·w]` split into G groups of c/G channels (torch `GroupNorm`):
//!   μ_g = mean(x_g),  σ²_g = mean((x_g − μ_g)²) (biased),  r_g = 1/√(σ²_g + ε),
//!   x̂ = (x − μ_g)·r_g,  z = a[n, c]·x̂ + b[n, c],  y = act(z), act = SiLU or identity.
//! `a`, `b` carry GroupNorm's γ, β and any later per-channel affine map folded in (the ADM
//! scale-shift norm: a = γ(1 + s), b = β(1 + s) + t). Each element is computed as
//! y = act(x·A_c + B_c) with A_c = a·r_g, B_c = b − μ_g·A_c.
//!
//! Gradient, with ∂z = ∂y·act′(z) and per group M = (c/G)·h·w, S₁ = Σ a·∂z, S₂ = Σ a·∂z·x̂:
//!   ∂x = r_g·(a·∂z − S₁/M − x̂·S₂/M),  ∂a[n, c] = Σ_{hw} ∂z·x̂,  ∂b[n, c] = Σ_{hw} ∂z.

use rayon::prelude::*;

use super::math::{silu, silu_grad, simd_fn};

/// The shape of a GroupNorm application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupNormShape {
    /// Samples.
    pub batch: usize,
    /// Channels.
    pub channels: usize,
    /// Positions per channel (h·w).
    pub positions: usize,
    /// Groups G (divides `channels`).
    pub groups: usize,
}

impl GroupNormShape {
    fn group_len(&self) -> usize {
        self.channels / self.groups * self.positions
    }

    fn check(&self, x: &[f32], a: &[f32], b: &[f32]) {
        assert!(self.groups > 0 && self.channels.is_multiple_of(self.groups), "{} channels in {} groups", self.channels, self.groups);
        assert_eq!(x.len(), self.batch * self.channels * self.positions, "input length");
        assert_eq!(a.len(), self.batch * self.channels, "scale length");
        assert_eq!(b.len(), self.batch * self.channels, "shift length");
    }
}

/// Sum of a float32 slice in float64, four independent lanes (vectorisable).
#[inline(always)]
fn sum_f64(v: &[f32], f: impl Fn(f32) -> f64) -> f64 {
    let mut lanes = [0f64; 4];
    let chunks = v.chunks_exact(4);
    let tail: f64 = chunks.remainder().iter().map(|&x| f(x)).sum();
    for c in chunks {
        for k in 0..4 {
            lanes[k] += f(c[k]);
        }
    }
    lanes.iter().sum::<f64>() + tail
}

simd_fn! {
    /// (μ, r) of one group's values (two passes, float64 sums).
    fn group_stats(v: &[f32], eps: f64) -> (f64, f64) {
        let m = v.len() as f64;
        let mean = sum_f64(v, |x| x as f64) / m;
        let var = sum_f64(v, |x| {
            let d = x as f64 - mean;
            d * d
        }) / m;
        (mean, 1.0 / (var + eps).sqrt())
    }
}

/// The forward pass: returns y and the statistics `[n, G, 2]` as (μ_g, r_g) pairs, which the
/// gradient takes back.
pub fn forward(x: &[f32], a: &[f32], b: &[f32], shape: &GroupNormShape, eps: f64, with_silu: bool) -> (Vec<f32>, Vec<f32>) {
    shape.check(x, a, b);
    let len = shape.group_len();
    let cg = shape.channels / shape.groups;
    let mut y = vec![0f32; x.len()];
    let mut stats = vec![0f32; shape.batch * shape.groups * 2];
    if len == 0 {
        return (y, stats);
    }
    y.par_chunks_mut(len).zip(x.par_chunks(len)).zip(stats.par_chunks_mut(2)).enumerate().for_each(|(ng, ((yg, xg), st))| {
        let (mean, r) = group_stats(xg, eps);
        st[0] = mean as f32;
        st[1] = r as f32;
        let first_channel = ng * cg; // n·c + g·cg
        for (k, (yc, xc)) in yg.chunks_mut(shape.positions).zip(xg.chunks(shape.positions)).enumerate() {
            let ch = first_channel + k;
            let scale = a[ch] as f64 * r;
            let (sa, sb) = (scale as f32, (b[ch] as f64 - mean * scale) as f32);
            affine_act(yc, xc, sa, sb, with_silu);
        }
    });
    (y, stats)
}

simd_fn! {
    /// y = act(x·a + b) over one channel.
    fn affine_act(y: &mut [f32], x: &[f32], a: f32, b: f32, with_silu: bool) {
        if with_silu {
            y.iter_mut().zip(x).for_each(|(y, &x)| *y = silu(x * a + b));
        } else {
            y.iter_mut().zip(x).for_each(|(y, &x)| *y = x * a + b);
        }
    }
}

simd_fn! {
    /// Over one channel: overwrites `g` with a·∂z and returns (Σ ∂z, Σ ∂z·x̂).
    fn channel_grad(g: &mut [f32], x: &[f32], dy: &[f32], mean: f32, r: f32, a: f32, b: f32, with_silu: bool) -> (f64, f64) {
        let mut s_dz = [0f32; 8];
        let mut s_dzx = [0f32; 8];
        let n = g.len() / 8 * 8;
        let step = |g: &mut f32, x: f32, dy: f32| -> (f32, f32) {
            let xh = (x - mean) * r;
            let dz = if with_silu { dy * silu_grad(a * xh + b) } else { dy };
            *g = a * dz;
            (dz, dz * xh)
        };
        for ((gc, xc), dc) in g[..n].chunks_exact_mut(8).zip(x[..n].chunks_exact(8)).zip(dy[..n].chunks_exact(8)) {
            for k in 0..8 {
                let (dz, dzx) = step(&mut gc[k], xc[k], dc[k]);
                s_dz[k] += dz;
                s_dzx[k] += dzx;
            }
        }
        let (mut t_dz, mut t_dzx) = (0f64, 0f64);
        for k in n..g.len() {
            let (dz, dzx) = step(&mut g[k], x[k], dy[k]);
            t_dz += dz as f64;
            t_dzx += dzx as f64;
        }
        (s_dz.iter().map(|&v| v as f64).sum::<f64>() + t_dz, s_dzx.iter().map(|&v| v as f64).sum::<f64>() + t_dzx)
    }
}

simd_fn! {
    /// Over one group: ∂x = r·(a·∂z − m₁ − x̂·m₂), with `g` holding a·∂z on entry.
    fn finish_grad(g: &mut [f32], x: &[f32], mean: f32, r: f32, m1: f32, m2: f32) {
        g.iter_mut().zip(x).for_each(|(g, &x)| {
            let xh = (x - mean) * r;
            *g = r * (*g - m1 - xh * m2);
        });
    }
}

/// The gradient of [`forward`] given ∂L/∂y: returns ∂x, and ∂a, ∂b (`[n, c]`) when
/// `affine_grads` is set.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    x: &[f32],
    a: &[f32],
    b: &[f32],
    stats: &[f32],
    dy: &[f32],
    shape: &GroupNormShape,
    with_silu: bool,
    affine_grads: bool,
) -> (Vec<f32>, Option<(Vec<f32>, Vec<f32>)>) {
    shape.check(x, a, b);
    assert_eq!(dy.len(), x.len(), "output gradient length");
    assert_eq!(stats.len(), shape.batch * shape.groups * 2, "statistics length");
    let len = shape.group_len();
    let cg = shape.channels / shape.groups;
    let p = shape.positions;
    let mut dx = vec![0f32; x.len()];
    // Per channel (Σ ∂z·x̂, Σ ∂z), i.e. (∂a, ∂b).
    let mut sums = vec![(0f64, 0f64); shape.batch * shape.channels];
    if len == 0 {
        return (dx, affine_grads.then(|| (vec![0.0; a.len()], vec![0.0; b.len()])));
    }
    dx.par_chunks_mut(len).zip(x.par_chunks(len)).zip(dy.par_chunks(len)).zip(sums.par_chunks_mut(cg)).enumerate().for_each(|(ng, (((gg, xg), dg), sg))| {
        let (mean, r) = (stats[2 * ng], stats[2 * ng + 1]);
        let (mut s1, mut s2) = (0f64, 0f64);
        for (k, ((gc, xc), dc)) in gg.chunks_mut(p).zip(xg.chunks(p)).zip(dg.chunks(p)).enumerate() {
            let ch = ng * cg + k;
            let (sa, sb) = (a[ch], b[ch]);
            let (dz, dzx) = channel_grad(gc, xc, dc, mean, r, sa, sb, with_silu);
            s1 += sa as f64 * dz;
            s2 += sa as f64 * dzx;
            sg[k] = (dzx, dz);
        }
        let m = len as f64;
        let (m1, m2) = ((s1 / m) as f32, (s2 / m) as f32);
        finish_grad(gg, xg, mean, r, m1, m2);
    });
    let affine = affine_grads.then(|| (sums.iter().map(|s| s.0 as f32).collect(), sums.iter().map(|s| s.1 as f32).collect()));
    (dx, affine)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u32, offset: f32) -> Vec<f32> {
        (0..n).map(|i| (((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8) as f32 / (1u32 << 24) as f32) * 2.0 - 1.0 + offset).collect()
    }

    /// The loss L = Σ w·y in f64 straight from the definition (module documentation).
    fn loss(x: &[f64], a: &[f32], b: &[f32], w: &[f32], s: &GroupNormShape, eps: f64, with_silu: bool) -> f64 {
        let len = s.group_len();
        let cg = s.channels / s.groups;
        let mut total = 0.0;
        for (ng, xg) in x.chunks(len).enumerate() {
            let mean = xg.iter().sum::<f64>() / len as f64;
            let var = xg.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / len as f64;
            for (i, v) in xg.iter().enumerate() {
                let ch = ng * cg + i / s.positions;
                let z = a[ch] as f64 * (v - mean) / (var + eps).sqrt() + b[ch] as f64;
                let y = if with_silu { z / (1.0 + (-z).exp()) } else { z };
                total += w[ng * len + i] as f64 * y;
            }
        }
        total
    }

    const SHAPE: GroupNormShape = GroupNormShape { batch: 2, channels: 6, positions: 13, groups: 3 };

    #[test]
    fn forward_matches_the_definition() {
        // y's own formula in f64 (one-hot weights w pick single outputs): 2e-6 absolute on O(1) outputs.
        let s = SHAPE;
        let x = values(s.batch * s.channels * s.positions, 1, 0.3);
        let (a, b) = (values(s.batch * s.channels, 2, 1.0), values(s.batch * s.channels, 3, 0.0));
        let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        for with_silu in [false, true] {
            let (y, _) = forward(&x, &a, &b, &s, 1e-5, with_silu);
            for i in (0..y.len()).step_by(7) {
                let mut w = vec![0f32; y.len()];
                w[i] = 1.0;
                let want = loss(&x64, &a, &b, &w, &s, 1e-5, with_silu);
                assert!((y[i] as f64 - want).abs() < 2e-6, "y[{i}] = {} vs {want}", y[i]);
            }
        }
    }

    #[test]
    fn gradients_match_central_differences() {
        // Central differences of the f64 loss with h = 1e-4 (truncation error O(h²) ≈ 1e-8)
        // against float32 gradients: 1e-4 absolute on O(1) gradients.
        let s = SHAPE;
        let x = values(s.batch * s.channels * s.positions, 7, -0.2);
        let (a, b) = (values(s.batch * s.channels, 8, 1.0), values(s.batch * s.channels, 9, 0.1));
        let w = values(x.len(), 10, 0.0);
        for with_silu in [false, true] {
            let (_, stats) = forward(&x, &a, &b, &s, 1e-5, with_silu);
            let (dx, affine) = backward(&x, &a, &b, &stats, &w, &s, with_silu, true);
            let (da, db) = affine.unwrap();
            let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
            let h = 1e-4;
            for i in (0..x.len()).step_by(5) {
                let (mut xp, mut xm) = (x64.clone(), x64.clone());
                xp[i] += h;
                xm[i] -= h;
                let fd = (loss(&xp, &a, &b, &w, &s, 1e-5, with_silu) - loss(&xm, &a, &b, &w, &s, 1e-5, with_silu)) / (2.0 * h);
                assert!((dx[i] as f64 - fd).abs() < 1e-4, "dx[{i}] = {} vs {fd}", dx[i]);
            }
            for ch in 0..a.len() {
                let fd_a = {
                    let (mut ap, mut am) = (a.clone(), a.clone());
                    ap[ch] += 1e-3;
                    am[ch] -= 1e-3;
                    (loss(&x64, &ap, &b, &w, &s, 1e-5, with_silu) - loss(&x64, &am, &b, &w, &s, 1e-5, with_silu)) / 2e-3
                };
                let fd_b = {
                    let (mut bp, mut bm) = (b.clone(), b.clone());
                    bp[ch] += 1e-3;
                    bm[ch] -= 1e-3;
                    (loss(&x64, &a, &bp, &w, &s, 1e-5, with_silu) - loss(&x64, &a, &bm, &w, &s, 1e-5, with_silu)) / 2e-3
                };
                assert!((da[ch] as f64 - fd_a).abs() < 1e-3, "da[{ch}] = {} vs {fd_a}", da[ch]);
                assert!((db[ch] as f64 - fd_b).abs() < 1e-3, "db[{ch}] = {} vs {fd_b}", db[ch]);
            }
        }
    }
}
