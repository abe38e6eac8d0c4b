//! Experiment files (`experiments/*.toml`), parsed then validated into a typed [`Experiment`]:
//! every table and key is known, every closed set is an enum, and an unknown key, a wrong type
//! or a bad value is an error naming the file, the key and, from the TOML parser, the line.
//! Nothing downstream re-checks a string.

pub mod gmm;
pub mod image;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use dipbench_operators::derive_seed;
use dipbench_samplers::SamplerConfig;
use serde::{Deserialize, Serialize};

pub use gmm::{Budget, GmmExperiment, GmmGrid};
pub use image::{ImageExperiment, ImageGrid, NoiseSpec, PaperReference, PriorSpec};

/// The benchmarks an experiment can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BenchmarkKind {
    /// The exact-posterior Gaussian-mixture benchmark (`docs/gmm.md`).
    Gmm,
    /// Method × task × image on an ADM UNet prior.
    Image,
}

/// An experiment file as written (every key known).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentFile {
    /// Identity and seed.
    pub experiment: Header,
    /// The GMM grid (with `benchmark = "gmm"`).
    pub gmm: Option<GmmGrid>,
    /// The image grid (with `benchmark = "image"`).
    pub image: Option<ImageGrid>,
    /// How samples are scored.
    #[serde(default)]
    pub metric: MetricSettings,
    /// The methods, in table order.
    #[serde(rename = "method")]
    pub methods: Vec<Method>,
    /// The papers' numbers to print beside ours (image benchmark).
    pub paper: Option<PaperReference>,
}

/// `[experiment]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// Name: letters, digits, `.`, `_`, `-` (it names `results/<name>/`).
    pub name: String,
    /// Which benchmark.
    pub benchmark: BenchmarkKind,
    /// Seed of the whole experiment; every job's seed is derived from it and the job's identity.
    pub seed: u64,
    /// Free text for the table caption.
    #[serde(default)]
    pub description: String,
}

/// `[metric]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricSettings {
    /// Random directions of the sliced distances (the paper: 100).
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
    /// after the method's own.
    #[serde(default)]
    pub per_task: std::collections::BTreeMap<String, toml::Table>,
    /// Image benchmark: the tasks of `image.tasks` this method runs (empty: all). The others
    /// show "–" with the reason, as the papers' tables leave a method out of some tasks.
    #[serde(default)]
    pub tasks: Vec<String>,
    /// Image benchmark: the prior this method samples with where it is not `image.model` (a
    /// latent UNet config for a table's latent-diffusion rows, e.g. `ffhq256-ldm`); it must give
    /// images of `image.side`.
    #[serde(default)]
    pub model: Option<String>,
    /// Image benchmark: the checkpoint of `model` (a known name or a file); required exactly
    /// when the experiment has an `image.checkpoint`, so that trained and untrained priors never
    /// share a table.
    #[serde(default)]
    pub checkpoint: Option<String>,
    /// Overrides of the preset's fields.
    #[serde(flatten)]
    pub settings: toml::Table,
}

fn default_preset() -> String {
    "gmm".into()
}

/// What an experiment runs, per benchmark.
#[derive(Debug, Clone)]
pub enum Kind {
    /// The GMM benchmark, its grid and resolved sampler configurations.
    Gmm(GmmExperiment),
    /// The image benchmark, its grid and resolved per-task configurations.
    Image(ImageExperiment),
}

