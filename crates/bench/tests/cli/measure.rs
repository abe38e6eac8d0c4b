//! `dipbench measure` and `dipbench operators grid` on the golden test image.

use std::process::Command;

use dipbench_tests::{golden_dir, load_tensors, rel_err, tensor};

use crate::support::{dipbench, read_tensor, temp_dir};

#[test]
fn golden_measure_applies_the_reference_operator_to_a_png() {
    let dir = temp_dir("sr4");
    let png = golden_dir().join("test_image_256.png");
    let out = dir.join("y.safetensors");
    let o = dipbench(&[
        "measure",
        "--task",
        "sr4",
        "--input",
        png.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--png",
        dir.join("y.png").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let t = load_tensors("operators");
    // The PNG decodes to the reference x exactly (q/255·2 − 1), and y_clean is the reference SR.
    assert!(rel_err(&read_tensor(&out, "x"), &tensor(&t, "x").data) < 1e-7);
    let e = rel_err(&read_tensor(&out, "y_clean"), &tensor(&t, "sr4_y").data);
    assert!(e <= 1e-5, "sr4 relative error {e}");
    // The noise has the requested σ_y (12288 values: the sample std is within 3 % of 0.05).
    let (y, yc) = (read_tensor(&out, "y"), read_tensor(&out, "y_clean"));
    let sd = (y.iter().zip(&yc).map(|(a, b)| (a - b).powi(2)).sum::<f64>() / y.len() as f64).sqrt();
    assert!((sd / 0.05 - 1.0).abs() < 0.03, "noise std {sd}");
    assert!(dir.join("y.png").is_file());
}

#[test]
fn golden_measure_refuses_wrong_sizes_and_unknown_tasks() {
    let dir = temp_dir("bad");
    let small = dir.join("small.png");
    image::RgbImage::new(64, 48).save(&small).unwrap();
    let out = dir.join("y.safetensors");
    let o = dipbench(&["measure", "--task", "sr4", "--input", small.to_str().unwrap(), "--output", out.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("small.png") && err.contains("[1, 3, 48, 64]") && err.contains("256"), "{err}");
    let png = golden_dir().join("test_image_256.png");
    let o = dipbench(&["measure", "--task", "sr8", "--input", png.to_str().unwrap(), "--output", out.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("sr8") && err.contains("sr4"), "{err}");
    // deblur_nonlinear without its checkpoint says where to get it.
    let o = Command::new(env!("CARGO_BIN_EXE_dipbench"))
        .args(["measure", "--task", "deblur_nonlinear", "--input", png.to_str().unwrap(), "--output", out.to_str().unwrap()])
        .env("DIPBENCH_CHECKPOINTS", dir.to_str().unwrap())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("GOPRO_wVAE.pth") && err.contains("1vRoDpIsrTRYZKsOMPNbPcMtFDpCT6Foy"), "{err}");
}

#[test]
fn golden_operators_grid_writes_one_panel_per_task() {
    let dir = temp_dir("grid");
    let png = golden_dir().join("test_image_256.png");
    let o = dipbench(&["operators", "grid", "--input", png.to_str().unwrap(), "--out", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let sr = image::open(dir.join("sr4-dps.png")).unwrap();
    // x | y | Aᵀy, each 256 wide plus an 8-pixel gap.
    assert_eq!((sr.width(), sr.height()), (3 * 264, 256));
    let pr = image::open(dir.join("phase_retrieval-dps.png")).unwrap();
    assert_eq!((pr.width(), pr.height()), (264 + 392, 384), "phase retrieval has no adjoint panel");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 8);
}
