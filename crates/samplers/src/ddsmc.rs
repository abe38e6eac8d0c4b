//! DDSMC — Decoupled Diffusion Sequential Monte Carlo (Kelvinius & Lindsten, "Solving
//! Linear-Gaussian Bayesian Inverse Problems with Decoupled Diffusion Sequential Monte Carlo",
//! ICML 2025), as InverseBench's `algo/ddsmc.py` runs it (Tweedie reconstruction, multinomial
//! resampling every step), for y = A·x + σ_y·ε with A = U·diag(s)·Vᵀ.
//!
//! VE noise levels σ_0 > … > σ_{K−1} = σ_min (poly-7), σ_K = 0, and a second sequence ρ_k, the
//! assumed spread of x₀ around x̂₀ at level k (ρ_K = 0). With x̄ = Vᵀx, ȳ = Uᵀy on the r observed
//! coordinates, step k = 0 … K−1 of a cloud of particles x:
//! 1. x̂₀ = D(x; σ_k) (one denoiser call per particle);
//! 2. ℓ_k = Σ_i −½·(s_i·x̂₀̄_i − ȳ_i)²/(σ_y² + ρ_k²·s_i²), the likelihood of y if x₀ ~ N(x̂₀, ρ_k²I);
//! 3. log-weights: ℓ_0 at k = 0; then ℓ_k + log q(x | x′, x̂₀′) − ℓ′_{k−1} − log r(x), where the
//!    primes are the ancestors' values, q the "decoupled" target transition
//!    N((1−f)·x′ + f·x̂₀′, Δσ²·σ_k²/(η·σ_k² + Δσ²)), f = Δσ²/(η·σ_k² + Δσ²), Δσ² = σ_{k−1}² − σ_k²,
//!    and r the proposal density of x (step 5); normalisation constants that every particle shares
//!    are dropped, as in the reference;
//! 4. multinomial resampling within each cloud;
//! 5. proposal to level k+1: x₀ | (x̂₀, y) under x₀ ~ N(x̂₀, ρ_k²I) is Gaussian per coordinate,
//!    variance M⁻¹_i = ρ²σ_y²/(s_i²ρ² + σ_y²) and mean μ̄_i = (ρ²s_i·ȳ_i + σ_y²·x̂₀̄_i)/(s_i²ρ² + σ_y²)
//!    on observed coordinates, (x̂₀, ρ²) elsewhere; with Δσ² = σ_k² − σ_{k+1}² and
//!    f = Δσ²/(η·σ_{k+1}² + Δσ²), x_{k+1} ~ N(f·μ + (1−f)·x′, σ_{k+1}²·f − (f·ρ)² + f²·M⁻¹) — which is
//!    σ_{k+1}²·f on unobserved coordinates. The last step (σ_K = 0, f = 1) is deterministic:
//!    x_K = μ.
//!
//! After the last step the log-weights are ℓ(x_K; ρ = 0) − ℓ′_{K−1} − log r (log r = 0: the last
//! move is deterministic) and the output is drawn from them ([`DdsmcOutput`]).
//!
//! Differences from the reference, all of them harmless or deliberate: the network runs on x in
//! the data basis (the reference rotates to Vᵀx and back around the same call); log r is −½‖z‖²
//! of the proposal's standard normal z, which is what the reference's −½Σ(x − mean)²/diag
//! equals; a negative proposal variance (possible on an observed coordinate when ρ_k is large
//! next to σ_{k+1} and σ_y is small; the reference takes its square root and gets NaN) is set
//! to 0, that coordinate moving to its mean and leaving log r; the reference's rescaling of the
//! observation for its own image normalisation has no counterpart (dipbench's operators act on
//! the data as the prior sees it).

use burn::prelude::*;
use dipbench_models::schedule::karras_grid;
use dipbench_nn::NnAutodiffBackend;
use dipbench_operators::SampleRng;
use serde::{Deserialize, Serialize};

use crate::Sampler;
use crate::common::Problem;
use crate::error::SamplerError;
use crate::mcgdiff::{host, indices, resample_with};

