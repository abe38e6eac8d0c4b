//! `[image]`: the image benchmark's grid (method × task × image on an ADM UNet prior), typed and
//! validated, with every (task, method) configuration resolved once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use dipbench_models::unet::UnetConfig;
use dipbench_nn::layers::Precision;
use dipbench_operators::image::{TaskName, Variant};
use dipbench_samplers::{PresetContext, SamplerConfig};
use serde::{Deserialize, Serialize};

use super::{Method, check_finite};
use crate::registry::Metric;

/// The dataset family, for presets that depend on it (DPS's ζ′).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// FFHQ.
    #[default]
    Ffhq,
    /// ImageNet.
    Imagenet,
}

impl Family {
    /// The name the presets read.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ffhq => "ffhq",
            Self::Imagenet => "imagenet",
        }
    }
}

/// `[image.noise]`: Gaussian y = A(x) + σ_y·ε, or DPS's Poisson noise (for which σ_y is what the
/// samplers assume).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum NoiseSpec {
    /// Gaussian noise of standard deviation `sigma` in [−1, 1] units (the papers' 0.05).
    Gaussian {
        /// σ_y.
        #[serde(default = "default_sigma_y")]
        sigma: f64,
    },
    /// Poisson noise of rate `rate` (DPS; docs/protocols.md §1.9).
    Poisson {
        /// σ_y the samplers assume.
        #[serde(default = "default_sigma_y")]
        sigma: f64,
        /// λ.
        #[serde(default = "default_rate")]
        rate: f64,
    },
}

impl Default for NoiseSpec {
    fn default() -> Self {
        Self::Gaussian { sigma: default_sigma_y() }
    }
}

impl NoiseSpec {
    /// σ_y.
    pub fn sigma(self) -> f64 {
        match self {
            Self::Gaussian { sigma } | Self::Poisson { sigma, .. } => sigma,
        }
    }

    /// The name the presets read.
    pub fn name(self) -> &'static str {
        match self {
            Self::Gaussian { .. } => "gaussian",
            Self::Poisson { .. } => "poisson",
        }
    }
}

fn default_sigma_y() -> f64 {
    0.05
}

fn default_rate() -> f64 {
    1.0
}

/// `[image]` as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageGrid {
    /// `synthetic` (deterministic test pictures, no download), a dataset of the registry
    /// (`datasets.toml`) or a folder of PNG/JPEG images (sorted by name; the first `images`).
    pub dataset: String,
    /// Dataset family, for the presets that depend on it.
    #[serde(default)]
    pub family: Family,
    /// Number of images.
    pub images: usize,
    /// Image side in pixels (the model's).
    pub side: usize,
    /// UNet configuration (`ffhq256`, `imagenet256`, `tiny32`).
    pub model: String,
    /// Checkpoint: a known name (`dipbench weights`) or a file. Absent: the golden fill, i.e.
    /// untrained weights, for plumbing checks only (the table says so).
    pub checkpoint: Option<String>,
    /// Tasks.
    pub tasks: Vec<TaskName>,
    /// Whose operator definitions where DPS and DAPS differ.
    #[serde(default)]
    pub variant: Variant,
    /// Measurement noise.
    #[serde(default)]
    pub noise: NoiseSpec,
    /// Per-image metrics.
    #[serde(default = "default_image_metrics")]
    pub metrics: Vec<Metric>,
    /// Set metrics computed when the tables are written, per (task, method), between the saved
    /// reconstructions and the ground truth (`fid`, `fid-torchvision`, `kid`).
    #[serde(default)]
    pub set_metrics: Vec<Metric>,
    /// Runs per (task, image) where the protocol reports the best of N (DAPS: phase retrieval
    /// 4), e.g. `runs = { phase_retrieval = 4 }`; 1 elsewhere.
    #[serde(default)]
    pub runs: BTreeMap<TaskName, usize>,
    /// Arithmetic precision of the UNet prior (`f32`, or mixed precision `f16` / `bf16`).
    #[serde(default)]
    pub precision: Precision,
    /// Images of one (task, method) run through the sampler together (results do not depend on
    /// it beyond float rounding; a GPU needs it to be busy).
    #[serde(default = "one")]
    pub batch: usize,
}

