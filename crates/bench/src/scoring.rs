//! Metrics between two folders of images (`dipbench score`), like the pytorch-fid command line.
//! Per-image metrics (PSNR, SSIM, LPIPS) pair the files by name, and both folders must hold the
//! same names; distribution metrics (FID, KID) compare the two sets. Feature statistics of a folder are
//! cached beside it (`.dipbench-stats-<metric>-<hash>.safetensors`), keyed by the file names and
//! sizes, so a reference set is computed once.
//!
//! Protocol presets name every convention at once:
//! - `dps`: LPIPS-VGG (lpips package, inputs in [−1, 1]), PSNR/SSIM in the skimage convention on
//!   the saved 8-bit images, FID with the TF-FID Inception (pytorch-fid);
//! - `daps`: piq conventions (PSNR, SSIM, LPIPS with avg-pool VGG) on [0, 1] images, FID with the
//!   torchvision Inception; best-of-N per metric is applied by the sweep runner, not here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use dipbench_metrics::{Inception, InceptionVariant, Lpips, LpipsVariant};
use dipbench_nn::NnBackend;
use dipbench_nn::source::MemorySource;

use crate::registry::Metric;
use crate::weights;

/// An image in [0, 1], CHW, float32, with its name.
#[derive(Debug, Clone)]
pub struct Image01 {
    /// File name.
    pub name: String,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
    /// 3·h·w values.
    pub values: Vec<f32>,
}

/// Images of a folder (PNG/JPEG), sorted by file name.
pub fn read_folder(dir: &Path) -> Result<Vec<Image01>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read folder {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().and_then(|e| e.to_str()).is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg")))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("{}: no PNG or JPEG images", dir.display());
    }
    files
        .iter()
        .map(|p| {
            let img = image::open(p).with_context(|| format!("cannot decode image {}", p.display()))?.to_rgb8();
            let (w, h) = (img.width() as usize, img.height() as usize);
            let mut values = vec![0f32; 3 * h * w];
            for (x, y, px) in img.enumerate_pixels() {
                for c in 0..3 {
                    values[c * h * w + y as usize * w + x as usize] = f32::from(px[c]) / 255.0;
                }
            }
            Ok(Image01 { name: p.file_name().unwrap().to_string_lossy().into_owned(), h, w, values })
        })
        .collect()
}

/// Weight files of the metric networks, looked up in the checkpoint folder.
fn weight_file(name: &str) -> Result<PathBuf> {
    weights::locate(weights::known(name)?, &weights::checkpoint_dir(None))
}

/// Loads an LPIPS metric from torchvision backbone + lpips heads in the checkpoint folder.
pub fn load_lpips<B: NnBackend>(variant: LpipsVariant, device: &B::Device) -> Result<Lpips<B>> {
    let (backbone, heads) = match variant {
        LpipsVariant::Alex => ("alexnet", "lpips-alex-lin"),
        LpipsVariant::Vgg | LpipsVariant::PiqVgg => ("vgg16", "lpips-vgg-lin"),
    };
    let mut bb = MemorySource::open(&weight_file(backbone)?)?.retain_prefix("features.");
    let mut hd = MemorySource::open(&weight_file(heads)?)?;
    Ok(Lpips::load(variant, &mut bb, &mut hd, device)?)
}

/// An Inception network and the identity of its weight file (its sha256), which is part of the
/// feature-cache key.
pub struct LoadedInception<B: NnBackend> {
    /// The network.
    pub net: Inception<B>,
    /// `variant:sha256 of the weight file`.
    pub identity: String,
}

/// Loads an Inception variant from the checkpoint folder.
pub fn load_inception<B: NnBackend>(variant: InceptionVariant, device: &B::Device) -> Result<LoadedInception<B>> {
    let name = match variant {
        InceptionVariant::TfFid => "inception-fid",
        InceptionVariant::Torchvision => "inception-torchvision",
    };
    let path = weight_file(name)?;
    let mut src = MemorySource::open(&path)?;
    let net = Inception::load(variant, &mut src, device)?;
    Ok(LoadedInception { net, identity: format!("{variant:?}:{}", weights::sha256(&path)?) })
}

