//! `dipbench grid EXPERIMENT`: for each task, one PNG of the first images, readable without the
//! table beside it: a header naming the columns (GT, the measurement y, each method), the
//! image name at the left of each row, each reconstruction's PSNR under it, and cells that cannot
//! run (the method does not support the task) or have not run yet marked as such.
//!
//! Text is drawn with the 8×8 bitmap font of the `font8x8` crate (Latin and Greek, so `ΠGDM`
//! reads right), doubled where it fits: no system font is needed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use font8x8::UnicodeFonts;
use image::{Rgb, RgbImage, imageops};

use crate::benchmarks::image::{ImageBenchmark, ImageRow, load_images};
use crate::experiment::slug;
use crate::experiment::{Experiment, ImageExperiment, Kind};

fn to_rgb(chw: &[f32], side: usize) -> RgbImage {
    let n = side * side;
    RgbImage::from_fn(side as u32, side as u32, |x, y| {
        let px = |c: usize| (((chw[c * n + y as usize * side + x as usize] + 1.0) / 2.0).clamp(0.0, 1.0) * 255.0).round() as u8;
        Rgb([px(0), px(1), px(2)])
    })
}

/// Pixels per font pixel for text that fits; longer text is drawn at 1.
const SCALE: u32 = 2;
/// Height of one line of text, with its margin.
const LINE: u32 = 8 * SCALE + 6;

fn glyph(c: char) -> [u8; 8] {
    font8x8::BASIC_FONTS
        .get(c)
        .or_else(|| font8x8::GREEK_FONTS.get(c))
        .or_else(|| font8x8::LATIN_FONTS.get(c))
        .or_else(|| font8x8::BASIC_FONTS.get('?'))
        .unwrap_or([0; 8])
}

