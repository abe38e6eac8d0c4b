//! Running and collecting a benchmark's jobs (module documentation of [`crate::pipeline`]).
//!
//! `run`: lock the folder, check that it holds this configuration, pick this shard's unfinished
//! jobs (every existing job file checked), run them in batches on worker threads (one device
//! each, round robin), write each job's files and then its job file atomically, and install the
//! experiment copy once the checks have passed. A killed run loses only the jobs in flight; a
//! rerun skips finished jobs. `collect` reads every job file back with the same checks.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result, bail};
use dipbench_nn::NnAutodiffBackend;
use indicatif::{ProgressBar, ProgressStyle};

use super::Benchmark;
use super::store::{self, Expect, FolderLock};
use crate::experiment::Experiment;

/// What `dipbench run` reports when it is done.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// Jobs of this shard.
    pub total: usize,
    /// Jobs already finished and skipped.
    pub skipped: usize,
    /// Jobs run now.
    pub ran: usize,
    /// Wall time of this invocation, seconds.
    pub seconds: f64,
}

/// Options of `dipbench run`.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Show a progress bar.
    pub progress: bool,
    /// Workers running jobs at the same time (default: the number of worker threads).
    pub jobs: Option<usize>,
    /// Run only shard `i` of `n` (`(i, n)`, 0-based): jobs whose index in the fixed job order is
    /// i modulo n.
    pub shard: Option<(usize, usize)>,
    /// Read the benchmark's data (images) from this folder instead of the experiment's.
    pub dataset: Option<PathBuf>,
}

/// Whether job number `index` belongs to `shard` (`(i, n)`: every n-th job from the i-th).
pub fn in_shard(index: usize, shard: Option<(usize, usize)>) -> bool {
    shard.is_none_or(|(i, n)| index % n == i)
}

/// Refuses a folder whose experiment copy is of another configuration (anything but the grid's
/// extent differs); a folder without a copy is new.
pub fn check_folder_configuration(experiment: &Experiment, out: &Path) -> Result<()> {
    let copy = out.join("experiment.toml");
    if !copy.exists() {
        return Ok(());
    }
    let existing = Experiment::load(&copy).with_context(|| format!("the results folder {} holds an experiment file that no longer loads", out.display()))?;
    if existing.folder_fingerprint() != experiment.folder_fingerprint() {
        bail!(
            "{} holds results of a different configuration ({}; compare it with {}): results are never mixed. \
             Choose another folder with --out, or move this one away",
            out.display(),
            copy.display(),
            experiment.path.display()
        );
    }
    Ok(())
}

/// The finished rows of `job` in `out` (`None` when it has no job file yet), checked.
fn finished<K: Benchmark>(bench: &K, out: &Path, job: &K::Job) -> Result<Option<Vec<K::Row>>> {
    let (id, fp) = (bench.job_id(job), bench.fingerprint(job)?);
    store::read_job(out, Expect { job: &id, fingerprint: &fp, rows: bench.rows_per_job(job) })
}

/// Runs every unfinished job of this shard of `bench` into `out`. Worker w uses
/// `devices[w % devices.len()]`.
pub fn run<K: Benchmark, B: NnAutodiffBackend>(bench: &K, out: &Path, devices: &[B::Device], opts: &RunOptions) -> Result<RunSummary>
where
    B::Device: Sync,
{
    let start = std::time::Instant::now();
    let experiment = bench.experiment();
    let _lock = FolderLock::acquire(out, opts.shard)?;
    check_folder_configuration(experiment, out)?;
    let all = bench.jobs()?;
    let mut pending = vec![];
    let mut mine = 0;
    for (index, job) in all.iter().enumerate() {
        if in_shard(index, opts.shard) {
            mine += 1;
            if finished(bench, out, job)?.is_none() {
                pending.push(job.clone());
            }
        }
    }
    // Every check passed: the folder is this experiment's.
    store::install_experiment(&experiment.path, out)?;
    let skipped = mine - pending.len();
    pending.sort_by_key(|j| std::cmp::Reverse(bench.cost(j)));
    let batches = batches(bench, pending);
    tracing::info!(total = mine, skipped, out = %out.display(), "running {}", experiment.header.name);
    if !batches.is_empty() {
        super::machine::record(out, opts)?;
        let pending: Vec<K::Job> = batches.iter().flatten().cloned().collect();
        let workers: Vec<K::Worker<B>> = devices.iter().map(|d| bench.prepare::<B>(d, opts, &pending)).collect::<Result<_>>()?;
        run_pool(&batches, mine, skipped, opts, |worker, batch| {
            let k = worker % devices.len();
            let outputs = bench.run_batch::<B>(&workers[k], batch, &devices[k])?;
            for (job, output) in batch.iter().zip(outputs) {
                for (rel, bytes) in &output.files {
                    store::write_atomic(&out.join(rel), bytes)?;
                }
                store::write_job(out, &bench.job_id(job), &bench.fingerprint(job)?, &output.rows)?;
            }
            Ok((batch.len(), batch.iter().map(|j| bench.describe(j)).collect::<Vec<_>>().join(", ")))
        })?;
    }
    let ran = mine - skipped;
    Ok(RunSummary { total: mine, skipped, ran, seconds: start.elapsed().as_secs_f64() })
}

