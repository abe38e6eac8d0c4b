//! The ADM UNet as the benchmarks and the `model` commands use it: building it from a checkpoint
//! or the golden fill ([`load_net`]), running it on a tensor file (`dipbench model eval`), and
//! checking the port on a backend against the reference outputs (`dipbench model verify`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use dipbench_models::Prior;
use dipbench_models::latent::{LatentPrior, UNET_PREFIX, VQ_PREFIX, autoencoder_for};
use dipbench_models::unet::{AdmUnet, UnetConfig, UnetPrior};
use dipbench_models::vq::{VqAutoencoder, VqConfig};
use dipbench_nn::layers::Precision;
use dipbench_nn::source::{GoldenFill, MemorySource, ParamSource, Prefixed};
use dipbench_nn::{NnAutodiffBackend, NnBackend};

use crate::weights;

/// What to evaluate.
#[derive(Debug, Clone)]
pub struct EvalRequest {
    /// Config name (`ffhq256`, `imagenet256`, `tiny32`, and the latent UNets `ffhq256-ldm`,
    /// `tiny16-ldm`).
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
    /// For an autoencoder config (`vq-f4`, `vq-tiny`): which of its maps to run.
    pub autoencoder: Option<AutoencoderStep>,
}

/// A map of the VQ autoencoder, as `model eval --autoencoder` runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoencoderStep {
    /// `h` = quant_conv(encoder(x)), not quantised (what DAPS, PSLD and ReSample call encode).
    Encode,
    /// `z_q` and `indices`: the nearest code per latent position.
    Quantize,
    /// `decoded` = decoder(post_quant_conv(quantize(z))) (DAPS `LDM.decode`).
    Decode,
    /// `decoded` = decoder(post_quant_conv(z)) without quantisation (`force_not_quantize`).
    DecodeUnquantized,
}

impl std::str::FromStr for AutoencoderStep {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "encode" => Self::Encode,
            "quantize" => Self::Quantize,
            "decode" => Self::Decode,
            "decode-nq" => Self::DecodeUnquantized,
            _ => bail!("unknown autoencoder map `{s}` (encode, quantize, decode, decode-nq)"),
        })
    }
}

/// The VQ autoencoder of `config` from a checkpoint — a `LatentDiffusion` one (its
/// `first_stage_model.*` part, read strictly; the rest of the file is not this network's) or a
/// state dict holding exactly the autoencoder's keys (a stand-alone CompVis `VQModel` checkpoint
/// also holds its training loss's `loss.*` keys and is refused, naming them) — or from the
/// golden fill when `None`.
pub fn load_autoencoder<B: NnBackend>(config: &VqConfig, checkpoint: Option<&Path>, device: &B::Device) -> Result<VqAutoencoder<B>> {
    let mut source: Box<dyn ParamSource> = match checkpoint {
        Some(p) => match MemorySource::from_pytorch(p, Some("state_dict")) {
            Ok(whole) => Box::new(whole),
            Err(_) => Box::new(weights::open_checkpoint(p)?),
        },
        None => Box::new(GoldenFill::new(VqAutoencoder::<B>::manifest(config))),
    };
    if source.remaining().iter().any(|k| k.starts_with(VQ_PREFIX)) {
        return Ok(VqAutoencoder::load(config, &mut Prefixed::new(source.as_mut(), VQ_PREFIX), device)?);
    }
    Ok(VqAutoencoder::load(config, source.as_mut(), device)?)
}

