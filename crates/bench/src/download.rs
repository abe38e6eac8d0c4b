//! Downloads of published files (`dipbench weights fetch`): each origin tried in order, a cut
//! connection resumed with an HTTP range request, Google Drive's large-file confirmation page
//! followed, the content verified before the file takes its final name.
//!
//! The bytes go to `<file>.part` beside the destination, and `<file>.part.origin` names the
//! address they came from. A process killed mid-download leaves both and the next fetch resumes
//! the part from that same address only (bytes of two addresses are never spliced); a fetch that
//! fails (every origin tried) or whose content is refused removes them. The final name appears
//! only by a rename after verification, so a half file never carries it.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// Where a file is published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A direct HTTP(S) address.
    Url(String),
    /// A Google Drive file id (fetched like `gdown`: the download address, then its
    /// "can't scan this file for viruses" confirmation form for large files).
    Drive(String),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Url(u) => write!(f, "{u}"),
            Origin::Drive(id) => write!(f, "Google Drive file {id}"),
        }
    }
}

/// How a download is done: the Drive endpoint (replaced in tests by a local server), retries.
#[derive(Debug, Clone)]
pub struct Fetcher {
    /// Google Drive's download address; `{id}` is replaced by the file id.
    pub drive_url: String,
    /// Attempts per origin (each attempt after the first resumes the partial file).
    pub attempts: usize,
    /// Seconds without data before a connection counts as cut.
    pub read_timeout: Duration,
}

impl Default for Fetcher {
    fn default() -> Self {
        Self { drive_url: "https://drive.google.com/uc?export=download&id={id}".into(), attempts: 3, read_timeout: Duration::from_secs(60) }
    }
}

/// What the content must satisfy before it takes its final name.
pub struct Expect<'a> {
    /// The full sha256, where published.
    pub sha256: Option<&'a str>,
    /// A sha256 prefix, where the publisher puts one in the file name (torch.hub's convention).
    pub sha256_prefix: Option<&'a str>,
    /// A check of the content (e.g. every key and shape of the network).
    pub content: &'a dyn Fn(&Path) -> Result<()>,
}

/// What a successful fetch did.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The final file.
    pub path: PathBuf,
    /// Its sha256.
    pub sha256: String,
    /// The origin that delivered it.
    pub origin: Origin,
    /// The origins that failed before it, with why.
    pub failed: Vec<(Origin, String)>,
    /// Bytes that came from an earlier partial file (resumed).
    pub resumed_bytes: u64,
}

/// The partial file of `dest`.
pub fn part_path(dest: &Path) -> PathBuf {
    let mut s = dest.as_os_str().to_owned();
    s.push(".part");
    PathBuf::from(s)
}

/// The file naming the origin of `dest`'s partial file.
pub fn part_origin_path(dest: &Path) -> PathBuf {
    let mut s = dest.as_os_str().to_owned();
    s.push(".part.origin");
    PathBuf::from(s)
}

fn remove_part(part: &Path, tag: &Path) {
    let _ = std::fs::remove_file(part);
    let _ = std::fs::remove_file(tag);
}

