//! Test support shared by the cross-crate tests: where the golden fixtures are and how to read
//! them (safetensors tensors + JSON side files), and small numeric comparisons.
//!
//! Golden fixtures are read from the folder named by `DIPBENCH_GOLDEN`, defaulting to
//! `../shared/golden` next to the repository. A missing folder or file is a loud failure, never a
//! skipped test.

use std::collections::HashMap;
use std::path::PathBuf;

/// The golden-fixture folder (`DIPBENCH_GOLDEN`, default `<repo>/../shared/golden`). Panics with
/// instructions when it does not exist.
pub fn golden_dir() -> PathBuf {
    let dir = std::env::var_os("DIPBENCH_GOLDEN").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/golden"));
    assert!(
        dir.is_dir(),
        "golden fixtures not found at {}: set DIPBENCH_GOLDEN to the folder holding gmm.safetensors, \
         operators.safetensors, … (the project's shared/golden)",
        dir.display()
    );
    dir
}

/// One tensor of a fixture file, converted to f64, with its shape.
#[derive(Debug, Clone)]
pub struct GoldenTensor {
    /// Shape as stored.
    pub shape: Vec<usize>,
    /// Values, row-major, converted to f64 (f32 and i64 fixtures both fit exactly).
    pub data: Vec<f64>,
}

/// All tensors of `<golden>/<name>.safetensors`.
pub fn load_tensors(name: &str) -> HashMap<String, GoldenTensor> {
    let path = golden_dir().join(format!("{name}.safetensors"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read golden file {}: {e}", path.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap_or_else(|e| panic!("{} is not a safetensors file: {e}", path.display()));
    st.tensors()
        .into_iter()
        .map(|(key, view)| {
            let raw = view.data();
            let data: Vec<f64> = match view.dtype() {
                safetensors::Dtype::F32 => raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64).collect(),
                safetensors::Dtype::F64 => raw.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect(),
                safetensors::Dtype::I64 => raw.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64).collect(),
                other => panic!("{}: tensor {key} has unsupported dtype {other:?}", path.display()),
            };
            (key, GoldenTensor { shape: view.shape().to_vec(), data })
        })
        .collect()
}

/// `<golden>/<name>.json`, parsed.
pub fn load_json(name: &str) -> serde_json::Value {
    let path = golden_dir().join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read golden file {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()))
}

/// Looks a tensor up by key, panicking with the file's key list when it is missing.
pub fn tensor<'a>(tensors: &'a HashMap<String, GoldenTensor>, key: &str) -> &'a GoldenTensor {
    tensors.get(key).unwrap_or_else(|| {
        let mut keys: Vec<&String> = tensors.keys().collect();
        keys.sort();
        panic!("golden tensor `{key}` missing (have: {keys:?})")
    })
}

/// ‖a − b‖ / ‖b‖ (relative error in the Euclidean norm), with ‖b‖ = 0 giving ‖a‖.
pub fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f64>().sqrt();
    let den: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    if den == 0.0 { num } else { num / den }
}

/// max |a − b|.
pub fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

/// Golden-fill weights of the metric networks written into `dir` under the file names
/// `dipbench weights` expects (safetensors content under the published names, which the loader
/// detects): AlexNet features, the lpips `alex.pth` heads (copied from the golden folder) and the
/// FID Inception (key list from `metrics.json`), so LPIPS and FID run without downloads.
pub fn write_golden_checkpoints(dir: &std::path::Path) {
    use dipbench_nn::source::GoldenFill;
    let write = |name: &str, manifest: Vec<(String, Vec<usize>)>| {
        let data: Vec<(String, Vec<usize>, Vec<u8>)> =
            manifest.iter().map(|(k, s)| (k.clone(), s.clone(), GoldenFill::values(k, s).iter().flat_map(|v| v.to_le_bytes()).collect())).collect();
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> =
            data.iter().map(|(k, s, b)| (k.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b).unwrap())).collect();
        safetensors::serialize_to_file(views, None, &dir.join(name)).unwrap();
    };
    write("alexnet-owt-7be5be79.pth", dipbench_metrics::lpips::backbone_manifest("alexnet"));
    std::fs::copy(golden_dir().join("lpips_lin/alex.pth"), dir.join("alex.pth")).unwrap();
    let meta = load_json("metrics");
    let keys: Vec<(String, Vec<usize>)> = meta["fid_inception"]["fid_inception_keys"]
        .as_array()
        .expect("metrics.json: fid_inception.fid_inception_keys")
        .iter()
        .map(|e| (e[0].as_str().unwrap().to_string(), e[1].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect()))
        .collect();
    write("pt_inception-2015-12-05-6726825d.pth", keys);
}

