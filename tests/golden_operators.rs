//! Image operators against the reference implementations (`operators.safetensors`, noise-free
//! A(x) of the DPS/DAPS code on the 256×256 test image), and their defining identities.
//!
//! Tolerances: 1e-5 relative in ‖·‖₂. Our float32 matrix products sum in another
//! order than PyTorch's convolutions and FFT, which moves values by ~1e-7 relative.

use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use dipbench_operators::image::blur::{gaussian_blur, gaussian_kernel};
use dipbench_operators::image::resizer::resize_matrix;
use dipbench_operators::image::{ConvOperator, Hdr, ImageShape, InpaintOperator, Mask, PhaseRetrieval, PhaseVariant, SeparableOperator};
use dipbench_operators::{LinearOperator, Operator, SampleRng, SvdView};
use dipbench_tests::{GoldenTensor, load_json, load_tensors, max_abs_diff, rel_err, tensor};

type B = Flex;
const SHAPE: ImageShape = ImageShape { c: 3, h: 256, w: 256 };

fn row(t: &GoldenTensor) -> Tensor<B, 2> {
    let v: Vec<f32> = t.data.iter().map(|x| *x as f32).collect();
    Tensor::<B, 1>::from_floats(v.as_slice(), &Default::default()).reshape([1, v.len()])
}

fn values(t: Tensor<B, 2>) -> Vec<f64> {
    t.into_data().convert::<f32>().to_vec::<f32>().unwrap().into_iter().map(f64::from).collect()
}

fn check(name: &str, got: Tensor<B, 2>, want: &GoldenTensor) {
    let err = rel_err(&values(got), &want.data);
    println!("{name}: relative error {err:.2e}");
    assert!(err <= 1e-5, "{name}: relative error {err:.3e}");
}

fn sr4() -> SeparableOperator<B> {
    SeparableOperator::new("sr4", 3, &resize_matrix(256, 0.25), &resize_matrix(256, 0.25), 0.0, &Default::default())
}

#[test]
fn golden_operators_linear_tasks_match_the_reference() {
    let t = load_tensors("operators");
    let x = row(tensor(&t, "x"));
    check("sr4", sr4().forward(x.clone()), tensor(&t, "sr4_y"));
    // The Gaussian kernel itself (float32 of scipy's float64), then the blur as DPS applies it
    // (2-D convolution) and as dipbench's separable operator.
    let k = gaussian_kernel(61, 3.0);
    let gk = tensor(&t, "gauss_kernel");
    assert!(max_abs_diff(&k.iter().map(|v| *v as f32 as f64).collect::<Vec<_>>(), &gk.data) == 0.0, "Gaussian kernel differs");
    let kf: Vec<f32> = gk.data.iter().map(|v| *v as f32).collect();
    check("gauss (2-D conv)", ConvOperator::<B>::new("g", SHAPE, &kf, 61, &Default::default()).unwrap().forward(x.clone()), tensor(&t, "gauss_y"));
    check("gauss (separable)", gaussian_blur::<B>(SHAPE, 61, 3.0, 0.0, &Default::default()).forward(x.clone()), tensor(&t, "gauss_y"));
    let mk = tensor(&t, "motion_kernels");
    let k0: Vec<f32> = mk.data[..61 * 61].iter().map(|v| *v as f32).collect();
    check("motion k0", ConvOperator::<B>::new("m", SHAPE, &k0, 61, &Default::default()).unwrap().forward(x.clone()), tensor(&t, "motion_y_k0"));
    // Box inpainting with the reference's box (DAPS generator, numpy seed 42).
    let b = &load_json("operators")["box"];
    let (top, left) = (b["top"].as_u64().unwrap() as usize, b["left"].as_u64().unwrap() as usize);
    assert_eq!(b["bottom_excl"].as_u64().unwrap() as usize - top, 128);
    let mask = Mask::boxed(256, 256, top, left, 128).unwrap();
    let want_mask = tensor(&t, "box_mask");
    assert!(mask.kept.iter().zip(&want_mask.data).all(|(k, m)| (*k as u8 as f64) == *m), "box mask differs");
    check("box", InpaintOperator::<B>::new("box", 3, mask, &Default::default()).forward(x), tensor(&t, "box_y"));
}

