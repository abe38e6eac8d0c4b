//! The classical phase-retrieval baselines of the DPS nonlinear table: error reduction (ER),
//! hybrid input–output (HIO; Fienup 1982, Appl. Opt. 21:2758, eq. 35–37 with β = 0.9) and
//! oversampling smoothness (OSS; Rodriguez et al. 2013, J. Appl. Cryst. 46:312).
//!
//! They work on the padded object g (N×N per channel, N = side + 2·pad) of the operator's
//! [`FourierMagnitude`] view: G = F_c·g·F_cᵀ, the Fourier constraint G′ = |y|·G/|G|,
//! g′ = Re(F_c⁻¹·G′·F_c⁻ᵀ) with F_c⁻¹ = conj(F_c) (F_c is symmetric and unitary), then the
//! object constraint on the support S (the image window; non-negative where the operator maps
//! the image to [0, 1]):
//! - ER:  g ← g′ on S where admissible, 0 elsewhere;
//! - HIO: g ← g′ on S where admissible, g − β·g′ elsewhere;
//! - OSS: HIO, with the region outside S smoothed by a Gaussian in frequency,
//!   W(k) = exp(−½(|k|/α)²), α decreasing linearly from N to 1/N over the iterations.
//!
//! Every algorithm ends with `final_er` ER steps. The start is noise of scale ½ on S from the
//! job's stream (half-normal for non-negative objects). The answer is read off the window as x = (g − b)/a.

use burn::prelude::*;
use dipbench_nn::NnAutodiffBackend;
use dipbench_operators::image::phase::centred_dft;
use dipbench_operators::{FourierMagnitude, SampleRng};
use serde::{Deserialize, Serialize};

use crate::Sampler;
use crate::common::Problem;
use crate::error::SamplerError;

/// Which update runs outside the last `final_er` steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FienupAlgorithm {
    /// Error reduction.
    Er,
    /// Hybrid input–output.
    Hio,
    /// Oversampling smoothness.
    Oss,
}

/// Settings of the Fienup-type baselines (the algorithm is the sampler's name).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FienupConfig {
    /// Iterations of the update.
    pub iterations: usize,
    /// ER iterations at the end.
    pub final_er: usize,
    /// β of HIO/OSS.
    pub beta: f64,
}

impl Default for FienupConfig {
    /// 1000 iterations + 50 ER steps, β = 0.9 (Fienup's usual choice).
    fn default() -> Self {
        Self { iterations: 1000, final_er: 50, beta: 0.9 }
    }
}

/// An ER/HIO/OSS baseline (phase-retrieval operators only).
#[derive(Debug, Clone)]
pub struct Fienup(pub FienupAlgorithm, pub FienupConfig);

/// Complex N×N images as (re, im) `[b, N, N]`.
struct Complex<B: Backend> {
    re: Tensor<B, 3>,
    im: Tensor<B, 3>,
}

/// Left and right multiplication by a complex symmetric matrix (fr + i·fi), with `conj`
/// negating fi: M·Z·Mᵀ.
fn sandwich<B: Backend>(fr: &Tensor<B, 3>, fi: &Tensor<B, 3>, z: Complex<B>, conj: bool) -> Complex<B> {
    let fi = if conj { fi.clone().neg() } else { fi.clone() };
    // L = M·Z.
    let lr = fr.clone().matmul(z.re.clone()) - fi.clone().matmul(z.im.clone());
    let li = fr.clone().matmul(z.im) + fi.clone().matmul(z.re);
    // L·Mᵀ = L·M (symmetric).
    Complex { re: lr.clone().matmul(fr.clone()) - li.clone().matmul(fi.clone()), im: lr.matmul(fi) + li.matmul(fr.clone()) }
}

