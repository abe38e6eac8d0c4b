//! `dipbench bench unet|sampler|gmm|metrics`.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Subcommand;
use dipbench::speed;

use super::say;
use crate::args::{DeviceArgs, NetworkArgs, config_help};

/// Arguments of `dipbench bench`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand, Debug)]
enum What {
    /// ADM UNet forward and DPS step (golden-fill weights) beside this machine's GEMM rate and,
    /// with --torch, the official PyTorch network timed in the same run.
    Unet {
        #[command(flatten)]
        speed: SpeedArgs,
    },
    /// Seconds per image of DPS-1000 and DAPS-1K (SR ×4, golden-fill weights), extrapolated from
    /// timed steps, beside one forward measured in the same run (and PyTorch with --torch). On a
    /// latent config (ffhq256-ldm): the latent UNet beside the pixel UNet, the decoder, and a
    /// LatentDAPS level (ODE + HMC steps through the decoder).
    Sampler {
        #[command(flatten)]
        speed: SpeedArgs,
    },
    /// Seconds per replicate of each method of a GMM experiment on one cell of its grid (replicate
    /// 0's problem), beside one fused noisy pass over the samples measured in the same run.
    Gmm {
        /// The GMM experiment whose methods, samples and schedule are timed.
        #[arg(default_value = "experiments/gmm.toml")]
        experiment: PathBuf,
        /// Dimension d.
        #[arg(long, default_value_t = 800)]
        d: usize,
        /// Measurement dimension d_y.
        #[arg(long, default_value_t = 4)]
        dy: usize,
        /// Steps of the budget.
        #[arg(long, default_value_t = 100)]
        steps: usize,
        /// η of the budget.
        #[arg(long, default_value_t = 0.85)]
        eta: f64,
        /// Method labels to time, comma-separated (default: all of the experiment's).
        #[arg(long, value_delimiter = ',')]
        methods: Vec<String>,
        /// Untimed runs of each method first.
        #[arg(long, default_value_t = 0)]
        warmup: usize,
        /// Timed runs of each method (min and median reported).
        #[arg(long, default_value_t = 2)]
        repeats: usize,
        /// Also write the report as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// LPIPS-VGG per pair and Inception (FID) features per image vs this machine's GEMM speed.
    Metrics {
        /// Image side (pixels).
        #[arg(long, default_value_t = 256)]
        size: usize,
        /// Images per batch.
        #[arg(long, default_value_t = 4)]
        batch: usize,
        #[command(flatten)]
        timing: TimingArgs,
        #[command(flatten)]
        device: DeviceArgs,
        /// Also write the report as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

/// How often every benchmark runs what it times.
#[derive(clap::Args, Debug, Clone, Copy)]
struct TimingArgs {
    /// Untimed runs before the timed ones (first-use costs: page faults, GPU kernel compilation
    /// and autotuning).
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Timed runs (min and median reported).
    #[arg(long, default_value_t = 5)]
    repeats: usize,
}

/// The flags of `bench unet` and `bench sampler`.
#[derive(clap::Args, Debug)]
struct SpeedArgs {
    #[arg(long, default_value = "ffhq256", help = config_help())]
    config: String,
    /// Images per call.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    #[command(flatten)]
    timing: TimingArgs,
    #[command(flatten)]
    network: NetworkArgs,
    /// Also time the official PyTorch network in this run with this Python interpreter (needs
    /// torch and --guided-diffusion).
    #[arg(long)]
    torch: Option<PathBuf>,
    /// A checkout of openai/guided-diffusion (the folder holding the `guided_diffusion` package),
    /// for --torch.
    #[arg(long, env = "DIPBENCH_GUIDED_DIFFUSION")]
    guided_diffusion: Option<PathBuf>,
    /// Also write the report as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

impl SpeedArgs {
    fn options(&self) -> Result<speed::SpeedOptions> {
        let torch = match (&self.torch, &self.guided_diffusion) {
            (Some(python), Some(gd)) => Some(speed::TorchReference { python: python.clone(), guided_diffusion: gd.clone() }),
            (Some(_), None) => {
                bail!("--torch needs --guided-diffusion DIR (a checkout of https://github.com/openai/guided-diffusion) or $DIPBENCH_GUIDED_DIFFUSION")
            }
            (None, _) => None,
        };
        Ok(speed::SpeedOptions {
            config: self.config.clone(),
            batch: self.batch,
            warmup: self.timing.warmup,
            repeats: self.timing.repeats,
            precision: self.network.precision.into(),
            backend: format!("{:?}", self.network.device).to_lowercase(),
            torch,
        })
    }
}

/// Prints a report and writes its JSON when asked.
fn emit<R: serde::Serialize>(text: String, report: &R, json: Option<&PathBuf>) -> Result<()> {
    say(text.trim_end())?;
    if let Some(path) = json {
        speed::write_json(path, report)?;
    }
    Ok(())
}

/// Runs a speed benchmark.
pub fn run(a: Args) -> Result<i32> {
    match a.what {
        What::Unet { speed: args } => {
            let opts = args.options()?;
            let report = dipbench::with_backend!(args.network.device, |B, dev| speed::bench_unet::<B>(&opts, &dev))?;
            emit(report.render(), &report, args.json.as_ref())?;
        }
        What::Sampler { speed: args } => {
            let opts = args.options()?;
            if dipbench_models::unet::UnetConfig::by_name(&opts.config)?.is_latent() {
                let report = dipbench::with_backend!(args.network.device, |B, dev| speed::bench_latent_sampler::<B>(&opts, &dev))?;
                emit(report.render(), &report, args.json.as_ref())?;
            } else {
                let report = dipbench::with_backend!(args.network.device, |B, dev| speed::bench_sampler::<B>(&opts, &dev))?;
                emit(report.render(), &report, args.json.as_ref())?;
            }
        }
        What::Gmm { experiment, d, dy, steps, eta, methods, warmup, repeats, json } => {
            let exp = dipbench::experiment::Experiment::load(&experiment)?;
            let dipbench::experiment::Kind::Gmm(gmm) = &exp.kind else {
                bail!("{} is not a GMM experiment (benchmark = \"gmm\")", experiment.display());
            };
            let opts =
                dipbench::benchmarks::gmm::speed::GmmSpeedOptions { d, d_y: dy, budget: dipbench::experiment::Budget { steps, eta }, methods, warmup, repeats };
            let report = dipbench::benchmarks::gmm::speed::bench_gmm::<burn::backend::Autodiff<burn::backend::Flex>>(&exp, gmm, &opts, &Default::default())?;
            emit(report.render(), &report, json.as_ref())?;
        }
        What::Metrics { size, batch, timing: TimingArgs { warmup, repeats }, device, json } => {
            if batch == 0 || repeats == 0 || size == 0 {
                bail!("--size, --batch and --repeats must be at least 1");
            }
            let report = dipbench::with_backend!(device.device, |B, dev| speed::bench_metrics::<B>(size, batch, warmup, repeats, &dev))?;
            emit(report.render(), &report, json.as_ref())?;
        }
    }
    Ok(0)
}
