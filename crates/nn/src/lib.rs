//! # dipbench-nn — fast network building blocks
//!
//! What this crate is for: the two operations the diffusion networks spend most of their time
//! in — stride-1 same convolutions and GroupNorm (+ per-channel affine map + SiLU) — as a burn
//! backend extension ([`NnBackend`]) with fused float32 kernels on the CPU ([`cpu`]) and burn's
//! own kernels on the GPU backends, differentiable with respect to their inputs at the cost of
//! one more pass of the same kind (the input gradient of a convolution is a convolution).
//!
//! What it is not for: network architectures or weight loading (`dipbench-models`).

pub mod backend;
pub mod cpu;
pub mod layers;
pub mod ops;
pub mod source;
pub mod tensor;
pub mod torch_records;

pub use backend::{MixtureScales, MixtureTensors, NnAutodiffBackend, NnBackend, NoiseDraw};
