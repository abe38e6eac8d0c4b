//! The checkpoints dipbench knows: where the papers publish them, what they contain, where
//! dipbench looks for them, and their verification (keys and shapes against the configuration,
//! then a sha256 recorded beside the file on the first verified load and checked afterwards).
//!
//! The reference repositories publish neither sizes nor hashes (docs/protocols.md §2.3), so
//! a checkpoint is verified by its content (every key and shape of the configuration, nothing
//! else) and its sha256 is pinned locally from then on.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use dipbench_models::latent::LatentPrior;
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
    /// Where the publisher ships the checkpoint inside a zip archive: the archive's name and
    /// the member that is the checkpoint (unpacked to [`KnownWeights::file`]).
    pub archive: Option<Archive>,
    /// The size in bytes of the published download, where the publisher states it (checked on
    /// download).
    pub bytes: Option<u64>,
}

impl KnownWeights {
    /// The file the download addresses deliver: the archive where there is one.
    pub fn published_file(&self) -> &'static str {
        self.archive.map_or(self.file, |a| a.file)
    }
}

/// A checkpoint published inside a zip archive.
#[derive(Debug, Clone, Copy)]
pub struct Archive {
    /// The archive's file name (what the download addresses deliver).
    pub file: &'static str,
    /// The member holding the checkpoint.
    pub member: &'static str,
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
        archive: None,
        bytes: None,
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
        archive: None,
        bytes: None,
    },
    KnownWeights {
        name: "ffhq256-ldm",
        file: "ldm_ffhq256.pt",
        aliases: &["ffhq-ldm-vq-4.ckpt"],
        config: "ffhq256-ldm",
        description: "CompVis LDM-VQ-4 FFHQ 256 (LatentDAPS, PSLD and ReSample prior): latent UNet + VQ-f4 autoencoder, one Lightning checkpoint",
        sources: &[
            "CompVis latent-diffusion README / DAPS download.sh: https://ommer-lab.com/files/latent-diffusion/ffhq.zip (the checkpoint is model.ckpt inside; DAPS saves it as ldm_ffhq256.pt)",
        ],
        params: 329_378_945,
        downloads: &[Download::Url("https://ommer-lab.com/files/latent-diffusion/ffhq.zip")],
        sha256_prefix: None,
        archive: Some(Archive { file: "ffhq.zip", member: "model.ckpt" }),
        bytes: None,
    },
    KnownWeights {
        name: "imagenet256-ldm",
        file: "ldm_imagenet256.pt",
        aliases: &["cin256-v2.ckpt"],
        config: "imagenet256-ldm",
        description: "CompVis cin256-v2 (class-conditional ImageNet 256 LDM; DAPS fixes the label to 1000): latent UNet + VQ-f4 autoencoder + class embedding",
        sources: &[
            "CompVis latent-diffusion ImageNet notebook / DAPS download.sh: https://ommer-lab.com/files/latent-diffusion/nitro/cin/model.ckpt (1,827,378,153 bytes; DAPS saves it as ldm_imagenet256.pt)",
        ],
        params: 456_755_873,
        downloads: &[Download::Url("https://ommer-lab.com/files/latent-diffusion/nitro/cin/model.ckpt")],
        sha256_prefix: None,
        archive: None,
        bytes: Some(1_827_378_153),
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
        archive: None,
        bytes: None,
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
        archive: None,
        bytes: None,
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
        archive: None,
        bytes: None,
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
        archive: None,
        bytes: None,
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
        archive: None,
        bytes: None,
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
        archive: None,
        bytes: None,
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
        archive: None,
        bytes: None,
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
        match (w.aliases.is_empty(), w.archive) {
            (true, None) => String::new(),
            (false, None) => format!(" (or {})", w.aliases.join(", ")),
            (no_alias, Some(a)) => format!(
                " ({}it is `{}` in the published {}, which `weights fetch` unpacks when it finds it there)",
                if no_alias { String::new() } else { format!("or {}; ", w.aliases.join(", ")) },
                a.member,
                a.file
            ),
        },
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

impl Verified {
    /// The file's sha256.
    pub fn sha256(&self) -> &str {
        match self {
            Self::Pinned(h) | Self::NewlyPinned(h) => h,
        }
    }
}

/// Verifies `path` as a checkpoint of network `config` (a UNet config name, a latent UNet config
/// for a whole latent-diffusion checkpoint, or a metric network's): every
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
        unet => {
            let unet = UnetConfig::by_name(unet)?;
            match dipbench_models::latent::autoencoder_for(&unet) {
                Some(vq) => LatentPrior::<F>::check_manifest(&path.display().to_string(), &latent_manifest(path)?, &unet, &vq)?,
                None => AdmUnet::<F>::check_keys(&unet, &mut shapes()?, &dev)?,
            }
        }
    }
    Ok(())
}

