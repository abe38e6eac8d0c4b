//! MCGdiff — Monte Carlo guided diffusion (Cardoso, Janati, Le Corff & Moulines, "Monte Carlo
//! guided Diffusion for Bayesian linear inverse problems", ICLR 2024), a sequential Monte Carlo
//! sampler for y = A·x + σ_y·ε that is consistent as the number of particles grows.
//!
//! Work in the spectral basis of A = U·diag(s)·Vᵀ: x̄ = Vᵀx, ȳ = Uᵀy, so ȳ_i = s_i·x̄_i + σ_y·ε_i
//! for the r observed coordinates; the rest of x̄ (the null space) is unobserved. Observed
//! coordinate i gets a time τ_i on the step grid (the step whose noise-to-signal ratio
//! (1 − ᾱ)/ᾱ is closest to σ_y²/s_i²) and the rescaled observation r_i = √ᾱ_{τ_i}·ȳ_i/s_i. Above
//! τ_i the particles are steered towards the "diffused observation" N(x̄_i; r_i·√(ᾱ_t/ᾱ_{τ_i}),
//! 1 − (1−κ)·ᾱ_t/ᾱ_{τ_i}) (κ keeps the variance off 0); the particle weights correct for the
//! steering. Particles are rows of the batch: consecutive groups of `particles` rows form one
//! cloud, resampled among themselves.
//!
//! Two published implementations differ in where the weights are computed; both are here:
//! - [`McgdiffVersion::Script`] — the original GMM script's `particle_filter` (the MCGdiff of the
//!   GMM table): at each step t → t′ first resample with the previous weights, then move
//!   (Gaussian posterior of the DDIM move and the pseudo-observation), and weight by the
//!   predictive likelihood over the previous pseudo-likelihood; κ = 10⁻²; the cloud is returned
//!   unweighted.
//! - [`McgdiffVersion::Package`] — the `mcg_diff` package: weights from the pre-move particles,
//!   then resampling, then the move (a Kalman-gain form), filtering down to min τ, then plain
//!   DDIM moves, final weights; κ = 10⁻⁴. dipbench returns each cloud resampled by its final
//!   weights (the package's scripts keep one weighted draw per cloud).
//!
//! Reference quirks kept: the adapted grid's insertion that never inserts ([`GridKind`]); at
//! t′ = 0 an "exact" coordinate (τ_i = t′) is pinned to ȳ_i/s_i for every particle, so the sample
//! has no spread along it; 1 − (1−κ)·α is evaluated in float32.

use std::collections::VecDeque;

use burn::prelude::*;
use dipbench_nn::NnAutodiffBackend;
use dipbench_operators::SampleRng;
use serde::{Deserialize, Serialize};

use crate::Sampler;
use crate::common::Problem;
use crate::error::SamplerError;
use crate::grid::{GridKind, build_grid};

/// Which published implementation to follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum McgdiffVersion {
    /// The GMM script's `particle_filter` (resample, move, weight).
    Script,
    /// The `mcg_diff` package (weight, resample, move; final weights).
    Package,
}

/// MCGdiff settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McgdiffConfig {
    /// Number of grid points.
    pub steps: usize,
    /// How the grid is chosen.
    pub grid: GridKind,
    /// DDIM's η.
    pub eta: f64,
    /// Particles per cloud (consecutive rows of the batch).
    pub particles: usize,
    /// κ, the inflation of the pseudo-observation variance 1 − (1−κ)·α.
    pub kappa: f64,
    /// Which implementation.
    pub version: McgdiffVersion,
}

impl McgdiffConfig {
    /// The GMM script: adapted grid, 1000 particles per cloud (the script's two clouds of 1000
    /// make its 2000 samples), κ = 10⁻², the script's `particle_filter`.
    pub fn gmm() -> Self {
        Self { steps: 100, grid: GridKind::McgdiffAdapted, eta: 0.85, particles: 1000, kappa: 1e-2, version: McgdiffVersion::Script }
    }

