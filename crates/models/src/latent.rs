//! A latent-diffusion checkpoint as a prior (Rombach et al., CVPR 2022; the LDM-VQ-4 priors of
//! LatentDAPS, PSLD and ReSample): the UNet denoises autoencoder latents, the autoencoder maps
//! images to latents and back.
//!
//! The prior interface ([`Prior`]) is the UNet's, on latents `[3·64·64]` per row: ε̂(z_t, t) at
//! the steps of the checkpoint's own schedule (`sqrt-linear(0.0015, 0.0195, 1000)`), and
//! D(z; σ) = z − σ·ε̂(z/√(1+σ²), c_noise(σ)) with the **pixel** models' continuous-VP c_noise, as
//! DAPS's `LDM` wrapper does (its `VPPrecond` defaults; the timestep it feeds does not match the
//! LDM's own σ_t — at σ = 0.1 it is 27.0 where the LDM's table would give 5.5 — and is kept,
//! since that is what the published numbers were made with). [`LatentPrior::encode`] and
//! [`LatentPrior::decode`] carry images (rows of `[3·H·W]` in [−1, 1]) to latents and back.
//!
//! A checkpoint is read strictly: `model.diffusion_model.*` is the UNet and
//! `first_stage_model.*` the autoencoder, each loaded key for key; the schedule buffers `betas`
//! and `alphas_cumprod` must be there and match the schedule (the ten derived ones are taken
//! where present); a class-conditional UNet (cin256-v2) takes row 1000 of
//! `cond_stage_model.embedding.weight` as its cross-attention context, the label DAPS fixes;
//! `model_ema.*` (the EMA copy the FFHQ config keeps, which DAPS never reads) is set aside; any
//! other key is an error naming it.

use std::path::Path;

use burn::prelude::*;
use dipbench_nn::NnBackend;
use dipbench_nn::source::{GoldenFill, LoadError, MemorySource, ParamSource, Prefixed, take};

use crate::prior::Prior;
use crate::schedule::VpSchedule;
use crate::unet::{AdmUnet, UnetConfig, UnetPrior};
use crate::vq::{VqAutoencoder, VqConfig};

/// The prefix of the UNet's keys.
pub const UNET_PREFIX: &str = "model.diffusion_model.";
/// The prefix of the autoencoder's keys.
pub const VQ_PREFIX: &str = "first_stage_model.";
/// The class-embedding table of a class-conditional checkpoint (cin256-v2's `ClassEmbedder`:
/// [`CLASSES`] rows of the context width).
pub const CLASS_EMBEDDING: &str = "cond_stage_model.embedding.weight";
/// Rows of the class-embedding table: ImageNet's 1000 classes and label 1000.
pub const CLASSES: usize = 1001;
/// The label DAPS conditions the ImageNet latent prior on (its `LDM` wrapper's class 1000).
pub const DAPS_CLASS: usize = 1000;
/// The prefix of the EMA copy of the UNet (set aside).
pub const EMA_PREFIX: &str = "model_ema.";
/// The schedule buffers of a `LatentDiffusion` state dict (float32 copies of the f64 tables).
pub const SCHEDULE_BUFFERS: &[&str] = &[
    "betas",
    "alphas_cumprod",
    "alphas_cumprod_prev",
    "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod",
    "sqrt_recip_alphas_cumprod",
    "sqrt_recipm1_alphas_cumprod",
    "posterior_variance",
    "posterior_log_variance_clipped",
    "posterior_mean_coef1",
    "posterior_mean_coef2",
];

/// The autoencoder a latent UNet config is paired with in its checkpoint (`ffhq256-ldm` and
/// `imagenet256-ldm`: VQ-f4; the fixtures' `tiny16-ldm` and `tiny16-cin`: `vq-tiny`), or `None`
/// for a pixel-space config.
pub fn autoencoder_for(unet: &UnetConfig) -> Option<VqConfig> {
    match unet.name.as_str() {
        "ffhq256-ldm" | "imagenet256-ldm" => Some(VqConfig::vq_f4()),
        "tiny16-ldm" | "tiny16-cin" => Some(VqConfig::tiny()),
        _ => None,
    }
}

/// The UNet (with its class context when class-conditional), autoencoder and schedule of a
/// latent-diffusion checkpoint.
#[derive(Debug, Clone)]
pub struct LatentPrior<B: Backend> {
    unet: UnetPrior<B>,
    vq: VqAutoencoder<B>,
}

