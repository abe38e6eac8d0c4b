//! ReSample — latent diffusion with hard data consistency (Song et al., ICLR 2024; reference
//! code `ldm/models/diffusion/ddim.py`, `resample_sampling`, run on the LDM-FFHQ prior).
//!
//! DDIM (η = 0) in latent space, the UNet never differentiated (the code's `apply_model` is
//! under `no_grad`). Step at DDIM index i (t_i, ā_t, ā_prev of the CompVis tables), from z:
//!     ε = ε_θ(z, t_i),  ẑ₀ = (z − √(1−ā_t)·ε)/√ā_t,  z′ = √ā_prev·ẑ₀ + √(1−ā_prev)·ε,
//!     z̃₀ = (z − (1−ā_t)·ε)/√ā_t                      (the code's "pseudo x₀": (1−ā_t), sic),
//!     z ← z′ − ½ā_t·∇_z‖y − A(D(z̃₀))‖                 (ε held constant: ∇_z = ∇_{z̃₀}/√ā_t).
//! Every `every` = 10 indices with 0 < i ≤ S − ⌊S/3⌋ (x_t := that z):
//!   - "time travel": from z, up to `travel` = 5 unguided DDIM steps onward (the UNet gets the
//!     next timestep but the ā of the step before — a bookkeeping slip of the code, kept), whose
//!     last z̃₀ is kept;
//!   - γ = 40·(1−ā_prev)/(1−ā_t)·(1 − ā_t/ā_prev);
//!   - i ≥ ⌊S/3⌋ (pixel stage): x* = argmin_x mean((y − A(x))²) by AdamW (lr 1e-2) from D(z̃₀),
//!     at most 2000 iterations, stopping once the loss is below 1e-6; z₀* = E(x*) (not
//!     quantised);
//!     i < ⌊S/3⌋ (latent stage): z₀* = argmin_z mean((y − A(D(z)))²) by AdamW (lr 5e-3) from z̃₀,
//!     at most 500 iterations, stopping below 1e-6 or, from iteration 200 on, when the loss of 200
//!     iterations before is lower than the current one;
//!   - stochastic resampling with a = ā_prev: z ← (γ√a·z₀* + (1−a)·x_t)/(γ + 1 − a)
//!     + √(1/(1/γ + 1/(1−a)))·ε.
//!
//! After the loop the latent optimisation of the final z gives z₀, the output (decoded by the
//! harness as the code's `decode_first_stage`).
//!
//! AdamW has PyTorch's defaults besides the learning rates (weight decay 0.01). Losses, norms and
//! stopping are per row (the code's are over its batch; the same for batch 1).

use burn::prelude::*;
use dipbench_nn::NnAutodiffBackend;
use dipbench_operators::{Operator, SampleRng};
use serde::{Deserialize, Serialize};

use crate::Sampler;
use crate::adamw::{AdamW, AdamWSettings};
use crate::common::{Problem, compvis_ddim_tables, input_grad, row_norms};
use crate::error::SamplerError;
use crate::latent::LatentOperator;

/// ReSample settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResampleConfig {
    /// S, DDIM steps.
    pub steps: usize,
    /// The guidance step is `scale`·ā_t (the code: ½ā_t; the task configs' `scale` is unused).
    pub scale: f64,
    /// Hard data consistency every this many DDIM indices.
    pub every: usize,
    /// Unguided DDIM steps of the "time travel" before each consistency step.
    pub travel: usize,
    /// γ's factor (40).
    pub gamma_factor: f64,
    /// AdamW learning rate of the pixel stage.
    pub pixel_lr: f64,
    /// Iteration cap of the pixel stage.
    pub pixel_iters: usize,
    /// AdamW learning rate of the latent stage.
    pub latent_lr: f64,
    /// Iteration cap of the latent stage.
    pub latent_iters: usize,
    /// The latent stage stops when the loss of this many iterations before is lower.
    pub patience: usize,
    /// Both stages stop once the mean squared residual is below `tol`² (the code's eps = 1e-3).
    pub tol: f64,
}

