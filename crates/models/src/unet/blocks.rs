//! The ADM building blocks (guided-diffusion `unet.py`): the residual block with timestep
//! conditioning and optional resampling, and the legacy-order multi-head attention block.

use burn::prelude::*;
use burn::tensor::activation::gelu;
use burn::tensor::module::{avg_pool2d, interpolate};
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use dipbench_nn::ops::softmax_last;

use burn::tensor::FloatDType;

use dipbench_nn::NnBackend;
use dipbench_nn::layers::{Conv2d, GroupNorm32, Linear, Loader, PointwiseConv1d, WeightMap, cast_like};
use dipbench_nn::source::LoadError;

/// Resampling inside a residual block (`resblock_updown`): 2×2 average pooling down, nearest ×2
/// up, applied to both the residual and the skip path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resample {
    /// No resampling.
    None,
    /// `down=True`: avg-pool 2×2, stride 2.
    Down,
    /// `up=True`: nearest-neighbour ×2.
    Up,
}

impl Resample {
    fn apply<B: Backend>(self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        match self {
            Self::None => x,
            Self::Down => avg_pool2d(x, [2, 2], [2, 2], [0, 0], true, false),
            Self::Up => {
                let [_, _, h, w] = x.dims();
                interpolate(x, [2 * h, 2 * w], InterpolateOptions::new(InterpolateMode::Nearest))
            }
        }
    }
}

/// `ResBlock`: h = conv(SiLU(GN(x))) [resampled between GN·SiLU and conv when up/down];
/// with scale-shift norm, [scale, shift] = Linear(SiLU(emb)) and h = GN(h)·(1 + scale) + shift;
/// h = conv(SiLU(h)); out = skip(x) + h, skip a 1×1 conv when the channel count changes.
#[derive(Debug, Clone)]
pub struct ResBlock<B: Backend> {
    in_norm: GroupNorm32<B>,
    in_conv: Conv2d<B>,
    emb: Linear<B>,
    out_norm: GroupNorm32<B>,
    out_conv: Conv2d<B>,
    skip: Option<Conv2d<B>>,
    resample: Resample,
    scale_shift: bool,
    out_channels: usize,
}

impl<B: Backend> ResBlock<B> {
    /// The block with every weight mapped by `m`.
    pub fn map<C: Backend>(self, m: &impl WeightMap<B, C>) -> ResBlock<C> {
        ResBlock {
            in_norm: self.in_norm.map(m),
            in_conv: self.in_conv.map(m),
            emb: self.emb.map(m),
            out_norm: self.out_norm.map(m),
            out_conv: self.out_conv.map(m),
            skip: self.skip.map(|s| s.map(m)),
            resample: self.resample,
            scale_shift: self.scale_shift,
            out_channels: self.out_channels,
        }
    }
}

impl<B: NnBackend> ResBlock<B> {
    /// Loads the block at `key` (`in_layers.0/.2`, `emb_layers.1`, `out_layers.0/.3`,
    /// `skip_connection`).
    #[allow(clippy::too_many_arguments)]
    pub fn load(
        l: &mut Loader<'_, B>,
        key: &str,
        channels: usize,
        emb_channels: usize,
        out_channels: usize,
        scale_shift: bool,
        resample: Resample,
    ) -> Result<Self, LoadError> {
        let emb_out = if scale_shift { 2 * out_channels } else { out_channels };
        Ok(Self {
            in_norm: GroupNorm32::load(l, &format!("{key}.in_layers.0"), channels)?,
            in_conv: Conv2d::load(l, &format!("{key}.in_layers.2"), channels, out_channels, 3, 1, 1)?,
            emb: Linear::load(l, &format!("{key}.emb_layers.1"), emb_channels, emb_out)?,
            out_norm: GroupNorm32::load(l, &format!("{key}.out_layers.0"), out_channels)?,
            out_conv: Conv2d::load(l, &format!("{key}.out_layers.3"), out_channels, out_channels, 3, 1, 1)?,
            skip: if out_channels == channels { None } else { Some(Conv2d::load(l, &format!("{key}.skip_connection"), channels, out_channels, 1, 1, 0)?) },
            resample,
            scale_shift,
            out_channels,
        })
    }

