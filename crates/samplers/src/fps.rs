//! FPS-SMC — filtering posterior sampling with sequential Monte Carlo (Dou & Song, "Diffusion
//! posterior sampling for linear inverse problem solving: a filtering perspective", ICLR 2024),
//! as the authors' code runs it (their `DDIM.p_sample_loop` with the FPS step, c = `c_rate`).
//!
//! Tables on the (respaced) chain, σ the sampler's own noise level (0.05 in the reference,
//! whatever the task's σ_y): a_t = ᾱ_t·σ², p_t = (1 − ᾱ_{t−1})·c, ex_t = a_t/(p_t + 10⁻⁶),
//! u_t = a_t·p_t/(a_t + p_t), w_t = σ²·ᾱ_{t−1}.
//!
//! 1. Noised measurements, generated backwards from y_{T−1} = 𝒜(ξ_T):
//!    y_{t−1} = √ᾱ_{t−1}·y + √((1−c)(1−ᾱ_{t−1})/(1−ᾱ_t))·(y_t − √ᾱ_t·y) + √c·√(1−ᾱ_{t−1})·𝒜(ξ_t).
//! 2. Start (t = T−1, no network call): inpainting x^i = 𝒜(y_{T−1}) + ζ^i − 𝒜(ζ^i); otherwise all
//!    particles equal G_mean(𝒜ᵀy_{T−1}; a) + G_noise(ζ; a), where G_mean(v; s) = (I + 𝒜ᵀ𝒜/s)⁻¹v
//!    and G_noise(z; s) = V·diag(√(s/(s + λ²)))·z (V applied to z directly).
//! 3. Step t → t−1 for each particle: ε̂ = ε̂(x_t, t), x̂₀ = clamp(Tweedie), the prior mean
//!    m_back = √ᾱ_{t−1}·x̂₀ + √(1−ᾱ_{t−1})·√(1−c)·ε̂ (variance p_t); the proposal is the exact
//!    posterior of N(m_back, p_t) times N(y_t; 𝒜x, a_t): mean m = G_mean(m_back + 𝒜ᵀy_t/ex_t; ex_t)
//!    (inpainting: (m_back + y_t/ex_t)/(1 + 1/ex_t) on kept pixels), noise √p_t·G_noise(z; ex_t)
//!    (inpainting: std √u_t on kept pixels, √p_t elsewhere); x̃ = m + noise;
//!    log w = −‖y_t − 𝒜x̃‖²/(2w_t) − ‖x̃ − m_back‖²/(2p_t) + ‖x̃ − m‖²/(2p_t) + (proposal's
//!    correction: + ‖𝒜(x̃ − m)‖²/(2a_t) through the SVD path, − ‖𝒜(x̃ − m)‖²·(1/(2p_t) − 1/(2u_t))
//!    through the inpainting path); multinomial resampling at every step (Python's
//!    `random.choices`: running sums, bisect).
//! 4. t = 0: x = x̂₀ of every particle, no conditioning; the output is particle 0.
//!
//! Reference behaviour kept (each named in the README): σ fixed at 0.05; the inpainting
//! log-weights are M times their value (the reference tiles y over the particles inside the
//! norms; `tempered_inpainting_weights`); SR ×f proposes with f×f block averaging
//! ([`dipbench_operators::image::BlockAverage`]) while the measurement and the weights use the
//! task's bicubic resizer; all particles start equal outside inpainting; the output is particle 0,
//! not a weighted draw. Other SVD operators propose with their own SVD (the reference uses
//! separable surrogates for the blurs, which the DAPS tables do not run).
//!
//! Particles are internal to a row: a problem of n rows runs n·M particles in one batch and
//! returns n rows; each row's draws come from its own stream (the measurement sequence from a
//! fork of it).

use std::collections::VecDeque;

use burn::prelude::*;
use dipbench_models::schedule::space_timesteps;
use dipbench_nn::NnAutodiffBackend;
use dipbench_operators::image::{BlockAverage, ImageShape};
use dipbench_operators::operator::scale_columns;
use dipbench_operators::{LinearOperator, SampleRng};
use serde::{Deserialize, Serialize};

