//! `dipbench table`.

use std::path::PathBuf;

use anyhow::Result;

use super::say;
use crate::args::ExperimentArgs;

/// Arguments of `dipbench table`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    experiment: ExperimentArgs,
    /// Image benchmark: the dataset folder (default: the experiment's; without it, the image
    /// list the run left in the results folder).
    #[arg(long)]
    dataset: Option<PathBuf>,
}

/// Writes and prints the tables of a finished experiment.
pub fn run(a: Args) -> Result<i32> {
    let (exp, out) = a.experiment.load()?;
    say(dipbench::benchmarks::write_tables(&exp, &out, a.dataset.as_deref())?)?;
    Ok(0)
}
