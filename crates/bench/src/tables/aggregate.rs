//! Group-by statistics of result rows, with polars: the one place where per-replicate and
//! per-image rows become the mean ± std of the tables.
//!
//! The rules (the papers' protocols):
//! - a value that is not finite (a sampler that diverged) is counted as *failed* and left out of
//!   the mean and the standard deviation;
//! - the standard deviation is the sample one (divisor n − 1); with fewer than two finite values
//!   there is none (NaN), and the tables print no interval but the count;
//! - best-of-N (DAPS §5, phase retrieval: "the best of four independent runs"): per image and
//!   metric the best run counts — the largest PSNR/SSIM, the smallest LPIPS — before the mean over
//!   images. NaN runs are skipped unless every run is NaN.
//!
//! Groups come out in the order of their first row (`group_by_stable`), so a table is a
//! deterministic function of its rows. [`Stat::of`] is the same statistics written out by hand;
//! the tests check one against the other.

use anyhow::Result;
use polars::prelude::*;

/// Mean, sample standard deviation and the 95 % half-width 1.96·std/√n of the finite values
/// among n; non-finite values are counted, not averaged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stat {
    /// Number of finite values.
    pub n: usize,
    /// Number of non-finite values left out.
    pub failed: usize,
    /// Mean (NaN when no value is finite).
    pub mean: f64,
    /// Standard deviation with n − 1 (NaN for n ≤ 1: one value says nothing about the spread).
    pub std: f64,
    /// 1.96·std/√n.
    pub ci95: f64,
}

impl Stat {
    /// From the finite count, the group size, the mean and the std (`None` where polars gives
    /// null: an empty group's mean, a single value's std).
    fn new(n: usize, rows: usize, mean: Option<f64>, std: Option<f64>) -> Self {
        let std = if n > 1 { std.unwrap_or(f64::NAN) } else { f64::NAN };
        Self { n, failed: rows - n, mean: mean.unwrap_or(f64::NAN), std, ci95: 1.96 * std / (n as f64).sqrt() }
    }

    /// The statistics of `values` computed directly (summed in order): the reference the polars
    /// path is tested against, and the rule for a single list of values.
    pub fn of(values: &[f64]) -> Self {
        let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        let n = finite.len();
        let mean = (n > 0).then(|| finite.iter().sum::<f64>() / n as f64);
        let std = mean.filter(|_| n > 1).map(|m| (finite.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt());
        Self::new(n, values.len(), mean, std)
    }
}

/// Column names of the statistics of `value` in a [`finite_stats`] frame.
fn names(value: &str) -> [String; 3] {
    [format!("{value}_mean"), format!("{value}_std"), format!("{value}_n")]
}

/// Per group of `keys`: `rows` (the group size), the `extra` aggregations and, for each column
/// of `values`, the mean, sample std (ddof 1) and count of its finite entries (`<v>_mean`,
/// `<v>_std`, `<v>_n`).
pub fn finite_stats(lf: LazyFrame, keys: &[&str], values: &[&str], extra: Vec<Expr>) -> LazyFrame {
    let mut aggs = vec![len().alias("rows")];
    aggs.extend(extra);
    for v in values {
        let finite = col(*v).filter(col(*v).is_finite());
        let [mean, std, n] = names(v);
        aggs.push(finite.clone().mean().alias(mean));
        aggs.push(finite.clone().std(1).alias(std));
        aggs.push(finite.count().alias(n));
    }
    lf.group_by_stable(keys.iter().map(|k| col(*k)).collect::<Vec<_>>()).agg(aggs)
}

/// The column `name` of an aggregated frame.
fn column<'a>(df: &'a DataFrame, name: &str) -> Result<&'a Column> {
    anyhow::Context::with_context(df.column(name), || format!("aggregate: no column `{name}`"))
}

/// An integer column as usize (counts come out as polars' index type; nulls as 0).
pub fn integers(df: &DataFrame, name: &str) -> Result<Vec<usize>> {
    let c = column(df, name)?.cast(&DataType::UInt64)?;
    Ok(c.u64()?.iter().map(|v| v.unwrap_or(0) as usize).collect())
}

/// A float column (nulls as `None`).
pub fn floats(df: &DataFrame, name: &str) -> Result<Vec<Option<f64>>> {
    let c = column(df, name)?.cast(&DataType::Float64)?;
    Ok(c.f64()?.iter().collect())
}