/// The shared feature cache: `$DIPBENCH_CACHE/features`, else `$XDG_CACHE_HOME/dipbench/features`,
/// else `$HOME/.cache/dipbench/features` (`None` without any of them).
pub fn feature_cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("DIPBENCH_CACHE") {
        return Some(PathBuf::from(d).join("features"));
    }
    let base = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from).or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("dipbench").join("features"))
}

fn batch<B: NnBackend>(imgs: &[&Image01], device: &B::Device) -> Tensor<B, 4> {
    let (h, w) = (imgs[0].h, imgs[0].w);
    let flat: Vec<f32> = imgs.iter().flat_map(|i| i.values.iter().copied()).collect();
    Tensor::<B, 1>::from_floats(flat.as_slice(), device).reshape([imgs.len(), 3, h, w])
}

/// pool3 features of a set (batches of 8), as f64 rows.
pub fn features<B: NnBackend>(net: &Inception<B>, imgs: &[Image01], device: &B::Device) -> Result<Vec<f64>> {
    let mut out = Vec::with_capacity(imgs.len() * 2048);
    for chunk in imgs.chunks(8) {
        let same = chunk.iter().all(|i| (i.h, i.w) == (chunk[0].h, chunk[0].w));
        let parts: Vec<&Image01> = chunk.iter().collect();
        let groups: Vec<Vec<&Image01>> = if same { vec![parts] } else { parts.into_iter().map(|p| vec![p]).collect() };
        for g in groups {
            let f = net.features(batch::<B>(&g, device)).into_data().convert::<f32>();
            out.extend(f.to_vec::<f32>().map_err(|e| anyhow::anyhow!("{e:?}"))?.into_iter().map(f64::from));
        }
    }
    Ok(out)
}

/// pool3 features of the images of `dir`, cached in the shared feature cache
/// ([`feature_cache_dir`]) as `<label>-<variant>-<key>.safetensors`, where the key hashes the
/// network's weights (sha256) and every image's name and content (sha256): a set of images — a
/// registered dataset's ground truth under one protocol, say — has its features computed once
/// per network, whichever folder or experiment it is read from, and a changed file changes the
/// key. `label` only names the file for people (e.g. `ffhq256-1k-none-256`).
pub fn cached_features<B: NnBackend>(inception: &LoadedInception<B>, dir: &Path, label: &str, imgs: &[Image01], device: &B::Device) -> Result<Vec<f64>> {
    let variant = inception.net.variant();
    let mut parts = vec![inception.identity.clone()];
    for i in imgs {
        parts.push(format!("{}:{}", i.name, weights::sha256(&dir.join(&i.name))?));
    }
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    let key = dipbench_operators::derive_seed(&refs);
    let safe_label: String = label.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    let cache = feature_cache_dir().map(|d| {
        d.join(format!(
            "{safe_label}-{}-{key:016x}.safetensors",
            match variant {
                InceptionVariant::TfFid => "tf-fid",
                InceptionVariant::Torchvision => "torchvision",
            }
        ))
    });
    if let Some(cache) = cache.as_ref().filter(|c| c.is_file()) {
        let mut src = MemorySource::from_safetensors(cache)?;
        let shape = vec![imgs.len(), 2048];
        if src.manifest() == vec![("features".to_string(), shape.clone())] {
            let v = dipbench_nn::source::ParamSource::take_values(&mut src, "features", &shape)?;
            tracing::info!(cache = %cache.display(), "feature cache hit");
            return Ok(v.into_iter().map(f64::from).collect());
        }
    }
    let f = features(&inception.net, imgs, device)?;
    let f32s: Vec<f32> = f.iter().map(|v| *v as f32).collect();
    // A cache that cannot be written (read-only home, no HOME) is not an error.
    if let Some(cache) = &cache {
        let written = std::fs::create_dir_all(cache.parent().unwrap())
            .map_err(anyhow::Error::from)
            .and_then(|()| crate::measure::write_tensors(cache, vec![("features", vec![imgs.len(), 2048], &f32s)]));
        if let Err(e) = written {
            tracing::warn!("feature cache not written: {e:#}");
        }
    }
    Ok(f32s.into_iter().map(f64::from).collect())
}

