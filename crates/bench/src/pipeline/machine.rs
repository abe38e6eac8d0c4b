//! `machine.json` of a results folder: where and how each `dipbench run` measured its wall
//! times (CPU, cores, threads, jobs at once, random-stream version). Wall-time tables print it.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

/// Where and how a run measured its wall times (`machine.json` in the results folder, one entry
/// per `dipbench run` that ran jobs): the wall-time table is only meaningful with them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct MachineRecord {
    /// The CPU model (`/proc/cpuinfo` on Linux, else "unknown").
    pub cpu: String,
    /// Logical cores of the machine.
    pub cores: usize,
    /// Worker threads of the run (`--threads`).
    pub threads: usize,
    /// Jobs run at the same time (`--jobs`).
    pub jobs: usize,
    /// The random-stream version the results were drawn with.
    pub noise_version: u32,
}

pub(crate) fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| t.lines().find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, m)| m.trim().to_string())))
        .unwrap_or_else(|| "unknown".into())
}

/// Adds this run's [`MachineRecord`] to `machine.json` in `out` (kept once per distinct record).
pub fn record(out: &Path, opts: &super::RunOptions) -> Result<()> {
    let path = out.join("machine.json");
    let mut records: Vec<MachineRecord> = match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).with_context(|| format!("malformed {}", path.display()))?,
        Err(_) => vec![],
    };
    let threads = rayon::current_num_threads();
    let record = MachineRecord {
        cpu: cpu_model(),
        cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        threads,
        jobs: opts.jobs.unwrap_or(threads),
        noise_version: dipbench_operators::noise::NOISE_VERSION,
    };
    if !records.contains(&record) {
        records.push(record);
        super::store::write_atomic(&path, (serde_json::to_string_pretty(&records)? + "\n").as_bytes())?;
    }
    Ok(())
}

/// The records of `out` (none when the file is absent).
pub fn read(out: &Path) -> Result<Vec<MachineRecord>> {
    let path = out.join("machine.json");
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).with_context(|| format!("malformed {}", path.display())),
        Err(_) => Ok(vec![]),
    }
}
