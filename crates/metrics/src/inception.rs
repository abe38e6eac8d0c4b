//! Inception-v3 pool3 features for FID, in two named variants:
//! - [`InceptionVariant::TfFid`]: pytorch-fid's `InceptionV3([3], resize_input=True,
//!   normalize_input=True, use_fid_inception=True)`, the TF-FID network (weights
//!   `pt_inception-2015-12-05-6726825d.pth`), whose Mixed_5*/6b–e/7b average pools exclude the
//!   padding (`count_include_pad=False`) and whose Mixed_7c pools by max;
//! - [`InceptionVariant::Torchvision`]: torchvision's `inception_v3(pretrained=True)` with
//!   fc = identity, as DAPS's `evaluate_fid.py` uses it (plain torchvision pooling).
//!
//! Both take images in [0, 1], resize them bilinearly to 299×299 (align_corners = false) and map
//! them to [−1, 1] (torchvision's `transform_input` of ImageNet-normalised input is the same map),
//! then run the stem, Mixed_5b … Mixed_7c and a global average pool to 2048 features.
//! `BasicConv2d` = convolution without bias, BatchNorm (ε = 1e-3, inference: x·α + (β − μα),
//! α = γ/√(σ² + ε), as torch's CPU kernel folds it) and ReLU.

use burn::prelude::*;
use burn::tensor::activation::relu;
use burn::tensor::module::{avg_pool2d, conv2d, interpolate, max_pool2d};
use burn::tensor::ops::{ConvOptions, InterpolateMode, InterpolateOptions};
use dipbench_nn::layers::Loader;
use dipbench_nn::source::{LoadError, ParamSource, finish, take};

/// Which Inception.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum InceptionVariant {
    /// The TF-FID network of pytorch-fid.
    TfFid,
    /// torchvision's ImageNet Inception-v3 (DAPS).
    Torchvision,
}

/// `BasicConv2d` with its BatchNorm folded.
#[derive(Debug, Clone)]
struct BasicConv<B: Backend> {
    weight: Tensor<B, 4>,
    alpha: Tensor<B, 4>,
    beta: Tensor<B, 4>,
    stride: usize,
    padding: [usize; 2],
}

impl<B: Backend> BasicConv<B> {
    #[allow(clippy::too_many_arguments)]
    fn load(l: &mut Loader<'_, B>, key: &str, cin: usize, cout: usize, k: [usize; 2], stride: usize, padding: [usize; 2]) -> Result<Self, LoadError> {
        let weight = l.tensor(&format!("{key}.conv.weight"), [cout, cin, k[0], k[1]])?;
        let mut bn = |name: &str| take(l.source, &format!("{key}.bn.{name}"), &[cout], &l.config);
        let (gamma, beta, mean, var) = (bn("weight")?, bn("bias")?, bn("running_mean")?, bn("running_var")?);
        take(l.source, &format!("{key}.bn.num_batches_tracked"), &[], &l.config)?;
        let alpha: Vec<f32> = gamma.iter().zip(&var).map(|(g, v)| g * (1.0 / (v + 1e-3f32).sqrt())).collect();
        let shift: Vec<f32> = beta.iter().zip(&mean).zip(&alpha).map(|((b, m), a)| b - m * a).collect();
        let dev = l.device.clone();
        if l.dry_run {
            let placeholder = Tensor::zeros([1, 1, 1, 1], &dev);
            return Ok(Self { weight, alpha: placeholder.clone(), beta: placeholder, stride, padding });
        }
        Ok(Self {
            weight,
            alpha: Tensor::<B, 1>::from_floats(alpha.as_slice(), &dev).reshape([1, cout, 1, 1]),
            beta: Tensor::<B, 1>::from_floats(shift.as_slice(), &dev).reshape([1, cout, 1, 1]),
            stride,
            padding,
        })
    }

    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let y = conv2d(x, self.weight.clone(), None, ConvOptions::new([self.stride; 2], self.padding, [1, 1], 1));
        let [n, cout, h, w] = y.dims();
        let [_, cin, kh, kw] = self.weight.dims();
        dipbench_nn::layers::count_macs(n * cout * h * w * cin * kh * kw);
        relu(y * self.alpha.clone() + self.beta.clone())
    }
}

fn pool3_same<B: Backend>(x: Tensor<B, 4>, exclude_pad: bool) -> Tensor<B, 4> {
    avg_pool2d(x, [3, 3], [1, 1], [1, 1], !exclude_pad, false)
}

fn max3s2<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    max_pool2d(x, [3, 3], [2, 2], [0, 0], [1, 1], false)
}

