//! A dense matrix operator on vectors, y = A·x, with its exact SVD — the operator of the
//! MCGdiff Gaussian-mixture benchmark (spec/gmm.md).

use burn::prelude::*;
use nalgebra::DMatrix;

use crate::error::OperatorError;
use crate::operator::{LinearOperator, Operator, SvdView};

/// y = A·x for a dense m × d matrix A, applied to rows as x·Aᵀ. Keeps the host f64 matrix and its
/// thin SVD A = U·diag(s)·Vᵀ (r = number of singular values above 1e-12·s_max).
#[derive(Debug, Clone)]
pub struct DenseOperator<B: Backend> {
    name: String,
    matrix: DMatrix<f64>,
    a: Tensor<B, 2>,
    a_t: Tensor<B, 2>,
    singular_values: Vec<f64>,
    u: Tensor<B, 2>,
    u_t: Tensor<B, 2>,
    v: Tensor<B, 2>,
    v_t: Tensor<B, 2>,
}

impl<B: Backend> DenseOperator<B> {
    /// Wraps the host matrix `a` (m × d); its SVD is computed here in f64.
    pub fn new(name: impl Into<String>, a: DMatrix<f64>, device: &B::Device) -> Result<Self, OperatorError> {
        if a.nrows() == 0 || a.ncols() == 0 || a.iter().any(|v| !v.is_finite()) {
            return Err(OperatorError::Invalid {
                what: "dense operator matrix".into(),
                why: format!("must be non-empty and finite, got shape {:?}", a.shape()),
            });
        }
        let svd = a.clone().svd(true, true);
        let (u, v_t) = (svd.u.expect("requested U"), svd.v_t.expect("requested Vᵀ"));
        // nalgebra does not promise an order: sort singular triplets descending.
        let mut order: Vec<usize> = (0..svd.singular_values.len()).collect();
        order.sort_by(|&i, &j| svd.singular_values[j].total_cmp(&svd.singular_values[i]));
        let s_max = svd.singular_values.max();
        let kept: Vec<usize> = order.into_iter().filter(|&i| svd.singular_values[i] > 1e-12 * s_max).collect();
        let singular_values = kept.iter().map(|&i| svd.singular_values[i]).collect();
        let u_kept = DMatrix::from_fn(a.nrows(), kept.len(), |r, c| u[(r, kept[c])]);
        let v_kept = DMatrix::from_fn(a.ncols(), kept.len(), |r, c| v_t[(kept[c], r)]);
        let to = |m: &DMatrix<f64>| dipbench_models::gaussian_mixture::host_to_tensor::<B>(m, device);
        Ok(Self {
            name: name.into(),
            a: to(&a),
            a_t: to(&a.transpose()),
            u: to(&u_kept),
            u_t: to(&u_kept.transpose()),
            v: to(&v_kept),
            v_t: to(&v_kept.transpose()),
            singular_values,
            matrix: a,
        })
    }

    /// The MCGdiff construction (spec/gmm.md): take the SVD A₀ = U·S·Vᵀ of a Gaussian matrix and
    /// replace its singular values by `values` (the benchmark draws sorted-descending
    /// Uniform(0,1)): A = U·diag(values)·V[:m]. `a0` is m × d, `values` has m entries.
    pub fn mcgdiff_matrix(a0: &DMatrix<f64>, values: &[f64]) -> Result<DMatrix<f64>, OperatorError> {
        let m = a0.nrows();
        if values.len() != m || m > a0.ncols() {
            return Err(OperatorError::Shape {
                context: "MCGdiff operator".into(),
                expected: format!("{m} singular values and at most {} rows", a0.ncols()),
                got: format!("{} values for a {:?} matrix", values.len(), a0.shape()),
            });
        }
        let svd = a0.clone().svd(true, true);
        let (u, v_t) = (svd.u.expect("U"), svd.v_t.expect("Vᵀ"));
        let mut order: Vec<usize> = (0..m).collect();
        order.sort_by(|&i, &j| svd.singular_values[j].total_cmp(&svd.singular_values[i]));
        let mut a = DMatrix::zeros(m, a0.ncols());
        for (rank, &i) in order.iter().enumerate() {
            a += u.column(i) * v_t.row(i) * values[rank];
        }
        Ok(a)
    }

    /// The host matrix A.
    pub fn matrix(&self) -> &DMatrix<f64> {
        &self.matrix
    }
}

impl<B: Backend> Operator<B> for DenseOperator<B> {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn input_dim(&self) -> usize {
        self.matrix.ncols()
    }

    fn output_dim(&self) -> usize {
        self.matrix.nrows()
    }

    /// Rows: y = x·Aᵀ.
    fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        x.matmul(self.a_t.clone())
    }

    fn as_linear(&self) -> Option<&dyn LinearOperator<B>> {
        Some(self)
    }
}

impl<B: Backend> LinearOperator<B> for DenseOperator<B> {
    /// Rows: Aᵀy = y·A.
    fn adjoint(&self, y: Tensor<B, 2>) -> Tensor<B, 2> {
        y.matmul(self.a.clone())
    }

    fn spectral_norm(&self) -> f64 {
        self.singular_values.first().copied().unwrap_or(0.0)
    }

    fn svd(&self) -> Option<&dyn SvdView<B>> {
        Some(self)
    }
}

impl<B: Backend> SvdView<B> for DenseOperator<B> {
    fn singular_values(&self) -> &[f64] {
        &self.singular_values
    }

    fn vt(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        x.matmul(self.v.clone())
    }

    fn v(&self, c: Tensor<B, 2>) -> Tensor<B, 2> {
        c.matmul(self.v_t.clone())
    }

    fn ut(&self, y: Tensor<B, 2>) -> Tensor<B, 2> {
        y.matmul(self.u.clone())
    }

    fn u(&self, c: Tensor<B, 2>) -> Tensor<B, 2> {
        c.matmul(self.u_t.clone())
    }
}
