//! Cluster helpers: `dipbench slurm` writes an sbatch job-array script whose task i runs shard
//! i/N of an experiment; `dipbench merge` joins results folders of shards run apart.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// What `dipbench slurm` writes.
#[derive(Debug, Clone)]
pub struct SlurmRequest {
    /// The experiment file.
    pub experiment: PathBuf,
    /// Results folder shared by the shards.
    pub out: PathBuf,
    /// Number of shards (array tasks).
    pub shards: usize,
    /// `--device` of each task (`cuda` on GPU nodes).
    pub device: String,
    /// GPUs per task (0 = none requested).
    pub gpus: usize,
    /// Wall-time limit per task (`HH:MM:SS`).
    pub time: String,
    /// Partition, if any.
    pub partition: Option<String>,
}

/// The sbatch script: a job array of `shards` tasks, task i running shard i/N into the shared
/// results folder (resumable: a requeued task skips its finished jobs). The tables are written by
/// `dipbench table` once every task is done (the script's last comment gives the command).
pub fn slurm_script(req: &SlurmRequest) -> Result<String> {
    if req.shards == 0 {
        bail!("--shards must be at least 1");
    }
    let name = req.experiment.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "experiment".into());
    let (exp, out) = (req.experiment.display(), req.out.display());
    let mut s = String::from("#!/bin/bash\n");
    s.push_str(&format!("#SBATCH --job-name=dipbench-{name}\n#SBATCH --array=0-{}\n#SBATCH --time={}\n", req.shards - 1, req.time));
    s.push_str(&format!("#SBATCH --output={out}/slurm/%A_%a.log\n#SBATCH --requeue\n"));
    if req.gpus > 0 {
        s.push_str(&format!("#SBATCH --gres=gpu:{}\n", req.gpus));
    }
    if let Some(p) = &req.partition {
        s.push_str(&format!("#SBATCH --partition={p}\n"));
    }
    s.push_str("set -euo pipefail\n");
    s.push_str(&format!(
        "dipbench run {exp} --out {out} --device {} --shard \"${{SLURM_ARRAY_TASK_ID}}/{}\" --no-progress\n",
        req.device, req.shards
    ));
    s.push_str(&format!("# When every task is done:  dipbench table {exp} --out {out}\n"));
    Ok(s)
}

fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = vec![];
    if !dir.exists() {
        return Ok(out);
    }
    for e in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let p = e?.path();
        if p.is_dir() {
            out.extend(files_under(&p)?);
        } else if !p.to_string_lossy().ends_with(".tmp") {
            out.push(p);
        }
    }
    Ok(out)
}

/// Copies the job files (`runs/`) and images (`images/`) of every `source` folder into `out`.
/// A job file present in two folders must be identical (the same job run twice gives the same
/// row, up to its wall time); otherwise the merge stops naming both files. Returns the number of
/// files copied.
pub fn merge(sources: &[PathBuf], out: &Path) -> Result<usize> {
    let mut copied = 0;
    for src in sources {
        if !src.join("runs").is_dir() {
            bail!("{}: no runs/ folder (not a dipbench results folder)", src.display());
        }
        for sub in ["runs", "images"] {
            for file in files_under(&src.join(sub))? {
                let rel = file.strip_prefix(src).expect("under the source");
                let dest = out.join(rel);
                if dest.exists() {
                    if sub == "runs" && !same_job(&file, &dest)? {
                        bail!("{} and {} hold different results for the same job", file.display(), dest.display());
                    }
                    continue;
                }
                std::fs::create_dir_all(dest.parent().expect("in a folder"))?;
                let tmp = dest.with_extension("merge.tmp");
                std::fs::copy(&file, &tmp).with_context(|| format!("cannot copy {} to {}", file.display(), tmp.display()))?;
                std::fs::rename(&tmp, &dest)?;
                copied += 1;
            }
        }
        let exp = src.join("experiment.toml");
        if exp.exists() && !out.join("experiment.toml").exists() {
            std::fs::copy(&exp, out.join("experiment.toml"))?;
        }
    }
    Ok(copied)
}

/// Whether two job files hold the same results, wall time aside.
fn same_job(a: &Path, b: &Path) -> Result<bool> {
    let strip = |p: &Path| -> Result<String> {
        let text = std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
        Ok(text.lines().filter(|l| !l.trim_start().starts_with("\"seconds\"")).collect::<Vec<_>>().join("\n"))
    };
    if a.extension().is_some_and(|e| e == "csv") {
        // GMM job files: compare every column but the last (seconds).
        let cols = |p: &Path| -> Result<Vec<String>> {
            Ok(std::fs::read_to_string(p)?.lines().map(|l| l.rsplit_once(',').map_or(l, |(a, _)| a).to_string()).collect())
        };
        return Ok(cols(a)? == cols(b)?);
    }
    Ok(strip(a)? == strip(b)?)
}
