//! The checkpoints dipbench knows: where the papers publish them, what they contain, where
//! dipbench looks for them, and their verification (keys and shapes against the configuration,
//! then a sha256 recorded beside the file on the first verified load and checked afterwards).
//!
//! The reference repositories publish neither sizes nor hashes (docs/protocols.md §2.3), so
//! a checkpoint is verified by its content (every key and shape of the configuration, nothing
//! else) and its sha256 is pinned locally from then on.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use dipbench_models::unet::{AdmUnet, UnetConfig};
use dipbench_nn::source::ShapeSource;

/// A known checkpoint.
#[derive(Debug, Clone)]
pub struct KnownWeights {
    /// dipbench's name for it.
    pub name: &'static str,
    /// The file name dipbench looks for.
    pub file: &'static str,
    /// Other names the same file is published under.
    pub aliases: &'static [&'static str],
    /// The network configuration.
    pub config: &'static str,
    /// What it is.
    pub description: &'static str,
    /// Where the papers publish it.
    pub sources: &'static [&'static str],
    /// Number of parameters (float32 in the published files).
    pub params: u64,
    /// Direct download addresses, tried in order by `dipbench weights fetch`.
    pub downloads: &'static [Download],
    /// The sha256 prefix in the published file name (torch.hub's `name-<hash8>.pth`), where
    /// there is one; the other publishers give no hash (the content is checked instead).
    pub sha256_prefix: Option<&'static str>,
}

