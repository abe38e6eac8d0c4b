//! Network layers as plain tensors loaded by state-dict key (the ADM UNet's, also used by the
//! metric networks and the nonlinear-blur operator). Weights are leaves that never require
//! gradients, so differentiating a network w.r.t. its input (DPS, MCG) computes no weight
//! gradients. Stride-1 same convolutions and float32 GroupNorm (+ affine map + SiLU) run through
//! the fused operations of [`crate::ops`].

use burn::prelude::*;
use burn::tensor::activation::silu;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, FloatDType};

use crate::NnBackend;
use crate::ops::{conv2d_same, group_norm_act};
use crate::source::{LoadError, ParamSource, take};

/// Multiply–accumulate operations performed by the UNet layers since the last
/// [`reset_macs`] (all threads together). Used by the benchmark to express a forward's time
/// against the machine's matrix-multiply speed; counting costs one atomic add per layer call.
static MACS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Resets the MAC counter.
pub fn reset_macs() {
    MACS.store(0, std::sync::atomic::Ordering::Relaxed);
}

/// MACs counted since the last reset.
pub fn macs() -> u64 {
    MACS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Adds `n` MACs to the counter.
pub fn count_macs(n: usize) {
    MACS.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
}

/// A map applied to every weight of a network, e.g. [`ToInner`].
pub trait WeightMap<B: Backend, C: Backend> {
    /// The image of one weight tensor.
    fn map<const D: usize>(&self, t: Tensor<B, D>) -> Tensor<C, D>;
}

/// An autodiff backend's weights as tensors of its inner backend (the same storage, no copy):
/// the network then runs without recording anything for a backward pass.
#[derive(Debug, Clone, Copy)]
pub struct ToInner;

impl<B: AutodiffBackend> WeightMap<B, B::InnerBackend> for ToInner {
    fn map<const D: usize>(&self, t: Tensor<B, D>) -> Tensor<B::InnerBackend, D> {
        t.inner()
    }
}

/// What every layer constructor needs: the parameter source, the device and the config name
/// (for error messages).
pub struct Loader<'a, B: Backend> {
    /// Where parameters come from.
    pub source: &'a mut dyn ParamSource,
    /// Where they go.
    pub device: B::Device,
    /// The configuration being built.
    pub config: String,
    /// Only check keys and shapes: every tensor is a 1-element placeholder (the network cannot
    /// run, but nothing of its size is allocated).
    pub dry_run: bool,
}

impl<B: Backend> Loader<'_, B> {
    /// Takes `key` with `shape` as a tensor of rank D.
    pub fn tensor<const D: usize>(&mut self, key: &str, shape: [usize; D]) -> Result<Tensor<B, D>, LoadError> {
        let values = take(self.source, key, &shape, &self.config)?;
        if self.dry_run {
            return Ok(Tensor::zeros([1; D], &self.device));
        }
        let tensor = Tensor::<B, 1>::from_floats(values.as_slice(), &self.device).reshape(shape);
        debug_assert!(!tensor.is_require_grad(), "weights are constants");
        Ok(tensor)
    }

    /// Takes `key` stored with `file_shape` and returns it reshaped to `shape` (same size).
    pub fn tensor_as<const D: usize, const E: usize>(&mut self, key: &str, file_shape: [usize; D], shape: [usize; E]) -> Result<Tensor<B, E>, LoadError> {
        let t = self.tensor(key, file_shape)?;
        Ok(if self.dry_run { Tensor::zeros([1; E], &self.device) } else { t.reshape(shape) })
    }
}

/// A 2-D convolution with bias (torch `nn.Conv2d`, weight `[out, in, k, k]`).
#[derive(Debug, Clone)]
pub struct Conv2d<B: Backend> {
    weight: Tensor<B, 4>,
    bias: Tensor<B, 1>,
    stride: usize,
    padding: usize,
}

impl<B: Backend> Conv2d<B> {
    /// The layer with every weight mapped by `m`.
    pub fn map<C: Backend>(self, m: &impl WeightMap<B, C>) -> Conv2d<C> {
        Conv2d { weight: m.map(self.weight), bias: m.map(self.bias), stride: self.stride, padding: self.padding }
    }
}

