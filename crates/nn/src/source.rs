//! Where parameters come from when a network is built: a PyTorch checkpoint, a safetensors
//! file, or the golden fill of the test fixtures. A network takes every parameter by its
//! state-dict key with the shape it expects; loading then checks that nothing is left over. So a
//! missing key, an extra key or a shape mismatch is an error naming the key (and both shapes),
//! and a network is never built from partly random weights (unlike the reference loader, which
//! prints "Randomly initialize" and goes on).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// A failure while loading parameters.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The source cannot be read at all.
    #[error("cannot read {path}: {why}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// The model needs a key the source does not have.
    #[error("{source_name}: missing key `{key}` (the model expects shape {expected:?}); is this checkpoint made for config `{config}`?")]
    Missing {
        /// The source.
        source_name: String,
        /// The key.
        key: String,
        /// Its expected shape.
        expected: Vec<usize>,
        /// The model configuration being built.
        config: String,
    },
    /// A key whose stored shape differs from the model's.
    #[error("{source_name}: key `{key}` has shape {found:?} in the file but the model (config `{config}`) expects {expected:?}")]
    Shape {
        /// The source.
        source_name: String,
        /// The key.
        key: String,
        /// Shape in the source.
        found: Vec<usize>,
        /// Shape the model expects.
        expected: Vec<usize>,
        /// The model configuration being built.
        config: String,
    },
    /// Keys of the source the model did not use.
    #[error("{source_name}: {count} key(s) not used by config `{config}`, e.g. {examples:?}; the checkpoint and the config do not match")]
    Unused {
        /// The source.
        source_name: String,
        /// How many.
        count: usize,
        /// The first few, sorted.
        examples: Vec<String>,
        /// The model configuration being built.
        config: String,
    },
    /// A tensor whose data cannot be converted to f32.
    #[error("{source_name}: key `{key}`: {why}")]
    Data {
        /// The source.
        source_name: String,
        /// The key.
        key: String,
        /// Why.
        why: String,
    },
}

/// A source of named parameters (row-major f32 values by state-dict key).
pub trait ParamSource {
    /// A description for error messages (file path, "golden fill").
    fn name(&self) -> String;

    /// The stored shape of `key`, if present. `expected` is the model's shape, which only a
    /// source that adapts to the model ([`RecordingSource`]) uses.
    fn shape_of(&self, key: &str, expected: &[usize]) -> Option<Vec<usize>>;

    /// Removes `key` (whose stored shape is `shape`) and returns its values (row-major,
    /// converted to f32).
    fn take_values(&mut self, key: &str, shape: &[usize]) -> Result<Vec<f32>, LoadError>;

    /// Keys not taken yet.
    fn remaining(&self) -> Vec<String>;
}

/// Takes `key` with shape `expected` from `source` (see [`LoadError`]).
pub fn take(source: &mut dyn ParamSource, key: &str, expected: &[usize], config: &str) -> Result<Vec<f32>, LoadError> {
    match source.shape_of(key, expected) {
        None => Err(LoadError::Missing { source_name: source.name(), key: key.into(), expected: expected.to_vec(), config: config.into() }),
        Some(found) if found != expected => {
            Err(LoadError::Shape { source_name: source.name(), key: key.into(), found, expected: expected.to_vec(), config: config.into() })
        }
        Some(found) => source.take_values(key, &found),
    }
}

/// Errors unless every key of `source` was taken.
pub fn finish(source: &dyn ParamSource, config: &str) -> Result<(), LoadError> {
    let mut left = source.remaining();
    if left.is_empty() {
        return Ok(());
    }
    left.sort();
    Err(LoadError::Unused { source_name: source.name(), count: left.len(), examples: left.into_iter().take(5).collect(), config: config.into() })
}

/// Parameters held in memory: key → (shape, values).
#[derive(Debug, Clone, Default)]
pub struct MemorySource {
    name: String,
    tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
}

impl MemorySource {
    /// An in-memory source named `name`.
    pub fn new(name: impl Into<String>, tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>) -> Self {
        Self { name: name.into(), tensors }
    }

