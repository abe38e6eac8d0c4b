//! # dipbench-samplers — posterior samplers
//!
//! What this crate is for: every diffusion posterior sampler of the DPS, MCG and DAPS tables,
//! written once over the [`Prior`](dipbench_models::Prior) and
//! [`Operator`](dipbench_operators::Operator) interfaces, so the same code runs on the analytic
//! Gaussian-mixture benchmark and on image priors. A sampler is a pure function of
//! (prior, operator, y, config, seeded RNG) → samples: no I/O, no globals.
//!
//! Samplers: [`dps`], [`mcg`] (also Score-SDE/ILVR projection), [`daps`] (also LatentDAPS, with
//! [`latent`]'s A∘D), [`ddrm`], [`ddnm`], [`mcgdiff`], [`fps`]
//! (FPS-SMC) and [`ddsmc`] (particles), [`dcdp`] (data consistency + diffusion purification),
//! [`pigdm`] (ΠGDM), the latent-space [`psld`] and [`resample`], [`diffpir`], [`reddiff`] (RED-diff), the optimisation baselines
//! [`classical`] (PnP-ADMM, ADMM-TV), the phase-retrieval baselines [`fienup`] (ER, HIO, OSS),
//! and [`exact`] (the reference row). The catalog below — [`SamplerConfig`], its presets and [`SamplerConfig::build`] — is the one
//! place that names them: adding a sampler is its own file plus this one.
//!
//! What it is not for: priors, operators, metrics or running experiments.

pub mod adamw;
pub mod classical;
pub mod common;
pub mod daps;
pub mod dcdp;
pub mod ddnm;
pub mod ddrm;
pub mod ddsmc;
pub mod diffpir;
pub mod dps;
pub mod error;
pub mod exact;
pub mod fienup;
pub mod fps;
pub mod grid;
pub mod latent;
pub mod mcg;
pub mod mcgdiff;
pub mod pigdm;
pub mod psld;
pub mod reddiff;
pub mod resample;
pub mod transition;

use crate::classical::{AdmmTv, AdmmTvConfig, PnpAdmm, PnpAdmmConfig};
use crate::daps::{Daps, DapsConfig};
use crate::dcdp::{Dcdp, DcdpConfig};
use crate::ddnm::{Ddnm, DdnmConfig};
use crate::ddrm::{Ddrm, DdrmConfig};
use crate::ddsmc::{Ddsmc, DdsmcConfig};
use crate::diffpir::{Diffpir, DiffpirConfig};
use crate::dps::{Dps, DpsConfig, Likelihood};
use crate::exact::Exact;
use crate::fienup::{Fienup, FienupAlgorithm, FienupConfig};
use crate::fps::{FpsConfig, FpsSmc};
use crate::mcg::{Mcg, McgConfig};
use crate::mcgdiff::{Mcgdiff, McgdiffConfig};
use crate::pigdm::{Pigdm, PigdmConfig};
use crate::psld::{Psld, PsldConfig};
use crate::reddiff::{RedDiff, RedDiffConfig};
use crate::resample::{Resample, ResampleConfig};
use burn::prelude::*;
use dipbench_models::ExactPosterior;
use dipbench_nn::NnAutodiffBackend;
use dipbench_operators::SampleRng;
use serde::{Deserialize, Serialize};

pub use common::Problem;
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

    /// For samplers whose rows interact (particle methods): the size of the groups of
    /// consecutive rows that form one particle cloud. Batches are split only between clouds.
    fn cloud(&self) -> Option<usize> {
        None
    }

    /// Draws `problem.n()` samples, `[n, dim]`.
    fn sample(&self, problem: &Problem<'_, B>, rng: &mut SampleRng) -> Result<Tensor<B, 2>, SamplerError>;
}

