//! # dipbench-models — the priors
//!
//! What this crate is for: every prior a diffusion posterior sampler can run on, behind one
//! interface ([`Prior`]: the denoiser D(x; σ) in the VE view and ε̂(x_t, t) in the discrete VP
//! view), plus the noise schedules those views are indexed by.
//!
//! - [`schedule`]: the DDPM linear-β table, the MCGdiff GMM table, the continuous-VP c_noise map
//!   DAPS uses, the Karras poly-7 grid, and the timestep grids of DDIM-style samplers.
//! - [`gaussian_mixture`]: analytic Gaussian-mixture and single-Gaussian priors with exact score
//!   and denoiser at every noise level.
//! - [`exact_posterior`]: their exact posterior under a linear-Gaussian measurement.
//! - [`unet`]: the ADM UNet of guided-diffusion (pixel priors) and, with plain resampling and no
//!   scale-shift norm, the unconditional UNet of latent diffusion.
//! - [`vq`]: latent diffusion's VQ autoencoder (encoder, codebook, decoder).
//! - [`latent`]: a latent-diffusion checkpoint (UNet + autoencoder + schedule) as a prior on
//!   latents, with encode/decode.
//!
//! What it is not for: measurement operators (`dipbench-operators`), sampling algorithms
//! (`dipbench-samplers`), randomness (every random input here is passed in explicitly, so the
//! crate is deterministic by construction).

pub mod error;
pub mod exact_posterior;
pub mod gaussian_mixture;
pub mod latent;
pub mod prior;
pub mod schedule;
pub mod unet;
pub mod vq;

pub use error::ModelError;
pub use exact_posterior::ExactPosterior;
pub use gaussian_mixture::{GaussianMixture, GaussianMixturePrior, SharedCovariance};
pub use prior::{Prior, TapeFree};
pub use schedule::{ContinuousVp, VpSchedule};
