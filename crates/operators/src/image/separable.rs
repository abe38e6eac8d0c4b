//! Operators that act on each image channel as Y = L·X·Rᵀ (the SR ×4 resizer; Gaussian blur with
//! reflect padding, whose kernel is an outer product). Linear, with adjoint X = Lᵀ·Y·R and an
//! exact singular-value view from the SVDs of L and R: A = L ⊗ R = (U_L ⊗ U_R)(S_L ⊗ S_R)(V_L ⊗ V_R)ᵀ.

use burn::prelude::*;
use nalgebra::DMatrix;

use crate::error::OperatorError;
use crate::operator::{LinearOperator, Operator, SvdView};
use dipbench_nn::tensor::host_to_tensor;

/// Channels, height and width of the images an operator takes or returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageShape {
    /// Channels.
    pub c: usize,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
}

impl ImageShape {
    /// c·h·w.
    pub fn len(&self) -> usize {
        self.c * self.h * self.w
    }

    /// Always false for a real image.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Applies `m` (`[p, q]`) on the left of every `[q, k]` slice of `x` (`[b, q, k]`).
fn left<B: Backend>(m: &Tensor<B, 2>, x: Tensor<B, 3>) -> Tensor<B, 3> {
    let [b, _, _] = x.dims();
    let [p, q] = m.dims();
    m.clone().unsqueeze_dim::<3>(0).expand([b, p, q]).matmul(x)
}

/// Applies `m` (`[k, p]`) on the right of every `[q, k]` slice of `x`.
fn right<B: Backend>(x: Tensor<B, 3>, m: &Tensor<B, 2>) -> Tensor<B, 3> {
    let [b, _, _] = x.dims();
    let [k, p] = m.dims();
    x.matmul(m.clone().unsqueeze_dim::<3>(0).expand([b, k, p]))
}

/// The Kronecker SVD of Y = L·X·Rᵀ: coordinates C = V_Lᵀ·X·V_R per channel (flattened), with
/// singular values s_L[i]·s_R[j]; 1-D singular values below `threshold`·max are dropped (their
/// directions join the null space), as DDRM's deblurring SVD zeroes those below `ZERO`.
#[derive(Debug, Clone)]
struct KronSvd<B: Backend> {
    u_l: Tensor<B, 2>,
    u_l_t: Tensor<B, 2>,
    v_l: Tensor<B, 2>,
    v_l_t: Tensor<B, 2>,
    u_r: Tensor<B, 2>,
    u_r_t: Tensor<B, 2>,
    v_r: Tensor<B, 2>,
    v_r_t: Tensor<B, 2>,
    rl: usize,
    rr: usize,
    channels: usize,
    values: Vec<f64>,
}

fn thin_svd(m: &DMatrix<f64>, threshold: f64) -> (DMatrix<f64>, Vec<f64>, DMatrix<f64>) {
    let svd = m.clone().svd(true, true);
    let (u, vt) = (svd.u.expect("U"), svd.v_t.expect("Vᵀ"));
    let mut order: Vec<usize> = (0..svd.singular_values.len()).collect();
    order.sort_by(|&i, &j| svd.singular_values[j].total_cmp(&svd.singular_values[i]));
    let max = svd.singular_values.max();
    let kept: Vec<usize> = order.into_iter().filter(|&i| svd.singular_values[i] > threshold * max).collect();
    let uk = DMatrix::from_fn(m.nrows(), kept.len(), |r, c| u[(r, kept[c])]);
    let vk = DMatrix::from_fn(m.ncols(), kept.len(), |r, c| vt[(kept[c], r)]);
    (uk, kept.iter().map(|&i| svd.singular_values[i]).collect(), vk)
}

impl<B: Backend> KronSvd<B> {
    fn new(l: &DMatrix<f64>, r: &DMatrix<f64>, channels: usize, threshold: f64, device: &B::Device) -> Self {
        let (ul, sl, vl) = thin_svd(l, threshold);
        let (ur, sr, vr) = thin_svd(r, threshold);
        let values = (0..channels).flat_map(|_| sl.iter().flat_map(|a| sr.iter().map(move |b| a * b))).collect();
        let t = |m: &DMatrix<f64>| host_to_tensor::<B>(m, device);
        Self {
            u_l_t: t(&ul.transpose()),
            v_l_t: t(&vl.transpose()),
            u_r_t: t(&ur.transpose()),
            v_r_t: t(&vr.transpose()),
            u_l: t(&ul),
            v_l: t(&vl),
            u_r: t(&ur),
            v_r: t(&vr),
            rl: sl.len(),
            rr: sr.len(),
            channels,
            values,
        }
    }
}

/// Y = L·X·Rᵀ per channel (module documentation).
#[derive(Debug, Clone)]
pub struct SeparableOperator<B: Backend> {
    name: String,
    input: ImageShape,
    output: ImageShape,
    l: Tensor<B, 2>,
    l_t: Tensor<B, 2>,
    r: Tensor<B, 2>,
    r_t: Tensor<B, 2>,
    norm: f64,
    svd: KronSvd<B>,
}

impl<B: Backend> SeparableOperator<B> {
    /// The operator with row matrix `l` (`h′ × h`) and column matrix `r` (`w′ × w`) on images
    /// of `channels` channels. `svd_threshold` as in DDRM's `ZERO` (relative to the largest 1-D
    /// singular value).
    pub fn new(name: impl Into<String>, channels: usize, l: &DMatrix<f64>, r: &DMatrix<f64>, svd_threshold: f64, device: &B::Device) -> Self {
        let svd = KronSvd::new(l, r, channels, svd_threshold, device);
        let norm = l.clone().singular_values().max() * r.clone().singular_values().max();
        let t = |m: &DMatrix<f64>| host_to_tensor::<B>(m, device);
        Self {
            name: name.into(),
            input: ImageShape { c: channels, h: l.ncols(), w: r.ncols() },
            output: ImageShape { c: channels, h: l.nrows(), w: r.nrows() },
            l: t(l),
            l_t: t(&l.transpose()),
            r: t(r),
            r_t: t(&r.transpose()),
            norm,
            svd,
        }
    }

