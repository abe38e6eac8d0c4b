//! Experiment files (`experiments/*.toml`): what to run, read strictly. Every table and key is
//! known; an unknown key, a wrong type or a bad value is an error that names the file, the key
//! and, from the TOML parser, the line.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use dipbench_samplers::SamplerConfig;
use serde::{Deserialize, Serialize};

/// A whole experiment file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    /// Identity and seed.
    pub experiment: Header,
    /// The Gaussian-mixture benchmark's grid (required when `experiment.benchmark = "gmm"`).
    pub gmm: Option<GmmGrid>,
    /// The image benchmark's grid (required when `experiment.benchmark = "image"`).
    pub image: Option<ImageGrid>,
    /// How samples are scored.
    #[serde(default)]
    pub metric: MetricSettings,
    /// The methods, in table order.
    #[serde(rename = "method")]
    pub methods: Vec<Method>,
    /// The paper's numbers to print beside ours (image benchmark).
    pub paper: Option<PaperReference>,
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
    /// Our task name → the paper's, where they differ (e.g. `inpaint_random_92 = "inpaint_random"`).
    #[serde(default)]
    pub tasks: std::collections::BTreeMap<String, String>,
    /// Our method label → the paper's, where they differ.
    #[serde(default)]
    pub methods: std::collections::BTreeMap<String, String>,
}

/// `[experiment]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// Name; results go to `results/<name>/` unless `--out` says otherwise.
    pub name: String,
    /// Which benchmark: `gmm`.
    pub benchmark: String,
    /// Seed of the whole experiment; every job's seed is derived from it and the job's identity.
    pub seed: u64,
    /// Free text for the table caption.
    #[serde(default)]
    pub description: String,
}

/// `[gmm]`: the grid of the MCGdiff Gaussian-mixture benchmark (spec/gmm.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GmmGrid {
    /// Dimensions d (even).
    pub dims: Vec<usize>,
    /// Measurement dimensions d_y (each < d).
    pub obs_dims: Vec<usize>,
    /// Replicates per (d, d_y, budget).
    pub replicates: usize,
    /// Samples drawn per method and replicate (and exact reference draws).
    pub samples: usize,
    /// Discrete schedule of the prior's ε̂ view (`mcgdiff-gmm` as the original, or `linear`).
    #[serde(default = "default_schedule")]
    pub schedule: String,
    /// Step budgets, each with its DDIM η.
    pub budgets: Vec<Budget>,
}

fn default_schedule() -> String {
    "mcgdiff-gmm".into()
}

/// `[image]`: the image benchmark (method × task × image on an ADM UNet prior).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageGrid {
    /// `synthetic` (deterministic test pictures, no download) or a folder of PNG/JPEG images
    /// (sorted by name; the first `images` are used).
    pub dataset: String,
    /// Dataset family for the presets that depend on it (`ffhq` or `imagenet`; DPS ζ′).
    #[serde(default = "default_family")]
    pub family: String,
    /// Number of images.
    pub images: usize,
    /// Image side in pixels (must be the model's).
    pub side: usize,
    /// UNet configuration (`ffhq256`, `imagenet256`, `tiny32`).
    pub model: String,
    /// Checkpoint: a known name (`dipbench weights`) or a file. Absent: the golden fill, i.e.
    /// untrained weights, for plumbing checks only (the table says so).
    pub checkpoint: Option<String>,
    /// Task names (`dipbench measure --help` lists them).
    pub tasks: Vec<String>,
    /// Whose operator definitions where DPS and DAPS differ (`dps` or `daps`).
    #[serde(default = "default_variant")]
    pub variant: String,
    /// Measurement noise.
    #[serde(default)]
    pub noise: NoiseSpec,
    /// Per-image metrics (`psnr`, `psnr-piq`, `ssim`, `ssim-piq`, `lpips-alex`, `lpips-vgg`,
    /// `lpips-vgg-piq`).
    #[serde(default = "default_image_metrics")]
    pub metrics: Vec<String>,
    /// Set metrics computed when the tables are written, per (task, method), between the saved
    /// reconstructions and the ground truth (`fid`, `fid-torchvision`, `kid`; needs the Inception
    /// weights, see `dipbench weights`).
    #[serde(default)]
    pub set_metrics: Vec<String>,
    /// Runs per (task, image) where the protocol reports the best of N (DAPS: phase retrieval
    /// 4), e.g. `runs = { phase_retrieval = 4 }`; 1 elsewhere.
    #[serde(default)]
    pub runs: std::collections::BTreeMap<String, usize>,
    /// Arithmetic precision of the UNet prior: `f32`, or guided-diffusion-style mixed precision
    /// with `f16` / `bf16` convolutions ([`dipbench_nn::layers::Precision`]; for GPUs — on the
    /// CPU backend half precision is slower). Part of the results' fingerprint.
    #[serde(default = "default_precision")]
    pub precision: String,
}

