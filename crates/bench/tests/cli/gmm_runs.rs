//! End-to-end tests of the `dipbench` binary on small Gaussian-mixture experiments.

use std::path::Path;
use std::process::Output;

use crate::support::{check_table_except, dipbench_with, gmm_experiment, read, temp_dir};

fn dipbench(args: &[&str], threads: Option<usize>) -> Output {
    dipbench_with(args, threads, &[])
}

/// rows.csv without the (non-deterministic) wall-time column.
fn rows_without_time(out: &Path) -> String {
    read(&out.join("rows.csv")).lines().map(|l| l.rsplit_once(',').map(|(a, _)| a).unwrap_or(l).to_string()).collect::<Vec<_>>().join("\n")
}

#[test]
fn same_seed_gives_identical_tables_whatever_the_number_of_threads() {
    let dir = temp_dir("threads");
    let exp = gmm_experiment(&dir, "tiny", "", "");
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
    let exp = gmm_experiment(&dir, "tiny", "", "");
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
    let exp = gmm_experiment(&dir, "tiny", "dimz = [3]", "");
    let o = dipbench(&["run", exp.to_str().unwrap(), "--out", dir.join("o").to_str().unwrap()], None);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("dimz") && err.contains("tiny.toml"), "{err}");

    let exp = gmm_experiment(&dir, "tiny", "", "[[method]]\nlabel = \"bad\"\nsampler = \"dps\"\nzeta = 0.5\n");
    let o = dipbench(&["run", exp.to_str().unwrap(), "--out", dir.join("o").to_str().unwrap()], None);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("zeta") && err.contains("`bad`") && err.contains("scale"), "{err}");

    let exp = gmm_experiment(&dir, "tiny", "", "[[method]]\nlabel = \"bad\"\nsampler = \"dpz\"\n");
    let o = dipbench(&["run", exp.to_str().unwrap(), "--out", dir.join("o").to_str().unwrap()], None);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("dpz"), "{err}");
}

#[test]
fn results_of_another_configuration_are_not_mixed_in() {
    let dir = temp_dir("fingerprint");
    let out = dir.join("out");
    let exp = gmm_experiment(&dir, "tiny", "", "");
    assert!(dipbench(&["run", exp.to_str().unwrap(), "--out", out.to_str().unwrap(), "--no-progress"], None).status.success());
    // Same folder, changed method setting: refused with an explanation.
    let changed = gmm_experiment(&dir, "tiny", "", "[[method]]\nlabel = \"dps2\"\nsampler = \"dps\"\nscale = 0.5\n");
    let o = dipbench(&["run", changed.to_str().unwrap(), "--out", out.to_str().unwrap(), "--no-progress"], None);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("different configuration"), "{err}");
}

/// The particle methods' labels in `gmm-quick`: their rows are checked loosely
/// ([`check_against_baseline`]).
const PARTICLE_METHODS: [&str; 2] = ["MCGdiff", "DDSMC"];

/// The regression baselines of CI live in `results/baselines/<name>/table.csv`. Same machine,
/// same binary: the tables are identical. Across CPUs whose SIMD paths round differently, the
/// samplers' trajectories diverge at float level and the sliced distances of 500-sample sets
/// move by Monte-Carlo amounts (a few %), while a broken sampler moves them by far more: 5 %
/// relative + 1e-3 absolute. The particle methods are the exception: resampling turns a rounding
/// difference in a weight into another ancestor, and with one cloud of 500 particles and 3
/// replicates their rows moved by up to 47 % (sliced W1 means) and several-fold (the intervals)
/// under a reordered sum. Their sliced W1 means are held within a factor 3 of the baseline (an
/// SMC sampler that ignored its weights would land near the unweighted methods' distances,
/// several times larger on most rows), their other columns not at all.
/// `DIPBENCH_BLESS=1 cargo test` rewrites a baseline.
fn check_against_baseline(out: &Path, name: &str) {
    let baseline = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../results/baselines").join(name);
    if std::env::var_os("DIPBENCH_BLESS").is_some() {
        std::fs::create_dir_all(&baseline).unwrap();
        std::fs::copy(out.join("table.csv"), baseline.join("table.csv")).unwrap();
    }
    assert!(baseline.join("table.csv").is_file(), "no baseline {}; create it with DIPBENCH_BLESS=1", baseline.display());
    // Particle rows: the same rows, each sliced W1 mean within a factor 3.
    let (a, b) = check_table_except(out, &baseline.join("table.csv"), &PARTICLE_METHODS);
    let sw1 = a[0].iter().position(|h| h == "sw1_mean").expect("a sw1_mean column");
    let method = a[0].iter().position(|h| h == "method").expect("a method column");
    for (x, y) in a.iter().zip(&b).skip(1) {
        assert_eq!(x[..=method], y[..=method], "particle rows in another order or with other coordinates");
        let (v, w): (f64, f64) = (x[sw1].parse().unwrap(), y[sw1].parse().unwrap());
        assert!(v.is_finite() && v / w < 3.0 && w / v < 3.0, "{}: sliced W1 {v} against the baseline's {w}", x[..sw1].join(","));
    }
}

