//! The optimisation baselines of the DPS tables: PnP-ADMM (Chan, Wang & Elgendy 2017) and
//! ADMM-TV (Goldstein & Osher 2009; Boyd et al. 2011 §6.4.1), with the shared linear algebra:
//! conjugate gradients for the normal equations and the finite-difference operator of TV.
//!
//! Both solve a MAP problem and are deterministic given y (the RNG is not used).

use burn::prelude::*;
use dipbench_nn::NnAutodiffBackend;
use dipbench_operators::operator::scale_columns;
use dipbench_operators::{LinearOperator, SampleRng};
use serde::{Deserialize, Serialize};

use crate::Sampler;
use crate::common::Problem;
use crate::error::SamplerError;

/// Row-wise inner products ⟨a_i, b_i⟩, `[n, 1]`.
fn dot<B: Backend>(a: Tensor<B, 2>, b: Tensor<B, 2>) -> Tensor<B, 2> {
    (a * b).sum_dim(1)
}

/// Solves M·x = b row by row with `iters` conjugate-gradient steps from `x0`, for a symmetric
/// positive (semi-)definite M given as a function (Hestenes & Stiefel 1952).
pub fn conjugate_gradient<B: Backend>(apply: impl Fn(Tensor<B, 2>) -> Tensor<B, 2>, b: Tensor<B, 2>, x0: Tensor<B, 2>, iters: usize) -> Tensor<B, 2> {
    let mut x = x0.clone();
    let mut r = b - apply(x0);
    let mut p = r.clone();
    let mut rs = dot(r.clone(), r.clone());
    for _ in 0..iters {
        let mp = apply(p.clone());
        // α = ⟨r, r⟩/⟨p, Mp⟩ (a converged row, ⟨p, Mp⟩ = 0, takes no step).
        let alpha = rs.clone() / dot(p.clone(), mp.clone()).add_scalar(1e-30);
        x = x + p.clone() * alpha.clone();
        r = r - mp * alpha;
        let rs_new = dot(r.clone(), r.clone());
        p = r.clone() + p * (rs_new.clone() / rs.add_scalar(1e-30));
        rs = rs_new;
    }
    x
}

/// argmin_x ‖A·x − y‖² + c·‖x − w‖², i.e. (AᵀA + cI)x = Aᵀy + c·w: exactly through A's SVD when
/// it has one (coordinate i: (s_i·ȳ_i + c·w̄_i)/(s_i² + c), null space from w), else by
/// `cg_iters` conjugate-gradient steps started at w.
pub fn data_prox<B: Backend>(op: &dyn LinearOperator<B>, y: Tensor<B, 2>, w: Tensor<B, 2>, c: f64, cg_iters: usize) -> Tensor<B, 2> {
    match op.svd() {
        Some(svd) => {
            let s = svd.singular_values();
            let a_y: Vec<f64> = s.iter().map(|si| si / (si * si + c)).collect();
            let a_w: Vec<f64> = s.iter().map(|si| c / (si * si + c)).collect();
            let coords = scale_columns(svd.ut(y), &a_y) + scale_columns(svd.vt(w.clone()), &a_w);
            svd.v(coords) + svd.null_part(w)
        }
        None => {
            let b = op.adjoint(y) + w.clone().mul_scalar(c);
            conjugate_gradient(|x| op.adjoint(op.forward(x.clone())) + x.mul_scalar(c), b, w, cg_iters)
        }
    }
}

/// Forward differences along the last two axes of images `[n, c, h, w]` stored as rows, with
/// a zero difference at the far border (Neumann boundary): D·x = (D_h x, D_v x), `[n, 2·d]`.
pub fn gradient<B: Backend>(x: Tensor<B, 2>, shape: [usize; 3]) -> Tensor<B, 2> {
    let n = x.dims()[0];
    let [c, h, w] = shape;
    let img = x.reshape([n, c, h, w]);
    let dev = img.device();
    let dh =
        Tensor::cat(vec![img.clone().slice([0..n, 0..c, 0..h, 1..w]) - img.clone().slice([0..n, 0..c, 0..h, 0..w - 1]), Tensor::zeros([n, c, h, 1], &dev)], 3);
    let dv = Tensor::cat(vec![img.clone().slice([0..n, 0..c, 1..h, 0..w]) - img.slice([0..n, 0..c, 0..h - 1, 0..w]), Tensor::zeros([n, c, 1, w], &dev)], 2);
    Tensor::cat(vec![dh.reshape([n, c * h * w]), dv.reshape([n, c * h * w])], 1)
}

