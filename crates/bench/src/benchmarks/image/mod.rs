//! The image benchmark: every method × task × image of an experiment's `[image]` table, on an
//! ADM UNet prior (docs/protocols.md §1–§4) or a latent-diffusion prior (a latent UNet config:
//! the sampler works on autoencoder latents against A∘D, and its output is decoded). One job is one (task, method, image); its row
//! (metrics against the ground truth, NFE, wall time) goes to `runs/<task>/<method>/<image>.json`,
//! its reconstruction to `images/<task>/<method>/<image>.png`, the measurement to
//! `images/<task>/y/<image>.png` and the ground truth to `images/gt/<image>.png`.
//!
//! Randomness: the measurement of (task, image) — mask, kernel, noise — derives from the
//! experiment seed, the task and the image name only, so every method sees the same y; each
//! method's draws derive from (seed, task, method, image, run). Results do not depend on the
//! order, the threads, the shard or the batch that runs a job (up to float rounding in batches:
//! `image.batch` images of one task and method go through the sampler together when the task's
//! operator is the same for every image).
//!
//! A method that cannot run a task (DDRM without an SVD, ER/HIO/OSS on anything but phase
//! retrieval, …) gets a row with status `unsupported: <why>` and a "–" in the table, never a
//! wrong number.

pub mod table;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use dipbench_models::latent::LatentPrior;
use dipbench_models::unet::UnetPrior;
use dipbench_models::{Prior, TapeFree};
use dipbench_nn::NnAutodiffBackend;
use dipbench_operators::image::{ImageShape, Task, TaskName, build};
use dipbench_operators::{GaussianNoise, PoissonNoise, SampleRng, derive_seed};
use dipbench_samplers::Problem;
use dipbench_samplers::latent::LatentOperator;
use serde::{Deserialize, Serialize};

use crate::experiment::{Experiment, ImageExperiment, NoiseSpec, PriorSpec, slug};
use crate::pipeline::{Benchmark, JobOutput, RunOptions};
use crate::registry::Metric;

/// One job: a task, a method (index and label) and an image (index and name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageJob {
    /// Task.
    pub task: TaskName,
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
    /// The job's identity: `<task>/<method slug>/<image>`.
    pub fn id(&self) -> String {
        format!("{}/{}/{}", self.task, slug(&self.label), self.image_name)
    }
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
    /// Metric name → value (per-image metrics of `[image] metrics`; NaN for a diverged run).
    #[serde(with = "crate::pipeline::floats::map")]
    pub metrics: BTreeMap<String, f64>,
    /// Wall time of the sampler per image and run, seconds.
    pub seconds: f64,
    /// Runs of which the best per metric is reported (DAPS's best-of-N; 1 otherwise).
    #[serde(default = "one")]
    pub runs: usize,
    /// With best-of-N, every run's metrics (the table takes each metric's best run); empty for
    /// one run, whose metrics are `metrics`.
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "crate::pipeline::floats::maps")]
    pub run_metrics: Vec<BTreeMap<String, f64>>,
    /// `ok` or `unsupported: <why>`.
    pub status: String,
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

/// Where an experiment's images come from.
#[derive(Debug, Clone)]
enum Source {
    /// Generated test pictures.
    Synthetic(usize),
    /// Image files, with their preprocessing (and the registry entry to verify digests with).
    Files { paths: Vec<PathBuf>, preprocess: String, registered: Option<(String, crate::datasets::DatasetEntry, PathBuf)> },
}