/// How the ρ_k sequence is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RhoRule {
    /// A poly-7 grid from `rho_max` to `rho_min` over the K levels, then 0 (the reference's
    /// `rho_scheduler_config`, its values tuned on images).
    Poly,
    /// ρ_k² = v·σ_k²/(v + σ_k²) with v = `data_variance`: the exact spread of x₀ given x₀ + σ_k·n
    /// when x₀ ~ N(μ, v·I) — the GMM benchmark's components have v = 1.
    Gaussian,
}

/// How a cloud is resampled (the reference's `BatchedSMCHelper`): each of a cloud's P rows takes
/// the particle whose cumulative normalised weight first exceeds its point u_j.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Resampling {
    /// u_j independent uniforms (the reference's default).
    Multinomial,
    /// u_j = (j + U)/P with one uniform U per cloud: equal weights keep every particle.
    Systematic,
    /// u_j = (j + U_j)/P with one uniform per row.
    Stratified,
}

/// What a cloud returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DdsmcOutput {
    /// Every sample has its own cloud of `particles` (run inside the row) and returns one
    /// particle drawn by the final weights (the reference's `importance_sampling`).
    Draw,
    /// Consecutive rows of the batch form clouds of `particles`; each cloud is returned
    /// resampled by its final weights (the GMM benchmark's convention, as for MCGdiff).
    Cloud,
}

/// DDSMC settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DdsmcConfig {
    /// K, the number of noise levels (one denoiser call per particle each).
    pub steps: usize,
    /// σ_max of the poly-7 level grid (and of x_0 ~ N(0, σ_max²I)).
    pub sigma_max: f64,
    /// σ_min, the last positive level.
    pub sigma_min: f64,
    /// ρ of the poly-ρ grids (7).
    pub rho_poly: f64,
    /// η of the decoupled transition (0 moves the mean to the reconstruction, large η keeps the
    /// particle; 1 is DDPM's posterior).
    pub eta: f64,
    /// How ρ_k is chosen.
    pub rho: RhoRule,
    /// ρ_max of [`RhoRule::Poly`].
    pub rho_max: f64,
    /// ρ_min of [`RhoRule::Poly`].
    pub rho_min: f64,
    /// v of [`RhoRule::Gaussian`].
    pub data_variance: f64,
    /// Particles per cloud.
    pub particles: usize,
    /// How clouds are resampled at every level.
    pub resampling: Resampling,
    /// What a cloud returns.
    pub output: DdsmcOutput,
}

impl DdsmcConfig {
    /// InverseBench's `configs/algorithm/ddsmc.yaml` (its setting for 360 measurements): 200
    /// levels σ 100 → 0.01, ρ 47 → 0.01 (both poly-7), η = 0.5, 16 particles per sample, one
    /// particle returned.
    pub fn inversebench() -> Self {
        Self {
            steps: 200,
            sigma_max: 100.0,
            sigma_min: 0.01,
            rho_poly: 7.0,
            eta: 0.5,
            rho: RhoRule::Poly,
            rho_max: 47.0,
            rho_min: 0.01,
            data_variance: 1.0,
            particles: 16,
            resampling: Resampling::Multinomial,
            output: DdsmcOutput::Draw,
        }
    }

    /// The GMM benchmark: levels from the prior's largest σ (150, as DAPS), ρ_k from the
    /// components' unit variance ([`RhoRule::Gaussian`]; the reference's ρ grid was tuned on
    /// images), η = 1 (the one η whose target transition is DDPM's posterior q(x_{k+1} | x_k, x₀),
    /// so the chain without a measurement keeps the prior's marginals up to the steps' size),
    /// clouds of 1000 particles returned whole (as MCGdiff: 2000 samples = two clouds).
    pub fn gmm() -> Self {
        Self { steps: 100, sigma_max: 150.0, eta: 1.0, rho: RhoRule::Gaussian, particles: 1000, output: DdsmcOutput::Cloud, ..Self::inversebench() }
    }

