//! Running an experiment: one result file per job under `<out>/runs/`, written atomically
//! (temporary file + rename), so a killed sweep loses at most the jobs in flight and a rerun
//! skips every finished job. Jobs run in parallel on the rayon pool; each job's result depends
//! only on its own seed, never on the schedule of the others.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result, bail};
use dipbench_nn::NnAutodiffBackend;
use indicatif::{ProgressBar, ProgressStyle};

use crate::experiment::LoadedExperiment;
use crate::gmm::{self, GmmJob, GmmRow};

/// What `dipbench run` reports when it is done.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// Jobs in the experiment.
    pub total: usize,
    /// Jobs that were already finished and skipped.
    pub skipped: usize,
    /// Jobs run now.
    pub ran: usize,
    /// Wall time of this invocation, seconds.
    pub seconds: f64,
}

/// The file of one job's rows.
pub fn job_file(out: &Path, job: &GmmJob) -> PathBuf {
    out.join("runs").join(format!("{}.csv", job.id()))
}

/// Reads a job file's rows.
pub fn read_rows(path: &Path) -> Result<Vec<GmmRow>> {
    let mut rdr = csv::Reader::from_path(path).with_context(|| format!("cannot read {}", path.display()))?;
    rdr.deserialize().collect::<Result<Vec<GmmRow>, _>>().with_context(|| format!("malformed result file {}", path.display()))
}

/// Writes `rows` to `path` atomically: a reader (or a rerun after a kill) sees either no file or
/// the complete file.
pub fn write_rows_atomic(path: &Path, rows: &[GmmRow]) -> Result<()> {
    let tmp = path.with_extension("csv.tmp");
    {
        let mut w = csv::Writer::from_path(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
        for r in rows {
            w.serialize(r)?;
        }
        let mut inner = w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
        inner.flush()?;
        inner.sync_all().ok();
    }
    fs::rename(&tmp, path).with_context(|| format!("cannot move {} into place", tmp.display()))?;
    Ok(())
}

/// Whether the job at `path` is finished for this configuration. A file made by a different
/// configuration is an error, not silently mixed into the table.
fn finished(path: &Path, fingerprint: &str, methods: usize) -> Result<bool> {
    if !path.exists() {
        return Ok(false);
    }
    let rows = read_rows(path)?;
    if rows.iter().any(|r| r.config != fingerprint) {
        bail!(
            "{} was produced by a different configuration of this experiment (fingerprint {} ≠ {fingerprint}); \
             move the results folder away or choose another one with --out",
            path.display(),
            rows[0].config
        );
    }
    Ok(rows.len() == methods)
}

/// Options of `dipbench run`.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Show a progress bar.
    pub progress: bool,
    /// Jobs run at the same time (default: the number of worker threads).
    pub jobs: Option<usize>,
    /// Run only shard `i` of `n` (`(i, n)`, 0-based): jobs whose index in the experiment's
    /// fixed job order is i modulo n.
    pub shard: Option<(usize, usize)>,
    /// Image benchmark: read the images from this folder instead of `image.dataset`.
    pub dataset: Option<PathBuf>,
}

