//! The VQ autoencoder of latent diffusion (Rombach et al., CVPR 2022; CompVis
//! `ldm/models/autoencoder.py` `VQModelInterface` with the `Encoder`/`Decoder` of
//! `ldm/modules/diffusionmodules/model.py` and taming's `VectorQuantizer2`), the first stage of
//! the LDM-VQ-4 priors: 3×256×256 images ↔ 3×64×64 latents (f = 4), 8192 codes.
//!
//! - encode(x) = quant_conv(encoder(x)) — not quantised (what LatentDAPS, PSLD and ReSample call
//!   "encode");
//! - decode(z) = decoder(post_quant_conv(quantize(z))), quantising first (DAPS's
//!   `differentiable_decode_first_stage`); the quantiser's straight-through estimator
//!   z_q = z + (e_{j*} − z).detach() passes gradients to z unchanged, so decode's gradient at z is
//!   the non-quantising decoder's gradient at the code z_q ([`VqAutoencoder::decode`]);
//! - decode_unquantised(z) = decoder(post_quant_conv(z)) (`force_not_quantize=True`).
//!
//! Blocks (keys relative to `first_stage_model.`): `ResnetBlock` = GN, swish, conv3×3, GN, swish,
//! conv3×3, plus a 1×1 `nin_shortcut` when the width changes; GroupNorm with 32 groups and
//! ε = 1e-6; `AttnBlock` = single-head attention with 1×1 q, k, v, proj_out and scale C^−½;
//! `Downsample` = zero-pad right and bottom by one, conv3×3 stride 2; `Upsample` = nearest ×2,
//! conv3×3.

use burn::prelude::*;
use burn::tensor::FloatDType;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use dipbench_nn::ops::softmax_last;
use serde::{Deserialize, Serialize};

use crate::error::ModelError;
use dipbench_nn::NnBackend;
use dipbench_nn::layers::{Conv2d, GroupNorm32, Loader, Precision};
use dipbench_nn::source::{LoadError, ParamSource, finish};

/// The GroupNorm ε of the autoencoder (`Normalize`).
const EPS: f64 = 1e-6;

/// The architecture of a `VQModelInterface` (its `ddconfig`, `embed_dim`, `n_embed`); attention
/// inside the levels (`attn_resolutions`) is empty in every LDM-VQ-4 config and not supported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VqConfig {
    /// Preset name (for messages).
    pub name: String,
    /// Image side.
    pub resolution: usize,
    /// Image channels.
    pub in_channels: usize,
    /// Decoded channels.
    pub out_channels: usize,
    /// Base width.
    pub ch: usize,
    /// Width multiplier per level (f = 2^(levels − 1)).
    pub ch_mult: Vec<usize>,
    /// Residual blocks per level (the decoder has one more).
    pub num_res_blocks: usize,
    /// Channels of the encoder output / decoder input.
    pub z_channels: usize,
    /// Channels of a codebook vector (the latent's channels).
    pub embed_dim: usize,
    /// Codebook size.
    pub n_embed: usize,
}

/// The preset names of [`VqConfig::by_name`].
pub const NAMES: &[&str] = &["vq-f4", "vq-tiny"];

impl VqConfig {
    /// VQ-f4 of the LDM-VQ-4 FFHQ and cin256-v2 checkpoints: ch 128, mult (1,2,4), 2 blocks,
    /// 3-channel latents, 8192 codes. 55,322,782 parameters.
    pub fn vq_f4() -> Self {
        Self {
            name: "vq-f4".into(),
            resolution: 256,
            in_channels: 3,
            out_channels: 3,
            ch: 128,
            ch_mult: vec![1, 2, 4],
            num_res_blocks: 2,
            z_channels: 3,
            embed_dim: 3,
            n_embed: 8192,
        }
    }

