//! LPIPS (Zhang et al., CVPR 2018): the distance between unit-normalised deep features,
//! weighted per channel by learned linear heads, averaged over space, summed over layers:
//!   d(x, y) = Σ_k mean_{h,w} Σ_c w_{k,c}·(f̂_k(x) − f̂_k(y))²_c,   f̂ = f/(‖f‖_channels + 1e-10).
//!
//! Variants, each named:
//! - [`LpipsVariant::Alex`], [`LpipsVariant::Vgg`]: the `lpips` package (v0.1): inputs in
//!   [−1, 1] through the scaling layer (x − shift)/scale, torchvision AlexNet / VGG16 features
//!   at relu1…relu5 (alex: conv1–5; vgg: relu1_2, relu2_2, relu3_3, relu4_3, relu5_3), max
//!   pooling, the v0.1 linear heads `lin{k}.model.1.weight`;
//! - [`LpipsVariant::PiqVgg`]: `piq.LPIPS(replace_pooling=True)` as DAPS/InverseBench use it:
//!   inputs in [0, 1] normalised by the ImageNet mean/std, VGG16 with every max-pool replaced by
//!   a 2×2 average pool, the same per-channel weighting.
//!
//! Backbone weights come from torchvision checkpoints (keys `features.{i}.weight|bias`; the
//! classifier is not used), linear heads from the lpips package's `alex.pth` / `vgg.pth`.

use burn::prelude::*;
use burn::tensor::activation::relu;
use burn::tensor::module::{avg_pool2d, max_pool2d};
use dipbench_nn::NnBackend;
use dipbench_nn::layers::{Conv2d, Loader};
use dipbench_nn::source::{LoadError, ParamSource, finish};

/// Which LPIPS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LpipsVariant {
    /// lpips package, AlexNet backbone.
    Alex,
    /// lpips package, VGG16 backbone.
    Vgg,
    /// piq, VGG16 with average pooling (DAPS).
    PiqVgg,
}

impl LpipsVariant {
    /// Name as in `dipbench score --metrics` (`lpips-alex`, `lpips-vgg`, `lpips-vgg-piq`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Alex => "lpips-alex",
            Self::Vgg => "lpips-vgg",
            Self::PiqVgg => "lpips-vgg-piq",
        }
    }

    /// The smallest image side the backbone accepts: AlexNet's 11×11/4 convolution and two 3×3/2
    /// max-pools before the last tap need ⌊(H − 7)/4⌋ + 1 ≥ 7, i.e. H ≥ 31; VGG16's four 2×2
    /// poolings before relu5_3 need H ≥ 16. PyTorch raises on smaller inputs too.
    pub fn min_side(self) -> usize {
        match self {
            Self::Alex => 31,
            Self::Vgg | Self::PiqVgg => 16,
        }
    }

    /// Channels of the five tapped layers.
    pub fn channels(self) -> [usize; 5] {
        match self {
            Self::Alex => [64, 192, 384, 256, 256],
            Self::Vgg | Self::PiqVgg => [64, 128, 256, 512, 512],
        }
    }
}

/// The lpips linear-head keys and shapes of a variant (`lin{k}.model.1.weight`, [1, C_k, 1, 1]).
pub fn heads_manifest(variant: LpipsVariant) -> Vec<(String, Vec<usize>)> {
    variant.channels().iter().enumerate().map(|(k, &c)| (format!("lin{k}.model.1.weight"), vec![1, c, 1, 1])).collect()
}

/// The torchvision `features.*` keys and shapes of `alexnet` or `vgg16` (the part a backbone
/// loads).
pub fn backbone_manifest(net: &str) -> Vec<(String, Vec<usize>)> {
    let variant = if net == "alexnet" || net == "alex" { LpipsVariant::Alex } else { LpipsVariant::Vgg };
    convs(variant)
        .into_iter()
        .flat_map(|(i, a, b, k, _, _)| [(format!("features.{i}.weight"), vec![b, a, k, k]), (format!("features.{i}.bias"), vec![b])])
        .collect()
}

