//! The CPU backend's fused operations against burn's own implementations of the same maths, in
//! value and in gradient (burn's `conv2d` with its autodiff; GroupNorm written in burn operations
//! with burn's autodiff), on `Autodiff<Flex>`.

use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use burn::tensor::module::conv2d;
use dipbench_nn::backend::{group_norm_act_backward_composed, group_norm_act_composed, same_conv_options};
use dipbench_nn::ops::{conv2d_same, group_norm_act};

type A = Autodiff<Flex>;

fn values<B: Backend, const D: usize>(shape: [usize; D], seed: u32, device: &B::Device) -> Tensor<B, D> {
    let n: usize = shape.iter().product();
    let v: Vec<f32> =
        (0..n).map(|i| (((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed.wrapping_mul(97)) >> 8) as f32 / (1u32 << 24) as f32) * 2.0 - 1.0).collect();
    Tensor::<B, 1>::from_floats(v.as_slice(), device).reshape(shape)
}

fn rel_err<B: Backend, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> f32 {
    let scale = b.clone().abs().max().into_scalar().elem::<f32>();
    (a - b).abs().max().into_scalar().elem::<f32>() / scale
}

#[test]
fn fused_convolution_and_its_input_gradient_equal_burns_conv2d() {
    // Float32 sums of ≤ 9·16 products in a different order: 1e-5 of the largest value.
    let device = Default::default();
    // The 64×64 case runs the Winograd kernel, the others the direct products.
    for (k, cin, cout, h, w) in [(3, 16, 8, 12, 10), (1, 8, 16, 7, 9), (3, 4, 4, 1, 1), (3, 6, 5, 64, 64)] {
        let x = values::<A, 4>([2, cin, h, w], 1, &device);
        let weight = values::<A, 4>([cout, cin, k, k], 2, &device);
        let bias = values::<A, 1>([cout], 3, &device);
        let probe = values::<A, 4>([2, cout, h, w], 4, &device);

        let xf = x.clone().require_grad();
        let yf = conv2d_same(xf.clone(), weight.clone(), bias.clone());
        let gf = xf.grad(&(yf.clone() * probe.clone()).sum().backward()).unwrap();

        let xr = x.clone().require_grad();
        let yr = conv2d(xr.clone(), weight.clone(), Some(bias.clone()), same_conv_options(&weight.shape()));
        let gr = xr.grad(&(yr.clone() * probe.clone()).sum().backward()).unwrap();

        assert!(rel_err(yf, yr) < 1e-5, "k={k}: output");
        assert!(rel_err(gf, gr) < 1e-5, "k={k}: input gradient");
    }
}

#[test]
fn fused_group_norm_and_its_gradients_equal_burn_operations() {
    // Float64 statistics against burn's float32 ones: 1e-5 relative on values and gradients.
    let device = Default::default();
    for silu in [false, true] {
        let x = values::<A, 4>([2, 8, 5, 6], 5, &device).mul_scalar(3.0).add_scalar(0.5);
        let a = values::<A, 2>([2, 8], 6, &device).add_scalar(1.5);
        let b = values::<A, 2>([2, 8], 7, &device);
        let probe = values::<A, 4>([2, 8, 5, 6], 8, &device);
        let grads_of = |fused: bool| {
            let (xg, ag, bg) = (x.clone().require_grad(), a.clone().require_grad(), b.clone().require_grad());
            let y = if fused {
                group_norm_act(xg.clone(), ag.clone(), bg.clone(), 4, 1e-5, silu)
            } else {
                group_norm_act_composed(xg.clone(), ag.clone(), bg.clone(), 4, 1e-5, silu).0
            };
            let grads = (y.clone() * probe.clone()).sum().backward();
            (y, xg.grad(&grads).unwrap(), ag.grad(&grads).unwrap(), bg.grad(&grads).unwrap())
        };
        let (yf, dxf, daf, dbf) = grads_of(true);
        let (yr, dxr, dar, dbr) = grads_of(false);
        assert!(rel_err(yf, yr) < 1e-5, "silu={silu}: output");
        assert!(rel_err(dxf, dxr) < 1e-5, "silu={silu}: ∂x");
        assert!(rel_err(daf, dar) < 1e-5, "silu={silu}: ∂a");
        assert!(rel_err(dbf, dbr) < 1e-5, "silu={silu}: ∂b");
    }
}

