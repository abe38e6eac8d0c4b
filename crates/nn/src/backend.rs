//! The backend extension behind [`crate::ops`]: two operations the diffusion networks spend most
//! of their time in, which a backend may run with its own fused kernels.
//!
//! - [`NnBackend::conv2d_same`]: a stride-1 convolution with odd kernel and zero padding
//!   (k − 1)/2, with bias;
//! - [`NnBackend::group_norm_act`]: GroupNorm with a per-(sample, channel) affine map and an
//!   optional SiLU (module [`crate::cpu::group_norm`] has the formulas).
//!
//! Every method has a default written with burn's own operations, which is what the GPU backends
//! use (their convolutions are autotuned, and the GroupNorm default is written as one reduction
//! and one element-wise map so that kernel fusion can merge it). burn's CPU backend `Flex`
//! overrides them with the kernels of [`crate::cpu`] for float32 tensors. Under `Autodiff`, an
//! operation that ran a fused kernel records one node whose backward pass is the backend's
//! gradient method ([`NnBackend::conv2d_same_input_grad`], [`NnBackend::group_norm_act_backward`]);
//! otherwise the default's burn operations are recorded as usual.

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions, FloatTensor, FloatTensorOps, ModuleOps};
use burn::tensor::{DType, Shape, Tensor, TensorMetadata, TensorPrimitive};
use burn_flex::{FlexTensor, Layout};

use crate::cpu::conv::{Direction, SameConv};
use crate::cpu::group_norm::{self, GroupNormShape};
use crate::cpu::same_conv;

/// Options of burn's `conv2d` for a stride-1 same convolution with `weight` `[out, in, k_h, k_w]`.
pub fn same_conv_options(weight_shape: &Shape) -> ConvOptions<2> {
    let [_, _, kh, kw] = weight_shape.dims::<4>();
    ConvOptions::new([1, 1], [(kh - 1) / 2, (kw - 1) / 2], [1, 1], 1)
}

/// One draw of standard normals for a batch `[rows, d]`: row r's numbers are those of Philox
/// stream `keys[r]` at draw `counter` with `tag` ([`crate::cpu::random`] gives the layout), so
/// they can be made on any thread or device and are the same wherever they are made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoiseDraw {
    /// One Philox key per row.
    pub keys: Vec<[u32; 2]>,
    /// The draw counter.
    pub counter: u64,
    /// The stream tag (kind of draw).
    pub tag: u32,
}

impl NoiseDraw {
    /// The draw's `[rows, d]` values, made on the host (all CPU threads).
    pub fn host(&self, d: usize) -> Vec<f32> {
        let mut out = vec![0f32; self.keys.len() * d];
        crate::cpu::random::fill_normals(&self.keys, self.counter, self.tag, d, &mut out);
        out
    }
}

/// A backend that can run the fused network operations (module documentation).
pub trait NnBackend: Backend {
    /// Whether the operations on tensors of `dtype` run this backend's own fused kernels (then
    /// the gradient methods below are what `Autodiff` calls).
    fn fused(dtype: DType) -> bool {
        let _ = dtype;
        false
    }

    /// Y = W ⋆ X + b for X `[n, in, H, W]`, W `[out, in, k_h, k_w]` (odd sides), b `[out]`:
    /// torch `Conv2d(stride=1, padding=k//2)`.
    fn conv2d_same(x: FloatTensor<Self>, weight: FloatTensor<Self>, bias: FloatTensor<Self>) -> FloatTensor<Self> {
        let options = same_conv_options(&weight.shape());
        Self::conv2d(x, weight, Some(bias), options)
    }

    /// ∂L/∂X of [`NnBackend::conv2d_same`] from ∂L/∂Y: the transposed convolution with the same
    /// padding.
    fn conv2d_same_input_grad(grad: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        let [_, _, kh, kw] = weight.shape().dims::<4>();
        let options = ConvTransposeOptions::new([1, 1], [(kh - 1) / 2, (kw - 1) / 2], [0, 0], [1, 1], 1);
        Self::conv_transpose2d(grad, weight, None, options)
    }

    /// Σᵢ cᵢ·tᵢ + s·ε for terms tᵢ of one shape `[n, d]` and, when given, (s, ε) with ε the
    /// normals of a [`NoiseDraw`] over the n rows: the updates of the stochastic samplers
    /// (Langevin, re-noising) in one pass, the noise made where it is used. Sums left to right
    /// as written.
    fn combine(terms: Vec<(FloatTensor<Self>, f64)>, noise: Option<(f64, NoiseDraw)>) -> FloatTensor<Self> {
        prim(combine_composed::<Self>(terms.into_iter().map(|(t, c)| (float(t), c)).collect(), noise))
    }

