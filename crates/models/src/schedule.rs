//! Noise schedules: the discrete variance-preserving (VP) tables of DDPM and of the MCGdiff
//! Gaussian-mixture script, the continuous-VP map that DAPS uses to feed a float timestep
//! to a discrete-time network, and the Karras/EDM polynomial annealing grid.
//!
//! Conventions: `alpha_bar[t]` is ᾱ_t of DDPM (Ho et al. 2020, eq. 4), x_t = √ᾱ_t·x₀ + √(1−ᾱ_t)·ε.
//! The variance-exploding (VE) view of the same state is x = x_t/√ᾱ_t = x₀ + σ_t·ε with
//! σ_t = √((1−ᾱ_t)/ᾱ_t) (Karras et al. 2022, "EDM", Table 1).

use crate::error::ModelError;

/// A discrete VP noise schedule: the table ᾱ_0 … ᾱ_{T−1}, in f64.
#[derive(Debug, Clone, PartialEq)]
pub struct VpSchedule {
    name: String,
    alpha_bar: Vec<f64>,
}

impl VpSchedule {
    /// DDPM's linear schedule (Ho et al. 2020 §4): β = linspace(β_start, β_end, T) in f64 and
    /// ᾱ_t = Π_{i≤t}(1−β_i). With (1e-4, 0.02, 1000) this is the schedule of the guided-diffusion
    /// checkpoints used by DPS, MCG and DAPS (docs/protocols.md §3.1): ᾱ_999 ≈ 4.04e-5.
    pub fn linear(beta_start: f64, beta_end: f64, steps: usize) -> Self {
        let betas = linspace(beta_start, beta_end, steps);
        let mut acc = 1.0;
        let alpha_bar = betas
            .iter()
            .map(|b| {
                acc *= 1.0 - b;
                acc
            })
            .collect();
        Self { name: format!("linear({beta_start},{beta_end},{steps})"), alpha_bar }
    }

    /// Latent diffusion's "linear" schedule (`make_beta_schedule("linear")` of CompVis ldm):
    /// β = linspace(√β_start, √β_end, T)², linear in √β, in f64; ᾱ_t = Π_{i≤t}(1−β_i). The
    /// LDM-VQ-4 checkpoints use (0.0015, 0.0195, 1000): σ_t = √(1/ᾱ_t − 1) from 0.0388 to 83.8.
    pub fn sqrt_linear(beta_start: f64, beta_end: f64, steps: usize) -> Self {
        let mut acc = 1.0;
        let alpha_bar = linspace(beta_start.sqrt(), beta_end.sqrt(), steps)
            .iter()
            .map(|r| {
                acc *= 1.0 - r * r;
                acc
            })
            .collect();
        Self { name: format!("sqrt-linear({beta_start},{beta_end},{steps})"), alpha_bar }
    }

    /// The schedule of the original MCGdiff Gaussian-mixture script (docs/gmm.md): β =
    /// linspace(0.02, 1e-4, 999) — note: *decreasing* — and ᾱ = cumprod([1] ++ (1 − β)), so
    /// ᾱ_0 = 1 exactly (t = 0 is the data) and ᾱ_999 ≈ e^−10.
    pub fn mcgdiff_gmm() -> Self {
        let betas = linspace(0.02, 1e-4, 999);
        let mut alpha_bar = Vec::with_capacity(1000);
        let mut acc = 1.0;
        alpha_bar.push(acc);
        for b in betas {
            acc *= 1.0 - b;
            alpha_bar.push(acc);
        }
        Self { name: "mcgdiff-gmm".into(), alpha_bar }
    }

    /// Looks a schedule up by the name used in experiment files: `linear` (DDPM 1e-4→0.02, 1000
    /// steps) or `mcgdiff-gmm`.
    pub fn by_name(name: &str) -> Result<Self, ModelError> {
        match name {
            "linear" => Ok(Self::linear(1e-4, 0.02, 1000)),
            "mcgdiff-gmm" => Ok(Self::mcgdiff_gmm()),
            other => Err(ModelError::UnknownName { what: "noise schedule", name: other.into(), known: "linear, mcgdiff-gmm".into() }),
        }
    }

    /// The schedule's name (for tables and logs).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of discrete steps T.
    pub fn len(&self) -> usize {
        self.alpha_bar.len()
    }

    /// Always false: a schedule has at least one step.
    pub fn is_empty(&self) -> bool {
        self.alpha_bar.is_empty()
    }

    /// ᾱ_t. Index −1 ("before the first step", the clean data) is written `None` by callers and
    /// means ᾱ = 1; see [`VpSchedule::alpha_bar_or_one`].
    pub fn alpha_bar(&self, t: usize) -> f64 {
        self.alpha_bar[t]
    }

