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
