//! MCG — Manifold Constrained Gradient (Chung et al., NeurIPS 2022; reference
//! `p_sample_loop_progressive`, docs/protocols.md §3.3), generalised from inpainting masks to
//! any linear operator with a pseudo-inverse.
//!
//! Per step t → s: x′ = Transition(x_t, x̂₀, ε̂); x″ = x′ − α·∇_{x_t}‖y − A·x̂₀‖ (unsquared, per
//! sample); then the projection onto the noisy measurement set
//!   x_s = x″ + A⁺(y_τ − A·x″),   y_τ = √ᾱ_τ·y + √(1−ᾱ_τ)·A·z,
//! where for a mask A⁺ = Aᵀ and this is the reference's x″⊙(1−m) + q_sample(y, τ)⊙m. The
//! reference re-noises y at the *current* index τ = t (a quirk kept as the default,
//! `renoise = "current"`); `renoise = "next"` uses τ = s. The gradient's component in A's row
//! space is overwritten by the projection, which is the reference's g⊙(1−m).
//!
//! Presets: `mcg-code` (α = 1 on ∇‖r‖, the released code), `mcg-paper` (α = 1/‖r‖ on ∇‖r‖²,
//! App. C, i.e. scale 2), both 1000 DDPM steps with learned variance and x̂₀ clamped; and
//! `projection`, the Score-SDE / ILVR baseline of the DPS tables: the same loop with no
//! manifold gradient (α = 0) and y re-noised at the level the step lands on.

use burn::prelude::*;
use dipbench_nn::NnAutodiffBackend;
use dipbench_operators::SampleRng;
use serde::{Deserialize, Serialize};

use crate::Sampler;
use crate::common::{Prediction, Problem, input_grad, row_norms};
use crate::error::SamplerError;
use crate::grid::{GridKind, problem_chain};
use crate::transition::{Transition, step_drawn};
use dipbench_operators::noise::linear_combination;

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
        Self { steps: 100, grid: GridKind::McgdiffAdapted, transition: Transition::DdpmEta, eta: 0.85, scale: 0.2, clip_x0: 0.0, renoise: Renoise::Current }
    }

    /// The image sampler of the reference (1000 DDPM steps, learned variance, x̂₀ clamped to
    /// [−1, 1], re-noising at the current index) with guidance `scale`: 1 for `mcg-code`, 2 for
    /// `mcg-paper`.
    pub fn image(scale: f64) -> Self {
        Self { steps: 1000, grid: GridKind::Uniform, transition: Transition::DdpmLearned, eta: 1.0, scale, clip_x0: 1.0, renoise: Renoise::Current }
    }

    /// Score-SDE / ILVR projection: [`McgConfig::image`] without the gradient, y re-noised at
    /// the level the step lands on.
    pub fn projection() -> Self {
        Self { scale: 0.0, renoise: Renoise::Next, ..Self::image(0.0) }
    }
}

/// The MCG sampler (needs a linear operator with a pseudo-inverse).
#[derive(Debug, Clone)]
pub struct Mcg(pub McgConfig);

impl<B: NnAutodiffBackend> Sampler<B> for Mcg {
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
        let learned = c.transition == Transition::DdpmLearned;
        for (t, s) in problem_chain(problem, c.grid, c.steps, "mcg")? {
            let (ab_t, ab_s) = (schedule.alpha_bar(t), schedule.alpha_bar_or_one(s));
            let (grad, p) = if c.scale != 0.0 {
                input_grad(x.clone(), |x_in| {
                    let p = Prediction::at(problem.prior, x_in, t, learned, c.clip_x0);
                    let r = problem.y.clone() - problem.operator.forward(p.x0.clone());
                    (row_norms(r).sum(), p.detach())
                })
            } else {
                let p = Prediction::at(problem.prior, x.clone().detach(), t, learned, c.clip_x0);
                (x.zeros_like(), p)
            };
            // Transition(…) + σ·z, then − scale·g, each in one pass.
            let x_prime = step_drawn(c.transition, x, p.x0, p.eps, p.v, ab_t, ab_s, c.eta, rng);
            let x2 = linear_combination(vec![(x_prime, 1.0), (grad, -c.scale)]);
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
