//! Blur operators of DPS and DAPS (`Blurkernel`: `ReflectionPad2d(k/2)` then a depthwise k×k
//! cross-correlation, docs/protocols.md §1.4–1.5).
//!
//! - Gaussian blur (61×61, σ = 3): the kernel is `scipy.ndimage.gaussian_filter` of a centred
//!   delta, i.e. the outer product g⊗g of the normalised 1-D Gaussian exp(−x²/2σ²) on
//!   −12…12 (truncate 4). With reflect padding it is exactly separable, Y = T·X·Tᵀ, so it is a
//!   [`SeparableOperator`] with an exact SVD (DDRM's `ZERO` threshold applies).
//! - Any kernel (motion blur): [`ConvOperator`], the pad + depthwise convolution itself; its
//!   adjoint is the full correlation with the flipped kernel folded back through the reflection.

use burn::prelude::*;
use burn::tensor::module::conv2d;
use burn::tensor::ops::{ConvOptions, PadMode};
use nalgebra::DMatrix;

use super::separable::{ImageShape, SeparableOperator};
use crate::error::OperatorError;
use crate::operator::{LinearOperator, Operator};

/// The 1-D Gaussian of `scipy.ndimage.gaussian_filter1d(σ, truncate = 4)`: weights on
/// −r…r, r = int(4σ + 0.5), normalised to sum 1.
pub fn gaussian_1d(sigma: f64) -> Vec<f64> {
    let r = (4.0 * sigma + 0.5) as i64;
    let w: Vec<f64> = (-r..=r).map(|x| (-0.5 * (x * x) as f64 / (sigma * sigma)).exp()).collect();
    let s: f64 = w.iter().sum();
    w.into_iter().map(|v| v / s).collect()
}

/// The k×k Gaussian kernel of DPS/DAPS (`gaussian_filter` of a centred delta), row-major f64.
pub fn gaussian_kernel(k: usize, sigma: f64) -> Vec<f64> {
    let g = gaussian_1d(sigma);
    let r = (g.len() / 2) as i64;
    let c = (k / 2) as i64;
    let at = |i: i64| if (i - c).abs() <= r { g[(i - c + r) as usize] } else { 0.0 };
    (0..k as i64).flat_map(|i| (0..k as i64).map(move |j| at(i) * at(j))).collect()
}

/// Index of padded position `q` (relative to the image, may be negative or ≥ n) under
/// `ReflectionPad` (mirror excluding the edge).
fn reflect(q: i64, n: i64) -> usize {
    let q = if q < 0 { -q } else { q };
    (if q >= n { 2 * (n - 1) - q } else { q }) as usize
}

/// The n×n matrix of a 1-D cross-correlation with `taps` (centred, odd length) after reflection
/// padding: row i has taps[o + r] at column reflect(i + o), o ∈ −r…r.
pub fn reflect_correlation_matrix(n: usize, taps: &[f64]) -> DMatrix<f64> {
    let r = (taps.len() / 2) as i64;
    let mut m = DMatrix::zeros(n, n);
    for i in 0..n as i64 {
        for o in -r..=r {
            m[(i as usize, reflect(i + o, n as i64))] += taps[(o + r) as usize];
        }
    }
    m
}

/// Gaussian deblurring's forward model as a separable operator (exact SVD). `svd_threshold` is
/// DDRM's ZERO relative to the largest singular value (DDRM uses 3e-2 for Gaussian deblur).
pub fn gaussian_blur<B: Backend>(shape: ImageShape, kernel_size: usize, sigma: f64, svd_threshold: f64, device: &B::Device) -> SeparableOperator<B> {
    let g = gaussian_1d(sigma);
    let half = kernel_size / 2;
    let mut taps = vec![0.0; kernel_size];
    let r = g.len() / 2;
    for (k, v) in g.iter().enumerate() {
        taps[half + k - r] = *v;
    }
    let t_h = reflect_correlation_matrix(shape.h, &taps);
    let t_w = reflect_correlation_matrix(shape.w, &taps);
    SeparableOperator::new(format!("gaussian-blur({kernel_size},σ={sigma})"), shape.c, &t_h, &t_w, svd_threshold, device)
}