impl<B: NnBackend> Conv2d<B> {
    /// Whether each weight tensor requires a gradient.
    pub fn requires_grad(&self) -> Vec<bool> {
        vec![self.weight.is_require_grad(), self.bias.is_require_grad()]
    }

    /// Loads `<key>.weight` `[out, in, k, k]` and `<key>.bias` `[out]`.
    pub fn load(l: &mut Loader<'_, B>, key: &str, cin: usize, cout: usize, k: usize, stride: usize, padding: usize) -> Result<Self, LoadError> {
        Ok(Self { weight: l.tensor(&format!("{key}.weight"), [cout, cin, k, k])?, bias: l.tensor(&format!("{key}.bias"), [cout])?, stride, padding })
    }

    /// The layer with its weight and bias stored in `dtype` (guided-diffusion
    /// `convert_module_to_f16`: convolutions, and only they, become half precision).
    pub fn cast(self, dtype: FloatDType) -> Self {
        Self { weight: self.weight.cast(dtype), bias: self.bias.cast(dtype), ..self }
    }

    /// [`Conv2d::forward`] as under `torch.autocast`: the convolution runs in the weight's type
    /// (x cast to it) and its result comes back in x's type, so everything around the
    /// convolutions (GroupNorm, softmax, residual sums) keeps x's precision. With float32
    /// weights it is [`Conv2d::forward`].
    pub fn forward_autocast(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let (from, to) = (x.dtype(), self.weight.dtype());
        if from == to {
            return self.forward(x);
        }
        self.forward(x.cast(FloatDType::from(to))).cast(FloatDType::from(from))
    }

    /// y = W ⋆ x + b (cross-correlation, as torch), in the precision of the input, which must be
    /// the weight's (half-precision blocks receive half-precision activations). Stride-1
    /// convolutions with padding (k − 1)/2 run as [`conv2d_same`].
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [cout, cin, kh, kw] = self.weight.dims();
        let same = self.stride == 1 && kh == kw && kh % 2 == 1 && self.padding == (kh - 1) / 2;
        let y = if same {
            conv2d_same(x, self.weight.clone(), self.bias.clone())
        } else {
            let opts = ConvOptions::new([self.stride; 2], [self.padding; 2], [1, 1], 1);
            conv2d(x, self.weight.clone(), Some(self.bias.clone()), opts)
        };
        let [n, _, h, w] = y.dims();
        count_macs(n * cout * h * w * cin * kh * kw);
        y
    }
}

/// A 1×1 convolution over a sequence `[b, c, t]` (torch `nn.Conv1d(k=1)`, weight `[out, in, 1]`),
/// computed as a matrix product.
#[derive(Debug, Clone)]
pub struct PointwiseConv1d<B: Backend> {
    weight: Tensor<B, 2>,
    bias: Tensor<B, 1>,
}

impl<B: Backend> PointwiseConv1d<B> {
    /// The layer with every weight mapped by `m`.
    pub fn map<C: Backend>(self, m: &impl WeightMap<B, C>) -> PointwiseConv1d<C> {
        PointwiseConv1d { weight: m.map(self.weight), bias: m.map(self.bias) }
    }
}

impl<B: Backend> PointwiseConv1d<B> {
    /// Whether each weight tensor requires a gradient.
    pub fn requires_grad(&self) -> Vec<bool> {
        vec![self.weight.is_require_grad(), self.bias.is_require_grad()]
    }

    /// Loads `<key>.weight` `[out, in, 1]` and `<key>.bias` `[out]`.
    pub fn load(l: &mut Loader<'_, B>, key: &str, cin: usize, cout: usize) -> Result<Self, LoadError> {
        Ok(Self { weight: l.tensor_as(&format!("{key}.weight"), [cout, cin, 1], [cout, cin])?, bias: l.tensor(&format!("{key}.bias"), [cout])? })
    }

