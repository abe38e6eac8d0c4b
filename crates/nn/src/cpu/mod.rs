//! Kernels of the CPU backend's fused operations, on plain float32 slices (row-major NCHW).

pub mod combine;
pub mod conv;
pub mod group_norm;
pub mod least_squares;
pub mod math;
pub mod mixture;
pub mod random;
pub mod softmax;
pub mod thin;
pub mod winograd;

use conv::{Direction, SameConv};

/// A stride-1 same convolution by the faster kernel for its shape: Winograd F(2×2, 3×3)
/// ([`winograd`]) for 3×3 kernels on images of at least 64×64 pixels, where it measured 1.5–2×
/// faster than the direct products on 2 cores (break-even at 32×32), the direct products
/// ([`conv::conv_same`]) otherwise.
pub fn same_conv(x: &[f32], weight: &[f32], bias: Option<&[f32]>, conv: &SameConv, direction: Direction) -> Vec<f32> {
    if conv.kernel == [3, 3] && conv.height * conv.width >= 64 * 64 {
        winograd::conv3x3_winograd(x, weight, bias, conv, direction)
    } else {
        conv::conv_same(x, weight, bias, conv, direction)
    }
}