    /// σ_0 … σ_K (σ_K = 0).
    pub fn sigmas(&self) -> Vec<f64> {
        let mut s = karras_grid(self.sigma_max, self.sigma_min, self.steps, self.rho_poly);
        s.push(0.0);
        s
    }

    /// ρ_0 … ρ_K (ρ_K = 0).
    pub fn rhos(&self) -> Vec<f64> {
        match self.rho {
            RhoRule::Poly => {
                let mut r = karras_grid(self.rho_max, self.rho_min, self.steps, self.rho_poly);
                r.push(0.0);
                r
            }
            RhoRule::Gaussian => self.sigmas().iter().map(|s| (self.data_variance * s * s / (self.data_variance + s * s)).sqrt()).collect(),
        }
    }

    fn check(&self) -> Result<(), SamplerError> {
        let bad = |key: &str, why: String| Err(SamplerError::Config { sampler: "ddsmc".into(), key: key.into(), why });
        if self.steps == 0 {
            return bad("steps", "need at least one level".into());
        }
        if !(self.sigma_max > self.sigma_min && self.sigma_min > 0.0) {
            return bad("sigma_max", format!("need σ_max > σ_min > 0 (got {} and {})", self.sigma_max, self.sigma_min));
        }
        if !(self.eta >= 0.0 && self.eta.is_finite()) {
            return bad("eta", format!("need 0 ≤ η < ∞ (got {})", self.eta));
        }
        if self.particles == 0 {
            return bad("particles", "need at least one particle".into());
        }
        match self.rho {
            RhoRule::Poly if !(self.rho_max >= self.rho_min && self.rho_min >= 0.0) => {
                bad("rho_max", format!("need ρ_max ≥ ρ_min ≥ 0 (got {} and {})", self.rho_max, self.rho_min))
            }
            RhoRule::Gaussian if !(self.data_variance > 0.0 && self.data_variance.is_finite()) => {
                bad("data_variance", format!("need v > 0 (got {})", self.data_variance))
            }
            _ => Ok(()),
        }
    }
}

/// The DDSMC sampler (needs a singular-value view of A and σ_y > 0).
#[derive(Debug, Clone)]
pub struct Ddsmc(pub DdsmcConfig);

/// What a run returns.
pub struct Run<B: Backend> {
    /// The particles after the last (deterministic) move, `[rows, d]`.
    pub x: Tensor<B, 2>,
    /// Their final log-weights (unnormalised).
    pub log_weights: Vec<f64>,
    /// Effective sample size per cloud after each weighting: K + 1 weightings, each listing every
    /// cloud in order (level-major).
    pub ess: Vec<f64>,
}

fn row_sq_norms<B: Backend>(t: Tensor<B, 2>) -> Vec<f64> {
    let [n, _] = t.dims();
    let s = t.powi_scalar(2).sum_dim(1).reshape([n, 1]);
    host(s).into_iter().map(f64::from).collect()
}

/// The particle rows' random draws: with `per_row` particles inside each sample row
/// ([`DdsmcOutput::Draw`]) row i's stream makes the draws of its particles i·P … i·P + P − 1.
struct Draws<'a> {
    rng: &'a mut SampleRng,
    per_row: usize,
}

impl Draws<'_> {
    fn normal<B: Backend>(&mut self, d: usize, dev: &B::Device) -> Tensor<B, 2> {
        let rows = self.rng.len() * self.per_row;
        Tensor::from_data(TensorData::new(self.rng.normal_f32(self.per_row * d), [rows, d]), dev)
    }

    fn uniforms(&mut self) -> Vec<f64> {
        let cols: Vec<Vec<f64>> = (0..self.per_row).map(|_| self.rng.uniform()).collect();
        (0..self.rng.len() * self.per_row).map(|k| cols[k % self.per_row][k / self.per_row]).collect()
    }
}

