//! Block averaging: y = the mean of each f×f block of every channel, DDRM's `SuperResolution`
//! (Kawar et al. 2022, App. D) with its singular-value layout. FPS-SMC uses it as the surrogate
//! of SR ×f inside its proposal, while its measurement is the bicubic resizer.
//!
//! One block's row is [1/f²]·f², with singular value 1/f, left vector ±1 and a full f²×f² right
//! basis V_s whose first column is ±(1/f)·1. The image's V in DDRM's order: coordinates
//! 0 … c·(h/f)·(w/f)−1 are the blocks' first coordinates (channel-major, blocks row-major), then
//! the f²−1 remaining coordinates of each block, interleaved block after block. Which
//! null-space basis V_s holds is the SVD routine's choice; [`BlockAverage::with_basis`] takes a
//! given one (to replay a reference bit for bit), [`BlockAverage::new`] builds one (a Householder
//! reflection mapping e₁ to (1/f)·1).

use burn::prelude::*;

use crate::error::OperatorError;
use crate::image::separable::ImageShape;
use crate::operator::{LinearOperator, Operator, SvdView, WholeV};

/// f×f block averaging on `[c, h, w]` images (module documentation).
#[derive(Debug, Clone)]
pub struct BlockAverage<B: Backend> {
    shape: ImageShape,
    factor: usize,
    /// V_s, `[f², f²]`.
    v_small: Tensor<B, 2>,
    /// U_s = ±1, the sign that makes U_s·(1/f)·V_s[:, 0]ᵀ = [1/f²]·f².
    u_sign: f64,
    singular: Vec<f64>,
}

impl<B: Backend> BlockAverage<B> {
    /// Block averaging by `factor` with the Householder basis (first column (1/f)·1).
    pub fn new(shape: ImageShape, factor: usize, device: &B::Device) -> Result<Self, OperatorError> {
        let k = factor * factor;
        let e = 1.0 / factor as f64;
        // H = I − 2wwᵀ/(wᵀw), w = e₁ − (1/f)·1: symmetric, orthogonal, H·e₁ = (1/f)·1.
        let w: Vec<f64> = (0..k).map(|i| f64::from(u8::from(i == 0)) - e).collect();
        let ww: f64 = w.iter().map(|v| v * v).sum();
        let v: Vec<f64> = (0..k * k).map(|ij| f64::from(u8::from(ij / k == ij % k)) - 2.0 * w[ij / k] * w[ij % k] / ww).collect();
        Self::with_basis(shape, factor, &v, device)
    }

    /// Block averaging by `factor` with the right basis `v_small` (row-major f²×f², orthonormal,
    /// first column ±(1/f)·1), e.g. the one `torch.svd` returned to a reference run.
    pub fn with_basis(shape: ImageShape, factor: usize, v_small: &[f64], device: &B::Device) -> Result<Self, OperatorError> {
        let k = factor * factor;
        let bad = |why: String| OperatorError::Invalid { what: "block-average operator".into(), why };
        if factor < 2 || !shape.h.is_multiple_of(factor) || !shape.w.is_multiple_of(factor) {
            return Err(bad(format!("factor {factor}: must be at least 2 and divide the image side {}×{}", shape.h, shape.w)));
        }
        if v_small.iter().any(|v| !v.is_finite()) {
            return Err(bad("the block basis has a non-finite value".into()));
        }
        if v_small.len() != k * k {
            return Err(bad(format!("the block basis has {} values, a {k}×{k} matrix has {}", v_small.len(), k * k)));
        }
        let first: Vec<f64> = (0..k).map(|i| v_small[i * k]).collect();
        let sign = first[0].signum();
        if first.iter().any(|v| (v * sign * factor as f64 - 1.0).abs() > 1e-5) {
            return Err(bad(format!("the block basis's first column must be ±1/{factor} everywhere, got {first:?}")));
        }
        let vals: Vec<f32> = v_small.iter().map(|v| *v as f32).collect();
        let blocks = shape.c * (shape.h / factor) * (shape.w / factor);
        Ok(Self {
            shape,
            factor,
            v_small: Tensor::<B, 1>::from_floats(vals.as_slice(), device).reshape([k, k]),
            u_sign: sign,
            singular: vec![1.0 / factor as f64; blocks],
        })
    }

