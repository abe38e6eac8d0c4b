//! DCDP — decoupled data consistency with diffusion purification (Li, Kwon, Liang, Alkhouri,
//! Ravishankar & Qu, arXiv 2403.06054), as the authors' `Diffusion_Purified_CSGM` runs it
//! ("version 1", `full_ddim`, the setting every released configuration uses).
//!
//! From x = 0, for rounds i = 0 … K−1 with purification levels T_0 > T_1 > … :
//! 1. data consistency (CSGM): J steps of momentum SGD with a fresh buffer on
//!    L(x) = mean over the measurement's entries of (y − 𝒜(x))²:
//!    b ← ∇L (first step) or μ·b + ∇L,  x ← x − lr·b;
//! 2. noising to level T_i − 1 of the 1000-step table:
//!    x_T = √ᾱ_{T_i−1}·x + √(1 − ᾱ_{T_i−1})·ξ,  ξ ~ N(0, I);
//! 3. purification by deterministic DDIM over the n_i = min(T_i, n_max) respaced steps of
//!    {0 … T_i−1} (guided-diffusion `space_timesteps`, levels ᾱ′ of the respaced chain), k = n_i−1 … 0:
//!    x̂₀ = clamp(√(1/ᾱ′_k)·x − √(1/ᾱ′_k − 1)·ε̂(x, t_k), −1, 1),
//!    ε′ = (√(1/ᾱ′_k)·x − x̂₀)/√(1/ᾱ′_k − 1),
//!    x ← √ᾱ′_{k−1}·x̂₀ + √(1 − ᾱ′_{k−1})·ε′   (ᾱ′_{−1} = 1: the last step returns x̂₀).
//!
//! The levels: s = round(linspace(0, 1, K)·(T_0 − T_end) + 10⁻⁶), T = reverse(s + T_end), a 0
//! becomes 1. Reference quirk, kept by default (`level_one_from_two`): a round at T_i = 1 noises at
//! level 0 but purifies from T = 2 (2 network calls). The SGD update is x + (−lr)·b with one
//! rounding, as torch's fused `add_(b, alpha=−lr)` on the CPU.
//!
//! Randomness: one normal draw ξ per round (the reference's DDIM also draws one unused normal per
//! step; we do not draw it). Given y, DCDP is nearly deterministic.

use burn::prelude::*;
use dipbench_models::schedule::{linspace, space_timesteps};
use dipbench_nn::NnAutodiffBackend;
use dipbench_operators::SampleRng;
use serde::{Deserialize, Serialize};

use crate::Sampler;
use crate::common::{Problem, input_grad, x0_from_eps};
use crate::error::SamplerError;

/// DCDP settings (names of the reference configuration in brackets).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DcdpConfig {
    /// K, the number of consistency + purification rounds (`total_num_iterations`).
    pub rounds: usize,
    /// J, SGD steps per consistency phase (`csgm_num_iterations`).
    pub csgm_steps: usize,
    /// SGD learning rate on the mean squared residual (`lr`).
    pub lr: f64,
    /// SGD momentum μ (`momentum`).
    pub momentum: f64,
    /// T_0, the first purification level (`ddim_init_timestep`).
    pub t_start: usize,
    /// T_end, the last purification level (`ddim_end_timestep`; 0 becomes 1).
    pub t_end: usize,
    /// n_max, DDIM steps of a purification (`ddim_num_iterations`).
    pub ddim_steps: usize,
    /// The reference's last-round quirk: a round at T_i = 1 purifies from T = 2.
    pub level_one_from_two: bool,
}

impl DcdpConfig {
    /// The released super-resolution configuration, also used where a task has none: K = 10,
    /// J = 100, lr 1000, μ 0.9, T 400 → 0, 20 DDIM steps (182 network calls).
    pub fn repo_default() -> Self {
        Self { rounds: 10, csgm_steps: 100, lr: 1000.0, momentum: 0.9, t_start: 400, t_end: 0, ddim_steps: 20, level_one_from_two: true }
    }

    /// The released configuration of a task (`purification_configurations/*.yaml` of the
    /// authors' code): SR ×4 as [`DcdpConfig::repo_default`]; inpainting (box and random: the
    /// code has one inpainting configuration) K = 20, J = 50, T 700 → 0; Gaussian and motion
    /// deblur lr 10⁵; phase retrieval K = 200, lr 500, T 1000 → 20; nonlinear deblur K = 200,
    /// lr 300, T 1000 → 50. `None` for a task without one (HDR).
    pub fn repo(task: &str) -> Option<Self> {
        let base = Self::repo_default();
        Some(match task {
            "sr4" => base,
            "inpaint_box" | "inpaint_random" => Self { rounds: 20, csgm_steps: 50, t_start: 700, ..base },
            "deblur_gauss" | "deblur_motion" => Self { lr: 1e5, ..base },
            "phase_retrieval" => Self { rounds: 200, lr: 500.0, t_start: 1000, t_end: 20, ..base },
            "deblur_nonlinear" => Self { rounds: 200, lr: 300.0, t_start: 1000, t_end: 50, ..base },
            _ => return None,
        })
    }

