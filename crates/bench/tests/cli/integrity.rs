//! What dipbench guarantees about results folders and inputs: it never overwrites an input, never
//! mixes results of different configurations, refuses malformed or hostile input with a message
//! naming the culprit (never a panic, an abort or a silent wrong number), and tables only say what
//! the replicates support. One test per case found by trying it as a new user and as an adversary
//! would.

use std::path::Path;

use crate::support::{SMALL_GRID, SMALL_METHODS, dipbench, dipbench_with, ok, read, refused, small_gmm, temp_dir};

fn run(exp: &Path, out: &Path) -> std::process::Output {
    dipbench(&["run", exp.to_str().unwrap(), "--out", out.to_str().unwrap(), "--no-progress"])
}

// ---------------------------------------------------------------------------------------------
// Inputs are never overwritten.

#[test]
fn resuming_from_the_results_folders_copy_keeps_the_experiment_file() {
    let dir = temp_dir("resume-copy");
    let exp = small_gmm(&dir, "copy", "", SMALL_GRID, SMALL_METHODS);
    let out = dir.join("out");
    ok(&run(&exp, &out));
    let copy = out.join("experiment.toml");
    let before = read(&copy);
    // The natural way to resume: run the copy, into its own folder.
    ok(&run(&copy, &out));
    assert_eq!(read(&copy), before, "experiment.toml changed when it was its own source");
    // Through a symlink to the original, the original is untouched too.
    let link = dir.join("link.toml");
    std::os::unix::fs::symlink(&exp, &link).unwrap();
    let original = read(&exp);
    ok(&run(&link, &dir.join("out2")));
    assert_eq!(read(&exp), original);
    assert_eq!(read(&dir.join("out2").join("experiment.toml")), original);
}

#[test]
fn a_refused_run_leaves_the_folders_experiment_copy_alone() {
    let dir = temp_dir("refused-copy");
    let exp = small_gmm(&dir, "first", "", SMALL_GRID, SMALL_METHODS);
    let out = dir.join("out");
    ok(&run(&exp, &out));
    let copy = read(&out.join("experiment.toml"));
    let changed = small_gmm(&dir, "first", "", SMALL_GRID, &SMALL_METHODS.replace("ddrm\"", "ddrm\"\neta_a = 0.5"));
    let err = refused(&run(&changed, &out));
    assert!(err.contains("different configuration"), "{err}");
    assert_eq!(read(&out.join("experiment.toml")), copy, "the refused run replaced the folder's experiment file");
}

#[test]
fn slurm_refuses_to_overwrite_an_existing_script_without_force() {
    let dir = temp_dir("slurm-overwrite");
    let exp = small_gmm(&dir, "slurm", "", SMALL_GRID, SMALL_METHODS);
    let original = read(&exp);
    let err = refused(&dipbench(&["slurm", exp.to_str().unwrap(), "--shards", "2", "--script", exp.to_str().unwrap()]));
    assert!(err.contains("--force") && err.contains("slurm.toml"), "{err}");
    assert_eq!(read(&exp), original);
    let (script, out) = (dir.join("job.sbatch"), dir.join("out"));
    let (script, out) = (script.to_str().unwrap(), out.to_str().unwrap());
    ok(&dipbench(&["slurm", exp.to_str().unwrap(), "--shards", "2", "--out", out, "--script", script]));
    refused(&dipbench(&["slurm", exp.to_str().unwrap(), "--shards", "2", "--out", out, "--script", script]));
    ok(&dipbench(&["slurm", exp.to_str().unwrap(), "--shards", "2", "--out", out, "--script", script, "--force"]));
}

// ---------------------------------------------------------------------------------------------
// The sbatch script is built safely.

#[test]
fn slurm_values_are_validated_and_quoted() {
    let dir = temp_dir("slurm-quote");
    let exp = small_gmm(&dir, "quote", "", SMALL_GRID, SMALL_METHODS);
    let e = exp.to_str().unwrap();
    for (flag, value) in [("--partition", "gpu; touch pwned"), ("--time", "1:00:00 $(touch pwned)"), ("--partition", "a\nb")] {
        let err = refused(&dipbench(&["slurm", e, "--shards", "2", flag, value]));
        assert!(err.contains(flag), "{flag}: {err}");
    }
    // A results folder with a space and a shell character is one quoted word, not two commands.
    let out = dir.join("my results;x");
    let out = out.to_str().unwrap();
    let script = ok(&dipbench(&["slurm", e, "--shards", "2", "--out", out]));
    let quoted = format!("'{out}'");
    assert!(script.contains(&quoted), "{script}");
    assert!(!script.lines().any(|l| !l.starts_with('#') && l.contains(out) && !l.contains(&quoted)), "{script}");
}

