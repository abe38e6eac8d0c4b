//! DPS — Diffusion Posterior Sampling (Chung et al., ICLR 2023, Alg. 1 and 2; reference code
//! `guided_diffusion/condition_methods.py` PosteriorSampling, docs/protocols.md §3.1–3.2).
//!
//! Per step t → s: with x_t requiring grad, (ε̂, v) = prior(x_t, t), x̂₀ = Tweedie(x_t, ε̂)
//! (clamped to [−1, 1] for images, the gradient flowing through the clamp), r = y − A(x̂₀),
//! g = ∇_{x_t} L(r) with L the *unsquared* norm of the likelihood (per sample), then
//!   x′ = Transition(x_t, x̂₀, ε̂, v) + noise,   x_s = x′ − scale·g.
//!
//! Step-size conventions, all expressed through `scale`:
//! - released code (`configs/*.yaml`), x_s = x′ − s·∇‖r‖: scale = s (preset `dps-repo`);
//! - paper (App. C.2/D.1): ζ_i = ζ′/‖r‖ on ∇‖r‖², and ∇‖r‖² = 2‖r‖∇‖r‖, so scale = 2ζ′
//!   (preset `dps-paper`);
//! - MCGdiff GMM script: ζ/‖r_i‖ on ∇‖r_i‖² with ζ = 0.1, i.e. scale = 0.2 (preset `gmm`).
//!
//! The released code takes ‖r‖ over the whole batch tensor, which couples the samples of a
//! batch; dipbench takes it per sample, which equals the reference at batch size 1 (how DPS is
//! run) and makes results independent of the batch size.

use burn::prelude::*;
use dipbench_nn::NnAutodiffBackend;
use dipbench_operators::SampleRng;
use serde::{Deserialize, Serialize};

use crate::Sampler;
use crate::common::{Prediction, Problem, input_grad, row_norms};
use crate::error::SamplerError;
use crate::grid::{GridKind, problem_chain};
use crate::transition::{Transition, step, step_drawn};
use dipbench_operators::noise::linear_combination;

/// The norm DPS differentiates (docs/protocols.md §1.9 for the Poisson forms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Likelihood {
    /// L = ‖r‖₂ (Gaussian noise; Alg. 1).
    Gaussian,
    /// The released code's Poisson guidance: L = ‖r‖₂·mean_i(1/|y_i|) (|y_i| floored at 1e-6,
    /// where the reference divides by zero).
    PoissonCode,
    /// The paper's Poisson guidance (Alg. 2): L = ‖r‖_Λ, Λ_ii = 1/(2ỹ_i), with r and
    /// ỹ = (y + 1)/2 in [0, 1] units and ỹ floored at 1/255 (one grey level).
    PoissonPaper,
}

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
    /// Stochasticity η of the transition (1 = DDPM; ignored by `ddpm-learned`).
    pub eta: f64,
    /// Guidance step: x_s = x′ − scale·∇_{x_t}L (module documentation).
    pub scale: f64,
    /// Clamp x̂₀ to [−c, c] before guidance (DPS code: c = 1 for images); 0 disables.
    pub clip_x0: f64,
    /// The guidance norm.
    pub likelihood: Likelihood,
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
            likelihood: Likelihood::Gaussian,
        }
    }

    /// The released image sampler: 1000 DDPM steps with learned variance, x̂₀ clamped to [−1, 1],
    /// guidance `scale` (the task's `configs/*.yaml` value, [`DpsConfig::repo_scale`]).
    pub fn image(scale: f64, likelihood: Likelihood) -> Self {
        Self { steps: 1000, grid: GridKind::Uniform, transition: Transition::DdpmLearned, eta: 1.0, scale, clip_x0: 1.0, likelihood }
    }

    /// `scale` of the released configs (FFHQ, σ_y = 0.05): SR 0.3, inpainting 0.5, Gaussian
    /// and motion deblur 0.3, phase retrieval 1.0, nonlinear deblur 0.3 (docs/protocols.md §3.2).
    pub fn repo_scale(task: &str) -> Option<f64> {
        Some(match task {
            "sr4" | "deblur_gauss" | "deblur_motion" | "deblur_nonlinear" => 0.3,
            "inpaint_box" | "inpaint_random" | "inpaint_random_92" => 0.5,
            "phase_retrieval" => 1.0,
            _ => return None,
        })
    }

    /// ζ′ of the paper (App. D.1) for a task, dataset family (`ffhq…`/`imagenet…`) and noise
    /// (`gaussian`/`poisson`); the preset's scale is 2ζ′ (module documentation).
    pub fn paper_zeta(task: &str, dataset: &str, noise: &str) -> Option<f64> {
        let imagenet = dataset.starts_with("imagenet");
        Some(match (noise, imagenet, task) {
            ("gaussian", false, "sr4" | "inpaint_box" | "inpaint_random" | "inpaint_random_92" | "deblur_gauss" | "deblur_motion") => 1.0,
            ("gaussian", true, "sr4" | "inpaint_box" | "inpaint_random" | "inpaint_random_92") => 1.0,
            ("gaussian", true, "deblur_gauss") => 0.4,
            ("gaussian", true, "deblur_motion") => 0.6,
            ("poisson", false, "sr4" | "deblur_gauss" | "deblur_motion") => 0.3,
            ("gaussian", false, "phase_retrieval") => 0.4,
            ("gaussian", false, "deblur_nonlinear") => 1.0,
            _ => return None,
        })
    }
}

