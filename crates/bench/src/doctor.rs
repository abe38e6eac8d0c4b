//! `dipbench doctor [EXPERIMENT]`: what a node needs before a sweep starts, one line per check —
//! the backend compiled in and usable (GPU, driver, CUDA libraries), the kernel caches, the
//! checkpoints present and verified, the dataset complete, free disk for the results. A blocker
//! makes the command exit 1, so a job array that runs it first stops before any job does.

use std::path::{Path, PathBuf};

use crate::experiment::{Experiment, Kind};
use crate::registry::Metric;
use crate::weights::{self, KnownWeights};

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Ready.
    Ok,
    /// Worth knowing, not needed by this run.
    Info,
    /// Works, but slower or riskier than it could be.
    Warn,
    /// The run cannot succeed.
    Blocker,
}

impl Level {
    /// The tag printed in front of the line.
    pub fn tag(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Blocker => "BLOCKER",
        }
    }
}

/// One check's outcome.
#[derive(Debug, Clone)]
pub struct Finding {
    /// Severity.
    pub level: Level,
    /// What was checked (`backend`, `checkpoint ffhq256`, …).
    pub what: String,
    /// What was found, and for a problem what to do.
    pub detail: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:<8}{:<28}{}", self.level.tag(), self.what, self.detail)
    }
}

/// What the run will use.
#[derive(Debug, Clone)]
pub struct Setup {
    /// `cpu`, `cuda` or `wgpu`.
    pub device: String,
    /// The checkpoint folder (the one a run uses: `$DIPBENCH_CHECKPOINTS`, else `checkpoints/`).
    pub checkpoints: PathBuf,
    /// The dataset folder override (`--dataset`).
    pub dataset: Option<PathBuf>,
    /// The results folder.
    pub out: Option<PathBuf>,
}

fn finding(level: Level, what: impl Into<String>, detail: impl Into<String>) -> Finding {
    Finding { level, what: what.into(), detail: detail.into() }
}

/// Runs every check for `exp` (or, without one, for the node in general).
pub fn diagnose(exp: Option<&Experiment>, setup: &Setup) -> Vec<Finding> {
    let mut out = vec![];
    backend(setup, &mut out);
    kernel_cache(setup, &mut out);
    checkpoints(exp, setup, &mut out);
    datasets(exp, setup, &mut out);
    disk(exp, setup, &mut out);
    out
}

fn compiled(device: &str) -> bool {
    match device {
        "cpu" => true,
        "cuda" => cfg!(feature = "cuda"),
        "wgpu" => cfg!(feature = "wgpu"),
        _ => false,
    }
}

fn backend(setup: &Setup, out: &mut Vec<Finding>) {
    let all: Vec<&str> = ["cpu", "cuda", "wgpu"].into_iter().filter(|d| compiled(d)).collect();
    let threads = rayon::current_num_threads();
    if !compiled(&setup.device) {
        out.push(finding(
            Level::Blocker,
            "backend",
            format!(
                "`{}` is not compiled into this binary (it has: {}); rebuild with `cargo build --release --features {}`",
                setup.device,
                all.join(", "),
                setup.device
            ),
        ));
    } else {
        out.push(finding(Level::Ok, "backend", format!("`{}` compiled in (this binary has: {}); {threads} CPU threads", setup.device, all.join(", "))));
    }
    if setup.device == "cuda" {
        match nvidia_smi() {
            Ok(gpus) if !gpus.is_empty() => out.push(finding(Level::Ok, "gpu", gpus.join("; "))),
            Ok(_) => out.push(finding(Level::Blocker, "gpu", "nvidia-smi lists no GPU (check CUDA_VISIBLE_DEVICES and the job's --gres)")),
            Err(e) => out.push(finding(Level::Blocker, "gpu", format!("nvidia-smi cannot be run ({e}): no NVIDIA driver on this node?"))),
        }
        for (lib, why) in [("libcuda.so", "the driver API"), ("libnvrtc.so", "kernel compilation (NVRTC)")] {
            match find_library(lib) {
                Some(p) => out.push(finding(Level::Ok, format!("cuda library {lib}"), p.display().to_string())),
                None => out.push(finding(
                    Level::Blocker,
                    format!("cuda library {lib}"),
                    format!("not found in LD_LIBRARY_PATH, CUDA_HOME/CUDA_PATH or the system folders; needed for {why} (`module load cuda`, or add the toolkit's lib64 to LD_LIBRARY_PATH)"),
                )),
            }
        }
    } else if let Ok(gpus) = nvidia_smi()
        && !gpus.is_empty()
    {
        out.push(finding(Level::Info, "gpu", format!("{} visible but unused with --device {} ({})", gpus.len(), setup.device, gpus.join("; "))));
    }
}