/// A direct download address of a checkpoint.
#[derive(Debug, Clone, Copy)]
pub enum Download {
    /// An HTTP(S) address.
    Url(&'static str),
    /// A Google Drive file id.
    Drive(&'static str),
}

impl Download {
    /// As an origin of the downloader.
    pub fn origin(self) -> crate::download::Origin {
        match self {
            Download::Url(u) => crate::download::Origin::Url(u.to_string()),
            Download::Drive(id) => crate::download::Origin::Drive(id.to_string()),
        }
    }
}

/// The registry.
pub const KNOWN: &[KnownWeights] = &[
    KnownWeights {
        name: "ffhq256",
        file: "ffhq_10m.pt",
        aliases: &["ffhq256.pt"],
        config: "ffhq256",
        description: "FFHQ 256 ADM (DPS/MCG/DAPS prior; trained without the first 1k images)",
        sources: &[
            "DPS: Google Drive folder 1jElnRoFv7b31fG0v6pTSQkelbSX3xGZh (ffhq_10m.pt)",
            "DAPS download.sh: gdown 1BGwhRWUoguF-D8wlZ65tf227gp3cDUDh (saved as ffhq256.pt)",
            "MCG install.sh: https://www.dropbox.com/s/4r8r6o2n1pumzmg/ffhq_10m.pt",
        ],
        params: 93_563_910,
        downloads: &[Download::Drive("1BGwhRWUoguF-D8wlZ65tf227gp3cDUDh"), Download::Url("https://www.dropbox.com/s/4r8r6o2n1pumzmg/ffhq_10m.pt?dl=1")],
        sha256_prefix: None,
    },
    KnownWeights {
        name: "imagenet256",
        file: "256x256_diffusion_uncond.pt",
        aliases: &["imagenet256.pt", "imagenet256ddpm.pt"],
        config: "imagenet256",
        description: "ImageNet 256 unconditional ADM (Dhariwal & Nichol 2021)",
        sources: &[
            "OpenAI: https://openaipublic.blob.core.windows.net/diffusion/jul-2021/256x256_diffusion_uncond.pt",
            "DPS: Google Drive folder 1jElnRoFv7b31fG0v6pTSQkelbSX3xGZh (imagenet256.pt)",
            "DAPS download.sh: gdown 1HAy7P19PckQLczVNXmVF-e_CRxq098uW (saved as imagenet256ddpm.pt)",
            "MCG install.sh: https://www.dropbox.com/s/rtit2qsb353262t/imagenet256.pt",
        ],
        params: 552_814_086,
        downloads: &[
            Download::Url("https://openaipublic.blob.core.windows.net/diffusion/jul-2021/256x256_diffusion_uncond.pt"),
            Download::Drive("1HAy7P19PckQLczVNXmVF-e_CRxq098uW"),
            Download::Url("https://www.dropbox.com/s/rtit2qsb353262t/imagenet256.pt?dl=1"),
        ],
        sha256_prefix: None,
    },
    KnownWeights {
        name: "bkse",
        file: "GOPRO_wVAE.pth",
        aliases: &[],
        config: "bkse",
        description: "bkse KernelWizard (GOPRO, with VAE): the nonlinear-deblur forward model of DPS and DAPS",
        sources: &["BKSE README model zoo / DAPS download.sh: Google Drive id 1vRoDpIsrTRYZKsOMPNbPcMtFDpCT6Foy (GOPRO_wVAE.pth)"],
        params: 115_265_475,
        downloads: &[Download::Drive("1vRoDpIsrTRYZKsOMPNbPcMtFDpCT6Foy")],
        sha256_prefix: None,
    },
    KnownWeights {
        name: "alexnet",
        file: "alexnet-owt-7be5be79.pth",
        aliases: &[],
        config: "alexnet",
        description: "torchvision AlexNet (ImageNet): the lpips-alex backbone (features.* only)",
        sources: &["torchvision: https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"],
        params: 61_100_840,
        downloads: &[Download::Url("https://download.pytorch.org/models/alexnet-owt-7be5be79.pth")],
        sha256_prefix: Some("7be5be79"),
    },
    KnownWeights {
        name: "vgg16",
        file: "vgg16-397923af.pth",
        aliases: &[],
        config: "vgg16",
        description: "torchvision VGG16 (ImageNet): the lpips-vgg and piq LPIPS backbone (features.* only)",
        sources: &["torchvision: https://download.pytorch.org/models/vgg16-397923af.pth"],
        params: 138_357_544,
        downloads: &[Download::Url("https://download.pytorch.org/models/vgg16-397923af.pth")],
        sha256_prefix: Some("397923af"),
    },
    KnownWeights {
        name: "lpips-alex-lin",
        file: "alex.pth",
        aliases: &[],
        config: "lpips-heads-alex",
        description: "lpips v0.1 linear heads for AlexNet (lin0…lin4)",
        sources: &["lpips pip package: lpips/weights/v0.1/alex.pth (github.com/richzhang/PerceptualSimilarity)"],
        params: 1_152,
        downloads: &[Download::Url("https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/alex.pth")],
        sha256_prefix: None,
    },
    KnownWeights {
        name: "lpips-vgg-lin",
        file: "vgg.pth",
        aliases: &[],
        config: "lpips-heads-vgg",
        description: "lpips v0.1 linear heads for VGG16 (lin0…lin4); also used for piq's LPIPS",
        sources: &["lpips pip package: lpips/weights/v0.1/vgg.pth (github.com/richzhang/PerceptualSimilarity)"],
        params: 1_472,
        downloads: &[Download::Url("https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/vgg.pth")],
        sha256_prefix: None,
    },
    KnownWeights {
        name: "inception-fid",
        file: "pt_inception-2015-12-05-6726825d.pth",
        aliases: &[],
        config: "inception-fid",
        description: "TF-FID Inception-v3 as ported by pytorch-fid (the FID network of most papers)",
        sources: &["pytorch-fid: https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth"],
        params: 23_885_392,
        downloads: &[Download::Url("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth")],
        sha256_prefix: Some("6726825d"),
    },
    KnownWeights {
        name: "inception-torchvision",
        file: "inception_v3_google-0cc3c7bd.pth",
        aliases: &[],
        config: "inception-torchvision",
        description: "torchvision Inception-v3 (ImageNet), the FID network of DAPS's evaluate_fid.py",
        sources: &["torchvision: https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth"],
        params: 27_161_264,
        downloads: &[Download::Url("https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth")],
        sha256_prefix: Some("0cc3c7bd"),
    },
];

/// Looks a checkpoint up by name.
pub fn known(name: &str) -> Result<&'static KnownWeights> {
    KNOWN
        .iter()
        .find(|w| w.name == name)
        .with_context(|| format!("unknown checkpoint `{name}` (known: {})", KNOWN.iter().map(|w| w.name).collect::<Vec<_>>().join(", ")))
}

/// The folder checkpoints are looked up in: `--dir`, else `$DIPBENCH_CHECKPOINTS`, else
/// `checkpoints/`.
pub fn checkpoint_dir(dir: Option<&Path>) -> PathBuf {
    dir.map(Path::to_path_buf).or_else(|| std::env::var_os("DIPBENCH_CHECKPOINTS").map(PathBuf::from)).unwrap_or_else(|| PathBuf::from("checkpoints"))
}

/// Where `w` is in `dir` (its file name or an alias), or an error saying where to get it and
/// where to put it.
pub fn locate(w: &KnownWeights, dir: &Path) -> Result<PathBuf> {
    for f in std::iter::once(&w.file).chain(w.aliases) {
        let p = dir.join(f);
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!(
        "checkpoint `{}` not found: `dipbench weights fetch {} --dir {}` downloads it, or put {}{} in {} \
         (or point --dir / DIPBENCH_CHECKPOINTS at its folder).\n\
         Download it from any of:\n  {}",
        w.name,
        w.name,
        dir.display(),
        w.file,
        if w.aliases.is_empty() { String::new() } else { format!(" (or {})", w.aliases.join(", ")) },
        dir.display(),
        w.sources.join("\n  ")
    )
}

/// A checkpoint named in an experiment file: a known name (`ffhq`, `imagenet`, … as
/// `dipbench weights` lists them) is looked up in the checkpoint folder; anything else is a
/// path, which must exist.
pub fn resolve_checkpoint(spec: &str) -> Result<PathBuf> {
    if let Some(w) = KNOWN.iter().find(|w| w.name == spec) {
        return locate(w, &checkpoint_dir(None));
    }
    let p = PathBuf::from(spec);
    if !p.is_file() {
        bail!("checkpoint `{spec}` is neither a known name ({}) nor an existing file", KNOWN.iter().map(|w| w.name).collect::<Vec<_>>().join(", "));
    }
    Ok(p)
}

pub use crate::digest::sha256;

/// The sidecar file holding the pinned sha256 (`sha256sum` format).
pub fn sidecar(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".sha256");
    PathBuf::from(s)
}

/// Outcome of a verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// Keys and shapes match and the hash equals the pinned one.
    Pinned(String),
    /// Keys and shapes match; the hash was not pinned before and now is.
    NewlyPinned(String),
}

