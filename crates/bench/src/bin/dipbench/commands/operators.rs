//! `dipbench operators grid`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;

use super::say;

/// Arguments of `dipbench operators`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand, Debug)]
enum Action {
    /// Write one PNG per task: x | A(x) | Aᵀ(A(x)), noise-free.
    Grid {
        /// Input image (256×256 RGB).
        #[arg(long)]
        input: PathBuf,
        /// Output folder.
        #[arg(long, default_value = "results/operators")]
        out: PathBuf,
        /// Motion-blur kernel file (adds the deblur_motion panel).
        #[arg(long)]
        kernel: Option<PathBuf>,
        /// Seed for masks.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

/// Writes the operator pictures.
pub fn run(a: Args) -> Result<i32> {
    let Action::Grid { input, out, kernel, seed } = a.action;
    for p in dipbench::measure::grid::<burn::backend::Flex>(&input, &out, kernel.as_deref(), seed, &Default::default())? {
        say(format_args!("wrote {}", p.display()))?;
    }
    Ok(0)
}
