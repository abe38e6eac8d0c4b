//! One reverse step x_t → x_s (s < t) given the denoised estimate x̂₀ and ε̂, in the two forms the
//! reference codes use.

use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// The form of the reverse transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transition {
    /// DDIM (Song, Meng & Ermon 2021, eq. 12):
    /// x_s = √ᾱ_s·x̂₀ + √(1−ᾱ_s−σ²)·ε̂ + σ·z, σ = η·√((1−ᾱ_s)/(1−ᾱ_t))·√(1−ᾱ_t/ᾱ_s).
    Ddim,
    /// The DDPM posterior mean with η-scaled DDPM noise, as the MCGdiff GMM script's DPS does:
    /// x_s = √(ᾱ_t/ᾱ_s)(1−ᾱ_s)/(1−ᾱ_t)·x_t + √ᾱ_s(1−ᾱ_t/ᾱ_s)/(1−ᾱ_t)·x̂₀ + η·σ̃·z,
    /// σ̃² = (1−ᾱ_s)/(1−ᾱ_t)·(1−ᾱ_t/ᾱ_s) (Ho et al. 2020, eq. 7). Equals DDIM at η = 1.
    DdpmEta,
}

/// The DDPM posterior standard deviation σ̃ between levels ᾱ_t and ᾱ_s.
pub fn ddpm_sigma(ab_t: f64, ab_s: f64) -> f64 {
    ((1.0 - ab_s) / (1.0 - ab_t) * (1.0 - ab_t / ab_s)).max(0.0).sqrt()
}

/// The standard deviation of the fresh noise z in a step of this form (0 when none is added).
pub fn noise_std(kind: Transition, ab_t: f64, ab_s: f64, eta: f64) -> f64 {
    match kind {
        Transition::Ddim | Transition::DdpmEta => eta * ddpm_sigma(ab_t, ab_s),
    }
}

/// The deterministic part of the step plus `noise` (which must already be σ·z, or `None` when
/// σ = 0). `x_t`, `x0`, `eps` are `[n, d]`; ᾱ_s = 1 means the clean end.
pub fn step<B: Backend>(
    kind: Transition,
    x_t: Tensor<B, 2>,
    x0: Tensor<B, 2>,
    eps: Tensor<B, 2>,
    ab_t: f64,
    ab_s: f64,
    eta: f64,
    noise: Option<Tensor<B, 2>>,
) -> Tensor<B, 2> {
    let mean = match kind {
        Transition::Ddim => {
            let sigma = noise_std(kind, ab_t, ab_s, eta);
            let c_eps = (1.0 - ab_s - sigma * sigma).max(0.0).sqrt();
            x0.mul_scalar(ab_s.sqrt()) + eps.mul_scalar(c_eps)
        }
        Transition::DdpmEta => {
            let c_x = (ab_t / ab_s).sqrt() * (1.0 - ab_s) / (1.0 - ab_t);
            let c_0 = ab_s.sqrt() * (1.0 - ab_t / ab_s) / (1.0 - ab_t);
            x_t.mul_scalar(c_x) + x0.mul_scalar(c_0)
        }
    };
    match noise {
        Some(n) => mean + n,
        None => mean,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn ddim_and_ddpm_eta_agree_at_eta_one_when_eps_is_consistent() {
        // With ε̂ = (x_t − √ᾱ_t x̂₀)/√(1−ᾱ_t) the DDIM η=1 mean equals the DDPM posterior mean.
        let dev = Default::default();
        let (ab_t, ab_s) = (0.3f64, 0.7f64);
        let x_t = Tensor::<Flex, 2>::from_floats([[0.5, -1.0, 2.0]], &dev);
        let x0 = Tensor::<Flex, 2>::from_floats([[0.1, 0.2, -0.3]], &dev);
        let eps = (x_t.clone() - x0.clone().mul_scalar(ab_t.sqrt())).div_scalar((1.0 - ab_t).sqrt());
        let a = step(Transition::Ddim, x_t.clone(), x0.clone(), eps.clone(), ab_t, ab_s, 1.0, None);
        let b = step(Transition::DdpmEta, x_t, x0, eps, ab_t, ab_s, 1.0, None);
        let diff: f32 = (a - b).abs().max().into_scalar();
        assert!(diff < 1e-6, "{diff}");
    }

    #[test]
    fn clean_end_returns_x0() {
        let dev = Default::default();
        let x_t = Tensor::<Flex, 2>::from_floats([[3.0, 1.0]], &dev);
        let x0 = Tensor::<Flex, 2>::from_floats([[0.25, -0.5]], &dev);
        let eps = Tensor::<Flex, 2>::from_floats([[1.0, 1.0]], &dev);
        for kind in [Transition::Ddim, Transition::DdpmEta] {
            assert_eq!(noise_std(kind, 0.5, 1.0, 0.7), 0.0);
            let out = step(kind, x_t.clone(), x0.clone(), eps.clone(), 0.5, 1.0, 0.7, None);
            let diff: f32 = (out - x0.clone()).abs().max().into_scalar();
            assert!(diff < 1e-7);
        }
    }
}