/// Verifies `path` as a checkpoint of network `config` (a UNet config name, or `bkse`): every
/// key and shape (read from the file's header, without loading values), then the sha256
/// against the sidecar, which is written on the first successful verification.
pub fn verify(path: &Path, config: &str) -> Result<Verified> {
    check_content(path, config)?;
    let hash = sha256(path)?;
    let side = sidecar(path);
    if side.is_file() {
        let pinned = std::fs::read_to_string(&side).with_context(|| format!("cannot read {}", side.display()))?;
        let pinned = pinned.split_whitespace().next().unwrap_or_default().to_string();
        if pinned != hash {
            bail!("{} changed since it was verified: sha256 {hash}, pinned {pinned} in {}", path.display(), side.display());
        }
        return Ok(Verified::Pinned(hash));
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    std::fs::write(&side, format!("{hash}  {name}\n")).with_context(|| format!("cannot write {}", side.display()))?;
    Ok(Verified::NewlyPinned(hash))
}

/// Checks that `path` holds exactly the keys and shapes of network `config` (UNet configs and
/// `bkse` from the header alone; the metric networks by loading them on the CPU).
pub fn check_content(path: &Path, config: &str) -> Result<()> {
    use dipbench_metrics::{Inception, InceptionVariant, Lpips, LpipsVariant};
    type F = burn::backend::Flex;
    let dev = Default::default();
    let shapes = || -> Result<ShapeSource> { Ok(ShapeSource::new(path.display().to_string(), pytorch_manifest(path)?)) };
    match config {
        "bkse" => dipbench_operators::image::bkse::KernelWizard::<F>::check_keys(&mut shapes()?, &dev)?,
        "alexnet" | "vgg16" => {
            let v = if config == "alexnet" { LpipsVariant::Alex } else { LpipsVariant::Vgg };
            dipbench_metrics::lpips::Backbone::<F>::load(v, &mut open_checkpoint(path)?.retain_prefix("features."), &dev)?;
        }
        "lpips-heads-alex" | "lpips-heads-vgg" => {
            let (v, bb) = if config == "lpips-heads-alex" { (LpipsVariant::Alex, "alexnet") } else { (LpipsVariant::Vgg, "vgg16") };
            // Heads are checked against a golden-fill backbone of the right shape.
            let net = dipbench_metrics::lpips::backbone_manifest(bb);
            Lpips::<F>::load(v, &mut dipbench_nn::source::GoldenFill::new(net), &mut open_checkpoint(path)?, &dev)?;
        }
        "inception-fid" => {
            Inception::<F>::load(InceptionVariant::TfFid, &mut open_checkpoint(path)?, &dev)?;
        }
        "inception-torchvision" => {
            Inception::<F>::load(InceptionVariant::Torchvision, &mut open_checkpoint(path)?, &dev)?;
        }
        unet => AdmUnet::<F>::check_keys(&UnetConfig::by_name(unet)?, &mut shapes()?, &dev)?,
    }
    Ok(())
}

/// Keys and shapes of a checkpoint (PyTorch `.pt` or safetensors), read without the values.
pub fn pytorch_manifest(path: &Path) -> Result<Vec<(String, Vec<usize>)>> {
    if !path.is_file() {
        bail!("cannot read {}: no such file", path.display());
    }
    let mut magic = [0u8; 2];
    let is_zip = std::fs::File::open(path).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic)).is_ok() && &magic == b"PK";
    if !is_zip {
        return Ok(dipbench_nn::source::MemorySource::open(path)?.manifest());
    }
    dipbench_nn::torch_records::check_zip_checkpoint(path)?;
    let reader = burn_store::pytorch::PytorchReader::new(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: not a readable PyTorch checkpoint: {e:?}", path.display()))?;
    let mut m: Vec<(String, Vec<usize>)> = reader.tensors().iter().map(|(k, s)| (k.clone(), s.shape.to_vec())).collect();
    m.sort();
    Ok(m)
}