#[test]
fn experiment_names_are_a_safe_set_of_characters() {
    let dir = temp_dir("names");
    for name in ["../../x", "/abs", "a b", "$(touch x)", "x;y", ""] {
        let exp = small_gmm(&dir, "safe", "", SMALL_GRID, SMALL_METHODS);
        let text = read(&exp).replace("name = \"safe\"", &format!("name = \"{name}\""));
        std::fs::write(&exp, text).unwrap();
        let err = refused(&dipbench(&["run", exp.to_str().unwrap(), "--no-progress"]));
        assert!(err.contains("experiment.name"), "{name}: {err}");
    }
}

// ---------------------------------------------------------------------------------------------
// Job identities are unique and complete.

#[test]
fn budgets_with_the_same_steps_and_different_eta_are_different_jobs() {
    let dir = temp_dir("eta-jobs");
    let grid = SMALL_GRID.replace("budgets = [{ steps = 5, eta = 0.6 }]", "budgets = [{ steps = 5, eta = 0.6 }, { steps = 5, eta = 1.0 }]");
    let exp = small_gmm(&dir, "eta", "", &grid, SMALL_METHODS);
    let out = dir.join("out");
    ok(&run(&exp, &out));
    let jobs = std::fs::read_dir(out.join("runs")).unwrap().count();
    assert_eq!(jobs, 2, "one job file per budget");
    let table = read(&out.join("table.csv"));
    assert!(table.contains(",0.6,") && table.contains(",1.0,"), "{table}");
}

#[test]
fn duplicate_grid_values_are_refused() {
    let dir = temp_dir("dupes");
    for (from, to, key) in [
        ("dims = [4]", "dims = [4, 4]", "gmm.dims"),
        ("obs_dims = [1]", "obs_dims = [1, 1]", "gmm.obs_dims"),
        ("budgets = [{ steps = 5, eta = 0.6 }]", "budgets = [{ steps = 5, eta = 0.6 }, { steps = 5, eta = 0.6 }]", "gmm.budgets"),
    ] {
        let exp = small_gmm(&dir, "dupe", "", &SMALL_GRID.replace(from, to), SMALL_METHODS);
        let err = refused(&run(&exp, &dir.join("out")));
        assert!(err.contains(key), "{key}: {err}");
    }
}

#[test]
fn budget_keys_on_a_gmm_method_are_refused() {
    let dir = temp_dir("method-steps");
    for key in ["steps = 50", "eta = 0.2"] {
        let methods = format!("{SMALL_METHODS}\n[[method]]\nlabel = \"DPS\"\nsampler = \"dps\"\n{key}\n");
        let exp = small_gmm(&dir, "steps", "", SMALL_GRID, &methods);
        let err = refused(&run(&exp, &dir.join("out")));
        assert!(err.contains(key.split(' ').next().unwrap()) && err.contains("gmm.budgets"), "{key}: {err}");
    }
}

