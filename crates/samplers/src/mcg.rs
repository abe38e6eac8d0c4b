//! MCG — Manifold Constrained Gradient (Chung et al., NeurIPS 2022; reference
//! `p_sample_loop_progressive`, spec/protocols.md §3.3), generalised from inpainting masks to
//! any linear operator with a pseudo-inverse.
//!
//! Per step t → s: x′ = Transition(x_t, x̂₀, ε̂); x″ = x′ − α·∇_{x_t}‖y − A·x̂₀‖ (unsquared, per
//! sample); then the projection onto the noisy measurement set
//!   x_s = x″ + A⁺(y_τ − A·x″),   y_τ = √ᾱ_τ·y + √(1−ᾱ_τ)·A·z,
//! where for a mask A⁺ = Aᵀ and this is the reference's x″⊙(1−m) + q_sample(y, τ)⊙m. The
//! reference re-noises y at the *current* index τ = t (a quirk kept as the default,
//! `renoise = "current"`); `renoise = "next"` uses τ = s. The gradient's component in A's row
//! space is overwritten by the projection, which is the reference's g⊙(1−m).

use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use dipbench_operators::SampleRng;
use serde::{Deserialize, Serialize};

use crate::common::{Problem, input_grad, row_norms, x0_from_eps};
use crate::error::SamplerError;
use crate::grid::{GridKind, problem_chain};
use crate::transition::{Transition, noise_std, step};
use crate::Sampler;

/// At which noise level the measurement is re-noised before the projection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Renoise {
    /// τ = t, the index the step starts from (reference code).
    Current,
    /// τ = s, the index the step lands on.
    Next,
}

/// MCG settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McgConfig {
    /// Number of grid points.
    pub steps: usize,
    /// How the grid is chosen.
    pub grid: GridKind,
    /// Reverse transition form.
    pub transition: Transition,
    /// Stochasticity η of the transition.
    pub eta: f64,
    /// α: x″ = x′ − α·∇‖y − A·x̂₀‖ (code: 1; DPS paper's baseline: the DPS step).
    pub scale: f64,
    /// Clamp x̂₀ to [−c, c]; 0 disables.
    pub clip_x0: f64,
    /// Re-noising level of y.
    pub renoise: Renoise,
}

impl McgConfig {
    /// GMM benchmark: the DPS step of the same benchmark (as the DPS paper ran MCG "with the
    /// same α as DPS"), reference re-noising.
    pub fn gmm() -> Self {
        Self {
            steps: 100,
            grid: GridKind::McgdiffAdapted,
            transition: Transition::DdpmEta,
            eta: 0.85,
            scale: 0.2,
            clip_x0: 0.0,
            renoise: Renoise::Current,
        }
    }
}

/// The MCG sampler (needs a linear operator with a pseudo-inverse).
#[derive(Debug, Clone)]
pub struct Mcg(pub McgConfig);

impl<B: AutodiffBackend> Sampler<B> for Mcg {
    fn name(&self) -> &'static str {
        "mcg"
    }

    fn nfe(&self, problem: &Problem<'_, B>) -> Result<usize, SamplerError> {
        Ok(problem_chain(problem, self.0.grid, self.0.steps, "mcg")?.len())
    }

    fn sample(&self, problem: &Problem<'_, B>, rng: &mut SampleRng) -> Result<Tensor<B, 2>, SamplerError> {
        let c = &self.0;
        let op = problem.operator.require_linear("MCG")?;
        op.require_svd("MCG's projection")?;
        let schedule = problem.prior.schedule();
        let (d, dev) = (problem.dim(), problem.device());
        let mut x = problem.initial_noise(rng, 1.0);
        for (t, s) in problem_chain(problem, c.grid, c.steps, "mcg")? {
            let (ab_t, ab_s) = (schedule.alpha_bar(t), schedule.alpha_bar_or_one(s));
            let (grad, (x0, eps)) = input_grad(x.clone(), |x_in| {
                let eps = problem.prior.eps(x_in.clone(), t);
                let mut x0 = x0_from_eps(x_in, eps.clone(), ab_t);
                if c.clip_x0 > 0.0 {
                    x0 = x0.clamp(-c.clip_x0, c.clip_x0);
                }
                let r = problem.y.clone() - problem.operator.forward(x0.clone());
                (row_norms(r).sum(), (x0.detach(), eps.detach()))
            });
            let sigma = noise_std(c.transition, ab_t, ab_s, c.eta);
            let noise = (sigma > 0.0).then(|| rng.normal::<B>(d, &dev).mul_scalar(sigma));
            let x2 = step(c.transition, x, x0, eps, ab_t, ab_s, c.eta, noise) - grad.mul_scalar(c.scale);
            let ab_tau = match c.renoise {
                Renoise::Current => ab_t,
                Renoise::Next => ab_s,
            };
            let mut y_tau = problem.y.clone().mul_scalar(ab_tau.sqrt());
            if ab_tau < 1.0 {
                y_tau = y_tau + op.forward(rng.normal::<B>(d, &dev)).mul_scalar((1.0 - ab_tau).sqrt());
            }
            x = op.project(x2, y_tau)?;
        }
        Ok(x)
    }
}
