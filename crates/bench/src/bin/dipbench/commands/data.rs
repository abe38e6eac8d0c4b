//! `dipbench data`: prepare and check the registered datasets.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;
use dipbench::{datasets, prepare};
use indicatif::{ProgressBar, ProgressStyle};

use super::say;

/// Arguments of `dipbench data`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand, Debug)]
enum Action {
    /// Build a dataset folder from files you have: the protocol's selection (and, for FFHQ from
    /// the 1024² originals, the resize to 256²), then the SHA256SUMS list the registry checks.
    /// Resumable: files already in the folder are kept.
    Prepare {
        /// Registered dataset (see datasets.toml): ffhq256-1k, imagenet256-1k, ffhq256-100, imagenet256-100.
        name: String,
        /// Where the images are: a folder (searched recursively), a .zip or a .tar archive.
        #[arg(long)]
        from: PathBuf,
        /// The dataset folder to write (default: $DIPBENCH_DATA/NAME, else data/NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Check a dataset folder as a run does before its first job: every file present, its
    /// sha256 as listed, decodable and 256² after preprocessing.
    Check {
        /// Registered dataset.
        name: String,
        /// The dataset folder (default: $DIPBENCH_DATA/NAME, else data/NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// The side of the registered image datasets (every paper table is at 256²).
const SIDE: usize = 256;

fn entry(name: &str) -> Result<datasets::DatasetEntry> {
    let reg = datasets::registry()?;
    reg.get(name).cloned().with_context(|| format!("unknown dataset `{name}` (registered: {})", reg.keys().cloned().collect::<Vec<_>>().join(", ")))
}

/// Prepares or checks.
pub fn run(a: Args) -> Result<i32> {
    match a.action {
        Action::Prepare { name, from, dir } => {
            let e = entry(&name)?;
            let dest = datasets::folder_for(&name, dir.as_deref());
            let bar = ProgressBar::new(e.count.unwrap_or(0) as u64);
            bar.set_style(ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({eta})").expect("valid template"));
            bar.set_message(format!("preparing {name}"));
            let r = prepare::prepare(&name, &e, &from, &dest, SIDE, &mut |done, _| bar.set_position(done as u64));
            bar.finish_and_clear();
            let r = r?;
            say(format_args!(
                "{name}: {} copied, {} resized, {} already present, {} skipped as too small; {} written; the registry's check passes ({})",
                r.copied,
                r.resized,
                r.kept,
                r.too_small,
                prepare::DIGEST_LIST,
                r.folder.display()
            ))?;
        }
        Action::Check { name, dir } => {
            let e = entry(&name)?;
            let folder = datasets::folder_for(&name, dir.as_deref());
            let n = prepare::check(&name, &e, &folder, SIDE)?;
            say(format_args!("{name}: {n} images in {} present, listed with the right sha256, decodable, {SIDE}² after preprocessing", folder.display()))?;
        }
    }
    Ok(0)
}
