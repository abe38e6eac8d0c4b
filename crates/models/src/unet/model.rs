//! The ADM UNet of guided-diffusion (Dhariwal & Nichol 2021), the prior network of DPS, MCG and
//! DAPS, built directly from a checkpoint's state dict (module layout and key names mirror
//! `unet.py`: `time_embed`, `input_blocks`, `middle_block`, `output_blocks`, `out`). With
//! `resblock_updown = false` and no scale-shift norm it is also the unconditional UNet of latent
//! diffusion (`openaimodel.py`, the same code base), whose levels resample with plain layers.

use burn::prelude::*;
use burn::tensor::FloatDType;
use burn::tensor::activation::silu;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};

use super::blocks::{AttentionBlock, ResBlock, Resample, SpatialTransformer};
use super::config::UnetConfig;
use dipbench_nn::NnBackend;
use dipbench_nn::layers::{Conv2d, GroupNorm32, Linear, Loader, Precision, ToInner, WeightMap};
use dipbench_nn::source::{LoadError, ParamSource, finish};

/// One element of a `TimestepEmbedSequential`.
#[derive(Debug, Clone)]
enum Layer<B: Backend> {
    Conv(Conv2d<B>),
    Res(ResBlock<B>),
    Attn(AttentionBlock<B>),
    /// `Upsample(use_conv=True)`: nearest ×2, then a 3×3 convolution (`conv`).
    Up(Conv2d<B>),
    /// `SpatialTransformer` with the network's cross-attention context.
    Cross(SpatialTransformer<B>),
}

impl<B: Backend> Layer<B> {
    fn map<C: Backend>(self, m: &impl WeightMap<B, C>) -> Layer<C> {
        match self {
            Self::Conv(c) => Layer::Conv(c.map(m)),
            Self::Up(c) => Layer::Up(c.map(m)),
            Self::Cross(t) => Layer::Cross(t.map(m)),
            Self::Res(r) => Layer::Res(r.map(m)),
            Self::Attn(a) => Layer::Attn(a.map(m)),
        }
    }
}

impl<B: NnBackend> Layer<B> {
    fn cast(self, dtype: FloatDType) -> Self {
        match self {
            Self::Conv(c) => Self::Conv(c.cast(dtype)),
            Self::Up(c) => Self::Up(c.cast(dtype)),
            // The transformer's linear layers and norms stay float32 (its convolutions are 1×1).
            Self::Cross(t) => Self::Cross(t),
            Self::Res(r) => Self::Res(r.cast(dtype)),
            Self::Attn(a) => Self::Attn(a.cast(dtype)),
        }
    }

    fn forward(&self, x: Tensor<B, 4>, silu_emb: &Tensor<B, 2>, context: Option<&Tensor<B, 3>>) -> Tensor<B, 4> {
        match self {
            Self::Cross(t) => t.forward(x, context.expect("a cross-attention UNet runs with its context (AdmUnet::with_context)")),
            Self::Conv(c) => c.forward(x),
            Self::Up(c) => {
                let [_, _, h, w] = x.dims();
                c.forward(interpolate(x, [2 * h, 2 * w], InterpolateOptions::new(InterpolateMode::Nearest)))
            }
            Self::Res(r) => r.forward(x, silu_emb.clone()),
            Self::Attn(a) => a.forward(x),
        }
    }
}

fn run<B: NnBackend>(layers: &[Layer<B>], x: Tensor<B, 4>, silu_emb: &Tensor<B, 2>, context: Option<&Tensor<B, 3>>) -> Tensor<B, 4> {
    layers.iter().fold(x, |h, l| l.forward(h, silu_emb, context))
}

/// Intermediate activations, for checking a port layer by layer.
#[derive(Debug, Clone)]
pub struct UnetTrace<B: Backend> {
    /// The sinusoidal timestep embedding (cos first), `[n, C]`.
    pub temb_sin: Tensor<B, 2>,
    /// `time_embed` output, `[n, 4C]`.
    pub emb: Tensor<B, 2>,
    /// `input_blocks[0]` output.
    pub h_in0: Tensor<B, 4>,
    /// `middle_block` output.
    pub h_mid: Tensor<B, 4>,
    /// The network output `[n, out_channels, H, W]`.
    pub out: Tensor<B, 4>,
}

