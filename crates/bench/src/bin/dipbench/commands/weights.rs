//! `dipbench weights`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;
use dipbench::weights;

use super::say;

/// Arguments of `dipbench weights`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    action: Option<Action>,
    /// Folder holding the checkpoints (default: $DIPBENCH_CHECKPOINTS, else checkpoints/).
    #[arg(long, global = true)]
    dir: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Action {
    /// Verify a checkpoint: every key and shape of its config, every stored tensor present and
    /// complete, then its sha256 (pinned beside the file on the first successful verification,
    /// checked afterwards).
    Verify {
        /// Known checkpoint name (see `dipbench weights`).
        name: String,
        /// The file (default: looked up in the checkpoint folder).
        #[arg(long)]
        path: Option<PathBuf>,
    },
}

/// Lists or verifies.
pub fn run(a: Args) -> Result<i32> {
    let dir = weights::checkpoint_dir(a.dir.as_deref());
    match a.action {
        None => say(weights::listing(&dir).trim_end())?,
        Some(Action::Verify { name, path }) => {
            let w = weights::known(&name)?;
            let path = match path {
                Some(p) => p,
                None => weights::locate(w, &dir)?,
            };
            match weights::verify(&path, w.config)? {
                weights::Verified::Pinned(h) => say(format_args!("{}: keys and shapes of `{}` match; sha256 {h} matches its pin", path.display(), w.config))?,
                weights::Verified::NewlyPinned(h) => say(format_args!(
                    "{}: keys and shapes of `{}` match; sha256 {h} pinned in {}",
                    path.display(),
                    w.config,
                    weights::sidecar(&path).display()
                ))?,
            }
        }
    }
    Ok(0)
}
