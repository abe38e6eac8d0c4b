//! `dipbench measure` (apply a benchmark's operator and noise to a user's image) and
//! `dipbench operators grid` (PNG panels x | y | Aᵀy for looking at every operator).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use dipbench_nn::NnBackend;
use dipbench_operators::image::{ImageShape, Task, TaskName, Variant, build};
use dipbench_operators::{GaussianNoise, Operator, PoissonNoise, SampleRng, derive_seed};

/// The image size every benchmark operator is defined on.
pub const SIDE: usize = 256;

/// Reads an RGB PNG/JPEG (x = q/255·2 − 1) or a safetensors tensor `x` `[1, 3, H, W]` in
/// [−1, 1]; the result must be 3 × 256 × 256. Errors name the file, the shape and the range.
pub fn read_image(path: &Path) -> Result<Vec<f32>> {
    let is_tensor = path.extension().is_some_and(|e| e == "safetensors");
    let (shape, values): (Vec<usize>, Vec<f32>) = if is_tensor {
        let mut src = dipbench_nn::source::MemorySource::from_safetensors_floats(path)?;
        let manifest = src.manifest();
        let (key, shape) = manifest
            .iter()
            .find(|(k, _)| k == "x")
            .cloned()
            .with_context(|| format!("{}: no tensor named `x` (have {:?})", path.display(), manifest.iter().map(|(k, _)| k).collect::<Vec<_>>()))?;
        let v = dipbench_nn::source::ParamSource::take_values(&mut src, &key, &shape)?;
        (shape, v)
    } else {
        let img = image::open(path).with_context(|| format!("cannot read image {}", path.display()))?.to_rgb8();
        let (w, h) = img.dimensions();
        let mut v = vec![0f32; 3 * (w * h) as usize];
        for (x, y, p) in img.enumerate_pixels() {
            for c in 0..3 {
                v[c * (w * h) as usize + (y * w + x) as usize] = (f64::from(p[c]) / 255.0 * 2.0 - 1.0) as f32;
            }
        }
        (vec![1, 3, h as usize, w as usize], v)
    };
    let want = [1, 3, SIDE, SIDE];
    if shape != want && shape != want[1..] {
        bail!(
            "{}: image of shape {shape:?}; the benchmark operators take 3×{SIDE}×{SIDE} RGB images ([1, 3, {SIDE}, {SIDE}] tensors) — resize or crop it first",
            path.display()
        );
    }
    if let Some(bad) = values.iter().find(|v| !v.is_finite() || v.abs() > 1.0 + 1e-6) {
        bail!("{}: values must be finite and lie in [-1, 1] (images are mapped as q/255·2 − 1); found {bad}", path.display());
    }
    Ok(values)
}

/// The noise model of a measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Noise {
    /// y + σ_y·ε.
    Gaussian(f64),
    /// DPS's Poisson noise with rate λ.
    Poisson(f64),
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct MeasureRequest {
    /// Task.
    pub task: TaskName,
    /// Whose definition.
    pub variant: Variant,
    /// Seed of the job (masks and noise derive from it).
    pub seed: u64,
    /// Noise model.
    pub noise: Noise,
    /// Kernel file for `deblur_motion` (safetensors tensor `kernel` [k, k]); `None` draws one.
    pub kernel: Option<PathBuf>,
    /// bkse checkpoint for `deblur_nonlinear` (`None`: looked up in the checkpoint folder).
    pub checkpoint: Option<PathBuf>,
    /// Input image or tensor.
    pub input: PathBuf,
    /// Output safetensors.
    pub output: PathBuf,
    /// Optional PNG of y.
    pub png: Option<PathBuf>,
}

