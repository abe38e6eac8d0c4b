//! The forward-model interface. A measurement is y = A(x) + noise, with x a batch of rows
//! `[n, input_dim]` and y a batch `[n, output_dim]`; image operators reshape internally.
//!
//! Nonlinear operators only need [`Operator::forward`], which must be differentiable through
//! burn's autodiff (DPS and DAPS take ∇ₓ‖y − A(x)‖²). Linear ones also give their adjoint and,
//! where the baselines need it, a singular-value view ([`SvdView`]: DDRM, DDNM, ΠGDM, DiffPIR) and
//! the pseudo-inverse / projection onto {x : Ax = y} (MCG, Score-SDE).

use burn::prelude::*;

use crate::error::OperatorError;

/// A forward model A: ℝ^input_dim → ℝ^output_dim applied row-wise.
pub trait Operator<B: Backend>: Send + Sync {
    /// A short name for tables and error messages.
    fn name(&self) -> String;

    /// Length of an input row.
    fn input_dim(&self) -> usize;

    /// Length of an output row.
    fn output_dim(&self) -> usize;

    /// A(x) for a batch `[n, input_dim]` → `[n, output_dim]`, differentiable.
    fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2>;

    /// The linear structure of the operator, if it is linear.
    fn as_linear(&self) -> Option<&dyn LinearOperator<B>> {
        None
    }

    /// The Fourier-magnitude structure of a phase-retrieval operator (what HIO/ER/OSS need).
    fn as_fourier_magnitude(&self) -> Option<FourierMagnitude> {
        None
    }

    /// The linear structure, or an error naming what the caller (`needed_by`) required.
    fn require_linear(&self, needed_by: &str) -> Result<&dyn LinearOperator<B>, OperatorError> {
        self.as_linear().ok_or_else(|| OperatorError::Unsupported {
            operator: self.name(),
            needs: "a linear operator (adjoint Aᵀ)".into(),
            needed_by: needed_by.into(),
        })
    }
}

/// How a phase-retrieval operator forms y = |F_c(pad(a·x + b))| per channel (F_c the centred
/// orthonormal N×N DFT, N = side + 2·pad), so that Fienup-type algorithms can work on the padded
/// object directly.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FourierMagnitude {
    /// Channels.
    pub channels: usize,
    /// Image side (square images).
    pub side: usize,
    /// Zeros added on each side.
    pub pad: usize,
    /// a of the affine map applied before padding (DPS 1, DAPS ½).
    pub scale: f64,
    /// b of the affine map (DPS 0, DAPS ½); the padded object is non-negative when b = ½.
    pub offset: f64,
}

/// A linear operator: y = A·x.
pub trait LinearOperator<B: Backend>: Operator<B> {
    /// Aᵀy for a batch `[n, output_dim]` → `[n, input_dim]` (⟨Ax, y⟩ = ⟨x, Aᵀy⟩).
    fn adjoint(&self, y: Tensor<B, 2>) -> Tensor<B, 2>;

    /// The largest singular value ‖A‖₂ (used to set stable gradient step sizes).
    fn spectral_norm(&self) -> f64;

    /// The singular-value view A = U·diag(s)·Vᵀ, if the operator has one.
    fn svd(&self) -> Option<&dyn SvdView<B>> {
        None
    }

    /// The singular-value view, or an error naming the caller that needed it.
    fn require_svd(&self, needed_by: &str) -> Result<&dyn SvdView<B>, OperatorError> {
        self.svd().ok_or_else(|| OperatorError::Unsupported {
            operator: self.name(),
            needs: "a singular-value decomposition view".into(),
            needed_by: needed_by.into(),
        })
    }

    /// Moore–Penrose pseudo-inverse A⁺y = V·diag(1/s)·Uᵀy (zero singular values dropped).
    fn pinv(&self, y: Tensor<B, 2>) -> Result<Tensor<B, 2>, OperatorError> {
        let svd = self.require_svd("the pseudo-inverse")?;
        let inv: Vec<f64> = svd.singular_values().iter().map(|&s| if s > 0.0 { 1.0 / s } else { 0.0 }).collect();
        Ok(svd.v(scale_columns(svd.ut(y), &inv)))
    }

