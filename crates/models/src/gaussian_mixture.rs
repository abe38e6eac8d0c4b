//! Analytic priors: a Gaussian mixture whose components share one covariance Σ, and the single
//! Gaussian as its one-component case. Their score and denoiser are exact at every noise level,
//! which makes them the correctness floor of every sampler (docs/gmm.md).
//!
//! Diffused in the VE view (x = x₀ + σ·n), the mixture stays a mixture with the same weights,
//! means μ_k and covariance Σ + σ²I, so with P = (Σ + σ²I)⁻¹ and responsibilities
//!   r_k(x) ∝ w_k·exp(−½(x−μ_k)ᵀP(x−μ_k))
//! the score is exactly
//!   ∇ log p_σ(x) = P·(Σ_k r_k μ_k − x)
//! and the denoiser D(x; σ) = x + σ²·∇ log p_σ(x) (Tweedie). The MCGdiff benchmark uses Σ = I.

use burn::prelude::*;
use burn::tensor::activation::softmax;
use dipbench_nn::tensor::host_to_tensor;
use nalgebra::{DMatrix, DVector, SymmetricEigen};

use crate::error::ModelError;
use crate::prior::Prior;
use crate::schedule::VpSchedule;

/// The covariance Σ shared by every component of a [`GaussianMixture`].
#[derive(Debug, Clone, PartialEq)]
pub enum SharedCovariance {
    /// Σ = c·I (the MCGdiff benchmark: c = 1).
    Isotropic(f64),
    /// Σ = Q·diag(λ)·Qᵀ with Q orthonormal (columns are eigenvectors), λ > 0.
    Eigen {
        /// Q, d × d, orthonormal.
        basis: DMatrix<f64>,
        /// λ, the eigenvalues, all positive.
        eigenvalues: DVector<f64>,
    },
}

impl SharedCovariance {
    /// The dense d × d matrix Σ.
    pub fn matrix(&self, dim: usize) -> DMatrix<f64> {
        match self {
            Self::Isotropic(c) => DMatrix::identity(dim, dim) * *c,
            Self::Eigen { basis, eigenvalues } => basis * DMatrix::from_diagonal(eigenvalues) * basis.transpose(),
        }
    }

    /// Σ^{1/2}·z for one vector z (the symmetric square root).
    fn sqrt_apply(&self, z: &DVector<f64>) -> DVector<f64> {
        match self {
            Self::Isotropic(c) => z * c.sqrt(),
            Self::Eigen { basis, eigenvalues } => {
                let zq = basis.transpose() * z;
                basis * zq.component_mul(&eigenvalues.map(f64::sqrt))
            }
        }
    }
}

/// A Gaussian mixture p(x₀) = Σ_k w_k·N(x₀; μ_k, Σ) on the host, in f64.
#[derive(Debug, Clone, PartialEq)]
pub struct GaussianMixture {
    weights: Vec<f64>,
    means: DMatrix<f64>,
    covariance: SharedCovariance,
}

impl GaussianMixture {
    /// A mixture with the given weights (normalised here; must be ≥ 0 with a positive sum),
    /// means (K × d, one row per component) and shared covariance.
    pub fn new(weights: Vec<f64>, means: DMatrix<f64>, covariance: SharedCovariance) -> Result<Self, ModelError> {
        let (k, d) = means.shape();
        if weights.len() != k || k == 0 {
            return Err(ModelError::Shape {
                context: "Gaussian mixture weights".into(),
                expected: format!("{k} weights (one per mean row), at least one"),
                got: weights.len().to_string(),
            });
        }
        let total: f64 = weights.iter().sum();
        if weights.iter().any(|w| !(*w >= 0.0)) || !(total > 0.0) || !total.is_finite() {
            return Err(ModelError::Invalid {
                what: "mixture weights".into(),
                why: format!("must be non-negative with a positive finite sum, got {weights:?}"),
            });
        }
        match &covariance {
            SharedCovariance::Isotropic(c) if !(*c > 0.0) => {
                return Err(ModelError::Invalid { what: "isotropic covariance".into(), why: format!("c must be > 0, got {c}") });
            }
            SharedCovariance::Eigen { basis, eigenvalues } => {
                if basis.shape() != (d, d) || eigenvalues.len() != d {
                    return Err(ModelError::Shape {
                        context: "covariance eigen-decomposition".into(),
                        expected: format!("basis {d}×{d} and {d} eigenvalues"),
                        got: format!("basis {:?}, {} eigenvalues", basis.shape(), eigenvalues.len()),
                    });
                }
                if eigenvalues.iter().any(|l| !(*l > 0.0)) {
                    return Err(ModelError::Invalid { what: "covariance".into(), why: "must be positive definite (an eigenvalue is ≤ 0)".into() });
                }
            }
            _ => {}
        }
        let weights = weights.iter().map(|w| w / total).collect();
        Ok(Self { weights, means, covariance })
    }

