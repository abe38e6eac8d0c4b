//! The image benchmark: every method × task × image of an experiment's `[image]` table, on an
//! ADM UNet prior (spec/protocols.md §1–§4). One job is one (task, method, image); its row
//! (metrics against the ground truth, NFE, wall time) is written atomically to
//! `runs/<task>/<method>/<image>.json`, its reconstruction to
//! `images/<task>/<method>/<image>.png` and the measurement to `images/<task>/y/<image>.png`.
//!
//! Randomness: the measurement of (task, image) — mask, kernel, noise — derives from the
//! experiment seed, the task and the image name only, so every method sees the same y; each
//! method's draws derive from (seed, task, method, image). Results do not depend on the order,
//! the number of threads or the shard that runs a job.
//!
//! A method that cannot run a task (DDRM without an SVD, ER/HIO/OSS on anything but phase
//! retrieval, …) gets a row with status `unsupported: <why>` and a "–" in the table, never a
//! wrong number.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use dipbench_nn::{NnAutodiffBackend, NnBackend};
use dipbench_models::unet::{UnetConfig, UnetPrior};
use dipbench_models::{Prior, TapeFree};
use dipbench_operators::image::{ImageShape, Task, build};
use dipbench_operators::{GaussianNoise, PoissonNoise, SampleRng, derive_seed};
use dipbench_samplers::{PresetContext, Problem, SamplerConfig};
use serde::{Deserialize, Serialize};

use crate::experiment::{ImageGrid, LoadedExperiment, Method};
use crate::score_cmd::{Metric, load_lpips};

/// One job: indices into the experiment's tasks, methods and images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageJob {
    /// Task name.
    pub task: String,
    /// Index of the method in the experiment.
    pub method: usize,
    /// Method label.
    pub label: String,
    /// Image index in the dataset.
    pub image: usize,
    /// Image name (file stem).
    pub image_name: String,
}

impl ImageJob {
    /// The job's result file, relative to the results folder.
    pub fn file(&self) -> PathBuf {
        Path::new("runs").join(&self.task).join(slug(&self.label)).join(format!("{}.json", self.image_name))
    }
}

/// A file-name-safe form of a method label (ASCII letters and digits kept, the rest `_`,
/// non-ASCII spelled out so `ΠGDM` and `PGDM` stay apart).
pub fn slug(label: &str) -> String {
    label
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' | '.' => c.to_string(),
            c if c.is_ascii() => "_".into(),
            c => format!("u{:x}", c as u32),
        })
        .collect()
}

fn one() -> usize {
    1
}

/// One result row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRow {
    /// Fingerprint of everything the row depends on ([`fingerprint`]).
    pub config: String,
    /// Task.
    pub task: String,
    /// Method label.
    pub method: String,
    /// Sampler name.
    pub sampler: String,
    /// Image name.
    pub image: String,
    /// Network evaluations per image.
    pub nfe: usize,
    /// Metric name → value (per-image metrics of `[image] metrics`).
    pub metrics: std::collections::BTreeMap<String, f64>,
    /// Wall time of the sampler per run, seconds.
    pub seconds: f64,
    /// Runs of which the best per metric is reported (DAPS's best-of-N; 1 otherwise).
    #[serde(default = "one")]
    pub runs: usize,
    /// With best-of-N, every run's metrics (the table takes each metric's best run); empty for
    /// one run, whose metrics are `metrics`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub run_metrics: Vec<std::collections::BTreeMap<String, f64>>,
    /// `ok` or `unsupported: <why>`.
    pub status: String,
}

/// The images of the experiment's dataset, in [−1, 1], CHW, with their names: `synthetic`, a
/// dataset of the registry (`datasets.toml`; checked and preprocessed as it says), or a folder
/// of `side`×`side` PNG/JPEG images. `dataset_override` replaces the folder.
pub fn load_images(grid: &ImageGrid, dataset_override: Option<&Path>) -> Result<Vec<(String, Vec<f32>)>> {
    let side = grid.side;
    let registry = crate::datasets::registry()?;
    if let Some(entry) = registry.get(&grid.dataset).filter(|e| e.kind == "images") {
        return crate::datasets::load(&grid.dataset, entry, dataset_override, grid.images, side);
    }
    let folder = dataset_override.map(Path::to_path_buf).or_else(|| (grid.dataset != "synthetic").then(|| PathBuf::from(&grid.dataset)));
    let Some(folder) = folder else {
        return Ok((0..grid.images).map(|i| (format!("synthetic{i:05}"), synthetic_image(i, side))).collect());
    };
    let entry = crate::datasets::DatasetEntry::plain_folder(&folder);
    let files = crate::datasets::files(&grid.dataset, &entry, &folder, grid.images).context("key `image.images`")?;
    files
        .iter()
        .map(|p| {
            let stem = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            Ok((stem, crate::datasets::read_image(p, "none", side).context("key `image.side`")?))
        })
        .collect()
}