#[test]
fn golden_operators_nonlinear_tasks_match_the_reference() {
    let t = load_tensors("operators");
    let x = row(tensor(&t, "x"));
    let dev = Default::default();
    check("phase retrieval (DPS)", PhaseRetrieval::<B>::new(SHAPE, 2.0, PhaseVariant::Dps, &dev).forward(x.clone()), tensor(&t, "pr_dps_y"));
    check("phase retrieval (DAPS)", PhaseRetrieval::<B>::new(SHAPE, 2.0, PhaseVariant::Daps, &dev).forward(x.clone()), tensor(&t, "pr_daps_y"));
    check("hdr", Operator::<B>::forward(&Hdr::new(SHAPE, 2.0), x), tensor(&t, "hdr_y"));
}

fn random_rows(n: usize, d: usize, seed: u64) -> Tensor<B, 2> {
    SampleRng::new(seed, n).normal::<B>(d, &Default::default())
}

fn dot(a: Tensor<B, 2>, b: Tensor<B, 2>) -> f64 {
    values(a * b).iter().sum()
}

/// Every linear operator: ⟨Ax, y⟩ = ⟨x, Aᵀy⟩ (random x, y; float32 sums of 2e5 terms → 1e-5).
#[test]
fn golden_adjoint_identity_of_every_linear_operator() {
    let t = load_tensors("operators");
    let dev = Default::default();
    let k0: Vec<f32> = tensor(&t, "motion_kernels").data[..61 * 61].iter().map(|v| *v as f32).collect();
    let mut rng = SampleRng::new(4, 1);
    let ops: Vec<Box<dyn LinearOperator<B>>> = vec![
        Box::new(sr4()),
        Box::new(gaussian_blur::<B>(SHAPE, 61, 3.0, 3e-2, &dev)),
        Box::new(ConvOperator::<B>::new("motion", SHAPE, &k0, 61, &dev).unwrap()),
        Box::new(InpaintOperator::<B>::new("random", 3, Mask::random_pixels(256, 256, 0.3, 0.7, &mut rng).unwrap(), &dev)),
    ];
    for op in &ops {
        let x = random_rows(2, op.input_dim(), 1);
        let y = random_rows(2, op.output_dim(), 2);
        let (lhs, rhs) = (dot(op.forward(x.clone()), y.clone()), dot(x, op.adjoint(y)));
        let err = (lhs - rhs).abs() / lhs.abs().max(rhs.abs());
        println!("{}: <Ax,y> = {lhs:.6}, <x,Aᵀy> = {rhs:.6}, relative {err:.1e}", op.name());
        assert!(err < 1e-5, "{}: adjoint identity off by {err:.2e}", op.name());
    }
}

/// SVD views reconstruct A; the pseudo-inverse and the projection satisfy their identities for
/// the operator the SVD view keeps (A_s = U·S·Vᵀ, which is A itself unless singular values
/// below a threshold were dropped, as Gaussian deblur does with DDRM's ZERO = 3e-2):
/// A_s·A⁺·A_s = A_s, A_s·P(x, y) = y for y in range, P idempotent.
#[test]
fn svd_pseudo_inverse_and_projection_identities() {
    let dev = Default::default();
    let mut rng = SampleRng::new(5, 1);
    let gauss_exact = gaussian_blur::<B>(SHAPE, 61, 3.0, 0.0, &dev);
    let x = random_rows(2, SHAPE.len(), 3);
    let e = rel_err(
        &values(gauss_exact.u(dipbench_operators::operator::scale_columns(gauss_exact.vt(x.clone()), gauss_exact.singular_values()))),
        &values(gauss_exact.forward(x)),
    );
    println!("gaussian blur, all singular values: U·S·Vᵀ vs A {e:.1e}");
    assert!(e < 1e-5);
    let ops: Vec<Box<dyn LinearOperator<B>>> = vec![
        Box::new(sr4()),
        Box::new(gaussian_blur::<B>(SHAPE, 61, 3.0, 3e-2, &dev)),
        Box::new(InpaintOperator::<B>::new("box", 3, Mask::random_box(256, 256, 128, 16, &mut rng).unwrap(), &dev)),
    ];
    for op in &ops {
        let svd = op.svd().expect("an SVD view");
        let s = svd.singular_values().to_vec();
        let a_s = |x: Tensor<B, 2>| svd.u(dipbench_operators::operator::scale_columns(svd.vt(x), &s));
        let x = random_rows(2, op.input_dim(), 3);
        let ax = a_s(x.clone());
        let e_pinv = rel_err(&values(a_s(op.pinv(ax.clone()).unwrap())), &values(ax.clone()));
        let y = a_s(random_rows(2, op.input_dim(), 4)); // a consistent measurement
        let p = op.project(x.clone(), y.clone()).unwrap();
        let e_proj = rel_err(&values(a_s(p.clone())), &values(y.clone()));
        let e_idem = rel_err(&values(op.project(p.clone(), y).unwrap()), &values(p));
        println!("{}: A_s·A⁺·A_s {e_pinv:.1e}, projection {e_proj:.1e}, idempotence {e_idem:.1e}", op.name());
        assert!(e_pinv < 1e-5 && e_proj < 1e-5 && e_idem < 1e-5, "{}", op.name());
    }
}

