//! Every sampler is a deterministic function of its seed, and a sample does not depend on the
//! batch it is drawn in (each row has its own random stream): docs/design.md "Randomness".

use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use dipbench_models::{ExactPosterior, GaussianMixture, GaussianMixturePrior, Prior, TapeFree, VpSchedule};
use dipbench_operators::{DenseOperator, LinearOperator, Operator, SampleRng, SvdView};
use dipbench_samplers::{Problem, SAMPLER_KINDS, SamplerConfig};
use nalgebra::{DMatrix, DVector};

type B = Autodiff<Flex>;

/// The samplers that run on the Gaussian-mixture benchmark (those with a `gmm` preset; the
/// phase-retrieval and TV baselines need image structure and are checked on images), and the
/// variants the benchmark runs besides the presets.
fn gmm_kinds() -> Vec<&'static str> {
    let mut kinds: Vec<&str> = SAMPLER_KINDS.iter().copied().filter(|k| SamplerConfig::preset(k, "gmm").is_ok()).collect();
    kinds.extend(["ddsmc-draw", "daps-closed-form"]);
    kinds
}

/// The `gmm` preset of `kind`, with particle clouds of 2 rows for the particle methods (a split
/// at an even row keeps every cloud whole); `ddsmc-draw` is DDSMC with 3 particles inside each
/// row (`output = "draw"`); `daps-closed-form` is DAPS with its Langevin chain drawn in closed
/// form (`x0y = "langevin-closed-form"`, as `experiments/gmm.toml` runs it).
fn gmm_config(kind: &str) -> SamplerConfig {
    let (sampler, overrides) = match kind {
        "mcgdiff" | "ddsmc" => (kind, "particles = 2"),
        "ddsmc-draw" => ("ddsmc", "particles = 3\noutput = \"draw\""),
        "daps-closed-form" => ("daps", "x0y = \"langevin-closed-form\""),
        other => (other, ""),
    };
    SamplerConfig::preset(sampler, "gmm").unwrap().with_overrides(&toml::from_str(overrides).unwrap()).unwrap()
}

fn run(kind: &str, rows: std::ops::Range<usize>, seed: u64) -> Vec<f32> {
    run_with(kind, rows, seed, false)
}

/// `run`, with the prior on the inner backend behind [`TapeFree`] when `tape_free`.
fn run_with(kind: &str, rows: std::ops::Range<usize>, seed: u64, tape_free: bool) -> Vec<f32> {
    run_config(gmm_config(kind), rows, seed, tape_free, false)
}

/// A dense operator that does not show its matrix (`dense_matrix` is `None`), so that samplers
/// take their matrix-product paths.
struct Opaque(DenseOperator<B>);

impl Operator<B> for Opaque {
    fn name(&self) -> String {
        self.0.name()
    }
    fn input_dim(&self) -> usize {
        self.0.input_dim()
    }
    fn output_dim(&self) -> usize {
        self.0.output_dim()
    }
    fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.0.forward(x)
    }
    fn as_linear(&self) -> Option<&dyn LinearOperator<B>> {
        Some(self)
    }
}

impl LinearOperator<B> for Opaque {
    fn adjoint(&self, y: Tensor<B, 2>) -> Tensor<B, 2> {
        self.0.adjoint(y)
    }
    fn spectral_norm(&self) -> f64 {
        self.0.spectral_norm()
    }
    fn svd(&self) -> Option<&dyn SvdView<B>> {
        self.0.svd()
    }
}