/// A deterministic test picture of `side`² pixels in [−1, 1] (8-bit levels): a colour gradient
/// under a few soft discs whose positions and colours depend on `i`. The embedded default of
/// the image benchmark, so it runs with no download.
pub fn synthetic_image(i: usize, side: usize) -> Vec<f32> {
    let mut rng = SampleRng::new(derive_seed(&["synthetic image", &i.to_string()]), 1);
    let u = |rng: &mut SampleRng| rng.uniform()[0];
    let discs: Vec<[f64; 6]> = (0..3).map(|_| [u(&mut rng), u(&mut rng), 0.1 + 0.25 * u(&mut rng), u(&mut rng), u(&mut rng), u(&mut rng)]).collect();
    let base = [u(&mut rng), u(&mut rng), u(&mut rng)];
    let n = side * side;
    let mut out = vec![0f32; 3 * n];
    for y in 0..side {
        for x in 0..side {
            let (fx, fy) = ((x as f64 + 0.5) / side as f64, (y as f64 + 0.5) / side as f64);
            for c in 0..3 {
                let mut v = 0.2 + 0.6 * (base[c] * fx + (1.0 - base[c]) * fy);
                for d in &discs {
                    let r2 = (fx - d[0]).powi(2) + (fy - d[1]).powi(2);
                    let w = 1.0 / (1.0 + (((r2.sqrt() - d[2]) * side as f64 / 2.0).exp()));
                    v = v * (1.0 - w) + d[3 + c] * w;
                }
                let q = (v.clamp(0.0, 1.0) * 255.0).round();
                out[c * n + y * side + x] = (q / 255.0 * 2.0 - 1.0) as f32;
            }
        }
    }
    out
}

/// Every job, in a fixed order (task, method, image).
pub fn jobs(exp: &LoadedExperiment, names: &[String]) -> Vec<ImageJob> {
    let grid = exp.experiment.image.as_ref().expect("validated image experiment");
    let mut out = vec![];
    for task in &grid.tasks {
        for (m, method) in exp.experiment.methods.iter().enumerate() {
            for (i, name) in names.iter().enumerate() {
                out.push(ImageJob { task: task.clone(), method: m, label: method.label.clone(), image: i, image_name: name.clone() });
            }
        }
    }
    out
}

/// The preset context of a task in this experiment.
fn context<'a>(grid: &'a ImageGrid, task: &'a str) -> PresetContext<'a> {
    PresetContext { task, dataset: &grid.family, noise: &grid.noise.kind }
}

/// The resolved configuration of `method` on `task` (preset for the task + overrides).
/// `per_task.<task>` may replace the preset (key `preset`) and add overrides of its own.
pub fn method_config(grid: &ImageGrid, method: &Method, task: &str) -> Result<SamplerConfig> {
    for t in method.per_task.keys() {
        if !grid.tasks.contains(t) {
            bail!("method `{}`: key `per_task.{t}` names a task the experiment does not run (tasks: {})", method.label, grid.tasks.join(", "));
        }
    }
    let mut extra = method.per_task.get(task).cloned().unwrap_or_default();
    let preset = match extra.remove("preset") {
        Some(toml::Value::String(p)) => p,
        Some(other) => bail!("method `{}`: key `per_task.{task}.preset` must be a string, got {other}", method.label),
        None => method.preset.clone(),
    };
    SamplerConfig::preset_in(&method.sampler, &preset, Some(&context(grid, task)))
        .and_then(|c| c.with_overrides(&method.settings))
        .and_then(|c| c.with_overrides(&extra))
        .with_context(|| format!("method `{}` on task `{task}`", method.label))
}