/// Runs `f` on every job of `pending` on `opts.jobs` worker threads (default: the number of
/// threads), with a progress bar over `total` jobs of which `done` are already finished.
/// Stops at the first error and returns it.
///
/// Jobs are pulled from a shared queue by plain worker threads, not rayon tasks: the tensor
/// backend already parallelises inside a job on the rayon pool, and a rayon worker waiting on
/// such an inner task would steal and start whole other jobs, interleaving them.
/// `f` receives the worker's index (for choosing one of several devices) and the job.
pub fn run_pool<J: Sync>(pending: &[J], total: usize, done: usize, opts: &RunOptions, f: impl Fn(usize, &J) -> Result<String> + Sync) -> Result<()> {
    let bar = if opts.progress { ProgressBar::new(total as u64) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} jobs, {eta} left  {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_position(done as u64);
    let workers = opts.jobs.unwrap_or_else(rayon::current_num_threads).clamp(1, pending.len().max(1));
    let next = AtomicUsize::new(0);
    let first_error = Mutex::new(None);
    std::thread::scope(|scope| {
        for worker in 0..workers {
            let (f, next, first_error, bar) = (&f, &next, &first_error, &bar);
            scope.spawn(move || loop {
                if first_error.lock().expect("lock").is_some() {
                    return;
                }
                let Some(job) = pending.get(next.fetch_add(1, Ordering::SeqCst)) else { return };
                match f(worker, job) {
                    Ok(msg) => {
                        bar.set_message(msg);
                        bar.inc(1);
                    }
                    Err(e) => {
                        first_error.lock().expect("lock").get_or_insert(e);
                    }
                }
            });
        }
    });
    bar.finish_and_clear();
    match first_error.into_inner().expect("lock") {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Whether job number `index` belongs to `shard` (`(i, n)`: every n-th job from the i-th).
pub fn in_shard(index: usize, shard: Option<(usize, usize)>) -> bool {
    shard.is_none_or(|(i, n)| index % n == i)
}

/// Runs every unfinished job (of this shard) of `exp` into `out`, on the experiment's
/// benchmark.
/// Worker w uses `devices[w % devices.len()]` (one or several GPUs of one kind).
pub fn run<B: NnAutodiffBackend>(exp: &LoadedExperiment, out: &Path, devices: &[B::Device], opts: &RunOptions) -> Result<RunSummary>
where
    B::Device: Sync,
{
    match exp.experiment.experiment.benchmark.as_str() {
        "image" => crate::image_bench::run::<B>(exp, out, devices, opts),
        _ => run_gmm::<B>(exp, out, devices, opts),
    }
}

/// Runs every unfinished job of a GMM experiment into `out`, longest first, `opts.jobs` at a time.
pub fn run_gmm<B: NnAutodiffBackend>(exp: &LoadedExperiment, out: &Path, devices: &[B::Device], opts: &RunOptions) -> Result<RunSummary>
where
    B::Device: Sync,
{
    let start = std::time::Instant::now();
    let grid = exp.experiment.gmm.as_ref().expect("validated gmm experiment");
    fs::create_dir_all(out.join("runs")).with_context(|| format!("cannot create {}", out.join("runs").display()))?;
    fs::copy(&exp.path, out.join("experiment.toml")).with_context(|| format!("cannot copy {} into {}", exp.path.display(), out.display()))?;
    let all = gmm::jobs(grid);
    let mut pending = vec![];
    for (index, job) in all.iter().enumerate() {
        if !in_shard(index, opts.shard) {
            continue;
        }
        let fp = gmm::fingerprint(exp, &job.budget);
        if !finished(&job_file(out, job), &fp, exp.experiment.methods.len())? {
            pending.push(*job);
        }
    }
    let mine = (0..all.len()).filter(|i| in_shard(*i, opts.shard)).count();
    let skipped = mine - pending.len();
    // Longest jobs first, so the last jobs to finish are short ones (better use of all cores).
    pending.sort_by_key(|j| std::cmp::Reverse((j.d * j.budget.steps, j.d_y)));
    tracing::info!(total = all.len(), skipped, to_run = pending.len(), out = %out.display(), "running {}", exp.experiment.experiment.name);
    if !pending.is_empty() {
        crate::table::record_machine(out, opts)?;
    }
    run_pool(&pending, all.len(), skipped, opts, |worker, job| {
        gmm::run_job::<B>(exp, job, &devices[worker % devices.len()]).and_then(|rows| write_rows_atomic(&job_file(out, job), &rows))?;
        Ok(job.id())
    })?;
    Ok(RunSummary { total: mine, skipped, ran: pending.len(), seconds: start.elapsed().as_secs_f64() })
}

/// All rows of the finished jobs of `exp` in `out`, in job order. Missing jobs are an error
/// naming how many are missing and the first.
pub fn collect_rows(exp: &LoadedExperiment, out: &Path) -> Result<Vec<GmmRow>> {
    let grid = exp.experiment.gmm.as_ref().expect("validated gmm experiment");
    let jobs = gmm::jobs(grid);
    let missing: Vec<&GmmJob> = jobs.iter().filter(|j| !job_file(out, j).exists()).collect();
    if let Some(first) = missing.first() {
        bail!(
            "{} of {} jobs have no results in {} (first: {}); run `dipbench run` to finish them",
            missing.len(),
            jobs.len(),
            out.join("runs").display(),
            first.id()
        );
    }
    let mut rows = vec![];
    for job in &jobs {
        rows.extend(read_rows(&job_file(out, job))?);
    }
    Ok(rows)
}