impl Source {
    /// Finds the images of `grid` (`dataset_override` replaces the folder). Every file must
    /// exist; contents are read by [`Source::load`].
    fn find(img: &ImageExperiment, dataset_override: Option<&Path>) -> Result<Self> {
        let grid = &img.grid;
        let registry = crate::datasets::registry()?;
        if let Some(entry) = registry.get(&grid.dataset).filter(|e| e.kind == "images") {
            let folder = crate::datasets::folder_for(&grid.dataset, dataset_override);
            let paths = crate::datasets::files(&grid.dataset, entry, &folder, grid.images)?;
            let preprocess = entry.preprocess.clone().unwrap_or_else(|| "none".into());
            let source = Self::Files { paths, preprocess, registered: Some((grid.dataset.clone(), entry.clone(), folder)) };
            source.check_unique_names()?;
            return Ok(source);
        }
        let folder = dataset_override.map(Path::to_path_buf).or_else(|| (grid.dataset != "synthetic").then(|| PathBuf::from(&grid.dataset)));
        let Some(folder) = folder else { return Ok(Self::Synthetic(grid.images)) };
        let entry = crate::datasets::DatasetEntry::plain_folder(&folder);
        let paths = crate::datasets::files(&grid.dataset, &entry, &folder, grid.images).context("key `image.images`")?;
        let source = Self::Files { paths, preprocess: "none".into(), registered: None };
        source.check_unique_names()?;
        Ok(source)
    }

    /// Refuses two files with one name (`a.png` and `a.jpg`): the name is the job's identity.
    fn check_unique_names(&self) -> Result<()> {
        if let Self::Files { paths, .. } = self {
            let mut seen: BTreeMap<String, &Path> = BTreeMap::new();
            for (p, n) in paths.iter().zip(self.names()) {
                if let Some(other) = seen.insert(n.clone(), p) {
                    bail!("{} and {} have the same name `{n}`, which identifies an image's results; rename one", other.display(), p.display());
                }
            }
        }
        Ok(())
    }

    /// The image names (file stems).
    fn names(&self) -> Vec<String> {
        match self {
            Self::Synthetic(n) => (0..*n).map(|i| format!("synthetic{i:05}")).collect(),
            Self::Files { paths, .. } => paths.iter().map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()).collect(),
        }
    }

    /// The images in [−1, 1], CHW, with their names (digests verified for registered sets).
    fn load(&self, side: usize) -> Result<Vec<(String, Vec<f32>)>> {
        match self {
            Self::Synthetic(n) => Ok((0..*n).map(|i| (format!("synthetic{i:05}"), synthetic_image(i, side))).collect()),
            Self::Files { paths, preprocess, registered } => {
                if let Some((name, entry, folder)) = registered {
                    crate::datasets::verify_digests(name, entry, folder, paths)?;
                }
                let names = self.names();
                paths.iter().zip(names).map(|(p, n)| Ok((n, crate::datasets::read_image(p, preprocess, side).context("key `image.side`")?))).collect()
            }
        }
    }
}

/// The images of an experiment, for the image grids (`dipbench grid`).
pub fn load_images(img: &ImageExperiment, dataset_override: Option<&Path>) -> Result<Vec<(String, Vec<f32>)>> {
    Source::find(img, dataset_override)?.load(img.grid.side)
}

/// The file, in a results folder, that lists the images a run used (so that tables can be made
/// where the dataset is not).
const IMAGE_LIST: &str = "images.json";

/// The task of `name` at the experiment's image size (`Task::for_side`), with the bkse
/// checkpoint looked up for the nonlinear blur.
pub fn task_for(img: &ImageExperiment, name: TaskName) -> Result<Task> {
    let bkse = match name {
        TaskName::DeblurNonlinear => Some(crate::weights::locate(crate::weights::known("bkse")?, &crate::weights::checkpoint_dir(None))?),
        _ => None,
    };
    let task = Task::new(name, img.grid.variant, bkse.as_deref()).with_context(|| format!("key `image.tasks`: task `{name}`"))?;
    Ok(task.for_side(img.grid.side))
}

/// Whether a task's operator is the same for every image (no mask or kernel drawn per image),
/// so that images can share one operator in a batch.
fn shared_operator(task: TaskName) -> bool {
    matches!(task, TaskName::Sr4 | TaskName::DeblurGauss | TaskName::PhaseRetrieval | TaskName::Hdr)
}

