//! AdamW (Loshchilov & Hutter, ICLR 2019) on a batch of rows, in PyTorch's `torch.optim.AdamW`
//! arithmetic (single-tensor path): p ← p·(1 − lr·λ); m ← m + (1 − β₁)(g − m);
//! v ← β₂·v + (1 − β₂)·g²; p ← p − (lr/(1 − β₁ᵗ))·m / (√v/√(1 − β₂ᵗ) + ε). Rows that have
//! stopped keep their value (each row is its own problem, as the reference's batch of one).

use burn::prelude::*;

/// AdamW's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWSettings {
    /// Learning rate.
    pub lr: f64,
    /// Decoupled weight decay λ.
    pub weight_decay: f64,
    /// β₁.
    pub beta1: f64,
    /// β₂.
    pub beta2: f64,
    /// ε.
    pub eps: f64,
}

impl AdamWSettings {
    /// PyTorch's defaults (β = (0.9, 0.999), ε = 1e-8, λ = 0.01) with learning rate `lr`.
    pub fn torch_default(lr: f64) -> Self {
        Self { lr, weight_decay: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8 }
    }
}

/// The optimiser state of a `[n, d]` parameter.
#[derive(Debug, Clone)]
pub struct AdamW<B: Backend> {
    settings: AdamWSettings,
    m: Tensor<B, 2>,
    v: Tensor<B, 2>,
    t: i32,
}

impl<B: Backend> AdamW<B> {
    /// Zero moments for a parameter of `dims`.
    pub fn new(settings: AdamWSettings, dims: [usize; 2], device: &B::Device) -> Self {
        Self { settings, m: Tensor::zeros(dims, device), v: Tensor::zeros(dims, device), t: 0 }
    }

    /// One step of `p` along gradient `g`, applied to the rows where `active` is true.
    pub fn step(&mut self, p: Tensor<B, 2>, g: Tensor<B, 2>, active: &[bool]) -> Tensor<B, 2> {
        let s = self.settings;
        self.t += 1;
        let decayed = p.clone().mul_scalar(1.0 - s.lr * s.weight_decay);
        self.m = self.m.clone() + (g.clone() - self.m.clone()).mul_scalar(1.0 - s.beta1);
        self.v = self.v.clone().mul_scalar(s.beta2) + g.powf_scalar(2.0).mul_scalar(1.0 - s.beta2);
        let step_size = s.lr / (1.0 - s.beta1.powi(self.t));
        let denom = self.v.clone().sqrt().div_scalar((1.0 - s.beta2.powi(self.t)).sqrt()).add_scalar(s.eps);
        let stepped = decayed - (self.m.clone() / denom).mul_scalar(step_size);
        if active.iter().all(|a| *a) {
            return stepped;
        }
        let [n, d] = p.dims();
        let keep: Vec<bool> = active.iter().map(|a| !a).collect();
        let keep = Tensor::<B, 1, Bool>::from_bool(TensorData::new(keep, [n]), &p.device()).reshape([n, 1]).expand([n, d]);
        stepped.mask_where(keep, p)
    }
}
