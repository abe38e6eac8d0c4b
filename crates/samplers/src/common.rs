//! Small pieces every sampler uses: the problem a sampler solves, Tweedie's x̂₀ from ε̂, per-row
//! norms and input gradients.

use burn::prelude::*;
use dipbench_models::Prior;
use dipbench_nn::NnAutodiffBackend;
use dipbench_operators::{Operator, SampleRng};

use crate::latent::LatentOperator;

/// An inverse problem: prior p(x₀), forward model A, one measurement row per sample
/// (`y` is `[n, m]`) and the noise level σ_y the measurement was made with.
pub struct Problem<'a, B: Backend> {
    /// The prior.
    pub prior: &'a dyn Prior<B>,
    /// The forward operator.
    pub operator: &'a dyn Operator<B>,
    /// Measurements, one row per sample to draw.
    pub y: Tensor<B, 2>,
    /// Measurement noise standard deviation σ_y.
    pub sigma_y: f64,
    /// For a problem on autoencoder latents (`operator` is then A∘D): the autoencoder and the
    /// pixel-space A, for samplers that need them apart (PSLD's gluing term).
    pub latent: Option<&'a LatentOperator<'a, B>>,
}

impl<'a, B: Backend> Problem<'a, B> {
    /// A problem whose `n` samples all share one measurement row `y` (`[1, m]` or `[m]`-like).
    pub fn shared(prior: &'a dyn Prior<B>, operator: &'a dyn Operator<B>, y: Tensor<B, 2>, sigma_y: f64, n: usize) -> Self {
        let m = y.dims()[1];
        Self { prior, operator, y: y.expand([n, m]), sigma_y, latent: None }
    }

    /// A problem on latents: the prior is a latent prior, the operator A∘D (`latent`), and
    /// samplers that need the autoencoder or the pixel-space A find them in `latent`.
    pub fn on_latents(prior: &'a dyn Prior<B>, latent: &'a LatentOperator<'a, B>, y: Tensor<B, 2>, sigma_y: f64) -> Self
    where
        B: dipbench_nn::NnBackend,
    {
        Self { prior, operator: latent, y, sigma_y, latent: Some(latent) }
    }

    /// The latent side of the problem, or an error naming `needed_by` when it is a pixel-space
    /// problem.
    pub fn require_latent(&self, needed_by: &str) -> Result<&'a LatentOperator<'a, B>, crate::SamplerError> {
        self.latent.ok_or_else(|| crate::SamplerError::Unsupported {
            sampler: needed_by.into(),
            why: "needs a latent-diffusion prior (a latent UNet config with its autoencoder)".into(),
        })
    }

    /// Number of samples (rows).
    pub fn n(&self) -> usize {
        self.y.dims()[0]
    }

    /// Sample dimension d.
    pub fn dim(&self) -> usize {
        self.prior.dim()
    }

    /// The device.
    pub fn device(&self) -> B::Device {
        self.prior.device()
    }

    /// x_T ~ N(0, scale²·I) drawn from `rng` (one row per sample).
    pub fn initial_noise(&self, rng: &mut SampleRng, scale: f64) -> Tensor<B, 2> {
        rng.normal::<B>(self.dim(), &self.device()).mul_scalar(scale)
    }
}

/// Tweedie's estimate x̂₀ = √(1/ᾱ_t)·x_t − √(1/ᾱ_t − 1)·ε̂ (DDPM eq. 15, in guided-diffusion's
/// `_predict_xstart_from_eps` form, coefficients rounded to float32 as its tables are).
pub fn x0_from_eps<B: Backend>(x_t: Tensor<B, 2>, eps: Tensor<B, 2>, ab_t: f64) -> Tensor<B, 2> {
    x_t.mul_scalar((1.0 / ab_t).sqrt()) - eps.mul_scalar((1.0 / ab_t - 1.0).sqrt())
}

/// The prior's prediction at a discrete step: ε̂, the learned-range output v (when the prior
/// has one and it is asked for) and x̂₀ (clamped to [−c, c] when c > 0, as `clip_denoised`).
#[derive(Debug, Clone)]
pub struct Prediction<B: Backend> {
    /// ε̂(x_t, t).
    pub eps: Tensor<B, 2>,
    /// v of the learned variance.
    pub v: Option<Tensor<B, 2>>,
    /// x̂₀.
    pub x0: Tensor<B, 2>,
}

impl<B: Backend> Prediction<B> {
    /// Evaluates the prior at (x_t, t); `with_variance` asks for v; `clip` clamps x̂₀ (0: no
    /// clamp). Gradients flow through the clamp, as in the reference.
    pub fn at(prior: &dyn Prior<B>, x_t: Tensor<B, 2>, t: usize, with_variance: bool, clip: f64) -> Self {
        let ab_t = prior.schedule().alpha_bar(t);
        let (eps, v) = if with_variance { prior.eps_and_variance(x_t.clone(), t) } else { (prior.eps(x_t.clone(), t), None) };
        let mut x0 = x0_from_eps(x_t, eps.clone(), ab_t);
        if clip > 0.0 {
            x0 = x0.clamp(-clip, clip);
        }
        Self { eps, v, x0 }
    }