    /// The 25-component mixture of the MCGdiff benchmark (docs/gmm.md): means
    /// μ_(i,j) = (−8i, −8j, −8i, −8j, …) for i, j ∈ {−2,…,2} (i outer loop), identity covariance.
    /// `dim` must be even. `weights` are used as given (normalised); the benchmark draws them as
    /// z²/Σz², z ~ N(0, I₂₅).
    pub fn mcgdiff(dim: usize, weights: Vec<f64>) -> Result<Self, ModelError> {
        if dim == 0 || !dim.is_multiple_of(2) {
            return Err(ModelError::Invalid { what: "MCGdiff mixture dimension".into(), why: format!("must be even and positive, got {dim}") });
        }
        let mut means = DMatrix::zeros(25, dim);
        for (row, (i, j)) in (-2i32..=2).flat_map(|i| (-2i32..=2).map(move |j| (i, j))).enumerate() {
            for c in 0..dim {
                means[(row, c)] = if c % 2 == 0 { -8.0 * i as f64 } else { -8.0 * j as f64 };
            }
        }
        Self::new(weights, means, SharedCovariance::Isotropic(1.0))
    }

    /// A single Gaussian N(mean, cov); `cov` must be symmetric positive definite.
    pub fn gaussian(mean: DVector<f64>, cov: DMatrix<f64>) -> Result<Self, ModelError> {
        let d = mean.len();
        if cov.shape() != (d, d) {
            return Err(ModelError::Shape { context: "Gaussian covariance".into(), expected: format!("{d}×{d}"), got: format!("{:?}", cov.shape()) });
        }
        let sym = (&cov + cov.transpose()) * 0.5;
        let eig = SymmetricEigen::new(sym);
        let covariance = SharedCovariance::Eigen { basis: eig.eigenvectors, eigenvalues: eig.eigenvalues };
        Self::new(vec![1.0], DMatrix::from_row_slice(1, d, mean.as_slice()), covariance)
    }

    /// Dimension d of a sample.
    pub fn dim(&self) -> usize {
        self.means.ncols()
    }

    /// Number of components K.
    pub fn n_components(&self) -> usize {
        self.means.nrows()
    }

    /// Normalised weights w_k.
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }

    /// Means, K × d (one row per component).
    pub fn means(&self) -> &DMatrix<f64> {
        &self.means
    }

    /// The shared covariance Σ.
    pub fn covariance(&self) -> &SharedCovariance {
        &self.covariance
    }

    /// Index of the component selected by a uniform draw u ∈ [0, 1) (inverse CDF of w).
    pub fn component_of(weights: &[f64], u: f64) -> usize {
        let mut acc = 0.0;
        for (k, w) in weights.iter().enumerate() {
            acc += w;
            if u < acc {
                return k;
            }
        }
        weights.iter().rposition(|w| *w > 0.0).unwrap_or(0)
    }

    /// One exact draw x₀ = μ_k + Σ^{1/2}·z with k chosen by `u` ∈ [0,1) and z ~ N(0, I_d) given.
    pub fn sample_one(&self, u: f64, z: &[f64]) -> DVector<f64> {
        let k = Self::component_of(&self.weights, u);
        let z = DVector::from_column_slice(z);
        self.means.row(k).transpose() + self.covariance.sqrt_apply(&z)
    }

    /// Exact VE score ∇ log p_σ(x) = P·(Σ_k r_k μ_k − x) at one point, in f64 on the host (the
    /// reference the tensor implementation is tested against).
    pub fn score_host(&self, x: &DVector<f64>, sigma: f64) -> DVector<f64> {
        let cov = self.covariance.matrix(self.dim()) + DMatrix::identity(self.dim(), self.dim()) * (sigma * sigma);
        let p = cov.try_inverse().expect("Σ + σ²I is positive definite");
        let logits: Vec<f64> = (0..self.n_components())
            .map(|k| {
                let diff = x - self.means.row(k).transpose();
                self.weights[k].ln() - 0.5 * (diff.transpose() * &p * &diff)[(0, 0)]
            })
            .collect();
        let r = softmax_host(&logits);
        let mbar = (0..self.n_components()).fold(DVector::zeros(self.dim()), |acc, k| acc + self.means.row(k).transpose() * r[k]);
        p * (mbar - x)
    }
}