/// A hex fingerprint of what a job's row depends on: seed, model, checkpoint, image side,
/// variant, noise, metrics, runs and the method's resolved configuration on the task.
pub fn fingerprint(exp: &Experiment, img: &ImageExperiment, job: &ImageJob) -> String {
    let g = &img.grid;
    let cfg = &img.configs[&(job.task, job.method)];
    let prior = img.prior_of(job.method);
    let metrics: Vec<&str> = g.metrics.iter().map(|m| m.name()).collect();
    let text = format!(
        "{}|{}|{}|{:?}|{}|{}|{}|{:?}|{:?}|{}|{}",
        exp.header.seed,
        img.runs(job.task),
        prior.model,
        prior.checkpoint,
        g.side,
        g.variant.name(),
        g.family.name(),
        g.noise,
        metrics,
        job.label,
        toml::to_string(cfg).expect("configs serialise")
    );
    let text = match g.precision {
        dipbench_nn::layers::Precision::F32 => text,
        // A latent prior's autoencoder has run in mixed precision too since the autocast
        // convolutions came in: its earlier half-precision results are not these.
        p if prior.config.is_latent() => format!("{text}|precision {}|vq autocast", format!("{p:?}").to_lowercase()),
        p => format!("{text}|precision {}", format!("{p:?}").to_lowercase()),
    };
    let text = format!("{text}|noise v{}", dipbench_operators::noise::NOISE_VERSION);
    format!("{:016x}", derive_seed(&["fingerprint", &text]))
}

/// The prior of a worker: a pixel-space UNet, or a latent UNet with its autoencoder.
enum Model<B: NnAutodiffBackend> {
    Pixel(UnetPrior<B>),
    Latent(LatentPrior<B>),
}

impl<B: NnAutodiffBackend> Model<B> {
    /// The prior with the autodiff tape (for samplers that differentiate through it).
    fn taped(&self) -> &dyn Prior<B> {
        match self {
            Self::Pixel(p) => p,
            Self::Latent(p) => p,
        }
    }
}

/// A loaded prior of the experiment: the model and the tape-free twin of its UNet.
struct LoadedPrior<B: NnAutodiffBackend> {
    model: Model<B>,
    tape_free: TapeFree<UnetPrior<B::InnerBackend>>,
}

impl<B: NnAutodiffBackend> LoadedPrior<B> {
    /// Loads `spec` (its checkpoint, or the golden fill when it names none: untrained weights,
    /// for plumbing checks) with its UNet in `precision`.
    fn load(spec: &PriorSpec, precision: dipbench_nn::layers::Precision, device: &B::Device) -> Result<Self> {
        let checkpoint = spec.checkpoint.as_ref().map(|c| crate::weights::resolve_checkpoint(c)).transpose()?;
        Ok(if spec.config.is_latent() {
            let prior = crate::network::load_latent_prior::<B>(&spec.config, checkpoint.as_deref(), precision, device)?;
            let schedule = prior.schedule().clone();
            let tape_free = TapeFree::new(UnetPrior::with_schedule(prior.unet().net().clone().inner(), schedule));
            Self { model: Model::Latent(prior), tape_free }
        } else {
            let net = crate::network::load_net::<B>(&spec.config, checkpoint.as_deref(), device)?.with_precision(precision);
            let tape_free = TapeFree::new(UnetPrior::new(net.clone().inner()));
            Self { model: Model::Pixel(UnetPrior::new(net)), tape_free }
        })
    }
}

/// What a worker keeps: the experiment's priors (in the order of [`ImageExperiment::priors`];
/// `None` for one no pending job uses), the images, the LPIPS networks.
pub struct ImageWorker<B: NnAutodiffBackend> {
    priors: Vec<Option<LoadedPrior<B>>>,
    images: Vec<(String, Vec<f32>)>,
    lpips: Vec<(Metric, dipbench_metrics::Lpips<B::InnerBackend>)>,
}

/// The image benchmark of one experiment.
pub struct ImageBenchmark<'a> {
    exp: &'a Experiment,
    img: &'a ImageExperiment,
    names: Vec<String>,
    source: Option<Source>,
}

impl<'a> ImageBenchmark<'a> {
    /// The benchmark of `exp`, an image experiment, for running: its images must be present.
    pub fn for_run(exp: &'a Experiment, img: &'a ImageExperiment, dataset_override: Option<&Path>) -> Result<Self> {
        let source = Source::find(img, dataset_override)?;
        Ok(Self { exp, img, names: source.names(), source: Some(source) })
    }

