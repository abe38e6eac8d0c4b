//! The dataset registry (`datasets.toml`, embedded in the binary): what each benchmark's image
//! set is, where it comes from, and how a local folder is checked and preprocessed
//! (docs/protocols.md §4). Every problem with a folder is an error naming the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// The registry file, as shipped.
pub const REGISTRY: &str = include_str!("../../../datasets.toml");

/// One `[name]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetEntry {
    /// `generated` (no files) or `images`.
    pub kind: String,
    /// What it is.
    pub description: String,
    /// Where to get it.
    #[serde(default)]
    pub source: String,
    /// Paper reference (generated sets).
    #[serde(default)]
    pub reference: String,
    /// File names: a `%0Nd` pattern over 0..count, or `sorted` (the folder's images in name order).
    #[serde(default)]
    pub files: Option<String>,
    /// Number of images of the protocol.
    #[serde(default)]
    pub count: Option<usize>,
    /// `none` or `resize-crop`.
    #[serde(default)]
    pub preprocess: Option<String>,
    /// Images with a shorter side are skipped (before preprocessing).
    #[serde(default)]
    pub min_side: Option<usize>,
    /// Optional file (relative to the data folder) of `<sha256>  <file>` lines.
    #[serde(default)]
    pub sha256: Option<String>,
}

impl DatasetEntry {
    /// A folder that is not in the registry: its images in name order, already at the
    /// benchmark's size.
    pub fn plain_folder(folder: &Path) -> Self {
        Self {
            kind: "images".into(),
            description: format!("images in {}", folder.display()),
            source: "your folder".into(),
            reference: String::new(),
            files: Some("sorted".into()),
            count: None,
            preprocess: Some("none".into()),
            min_side: None,
            sha256: None,
        }
    }
}

/// The parsed registry.
pub fn registry() -> Result<BTreeMap<String, DatasetEntry>> {
    toml::from_str(REGISTRY).context("the embedded datasets.toml is invalid")
}

/// Where the files of dataset `name` are: `override_dir`, else `$DIPBENCH_DATA/<name>`, else
/// `data/<name>`.
pub fn folder_for(name: &str, override_dir: Option<&Path>) -> PathBuf {
    override_dir
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("DIPBENCH_DATA").map(|d| PathBuf::from(d).join(name)))
        .unwrap_or_else(|| Path::new("data").join(name))
}

/// Expands a `%0Nd` pattern (e.g. `%05d.png`) for index `i`.
pub fn expand(pattern: &str, i: usize) -> Result<String> {
    let start = pattern.find('%').with_context(|| format!("file pattern `{pattern}` has no %0Nd"))?;
    let end = start + pattern[start..].find('d').with_context(|| format!("file pattern `{pattern}` has no %0Nd"))?;
    let width: usize = pattern[start + 1..end].trim_start_matches('0').parse().unwrap_or(0);
    Ok(format!("{}{:0width$}{}", &pattern[..start], i, &pattern[end + 1..]))
}

fn is_image(p: &Path) -> bool {
    !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))
        && p.extension().and_then(|e| e.to_str()).is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
}