use crate::Sampler;
use crate::common::{Problem, x0_from_eps};
use crate::error::SamplerError;

/// How the proposal sees the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FpsProposal {
    /// The task's own operator: the inpainting path for a mask, its SVD otherwise.
    Operator,
    /// f×f block averaging (f from the measurement's size), as the reference does for SR.
    BlockAverage,
}

/// FPS-SMC settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FpsConfig {
    /// M, particles per image (`particle_size`).
    pub particles: usize,
    /// c, the stochastic fraction of the prior step (`c_rate`).
    pub c_rate: f64,
    /// Steps of the respaced chain (`timestep_respacing`; 1000 = the full chain).
    pub steps: usize,
    /// σ of the sampler's likelihood (the reference fixes 0.05 whatever σ_y is).
    pub sigma: f64,
    /// The proposal's operator.
    pub proposal: FpsProposal,
    /// The reference's inpainting log-weights, M times their value (module documentation).
    pub tempered_inpainting_weights: bool,
}

impl FpsConfig {
    /// The released defaults (`sample_condition.py`: M = 5, c = 0.95; 1000 steps; σ = 0.05),
    /// proposing with the task's operator.
    pub fn repo() -> Self {
        Self { particles: 5, c_rate: 0.95, steps: 1000, sigma: 0.05, proposal: FpsProposal::Operator, tempered_inpainting_weights: true }
    }

    /// [`FpsConfig::repo`] for a task: SR ×4 proposes with 4×4 block averaging, as the reference.
    pub fn for_task(task: &str) -> Self {
        let proposal = if task == "sr4" { FpsProposal::BlockAverage } else { FpsProposal::Operator };
        Self { proposal, ..Self::repo() }
    }

    fn check(&self) -> Result<(), SamplerError> {
        let err = |key: &str, why: String| Err(SamplerError::Config { sampler: "fps-smc".into(), key: key.into(), why });
        if self.particles == 0 {
            return err("particles", "must be at least 1".into());
        }
        if self.steps < 2 {
            return err("steps", format!("must be at least 2, got {}", self.steps));
        }
        if !(self.c_rate > 0.0 && self.c_rate <= 1.0) {
            return err("c_rate", format!("must be in (0, 1] (0 makes the prior step deterministic and every weight NaN), got {}", self.c_rate));
        }
        if !(self.sigma.is_finite() && self.sigma > 0.0) {
            return err("sigma", format!("must be positive, got {}", self.sigma));
        }
        Ok(())
    }
}

/// The uniforms of the resampling steps: drawn from the job's streams, or given (replay).
#[derive(Debug, Clone)]
pub enum Uniforms {
    /// M uniforms per row and step from the row's stream.
    Draw,
    /// Recorded uniforms, one `[n·M]` vector per step (row-major: row, then particle).
    Given(VecDeque<Vec<f64>>),
}

/// The coefficient tables of one step (module documentation).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tables {
    /// ᾱ_t.
    pub ab: f64,
    /// ᾱ_{t−1} (1 at t = 0).
    pub ab_prev: f64,
    /// a_t = ᾱ_t·σ².
    pub a: f64,
    /// p_t = (1 − ᾱ_{t−1})·c.
    pub p: f64,
    /// ex_t = a_t/(p_t + 10⁻⁶).
    pub ex: f64,
    /// u_t = a_t·p_t/(a_t + p_t).
    pub u: f64,
    /// w_t = σ²·ᾱ_{t−1}.
    pub w: f64,
}

impl Tables {
    /// The tables at levels (ᾱ_t, ᾱ_{t−1}), evaluated in the reference's order.
    pub fn new(ab: f64, ab_prev: f64, sigma: f64, c: f64) -> Self {
        let a = ab * sigma * sigma;
        let p = (1.0 - ab_prev) * c;
        Self { ab, ab_prev, a, p, ex: a / (p + 1e-6), u: a * p / (a + p), w: sigma * sigma * ab_prev }
    }
}

