//! One reverse step x_t → x_s (s < t) given the denoised estimate x̂₀ and ε̂, in the two forms the
//! reference codes use.

use burn::prelude::*;
use dipbench_nn::NnBackend;
use dipbench_operators::SampleRng;
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
    /// guided-diffusion's `p_sample` (docs/protocols.md §3.1): the DDPM posterior mean with the
    /// network's learned-range variance (Nichol & Dhariwal 2021, eq. 15),
    /// log σ² = f·log β_t + (1−f)·log β̃_t, f = (v + 1)/2, β_t = 1 − ᾱ_t/ᾱ_s, β̃_t = σ̃², and no
    /// noise on the step to the clean end. A prior without learned variance (the analytic ones)
    /// gets σ̃ (f = 0, guided-diffusion's `fixedsmall`). η is ignored.
    DdpmLearned,
}

/// The DDPM posterior standard deviation σ̃ between levels ᾱ_t and ᾱ_s.
pub fn ddpm_sigma(ab_t: f64, ab_s: f64) -> f64 {
    ((1.0 - ab_s) / (1.0 - ab_t) * (1.0 - ab_t / ab_s)).max(0.0).sqrt()
}

/// The standard deviation of the fresh noise z in a step of this form (0 when none is added;
/// for [`Transition::DdpmLearned`] the fixed-small σ̃, the learned σ being per element).
pub fn noise_std(kind: Transition, ab_t: f64, ab_s: f64, eta: f64) -> f64 {
    match kind {
        Transition::Ddim | Transition::DdpmEta => eta * ddpm_sigma(ab_t, ab_s),
        Transition::DdpmLearned => ddpm_sigma(ab_t, ab_s),
    }
}

/// Whether a step of this form draws fresh noise z (so samplers draw only what is used).
pub fn draws_noise(kind: Transition, ab_t: f64, ab_s: f64, eta: f64) -> bool {
    noise_std(kind, ab_t, ab_s, eta) > 0.0
}

/// One reverse step x_t → x_s. `x_t`, `x0`, `eps` are `[n, d]`; `v` is the learned-range
/// output (only read by [`Transition::DdpmLearned`]); `z` is standard normal noise (`None` when
/// [`draws_noise`] is false); ᾱ_s = 1 means the clean end. Every coefficient is computed in
/// float64 and rounded to float32 before the multiply, as guided-diffusion's tables.
#[allow(clippy::too_many_arguments)]
pub fn step<B: Backend>(
    kind: Transition,
    x_t: Tensor<B, 2>,
    x0: Tensor<B, 2>,
    eps: Tensor<B, 2>,
    v: Option<Tensor<B, 2>>,
    ab_t: f64,
    ab_s: f64,
    eta: f64,
    z: Option<Tensor<B, 2>>,
) -> Tensor<B, 2> {
    let [(a, c_a), (b, c_b)] = mean_terms(kind, x_t, x0, eps, ab_t, ab_s, eta);
    let mean = a.mul_scalar(c_a) + b.mul_scalar(c_b);
    let Some(z) = z else { return mean };
    match (kind, v) {
        (Transition::DdpmLearned, Some(v)) => {
            // log σ² = f·log β_t + (1 − f)·log β̃_t, f = (v + 1)/2; x_s = μ + exp(½ log σ²)·z.
            let beta = 1.0 - ab_t / ab_s;
            let (max_log, min_log) = (beta.ln(), ddpm_sigma(ab_t, ab_s).powi(2).ln());
            let frac = v.add_scalar(1.0).div_scalar(2.0);
            let log_var = frac.clone().mul_scalar(max_log) + frac.neg().add_scalar(1.0).mul_scalar(min_log);
            mean + log_var.mul_scalar(0.5).exp() * z
        }
        _ => mean + z.mul_scalar(noise_std(kind, ab_t, ab_s, eta)),
    }
}

/// [`step`] with its noise z the next normal draw of `rng`, drawn only where the step adds noise
/// ([`draws_noise`]). Without a learned variance the step is Σ cᵢ·tᵢ + σ·z, made in one pass
/// where the backend fuses it ([`SampleRng::combine`]: the same products summed in the same order,
/// so bit for bit [`step`] with z drawn by `rng.normal`); with one ([`Transition::DdpmLearned`]
/// and `v`), z is drawn and [`step`] applied.
#[allow(clippy::too_many_arguments)]
pub fn step_drawn<B: NnBackend>(
    kind: Transition,
    x_t: Tensor<B, 2>,
    x0: Tensor<B, 2>,
    eps: Tensor<B, 2>,
    v: Option<Tensor<B, 2>>,
    ab_t: f64,
    ab_s: f64,
    eta: f64,
    rng: &mut SampleRng,
) -> Tensor<B, 2> {
    let sigma = noise_std(kind, ab_t, ab_s, eta);
    if kind == Transition::DdpmLearned && v.is_some() {
        let z = (sigma > 0.0).then(|| rng.normal::<B>(x_t.dims()[1], &x_t.device()));
        return step(kind, x_t, x0, eps, v, ab_t, ab_s, eta, z);
    }
    // `step`'s mean terms in its order, then + σ·z (no draw when σ = 0).
    rng.combine(mean_terms(kind, x_t, x0, eps, ab_t, ab_s, eta).into(), sigma)
}