/// A string column.
pub fn strings(df: &DataFrame, name: &str) -> Result<Vec<String>> {
    let c = column(df, name)?;
    Ok(c.str()?.iter().map(|v| v.unwrap_or_default().to_string()).collect())
}

/// The [`Stat`] of `value` in each row of a collected [`finite_stats`] frame.
pub fn read_stats(df: &DataFrame, value: &str) -> Result<Vec<Stat>> {
    let [mean, std, n] = names(value);
    let (rows, n, mean, std) = (integers(df, "rows")?, integers(df, &n)?, floats(df, &mean)?, floats(df, &std)?);
    Ok((0..df.height()).map(|i| Stat::new(n[i], rows[i], mean[i], std[i])).collect())
}

/// Best-of-N: collapses the runs of each group of `keys` to their best `value`, the largest
/// where the row's `higher` is true and the smallest otherwise (NaN runs skipped unless all are
/// NaN). Done as max(s·v)·s with s = ±1, so both directions are one aggregation.
pub fn best_run(lf: LazyFrame, keys: &[&str], value: &str, higher: &str) -> LazyFrame {
    let sign = when(col(higher)).then(lit(1.0)).otherwise(lit(-1.0));
    let signed = (col(value) * sign.clone()).alias(value);
    lf.with_column(sign.alias("_sign"))
        .with_column(signed)
        .group_by_stable(keys.iter().map(|k| col(*k)).collect::<Vec<_>>())
        // max() ignores NaN unless the whole group is NaN; a group of NaNs stays NaN.
        .agg([(col(value).max() * col("_sign").first()).alias(value), col(value).is_nan().all(true).alias("_all_nan")])
        .with_column(when(col("_all_nan")).then(lit(f64::NAN)).otherwise(col(value)).alias(value))
        .select(keys.iter().map(|k| col(*k)).chain([col(value)]).collect::<Vec<_>>())
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
        assert!(Stat::of(&[7.0]).std.is_nan() && Stat::of(&[7.0]).ci95.is_nan(), "one value has no interval");
        let none = Stat::of(&[f64::NAN, f64::INFINITY]);
        assert_eq!((none.n, none.failed), (0, 2));
        assert!(none.mean.is_nan());
    }

    /// Groups with NaN/inf entries, a single value, only failures: polars' statistics agree with
    /// the hand-written ones to rounding (1e-12 relative: pairwise vs sequential summation).
    #[test]
    fn polars_stats_match_hand_written_stats() {
        let groups: Vec<(&str, Vec<f64>)> = vec![
            ("a", vec![1.0, 2.0, f64::NAN, 3.0, 4.0]),
            ("b", vec![7.25]),
            ("c", vec![f64::NAN, f64::INFINITY]),
            ("d", (0..37).map(|i| (i as f64 * 0.37).sin() * 10.0 + 3.0).collect()),
        ];
        let keys: Vec<&str> = groups.iter().flat_map(|(k, v)| std::iter::repeat_n(*k, v.len())).collect();
        let values: Vec<f64> = groups.iter().flat_map(|(_, v)| v.clone()).collect();
        let df = df!("g" => keys, "v" => values).unwrap();
        let out = finite_stats(df.lazy(), &["g"], &["v"], vec![]).collect().unwrap();
        assert_eq!(strings(&out, "g").unwrap(), ["a", "b", "c", "d"], "first-appearance order");
        for ((_, v), got) in groups.iter().zip(read_stats(&out, "v").unwrap()) {
            let want = Stat::of(v);
            assert_eq!((got.n, got.failed), (want.n, want.failed));
            let close = |a: f64, b: f64| (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-12 * b.abs().max(1.0);
            assert!(close(got.mean, want.mean) && close(got.std, want.std) && close(got.ci95, want.ci95), "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn best_run_takes_max_or_min_and_skips_nan() {
        let df = df!(
            "img" => ["a", "a", "a", "b", "b", "c", "c"],
            "v" => [1.0, f64::NAN, 3.0, 5.0, 2.0, f64::NAN, f64::NAN],
            "hi" => [true, true, true, false, false, true, true]
        )
        .unwrap();
        let out = best_run(df.lazy(), &["img"], "v", "hi").collect().unwrap();
        let v = floats(&out, "v").unwrap();
        assert_eq!(strings(&out, "img").unwrap(), ["a", "b", "c"]);
        assert_eq!(v[0], Some(3.0), "max for higher-is-better, NaN run skipped");
        assert_eq!(v[1], Some(2.0), "min for lower-is-better");
        assert!(v[2].unwrap().is_nan(), "all runs NaN stays NaN");
    }
}
