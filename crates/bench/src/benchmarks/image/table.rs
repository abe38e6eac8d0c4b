//! Tables of the image benchmark: per metric, methods × tasks, mean ± std over images, best in
//! bold and second underlined as the papers print them; CSV (long form), Markdown and LaTeX.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use polars::prelude::{IntoLazy, df};
use serde::Serialize;

use super::ImageRow;
use crate::experiment::{Experiment, ImageExperiment, NoiseSpec};
use crate::tables::aggregate::{Stat, best_run, finite_stats, read_stats, strings};

/// The experiment as the image tables print it: task and metric names in table order.
pub struct View<'a> {
    /// The experiment.
    pub exp: &'a Experiment,
    /// Its image settings.
    pub img: &'a ImageExperiment,
    /// Task names.
    pub tasks: Vec<String>,
    /// Per-image metric names.
    pub metrics: Vec<String>,
    /// Set metric names.
    pub set_metrics: Vec<String>,
}

impl<'a> View<'a> {
    /// The view of `exp`.
    pub fn new(exp: &'a Experiment, img: &'a ImageExperiment) -> Self {
        let g = &img.grid;
        Self {
            exp,
            img,
            tasks: g.tasks.iter().map(|t| t.name().to_string()).collect(),
            metrics: g.metrics.iter().map(|m| m.name().to_string()).collect(),
            set_metrics: g.set_metrics.iter().map(|m| m.name().to_string()).collect(),
        }
    }
}

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
    /// The paper's number for this cell (NaN when it has none).
    pub paper: f64,
}

/// The published numbers of the experiment's `[paper]` tables: (paper task, paper method,
/// metric family) → value, and the paper's methods in file order.
pub struct PaperNumbers {
    values: BTreeMap<(String, String, String), f64>,
    /// Methods of the paper's tables, in the order they first appear.
    pub methods: Vec<String>,
    reference: crate::experiment::PaperReference,
}

/// The metric family a metric name belongs to in the papers' tables (`psnr-piq` → `psnr`,
/// `lpips-vgg` → `lpips`, …).
pub fn metric_family(metric: &str) -> &str {
    metric.split('-').next().unwrap_or(metric)
}

impl PaperNumbers {
    /// Reads the `[paper]` file of `exp` (`None` without a `[paper]` table).
    pub fn load(exp: &Experiment) -> Result<Option<Self>> {
        let Some(r) = &exp.paper else { return Ok(None) };
        let mut rdr = csv::Reader::from_path(&r.file).with_context(|| format!("key `paper.file`: cannot read {}", r.file.display()))?;
        let header: Vec<String> = rdr.headers()?.iter().map(String::from).collect();
        let col = |name: &str| header.iter().position(|h| h == name).with_context(|| format!("{}: no column `{name}`", r.file.display()));
        let (ct, cd, ck, cm, cmet, cv) = (col("table")?, col("dataset")?, col("task")?, col("method")?, col("metric")?, col("value")?);
        let mut values = BTreeMap::new();
        let mut methods: Vec<String> = vec![];
        for rec in rdr.records() {
            let rec = rec.with_context(|| format!("malformed {}", r.file.display()))?;
            if !r.tables.iter().any(|t| t == &rec[ct]) || rec[cd] != r.dataset {
                continue;
            }
            let v: f64 = rec[cv].parse().with_context(|| format!("{}: value `{}` is not a number", r.file.display(), &rec[cv]))?;
            values.insert((rec[ck].to_string(), rec[cm].to_string(), rec[cmet].to_string()), v);
            if !methods.iter().any(|m| m == &rec[cm]) {
                methods.push(rec[cm].to_string());
            }
        }
        if values.is_empty() {
            anyhow::bail!("{}: no rows for tables {:?} on dataset `{}` (keys `paper.tables`, `paper.dataset`)", r.file.display(), r.tables, r.dataset);
        }
        Ok(Some(Self { values, methods, reference: r.clone() }))
    }

    /// The paper's value for our (task, method label, metric).
    pub fn get(&self, task: &str, method: &str, metric: &str) -> Option<f64> {
        let method = self.reference.methods.get(method).map(String::as_str).unwrap_or(method);
        self.get_paper_method(task, method, metric)
    }

    /// The paper's methods that are not rows of ours (printed with the paper's numbers only).
    pub fn other_methods(&self, exp: &Experiment) -> Vec<String> {
        let ours: Vec<&str> = exp.methods.iter().map(|m| self.reference.methods.get(&m.label).map(String::as_str).unwrap_or(m.label.as_str())).collect();
        self.methods.iter().filter(|m| !ours.contains(&m.as_str())).cloned().collect()
    }