    /// Whether each weight tensor requires a gradient.
    pub fn requires_grad(&self) -> Vec<bool> {
        let mut v = [
            self.in_norm.requires_grad(),
            self.in_conv.requires_grad(),
            self.emb.requires_grad(),
            self.out_norm.requires_grad(),
            self.out_conv.requires_grad(),
        ]
        .concat();
        if let Some(s) = &self.skip {
            v.extend(s.requires_grad());
        }
        v
    }

    /// The block with its convolutions in `dtype` (the embedding's linear layer stays float32).
    pub fn cast(self, dtype: FloatDType) -> Self {
        Self { in_conv: self.in_conv.cast(dtype), out_conv: self.out_conv.cast(dtype), skip: self.skip.map(|s| s.cast(dtype)), ..self }
    }

    /// The block on `x` `[n, c, h, w]` with SiLU(emb) `[n, e]` (float32) already applied; the
    /// embedding's projection is cast to the activations' precision (`.type(h.dtype)`).
    pub fn forward(&self, x: Tensor<B, 4>, silu_emb: Tensor<B, 2>) -> Tensor<B, 4> {
        let h = self.in_norm.forward_silu(x.clone());
        let (h, x) = (self.in_conv.forward(self.resample.apply(h)), self.resample.apply(x));
        let e = self.emb.forward(silu_emb);
        let [n, _] = e.dims();
        let c = self.out_channels;
        let h = if self.scale_shift {
            let scale = e.clone().slice([0..n, 0..c]);
            let shift = e.slice([0..n, c..2 * c]);
            self.out_norm.forward_act(h, Some((scale, shift)), true)
        } else {
            let e = cast_like(e, &h);
            self.out_norm.forward_silu(h + e.reshape([n, c, 1, 1]))
        };
        let h = self.out_conv.forward(h);
        match &self.skip {
            Some(s) => s.forward(x) + h,
            None => x + h,
        }
    }
}

/// `AttentionBlock` with `QKVAttentionLegacy`: qkv = Conv1d(GN(x)) is reshaped to
/// `[n·heads, 3·ch, T]` and split per head into q, k, v (per head the channels are
/// [q_h | k_h | v_h]); weights softmax((q·s)ᵀ(k·s)) with s = ch^{−1/4}; out = x + proj(attn).
#[derive(Debug, Clone)]
pub struct AttentionBlock<B: Backend> {
    norm: GroupNorm32<B>,
    qkv: PointwiseConv1d<B>,
    proj_out: PointwiseConv1d<B>,
    heads: usize,
}

impl<B: Backend> AttentionBlock<B> {
    /// The block with every weight mapped by `m`.
    pub fn map<C: Backend>(self, m: &impl WeightMap<B, C>) -> AttentionBlock<C> {
        AttentionBlock { norm: self.norm.map(m), qkv: self.qkv.map(m), proj_out: self.proj_out.map(m), heads: self.heads }
    }
}

impl<B: NnBackend> AttentionBlock<B> {
    /// Loads `norm`, `qkv`, `proj_out` at `key`.
    pub fn load(l: &mut Loader<'_, B>, key: &str, channels: usize, heads: usize) -> Result<Self, LoadError> {
        Ok(Self {
            norm: GroupNorm32::load(l, &format!("{key}.norm"), channels)?,
            qkv: PointwiseConv1d::load(l, &format!("{key}.qkv"), channels, 3 * channels)?,
            proj_out: PointwiseConv1d::load(l, &format!("{key}.proj_out"), channels, channels)?,
            heads,
        })
    }

    /// Whether each weight tensor requires a gradient.
    pub fn requires_grad(&self) -> Vec<bool> {
        [self.norm.requires_grad(), self.qkv.requires_grad(), self.proj_out.requires_grad()].concat()
    }

    /// The block with its 1×1 convolutions in `dtype`.
    pub fn cast(self, dtype: FloatDType) -> Self {
        Self { qkv: self.qkv.cast(dtype), proj_out: self.proj_out.cast(dtype), ..self }
    }

