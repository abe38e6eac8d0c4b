//! FPS-SMC and DCDP on the tiny UNet against the reference code with every draw replayed
//! (fixtures `smc/fps_smc.*` and `smc/dcdp.*`, golden README §3–4).
//!
//! Tolerances. Values computed before any network call (the noised measurements y_t, the
//! proposal noise, DCDP's first SGD phase and noising): 1e-5 absolute, the README's bound (they
//! match to 0 or float32 rounding). Values downstream of a network call: [`NET`] = 1e-4 absolute.
//! The README's 1e-5 assumes PyTorch's own UNet; ours sums in another order, and ε̂ of the tiny
//! UNet differs by up to ~4e-6 between two float32 implementations (the fixture's own check
//! `fps_unet_vs_unet_tiny_io_maxabs` = 3.8e-6). Tweedie multiplies that by √(1/ᾱ_t − 1), up to
//! ≈ 25 at the levels these runs visit (t = 799), so x̂₀ and everything after it can be 1e-4
//! apart (measured below ≤ 6e-5); the README's own DPS tolerance for the same reason is 1e-4.
//! Log-weights ≤ 1e-5 relative (they are 10³–10⁴ and come from float32 norms), the normalised
//! weights exp(log w − max) to 1e-2 relative where they matter for resampling (≥ 1e-3), and the
//! ancestors exactly. Every input, draw and expected value comes from the fixture files.

use std::collections::VecDeque;

use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use dipbench_operators::image::{BlockAverage, ImageShape, InpaintOperator, Mask, Task, build};
use dipbench_operators::{LinearOperator, Operator, SampleRng};
use dipbench_samplers::Problem;
use dipbench_samplers::dcdp::{Dcdp, DcdpConfig};
use dipbench_samplers::fps::{FpsConfig, FpsProposal, FpsSmc, RunTrace, Tables, Uniforms};
use dipbench_tests::{GoldenTensor, load_json, load_tensors, max_abs_diff, tensor, tiny_unet_prior};
use serde_json::Value;

type B = Autodiff<Flex>;

const SHAPE: ImageShape = ImageShape { c: 3, h: 32, w: 32 };
const D: usize = 3 * 32 * 32;

/// Absolute tolerance for tensors downstream of a network call (module documentation).
const NET: f64 = 1e-4;

/// Absolute tolerance for the particles of the SR run. Its first step (t = 799) forms the proposal
/// mean from m_back + κ·𝒜ᵀy_t with κ = 1/ex_t ≈ 2.4·10⁵, i.e. at magnitudes ~10⁴ where float32
/// values are 2⁻⁹ ≈ 2e-3 apart, before shrinking the range part by ex/(ex + λ²): the
/// reference's own result carries roundings of that size, in an order (its Vᵀ and V products)
/// that ours does not share. A few such roundings per coordinate, carried through four later
/// steps: 1e-2 (measured 1.6e-3 after that step, 4.9e-3 at the end; the weights and ancestors
/// agree exactly).
const SR_RUN: f64 = 1e-2;

/// A golden tensor as `[rows, len/rows]` on `B`.
fn rows(t: &GoldenTensor, n: usize) -> Tensor<B, 2> {
    dipbench_tests::rows::<B>(t, n)
}

/// Values `[from, to)` of a golden tensor's flat data.
fn part(t: &GoldenTensor, from: usize, to: usize) -> &[f64] {
    &t.data[from..to]
}

fn values(t: Tensor<B, 2>) -> Vec<f64> {
    t.into_data().convert::<f32>().to_vec::<f32>().unwrap().into_iter().map(f64::from).collect()
}

fn check_abs(name: &str, got: Tensor<B, 2>, want: &[f64], tol: f64) {
    let err = max_abs_diff(&values(got), want);
    println!("{name}: max abs error {err:.2e}");
    assert!(err <= tol, "{name}: max abs error {err:.3e} > {tol:e}");
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap_or_else(|| panic!("expected an array, got {v}")).iter().map(|x| x.as_f64().unwrap()).collect()
}

fn ints(v: &Value) -> Vec<usize> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect()
}

/// Normalised weights exp(log w − max): compared where the reference's weight is ≥ 1e-3 (those
/// decide the resampling), to 1e-2 relative.
fn check_weights(name: &str, log_w: &[f64], want: &[f64]) {
    let max = log_w.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    for (i, (&lw, &w)) in log_w.iter().zip(want).enumerate() {
        let got = (lw - max).exp();
        if w >= 1e-3 {
            assert!((got - w).abs() <= 1e-2 * w, "{name}[{i}]: weight {got} vs {w}");
        } else {
            assert!(got < 1e-2, "{name}[{i}]: weight {got} where the reference has {w}");
        }
    }
}

