//! From a fresh node to a run: `data prepare` / `data check` (selection, resize and crop against
//! torchvision's recipe, resume, the registry's check), `weights fetch` against a local HTTP
//! server, `doctor`, labelled grids and cached FID reference statistics.

use std::path::{Path, PathBuf};

use crate::support::*;
use dipbench::datasets::DatasetEntry;
use dipbench::prepare;
use dipbench::resample;
use image::{Rgb, RgbImage};

fn golden_prepare() -> PathBuf {
    let dir = dipbench_tests::golden_dir().join("prepare");
    assert!(dir.join("prepare.json").is_file(), "golden fixtures incomplete: {} has no prepare.json", dir.display());
    dir
}

/// torchvision `Compose([Resize(256), CenterCrop(256)])` on PIL images of six shapes, as the
/// fixtures recorded it: our PIL-exact path must give the same bytes (the fixture's tolerance:
/// exact, at most 1 level where PIL's fixed-point rounding is not matched — we count them and
/// allow none); the float path the DAPS loader uses (resize of the float tensor, no rounding) is
/// within 1 level of it: PIL rounds twice (after each pass, ≤ ½ level each, the second pass's
/// weights are positive and sum to 1), so the two differ by at most 1 level.
#[test]
fn golden_prepare_resize_crop_matches_torchvision() {
    let dir = golden_prepare();
    let meta: serde_json::Value = serde_json::from_str(&read(&dir.join("prepare.json"))).unwrap();
    let cases = meta["cases"].as_array().expect("prepare.json: cases");
    assert_eq!(cases.len(), 6, "prepare.json: six cases expected");
    for case in cases {
        let input = dir.join(case["input"].as_str().unwrap());
        let want_file = dir.join(case["resize_crop_256"].as_str().unwrap());
        let img = image::open(&input).unwrap_or_else(|e| panic!("{}: {e}", input.display())).to_rgb8();
        let size: Vec<usize> = case["size"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        assert_eq!((img.width() as usize, img.height() as usize), (size[0], size[1]), "{}", input.display());
        let resized: Vec<usize> = case["resize_size"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        assert_eq!(resample::short_side_size(size[0], size[1], 256), (resized[0], resized[1]), "Resize(256) size of {}", input.display());
        let want = image::open(&want_file).unwrap().to_rgb8();
        let got = resample::resize_crop_u8(&img, 256);
        assert_eq!(got.dimensions(), want.dimensions());
        let off: Vec<i32> = got.as_raw().iter().zip(want.as_raw()).map(|(a, b)| i32::from(*a) - i32::from(*b)).filter(|d| *d != 0).collect();
        assert!(
            off.is_empty(),
            "{}: {} of {} values differ from PIL (largest {})",
            input.display(),
            off.len(),
            got.as_raw().len(),
            off.iter().map(|d| d.abs()).max().unwrap()
        );
        // The loader's float path, read through the dataset reader ([−1, 1], CHW).
        let chw = dipbench::datasets::read_image(&input, "resize-crop", 256).unwrap();
        let n = 256 * 256;
        let mut worst = 0f64;
        for (i, px) in want.pixels().enumerate() {
            for c in 0..3 {
                let level = (f64::from(chw[c * n + i]) + 1.0) / 2.0 * 255.0;
                worst = worst.max((level - f64::from(px[c])).abs());
            }
        }
        assert!(worst <= 1.0 + 1e-3, "{}: float resize-crop is {worst} levels from PIL's", input.display());
    }
}

/// A picture of `w`×`h` whose content depends on `seed` (smooth, so PNGs stay small).
fn picture(w: u32, h: u32, seed: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| Rgb([(x * 255 / w.max(1)) as u8, (y * 255 / h.max(1)) as u8, (seed * 37 % 256) as u8]))
}

fn entry(files: &str, count: usize, min_side: Option<usize>, preprocess: &str) -> DatasetEntry {
    DatasetEntry {
        kind: "images".into(),
        description: "test set".into(),
        source: "made by the test".into(),
        reference: String::new(),
        files: Some(files.into()),
        count: Some(count),
        preprocess: Some(preprocess.into()),
        min_side,
        sha256: Some(prepare::DIGEST_LIST.into()),
    }
}

/// An ImageNet-like source: JPEGs and PNGs in two subfolders, out of name order on disk, some
/// under 256 px on the short side, plus a file that is not an image.
fn imagenet_like(root: &Path) -> Vec<(String, (u32, u32))> {
    let shapes = [(500, 375), (200, 300), (256, 400), (640, 427), (300, 255), (375, 500), (333, 256), (257, 999)];
    let mut made = vec![];
    for (i, &(w, h)) in shapes.iter().enumerate().rev() {
        let sub = root.join(if i % 2 == 0 { "a" } else { "b/c" });
        std::fs::create_dir_all(&sub).unwrap();
        let name = format!("val_{:04}.{}", i, if i % 3 == 0 { "png" } else { "jpg" });
        picture(w, h, i as u32).save(sub.join(&name)).unwrap();
        made.push((name, (w, h)));
    }
    std::fs::write(root.join("a/README.txt"), "not an image").unwrap();
    // macOS metadata beside the images: not images, named like them, first in name order.
    std::fs::write(root.join("a/._val_0000.png"), "AppleDouble").unwrap();
    made.sort();
    made
}

/// The first `count` names with a short side ≥ 256, computed independently of the code.
fn expected_selection(made: &[(String, (u32, u32))], count: usize) -> Vec<String> {
    made.iter().filter(|(_, (w, h))| *w.min(h) >= 256).take(count).map(|(n, _)| n.clone()).collect()
}

fn listed(folder: &Path) -> Vec<String> {
    let mut v: Vec<String> = read(&folder.join(prepare::DIGEST_LIST)).lines().map(|l| l.split_once("  ").unwrap().1.to_string()).collect();
    v.sort();
    v
}

#[test]
fn prepare_selects_sorted_images_from_folders_zips_and_tars_alike() {
    let dir = temp_dir("prepare-sorted");
    let src = dir.join("src");
    let made = imagenet_like(&src);
    let want = expected_selection(&made, 4);
    let e = entry("sorted", 4, Some(256), "resize-crop");
    // Folder.
    let out = dir.join("from-folder");
    let r = prepare::prepare("test", &e, &src, &out, 256, &mut |_, _| {}).unwrap();
    assert_eq!((r.copied, r.resized, r.kept), (4, 0, 0));
    assert_eq!(listed(&out), want);
    for f in &want {
        let copy = std::fs::read(out.join(f)).unwrap();
        let found = walk_find(&src, f);
        assert_eq!(copy, std::fs::read(found).unwrap(), "{f} must be a byte-for-byte copy");
    }
    // A tar written in reverse name order (a stream, not in name order) and a zip.
    let tar_path = dir.join("val.tar");
    {
        let mut b = tar::Builder::new(std::fs::File::create(&tar_path).unwrap());
        for (name, _) in made.iter().rev() {
            b.append_path_with_name(walk_find(&src, name), format!("val/{name}")).unwrap();
        }
        b.finish().unwrap();
    }
    let zip_path = dir.join("val.zip");
    {
        let mut z = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
        z.start_file("__MACOSX/test-imagenet/._val_0001.jpg", zip::write::SimpleFileOptions::default()).unwrap();
        std::io::Write::write_all(&mut z, b"AppleDouble").unwrap();
        for (name, _) in &made {
            z.start_file(format!("test-imagenet/{name}"), zip::write::SimpleFileOptions::default()).unwrap();
            std::io::Write::write_all(&mut z, &std::fs::read(walk_find(&src, name)).unwrap()).unwrap();
        }
        z.finish().unwrap();
    }
    for (label, archive) in [("tar", &tar_path), ("zip", &zip_path)] {
        let out2 = dir.join(format!("from-{label}"));
        prepare::prepare("test", &e, archive, &out2, 256, &mut |_, _| {}).unwrap();
        assert_eq!(read(&out2.join(prepare::DIGEST_LIST)), read(&out.join(prepare::DIGEST_LIST)), "{label} gives the folder's selection");
    }
    // In place (the source is the dataset folder, images in a subfolder): the first run copies the
    // selection to the top level, a second run finds it there and keeps it.
    let inplace = dir.join("inplace");
    std::fs::create_dir_all(inplace.join("test-imagenet")).unwrap();
    for (name, _) in &made {
        std::fs::copy(walk_find(&src, name), inplace.join("test-imagenet").join(name)).unwrap();
    }
    prepare::prepare("test", &e, &inplace, &inplace, 256, &mut |_, _| {}).unwrap();
    let again = prepare::prepare("test", &e, &inplace, &inplace, 256, &mut |_, _| {}).unwrap();
    assert_eq!((again.copied, again.kept), (0, 4));
    assert_eq!(read(&inplace.join(prepare::DIGEST_LIST)), read(&out.join(prepare::DIGEST_LIST)));
    // Too few usable images: an error saying how many there are.
    let err = prepare::prepare("test", &entry("sorted", 7, Some(256), "resize-crop"), &src, &dir.join("few"), 256, &mut |_, _| {}).unwrap_err();
    let msg = format!("{err:#}");
    let usable = expected_selection(&made, usize::MAX).len();
    assert!(usable < 7 && msg.contains(&format!("{usable} usable images")) && msg.contains("needs 7"), "{msg}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn walk_find(root: &Path, name: &str) -> PathBuf {
    fn find(dir: &Path, name: &str) -> Option<PathBuf> {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                if let Some(f) = find(&p, name) {
                    return Some(f);
                }
            } else if p.file_name().unwrap() == name {
                return Some(p);
            }
        }
        None
    }
    find(root, name).unwrap_or_else(|| panic!("{name} not under {}", root.display()))
}