    /// The layer in `dtype` (a torch `Conv1d`, converted like [`Conv2d::cast`]).
    pub fn cast(self, dtype: FloatDType) -> Self {
        Self { weight: self.weight.cast(dtype), bias: self.bias.cast(dtype) }
    }

    /// y[b, o, t] = Σ_i W[o, i]·x[b, i, t] + b[o].
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, _, t] = x.dims();
        let [cout, cin] = self.weight.dims();
        count_macs(b * cout * cin * t);
        let w = self.weight.clone().unsqueeze_dim::<3>(0).expand([b, cout, cin]);
        w.matmul(x) + self.bias.clone().reshape([1, cout, 1]).expand([b, cout, t])
    }
}

/// A linear layer (torch `nn.Linear`, weight `[out, in]`).
#[derive(Debug, Clone)]
pub struct Linear<B: Backend> {
    weight_t: Tensor<B, 2>,
    bias: Tensor<B, 1>,
}

impl<B: Backend> Linear<B> {
    /// The layer with every weight mapped by `m`.
    pub fn map<C: Backend>(self, m: &impl WeightMap<B, C>) -> Linear<C> {
        Linear { weight_t: m.map(self.weight_t), bias: m.map(self.bias) }
    }
}

impl<B: Backend> Linear<B> {
    /// Whether each weight tensor requires a gradient.
    pub fn requires_grad(&self) -> Vec<bool> {
        vec![self.weight_t.is_require_grad(), self.bias.is_require_grad()]
    }

    /// Loads `<key>.weight` `[out, in]` and `<key>.bias` `[out]`.
    pub fn load(l: &mut Loader<'_, B>, key: &str, cin: usize, cout: usize) -> Result<Self, LoadError> {
        let w: Tensor<B, 2> = l.tensor(&format!("{key}.weight"), [cout, cin])?;
        Ok(Self { weight_t: w.transpose(), bias: l.tensor(&format!("{key}.bias"), [cout])? })
    }

    /// y = x·Wᵀ + b for x `[n, in]`.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let [cin, cout] = self.weight_t.dims();
        count_macs(x.dims()[0] * cin * cout);
        x.matmul(self.weight_t.clone()) + self.bias.clone().unsqueeze_dim(0)
    }
}

/// GroupNorm with 32 groups and ε = 1e-5 (or another ε, [`GroupNorm32::with_eps`]), in float32 (guided-diffusion `GroupNorm32`:
/// `super().forward(x.float()).type(x.dtype)`): y = (x − mean_g)/√(var_g + ε)·γ + β, statistics
/// (biased variance) over each group's channels and positions; a half-precision input is
/// normalised in float32 and the result returned in the input's precision.
#[derive(Debug, Clone)]
pub struct GroupNorm32<B: Backend> {
    gamma: Tensor<B, 1>,
    beta: Tensor<B, 1>,
    eps: f64,
}

impl<B: Backend> GroupNorm32<B> {
    /// The layer with every weight mapped by `m`.
    pub fn map<C: Backend>(self, m: &impl WeightMap<B, C>) -> GroupNorm32<C> {
        GroupNorm32 { gamma: m.map(self.gamma), beta: m.map(self.beta), eps: self.eps }
    }
}

impl<B: NnBackend> GroupNorm32<B> {
    /// Whether each weight tensor requires a gradient.
    pub fn requires_grad(&self) -> Vec<bool> {
        vec![self.gamma.is_require_grad(), self.beta.is_require_grad()]
    }

    /// Groups (32 in every ADM network).
    pub const GROUPS: usize = 32;
    /// ε (torch's default).
    pub const EPS: f64 = 1e-5;

    /// Loads `<key>.weight` (γ) and `<key>.bias` (β), both `[c]`.
    pub fn load(l: &mut Loader<'_, B>, key: &str, c: usize) -> Result<Self, LoadError> {
        Ok(Self { gamma: l.tensor(&format!("{key}.weight"), [c])?, beta: l.tensor(&format!("{key}.bias"), [c])?, eps: Self::EPS })
    }

