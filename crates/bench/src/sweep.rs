//! Cluster helpers: `dipbench slurm` writes an sbatch job-array script whose task i runs shard
//! i/N of an experiment; `dipbench merge` joins results folders of shards run apart.
//!
//! The script is built safely: every value that reaches it is checked against the form sbatch
//! expects (a wall time, a partition name, a known backend), and every path is quoted, so a
//! folder name with a space or a shell character stays one word and runs nothing.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::benchmarks::gmm::GmmBenchmark;
use crate::benchmarks::image::ImageBenchmark;
use crate::experiment::{Experiment, Kind};
use crate::pipeline::{Benchmark, store};

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
    /// Wall-time limit per task (sbatch `--time`: `MM`, `MM:SS`, `HH:MM:SS`, `D-HH`, `D-HH:MM`,
    /// `D-HH:MM:SS`).
    pub time: String,
    /// Partition, if any.
    pub partition: Option<String>,
}

/// The backends `--device` may name in a script (the nodes' binary decides which it has).
const DEVICES: &[&str] = &["cpu", "cuda", "wgpu"];

/// Whether `t` is one of sbatch's `--time` forms.
fn is_slurm_time(t: &str) -> bool {
    let numbers = |s: &str, max_parts: usize| {
        let parts: Vec<&str> = s.split(':').collect();
        !s.is_empty() && parts.len() <= max_parts && parts.iter().all(|p| !p.is_empty() && p.len() <= 4 && p.chars().all(|c| c.is_ascii_digit()))
    };
    match t.split_once('-') {
        Some((days, rest)) => numbers(days, 1) && numbers(rest, 3),
        None => numbers(t, 3),
    }
}

/// Quotes `s` as one word for a POSIX shell: `'…'`, with every `'` written `'\''`.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A path as text, refused when it cannot go into a script (not UTF-8, a newline, or — in the
/// `#SBATCH` lines, which sbatch reads without a shell — a double quote).
fn script_path(flag: &str, p: &Path) -> Result<String> {
    let s = p.to_str().with_context(|| format!("{flag} {}: not valid UTF-8", p.display()))?;
    if s.contains(['\n', '\r', '"']) {
        bail!("{flag} {s:?}: a path for a batch script may not contain a newline or a double quote");
    }
    Ok(s.to_string())
}

/// The sbatch script: a job array of `shards` tasks, task i running shard i/N into the shared
/// results folder (resumable: a requeued task skips its finished jobs). The tables are written by
/// `dipbench table` once every task is done (the script's last comment gives the command). The
/// binary is `$DIPBENCH` when set, else `dipbench` from `PATH`.
pub fn slurm_script(req: &SlurmRequest) -> Result<String> {
    if req.shards == 0 || req.shards > 100_000 {
        bail!("--shards {}: must be in 1..=100000", req.shards);
    }
    if !is_slurm_time(&req.time) {
        bail!("--time {:?}: not a Slurm wall time (HH:MM:SS, D-HH:MM:SS, MM, …)", req.time);
    }
    if let Some(p) = &req.partition
        && !crate::experiment::is_safe_name(p)
    {
        bail!("--partition {p:?}: a partition name is letters, digits, `.`, `_` and `-`");
    }
    if !DEVICES.contains(&req.device.as_str()) {
        bail!("--device {:?}: one of {}", req.device, DEVICES.join(", "));
    }
    if req.gpus > 64 {
        bail!("--gpus {}: more than 64 GPUs per task", req.gpus);
    }
    let name = req.experiment.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let name = if crate::experiment::is_safe_name(&name) { name } else { "experiment".into() };
    let exp = script_path("the experiment", &req.experiment)?;
    let out = script_path("--out", &req.out)?;
    let (q_exp, q_out) = (shell_quote(&exp), shell_quote(&out));
    let mut s = String::from("#!/bin/bash\n");
    s.push_str(&format!("#SBATCH --job-name=dipbench-{name}\n#SBATCH --array=0-{}\n#SBATCH --time={}\n", req.shards - 1, req.time));
    s.push_str(&format!("#SBATCH --output=\"{out}/slurm/%A_%a.log\"\n#SBATCH --requeue\n"));
    if req.gpus > 0 {
        s.push_str(&format!("#SBATCH --gres=gpu:{}\n", req.gpus));
    }
    if let Some(p) = &req.partition {
        s.push_str(&format!("#SBATCH --partition={p}\n"));
    }
    s.push_str("set -euo pipefail\n");
    // The node is checked first: a missing library, checkpoint or dataset stops the task here.
    s.push_str(&format!("\"${{DIPBENCH:-dipbench}}\" doctor {q_exp} --out {q_out} --device {}\n", req.device));
    s.push_str(&format!(
        "\"${{DIPBENCH:-dipbench}}\" run {q_exp} --out {q_out} --device {} --shard \"${{SLURM_ARRAY_TASK_ID}}/{}\" --no-progress\n",
        req.device, req.shards
    ));
    s.push_str(&format!("# When every task is done:  dipbench table {q_exp} --out {q_out}\n"));
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
    out.sort();
    Ok(out)
}