/// The resampling points u of every row from one uniform per row: as drawn (multinomial), or
/// spread over the strata [j/P, (j+1)/P) of each cloud's row j (systematic: the cloud's first
/// uniform for every stratum; stratified: each row's own).
fn points(rule: Resampling, size: usize, u: Vec<f64>) -> Vec<f64> {
    match rule {
        Resampling::Multinomial => u,
        Resampling::Systematic | Resampling::Stratified => (0..u.len())
            .map(|i| {
                let (start, j) = (i - i % size, i % size);
                let p = size.min(u.len() - start) as f64;
                let v = if rule == Resampling::Systematic { u[start] } else { u[i] };
                (j as f64 + v) / p
            })
            .collect(),
    }
}

/// ESS = (Σw)²/Σw² of each cloud of `size` consecutive log-weights.
fn ess(logw: &[f64], size: usize) -> Vec<f64> {
    logw.chunks(size)
        .map(|c| {
            let max = c.iter().copied().filter(|v| v.is_finite()).fold(f64::NEG_INFINITY, f64::max);
            let w: Vec<f64> = c.iter().map(|v| if v.is_finite() { (v - max).exp() } else { 0.0 }).collect();
            let (s, s2) = (w.iter().sum::<f64>(), w.iter().map(|x| x * x).sum::<f64>());
            if s2 > 0.0 { s * s / s2 } else { 0.0 }
        })
        .collect()
}

