//! Tables of the image benchmark: per metric, methods × tasks, mean ± std over images, best in
//! bold and second underlined as the papers print them; CSV (long form), Markdown and LaTeX.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::experiment::LoadedExperiment;
use crate::image_bench::ImageRow;
use crate::table::Stat;

/// One (task, method, metric) cell.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    /// Task.
    pub task: String,
    /// Method label.
    pub method: String,
    /// Metric name.
    pub metric: String,
    /// Mean over the images whose value is finite.
    pub mean: f64,
    /// Sample standard deviation.
    pub std: f64,
    /// Images counted.
    pub n: usize,
    /// Images whose reconstruction was not finite.
    pub failed: usize,
    /// Network evaluations per image.
    pub nfe: usize,
    /// Mean seconds per image.
    pub seconds: f64,
    /// `ok` or the reason the method does not run on the task.
    pub status: String,
}

/// Whether larger is better for `metric` (PSNR, SSIM) or smaller (LPIPS).
pub fn higher_is_better(metric: &str) -> bool {
    metric.starts_with("psnr") || metric.starts_with("ssim")
}

/// Aggregates rows into cells, in (task, method, metric) order of the experiment.
pub fn aggregate(exp: &LoadedExperiment, rows: &[ImageRow]) -> Vec<Cell> {
    let grid = exp.experiment.image.as_ref().expect("validated image experiment");
    let mut out = vec![];
    for task in &grid.tasks {
        for m in &exp.experiment.methods {
            let mine: Vec<&ImageRow> = rows.iter().filter(|r| &r.task == task && r.method == m.label).collect();
            let status = mine.iter().find(|r| r.status != "ok").map(|r| r.status.clone()).unwrap_or_else(|| "ok".into());
            let seconds = mine.iter().map(|r| r.seconds).sum::<f64>() / mine.len().max(1) as f64;
            let nfe = mine.first().map_or(0, |r| r.nfe);
            for metric in &grid.metrics {
                let values: Vec<f64> = mine.iter().filter(|r| r.status == "ok").map(|r| r.metrics.get(metric).copied().unwrap_or(f64::NAN)).collect();
                let s = Stat::of(&values);
                out.push(Cell { task: task.clone(), method: m.label.clone(), metric: metric.clone(), mean: s.mean, std: s.std, n: s.n, failed: s.failed, nfe, seconds, status: status.clone() });
            }
        }
    }
    out
}

/// The rank of each method's value in a column (0 = best), by the metric's direction; cells
/// without a value get none.
fn ranks(cells: &[&Cell]) -> BTreeMap<String, usize> {
    let mut vals: Vec<(String, f64)> = cells.iter().filter(|c| c.status == "ok" && c.mean.is_finite()).map(|c| (c.method.clone(), c.mean)).collect();
    let hi = cells.first().is_some_and(|c| higher_is_better(&c.metric));
    vals.sort_by(|a, b| if hi { b.1.total_cmp(&a.1) } else { a.1.total_cmp(&b.1) });
    vals.into_iter().enumerate().map(|(i, (m, _))| (m, i)).collect()
}

fn fmt_value(metric: &str, v: f64) -> String {
    if metric.starts_with("psnr") { format!("{v:.2}") } else { format!("{v:.3}") }
}

