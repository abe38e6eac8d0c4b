//! Motion-blur kernels as the `motionblur` package draws them (LeviBorodenko/motionblur @ 5781378,
//! `Kernel(size, intensity).kernelMatrix`; docs/protocols.md §1.5), with dipbench's RNG.
//!
//! On a 2×-supersampled grid of diagonal D:
//! 1. path length MAX = 0.75·D·(U(0,1) + U(0, I²)); steps beta(1, 30)·(1 − I + 0.1)·D drawn until
//!    they sum past MAX (a step ≥ MAX is redrawn);
//! 2. max angle U(0, I·π), jitter beta(2, 20); first angle U(−max, max); the next ones
//!    triangular(0, I·max, max + 0.1) with the previous angle's sign, flipped with probability
//!    jitter;
//! 3. path = cumulative sum of the complex increments, centred on its centre of mass, rotated by
//!    U(0, π), moved to the grid centre;
//! 4. drawn as a polyline of width int(D/150), blurred with a Gaussian of radius int(0.01·D),
//!    downsampled ×2 with Lanczos-3, normalised to sum 1.
//!
//! The reference's kernels come from NumPy's global MT19937 and Pillow's rasteriser, box-blur
//! approximation of the Gaussian and LANCZOS filter, so they cannot be reproduced bit for bit:
//! dipbench follows the same distribution over paths with its own RNG, a Bresenham polyline, an
//! exact Gaussian and a separable Lanczos-3. To reproduce a paper's exact kernels, load them from
//! a file (the fixtures ship the reference's kernels for seeds 0–2 and the DAPS protocol).

use rand::RngExt;
use rand_distr::{Beta, Distribution, Triangular};

use crate::noise::SampleRng;

/// A square motion-blur kernel of side `size` and intensity `intensity` ∈ [0, 1], row-major,
/// non-negative, summing to 1.
pub fn motion_kernel(size: usize, intensity: f64, rng: &mut SampleRng) -> Vec<f32> {
    assert!((0.0..=1.0).contains(&intensity), "intensity must be in [0, 1]");
    let big = 2 * size;
    let diag = ((2 * big * big) as f64).sqrt();
    let eps = 0.1;
    let r = rng.row_mut(0);
    // 1. Steps.
    let max_len = 0.75 * diag * (r.random::<f64>() + r.random::<f64>() * intensity * intensity);
    let step_dist = Beta::new(1.0, 30.0).expect("valid beta");
    let mut steps: Vec<f64> = vec![];
    while steps.iter().sum::<f64>() < max_len {
        let s = step_dist.sample(r) * (1.0 - intensity + eps) * diag;
        if s < max_len {
            steps.push(s);
        }
    }
    // 2. Angles.
    let max_angle = r.random::<f64>() * intensity * std::f64::consts::PI;
    let jitter: f64 = Beta::new(2.0, 20.0).expect("valid beta").sample(r);
    let mut angles = vec![-max_angle + 2.0 * max_angle * r.random::<f64>()];
    let tri = Triangular::new(0.0, max_angle + eps, intensity * max_angle).expect("valid triangular");
    while angles.len() < steps.len() {
        let a = tri.sample(r);
        let sign = angles.last().copied().unwrap_or(0.0).signum();
        angles.push(if r.random::<f64>() < jitter { -sign * a } else { sign * a });
    }
    // 3. Path.
    let mut path: Vec<(f64, f64)> = Vec::with_capacity(steps.len());
    let (mut x, mut y) = (0.0, 0.0);
    for (s, a) in steps.iter().zip(&angles) {
        x += s * a.cos();
        y += s * a.sin();
        path.push((x, y));
    }
    let n = path.len() as f64;
    let (cx, cy) = (path.iter().map(|p| p.0).sum::<f64>() / n, path.iter().map(|p| p.1).sum::<f64>() / n);
    let rot = r.random::<f64>() * std::f64::consts::PI;
    let (c, s) = (rot.cos(), rot.sin());
    let centre = big as f64 / 2.0;
    let path: Vec<(f64, f64)> = path.iter().map(|(x, y)| (x - cx, y - cy)).map(|(x, y)| (x * c - y * s + centre, x * s + y * c + centre)).collect();
    // 4. Raster, blur, downsample, normalise.
    let mut canvas = vec![0f64; big * big];
    for w in path.windows(2) {
        draw_line(&mut canvas, big, w[0], w[1]);
    }
    if path.len() == 1 {
        draw_line(&mut canvas, big, path[0], path[0]);
    }
    let radius = (0.01 * diag) as usize;
    let blurred = if radius > 0 { gaussian_blur(&canvas, big, radius as f64) } else { canvas };
    let small = lanczos_half(&blurred, big);
    let total: f64 = small.iter().sum();
    small.iter().map(|v| if total > 0.0 { (v / total) as f32 } else { 0.0 }).collect()
}

