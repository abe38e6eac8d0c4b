//! Kernels of the CPU backend's fused operations, on plain float32 slices (row-major NCHW).

pub mod conv;
pub mod group_norm;
pub mod math;
