//! The MCGdiff Gaussian-mixture benchmark (`docs/gmm.md`): one job per (d, d_y, budget,
//! replicate) builds a random problem with a known posterior, runs every method on it and scores
//! each against exact posterior draws.
//!
//! Randomness: each job's seed is derived from the experiment seed and the job's identity
//! (`derive_seed`), and each use of randomness (problem, reference draws, each method, metric
//! directions) has its own named stream, so a job's rows do not depend on which other jobs, or
//! how many threads, run beside it. Instances are drawn with dipbench's RNG, not torch's, so they
//! are not the original script's instances; the construction and the statistics are.

pub mod speed;
pub mod table;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use burn::prelude::*;
use dipbench_metrics::SlicedReference;
use dipbench_models::{ExactPosterior, GaussianMixture, GaussianMixturePrior, Prior, TapeFree, VpSchedule};
use dipbench_nn::NnAutodiffBackend;
use dipbench_operators::{DenseOperator, SampleRng, derive_seed};
use dipbench_samplers::exact::Exact;
use dipbench_samplers::{Problem, SamplerConfig, sample_in_chunks};
use nalgebra::{DMatrix, DVector};
use serde::{Deserialize, Serialize};

use crate::experiment::{Budget, Experiment, GmmExperiment, GmmGrid};
use crate::pipeline::{Benchmark, JobOutput, RunOptions};

/// One job of the grid.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GmmJob {
    /// Dimension d.
    pub d: usize,
    /// Measurement dimension d_y.
    pub d_y: usize,
    /// The step budget.
    pub budget: Budget,
    /// Replicate index r.
    pub replicate: usize,
    /// The original script's problem number 2^{i_d}·3^{i_dy}·5^{i_budget} + r (for reference).
    pub problem_number: usize,
}

impl GmmJob {
    /// A stable file-name-safe identifier: every coordinate of the job, η included.
    pub fn id(&self) -> String {
        format!("d{}-dy{}-steps{}-eta{}-r{:03}", self.d, self.d_y, self.budget.steps, self.budget.eta, self.replicate)
    }
}

/// Every job of the grid, in a fixed order (budget, d, d_y, replicate).
pub fn jobs(grid: &GmmGrid) -> Vec<GmmJob> {
    let mut out = vec![];
    for (ib, budget) in grid.budgets.iter().enumerate() {
        for (id, &d) in grid.dims.iter().enumerate() {
            for (iy, &d_y) in grid.obs_dims.iter().enumerate() {
                for replicate in 0..grid.replicates {
                    // The original script's numbering; it saturates on grids far larger than the original's.
                    let problem_number = 2usize
                        .saturating_pow(id as u32)
                        .saturating_mul(3usize.saturating_pow(iy as u32))
                        .saturating_mul(5usize.saturating_pow(ib as u32))
                        .saturating_add(replicate);
                    out.push(GmmJob { d, d_y, budget: *budget, replicate, problem_number });
                }
            }
        }
    }
    out
}

/// The file of a job's figure (`dipbench figures`), relative to the results folder.
pub fn figure_path(job: &GmmJob) -> PathBuf {
    PathBuf::from("figures").join(format!("d{}-dy{}-steps{}-eta{}-r{:03}.png", job.d, job.d_y, job.budget.steps, job.budget.eta, job.replicate))
}

/// One result row: one method on one replicate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GmmRow {
    /// Fingerprint of everything that determines the row (see [`fingerprint`]).
    pub config: String,
    /// d.
    pub d: usize,
    /// d_y.
    pub d_y: usize,
    /// Step budget.
    pub steps: usize,
    /// The budget's η.
    pub eta: f64,
    /// Replicate index.
    pub replicate: usize,
    /// The original script's problem number.
    pub problem: usize,
    /// σ_y of this instance.
    pub sigma_y: f64,
    /// Method label.
    pub method: String,
    /// Sampler name.
    pub sampler: String,
    /// Denoiser evaluations per sample.
    pub nfe: usize,
    /// Sliced W1 to the exact reference draws (the paper's metric; NaN when the samples diverged).
    #[serde(with = "crate::pipeline::floats")]
    pub sw1: f64,
    /// Max-sliced W2 to the same draws.
    #[serde(with = "crate::pipeline::floats")]
    pub max_sw2: f64,
    /// Wall time of the method on this replicate, seconds.
    pub seconds: f64,
}