/// The Inception blocks (torchvision layout).
#[derive(Debug, Clone)]
enum Mixed<B: Backend> {
    A {
        b1: BasicConv<B>,
        b5: [BasicConv<B>; 2],
        b3: [BasicConv<B>; 3],
        pool: BasicConv<B>,
    },
    B {
        b3: BasicConv<B>,
        dbl: [BasicConv<B>; 3],
    },
    C {
        b1: BasicConv<B>,
        b7: [BasicConv<B>; 3],
        dbl: [BasicConv<B>; 5],
        pool: BasicConv<B>,
    },
    D {
        b3: [BasicConv<B>; 2],
        b7: [BasicConv<B>; 4],
    },
    E {
        b1: BasicConv<B>,
        b3_1: BasicConv<B>,
        b3_2: [BasicConv<B>; 2],
        dbl_1: BasicConv<B>,
        dbl_2: BasicConv<B>,
        dbl_3: [BasicConv<B>; 2],
        pool: BasicConv<B>,
        max_pool: bool,
    },
}

impl<B: Backend> Mixed<B> {
    fn a(l: &mut Loader<'_, B>, key: &str, cin: usize, pool_features: usize) -> Result<Self, LoadError> {
        let bc = |l: &mut Loader<'_, B>, n: &str, i, o, k: [usize; 2], p: [usize; 2]| BasicConv::load(l, &format!("{key}.{n}"), i, o, k, 1, p);
        Ok(Self::A {
            b1: bc(l, "branch1x1", cin, 64, [1, 1], [0, 0])?,
            b5: [bc(l, "branch5x5_1", cin, 48, [1, 1], [0, 0])?, bc(l, "branch5x5_2", 48, 64, [5, 5], [2, 2])?],
            b3: [
                bc(l, "branch3x3dbl_1", cin, 64, [1, 1], [0, 0])?,
                bc(l, "branch3x3dbl_2", 64, 96, [3, 3], [1, 1])?,
                bc(l, "branch3x3dbl_3", 96, 96, [3, 3], [1, 1])?,
            ],
            pool: bc(l, "branch_pool", cin, pool_features, [1, 1], [0, 0])?,
        })
    }

    fn b(l: &mut Loader<'_, B>, key: &str, cin: usize) -> Result<Self, LoadError> {
        Ok(Self::B {
            b3: BasicConv::load(l, &format!("{key}.branch3x3"), cin, 384, [3, 3], 2, [0, 0])?,
            dbl: [
                BasicConv::load(l, &format!("{key}.branch3x3dbl_1"), cin, 64, [1, 1], 1, [0, 0])?,
                BasicConv::load(l, &format!("{key}.branch3x3dbl_2"), 64, 96, [3, 3], 1, [1, 1])?,
                BasicConv::load(l, &format!("{key}.branch3x3dbl_3"), 96, 96, [3, 3], 2, [0, 0])?,
            ],
        })
    }

    fn c(l: &mut Loader<'_, B>, key: &str, cin: usize, c7: usize) -> Result<Self, LoadError> {
        let bc = |l: &mut Loader<'_, B>, n: &str, i, o, k: [usize; 2], p: [usize; 2]| BasicConv::load(l, &format!("{key}.{n}"), i, o, k, 1, p);
        let (h, v) = ([1, 7], [7, 1]);
        let (ph, pv) = ([0, 3], [3, 0]);
        Ok(Self::C {
            b1: bc(l, "branch1x1", cin, 192, [1, 1], [0, 0])?,
            b7: [bc(l, "branch7x7_1", cin, c7, [1, 1], [0, 0])?, bc(l, "branch7x7_2", c7, c7, h, ph)?, bc(l, "branch7x7_3", c7, 192, v, pv)?],
            dbl: [
                bc(l, "branch7x7dbl_1", cin, c7, [1, 1], [0, 0])?,
                bc(l, "branch7x7dbl_2", c7, c7, v, pv)?,
                bc(l, "branch7x7dbl_3", c7, c7, h, ph)?,
                bc(l, "branch7x7dbl_4", c7, c7, v, pv)?,
                bc(l, "branch7x7dbl_5", c7, 192, h, ph)?,
            ],
            pool: bc(l, "branch_pool", cin, 192, [1, 1], [0, 0])?,
        })
    }

    fn d(l: &mut Loader<'_, B>, key: &str, cin: usize) -> Result<Self, LoadError> {
        Ok(Self::D {
            b3: [
                BasicConv::load(l, &format!("{key}.branch3x3_1"), cin, 192, [1, 1], 1, [0, 0])?,
                BasicConv::load(l, &format!("{key}.branch3x3_2"), 192, 320, [3, 3], 2, [0, 0])?,
            ],
            b7: [
                BasicConv::load(l, &format!("{key}.branch7x7x3_1"), cin, 192, [1, 1], 1, [0, 0])?,
                BasicConv::load(l, &format!("{key}.branch7x7x3_2"), 192, 192, [1, 7], 1, [0, 3])?,
                BasicConv::load(l, &format!("{key}.branch7x7x3_3"), 192, 192, [7, 1], 1, [3, 0])?,
                BasicConv::load(l, &format!("{key}.branch7x7x3_4"), 192, 192, [3, 3], 2, [0, 0])?,
            ],
        })
    }