    /// The same prediction detached from the autodiff graph.
    pub fn detach(self) -> Self {
        Self { eps: self.eps.detach(), v: self.v.map(|v| v.detach()), x0: self.x0.detach() }
    }
}

/// ε̂ consistent with x̂₀: (x_t − √ᾱ_t·x̂₀)/√(1−ᾱ_t).
pub fn eps_from_x0<B: Backend>(x_t: Tensor<B, 2>, x0: Tensor<B, 2>, ab_t: f64) -> Tensor<B, 2> {
    (x_t - x0.mul_scalar(ab_t.sqrt())).div_scalar((1.0 - ab_t).sqrt())
}

/// Euclidean norm of each row, `[n, d]` → `[n, 1]`, as √(Σt² + 1e-30): the same value in
/// float32 for any row with Σt² > 1e-23, but a zero gradient instead of 0·∞ = NaN for a row
/// that is exactly zero (a scalar residual y − A·x̂₀ hits exactly 0 in float32 often enough over
/// millions of DPS steps with d_y = 1; the reference's batch-wide norm never does).
pub fn row_norms<B: Backend>(t: Tensor<B, 2>) -> Tensor<B, 2> {
    t.powf_scalar(2.0).sum_dim(1).add_scalar(1e-30).sqrt()
}

/// ∇ₓ Σ f(x) for a scalar-valued `f` built from `x` (rows are independent in every prior and
/// operator here, so row i of the result is the gradient of sample i's own term). Returns the
/// gradient and the value of whatever else `f` computed (detached).
pub fn input_grad<B: NnAutodiffBackend, T>(x: Tensor<B, 2>, f: impl FnOnce(Tensor<B, 2>) -> (Tensor<B, 1>, T)) -> (Tensor<B, 2>, T) {
    let x = x.detach().require_grad();
    let (loss, extra) = f(x.clone());
    let grads = loss.backward();
    let g = x.grad(&grads).expect("x requires grad, so its gradient exists");
    (Tensor::from_inner(g), extra)
}

/// The DDIM tables of CompVis latent diffusion (`make_ddim_timesteps` with uniform spacing,
/// `make_ddim_sampling_parameters`) for S = `steps` on the cumulative products ᾱ of a T-step
/// chain: c = T/S, t_i = c·i + 1, ā_t = ᾱ[t_i], ā_prev = ᾱ[t_{i−1}] (ᾱ[0] for i = 0), as
/// (t_i, ā_t, ā_prev) for i = 0 … S−1. `None` when S does not divide T or t_{S−1} = T falls past
/// the table (S = T; PSLD's copy shifts the tables there instead).
pub fn compvis_ddim_tables(steps: usize, alpha_bars: &[f64]) -> Option<Vec<(usize, f64, f64)>> {
    let t_len = alpha_bars.len();
    if steps == 0 || steps >= t_len || !t_len.is_multiple_of(steps) {
        return None;
    }
    let c = t_len / steps;
    let times: Vec<usize> = (0..steps).map(|i| c * i + 1).collect();
    Some((0..steps).map(|i| (times[i], alpha_bars[times[i]], if i == 0 { alpha_bars[0] } else { alpha_bars[times[i - 1]] })).collect())
}
