//! PSLD — Posterior Sampling with Latent Diffusion (Rout et al., NeurIPS 2023; reference code
//! `sd/ldm/models/diffusion/psld.py`, `p_sample_ddim`, run on the LDM-FFHQ prior).
//!
//! DDIM (η = 0) in latent space with two gradient terms taken w.r.t. z_t through the UNet, the
//! decoder D and the encoder E. Step i (UNet time t_i, ā_t, ā_prev of the DDIM tables):
//!     ε = ε_θ(z_t, t_i),  ẑ₀ = (z_t − √(1−ā_t)·ε)/√ā_t,  z′ = √ā_prev·ẑ₀ + √(1−ā_prev)·ε,
//!     x̂ = D(ẑ₀)                                  (quantising decoder, straight-through),
//!     e_meas = ‖A(x̂) + σ_y·n − y‖                 (n fresh each step: the reference noises its
//!                                                  prediction like the measurement),
//!     x̃ = Aᵀy + x̂ − AᵀA·x̂,  e_glue = ‖E(x̃) − ẑ₀‖  (the "gluing" term; E not quantised),
//!     z_{t−1} = z′ − ∇_{z_t}(γ·e_glue + ω·e_meas).
//! The norms are unsquared. The reference takes them over its whole batch; here per row (a
//! row's sample does not depend on the batch it runs in; the same thing for batch 1).
//!
//! Aᵀ is the `transpose` of the DPS operators PSLD imports, not A's adjoint: for SR ×f
//! nearest-neighbour upsampling (`F.interpolate(scale_factor = f)`), for inpainting and the blurs
//! the identity (so Aᵀy = y, with the measurement noise y carries in the hole, and AᵀA·x̂ =
//! A(x̂)); `transpose = "adjoint"` uses the operator's own adjoint instead.
//!
//! DDIM tables (CompVis `make_ddim_timesteps`, uniform): c = 1000/S, t_i = c·i + 1,
//! ā_t = ᾱ[t_i], ā_prev = ᾱ[t_{i−1}] (ᾱ[0] for i = 0). At S = 1000 PSLD's copy shifts the ā
//! tables by one (ā_t = ᾱ[i], ā_prev = ᾱ[i−1]) while the UNet still gets t = i + 1; kept.
//!
//! Not reproduced: the inpainting script saves m⊙x + (1−m)⊙x̂ with the ground truth x (a sampler
//! never sees it); the EMA weights the code samples with (`ema_scope`; the latent prior reads the
//! non-EMA UNet, as DAPS does); fp16 autocast (the reference's default on CUDA; here the prior's
//! precision). docs/protocols.md §3.5 states the protocol.

use burn::prelude::*;
use dipbench_nn::NnAutodiffBackend;
use dipbench_operators::SampleRng;
use serde::{Deserialize, Serialize};

use crate::Sampler;
use crate::common::{Problem, compvis_ddim_tables, row_norms};
use crate::error::SamplerError;

/// What PSLD uses for Aᵀ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transpose {
    /// The operator's adjoint (a linear operator).
    Adjoint,
    /// The identity (DPS's inpainting and blur `transpose`); A's output must be image-sized.
    Identity,
    /// Nearest-neighbour upsampling of y to the image size (the code's SR "transpose").
    Nearest,
}

/// PSLD settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PsldConfig {
    /// S, DDIM steps.
    pub steps: usize,
    /// γ, weight of the gluing term.
    pub gamma: f64,
    /// ω, weight of the measurement term.
    pub omega: f64,
    /// Aᵀ of the gluing term.
    pub transpose: Transpose,
}

impl PsldConfig {
    /// The LDM-FFHQ scripts (`sd/run/inverse_*_ldm.sh`): S = 1000, γ = 0.1, ω = 0.9 for SR ×4
    /// (nearest-neighbour Aᵀ) and 0.1 for inpainting and the deblurs (identity Aᵀ). `None` for a
    /// task the scripts do not have.
    pub fn for_task(task: &str) -> Option<Self> {
        let (omega, transpose) = match task {
            "sr4" => (0.9, Transpose::Nearest),
            "inpaint_box" | "inpaint_random" | "deblur_gauss" | "deblur_motion" => (0.1, Transpose::Identity),
            _ => return None,
        };
        Some(Self { steps: 1000, gamma: 0.1, omega, transpose })
    }

