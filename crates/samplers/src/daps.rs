//! DAPS — Decoupled Annealing Posterior Sampling (Zhang et al., CVPR 2025; reference code
//! `sampler.py`, `cores/scheduler.py`, `cores/mcmc.py`; docs/protocols.md §3.4).
//!
//! VE view throughout. x_T ~ N(0, σ_max²I); for each annealing level σ_k (k = 0…N_A−1):
//! (a) x̂₀ = Euler PF-ODE dx/dσ = (x − D(x;σ))/σ from σ_k down to σ_min^ODE on a poly-7 grid
//!     (N_ODE network evaluations);
//! (b) x₀ʸ ~ p(x₀ | x_t, y) ≈ N(x̂₀, σ_k²I)·p(y | x₀) by N_L Langevin steps started at x̂₀:
//!     x ← x + η_k·[−∇‖A(x)−y‖²/τ² + (x_t − x)/σ_k² + (x̂₀ − x_t)/σ_k²] + √(2η_k)·ε,
//!     η_k = η₀·(1 + k/(N_A+1)·(δ − 1)) (the reference's term order is kept);
//! (c) x_{k+1} = x₀ʸ + σ_{k+1}·ε, σ_{N_A} = 0, so the output is the last x₀ʸ.
//!
//! `main` and `legacy` are the two reference branches: legacy uses an N_A-point annealing grid
//! (σ_max … σ_min, then 0), an ODE grid that ends with a step to σ = 0, the data term
//! ‖A(x)−y‖²/(2τ²) (half as strong), η_k with k/N_A, and no Langevin at the last level.
//!
//! HMC instead of Langevin (`x0y = "hmc"`, the reference's `mc_algo: hmc`; LatentDAPS):
//! v ← ε₀, x ← x̂₀, then N_L times
//!     v ← m·v + √η_k·[−c·g + (x_t − x)/σ_k² + (x̂₀ − x_t)/σ_k²] + √(2(1−m))·ε,  x ← x + √η_k·v,
//! with g = ∇‖A(x)−y‖², clamped elementwise to [−1, 1] where `grad_clamp = 1` (LatentDAPS clamps in
//! latent space, the ∇ being taken through the decoder). No Metropolis correction. A row whose
//! chain turned NaN returns zeros (the reference zeroes its whole batch; rows here are
//! independent samples, so only that row is).
//!
//! LatentDAPS (`latent-daps` preset: the reference's `ldm` task group; docs/protocols.md §3.5)
//! is this sampler on a latent
//! prior with A replaced by A∘D (D the quantising decoder, [`crate::latent::LatentOperator`]):
//! 50 annealing levels from σ = 10 to 0.1, 2 Euler steps to σ = 0.001 per level, HMC with the
//! per-task settings of [`DapsConfig::latent_for_task`].
//!
//! Two dipbench options, off in the paper presets: `step_rule = "lipschitz"` sets
//! η_k = lr/L_k with L_k = c_τ‖A‖²/τ² + 1/σ_k² (the log-target's gradient Lipschitz constant for a
//! linear A), so Langevin stays stable whatever σ_y; `x0y = "exact"` draws x₀ʸ exactly from
//! N(x̂₀, σ_k²I)·N(y; Ax₀, σ_y²I) through A's SVD (the variant DDSMC runs on the GMM benchmark).
//!
//! `x0y = "langevin-closed-form"` draws the state of the N_L Langevin steps in one go. For a
//! linear A with an SVD A = U·S·Vᵀ and no gradient clamp the Langevin step is linear with
//! Gaussian noise, and it acts on each coordinate of A's spectral basis apart. With
//! k = η/σ_k² and the data weight c (1/τ², or 1/(2τ²) on legacy), coordinate i (singular value
//! s_i, x̄ᵢ = v_iᵀx, ȳᵢ = u_iᵀy) moves as
//!     x̄ᵢ ← aᵢ·x̄ᵢ + k·x̄̂₀ᵢ + 2cη·s_i·ȳᵢ + √(2η)·ε̄ᵢ,   aᵢ = 1 − k − 2cη·s_i²,
//! and the null space of A as s = 0. From x̂₀, after N_L steps, with G(a) = Σ_{j<N_L} aʲ:
//!     x̄ᵢ ~ N((a_iᴺᴸ + k·G(aᵢ))·x̄̂₀ᵢ + 2cη·s_i·G(aᵢ)·ȳᵢ,  2η·G(aᵢ²)),
//!     null part ~ N(null part of x̂₀, 2η·G((1 − k)²)·I)
//! (the null-space mean stays x̂₀'s: (1 − k)ᴺᴸ + k·G(1 − k) = 1). This is the law of the N_L
//! steps exactly, drawn with one normal draw per level instead of N_L: the same distribution as
//! `langevin`, other draws.

