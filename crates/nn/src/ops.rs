//! The fused network operations on burn tensors, for any [`NnBackend`].

use burn::tensor::{Tensor, TensorPrimitive};

use crate::backend::{MixtureScales, MixtureTensors, NnBackend};

/// Y = W ⋆ X + b, stride 1, zero padding (k − 1)/2 (torch `Conv2d(k, padding=k//2)`), for X
/// `[n, in, H, W]`, W `[out, in, k_h, k_w]` with odd sides, b `[out]`.
pub fn conv2d_same<B: NnBackend>(x: Tensor<B, 4>, weight: Tensor<B, 4>, bias: Tensor<B, 1>) -> Tensor<B, 4> {
    let y = B::conv2d_same(x.into_primitive().tensor(), weight.into_primitive().tensor(), bias.into_primitive().tensor());
    Tensor::from_primitive(TensorPrimitive::Float(y))
}

/// act(a·(x − μ_g)/√(σ²_g + ε) + b): GroupNorm over `groups` groups of x `[n, c, h, w]` with
/// the per-(sample, channel) affine map a, b `[n, c]`, then SiLU when `silu` (formulas in
/// [`crate::cpu::group_norm`]).
pub fn group_norm_act<B: NnBackend>(x: Tensor<B, 4>, a: Tensor<B, 2>, b: Tensor<B, 2>, groups: usize, eps: f64, silu: bool) -> Tensor<B, 4> {
    let (y, _) = B::group_norm_act(x.into_primitive().tensor(), a.into_primitive().tensor(), b.into_primitive().tensor(), groups, eps, silu);
    Tensor::from_primitive(TensorPrimitive::Float(y))
}

/// Softmax over the last dimension (torch `softmax(x, dim=-1)`): y = e^{x − max}/Σ e^{x − max}
/// per row, a fused kernel with its own gradient where the backend has one
/// ([`crate::cpu::softmax`] on the CPU), burn's `softmax` elsewhere.
pub fn softmax_last<B: NnBackend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(B::softmax_last(x.into_primitive().tensor())))
}

/// The scaled score of a Gaussian mixture with shared diagonal precision (formulas in
/// [`crate::cpu::mixture`]): s_out·p ⊙ (Σ_k ρ_k μ_k − s_in·x) + s_skip·x for x `[n, d]`, with
/// the means μ_k = Σ_j C_kj V_j (`basis` V `[r, d]`, `coords` C `[K, r]`), `precision` p
/// `[1, d]` and `bias` b_k = log w_k − ½ μ_kᵀPμ_k `[1, K]`. One fused pass with its own
/// gradient where the backend has one, burn's operations elsewhere; the constants take no
/// gradient.
pub fn mixture_score<B: NnBackend>(
    x: Tensor<B, 2>,
    basis: Tensor<B, 2>,
    coords: Tensor<B, 2>,
    precision: Tensor<B, 2>,
    bias: Tensor<B, 2>,
    scales: MixtureScales,
) -> Tensor<B, 2> {
    let t = |v: Tensor<B, 2>| v.into_primitive().tensor();
    let mixture = MixtureTensors { basis: t(basis), coords: t(coords), precision: t(precision), bias: t(bias) };
    let (out, _) = B::mixture_score(t(x), mixture, scales);
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

/// x·W for x `[n, k]` and W `[k, m]` with a thin side (k or m ≤ 32 on the CPU): each output row
/// on its own, in a fixed order ([`crate::cpu::thin`]), where the backend has the kernel; burn's
/// matmul elsewhere. Only x takes a gradient through the fused path.
pub fn matmul_thin<B: NnBackend>(x: Tensor<B, 2>, w: Tensor<B, 2>) -> Tensor<B, 2> {
    Tensor::from_primitive(TensorPrimitive::Float(B::matmul_thin(x.into_primitive().tensor(), w.into_primitive().tensor())))
}
