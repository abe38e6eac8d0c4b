//! Aggregation of per-replicate rows into the benchmark's tables: per (budget, d, d_y, method)
//! the mean ± 1.96·std/√n over replicates (std with n − 1), as the MCGdiff paper reports them.
//!
//! Outputs: `rows.csv` (every replicate), `table.csv` (the aggregated metrics; a deterministic
//! function of the seed), `timing.csv` (wall time, which is not deterministic), and
//! `table.md` (both, for people).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::experiment::LoadedExperiment;
use crate::gmm::GmmRow;

/// Mean, sample standard deviation and the 95 % half-width 1.96·std/√n of the finite values
/// among n; non-finite values (a sampler that diverged on a replicate) are counted, not averaged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stat {
    /// Number of finite values.
    pub n: usize,
    /// Number of non-finite values left out.
    pub failed: usize,
    /// Mean.
    pub mean: f64,
    /// Standard deviation with n − 1 (0 for n = 1).
    pub std: f64,
    /// 1.96·std/√n.
    pub ci95: f64,
}

impl Stat {
    /// Statistics of `values` (summed in order, so the result is deterministic). With no finite
    /// value the mean is NaN.
    pub fn of(values: &[f64]) -> Self {
        let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        let n = finite.len();
        let failed = values.len() - n;
        let mean = finite.iter().sum::<f64>() / n as f64;
        let std = if n > 1 { (finite.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt() } else { 0.0 };
        Self { n, failed, mean, std, ci95: 1.96 * std / (n as f64).sqrt() }
    }
}

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

/// Groups `rows` by (steps, d, d_y, method), keeping the experiment's method order.
pub fn aggregate(rows: &[GmmRow], method_order: &[String]) -> Vec<Aggregate> {
    let rank = |m: &str| method_order.iter().position(|x| x == m).unwrap_or(usize::MAX);
    let mut groups: BTreeMap<(usize, usize, usize, usize), Vec<&GmmRow>> = BTreeMap::new();
    for r in rows {
        groups.entry((r.steps, r.d, r.d_y, rank(&r.method))).or_default().push(r);
    }
    groups
        .into_values()
        .map(|g| {
            let first = g[0];
            let sw1 = Stat::of(&g.iter().map(|r| r.sw1).collect::<Vec<_>>());
            let msw2 = Stat::of(&g.iter().map(|r| r.max_sw2).collect::<Vec<_>>());
            Aggregate {
                steps: first.steps,
                eta: first.eta,
                d: first.d,
                d_y: first.d_y,
                method: first.method.clone(),
                sampler: first.sampler.clone(),
                nfe: first.nfe,
                replicates: g.len(),
                failed: sw1.failed,
                sw1_mean: sw1.mean,
                sw1_ci95: sw1.ci95,
                max_sw2_mean: msw2.mean,
                max_sw2_ci95: msw2.ci95,
                seconds: g.iter().map(|r| r.seconds).sum::<f64>() / g.len() as f64,
            }
        })
        .collect()
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
pub fn write_all(exp: &LoadedExperiment, rows: &[GmmRow], out: &Path) -> Result<String> {
    let order: Vec<String> = exp.experiment.methods.iter().map(|m| m.label.clone()).collect();
    let agg = aggregate(rows, &order);

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
    w.write_record(["steps", "d", "d_y", "method", "nfe", "seconds_per_replicate"])?;
    for a in &agg {
        w.write_record([a.steps.to_string(), a.d.to_string(), a.d_y.to_string(), a.method.clone(), a.nfe.to_string(), format!("{:.4}", a.seconds)])?;
    }
    w.flush()?;

    let md = markdown(exp, &agg, &order);
    std::fs::write(out.join("table.md"), &md).context("cannot write table.md")?;
    Ok(md)
}

/// The Markdown report: per budget, one sliced-W1 table (rows (d, d_y), columns methods, best
/// non-exact method in bold), the max-sliced-W2 variant, and a wall-time table.
pub fn markdown(exp: &LoadedExperiment, agg: &[Aggregate], order: &[String]) -> String {
    let e = &exp.experiment;
    let g = e.gmm.as_ref().expect("validated gmm experiment");
    let mut s = String::new();
    let _ = writeln!(s, "# {} — distance to the exact posterior\n", e.experiment.name);
    if !e.experiment.description.is_empty() {
        let _ = writeln!(s, "{}\n", e.experiment.description.trim());
    }
    let _ = writeln!(
        s,
        "Protocol: MCGdiff Gaussian-mixture benchmark (spec/gmm.md): 25-component mixture, identity covariances, \
         random A with Uniform(0,1) singular values, σ_y = u·max(s); schedule `{}`; {} samples per method vs {} exact \
         posterior draws; {} random directions; mean ± 1.96·std/√n over {} replicates; lower is better. \
         The *exact* row compares two independent exact sample sets: it is the noise floor. Seed {}.\n",
        g.schedule, g.samples, g.samples, e.metric.projections, g.replicates, e.experiment.seed
    );
    let mut budgets: Vec<(usize, f64)> = agg.iter().map(|a| (a.steps, a.eta)).collect();
    budgets.dedup();
    let exact_labels: Vec<&str> = e.methods.iter().filter(|m| m.sampler == "exact").map(|m| m.label.as_str()).collect();
    for &(steps, eta) in &budgets {
        for (title, pick) in [
            ("sliced W1 (paper metric)", (|a: &Aggregate| (a.sw1_mean, a.sw1_ci95, a.failed)) as fn(&Aggregate) -> (f64, f64, usize)),
            ("max-sliced W2 (variant)", |a: &Aggregate| (a.max_sw2_mean, a.max_sw2_ci95, a.failed)),
        ] {
            let _ = writeln!(s, "## {steps} steps (η = {eta}) — {title}\n");
            let _ = writeln!(s, "| d | d_y | {} |", order.join(" | "));
            let _ = writeln!(s, "|---|---|{}", "---|".repeat(order.len()));
            let mut cells: BTreeMap<(usize, usize), Vec<&Aggregate>> = BTreeMap::new();
            for a in agg.iter().filter(|a| a.steps == steps) {
                cells.entry((a.d, a.d_y)).or_default().push(a);
            }
            for ((d, d_y), list) in cells {
                let best = list
                    .iter()
                    .filter(|a| !exact_labels.contains(&a.method.as_str()))
                    .map(|a| pick(a).0)
                    .filter(|v| v.is_finite())
                    .fold(f64::INFINITY, f64::min);
                let row: Vec<String> = order
                    .iter()
                    .map(|m| match list.iter().find(|a| &a.method == m) {
                        Some(a) => {
                            let (mean, ci, failed) = pick(a);
                            let mut text = format!("{} ± {}", sig(mean), sig(ci));
                            if mean == best {
                                text = format!("**{text}**");
                            }
                            if failed > 0 {
                                text = format!("{text} ({failed} diverged)");
                            }
                            text
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
    let header: Vec<String> = budgets.iter().flat_map(|(st, _)| dims.iter().map(move |d| format!("{st} steps, d={d}"))).collect();
    let _ = writeln!(s, "| method | NFE | {} |", header.join(" | "));
    let _ = writeln!(s, "|---|---|{}", "---|".repeat(header.len()));
    for m in order {
        let nfe: Vec<String> = budgets
            .iter()
            .filter_map(|(st, _)| agg.iter().find(|a| &a.method == m && a.steps == *st).map(|a| a.nfe.to_string()))
            .collect();
        let times: Vec<String> = budgets
            .iter()
            .flat_map(|(st, _)| {
                dims.iter().map(move |d| {
                    let v: Vec<f64> = agg.iter().filter(|a| &a.method == m && a.steps == *st && a.d == *d).map(|a| a.seconds).collect();
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
    fn stat_matches_hand_computation() {
        let s = Stat::of(&[1.0, 2.0, f64::NAN, 3.0, 4.0]);
        assert_eq!((s.n, s.failed), (4, 1));
        assert_eq!(s.mean, 2.5);
        assert!((s.std - (5.0f64 / 3.0).sqrt()).abs() < 1e-15);
        assert!((s.ci95 - 1.96 * (5.0f64 / 3.0).sqrt() / 2.0).abs() < 1e-15);
        assert_eq!(Stat::of(&[7.0]).std, 0.0);
    }

    #[test]
    fn sig_keeps_three_significant_digits() {
        assert_eq!(sig(12.345), "12.3");
        assert_eq!(sig(0.012345), "0.0123");
        assert_eq!(sig(1234.5), "1234");
        assert_eq!(sig(f64::NAN), "NaN");
    }
}