    /// The purification levels T_0 … T_{K−1} (module documentation; numpy's round half to even,
    /// the 10⁻⁶ breaking ties).
    pub fn levels(&self) -> Vec<usize> {
        let span = self.t_start as f64 - self.t_end as f64;
        let s = linspace(0.0, 1.0, self.rounds);
        let mut t: Vec<usize> = s.iter().map(|r| (r * span + 1e-6).round_ties_even() as usize + self.t_end).collect();
        t.reverse();
        t.into_iter().map(|v| v.max(1)).collect()
    }

    /// The level a round at `t` purifies from (the T = 1 → 2 quirk).
    fn purification_level(&self, t: usize) -> usize {
        if t == 1 && self.level_one_from_two { 2 } else { t }
    }

    fn check(&self) -> Result<(), SamplerError> {
        let err = |key: &str, why: String| Err(SamplerError::Config { sampler: "dcdp".into(), key: key.into(), why });
        if self.rounds == 0 {
            return err("rounds", "must be at least 1".into());
        }
        if self.ddim_steps == 0 {
            return err("ddim_steps", "must be at least 1".into());
        }
        if self.csgm_steps == 0 {
            return err("csgm_steps", "must be at least 1".into());
        }
        if self.t_end > self.t_start {
            return err("t_end", format!("{} is above t_start = {}", self.t_end, self.t_start));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return err("lr", format!("must be positive, got {}", self.lr));
        }
        Ok(())
    }
}

/// The DCDP sampler.
#[derive(Debug, Clone)]
pub struct Dcdp(pub DcdpConfig);

impl Dcdp {
    /// One consistency phase: `steps` momentum-SGD steps on mean((y − 𝒜(x))²) per row from `x`
    /// (`[n, d]`), returning the last iterate; `iterates` (when given) receives every one. Rows are
    /// independent: each row's loss is the mean over its own m entries.
    pub fn consistency<B: NnAutodiffBackend>(
        &self,
        problem: &Problem<'_, B>,
        x: Tensor<B, 2>,
        steps: usize,
        mut iterates: Option<&mut Vec<Tensor<B, 2>>>,
    ) -> Tensor<B, 2> {
        let c = &self.0;
        let [n, d] = x.dims();
        let dev = x.device();
        let m = problem.y.dims()[1] as f64;
        let (lr, mu) = (-(c.lr as f32), c.momentum as f32);
        let mut xs: Vec<f32> = x.into_data().convert::<f32>().to_vec().expect("f32 data");
        let mut buf: Vec<f32> = Vec::new();
        for _ in 0..steps {
            let x_t = Tensor::<B, 2>::from_data(TensorData::new(xs.clone(), [n, d]), &dev);
            // ∇ₓ Σ_rows mean((𝒜x − y)²) = (2/m)·J𝒜ᵀ(𝒜x − y) per row (r·r: an exact doubling in backward).
            let (g, ()) = input_grad(x_t, |x| {
                let r = problem.operator.forward(x) - problem.y.clone();
                ((r.clone() * r).sum().div_scalar(m), ())
            });
            let g: Vec<f32> = g.into_data().convert::<f32>().to_vec().expect("f32 data");
            if buf.is_empty() {
                buf = g;
            } else {
                for (b, g) in buf.iter_mut().zip(&g) {
                    *b = *b * mu + g;
                }
            }
            for (x, b) in xs.iter_mut().zip(&buf) {
                *x = b.mul_add(lr, *x);
            }
            if let Some(list) = iterates.as_deref_mut() {
                list.push(Tensor::from_data(TensorData::new(xs.clone(), [n, d]), &dev));
            }
        }
        Tensor::from_data(TensorData::new(xs, [n, d]), &dev)
    }

    /// The deterministic DDIM purification from `x` at level `level` (module documentation, step
    /// 3): returns the output; `trace` (when given) receives each step's (input, x̂₀).
    pub fn purify<B: NnAutodiffBackend>(
        &self,
        problem: &Problem<'_, B>,
        mut x: Tensor<B, 2>,
        level: usize,
        mut trace: Option<&mut Vec<(Tensor<B, 2>, Tensor<B, 2>)>>,
    ) -> Tensor<B, 2> {
        let schedule = problem.prior.schedule();
        let kept = space_timesteps(level, level.min(self.0.ddim_steps));
        let ab = schedule.respaced_alpha_bars(&kept);
        for k in (0..kept.len()).rev() {
            let eps = problem.prior.eps(x.clone(), kept[k]);
            let x0 = x0_from_eps(x.clone(), eps, ab[k]).clamp(-1.0, 1.0);
            // ε′ = (√(1/ᾱ′)·x − x̂₀)/√(1/ᾱ′ − 1), the reference's `predict_eps_from_x_start`.
            let eps = (x.clone().mul_scalar((1.0 / ab[k]).sqrt()) - x0.clone()).div_scalar((1.0 / ab[k] - 1.0).sqrt());
            // DDIM with η = 0; ᾱ′_{k−1} enters as float32 and its roots are float32, as the reference's.
            let prev = if k == 0 { 1.0f32 } else { ab[k - 1] as f32 };
            if let Some(list) = trace.as_deref_mut() {
                list.push((x.clone(), x0.clone()));
            }
            x = x0.mul_scalar(prev.sqrt()) + eps.mul_scalar((1.0f32 - prev).sqrt());
        }
        x
    }