fn default_precision() -> String {
    "f32".into()
}

fn default_family() -> String {
    "ffhq".into()
}

fn default_variant() -> String {
    "dps".into()
}

fn default_image_metrics() -> Vec<String> {
    vec!["psnr".into(), "ssim".into()]
}

/// `[image.noise]`: Gaussian y = A(x) + σ_y·ε or DPS's Poisson noise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoiseSpec {
    /// `gaussian` or `poisson`.
    pub kind: String,
    /// σ_y in [−1, 1] units (the papers' 0.05); for Poisson, the σ_y the samplers assume.
    #[serde(default = "default_sigma_y")]
    pub sigma: f64,
    /// Poisson rate λ.
    #[serde(default = "default_rate")]
    pub rate: f64,
}

impl Default for NoiseSpec {
    fn default() -> Self {
        Self { kind: "gaussian".into(), sigma: default_sigma_y(), rate: default_rate() }
    }
}

fn default_sigma_y() -> f64 {
    0.05
}

fn default_rate() -> f64 {
    1.0
}

impl ImageGrid {
    /// The `precision` key as the UNet's [`dipbench_nn::layers::Precision`].
    pub fn unet_precision(&self) -> Result<dipbench_nn::layers::Precision> {
        use dipbench_nn::layers::Precision;
        Ok(match self.precision.as_str() {
            "f32" => Precision::F32,
            "f16" => Precision::F16,
            "bf16" => Precision::Bf16,
            other => bail!("key `image.precision`: `{other}` (known: f32, f16, bf16)"),
        })
    }

    fn validate(&self, methods: &[Method]) -> Result<()> {
        if self.images == 0 || self.tasks.is_empty() {
            bail!("keys `image.images` ≥ 1 and `image.tasks` (non-empty) are required");
        }
        if !matches!(self.variant.as_str(), "dps" | "daps") {
            bail!("key `image.variant`: `{}` (known: dps, daps)", self.variant);
        }
        if !matches!(self.noise.kind.as_str(), "gaussian" | "poisson") || self.noise.sigma < 0.0 || self.noise.rate <= 0.0 {
            bail!("key `image.noise`: kind gaussian|poisson, sigma ≥ 0, rate > 0 (got {:?})", self.noise);
        }
        if !matches!(self.family.as_str(), "ffhq" | "imagenet") {
            bail!("key `image.family`: `{}` (known: ffhq, imagenet)", self.family);
        }
        self.unet_precision()?;
        if self.metrics.is_empty() {
            bail!("key `image.metrics` must name at least one metric");
        }
        for m in &self.metrics {
            crate::score_cmd::Metric::parse(m).context("key `image.metrics`")?;
        }
        for m in &self.set_metrics {
            let parsed = crate::score_cmd::Metric::parse(m).context("key `image.set_metrics`")?;
            if !matches!(parsed, crate::score_cmd::Metric::Fid(_) | crate::score_cmd::Metric::Kid) {
                bail!("key `image.set_metrics`: `{m}` is a per-image metric; list it in `image.metrics`");
            }
        }
        for (t, n) in &self.runs {
            if !self.tasks.contains(t) || *n == 0 {
                bail!("key `image.runs.{t}`: must name a task of `image.tasks` with at least 1 run");
            }
        }
        for t in &self.tasks {
            // The task's name and variant only: checkpoints (bkse) are looked up when jobs run,
            // so an experiment can be validated, sharded and scripted anywhere.
            if !matches!(t.as_str(), "deblur_nonlinear" | "nonlinear_deblur") {
                crate::image_bench::task_for(self, t)?;
            }
            for m in methods {
                crate::image_bench::method_config(self, m, t)?;
            }
        }
        Ok(())
    }
}

/// One step budget.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Number of steps (grid points; DAPS: annealing levels).
    pub steps: usize,
    /// DDIM stochasticity η for the samplers that take one.
    pub eta: f64,
}

/// `[metric]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricSettings {
    /// Number of random directions of the sliced distances (the paper: 100).
    #[serde(default = "default_projections")]
    pub projections: usize,
}

impl Default for MetricSettings {
    fn default() -> Self {
        Self { projections: default_projections() }
    }
}

fn default_projections() -> usize {
    100
}

