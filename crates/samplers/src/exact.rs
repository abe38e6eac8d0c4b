//! The exact posterior as a sampler: the reference row of the analytic benchmarks.

use burn::prelude::*;
use dipbench_models::ExactPosterior;
use dipbench_nn::NnAutodiffBackend;
use dipbench_operators::SampleRng;

use crate::Sampler;
use crate::common::Problem;
use crate::error::SamplerError;

/// Draws exact posterior samples m_k + C^{1/2}z ([`ExactPosterior::sample_one`]); each row uses
/// its own stream (one uniform for the component, d normals).
#[derive(Debug, Clone)]
pub struct Exact(pub ExactPosterior);

impl Exact {
    /// `n`×d exact draws on the host, row-major, f64.
    pub fn draw(&self, rng: &mut SampleRng, d: usize) -> Vec<f64> {
        let u = rng.uniform();
        let z = rng.normal_f64(d);
        u.iter().enumerate().flat_map(|(i, &ui)| self.0.sample_one(ui, &z[i * d..(i + 1) * d]).iter().copied().collect::<Vec<_>>()).collect()
    }
}

impl<B: NnAutodiffBackend> Sampler<B> for Exact {
    fn name(&self) -> &'static str {
        "exact"
    }

    fn differentiates_prior(&self) -> bool {
        false
    }

    fn nfe(&self, _problem: &Problem<'_, B>) -> Result<usize, SamplerError> {
        Ok(0)
    }

    fn sample(&self, problem: &Problem<'_, B>, rng: &mut SampleRng) -> Result<Tensor<B, 2>, SamplerError> {
        let d = problem.dim();
        if self.0.means().ncols() != d {
            return Err(SamplerError::Unsupported { sampler: "exact".into(), why: format!("posterior has dimension {}, problem {d}", self.0.means().ncols()) });
        }
        let v: Vec<f32> = self.draw(rng, d).into_iter().map(|x| x as f32).collect();
        Ok(Tensor::from_data(TensorData::new(v, [problem.n(), d]), &problem.device()))
    }
}