    /// The latent fixtures' tiny autoencoder (`latent/ldm_tiny.pt`): 64×64 images, ch 32, mult
    /// (1,1,2), 1 block, f = 4.
    pub fn tiny() -> Self {
        Self { name: "vq-tiny".into(), resolution: 64, ch: 32, ch_mult: vec![1, 1, 2], num_res_blocks: 1, ..Self::vq_f4() }
    }

    /// A preset by name ([`NAMES`]).
    pub fn by_name(name: &str) -> Result<Self, ModelError> {
        match name {
            "vq-f4" => Ok(Self::vq_f4()),
            "vq-tiny" => Ok(Self::tiny()),
            other => Err(ModelError::UnknownName { what: "autoencoder config", name: other.into(), known: NAMES.join(", ") }),
        }
    }

    /// The down factor f = 2^(levels − 1).
    pub fn factor(&self) -> usize {
        1 << (self.ch_mult.len() - 1)
    }

    /// The latent side.
    pub fn latent_side(&self) -> usize {
        self.resolution / self.factor()
    }
}

/// `ResnetBlock` without time embedding.
#[derive(Debug, Clone)]
struct ResnetBlock<B: Backend> {
    norm1: GroupNorm32<B>,
    conv1: Conv2d<B>,
    norm2: GroupNorm32<B>,
    conv2: Conv2d<B>,
    nin_shortcut: Option<Conv2d<B>>,
}

impl<B: NnBackend> ResnetBlock<B> {
    fn load(l: &mut Loader<'_, B>, key: &str, cin: usize, cout: usize) -> Result<Self, LoadError> {
        Ok(Self {
            norm1: GroupNorm32::load(l, &format!("{key}.norm1"), cin)?.with_eps(EPS),
            conv1: Conv2d::load(l, &format!("{key}.conv1"), cin, cout, 3, 1, 1)?,
            norm2: GroupNorm32::load(l, &format!("{key}.norm2"), cout)?.with_eps(EPS),
            conv2: Conv2d::load(l, &format!("{key}.conv2"), cout, cout, 3, 1, 1)?,
            nin_shortcut: if cin == cout { None } else { Some(Conv2d::load(l, &format!("{key}.nin_shortcut"), cin, cout, 1, 1, 0)?) },
        })
    }

    fn cast(self, dtype: FloatDType) -> Self {
        Self { conv1: self.conv1.cast(dtype), conv2: self.conv2.cast(dtype), nin_shortcut: self.nin_shortcut.map(|c| c.cast(dtype)), ..self }
    }

    /// x + conv2(swish(GN(conv1(swish(GN(x)))))) (x through the 1×1 shortcut when widths differ).
    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let h = self.conv1.forward_autocast(self.norm1.forward_silu(x.clone()));
        let h = self.conv2.forward_autocast(self.norm2.forward_silu(h));
        match &self.nin_shortcut {
            Some(s) => s.forward_autocast(x) + h,
            None => x + h,
        }
    }
}

/// `AttnBlock`: single-head spatial self-attention.
#[derive(Debug, Clone)]
struct AttnBlock<B: Backend> {
    norm: GroupNorm32<B>,
    q: Conv2d<B>,
    k: Conv2d<B>,
    v: Conv2d<B>,
    proj_out: Conv2d<B>,
}

impl<B: NnBackend> AttnBlock<B> {
    fn load(l: &mut Loader<'_, B>, key: &str, c: usize) -> Result<Self, LoadError> {
        let conv = |l: &mut Loader<'_, B>, name: &str| Conv2d::load(l, &format!("{key}.{name}"), c, c, 1, 1, 0);
        Ok(Self {
            norm: GroupNorm32::load(l, &format!("{key}.norm"), c)?.with_eps(EPS),
            q: conv(l, "q")?,
            k: conv(l, "k")?,
            v: conv(l, "v")?,
            proj_out: conv(l, "proj_out")?,
        })
    }

    fn cast(self, dtype: FloatDType) -> Self {
        Self { q: self.q.cast(dtype), k: self.k.cast(dtype), v: self.v.cast(dtype), proj_out: self.proj_out.cast(dtype), ..self }
    }

