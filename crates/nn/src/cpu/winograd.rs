//! 3×3 stride-1 same convolutions by Winograd's minimal filtering F(2×2, 3×3) (Lavin & Gray,
//! "Fast Algorithms for Convolutional Neural Networks", CVPR 2016): each 2×2 block of outputs
//! costs 16 multiplications per (input, output) channel pair instead of 36, so the matrix
//! products shrink 2.25×.
//!
//! For a 4×4 input tile d (padded input rows 2a…2a+3, columns 2b…2b+3) and a 3×3 kernel g,
//!   Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A,
//! with Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1], G = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1],
//! Aᵀ = [1 1 1 0; 0 1 −1 −1]. Summed over input channels, the 16 element-wise products become
//! 16 matrix products M_ξ = U_ξ·V_ξ (U = the transformed weights, out × in; V = the transformed
//! tiles, in × tiles). The transforms only add and halve, so the result differs from the direct
//! sum by a few float32 roundings (tested against the direct sum at 1e-5 of the output scale).
//! Tiles are processed in chunks of whole tile rows, each on one thread, so that the
//! transformed tiles stay in cache between the three stages.

use gemm::{Parallelism, gemm};
use rayon::prelude::*;

use super::conv::{Direction, SameConv};
use super::math::simd_fn;

/// Tiles per chunk (rounded to whole tile rows): the transformed tiles of a chunk, 16 × channels
/// × tiles floats, then stay in cache (128 measured faster than 256 and 512 on 2 cores).
const CHUNK_TILES: usize = 128;

/// Transformed weights U_ξ = (G g Gᵀ)_ξ for ξ = 4p + q, stored per ξ as a column-major
/// (dst × src) matrix: element (m, k) at ξ·src·dst + k·dst + m.
fn transform_weights(weight: &[f32], conv: &SameConv, direction: Direction) -> Vec<f32> {
    let (cin, cout) = (conv.in_channels, conv.out_channels);
    let (src, dst) = match direction {
        Direction::Forward => (cin, cout),
        Direction::InputGrad => (cout, cin),
    };
    let mut u = vec![0f32; 16 * src * dst];
    let stride = src * dst;
    let mut per_pair = vec![[0f32; 16]; src * dst];
    per_pair.par_iter_mut().enumerate().for_each(|(idx, out)| {
        let (k, m) = (idx / dst, idx % dst);
        // g(i, j): the kernel applied from source channel k to destination channel m.
        let g = |i: usize, j: usize| match direction {
            Direction::Forward => weight[((m * cin + k) * 3 + i) * 3 + j],
            Direction::InputGrad => weight[((k * cin + m) * 3 + (2 - i)) * 3 + (2 - j)],
        };
        // t = G g (4×3), then u = t Gᵀ (4×4).
        let mut t = [[0f32; 3]; 4];
        for j in 0..3 {
            let (g0, g1, g2) = (g(0, j), g(1, j), g(2, j));
            t[0][j] = g0;
            t[1][j] = 0.5 * (g0 + g1 + g2);
            t[2][j] = 0.5 * (g0 - g1 + g2);
            t[3][j] = g2;
        }
        for p in 0..4 {
            let [a, b, c] = t[p];
            out[4 * p] = a;
            out[4 * p + 1] = 0.5 * (a + b + c);
            out[4 * p + 2] = 0.5 * (a - b + c);
            out[4 * p + 3] = c;
        }
    });
    for (idx, vals) in per_pair.iter().enumerate() {
        for (xi, v) in vals.iter().enumerate() {
            u[xi * stride + idx] = *v;
        }
    }
    u
}