#[test]
fn prepare_resumes_and_the_registry_check_catches_a_changed_file() {
    let dir = temp_dir("prepare-resume");
    let src = dir.join("src");
    let made = imagenet_like(&src);
    let e = entry("sorted", 4, Some(256), "resize-crop");
    let out = dir.join("out");
    prepare::prepare("test", &e, &src, &out, 256, &mut |_, _| {}).unwrap();
    let list = read(&out.join(prepare::DIGEST_LIST));
    // An interrupted run: two files gone, a temporary file left behind.
    let want = expected_selection(&made, 4);
    std::fs::remove_file(out.join(&want[1])).unwrap();
    std::fs::remove_file(out.join(&want[3])).unwrap();
    std::fs::write(out.join(format!(".{}.partial", want[1])), b"half a file").unwrap();
    let r = prepare::prepare("test", &e, &src, &out, 256, &mut |_, _| {}).unwrap();
    assert_eq!((r.copied, r.kept), (2, 2), "only the missing files are written again");
    assert_eq!(read(&out.join(prepare::DIGEST_LIST)), list);
    assert_eq!(prepare::check("test", &e, &out, 256).unwrap(), 4);
    // A file changed after preparation: the check names it.
    let victim = out.join(&want[2]);
    let mut bytes = std::fs::read(&victim).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&victim, bytes).unwrap();
    let msg = format!("{:#}", prepare::check("test", &e, &out, 256).unwrap_err());
    assert!(msg.contains(&want[2]) && msg.contains("sha256"), "{msg}");
    // No digest list: the error says how to make one.
    std::fs::remove_file(out.join(prepare::DIGEST_LIST)).unwrap();
    let msg = format!("{:#}", prepare::check("test", &e, &out, 256).unwrap_err());
    assert!(msg.contains("data prepare test"), "{msg}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// FFHQ from the 1024² originals: the numbered files only, each through guided-diffusion's
/// `center_crop_arr` (two box halvings: per pass ⌈(a + b)/2⌉, checked here in closed form).
#[test]
fn prepare_makes_ffhq_256_from_the_1024_originals() {
    let dir = temp_dir("prepare-ffhq");
    let src = dir.join("images1024x1024");
    std::fs::create_dir_all(src.join("00000")).unwrap();
    for i in 0..4u32 {
        picture(1024, 1024, i).save(src.join("00000").join(format!("{i:05}.png"))).unwrap();
    }
    let e = entry("%05d.png", 3, None, "none");
    let out = dir.join("ffhq");
    let r = prepare::prepare("ffhq-test", &e, &src, &out, 256, &mut |_, _| {}).unwrap();
    assert_eq!((r.copied, r.resized), (0, 3));
    assert_eq!(listed(&out), ["00000.png", "00001.png", "00002.png"]);
    let big = picture(1024, 1024, 1);
    let got = image::open(out.join("00001.png")).unwrap().to_rgb8();
    assert_eq!(got.dimensions(), (256, 256));
    let halve = |img: &RgbImage| {
        RgbImage::from_fn(img.width() / 2, img.height() / 2, |x, y| {
            let p = |dx: u32, dy: u32, c: usize| u32::from(img.get_pixel(2 * x + dx, 2 * y + dy)[c]);
            Rgb(std::array::from_fn(|c| ((p(0, 0, c) + p(1, 0, c)).div_ceil(2) + (p(0, 1, c) + p(1, 1, c)).div_ceil(2)).div_ceil(2) as u8))
        })
    };
    assert_eq!(got, halve(&halve(&big)), "two box halvings");
    // Missing numbered files are named.
    let msg = format!("{:#}", prepare::prepare("ffhq-test", &entry("%05d.png", 6, None, "none"), &src, &dir.join("more"), 256, &mut |_, _| {}).unwrap_err());
    assert!(msg.contains("2 of the 6 files") && msg.contains("00004.png") && msg.contains("00005.png"), "{msg}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The command line on the registered FFHQ set (1000 numbered 256² PNGs among others, in
/// subfolders): prepare, then check; two files of one name in the source are refused.
#[test]
fn data_prepare_and_check_through_the_command_line() {
    let dir = temp_dir("data-cli");
    let src = dir.join("ffhq-256");
    for i in 0..1003u32 {
        let sub = src.join(format!("{:02}", i / 100));
        std::fs::create_dir_all(&sub).unwrap();
        RgbImage::from_pixel(256, 256, Rgb([(i % 256) as u8, (i / 256) as u8, 7])).save(sub.join(format!("{i:05}.png"))).unwrap();
    }
    let out = dir.join("ffhq256-1k");
    let text = ok(&dipbench(&["data", "prepare", "ffhq256-1k", "--from", src.to_str().unwrap(), "--dir", out.to_str().unwrap()]));
    assert!(text.contains("1000 copied") && text.contains("check passes"), "{text}");
    assert_eq!(listed(&out).len(), 1000);
    assert!(!out.join("01000.png").exists(), "only the protocol's 1000 images");
    let text = ok(&dipbench(&["data", "check", "ffhq256-1k", "--dir", out.to_str().unwrap()]));
    assert!(text.contains("1000 images"), "{text}");
    // Again: everything kept.
    let text = ok(&dipbench(&["data", "prepare", "ffhq256-1k", "--from", src.to_str().unwrap(), "--dir", out.to_str().unwrap()]));
    assert!(text.contains("1000 already present"), "{text}");
    std::fs::copy(src.join("00/00007.png"), src.join("05/00007.png")).unwrap();
    let err = refused(&dipbench(&["data", "prepare", "ffhq256-1k", "--from", src.to_str().unwrap(), "--dir", dir.join("again").to_str().unwrap()]));
    assert!(err.contains("two files named 00007.png"), "{err}");
    let err = refused(&dipbench(&["data", "prepare", "nosuch", "--from", src.to_str().unwrap()]));
    assert!(err.contains("unknown dataset `nosuch`") && err.contains("ffhq256-1k"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// weights fetch, against a server on the loopback address.

mod http {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    /// What the server answers.
    pub enum Reply {
        /// The body, from the requested range if `ranges` (206), else whole (200); the
        /// connection is closed after `cut` body bytes when set.
        File { body: Vec<u8>, ranges: bool, cut: Option<usize> },
        /// An HTML page.
        Html(String),
        /// A bare status.
        Status(u16),
    }

    /// A request as the server saw it.
    #[derive(Debug, Clone)]
    pub struct Seen {
        pub path: String,
        pub range: Option<String>,
    }

    pub struct Server {
        pub base: String,
        pub seen: Arc<Mutex<Vec<Seen>>>,
    }

    /// Serves `reply(request, how many requests came before, the server's address)` on 127.0.0.1 until the test ends.
    pub fn serve(reply: impl Fn(&Seen, usize, &str) -> Reply + Send + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(vec![]));
        let log = seen.clone();
        let own = base.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                let mut range = None;
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':')
                        && k.eq_ignore_ascii_case("range")
                    {
                        range = Some(v.trim().to_string());
                    }
                }
                let req = Seen { path, range };
                let n = {
                    let mut l = log.lock().unwrap();
                    l.push(req.clone());
                    l.len() - 1
                };
                let _ = match reply(&req, n, &own) {
                    Reply::Status(code) => write!(stream, "HTTP/1.1 {code} Nope\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
                    Reply::Html(page) => {
                        write!(
                            stream,
                            "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                            page.len()
                        )
                    }
                    Reply::File { body, ranges, cut } => {
                        let start = req
                            .range
                            .as_deref()
                            .filter(|_| ranges)
                            .and_then(|r| r.strip_prefix("bytes=")?.trim_end_matches('-').parse::<usize>().ok())
                            .unwrap_or(0);
                        let rest = &body[start..];
                        let head = if start > 0 {
                            format!(
                                "HTTP/1.1 206 Partial Content\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes {start}-{}/{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                                body.len() - 1,
                                body.len(),
                                rest.len()
                            )
                        } else {
                            format!("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", rest.len())
                        };
                        let send = &rest[..cut.unwrap_or(rest.len()).min(rest.len())];
                        stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(send)).and_then(|()| stream.flush())
                    }
                };
                let _ = stream.shutdown(std::net::Shutdown::Both);
            }
        });
        Server { base, seen }
    }
}