/// [`eval`] for an autoencoder config.
fn eval_autoencoder<B: NnBackend>(req: &EvalRequest, config: &VqConfig, shape: &[usize], x: &[f32], device: &B::Device) -> Result<String> {
    let Some(step) = req.autoencoder else {
        bail!("config `{}` is an autoencoder: give --autoencoder encode, quantize, decode or decode-nq", config.name);
    };
    if req.t.is_some() || req.sigma.is_some() {
        bail!("--t and --sigma are for UNet configs; config `{}` is an autoencoder", config.name);
    }
    let (r, l) = (config.resolution, config.latent_side());
    let want = if step == AutoencoderStep::Encode { [config.in_channels, r, r] } else { [config.embed_dim, l, l] };
    if shape.len() != 4 || shape[1..] != want {
        bail!(
            "{}: `x` has shape {shape:?}; `{}` of config `{}` takes [n, {}, {}, {}]",
            req.input.display(),
            step.name(),
            config.name,
            want[0],
            want[1],
            want[2]
        );
    }
    let net = load_autoencoder::<B>(config, req.checkpoint.as_deref(), device)?.with_precision(req.precision);
    let x = Tensor::<B, 1>::from_floats(x, device).reshape([shape[0], want[0], want[1], want[2]]);
    let out: Vec<(&str, (Vec<usize>, Vec<f32>))> = match step {
        AutoencoderStep::Encode => vec![("h", host(net.encode(x))?)],
        AutoencoderStep::Quantize => {
            let q = net.quantize(x);
            let indices = q.indices.iter().map(|&i| i as f32).collect();
            vec![("z_q", host(q.z_q)?), ("indices", (vec![shape[0], 1, l, l], indices))]
        }
        AutoencoderStep::Decode => vec![("decoded", host(net.decode(x))?)],
        AutoencoderStep::DecodeUnquantized => vec![("decoded", host(net.decode_unquantised(x))?)],
    };
    let names: Vec<&str> = out.iter().map(|(k, _)| *k).collect();
    let summary = format!("wrote {} = {}(x) of `{}` to {}", names.join(", "), step.name(), config.name, req.output.display());
    crate::measure::write_tensors(&req.output, out.iter().map(|(k, (s, v))| (*k, s.clone(), v.as_slice())).collect())?;
    Ok(summary)
}

/// A tensor's shape and float32 values on the host.
fn host<B: Backend>(t: Tensor<B, 4>) -> Result<(Vec<usize>, Vec<f32>)> {
    let dims = t.dims().to_vec();
    Ok((dims, t.into_data().convert::<f32>().to_vec::<f32>().map_err(|e| anyhow::anyhow!("{e:?}"))?))
}

impl AutoencoderStep {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Encode => "encode",
            Self::Quantize => "quantize",
            Self::Decode => "decode",
            Self::DecodeUnquantized => "decode-nq",
        }
    }
}

/// Builds the network of `config` from a checkpoint, or from the golden fill when `None`. For a
/// latent-diffusion config the checkpoint may be a `LatentDiffusion` one (weights under
/// `state_dict`, the UNet's keys under `model.diffusion_model.`): the UNet's part is then read
/// strictly and the rest of the file (autoencoder, schedule) is not this network's to check.
pub fn load_net<B: NnBackend>(config: &UnetConfig, checkpoint: Option<&Path>, device: &B::Device) -> Result<AdmUnet<B>> {
    if config.context_dim > 0 {
        bail!(
            "config `{}` is class-conditional (a cross-attention context of width {}); the `model` and `bench` commands do not give it one yet",
            config.name,
            config.context_dim
        );
    }
    let mut source: Box<dyn ParamSource> = match checkpoint {
        Some(p) if config.is_latent() => match MemorySource::from_pytorch(p, Some("state_dict")) {
            Ok(whole) => Box::new(whole),
            Err(_) => Box::new(weights::open_checkpoint(p)?),
        },
        Some(p) => Box::new(weights::open_checkpoint(p)?),
        None => Box::new(GoldenFill::new(AdmUnet::<B>::manifest(config))),
    };
    let lightning = config.is_latent() && source.remaining().iter().any(|k| k.starts_with(UNET_PREFIX));
    if lightning {
        return Ok(AdmUnet::load(config, &mut Prefixed::new(source.as_mut(), UNET_PREFIX), device)?);
    }
    Ok(AdmUnet::load(config, source.as_mut(), device)?)
}

/// The latent prior of a latent-diffusion UNet config: its UNet and autoencoder (the pair of
/// [`autoencoder_for`]) from a `LatentDiffusion` checkpoint, read strictly, or from
/// the golden fill when `None` (untrained weights, for plumbing checks); a class-conditional
/// UNet is conditioned on label 1000 as in DAPS. Both networks run in
/// `precision` ([`LatentPrior::with_precision`]).
pub fn load_latent_prior<B: NnBackend>(config: &UnetConfig, checkpoint: Option<&Path>, precision: Precision, device: &B::Device) -> Result<LatentPrior<B>> {
    let Some(vq) = autoencoder_for(config) else {
        bail!("config `{}` is not a latent-diffusion UNet (latent configs: {})", config.name, dipbench_models::unet::config::LATENT_NAMES.join(", "));
    };
    let prior = match checkpoint {
        Some(p) => LatentPrior::open(p, config, &vq, device)?,
        None => LatentPrior::golden_fill(config, &vq, device)?,
    };
    Ok(prior.with_precision(precision))
}

