//! `dipbench bench`: speed checks printed beside a baseline measured in the same run.
//!
//! `bench metrics`: LPIPS-VGG (one pair = two backbone passes) and the TF-FID Inception pool3
//! features per image, golden-fill weights, same GEMM-equivalent baseline.
//!
//! `bench unet`: the ADM UNet forward at batch n and a DPS step (forward + gradient w.r.t. the
//! input) with golden-fill weights (no download). Baseline: this machine's float32 matrix
//! multiply, measured in the same run on the same backend, turned into the time a perfect
//! implementation would need for the forward's multiply–accumulates (counted while it runs).
//! The ratio forward / GEMM-equivalent says how far the port is from the hardware, whatever the
//! machine. The reference PyTorch figures (measured once on a 2-thread CPU: 19.6 s forward,
//! 40.8 s per DPS step for FFHQ at batch 1) are printed for orientation only.

use std::time::Instant;

use anyhow::Result;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use dipbench_models::unet::{AdmUnet, Precision, UnetConfig};
use dipbench_models::unet::layers::{macs, reset_macs};
use dipbench_operators::SampleRng;

use crate::model_cmd::load_net;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// float32 GEMM rate of the backend, GFLOP/s (2·n³ flops per n×n product, median of `reps`).
pub fn gemm_gflops<B: Backend>(device: &B::Device, n: usize, reps: usize) -> f64 {
    let a = SampleRng::new(1, n).normal::<B>(n, device);
    let b = SampleRng::new(2, n).normal::<B>(n, device);
    let _ = a.clone().matmul(b.clone()).into_data();
    let times: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            let _ = a.clone().matmul(b.clone()).into_data();
            s.elapsed().as_secs_f64()
        })
        .collect();
    2.0 * (n as f64).powi(3) / median(times) / 1e9
}

/// Median forward and DPS-step (forward + input gradient) times of `net` on `x`, and the MACs
/// of one forward.
fn time_unet<B: AutodiffBackend>(net: &AdmUnet<B>, x: &Tensor<B, 4>, repeats: usize) -> (f64, f64, u64) {
    let mut forward = vec![];
    let mut step = vec![];
    let mut forward_macs = 0;
    for _ in 0..repeats.max(1) {
        reset_macs();
        let s = Instant::now();
        let _ = net.forward(x.clone(), &[500.0]).into_data();
        forward.push(s.elapsed().as_secs_f64());
        forward_macs = macs();
        let s = Instant::now();
        let xg = x.clone().detach().require_grad();
        let out = net.forward(xg.clone(), &[500.0]);
        let grads = out.powf_scalar(2.0).sum().backward();
        let _ = xg.grad(&grads).expect("input gradient").into_data();
        step.push(s.elapsed().as_secs_f64());
    }
    (median(forward), median(step), forward_macs)
}

/// Runs the UNet benchmark in `precision`; returns the report. The baselines measured in the
/// same run: the machine's GEMM speed, and for half precision the float32 network (speed-up
/// and the relative difference of the outputs).
pub fn bench_unet<B: AutodiffBackend>(config: &str, batch: usize, repeats: usize, precision: Precision, device: &B::Device) -> Result<String> {
    let config = UnetConfig::by_name(config)?;
    let t0 = Instant::now();
    let net = load_net::<B>(&config, None, device)?;
    let load_s = t0.elapsed().as_secs_f64();
    let d = config.in_channels * config.image_size * config.image_size;
    let x = SampleRng::new(3, batch).normal::<B>(d, device).reshape([batch, config.in_channels, config.image_size, config.image_size]);

    let gemm = gemm_gflops::<B>(device, 1024, 5);
    let (f32_fwd, f32_dps, forward_macs) = time_unet(&net, &x, repeats);
    let equiv = 2.0 * forward_macs as f64 / (gemm * 1e9);
    let mut r = String::new();
    r.push_str(&format!("UNet `{}` at batch {batch}, golden-fill weights (built in {load_s:.1} s), median of {} runs\n", config.name, repeats.max(1)));
    r.push_str(&format!("  forward                     {f32_fwd:9.3} s   ({:.1} GMAC, float32)\n", forward_macs as f64 / 1e9));
    r.push_str(&format!("  DPS step (fwd + ∂/∂x)       {f32_dps:9.3} s   (×{:.2} the forward)\n", f32_dps / f32_fwd));
    r.push_str(&format!("  baseline: GEMM {gemm:.1} GFLOP/s → forward's MACs in {equiv:.3} s\n"));
    r.push_str(&format!("  ratio forward / GEMM-equivalent: {:.2}\n", f32_fwd / equiv));
    if config.name == "ffhq256" && batch == 1 {
        r.push_str(&format!(
            "  reference PyTorch (another 2-thread CPU): 19.6 s forward, 40.8 s DPS step → ratios {:.2} / {:.2} (machine-dependent)\n",
            f32_fwd / 19.6,
            f32_dps / 40.8
        ));
    }
    if precision != Precision::F32 {
        let reference = net.forward(x.clone(), &[500.0]);
        let half = net.with_precision(precision);
        let (fwd, dps, _) = time_unet(&half, &x, repeats);
        let values = |t: Tensor<B, 4>| t.into_data().convert::<f32>().to_vec::<f32>().map_err(|e| anyhow::anyhow!("{e:?}"));
        let rel = crate::model_cmd::rel_err(&values(half.forward(x, &[500.0]))?, &values(reference)?);
        r.push_str(&format!("  {precision:?} mixed precision: forward {fwd:9.3} s, DPS step {dps:9.3} s → speed-up ×{:.2} / ×{:.2} over float32\n", f32_fwd / fwd, f32_dps / dps));
        r.push_str(&format!("  {precision:?} output vs float32: relative difference {rel:.2e} (issue 3 target ≤ 1e-2)\n"));
    }
    Ok(r)
}