    fn e(l: &mut Loader<'_, B>, key: &str, cin: usize, max_pool: bool) -> Result<Self, LoadError> {
        let bc = |l: &mut Loader<'_, B>, n: &str, i, o, k: [usize; 2], p: [usize; 2]| BasicConv::load(l, &format!("{key}.{n}"), i, o, k, 1, p);
        Ok(Self::E {
            b1: bc(l, "branch1x1", cin, 320, [1, 1], [0, 0])?,
            b3_1: bc(l, "branch3x3_1", cin, 384, [1, 1], [0, 0])?,
            b3_2: [bc(l, "branch3x3_2a", 384, 384, [1, 3], [0, 1])?, bc(l, "branch3x3_2b", 384, 384, [3, 1], [1, 0])?],
            dbl_1: bc(l, "branch3x3dbl_1", cin, 448, [1, 1], [0, 0])?,
            dbl_2: bc(l, "branch3x3dbl_2", 448, 384, [3, 3], [1, 1])?,
            dbl_3: [bc(l, "branch3x3dbl_3a", 384, 384, [1, 3], [0, 1])?, bc(l, "branch3x3dbl_3b", 384, 384, [3, 1], [1, 0])?],
            pool: bc(l, "branch_pool", cin, 192, [1, 1], [0, 0])?,
            max_pool,
        })
    }

    fn forward(&self, x: Tensor<B, 4>, exclude_pad: bool) -> Tensor<B, 4> {
        let chain = |convs: &[BasicConv<B>], x: Tensor<B, 4>| convs.iter().fold(x, |h, c| c.forward(h));
        match self {
            Self::A { b1, b5, b3, pool } => {
                Tensor::cat(vec![b1.forward(x.clone()), chain(b5, x.clone()), chain(b3, x.clone()), pool.forward(pool3_same(x, exclude_pad))], 1)
            }
            Self::B { b3, dbl } => Tensor::cat(vec![b3.forward(x.clone()), chain(dbl, x.clone()), max3s2(x)], 1),
            Self::C { b1, b7, dbl, pool } => {
                Tensor::cat(vec![b1.forward(x.clone()), chain(b7, x.clone()), chain(dbl, x.clone()), pool.forward(pool3_same(x, exclude_pad))], 1)
            }
            Self::D { b3, b7 } => Tensor::cat(vec![chain(b3, x.clone()), chain(b7, x.clone()), max3s2(x)], 1),
            Self::E { b1, b3_1, b3_2, dbl_1, dbl_2, dbl_3, pool, max_pool } => {
                let t = b3_1.forward(x.clone());
                let b3 = Tensor::cat(vec![b3_2[0].forward(t.clone()), b3_2[1].forward(t)], 1);
                let u = dbl_2.forward(dbl_1.forward(x.clone()));
                let dbl = Tensor::cat(vec![dbl_3[0].forward(u.clone()), dbl_3[1].forward(u)], 1);
                let pooled = if *max_pool { max_pool2d(x.clone(), [3, 3], [1, 1], [1, 1], [1, 1], false) } else { pool3_same(x.clone(), exclude_pad) };
                Tensor::cat(vec![b1.forward(x), b3, dbl, pool.forward(pooled)], 1)
            }
        }
    }
}

/// Outputs of the four pytorch-fid blocks (for checking a port stage by stage).
#[derive(Debug, Clone)]
pub struct InceptionTrace<B: Backend> {
    /// The network input after resizing and mapping to [−1, 1].
    pub input: Tensor<B, 4>,
    /// Block 0 (stem to the first max-pool), `[n, 64, 73, 73]`.
    pub block0: Tensor<B, 4>,
    /// Block 1 (to the second max-pool), `[n, 192, 35, 35]`.
    pub block1: Tensor<B, 4>,
    /// Block 2 (Mixed_5b … Mixed_6e), `[n, 768, 17, 17]`.
    pub block2: Tensor<B, 4>,
    /// pool3 features, `[n, 2048]`.
    pub pool3: Tensor<B, 2>,
}

/// Inception-v3 up to pool3 (module documentation).
#[derive(Debug, Clone)]
pub struct Inception<B: Backend> {
    variant: InceptionVariant,
    stem: [BasicConv<B>; 5],
    mixed: Vec<Mixed<B>>,
}

