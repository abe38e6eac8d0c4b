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
use dipbench_nn::ops::mixture_score;
use dipbench_nn::tensor::host_to_tensor;
use dipbench_nn::{MixtureScales, NnBackend};
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
/// d × d products), where P = (Σ + σ²I)⁻¹ is the diagonal (λ + σ²)⁻¹, by one fused operation
/// ([`dipbench_nn::ops::mixture_score`]) with the means factored through a basis of their span:
/// μq_k = Σ_j C_kj·V_j, V `[r, d]` with orthonormal rows, r = rank of the means (2 for the
/// MCGdiff mixture, whatever d), so a sample costs r products of length d, not K.
#[derive(Debug, Clone)]
pub struct GaussianMixturePrior<B: Backend> {
    mixture: GaussianMixture,
    schedule: VpSchedule,
    /// Q (d × d) when Σ is not isotropic.
    basis: Option<Tensor<B, 2>>,
    /// V, an orthonormal basis of the span of the means in the working basis, r × d.
    span: Tensor<B, 2>,
    /// C, the means' coordinates in V, K × r.
    coords: Tensor<B, 2>,
    /// Means in the working basis, K × d, on the host (for ½ μq_kᵀPμq_k).
    means_q: DMatrix<f64>,
    /// λ in the working basis, one per coordinate.
    lambda: Vec<f64>,
    device: B::Device,
}

/// The means' span: V (r × d, orthonormal rows: the leading right singular vectors) and the
/// coordinates C = UΣ (K × r), with r the numerical rank (at least 1), so that M = C·V.
fn factor_means(means: &DMatrix<f64>) -> (DMatrix<f64>, DMatrix<f64>) {
    let (k, d) = means.shape();
    let svd = means.clone().svd(true, true);
    let (u, v_t) = (svd.u.expect("requested U"), svd.v_t.expect("requested Vᵀ"));
    let top = svd.singular_values.iter().cloned().fold(0.0, f64::max);
    let tol = top * k.max(d) as f64 * f64::EPSILON;
    let rank = svd.singular_values.iter().filter(|s| **s > tol).count().max(1);
    // nalgebra does not sort singular values: take the `rank` largest.
    let mut order: Vec<usize> = (0..svd.singular_values.len()).collect();
    order.sort_by(|a, b| svd.singular_values[*b].total_cmp(&svd.singular_values[*a]));
    let keep = &order[..rank];
    let span = DMatrix::from_fn(rank, d, |j, i| v_t[(keep[j], i)]);
    let coords = DMatrix::from_fn(k, rank, |c, j| u[(c, keep[j])] * svd.singular_values[keep[j]]);
    (span, coords)
}

impl<B: NnBackend> GaussianMixturePrior<B> {
    /// Puts `mixture` on `device`; `schedule` indexes the discrete ε̂ view (any schedule is exact).
    pub fn new(mixture: GaussianMixture, schedule: VpSchedule, device: &B::Device) -> Self {
        let d = mixture.dim();
        let (means_q, basis, lambda) = match &mixture.covariance {
            SharedCovariance::Isotropic(c) => (mixture.means.clone(), None, vec![*c; d]),
            SharedCovariance::Eigen { basis, eigenvalues } => {
                (&mixture.means * basis, Some(host_to_tensor::<B>(basis, device)), eigenvalues.iter().copied().collect())
            }
        };
        let (span, coords) = factor_means(&means_q);
        Self {
            span: host_to_tensor::<B>(&span, device),
            coords: host_to_tensor::<B>(&coords, device),
            means_q,
            basis,
            lambda,
            mixture,
            schedule,
            device: device.clone(),
        }
    }

    /// The host mixture.
    pub fn mixture(&self) -> &GaussianMixture {
        &self.mixture
    }

    /// Exact VE score ∇ log p_σ(x) of a batch `[n, d]` (module documentation):
    /// logits_k = log w_k + (Pxq)·μq_k − ½ μq_kᵀPμq_k, r = softmax(logits), score = P(r·Mq − xq),
    /// where q denotes coordinates in the eigenbasis of Σ.
    pub fn score(&self, x: Tensor<B, 2>, sigma: f64) -> Tensor<B, 2> {
        self.scaled_score(x, sigma, MixtureScales { input: 1.0, output: 1.0, skip: 0.0 })
    }