    /// ᾱ_t, or 1 for `None` (the clean end of the chain, as DDIM/DDRM write `t = −1`).
    pub fn alpha_bar_or_one(&self, t: Option<usize>) -> f64 {
        t.map_or(1.0, |t| self.alpha_bar[t])
    }

    /// The whole ᾱ table.
    pub fn alpha_bars(&self) -> &[f64] {
        &self.alpha_bar
    }

    /// The levels ᾱ′ of a respaced chain that keeps the steps `kept` (ascending) of this
    /// schedule, as guided-diffusion's `SpacedDiffusion` builds them: β′_j = 1 − ᾱ_{kept_j}/ᾱ_{kept_{j−1}}
    /// (ᾱ before the first kept step taken as 1), then ᾱ′ = cumprod(1 − β′), all in f64. Equal to
    /// ᾱ[kept] up to the rounding of that round trip, which the reference keeps.
    pub fn respaced_alpha_bars(&self, kept: &[usize]) -> Vec<f64> {
        let mut last = 1.0;
        let mut acc = 1.0;
        kept.iter()
            .map(|&t| {
                let beta = 1.0 - self.alpha_bar[t] / last;
                last = self.alpha_bar[t];
                acc *= 1.0 - beta;
                acc
            })
            .collect()
    }

    /// VE noise level σ_t = √((1−ᾱ_t)/ᾱ_t) of step t.
    pub fn sigma(&self, t: usize) -> f64 {
        ve_sigma(self.alpha_bar[t])
    }

    /// Timesteps linspace(0, T−1, n) truncated to integers, as `torch.linspace(0, T-1, n).long()`:
    /// the uniform grid of DDIM-style samplers. Returned ascending (t_0 = 0 … t_{n−1} = T−1).
    pub fn grid_uniform(&self, n: usize) -> Vec<usize> {
        let t_max = (self.len() - 1) as f64;
        let mut grid: Vec<usize> = linspace(0.0, t_max, n).into_iter().map(|v| v.floor() as usize).collect();
        grid.dedup();
        grid
    }

    /// The timestep grid of the original MCGdiff GMM script (`get_optimal_timesteps_from_
    /// singular_values`, mode 'else'): steps are added while √ᾱ decreases by a constant amount
    /// from 1 to 0.01 (the first index where √ᾱ < 1e-2 is `end`), plus the "optimal" indices where
    /// the diffusion noise matches the measurement noise σ_y²·ᾱ_t ≈ (1−ᾱ_t)·s_i², then the rest of
    /// the budget is spread as ceil(linspace(last, T−1, ·)). Ascending, starting at 0.
    ///
    /// Reference quirk, kept: the script takes `torch.unique` of the (singular value × t) table,
    /// which flattens and sorts it, and then one `argmin` over that flat list, so a single
    /// "optimal" index is produced and it indexes the sorted list, not the time axis. We
    /// reproduce that (it only adds one extra grid point).
    pub fn grid_mcgdiff_adapted(&self, n: usize, singular_values: &[f64], var_y: f64) -> Vec<usize> {
        let sqrt_ab: Vec<f64> = self.alpha_bar.iter().map(|a| a.sqrt()).collect();
        // torch.unique(var·ᾱ − (1−ᾱ)·s²) over the whole (s, t) table, sorted ascending.
        let mut flat: Vec<f64> = singular_values.iter().flat_map(|s| self.alpha_bar.iter().map(move |a| var_y * a - (1.0 - a) * s * s)).collect();
        flat.sort_by(f64::total_cmp);
        flat.dedup();
        let optimal = flat.iter().enumerate().min_by(|a, b| a.1.abs().total_cmp(&b.1.abs())).map(|(i, _)| i).filter(|&i| i != 0);
        let end = sqrt_ab.iter().position(|&v| v < 1e-2).unwrap_or(self.len() - 1);
        let n_opt = usize::from(optimal.is_some());
        let target = (sqrt_ab[0] - sqrt_ab[end]) / (n as f64 - 1.0 - n_opt as f64);
        let mut grid = vec![0usize];
        let mut last = sqrt_ab[0];
        for (i, &v) in sqrt_ab.iter().enumerate().take(end).skip(1) {
            if last - v >= target || Some(i) == optimal {
                grid.push(i);
                last = v;
            }
        }
        let from = *grid.last().unwrap() as f64;
        let rest = n.saturating_sub(grid.len()) + 1;
        if rest >= 2 {
            for v in linspace(from, (self.len() - 1) as f64, rest).into_iter().skip(1) {
                grid.push(v.ceil() as usize);
            }
        }
        grid
    }
}