    /// The block on `[n, c, h, w]`; the softmax is taken in float32 and cast back
    /// (`th.softmax(weight.float(), dim=-1).type(weight.dtype)`).
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [n, c, hh, ww] = x.dims();
        let t = hh * ww;
        let qkv = self.qkv.forward(self.norm.forward(x.clone()).reshape([n, c, t]));
        let ch = c / self.heads;
        let qkv = qkv.reshape([n * self.heads, 3 * ch, t]);
        let scale = 1.0 / (ch as f64).sqrt().sqrt();
        let q = qkv.clone().slice([0..n * self.heads, 0..ch, 0..t]).mul_scalar(scale);
        let k = qkv.clone().slice([0..n * self.heads, ch..2 * ch, 0..t]).mul_scalar(scale);
        let v = qkv.slice([0..n * self.heads, 2 * ch..3 * ch, 0..t]);
        dipbench_nn::layers::count_macs(2 * n * c * t * t);
        // weight[b, t, s] = Σ_c q[b, c, t]·k[b, c, s]; softmax over s.
        let logits = q.swap_dims(1, 2).matmul(k);
        let weight = cast_like(softmax_last(logits.clone().cast(FloatDType::F32)), &logits);
        // a[b, c, t] = Σ_s weight[b, t, s]·v[b, c, s].
        let a = v.matmul(weight.swap_dims(1, 2)).reshape([n, c, t]);
        x + self.proj_out.forward(a).reshape([n, c, hh, ww])
    }
}

/// LayerNorm over the last dimension (torch `nn.LayerNorm`, ε = 1e-5, biased variance).
#[derive(Debug, Clone)]
struct LayerNorm<B: Backend> {
    gamma: Tensor<B, 1>,
    beta: Tensor<B, 1>,
}

impl<B: Backend> LayerNorm<B> {
    fn load(l: &mut Loader<'_, B>, key: &str, c: usize) -> Result<Self, LoadError> {
        Ok(Self { gamma: l.tensor(&format!("{key}.weight"), [c])?, beta: l.tensor(&format!("{key}.bias"), [c])? })
    }

    fn map<C: Backend>(self, m: &impl WeightMap<B, C>) -> LayerNorm<C> {
        LayerNorm { gamma: m.map(self.gamma), beta: m.map(self.beta) }
    }

    fn requires_grad(&self) -> Vec<bool> {
        vec![self.gamma.is_require_grad(), self.beta.is_require_grad()]
    }

    /// (x − mean)/√(var + ε)·γ + β over the last axis of `[n, t, c]`.
    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let c = x.dims()[2];
        let (var, mean) = x.clone().var_mean_bias(2);
        (x - mean).div(var.add_scalar(1e-5).sqrt()) * self.gamma.clone().reshape([1, 1, c]) + self.beta.clone().reshape([1, 1, c])
    }
}

/// A linear map on `[n, t, c_in]` (torch `nn.Linear` on tokens), with or without bias.
#[derive(Debug, Clone)]
struct TokenLinear<B: Backend> {
    weight: Tensor<B, 2>,
    bias: Option<Tensor<B, 1>>,
}

impl<B: Backend> TokenLinear<B> {
    fn load(l: &mut Loader<'_, B>, key: &str, cin: usize, cout: usize, bias: bool) -> Result<Self, LoadError> {
        let weight = l.tensor(&format!("{key}.weight"), [cout, cin])?;
        let bias = if bias { Some(l.tensor(&format!("{key}.bias"), [cout])?) } else { None };
        Ok(Self { weight, bias })
    }

    fn map<C: Backend>(self, m: &impl WeightMap<B, C>) -> TokenLinear<C> {
        TokenLinear { weight: m.map(self.weight), bias: self.bias.map(|b| m.map(b)) }
    }

    fn requires_grad(&self) -> Vec<bool> {
        std::iter::once(self.weight.is_require_grad()).chain(self.bias.iter().map(|b| b.is_require_grad())).collect()
    }