/// Times `f` (median of `repeats` after one warm-up) and counts its MACs.
fn timed_with_macs(repeats: usize, mut f: impl FnMut()) -> (f64, u64) {
    f();
    let mut times = vec![];
    let mut counted = 0;
    for _ in 0..repeats.max(1) {
        reset_macs();
        let s = Instant::now();
        f();
        times.push(s.elapsed().as_secs_f64());
        counted = macs();
    }
    (median(times), counted)
}

/// Runs the metric-network benchmark on `batch` images of `size`×`size`; returns the report.
pub fn bench_metrics<B: Backend>(size: usize, batch: usize, repeats: usize, device: &B::Device) -> Result<String> {
    use dipbench_metrics::lpips::{backbone_manifest, heads_manifest};
    use dipbench_metrics::{Inception, InceptionVariant, Lpips, LpipsVariant};
    use dipbench_models::unet::GoldenFill;

    let lpips = Lpips::<B>::load(LpipsVariant::Vgg, &mut GoldenFill::new(backbone_manifest("vgg16")), &mut GoldenFill::new(heads_manifest(LpipsVariant::Vgg)), device)?;
    let inception = Inception::<B>::load(InceptionVariant::TfFid, &mut GoldenFill::new(Inception::<B>::manifest(InceptionVariant::TfFid)), device)?;
    let d = 3 * size * size;
    let image = |seed| SampleRng::new(seed, batch).normal::<B>(d, device).reshape([batch, 3, size, size]).mul_scalar(0.2).add_scalar(0.5).clamp(0.0, 1.0);
    let (x, y) = (image(4), image(5));
    let gemm = gemm_gflops::<B>(device, 1024, 5);
    let (t_lpips, m_lpips) = timed_with_macs(repeats, || {
        let _ = lpips.distance(x.clone(), y.clone()).into_data();
    });
    let (t_incep, m_incep) = timed_with_macs(repeats, || {
        let _ = inception.features(x.clone()).into_data();
    });
    let per = |t: f64| t / batch as f64;
    let equiv = |m: u64| 2.0 * m as f64 / (gemm * 1e9);
    let mut r = String::new();
    r.push_str(&format!("Metric networks on {batch} image(s) of {size}×{size}, golden-fill weights, median of {} runs\n", repeats.max(1)));
    r.push_str(&format!(
        "  LPIPS-VGG per pair          {:9.3} s   ({:.1} GMAC; GEMM-equivalent {:.3} s; ratio {:.2})\n",
        per(t_lpips),
        m_lpips as f64 / 1e9 / batch as f64,
        per(equiv(m_lpips)),
        t_lpips / equiv(m_lpips)
    ));
    r.push_str(&format!(
        "  Inception pool3 per image   {:9.3} s   ({:.1} GMAC at 299×299; GEMM-equivalent {:.3} s; ratio {:.2})\n",
        per(t_incep),
        m_incep as f64 / 1e9 / batch as f64,
        per(equiv(m_incep)),
        t_incep / equiv(m_incep)
    ));
    r.push_str(&format!("  baseline: GEMM {gemm:.1} GFLOP/s on this backend, measured in this run\n"));
    Ok(r)
}