/// Reads the parameters of a checkpoint (safetensors or PyTorch, detected from the content).
pub fn open_checkpoint(path: &Path) -> Result<dipbench_nn::source::MemorySource> {
    Ok(dipbench_nn::source::MemorySource::open(path)?)
}

/// Downloads checkpoint `w` into `dir` (`mirror/<file>` first where a mirror is given, then the
/// registry's addresses in order), verified before it takes its final name: the sha256 prefix
/// of the published name where there is one, every key and shape of its configuration always;
/// its sha256 is then pinned beside it as `weights verify` does. A file already present is
/// verified instead of downloaded again.
pub fn fetch(
    w: &KnownWeights,
    dir: &Path,
    mirror: Option<&str>,
    fetcher: &crate::download::Fetcher,
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> Result<(crate::download::Fetched, Verified)> {
    if let Ok(p) = locate(w, dir) {
        let v = verify(&p, w.config)?;
        let sha256 = match &v {
            Verified::Pinned(h) | Verified::NewlyPinned(h) => h.clone(),
        };
        let origin = crate::download::Origin::Url(format!("file://{}", p.display()));
        return Ok((crate::download::Fetched { path: p, sha256, origin, failed: vec![], resumed_bytes: 0 }, v));
    }
    let mut origins = vec![];
    if let Some(m) = mirror {
        origins.push(crate::download::Origin::Url(format!("{}/{}", m.trim_end_matches('/'), w.file)));
    }
    origins.extend(w.downloads.iter().map(|d| d.origin()));
    fetch_from(w, dir, &origins, fetcher, progress)
}

/// [`fetch`] from the given origins (the registry's, or a test server's).
pub fn fetch_from(
    w: &KnownWeights,
    dir: &Path,
    origins: &[crate::download::Origin],
    fetcher: &crate::download::Fetcher,
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> Result<(crate::download::Fetched, Verified)> {
    let content = |p: &Path| check_content(p, w.config);
    let expect = crate::download::Expect { sha256: None, sha256_prefix: w.sha256_prefix, content: &content };
    let dest = dir.join(w.file);
    let fetched = fetcher.fetch(origins, &dest, &expect, progress).map_err(|e| {
        e.context(format!(
            "cannot download checkpoint `{}`. By hand: download it from any of\n  {}\nand save it as {}",
            w.name,
            w.sources.join("\n  "),
            dest.display()
        ))
    })?;
    let v = verify(&fetched.path, w.config)?;
    Ok((fetched, v))
}

/// The `dipbench weights` listing.
pub fn listing(dir: &Path) -> String {
    let mut s = format!("Checkpoints (looked up in {}):\n", dir.display());
    for w in KNOWN {
        let status = match locate(w, dir) {
            Ok(p) if sidecar(&p).is_file() => format!("present, sha256 pinned ({})", p.display()),
            Ok(p) => format!("present, not verified yet ({})", p.display()),
            Err(_) => "missing".into(),
        };
        s.push_str(&format!(
            "\n{}  [{}]\n  {}\n  file: {} (also: {}); config {}; {} parameters, ≈{:.1} MB as float32\n  status: {status}\n  sources:\n    {}\n",
            w.name,
            w.config,
            w.description,
            w.file,
            w.aliases.join(", "),
            w.config,
            w.params,
            w.params as f64 * 4.0 / 1e6,
            w.sources.join("\n    ")
        ));
    }
    s
}