/// The sampler of `cfg` on the d = 8 mixture with a 2 × 8 dense operator (behind [`Opaque`] when
/// `opaque`), at 20 steps.
fn run_config(mut cfg: SamplerConfig, rows: std::ops::Range<usize>, seed: u64, tape_free: bool, opaque: bool) -> Vec<f32> {
    let d = 8;
    let weights: Vec<f64> = (0..25).map(|k| 1.0 + (k % 4) as f64).collect();
    let g = GaussianMixture::mcgdiff(d, weights).unwrap();
    let a = DMatrix::from_fn(2, d, |i, j| ((i * 5 + j * 3) % 7) as f64 / 7.0 - 0.4);
    let y = DVector::from_vec(vec![3.0, -2.0]);
    let post = ExactPosterior::new(&g, &a, 0.3, &y).unwrap();
    let dev = Default::default();
    let taped = GaussianMixturePrior::<B>::new(g.clone(), VpSchedule::mcgdiff_gmm(), &dev);
    let inner = TapeFree::new(GaussianMixturePrior::<Flex>::new(g, VpSchedule::mcgdiff_gmm(), &dev));
    let prior: &dyn Prior<B> = if tape_free { &inner } else { &taped };
    let dense = DenseOperator::<B>::new("A", a, &dev).unwrap();
    let hidden = Opaque(dense.clone());
    let op: &dyn Operator<B> = if opaque { &hidden } else { &dense };
    let yt = Tensor::<B, 1>::from_floats([3.0f32, -2.0], &dev).reshape([1, 2]);
    let problem = Problem::shared(prior, op, yt, 0.3, rows.len());
    cfg.set_budget(20, 0.6);
    let sampler = cfg.build::<B>(Some(&post)).unwrap();
    let out = sampler.sample(&problem, &mut SampleRng::rows(seed, rows)).unwrap();
    out.into_data().convert::<f32>().to_vec::<f32>().unwrap()
}

/// DAPS's Langevin steps with the dense operator make the data gradient inside the update
/// (`combine_least_squares`); behind [`Opaque`] they take the matrix-product path. The two
/// differ only by float32 rounding (the residual sums run in another order), carried through 20
/// levels of 20 steps from the same noise: within 1e-4 of the samples' scale.
#[test]
fn daps_fused_least_squares_step_is_the_matrix_product_step() {
    let with = |opaque: bool| run_config(gmm_config("daps"), 0..6, 11, false, opaque);
    let (fused, products) = (with(false), with(true));
    let scale = products.iter().fold(1f32, |m, v| m.max(v.abs()));
    let worst = fused.iter().zip(&products).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(worst <= 1e-4 * scale, "fused vs matrix products: {worst} (scale {scale})");
    assert!(fused.iter().all(|v| v.is_finite()));
}

#[test]
fn same_seed_same_samples_and_another_seed_differs() {
    let kinds = gmm_kinds();
    assert!(kinds.len() >= 10, "{kinds:?}");
    for kind in kinds {
        let a = run(kind, 0..5, 42);
        assert_eq!(a, run(kind, 0..5, 42), "{kind}: not deterministic");
        if gmm_config(kind).is_stochastic() {
            assert_ne!(a, run(kind, 0..5, 43), "{kind}: ignores its seed");
        }
    }
}

#[test]
fn samples_do_not_depend_on_the_batch_split() {
    for kind in gmm_kinds() {
        let whole = run(kind, 0..6, 7);
        let mut split = run(kind, 0..2, 7);
        split.extend(run(kind, 2..6, 7));
        // Rows are computed independently (MCGdiff, DDSMC: clouds of 2 rows, never split here) and the
        // CPU kernels reduce each row in the same order whatever the batch, so the samples are
        // bitwise identical.
        assert_eq!(whole, split, "{kind}: batch of 6 vs 2 + 4 differs");
    }
}

