//! The diffusion machinery on the multimodal Gaussian mixture: with the exact ε̂, ancestral
//! sampling without guidance must reproduce the prior. Scored with the benchmark's own metric
//! (sliced W1) against exact prior draws, relative to the noise floor of two exact sets.

use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use dipbench_metrics::sliced_w1;
use dipbench_models::{GaussianMixture, GaussianMixturePrior, VpSchedule};
use dipbench_operators::{DenseOperator, SampleRng};
use dipbench_samplers::{Problem, SamplerConfig};
use nalgebra::DMatrix;

type B = Autodiff<Flex>;

fn prior_draws(g: &GaussianMixture, n: usize, seed: u64) -> Vec<f64> {
    let mut rng = SampleRng::new(seed, n);
    let u = rng.uniform();
    let z = rng.normal_f64(g.dim());
    (0..n).flat_map(|i| g.sample_one(u[i], &z[i * g.dim()..(i + 1) * g.dim()]).iter().copied().collect::<Vec<_>>()).collect()
}

#[test]
fn unguided_ancestral_sampling_reproduces_the_mixture_prior() {
    let (d, n) = (8, 2000);
    let weights: Vec<f64> = (0..25).map(|k| 0.5 + ((k * 7) % 5) as f64).collect();
    let g = GaussianMixture::mcgdiff(d, weights).unwrap();
    let dev = Default::default();
    let prior = GaussianMixturePrior::<B>::new(g.clone(), VpSchedule::mcgdiff_gmm(), &dev);
    let op = DenseOperator::<B>::new("A", DMatrix::from_element(1, d, 0.1), &dev).unwrap();
    let y = Tensor::<B, 2>::zeros([1, 1], &dev);
    let problem = Problem::shared(&prior, &op, y, 1.0, n);
    let floor = sliced_w1(&prior_draws(&g, n, 1), &prior_draws(&g, n, 2), d, 100, 5);
    for steps in [100, 1000] {
        // DPS with scale 0 is plain DDPM ancestral sampling (η = 1) on a uniform grid.
        let cfg = SamplerConfig::preset("dps", "gmm")
            .unwrap()
            .with_overrides(&toml::from_str(&format!("scale = 0.0\neta = 1.0\ngrid = \"uniform\"\nsteps = {steps}")).unwrap())
            .unwrap();
        let x = cfg.build::<B>(None).unwrap().sample(&problem, &mut SampleRng::new(9, n)).unwrap();
        let x: Vec<f64> = x.into_data().convert::<f32>().to_vec::<f32>().unwrap().into_iter().map(f64::from).collect();
        let sw = sliced_w1(&x, &prior_draws(&g, n, 1), d, 100, 5);
        println!("{steps} steps: SW1 to prior draws {sw:.4} (noise floor {floor:.4})");
        assert!(sw < 1.5 * floor, "{steps} steps: SW1 {sw} vs floor {floor}");
    }
}