/// A hex fingerprint of what a job's row depends on: seed, model, checkpoint, image side,
/// variant, noise, metrics and the method's resolved configuration on the task.
pub fn fingerprint(exp: &LoadedExperiment, job: &ImageJob) -> Result<String> {
    let e = &exp.experiment;
    let g = e.image.as_ref().expect("validated image experiment");
    let cfg = method_config(g, &e.methods[job.method], &job.task)?;
    let text = format!(
        "{}|{}|{}|{:?}|{}|{}|{}|{:?}|{:?}|{}|{}",
        e.experiment.seed,
        g.runs.get(&job.task).copied().unwrap_or(1),
        g.model,
        g.checkpoint,
        g.side,
        g.variant,
        g.family,
        g.noise,
        g.metrics,
        job.label,
        toml::to_string(&cfg).expect("configs serialise")
    );
    let text = if g.precision == "f32" { text } else { format!("{text}|precision {}", g.precision) };
    let text = format!("{text}|noise v{}", dipbench_operators::noise::NOISE_VERSION);
    Ok(format!("{:016x}", derive_seed(&["fingerprint", &text])))
}

/// The task of `name` at the experiment's image size (`Task::for_side`).
pub fn task_for(grid: &ImageGrid, name: &str) -> Result<Task> {
    let task = crate::measure_cmd::task(name, &grid.variant, None).with_context(|| format!("key `image.tasks`: task `{name}`"))?;
    Ok(task.for_side(grid.side))
}

/// What every job shares: the prior, the images, the metric networks.
pub struct ImageBench<B: NnAutodiffBackend> {
    /// The UNet prior.
    pub prior: UnetPrior<B>,
    /// The same network on the inner backend, for samplers that take no gradient through it.
    pub tape_free: TapeFree<UnetPrior<B::InnerBackend>>,
    /// Dataset images in [−1, 1].
    pub images: Vec<(String, Vec<f32>)>,
    /// Per-image metrics.
    pub metrics: Vec<Metric>,
    /// LPIPS networks of the LPIPS metrics (on the inner backend: no autodiff needed).
    pub lpips: Vec<(Metric, dipbench_metrics::Lpips<B::InnerBackend>)>,
}

impl<B: NnAutodiffBackend> ImageBench<B> {
    /// Loads the model (checkpoint, or the golden fill when none is given: untrained weights,
    /// for plumbing checks), the images and the metric networks.
    pub fn load(grid: &ImageGrid, dataset_override: Option<&Path>, device: &B::Device) -> Result<Self> {
        let config = UnetConfig::by_name(&grid.model).with_context(|| format!("key `image.model`: `{}`", grid.model))?;
        if config.image_size != grid.side {
            bail!("key `image.side` = {} but model `{}` takes {}×{} images", grid.side, grid.model, config.image_size, config.image_size);
        }
        let checkpoint = grid.checkpoint.as_ref().map(|c| crate::weights::resolve_checkpoint(c)).transpose()?;
        let net = crate::model_cmd::load_net::<B>(&config, checkpoint.as_deref(), device)?.with_precision(grid.unet_precision()?);
        let metrics = grid.metrics.iter().map(|m| Metric::parse(m)).collect::<Result<Vec<_>>>()?;
        let mut lpips = vec![];
        for m in &metrics {
            if let Metric::Lpips(v) = m {
                lpips.push((*m, load_lpips::<B::InnerBackend>(*v, device)?));
            }
        }
        let tape_free = TapeFree::new(UnetPrior::new(net.clone().inner()));
        Ok(Self { prior: UnetPrior::new(net), tape_free, images: load_images(grid, dataset_override)?, metrics, lpips })
    }