/// The first `n` files of `entry` in `folder`, checked to exist (all missing ones are named).
pub fn files(name: &str, entry: &DatasetEntry, folder: &Path, n: usize) -> Result<Vec<PathBuf>> {
    if !folder.is_dir() {
        bail!("dataset `{name}`: folder {} does not exist. {}\nGet it from: {}", folder.display(), entry.description, entry.source);
    }
    if let Some(count) = entry.count
        && n > count
    {
        bail!("dataset `{name}` has {count} images; the experiment asks for {n} (key `image.images`)");
    }
    match entry.files.as_deref() {
        Some("sorted") | None => {
            let mut all: Vec<PathBuf> = std::fs::read_dir(folder)
                .with_context(|| format!("cannot read {}", folder.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| is_image(p))
                .collect();
            all.sort();
            let mut out = vec![];
            for p in all {
                if out.len() == n {
                    break;
                }
                if let Some(min) = entry.min_side {
                    let (w, h) = image::image_dimensions(&p).with_context(|| format!("dataset `{name}`: cannot read image {}", p.display()))?;
                    if (w.min(h) as usize) < min {
                        continue;
                    }
                }
                out.push(p);
            }
            if out.len() < n {
                bail!("dataset `{name}`: {} has {} usable images, the experiment needs {n}", folder.display(), out.len());
            }
            Ok(out)
        }
        Some(pattern) => {
            let expected: Vec<PathBuf> = (0..n).map(|i| expand(pattern, i).map(|f| folder.join(f))).collect::<Result<_>>()?;
            let missing: Vec<String> = expected.iter().filter(|p| !p.is_file()).map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
            if !missing.is_empty() {
                let shown = missing.iter().take(10).cloned().collect::<Vec<_>>().join(", ");
                bail!(
                    "dataset `{name}` in {}: {} of {n} expected files are missing: {shown}{}",
                    folder.display(),
                    missing.len(),
                    if missing.len() > 10 { ", …" } else { "" }
                );
            }
            Ok(expected)
        }
    }
}

/// Reads `path` as RGB in [−1, 1] CHW at `side`², preprocessing as `preprocess` says.
pub fn read_image(path: &Path, preprocess: &str, side: usize) -> Result<Vec<f32>> {
    let img = image::open(path).with_context(|| format!("cannot decode image {} (truncated or not an image?)", path.display()))?.to_rgb8();
    let img = match preprocess {
        "none" => {
            if (img.width() as usize, img.height() as usize) != (side, side) {
                bail!("{}: {}×{} pixels, the benchmark needs {side}×{side}", path.display(), img.width(), img.height());
            }
            img
        }
        "resize-crop" => {
            // The DAPS loader: ToTensor, torchvision Resize(side, antialias) on the float tensor,
            // CenterCrop(side), ×2 − 1; no rounding to 8 bits after the resize.
            let f = crate::resample::resize_crop_f32(&img, side);
            let n = side * side;
            let mut out = vec![0f32; 3 * n];
            for (i, px) in f.data.chunks_exact(3).enumerate() {
                for c in 0..3 {
                    out[c * n + i] = (px[c] * 2.0 - 1.0) as f32;
                }
            }
            return Ok(out);
        }
        other => bail!("unknown preprocessing `{other}` (known: none, resize-crop)"),
    };
    let n = side * side;
    let mut out = vec![0f32; 3 * n];
    for (x, y, px) in img.enumerate_pixels() {
        for c in 0..3 {
            out[c * n + y as usize * side + x as usize] = f32::from(px[c]) / 255.0 * 2.0 - 1.0;
        }
    }
    Ok(out)
}

/// Checks the files against the entry's sha256 list, if it has one.
pub fn verify_digests(name: &str, entry: &DatasetEntry, folder: &Path, files: &[PathBuf]) -> Result<()> {
    let Some(list) = &entry.sha256 else { return Ok(()) };
    let list_path = folder.join(list);
    let text = std::fs::read_to_string(&list_path).with_context(|| {
        format!(
            "dataset `{name}`: cannot read the digest list {} (`dipbench data prepare {name} --from <your images> --dir {}` writes it)",
            list_path.display(),
            folder.display()
        )
    })?;
    let digests: BTreeMap<&str, &str> = text.lines().filter_map(|l| l.split_once(char::is_whitespace)).map(|(d, f)| (f.trim(), d)).collect();
    for f in files {
        let file = f.file_name().unwrap().to_string_lossy();
        let Some(want) = digests.get(file.as_ref()) else { bail!("dataset `{name}`: {} is not in {}", f.display(), list_path.display()) };
        let got = crate::weights::sha256(f)?;
        if &got != want {
            bail!("dataset `{name}`: {} has sha256 {got}, the list says {want}", f.display());
        }
    }
    Ok(())
}

/// Loads the first `n` images of registered dataset `name` from its folder.
pub fn load(name: &str, entry: &DatasetEntry, override_dir: Option<&Path>, n: usize, side: usize) -> Result<Vec<(String, Vec<f32>)>> {
    let folder = folder_for(name, override_dir);
    let files = files(name, entry, &folder, n)?;
    verify_digests(name, entry, &folder, &files)?;
    let preprocess = entry.preprocess.as_deref().unwrap_or("none");
    files
        .iter()
        .map(|p| {
            let stem = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            Ok((stem, read_image(p, preprocess, side)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_parses_and_patterns_expand() {
        let r = registry().unwrap();
        for name in ["gmm", "synthetic", "ffhq256-1k", "imagenet256-1k", "ffhq256-100", "imagenet256-100"] {
            assert!(r.contains_key(name), "datasets.toml lacks {name}");
        }
        assert_eq!(r["ffhq256-1k"].count, Some(1000));
        assert_eq!(expand("%05d.png", 7).unwrap(), "00007.png");
        assert_eq!(expand("img%03d.jpg", 123).unwrap(), "img123.jpg");
    }
}
