//! `dipbench merge`.

use std::path::PathBuf;

use anyhow::Result;

use super::say;

/// Arguments of `dipbench merge`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Results folders to join.
    #[arg(required = true)]
    sources: Vec<PathBuf>,
    /// The merged folder.
    #[arg(long)]
    out: PathBuf,
}

/// Joins the folders.
pub fn run(a: Args) -> Result<i32> {
    let n = dipbench::sweep::merge(&a.sources, &a.out)?;
    say(format_args!(
        "merged {} folders into {} ({n} files copied); run `dipbench table EXPERIMENT --out {}` for the tables",
        a.sources.len(),
        a.out.display(),
        a.out.display()
    ))?;
    Ok(0)
}
