//! dipbench's GMM samplers and the original MCGdiff script's DDRM and MCGdiff on the same
//! instances, scored by the same metric against the same exact posterior draws (docs/gmm.md,
//! "Against the original script, instance by instance").
//!
//! Input: a folder written by `scripts/gmm_script_ddrm.py` — per instance `NAME.json` (weights,
//! A, σ_y, y, budget, the script's timesteps), `NAME.ddrm.f32` and `NAME.mcgdiff.f32` (the
//! script's samples).
//!
//!     cargo run --release -p dipbench --example gmm_script_compare -- FOLDER [--projections 100] [--seed 0]
//!
//! Prints, per instance and then per (d, d_y, budget) as mean ± 1.96·std/√n, the sliced W1 of: a
//! second exact draw (the noise floor), the script's DDRM, dipbench's DDRM in the paper's
//! convention (preset `gmm`, the benchmark's row) and in the script's (`gmm-script`), the
//! script's MCGdiff and dipbench's (preset `gmm`), each at the instance's budget. It also says
//! whether dipbench's adapted grid equals the script's, and the paired relative differences
//! (dipbench − script)/script per (d, d_y, budget).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use dipbench_metrics::sliced::sliced_w1;
use dipbench_models::{ExactPosterior, GaussianMixture, GaussianMixturePrior, VpSchedule};
use dipbench_operators::{DenseOperator, LinearOperator, SampleRng, derive_seed};
use dipbench_samplers::exact::Exact;
use dipbench_samplers::grid::{GridKind, build_grid};
use dipbench_samplers::{Problem, SamplerConfig, sample_in_chunks};
use nalgebra::{DMatrix, DVector};
use serde::Deserialize;

type B = Autodiff<Flex>;

/// One instance as the Python script writes it.
#[derive(Deserialize)]
struct ScriptInstance {
    dim: usize,
    dim_y: usize,
    steps: usize,
    eta: f64,
    seed: u64,
    samples: usize,
    weights: Vec<f64>,
    #[serde(rename = "A")]
    a: Vec<Vec<f64>>,
    sigma_y: f64,
    y: Vec<f64>,
    timesteps: Vec<usize>,
    ddrm: String,
    mcgdiff: String,
}

const COLUMNS: usize = 6;

/// Little-endian float32 samples `[samples, d]` from `file` beside `instance`.
fn read_samples(instance: &Path, file: &str, samples: usize, d: usize) -> Result<Vec<f64>> {
    let bin = instance.with_file_name(file);
    let bytes = std::fs::read(&bin).with_context(|| format!("reading {}", bin.display()))?;
    if bytes.len() != 4 * samples * d {
        bail!("{}: {} bytes, expected {samples} samples × {d} float32", bin.display(), bytes.len());
    }
    Ok(bytes.chunks_exact(4).map(|b| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))).collect())
}

fn read_instance(path: &Path) -> Result<(ScriptInstance, Vec<f64>, Vec<f64>)> {
    let inst: ScriptInstance = serde_json::from_str(&std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?)
        .with_context(|| format!("parsing {}", path.display()))?;
    let ddrm = read_samples(path, &inst.ddrm, inst.samples, inst.dim)?;
    let mcgdiff = read_samples(path, &inst.mcgdiff, inst.samples, inst.dim)?;
    Ok((inst, ddrm, mcgdiff))
}