/// The guided-diffusion `UNetModel`.
#[derive(Debug, Clone)]
pub struct AdmUnet<B: Backend> {
    config: UnetConfig,
    time_embed_0: Linear<B>,
    time_embed_2: Linear<B>,
    input_blocks: Vec<Vec<Layer<B>>>,
    middle_block: Vec<Layer<B>>,
    output_blocks: Vec<Vec<Layer<B>>>,
    out_norm: GroupNorm32<B>,
    out_conv: Conv2d<B>,
    precision: Precision,
    /// The cross-attention context `[1 or n, s, context_dim]` of a class-conditional network.
    context: Option<Tensor<B, 3>>,
    device: B::Device,
}

impl<B: Backend> AdmUnet<B> {
    /// The network with every weight mapped by `m` onto backend `C` with device `device`.
    pub fn map<C: Backend>(self, m: &impl WeightMap<B, C>, device: C::Device) -> AdmUnet<C> {
        let blocks = |b: Vec<Vec<Layer<B>>>| b.into_iter().map(|layers| layers.into_iter().map(|l| l.map(m)).collect()).collect();
        AdmUnet {
            config: self.config,
            time_embed_0: self.time_embed_0.map(m),
            time_embed_2: self.time_embed_2.map(m),
            input_blocks: blocks(self.input_blocks),
            middle_block: self.middle_block.into_iter().map(|l| l.map(m)).collect(),
            output_blocks: blocks(self.output_blocks),
            out_norm: self.out_norm.map(m),
            out_conv: self.out_conv.map(m),
            precision: self.precision,
            context: self.context.map(|c| m.map(c)),
            device,
        }
    }
}

impl<B: AutodiffBackend> AdmUnet<B> {
    /// The same network (shared weights) on the inner backend, which records nothing for a
    /// backward pass: for the forwards that need no gradient.
    pub fn inner(self) -> AdmUnet<B::InnerBackend> {
        let device = self.device.clone();
        self.map(&ToInner, device)
    }
}

impl<B: NnBackend> AdmUnet<B> {
    /// Builds the network of `config` from `source`, taking every parameter by its key and
    /// shape; fails if a key is missing, has another shape, or if the source has keys left over.
    pub fn load(config: &UnetConfig, source: &mut dyn ParamSource, device: &B::Device) -> Result<Self, LoadError> {
        Self::build(config, source, device, false)
    }

    /// Checks that `source` holds exactly the keys and shapes of `config` without building the
    /// network (nothing of its size is allocated; values are not read).
    pub fn check_keys(config: &UnetConfig, source: &mut dyn ParamSource, device: &B::Device) -> Result<(), LoadError> {
        Self::build(config, source, device, true).map(|_| ())
    }

    /// The state-dict manifest (key, shape) of `config`, in state-dict order.
    pub fn manifest(config: &UnetConfig) -> Vec<(String, Vec<usize>)> {
        let mut rec = dipbench_nn::source::RecordingSource::default();
        Self::build(config, &mut rec, &Default::default(), true).expect("the recorder accepts every key");
        rec.taken
    }

