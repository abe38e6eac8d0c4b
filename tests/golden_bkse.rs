//! The bkse KernelWizard (nonlinear deblur) with golden-fill weights against the reference
//! (`operators.safetensors`: bkse_k, bkse_y). Tolerance: 1e-4 relative (the operators' float32 bound; the network is
//! 45 layers deep in float32).

use burn::backend::Flex;
use burn::prelude::*;
use dipbench_nn::source::GoldenFill;
use dipbench_operators::Operator;
use dipbench_operators::image::ImageShape;
use dipbench_operators::image::bkse::{KernelCode, KernelWizard, NonlinearBlur};
use dipbench_tests::{load_json, load_tensors, rel_err, tensor};

type B = Flex;

fn manifest() -> Vec<(String, Vec<usize>)> {
    let meta = load_json("operators");
    meta["bkse"]["keys"]
        .as_array()
        .expect("operators.json bkse.keys")
        .iter()
        .map(|e| (e[0].as_str().unwrap().to_string(), e[1].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect()))
        .collect()
}

#[test]
fn golden_bkse_nonlinear_blur_matches_reference() {
    let dev = Default::default();
    let m = manifest();
    let meta = load_json("operators");
    assert_eq!(m.len(), meta["bkse"]["num_tensors"].as_u64().unwrap() as usize);
    let net = KernelWizard::<B>::load(&mut GoldenFill::new(m), &dev).unwrap();
    let t = load_tensors("operators");
    let k = tensor(&t, "bkse_k");
    let kt = Tensor::<B, 1>::from_floats(k.data.iter().map(|v| *v as f32).collect::<Vec<_>>().as_slice(), &dev).reshape([1, 512, 2, 2]);
    let op = NonlinearBlur::new(net, KernelCode::Fixed(kt), ImageShape { c: 3, h: 256, w: 256 });
    let x = tensor(&t, "x");
    let xt = Tensor::<B, 1>::from_floats(x.data.iter().map(|v| *v as f32).collect::<Vec<_>>().as_slice(), &dev).reshape([1, 3 * 256 * 256]);
    let y: Vec<f64> = op.forward(xt).into_data().convert::<f32>().to_vec::<f32>().unwrap().into_iter().map(f64::from).collect();
    let want = &tensor(&t, "bkse_y").data;
    let err = rel_err(&y, want);
    // The residual y − x is what the network contributes (std ≈ 0.04): check it on its own too.
    let resid: Vec<f64> = y.iter().zip(&x.data).map(|(a, b)| a - b).collect();
    let resid_ref: Vec<f64> = want.iter().zip(&x.data).map(|(a, b)| a - b).collect();
    let err_resid = rel_err(&resid, &resid_ref);
    println!("bkse: y relative error {err:.2e}, residual y − x relative error {err_resid:.2e}");
    assert!(err <= 1e-4, "bkse y relative error {err:.3e}");
    assert!(err_resid <= 1e-3, "bkse residual relative error {err_resid:.3e}");
}

#[test]
fn bkse_refuses_a_checkpoint_of_another_architecture() {
    let mut m = manifest();
    // Drop one unused kernel-extractor tensor: still refused (every key is checked).
    m.retain(|(k, _)| k != "kernel_extractor.model.22.conv_block.5.weight");
    let err = KernelWizard::<B>::load(&mut GoldenFill::new(m), &Default::default()).unwrap_err().to_string();
    assert!(err.contains("kernel_extractor.model.22.conv_block.5.weight"), "{err}");
}