    /// [`NnBackend::combine`] with one more term after `terms`, before the noise: c·Aᵀ(A·t₀ − y),
    /// the gradient of c·½‖A·x − y‖² at the first term x = t₀, for a dense A `[m, d]` and y
    /// `[n, m]` (DAPS's Langevin step with a linear operator: the data gradient and the update in
    /// one pass, without the `[n, d]` gradient in memory). The default computes the gradient with
    /// two matrix products; the CPU backend makes it row by row (m ≤ 32; the sums in another
    /// order, so the numbers differ from the default's by rounding).
    fn combine_least_squares(
        terms: Vec<(FloatTensor<Self>, f64)>,
        a: FloatTensor<Self>,
        y: FloatTensor<Self>,
        c: f64,
        noise: Option<(f64, NoiseDraw)>,
    ) -> FloatTensor<Self> {
        prim(combine_least_squares_composed::<Self>(terms.into_iter().map(|(t, c)| (float(t), c)).collect(), float(a), float(y), c, noise))
    }

    /// y = act(a·(x − μ_g)/√(σ²_g + ε) + b) for x `[n, c, h, w]`, a and b `[n, c]`; returns y and
    /// the statistics `[n, G, 2]` (μ_g, 1/√(σ²_g + ε)).
    fn group_norm_act(
        x: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        groups: usize,
        eps: f64,
        silu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (y, stats) = group_norm_act_composed::<Self>(float(x), float(a), float(b), groups, eps, silu);
        (prim(y), prim(stats))
    }

    /// The gradient of [`NnBackend::group_norm_act`]: ∂x, and (∂a, ∂b) when `affine_grads`.
    #[allow(clippy::too_many_arguments)]
    fn group_norm_act_backward(
        x: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        groups: usize,
        silu: bool,
        affine_grads: bool,
    ) -> (FloatTensor<Self>, Option<(FloatTensor<Self>, FloatTensor<Self>)>) {
        let (dx, affine) = group_norm_act_backward_composed::<Self>(float(x), float(a), float(b), float(stats), float(grad), groups, silu, affine_grads);
        (prim(dx), affine.map(|(da, db)| (prim(da), prim(db))))
    }

    /// Softmax over the last dimension of x (any rank): y = e^{x − max}/Σ e^{x − max} per row
    /// (torch `softmax(x, dim=-1)`).
    fn softmax_last(x: FloatTensor<Self>) -> FloatTensor<Self> {
        softmax_last_composed::<Self>(x)
    }

    /// The gradient of [`NnBackend::softmax_last`] from its output y and ∂L/∂y:
    /// ∂x = y ⊙ (∂y − Σ_last ∂y ⊙ y).
    fn softmax_last_backward(y: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        softmax_last_backward_composed::<Self>(y, grad)
    }

    /// The score of a Gaussian mixture with shared diagonal precision p, scaled:
    /// out = s_out·p ⊙ (Σ_k ρ_k μ_k − s_in·x) + s_skip·x with ρ = softmax(b + M(p ⊙ s_in·x)),
    /// for x `[n, d]`, the means factored M = C·V (`basis` V `[r, d]`, `coords` C `[K, r]`),
    /// `precision` `[1, d]`, `bias` b `[1, K]`. Returns (out, ρ `[n, K]`); formulas in
    /// [`crate::cpu::mixture`].
    fn mixture_score(x: FloatTensor<Self>, mixture: MixtureTensors<Self>, scales: MixtureScales) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (out, resp) = mixture_score_composed::<Self>(float(x), &mixture.floats(), scales);
        (prim(out), prim(resp))
    }

    /// ∂x of [`NnBackend::mixture_score`] from ∂out and its ρ (the Jacobian is symmetric).
    fn mixture_score_backward(grad: FloatTensor<Self>, resp: FloatTensor<Self>, mixture: MixtureTensors<Self>, scales: MixtureScales) -> FloatTensor<Self> {
        prim(mixture_score_backward_composed::<Self>(float(grad), float(resp), &mixture.floats(), scales))
    }

    /// x·W for x `[n, k]` and W `[k, m]` where k or m is small: a dense operator's y = x·Aᵀ and
    /// Aᵀr = r·A. The default is burn's matmul; the CPU backend computes each output row on its
    /// own in a fixed order ([`crate::cpu::thin`], for k or m ≤ 32), so the numbers differ from
    /// the default's by rounding. Under `Autodiff`, W takes no gradient through the fused path
    /// (a W that needs one gets burn's recorded matmul).
    fn matmul_thin(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::float_matmul(x, w)
    }
}

/// The constants of [`NnBackend::mixture_score`]: V `[r, d]`, C `[K, r]`, p `[1, d]`, b `[1, K]`.
#[derive(Debug, Clone)]
pub struct MixtureTensors<B: Backend> {
    /// V, a basis of the span of the means, `[r, d]`.
    pub basis: FloatTensor<B>,
    /// C, the means' coordinates in V, `[K, r]` (μ_k = Σ_j C_kj V_j).
    pub coords: FloatTensor<B>,
    /// p, the diagonal precision, `[1, d]`.
    pub precision: FloatTensor<B>,
    /// b_k = log w_k − ½ μ_kᵀPμ_k, `[1, K]`.
    pub bias: FloatTensor<B>,
}

