//! Metrics against their reference packages (`metrics.safetensors/.json`: skimage 0.26, piq
//! 0.8.0, lpips 0.1.4, pytorch-fid 0.3.0). Tolerances (those the fixtures were written for):
//! PSNR 1e-4 dB; SSIM 1e-5 (skimage, float64 like the reference) and 1e-4 relative (piq: the
//! reference computes in float32 and its own rounding is ~1e-5, see `ssim_piq`; measured 8.8e-6);
//! LPIPS and Inception features 1e-4 relative; Fréchet distance 1e-6 relative.

use burn::backend::Flex;
use burn::prelude::*;
use dipbench_metrics::{FeatureStats, Inception, InceptionVariant, Lpips, LpipsVariant, frechet_distance, psnr_piq, psnr_skimage, ssim_piq, ssim_skimage};
use dipbench_nn::source::{GoldenFill, MemorySource};
use dipbench_tests::{golden_dir, load_json, load_tensors, rel_err, tensor};

type B = Flex;
const D: usize = 3 * 256 * 256;

fn pairs() -> (Vec<f64>, Vec<Vec<f64>>) {
    let t = load_tensors("metrics");
    let r = tensor(&t, "ref").data.clone();
    let dist = tensor(&t, "dist");
    (r, (0..4).map(|i| dist.data[i * D..(i + 1) * D].to_vec()).collect())
}

fn json_list(v: &serde_json::Value) -> Vec<f64> {
    v.as_array().expect("list").iter().map(|x| x.as_f64().unwrap()).collect()
}

#[test]
fn golden_metrics_psnr_and_ssim_in_both_conventions() {
    let meta = load_json("metrics");
    let (r, dists) = pairs();
    let r32: Vec<f32> = r.iter().map(|v| *v as f32).collect();
    for (i, d) in dists.iter().enumerate() {
        let d32: Vec<f32> = d.iter().map(|v| *v as f32).collect();
        let p = psnr_skimage(&r, d);
        let pp = psnr_piq(&r32, &d32) as f64;
        let s = ssim_skimage(&r, d, 3, 256, 256);
        let sp = ssim_piq(&r32, &d32, 3, 256, 256) as f64;
        let (wp, wpp, ws, wsp) =
            (json_list(&meta["psnr_skimage"])[i], json_list(&meta["psnr_piq"])[i], json_list(&meta["ssim_skimage"])[i], json_list(&meta["ssim_piq"])[i]);
        println!("pair {i}: PSNR {p:.6} ({:.1e}) piq {pp:.6} ({:.1e}); SSIM {s:.7} ({:.1e}) piq {sp:.7} ({:.1e})", p - wp, pp - wpp, s - ws, sp - wsp);
        assert!((p - wp).abs() <= 1e-4 && (pp - wpp).abs() <= 1e-4, "pair {i}: PSNR");
        assert!((s - ws).abs() <= 1e-5, "pair {i}: SSIM (skimage)");
        assert!((sp - wsp).abs() <= 1e-4 * wsp, "pair {i}: SSIM (piq)");
    }
}

fn images(v: &[Vec<f64>]) -> Tensor<B, 4> {
    let flat: Vec<f32> = v.iter().flatten().map(|x| *x as f32).collect();
    Tensor::<B, 1>::from_floats(flat.as_slice(), &Default::default()).reshape([v.len(), 3, 256, 256])
}

fn backbone_manifest(net: &str) -> Vec<(String, Vec<usize>)> {
    dipbench_metrics::lpips::backbone_manifest(net)
}

#[test]
fn golden_metrics_lpips_alex_and_vgg_with_the_real_linear_heads() {
    let meta = load_json("metrics");
    let (r, dists) = pairs();
    let x = images(&dists);
    let y = images(&vec![r; 4]);
    for (net, variant) in [("alex", LpipsVariant::Alex), ("vgg", LpipsVariant::Vgg)] {
        let mut heads = MemorySource::from_pytorch(&golden_dir().join(format!("lpips_lin/{net}.pth")), None).unwrap();
        let lp = Lpips::<B>::load(variant, &mut GoldenFill::new(backbone_manifest(net)), &mut heads, &Default::default()).unwrap();
        let got: Vec<f64> = lp.distance(x.clone(), y.clone()).into_data().convert::<f32>().to_vec::<f32>().unwrap().into_iter().map(f64::from).collect();
        let want = json_list(&meta["lpips_package"][net]["lpips"]);
        let err = rel_err(&got, &want);
        println!("lpips-{net}: {got:?} vs {want:?} ({err:.1e})");
        assert!(err <= 1e-4, "lpips-{net}: relative error {err:.2e}");
    }
}