fn one() -> usize {
    1
}

fn default_image_metrics() -> Vec<Metric> {
    vec![Metric::Psnr, Metric::Ssim]
}

/// `[paper]`: where the published numbers of this experiment's table are
/// (`results/paper/*.csv`, columns paper,table,dataset,task,method,prior,metric,value,std).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaperReference {
    /// The CSV file, relative to the working directory.
    pub file: PathBuf,
    /// Which of its tables (column `table`).
    pub tables: Vec<String>,
    /// Its dataset name (column `dataset`).
    pub dataset: String,
    /// Our task name → the paper's, where they differ.
    #[serde(default)]
    pub tasks: BTreeMap<String, String>,
    /// Our method label → the paper's, where they differ.
    #[serde(default)]
    pub methods: BTreeMap<String, String>,
}

/// A validated image experiment.
#[derive(Debug, Clone)]
pub struct ImageExperiment {
    /// The grid.
    pub grid: ImageGrid,
    /// The UNet configuration of `grid.model`.
    pub model: UnetConfig,
    /// Each (task, method index)'s resolved sampler configuration, for the tasks the method runs.
    pub configs: BTreeMap<(TaskName, usize), SamplerConfig>,
    /// The priors the methods sample with: `[0]` is `image.model` with `image.checkpoint`, then
    /// each other (model, checkpoint) a method names, in the order the methods first name them.
    pub priors: Vec<PriorSpec>,
    /// Each method's index into `priors`.
    pub method_prior: Vec<usize>,
}

/// A prior of an image experiment: a UNet config (pixel, or latent with its autoencoder) and
/// its weights.
#[derive(Debug, Clone)]
pub struct PriorSpec {
    /// The config name as written (`image.model` or a method's `model`).
    pub model: String,
    /// That configuration.
    pub config: UnetConfig,
    /// The checkpoint as written; `None`: the golden fill (untrained weights).
    pub checkpoint: Option<String>,
}

/// The side of the images a UNet config works on: its own, or for a latent UNet the side its
/// autoencoder decodes to.
fn image_side(model: &UnetConfig) -> usize {
    match dipbench_models::latent::autoencoder_for(model) {
        Some(vq) => vq.resolution,
        None => model.image_size,
    }
}

/// Refuses a checkpoint of the registry (`dipbench weights`) made for another network than
/// `model` (a file path is checked when it is read).
fn check_checkpoint_config(key: &str, checkpoint: Option<&str>, model: &str) -> Result<()> {
    if let Some(w) = checkpoint.and_then(|c| crate::weights::known(c).ok())
        && w.config != model
    {
        bail!("{key} = `{}` is a checkpoint of `{}`, but the prior is `{model}`", w.name, w.config);
    }
    Ok(())
}

/// Checks that `config` (named `name` at `key`) gives images of `side`.
fn check_side(key: &str, name: &str, config: &UnetConfig, side: usize) -> Result<()> {
    let own = image_side(config);
    if own != side {
        bail!("{key} = `{name}` {} {own}×{own} images but `image.side` = {side}", if config.is_latent() { "decodes" } else { "takes" });
    }
    Ok(())
}

/// Labels that name folders of the results besides the methods' (`images/<task>/y`,
/// `images/gt`), compared case-insensitively.
const RESERVED_LABELS: &[&str] = &["y", "gt"];

