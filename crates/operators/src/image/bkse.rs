//! Nonlinear (non-uniform) deblur: the bkse `KernelWizard` of Tran et al. (CVPR 2021,
//! VinAIResearch/blur-kernel-space-exploring @ f2fe73e, options `GOPRO_wVAE`: nf 64, front_RBs 10,
//! back_RBs 20, kernel_dim 512, use_vae, norm none), the forward model of the DPS and DAPS
//! "nonlinear deblur" task (docs/protocols.md §1.7):
//!
//!   y = clamp(2·adaptKernel((x + 1)/2, k) − 1, −1, 1),
//!   adaptKernel(u, k) = u + recon(adapter(features(u), k)),
//!
//! - features: conv3×3(3→64), LReLU(0.1), two stride-2 conv3×3 with LReLU, 10 residual blocks
//!   (conv–ReLU–conv, identity skip, no norm);
//! - adapter: the pix2pix U-Net of 5 levels (4×4 stride-2 convs without bias down, transposed
//!   convs up, LeakyReLU(0.2) down / ReLU up, Tanh at the top, norm = identity), where the
//!   1×512×2×2 kernel code k is concatenated at the innermost level. Reference quirk, kept: in a
//!   non-outermost block the LeakyReLU runs *in place* on the block input, so the skip
//!   connection carries LeakyReLU(x), not x;
//! - recon: 20 residual blocks, then 2 × (conv → PixelShuffle(2) → LReLU), conv, LReLU, conv → 3.
//!
//! The `kernel_extractor.*` weights of the checkpoint are read (and shape-checked) but unused,
//! as in the reference. k is fixed per job (DAPS); DPS draws a fresh k inside every forward call,
//! so guidance and measurement use different kernels (DPS issue #7) — available as
//! [`KernelCode::RedrawEachCall`], a documented flaw of the reference.

use std::sync::Mutex;

use burn::prelude::*;
use burn::tensor::activation::{leaky_relu, relu};
use burn::tensor::module::conv_transpose2d;
use burn::tensor::ops::ConvTransposeOptions;
use dipbench_nn::NnBackend;
use dipbench_nn::layers::{Conv2d, Loader};
use dipbench_nn::source::{LoadError, ParamSource, finish, take};

use super::separable::ImageShape;
use crate::noise::SampleRng;
use crate::operator::Operator;

/// The configuration name used in messages.
pub const CONFIG: &str = "bkse-GOPRO_wVAE";

/// A transposed 2-D convolution (torch `nn.ConvTranspose2d`, weight `[in, out, k, k]`).
#[derive(Debug, Clone)]
struct ConvTranspose<B: Backend> {
    weight: Tensor<B, 4>,
    bias: Option<Tensor<B, 1>>,
}

impl<B: Backend> ConvTranspose<B> {
    fn load(l: &mut Loader<'_, B>, key: &str, cin: usize, cout: usize, bias: bool) -> Result<Self, LoadError> {
        Ok(Self {
            weight: l.tensor(&format!("{key}.weight"), [cin, cout, 4, 4])?,
            bias: if bias { Some(l.tensor(&format!("{key}.bias"), [cout])?) } else { None },
        })
    }

    /// Kernel 4, stride 2, padding 1: doubles the resolution.
    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        conv_transpose2d(x, self.weight.clone(), self.bias.clone(), ConvTransposeOptions::new([2, 2], [1, 1], [0, 0], [1, 1], 1))
    }
}

/// A 4×4 stride-2 convolution without bias (the U-Net's down step).
#[derive(Debug, Clone)]
struct DownConv<B: Backend> {
    weight: Tensor<B, 4>,
}

impl<B: NnBackend> DownConv<B> {
    fn load(l: &mut Loader<'_, B>, key: &str, cin: usize, cout: usize) -> Result<Self, LoadError> {
        Ok(Self { weight: l.tensor(&format!("{key}.weight"), [cout, cin, 4, 4])? })
    }

    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        burn::tensor::module::conv2d(x, self.weight.clone(), None, burn::tensor::ops::ConvOptions::new([2, 2], [1, 1], [1, 1], 1))
    }
}

/// `ResidualBlock_noBN`: x + conv2(ReLU(conv1(x))).
#[derive(Debug, Clone)]
struct ResidualBlock<B: Backend> {
    conv1: Conv2d<B>,
    conv2: Conv2d<B>,
}

impl<B: NnBackend> ResidualBlock<B> {
    fn load(l: &mut Loader<'_, B>, key: &str, nf: usize) -> Result<Self, LoadError> {
        Ok(Self { conv1: Conv2d::load(l, &format!("{key}.conv1"), nf, nf, 3, 1, 1)?, conv2: Conv2d::load(l, &format!("{key}.conv2"), nf, nf, 3, 1, 1)? })
    }

    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        x.clone() + self.conv2.forward(relu(self.conv1.forward(x)))
    }
}

/// One level of the adapter's U-Net.
#[derive(Debug, Clone)]
struct UnetLevel<B: Backend> {
    down: DownConv<B>,
    up: ConvTranspose<B>,
}