impl<B: Backend> Inception<B> {
    /// The state-dict keys and shapes the network takes (pool3 part; no `fc.*`), in load order.
    pub fn manifest(variant: InceptionVariant) -> Vec<(String, Vec<usize>)> {
        let mut rec = dipbench_nn::source::RecordingSource::default();
        Self::build(variant, &mut rec, &Default::default(), true).expect("the recorder accepts every key");
        rec.taken
    }

    /// Which of the two networks this is.
    pub fn variant(&self) -> InceptionVariant {
        self.variant
    }

    /// Builds the network from a state dict (`Conv2d_1a_3x3.conv.weight`, … `Mixed_7c.*`; the
    /// classifier `fc.*` and torchvision's `AuxLogits.*` are read and not used).
    pub fn load(variant: InceptionVariant, source: &mut dyn ParamSource, device: &B::Device) -> Result<Self, LoadError> {
        Self::build(variant, source, device, false)
    }

    fn build(variant: InceptionVariant, source: &mut dyn ParamSource, device: &B::Device, dry_run: bool) -> Result<Self, LoadError> {
        let name = match variant {
            InceptionVariant::TfFid => "inception-tf-fid",
            InceptionVariant::Torchvision => "inception-torchvision",
        };
        let mut l = Loader::<B> { source, device: device.clone(), config: name.into(), dry_run };
        let stem = [
            BasicConv::load(&mut l, "Conv2d_1a_3x3", 3, 32, [3, 3], 2, [0, 0])?,
            BasicConv::load(&mut l, "Conv2d_2a_3x3", 32, 32, [3, 3], 1, [0, 0])?,
            BasicConv::load(&mut l, "Conv2d_2b_3x3", 32, 64, [3, 3], 1, [1, 1])?,
            BasicConv::load(&mut l, "Conv2d_3b_1x1", 64, 80, [1, 1], 1, [0, 0])?,
            BasicConv::load(&mut l, "Conv2d_4a_3x3", 80, 192, [3, 3], 1, [0, 0])?,
        ];
        let fid = variant == InceptionVariant::TfFid;
        let mixed = vec![
            Mixed::a(&mut l, "Mixed_5b", 192, 32)?,
            Mixed::a(&mut l, "Mixed_5c", 256, 64)?,
            Mixed::a(&mut l, "Mixed_5d", 288, 64)?,
            Mixed::b(&mut l, "Mixed_6a", 288)?,
            Mixed::c(&mut l, "Mixed_6b", 768, 128)?,
            Mixed::c(&mut l, "Mixed_6c", 768, 160)?,
            Mixed::c(&mut l, "Mixed_6d", 768, 160)?,
            Mixed::c(&mut l, "Mixed_6e", 768, 192)?,
            Mixed::d(&mut l, "Mixed_7a", 768)?,
            Mixed::e(&mut l, "Mixed_7b", 1280, false)?,
            Mixed::e(&mut l, "Mixed_7c", 2048, fid)?,
        ];
        // The classifier (and torchvision's auxiliary head) are part of the file, not of pool3.
        let leftover: Vec<String> = l.source.remaining().into_iter().filter(|k| k.starts_with("fc.") || k.starts_with("AuxLogits.")).collect();
        for k in leftover {
            l.source.take_values(&k, &[])?;
        }
        finish(l.source, name)?;
        Ok(Self { variant, stem, mixed })
    }

    /// pool3 features of images in [0, 1] `[n, 3, h, w]`, with the block outputs.
    pub fn forward_traced(&self, x01: Tensor<B, 4>) -> InceptionTrace<B> {
        let resized = interpolate(x01, [299, 299], InterpolateOptions::new(InterpolateMode::Bilinear).with_align_corners(false));
        let input = resized.mul_scalar(2.0).sub_scalar(1.0);
        let mut h = input.clone();
        for c in &self.stem[..3] {
            h = c.forward(h);
        }
        let block0 = max3s2(h);
        let mut h = block0.clone();
        for c in &self.stem[3..] {
            h = c.forward(h);
        }
        let block1 = max3s2(h);
        let exclude_pad = self.variant == InceptionVariant::TfFid;
        let mut h = block1.clone();
        for m in &self.mixed[..8] {
            h = m.forward(h, exclude_pad);
        }
        let block2 = h.clone();
        for m in &self.mixed[8..] {
            h = m.forward(h, exclude_pad);
        }
        let [n, c, hh, ww] = h.dims();
        let pool3 = h.reshape([n, c, hh * ww]).mean_dim(2).reshape([n, c]);
        InceptionTrace { input, block0, block1, block2, pool3 }
    }

    /// pool3 features `[n, 2048]` of images in [0, 1].
    pub fn features(&self, x01: Tensor<B, 4>) -> Tensor<B, 2> {
        self.forward_traced(x01).pool3
    }
}