#[test]
fn composed_group_norm_gradient_equals_autodiff_of_the_composed_forward() {
    // The backend-independent gradient (the default other backends inherit) against burn's
    // autodiff of the default forward: 1e-5 relative.
    let device = Default::default();
    let x = values::<A, 4>([1, 6, 4, 4], 9, &device);
    let a = values::<A, 2>([1, 6], 10, &device).add_scalar(1.0);
    let b = values::<A, 2>([1, 6], 11, &device);
    let probe = values::<A, 4>([1, 6, 4, 4], 12, &device);
    let (xg, ag, bg) = (x.clone().require_grad(), a.clone().require_grad(), b.clone().require_grad());
    let (y, stats) = group_norm_act_composed(xg.clone(), ag.clone(), bg.clone(), 3, 1e-5, true);
    let grads = (y * probe.clone()).sum().backward();
    let (dx, affine) = group_norm_act_backward_composed(x.inner(), a.inner(), b.inner(), stats.inner(), probe.inner(), 3, true, true);
    let (da, db) = affine.unwrap();
    assert!(rel_err(dx, xg.grad(&grads).unwrap()) < 1e-5);
    assert!(rel_err(da, ag.grad(&grads).unwrap()) < 1e-5);
    assert!(rel_err(db, bg.grad(&grads).unwrap()) < 1e-5);
}

#[test]
fn fused_softmax_and_its_gradient_equal_burns_softmax() {
    // A row's exponentials (2 ulp each) and their float32 sum in another order: 1e-6 of the
    // largest value, for rows of 1 to 1024 values (the attention planes' lengths) and logits up
    // to ±60. The gradient y ⊙ (∂y − Σ ∂y ⊙ y) rounds ∂y − Σ at ~1e-7 of |∂y| (≤ 1), while on
    // saturated rows (logits ±60) the gradient entries are much smaller than |∂y| and the error is
    // judged relative to the largest of them: 1e-4 (measured 1.8e-5 there).
    let device = Default::default();
    for (rows, len, scale, transposed) in [(3, 1, 1.0, false), (5, 7, 3.0, true), (4, 64, 60.0, false), (2, 1024, 10.0, true)] {
        // A transposed view (as the attention's gradient arrives) as well as contiguous rows.
        let x = if transposed { values::<A, 3>([1, len, rows], 5, &device).swap_dims(1, 2) } else { values::<A, 3>([1, rows, len], 5, &device) };
        let x = x.mul_scalar(scale);
        let probe = values::<A, 3>([1, len, rows], 50_000, &device).swap_dims(1, 2);
        let xf = x.clone().require_grad();
        let yf = dipbench_nn::ops::softmax_last(xf.clone());
        let gf = xf.grad(&(yf.clone() * probe.clone()).sum().backward()).unwrap();
        let xr = x.clone().require_grad();
        let yr = burn::tensor::activation::softmax(xr.clone(), 2);
        let gr = xr.grad(&(yr.clone() * probe).sum().backward()).unwrap();
        // A row of one value has y = 1 and a zero gradient: judged absolutely there.
        let eg = if len == 1 { (gf - gr).abs().max().into_scalar().elem::<f32>() } else { rel_err(gf, gr) };
        let ey = rel_err(yf.inner(), yr.inner());
        assert!(ey <= 1e-6 && eg <= 1e-4, "rows {rows} × {len}, scale {scale}: value {ey:.2e}, gradient {eg:.2e}");
    }
}

#[test]
fn the_cpu_backend_runs_its_own_softmax_kernel() {
    // Bit for bit the kernel's output: the fused path is taken, not burn's softmax.
    let device = Default::default();
    let x = values::<Flex, 2>([3, 40], 9, &device).mul_scalar(7.0);
    let host: Vec<f32> = x.clone().into_data().to_vec().unwrap();
    let fused: Vec<f32> = dipbench_nn::ops::softmax_last(x).into_data().to_vec().unwrap();
    assert_eq!(fused, dipbench_nn::cpu::softmax::forward(&host, 40));
}

