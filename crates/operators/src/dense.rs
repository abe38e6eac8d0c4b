//! A dense matrix operator on vectors, y = A·x, with its exact SVD — the operator of the
//! MCGdiff Gaussian-mixture benchmark (docs/gmm.md).

use burn::prelude::*;
use dipbench_nn::NnBackend;
use dipbench_nn::ops::matmul_thin;
use nalgebra::DMatrix;

use crate::error::OperatorError;
use crate::operator::{LinearOperator, Operator, SvdView};

/// y = A·x for a dense m × d matrix A, applied to rows as x·Aᵀ. Keeps the host f64 matrix and its
/// thin SVD A = U·diag(s)·Vᵀ (r = number of singular values above 1e-12·s_max). Its products have
/// a thin side (m or r rows against d columns) and go through [`matmul_thin`]: row by row on the
/// CPU, burn's matmul on the GPU backends.
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
        let to = |m: &DMatrix<f64>| dipbench_nn::tensor::host_to_tensor::<B>(m, device);
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

    /// The MCGdiff construction (docs/gmm.md): take the SVD A₀ = U·S·Vᵀ of a Gaussian matrix and
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

impl<B: NnBackend> Operator<B> for DenseOperator<B> {
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
        matmul_thin(x, self.a_t.clone())
    }

    fn as_linear(&self) -> Option<&dyn LinearOperator<B>> {
        Some(self)
    }
}

impl<B: NnBackend> LinearOperator<B> for DenseOperator<B> {
    /// Rows: Aᵀy = y·A.
    fn adjoint(&self, y: Tensor<B, 2>) -> Tensor<B, 2> {
        matmul_thin(y, self.a.clone())
    }

    fn spectral_norm(&self) -> f64 {
        self.singular_values.first().copied().unwrap_or(0.0)
    }

    fn dense_matrix(&self) -> Option<Tensor<B, 2>> {
        Some(self.a.clone())
    }

    fn svd(&self) -> Option<&dyn SvdView<B>> {
        Some(self)
    }
}

impl<B: NnBackend> SvdView<B> for DenseOperator<B> {
    fn singular_values(&self) -> &[f64] {
        &self.singular_values
    }

    fn vt(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        matmul_thin(x, self.v.clone())
    }

    fn v(&self, c: Tensor<B, 2>) -> Tensor<B, 2> {
        matmul_thin(c, self.v_t.clone())
    }

    fn ut(&self, y: Tensor<B, 2>) -> Tensor<B, 2> {
        matmul_thin(y, self.u.clone())
    }

    fn u(&self, c: Tensor<B, 2>) -> Tensor<B, 2> {
        matmul_thin(c, self.u_t.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    fn op() -> DenseOperator<Flex> {
        let a = DMatrix::from_fn(3, 5, |i, j| ((i * 5 + j * 7) % 11) as f64 / 11.0 - 0.4);
        DenseOperator::new("test", a, &Default::default()).unwrap()
    }

    fn t(rows: usize, cols: usize, seed: usize) -> Tensor<Flex, 2> {
        let v: Vec<f32> = (0..rows * cols).map(|k| (((k + seed) * 2654435761usize) % 1000) as f32 / 500.0 - 1.0).collect();
        Tensor::<Flex, 1>::from_floats(v.as_slice(), &Default::default()).reshape([rows, cols])
    }

    fn max_abs(x: Tensor<Flex, 2>) -> f32 {
        x.abs().max().into_scalar()
    }

    #[test]
    fn adjoint_identity() {
        // ⟨Ax, y⟩ = ⟨x, Aᵀy⟩ row by row (float32: values O(1), sums of 5 terms → 1e-5).
        let (a, x, y) = (op(), t(4, 5, 1), t(4, 3, 2));
        let lhs = (a.forward(x.clone()) * y.clone()).sum_dim(1);
        let rhs = (x * a.adjoint(y)).sum_dim(1);
        assert!(max_abs(lhs - rhs) < 1e-5);
    }

    #[test]
    fn svd_view_reconstructs_a_and_its_pseudo_inverse() {
        let a = op();
        let x = t(4, 5, 3);
        // U·diag(s)·Vᵀx = Ax.
        let s = a.singular_values().to_vec();
        let via_svd = a.u(crate::operator::scale_columns(a.vt(x.clone()), &s));
        assert!(max_abs(via_svd - a.forward(x.clone())) < 1e-5);
        // Penrose: A·A⁺·A = A, and the projection lands on {Ax = y} and is idempotent.
        let y = t(4, 3, 4);
        let p = a.project(x.clone(), y.clone()).unwrap();
        assert!(max_abs(a.forward(p.clone()) - y.clone()) < 1e-4);
        assert!(max_abs(a.project(p.clone(), y).unwrap() - p) < 1e-5);
        let aapa = a.forward(a.pinv(a.forward(x.clone())).unwrap());
        assert!(max_abs(aapa - a.forward(x.clone())) < 1e-5);
        // The null part is orthogonal to the row space: A·null(x) = 0.
        assert!(max_abs(a.forward(a.null_part(x))) < 1e-5);
        assert!(s.windows(2).all(|w| w[0] >= w[1]));
    }

    #[test]
    fn mcgdiff_matrix_has_the_requested_singular_values() {
        let a0 = DMatrix::from_fn(2, 6, |i, j| ((i * 3 + j * 5) % 7) as f64 - 3.0);
        let a = DenseOperator::<Flex>::mcgdiff_matrix(&a0, &[0.9, 0.2]).unwrap();
        let mut s: Vec<f64> = a.clone().svd(false, false).singular_values.iter().copied().collect();
        s.sort_by(|x, y| y.total_cmp(x));
        assert!((s[0] - 0.9).abs() < 1e-12 && (s[1] - 0.2).abs() < 1e-12);
        // The row space is A₀'s: A's rows are combinations of A₀'s rows.
        let proj = a0.transpose() * (&a0 * a0.transpose()).try_inverse().unwrap() * &a0;
        assert!((&a * &proj - &a).norm() < 1e-10);
        assert!(DenseOperator::<Flex>::mcgdiff_matrix(&a0, &[0.9]).is_err());
    }
}
