//! The results folder on disk: job files, atomic writes, the writer lock and the folder's copy of
//! its experiment. Every function that reads a job file checks it the same way (readable,
//! complete, digest, identity, fingerprint), and every error names the file.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

/// Version of the job-file format.
pub const JOB_FORMAT: u32 = 1;

/// One job's results as stored in `runs/<job id>.json`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct JobFile<R> {
    /// [`JOB_FORMAT`].
    pub format: u32,
    /// The job's identity (its file name without `.json`).
    pub job: String,
    /// The fingerprint of the settings the rows depend on.
    pub fingerprint: String,
    /// The rows.
    pub rows: Vec<R>,
    /// SHA-256 (hex) of the rows' canonical JSON.
    pub sha256: String,
}

/// The job file of `job` under `out`.
pub fn job_path(out: &Path, job: &str) -> PathBuf {
    out.join("runs").join(format!("{job}.json"))
}

fn digest<R: Serialize>(rows: &[R]) -> Result<String> {
    let bytes = serde_json::to_vec(rows)?;
    Ok(format!("{:x}", Sha256::digest(&bytes)))
}

/// A temporary name beside `path`, unique to this process and thread, so that two workers
/// writing the same file never rename each other's.
pub fn unique_tmp(path: &Path) -> PathBuf {
    let tid = format!("{:?}", std::thread::current().id()).chars().filter(char::is_ascii_digit).collect::<String>();
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.{}-{tid}.tmp", std::process::id()))
}

/// Writes `bytes` to `path` atomically (temporary file, flush, rename): a reader, or a rerun after
/// a kill, sees either the old file or the complete new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let tmp = unique_tmp(path);
    {
        let mut f = std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
        f.sync_all().ok();
    }
    std::fs::rename(&tmp, path).with_context(|| format!("cannot move {} into place as {}", tmp.display(), path.display()))
}

/// Writes the job file of `job` atomically.
pub fn write_job<R: Serialize + Clone>(out: &Path, job: &str, fingerprint: &str, rows: &[R]) -> Result<()> {
    let file = JobFile { format: JOB_FORMAT, job: job.to_string(), fingerprint: fingerprint.to_string(), rows: rows.to_vec(), sha256: digest(rows)? };
    write_atomic(&job_path(out, job), &serde_json::to_vec_pretty(&file)?)
}

/// What a job file must be for the job to count as finished.
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    /// The job's identity.
    pub job: &'a str,
    /// The fingerprint of the experiment's settings for that job.
    pub fingerprint: &'a str,
    /// How many rows the job has.
    pub rows: usize,
}

/// Reads and checks the job file of `expect.job`: `Ok(None)` when there is none; an error naming
/// the file when it is unreadable, incomplete, edited (digest), another job's, or made by a
/// different configuration.
pub fn read_job<R: DeserializeOwned + Serialize>(out: &Path, expect: Expect<'_>) -> Result<Option<Vec<R>>> {
    let path = job_path(out, expect.job);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let file: JobFile<R> = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a complete job file (damaged or cut short); delete it to rerun the job", path.display()))?;
    if file.format != JOB_FORMAT {
        bail!("{}: job-file format {} (this dipbench writes {JOB_FORMAT})", path.display(), file.format);
    }
    if file.job != expect.job {
        bail!("{} holds the results of job `{}`, not of `{}`; it was renamed or copied by hand", path.display(), file.job, expect.job);
    }
    if digest(&file.rows)? != file.sha256 {
        bail!("{}: the rows do not match their SHA-256 (the file was edited); delete it to rerun the job", path.display());
    }
    if file.fingerprint != expect.fingerprint {
        bail!(
            "{} was produced by a different configuration of this experiment (fingerprint {} ≠ {}); \
             move the results folder away or choose another one with --out",
            path.display(),
            file.fingerprint,
            expect.fingerprint
        );
    }
    if file.rows.len() != expect.rows {
        bail!("{}: {} rows where the job has {}; delete it to rerun the job", path.display(), file.rows.len(), expect.rows);
    }
    Ok(Some(file.rows))
}

/// The writer lock of a results folder (`.dipbench.lock`, or `.dipbench.lock.shard-I-of-N` for
/// shard I/N, so that the shards of a job array can write one folder side by side), holding the
/// writer's process id and host; released when dropped.
#[derive(Debug)]
pub struct FolderLock {
    path: PathBuf,
    owner: String,
}

/// Whether process `pid` is alive (Linux: `/proc/<pid>`; elsewhere assumed alive).
fn process_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") { Path::new("/proc").join(pid.to_string()).exists() } else { true }
}

/// This machine's host name (`/proc/sys/kernel/hostname`, else `$HOSTNAME`, else `localhost`).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty() && !h.contains(char::is_whitespace))
        .unwrap_or_else(|| "localhost".into())
}

