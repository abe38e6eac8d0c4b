//! The one interface every prior implements, so that every sampler runs on every prior.
//!
//! A prior is seen through its denoiser in the two views the samplers of the field are written in:
//! - the variance-exploding view (EDM, Karras et al. 2022 eq. 2–3): x = x₀ + σ·n,
//!   D(x; σ) ≈ E[x₀ | x], score ∇ log p_σ(x) = (D(x; σ) − x)/σ²;
//! - the discrete variance-preserving view (DDPM, Ho et al. 2020): x_t = √ᾱ_t·x₀ + √(1−ᾱ_t)·ε,
//!   ε̂(x_t, t) ≈ E[ε | x_t], with ᾱ_t taken from [`Prior::schedule`].
//!
//! The two are linked by x = x_t/√ᾱ_t, σ_t = √((1−ᾱ_t)/ᾱ_t) and
//! D(x; σ_t) = x − σ_t·ε̂(√ᾱ_t·x, t) (Tweedie's formula).
//!
//! Samples are rows: a batch is a `Tensor<B, 2>` of shape `[n, dim]`, whatever the data's own
//! shape ([`Prior::sample_shape`] gives it, e.g. `[3, 256, 256]` for an image prior, which
//! reshapes internally). Samplers therefore only ever see rows.

use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use crate::schedule::VpSchedule;

/// A diffusion prior, evaluated through its denoiser (see the module documentation).
///
/// Implementations must be pure functions of their inputs (no hidden randomness), so that a
/// sampler's output depends only on its seed.
pub trait Prior<B: Backend>: Send + Sync {
    /// A short name for tables and logs.
    fn name(&self) -> String;

    /// Number of scalars in one sample (the row length).
    fn dim(&self) -> usize;

    /// The shape of one sample before flattening (`[d]` for vectors, `[c, h, w]` for images).
    fn sample_shape(&self) -> Vec<usize>;

    /// The device the prior's tensors live on.
    fn device(&self) -> B::Device;

    /// The discrete VP schedule the ε̂ view is indexed by.
    fn schedule(&self) -> &VpSchedule;

    /// Denoiser D(x; σ) ≈ E[x₀ | x₀ + σ·n = x] of a batch `x` of shape `[n, dim]` (EDM eq. 2).
    fn denoise(&self, x: Tensor<B, 2>, sigma: f64) -> Tensor<B, 2>;

    /// Noise prediction ε̂(x_t, t) at discrete step `t` of [`Prior::schedule`] (DDPM eq. 11).
    fn eps(&self, x_t: Tensor<B, 2>, t: usize) -> Tensor<B, 2>;

    /// ε̂(x_t, t) and, for networks trained with learned-range variance (Nichol & Dhariwal 2021,
    /// eq. 15), the interpolation output v ∈ [−1, 1] (same shape as ε̂). Analytic priors have no
    /// learned variance and return `None`.
    fn eps_and_variance(&self, x_t: Tensor<B, 2>, t: usize) -> (Tensor<B, 2>, Option<Tensor<B, 2>>) {
        (self.eps(x_t, t), None)
    }
}

/// A prior held on the inner backend of an autodiff backend `B`, seen as a prior on `B`: every
/// evaluation runs on the inner backend, recording nothing for a backward pass, and comes back as
/// a constant (`Tensor::from_inner`). For samplers that never differentiate through the prior
/// (`Sampler::differentiates_prior`); the values are those of the taped prior (tested).
#[derive(Debug, Clone)]
pub struct TapeFree<P> {
    inner: P,
}

impl<P> TapeFree<P> {
    /// Wraps `inner`, a prior on `B::InnerBackend` (for the ADM UNet: `UnetPrior::new(net.inner())`,
    /// which shares the weights).
    pub fn new(inner: P) -> Self {
        Self { inner }
    }
}

impl<B: AutodiffBackend, P: Prior<B::InnerBackend>> Prior<B> for TapeFree<P> {
    fn name(&self) -> String {
        self.inner.name()
    }

    fn dim(&self) -> usize {
        self.inner.dim()
    }

    fn sample_shape(&self) -> Vec<usize> {
        self.inner.sample_shape()
    }

    fn device(&self) -> B::Device {
        self.inner.device()
    }

    fn schedule(&self) -> &VpSchedule {
        self.inner.schedule()
    }

    fn denoise(&self, x: Tensor<B, 2>, sigma: f64) -> Tensor<B, 2> {
        Tensor::from_inner(self.inner.denoise(x.inner(), sigma))
    }

    fn eps(&self, x_t: Tensor<B, 2>, t: usize) -> Tensor<B, 2> {
        Tensor::from_inner(self.inner.eps(x_t.inner(), t))
    }

    fn eps_and_variance(&self, x_t: Tensor<B, 2>, t: usize) -> (Tensor<B, 2>, Option<Tensor<B, 2>>) {
        let (eps, v) = self.inner.eps_and_variance(x_t.inner(), t);
        (Tensor::from_inner(eps), v.map(Tensor::from_inner))
    }
}