/// `KernelWizard` restricted to what `adaptKernel` uses.
#[derive(Debug, Clone)]
pub struct KernelWizard<B: Backend> {
    features: Vec<Conv2d<B>>,
    front: Vec<ResidualBlock<B>>,
    /// Outermost first.
    levels: Vec<UnetLevel<B>>,
    back: Vec<ResidualBlock<B>>,
    up1: Conv2d<B>,
    up2: Conv2d<B>,
    hr: Conv2d<B>,
    last: Conv2d<B>,
}

/// Channel plan of the adapter, outermost first: (outer, inner, input) channels per level.
fn unet_levels(nf: usize) -> [(usize, usize, usize); 5] {
    [(nf, nf, nf), (nf, 2 * nf, nf), (2 * nf, 4 * nf, 2 * nf), (4 * nf, 8 * nf, 4 * nf), (8 * nf, 8 * nf, 8 * nf)]
}

impl<B: NnBackend> KernelWizard<B> {
    /// Kernel-code channels (`kernel_dim`).
    pub const KERNEL_DIM: usize = 512;
    const NF: usize = 64;

    /// Builds the network from a `GOPRO_wVAE` state dict (every key, including the unused
    /// `kernel_extractor.*`, must be present with its shape; nothing else may be).
    pub fn load(source: &mut dyn ParamSource, device: &B::Device) -> Result<Self, LoadError> {
        Self::build(source, device, false)
    }

    /// Checks that `source` holds exactly this network's keys and shapes, without building it.
    pub fn check_keys(source: &mut dyn ParamSource, device: &B::Device) -> Result<(), LoadError> {
        Self::build(source, device, true).map(|_| ())
    }

    fn build(source: &mut dyn ParamSource, device: &B::Device, dry_run: bool) -> Result<Self, LoadError> {
        let nf = Self::NF;
        let mut l = Loader::<B> { source, device: device.clone(), config: CONFIG.into(), dry_run };
        let features = vec![
            Conv2d::load(&mut l, "feature_extractor.0", 3, nf, 3, 1, 1)?,
            Conv2d::load(&mut l, "feature_extractor.2", nf, nf, 3, 2, 1)?,
            Conv2d::load(&mut l, "feature_extractor.4", nf, nf, 3, 2, 1)?,
        ];
        let front = (0..10).map(|i| ResidualBlock::load(&mut l, &format!("feature_extractor.{}", 6 + i), nf)).collect::<Result<_, _>>()?;
        Self::check_kernel_extractor(&mut l)?;
        let mut levels = vec![];
        for (depth, (outer, inner, input)) in unet_levels(nf).into_iter().enumerate() {
            let prefix = format!("adapter.model{}", ".submodule".repeat(depth));
            // The outermost block has no LeakyReLU before its down conv (index 0, else 1).
            let down_key = if depth == 0 { format!("{prefix}.down.0") } else { format!("{prefix}.down.1") };
            levels.push(UnetLevel {
                down: DownConv::load(&mut l, &down_key, input, inner)?,
                up: ConvTranspose::load(&mut l, &format!("{prefix}.up.1"), 2 * inner, outer, depth == 0)?,
            });
        }
        let back = (0..20).map(|i| ResidualBlock::load(&mut l, &format!("recon_trunk.{i}"), nf)).collect::<Result<_, _>>()?;
        let up1 = Conv2d::load(&mut l, "recon_trunk.20", nf, 4 * nf, 3, 1, 1)?;
        let up2 = Conv2d::load(&mut l, "recon_trunk.23", nf, 4 * 64, 3, 1, 1)?;
        let hr = Conv2d::load(&mut l, "recon_trunk.26", 64, 64, 3, 1, 1)?;
        let last = Conv2d::load(&mut l, "recon_trunk.28", 64, 3, 3, 1, 1)?;
        finish(l.source, CONFIG)?;
        Ok(Self { features, front, levels, back, up1, up2, hr, last })
    }

    /// `kernel_extractor.*` (the function F of the paper, unused by `adaptKernel`): taken with
    /// their shapes so that a checkpoint of another architecture is refused.
    fn check_kernel_extractor(l: &mut Loader<'_, B>) -> Result<(), LoadError> {
        let nf = Self::NF;
        let out = 2 * Self::KERNEL_DIM;
        let mut shapes = vec![("kernel_extractor.model.1.weight".to_string(), vec![nf, 2 * nf, 7, 7])];
        for i in 0..5 {
            let (inc, ouc) = ((nf << i).min(out), (nf << (i + 1)).min(out));
            shapes.push((format!("kernel_extractor.model.{}.weight", 4 + 3 * i), vec![ouc, inc, 3, 3]));
        }
        for b in 0..4 {
            for c in [1, 5] {
                shapes.push((format!("kernel_extractor.model.{}.conv_block.{c}.weight", 19 + b), vec![out, out, 3, 3]));
            }
        }
        for (key, shape) in shapes {
            take(l.source, &key, &shape, &l.config)?;
        }
        Ok(())
    }

    fn lrelu(x: Tensor<B, 4>) -> Tensor<B, 4> {
        leaky_relu(x, 0.1)
    }