#[test]
fn golden_metrics_lpips_piq_variant() {
    let meta = load_json("metrics");
    let (r, dists) = pairs();
    let x = images(&dists);
    let y = images(&vec![r; 4]);
    // With the real lpips v0.1 VGG heads, and with golden-fill heads.
    let mut real = MemorySource::from_pytorch(&golden_dir().join("lpips_lin/vgg.pth"), None).unwrap();
    let golden_heads: Vec<(String, Vec<usize>)> =
        [64, 128, 256, 512, 512].iter().enumerate().map(|(k, c)| (format!("lin{k}.model.1.weight"), vec![1, *c, 1, 1])).collect();
    for (name, heads) in [("real_lpips_vgg_lin", &mut real as &mut dyn dipbench_nn::source::ParamSource), ("golden_lin", &mut GoldenFill::new(golden_heads))] {
        let lp = Lpips::<B>::load(LpipsVariant::PiqVgg, &mut GoldenFill::new(backbone_manifest("vgg")), heads, &Default::default()).unwrap();
        let got: Vec<f64> = lp.distance(x.clone(), y.clone()).into_data().convert::<f32>().to_vec::<f32>().unwrap().into_iter().map(f64::from).collect();
        let want = json_list(&meta["piq_lpips"][name]);
        let err = rel_err(&got, &want);
        println!("piq lpips ({name}): {got:?} vs {want:?} ({err:.1e})");
        assert!(err <= 1e-4, "piq lpips ({name}): relative error {err:.2e}");
    }
}

#[test]
fn golden_metrics_fid_inception_features_and_input_path() {
    let meta = load_json("metrics");
    let t = load_tensors("metrics");
    let keys: Vec<(String, Vec<usize>)> = meta["fid_inception"]["fid_inception_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e[0].as_str().unwrap().to_string(), e[1].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect()))
        .collect();
    // The manifest the network declares (used by `dipbench bench metrics`) is the reference
    // state dict without the classifier, in the same order.
    let pool3_keys: Vec<(String, Vec<usize>)> = keys.iter().filter(|(k, _)| !k.starts_with("fc.")).cloned().collect();
    assert_eq!(Inception::<B>::manifest(InceptionVariant::TfFid), pool3_keys);
    let net = Inception::<B>::load(InceptionVariant::TfFid, &mut GoldenFill::new(keys), &Default::default()).unwrap();
    let (_, dists) = pairs();
    let trace = net.forward_traced(images(&dists));
    let v = |x: Tensor<B, 4>| -> Vec<f64> { x.into_data().convert::<f32>().to_vec::<f32>().unwrap().into_iter().map(f64::from).collect() };
    let checks: Vec<(&str, Vec<f64>)> = vec![
        ("fid_input299_crop", v(trace.input.clone().slice([0..4, 0..3, 100..132, 100..132]))),
        ("fid_block0_crop", v(trace.block0.clone().slice([0..4, 0..8, 24..40, 24..40]))),
        ("fid_block1_crop", v(trace.block1.clone().slice([0..4, 0..8, 8..24, 8..24]))),
        ("fid_block0_mean", v(trace.block0.clone().reshape([4, 64, 73 * 73]).mean_dim(2).reshape([4, 64, 1, 1]))),
        ("fid_block1_mean", v(trace.block1.clone().reshape([4, 192, 35 * 35]).mean_dim(2).reshape([4, 192, 1, 1]))),
        ("fid_block2_mean", v(trace.block2.clone().reshape([4, 768, 17 * 17]).mean_dim(2).reshape([4, 768, 1, 1]))),
        ("fid_features", v(trace.pool3.clone().reshape([4, 2048, 1, 1]))),
    ];
    for (key, got) in checks {
        let err = rel_err(&got, &tensor(&t, key).data);
        println!("{key}: relative error {err:.2e}");
        assert!(err <= 1e-4, "{key}: relative error {err:.3e}");
    }
}

#[test]
fn golden_metrics_frechet_distance() {
    let meta = load_json("metrics");
    let t = load_tensors("metrics");
    let (f1, f2) = (tensor(&t, "fd_feats1"), tensor(&t, "fd_feats2"));
    let a = FeatureStats::from_rows(&f1.data, 64);
    let b = FeatureStats::from_rows(&f2.data, 64);
    let d = frechet_distance(&a, &b);
    let want = meta["frechet_distance"]["value"].as_f64().unwrap();
    let rel = (d.value - want).abs() / want;
    println!("Fréchet distance {} vs {want} ({rel:.1e}); terms {d:?}", d.value);
    assert!(rel <= 1e-6, "Fréchet distance relative error {rel:.2e}");
    let terms = &meta["frechet_distance"]["terms"];
    for (got, key) in [(d.diff_sq, "diff_sq"), (d.tr_s1, "tr_s1"), (d.tr_s2, "tr_s2"), (d.tr_sqrtm, "tr_sqrtm_s1s2")] {
        let w = terms[key].as_f64().unwrap();
        assert!((got - w).abs() / w <= 1e-6, "{key}: {got} vs {w}");
    }
    // Symmetric, and zero between a set and itself.
    assert!((frechet_distance(&b, &a).value - d.value).abs() <= 1e-9 * d.value);
    assert!(frechet_distance(&a, &a).value.abs() < 1e-9);
}