    /// The `mcg_diff` package's defaults (κ = 10⁻⁴, η = 1) with the HF image script's 64
    /// particles per cloud and the adapted grid.
    pub fn package() -> Self {
        Self { steps: 100, grid: GridKind::McgdiffAdapted, eta: 1.0, particles: 64, kappa: 1e-4, version: McgdiffVersion::Package }
    }
}

/// The MCGdiff sampler (needs a singular-value view of A).
#[derive(Debug, Clone)]
pub struct Mcgdiff(pub McgdiffConfig);

/// Where resampling indices come from.
#[derive(Debug, Clone)]
pub enum Ancestors {
    /// Multinomial draws from the weights, one uniform per row from the row's stream.
    Draw,
    /// Recorded indices (within each cloud), one vector of all rows per resampling, in order —
    /// for replaying a reference run.
    Given(VecDeque<Vec<usize>>),
}

/// What one transition left, for tests.
#[derive(Debug, Clone)]
pub struct StepTrace {
    /// The particles after the step, `[n, d]` in the original basis.
    pub x: Vec<f32>,
    /// The log-weights the step computed (Script: for the next resampling; Package: the ones it
    /// resampled with; empty for the package's plain DDIM moves).
    pub log_weights: Vec<f64>,
}

/// What a run returns: particles (original basis) and the final log-weights (Package only).
pub struct Run<B: Backend> {
    /// `[n, d]`.
    pub x: Tensor<B, 2>,
    /// Package: the final log-weights per row; Script: empty.
    pub log_weights: Vec<f64>,
    /// One entry per transition when asked for, else empty.
    pub trace: Vec<StepTrace>,
}

/// A `[n, d]` tensor's values on the host, row-major.
pub(crate) fn host<B: Backend>(t: Tensor<B, 2>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().expect("float tensor")
}

/// Row indices as an index tensor (for `select`).
pub(crate) fn indices<B: Backend>(a: &[usize], dev: &B::Device) -> Tensor<B, 1, Int> {
    Tensor::from_data(TensorData::new(a.iter().map(|&i| i as i64).collect::<Vec<_>>(), [a.len()]), dev)
}

fn tensor<B: Backend>(v: Vec<f32>, rows: usize, cols: usize, dev: &B::Device) -> Tensor<B, 2> {
    Tensor::from_data(TensorData::new(v, [rows, cols]), dev)
}

/// DDIM coefficients of t → t′ (`generate_coefficients_ddim`): σ_t = η·√((1−ᾱ′)/(1−ᾱ)·(1 − ᾱ/ᾱ′)),
/// c_s = √(ᾱ′/ᾱ), c_e = √(1 − ᾱ′ − σ_t²) − c_s·√(1−ᾱ); mean = c_s·x + c_e·ε̂.
pub fn ddim_coefficients(ab_t: f64, ab_p: f64, eta: f64) -> (f64, f64, f64) {
    let sigma = eta * ((1.0 - ab_p) / (1.0 - ab_t) * (1.0 - ab_t / ab_p)).max(0.0).sqrt();
    let c_s = (ab_p / ab_t).sqrt();
    let c_e = (1.0 - ab_p - sigma * sigma).max(0.0).sqrt() - c_s * (1.0 - ab_t).sqrt();
    (sigma, c_s, c_e)
}

/// τ_i = ts[argmin_j |σ_y²·ᾱ_{ts_j} − (1 − ᾱ_{ts_j})·s_i²|] (the first minimum; float32 as the
/// reference's `get_taus_from_singular_values`).
pub fn taus(alpha_bar: &dyn Fn(usize) -> f64, grid: &[usize], singular_values: &[f64], var_y: f64) -> Vec<usize> {
    singular_values
        .iter()
        .map(|&s| {
            let (s, v) = (s as f32, var_y as f32);
            let dist = |t: usize| {
                let a = alpha_bar(t) as f32;
                (v * a - (1.0 - a) * s * s).abs()
            };
            let mut best = 0;
            for j in 1..grid.len() {
                if dist(grid[j]) < dist(grid[best]) {
                    best = j;
                }
            }
            grid[best]
        })
        .collect()
}

