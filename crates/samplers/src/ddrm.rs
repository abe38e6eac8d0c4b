//! DDRM — Denoising Diffusion Restoration Models (Kawar et al., NeurIPS 2022, eq. 7–8 and the
//! reference `efficient_generalized_steps`).
//!
//! DDRM works in the VE scaling x = x_t/√ᾱ_t (σ_t = √((1−ᾱ_t)/ᾱ_t)) and in the spectral basis of
//! A = U·diag(s)·Vᵀ, with ȳ = Uᵀy and x̄₀ = Vᵀx̂₀. Going from σ_t to σ_n, coordinate i is drawn as
//! - null space (s_i = 0) or s_i·σ_n = σ_y:  x̄₀ᵢ + √(1−η_C²)·σ_n·ε̂ᵢ + η_C·σ_n·z;
//! - "less noisy than y" (s_i·σ_n < σ_y):   x̄₀ᵢ + √(1−η_A²)·σ_n·(ȳᵢ − s_i x̄₀ᵢ)/σ_y + η_A·σ_n·z;
//! - "noisier than y"   (s_i·σ_n > σ_y):   η_B·ȳᵢ/s_i + (1−η_B)·x̄₀ᵢ + √(σ_n² − σ_y²η_B²/s_i²)·z.
//!
//! x_T is drawn from DDRM's p(x_T | y) (the third case at σ_T for large s_i, N(0, σ_T²) otherwise).
//! The reference scales x_T by 1/σ_T where √ᾱ_T is exact; the two differ by √(1−ᾱ_T) − 1
//! (2e-5 at ᾱ_T = 4e-5).
//!
//! Two conventions ([`DdrmConvention`]). `paper`: the chain walks the grid g_{n−1} > … > g_0 and
//! every step uses the level ᾱ_t of the step it is at. `gmm-script`: the MCGdiff Gaussian-mixture
//! script's call of DDRM, which hands DDRM the schedule's β so that DDRM's
//! `compute_alpha(β, t)` = cumprod(1 − [0, β])[t + 1] reads ᾱ_{t+1}, while the ε-network is
//! evaluated at ᾱ_t, and which walks `seq = grid[:-1]`: it drops the top grid point, starts
//! from σ_T at ᾱ_{g_{n−2}+1}, steps (g_k → g_{k−1}) for k = n−2 … 1 with x̂₀ and σ_n at ᾱ_{t+1}, then
//! (0 → clean), where ε̂(·, 0) = 0, so the output is the state at ᾱ_1 rescaled (it keeps the
//! noise of level ᾱ_1, σ ≈ 0.14 on that schedule). Both make n − 1 network calls.

use burn::prelude::*;
use dipbench_models::schedule::ve_sigma;
use dipbench_nn::NnAutodiffBackend;
use dipbench_operators::SampleRng;
use dipbench_operators::operator::scale_columns;
use serde::{Deserialize, Serialize};

use crate::Sampler;
use crate::common::{Problem, x0_from_eps};
use crate::error::SamplerError;
use crate::grid::{GridKind, problem_chain};

/// Which levels a DDRM step reads (module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DdrmConvention {
    /// Each step at the level of its own grid point (the paper, the image code).
    #[default]
    Paper,
    /// The MCGdiff GMM script's call: steps read ᾱ_{t+1}, ε̂ reads ᾱ_t, the top grid point dropped.
    GmmScript,
}

impl DdrmConvention {
    fn is_paper(&self) -> bool {
        *self == Self::Paper
    }
}

/// DDRM settings (η_B, η_A, η_C in the reference's names etaB, etaA, etaC).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DdrmConfig {
    /// Number of grid points.
    pub steps: usize,
    /// How the grid is chosen.
    pub grid: GridKind,
    /// η_A: stochasticity where the diffusion is less noisy than the measurement.
    pub eta_a: f64,
    /// η_B: weight of the measurement where the diffusion is noisier than it.
    pub eta_b: f64,
    /// η_C: stochasticity in the null space.
    pub eta_c: f64,
    /// Which levels a step reads (`paper` when absent; not written then, so configurations and
    /// the fingerprints of results made before the key existed are unchanged).
    #[serde(default, skip_serializing_if = "DdrmConvention::is_paper")]
    pub convention: DdrmConvention,
}