    /// Runs DCDP; `record` receives each round's consistency iterates, noised start and purified
    /// output (for the golden tests).
    pub fn run<B: NnAutodiffBackend>(
        &self,
        problem: &Problem<'_, B>,
        rng: &mut SampleRng,
        mut record: Option<&mut Vec<Round<B>>>,
    ) -> Result<Tensor<B, 2>, SamplerError> {
        self.0.check()?;
        let (d, dev) = (problem.dim(), problem.device());
        let schedule = problem.prior.schedule();
        if self.0.t_start > schedule.len() {
            return Err(SamplerError::Config {
                sampler: "dcdp".into(),
                key: "t_start".into(),
                why: format!("{} is beyond the prior's {} steps", self.0.t_start, schedule.len()),
            });
        }
        let mut x = Tensor::<B, 2>::zeros([problem.n(), d], &dev);
        for t in self.0.levels() {
            let keep = record.is_some();
            let (mut iterates, mut ddim) = (Vec::new(), Vec::new());
            x = self.consistency(problem, x, self.0.csgm_steps, keep.then_some(&mut iterates));
            let ab = schedule.alpha_bar(t - 1);
            let noisy = x.clone().mul_scalar(ab.sqrt()) + rng.normal::<B>(d, &dev).mul_scalar((1.0 - ab).sqrt());
            x = self.purify(problem, noisy.clone(), self.0.purification_level(t), keep.then_some(&mut ddim));
            if let Some(r) = record.as_deref_mut() {
                r.push(Round { level: t, iterates, noisy, ddim, purified: x.clone() });
            }
        }
        Ok(x)
    }
}

/// What one DCDP round did (the golden tests compare every piece).
#[derive(Debug, Clone)]
pub struct Round<B: Backend> {
    /// T_i.
    pub level: usize,
    /// The SGD iterates of the consistency phase.
    pub iterates: Vec<Tensor<B, 2>>,
    /// The noised start of the purification.
    pub noisy: Tensor<B, 2>,
    /// (input, x̂₀) of each DDIM step.
    pub ddim: Vec<(Tensor<B, 2>, Tensor<B, 2>)>,
    /// The purified output.
    pub purified: Tensor<B, 2>,
}

impl<B: NnAutodiffBackend> Sampler<B> for Dcdp {
    fn name(&self) -> &'static str {
        "dcdp"
    }

    fn differentiates_prior(&self) -> bool {
        false
    }

    fn nfe(&self, _problem: &Problem<'_, B>) -> Result<usize, SamplerError> {
        self.0.check()?;
        Ok(self.0.levels().into_iter().map(|t| self.0.purification_level(t).min(self.0.ddim_steps)).sum())
    }

    fn sample(&self, problem: &Problem<'_, B>, rng: &mut SampleRng) -> Result<Tensor<B, 2>, SamplerError> {
        self.run(problem, rng, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_budget_of_the_released_configurations() {
        // The reference's schedule for SR (K = 10, 400 → 0) and its 182 network calls.
        let sr = DcdpConfig::repo("sr4").unwrap();
        assert_eq!(sr.levels(), vec![400, 356, 311, 267, 222, 178, 133, 89, 44, 1]);
        let nfe: usize = sr.levels().into_iter().map(|t| sr.purification_level(t).min(20)).sum();
        assert_eq!(nfe, 182);
        let inp = DcdpConfig::repo("inpaint_box").unwrap();
        assert_eq!(inp.levels().into_iter().map(|t| inp.purification_level(t).min(20)).sum::<usize>(), 382);
        let pr = DcdpConfig::repo("phase_retrieval").unwrap();
        assert_eq!(pr.levels().into_iter().map(|t| pr.purification_level(t).min(20)).sum::<usize>(), 4000);
        assert_eq!(DcdpConfig { rounds: 2, ..sr.clone() }.levels(), vec![400, 1]);
        assert!(DcdpConfig::repo("hdr").is_none());
        assert!(DcdpConfig { csgm_steps: 0, ..sr.clone() }.check().is_err());
        assert!(DcdpConfig { t_end: 500, ..sr }.check().is_err());
    }
}
