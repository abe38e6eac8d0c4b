//! `dipbench measure`.

use std::path::PathBuf;

use anyhow::{Result, bail};
use dipbench::measure::{MeasureRequest, Noise, run_measure};
use dipbench_operators::image::{TaskName, Variant};

use super::say;

/// Arguments of `dipbench measure`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(long, help = format!("Task: {}", dipbench::registry::tasks()))]
    task: TaskName,
    /// Which codebase's definition where DPS and DAPS differ (dps, daps).
    #[arg(long, default_value = "dps")]
    variant: Variant,
    /// Seed of the measurement (masks, noise).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Gaussian noise σ_y in [-1, 1] units (0.05 in the papers = 0.025 in [0, 1] units).
    #[arg(long, default_value_t = 0.05)]
    sigma_y: f64,
    /// Poisson noise of rate λ instead of Gaussian (DPS).
    #[arg(long)]
    poisson: Option<f64>,
    /// Kernel file for deblur_motion (safetensors tensor `kernel` [k, k]); default: drawn from the seed.
    #[arg(long)]
    kernel: Option<PathBuf>,
    /// bkse checkpoint for deblur_nonlinear (default: GOPRO_wVAE.pth in the checkpoint folder).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Input image (256×256 RGB) or safetensors with `x` [1, 3, 256, 256] in [-1, 1].
    #[arg(long)]
    input: PathBuf,
    /// Output safetensors (x, y, y_clean).
    #[arg(long)]
    output: PathBuf,
    /// Also write y as a PNG.
    #[arg(long)]
    png: Option<PathBuf>,
}

/// Measures the image.
pub fn run(a: Args) -> Result<i32> {
    let noise = match a.poisson {
        Some(rate) if rate.is_finite() && rate > 0.0 => Noise::Poisson(rate),
        Some(rate) => bail!("--poisson {rate}: the rate must be finite and > 0"),
        None if a.sigma_y.is_finite() && a.sigma_y >= 0.0 => Noise::Gaussian(a.sigma_y),
        None => bail!("--sigma-y {}: must be finite and ≥ 0", a.sigma_y),
    };
    let req = MeasureRequest {
        task: a.task,
        variant: a.variant,
        seed: a.seed,
        noise,
        kernel: a.kernel,
        checkpoint: a.checkpoint,
        input: a.input,
        output: a.output,
        png: a.png,
    };
    say(run_measure::<burn::backend::Flex>(&req, &Default::default())?)?;
    Ok(0)
}
