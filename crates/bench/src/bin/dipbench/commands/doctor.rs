//! `dipbench doctor`.

use std::path::{Path, PathBuf};

use anyhow::Result;
use dipbench::doctor::{Level, Setup, diagnose};
use dipbench::experiment::Experiment;

use super::say;

/// Arguments of `dipbench doctor`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The experiment to check for (without one: what this node has).
    experiment: Option<PathBuf>,
    /// Results folder (default: results/<experiment name>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Backend the run will use (cpu, cuda, wgpu).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// The dataset folder (default: $DIPBENCH_DATA/<dataset>, else data/<dataset>).
    #[arg(long)]
    dataset: Option<PathBuf>,
}

/// Prints one line per check; 1 when something blocks the run.
pub fn run(a: Args) -> Result<i32> {
    if !["cpu", "cuda", "wgpu"].contains(&a.device.as_str()) {
        anyhow::bail!("--device {:?}: one of cpu, cuda, wgpu", a.device);
    }
    let exp = a.experiment.as_deref().map(Experiment::load).transpose()?;
    let out = a.out.clone().or_else(|| exp.as_ref().map(|e| Path::new("results").join(&e.header.name)));
    let setup = Setup { device: a.device, checkpoints: dipbench::weights::checkpoint_dir(None), dataset: a.dataset, out };
    let findings = diagnose(exp.as_ref(), &setup);
    for f in &findings {
        say(f)?;
    }
    let blockers = findings.iter().filter(|f| f.level == Level::Blocker).count();
    if blockers > 0 {
        say(format_args!(
            "{blockers} blocker(s): this node cannot run {} yet",
            a.experiment.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "an experiment".into())
        ))?;
        Ok(1)
    } else {
        say(format_args!("ready{}", a.experiment.as_ref().map(|p| format!(" for {}", p.display())).unwrap_or_default()))?;
        Ok(0)
    }
}
