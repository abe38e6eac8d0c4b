//! ADM UNet hyper-parameters (guided-diffusion `create_model`; docs/protocols.md §2.1) and the
//! presets of the checkpoints dipbench knows.

use serde::{Deserialize, Serialize};

use crate::error::ModelError;

/// The architecture of a guided-diffusion `UNetModel`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnetConfig {
    /// Preset name (for messages).
    pub name: String,
    /// Input resolution H = W.
    pub image_size: usize,
    /// Input channels (3).
    pub in_channels: usize,
    /// Base channel count C.
    pub model_channels: usize,
    /// Output channels (6 with learned variance: ε then v).
    pub out_channels: usize,
    /// Residual blocks per level.
    pub num_res_blocks: usize,
    /// Downsampling factors ds at which attention is used (image_size / resolution).
    pub attention_ds: Vec<usize>,
    /// Channel multiplier per level.
    pub channel_mult: Vec<usize>,
    /// Heads when `num_head_channels` is 0.
    pub num_heads: usize,
    /// Channels per head (heads = C_level / this); 0 to use `num_heads`.
    pub num_head_channels: usize,
    /// FiLM-style scale/shift from the timestep embedding.
    pub use_scale_shift_norm: bool,
    /// Resample with residual blocks (`ResBlock(down/up=True)`) rather than plain layers.
    pub resblock_updown: bool,
    /// Width of the cross-attention context: > 0 makes every attention a `SpatialTransformer`
    /// (latent diffusion's class-conditional UNets), 0 the ADM `AttentionBlock`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub context_dim: usize,
}

fn is_zero(v: &usize) -> bool {
    *v == 0
}

/// The preset names of [`UnetConfig::by_name`]: the pixel-space networks, then the latent ones
/// ([`LATENT_NAMES`]).
pub const NAMES: &[&str] = &["ffhq256", "imagenet256", "tiny32", "ffhq256-ldm", "tiny16-ldm", "imagenet256-ldm", "tiny16-cin"];

/// The presets that are latent-diffusion UNets (they denoise autoencoder latents, not images).
pub const LATENT_NAMES: &[&str] = &["ffhq256-ldm", "tiny16-ldm", "imagenet256-ldm", "tiny16-cin"];

impl UnetConfig {
    /// FFHQ 256 (`ffhq_10m.pt`, DPS/DAPS `model_config.yaml`): 128 ch, 1 block, mult
    /// (1,1,2,2,4,4), attention at 16×16, 64 channels per head. 93,563,910 parameters.
    pub fn ffhq256() -> Self {
        Self {
            name: "ffhq256".into(),
            image_size: 256,
            in_channels: 3,
            model_channels: 128,
            out_channels: 6,
            num_res_blocks: 1,
            attention_ds: vec![16],
            channel_mult: vec![1, 1, 2, 2, 4, 4],
            num_heads: 4,
            num_head_channels: 64,
            use_scale_shift_norm: true,
            resblock_updown: true,
            context_dim: 0,
        }
    }

    /// ImageNet 256 unconditional (`256x256_diffusion_uncond.pt`): 256 ch, 2 blocks, attention
    /// at 32, 16, 8. 552,814,086 parameters.
    pub fn imagenet256() -> Self {
        Self { name: "imagenet256".into(), model_channels: 256, num_res_blocks: 2, attention_ds: vec![8, 16, 32], ..Self::ffhq256() }
    }

    /// The golden fixtures' tiny UNet (`unet_tiny.pt`): 32×32, 32 ch, 1 block, mult (1,2,2),
    /// attention at ds 2 and 4, 16 channels per head.
    pub fn tiny32() -> Self {
        Self {
            name: "tiny32".into(),
            image_size: 32,
            model_channels: 32,
            channel_mult: vec![1, 2, 2],
            attention_ds: vec![2, 4],
            num_head_channels: 16,
            ..Self::ffhq256()
        }
    }

