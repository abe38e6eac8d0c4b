//! `dipbench score` end to end, and the aggregation over N images (N = 1, 2, 31, 33, 100: a
//! known bug elsewhere zeroes metrics for 1 < N < 32).

use std::path::Path;
use std::process::Output;

use dipbench_metrics::{FeatureStats, frechet_distance};

use crate::support::{dipbench_with, temp_dir};

/// Runs `dipbench`; with `checkpoints`, the weights (and the shared feature cache) come from there.
fn dipbench(args: &[&str], checkpoints: Option<&Path>) -> Output {
    match checkpoints {
        Some(c) => {
            let cache = c.join("cache");
            dipbench_with(args, None, &[("DIPBENCH_CHECKPOINTS", c.to_str().unwrap()), ("DIPBENCH_CACHE", cache.to_str().unwrap())])
        }
        None => dipbench_with(args, None, &[]),
    }
}

/// Image i of a set: a `side`×`side` smooth pattern, shifted by `offset` grey levels (≤ 35,
/// so nothing clips).
fn write_set(dir: &Path, n: usize, offset: u8, side: u32) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..n {
        let img = image::RgbImage::from_fn(side, side, |x, y| {
            let v = ((x * 5 + y * 3 + i as u32 * 7) % 180) as u8 + 20; // 20..=199
            image::Rgb([v + offset, v / 2 + offset, 230 - v + offset])
        });
        img.save(dir.join(format!("{i:05}.png"))).unwrap();
    }
}

/// `n` images of hashed noise (far from the smooth patterns of `write_set` in any feature space).
fn write_noise_set(dir: &Path, n: usize, side: u32) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..n {
        let img = image::RgbImage::from_fn(side, side, |x, y| {
            let h = |c: u32| ((x.wrapping_mul(73_856_093) ^ y.wrapping_mul(19_349_663) ^ (i as u32 * 3 + c).wrapping_mul(83_492_791)) % 251) as u8;
            image::Rgb([h(0), h(1), h(2)])
        });
        img.save(dir.join(format!("{i:05}.png"))).unwrap();
    }
}

fn summary(o: &Output, metric: &str) -> f64 {
    let text = String::from_utf8_lossy(&o.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{metric}: ")))
        .unwrap_or_else(|| panic!("no {metric} in output: {text} / {}", String::from_utf8_lossy(&o.stderr)))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn per_image_means_are_right_for_every_set_size() {
    // Every pixel differs by 5/255, so every image has PSNR = −20·log10(5/255) = 34.151… dB.
    let want = -20.0 * (5.0f64 / 255.0).log10();
    for n in [1usize, 2, 31, 33, 100] {
        let dir = temp_dir(&format!("n{n}"));
        write_set(&dir.join("a"), n, 5, 24);
        write_set(&dir.join("b"), n, 0, 24);
        let o = dipbench(
            &[
                "score",
                dir.join("a").to_str().unwrap(),
                dir.join("b").to_str().unwrap(),
                "--metrics",
                "psnr,psnr-piq,ssim",
                "--per-image",
                dir.join("rows.csv").to_str().unwrap(),
            ],
            None,
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let psnr = summary(&o, "psnr");
        // Pixels are held as f32 x/255: each 5/255 difference carries ≤ 6e-8 absolute error
        // (≤ 3e-6 relative), so the MSE is off by ≤ 6e-6 relative, i.e. ≤ 2.6e-5 dB.
        assert!((psnr - want).abs() <= 3e-5, "N = {n}: psnr {psnr} want {want}");
        // piq adds 1e-8 to the MSE (3.8e-4 here) in float32: a shift of ≈1.1e-4 dB.
        assert!((summary(&o, "psnr-piq") - want).abs() < 1e-3, "N = {n}");
        let ssim = summary(&o, "ssim");
        assert!(ssim > 0.9 && ssim < 1.0, "N = {n}: ssim {ssim}");
        let rows = std::fs::read_to_string(dir.join("rows.csv")).unwrap();
        assert_eq!(rows.lines().count(), 1 + 3 * n, "N = {n}");
    }
}

#[test]
fn frechet_distance_is_positive_for_different_sets_of_any_size_and_zero_for_identical_ones() {
    // Features: N rows of two shifted distributions (deterministic, no RNG needed).
    let d = 16;
    let row = |i: usize, shift: f64| -> Vec<f64> { (0..d).map(|j| ((i * 31 + j * 17) % 23) as f64 / 23.0 + shift * (j % 3) as f64).collect() };
    for n in [2usize, 31, 33, 100] {
        let a: Vec<f64> = (0..n).flat_map(|i| row(i, 0.0)).collect();
        let b: Vec<f64> = (0..n).flat_map(|i| row(i + 5, 0.5)).collect();
        let (sa, sb) = (FeatureStats::from_rows(&a, d), FeatureStats::from_rows(&b, d));
        let fd = frechet_distance(&sa, &sb).value;
        assert!(fd > 0.1, "N = {n}: FD {fd}");
        assert!((frechet_distance(&sb, &sa).value - fd).abs() < 1e-9 * fd, "N = {n}: not symmetric");
        let same = frechet_distance(&sa, &sa).value;
        assert!(same.abs() < 1e-9, "N = {n}: FD(A, A) = {same} ≠ 0");
    }
}

#[test]
fn score_refuses_mismatched_folders_and_unknown_metrics() {
    let dir = temp_dir("bad");
    write_set(&dir.join("a"), 3, 0, 24);
    std::fs::create_dir_all(dir.join("b")).unwrap();
    for i in 0..3 {
        image::RgbImage::new(10, 10).save(dir.join(format!("b/{i:05}.png"))).unwrap();
    }
    // LPIPS-alex refuses images smaller than AlexNet's receptive field.
    let o = dipbench(&["score", dir.join("a").to_str().unwrap(), dir.join("a").to_str().unwrap(), "--metrics", "lpips-alex"], None);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("31×31") && err.contains("00000.png"), "{err}");
    let o = dipbench(&["score", dir.join("a").to_str().unwrap(), dir.join("b").to_str().unwrap(), "--metrics", "psnr"], None);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("00000.png") && err.contains("24×24") && err.contains("10×10"), "{err}");
    let o = dipbench(&["score", dir.join("a").to_str().unwrap(), dir.join("a").to_str().unwrap(), "--metrics", "psnr,fidd"], None);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("fidd") && err.contains("fid-torchvision"), "{err}");
    // LPIPS without its weights says where to get them.
    write_set(&dir.join("c"), 1, 0, 32);
    let o = dipbench(&["score", dir.join("c").to_str().unwrap(), dir.join("c").to_str().unwrap(), "--metrics", "lpips-alex"], Some(&dir));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("alexnet-owt-7be5be79.pth") && err.contains("download.pytorch.org"), "{err}");
}