/// Draws `problem.n()` samples with row streams `SampleRng::rows(seed, ·)`, in chunks of at most
/// `chunk_rows` rows, the chunks in parallel on the thread pool. Because every row has its own
/// stream and rows never interact, the result is bitwise identical to a single call with
/// `SampleRng::new(seed, n)` (tested in `tests/sampler_invariance.rs`), whatever the number of
/// threads; smaller chunks keep each tensor cache-sized on the CPU.
///
/// The chunks are thread-pool tasks, so the sampler's backward passes must not use the pool: burn's
/// autodiff holds a graph lock during a backward pass, and a thread waiting on a parallel loop there
/// can take up another chunk whose backward pass then waits on that lock. The mixture prior's
/// kernels keep to this; a large dense product in a backward pass (a mixture with a non-isotropic
/// covariance at large d: its d × d basis change runs a parallel GEMM) does not.
pub fn sample_in_chunks<B: NnAutodiffBackend>(
    sampler: &dyn Sampler<B>,
    problem: &Problem<'_, B>,
    seed: u64,
    chunk_rows: usize,
) -> Result<Tensor<B, 2>, SamplerError> {
    use rayon::prelude::*;
    let n = problem.n();
    // Particle clouds stay whole: chunks are a multiple of the cloud size.
    let chunk = match sampler.cloud() {
        Some(c) if c > 0 => chunk_rows.max(1).div_ceil(c) * c,
        _ => chunk_rows.max(1),
    };
    let starts: Vec<usize> = (0..n).step_by(chunk).collect();
    let parts = starts
        .par_iter()
        .map(|&start| {
            let end = (start + chunk).min(n);
            let part = Problem { y: problem.y.clone().slice(start..end), ..*problem };
            sampler.sample(&part, &mut SampleRng::rows(seed, start..end))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Tensor::cat(parts, 0))
}

// ---------------------------------------------------------------------------------------------
// The catalog: sampler configurations as data (one tagged enum over every sampler), named
// presets, and the layering of user overrides (from an experiment file) on top of a preset.

/// Any sampler's configuration; the TOML key `sampler` names the variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "sampler", rename_all = "kebab-case")]
pub enum SamplerConfig {
    /// Exact posterior draws (analytic priors with a linear-Gaussian measurement only).
    Exact,
    /// [`Dps`].
    Dps(DpsConfig),
    /// [`Ddrm`].
    Ddrm(DdrmConfig),
    /// [`Mcgdiff`].
    Mcgdiff(McgdiffConfig),
    /// [`FpsSmc`].
    FpsSmc(FpsConfig),
    /// [`Ddsmc`].
    Ddsmc(DdsmcConfig),
    /// [`Dcdp`].
    Dcdp(DcdpConfig),
    /// [`Daps`].
    Daps(DapsConfig),
    /// [`Psld`].
    Psld(PsldConfig),
    /// [`Resample`].
    Resample(ResampleConfig),
    /// [`Mcg`].
    Mcg(McgConfig),
    /// [`Pigdm`].
    Pigdm(PigdmConfig),
    /// [`Diffpir`].
    Diffpir(DiffpirConfig),
    /// [`RedDiff`].
    Reddiff(RedDiffConfig),
    /// [`Ddnm`].
    Ddnm(DdnmConfig),
    /// [`PnpAdmm`].
    PnpAdmm(PnpAdmmConfig),
    /// [`AdmmTv`].
    AdmmTv(AdmmTvConfig),
    /// [`Fienup`] with error reduction.
    Er(FienupConfig),
    /// [`Fienup`] with hybrid input–output.
    Hio(FienupConfig),
    /// [`Fienup`] with oversampling smoothness.
    Oss(FienupConfig),
}

/// The sampler names accepted by `sampler = "…"`.
pub const SAMPLER_KINDS: &[&str] = &[
    "exact", "dps", "ddrm", "mcgdiff", "fps-smc", "ddsmc", "dcdp", "daps", "psld", "resample", "mcg", "pigdm", "diffpir", "reddiff", "ddnm", "pnp-admm",
    "admm-tv", "er", "hio", "oss",
];

/// What a task-dependent preset needs to know: the task (`sr4`, `inpaint_box`, …, as
/// `dipbench_operators::image::Task::by_name`), the dataset (`ffhq…`, `imagenet…`) and the
/// noise model (`gaussian`, `poisson`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresetContext<'a> {
    /// Task name.
    pub task: &'a str,
    /// Dataset name.
    pub dataset: &'a str,
    /// Noise model.
    pub noise: &'a str,
}