/// The DPS sampler.
#[derive(Debug, Clone)]
pub struct Dps(pub DpsConfig);

/// Everything one DPS step computes (for checks against the reference).
#[derive(Debug, Clone)]
pub struct DpsStep<B: Backend> {
    /// The prediction at x_t (ε̂, v, clamped x̂₀), detached.
    pub prediction: Prediction<B>,
    /// L(y − A(x̂₀)) per row, `[n, 1]`.
    pub residual_norm: Tensor<B, 2>,
    /// g = ∇_{x_t} L.
    pub grad: Tensor<B, 2>,
    /// x′ = Transition(…) + noise, before guidance.
    pub x_prime: Tensor<B, 2>,
    /// x_s = x′ − scale·g.
    pub x_next: Tensor<B, 2>,
}

impl Dps {
    /// L(r) per row for the configured likelihood (module documentation).
    fn loss<B: Backend>(&self, y: Tensor<B, 2>, r: Tensor<B, 2>) -> Tensor<B, 2> {
        match self.0.likelihood {
            Likelihood::Gaussian => row_norms(r),
            Likelihood::PoissonCode => {
                let inv = y.abs().clamp_min(1e-6).recip().mean_dim(1);
                row_norms(r) * inv
            }
            Likelihood::PoissonPaper => {
                let y01 = y.add_scalar(1.0).div_scalar(2.0).clamp_min(1.0 / 255.0);
                let weighted = r.div_scalar(2.0).powf_scalar(2.0) / y01.mul_scalar(2.0);
                weighted.sum_dim(1).add_scalar(1e-30).sqrt()
            }
        }
    }

    /// One step x_t → x_s (s = `None`: the clean end) with standard normal noise `z` (`None`
    /// when the step adds none, [`draws_noise`]).
    pub fn step<B: NnAutodiffBackend>(&self, problem: &Problem<'_, B>, x_t: Tensor<B, 2>, t: usize, s: Option<usize>, z: Option<Tensor<B, 2>>) -> DpsStep<B> {
        let c = &self.0;
        let schedule = problem.prior.schedule();
        let (ab_t, ab_s) = (schedule.alpha_bar(t), schedule.alpha_bar_or_one(s));
        let (grad, prediction, residual_norm) = self.guidance(problem, x_t.clone(), t);
        let p = prediction.clone();
        let x_prime = step(c.transition, x_t, p.x0, p.eps, p.v, ab_t, ab_s, c.eta, z);
        let x_next = x_prime.clone() - grad.clone().mul_scalar(c.scale);
        DpsStep { prediction, residual_norm, grad, x_prime, x_next }
    }

    /// (g = ∇_{x_t}L, the detached prediction at x_t, L per row `[n, 1]`).
    fn guidance<B: NnAutodiffBackend>(&self, problem: &Problem<'_, B>, x_t: Tensor<B, 2>, t: usize) -> (Tensor<B, 2>, Prediction<B>, Tensor<B, 2>) {
        let c = &self.0;
        let learned = c.transition == Transition::DdpmLearned;
        let (grad, (prediction, residual_norm)) = input_grad(x_t, |x_in| {
            let p = Prediction::at(problem.prior, x_in, t, learned, c.clip_x0);
            let r = problem.y.clone() - problem.operator.forward(p.x0.clone());
            let l = self.loss(problem.y.clone(), r);
            (l.clone().sum_dim(0).reshape([1]), (p.detach(), l.detach()))
        });
        (grad, prediction, residual_norm)
    }
}

impl<B: NnAutodiffBackend> Sampler<B> for Dps {
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
        // `Dps::step` with the noise drawn inside the fused update: x′ = Transition(…) + σ·z in
        // one pass, then x′ − scale·g in another (the same numbers).
        for (t, s) in problem_chain(problem, c.grid, c.steps, "dps")? {
            let (ab_t, ab_s) = (schedule.alpha_bar(t), schedule.alpha_bar_or_one(s));
            let (grad, p, _) = self.guidance(problem, x.clone(), t);
            let x_prime = step_drawn(c.transition, x, p.x0, p.eps, p.v, ab_t, ab_s, c.eta, rng);
            x = linear_combination(vec![(x_prime, 1.0), (grad, -c.scale)]);
        }
        Ok(x)
    }
}