    /// Input image shape.
    pub fn input_shape(&self) -> ImageShape {
        self.input
    }

    /// Output image shape.
    pub fn output_shape(&self) -> ImageShape {
        self.output
    }
}

impl<B: Backend> Operator<B> for SeparableOperator<B> {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn input_dim(&self) -> usize {
        self.input.len()
    }

    fn output_dim(&self) -> usize {
        self.output.len()
    }

    /// Y = L·X·Rᵀ for every channel of every row.
    fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let n = x.dims()[0];
        let (i, o) = (self.input, self.output);
        let x = x.reshape([n * i.c, i.h, i.w]);
        right(left(&self.l, x), &self.r_t).reshape([n, o.len()])
    }

    fn as_linear(&self) -> Option<&dyn LinearOperator<B>> {
        Some(self)
    }
}

impl<B: Backend> LinearOperator<B> for SeparableOperator<B> {
    /// X = Lᵀ·Y·R.
    fn adjoint(&self, y: Tensor<B, 2>) -> Tensor<B, 2> {
        let n = y.dims()[0];
        let (i, o) = (self.input, self.output);
        let y = y.reshape([n * o.c, o.h, o.w]);
        right(left(&self.l_t, y), &self.r).reshape([n, i.len()])
    }

    fn spectral_norm(&self) -> f64 {
        self.norm
    }

    fn svd(&self) -> Option<&dyn SvdView<B>> {
        Some(self)
    }
}

impl<B: Backend> SvdView<B> for SeparableOperator<B> {
    fn singular_values(&self) -> &[f64] {
        &self.svd.values
    }

    fn vt(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let n = x.dims()[0];
        let (i, s) = (self.input, &self.svd);
        let x = x.reshape([n * i.c, i.h, i.w]);
        right(left(&s.v_l_t, x), &s.v_r).reshape([n, s.channels * s.rl * s.rr])
    }

    fn v(&self, c: Tensor<B, 2>) -> Tensor<B, 2> {
        let n = c.dims()[0];
        let (i, s) = (self.input, &self.svd);
        let c = c.reshape([n * s.channels, s.rl, s.rr]);
        right(left(&s.v_l, c), &s.v_r_t).reshape([n, i.len()])
    }

    fn ut(&self, y: Tensor<B, 2>) -> Tensor<B, 2> {
        let n = y.dims()[0];
        let (o, s) = (self.output, &self.svd);
        let y = y.reshape([n * o.c, o.h, o.w]);
        right(left(&s.u_l_t, y), &s.u_r).reshape([n, s.channels * s.rl * s.rr])
    }

    fn u(&self, c: Tensor<B, 2>) -> Tensor<B, 2> {
        let n = c.dims()[0];
        let (o, s) = (self.output, &self.svd);
        let c = c.reshape([n * s.channels, s.rl, s.rr]);
        right(left(&s.u_l, c), &s.u_r_t).reshape([n, o.len()])
    }
}

/// Shape errors of image operators name the operator and both shapes.
pub fn check_rows(op: &str, got: usize, want: ImageShape) -> Result<(), OperatorError> {
    if got == want.len() {
        Ok(())
    } else {
        Err(OperatorError::Shape {
            context: format!("operator `{op}` input"),
            expected: format!("rows of {} values ({}×{}×{})", want.len(), want.c, want.h, want.w),
            got: format!("rows of {got} values"),
        })
    }
}
