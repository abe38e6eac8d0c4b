//! # dipbench-metrics — metrics, each named and matched to its reference
//!
//! What this crate is for: the numbers in the tables. Every metric variant has its own name,
//! because the field computes "the same" metric in incompatible ways.
//!
//! - [`sliced`]: sliced Wasserstein distances between two sample sets (the Gaussian-mixture
//!   benchmark): the paper's mean sliced W1 and the max-sliced W2 variant.
//! - [`psnr`], [`ssim`]: per-image fidelity in the skimage and piq conventions.
//! - [`frechet`]: feature statistics, the Fréchet distance (FID) and KID, in float64.
//! - [`lpips`]: LPIPS with AlexNet / VGG16 backbones (lpips package) and piq's avg-pool VGG.
//! - [`inception`]: Inception-v3 pool3 features, TF-FID (pytorch-fid) and torchvision variants.
//!
//! What it is not for: producing samples or reading images.

pub mod frechet;
pub mod inception;
pub mod lpips;
pub mod psnr;
pub mod sliced;
pub mod ssim;

pub use frechet::{FeatureStats, FrechetTerms, frechet_distance, kid};
pub use inception::{Inception, InceptionVariant};
pub use lpips::{Lpips, LpipsVariant};
pub use psnr::{psnr_piq, psnr_skimage};
pub use sliced::{SlicedDistances, SlicedMetric, SlicedReference, max_sliced_w2, sliced_w1, wasserstein_1d};
pub use ssim::{ssim_piq, ssim_skimage};