    /// x + proj_out(Σ_j softmax_j(q_i·k_j·C^−½)·v_j), i, j over the h·w positions.
    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [n, c, hh, ww] = x.dims();
        let t = hh * ww;
        let h = self.norm.forward(x.clone());
        let q = self.q.forward_autocast(h.clone()).reshape([n, c, t]);
        let k = self.k.forward_autocast(h.clone()).reshape([n, c, t]);
        let v = self.v.forward_autocast(h).reshape([n, c, t]);
        dipbench_nn::layers::count_macs(2 * n * c * t * t);
        // w[b, i, j] = Σ_c q[b, c, i]·k[b, c, j]·C^−½, softmax over j.
        let w = softmax_last(q.swap_dims(1, 2).matmul(k).mul_scalar(1.0 / (c as f64).sqrt()));
        // a[b, c, i] = Σ_j v[b, c, j]·w[b, i, j].
        let a = v.matmul(w.swap_dims(1, 2)).reshape([n, c, hh, ww]);
        x + self.proj_out.forward_autocast(a)
    }
}

/// The encoder's `Downsample`: zero padding (0, 1, 0, 1), then a 3×3 convolution with stride 2.
fn downsample<B: NnBackend>(conv: &Conv2d<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    conv.forward_autocast(x.pad((0, 1, 0, 1), burn::tensor::ops::PadMode::Constant(0.0)))
}

/// The decoder's `Upsample`: nearest ×2, then a 3×3 convolution.
fn upsample<B: NnBackend>(conv: &Conv2d<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [_, _, h, w] = x.dims();
    conv.forward_autocast(interpolate(x, [2 * h, 2 * w], InterpolateOptions::new(InterpolateMode::Nearest)))
}

/// One resolution level: its residual blocks and the resampling convolution after them.
#[derive(Debug, Clone)]
struct Level<B: Backend> {
    blocks: Vec<ResnetBlock<B>>,
    resample: Option<Conv2d<B>>,
}

impl<B: NnBackend> Level<B> {
    fn cast(self, dtype: FloatDType) -> Self {
        Self { blocks: self.blocks.into_iter().map(|b| b.cast(dtype)).collect(), resample: self.resample.map(|c| c.cast(dtype)) }
    }
}

/// The middle: block, attention, block.
#[derive(Debug, Clone)]
struct Middle<B: Backend> {
    block_1: ResnetBlock<B>,
    attn_1: AttnBlock<B>,
    block_2: ResnetBlock<B>,
}

impl<B: NnBackend> Middle<B> {
    fn load(l: &mut Loader<'_, B>, key: &str, c: usize) -> Result<Self, LoadError> {
        Ok(Self {
            block_1: ResnetBlock::load(l, &format!("{key}.block_1"), c, c)?,
            attn_1: AttnBlock::load(l, &format!("{key}.attn_1"), c)?,
            block_2: ResnetBlock::load(l, &format!("{key}.block_2"), c, c)?,
        })
    }

    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        self.block_2.forward(self.attn_1.forward(self.block_1.forward(x)))
    }

    fn cast(self, dtype: FloatDType) -> Self {
        Self { block_1: self.block_1.cast(dtype), attn_1: self.attn_1.cast(dtype), block_2: self.block_2.cast(dtype) }
    }
}

/// Intermediate activations, for checking a port layer by layer.
#[derive(Debug, Clone)]
pub struct VqTrace<B: Backend> {
    /// Encoder: `conv_in` output; decoder: `conv_in` output.
    pub conv_in: Tensor<B, 4>,
    /// The middle's output.
    pub mid: Tensor<B, 4>,
    /// The stage's output (encoder: after `quant_conv`; decoder: the image).
    pub out: Tensor<B, 4>,
}

/// The codebook lookup of a latent: per position the index of the nearest code and the code.
#[derive(Debug, Clone)]
pub struct Quantized<B: Backend> {
    /// z_q: every position replaced by its nearest code, `[n, embed_dim, h, w]`.
    pub z_q: Tensor<B, 4>,
    /// The code indices, `[n, h, w]` row-major.
    pub indices: Vec<usize>,
}