impl<B: Backend> MixtureTensors<B> {
    fn floats(&self) -> [Tensor<B, 2>; 4] {
        [float(self.basis.clone()), float(self.coords.clone()), float(self.precision.clone()), float(self.bias.clone())]
    }
}

/// The scales of [`NnBackend::mixture_score`]: the input's (s_in), the score's (s_out) and the
/// input's own term (s_skip). The score is (1, 1, 0); ε̂ at x_t is (1/√ᾱ, −σ, 0); Tweedie's
/// denoiser x + σ²·score is (1, σ², 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MixtureScales {
    /// s_in.
    pub input: f64,
    /// s_out.
    pub output: f64,
    /// s_skip.
    pub skip: f64,
}

/// [`NnBackend::mixture_score`] with burn's operations.
pub fn mixture_score_composed<B: Backend>(x: Tensor<B, 2>, mixture: &[Tensor<B, 2>; 4], scales: MixtureScales) -> (Tensor<B, 2>, Tensor<B, 2>) {
    let [basis, coords, precision, bias] = mixture.clone();
    let xs = x.clone().mul_scalar(scales.input);
    let t = (xs.clone() * precision.clone()).matmul(basis.clone().transpose());
    let resp = burn::tensor::activation::softmax(t.matmul(coords.clone().transpose()) + bias, 1);
    let mean = resp.clone().matmul(coords).matmul(basis);
    let out = ((mean - xs) * precision).mul_scalar(scales.output) + x.mul_scalar(scales.skip);
    (out, resp)
}

/// [`NnBackend::mixture_score_backward`] with burn's operations.
pub fn mixture_score_backward_composed<B: Backend>(grad: Tensor<B, 2>, resp: Tensor<B, 2>, mixture: &[Tensor<B, 2>; 4], scales: MixtureScales) -> Tensor<B, 2> {
    let [basis, coords, precision, _] = mixture.clone();
    let u = grad.clone() * precision.clone();
    let a = u.clone().matmul(basis.clone().transpose()).matmul(coords.clone().transpose());
    let mean = (resp.clone() * a.clone()).sum_dim(1);
    let c = resp * (a - mean);
    let back = c.matmul(coords).matmul(basis) * precision;
    (back - u).mul_scalar(scales.input * scales.output) + grad.mul_scalar(scales.skip)
}

/// `x` as rows of its last dimension `[rows, len]`, with its shape.
fn last_dim_rows<B: Backend>(x: FloatTensor<B>) -> (Tensor<B, 2>, Shape) {
    let shape = x.shape();
    let len = shape[shape.num_dims() - 1];
    let rows = shape.num_elements() / len.max(1);
    (float::<B, 2>(B::float_reshape(x, Shape::new([rows, len]))), shape)
}

/// [`NnBackend::softmax_last`] with burn's operations.
pub fn softmax_last_composed<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    let (x, shape) = last_dim_rows::<B>(x);
    B::float_reshape(prim(burn::tensor::activation::softmax(x, 1)), shape)
}

/// [`NnBackend::softmax_last_backward`] with burn's operations.
pub fn softmax_last_backward_composed<B: Backend>(y: FloatTensor<B>, grad: FloatTensor<B>) -> FloatTensor<B> {
    let (y, shape) = last_dim_rows::<B>(y);
    let (g, _) = last_dim_rows::<B>(grad);
    let dot = (g.clone() * y.clone()).sum_dim(1);
    B::float_reshape(prim(y * (g - dot)), shape)
}

fn float<B: Backend, const D: usize>(t: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(t))
}

fn prim<B: Backend, const D: usize>(t: Tensor<B, D>) -> FloatTensor<B> {
    t.into_primitive().tensor()
}

/// Per-channel statistics `[n, G, 1]` broadcast to `[n, c, 1, 1]`.
fn per_channel<B: Backend>(s: Tensor<B, 3>, c: usize) -> Tensor<B, 4> {
    let [n, g, _] = s.dims();
    s.expand([n, g, c / g]).reshape([n, c, 1, 1])
}

/// [`NnBackend::combine`] in burn operations, the noise made on the host.
pub fn combine_composed<B: Backend>(terms: Vec<(Tensor<B, 2>, f64)>, noise: Option<(f64, NoiseDraw)>) -> Tensor<B, 2> {
    let [n, d] = terms.first().expect("at least one term").0.dims();
    let device = terms[0].0.device();
    let mut sum: Option<Tensor<B, 2>> = None;
    for (t, c) in terms {
        let term = if c == 1.0 { t } else { t.mul_scalar(c) };
        sum = Some(match sum {
            None => term,
            Some(s) => s + term,
        });
    }
    let sum = sum.expect("at least one term");
    match noise {
        Some((scale, draw)) => {
            assert_eq!(draw.keys.len(), n, "one noise key per row");
            let eps = Tensor::<B, 2>::from_data(burn::tensor::TensorData::new(draw.host(d), [n, d]), &device);
            sum + eps.mul_scalar(scale)
        }
        None => sum,
    }
}