/// The task `name` as `variant`'s code defines it: `deblur_motion` with `kernel` reads the
/// kernel from that file (else it is drawn from the seed); `deblur_nonlinear` loads the bkse
/// checkpoint `checkpoint` (default: looked up in the checkpoint folder; `dps` redraws the kernel
/// code at every call as DPS does, `daps` fixes it).
pub fn task(name: TaskName, variant: Variant, kernel: Option<&Path>, checkpoint: Option<&Path>) -> Result<Task> {
    if name == TaskName::DeblurNonlinear {
        let path = match checkpoint {
            Some(p) => p.to_path_buf(),
            None => crate::weights::locate(crate::weights::known("bkse")?, &crate::weights::checkpoint_dir(None))?,
        };
        return Ok(Task::new(name, variant, Some(&path))?);
    }
    if let (TaskName::DeblurMotion, Some(path)) = (name, kernel) {
        let mut src = dipbench_nn::source::MemorySource::from_safetensors_floats(path)?;
        let shape =
            src.manifest().into_iter().find(|(k, _)| k == "kernel").map(|(_, s)| s).with_context(|| format!("{}: no tensor `kernel`", path.display()))?;
        if shape.len() != 2 || shape[0] != shape[1] || shape[0] % 2 == 0 {
            bail!("{}: `kernel` must be square with an odd side, [k, k], got {shape:?}", path.display());
        }
        let kernel = dipbench_nn::source::ParamSource::take_values(&mut src, "kernel", &shape)?;
        if kernel.iter().any(|v| !v.is_finite()) {
            bail!("{}: `kernel` has values that are not finite", path.display());
        }
        return Ok(Task::DeblurKernel { size: shape[0], kernel });
    }
    Ok(Task::new(name, variant, None)?)
}

fn to_vec<B: NnBackend>(t: Tensor<B, 2>) -> Result<Vec<f32>> {
    t.into_data().convert::<f32>().to_vec::<f32>().map_err(|e| anyhow::anyhow!("{e:?}"))
}

/// Builds the operator of `task`, measures `x`, returns (operator, clean y, noisy y).
pub fn measure<B: NnBackend>(task: &Task, x: &[f32], seed: u64, noise: Noise, device: &B::Device) -> Result<(Box<dyn Operator<B>>, Vec<f32>, Vec<f32>)> {
    let shape = ImageShape { c: 3, h: SIDE, w: SIDE };
    let seed_text = seed.to_string();
    let op = build::<B>(task, shape, &mut SampleRng::new(derive_seed(&["measure", &seed_text, "operator"]), 1), device)?;
    let x = Tensor::<B, 1>::from_floats(x, device).reshape([1, shape.len()]);
    let clean = op.forward(x);
    let mut rng = SampleRng::new(derive_seed(&["measure", &seed_text, "noise"]), 1);
    let noisy = match noise {
        Noise::Gaussian(s) => GaussianNoise { sigma: s }.apply(clean.clone(), &mut rng),
        Noise::Poisson(rate) => PoissonNoise { rate }.apply(clean.clone(), &mut rng),
    };
    Ok((op, to_vec(clean)?, to_vec(noisy)?))
}

/// The side of a square measurement image with `len` values over 3 channels.
fn side_of(len: usize) -> usize {
    ((len / 3) as f64).sqrt().round() as usize
}

/// Writes f32 tensors to a safetensors file.
pub fn write_tensors(path: &Path, tensors: Vec<(&str, Vec<usize>, &[f32])>) -> Result<()> {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> =
        tensors.into_iter().map(|(k, s, v)| (k.to_string(), s, v.iter().flat_map(|x| x.to_le_bytes()).collect())).collect();
    let views = bytes
        .iter()
        .map(|(k, s, b)| Ok((k.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)?)))
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()?;
    safetensors::serialize_to_file(views, None, path).with_context(|| format!("cannot write {}", path.display()))
}