    /// Runs one job; returns its row, the reconstruction and the measurement, each in [−1, 1]
    /// (the reconstruction is `None` for an unsupported combination).
    pub fn run_job(&self, exp: &LoadedExperiment, job: &ImageJob, device: &B::Device) -> Result<(ImageRow, Option<Vec<f32>>, Vec<f32>)> {
        let e = &exp.experiment;
        let grid = e.image.as_ref().expect("validated image experiment");
        let method = &e.methods[job.method];
        let cfg = method_config(grid, method, &job.task)?;
        let seed = e.experiment.seed.to_string();
        let shape = ImageShape { c: 3, h: grid.side, w: grid.side };
        let task = task_for(grid, &job.task)?;
        let mut op_rng = SampleRng::new(derive_seed(&["image", &seed, &job.task, &job.image_name, "operator"]), 1);
        let op = build::<B>(&task, shape, &mut op_rng, device)?;
        let gt = &self.images[job.image].1;
        let x = Tensor::<B, 1>::from_floats(gt.as_slice(), device).reshape([1, shape.len()]);
        let mut noise_rng = SampleRng::new(derive_seed(&["image", &seed, &job.task, &job.image_name, "noise"]), 1);
        let clean = op.forward(x);
        let (y, sigma_y) = match grid.noise.kind.as_str() {
            "poisson" => (PoissonNoise { rate: grid.noise.rate }.apply(clean, &mut noise_rng), grid.noise.sigma),
            _ => (GaussianNoise { sigma: grid.noise.sigma }.apply(clean, &mut noise_rng), grid.noise.sigma),
        };
        let y_vals = to_vec(y.clone())?;
        let sampler = cfg.build::<B>(None)?;
        let prior: &dyn Prior<B> = if sampler.differentiates_prior() { &self.prior } else { &self.tape_free };
        let problem = Problem::shared(prior, op.as_ref(), y, sigma_y, 1);
        let mut row = ImageRow {
            config: fingerprint(exp, job)?,
            task: job.task.clone(),
            method: job.label.clone(),
            sampler: method.sampler.clone(),
            image: job.image_name.clone(),
            nfe: 0,
            runs: 1,
            run_metrics: vec![],
            metrics: Default::default(),
            seconds: 0.0,
            status: "ok".into(),
        };
        let nfe = match sampler.nfe(&problem) {
            Ok(n) => n,
            Err(e) if e.is_unsupported() => {
                row.status = format!("unsupported: {e}");
                return Ok((row, None, y_vals));
            }
            Err(e) => return Err(e).with_context(|| format!("method `{}` on task `{}`", job.label, job.task)),
        };
        // Best-of-N (DAPS protocol): each run has its own stream; per metric the best run counts
        // (max PSNR/SSIM, min LPIPS); the saved reconstruction is the best by the first metric.
        // The row keeps every run's metrics: the table applies the rule itself (polars,
        // `aggregate::best_run`); `metrics` is the per-image best for rows.csv and the grids.
        let runs = grid.runs.get(&job.task).copied().unwrap_or(1);
        let start = Instant::now();
        let mut best: Option<(Vec<f32>, std::collections::BTreeMap<String, f64>)> = None;
        for run in 0..runs {
            let mut parts = vec!["image", &seed, &job.task, &job.label, &job.image_name, "sampler"];
            let run_text = run.to_string();
            if runs > 1 {
                parts.extend(["run", &run_text]);
            }
            let mut rng = SampleRng::new(derive_seed(&parts), 1);
            let out = match sampler.sample(&problem, &mut rng) {
                Ok(x) => x,
                Err(e) if e.is_unsupported() => {
                    row.status = format!("unsupported: {e}");
                    return Ok((row, None, y_vals));
                }
                Err(e) => return Err(e).with_context(|| format!("method `{}` on task `{}`, image {}", job.label, job.task, job.image_name)),
            };
            let recon: Vec<f32> = to_vec(out)?.into_iter().map(|v| if v.is_finite() { v.clamp(-1.0, 1.0) } else { f32::NAN }).collect();
            let metrics = self.score(&recon, gt, grid.side, device)?;
            if runs > 1 {
                row.run_metrics.push(metrics.clone());
            }
            best = Some(match best {
                None => (recon, metrics),
                Some((best_recon, mut best_metrics)) => {
                    let first = self.metrics[0].name();
                    let better = |m: &str, new: f64, old: f64| {
                        if old.is_nan() {
                            !new.is_nan()
                        } else if crate::image_table::higher_is_better(m) {
                            new > old
                        } else {
                            new < old
                        }
                    };
                    let keep_recon = if better(&first, metrics[&first], best_metrics[&first]) { recon } else { best_recon };
                    for (m, v) in metrics {
                        if better(&m, v, best_metrics[&m]) {
                            best_metrics.insert(m, v);
                        }
                    }
                    (keep_recon, best_metrics)
                }
            });
        }
        let (recon, metrics) = best.expect("at least one run");
        row.seconds = start.elapsed().as_secs_f64() / runs as f64;
        row.nfe = nfe;
        row.runs = runs;
        row.metrics = metrics;
        Ok((row, Some(recon), y_vals))
    }