    fn build(config: &UnetConfig, source: &mut dyn ParamSource, device: &B::Device, dry_run: bool) -> Result<Self, LoadError> {
        let mut l = Loader::<B> { source, device: device.clone(), config: config.name.clone(), dry_run };
        let c = config.model_channels;
        let emb_ch = config.emb_channels();
        let ss = config.use_scale_shift_norm;
        let time_embed_0 = Linear::load(&mut l, "time_embed.0", c, emb_ch)?;
        let time_embed_2 = Linear::load(&mut l, "time_embed.2", emb_ch, emb_ch)?;

        let mut ch = config.channel_mult[0] * c;
        let input_ch = ch;
        let mut input_blocks = vec![vec![Layer::Conv(Conv2d::load(&mut l, "input_blocks.0.0", config.in_channels, ch, 3, 1, 1)?)]];
        let mut chans = vec![ch];
        let mut ds = 1;
        let levels = config.channel_mult.len();
        for (level, &mult) in config.channel_mult.iter().enumerate() {
            for _ in 0..config.num_res_blocks {
                let key = format!("input_blocks.{}", input_blocks.len());
                let out = mult * c;
                let mut layers = vec![Layer::Res(ResBlock::load(&mut l, &format!("{key}.0"), ch, emb_ch, out, ss, Resample::None)?)];
                ch = out;
                if config.attention_ds.contains(&ds) {
                    layers.push(attention(&mut l, config, &format!("{key}.1"), ch)?);
                }
                input_blocks.push(layers);
                chans.push(ch);
            }
            if level + 1 != levels {
                let key = format!("input_blocks.{}.0", input_blocks.len());
                let layer = if config.resblock_updown {
                    Layer::Res(ResBlock::load(&mut l, &key, ch, emb_ch, ch, ss, Resample::Down)?)
                } else {
                    // `Downsample(use_conv=True)`: a 3×3 convolution with stride 2, padding 1 (`op`).
                    Layer::Conv(Conv2d::load(&mut l, &format!("{key}.op"), ch, ch, 3, 2, 1)?)
                };
                input_blocks.push(vec![layer]);
                chans.push(ch);
                ds *= 2;
            }
        }
        let middle_block = vec![
            Layer::Res(ResBlock::load(&mut l, "middle_block.0", ch, emb_ch, ch, ss, Resample::None)?),
            attention(&mut l, config, "middle_block.1", ch)?,
            Layer::Res(ResBlock::load(&mut l, "middle_block.2", ch, emb_ch, ch, ss, Resample::None)?),
        ];
        let mut output_blocks = vec![];
        for (level, &mult) in config.channel_mult.iter().enumerate().rev() {
            for i in 0..=config.num_res_blocks {
                let key = format!("output_blocks.{}", output_blocks.len());
                let ich = chans.pop().expect("one skip per input block");
                let out = mult * c;
                let mut layers = vec![Layer::Res(ResBlock::load(&mut l, &format!("{key}.0"), ch + ich, emb_ch, out, ss, Resample::None)?)];
                ch = out;
                if config.attention_ds.contains(&ds) {
                    layers.push(attention(&mut l, config, &format!("{key}.1"), ch)?);
                }
                if level > 0 && i == config.num_res_blocks {
                    let k = format!("{key}.{}", layers.len());
                    let layer = if config.resblock_updown {
                        Layer::Res(ResBlock::load(&mut l, &k, ch, emb_ch, ch, ss, Resample::Up)?)
                    } else {
                        Layer::Up(Conv2d::load(&mut l, &format!("{k}.conv"), ch, ch, 3, 1, 1)?)
                    };
                    layers.push(layer);
                    ds /= 2;
                }
                output_blocks.push(layers);
            }
        }
        let out_norm = GroupNorm32::load(&mut l, "out.0", ch)?;
        let out_conv = Conv2d::load(&mut l, "out.2", input_ch, config.out_channels, 3, 1, 1)?;
        finish(l.source, &config.name)?;
        Ok(Self {
            config: config.clone(),
            time_embed_0,
            time_embed_2,
            input_blocks,
            middle_block,
            output_blocks,
            out_norm,
            out_conv,
            precision: Precision::F32,
            context: None,
            device: device.clone(),
        })
    }

    /// The network with its cross-attention context `[1 or n, s, context_dim]` (batch 1 is
    /// broadcast over the images): latent diffusion's class embedding of the label it is
    /// conditioned on (`ClassEmbedder`; DAPS fixes class 1000).
    pub fn with_context(self, context: Tensor<B, 3>) -> Self {
        Self { context: Some(context), ..self }
    }

    /// The network in `precision` ([`Precision`]): for half precision the convolutions of the
    /// input, middle and output blocks are stored and run in that type, as guided-diffusion's
    /// `convert_to_fp16` does; the time embedding and `out` stay float32.
    pub fn with_precision(self, precision: Precision) -> Self {
        let Some(dtype) = precision.half() else { return self };
        let cast = |blocks: Vec<Vec<Layer<B>>>| blocks.into_iter().map(|b| b.into_iter().map(|l| l.cast(dtype)).collect()).collect();
        Self {
            input_blocks: cast(self.input_blocks),
            middle_block: self.middle_block.into_iter().map(|l| l.cast(dtype)).collect(),
            output_blocks: cast(self.output_blocks),
            precision,
            ..self
        }
    }

    /// The arithmetic precision of the blocks.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Whether any weight tensor would receive a gradient (never: weights are constants, so
    /// differentiating w.r.t. the input computes no weight gradients).
    pub fn any_weight_requires_grad(&self) -> bool {
        self.visit_weights().any(|requires| requires)
    }

