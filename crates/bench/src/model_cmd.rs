//! `dipbench model eval`: runs a UNet checkpoint on a tensor file, so a user can check a port or
//! a converted checkpoint against their own reference outputs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use dipbench_models::Prior;
use dipbench_models::unet::{AdmUnet, GoldenFill, ParamSource, Precision, UnetConfig, UnetPrior};

use crate::weights;

/// What to evaluate.
#[derive(Debug, Clone)]
pub struct EvalRequest {
    /// Config name (`ffhq256`, `imagenet256`, `tiny32`).
    pub config: String,
    /// Checkpoint file (`.pt` or `.safetensors`); `None` uses the golden fill.
    pub checkpoint: Option<PathBuf>,
    /// Input safetensors file with a tensor `x` `[n, c, h, w]`.
    pub input: PathBuf,
    /// Output safetensors file.
    pub output: PathBuf,
    /// Raw network output at this timestep (integer DDPM step or float c_noise).
    pub t: Option<f32>,
    /// Denoiser D(x; σ) through the VP→EDM preconditioning.
    pub sigma: Option<f64>,
    /// Arithmetic precision of the network (float32 or mixed half precision).
    pub precision: Precision,
}

/// Builds the network of `config` from a checkpoint, or from the golden fill when `None`.
pub fn load_net<B: Backend>(config: &UnetConfig, checkpoint: Option<&Path>, device: &B::Device) -> Result<AdmUnet<B>> {
    let mut source: Box<dyn ParamSource> = match checkpoint {
        Some(p) => Box::new(weights::open_checkpoint(p)?),
        None => Box::new(GoldenFill::new(AdmUnet::<B>::manifest(config))),
    };
    Ok(AdmUnet::load(config, source.as_mut(), device)?)
}

/// Reads tensor `x` (or the file's only tensor) as f32 with its shape.
fn read_input(path: &Path) -> Result<(Vec<usize>, Vec<f32>)> {
    let src = dipbench_models::unet::MemorySource::from_safetensors_floats(path)?;
    let manifest = src.manifest();
    let key = if manifest.iter().any(|(k, _)| k == "x") {
        "x".to_string()
    } else if manifest.len() == 1 {
        manifest[0].0.clone()
    } else {
        bail!("{}: expected a tensor named `x` (have: {:?})", path.display(), manifest.iter().map(|(k, _)| k).collect::<Vec<_>>());
    };
    let shape = manifest.iter().find(|(k, _)| *k == key).map(|(_, s)| s.clone()).unwrap_or_default();
    let mut src = src;
    let values = src.take_values(&key, &shape)?;
    Ok((shape, values))
}

fn write_output(path: &Path, tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>) -> Result<()> {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> =
        tensors.into_iter().map(|(k, (s, v))| (k, s, v.iter().flat_map(|x| x.to_le_bytes()).collect())).collect();
    let views = bytes
        .iter()
        .map(|(k, s, b)| Ok((k.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)?)))
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()?;
    safetensors::serialize_to_file(views, None, path).with_context(|| format!("cannot write {}", path.display()))
}

/// Runs the request; returns a one-line summary.
pub fn eval<B: Backend>(req: &EvalRequest, device: &B::Device) -> Result<String> {
    if req.t.is_some() == req.sigma.is_some() {
        bail!("give exactly one of --t (raw network output at a timestep) or --sigma (denoiser D(x; σ))");
    }
    let config = UnetConfig::by_name(&req.config)?;
    let (shape, x) = read_input(&req.input)?;
    let want = [config.in_channels, config.image_size, config.image_size];
    if shape.len() != 4 || shape[1..] != want {
        bail!("{}: `x` has shape {shape:?}; config `{}` takes [n, {}, {}, {}]", req.input.display(), config.name, want[0], want[1], want[2]);
    }
    let net = load_net::<B>(&config, req.checkpoint.as_deref(), device)?.with_precision(req.precision);
    let n = shape[0];
    let x = Tensor::<B, 1>::from_floats(x.as_slice(), device).reshape([n, want[0], want[1], want[2]]);
    let mut out = BTreeMap::new();
    let to_vec = |t: Tensor<B, 4>| -> Result<(Vec<usize>, Vec<f32>)> {
        let dims = t.dims().to_vec();
        Ok((dims, t.into_data().convert::<f32>().to_vec::<f32>().map_err(|e| anyhow::anyhow!("{e:?}"))?))
    };
    let summary = if let Some(t) = req.t {
        out.insert("out".to_string(), to_vec(net.forward(x, &[t]))?);
        format!("wrote `out` = UNet(x, t = {t}) to {}", req.output.display())
    } else {
        let sigma = req.sigma.expect("checked above");
        let prior = UnetPrior::new(net);
        let d = prior.denoise(x.reshape([n, want[0] * want[1] * want[2]]), sigma);
        out.insert("denoised".to_string(), to_vec(d.reshape([n, want[0], want[1], want[2]]))?);
        format!("wrote `denoised` = D(x; σ = {sigma}) (c_noise = {}) to {}", prior.c_noise(sigma), req.output.display())
    };
    write_output(&req.output, out)?;
    Ok(summary)
}