/// ∇ₓ⟨A(x), w⟩ by autodiff against central finite differences along a random direction, for
/// every operator (nonlinear ones included), in float32. Each case picks a point and step where
/// the finite difference is meaningful: the truncation error is O(ε²) and the rounding error of
/// the forward O(1e-7·|f|/ε); 1e-2 relative covers both. HDR is evaluated where |2x| < 1 (no
/// kink of the clip within ±ε); the DFT modulus |z| has a kink at z = 0, so phase retrieval runs
/// on a small image with a mean offset (no frequency near zero) and ε = 1e-3.
#[test]
fn operator_gradients_match_finite_differences() {
    type A = Autodiff<Flex>;
    let dev = Default::default();
    let shape = ImageShape { c: 3, h: 32, w: 32 };
    let small = ImageShape { c: 1, h: 8, w: 8 };
    let k: Vec<f32> = gaussian_kernel(7, 1.5).into_iter().map(|v| v as f32).collect();
    let mut rng = SampleRng::new(6, 1);
    // (operator, scale and offset of x, ε)
    let cases: Vec<(Box<dyn Operator<A>>, f64, f64, f64)> = vec![
        (Box::new(SeparableOperator::<A>::new("sr4", 3, &resize_matrix(32, 0.25), &resize_matrix(32, 0.25), 0.0, &dev)), 0.3, 0.0, 3e-2),
        (Box::new(ConvOperator::<A>::new("blur7", shape, &k, 7, &dev).unwrap()), 0.3, 0.0, 3e-2),
        (Box::new(InpaintOperator::<A>::new("random", 3, Mask::random_pixels(32, 32, 0.5, 0.5, &mut rng).unwrap(), &dev)), 0.3, 0.0, 3e-2),
        (Box::new(Hdr::new(shape, 2.0)), 0.1, 0.0, 3e-2),
        (Box::new(PhaseRetrieval::<A>::new(small, 2.0, PhaseVariant::Dps, &dev)), 0.2, 0.5, 1e-3),
        (Box::new(PhaseRetrieval::<A>::new(small, 2.0, PhaseVariant::Daps, &dev)), 0.2, 0.5, 1e-3),
    ];
    for (op, scale, offset, eps) in &cases {
        let x = SampleRng::new(7, 1).normal::<A>(op.input_dim(), &dev).mul_scalar(*scale).add_scalar(*offset);
        let w = SampleRng::new(8, 1).normal::<A>(op.output_dim(), &dev);
        let v = SampleRng::new(9, 1).normal::<A>(op.input_dim(), &dev);
        let xg = x.clone().require_grad();
        let grads = (op.forward(xg.clone()) * w.clone()).sum().backward();
        let g = Tensor::<A, 2>::from_inner(xg.grad(&grads).unwrap());
        let analytic: f64 = (g * v.clone()).sum().into_scalar() as f64;
        let f = |x: Tensor<A, 2>| (op.forward(x) * w.clone()).sum().into_scalar() as f64;
        let numeric = (f(x.clone() + v.clone().mul_scalar(*eps)) - f(x - v.mul_scalar(*eps))) / (2.0 * eps);
        let err = (analytic - numeric).abs() / analytic.abs().max(1e-6);
        println!("{}: directional derivative {analytic:.5} vs finite difference {numeric:.5} ({err:.1e})", op.name());
        assert!(err < 1e-2, "{}: gradient off by {err:.2e}", op.name());
    }
}