    fn visit_weights(&self) -> impl Iterator<Item = bool> + '_ {
        let blocks = self.input_blocks.iter().chain(std::iter::once(&self.middle_block)).chain(self.output_blocks.iter());
        let layers = blocks.flatten().flat_map(|l| match l {
            Layer::Conv(c) | Layer::Up(c) => c.requires_grad(),
            Layer::Res(r) => r.requires_grad(),
            Layer::Attn(a) => a.requires_grad(),
            Layer::Cross(t) => t.requires_grad(),
        });
        layers
            .chain(self.time_embed_0.requires_grad())
            .chain(self.time_embed_2.requires_grad())
            .chain(self.out_norm.requires_grad())
            .chain(self.out_conv.requires_grad())
    }

    /// The configuration.
    pub fn config(&self) -> &UnetConfig {
        &self.config
    }

    /// The device.
    pub fn device(&self) -> &B::Device {
        &self.device
    }

    /// Runs the network on `x` `[n, c, H, W]` at timesteps `t` (one per sample, or one for all):
    /// integer DDPM steps or float c_noise values alike.
    pub fn forward(&self, x: Tensor<B, 4>, t: &[f32]) -> Tensor<B, 4> {
        self.forward_traced(x, t).out
    }

    /// [`AdmUnet::forward`] keeping the intermediates of [`UnetTrace`].
    pub fn forward_traced(&self, x: Tensor<B, 4>, t: &[f32]) -> UnetTrace<B> {
        let n = x.dims()[0];
        let temb_sin = timestep_embedding::<B>(&broadcast_t(t, n), self.config.model_channels, &self.device);
        let emb = self.time_embed_2.forward(silu(self.time_embed_0.forward(temb_sin.clone())));
        let silu_emb = silu(emb.clone());
        let mut skips = Vec::with_capacity(self.input_blocks.len());
        // `h = x.type(self.dtype)`: the blocks run in the network's precision.
        let mut h = match self.precision.half() {
            Some(dtype) => x.cast(dtype),
            None => x,
        };
        let mut h_in0 = None;
        for block in &self.input_blocks {
            h = run(block, h, &silu_emb, self.context.as_ref());
            if h_in0.is_none() {
                h_in0 = Some(h.clone());
            }
            skips.push(h.clone());
        }
        h = run(&self.middle_block, h, &silu_emb, self.context.as_ref());
        let h_mid = h.clone();
        for block in &self.output_blocks {
            let skip = skips.pop().expect("one skip per output block");
            h = run(block, Tensor::cat(vec![h, skip], 1), &silu_emb, self.context.as_ref());
        }
        // `h = h.type(x.dtype)`: `out` runs in float32.
        let out = self.out_conv.forward(self.out_norm.forward_silu(h.cast(FloatDType::F32)));
        UnetTrace { temb_sin, emb, h_in0: h_in0.expect("at least one input block"), h_mid, out }
    }
}

/// The attention layer of `config` at `key`: the ADM `AttentionBlock`, or a `SpatialTransformer`
/// when the network has a cross-attention context.
fn attention<B: NnBackend>(l: &mut Loader<'_, B>, config: &UnetConfig, key: &str, ch: usize) -> Result<Layer<B>, LoadError> {
    Ok(if config.context_dim > 0 {
        Layer::Cross(SpatialTransformer::load(l, key, ch, config.context_dim, config.heads(ch))?)
    } else {
        Layer::Attn(AttentionBlock::load(l, key, ch, config.heads(ch))?)
    })
}

fn broadcast_t(t: &[f32], n: usize) -> Vec<f32> {
    match t.len() {
        1 => vec![t[0]; n],
        len if len == n => t.to_vec(),
        len => panic!("{len} timesteps for a batch of {n}"),
    }
}

/// The sinusoidal timestep embedding of guided-diffusion (`timestep_embedding`, cos first):
/// half = dim/2, freq_k = exp(−ln(10000)·k/half), emb = [cos(t·freq), sin(t·freq)] (zero-padded
/// when dim is odd). Computed in float32 exactly as torch does (freqs in f32, then t·freq in
/// f32), because at t ≈ 1000 a freq rounded differently moves the phase by ~1e-4.
pub fn timestep_embedding<B: Backend>(t: &[f32], dim: usize, device: &B::Device) -> Tensor<B, 2> {
    let half = dim / 2;
    let ln = -(10000f64.ln() as f32);
    let freqs: Vec<f32> = (0..half).map(|k| (ln * k as f32 / half as f32).exp()).collect();
    let mut v = Vec::with_capacity(t.len() * dim);
    for &ti in t {
        v.extend(freqs.iter().map(|f| (ti * f).cos()));
        v.extend(freqs.iter().map(|f| (ti * f).sin()));
        if dim % 2 == 1 {
            v.push(0.0);
        }
    }
    Tensor::<B, 1>::from_floats(v.as_slice(), device).reshape([t.len(), dim])
}