/// One torchvision `features` module.
#[derive(Debug, Clone)]
enum Layer<B: Backend> {
    Conv(Conv2d<B>),
    Relu,
    MaxPool { k: usize, s: usize },
    AvgPool,
}

/// The backbone up to its last tapped layer.
#[derive(Debug, Clone)]
pub struct Backbone<B: Backend> {
    layers: Vec<Layer<B>>,
    /// Indices of the modules whose output is tapped (relu1…relu5).
    taps: Vec<usize>,
}

/// (in, out, kernel, stride, padding) of the convolutions of `features`, by module index.
fn convs(variant: LpipsVariant) -> Vec<(usize, usize, usize, usize, usize, usize)> {
    match variant {
        LpipsVariant::Alex => vec![(0, 3, 64, 11, 4, 2), (3, 64, 192, 5, 1, 2), (6, 192, 384, 3, 1, 1), (8, 384, 256, 3, 1, 1), (10, 256, 256, 3, 1, 1)],
        LpipsVariant::Vgg | LpipsVariant::PiqVgg => {
            let plan = [
                (0, 3, 64),
                (2, 64, 64),
                (5, 64, 128),
                (7, 128, 128),
                (10, 128, 256),
                (12, 256, 256),
                (14, 256, 256),
                (17, 256, 512),
                (19, 512, 512),
                (21, 512, 512),
                (24, 512, 512),
                (26, 512, 512),
                (28, 512, 512),
            ];
            plan.iter().map(|&(i, a, b)| (i, a, b, 3, 1, 1)).collect()
        }
    }
}

impl<B: NnBackend> Backbone<B> {
    /// Loads `features.{i}` from `source` (a torchvision checkpoint filtered to `features.`).
    pub fn load(variant: LpipsVariant, source: &mut dyn ParamSource, device: &B::Device) -> Result<Self, LoadError> {
        let mut l = Loader::<B> { source, device: device.clone(), config: format!("{} backbone", variant.name()), dry_run: false };
        let plan = convs(variant);
        let (last, taps, pools): (usize, Vec<usize>, Vec<usize>) = match variant {
            LpipsVariant::Alex => (11, vec![1, 4, 7, 9, 11], vec![2, 5]),
            _ => (29, vec![3, 8, 15, 22, 29], vec![4, 9, 16, 23]),
        };
        let mut layers = Vec::with_capacity(last + 1);
        for i in 0..=last {
            let layer = if let Some(&(_, cin, cout, k, s, p)) = plan.iter().find(|c| c.0 == i) {
                Layer::Conv(Conv2d::load(&mut l, &format!("features.{i}"), cin, cout, k, s, p)?)
            } else if pools.contains(&i) {
                match variant {
                    LpipsVariant::Alex => Layer::MaxPool { k: 3, s: 2 },
                    LpipsVariant::Vgg => Layer::MaxPool { k: 2, s: 2 },
                    LpipsVariant::PiqVgg => Layer::AvgPool,
                }
            } else {
                Layer::Relu
            };
            layers.push(layer);
        }
        finish(l.source, &l.config)?;
        Ok(Self { layers, taps })
    }

    /// The five tapped activations of `x` (already normalised for the backbone).
    pub fn features(&self, x: Tensor<B, 4>) -> Vec<Tensor<B, 4>> {
        let mut out = Vec::with_capacity(5);
        let mut h = x;
        for (i, layer) in self.layers.iter().enumerate() {
            h = match layer {
                Layer::Conv(c) => c.forward(h),
                Layer::Relu => relu(h),
                Layer::MaxPool { k, s } => max_pool2d(h, [*k, *k], [*s, *s], [0, 0], [1, 1], false),
                Layer::AvgPool => avg_pool2d(h, [2, 2], [2, 2], [0, 0], true, false),
            };
            if self.taps.contains(&i) {
                out.push(h.clone());
            }
        }
        out
    }
}