/// VE noise level σ = √((1−ᾱ)/ᾱ) of a VP level ᾱ (EDM Table 1, "VP").
pub fn ve_sigma(alpha_bar: f64) -> f64 {
    ((1.0 - alpha_bar) / alpha_bar).sqrt()
}

/// VP level ᾱ = 1/(1+σ²) of a VE noise level σ.
pub fn alpha_bar_of_sigma(sigma: f64) -> f64 {
    1.0 / (1.0 + sigma * sigma)
}

/// The continuous VP schedule of score-SDE (Song et al. 2021, eq. 33) with β_min = 0.1,
/// β_d = 19.9, as used by EDM's and DAPS's `VPPrecond` to turn a VE σ into the float timestep a
/// discrete-time network expects: c_noise = (M−1)·t(σ), M = 1000 (EDM Table 1, "VP").
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ContinuousVp {
    /// β_min of the linear continuous schedule (0.1).
    pub beta_min: f64,
    /// β_d = β_max − β_min (19.9).
    pub beta_d: f64,
    /// M, the number of training steps of the network (1000).
    pub m: f64,
}

impl Default for ContinuousVp {
    fn default() -> Self {
        Self { beta_min: 0.1, beta_d: 19.9, m: 1000.0 }
    }
}

impl ContinuousVp {
    /// t(σ) = (√(β_min² + 2β_d·ln(1+σ²)) − β_min)/β_d (EDM Table 1, VP σ⁻¹).
    pub fn t_of_sigma(&self, sigma: f64) -> f64 {
        ((self.beta_min * self.beta_min + 2.0 * self.beta_d * (1.0 + sigma * sigma).ln()).sqrt() - self.beta_min) / self.beta_d
    }

    /// c_noise(σ) = (M−1)·t(σ): σ = 100 → 956.15, σ = 1 → 258.70, σ = 0.1 → 26.97
    /// (docs/protocols.md §3.4).
    pub fn c_noise(&self, sigma: f64) -> f64 {
        (self.m - 1.0) * self.t_of_sigma(sigma)
    }

    /// c_noise(σ) in float32, term by term as EDM's / DAPS's `VPPrecond` computes it on a
    /// float32 σ: (M−1)·((β_min² + 2β_d·ln(1+σ²))^{1/2} − β_min)/β_d. This is the value the
    /// network actually receives; it differs from the f64 value by up to ~1e-6 relative.
    pub fn c_noise_f32(&self, sigma: f64) -> f32 {
        let s = sigma as f32;
        let log = (1.0f32 + s * s).ln();
        let root = ((self.beta_min * self.beta_min) as f32 + (2.0 * self.beta_d) as f32 * log).sqrt();
        (self.m - 1.0) as f32 * ((root - self.beta_min as f32) / self.beta_d as f32)
    }
}

/// The Karras/EDM polynomial grid σ_i = (σ_max^{1/ρ} + i/(n−1)·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ,
/// i = 0…n−1 (EDM eq. 5), decreasing from σ_max to σ_min. ρ = 7 in EDM and DAPS.
pub fn karras_grid(sigma_max: f64, sigma_min: f64, n: usize, rho: f64) -> Vec<f64> {
    let (a, b) = (sigma_max.powf(1.0 / rho), sigma_min.powf(1.0 / rho));
    linspace(0.0, 1.0, n).into_iter().map(|r| (a + r * (b - a)).powf(rho)).collect()
}

/// guided-diffusion's `space_timesteps(num_timesteps, [count])` (one section): `count` steps of
/// 0 … num_timesteps−1 at the fractional stride (num_timesteps − 1)/(count − 1), accumulated by
/// repeated f64 addition and rounded half to even (Python's `round`), ascending. `count` ≤ 1
/// keeps step 0 only.
pub fn space_timesteps(num_timesteps: usize, count: usize) -> Vec<usize> {
    let stride = if count <= 1 { 1.0 } else { (num_timesteps as f64 - 1.0) / (count as f64 - 1.0) };
    let mut cur = 0.0f64;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count.max(1) {
        out.push(cur.round_ties_even() as usize);
        cur += stride;
    }
    out.dedup();
    out
}