impl DdrmConfig {
    /// The paper's and the MCGdiff GMM script's setting: η_B = 1, η_A = 0.85, η_C = 1.
    pub fn gmm() -> Self {
        Self { steps: 100, grid: GridKind::McgdiffAdapted, eta_a: 0.85, eta_b: 1.0, eta_c: 1.0, convention: DdrmConvention::Paper }
    }

    /// The paper's image setting (DDRM-20): 20 uniform steps, `--eta 0.85 --etaB 1`, which the
    /// reference passes as η_A = η_C = 0.85, η_B = 1.
    pub fn paper() -> Self {
        Self { steps: 20, grid: GridKind::Uniform, eta_a: 0.85, eta_b: 1.0, eta_c: 0.85, convention: DdrmConvention::Paper }
    }

    /// [`DdrmConfig::gmm`] with the GMM script's level convention ([`DdrmConvention::GmmScript`]).
    pub fn gmm_script() -> Self {
        Self { convention: DdrmConvention::GmmScript, ..Self::gmm() }
    }
}

/// The DDRM sampler (needs a singular-value view of A).
#[derive(Debug, Clone)]
pub struct Ddrm(pub DdrmConfig);

/// Per-coordinate coefficients of one DDRM update c′ = a_x0·x̄₀ + a_y·ȳ + a_eps·ε̄ + a_z·z̄.
struct Coefficients {
    a_x0: Vec<f64>,
    a_y: Vec<f64>,
    a_eps: Vec<f64>,
    a_z: Vec<f64>,
}

impl DdrmConfig {
    fn coefficients(&self, s: &[f64], sigma_n: f64, sigma_y: f64) -> Coefficients {
        let (ea, eb, ec) = (self.eta_a, self.eta_b, self.eta_c);
        let mut k = Coefficients { a_x0: vec![], a_y: vec![], a_eps: vec![], a_z: vec![] };
        for &si in s {
            let (x0, y, e, z) = if si * sigma_n < sigma_y {
                let w = (1.0 - ea * ea).sqrt() * sigma_n / sigma_y;
                (1.0 - w * si, w, 0.0, ea * sigma_n)
            } else if si * sigma_n > sigma_y {
                let var = sigma_n * sigma_n - sigma_y * sigma_y * eb * eb / (si * si);
                (1.0 - eb, eb / si, 0.0, var.max(0.0).sqrt())
            } else {
                (1.0, 0.0, (1.0 - ec * ec).sqrt() * sigma_n, ec * sigma_n)
            };
            k.a_x0.push(x0);
            k.a_y.push(y);
            k.a_eps.push(e);
            k.a_z.push(z);
        }
        k
    }
}

/// One step of a DDRM chain: evaluate ε̂ at `eps_t`, form x̂₀ and the update at levels `ab_t`
/// (the current state's) and `ab_n` (the next one).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    /// The timestep ε̂ is evaluated at.
    pub eps_t: usize,
    /// ᾱ of the current state (x̂₀ and σ_t).
    pub ab_t: f64,
    /// ᾱ of the next state (σ_n; 1 = the clean end).
    pub ab_n: f64,
}

