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