/// Reads tensor `x` (or the file's only tensor) as f32 with its shape.
fn read_input(path: &Path) -> Result<(Vec<usize>, Vec<f32>)> {
    let src = dipbench_nn::source::MemorySource::from_safetensors_floats(path)?;
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

/// Refuses an empty, oversized or non-finite input.
fn check_input(req: &EvalRequest, shape: &[usize], x: &[f32]) -> Result<()> {
    if shape.first() == Some(&0) {
        bail!("{}: `x` is empty (a batch of 0 images)", req.input.display());
    }
    if shape.first().is_some_and(|&n| n > 4096) {
        bail!("{}: `x` holds {} images; run at most 4096 at a time", req.input.display(), shape[0]);
    }
    if let Some(bad) = x.iter().find(|v| !v.is_finite()) {
        bail!("{}: `x` has values that are not finite ({bad})", req.input.display());
    }
    Ok(())
}

/// Runs the request; returns a one-line summary.
pub fn eval<B: NnBackend>(req: &EvalRequest, device: &B::Device) -> Result<String> {
    let autoencoder = VqConfig::by_name(&req.config).ok();
    let unet = UnetConfig::by_name(&req.config).ok();
    if autoencoder.is_none() && unet.is_none() {
        bail!(
            "unknown config `{}` (UNets: {}; autoencoders: {})",
            req.config,
            dipbench_models::unet::config::NAMES.join(", "),
            dipbench_models::vq::NAMES.join(", ")
        );
    }
    let (shape, x) = read_input(&req.input)?;
    if let Some(config) = autoencoder {
        check_input(req, &shape, &x)?;
        return eval_autoencoder::<B>(req, &config, &shape, &x, device);
    }
    let config = unet.expect("one of the two matched");
    if req.autoencoder.is_some() {
        bail!("--autoencoder is for autoencoder configs ({}); `{}` is a UNet", dipbench_models::vq::NAMES.join(", "), req.config);
    }
    if req.t.is_some() == req.sigma.is_some() {
        bail!("give exactly one of --t (raw network output at a timestep) or --sigma (denoiser D(x; σ))");
    }
    let want = [config.in_channels, config.image_size, config.image_size];
    if shape.len() != 4 || shape[1..] != want {
        bail!("{}: `x` has shape {shape:?}; config `{}` takes [n, {}, {}, {}]", req.input.display(), config.name, want[0], want[1], want[2]);
    }
    check_input(req, &shape, &x)?;
    if let Some(v) = req.t.map(f64::from).or(req.sigma).filter(|v| !v.is_finite() || *v < 0.0) {
        bail!("--t / --sigma must be finite and ≥ 0, got {v}");
    }
    let net = load_net::<B>(&config, req.checkpoint.as_deref(), device)?.with_precision(req.precision);
    let n = shape[0];
    let x = Tensor::<B, 1>::from_floats(x.as_slice(), device).reshape([n, want[0], want[1], want[2]]);
    let mut out = BTreeMap::new();
    let summary = if let Some(t) = req.t {
        out.insert("out".to_string(), host(net.forward(x, &[t]))?);
        format!("wrote `out` = UNet(x, t = {t}) to {}", req.output.display())
    } else {
        let sigma = req.sigma.expect("checked above");
        let prior = UnetPrior::new(net);
        let d = prior.denoise(x.reshape([n, want[0] * want[1] * want[2]]), sigma);
        out.insert("denoised".to_string(), host(d.reshape([n, want[0], want[1], want[2]]))?);
        format!("wrote `denoised` = D(x; σ = {sigma}) (c_noise = {}) to {}", prior.c_noise(sigma), req.output.display())
    };
    crate::measure::write_tensors(&req.output, out.iter().map(|(k, (shape, v))| (k.as_str(), shape.clone(), v.as_slice())).collect())?;
    Ok(summary)
}

/// One check of [`verify`]: a network output against the reference file's tensor.
#[derive(Debug, Clone)]
pub struct VerifyCheck {
    /// What was compared (`tiny32 int t`, `ffhq256 golden fill`, …).
    pub name: String,
    /// What `value` is (`relative error`, `|ΔPSNR| dB`).
    pub measure: &'static str,
    /// The measured value: ‖out − ref‖/‖ref‖, or the PSNR difference.
    pub value: f64,
    /// The tolerance it is held to; `None` for values only reported.
    pub tol: Option<f64>,
}

impl VerifyCheck {
    /// Whether the check passes (reported values always do).
    pub fn ok(&self) -> bool {
        self.tol.is_none_or(|t| self.value <= t)
    }
}

/// Tolerance of the float32 golden checks on the CPU backend.
pub const CPU_F32_TOLERANCE: f64 = 1e-4;
/// Tolerance of the float32 golden checks on the GPU backends: burn's tensor-core kernels stage
/// float32 operands as TF32 (10-bit mantissa) with no switch in burn 0.21, as PyTorch's cuDNN
/// convolutions do by default (`torch.backends.cudnn.allow_tf32`), so the official code on an
/// Ampere or Hopper GPU is itself only TF32-accurate.
pub const GPU_F32_TOLERANCE: f64 = 5e-3;
/// Half precision is judged where it matters: a short sampler run's PSNR against float32's.
pub const HALF_PSNR_TOLERANCE_DB: f64 = 0.05;

/// The tensors of a reference file (f32, and i64 timesteps converted to f32) with their shapes.
fn read_reference(path: &Path) -> Result<BTreeMap<String, (Vec<usize>, Vec<f32>)>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes).with_context(|| format!("{} is not a safetensors file", path.display()))?;
    let mut out = BTreeMap::new();
    for (key, view) in st.tensors() {
        let raw = view.data();
        let values: Vec<f32> = match view.dtype() {
            safetensors::Dtype::F32 => raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect(),
            safetensors::Dtype::I64 => raw.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")) as f32).collect(),
            other => bail!("{}: tensor `{key}` has dtype {other:?} (expected F32 or I64)", path.display()),
        };
        out.insert(key, (view.shape().to_vec(), values));
    }
    Ok(out)
}