impl Ddrm {
    /// The chain of steps and the level x_T is drawn at, in the configured convention.
    pub fn steps<B: Backend>(&self, problem: &Problem<'_, B>) -> Result<(f64, Vec<Step>), SamplerError> {
        let schedule = problem.prior.schedule();
        let chain = problem_chain(problem, self.0.grid, self.0.steps, "ddrm")?;
        Ok(match self.0.convention {
            DdrmConvention::Paper => {
                let steps = chain.iter().map(|&(t, next)| Step { eps_t: t, ab_t: schedule.alpha_bar(t), ab_n: schedule.alpha_bar_or_one(next) }).collect();
                (schedule.alpha_bar(chain[0].0), steps)
            }
            DdrmConvention::GmmScript => {
                // seq = grid[:-1] ascending; pairs (seq[k], seq[k−1]) from the top, then (seq[0], −1).
                let sv = problem.operator.as_linear().and_then(|l| l.svd()).map(|s| s.singular_values().to_vec());
                let grid = crate::grid::build_grid(schedule, self.0.grid, self.0.steps, sv.as_deref(), problem.sigma_y, "ddrm")?;
                let seq = &grid[..grid.len() - 1];
                // compute_alpha(β, t) = ᾱ_{t+1}; t = −1 reads 1.
                let plus = |t: Option<usize>| t.map_or(1.0, |t| schedule.alpha_bar(t + 1));
                let mut steps = Vec::with_capacity(seq.len());
                for k in (0..seq.len()).rev() {
                    let next = k.checked_sub(1).map(|j| seq[j]);
                    steps.push(Step { eps_t: seq[k], ab_t: plus(Some(seq[k])), ab_n: plus(next) });
                }
                (plus(seq.last().copied()), steps)
            }
        })
    }
}

impl<B: NnAutodiffBackend> Sampler<B> for Ddrm {
    fn name(&self) -> &'static str {
        "ddrm"
    }

    fn differentiates_prior(&self) -> bool {
        false
    }

    fn nfe(&self, problem: &Problem<'_, B>) -> Result<usize, SamplerError> {
        Ok(self.steps(problem)?.1.len())
    }

    fn sample(&self, problem: &Problem<'_, B>, rng: &mut SampleRng) -> Result<Tensor<B, 2>, SamplerError> {
        let c = &self.0;
        let svd = problem.operator.require_linear("DDRM")?.require_svd("DDRM")?;
        let s = svd.singular_values().to_vec();
        let (sigma_y, d, dev) = (problem.sigma_y, problem.dim(), problem.device());
        let y_bar = svd.ut(problem.y.clone()); // Uᵀy, [n, r]
        let (ab_top, chain) = self.steps(problem)?;

        // x_T ~ p(x_T | y): the "noisier than y" update at σ_T with x̄₀ = 0 and η_B = 1 where
        // s_i·σ_T > σ_y, N(0, σ_T²) elsewhere.
        let sigma_top = ve_sigma(ab_top);
        let z = rng.normal::<B>(d, &dev);
        let (mut a_y, mut a_z) = (vec![], vec![]);
        for &si in &s {
            if si * sigma_top > sigma_y {
                a_y.push(1.0 / si);
                a_z.push((sigma_top * sigma_top - sigma_y * sigma_y / (si * si)).sqrt());
            } else {
                a_y.push(0.0);
                a_z.push(sigma_top);
            }
        }
        let c_top = scale_columns(y_bar.clone(), &a_y) + scale_columns(svd.vt(z.clone()), &a_z);
        let mut x = (svd.v(c_top) + svd.null_part(z).mul_scalar(sigma_top)).mul_scalar(ab_top.sqrt());

        for Step { eps_t, ab_t, ab_n } in chain {
            let sigma_n = ve_sigma(ab_n);
            let eps = problem.prior.eps(x.clone(), eps_t);
            let x0 = x0_from_eps(x, eps.clone(), ab_t);
            let k = c.coefficients(&s, sigma_n, sigma_y);
            let mut coords = scale_columns(svd.vt(x0.clone()), &k.a_x0) + scale_columns(y_bar.clone(), &k.a_y) + scale_columns(svd.vt(eps.clone()), &k.a_eps);
            let mut null = x0 + eps.mul_scalar((1.0 - c.eta_c * c.eta_c).sqrt() * sigma_n);
            if sigma_n > 0.0 {
                let z = rng.normal::<B>(d, &dev);
                coords = coords + scale_columns(svd.vt(z.clone()), &k.a_z);
                null = null + z.mul_scalar(c.eta_c * sigma_n);
            }
            x = (svd.v(coords) + svd.null_part(null)).mul_scalar(ab_n.sqrt());
        }
        Ok(x)
    }
}