/// Aᵀ(A·x − y) for rows x `[n, d]`, A `[m, d]`, y `[n, m]` (or `[1, m]`), with two matrix
/// products: (x·Aᵀ − y)·A.
pub fn least_squares_gradient<B: Backend>(x: Tensor<B, 2>, a: Tensor<B, 2>, y: Tensor<B, 2>) -> Tensor<B, 2> {
    (x.matmul(a.clone().transpose()) - y).matmul(a)
}

/// [`NnBackend::combine_least_squares`] in burn operations: [`least_squares_gradient`] at t₀,
/// then [`combine_composed`] with it as the last term.
pub fn combine_least_squares_composed<B: Backend>(
    mut terms: Vec<(Tensor<B, 2>, f64)>,
    a: Tensor<B, 2>,
    y: Tensor<B, 2>,
    c: f64,
    noise: Option<(f64, NoiseDraw)>,
) -> Tensor<B, 2> {
    let x = terms.first().expect("at least one term").0.clone();
    terms.push((least_squares_gradient(x, a, y), c));
    combine_composed(terms, noise)
}

/// [`NnBackend::group_norm_act`] in burn operations: one mean/variance reduction over each group
/// (rank-preserving), the affine map folded per channel (A = a·r, B = b − μ·A), then one
/// element-wise y = act(x·A + B).
pub fn group_norm_act_composed<B: Backend>(
    x: Tensor<B, 4>,
    a: Tensor<B, 2>,
    b: Tensor<B, 2>,
    groups: usize,
    eps: f64,
    silu: bool,
) -> (Tensor<B, 4>, Tensor<B, 3>) {
    let [n, c, h, w] = x.dims();
    let grouped = x.clone().reshape([n, groups, (c / groups) * h * w]);
    let (var, mean) = grouped.var_mean_bias(2);
    let r = var.add_scalar(eps).sqrt().recip();
    let scale = a.reshape([n, c, 1, 1]) * per_channel(r.clone(), c);
    let shift = b.reshape([n, c, 1, 1]) - per_channel(mean.clone(), c) * scale.clone();
    let z = x * scale + shift;
    let y = if silu { burn::tensor::activation::silu(z) } else { z };
    (y, Tensor::cat(vec![mean, r], 2))
}

/// [`NnBackend::group_norm_act_backward`] in burn operations (formulas in
/// [`crate::cpu::group_norm`]).
#[allow(clippy::too_many_arguments)]
pub fn group_norm_act_backward_composed<B: Backend>(
    x: Tensor<B, 4>,
    a: Tensor<B, 2>,
    b: Tensor<B, 2>,
    stats: Tensor<B, 3>,
    grad: Tensor<B, 4>,
    groups: usize,
    silu: bool,
    affine_grads: bool,
) -> (Tensor<B, 4>, Option<(Tensor<B, 2>, Tensor<B, 2>)>) {
    let [n, c, h, w] = x.dims();
    let mean = per_channel(stats.clone().narrow(2, 0, 1), c);
    let r = per_channel(stats.narrow(2, 1, 1), c);
    let a4 = a.reshape([n, c, 1, 1]);
    let x_hat = (x - mean) * r.clone();
    let dz = if silu {
        let z = x_hat.clone() * a4.clone() + b.reshape([n, c, 1, 1]);
        let s = burn::tensor::activation::sigmoid(z.clone());
        grad * s.clone() * (z * (s.neg().add_scalar(1.0))).add_scalar(1.0)
    } else {
        grad
    };
    let g = dz.clone() * a4;
    let m = (c / groups * h * w) as f64;
    let group_mean = |t: Tensor<B, 4>| per_channel(t.reshape([n, groups, (c / groups) * h * w]).sum_dim(2).div_scalar(m), c);
    let m1 = group_mean(g.clone());
    let m2 = group_mean(g.clone() * x_hat.clone());
    let dx = r * (g - m1 - x_hat.clone() * m2);
    let affine = affine_grads.then(|| {
        let per_sc = |t: Tensor<B, 4>| t.reshape([n, c, h * w]).sum_dim(2).reshape([n, c]);
        (per_sc(dz.clone() * x_hat), per_sc(dz))
    });
    (dx, affine)
}

// ---------------------------------------------------------------------------------------------
// Flex: the CPU kernels.

/// The contiguous float32 values of a Flex tensor (a copy only when it is a strided view).
fn f32_values(t: &FlexTensor) -> std::borrow::Cow<'_, [f32]> {
    match t.layout().contiguous_offsets() {
        Some((start, end)) => std::borrow::Cow::Borrowed(&t.storage::<f32>()[start..end]),
        None => std::borrow::Cow::Owned(t.to_contiguous().storage::<f32>().to_vec()),
    }
}