/// Dᵀ of [`gradient`]: (Dᵀg)_j = g_{j−1} − g_j along each axis, with g_{−1} = 0 and the far
/// border's (zero) difference ignored.
pub fn gradient_adjoint<B: Backend>(g: Tensor<B, 2>, shape: [usize; 3]) -> Tensor<B, 2> {
    let n = g.dims()[0];
    let [c, h, w] = shape;
    let d = c * h * w;
    let dev = g.device();
    let gh = g.clone().slice([0..n, 0..d]).reshape([n, c, h, w]).slice([0..n, 0..c, 0..h, 0..w - 1]);
    let gv = g.slice([0..n, d..2 * d]).reshape([n, c, h, w]).slice([0..n, 0..c, 0..h - 1, 0..w]);
    let zh = Tensor::<B, 4>::zeros([n, c, h, 1], &dev);
    let zv = Tensor::<B, 4>::zeros([n, c, 1, w], &dev);
    let th = Tensor::cat(vec![zh.clone(), gh.clone()], 3) - Tensor::cat(vec![gh, zh], 3);
    let tv = Tensor::cat(vec![zv.clone(), gv.clone()], 2) - Tensor::cat(vec![gv, zv], 2);
    (th + tv).reshape([n, d])
}

/// Soft thresholding sign(v)·max(|v| − k, 0), the prox of k‖·‖₁.
fn shrink<B: Backend>(v: Tensor<B, 2>, k: f64) -> Tensor<B, 2> {
    v.clone().sign() * (v.abs().sub_scalar(k)).clamp_min(0.0)
}

/// The image shape `[c, h, w]` of the prior's samples, or an error for vector priors.
fn image_shape<B: Backend>(problem: &Problem<'_, B>, sampler: &str) -> Result<[usize; 3], SamplerError> {
    match problem.prior.sample_shape().as_slice() {
        &[c, h, w] if h > 1 && w > 1 => Ok([c, h, w]),
        other => Err(SamplerError::Unsupported { sampler: sampler.into(), why: format!("needs image-shaped samples [c, h, w]; the prior's are {other:?}") }),
    }
}

/// ADMM-TV settings: min_x ½‖A·x − y‖² + λ‖D·x‖₁ (anisotropic TV) by ADMM on v = D·x.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdmmTvConfig {
    /// λ, the TV weight (image units [−1, 1]).
    pub lambda: f64,
    /// ρ, the ADMM penalty.
    pub rho: f64,
    /// ADMM iterations.
    pub iterations: usize,
    /// Conjugate-gradient steps per x-update.
    pub cg_iters: usize,
}

impl AdmmTvConfig {
    /// dipbench's default (the DPS paper gives no values): λ = 0.02 against σ_y = 0.05, ρ = 10λ,
    /// 100 iterations of 20 CG steps.
    pub fn default_image() -> Self {
        Self { lambda: 0.02, rho: 0.2, iterations: 100, cg_iters: 20 }
    }
}

/// The ADMM-TV baseline (linear operators, image priors; the prior itself is not used).
#[derive(Debug, Clone)]
pub struct AdmmTv(pub AdmmTvConfig);

impl<B: NnAutodiffBackend> Sampler<B> for AdmmTv {
    fn name(&self) -> &'static str {
        "admm-tv"
    }

    fn differentiates_prior(&self) -> bool {
        false
    }

    fn nfe(&self, _problem: &Problem<'_, B>) -> Result<usize, SamplerError> {
        Ok(0)
    }

    /// x ← (AᵀA + ρDᵀD)⁻¹(Aᵀy + ρDᵀ(v − u)); v ← shrink(Dx + u, λ/ρ); u ← u + Dx − v.
    fn sample(&self, problem: &Problem<'_, B>, _rng: &mut SampleRng) -> Result<Tensor<B, 2>, SamplerError> {
        let c = &self.0;
        let shape = image_shape(problem, "admm-tv")?;
        let op = problem.operator.require_linear("ADMM-TV")?;
        let aty = op.adjoint(problem.y.clone());
        let mut x = aty.clone();
        let mut v = gradient(x.clone(), shape);
        let mut u = v.zeros_like();
        for _ in 0..c.iterations {
            let b = aty.clone() + gradient_adjoint(v.clone() - u.clone(), shape).mul_scalar(c.rho);
            x = conjugate_gradient(|p| op.adjoint(op.forward(p.clone())) + gradient_adjoint(gradient(p, shape), shape).mul_scalar(c.rho), b, x, c.cg_iters);
            let dx = gradient(x.clone(), shape);
            v = shrink(dx.clone() + u.clone(), c.lambda / c.rho);
            u = u + dx - v.clone();
        }
        Ok(x)
    }
}

