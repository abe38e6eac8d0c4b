//! Speed benchmarks (`dipbench bench unet | sampler | metrics`), each reported beside baselines
//! measured in the same run: the machine's float32 matrix-multiply rate (the time a perfect
//! implementation would need for the counted multiply–accumulates) and, on request, the official
//! PyTorch network on the same machine ([`TorchReference`]). Every figure is the minimum and the
//! median of `repeats` timed runs after `warmup` untimed ones (first-use costs: page faults,
//! kernel compilation and autotuning on GPU backends).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use dipbench_models::unet::{AdmUnet, UnetConfig};
use dipbench_nn::layers::{Precision, macs, reset_macs};
use dipbench_nn::{NnAutodiffBackend, NnBackend};
use dipbench_operators::SampleRng;
use serde::{Deserialize, Serialize};

use crate::network::load_net;

/// Minimum, median and every sample of a timed quantity, in seconds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Timing {
    /// Fastest run.
    pub min: f64,
    /// Median run.
    pub median: f64,
    /// Every timed run, in order.
    pub samples: Vec<f64>,
}

impl Timing {
    /// The minimum and median of `samples` (at least one), kept in order.
    pub fn from_samples(samples: Vec<f64>) -> Self {
        let mut sorted = samples.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 { sorted[n / 2] } else { 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]) };
        Self { min: sorted[0], median, samples }
    }

    /// This timing divided by `k` (per image of a batch, per step of a chain).
    pub fn per(&self, k: f64) -> Self {
        Self { min: self.min / k, median: self.median / k, samples: self.samples.iter().map(|s| s / k).collect() }
    }
}

/// Runs `f` `warmup` times untimed, then `repeats` (at least 1) times timed.
pub fn time_runs(warmup: usize, repeats: usize, mut f: impl FnMut()) -> Timing {
    for _ in 0..warmup {
        f();
    }
    let samples = (0..repeats.max(1))
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .collect();
    Timing::from_samples(samples)
}

/// float32 GEMM rate of the backend, GFLOP/s (2·n³ per n×n product, best of `reps` after one
/// warm-up).
pub fn gemm_gflops<B: Backend>(device: &B::Device, n: usize, reps: usize) -> f64 {
    let a = SampleRng::new(1, n).normal::<B>(n, device);
    let b = SampleRng::new(2, n).normal::<B>(n, device);
    let t = time_runs(1, reps, || {
        let _ = a.clone().matmul(b.clone()).into_data();
    });
    2.0 * (n as f64).powi(3) / t.min / 1e9
}

/// The official PyTorch network as a yardstick: a Python interpreter with `torch`, and a checkout
/// of openai/guided-diffusion (the folder that holds the `guided_diffusion` package).
#[derive(Debug, Clone)]
pub struct TorchReference {
    /// The interpreter, e.g. `python3` or a virtual environment's.
    pub python: PathBuf,
    /// The guided-diffusion checkout.
    pub guided_diffusion: PathBuf,
}

/// What the PyTorch run measured (the JSON written by `scripts/torch_unet_bench.py`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TorchTiming {
    /// torch version.
    pub torch: String,
    /// `cpu` or the GPU's name.
    pub device_name: String,
    /// torch's intra-op threads.
    pub threads: usize,
    /// Batch size.
    pub batch: usize,
    /// Whether guided-diffusion's fp16 mode was on.
    pub fp16: bool,
    /// Parameters of the network (must equal the port's).
    pub params: u64,
    /// torch's cuDNN TF32 switch (float32 convolutions on tensor cores).
    pub cudnn_allow_tf32: bool,
    /// The forward under `no_grad`.
    pub forward: Timing,
    /// Forward + gradient w.r.t. the input.
    pub dps_step: Timing,
}

/// The timing script, embedded so that the binary works from any folder.
const TORCH_SCRIPT: &str = include_str!("../scripts/torch_unet_bench.py");