#[test]
fn fused_mixture_score_and_its_gradient_equal_burns_operations() {
    // The composed form differentiated by burn's autodiff is the reference for the fused node's
    // hand-derived gradient. Float32 sums of d = 50 products in another order: 1e-5 of the
    // largest value (value), 1e-4 (gradient, whose ρ ⊙ (a − ρᵀa) cancels).
    use dipbench_nn::MixtureScales;
    let device = Default::default();
    let (n, d, r, k) = (7, 50, 3, 6);
    let basis = values::<A, 2>([r, d], 1, &device).mul_scalar(0.3);
    let coords = values::<A, 2>([k, r], 2, &device).mul_scalar(5.0);
    let precision = values::<A, 2>([1, d], 3, &device).mul_scalar(0.2).add_scalar(0.6);
    let bias = values::<A, 2>([1, k], 4, &device);
    let probe = values::<A, 2>([n, d], 6, &device);
    for scales in [MixtureScales { input: 1.0, output: 1.0, skip: 0.0 }, MixtureScales { input: 0.7, output: -1.9, skip: 1.0 }] {
        let x = values::<A, 2>([n, d], 5, &device).mul_scalar(4.0);
        let xf = x.clone().require_grad();
        let yf = dipbench_nn::ops::mixture_score(xf.clone(), basis.clone(), coords.clone(), precision.clone(), bias.clone(), scales);
        let gf = xf.grad(&(yf.clone() * probe.clone()).sum().backward()).unwrap();
        let xr = x.require_grad();
        let mixture = [basis.clone(), coords.clone(), precision.clone(), bias.clone()];
        let (yr, _) = dipbench_nn::backend::mixture_score_composed(xr.clone(), &mixture, scales);
        let gr = xr.grad(&(yr.clone() * probe.clone()).sum().backward()).unwrap();
        let (ey, eg) = (rel_err(yf.inner(), yr.inner()), rel_err(gf, gr));
        assert!(ey <= 1e-5 && eg <= 1e-4, "{scales:?}: value {ey:.2e}, gradient {eg:.2e}");
    }
}

#[test]
fn the_cpu_backend_runs_its_own_mixture_kernel() {
    // Bit for bit the kernel's output: the fused path is taken, not the composed operations.
    use dipbench_nn::MixtureScales;
    use dipbench_nn::cpu::mixture::{Mixture, forward};
    let device = Default::default();
    let t = |shape: [usize; 2], seed| values::<Flex, 2>(shape, seed, &device);
    let host = |t: &Tensor<Flex, 2>| -> Vec<f32> { t.clone().into_data().to_vec().unwrap() };
    let (x, basis, coords, precision, bias) = (t([4, 24], 1), t([2, 24], 2), t([5, 2], 3), t([1, 24], 4).add_scalar(2.0), t([1, 5], 5));
    let scales = MixtureScales { input: 1.5, output: 0.5, skip: 1.0 };
    let fused = host(&dipbench_nn::ops::mixture_score(x.clone(), basis.clone(), coords.clone(), precision.clone(), bias.clone(), scales));
    let (b, c, p, bb) = (host(&basis), host(&coords), host(&precision), host(&bias));
    let mix = Mixture { basis: &b, coords: &c, precision: &p, bias: &bb, s_in: 1.5, s_out: 0.5, s_skip: 1.0 };
    assert_eq!(fused, forward(&host(&x), &mix).0);
}

