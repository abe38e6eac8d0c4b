//! Copies of host matrices (nalgebra, float64) into float32 tensors.

use burn::prelude::*;
use nalgebra::DMatrix;

/// Copies a host f64 matrix to a `[rows, cols]` f32 tensor.
pub fn host_to_tensor<B: Backend>(m: &DMatrix<f64>, device: &B::Device) -> Tensor<B, 2> {
    let (r, c) = m.shape();
    let mut v = Vec::with_capacity(r * c);
    for i in 0..r {
        for j in 0..c {
            v.push(m[(i, j)] as f32);
        }
    }
    Tensor::<B, 1>::from_floats(v.as_slice(), device).reshape([r, c])
}