    /// The per-image metrics of `recon` against `gt` (both in [−1, 1]). A non-finite
    /// reconstruction scores NaN (counted as failed in the table).
    fn score(&self, recon: &[f32], gt: &[f32], side: usize, device: &B::Device) -> Result<std::collections::BTreeMap<String, f64>> {
        let to01 = |v: &[f32]| -> Vec<f32> { v.iter().map(|x| (x + 1.0) / 2.0).collect() };
        // skimage-convention metrics are computed on the 8-bit images the DPS script saves.
        let to8 = |v: &[f32]| -> Vec<f64> { v.iter().map(|x| (((x + 1.0) / 2.0).clamp(0.0, 1.0) * 255.0).round() as f64 / 255.0).collect() };
        let finite = recon.iter().all(|v| v.is_finite());
        let (r01, g01) = (to01(recon), to01(gt));
        let mut out = std::collections::BTreeMap::new();
        for m in &self.metrics {
            let v = if !finite {
                f64::NAN
            } else {
                match m {
                    Metric::Psnr => dipbench_metrics::psnr_skimage(&to8(gt), &to8(recon)),
                    Metric::PsnrPiq => f64::from(dipbench_metrics::psnr_piq(&g01, &r01)),
                    Metric::Ssim => dipbench_metrics::ssim_skimage(&to8(gt), &to8(recon), 3, side, side),
                    Metric::SsimPiq => f64::from(dipbench_metrics::ssim_piq(&g01, &r01, 3, side, side)),
                    Metric::Lpips(_) => {
                        let net = &self.lpips.iter().find(|(k, _)| k == m).expect("loaded").1;
                        let t = |v: &[f32]| Tensor::<B::InnerBackend, 1>::from_floats(v, device).reshape([1, 3, side, side]);
                        let d = net.distance(t(&r01), t(&g01));
                        f64::from(d.into_data().convert::<f32>().to_vec::<f32>().map_err(|e| anyhow::anyhow!("{e:?}"))?[0])
                    }
                    Metric::Fid(_) | Metric::Kid => bail!("key `image.metrics`: `{}` is a set metric; score the image folders with `dipbench score`", m.name()),
                }
            };
            out.insert(m.name(), v);
        }
        Ok(out)
    }
}

fn to_vec<B: NnBackend>(t: Tensor<B, 2>) -> Result<Vec<f32>> {
    t.into_data().convert::<f32>().to_vec::<f32>().map_err(|e| anyhow::anyhow!("{e:?}"))
}

/// A temporary name beside `path`, unique to this process and thread, so that two workers
/// writing the same file (the measurement PNG of a task and image) never rename each other's.
fn unique_tmp(path: &Path) -> PathBuf {
    let tid = format!("{:?}", std::thread::current().id()).chars().filter(char::is_ascii_digit).collect::<String>();
    let name = path.file_name().expect("a file").to_string_lossy();
    path.with_file_name(format!("{name}.{}-{tid}.tmp", std::process::id()))
}

/// Writes a [−1, 1] CHW image (or a rendered measurement) as PNG, atomically.
pub fn write_png_atomic(path: &Path, img: &image::RgbImage) -> Result<()> {
    let dir = path.parent().expect("file in a folder");
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = unique_tmp(path);
    img.save_with_format(&tmp, image::ImageFormat::Png).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot move {} into place", tmp.display()))
}

/// Writes `row` as JSON to `path`, atomically.
pub fn write_row_atomic(path: &Path, row: &ImageRow) -> Result<()> {
    let dir = path.parent().expect("file in a folder");
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = unique_tmp(path);
    std::fs::write(&tmp, serde_json::to_string_pretty(row)?).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot move {} into place", tmp.display()))
}

/// Reads a job's row.
pub fn read_row(path: &Path) -> Result<ImageRow> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("malformed result file {}", path.display()))
}

/// Whether the job's row exists for this configuration; a row made by another configuration is
/// an error (never mixed into the table).
fn finished(out: &Path, exp: &LoadedExperiment, job: &ImageJob) -> Result<bool> {
    let path = out.join(job.file());
    if !path.exists() {
        return Ok(false);
    }
    let row = read_row(&path)?;
    let fp = fingerprint(exp, job)?;
    if row.config != fp {
        bail!(
            "{} was produced by a different configuration of this experiment (fingerprint {} ≠ {fp}); \
             move the results folder away or choose another one with --out",
            path.display(),
            row.config
        );
    }
    Ok(true)
}