impl ImageExperiment {
    /// Checks the grid and resolves every (task, method) configuration.
    pub fn validate(grid: ImageGrid, methods: &[Method]) -> Result<Self> {
        if grid.images == 0 || grid.tasks.is_empty() {
            bail!("keys `image.images` ≥ 1 and `image.tasks` (non-empty) are required");
        }
        if grid.images > 1_000_000 {
            bail!("key `image.images` = {}: at most a million images", grid.images);
        }
        super::check_distinct("image.metrics", &grid.metrics)?;
        super::check_distinct("image.set_metrics", &grid.set_metrics)?;
        super::check_distinct("image.tasks", &grid.tasks)?;
        if grid.batch == 0 || grid.batch > 4096 {
            bail!("key `image.batch` = {}: must be in 1..=4096", grid.batch);
        }
        let model = UnetConfig::by_name(&grid.model).with_context(|| format!("key `image.model`: `{}`", grid.model))?;
        // A latent-diffusion UNet works through its autoencoder: the images are the decoder's.
        check_side("key `image.model`", &grid.model, &model, grid.side)?;
        let (sigma, rate) = match grid.noise {
            NoiseSpec::Gaussian { sigma } => (sigma, 1.0),
            NoiseSpec::Poisson { sigma, rate } => (sigma, rate),
        };
        if !(sigma.is_finite() && sigma >= 0.0 && rate.is_finite() && rate > 0.0) {
            bail!("key `image.noise`: sigma must be finite and ≥ 0, rate finite and > 0 (got {:?})", grid.noise);
        }
        if grid.metrics.is_empty() {
            bail!("key `image.metrics` must name at least one metric");
        }
        if let Some(m) = grid.metrics.iter().find(|m| !m.per_image()) {
            bail!("key `image.metrics`: `{m}` is a set metric; list it in `image.set_metrics`");
        }
        if let Some(m) = grid.set_metrics.iter().find(|m| m.per_image()) {
            bail!("key `image.set_metrics`: `{m}` is a per-image metric; list it in `image.metrics`");
        }
        let tasks: BTreeSet<TaskName> = grid.tasks.iter().copied().collect();
        if tasks.len() != grid.tasks.len() {
            bail!("key `image.tasks`: a task appears twice");
        }
        for (t, n) in &grid.runs {
            if !tasks.contains(t) || *n == 0 || *n > 1000 {
                bail!("key `image.runs.{t}`: must name a task of `image.tasks`, with 1 to 1000 runs");
            }
        }
        let mut slugs: BTreeMap<String, &str> = BTreeMap::new();
        for m in methods {
            if m.preset == "gmm" && m.sampler != "exact" {
                bail!("method `{}`: image experiments need an explicit `preset` (the default `gmm` is the Gaussian-mixture setting)", m.label);
            }
            let slug = super::slug(&m.label).to_lowercase();
            if RESERVED_LABELS.contains(&slug.as_str()) {
                bail!("method label `{}` is reserved (the results keep the measurements in `y/` and the ground truth in `gt/`)", m.label);
            }
            if let Some(other) = slugs.insert(slug, &m.label) {
                bail!("method labels `{other}` and `{}` name the same results folder; rename one", m.label);
            }
            for t in m.per_task.keys().chain(&m.tasks) {
                let key = if m.tasks.contains(t) { "tasks" } else { "per_task" };
                let name: TaskName = t.parse().with_context(|| format!("method `{}`: key `{key}`: `{t}`", m.label))?;
                if !tasks.contains(&name) {
                    bail!("method `{}`: key `{key}` names task `{t}`, which the experiment does not run (`image.tasks`)", m.label);
                }
            }
            super::check_distinct(&format!("method `{}`: key `tasks`", m.label), &m.tasks)?;
        }
        let (priors, method_prior) = Self::priors(&grid, &model, methods)?;
        let mut configs = BTreeMap::new();
        for &task in &grid.tasks {
            for (i, m) in methods.iter().enumerate() {
                if Self::method_runs(m, task) {
                    configs.insert((task, i), Self::resolve(&grid, m, task)?);
                }
            }
        }
        Ok(Self { grid, model, configs, priors, method_prior })
    }