/// `bench sampler`: seconds per image of DPS-1000 and DAPS-1K on a UNet config (golden-fill
/// weights) for SR ×4, extrapolated from `steps` timed steps of each: DPS = 1000 guided steps
/// (forward + input gradient); DAPS-1K = 200 levels × (5 ODE forwards + 100 Langevin steps on
/// the operator). Baseline in the same run: one plain forward, so each line also says how many
/// forwards' worth of time the method costs per image against its NFE.
pub fn bench_sampler<B: AutodiffBackend>(config: &str, steps: usize, device: &B::Device) -> Result<String>
where
    B::Device: Sync,
{
    use dipbench_models::unet::UnetPrior;
    use dipbench_operators::image::{ImageShape, Task, build};
    use dipbench_samplers::Problem;
    use dipbench_samplers::daps::{Daps, DapsConfig};
    use dipbench_samplers::dps::{Dps, DpsConfig, Likelihood};

    let config = UnetConfig::by_name(config)?;
    let side = config.image_size;
    let prior = UnetPrior::new(load_net::<B>(&config, None, device)?);
    let shape = ImageShape { c: 3, h: side, w: side };
    let op = build::<B>(&Task::Sr4, shape, &mut SampleRng::new(0, 1), device)?;
    let x_gt = SampleRng::new(1, 1).normal::<B>(shape.len(), device).clamp(-1.0, 1.0);
    let y = op.forward(x_gt);
    let problem = Problem::shared(&prior, op.as_ref(), y, 0.05, 1);
    let steps = steps.max(1);
    let timed = |f: &mut dyn FnMut()| {
        f(); // warm-up (kernel compilation on GPU backends, allocator)
        let s = Instant::now();
        for _ in 0..steps {
            f();
        }
        s.elapsed().as_secs_f64() / steps as f64
    };
    let sync = |t: Tensor<B, 2>| {
        let _ = t.into_data();
    };

    let x = SampleRng::new(2, 1).normal::<B>(shape.len(), device);
    let fwd = timed(&mut || sync(dipbench_models::Prior::eps(&prior, x.clone(), 500)));
    let dps = Dps(DpsConfig::image(0.3, Likelihood::Gaussian));
    let dps_step = timed(&mut || sync(dps.step(&problem, x.clone(), 500, Some(499), Some(x.clone())).x_next));
    let daps_cfg = DapsConfig::daps_1k();
    let grid = daps_cfg.ode_sigmas(10.0);
    let ode = timed(&mut || sync(Daps::ode_x0(&prior, x.clone(), &grid)));
    let one_langevin = Daps(DapsConfig { langevin_steps: 1, ..daps_cfg.clone() });
    let mut rng = SampleRng::new(4, 1);
    let langevin = timed(&mut || sync(one_langevin.langevin(&problem, &x, &x, 10.0, 1e-4, 0.01, &mut rng)));

    let dps_total = 1000.0 * dps_step;
    let levels = daps_cfg.annealing_steps as f64;
    let daps_total = levels * (ode + daps_cfg.langevin_steps as f64 * langevin);
    let mut r = String::new();
    r.push_str(&format!("Samplers on UNet `{}` (golden-fill weights), SR ×4, batch 1, {steps} timed steps each after a warm-up\n", config.name));
    r.push_str(&format!("  baseline: one forward                 {fwd:9.4} s\n"));
    r.push_str(&format!("  DPS step (forward + ∂/∂x_t)           {dps_step:9.4} s\n"));
    r.push_str(&format!("  DAPS x̂₀ (5 Euler ODE forwards)        {ode:9.4} s\n"));
    r.push_str(&format!("  DAPS Langevin step (operator only)    {langevin:9.5} s\n"));
    r.push_str(&format!("  DPS-1000:  NFE 1000, {dps_total:10.1} s/image = {:.2} × (NFE × forward)\n", dps_total / (1000.0 * fwd)));
    r.push_str(&format!(
        "  DAPS-1K:   NFE {}, {daps_total:10.1} s/image = {:.2} × (NFE × forward)\n",
        daps_cfg.annealing_steps * daps_cfg.ode_steps,
        daps_total / ((daps_cfg.annealing_steps * daps_cfg.ode_steps) as f64 * fwd)
    ));
    Ok(r)
}