/// ‖a − b‖/‖b‖ in f64.
pub(crate) fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        num += (f64::from(*x) - f64::from(*y)).powi(2);
        den += f64::from(*y).powi(2);
    }
    (num / den).sqrt()
}

/// `dipbench model verify`: runs the port on this backend against guided-diffusion's outputs in
/// the golden folder — the tiny UNet (`unet_tiny.pt`, integer and float timesteps,
/// `unet_tiny_io`), the FFHQ config with golden-fill weights (`unet_ffhq_goldenfill_io`) and,
/// with `imagenet`, the ImageNet config. Float32 is held to `f32_tolerance` relative error
/// ([`CPU_F32_TOLERANCE`], [`GPU_F32_TOLERANCE`]). Half precision reports the same tensor errors
/// and is held to [`HALF_PSNR_TOLERANCE_DB`] on [`sampler_psnr_check`].
pub fn verify<B: NnAutodiffBackend>(golden: &Path, precision: Precision, imagenet: bool, f32_tolerance: f64, device: &B::Device) -> Result<Vec<VerifyCheck>> {
    let tol = (precision == Precision::F32).then_some(f32_tolerance);
    let check = |name: String, value: f64| VerifyCheck { name, measure: "relative error", value, tol };
    let file = |name: &str| -> Result<PathBuf> {
        let p = golden.join(name);
        if !p.is_file() {
            bail!(
                "{} is missing: --golden must name the folder of the golden fixtures (unet_tiny.pt, unet_tiny_io.safetensors, unet_ffhq_goldenfill_io.safetensors)",
                p.display()
            );
        }
        Ok(p)
    };
    let get = |refs: &BTreeMap<String, (Vec<usize>, Vec<f32>)>, key: &str, path: &Path| -> Result<(Vec<usize>, Vec<f32>)> {
        refs.get(key).cloned().with_context(|| format!("{}: no tensor `{key}`", path.display()))
    };
    let run = |net: &AdmUnet<B>, x: &(Vec<usize>, Vec<f32>), t: &[f32]| -> Result<Vec<f32>> {
        let s = &x.0;
        let input = Tensor::<B, 1>::from_floats(x.1.as_slice(), device).reshape([s[0], s[1], s[2], s[3]]);
        net.forward(input, t).into_data().convert::<f32>().to_vec::<f32>().map_err(|e| anyhow::anyhow!("{e:?}"))
    };
    let mut checks = vec![];
    let tiny_io_path = file("unet_tiny_io.safetensors")?;
    let tiny_io = read_reference(&tiny_io_path)?;
    let tiny_f32 = load_net::<B>(&UnetConfig::tiny32(), Some(&file("unet_tiny.pt")?), device)?;
    let tiny = tiny_f32.clone().with_precision(precision);
    let x = get(&tiny_io, "x", &tiny_io_path)?;
    for case in ["int", "float"] {
        let t = get(&tiny_io, &format!("t_{case}"), &tiny_io_path)?.1;
        let want = get(&tiny_io, &format!("out_{case}"), &tiny_io_path)?.1;
        checks.push(check(format!("tiny32, {case} timesteps"), rel_err(&run(&tiny, &x, &t)?, &want)));
    }
    let io_path = file("unet_ffhq_goldenfill_io.safetensors")?;
    let io = read_reference(&io_path)?;
    let (x, t) = (get(&io, "x", &io_path)?, get(&io, "t", &io_path)?.1);
    let mut configs = vec![(UnetConfig::ffhq256(), "ffhq_out")];
    if imagenet {
        configs.push((UnetConfig::imagenet256(), "imagenet_out"));
    }
    for (config, key) in configs {
        let net = load_net::<B>(&config, None, device)?.with_precision(precision);
        let want = get(&io, key, &io_path)?.1;
        checks.push(check(format!("{}, golden fill", config.name), rel_err(&run(&net, &x, &t)?, &want)));
    }
    if precision != Precision::F32 {
        let (full, half) = sampler_psnr_check(&tiny_f32, precision, device)?;
        checks.push(VerifyCheck {
            name: format!("DDRM-20 SR×4 PSNR {full:.3} dB (f32)"),
            measure: "|ΔPSNR| dB",
            value: (half - full).abs(),
            tol: Some(HALF_PSNR_TOLERANCE_DB),
        });
    }
    Ok(checks)
}