/// A hex fingerprint of what a job's rows depend on: the seed, schedule, sample count, metric,
/// the budget and every method's resolved configuration. The grid's lists (dims, replicates)
/// are not part of it, so growing the grid reuses finished jobs.
pub fn fingerprint(exp: &Experiment, gmm: &GmmExperiment, budget: &Budget) -> String {
    let g = &gmm.grid;
    let methods: Vec<(String, String)> =
        exp.methods.iter().zip(&gmm.configs).map(|(m, c)| (m.label.clone(), toml::to_string(c).expect("configs serialise"))).collect();
    let text = format!(
        "{}|{}|{}|{}|{:?}|{:?}|noise v{}",
        exp.header.seed,
        g.schedule,
        g.samples,
        exp.metric.projections,
        budget,
        methods,
        dipbench_operators::noise::NOISE_VERSION
    );
    format!("{:016x}", derive_seed(&["fingerprint", &text]))
}

/// A random instance: prior, operator, measurement and exact posterior.
pub struct Instance {
    /// The prior mixture.
    pub mixture: GaussianMixture,
    /// The operator A.
    pub a: DMatrix<f64>,
    /// σ_y.
    pub sigma_y: f64,
    /// The measurement y.
    pub y: DVector<f64>,
    /// The exact posterior.
    pub posterior: ExactPosterior,
}

/// Draws the instance of `docs/gmm.md` from one stream: weights w = z²/Σz² (z ~ N(0, I₂₅)); A₀ ~
/// N(0,1)^{d_y×d} whose singular values are replaced by sorted-descending Uniform(0,1) draws s;
/// x* ~ prior; σ_y = u·max(s), u ~ U(0,1); y = A·x* + σ_y·ε.
pub fn instance(d: usize, d_y: usize, seed: u64) -> Result<Instance> {
    let mut rng = SampleRng::new(seed, 1);
    let z = rng.normal_f64(25);
    let weights: Vec<f64> = z.iter().map(|v| v * v).collect();
    let mixture = GaussianMixture::mcgdiff(d, weights)?;
    let a0 = DMatrix::from_row_slice(d_y, d, &rng.normal_f64(d_y * d));
    let mut s: Vec<f64> = (0..d_y).map(|_| rng.uniform()[0]).collect();
    s.sort_by(|a, b| b.total_cmp(a));
    let a = DenseOperator::<burn::backend::Flex>::mcgdiff_matrix(&a0, &s)?;
    let u = rng.uniform()[0];
    let x_star = mixture.sample_one(u, &rng.normal_f64(d));
    let sigma_y = rng.uniform()[0] * s[0];
    let eps = DVector::from_vec(rng.normal_f64(d_y));
    let y = &a * &x_star + eps * sigma_y;
    let posterior = ExactPosterior::new(&mixture, &a, sigma_y, &y)?;
    Ok(Instance { mixture, a, sigma_y, y, posterior })
}

/// Rows per sampler call: tensors of about 2¹⁷ floats (512 KiB) stay in the CPU's cache, which
/// matters more than batch size for these memory-bound element-wise steps (2000 × 800 samples:
/// DAPS 21 s → 13 s per replicate; chunks of 2¹⁴–2¹⁵ floats are slower again, 2¹⁶–2¹⁹ alike).
/// Results do not depend on it ([`sample_in_chunks`]).
pub(crate) fn chunk_rows(d: usize) -> usize {
    ((1usize << 17) / d.max(1)).max(1)
}

/// One job's problem: the instance, the exact reference draws the methods are scored against,
/// and the seeds of its named streams.
pub struct JobProblem {
    /// The instance.
    pub instance: Instance,
    /// `samples` exact posterior draws, row-major `[n, d]`.
    pub reference: Vec<f64>,
    /// The seed of the metrics' projection directions.
    pub metric_seed: u64,
    job_seed: u64,
}

impl JobProblem {
    /// The seed of a named stream of the job.
    fn sub(&self, purpose: &str) -> u64 {
        derive_seed(&[&self.job_seed.to_string(), purpose])
    }
}