    /// The SR ×4 script's settings, for a problem without a task.
    pub fn sr4() -> Self {
        Self::for_task("sr4").expect("sr4 has settings")
    }

    /// The DDIM tables (t_i, ā_t, ā_prev) for i = 0 … S−1 on the cumulative products
    /// `alpha_bars` ([`compvis_ddim_tables`], and at S = T the code's shift: t_i = i + 1 with
    /// ā_t = ᾱ[i], ā_prev = ᾱ[i−1]). An error naming `steps` unless S divides T.
    pub fn ddim_tables(&self, alpha_bars: &[f64]) -> Result<Vec<(usize, f64, f64)>, SamplerError> {
        if self.steps == alpha_bars.len() {
            return Ok((0..self.steps).map(|i| (i + 1, alpha_bars[i], alpha_bars[i.saturating_sub(1)])).collect());
        }
        compvis_ddim_tables(self.steps, alpha_bars).ok_or_else(|| SamplerError::Config {
            sampler: "psld".into(),
            key: "steps".into(),
            why: format!("{} must be between 1 and {t} and divide {t}, the steps of the prior's chain", self.steps, t = alpha_bars.len()),
        })
    }
}

/// The pieces of one PSLD step (for checking against the reference).
#[derive(Debug, Clone)]
pub struct PsldStep<B: Backend> {
    /// ε_θ(z_t, t).
    pub eps: Tensor<B, 2>,
    /// ẑ₀.
    pub z0: Tensor<B, 2>,
    /// z′, the DDIM step before guidance.
    pub z_prime: Tensor<B, 2>,
    /// x̂ = D(ẑ₀).
    pub x0: Tensor<B, 2>,
    /// x̃ = Aᵀy + x̂ − AᵀA·x̂.
    pub glued: Tensor<B, 2>,
    /// E(x̃).
    pub encoded: Tensor<B, 2>,
    /// ∇_{z_t}(γ·e_glue + ω·e_meas).
    pub grad: Tensor<B, 2>,
    /// e_meas and e_glue per row.
    pub errors: Vec<(f64, f64)>,
    /// z_{t−1}.
    pub z_prev: Tensor<B, 2>,
}

/// The PSLD sampler.
#[derive(Debug, Clone)]
pub struct Psld(pub PsldConfig);

impl Psld {
    /// Aᵀy for the gluing term.
    fn transpose<B: NnAutodiffBackend>(&self, problem: &Problem<'_, B>, y: Tensor<B, 2>) -> Result<Tensor<B, 2>, SamplerError> {
        let latent = problem.require_latent("psld")?;
        Ok(match self.0.transpose {
            Transpose::Adjoint => latent.pixel().require_linear("PSLD's gluing term")?.adjoint(y),
            Transpose::Identity => {
                let [c, h, w] = latent.prior().image_shape();
                if y.dims()[1] != c * h * w {
                    return Err(SamplerError::Unsupported {
                        sampler: "psld".into(),
                        why: format!("`transpose = \"identity\"` needs image-sized measurements ({c}×{h}×{w}); y has {} values", y.dims()[1]),
                    });
                }
                y
            }
            Transpose::Nearest => {
                let [c, h, w] = latent.prior().image_shape();
                let [n, m] = y.dims();
                let side = ((m / c) as f64).sqrt().round() as usize;
                if side == 0 || c * side * side != m || h % side != 0 || w != h {
                    return Err(SamplerError::Unsupported {
                        sampler: "psld".into(),
                        why: format!("`transpose = \"nearest\"` needs square measurements of {c} channels dividing {h}×{w}; y has {m} values"),
                    });
                }
                let f = h / side;
                y.reshape([n, c, side, 1, side, 1]).expand([n, c, side, f, side, f]).reshape([n, c * h * w])
            }
        })
    }