    /// The paper's value for one of its own methods.
    pub fn get_paper_method(&self, task: &str, method: &str, metric: &str) -> Option<f64> {
        let task = self.reference.tasks.get(task).map(String::as_str).unwrap_or(task);
        self.values.get(&(task.to_string(), method.to_string(), metric_family(metric).to_string())).copied()
    }
}

/// Whether larger is better for `metric` (PSNR, SSIM) or smaller (LPIPS, FID).
pub fn higher_is_better(metric: &str) -> bool {
    metric.parse::<crate::registry::Metric>().is_ok_and(crate::registry::Metric::higher_is_better)
}

/// Per (task, method, metric) the statistics over images of the `ok` rows, computed with polars
/// ([`crate::tables::aggregate`]): each image's best run first (best-of-N; one run is its own best), then
/// mean ± std over images. A metric a row lacks counts as a failed image.
pub fn metric_stats(rows: &[ImageRow], metrics: &[String]) -> Result<BTreeMap<(String, String, String), Stat>> {
    let (mut task, mut method, mut image, mut metric, mut value, mut higher) = (vec![], vec![], vec![], vec![], vec![], vec![]);
    for r in rows.iter().filter(|r| r.status == "ok") {
        let runs = if r.run_metrics.is_empty() { std::slice::from_ref(&r.metrics) } else { &r.run_metrics[..] };
        for run in runs {
            for m in metrics {
                task.push(r.task.as_str());
                method.push(r.method.as_str());
                image.push(r.image.as_str());
                metric.push(m.as_str());
                value.push(run.get(m).copied().unwrap_or(f64::NAN));
                higher.push(higher_is_better(m));
            }
        }
    }
    let df = df!("task" => task, "method" => method, "image" => image, "metric" => metric, "value" => value, "higher" => higher)?;
    let best = best_run(df.lazy(), &["task", "method", "metric", "image"], "value", "higher");
    let out = finite_stats(best, &["task", "method", "metric"], &["value"], vec![]).collect()?;
    let (task, method, metric) = (strings(&out, "task")?, strings(&out, "method")?, strings(&out, "metric")?);
    Ok(read_stats(&out, "value")?.into_iter().enumerate().map(|(i, s)| ((task[i].clone(), method[i].clone(), metric[i].clone()), s)).collect())
}

/// Aggregates rows into cells, in (task, method, metric) order of the experiment.
pub fn aggregate(v: &View<'_>, rows: &[ImageRow], paper: Option<&PaperNumbers>) -> Result<Vec<Cell>> {
    let stats = metric_stats(rows, &v.metrics)?;
    let mut out = vec![];
    for task in &v.tasks {
        for m in &v.exp.methods {
            let mine: Vec<&ImageRow> = rows.iter().filter(|r| &r.task == task && r.method == m.label).collect();
            let left_out = task.parse().is_ok_and(|t| !crate::experiment::ImageExperiment::method_runs(m, t));
            let status = if left_out {
                format!("not in this experiment: the method runs {} only (its key `tasks`)", m.tasks.join(", "))
            } else {
                mine.iter().find(|r| r.status != "ok").map(|r| r.status.clone()).unwrap_or_else(|| "ok".into())
            };
            let seconds = mine.iter().map(|r| r.seconds).sum::<f64>() / mine.len().max(1) as f64;
            let nfe = mine.first().map_or(0, |r| r.nfe);
            for metric in &v.metrics {
                let s = stats.get(&(task.clone(), m.label.clone(), metric.clone())).copied().unwrap_or_else(|| Stat::of(&[]));
                let paper = paper.and_then(|p| p.get(task, &m.label, metric)).unwrap_or(f64::NAN);
                out.push(Cell {
                    task: task.clone(),
                    method: m.label.clone(),
                    metric: metric.clone(),
                    mean: s.mean,
                    std: s.std,
                    n: s.n,
                    failed: s.failed,
                    nfe,
                    seconds,
                    status: status.clone(),
                    paper,
                });
            }
        }
    }
    Ok(out)
}

