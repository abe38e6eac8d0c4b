//! `dipbench check RESULTS --against BASELINE`: a regression check of a produced `table.csv`
//! (GMM or image benchmark) against a baseline one, for CI. Rows are matched by their key
//! columns (benchmark coordinates: task, method, metric, d, d_y, steps, …); every other numeric
//! column except wall time is compared with |ours − baseline| ≤ abs + rel·|baseline| (NaN
//! matches NaN). Any value beyond tolerance, and any row present in only one file, is reported
//! in a readable diff and makes the command fail. A table holding the same key twice is refused:
//! which of the two rows would be compared is not defined.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Columns that identify a row rather than measure something.
const KEY_COLUMNS: &[&str] = &["steps", "eta", "d", "d_y", "task", "method", "sampler", "metric", "status"];
/// Columns never compared (measurements of the machine, not of the method).
const IGNORED_COLUMNS: &[&str] = &["seconds", "seconds_per_replicate"];

/// Tolerances of `dipbench check`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    /// Absolute part.
    pub abs: f64,
    /// Relative part (times |baseline|).
    pub rel: f64,
}

/// The outcome: the number of compared values and the differences found (empty = pass).
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    /// Values compared.
    pub compared: usize,
    /// One line per difference.
    pub differences: Vec<String>,
}

/// A results folder's `table.csv`, or the file itself.
fn table_of(path: &Path) -> PathBuf {
    if path.is_dir() { path.join("table.csv") } else { path.to_path_buf() }
}

type Table = (Vec<String>, Vec<Vec<String>>);

fn read_table(path: &Path) -> Result<Table> {
    let mut rdr = csv::Reader::from_path(path).with_context(|| format!("cannot read {}", path.display()))?;
    let header: Vec<String> = rdr.headers().with_context(|| format!("{}: no header", path.display()))?.iter().map(String::from).collect();
    let rows = rdr
        .records()
        .map(|r| r.map(|r| r.iter().map(String::from).collect()))
        .collect::<Result<Vec<Vec<String>>, _>>()
        .with_context(|| format!("malformed CSV {}", path.display()))?;
    Ok((header, rows))
}

/// Compares `results` (a results folder or a table CSV) with `baseline`.
pub fn check(results: &Path, baseline: &Path, tol: Tolerance) -> Result<CheckReport> {
    let (ours_path, base_path) = (table_of(results), table_of(baseline));
    let (header, ours) = read_table(&ours_path)?;
    let (base_header, base) = read_table(&base_path)?;
    if header != base_header {
        bail!("{} and {} have different columns:\n  {}\n  {}", ours_path.display(), base_path.display(), header.join(","), base_header.join(","));
    }
    let keys: Vec<usize> = (0..header.len()).filter(|&i| KEY_COLUMNS.contains(&header[i].as_str())).collect();
    let values: Vec<usize> = (0..header.len()).filter(|&i| !keys.contains(&i) && !IGNORED_COLUMNS.contains(&header[i].as_str())).collect();
    if keys.is_empty() {
        bail!("{}: no key columns (expected some of {})", base_path.display(), KEY_COLUMNS.join(", "));
    }
    let key_of = |row: &[String]| keys.iter().map(|&i| format!("{}={}", header[i], row[i])).collect::<Vec<_>>().join(" ");
    let index = |rows: &[Vec<String>], path: &Path| -> Result<BTreeMap<String, Vec<String>>> {
        let mut map = BTreeMap::new();
        for r in rows {
            if map.insert(key_of(r), r.clone()).is_some() {
                bail!("{}: the row {} appears twice; a table has one row per key", path.display(), key_of(r));
            }
        }
        Ok(map)
    };
    let (ours, base) = (index(&ours, &ours_path)?, index(&base, &base_path)?);
    let mut report = CheckReport::default();
    for (key, b) in &base {
        let Some(o) = ours.get(key) else {
            report.differences.push(format!("{key}: missing from {}", ours_path.display()));
            continue;
        };
        for &i in &values {
            report.compared += 1;
            let (ov, bv) = (&o[i], &b[i]);
            let same = match (ov.parse::<f64>(), bv.parse::<f64>()) {
                (Ok(x), Ok(y)) if x.is_nan() || y.is_nan() => x.is_nan() && y.is_nan(),
                (Ok(x), Ok(y)) if x.is_infinite() || y.is_infinite() => x == y,
                (Ok(x), Ok(y)) => (x - y).abs() <= tol.abs + tol.rel * y.abs(),
                _ => ov == bv,
            };
            if !same {
                let delta = match (ov.parse::<f64>(), bv.parse::<f64>()) {
                    (Ok(x), Ok(y)) => format!(" (Δ {:+.3e}, allowed {:.1e})", x - y, tol.abs + tol.rel * y.abs()),
                    _ => String::new(),
                };
                report.differences.push(format!("{key}: {} {bv} → {ov}{delta}", header[i]));
            }
        }
    }
    for key in ours.keys().filter(|k| !base.contains_key(*k)) {
        report.differences.push(format!("{key}: not in the baseline {}", base_path.display()));
    }
    Ok(report)
}

impl CheckReport {
    /// The human-readable verdict.
    pub fn render(&self, results: &Path, baseline: &Path) -> String {
        let mut s = String::new();
        if self.differences.is_empty() {
            let _ = write!(s, "{}: {} values match {} within tolerance", results.display(), self.compared, baseline.display());
        } else {
            let _ = writeln!(
                s,
                "{}: {} difference(s) against {} ({} values compared):",
                results.display(),
                self.differences.len(),
                baseline.display(),
                self.compared
            );
            for d in &self.differences {
                let _ = writeln!(s, "  {d}");
            }
        }
        s
    }
}