/// PSNR of DDRM-20 on SR ×4 (σ_y = 0.05) of a smooth synthetic 32×32 image with the tiny UNet,
/// run in float32 and in `precision` with the same noise: (PSNR float32, PSNR half).
pub fn sampler_psnr_check<B: NnAutodiffBackend>(net: &AdmUnet<B>, precision: Precision, device: &B::Device) -> Result<(f64, f64)> {
    use dipbench_metrics::psnr::psnr_skimage;
    use dipbench_operators::image::{ImageShape, Task, build};
    use dipbench_operators::{GaussianNoise, SampleRng};
    use dipbench_samplers::ddrm::{Ddrm, DdrmConfig};
    use dipbench_samplers::{Problem, Sampler};

    let side = net.config().image_size;
    let shape = ImageShape { c: 3, h: side, w: side };
    let pixels: Vec<f32> = (0..shape.len())
        .map(|i| {
            let (c, r, col) = (i / (side * side), (i / side) % side, i % side);
            let (u, v) = (r as f32 / side as f32, col as f32 / side as f32);
            0.7 * (3.0 * u + 2.0 * v + c as f32).sin() * (2.0 * v - u).cos()
        })
        .collect();
    let x_gt = Tensor::<B, 1>::from_floats(pixels.as_slice(), device).reshape([1, shape.len()]);
    let op = build::<B>(&Task::Sr4, shape, &mut SampleRng::new(0, 1), device)?;
    let y = GaussianNoise { sigma: 0.05 }.apply(op.forward(x_gt), &mut SampleRng::new(1, 1));
    let to01 = |t: Tensor<B, 2>| -> Result<Vec<f64>> {
        let v = t.add_scalar(1.0).div_scalar(2.0).clamp(0.0, 1.0).into_data().convert::<f32>().to_vec::<f32>().map_err(|e| anyhow::anyhow!("{e:?}"))?;
        Ok(v.into_iter().map(f64::from).collect())
    };
    let reference: Vec<f64> = pixels.iter().map(|&p| f64::from(((p + 1.0) / 2.0).clamp(0.0, 1.0))).collect();
    let psnr = |net: AdmUnet<B>| -> Result<f64> {
        let prior = UnetPrior::new(net);
        let problem = Problem::shared(&prior, op.as_ref(), y.clone(), 0.05, 1);
        let sample = Ddrm(DdrmConfig::paper()).sample(&problem, &mut SampleRng::new(2, 1))?;
        Ok(psnr_skimage(&reference, &to01(sample)?))
    };
    Ok((psnr(net.clone())?, psnr(net.clone().with_precision(precision))?))
}
