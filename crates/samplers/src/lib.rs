//! # dipbench-samplers — posterior samplers
//!
//! What this crate is for: every diffusion posterior sampler of the DPS, MCG and DAPS tables,
//! written once over the [`Prior`](dipbench_models::Prior) and
//! [`Operator`](dipbench_operators::Operator) interfaces, so the same code runs on the analytic
//! Gaussian-mixture benchmark and on image priors. A sampler is a pure function of
//! (prior, operator, y, config, seeded RNG) → samples: no I/O, no globals.
//!
//! Samplers: [`dps`], [`mcg`] (also Score-SDE/ILVR projection), [`daps`], [`ddrm`], [`ddnm`],
//! [`pigdm`] (ΠGDM), [`diffpir`], [`reddiff`] (RED-diff), the optimisation baselines
//! [`classical`] (PnP-ADMM, ADMM-TV), the phase-retrieval baselines [`fienup`] (ER, HIO, OSS),
//! and [`exact`] (the reference row). Configurations and presets: [`config`].
//!
//! What it is not for: priors, operators, metrics or running experiments.

pub mod classical;
pub mod common;
pub mod config;
pub mod daps;
pub mod ddnm;
pub mod ddrm;
pub mod diffpir;
pub mod dps;
pub mod error;
pub mod exact;
pub mod fienup;
pub mod grid;
pub mod mcg;
pub mod pigdm;
pub mod reddiff;
pub mod transition;

use burn::prelude::*;
use dipbench_nn::NnAutodiffBackend;
use dipbench_operators::SampleRng;

pub use common::Problem;
pub use config::{PRESETS, PresetContext, SAMPLER_KINDS, SamplerConfig};
pub use error::SamplerError;

/// A posterior sampler: draws one sample per row of `problem.y`, all randomness from `rng`
/// (one stream per row, so row i's sample does not depend on the batch it is drawn in).
pub trait Sampler<B: NnAutodiffBackend>: Send + Sync {
    /// The sampler's name (as in experiment files).
    fn name(&self) -> &'static str;

    /// Denoiser evaluations per sample on `problem` (gradients through the denoiser are not
    /// counted separately).
    fn nfe(&self, problem: &Problem<'_, B>) -> Result<usize, SamplerError>;

    /// Whether the sampler differentiates through the prior (DPS, MCG, ΠGDM: a vector–Jacobian
    /// product of the denoiser). When it does not, the runner hands it a tape-free prior
    /// ([`dipbench_models::TapeFree`]): the same values without recording a backward graph.
    fn differentiates_prior(&self) -> bool {
        true
    }

    /// Draws `problem.n()` samples, `[n, dim]`.
    fn sample(&self, problem: &Problem<'_, B>, rng: &mut SampleRng) -> Result<Tensor<B, 2>, SamplerError>;
}

/// Draws `problem.n()` samples with row streams `SampleRng::rows(seed, ·)`, in chunks of at most
/// `chunk_rows` rows, the chunks in parallel on the thread pool. Because every row has its own
/// stream and rows never interact, the result is bitwise identical to a single call with
/// `SampleRng::new(seed, n)` (tested in `tests/sampler_invariance.rs`), whatever the number of
/// threads; smaller chunks keep each tensor cache-sized on the CPU.
pub fn sample_in_chunks<B: NnAutodiffBackend>(
    sampler: &dyn Sampler<B>,
    problem: &Problem<'_, B>,
    seed: u64,
    chunk_rows: usize,
) -> Result<Tensor<B, 2>, SamplerError> {
    use rayon::prelude::*;
    let n = problem.n();
    let chunk = chunk_rows.max(1);
    let starts: Vec<usize> = (0..n).step_by(chunk).collect();
    let parts = starts
        .par_iter()
        .map(|&start| {
            let end = (start + chunk).min(n);
            let part = Problem {
                prior: problem.prior,
                operator: problem.operator,
                y: problem.y.clone().slice(start..end),
                sigma_y: problem.sigma_y,
            };
            sampler.sample(&part, &mut SampleRng::rows(seed, start..end))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Tensor::cat(parts, 0))
}