/// Markdown: one table per metric, methods × tasks.
pub fn markdown(exp: &LoadedExperiment, cells: &[Cell]) -> String {
    let e = &exp.experiment;
    let grid = e.image.as_ref().expect("validated image experiment");
    let mut s = String::new();
    let _ = writeln!(s, "# {}\n", e.experiment.name);
    if !e.experiment.description.is_empty() {
        let _ = writeln!(s, "{}\n", e.experiment.description.trim());
    }
    let _ = writeln!(s, "{}\n", caption(exp));
    for metric in &grid.metrics {
        let arrow = if higher_is_better(metric) { "↑" } else { "↓" };
        let _ = writeln!(s, "## {metric} {arrow} (mean ± std over images; best **bold**, second <u>underlined</u>)\n");
        let _ = writeln!(s, "| method | {} |", grid.tasks.join(" | "));
        let _ = writeln!(s, "|---|{}", "---|".repeat(grid.tasks.len()));
        let column_ranks: Vec<BTreeMap<String, usize>> = grid
            .tasks
            .iter()
            .map(|t| ranks(&cells.iter().filter(|c| &c.task == t && &c.metric == metric).collect::<Vec<_>>()))
            .collect();
        for m in &e.methods {
            let row: Vec<String> = grid
                .tasks
                .iter()
                .zip(&column_ranks)
                .map(|(t, r)| {
                    let c = cells.iter().find(|c| &c.task == t && c.method == m.label && &c.metric == metric).expect("cell");
                    if c.status != "ok" {
                        return "–".into();
                    }
                    let mut text = format!("{} ± {}", fmt_value(metric, c.mean), fmt_value(metric, c.std));
                    match r.get(&m.label) {
                        Some(0) => text = format!("**{text}**"),
                        Some(1) => text = format!("<u>{text}</u>"),
                        _ => {}
                    }
                    if c.failed > 0 {
                        text = format!("{text} ({} failed)", c.failed);
                    }
                    text
                })
                .collect();
            let _ = writeln!(s, "| {} | {} |", m.label, row.join(" | "));
        }
        let _ = writeln!(s);
    }
    let _ = writeln!(s, "## NFE and seconds per image\n");
    let _ = writeln!(s, "| method | {} |", grid.tasks.join(" | "));
    let _ = writeln!(s, "|---|{}", "---|".repeat(grid.tasks.len()));
    let first = &grid.metrics[0];
    for m in &e.methods {
        let row: Vec<String> = grid
            .tasks
            .iter()
            .map(|t| {
                let c = cells.iter().find(|c| &c.task == t && c.method == m.label && &c.metric == first).expect("cell");
                if c.status != "ok" { "–".into() } else { format!("{} / {:.3} s", c.nfe, c.seconds) }
            })
            .collect();
        let _ = writeln!(s, "| {} | {} |", m.label, row.join(" | "));
    }
    // Not-run cells, one line per method: the tasks and the first reason.
    let mut not_run: Vec<(String, Vec<String>, String)> = vec![];
    for c in cells.iter().filter(|c| c.status != "ok" && &c.metric == first) {
        let why = c.status.trim_start_matches("unsupported: ").to_string();
        match not_run.iter_mut().find(|(m, _, w)| *m == c.method && *w == why) {
            Some(entry) => entry.1.push(c.task.clone()),
            None => not_run.push((c.method.clone(), vec![c.task.clone()], why)),
        }
    }
    if !not_run.is_empty() {
        let _ = writeln!(s, "\n## Not run (–)\n");
        for (m, tasks, why) in not_run {
            let _ = writeln!(s, "- {m} on {}: {why}", tasks.join(", "));
        }
    }
    s
}

/// The protocol in one paragraph (Markdown and LaTeX captions).
pub fn caption(exp: &LoadedExperiment) -> String {
    let e = &exp.experiment;
    let g = e.image.as_ref().expect("validated image experiment");
    let weights = match &g.checkpoint {
        Some(c) => format!("checkpoint `{c}`"),
        None => "UNTRAINED golden-fill weights (a plumbing check, not a benchmark)".into(),
    };
    let noise = match g.noise.kind.as_str() {
        "poisson" => format!("Poisson noise, rate λ = {}", g.noise.rate),
        _ => format!("Gaussian noise σ_y = {} in [−1, 1] units", g.noise.sigma),
    };
    format!(
        "Protocol: {} images of {}×{} from `{}`; prior `{}` with {weights}; {} operator definitions; {noise}; \
         metrics {} (skimage conventions on 8-bit images for psnr/ssim, piq on [0, 1] for the -piq variants); seed {}.",
        g.images,
        g.side,
        g.side,
        g.dataset,
        g.model,
        g.variant.to_uppercase(),
        g.metrics.join(", "),
        e.experiment.seed
    )
}