/// What one step did (all `[n·M, d]` tensors in particle order; the golden tests compare them).
#[derive(Debug, Clone)]
pub struct StepTrace<B: Backend> {
    /// x̂₀.
    pub x0: Tensor<B, 2>,
    /// The prior mean m_back.
    pub mean_back: Tensor<B, 2>,
    /// The proposal mean m.
    pub mean: Tensor<B, 2>,
    /// The proposal's noise (x̃ = m + noise).
    pub noise: Tensor<B, 2>,
    /// The log-weights of the proposals.
    pub log_w: Vec<f64>,
    /// The chosen ancestors (global row indices).
    pub ancestors: Vec<usize>,
    /// x_{t−1} = x̃[ancestors].
    pub x_next: Tensor<B, 2>,
}

/// A whole run's record (golden tests).
#[derive(Debug, Clone, Default)]
pub struct RunTrace<B: Backend> {
    /// y_t for t = T−1 … 0 (in that order).
    pub y: Vec<Tensor<B, 2>>,
    /// The particles after the start and after each step (the last is every particle's x̂₀).
    pub x: Vec<Tensor<B, 2>>,
    /// The conditioned steps t = T−2 … 1.
    pub steps: Vec<StepTrace<B>>,
}

/// The proposal's view of the operator.
enum Path<'a, B: Backend> {
    /// A mask `[1, d]`.
    Mask(Tensor<B, 2>),
    /// A linear operator with an SVD.
    Svd(&'a dyn LinearOperator<B>),
}

/// The FPS-SMC sampler.
#[derive(Debug, Clone)]
pub struct FpsSmc(pub FpsConfig);

/// ‖row‖² as the reference forms it: the float32 norm, squared in float64.
fn norms2<B: Backend>(t: Tensor<B, 2>) -> Vec<f64> {
    let s: Vec<f32> = t.powf_scalar(2.0).sum_dim(1).into_data().convert::<f32>().to_vec().expect("f32 data");
    s.into_iter().map(|v| f64::from(v.sqrt()).powi(2)).collect()
}

/// Python's `random.choices(range(M), weights, k = M)` with the given uniforms: running sums of
/// the weights, then a_j = bisect_right(cum, u_j·total, 0, M−1).
pub fn choices(weights: &[f64], uniforms: &[f64]) -> Vec<usize> {
    let mut cum = Vec::with_capacity(weights.len());
    let mut acc = 0.0;
    for w in weights {
        acc += w;
        cum.push(acc);
    }
    let total = acc;
    let hi = weights.len() - 1;
    uniforms.iter().map(|u| cum[..hi].partition_point(|&c| c <= u * total)).collect()
}

/// Each row of `t` (`[n, k]`) repeated `m` times, consecutively.
fn tile<B: Backend>(t: Tensor<B, 2>, m: usize) -> Tensor<B, 2> {
    let [n, k] = t.dims();
    t.reshape([n, 1, k]).expand([n, m, k]).reshape([n * m, k])
}

