//! End-to-end tests of the `dipbench` binary on small Gaussian-mixture experiments.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn dipbench(args: &[&str], threads: Option<usize>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dipbench"));
    if let Some(n) = threads {
        cmd.arg("--threads").arg(n.to_string());
    }
    cmd.args(args).env("RUST_LOG", "warn").output().expect("dipbench runs")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dipbench-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A small but complete experiment: every sampler, 2 × 2 jobs.
fn tiny_experiment(dir: &Path, extra_gmm: &str, extra_method: &str) -> PathBuf {
    let methods: String = ["exact", "dps", "mcg", "ddrm", "pigdm", "diffpir", "reddiff", "daps"]
        .iter()
        .map(|s| format!("[[method]]\nlabel = \"{s}\"\nsampler = \"{s}\"\n"))
        .collect();
    let text = format!(
        "[experiment]\nname = \"tiny\"\nbenchmark = \"gmm\"\nseed = 3\n\n[gmm]\ndims = [8]\nobs_dims = [1, 2]\nreplicates = 2\n\
         samples = 200\nbudgets = [{{ steps = 20, eta = 0.6 }}]\n{extra_gmm}\n\n{methods}{extra_method}"
    );
    let path = dir.join("tiny.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// rows.csv without the (non-deterministic) wall-time column.
fn rows_without_time(out: &Path) -> String {
    read(&out.join("rows.csv"))
        .lines()
        .map(|l| l.rsplit_once(',').map(|(a, _)| a).unwrap_or(l).to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn same_seed_gives_identical_tables_whatever_the_number_of_threads() {
    let dir = temp_dir("threads");
    let exp = tiny_experiment(&dir, "", "");
    let (one, two) = (dir.join("one"), dir.join("two"));
    for (out, threads) in [(&one, 1), (&two, 2)] {
        let o = dipbench(&["run", exp.to_str().unwrap(), "--out", out.to_str().unwrap(), "--no-progress"], Some(threads));
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    assert_eq!(read(&one.join("table.csv")), read(&two.join("table.csv")));
    assert_eq!(rows_without_time(&one), rows_without_time(&two));
    // And the table has one row per (d, d_y, method) with finite numbers.
    let table = read(&one.join("table.csv"));
    assert_eq!(table.lines().count(), 1 + 2 * 8, "{table}");
    assert!(!table.contains("NaN"), "{table}");
    assert!(read(&one.join("table.md")).contains("| 8 | 2 |"));
}

#[test]
fn rerun_skips_finished_jobs_and_reproduces_the_table() {
    let dir = temp_dir("resume");
    let exp = tiny_experiment(&dir, "", "");
    let out = dir.join("out");
    let args = ["run", exp.to_str().unwrap(), "--out", out.to_str().unwrap(), "--no-progress"];
    assert!(dipbench(&args, None).status.success());
    let first = read(&out.join("table.csv"));
    // Lose one job's results (as a kill during that job would) and rerun.
    let runs: Vec<_> = std::fs::read_dir(out.join("runs")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(runs.len(), 4);
    std::fs::remove_file(&runs[0]).unwrap();
    let o = dipbench(&args, None);
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("1 run now, 3 already done"), "{err}");
    assert_eq!(read(&out.join("table.csv")), first);
}

#[test]
fn unknown_keys_are_errors_naming_the_key_and_file() {
    let dir = temp_dir("keys");
    let exp = tiny_experiment(&dir, "dimz = [3]", "");
    let o = dipbench(&["run", exp.to_str().unwrap(), "--out", dir.join("o").to_str().unwrap()], None);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("dimz") && err.contains("tiny.toml"), "{err}");

    let exp = tiny_experiment(&dir, "", "[[method]]\nlabel = \"bad\"\nsampler = \"dps\"\nzeta = 0.5\n");
    let o = dipbench(&["run", exp.to_str().unwrap(), "--out", dir.join("o").to_str().unwrap()], None);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("zeta") && err.contains("`bad`") && err.contains("scale"), "{err}");

    let exp = tiny_experiment(&dir, "", "[[method]]\nlabel = \"bad\"\nsampler = \"dpz\"\n");
    let o = dipbench(&["run", exp.to_str().unwrap(), "--out", dir.join("o").to_str().unwrap()], None);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("dpz"), "{err}");
}

#[test]
fn results_of_another_configuration_are_not_mixed_in() {
    let dir = temp_dir("fingerprint");
    let out = dir.join("out");
    let exp = tiny_experiment(&dir, "", "");
    assert!(dipbench(&["run", exp.to_str().unwrap(), "--out", out.to_str().unwrap(), "--no-progress"], None).status.success());
    // Same folder, changed method setting: refused with an explanation.
    let changed = tiny_experiment(&dir, "", "[[method]]\nlabel = \"dps2\"\nsampler = \"dps\"\nscale = 0.5\n");
    let o = dipbench(&["run", changed.to_str().unwrap(), "--out", out.to_str().unwrap(), "--no-progress"], None);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("different configuration"), "{err}");
}