    fn blocks(&self) -> usize {
        self.singular.len()
    }

    /// `[n, c·h·w]` → `[n·blocks, f²]`, each block's pixels row-major.
    fn patches(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let (f, n) = (self.factor, x.dims()[0]);
        let (c, yh, yw) = (self.shape.c, self.shape.h / f, self.shape.w / f);
        x.reshape([n, c, yh, f, yw, f]).swap_dims(3, 4).reshape([n * self.blocks(), f * f])
    }

    /// The inverse of [`BlockAverage::patches`].
    fn image(&self, p: Tensor<B, 2>, n: usize) -> Tensor<B, 2> {
        let f = self.factor;
        let (c, yh, yw) = (self.shape.c, self.shape.h / f, self.shape.w / f);
        p.reshape([n, c, yh, yw, f, f]).swap_dims(3, 4).reshape([n, self.shape.len()])
    }

    /// V·c for all d coordinates in DDRM's order (module documentation): `[n, d]` → `[n, d]`.
    pub fn v_full(&self, coords: Tensor<B, 2>) -> Tensor<B, 2> {
        let (n, b, k) = (coords.dims()[0], self.blocks(), self.factor * self.factor);
        let head = coords.clone().slice([0..n, 0..b]).reshape([n * b, 1]);
        let tail = coords.slice([0..n, b..b * k]).reshape([n * b, k - 1]);
        // Each block's coordinate vector p ↦ V_s·p, i.e. the row pᵀ·V_sᵀ.
        let p = Tensor::cat(vec![head, tail], 1).matmul(self.v_small.clone().transpose());
        self.image(p, n)
    }

    /// Vᵀ·x for all d coordinates in DDRM's order: `[n, d]` → `[n, d]`.
    pub fn vt_full(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let (n, b, k) = (x.dims()[0], self.blocks(), self.factor * self.factor);
        let p = self.patches(x).matmul(self.v_small.clone());
        let head = p.clone().slice([0..n * b, 0..1]).reshape([n, b]);
        let tail = p.slice([0..n * b, 1..k]).reshape([n, b * (k - 1)]);
        Tensor::cat(vec![head, tail], 1)
    }
}

impl<B: Backend> Operator<B> for BlockAverage<B> {
    fn name(&self) -> String {
        format!("block-average×{}", self.factor)
    }

    fn input_dim(&self) -> usize {
        self.shape.len()
    }

    fn output_dim(&self) -> usize {
        self.blocks()
    }

    fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let n = x.dims()[0];
        self.patches(x).mean_dim(1).reshape([n, self.blocks()])
    }

    fn as_linear(&self) -> Option<&dyn LinearOperator<B>> {
        Some(self)
    }
}

impl<B: Backend> LinearOperator<B> for BlockAverage<B> {
    /// Each y value spread as y/f² over its block.
    fn adjoint(&self, y: Tensor<B, 2>) -> Tensor<B, 2> {
        let (n, k) = (y.dims()[0], self.factor * self.factor);
        let p = y.reshape([n * self.blocks(), 1]).expand([n * self.blocks(), k]).div_scalar(k as f64);
        self.image(p, n)
    }

    fn spectral_norm(&self) -> f64 {
        1.0 / self.factor as f64
    }

    fn svd(&self) -> Option<&dyn SvdView<B>> {
        Some(self)
    }
}

impl<B: Backend> SvdView<B> for BlockAverage<B> {
    fn singular_values(&self) -> &[f64] {
        &self.singular
    }

    fn vt(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let n = x.dims()[0];
        self.vt_full(x).slice([0..n, 0..self.blocks()])
    }