impl TorchReference {
    /// Times the guided-diffusion `UNetModel` of `config` at `batch` on `device` (`cpu`, or
    /// `cuda` for a GPU run) with `threads` CPU threads, `warmup` + `repeats` runs.
    pub fn run(&self, config: &UnetConfig, batch: usize, device: &str, threads: usize, fp16: bool, warmup: usize, repeats: usize) -> Result<TorchTiming> {
        if !self.guided_diffusion.join("guided_diffusion").join("unet.py").is_file() {
            bail!(
                "--guided-diffusion {}: no guided_diffusion/unet.py there; give the folder of a checkout of https://github.com/openai/guided-diffusion",
                self.guided_diffusion.display()
            );
        }
        let dir = std::env::temp_dir().join(format!("dipbench-torch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let script = dir.join("torch_unet_bench.py");
        let json = dir.join("torch.json");
        std::fs::write(&script, TORCH_SCRIPT).with_context(|| format!("cannot write {}", script.display()))?;
        let status = std::process::Command::new(&self.python)
            .arg(&script)
            .arg("--guided-diffusion")
            .arg(&self.guided_diffusion)
            .args(["--config", &serde_json::to_string(config)?, "--device", device])
            .args(["--threads", &threads.to_string(), "--batch", &batch.to_string()])
            .args(["--warmup", &warmup.to_string(), "--reps", &repeats.max(1).to_string(), "--json"])
            .arg(&json)
            .args(fp16.then_some("--fp16"))
            .stdout(std::process::Stdio::null())
            .status()
            .with_context(|| format!("cannot run {}", self.python.display()))?;
        if !status.success() {
            bail!("the PyTorch reference run failed ({status}); its messages are above");
        }
        let text = std::fs::read_to_string(&json).with_context(|| format!("cannot read {}", json.display()))?;
        let _ = std::fs::remove_dir_all(&dir);
        serde_json::from_str(&text).context("the PyTorch reference wrote unexpected JSON")
    }
}

/// How a speed benchmark is run.
#[derive(Debug, Clone)]
pub struct SpeedOptions {
    /// Network config name.
    pub config: String,
    /// Images per call.
    pub batch: usize,
    /// Untimed runs before the timed ones.
    pub warmup: usize,
    /// Timed runs.
    pub repeats: usize,
    /// Arithmetic precision of the network.
    pub precision: Precision,
    /// `cpu`, `cuda` or `wgpu` (for the report and the PyTorch side).
    pub backend: String,
    /// The PyTorch side-by-side run, if asked for.
    pub torch: Option<TorchReference>,
}

impl SpeedOptions {
    fn check(&self) -> Result<()> {
        if self.batch == 0 {
            bail!("--batch must be at least 1");
        }
        if self.repeats == 0 {
            bail!("--repeats must be at least 1");
        }
        Ok(())
    }

    /// Runs the PyTorch side when asked (float32, or guided-diffusion's fp16 mode for f16).
    fn torch(&self, config: &UnetConfig) -> Result<Option<TorchTiming>> {
        let Some(reference) = &self.torch else { return Ok(None) };
        let device = match self.backend.as_str() {
            "cpu" => "cpu",
            "cuda" => "cuda",
            other => bail!("--torch: PyTorch has no `{other}` device to compare with"),
        };
        let fp16 = match self.precision {
            Precision::F32 => false,
            Precision::F16 => true,
            Precision::Bf16 => bail!("--torch: guided-diffusion has no bf16 mode (use --precision f16 or f32)"),
        };
        reference.run(config, self.batch, device, rayon::current_num_threads(), fp16, self.warmup, self.repeats).map(Some)
    }
}

/// The report of `bench unet`.
#[derive(Debug, Clone, Serialize)]
pub struct UnetReport {
    /// Network config.
    pub config: String,
    /// Images per call.
    pub batch: usize,
    /// Precision of the timed network.
    pub precision: String,
    /// Backend.
    pub backend: String,
    /// CPU threads.
    pub threads: usize,
    /// Untimed runs before the timed ones.
    pub warmup: usize,
    /// Multiply–accumulates of one forward.
    pub forward_macs: u64,
    /// The forward.
    pub forward: Timing,
    /// Forward + gradient w.r.t. the input (a DPS step's network part).
    pub dps_step: Timing,
    /// float32 matrix-multiply rate of the backend, GFLOP/s.
    pub gemm_gflops: f64,
    /// Median forward over the time of its MACs at that rate.
    pub forward_over_gemm: f64,
    /// For half precision: the float32 network timed in the same run, and the relative
    /// difference of the outputs.
    pub float32: Option<Float32Baseline>,
    /// The official PyTorch network, same machine, same run.
    pub torch: Option<TorchTiming>,
}

/// The float32 network beside a half-precision one.
#[derive(Debug, Clone, Serialize)]
pub struct Float32Baseline {
    /// Its forward.
    pub forward: Timing,
    /// Its DPS step.
    pub dps_step: Timing,
    /// ‖y_half − y_f32‖ / ‖y_f32‖ of the outputs.
    pub output_rel_diff: f64,
}

/// Forward and DPS-step timings of `net` on `x`, and the MACs of one forward.
fn time_unet<B: NnAutodiffBackend>(net: &AdmUnet<B>, x: &Tensor<B, 4>, warmup: usize, repeats: usize) -> (Timing, Timing, u64) {
    let inner = net.clone().inner();
    let x_inner = x.clone().inner();
    let forward = time_runs(warmup, repeats, || {
        let _ = inner.forward(x_inner.clone(), &[500.0]).into_data();
    });
    reset_macs();
    let _ = inner.forward(x_inner.clone(), &[500.0]).into_data();
    let forward_macs = macs();
    let dps_step = time_runs(warmup, repeats, || {
        let xg = x.clone().detach().require_grad();
        let out = net.forward(xg.clone(), &[500.0]);
        let grads = out.powf_scalar(2.0).sum().backward();
        let _ = xg.grad(&grads).expect("input gradient").into_data();
    });
    (forward, dps_step, forward_macs)
}

/// `bench unet`: the ADM UNet forward and a DPS step (forward + input gradient) with golden-fill
/// weights; for half precision also float32 in the same run.
pub fn bench_unet<B: NnAutodiffBackend>(opts: &SpeedOptions, device: &B::Device) -> Result<UnetReport> {
    opts.check()?;
    let config = UnetConfig::by_name(&opts.config)?;
    let torch = opts.torch(&config)?;
    let net = load_net::<B>(&config, None, device)?;
    let d = config.in_channels * config.image_size * config.image_size;
    let x = SampleRng::new(3, opts.batch).normal::<B>(d, device).reshape([opts.batch, config.in_channels, config.image_size, config.image_size]);
    let gemm = gemm_gflops::<B>(device, 1024, 5);
    let half = net.clone().with_precision(opts.precision);
    let (forward, dps_step, forward_macs) = time_unet(&half, &x, opts.warmup, opts.repeats);
    let float32 = if opts.precision == Precision::F32 {
        None
    } else {
        let (f32_forward, f32_dps, _) = time_unet(&net, &x, opts.warmup, opts.repeats);
        let values = |t: Tensor<B, 4>| t.into_data().convert::<f32>().to_vec::<f32>().map_err(|e| anyhow::anyhow!("{e:?}"));
        let rel = crate::network::rel_err(&values(half.forward(x.clone(), &[500.0]))?, &values(net.forward(x.clone(), &[500.0]))?);
        Some(Float32Baseline { forward: f32_forward, dps_step: f32_dps, output_rel_diff: rel })
    };
    let equiv = 2.0 * forward_macs as f64 / (gemm * 1e9);
    Ok(UnetReport {
        config: config.name.clone(),
        batch: opts.batch,
        precision: format!("{:?}", opts.precision).to_lowercase(),
        backend: opts.backend.clone(),
        threads: rayon::current_num_threads(),
        warmup: opts.warmup,
        forward_macs,
        forward_over_gemm: forward.median / equiv,
        forward,
        dps_step,
        gemm_gflops: gemm,
        float32,
        torch,
    })
}

fn fmt_timing(t: &Timing) -> String {
    format!("{:9.3} s {:9.3} s", t.min, t.median)
}

fn torch_lines(r: &mut String, torch: &TorchTiming, forward: &Timing, dps_step: &Timing) {
    r.push_str(&format!(
        "PyTorch {} guided-diffusion UNetModel, same machine, this run ({}, {} threads{}):\n",
        torch.torch,
        torch.device_name,
        torch.threads,
        if torch.fp16 { ", fp16" } else { "" }
    ));
    r.push_str(&format!("  forward                   {}\n", fmt_timing(&torch.forward)));
    r.push_str(&format!("  DPS step                  {}\n", fmt_timing(&torch.dps_step)));
    r.push_str(&format!(
        "dipbench / PyTorch (median): forward {:.2}, DPS step {:.2}   (min: {:.2}, {:.2}; below 1 = dipbench faster)\n",
        forward.median / torch.forward.median,
        dps_step.median / torch.dps_step.median,
        forward.min / torch.forward.min,
        dps_step.min / torch.dps_step.min
    ));
}

impl UnetReport {
    /// The report as text.
    pub fn render(&self) -> String {
        let mut r = String::new();
        r.push_str(&format!(
            "UNet `{}`, batch {}, {}, {} ({} threads), golden-fill weights; {} warm-up + {} timed runs\n",
            self.config,
            self.batch,
            self.precision,
            self.backend,
            self.threads,
            self.warmup,
            self.forward.samples.len()
        ));
        r.push_str("                                  min       median\n");
        r.push_str(&format!("  forward                   {}   ({:.1} GMAC)\n", fmt_timing(&self.forward), self.forward_macs as f64 / 1e9));
        r.push_str(&format!("  DPS step (fwd + ∂/∂x)     {}   (×{:.2} the forward)\n", fmt_timing(&self.dps_step), self.dps_step.median / self.forward.median));
        r.push_str(&format!(
            "baseline: GEMM {:.1} GFLOP/s → the forward's MACs in {:.3} s; forward / GEMM-equivalent {:.2}\n",
            self.gemm_gflops,
            2.0 * self.forward_macs as f64 / (self.gemm_gflops * 1e9),
            self.forward_over_gemm
        ));
        if let Some(f) = &self.float32 {
            r.push_str(&format!("float32 in the same run:     {}   forward\n", fmt_timing(&f.forward)));
            r.push_str(&format!("                             {}   DPS step\n", fmt_timing(&f.dps_step)));
            r.push_str(&format!(
                "  {} speed-up ×{:.2} forward, ×{:.2} DPS step; output vs float32: relative difference {:.2e}\n",
                self.precision,
                f.forward.median / self.forward.median,
                f.dps_step.median / self.dps_step.median,
                f.output_rel_diff
            ));
        }
        if let Some(t) = &self.torch {
            torch_lines(&mut r, t, &self.forward, &self.dps_step);
        }
        r
    }
}

/// Waits for `t` (on a GPU, for the queued kernels that make it) by reading it back.
fn sync<B: Backend>(t: Tensor<B, 2>) {
    let _ = t.into_data();
}

/// The report of `bench sampler`.
#[derive(Debug, Clone, Serialize)]
pub struct SamplerReport {
    /// Network config.
    pub config: String,
    /// Images per call.
    pub batch: usize,
    /// Precision of the network.
    pub precision: String,
    /// Backend.
    pub backend: String,
    /// CPU threads.
    pub threads: usize,
    /// One forward (ε̂ at t = 500), per call.
    pub forward: Timing,
    /// One DPS step (forward + gradient through the operator and the network), per call.
    pub dps_step: Timing,
    /// DAPS's x̂₀: 5 Euler PF-ODE forwards, per call.
    pub daps_ode: Timing,
    /// One DAPS Langevin step (operator only), per call.
    pub daps_langevin: Timing,
    /// DPS-1000 seconds per image (1000 median steps / batch).
    pub dps_1000_per_image: f64,
    /// DAPS-1K seconds per image (200 × (ODE + 100 Langevin steps) / batch).
    pub daps_1k_per_image: f64,
    /// The official PyTorch network, same machine, same run.
    pub torch: Option<TorchTiming>,
}

/// `bench sampler`: seconds per image of DPS-1000 and DAPS-1K on a UNet config (golden-fill
/// weights) for SR ×4, extrapolated from timed steps: DPS = 1000 guided steps (forward + input
/// gradient); DAPS-1K = 200 levels × (5 ODE forwards + 100 Langevin steps on the operator).
pub fn bench_sampler<B: NnAutodiffBackend>(opts: &SpeedOptions, device: &B::Device) -> Result<SamplerReport> {
    use dipbench_models::unet::UnetPrior;
    use dipbench_operators::image::{ImageShape, Task, build};
    use dipbench_samplers::Problem;
    use dipbench_samplers::daps::{Daps, DapsConfig};
    use dipbench_samplers::dps::{Dps, DpsConfig, Likelihood};

    opts.check()?;
    let config = UnetConfig::by_name(&opts.config)?;
    let torch = opts.torch(&config)?;
    let side = config.image_size;
    let n = opts.batch;
    let prior = UnetPrior::new(load_net::<B>(&config, None, device)?.with_precision(opts.precision));
    let shape = ImageShape { c: 3, h: side, w: side };
    let op = build::<B>(&Task::Sr4, shape, &mut SampleRng::new(0, 1), device)?;
    let x_gt = SampleRng::new(1, 1).normal::<B>(shape.len(), device).clamp(-1.0, 1.0);
    let y = op.forward(x_gt);
    let problem = Problem::shared(&prior, op.as_ref(), y, 0.05, n);
    let x = SampleRng::new(2, n).normal::<B>(shape.len(), device);
    let (w, reps) = (opts.warmup, opts.repeats);
    let forward = time_runs(w, reps, || sync(dipbench_models::Prior::eps(&prior, x.clone(), 500)));
    let dps = Dps(DpsConfig::image(0.3, Likelihood::Gaussian));
    let dps_step = time_runs(w, reps, || sync(dps.step(&problem, x.clone(), 500, Some(499), Some(x.clone())).x_next));
    let daps_cfg = DapsConfig::daps_1k();
    let grid = daps_cfg.ode_sigmas(10.0);
    let daps_ode = time_runs(w, reps, || sync(Daps::ode_x0(&prior, x.clone(), &grid)));
    let one_langevin = Daps(DapsConfig { langevin_steps: 1, ..daps_cfg.clone() });
    let mut rng = SampleRng::new(4, n);
    let daps_langevin = time_runs(w, reps, || sync(one_langevin.langevin(&problem, &x, 10.0, 1e-4, 0.01, &mut rng)));
    let levels = daps_cfg.annealing_steps as f64;
    Ok(SamplerReport {
        config: config.name.clone(),
        batch: n,
        precision: format!("{:?}", opts.precision).to_lowercase(),
        backend: opts.backend.clone(),
        threads: rayon::current_num_threads(),
        dps_1000_per_image: 1000.0 * dps_step.median / n as f64,
        daps_1k_per_image: levels * (daps_ode.median + daps_cfg.langevin_steps as f64 * daps_langevin.median) / n as f64,
        forward,
        dps_step,
        daps_ode,
        daps_langevin,
        torch,
    })
}

impl SamplerReport {
    /// The report as text.
    pub fn render(&self) -> String {
        let mut r = String::new();
        let runs = self.forward.samples.len();
        r.push_str(&format!(
            "Samplers on UNet `{}` (golden-fill weights), SR ×4, batch {}, {}, {} ({} threads); {} timed runs each after warm-up\n",
            self.config, self.batch, self.precision, self.backend, self.threads, runs
        ));
        r.push_str("                                          min       median   (per call of the batch)\n");
        r.push_str(&format!("  one forward (baseline)          {}\n", fmt_timing(&self.forward)));
        r.push_str(&format!("  DPS step (forward + ∂/∂x_t)     {}\n", fmt_timing(&self.dps_step)));
        r.push_str(&format!("  DAPS x̂₀ (5 Euler ODE forwards)  {}\n", fmt_timing(&self.daps_ode)));
        r.push_str(&format!("  DAPS Langevin step (operator)   {}\n", fmt_timing(&self.daps_langevin)));
        let per_image_fwd = self.forward.median / self.batch as f64;
        r.push_str(&format!(
            "  DPS-1000: NFE 1000, {:10.1} s/image = {:.2} × (NFE × forward)\n",
            self.dps_1000_per_image,
            self.dps_1000_per_image / (1000.0 * per_image_fwd)
        ));
        r.push_str(&format!(
            "  DAPS-1K:  NFE 1000, {:10.1} s/image = {:.2} × (NFE × forward)\n",
            self.daps_1k_per_image,
            self.daps_1k_per_image / (1000.0 * per_image_fwd)
        ));
        if let Some(t) = &self.torch {
            torch_lines(&mut r, t, &self.forward, &self.dps_step);
            r.push_str(&format!(
                "  PyTorch network time per image: DPS-1000 ≥ {:.1} s, DAPS-1K ≥ {:.1} s (1000 × its DPS step / forward)\n",
                1000.0 * t.dps_step.median / t.batch as f64,
                1000.0 * t.forward.median / t.batch as f64
            ));
        }
        r
    }
}

/// The report of `bench sampler` on a latent-diffusion config.
#[derive(Debug, Clone, Serialize)]
pub struct LatentSamplerReport {
    /// Latent UNet config.
    pub config: String,
    /// The pixel-space UNet timed beside it (`ffhq256`; `tiny32` beside the tiny configs).
    pub pixel_config: String,
    /// Images per call.
    pub batch: usize,
    /// Precision of the networks.
    pub precision: String,
    /// Backend.
    pub backend: String,
    /// CPU threads.
    pub threads: usize,
    /// One forward of the pixel UNet (the baseline), per call.
    pub pixel_forward: Timing,
    /// One forward of the latent UNet (ε̂ at t = 500), per call.
    pub forward: Timing,
    /// One quantising decode of latents to images, per call.
    pub decode: Timing,
    /// LatentDAPS's ẑ₀: 2 Euler PF-ODE forwards, per call.
    pub ode: Timing,
    /// One LatentDAPS HMC step (the data gradient through the decoder and the operator), per call.
    pub hmc_step: Timing,
    /// HMC steps per level of the SR ×4 preset.
    pub hmc_steps: usize,
    /// Annealing levels of the preset.
    pub levels: usize,
    /// One level (ODE + N HMC steps), per call.
    pub level_seconds: f64,
    /// LatentDAPS seconds per image (levels × level / batch).
    pub latent_daps_per_image: f64,
    /// The official PyTorch latent UNet, same machine, same run.
    pub torch: Option<TorchTiming>,
}

/// `bench sampler` on a latent UNet config (golden-fill weights), SR ×4 with the `latent-daps`
/// preset: the latent UNet forward beside the pixel UNet's (`ffhq256`) in the same run, the
/// decoder, and LatentDAPS extrapolated from timed pieces: levels × (ODE ẑ₀ + N HMC steps).
pub fn bench_latent_sampler<B: NnAutodiffBackend>(opts: &SpeedOptions, device: &B::Device) -> Result<LatentSamplerReport> {
    use dipbench_models::Prior;
    use dipbench_models::unet::UnetPrior;
    use dipbench_operators::image::{ImageShape, Task, build};
    use dipbench_samplers::Problem;
    use dipbench_samplers::daps::{Daps, DapsConfig};
    use dipbench_samplers::latent::LatentOperator;

    opts.check()?;
    let config = UnetConfig::by_name(&opts.config)?;
    let torch = opts.torch(&config)?;
    let n = opts.batch;
    let (w, reps) = (opts.warmup, opts.repeats);
    // The pixel UNet first, then dropped: both together would double the memory. The tiny
    // latent configs of the fixtures are timed beside the tiny pixel one.
    let pixel_config = UnetConfig::by_name(if config.name.starts_with("tiny") { "tiny32" } else { "ffhq256" })?;
    let pixel_forward = {
        let pixel = UnetPrior::new(load_net::<B>(&pixel_config, None, device)?.with_precision(opts.precision));
        let x = SampleRng::new(2, n).normal::<B>(pixel.dim(), device);
        time_runs(w, reps, || sync(pixel.eps(x.clone(), 500)))
    };
    let prior = crate::network::load_latent_prior::<B>(&config, None, opts.precision, device)?;
    let [c, h, wd] = prior.image_shape();
    let shape = ImageShape { c, h, w: wd };
    let op = build::<B>(&Task::Sr4, shape, &mut SampleRng::new(0, 1), device)?;
    let latent_op = LatentOperator::new(op.as_ref(), &prior)?;
    let x_gt = SampleRng::new(1, 1).normal::<B>(shape.len(), device).clamp(-1.0, 1.0);
    let y = op.forward(x_gt).expand([n, op.output_dim()]);
    let problem = Problem::on_latents(&prior, &latent_op, y, 0.05);
    let z = SampleRng::new(2, n).normal::<B>(prior.dim(), device);
    let forward = time_runs(w, reps, || sync(prior.eps(z.clone(), 500)));
    let decode = time_runs(w, reps, || sync(prior.decode(z.clone())));
    let cfg = DapsConfig::latent().latent_for_task("sr4").context("the latent-daps preset has SR ×4 settings")?;
    let grid = cfg.ode_sigmas(10.0);
    let ode = time_runs(w, reps, || sync(Daps::ode_x0(&prior, z.clone(), &grid)));
    let one = Daps(DapsConfig { langevin_steps: 1, ..cfg.clone() });
    let mut rng = SampleRng::new(4, n);
    let mut failed = None;
    let hmc_step = time_runs(w, reps, || match one.hmc(&problem, &z, 10.0, cfg.lr, cfg.tau, &mut rng) {
        Ok(t) => sync(t),
        Err(e) => failed = Some(e),
    });
    if let Some(e) = failed {
        bail!("LatentDAPS HMC step: {e}");
    }
    let level_seconds = ode.median + cfg.langevin_steps as f64 * hmc_step.median;
    Ok(LatentSamplerReport {
        config: config.name.clone(),
        pixel_config: pixel_config.name.clone(),
        batch: n,
        precision: format!("{:?}", opts.precision).to_lowercase(),
        backend: opts.backend.clone(),
        threads: rayon::current_num_threads(),
        latent_daps_per_image: cfg.annealing_steps as f64 * level_seconds / n as f64,
        hmc_steps: cfg.langevin_steps,
        levels: cfg.annealing_steps,
        level_seconds,
        pixel_forward,
        forward,
        decode,
        ode,
        hmc_step,
        torch,
    })
}

impl LatentSamplerReport {
    /// The report as text.
    pub fn render(&self) -> String {
        let mut r = String::new();
        r.push_str(&format!(
            "LatentDAPS on `{}` (golden-fill weights), SR ×4, batch {}, {}, {} ({} threads); {} timed runs each after warm-up\n",
            self.config,
            self.batch,
            self.precision,
            self.backend,
            self.threads,
            self.forward.samples.len()
        ));
        r.push_str(&format!("  {:<38}     min       median   (per call of the batch)\n", ""));
        let rows = [
            (format!("pixel UNet `{}` forward (baseline)", self.pixel_config), &self.pixel_forward),
            ("latent UNet forward".to_string(), &self.forward),
            ("decode (quantising)".to_string(), &self.decode),
            ("ẑ₀ (2 Euler ODE forwards)".to_string(), &self.ode),
            ("HMC step (∇ through D and A)".to_string(), &self.hmc_step),
        ];
        for (label, t) in rows {
            r.push_str(&format!("  {label:<38}{}\n", fmt_timing(t)));
        }
        r.push_str(&format!(
            "  latent / pixel UNet forward: {:.3}\n  one level (ODE + {} HMC steps): {:.2} s = {:.1} pixel forwards\n",
            self.forward.median / self.pixel_forward.median,
            self.hmc_steps,
            self.level_seconds,
            self.level_seconds / self.pixel_forward.median
        ));
        r.push_str(&format!("  LatentDAPS ({} levels): {:.1} s/image\n", self.levels, self.latent_daps_per_image));
        if let Some(t) = &self.torch {
            r.push_str(&format!(
                "  PyTorch latent UNet (same run): forward {:.3} s, ours {:.2}×; gradient step {:.3} s\n",
                t.forward.median,
                self.forward.median / t.forward.median * t.batch as f64 / self.batch as f64,
                t.dps_step.median
            ));
        }
        r
    }
}

/// Writes `report` as pretty JSON to `path`.
pub fn write_json(path: &Path, report: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(report)?;
    std::fs::write(path, text + "\n").with_context(|| format!("cannot write {}", path.display()))
}

/// The report of `bench metrics`.
#[derive(Debug, Clone, Serialize)]
pub struct MetricsReport {
    /// Image side.
    pub size: usize,
    /// Images per call.
    pub batch: usize,
    /// LPIPS-VGG per pair.
    pub lpips_vgg_per_pair: Timing,
    /// Its MACs per pair.
    pub lpips_macs_per_pair: u64,
    /// Inception pool3 features per image.
    pub inception_per_image: Timing,
    /// Its MACs per image.
    pub inception_macs_per_image: u64,
    /// float32 matrix-multiply rate of the backend, GFLOP/s.
    pub gemm_gflops: f64,
}

/// `bench metrics`: LPIPS-VGG per pair and the TF-FID Inception pool3 features per image,
/// golden-fill weights, on `batch` images of `size`×`size`.
pub fn bench_metrics<B: NnBackend>(size: usize, batch: usize, warmup: usize, repeats: usize, device: &B::Device) -> Result<MetricsReport> {
    use dipbench_metrics::lpips::{backbone_manifest, heads_manifest};
    use dipbench_metrics::{Inception, InceptionVariant, Lpips, LpipsVariant};
    use dipbench_nn::source::GoldenFill;

    if batch == 0 || repeats == 0 {
        bail!("--batch and --repeats must be at least 1");
    }
    let lpips =
        Lpips::<B>::load(LpipsVariant::Vgg, &mut GoldenFill::new(backbone_manifest("vgg16")), &mut GoldenFill::new(heads_manifest(LpipsVariant::Vgg)), device)?;
    let inception = Inception::<B>::load(InceptionVariant::TfFid, &mut GoldenFill::new(Inception::<B>::manifest(InceptionVariant::TfFid)), device)?;
    let d = 3 * size * size;
    let image = |seed| SampleRng::new(seed, batch).normal::<B>(d, device).reshape([batch, 3, size, size]).mul_scalar(0.2).add_scalar(0.5).clamp(0.0, 1.0);
    let (x, y) = (image(4), image(5));
    let gemm = gemm_gflops::<B>(device, 1024, 5);
    let counted = |f: &dyn Fn()| {
        reset_macs();
        f();
        macs()
    };
    let run_lpips = || {
        let _ = lpips.distance(x.clone(), y.clone()).into_data();
    };
    let run_inception = || {
        let _ = inception.features(x.clone()).into_data();
    };
    let lpips_t = time_runs(warmup, repeats, run_lpips);
    let inception_t = time_runs(warmup, repeats, run_inception);
    Ok(MetricsReport {
        size,
        batch,
        lpips_vgg_per_pair: lpips_t.per(batch as f64),
        lpips_macs_per_pair: counted(&run_lpips) / batch as u64,
        inception_per_image: inception_t.per(batch as f64),
        inception_macs_per_image: counted(&run_inception) / batch as u64,
        gemm_gflops: gemm,
    })
}

impl MetricsReport {
    /// The report as text.
    pub fn render(&self) -> String {
        let equiv = |m: u64| 2.0 * m as f64 / (self.gemm_gflops * 1e9);
        let mut r = String::new();
        r.push_str(&format!(
            "Metric networks on {} image(s) of {}×{}, golden-fill weights; {} timed runs\n",
            self.batch,
            self.size,
            self.size,
            self.lpips_vgg_per_pair.samples.len()
        ));
        r.push_str("                                     min       median\n");
        r.push_str(&format!(
            "  LPIPS-VGG per pair          {}   ({:.1} GMAC; GEMM-equivalent {:.3} s; ratio {:.2})\n",
            fmt_timing(&self.lpips_vgg_per_pair),
            self.lpips_macs_per_pair as f64 / 1e9,
            equiv(self.lpips_macs_per_pair),
            self.lpips_vgg_per_pair.median / equiv(self.lpips_macs_per_pair)
        ));
        r.push_str(&format!(
            "  Inception pool3 per image   {}   ({:.1} GMAC at 299×299; GEMM-equivalent {:.3} s; ratio {:.2})\n",
            fmt_timing(&self.inception_per_image),
            self.inception_macs_per_image as f64 / 1e9,
            equiv(self.inception_macs_per_image),
            self.inception_per_image.median / equiv(self.inception_macs_per_image)
        ));
        r.push_str(&format!("baseline: GEMM {:.1} GFLOP/s on this backend, measured in this run\n", self.gemm_gflops));
        r
    }
}