    /// The layer with another ε (latent diffusion's autoencoder `Normalize`: 1e-6).
    pub fn with_eps(self, eps: f64) -> Self {
        Self { eps, ..self }
    }

    /// Normalises `[n, c, h, w]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        self.forward_act(x, None, false)
    }

    /// GroupNorm then SiLU (the `in_layers[0:2]` / `out` pattern).
    pub fn forward_silu(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        self.forward_act(x, None, true)
    }

    /// act(GN(x)·(1 + s) + t), with `modulation` = (s, t) `[n, c]` in float32 (the ADM
    /// scale-shift norm, `out_norm(h) * (1 + scale) + shift`, then SiLU), act = SiLU when `silu`.
    ///
    /// Float32 input: one fused operation with γ and β folded into the per-channel map,
    /// a = γ(1 + s), b = β(1 + s) + t ([`group_norm_act`]). Half-precision input (mixed
    /// precision): as guided-diffusion, GroupNorm in float32 with its result cast back, then the
    /// modulation and SiLU in the input's precision.
    pub fn forward_act(&self, x: Tensor<B, 4>, modulation: Option<(Tensor<B, 2>, Tensor<B, 2>)>, silu_after: bool) -> Tensor<B, 4> {
        let [n, c, h, w] = x.dims();
        if x.dtype() == DType::F32 {
            let gamma = self.gamma.clone().unsqueeze_dim::<2>(0).expand([n, c]);
            let beta = self.beta.clone().unsqueeze_dim::<2>(0).expand([n, c]);
            let (a, b) = match modulation {
                Some((s, t)) => {
                    let one_plus_s = s.add_scalar(1.0);
                    (gamma * one_plus_s.clone(), beta * one_plus_s + t)
                }
                None => (gamma, beta),
            };
            return group_norm_act(x, a, b, Self::GROUPS, self.eps, silu_after);
        }
        let dtype = x.dtype();
        let g = Self::GROUPS;
        let grouped = x.cast(FloatDType::F32).reshape([n, g, (c / g) * h * w]);
        let (var, mean) = grouped.clone().var_mean_bias(2);
        let normed = (grouped - mean).div(var.add_scalar(self.eps).sqrt()).reshape([n, c, h, w]);
        let y = normed * self.gamma.clone().reshape([1, c, 1, 1]) + self.beta.clone().reshape([1, c, 1, 1]);
        let mut y = y.cast(FloatDType::from(dtype));
        if let Some((s, t)) = modulation {
            let (s, t) = (cast_like(s, &y), cast_like(t, &y));
            y = y * s.reshape([n, c, 1, 1]).add_scalar(1.0) + t.reshape([n, c, 1, 1]);
        }
        if silu_after { silu(y) } else { y }
    }
}

/// Arithmetic precision of the UNet (guided-diffusion's `use_fp16`, generalised to bfloat16):
/// float32 everywhere, or the convolutions of the input, middle and output blocks (and their
/// activations, residual sums and attention products) in half precision, with GroupNorm, the
/// attention softmax, the timestep embedding and its linear layers, and the final `out` layers in
/// float32 — `unet.py`'s `convert_to_fp16` plus `GroupNorm32` and `QKVAttentionLegacy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// float32 everywhere.
    #[default]
    F32,
    /// Mixed precision with IEEE half convolutions (guided-diffusion `use_fp16=True`).
    F16,
    /// Mixed precision with bfloat16 convolutions.
    Bf16,
}

impl Precision {
    /// The half type of the blocks, `None` for float32.
    pub fn half(self) -> Option<FloatDType> {
        match self {
            Self::F32 => None,
            Self::F16 => Some(FloatDType::F16),
            Self::Bf16 => Some(FloatDType::BF16),
        }
    }
}

/// `x` cast to the precision of `like` (`.type(h.dtype)` in guided-diffusion).
pub fn cast_like<B: Backend, const D: usize, const E: usize>(x: Tensor<B, D>, like: &Tensor<B, E>) -> Tensor<B, D> {
    let dtype: DType = like.dtype();
    x.cast(FloatDType::from(dtype))
}