/// The rank of each method's value in a column (0 = best), by the metric's direction; cells
/// without a value, or with failed images, get none (a method that diverged on some images is
/// never marked best).
fn ranks(cells: &[&Cell]) -> BTreeMap<String, usize> {
    let mut vals: Vec<(String, f64)> =
        cells.iter().filter(|c| c.status == "ok" && c.failed == 0 && c.mean.is_finite()).map(|c| (c.method.clone(), c.mean)).collect();
    let hi = cells.first().is_some_and(|c| higher_is_better(&c.metric));
    vals.sort_by(|a, b| if hi { b.1.total_cmp(&a.1) } else { a.1.total_cmp(&b.1) });
    vals.into_iter().enumerate().map(|(i, (m, _))| (m, i)).collect()
}

/// The cell of (task, method, metric).
fn cell<'a>(cells: &'a [Cell], task: &str, method: &str, metric: &str) -> &'a Cell {
    cells.iter().find(|c| c.task == task && c.method == method && c.metric == metric).expect("a cell for every task, method and metric")
}

/// For one metric, per method (experiment order): per task (experiment order) the cell and its
/// rank in the task's column (`None` when it has no value). Markdown and LaTeX format this.
fn ranked_rows<'a>(v: &'a View<'_>, cells: &'a [Cell], metric: &str) -> Vec<(&'a str, Vec<(&'a Cell, Option<usize>)>)> {
    let column_ranks: Vec<BTreeMap<String, usize>> =
        v.tasks.iter().map(|t| ranks(&cells.iter().filter(|c| &c.task == t && c.metric == metric).collect::<Vec<_>>())).collect();
    v.exp
        .methods
        .iter()
        .map(|m| {
            let row = v.tasks.iter().zip(&column_ranks).map(|(t, r)| (cell(cells, t, &m.label, metric), r.get(&m.label).copied())).collect();
            (m.label.as_str(), row)
        })
        .collect()
}

fn fmt_value(metric: &str, v: f64) -> String {
    if metric.starts_with("psnr") || metric.starts_with("fid") { format!("{v:.2}") } else { format!("{v:.3}") }
}

