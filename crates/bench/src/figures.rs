//! `dipbench figures EXPERIMENT`: for a GMM experiment, one PNG per (d, d_y, budget) and chosen
//! replicate showing where each method's samples fall against the exact posterior's, so mode
//! coverage reads at a glance:
//! - top panel: the samples on the first two coordinates (x₁, x₂), the exact posterior's in grey
//!   behind each method's, the prior's 25 component means as small crosses;
//! - bottom panel: histograms of v₁ᵀx, v₁ the leading right-singular vector of A (the direction
//!   the measurement informs most): exact posterior in grey, the method's as a line.
//!
//! The samples are recomputed on the CPU from the job's seeds, so they are the very samples the
//! table scored when the table ran on the CPU (`benchmarks::gmm::method_samples`; tested), and
//! equal to float rounding after a GPU run; each panel's title gives its sliced W1. The results folder's `table.md` links the figures (rewritten here and by `table`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use dipbench_metrics::sliced_w1;
use dipbench_nn::NnAutodiffBackend;
use image::{Rgb, RgbImage};

use crate::benchmarks::gmm::{figure_path, job_problem, jobs, method_samples};
use crate::experiment::{Experiment, Kind};
use crate::grids::{draw_text, draw_text_scaled};

const PANEL: u32 = 180;
const HIST_H: u32 = 90;
const GAP: u32 = 10;
const TITLE: u32 = 22;
const POINTS: usize = 1000;
const BINS: usize = 45;
const WHITE: Rgb<u8> = Rgb([255, 255, 255]);
const INK: Rgb<u8> = Rgb([0, 0, 0]);
const GREY: Rgb<u8> = Rgb([190, 190, 190]);
const METHOD: Rgb<u8> = Rgb([31, 90, 200]);
const MEANS: Rgb<u8> = Rgb([200, 60, 30]);

/// A linear map of [lo, hi] onto [0, len).
#[derive(Debug, Clone, Copy)]
struct Axis {
    lo: f64,
    hi: f64,
}

impl Axis {
    /// The range of the 0.5 %–99.5 % quantiles of `v` and of every value of `frame`, widened by
    /// 15 % (so the plot is not set by one far sample), never empty.
    fn of(v: &[f64], frame: &[f64]) -> Self {
        let base = Self::quantiles(v);
        let lo = frame.iter().copied().fold(base.lo, f64::min);
        let hi = frame.iter().copied().fold(base.hi, f64::max);
        let pad = ((hi - lo) * 0.15).max(1e-6);
        Self { lo: lo - pad, hi: hi + pad }
    }

    /// The 0.5 %–99.5 % quantile range of `v` widened by `factor` times its width on each side.
    fn around(v: &[f64], factor: f64) -> Self {
        let q = Self::quantiles(v);
        let pad = ((q.hi - q.lo) * factor).max(1e-6);
        Self { lo: q.lo - pad, hi: q.hi + pad }
    }

    fn quantiles(v: &[f64]) -> Self {
        let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
        if s.is_empty() {
            return Self { lo: -1.0, hi: 1.0 };
        }
        s.sort_by(f64::total_cmp);
        let q = |p: f64| s[((s.len() - 1) as f64 * p).round() as usize];
        Self { lo: q(0.005), hi: q(0.995) }
    }

    fn pixel(&self, v: f64, len: u32) -> Option<u32> {
        let t = (v - self.lo) / (self.hi - self.lo);
        (t.is_finite() && (0.0..1.0).contains(&t)).then(|| (t * f64::from(len)) as u32)
    }
}

/// Column `j` of row-major `[n, d]` samples, at most `limit` of them.
fn column(x: &[f64], d: usize, j: usize, limit: usize) -> Vec<f64> {
    x.chunks(d).take(limit).map(|r| r[j]).collect()
}

/// vᵀx for each row.
fn project(x: &[f64], d: usize, v: &[f64]) -> Vec<f64> {
    x.chunks(d).map(|r| r.iter().zip(v).map(|(a, b)| a * b).sum()).collect()
}

fn histogram(v: &[f64], axis: Axis) -> Vec<f64> {
    let mut h = vec![0.0; BINS];
    for x in v {
        if let Some(b) = axis.pixel(*x, BINS as u32) {
            h[b as usize] += 1.0;
        }
    }
    let total = v.len().max(1) as f64;
    h.iter().map(|c| c / total).collect()
}