/// The `VQModelInterface` of a latent-diffusion checkpoint.
#[derive(Debug, Clone)]
pub struct VqAutoencoder<B: Backend> {
    config: VqConfig,
    enc_conv_in: Conv2d<B>,
    enc_levels: Vec<Level<B>>,
    enc_mid: Middle<B>,
    enc_norm_out: GroupNorm32<B>,
    enc_conv_out: Conv2d<B>,
    quant_conv: Conv2d<B>,
    /// The codebook `[n_embed, embed_dim]`.
    codebook: Tensor<B, 2>,
    post_quant_conv: Conv2d<B>,
    dec_conv_in: Conv2d<B>,
    dec_mid: Middle<B>,
    /// Decoder levels in execution order (level L−1 first), each with its upsampling.
    dec_levels: Vec<Level<B>>,
    dec_norm_out: GroupNorm32<B>,
    dec_conv_out: Conv2d<B>,
}

impl<B: NnBackend> VqAutoencoder<B> {
    /// Builds the autoencoder of `config` from `source` (the keys of `first_stage_model.`:
    /// `encoder.*`, `decoder.*`, `quantize.embedding.weight`, `quant_conv.*`,
    /// `post_quant_conv.*`), strictly: a missing key, another shape or a key left over is an
    /// error naming it.
    pub fn load(config: &VqConfig, source: &mut dyn ParamSource, device: &B::Device) -> Result<Self, LoadError> {
        Self::build(config, source, device, false)
    }

    /// The state-dict manifest (key, shape) of `config`, in construction order.
    pub fn manifest(config: &VqConfig) -> Vec<(String, Vec<usize>)> {
        let mut rec = dipbench_nn::source::RecordingSource::default();
        Self::build(config, &mut rec, &Default::default(), true).expect("the recorder accepts every key");
        rec.taken
    }

