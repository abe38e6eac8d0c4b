//! Every sampler is a deterministic function of its seed, and a sample does not depend on the
//! batch it is drawn in (each row has its own random stream): DESIGN.md "Randomness".

use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use dipbench_models::{ExactPosterior, GaussianMixture, GaussianMixturePrior, VpSchedule};
use dipbench_operators::{DenseOperator, SampleRng};
use dipbench_samplers::{Problem, SAMPLER_KINDS, SamplerConfig};
use nalgebra::{DMatrix, DVector};

type B = Autodiff<Flex>;

/// The samplers that run on the Gaussian-mixture benchmark (those with a `gmm` preset; the
/// phase-retrieval and TV baselines need image structure and are checked on images).
fn gmm_kinds() -> Vec<&'static str> {
    SAMPLER_KINDS.iter().copied().filter(|k| SamplerConfig::preset(k, "gmm").is_ok()).collect()
}

fn run(kind: &str, rows: std::ops::Range<usize>, seed: u64) -> Vec<f32> {
    let d = 8;
    let weights: Vec<f64> = (0..25).map(|k| 1.0 + (k % 4) as f64).collect();
    let g = GaussianMixture::mcgdiff(d, weights).unwrap();
    let a = DMatrix::from_fn(2, d, |i, j| ((i * 5 + j * 3) % 7) as f64 / 7.0 - 0.4);
    let y = DVector::from_vec(vec![3.0, -2.0]);
    let post = ExactPosterior::new(&g, &a, 0.3, &y).unwrap();
    let dev = Default::default();
    let prior = GaussianMixturePrior::<B>::new(g, VpSchedule::mcgdiff_gmm(), &dev);
    let op = DenseOperator::<B>::new("A", a, &dev).unwrap();
    let yt = Tensor::<B, 1>::from_floats([3.0f32, -2.0], &dev).reshape([1, 2]);
    let problem = Problem::shared(&prior, &op, yt, 0.3, rows.len());
    let mut cfg = SamplerConfig::preset(kind, "gmm").unwrap();
    cfg.set_budget(20, 0.6);
    let sampler = cfg.build::<B>(Some(&post)).unwrap();
    let out = sampler.sample(&problem, &mut SampleRng::rows(seed, rows)).unwrap();
    out.into_data().convert::<f32>().to_vec::<f32>().unwrap()
}

#[test]
fn same_seed_same_samples_and_another_seed_differs() {
    let kinds = gmm_kinds();
    assert!(kinds.len() >= 10, "{kinds:?}");
    for kind in kinds {
        let a = run(kind, 0..5, 42);
        assert_eq!(a, run(kind, 0..5, 42), "{kind}: not deterministic");
        if SamplerConfig::preset(kind, "gmm").unwrap().is_stochastic() {
            assert_ne!(a, run(kind, 0..5, 43), "{kind}: ignores its seed");
        }
    }
}

#[test]
fn samples_do_not_depend_on_the_batch_split() {
    for kind in gmm_kinds() {
        let whole = run(kind, 0..6, 7);
        let mut split = run(kind, 0..2, 7);
        split.extend(run(kind, 2..6, 7));
        // Rows are computed independently and the CPU kernels reduce each row in the same order
        // whatever the batch, so the samples are bitwise identical.
        assert_eq!(whole, split, "{kind}: batch of 6 vs 2 + 4 differs");
    }
}

#[test]
fn chunked_sampling_equals_one_batch() {
    let d = 8;
    let g = GaussianMixture::mcgdiff(d, vec![1.0; 25]).unwrap();
    let a = DMatrix::from_fn(1, d, |_, j| (j as f64 - 3.5) / 8.0);
    let dev = Default::default();
    let prior = GaussianMixturePrior::<B>::new(g, VpSchedule::mcgdiff_gmm(), &dev);
    let op = DenseOperator::<B>::new("A", a, &dev).unwrap();
    let y = Tensor::<B, 2>::from_floats([[1.5f32]], &dev);
    let problem = Problem::shared(&prior, &op, y, 0.2, 7);
    let mut cfg = SamplerConfig::preset("dps", "gmm").unwrap();
    cfg.set_budget(20, 0.6);
    let s = cfg.build::<B>(None).unwrap();
    let whole = s.sample(&problem, &mut SampleRng::new(5, 7)).unwrap().into_data();
    for chunk in [1, 3, 7, 100] {
        let chunked = dipbench_samplers::sample_in_chunks(s.as_ref(), &problem, 5, chunk).unwrap().into_data();
        assert_eq!(whole, chunked, "chunks of {chunk}");
    }
}