#[test]
fn gmm_quick_matches_its_baseline_and_check_catches_a_planted_change() {
    let dir = temp_dir("quick");
    let exp = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments/gmm-quick.toml");
    let out = dir.join("out");
    let o = dipbench(&["run", exp.to_str().unwrap(), "--out", out.to_str().unwrap(), "--no-progress"], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    check_against_baseline(&out, "gmm-quick");

    // Plant a change of one metric (DDRM's sliced W1 in the first row it has) by 10 %.
    let table = read(&out.join("table.csv"));
    let mut lines: Vec<String> = table.lines().map(String::from).collect();
    let header: Vec<&str> = lines[0].split(',').collect();
    let col = header.iter().position(|h| *h == "sw1_mean").unwrap();
    let i = lines.iter().position(|l| l.contains(",DDRM,")).unwrap();
    let mut fields: Vec<String> = lines[i].split(',').map(String::from).collect();
    let v: f64 = fields[col].parse().unwrap();
    fields[col] = (v * 1.1).to_string();
    lines[i] = fields.join(",");
    let planted = dir.join("planted.csv");
    std::fs::write(&planted, lines.join("\n") + "\n").unwrap();
    let o = dipbench(&["check", planted.to_str().unwrap(), "--against", out.to_str().unwrap(), "--rel", "0.05"], None);
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(text.contains("1 difference(s)") && text.contains("method=DDRM") && text.contains("sw1_mean"), "{text}");
    // Within tolerance it passes; a missing row is reported.
    let o = dipbench(&["check", planted.to_str().unwrap(), "--against", out.to_str().unwrap(), "--rel", "0.2"], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    lines.remove(i);
    std::fs::write(&planted, lines.join("\n") + "\n").unwrap();
    let o = dipbench(&["check", planted.to_str().unwrap(), "--against", out.to_str().unwrap()], None);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(!o.status.success() && text.contains("missing from"), "{text}");
}

/// `dipbench figures` draws the samples the table scored: recomputed from the job's seeds, each
/// method's sliced W1 equals its row in `rows.csv`; one PNG per (d, d_y, budget) and replicate
/// asked for, with the method's points drawn in every panel; `table` links them.
#[test]
fn figures_recompute_the_scored_samples_and_the_table_links_them() {
    use dipbench::benchmarks::gmm::{job_problem, jobs, method_samples};
    use dipbench::experiment::Kind;
    let dir = temp_dir("figures");
    let exp_path = gmm_experiment(&dir, "tiny", "", "");
    let out = dir.join("out");
    let o = dipbench(&["run", exp_path.to_str().unwrap(), "--out", out.to_str().unwrap(), "--no-progress"], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let exp = dipbench::experiment::Experiment::load(&exp_path).unwrap();
    let Kind::Gmm(gmm) = &exp.kind else { panic!("a GMM experiment") };
    let job = jobs(&gmm.grid).into_iter().find(|j| j.d_y == 2 && j.replicate == 1).unwrap();
    let problem = job_problem(&exp, gmm, &job).unwrap();
    let rows = read(&out.join("rows.csv"));
    let header: Vec<&str> = rows.lines().next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    for (i, m) in exp.methods.iter().enumerate() {
        let s = method_samples::<burn::backend::Autodiff<burn::backend::Flex>>(&exp, gmm, &job, &problem, i, &Default::default()).unwrap();
        let sw1 = dipbench_metrics::sliced_w1(&s.x, &problem.reference, job.d, exp.metric.projections, problem.metric_seed);
        let row: Vec<&str> = rows
            .lines()
            .map(|l| l.split(',').collect::<Vec<_>>())
            .find(|r| r[col("d_y")] == "2" && r[col("replicate")] == "1" && r[col("method")] == m.label)
            .unwrap_or_else(|| panic!("no row for {}", m.label));
        let want: f64 = row[col("sw1")].parse().unwrap();
        assert!((sw1 - want).abs() <= 1e-12 * want.abs().max(1.0), "{}: recomputed SW1 {sw1} vs the table's {want}", m.label);
    }

    let o = dipbench(&["figures", exp_path.to_str().unwrap(), "--out", out.to_str().unwrap(), "--replicates", "1"], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for d_y in [1, 2] {
        let png = out.join(format!("figures/d8-dy{d_y}-steps20-eta0.6-r001.png"));
        let img = image::open(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display())).to_rgb8();
        // One 180-pixel column per method, each with the method's (blue) points.
        assert!(img.width() >= 8 * 180, "{}", img.width());
        for i in 0..8u32 {
            let x0 = 10 + i * 190;
            let blue = (x0..x0 + 180).flat_map(|x| (0..img.height()).map(move |y| (x, y))).filter(|&(x, y)| img.get_pixel(x, y).0 == [31, 90, 200]).count();
            assert!(blue > 50, "d_y = {d_y}, method {i}: {blue} sample pixels");
        }
    }
    assert!(!out.join("figures/d8-dy1-steps20-eta0.6-r000.png").exists(), "only the replicate asked for");
    // `figures` links them from the existing table.md at once, and a second call does not repeat the section.
    let o = dipbench(&["figures", exp_path.to_str().unwrap(), "--out", out.to_str().unwrap(), "--replicates", "1"], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let md = read(&out.join("table.md"));
    assert_eq!(md.matches("## Figures").count(), 1, "{md}");
    assert!(md.contains("[r1](figures/d8-dy1-steps20-eta0.6-r001.png)"), "{md}");
    let o = dipbench(&["table", exp_path.to_str().unwrap(), "--out", out.to_str().unwrap()], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let md = read(&out.join("table.md"));
    assert!(md.contains("## Figures") && md.contains("[r1](figures/d8-dy2-steps20-eta0.6-r001.png)"), "{md}");
    // An image experiment is refused with the command to use instead.
    let smoke = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments/smoke.toml");
    let o = dipbench(&["figures", smoke.to_str().unwrap(), "--out", dir.join("x").to_str().unwrap()], None);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("dipbench grid"), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn asking_for_more_devices_than_the_backend_has_is_an_error() {
    let dir = temp_dir("devices");
    let exp = gmm_experiment(&dir, "tiny", "", "");
    let o = dipbench(&["run", exp.to_str().unwrap(), "--out", dir.join("out").to_str().unwrap(), "--devices", "2", "--no-progress"], None);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("--devices 2") && err.contains("reports 1 device"), "{err}");
}

#[test]
fn slurm_writes_a_job_array_and_merge_joins_shards() {
    let dir = temp_dir("slurm");
    let exp = gmm_experiment(&dir, "tiny", "", "");
    let res = dir.join("res");
    let o = dipbench(&["slurm", exp.to_str().unwrap(), "--shards", "3", "--out", res.to_str().unwrap(), "--partition", "gpu"], None);
    let script = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for needle in [
        "#SBATCH --array=0-2",
        "#SBATCH --gres=gpu:1",
        "#SBATCH --partition=gpu",
        "--shard \"${SLURM_ARRAY_TASK_ID}/3\"",
        "--device cuda",
        "dipbench table",
        "doctor",
    ] {
        assert!(script.contains(needle), "script lacks `{needle}`:\n{script}");
    }
    // Shards run into separate folders, merged, give the one-run table.
    let e = exp.to_str().unwrap();
    let whole = dir.join("whole");
    assert!(dipbench(&["run", e, "--out", whole.to_str().unwrap(), "--no-progress"], None).status.success());
    let mut parts = vec![];
    for i in 0..3 {
        let p = dir.join(format!("part{i}"));
        let shard = format!("{i}/3");
        assert!(dipbench(&["run", e, "--out", p.to_str().unwrap(), "--no-progress", "--shard", &shard], None).status.success());
        parts.push(p.to_str().unwrap().to_string());
    }
    let merged = dir.join("merged");
    let mut args = vec!["merge"];
    args.extend(parts.iter().map(String::as_str));
    args.extend(["--out", merged.to_str().unwrap()]);
    let o = dipbench(&args, None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(dipbench(&["table", e, "--out", merged.to_str().unwrap()], None).status.success());
    assert_eq!(rows_without_time(&whole), rows_without_time(&merged));
    assert_eq!(read(&whole.join("table.csv")).lines().count(), read(&merged.join("table.csv")).lines().count());
    let o = dipbench(&["check", merged.to_str().unwrap(), "--against", whole.to_str().unwrap()], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    // A well-formed job file (digest and fingerprint right) whose rows differ from the merged
    // folder's stops the merge, naming both files.
    let job = std::fs::read_dir(whole.join("runs")).unwrap().next().unwrap().unwrap().path();
    let file: serde_json::Value = serde_json::from_str(&read(&job)).unwrap();
    let mut rows = file["rows"].as_array().unwrap().clone();
    rows[1]["sw1"] = serde_json::json!(rows[1]["sw1"].as_f64().unwrap() + 1.0);
    let conflict = dir.join("conflict");
    std::fs::create_dir_all(&conflict).unwrap();
    std::fs::copy(whole.join("experiment.toml"), conflict.join("experiment.toml")).unwrap();
    // Typed rows: the digest covers the rows as the benchmark serialises them.
    let rows: Vec<dipbench::benchmarks::gmm::GmmRow> = serde_json::from_value(serde_json::Value::Array(rows)).unwrap();
    dipbench::pipeline::store::write_job(&conflict, file["job"].as_str().unwrap(), file["fingerprint"].as_str().unwrap(), &rows).unwrap();
    let o = dipbench(&["merge", conflict.to_str().unwrap(), "--out", merged.to_str().unwrap()], None);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("different results for the same job") && err.contains(job.file_name().unwrap().to_str().unwrap()), "{err}");
}

/// `bench gmm` times the chosen methods on one cell beside its baseline chain, and its JSON holds
/// what the text prints; unknown methods and non-GMM experiments are refused by name.
#[test]
fn bench_gmm_times_the_chosen_methods_beside_a_baseline_chain() {
    let dir = temp_dir("bench-gmm");
    let json = dir.join("report.json");
    let exp = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments/gmm-quick.toml");
    let (exp, json_s) = (exp.to_str().unwrap(), json.to_str().unwrap());
    let args = ["bench", "gmm", exp, "--d", "8", "--dy", "2", "--steps", "5", "--methods", "DAPS,DPS", "--repeats", "2", "--json", json_s];
    let o = dipbench(&args, Some(2));
    let text = crate::support::ok(&o);
    assert!(text.contains("d = 8, d_y = 2, 5 steps") && text.contains("baseline, same run: 5 fused noisy updates") && text.contains("| DPS | 4 |"), "{text}");
    assert!(!text.contains("| MCG |"), "only the chosen methods: {text}");
    let report: serde_json::Value = serde_json::from_str(&read(&json)).unwrap();
    let chain = report["chain"]["median"].as_f64().unwrap();
    assert!(chain > 0.0 && report["samples"].as_u64() == Some(500) && report["threads"].as_u64() == Some(2), "{report}");
    let methods = report["methods"].as_array().unwrap();
    // In the experiment's order, not the flag's.
    let labels: Vec<&str> = methods.iter().map(|m| m["label"].as_str().unwrap()).collect();
    assert_eq!(labels, ["DPS", "DAPS"]);
    for m in methods {
        let (median, samples) = (m["seconds"]["median"].as_f64().unwrap(), m["seconds"]["samples"].as_array().unwrap());
        assert!(median > 0.0 && samples.len() == 2, "{m}");
        let ratio = m["updates_per_step"].as_f64().unwrap();
        assert!((ratio - median / chain).abs() <= 1e-9 * ratio, "updates per step = method / chain: {m}");
    }
    let err = crate::support::refused(&dipbench(&["bench", "gmm", exp, "--methods", "DPS,Nope", "--d", "8", "--dy", "1"], Some(1)));
    assert!(err.contains("`Nope`") && err.contains("DDSMC"), "{err}");
    let smoke = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments/smoke.toml");
    let err = crate::support::refused(&dipbench(&["bench", "gmm", smoke.to_str().unwrap()], Some(1)));
    assert!(err.contains("not a GMM experiment"), "{err}");
}