use burn::prelude::*;
use dipbench_models::schedule::karras_grid;
use dipbench_nn::NnAutodiffBackend;
use dipbench_operators::operator::scale_columns;
use dipbench_operators::{LeastSquaresTerm, SampleRng, SvdView};
use serde::{Deserialize, Serialize};

use crate::Sampler;
use crate::common::{Problem, input_grad};
use crate::error::SamplerError;

/// Which reference branch DAPS follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DapsVariant {
    /// `main` @ 098df6b (DAPS-1K as released).
    Main,
    /// `legacy` @ 25471a8 (the arXiv-era code).
    Legacy,
}

/// How the Langevin step size η_k is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepRule {
    /// η_k = lr·(1 + ratio_k·(δ − 1)) as the reference.
    Fixed,
    /// η_k = lr·(1 + ratio_k·(δ − 1))/L_k (module documentation); needs a linear operator.
    Lipschitz,
}

/// How x₀ʸ is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum X0y {
    /// Langevin dynamics as the reference.
    Langevin,
    /// Exact Gaussian conditional for a linear operator with SVD and Gaussian noise σ_y.
    Exact,
    /// Hamiltonian Monte Carlo without Metropolis correction, as the reference's `hmc`
    /// (module documentation); needs `momentum`.
    Hmc,
    /// The N_L Langevin steps' Gaussian law in closed form, one draw per level, for a linear
    /// operator with SVD and no gradient clamp (module documentation).
    LangevinClosedForm,
}

/// DAPS settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DapsConfig {
    /// Reference branch.
    pub variant: DapsVariant,
    /// N_A, annealing levels.
    pub annealing_steps: usize,
    /// σ_max of the annealing grid (and of x_T).
    pub sigma_max: f64,
    /// σ_min of the annealing grid.
    pub sigma_min: f64,
    /// ρ of the poly-ρ grids (7).
    pub rho: f64,
    /// N_ODE, Euler steps per x̂₀.
    pub ode_steps: usize,
    /// Where the PF-ODE stops (0.01).
    pub ode_sigma_min: f64,
    /// How x₀ʸ is drawn.
    pub x0y: X0y,
    /// N_L, Langevin (or HMC) steps per level.
    pub langevin_steps: usize,
    /// η₀ (or the fraction of 1/L_k under `step_rule = "lipschitz"`).
    pub lr: f64,
    /// δ, final fraction of η₀ (lr_min_ratio).
    pub lr_min_ratio: f64,
    /// τ, the data-term scale.
    pub tau: f64,
    /// Step-size rule.
    pub step_rule: StepRule,
    /// m, the HMC momentum (`x0y = "hmc"` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub momentum: Option<f64>,
    /// c: the data gradient ∇‖A(x)−y‖² is clamped elementwise to [−c, c] (LatentDAPS: 1); no
    /// clamp when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grad_clamp: Option<f64>,
}

impl DapsConfig {
    /// DAPS-1K, main branch, with the per-task Langevin settings left at the super-resolution
    /// values (N_L = 100, η₀ = 1e-4, τ = 0.01, δ = 0.01).
    pub fn daps_1k() -> Self {
        Self {
            variant: DapsVariant::Main,
            annealing_steps: 200,
            sigma_max: 100.0,
            sigma_min: 0.1,
            rho: 7.0,
            ode_steps: 5,
            ode_sigma_min: 0.01,
            x0y: X0y::Langevin,
            langevin_steps: 100,
            lr: 1e-4,
            lr_min_ratio: 0.01,
            tau: 0.01,
            step_rule: StepRule::Fixed,
            momentum: None,
            grad_clamp: None,
        }
    }

    /// LatentDAPS-100 (the `ldm` task group of the reference configs): 50 annealing levels
    /// σ = 10 → 0.1 (poly-7), 2 Euler PF-ODE steps per level down to σ = 0.001, HMC in latent
    /// space with τ = 0.01 and the data gradient clamped to [−1, 1]; N_L, η₀, δ and m at the
    /// super-resolution values until [`DapsConfig::latent_for_task`] sets them.
    pub fn latent() -> Self {
        Self {
            variant: DapsVariant::Main,
            annealing_steps: 50,
            sigma_max: 10.0,
            sigma_min: 0.1,
            rho: 7.0,
            ode_steps: 2,
            ode_sigma_min: 0.001,
            x0y: X0y::Hmc,
            langevin_steps: 24,
            lr: 1.35e-4,
            lr_min_ratio: 0.023,
            tau: 0.01,
            step_rule: StepRule::Fixed,
            momentum: Some(0.86),
            grad_clamp: Some(1.0),
        }
    }