impl FpsSmc {
    fn path<'a, B: NnAutodiffBackend>(problem: &'a Problem<'_, B>, surrogate: Option<&'a dyn LinearOperator<B>>) -> Result<Path<'a, B>, SamplerError> {
        let linear = problem.operator.require_linear("FPS-SMC")?;
        if let Some(s) = surrogate {
            s.require_svd("FPS-SMC")?;
            if s.output_dim() != problem.operator.output_dim() || s.input_dim() != problem.operator.input_dim() {
                return Err(SamplerError::Unsupported {
                    sampler: "fps-smc".into(),
                    why: format!(
                        "the proposal's operator `{}` maps {} → {}, the task's {} → {}",
                        s.name(),
                        s.input_dim(),
                        s.output_dim(),
                        problem.operator.input_dim(),
                        problem.operator.output_dim()
                    ),
                });
            }
            return Ok(Path::Svd(s));
        }
        if let Some(mask) = linear.mask_row() {
            return Ok(Path::Mask(mask));
        }
        linear.require_svd("FPS-SMC")?;
        Ok(Path::Svd(linear))
    }

    /// The block-averaging surrogate of `problem`'s operator: f from the sizes of x and y.
    fn block_surrogate<B: NnAutodiffBackend>(problem: &Problem<'_, B>) -> Result<BlockAverage<B>, SamplerError> {
        let unsupported = |why: String| SamplerError::Unsupported { sampler: "fps-smc".into(), why };
        let shape = problem.prior.sample_shape();
        let [c, h, w] = shape[..] else { return Err(unsupported(format!("the block-average proposal needs images, the prior's samples are {shape:?}"))) };
        let ratio = (c * h * w) as f64 / problem.operator.output_dim() as f64;
        let f = ratio.sqrt().round() as usize;
        if f < 2 || f * f * problem.operator.output_dim() != c * h * w {
            return Err(unsupported(format!(
                "the block-average proposal needs y of size {c}·(h/f)·(w/f) with f ≥ 2; the operator gives {}",
                problem.operator.output_dim()
            )));
        }
        BlockAverage::new(ImageShape { c, h, w }, f, &problem.device()).map_err(SamplerError::from)
    }

    /// The proposal mean G_mean(m_back + κ·𝒜ᵀy; s) with G_mean(v; s) = (I + 𝒜ᵀ𝒜/s)⁻¹·v. Where
    /// the operator holds its whole V this is the reference's V·diag(s/(s + λ²))·Vᵀ·v (λ = 0 on
    /// the null space); otherwise the same value as G_mean(m_back) + κ·V·diag(λ/(s + λ²)·s)·Uᵀy,
    /// which avoids subtracting two large vectors when κ is large.
    fn g_mean<B: Backend>(op: &dyn LinearOperator<B>, m_back: Tensor<B, 2>, kappa: f32, y: Option<Tensor<B, 2>>, s: f64) -> Tensor<B, 2> {
        let svd = op.svd().expect("checked by `path`");
        let lambda = svd.singular_values();
        if let Some(whole) = svd.whole_v() {
            // The reference's order: 𝒜ᵀy as V·diag(λ)·Uᵀy (its `transpose`, with the very same
            // basis rounding, which κ ~ 10⁵ magnifies), added to m_back, then V·diag(·)·Vᵀ.
            let v = match &y {
                Some(y) => m_back.clone() + Self::transpose(op, y.clone()).mul_scalar(kappa),
                None => m_back.clone(),
            };
            let coords = whole.vt_full(v);
            let [n, d] = coords.dims();
            let r = lambda.len();
            let keep: Vec<f64> = lambda.iter().map(|l| s / (s + l * l)).collect();
            return whole.v_full(Tensor::cat(vec![scale_columns(coords.clone().slice([0..n, 0..r]), &keep), coords.slice([0..n, r..d])], 1));
        }
        let shrink: Vec<f64> = lambda.iter().map(|l| l * l / (s + l * l)).collect();
        let prior_part = m_back.clone() - svd.v(scale_columns(svd.vt(m_back), &shrink));
        match y {
            Some(y) => {
                let gain: Vec<f64> = lambda.iter().map(|l| f64::from(kappa) * l * s / (s + l * l)).collect();
                prior_part + svd.v(scale_columns(svd.ut(y), &gain))
            }
            None => prior_part,
        }
    }

    /// 𝒜ᵀy, through the SVD (V·diag(λ)·Uᵀy) where the operator holds its whole V, as the
    /// reference's `transpose`; the operator's adjoint otherwise.
    fn transpose<B: Backend>(op: &dyn LinearOperator<B>, y: Tensor<B, 2>) -> Tensor<B, 2> {
        let svd = op.svd().expect("checked by `path`");
        if svd.whole_v().is_some() {
            return svd.v(scale_columns(svd.ut(y), svd.singular_values()));
        }
        op.adjoint(y)
    }

    /// G_noise(z; s) = V·diag(√(s/(s + λ²)))·z with V applied to z's coordinates directly where
    /// the operator holds its whole V (the reference), else the same law through the null part.
    fn g_noise<B: Backend>(op: &dyn LinearOperator<B>, z: Tensor<B, 2>, s: f64) -> Tensor<B, 2> {
        let svd = op.svd().expect("checked by `path`");
        let scale: Vec<f64> = svd.singular_values().iter().map(|l| (s / (s + l * l)).sqrt()).collect();
        let [n, d] = z.dims();
        let r = scale.len();
        match svd.whole_v() {
            Some(whole) => whole.v_full(Tensor::cat(vec![scale_columns(z.clone().slice([0..n, 0..r]), &scale), z.slice([0..n, r..d])], 1)),
            None => svd.null_part(z.clone()) + svd.v(scale_columns(svd.vt(z), &scale)),
        }
    }

    /// One conditioned step at original timestep `t` with `tables`: particles `x` (`[n·M, d]`),
    /// y_t (`[n, m]`), the proposal normals `z` (`[n·M, d]`) and the resampling uniforms (`[n·M]`).
    #[allow(clippy::too_many_arguments)]
    pub fn step<B: NnAutodiffBackend>(
        &self,
        problem: &Problem<'_, B>,
        surrogate: Option<&dyn LinearOperator<B>>,
        tables: Tables,
        t: usize,
        x: Tensor<B, 2>,
        y_t: Tensor<B, 2>,
        z: Tensor<B, 2>,
        uniforms: &[f64],
    ) -> Result<StepTrace<B>, SamplerError> {
        let path = Self::path(problem, surrogate)?;
        Ok(self.step_on(problem, &path, tables, t, x, y_t, z, uniforms))
    }

    #[allow(clippy::too_many_arguments)]
    fn step_on<B: NnAutodiffBackend>(
        &self,
        problem: &Problem<'_, B>,
        path: &Path<'_, B>,
        tb: Tables,
        t: usize,
        x: Tensor<B, 2>,
        y_t: Tensor<B, 2>,
        z: Tensor<B, 2>,
        uniforms: &[f64],
    ) -> StepTrace<B> {
        let c = &self.0;
        let m_particles = c.particles;
        let (x0, mean_back) = self.prior_mean(problem, x, t, tb);
        let y_tiled = tile(y_t, m_particles);
        // κ = 1/ex_t: the proposal's precision ratio, a float32 table entry.
        let kappa = (1.0 / tb.ex) as f32;
        let (c1, c2) = (tb.p.sqrt() as f32, tb.u.sqrt() as f32);
        let (mean, noise) = match path {
            Path::Mask(mask) => {
                let mt = mean_back.clone() + (y_tiled.clone() * mask.clone()).mul_scalar(kappa);
                let mean = mt.clone() - (mt * mask.clone()).mul_scalar(kappa / (kappa + 1.0));
                let noise = z.clone().mul_scalar(c1) - (z * mask.clone()).mul_scalar(c1 - c2);
                (mean, noise)
            }
            Path::Svd(op) => {
                let mean = Self::g_mean(*op, mean_back.clone(), kappa, Some(y_tiled.clone()), tb.ex);
                (mean, Self::g_noise(*op, z.mul_scalar(c1), tb.ex))
            }
        };
        let proposal = mean.clone() + noise.clone();
        // Log-weights (float64 from float32 norms, as the reference).
        let a_x = problem.operator.forward(proposal.clone());
        let n_y = norms2(y_tiled - a_x);
        let n_x = norms2(proposal.clone() - mean_back.clone());
        let diff = proposal.clone() - mean.clone();
        let n_m = norms2(diff.clone());
        let log_w: Vec<f64> = match path {
            Path::Mask(mask) => {
                let n_am = norms2(diff * mask.clone());
                let k = if c.tempered_inpainting_weights { m_particles as f64 } else { 1.0 };
                (0..n_y.len())
                    .map(|i| {
                        let prev = -n_m[i] / (2.0 * tb.p) + n_am[i] * (1.0 / (2.0 * tb.p) - 1.0 / (2.0 * tb.u));
                        k * (-n_y[i] / (2.0 * tb.w) - n_x[i] / (2.0 * tb.p) - prev)
                    })
                    .collect()
            }
            Path::Svd(_) => {
                let n_am = norms2(problem.operator.forward(diff));
                (0..n_y.len()).map(|i| -n_y[i] / (2.0 * tb.w) - n_x[i] / (2.0 * tb.p) - (-n_m[i] / (2.0 * tb.p) - n_am[i] / (2.0 * tb.a))).collect()
            }
        };
        let mut ancestors = Vec::with_capacity(log_w.len());
        for (cloud, u) in log_w.chunks(m_particles).zip(uniforms.chunks(m_particles)) {
            // A non-finite log-weight (a diverged particle) weighs nothing; a cloud without a
            // finite one resamples uniformly.
            let max = cloud.iter().copied().filter(|v| v.is_finite()).fold(f64::NEG_INFINITY, f64::max);
            let w: Vec<f64> = cloud
                .iter()
                .map(|&v| {
                    if !max.is_finite() {
                        1.0
                    } else if v.is_finite() {
                        (v - max).exp()
                    } else {
                        0.0
                    }
                })
                .collect();
            let start = ancestors.len();
            ancestors.extend(choices(&w, u).into_iter().map(|a| start + a));
        }
        let index: Vec<i64> = ancestors.iter().map(|&a| a as i64).collect();
        let x_next = proposal.select(0, Tensor::<B, 1, Int>::from_ints(index.as_slice(), &x0.device()));
        StepTrace { x0, mean_back, mean, noise, log_w, ancestors, x_next }
    }

    /// x̂₀ and the prior mean m_back = √ᾱ_{t−1}·x̂₀ + √(1−ᾱ_{t−1})·√(1−c)·ε̂ at original step `t`.
    fn prior_mean<B: NnAutodiffBackend>(&self, problem: &Problem<'_, B>, x: Tensor<B, 2>, t: usize, tb: Tables) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let eps = problem.prior.eps(x.clone(), t);
        let x0 = x0_from_eps(x, eps.clone(), tb.ab).clamp(-1.0, 1.0);
        let coef = (1.0 - tb.ab_prev).sqrt() * (1.0 - self.0.c_rate).sqrt();
        let mean_back = x0.clone().mul_scalar(tb.ab_prev.sqrt()) + eps.mul_scalar(coef);
        (x0, mean_back)
    }

    /// The respaced chain: original timesteps and their levels ᾱ′.
    pub fn chain<B: Backend>(&self, problem: &Problem<'_, B>) -> (Vec<usize>, Vec<f64>) {
        let schedule = problem.prior.schedule();
        let kept = space_timesteps(schedule.len(), self.0.steps.min(schedule.len()));
        let ab = schedule.respaced_alpha_bars(&kept);
        (kept, ab)
    }

    /// Runs FPS-SMC. `measurement` draws the ξ of the noised measurements, `particles` the start
    /// and proposal normals (and, with [`Uniforms::Draw`], the resampling uniforms); `surrogate`
    /// replaces the task's operator in the proposal. Returns particle 0 of each row.
    pub fn run<B: NnAutodiffBackend>(
        &self,
        problem: &Problem<'_, B>,
        surrogate: Option<&dyn LinearOperator<B>>,
        measurement: &mut SampleRng,
        particles: &mut SampleRng,
        uniforms: &mut Uniforms,
        mut record: Option<&mut RunTrace<B>>,
    ) -> Result<Tensor<B, 2>, SamplerError> {
        let c = &self.0;
        c.check()?;
        let path = Self::path(problem, surrogate)?;
        let (kept, ab) = self.chain(problem);
        let (n, d, m, dev) = (problem.n(), problem.dim(), c.particles, problem.device());
        let tables = |idx: usize| Tables::new(ab[idx], if idx == 0 { 1.0 } else { ab[idx - 1] }, c.sigma, c.c_rate);
        let last = kept.len() - 1;
        let y = problem.y.clone();
        // y_{T−1} = 𝒜(ξ_T), then y_{t−1} from y_t (module documentation, 1).
        let mut y_t = problem.operator.forward(measurement.normal::<B>(d, &dev));
        // Start (2).
        let tb = tables(last);
        let mut x = match &path {
            Path::Mask(mask) => {
                let zeta = Tensor::from_data(TensorData::new(particles.normal_f32(m * d), [n * m, d]), &dev);
                tile(y_t.clone(), m) * mask.clone() + zeta.clone() - zeta * mask.clone()
            }
            Path::Svd(op) => {
                let zeta = particles.normal::<B>(d, &dev);
                tile(Self::g_mean(*op, Self::transpose(*op, y_t.clone()), 0.0, None, tb.a) + Self::g_noise(*op, zeta, tb.a), m)
            }
        };
        if let Some(r) = record.as_deref_mut() {
            r.y.push(y_t.clone());
            r.x.push(x.clone());
        }
        for idx in (0..last).rev() {
            let up = tables(idx + 1);
            let (c1, c2, c3) = (((1.0 - c.c_rate) * (1.0 - up.ab_prev) / (1.0 - up.ab)).sqrt(), up.ab_prev.sqrt(), up.ab.sqrt());
            let c4 = c.c_rate.sqrt() * (1.0 - up.ab_prev).sqrt();
            let xi = problem.operator.forward(measurement.normal::<B>(d, &dev));
            y_t = y.clone().mul_scalar(c2) + (y_t - y.clone().mul_scalar(c3)).mul_scalar(c1) + xi.mul_scalar(c4);
            if let Some(r) = record.as_deref_mut() {
                r.y.push(y_t.clone());
            }
            if idx == 0 {
                // 4: every particle's x̂₀.
                x = self.prior_mean(problem, x, kept[0], tables(0)).1;
            } else {
                let z = Tensor::from_data(TensorData::new(particles.normal_f32(m * d), [n * m, d]), &dev);
                let u = match uniforms {
                    Uniforms::Given(queue) => queue.pop_front().expect("replayed FPS-SMC: no recorded uniforms left"),
                    Uniforms::Draw => {
                        let cols: Vec<Vec<f64>> = (0..m).map(|_| particles.uniform()).collect();
                        (0..n * m).map(|k| cols[k % m][k / m]).collect()
                    }
                };
                let step = self.step_on(problem, &path, tables(idx), kept[idx], x, y_t.clone(), z, &u);
                x = step.x_next.clone();
                if let Some(r) = record.as_deref_mut() {
                    r.steps.push(step);
                }
            }
            if let Some(r) = record.as_deref_mut() {
                r.x.push(x.clone());
            }
        }
        let first: Vec<i64> = (0..n).map(|i| (i * m) as i64).collect();
        Ok(x.select(0, Tensor::<B, 1, Int>::from_ints(first.as_slice(), &dev)))
    }
}