    /// Reads a safetensors file (f32, f16, bf16 or f64 tensors; converted to f32). A tensor of
    /// another dtype is an error: a checkpoint holds float parameters only.
    pub fn from_safetensors(path: &Path) -> Result<Self, LoadError> {
        Self::read_safetensors(path, false)
    }

    /// Reads the float tensors of a data file (inputs and outputs of `dipbench model eval`,
    /// reference fixtures), leaving out integer tensors such as timesteps.
    pub fn from_safetensors_floats(path: &Path) -> Result<Self, LoadError> {
        Self::read_safetensors(path, true)
    }

    fn read_safetensors(path: &Path, skip_non_float: bool) -> Result<Self, LoadError> {
        let err = |why: String| LoadError::Read { path: path.to_path_buf(), why };
        let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| err(format!("not a safetensors file: {e}")))?;
        let mut tensors = BTreeMap::new();
        for (key, view) in st.tensors() {
            let raw = view.data();
            let values: Vec<f32> = match view.dtype() {
                safetensors::Dtype::F32 => raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
                safetensors::Dtype::F64 => raw.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32).collect(),
                safetensors::Dtype::F16 => raw.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
                safetensors::Dtype::BF16 => raw.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
                _ if skip_non_float => continue,
                other => return Err(err(format!("tensor `{key}` has dtype {other:?}; only float tensors are parameters"))),
            };
            tensors.insert(key, (view.shape().to_vec(), values));
        }
        Ok(Self { name: path.display().to_string(), tensors })
    }

    /// Reads a PyTorch `torch.save` file (zip format, or the legacy formats burn-store reads),
    /// holding a state dict, optionally under `top_level_key` (e.g. "state_dict").
    pub fn from_pytorch(path: &Path, top_level_key: Option<&str>) -> Result<Self, LoadError> {
        let err = |why: String| LoadError::Read { path: path.to_path_buf(), why };
        if !path.exists() {
            return Err(err("no such file".into()));
        }
        // burn-store fills a missing or short storage record with zeros; refuse such files.
        crate::torch_records::check_zip_checkpoint(path)?;
        let reader = match top_level_key {
            Some(k) => burn_store::pytorch::PytorchReader::with_top_level_key(path, k),
            None => burn_store::pytorch::PytorchReader::new(path),
        }
        .map_err(|e| err(format!("not a readable PyTorch checkpoint: {e:?}")))?;
        let mut tensors = BTreeMap::new();
        let snapshots: HashMap<String, burn_store::TensorSnapshot> = reader.into_tensors();
        for (key, snap) in snapshots {
            let shape: Vec<usize> = snap.shape.to_vec();
            let data = snap.to_data().map_err(|e| err(format!("tensor `{key}`: {e:?}")))?;
            let values: Vec<f32> = if data.dtype == burn::tensor::DType::F32 {
                data.to_vec::<f32>().map_err(|e| err(format!("tensor `{key}`: {e:?}")))?
            } else {
                data.convert::<f32>().to_vec::<f32>().map_err(|e| err(format!("tensor `{key}`: {e:?}")))?
            };
            tensors.insert(key, (shape, values));
        }
        Ok(Self { name: path.display().to_string(), tensors })
    }

    /// Reads a checkpoint whatever its extension: safetensors (detected by its JSON header) or
    /// a PyTorch `torch.save` file (zip or legacy).
    pub fn open(path: &Path) -> Result<Self, LoadError> {
        use std::io::Read;
        let mut head = [0u8; 9];
        let n = std::fs::File::open(path).and_then(|mut f| f.read(&mut head)).map_err(|e| LoadError::Read { path: path.to_path_buf(), why: e.to_string() })?;
        let header_len = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        if n == 9 && head[8] == b'{' && header_len + 8 <= size { Self::from_safetensors(path) } else { Self::from_pytorch(path, None) }
    }

    /// Keeps only the keys starting with `prefix` (e.g. `features.` of a torchvision model whose
    /// classifier a metric does not use).
    pub fn retain_prefix(mut self, prefix: &str) -> Self {
        self.tensors.retain(|k, _| k.starts_with(prefix));
        self
    }

    /// Adds (or replaces) `key` with `shape` and row-major `values`.
    pub fn insert(&mut self, key: &str, shape: Vec<usize>, values: Vec<f32>) {
        self.tensors.insert(key.to_string(), (shape, values));
    }

    /// Keys and shapes, sorted by key.
    pub fn manifest(&self) -> Vec<(String, Vec<usize>)> {
        self.tensors.iter().map(|(k, (s, _))| (k.clone(), s.clone())).collect()
    }
}