    /// LatentDAPS's per-task HMC settings (N_L, η₀, δ, m) of the `ldm` task configs, the same
    /// for FFHQ and ImageNet. `None` for a task the configs do not have.
    pub fn latent_for_task(self, task: &str) -> Option<Self> {
        let (steps, lr, ratio, m) = match task {
            "sr4" => (24, 1.35e-4, 0.023, 0.86),
            "inpaint_box" => (15, 9.02e-6, 0.13, 0.74),
            "inpaint_random" => (38, 8.40e-6, 0.013, 0.92),
            "deblur_gauss" => (35, 2.70e-6, 0.95, 0.95),
            "deblur_motion" => (49, 2.4e-5, 0.041, 0.45),
            "phase_retrieval" => (65, 2.1e-5, 0.12, 0.41),
            "deblur_nonlinear" => (80, 3.71e-6, 0.024, 0.91),
            "hdr" => (38, 4.52e-6, 0.015, 0.58),
            _ => return None,
        };
        Some(Self { langevin_steps: steps, lr, lr_min_ratio: ratio, momentum: Some(m), ..self })
    }

    /// DAPS-4K: 4000 NFE as 400 annealing levels × 10 ODE steps. The split is second-hand
    /// (two third-party notes; docs/protocols.md §3.4), the repository ships no 4K config.
    pub fn daps_4k() -> Self {
        Self { annealing_steps: 400, ode_steps: 10, ..Self::daps_1k() }
    }

    /// DAPS-1K on the `legacy` branch (annealing grid ending at σ_min, ODE to σ = 0, data term
    /// ‖·‖²/(2τ²)).
    pub fn legacy() -> Self {
        Self { variant: DapsVariant::Legacy, ..Self::daps_1k() }
    }

    /// The per-task Langevin settings of `configs/task/*.yaml` (pixel group; docs/protocols.md
    /// §3.4): N_L = 100 and η₀ = 1e-4 (sr4, inpaint_random, deblur_gauss), 5e-5 (inpaint_box,
    /// deblur_motion, phase_retrieval), 2e-5 (hdr); deblur_nonlinear N_L = 200, η₀ = 1e-5 on main
    /// and 100, 5e-5 on legacy. `None` for a task the configs do not have.
    pub fn for_task(self, task: &str) -> Option<Self> {
        let (steps, lr) = match (task, self.variant) {
            ("sr4" | "inpaint_random" | "deblur_gauss", _) => (100, 1e-4),
            ("inpaint_box" | "deblur_motion" | "phase_retrieval", _) => (100, 5e-5),
            ("hdr", _) => (100, 2e-5),
            ("deblur_nonlinear", DapsVariant::Main) => (200, 1e-5),
            ("deblur_nonlinear", DapsVariant::Legacy) => (100, 5e-5),
            _ => return None,
        };
        Some(Self { langevin_steps: steps, lr, ..self })
    }

    /// The GMM-benchmark setting: DAPS-1K's structure with the annealing grid from the prior's
    /// largest σ, τ = √2·σ_y so that the Langevin target is the exact likelihood (τ is set by
    /// `tau = 0`), and Lipschitz-scaled Langevin steps (lr = ¼ of 1/L_k) since the GMM's σ_y spans
    /// two orders of magnitude; 20 Langevin steps per level (on the GMM table 5 to 50 steps
    /// agree within the confidence intervals, but on the closed-form Gaussian test 10 steps
    /// triple the error of the posterior mean).
    pub fn gmm() -> Self {
        Self {
            annealing_steps: 100,
            sigma_max: 150.0,
            sigma_min: 0.01,
            langevin_steps: 20,
            lr: 0.25,
            lr_min_ratio: 1.0,
            tau: 0.0,
            step_rule: StepRule::Lipschitz,
            ..Self::daps_1k()
        }
    }

    /// τ = 0 means "the true likelihood": τ = √2·σ_y for the main branch's ‖·‖²/τ², σ_y for
    /// legacy's ‖·‖²/(2τ²).
    fn tau_for(&self, sigma_y: f64) -> f64 {
        match (self.tau > 0.0, self.variant) {
            (true, _) => self.tau,
            (false, DapsVariant::Main) => std::f64::consts::SQRT_2 * sigma_y,
            (false, DapsVariant::Legacy) => sigma_y,
        }
    }