/// 1 − (1−κ)·α in float32 (the reference's cancellation near α = 1 included).
fn pseudo_var(kappa: f64, alpha: f64) -> f64 {
    f64::from(1.0f32 - (1.0f32 - kappa as f32) * alpha as f32)
}

/// Cloud c of `n` rows: rows `c·size .. min((c+1)·size, n)`.
fn clouds(n: usize, size: usize) -> Vec<std::ops::Range<usize>> {
    (0..n).step_by(size.max(1)).map(|s| s..(s + size.max(1)).min(n)).collect()
}

/// Resampling: for each cloud, indices drawn from softmax of its log-weights (multinomial, by
/// inverse CDF of the row's uniform) or taken from the recorded list.
fn resample(logw: &[f64], size: usize, source: &mut Ancestors, rng: &mut SampleRng) -> Vec<usize> {
    let n = logw.len();
    match source {
        Ancestors::Given(queue) => {
            let local = queue.pop_front().expect("replayed MCGdiff: no recorded ancestors left");
            assert_eq!(local.len(), n, "replayed MCGdiff: recorded ancestors for {} rows, the run has {n}", local.len());
            clouds(n, size).into_iter().flat_map(|c| local[c.clone()].iter().map(move |&a| c.start + a).collect::<Vec<_>>()).collect()
        }
        Ancestors::Draw => resample_with(logw, size, &rng.uniform()),
    }
}

/// Multinomial resampling within clouds of `size` consecutive rows: row i takes the index of its
/// cloud whose cumulative normalised weight first exceeds `u[i]` (inverse CDF). A non-finite
/// log-weight (a diverged particle) weighs nothing; a cloud with no finite weight is resampled
/// uniformly.
pub(crate) fn resample_with(logw: &[f64], size: usize, u: &[f64]) -> Vec<usize> {
    let n = logw.len();
    assert_eq!(u.len(), n, "one uniform per row");
    let mut out = Vec::with_capacity(n);
    for c in clouds(n, size) {
        let lw = |i: usize| if logw[i].is_finite() { logw[i] } else { f64::NEG_INFINITY };
        let max = c.clone().map(lw).fold(f64::NEG_INFINITY, f64::max);
        let w: Vec<f64> = c.clone().map(|i| if max.is_finite() { (lw(i) - max).exp() } else { 1.0 }).collect();
        let total: f64 = w.iter().sum();
        let mut cdf = Vec::with_capacity(w.len());
        let mut acc = 0.0;
        for wi in &w {
            acc += wi / total;
            cdf.push(acc);
        }
        for i in c.clone() {
            let k = cdf.partition_point(|&p| p <= u[i]).min(w.len() - 1);
            out.push(c.start + k);
        }
    }
    out
}

impl Mcgdiff {
    fn grid<B: Backend>(&self, problem: &Problem<'_, B>) -> Result<Vec<usize>, SamplerError> {
        let sv = problem.operator.as_linear().and_then(|l| l.svd()).map(|s| s.singular_values().to_vec());
        build_grid(problem.prior.schedule(), self.0.grid, self.0.steps, sv.as_deref(), problem.sigma_y, "mcgdiff")
    }

