//! `dipbench check`.

use std::path::PathBuf;

use anyhow::Result;
use dipbench::tables::check::{Tolerance, check};

use super::say;

/// Arguments of `dipbench check`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Results folder (or its table.csv).
    results: PathBuf,
    /// Baseline results folder or table.csv.
    #[arg(long)]
    against: PathBuf,
    /// Absolute tolerance.
    #[arg(long, default_value_t = 0.0)]
    tol: f64,
    /// Relative tolerance (times |baseline|).
    #[arg(long, default_value_t = 0.0)]
    rel: f64,
}

/// Compares the tables; exit status 1 when they differ beyond tolerance.
pub fn run(a: Args) -> Result<i32> {
    if !(a.tol.is_finite() && a.tol >= 0.0 && a.rel.is_finite() && a.rel >= 0.0) {
        anyhow::bail!("--tol {} / --rel {}: tolerances must be finite and ≥ 0", a.tol, a.rel);
    }
    let report = check(&a.results, &a.against, Tolerance { abs: a.tol, rel: a.rel })?;
    say(report.render(&a.results, &a.against))?;
    Ok(if report.differences.is_empty() { 0 } else { 1 })
}