/// Keys and shapes of a latent-diffusion checkpoint: the state dict under `state_dict` of a
/// Lightning checkpoint (read without the values), else the file's own keys (a flat state dict
/// or safetensors file).
pub fn latent_manifest(path: &Path) -> Result<Vec<(String, Vec<usize>)>> {
    if is_zip(path) {
        dipbench_nn::torch_records::check_zip_checkpoint(path)?;
        if let Ok(reader) = burn_store::pytorch::PytorchReader::with_top_level_key(path, "state_dict") {
            return Ok(sorted_shapes(&reader));
        }
    }
    pytorch_manifest(path)
}

fn sorted_shapes(reader: &burn_store::pytorch::PytorchReader) -> Vec<(String, Vec<usize>)> {
    let mut m: Vec<(String, Vec<usize>)> = reader.tensors().iter().map(|(k, s)| (k.clone(), s.shape.to_vec())).collect();
    m.sort();
    m
}

/// Whether `path` starts like a zip archive (a PyTorch zip checkpoint or a published archive).
fn is_zip(path: &Path) -> bool {
    let mut magic = [0u8; 2];
    std::fs::File::open(path).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic)).is_ok() && &magic == b"PK"
}

/// Keys and shapes of a checkpoint (PyTorch `.pt` or safetensors), read without the values.
pub fn pytorch_manifest(path: &Path) -> Result<Vec<(String, Vec<usize>)>> {
    if !path.is_file() {
        bail!("cannot read {}: no such file", path.display());
    }
    if !is_zip(path) {
        return Ok(dipbench_nn::source::MemorySource::open(path)?.manifest());
    }
    dipbench_nn::torch_records::check_zip_checkpoint(path)?;
    let reader = burn_store::pytorch::PytorchReader::new(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: not a readable PyTorch checkpoint: {e:?}", path.display()))?;
    Ok(sorted_shapes(&reader))
}

/// Reads the parameters of a checkpoint (safetensors or PyTorch, detected from the content).
pub fn open_checkpoint(path: &Path) -> Result<dipbench_nn::source::MemorySource> {
    Ok(dipbench_nn::source::MemorySource::open(path)?)
}

/// Downloads checkpoint `w` into `dir` (`mirror/<published file>` first where a mirror is
/// given, then the registry's addresses in order), verified before it takes its final name: the
/// published size and the sha256 prefix of the published name where there are ones, every key
/// and shape of its configuration always; its sha256 is then pinned beside it as `weights
/// verify` does. A checkpoint published inside a zip archive is unpacked from it (and the
/// archive removed once the checkpoint checks out). A file already present is verified instead
/// of downloaded again; an archive already present is unpacked.
pub fn fetch(
    w: &KnownWeights,
    dir: &Path,
    mirror: Option<&str>,
    fetcher: &crate::download::Fetcher,
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> Result<(crate::download::Fetched, Verified)> {
    if let Ok(p) = locate(w, dir) {
        let v = verify(&p, w.config)?;
        let origin = crate::download::Origin::Url(format!("file://{}", p.display()));
        return Ok((crate::download::Fetched { path: p, sha256: v.sha256().to_string(), origin, failed: vec![], resumed_bytes: 0 }, v));
    }
    let mut origins = vec![];
    if let Some(m) = mirror {
        origins.push(crate::download::Origin::Url(format!("{}/{}", m.trim_end_matches('/'), w.published_file())));
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
    let dest = dir.join(w.file);
    let by_hand = |e: anyhow::Error| {
        let save = match w.archive {
            Some(a) => format!("{} in {} and run `dipbench weights fetch {}` again to unpack it", a.file, dir.display(), w.name),
            None => dest.display().to_string(),
        };
        e.context(format!("cannot download checkpoint `{}`. By hand: download it from any of\n  {}\nand save it as {save}", w.name, w.sources.join("\n  ")))
    };
    let Some(archive) = w.archive else {
        let content = |p: &Path| {
            check_size(w, p)?;
            check_content(p, w.config)
        };
        let expect = crate::download::Expect { sha256: None, sha256_prefix: w.sha256_prefix, content: &content };
        let fetched = fetcher.fetch(origins, &dest, &expect, progress).map_err(by_hand)?;
        let v = verify(&fetched.path, w.config)?;
        return Ok((fetched, v));
    };
    let zip_path = dir.join(archive.file);
    let fetched = if zip_path.is_file() {
        // Downloaded before (or by hand) and not unpacked yet; the sha256 reported is the
        // checkpoint's, computed once it is unpacked.
        let origin = crate::download::Origin::Url(format!("file://{}", zip_path.display()));
        crate::download::Fetched { path: zip_path.clone(), sha256: String::new(), origin, failed: vec![], resumed_bytes: 0 }
    } else {
        let content = |p: &Path| {
            check_size(w, p)?;
            archive_member(p, archive.member).map(|_| ())
        };
        let expect = crate::download::Expect { sha256: None, sha256_prefix: w.sha256_prefix, content: &content };
        fetcher.fetch(origins, &zip_path, &expect, progress).map_err(by_hand)?
    };
    unpack(&zip_path, archive.member, &dest, w.config).map_err(by_hand)?;
    std::fs::remove_file(&zip_path).with_context(|| format!("cannot remove {} after unpacking it", zip_path.display()))?;
    let v = verify(&dest, w.config)?;
    Ok((crate::download::Fetched { path: dest, sha256: v.sha256().to_string(), ..fetched }, v))
}

/// Refuses a download whose size differs from the published one.
fn check_size(w: &KnownWeights, path: &Path) -> Result<()> {
    let Some(want) = w.bytes else { return Ok(()) };
    let got = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?.len();
    if got != want {
        bail!("{got} bytes, but the published file has {want}");
    }
    Ok(())
}

/// The name of `member` in zip archive `path`: the entry of that name, else the one entry whose
/// file name it is (an archive that keeps it in a folder).
fn archive_member(path: &Path, member: &str) -> Result<String> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let zip = zip::ZipArchive::new(file).with_context(|| format!("{} is not a zip archive", path.display()))?;
    let names: Vec<&str> = zip.file_names().collect();
    if names.contains(&member) {
        return Ok(member.to_string());
    }
    let matching: Vec<&&str> = names.iter().filter(|n| n.rsplit('/').next() == Some(member)).collect();
    match matching.as_slice() {
        [one] => Ok(one.to_string()),
        [] => bail!("{} holds no `{member}` (entries: {})", path.display(), names.join(", ")),
        _ => bail!("{} holds several `{member}` entries: {}", path.display(), matching.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ")),
    }
}

/// Unpacks `member` of archive `zip_path` to `dest` once its keys and shapes are those of
/// `config` (written beside `dest` first, renamed only then). An archive that cannot be unpacked
/// (not a zip, no such member, a damaged entry) or whose member is not the checkpoint is removed,
/// so that the next fetch downloads it again; only a failure to write the folder keeps it.
fn unpack(zip_path: &Path, member: &str, dest: &Path, config: &str) -> Result<()> {
    let name = match archive_member(zip_path, member) {
        Ok(name) => name,
        Err(e) => {
            let _ = std::fs::remove_file(zip_path);
            return Err(e.context(format!("{} was removed", zip_path.display())));
        }
    };
    let mut tmp = dest.as_os_str().to_owned();
    tmp.push(".unpacking");
    let tmp = PathBuf::from(tmp);
    // Reading the archive (a damaged entry fails its CRC here) and writing the folder are told
    // apart: only a bad archive is removed.
    let copied = (|| -> Result<std::result::Result<(), std::io::Error>> {
        let mut zip = zip::ZipArchive::new(std::fs::File::open(zip_path)?)?;
        let mut entry = zip.by_name(&name)?;
        let mut out = match std::fs::File::create(&tmp) {
            Ok(f) => f,
            Err(e) => return Ok(Err(e)),
        };
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = std::io::Read::read(&mut entry, &mut buf)?;
            if n == 0 {
                break;
            }
            if let Err(e) = std::io::Write::write_all(&mut out, &buf[..n]) {
                return Ok(Err(e));
            }
        }
        Ok(out.sync_all())
    })();
    match copied {
        Ok(Ok(())) => {}
        Ok(Err(write)) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(anyhow::Error::new(write).context(format!("cannot write {}", tmp.display())));
        }
        Err(read) => {
            let _ = std::fs::remove_file(&tmp);
            let _ = std::fs::remove_file(zip_path);
            return Err(read.context(format!("cannot unpack `{name}` of {}: a damaged archive, removed", zip_path.display())));
        }
    }
    if let Err(e) = check_content(&tmp, config) {
        let _ = std::fs::remove_file(&tmp);
        let _ = std::fs::remove_file(zip_path);
        return Err(e.context(format!("`{name}` of {} is not the expected checkpoint; the archive was removed", zip_path.display())));
    }
    std::fs::rename(&tmp, dest).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow::Error::new(e).context(format!("cannot move {} to {}", tmp.display(), dest.display()))
    })
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
            "\n{}  [{}]\n  {}\n  file: {} (also: {}){}; config {}; {} parameters, ≈{:.1} MB as float32\n  status: {status}\n  sources:\n    {}\n",
            w.name,
            w.config,
            w.description,
            w.file,
            w.aliases.join(", "),
            match (w.archive, w.bytes) {
                (Some(a), _) => format!(", published as `{}` inside {}", a.member, a.file),
                (None, Some(b)) => format!(", published size {b} bytes"),
                (None, None) => String::new(),
            },
            w.config,
            w.params,
            w.params as f64 * 4.0 / 1e6,
            w.sources.join("\n    ")
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parameter counts the listing prints are the networks' own (for every UNet and latent
    /// checkpoint), so the listing cannot drift from the model code.
    #[test]
    fn registry_parameter_counts_match_the_networks() {
        type F = burn::backend::Flex;
        for w in KNOWN {
            let Ok(unet) = UnetConfig::by_name(w.config) else { continue };
            let manifest = match dipbench_models::latent::autoencoder_for(&unet) {
                Some(vq) => LatentPrior::<F>::manifest(&unet, &vq),
                None => AdmUnet::<F>::manifest(&unet),
            };
            let params: u64 = manifest.iter().map(|(_, s)| s.iter().product::<usize>() as u64).sum();
            assert_eq!(params, w.params, "{}", w.name);
        }
    }
}