    /// Runs MCGdiff on `problem` from initial particles drawn from `rng` (one `[n, d]` normal
    /// draw), one `[n, d]` normal draw per transition (its component along the observed
    /// coordinates, Vᵀz, and in the null space, z − V·Vᵀz), and ancestors from `ancestors`. With
    /// `record`, every step's particles and log-weights are kept in [`Run::trace`] (for tests:
    /// n·d floats per step).
    pub fn run<B: NnAutodiffBackend>(
        &self,
        problem: &Problem<'_, B>,
        rng: &mut SampleRng,
        ancestors: &mut Ancestors,
        record: bool,
    ) -> Result<Run<B>, SamplerError> {
        let c = &self.0;
        if c.particles == 0 || !(c.kappa > 0.0 && c.kappa < 1.0) || !(c.eta >= 0.0) {
            return Err(SamplerError::Config {
                sampler: "mcgdiff".into(),
                key: "particles/kappa/eta".into(),
                why: format!("need particles ≥ 1, 0 < κ < 1, η ≥ 0 (got {}, {}, {})", c.particles, c.kappa, c.eta),
            });
        }
        let svd = problem.operator.require_linear("MCGdiff")?.require_svd("MCGdiff")?;
        let s = svd.singular_values().to_vec();
        let schedule = problem.prior.schedule();
        let ab = |t: usize| schedule.alpha_bar(t);
        let (n, d, r, dev) = (problem.n(), problem.dim(), s.len(), problem.device());
        let grid = self.grid(problem)?;
        let tau = taus(&ab, &grid, &s, problem.sigma_y * problem.sigma_y);
        // r_i = √ᾱ_{τ_i}·ȳ_i/s_i per row (float32).
        let y_bar = host(svd.ut(problem.y.clone()));
        let resc: Vec<f64> = (0..n * r).map(|k| f64::from((ab(tau[k % r]) as f32).sqrt() * y_bar[k] / s[k % r] as f32)).collect();
        let mut x = rng.normal::<B>(d, &dev);
        let mut trace = vec![];
        let pairs: Vec<(usize, usize)> = grid.windows(2).rev().map(|w| (w[1], w[0])).collect();
        let gauss = |diff: f64, var: f64| -0.5 * diff * diff / var;
        match c.version {
            McgdiffVersion::Script => {
                let mut logw = vec![0f64; n];
                for &(t, tp) in &pairs {
                    let (ab_t, ab_p) = (ab(t), ab(tp));
                    let (sigma, c_s, c_e) = ddim_coefficients(ab_t, ab_p, c.eta);
                    let eps = problem.prior.eps(x.clone(), t);
                    let m = x.clone().mul_scalar(c_s) + eps.mul_scalar(c_e);
                    let a = resample(&logw, c.particles, ancestors, rng);
                    let idx = indices::<B>(&a, &dev);
                    let (x_a, m_a) = (x.select(0, idx.clone()), m.select(0, idx));
                    let z = rng.normal::<B>(d, &dev);
                    let (xb, mb, zb) = (host(svd.vt(x_a)), host(svd.vt(m_a.clone())), host(svd.vt(z.clone())));
                    let var = sigma * sigma;
                    let mut cb = vec![0f32; n * r];
                    let mut new_logw = vec![0f64; n];
                    for row in 0..n {
                        for i in 0..r {
                            let k = row * r + i;
                            let (ri, ab_tau) = (resc[k], ab(tau[i]));
                            let (xk, mk, zk) = (f64::from(xb[k]), f64::from(mb[k]), f64::from(zb[k]));
                            if tau[i] < tp || (tau[i] == tp && tp > 0) {
                                // Filter (τ_i < t′) or exact (τ_i = t′ > 0: α′ = 1, v = κ).
                                let alpha_p = if tau[i] == tp { 1.0 } else { ab_p / ab_tau };
                                let (di, v) = (ri * alpha_p.sqrt(), if tau[i] == tp { c.kappa } else { pseudo_var(c.kappa, alpha_p) });
                                // Posterior of N(m, σ_t²) × N(d; x, v); a deterministic move (σ_t = 0,
                                // e.g. a repeated grid point) keeps the mean.
                                cb[k] = if var > 0.0 {
                                    let precision = 1.0 / var + 1.0 / v;
                                    let mu = (di / v + mk / var) / precision;
                                    (mu + (1.0 / precision).sqrt() * zk) as f32
                                } else {
                                    mk as f32
                                };
                                let alpha_t = ab_t / ab_tau;
                                new_logw[row] += gauss(mk - di, var + v) - gauss(xk - ri * alpha_t.sqrt(), pseudo_var(c.kappa, alpha_t));
                            } else if tau[i] == tp {
                                // t′ = 0: pinned to ȳ_i/s_i, no draw (the reference's weight update is discarded).
                                cb[k] = ri as f32;
                            } else {
                                cb[k] = (mk + sigma * zk) as f32;
                            }
                        }
                    }
                    x = svd.v(tensor::<B>(cb, n, r, &dev)) + svd.null_part(m_a) + svd.null_part(z).mul_scalar(sigma);
                    logw = new_logw;
                    if record {
                        trace.push(StepTrace { x: host(x.clone()), log_weights: logw.clone() });
                    }
                }
                Ok(Run { x, log_weights: vec![], trace })
            }
            McgdiffVersion::Package => {
                let min_tau = *tau.iter().min().unwrap_or(&0);
                let lik = |xb: &[f32], t: usize, row: usize| -> f64 {
                    // Pseudo-likelihood of the coordinates active at t (t ≥ τ_i).
                    (0..r)
                        .filter(|&i| t >= tau[i])
                        .map(|i| {
                            let alpha = ab(t) / ab(tau[i]);
                            let std = pseudo_var(c.kappa, alpha).sqrt().clamp(1e-10, 1e10);
                            gauss(f64::from(xb[row * r + i]) - resc[row * r + i] * alpha.sqrt(), std * std)
                        })
                        .sum()
                };
                for &(t, tp) in pairs.iter().filter(|(_, tp)| *tp >= min_tau) {
                    let (ab_t, ab_p) = (ab(t), ab(tp));
                    let (sigma, c_s, c_e) = ddim_coefficients(ab_t, ab_p, c.eta);
                    let eps = problem.prior.eps(x.clone(), t);
                    let m = x.clone().mul_scalar(c_s) + eps.mul_scalar(c_e);
                    let (xb, mb) = (host(svd.vt(x.clone())), host(svd.vt(m.clone())));
                    let var = sigma * sigma;
                    let logw: Vec<f64> = (0..n)
                        .map(|row| {
                            let predictive: f64 = (0..r)
                                .filter(|&i| tp >= tau[i])
                                .map(|i| {
                                    let alpha_p = ab_p / ab(tau[i]);
                                    let std = (var + pseudo_var(c.kappa, alpha_p)).sqrt().clamp(1e-10, 1e10);
                                    gauss(f64::from(mb[row * r + i]) - resc[row * r + i] * alpha_p.sqrt(), std * std)
                                })
                                .sum();
                            predictive - lik(&xb, t, row)
                        })
                        .collect();
                    let a = resample(&logw, c.particles, ancestors, rng);
                    let idx = indices::<B>(&a, &dev);
                    let m_a = m.select(0, idx);
                    let z = rng.normal::<B>(d, &dev);
                    let (ma_b, zb) = (host(svd.vt(m_a.clone())), host(svd.vt(z.clone())));
                    let mut cb = vec![0f32; n * r];
                    for row in 0..n {
                        for i in 0..r {
                            let k = row * r + i;
                            let (mk, zk) = (f64::from(ma_b[k]), f64::from(zb[k]));
                            cb[k] = if tp >= tau[i] {
                                let alpha_p = ab_p / ab(tau[i]);
                                let v = pseudo_var(c.kappa, alpha_p);
                                let gain = (var / (var + v)).clamp(1e-10, 1e10);
                                gain * resc[k] * alpha_p.sqrt() + (1.0 - gain) * mk + (v * gain).sqrt() * zk
                            } else {
                                mk + sigma * zk
                            } as f32;
                        }
                    }
                    x = svd.v(tensor::<B>(cb, n, r, &dev)) + svd.null_part(m_a) + svd.null_part(z).mul_scalar(sigma);
                    if record {
                        trace.push(StepTrace { x: host(x.clone()), log_weights: logw });
                    }
                }
                let xb = host(svd.vt(x.clone()));
                let previous: Vec<f64> = (0..n).map(|row| lik(&xb, min_tau, row)).collect();
                let propagation: Vec<&(usize, usize)> = pairs.iter().filter(|(_, tp)| *tp < min_tau).collect();
                for &&(t, tp) in &propagation {
                    let (sigma, c_s, c_e) = ddim_coefficients(ab(t), ab(tp), c.eta);
                    let eps = problem.prior.eps(x.clone(), t);
                    let z = rng.normal::<B>(d, &dev);
                    x = x.mul_scalar(c_s) + eps.mul_scalar(c_e) + z.mul_scalar(sigma);
                    if record {
                        trace.push(StepTrace { x: host(x.clone()), log_weights: vec![] });
                    }
                }
                let log_weights = if propagation.is_empty() {
                    previous.iter().map(|p| -p).collect()
                } else {
                    let xb = host(svd.vt(x.clone()));
                    let sy = problem.sigma_y.clamp(1e-10, 1e10);
                    (0..n)
                        .map(|row| {
                            (0..r).map(|i| gauss(s[i] * f64::from(xb[row * r + i]) - f64::from(y_bar[row * r + i]), sy * sy)).sum::<f64>() - previous[row]
                        })
                        .collect()
                };
                Ok(Run { x, log_weights, trace })
            }
        }
    }
}