impl<B: NnBackend> LatentPrior<B> {
    /// The LDM-VQ-4 schedule: β = linspace(√0.0015, √0.0195, 1000)².
    pub fn ldm_schedule() -> VpSchedule {
        VpSchedule::sqrt_linear(0.0015, 0.0195, 1000)
    }

    /// Reads a `LatentDiffusion` checkpoint (`torch.save` with the weights under `state_dict`,
    /// or a flat state dict / safetensors file) and builds the prior (module documentation).
    pub fn open(path: &Path, unet: &UnetConfig, vq: &VqConfig, device: &B::Device) -> Result<Self, LoadError> {
        let mut source = match MemorySource::from_pytorch(path, Some("state_dict")) {
            Ok(s) => s,
            Err(nested) => MemorySource::open(path).map_err(|flat| LoadError::Read {
                path: path.to_path_buf(),
                why: format!("neither a Lightning checkpoint ({nested}) nor a flat state dict ({flat})"),
            })?,
        };
        Self::load(&mut source, unet, vq, device)
    }

    /// Builds the prior from a checkpoint's parameters (module documentation for what is
    /// required of them).
    pub fn load(source: &mut dyn ParamSource, unet: &UnetConfig, vq: &VqConfig, device: &B::Device) -> Result<Self, LoadError> {
        let (net, autoencoder) = Self::load_networks(source, unet, vq, device)?;
        let schedule = Self::ldm_schedule();
        check_schedule(source, &schedule)?;
        let left: Vec<String> = source.remaining().into_iter().filter(|k| !k.starts_with(EMA_PREFIX)).collect();
        if !left.is_empty() {
            let mut left = left;
            left.sort();
            return Err(unused(source.name(), left, unet, vq));
        }
        Ok(Self { unet: UnetPrior::with_schedule(net, schedule), vq: autoencoder })
    }

    /// The keys and shapes of the networks' part of a `LatentDiffusion` checkpoint for these
    /// configs: the UNet under `model.diffusion_model.`, the autoencoder under
    /// `first_stage_model.`, and for a class-conditional UNet the class-embedding table.
    pub fn manifest(unet: &UnetConfig, vq: &VqConfig) -> Vec<(String, Vec<usize>)> {
        let prefixed = |prefix: &str, m: Vec<(String, Vec<usize>)>| m.into_iter().map(|(k, s)| (format!("{prefix}{k}"), s)).collect::<Vec<_>>();
        let mut out = prefixed(UNET_PREFIX, AdmUnet::<B>::manifest(unet));
        out.extend(prefixed(VQ_PREFIX, VqAutoencoder::<B>::manifest(vq)));
        if unet.context_dim > 0 {
            out.push((CLASS_EMBEDDING.to_string(), vec![CLASSES, unet.context_dim]));
        }
        out
    }

    /// Checks a `LatentDiffusion` checkpoint's keys and shapes (`file`: the state dict's
    /// manifest, values not read) against these configs, by the rules [`LatentPrior::load`]
    /// applies: every key of [`LatentPrior::manifest`] with its shape, `betas` and
    /// `alphas_cumprod` (and any other schedule buffer) of the schedule's length, `model_ema.*`
    /// set aside, nothing else. Errors name the key and the shapes.
    pub fn check_manifest(source_name: &str, file: &[(String, Vec<usize>)], unet: &UnetConfig, vq: &VqConfig) -> Result<(), LoadError> {
        check_pair(unet, vq)?;
        let config = format!("{} + {}", unet.name, vq.name);
        let mut have: std::collections::BTreeMap<&str, &[usize]> = file.iter().map(|(k, s)| (k.as_str(), s.as_slice())).collect();
        let t = Self::ldm_schedule().len();
        let buffers = SCHEDULE_BUFFERS.iter().map(|k| (k.to_string(), vec![t]));
        for (key, expected) in Self::manifest(unet, vq).into_iter().chain(buffers) {
            match have.remove(key.as_str()) {
                Some(found) if found != expected.as_slice() => {
                    return Err(LoadError::Shape { source_name: source_name.into(), key, found: found.to_vec(), expected, config });
                }
                Some(_) => {}
                None if SCHEDULE_BUFFERS.contains(&key.as_str()) && !REQUIRED_BUFFERS.contains(&key.as_str()) => {}
                None => return Err(LoadError::Missing { source_name: source_name.into(), key, expected, config }),
            }
        }
        let left: Vec<String> = have.into_keys().filter(|k| !k.starts_with(EMA_PREFIX)).map(str::to_string).collect();
        if !left.is_empty() {
            return Err(unused(source_name.into(), left, unet, vq));
        }
        Ok(())
    }