/// PnP-ADMM settings: min_x ‖A·x − y‖²/(2σ_y²) − log p(x), with the prior's proximal step
/// replaced by its denoiser D(·; σ_k) and σ_k decreasing geometrically (continuation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PnpAdmmConfig {
    /// ADMM iterations (denoiser evaluations).
    pub iterations: usize,
    /// σ of the first denoising step.
    pub sigma_max: f64,
    /// σ of the last.
    pub sigma_min: f64,
    /// Conjugate-gradient steps per x-update when A has no SVD.
    pub cg_iters: usize,
}

impl PnpAdmmConfig {
    /// dipbench's default: 50 iterations, σ from 1 to 0.05 (the measurement noise of the tables).
    /// The DPS paper ran PnP-ADMM with a DnCNN denoiser; dipbench plugs in the diffusion prior's
    /// own denoiser, so every method shares one prior.
    pub fn default_image() -> Self {
        Self { iterations: 50, sigma_max: 1.0, sigma_min: 0.05, cg_iters: 20 }
    }

    /// GMM benchmark: σ from the prior's scale (150) down to 0.01, 100 iterations.
    pub fn gmm() -> Self {
        Self { iterations: 100, sigma_max: 150.0, sigma_min: 0.01, cg_iters: 20 }
    }
}

/// The PnP-ADMM baseline (linear operators).
#[derive(Debug, Clone)]
pub struct PnpAdmm(pub PnpAdmmConfig);

impl<B: NnAutodiffBackend> Sampler<B> for PnpAdmm {
    fn name(&self) -> &'static str {
        "pnp-admm"
    }

    fn differentiates_prior(&self) -> bool {
        false
    }

    fn nfe(&self, _problem: &Problem<'_, B>) -> Result<usize, SamplerError> {
        Ok(self.0.iterations)
    }

    /// With ρ_k = 1/σ_k²: x ← argmin ‖Ax − y‖²/σ_y² + ρ_k‖x − (z − u)‖² ([`data_prox`] with
    /// c = ρ_k·σ_y²); z ← D(x + u; σ_k); u ← u + x − z. Returns the last x.
    fn sample(&self, problem: &Problem<'_, B>, _rng: &mut SampleRng) -> Result<Tensor<B, 2>, SamplerError> {
        let c = &self.0;
        if c.iterations == 0 || c.sigma_min <= 0.0 || c.sigma_max < c.sigma_min {
            return Err(SamplerError::Config {
                sampler: "pnp-admm".into(),
                key: "iterations / sigma_min / sigma_max".into(),
                why: "need iterations > 0 and 0 < sigma_min ≤ sigma_max".into(),
            });
        }
        let op = problem.operator.require_linear("PnP-ADMM")?;
        // A noiseless measurement would make the data step a hard projection: keep it soft.
        let sigma_y = problem.sigma_y.max(1e-3);
        let mut x = op.adjoint(problem.y.clone());
        let mut z = x.clone();
        let mut u = x.zeros_like();
        let ratio = if c.iterations > 1 { (c.sigma_min / c.sigma_max).powf(1.0 / (c.iterations - 1) as f64) } else { 1.0 };
        for k in 0..c.iterations {
            let sigma = c.sigma_max * ratio.powi(k as i32);
            x = data_prox(op, problem.y.clone(), z.clone() - u.clone(), sigma_y * sigma_y / (sigma * sigma), c.cg_iters);
            z = problem.prior.denoise(x.clone() + u.clone(), sigma);
            u = u + x.clone() - z.clone();
        }
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn gradient_adjoint_is_the_adjoint() {
        // ⟨Dx, g⟩ = ⟨x, Dᵀg⟩ for random x, g (deterministic draws).
        let dev = Default::default();
        let shape = [2, 5, 7];
        let x = SampleRng::new(1, 3).normal::<Flex>(70, &dev);
        let g = SampleRng::new(2, 3).normal::<Flex>(140, &dev);
        let lhs: f32 = (gradient(x.clone(), shape) * g.clone()).sum().into_scalar();
        let rhs: f32 = (x * gradient_adjoint(g, shape)).sum().into_scalar();
        assert!((lhs - rhs).abs() < 1e-4 * lhs.abs().max(1.0), "{lhs} vs {rhs}");
    }

    #[test]
    fn conjugate_gradient_solves_a_diagonal_system() {
        // M = diag(1..d): x = b/diag, reached in d steps.
        let dev = Default::default();
        let d = 6;
        let diag = Tensor::<Flex, 2>::from_floats([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]], &dev);
        let b = Tensor::<Flex, 2>::from_floats([[1.0, 1.0, 1.0, 1.0, 1.0, 1.0]], &dev);
        let x = conjugate_gradient(|p| p * diag.clone(), b.clone(), b.zeros_like(), d);
        let err: f32 = (x * diag - b).abs().max().into_scalar();
        assert!(err < 1e-5, "{err}");
    }
}