/// Scores of one instance: exact floor, script DDRM, dipbench DDRM (paper, gmm-script), script
/// MCGdiff, dipbench MCGdiff.
fn score(inst: &ScriptInstance, script_ddrm: &[f64], script_mcgdiff: &[f64], projections: usize, seed: u64) -> Result<([f64; COLUMNS], bool)> {
    let (d, n) = (inst.dim, inst.samples);
    let dev = Default::default();
    let mixture = GaussianMixture::mcgdiff(d, inst.weights.clone())?;
    let a = DMatrix::from_fn(inst.dim_y, d, |i, j| inst.a[i][j]);
    let y = DVector::from_vec(inst.y.clone());
    let posterior = ExactPosterior::new(&mixture, &a, inst.sigma_y, &y)?;
    let stream = |purpose: &str| derive_seed(&[&seed.to_string(), &inst.seed.to_string(), purpose]);
    let exact = Exact(posterior.clone());
    let reference = exact.draw(&mut SampleRng::new(stream("reference"), n), d);
    let floor = exact.draw(&mut SampleRng::new(stream("exact"), n), d);
    let schedule = VpSchedule::mcgdiff_gmm();
    let prior = GaussianMixturePrior::<B>::new(mixture, schedule.clone(), &dev);
    let op = DenseOperator::<B>::new("script-instance", a, &dev)?;
    let y_row: Vec<f32> = inst.y.iter().map(|v| *v as f32).collect();
    let y_t = Tensor::<B, 1>::from_floats(y_row.as_slice(), &dev).reshape([1, inst.dim_y]);
    let problem = Problem::shared(&prior, &op, y_t, inst.sigma_y, n);
    // The grid DDRM builds from the operator's own singular values.
    let singular_values = op.svd().context("a dense operator has an SVD")?.singular_values().to_vec();
    let grid = build_grid(&schedule, GridKind::McgdiffAdapted, inst.steps, Some(&singular_values), inst.sigma_y, "ddrm")?;
    let same_grid = grid == inst.timesteps;
    let metric = stream("metric");
    let w1 = |x: &[f64]| sliced_w1(x, &reference, d, projections, metric);
    let mut out = [w1(&floor), w1(script_ddrm), 0.0, 0.0, w1(script_mcgdiff), 0.0];
    for (k, (sampler, preset)) in [(2, ("ddrm", "gmm")), (3, ("ddrm", "gmm-script")), (5, ("mcgdiff", "gmm"))] {
        let mut cfg = SamplerConfig::preset(sampler, preset)?;
        cfg.set_budget(inst.steps, inst.eta);
        let built = cfg.build::<B>(None)?;
        let x = sample_in_chunks(built.as_ref(), &problem, stream(&format!("{sampler}/{preset}")), 1 << 12)?;
        let x: Vec<f64> = x.into_data().convert::<f32>().to_vec::<f32>().map_err(|e| anyhow::anyhow!("{e:?}"))?.into_iter().map(f64::from).collect();
        out[k] = w1(&x);
    }
    Ok((out, same_grid))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let folder = PathBuf::from(args.first().context("usage: gmm_script_compare FOLDER [--projections K] [--seed S]")?);
    let flag = |name: &str, default: u64| -> Result<u64> {
        match args.iter().position(|a| a == name) {
            Some(i) => args.get(i + 1).with_context(|| format!("{name} needs a value"))?.parse().with_context(|| format!("{name}: not an integer")),
            None => Ok(default),
        }
    };
    let (projections, seed) = (flag("--projections", 100)? as usize, flag("--seed", 0)?);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)
        .with_context(|| format!("reading {}", folder.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("{}: no instance files (NAME.json) — write them with scripts/gmm_script_ddrm.py", folder.display());
    }
    let labels = ["exact", "script DDRM", "DDRM (paper)", "DDRM (gmm-script)", "script MCGdiff", "MCGdiff"];
    println!("| instance | grid as script | {} |", labels.join(" | "));
    println!("|---|---|{}", "---|".repeat(labels.len()));
    let mut groups: BTreeMap<(usize, usize, usize), Vec<[f64; COLUMNS]>> = BTreeMap::new();
    for file in &files {
        let (inst, ddrm, mcgdiff) = read_instance(file)?;
        let (s, same) = score(&inst, &ddrm, &mcgdiff, projections, seed).with_context(|| format!("instance {}", file.display()))?;
        let name = file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        println!("| {name} | {} | {} |", if same { "yes" } else { "no" }, s.iter().map(|v| format!("{v:.3}")).collect::<Vec<_>>().join(" | "));
        groups.entry((inst.dim, inst.dim_y, inst.steps)).or_default().push(s);
    }
    println!("\n| d | d_y | steps | n | {} |", labels.join(" | "));
    println!("|---|---|---|---|{}", "---|".repeat(labels.len()));
    for ((d, dy, steps), rows) in &groups {
        let n = rows.len() as f64;
        let cells: Vec<String> = (0..COLUMNS)
            .map(|k| {
                let mean = rows.iter().map(|r| r[k]).sum::<f64>() / n;
                let var = rows.iter().map(|r| (r[k] - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
                format!("{mean:.2} ± {:.2}", 1.96 * (var / n).sqrt())
            })
            .collect();
        println!("| {d} | {dy} | {steps} | {} | {} |", rows.len(), cells.join(" | "));
    }
    // Paired: (dipbench − script)/script per instance, mean ± 1.96·std/√n and the largest.
    println!("\n| d | d_y | steps | DDRM (paper) vs script | DDRM (gmm-script) vs script | MCGdiff vs script |");
    println!("|---|---|---|---|---|---|");
    for ((d, dy, steps), rows) in &groups {
        let n = rows.len() as f64;
        let cells: Vec<String> = [(2, 1), (3, 1), (5, 4)]
            .iter()
            .map(|&(ours, script)| {
                let r: Vec<f64> = rows.iter().map(|v| (v[ours] - v[script]) / v[script]).collect();
                let mean = r.iter().sum::<f64>() / n;
                let sd = (r.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0)).sqrt();
                let worst = r.iter().fold(0.0f64, |m, x| m.max(x.abs()));
                format!("{:+.1} ± {:.1} % (sd {:.1} %, largest {:.0} %)", 100.0 * mean, 196.0 * sd / n.sqrt(), 100.0 * sd, 100.0 * worst)
            })
            .collect();
        println!("| {d} | {dy} | {steps} | {} |", cells.join(" | "));
    }
    Ok(())
}
