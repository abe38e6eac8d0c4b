//! Peak signal-to-noise ratio, per image, images in [0, 1] (data range 1):
//! PSNR = 10·log10(1/MSE), MSE over all channels and pixels.
//!
//! Two conventions, named because they differ in the last digits and at MSE = 0:
//! - [`psnr_skimage`]: `skimage.metrics.peak_signal_noise_ratio(ref, x, data_range=1)` on
//!   float64 arrays (the DPS evaluation script, on saved PNGs);
//! - [`psnr_piq`]: `piq.psnr(x, ref, data_range=1.0)` = −10·log10(MSE + 1e-8) computed in
//!   float32 (the DAPS evaluation, on [0, 1] tensors without rounding).

/// skimage's PSNR in float64 (∞ for identical images).
pub fn psnr_skimage(reference: &[f64], x: &[f64]) -> f64 {
    assert_eq!(reference.len(), x.len(), "PSNR of images of different sizes");
    let mse = reference.iter().zip(x).map(|(a, b)| (a - b) * (a - b)).sum::<f64>() / reference.len() as f64;
    10.0 * (1.0 / mse).log10()
}

/// piq's PSNR: −10·log10(MSE + 1e-8) in float32 arithmetic (finite for identical images).
pub fn psnr_piq(reference: &[f32], x: &[f32]) -> f32 {
    assert_eq!(reference.len(), x.len(), "PSNR of images of different sizes");
    // torch.mean over float32 sums pairwise; an f64 accumulator is closer to it than a plain
    // running f32 sum, and the result is rounded to f32 like piq's.
    let mse = (reference.iter().zip(x).map(|(a, b)| f64::from((a - b) * (a - b))).sum::<f64>() / reference.len() as f64) as f32;
    -10.0 * (mse + 1e-8f32).log10()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psnr_of_a_constant_offset() {
        // MSE = 0.01² → PSNR = 40 dB exactly.
        let a = vec![0.5; 300];
        let b = vec![0.51; 300];
        assert!((psnr_skimage(&a, &b) - 40.0).abs() < 1e-9);
        let (a32, b32): (Vec<f32>, Vec<f32>) = (a.iter().map(|v| *v as f32).collect(), b.iter().map(|v| *v as f32).collect());
        assert!((psnr_piq(&a32, &b32) - 40.0).abs() < 1e-3);
        assert!(psnr_skimage(&a, &a).is_infinite());
        assert!((psnr_piq(&a32, &a32) - 80.0).abs() < 1e-3, "piq's +1e-8 caps PSNR at 80 dB");
    }
}
