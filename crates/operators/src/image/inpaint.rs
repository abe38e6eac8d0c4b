//! Inpainting: y = m ⊙ x with a binary mask m (1 = kept), shared by the channels (DPS
//! `mask_generator`, DAPS `Inpainting`; docs/protocols.md §1.2–1.3). The measurement keeps the
//! image layout (zeros where pixels are missing), as both codes do. A = diag(m) is an orthogonal
//! projection: Aᵀ = A, A⁺ = A, singular values 1 on the kept pixels.

use burn::prelude::*;

use super::separable::ImageShape;
use crate::error::OperatorError;
use crate::noise::SampleRng;
use crate::operator::{LinearOperator, Operator, SvdView};

/// A mask over h × w pixels, `true` = observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mask {
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
    /// Row-major, `true` where the pixel is kept.
    pub kept: Vec<bool>,
}

impl Mask {
    /// A `size`×`size` hole at (top, left).
    pub fn boxed(h: usize, w: usize, top: usize, left: usize, size: usize) -> Result<Self, OperatorError> {
        if top + size > h || left + size > w {
            return Err(OperatorError::Invalid { what: "box mask".into(), why: format!("a {size}-pixel box at ({top}, {left}) does not fit {h}×{w}") });
        }
        let kept = (0..h * w).map(|i| !((top..top + size).contains(&(i / w)) && (left..left + size).contains(&(i % w)))).collect();
        Ok(Self { h, w, kept })
    }

    /// The box of DPS/DAPS `random_sq_bbox`: top and left uniform in [margin, n − margin − size)
    /// (numpy `randint`), drawn from `rng` (one row).
    pub fn random_box(h: usize, w: usize, size: usize, margin: usize, rng: &mut SampleRng) -> Result<Self, OperatorError> {
        if h < 2 * margin + size + 1 || w < 2 * margin + size + 1 {
            return Err(OperatorError::Invalid { what: "box mask".into(), why: format!("{size}-pixel box with margin {margin} does not fit {h}×{w}") });
        }
        let top = margin + (rng.uniform()[0] * (h - 2 * margin - size) as f64) as usize;
        let left = margin + (rng.uniform()[0] * (w - 2 * margin - size) as f64) as usize;
        Self::boxed(h, w, top, left, size)
    }

    /// DPS's random mask: exactly ⌊h·w·p⌋ pixels removed, without replacement, p drawn uniformly
    /// in [p_lo, p_hi) (DPS code [0.3, 0.7); DAPS [0.70, 0.71); DPS paper 0.92 = [0.92, 0.92]).
    pub fn random_pixels(h: usize, w: usize, p_lo: f64, p_hi: f64, rng: &mut SampleRng) -> Result<Self, OperatorError> {
        if !(0.0..=1.0).contains(&p_lo) || !(p_lo..=1.0).contains(&p_hi) {
            return Err(OperatorError::Invalid { what: "missing-pixel ratio".into(), why: format!("need 0 ≤ lo ≤ hi ≤ 1, got [{p_lo}, {p_hi})") });
        }
        let p = p_lo + rng.uniform()[0] * (p_hi - p_lo);
        let n = h * w;
        let missing = (n as f64 * p) as usize;
        // Partial Fisher–Yates: the first `missing` entries of a random permutation.
        let mut idx: Vec<usize> = (0..n).collect();
        for i in 0..missing {
            let j = i + (rng.uniform()[0] * (n - i) as f64) as usize;
            idx.swap(i, j.min(n - 1));
        }
        let mut kept = vec![true; n];
        for &i in &idx[..missing] {
            kept[i] = false;
        }
        Ok(Self { h, w, kept })
    }

    /// Fraction of pixels observed.
    pub fn kept_fraction(&self) -> f64 {
        self.kept.iter().filter(|k| **k).count() as f64 / self.kept.len() as f64
    }
}

/// y = m ⊙ x on images of `shape`.
#[derive(Debug, Clone)]
pub struct InpaintOperator<B: Backend> {
    name: String,
    shape: ImageShape,
    mask: Mask,
    /// m as a `[1, c·h·w]` row of 0/1.
    row: Tensor<B, 2>,
    /// Flat indices (over c·h·w) of the kept values, for the SVD view.
    kept: Tensor<B, 1, Int>,
    ones: Vec<f64>,
}

impl<B: Backend> InpaintOperator<B> {
    /// The operator of `mask` on images with `channels` channels.
    pub fn new(name: impl Into<String>, channels: usize, mask: Mask, device: &B::Device) -> Self {
        let shape = ImageShape { c: channels, h: mask.h, w: mask.w };
        let hw = mask.h * mask.w;
        let row: Vec<f32> = (0..channels).flat_map(|_| mask.kept.iter().map(|k| if *k { 1.0 } else { 0.0 })).collect();
        let kept: Vec<i64> = (0..channels).flat_map(|c| (0..hw).filter(|&i| mask.kept[i]).map(move |i| (c * hw + i) as i64)).collect();
        let r = kept.len();
        Self {
            name: name.into(),
            shape,
            row: Tensor::<B, 1>::from_floats(row.as_slice(), device).reshape([1, shape.len()]),
            kept: Tensor::<B, 1, Int>::from_ints(kept.as_slice(), device),
            ones: vec![1.0; r],
            mask,
        }
    }

    /// The mask.
    pub fn mask(&self) -> &Mask {
        &self.mask
    }
}

impl<B: Backend> Operator<B> for InpaintOperator<B> {
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
        x * self.row.clone()
    }

    fn as_linear(&self) -> Option<&dyn LinearOperator<B>> {
        Some(self)
    }
}

impl<B: Backend> LinearOperator<B> for InpaintOperator<B> {
    fn adjoint(&self, y: Tensor<B, 2>) -> Tensor<B, 2> {
        y * self.row.clone()
    }

    fn spectral_norm(&self) -> f64 {
        1.0
    }

    fn svd(&self) -> Option<&dyn SvdView<B>> {
        Some(self)
    }

    fn mask_row(&self) -> Option<Tensor<B, 2>> {
        Some(self.row.clone())
    }

    /// A⁺ = A for a mask.
    fn pinv(&self, y: Tensor<B, 2>) -> Result<Tensor<B, 2>, OperatorError> {
        Ok(y * self.row.clone())
    }
}

impl<B: Backend> SvdView<B> for InpaintOperator<B> {
    fn singular_values(&self) -> &[f64] {
        &self.ones
    }

    fn vt(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        x.select(1, self.kept.clone())
    }

    fn v(&self, c: Tensor<B, 2>) -> Tensor<B, 2> {
        let n = c.dims()[0];
        Tensor::zeros([n, self.shape.len()], &c.device()).select_assign(1, self.kept.clone(), c, burn::tensor::IndexingUpdateOp::Add)
    }

    fn ut(&self, y: Tensor<B, 2>) -> Tensor<B, 2> {
        y.select(1, self.kept.clone())
    }

    fn u(&self, c: Tensor<B, 2>) -> Tensor<B, 2> {
        self.v(c)
    }

    fn null_part(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        x.clone() - x * self.row.clone()
    }
}
