//! Aggregation of per-replicate rows into the benchmark's tables: per (budget, d, d_y, method)
//! the mean ± 1.96·std/√n over replicates (std with n − 1), as the MCGdiff paper reports them;
//! the group-by is polars' ([`crate::tables::aggregate`]). Fewer than two finite replicates give no
//! interval; a cell with diverged replicates says how many and is never marked best.
//!
//! Outputs: `rows.csv` (every replicate), `table.csv` (the aggregated metrics; a deterministic
//! function of the seed), `timing.csv` (wall time, which is not deterministic), and
//! `table.md` (both, for people).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use polars::prelude::{IntoLazy, SortMultipleOptions, col, df};
use serde::Serialize;

use super::GmmRow;
use crate::experiment::{Experiment, GmmExperiment};
use crate::pipeline::machine::{self, MachineRecord};
use crate::tables::aggregate::{self, floats, integers, read_stats, strings};

/// One aggregated cell group: a method on a (budget, d, d_y).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Aggregate {
    /// Step budget.
    pub steps: usize,
    /// The budget's η.
    pub eta: f64,
    /// d.
    pub d: usize,
    /// d_y.
    pub d_y: usize,
    /// Method label.
    pub method: String,
    /// Sampler name.
    pub sampler: String,
    /// Denoiser evaluations per sample.
    pub nfe: usize,
    /// Replicates.
    pub replicates: usize,
    /// Replicates whose samples were not finite (left out of the means).
    pub failed: usize,
    /// Mean sliced W1.
    pub sw1_mean: f64,
    /// Its 95 % half-width.
    pub sw1_ci95: f64,
    /// Mean max-sliced W2.
    pub max_sw2_mean: f64,
    /// Its 95 % half-width.
    pub max_sw2_ci95: f64,
    /// Mean wall time per replicate, seconds (not part of `table.csv`).
    #[serde(skip)]
    pub seconds: f64,
}

/// Groups `rows` by (steps, d, d_y, method) with polars ([`crate::tables::aggregate`]), in the order
/// (steps, d, d_y, the experiment's method order).
pub fn aggregate(rows: &[GmmRow], method_order: &[String]) -> Result<Vec<Aggregate>> {
    let rank = |m: &str| method_order.iter().position(|x| x == m).unwrap_or(method_order.len()) as u64;
    let u = |f: fn(&GmmRow) -> usize| rows.iter().map(|r| f(r) as u64).collect::<Vec<u64>>();
    let df = df!(
        "steps" => u(|r| r.steps),
        "d" => u(|r| r.d),
        "d_y" => u(|r| r.d_y),
        "rank" => rows.iter().map(|r| rank(&r.method)).collect::<Vec<u64>>(),
        "eta" => rows.iter().map(|r| r.eta).collect::<Vec<f64>>(),
        "method" => rows.iter().map(|r| r.method.as_str()).collect::<Vec<&str>>(),
        "sampler" => rows.iter().map(|r| r.sampler.as_str()).collect::<Vec<&str>>(),
        "nfe" => u(|r| r.nfe),
        "sw1" => rows.iter().map(|r| r.sw1).collect::<Vec<f64>>(),
        "max_sw2" => rows.iter().map(|r| r.max_sw2).collect::<Vec<f64>>(),
        "seconds" => rows.iter().map(|r| r.seconds).collect::<Vec<f64>>()
    )?;
    // A budget is (steps, η): two budgets with the same steps are different rows.
    let keys = ["steps", "eta", "d", "d_y", "rank"];
    let firsts = ["method", "sampler", "nfe"].map(|c| col(c).first());
    let out = aggregate::finite_stats(df.lazy(), &keys, &["sw1", "max_sw2"], [firsts.to_vec(), vec![col("seconds").mean()]].concat())
        .sort(keys, SortMultipleOptions::default())
        .collect()?;
    let (sw1, msw2) = (read_stats(&out, "sw1")?, read_stats(&out, "max_sw2")?);
    let (steps, d, d_y, nfe, replicates) =
        (integers(&out, "steps")?, integers(&out, "d")?, integers(&out, "d_y")?, integers(&out, "nfe")?, integers(&out, "rows")?);
    let (eta, seconds) = (floats(&out, "eta")?, floats(&out, "seconds")?);
    let (method, sampler) = (strings(&out, "method")?, strings(&out, "sampler")?);
    Ok((0..out.height())
        .map(|i| Aggregate {
            steps: steps[i],
            eta: eta[i].unwrap_or(f64::NAN),
            d: d[i],
            d_y: d_y[i],
            method: method[i].clone(),
            sampler: sampler[i].clone(),
            nfe: nfe[i],
            replicates: replicates[i],
            failed: sw1[i].failed,
            sw1_mean: sw1[i].mean,
            sw1_ci95: sw1[i].ci95,
            max_sw2_mean: msw2[i].mean,
            max_sw2_ci95: msw2[i].ci95,
            seconds: seconds[i].unwrap_or(f64::NAN),
        })
        .collect())
}

