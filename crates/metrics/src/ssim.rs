//! Structural similarity (Wang et al. 2004) with an 11×11 Gaussian window (σ = 1.5), K1 = 0.01,
//! K2 = 0.03, data range 1, per image, averaged over channels. Two conventions:
//! - [`ssim_skimage`]: `structural_similarity(..., gaussian_weights=True, sigma=1.5,
//!   use_sample_covariance=False, channel_axis=0, data_range=1)`: statistics by
//!   `scipy.ndimage.gaussian_filter` (truncate 3.5, `reflect` boundary) over the whole image, the
//!   SSIM map cropped by (11−1)/2 = 5 on each side, then averaged; float64;
//! - [`ssim_piq`]: `piq.ssim(x, ref, data_range=1)`: valid 2-D convolution with the normalised
//!   11×11 Gaussian (no padding), σ² statistics as E[x²] − E[x]²; float32. (piq first averages
//!   down by round(min(H, W)/256), which is 1 for 256×256 images; other sizes are refused here.)

/// The normalised 1-D Gaussian of `scipy.ndimage.gaussian_filter1d(σ, truncate)`: taps on
/// −r…r with r = int(truncate·σ + 0.5).
fn gaussian_taps(sigma: f64, truncate: f64) -> Vec<f64> {
    let r = (truncate * sigma + 0.5) as i64;
    let w: Vec<f64> = (-r..=r).map(|x| (-0.5 * (x * x) as f64 / (sigma * sigma)).exp()).collect();
    let s: f64 = w.iter().sum();
    w.into_iter().map(|v| v / s).collect()
}

/// scipy's `reflect` boundary: d c b a | a b c d | d c b a.
fn reflect(i: i64, n: i64) -> usize {
    let period = 2 * n;
    let m = i.rem_euclid(period);
    (if m < n { m } else { period - 1 - m }) as usize
}

/// `scipy.ndimage.gaussian_filter` of an h×w plane (separable, `reflect`).
fn gaussian_filter(img: &[f64], h: usize, w: usize, taps: &[f64]) -> Vec<f64> {
    let r = (taps.len() / 2) as i64;
    let mut tmp = vec![0.0; h * w];
    for y in 0..h {
        for x in 0..w {
            tmp[y * w + x] = taps.iter().enumerate().map(|(k, t)| t * img[y * w + reflect(x as i64 + k as i64 - r, w as i64)]).sum();
        }
    }
    let mut out = vec![0.0; h * w];
    for y in 0..h {
        for x in 0..w {
            out[y * w + x] = taps.iter().enumerate().map(|(k, t)| t * tmp[reflect(y as i64 + k as i64 - r, h as i64) * w + x]).sum();
        }
    }
    out
}

/// skimage's SSIM of two CHW images in [0, 1] (float64).
pub fn ssim_skimage(reference: &[f64], x: &[f64], c: usize, h: usize, w: usize) -> f64 {
    assert_eq!(reference.len(), c * h * w);
    assert_eq!(x.len(), c * h * w);
    let taps = gaussian_taps(1.5, 3.5);
    let win = taps.len();
    let pad = (win - 1) / 2;
    let (c1, c2) = (0.01f64.powi(2), 0.03f64.powi(2));
    let mut total = 0.0;
    for ch in 0..c {
        let a = &reference[ch * h * w..(ch + 1) * h * w];
        let b = &x[ch * h * w..(ch + 1) * h * w];
        let f = |v: &[f64]| gaussian_filter(v, h, w, &taps);
        let (ux, uy) = (f(a), f(b));
        let uxx = f(&a.iter().map(|v| v * v).collect::<Vec<_>>());
        let uyy = f(&b.iter().map(|v| v * v).collect::<Vec<_>>());
        let uxy = f(&a.iter().zip(b).map(|(p, q)| p * q).collect::<Vec<_>>());
        let mut sum = 0.0;
        let mut count = 0usize;
        for yy in pad..h - pad {
            for xx in pad..w - pad {
                let i = yy * w + xx;
                let (vx, vy, vxy) = (uxx[i] - ux[i] * ux[i], uyy[i] - uy[i] * uy[i], uxy[i] - ux[i] * uy[i]);
                let s = ((2.0 * ux[i] * uy[i] + c1) * (2.0 * vxy + c2)) / ((ux[i] * ux[i] + uy[i] * uy[i] + c1) * (vx + vy + c2));
                sum += s;
                count += 1;
            }
        }
        total += sum / count as f64;
    }
    total / c as f64
}