    /// The annealing levels σ_0 … σ_{N_A} (the last is 0).
    pub fn annealing_sigmas(&self) -> Vec<f64> {
        let mut s = match self.variant {
            DapsVariant::Main => {
                let mut g = karras_grid(self.sigma_max, self.sigma_min, self.annealing_steps + 1, self.rho);
                g.pop();
                g
            }
            DapsVariant::Legacy => karras_grid(self.sigma_max, self.sigma_min, self.annealing_steps, self.rho),
        };
        s.push(0.0);
        s
    }

    /// The PF-ODE grid from σ down (main: N_ODE+1 poly-7 points to ode_sigma_min; legacy: N_ODE
    /// points then 0).
    pub fn ode_sigmas(&self, sigma: f64) -> Vec<f64> {
        match self.variant {
            DapsVariant::Main => karras_grid(sigma, self.ode_sigma_min, self.ode_steps + 1, self.rho),
            DapsVariant::Legacy => {
                let mut g = karras_grid(sigma, self.ode_sigma_min, self.ode_steps, self.rho);
                g.push(0.0);
                g
            }
        }
    }

    /// The learning-rate multiplier (1 + ratio·(δ − 1)) at annealing step k.
    pub fn lr_multiplier(&self, k: usize) -> f64 {
        let denom = match self.variant {
            DapsVariant::Main => self.annealing_steps + 1,
            DapsVariant::Legacy => self.annealing_steps,
        };
        1.0 + (k as f64 / denom as f64) * (self.lr_min_ratio - 1.0)
    }
}

/// The DAPS sampler.
#[derive(Debug, Clone)]
pub struct Daps(pub DapsConfig);

impl Daps {
    /// x̂₀ by Euler on the PF-ODE over `grid` (decreasing), in the reference's float recipe:
    /// f = −(s·((D(x;s) − x)/s²)), x ← x + (σ_{j+1} − σ_j)·f.
    pub fn ode_x0<B: Backend>(prior: &dyn dipbench_models::Prior<B>, x: Tensor<B, 2>, grid: &[f64]) -> Tensor<B, 2> {
        grid.windows(2).fold(x, |x, w| {
            let s = w[0];
            let score = (prior.denoise(x.clone(), s) - x.clone()).div_scalar(s * s);
            let f = score.mul_scalar(-s);
            x + f.mul_scalar(w[1] - w[0])
        })
    }

    /// N_L Langevin steps on x₀ from x̂₀ at level σ with step `lr` (module documentation; the
    /// reference's (x_t − x)/σ² and (x̂₀ − x_t)/σ² terms are summed, so x_t drops out).
    pub fn langevin<B: NnAutodiffBackend>(
        &self,
        problem: &Problem<'_, B>,
        x0hat: &Tensor<B, 2>,
        sigma: f64,
        lr: f64,
        tau: f64,
        rng: &mut SampleRng,
    ) -> Tensor<B, 2> {
        let data_scale = self.data_scale(tau);
        // x ← x + η·[−c·∇‖A(x) − y‖² + (x_t − x)/σ² + (x̂₀ − x_t)/σ²] + √(2η)·ε, with c the data
        // scale. The x_t terms cancel, so one fused pass computes
        // x ← (1 − η/σ²)·x + (η/σ²)·x̂₀ − η·c·∇ + √(2η)·ε.
        let k = lr / (sigma * sigma);
        let mut x = x0hat.clone();
        // A dense operator without clamping: the gradient 2Aᵀ(Ax − y) is made inside the update,
        // row by row, where the backend fuses it (the same sum; its rounding differs).
        let dense = match self.0.grad_clamp {
            None => problem.operator.as_linear().and_then(|op| op.dense_matrix()),
            Some(_) => None,
        };
        for _ in 0..self.0.langevin_steps {
            let mut terms = vec![(x, 1.0 - k), (x0hat.clone(), k)];
            x = match &dense {
                Some(a) => {
                    let ls = LeastSquaresTerm { a: a.clone(), y: problem.y.clone(), c: -lr * data_scale * 2.0 };
                    rng.combine_least_squares(terms, ls, (2.0 * lr).sqrt())
                }
                None => {
                    let (grad, f) = scaled_data_grad(problem, terms[0].0.clone());
                    terms.push((self.clamped(grad, f), -lr * data_scale * f));
                    rng.combine(terms, (2.0 * lr).sqrt())
                }
            };
        }
        x
    }