#[test]
fn chunked_sampling_equals_one_batch() {
    let d = 8;
    let g = GaussianMixture::mcgdiff(d, vec![1.0; 25]).unwrap();
    let a = DMatrix::from_fn(1, d, |_, j| (j as f64 - 3.5) / 8.0);
    let dev = Default::default();
    let prior = GaussianMixturePrior::<B>::new(g, VpSchedule::mcgdiff_gmm(), &dev);
    let op = DenseOperator::<B>::new("A", a, &dev).unwrap();
    let y = Tensor::<B, 2>::from_floats([[1.5f32]], &dev);
    let problem = Problem::shared(&prior, &op, y, 0.2, 7);
    let mut cfg = SamplerConfig::preset("dps", "gmm").unwrap();
    cfg.set_budget(20, 0.6);
    let s = cfg.build::<B>(None).unwrap();
    let whole = s.sample(&problem, &mut SampleRng::new(5, 7)).unwrap().into_data();
    for chunk in [1, 3, 7, 100] {
        let chunked = dipbench_samplers::sample_in_chunks(s.as_ref(), &problem, 5, chunk).unwrap().into_data();
        assert_eq!(whole, chunked, "chunks of {chunk}");
    }
    // A particle sampler's chunks are whole clouds (3 rows: chunks of 1 and 2 become 3, of 4
    // become 6), so chunking changes nothing there either.
    let mut cfg = SamplerConfig::preset("mcgdiff", "gmm").unwrap().with_overrides(&toml::from_str("particles = 3").unwrap()).unwrap();
    cfg.set_budget(20, 0.6);
    let s = cfg.build::<B>(None).unwrap();
    let whole = s.sample(&problem, &mut SampleRng::new(5, 7)).unwrap().into_data();
    for chunk in [1, 2, 4, 100] {
        let chunked = dipbench_samplers::sample_in_chunks(s.as_ref(), &problem, 5, chunk).unwrap().into_data();
        assert_eq!(whole, chunked, "MCGdiff, chunks of {chunk}");
    }
}

