//! `dipbench run --devices N` spreads jobs over N devices in one process: one model copy per
//! device, worker w on device w mod N. No machine here has two GPUs, so this drives the same code
//! path with the CPU device listed twice: the rows must be those of a one-device run (a job's
//! result may not depend on which device slot or worker ran it).

use std::path::{Path, PathBuf};

use burn::backend::{Autodiff, Flex};
use dipbench::benchmarks::image::ImageRow;
use dipbench::experiment::Experiment;
use dipbench::pipeline::RunOptions;

type B = Autodiff<Flex>;

fn experiment(dir: &Path) -> PathBuf {
    let methods = r#"
[[method]]
label = "DDRM"
sampler = "ddrm"
preset = "paper"
steps = 3

[[method]]
label = "DPS"
sampler = "dps"
preset = "dps-repo"
steps = 4"#;
    dipbench_tests::write_tiny_image_experiment(dir, "devices", 11, "tasks = [\"sr4\", \"inpaint_box\"]\nmetrics = [\"psnr\"]", methods)
}

fn rows(exp: &Experiment, out: &Path, devices: usize) -> Vec<ImageRow> {
    let opts = RunOptions { progress: false, jobs: Some(3), shard: None, dataset: None };
    let (summary, rows) = crate::support::run_image_rows::<B>(exp, out, &vec![Default::default(); devices], &opts).unwrap();
    assert_eq!((summary.total, summary.ran), (12, 12));
    rows.into_iter().map(|r| ImageRow { seconds: 0.0, ..r }).collect()
}

#[test]
fn two_device_slots_give_the_rows_of_one() {
    let dir = crate::support::temp_dir("devices");
    let exp = Experiment::load(&experiment(&dir)).unwrap();
    let one = rows(&exp, &dir.join("one"), 1);
    let two = rows(&exp, &dir.join("two"), 2);
    assert_eq!(one.len(), 12);
    assert!(one.iter().all(|r| r.status == "ok" && r.metrics["psnr"].is_finite()), "{one:?}");
    assert_eq!(one, two, "rows depend on the device slot that ran them");
}