    /// The state of [`Daps::langevin`]'s N_L steps drawn from its Gaussian law in one go, for a
    /// linear operator with SVD (module documentation: `x0y = "langevin-closed-form"`). One
    /// normal draw z: row-space coordinates αᵢ·x̄̂₀ᵢ + βᵢ·ȳᵢ + sdᵢ·(Vᵀz)ᵢ, null part of
    /// x̂₀ + sd_null·z ([`langevin_closed_form`]).
    pub fn langevin_in_closed_form<B: NnAutodiffBackend>(
        &self,
        problem: &Problem<'_, B>,
        x0hat: &Tensor<B, 2>,
        sigma: f64,
        lr: f64,
        tau: f64,
        rng: &mut SampleRng,
    ) -> Result<Tensor<B, 2>, SamplerError> {
        if self.0.grad_clamp.is_some() {
            return Err(SamplerError::Config {
                sampler: "daps".into(),
                key: "x0y".into(),
                why: "\"langevin-closed-form\" needs a linear Langevin step: unset grad_clamp".into(),
            });
        }
        let svd = problem.operator.require_linear("DAPS x0y = langevin-closed-form")?.require_svd("DAPS x0y = langevin-closed-form")?;
        let law = langevin_closed_form(svd.singular_values(), lr / (sigma * sigma), 2.0 * lr * self.data_scale(tau), lr, self.0.langevin_steps);
        Ok(spectral_gaussian(problem, svd, x0hat.clone(), &law, rng))
    }

    /// N_L HMC steps on x₀ from x̂₀ at level σ with step `lr` and momentum m (module
    /// documentation). Draws v₀, then one ε per step.
    pub fn hmc<B: NnAutodiffBackend>(
        &self,
        problem: &Problem<'_, B>,
        x0hat: &Tensor<B, 2>,
        sigma: f64,
        lr: f64,
        tau: f64,
        rng: &mut SampleRng,
    ) -> Result<Tensor<B, 2>, SamplerError> {
        let m = self.momentum()?;
        let data_scale = self.data_scale(tau);
        let step = lr.sqrt();
        let k = step / (sigma * sigma);
        // v₀ ~ N(0, I).
        let mut v = rng.normal::<B>(problem.dim(), &problem.device());
        let mut x = x0hat.clone();
        for _ in 0..self.0.langevin_steps {
            let (grad, f) = scaled_data_grad(problem, x.clone());
            let grad = self.clamped(grad, f);
            // v ← m·v + √η·[−c·g + (x̂₀ − x)/σ²] + √(2(1−m))·ε (the x_t terms cancel);
            // x ← x + √η·v.
            v = rng.combine(vec![(v, m), (grad, -step * data_scale * f), (x0hat.clone(), k), (x.clone(), -k)], (2.0 * (1.0 - m)).sqrt());
            x = x + v.clone().mul_scalar(step);
        }
        // A row whose chain diverged (NaN persists through x ← x + √η·v) returns zeros.
        let [n, d] = x.dims();
        let diverged = x.clone().is_nan().any_dim(1).expand([n, d]);
        Ok(x.mask_fill(diverged, 0.0))
    }

    /// c, the data term's weight: 1/τ² for main's ‖A(x)−y‖²/τ², 1/(2τ²) for legacy's.
    fn data_scale(&self, tau: f64) -> f64 {
        match self.0.variant {
            DapsVariant::Main => 1.0 / (tau * tau),
            DapsVariant::Legacy => 0.5 / (tau * tau),
        }
    }

    /// m, required by `x0y = "hmc"` and in [0, 1).
    fn momentum(&self) -> Result<f64, SamplerError> {
        match self.0.momentum {
            Some(m) if (0.0..1.0).contains(&m) => Ok(m),
            Some(m) => Err(SamplerError::Config { sampler: "daps".into(), key: "momentum".into(), why: format!("{m} is not in [0, 1)") }),
            None => Err(SamplerError::Config { sampler: "daps".into(), key: "momentum".into(), why: "x0y = \"hmc\" needs a momentum m in [0, 1)".into() }),
        }
    }

    /// The data gradient clamped elementwise to [−c, c] when `grad_clamp = c` is set.
    /// `grad` is g/f for the gradient g (f = 2 or 1, [`scaled_data_grad`]): clamping g to
    /// [−c, c] is clamping g/f to [−c/f, c/f], exactly, f being a power of two.
    fn clamped<B: Backend>(&self, grad: Tensor<B, 2>, f: f64) -> Tensor<B, 2> {
        match self.0.grad_clamp {
            Some(c) => grad.clamp(-c / f, c / f),
            None => grad,
        }
    }

