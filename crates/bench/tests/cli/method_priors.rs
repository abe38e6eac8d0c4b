//! A method on a prior of its own (`model` / `checkpoint` in its `[[method]]` table), as the DAPS
//! tables' latent-diffusion rows sit beside the pixel rows: its rows are those of an experiment
//! whose only prior is that one, and the experiment refuses priors that cannot share a table.

use std::path::{Path, PathBuf};

use burn::backend::{Autodiff, Flex};
use dipbench::benchmarks::image::ImageRow;
use dipbench::experiment::Experiment;
use dipbench::pipeline::RunOptions;

use crate::support::{read, temp_dir};

type B = Autodiff<Flex>;

/// An image experiment on 64×64 synthetic images with main prior `model`.
fn write(dir: &Path, name: &str, model: &str, methods: &str) -> PathBuf {
    let text = format!(
        "[experiment]\nname = \"{name}\"\nbenchmark = \"image\"\nseed = 5\n\n\
         [image]\ndataset = \"synthetic\"\nimages = 2\nside = 64\nmodel = \"{model}\"\ntasks = [\"sr4\"]\nmetrics = [\"psnr\"]\n\n{methods}\n"
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn dps(label: &str, model: Option<&str>) -> String {
    let model = model.map(|m| format!("model = \"{m}\"\n")).unwrap_or_default();
    format!("[[method]]\nlabel = \"{label}\"\nsampler = \"dps\"\npreset = \"image\"\nsteps = 4\n{model}\n")
}

fn rows(exp: &Path, out: &Path) -> Vec<ImageRow> {
    let exp = Experiment::load(exp).unwrap();
    let opts = RunOptions { progress: false, jobs: Some(1), shard: None, dataset: None };
    crate::support::run_image_rows::<B>(&exp, out, &[Default::default()], &opts).unwrap().1
}

#[test]
fn a_method_on_its_own_prior_gives_the_rows_of_that_prior_alone() {
    let dir = temp_dir("method-priors");
    let mixed = write(&dir, "mixed", "tiny16-ldm", &(dps("DPS", None) + &dps("DPS-cin", Some("tiny16-cin"))));
    let alone = write(&dir, "alone", "tiny16-cin", &dps("DPS-cin", None));
    let (mixed_rows, alone_rows) = (rows(&mixed, &dir.join("mixed")), rows(&alone, &dir.join("alone")));
    let of = |rows: &[ImageRow], label: &str| rows.iter().filter(|r| r.method == label).cloned().collect::<Vec<_>>();
    let (cin, cin_alone, plain) = (of(&mixed_rows, "DPS-cin"), of(&alone_rows, "DPS-cin"), of(&mixed_rows, "DPS"));
    assert_eq!((cin.len(), cin_alone.len(), plain.len()), (2, 2, 2), "two images per method");
    // The method on the experiment's own prior keeps the fingerprint and rows it has without the
    // other method.
    let only = write(&dir, "only", "tiny16-ldm", &dps("DPS", None));
    let only_rows = rows(&only, &dir.join("only"));
    for (a, b) in plain.iter().zip(&only_rows) {
        assert_eq!((&a.config, &a.metrics), (&b.config, &b.metrics), "{}: DPS beside a method on another prior", a.image);
    }
    for (a, b) in cin.iter().zip(&cin_alone) {
        assert_eq!(a.config, b.config, "{}: the same prior and settings give the same fingerprint", a.image);
        assert_eq!(a.metrics, b.metrics, "{}: the rows of the prior alone", a.image);
    }
    for (a, b) in cin.iter().zip(&plain) {
        assert_ne!(a.config, b.config, "{}: another prior is another configuration", a.image);
        assert_ne!(a.metrics, b.metrics, "{}: the method-level prior was not used", a.image);
    }
    let out = dir.join("mixed");
    crate::support::ok(&crate::support::dipbench(&["table", mixed.to_str().unwrap(), "--out", out.to_str().unwrap()]));
    let table = read(&out.join("table.md"));
    assert!(table.contains("DPS-cin on prior `tiny16-cin`"), "the caption names the method's prior:\n{table}");
}

#[test]
fn method_priors_that_cannot_share_a_table_are_refused_naming_the_key() {
    let dir = temp_dir("method-priors-bad");
    let cases = [
        (
            "orphan",
            "tiny16-ldm",
            "[[method]]\nlabel = \"A\"\nsampler = \"dps\"\npreset = \"image\"\ncheckpoint = \"x.pt\"\n",
            "key `checkpoint` goes with a `model`",
        ),
        ("side", "tiny16-ldm", &dps("A", Some("tiny32")) as &str, "method `A`: key `model` = `tiny32` takes 32×32 images but `image.side` = 64"),
        ("unknown", "tiny16-ldm", &dps("A", Some("tiny99")), "method `A`: key `model`: `tiny99`"),
    ];
    for (name, model, methods, want) in cases {
        let err = format!("{:#}", Experiment::load(&write(&dir, name, model, methods)).unwrap_err());
        assert!(err.contains(want), "{name}: {err}");
    }
    // A registry checkpoint of another network.
    let text = std::fs::read_to_string(write(&dir, "other-net", "tiny16-ldm", &dps("A", Some("tiny16-cin"))))
        .unwrap()
        .replace("model = \"tiny16-ldm\"", "model = \"tiny16-ldm\"\ncheckpoint = \"ffhq256-ldm\"");
    std::fs::write(dir.join("other-net.toml"), text).unwrap();
    let err = format!("{:#}", Experiment::load(&dir.join("other-net.toml")).unwrap_err());
    assert!(err.contains("key `image.checkpoint` = `ffhq256-ldm` is a checkpoint of `ffhq256-ldm`, but the prior is `tiny16-ldm`"), "{err}");
    // Trained weights beside untrained ones (the main prior has no checkpoint).
    let text = std::fs::read_to_string(write(&dir, "mixed-weights", "tiny16-ldm", &dps("A", Some("tiny16-cin"))))
        .unwrap()
        .replace("model = \"tiny16-cin\"", "model = \"tiny16-cin\"\ncheckpoint = \"x.pt\"");
    std::fs::write(dir.join("mixed-weights.toml"), text).unwrap();
    let err = format!("{:#}", Experiment::load(&dir.join("mixed-weights.toml")).unwrap_err());
    assert!(err.contains("untrained golden-fill weights") && err.contains("method `A`: key `checkpoint`"), "{err}");
    // And the other way round: the main prior has a checkpoint, the method's none.
    let text = std::fs::read_to_string(dir.join("mixed-weights.toml")).unwrap().replace("checkpoint = \"x.pt\"", "").replace(
        "model = \"tiny16-ldm\"",
        &format!("model = \"tiny16-ldm\"\ncheckpoint = \"{}\"", dipbench_tests::golden_dir().join("latent/ldm_tiny.pt").display()),
    );
    std::fs::write(dir.join("missing-weights.toml"), text).unwrap();
    let err = format!("{:#}", Experiment::load(&dir.join("missing-weights.toml")).unwrap_err());
    assert!(err.contains("key `checkpoint` is required"), "{err}");
}

/// A worker loads only the priors its pending jobs sample with: a method whose checkpoint is
/// missing or wrong stops nothing else, and is named when its jobs are pending.
#[test]
fn only_the_priors_of_pending_jobs_are_looked_up_and_loaded() {
    use dipbench::pipeline::Benchmark;
    let dir = temp_dir("method-priors-lazy");
    let tiny = dipbench_tests::golden_dir().join("latent/ldm_tiny.pt");
    let methods = format!("{}{}\ncheckpoint = \"{}\"\n", dps("DPS", None), dps("DPS-cin", Some("tiny16-cin")).trim_end(), tiny.display());
    let path = write(&dir, "lazy", "tiny16-ldm", &methods);
    let text =
        std::fs::read_to_string(&path).unwrap().replace("model = \"tiny16-ldm\"", &format!("model = \"tiny16-ldm\"\ncheckpoint = \"{}\"", tiny.display()));
    std::fs::write(&path, &text).unwrap();
    let exp = Experiment::load(&path).unwrap();
    let dipbench::experiment::Kind::Image(img) = &exp.kind else { panic!("an image experiment") };
    let bench = dipbench::benchmarks::image::ImageBenchmark::for_run(&exp, img, None).unwrap();
    let opts = RunOptions { progress: false, jobs: Some(1), shard: None, dataset: None };
    let jobs = bench.jobs().unwrap();
    let plain: Vec<_> = jobs.iter().filter(|j| j.label == "DPS").cloned().collect();
    // The tiny plain checkpoint is not a cross-attention UNet's: loading it for DPS-cin fails.
    assert!(bench.prepare::<B>(&Default::default(), &opts, &plain).is_ok(), "DPS's jobs alone do not load DPS-cin's prior");
    let err = format!("{:#}", bench.prepare::<B>(&Default::default(), &opts, &jobs).err().expect("DPS-cin's prior cannot load"));
    assert!(err.contains("missing key") && err.contains("tiny16-cin"), "{err}");
    // A missing file is named with the methods that need it, before anything is loaded.
    let missing = text.replacen(&format!("checkpoint = \"{}\"\n\n", tiny.display()), "checkpoint = \"no-such-ldm.pt\"\n\n", 1);
    assert_ne!(missing, text, "the method's checkpoint line was replaced");
    std::fs::write(&path, &missing).unwrap();
    let exp = Experiment::load(&path).unwrap();
    let dipbench::experiment::Kind::Image(img) = &exp.kind else { panic!("an image experiment") };
    let bench = dipbench::benchmarks::image::ImageBenchmark::for_run(&exp, img, None).unwrap();
    assert!(bench.prepare::<B>(&Default::default(), &opts, &plain).is_ok(), "DPS's jobs alone do not look DPS-cin's checkpoint up");
    let err = format!("{:#}", bench.prepare::<B>(&Default::default(), &opts, &jobs).err().expect("a missing checkpoint is an error"));
    assert!(err.contains("no-such-ldm.pt") && err.contains("which DPS-cin sample with"), "{err}");
}
