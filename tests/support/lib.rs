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
    let dir = std::env::var_os("DIPBENCH_GOLDEN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/golden"));
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
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .unwrap_or_else(|e| panic!("{} is not a safetensors file: {e}", path.display()));
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