impl Fetcher {
    fn agent(&self) -> ureq::Agent {
        ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(20))
            .timeout_read(self.read_timeout)
            .redirects(8)
            .try_proxy_from_env(true)
            .user_agent(concat!("dipbench/", env!("CARGO_PKG_VERSION")))
            .build()
    }

    /// Downloads `dest` from the first origin that delivers content passing `expect`;
    /// `progress(bytes so far, total if known)` is called as data arrives.
    pub fn fetch(&self, origins: &[Origin], dest: &Path, expect: &Expect, progress: &mut dyn FnMut(u64, Option<u64>)) -> Result<Fetched> {
        if origins.is_empty() {
            bail!("{}: no download address is known", dest.display());
        }
        if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let (part, tag) = (part_path(dest), part_origin_path(dest));
        let agent = self.agent();
        let mut failed = vec![];
        for origin in origins {
            let mut fresh_retry = false;
            loop {
                match self.fetch_origin(&agent, origin, &part, &tag, progress) {
                    Ok(resumed_bytes) => match verify(&part, expect) {
                        Ok(sha256) => {
                            std::fs::rename(&part, dest).with_context(|| format!("cannot move {} to {}", part.display(), dest.display()))?;
                            let _ = std::fs::remove_file(&tag);
                            return Ok(Fetched { path: dest.to_path_buf(), sha256, origin: origin.clone(), failed, resumed_bytes });
                        }
                        Err(e) => {
                            // Wrong content: nothing of it is kept. If part of it came from an
                            // earlier run, this address gets one fresh try.
                            remove_part(&part, &tag);
                            if resumed_bytes > 0 && !fresh_retry {
                                fresh_retry = true;
                                continue;
                            }
                            failed.push((origin.clone(), format!("{e:#}")));
                        }
                    },
                    // The partial file stays: it may be another address's, resumable next time.
                    Err(e) => failed.push((origin.clone(), format!("{e:#}"))),
                }
                break;
            }
        }
        remove_part(&part, &tag);
        bail!("{}: every download address failed:\n  {}", dest.display(), failed.iter().map(|(o, e)| format!("{o}: {e}")).collect::<Vec<_>>().join("\n  "))
    }

    /// Brings `part` to the complete content of `origin`, resuming what is there when `tag`
    /// says it came from this origin. Returns the bytes that were there at the start.
    fn fetch_origin(&self, agent: &ureq::Agent, origin: &Origin, part: &Path, tag: &Path, progress: &mut dyn FnMut(u64, Option<u64>)) -> Result<u64> {
        let name = origin.to_string();
        let ours = || std::fs::read_to_string(tag).is_ok_and(|t| t == name);
        let resumed = if ours() { part.metadata().map(|m| m.len()).unwrap_or(0) } else { 0 };
        let mut url = match origin {
            Origin::Url(u) => u.clone(),
            Origin::Drive(id) => self.drive_url.replace("{id}", id),
        };
        let mut last_err = None;
        let mut confirmations = 0;
        let mut attempt = 0;
        while attempt < self.attempts {
            attempt += 1;
            match self.fetch_once(agent, &url, part, (tag, &name, ours()), progress) {
                Ok(Step::Complete) => return Ok(resumed),
                Ok(Step::Page(html)) => {
                    let Origin::Drive(_) = origin else { bail!("{url} answered with a web page, not the file") };
                    confirmations += 1;
                    if confirmations > 2 {
                        bail!("Google Drive kept answering with a web page (quota exceeded or access denied?)");
                    }
                    url = drive_confirmation(&html, &url)?;
                    attempt -= 1;
                }
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("no attempt made")))
    }

    /// One request; `(tag file, origin name, whether the part is this origin's)`.
    fn fetch_once(
        &self,
        agent: &ureq::Agent,
        url: &str,
        part: &Path,
        (tag, name, resume): (&Path, &str, bool),
        progress: &mut dyn FnMut(u64, Option<u64>),
    ) -> Result<Step> {
        let have = if resume { part.metadata().map(|m| m.len()).unwrap_or(0) } else { 0 };
        let mut req = agent.get(url);
        if have > 0 {
            req = req.set("Range", &format!("bytes={have}-"));
        }
        let resp = match req.call() {
            Ok(r) => r,
            Err(ureq::Error::Status(416, _)) if have > 0 => return Ok(Step::Complete), // the partial file is whole
            Err(ureq::Error::Status(code, r)) => bail!("HTTP {code} {}", r.status_text()),
            Err(e) => bail!("cannot connect: {e}"),
        };
        if resp.content_type().trim().eq_ignore_ascii_case("text/html") {
            let mut html = String::new();
            resp.into_reader().take(1 << 20).read_to_string(&mut html).context("reading a web page")?;
            return Ok(Step::Page(html));
        }
        // The bytes about to be written are this origin's.
        std::fs::write(tag, name).with_context(|| format!("cannot write {}", tag.display()))?;
        let (mut file, start) = if resp.status() == 206 {
            let start = content_range_start(resp.header("Content-Range"));
            if start != Some(have) {
                bail!("the server resumed at byte {start:?}, not at {have}");
            }
            (std::fs::OpenOptions::new().append(true).open(part).with_context(|| format!("cannot append to {}", part.display()))?, have)
        } else {
            (std::fs::File::create(part).with_context(|| format!("cannot write {}", part.display()))?, 0)
        };
        let total = resp.header("Content-Length").and_then(|l| l.parse::<u64>().ok()).map(|n| n + start);
        let mut reader = resp.into_reader();
        let mut buf = vec![0u8; 1 << 16];
        let mut done = start;
        loop {
            let n = reader.read(&mut buf).with_context(|| format!("connection cut after {done} bytes"))?;
            if n == 0 {
                break;
            }
            file.write_all(&buf[..n]).with_context(|| format!("cannot write {}", part.display()))?;
            done += n as u64;
            progress(done, total);
        }
        file.sync_all().ok();
        if let Some(t) = total
            && done != t
        {
            bail!("connection cut after {done} of {t} bytes");
        }
        Ok(Step::Complete)
    }
}