/// A validated experiment.
#[derive(Debug, Clone)]
pub struct Experiment {
    /// The file it was read from.
    pub path: PathBuf,
    /// `[experiment]`.
    pub header: Header,
    /// The benchmark and its settings.
    pub kind: Kind,
    /// `[metric]`.
    pub metric: MetricSettings,
    /// The methods, in table order.
    pub methods: Vec<Method>,
    /// `[paper]`.
    pub paper: Option<PaperReference>,
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

/// Refuses a list naming a value twice (each value of a grid makes its own jobs or columns),
/// naming the key.
pub(crate) fn check_distinct<T: PartialEq + std::fmt::Debug>(key: &str, values: &[T]) -> Result<()> {
    for (i, v) in values.iter().enumerate() {
        if values[..i].contains(v) {
            bail!("key `{key}`: {v:?} appears twice (each value makes its own jobs or table rows)");
        }
    }
    Ok(())
}

/// Whether a name is in the safe set: ASCII letters, digits, `.`, `_`, `-`, not starting with
/// `.` or `-` (names become folder names and words of shell scripts).
pub fn is_safe_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 100 && !name.starts_with(['.', '-']) && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Checks that every float of a sampler configuration is finite, naming the key.
pub fn check_finite(config: &SamplerConfig, what: &str) -> Result<()> {
    fn walk(v: &toml::Value, key: &str, what: &str) -> Result<()> {
        match v {
            toml::Value::Float(f) if !f.is_finite() => bail!("{what}: key `{key}` = {f} is not finite"),
            toml::Value::Table(t) => t.iter().try_for_each(|(k, v)| walk(v, k, what)),
            toml::Value::Array(a) => a.iter().try_for_each(|v| walk(v, key, what)),
            _ => Ok(()),
        }
    }
    walk(&toml::Value::try_from(config).context("configs serialise")?, "", what)
}

/// The name of a `[table]` or `[[array]]` header line (`[[method]]` → `method`).
fn header_name(line: &str) -> String {
    line.trim().trim_start_matches('[').split(']').next().unwrap_or_default().trim().to_string()
}

/// The dotted key written at byte `offset` of a TOML document (`image.precision`,
/// `method.preset`): the `key =` of that line under the last `[table]` or `[[array]]` header
/// above it, for naming the key in a parse error. `None` where the line has no key.
pub fn key_at(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line = text[start..].lines().next().unwrap_or_default();
    let key = line.split_once('=').map(|(k, _)| k.trim().trim_matches('"').to_string()).filter(|k| !k.is_empty() && !k.starts_with('#'));
    let table = text[..start].lines().rev().map(str::trim).find(|l| l.starts_with('[')).map(header_name);
    match (table, key) {
        (Some(t), Some(k)) if !t.is_empty() => Some(format!("{t}.{k}")),
        (_, Some(k)) => Some(k),
        (Some(t), None) if !t.is_empty() => Some(t),
        _ => None,
    }
}

/// The key of a parse error that the TOML reader reports on a table's header (it does for values
/// read through a flattened map, e.g. an integer beyond 64 bits in a `[[method]]` table): the
/// first `key = <integer>` line of that table whose integer does not fit in i64, under the
/// table's name; otherwise the key at the span's start ([`key_at`]).
fn error_key(text: &str, span: std::ops::Range<usize>) -> Option<String> {
    let from = text[..span.start.min(text.len())].rfind('\n').map_or(0, |i| i + 1);
    let rest = &text[from..];
    let header = rest.lines().next().unwrap_or_default().trim();
    if !header.starts_with('[') {
        return key_at(text, span.start);
    }
    let table = header_name(header);
    // The table's lines: from its header to the next header.
    let end = rest.char_indices().filter(|&(i, c)| c == '\n' && rest[i + 1..].trim_start().starts_with('[')).map(|(i, _)| i).next().unwrap_or(rest.len());
    let oversized = rest[..end].lines().skip(1).filter_map(|l| l.split_once('=')).find(|(_, v)| {
        let v = v.split('#').next().unwrap_or_default().trim().replace('_', "");
        let digits = v.trim_start_matches(['+', '-']);
        !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) && v.parse::<i64>().is_err()
    });
    Some(oversized.map_or(table.clone(), |(k, _)| format!("{table}.{}", k.trim())))
}

