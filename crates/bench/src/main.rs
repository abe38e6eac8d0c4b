//! The `dipbench` command line. `dipbench --help` lists the commands.

use std::path::{Path, PathBuf};

/// burn allocates a fresh buffer for most tensor ops; mimalloc reuses freed pages where the system
/// allocator returns multi-megabyte buffers to the OS and page-faults them back in.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Tells mimalloc never to return freed memory to the OS. By default it purges freed pages after
/// 10 ms, so every large temporary of the next network pass was faulted back in and zeroed by
/// the kernel: 27 % of a DPS step's time went to `clear_page_erms` in a profile. Kept, the pages
/// are reused and the resident size stays at the peak of the working set. (`MIMALLOC_PURGE_DELAY`
/// in the environment is read before `main`; this overrides it.)
fn keep_freed_memory() {
    // `mi_option_purge_delay` in mimalloc.h's `mi_option_e` (v2 and v3 alike); the bindings leave
    // the options unnamed on purpose and take the numbers.
    const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: called once at the start of `main`, before any other thread exists.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use dipbench::backend::DeviceKind;
use dipbench::experiment::Experiment;
use dipbench::{runner, table, with_backend};

/// dipbench: diffusion posterior sampling benchmarks, reproducible.
#[derive(Parser, Debug)]
#[command(name = "dipbench", version, about)]
struct Cli {
    /// Worker threads (default: RAYON_NUM_THREADS, else all cores). Results do not depend on it.
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run an experiment (resumable: finished jobs are skipped), then write its tables.
    Run {
        /// The experiment file, e.g. experiments/gmm.toml.
        experiment: PathBuf,
        /// Results folder (default: results/<experiment name>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Compute backend.
        #[arg(long, value_enum, default_value = "cpu")]
        device: DeviceKind,
        /// Do not draw a progress bar.
        #[arg(long)]
        no_progress: bool,
        /// Jobs run at the same time (default: the number of threads). Results do not depend on it.
        #[arg(long)]
        jobs: Option<usize>,
        /// Run only shard I of N (`I/N`, 0-based): every N-th job of the fixed job order from the
        /// I-th. Shards share the results folder (or are merged with `dipbench merge`); the
        /// tables are written once every job is done.
        #[arg(long, value_parser = parse_shard)]
        shard: Option<(usize, usize)>,
        /// Image benchmark: read the images from this folder instead of `image.dataset`.
        #[arg(long)]
        dataset: Option<PathBuf>,
        /// Use the first N devices of the backend (several GPUs in one process: worker w runs
        /// its jobs on device w mod N; set --jobs to a multiple of N). Results do not depend on it.
        #[arg(long, default_value_t = 1)]
        devices: usize,
    },
    /// List the known checkpoints, or verify one (keys, shapes, then a pinned sha256).
    Weights {
        #[command(subcommand)]
        action: Option<WeightsAction>,
        /// Folder holding the checkpoints (default: $DIPBENCH_CHECKPOINTS, else checkpoints/).
        #[arg(long, global = true)]
        dir: Option<PathBuf>,
    },
    /// Run a network on a tensor file.
    Model {
        #[command(subcommand)]
        action: ModelAction,
    },
    /// Speed benchmarks, each printed beside a baseline measured in the same run.
    Bench {
        #[command(subcommand)]
        what: BenchWhat,
    },
    /// Apply a benchmark task's operator and noise to an image (PNG/JPEG, or safetensors `x`).
    Measure {
        /// Task: sr4, inpaint_box, inpaint_random, inpaint_random_92, deblur_gauss, deblur_motion, phase_retrieval, hdr, deblur_nonlinear.
        #[arg(long)]
        task: String,
        /// Which codebase's definition where DPS and DAPS differ.
        #[arg(long, default_value = "dps")]
        variant: String,
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
    },
    /// Metrics between two folders of images (per-image metrics pair files by name).
    Score {
        /// Images to score (e.g. reconstructions).
        a: PathBuf,
        /// Reference images.
        b: PathBuf,
        /// Comma-separated metrics: psnr, psnr-piq, ssim, ssim-piq, lpips-alex, lpips-vgg, lpips-vgg-piq, fid, fid-torchvision, kid.
        #[arg(long, conflicts_with = "protocol")]
        metrics: Option<String>,
        /// A protocol preset instead: dps or daps.
        #[arg(long)]
        protocol: Option<String>,
        /// Write the Inception features of both sets to this safetensors file.
        #[arg(long)]
        features: Option<PathBuf>,
        /// Write per-image values to this CSV.
        #[arg(long)]
        per_image: Option<PathBuf>,
    },
    /// Operator pictures.
    Operators {
        #[command(subcommand)]
        action: OperatorsAction,
    },
    /// Regression check: compare a results folder's table.csv with a baseline table; exits 1 with
    /// a readable diff when a value moved beyond tolerance or a row appeared or vanished.
    Check {
        /// Results folder (or its table.csv).
        results: PathBuf,
        /// Baseline results folder or table.csv.
        #[arg(long)]
        against: PathBuf,
        /// Absolute tolerance.
        #[arg(long, default_value_t = 0.0)]
        tol: f64,
        /// Relative tolerance (times |baseline|).
        #[arg(long, default_value_t = 0.0)]
        rel: f64,
    },
    /// Join the results folders of shards run apart into one (identical jobs are checked).
    Merge {
        /// Results folders to join.
        #[arg(required = true)]
        sources: Vec<PathBuf>,
        /// The merged folder.
        #[arg(long)]
        out: PathBuf,
    },
    /// Write an sbatch job-array script running an experiment in N shards.
    Slurm {
        /// The experiment file.
        experiment: PathBuf,
        /// Number of shards (array tasks).
        #[arg(long)]
        shards: usize,
        /// Results folder (default: results/<experiment name>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Backend of each task.
        #[arg(long, default_value = "cuda")]
        device: String,
        /// GPUs per task.
        #[arg(long, default_value_t = 1)]
        gpus: usize,
        /// Wall-time limit per task.
        #[arg(long, default_value = "24:00:00")]
        time: String,
        /// Slurm partition.
        #[arg(long)]
        partition: Option<String>,
        /// Write the script here instead of printing it.
        #[arg(long)]
        script: Option<PathBuf>,
    },
    /// Image grids of an image experiment's results: per task, GT | y | each method, first images.
    Grid {
        /// The experiment file.
        experiment: PathBuf,
        /// Results folder (default: results/<experiment name>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Rows (images) per grid.
        #[arg(long, default_value_t = 4)]
        images: usize,
        /// Dataset folder for the ground truth (default: the experiment's).
        #[arg(long)]
        dataset: Option<PathBuf>,
    },
    /// Rebuild the tables of an experiment from its finished job files.
    Table {
        /// The experiment file.
        experiment: PathBuf,
        /// Results folder (default: results/<experiment name>).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum WeightsAction {
    /// Verify a checkpoint: every key and shape of its config, then its sha256 (pinned beside the
    /// file on the first successful verification, checked afterwards).
    Verify {
        /// Known checkpoint name (see `dipbench weights`).
        name: String,
        /// The file (default: looked up in the checkpoint folder).
        #[arg(long)]
        path: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum ModelAction {
    /// Check the UNet port on this backend against guided-diffusion's reference outputs (the
    /// golden fixtures): the tiny UNet and the FFHQ (and, with --imagenet, ImageNet) config with
    /// golden-fill weights, to 1e-4 relative in f32 and 1e-2 in f16/bf16. Exit 1 on a failure.
    Verify {
        /// Folder of the golden fixtures (unet_tiny.pt, unet_tiny_io.safetensors,
        /// unet_ffhq_goldenfill_io.safetensors).
        #[arg(long, env = "DIPBENCH_GOLDEN")]
        golden: PathBuf,
        /// Also the ImageNet-256 config (553 M parameters).
        #[arg(long)]
        imagenet: bool,
        /// Compute backend.
        #[arg(long, value_enum, default_value = "cpu")]
        device: DeviceKind,
        /// Network precision: f32, or mixed precision with f16/bf16 convolutions.
        #[arg(long, value_enum, default_value = "f32")]
        precision: dipbench::backend::Precision,
    },
    /// Evaluate a UNet on `x` of a safetensors file: raw output at --t, or D(x; σ) at --sigma.
    Eval {
        /// Network config: ffhq256, imagenet256, tiny32.
        #[arg(long)]
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
        /// Compute backend.
        #[arg(long, value_enum, default_value = "cpu")]
        device: DeviceKind,
        /// Network precision: f32, or mixed precision with f16/bf16 convolutions.
        #[arg(long, value_enum, default_value = "f32")]
        precision: dipbench::backend::Precision,
    },
}

#[derive(Subcommand, Debug)]
enum OperatorsAction {
    /// Write one PNG per task: x | A(x) | Aᵀ(A(x)), noise-free.
    Grid {
        /// Input image (256×256 RGB).
        #[arg(long)]
        input: PathBuf,
        /// Output folder.
        #[arg(long, default_value = "results/operators")]
        out: PathBuf,
        /// Motion-blur kernel file (adds the deblur_motion panel).
        #[arg(long)]
        kernel: Option<PathBuf>,
        /// Seed for masks.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

#[derive(Subcommand, Debug)]
enum BenchWhat {
    /// ADM UNet forward and DPS step (golden-fill weights) beside this machine's GEMM rate and,
    /// with --torch, the official PyTorch network timed in the same run.
    Unet {
        #[command(flatten)]
        speed: SpeedArgs,
    },
    /// Seconds per image of DPS-1000 and DAPS-1K (SR ×4, golden-fill weights), extrapolated from
    /// timed steps, beside one forward measured in the same run (and PyTorch with --torch).
    Sampler {
        #[command(flatten)]
        speed: SpeedArgs,
    },
    /// LPIPS-VGG per pair and Inception (FID) features per image vs this machine's GEMM speed.
    Metrics {
        /// Image side (pixels).
        #[arg(long, default_value_t = 256)]
        size: usize,
        /// Images per batch.
        #[arg(long, default_value_t = 4)]
        batch: usize,
        /// Untimed runs first.
        #[arg(long, default_value_t = 1)]
        warmup: usize,
        /// Timed runs (min and median reported).
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        /// Compute backend.
        #[arg(long, value_enum, default_value = "cpu")]
        device: DeviceKind,
        /// Also write the report as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

/// The flags of `bench unet` and `bench sampler`.
#[derive(clap::Args, Debug)]
struct SpeedArgs {
    /// Network config: ffhq256, imagenet256, tiny32.
    #[arg(long, default_value = "ffhq256")]
    config: String,
    /// Images per call.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Untimed runs before the timed ones (first-use costs: page faults, GPU kernel compilation
    /// and autotuning).
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Timed runs (min and median reported).
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Compute backend.
    #[arg(long, value_enum, default_value = "cpu")]
    device: DeviceKind,
    /// Network precision: f32, or mixed precision with f16/bf16 convolutions.
    #[arg(long, value_enum, default_value = "f32")]
    precision: dipbench::backend::Precision,
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
    fn options(&self) -> Result<dipbench::speed::SpeedOptions> {
        let torch = match (&self.torch, &self.guided_diffusion) {
            (Some(python), Some(gd)) => Some(dipbench::speed::TorchReference { python: python.clone(), guided_diffusion: gd.clone() }),
            (Some(_), None) => anyhow::bail!("--torch needs --guided-diffusion DIR (a checkout of https://github.com/openai/guided-diffusion) or $DIPBENCH_GUIDED_DIFFUSION"),
            (None, _) => None,
        };
        Ok(dipbench::speed::SpeedOptions {
            config: self.config.clone(),
            batch: self.batch,
            warmup: self.warmup,
            repeats: self.repeats,
            precision: self.precision.into(),
            backend: format!("{:?}", self.device).to_lowercase(),
            torch,
        })
    }
}

/// Parses `I/N` with I < N.
fn parse_shard(s: &str) -> Result<(usize, usize), String> {
    let (i, n) = s.split_once('/').ok_or_else(|| format!("`{s}`: expected I/N, e.g. 0/4"))?;
    let (i, n): (usize, usize) = (i.trim().parse().map_err(|_| format!("`{s}`: I is not a number"))?, n.trim().parse().map_err(|_| format!("`{s}`: N is not a number"))?);
    if n == 0 || i >= n {
        return Err(format!("`{s}`: need 0 ≤ I < N"));
    }
    Ok((i, n))
}

/// Collects the rows of a finished experiment and writes its tables; returns the Markdown.
fn write_tables(exp: &dipbench::experiment::LoadedExperiment, out: &Path) -> Result<String> {
    match exp.experiment.experiment.benchmark.as_str() {
        "image" => {
            let rows = dipbench::image_bench::collect_rows(exp, out)?;
            dipbench::image_table::write_all(exp, &rows, out)
        }
        _ => {
            let rows = runner::collect_rows(exp, out)?;
            table::write_all(exp, &rows, out)
        }
    }
}

fn default_out(name: &str, out: Option<PathBuf>) -> PathBuf {
    out.unwrap_or_else(|| Path::new("results").join(name))
}

fn main() -> Result<()> {
    keep_freed_memory();
    #[cfg(any(feature = "cuda", feature = "wgpu"))]
    dipbench::backend::configure_gpu_caches();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if let Some(n) = cli.threads {
        rayon::ThreadPoolBuilder::new().num_threads(n).build_global().context("cannot set up the thread pool")?;
    }
    match cli.command {
        Command::Run { experiment, out, device, no_progress, jobs, shard, dataset, devices } => {
            let exp = Experiment::load(&experiment)?;
            let out = default_out(&exp.experiment.experiment.name, out);
            let opts = runner::RunOptions { progress: !no_progress, jobs, shard, dataset };
            let summary = with_backend!(device, |B, dev| {
                let devs = dipbench::backend::devices::<B>(&dev, devices)?;
                let opts = runner::RunOptions { jobs: opts.jobs.or((devs.len() > 1).then_some(devs.len())), ..opts.clone() };
                runner::run::<B>(&exp, &out, &devs, &opts)
            })?;
            if let Some((i, n)) = shard {
                eprintln!(
                    "shard {i}/{n}: {} jobs ({} run now, {} already done) in {:.1} s; run `dipbench table {}` once every shard is done",
                    summary.total,
                    summary.ran,
                    summary.skipped,
                    summary.seconds,
                    experiment.display()
                );
                return Ok(());
            }
            let md = write_tables(&exp, &out)?;
            println!("{md}");
            eprintln!(
                "{} jobs ({} run now, {} already done) in {:.1} s; tables in {}",
                summary.total,
                summary.ran,
                summary.skipped,
                summary.seconds,
                out.display()
            );
        }
        Command::Weights { action, dir } => {
            let dir = dipbench::weights::checkpoint_dir(dir.as_deref());
            match action {
                None => print!("{}", dipbench::weights::listing(&dir)),
                Some(WeightsAction::Verify { name, path }) => {
                    let w = dipbench::weights::known(&name)?;
                    let path = match path {
                        Some(p) => p,
                        None => dipbench::weights::locate(w, &dir)?,
                    };
                    match dipbench::weights::verify(&path, w.config)? {
                        dipbench::weights::Verified::Pinned(h) => println!("{}: keys and shapes of `{}` match; sha256 {h} matches its pin", path.display(), w.config),
                        dipbench::weights::Verified::NewlyPinned(h) => println!("{}: keys and shapes of `{}` match; sha256 {h} pinned in {}", path.display(), w.config, dipbench::weights::sidecar(&path).display()),
                    }
                }
            }
        }
        Command::Model { action: ModelAction::Verify { golden, imagenet, device, precision } } => {
            let f32_tol = if device == DeviceKind::Cpu { dipbench::model_cmd::CPU_F32_TOLERANCE } else { dipbench::model_cmd::GPU_F32_TOLERANCE };
            let checks = dipbench::with_backend!(device, |B, dev| dipbench::model_cmd::verify::<B>(&golden, precision.into(), imagenet, f32_tol, &dev))?;
            for c in &checks {
                let verdict = match c.tol {
                    Some(t) => format!("(tolerance {t:.0e})  {}", if c.ok() { "ok" } else { "FAILED" }),
                    None => "(reported)".to_string(),
                };
                println!("{:<34} {} {:.3e}  {verdict}", c.name, c.measure, c.value);
            }
            let failed = checks.iter().filter(|c| !c.ok()).count();
            if failed > 0 {
                anyhow::bail!("{failed} of {} checks above tolerance on {device:?} ({precision:?})", checks.len());
            }
        }
        Command::Model { action: ModelAction::Eval { config, checkpoint, golden_fill, input, output, t, sigma, device, precision } } => {
            if checkpoint.is_none() && !golden_fill {
                anyhow::bail!("give --checkpoint FILE (see `dipbench weights`) or --golden-fill");
            }
            let req = dipbench::model_cmd::EvalRequest { config, checkpoint, input, output, t, sigma, precision: precision.into() };
            let msg = dipbench::with_backend!(device, |B, dev| dipbench::model_cmd::eval::<B>(&req, &dev))?;
            println!("{msg}");
        }
        Command::Bench { what: BenchWhat::Unet { speed } } => {
            let opts = speed.options()?;
            let report = with_backend!(speed.device, |B, dev| dipbench::speed::bench_unet::<B>(&opts, &dev))?;
            print!("{}", report.render());
            if let Some(path) = &speed.json {
                dipbench::speed::write_json(path, &report)?;
            }
        }
        Command::Bench { what: BenchWhat::Sampler { speed } } => {
            let opts = speed.options()?;
            let report = with_backend!(speed.device, |B, dev| dipbench::speed::bench_sampler::<B>(&opts, &dev))?;
            print!("{}", report.render());
            if let Some(path) = &speed.json {
                dipbench::speed::write_json(path, &report)?;
            }
        }
        Command::Bench { what: BenchWhat::Metrics { size, batch, warmup, repeats, device, json } } => {
            let report = with_backend!(device, |B, dev| dipbench::speed::bench_metrics::<B>(size, batch, warmup, repeats, &dev))?;
            print!("{}", report.render());
            if let Some(path) = &json {
                dipbench::speed::write_json(path, &report)?;
            }
        }
        Command::Measure { task, variant, seed, sigma_y, poisson, kernel, checkpoint, input, output, png } => {
            let noise = match poisson {
                Some(rate) => dipbench::measure_cmd::Noise::Poisson(rate),
                None => dipbench::measure_cmd::Noise::Gaussian(sigma_y),
            };
            let req = dipbench::measure_cmd::MeasureRequest { task, variant, seed, noise, kernel, checkpoint, input, output, png };
            let dev = Default::default();
            println!("{}", dipbench::measure_cmd::run_measure::<burn::backend::Flex>(&req, &dev)?);
        }
        Command::Score { a, b, metrics, protocol, features, per_image } => {
            let list = match (metrics, protocol) {
                (Some(m), _) => m.split(',').map(|s| dipbench::score_cmd::Metric::parse(s.trim())).collect::<Result<Vec<_>>>()?,
                (None, Some(p)) => dipbench::score_cmd::Metric::preset(&p)?,
                (None, None) => anyhow::bail!("give --metrics psnr,ssim,… or --protocol dps|daps"),
            };
            let dev = Default::default();
            let report = dipbench::score_cmd::score::<burn::backend::Flex>(&a, &b, &list, features.as_deref(), &dev)?;
            for (m, v) in &report.summary {
                // Shortest round-trip form: every digit of the f64 (scripts parse it).
                println!("{m}: {v}");
            }
            if let Some(path) = per_image {
                let mut w = csv::Writer::from_path(&path).with_context(|| format!("cannot write {}", path.display()))?;
                w.write_record(["metric", "image", "value"])?;
                for (m, rows) in &report.per_image {
                    for (name, v) in rows {
                        w.write_record([m.as_str(), name.as_str(), &v.to_string()])?;
                    }
                }
                w.flush()?;
            }
        }
        Command::Operators { action: OperatorsAction::Grid { input, out, kernel, seed } } => {
            let dev = Default::default();
            for p in dipbench::measure_cmd::grid::<burn::backend::Flex>(&input, &out, kernel.as_deref(), seed, &dev)? {
                println!("wrote {}", p.display());
            }
        }
        Command::Check { results, against, tol, rel } => {
            let report = dipbench::check_cmd::check(&results, &against, dipbench::check_cmd::Tolerance { abs: tol, rel })?;
            println!("{}", report.render(&results, &against));
            if !report.differences.is_empty() {
                std::process::exit(1);
            }
        }
        Command::Merge { sources, out } => {
            let n = dipbench::sweep_cmd::merge(&sources, &out)?;
            println!("merged {} folders into {} ({n} files copied); run `dipbench table EXPERIMENT --out {}` for the tables", sources.len(), out.display(), out.display());
        }
        Command::Slurm { experiment, shards, out, device, gpus, time, partition, script } => {
            let exp = Experiment::load(&experiment)?;
            let out = default_out(&exp.experiment.experiment.name, out);
            // sbatch does not create the folder of --output; a missing one loses the logs.
            std::fs::create_dir_all(out.join("slurm")).with_context(|| format!("cannot create {}", out.join("slurm").display()))?;
            let text = dipbench::sweep_cmd::slurm_script(&dipbench::sweep_cmd::SlurmRequest { experiment, out, shards, device, gpus, time, partition })?;
            match script {
                Some(p) => {
                    std::fs::write(&p, text).with_context(|| format!("cannot write {}", p.display()))?;
                    println!("wrote {}; submit it with `sbatch {}`", p.display(), p.display());
                }
                None => print!("{text}"),
            }
        }
        Command::Grid { experiment, out, images, dataset } => {
            let exp = Experiment::load(&experiment)?;
            let out = default_out(&exp.experiment.experiment.name, out);
            for p in dipbench::grid_cmd::grids(&exp, &out, images, dataset.as_deref())? {
                println!("wrote {}", p.display());
            }
        }
        Command::Table { experiment, out } => {
            let exp = Experiment::load(&experiment)?;
            let out = default_out(&exp.experiment.experiment.name, out);
            println!("{}", write_tables(&exp, &out)?);
        }
    }
    Ok(())
}