impl FolderLock {
    /// Takes the lock of `out` for `shard` (creating the folder), or fails naming the process and
    /// host that hold it. The lock appears whole or not at all (written aside, then hard-linked
    /// into place, which fails when it exists), so two writers starting together cannot both
    /// take it. A lock whose process is gone from this host is stale: it is reported and taken
    /// over; a lock of another host is never judged from here.
    pub fn acquire(out: &Path, shard: Option<(usize, usize)>) -> Result<Self> {
        std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
        let name = match shard {
            Some((i, n)) => format!(".dipbench.lock.shard-{i}-of-{n}"),
            None => ".dipbench.lock".into(),
        };
        let path = out.join(&name);
        let host = host_name();
        let owner = format!("{} {host}", std::process::id());
        let aside = unique_tmp(&path);
        std::fs::write(&aside, format!("{owner}\n")).with_context(|| format!("cannot write {}", aside.display()))?;
        let taken = (|| {
            for _ in 0..2 {
                match std::fs::hard_link(&aside, &path) {
                    Ok(()) => return Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        let text = std::fs::read_to_string(&path).unwrap_or_default();
                        let mut words = text.split_whitespace();
                        let pid = words.next().and_then(|w| w.parse::<u32>().ok());
                        let their_host = words.next().unwrap_or(&host);
                        match pid {
                            Some(pid) if their_host == host && !process_alive(pid) => {
                                tracing::warn!("{}: removing a stale lock left by process {pid}, which is gone", path.display());
                                eprintln!("warning: {}: removed a stale lock left by process {pid}, which is gone", path.display());
                                std::fs::remove_file(&path).with_context(|| format!("cannot remove the stale lock {}", path.display()))?;
                            }
                            Some(pid) => bail!(
                                "{} is being written by another dipbench (process {pid} on {their_host}, {}); wait for it to \
                                 finish, or delete the lock file if that run is gone",
                                out.display(),
                                path.display()
                            ),
                            None => bail!(
                                "{} is locked by {} whose holder cannot be read ({:?}); delete it if no dipbench is writing there",
                                out.display(),
                                path.display(),
                                text.trim()
                            ),
                        }
                    }
                    Err(e) => return Err(e).with_context(|| format!("cannot create {}", path.display())),
                }
            }
            bail!("cannot take the lock {}", path.display())
        })();
        let _ = std::fs::remove_file(&aside);
        taken.map(|()| Self { path, owner })
    }
}

impl Drop for FolderLock {
    /// Removes the lock if it is still this writer's.
    fn drop(&mut self) {
        if std::fs::read_to_string(&self.path).is_ok_and(|t| t.trim() == self.owner) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Installs `source` as the folder's `experiment.toml` (atomically), unless it is that file
/// already (directly or through a link), in which case nothing is written.
pub fn install_experiment(source: &Path, out: &Path) -> Result<()> {
    let dest = out.join("experiment.toml");
    let same = match (source.canonicalize(), dest.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        return Ok(());
    }
    let bytes = std::fs::read(source).with_context(|| format!("cannot read {}", source.display()))?;
    write_atomic(&dest, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_files_round_trip_and_every_kind_of_damage_is_refused() {
        let dir = std::env::temp_dir().join(format!("dipbench-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // Floats must survive the trip bit for bit (serde_json's `float_roundtrip`), or the digest
        // check would refuse honest files.
        let rows = vec![serde_json::json!({"a": 1.5, "b": 0.1 + 0.2}), serde_json::json!({"a": 2.5, "b": 1.0 / 3.0})];
        write_job(&dir, "j1", "fp", &rows).unwrap();
        let expect = Expect { job: "j1", fingerprint: "fp", rows: 2 };
        assert_eq!(read_job::<serde_json::Value>(&dir, expect).unwrap(), Some(rows));
        assert_eq!(read_job::<serde_json::Value>(&dir, Expect { job: "missing", ..expect }).unwrap(), None);
        let err = read_job::<serde_json::Value>(&dir, Expect { fingerprint: "other", ..expect }).unwrap_err().to_string();
        assert!(err.contains("different configuration"), "{err}");
        let err = read_job::<serde_json::Value>(&dir, Expect { rows: 3, ..expect }).unwrap_err().to_string();
        assert!(err.contains("2 rows"), "{err}");
        let text = std::fs::read_to_string(job_path(&dir, "j1")).unwrap();
        std::fs::write(job_path(&dir, "j1"), text.replace("2.5", "2.6")).unwrap();
        let err = read_job::<serde_json::Value>(&dir, expect).unwrap_err().to_string();
        assert!(err.contains("edited") && err.contains("j1.json"), "{err}");
        std::fs::write(job_path(&dir, "j1"), &text[..text.len() / 2]).unwrap();
        let err = format!("{:#}", read_job::<serde_json::Value>(&dir, expect).unwrap_err());
        assert!(err.contains("not a complete job file"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