    /// For an operator given by a dense matrix: A `[output_dim, input_dim]` as a tensor, for
    /// samplers whose fused steps take the matrix itself (DAPS's Langevin step,
    /// `NnBackend::combine_least_squares`). `None` otherwise.
    fn dense_matrix(&self) -> Option<Tensor<B, 2>> {
        None
    }

    /// For a masking operator (A = diag(m), m ∈ {0, 1}, y of the input's shape): the mask as a
    /// `[1, d]` row. Samplers with a separate inpainting path (FPS-SMC) take it. `None` otherwise.
    fn mask_row(&self) -> Option<Tensor<B, 2>> {
        None
    }

    /// Euclidean projection of x onto {x : A·x = y}: x + A⁺(y − A·x).
    fn project(&self, x: Tensor<B, 2>, y: Tensor<B, 2>) -> Result<Tensor<B, 2>, OperatorError> {
        let r = y - self.forward(x.clone());
        Ok(x + self.pinv(r)?)
    }
}

/// A singular-value decomposition view A = U·diag(s)·Vᵀ with r = rank retained values (DDRM,
/// Kawar et al. 2022, §3). Only the r columns of U and V for nonzero s are exposed; the null
/// space of A is the orthogonal complement of V's columns. Operators whose SVD has tiny singular
/// values may drop them (DDRM's `ZERO`); they are then treated as null space.
pub trait SvdView<B: Backend>: Send + Sync {
    /// The r positive singular values, one per coordinate of [`SvdView::vt`] (in that
    /// coordinate order, which need not be sorted).
    fn singular_values(&self) -> &[f64];

    /// Vᵀx: `[n, d]` → `[n, r]`.
    fn vt(&self, x: Tensor<B, 2>) -> Tensor<B, 2>;

    /// V·c: `[n, r]` → `[n, d]`.
    fn v(&self, c: Tensor<B, 2>) -> Tensor<B, 2>;

    /// Uᵀy: `[n, m]` → `[n, r]`.
    fn ut(&self, y: Tensor<B, 2>) -> Tensor<B, 2>;

    /// U·c: `[n, r]` → `[n, m]`.
    fn u(&self, c: Tensor<B, 2>) -> Tensor<B, 2>;

    /// The component of x in the null space of A: x − V·Vᵀx.
    fn null_part(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        x.clone() - self.v(self.vt(x))
    }

    /// The whole orthonormal V, for operators that hold one (DDRM's block average). FPS-SMC's
    /// proposal applies V to a normal vector directly, so replaying a reference run needs that
    /// very basis. `None` by default.
    fn whole_v(&self) -> Option<&dyn WholeV<B>> {
        None
    }
}

/// A whole d×d orthonormal V of an [`SvdView`]: the r range coordinates of [`SvdView::vt`] first,
/// then the d − r null-space coordinates in the operator's own basis.
pub trait WholeV<B: Backend>: Send + Sync {
    /// V·c: `[n, d]` → `[n, d]`.
    fn v_full(&self, coords: Tensor<B, 2>) -> Tensor<B, 2>;

    /// Vᵀ·x: `[n, d]` → `[n, d]`.
    fn vt_full(&self, x: Tensor<B, 2>) -> Tensor<B, 2>;
}

/// Multiplies column j of a `[n, r]` tensor by `scale[j]`.
pub fn scale_columns<B: Backend>(t: Tensor<B, 2>, scale: &[f64]) -> Tensor<B, 2> {
    let device = t.device();
    let s: Vec<f32> = scale.iter().map(|v| *v as f32).collect();
    t * Tensor::<B, 1>::from_floats(s.as_slice(), &device).reshape([1, scale.len()])
}