/// Numerically stable softmax of host logits.
pub(crate) fn softmax_host(logits: &[f64]) -> Vec<f64> {
    let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = logits.iter().map(|l| (l - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|v| v / s).collect()
}

/// A [`GaussianMixture`] on a burn device: exact denoiser and ε̂ at every noise level, so any
/// sampler can run on it ([`Prior`]).
///
/// Work is done in the eigenbasis of Σ (the identity basis when Σ = c·I, which skips the two
/// d × d products), where P = (Σ + σ²I)⁻¹ is the diagonal (λ + σ²)⁻¹.
#[derive(Debug, Clone)]
pub struct GaussianMixturePrior<B: Backend> {
    mixture: GaussianMixture,
    schedule: VpSchedule,
    /// Q (d × d) when Σ is not isotropic.
    basis: Option<Tensor<B, 2>>,
    /// Means in the working basis, K × d, and their transpose.
    means_q: Tensor<B, 2>,
    means_q_t: Tensor<B, 2>,
    /// Squared means in the working basis, K × d (for ½ μᵀPμ).
    means_q_sq: Tensor<B, 2>,
    /// λ in the working basis, one per coordinate.
    lambda: Vec<f64>,
    /// log w as a 1 × K row.
    log_w: Tensor<B, 2>,
    device: B::Device,
}

impl<B: Backend> GaussianMixturePrior<B> {
    /// Puts `mixture` on `device`; `schedule` indexes the discrete ε̂ view (any schedule is exact).
    pub fn new(mixture: GaussianMixture, schedule: VpSchedule, device: &B::Device) -> Self {
        let (k, d) = mixture.means.shape();
        let (means_q, basis, lambda) = match &mixture.covariance {
            SharedCovariance::Isotropic(c) => (mixture.means.clone(), None, vec![*c; d]),
            SharedCovariance::Eigen { basis, eigenvalues } => {
                (&mixture.means * basis, Some(host_to_tensor::<B>(basis, device)), eigenvalues.iter().copied().collect())
            }
        };
        let means_q_t = host_to_tensor::<B>(&means_q.transpose(), device);
        let means_q_sq = host_to_tensor::<B>(&means_q.map(|v| v * v), device);
        let log_w: Vec<f32> = mixture.weights.iter().map(|w| w.ln() as f32).collect();
        let log_w = Tensor::<B, 1>::from_floats(log_w.as_slice(), device).reshape([1, k]);
        Self { means_q: host_to_tensor::<B>(&means_q, device), means_q_t, means_q_sq, basis, lambda, log_w, mixture, schedule, device: device.clone() }
    }

    /// The host mixture.
    pub fn mixture(&self) -> &GaussianMixture {
        &self.mixture
    }

    /// Exact VE score ∇ log p_σ(x) of a batch `[n, d]` (module documentation):
    /// logits_k = log w_k + (Pxq)·μq_k − ½ μq_kᵀPμq_k, r = softmax(logits), score = P(r·Mq − xq),
    /// where q denotes coordinates in the eigenbasis of Σ.
    pub fn score(&self, x: Tensor<B, 2>, sigma: f64) -> Tensor<B, 2> {
        let d = self.lambda.len();
        let xq = match &self.basis {
            Some(q) => x.matmul(q.clone()),
            None => x,
        };
        let p: Vec<f32> = self.lambda.iter().map(|l| (1.0 / (l + sigma * sigma)) as f32).collect();
        let p = Tensor::<B, 1>::from_floats(p.as_slice(), &self.device).reshape([1, d]);
        // ½ μq_kᵀ P μq_k for every k, as a 1 × K row.
        let quad = p.clone().matmul(self.means_q_sq.clone().transpose()).mul_scalar(0.5);
        let px = xq.clone() * p.clone();
        let logits = px.matmul(self.means_q_t.clone()) - quad + self.log_w.clone();
        let r = softmax(logits, 1);
        let score_q = (r.matmul(self.means_q.clone()) - xq) * p;
        match &self.basis {
            Some(q) => score_q.matmul(q.clone().transpose()),
            None => score_q,
        }
    }
}

impl<B: Backend> Prior<B> for GaussianMixturePrior<B> {
    fn name(&self) -> String {
        match self.mixture.n_components() {
            1 => format!("gaussian(d={})", self.mixture.dim()),
            k => format!("gmm(k={k},d={})", self.mixture.dim()),
        }
    }

    fn dim(&self) -> usize {
        self.mixture.dim()
    }

    fn sample_shape(&self) -> Vec<usize> {
        vec![self.mixture.dim()]
    }

    fn device(&self) -> B::Device {
        self.device.clone()
    }

    fn schedule(&self) -> &VpSchedule {
        &self.schedule
    }

    /// D(x; σ) = x + σ²·∇ log p_σ(x) (Tweedie; EDM eq. 3).
    fn denoise(&self, x: Tensor<B, 2>, sigma: f64) -> Tensor<B, 2> {
        let s = self.score(x.clone(), sigma);
        x + s.mul_scalar(sigma * sigma)
    }

    /// ε̂(x_t, t) = −σ_t·∇ log p_{σ_t}(x_t/√ᾱ_t): exact, and finite at ᾱ_t = 1 (σ_t = 0).
    fn eps(&self, x_t: Tensor<B, 2>, t: usize) -> Tensor<B, 2> {
        let ab = self.schedule.alpha_bar(t);
        let sigma = crate::schedule::ve_sigma(ab);
        self.score(x_t.div_scalar(ab.sqrt()), sigma).mul_scalar(-sigma)
    }
}
