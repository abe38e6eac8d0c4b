//! `dipbench run`.

use std::path::PathBuf;

use anyhow::Result;
use dipbench::benchmarks;
use dipbench::pipeline::RunOptions;

use super::say;
use crate::args::{DeviceArgs, ExperimentArgs};

/// Arguments of `dipbench run`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    experiment: ExperimentArgs,
    #[command(flatten)]
    device: DeviceArgs,
    /// Do not draw a progress bar.
    #[arg(long)]
    no_progress: bool,
    /// Jobs run at the same time (default: the number of threads). Results do not depend on it.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    jobs: Option<u64>,
    /// Run only shard I of N (`I/N`, 0-based): every N-th job of the fixed job order from the
    /// I-th. Shards share the results folder (or are merged with `dipbench merge`); the
    /// tables are written once every job is done.
    #[arg(long, value_parser = parse_shard)]
    shard: Option<(usize, usize)>,
    /// Image benchmark: read the images from this folder instead of `image.dataset`.
    #[arg(long)]
    dataset: Option<PathBuf>,
    /// Use the first N devices of the backend (several GPUs in one process: worker w runs
    /// its jobs on device w mod N; set --jobs to a multiple of N). Results do not depend on it.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    devices: u64,
}

/// Parses `I/N` with I < N.
fn parse_shard(s: &str) -> Result<(usize, usize), String> {
    let (i, n) = s.split_once('/').ok_or_else(|| format!("`{s}`: expected I/N, e.g. 0/4"))?;
    let (i, n): (usize, usize) =
        (i.trim().parse().map_err(|_| format!("`{s}`: I is not a number"))?, n.trim().parse().map_err(|_| format!("`{s}`: N is not a number"))?);
    if n == 0 || i >= n {
        return Err(format!("`{s}`: need 0 ≤ I < N"));
    }
    Ok((i, n))
}

/// Runs the experiment's unfinished jobs; without `--shard`, then writes and prints its tables.
pub fn run(a: Args) -> Result<i32> {
    let (exp, out) = a.experiment.load()?;
    let opts = RunOptions { progress: !a.no_progress, jobs: a.jobs.map(|j| j as usize), shard: a.shard, dataset: a.dataset.clone() };
    let summary = dipbench::with_backend!(a.device.device, |B, dev| {
        let devs = dipbench::backend::devices::<B>(&dev, a.devices as usize)?;
        let opts = RunOptions { jobs: opts.jobs.or((devs.len() > 1).then_some(devs.len())), ..opts.clone() };
        benchmarks::run::<B>(&exp, &out, &devs, &opts)
    })?;
    let counts = format!("{} jobs ({} run now, {} already done) in {:.1} s", summary.total, summary.ran, summary.skipped, summary.seconds);
    if let Some((i, n)) = a.shard {
        eprintln!("shard {i}/{n}: {counts}; run `dipbench table {}` once every shard is done", a.experiment.experiment.display());
        return Ok(0);
    }
    say(benchmarks::write_tables(&exp, &out, a.dataset.as_deref())?)?;
    eprintln!("{counts}; tables in {}", out.display());
    Ok(0)
}