#[test]
fn golden_lpips_and_fid_of_identical_sets_are_zero_and_fid_is_symmetric() {
    let dir = temp_dir("zero");
    dipbench_tests::write_golden_checkpoints(&dir);
    // Inception on the CPU costs seconds per image: two images per set.
    write_set(&dir.join("a"), 2, 0, 32);
    write_noise_set(&dir.join("b"), 2, 32);
    let (a, b) = (dir.join("a"), dir.join("b"));
    let same = dipbench(&["score", a.to_str().unwrap(), a.to_str().unwrap(), "--metrics", "lpips-alex,fid"], Some(&dir));
    assert!(same.status.success(), "{}", String::from_utf8_lossy(&same.stderr));
    assert!(summary(&same, "lpips-alex").abs() < 1e-7, "LPIPS(A, A)");
    assert!(summary(&same, "fid").abs() < 1e-6, "FID(A, A)");
    let ab = dipbench(
        &["score", a.to_str().unwrap(), b.to_str().unwrap(), "--metrics", "lpips-alex,fid", "--features", dir.join("f.safetensors").to_str().unwrap()],
        Some(&dir),
    );
    let ba = dipbench(&["score", b.to_str().unwrap(), a.to_str().unwrap(), "--metrics", "fid"], Some(&dir));
    assert!(ab.status.success() && ba.status.success());
    let (fab, fba) = (summary(&ab, "fid"), summary(&ba, "fid"));
    assert!(fab > 0.0 && (fab - fba).abs() <= 1e-9 * fab.max(1e-12), "FID(A,B) = {fab}, FID(B,A) = {fba}");
    assert!(summary(&ab, "lpips-alex") > 0.0);
    // The printed FID is the Fréchet distance of the dumped features (N < d: the cross-Gram
    // form, whose agreement with the covariance form is a unit test of the metrics crate).
    let bytes = std::fs::read(dir.join("f.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let rows = |k: &str| -> Vec<f64> { st.tensor(k).unwrap().data().chunks(4).map(|c| f64::from(f32::from_le_bytes(c.try_into().unwrap()))).collect() };
    let (sa, sb) = (FeatureStats::from_rows(&rows("features_a"), 2048), FeatureStats::from_rows(&rows("features_b"), 2048));
    let direct = dipbench_metrics::frechet::trace_sqrt_product_gram(sa.centred.as_ref().unwrap(), sb.centred.as_ref().unwrap());
    let from_terms = (&sa.mean - &sb.mean).norm_squared() + sa.cov.trace() + sb.cov.trace() - 2.0 * direct;
    assert!((fab - from_terms).abs() <= 1e-9 * sa.cov.trace().max(1e-300), "FID {fab} vs {from_terms} from the dumped features");
    // Features are cached once per network and set of images, keyed by the files' contents: a
    // copy of the folder (new paths, new modification times) is a hit, a changed image a miss.
    let cache = dir.join("cache").join("features");
    let entries = || std::fs::read_dir(&cache).map(|d| d.count()).unwrap_or(0);
    assert_eq!(entries(), 2, "one entry per set of images (a, b)");
    let a2 = dir.join("a2");
    write_set(&a2, 2, 0, 32);
    let again = dipbench(&["score", a2.to_str().unwrap(), b.to_str().unwrap(), "--metrics", "fid"], Some(&dir));
    assert_eq!(summary(&again, "fid"), fab, "the cached features give the same FID");
    assert_eq!(entries(), 2, "a copy of a set is a cache hit");
    write_set(&a2, 1, 9, 32);
    let changed = dipbench(&["score", a2.to_str().unwrap(), b.to_str().unwrap(), "--metrics", "fid"], Some(&dir));
    assert!(changed.status.success());
    assert_eq!(entries(), 3, "a changed image is a new entry");
    assert!(std::fs::read_dir(&cache).unwrap().all(|e| e.unwrap().file_name().to_string_lossy().starts_with("folder-tf-fid-")));
}