#[test]
fn chunked_gradient_samplers_finish_on_a_busy_thread_pool() {
    // Two jobs at once, each sampling in chunks that are tasks of one 2-thread pool, at the GMM
    // benchmark's shapes: the samples equal those of the same chunks on one thread. A watchdog
    // turns a hang into a failure: the mixture kernel's backward step once ran a parallel loop
    // under burn's graph lock, which let a pool thread take up another chunk whose backward
    // then waited on that lock. That deadlock is timing-dependent (it hung one benchmark run in
    // several); this test exercises the path but does not reproduce it reliably.
    let pool = std::sync::Arc::new(rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap());
    let single = std::sync::Arc::new(rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    let mut workers = vec![];
    for job in 0..2u64 {
        let (tx, pool, single) = (tx.clone(), pool.clone(), single.clone());
        workers.push(std::thread::spawn(move || {
            // The benchmark's shapes at d = 800: chunks of 163 rows, which the kernels split in pieces.
            let d = 800;
            let g = GaussianMixture::mcgdiff(d, vec![1.0; 25]).unwrap();
            let a = DMatrix::from_fn(2, d, |i, j| ((i * 3 + j) % 5) as f64 / 5.0 - 0.4);
            let dev = Default::default();
            let prior = GaussianMixturePrior::<B>::new(g, VpSchedule::mcgdiff_gmm(), &dev);
            let op = DenseOperator::<B>::new("A", a, &dev).unwrap();
            let y = Tensor::<B, 2>::from_floats([[1.5f32, -0.5]], &dev);
            let problem = Problem::shared(&prior, &op, y, 0.2, 2000);
            for kind in ["dps", "pigdm", "mcg", "reddiff"] {
                let mut cfg = SamplerConfig::preset(kind, "gmm").unwrap();
                cfg.set_budget(20, 0.6);
                let s = cfg.build::<B>(None).unwrap();
                let run = |pool: &rayon::ThreadPool| pool.install(|| dipbench_samplers::sample_in_chunks(s.as_ref(), &problem, job, 163).unwrap().into_data());
                assert_eq!(run(&pool), run(&single), "{kind}: 13 chunks on 2 threads vs on 1");
            }
            tx.send(()).unwrap();
        }));
    }
    // Only the workers hold senders now: a worker that panics disconnects instead of timing out.
    drop(tx);
    for _ in 0..2 {
        match rx.recv_timeout(std::time::Duration::from_secs(300)) {
            Ok(()) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("chunked sampling did not finish within 300 s (a deadlock?)"),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    for worker in workers {
        if let Err(panic) = worker.join() {
            std::panic::resume_unwind(panic);
        }
    }
}

/// Every image sampler on the tiny UNet config (golden-fill weights, no file needed), SR ×4 on
/// 32×32 (phase retrieval for ER/HIO/OSS), a few steps each: (preset, overrides).
const IMAGE_SAMPLERS: &[(&str, &str, &str, &str)] = &[
    ("dps", "dps-repo", "steps = 4", "sr4"),
    ("mcg", "mcg-code", "steps = 4", "sr4"),
    ("mcg", "projection", "steps = 4", "sr4"),
    ("ddrm", "paper", "steps = 4", "sr4"),
    ("ddnm", "paper", "steps = 4", "sr4"),
    ("pigdm", "paper", "steps = 4", "sr4"),
    ("diffpir", "paper", "steps = 4", "sr4"),
    ("reddiff", "paper", "steps = 4", "sr4"),
    ("daps", "daps-1k", "annealing_steps = 3\node_steps = 1\nlangevin_steps = 2", "sr4"),
    ("daps", "latent-daps", "annealing_steps = 3\nlangevin_steps = 2", "sr4"),
    ("pnp-admm", "default", "iterations = 3", "sr4"),
    ("admm-tv", "default", "iterations = 5", "sr4"),
    ("fps-smc", "repo", "particles = 3\nsteps = 4", "sr4"),
    ("fps-smc", "repo", "particles = 3\nsteps = 4", "inpaint_random"),
    ("dcdp", "repo", "rounds = 2\ncsgm_steps = 3\nddim_steps = 2", "sr4"),
    ("er", "default", "iterations = 10", "phase_retrieval"),
    ("hio", "default", "iterations = 10", "phase_retrieval"),
    ("oss", "default", "iterations = 10", "phase_retrieval"),
];

fn run_image(kind: &str, preset: &str, overrides: &str, task: &str, rows: std::ops::Range<usize>, seed: u64) -> Vec<f32> {
    run_image_with(kind, preset, overrides, task, rows, seed, false)
}

/// `run_image`, with the network on the inner backend behind [`TapeFree`] when `tape_free`.
fn run_image_with(kind: &str, preset: &str, overrides: &str, task: &str, rows: std::ops::Range<usize>, seed: u64, tape_free: bool) -> Vec<f32> {
    use dipbench_models::unet::{AdmUnet, UnetConfig, UnetPrior};
    use dipbench_nn::source::GoldenFill;
    use dipbench_operators::image::{ImageShape, Task, build};
    use dipbench_samplers::PresetContext;
    let dev = Default::default();
    let config = UnetConfig::tiny32();
    let net = AdmUnet::<B>::load(&config, &mut GoldenFill::new(AdmUnet::<B>::manifest(&config)), &dev).unwrap();
    let inner = TapeFree::new(UnetPrior::new(net.clone().inner()));
    let taped = UnetPrior::new(net);
    let prior: &dyn Prior<B> = if tape_free { &inner } else { &taped };
    let shape = ImageShape { c: 3, h: 32, w: 32 };
    let op = build::<B>(&Task::by_name(task, "dps").unwrap(), shape, &mut SampleRng::new(0, 1), &dev).unwrap();
    let x = SampleRng::new(9, 1).normal::<B>(shape.len(), &dev).mul_scalar(0.5).clamp(-1.0, 1.0);
    let y = op.forward(x);
    let problem = Problem::shared(prior, op.as_ref(), y, 0.05, rows.len());
    let ctx = PresetContext { task, dataset: "ffhq", noise: "gaussian" };
    let cfg = SamplerConfig::preset_in(kind, preset, Some(&ctx)).unwrap().with_overrides(&toml::from_str(overrides).unwrap()).unwrap();
    let sampler = cfg.build::<B>(None).unwrap();
    let out = sampler.sample(&problem, &mut SampleRng::rows(seed, rows)).unwrap();
    out.into_data().convert::<f32>().to_vec::<f32>().unwrap()
}

#[test]
fn image_samplers_are_seeded_and_batch_invariant() {
    for &(kind, preset, overrides, task) in IMAGE_SAMPLERS {
        let whole = run_image(kind, preset, overrides, task, 0..3, 7);
        assert!(whole.iter().all(|v| v.is_finite()), "{kind}/{preset}: non-finite output");
        assert_eq!(whole, run_image(kind, preset, overrides, task, 0..3, 7), "{kind}/{preset}: not deterministic");
        let mut split = run_image(kind, preset, overrides, task, 0..1, 7);
        split.extend(run_image(kind, preset, overrides, task, 1..3, 7));
        // The convolutions of a batch of 1 and of 3 block their sums differently, so the UNet's
        // outputs differ in the last float32 bits, and guided steps amplify that: measured
        // 0 (classical solvers) to 1e-4 (MCG) relative after 4 steps. A real coupling of the
        // rows (the reference DPS's norm over the whole batch) moves samples at the 1e-1 level,
        // so 5e-4 separates the two.
        let diff = whole.iter().zip(&split).map(|(a, b)| f64::from(a - b).powi(2)).sum::<f64>().sqrt();
        let norm = whole.iter().map(|a| f64::from(*a).powi(2)).sum::<f64>().sqrt();
        println!("{kind}/{preset}: batch 3 vs 1 + 2: relative difference {:.2e}", diff / norm);
        assert!(diff <= 5e-4 * norm, "{kind}/{preset}: batch 3 vs 1 + 2 differ by {:.3e} (relative)", diff / norm);
        let cfg = SamplerConfig::preset(kind, preset).or_else(|_| SamplerConfig::preset(kind, "gmm"));
        if cfg.map(|c| c.is_stochastic()).unwrap_or(true) {
            assert_ne!(whole, run_image(kind, preset, overrides, task, 0..3, 8), "{kind}/{preset}: ignores its seed");
        }
    }
}

/// Samplers that take no gradient through the prior get it on the inner backend (no autodiff
/// tape; `Sampler::differentiates_prior`): the samples are the taped ones. Not always bit for
/// bit: the autodiff backend composes a few element-wise functions (the mixture's soft-max
/// weights) from primitives where the CPU backend has one kernel, which moves the last float32
/// bit (measured ≤ 2e-7 relative on the mixture; on the UNet up to 2.5e-5 (DDNM, whose
/// per-coordinate λ_i amplifies last bits) and 1.3e-5 (FPS-SMC, whose proposal mean multiplies them by
/// κ = 1/ex_t ~ 10⁵ before shrinking them again)); a prior evaluated wrongly would move the samples
/// at the 1e-1 level, so 1e-4 separates the two.
#[test]
fn tape_free_prior_gives_the_taped_samples() {
    let close = |a: Vec<f32>, b: Vec<f32>, what: String| {
        let diff = a.iter().zip(&b).map(|(x, y)| f64::from(x - y).powi(2)).sum::<f64>().sqrt();
        let norm = b.iter().map(|y| f64::from(*y).powi(2)).sum::<f64>().sqrt();
        println!("{what}: tape-free vs taped {:.2e} (relative)", diff / norm);
        assert!(diff <= 1e-4 * norm, "{what}: tape-free vs taped differ by {:.3e} (relative)", diff / norm);
    };
    let mut checked = vec![];
    for kind in gmm_kinds() {
        let cfg = gmm_config(kind);
        if !cfg.build::<B>(None).map(|s| s.differentiates_prior()).unwrap_or(false) {
            close(run_with(kind, 0..4, 3, true), run_with(kind, 0..4, 3, false), format!("{kind} on the mixture"));
            checked.push(kind);
        }
    }
    for &(kind, preset, overrides, task) in IMAGE_SAMPLERS {
        let ctx = dipbench_samplers::PresetContext { task, dataset: "ffhq", noise: "gaussian" };
        let cfg = SamplerConfig::preset_in(kind, preset, Some(&ctx)).unwrap();
        if !cfg.build::<B>(None).unwrap().differentiates_prior() {
            close(
                run_image_with(kind, preset, overrides, task, 0..2, 3, true),
                run_image_with(kind, preset, overrides, task, 0..2, 3, false),
                format!("{kind}/{preset} on the UNet"),
            );
            checked.push(kind);
        }
    }
    println!("tape-free = taped for {checked:?}");
    for kind in ["daps", "ddrm", "ddnm", "diffpir", "pnp-admm", "fps-smc", "dcdp"] {
        assert!(checked.contains(&kind), "{kind} was not checked: {checked:?}");
    }
}
