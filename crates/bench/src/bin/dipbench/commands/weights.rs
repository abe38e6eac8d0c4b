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
    /// Download a checkpoint (or `all`) into the folder: the registry's addresses in order (after
    /// --mirror), a cut connection resumed, Google Drive's confirmation page followed; the file
    /// takes its name only once its keys and shapes (and published hash, where there is one)
    /// check out, and its sha256 is pinned. Present files are verified, not downloaded again.
    Fetch {
        /// Known checkpoint name (see `dipbench weights`) or `all`.
        name: String,
        /// A mirror tried first: the file is fetched from MIRROR/<file name> (e.g. a lab server
        /// for compute nodes without internet access).
        #[arg(long, env = "DIPBENCH_WEIGHTS_MIRROR")]
        mirror: Option<String>,
    },
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
        Some(Action::Fetch { name, mirror }) => {
            let list: Vec<&weights::KnownWeights> = if name == "all" { weights::KNOWN.iter().collect() } else { vec![weights::known(&name)?] };
            let fetcher = dipbench::download::Fetcher::default();
            for w in list {
                let bar = indicatif::ProgressBar::new(0);
                bar.set_style(
                    indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})").expect("valid template"),
                );
                bar.set_message(w.name.to_string());
                let r = weights::fetch(w, &dir, mirror.as_deref(), &fetcher, &mut |done, total| {
                    if let Some(t) = total {
                        bar.set_length(t);
                    }
                    bar.set_position(done);
                });
                bar.finish_and_clear();
                let (f, _) = r?;
                for (o, e) in &f.failed {
                    say(format_args!("{}: {o} failed: {e}", w.name))?;
                }
                say(format_args!("{}: {} (sha256 {}, from {}); keys and shapes of `{}` match", w.name, f.path.display(), f.sha256, f.origin, w.config))?;
            }
        }
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