/// [`crate::cpu::combine::combine`] on float32 `[n, d]` terms.
fn flex_combine(
    terms: &[(FlexTensor, f64)],
    least_squares: Option<crate::cpu::least_squares::LeastSquares<'_>>,
    noise: Option<(f64, NoiseDraw)>,
) -> FlexTensor {
    let [n, d] = terms[0].0.shape().dims::<2>();
    let values: Vec<_> = terms.iter().map(|(t, _)| f32_values(t)).collect();
    let coefs: Vec<f32> = terms.iter().map(|(_, c)| *c as f32).collect();
    let slices: Vec<&[f32]> = values.iter().map(|v| &v[..]).collect();
    let noise = noise.as_ref().map(|(s, draw)| (*s as f32, draw));
    flex_tensor(crate::cpu::combine::combine(&slices, &coefs, least_squares, noise, n, d), [n, d])
}

fn flex_tensor(values: Vec<f32>, shape: impl Into<Shape>) -> FlexTensor {
    FlexTensor::new(burn::tensor::Bytes::from_elems(values), Layout::contiguous(shape.into()), DType::F32)
}

fn same_conv_geometry(x: &Shape, weight: &Shape, direction: Direction) -> SameConv {
    let [batch, ch, height, width] = x.dims::<4>();
    let [out_channels, in_channels, kh, kw] = weight.dims::<4>();
    let expected = if direction == Direction::Forward { in_channels } else { out_channels };
    assert_eq!(ch, expected, "conv2d_same: input has {ch} channels, the weight expects {expected}");
    SameConv { batch, in_channels, out_channels, height, width, kernel: [kh, kw] }
}

impl NnBackend for Flex {
    fn fused(dtype: DType) -> bool {
        dtype == DType::F32
    }

    fn combine(terms: Vec<(FlexTensor, f64)>, noise: Option<(f64, NoiseDraw)>) -> FlexTensor {
        if terms.iter().any(|(t, _)| !Self::fused(t.dtype())) {
            return prim(combine_composed::<Self>(terms.into_iter().map(|(t, c)| (float(t), c)).collect(), noise));
        }
        flex_combine(&terms, None, noise)
    }

    fn combine_least_squares(terms: Vec<(FlexTensor, f64)>, a: FlexTensor, y: FlexTensor, c: f64, noise: Option<(f64, NoiseDraw)>) -> FlexTensor {
        let ([n, d], [m, a_cols], [y_rows, y_cols]) = (terms[0].0.shape().dims::<2>(), a.shape().dims::<2>(), y.shape().dims::<2>());
        assert!(
            a_cols == d && y_cols == m && (y_rows == n || y_rows == 1),
            "combine_least_squares: A [{m}, {a_cols}] and y [{y_rows}, {y_cols}] for terms [{n}, {d}]"
        );
        if terms.iter().map(|(t, _)| t).chain([&a, &y]).any(|t| !Self::fused(t.dtype())) || m == 0 || m > crate::cpu::least_squares::MAX_ROWS {
            let terms = terms.into_iter().map(|(t, c)| (float(t), c)).collect();
            return prim(combine_least_squares_composed::<Self>(terms, float(a), float(y), c, noise));
        }
        let (a_values, y_values) = (f32_values(&a), f32_values(&y));
        let ls = crate::cpu::least_squares::LeastSquares { a: &a_values, y: &y_values, m, c: c as f32 };
        flex_combine(&terms, Some(ls), noise)
    }

    fn conv2d_same(x: FlexTensor, weight: FlexTensor, bias: FlexTensor) -> FlexTensor {
        if !Self::fused(x.dtype()) {
            let options = same_conv_options(&weight.shape());
            return Self::conv2d(x, weight, Some(bias), options);
        }
        let conv = same_conv_geometry(&x.shape(), &weight.shape(), Direction::Forward);
        let y = same_conv(&f32_values(&x), &f32_values(&weight), Some(&f32_values(&bias)), &conv, Direction::Forward);
        flex_tensor(y, [conv.batch, conv.out_channels, conv.height, conv.width])
    }

    fn conv2d_same_input_grad(grad: FlexTensor, weight: FlexTensor) -> FlexTensor {
        if !Self::fused(grad.dtype()) {
            let [_, _, kh, kw] = weight.shape().dims::<4>();
            let options = ConvTransposeOptions::new([1, 1], [(kh - 1) / 2, (kw - 1) / 2], [0, 0], [1, 1], 1);
            return Self::conv_transpose2d(grad, weight, None, options);
        }
        let conv = same_conv_geometry(&grad.shape(), &weight.shape(), Direction::InputGrad);
        let dx = same_conv(&f32_values(&grad), &f32_values(&weight), None, &conv, Direction::InputGrad);
        flex_tensor(dx, [conv.batch, conv.in_channels, conv.height, conv.width])
    }

    fn group_norm_act(x: FlexTensor, a: FlexTensor, b: FlexTensor, groups: usize, eps: f64, silu: bool) -> (FlexTensor, FlexTensor) {
        if !Self::fused(x.dtype()) {
            let (y, stats) = group_norm_act_composed::<Self>(float(x), float(a), float(b), groups, eps, silu);
            return (prim(y), prim(stats));
        }
        let [n, c, h, w] = x.shape().dims::<4>();
        let shape = GroupNormShape { batch: n, channels: c, positions: h * w, groups };
        let (y, stats) = group_norm::forward(&f32_values(&x), &f32_values(&a), &f32_values(&b), &shape, eps, silu);
        (flex_tensor(y, [n, c, h, w]), flex_tensor(stats, [n, groups, 2]))
    }