impl ParamSource for MemorySource {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn shape_of(&self, key: &str, _expected: &[usize]) -> Option<Vec<usize>> {
        self.tensors.get(key).map(|(s, _)| s.clone())
    }

    fn take_values(&mut self, key: &str, _shape: &[usize]) -> Result<Vec<f32>, LoadError> {
        self.tensors.remove(key).map(|(_, v)| v).ok_or_else(|| LoadError::Data { source_name: self.name.clone(), key: key.into(), why: "taken twice".into() })
    }

    fn remaining(&self) -> Vec<String> {
        self.tensors.keys().cloned().collect()
    }
}

/// Accepts every key with the shape the model asks for and records it: running a network's
/// loader against it yields the network's state-dict manifest, in state-dict order.
#[derive(Debug, Clone, Default)]
pub struct RecordingSource {
    /// (key, shape) in the order the model took them.
    pub taken: Vec<(String, Vec<usize>)>,
}

impl ParamSource for RecordingSource {
    fn name(&self) -> String {
        "manifest recorder".into()
    }

    fn shape_of(&self, _key: &str, expected: &[usize]) -> Option<Vec<usize>> {
        Some(expected.to_vec())
    }

    fn take_values(&mut self, key: &str, shape: &[usize]) -> Result<Vec<f32>, LoadError> {
        self.taken.push((key.into(), shape.to_vec()));
        Ok(vec![])
    }

    fn remaining(&self) -> Vec<String> {
        vec![]
    }
}

/// Keys and shapes only, for [`crate::unet::AdmUnet::check_keys`]: values come back empty.
#[derive(Debug, Clone)]
pub struct ShapeSource {
    name: String,
    shapes: BTreeMap<String, Vec<usize>>,
}

impl ShapeSource {
    /// A source holding `manifest`'s keys and shapes.
    pub fn new(name: impl Into<String>, manifest: impl IntoIterator<Item = (String, Vec<usize>)>) -> Self {
        Self { name: name.into(), shapes: manifest.into_iter().collect() }
    }
}

impl ParamSource for ShapeSource {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn shape_of(&self, key: &str, _expected: &[usize]) -> Option<Vec<usize>> {
        self.shapes.get(key).cloned()
    }

    fn take_values(&mut self, key: &str, _shape: &[usize]) -> Result<Vec<f32>, LoadError> {
        self.shapes.remove(key).map(|_| vec![]).ok_or_else(|| LoadError::Data { source_name: self.name.clone(), key: key.into(), why: "taken twice".into() })
    }

    fn remaining(&self) -> Vec<String> {
        self.shapes.keys().cloned().collect()
    }
}

/// The keys of `inner` that start with `prefix`, seen without it: a Lightning checkpoint holds
/// several networks (`model.diffusion_model.*`, `first_stage_model.*`), each loaded strictly
/// through its own view; [`ParamSource::remaining`] lists only this view's keys, so what the
/// other views and the caller must account for stays in `inner`.
pub struct Prefixed<'a> {
    inner: &'a mut dyn ParamSource,
    prefix: String,
}

impl<'a> Prefixed<'a> {
    /// The view of `inner` under `prefix`.
    pub fn new(inner: &'a mut dyn ParamSource, prefix: &str) -> Self {
        Self { inner, prefix: prefix.to_string() }
    }
}