    /// The prior with golden-fill weights under the checkpoint's key names ([`GoldenFill`]:
    /// untrained, for plumbing checks and the fixtures' golden-filled networks) on the LDM
    /// schedule.
    pub fn golden_fill(unet: &UnetConfig, vq: &VqConfig, device: &B::Device) -> Result<Self, LoadError> {
        let mut fill = GoldenFill::new(Self::manifest(unet, vq));
        let (net, autoencoder) = Self::load_networks(&mut fill, unet, vq, device)?;
        Ok(Self { unet: UnetPrior::with_schedule(net, Self::ldm_schedule()), vq: autoencoder })
    }

    /// The UNet (with its class context when it has cross-attention) and the autoencoder, each
    /// read key for key under its prefix.
    fn load_networks(source: &mut dyn ParamSource, unet: &UnetConfig, vq: &VqConfig, device: &B::Device) -> Result<(AdmUnet<B>, VqAutoencoder<B>), LoadError> {
        check_pair(unet, vq)?;
        let mut net = AdmUnet::load(unet, &mut Prefixed::new(source, UNET_PREFIX), device)?;
        let autoencoder = VqAutoencoder::load(vq, &mut Prefixed::new(source, VQ_PREFIX), device)?;
        if unet.context_dim > 0 {
            // ClassEmbedder(label 1000): row 1000 of the table, the context of every image.
            let c = unet.context_dim;
            let table = take(source, CLASS_EMBEDDING, &[CLASSES, c], &source_name(unet, vq))?;
            let row = &table[DAPS_CLASS * c..(DAPS_CLASS + 1) * c];
            net = net.with_context(Tensor::<B, 1>::from_floats(row, device).reshape([1, 1, c]));
        }
        Ok((net, autoencoder))
    }

    /// The prior in `precision`: the UNet as guided-diffusion's `use_fp16` and the autoencoder
    /// as under `torch.autocast` ([`VqAutoencoder::with_precision`]).
    pub fn with_precision(self, precision: dipbench_nn::layers::Precision) -> Self {
        let schedule = self.unet.schedule().clone();
        Self { unet: UnetPrior::with_schedule(self.unet.net().clone().with_precision(precision), schedule), vq: self.vq.with_precision(precision) }
    }

    /// The UNet as a prior on latents.
    pub fn unet(&self) -> &UnetPrior<B> {
        &self.unet
    }

    /// The autoencoder.
    pub fn autoencoder(&self) -> &VqAutoencoder<B> {
        &self.vq
    }

    /// The image shape `[c, H, W]` the autoencoder takes.
    pub fn image_shape(&self) -> [usize; 3] {
        let c = self.vq.config();
        [c.in_channels, c.resolution, c.resolution]
    }

    /// The latent shape `[c, h, w]`.
    pub fn latent_shape(&self) -> [usize; 3] {
        let c = self.vq.config();
        [c.embed_dim, c.latent_side(), c.latent_side()]
    }

    /// encode: image rows `[n, C·H·W]` → latent rows `[n, c·h·w]`, not quantised.
    pub fn encode(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let n = x.dims()[0];
        let [c, h, w] = self.image_shape();
        let [lc, lh, lw] = self.latent_shape();
        self.vq.encode(x.reshape([n, c, h, w])).reshape([n, lc * lh * lw])
    }

    /// decode: latent rows → image rows, quantising with the straight-through estimator
    /// ([`VqAutoencoder::decode`]).
    pub fn decode(&self, z: Tensor<B, 2>) -> Tensor<B, 2> {
        let n = z.dims()[0];
        let [lc, lh, lw] = self.latent_shape();
        let [c, h, w] = self.image_shape();
        self.vq.decode(z.reshape([n, lc, lh, lw])).reshape([n, c * h * w])
    }
}

fn source_name(unet: &UnetConfig, vq: &VqConfig) -> String {
    format!("latent prior {} + {}", unet.name, vq.name)
}