#[test]
fn composed_mixture_gradient_equals_the_cpu_kernel() {
    // The burn-operations backward (what the GPU backends run) against the CPU kernel's, from the
    // same ρ: the same formulas summed in another order, 1e-5 of the largest value.
    use dipbench_nn::MixtureScales;
    use dipbench_nn::cpu::mixture::{Mixture, backward, forward};
    let device = Default::default();
    let (n, d, r, k) = (5, 40, 3, 7);
    let t = |shape: [usize; 2], seed| values::<Flex, 2>(shape, seed, &device);
    let host = |t: &Tensor<Flex, 2>| -> Vec<f32> { t.clone().into_data().to_vec().unwrap() };
    let (x, basis, coords) = (t([n, d], 11).mul_scalar(3.0), t([r, d], 12).mul_scalar(0.3), t([k, r], 13).mul_scalar(4.0));
    let (precision, bias, grad) = (t([1, d], 14).mul_scalar(0.2).add_scalar(0.7), t([1, k], 15), t([n, d], 16));
    let scales = MixtureScales { input: 0.8, output: -1.7, skip: 1.0 };
    let (b, c, p, bb) = (host(&basis), host(&coords), host(&precision), host(&bias));
    let mix = Mixture { basis: &b, coords: &c, precision: &p, bias: &bb, s_in: 0.8, s_out: -1.7, s_skip: 1.0 };
    let (_, resp) = forward(&host(&x), &mix);
    let kernel = Tensor::<Flex, 1>::from_floats(backward(&host(&grad), &resp, &mix).as_slice(), &device).reshape([n, d]);
    let resp = Tensor::<Flex, 1>::from_floats(resp.as_slice(), &device).reshape([n, k]);
    let composed = dipbench_nn::backend::mixture_score_backward_composed(grad, resp, &[basis, coords, precision, bias], scales);
    let e = rel_err(composed, kernel);
    assert!(e <= 1e-5, "composed vs kernel gradient: {e:.2e}");
}

#[test]
fn thin_products_and_their_gradient_equal_burns_matmul() {
    // burn's matmul with its autodiff is the reference, in value and in ∂x, for both thin sides
    // (few outputs: y = x·Aᵀ; few inputs: Aᵀr = r·A), a transposed (strided) W, and a W that
    // needs a gradient (burn's recorded matmul then, ∂W compared too). Float32 sums of up to 800
    // products of values in [−1, 1] in another order: each within ~30 roundings of 2⁻²⁴ of the
    // sum of magnitudes (≤ 800), which can be far larger than the largest entry when terms
    // cancel, so 1e-4 of the largest entry (measured ≤ 2e-6).
    let device = Default::default();
    for (n, k, m, transposed, w_grad) in [(9, 800, 4, false, false), (9, 4, 800, false, false), (5, 80, 2, true, false), (6, 3, 40, false, true)] {
        let x = values::<A, 2>([n, k], 3, &device);
        let w = if transposed { values::<A, 2>([m, k], 4, &device).transpose() } else { values::<A, 2>([k, m], 4, &device) };
        let probe = values::<A, 2>([n, m], 60_000, &device);
        let (xf, wf) = (x.clone().require_grad(), if w_grad { w.clone().require_grad() } else { w.clone() });
        let yf = dipbench_nn::ops::matmul_thin(xf.clone(), wf.clone());
        let gf = (yf.clone() * probe.clone()).sum().backward();
        let (xr, wr) = (x.require_grad(), if w_grad { w.require_grad() } else { w });
        let yr = xr.clone().matmul(wr.clone());
        let gr = (yr.clone() * probe).sum().backward();
        let (ey, ex) = (rel_err(yf.inner(), yr.inner()), rel_err(xf.grad(&gf).unwrap(), xr.grad(&gr).unwrap()));
        let ew = if w_grad { rel_err(wf.grad(&gf).unwrap(), wr.grad(&gr).unwrap()) } else { 0.0 };
        assert!(ey <= 1e-4 && ex <= 1e-4 && ew <= 1e-4, "x [{n}, {k}] · W [{k}, {m}]: value {ey:.2e}, ∂x {ex:.2e}, ∂W {ew:.2e}");
    }
}

#[test]
fn the_cpu_backend_runs_its_own_thin_kernel() {
    // Bit for bit the kernel's output: the fused path is taken, not burn's matmul.
    let device = Default::default();
    let (x, w) = (values::<Flex, 2>([7, 300], 11, &device), values::<Flex, 2>([300, 3], 12, &device));
    let (hx, hw): (Vec<f32>, Vec<f32>) = (x.clone().into_data().to_vec().unwrap(), w.clone().into_data().to_vec().unwrap());
    let fused: Vec<f32> = dipbench_nn::ops::matmul_thin(x, w).into_data().to_vec().unwrap();
    assert_eq!(fused, dipbench_nn::cpu::thin::matmul_thin(&hx, &hw, 7, 300, 3));
}