/// `name, driver, memory` of each GPU nvidia-smi lists.
fn nvidia_smi() -> std::io::Result<Vec<String>> {
    let o = std::process::Command::new("nvidia-smi").args(["--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]).output()?;
    if !o.status.success() {
        return Err(std::io::Error::other(String::from_utf8_lossy(&o.stderr).trim().to_string()));
    }
    Ok(String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| format!("GPU {} (driver {})", l.split(',').next().unwrap_or("").trim(), l.split(',').nth(1).unwrap_or("").trim()))
        .collect())
}

/// The first file whose name starts with `stem` in the library search folders.
fn find_library(stem: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("LD_LIBRARY_PATH").map(|v| std::env::split_paths(&v).collect()).unwrap_or_default();
    for var in ["CUDA_HOME", "CUDA_PATH", "CUDA_ROOT"] {
        if let Some(v) = std::env::var_os(var) {
            dirs.push(PathBuf::from(&v).join("lib64"));
            dirs.push(PathBuf::from(&v).join("lib"));
        }
    }
    dirs.extend(["/usr/local/cuda/lib64", "/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/lib/wsl/lib"].map(PathBuf::from));
    dirs.iter().find_map(|d| {
        let entries = std::fs::read_dir(d).ok()?;
        entries.filter_map(|e| e.ok()).map(|e| e.path()).find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(stem)))
    })
}

fn kernel_cache(setup: &Setup, out: &mut Vec<Finding>) {
    if setup.device == "cpu" {
        return;
    }
    let Some(dir) = crate::backend::gpu_cache_dir() else {
        out.push(finding(Level::Warn, "kernel cache", "no HOME and no DIPBENCH_KERNEL_CACHE: autotune results are not kept between runs"));
        return;
    };
    let entries = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
    let writable = std::fs::create_dir_all(&dir).is_ok() && tempfile_in(&dir);
    if !writable {
        out.push(finding(Level::Warn, "kernel cache", format!("{} is not writable: every run autotunes again (set DIPBENCH_KERNEL_CACHE)", dir.display())));
    } else if entries == 0 {
        out.push(finding(
            Level::Warn,
            "kernel cache",
            format!("{} is empty: the first jobs autotune (seconds per new shape); copy the folder from a node of the same GPU kind to skip it", dir.display()),
        ));
    } else {
        out.push(finding(Level::Ok, "kernel cache", format!("{} ({entries} entries)", dir.display())));
    }
}

fn tempfile_in(dir: &Path) -> bool {
    let p = dir.join(format!(".dipbench-doctor-{}", std::process::id()));
    let ok = std::fs::write(&p, b"").is_ok();
    let _ = std::fs::remove_file(&p);
    ok
}