    fn build(config: &VqConfig, source: &mut dyn ParamSource, device: &B::Device, dry_run: bool) -> Result<Self, LoadError> {
        let mut l = Loader::<B> { source, device: device.clone(), config: config.name.clone(), dry_run };
        let (ch, levels) = (config.ch, config.ch_mult.len());
        // Encoder: in_ch_mult = (1,) + ch_mult; level i goes from ch·in_ch_mult[i] to ch·ch_mult[i].
        let enc_conv_in = Conv2d::load(&mut l, "encoder.conv_in", config.in_channels, ch, 3, 1, 1)?;
        let mut enc_levels = Vec::with_capacity(levels);
        let mut block_in = ch;
        for (i, &mult) in config.ch_mult.iter().enumerate() {
            let block_out = ch * mult;
            let mut blocks = Vec::with_capacity(config.num_res_blocks);
            for j in 0..config.num_res_blocks {
                blocks.push(ResnetBlock::load(&mut l, &format!("encoder.down.{i}.block.{j}"), block_in, block_out)?);
                block_in = block_out;
            }
            let resample =
                (i + 1 != levels).then(|| Conv2d::load(&mut l, &format!("encoder.down.{i}.downsample.conv"), block_in, block_in, 3, 2, 0)).transpose()?;
            enc_levels.push(Level { blocks, resample });
        }
        let enc_mid = Middle::load(&mut l, "encoder.mid", block_in)?;
        let enc_norm_out = GroupNorm32::load(&mut l, "encoder.norm_out", block_in)?.with_eps(EPS);
        let enc_conv_out = Conv2d::load(&mut l, "encoder.conv_out", block_in, config.z_channels, 3, 1, 1)?;
        // Decoder: from ch·ch_mult[L−1] down the levels L−1 … 0, num_res_blocks + 1 blocks each.
        let mut block_in = ch * config.ch_mult[levels - 1];
        let dec_conv_in = Conv2d::load(&mut l, "decoder.conv_in", config.z_channels, block_in, 3, 1, 1)?;
        let dec_mid = Middle::load(&mut l, "decoder.mid", block_in)?;
        let mut dec_levels = Vec::with_capacity(levels);
        for i in (0..levels).rev() {
            let block_out = ch * config.ch_mult[i];
            let mut blocks = Vec::with_capacity(config.num_res_blocks + 1);
            for j in 0..=config.num_res_blocks {
                blocks.push(ResnetBlock::load(&mut l, &format!("decoder.up.{i}.block.{j}"), block_in, block_out)?);
                block_in = block_out;
            }
            let resample = (i != 0).then(|| Conv2d::load(&mut l, &format!("decoder.up.{i}.upsample.conv"), block_in, block_in, 3, 1, 1)).transpose()?;
            dec_levels.push(Level { blocks, resample });
        }
        let dec_norm_out = GroupNorm32::load(&mut l, "decoder.norm_out", block_in)?.with_eps(EPS);
        let dec_conv_out = Conv2d::load(&mut l, "decoder.conv_out", block_in, config.out_channels, 3, 1, 1)?;
        let codebook = l.tensor("quantize.embedding.weight", [config.n_embed, config.embed_dim])?;
        let quant_conv = Conv2d::load(&mut l, "quant_conv", config.z_channels, config.embed_dim, 1, 1, 0)?;
        let post_quant_conv = Conv2d::load(&mut l, "post_quant_conv", config.embed_dim, config.z_channels, 1, 1, 0)?;
        finish(l.source, &config.name)?;
        Ok(Self {
            config: config.clone(),
            enc_conv_in,
            enc_levels,
            enc_mid,
            enc_norm_out,
            enc_conv_out,
            quant_conv,
            codebook,
            post_quant_conv,
            dec_conv_in,
            dec_mid,
            dec_levels,
            dec_norm_out,
            dec_conv_out,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &VqConfig {
        &self.config
    }

    /// The autoencoder in `precision` as PSLD runs it under `torch.autocast`: for half precision
    /// every convolution's weights are stored in that type and each convolution runs in it, its
    /// input cast down and its output cast back to float32 ([`Conv2d::forward_autocast`]);
    /// GroupNorm, the attention products and softmax, the residual sums and the quantiser stay
    /// float32.
    pub fn with_precision(self, precision: Precision) -> Self {
        let Some(dtype) = precision.half() else { return self };
        let levels = |l: Vec<Level<B>>| l.into_iter().map(|l| l.cast(dtype)).collect();
        Self {
            enc_conv_in: self.enc_conv_in.cast(dtype),
            enc_levels: levels(self.enc_levels),
            enc_mid: self.enc_mid.cast(dtype),
            enc_conv_out: self.enc_conv_out.cast(dtype),
            quant_conv: self.quant_conv.cast(dtype),
            post_quant_conv: self.post_quant_conv.cast(dtype),
            dec_conv_in: self.dec_conv_in.cast(dtype),
            dec_mid: self.dec_mid.cast(dtype),
            dec_levels: levels(self.dec_levels),
            dec_conv_out: self.dec_conv_out.cast(dtype),
            ..self
        }
    }

    /// encode(x) = quant_conv(encoder(x)), not quantised: `[n, C, H, W]` → `[n, embed_dim, H/f, W/f]`.
    pub fn encode(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        self.encode_traced(x).out
    }

    /// [`VqAutoencoder::encode`] keeping the intermediates.
    pub fn encode_traced(&self, x: Tensor<B, 4>) -> VqTrace<B> {
        let conv_in = self.enc_conv_in.forward_autocast(x);
        let mut h = conv_in.clone();
        for level in &self.enc_levels {
            h = level.blocks.iter().fold(h, |h, b| b.forward(h));
            if let Some(conv) = &level.resample {
                h = downsample(conv, h);
            }
        }
        let mid = self.enc_mid.forward(h);
        let out = self.quant_conv.forward_autocast(self.enc_conv_out.forward_autocast(self.enc_norm_out.forward_silu(mid.clone())));
        VqTrace { conv_in, mid, out }
    }

    /// The nearest code per position, argmin_j ‖z − e_j‖² = argmin_j (‖e_j‖² − 2·z·e_j) (the first
    /// index on ties; ‖z‖² is common to every j), computed in float64 on the host from the
    /// float32 values, so the choice does not depend on the backend's summation order.
    pub fn quantize(&self, z: Tensor<B, 4>) -> Quantized<B> {
        let [n, c, h, w] = z.dims();
        let codes: Vec<f32> = self.codebook.clone().into_data().convert::<f32>().to_vec().expect("float codebook");
        let zv: Vec<f32> = z.into_data().convert::<f32>().to_vec().expect("float latent");
        let norms: Vec<f64> = codes.chunks_exact(c).map(|e| e.iter().map(|v| f64::from(*v) * f64::from(*v)).sum()).collect();
        let mut indices = vec![0usize; n * h * w];
        for b in 0..n {
            for p in 0..h * w {
                let at = |ch: usize| f64::from(zv[(b * c + ch) * h * w + p]);
                let (mut best, mut best_d) = (0usize, f64::INFINITY);
                for (j, e) in codes.chunks_exact(c).enumerate() {
                    let dot: f64 = (0..c).map(|ch| at(ch) * f64::from(e[ch])).sum();
                    let d = norms[j] - 2.0 * dot;
                    if d < best_d {
                        (best, best_d) = (j, d);
                    }
                }
                indices[b * h * w + p] = best;
            }
        }
        Quantized { z_q: self.codes(&indices, [n, h, w]), indices }
    }

    /// The codes of `indices` (row-major `[n, h, w]`) as a latent `[n, embed_dim, h, w]`.
    pub fn codes(&self, indices: &[usize], [n, h, w]: [usize; 3]) -> Tensor<B, 4> {
        assert_eq!(indices.len(), n * h * w, "one index per latent position");
        let device = self.codebook.device();
        let idx = Tensor::<B, 1, Int>::from_data(TensorData::new(indices.iter().map(|&i| i as i64).collect::<Vec<_>>(), [indices.len()]), &device);
        // Rows of the codebook, one per position ([n·h·w, c]), to channels-first.
        self.codebook.clone().select(0, idx).reshape([n, h, w, self.config.embed_dim]).permute([0, 3, 1, 2])
    }

    /// decode(z) = decoder(post_quant_conv(quantize(z))) with the straight-through estimator
    /// z + (z_q − z).detach(): the value is the decoder at the codes, the gradient with respect
    /// to z that of the decoder at the codes (DAPS `LDM.decode`).
    pub fn decode(&self, z: Tensor<B, 4>) -> Tensor<B, 4> {
        let z_q = self.quantize(z.clone().detach()).z_q;
        let straight_through = z.clone() + (z_q - z.detach());
        self.decode_unquantised(straight_through)
    }

    /// decoder(post_quant_conv(z)) without quantisation (`force_not_quantize=True`).
    pub fn decode_unquantised(&self, z: Tensor<B, 4>) -> Tensor<B, 4> {
        self.decode_traced(z).out
    }

    /// [`VqAutoencoder::decode_unquantised`] keeping the intermediates.
    pub fn decode_traced(&self, z: Tensor<B, 4>) -> VqTrace<B> {
        let conv_in = self.dec_conv_in.forward_autocast(self.post_quant_conv.forward_autocast(z));
        let mid = self.dec_mid.forward(conv_in.clone());
        let mut h = mid.clone();
        for level in &self.dec_levels {
            h = level.blocks.iter().fold(h, |h, b| b.forward(h));
            if let Some(conv) = &level.resample {
                h = upsample(conv, h);
            }
        }
        let out = self.dec_conv_out.forward_autocast(self.dec_norm_out.forward_silu(h));
        VqTrace { conv_in, mid, out }
    }
}
