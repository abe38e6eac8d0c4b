//! The benchmark pipeline: what a benchmark is ([`Benchmark`]) and the one runner that every
//! benchmark goes through ([`runner`]), on top of the results folder ([`store`]).
//!
//! A benchmark is a fixed, ordered list of jobs whose rows depend only on the experiment and the
//! job. The runner owns everything else: the folder's lock and its copy of the experiment, the
//! check that the folder holds one configuration, sharding, resume, fingerprints, batches,
//! parallel workers on one or several devices, atomic writes, and collecting the rows back for the
//! tables.

pub mod floats;
pub mod machine;
pub mod runner;
pub mod store;

use std::path::{Path, PathBuf};

use anyhow::Result;
use dipbench_nn::NnAutodiffBackend;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use runner::{RunOptions, RunSummary};

/// What one job produced: its rows and the files it writes beside them (paths relative to the
/// results folder: reconstructions, measurements), written before the job file, which marks the
/// job finished.
#[derive(Debug, Clone)]
pub struct JobOutput<R> {
    /// The rows.
    pub rows: Vec<R>,
    /// Extra files (relative path, contents).
    pub files: Vec<(PathBuf, Vec<u8>)>,
}

/// A benchmark (module documentation).
pub trait Benchmark: Sync {
    /// One unit of work.
    type Job: Clone + Send + Sync + std::fmt::Debug;
    /// One result row.
    type Row: Serialize + DeserializeOwned + Clone + Send + Sync;
    /// What a worker prepares once per device (networks, images).
    type Worker<B: NnAutodiffBackend>: Sync;

    /// The experiment the benchmark was made from.
    fn experiment(&self) -> &crate::experiment::Experiment;

    /// Every job, in a fixed order (the order shards are cut from).
    fn jobs(&self) -> Result<Vec<Self::Job>>;

    /// The job's identity: unique, a relative file path without extension (`/` separates
    /// folders).
    fn job_id(&self, job: &Self::Job) -> String;

    /// The fingerprint of the settings the job's rows depend on.
    fn fingerprint(&self, job: &Self::Job) -> Result<String>;

    /// Rows of a finished job.
    fn rows_per_job(&self, job: &Self::Job) -> usize;

    /// Relative cost: pending jobs run most expensive first.
    fn cost(&self, _job: &Self::Job) -> u64 {
        0
    }

    /// Jobs with equal keys may run in one batch ([`Benchmark::batch_size`] at most).
    fn batch_key(&self, _job: &Self::Job) -> Option<String> {
        None
    }

    /// Jobs per batch.
    fn batch_size(&self) -> usize {
        1
    }

    /// Prepares a worker on `device` for `pending`, the jobs this run will give the workers (a
    /// benchmark loads only what they need).
    fn prepare<B: NnAutodiffBackend>(&self, device: &B::Device, opts: &RunOptions, pending: &[Self::Job]) -> Result<Self::Worker<B>>;

    /// Runs a batch of jobs (sharing a batch key) and returns one output per job, in order.
    fn run_batch<B: NnAutodiffBackend>(&self, worker: &Self::Worker<B>, jobs: &[Self::Job], device: &B::Device) -> Result<Vec<JobOutput<Self::Row>>>;

    /// A one-line description of a job for the progress bar.
    fn describe(&self, job: &Self::Job) -> String {
        self.job_id(job)
    }

    /// Writes the tables of a finished experiment into `out`; returns the Markdown.
    fn write_tables(&self, rows: &[Self::Row], out: &Path) -> Result<String>;
}