enum Step {
    Complete,
    Page(String),
}

fn content_range_start(h: Option<&str>) -> Option<u64> {
    // "bytes 100-999/1000"
    h?.trim().strip_prefix("bytes ")?.split('-').next()?.trim().parse().ok()
}

/// The address behind Google Drive's "can't scan for viruses" page: its `download-form` (action
/// and hidden inputs), or the older pages' `confirm=` token added to the address.
pub fn drive_confirmation(html: &str, url: &str) -> Result<String> {
    if let Some(form_at) = html.find("id=\"download-form\"") {
        let start = html[..form_at].rfind("<form").unwrap_or(form_at);
        let end = html[start..].find("</form>").map(|e| start + e).unwrap_or(html.len());
        let form = &html[start..end];
        let action = attr(form, "action").context("Drive's confirmation form has no action")?;
        let mut query = vec![];
        let mut rest = form;
        while let Some(i) = rest.find("<input") {
            let tag_end = rest[i..].find('>').map(|e| i + e).unwrap_or(rest.len());
            let tag = &rest[i..tag_end];
            if let (Some(n), Some(v)) = (attr(tag, "name"), attr(tag, "value")) {
                query.push(format!("{}={}", n, v));
            }
            rest = &rest[tag_end..];
        }
        let sep = if action.contains('?') { '&' } else { '?' };
        return Ok(format!("{}{sep}{}", action.replace("&amp;", "&"), query.join("&")));
    }
    if let Some(i) = html.find("confirm=") {
        let token: String = html[i + 8..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-').collect();
        if !token.is_empty() {
            return Ok(format!("{url}&confirm={token}"));
        }
    }
    let hint = if html.contains("Quota exceeded") || html.contains("Too many users") {
        " (Drive says the download quota is exceeded; try later or download by hand)"
    } else {
        ""
    };
    bail!("Google Drive answered with a page that has no download link{hint}")
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let key = format!("{name}=\"");
    let i = tag.find(&key)? + key.len();
    let j = tag[i..].find('"')? + i;
    Some(tag[i..j].to_string())
}

/// Checks the downloaded content: sha256 (full or prefix) and the content check. Returns the
/// sha256.
fn verify(path: &Path, expect: &Expect) -> Result<String> {
    let got = crate::digest::sha256(path)?;
    if let Some(want) = expect.sha256
        && got != want
    {
        bail!("wrong checksum: sha256 {got}, expected {want}");
    }
    if let Some(prefix) = expect.sha256_prefix
        && !got.starts_with(prefix)
    {
        bail!("wrong checksum: sha256 {got} does not start with {prefix} (the hash in the published file name)");
    }
    (expect.content)(path).context("the downloaded file is not the expected checkpoint")?;
    Ok(got)
}