impl Experiment {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read experiment file {}", path.display()))?;
        let file: ExperimentFile = toml::from_str(&text).map_err(|e| {
            let key = e.span().and_then(|span| error_key(&text, span)).map(|k| format!(" (key `{k}`)")).unwrap_or_default();
            anyhow::Error::new(e).context(format!("invalid experiment file {}{key}", path.display()))
        })?;
        Self::validate(file, path).with_context(|| format!("invalid experiment file {}", path.display()))
    }

    /// Checks what the schema cannot and resolves every method's configuration.
    pub fn validate(file: ExperimentFile, path: &Path) -> Result<Self> {
        let ExperimentFile { experiment: header, gmm, image, metric, methods, paper } = file;
        if !is_safe_name(&header.name) {
            bail!("key `experiment.name` = {:?}: use letters, digits, `.`, `_` and `-` only (it names a folder)", header.name);
        }
        if metric.projections == 0 || metric.projections > 100_000 {
            bail!("key `metric.projections` = {}: must be in 1..=100000", metric.projections);
        }
        if methods.is_empty() {
            bail!("no [[method]] tables: nothing to run");
        }
        let mut labels = BTreeSet::new();
        for m in &methods {
            if !labels.insert(m.label.as_str()) {
                bail!("two methods are labelled `{}`", m.label);
            }
            if m.label.trim().is_empty() || m.label.contains([',', '"', '\n', '|', '\\']) {
                bail!("method label `{}` is empty or contains a character not allowed in tables (, \" | \\ newline)", m.label);
            }
            if slug(&m.label).starts_with('.') {
                bail!("method label `{}` starts with `.`: labels name folders of the results, which must not be hidden or `..`", m.label);
            }
        }
        let kind = match (header.benchmark, gmm, image) {
            (BenchmarkKind::Gmm, Some(g), None) => Kind::Gmm(GmmExperiment::validate(g, &methods)?),
            (BenchmarkKind::Image, None, Some(g)) => Kind::Image(ImageExperiment::validate(g, &methods)?),
            (BenchmarkKind::Gmm, _, _) => bail!("`experiment.benchmark = \"gmm\"` needs a [gmm] table and no [image] table"),
            (BenchmarkKind::Image, _, _) => bail!("`experiment.benchmark = \"image\"` needs an [image] table and no [gmm] table"),
        };
        Ok(Self { path: path.to_path_buf(), header, kind, metric, methods, paper })
    }

    /// The method labels, in table order.
    pub fn labels(&self) -> Vec<String> {
        self.methods.iter().map(|m| m.label.clone()).collect()
    }

    /// The fingerprint of the settings every job of a results folder shares: everything but the
    /// grid's extent (dimensions, replicates, budgets; tasks, images), so that growing a grid
    /// keeps it and any other change is a different configuration.
    pub fn folder_fingerprint(&self) -> String {
        let methods: Vec<String> = self.methods.iter().map(|m| format!("{m:?}")).collect();
        let kind = match &self.kind {
            Kind::Gmm(g) => g.folder_key(),
            Kind::Image(g) => g.folder_key(),
        };
        let text = format!(
            "{}|{}|{:?}|{}|{:?}|noise v{}",
            self.header.seed,
            self.metric.projections,
            self.header.benchmark,
            kind,
            methods,
            dipbench_operators::noise::NOISE_VERSION
        );
        format!("{:016x}", derive_seed(&["folder", &text]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_name_the_key_of_their_line() {
        let text = "[experiment]\nname = \"x\"\n\n[image]\nprecision = \"f8\"\n\n[[method]]\nlabel = \"a\"\n";
        assert_eq!(key_at(text, text.find("\"f8\"").unwrap()).as_deref(), Some("image.precision"));
        assert_eq!(key_at(text, text.find("\"a\"").unwrap()).as_deref(), Some("method.label"));
        assert_eq!(key_at("", 0), None);
        // An error spanning a whole `[[method]]` table names its oversized integer's key.
        let text = "[[method]]\nlabel = \"a\"\niterations = 18446744073709551615\n\n[[method]]\nlabel = \"b\"\n";
        assert_eq!(error_key(text, 0..10).as_deref(), Some("method.iterations"));
        let second = text.rfind("[[method]]").unwrap();
        assert_eq!(error_key(text, second..second + 10).as_deref(), Some("method"));
    }
}
