//! `dipbench weights`, `dipbench model eval` and checkpoint verification, against the golden
//! fixtures (the tiny UNet stands in for the big checkpoints, which are not downloaded here).

use std::path::Path;
use std::process::Output;

use dipbench_tests::{golden_dir, load_tensors, rel_err, tensor};

use crate::support::{dipbench, read_tensor, temp_dir};

fn write_x(path: &Path, shape: Vec<usize>, values: &[f64]) {
    let bytes: Vec<u8> = values.iter().flat_map(|v| (*v as f32).to_le_bytes()).collect();
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape, &bytes).unwrap();
    safetensors::serialize_to_file(vec![("x".to_string(), view)], None, path).unwrap();
}

/// `dipbench model eval --config CONFIG --checkpoint CKPT --input X --output OUT EXTRA…`.
fn model_eval(config: &str, ckpt: &Path, input: &Path, out: &Path, extra: &[&str]) -> Output {
    let (ckpt, input, out) = (ckpt.to_str().unwrap(), input.to_str().unwrap(), out.to_str().unwrap());
    let mut args = vec!["model", "eval", "--config", config, "--checkpoint", ckpt, "--input", input, "--output", out];
    args.extend_from_slice(extra);
    dipbench(&args)
}

#[test]
fn golden_model_eval_reproduces_the_reference_outputs() {
    let dir = temp_dir("eval");
    let ckpt = golden_dir().join("unet_tiny.pt");
    let io = load_tensors("unet_tiny_io");
    let d = 3 * 32 * 32;
    // Raw output at t = 10 for the first reference input.
    let input = dir.join("x.safetensors");
    write_x(&input, vec![1, 3, 32, 32], &tensor(&io, "x").data[..d]);
    let out = dir.join("out.safetensors");
    let o = model_eval("tiny32", &ckpt, &input, &out, &["--t", "10"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = rel_err(&read_tensor(&out, "out"), &tensor(&io, "out_int").data[..6 * 32 * 32]);
    assert!(err <= 1e-4, "raw output relative error {err}");
    // The denoiser at σ = 1 (samplers fixture, row 1).
    let s = load_tensors("samplers");
    write_x(&input, vec![1, 3, 32, 32], &tensor(&s, "daps_D_x").data[d..2 * d]);
    let o = model_eval("tiny32", &ckpt, &input, &out, &["--sigma", "1.0"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = rel_err(&read_tensor(&out, "denoised"), &tensor(&s, "daps_D_out").data[d..2 * d]);
    assert!(err <= 1e-5, "denoiser relative error {err}");
    // A reference file with integer tensors beside `x` (the FFHQ fixture's `t`) is read as is.
    let ffhq = golden_dir().join("unet_ffhq_goldenfill_io.safetensors");
    let o = model_eval("tiny32", &ckpt, &ffhq, &out, &["--t", "10"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("[1, 3, 256, 256]") && !err.contains("dtype"), "{err}");
    // Mixed precision (f16 convolutions) on any backend: within 1e-2 (the mixed-precision bound) of the float32
    // reference.
    write_x(&input, vec![1, 3, 32, 32], &tensor(&io, "x").data[..d]);
    let o = model_eval("tiny32", &ckpt, &input, &out, &["--t", "10", "--precision", "f16"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = rel_err(&read_tensor(&out, "out"), &tensor(&io, "out_int").data[..6 * 32 * 32]);
    assert!(err <= 1e-2, "f16 raw output relative error {err}");
    // A wrong input shape is refused, naming the expected one.
    write_x(&input, vec![1, 3, 16, 16], &vec![0.0; 3 * 16 * 16]);
    let o = model_eval("tiny32", &ckpt, &input, &out, &["--t", "10"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("[1, 3, 16, 16]") && err.contains("[n, 3, 32, 32]"), "{err}");
    // The wrong config for a checkpoint names the first key that disagrees.
    let o = model_eval("ffhq256", &ckpt, &input, &out, &["--t", "10"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
}

#[test]
fn golden_model_eval_reads_the_unet_of_a_latent_diffusion_checkpoint() {
    // The tiny LatentDiffusion checkpoint: the UNet under `model.diffusion_model.` beside the
    // autoencoder and the schedule buffers, all under `state_dict`.
    let dir = temp_dir("eval-ldm");
    let ckpt = golden_dir().join("latent/ldm_tiny.pt");
    let io = load_tensors("latent/unet_io");
    let d = 3 * 16 * 16;
    let input = dir.join("x.safetensors");
    let out = dir.join("out.safetensors");
    // Row 1 of the reference input at its timestep (t_int[1]).
    let t = tensor(&io, "t_int").data[1].to_string();
    write_x(&input, vec![1, 3, 16, 16], &tensor(&io, "x").data[d..2 * d]);
    let o = model_eval("tiny16-ldm", &ckpt, &input, &out, &["--t", &t]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = rel_err(&read_tensor(&out, "out"), &tensor(&io, "out_int").data[d..2 * d]);
    assert!(err <= 1e-4, "raw output relative error {err}");
    // DAPS's LDM denoiser at the fixture's smallest σ (the σ of each row is named in its check
    // keys, `tweedie_sigma<σ>_vs_manual_maxabs`): row 0 of den_z.
    let json = dipbench_tests::load_json("latent/unet_io");
    let sigma = json["checks"]
        .as_object()
        .unwrap()
        .keys()
        .filter_map(|k| k.strip_prefix("tweedie_sigma").and_then(|r| r.strip_suffix("_vs_manual_maxabs")).map(|v| v.parse::<f64>().unwrap()))
        .fold(f64::INFINITY, f64::min);
    write_x(&input, vec![1, 3, 16, 16], &tensor(&io, "den_z").data[..d]);
    let o = model_eval("tiny16-ldm", &ckpt, &input, &out, &["--sigma", &sigma.to_string()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = rel_err(&read_tensor(&out, "denoised"), &tensor(&io, "den_out").data[..d]);
    assert!(err <= 1e-4, "denoiser relative error {err}");
    // A class-conditional config is refused with the reason, not run without its context.
    let o = model_eval("tiny16-cin", &ckpt, &input, &out, &["--t", "10"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("class-conditional"), "{err}");
    // A pixel config on this checkpoint finds none of its keys.
    write_x(&input, vec![1, 3, 32, 32], &vec![0.0; 3 * 32 * 32]);
    let o = model_eval("tiny32", &ckpt, &input, &out, &["--t", "10"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("missing key"), "{err}");
}

#[test]
fn weights_lists_known_checkpoints_and_says_where_to_get_a_missing_one() {
    let dir = temp_dir("weights");
    let o = dipbench(&["weights", "--dir", dir.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success());
    for needle in ["ffhq256", "ffhq_10m.pt", "93563910", "imagenet256", "256x256_diffusion_uncond.pt", "openaipublic", "missing"] {
        assert!(text.contains(needle), "listing lacks {needle}:\n{text}");
    }
    let o = dipbench(&["weights", "verify", "ffhq256", "--dir", dir.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("not found") && err.contains("ffhq_10m.pt") && err.contains(dir.to_str().unwrap()) && err.contains("dropbox"), "{err}");
}

#[test]
fn golden_verification_pins_the_sha256_on_first_success_and_checks_it_after() {
    let dir = temp_dir("pin");
    let file = dir.join("tiny.pt");
    std::fs::copy(golden_dir().join("unet_tiny.pt"), &file).unwrap();
    let config = "tiny32";
    let first = dipbench::weights::verify(&file, config).unwrap();
    assert!(matches!(first, dipbench::weights::Verified::NewlyPinned(_)), "{first:?}");
    let again = dipbench::weights::verify(&file, config).unwrap();
    assert!(matches!(again, dipbench::weights::Verified::Pinned(_)), "{again:?}");
    // A changed file no longer matches its pin.
    std::fs::write(dipbench::weights::sidecar(&file), "0000  tiny.pt\n").unwrap();
    let err = dipbench::weights::verify(&file, config).unwrap_err().to_string();
    assert!(err.contains("changed since it was verified"), "{err}");
    // The wrong config is refused before any hashing.
    let err = dipbench::weights::verify(&file, "ffhq256").unwrap_err().to_string();
    assert!(err.contains("time_embed.0.weight"), "{err}");
}

/// `dipbench model verify` on the CPU: every check of the golden folder passes at 1e-4; a copy
/// of the folder whose `out_float` reference is planted 0.1 % off fails that check (and only
/// that one) with a non-zero exit.
#[test]
fn golden_model_verify_passes_and_catches_a_planted_change() {
    let o = dipbench(&["model", "verify", "--golden", golden_dir().to_str().unwrap()]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{text}\n{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(text.lines().filter(|l| l.ends_with(" ok")).count(), 3, "{text}");

    let dir = temp_dir("verify");
    for f in ["unet_tiny.pt", "unet_ffhq_goldenfill_io.safetensors"] {
        std::fs::copy(golden_dir().join(f), dir.join(f)).unwrap();
    }
    let bytes = std::fs::read(golden_dir().join("unet_tiny_io.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let planted: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(k, v)| {
            let data = if k == "out_float" {
                v.data().chunks_exact(4).flat_map(|c| (f32::from_le_bytes(c.try_into().unwrap()) * 1.001).to_le_bytes()).collect()
            } else {
                v.data().to_vec()
            };
            (k, v.dtype(), v.shape().to_vec(), data)
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> =
        planted.iter().map(|(k, d, s, b)| (k.clone(), safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap())).collect();
    safetensors::serialize_to_file(views, None, &dir.join("unet_tiny_io.safetensors")).unwrap();
    let o = dipbench(&["model", "verify", "--golden", dir.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(!o.status.success(), "{text}");
    let failed: Vec<&str> = text.lines().filter(|l| l.ends_with("FAILED")).collect();
    assert!(failed.len() == 1 && failed[0].starts_with("tiny32, float timesteps"), "{text}");
    // ‖out − 1.001·ref‖/‖1.001·ref‖ = 0.001/1.001 up to the port's own 2e-6.
    let err: f64 = failed[0].split("relative error").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap();
    assert!((err - 0.001 / 1.001).abs() < 1e-5, "{text}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("1 of 3 checks above tolerance"), "{}", String::from_utf8_lossy(&o.stderr));
}

/// `dipbench model verify --precision f16` on the CPU: the tensor errors are reported, not
/// judged, and half precision is held to a short sampler run's PSNR (DDRM-20, SR ×4, tiny UNet)
/// within 0.05 dB of float32's.
#[test]
fn golden_model_verify_judges_half_precision_by_sampler_psnr() {
    let o = dipbench(&["model", "verify", "--golden", golden_dir().to_str().unwrap(), "--precision", "f16"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{text}\n{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(text.lines().filter(|l| l.ends_with("(reported)")).count(), 3, "{text}");
    let psnr: Vec<&str> = text.lines().filter(|l| l.contains("|ΔPSNR| dB")).collect();
    assert!(psnr.len() == 1 && psnr[0].ends_with(" ok"), "{text}");
    let delta: f64 = psnr[0].split("|ΔPSNR| dB").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap();
    assert!(delta > 0.0 && delta <= 0.05, "{text}");
}

/// `model eval` runs the autoencoder of a LatentDiffusion checkpoint: encode, quantise and both
/// decodes against the reference's outputs (`latent/vq_io`; 1e-4 relative, the float32 bound of
/// the network checks); code indices wherever the reference's margin is clear of a tie.
#[test]
fn golden_model_eval_runs_the_autoencoder_of_a_latent_diffusion_checkpoint() {
    let dir = temp_dir("eval-vq");
    let ckpt = golden_dir().join("latent/ldm_tiny.pt");
    let io = load_tensors("latent/vq_io");
    let (input, out) = (dir.join("x.safetensors"), dir.join("out.safetensors"));
    let run = |x: &str, step: &str| {
        let t = tensor(&io, x);
        write_x(&input, t.shape.clone(), &t.data);
        let o = model_eval("vq-tiny", &ckpt, &input, &out, &["--autoencoder", step]);
        assert!(o.status.success(), "{step}: {}", String::from_utf8_lossy(&o.stderr));
    };
    for (x, step, key, want) in [("x", "encode", "h", "h"), ("h_quant", "decode", "decoded", "dec_q"), ("h", "decode-nq", "decoded", "dec_nq")] {
        run(x, step);
        let err = rel_err(&read_tensor(&out, key), &tensor(&io, want).data);
        assert!(err <= 1e-4, "{step}: relative error {err:.3e}");
    }
    run("h", "quantize");
    let (got, want, margin) = (read_tensor(&out, "indices"), tensor(&io, "h_indices"), tensor(&io, "h_margin"));
    let clear: Vec<usize> = (0..want.data.len()).filter(|&i| margin.data[i] >= 1e-5).collect();
    assert!(!clear.is_empty() && clear.iter().all(|&i| got[i] == want.data[i]), "code indices differ where the margin is clear");
    // The wrong input shape names both shapes; a UNet option on an autoencoder is refused.
    write_x(&input, vec![1, 3, 16, 16], &vec![0.0; 3 * 16 * 16]);
    let o = model_eval("vq-tiny", &ckpt, &input, &out, &["--autoencoder", "encode"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("[1, 3, 16, 16]") && err.contains("[n, 3, 64, 64]"), "{err}");
    let o = model_eval("vq-tiny", &ckpt, &input, &out, &["--autoencoder", "decode", "--t", "3"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("autoencoder"));
    let o = model_eval("vq-tiny", &ckpt, &input, &out, &[]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("--autoencoder encode"));
}

/// `bench sampler` on a latent config times the latent UNet beside the pixel one in the same run
/// and a LatentDAPS level from its pieces; the JSON report holds what the text prints.
#[test]
fn bench_sampler_on_a_latent_config_reports_a_latent_daps_level_beside_the_pixel_unet() {
    let dir = temp_dir("bench-latent");
    let json = dir.join("report.json");
    let o = dipbench(&["bench", "sampler", "--config", "tiny16-ldm", "--warmup", "0", "--repeats", "1", "--json", json.to_str().unwrap()]);
    let text = crate::support::ok(&o);
    assert!(text.contains("pixel UNet `tiny32` forward (baseline)") && text.contains("HMC step") && text.contains("LatentDAPS (50 levels)"), "{text}");
    let report: serde_json::Value = serde_json::from_str(&crate::support::read(&json)).unwrap();
    let (level, ode, hmc, n) = (
        report["level_seconds"].as_f64().unwrap(),
        report["ode"]["median"].as_f64().unwrap(),
        report["hmc_step"]["median"].as_f64().unwrap(),
        report["hmc_steps"].as_u64().unwrap(),
    );
    assert_eq!(n, 24, "the SR ×4 preset's HMC steps");
    for key in ["pixel_forward", "forward", "decode", "ode", "hmc_step"] {
        let t = report[key]["median"].as_f64().unwrap();
        assert!(t > 0.0 && t.is_finite(), "{key} was timed: {t}");
    }
    assert!((level - (ode + n as f64 * hmc)).abs() <= 1e-9 * level.max(1.0), "a level is ODE + N HMC steps: {report}");
    assert!((report["latent_daps_per_image"].as_f64().unwrap() - 50.0 * level).abs() <= 1e-9 * level.max(1.0) * 50.0);
}