    /// Exact draw from N(x̂₀, r²I)·N(y; Ax₀, σ_y²I) in A's spectral basis: row-space coordinate i
    /// has precision 1/r² + s_i²/σ_y² and mean var·(x̄̂₀ᵢ/r² + s_i·ȳᵢ/σ_y²); the null space keeps
    /// N(x̂₀, r²).
    fn exact_x0y<B: NnAutodiffBackend>(problem: &Problem<'_, B>, x0hat: Tensor<B, 2>, r: f64, rng: &mut SampleRng) -> Result<Tensor<B, 2>, SamplerError> {
        let svd = problem.operator.require_linear("DAPS x0y = exact")?.require_svd("DAPS x0y = exact")?;
        let s = svd.singular_values();
        let sy2 = problem.sigma_y * problem.sigma_y;
        let var: Vec<f64> = s.iter().map(|si| 1.0 / (1.0 / (r * r) + si * si / sy2)).collect();
        let law = LangevinLaw {
            x0: var.iter().map(|v| v / (r * r)).collect(),
            y: var.iter().zip(s).map(|(v, si)| v * si / sy2).collect(),
            sd: var.iter().map(|v| v.sqrt()).collect(),
            null_sd: r,
        };
        Ok(spectral_gaussian(problem, svd, x0hat, &law, rng))
    }
}

/// A Gaussian law in A's spectral basis: per singular value, the mean's coefficients of x̄̂₀ᵢ and
/// ȳᵢ and the standard deviation; and the null space's standard deviation (its mean is x̂₀'s).
/// [`langevin_closed_form`] gives that of N_L Langevin steps from x̂₀ (module documentation,
/// `x0y = "langevin-closed-form"`); `x0y = "exact"` uses it for the exact conditional.
#[derive(Debug, Clone, PartialEq)]
pub struct LangevinLaw {
    /// The coefficient of x̄̂₀ᵢ (Langevin: aᵢᴺᴸ + k·G(aᵢ)).
    pub x0: Vec<f64>,
    /// The coefficient of ȳᵢ (Langevin: 2cη·s_i·G(aᵢ)).
    pub y: Vec<f64>,
    /// The standard deviation (Langevin: √(2η·G(aᵢ²))).
    pub sd: Vec<f64>,
    /// The null space's standard deviation (Langevin: √(2η·G((1 − k)²))).
    pub null_sd: f64,
}

/// One draw from a Gaussian law given per spectral coordinate of A (module documentation):
/// with z the next normal draw, coordinates αᵢ·x̄̂₀ᵢ + βᵢ·ȳᵢ + sdᵢ·(Vᵀz)ᵢ in A's row space and the
/// null part of x̂₀ + sd_null·z (the exact conditional of `x0y = "exact"` and the closed-form
/// Langevin law both have this form).
fn spectral_gaussian<B: NnAutodiffBackend>(
    problem: &Problem<'_, B>,
    svd: &dyn SvdView<B>,
    x0hat: Tensor<B, 2>,
    law: &LangevinLaw,
    rng: &mut SampleRng,
) -> Tensor<B, 2> {
    let z = rng.normal::<B>(problem.dim(), &problem.device());
    let coords = scale_columns(svd.vt(x0hat.clone()), &law.x0) + scale_columns(svd.ut(problem.y.clone()), &law.y) + scale_columns(svd.vt(z.clone()), &law.sd);
    svd.v(coords) + svd.null_part(x0hat + z.mul_scalar(law.null_sd))
}

/// [`LangevinLaw`] for singular values `s`, k = η/σ², `data` = 2cη, step η = `lr` and
/// `steps` = N_L: aᵢ = 1 − k − data·s_i², G(a) = Σ_{j<N_L} aʲ summed term by term (no
/// cancellation at a ≈ 1).
pub fn langevin_closed_form(s: &[f64], k: f64, data: f64, lr: f64, steps: usize) -> LangevinLaw {
    let geometric = |a: f64| -> f64 {
        let (mut sum, mut power) = (0.0, 1.0);
        for _ in 0..steps {
            sum += power;
            power *= a;
        }
        sum
    };
    let a: Vec<f64> = s.iter().map(|si| 1.0 - k - data * si * si).collect();
    LangevinLaw {
        x0: a.iter().map(|&ai| ai.powi(steps as i32) + k * geometric(ai)).collect(),
        y: a.iter().zip(s).map(|(&ai, si)| data * si * geometric(ai)).collect(),
        sd: a.iter().map(|&ai| (2.0 * lr * geometric(ai * ai)).sqrt()).collect(),
        null_sd: (2.0 * lr * geometric((1.0 - k) * (1.0 - k))).sqrt(),
    }
}