/// The experiment copy of results folder `dir` (`None` when it has none).
fn folder_experiment(dir: &Path) -> Result<Option<Experiment>> {
    let copy = dir.join("experiment.toml");
    if !copy.exists() {
        return Ok(None);
    }
    Experiment::load(&copy).map(Some).with_context(|| format!("{} holds an experiment file that no longer loads", dir.display()))
}

/// Copies the job files (`runs/`) and images (`images/`) of every `source` folder into `out`,
/// each file atomically. Every folder (sources and `out`) must hold the same configuration (its
/// `experiment.toml`); every job file of a source is checked as `run` and `table` check them
/// (complete, unedited, of a job of that experiment, with its fingerprint); a job present in two
/// folders must hold the same rows, wall time aside (the same job run twice gives the same rows);
/// otherwise the merge stops naming the files. Returns the number of files copied.
pub fn merge(sources: &[PathBuf], out: &Path) -> Result<usize> {
    let mut experiments = vec![];
    let mut first: Option<(String, PathBuf)> = None;
    for dir in sources.iter().chain(std::iter::once(&out.to_path_buf())) {
        let is_source = dir.as_path() != out;
        if is_source && !dir.join("runs").is_dir() {
            bail!("{}: no runs/ folder (not a dipbench results folder)", dir.display());
        }
        let exp = match folder_experiment(dir)? {
            Some(e) => e,
            None if is_source => bail!("{}: no experiment.toml (not a dipbench results folder)", dir.display()),
            None => continue,
        };
        let fp = exp.folder_fingerprint();
        match &first {
            None => first = Some((fp, dir.clone())),
            Some((f, first_dir)) if *f != fp => bail!(
                "{} and {} hold results of different configurations (compare their experiment.toml): results are never mixed",
                first_dir.display(),
                dir.display()
            ),
            _ => {}
        }
        if is_source {
            experiments.push((dir.clone(), exp));
        }
    }
    let _lock = store::FolderLock::acquire(out, None)?;
    let mut copied = 0;
    for (src, exp) in &experiments {
        copied += match &exp.kind {
            Kind::Gmm(g) => merge_jobs(&GmmBenchmark::new(exp, g), src, out)?,
            Kind::Image(img) => merge_jobs(&ImageBenchmark::for_results(exp, img, src, None)?, src, out)?,
        };
        for file in files_under(&src.join("images"))?.into_iter().chain([src.join("images.json")].into_iter().filter(|p| p.is_file())) {
            let dest = out.join(file.strip_prefix(src).expect("under the source"));
            if !dest.exists() {
                let bytes = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
                store::write_atomic(&dest, &bytes)?;
                copied += 1;
            }
        }
    }
    // The output keeps its own experiment file (the configurations were checked equal; its grid
    // may be the larger one); a new output gets the first source's.
    if let Some((src, _)) = experiments.first().filter(|_| !out.join("experiment.toml").exists()) {
        store::install_experiment(&src.join("experiment.toml"), out)?;
    }
    Ok(copied)
}

/// Copies the checked job files of `bench` from `src` to `out` (module documentation of
/// [`merge`]); a file under `src/runs` that is no job of the experiment is refused.
fn merge_jobs<K: Benchmark>(bench: &K, src: &Path, out: &Path) -> Result<usize> {
    let jobs = bench.jobs()?;
    let known: std::collections::HashSet<PathBuf> = jobs.iter().map(|j| store::job_path(src, &bench.job_id(j))).collect();
    if let Some(stray) = files_under(&src.join("runs"))?.into_iter().find(|f| !known.contains(f)) {
        bail!("{}: not a job file of the experiment in {} (renamed or copied by hand?); move it away", stray.display(), src.join("experiment.toml").display());
    }
    let mut copied = 0;
    for job in &jobs {
        let (id, fingerprint) = (bench.job_id(job), bench.fingerprint(job)?);
        let expect = store::Expect { job: &id, fingerprint: &fingerprint, rows: bench.rows_per_job(job) };
        let Some(rows) = store::read_job::<K::Row>(src, expect)? else { continue };
        match store::read_job::<K::Row>(out, expect)? {
            Some(existing) if without_seconds(&rows)? != without_seconds(&existing)? => {
                bail!("{} and {} hold different results for the same job", store::job_path(src, &id).display(), store::job_path(out, &id).display())
            }
            Some(_) => {}
            None => {
                let file = store::job_path(src, &id);
                store::write_atomic(&store::job_path(out, &id), &std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?)?;
                copied += 1;
            }
        }
    }
    Ok(copied)
}

/// Rows as JSON without their wall time (`seconds`), for comparing two runs of a job.
fn without_seconds<R: serde::Serialize>(rows: &[R]) -> Result<Vec<Value>> {
    rows.iter()
        .map(|r| {
            let mut v = serde_json::to_value(r)?;
            if let Value::Object(o) = &mut v {
                o.remove("seconds");
            }
            Ok(v)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slurm_times_are_recognised() {
        for t in ["30", "30:00", "24:00:00", "2-00", "2-12:00", "1-00:00:00"] {
            assert!(is_slurm_time(t), "{t}");
        }
        for t in ["", "1:00:00 x", "$(x)", "1::0", "a-1", "1-", "1:2:3:4"] {
            assert!(!is_slurm_time(t), "{t}");
        }
    }

    #[test]
    fn quoted_words_survive_the_shell() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