/// The FPS fixture's inpainting operator (its own box mask) and SR ×4 (the resizer) with the
/// block-average surrogate built on the fixture's V.
fn inpaint_op(io: &std::collections::HashMap<String, GoldenTensor>) -> InpaintOperator<B> {
    let m = tensor(io, "mask");
    let mask = Mask { h: 32, w: 32, kept: m.data.iter().map(|v| *v > 0.5).collect() };
    InpaintOperator::new("inpaint", 3, mask, &Default::default())
}

fn sr_ops(io: &std::collections::HashMap<String, GoldenTensor>) -> (Box<dyn Operator<B>>, BlockAverage<B>) {
    let op = build::<B>(&Task::Sr4, SHAPE, &mut SampleRng::new(0, 1), &Default::default()).unwrap();
    let block = BlockAverage::with_basis(SHAPE, 4, &tensor(io, "sr_V_small").data, &Default::default()).unwrap();
    (op, block)
}

fn fps(particles: usize, steps: usize, sr: bool) -> FpsSmc {
    let proposal = if sr { FpsProposal::BlockAverage } else { FpsProposal::Operator };
    FpsSmc(FpsConfig { particles, steps, proposal, ..FpsConfig::repo() })
}

#[test]
fn golden_fps_smc_single_steps_box_inpainting_and_sr() {
    let meta = load_json("smc/fps_smc");
    let io = load_tensors("smc/fps_smc");
    let m = meta["M"].as_u64().unwrap() as usize;
    assert_eq!(meta["c_rate"].as_f64().unwrap(), FpsConfig::repo().c_rate);
    assert_eq!(meta["sigma_hardcoded"].as_f64().unwrap(), FpsConfig::repo().sigma);
    let prior = tiny_unet_prior::<B>();
    let inp = inpaint_op(&io);
    let (sr, block) = sr_ops(&io);
    for tag in ["inp_t500", "inp_t20", "sr_t500"] {
        let case = &meta["cases"][tag];
        let is_sr = tag.starts_with("sr");
        let key = |k: &str| format!("fps_{tag}_{k}");
        let t = case["t"].as_u64().unwrap() as usize;
        let y = if is_sr { "y_sr" } else { "y_inp" };
        let op: &dyn Operator<B> = if is_sr { sr.as_ref() } else { &inp };
        let problem = Problem::shared(&prior, op, rows(tensor(&io, y), 1), 0.05, 1);
        // Our tables from the 1000-step schedule against the JSON's scalars.
        let schedule = dipbench_models::VpSchedule::linear(1e-4, 0.02, 1000);
        let tb = Tables::new(schedule.alpha_bar(t), schedule.alpha_bar(t - 1), 0.05, 0.95);
        for (name, ours, key) in [
            ("ᾱ_t", tb.ab, "acp_t"),
            ("p", tb.p, "post_var_p"),
            ("a", tb.a, "var_diff_a"),
            ("ex", tb.ex, "ex"),
            ("u", tb.u, "union_u"),
            ("w", tb.w, "model_variance_w"),
        ] {
            let want = case[key].as_f64().unwrap();
            assert!((ours - want).abs() <= 1e-12 * want.abs(), "{tag}: {name} = {ours} vs {want}");
        }
        let surrogate = is_sr.then_some(&block as &dyn LinearOperator<B>);
        let uniforms = floats(&case["uniforms_float64"]);
        let out = fps(m, 1000, is_sr)
            .step(&problem, surrogate, tb, t, rows(tensor(&io, &key("x_t")), m), rows(tensor(&io, &key("y_t")), 1), rows(tensor(&io, &key("z")), m), &uniforms)
            .unwrap();
        check_abs(&key("x0hat"), out.x0, &tensor(&io, &key("x0hat")).data, NET);
        check_abs(&key("mean_back"), out.mean_back, &tensor(&io, &key("mean_back")).data, NET);
        check_abs(&key("mean"), out.mean, &tensor(&io, &key("mean")).data, NET);
        check_abs(&key("proposal_noise"), out.noise, &tensor(&io, &key("proposal_noise")).data, 1e-5);
        let want = floats(&case["log_w_float64"]);
        for (i, (g, w)) in out.log_w.iter().zip(&want).enumerate() {
            println!("{tag}: log w[{i}] = {g:.6} (reference {w:.6})");
            assert!((g - w).abs() <= 1e-5 * w.abs(), "{tag}: log w[{i}] {g} vs {w}");
        }
        check_weights(&key("weights"), &out.log_w, &floats(&case["weights_float64"]));
        assert_eq!(out.ancestors, ints(&case["ancestors"]), "{tag}: ancestors");
        check_abs(&key("x_next"), out.x_next, &tensor(&io, &key("x_next")).data, NET);
    }
}