/// piq's SSIM of two CHW images in [0, 1]: piq's kernel (float32, as piq builds it), valid
/// correlation, σ² as E[x²] − E[x]², mean over the map then over channels.
///
/// E[x²] − E[x]² cancels catastrophically in flat regions (σ² ≈ 1e-3 against E[x²] ≈ 0.4), so
/// the result is sensitive to the last bit of the float32 kernel and to float32 rounding: a
/// 1-ulp change of the kernel moves SSIM by ~2e-5, and a float32 NumPy evaluation of the same
/// formula lands 1e-5 from piq's own output. dipbench evaluates the formula in float64 on piq's
/// float32 kernel (normalised by its correctly rounded sum, as torch's pairwise sum is to within
/// an ulp); measured within 8.8e-6 of piq on the fixtures.
pub fn ssim_piq(reference: &[f32], x: &[f32], c: usize, h: usize, w: usize) -> f32 {
    assert_eq!(reference.len(), c * h * w);
    assert_eq!(x.len(), c * h * w);
    assert!((h.min(w) as f64 / 256.0).round() <= 1.0, "piq would downsample {h}×{w} images first; not implemented");
    let k = 11usize;
    // piq's kernel: coords − (k−1)/2, g = exp(−(cx² + cy²)/(2σ²)), normalised (float32).
    let coords: Vec<f32> = (0..k).map(|i| i as f32 - (k as f32 - 1.0) / 2.0).collect();
    let mut kern = vec![0f32; k * k];
    for i in 0..k {
        for j in 0..k {
            kern[i * k + j] = (-(coords[i] * coords[i] + coords[j] * coords[j]) / (2.0 * 1.5f32 * 1.5f32)).exp();
        }
    }
    // torch sums pairwise; the correctly rounded sum is the closest stand-in.
    let s = kern.iter().map(|v| f64::from(*v)).sum::<f64>() as f32;
    let kern: Vec<f64> = kern.iter().map(|v| f64::from(v / s)).collect();
    let (c1, c2) = (1e-4f64, 9e-4f64);
    let (oh, ow) = (h - k + 1, w - k + 1);
    let conv = |img: &[f64]| -> Vec<f64> {
        let mut out = vec![0f64; oh * ow];
        for y in 0..oh {
            for xx in 0..ow {
                let mut acc = 0f64;
                for i in 0..k {
                    for j in 0..k {
                        acc += kern[i * k + j] * img[(y + i) * w + xx + j];
                    }
                }
                out[y * ow + xx] = acc;
            }
        }
        out
    };
    let mut total = 0f64;
    for ch in 0..c {
        let a: Vec<f64> = reference[ch * h * w..(ch + 1) * h * w].iter().map(|v| f64::from(*v)).collect();
        let b: Vec<f64> = x[ch * h * w..(ch + 1) * h * w].iter().map(|v| f64::from(*v)).collect();
        let (mx, my) = (conv(&b), conv(&a));
        let mxx = conv(&b.iter().map(|v| v * v).collect::<Vec<_>>());
        let myy = conv(&a.iter().map(|v| v * v).collect::<Vec<_>>());
        let mxy = conv(&b.iter().zip(&a).map(|(p, q)| p * q).collect::<Vec<_>>());
        let mut sum = 0f64;
        for i in 0..oh * ow {
            let (mu_xx, mu_yy, mu_xy) = (mx[i] * mx[i], my[i] * my[i], mx[i] * my[i]);
            let (sxx, syy, sxy) = (mxx[i] - mu_xx, myy[i] - mu_yy, mxy[i] - mu_xy);
            let cs = (2.0 * sxy + c2) / (sxx + syy + c2);
            sum += (2.0 * mu_xy + c1) / (mu_xx + mu_yy + c1) * cs;
        }
        total += sum / (oh * ow) as f64;
    }
    (total / c as f64) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_images_have_ssim_one_and_taps_match_scipy() {
        assert_eq!(gaussian_taps(1.5, 3.5).len(), 11);
        let img: Vec<f64> = (0..3 * 32 * 32).map(|i| ((i * 37) % 101) as f64 / 100.0).collect();
        assert!((ssim_skimage(&img, &img, 3, 32, 32) - 1.0).abs() < 1e-12);
        let f: Vec<f32> = img.iter().map(|v| *v as f32).collect();
        assert!((ssim_piq(&f, &f, 3, 32, 32) - 1.0).abs() < 1e-5);
        assert_eq!(reflect(-1, 5), 0);
        assert_eq!(reflect(5, 5), 4);
        assert_eq!(reflect(-2, 5), 1);
    }
}
