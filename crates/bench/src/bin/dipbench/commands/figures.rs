//! `dipbench figures`.

use anyhow::Result;

use super::say;
use crate::args::ExperimentArgs;

/// Arguments of `dipbench figures`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    experiment: ExperimentArgs,
    /// Replicates to draw (comma-separated indices).
    #[arg(long, value_delimiter = ',', default_value = "0")]
    replicates: Vec<usize>,
    /// Redraw figures that already exist.
    #[arg(long)]
    redraw: bool,
}

/// Recomputes the chosen replicates' samples on the CPU and writes one figure per (d, d_y,
/// budget, replicate); then `dipbench table` links them from `table.md`.
pub fn run(a: Args) -> Result<i32> {
    let (exp, out) = a.experiment.load()?;
    for (p, drawn) in dipbench::figures::figures::<burn::backend::Autodiff<burn::backend::Flex>>(&exp, &out, &a.replicates, a.redraw, &Default::default())? {
        say(format_args!("{} {}", if drawn { "wrote" } else { "kept" }, p.display()))?;
    }
    Ok(0)
}