/// The checkpoints an experiment needs, by registry name, and the priors' checkpoints given as
/// paths (each checked on its own).
pub fn needed_checkpoints(exp: &Experiment) -> (Vec<&'static KnownWeights>, Vec<PathBuf>) {
    let Kind::Image(img) = &exp.kind else { return (vec![], vec![]) };
    let g = &img.grid;
    let mut names: Vec<&str> = vec![];
    let mut paths = vec![];
    for c in img.priors.iter().filter_map(|p| p.checkpoint.as_ref()) {
        if let Ok(w) = weights::known(c) {
            names.push(w.name);
        } else {
            paths.push(PathBuf::from(c));
        }
    }
    if g.tasks.contains(&dipbench_operators::image::TaskName::DeblurNonlinear) {
        names.push("bkse");
    }
    for m in g.metrics.iter().chain(&g.set_metrics) {
        match m {
            Metric::Lpips(dipbench_metrics::LpipsVariant::Alex) => names.extend(["alexnet", "lpips-alex-lin"]),
            Metric::Lpips(_) => names.extend(["vgg16", "lpips-vgg-lin"]),
            Metric::Fid(dipbench_metrics::InceptionVariant::Torchvision) => names.push("inception-torchvision"),
            Metric::Fid(_) | Metric::Kid => names.push("inception-fid"),
            _ => {}
        }
    }
    let mut list: Vec<&'static KnownWeights> = vec![];
    for n in names {
        if let Ok(w) = weights::known(n)
            && !list.iter().any(|x| x.name == w.name)
        {
            list.push(w);
        }
    }
    (list, paths)
}

fn checkpoints(exp: Option<&Experiment>, setup: &Setup, out: &mut Vec<Finding>) {
    let dir = &setup.checkpoints;
    let Some(exp) = exp else {
        for w in weights::KNOWN {
            match weights::locate(w, dir) {
                Ok(p) if weights::sidecar(&p).is_file() => {
                    out.push(finding(Level::Ok, format!("checkpoint {}", w.name), format!("{} (sha256 pinned)", p.display())))
                }
                Ok(p) => out.push(finding(
                    Level::Info,
                    format!("checkpoint {}", w.name),
                    format!("{} not verified yet (`dipbench weights verify {}`)", p.display(), w.name),
                )),
                Err(_) => out.push(finding(
                    Level::Info,
                    format!("checkpoint {}", w.name),
                    format!("missing from {} (`dipbench weights fetch {}`)", dir.display(), w.name),
                )),
            }
        }
        return;
    };
    let (needed, paths) = needed_checkpoints(exp);
    for p in paths {
        let f = if p.is_file() {
            finding(Level::Ok, "checkpoint (file)", p.display().to_string())
        } else {
            finding(Level::Blocker, "checkpoint (file)", format!("{} does not exist", p.display()))
        };
        out.push(f);
    }
    if needed.is_empty() && matches!(exp.kind, Kind::Gmm(_)) {
        out.push(finding(Level::Ok, "checkpoints", "none needed (the GMM prior is analytic)"));
    }
    for w in needed {
        let what = format!("checkpoint {}", w.name);
        match weights::locate(w, dir) {
            Err(_) => out.push(finding(Level::Blocker, what, format!("missing: `dipbench weights fetch {}` puts {} in {}", w.name, w.file, dir.display()))),
            Ok(p) => match weights::verify(&p, w.config) {
                Ok(_) => out.push(finding(Level::Ok, what, format!("{} (keys, shapes and sha256 verified)", p.display()))),
                Err(e) => out.push(finding(Level::Blocker, what, format!("{e:#}"))),
            },
        }
    }
}

