//! End-to-end tests of the image benchmark through the `dipbench` binary: the smoke experiment
//! (every method × every task on 8 images of 32×32 made here, tiny UNet config), resume after
//! kill -9, sharding, and dataset errors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{check_table_except, dipbench, ok, read, repo_file, temp_dir};

/// `n` test pictures of `side`² pixels: colour ramps crossed with a bar pattern whose period
/// and phase depend on the index.
fn make_images(dir: &Path, n: usize, side: u32) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..n as u32 {
        let img = image::RgbImage::from_fn(side, side, |x, y| {
            let bar = if ((x + 3 * i) / (2 + i % 3)) % 2 == 0 { 60 } else { 0 };
            image::Rgb([(x * 255 / side) as u8 / 2 + bar, (y * 255 / side) as u8 / 2 + 40, ((x + y + 9 * i) * 4 % 200) as u8])
        });
        img.save(dir.join(format!("{i:05}.png"))).unwrap();
    }
}

/// A CSV without its `seconds` column (wall time is not reproducible).
fn without_seconds(csv_text: &str) -> String {
    let mut lines = csv_text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let drop = header.iter().position(|h| *h == "seconds").expect("seconds column");
    std::iter::once(header.join(","))
        .chain(lines.map(|l| {
            let mut rec = csv::ReaderBuilder::new().has_headers(false).from_reader(l.as_bytes());
            let r = rec.records().next().unwrap().unwrap();
            r.iter().enumerate().filter(|(i, _)| *i != drop).map(|(_, v)| v.to_string()).collect::<Vec<_>>().join("|")
        }))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn smoke_experiment_runs_every_method_on_every_task_and_writes_tables() {
    let dir = temp_dir("smoke");
    let images = dir.join("images");
    make_images(&images, 8, 32);
    let out = dir.join("out");
    let exp = repo_file("experiments/smoke.toml");
    let args = ["run", exp.to_str().unwrap(), "--out", out.to_str().unwrap(), "--dataset", images.to_str().unwrap(), "--no-progress"];
    let md = ok(&dipbench(&args));

    let text: toml::Table = toml::from_str(&read(&exp)).unwrap();
    let tasks: Vec<String> = text["image"]["tasks"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect();
    let labels: Vec<String> = text["method"].as_array().unwrap().iter().map(|m| m["label"].as_str().unwrap().to_string()).collect();

    // Every (task, method, image) has a row: ok with finite metrics, or unsupported with a reason.
    let mut rdr = csv::Reader::from_path(out.join("rows.csv")).unwrap();
    let rows: Vec<csv::StringRecord> = rdr.records().map(|r| r.unwrap()).collect();
    let mut ran = std::collections::BTreeSet::new();
    for t in &tasks {
        for m in &labels {
            let mine: Vec<&csv::StringRecord> = rows.iter().filter(|r| &r[0] == t && &r[1] == m).collect();
            let images_seen: std::collections::BTreeSet<&str> = mine.iter().map(|r| &r[3]).collect();
            assert_eq!(images_seen.len(), 8, "{m} on {t}: rows for {images_seen:?}");
            for r in &mine {
                if &r[8] == "ok" {
                    let v: f64 = r[5].parse().unwrap();
                    assert!(v.is_finite(), "{m} on {t}, image {}: {} = {v}", &r[3], &r[4]);
                    ran.insert((t.clone(), m.clone()));
                } else {
                    assert!(r[8].starts_with("unsupported: ") && r[8].len() > 20, "{m} on {t}: status `{}`", &r[8]);
                }
            }
        }
    }
    for m in &labels {
        assert!(ran.iter().any(|(_, l)| l == m), "{m} ran on no task");
    }
    for t in &tasks {
        assert!(ran.iter().filter(|(x, _)| x == t).count() >= 2, "task {t}: fewer than two methods ran");
    }
    // The methods with a guidance or Langevin term on any differentiable operator run everywhere.
    for m in ["DPS", "DAPS"] {
        assert_eq!(ran.iter().filter(|(_, l)| l == m).count(), tasks.len(), "{m} must run on every task");
    }

    // The tables: every method and task, the untrained-weights warning, LaTeX escaped.
    for needle in labels.iter().chain(&tasks) {
        assert!(md.contains(needle.as_str()), "table.md lacks {needle}");
    }
    assert!(md.contains("UNTRAINED"), "the caption must say the weights are untrained");
    // Presets that assume a setting the paper does not state say so in the caption.
    assert!(md.contains("FPS-SMC (fps-smc, preset `repo`) assumes the authors' code defaults"), "{md}");
    assert!(md.contains("Set here: particles = 2, steps = 6."), "the caption names the overrides: {md}");
    assert!(md.contains("DCDP on hdr (dcdp, preset `repo-default`) assumes"), "{md}");
    let tex = read(&out.join("table.tex"));
    assert!(tex.contains("\\begin{tabular}") && tex.contains("\\textbf{"), "{tex}");
    for (i, line) in tex.lines().enumerate() {
        let chars: Vec<char> = line.chars().collect();
        for (j, c) in chars.iter().enumerate() {
            if matches!(c, '_' | '%' | '#' | '&') && *c != '&' {
                assert!(j > 0 && chars[j - 1] == '\\', "table.tex line {}: unescaped `{c}` in {line}", i + 1);
            }
            assert!(!matches!(c, 'Π' | 'σ' | '×' | '`'), "table.tex line {}: raw `{c}` in {line}", i + 1);
        }
        if line.ends_with("\\\\") && !line.starts_with("Method") {
            assert_eq!(line.matches(" & ").count(), tasks.len(), "table.tex line {}: wrong column count: {line}", i + 1);
        }
    }
    // Reconstructions and measurements are saved as PNGs.
    assert!(out.join("images/sr4/DPS/00000.png").is_file());
    assert!(out.join("images/sr4/y/00000.png").is_file());

    // A rerun finds every job done and writes the same table.
    let before = read(&out.join("table.csv"));
    let again = dipbench(&args);
    ok(&again);
    assert!(String::from_utf8_lossy(&again.stderr).contains("(0 run now"), "{}", String::from_utf8_lossy(&again.stderr));
    assert_eq!(before, read(&out.join("table.csv")));

    // Regression check against the committed baseline (tolerance as for gmm-quick, see gmm_runs.rs;
    // `DIPBENCH_BLESS=1` rewrites it).
    let baseline = repo_file("results/baselines/smoke");
    if std::env::var_os("DIPBENCH_BLESS").is_some() {
        std::fs::create_dir_all(&baseline).unwrap();
        std::fs::copy(out.join("table.csv"), baseline.join("table.csv")).unwrap();
    }
    let check = dipbench(&["check", out.to_str().unwrap(), "--against", baseline.to_str().unwrap(), "--rel", "0.05", "--tol", "1e-3"]);
    assert!(check.status.success(), "{}{}", String::from_utf8_lossy(&check.stdout), String::from_utf8_lossy(&check.stderr));
}

#[test]
fn latent_smoke_experiment_runs_the_latent_methods_and_matches_its_baseline() {
    let dir = temp_dir("smoke-latent");
    let out = dir.join("out");
    let exp = repo_file("experiments/smoke-latent.toml");
    ok(&dipbench(&["run", exp.to_str().unwrap(), "--out", out.to_str().unwrap(), "--no-progress"]));
    let text: toml::Table = toml::from_str(&read(&exp)).unwrap();
    let tasks: Vec<String> = text["image"]["tasks"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect();
    let mut rdr = csv::Reader::from_path(out.join("rows.csv")).unwrap();
    let rows: Vec<csv::StringRecord> = rdr.records().map(|r| r.unwrap()).collect();
    for t in &tasks {
        // The latent methods need only A's forward pass and its gradient: they run everywhere,
        // with finite metrics on the decoded 64×64 reconstruction.
        for m in ["LatentDAPS", "Latent-DPS"] {
            let mine: Vec<&csv::StringRecord> = rows.iter().filter(|r| &r[0] == t && &r[1] == m).collect();
            assert_eq!(mine.len(), 4 * 2, "{m} on {t}: 4 images × 2 metrics");
            for r in &mine {
                assert_eq!(&r[8], "ok", "{m} on {t}");
                assert!(r[5].parse::<f64>().unwrap().is_finite(), "{m} on {t}: {} = {}", &r[4], &r[5]);
            }
        }
        // PSLD runs where its scripts have settings (and A has the transpose its gluing term needs).
        let psld: Vec<&csv::StringRecord> = rows.iter().filter(|r| &r[0] == t && &r[1] == "PSLD").collect();
        let psld_tasks = ["sr4", "inpaint_box", "inpaint_random", "deblur_gauss", "deblur_motion"];
        assert_eq!(psld.len(), if psld_tasks.contains(&t.as_str()) { 8 } else { 0 }, "PSLD on {t}");
        assert!(psld.iter().all(|r| &r[8] == "ok" && r[5].parse::<f64>().unwrap().is_finite()), "PSLD on {t}: {psld:?}");
        let resample: Vec<&csv::StringRecord> = rows.iter().filter(|r| &r[0] == t && &r[1] == "ReSample").collect();
        assert_eq!(resample.len(), if ["sr4", "inpaint_random", "phase_retrieval"].contains(&t.as_str()) { 8 } else { 0 }, "ReSample on {t}");
        assert!(resample.iter().all(|r| &r[8] == "ok" && r[5].parse::<f64>().unwrap().is_finite()), "ReSample on {t}: {resample:?}");
        // DDRM needs A's SVD, which A∘D has not: unsupported, with the reason.
        let ddrm: Vec<&csv::StringRecord> = rows.iter().filter(|r| &r[0] == t && &r[1] == "DDRM").collect();
        assert!(!ddrm.is_empty() && ddrm.iter().all(|r| r[8].starts_with("unsupported: ") && r[8].contains("linear")), "DDRM on {t}: {ddrm:?}");
    }
    let recon = image::open(out.join("images/sr4/LatentDAPS/synthetic00000.png")).unwrap();
    assert_eq!((recon.width(), recon.height()), (64, 64));
    // Regression check against the committed baseline (as for the pixel smoke experiment), with
    // Latent-DPS's rows apart (`check_latent_smoke_against_baseline`).
    let baseline = repo_file("results/baselines/smoke-latent");
    if std::env::var_os("DIPBENCH_BLESS").is_some() {
        std::fs::create_dir_all(&baseline).unwrap();
        std::fs::copy(out.join("table.csv"), baseline.join("table.csv")).unwrap();
    }
    check_latent_smoke_against_baseline(&out, &baseline.join("table.csv"));
}

/// The latent smoke table against its baseline. Every method but Latent-DPS: `dipbench check` at
/// 5 % relative + 1e-3, as the pixel smoke experiment. Latent-DPS on the tiny latent model
/// amplifies rounding: on a CPU whose SIMD kernels (burn's element-wise and matrix-product
/// kernels, 512-bit on AVX-512 machines, 256-bit on AVX2 ones) sum in another order, with the same
/// code, its per-image values moved so that its SSIM means moved by up to 10 % and its PSNR
/// means by 0.5 %, its standard deviations over the 4 images by up to 35 % (measured between an
/// AVX2 and an AVX-512 EPYC). Its rows are held to the same rows, means within 25 % relative and
/// standard deviations within a factor 2: a Latent-DPS that broke (diverged, or ignored y) moves
/// them further or makes them non-finite.
fn check_latent_smoke_against_baseline(out: &Path, baseline: &Path) {
    const CHAOTIC: &str = "Latent-DPS";
    let (ours_chaotic, theirs_chaotic) = check_table_except(out, baseline, &[CHAOTIC]);
    assert!(ours_chaotic.len() > 1, "{CHAOTIC} has rows");
    let col = |name: &str| ours_chaotic[0].iter().position(|h| h == name).unwrap_or_else(|| panic!("a {name} column"));
    let (metric, mean, std) = (col("metric"), col("mean"), col("std"));
    for (x, y) in ours_chaotic.iter().zip(&theirs_chaotic).skip(1) {
        assert_eq!(x[..=metric], y[..=metric], "{CHAOTIC} rows in another order or with other coordinates");
        let num = |r: &Vec<String>, i: usize| -> f64 { r[i].parse().unwrap() };
        let (m, m0, s, s0) = (num(x, mean), num(y, mean), num(x, std), num(y, std));
        assert!(m.is_finite() && (m - m0).abs() <= 0.25 * m0.abs(), "{}: mean {m} against the baseline's {m0}", x[..=metric].join(","));
        assert!(s.is_finite() && s <= 2.0 * s0 && s0 <= 2.0 * s, "{}: std {s} against the baseline's {s0}", x[..=metric].join(","));
    }
}

/// A small image experiment: 3 methods × 2 tasks × 4 synthetic images = 24 jobs.
fn mini_experiment(dir: &Path) -> PathBuf {
    let text = r#"
[experiment]
name = "mini"
benchmark = "image"
seed = 5

[image]
dataset = "synthetic"
images = 4
side = 32
model = "tiny32"
tasks = ["sr4", "inpaint_box"]
metrics = ["psnr", "ssim-piq"]
runs = { inpaint_box = 2 }

[[method]]
label = "DDRM"
sampler = "ddrm"
preset = "paper"
steps = 4

[[method]]
label = "DAPS"
sampler = "daps"
preset = "daps-1k"
annealing_steps = 3
ode_steps = 1
langevin_steps = 3

[[method]]
label = "DPS"
sampler = "dps"
preset = "dps-repo"
steps = 6
"#;
    let path = dir.join("mini.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn run_files(out: &Path) -> usize {
    walk(&out.join("runs")).into_iter().filter(|p| p.extension().is_some_and(|e| e == "json")).count()
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else { return vec![] };
    rd.filter_map(|e| e.ok()).flat_map(|e| if e.path().is_dir() { walk(&e.path()) } else { vec![e.path()] }).collect()
}

/// The mini experiment runs inpaint_box twice per image (best-of-2): each row keeps both runs,
/// its `metrics` are the per-metric best (max PSNR, max SSIM), and the table's mean is the mean
/// over images of those bests — checked here from the row files, independently of the table code.
fn best_of_n_is_applied_per_image_and_metric(out: &Path) {
    let rows: Vec<serde_json::Value> = walk(&out.join("runs").join("inpaint_box").join("DPS"))
        .iter()
        .map(|p| serde_json::from_str::<serde_json::Value>(&read(p)).unwrap()["rows"][0].clone())
        .collect();
    assert_eq!(rows.len(), 4);
    let mut best_psnr = vec![];
    for r in &rows {
        let runs = r["run_metrics"].as_array().expect("two runs recorded");
        assert_eq!(runs.len(), 2);
        for m in ["psnr", "ssim-piq"] {
            let vals: Vec<f64> = runs.iter().map(|run| run[m].as_f64().unwrap()).collect();
            assert_eq!(r["metrics"][m].as_f64().unwrap(), vals[0].max(vals[1]), "{m}: best of {vals:?}");
        }
        assert_ne!(runs[0]["psnr"], runs[1]["psnr"], "the two runs draw different noise");
        best_psnr.push(r["metrics"]["psnr"].as_f64().unwrap());
    }
    let mean = best_psnr.iter().sum::<f64>() / 4.0;
    let mut rdr = csv::Reader::from_path(out.join("table.csv")).unwrap();
    let header = rdr.headers().unwrap().clone();
    let at = |name: &str| header.iter().position(|h| h == name).unwrap();
    let row = rdr.records().map(|r| r.unwrap()).find(|r| &r[at("task")] == "inpaint_box" && &r[at("method")] == "DPS" && &r[at("metric")] == "psnr").unwrap();
    let got: f64 = row[at("mean")].parse().unwrap();
    assert!((got - mean).abs() <= 1e-9 * mean.abs(), "table mean {got} vs mean of per-image bests {mean}");
}

#[test]
fn killed_and_sharded_sweeps_give_the_uninterrupted_table() {
    let dir = temp_dir("resume");
    let exp = mini_experiment(&dir);
    let e = exp.to_str().unwrap();
    let whole = dir.join("whole");
    ok(&dipbench(&["run", e, "--out", whole.to_str().unwrap(), "--no-progress", "--jobs", "1"]));
    let reference = (without_seconds(&read(&whole.join("table.csv"))), without_seconds(&read(&whole.join("rows.csv"))));
    best_of_n_is_applied_per_image_and_metric(&whole);

    // Three shards into one folder, then `dipbench table`.
    let sharded = dir.join("sharded");
    for i in 0..3 {
        let shard = format!("{i}/3");
        let out = dipbench(&["run", e, "--out", sharded.to_str().unwrap(), "--no-progress", "--shard", &shard]);
        ok(&out);
        assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("shard {i}/3: 8 jobs")), "{}", String::from_utf8_lossy(&out.stderr));
    }
    ok(&dipbench(&["table", e, "--out", sharded.to_str().unwrap()]));
    assert_eq!(reference, (without_seconds(&read(&sharded.join("table.csv"))), without_seconds(&read(&sharded.join("rows.csv")))), "3 shards ≠ 1");

    // kill -9 mid-sweep, then rerun: same table, and no finished job is run again.
    let killed = dir.join("killed");
    let mut child = Command::new(env!("CARGO_BIN_EXE_dipbench"))
        .args(["run", e, "--out", killed.to_str().unwrap(), "--no-progress", "--jobs", "1"])
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while run_files(&killed) < 5 && start.elapsed().as_secs() < 600 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let done = run_files(&killed);
    assert!((5..24).contains(&done), "the kill should land mid-sweep ({done} of 24 done)");
    let rerun = dipbench(&["run", e, "--out", killed.to_str().unwrap(), "--no-progress"]);
    ok(&rerun);
    let stderr = String::from_utf8_lossy(&rerun.stderr);
    assert!(stderr.contains(&format!("({} run now, {done} already done)", 24 - done)), "{stderr}");
    assert_eq!(
        reference,
        (without_seconds(&read(&killed.join("table.csv"))), without_seconds(&read(&killed.join("rows.csv")))),
        "killed + resumed ≠ uninterrupted"
    );
    // No temporary files are left behind.
    assert!(walk(&killed).iter().all(|p| !p.to_string_lossy().ends_with(".tmp")), "leftover temporary files");

    // The same results with a [paper] table print the published numbers beside ours (DPS
    // Table 6: PSNR/SSIM on FFHQ) and the paper's other methods on rows of their own.
    let with_paper = dir.join("mini-paper.toml");
    let paper_file = repo_file("results/paper/dps.csv");
    std::fs::write(&with_paper, format!("{}\n[paper]\nfile = {:?}\ntables = [\"6\"]\ndataset = \"ffhq256-1k\"\n", read(&exp), paper_file.to_str().unwrap()))
        .unwrap();
    let md = ok(&dipbench(&["table", with_paper.to_str().unwrap(), "--out", whole.to_str().unwrap()]));
    let paper_csv = read(&paper_file);
    let dps_sr4_psnr = paper_csv
        .lines()
        .find(|l| l.starts_with("DPS,6,ffhq256-1k,sr4,DPS,pixel,psnr,"))
        .expect("DPS Table 6 SR PSNR")
        .split(',')
        .nth(7)
        .unwrap()
        .parse::<f64>()
        .unwrap();
    assert!(md.contains(&format!("(paper {dps_sr4_psnr:.2}")), "{md}");
    assert!(md.contains("Score-SDE (paper only)") && md.contains("Paper numbers in parentheses"), "{md}");
    let tex = read(&whole.join("table.tex"));
    assert!(tex.contains(&format!("({dps_sr4_psnr:.2})")), "{tex}");

    // Image grids: per task GT | y | 3 methods, 2 rows of 128-pixel panels (plus the labels).
    let listed = ok(&dipbench(&["grid", e, "--out", whole.to_str().unwrap(), "--images", "2"]));
    for task in ["sr4", "inpaint_box"] {
        let png = whole.join("grids").join(format!("grid-{task}.png"));
        assert!(listed.contains(png.to_str().unwrap()), "{listed}");
        let img = image::open(&png).unwrap();
        assert!(img.width() > 5 * 128 && img.height() > 2 * 128, "{}", png.display());
    }
}

/// `tasks = [...]` leaves the other tasks out for that method: no jobs, "–" in the table with
/// the reason; a task outside `image.tasks` is refused naming the key.
#[test]
fn a_method_limited_to_some_tasks_runs_only_those() {
    let dir = temp_dir("method-tasks");
    let text = r#"
[experiment]
name = "limited"
benchmark = "image"
seed = 3

[image]
dataset = "synthetic"
images = 2
side = 32
model = "tiny32"
tasks = ["sr4", "inpaint_box"]
metrics = ["psnr"]

[[method]]
label = "DDRM"
sampler = "ddrm"
preset = "paper"
steps = 3
tasks = ["sr4"]

[[method]]
label = "DDNM"
sampler = "ddnm"
preset = "paper"
steps = 3
"#;
    let exp = dir.join("limited.toml");
    std::fs::write(&exp, text).unwrap();
    let out = dir.join("out");
    let md = ok(&dipbench(&["run", exp.to_str().unwrap(), "--out", out.to_str().unwrap(), "--no-progress"]));
    let rows = read(&out.join("rows.csv"));
    assert_eq!(rows.lines().filter(|l| l.starts_with("sr4,DDRM,")).count(), 2, "{rows}");
    assert_eq!(rows.lines().filter(|l| l.starts_with("inpaint_box,DDRM,")).count(), 0, "{rows}");
    assert_eq!(rows.lines().filter(|l| l.starts_with("inpaint_box,DDNM,")).count(), 2, "{rows}");
    assert!(md.contains("DDRM on inpaint_box: not in this experiment: the method runs sr4 only"), "{md}");
    let table = read(&out.join("table.csv"));
    let cell = table.lines().find(|l| l.starts_with("inpaint_box,DDRM,psnr,")).expect("a cell for the left-out task");
    assert!(cell.contains("not in this experiment"), "{cell}");

    std::fs::write(&exp, text.replace("tasks = [\"sr4\"]", "tasks = [\"sr4\", \"hdr\"]")).unwrap();
    let bad = dipbench(&["run", exp.to_str().unwrap(), "--out", dir.join("bad").to_str().unwrap(), "--no-progress"]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.contains("`tasks`") && err.contains("hdr") && err.contains("DDRM"), "{err}");
}

#[test]
fn every_experiment_file_validates() {
    let dir = repo_file("experiments");
    let out = temp_dir("validate");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            // `slurm` loads and validates the experiment (every method resolved on every task)
            // without running anything.
            let o = dipbench(&["slurm", p.to_str().unwrap(), "--shards", "2", "--out", out.join(p.file_stem().unwrap()).to_str().unwrap()]);
            ok(&o);
            n += 1;
        }
    }
    assert!(n >= 10, "only {n} experiment files");
}

