//! `dipbench grid`.

use std::path::PathBuf;

use anyhow::Result;

use super::say;
use crate::args::ExperimentArgs;

/// Arguments of `dipbench grid`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    experiment: ExperimentArgs,
    /// Rows (images) per grid.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=1000))]
    images: u64,
    /// Dataset folder for the ground truth (default: the experiment's).
    #[arg(long)]
    dataset: Option<PathBuf>,
}

/// Writes the grids.
pub fn run(a: Args) -> Result<i32> {
    let (exp, out) = a.experiment.load()?;
    for p in dipbench::grids::grids(&exp, &out, a.images as usize, a.dataset.as_deref())? {
        say(format_args!("wrote {}", p.display()))?;
    }
    Ok(0)
}