    /// y = x·Wᵀ + b.
    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [n, t, cin] = x.dims();
        let cout = self.weight.dims()[0];
        dipbench_nn::layers::count_macs(n * t * cin * cout);
        let y = x.reshape([n * t, cin]).matmul(self.weight.clone().transpose()).reshape([n, t, cout]);
        match &self.bias {
            Some(b) => y + b.clone().reshape([1, 1, cout]),
            None => y,
        }
    }
}

/// latent diffusion's `CrossAttention`: q from the tokens, k and v from the context (the tokens
/// themselves for self-attention), no bias; softmax(q·kᵀ·d^−½) per head; `to_out.0` with bias.
#[derive(Debug, Clone)]
struct CrossAttention<B: Backend> {
    to_q: TokenLinear<B>,
    to_k: TokenLinear<B>,
    to_v: TokenLinear<B>,
    to_out: TokenLinear<B>,
    heads: usize,
}

impl<B: Backend> CrossAttention<B> {
    fn load(l: &mut Loader<'_, B>, key: &str, c: usize, context: usize, heads: usize) -> Result<Self, LoadError> {
        Ok(Self {
            to_q: TokenLinear::load(l, &format!("{key}.to_q"), c, c, false)?,
            to_k: TokenLinear::load(l, &format!("{key}.to_k"), context, c, false)?,
            to_v: TokenLinear::load(l, &format!("{key}.to_v"), context, c, false)?,
            to_out: TokenLinear::load(l, &format!("{key}.to_out.0"), c, c, true)?,
            heads,
        })
    }

    fn map<C: Backend>(self, m: &impl WeightMap<B, C>) -> CrossAttention<C> {
        CrossAttention { to_q: self.to_q.map(m), to_k: self.to_k.map(m), to_v: self.to_v.map(m), to_out: self.to_out.map(m), heads: self.heads }
    }
}

impl<B: NnBackend> CrossAttention<B> {
    /// `x` `[n, t, c]`, `context` `[n, s, c_ctx]`.
    fn forward(&self, x: Tensor<B, 3>, context: Tensor<B, 3>) -> Tensor<B, 3> {
        let [n, t, c] = x.dims();
        let s = context.dims()[1];
        let (h, d) = (self.heads, c / self.heads);
        let split = |y: Tensor<B, 3>, len: usize| y.reshape([n, len, h, d]).swap_dims(1, 2).reshape([n * h, len, d]);
        let q = split(self.to_q.forward(x), t);
        let k = split(self.to_k.forward(context.clone()), s);
        let v = split(self.to_v.forward(context), s);
        dipbench_nn::layers::count_macs(2 * n * h * t * s * d);
        let w = softmax_last(q.matmul(k.swap_dims(1, 2)).mul_scalar(1.0 / (d as f64).sqrt()));
        let a = w.matmul(v).reshape([n, h, t, d]).swap_dims(1, 2).reshape([n, t, c]);
        self.to_out.forward(a)
    }
}

/// latent diffusion's `SpatialTransformer` (depth 1): GN(32, ε 1e-6) → `proj_in` 1×1 → tokens
/// `[n, h·w, c]` → x += attn1(LN₁x) → x += attn2(LN₂x, context) → x += ff(LN₃x) with the GEGLU
/// feed-forward (`net.0.proj` to 2·4c, split [x, gate], x·gelu(gate), `net.2` back to c) →
/// `proj_out` 1×1 → + input.
#[derive(Debug, Clone)]
pub struct SpatialTransformer<B: Backend> {
    norm: GroupNorm32<B>,
    proj_in: Conv2d<B>,
    attn1: CrossAttention<B>,
    ff_proj: TokenLinear<B>,
    ff_out: TokenLinear<B>,
    attn2: CrossAttention<B>,
    norm1: LayerNorm<B>,
    norm2: LayerNorm<B>,
    norm3: LayerNorm<B>,
    proj_out: Conv2d<B>,
}