/// n evenly spaced values from `start` to `end` inclusive (numpy/torch `linspace`).
pub fn linspace(start: f64, end: f64, n: usize) -> Vec<f64> {
    match n {
        0 => vec![],
        1 => vec![start],
        _ => {
            let step = (end - start) / (n - 1) as f64;
            (0..n).map(|i| if i == n - 1 { end } else { start + step * i as f64 }).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn respacing_follows_guided_diffusion() {
        // space_timesteps(1000, [6]) = {0, 200, 400, 599, 799, 999}: stride 199.8 summed, 599.4 → 599.
        assert_eq!(space_timesteps(1000, 6), vec![0, 200, 400, 599, 799, 999]);
        assert_eq!(space_timesteps(400, 4), vec![0, 133, 266, 399]);
        assert_eq!(space_timesteps(2, 2), vec![0, 1]);
        assert_eq!(space_timesteps(1000, 1000), (0..1000).collect::<Vec<_>>());
        let s = VpSchedule::linear(1e-4, 0.02, 1000);
        let kept = space_timesteps(1000, 6);
        for (a, &t) in s.respaced_alpha_bars(&kept).iter().zip(&kept) {
            assert!((a / s.alpha_bar(t) - 1.0).abs() < 1e-13, "ᾱ′ at {t}: {a} vs {}", s.alpha_bar(t));
        }
    }

    #[test]
    fn linear_schedule_matches_ddpm_end_value() {
        // docs/protocols.md §3.1: ᾱ_999 = 4.04e-5 for linear(1e-4, 0.02, 1000).
        let s = VpSchedule::linear(1e-4, 0.02, 1000);
        assert_eq!(s.len(), 1000);
        assert!((s.alpha_bar(999) - 4.04e-5).abs() < 0.01e-5, "{}", s.alpha_bar(999));
        assert!((s.alpha_bar(0) - (1.0 - 1e-4)).abs() < 1e-15);
    }

    #[test]
    fn mcgdiff_schedule_starts_clean_and_ends_near_e_minus_10() {
        let s = VpSchedule::mcgdiff_gmm();
        assert_eq!(s.len(), 1000);
        assert_eq!(s.alpha_bar(0), 1.0);
        // Σβ ≈ 999·(0.02+1e-4)/2 ≈ 10.04, so ᾱ_999 ≈ e^{-10.04-Σβ²/2}.
        let sum_b: f64 = linspace(0.02, 1e-4, 999).iter().sum();
        let sum_b2: f64 = linspace(0.02, 1e-4, 999).iter().map(|b| b * b).sum();
        let approx = (-sum_b - sum_b2 / 2.0).exp();
        assert!((s.alpha_bar(999) / approx - 1.0).abs() < 1e-3);
    }

    #[test]
    fn continuous_vp_c_noise_matches_daps_values() {
        // Values printed in docs/protocols.md §3.4 (and samplers.json of the golden fixtures).
        let c = ContinuousVp::default();
        assert!((c.c_noise(100.0) - 956.15).abs() < 0.01);
        assert!((c.c_noise(1.0) - 258.70).abs() < 0.01);
        assert!((c.c_noise(0.1) - 26.97).abs() < 0.01);
        // t(σ) inverts σ(t) = √(exp(½β_d t² + β_min t) − 1).
        for &t in &[0.01f64, 0.3, 0.9] {
            let sigma = ((0.5 * 19.9 * t * t + 0.1 * t).exp() - 1.0).sqrt();
            assert!((c.t_of_sigma(sigma) - t).abs() < 1e-12);
        }
    }

    #[test]
    fn karras_grid_endpoints_and_daps_second_value() {
        let g = karras_grid(100.0, 0.1, 201, 7.0);
        assert_eq!(g.len(), 201);
        assert!((g[0] - 100.0).abs() < 1e-9 && (g[200] - 0.1).abs() < 1e-12);
        // DAPS main: σ goes 100, 97.83, 95.69, … (docs/protocols.md §3.4).
        assert!((g[1] - 97.83).abs() < 0.005 && (g[2] - 95.69).abs() < 0.005, "{:?}", &g[..3]);
        assert!(g.windows(2).all(|w| w[1] < w[0]));
    }

    #[test]
    fn uniform_grid_is_torch_linspace_long() {
        let s = VpSchedule::mcgdiff_gmm();
        let g = s.grid_uniform(20);
        assert_eq!(g.len(), 20);
        assert_eq!(g[0], 0);
        assert_eq!(g[1], 52); // 999/19 = 52.58 → 52
        assert_eq!(*g.last().unwrap(), 999);
    }

    #[test]
    fn adapted_grid_has_the_budget_and_is_increasing() {
        let s = VpSchedule::mcgdiff_gmm();
        for &(n, sv, var) in &[(20usize, [0.9, 0.3], 0.2), (100, [0.5, 0.1], 0.01)] {
            let g = s.grid_mcgdiff_adapted(n, &sv, var);
            assert_eq!(g[0], 0);
            assert!(g.windows(2).all(|w| w[1] > w[0]), "{g:?}");
            assert_eq!(*g.last().unwrap(), 999);
            assert!(g.len() >= n - 1 && g.len() <= n + 1, "{} vs {n}", g.len());
        }
    }
}