/// An LPIPS metric: backbone + per-layer channel weights.
#[derive(Debug, Clone)]
pub struct Lpips<B: Backend> {
    variant: LpipsVariant,
    backbone: Backbone<B>,
    /// w_k as `[1, C_k, 1, 1]`.
    heads: Vec<Tensor<B, 4>>,
}

impl<B: NnBackend> Lpips<B> {
    /// Builds the metric from a backbone source (torchvision `features.*`) and a head source
    /// (`lin{k}.model.1.weight`, shape [1, C_k, 1, 1]).
    pub fn load(variant: LpipsVariant, backbone: &mut dyn ParamSource, heads: &mut dyn ParamSource, device: &B::Device) -> Result<Self, LoadError> {
        let net = Backbone::load(variant, backbone, device)?;
        let mut l = Loader::<B> { source: heads, device: device.clone(), config: format!("{} linear heads", variant.name()), dry_run: false };
        let heads =
            variant.channels().iter().enumerate().map(|(k, &c)| l.tensor(&format!("lin{k}.model.1.weight"), [1, c, 1, 1])).collect::<Result<Vec<_>, _>>()?;
        finish(l.source, &l.config)?;
        Ok(Self { variant, backbone: net, heads })
    }

    /// The variant.
    pub fn variant(&self) -> LpipsVariant {
        self.variant
    }

    /// Maps images in [0, 1] `[n, 3, h, w]` to the backbone's input: lpips 2x − 1 then
    /// (x − shift)/scale; piq (x − mean)/std with the ImageNet statistics.
    fn prepare(&self, x01: Tensor<B, 4>) -> Tensor<B, 4> {
        let device = x01.device();
        let (shift, scale): ([f32; 3], [f32; 3]) = match self.variant {
            LpipsVariant::Alex | LpipsVariant::Vgg => ([-0.030, -0.088, -0.188], [0.458, 0.448, 0.450]),
            LpipsVariant::PiqVgg => ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        };
        let x = match self.variant {
            LpipsVariant::PiqVgg => x01,
            _ => x01.mul_scalar(2.0).sub_scalar(1.0),
        };
        let sh = Tensor::<B, 1>::from_floats(shift, &device).reshape([1, 3, 1, 1]);
        let sc = Tensor::<B, 1>::from_floats(scale, &device).reshape([1, 3, 1, 1]);
        (x - sh) / sc
    }

    /// Unit-normalised features of images in [0, 1].
    pub fn normalised_features(&self, x01: Tensor<B, 4>) -> Vec<Tensor<B, 4>> {
        self.backbone
            .features(self.prepare(x01))
            .into_iter()
            .map(|f| {
                let norm = f.clone().powf_scalar(2.0).sum_dim(1).sqrt();
                f / norm.add_scalar(1e-10)
            })
            .collect()
    }

    /// Per-layer terms mean_{h,w} Σ_c w_c (f̂(x) − f̂(y))², `[n]` each, for images in [0, 1].
    pub fn per_layer(&self, x01: Tensor<B, 4>, y01: Tensor<B, 4>) -> Vec<Tensor<B, 1>> {
        let (fx, fy) = (self.normalised_features(x01), self.normalised_features(y01));
        fx.into_iter()
            .zip(fy)
            .zip(&self.heads)
            .map(|((a, b), w)| {
                let d = (a - b).powf_scalar(2.0) * w.clone();
                let [n, _, h, ww] = d.dims();
                d.sum_dim(1).reshape([n, h * ww]).mean_dim(1).reshape([n])
            })
            .collect()
    }

    /// LPIPS of each pair (rows of `x01`, `y01` in [0, 1]).
    pub fn distance(&self, x01: Tensor<B, 4>, y01: Tensor<B, 4>) -> Tensor<B, 1> {
        self.per_layer(x01, y01).into_iter().reduce(|a, b| a + b).expect("five layers")
    }
}
