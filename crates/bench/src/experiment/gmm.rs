//! `[gmm]`: the grid of the Gaussian-mixture benchmark (`docs/gmm.md`), validated, with every
//! method's sampler configuration resolved.

use anyhow::{Context, Result, bail};
use dipbench_samplers::SamplerConfig;
use serde::{Deserialize, Serialize};

use super::{Method, check_finite};

/// `[gmm]` as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GmmGrid {
    /// Dimensions d (even).
    pub dims: Vec<usize>,
    /// Measurement dimensions d_y (each ≤ d).
    pub obs_dims: Vec<usize>,
    /// Replicates per (d, d_y, budget).
    pub replicates: usize,
    /// Samples drawn per method and replicate (and exact reference draws).
    pub samples: usize,
    /// Discrete schedule of the prior's ε̂ view (`mcgdiff-gmm` as the original, or `linear`).
    #[serde(default = "default_schedule")]
    pub schedule: String,
    /// Step budgets, each with its DDIM η.
    pub budgets: Vec<Budget>,
}

fn default_schedule() -> String {
    "mcgdiff-gmm".into()
}

/// One step budget.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Number of steps (grid points; DAPS: annealing levels).
    pub steps: usize,
    /// DDIM stochasticity η for the samplers that take one.
    pub eta: f64,
}

/// A validated GMM experiment.
#[derive(Debug, Clone)]
pub struct GmmExperiment {
    /// The grid.
    pub grid: GmmGrid,
    /// Each method's resolved configuration (preset + overrides; the budget is set per job).
    pub configs: Vec<SamplerConfig>,
}

/// The most memory a job may ask for before it is refused, bytes: the machine's memory when known
/// (Linux `/proc/meminfo`), else 1 TiB.
fn memory_limit() -> f64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| t.lines().find_map(|l| l.strip_prefix("MemTotal:").map(|r| r.trim().trim_end_matches("kB").trim().parse::<f64>().ok())))
        .flatten()
        .map(|kb| kb * 1024.0)
        .unwrap_or(1024f64.powi(4))
}

/// An estimate of a job's peak memory in bytes: a sampler keeps about 16 float32 arrays of the
/// samples (n × d), the exact posterior a few d × d float64 matrices.
fn job_memory(samples: usize, d: usize) -> f64 {
    16.0 * 4.0 * samples as f64 * d as f64 + 6.0 * 8.0 * (d as f64).powi(2)
}

impl GmmExperiment {
    /// Checks the grid and resolves the methods.
    pub fn validate(grid: GmmGrid, methods: &[Method]) -> Result<Self> {
        if grid.dims.is_empty() || grid.obs_dims.is_empty() || grid.budgets.is_empty() {
            bail!("keys `gmm.dims`, `gmm.obs_dims` and `gmm.budgets` must not be empty");
        }
        super::check_distinct("gmm.dims", &grid.dims)?;
        super::check_distinct("gmm.obs_dims", &grid.obs_dims)?;
        super::check_distinct("gmm.budgets", &grid.budgets)?;
        for &d in &grid.dims {
            if d == 0 || d % 2 != 0 {
                bail!("key `gmm.dims`: {d} is not a positive even dimension (the means repeat a 2-D pattern)");
            }
            for &dy in &grid.obs_dims {
                if dy == 0 || dy > d {
                    bail!("key `gmm.obs_dims`: d_y = {dy} must be in 1..={d}");
                }
            }
        }
        if grid.replicates == 0 || grid.samples < 2 {
            bail!("keys `gmm.replicates` ≥ 1 and `gmm.samples` ≥ 2 are required");
        }
        let limit = memory_limit();
        for &d in &grid.dims {
            let need = job_memory(grid.samples, d);
            if need > limit {
                bail!(
                    "keys `gmm.samples` = {} and `gmm.dims` = {d}: a job would need about {:.1} GiB of memory, this machine has {:.1} GiB",
                    grid.samples,
                    need / 1024f64.powi(3),
                    limit / 1024f64.powi(3)
                );
            }
        }
        let jobs = grid.dims.len().saturating_mul(grid.obs_dims.len()).saturating_mul(grid.budgets.len()).saturating_mul(grid.replicates);
        if jobs > 10_000_000 || grid.dims.len() > 20 || grid.obs_dims.len() > 20 || grid.budgets.len() > 20 {
            bail!("keys `gmm.dims`, `gmm.obs_dims`, `gmm.budgets` (at most 20 values each) and `gmm.replicates` make {jobs} jobs; at most 10 million");
        }
        if grid.replicates > 1_000_000 {
            bail!("key `gmm.replicates` = {} is more than a million", grid.replicates);
        }
        dipbench_models::VpSchedule::by_name(&grid.schedule).context("key `gmm.schedule`")?;
        for b in &grid.budgets {
            if b.steps < 2 || b.steps > 100_000 || !(0.0..=1.0).contains(&b.eta) {
                bail!("key `gmm.budgets`: steps in 2..=100000 and η in [0, 1] required, got {b:?}");
            }
        }
        let mut configs = vec![];
        for m in methods {
            for key in ["steps", "eta"] {
                if m.settings.contains_key(key) {
                    bail!("method `{}`: key `{key}` is set by the budgets of `gmm.budgets` in a GMM experiment; remove it", m.label);
                }
            }
            if !m.tasks.is_empty() {
                bail!("method `{}`: key `tasks` is for image experiments", m.label);
            }
            if !m.per_task.is_empty() {
                bail!("method `{}`: key `per_task` is for image experiments", m.label);
            }
            if m.model.is_some() || m.checkpoint.is_some() {
                bail!("method `{}`: keys `model` and `checkpoint` are for image experiments", m.label);
            }
            let config =
                SamplerConfig::preset(&m.sampler, &m.preset).and_then(|c| c.with_overrides(&m.settings)).with_context(|| format!("method `{}`", m.label))?;
            check_finite(&config, &format!("method `{}`", m.label))?;
            configs.push(config);
        }
        Ok(Self { grid, configs })
    }

    /// The settings of the folder fingerprint (all but the grid's extent).
    pub fn folder_key(&self) -> String {
        format!("gmm|{}|{}", self.grid.schedule, self.grid.samples)
    }
}