impl<B: Backend> SpatialTransformer<B> {
    /// The block with every weight mapped by `m`.
    pub fn map<C: Backend>(self, m: &impl WeightMap<B, C>) -> SpatialTransformer<C> {
        SpatialTransformer {
            norm: self.norm.map(m),
            proj_in: self.proj_in.map(m),
            attn1: self.attn1.map(m),
            ff_proj: self.ff_proj.map(m),
            ff_out: self.ff_out.map(m),
            attn2: self.attn2.map(m),
            norm1: self.norm1.map(m),
            norm2: self.norm2.map(m),
            norm3: self.norm3.map(m),
            proj_out: self.proj_out.map(m),
        }
    }
}

impl<B: NnBackend> SpatialTransformer<B> {
    /// Loads the block at `key` in state-dict order (`norm`, `proj_in`,
    /// `transformer_blocks.0.{attn1, ff, attn2, norm1, norm2, norm3}`, `proj_out`).
    pub fn load(l: &mut Loader<'_, B>, key: &str, c: usize, context: usize, heads: usize) -> Result<Self, LoadError> {
        let tb = format!("{key}.transformer_blocks.0");
        Ok(Self {
            norm: GroupNorm32::load(l, &format!("{key}.norm"), c)?.with_eps(1e-6),
            proj_in: Conv2d::load(l, &format!("{key}.proj_in"), c, c, 1, 1, 0)?,
            attn1: CrossAttention::load(l, &format!("{tb}.attn1"), c, c, heads)?,
            ff_proj: TokenLinear::load(l, &format!("{tb}.ff.net.0.proj"), c, 8 * c, true)?,
            ff_out: TokenLinear::load(l, &format!("{tb}.ff.net.2"), 4 * c, c, true)?,
            attn2: CrossAttention::load(l, &format!("{tb}.attn2"), c, context, heads)?,
            norm1: LayerNorm::load(l, &format!("{tb}.norm1"), c)?,
            norm2: LayerNorm::load(l, &format!("{tb}.norm2"), c)?,
            norm3: LayerNorm::load(l, &format!("{tb}.norm3"), c)?,
            proj_out: Conv2d::load(l, &format!("{key}.proj_out"), c, c, 1, 1, 0)?,
        })
    }

    /// Whether each weight tensor requires a gradient.
    pub fn requires_grad(&self) -> Vec<bool> {
        let a = |c: &CrossAttention<B>| [c.to_q.requires_grad(), c.to_k.requires_grad(), c.to_v.requires_grad(), c.to_out.requires_grad()].concat();
        [
            self.norm.requires_grad(),
            self.proj_in.requires_grad(),
            a(&self.attn1),
            self.ff_proj.requires_grad(),
            self.ff_out.requires_grad(),
            a(&self.attn2),
            self.norm1.requires_grad(),
            self.norm2.requires_grad(),
            self.norm3.requires_grad(),
            self.proj_out.requires_grad(),
        ]
        .concat()
    }

    /// The block on `x` `[n, c, h, w]` with `context` `[1 or n, s, c_ctx]` (batch 1 broadcasts).
    pub fn forward(&self, x: Tensor<B, 4>, context: &Tensor<B, 3>) -> Tensor<B, 4> {
        let [n, c, hh, ww] = x.dims();
        let t = hh * ww;
        let [cn, s, cc] = context.dims();
        let context = if cn == n { context.clone() } else { context.clone().expand([n, s, cc]) };
        let h = self.proj_in.forward(self.norm.forward(x.clone()));
        let mut tok = h.reshape([n, c, t]).swap_dims(1, 2);
        let normed = self.norm1.forward(tok.clone());
        tok = tok + self.attn1.forward(normed.clone(), normed);
        tok = tok.clone() + self.attn2.forward(self.norm2.forward(tok.clone()), context);
        let ff = self.ff_proj.forward(self.norm3.forward(tok.clone()));
        let (a, gate) = (ff.clone().slice([0..n, 0..t, 0..4 * c]), ff.slice([0..n, 0..t, 4 * c..8 * c]));
        tok = tok + self.ff_out.forward(a * gelu(gate));
        let h = tok.swap_dims(1, 2).reshape([n, c, hh, ww]);
        x + self.proj_out.forward(h)
    }
}
