//! The MCGdiff Gaussian-mixture benchmark against the reference script (dcps `gmm.py`, torch
//! float32): schedule, prior, exact score and exact posterior. Fixtures: `gmm.safetensors/.json`.
//!
//! Tolerances: the reference is float32 throughout and dipbench computes in float64 on the host
//! (float32 on the device for the score), so agreement is limited by float32 rounding: the
//! fixture README's "GMM 1e-5 relative" is used throughout. Measured: ᾱ 4e-8 (norm) and 3.4e-7
//! (worst entry, at ᾱ ≈ 4e-5); score ≤ 2.7e-6; posterior weights, log-weights, means ≈ 1e-7.

use burn::backend::Flex;
use burn::prelude::*;
use dipbench_models::{ExactPosterior, GaussianMixture, GaussianMixturePrior, VpSchedule};
use dipbench_tests::{load_json, load_tensors, rel_err, tensor};
use nalgebra::{DMatrix, DVector};

type B = Flex;

fn mixture(t: &std::collections::HashMap<String, dipbench_tests::GoldenTensor>) -> GaussianMixture {
    let w = tensor(t, "prior_weights").data.clone();
    let means = tensor(t, "prior_means");
    let d = means.shape[1];
    let g = GaussianMixture::mcgdiff(d, w).unwrap();
    // The construction (−8i, −8j, … with i outer) must reproduce the stored means exactly.
    let stored = DMatrix::from_row_slice(means.shape[0], d, &means.data);
    assert_eq!(g.means(), &stored, "MCGdiff means differ from the reference's prior_means");
    g
}

#[test]
fn golden_gmm_schedule_matches_reference_alphas_cumprod() {
    let t = load_tensors("gmm");
    let reference = &tensor(&t, "alphas_cumprod").data;
    let ours = VpSchedule::mcgdiff_gmm();
    assert_eq!(ours.len(), reference.len());
    let err = rel_err(ours.alpha_bars(), reference);
    assert!(err < 1e-5, "ᾱ relative error {err}");
    let worst = ours.alpha_bars().iter().zip(reference).map(|(a, b)| (a / b - 1.0).abs()).fold(0.0, f64::max);
    assert!(worst < 1e-5, "worst per-entry relative error of ᾱ {worst}");
}

#[test]
fn golden_gmm_exact_score_matches_reference_autograd() {
    let t = load_tensors("gmm");
    let g = mixture(&t);
    let schedule = VpSchedule::mcgdiff_gmm();
    let dev = Default::default();
    let x = tensor(&t, "score_x");
    let (n, d) = (x.shape[0], x.shape[1]);
    let ts = &tensor(&t, "score_t").data;
    let expect = tensor(&t, "score");
    let prior = GaussianMixturePrior::<B>::new(g.clone(), schedule.clone(), &dev);
    for (i, &step) in ts.iter().enumerate() {
        let ab = schedule.alpha_bar(step as usize);
        let sigma = dipbench_models::schedule::ve_sigma(ab);
        // ∇_{x_t} log p_t(x_t) = (1/√ᾱ)·∇ log p_σ(x_t/√ᾱ) (change of variables x = x_t/√ᾱ).
        let xt = Tensor::<B, 1>::from_floats(x.data.iter().map(|v| *v as f32).collect::<Vec<_>>().as_slice(), &dev).reshape([n, d]);
        let s = prior.score(xt.div_scalar(ab.sqrt()), sigma).div_scalar(ab.sqrt());
        let got: Vec<f64> = s.into_data().convert::<f32>().to_vec::<f32>().unwrap().into_iter().map(f64::from).collect();
        let want = &expect.data[i * n * d..(i + 1) * n * d];
        let err = rel_err(&got, want);
        assert!(err < 1e-5, "score at t = {step}: relative error {err}");
        // The host f64 reference implementation agrees too.
        for p in 0..n {
            let xp = DVector::from_column_slice(&x.data[p * d..(p + 1) * d]) / ab.sqrt();
            let host = g.score_host(&xp, sigma) / ab.sqrt();
            let e = rel_err(host.as_slice(), &want[p * d..(p + 1) * d]);
            assert!(e < 1e-5, "host score at t = {step}, point {p}: relative error {e}");
        }
    }
}

fn check_posterior(prefix: &str) {
    let t = load_tensors("gmm");
    let meta = load_json("gmm");
    let g = mixture(&t);
    let key = |k: &str| format!("{prefix}{k}");
    let a_t = tensor(&t, &key("A"));
    let a = DMatrix::from_row_slice(a_t.shape[0], a_t.shape[1], &a_t.data);
    let var_y = tensor(&t, &key("Sigma_y")).data[0];
    let inst = if prefix.is_empty() { "main" } else { prefix };
    let json_var = meta["instances"][inst]["var_y"].as_f64().unwrap();
    assert!((var_y / json_var - 1.0).abs() < 1e-7, "Sigma_y and the JSON's var_y disagree");
    let y = DVector::from_column_slice(&tensor(&t, &key("y")).data);
    let post = ExactPosterior::new(&g, &a, var_y.sqrt(), &y).unwrap();

    let w_ref = &tensor(&t, &key("post_weights")).data;
    let w_err = post.weights().iter().zip(w_ref).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(w_err < 1e-5, "{inst}: posterior weights differ by {w_err}");

    // Logits: compare where the reference's float32 did not underflow to −inf.
    let l_ref = &tensor(&t, &key("post_logits")).data;
    let (ours, theirs): (Vec<f64>, Vec<f64>) = post.log_weights().iter().zip(l_ref).filter(|(_, b)| b.is_finite()).map(|(a, b)| (*a, *b)).unzip();
    assert!(!ours.is_empty());
    let l_err = rel_err(&ours, &theirs);
    assert!(l_err < 1e-5, "{inst}: log-weights relative error {l_err}");

    let m_ref = &tensor(&t, &key("post_means")).data;
    let m_ours: Vec<f64> = post.means().transpose().iter().copied().collect(); // row-major
    let m_err = rel_err(&m_ours, m_ref);
    assert!(m_err < 1e-5, "{inst}: posterior means relative error {m_err}");

    let c_ref = tensor(&t, &key("post_covs"));
    let d = g.dim();
    let c_ours: Vec<f64> = post.component_covariance().transpose().iter().copied().collect();
    for k in 0..c_ref.shape[0] {
        let e = rel_err(&c_ours, &c_ref.data[k * d * d..(k + 1) * d * d]);
        assert!(e < 1e-5, "{inst}: component {k} covariance relative error {e}");
    }
}

#[test]
fn golden_gmm_exact_posterior_unimodal_instance() {
    check_posterior("");
}

#[test]
fn golden_gmm_exact_posterior_multimodal_instance() {
    check_posterior("dy1_");
}
