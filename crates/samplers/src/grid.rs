//! Timestep grids of the discrete-time samplers and the (t → t′) pairs they step through.

use dipbench_models::VpSchedule;
use serde::{Deserialize, Serialize};

use crate::error::SamplerError;

/// How the `steps` grid points are chosen among the schedule's T steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GridKind {
    /// linspace(0, T−1, steps) truncated (DDIM's "uniform" skip; `torch.linspace(...).long()`).
    Uniform,
    /// The MCGdiff GMM script's grid, uniform in √ᾱ plus the step where the diffusion noise
    /// matches the measurement noise ([`VpSchedule::grid_mcgdiff_adapted`]). Needs the operator's
    /// singular values and σ_y.
    McgdiffAdapted,
}

/// A descending chain of steps (t, t′): evaluate the prior at t, move to t′ (`None` = the clean
/// end, ᾱ = 1).
///
/// From an ascending grid g_0 < … < g_{n−1} the chain is (g_{n−1}, g_{n−2}), …, (g_1, g_0), then
/// (g_0, None) unless ᾱ_{g_0} = 1 already (the MCGdiff schedule's t = 0 is the data itself, so a
/// step there would be a no-op evaluation).
pub fn chain(schedule: &VpSchedule, grid: &[usize]) -> Vec<(usize, Option<usize>)> {
    let mut steps: Vec<(usize, Option<usize>)> = grid.windows(2).rev().map(|w| (w[1], Some(w[0]))).collect();
    if let Some(&g0) = grid.first()
        && schedule.alpha_bar(g0) < 1.0
    {
        steps.push((g0, None));
    }
    steps
}

/// Builds the ascending grid of `kind` with `steps` points.
pub fn build_grid(
    schedule: &VpSchedule,
    kind: GridKind,
    steps: usize,
    singular_values: Option<&[f64]>,
    sigma_y: f64,
    sampler: &str,
) -> Result<Vec<usize>, SamplerError> {
    if steps < 2 || steps > schedule.len() {
        return Err(SamplerError::Config { sampler: sampler.into(), key: "steps".into(), why: format!("must be in 2..={}, got {steps}", schedule.len()) });
    }
    Ok(match kind {
        GridKind::Uniform => schedule.grid_uniform(steps),
        GridKind::McgdiffAdapted => {
            let sv = singular_values.ok_or_else(|| SamplerError::Unsupported {
                sampler: sampler.into(),
                why: "grid `mcgdiff-adapted` needs the operator's singular values".into(),
            })?;
            schedule.grid_mcgdiff_adapted(steps, sv, sigma_y * sigma_y)
        }
    })
}

/// The step chain of a discrete-time sampler on `problem`: grid of `kind` with `steps` points
/// (the adapted grid takes the operator's singular values and σ_y), then [`chain`].
pub fn problem_chain<B: burn::prelude::Backend>(
    problem: &crate::common::Problem<'_, B>,
    kind: GridKind,
    steps: usize,
    sampler: &str,
) -> Result<Vec<(usize, Option<usize>)>, SamplerError> {
    let schedule = problem.prior.schedule();
    let sv = problem.operator.as_linear().and_then(|l| l.svd()).map(|s| s.singular_values().to_vec());
    let grid = build_grid(schedule, kind, steps, sv.as_deref(), problem.sigma_y, sampler)?;
    Ok(chain(schedule, &grid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_skips_the_clean_step_only_when_alpha_bar_is_one() {
        let gmm = VpSchedule::mcgdiff_gmm();
        assert_eq!(chain(&gmm, &[0, 500, 999]), vec![(999, Some(500)), (500, Some(0))]);
        let lin = VpSchedule::linear(1e-4, 0.02, 1000);
        assert_eq!(chain(&lin, &[0, 500, 999]), vec![(999, Some(500)), (500, Some(0)), (0, None)]);
    }
}