/// The recorded draws of a run: the y-sequence normals, and the start + step normals.
fn run_draws(io: &std::collections::HashMap<String, GoldenTensor>, tag: &str) -> (SampleRng, SampleRng) {
    let chunks = |t: &GoldenTensor, len: usize| -> Vec<Vec<f32>> { t.data.chunks(len).map(|c| c.iter().map(|v| *v as f32).collect()).collect() };
    let measurement = SampleRng::replay(1, chunks(tensor(io, &format!("{tag}_y_noise")), D));
    let init = tensor(io, &format!("{tag}_init_noise"));
    let steps = tensor(io, &format!("{tag}_step_noise"));
    let m = steps.shape[1];
    let mut draws = vec![init.data.iter().map(|v| *v as f32).collect::<Vec<f32>>()];
    draws.extend(chunks(steps, m * D));
    (measurement, SampleRng::replay(1, draws))
}

#[test]
fn golden_fps_smc_six_step_runs_box_inpainting_and_sr() {
    let meta = load_json("smc/fps_smc");
    let io = load_tensors("smc/fps_smc");
    let m = meta["M"].as_u64().unwrap() as usize;
    let prior = tiny_unet_prior::<B>();
    let inp = inpaint_op(&io);
    let (sr, block) = sr_ops(&io);
    for tag in ["run", "runsr"] {
        let run = &meta["runs"][tag];
        let is_sr = tag == "runsr";
        let kept = ints(&run["use_timesteps"]);
        let sampler = fps(m, kept.len(), is_sr);
        let op: &dyn Operator<B> = if is_sr { sr.as_ref() } else { &inp };
        let problem = Problem::shared(&prior, op, rows(tensor(&io, if is_sr { "y_sr" } else { "y_inp" }), 1), 0.05, 1);
        let (ours, acp) = sampler.chain(&problem);
        assert_eq!(ours, kept, "{tag}: respaced timesteps");
        for (a, w) in acp.iter().zip(floats(&run["acp_spaced_float64"])) {
            assert!((a - w).abs() <= 1e-15, "{tag}: spaced ᾱ {a} vs {w}");
        }
        let (mut measurement, mut particles) = run_draws(&io, tag);
        let uniforms: VecDeque<Vec<f64>> = run["uniforms_float64"].as_array().unwrap().iter().map(floats).collect();
        let mut trace = RunTrace::default();
        let surrogate = is_sr.then_some(&block as &dyn LinearOperator<B>);
        let out = sampler.run(&problem, surrogate, &mut measurement, &mut particles, &mut Uniforms::Given(uniforms), Some(&mut trace)).unwrap();
        // y_t for t = 5 … 0 against the fixture's t = 0 … 5.
        let y_seq = tensor(&io, &format!("{tag}_y_seq"));
        let my = y_seq.data.len() / 6;
        for (k, y) in trace.y.iter().enumerate() {
            let t = 5 - k;
            check_abs(&format!("{tag} y_{t}"), y.clone(), part(y_seq, t * my, (t + 1) * my), 1e-5);
        }
        let x_in = tensor(&io, &format!("{tag}_x_in"));
        let (weights, ancestors) = (&run["weights_float64"], &run["ancestors"]);
        check_abs(&format!("{tag} x_in[0]"), trace.x[0].clone(), part(x_in, 0, m * D), 1e-5);
        for (k, step) in trace.steps.iter().enumerate() {
            check_weights(&format!("{tag} weights[{k}]"), &step.log_w, &floats(&weights[k]));
            assert_eq!(step.ancestors, ints(&ancestors[k]), "{tag}: ancestors of resampling {k}");
            check_abs(
                &format!("{tag} x_in[{}]", k + 1),
                trace.x[k + 1].clone(),
                part(x_in, (k + 1) * m * D, (k + 2) * m * D),
                if is_sr { SR_RUN } else { NET },
            );
        }
        check_abs(&format!("{tag} x_last"), trace.x[5].clone(), &tensor(&io, &format!("{tag}_x_last")).data, if is_sr { SR_RUN } else { NET });
        check_abs(&format!("{tag} final"), out, &tensor(&io, &format!("{tag}_final")).data, if is_sr { SR_RUN } else { NET });
    }
}