/// Three significant digits, plain notation for the table.
fn sig(x: f64) -> String {
    if !x.is_finite() {
        return "NaN".into();
    }
    if x == 0.0 {
        return "0".into();
    }
    let digits = (2 - x.abs().log10().floor() as i32).max(0) as usize;
    format!("{x:.digits$}")
}

/// Writes `rows.csv`, `table.csv`, `timing.csv` and `table.md` into `out`; returns the Markdown.
pub fn write_all(exp: &Experiment, gmm: &GmmExperiment, rows: &[GmmRow], out: &Path) -> Result<String> {
    let order = exp.labels();
    let agg = aggregate(rows, &order)?;

    let mut w = csv::Writer::from_path(out.join("rows.csv")).context("cannot write rows.csv")?;
    for r in rows {
        w.serialize(r)?;
    }
    w.flush()?;
    let mut w = csv::Writer::from_path(out.join("table.csv")).context("cannot write table.csv")?;
    for a in &agg {
        w.serialize(a)?;
    }
    w.flush()?;
    let mut w = csv::Writer::from_path(out.join("timing.csv")).context("cannot write timing.csv")?;
    w.write_record(["steps", "eta", "d", "d_y", "method", "nfe", "seconds_per_replicate"])?;
    for a in &agg {
        w.write_record([
            a.steps.to_string(),
            a.eta.to_string(),
            a.d.to_string(),
            a.d_y.to_string(),
            a.method.clone(),
            a.nfe.to_string(),
            format!("{:.4}", a.seconds),
        ])?;
    }
    w.flush()?;

    let mut md = markdown(exp, gmm, &agg, &order, &machine::read(out)?);
    md.push_str(&figure_links(gmm, out));
    std::fs::write(out.join("table.md"), &md).context("cannot write table.md")?;
    Ok(md)
}

/// Links to the figures `dipbench figures` wrote into `out` (one row per (d, d_y), one column per
/// budget, each replicate drawn), or nothing when there are none.
pub fn figure_links(gmm: &GmmExperiment, out: &Path) -> String {
    let jobs: Vec<super::GmmJob> = super::jobs(&gmm.grid).into_iter().filter(|j| out.join(super::figure_path(j)).is_file()).collect();
    if jobs.is_empty() {
        return String::new();
    }
    let g = &gmm.grid;
    let mut s = String::from(
        "\n## Figures\n\nEach method's samples against the exact posterior's on (x₁, x₂) and on A's leading right-singular \
         direction (`dipbench figures`; the samples the table scored).\n\n| d | d_y |",
    );
    for b in &g.budgets {
        let _ = write!(s, " {} steps (η = {}) |", b.steps, b.eta);
    }
    s.push_str("\n|---|---|");
    s.push_str(&"---|".repeat(g.budgets.len()));
    s.push('\n');
    for &d in &g.dims {
        for &d_y in &g.obs_dims {
            let _ = write!(s, "| {d} | {d_y} |");
            for b in &g.budgets {
                let links: Vec<String> = jobs
                    .iter()
                    .filter(|j| j.d == d && j.d_y == d_y && j.budget == *b)
                    .map(|j| format!("[r{}]({})", j.replicate, super::figure_path(j).display()))
                    .collect();
                let _ = write!(s, " {} |", if links.is_empty() { "–".to_string() } else { links.join(" ") });
            }
            s.push('\n');
        }
    }
    s
}