simd_fn! {
    /// Bᵀ d B for the `n` tiles of one tile row of one channel. `rows` are the tile row's four
    /// padded input rows (tile b covers columns 2b…2b+3); element ξ of tile b goes to
    /// `v[ξ·stride + b]`. Rows first (r = Bᵀ d, over whole rows), then columns split into even
    /// and odd ones, so that every loop runs over contiguous memory.
    fn input_transform(rows: [&[f32]; 4], n: usize, v: &mut [f32], stride: usize, scratch: &mut [f32]) {
        let len = 2 * n + 2;
        let (r, eo) = scratch.split_at_mut(4 * len);
        let (even, odd) = eo.split_at_mut(n + 1);
        let [d0, d1, d2, d3] = rows;
        for c in 0..len {
            r[c] = d0[c] - d2[c];
            r[len + c] = d1[c] + d2[c];
            r[2 * len + c] = d2[c] - d1[c];
            r[3 * len + c] = d1[c] - d3[c];
        }
        for p in 0..4 {
            let rp = &r[p * len..(p + 1) * len];
            for b in 0..=n {
                even[b] = rp[2 * b];
                odd[b] = rp[2 * b + 1];
            }
            let base = 4 * p * stride;
            for b in 0..n {
                v[base + b] = even[b] - even[b + 1];
                v[base + stride + b] = odd[b] + even[b + 1];
                v[base + 2 * stride + b] = even[b + 1] - odd[b];
                v[base + 3 * stride + b] = odd[b] - odd[b + 1];
            }
        }
    }
}

simd_fn! {
    /// Aᵀ M A for the `n` tiles of one tile row of one output channel: `m` holds element ξ of
    /// tile b at `m[ξ·stride + b]`; writes the two output rows (2n values each, `bias` added)
    /// to `top` and `bottom`.
    fn output_transform(m: &[f32], stride: usize, n: usize, bias: f32, top: &mut [f32], bottom: &mut [f32]) {
        let e = |xi: usize, b: usize| m[xi * stride + b];
        for b in 0..n {
            // s_i(q) of (Aᵀ M), for q = 0..3.
            let s0 = [e(0, b) + e(4, b) + e(8, b), e(1, b) + e(5, b) + e(9, b), e(2, b) + e(6, b) + e(10, b), e(3, b) + e(7, b) + e(11, b)];
            let s1 = [e(4, b) - e(8, b) - e(12, b), e(5, b) - e(9, b) - e(13, b), e(6, b) - e(10, b) - e(14, b), e(7, b) - e(11, b) - e(15, b)];
            top[2 * b] = s0[0] + s0[1] + s0[2] + bias;
            top[2 * b + 1] = s0[1] - s0[2] - s0[3] + bias;
            bottom[2 * b] = s1[0] + s1[1] + s1[2] + bias;
            bottom[2 * b + 1] = s1[1] - s1[2] - s1[3] + bias;
        }
    }
}

/// A pointer shared by the chunks, which write disjoint output pixels.
struct SharedOut(*mut f32);
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