impl ResampleConfig {
    /// The released code (`configs/*` with `resample_sampling` as written): S = 500, ½ā_t
    /// guidance, consistency every 10 indices with 5 time-travel steps, γ factor 40, AdamW
    /// 1e-2 × 2000 (pixel) and 5e-3 × 500 with patience 200 (latent), tolerance 1e-3.
    pub fn repo() -> Self {
        Self {
            steps: 500,
            scale: 0.5,
            every: 10,
            travel: 5,
            gamma_factor: 40.0,
            pixel_lr: 1e-2,
            pixel_iters: 2000,
            latent_lr: 5e-3,
            latent_iters: 500,
            patience: 200,
            tol: 1e-3,
        }
    }

    /// Whether hard data consistency runs after DDIM index `index`, and if so whether it is the
    /// pixel stage (`Some(true)`) or the latent one.
    fn consistency_at(&self, index: usize) -> Option<bool> {
        let split = self.steps / 3;
        (index > 0 && index <= self.steps - split && self.every > 0 && index.is_multiple_of(self.every)).then_some(index >= split)
    }
}

/// Which optimisation ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Stage {
    /// Pixel-space AdamW, then the encoder.
    Pixel,
    /// Latent-space AdamW through the decoder.
    Latent,
    /// The latent optimisation of the final z.
    Final,
}

/// One hard-data-consistency call of a run (for checking against the reference's log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// The optimisation.
    pub stage: Stage,
    /// UNet calls (DDIM steps, time travel included) before it.
    pub ddim_steps_done: usize,
    /// AdamW iterations run, per row.
    pub iterations: Vec<usize>,
}

/// The pieces of one guided DDIM step.
#[derive(Debug, Clone)]
pub struct GuidedStep<B: Backend> {
    /// ε_θ(z, t).
    pub eps: Tensor<B, 2>,
    /// ẑ₀.
    pub pred_x0: Tensor<B, 2>,
    /// z̃₀, the code's pseudo x₀.
    pub pseudo_x0: Tensor<B, 2>,
    /// z′, the DDIM step.
    pub ddim_out: Tensor<B, 2>,
    /// ∇_z‖y − A(D(z̃₀))‖ with ε constant.
    pub grad: Tensor<B, 2>,
    /// z′ − scale·ā_t·grad.
    pub z_next: Tensor<B, 2>,
}

/// The ReSample sampler.
#[derive(Debug, Clone)]
pub struct Resample(pub ResampleConfig);

/// The unguided DDIM step from z at UNet time `t` with (ā_t, ā_prev): (z′, ẑ₀, z̃₀, ε).
fn ddim<B: NnAutodiffBackend>(problem: &Problem<'_, B>, z: Tensor<B, 2>, t: usize, ab_t: f64, ab_prev: f64) -> [Tensor<B, 2>; 4] {
    let eps = problem.prior.eps(z.clone(), t).detach();
    let pred_x0 = (z.clone() - eps.clone().mul_scalar((1.0 - ab_t).sqrt())).div_scalar(ab_t.sqrt());
    let pseudo_x0 = (z - eps.clone().mul_scalar(1.0 - ab_t)).div_scalar(ab_t.sqrt());
    let out = pred_x0.clone().mul_scalar(ab_prev.sqrt()) + eps.clone().mul_scalar((1.0 - ab_prev).sqrt());
    [out, pred_x0, pseudo_x0, eps]
}

/// Per-row mean((y − r)²), `[n, 1]`.
fn mse<B: Backend>(y: &Tensor<B, 2>, r: Tensor<B, 2>) -> Tensor<B, 2> {
    let m = y.dims()[1];
    (y.clone() - r).powf_scalar(2.0).sum_dim(1).div_scalar(m as f64)
}

fn host<B: Backend>(t: Tensor<B, 2>) -> Vec<f64> {
    t.detach().into_data().convert::<f64>().to_vec::<f64>().expect("float data")
}

impl Resample {
    /// Checks the settings and returns the DDIM tables of the problem's prior.
    fn tables(&self, problem: &Problem<'_, impl NnAutodiffBackend>) -> Result<Vec<(usize, f64, f64)>, SamplerError> {
        let c = &self.0;
        let bad = |key: &str, why: &str| Err(SamplerError::Config { sampler: "resample".into(), key: key.into(), why: why.into() });
        let positive = |v: f64| v.is_finite() && v > 0.0;
        if c.travel == 0 {
            return bad("travel", "must be at least 1 (the consistency step starts from the last time-travel step's x̂₀)");
        }
        if c.every == 0 {
            return bad("every", "must be at least 1");
        }
        for (key, v) in [("gamma_factor", c.gamma_factor), ("pixel_lr", c.pixel_lr), ("latent_lr", c.latent_lr)] {
            if !positive(v) {
                return bad(key, "must be positive");
            }
        }
        if !(c.scale.is_finite() && c.scale >= 0.0 && c.tol.is_finite() && c.tol >= 0.0) {
            return bad("scale / tol", "must be finite and ≥ 0");
        }
        let alpha_bars = problem.prior.schedule().alpha_bars();
        compvis_ddim_tables(self.0.steps, alpha_bars).ok_or_else(|| SamplerError::Config {
            sampler: "resample".into(),
            key: "steps".into(),
            why: format!("must divide the prior's {} steps and be smaller", alpha_bars.len()),
        })
    }