/// The error for checkpoint keys no network of the prior takes (`left`, sorted), with a hint
/// when they are a class-conditional checkpoint's class embedding.
fn unused(source_name: String, left: Vec<String>, unet: &UnetConfig, vq: &VqConfig) -> LoadError {
    let conditional = unet.context_dim == 0 && left.iter().any(|k| k == CLASS_EMBEDDING);
    let config = format!("{} + {}", unet.name, vq.name);
    LoadError::Unused {
        source_name,
        count: left.len(),
        examples: left.into_iter().take(5).collect(),
        config: if conditional { format!("{config} (a class-conditional checkpoint: its UNet config is `imagenet256-ldm`)") } else { config },
    }
}

/// Refuses a UNet whose latents are not the autoencoder's.
fn check_pair(unet: &UnetConfig, vq: &VqConfig) -> Result<(), LoadError> {
    if unet.in_channels != vq.embed_dim || unet.out_channels != vq.embed_dim || unet.image_size != vq.latent_side() {
        return Err(LoadError::Data {
            source_name: source_name(unet, vq),
            key: "config".into(),
            why: format!(
                "UNet `{}` takes {}×{}×{} latents but autoencoder `{}` makes {}×{}×{}",
                unet.name,
                unet.in_channels,
                unet.image_size,
                unet.image_size,
                vq.name,
                vq.embed_dim,
                vq.latent_side(),
                vq.latent_side()
            ),
        });
    }
    Ok(())
}

/// The schedule buffers that define the schedule; a checkpoint must hold them.
const REQUIRED_BUFFERS: &[&str] = &["betas", "alphas_cumprod"];

/// Takes the schedule buffers, checking `betas` and `alphas_cumprod` (required) against
/// `schedule` (float32 copies of the f64 tables: within 1e-6 relative); the derived ones are
/// taken where present.
fn check_schedule(source: &mut dyn ParamSource, schedule: &VpSchedule) -> Result<(), LoadError> {
    let t = schedule.len();
    let alpha_bar = schedule.alpha_bars().to_vec();
    let betas: Vec<f64> = (0..t).map(|i| 1.0 - alpha_bar[i] / if i == 0 { 1.0 } else { alpha_bar[i - 1] }).collect();
    for &key in SCHEDULE_BUFFERS {
        let name = source.name();
        let Some(shape) = source.shape_of(key, &[t]) else {
            if REQUIRED_BUFFERS.contains(&key) {
                return Err(LoadError::Missing { source_name: name, key: key.into(), expected: vec![t], config: schedule.name().into() });
            }
            continue;
        };
        if shape != [t] {
            return Err(LoadError::Shape { source_name: name, key: key.into(), found: shape, expected: vec![t], config: schedule.name().into() });
        }
        let values = source.take_values(key, &shape)?;
        let reference = match key {
            "betas" => &betas,
            "alphas_cumprod" => &alpha_bar,
            _ => continue,
        };
        let worst = values.iter().zip(reference).map(|(v, r)| (f64::from(*v) - r).abs() / r.abs().max(1e-12)).fold(0.0, f64::max);
        if worst > 1e-6 {
            return Err(LoadError::Data {
                source_name: name,
                key: key.into(),
                why: format!("differs from the {} schedule by up to {worst:.2e} (relative): a checkpoint trained on another schedule", schedule.name()),
            });
        }
    }
    Ok(())
}

impl<B: NnBackend> Prior<B> for LatentPrior<B> {
    fn name(&self) -> String {
        format!("latent({} + {})", self.unet.net().config().name, self.vq.config().name)
    }

    fn dim(&self) -> usize {
        self.unet.dim()
    }

    fn sample_shape(&self) -> Vec<usize> {
        self.unet.sample_shape()
    }

    fn device(&self) -> B::Device {
        self.unet.device()
    }

    fn schedule(&self) -> &VpSchedule {
        self.unet.schedule()
    }

    /// DAPS's `LDM.tweedie`: D(z; σ) = z − σ·ε̂(z/√(1+σ²), c_noise(σ)) (module documentation).
    fn denoise(&self, x: Tensor<B, 2>, sigma: f64) -> Tensor<B, 2> {
        self.unet.denoise(x, sigma)
    }

    fn eps(&self, x_t: Tensor<B, 2>, t: usize) -> Tensor<B, 2> {
        self.unet.eps(x_t, t)
    }
}
