//! The exact posterior of a [`GaussianMixture`] prior under a linear-Gaussian measurement
//! y = A·x₀ + σ_y·ε — the reference every sampler is measured against (docs/gmm.md).
//!
//! With shared prior covariance Σ, S = σ_y²I + AΣAᵀ and gain K = ΣAᵀS⁻¹ (Woodbury), the posterior
//! is again a mixture with one shared covariance:
//!   C = Σ − KAΣ = (Σ⁻¹ + AᵀA/σ_y²)⁻¹,
//!   m_k = μ_k + K(y − Aμ_k)          = C(Σ⁻¹μ_k + Aᵀy/σ_y²),
//!   π_k ∝ w_k·N(y; Aμ_k, S).
//! These are the formulas of the MCGdiff script's `get_posterior` (which inverts C directly).

use nalgebra::{Cholesky, DMatrix, DVector, Dyn};

use crate::error::ModelError;
use crate::gaussian_mixture::{GaussianMixture, SharedCovariance, softmax_host};

/// How samples of N(0, C) are drawn: C^{1/2}·z.
#[derive(Debug, Clone)]
enum CovSqrt {
    /// Σ = c·I: C = c·(I − V·diag(g)·Vᵀ) with A = U·diag(s)·Vᵀ and g = c·s²/(σ_y² + c·s²), so
    /// C^{1/2} = √c·(I − V·diag(h)·Vᵀ), h = 1 − √(1 − g). O(d·rank) per sample.
    IsotropicLowRank { scale: f64, v: DMatrix<f64>, h: DVector<f64> },
    /// General Σ: the Cholesky factor L of C (O(d²) per sample).
    Dense(DMatrix<f64>),
}

/// The exact posterior mixture Σ_k π_k·N(m_k, C) (module documentation).
#[derive(Debug, Clone)]
pub struct ExactPosterior {
    log_weights: Vec<f64>,
    weights: Vec<f64>,
    means: DMatrix<f64>,
    covariance: DMatrix<f64>,
    sqrt: CovSqrt,
}

impl ExactPosterior {
    /// The posterior of `prior` given y = A·x₀ + σ_y·ε (A is m × d, y has m entries).
    pub fn new(prior: &GaussianMixture, a: &DMatrix<f64>, sigma_y: f64, y: &DVector<f64>) -> Result<Self, ModelError> {
        let d = prior.dim();
        let m = a.nrows();
        if a.ncols() != d || y.len() != m {
            return Err(ModelError::Shape {
                context: "exact posterior".into(),
                expected: format!("A with {d} columns and y with A's {m} rows"),
                got: format!("A {:?}, y {}", a.shape(), y.len()),
            });
        }
        if !(sigma_y > 0.0) {
            return Err(ModelError::Invalid { what: "σ_y".into(), why: format!("the exact posterior needs σ_y > 0, got {sigma_y}") });
        }
        let sigma = prior.covariance().matrix(d);
        let sigma_at = &sigma * a.transpose(); // ΣAᵀ, d × m
        let s = a * &sigma_at + DMatrix::identity(m, m) * (sigma_y * sigma_y); // S = σ²I + AΣAᵀ
        let s_chol =
            Cholesky::new(s.clone()).ok_or_else(|| ModelError::Invalid { what: "S = σ_y²I + AΣAᵀ".into(), why: "not positive definite".into() })?;
        let s_inv = s_chol.inverse();
        let gain = &sigma_at * &s_inv; // K = ΣAᵀS⁻¹
        let mut covariance = &sigma - &gain * (a * &sigma); // C = Σ − K(AΣ): d·m·d products, not d³
        covariance = (&covariance + covariance.transpose()) * 0.5;
        let log_det_s: f64 = 2.0 * s_chol.l().diagonal().iter().map(|v| v.ln()).sum::<f64>();
        let k = prior.n_components();
        let mut means = DMatrix::zeros(k, d);
        let mut logits = Vec::with_capacity(k);
        for c in 0..k {
            let mu = prior.means().row(c).transpose();
            let r = y - a * &mu; // y − Aμ_k
            let m_k = &mu + &gain * &r;
            means.set_row(c, &m_k.transpose());
            let quad = (r.transpose() * &s_inv * &r)[(0, 0)];
            // log w_k + log N(y; Aμ_k, S)
            logits.push(prior.weights()[c].ln() - 0.5 * (quad + log_det_s + m as f64 * (2.0 * std::f64::consts::PI).ln()));
        }
        let weights = softmax_host(&logits);
        let lse = {
            let mx = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            mx + logits.iter().map(|l| (l - mx).exp()).sum::<f64>().ln()
        };
        let log_weights = logits.iter().map(|l| l - lse).collect();
        let sqrt = match prior.covariance() {
            SharedCovariance::Isotropic(c) => {
                let svd = a.clone().svd(false, true);
                let v_t = svd.v_t.expect("requested V");
                let g = svd.singular_values.map(|s| c * s * s / (sigma_y * sigma_y + c * s * s));
                CovSqrt::IsotropicLowRank { scale: c.sqrt(), v: v_t.transpose(), h: g.map(|g| 1.0 - (1.0 - g).sqrt()) }
            }
            SharedCovariance::Eigen { .. } => {
                let l = Cholesky::<f64, Dyn>::new(covariance.clone())
                    .ok_or_else(|| ModelError::Invalid { what: "posterior covariance".into(), why: "not positive definite".into() })?
                    .l();
                CovSqrt::Dense(l)
            }
        };
        Ok(Self { log_weights, weights, means, covariance, sqrt })
    }

    /// Normalised component weights π_k.
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }

    /// log π_k (normalised by log-sum-exp), accurate where π_k underflows.
    pub fn log_weights(&self) -> &[f64] {
        &self.log_weights
    }

    /// Component means m_k, K × d.
    pub fn means(&self) -> &DMatrix<f64> {
        &self.means
    }

    /// The shared component covariance C, d × d.
    pub fn component_covariance(&self) -> &DMatrix<f64> {
        &self.covariance
    }

    /// Mean of the whole posterior, Σ_k π_k m_k.
    pub fn mean(&self) -> DVector<f64> {
        (0..self.weights.len()).fold(DVector::zeros(self.means.ncols()), |acc, k| acc + self.means.row(k).transpose() * self.weights[k])
    }

    /// Covariance of the whole posterior, C + Σ_k π_k (m_k − m̄)(m_k − m̄)ᵀ.
    pub fn covariance(&self) -> DMatrix<f64> {
        let mbar = self.mean();
        (0..self.weights.len()).fold(self.covariance.clone(), |acc, k| {
            let dv = self.means.row(k).transpose() - &mbar;
            acc + &dv * dv.transpose() * self.weights[k]
        })
    }

    /// One exact posterior draw m_k + C^{1/2}·z, k chosen by the uniform `u`, z ~ N(0, I_d) given.
    pub fn sample_one(&self, u: f64, z: &[f64]) -> DVector<f64> {
        let k = GaussianMixture::component_of(&self.weights, u);
        let z = DVector::from_column_slice(z);
        let noise = match &self.sqrt {
            CovSqrt::IsotropicLowRank { scale, v, h } => {
                let c = v.transpose() * &z;
                (&z - v * c.component_mul(h)) * *scale
            }
            CovSqrt::Dense(l) => l * &z,
        };
        self.means.row(k).transpose() + noise
    }
}