    /// PixelShuffle(2): `[n, 4c, h, w]` → `[n, c, 2h, 2w]`, out[c, 2i+a, 2j+b] = in[4c+2a+b, i, j].
    fn pixel_shuffle(x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [n, c4, h, w] = x.dims();
        let c = c4 / 4;
        x.reshape([n * c, 2, 2, h, w]).permute([0, 3, 1, 4, 2]).reshape([n, c, 2 * h, 2 * w])
    }

    /// The U-Net from level `depth` down, on `x`, with kernel code `k` at the bottom.
    fn unet(&self, depth: usize, x: Tensor<B, 4>, k: &Tensor<B, 4>) -> Tensor<B, 4> {
        let level = &self.levels[depth];
        if depth == 0 {
            // Outermost: down conv, inner levels, then ReLU → transposed conv → Tanh.
            let inner = self.unet(1, level.down.forward(x), k);
            return level.up.forward(relu(inner)).tanh();
        }
        // In place LeakyReLU(0.2) on the input: the skip below carries the activated tensor.
        let x = leaky_relu(x, 0.2);
        let down = level.down.forward(x.clone());
        let inner = if depth + 1 == self.levels.len() { Tensor::cat(vec![down, k.clone()], 1) } else { self.unet(depth + 1, down, k) };
        Tensor::cat(vec![level.up.forward(relu(inner)), x], 1)
    }

    /// `adaptKernel(u, k)` for u in [0, 1] `[n, 3, h, w]` and k `[n or 1, 512, h/128, w/128]`.
    pub fn adapt_kernel(&self, u: Tensor<B, 4>, k: &Tensor<B, 4>) -> Tensor<B, 4> {
        let mut f = Self::lrelu(self.features[0].forward(u.clone()));
        f = Self::lrelu(self.features[1].forward(f));
        f = Self::lrelu(self.features[2].forward(f));
        for b in &self.front {
            f = b.forward(f);
        }
        let n = u.dims()[0];
        let k = if k.dims()[0] == n { k.clone() } else { k.clone().expand([n, k.dims()[1], k.dims()[2], k.dims()[3]]) };
        let mut h = self.unet(0, f, &k);
        for b in &self.back {
            h = b.forward(h);
        }
        h = Self::lrelu(Self::pixel_shuffle(self.up1.forward(h)));
        h = Self::lrelu(Self::pixel_shuffle(self.up2.forward(h)));
        h = Self::lrelu(self.hr.forward(h));
        u + self.last.forward(h)
    }
}

/// How the kernel code k of the nonlinear blur is chosen.
#[derive(Debug)]
pub enum KernelCode<B: Backend> {
    /// One k for the whole job (DAPS: `np.random.seed(0)`, randn·1.2, once).
    Fixed(Tensor<B, 4>),
    /// A fresh k = 1.2·N(0, I) inside every forward call (DPS's behaviour: the measurement and
    /// every guidance step see different kernels — a flaw of the reference, DPS issue #7).
    RedrawEachCall(Mutex<SampleRng>),
}

/// The nonlinear-deblur forward model (module documentation).
#[derive(Debug)]
pub struct NonlinearBlur<B: Backend> {
    net: KernelWizard<B>,
    code: KernelCode<B>,
    shape: ImageShape,
}

impl<B: NnBackend> NonlinearBlur<B> {
    /// The operator of `net` on images of `shape` (h, w multiples of 128) with kernel `code`.
    pub fn new(net: KernelWizard<B>, code: KernelCode<B>, shape: ImageShape) -> Self {
        Self { net, code, shape }
    }

    /// k = 1.2·N(0, I) of shape `[1, 512, h/128, w/128]` from `rng` (one row).
    pub fn draw_code(shape: ImageShape, rng: &mut SampleRng, device: &B::Device) -> Tensor<B, 4> {
        let (kh, kw) = (shape.h / 128, shape.w / 128);
        let d = KernelWizard::<B>::KERNEL_DIM;
        rng.normal::<B>(d * kh * kw, device).mul_scalar(1.2).reshape([1, d, kh, kw])
    }
}

impl<B: NnBackend> Operator<B> for NonlinearBlur<B> {
    fn name(&self) -> String {
        match self.code {
            KernelCode::Fixed(_) => "nonlinear-blur(bkse)".into(),
            KernelCode::RedrawEachCall(_) => "nonlinear-blur(bkse, k redrawn per call)".into(),
        }
    }

    fn input_dim(&self) -> usize {
        self.shape.len()
    }

    fn output_dim(&self) -> usize {
        self.shape.len()
    }

    fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let n = x.dims()[0];
        let s = self.shape;
        let device = x.device();
        let u = x.reshape([n, s.c, s.h, s.w]).mul_scalar(0.5).add_scalar(0.5);
        let k = match &self.code {
            KernelCode::Fixed(k) => k.clone(),
            KernelCode::RedrawEachCall(rng) => Self::draw_code(s, &mut rng.lock().expect("kernel RNG"), &device),
        };
        self.net.adapt_kernel(u, &k).mul_scalar(2.0).sub_scalar(1.0).clamp(-1.0, 1.0).reshape([n, s.len()])
    }
}