fn datasets(exp: Option<&Experiment>, setup: &Setup, out: &mut Vec<Finding>) {
    let Ok(reg) = crate::datasets::registry() else { return };
    // (images, side) an experiment reads; the protocol's whole set at 256² without one.
    let check_one = |name: &str, folder: Option<&Path>, need: Option<(usize, usize)>, out: &mut Vec<Finding>| {
        let required = need.is_some();
        let Some(entry) = reg.get(name) else { return };
        if entry.kind != "images" {
            out.push(finding(Level::Ok, format!("dataset {name}"), "generated by dipbench, nothing to download"));
            return;
        }
        let folder = crate::datasets::folder_for(name, folder);
        let checked = match need {
            Some((n, side)) => crate::prepare::check_first(name, entry, &folder, n, side),
            None => crate::prepare::check(name, entry, &folder, 256),
        };
        match checked {
            Ok(n) => out.push(finding(Level::Ok, format!("dataset {name}"), format!("{n} images in {} complete and verified", folder.display()))),
            Err(e) => out.push(finding(
                if required { Level::Blocker } else { Level::Info },
                format!("dataset {name}"),
                format!("{} (`dipbench data prepare {name} --from <your copy>` builds it)", format!("{e:#}").lines().next().unwrap_or_default()),
            )),
        }
    };
    match exp.map(|e| &e.kind) {
        Some(Kind::Image(img)) => {
            let name = &img.grid.dataset;
            if reg.contains_key(name.as_str()) {
                check_one(name, setup.dataset.as_deref(), Some((img.grid.images, img.grid.side)), out);
            } else {
                let folder = setup.dataset.clone().unwrap_or_else(|| PathBuf::from(name));
                let f = if folder.is_dir() {
                    finding(Level::Ok, "dataset (folder)", folder.display().to_string())
                } else {
                    finding(Level::Blocker, "dataset (folder)", format!("{} does not exist", folder.display()))
                };
                out.push(f);
            }
        }
        Some(Kind::Gmm(_)) => out.push(finding(Level::Ok, "dataset gmm", "generated per job from its seed")),
        None => {
            for (name, e) in &reg {
                if e.kind == "images" {
                    check_one(name, None, None, out);
                }
            }
        }
    }
}

/// Bytes an experiment's results take, roughly: per image job a reconstruction PNG (~¾ of the
/// raw 8-bit size) and its row; per (task, image) the measurement; GMM rows are small.
pub fn results_size(exp: &Experiment) -> u64 {
    match &exp.kind {
        Kind::Image(img) => {
            let g = &img.grid;
            let png = (g.side * g.side * 3) as u64 * 3 / 4 + 2_000;
            // Per task: its runs × the methods that run it (a method's `tasks` may leave it out).
            let jobs: u64 = g
                .tasks
                .iter()
                .map(|t| {
                    g.runs.get(t).copied().unwrap_or(1) as u64
                        * exp.methods.iter().filter(|m| crate::experiment::ImageExperiment::method_runs(m, *t)).count() as u64
                })
                .sum::<u64>()
                * g.images as u64;
            jobs * png + (g.tasks.len() * g.images) as u64 * png
        }
        Kind::Gmm(_) => 50_000_000,
    }
}

fn disk(exp: Option<&Experiment>, setup: &Setup, out: &mut Vec<Finding>) {
    let folder = setup.out.clone().unwrap_or_else(|| PathBuf::from("results"));
    let Some(existing) = folder.ancestors().find(|a| a.exists() && !a.as_os_str().is_empty()).map(Path::to_path_buf).or_else(|| Some(PathBuf::from(".")))
    else {
        return;
    };
    let Some(free) = free_bytes(&existing) else {
        out.push(finding(Level::Info, "disk", format!("cannot tell the free space at {}", existing.display())));
        return;
    };
    let gb = |b: u64| b as f64 / 1e9;
    match exp {
        Some(e) => {
            let need = results_size(e);
            let level = if free < need {
                Level::Blocker
            } else if free < 2 * need + 1_000_000_000 {
                Level::Warn
            } else {
                Level::Ok
            };
            out.push(finding(level, "disk", format!("{:.1} GB free at {}; the results need about {:.2} GB", gb(free), existing.display(), gb(need))));
        }
        None => out.push(finding(Level::Info, "disk", format!("{:.1} GB free at {}", gb(free), existing.display()))),
    }
}

/// Free bytes for an unprivileged user on the file system holding `path`.
pub fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `s` a writable statvfs.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut s) };
    (rc == 0).then(|| s.f_bavail as u64 * s.f_frsize as u64)
}
