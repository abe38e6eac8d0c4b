//! The benchmarks: each turns a validated experiment into jobs, runs a job, and writes the
//! tables of the finished rows ([`crate::pipeline::Benchmark`]). This module picks the benchmark
//! of an experiment, so the command line never matches on the kind itself.

pub mod gmm;
pub mod image;

use std::path::Path;

use anyhow::Result;
use dipbench_nn::NnAutodiffBackend;

use crate::experiment::{Experiment, Kind};
use crate::pipeline::{Benchmark, RunOptions, RunSummary, runner};
use gmm::GmmBenchmark;
use image::ImageBenchmark;

/// Runs every unfinished job of this shard of `exp` into `out` ([`runner::run`]).
pub fn run<B: NnAutodiffBackend>(exp: &Experiment, out: &Path, devices: &[B::Device], opts: &RunOptions) -> Result<RunSummary>
where
    B::Device: Sync,
{
    match &exp.kind {
        Kind::Gmm(g) => runner::run::<_, B>(&GmmBenchmark::new(exp, g), out, devices, opts),
        Kind::Image(img) => {
            let bench = ImageBenchmark::for_run(exp, img, opts.dataset.as_deref())?;
            bench.check_ground_truth(out)?;
            let summary = runner::run::<_, B>(&bench, out, devices, opts)?;
            bench.record_images(out)?;
            Ok(summary)
        }
    }
}

/// Reads every finished job of `exp` in `out` back (each job file checked) and writes the
/// tables; returns the Markdown. `dataset` overrides the image benchmark's dataset folder.
pub fn write_tables(exp: &Experiment, out: &Path, dataset: Option<&Path>) -> Result<String> {
    match &exp.kind {
        Kind::Gmm(g) => {
            let bench = GmmBenchmark::new(exp, g);
            bench.write_tables(&runner::collect(&bench, out)?, out)
        }
        Kind::Image(img) => {
            let bench = ImageBenchmark::for_results(exp, img, out, dataset)?;
            bench.write_tables(&runner::collect(&bench, out)?, out)
        }
    }
}