use dipbench::download::{Expect, Fetcher, Origin, part_origin_path, part_path};
use http::{Reply, serve};

fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| ((i * 7919) ^ (i >> 8)) as u8).collect()
}

fn sha(bytes: &[u8]) -> String {
    let dir = temp_dir("sha");
    let p = dir.join("x");
    std::fs::write(&p, bytes).unwrap();
    let h = dipbench::weights::sha256(&p).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    h
}

fn quick() -> Fetcher {
    Fetcher { attempts: 3, read_timeout: std::time::Duration::from_secs(10), ..Fetcher::default() }
}

fn any_content(_: &Path) -> anyhow::Result<()> {
    Ok(())
}

#[test]
fn fetch_resumes_a_cut_download_with_a_range_request() {
    let body = payload(300_000);
    let served = body.clone();
    let server = serve(move |_, n, _| Reply::File { body: served.clone(), ranges: true, cut: (n == 0).then_some(100_000) });
    let dir = temp_dir("fetch-resume");
    let dest = dir.join("w.pt");
    let want = sha(&body);
    let expect = Expect { sha256: Some(&want), sha256_prefix: Some(&want[..8]), content: &any_content };
    let got = quick().fetch(&[Origin::Url(format!("{}/w.pt", server.base))], &dest, &expect, &mut |_, _| {}).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    assert_eq!(got.sha256, want);
    let seen = server.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[1].range.as_deref(), Some("bytes=100000-"), "the second request resumes where the cut left off");
    assert!(!part_path(&dest).exists());
    // A partial file left by a killed process (with the file naming its address) is resumed too.
    let dest2 = dir.join("w2.pt");
    std::fs::write(part_path(&dest2), &body[..50_000]).unwrap();
    std::fs::write(part_origin_path(&dest2), format!("{}/w.pt", server.base)).unwrap();
    let got = quick().fetch(&[Origin::Url(format!("{}/w.pt", server.base))], &dest2, &expect, &mut |_, _| {}).unwrap();
    assert_eq!(got.resumed_bytes, 50_000);
    assert_eq!(std::fs::read(&dest2).unwrap(), body);
    assert_eq!(server.seen.lock().unwrap().last().unwrap().range.as_deref(), Some("bytes=50000-"));
    assert!(!part_origin_path(&dest2).exists());
    // Bytes another address left are never resumed from this one (no range request, full body).
    let dest3 = dir.join("w3.pt");
    std::fs::write(part_path(&dest3), b"bytes of another mirror").unwrap();
    std::fs::write(part_origin_path(&dest3), "http://elsewhere/w.pt").unwrap();
    quick().fetch(&[Origin::Url(format!("{}/w.pt", server.base))], &dest3, &expect, &mut |_, _| {}).unwrap();
    assert_eq!(std::fs::read(&dest3).unwrap(), body);
    assert_eq!(server.seen.lock().unwrap().last().unwrap().range, None);
    // A stale partial file of this address that is not a prefix of the content: refused, then
    // fetched afresh from the same address.
    let dest4 = dir.join("w4.pt");
    std::fs::write(part_path(&dest4), vec![0u8; 1000]).unwrap();
    std::fs::write(part_origin_path(&dest4), format!("{}/w.pt", server.base)).unwrap();
    let got = quick().fetch(&[Origin::Url(format!("{}/w.pt", server.base))], &dest4, &expect, &mut |_, _| {}).unwrap();
    assert_eq!((std::fs::read(&dest4).unwrap(), got.failed.len()), (body.clone(), 0));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn fetch_refuses_a_wrong_checksum_and_leaves_no_file() {
    let body = payload(10_000);
    let served = body.clone();
    let server = serve(move |_, _, _| Reply::File { body: served.clone(), ranges: true, cut: None });
    let dir = temp_dir("fetch-checksum");
    let dest = dir.join("w.pt");
    let wrong = sha(b"something else");
    let expect = Expect { sha256: Some(&wrong), sha256_prefix: None, content: &any_content };
    let err = format!("{:#}", quick().fetch(&[Origin::Url(format!("{}/w.pt", server.base))], &dest, &expect, &mut |_, _| {}).unwrap_err());
    assert!(err.contains("wrong checksum") && err.contains(&wrong) && err.contains(&sha(&body)), "{err}");
    assert!(!dest.exists() && !part_path(&dest).exists(), "nothing may be left behind");
    // The hash in a published file name (a prefix) is checked the same way.
    let expect = Expect { sha256: None, sha256_prefix: Some("00000000"), content: &any_content };
    let err = format!("{:#}", quick().fetch(&[Origin::Url(format!("{}/w.pt", server.base))], &dest, &expect, &mut |_, _| {}).unwrap_err());
    assert!(err.contains("does not start with 00000000"), "{err}");
    assert!(!dest.exists() && !part_path(&dest).exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn fetch_tries_the_next_address_after_a_404_and_cleans_up_when_all_fail() {
    let body = payload(20_000);
    let served = body.clone();
    let server = serve(move |req, _, _| match req.path.as_str() {
        "/good/w.pt" => Reply::File { body: served.clone(), ranges: true, cut: None },
        // Cuts every time and ignores ranges: never completes.
        "/flaky/w.pt" => Reply::File { body: served.clone(), ranges: false, cut: Some(5_000) },
        _ => Reply::Status(404),
    });
    let dir = temp_dir("fetch-mirror");
    let dest = dir.join("w.pt");
    let expect = Expect { sha256: None, sha256_prefix: None, content: &any_content };
    let origins = [Origin::Url(format!("{}/gone/w.pt", server.base)), Origin::Url(format!("{}/good/w.pt", server.base))];
    let got = quick().fetch(&origins, &dest, &expect, &mut |_, _| {}).unwrap();
    assert_eq!(got.origin, origins[1]);
    assert_eq!(got.failed.len(), 1);
    assert!(got.failed[0].1.contains("404"), "{:?}", got.failed);
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    let dest2 = dir.join("w2.pt");
    let origins = [Origin::Url(format!("{}/gone/w.pt", server.base)), Origin::Url(format!("{}/flaky/w.pt", server.base))];
    let err = format!("{:#}", quick().fetch(&origins, &dest2, &expect, &mut |_, _| {}).unwrap_err());
    assert!(err.contains("every download address failed") && err.contains("404") && err.contains("cut after"), "{err}");
    assert!(!dest2.exists() && !part_path(&dest2).exists(), "no partial file left on failure");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn fetch_follows_google_drives_confirmation_page() {
    let body = payload(40_000);
    let served = body.clone();
    let server = serve(move |req, _, base| {
        let p = req.path.as_str();
        if p.starts_with("/uc?") && p.contains("id=NEWSTYLE") {
            // Today's page: a form posted by GET to drive.usercontent.google.com.
            Reply::Html(format!(
                "<html><body><p>Google Drive can't scan this file for viruses.</p>\
                 <form id=\"download-form\" action=\"{base}/download\" method=\"get\">\
                 <input type=\"submit\" value=\"Download anyway\"/>\
                 <input type=\"hidden\" name=\"id\" value=\"NEWSTYLE\"><input type=\"hidden\" name=\"export\" value=\"download\">\
                 <input type=\"hidden\" name=\"confirm\" value=\"t\"><input type=\"hidden\" name=\"uuid\" value=\"5f3a\"></form></body></html>"
            ))
        } else if p.starts_with("/uc?") && p.contains("id=OLDSTYLE") && !p.contains("confirm=") {
            // The older page: a link carrying a confirm token.
            Reply::Html("<a id=\"uc-download-link\" href=\"/uc?export=download&amp;confirm=Xy_9&amp;id=OLDSTYLE\">Download anyway</a>".into())
        } else if p == "/download?id=NEWSTYLE&export=download&confirm=t&uuid=5f3a" || p == "/uc?export=download&id=OLDSTYLE&confirm=Xy_9" {
            Reply::File { body: served.clone(), ranges: true, cut: None }
        } else {
            Reply::Status(404)
        }
    });
    let fetcher = Fetcher { drive_url: format!("{}/uc?export=download&id={{id}}", server.base), ..quick() };
    let dir = temp_dir("fetch-drive");
    let expect = Expect { sha256: None, sha256_prefix: None, content: &any_content };
    for id in ["NEWSTYLE", "OLDSTYLE"] {
        let dest = dir.join(format!("{id}.pt"));
        let got = fetcher
            .fetch(&[Origin::Drive(id.into())], &dest, &expect, &mut |_, _| {})
            .unwrap_or_else(|e| panic!("{id}: {e:#}\n{:?}", server.seen.lock().unwrap()));
        assert_eq!(std::fs::read(&dest).unwrap(), body, "{id}");
        assert!(got.failed.is_empty());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `weights fetch` through the command line from a mirror (the lpips heads of the golden
/// folder): the file lands under its registry name, its content checked and its sha256 pinned;
/// a second fetch only verifies it.
#[test]
fn weights_fetch_from_a_mirror_checks_and_pins_the_checkpoint() {
    let heads = std::fs::read(dipbench_tests::golden_dir().join("lpips_lin/alex.pth")).expect("golden lpips_lin/alex.pth");
    let server =
        serve(move |req, _, _| if req.path == "/alex.pth" { Reply::File { body: heads.clone(), ranges: true, cut: None } } else { Reply::Status(404) });
    let dir = temp_dir("fetch-cli");
    let text = ok(&dipbench(&["weights", "fetch", "lpips-alex-lin", "--mirror", &server.base, "--dir", dir.to_str().unwrap()]));
    assert!(text.contains("alex.pth") && text.contains("keys and shapes of `lpips-heads-alex` match"), "{text}");
    let pinned = read(&dir.join("alex.pth.sha256"));
    assert!(pinned.starts_with(&sha(&std::fs::read(dir.join("alex.pth")).unwrap())), "{pinned}");
    let before = server.seen.lock().unwrap().len();
    ok(&dipbench(&["weights", "fetch", "lpips-alex-lin", "--mirror", &server.base, "--dir", dir.to_str().unwrap()]));
    assert_eq!(server.seen.lock().unwrap().len(), before, "a present, verified file is not downloaded again");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A mirror serving the wrong file, then no network: the content check refuses the file, and the
/// error gives the manual steps; nothing is left in the folder.
#[test]
fn weights_fetch_offline_says_how_to_get_the_file_by_hand() {
    let server = serve(|_, _, _| Reply::File { body: payload(3_000), ranges: true, cut: None });
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/alex.pth", l.local_addr().unwrap())
    };
    let dir = temp_dir("fetch-offline");
    let w = dipbench::weights::known("lpips-alex-lin").unwrap();
    let origins = [Origin::Url(format!("{}/alex.pth", server.base)), Origin::Url(closed)];
    let err = format!("{:#}", dipbench::weights::fetch_from(w, &dir, &origins, &quick(), &mut |_, _| {}).unwrap_err());
    assert!(err.contains("cannot download checkpoint `lpips-alex-lin`") && err.contains("By hand") && err.contains("PerceptualSimilarity"), "{err}");
    assert!(err.contains("not the expected checkpoint") && err.contains("cannot connect"), "{err}");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "nothing may be left in the folder");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A zip archive holding `entries` (stored, as the CompVis archives are).
fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    use std::io::Write;
    let mut out = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut out);
    for (name, body) in entries {
        zip.start_file(*name, zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored)).unwrap();
        zip.write_all(body).unwrap();
    }
    zip.finish().unwrap();
    out.into_inner()
}

/// The tiny latent-diffusion checkpoint as a registry entry published like the FFHQ LDM: a zip
/// archive with `model.ckpt` inside.
const TINY_LDM_IN_A_ZIP: dipbench::weights::KnownWeights = dipbench::weights::KnownWeights {
    name: "tiny-ldm",
    file: "ldm_tiny.pt",
    aliases: &[],
    config: "tiny16-ldm",
    description: "the fixtures' tiny LatentDiffusion checkpoint",
    sources: &["the golden folder"],
    params: 0,
    downloads: &[],
    sha256_prefix: None,
    archive: Some(dipbench::weights::Archive { file: "ldm.zip", member: "model.ckpt" }),
    bytes: None,
};

/// A latent-diffusion checkpoint's keys are checked from its header: the fixtures' Lightning
/// checkpoint passes under its config and fails under the class-conditional one, naming the
/// first key it lacks.
#[test]
fn weights_check_reads_a_latent_checkpoint_and_names_the_key_a_wrong_config_lacks() {
    let ckpt = dipbench_tests::golden_dir().join("latent/ldm_tiny.pt");
    dipbench::weights::check_content(&ckpt, "tiny16-ldm").unwrap();
    let keys = dipbench::weights::latent_manifest(&ckpt).unwrap();
    assert!(keys.iter().any(|(k, _)| k == "first_stage_model.quantize.embedding.weight") && keys.iter().any(|(k, _)| k == "betas"), "{keys:?}");
    let err = format!("{:#}", dipbench::weights::check_content(&ckpt, "tiny16-cin").unwrap_err());
    // The first key the cross-attention UNet needs and the plain checkpoint lacks.
    assert!(err.contains("missing key `model.diffusion_model.input_blocks.3.1.proj_in.weight`") && err.contains("tiny16-cin"), "{err}");
}

/// A checkpoint published in a zip archive: the archive is downloaded, the member unpacked under
/// the registry's name once its keys check out, the archive removed and the sha256 pinned. An
/// archive without the member, or whose member is another network, leaves nothing behind.
#[test]
fn weights_fetch_unpacks_a_checkpoint_published_in_a_zip_archive() {
    let ckpt = std::fs::read(dipbench_tests::golden_dir().join("latent/ldm_tiny.pt")).expect("golden latent/ldm_tiny.pt");
    let heads = std::fs::read(dipbench_tests::golden_dir().join("lpips_lin/alex.pth")).expect("golden lpips_lin/alex.pth");
    let (good, empty, wrong) = (zip_of(&[("README", b"ldm"), ("model.ckpt", &ckpt)]), zip_of(&[("README", b"ldm")]), zip_of(&[("model.ckpt", &heads)]));
    let server = serve(move |req, _, _| match req.path.as_str() {
        "/good/ldm.zip" => Reply::File { body: good.clone(), ranges: true, cut: None },
        "/empty/ldm.zip" => Reply::File { body: empty.clone(), ranges: true, cut: None },
        "/wrong/ldm.zip" => Reply::File { body: wrong.clone(), ranges: true, cut: None },
        _ => Reply::Status(404),
    });
    let w = &TINY_LDM_IN_A_ZIP;
    let dir = temp_dir("fetch-archive");
    let origins = [Origin::Url(format!("{}/good/ldm.zip", server.base))];
    let (got, verified) = dipbench::weights::fetch_from(w, &dir, &origins, &quick(), &mut |_, _| {}).unwrap();
    assert_eq!(got.path, dir.join("ldm_tiny.pt"));
    assert_eq!(std::fs::read(&got.path).unwrap(), ckpt, "the member, byte for byte");
    assert_eq!(got.sha256, sha(&ckpt), "the checkpoint's hash, not the archive's");
    assert!(matches!(verified, dipbench::weights::Verified::NewlyPinned(_)));
    let mut left: Vec<String> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    left.sort();
    assert_eq!(left, ["ldm_tiny.pt", "ldm_tiny.pt.sha256"], "the archive is removed after unpacking");

    // An archive put in the folder by hand is unpacked without a download; a damaged one is
    // removed (so the next fetch downloads it again), leaving nothing.
    let by_hand = temp_dir("fetch-archive-by-hand");
    std::fs::write(by_hand.join("ldm.zip"), zip_of(&[("ldm/model.ckpt", &ckpt)])).unwrap();
    let (got, _) = dipbench::weights::fetch_from(w, &by_hand, &[], &quick(), &mut |_, _| {}).unwrap();
    assert_eq!(std::fs::read(&got.path).unwrap(), ckpt, "the member in a folder of the archive");
    assert!(!by_hand.join("ldm.zip").exists());
    let damaged = temp_dir("fetch-archive-damaged");
    let mut bytes = zip_of(&[("model.ckpt", &ckpt)]);
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(damaged.join("ldm.zip"), bytes).unwrap();
    let err = format!("{:#}", dipbench::weights::fetch_from(w, &damaged, &[], &quick(), &mut |_, _| {}).unwrap_err());
    assert!(err.contains("damaged archive, removed"), "{err}");
    assert_eq!(std::fs::read_dir(&damaged).unwrap().count(), 0, "nothing may be left in the folder");

    for (bad, why) in [("empty", "holds no `model.ckpt`"), ("wrong", "not the expected checkpoint")] {
        let dir = temp_dir(&format!("fetch-archive-{bad}"));
        let origins = [Origin::Url(format!("{}/{bad}/ldm.zip", server.base))];
        let err = format!("{:#}", dipbench::weights::fetch_from(w, &dir, &origins, &quick(), &mut |_, _| {}).unwrap_err());
        assert!(err.contains(why) && err.contains("By hand") && err.contains("ldm.zip"), "{bad}: {err}");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "{bad}: nothing may be left in the folder");
    }
}

// ---------------------------------------------------------------------------------------------
// Labelled grids.

/// Where `text`, drawn in `colour` by the grid's font at `scale`, appears in `img` (top-left
/// corners).
fn find_text(img: &RgbImage, text: &str, scale: u32, colour: Rgb<u8>) -> Vec<(u32, u32)> {
    let (w, h) = (dipbench::grids::text_width(text, scale), 8 * scale);
    let mut t = RgbImage::from_pixel(w, h, Rgb([255, 255, 255]));
    dipbench::grids::draw_text_scaled(&mut t, 0, 0, text, scale, colour);
    let ink: Vec<(u32, u32, bool)> = t.enumerate_pixels().map(|(x, y, p)| (x, y, *p == colour)).collect();
    assert!(ink.iter().any(|p| p.2), "`{text}` draws nothing");
    let mut hits = vec![];
    for y in 0..img.height().saturating_sub(h) {
        for x in 0..img.width().saturating_sub(w) {
            // Ink where the glyphs have ink and none elsewhere (so a dark image region is no match).
            if ink.iter().all(|&(dx, dy, on)| (*img.get_pixel(x + dx, y + dy) == colour) == on) {
                hits.push((x, y));
            }
        }
    }
    hits
}

/// The grid names its columns (GT, y, each method: `ΠGDM` in Greek) in order, each row's image,
/// each reconstruction's PSNR under it, and marks the cells whose method cannot run on the task.
/// Panels are 128 px here (32² images shown at 128): the headings fit at twice the font's size,
/// the captions (`PSNR 12.34`, `cannot run`, 10 characters) at its own size.
#[test]
fn grids_label_columns_rows_and_cells_that_cannot_run() {
    let dir = temp_dir("grid-labels");
    let methods = "[[method]]\nlabel = \"DPS\"\nsampler = \"dps\"\npreset = \"dps-repo\"\nsteps = 4\n\n[[method]]\nlabel = \"ΠGDM\"\nsampler = \"pigdm\"\npreset = \"paper\"\nsteps = 4\n";
    let exp = dipbench_tests::write_tiny_image_experiment(&dir, "labels", 5, "tasks = [\"sr4\", \"phase_retrieval\"]\nmetrics = [\"psnr\"]", methods);
    let out = dir.join("out");
    ok(&dipbench(&["run", exp.to_str().unwrap(), "--out", out.to_str().unwrap(), "--no-progress"]));
    let rows = read(&out.join("rows.csv"));
    let unsupported = rows.lines().filter(|l| l.contains("phase_retrieval") && l.contains("ΠGDM") && l.contains("unsupported")).count();
    assert_eq!(unsupported, 3, "ΠGDM cannot run phase retrieval (no pseudo-inverse):\n{rows}");
    ok(&dipbench(&["grid", exp.to_str().unwrap(), "--out", out.to_str().unwrap(), "--images", "2"]));
    let black = Rgb([0, 0, 0]);
    let grey = Rgb([90, 90, 90]);
    for (task, runs) in [("sr4", true), ("phase_retrieval", false)] {
        let g = image::open(out.join("grids").join(format!("grid-{task}.png"))).unwrap().to_rgb8();
        let heads: Vec<u32> = ["GT", "y", "DPS", "ΠGDM"]
            .iter()
            .map(|h| {
                // In the header strip (a `y` also appears in the row names).
                let at: Vec<(u32, u32)> = find_text(&g, h, 2, black).into_iter().filter(|(_, y)| *y < 16).collect();
                assert_eq!(at.len(), 1, "{task}: heading `{h}` at {at:?}");
                at[0].0
            })
            .collect();
        assert!(heads.windows(2).all(|w| w[0] < w[1]), "{task}: headings out of order: {heads:?}");
        let names: Vec<(u32, u32)> = ["synthetic00000", "synthetic00001"].iter().flat_map(|n| find_text(&g, n, 2, black)).collect();
        assert_eq!(names.len(), 2, "{task}: row names {names:?}");
        assert!(names.iter().all(|(x, _)| *x < heads[0]) && names[0].1 < names[1].1, "{task}: row names left of the cells, in order: {names:?}");
        let psnr = find_text(&g, "PSNR", 1, grey);
        let cannot = find_text(&g, "cannot run", 1, black);
        if runs {
            assert_eq!((psnr.len(), cannot.len()), (4, 0), "{task}: a PSNR under each of 2 methods × 2 rows");
        } else {
            assert_eq!((psnr.len(), cannot.len()), (2, 2), "{task}: DPS has a PSNR, ΠGDM cannot run");
            assert!(cannot.iter().all(|(x, _)| *x > heads[3]), "{task}: `cannot run` sits in the ΠGDM column");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// doctor.

/// On this machine (no GPU, no checkpoints, no datasets): `doctor` alone reports what is missing
/// and how to get it without failing; for a paper experiment the missing checkpoint and dataset
/// are blockers (exit 1) naming the command that fixes each; a backend not compiled in is a
/// blocker; a GMM experiment is ready; an image experiment whose checkpoints are present and
/// verified passes.
#[test]
fn doctor_says_what_is_missing_and_how_to_get_it() {
    let dir = temp_dir("doctor");
    let (ck, data) = (dir.join("checkpoints"), dir.join("data"));
    std::fs::create_dir_all(&ck).unwrap();
    std::fs::create_dir_all(&data).unwrap();
    let env = [("DIPBENCH_CHECKPOINTS", ck.to_str().unwrap()), ("DIPBENCH_DATA", data.to_str().unwrap())];
    let node = dipbench_with(&["doctor"], None, &env);
    let text = ok(&node);
    for needle in ["backend", "`cpu` compiled in", "dipbench weights fetch ffhq256", "dipbench data prepare ffhq256-1k", "disk", "ready"] {
        assert!(text.contains(needle), "doctor lacks `{needle}`:\n{text}");
    }
    assert!(!text.contains("BLOCKER"), "{text}");
    let paper = repo_file("experiments/dps-ffhq.toml");
    let out = dir.join("results");
    let o = dipbench_with(&["doctor", paper.to_str().unwrap(), "--out", out.to_str().unwrap()], None, &env);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(1), "{text}");
    let blockers: Vec<&str> = text.lines().filter(|l| l.starts_with("BLOCKER")).collect();
    assert!(blockers.iter().any(|l| l.contains("checkpoint ffhq256") && l.contains("dipbench weights fetch ffhq256")), "{text}");
    assert!(blockers.iter().any(|l| l.contains("dataset ffhq256-1k") && l.contains("dipbench data prepare ffhq256-1k")), "{text}");
    assert!(text.lines().any(|l| l.contains("disk") && l.contains("GB free")), "{text}");
    if !cfg!(feature = "cuda") {
        let o = dipbench_with(&["doctor", "--device", "cuda"], None, &env);
        assert_eq!(o.status.code(), Some(1));
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(text.lines().any(|l| l.starts_with("BLOCKER") && l.contains("not compiled") && l.contains("--features cuda")), "{text}");
    }
    let gmm = repo_file("experiments/gmm-quick.toml");
    let text = ok(&dipbench_with(&["doctor", gmm.to_str().unwrap(), "--out", out.to_str().unwrap()], None, &env));
    assert!(text.contains("none needed") && text.contains("ready for"), "{text}");
    // Checkpoints present: verified, and the run is ready.
    dipbench_tests::write_golden_checkpoints(&ck);
    let exp = dipbench_tests::write_tiny_image_experiment(
        &dir,
        "lp",
        1,
        "tasks = [\"sr4\"]\nmetrics = [\"psnr\", \"lpips-alex\"]",
        "[[method]]\nlabel = \"DDRM\"\nsampler = \"ddrm\"\npreset = \"paper\"\nsteps = 2\n",
    );
    let text = ok(&dipbench_with(&["doctor", exp.to_str().unwrap(), "--out", out.to_str().unwrap()], None, &env));
    for needle in ["checkpoint alexnet", "checkpoint lpips-alex-lin", "keys, shapes and sha256 verified", "dataset synthetic", "ready for"] {
        assert!(text.contains(needle), "doctor lacks `{needle}`:\n{text}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