/// The result of `dipbench score`.
#[derive(Debug, Clone, Default)]
pub struct ScoreReport {
    /// Per metric: per-image values (paired by file name), in file order.
    pub per_image: BTreeMap<String, Vec<(String, f64)>>,
    /// Per metric: the summary (mean for per-image metrics, the distance for FID/KID).
    pub summary: BTreeMap<String, f64>,
}

/// Scores folder `a` (e.g. reconstructions) against folder `b` (references).
pub fn score<B: NnBackend>(a: &Path, b: &Path, metrics: &[Metric], features_out: Option<&Path>, device: &B::Device) -> Result<ScoreReport> {
    let (xa, xb) = (read_folder(a)?, read_folder(b)?);
    let mut report = ScoreReport::default();
    let per_image: Vec<Metric> = metrics.iter().copied().filter(|m| m.per_image()).collect();
    if !per_image.is_empty() {
        let by_name: BTreeMap<&str, &Image01> = xb.iter().map(|i| (i.name.as_str(), i)).collect();
        let names_a: std::collections::BTreeSet<&str> = xa.iter().map(|i| i.name.as_str()).collect();
        let only_a: Vec<&str> = names_a.iter().copied().filter(|n| !by_name.contains_key(n)).collect();
        let only_b: Vec<&str> = by_name.keys().copied().filter(|n| !names_a.contains(n)).collect();
        if !only_a.is_empty() || !only_b.is_empty() {
            let list = |v: &[&str]| {
                if v.is_empty() {
                    "none".to_string()
                } else {
                    v.iter().take(10).copied().collect::<Vec<_>>().join(", ") + if v.len() > 10 { ", …" } else { "" }
                }
            };
            bail!(
                "per-image metrics pair images by file name, and the folders differ: only in {}: {} ({}); only in {}: {} ({})",
                a.display(),
                list(&only_a),
                only_a.len(),
                b.display(),
                list(&only_b),
                only_b.len()
            );
        }
        let paired: Vec<(&Image01, &Image01)> = xa.iter().filter_map(|i| by_name.get(i.name.as_str()).map(|r| (i, *r))).collect();
        for (x, r) in &paired {
            if (x.h, x.w) != (r.h, r.w) {
                bail!("{} is {}×{} in {} but {}×{} in {}", x.name, x.w, x.h, a.display(), r.w, r.h, b.display());
            }
        }
        for m in &per_image {
            if let Metric::Lpips(v) = m {
                let (x, _) = paired[0];
                if x.h.min(x.w) < v.min_side() {
                    let side = v.min_side();
                    bail!("{} needs images of at least {side}×{side} pixels ({} is {}×{})", v.name(), x.name, x.w, x.h);
                }
            }
            let mut rows = vec![];
            let lpips = match m {
                Metric::Lpips(v) => Some(load_lpips::<B>(*v, device)?),
                _ => None,
            };
            for (x, r) in &paired {
                let v = match m.pixel_score(&r.values, &x.values, x.h, x.w) {
                    Some(v) => v,
                    None => {
                        let lp = lpips.as_ref().expect("LPIPS is the per-image metric without a pixel score");
                        f64::from(lp.distance(batch::<B>(&[x], device), batch::<B>(&[r], device)).into_scalar().elem::<f32>())
                    }
                };
                rows.push((x.name.clone(), v));
            }
            let mean = rows.iter().map(|(_, v)| v).sum::<f64>() / rows.len() as f64;
            report.summary.insert(m.name().to_string(), mean);
            report.per_image.insert(m.name().to_string(), rows);
        }
    }
    for m in metrics.iter().filter(|m| !m.per_image()) {
        let net = load_inception::<B>(m.inception_variant(), device)?;
        let (fa, fb) = (cached_features(&net, a, "folder", &xa, device)?, cached_features(&net, b, "folder", &xb, device)?);
        if let Some(path) = features_out {
            let sh_a = vec![xa.len(), 2048];
            let sh_b = vec![xb.len(), 2048];
            let a32: Vec<f32> = fa.iter().map(|v| *v as f32).collect();
            let b32: Vec<f32> = fb.iter().map(|v| *v as f32).collect();
            crate::measure::write_tensors(path, vec![("features_a", sh_a, &a32), ("features_b", sh_b, &b32)])?;
        }
        report.summary.insert(m.name().to_string(), m.from_features(&fa, &fb));
    }
    Ok(report)
}