#[test]
fn reserved_and_colliding_method_labels_are_refused() {
    let dir = temp_dir("labels");
    let image = "[experiment]\nname = \"img\"\nbenchmark = \"image\"\nseed = 0\n\n[image]\ndataset = \"synthetic\"\nimages = 1\nside = 32\nmodel = \"tiny32\"\ntasks = [\"sr4\"]\n\n";
    for label in ["y", "gt", "Y", "..", ".", ".hidden"] {
        let path = dir.join("img.toml");
        std::fs::write(&path, format!("{image}[[method]]\nlabel = \"{label}\"\nsampler = \"ddrm\"\npreset = \"paper\"\n")).unwrap();
        let err = refused(&dipbench(&["run", path.to_str().unwrap(), "--out", dir.join("o").to_str().unwrap(), "--no-progress"]));
        assert!(err.contains("label") && err.contains(label), "{label}: {err}");
    }
    // Two labels that become the same file name.
    let path = dir.join("img.toml");
    std::fs::write(&path, format!("{image}[[method]]\nlabel = \"A B\"\nsampler = \"ddrm\"\npreset = \"paper\"\n\n[[method]]\nlabel = \"A_B\"\nsampler = \"ddrm\"\npreset = \"paper\"\n")).unwrap();
    let err = refused(&dipbench(&["run", path.to_str().unwrap(), "--out", dir.join("o").to_str().unwrap(), "--no-progress"]));
    assert!(err.contains("A B") && err.contains("A_B"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Every reader of job files checks them; one configuration per folder.

/// Runs the small experiment into `out` and returns the path of its (only) job file.
fn finished_job(dir: &Path, out: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let exp = small_gmm(dir, "jobs", "", SMALL_GRID, SMALL_METHODS);
    ok(&run(&exp, out));
    let job = std::fs::read_dir(out.join("runs")).unwrap().next().unwrap().unwrap().path();
    (exp, job)
}

#[test]
fn table_refuses_damaged_or_foreign_job_files() {
    let dir = temp_dir("table-checks");
    let out = dir.join("out");
    let (exp, job) = finished_job(&dir, &out);
    let good = std::fs::read(&job).unwrap();
    let parsed: serde_json::Value = serde_json::from_slice(&good).expect("job files are JSON");
    let edit = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v = parsed.clone();
        f(&mut v);
        serde_json::to_vec(&v).unwrap()
    };
    let damaged: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("not JSON", b"{{{".to_vec()),
        (
            "a row duplicated",
            edit(&|v| {
                let row = v["rows"][0].clone();
                v["rows"].as_array_mut().unwrap().push(row);
            }),
        ),
        ("a value edited", edit(&|v| v["rows"][1]["sw1"] = serde_json::json!(0.001))),
        ("another configuration", edit(&|v| v["fingerprint"] = serde_json::json!("0123456789abcdef"))),
        ("another job", edit(&|v| v["job"] = serde_json::json!("d6-dy1-steps5-eta0.6-r000"))),
    ];
    for (what, bytes) in damaged {
        std::fs::write(&job, &bytes).unwrap();
        let err = refused(&dipbench(&["table", exp.to_str().unwrap(), "--out", out.to_str().unwrap()]));
        assert!(err.contains(job.file_name().unwrap().to_str().unwrap()), "{what}: {err}");
    }
    std::fs::write(&job, &good).unwrap();
    ok(&dipbench(&["table", exp.to_str().unwrap(), "--out", out.to_str().unwrap()]));
}

#[test]
fn two_configurations_never_share_a_results_folder() {
    let dir = temp_dir("mixed");
    let out = dir.join("out");
    let a = small_gmm(&dir, "a", "", SMALL_GRID, SMALL_METHODS);
    ok(&run(&a, &out));
    // Another seed and another grid: no job file in common, still another configuration.
    let b = small_gmm(&dir, "a", "", &SMALL_GRID.replace("dims = [4]", "dims = [6]"), SMALL_METHODS);
    let b_text = read(&b).replace("seed = 1", "seed = 2");
    std::fs::write(&b, b_text).unwrap();
    let err = refused(&run(&b, &out));
    assert!(err.contains("different configuration"), "{err}");
    // Growing the grid of the same configuration is allowed (finished jobs are reused).
    let grown = small_gmm(&dir, "a", "", &SMALL_GRID.replace("replicates = 1", "replicates = 2"), SMALL_METHODS);
    let log = dipbench(&["run", grown.to_str().unwrap(), "--out", out.to_str().unwrap(), "--no-progress"]);
    ok(&log);
    assert!(String::from_utf8_lossy(&log.stderr).contains("1 run now, 1 already done"), "{}", String::from_utf8_lossy(&log.stderr));
}

#[test]
fn a_second_writer_is_kept_out_and_a_stale_lock_is_explained() {
    let dir = temp_dir("lock");
    let out = dir.join("out");
    let exp = small_gmm(&dir, "lock", "", SMALL_GRID, SMALL_METHODS);
    std::fs::create_dir_all(&out).unwrap();
    // A lock held by a live process (this test's) keeps the run out.
    std::fs::write(out.join(".dipbench.lock"), format!("{}\n", std::process::id())).unwrap();
    let err = refused(&run(&exp, &out));
    assert!(err.contains(".dipbench.lock") && err.contains(&std::process::id().to_string()), "{err}");
    // A lock whose process is gone is stale: said so, and taken over.
    std::fs::write(out.join(".dipbench.lock"), "4194300\n").unwrap();
    let o = run(&exp, &out);
    ok(&o);
    assert!(String::from_utf8_lossy(&o.stderr).contains("stale"), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!out.join(".dipbench.lock").exists(), "the lock is released when the run ends");
}

#[test]
fn merge_refuses_shards_of_different_configurations() {
    let dir = temp_dir("merge-config");
    let a = small_gmm(&dir, "m", "", SMALL_GRID, SMALL_METHODS);
    ok(&run(&a, &dir.join("a")));
    let b = small_gmm(&dir, "m", "", &SMALL_GRID.replace("dims = [4]", "dims = [6]"), SMALL_METHODS);
    std::fs::write(&b, read(&b).replace("seed = 1", "seed = 9")).unwrap();
    ok(&run(&b, &dir.join("b")));
    let err = refused(&dipbench(&["merge", dir.join("a").to_str().unwrap(), dir.join("b").to_str().unwrap(), "--out", dir.join("m").to_str().unwrap()]));
    assert!(err.contains("configuration"), "{err}");
}

#[test]
fn check_refuses_tables_with_duplicate_rows() {
    let dir = temp_dir("check-dupes");
    let out = dir.join("out");
    finished_job(&dir, &out);
    let table = read(&out.join("table.csv"));
    let row = table.lines().nth(1).unwrap();
    let doubled = dir.join("doubled.csv");
    std::fs::write(&doubled, format!("{table}{row}\n")).unwrap();
    let err = refused(&dipbench(&["check", doubled.to_str().unwrap(), "--against", out.to_str().unwrap()]));
    assert!(err.contains("doubled.csv") && err.contains("twice"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Strict checkpoints, complete score sets.

fn golden_dir() -> std::path::PathBuf {
    dipbench_tests::golden_dir()
}

/// `unet_tiny.pt` rewritten with storage record `victim` removed or cut to half.
fn damaged_checkpoint(path: &Path, truncate: bool) -> String {
    use std::io::{Read, Write};
    let mut zip = zip::ZipArchive::new(std::fs::File::open(golden_dir().join("unet_tiny.pt")).unwrap()).unwrap();
    let names: Vec<String> = (0..zip.len()).map(|i| zip.by_index(i).unwrap().name().to_string()).collect();
    let victim = names.iter().filter(|n| n.contains("/data/")).nth(3).unwrap().clone();
    let mut w = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for name in &names {
        let mut bytes = vec![];
        zip.by_name(name).unwrap().read_to_end(&mut bytes).unwrap();
        if name == &victim {
            if !truncate {
                continue;
            }
            bytes.truncate(bytes.len() / 2);
        }
        w.start_file(name, opts).unwrap();
        w.write_all(&bytes).unwrap();
    }
    w.finish().unwrap();
    victim.rsplit('/').next().unwrap().to_string()
}

#[test]
fn golden_pt_checkpoints_with_missing_or_short_storage_records_are_refused() {
    let dir = temp_dir("pt-records");
    for truncate in [false, true] {
        let bad = dir.join("bad.pt");
        let record = damaged_checkpoint(&bad, truncate);
        // Loading it (the path every command takes) …
        let x = dir.join("x.safetensors");
        let zeros = vec![0u8; 3 * 32 * 32 * 4];
        let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![1, 3, 32, 32], &zeros).unwrap();
        safetensors::serialize_to_file(vec![("x", view)], None, &x).unwrap();
        let (bad_s, x_s, o_s) = (bad.to_str().unwrap(), x.to_str().unwrap(), dir.join("o.safetensors"));
        let err =
            refused(&dipbench(&["model", "eval", "--config", "tiny32", "--checkpoint", bad_s, "--input", x_s, "--output", o_s.to_str().unwrap(), "--t", "10"]));
        assert!(err.contains("bad.pt") && err.contains(&format!("data/{record}")), "truncate={truncate}: {err}");
        // … and verifying it, which reads only the header otherwise.
        let err = refused(&dipbench(&["weights", "verify", "ffhq256", "--path", bad_s]));
        assert!(err.contains("bad.pt") && err.contains(&format!("data/{record}")), "truncate={truncate}: {err}");
    }
}

#[test]
fn score_refuses_folders_with_different_file_names() {
    let dir = temp_dir("score-names");
    let (a, b) = (dir.join("a"), dir.join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let img = image::RgbImage::from_pixel(32, 32, image::Rgb([100, 120, 140]));
    for n in ["x", "y", "z"] {
        img.save(a.join(format!("{n}.png"))).unwrap();
    }
    img.save(b.join("x.png")).unwrap();
    let err = refused(&dipbench(&["score", a.to_str().unwrap(), b.to_str().unwrap(), "--metrics", "psnr"]));
    assert!(err.contains("y.png") && err.contains("z.png"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// No panic or abort reaches a user.

#[test]
fn huge_sizes_are_refused_up_front_with_the_memory_they_need() {
    let dir = temp_dir("huge");
    for (from, to) in [("samples = 50", "samples = 18446744073709551615"), ("samples = 50", "samples = 4000000000"), ("dims = [4]", "dims = [4000000000]")] {
        let exp = small_gmm(&dir, "huge", "", &SMALL_GRID.replace(from, to), SMALL_METHODS);
        let err = refused(&run(&exp, &dir.join("out")));
        assert!(err.contains("gmm.") && err.contains("GiB"), "{to}: {err}");
    }
}

#[test]
fn batch_zero_and_non_finite_inputs_are_refused() {
    let dir = temp_dir("zero");
    // model eval on an empty batch, and on a NaN input.
    let x = dir.join("x.safetensors");
    let mut nan = vec![0u8; 3 * 32 * 32 * 4];
    nan[..4].copy_from_slice(&f32::NAN.to_le_bytes());
    for (shape, bytes, why) in [(vec![0, 3, 32, 32], vec![], "empty"), (vec![1, 3, 32, 32], nan, "finite")] {
        let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape, &bytes).unwrap();
        safetensors::serialize_to_file(vec![("x", view)], None, &x).unwrap();
        let (xs, out) = (x.to_str().unwrap(), dir.join("o.safetensors"));
        let err = refused(&dipbench(&["model", "eval", "--config", "tiny32", "--golden-fill", "--input", xs, "--output", out.to_str().unwrap(), "--t", "10"]));
        assert!(err.contains("x.safetensors") && err.contains(why), "{err}");
    }
    // Non-finite settings in an experiment (TOML has nan and inf).
    for setting in ["eta_a = nan", "eta_a = inf"] {
        let methods = SMALL_METHODS.replace("sampler = \"ddrm\"", &format!("sampler = \"ddrm\"\n{setting}"));
        let exp = small_gmm(&dir, "nan", "", SMALL_GRID, &methods);
        let err = refused(&run(&exp, &dir.join("out")));
        assert!(err.contains("eta_a") && err.contains("finite"), "{setting}: {err}");
    }
    let exp = small_gmm(&dir, "nan", "", &SMALL_GRID.replace("eta = 0.6", "eta = nan"), SMALL_METHODS);
    let err = refused(&run(&exp, &dir.join("out")));
    assert!(err.contains("gmm.budgets"), "{err}");
    // --batch 0 on the benchmarks.
    let err = refused(&dipbench(&["bench", "unet", "--config", "tiny32", "--batch", "0"]));
    assert!(err.contains("--batch"), "{err}");
}

#[test]
fn a_closed_standard_output_is_not_a_crash() {
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_dipbench")).args(["weights"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn errors_show_their_causes_and_a_backtrace_only_when_asked() {
    let dir = temp_dir("backtrace");
    let missing = dir.join("nope.toml");
    let o = dipbench_with(&["run", missing.to_str().unwrap()], None, &[("RUST_BACKTRACE", "1")]);
    let err = refused(&o);
    assert!(err.contains("nope.toml"), "{err}");
    assert!(!err.contains("Stack backtrace") && !err.contains("stack backtrace"), "a backtrace without asking:\n{err}");
    let o = dipbench_with(&["run", missing.to_str().unwrap()], None, &[("DIPBENCH_BACKTRACE", "1")]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("backtrace"), "DIPBENCH_BACKTRACE=1 should print one:\n{err}");
}

// ---------------------------------------------------------------------------------------------
// Tables say only what the replicates support.

#[test]
fn one_replicate_has_no_interval() {
    let dir = temp_dir("stats");
    let out = dir.join("out");
    let exp = small_gmm(&dir, "stats", "", SMALL_GRID, SMALL_METHODS);
    ok(&run(&exp, &out));
    let md = read(&out.join("table.md"));
    assert!(!md.contains("± 0 ") && !md.contains("± 0|"), "n = 1 shows an interval:\n{md}");
    assert!(md.contains("n = 1"), "{md}");
}

#[test]
fn shards_take_their_own_locks_and_a_lock_of_another_host_is_not_judged_stale() {
    let dir = temp_dir("shard-locks");
    let out = dir.join("out");
    let grid = SMALL_GRID.replace("replicates = 1", "replicates = 2");
    let exp = small_gmm(&dir, "shards", "", &grid, SMALL_METHODS);
    let e = exp.to_str().unwrap();
    let shard = |i: &str| dipbench(&["run", e, "--out", out.to_str().unwrap(), "--no-progress", "--shard", i]);
    std::fs::create_dir_all(&out).unwrap();
    // Shard 1/2 is being written (by this live process): shard 0/2 runs beside it, 1/2 is kept out.
    let lock1 = out.join(".dipbench.lock.shard-1-of-2");
    std::fs::write(&lock1, format!("{}\n", std::process::id())).unwrap();
    ok(&shard("0/2"));
    let err = refused(&shard("1/2"));
    assert!(err.contains(".dipbench.lock.shard-1-of-2"), "{err}");
    // A lock taken on another host may belong to a live run there: refused, naming the host.
    std::fs::write(&lock1, "4194300 node-elsewhere\n").unwrap();
    let err = refused(&shard("1/2"));
    assert!(err.contains("node-elsewhere") && err.contains("4194300"), "{err}");
    // An unreadable lock is held, not stale.
    std::fs::write(&lock1, "").unwrap();
    let err = refused(&shard("1/2"));
    assert!(err.contains("cannot be read"), "{err}");
    std::fs::remove_file(&lock1).unwrap();
    ok(&shard("1/2"));
    assert!(!lock1.exists(), "the shard's lock is released when it ends");
}

#[test]
fn repeated_metrics_and_oversized_settings_are_refused() {
    let dir = temp_dir("repeats");
    let image = "[experiment]\nname = \"img\"\nbenchmark = \"image\"\nseed = 0\n\n[image]\ndataset = \"synthetic\"\nside = 32\nmodel = \"tiny32\"\n";
    let method = "\n[[method]]\nlabel = \"DDRM\"\nsampler = \"ddrm\"\npreset = \"paper\"\n";
    for (settings, key) in [
        ("images = 1\ntasks = [\"sr4\"]\nmetrics = [\"psnr\", \"psnr\"]", "image.metrics"),
        ("images = 1\ntasks = [\"sr4\", \"sr4\"]", "image.tasks"),
        ("images = 10000000000\ntasks = [\"sr4\"]", "image.images"),
    ] {
        let path = dir.join("img.toml");
        std::fs::write(&path, format!("{image}{settings}\n{method}")).unwrap();
        let err = refused(&dipbench(&["run", path.to_str().unwrap(), "--out", dir.join("o").to_str().unwrap(), "--no-progress"]));
        assert!(err.contains(key), "{key}: {err}");
    }
    let exp = small_gmm(&dir, "proj", "", SMALL_GRID, &format!("[metric]\nprojections = 10000000000000\n\n{SMALL_METHODS}"));
    let err = refused(&run(&exp, &dir.join("o")));
    assert!(err.contains("metric.projections"), "{err}");
    let dims = (1..=21).map(|i| (2 * i).to_string()).collect::<Vec<_>>().join(", ");
    let exp = small_gmm(&dir, "many", "", &SMALL_GRID.replace("dims = [4]\n", &format!("dims = [{dims}]\n")), SMALL_METHODS);
    let err = refused(&run(&exp, &dir.join("o")));
    assert!(err.contains("gmm.dims") && err.contains("at most 20"), "{err}");
}

#[test]
fn two_images_with_one_name_are_refused() {
    let dir = temp_dir("same-name");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    image::RgbImage::new(32, 32).save(data.join("a.png")).unwrap();
    image::RgbImage::new(32, 32).save(data.join("a.jpg")).unwrap();
    let path = dir.join("img.toml");
    let text = format!(
        "[experiment]\nname = \"img\"\nbenchmark = \"image\"\nseed = 0\n\n[image]\ndataset = \"{}\"\nimages = 2\nside = 32\nmodel = \"tiny32\"\ntasks = [\"sr4\"]\n\n[[method]]\nlabel = \"DDRM\"\nsampler = \"ddrm\"\npreset = \"paper\"\n",
        data.display()
    );
    std::fs::write(&path, text).unwrap();
    let err = refused(&dipbench(&["run", path.to_str().unwrap(), "--out", dir.join("o").to_str().unwrap(), "--no-progress"]));
    assert!(err.contains("a.png") && err.contains("a.jpg") && err.contains("same name"), "{err}");
}

#[test]
fn grid_refuses_a_folder_of_another_configuration() {
    let dir = temp_dir("grid-config");
    let image = |seed: u32| {
        format!(
            "[experiment]\nname = \"img\"\nbenchmark = \"image\"\nseed = {seed}\n\n[image]\ndataset = \"synthetic\"\nimages = 1\nside = 32\nmodel = \"tiny32\"\ntasks = [\"sr4\"]\n\n[[method]]\nlabel = \"DDRM\"\nsampler = \"ddrm\"\npreset = \"paper\"\nsteps = 2\n"
        )
    };
    let (a, b, out) = (dir.join("a.toml"), dir.join("b.toml"), dir.join("out"));
    std::fs::write(&a, image(0)).unwrap();
    std::fs::write(&b, image(1)).unwrap();
    ok(&dipbench(&["run", a.to_str().unwrap(), "--out", out.to_str().unwrap(), "--no-progress"]));
    let err = refused(&dipbench(&["grid", b.to_str().unwrap(), "--out", out.to_str().unwrap()]));
    assert!(err.contains("different configuration"), "{err}");
    ok(&dipbench(&["grid", a.to_str().unwrap(), "--out", out.to_str().unwrap()]));
}

#[test]
fn a_changed_dataset_is_not_mixed_into_a_folder_made_with_another() {
    let dir = temp_dir("dataset-swap");
    let (a, b) = (dir.join("a"), dir.join("b"));
    for (folder, shade) in [(&a, 40u8), (&b, 200u8)] {
        std::fs::create_dir_all(folder).unwrap();
        image::RgbImage::from_pixel(32, 32, image::Rgb([shade, 90, 10])).save(folder.join("img.png")).unwrap();
    }
    let path = dir.join("img.toml");
    let text = "[experiment]\nname = \"img\"\nbenchmark = \"image\"\nseed = 0\n\n[image]\ndataset = \"unused\"\nimages = 1\nside = 32\nmodel = \"tiny32\"\ntasks = [\"sr4\"]\n\n[[method]]\nlabel = \"DDRM\"\nsampler = \"ddrm\"\npreset = \"paper\"\nsteps = 2\n";
    std::fs::write(&path, text).unwrap();
    let out = dir.join("out");
    let run_on = |data: &Path| dipbench(&["run", path.to_str().unwrap(), "--out", out.to_str().unwrap(), "--no-progress", "--dataset", data.to_str().unwrap()]);
    ok(&run_on(&a));
    let err = refused(&run_on(&b));
    assert!(err.contains("`img`") && err.contains("differs") && err.contains("gt"), "{err}");
    ok(&run_on(&a));
}

#[test]
fn merge_keeps_the_output_folders_own_experiment_file() {
    let dir = temp_dir("merge-keeps");
    let big = small_gmm(&dir, "grid", "", &SMALL_GRID.replace("replicates = 1", "replicates = 2"), SMALL_METHODS);
    let (whole, part) = (dir.join("whole"), dir.join("part"));
    ok(&run(&big, &whole));
    let small_dir = dir.join("small");
    std::fs::create_dir_all(&small_dir).unwrap();
    let small = small_gmm(&small_dir, "grid", "", SMALL_GRID, SMALL_METHODS);
    ok(&run(&small, &part));
    let before = read(&whole.join("experiment.toml"));
    ok(&dipbench(&["merge", part.to_str().unwrap(), "--out", whole.to_str().unwrap()]));
    assert_eq!(read(&whole.join("experiment.toml")), before, "the larger grid's experiment file stays");
}
