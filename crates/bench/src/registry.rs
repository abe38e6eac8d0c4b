//! The closed sets of names a user writes (metrics, tasks, variants, UNet configurations,
//! samplers), each the one place where a name becomes a value. Experiment validation and the
//! command line's help text both read these lists, so neither can drift from the code.

use std::fmt;
use std::str::FromStr;

use anyhow::{Result, bail};
use dipbench_metrics::{FeatureStats, InceptionVariant, LpipsVariant, frechet_distance, kid, psnr_piq, psnr_skimage, ssim_piq, ssim_skimage};

/// A metric between images (per image) or between image sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    /// skimage PSNR (float64) on 8-bit images (the DPS script).
    Psnr,
    /// piq PSNR (float32, +1e-8) on [0, 1] tensors (DAPS).
    PsnrPiq,
    /// skimage SSIM on 8-bit images.
    Ssim,
    /// piq SSIM.
    SsimPiq,
    /// LPIPS of a variant.
    Lpips(LpipsVariant),
    /// FID with an Inception variant.
    Fid(InceptionVariant),
    /// KID (TF-FID Inception features).
    Kid,
}

/// Every metric, its name and what it is.
pub const METRICS: &[(Metric, &str, &str)] = &[
    (Metric::Psnr, "psnr", "skimage PSNR on the 8-bit images (DPS)"),
    (Metric::PsnrPiq, "psnr-piq", "piq PSNR on [0, 1] tensors (DAPS)"),
    (Metric::Ssim, "ssim", "skimage SSIM on the 8-bit images"),
    (Metric::SsimPiq, "ssim-piq", "piq SSIM (DAPS)"),
    (Metric::Lpips(LpipsVariant::Alex), "lpips-alex", "LPIPS, AlexNet (lpips package)"),
    (Metric::Lpips(LpipsVariant::Vgg), "lpips-vgg", "LPIPS, VGG16 (lpips package; DPS)"),
    (Metric::Lpips(LpipsVariant::PiqVgg), "lpips-vgg-piq", "LPIPS, VGG16 with average pooling (piq; DAPS)"),
    (Metric::Fid(InceptionVariant::TfFid), "fid", "FID, TF-FID Inception-v3 (pytorch-fid)"),
    (Metric::Fid(InceptionVariant::Torchvision), "fid-torchvision", "FID, torchvision Inception-v3 (DAPS)"),
    (Metric::Kid, "kid", "KID, TF-FID Inception features"),
];

/// The metric names, comma-separated (for messages).
pub fn metric_names() -> String {
    METRICS.iter().map(|(_, n, _)| *n).collect::<Vec<_>>().join(", ")
}

impl Metric {
    /// The metrics of a protocol preset (`dps`, `daps`).
    pub fn preset(name: &str) -> Result<Vec<Self>> {
        Ok(match name {
            "dps" => vec![Self::Psnr, Self::Ssim, Self::Lpips(LpipsVariant::Vgg), Self::Fid(InceptionVariant::TfFid)],
            "daps" => vec![Self::PsnrPiq, Self::SsimPiq, Self::Lpips(LpipsVariant::PiqVgg), Self::Fid(InceptionVariant::Torchvision)],
            other => bail!("unknown protocol `{other}` (known: dps, daps)"),
        })
    }

    /// The metric's name.
    pub fn name(self) -> &'static str {
        METRICS.iter().find(|(m, _, _)| *m == self).map(|(_, n, _)| *n).expect("every metric is listed")
    }

    /// The Inception network a set metric uses (KID: the TF-FID one).
    pub fn inception_variant(self) -> InceptionVariant {
        match self {
            Self::Fid(v) => v,
            _ => InceptionVariant::TfFid,
        }
    }

    /// A set metric (FID, KID) from the pool3 features of two sets (rows of 2048).
    pub fn from_features(self, fa: &[f64], fb: &[f64]) -> f64 {
        match self {
            Self::Kid => kid(fa, fb, 2048),
            _ => frechet_distance(&FeatureStats::from_rows(fa, 2048), &FeatureStats::from_rows(fb, 2048)).value,
        }
    }

    /// A pixel metric of `recon` against `gt`, both `[3, h, w]` in [0, 1]; `None` for the metrics
    /// that need a network (LPIPS) or a set (FID, KID). The skimage conventions read the 8-bit
    /// images the DPS script saves, as `img_as_float` of a `uint8` array (k/255 in float64); the
    /// piq conventions read the float32 values as given. The image benchmark and `score` both
    /// call this, so a new pixel metric is added here and in `METRICS` only.
    pub fn pixel_score(self, gt: &[f32], recon: &[f32], h: usize, w: usize) -> Option<f64> {
        let to8 = |v: &[f32]| -> Vec<f64> { v.iter().map(|x| (x.clamp(0.0, 1.0) * 255.0).round() as f64 / 255.0).collect() };
        Some(match self {
            Self::Psnr => psnr_skimage(&to8(gt), &to8(recon)),
            Self::PsnrPiq => f64::from(psnr_piq(gt, recon)),
            Self::Ssim => ssim_skimage(&to8(gt), &to8(recon), 3, h, w),
            Self::SsimPiq => f64::from(ssim_piq(gt, recon, 3, h, w)),
            Self::Lpips(_) | Self::Fid(_) | Self::Kid => return None,
        })
    }

    /// Whether the metric compares image pairs (else image sets).
    pub fn per_image(self) -> bool {
        !matches!(self, Self::Fid(_) | Self::Kid)
    }

    /// Whether a larger value is better (PSNR, SSIM).
    pub fn higher_is_better(self) -> bool {
        matches!(self, Self::Psnr | Self::PsnrPiq | Self::Ssim | Self::SsimPiq)
    }
}

impl FromStr for Metric {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        match METRICS.iter().find(|(_, n, _)| *n == s) {
            Some((m, _, _)) => Ok(*m),
            None => bail!("unknown metric `{s}` (known: {})", metric_names()),
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl serde::Serialize for Metric {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for Metric {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The UNet configuration names (`UnetConfig::by_name`).
pub fn unet_configs() -> &'static [&'static str] {
    dipbench_models::unet::config::NAMES
}

/// The image task names (`TaskName`).
pub fn tasks() -> String {
    dipbench_operators::image::TaskName::ALL.iter().map(|t| t.name()).collect::<Vec<_>>().join(", ")
}

/// The sampler names.
pub fn samplers() -> String {
    dipbench_samplers::SAMPLER_KINDS.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_name_parses_back_to_its_metric() {
        for (m, name, _) in METRICS {
            assert_eq!(name.parse::<Metric>().unwrap(), *m);
            assert_eq!(m.name(), *name);
        }
        assert!("psnrr".parse::<Metric>().unwrap_err().to_string().contains("lpips-vgg-piq"));
    }
}
