//! `dipbench bench gmm`: seconds per replicate of each method of a GMM experiment on one cell of
//! its grid (d, d_y, budget), beside a baseline measured in the same run: a chain of as many
//! fused noisy updates x ← x − ½·x + s·ε as the budget has steps, ε drawn in place
//! (`SampleRng::combine`: the shape of a Langevin or re-noising update, normals included), over
//! the samples split into the benchmark's chunks as the methods are. A method's "updates per step"
//! is its time divided by that chain's: how many such updates one of its steps costs, a figure
//! that moves less with the machine than seconds do.
//!
//! The cell's problem, reference and seeds are those of replicate 0 of the experiment's `run`
//! (`job_problem`), so the timed samples are the ones its table scores.

use anyhow::{Result, bail};
use burn::prelude::*;
use dipbench_nn::{NnAutodiffBackend, NnBackend};
use dipbench_operators::SampleRng;
use rayon::prelude::*;
use serde::Serialize;

use super::{GmmJob, chunk_rows, job_problem, method_samples};
use crate::experiment::{Budget, Experiment, GmmExperiment};
use crate::speed::{Timing, time_runs};

/// The cell and the methods to time.
#[derive(Debug, Clone)]
pub struct GmmSpeedOptions {
    /// Dimension d.
    pub d: usize,
    /// Measurement dimension d_y.
    pub d_y: usize,
    /// The step budget.
    pub budget: Budget,
    /// Method labels to time (empty: every method of the experiment).
    pub methods: Vec<String>,
    /// Untimed runs of each method first.
    pub warmup: usize,
    /// Timed runs of each method.
    pub repeats: usize,
}

/// One method's timing.
#[derive(Debug, Clone, Serialize)]
pub struct MethodSpeed {
    /// The method's label in the experiment.
    pub label: String,
    /// Its sampler.
    pub sampler: String,
    /// Denoiser evaluations per sample.
    pub nfe: usize,
    /// Seconds per replicate (all `samples` rows), sampling only (as the table's wall time).
    pub seconds: Timing,
    /// Median seconds / the baseline chain's median: what one step costs in fused noisy updates.
    pub updates_per_step: f64,
}

/// The report of `dipbench bench gmm`.
#[derive(Debug, Clone, Serialize)]
pub struct GmmSpeedReport {
    /// The experiment file.
    pub experiment: String,
    /// d.
    pub d: usize,
    /// d_y.
    pub d_y: usize,
    /// Steps of the budget.
    pub steps: usize,
    /// η of the budget.
    pub eta: f64,
    /// Samples per replicate.
    pub samples: usize,
    /// Worker threads.
    pub threads: usize,
    /// The CPU model.
    pub cpu: String,
    /// The baseline: a chain of `steps` fused noisy updates over `[samples, d]`, seconds.
    pub chain: Timing,
    /// The methods, in the experiment's order.
    pub methods: Vec<MethodSpeed>,
}

/// The baseline: a chain of `steps` fused noisy updates x ← x − ½·x + s·ε over `x`'s rows, in
/// chunks of `chunk` rows on the pool as `sample_in_chunks` splits a method's samples (so a
/// chunk stays in cache across its steps, as a method's does); waits for the result.
fn fused_chain<B: NnBackend>(x: &Tensor<B, 2>, chunk: usize, steps: usize, seed: u64) {
    let n = x.dims()[0];
    let starts: Vec<usize> = (0..n).step_by(chunk.max(1)).collect();
    let parts: Vec<Tensor<B, 2>> = starts
        .par_iter()
        .map(|&start| {
            let end = (start + chunk).min(n);
            let mut rng = SampleRng::rows(seed, start..end);
            let mut rows = x.clone().slice(start..end);
            for _ in 0..steps {
                rows = rng.combine(vec![(rows.clone(), 1.0), (rows, -0.5)], 0.1);
            }
            rows
        })
        .collect();
    let _ = Tensor::cat(parts, 0).into_data();
}