/// Every (sampler, preset) pair, for help texts: `gmm` runs on the analytic benchmark, the
/// others on images (`dps-repo`, `dps-paper` and the DAPS presets read the task; DPS `image` is
/// the released image sampler with `scale = 1`, for tasks without a published scale: set
/// `scale` yourself).
pub const PRESETS: &[(&str, &str)] = &[
    ("dps", "gmm, dps-repo, dps-paper, image"),
    ("mcg", "gmm, mcg-code, mcg-paper, projection"),
    ("daps", "gmm, daps-1k, daps-4k, daps-legacy, latent-daps"),
    ("psld", "repo"),
    ("resample", "repo"),
    ("ddrm", "gmm, gmm-script, paper"),
    ("mcgdiff", "gmm, package"),
    ("fps-smc", "repo"),
    ("ddsmc", "gmm, inversebench"),
    ("dcdp", "repo, repo-default"),
    ("ddnm", "gmm, paper"),
    ("pigdm", "gmm, paper"),
    ("diffpir", "gmm, paper"),
    ("reddiff", "gmm, paper"),
    ("pnp-admm", "gmm, default"),
    ("admm-tv", "default"),
    ("er", "default"),
    ("hio", "default"),
    ("oss", "default"),
];

/// Presets whose setting is an assumption where a paper's table used the method without saying
/// how: (sampler, preset, what the preset assumes). Table captions print the line for every
/// method that uses one.
pub const ASSUMED_PRESETS: &[(&str, &str, &str)] = &[
    (
        "fps-smc",
        "repo",
        "the authors' code defaults (particle count, c, step count and σ = 0.05 as the README's sampler table gives them, unless the experiment overrides them) on this experiment's operators and masks; the DAPS paper does not state its FPS-SMC setting",
    ),
    (
        "dcdp",
        "repo",
        "the authors' per-task configurations (unless the experiment overrides them) on this experiment's operators, masks and σ_y (the code has σ_y = 0 for SR, inpainting and the linear deblurs, and one fixed box); the DAPS paper does not state its DCDP setting",
    ),
    ("dcdp", "repo-default", "the authors' SR configuration, for a task the code has none for"),
    (
        "resample",
        "repo",
        "the released code's sampler (500 DDIM steps, consistency every 10 steps with 5 time-travel steps, AdamW 1e-2 × 2000 in pixels, 5e-3 × 500 in latents, γ factor 40) with this experiment's σ_y and operators; the code's task configs use σ_y = 0.01 and it runs neither ImageNet nor nonlinear deblur as released, so how the DAPS authors adapted it is not known",
    ),
    (
        "psld",
        "repo",
        "the authors' LDM-FFHQ scripts (1000 DDIM steps, γ = 0.1, ω = 0.9 for SR and 0.1 otherwise; the box-inpainting script's config file is missing from the code, so box inpainting runs the inpainting settings) on this experiment's operators; the DAPS paper does not state its PSLD setting",
    ),
];

impl SamplerConfig {
    /// The preset `preset` of sampler `kind` without a task (the `gmm` presets and every
    /// task-independent image preset).
    pub fn preset(kind: &str, preset: &str) -> Result<Self, SamplerError> {
        Self::preset_in(kind, preset, None)
    }