/// Groups pending jobs into batches: consecutive jobs (in cost order) with the same batch key, at
/// most [`Benchmark::batch_size`] each.
fn batches<K: Benchmark>(bench: &K, pending: Vec<K::Job>) -> Vec<Vec<K::Job>> {
    let size = bench.batch_size().max(1);
    let mut groups: Vec<(Option<String>, Vec<K::Job>)> = vec![];
    for job in pending {
        let key = bench.batch_key(&job);
        match groups.iter_mut().find(|(k, g)| key.is_some() && *k == key && g.len() < size) {
            Some((_, g)) => g.push(job),
            None => groups.push((key, vec![job])),
        }
    }
    groups.into_iter().map(|(_, g)| g).collect()
}

/// Every row of `bench`'s jobs in `out`, in job order, each job file checked. Missing jobs are an
/// error naming how many and the first.
pub fn collect<K: Benchmark>(bench: &K, out: &Path) -> Result<Vec<K::Row>> {
    check_folder_configuration(bench.experiment(), out)?;
    let jobs = bench.jobs()?;
    let mut rows = vec![];
    let mut missing = vec![];
    for job in &jobs {
        match finished(bench, out, job)? {
            Some(r) => rows.extend(r),
            None => missing.push(bench.job_id(job)),
        }
    }
    if let Some(first) = missing.first() {
        bail!(
            "{} of {} jobs have no results in {} (first: {first}); run `dipbench run` (every shard) to finish them",
            missing.len(),
            jobs.len(),
            out.join("runs").display()
        );
    }
    Ok(rows)
}

/// The rows of the jobs of `bench` that have finished in `out` (each job file checked), in job
/// order, and the number of jobs without results: for pictures of a sweep still in progress.
pub fn collect_available<K: Benchmark>(bench: &K, out: &Path) -> Result<(Vec<K::Row>, usize)> {
    check_folder_configuration(bench.experiment(), out)?;
    let mut rows = vec![];
    let mut missing = 0;
    for job in &bench.jobs()? {
        match finished(bench, out, job)? {
            Some(r) => rows.extend(r),
            None => missing += 1,
        }
    }
    Ok((rows, missing))
}

/// Runs `f` on every batch on `opts.jobs` worker threads (default: the number of threads), with
/// a progress bar over `total` jobs of which `done` are finished. Stops at the first error and
/// returns it. `f` receives the worker's index and the batch, and returns the number of jobs it
/// finished and a message.
///
/// Batches are pulled from a shared queue by plain worker threads, not rayon tasks: the tensor
/// backend already parallelises inside a job on the rayon pool, and a rayon worker waiting on
/// such an inner task would steal and start whole other jobs, interleaving them.
pub fn run_pool<J: Sync>(batches: &[J], total: usize, done: usize, opts: &RunOptions, f: impl Fn(usize, &J) -> Result<(usize, String)> + Sync) -> Result<()> {
    let bar = if opts.progress { ProgressBar::new(total as u64) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} jobs, {eta} left  {msg}").expect("valid template").progress_chars("=> "),
    );
    bar.set_position(done as u64);
    let workers = opts.jobs.unwrap_or_else(rayon::current_num_threads).clamp(1, batches.len().max(1));
    let next = AtomicUsize::new(0);
    let first_error = Mutex::new(None);
    std::thread::scope(|scope| {
        for worker in 0..workers {
            let (f, next, first_error, bar) = (&f, &next, &first_error, &bar);
            scope.spawn(move || {
                loop {
                    if first_error.lock().expect("lock").is_some() {
                        return;
                    }
                    let Some(batch) = batches.get(next.fetch_add(1, Ordering::SeqCst)) else { return };
                    match f(worker, batch) {
                        Ok((n, msg)) => {
                            bar.set_message(msg);
                            bar.inc(n as u64);
                        }
                        Err(e) => {
                            first_error.lock().expect("lock").get_or_insert(e);
                        }
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