    /// The guided DDIM step at (t, ā_t, ā_prev) from z (module documentation).
    pub fn guided_step<B: NnAutodiffBackend>(
        &self,
        problem: &Problem<'_, B>,
        latent: &LatentOperator<'_, B>,
        z: Tensor<B, 2>,
        (t, ab_t, ab_prev): (usize, f64, f64),
    ) -> GuidedStep<B> {
        let [ddim_out, pred_x0, pseudo_x0, eps] = ddim(problem, z, t, ab_t, ab_prev);
        // ∇_z‖y − A(D(z̃₀))‖ = ∇_{z̃₀}(…)/√ā_t, ε held constant.
        let (g, ()) = input_grad(pseudo_x0.clone(), |p| (row_norms(problem.y.clone() - Operator::forward(latent, p)).sum(), ()));
        let grad = g.div_scalar(ab_t.sqrt());
        let z_next = ddim_out.clone() - grad.clone().mul_scalar(self.0.scale * ab_t);
        GuidedStep { eps, pred_x0, pseudo_x0, ddim_out, grad, z_next }
    }

    /// AdamW on rows `p` for the per-row loss `loss` (`[n, 1]`), at most `iters` iterations,
    /// each row stopping by itself: once its loss is below tol², or — with `patience` — when its
    /// loss `patience` iterations before is lower than the current one. Returns the result, the
    /// iterations run per row and row 0's losses.
    fn optimise<B: NnAutodiffBackend>(
        &self,
        p: Tensor<B, 2>,
        lr: f64,
        iters: usize,
        patience: Option<usize>,
        loss: impl Fn(Tensor<B, 2>) -> Tensor<B, 2>,
    ) -> (Tensor<B, 2>, Vec<usize>, Vec<f64>) {
        let [n, d] = p.dims();
        let mut opt = AdamW::new(AdamWSettings::torch_default(lr), [n, d], &p.device());
        let mut p = p.detach();
        let mut active = vec![true; n];
        let mut done = vec![0usize; n];
        let mut history: Vec<std::collections::VecDeque<f64>> = vec![Default::default(); n];
        let mut losses0 = vec![];
        let floor = self.0.tol * self.0.tol;
        for _ in 0..iters {
            if !active.iter().any(|a| *a) {
                break;
            }
            let (g, l) = input_grad(p.clone(), |q| {
                let l = loss(q);
                (l.clone().sum(), l.detach())
            });
            let l = host(l);
            losses0.push(l[0]);
            p = opt.step(p, g, &active);
            for r in 0..n {
                if !active[r] {
                    continue;
                }
                done[r] += 1;
                // The code's window: compare with the loss `patience` iterations before.
                let h = &mut history[r];
                h.push_back(l[r]);
                if let Some(w) = patience
                    && h.len() > w
                {
                    if h[0] < l[r] {
                        active[r] = false;
                    } else {
                        h.pop_front();
                    }
                }
                if l[r] < floor {
                    active[r] = false;
                }
            }
        }
        (p.detach(), done, losses0)
    }

    /// The pixel stage from x′: AdamW on mean((y − A(x))²).
    pub fn optimise_pixels<B: NnAutodiffBackend>(
        &self,
        problem: &Problem<'_, B>,
        latent: &LatentOperator<'_, B>,
        x: Tensor<B, 2>,
        iters: usize,
    ) -> (Tensor<B, 2>, Vec<usize>, Vec<f64>) {
        self.optimise(x, self.0.pixel_lr, iters, None, |x| mse(&problem.y, latent.pixel().forward(x)))
    }