/// One `[[method]]`: a table row. `sampler` and `preset` pick the configuration; every other key
/// overrides a field of that sampler's configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Method {
    /// Row label (unique).
    pub label: String,
    /// Sampler name (`dps`, `daps`, …, `exact`).
    pub sampler: String,
    /// Preset of that sampler (default `gmm`).
    #[serde(default = "default_preset")]
    pub preset: String,
    /// Image benchmark: per-task changes, `per_task.<task> = { preset = …, key = value }`, applied
    /// after the method's own (for a task where the preset has no published value).
    #[serde(default)]
    pub per_task: std::collections::BTreeMap<String, toml::Table>,
    /// Overrides of the preset's fields.
    #[serde(flatten)]
    pub settings: toml::Table,
}

fn default_preset() -> String {
    "gmm".into()
}

impl Method {
    /// The resolved sampler configuration (preset + overrides).
    pub fn config(&self) -> Result<SamplerConfig> {
        SamplerConfig::preset(&self.sampler, &self.preset)
            .and_then(|c| c.with_overrides(&self.settings))
            .with_context(|| format!("method `{}`", self.label))
    }
}

/// A loaded experiment with the path it came from.
#[derive(Debug, Clone)]
pub struct LoadedExperiment {
    /// The file.
    pub path: PathBuf,
    /// Its content.
    pub experiment: Experiment,
    /// Resolved sampler configurations, one per method.
    pub configs: Vec<SamplerConfig>,
}

impl Experiment {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<LoadedExperiment> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read experiment file {}", path.display()))?;
        let experiment: Experiment =
            toml::from_str(&text).with_context(|| format!("invalid experiment file {}", path.display()))?;
        let configs = experiment.validate().with_context(|| format!("invalid experiment file {}", path.display()))?;
        Ok(LoadedExperiment { path: path.to_path_buf(), experiment, configs })
    }

    /// Checks values that the schema cannot and resolves every method's configuration.
    pub fn validate(&self) -> Result<Vec<SamplerConfig>> {
        match self.experiment.benchmark.as_str() {
            "gmm" => {
                let g = self.gmm.as_ref().context("`experiment.benchmark = \"gmm\"` needs a [gmm] table")?;
                g.validate()?;
            }
            "image" => {
                let g = self.image.as_ref().context("`experiment.benchmark = \"image\"` needs an [image] table")?;
                if self.methods.iter().any(|m| m.preset == "gmm" && m.sampler != "exact") {
                    bail!("image experiments need an explicit `preset` per method (the default `gmm` is the Gaussian-mixture setting)");
                }
                g.validate(&self.methods)?;
            }
            other => bail!("key `experiment.benchmark`: unknown benchmark `{other}` (known: gmm, image)"),
        }
        if self.metric.projections == 0 {
            bail!("key `metric.projections` must be positive");
        }
        if self.methods.is_empty() {
            bail!("no [[method]] tables: nothing to run");
        }
        let mut labels = std::collections::HashSet::new();
        for m in &self.methods {
            if !labels.insert(m.label.as_str()) {
                bail!("two methods are labelled `{}`", m.label);
            }
            if m.label.contains([',', '"', '\n', '|']) {
                bail!("method label `{}` contains a character not allowed in tables (, \" | newline)", m.label);
            }
        }
        if self.image.is_some() {
            // Image presets depend on the task: image_bench::method_config resolves them per task.
            return Ok(vec![]);
        }
        self.methods.iter().map(Method::config).collect()
    }
}

impl GmmGrid {
    fn validate(&self) -> Result<()> {
        if self.dims.is_empty() || self.obs_dims.is_empty() || self.budgets.is_empty() {
            bail!("keys `gmm.dims`, `gmm.obs_dims` and `gmm.budgets` must not be empty");
        }
        for &d in &self.dims {
            if d == 0 || d % 2 != 0 {
                bail!("key `gmm.dims`: {d} is not a positive even dimension (the means repeat a 2-D pattern)");
            }
            for &dy in &self.obs_dims {
                if dy == 0 || dy > d {
                    bail!("key `gmm.obs_dims`: d_y = {dy} must be in 1..={d}");
                }
            }
        }
        if self.replicates == 0 || self.samples < 2 {
            bail!("keys `gmm.replicates` ≥ 1 and `gmm.samples` ≥ 2 are required");
        }
        dipbench_models::VpSchedule::by_name(&self.schedule).context("key `gmm.schedule`")?;
        for b in &self.budgets {
            if b.steps < 2 || !(0.0..=1.0).contains(&b.eta) {
                bail!("key `gmm.budgets`: steps ≥ 2 and η in [0, 1] required, got {b:?}");
            }
        }
        Ok(())
    }
}
