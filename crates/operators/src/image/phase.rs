//! Phase retrieval with oversampling 2 (docs/protocols.md §1.6): pad each 256×256 channel with
//! 64 zeros per side (384×384), take the centred orthonormal 2-D DFT (fastMRI `fft2c`:
//! fftshift ∘ fft2(norm = "ortho") ∘ ifftshift) and keep its magnitude. DPS pads the [−1, 1]
//! image (the zeros are mid-grey); DAPS maps x ↦ x/2 + 1/2 first (the zeros are black).
//!
//! burn 0.21 has no FFT, and 384 is not a power of two anyway: the DFT is two matrix products.
//! The centred matrix is F_c[k′, m] = e^{−2πi·k·n/N}/√N with k = (k′ + N/2) mod N,
//! n = (m + N/2) mod N (the shifts as index maps; F_c is symmetric). Padding is folded in by
//! keeping the 256 columns of F_c that meet the image: Y = F_s·X·F_sᵀ with F_s = F_c[:, p:p+256].

use burn::prelude::*;
use nalgebra::DMatrix;

use super::separable::ImageShape;
use crate::operator::{FourierMagnitude, Operator};
use dipbench_nn::tensor::host_to_tensor;

/// Which codebase's variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhaseVariant {
    /// DPS: pad the [−1, 1] image.
    Dps,
    /// DAPS: x/2 + 1/2, then pad.
    Daps,
}

/// |F_c(pad(x))| per channel.
#[derive(Debug, Clone)]
pub struct PhaseRetrieval<B: Backend> {
    shape: ImageShape,
    pad: usize,
    variant: PhaseVariant,
    fr: Tensor<B, 2>,
    fi: Tensor<B, 2>,
    fr_t: Tensor<B, 2>,
    fi_t: Tensor<B, 2>,
}

/// Real and imaginary parts of the N×N centred orthonormal DFT matrix.
pub fn centred_dft(n: usize) -> (DMatrix<f64>, DMatrix<f64>) {
    let scale = 1.0 / (n as f64).sqrt();
    let mut re = DMatrix::zeros(n, n);
    let mut im = DMatrix::zeros(n, n);
    for kp in 0..n {
        let k = (kp + n / 2) % n;
        for m in 0..n {
            let j = (m + n / 2) % n;
            // Reduce k·j mod N before the angle to keep it accurate.
            let angle = -2.0 * std::f64::consts::PI * ((k * j) % n) as f64 / n as f64;
            re[(kp, m)] = angle.cos() * scale;
            im[(kp, m)] = angle.sin() * scale;
        }
    }
    (re, im)
}

impl<B: Backend> PhaseRetrieval<B> {
    /// The operator with `oversample` (pad = oversample/8 · size per side, 64 for 2.0 at 256).
    pub fn new(shape: ImageShape, oversample: f64, variant: PhaseVariant, device: &B::Device) -> Self {
        let pad = (oversample / 8.0 * shape.h as f64) as usize;
        let n = shape.h + 2 * pad;
        assert_eq!(shape.h, shape.w, "phase retrieval takes square images");
        let (re, im) = centred_dft(n);
        let fr = re.columns(pad, shape.w).into_owned();
        let fi = im.columns(pad, shape.w).into_owned();
        let t = |m: &DMatrix<f64>| host_to_tensor::<B>(m, device);
        Self { shape, pad, variant, fr_t: t(&fr.transpose()), fi_t: t(&fi.transpose()), fr: t(&fr), fi: t(&fi) }
    }

    /// Side of the measured magnitude image (size + 2·pad).
    pub fn output_side(&self) -> usize {
        self.shape.h + 2 * self.pad
    }
}

impl<B: Backend> Operator<B> for PhaseRetrieval<B> {
    fn name(&self) -> String {
        format!("phase-retrieval({:?})", self.variant).to_lowercase()
    }

    fn input_dim(&self) -> usize {
        self.shape.len()
    }

    fn output_dim(&self) -> usize {
        self.shape.c * self.output_side() * self.output_side()
    }

    /// |Y|, Y = F_s·X·F_sᵀ: Re = Fr·X·Frᵀ − Fi·X·Fiᵀ, Im = Fr·X·Fiᵀ + Fi·X·Frᵀ; the modulus is
    /// √(Re² + Im² + 1e-30) so that its gradient stays finite at an exact zero.
    fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let n = x.dims()[0];
        let s = self.shape;
        let x = match self.variant {
            PhaseVariant::Dps => x,
            PhaseVariant::Daps => x.mul_scalar(0.5).add_scalar(0.5),
        };
        let b = n * s.c;
        let x = x.reshape([b, s.h, s.w]);
        let m = self.output_side();
        let lhs = |f: &Tensor<B, 2>| f.clone().unsqueeze_dim::<3>(0).expand([b, m, s.h]);
        let rhs = |f: &Tensor<B, 2>| f.clone().unsqueeze_dim::<3>(0).expand([b, s.w, m]);
        let xr = lhs(&self.fr).matmul(x.clone());
        let xi = lhs(&self.fi).matmul(x);
        let re = xr.clone().matmul(rhs(&self.fr_t)) - xi.clone().matmul(rhs(&self.fi_t));
        let im = xr.matmul(rhs(&self.fi_t)) + xi.matmul(rhs(&self.fr_t));
        (re.powf_scalar(2.0) + im.powf_scalar(2.0)).add_scalar(1e-30).sqrt().reshape([n, s.c * m * m])
    }

    fn as_fourier_magnitude(&self) -> Option<FourierMagnitude> {
        let (scale, offset) = match self.variant {
            PhaseVariant::Dps => (1.0, 0.0),
            PhaseVariant::Daps => (0.5, 0.5),
        };
        Some(FourierMagnitude { channels: self.shape.c, side: self.shape.h, pad: self.pad, scale, offset })
    }
}

/// High dynamic range (DAPS `high_dynamic_range`, scale 2): y = clip(2x, −1, 1).
#[derive(Debug, Clone)]
pub struct Hdr {
    shape: ImageShape,
    scale: f64,
}

impl Hdr {
    /// The operator with `scale` (2 in DAPS).
    pub fn new(shape: ImageShape, scale: f64) -> Self {
        Self { shape, scale }
    }
}

impl<B: Backend> Operator<B> for Hdr {
    fn name(&self) -> String {
        format!("hdr(×{})", self.scale)
    }

    fn input_dim(&self) -> usize {
        self.shape.len()
    }

    fn output_dim(&self) -> usize {
        self.shape.len()
    }

    fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        x.mul_scalar(self.scale).clamp(-1.0, 1.0)
    }
}