/// Builds `job`'s problem from its seed (the same for the run and for `figures`).
pub fn job_problem(exp: &Experiment, gmm: &GmmExperiment, job: &GmmJob) -> Result<JobProblem> {
    let seed_text = exp.header.seed.to_string();
    let (d_s, dy_s, steps_s, r_s) = (job.d.to_string(), job.d_y.to_string(), job.budget.steps.to_string(), job.replicate.to_string());
    let job_seed = derive_seed(&["gmm", &seed_text, &d_s, &dy_s, &steps_s, &r_s]);
    let sub = |purpose: &str| derive_seed(&[&job_seed.to_string(), purpose]);
    let instance = instance(job.d, job.d_y, sub("problem")).with_context(|| format!("job {}", job.id()))?;
    let reference = Exact(instance.posterior.clone()).draw(&mut SampleRng::new(sub("reference"), gmm.grid.samples), job.d);
    Ok(JobProblem { instance, reference, metric_seed: sub("metric"), job_seed })
}

/// One method's samples on a job's problem.
pub struct MethodSamples {
    /// Row-major `[n, d]`.
    pub x: Vec<f64>,
    /// Wall time, seconds.
    pub seconds: f64,
    /// Denoiser evaluations per sample.
    pub nfe: usize,
    /// The sampler's name.
    pub sampler: String,
}

/// Runs method `index` of `exp` on `problem` (its own stream of the job), as the benchmark does.
pub fn method_samples<B: NnAutodiffBackend>(
    exp: &Experiment,
    gmm: &GmmExperiment,
    job: &GmmJob,
    problem: &JobProblem,
    index: usize,
    device: &B::Device,
) -> Result<MethodSamples> {
    let (method, inst) = (&exp.methods[index], &problem.instance);
    let schedule = VpSchedule::by_name(&gmm.grid.schedule)?;
    let mut cfg: SamplerConfig = gmm.configs[index].clone();
    cfg.set_budget(job.budget.steps, job.budget.eta);
    let sampler = cfg.build::<B>(Some(&inst.posterior)).with_context(|| format!("method `{}`", method.label))?;
    let taped;
    let tape_free;
    let prior: &dyn Prior<B> = if sampler.differentiates_prior() {
        taped = GaussianMixturePrior::<B>::new(inst.mixture.clone(), schedule, device);
        &taped
    } else {
        tape_free = TapeFree::new(GaussianMixturePrior::<B::InnerBackend>::new(inst.mixture.clone(), schedule, device));
        &tape_free
    };
    let op = DenseOperator::<B>::new("mcgdiff-random", inst.a.clone(), device)?;
    let y_row: Vec<f32> = inst.y.iter().map(|v| *v as f32).collect();
    let y = Tensor::<B, 1>::from_floats(y_row.as_slice(), device).reshape([1, job.d_y]);
    let problem_n = Problem::shared(prior, &op, y, inst.sigma_y, gmm.grid.samples);
    let start = Instant::now();
    let x = sample_in_chunks(sampler.as_ref(), &problem_n, problem.sub(&format!("method/{}", method.label)), chunk_rows(job.d))
        .with_context(|| format!("method `{}` on job {}", method.label, job.id()))?;
    let x: Vec<f64> = x.into_data().convert::<f32>().to_vec::<f32>().map_err(|e| anyhow::anyhow!("{e:?}"))?.into_iter().map(f64::from).collect();
    Ok(MethodSamples { x, seconds: start.elapsed().as_secs_f64(), nfe: sampler.nfe(&problem_n)?, sampler: cfg.kind().into() })
}

/// Runs every method of `exp` on one job and returns its rows (in method order).
pub fn run_job<B: NnAutodiffBackend>(exp: &Experiment, gmm: &GmmExperiment, job: &GmmJob, device: &B::Device) -> Result<Vec<GmmRow>> {
    let problem = job_problem(exp, gmm, job)?;
    let config = fingerprint(exp, gmm, &job.budget);
    // Projected and sorted once for the job's methods (the same numbers as scoring each apart).
    let reference = SlicedReference::new(&problem.reference, job.d, exp.metric.projections, problem.metric_seed);
    let mut rows = Vec::with_capacity(exp.methods.len());
    for (index, method) in exp.methods.iter().enumerate() {
        let m = method_samples::<B>(exp, gmm, job, &problem, index, device)?;
        let finite = m.x.iter().all(|v| v.is_finite());
        let (sw1, max_sw2) = if finite {
            let distances = reference.distances(&m.x);
            (distances.w1, distances.max_w2)
        } else {
            tracing::warn!(method = %method.label, job = %job.id(), "non-finite samples; scored as NaN");
            (f64::NAN, f64::NAN)
        };
        rows.push(GmmRow {
            config: config.clone(),
            d: job.d,
            d_y: job.d_y,
            steps: job.budget.steps,
            eta: job.budget.eta,
            replicate: job.replicate,
            problem: job.problem_number,
            sigma_y: problem.instance.sigma_y,
            method: method.label.clone(),
            sampler: m.sampler,
            nfe: m.nfe,
            sw1,
            max_sw2,
            seconds: m.seconds,
        });
    }
    Ok(rows)
}