    /// One step at DDIM index `i` (`tables[i]` = (t, ā_t, ā_prev)) from z_t; `noise` is the
    /// measurement-noise draw n of the step.
    pub fn step<B: NnAutodiffBackend>(
        &self,
        problem: &Problem<'_, B>,
        z_t: Tensor<B, 2>,
        (t, ab_t, ab_prev): (usize, f64, f64),
        noise: Tensor<B, 2>,
    ) -> Result<PsldStep<B>, SamplerError> {
        let latent = problem.require_latent("psld")?;
        let codec = latent.prior();
        let a = latent.pixel();
        let aty = self.transpose(problem, problem.y.clone())?;
        let z_t = z_t.detach().require_grad();
        let eps = problem.prior.eps(z_t.clone(), t);
        // ẑ₀ = (z_t − √(1−ā_t)·ε)/√ā_t;  z′ = √ā_prev·ẑ₀ + √(1−ā_prev)·ε.
        let z0 = (z_t.clone() - eps.clone().mul_scalar((1.0 - ab_t).sqrt())).div_scalar(ab_t.sqrt());
        let z_prime = z0.clone().mul_scalar(ab_prev.sqrt()) + eps.clone().mul_scalar((1.0 - ab_prev).sqrt());
        // x̂ = D(ẑ₀);  e_meas = ‖A(x̂) + σ_y·n − y‖.
        let x0 = codec.decode(z0.clone());
        let ax0 = a.forward(x0.clone());
        let meas = row_norms(ax0.clone() + noise.mul_scalar(problem.sigma_y) - problem.y.clone());
        // x̃ = Aᵀy + x̂ − AᵀA·x̂;  e_glue = ‖E(x̃) − ẑ₀‖.
        let glued = aty + x0.clone() - self.transpose(problem, ax0)?;
        let encoded = codec.encode(glued.clone());
        let glue = row_norms(encoded.clone() - z0.clone());
        let loss = (glue.clone().mul_scalar(self.0.gamma) + meas.clone().mul_scalar(self.0.omega)).sum();
        let grads = loss.backward();
        let grad = Tensor::from_inner(z_t.grad(&grads).expect("z_t requires grad"));
        let errors = host(meas).into_iter().zip(host(glue)).collect();
        let z_prime = z_prime.detach();
        Ok(PsldStep {
            z_prev: z_prime.clone() - grad.clone(),
            eps: eps.detach(),
            z0: z0.detach(),
            z_prime,
            x0: x0.detach(),
            glued: glued.detach(),
            encoded: encoded.detach(),
            grad,
            errors,
        })
    }
}

/// A `[n, 1]` tensor's values.
fn host<B: Backend>(t: Tensor<B, 2>) -> Vec<f64> {
    t.detach().into_data().convert::<f64>().to_vec::<f64>().expect("float data")
}

impl<B: NnAutodiffBackend> Sampler<B> for Psld {
    fn name(&self) -> &'static str {
        "psld"
    }

    fn nfe(&self, problem: &Problem<'_, B>) -> Result<usize, SamplerError> {
        problem.require_latent("psld")?;
        self.0.ddim_tables(problem.prior.schedule().alpha_bars())?;
        Ok(self.0.steps)
    }

    fn sample(&self, problem: &Problem<'_, B>, rng: &mut SampleRng) -> Result<Tensor<B, 2>, SamplerError> {
        let c = &self.0;
        problem.require_latent("psld")?;
        let tables = c.ddim_tables(problem.prior.schedule().alpha_bars())?;
        let m = problem.y.dims()[1];
        // z_T ~ N(0, I), then the steps from i = S−1 down to 0, one noise draw n each.
        let mut z = problem.initial_noise(rng, 1.0);
        for i in (0..c.steps).rev() {
            let noise = rng.normal::<B>(m, &problem.device());
            z = self.step(problem, z, tables[i], noise)?.z_prev;
        }
        Ok(z)
    }
}