    fn v(&self, c: Tensor<B, 2>) -> Tensor<B, 2> {
        let n = c.dims()[0];
        let zeros = Tensor::zeros([n, self.shape.len() - self.blocks()], &c.device());
        self.v_full(Tensor::cat(vec![c, zeros], 1))
    }

    fn ut(&self, y: Tensor<B, 2>) -> Tensor<B, 2> {
        y.mul_scalar(self.u_sign)
    }

    fn u(&self, c: Tensor<B, 2>) -> Tensor<B, 2> {
        c.mul_scalar(self.u_sign)
    }

    fn whole_v(&self) -> Option<&dyn WholeV<B>> {
        Some(self)
    }
}

impl<B: Backend> WholeV<B> for BlockAverage<B> {
    fn v_full(&self, coords: Tensor<B, 2>) -> Tensor<B, 2> {
        BlockAverage::v_full(self, coords)
    }

    fn vt_full(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        BlockAverage::vt_full(self, x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    type T = Flex;

    fn values(t: Tensor<T, 2>) -> Vec<f32> {
        t.into_data().convert::<f32>().to_vec().unwrap()
    }

    #[test]
    fn svd_reproduces_the_operator_and_v_is_orthogonal() {
        let dev = Default::default();
        let shape = ImageShape { c: 2, h: 8, w: 4 };
        let op = BlockAverage::<T>::new(shape, 2, &dev).unwrap();
        let x = Tensor::<T, 1>::from_floats((0..2 * 64).map(|i| ((i * 37 % 23) as f32 - 11.0) / 7.0).collect::<Vec<_>>().as_slice(), &dev).reshape([2, 64]);
        // Closed form: block (0, 0) of channel 0 of row 0 is the mean of x[0], x[1], x[4], x[5].
        let xv = values(x.clone());
        let y = values(op.forward(x.clone()));
        assert!((y[0] - (xv[0] + xv[1] + xv[4] + xv[5]) / 4.0).abs() < 1e-6);
        // A = U·diag(s)·Vᵀ on the range coordinates.
        let svd = op.svd().unwrap();
        let via_svd = values(svd.u(crate::operator::scale_columns(svd.vt(x.clone()), svd.singular_values())));
        assert!(y.iter().zip(&via_svd).all(|(a, b)| (a - b).abs() < 1e-5), "{y:?} vs {via_svd:?}");
        // V·Vᵀ = I on all d coordinates, and the adjoint identity ⟨Ax, y⟩ = ⟨x, Aᵀy⟩.
        let back = values(op.v_full(op.vt_full(x.clone())));
        assert!(xv.iter().zip(&back).all(|(a, b)| (a - b).abs() < 1e-5));
        let yy = op.forward(x.clone().mul_scalar(0.5).add_scalar(0.25));
        let lhs: f32 = (op.forward(x.clone()) * yy.clone()).sum().into_scalar();
        let rhs: f32 = (x * op.adjoint(yy)).sum().into_scalar();
        assert!((lhs - rhs).abs() < 1e-4 * lhs.abs().max(1.0), "{lhs} vs {rhs}");
    }

    #[test]
    fn a_basis_without_the_averaging_column_is_refused() {
        let dev = Default::default();
        let shape = ImageShape { c: 1, h: 4, w: 4 };
        let identity: Vec<f64> = (0..16).map(|i| f64::from(u8::from(i / 4 == i % 4))).collect();
        let e = BlockAverage::<T>::with_basis(shape, 2, &identity, &dev).unwrap_err().to_string();
        assert!(e.contains("first column"), "{e}");
        assert!(BlockAverage::<T>::new(ImageShape { c: 1, h: 6, w: 4 }, 4, &dev).is_err());
        // Factor 1 (y the size of x) has no averaging to do: refused, not a NaN basis.
        assert!(BlockAverage::<T>::new(ImageShape { c: 1, h: 4, w: 4 }, 1, &dev).is_err());
    }
}