impl Ddsmc {
    /// Runs DDSMC on `problem`: x_0 = σ_0·z, one `[rows, d]` normal draw per proposal and one
    /// uniform per row per resampling. Rows are the particles: `problem.n()` of them in
    /// [`DdsmcOutput::Cloud`] mode, `problem.n()·particles` in [`DdsmcOutput::Draw`] mode.
    pub fn run<B: NnAutodiffBackend>(&self, problem: &Problem<'_, B>, rng: &mut SampleRng) -> Result<Run<B>, SamplerError> {
        let c = &self.0;
        c.check()?;
        let svd = problem.operator.require_linear("DDSMC")?.require_svd("DDSMC")?;
        let sy2 = problem.sigma_y * problem.sigma_y;
        if !(sy2 > 0.0) {
            return Err(SamplerError::Unsupported { sampler: "ddsmc".into(), why: format!("DDSMC's likelihood needs σ_y > 0 (got {})", problem.sigma_y) });
        }
        let s = svd.singular_values().to_vec();
        let (d, r, dev) = (problem.dim(), s.len(), problem.device());
        let per_row = if c.output == DdsmcOutput::Draw { c.particles } else { 1 };
        let rows = problem.n() * per_row;
        let mut draws = Draws { rng, per_row };
        // ȳ = Uᵀy, one row per particle.
        let y_rows = if per_row > 1 {
            let [n, m] = problem.y.dims();
            problem.y.clone().reshape([n, 1, m]).expand([n, per_row, m]).reshape([rows, m])
        } else {
            problem.y.clone()
        };
        let y_bar: Vec<f64> = host(svd.ut(y_rows)).into_iter().map(f64::from).collect();
        let (sigma, rho) = (c.sigmas(), c.rhos());
        // ℓ(x̄; ρ) = Σ_i −½(s_i·x̄_i − ȳ_i)²/(σ_y² + ρ²s_i²), per row.
        let likelihood = |xb: &[f32], rho: f64| -> Vec<f64> {
            (0..rows)
                .map(|row| {
                    (0..r)
                        .map(|i| {
                            let k = row * r + i;
                            let diff = s[i] * f64::from(xb[k]) - y_bar[k];
                            -0.5 * diff * diff / (sy2 + rho * rho * s[i] * s[i])
                        })
                        .sum()
                })
                .collect()
        };
        let mut x = draws.normal::<B>(d, &dev).mul_scalar(sigma[0]);
        let mut ess_trace = vec![];
        // The ancestors' x, x̂₀ and ℓ, and log r of the current particles (none before step 0).
        let mut previous: Option<(Tensor<B, 2>, Tensor<B, 2>, Vec<f64>, Vec<f64>)> = None;
        for k in 0..c.steps {
            let (s_k, s_next) = (sigma[k], sigma[k + 1]);
            // 1–2. Reconstruction and its likelihood.
            let x0 = problem.prior.denoise(x.clone(), s_k);
            let lik = likelihood(&host(svd.vt(x0.clone())), rho[k]);
            // 3. Weights.
            let logw: Vec<f64> = match &previous {
                None => lik.clone(),
                Some((x_prev, x0_prev, lik_prev, log_r)) => {
                    let log_q = log_target_transition(&x, x_prev, x0_prev, sigma[k - 1], s_k, c.eta);
                    (0..rows).map(|i| lik[i] + log_q[i] - lik_prev[i] - log_r[i]).collect()
                }
            };
            ess_trace.extend(ess(&logw, c.particles));
            // 4. Resampling.
            let a = resample_with(&logw, c.particles, &points(c.resampling, c.particles, draws.uniforms()));
            let idx = indices::<B>(&a, &dev);
            let (x_a, x0_a) = (x.select(0, idx.clone()), x0.select(0, idx));
            let lik_a: Vec<f64> = a.iter().map(|&i| lik[i]).collect();
            // 5. Proposal.
            let (delta, rho2) = (s_k * s_k - s_next * s_next, rho[k] * rho[k]);
            let f = delta / (c.eta * s_next * s_next + delta);
            let last = k + 1 == c.steps;
            let z = draws.normal::<B>(d, &dev);
            let (x0b, xpb, zb) = (host(svd.vt(x0_a.clone())), host(svd.vt(x_a.clone())), host(svd.vt(z.clone())));
            let mut cb = vec![0f32; rows * r];
            let mut dropped = vec![0f64; rows];
            for row in 0..rows {
                for i in 0..r {
                    let kk = row * r + i;
                    let den = s[i] * s[i] * rho2 + sy2;
                    let m_inv = rho2 * sy2 / den;
                    let mu = (rho2 * s[i] * y_bar[kk] + sy2 * f64::from(x0b[kk])) / den;
                    let mean = f * mu + (1.0 - f) * f64::from(xpb[kk]);
                    let var = if last { 0.0 } else { s_next * s_next * f - (f * rho[k]).powi(2) + f * f * m_inv };
                    let zk = f64::from(zb[kk]);
                    if var > 0.0 {
                        cb[kk] = (mean + var.sqrt() * zk) as f32;
                    } else {
                        cb[kk] = mean as f32;
                        dropped[row] += zk * zk;
                    }
                }
            }
            let var_null = if last { 0.0 } else { s_next * s_next * f };
            let null_mean = x0_a.clone().mul_scalar(f) + x_a.clone().mul_scalar(1.0 - f);
            let log_r: Vec<f64> = if last { vec![0.0; rows] } else { row_sq_norms(z.clone()).iter().zip(&dropped).map(|(z2, dz)| -0.5 * (z2 - dz)).collect() };
            x = svd.v(Tensor::from_data(TensorData::new(cb, [rows, r]), &dev)) + svd.null_part(null_mean + z.mul_scalar(var_null.sqrt()));
            previous = Some((x_a, x0_a, lik_a, log_r));
        }
        // Final weights: ℓ(x; ρ = 0) − ℓ′ − log r (the target transition to σ = 0 is not weighed, as
        // the reference's t = 0 branch).
        let (_, _, lik_prev, log_r) = previous.expect("at least one step");
        let lik = likelihood(&host(svd.vt(x.clone())), 0.0);
        let log_weights: Vec<f64> = (0..rows).map(|i| lik[i] - lik_prev[i] - log_r[i]).collect();
        ess_trace.extend(ess(&log_weights, c.particles));
        Ok(Run { x, log_weights, ess: ess_trace })
    }
}