    fn group_norm_act_backward(
        x: FlexTensor,
        a: FlexTensor,
        b: FlexTensor,
        stats: FlexTensor,
        grad: FlexTensor,
        groups: usize,
        silu: bool,
        affine_grads: bool,
    ) -> (FlexTensor, Option<(FlexTensor, FlexTensor)>) {
        if !Self::fused(x.dtype()) {
            let (dx, affine) = group_norm_act_backward_composed::<Self>(float(x), float(a), float(b), float(stats), float(grad), groups, silu, affine_grads);
            return (prim(dx), affine.map(|(da, db)| (prim(da), prim(db))));
        }
        let [n, c, h, w] = x.shape().dims::<4>();
        let shape = GroupNormShape { batch: n, channels: c, positions: h * w, groups };
        let (dx, affine) =
            group_norm::backward(&f32_values(&x), &f32_values(&a), &f32_values(&b), &f32_values(&stats), &f32_values(&grad), &shape, silu, affine_grads);
        (flex_tensor(dx, [n, c, h, w]), affine.map(|(da, db)| (flex_tensor(da, [n, c]), flex_tensor(db, [n, c]))))
    }

    fn softmax_last(x: FlexTensor) -> FlexTensor {
        let shape = x.shape();
        let len = shape[shape.num_dims() - 1];
        if !Self::fused(x.dtype()) || len == 0 {
            return softmax_last_composed::<Self>(x);
        }
        flex_tensor(crate::cpu::softmax::forward(&f32_values(&x), len), shape)
    }

    fn softmax_last_backward(y: FlexTensor, grad: FlexTensor) -> FlexTensor {
        let shape = y.shape();
        let len = shape[shape.num_dims() - 1];
        if !Self::fused(y.dtype()) || !Self::fused(grad.dtype()) || len == 0 {
            return softmax_last_backward_composed::<Self>(y, grad);
        }
        flex_tensor(crate::cpu::softmax::backward(&f32_values(&y), &f32_values(&grad), len), shape)
    }

    fn matmul_thin(x: FlexTensor, w: FlexTensor) -> FlexTensor {
        let ([n, k], [w_rows, m]) = (x.shape().dims::<2>(), w.shape().dims::<2>());
        assert_eq!(k, w_rows, "matmul_thin: x [{n}, {k}] · W [{w_rows}, {m}]");
        let thin = k <= crate::cpu::thin::MAX_THIN || m <= crate::cpu::thin::MAX_THIN;
        if !thin || !Self::fused(x.dtype()) || !Self::fused(w.dtype()) {
            return Self::float_matmul(x, w);
        }
        flex_tensor(crate::cpu::thin::matmul_thin(&f32_values(&x), &f32_values(&w), n, k, m), [n, m])
    }

    fn mixture_score(x: FlexTensor, mixture: MixtureTensors<Self>, scales: MixtureScales) -> (FlexTensor, FlexTensor) {
        if !Self::fused(x.dtype()) || !mixture.all_fused() {
            let (out, resp) = mixture_score_composed::<Self>(float(x), &mixture.floats(), scales);
            return (prim(out), prim(resp));
        }
        let [n, d] = x.shape().dims::<2>();
        let k = mixture.bias.shape().num_elements();
        mixture.check_shapes(d);
        let values = mixture.values();
        let (out, resp) = crate::cpu::mixture::forward(&f32_values(&x), &values.kernel(scales));
        (flex_tensor(out, [n, d]), flex_tensor(resp, [n, k]))
    }

    fn mixture_score_backward(grad: FlexTensor, resp: FlexTensor, mixture: MixtureTensors<Self>, scales: MixtureScales) -> FlexTensor {
        if !Self::fused(grad.dtype()) || !Self::fused(resp.dtype()) || !mixture.all_fused() {
            return prim(mixture_score_backward_composed::<Self>(float(grad), float(resp), &mixture.floats(), scales));
        }
        let shape = grad.shape();
        mixture.check_shapes(shape.dims::<2>()[1]);
        let values = mixture.values();
        flex_tensor(crate::cpu::mixture::backward(&f32_values(&grad), &f32_values(&resp), &values.kernel(scales)), shape)
    }
}

/// The float32 values of a mixture's constants on the CPU.
struct MixtureValues<'a>([std::borrow::Cow<'a, [f32]>; 4]);

impl MixtureValues<'_> {
    fn kernel(&self, scales: MixtureScales) -> crate::cpu::mixture::Mixture<'_> {
        let [basis, coords, precision, bias] = &self.0;
        crate::cpu::mixture::Mixture { basis, coords, precision, bias, s_in: scales.input as f32, s_out: scales.output as f32, s_skip: scales.skip as f32 }
    }
}

impl MixtureTensors<Flex> {
    fn all_fused(&self) -> bool {
        [&self.basis, &self.coords, &self.precision, &self.bias].iter().all(|t| Flex::fused(t.dtype()))
    }

