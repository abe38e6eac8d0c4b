//! RED-diff — regularisation by denoising diffusion (Mardani, Song, Kautz & Vahdat, ICLR 2024;
//! reference NVlabs/RED-diff `algos/reddiff.py`).
//!
//! A variational method: μ (one per sample row) is optimised with Adam over a descending sweep
//! of timesteps; at step t, with fresh ε, x_t = √ᾱ_t·μ + √(1−ᾱ_t)·ε and the loss
//!   ℓ(μ) = ‖y − A(μ)‖²/(2σ_y²) + λ·w_t·sg[ε̂(x_t, t) − ε]ᵀμ,   w_t = √((1−ᾱ_t)/ᾱ_t) ("linear"),
//! whose gradient is −∇‖y − A(μ)‖²/(2σ_y²) … taken by autodiff through A only (the denoiser term
//! is stop-gradient). The paper's form is used; the released code averages both terms over
//! elements and the whole batch, which makes Adam's ε depend on the batch size.
//! RED-diff returns μ: it is a mode-seeking method and its spread reflects only the optimiser.

use burn::prelude::*;
use dipbench_nn::NnAutodiffBackend;
use dipbench_operators::SampleRng;
use serde::{Deserialize, Serialize};

use crate::Sampler;
use crate::common::{Problem, input_grad};
use crate::error::SamplerError;
use crate::grid::{GridKind, problem_chain};

/// How μ starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RedDiffInit {
    /// μ₀ = A⁺y (reference; needs a pseudo-inverse).
    Pinv,
    /// μ₀ = 0.
    Zero,
}

/// RED-diff settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedDiffConfig {
    /// Number of grid points (Adam steps).
    pub steps: usize,
    /// How the grid is chosen.
    pub grid: GridKind,
    /// Adam learning rate.
    pub lr: f64,
    /// λ, the weight of the denoising regulariser.
    pub lambda: f64,
    /// Adam β₁.
    pub beta1: f64,
    /// Adam β₂ (reference: 0.99).
    pub beta2: f64,
    /// How μ starts.
    pub init: RedDiffInit,
}

impl RedDiffConfig {
    /// GMM benchmark: λ = 0.25 and Adam (0.9, 0.99) as the reference; lr 0.5 for the mixture's
    /// scale (its means lie up to 16·√(d/2) from the origin).
    pub fn gmm() -> Self {
        Self { steps: 100, grid: GridKind::Uniform, lr: 0.5, lambda: 0.25, beta1: 0.9, beta2: 0.99, init: RedDiffInit::Pinv }
    }

    /// Image setting: 1000 steps, λ = 0.25, Adam (0.9, 0.99) with lr 0.25, μ₀ = A⁺y.
    pub fn paper() -> Self {
        Self { steps: 1000, lr: 0.25, ..Self::gmm() }
    }
}

/// The RED-diff sampler.
#[derive(Debug, Clone)]
pub struct RedDiff(pub RedDiffConfig);

impl<B: NnAutodiffBackend> Sampler<B> for RedDiff {
    fn name(&self) -> &'static str {
        "reddiff"
    }

    fn differentiates_prior(&self) -> bool {
        false
    }

    fn nfe(&self, problem: &Problem<'_, B>) -> Result<usize, SamplerError> {
        Ok(problem_chain(problem, self.0.grid, self.0.steps, "reddiff")?.len())
    }

    fn sample(&self, problem: &Problem<'_, B>, rng: &mut SampleRng) -> Result<Tensor<B, 2>, SamplerError> {
        let c = &self.0;
        if !(problem.sigma_y > 0.0) {
            return Err(SamplerError::Unsupported { sampler: "reddiff".into(), why: "needs σ_y > 0 for its data term".into() });
        }
        let schedule = problem.prior.schedule();
        let (d, dev) = (problem.dim(), problem.device());
        let mut mu = match c.init {
            RedDiffInit::Pinv => problem.operator.require_linear("RED-diff init = pinv")?.pinv(problem.y.clone())?,
            RedDiffInit::Zero => Tensor::zeros([problem.n(), d], &dev),
        };
        let mut m = Tensor::<B, 2>::zeros([problem.n(), d], &dev);
        let mut v = Tensor::<B, 2>::zeros([problem.n(), d], &dev);
        let obs_scale = 0.5 / (problem.sigma_y * problem.sigma_y);
        for (k, (t, _)) in problem_chain(problem, c.grid, c.steps, "reddiff")?.into_iter().enumerate() {
            let ab_t = schedule.alpha_bar(t);
            let z = rng.normal::<B>(d, &dev);
            let x_t = mu.clone().mul_scalar(ab_t.sqrt()) + z.clone().mul_scalar((1.0 - ab_t).sqrt());
            let eps = problem.prior.eps(x_t, t);
            let w_t = c.lambda * ((1.0 - ab_t) / ab_t).sqrt();
            let (g_obs, ()) = input_grad(mu.clone(), |mu_in| {
                let r = problem.y.clone() - problem.operator.forward(mu_in);
                (r.powf_scalar(2.0).sum().mul_scalar(obs_scale), ())
            });
            let g = g_obs + (eps - z).mul_scalar(w_t);
            let step = (k + 1) as i32;
            m = m.mul_scalar(c.beta1) + g.clone().mul_scalar(1.0 - c.beta1);
            v = v.mul_scalar(c.beta2) + g.powf_scalar(2.0).mul_scalar(1.0 - c.beta2);
            let m_hat = m.clone().div_scalar(1.0 - c.beta1.powi(step));
            let v_hat = v.clone().div_scalar(1.0 - c.beta2.powi(step));
            mu = mu - (m_hat / (v_hat.sqrt().add_scalar(1e-8))).mul_scalar(c.lr);
        }
        Ok(mu)
    }
}