    /// s_out·∇ log p_σ(s_in·x) + s_skip·x in one fused operation (in the working basis; Q maps
    /// the skip term back to x since Q is orthonormal).
    fn scaled_score(&self, x: Tensor<B, 2>, sigma: f64, scales: MixtureScales) -> Tensor<B, 2> {
        let (k, d) = self.means_q.shape();
        let xq = match &self.basis {
            Some(q) => x.matmul(q.clone()),
            None => x,
        };
        let p: Vec<f64> = self.lambda.iter().map(|l| 1.0 / (l + sigma * sigma)).collect();
        // b_k = log w_k − ½ μq_kᵀPμq_k, in f64 on the host.
        let bias: Vec<f32> =
            (0..k).map(|c| (self.mixture.weights[c].ln() - 0.5 * (0..d).map(|i| p[i] * self.means_q[(c, i)].powi(2)).sum::<f64>()) as f32).collect();
        let p: Vec<f32> = p.iter().map(|v| *v as f32).collect();
        let p = Tensor::<B, 1>::from_floats(p.as_slice(), &self.device).reshape([1, d]);
        let bias = Tensor::<B, 1>::from_floats(bias.as_slice(), &self.device).reshape([1, k]);
        let out = mixture_score(xq, self.span.clone(), self.coords.clone(), p, bias, scales);
        match &self.basis {
            Some(q) => out.matmul(q.clone().transpose()),
            None => out,
        }
    }
}

