//! The files a user already has, as `dipbench data prepare` reads them: a folder (searched
//! recursively), a zip archive (the DAPS subsets) or a tar archive (ImageNet's
//! `ILSVRC2012_img_val.tar`). Files are known by their base name; two files of one name in a
//! source are an error naming both.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Where the images come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A folder and its subfolders.
    Folder(PathBuf),
    /// A `.zip` archive.
    Zip(PathBuf),
    /// A `.tar` archive (read as a stream: tar has no index).
    Tar(PathBuf),
}

/// What a visitor of a source says after each file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Go on to the next file.
    Continue,
    /// Stop reading the source.
    Stop,
}

/// Reads the bytes of the file being visited (only when the visitor needs them).
pub type Load<'a> = dyn FnMut() -> Result<Vec<u8>> + 'a;

impl Source {
    /// A folder, or an archive by its extension (`.zip`, `.tar`).
    pub fn open(path: &Path) -> Result<Self> {
        if path.is_dir() {
            return Ok(Source::Folder(path.to_path_buf()));
        }
        if !path.is_file() {
            bail!("--from {}: no such file or folder", path.display());
        }
        let name = path.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
        if name.ends_with(".zip") {
            Ok(Source::Zip(path.to_path_buf()))
        } else if name.ends_with(".tar") {
            Ok(Source::Tar(path.to_path_buf()))
        } else {
            bail!("--from {}: not a folder, .zip or .tar (unpack a compressed tarball first)", path.display())
        }
    }

    /// Whether [`Source::visit`] goes through the files in name order (folders and zips; a tar
    /// stream comes in archive order).
    pub fn in_name_order(&self) -> bool {
        !matches!(self, Source::Tar(_))
    }

    /// Calls `f(name, load)` for every file (base names; `load` reads its bytes), skipping the
    /// folder `skip` (the output folder when it lies inside the source; `None` when the source is
    /// the output folder itself, where a top-level file wins over a same-named one in a
    /// subfolder: it is the copy an earlier run made). Hidden files (`.name`, macOS `._name`) and
    /// `__MACOSX/` are not images and are skipped.
    pub fn visit(&self, skip: Option<&Path>, f: &mut dyn FnMut(&str, &mut Load) -> Result<Flow>) -> Result<()> {
        match self {
            Source::Folder(root) => {
                let mut files = BTreeMap::new();
                walk(root, skip, &mut files, skip.is_none().then_some(root.as_path()))?;
                for (name, path) in files {
                    let mut load = || std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()));
                    if f(&name, &mut load)? == Flow::Stop {
                        break;
                    }
                }
            }
            Source::Zip(path) => {
                let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
                let mut zip = zip::ZipArchive::new(file).with_context(|| format!("{}: not a readable zip archive", path.display()))?;
                let mut names: BTreeMap<String, String> = BTreeMap::new();
                for full in zip.file_names().filter(|n| !n.ends_with('/') && !hidden(n)) {
                    let base = base_name(full);
                    if let Some(other) = names.insert(base.clone(), full.to_string()) {
                        bail!("{}: two files named {base} ({other} and {full})", path.display());
                    }
                }
                for (name, full) in names {
                    let mut load = || {
                        let mut e = zip.by_name(&full).with_context(|| format!("{}: cannot read {full}", path.display()))?;
                        let mut buf = Vec::new();
                        e.read_to_end(&mut buf).with_context(|| format!("{}: cannot read {full} (damaged archive?)", path.display()))?;
                        Ok(buf)
                    };
                    if f(&name, &mut load)? == Flow::Stop {
                        break;
                    }
                }
            }
            Source::Tar(path) => {
                let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
                let mut archive = tar::Archive::new(std::io::BufReader::new(file));
                let mut seen: BTreeMap<String, String> = BTreeMap::new();
                for entry in archive.entries().with_context(|| format!("{}: not a readable tar archive", path.display()))? {
                    let mut entry = entry.with_context(|| format!("{}: damaged tar archive", path.display()))?;
                    if !entry.header().entry_type().is_file() {
                        continue;
                    }
                    let full = entry.path().with_context(|| format!("{}: unreadable member name", path.display()))?.to_string_lossy().into_owned();
                    if hidden(&full) {
                        continue;
                    }
                    let base = base_name(&full);
                    if let Some(other) = seen.insert(base.clone(), full.clone()) {
                        bail!("{}: two files named {base} ({other} and {full})", path.display());
                    }
                    let mut load = || {
                        let mut buf = vec![];
                        entry.read_to_end(&mut buf).with_context(|| format!("{}: cannot read {full} (truncated archive?)", path.display()))?;
                        Ok(buf)
                    };
                    if f(&base, &mut load)? == Flow::Stop {
                        break;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Hidden files and macOS archive metadata (`.x`, `._x`, `__MACOSX/…`).
fn hidden(full: &str) -> bool {
    full.split(['/', '\\']).any(|part| (part.starts_with('.') && part != "." && part != "..") || part == "__MACOSX")
}

fn base_name(full: &str) -> String {
    full.rsplit(['/', '\\']).next().unwrap_or(full).to_string()
}

fn walk(dir: &Path, skip: Option<&Path>, files: &mut BTreeMap<String, PathBuf>, top: Option<&Path>) -> Result<()> {
    let mut entries: Vec<PathBuf> =
        std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if skip.is_some_and(|s| same_path(&p, s)) || hidden(&name) {
            continue;
        }
        if p.is_dir() {
            walk(&p, skip, files, top)?;
        } else if p.is_file() {
            if let Some(other) = files.get(&name) {
                let at_top = |q: &Path| top.is_some_and(|t| q.parent() == Some(t));
                match (at_top(other), at_top(&p)) {
                    (true, _) => continue,
                    (false, true) => {}
                    (false, false) => bail!("two files named {name} in the source: {} and {}", other.display(), p.display()),
                }
            }
            files.insert(name, p.clone());
        }
    }
    Ok(())
}

/// Whether two paths name the same existing folder.
pub fn same_path(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
