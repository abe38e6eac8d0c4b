//! `dipbench slurm`.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use dipbench::sweep::{SlurmRequest, slurm_script};

use super::say;
use crate::args::ExperimentArgs;

/// Arguments of `dipbench slurm`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    experiment: ExperimentArgs,
    /// Number of shards (array tasks).
    #[arg(long)]
    shards: usize,
    /// Backend of each task (cpu, cuda, wgpu).
    #[arg(long, default_value = "cuda")]
    device: String,
    /// GPUs per task.
    #[arg(long, default_value_t = 1)]
    gpus: usize,
    /// Wall-time limit per task (HH:MM:SS, D-HH:MM:SS, …).
    #[arg(long, default_value = "24:00:00")]
    time: String,
    /// Slurm partition.
    #[arg(long)]
    partition: Option<String>,
    /// Write the script here instead of printing it (an existing file needs --force).
    #[arg(long)]
    script: Option<PathBuf>,
    /// Replace an existing --script file.
    #[arg(long)]
    force: bool,
}

/// Writes or prints the script (after checking every value that goes into it).
pub fn run(a: Args) -> Result<i32> {
    let (_, out) = a.experiment.load()?;
    let req = SlurmRequest {
        experiment: a.experiment.experiment.clone(),
        out: out.clone(),
        shards: a.shards,
        device: a.device,
        gpus: a.gpus,
        time: a.time,
        partition: a.partition,
    };
    let text = slurm_script(&req)?;
    // Refused before anything is created.
    if let Some(p) = a.script.as_ref().filter(|p| p.exists() && !a.force) {
        bail!("{} exists; give --force to replace it", p.display());
    }
    // sbatch does not create the folder of --output; a missing one loses the logs.
    std::fs::create_dir_all(out.join("slurm")).with_context(|| format!("cannot create {}", out.join("slurm").display()))?;
    match a.script {
        Some(p) => {
            dipbench::pipeline::store::write_atomic(&p, text.as_bytes())?;
            say(format_args!("wrote {}; submit it with `sbatch {}`", p.display(), p.display()))?;
        }
        None => say(text.trim_end())?,
    }
    Ok(0)
}