impl<B: NnAutodiffBackend> Sampler<B> for FpsSmc {
    fn name(&self) -> &'static str {
        "fps-smc"
    }

    fn differentiates_prior(&self) -> bool {
        false
    }

    fn nfe(&self, problem: &Problem<'_, B>) -> Result<usize, SamplerError> {
        self.0.check()?;
        Ok((self.chain(problem).0.len() - 1) * self.0.particles)
    }

    fn sample(&self, problem: &Problem<'_, B>, rng: &mut SampleRng) -> Result<Tensor<B, 2>, SamplerError> {
        let surrogate = match self.0.proposal {
            FpsProposal::Operator => None,
            FpsProposal::BlockAverage => Some(Self::block_surrogate(problem)?),
        };
        let mut measurement = rng.fork("fps-smc measurement sequence");
        self.run(problem, surrogate.as_ref().map(|s| s as &dyn LinearOperator<B>), &mut measurement, rng, &mut Uniforms::Draw, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_follow_pythons_bisect_rule() {
        // random.choices on [0.1, 0.5, 0.2, 0.2]: running sums 0.1, 0.6, 0.8, 1.0.
        assert_eq!(choices(&[0.1, 0.5, 0.2, 0.2], &[0.05, 0.1, 0.59, 0.61, 0.99]), vec![0, 1, 1, 2, 3]);
        // Zero weights are never chosen (the bisect skips equal running sums).
        assert_eq!(choices(&[1.0, 0.0, 0.0, 3.0], &[0.0, 0.2499, 0.25, 0.9999]), vec![0, 0, 3, 3]);
    }

    #[test]
    fn tables_follow_the_reference_definitions() {
        let t = Tables::new(0.5, 0.6, 0.05, 0.95);
        assert!((t.a - 0.5 * 0.0025).abs() < 1e-15 && (t.p - 0.4 * 0.95).abs() < 1e-15);
        assert!((t.u - t.a * t.p / (t.a + t.p)).abs() < 1e-18 && (t.w - 0.0025 * 0.6).abs() < 1e-15);
        assert!((t.ex - t.a / (t.p + 1e-6)).abs() < 1e-15);
    }
}