impl<B: NnBackend> Prior<B> for GaussianMixturePrior<B> {
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
        self.scaled_score(x, sigma, MixtureScales { input: 1.0, output: sigma * sigma, skip: 1.0 })
    }

    /// ε̂(x_t, t) = −σ_t·∇ log p_{σ_t}(x_t/√ᾱ_t): exact, and finite at ᾱ_t = 1 (σ_t = 0).
    fn eps(&self, x_t: Tensor<B, 2>, t: usize) -> Tensor<B, 2> {
        let ab = self.schedule.alpha_bar(t);
        let sigma = crate::schedule::ve_sigma(ab);
        self.scaled_score(x_t, sigma, MixtureScales { input: 1.0 / ab.sqrt(), output: -sigma, skip: 0.0 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};

    type A = Autodiff<Flex>;

    /// A 3-component mixture in d = 5 with a full (rotated) covariance, and the MCGdiff mixture
    /// in d = 6 (25 means spanning 2 dimensions).
    fn mixtures() -> Vec<GaussianMixture> {
        let d = 5;
        let means = DMatrix::from_fn(3, d, |k, i| ((k * 7 + i * 3) % 5) as f64 - 2.0);
        let l = DMatrix::from_fn(d, d, |i, j| if i >= j { 0.3 + ((i * 5 + j) % 4) as f64 * 0.2 } else { 0.0 });
        let cov = &l * l.transpose() + DMatrix::identity(d, d) * 0.5;
        let eig = SymmetricEigen::new(cov);
        let rotated =
            GaussianMixture::new(vec![0.2, 0.5, 0.3], means, SharedCovariance::Eigen { basis: eig.eigenvectors, eigenvalues: eig.eigenvalues }).unwrap();
        let mcgdiff = GaussianMixture::mcgdiff(6, (1..=25).map(|k| k as f64).collect()).unwrap();
        vec![rotated, mcgdiff]
    }

    /// `n` rows: spread points, and as the last two, points half-way between MCGdiff means
    /// (coordinates near ±4), where the responsibilities are mixed and the softmax sensitive.
    fn points(n: usize, d: usize) -> Vec<f64> {
        let mut x: Vec<f64> = (0..(n - 2) * d).map(|i| ((i * 37 % 53) as f64 / 53.0 - 0.5) * 12.0).collect();
        x.extend((0..d).map(|i| 4.0 + 0.01 * i as f64));
        x.extend((0..d).map(|i| if i % 2 == 0 { 4.0 } else { -3.98 }));
        x
    }

    #[test]
    fn the_means_factor_through_their_span() {
        for g in mixtures() {
            let (span, coords) = factor_means(g.means());
            let rank = span.nrows();
            assert_eq!(rank, if g.n_components() == 25 { 2 } else { 3 });
            assert!((&span * span.transpose() - DMatrix::identity(rank, rank)).abs().max() < 1e-12);
            assert!((&coords * &span - g.means()).abs().max() < 1e-12);
        }
    }

    #[test]
    fn score_denoiser_and_eps_match_the_host_score() {
        // The host score is f64 straight from the formula. In float32 the logits (up to ~200
        // here) carry rounding of ~2e-5, which moves a mixed responsibility by up to ~5e-6 and
        // the score by that times the distance between means (8): 1e-4 of the largest entry.
        let dev = Default::default();
        let schedule = VpSchedule::mcgdiff_gmm();
        for g in mixtures() {
            let (n, d) = (6, g.dim());
            let prior = GaussianMixturePrior::<Flex>::new(g.clone(), schedule.clone(), &dev);
            let x = points(n, d);
            let xt = host_to_tensor::<Flex>(&DMatrix::from_row_slice(n, d, &x), &dev);
            for (sigma, t) in [(0.3, 5usize), (2.0, 200), (20.0, 800)] {
                let rows = |t: Tensor<Flex, 2>| -> Vec<f64> { t.into_data().convert::<f32>().to_vec::<f32>().unwrap().into_iter().map(f64::from).collect() };
                let (score, denoised) = (rows(prior.score(xt.clone(), sigma)), rows(prior.denoise(xt.clone(), sigma)));
                let ab = schedule.alpha_bar(t);
                let s_t = crate::schedule::ve_sigma(ab);
                let eps = rows(prior.eps(xt.clone(), t));
                for p in 0..n {
                    let xp = DVector::from_column_slice(&x[p * d..(p + 1) * d]);
                    let want = g.score_host(&xp, sigma);
                    let want_eps = g.score_host(&(&xp / ab.sqrt()), s_t) * -s_t;
                    let scale = want.amax().max(want_eps.amax()).max(xp.amax());
                    for i in 0..d {
                        let at = p * d + i;
                        assert!((score[at] - want[i]).abs() < 1e-4 * scale, "score σ = {sigma}, point {p}, coordinate {i}");
                        assert!((denoised[at] - (xp[i] + sigma * sigma * want[i])).abs() < 1e-4 * scale * (1.0 + sigma * sigma), "denoiser σ = {sigma}");
                        assert!((eps[at] - want_eps[i]).abs() < 1e-4 * scale, "ε̂ t = {t}, point {p}, coordinate {i}");
                    }
                }
            }
        }
    }

    #[test]
    fn denoiser_gradient_matches_central_differences_of_the_host_score() {
        // ∇ₓ⟨v, D(x)⟩ by the fused node against (⟨v, D(x + h·e_i)⟩ − ⟨v, D(x − h·e_i)⟩)/2h with
        // D = x + σ²·score_host in f64 (O(h²) ≈ 1e-10): float32 within 1e-4 of the largest entry.
        let dev = Default::default();
        for g in mixtures() {
            let d = g.dim();
            let sigma = 1.5;
            let prior = GaussianMixturePrior::<A>::new(g.clone(), VpSchedule::mcgdiff_gmm(), &dev);
            let x = points(3, d)[2 * d..].to_vec();
            let v: Vec<f64> = (0..d).map(|i| ((i * 5 % 7) as f64 / 7.0) - 0.4).collect();
            let xt = host_to_tensor::<A>(&DMatrix::from_row_slice(1, d, &x), &dev).require_grad();
            let vt = host_to_tensor::<A>(&DMatrix::from_row_slice(1, d, &v), &dev);
            let grads = (prior.denoise(xt.clone(), sigma) * vt).sum().backward();
            let got: Vec<f32> = xt.grad(&grads).unwrap().into_data().to_vec().unwrap();
            let pairing = |x: &DVector<f64>| (x + g.score_host(x, sigma) * (sigma * sigma)).dot(&DVector::from_column_slice(&v));
            let h = 1e-5;
            let numeric: Vec<f64> = (0..d)
                .map(|i| {
                    let (mut up, mut down) = (DVector::from_column_slice(&x), DVector::from_column_slice(&x));
                    up[i] += h;
                    down[i] -= h;
                    (pairing(&up) - pairing(&down)) / (2.0 * h)
                })
                .collect();
            let scale = numeric.iter().fold(1.0f64, |a, b| a.max(b.abs()));
            for i in 0..d {
                assert!((f64::from(got[i]) - numeric[i]).abs() < 1e-4 * scale, "coordinate {i}: {} vs {}", got[i], numeric[i]);
            }
        }
    }
}