    /// Panics unless V is `[r, d]`, C `[K, r]`, p `[1, d]` and b `[1, K]` for rows of `d`.
    fn check_shapes(&self, d: usize) {
        let [r, dv] = self.basis.shape().dims::<2>();
        let [k, rc] = self.coords.shape().dims::<2>();
        let (np, nb) = (self.precision.shape().num_elements(), self.bias.shape().num_elements());
        assert!(dv == d && rc == r && np == d && nb == k, "mixture_score: V {r}×{dv}, C {k}×{rc}, {np} precisions and {nb} biases for rows of {d}");
    }

    fn values(&self) -> MixtureValues<'_> {
        MixtureValues([f32_values(&self.basis), f32_values(&self.coords), f32_values(&self.precision), f32_values(&self.bias)])
    }
}

// ---------------------------------------------------------------------------------------------
// GPU backends: burn's own kernels through the defaults.

#[cfg(feature = "cuda")]
impl NnBackend for burn::backend::Cuda {}

#[cfg(feature = "wgpu")]
impl NnBackend for burn::backend::Wgpu {}

// ---------------------------------------------------------------------------------------------
// Autodiff: one node per fused operation, or the default's recorded operations.

#[derive(Debug)]
struct ConvSameBackward;

impl<B: NnBackend> Backward<B, 3> for ConvSameBackward {
    /// (the weight, the input's checkpoint when the weight or bias needs a gradient)
    type State = (FloatTensor<B>, Option<NodeId>);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x, node_w, node_b] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (weight, x_state) = ops.state;
        if let Some(node) = node_x {
            grads.register::<B>(node.id, B::conv2d_same_input_grad(grad.clone(), weight.clone()));
        }
        if node_w.is_some() || node_b.is_some() {
            let x: FloatTensor<B> = checkpointer.retrieve_node_output(x_state.expect("the input is checkpointed when a weight needs a gradient"));
            let options = same_conv_options(&weight.shape());
            if let Some(node) = node_w {
                grads.register::<B>(node.id, B::conv2d_weight_backward(x.clone(), weight.clone(), grad.clone(), options));
            }
            if let Some(node) = node_b {
                let bias_shape = Shape::new([weight.shape().dims::<4>()[0]]);
                let bias = B::float_zeros(bias_shape, &B::float_device(&weight), weight.dtype().into());
                grads.register::<B>(node.id, B::conv2d_bias_backward(x, bias, grad));
            }
        }
    }
}

#[derive(Debug)]
struct GroupNormActBackward;

impl<B: NnBackend> Backward<B, 3> for GroupNormActBackward {
    /// (x's checkpoint, a, b, statistics, groups, SiLU)
    type State = (NodeId, FloatTensor<B>, FloatTensor<B>, FloatTensor<B>, usize, bool);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x, node_a, node_b] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, a, b, stats, groups, silu) = ops.state;
        let x: FloatTensor<B> = checkpointer.retrieve_node_output(x_state);
        let affine_grads = node_a.is_some() || node_b.is_some();
        let (dx, affine) = B::group_norm_act_backward(x, a, b, stats, grad, groups, silu, affine_grads);
        if let Some(node) = node_x {
            grads.register::<B>(node.id, dx);
        }
        if let Some((da, db)) = affine {
            if let Some(node) = node_a {
                grads.register::<B>(node.id, da);
            }
            if let Some(node) = node_b {
                grads.register::<B>(node.id, db);
            }
        }
    }
}

#[derive(Debug)]
struct SoftmaxLastBackward;

impl<B: NnBackend> Backward<B, 1> for SoftmaxLastBackward {
    /// The output y.
    type State = FloatTensor<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        if let Some(node) = node_x {
            grads.register::<B>(node.id, B::softmax_last_backward(ops.state, grad));
        }
    }
}

#[derive(Debug)]
struct MixtureScoreBackward;

impl<B: NnBackend> Backward<B, 1> for MixtureScoreBackward {
    /// (ρ, the mixture's constants, the scales)
    type State = (FloatTensor<B>, MixtureTensors<B>, MixtureScales);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (resp, mixture, scales) = ops.state;
        if let Some(node) = node_x {
            grads.register::<B>(node.id, B::mixture_score_backward(grad, resp, mixture, scales));
        }
    }
}

#[derive(Debug)]
struct MatmulThinBackward;

impl<B: NnBackend> Backward<B, 1> for MatmulThinBackward {
    /// W (a constant: only x takes a gradient).
    type State = FloatTensor<B>;

    /// ∂x = ∂out·Wᵀ, itself a thin product (W's thin side becomes the inner one or the output).
    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        if let Some(node) = node_x {
            grads.register::<B>(node.id, B::matmul_thin(grad, B::float_transpose(ops.state)));
        }
    }
}

impl<B: NnBackend, C: CheckpointStrategy> NnBackend for Autodiff<B, C> {
    fn fused(dtype: DType) -> bool {
        B::fused(dtype)
    }