/// Writes `<dir>/<name>.toml`: an image experiment on 3 synthetic 32×32 images with the tiny
/// UNet config (golden-fill weights, no download), `seed`, the `[image]` keys of `image` (tasks,
/// metrics, …) and the `[[method]]` tables of `methods`. Returns the file's path.
pub fn write_tiny_image_experiment(dir: &std::path::Path, name: &str, seed: u64, image: &str, methods: &str) -> PathBuf {
    let text = format!(
        "[experiment]\nname = \"{name}\"\nbenchmark = \"image\"\nseed = {seed}\n\n\
         [image]\ndataset = \"synthetic\"\nimages = 3\nside = 32\nmodel = \"tiny32\"\n{image}\n\n{methods}\n"
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    path
}

/// The tiny ADM UNet of `<golden>/unet_tiny.pt` as a prior (golden README §1), on backend `B`.
pub fn tiny_unet_prior<B: dipbench_nn::NnBackend>() -> dipbench_models::unet::UnetPrior<B> {
    use dipbench_models::unet::{AdmUnet, UnetConfig, UnetPrior};
    let mut src = dipbench_nn::source::MemorySource::from_pytorch(&golden_dir().join("unet_tiny.pt"), None).unwrap();
    UnetPrior::new(AdmUnet::load(&UnetConfig::tiny32(), &mut src, &Default::default()).unwrap())
}

/// The recorded noises `[k, d]` of a fixture tensor as replayed draws for one row
/// (`SampleRng::replay`).
pub fn draws(t: &GoldenTensor, d: usize) -> Vec<Vec<f32>> {
    t.data.chunks(d).map(|c| c.iter().map(|v| *v as f32).collect()).collect()
}

/// A golden tensor as a `[rows, len/rows]` float32 tensor on `B`'s default device.
pub fn rows<B: burn::tensor::backend::Backend>(t: &GoldenTensor, rows: usize) -> burn::tensor::Tensor<B, 2> {
    let v: Vec<f32> = t.data.iter().map(|x| *x as f32).collect();
    burn::tensor::Tensor::<B, 1>::from_floats(v.as_slice(), &Default::default()).reshape([rows, v.len() / rows])
}

/// The intermediates of a UNet forward on the inputs of a `unet_*_io` fixture (`x`, `t_<case>`),
/// paired with the fixture's expected tensors `<name>_<case>`: (name, got, expected) for the
/// timestep embedding, `time_embed`, the first input block, the middle block and the output.
pub fn unet_trace_against<'a, B: dipbench_nn::NnBackend>(
    net: &dipbench_models::unet::AdmUnet<B>,
    io: &'a HashMap<String, GoldenTensor>,
    case: &str,
) -> Vec<(&'static str, Vec<f64>, &'a GoldenTensor)> {
    let x = tensor(io, "x");
    let shape: [usize; 4] = x.shape.clone().try_into().expect("x is [n, c, h, w]");
    let xv: Vec<f32> = x.data.iter().map(|v| *v as f32).collect();
    let x = burn::tensor::Tensor::<B, 1>::from_floats(xv.as_slice(), &Default::default()).reshape(shape);
    let t: Vec<f32> = tensor(io, &format!("t_{case}")).data.iter().map(|v| *v as f32).collect();
    let trace = net.forward_traced(x, &t);
    fn host<B: burn::tensor::backend::Backend, const D: usize>(t: burn::tensor::Tensor<B, D>) -> Vec<f64> {
        t.into_data().convert::<f32>().to_vec::<f32>().unwrap().into_iter().map(f64::from).collect()
    }
    [("temb_sin", host(trace.temb_sin)), ("emb", host(trace.emb)), ("h_in0", host(trace.h_in0)), ("h_mid", host(trace.h_mid)), ("out", host(trace.out))]
        .into_iter()
        .map(|(name, got)| (name, got, tensor(io, &format!("{name}_{case}"))))
        .collect()
}