/// The convolution of `x` (NCHW) with the 3×3 `weight` in `direction` (see
/// [`super::conv::conv_same`], which this computes differently), plus `bias` (forward only).
pub fn conv3x3_winograd(x: &[f32], weight: &[f32], bias: Option<&[f32]>, conv: &SameConv, direction: Direction) -> Vec<f32> {
    let SameConv { batch, in_channels: cin, out_channels: cout, height: h, width: w, kernel } = *conv;
    assert_eq!(kernel, [3, 3], "Winograd F(2×2, 3×3) is for 3×3 kernels");
    let (src, dst) = match direction {
        Direction::Forward => (cin, cout),
        Direction::InputGrad => (cout, cin),
    };
    assert_eq!(x.len(), batch * src * h * w, "input length");
    assert_eq!(weight.len(), cout * cin * 9, "weight length");
    let hw = h * w;
    let mut out = vec![0f32; batch * dst * hw];
    if out.is_empty() {
        return out;
    }
    let u = transform_weights(weight, conv, direction);
    // Tiles cover ⌈H/2⌉ × ⌈W/2⌉ output blocks; the padded input has a zero border of 1 and one
    // more zero row/column when a side is odd.
    let (th, tw) = (h.div_ceil(2), w.div_ceil(2));
    let (hp, wp) = (2 * th + 2, 2 * tw + 2);
    let plane = hp * wp;
    let rows_per_chunk = (CHUNK_TILES / tw).max(1);
    let mut xpad = vec![0f32; src * plane];
    for b in 0..batch {
        let image = &x[b * src * hw..(b + 1) * src * hw];
        xpad.par_chunks_mut(plane).zip(image.par_chunks(hw)).for_each(|(padded, channel)| {
            for (r, row) in channel.chunks(w).enumerate() {
                let start = (r + 1) * wp + 1;
                padded[start..start + w].copy_from_slice(row);
            }
        });
        let out_ptr = SharedOut(out[b * dst * hw..].as_mut_ptr());
        let chunks: Vec<usize> = (0..th).step_by(rows_per_chunk).collect();
        chunks.par_iter().for_each_init(
            || (Vec::<f32>::new(), Vec::<f32>::new(), Vec::<f32>::new()),
            |(v, m, scratch), &a0| {
                let out_ptr = &out_ptr;
                let a1 = (a0 + rows_per_chunk).min(th);
                let tiles = (a1 - a0) * tw;
                v.resize(16 * src * tiles, 0.0);
                m.resize(16 * dst * tiles, 0.0);
                scratch.resize(4 * wp + 2 * tw + 2 + 4 * tw, 0.0);
                // V[ξ][k][t], t = (a − a0)·tw + b.
                for k in 0..src {
                    let padded = &xpad[k * plane..(k + 1) * plane];
                    for a in a0..a1 {
                        let row = |i: usize| &padded[(2 * a + i) * wp..(2 * a + i + 1) * wp];
                        let offset = k * tiles + (a - a0) * tw;
                        input_transform([row(0), row(1), row(2), row(3)], tw, &mut v[offset..], src * tiles, scratch);
                    }
                }
                // M_ξ = U_ξ · V_ξ.
                for xi in 0..16 {
                    // SAFETY: the three matrices lie inside `u`, `v` and `m` (sizes above).
                    unsafe {
                        gemm(
                            dst,
                            tiles,
                            src,
                            m.as_mut_ptr().add(xi * dst * tiles),
                            1,
                            tiles as isize,
                            false,
                            u.as_ptr().add(xi * src * dst),
                            dst as isize,
                            1,
                            v.as_ptr().add(xi * src * tiles),
                            1,
                            tiles as isize,
                            0.0,
                            1.0,
                            false,
                            false,
                            false,
                            Parallelism::None,
                        );
                    }
                }
                // Y = Aᵀ M A per tile, plus the bias; the rows (and the last column) beyond an
                // odd image side are dropped.
                let (top, bottom) = scratch[..4 * tw].split_at_mut(2 * tw);
                for o in 0..dst {
                    let bias_o = bias.map_or(0.0, |bias| bias[o]);
                    for a in a0..a1 {
                        let first = o * tiles + (a - a0) * tw;
                        output_transform(&m[first..], dst * tiles, tw, bias_o, top, bottom);
                        for (i, row) in [&*top, &*bottom].into_iter().enumerate() {
                            let r = 2 * a + i;
                            if r < h {
                                // SAFETY: row r of channel o is inside image b's output, and each
                                // output row belongs to exactly one chunk.
                                unsafe { std::ptr::copy_nonoverlapping(row.as_ptr(), out_ptr.0.add((o * h + r) * w), w) };
                            }
                        }
                    }
                }
            },
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::conv::conv_same;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n).map(|i| (((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8) as f32 / (1u32 << 24) as f32) - 0.5).collect()
    }

    #[test]
    fn winograd_equals_the_direct_convolution_in_both_directions() {
        // Against the 9-product direct path (itself tested against the exact sum): float32
        // roundings of the transforms only, 1e-5 of the output scale. Odd and even sides, one
        // and several chunks.
        for (batch, cin, cout, h, w) in [(2, 5, 7, 9, 6), (1, 3, 4, 5, 11), (1, 8, 6, 40, 34), (2, 2, 3, 1, 1)] {
            let conv = SameConv { batch, in_channels: cin, out_channels: cout, height: h, width: w, kernel: [3, 3] };
            let wt = values(cout * cin * 9, 2);
            let bias = values(cout, 3);
            let x = values(batch * cin * h * w, 1);
            let g = values(batch * cout * h * w, 4);
            for (dir, input, b) in [(Direction::Forward, &x, Some(&bias[..])), (Direction::InputGrad, &g, None)] {
                let fast = conv3x3_winograd(input, &wt, b, &conv, dir);
                let direct = conv_same(input, &wt, b, &conv, dir);
                let scale = direct.iter().fold(0f32, |s, v| s.max(v.abs()));
                let err = fast.iter().zip(&direct).fold(0f32, |s, (a, b)| s.max((a - b).abs()));
                assert!(err <= 1e-5 * scale, "{conv:?} {dir:?}: {err} vs scale {scale}");
            }
        }
    }
}