/// ∇ₓ‖A(x) − y‖² per row, the data term of DAPS's Langevin/HMC target: 2Aᵀ(Ax − y) for a
/// linear operator, the autodiff gradient through A otherwise ([`scaled_data_grad`] times its f).
pub fn data_grad<B: NnAutodiffBackend>(problem: &Problem<'_, B>, x: Tensor<B, 2>) -> Tensor<B, 2> {
    let (grad, f) = scaled_data_grad(problem, x);
    if f == 1.0 { grad } else { grad.mul_scalar(f) }
}

/// (∇ₓ‖A(x) − y‖² / f, f) per row: for a linear operator Aᵀ(Ax − y) through the adjoint (no
/// autodiff graph) and f = 2, which the caller folds into the coefficient of its update (one
/// pass over the rows less; scaling by a power of two is exact, so the update is bit for bit
/// that of the gradient 2Aᵀ(Ax − y)); otherwise the autodiff gradient through A and f = 1.
pub fn scaled_data_grad<B: NnAutodiffBackend>(problem: &Problem<'_, B>, x: Tensor<B, 2>) -> (Tensor<B, 2>, f64) {
    match problem.operator.as_linear() {
        Some(op) => (op.adjoint(op.forward(x) - problem.y.clone()), 2.0),
        None => (
            input_grad(x, |x_in| {
                let r = problem.operator.forward(x_in) - problem.y.clone();
                (r.powf_scalar(2.0).sum(), ())
            })
            .0,
            1.0,
        ),
    }
}