    /// The preset `preset` of sampler `kind` for a task ([`PRESETS`] lists them). Presets that
    /// depend on the task say so when `context` is `None` or the task has no published value.
    pub fn preset_in(kind: &str, preset: &str, context: Option<&PresetContext<'_>>) -> Result<Self, SamplerError> {
        let err = |key: &str, why: String| SamplerError::Config { sampler: kind.into(), key: key.into(), why };
        let unknown = || {
            let known = PRESETS.iter().find(|(k, _)| *k == kind).map(|(_, p)| *p).unwrap_or("none");
            err("preset", format!("unknown preset `{preset}` (known: {known})"))
        };
        let task = || context.map(|c| c.task).ok_or_else(|| err("preset", format!("preset `{preset}` depends on the task; give it one")));
        let poisson = context.is_some_and(|c| c.noise == "poisson");
        Ok(match (kind, preset) {
            ("exact", _) => Self::Exact,
            ("dps", "gmm") => Self::Dps(DpsConfig::gmm()),
            ("dps", "dps-repo") => {
                let t = task()?;
                let scale = DpsConfig::repo_scale(t).ok_or_else(|| err("preset", format!("the DPS configs have no `scale` for task `{t}`")))?;
                Self::Dps(DpsConfig::image(scale, if poisson { Likelihood::PoissonCode } else { Likelihood::Gaussian }))
            }
            ("dps", "dps-paper") => {
                let c = context.ok_or_else(|| err("preset", "preset `dps-paper` depends on the task, dataset and noise".into()))?;
                let zeta = DpsConfig::paper_zeta(c.task, c.dataset, c.noise)
                    .ok_or_else(|| err("preset", format!("the DPS paper gives no ζ′ for task `{}` on `{}` with {} noise", c.task, c.dataset, c.noise)))?;
                Self::Dps(DpsConfig::image(2.0 * zeta, if poisson { Likelihood::PoissonPaper } else { Likelihood::Gaussian }))
            }
            ("dps", "image") => Self::Dps(DpsConfig::image(1.0, if poisson { Likelihood::PoissonCode } else { Likelihood::Gaussian })),
            ("mcg", "gmm") => Self::Mcg(McgConfig::gmm()),
            ("mcg", "mcg-code") => Self::Mcg(McgConfig::image(1.0)),
            ("mcg", "mcg-paper") => Self::Mcg(McgConfig::image(2.0)),
            ("mcg", "projection") => Self::Mcg(McgConfig::projection()),
            ("daps", "gmm") => Self::Daps(DapsConfig::gmm()),
            ("daps", "daps-1k" | "daps-4k" | "daps-legacy") => {
                let base = match preset {
                    "daps-1k" => DapsConfig::daps_1k(),
                    "daps-4k" => DapsConfig::daps_4k(),
                    _ => DapsConfig::legacy(),
                };
                Self::Daps(match context {
                    Some(c) => base.for_task(c.task).ok_or_else(|| err("preset", format!("the DAPS configs have no task `{}`", c.task)))?,
                    None => base,
                })
            }
            ("daps", "latent-daps") => Self::Daps(match context {
                Some(c) => {
                    DapsConfig::latent().latent_for_task(c.task).ok_or_else(|| err("preset", format!("the LatentDAPS configs have no task `{}`", c.task)))?
                }
                None => DapsConfig::latent(),
            }),
            ("psld", "repo") => Self::Psld(match context {
                Some(c) => PsldConfig::for_task(c.task).ok_or_else(|| err("preset", format!("the PSLD scripts have no task `{}`", c.task)))?,
                None => PsldConfig::sr4(),
            }),
            ("resample", "repo") => Self::Resample(ResampleConfig::repo()),
            ("ddrm", "gmm") => Self::Ddrm(DdrmConfig::gmm()),
            ("ddrm", "paper") => Self::Ddrm(DdrmConfig::paper()),
            ("ddrm", "gmm-script") => Self::Ddrm(DdrmConfig::gmm_script()),
            ("mcgdiff", "gmm") => Self::Mcgdiff(McgdiffConfig::gmm()),
            ("mcgdiff", "package") => Self::Mcgdiff(McgdiffConfig::package()),
            ("ddsmc", "gmm") => Self::Ddsmc(DdsmcConfig::gmm()),
            ("ddsmc", "inversebench") => Self::Ddsmc(DdsmcConfig::inversebench()),
            ("fps-smc", "repo") => Self::FpsSmc(context.map_or_else(FpsConfig::repo, |c| FpsConfig::for_task(c.task))),
            ("dcdp", "repo-default") => Self::Dcdp(DcdpConfig::repo_default()),
            ("dcdp", "repo") => {
                let t = task()?;
                Self::Dcdp(
                    DcdpConfig::repo(t)
                        .ok_or_else(|| err("preset", format!("the DCDP code has no configuration for task `{t}` (preset `repo-default` is its SR one)")))?,
                )
            }
            ("ddnm", "gmm") => Self::Ddnm(DdnmConfig::gmm()),
            ("ddnm", "paper") => Self::Ddnm(DdnmConfig::paper()),
            ("pigdm", "gmm") => Self::Pigdm(PigdmConfig::gmm()),
            ("pigdm", "paper") => Self::Pigdm(PigdmConfig::paper()),
            ("diffpir", "gmm") => Self::Diffpir(DiffpirConfig::gmm()),
            ("diffpir", "paper") => Self::Diffpir(DiffpirConfig::paper()),
            ("reddiff", "gmm") => Self::Reddiff(RedDiffConfig::gmm()),
            ("reddiff", "paper") => Self::Reddiff(RedDiffConfig::paper()),
            ("pnp-admm", "gmm") => Self::PnpAdmm(PnpAdmmConfig::gmm()),
            ("pnp-admm", "default") => Self::PnpAdmm(PnpAdmmConfig::default_image()),
            ("admm-tv", "default") => Self::AdmmTv(AdmmTvConfig::default_image()),
            ("er", "default") => Self::Er(FienupConfig::default()),
            ("hio", "default") => Self::Hio(FienupConfig::default()),
            ("oss", "default") => Self::Oss(FienupConfig::default()),
            (k, _) if SAMPLER_KINDS.contains(&k) => return Err(unknown()),
            (k, _) => {
                return Err(SamplerError::Config {
                    sampler: k.into(),
                    key: "sampler".into(),
                    why: format!("unknown sampler (known: {})", SAMPLER_KINDS.join(", ")),
                });
            }
        })
    }