impl<B: NnAutodiffBackend> Sampler<B> for Mcgdiff {
    fn name(&self) -> &'static str {
        "mcgdiff"
    }

    fn differentiates_prior(&self) -> bool {
        false
    }

    fn cloud(&self) -> Option<usize> {
        Some(self.0.particles)
    }

    /// One ε̂ evaluation per particle and transition.
    fn nfe(&self, problem: &Problem<'_, B>) -> Result<usize, SamplerError> {
        Ok(self.grid(problem)?.len() - 1)
    }

    fn sample(&self, problem: &Problem<'_, B>, rng: &mut SampleRng) -> Result<Tensor<B, 2>, SamplerError> {
        let run = self.run(problem, rng, &mut Ancestors::Draw, false)?;
        match self.0.version {
            McgdiffVersion::Script => Ok(run.x),
            McgdiffVersion::Package => {
                // Each cloud resampled by its final weights.
                let a = resample(&run.log_weights, self.0.particles, &mut Ancestors::Draw, rng);
                Ok(run.x.select(0, indices::<B>(&a, &problem.device())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Multinomial resampling: index counts follow the weights (N·W_i within 5 standard errors).
    #[test]
    fn resampling_counts_follow_the_weights() {
        let n = 20_000;
        let w = [0.1f64, 0.0, 0.6, 0.3];
        let logw: Vec<f64> = (0..n).map(|i| w[i % 4].ln()).collect();
        let mut rng = SampleRng::new(3, n);
        let a = resample(&logw, n, &mut Ancestors::Draw, &mut rng);
        let mut counts = [0usize; 4];
        for &i in &a {
            counts[i % 4] += 1;
        }
        // Each of the n draws picks index class k with probability w_k (classes are equal-sized).
        let total: f64 = w.iter().sum::<f64>() * (n / 4) as f64;
        for k in 0..4 {
            let p = w[k] * (n / 4) as f64 / total;
            let se = (n as f64 * p * (1.0 - p)).sqrt().max(1.0);
            assert!((counts[k] as f64 - n as f64 * p).abs() < 5.0 * se, "class {k}: {} vs {}", counts[k], n as f64 * p);
        }
        assert_eq!(counts[1], 0, "a zero weight is never drawn");
    }

    #[test]
    fn a_nan_weight_is_never_drawn_and_does_not_collapse_the_cloud() {
        let logw = vec![0.0, f64::NAN, 0.0, f64::INFINITY];
        let mut rng = SampleRng::new(9, 4);
        for _ in 0..50 {
            let a = resample(&logw, 4, &mut Ancestors::Draw, &mut rng);
            assert!(a.iter().all(|&i| i == 0 || i == 2), "{a:?}");
        }
    }

    #[test]
    fn clouds_resample_within_themselves() {
        let logw = vec![0.0; 10];
        let mut rng = SampleRng::new(1, 10);
        let a = resample(&logw, 4, &mut Ancestors::Draw, &mut rng);
        for (i, &k) in a.iter().enumerate() {
            assert_eq!(k / 4, i / 4, "row {i} took {k} from another cloud");
        }
    }
}
