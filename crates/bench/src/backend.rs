//! The compute backend, chosen once per process: the CPU (burn's `Flex`) always, CUDA and WebGPU
//! when built with the `cuda` / `wgpu` cargo features. Everything else is generic over it.

/// A backend the binary was built with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceKind {
    /// burn's `Flex` CPU backend (threads: `--threads` / `RAYON_NUM_THREADS`).
    Cpu,
    /// burn's CUDA backend, GPU 0 (build with `--features cuda`).
    #[cfg(feature = "cuda")]
    Cuda,
    /// burn's WebGPU backend, default adapter (build with `--features wgpu`).
    #[cfg(feature = "wgpu")]
    Wgpu,
}

/// Calls `$body` with `B` bound to the autodiff backend of `$kind` and `device` to its device.
#[macro_export]
macro_rules! with_backend {
    ($kind:expr, |$b:ident, $device:ident| $body:expr) => {{
        match $kind {
            $crate::backend::DeviceKind::Cpu => {
                type $b = burn::backend::Autodiff<burn::backend::Flex>;
                let $device = Default::default();
                $body
            }
            #[cfg(feature = "cuda")]
            $crate::backend::DeviceKind::Cuda => {
                type $b = burn::backend::Autodiff<burn::backend::Cuda>;
                let $device = Default::default();
                $body
            }
            #[cfg(feature = "wgpu")]
            $crate::backend::DeviceKind::Wgpu => {
                type $b = burn::backend::Autodiff<burn::backend::Wgpu>;
                let $device = Default::default();
                $body
            }
        }
    }};
}

/// Arithmetic precision of the UNet for `model eval` and `bench unet` (`--precision`): float32,
/// or guided-diffusion-style mixed precision with f16 or bf16 convolutions
/// ([`dipbench_nn::layers::Precision`]), on every backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Precision {
    /// float32.
    F32,
    /// Mixed precision, IEEE half convolutions (guided-diffusion `use_fp16`).
    F16,
    /// Mixed precision, bfloat16 convolutions.
    Bf16,
}

impl From<Precision> for dipbench_nn::layers::Precision {
    fn from(p: Precision) -> Self {
        match p {
            Precision::F32 => Self::F32,
            Precision::F16 => Self::F16,
            Precision::Bf16 => Self::Bf16,
        }
    }
}

/// The first `n` devices of `first`'s kind (`first` itself for n = 1), for job-level
/// parallelism over several GPUs in one process: burn devices of one kind are numbered
/// (`DeviceId { type_id, index_id }`), so device k is `from_id` with index k. Asking for more
/// devices than the runtime reports is an error naming both counts.
pub fn devices<B: burn::tensor::backend::Backend>(first: &B::Device, n: usize) -> anyhow::Result<Vec<B::Device>> {
    use burn::tensor::backend::Device as _;
    if n <= 1 {
        return Ok(vec![first.clone()]);
    }
    let id = first.to_id();
    let available = B::device_count(id.type_id);
    if n > available {
        anyhow::bail!("--devices {n}: this backend reports {available} device(s) of this kind");
    }
    Ok((0..n).map(|k| B::Device::from_id(burn::tensor::backend::DeviceId { type_id: id.type_id, index_id: k as u16 })).collect())
}

/// Where the GPU backends keep their autotune results and compiled kernels between runs:
/// `$DIPBENCH_KERNEL_CACHE`, else `$XDG_CACHE_HOME/dipbench/kernels`, else
/// `$HOME/.cache/dipbench/kernels`. (burn's default is a `target/` folder next to the nearest
/// `Cargo.toml` above the working directory, which a job on a cluster node rarely has.)
pub fn gpu_cache_dir() -> Option<std::path::PathBuf> {
    use std::path::PathBuf;
    if let Some(dir) = std::env::var_os("DIPBENCH_KERNEL_CACHE") {
        return Some(PathBuf::from(dir));
    }
    let base = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from).or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("dipbench").join("kernels"))
}

/// Points the GPU backends' autotune cache and compiled-kernel cache at [`gpu_cache_dir`], so
/// that the kernel choices tuned in one run (seconds per new shape) are found by the next and can
/// be carried to another machine of the same kind. Must run before any GPU work. A `cubecl.toml`
/// or `burn.toml` in the working directory or a parent (cubecl's own configuration files) takes
/// precedence and is left alone. Returns the folder used.
#[cfg(any(feature = "cuda", feature = "wgpu"))]
pub fn configure_gpu_caches() -> Option<std::path::PathBuf> {
    use burn::cubecl::config::cache::CacheConfig;
    use burn::cubecl::config::{CubeClRuntimeConfig, RuntimeConfig};
    let cwd = std::env::current_dir().ok()?;
    let has_config = cwd.ancestors().any(|d| ["cubecl.toml", "CubeCL.toml", "burn.toml", "Burn.toml"].iter().any(|f| d.join(f).is_file()));
    if has_config {
        return None;
    }
    let dir = gpu_cache_dir()?;
    let mut config = CubeClRuntimeConfig::default();
    config.autotune.cache = CacheConfig::File(dir.clone());
    config.compilation.cache = Some(CacheConfig::File(dir.clone()));
    CubeClRuntimeConfig::set(config.override_from_env());
    Some(dir)
}