    /// The benchmark of `exp` for reading results in `out`: the image names come from the
    /// dataset when it is here, else from the list the run left in `out`.
    pub fn for_results(exp: &'a Experiment, img: &'a ImageExperiment, out: &Path, dataset_override: Option<&Path>) -> Result<Self> {
        if let Ok(source) = Source::find(img, dataset_override) {
            return Ok(Self { exp, img, names: source.names(), source: Some(source) });
        }
        let list = out.join(IMAGE_LIST);
        let text = std::fs::read_to_string(&list)
            .with_context(|| format!("the dataset `{}` is not here and {} does not exist: run `dipbench run` first", img.grid.dataset, list.display()))?;
        let names: Vec<String> = serde_json::from_str(&text).with_context(|| format!("{} is not a list of image names", list.display()))?;
        if names.len() != img.grid.images {
            bail!("{} lists {} images, the experiment has {} (key `image.images`)", list.display(), names.len(), img.grid.images);
        }
        Ok(Self { exp, img, names, source: None })
    }

    /// The image names, in dataset order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Refuses a dataset whose images differ from the ground truth this folder's results were
    /// made with (`images/gt/<name>.png`, written by every job), so that a changed folder or a
    /// `--dataset` pointing elsewhere cannot mix two sets of images that share file names.
    pub fn check_ground_truth(&self, out: &Path) -> Result<()> {
        let gt_dir = out.join("images").join("gt");
        let Some(source) = self.source.as_ref().filter(|_| gt_dir.is_dir()) else { return Ok(()) };
        for (name, x) in source.load(self.img.grid.side)? {
            let file = gt_dir.join(format!("{name}.png"));
            let Ok(kept) = std::fs::read(&file) else { continue };
            if png(&x)? != kept {
                bail!(
                    "image `{name}` of the dataset differs from the ground truth the results in {} were made with ({}): \
                     the dataset changed, or --dataset points elsewhere. Results are never mixed: choose another folder with --out",
                    out.display(),
                    file.display()
                );
            }
        }
        Ok(())
    }

    /// Writes the image list into `out` (for tables made where the dataset is not).
    pub fn record_images(&self, out: &Path) -> Result<()> {
        crate::pipeline::store::write_atomic(&out.join(IMAGE_LIST), serde_json::to_string_pretty(&self.names)?.as_bytes())
    }

    /// The per-image metrics of `recon` against `gt` (both in [−1, 1]). A non-finite
    /// reconstruction scores NaN (counted as failed in the table).
    fn score<B: NnAutodiffBackend>(&self, worker: &ImageWorker<B>, recon: &[f32], gt: &[f32], device: &B::Device) -> Result<BTreeMap<String, f64>> {
        let side = self.img.grid.side;
        let to01 = |v: &[f32]| -> Vec<f32> { v.iter().map(|x| (x + 1.0) / 2.0).collect() };
        let finite = recon.iter().all(|v| v.is_finite());
        let (r01, g01) = (to01(recon), to01(gt));
        let mut out = BTreeMap::new();
        for m in &self.img.grid.metrics {
            let v = if !finite {
                f64::NAN
            } else if let Some(v) = m.pixel_score(&g01, &r01, side, side) {
                v
            } else {
                match m {
                    Metric::Lpips(_) => {
                        let net = &worker.lpips.iter().find(|(k, _)| k == m).expect("loaded in prepare").1;
                        let t = |v: &[f32]| Tensor::<B::InnerBackend, 1>::from_floats(v, device).reshape([1, 3, side, side]);
                        let d = net.distance(t(&r01), t(&g01));
                        f64::from(d.into_data().convert::<f32>().to_vec::<f32>().map_err(|e| anyhow::anyhow!("{e:?}"))?[0])
                    }
                    _ => unreachable!("pixel metrics are scored above and set metrics refused in `image.metrics`"),
                }
            };
            out.insert(m.name().to_string(), v);
        }
        Ok(out)
    }