/// Replaces the `## Figures` section of `out/table.md` (the last section, when present) by the
/// links to the figures now in `out` (a results folder copied without its `runs/` keeps its table).
pub fn relink_figures(gmm: &GmmExperiment, out: &Path) -> Result<()> {
    let path = out.join("table.md");
    let Ok(md) = std::fs::read_to_string(&path) else { return Ok(()) };
    let body = md.find("\n## Figures\n").map_or(md.as_str(), |i| &md[..i]);
    std::fs::write(&path, format!("{body}{}", figure_links(gmm, out))).with_context(|| format!("cannot write {}", path.display()))
}

/// One cell of a distance table: `mean ± ci95`, or `mean (n = k)` when there are too few
/// replicates for an interval; bold when it is the row's best, which a cell with a diverged
/// replicate never is (its mean is over the survivors only); the diverged count is spelled out.
fn cell_text(mean: f64, ci: f64, replicates: usize, failed: usize, is_best: bool) -> String {
    let n = replicates - failed;
    let mut text = if ci.is_finite() { format!("{} ± {}", sig(mean), sig(ci)) } else { format!("{} (n = {n})", sig(mean)) };
    if is_best && failed == 0 {
        text = format!("**{text}**");
    }
    if failed > 0 {
        text = format!("{text} ({failed} of {replicates} diverged)");
    }
    text
}