impl ParamSource for Prefixed<'_> {
    fn name(&self) -> String {
        format!("{} [{}*]", self.inner.name(), self.prefix)
    }

    fn shape_of(&self, key: &str, expected: &[usize]) -> Option<Vec<usize>> {
        self.inner.shape_of(&format!("{}{key}", self.prefix), expected)
    }

    fn take_values(&mut self, key: &str, shape: &[usize]) -> Result<Vec<f32>, LoadError> {
        self.inner.take_values(&format!("{}{key}", self.prefix), shape)
    }

    fn remaining(&self) -> Vec<String> {
        self.inner.remaining().into_iter().filter_map(|k| k.strip_prefix(&self.prefix).map(str::to_string)).collect()
    }
}

/// The deterministic "golden fill" of the test fixtures (`shared/golden/README.md`): every
/// parameter's value is a function of its key, shape and index, so the reference and dipbench
/// build bit-identical big networks without shipping weights. It behaves like a file holding
/// exactly the keys and shapes of `manifest`.
#[derive(Debug, Clone)]
pub struct GoldenFill {
    shapes: BTreeMap<String, Vec<usize>>,
}

impl GoldenFill {
    /// A golden-filled "checkpoint" with these keys and shapes.
    pub fn new(manifest: impl IntoIterator<Item = (String, Vec<usize>)>) -> Self {
        Self { shapes: manifest.into_iter().collect() }
    }

    /// FNV-1a 32-bit hash of the key's UTF-8 bytes.
    pub fn fnv1a(key: &str) -> u32 {
        key.bytes().fold(2_166_136_261u32, |h, b| (h ^ u32::from(b)).wrapping_mul(16_777_619))
    }

    /// The golden-fill values of `key` with `shape` (README of the fixtures):
    /// phase = (h mod 10007)/10007·2π, u_j = sin((0.5 + j·0.7548776662) + phase), then by rule:
    /// running_var 1 + 0.25u, running_mean 0.1u, ≥2-D u·√(3/fan_in), 1-D weight 1 + 0.1u,
    /// other 1-D and 0-D 0.05u; computed in f64, rounded to f32.
    pub fn values(key: &str, shape: &[usize]) -> Vec<f32> {
        let n: usize = shape.iter().product::<usize>().max(1);
        let h = Self::fnv1a(key);
        let phase = f64::from(h % 10007) / 10007.0 * 2.0 * std::f64::consts::PI;
        let u = |j: usize| ((0.5 + j as f64 * 0.7548776662) + phase).sin();
        let rule: Box<dyn Fn(f64) -> f64> = if key.ends_with("running_var") {
            Box::new(|u| 1.0 + 0.25 * u)
        } else if key.ends_with("running_mean") {
            Box::new(|u| 0.1 * u)
        } else if key.ends_with("num_batches_tracked") {
            Box::new(|_| 0.0)
        } else if shape.len() >= 2 {
            let fan_in = (n / shape[0]) as f64;
            let scale = (3.0 / fan_in).sqrt();
            Box::new(move |u| u * scale)
        } else if shape.len() == 1 && key.ends_with("weight") {
            Box::new(|u| 1.0 + 0.1 * u)
        } else {
            Box::new(|u| 0.05 * u)
        };
        (0..n).map(|j| rule(u(j)) as f32).collect()
    }
}

impl ParamSource for GoldenFill {
    fn name(&self) -> String {
        "golden fill".into()
    }

    fn shape_of(&self, key: &str, _expected: &[usize]) -> Option<Vec<usize>> {
        self.shapes.get(key).cloned()
    }

    fn take_values(&mut self, key: &str, _shape: &[usize]) -> Result<Vec<f32>, LoadError> {
        let shape = self.shapes.remove(key).ok_or_else(|| LoadError::Data { source_name: self.name(), key: key.into(), why: "taken twice".into() })?;
        Ok(Self::values(key, &shape))
    }

    fn remaining(&self) -> Vec<String> {
        self.shapes.keys().cloned().collect()
    }
}