    /// The latent stage from z: AdamW on mean((y − A(D(z)))²) through the quantising decoder.
    pub fn optimise_latents<B: NnAutodiffBackend>(
        &self,
        problem: &Problem<'_, B>,
        latent: &LatentOperator<'_, B>,
        z: Tensor<B, 2>,
        iters: usize,
    ) -> (Tensor<B, 2>, Vec<usize>, Vec<f64>) {
        self.optimise(z, self.0.latent_lr, iters, Some(self.0.patience), |z| mse(&problem.y, Operator::forward(latent, z)))
    }

    /// Stochastic resampling around z₀* (module documentation) with noise ε.
    pub fn stochastic_resample<B: Backend>(z0: Tensor<B, 2>, x_t: Tensor<B, 2>, a: f64, gamma: f64, noise: Tensor<B, 2>) -> Tensor<B, 2> {
        (z0.mul_scalar(gamma * a.sqrt()) + x_t.mul_scalar(1.0 - a)).div_scalar(gamma + 1.0 - a)
            + noise.mul_scalar((1.0 / (1.0 / gamma + 1.0 / (1.0 - a))).sqrt())
    }

    /// A run that also returns its consistency events.
    pub fn sample_traced<B: NnAutodiffBackend>(&self, problem: &Problem<'_, B>, rng: &mut SampleRng) -> Result<(Tensor<B, 2>, Vec<Event>), SamplerError> {
        let c = &self.0;
        let latent = problem.require_latent("resample")?;
        let tables = self.tables(problem)?;
        let s = c.steps;
        let mut events = vec![];
        let mut unet_calls = 0;
        let mut z = problem.initial_noise(rng, 1.0);
        for (k, index) in (0..s).rev().enumerate() {
            let (_, ab_t, ab_prev) = tables[index];
            z = self.guided_step(problem, latent, z, tables[index]).z_next.detach();
            unet_calls += 1;
            let Some(pixel) = c.consistency_at(index) else { continue };
            let x_t = z.clone();
            // Time travel: the next timesteps with the ā of the step before.
            let mut travelled = z.clone();
            let mut pseudo = z.clone();
            for kk in k..(k + c.travel).min(s - 1) {
                let (t_next, _, _) = tables[s - 2 - kk];
                let (_, a, a_prev) = tables[s - 1 - kk];
                let [out, _, p, _] = ddim(problem, travelled, t_next, a, a_prev);
                (travelled, pseudo) = (out, p);
                unet_calls += 1;
            }
            let gamma = c.gamma_factor * (1.0 - ab_prev) / (1.0 - ab_t) * (1.0 - ab_t / ab_prev);
            let (z0, iterations, stage) = if pixel {
                let (x, it, _) = self.optimise_pixels(problem, latent, latent.prior().decode(pseudo).detach(), c.pixel_iters);
                (latent.prior().encode(x).detach(), it, Stage::Pixel)
            } else {
                let (z0, it, _) = self.optimise_latents(problem, latent, pseudo, c.latent_iters);
                (z0, it, Stage::Latent)
            };
            events.push(Event { stage, ddim_steps_done: unet_calls, iterations });
            let noise = rng.normal::<B>(problem.dim(), &problem.device());
            z = Self::stochastic_resample(z0, x_t, ab_prev, gamma, noise);
        }
        let (z0, iterations, _) = self.optimise_latents(problem, latent, z, c.latent_iters);
        events.push(Event { stage: Stage::Final, ddim_steps_done: unet_calls, iterations });
        Ok((z0, events))
    }
}

impl<B: NnAutodiffBackend> Sampler<B> for Resample {
    fn name(&self) -> &'static str {
        "resample"
    }

    fn differentiates_prior(&self) -> bool {
        false
    }

    /// UNet calls: S guided steps plus the time-travel steps of every consistency step.
    fn nfe(&self, problem: &Problem<'_, B>) -> Result<usize, SamplerError> {
        problem.require_latent("resample")?;
        self.tables(problem)?;
        let s = self.0.steps;
        let travel: usize =
            (0..s).rev().enumerate().filter(|(_, i)| self.0.consistency_at(*i).is_some()).map(|(k, _)| (k + self.0.travel).min(s - 1) - k).sum();
        Ok(s + travel)
    }

    fn sample(&self, problem: &Problem<'_, B>, rng: &mut SampleRng) -> Result<Tensor<B, 2>, SamplerError> {
        Ok(self.sample_traced(problem, rng)?.0)
    }
}