    /// The experiment's priors and each method's (the fields of the same names).
    fn priors(grid: &ImageGrid, model: &UnetConfig, methods: &[Method]) -> Result<(Vec<PriorSpec>, Vec<usize>)> {
        check_checkpoint_config("key `image.checkpoint`", grid.checkpoint.as_deref(), &grid.model)?;
        let mut priors = vec![PriorSpec { model: grid.model.clone(), config: model.clone(), checkpoint: grid.checkpoint.clone() }];
        let mut method_prior = vec![];
        for m in methods {
            let Some(name) = &m.model else {
                if m.checkpoint.is_some() {
                    bail!("method `{}`: key `checkpoint` goes with a `model` of its own (the experiment's prior takes `image.checkpoint`)", m.label);
                }
                method_prior.push(0);
                continue;
            };
            let key = format!("method `{}`: key `model`", m.label);
            let config = UnetConfig::by_name(name).with_context(|| format!("{key}: `{name}`"))?;
            check_side(&key, name, &config, grid.side)?;
            match (&grid.checkpoint, &m.checkpoint) {
                (Some(_), None) => bail!(
                    "method `{}`: key `checkpoint` is required: the experiment's prior has a checkpoint (`image.checkpoint`), and untrained golden-fill weights may not share its table",
                    m.label
                ),
                (None, Some(_)) => bail!(
                    "method `{}`: key `checkpoint`: the experiment runs untrained golden-fill weights (no `image.checkpoint`), and trained weights may not share its table",
                    m.label
                ),
                _ => {}
            }
            check_checkpoint_config(&format!("method `{}`: key `checkpoint`", m.label), m.checkpoint.as_deref(), name)?;
            let at = priors.iter().position(|p| p.model == *name && p.checkpoint == m.checkpoint).unwrap_or_else(|| {
                priors.push(PriorSpec { model: name.clone(), config, checkpoint: m.checkpoint.clone() });
                priors.len() - 1
            });
            method_prior.push(at);
        }
        Ok((priors, method_prior))
    }

    /// The labels of the methods (of `methods`, the experiment's) that sample with prior `p`.
    pub fn labels_on<'a>(&self, p: usize, methods: &'a [Method]) -> Vec<&'a str> {
        methods.iter().zip(&self.method_prior).filter(|(_, q)| **q == p).map(|(m, _)| m.label.as_str()).collect()
    }

    /// The prior method `method` (an index of the experiment's methods) samples with.
    pub fn prior_of(&self, method: usize) -> &PriorSpec {
        &self.priors[self.method_prior[method]]
    }

    /// Whether `method` runs `task` (its `tasks` list is empty or names it).
    pub fn method_runs(method: &Method, task: TaskName) -> bool {
        method.tasks.is_empty() || method.tasks.iter().any(|t| t.parse::<TaskName>().ok() == Some(task))
    }

    /// The resolved configuration of `method` on `task` (preset for the task + overrides;
    /// `per_task.<task>` may replace the preset and add overrides of its own).
    fn resolve(grid: &ImageGrid, method: &Method, task: TaskName) -> Result<SamplerConfig> {
        let mut extra = method.per_task.iter().find(|(k, _)| k.parse::<TaskName>().ok() == Some(task)).map(|(_, v)| v.clone()).unwrap_or_default();
        let preset = match extra.remove("preset") {
            Some(toml::Value::String(p)) => p,
            Some(other) => bail!("method `{}`: key `per_task.{task}.preset` must be a string, got {other}", method.label),
            None => method.preset.clone(),
        };
        let context = PresetContext { task: task.name(), dataset: grid.family.name(), noise: grid.noise.name() };
        let config = SamplerConfig::preset_in(&method.sampler, &preset, Some(&context))
            .and_then(|c| c.with_overrides(&method.settings))
            .and_then(|c| c.with_overrides(&extra))
            .with_context(|| format!("method `{}` on task `{task}`", method.label))?;
        check_finite(&config, &format!("method `{}` on task `{task}`", method.label))?;
        Ok(config)
    }

    /// Runs per (task, image) of `task`.
    pub fn runs(&self, task: TaskName) -> usize {
        self.grid.runs.get(&task).copied().unwrap_or(1)
    }

    /// The settings of the folder fingerprint (all but the grid's extent; tasks, images, runs,
    /// set metrics and the batch size are per job or table-time).
    pub fn folder_key(&self) -> String {
        let g = &self.grid;
        format!("image|{}|{}|{}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}", g.dataset, g.side, g.model, g.checkpoint, g.variant, g.family, g.noise, g.metrics, g.precision)
    }
}