    /// The unconditional latent-diffusion UNet of the LDM-VQ-4 FFHQ checkpoint
    /// (`ffhq-ldm-vq-4.yaml`): 3×64×64 latents, 224 ch, mult (1,2,3,4), 2 blocks, attention at
    /// ds 2, 4, 8 with 32 channels per head, no scale-shift norm, plain-layer resampling, ε only.
    /// 274,056,163 parameters.
    pub fn ffhq256_ldm() -> Self {
        Self {
            name: "ffhq256-ldm".into(),
            image_size: 64,
            in_channels: 3,
            model_channels: 224,
            out_channels: 3,
            num_res_blocks: 2,
            attention_ds: vec![2, 4, 8],
            channel_mult: vec![1, 2, 3, 4],
            num_heads: 1,
            num_head_channels: 32,
            use_scale_shift_norm: false,
            resblock_updown: false,
            context_dim: 0,
        }
    }

    /// The class-conditional latent-diffusion UNet of cin256-v2 (the DAPS paper's ImageNet
    /// latent prior): 192 ch, mult (1,2,3,5), 2 blocks, a `SpatialTransformer` (one head of the
    /// block's width, depth 1, 512-wide class context) at ds 2, 4, 8 and in the middle.
    /// 400,920,579 parameters.
    pub fn imagenet256_ldm() -> Self {
        Self {
            name: "imagenet256-ldm".into(),
            model_channels: 192,
            channel_mult: vec![1, 2, 3, 5],
            num_heads: 1,
            num_head_channels: 0,
            context_dim: 512,
            ..Self::ffhq256_ldm()
        }
    }

    /// The latent fixtures' tiny cross-attention UNet (`latent/unet_io`, `cin_*`): the
    /// cin256-v2 option set at 16×16 latents, 32 ch, mult (1,1,2), 1 block, 32-wide context.
    pub fn tiny16_cin() -> Self {
        Self { name: "tiny16-cin".into(), num_heads: 1, num_head_channels: 0, context_dim: 32, ..Self::tiny16_ldm() }
    }

    /// The latent fixtures' tiny LDM UNet (`latent/ldm_tiny.pt`): 16×16 latents, 32 ch, mult
    /// (1,1,2), 1 block, attention at ds 2 and 4, the FFHQ LDM's option set.
    pub fn tiny16_ldm() -> Self {
        Self {
            name: "tiny16-ldm".into(),
            image_size: 16,
            model_channels: 32,
            num_res_blocks: 1,
            attention_ds: vec![2, 4],
            channel_mult: vec![1, 1, 2],
            ..Self::ffhq256_ldm()
        }
    }

    /// A preset by name ([`NAMES`]).
    pub fn by_name(name: &str) -> Result<Self, ModelError> {
        match name {
            "ffhq256" => Ok(Self::ffhq256()),
            "imagenet256" => Ok(Self::imagenet256()),
            "tiny32" => Ok(Self::tiny32()),
            "ffhq256-ldm" => Ok(Self::ffhq256_ldm()),
            "tiny16-ldm" => Ok(Self::tiny16_ldm()),
            "imagenet256-ldm" => Ok(Self::imagenet256_ldm()),
            "tiny16-cin" => Ok(Self::tiny16_cin()),
            other => Err(ModelError::UnknownName { what: "UNet config", name: other.into(), known: NAMES.join(", ") }),
        }
    }

    /// Whether the preset is a latent-diffusion UNet ([`LATENT_NAMES`]).
    pub fn is_latent(&self) -> bool {
        LATENT_NAMES.contains(&self.name.as_str())
    }

    /// Heads of an attention block with `channels` channels.
    pub fn heads(&self, channels: usize) -> usize {
        channels.checked_div(self.num_head_channels).unwrap_or(self.num_heads)
    }

    /// The time-embedding width 4C.
    pub fn emb_channels(&self) -> usize {
        4 * self.model_channels
    }

    /// Whether the network predicts the variance interpolation v too.
    pub fn learn_sigma(&self) -> bool {
        self.out_channels == 2 * self.in_channels
    }
}