/// The GMM benchmark of one experiment.
pub struct GmmBenchmark<'a> {
    exp: &'a Experiment,
    gmm: &'a GmmExperiment,
}

impl<'a> GmmBenchmark<'a> {
    /// The benchmark of `exp`, a GMM experiment.
    pub fn new(exp: &'a Experiment, gmm: &'a GmmExperiment) -> Self {
        Self { exp, gmm }
    }
}

impl Benchmark for GmmBenchmark<'_> {
    type Job = GmmJob;
    type Row = GmmRow;
    type Worker<B: NnAutodiffBackend> = ();

    fn experiment(&self) -> &Experiment {
        self.exp
    }

    fn jobs(&self) -> Result<Vec<GmmJob>> {
        Ok(jobs(&self.gmm.grid))
    }

    fn job_id(&self, job: &GmmJob) -> String {
        job.id()
    }

    fn fingerprint(&self, job: &GmmJob) -> Result<String> {
        Ok(fingerprint(self.exp, self.gmm, &job.budget))
    }

    fn rows_per_job(&self, _job: &GmmJob) -> usize {
        self.exp.methods.len()
    }

    /// Longest first, so that the last jobs to finish are short ones.
    fn cost(&self, job: &GmmJob) -> u64 {
        (job.d * job.budget.steps * 16 + job.d_y) as u64
    }

    fn prepare<B: NnAutodiffBackend>(&self, _device: &B::Device, _opts: &RunOptions, _pending: &[GmmJob]) -> Result<()> {
        Ok(())
    }

    fn run_batch<B: NnAutodiffBackend>(&self, _worker: &(), jobs: &[GmmJob], device: &B::Device) -> Result<Vec<JobOutput<GmmRow>>> {
        jobs.iter().map(|job| Ok(JobOutput { rows: run_job::<B>(self.exp, self.gmm, job, device)?, files: vec![] })).collect()
    }

    fn write_tables(&self, rows: &[GmmRow], out: &Path) -> Result<String> {
        table::write_all(self.exp, self.gmm, rows, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_follows_the_construction() {
        let inst = instance(8, 2, 5).unwrap();
        let svd = inst.a.clone().svd(false, false);
        let mut s: Vec<f64> = svd.singular_values.iter().copied().collect();
        s.sort_by(|a, b| b.total_cmp(a));
        assert!(s.iter().all(|v| (0.0..1.0).contains(v)));
        assert!(inst.sigma_y > 0.0 && inst.sigma_y <= s[0]);
        assert!((inst.mixture.weights().iter().sum::<f64>() - 1.0).abs() < 1e-12);
        // Same seed, same instance; another seed, another.
        assert_eq!(instance(8, 2, 5).unwrap().y, inst.y);
        assert_ne!(instance(8, 2, 6).unwrap().y, inst.y);
    }

    #[test]
    fn problem_numbers_follow_the_original_formula() {
        let grid = GmmGrid {
            dims: vec![8, 80],
            obs_dims: vec![1, 2],
            replicates: 2,
            samples: 10,
            schedule: "mcgdiff-gmm".into(),
            budgets: vec![Budget { steps: 20, eta: 0.6 }, Budget { steps: 100, eta: 0.85 }],
        };
        let j = jobs(&grid);
        assert_eq!(j.len(), 16);
        let last = j.last().unwrap();
        assert_eq!((last.d, last.d_y, last.budget.steps, last.replicate), (80, 2, 100, 1));
        assert_eq!(last.problem_number, 2 * 3 * 5 + 1);
    }
}