/// `dipbench run` on an image experiment: every unfinished job of this shard, `opts.jobs` at a
/// time, each writing its row and images atomically.
/// With several devices, the model is loaded once per device and worker w runs on device
/// w mod N.
pub fn run<B: NnAutodiffBackend>(exp: &LoadedExperiment, out: &Path, devices: &[B::Device], opts: &crate::runner::RunOptions) -> Result<crate::runner::RunSummary>
where
    B::Device: Sync,
{
    let start = Instant::now();
    let grid = exp.experiment.image.as_ref().expect("validated image experiment");
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    std::fs::copy(&exp.path, out.join("experiment.toml")).with_context(|| format!("cannot copy {} into {}", exp.path.display(), out.display()))?;
    let benches = devices.iter().map(|d| ImageBench::<B>::load(grid, opts.dataset.as_deref(), d)).collect::<Result<Vec<_>>>()?;
    let names: Vec<String> = benches[0].images.iter().map(|(n, _)| n.clone()).collect();
    let all = jobs(exp, &names);
    let mut mine = 0;
    let mut pending = vec![];
    for (index, job) in all.iter().enumerate() {
        if crate::runner::in_shard(index, opts.shard) {
            mine += 1;
            if !finished(out, exp, job)? {
                pending.push(job.clone());
            }
        }
    }
    tracing::info!(total = mine, skipped = mine - pending.len(), out = %out.display(), "running {}", exp.experiment.experiment.name);
    crate::runner::run_pool(&pending, mine, mine - pending.len(), opts, |worker, job| {
        let k = worker % devices.len();
        let bench = &benches[k];
        let (row, recon, y) = bench.run_job(exp, job, &devices[k])?;
        let gt_png = out.join("images").join("gt").join(format!("{}.png", job.image_name));
        if !gt_png.exists() {
            write_png_atomic(&gt_png, &crate::measure_cmd::render(&bench.images[job.image].1, 0))?;
        }
        let img_dir = out.join("images").join(&job.task);
        let y_png = img_dir.join("y").join(format!("{}.png", job.image_name));
        if !y_png.exists() {
            write_png_atomic(&y_png, &crate::measure_cmd::render(&y, 0))?;
        }
        if let Some(r) = recon {
            write_png_atomic(&img_dir.join(slug(&job.label)).join(format!("{}.png", job.image_name)), &crate::measure_cmd::render(&r, 0))?;
        }
        write_row_atomic(&out.join(job.file()), &row)?;
        Ok(format!("{} {} {}", job.task, job.label, job.image_name))
    })?;
    Ok(crate::runner::RunSummary { total: mine, skipped: mine - (pending.len()), ran: pending.len(), seconds: start.elapsed().as_secs_f64() })
}

/// Every row of `exp` in `out`, in job order; missing jobs are an error naming how many and the
/// first. The image names come from the result files of the first task and method (the dataset
/// need not be present to make tables).
pub fn collect_rows(exp: &LoadedExperiment, out: &Path) -> Result<Vec<ImageRow>> {
    let grid = exp.experiment.image.as_ref().expect("validated image experiment");
    let first = out.join("runs").join(&grid.tasks[0]).join(slug(&exp.experiment.methods[0].label));
    let mut names: Vec<String> = std::fs::read_dir(&first)
        .with_context(|| format!("no results in {}; run `dipbench run` first", first.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.path().file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".json")).map(String::from))
        .collect();
    names.sort();
    if names.len() != grid.images {
        bail!("{}: {} of {} images have results; run `dipbench run` (all shards) to finish them", first.display(), names.len(), grid.images);
    }
    let all = jobs(exp, &names);
    let missing: Vec<&ImageJob> = all.iter().filter(|j| !out.join(j.file()).exists()).collect();
    if let Some(m) = missing.first() {
        bail!("{} of {} jobs have no results in {} (first: {}); run `dipbench run` to finish them", missing.len(), all.len(), out.display(), m.file().display());
    }
    all.iter()
        .map(|j| {
            let row = read_row(&out.join(j.file()))?;
            if row.config != fingerprint(exp, j)? {
                bail!("{} was produced by a different configuration of this experiment; rerun it or choose another --out", out.join(j.file()).display());
            }
            Ok(row)
        })
        .collect()
}
