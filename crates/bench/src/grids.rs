//! `dipbench grid EXPERIMENT`: for each task, one PNG of the first images, a row per image:
//! ground truth | measurement y | each method's reconstruction (grey where a method does not
//! run on the task), from the results folder's saved images.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use image::{Rgb, RgbImage, imageops};

use crate::benchmarks::image::load_images;
use crate::experiment::slug;
use crate::experiment::{Experiment, Kind};

fn to_rgb(chw: &[f32], side: usize) -> RgbImage {
    let n = side * side;
    RgbImage::from_fn(side as u32, side as u32, |x, y| {
        let px = |c: usize| (((chw[c * n + y as usize * side + x as usize] + 1.0) / 2.0).clamp(0.0, 1.0) * 255.0).round() as u8;
        Rgb([px(0), px(1), px(2)])
    })
}

/// Writes `grid-<task>.png` per task into `out/grids/`; returns the files. `images` rows;
/// `dataset` overrides the experiment's dataset folder (for the ground truth).
pub fn grids(exp: &Experiment, out: &Path, images: usize, dataset: Option<&Path>) -> Result<Vec<PathBuf>> {
    let Kind::Image(img) = &exp.kind else { anyhow::bail!("`dipbench grid` is for image experiments; {} is a GMM experiment", exp.path.display()) };
    crate::pipeline::runner::check_folder_configuration(exp, out)?;
    let grid = &img.grid;
    let gt = load_images(img, dataset)?;
    let side = grid.side;
    let panel = side.max(128) as u32;
    let labels = exp.labels();
    let rows = images.min(gt.len()).max(1);
    std::fs::create_dir_all(out.join("grids"))?;
    let mut written = vec![];
    for task in &grid.tasks {
        let cols = 2 + labels.len();
        let mut canvas = RgbImage::from_pixel(panel * cols as u32, panel * rows as u32, Rgb([128, 128, 128]));
        for (r, (name, x)) in gt.iter().take(rows).enumerate() {
            let mut put = |col: usize, img: &RgbImage| {
                let scaled = imageops::resize(img, panel, panel, imageops::FilterType::Nearest);
                imageops::replace(&mut canvas, &scaled, (col as u32 * panel) as i64, (r as u32 * panel) as i64);
            };
            put(0, &to_rgb(x, side));
            let dir = out.join("images").join(task.name());
            let y = dir.join("y").join(format!("{name}.png"));
            if let Ok(img) = image::open(&y) {
                put(1, &img.to_rgb8());
            }
            for (c, label) in labels.iter().enumerate() {
                let p = dir.join(slug(label)).join(format!("{name}.png"));
                if let Ok(img) = image::open(&p) {
                    put(2 + c, &img.to_rgb8());
                }
            }
        }
        let file = out.join("grids").join(format!("grid-{task}.png"));
        canvas.save(&file).with_context(|| format!("cannot write {}", file.display()))?;
        written.push(file);
    }
    Ok(written)
}