    /// The measurement of `job`'s image (mask, kernel and noise from the (task, image) streams):
    /// the operator and y.
    fn measure<B: NnAutodiffBackend>(
        &self,
        task: &Task,
        job: &ImageJob,
        gt: &[f32],
        device: &B::Device,
    ) -> Result<(Box<dyn dipbench_operators::Operator<B>>, Tensor<B, 2>)> {
        let seed = self.exp.header.seed.to_string();
        let side = self.img.grid.side;
        let shape = ImageShape { c: 3, h: side, w: side };
        let mut op_rng = SampleRng::new(derive_seed(&["image", &seed, job.task.name(), &job.image_name, "operator"]), 1);
        let op = build::<B>(task, shape, &mut op_rng, device)?;
        let x = Tensor::<B, 1>::from_floats(gt, device).reshape([1, shape.len()]);
        let mut noise_rng = SampleRng::new(derive_seed(&["image", &seed, job.task.name(), &job.image_name, "noise"]), 1);
        let clean = op.forward(x);
        let y = match self.img.grid.noise {
            NoiseSpec::Poisson { rate, .. } => PoissonNoise { rate }.apply(clean, &mut noise_rng),
            NoiseSpec::Gaussian { sigma } => GaussianNoise { sigma }.apply(clean, &mut noise_rng),
        };
        Ok((op, y))
    }

    /// The seed of run `run` (of `runs`) of `job`'s sampler.
    fn sampler_seed(&self, job: &ImageJob, run: usize, runs: usize) -> u64 {
        let seed = self.exp.header.seed.to_string();
        let run_text = run.to_string();
        let mut parts = vec!["image", &seed, job.task.name(), &job.label, &job.image_name, "sampler"];
        if runs > 1 {
            parts.extend(["run", &run_text]);
        }
        derive_seed(&parts)
    }
}

fn png(values: &[f32]) -> Result<Vec<u8>> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    crate::measure::render(values, 0).write_to(&mut bytes, image::ImageFormat::Png).context("cannot encode a PNG")?;
    Ok(bytes.into_inner())
}

fn to_vec<B: Backend>(t: Tensor<B, 2>) -> Result<Vec<f32>> {
    t.into_data().convert::<f32>().to_vec::<f32>().map_err(|e| anyhow::anyhow!("{e:?}"))
}

