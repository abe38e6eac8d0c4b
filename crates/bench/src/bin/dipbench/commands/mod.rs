//! One module per command: its arguments (`Args`) and its handler (`run`).

pub mod bench;
pub mod check;
pub mod data;
pub mod doctor;
pub mod figures;
pub mod grid;
pub mod measure;
pub mod merge;
pub mod model;
pub mod operators;
pub mod run;
pub mod score;
pub mod slurm;
pub mod table;
pub mod weights;

use std::fmt::Display;
use std::io::Write as _;

use anyhow::{Context, Result};

use crate::args::{Cli, Command};

/// Runs the command of `cli`; returns the exit status (0, or 1 for a failed check).
pub fn dispatch(cli: Cli) -> Result<i32> {
    if let Some(n) = cli.threads {
        if n == 0 {
            anyhow::bail!("--threads 0: give at least one thread");
        }
        rayon::ThreadPoolBuilder::new().num_threads(n).build_global().context("cannot set up the thread pool")?;
    }
    match cli.command {
        Command::Run(a) => run::run(a),
        Command::Table(a) => table::run(a),
        Command::Check(a) => check::run(a),
        Command::Merge(a) => merge::run(a),
        Command::Slurm(a) => slurm::run(a),
        Command::Grid(a) => grid::run(a),
        Command::Figures(a) => figures::run(a),
        Command::Weights(a) => weights::run(a),
        Command::Data(a) => data::run(a),
        Command::Doctor(a) => doctor::run(a),
        Command::Model(a) => model::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Measure(a) => measure::run(a),
        Command::Score(a) => score::run(a),
        Command::Operators(a) => operators::run(a),
    }
}

/// Writes `text` and a newline to standard output. When the reader has gone (`dipbench … |
/// head`), the process ends quietly with status 0 instead of panicking like `println!`.
pub fn say(text: impl Display) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => Err(e).context("cannot write to standard output"),
    }
}
