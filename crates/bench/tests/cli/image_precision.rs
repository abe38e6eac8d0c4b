//! `[image] precision = "f16"`: the UNet prior runs in guided-diffusion-style mixed precision.
//! Its results carry their own fingerprint (never mixed with float32 ones), and the samplers'
//! reconstructions stay close to float32's: mixed precision changes the denoiser by rounding
//! error (≤ 1e-2 relative, `golden_unet_mixed_precision_error_is_rounding_error`), not the
//! method. Tolerance 0.1 dB of PSNR: PSNR moves by (20/ln 10)·δ ≈ 8.7·δ dB when the error norm
//! changes by a relative δ, so 0.1 dB is a 1.2 % change of the reconstruction error.

use std::path::{Path, PathBuf};

use burn::backend::{Autodiff, Flex};
use dipbench::benchmarks::image::ImageRow;
use dipbench::experiment::Experiment;
use dipbench::pipeline::RunOptions;

type B = Autodiff<Flex>;

fn experiment(dir: &Path, precision: &str) -> PathBuf {
    let image = format!("tasks = [\"sr4\"]\nmetrics = [\"psnr\"]\nprecision = \"{precision}\"");
    dipbench_tests::write_tiny_image_experiment(dir, precision, 21, &image, "[[method]]\nlabel = \"DDRM\"\nsampler = \"ddrm\"\npreset = \"paper\"\nsteps = 5")
}

fn rows(exp: &Experiment, out: &Path) -> anyhow::Result<Vec<ImageRow>> {
    let opts = RunOptions { progress: false, jobs: Some(1), shard: None, dataset: None };
    Ok(crate::support::run_image_rows::<B>(exp, out, &[Default::default()], &opts)?.1)
}

#[test]
fn half_precision_prior_keeps_its_own_results_and_stays_close_to_float32() {
    let dir = crate::support::temp_dir("precision");
    let f32_exp = Experiment::load(&experiment(&dir, "f32")).unwrap();
    let f16_exp = Experiment::load(&experiment(&dir, "f16")).unwrap();
    let full = rows(&f32_exp, &dir.join("f32")).unwrap();
    let half = rows(&f16_exp, &dir.join("f16")).unwrap();
    for (a, b) in full.iter().zip(&half) {
        assert_ne!(a.config, b.config, "f16 results must not share float32's fingerprint");
        let (pa, pb) = (a.metrics["psnr"], b.metrics["psnr"]);
        println!("{}: PSNR f32 {pa:.4} dB, f16 {pb:.4} dB", a.image);
        assert_ne!(pa, pb, "precision = f16 changed nothing");
        assert!((pa - pb).abs() <= 0.1, "{}: PSNR {pa} (f32) vs {pb} (f16)", a.image);
    }
    // f16 results are not mixed into a float32 results folder.
    let err = rows(&f16_exp, &dir.join("f32")).unwrap_err();
    assert!(format!("{err:#}").contains("different configuration"), "{err:#}");
    // An unknown precision is refused, naming the key.
    let bad = std::fs::read_to_string(experiment(&dir, "f32")).unwrap().replace("precision = \"f32\"", "precision = \"f8\"");
    std::fs::write(dir.join("bad.toml"), bad).unwrap();
    let err = Experiment::load(&dir.join("bad.toml")).unwrap_err();
    assert!(format!("{err:#}").contains("image.precision"), "{err:#}");
}