/// Escapes LaTeX's special characters in text.
pub fn latex_escape(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\textbackslash{}"),
            '&' | '%' | '$' | '#' | '_' | '{' | '}' => {
                out.push('\\');
                out.push(c);
            }
            '~' => out.push_str("\\textasciitilde{}"),
            '^' => out.push_str("\\textasciicircum{}"),
            'Π' => out.push_str("$\\Pi$"),
            'σ' => out.push_str("$\\sigma$"),
            'λ' => out.push_str("$\\lambda$"),
            '×' => out.push_str("$\\times$"),
            '−' => out.push('-'),
            '`' => {}
            c => out.push(c),
        }
    }
    out
}

/// LaTeX: one `table` per metric, methods × tasks, best `\textbf`, second `\underline`.
pub fn latex(exp: &LoadedExperiment, cells: &[Cell]) -> String {
    let e = &exp.experiment;
    let grid = e.image.as_ref().expect("validated image experiment");
    let mut s = String::new();
    for metric in &grid.metrics {
        let arrow = if higher_is_better(metric) { "$\\uparrow$" } else { "$\\downarrow$" };
        let _ = writeln!(s, "\\begin{{table}}[t]\n\\centering\n\\small");
        let _ = writeln!(s, "\\caption{{{} -- {} {arrow}. {}}}", latex_escape(&e.experiment.name), latex_escape(metric), latex_escape(&caption(exp)));
        let _ = writeln!(s, "\\begin{{tabular}}{{l{}}}\n\\hline", "c".repeat(grid.tasks.len()));
        let head: Vec<String> = grid.tasks.iter().map(|t| latex_escape(t)).collect();
        let _ = writeln!(s, "Method & {} \\\\\n\\hline", head.join(" & "));
        let column_ranks: Vec<BTreeMap<String, usize>> = grid
            .tasks
            .iter()
            .map(|t| ranks(&cells.iter().filter(|c| &c.task == t && &c.metric == metric).collect::<Vec<_>>()))
            .collect();
        for m in &e.methods {
            let row: Vec<String> = grid
                .tasks
                .iter()
                .zip(&column_ranks)
                .map(|(t, r)| {
                    let c = cells.iter().find(|c| &c.task == t && c.method == m.label && &c.metric == metric).expect("cell");
                    if c.status != "ok" {
                        return "--".into();
                    }
                    let v = fmt_value(metric, c.mean);
                    match r.get(&m.label) {
                        Some(0) => format!("\\textbf{{{v}}}"),
                        Some(1) => format!("\\underline{{{v}}}"),
                        _ => v,
                    }
                })
                .collect();
            let _ = writeln!(s, "{} & {} \\\\", latex_escape(&m.label), row.join(" & "));
        }
        let _ = writeln!(s, "\\hline\n\\end{{tabular}}\n\\end{{table}}\n");
    }
    s
}

/// Writes `rows.csv` (one row per image and metric), `table.csv`, `table.md` and `table.tex`
/// into `out`; returns the Markdown.
pub fn write_all(exp: &LoadedExperiment, rows: &[ImageRow], out: &Path) -> Result<String> {
    let mut w = csv::Writer::from_path(out.join("rows.csv")).context("cannot write rows.csv")?;
    w.write_record(["task", "method", "sampler", "image", "metric", "value", "nfe", "seconds", "status"])?;
    for r in rows {
        if r.metrics.is_empty() {
            w.write_record([&r.task, &r.method, &r.sampler, &r.image, "", "", &r.nfe.to_string(), &r.seconds.to_string(), &r.status])?;
        }
        for (m, v) in &r.metrics {
            w.write_record([&r.task, &r.method, &r.sampler, &r.image, m, &v.to_string(), &r.nfe.to_string(), &r.seconds.to_string(), &r.status])?;
        }
    }
    w.flush()?;
    let cells = aggregate(exp, rows);
    let mut w = csv::Writer::from_path(out.join("table.csv")).context("cannot write table.csv")?;
    for c in &cells {
        w.serialize(c)?;
    }
    w.flush()?;
    let md = markdown(exp, &cells);
    std::fs::write(out.join("table.md"), &md).context("cannot write table.md")?;
    std::fs::write(out.join("table.tex"), latex(exp, &cells)).context("cannot write table.tex")?;
    Ok(md)
}
