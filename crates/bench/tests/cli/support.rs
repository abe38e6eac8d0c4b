//! Helpers shared by the command-line tests: running the binary, scratch folders, small
//! experiment files.

use std::ffi::OsStr;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs `dipbench` with `args` (logging at warn level); `threads` sets `--threads`.
pub fn dipbench_with(args: &[&str], threads: Option<usize>, envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dipbench"));
    if let Some(n) = threads {
        cmd.arg("--threads").arg(n.to_string());
    }
    // The shared feature cache of FID/KID goes to the tests' scratch area, not the home folder.
    let cache = scratch_root().join("feature-cache");
    cmd.args(args).env("RUST_LOG", "warn").env_remove("RUST_BACKTRACE").env("DIPBENCH_CACHE", cache);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("dipbench runs")
}

/// Runs `dipbench` with `args`.
pub fn dipbench(args: &[&str]) -> Output {
    dipbench_with(args, None, &[])
}

/// Standard output of a run that must succeed (panics with both streams otherwise).
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Standard error of a run that must fail with exit status 1 and no panic.
pub fn refused(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "expected a clean refusal (exit 1)\nstdout:\n{}\nstderr:\n{err}", String::from_utf8_lossy(&out.stdout));
    assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "a panic reached the user:\n{err}");
    err
}

/// Where the tests' scratch folders live: cargo's per-target temporary folder, so that nothing
/// is left in the system's temporary folder and `cargo clean` removes it all.
fn scratch_root() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("dipbench-cli")
}

/// A scratch folder of one test, removed when it goes out of scope unless the test is failing
/// (then it is kept for inspection, and its path is printed).
pub struct Scratch(PathBuf);

impl Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<OsStr> for Scratch {
    fn as_ref(&self) -> &OsStr {
        self.0.as_os_str()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("scratch folder kept: {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A fresh, empty scratch folder for `name` within the running test. The test harness names
/// each test's thread after the test (`module::test`), so two tests of this binary running at
/// once never share a folder even when they pass the same `name`.
pub fn temp_dir(name: &str) -> Scratch {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("main").replace("::", ".");
    let dir = scratch_root().join(format!("{test}.{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    Scratch(dir)
}

/// A file of the repository.
pub fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(rel)
}

/// The float32 tensor `key` of the safetensors file at `path`, widened to f64.
pub fn read_tensor(path: &Path, key: &str) -> Vec<f64> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let t = st.tensor(key).unwrap_or_else(|e| panic!("{}: {key}: {e}", path.display()));
    t.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64).collect()
}

/// The text of a file (panics naming it).
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A `table.csv` held to a baseline's: rows of every method but `loose` through `dipbench check`
/// at 5 % relative + 1e-3 (the two parts written into `out` as `check-ours.csv` and
/// `check-baseline.csv`), and the cells of the `loose` methods' rows, ours and the baseline's,
/// each with the header first, for the caller's own looser test.
pub fn check_table_except(out: &Path, baseline: &Path, loose: &[&str]) -> (Vec<Vec<String>>, Vec<Vec<String>>) {
    let split = |text: &str| -> (String, Vec<Vec<String>>) {
        let mut lines = text.lines();
        let header = lines.next().expect("a header").to_string();
        let method = header.split(',').position(|h| h == "method").expect("a method column");
        let (mut rest, mut picked) = (vec![header.clone()], vec![header.split(',').map(String::from).collect::<Vec<_>>()]);
        for line in lines {
            let cells: Vec<String> = line.split(',').map(String::from).collect();
            if loose.contains(&cells[method].as_str()) { picked.push(cells) } else { rest.push(line.to_string()) }
        }
        (rest.join("\n") + "\n", picked)
    };
    let ((ours, ours_loose), (theirs, theirs_loose)) = (split(&read(&out.join("table.csv"))), split(&read(baseline)));
    let (ours_path, theirs_path) = (out.join("check-ours.csv"), out.join("check-baseline.csv"));
    std::fs::write(&ours_path, ours).unwrap();
    std::fs::write(&theirs_path, theirs).unwrap();
    ok(&dipbench(&["check", ours_path.to_str().unwrap(), "--against", theirs_path.to_str().unwrap(), "--rel", "0.05", "--tol", "1e-3"]));
    assert!(ours_loose.len() == theirs_loose.len(), "{loose:?} rows: {} against the baseline's {}", ours_loose.len() - 1, theirs_loose.len() - 1);
    (ours_loose, theirs_loose)
}

/// A small but complete GMM experiment (every sampler of the list, 2 × 2 jobs) at `dir/name.toml`,
/// with extra lines in `[gmm]` and extra method tables.
pub fn gmm_experiment(dir: &Path, name: &str, extra_gmm: &str, extra_method: &str) -> PathBuf {
    let methods: String = ["exact", "dps", "mcg", "ddrm", "pigdm", "diffpir", "reddiff", "daps"]
        .iter()
        .map(|s| format!("[[method]]\nlabel = \"{s}\"\nsampler = \"{s}\"\n"))
        .collect();
    let text = format!(
        "[experiment]\nname = \"{name}\"\nbenchmark = \"gmm\"\nseed = 3\n\n[gmm]\ndims = [8]\nobs_dims = [1, 2]\nreplicates = 2\n\
         samples = 200\nbudgets = [{{ steps = 20, eta = 0.6 }}]\n{extra_gmm}\n\n{methods}{extra_method}"
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// A one-job GMM experiment with two cheap methods, for the integrity tests.
pub fn small_gmm(dir: &Path, name: &str, header: &str, grid: &str, methods: &str) -> PathBuf {
    let text = format!("[experiment]\nname = \"{name}\"\nbenchmark = \"gmm\"\nseed = 1\n{header}\n\n[gmm]\n{grid}\n\n{methods}");
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// The default grid and methods of [`small_gmm`].
pub const SMALL_GRID: &str = "dims = [4]\nobs_dims = [1]\nreplicates = 1\nsamples = 50\nbudgets = [{ steps = 5, eta = 0.6 }]";
/// Two cheap methods.
pub const SMALL_METHODS: &str = "[[method]]\nlabel = \"exact\"\nsampler = \"exact\"\n\n[[method]]\nlabel = \"DDRM\"\nsampler = \"ddrm\"\n";

/// Runs the image experiment `exp` into `out` in process on `devices` and reads its rows back
/// (every job file checked), as `dipbench run` does.
pub fn run_image_rows<B: dipbench_nn::NnAutodiffBackend>(
    exp: &dipbench::experiment::Experiment,
    out: &Path,
    devices: &[B::Device],
    opts: &dipbench::pipeline::RunOptions,
) -> anyhow::Result<(dipbench::pipeline::RunSummary, Vec<dipbench::benchmarks::image::ImageRow>)>
where
    B::Device: Sync,
{
    use dipbench::pipeline::runner;
    let dipbench::experiment::Kind::Image(img) = &exp.kind else { anyhow::bail!("{} is not an image experiment", exp.path.display()) };
    let bench = dipbench::benchmarks::image::ImageBenchmark::for_run(exp, img, opts.dataset.as_deref())?;
    let summary = runner::run::<_, B>(&bench, out, devices, opts)?;
    Ok((summary, runner::collect(&bench, out)?))
}