/// The two terms (tensor, coefficient) of a step's mean c_a·a + c_b·b, in the order they are
/// summed: DDIM √ᾱ_s·x̂₀ + √(1−ᾱ_s−σ²)·ε̂ (eq. 12); DDPM
/// μ = [β_t√ᾱ_s/(1−ᾱ_t)]·x̂₀ + [(1−ᾱ_s)√α_t/(1−ᾱ_t)]·x_t, α_t = ᾱ_t/ᾱ_s (Ho et al. eq. 7).
#[allow(clippy::type_complexity)]
fn mean_terms<B: Backend>(
    kind: Transition,
    x_t: Tensor<B, 2>,
    x0: Tensor<B, 2>,
    eps: Tensor<B, 2>,
    ab_t: f64,
    ab_s: f64,
    eta: f64,
) -> [(Tensor<B, 2>, f64); 2] {
    match kind {
        Transition::Ddim => {
            let sigma = noise_std(kind, ab_t, ab_s, eta);
            [(x0, ab_s.sqrt()), (eps, (1.0 - ab_s - sigma * sigma).max(0.0).sqrt())]
        }
        Transition::DdpmEta | Transition::DdpmLearned => {
            let c_0 = ab_s.sqrt() * (1.0 - ab_t / ab_s) / (1.0 - ab_t);
            let c_x = (ab_t / ab_s).sqrt() * (1.0 - ab_s) / (1.0 - ab_t);
            [(x0, c_0), (x_t, c_x)]
        }
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
        let a = step(Transition::Ddim, x_t.clone(), x0.clone(), eps.clone(), None, ab_t, ab_s, 1.0, None);
        let b = step(Transition::DdpmEta, x_t, x0, eps, None, ab_t, ab_s, 1.0, None);
        let diff: f32 = (a - b).abs().max().into_scalar();
        assert!(diff < 1e-6, "{diff}");
    }

    #[test]
    fn learned_variance_interpolates_between_the_posterior_and_the_forward_variance() {
        // v = −1 gives σ̃², v = 1 gives β_t: the added noise equals σ·z for those σ.
        let dev = Default::default();
        let (ab_t, ab_s) = (0.3f64, 0.35f64);
        let zero = Tensor::<Flex, 2>::zeros([1, 2], &dev);
        let z = Tensor::<Flex, 2>::ones([1, 2], &dev);
        for (v, var) in [(-1.0f32, ddpm_sigma(ab_t, ab_s).powi(2)), (1.0, 1.0 - ab_t / ab_s)] {
            let vt = Tensor::<Flex, 2>::full([1, 2], v, &dev);
            let out = step(Transition::DdpmLearned, zero.clone(), zero.clone(), zero.clone(), Some(vt), ab_t, ab_s, 0.0, Some(z.clone()));
            let got: f32 = out.max().into_scalar();
            assert!((f64::from(got) - var.sqrt()).abs() < 1e-6, "v = {v}: {got} vs {}", var.sqrt());
        }
    }

    /// `step_drawn` is `step` with z drawn by `rng.normal`, bit for bit, for each form, with
    /// noise and without (η = 0, the clean end), and it draws exactly when `step` would.
    #[test]
    fn step_drawn_is_step_with_the_next_draw() {
        let dev = Default::default();
        let (n, d) = (3, 70);
        let x_t = SampleRng::new(1, n).normal::<Flex>(d, &dev);
        let x0 = SampleRng::new(2, n).normal::<Flex>(d, &dev).mul_scalar(0.5);
        let eps = SampleRng::new(3, n).normal::<Flex>(d, &dev);
        let v = SampleRng::new(4, n).normal::<Flex>(d, &dev).clamp(-1.0, 1.0);
        for kind in [Transition::Ddim, Transition::DdpmEta, Transition::DdpmLearned] {
            for (ab_s, eta) in [(0.6, 0.85), (0.6, 0.0), (1.0, 0.85)] {
                for learned in [None, Some(v.clone())] {
                    let (mut a, mut b) = (SampleRng::new(9, n), SampleRng::new(9, n));
                    let drawn = step_drawn(kind, x_t.clone(), x0.clone(), eps.clone(), learned.clone(), 0.3, ab_s, eta, &mut a);
                    let z = draws_noise(kind, 0.3, ab_s, eta).then(|| b.normal::<Flex>(d, &dev));
                    let plain = step(kind, x_t.clone(), x0.clone(), eps.clone(), learned, 0.3, ab_s, eta, z);
                    assert_eq!(drawn.to_data(), plain.to_data(), "{kind:?}, ᾱ_s = {ab_s}, η = {eta}");
                    // The same number of draws made: the next draws agree.
                    assert_eq!(a.normal_f32(4), b.normal_f32(4), "{kind:?}, ᾱ_s = {ab_s}, η = {eta}");
                }
            }
        }
    }

    #[test]
    fn clean_end_returns_x0() {
        let dev = Default::default();
        let x_t = Tensor::<Flex, 2>::from_floats([[3.0, 1.0]], &dev);
        let x0 = Tensor::<Flex, 2>::from_floats([[0.25, -0.5]], &dev);
        let eps = Tensor::<Flex, 2>::from_floats([[1.0, 1.0]], &dev);
        for kind in [Transition::Ddim, Transition::DdpmEta, Transition::DdpmLearned] {
            assert!(!draws_noise(kind, 0.5, 1.0, 0.7));
            let out = step(kind, x_t.clone(), x0.clone(), eps.clone(), None, 0.5, 1.0, 0.7, None);
            let diff: f32 = (out - x0.clone()).abs().max().into_scalar();
            assert!(diff < 1e-7);
        }
    }
}