/// Bresenham line of value 1 between two points (rounded to pixels), clipped to the canvas.
fn draw_line(canvas: &mut [f64], side: usize, a: (f64, f64), b: (f64, f64)) {
    let (mut x0, mut y0) = (a.0.round() as i64, a.1.round() as i64);
    let (x1, y1) = (b.0.round() as i64, b.1.round() as i64);
    let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
    let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
    let mut err = dx + dy;
    loop {
        if (0..side as i64).contains(&x0) && (0..side as i64).contains(&y0) {
            canvas[y0 as usize * side + x0 as usize] = 1.0;
        }
        if x0 == x1 && y0 == y1 {
            break;
        }
        let e2 = 2 * err;
        if e2 >= dy {
            err += dy;
            x0 += sx;
        }
        if e2 <= dx {
            err += dx;
            y0 += sy;
        }
    }
}

/// Separable Gaussian blur of standard deviation `sigma` (truncated at 3σ, zero boundary).
fn gaussian_blur(img: &[f64], side: usize, sigma: f64) -> Vec<f64> {
    let r = (3.0 * sigma).ceil() as i64;
    let w: Vec<f64> = (-r..=r).map(|i| (-(i * i) as f64 / (2.0 * sigma * sigma)).exp()).collect();
    let s: f64 = w.iter().sum();
    let w: Vec<f64> = w.into_iter().map(|v| v / s).collect();
    let pass = |src: &[f64], horizontal: bool| -> Vec<f64> {
        let mut out = vec![0.0; side * side];
        for y in 0..side {
            for x in 0..side {
                let mut acc = 0.0;
                for (k, wk) in w.iter().enumerate() {
                    let o = k as i64 - r;
                    let (xx, yy) = if horizontal { (x as i64 + o, y as i64) } else { (x as i64, y as i64 + o) };
                    if (0..side as i64).contains(&xx) && (0..side as i64).contains(&yy) {
                        acc += wk * src[yy as usize * side + xx as usize];
                    }
                }
                out[y * side + x] = acc;
            }
        }
        out
    };
    pass(&pass(img, true), false)
}

/// Lanczos-3 ×½ downsampling (Pillow-style: the kernel is stretched by the scale, weights are
/// normalised per output pixel).
fn lanczos_half(img: &[f64], side: usize) -> Vec<f64> {
    let out = side / 2;
    let lanczos = |x: f64| -> f64 {
        if x == 0.0 {
            1.0
        } else if x.abs() < 3.0 {
            let px = std::f64::consts::PI * x;
            3.0 * px.sin() * (px / 3.0).sin() / (px * px)
        } else {
            0.0
        }
    };
    // One axis: output i centred at input 2i + 1 (pixel centres at +0.5), kernel support 6.
    let weights: Vec<Vec<(usize, f64)>> = (0..out)
        .map(|i| {
            let centre = (i as f64 + 0.5) * 2.0;
            let lo = (centre - 6.0).floor().max(0.0) as usize;
            let hi = ((centre + 6.0).ceil() as usize).min(side);
            let w: Vec<(usize, f64)> = (lo..hi).map(|j| (j, lanczos((j as f64 + 0.5 - centre) / 2.0))).collect();
            let s: f64 = w.iter().map(|(_, v)| v).sum();
            w.into_iter().map(|(j, v)| (j, v / s)).collect()
        })
        .collect();
    let mut rows = vec![0.0; out * side];
    for y in 0..side {
        for (i, w) in weights.iter().enumerate() {
            rows[y * out + i] = w.iter().map(|(j, v)| v * img[y * side + j]).sum();
        }
    }
    let mut res = vec![0.0; out * out];
    for x in 0..out {
        for (i, w) in weights.iter().enumerate() {
            res[i * out + x] = w.iter().map(|(j, v)| v * rows[j * out + x]).sum::<f64>().max(0.0);
        }
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_are_normalised_centred_and_seeded() {
        for seed in 0..5 {
            let k = motion_kernel(61, 0.5, &mut SampleRng::new(seed, 1));
            assert_eq!(k.len(), 61 * 61);
            assert!(k.iter().all(|v| *v >= 0.0));
            assert!((k.iter().map(|v| *v as f64).sum::<f64>() - 1.0).abs() < 1e-5);
            // The centre of mass of the path is moved to the centre of the grid.
            let (mut cy, mut cx) = (0.0, 0.0);
            for (i, v) in k.iter().enumerate() {
                cy += (i / 61) as f64 * *v as f64;
                cx += (i % 61) as f64 * *v as f64;
            }
            assert!((cy - 30.0).abs() < 6.0 && (cx - 30.0).abs() < 6.0, "seed {seed}: centre ({cy}, {cx})");
            assert_eq!(k, motion_kernel(61, 0.5, &mut SampleRng::new(seed, 1)));
        }
        assert_ne!(motion_kernel(61, 0.5, &mut SampleRng::new(1, 1)), motion_kernel(61, 0.5, &mut SampleRng::new(2, 1)));
    }
}