#[test]
fn golden_dcdp_runs_sr_and_box_inpainting() {
    let meta = load_json("smc/dcdp");
    let io = load_tensors("smc/dcdp");
    let prior = tiny_unet_prior::<B>();
    for tag in ["sr", "inp"] {
        let case = &meta["cases"][tag];
        let key = |k: &str| format!("dcdp_{tag}_{k}");
        let op: Box<dyn Operator<B>> = if tag == "sr" {
            build::<B>(&Task::Sr4, SHAPE, &mut SampleRng::new(0, 1), &Default::default()).unwrap()
        } else {
            // The fixture's mask is (1, 3, 32, 32); every channel has the same one.
            let m = tensor(&io, &key("mask"));
            Box::new(InpaintOperator::new("inpaint", 3, Mask { h: 32, w: 32, kept: m.data[..1024].iter().map(|v| *v > 0.5).collect() }, &Default::default()))
        };
        let iterations = case["iterations"].as_array().unwrap();
        let levels: Vec<usize> = iterations.iter().map(|it| it["T_i"].as_u64().unwrap() as usize).collect();
        let (k, j) = (levels.len(), tensor(&io, &key("csgm_iterates")).shape[1]);
        let t_start = levels[0];
        let config = DcdpConfig { rounds: k, csgm_steps: j, lr: 1000.0, momentum: 0.9, t_start, t_end: 0, ddim_steps: 4, level_one_from_two: true };
        assert_eq!(config.levels(), levels, "{tag}: purification levels");
        let problem = Problem::shared(&prior, op.as_ref(), rows(tensor(&io, &key("y")), 1), 0.05, 1);
        let mut rng = SampleRng::replay(1, tensor(&io, &key("q_noise")).data.chunks(D).map(|c| c.iter().map(|v| *v as f32).collect()).collect());
        let mut rounds = Vec::new();
        let out = Dcdp(config.clone()).run(&problem, &mut rng, Some(&mut rounds)).unwrap();
        let (iterates, noisy, purified) = (tensor(&io, &key("csgm_iterates")), tensor(&io, &key("x_noisy")), tensor(&io, &key("purified")));
        let (x_in, x0hat, x_out) = (tensor(&io, &key("ddim_x_in")), tensor(&io, &key("ddim_x0hat")), tensor(&io, &key("ddim_x_out")));
        let mut call = 0;
        for (i, round) in rounds.iter().enumerate() {
            let it = &iterations[i];
            let use_ts = ints(&it["use_timesteps"]);
            assert_eq!(dipbench_models::schedule::space_timesteps(it["ddim_steps_T"].as_u64().unwrap() as usize, use_ts.len()), use_ts);
            let schedule = dipbench_models::VpSchedule::linear(1e-4, 0.02, 1000);
            for (a, w) in schedule.respaced_alpha_bars(&use_ts).iter().zip(floats(&it["spaced_acp"])) {
                assert!((a - w).abs() <= 1e-15, "{tag}: spaced ᾱ′ {a} vs {w}");
            }
            for (s, x) in round.iterates.iter().enumerate() {
                let at = (i * j + s) * D;
                check_abs(&format!("{tag} round {i} SGD {s}"), x.clone(), part(iterates, at, at + D), if i == 0 { 1e-5 } else { NET });
            }
            check_abs(&format!("{tag} round {i} noised"), round.noisy.clone(), part(noisy, i * D, (i + 1) * D), if i == 0 { 1e-5 } else { NET });
            for (x, x0) in &round.ddim {
                check_abs(&format!("{tag} DDIM call {call} input"), x.clone(), part(x_in, call * D, (call + 1) * D), NET);
                check_abs(&format!("{tag} DDIM call {call} x̂₀"), x0.clone(), part(x0hat, call * D, (call + 1) * D), NET);
                call += 1;
            }
            // The output of the round's last call is its purified image.
            check_abs(&format!("{tag} DDIM call {} output", call - 1), round.purified.clone(), part(x_out, (call - 1) * D, call * D), NET);
            check_abs(&format!("{tag} round {i} purified"), round.purified.clone(), part(purified, i * D, (i + 1) * D), NET);
        }
        assert_eq!(call, case["nfe"].as_u64().unwrap() as usize, "{tag}: network calls");
        check_abs(&format!("{tag} final"), out, &tensor(&io, &key("final")).data, NET);
    }
}