fn frame(canvas: &mut RgbImage, x0: u32, y0: u32, w: u32, h: u32) {
    for x in x0..x0 + w {
        canvas.put_pixel(x, y0, INK);
        canvas.put_pixel(x, y0 + h - 1, INK);
    }
    for y in y0..y0 + h {
        canvas.put_pixel(x0, y, INK);
        canvas.put_pixel(x0 + w - 1, y, INK);
    }
}

fn dot(canvas: &mut RgbImage, x: u32, y: u32, colour: Rgb<u8>) {
    for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
        if x + dx < canvas.width() && y + dy < canvas.height() {
            canvas.put_pixel(x + dx, y + dy, colour);
        }
    }
}

/// Writes the figures of `replicates` of every (d, d_y, budget) of a GMM experiment into
/// `<out>/figures/`, recomputing the samples on `device`; returns each file and whether it was
/// drawn now (`false`: kept).
/// A figure already in the folder is kept unless `redraw` (the folder holds one experiment's
/// configuration, checked first, so an existing figure shows the same samples).
pub fn figures<B: NnAutodiffBackend>(exp: &Experiment, out: &Path, replicates: &[usize], redraw: bool, device: &B::Device) -> Result<Vec<(PathBuf, bool)>> {
    let Kind::Gmm(gmm) = &exp.kind else {
        bail!("`dipbench figures` is for GMM experiments; {} is an image experiment (see `dipbench grid`)", exp.path.display())
    };
    crate::pipeline::runner::check_folder_configuration(exp, out)?;
    if let Some(r) = replicates.iter().find(|r| **r >= gmm.grid.replicates) {
        bail!("--replicates {r}: the experiment has replicates 0 to {}", gmm.grid.replicates - 1);
    }
    std::fs::create_dir_all(out.join("figures")).with_context(|| format!("cannot create {}", out.join("figures").display()))?;
    let mut written = vec![];
    for job in jobs(&gmm.grid).into_iter().filter(|j| replicates.contains(&j.replicate)) {
        let file = out.join(figure_path(&job));
        if file.is_file() && !redraw {
            written.push((file, false));
            continue;
        }
        let problem = job_problem(exp, gmm, &job)?;
        let d = job.d;
        // v₁: the leading right-singular vector of A.
        let svd = problem.instance.a.clone().svd(false, true);
        let lead = svd.singular_values.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i);
        let v1: Vec<f64> = svd.v_t.as_ref().expect("asked for Vᵀ").row(lead).iter().copied().collect();
        let reference = &problem.reference;
        // The frame: the exact posterior's bulk and every prior mode, so a method stuck on another
        // mode still shows.
        let means = problem.instance.mixture.means();
        let mean_col = |j: usize| -> Vec<f64> { (0..means.nrows()).map(|k| means[(k, j)]).collect() };
        let y_col = 1.min(d - 1);
        let (ax, ay) = (Axis::of(&column(reference, d, 0, usize::MAX), &mean_col(0)), Axis::of(&column(reference, d, y_col, usize::MAX), &mean_col(y_col)));
        // Along v₁ the posterior is narrow (the measurement informs it): three times its width.
        let ref_proj = project(reference, d, &v1);
        let ap = Axis::around(&ref_proj, 1.0);
        let ref_hist = histogram(&ref_proj, ap);

        let n_methods = exp.methods.len() as u32;
        let width = GAP + n_methods * (PANEL + GAP);
        let header = 2 * TITLE;
        let height = header + 2 * TITLE + PANEL + GAP + HIST_H + GAP;
        let mut canvas = RgbImage::from_pixel(width, height, WHITE);
        let title = format!(
            "d = {}, d_y = {}, {} steps (eta {}), replicate {}: top (x1, x2), bottom v1'x",
            d, job.d_y, job.budget.steps, job.budget.eta, job.replicate
        );
        draw_text(&mut canvas, GAP, 4, &title, width - 2 * GAP, INK);
        draw_text(
            &mut canvas,
            GAP,
            4 + TITLE,
            "grey: exact posterior; blue: the method; red +: prior means; v1: A's leading right-singular vector",
            width - 2 * GAP,
            INK,
        );
        for (i, method) in exp.methods.iter().enumerate() {
            let m = method_samples::<B>(exp, gmm, &job, &problem, i, device)?;
            let x0 = GAP + i as u32 * (PANEL + GAP);
            let finite = m.x.iter().all(|v| v.is_finite());
            let score =
                if finite { format!("SW1 {:.2}", sliced_w1(&m.x, reference, d, exp.metric.projections, problem.metric_seed)) } else { "diverged".into() };
            // Samples outside the frame, said rather than hidden.
            let outside = m.x.chunks(d).filter(|r| ax.pixel(r[0], PANEL).is_none() || ay.pixel(r[y_col], PANEL).is_none()).count();
            let score = if outside * 100 >= m.x.len() / d { format!("{score}, {}% off plot", outside * 100 / (m.x.len() / d).max(1)) } else { score };
            draw_text(&mut canvas, x0, header, &method.label, PANEL, INK);
            draw_text_scaled(&mut canvas, x0, header + TITLE, &score, 1, INK);
            let top = header + 2 * TITLE;
            frame(&mut canvas, x0, top, PANEL, PANEL);
            let inner = PANEL - 2;
            let plot = |x: &[f64], colour: Rgb<u8>, canvas: &mut RgbImage| {
                for r in x.chunks(d).take(POINTS) {
                    if let (Some(px), Some(py)) = (ax.pixel(r[0], inner - 1), ay.pixel(r[y_col], inner - 1)) {
                        dot(canvas, x0 + 1 + px, top + PANEL - 2 - py, colour);
                    }
                }
            };
            plot(reference, GREY, &mut canvas);
            plot(&m.x, METHOD, &mut canvas);
            for k in 0..means.nrows() {
                if let (Some(px), Some(py)) = (ax.pixel(means[(k, 0)], inner), ay.pixel(means[(k, y_col)], inner)) {
                    let (cx, cy) = (x0 + 1 + px, top + PANEL - 2 - py);
                    for t in 0..5u32 {
                        let (hx, vy) = ((cx + t).saturating_sub(2), (cy + t).saturating_sub(2));
                        if hx < canvas.width() && cy < canvas.height() {
                            canvas.put_pixel(hx, cy, MEANS);
                        }
                        if cx < canvas.width() && vy < canvas.height() {
                            canvas.put_pixel(cx, vy, MEANS);
                        }
                    }
                }
            }
            // The histograms of v₁ᵀx on one scale.
            let hist_top = top + PANEL + GAP;
            frame(&mut canvas, x0, hist_top, PANEL, HIST_H);
            let hist = histogram(&project(&m.x, d, &v1), ap);
            let peak = ref_hist.iter().chain(&hist).copied().fold(1e-12, f64::max);
            let bar_h = |v: f64| ((v / peak) * f64::from(HIST_H - 4)) as u32;
            for b in 0..BINS {
                // Bin b spans [b, b + 1)·(PANEL − 2)/BINS pixels, so the bars fill the panel.
                let (bx, bx_end) = (x0 + 1 + b as u32 * (PANEL - 2) / BINS as u32, x0 + 1 + (b as u32 + 1) * (PANEL - 2) / BINS as u32);
                for y in 0..bar_h(ref_hist[b]) {
                    for x in bx..bx_end {
                        canvas.put_pixel(x, hist_top + HIST_H - 2 - y, GREY);
                    }
                }
                let level = hist_top + HIST_H - 2 - bar_h(hist[b]).min(HIST_H - 3);
                for x in bx..bx_end {
                    canvas.put_pixel(x, level, METHOD);
                    canvas.put_pixel(x, level.saturating_sub(1).max(hist_top + 1), METHOD);
                }
            }
        }
        canvas.save(&file).with_context(|| format!("cannot write {}", file.display()))?;
        written.push((file, true));
    }
    crate::benchmarks::gmm::table::relink_figures(gmm, out)?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_ignore_far_samples_and_histograms_sum_to_one() {
        let mut v: Vec<f64> = (0..1000).map(|i| f64::from(i) / 1000.0).collect();
        v.push(1e9);
        let a = Axis::of(&v, &[]);
        assert!(a.lo < 0.0 && a.hi > 1.0 && a.hi < 2.0, "{a:?}");
        assert_eq!(a.pixel(1e9, 100), None);
        assert_eq!(a.pixel(a.lo, 100), Some(0));
        let h = histogram(&v[..1000], a);
        assert!((h.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert_eq!(project(&[1.0, 2.0, 3.0, 4.0], 2, &[0.5, 0.5]), vec![1.5, 3.5]);
        // The frame widens the range to every value it holds.
        let b = Axis::of(&v[..1000], &[-10.0, 5.0]);
        assert!(b.lo < -10.0 && b.hi > 5.0, "{b:?}");
        let c = Axis::around(&v[..1000], 1.0);
        assert!((c.lo + 1.0).abs() < 0.02 && (c.hi - 2.0).abs() < 0.02, "{c:?}");
    }
}