/// Draws `text` with its top-left corner at (x, y), each font pixel `scale`² pixels.
pub fn draw_text_scaled(canvas: &mut RgbImage, x: u32, y: u32, text: &str, scale: u32, colour: Rgb<u8>) {
    let cell = 8 * scale;
    for (i, c) in text.chars().enumerate() {
        for (row, bits) in glyph(c).iter().enumerate() {
            for col in 0..8u32 {
                if bits >> col & 1 == 1 {
                    for dy in 0..scale {
                        for dx in 0..scale {
                            let (px, py) = (x + i as u32 * cell + col * scale + dx, y + row as u32 * scale + dy);
                            if px < canvas.width() && py < canvas.height() {
                                canvas.put_pixel(px, py, colour);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Draws `text` within `max_width` pixels: doubled when it fits, else at the font's own size,
/// else cut (ending in `~`).
pub fn draw_text(canvas: &mut RgbImage, x: u32, y: u32, text: &str, max_width: u32, colour: Rgb<u8>) {
    if fitted_scale(text, max_width) == SCALE {
        return draw_text_scaled(canvas, x, y, text, SCALE, colour);
    }
    let fits = (max_width / 8) as usize;
    let chars: Vec<char> = text.chars().collect();
    let shown: String = if chars.len() > fits && fits > 0 { chars[..fits - 1].iter().copied().chain(['~']).collect() } else { text.to_string() };
    draw_text_scaled(canvas, x, y, &shown, 1, colour);
}

/// The scale [`draw_text`] uses for `text` within `max_width`: doubled when it fits, else 1.
fn fitted_scale(text: &str, max_width: u32) -> u32 {
    if text_width(text, SCALE) <= max_width { SCALE } else { 1 }
}

/// Text width in pixels at `scale`.
pub fn text_width(text: &str, scale: u32) -> u32 {
    text.chars().count() as u32 * 8 * scale
}

/// What a method's cell shows.
enum Cell {
    /// The reconstruction, with its caption.
    Image(RgbImage, String),
    /// The method does not run on this task.
    CannotRun,
    /// No result yet.
    NotRun,
    /// The experiment leaves this task out for the method (its key `tasks`).
    LeftOut,
}

const BACKGROUND: Rgb<u8> = Rgb([255, 255, 255]);
const INK: Rgb<u8> = Rgb([0, 0, 0]);
const MUTED: Rgb<u8> = Rgb([90, 90, 90]);

/// The caption of a row: its PSNR (the first PSNR metric of the row), `diverged` for NaN.
fn caption(row: &ImageRow) -> String {
    match row.metrics.iter().find(|(k, _)| k.starts_with("psnr")) {
        Some((_, v)) if v.is_finite() => format!("PSNR {v:.2}"),
        Some(_) => "diverged".into(),
        None => String::new(),
    }
}

/// Writes `grid-<task>.png` per task into `out/grids/`; returns the files. `images` rows;
/// `dataset` overrides the experiment's dataset folder (for the ground truth).
pub fn grids(exp: &Experiment, out: &Path, images: usize, dataset: Option<&Path>) -> Result<Vec<PathBuf>> {
    let Kind::Image(img) = &exp.kind else { anyhow::bail!("`dipbench grid` is for image experiments; {} is a GMM experiment", exp.path.display()) };
    crate::pipeline::runner::check_folder_configuration(exp, out)?;
    let grid = &img.grid;
    let gt = load_images(img, dataset)?;
    let bench = ImageBenchmark::for_results(exp, img, out, dataset)?;
    // A sweep still running (or one shard of it) is drawn with "not run yet" cells.
    let (rows, _missing) = crate::pipeline::runner::collect_available(&bench, out)?;
    let by_cell: BTreeMap<(&str, &str, &str), &ImageRow> = rows.iter().map(|r| ((r.task.as_str(), r.method.as_str(), r.image.as_str()), r)).collect();
    let side = grid.side;
    let panel = side.max(128) as u32;
    let labels = exp.labels();
    let n_rows = images.min(gt.len()).max(1);
    let name_width = gt.iter().take(n_rows).map(|(n, _)| text_width(n, SCALE)).max().unwrap_or(0).clamp(8 * SCALE * 4, 8 * SCALE * 16) + 8;
    let gap = 4u32;
    let cell_h = panel + LINE;
    let header = LINE + 4;
    std::fs::create_dir_all(out.join("grids"))?;
    let mut written = vec![];
    for task in &grid.tasks {
        let cols = 2 + labels.len() as u32;
        let width = name_width + cols * (panel + gap);
        let height = header + n_rows as u32 * (cell_h + gap);
        let mut canvas = RgbImage::from_pixel(width, height, BACKGROUND);
        let col_x = |c: u32| name_width + c * (panel + gap);
        let headings: Vec<String> = ["GT".to_string(), "y".to_string()].into_iter().chain(labels.iter().cloned()).collect();
        draw_text(&mut canvas, 4, 4, task.name(), name_width - 8, INK);
        for (c, h) in headings.iter().enumerate() {
            draw_text(&mut canvas, col_x(c as u32) + 2, 4, h, panel - 4, INK);
        }
        let dir = out.join("images").join(task.name());
        for (r, (name, x)) in gt.iter().take(n_rows).enumerate() {
            let y0 = header + r as u32 * (cell_h + gap);
            draw_text(&mut canvas, 4, y0 + panel / 2 - 4 * SCALE, name, name_width - 8, INK);
            let mut put = |c: u32, cell: Cell| {
                let (x0, y0) = (col_x(c), y0);
                match cell {
                    Cell::Image(img, cap) => {
                        let scaled = imageops::resize(&img, panel, panel, imageops::FilterType::Nearest);
                        imageops::replace(&mut canvas, &scaled, i64::from(x0), i64::from(y0));
                        draw_text(&mut canvas, x0 + 2, y0 + panel + 3, &cap, panel - 4, MUTED);
                    }
                    Cell::CannotRun | Cell::NotRun | Cell::LeftOut => {
                        let (fill, text) = match cell {
                            Cell::CannotRun => (Rgb([215, 215, 215]), "cannot run"),
                            Cell::LeftOut => (Rgb([215, 215, 215]), "not in experiment"),
                            _ => (Rgb([240, 240, 240]), "not run yet"),
                        };
                        for yy in y0..y0 + panel {
                            for xx in x0..x0 + panel {
                                // Diagonal hatching marks the cell as empty on purpose.
                                let hatch = (xx + yy) % 16 < 2 && !matches!(cell, Cell::NotRun);
                                canvas.put_pixel(xx, yy, if hatch { Rgb([170, 170, 170]) } else { fill });
                            }
                        }
                        let w = text_width(text, fitted_scale(text, panel - 4)).min(panel - 4);
                        draw_text(&mut canvas, x0 + (panel - w) / 2, y0 + panel / 2 - 4 * SCALE, text, panel - 4, INK);
                    }
                }
            };
            put(0, Cell::Image(to_rgb(x, side), String::new()));
            match image::open(dir.join("y").join(format!("{name}.png"))) {
                Ok(y) => put(1, Cell::Image(y.to_rgb8(), String::new())),
                Err(_) => put(1, Cell::NotRun),
            }
            for (c, label) in labels.iter().enumerate() {
                let row = by_cell.get(&(task.name(), label.as_str(), name.as_str()));
                let cell = match row {
                    Some(r) if r.status.starts_with("unsupported") => Cell::CannotRun,
                    Some(r) => match image::open(dir.join(slug(label)).join(format!("{name}.png"))) {
                        Ok(i) => Cell::Image(i.to_rgb8(), caption(r)),
                        Err(_) => Cell::NotRun,
                    },
                    None if !ImageExperiment::method_runs(&exp.methods[c], *task) => Cell::LeftOut,
                    None => Cell::NotRun,
                };
                put(2 + c as u32, cell);
            }
        }
        let file = out.join("grids").join(format!("grid-{task}.png"));
        canvas.save(&file).with_context(|| format!("cannot write {}", file.display()))?;
        written.push(file);
    }
    Ok(written)
}