impl Benchmark for ImageBenchmark<'_> {
    type Job = ImageJob;
    type Row = ImageRow;
    type Worker<B: NnAutodiffBackend> = ImageWorker<B>;

    fn experiment(&self) -> &Experiment {
        self.exp
    }

    /// Every job, in a fixed order (task, method, image).
    fn jobs(&self) -> Result<Vec<ImageJob>> {
        let mut out = vec![];
        for &task in &self.img.grid.tasks {
            for (m, method) in self.exp.methods.iter().enumerate().filter(|(_, method)| ImageExperiment::method_runs(method, task)) {
                for (i, name) in self.names.iter().enumerate() {
                    out.push(ImageJob { task, method: m, label: method.label.clone(), image: i, image_name: name.clone() });
                }
            }
        }
        Ok(out)
    }

    fn job_id(&self, job: &ImageJob) -> String {
        job.id()
    }

    fn fingerprint(&self, job: &ImageJob) -> Result<String> {
        Ok(fingerprint(self.exp, self.img, job))
    }

    fn rows_per_job(&self, _job: &ImageJob) -> usize {
        1
    }

    fn batch_key(&self, job: &ImageJob) -> Option<String> {
        shared_operator(job.task).then(|| format!("{}/{}", job.task, job.method))
    }

    fn batch_size(&self) -> usize {
        self.img.grid.batch
    }

    fn describe(&self, job: &ImageJob) -> String {
        format!("{} {} {}", job.task, job.label, job.image_name)
    }

    /// Loads the priors the pending jobs sample with (each from its checkpoint, or the golden
    /// fill when none is given), the images and the metric networks. Every needed checkpoint is
    /// looked up before any is read, so a missing one is named before minutes go into loading
    /// the others; a prior no pending job uses is neither looked up nor loaded.
    fn prepare<B: NnAutodiffBackend>(&self, device: &B::Device, _opts: &RunOptions, pending: &[ImageJob]) -> Result<ImageWorker<B>> {
        let grid = &self.img.grid;
        let source = self.source.as_ref().context("the images are not available")?;
        let needed: BTreeSet<usize> = pending.iter().map(|j| self.img.method_prior[j.method]).collect();
        for &p in &needed {
            let spec = &self.img.priors[p];
            if let Some(c) = &spec.checkpoint {
                let methods = self.img.labels_on(p, &self.exp.methods);
                crate::weights::resolve_checkpoint(c).with_context(|| {
                    format!("the checkpoint of prior `{}`, which {} sample with (without it, remove them from the experiment)", spec.model, methods.join(", "))
                })?;
            }
        }
        let priors = (0..self.img.priors.len())
            .map(|p| needed.contains(&p).then(|| LoadedPrior::load(&self.img.priors[p], grid.precision, device)).transpose())
            .collect::<Result<Vec<_>>>()?;
        let mut lpips = vec![];
        for m in &grid.metrics {
            if let Metric::Lpips(v) = m {
                lpips.push((*m, crate::scoring::load_lpips::<B::InnerBackend>(*v, device)?));
            }
        }
        Ok(ImageWorker { priors, images: source.load(grid.side)?, lpips })
    }

    fn run_batch<B: NnAutodiffBackend>(&self, worker: &ImageWorker<B>, jobs: &[ImageJob], device: &B::Device) -> Result<Vec<JobOutput<ImageRow>>> {
        let first = &jobs[0];
        let (task_name, method) = (first.task, &self.exp.methods[first.method]);
        let cfg = &self.img.configs[&(task_name, first.method)];
        let task = task_for(self.img, task_name)?;
        let runs = self.img.runs(task_name);
        let sigma_y = self.img.grid.noise.sigma();
        // One operator for the batch (the batch key guarantees it is the same for every image);
        // the measurements of every image, each repeated once per run.
        let mut op = None;
        let mut ys = vec![];
        let mut y_pngs = vec![];
        for job in jobs {
            let gt = &worker.images[job.image].1;
            let (o, y) = self.measure::<B>(&task, job, gt, device)?;
            y_pngs.push(to_vec(y.clone())?);
            for _ in 0..runs {
                ys.push(y.clone());
            }
            op.get_or_insert(o);
        }
        let op = op.expect("a batch has a job");
        let sampler = cfg.build::<B>(None)?;
        let loaded =
            worker.priors[self.img.method_prior[first.method]].as_ref().context("the prior of a job that was not pending when the worker was prepared")?;
        let prior: &dyn Prior<B> = if sampler.differentiates_prior() { loaded.model.taped() } else { &loaded.tape_free };
        // On a latent prior the sampler sees A∘D on latents.
        let latent_op;
        let (operator, latent): (&dyn dipbench_operators::Operator<B>, _) = match &loaded.model {
            Model::Pixel(_) => (op.as_ref(), None),
            Model::Latent(p) => {
                latent_op = LatentOperator::new(op.as_ref(), p)?;
                (&latent_op, Some(&latent_op))
            }
        };
        let problem = Problem { prior, operator, y: Tensor::cat(ys, 0), sigma_y, latent };
        let row = |job: &ImageJob, nfe: usize, status: String| ImageRow {
            config: fingerprint(self.exp, self.img, job),
            task: task_name.name().to_string(),
            method: job.label.clone(),
            sampler: method.sampler.clone(),
            image: job.image_name.clone(),
            nfe,
            runs,
            run_metrics: vec![],
            metrics: BTreeMap::new(),
            seconds: 0.0,
            status,
        };
        let common_files = |job: &ImageJob, y: &[f32]| -> Result<Vec<(PathBuf, Vec<u8>)>> {
            Ok(vec![
                (Path::new("images").join("gt").join(format!("{}.png", job.image_name)), png(&worker.images[job.image].1)?),
                (Path::new("images").join(task_name.name()).join("y").join(format!("{}.png", job.image_name)), png(y)?),
            ])
        };
        let unsupported = |why: String| -> Result<Vec<JobOutput<ImageRow>>> {
            jobs.iter()
                .zip(&y_pngs)
                .map(|(job, y)| Ok(JobOutput { rows: vec![row(job, 0, format!("unsupported: {why}"))], files: common_files(job, y)? }))
                .collect()
        };
        let nfe = match sampler.nfe(&problem) {
            Ok(n) => n,
            Err(e) if e.is_unsupported() => return unsupported(e.to_string()),
            Err(e) => return Err(e).with_context(|| format!("method `{}` on task `{task_name}`", method.label)),
        };
        let seeds: Vec<u64> = jobs.iter().flat_map(|job| (0..runs).map(move |r| self.sampler_seed(job, r, runs))).collect();
        let start = Instant::now();
        let out = match sampler.sample(&problem, &mut SampleRng::from_seeds(&seeds)) {
            Ok(x) => x,
            Err(e) if e.is_unsupported() => return unsupported(e.to_string()),
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "method `{}` on task `{task_name}`, images {}",
                        method.label,
                        jobs.iter().map(|j| j.image_name.as_str()).collect::<Vec<_>>().join(", ")
                    )
                });
            }
        };
        // A latent sample is decoded (quantised, as the reference's final decode).
        let out = match &loaded.model {
            Model::Pixel(_) => out,
            Model::Latent(p) => p.decode(out.detach()),
        };
        let seconds = start.elapsed().as_secs_f64() / seeds.len() as f64;
        let d = out.dims()[1];
        let all = to_vec(out)?;
        let mut outputs = vec![];
        for (k, job) in jobs.iter().enumerate() {
            // Best-of-N (DAPS protocol): per metric the best run counts (max PSNR/SSIM, min
            // LPIPS); the saved reconstruction is the best by the first metric. The row keeps
            // every run's metrics: the table applies the rule itself.
            let gt = &worker.images[job.image].1;
            let mut best: Option<(Vec<f32>, BTreeMap<String, f64>)> = None;
            let mut run_metrics = vec![];
            for r in 0..runs {
                let start = (k * runs + r) * d;
                let recon: Vec<f32> = all[start..start + d].iter().map(|v| if v.is_finite() { v.clamp(-1.0, 1.0) } else { f32::NAN }).collect();
                let metrics = self.score(worker, &recon, gt, device)?;
                if runs > 1 {
                    run_metrics.push(metrics.clone());
                }
                best = Some(match best {
                    None => (recon, metrics),
                    Some((best_recon, mut best_metrics)) => {
                        let first_metric = self.img.grid.metrics[0];
                        let better = |m: &str, new: f64, old: f64| {
                            let higher = m.parse::<Metric>().map(Metric::higher_is_better).unwrap_or(false);
                            if old.is_nan() {
                                !new.is_nan()
                            } else if new.is_nan() {
                                false
                            } else if higher {
                                new > old
                            } else {
                                new < old
                            }
                        };
                        let key = first_metric.name();
                        let keep = if better(key, metrics[key], best_metrics[key]) { recon } else { best_recon };
                        for (m, v) in metrics {
                            if better(&m, v, best_metrics[&m]) {
                                best_metrics.insert(m, v);
                            }
                        }
                        (keep, best_metrics)
                    }
                });
            }
            let (recon, metrics) = best.expect("at least one run");
            let mut files = common_files(job, &y_pngs[k])?;
            files.push((Path::new("images").join(task_name.name()).join(slug(&job.label)).join(format!("{}.png", job.image_name)), png(&recon)?));
            let mut r = row(job, nfe, "ok".into());
            r.metrics = metrics;
            r.run_metrics = run_metrics;
            r.seconds = seconds;
            outputs.push(JobOutput { rows: vec![r], files });
        }
        Ok(outputs)
    }

    fn write_tables(&self, rows: &[ImageRow], out: &Path) -> Result<String> {
        table::write_all(self.exp, self.img, rows, out)
    }
}