/// log q(x | x′, x̂₀′) up to a constant shared by every particle: −½‖x − (1−f)·x′ − f·x̂₀′‖²/v with
/// Δσ² = σ_prev² − σ², f = Δσ²/(η·σ² + Δσ²), v = Δσ²·σ²/(η·σ² + Δσ²) (the reference's
/// `evaluate_target_transition`).
fn log_target_transition<B: Backend>(x: &Tensor<B, 2>, x_prev: &Tensor<B, 2>, x0_prev: &Tensor<B, 2>, sigma_prev: f64, sigma: f64, eta: f64) -> Vec<f64> {
    let (s2, delta) = (sigma * sigma, sigma_prev * sigma_prev - sigma * sigma);
    let f = delta / (eta * s2 + delta);
    let v = delta * s2 / (eta * s2 + delta);
    let mean = x_prev.clone().mul_scalar(1.0 - f) + x0_prev.clone().mul_scalar(f);
    row_sq_norms(x.clone() - mean).into_iter().map(|q| -0.5 * q / v).collect()
}

impl<B: NnAutodiffBackend> Sampler<B> for Ddsmc {
    fn name(&self) -> &'static str {
        "ddsmc"
    }

    fn differentiates_prior(&self) -> bool {
        false
    }

    fn cloud(&self) -> Option<usize> {
        (self.0.output == DdsmcOutput::Cloud).then_some(self.0.particles)
    }

    /// One denoiser call per particle and level: K per particle of a cloud of rows
    /// ([`DdsmcOutput::Cloud`], counted per particle as MCGdiff's), K·P per sample when every
    /// sample runs its own P particles ([`DdsmcOutput::Draw`], as FPS-SMC's).
    fn nfe(&self, _problem: &Problem<'_, B>) -> Result<usize, SamplerError> {
        self.0.check()?;
        Ok(match self.0.output {
            DdsmcOutput::Cloud => self.0.steps,
            DdsmcOutput::Draw => self.0.steps * self.0.particles,
        })
    }

    fn sample(&self, problem: &Problem<'_, B>, rng: &mut SampleRng) -> Result<Tensor<B, 2>, SamplerError> {
        let run = self.run(problem, rng)?;
        let p = self.0.particles;
        let u = rng.uniform();
        let dev = problem.device();
        let a = match self.0.output {
            // Each cloud resampled by its final weights.
            DdsmcOutput::Cloud => resample_with(&run.log_weights, p, &u),
            // One particle per sample: the first of a multinomial draw within its cloud.
            DdsmcOutput::Draw => {
                let u_rows: Vec<f64> = (0..run.log_weights.len()).map(|k| u[k / p]).collect();
                resample_with(&run.log_weights, p, &u_rows).into_iter().step_by(p).collect()
            }
        };
        Ok(run.x.select(0, indices::<B>(&a, &dev)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_rhos_follow_the_reference_schedulers() {
        let c = DdsmcConfig::inversebench();
        let (s, r) = (c.sigmas(), c.rhos());
        assert_eq!((s.len(), r.len()), (201, 201));
        assert!((s[0] - 100.0).abs() < 1e-12 && (s[199] - 0.01).abs() < 1e-12 && s[200] == 0.0);
        assert!((r[0] - 47.0).abs() < 1e-12 && (r[199] - 0.01).abs() < 1e-12 && r[200] == 0.0);
        // Gaussian rule: ρ² = σ²/(1 + σ²) for v = 1.
        let g = DdsmcConfig::gmm();
        for (s, r) in g.sigmas().iter().zip(g.rhos()) {
            assert!((r * r - s * s / (1.0 + s * s)).abs() < 1e-12);
        }
    }

    #[test]
    fn target_transition_density_at_its_mean_and_one_step_away() {
        // Mean (1−f)·x′ + f·x̂₀ and variance Δσ²·σ²/(ησ² + Δσ²), f = Δσ²/(ησ² + Δσ²).
        let dev = Default::default();
        type F = burn::backend::Flex;
        let x_prev = Tensor::<F, 2>::from_floats([[2.0f32]], &dev);
        let x0 = Tensor::<F, 2>::from_floats([[0.0f32]], &dev);
        let x = Tensor::<F, 2>::from_floats([[1.0f32]], &dev);
        // σ_prev² = 2, σ² = 1, η = 1: Δσ² = 1, f = ½, v = ½; mean 1 → log q = 0.
        assert!(log_target_transition(&x, &x_prev, &x0, 2f64.sqrt(), 1.0, 1.0)[0].abs() < 1e-6);
        // x = 2: −½·1/½ = −1.
        let x = Tensor::<F, 2>::from_floats([[2.0f32]], &dev);
        assert!((log_target_transition(&x, &x_prev, &x0, 2f64.sqrt(), 1.0, 1.0)[0] + 1.0).abs() < 1e-6);
    }

    #[test]
    fn systematic_resampling_keeps_every_particle_of_equal_weights() {
        let u = vec![0.37, 0.9, 0.1, 0.5, 0.2, 0.8];
        let equal = vec![0.0; 6];
        let a = resample_with(&equal, 3, &points(Resampling::Systematic, 3, u.clone()));
        assert_eq!(a, vec![0, 1, 2, 3, 4, 5]);
        // Stratified: row j of a cloud lands in stratum j, so equal weights also keep everyone.
        assert_eq!(resample_with(&equal, 3, &points(Resampling::Stratified, 3, u.clone())), vec![0, 1, 2, 3, 4, 5]);
        // Multinomial uses the uniforms as drawn: 0.37 → 1, 0.9 → 2, 0.1 → 0 in a cloud of 3.
        assert_eq!(&resample_with(&equal, 3, &points(Resampling::Multinomial, 3, u))[..3], &[1, 2, 0]);
    }

    /// With σ_y so large that y says nothing, the proposal is the target transition itself, so
    /// log q − log r must cancel for every particle at every level (and ℓ ≈ 0): the weights stay
    /// equal, ESS = P throughout. A sign, index or variance slip in either density breaks this.
    #[test]
    fn weights_stay_equal_when_the_measurement_is_uninformative() {
        use burn::backend::{Autodiff, Flex};
        use dipbench_models::{GaussianMixture, GaussianMixturePrior, VpSchedule};
        use dipbench_operators::DenseOperator;
        use nalgebra::{DMatrix, DVector};
        type A = Autodiff<Flex>;
        let dev = Default::default();
        let g = GaussianMixture::gaussian(DVector::from_vec(vec![1.0, -2.0, 0.5, 3.0]), DMatrix::from_diagonal(&DVector::from_vec(vec![4.0, 1.0, 0.5, 2.0])))
            .unwrap();
        let prior = GaussianMixturePrior::<A>::new(g, VpSchedule::mcgdiff_gmm(), &dev);
        let a = DMatrix::from_row_slice(2, 4, &[1.0, 0.5, 0.0, -0.3, 0.2, -1.0, 0.7, 0.1]);
        let op = DenseOperator::<A>::new("A", a, &dev).unwrap();
        let y = Tensor::<A, 2>::from_floats([[0.3f32, -0.8]], &dev);
        let p = 8;
        let problem = Problem::shared(&prior, &op, y, 1e6, 2 * p);
        for eta in [0.5, 1.0] {
            let cfg = DdsmcConfig { steps: 30, particles: p, eta, ..DdsmcConfig::gmm() };
            let run = Ddsmc(cfg).run(&problem, &mut SampleRng::new(5, 2 * p)).unwrap();
            assert_eq!(run.ess.len(), 2 * 31, "two clouds, K + 1 weightings");
            let worst = run.ess.iter().fold(f64::INFINITY, |m, &e| m.min(e));
            assert!(worst > p as f64 * (1.0 - 1e-4), "η = {eta}: ESS fell to {worst} of {p}");
        }
    }

    #[test]
    fn ess_of_equal_and_degenerate_weights() {
        assert_eq!(ess(&[0.0; 8], 4), vec![4.0, 4.0]);
        let e = ess(&[0.0, f64::NEG_INFINITY, f64::NEG_INFINITY, f64::NAN], 4);
        assert_eq!(e, vec![1.0]);
    }
}