#[test]
fn a_bad_dataset_folder_names_the_file() {
    let dir = temp_dir("dataset");
    let exp = mini_experiment(&dir);
    let images = dir.join("images");
    make_images(&images, 4, 32);
    let run =
        |out: &str| dipbench(&["run", exp.to_str().unwrap(), "--out", dir.join(out).to_str().unwrap(), "--dataset", images.to_str().unwrap(), "--no-progress"]);
    // Wrong size.
    image::RgbImage::new(48, 32).save(images.join("00001.png")).unwrap();
    let out = run("a");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("00001.png") && err.contains("48×32"), "{err}");
    // Truncated file.
    let bytes = std::fs::read(images.join("00002.png")).unwrap();
    std::fs::write(images.join("00001.png"), &bytes[..bytes.len() / 2]).unwrap();
    let out = run("b");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("00001.png"), "{err}");
    // Too few images.
    std::fs::remove_file(images.join("00001.png")).unwrap();
    let out = run("c");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("3 usable images"), "{err}");
}

/// Set metrics at table time (`[image] set_metrics = ["fid"]`): the table's FID of each method is
/// the FID that `dipbench score` computes between the same folders (the path the metric tests
/// check against pytorch-fid), with golden-fill Inception weights so nothing is downloaded.
#[test]
fn golden_table_time_fid_is_the_fid_of_score() {
    let dir = temp_dir("fid");
    let weights = dir.join("weights");
    std::fs::create_dir_all(&weights).unwrap();
    dipbench_tests::write_golden_checkpoints(&weights);
    let methods = r#"
[[method]]
label = "DDRM"
sampler = "ddrm"
preset = "paper"
steps = 3

[[method]]
label = "PnP-ADMM"
sampler = "pnp-admm"
preset = "default"
iterations = 2"#;
    let exp = dipbench_tests::write_tiny_image_experiment(&dir, "fid", 3, "tasks = [\"sr4\"]\nmetrics = [\"psnr\"]\nset_metrics = [\"fid\"]", methods);
    let out = dir.join("out");
    let run = Command::new(env!("CARGO_BIN_EXE_dipbench"))
        .args(["run", exp.to_str().unwrap(), "--out", out.to_str().unwrap(), "--no-progress"])
        .env("RUST_LOG", "warn")
        .env("DIPBENCH_CHECKPOINTS", &weights)
        .env("DIPBENCH_CACHE", weights.join("cache"))
        .output()
        .unwrap();
    let md = ok(&run);
    assert!(md.contains("fid"), "{md}");
    // The ground truth's features are cached under the dataset and size they come from, for
    // every later experiment on the same images.
    let cached: Vec<String> =
        std::fs::read_dir(weights.join("cache/features")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(cached.iter().any(|f| f.starts_with("synthetic-32-tf-fid-")), "{cached:?}");
    let mut rdr = csv::Reader::from_path(out.join("table.csv")).unwrap();
    let header = rdr.headers().unwrap().clone();
    let at = |name: &str| header.iter().position(|h| h == name).unwrap();
    let fid_rows: Vec<csv::StringRecord> = rdr.records().map(|r| r.unwrap()).filter(|r| &r[at("metric")] == "fid").collect();
    assert_eq!(fid_rows.len(), 2, "one FID per method");
    for row in fid_rows {
        let table: f64 = row[at("mean")].parse().unwrap();
        let method_dir = out.join("images").join("sr4").join(dipbench::experiment::slug(&row[at("method")]));
        let score = Command::new(env!("CARGO_BIN_EXE_dipbench"))
            .args(["score", method_dir.to_str().unwrap(), out.join("images").join("gt").to_str().unwrap(), "--metrics", "fid"])
            .env("RUST_LOG", "warn")
            .env("DIPBENCH_CHECKPOINTS", &weights)
            .env("DIPBENCH_CACHE", weights.join("cache"))
            .output()
            .unwrap();
        let text = ok(&score);
        let fid: f64 = text.lines().find_map(|l| l.strip_prefix("fid: ")).unwrap_or_else(|| panic!("{text}")).trim().parse().unwrap();
        assert!(table > 0.0 && (table - fid).abs() <= 1e-6 * fid, "{}: table FID {table} vs score {fid}", &row[at("method")]);
    }
    // Images that are not the experiment's (a larger grid left them, or a hand copied them in)
    // do not enter the table's FID.
    let fids = |table: &str| table.lines().filter(|l| l.contains(",fid,")).map(str::to_string).collect::<Vec<_>>();
    let before = fids(&read(&out.join("table.csv")));
    assert_eq!(before.len(), 2, "one FID line per method");
    for folder in ["gt", "sr4/DDRM", "sr4/PnP-ADMM"] {
        image::RgbImage::from_pixel(32, 32, image::Rgb([250, 0, 0])).save(out.join("images").join(folder).join("zzz-extra.png")).unwrap();
    }
    let table = Command::new(env!("CARGO_BIN_EXE_dipbench"))
        .args(["table", exp.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .env("DIPBENCH_CHECKPOINTS", &weights)
        .env("DIPBENCH_CACHE", weights.join("cache"))
        .output()
        .unwrap();
    ok(&table);
    assert_eq!(fids(&read(&out.join("table.csv"))), before, "FID over the experiment's images only");
}

/// rows.csv as (task, method, image, metric) → value.
fn row_values(out: &Path) -> BTreeMap<(String, String, String, String), f64> {
    let mut rdr = csv::Reader::from_path(out.join("rows.csv")).unwrap();
    let header = rdr.headers().unwrap().clone();
    let at = |name: &str| header.iter().position(|h| h == name).unwrap();
    rdr.records()
        .map(|r| r.unwrap())
        .map(|r| {
            ((r[at("task")].to_string(), r[at("method")].to_string(), r[at("image")].to_string(), r[at("metric")].to_string()), r[at("value")].parse().unwrap())
        })
        .collect()
}

/// `[image] batch = 4` runs the 4 images of a (task, method) with a shared operator (sr4) through
/// the sampler at once, and gives the rows of batch 1 within 1e-3 relative: every row draws its
/// noise from its own stream, so only the UNet's float sums differ (its convolutions block their
/// sums by batch size, ≤ 5e-4 relative on the samples in `tests/sampler_invariance.rs`). A run
/// stopped between batches resumes: the missing jobs run, in a smaller batch, and the rows agree.
#[test]
fn batched_images_give_the_rows_of_batch_one_and_resume() {
    let dir = temp_dir("batch");
    let one = mini_experiment(&dir);
    let text = read(&one).replace("runs = { inpaint_box = 2 }", "runs = { inpaint_box = 2 }\nbatch = 4");
    let four = dir.join("mini-batch4.toml");
    std::fs::write(&four, text).unwrap();
    let (out1, out4) = (dir.join("one"), dir.join("four"));
    ok(&dipbench(&["run", one.to_str().unwrap(), "--out", out1.to_str().unwrap(), "--no-progress"]));
    ok(&dipbench(&["run", four.to_str().unwrap(), "--out", out4.to_str().unwrap(), "--no-progress"]));
    let close = |a: &BTreeMap<_, f64>, b: &BTreeMap<_, f64>, what: &str| {
        assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>(), "{what}: the same rows");
        for (k, x) in a {
            let y = b[k];
            assert!((x - y).abs() <= 1e-3 * y.abs().max(1.0), "{what}: {k:?}: {x} vs {y}");
        }
    };
    let (rows1, rows4) = (row_values(&out1), row_values(&out4));
    close(&rows4, &rows1, "batch 4 vs batch 1");

    // As if killed after some batches: two sr4 job files of one method are gone.
    let gone: Vec<PathBuf> = walk(&out4.join("runs").join("sr4").join("DPS")).into_iter().take(2).collect();
    assert_eq!(gone.len(), 2);
    for p in &gone {
        std::fs::remove_file(p).unwrap();
    }
    let again = dipbench(&["run", four.to_str().unwrap(), "--out", out4.to_str().unwrap(), "--no-progress"]);
    ok(&again);
    assert!(String::from_utf8_lossy(&again.stderr).contains("(2 run now"), "{}", String::from_utf8_lossy(&again.stderr));
    close(&row_values(&out4), &rows1, "resumed batch 4 vs batch 1");
}