/// Markdown: one table per metric, methods × tasks.
pub fn markdown(v: &View<'_>, cells: &[Cell], paper: Option<&PaperNumbers>) -> String {
    let e = v.exp;
    let mut s = String::new();
    let _ = writeln!(s, "# {}\n", e.header.name);
    if !e.header.description.is_empty() {
        let _ = writeln!(s, "{}\n", e.header.description.trim());
    }
    let _ = writeln!(s, "{}\n", caption(v));
    for metric in v.metrics.iter().chain(&v.set_metrics) {
        let arrow = if higher_is_better(metric) { "↑" } else { "↓" };
        let _ = writeln!(s, "## {metric} {arrow} (mean ± std over images; best **bold**, second <u>underlined</u>)\n");
        let _ = writeln!(s, "| method | {} |", v.tasks.join(" | "));
        let _ = writeln!(s, "|---|{}", "---|".repeat(v.tasks.len()));
        for (label, ranked) in ranked_rows(v, cells, metric) {
            let row: Vec<String> = ranked
                .into_iter()
                .map(|(c, rank)| {
                    if c.status != "ok" {
                        return "–".into();
                    }
                    let mut text = if c.std.is_nan() {
                        if c.n < 2 && c.mean.is_finite() { format!("{} (n = {})", fmt_value(metric, c.mean), c.n) } else { fmt_value(metric, c.mean) }
                    } else {
                        format!("{} ± {}", fmt_value(metric, c.mean), fmt_value(metric, c.std))
                    };
                    match rank {
                        Some(0) => text = format!("**{text}**"),
                        Some(1) => text = format!("<u>{text}</u>"),
                        _ => {}
                    }
                    if c.failed > 0 {
                        text = format!("{text} ({} failed)", c.failed);
                    }
                    if c.paper.is_finite() {
                        text = format!("{text} (paper {}, Δ {:+.2})", fmt_value(metric, c.paper), c.mean - c.paper);
                    }
                    text
                })
                .collect();
            let _ = writeln!(s, "| {label} | {} |", row.join(" | "));
        }
        if let Some(p) = paper {
            for pm in p.other_methods(e) {
                let row: Vec<String> =
                    v.tasks.iter().map(|t| p.get_paper_method(t, &pm, metric).map_or("–".into(), |v| format!("(paper {})", fmt_value(metric, v)))).collect();
                if row.iter().any(|c| c != "–") {
                    let _ = writeln!(s, "| {pm} (paper only) | {} |", row.join(" | "));
                }
            }
        }
        let _ = writeln!(s);
    }
    let _ = writeln!(s, "## NFE and seconds per image\n");
    let _ = writeln!(s, "| method | {} |", v.tasks.join(" | "));
    let _ = writeln!(s, "|---|{}", "---|".repeat(v.tasks.len()));
    let first = &v.metrics[0];
    for m in &e.methods {
        let row: Vec<String> = v
            .tasks
            .iter()
            .map(|t| {
                let c = cell(cells, t, &m.label, first);
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
pub fn caption(v: &View<'_>) -> String {
    let e = v.exp;
    let g = &v.img.grid;
    let weights = match &g.checkpoint {
        Some(c) => format!("checkpoint `{c}`"),
        None => "UNTRAINED golden-fill weights (a plumbing check, not a benchmark)".into(),
    };
    // The methods on a prior of their own (a table's latent-diffusion rows).
    let others: String = (1..v.img.priors.len())
        .map(|p| {
            let spec = &v.img.priors[p];
            let labels = v.img.labels_on(p, &e.methods);
            let kind = if spec.config.is_latent() { " (latent diffusion: sampled on the autoencoder's latents, scored decoded)" } else { "" };
            let weights = spec.checkpoint.as_ref().map_or("untrained golden-fill weights".to_string(), |c| format!("checkpoint `{c}`"));
            format!("; {} on prior `{}`{kind} with {weights}", labels.join(", "), spec.model)
        })
        .collect();
    let noise = match g.noise {
        NoiseSpec::Poisson { rate, .. } => format!("Poisson noise, rate λ = {rate}"),
        NoiseSpec::Gaussian { sigma } => format!("Gaussian noise σ_y = {sigma} in [−1, 1] units"),
    };
    let runs = if g.runs.is_empty() {
        String::new()
    } else {
        format!(" Best of N runs per image and metric on {} (DAPS protocol).", g.runs.iter().map(|(t, n)| format!("{t}: {n}")).collect::<Vec<_>>().join(", "))
    };
    let paper = match &e.paper {
        Some(p) => format!(" Paper numbers in parentheses: {} table(s) {} on `{}`.", p.file.display(), p.tables.join(", "), p.dataset),
        None => String::new(),
    };
    // Methods run with a preset (their own or a task's) that assumes what the paper does not say,
    // with the keys the experiment sets on top of it.
    let assumed: String = e
        .methods
        .iter()
        .flat_map(|m| {
            let task_presets =
                m.per_task.iter().filter_map(|(t, table)| table.get("preset").and_then(|p| p.as_str()).map(|p| (p.to_string(), format!(" on {t}"))));
            std::iter::once((m.preset.clone(), String::new())).chain(task_presets).filter_map(move |(preset, on)| {
                let (s, p, what) = dipbench_samplers::ASSUMED_PRESETS.iter().find(|(s, p, _)| *s == m.sampler && *p == preset)?;
                let mut keys: Vec<String> = m.settings.iter().map(|(k, v)| format!("{k} = {v}")).collect();
                keys.sort();
                let set = if keys.is_empty() { String::new() } else { format!(" Set here: {}.", keys.join(", ")) };
                Some(format!(" {}{on} ({s}, preset `{p}`) assumes {what}.{set}", m.label))
            })
        })
        .collect();
    format!(
        "Protocol: {} images of {}×{} from `{}`; prior `{}` with {weights}{others}; {} operator definitions; {noise}; \
         metrics {} (skimage conventions on 8-bit images for psnr/ssim, piq on [0, 1] for the -piq variants); seed {}, random streams v{}.{runs}{paper}{assumed}",
        g.images,
        g.side,
        g.side,
        g.dataset,
        g.model,
        g.variant.name().to_uppercase(),
        v.metrics.join(", "),
        e.header.seed,
        dipbench_operators::noise::NOISE_VERSION
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
pub fn latex(v: &View<'_>, cells: &[Cell]) -> String {
    let e = v.exp;
    let mut s = String::new();
    for metric in v.metrics.iter().chain(&v.set_metrics) {
        let arrow = if higher_is_better(metric) { "$\\uparrow$" } else { "$\\downarrow$" };
        let _ = writeln!(s, "\\begin{{table}}[t]\n\\centering\n\\small");
        let _ = writeln!(s, "\\caption{{{} -- {} {arrow}. {}}}", latex_escape(&e.header.name), latex_escape(metric), latex_escape(&caption(v)));
        let _ = writeln!(s, "\\begin{{tabular}}{{l{}}}\n\\hline", "c".repeat(v.tasks.len()));
        let head: Vec<String> = v.tasks.iter().map(|t| latex_escape(t)).collect();
        let _ = writeln!(s, "Method & {} \\\\\n\\hline", head.join(" & "));
        for (label, ranked) in ranked_rows(v, cells, metric) {
            let row: Vec<String> = ranked
                .into_iter()
                .map(|(c, rank)| {
                    if c.status != "ok" {
                        return "--".into();
                    }
                    let v = fmt_value(metric, c.mean);
                    let v = match rank {
                        Some(0) => format!("\\textbf{{{v}}}"),
                        Some(1) => format!("\\underline{{{v}}}"),
                        _ => v,
                    };
                    if c.paper.is_finite() { format!("{v} ({})", fmt_value(metric, c.paper)) } else { v }
                })
                .collect();
            let _ = writeln!(s, "{} & {} \\\\", latex_escape(label), row.join(" & "));
        }
        let _ = writeln!(s, "\\hline\n\\end{{tabular}}\n\\end{{table}}\n");
    }
    s
}

/// The set metrics (FID, KID) of every (task, method) that ran, between
/// `images/<task>/<method>/` and `images/gt/` (written by the run), on the CPU backend, over the
/// images of this experiment's rows only (a folder may hold more, from a larger grid). Each
/// Inception network is loaded once and the ground truth's features computed once.
fn set_metric_cells(v: &View<'_>, cells: &[Cell], out: &Path, images: &std::collections::BTreeSet<&str>, paper: Option<&PaperNumbers>) -> Result<Vec<Cell>> {
    use crate::scoring::{cached_features, load_inception};
    let read_folder = |dir: &Path| -> Result<Vec<crate::scoring::Image01>> {
        let all = crate::scoring::read_folder(dir)?;
        Ok(all.into_iter().filter(|i| images.contains(Path::new(&i.name).file_stem().and_then(|s| s.to_str()).unwrap_or_default())).collect())
    };
    let mut extra = vec![];
    let first = &v.metrics[0];
    let device = Default::default();
    for &m in &v.img.grid.set_metrics {
        let metric = m.name().to_string();
        let net = load_inception::<burn::backend::Flex>(m.inception_variant(), &device)?;
        let gt_dir = out.join("images").join("gt");
        // The ground truth is the dataset's images under the experiment's protocol: its features are
        // shared by every experiment on the same images.
        let g = &v.img.grid;
        let gt_label = format!("{}-{}", g.dataset, g.side);
        let gt = cached_features(&net, &gt_dir, &gt_label, &read_folder(&gt_dir)?, &device)?;
        for c in cells.iter().filter(|c| &c.metric == first) {
            let value = if c.status == "ok" {
                let dir = out.join("images").join(&c.task).join(crate::experiment::slug(&c.method));
                let ours = cached_features(&net, &dir, "reconstructions", &read_folder(&dir)?, &device)
                    .with_context(|| format!("{metric} of {} on {}", c.method, c.task))?;
                m.from_features(&ours, &gt)
            } else {
                f64::NAN
            };
            let paper = paper.and_then(|p| p.get(&c.task, &c.method, &metric)).unwrap_or(f64::NAN);
            extra.push(Cell { metric: metric.clone(), mean: value, std: f64::NAN, paper, ..c.clone() });
        }
    }
    Ok(extra)
}

/// Writes `rows.csv` (one row per image and metric), `table.csv`, `table.md` and `table.tex`
/// into `out`; returns the Markdown.
pub fn write_all(exp: &Experiment, img: &ImageExperiment, rows: &[ImageRow], out: &Path) -> Result<String> {
    let v = View::new(exp, img);
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
    let paper = PaperNumbers::load(exp)?;
    let mut cells = aggregate(&v, rows, paper.as_ref())?;
    let images: std::collections::BTreeSet<&str> = rows.iter().map(|r| r.image.as_str()).collect();
    cells.extend(set_metric_cells(&v, &cells, out, &images, paper.as_ref())?);
    let mut w = csv::Writer::from_path(out.join("table.csv")).context("cannot write table.csv")?;
    for c in &cells {
        w.serialize(c)?;
    }
    w.flush()?;
    let md = markdown(&v, &cells, paper.as_ref());
    std::fs::write(out.join("table.md"), &md).context("cannot write table.md")?;
    std::fs::write(out.join("table.tex"), latex(&v, &cells)).context("cannot write table.tex")?;
    Ok(md)
}