/// An RGB image of `side`² pixels from CHW values, mapped to [0, 255] by `[lo, hi]`, enlarged
/// by nearest neighbour to at least `min_side`.
fn to_rgb(v: &[f32], side: usize, lo: f32, hi: f32, min_side: usize) -> image::RgbImage {
    let k = min_side.div_ceil(side).max(1);
    let n = side * side;
    image::RgbImage::from_fn((side * k) as u32, (side * k) as u32, |x, y| {
        let (i, j) = (y as usize / k, x as usize / k);
        let px = |c: usize| (((v[c * n + i * side + j] - lo) / (hi - lo)).clamp(0.0, 1.0) * 255.0).round() as u8;
        image::Rgb([px(0), px(1), px(2)])
    })
}

/// A measurement as a picture: [−1, 1] images as they are; Fourier magnitudes (phase
/// retrieval) as log(1 + |y|) scaled to their range.
pub fn render(y: &[f32], min_side: usize) -> image::RgbImage {
    let side = side_of(y.len());
    let in_range = y.iter().all(|v| v.abs() <= 1.0 + 1e-3);
    if in_range {
        to_rgb(y, side, -1.0, 1.0, min_side)
    } else {
        let logs: Vec<f32> = y.iter().map(|v| (1.0 + v.abs()).ln()).collect();
        let hi = logs.iter().cloned().fold(0.0, f32::max);
        to_rgb(&logs, side, 0.0, hi.max(1e-6), min_side)
    }
}

/// `dipbench measure`: returns a summary line.
pub fn run_measure<B: NnBackend>(req: &MeasureRequest, device: &B::Device) -> Result<String> {
    let x = read_image(&req.input)?;
    let task = task(req.task, req.variant, req.kernel.as_deref(), req.checkpoint.as_deref())?;
    let (op, clean, noisy) = measure::<B>(&task, &x, req.seed, req.noise, device)?;
    let side = side_of(clean.len());
    write_tensors(&req.output, vec![("x", vec![1, 3, SIDE, SIDE], &x), ("y", vec![1, 3, side, side], &noisy), ("y_clean", vec![1, 3, side, side], &clean)])?;
    if let Some(png) = &req.png {
        render(&noisy, 0).save(png).with_context(|| format!("cannot write {}", png.display()))?;
    }
    Ok(format!("{}: y = A(x) + noise, {} values, written to {}", op.name(), noisy.len(), req.output.display()))
}

/// `dipbench operators grid`: one PNG per task, x | y | Aᵀy (Aᵀy only for linear operators),
/// noise-free, each panel shown at ≥ 256 pixels. The motion kernel is `kernel` if given, else
/// drawn from `seed`.
pub fn grid<B: NnBackend>(input: &Path, out: &Path, kernel: Option<&Path>, seed: u64, device: &B::Device) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let x = read_image(input)?;
    use TaskName::*;
    use Variant::{Daps, Dps};
    let tasks = [
        (Sr4, Dps),
        (InpaintBox, Dps),
        (InpaintRandom, Dps),
        (DeblurGauss, Dps),
        (PhaseRetrieval, Dps),
        (PhaseRetrieval, Daps),
        (Hdr, Daps),
        (DeblurMotion, Dps),
    ];
    let mut written = vec![];
    for (name, variant) in tasks {
        let t = task(name, variant, kernel, None)?;
        let (op, clean, _) = measure::<B>(&t, &x, seed, Noise::Gaussian(0.0), device)?;
        let mut panels = vec![render(&x, SIDE), render(&clean, SIDE)];
        if let Some(lin) = op.as_linear() {
            let y = Tensor::<B, 1>::from_floats(clean.as_slice(), device).reshape([1, clean.len()]);
            panels.push(render(&to_vec(lin.adjoint(y))?, SIDE));
        }
        let h = panels.iter().map(|p| p.height()).max().unwrap_or(0);
        let w: u32 = panels.iter().map(|p| p.width() + 8).sum();
        let mut canvas = image::RgbImage::from_pixel(w, h, image::Rgb([255, 255, 255]));
        let mut left = 0;
        for p in &panels {
            image::imageops::overlay(&mut canvas, p, i64::from(left), 0);
            left += p.width() + 8;
        }
        let path = out.join(format!("{name}-{}.png", variant.name()));
        canvas.save(&path).with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}
