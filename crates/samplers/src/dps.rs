//! DPS — Diffusion Posterior Sampling (Chung et al., ICLR 2023, Alg. 1).
//!
//! Per step t → s: with x_t requiring grad, x̂₀ = Tweedie(x_t, ε̂(x_t, t)) (optionally clamped),
//! r = y − A(x̂₀), g = ∇_{x_t}‖r‖ (the *unsquared* norm, per sample), then
//! x_s = Transition(x_t, x̂₀, ε̂) − scale·g.
//!
//! Step-size conventions, all expressed through `scale`:
//! - released code (`PosteriorSampling`, spec/protocols.md §3.2): x_s = x′ − s·∇‖r‖, scale = s;
//! - paper (App. C.2): ζ_i = ζ′/‖r‖ on ∇‖r‖², and ∇‖r‖² = 2‖r‖∇‖r‖, so scale = 2ζ′;
//! - MCGdiff GMM script: ζ/‖r_i‖ on ∇‖r_i‖² with ζ = 0.1, i.e. scale = 0.2.
//!
//! The released code takes ‖r‖ over the whole batch tensor, which couples the samples of a
//! batch; dipbench takes it per sample, which equals the reference at batch size 1 (how DPS is
//! run) and makes results independent of the batch size.

use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use dipbench_operators::SampleRng;
use serde::{Deserialize, Serialize};

use crate::common::{Problem, row_norms, x0_from_eps, input_grad};
use crate::error::SamplerError;
use crate::grid::{GridKind, problem_chain};
use crate::transition::{Transition, noise_std, step};
use crate::Sampler;

/// DPS settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpsConfig {
    /// Number of grid points (network evaluations, plus one when the grid does not start clean).
    pub steps: usize,
    /// How the grid is chosen.
    pub grid: GridKind,
    /// Reverse transition form.
    pub transition: Transition,
    /// Stochasticity η of the transition (1 = DDPM).
    pub eta: f64,
    /// Guidance step: x_s = x′ − scale·∇_{x_t}‖y − A(x̂₀)‖ (module documentation).
    pub scale: f64,
    /// Clamp x̂₀ to [−c, c] before guidance (DPS code: c = 1 for images); 0 disables.
    pub clip_x0: f64,
}

impl DpsConfig {
    /// The MCGdiff GMM script's DPS: ζ = 0.1 normalised by the residual norm (scale 0.2), DDPM
    /// mean with η-scaled noise, the script's adapted grid, no clamping.
    pub fn gmm() -> Self {
        Self {
            steps: 100,
            grid: GridKind::McgdiffAdapted,
            transition: Transition::DdpmEta,
            eta: 0.85,
            scale: 0.2,
            clip_x0: 0.0,
        }
    }
}

/// The DPS sampler.
#[derive(Debug, Clone)]
pub struct Dps(pub DpsConfig);

impl<B: AutodiffBackend> Sampler<B> for Dps {
    fn name(&self) -> &'static str {
        "dps"
    }

    fn nfe(&self, problem: &Problem<'_, B>) -> Result<usize, SamplerError> {
        Ok(problem_chain(problem, self.0.grid, self.0.steps, "dps")?.len())
    }

    fn sample(&self, problem: &Problem<'_, B>, rng: &mut SampleRng) -> Result<Tensor<B, 2>, SamplerError> {
        let c = &self.0;
        let schedule = problem.prior.schedule();
        let mut x = problem.initial_noise(rng, 1.0);
        for (t, s) in problem_chain(problem, c.grid, c.steps, "dps")? {
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
            let noise = (sigma > 0.0).then(|| rng.normal::<B>(problem.dim(), &problem.device()).mul_scalar(sigma));
            let x_prime = step(c.transition, x, x0, eps, ab_t, ab_s, c.eta, noise);
            x = x_prime - grad.mul_scalar(c.scale);
        }
        Ok(x)
    }
}