/// The Markdown report: per budget, one sliced-W1 table (rows (d, d_y), columns methods, best
/// non-exact method in bold), the max-sliced-W2 variant, and a wall-time table.
pub fn markdown(exp: &Experiment, gmm: &GmmExperiment, agg: &[Aggregate], order: &[String], machines: &[MachineRecord]) -> String {
    let g = &gmm.grid;
    let mut s = String::new();
    let _ = writeln!(s, "# {} — distance to the exact posterior\n", exp.header.name);
    if !exp.header.description.is_empty() {
        let _ = writeln!(s, "{}\n", exp.header.description.trim());
    }
    let _ = writeln!(
        s,
        "Protocol: the MCGdiff Gaussian-mixture benchmark (docs/gmm.md): 25-component mixture, identity covariances, \
         random A with Uniform(0,1) singular values, σ_y = u·max(s); schedule `{}`; {} samples per method vs {} exact \
         posterior draws; {} random directions; mean ± 1.96·std/√n over {} replicates; lower is better. \
         The *exact* row compares two independent exact sample sets: it is the noise floor. Seed {}, random streams v{}.\n",
        g.schedule,
        g.samples,
        g.samples,
        exp.metric.projections,
        g.replicates,
        exp.header.seed,
        dipbench_operators::noise::NOISE_VERSION
    );
    let mut budgets: Vec<(usize, f64)> = agg.iter().map(|a| (a.steps, a.eta)).collect();
    budgets.dedup();
    let exact_labels: Vec<&str> = exp.methods.iter().filter(|m| m.sampler == "exact").map(|m| m.label.as_str()).collect();
    for &(steps, eta) in &budgets {
        for (title, pick) in [
            ("sliced W1 (paper metric)", (|a: &Aggregate| (a.sw1_mean, a.sw1_ci95)) as fn(&Aggregate) -> (f64, f64)),
            ("max-sliced W2 (variant)", |a: &Aggregate| (a.max_sw2_mean, a.max_sw2_ci95)),
        ] {
            let _ = writeln!(s, "## {steps} steps (η = {eta}) — {title}\n");
            let _ = writeln!(s, "| d | d_y | {} |", order.join(" | "));
            let _ = writeln!(s, "|---|---|{}", "---|".repeat(order.len()));
            let mut cells: BTreeMap<(usize, usize), Vec<&Aggregate>> = BTreeMap::new();
            for a in agg.iter().filter(|a| a.steps == steps && a.eta == eta) {
                cells.entry((a.d, a.d_y)).or_default().push(a);
            }
            for ((d, d_y), list) in cells {
                // The best cell: among the non-exact methods without a diverged replicate.
                let best = list
                    .iter()
                    .filter(|a| !exact_labels.contains(&a.method.as_str()) && a.failed == 0)
                    .map(|a| pick(a).0)
                    .filter(|v| v.is_finite())
                    .fold(f64::INFINITY, f64::min);
                let row: Vec<String> = order
                    .iter()
                    .map(|m| match list.iter().find(|a| &a.method == m) {
                        Some(a) => {
                            let (mean, ci) = pick(a);
                            cell_text(mean, ci, a.replicates, a.failed, mean == best)
                        }
                        None => "–".into(),
                    })
                    .collect();
                let _ = writeln!(s, "| {d} | {d_y} | {} |", row.join(" | "));
            }
            let _ = writeln!(s);
        }
    }
    let dims: Vec<usize> = g.dims.clone();
    let _ = writeln!(s, "## Wall time: seconds per replicate ({} samples; mean over d_y and replicates) and NFE\n", g.samples);
    if machines.is_empty() {
        let _ = writeln!(s, "Machine and settings unknown (no machine.json in the results folder).\n");
    }
    for m in machines {
        let _ = writeln!(
            s,
            "Measured on {} ({} logical cores) with {} worker threads and {} jobs at once (CPU backend; random streams v{}); \
             a job's time includes other jobs running beside it.\n",
            m.cpu, m.cores, m.threads, m.jobs, m.noise_version
        );
    }
    let header: Vec<String> = budgets.iter().flat_map(|(st, eta)| dims.iter().map(move |d| format!("{st} steps (η = {eta}), d={d}"))).collect();
    let _ = writeln!(s, "| method | NFE | {} |", header.join(" | "));
    let _ = writeln!(s, "|---|---|{}", "---|".repeat(header.len()));
    for m in order {
        let nfe: Vec<String> =
            budgets.iter().filter_map(|(st, eta)| agg.iter().find(|a| &a.method == m && a.steps == *st && a.eta == *eta).map(|a| a.nfe.to_string())).collect();
        let times: Vec<String> = budgets
            .iter()
            .flat_map(|(st, eta)| {
                dims.iter().map(move |d| {
                    let v: Vec<f64> = agg.iter().filter(|a| &a.method == m && a.steps == *st && a.eta == *eta && a.d == *d).map(|a| a.seconds).collect();
                    if v.is_empty() { "–".to_string() } else { format!("{:.3}", v.iter().sum::<f64>() / v.len() as f64) }
                })
            })
            .collect();
        let _ = writeln!(s, "| {m} | {} | {} |", nfe.join(" / "), times.join(" | "));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sig_keeps_three_significant_digits() {
        assert_eq!(sig(12.345), "12.3");
        assert_eq!(sig(0.012345), "0.0123");
        assert_eq!(sig(1234.5), "1234");
        assert_eq!(sig(f64::NAN), "NaN");
    }

    #[test]
    fn cells_say_what_the_replicates_support() {
        assert_eq!(cell_text(0.5, 0.1, 20, 0, true), "**0.500 ± 0.100**");
        // Diverged replicates: never bold, however small the surviving mean, and counted.
        assert_eq!(cell_text(0.01, 0.001, 20, 10, true), "0.0100 ± 0.00100 (10 of 20 diverged)");
        // One replicate: no interval.
        assert_eq!(cell_text(0.5, f64::NAN, 1, 0, false), "0.500 (n = 1)");
    }
}