impl<B: NnAutodiffBackend> Sampler<B> for Fienup {
    fn name(&self) -> &'static str {
        match self.0 {
            FienupAlgorithm::Er => "er",
            FienupAlgorithm::Hio => "hio",
            FienupAlgorithm::Oss => "oss",
        }
    }

    fn differentiates_prior(&self) -> bool {
        false
    }

    fn nfe(&self, _problem: &Problem<'_, B>) -> Result<usize, SamplerError> {
        Ok(0)
    }

    fn sample(&self, problem: &Problem<'_, B>, rng: &mut SampleRng) -> Result<Tensor<B, 2>, SamplerError> {
        let c = &self.1;
        let name = <Self as Sampler<B>>::name(self);
        let FourierMagnitude { channels, side, pad, scale, offset } = problem.operator.as_fourier_magnitude().ok_or_else(|| SamplerError::Unsupported {
            sampler: name.into(),
            why: format!("needs a Fourier phase-retrieval operator, got `{}`", problem.operator.name()),
        })?;
        let (n_rows, dev) = (problem.n(), problem.device());
        let n = side + 2 * pad;
        let b = n_rows * channels;
        let nonneg = offset > 0.0;
        let (re, im) = centred_dft(n);
        let to3 = |m: &nalgebra::DMatrix<f64>| -> Tensor<B, 3> {
            let v: Vec<f32> = m.transpose().iter().map(|v| *v as f32).collect();
            Tensor::<B, 1>::from_floats(v.as_slice(), &dev).reshape([1, n, n]).expand([b, n, n])
        };
        let (fr, fi) = (to3(&re), to3(&im));
        let magnitude = problem.y.clone().detach().reshape([b, n, n]);
        // The support S and, for OSS, the centred frequency radius |k|.
        let window = Tensor::<B, 3>::ones([b, side, side], &dev).pad((pad, pad, pad, pad), 0.0);
        let outside = window.clone().neg().add_scalar(1.0);
        let radius: Vec<f32> = (0..n * n)
            .map(|i| {
                let (r, q) = ((i / n) as f64 - (n / 2) as f64, (i % n) as f64 - (n / 2) as f64);
                (r * r + q * q).sqrt() as f32
            })
            .collect();
        let radius = Tensor::<B, 1>::from_floats(radius.as_slice(), &dev).reshape([1, n, n]).expand([b, n, n]);
        // Start: half-normal (non-negative objects) or normal noise of scale ½ on S.
        let u = rng.normal::<B>(channels * side * side, &dev).reshape([b, side, side]);
        let u = if nonneg { u.abs().mul_scalar(0.5) } else { u.mul_scalar(0.5) };
        let mut g = u.pad((pad, pad, pad, pad), 0.0);
        let total = c.iterations + c.final_er;
        for k in 0..total {
            let big = sandwich(&fr, &fi, Complex { re: g.clone(), im: g.zeros_like() }, false);
            let modulus = (big.re.clone().powf_scalar(2.0) + big.im.clone().powf_scalar(2.0)).sqrt().clamp_min(1e-12);
            let ratio = magnitude.clone() / modulus;
            let projected = Complex { re: big.re * ratio.clone(), im: big.im * ratio };
            let g_prime = sandwich(&fr, &fi, projected, true).re;
            // Admissible: on S (and ≥ 0 for [0, 1] objects).
            let ok = if nonneg { window.clone() * g_prime.clone().greater_equal_elem(0.0).float() } else { window.clone() };
            let not_ok = ok.clone().neg().add_scalar(1.0);
            let algorithm = if k < c.iterations { self.0 } else { FienupAlgorithm::Er };
            g = match algorithm {
                FienupAlgorithm::Er => g_prime * ok,
                FienupAlgorithm::Hio => g_prime.clone() * ok + (g - g_prime.mul_scalar(c.beta)) * not_ok,
                FienupAlgorithm::Oss => {
                    let hio = g_prime.clone() * ok.clone() + (g - g_prime.mul_scalar(c.beta)) * not_ok;
                    let frac = k as f64 / c.iterations.max(1) as f64;
                    let alpha = n as f64 + frac * (1.0 / n as f64 - n as f64);
                    let w = radius.clone().div_scalar(alpha).powf_scalar(2.0).mul_scalar(-0.5).exp();
                    let spec = sandwich(&fr, &fi, Complex { re: hio.clone(), im: hio.zeros_like() }, false);
                    let smooth = sandwich(&fr, &fi, Complex { re: spec.re * w.clone(), im: spec.im * w }, true).re;
                    hio.clone() * window.clone() + smooth * outside.clone()
                }
            };
        }
        let x = g.slice([0..b, pad..pad + side, pad..pad + side]).sub_scalar(offset).div_scalar(scale);
        Ok(x.reshape([n_rows, channels * side * side]))
    }
}