/// `ReflectionPad2d(k/2)` + depthwise k×k cross-correlation with one kernel for all channels.
#[derive(Debug, Clone)]
pub struct ConvOperator<B: Backend> {
    name: String,
    shape: ImageShape,
    /// `[c, 1, k, k]`.
    weight: Tensor<B, 4>,
    /// The kernel flipped in both axes, for the adjoint.
    weight_flipped: Tensor<B, 4>,
    k: usize,
    norm: f64,
}

impl<B: Backend> ConvOperator<B> {
    /// The operator with kernel `kernel` (k × k, row-major; k odd, k/2 < image size).
    pub fn new(name: impl Into<String>, shape: ImageShape, kernel: &[f32], k: usize, device: &B::Device) -> Result<Self, OperatorError> {
        if kernel.len() != k * k || k.is_multiple_of(2) || k / 2 >= shape.h.min(shape.w) {
            return Err(OperatorError::Invalid {
                what: "blur kernel".into(),
                why: format!("need an odd k×k kernel with k/2 < image size; got {} values for k = {k} on {}×{}", kernel.len(), shape.h, shape.w),
            });
        }
        let w = Tensor::<B, 1>::from_floats(kernel, device).reshape([1, 1, k, k]);
        let weight = w.clone().expand([shape.c, 1, k, k]);
        let weight_flipped = w.flip([2, 3]).expand([shape.c, 1, k, k]);
        // ‖A‖₂ ≤ √(‖A‖₁·‖A‖_∞): every output row sums |k| (‖A‖_∞ = Σ|k|), and through the
        // reflection a pixel can feed a tap twice (‖A‖₁ ≤ 2Σ|k|), so ‖A‖₂ ≤ √2·Σ|k|.
        let norm = std::f64::consts::SQRT_2 * kernel.iter().map(|v| v.abs() as f64).sum::<f64>();
        Ok(Self { name: name.into(), shape, weight, weight_flipped, k, norm })
    }

    /// Folds a reflection-padded image `[b, c, H + 2p, W + 2p]` back onto `[b, c, H, W]`: the
    /// adjoint of `ReflectionPad2d(p)` (each padded value is added to the pixel it mirrors).
    pub fn fold_reflection(x: Tensor<B, 4>, p: usize) -> Tensor<B, 4> {
        let fold = |x: Tensor<B, 4>, dim: usize| -> Tensor<B, 4> {
            let total = x.dims()[dim];
            let n = total - 2 * p;
            let mut centre = x.clone().narrow(dim, p, n);
            let top = x.clone().narrow(dim, 0, p).flip([dim as isize]);
            let bottom = x.narrow(dim, p + n, p).flip([dim as isize]);
            let add_at = |c: Tensor<B, 4>, start: usize, v: Tensor<B, 4>| {
                let cur = c.clone().narrow(dim, start, p);
                let mut ranges = c.dims().map(|d| 0..d);
                ranges[dim] = start..start + p;
                c.slice_assign(ranges, cur + v)
            };
            centre = add_at(centre, 1, top);
            add_at(centre, n - 1 - p, bottom)
        };
        fold(fold(x, 2), 3)
    }
}

impl<B: Backend> Operator<B> for ConvOperator<B> {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn input_dim(&self) -> usize {
        self.shape.len()
    }

    fn output_dim(&self) -> usize {
        self.shape.len()
    }

    fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let n = x.dims()[0];
        let s = self.shape;
        let p = self.k / 2;
        let x = x.reshape([n, s.c, s.h, s.w]).pad((p, p, p, p), PadMode::Reflect);
        conv2d(x, self.weight.clone(), None, ConvOptions::new([1, 1], [0, 0], [1, 1], s.c)).reshape([n, s.len()])
    }

    fn as_linear(&self) -> Option<&dyn LinearOperator<B>> {
        Some(self)
    }
}

impl<B: Backend> LinearOperator<B> for ConvOperator<B> {
    /// Full correlation with the flipped kernel (the adjoint of a valid correlation), then the
    /// adjoint of the reflection padding.
    fn adjoint(&self, y: Tensor<B, 2>) -> Tensor<B, 2> {
        let n = y.dims()[0];
        let s = self.shape;
        let p = self.k / 2;
        let y = y.reshape([n, s.c, s.h, s.w]);
        let full = conv2d(y, self.weight_flipped.clone(), None, ConvOptions::new([1, 1], [2 * p, 2 * p], [1, 1], s.c));
        Self::fold_reflection(full, p).reshape([n, s.len()])
    }

    fn spectral_norm(&self) -> f64 {
        self.norm
    }
}