impl<B: NnAutodiffBackend> Sampler<B> for Daps {
    fn name(&self) -> &'static str {
        "daps"
    }

    fn differentiates_prior(&self) -> bool {
        false
    }

    fn nfe(&self, _problem: &Problem<'_, B>) -> Result<usize, SamplerError> {
        Ok(self.0.annealing_steps * self.0.ode_steps)
    }

    fn sample(&self, problem: &Problem<'_, B>, rng: &mut SampleRng) -> Result<Tensor<B, 2>, SamplerError> {
        let c = &self.0;
        if c.annealing_steps == 0 || c.ode_steps == 0 {
            return Err(SamplerError::Config { sampler: "daps".into(), key: "annealing_steps / ode_steps".into(), why: "must be positive".into() });
        }
        if let Some(clamp) = c.grad_clamp
            && (clamp.is_nan() || clamp <= 0.0)
        {
            return Err(SamplerError::Config { sampler: "daps".into(), key: "grad_clamp".into(), why: format!("{clamp} is not positive") });
        }
        if c.x0y == X0y::Hmc {
            self.momentum()?;
        }
        let tau = c.tau_for(problem.sigma_y);
        let lipschitz = match c.step_rule {
            StepRule::Fixed => None,
            StepRule::Lipschitz => {
                let norm = problem.operator.require_linear("DAPS step_rule = lipschitz")?.spectral_norm();
                let c_tau = if c.variant == DapsVariant::Main { 2.0 } else { 1.0 };
                Some(c_tau * norm * norm / (tau * tau))
            }
        };
        let sigmas = c.annealing_sigmas();
        let mut x = problem.initial_noise(rng, c.sigma_max);
        for k in 0..c.annealing_steps {
            let sigma = sigmas[k];
            let x0hat = Self::ode_x0(problem.prior, x.clone(), &c.ode_sigmas(sigma));
            let last_legacy = c.variant == DapsVariant::Legacy && k + 1 == c.annealing_steps;
            let mut lr = c.lr * c.lr_multiplier(k);
            if let Some(l_data) = lipschitz {
                lr /= l_data + 1.0 / (sigma * sigma);
            }
            let x0y = match (c.x0y, last_legacy) {
                (_, true) => x0hat,
                (X0y::Exact, false) => Self::exact_x0y(problem, x0hat, sigma, rng)?,
                (X0y::Langevin, false) => self.langevin(problem, &x0hat, sigma, lr, tau, rng),
                (X0y::LangevinClosedForm, false) => self.langevin_in_closed_form(problem, &x0hat, sigma, lr, tau, rng)?,
                (X0y::Hmc, false) => self.hmc(problem, &x0hat, sigma, lr, tau, rng)?,
            };
            let sigma_next = sigmas[k + 1];
            // x_{k+1} = x₀ʸ + σ_{k+1}·ε.
            x = if sigma_next > 0.0 { rng.combine(vec![(x0y, 1.0)], sigma_next) } else { x0y };
        }
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn main_annealing_grid_matches_the_reference_values() {
        // docs/protocols.md §3.4: 100, 97.83, 95.69, … ending at 0.1060, then 0.
        let s = DapsConfig::daps_1k().annealing_sigmas();
        assert_eq!(s.len(), 201);
        assert!((s[0] - 100.0).abs() < 1e-9 && (s[1] - 97.83).abs() < 5e-3);
        assert!((s[199] - 0.1060).abs() < 5e-5, "{}", s[199]);
        assert_eq!(s[200], 0.0);
        // η at step 20 of 200: 1e-4·(1 − 20/201·0.99) = 9.0149e-5 (golden samplers.json).
        let c = DapsConfig::daps_1k();
        assert!((c.lr * c.lr_multiplier(20) - 9.0149e-5).abs() < 1e-9);
    }

    #[test]
    fn legacy_grids_end_in_zero() {
        let c = DapsConfig { variant: DapsVariant::Legacy, ..DapsConfig::daps_1k() };
        let s = c.annealing_sigmas();
        assert_eq!(s.len(), 201);
        assert!((s[199] - 0.1).abs() < 1e-12);
        let o = c.ode_sigmas(10.0);
        assert_eq!(o.len(), 6);
        assert_eq!(*o.last().unwrap(), 0.0);
        assert!((o[4] - 0.01).abs() < 1e-12);
    }

    #[test]
    fn the_closed_form_langevin_law_is_the_n_step_recursion() {
        // The N_L-step chain x ← M·x + b + √(2η)·ε, M = (1 − k)I − data·AᵀA, b = k·x̂₀ + data·Aᵀy
        // (data = 2cη), propagated in f64 with dense matrices from x₀ = x̂₀ (mean ← M·mean + b,
        // covariance ← M·C·Mᵀ + 2η·I), against the closed form assembled from A's SVD:
        // mean = x̂₀ + V·(α∘Vᵀx̂₀ + β∘Uᵀy − Vᵀx̂₀), C = sd_null²·(I − VVᵀ) + V·diag(sd²)·Vᵀ.
        // Agreement to 1e-10 (f64 rounding over 25 steps on entries O(1)). A 3 × 5 A (a
        // two-dimensional null space), a small step and one near the stability limit (the
        // largest singular value's aᵢ = −0.9).
        use nalgebra::{DMatrix, DVector};
        let (d, m, steps) = (5, 3, 25);
        let a = DMatrix::from_fn(m, d, |i, j| ((i * 5 + j * 3) % 7) as f64 / 3.0 - 1.0 + if i == j { 1.5 } else { 0.0 });
        let x0 = DVector::from_fn(d, |i, _| 0.3 * i as f64 - 0.7);
        let y = DVector::from_vec(vec![0.9, -0.4, 1.7]);
        let svd = a.clone().svd(true, true);
        let (u, v_t) = (svd.u.unwrap(), svd.v_t.unwrap());
        let v = v_t.transpose();
        let s: Vec<f64> = svd.singular_values.iter().copied().collect();
        let s_max = s.iter().cloned().fold(0.0, f64::max);
        for (k, data, lr) in [(0.05, 0.02, 0.01), (0.3, 1.6 / (s_max * s_max), 0.2)] {
            let mmat = DMatrix::identity(d, d) * (1.0 - k) - a.transpose() * &a * data;
            let b = &x0 * k + a.transpose() * &y * data;
            let (mut mean, mut cov) = (x0.clone(), DMatrix::zeros(d, d));
            for _ in 0..steps {
                mean = &mmat * mean + &b;
                cov = &mmat * cov * mmat.transpose() + DMatrix::identity(d, d) * (2.0 * lr);
            }
            let law = langevin_closed_form(&s, k, data, lr, steps);
            let (x0_bar, y_bar) = (v.transpose() * &x0, u.transpose() * &y);
            let coords = DVector::from_fn(m, |i, _| law.x0[i] * x0_bar[i] + law.y[i] * y_bar[i] - x0_bar[i]);
            let closed_mean = &x0 + &v * coords;
            let closed_cov = (DMatrix::identity(d, d) - &v * v.transpose()) * law.null_sd.powi(2)
                + &v * DMatrix::from_diagonal(&DVector::from_iterator(m, law.sd.iter().map(|t| t * t))) * v.transpose();
            assert!((closed_mean - &mean).amax() < 1e-10, "mean: k = {k}, data = {data}");
            assert!((closed_cov - &cov).amax() < 1e-10, "covariance: k = {k}, data = {data}");
        }
    }
}
