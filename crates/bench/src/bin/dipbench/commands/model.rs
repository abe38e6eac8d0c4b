//! `dipbench model verify` and `dipbench model eval`.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Subcommand;
use dipbench::backend::DeviceKind;
use dipbench::network;

use super::say;
use crate::args::{NetworkArgs, eval_config_help};

/// Arguments of `dipbench model`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand, Debug)]
enum Action {
    /// Check the UNet port on this backend against guided-diffusion's reference outputs (the
    /// golden fixtures): the tiny UNet and the FFHQ (and, with --imagenet, ImageNet) config with
    /// golden-fill weights. float32 is held to 1e-4 relative error on the CPU and 5e-3 on a GPU
    /// (TF32); f16/bf16 to 0.05 dB of DDRM PSNR. Exit 1 on a failure.
    Verify {
        /// Folder of the golden fixtures (unet_tiny.pt, unet_tiny_io.safetensors,
        /// unet_ffhq_goldenfill_io.safetensors).
        #[arg(long, env = "DIPBENCH_GOLDEN")]
        golden: PathBuf,
        /// Also the ImageNet-256 config (553 M parameters).
        #[arg(long)]
        imagenet: bool,
        #[command(flatten)]
        network: NetworkArgs,
    },
    /// Evaluate a network on `x` of a safetensors file: a UNet's raw output at --t or D(x; σ) at
    /// --sigma; an autoencoder's map named by --autoencoder.
    Eval {
        #[arg(long, help = eval_config_help())]
        config: String,
        /// Checkpoint (.pt or .safetensors).
        #[arg(long, conflicts_with = "golden_fill")]
        checkpoint: Option<PathBuf>,
        /// Use the golden-fill weights of the test fixtures instead of a checkpoint.
        #[arg(long)]
        golden_fill: bool,
        /// Input safetensors with a tensor `x` [n, c, h, w].
        #[arg(long)]
        input: PathBuf,
        /// Output safetensors (`out` or `denoised`).
        #[arg(long)]
        output: PathBuf,
        /// Timestep (integer DDPM step or float c_noise) for the raw network output.
        #[arg(long)]
        t: Option<f32>,
        /// Noise level σ for the denoiser D(x; σ) (VP→EDM preconditioning).
        #[arg(long)]
        sigma: Option<f64>,
        /// For an autoencoder config (vq-f4, vq-tiny): `encode` (x → h, not quantised),
        /// `quantize` (h → z_q and the code indices), `decode` (z → image through the quantiser)
        /// or `decode-nq` (without it). The checkpoint may be a LatentDiffusion one (its
        /// first_stage_model part is read) or the autoencoder's own.
        #[arg(long)]
        autoencoder: Option<network::AutoencoderStep>,
        #[command(flatten)]
        network: NetworkArgs,
    },
}

/// Verifies or evaluates.
pub fn run(a: Args) -> Result<i32> {
    match a.action {
        Action::Verify { golden, imagenet, network: NetworkArgs { device, precision } } => {
            let f32_tol = if device == DeviceKind::Cpu { network::CPU_F32_TOLERANCE } else { network::GPU_F32_TOLERANCE };
            let checks = dipbench::with_backend!(device, |B, dev| network::verify::<B>(&golden, precision.into(), imagenet, f32_tol, &dev))?;
            for c in &checks {
                let verdict = match c.tol {
                    Some(t) => format!("(tolerance {t:.0e})  {}", if c.ok() { "ok" } else { "FAILED" }),
                    None => "(reported)".to_string(),
                };
                say(format_args!("{:<34} {} {:.3e}  {verdict}", c.name, c.measure, c.value))?;
            }
            let failed = checks.iter().filter(|c| !c.ok()).count();
            if failed > 0 {
                bail!("{failed} of {} checks above tolerance on {device:?} ({precision:?})", checks.len());
            }
        }
        Action::Eval { config, checkpoint, golden_fill, input, output, t, sigma, autoencoder, network: NetworkArgs { device, precision } } => {
            if checkpoint.is_none() && !golden_fill {
                bail!("give --checkpoint FILE (see `dipbench weights`) or --golden-fill");
            }
            let req = network::EvalRequest { config, checkpoint, input, output, t, sigma, precision: precision.into(), autoencoder };
            say(dipbench::with_backend!(device, |B, dev| network::eval::<B>(&req, &dev))?)?;
        }
    }
    Ok(0)
}