/// Times the chosen methods of `exp` on one cell (module documentation).
pub fn bench_gmm<B: NnAutodiffBackend>(exp: &Experiment, gmm: &GmmExperiment, opts: &GmmSpeedOptions, device: &B::Device) -> Result<GmmSpeedReport> {
    if opts.d == 0 || opts.d_y == 0 || opts.d_y > opts.d || opts.budget.steps == 0 || opts.repeats == 0 {
        bail!(
            "need d ≥ d_y ≥ 1, at least one step and one repeat (got d = {}, d_y = {}, {} steps, {} repeats)",
            opts.d,
            opts.d_y,
            opts.budget.steps,
            opts.repeats
        );
    }
    let labels: Vec<&str> = exp.methods.iter().map(|m| m.label.as_str()).collect();
    if let Some(unknown) = opts.methods.iter().find(|m| !labels.contains(&m.as_str())) {
        bail!("--methods: `{unknown}` is not a method of {} (its methods: {})", exp.path.display(), labels.join(", "));
    }
    let job = GmmJob { d: opts.d, d_y: opts.d_y, budget: opts.budget, replicate: 0, problem_number: 0 };
    let problem = job_problem(exp, gmm, &job)?;
    let samples = gmm.grid.samples;

    let x = SampleRng::new(problem.sub("bench/pass-input"), samples).normal::<B::InnerBackend>(opts.d, device);
    let chain = time_runs(opts.warmup.max(1), opts.repeats, || fused_chain(&x, chunk_rows(opts.d), opts.budget.steps, problem.sub("bench/chain")));

    let mut methods = vec![];
    for (index, method) in exp.methods.iter().enumerate() {
        if !opts.methods.is_empty() && !opts.methods.contains(&method.label) {
            continue;
        }
        for _ in 0..opts.warmup {
            method_samples::<B>(exp, gmm, &job, &problem, index, device)?;
        }
        let runs = (0..opts.repeats).map(|_| method_samples::<B>(exp, gmm, &job, &problem, index, device)).collect::<Result<Vec<_>>>()?;
        let seconds = Timing::from_samples(runs.iter().map(|r| r.seconds).collect());
        let updates_per_step = seconds.median / chain.median;
        methods.push(MethodSpeed { label: method.label.clone(), sampler: runs[0].sampler.clone(), nfe: runs[0].nfe, seconds, updates_per_step });
    }
    Ok(GmmSpeedReport {
        experiment: exp.path.display().to_string(),
        d: opts.d,
        d_y: opts.d_y,
        steps: opts.budget.steps,
        eta: opts.budget.eta,
        samples,
        threads: rayon::current_num_threads(),
        cpu: crate::pipeline::machine::cpu_model(),
        chain,
        methods,
    })
}

impl GmmSpeedReport {
    /// The report as text: the baseline, then one table row per method.
    pub fn render(&self) -> String {
        let mut r = format!(
            "GMM methods on one cell of {}: d = {}, d_y = {}, {} steps (η = {}), {} samples; {} threads on {}\n",
            self.experiment, self.d, self.d_y, self.steps, self.eta, self.samples, self.threads, self.cpu
        );
        r += &format!(
            "baseline, same run: {} fused noisy updates x ← x − ½x + s·ε (ε drawn in place) over [{}, {}] in the methods' chunks: {:.4} s median ({:.3} ms per update), {:.4} s min\n\n",
            self.steps,
            self.samples,
            self.d,
            self.chain.median,
            self.chain.median / self.steps as f64 * 1e3,
            self.chain.min
        );
        r += "| method | NFE | s/replicate (median) | min | updates per step |\n|---|---|---|---|---|\n";
        for m in &self.methods {
            r += &format!("| {} | {} | {:.3} | {:.3} | {:.1} |\n", m.label, m.nfe, m.seconds.median, m.seconds.min, m.updates_per_step);
        }
        r
    }
}