    /// The sampler's name.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Exact => "exact",
            Self::Dps(_) => "dps",
            Self::Ddrm(_) => "ddrm",
            Self::Mcgdiff(_) => "mcgdiff",
            Self::FpsSmc(_) => "fps-smc",
            Self::Ddsmc(_) => "ddsmc",
            Self::Dcdp(_) => "dcdp",
            Self::Daps(_) => "daps",
            Self::Psld(_) => "psld",
            Self::Resample(_) => "resample",
            Self::Mcg(_) => "mcg",
            Self::Pigdm(_) => "pigdm",
            Self::Diffpir(_) => "diffpir",
            Self::Reddiff(_) => "reddiff",
            Self::Ddnm(_) => "ddnm",
            Self::PnpAdmm(_) => "pnp-admm",
            Self::AdmmTv(_) => "admm-tv",
            Self::Er(_) => "er",
            Self::Hio(_) => "hio",
            Self::Oss(_) => "oss",
        }
    }

    /// Whether the sampler draws random numbers. The classical solvers (PnP-ADMM, ADMM-TV) are
    /// deterministic functions of y; every other sampler (ER/HIO/OSS through their random
    /// initial phase) depends on the job's seed.
    pub fn is_stochastic(&self) -> bool {
        !matches!(self, Self::PnpAdmm(_) | Self::AdmmTv(_))
    }

    /// Replaces fields by the entries of `overrides` (a TOML table of this sampler's keys). A key
    /// the sampler does not have is an error naming it and listing the keys that exist.
    pub fn with_overrides(self, overrides: &toml::Table) -> Result<Self, SamplerError> {
        let kind = self.kind();
        let toml::Value::Table(mut table) = toml::Value::try_from(&self).expect("configs serialise") else {
            unreachable!("a tagged enum serialises to a table")
        };
        let preset = table.clone();
        for (key, value) in overrides {
            if key == "sampler" || !table.contains_key(key) {
                let mut known: Vec<&str> = table.keys().map(String::as_str).filter(|k| *k != "sampler").collect();
                known.sort_unstable();
                return Err(SamplerError::Config {
                    sampler: kind.into(),
                    key: key.clone(),
                    why: format!("unknown key (known: {})", if known.is_empty() { "none".into() } else { known.join(", ") }),
                });
            }
            table.insert(key.clone(), value.clone());
        }
        toml::Value::Table(table).try_into().map_err(|e: toml::de::Error| {
            // Name the culprit: the first override that alone fails on the preset.
            let culprit = overrides.iter().find(|(key, value)| {
                let mut one = preset.clone();
                one.insert((*key).clone(), (*value).clone());
                toml::Value::Table(one).try_into::<Self>().is_err()
            });
            SamplerError::Config {
                sampler: kind.into(),
                key: culprit.map_or_else(|| "(several keys)".into(), |(key, _)| key.clone()),
                why: e.message().to_string(),
            }
        })
    }

    /// Applies an experiment's step budget: the grid size of the discrete samplers (FPS-SMC's
    /// respaced chain), DAPS's annealing levels, DDSMC's levels, RED-diff's Adam steps; and its η to the samplers
    /// that take one (DPS, MCG, ΠGDM, MCGdiff). DDRM and DDSMC keep their own η's (DDRM as the GMM script; DDSMC's η is another quantity);
    /// DCDP's budget is its rounds and purification steps, set by name.
    pub fn set_budget(&mut self, steps: usize, eta: f64) {
        match self {
            Self::Exact => {}
            Self::Dps(c) => (c.steps, c.eta) = (steps, eta),
            Self::Mcg(c) => (c.steps, c.eta) = (steps, eta),
            Self::Pigdm(c) => (c.steps, c.eta) = (steps, eta),
            Self::Ddrm(c) => c.steps = steps,
            Self::Mcgdiff(c) => (c.steps, c.eta) = (steps, eta),
            Self::FpsSmc(c) => c.steps = steps,
            Self::Ddsmc(c) => c.steps = steps,
            Self::Dcdp(_) => {}
            Self::Diffpir(c) => c.steps = steps,
            Self::Reddiff(c) => c.steps = steps,
            Self::Daps(c) => c.annealing_steps = steps,
            Self::Psld(c) => c.steps = steps,
            Self::Resample(c) => c.steps = steps,
            Self::Ddnm(c) => (c.steps, c.eta) = (steps, eta),
            Self::PnpAdmm(c) => c.iterations = steps,
            Self::AdmmTv(c) => c.iterations = steps,
            Self::Er(c) | Self::Hio(c) | Self::Oss(c) => c.iterations = steps,
        }
    }

    /// Builds the sampler. `Exact` needs the problem's exact posterior.
    pub fn build<B: NnAutodiffBackend>(&self, exact: Option<&ExactPosterior>) -> Result<Box<dyn Sampler<B>>, SamplerError> {
        Ok(match self {
            Self::Exact => Box::new(Exact(exact.cloned().ok_or_else(|| SamplerError::Unsupported {
                sampler: "exact".into(),
                why: "only analytic priors with a linear-Gaussian measurement have an exact posterior".into(),
            })?)),
            Self::Dps(c) => Box::new(Dps(c.clone())),
            Self::Ddrm(c) => Box::new(Ddrm(c.clone())),
            Self::Mcgdiff(c) => Box::new(Mcgdiff(c.clone())),
            Self::FpsSmc(c) => Box::new(FpsSmc(c.clone())),
            Self::Ddsmc(c) => Box::new(Ddsmc(c.clone())),
            Self::Dcdp(c) => Box::new(Dcdp(c.clone())),
            Self::Daps(c) => Box::new(Daps(c.clone())),
            Self::Psld(c) => Box::new(Psld(c.clone())),
            Self::Resample(c) => Box::new(Resample(c.clone())),
            Self::Mcg(c) => Box::new(Mcg(c.clone())),
            Self::Pigdm(c) => Box::new(Pigdm(c.clone())),
            Self::Diffpir(c) => Box::new(Diffpir(c.clone())),
            Self::Reddiff(c) => Box::new(RedDiff(c.clone())),
            Self::Ddnm(c) => Box::new(Ddnm(c.clone())),
            Self::PnpAdmm(c) => Box::new(PnpAdmm(c.clone())),
            Self::AdmmTv(c) => Box::new(AdmmTv(c.clone())),
            Self::Er(c) => Box::new(Fienup(FienupAlgorithm::Er, c.clone())),
            Self::Hio(c) => Box::new(Fienup(FienupAlgorithm::Hio, c.clone())),
            Self::Oss(c) => Box::new(Fienup(FienupAlgorithm::Oss, c.clone())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_replace_fields_and_reject_unknown_keys() {
        let base = SamplerConfig::preset("dps", "gmm").unwrap();
        let t: toml::Table = toml::from_str("scale = 0.5\ngrid = \"uniform\"").unwrap();
        let SamplerConfig::Dps(c) = base.clone().with_overrides(&t).unwrap() else { panic!() };
        assert_eq!(c.scale, 0.5);
        assert_eq!(c.grid, crate::grid::GridKind::Uniform);
        let bad: toml::Table = toml::from_str("zeta = 0.5").unwrap();
        let err = base.clone().with_overrides(&bad).unwrap_err().to_string();
        assert!(err.contains("`zeta`") && err.contains("scale"), "{err}");
        let bad_value: toml::Table = toml::from_str("grid = \"sideways\"").unwrap();
        let err = base.with_overrides(&bad_value).unwrap_err().to_string();
        assert!(err.contains("sideways"), "{err}");
    }

    #[test]
    fn unknown_sampler_and_preset_are_named() {
        let e = SamplerConfig::preset("dpss", "gmm").unwrap_err().to_string();
        assert!(e.contains("dpss") && e.contains("daps"), "{e}");
        let e = SamplerConfig::preset("dps", "paper").unwrap_err().to_string();
        assert!(e.contains("paper") && e.contains("gmm") && e.contains("dps-repo"), "{e}");
        let e = SamplerConfig::preset("dps", "dps-repo").unwrap_err().to_string();
        assert!(e.contains("task"), "{e}");
        let ctx = PresetContext { task: "hdr", dataset: "ffhq256-1k", noise: "gaussian" };
        let e = SamplerConfig::preset_in("dps", "dps-repo", Some(&ctx)).unwrap_err().to_string();
        assert!(e.contains("hdr"), "{e}");
    }

    #[test]
    fn task_presets_carry_the_published_values() {
        // docs/protocols.md §3.2: scale 0.5 for inpainting in the configs, ζ′ = 0.4 for
        // ImageNet Gaussian deblur in the paper (scale 2ζ′), ζ′ = 0.3 under Poisson noise.
        let ctx = |task, dataset, noise| PresetContext { task, dataset, noise };
        let Ok(SamplerConfig::Dps(c)) = SamplerConfig::preset_in("dps", "dps-repo", Some(&ctx("inpaint_box", "ffhq256-1k", "gaussian"))) else { panic!() };
        assert_eq!((c.scale, c.steps, c.clip_x0), (0.5, 1000, 1.0));
        let Ok(SamplerConfig::Dps(c)) = SamplerConfig::preset_in("dps", "dps-paper", Some(&ctx("deblur_gauss", "imagenet256-1k", "gaussian"))) else {
            panic!()
        };
        assert!((c.scale - 0.8).abs() < 1e-12);
        let Ok(SamplerConfig::Dps(c)) = SamplerConfig::preset_in("dps", "dps-paper", Some(&ctx("sr4", "ffhq256-1k", "poisson"))) else { panic!() };
        assert!((c.scale - 0.6).abs() < 1e-12 && c.likelihood == Likelihood::PoissonPaper);
        // docs/protocols.md §3.4: nonlinear deblur N_L = 200, η₀ = 1e-5 (main), 100 / 5e-5 (legacy).
        let Ok(SamplerConfig::Daps(c)) = SamplerConfig::preset_in("daps", "daps-1k", Some(&ctx("deblur_nonlinear", "ffhq256-100", "gaussian"))) else {
            panic!()
        };
        assert_eq!((c.langevin_steps, c.lr, c.annealing_steps, c.ode_steps), (200, 1e-5, 200, 5));
        let Ok(SamplerConfig::Daps(c)) = SamplerConfig::preset_in("daps", "daps-legacy", Some(&ctx("deblur_nonlinear", "ffhq256-100", "gaussian"))) else {
            panic!()
        };
        assert_eq!((c.langevin_steps, c.lr), (100, 5e-5));
        let Ok(SamplerConfig::Daps(c)) = SamplerConfig::preset_in("daps", "daps-1k", Some(&ctx("inpaint_box", "ffhq256-100", "gaussian"))) else { panic!() };
        assert_eq!((c.langevin_steps, c.lr), (100, 5e-5));
    }
}