    fn combine(terms: Vec<(FloatTensor<Self>, f64)>, noise: Option<(f64, NoiseDraw)>) -> FloatTensor<Self> {
        // A linear map of its terms: a term that needs a gradient gets the recorded burn
        // operations; constants are combined on the inner backend.
        if terms.iter().any(|(t, _)| !t.node.requirement.is_none()) {
            return prim(combine_composed::<Self>(terms.into_iter().map(|(t, c)| (float(t), c)).collect(), noise));
        }
        let inner = terms.into_iter().map(|(t, c)| (t.primitive, c)).collect();
        <Self as AutodiffBackend>::from_inner(B::combine(inner, noise))
    }

    fn combine_least_squares(
        terms: Vec<(FloatTensor<Self>, f64)>,
        a: FloatTensor<Self>,
        y: FloatTensor<Self>,
        c: f64,
        noise: Option<(f64, NoiseDraw)>,
    ) -> FloatTensor<Self> {
        // As `combine`: recorded burn operations when anything needs a gradient.
        if terms.iter().map(|(t, _)| t).chain([&a, &y]).any(|t| !t.node.requirement.is_none()) {
            let terms = terms.into_iter().map(|(t, c)| (float(t), c)).collect();
            return prim(combine_least_squares_composed::<Self>(terms, float(a), float(y), c, noise));
        }
        let inner = terms.into_iter().map(|(t, c)| (t.primitive, c)).collect();
        <Self as AutodiffBackend>::from_inner(B::combine_least_squares(inner, a.primitive, y.primitive, c, noise))
    }

    fn conv2d_same(x: FloatTensor<Self>, weight: FloatTensor<Self>, bias: FloatTensor<Self>) -> FloatTensor<Self> {
        if !B::fused(x.dtype()) {
            let options = same_conv_options(&weight.shape());
            return Self::conv2d(x, weight, Some(bias), options);
        }
        let weights_need_grad = !weight.node.requirement.is_none() || !bias.node.requirement.is_none();
        match ConvSameBackward.prepare::<C>([x.node.clone(), weight.node.clone(), bias.node.clone()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let x_state = weights_need_grad.then(|| prep.checkpoint(&x));
                let out = B::conv2d_same(x.primitive, weight.primitive.clone(), bias.primitive);
                prep.finish((weight.primitive, x_state), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::conv2d_same(x.primitive, weight.primitive, bias.primitive)),
        }
    }

    fn group_norm_act(
        x: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        groups: usize,
        eps: f64,
        silu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        if !B::fused(x.dtype()) {
            let (y, stats) = group_norm_act_composed::<Self>(float(x), float(a), float(b), groups, eps, silu);
            return (prim(y), prim(stats));
        }
        let (y, stats) = B::group_norm_act(x.primitive.clone(), a.primitive.clone(), b.primitive.clone(), groups, eps, silu);
        let stats_out = <Self as AutodiffBackend>::from_inner(stats.clone());
        let y = match GroupNormActBackward.prepare::<C>([x.node.clone(), a.node.clone(), b.node.clone()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                prep.finish((x_state, a.primitive, b.primitive, stats, groups, silu), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(y),
        };
        (y, stats_out)
    }

    fn softmax_last(x: FloatTensor<Self>) -> FloatTensor<Self> {
        match SoftmaxLastBackward.prepare::<C>([x.node.clone()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let y = B::softmax_last(x.primitive);
                prep.finish(y.clone(), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::softmax_last(x.primitive)),
        }
    }

    /// One node with x as its only parent when W is a constant; burn's recorded matmul when W
    /// needs a gradient.
    fn matmul_thin(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self> {
        if !w.node.requirement.is_none() {
            return Self::float_matmul(x, w);
        }
        match MatmulThinBackward.prepare::<C>([x.node.clone()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish(w.primitive.clone(), B::matmul_thin(x.primitive, w.primitive)),
            OpsKind::UnTracked(prep) => prep.finish(B::matmul_thin(x.primitive, w.primitive)),
        }
    }

    /// One node with x as its only parent: the mixture's constants take no gradient.
    fn mixture_score(x: FloatTensor<Self>, mixture: MixtureTensors<Self>, scales: MixtureScales) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let inner = MixtureTensors {
            basis: mixture.basis.primitive,
            coords: mixture.coords.primitive,
            precision: mixture.precision.primitive,
            bias: mixture.bias.primitive,
        };
        let (out, resp) = B::mixture_score(x.primitive.clone(), inner.clone(), scales);
        let resp_out = <Self as AutodiffBackend>::from_inner(resp.clone());
        let out = match MixtureScoreBackward.prepare::<C>([x.node.clone()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish((resp, inner, scales), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        };
        (out, resp_out)
    }
}

/// An autodiff backend whose operations and whose inner (tape-free) backend's operations both
/// have the fused network operations — what a sampler on a network prior runs on.
pub trait NnAutodiffBackend: NnBackend + AutodiffBackend<InnerBackend: NnBackend> {}

impl<B> NnAutodiffBackend for B where B: NnBackend + AutodiffBackend<InnerBackend: NnBackend> {}
